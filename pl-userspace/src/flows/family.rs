//! What userspace's walks of a flow table need of its slot type beyond what the table's
//! algorithms need: how a key hashes, where a flow's other half is, and what a report
//! shows. One implementation per address family, so the sweep, the counts and `pl flows`
//! are written once for both tables.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

use pl_common::{
    flow::{FLOW_FORWARD, FlowKey, FlowValue, Half, same_flow},
    flow6::{Addr6, FlowKey6, FlowValue6, Slot6, same_flow6},
    flowtable::{Slot, TableSlot},
};

use super::{Counts, Flow, Sweep};

/// A flow table's slot type as userspace walks it: [`Slot`] (IPv4) or [`Slot6`] (IPv6).
pub trait Family:
    TableSlot<
        Key: Copy + Default + PartialEq + Eq + std::fmt::Debug,
        Entry: Half + Copy + Default + PartialEq + Eq + std::fmt::Debug,
    > + Copy
    + std::fmt::Debug
    + PartialEq
    + Eq
    + 'static
{
    /// `key`'s hash in a table seeded with `seed` (as the data path computes it).
    fn hash(key: &Self::Key, seed: u32) -> u32;
    fn proto(key: &Self::Key) -> u8;
    /// The network the key's packets arrive on.
    fn network(key: &Self::Key) -> u16;
    /// The key's source and destination.
    fn ends(key: &Self::Key) -> (SocketAddr, SocketAddr);
    /// The key of the other half of the flow whose entry under `key` is `entry`.
    fn reply_key(key: &Self::Key, entry: &Self::Entry) -> Self::Key;
    /// Whether `other`, found under [`Family::reply_key`], points back at `key`.
    fn same_flow(key: &Self::Key, entry: &Self::Entry, other: &Self::Entry) -> bool;
    fn endpoint(entry: &Self::Entry) -> u16;
    /// The rewritten source and destination.
    fn rewritten(entry: &Self::Entry) -> (SocketAddr, SocketAddr);
    /// Packets and bytes the entry's direction carried.
    fn carried(entry: &Self::Entry) -> (u32, u64);
    /// Counts the flow whose forward entry is `v` in `c`.
    fn count(c: &mut Counts, v: &Self::Entry);
    /// The entries `c` counts for this family's table.
    fn entries(c: &mut Counts) -> &mut u64;
    /// Where a sweep keeps the flows of this family it closed.
    fn closed(out: &mut Sweep) -> &mut Vec<Flow<Self>>;
    /// The network the entry's packets leave on.
    fn egress(entry: &Self::Entry) -> u16;
    fn dst_mac(entry: &Self::Entry) -> [u8; 6];
    fn set_dst_mac(entry: &mut Self::Entry, mac: [u8; 6]);
    fn set_last_seen(entry: &mut Self::Entry, last_seen: u32);
    /// A forward entry of `endpoint` and nothing else (what a sync removal names).
    fn forward_of(endpoint: u16) -> Self::Entry;
    /// Where the MAC, state bits and refresh time of the entry at `e` are, for writes in
    /// place into a live slot.
    fn fields(e: *mut Self::Entry) -> Fields;
}

/// Pointers to the words of an entry userspace writes in place (see [`Family::fields`]).
pub struct Fields {
    pub dst_mac: *mut [u8; 6],
    pub state: *mut u8,
    pub last_seen: *mut u32,
}

/// The fields of an entry type at `e`, by offset: no reference to shared memory is made.
macro_rules! fields_of {
    ($t:ty, $e:expr) => {
        Fields {
            dst_mac: $e
                .wrapping_byte_add(std::mem::offset_of!($t, dst_mac))
                .cast(),
            state: $e.wrapping_byte_add(std::mem::offset_of!($t, state)).cast(),
            last_seen: $e
                .wrapping_byte_add(std::mem::offset_of!($t, last_seen))
                .cast(),
        }
    };
}

/// The socket address of a wire-order IPv4 address and port.
pub fn addr(ip_be: u32, port_be: u16) -> SocketAddrV4 {
    SocketAddrV4::new(Ipv4Addr::from(ip_be.to_ne_bytes()), u16::from_be(port_be))
}

/// The socket address of an IPv6 address and wire-order port; an IPv4-mapped one (the
/// IPv4 side of a translated flow) as the IPv4 address it stands for.
pub fn addr6(ip: Addr6, port_be: u16) -> SocketAddr {
    let ip = Ipv6Addr::from(ip);
    let port = u16::from_be(port_be);
    match ip.to_ipv4_mapped() {
        Some(v4) => SocketAddrV4::new(v4, port).into(),
        None => SocketAddrV6::new(ip, port, 0, 0).into(),
    }
}

