//! IPv6 flows: the same two-entry model as [`crate::flow`] (a forward entry under the
//! consumer's tuple, a reply entry under the provider-side tuple reversed that is also the
//! SNAT port's reservation), in a table of its own. A 40-byte key and 16-byte addresses do
//! not fit the IPv4 table's one-line slot, and IPv4 must not pay for them: a [`Slot6`] is
//! two cache lines, the key and what a packet needs in the first.

use bytemuck::{Pod, Zeroable};

use crate::{
    flow::{CREATED_MASK, FLOW_FORWARD, FLOW_REPLY, Half, coarse},
    hash::murmur3_words10,
};

/// An IPv6 address, network byte order (as on the wire).
pub type Addr6 = [u8; 16];

/// The IPv4-mapped form `::ffff:a.b.c.d` of an IPv4 address (network order), as a
/// translated flow's IPv4 side is keyed in the IPv6 table. Its words sum to the IPv4
/// address's in ones' complement (0xffff is zero there), so an IPv6 pseudo-header over
/// mapped addresses sums as the IPv4 pseudo-header does: [`FlowValue6::delta`] between a
/// real and a mapped tuple is the L4 checksum change of the family translation.
#[inline(always)]
pub const fn mapped(addr_be: u32) -> Addr6 {
    let b = addr_be.to_ne_bytes();
    [
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, b[0], b[1], b[2], b[3],
    ]
}

/// The IPv4 address (network order) behind an IPv4-mapped address, if it is one.
#[inline(always)]
pub fn unmapped(a: &Addr6) -> Option<u32> {
    let w = |i: usize| u32::from_ne_bytes([a[i], a[i + 1], a[i + 2], a[i + 3]]);
    (w(0) == 0 && w(4) == 0 && w(8) == u32::from_ne_bytes([0, 0, 0xff, 0xff])).then(|| w(12))
}

/// Key of the IPv6 flow table. Addresses and ports in network byte order; a translated
/// flow's IPv4 side is keyed by [`mapped`] addresses. Aligned to 4
/// so its hash reads it in place as words (a copy costs 40 bytes of BPF stack).
#[repr(C, align(4))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Pod, Zeroable)]
pub struct FlowKey6 {
    pub src: Addr6,
    pub dst: Addr6,
    pub sport_be: u16,
    pub dport_be: u16,
    /// Network the packet arrives on.
    pub network: u16,
    pub proto: u8,
    pub _pad: u8,
}

const _: () = assert!(size_of::<FlowKey6>() == 40);

impl FlowKey6 {
    /// The IPv4 key a key of mapped addresses stands for (the IPv4 side of a translated
    /// flow, as the IPv4 table and health probes key it); None if either address is not
    /// mapped.
    #[inline(always)]
    pub fn unmapped(&self) -> Option<crate::flow::FlowKey> {
        Some(crate::flow::FlowKey {
            src_be: unmapped(&self.src)?,
            dst_be: unmapped(&self.dst)?,
            sport_be: self.sport_be,
            dport_be: self.dport_be,
            network: self.network,
            proto: self.proto,
            _pad: 0,
        })
    }

    /// murmur3 of the key's 40 bytes (Maglev slot, SNAT walk), as [`crate::flow::FlowKey::hash`].
    #[inline(always)]
    pub fn hash(&self) -> u32 {
        self.hash_with(crate::flow::FLOW_HASH_SEED)
    }

    /// The same with the table's own `seed`.
    #[inline(always)]
    pub fn hash_with(&self, seed: u32) -> u32 {
        murmur3_words10(bytemuck::cast_ref::<Self, [u32; 10]>(self), seed)
    }
}

/// An IPv6 flow entry: [`crate::flow::FlowValue`] with 16-byte addresses. 64 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct FlowValue6 {
    /// [`coarse`] clock when the entry was created or last refreshed.
    pub last_seen: u32,
    pub new_src: Addr6,
    pub new_dst: Addr6,
    pub new_sport_be: u16,
    pub new_dport_be: u16,
    pub dst_mac: [u8; 6],
    pub egress: u8,
    /// [`FLOW_FORWARD`] or [`FLOW_REPLY`].
    pub dir: u8,
    pub endpoint: u16,
    /// As [`crate::flow::FlowValue::state`].
    pub state: u8,
    pub _pad: u8,
    pub packets: u32,
    pub bytes: u64,
}

