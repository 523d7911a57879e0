//! Types shared by the benchmark's XDP programs and `pl bench`.

use bytemuck::{Pod, Zeroable};

pub const GEN_PROGRAM: &str = "pl_gen";
pub const SINK_PROGRAM: &str = "pl_sink";
pub const BARE_PROGRAM: &str = "pl_bare";
/// `ARRAY<GenConfig>` of one element.
pub const GEN_CONFIG_MAP: &str = "GEN_CONFIG";
/// `PERCPU_ARRAY<u64>`: [0] frames sent, [1] per-CPU sequence.
pub const GEN_COUNT_MAP: &str = "GEN_COUNT";
/// `PERCPU_ARRAY<u64>`: [0] frames received, [1] bytes received.
pub const SINK_COUNT_MAP: &str = "SINK_COUNT";
/// `DEVMAP`: [0] the interface the bare redirect sends to.
pub const BARE_EGRESS_MAP: &str = "BARE_EGRESS";

/// Header bytes the generator writes at the front of every frame.
pub const GEN_HEADER: usize = 64;

/// How the generator varies its frames.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Pod, Zeroable)]
pub struct GenConfig {
    /// Ethernet + IPv4 + L4 header of the frame, rewritten in full on every frame (pages
    /// come back from the data path rewritten). Only the first `header_len` bytes count.
    pub header: [u8; GEN_HEADER],
    pub header_len: u32,
    /// Distinct flows to cycle through; 0: every frame a new flow.
    pub flows: u32,
    /// Generator CPUs, so each CPU's sequence covers its own share of the flows.
    pub cpus: u32,
    pub _pad: u32,
}

impl Default for GenConfig {
    fn default() -> Self {
        Self::zeroed()
    }
}

/// Source ports per source address; flow `i` uses port `1024 + i % PORTS_PER_ADDR` and
/// source address `base + i / PORTS_PER_ADDR`.
pub const PORTS_PER_ADDR: u32 = 60_000;

/// The (source address offset, source port) of flow `i`.
#[inline(always)]
pub const fn flow_source(i: u32) -> (u32, u16) {
    (i / PORTS_PER_ADDR, (1024 + i % PORTS_PER_ADDR) as u16)
}

#[cfg(feature = "user")]
// SAFETY: repr(C), explicit padding, every bit pattern valid (bytemuck-checked).
unsafe impl aya::Pod for GenConfig {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flow_sources_are_distinct_and_ports_unprivileged() {
        let a = flow_source(0);
        let b = flow_source(PORTS_PER_ADDR - 1);
        let c = flow_source(PORTS_PER_ADDR);
        assert_eq!(a, (0, 1024));
        assert_eq!(b, (0, 1024 + PORTS_PER_ADDR as u16 - 1));
        assert_eq!(c, (1, 1024));
        assert!(b.1 < u16::MAX);
    }
}
