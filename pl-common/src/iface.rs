//! Per-interface configuration the program looks up by ingress ifindex.

use bytemuck::{Pod, Zeroable};

/// Value of [`crate::maps::IFACES_MAP`], an array indexed by ifindex (as the kernel gives it
/// in `xdp_md.ingress_ifindex`): one cache-hot load per frame, no hashing. An entry without
/// [`IFACE_ACTIVE`] is an interface pl does not manage.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct IfaceConfig {
    /// Index into [`crate::maps::IFACE_STATS_MAP`]; below [`crate::maps::MAX_IFACES`].
    pub slot: u32,
    /// The network behind this interface (index into the egress devmap).
    pub network: u16,
    /// [`IFACE_ACTIVE`], [`IFACE_DEDICATED`].
    pub flags: u16,
    /// The interface's own MAC: the source of what pl sends and of its ARP answers.
    pub mac: [u8; 6],
    /// The smallest MTU of pl's interfaces: a packet that fits it fits any egress, so only
    /// a larger one has its egress MTU looked up (0: always look).
    pub mtu_floor: u16,
}

/// Value of [`crate::maps::NET_INFO_MAP`], by network: its interface's MTU (0: not known)
/// and MAC, the source MAC of every frame pl sends to that network (a flow entry keeps
/// only the destination's).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct NetInfo {
    pub mtu: u32,
    pub mac: [u8; 6],
    pub _pad: [u8; 2],
}

/// The entry describes an interface pl manages.
pub const IFACE_ACTIVE: u16 = 2;

/// The interface belongs to pl (from `--config`): frames that are not ARP or IPv4 TCP/UDP
/// to one of our addresses are dropped. Without it (`--interface` only), pl only counts and
/// passes every frame on.
pub const IFACE_DEDICATED: u16 = 1;

/// A service's provider network: targets live here, so replies to ARP probes (sender
/// 0.0.0.0) teach their MACs, as a node that serves no zone yet resolves them.
pub const IFACE_PROVIDER: u16 = 4;

#[cfg(feature = "user")]
// SAFETY: repr(C), no padding, every bit pattern valid (checked by the bytemuck derive).
unsafe impl aya::Pod for IfaceConfig {}

#[cfg(feature = "user")]
// SAFETY: as above.
unsafe impl aya::Pod for NetInfo {}