const _: () = assert!(size_of::<FlowValue6>() == 64);

impl Half for FlowValue6 {
    #[inline(always)]
    fn last_seen(&self) -> u32 {
        self.last_seen
    }
    #[inline(always)]
    fn state(&self) -> u8 {
        self.state
    }
    #[inline(always)]
    fn dir(&self) -> u8 {
        self.dir
    }
}

/// One slot of the IPv6 table: control word, key and the entry's first bytes in the first
/// cache line, the rest in the second.
#[repr(C, align(64))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct Slot6 {
    /// As [`crate::flowtable::Slot::ctl`].
    pub ctl: u64,
    pub key: FlowKey6,
    pub entry: FlowValue6,
    pub _tail: [u8; 16],
}

const _: () = assert!(size_of::<Slot6>() == 128);

crate::table_slot!(Slot6, FlowKey6, FlowValue6);

impl FlowValue6 {
    /// The key replies to the packet this value produces will carry.
    #[inline(always)]
    pub const fn reply_key(&self, proto: u8) -> FlowKey6 {
        FlowKey6 {
            src: self.new_dst,
            dst: self.new_src,
            sport_be: self.new_dport_be,
            dport_be: self.new_sport_be,
            network: self.egress as u16,
            proto,
            _pad: 0,
        }
    }

    /// The TCP/UDP checksum delta for rewriting a packet that carries `old` as this entry
    /// says, for [`crate::flow::apply_delta`]. IPv6 has no header checksum; the addresses
    /// count through the pseudo-header.
    #[inline(always)]
    pub fn delta(&self, old: &FlowKey6) -> u32 {
        let mut acc = 0u32;
        acc = addr_delta(acc, &old.src, &self.new_src);
        acc = addr_delta(acc, &old.dst, &self.new_dst);
        acc = word_delta(acc, port_word(old.sport_be), port_word(self.new_sport_be));
        acc = word_delta(acc, port_word(old.dport_be), port_word(self.new_dport_be));
        u32::from(crate::checksum::fold(acc))
    }
}

#[inline(always)]
const fn port_word(port_be: u16) -> u16 {
    u16::from_be_bytes(port_be.to_ne_bytes())
}

#[inline(always)]
pub(crate) const fn word_delta(acc: u32, old: u16, new: u16) -> u32 {
    acc + (!old as u32) + new as u32
}

/// Adds the delta of eight 16-bit words, folding so the sum never overflows.
#[inline(always)]
pub(crate) fn addr_delta(mut acc: u32, old: &Addr6, new: &Addr6) -> u32 {
    let mut i = 0;
    while i < 16 {
        acc = word_delta(
            acc,
            u16::from_be_bytes([old[i], old[i + 1]]),
            u16::from_be_bytes([new[i], new[i + 1]]),
        );
        i += 2;
    }
    u32::from(crate::checksum::fold(acc))
}

/// True if `entry`, found under `key`, and `other`, found under the key `entry` points to,
/// are two halves of one flow.
#[inline(always)]
pub fn same_flow6(key: &FlowKey6, entry: &FlowValue6, other: &FlowValue6) -> bool {
    other.dir != entry.dir && other.reply_key(key.proto) == *key
}

/// Where and how a new IPv6 flow goes, apart from its tuple.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct FlowPlan6 {
    pub now_ns: u64,
    /// Provider-side source: an NLB address and the SNAT port.
    pub nlb: Addr6,
    /// Provider-side destination.
    pub target: Addr6,
    pub snat_port_be: u16,
    pub target_port_be: u16,
    pub provider_network: u16,
    pub endpoint: u16,
    pub target_mac: [u8; 6],
    pub consumer_mac: [u8; 6],
    pub first_state: u8,
    pub _pad: u8,
    pub first_len: u16,
}

/// The two entries of a new IPv6 flow.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct FlowPair6 {
    pub forward: FlowValue6,
    pub reply_key: FlowKey6,
    pub reply: FlowValue6,
}

/// Scratch space for creating an IPv6 flow, one per CPU.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct NewFlow6 {
    pub plan: FlowPlan6,
    pub pair: FlowPair6,
}