impl Family for Slot {
    #[inline]
    fn hash(key: &FlowKey, seed: u32) -> u32 {
        key.hash_with(seed)
    }
    fn proto(key: &FlowKey) -> u8 {
        key.proto
    }
    fn network(key: &FlowKey) -> u16 {
        key.network
    }
    fn ends(key: &FlowKey) -> (SocketAddr, SocketAddr) {
        (
            addr(key.src_be, key.sport_be).into(),
            addr(key.dst_be, key.dport_be).into(),
        )
    }
    #[inline]
    fn reply_key(key: &FlowKey, entry: &FlowValue) -> FlowKey {
        entry.reply_key(key.proto)
    }
    #[inline]
    fn same_flow(key: &FlowKey, entry: &FlowValue, other: &FlowValue) -> bool {
        same_flow(key, entry, other)
    }
    fn endpoint(entry: &FlowValue) -> u16 {
        entry.endpoint
    }
    fn rewritten(v: &FlowValue) -> (SocketAddr, SocketAddr) {
        (
            addr(v.new_src_be, v.new_sport_be).into(),
            addr(v.new_dst_be, v.new_dport_be).into(),
        )
    }
    fn carried(v: &FlowValue) -> (u32, u64) {
        (v.packets, v.bytes)
    }
    #[inline]
    fn count(c: &mut Counts, v: &FlowValue) {
        c.add(v);
    }
    fn entries(c: &mut Counts) -> &mut u64 {
        &mut c.entries
    }
    fn closed(out: &mut Sweep) -> &mut Vec<Flow> {
        &mut out.closed
    }
    fn egress(v: &FlowValue) -> u16 {
        u16::from(v.egress)
    }
    fn dst_mac(v: &FlowValue) -> [u8; 6] {
        v.dst_mac
    }
    fn set_dst_mac(v: &mut FlowValue, mac: [u8; 6]) {
        v.dst_mac = mac;
    }
    fn set_last_seen(v: &mut FlowValue, last_seen: u32) {
        v.last_seen = last_seen;
    }
    fn forward_of(endpoint: u16) -> FlowValue {
        FlowValue {
            endpoint,
            dir: FLOW_FORWARD,
            ..FlowValue::default()
        }
    }
    fn fields(e: *mut FlowValue) -> Fields {
        fields_of!(FlowValue, e)
    }
}

impl Family for Slot6 {
    #[inline]
    fn hash(key: &FlowKey6, seed: u32) -> u32 {
        key.hash_with(seed)
    }
    fn proto(key: &FlowKey6) -> u8 {
        key.proto
    }
    fn network(key: &FlowKey6) -> u16 {
        key.network
    }
    fn ends(key: &FlowKey6) -> (SocketAddr, SocketAddr) {
        (addr6(key.src, key.sport_be), addr6(key.dst, key.dport_be))
    }
    #[inline]
    fn reply_key(key: &FlowKey6, entry: &FlowValue6) -> FlowKey6 {
        entry.reply_key(key.proto)
    }
    #[inline]
    fn same_flow(key: &FlowKey6, entry: &FlowValue6, other: &FlowValue6) -> bool {
        same_flow6(key, entry, other)
    }
    fn endpoint(entry: &FlowValue6) -> u16 {
        entry.endpoint
    }
    fn rewritten(v: &FlowValue6) -> (SocketAddr, SocketAddr) {
        (
            addr6(v.new_src, v.new_sport_be),
            addr6(v.new_dst, v.new_dport_be),
        )
    }
    fn carried(v: &FlowValue6) -> (u32, u64) {
        (v.packets, v.bytes)
    }
    #[inline]
    fn count(c: &mut Counts, v: &FlowValue6) {
        c.add6(v);
    }
    fn entries(c: &mut Counts) -> &mut u64 {
        &mut c.entries6
    }
    fn closed(out: &mut Sweep) -> &mut Vec<Flow<Slot6>> {
        &mut out.closed6
    }
    fn egress(v: &FlowValue6) -> u16 {
        u16::from(v.egress)
    }
    fn dst_mac(v: &FlowValue6) -> [u8; 6] {
        v.dst_mac
    }
    fn set_dst_mac(v: &mut FlowValue6, mac: [u8; 6]) {
        v.dst_mac = mac;
    }
    fn set_last_seen(v: &mut FlowValue6, last_seen: u32) {
        v.last_seen = last_seen;
    }
    fn forward_of(endpoint: u16) -> FlowValue6 {
        FlowValue6 {
            endpoint,
            dir: FLOW_FORWARD,
            ..FlowValue6::default()
        }
    }
    fn fields(e: *mut FlowValue6) -> Fields {
        fields_of!(FlowValue6, e)
    }
}
