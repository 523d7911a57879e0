//! The new-flow policy: one lookup of (network, endpoint address, protocol, port) gives
//! everything a consumer's first packet needs (endpoint, acceptance, listener, Maglev
//! table, NLB addresses, SNAT range). Userspace derives it from the model; XDP never
//! joins endpoint, listener and service tables per packet.

use bytemuck::{Pod, Zeroable};

use crate::service::MAX_ZONES;

/// Key of `PL_POLICY`: a listener's (protocol, port) on one endpoint address.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Pod, Zeroable)]
pub struct PolicyKey {
    pub addr_be: u32,
    pub network: u16,
    pub port_be: u16,
    pub proto: u8,
    pub _pad: [u8; 3],
}

impl PolicyKey {
    /// The policy key of a consumer packet: its destination, protocol and port.
    #[inline(always)]
    pub const fn of(k: &crate::flow::FlowKey) -> Self {
        Self {
            addr_be: k.dst_be,
            network: k.network,
            port_be: k.dport_be,
            proto: k.proto,
            _pad: [0; 3],
        }
    }
}

/// The endpoint carries traffic: accepted by its service (or acceptance not required).
/// Key of the IPv6 policy map: a listener on an IPv6 endpoint address.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Pod, Zeroable)]
pub struct PolicyKey6 {
    pub addr: [u8; 16],
    pub network: u16,
    pub port_be: u16,
    pub proto: u8,
    pub _pad: [u8; 3],
}

impl PolicyKey6 {
    #[inline(always)]
    pub const fn of(k: &crate::flow6::FlowKey6) -> Self {
        Self {
            addr: k.dst,
            network: k.network,
            port_be: k.dport_be,
            proto: k.proto,
            _pad: [0; 3],
        }
    }
}

/// Value of the IPv6 policy map: [`Policy`] with the zones' IPv6 NLB addresses (all zero:
/// none in that zone).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct Policy6 {
    pub nlb: [[u8; 16]; MAX_ZONES],
    pub maglev_table: u32,
    pub endpoint: u16,
    pub target_port_be: u16,
    pub provider_network: u16,
    pub snat_port_min: u16,
    pub snat_port_max: u16,
    pub flags: u8,
    pub _pad: u8,
}

pub const POLICY_ACCEPTED: u8 = 1;
/// The endpoint admits any source: the allowed-sources lookup is skipped.
pub const POLICY_ANY_SOURCE: u8 = 2;
/// An IPv4 listener whose service has IPv6 targets: its packets go to the IPv6 path, where
/// `PL_POLICY6` holds the policy under the address's IPv4-mapped form
/// ([`crate::flow6::mapped`]).
pub const POLICY_XLAT: u8 = 4;

/// Value of `PL_POLICY`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct Policy {
    /// The source a flow gets, per its target's zone index (0: none): the NLB address of
    /// the endpoint address's zone for every target where the service has one there (flows
    /// follow the zone that carried them in), else the target zone's own.
    pub nlb_be: [u32; MAX_ZONES],
    /// Which Maglev table picks the target (`service::maglev_table` of the service and the
    /// address's zone, or the cross-zone table).
    pub maglev_table: u32,
    pub endpoint: u16,
    pub target_port_be: u16,
    /// The provider network (its MAC, forwarded frames' source, is in `PL_NET_INFO`).
    pub provider_network: u16,
    /// SNAT ports come from [snat_port_min, snat_port_max] (host order; `[limits]`).
    pub snat_port_min: u16,
    pub snat_port_max: u16,
    /// [`POLICY_ACCEPTED`], [`POLICY_ANY_SOURCE`].
    pub flags: u8,
    pub _pad: u8,
}

#[cfg(feature = "user")]
mod user {
    use super::*;
    // SAFETY: repr(C) with explicit padding, every bit pattern valid (bytemuck-checked).
    unsafe impl aya::Pod for PolicyKey {}
    unsafe impl aya::Pod for Policy {}
    unsafe impl aya::Pod for PolicyKey6 {}
    unsafe impl aya::Pod for Policy6 {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_stay_small() {
        // The key is hashed per new flow; the value is one 32-byte read.
        assert_eq!(size_of::<PolicyKey>(), 12);
        assert_eq!(size_of::<Policy>(), 32);
    }
}