impl FlowPair6 {
    pub fn new(key: &FlowKey6, plan: &FlowPlan6) -> Self {
        let mut pair = Self::zeroed();
        pair.fill(key, plan);
        pair
    }

    /// As [`crate::flow::FlowPair::fill`].
    #[inline(always)]
    pub fn fill(&mut self, key: &FlowKey6, p: &FlowPlan6) {
        let now = coarse(p.now_ns);
        self.forward = FlowValue6 {
            last_seen: now,
            new_src: p.nlb,
            new_dst: p.target,
            new_sport_be: p.snat_port_be,
            new_dport_be: p.target_port_be,
            dst_mac: p.target_mac,
            egress: p.provider_network as u8,
            dir: FLOW_FORWARD,
            endpoint: p.endpoint,
            state: p.first_state,
            _pad: 0,
            // The data path hands the opening packet on to be forwarded along the new
            // entry like any other, which counts it.
            packets: 0,
            bytes: 0,
        };
        self.reply_key = self.forward.reply_key(key.proto);
        self.reply = FlowValue6 {
            last_seen: now,
            new_src: key.dst,
            new_dst: key.src,
            new_sport_be: key.dport_be,
            new_dport_be: key.sport_be,
            dst_mac: p.consumer_mac,
            egress: key.network as u8,
            dir: FLOW_REPLY,
            endpoint: p.endpoint,
            state: 0,
            _pad: 0,
            packets: 0,
            bytes: 0,
        };
    }

    /// The creation time both slots keep.
    #[inline(always)]
    pub const fn created(p: &FlowPlan6) -> u32 {
        (p.now_ns / 1_000_000_000) as u32 & CREATED_MASK
    }
}

#[cfg(feature = "user")]
mod user {
    use super::*;
    // SAFETY: repr(C) with explicit padding, every bit pattern valid (bytemuck-checked).
    unsafe impl aya::Pod for FlowKey6 {}
    unsafe impl aya::Pod for FlowValue6 {}
    unsafe impl aya::Pod for Slot6 {}
    unsafe impl aya::Pod for NewFlow6 {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{flow::apply_delta, proto::IPPROTO_TCP, xlat::l4_checksum_v6};

    fn a(last: u8) -> Addr6 {
        let mut x = [0u8; 16];
        x[0] = 0xfd;
        x[15] = last;
        x
    }

    fn key() -> FlowKey6 {
        FlowKey6 {
            src: a(10),
            dst: a(100),
            sport_be: 40000u16.to_be(),
            dport_be: 443u16.to_be(),
            network: 1,
            proto: IPPROTO_TCP,
            _pad: 0,
        }
    }

    fn plan() -> FlowPlan6 {
        FlowPlan6 {
            now_ns: 7,
            nlb: a(250),
            target: a(11),
            snat_port_be: 40001u16.to_be(),
            target_port_be: 8443u16.to_be(),
            provider_network: 2,
            endpoint: 5,
            target_mac: [2, 0, 0, 0, 0, 0x11],
            consumer_mac: [2, 0, 0, 0, 0, 0x0a],
            first_state: 1,
            first_len: 74,
            ..FlowPlan6::default()
        }
    }

    #[test]
    fn the_two_entries_point_at_each_other() {
        let k = key();
        let pair = FlowPair6::new(&k, &plan());
        assert_eq!(pair.reply_key.src, a(11));
        assert_eq!(pair.reply_key.dst, a(250));
        assert_eq!(pair.reply_key.network, 2);
        assert!(same_flow6(&k, &pair.forward, &pair.reply));
        assert!(same_flow6(&pair.reply_key, &pair.reply, &pair.forward));
        assert_eq!(pair.reply.reply_key(k.proto), k);
    }

