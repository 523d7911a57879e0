//! Counters, named once here and used under these names in the program, `pl stats`, and
//! the docs.

use bytemuck::{Pod, Zeroable};

/// One per-interface counter. The discriminant is the index into [`IfaceStats::counters`].
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum IfaceCounter {
    /// Frames seen on the interface.
    RxPackets = 0,
    /// Bytes of those frames, from the Ethernet header on (no FCS).
    RxBytes,
    /// ARP frames.
    Arp,
    /// IPv4 frames carrying TCP.
    Ipv4Tcp,
    /// IPv4 frames carrying UDP.
    Ipv4Udp,
    /// IPv4 frames carrying anything else (ICMP included).
    Ipv4Other,
    /// Frames that are neither ARP nor IPv4 (IPv6, VLAN-tagged, ...).
    NonIpv4,
    /// Frames cut short inside a header they announce, or with an impossible IPv4 header.
    Malformed,
    /// Frames the program returned `XDP_PASS` for.
    XdpPass,
    /// Frames the program returned `XDP_DROP` for.
    XdpDrop,
    /// Frames the program returned `XDP_TX` for.
    XdpTx,
    /// Frames the program returned `XDP_REDIRECT` for.
    XdpRedirect,
}

/// Number of [`IfaceCounter`]s.
pub const IFACE_COUNTERS: usize = IfaceCounter::ALL.len();

impl IfaceCounter {
    /// Every counter, in index order.
    pub const ALL: [Self; 12] = [
        Self::RxPackets,
        Self::RxBytes,
        Self::Arp,
        Self::Ipv4Tcp,
        Self::Ipv4Udp,
        Self::Ipv4Other,
        Self::NonIpv4,
        Self::Malformed,
        Self::XdpPass,
        Self::XdpDrop,
        Self::XdpTx,
        Self::XdpRedirect,
    ];

    /// The name used in `pl stats`, JSON, metrics and docs.
    pub const fn name(self) -> &'static str {
        match self {
            Self::RxPackets => "rx_packets",
            Self::RxBytes => "rx_bytes",
            Self::Arp => "arp",
            Self::Ipv4Tcp => "ipv4_tcp",
            Self::Ipv4Udp => "ipv4_udp",
            Self::Ipv4Other => "ipv4_other",
            Self::NonIpv4 => "non_ipv4",
            Self::Malformed => "malformed",
            Self::XdpPass => "xdp_pass",
            Self::XdpDrop => "xdp_drop",
            Self::XdpTx => "xdp_tx",
            Self::XdpRedirect => "xdp_redirect",
        }
    }

    /// The counter with this name.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.name() == name)
    }

    /// The counter for an XDP action code, if it is one of the four that forward or drop.
    pub const fn for_action(action: u32) -> Option<Self> {
        match action {
            crate::proto::XDP_DROP => Some(Self::XdpDrop),
            crate::proto::XDP_PASS => Some(Self::XdpPass),
            crate::proto::XDP_TX => Some(Self::XdpTx),
            crate::proto::XDP_REDIRECT => Some(Self::XdpRedirect),
            _ => None,
        }
    }
}

/// Value of [`crate::maps::IFACE_STATS_MAP`]: one CPU's counters for one interface.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Pod, Zeroable)]
pub struct IfaceStats {
    pub counters: [u64; IFACE_COUNTERS],
}

impl Default for IfaceStats {
    fn default() -> Self {
        Self::zeroed()
    }
}

impl IfaceStats {
    pub const fn get(&self, counter: IfaceCounter) -> u64 {
        self.counters[counter as usize]
    }

    /// Adds another CPU's (or snapshot's) counters into this one.
    pub fn accumulate(&mut self, other: &Self) {
        for (a, b) in self.counters.iter_mut().zip(other.counters.iter()) {
            *a = a.wrapping_add(*b);
        }
    }
}

#[cfg(feature = "user")]
// SAFETY: repr(C) array of u64, no padding, every bit pattern valid.
unsafe impl aya::Pod for IfaceStats {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_is_in_index_order_and_names_are_unique() {
        for (i, c) in IfaceCounter::ALL.iter().enumerate() {
            assert_eq!(*c as usize, i, "{c:?} is out of order in ALL");
            assert_eq!(
                IfaceCounter::from_name(c.name()),
                Some(*c),
                "{c:?} name does not round-trip"
            );
        }
        assert_eq!(IfaceCounter::from_name("nope"), None);
    }

    #[test]
    fn action_counters() {
        assert_eq!(
            IfaceCounter::for_action(crate::proto::XDP_PASS),
            Some(IfaceCounter::XdpPass)
        );
        assert_eq!(
            IfaceCounter::for_action(crate::proto::XDP_REDIRECT),
            Some(IfaceCounter::XdpRedirect)
        );
        assert_eq!(
            IfaceCounter::for_action(0),
            None,
            "XDP_ABORTED has no counter of its own"
        );
    }

    #[test]
    fn accumulate_sums_per_counter() {
        let mut a = IfaceStats::default();
        let mut b = IfaceStats::default();
        b.counters[IfaceCounter::RxPackets as usize] = 3;
        b.counters[IfaceCounter::RxBytes as usize] = 180;
        a.accumulate(&b);
        a.accumulate(&b);
        assert_eq!(a.get(IfaceCounter::RxPackets), 6);
        assert_eq!(a.get(IfaceCounter::RxBytes), 360);
        assert_eq!(a.get(IfaceCounter::Arp), 0);
    }

    #[test]
    fn stats_layout_is_what_the_map_expects() {
        assert_eq!(size_of::<IfaceStats>(), 8 * IFACE_COUNTERS);
        assert_eq!(size_of::<crate::iface::IfaceConfig>(), 4);
    }
}
