//! Endpoint lookup: which of our addresses a frame is for, and who may reach it.
//!
//! Addresses and ports are in network byte order: `*_be` fields hold the bytes as on the
//! wire, read into an integer with `from_ne_bytes` (so `u32::from_ne_bytes(ip.octets())`).

use bytemuck::{Pod, Zeroable};

/// What an [`AddrKey`] is.
pub const ADDR_ENDPOINT: u8 = 1;
pub const ADDR_NLB: u8 = 2;
/// A network's DNS address (`dns_addresses`): its ARP and neighbour solicitations go to
/// the stack, where pl's DNS server owns it; nothing is forwarded to it.
pub const ADDR_DNS: u8 = 3;

/// Key of `PL_ADDRS`: one of our addresses on one network.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Pod, Zeroable)]
pub struct AddrKey {
    pub addr_be: u32,
    pub network: u16,
    pub _pad: u16,
}

impl AddrKey {
    pub const fn new(addr_be: u32, network: u16) -> Self {
        Self {
            addr_be,
            network,
            _pad: 0,
        }
    }
}

/// Value of `PL_ADDRS`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct AddrInfo {
    /// [`ADDR_ENDPOINT`], [`ADDR_NLB`] or [`ADDR_DNS`].
    pub kind: u8,
    /// Zone index of this address.
    pub zone: u8,
    /// Endpoint id (for an endpoint address) or service id (for an NLB address).
    pub id: u16,
}

/// Data of an LPM key in `PL_SOURCES`: endpoint id (big-endian, so it is matched as
/// the first 32 prefix bits) then the source address. Prefix length = 32 + CIDR length.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct SourceKey {
    pub endpoint_be: u32,
    pub addr_be: u32,
}

impl SourceKey {
    pub const fn new(endpoint: u16, addr_be: u32) -> Self {
        Self {
            endpoint_be: (endpoint as u32).to_be(),
            addr_be,
        }
    }
}

/// Key of the IPv6 address map ([`crate::maps::ADDRS6_MAP`]), as [`AddrKey`]; also of the
/// IPv6 neighbour map. Address in network byte order.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Pod, Zeroable)]
pub struct AddrKey6 {
    pub addr: [u8; 16],
    pub network: u16,
    pub _pad: u16,
}

impl AddrKey6 {
    pub const fn new(addr: [u8; 16], network: u16) -> Self {
        Self {
            addr,
            network,
            _pad: 0,
        }
    }
}

/// LPM key of the IPv6 allowed-sources trie: endpoint id (32 bits, big-endian, always
/// matched whole) then the address, as [`SourceKey`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct SourceKey6 {
    pub endpoint_be: u32,
    pub addr: [u8; 16],
}

impl SourceKey6 {
    pub const fn new(endpoint: u16, addr: [u8; 16]) -> Self {
        Self {
            endpoint_be: (endpoint as u32).to_be(),
            addr,
        }
    }
}

#[cfg(feature = "user")]
mod user {
    use super::*;
    unsafe impl aya::Pod for AddrKey6 {}
    unsafe impl aya::Pod for SourceKey6 {}
    // SAFETY: all repr(C) with explicit padding, every bit pattern valid (bytemuck-checked).
    unsafe impl aya::Pod for AddrKey {}
    unsafe impl aya::Pod for AddrInfo {}
    unsafe impl aya::Pod for SourceKey {}
}
