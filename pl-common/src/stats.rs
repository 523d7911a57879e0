//! Counters, named once here and used under these names in the program, `pl stats`, and
//! the docs.

use bytemuck::{Pod, Zeroable};

/// Defines a counter enum whose discriminants index a per-CPU array of u64, with `ALL`
/// (index order), `COUNT`, and the one name each counter has everywhere.
macro_rules! counters {
    ($(#[$meta:meta])* $vis:vis enum $name:ident { $($(#[$vmeta:meta])* $variant:ident = $text:literal,)+ }) => {
        $(#[$meta])*
        #[repr(u32)]
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        $vis enum $name { $($(#[$vmeta])* $variant,)+ }

        impl $name {
            /// Every counter, in index order.
            pub const ALL: &'static [Self] = &[$(Self::$variant,)+];
            pub const COUNT: usize = Self::ALL.len();

            /// The name used in `pl stats`, JSON, metrics and docs.
            pub const fn name(self) -> &'static str {
                match self { $(Self::$variant => $text,)+ }
            }

            /// The counter with this name.
            pub fn from_name(name: &str) -> Option<Self> {
                Self::ALL.iter().copied().find(|c| c.name() == name)
            }
        }
    };
}

counters! {
    /// One per-interface counter.
    pub enum IfaceCounter {
        /// Frames seen on the interface.
        RxPackets = "rx_packets",
        /// Bytes of those frames, from the Ethernet header on (no FCS).
        RxBytes = "rx_bytes",
        /// ARP frames.
        Arp = "arp",
        /// IPv4 frames carrying TCP.
        Ipv4Tcp = "ipv4_tcp",
        /// IPv4 frames carrying UDP.
        Ipv4Udp = "ipv4_udp",
        /// IPv4 frames carrying anything else (ICMP included).
        Ipv4Other = "ipv4_other",
        /// Frames that are neither ARP, IPv4 nor IPv6 (VLAN-tagged, ...). The name is older
        /// than IPv6 support and kept for dashboards.
        NonIpv4 = "non_ipv4",
        /// Frames cut short inside a header they announce, or with an impossible IPv4 header.
        Malformed = "malformed",
        /// ARP requests for one of our addresses, answered with the interface's MAC.
        ArpReplied = "arp_replied",
        /// ARP replies from a target, whose MAC was learned.
        ArpLearned = "arp_learned",
        /// Dropped: ARP not for one of our addresses on this network.
        DroppedArp = "dropped_arp",
        /// Dropped: IPv4 TCP/UDP to an address that is no endpoint or NLB address here.
        DroppedNotOurs = "dropped_not_ours",
        /// Dropped: to an NLB address, matching no flow (the provider cannot initiate).
        DroppedNoFlow = "dropped_no_flow",
        /// Dropped: a source no router forwards (0/8, 127/8, 224/4 multicast, 240/4,
        /// broadcast), whatever allowed_sources says, as Linux drops martians.
        DroppedMartian = "dropped_martian",
        /// Passed to the kernel untouched: the Ethernet destination is neither this
        /// interface's MAC nor (for ARP) broadcast, so the frame is not for pl.
        PassedNotOurMac = "passed_not_our_mac",
        /// Dropped: cut short inside a header it announces (Ethernet, ARP, IPv4, TCP, UDP,
        /// ICMP), or shorter than its IPv4 total length.
        DroppedTruncated = "dropped_truncated",
        /// Dropped: IPv4 version not 4, IHL below 5 or past the frame, total length below
        /// the header, or a header checksum that does not verify.
        DroppedBadIpv4 = "dropped_bad_ipv4",
        /// Dropped: TCP data offset below 5 or past the packet; UDP length below 8 (zero
        /// included) or past the packet.
        DroppedBadL4 = "dropped_bad_l4",
        /// Dropped: IPv4 with options (the data path rewrites fixed offsets, as Katran does).
        DroppedIpOptions = "dropped_ip_options",
        /// Dropped: an IPv4 fragment, first or not (no reassembly; PMTU discovery works
        /// through endpoints instead).
        DroppedFragment = "dropped_fragment",
        /// Dropped: 802.1Q or 802.1ad tagged (pl's interfaces carry untagged frames).
        DroppedVlan = "dropped_vlan",
        /// Dropped: neither ARP, IPv4 nor IPv6 (the name predates IPv6 support).
        DroppedNonIpv4 = "dropped_non_ipv4",
        /// Dropped: IPv4 protocol other than TCP, UDP and ICMP.
        DroppedProtocol = "dropped_protocol",
        /// Dropped: ICMP or ICMPv6 that is no error about a flow pl holds (echo included)
        /// and no neighbour discovery.
        DroppedIcmp = "dropped_icmp",
        /// ICMP and ICMPv6 errors about a flow, translated and sent on to the flow's other
        /// side.
        IcmpTranslated = "icmp_translated",
        /// ICMP or ICMPv6 time exceeded sent back to a sender whose packet's TTL or hop
        /// limit expired here.
        IcmpTimeExceeded = "icmp_time_exceeded",
        /// ICMP fragmentation needed sent back to a sender whose DF packet is larger than
        /// the egress interface's MTU (pl does not fragment), or ICMPv6 packet too big for
        /// an IPv6 one.
        IcmpFragNeeded = "icmp_frag_needed",
        /// Frames the program returned `XDP_PASS` for.
        XdpPass = "xdp_pass",
        /// Frames the program returned `XDP_DROP` for.
        XdpDrop = "xdp_drop",
        /// Frames the program returned `XDP_TX` for.
        XdpTx = "xdp_tx",
        /// Frames the program returned `XDP_REDIRECT` for.
        XdpRedirect = "xdp_redirect",
        /// IPv6 frames carrying TCP (after any extension headers).
        Ipv6Tcp = "ipv6_tcp",
        /// IPv6 frames carrying UDP.
        Ipv6Udp = "ipv6_udp",
        /// IPv6 frames carrying anything else (ICMPv6 and neighbour discovery included).
        Ipv6Other = "ipv6_other",
        /// Neighbour solicitations for one of our IPv6 addresses, answered with an
        /// advertisement carrying the interface's MAC.
        NdpReplied = "ndp_replied",
        /// Neighbour advertisements from a target or next hop, whose MAC was learned.
        NdpLearned = "ndp_learned",
        /// Dropped: neighbour discovery that is invalid (RFC 4861 checks) or not for one of
        /// our addresses, router solicitations and other ICMPv6 pl does not answer.
        DroppedNdp = "dropped_ndp",
        /// Dropped: IPv6 version not 6, or a payload length past the frame.
        DroppedBadIpv6 = "dropped_bad_ipv6",
        /// Dropped: IPv6 with AH, ESP, no next header, or more extension headers than the
        /// walk reads.
        DroppedExtHeaders = "dropped_ext_headers",
        /// Passed to the kernel: ARP requests and neighbour solicitations for the network's
        /// DNS address, which pl's DNS server answers from its own namespace.
        PassedDns = "passed_dns",
        /// Dropped: a frame to the network's DNS address past `[dns] max_qps` on this CPU
        /// (a flood stops in XDP, not in the forwarding CPU's stack).
        DroppedDnsRate = "dropped_dns_rate",
    }
}

counters! {
    /// One per-endpoint counter.
    pub enum EndpointCounter {
        /// Consumer -> provider packets and bytes forwarded.
        ToProviderPackets = "to_provider_packets",
        ToProviderBytes = "to_provider_bytes",
        /// Provider -> consumer packets and bytes forwarded.
        ToConsumerPackets = "to_consumer_packets",
        ToConsumerBytes = "to_consumer_bytes",
        /// Flows created.
        NewFlows = "new_flows",
        /// SYNs and SYN-ACKs whose MSS option was lowered to what the smaller of the two
        /// networks' MTUs carries.
        MssClamped = "mss_clamped",
        /// Refused: no listener on that protocol and port.
        RefusedNoListener = "refused_no_listener",
        /// Refused: the service has not accepted this endpoint.
        RefusedNotAccepted = "refused_not_accepted",
        /// Refused: source not in the endpoint's allowed_sources.
        RefusedSource = "refused_source",
        /// Refused: the source is one of pl's own addresses on that network (an endpoint
        /// or NLB address): spoofed.
        RefusedSpoofed = "refused_spoofed",
        /// Refused: no healthy, resolved target in an eligible zone.
        RefusedNoTarget = "refused_no_target",
        /// Refused: no free SNAT port after the probes.
        RefusedSnatExhausted = "refused_snat_exhausted",
        /// Refused: TTL would reach zero.
        RefusedTtl = "refused_ttl",
        /// Refused: larger than the egress interface's MTU (with DF, answered with ICMP
        /// fragmentation needed; without, dropped: pl does not fragment).
        RefusedTooBig = "refused_too_big",
        /// Refused: the flow table is full.
        RefusedFlowTableFull = "refused_flow_table_full",
        /// Refused: a TCP packet with no flow that is not a SYN (a bare ACK, FIN or RST
        /// opens nothing).
        RefusedNotSyn = "refused_not_syn",
        /// Established flows removed by a reload whose config refuses them (source no
        /// longer allowed, endpoint no longer accepted or gone).
        Revoked = "revoked",
    }
}

/// Counter slots per interface: room past [`IfaceCounter::COUNT`] so a new counter does not
/// change the pinned map's value size, which would make a restart drop the flows.
pub const IFACE_COUNTERS: usize = 48;
/// Counter slots per endpoint, with room to grow likewise.
pub const ENDPOINT_COUNTERS: usize = 32;
const _: () = assert!(IfaceCounter::COUNT <= IFACE_COUNTERS);
const _: () = assert!(EndpointCounter::COUNT <= ENDPOINT_COUNTERS);

impl IfaceCounter {
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

/// Value of [`crate::maps::ENDPOINT_STATS_MAP`]: one CPU's counters for one endpoint.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Pod, Zeroable)]
pub struct EndpointStats {
    pub counters: [u64; ENDPOINT_COUNTERS],
}

impl Default for EndpointStats {
    fn default() -> Self {
        Self::zeroed()
    }
}

impl EndpointStats {
    pub const fn get(&self, counter: EndpointCounter) -> u64 {
        self.counters[counter as usize]
    }

    pub fn accumulate(&mut self, other: &Self) {
        for (a, b) in self.counters.iter_mut().zip(other.counters.iter()) {
            *a = a.wrapping_add(*b);
        }
    }
}

#[cfg(feature = "user")]
mod user {
    use super::*;
    // SAFETY: repr(C) arrays of u64, no padding, every bit pattern valid.
    unsafe impl aya::Pod for IfaceStats {}
    unsafe impl aya::Pod for EndpointStats {}
}

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
        for (i, c) in EndpointCounter::ALL.iter().enumerate() {
            assert_eq!(*c as usize, i, "{c:?} is out of order in ALL");
            assert_eq!(
                EndpointCounter::from_name(c.name()),
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
        assert_eq!(size_of::<crate::iface::IfaceConfig>(), 16);
    }
}
