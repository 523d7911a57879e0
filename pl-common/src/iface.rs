//! Per-interface configuration the program looks up by ingress ifindex.

use bytemuck::{Pod, Zeroable};

/// Value of [`crate::maps::IFACES_MAP`], keyed by ifindex (host order, as the kernel gives it
/// in `xdp_md.ingress_ifindex`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct IfaceConfig {
    /// Index into [`crate::maps::IFACE_STATS_MAP`]; below [`crate::maps::MAX_IFACES`].
    pub slot: u32,
}

#[cfg(feature = "user")]
// SAFETY: repr(C), no padding, every bit pattern valid (checked by the bytemuck derive).
unsafe impl aya::Pod for IfaceConfig {}
