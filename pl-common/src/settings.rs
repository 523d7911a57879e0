//! Run-time settings the data path reads from `PL_SETTINGS[0]`.

use bytemuck::{Pod, Zeroable};

#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Pod, Zeroable)]
#[cfg_attr(feature = "user", derive(serde::Serialize, serde::Deserialize))]
pub struct Settings {
    /// Idle timeouts by flow state (see `flow::idle_limit_ns`): TCP established, TCP
    /// half-open, TCP half-closed (one FIN), TCP closing (FIN both ways or RST), UDP
    /// replied, UDP one-way.
    pub tcp_idle_ns: u64,
    pub tcp_transient_ns: u64,
    pub tcp_half_closed_ns: u64,
    pub tcp_closing_ns: u64,
    pub udp_idle_ns: u64,
    pub udp_oneway_ns: u64,
    /// SNAT ports are taken from [snat_port_min, snat_port_max] (host order).
    pub snat_port_min: u16,
    pub snat_port_max: u16,
    /// Frames to a network's DNS address each CPU passes per 100 ms window (a tenth of
    /// `[dns] max_qps`); the rest are dropped before the stack.
    pub dns_per_window: u32,
}

impl Settings {
    /// The shortest idle timeout of any state: a direction used within it keeps its flow
    /// alive whatever the state, so the data path need not read the other half.
    #[inline(always)]
    pub const fn min_idle_ns(&self) -> u64 {
        let mut m = self.tcp_idle_ns;
        let others = [
            self.tcp_transient_ns,
            self.tcp_half_closed_ns,
            self.tcp_closing_ns,
            self.udp_idle_ns,
            self.udp_oneway_ns,
        ];
        let mut i = 0;
        while i < others.len() {
            if others[i] < m {
                m = others[i];
            }
            i += 1;
        }
        m
    }
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            tcp_idle_ns: 350 * 1_000_000_000,
            tcp_transient_ns: 60 * 1_000_000_000,
            tcp_half_closed_ns: 120 * 1_000_000_000,
            tcp_closing_ns: 10 * 1_000_000_000,
            udp_idle_ns: 120 * 1_000_000_000,
            udp_oneway_ns: 30 * 1_000_000_000,
            snat_port_min: 1024,
            snat_port_max: 65535,
            dns_per_window: 1000,
        }
    }
}

/// Probes per new flow before SNAT counts as exhausted.
pub const SNAT_PROBES: u32 = 32;

/// SNAT port in [`min`, `max`] for probe `i` of a flow whose consumer source port is
/// `orig` (host order) and whose hash is `h`. Probe 0 keeps the consumer's port where the range allows (as
/// Cilium does), so the provider often sees the client's own port; later probes walk the
/// range from a hash-chosen point, so concurrent flows rarely probe the same ports.
#[inline(always)]
pub const fn snat_port(min: u16, max: u16, orig: u16, h: u32, i: u32) -> u16 {
    if i == 0 && orig >= min && orig <= max {
        return orig;
    }
    let span = (max as u64).saturating_sub(min as u64) + 1;
    // 7919 is prime: unless it divides the span, consecutive probes are distinct ports.
    (min as u64 + (h as u64 + i as u64 * 7919) % span) as u16
}

#[cfg(feature = "user")]
// SAFETY: repr(C) with explicit padding, every bit pattern valid (bytemuck-checked).
unsafe impl aya::Pod for Settings {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shortest_timeout_of_any_state_bounds_the_fast_path() {
        let mut s = Settings::default();
        assert_eq!(s.min_idle_ns(), s.tcp_closing_ns, "10 s by default");
        s.udp_oneway_ns = 3_000_000_000;
        assert_eq!(s.min_idle_ns(), 3_000_000_000);
    }

    #[test]
    fn snat_ports_stay_in_range_and_probes_differ() {
        let s = Settings {
            snat_port_min: 2000,
            snat_port_max: 2009,
            ..Settings::default()
        };
        for h in [0, 1, u32::MAX, 0x0ba9_c7ca] {
            let mut seen = [false; 10];
            for i in 1..=10 {
                let p = snat_port(s.snat_port_min, s.snat_port_max, 1, h, i);
                assert!((2000..=2009).contains(&p), "{p} out of range");
                seen[usize::from(p - 2000)] = true;
            }
            // 7919 is coprime with the span, so 10 probes visit all 10 ports.
            assert!(seen.iter().all(|s| *s), "probes of {h:#x} repeat: {seen:?}");
        }
        let one = Settings {
            snat_port_min: 5,
            snat_port_max: 5,
            ..Settings::default()
        };
        assert_eq!(
            snat_port(one.snat_port_min, one.snat_port_max, 1, 12345, 3),
            5
        );
        // Probe 0 keeps the consumer's port when it is in range, and only then.
        assert_eq!(
            snat_port(s.snat_port_min, s.snat_port_max, 2005, 99, 0),
            2005
        );
        assert!((2000..=2009).contains(&snat_port(s.snat_port_min, s.snat_port_max, 40000, 99, 0)));
    }
}