    /// The delta turns a segment's checksum into the one computed from scratch over the
    /// rewritten tuple's pseudo-header, both ways.
    #[test]
    fn the_delta_matches_a_checksum_from_scratch() {
        let k = key();
        let pair = FlowPair6::new(&k, &plan());
        let mut seg = [0u8; 28];
        seg[..2].copy_from_slice(&40000u16.to_be_bytes());
        seg[2..4].copy_from_slice(&443u16.to_be_bytes());
        seg[12] = 0x50;
        seg[13] = 0x02;
        seg[20..28].copy_from_slice(b"payload!");
        let c = l4_checksum_v6(k.src, k.dst, IPPROTO_TCP, &seg);
        seg[16..18].copy_from_slice(&c.to_be_bytes());

        let f = &pair.forward;
        let fixed = apply_delta(c, f.delta(&k));
        seg[..2].copy_from_slice(&f.new_sport_be.to_ne_bytes());
        seg[2..4].copy_from_slice(&f.new_dport_be.to_ne_bytes());
        seg[16..18].copy_from_slice(&[0, 0]);
        assert_eq!(
            fixed,
            l4_checksum_v6(f.new_src, f.new_dst, IPPROTO_TCP, &seg),
            "forward"
        );
    }

    /// A segment with `sport`, `dport`, checksum zeroed.
    fn segment(sport: u16, dport: u16) -> [u8; 28] {
        let mut seg = [0u8; 28];
        seg[..2].copy_from_slice(&sport.to_be_bytes());
        seg[2..4].copy_from_slice(&dport.to_be_bytes());
        seg[12] = 0x50;
        seg[13] = 0x12;
        seg[20..28].copy_from_slice(b"xlat 4/6");
        seg
    }

    fn v4(last: u8) -> u32 {
        u32::from_ne_bytes([10, 9, 0, last])
    }

    #[test]
    fn a_mapped_key_stands_for_an_ipv4_one() {
        let k6 = FlowKey6 {
            src: mapped(v4(11)),
            dst: mapped(v4(250)),
            ..key()
        };
        let k4 = k6.unmapped().expect("both mapped");
        assert_eq!((k4.src_be, k4.dst_be), (v4(11), v4(250)));
        assert_eq!((k4.sport_be, k4.dport_be), (k6.sport_be, k6.dport_be));
        assert_eq!((k4.network, k4.proto), (k6.network, k6.proto));
        assert_eq!(key().unmapped(), None);
    }

    #[test]
    fn mapped_addresses_round_trip() {
        let m = mapped(v4(11));
        assert_eq!(m[..12], [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff]);
        assert_eq!(m[12..], [10, 9, 0, 11]);
        assert_eq!(unmapped(&m), Some(v4(11)));
        assert_eq!(unmapped(&a(11)), None);
        let mut almost = m;
        almost[9] = 1;
        assert_eq!(unmapped(&almost), None);
    }

    /// IPv6 consumer to IPv4 target: the delta from the consumer's IPv6 tuple to the
    /// entry's mapped one turns the IPv6 checksum into the IPv4 one from scratch; and the
    /// reply's, from the mapped tuple back to IPv6, the other way.
    #[test]
    fn the_delta_translates_between_families() {
        use crate::checksum::l4_checksum;
        let k = key();
        let p = FlowPlan6 {
            nlb: mapped(v4(250)),
            target: mapped(v4(11)),
            ..plan()
        };
        let pair = FlowPair6::new(&k, &p);
        let seg = segment(40000, 443);
        let c6 = l4_checksum_v6(k.src, k.dst, IPPROTO_TCP, &seg);
        let f = &pair.forward;
        let out = segment(40001, 8443);
        let want4 = l4_checksum([10, 9, 0, 250], [10, 9, 0, 11], IPPROTO_TCP, &out);
        assert_eq!(apply_delta(c6, f.delta(&k)), want4, "IPv6 to IPv4");

        let r = &pair.reply;
        let rk = pair.reply_key;
        let back = segment(8443, 40001);
        let c4 = l4_checksum([10, 9, 0, 11], [10, 9, 0, 250], IPPROTO_TCP, &back);
        let want6 = l4_checksum_v6(r.new_src, r.new_dst, IPPROTO_TCP, &segment(443, 40000));
        assert_eq!(apply_delta(c4, r.delta(&rk)), want6, "IPv4 to IPv6");
    }

    #[test]
    fn hashes_differ_by_seed_and_key() {
        let k = key();
        let mut other = k;
        other.src[15] ^= 1;
        assert_ne!(k.hash(), other.hash());
        assert_ne!(k.hash_with(1), k.hash_with(2));
    }
}
