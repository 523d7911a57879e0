//! Family translation between IPv4 and IPv6 (RFC 7915), as an NLB does when a consumer
//! of one family reaches a target of the other: header fields, ICMP <-> ICMPv6 types and
//! codes, and the checksum deltas. Pure logic over fixed-size headers, so the eBPF side
//! can call it on bytes it has bounds-checked and the tests can rebuild every byte.
//!
//! Addresses are given as the bytes on the wire (network order). pl translates to
//! configured addresses (the zone's NLB address of the target's family, the endpoint
//! address of the consumer's), not to an RFC 6052 prefix, so no address is derived here.

use crate::checksum::{fold, sum};

/// ICMPv4 and ICMPv6 protocol / next-header numbers.
pub const PROTO_ICMP: u8 = 1;
pub const PROTO_ICMPV6: u8 = 58;

/// IPv6 next-header numbers the walk knows.
pub const NH_HOP_BY_HOP: u8 = 0;
pub const NH_ROUTING: u8 = 43;
pub const NH_FRAGMENT: u8 = 44;
pub const NH_ESP: u8 = 50;
pub const NH_AH: u8 = 51;
pub const NH_NONE: u8 = 59;
pub const NH_DEST_OPTS: u8 = 60;

/// Extension headers the walk follows before it gives up: a bound, as the verifier needs
/// one, and more than any sane packet carries.
pub const MAX_EXT_HEADERS: usize = 6;

/// The IPv6 minimum MTU: a translated packet-too-big never says less (RFC 7915 4.2).
pub const IPV6_MIN_MTU: u16 = 1280;

/// Why an IPv6 packet is not one pl forwards.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ipv6Refusal {
    /// A fragment header: dropped and counted as IPv4 fragments are.
    Fragment,
    /// AH or ESP: their payload cannot be rewritten.
    Ipsec,
    /// No next header, or more extension headers than [`MAX_EXT_HEADERS`].
    Shape,
    /// An extension header runs past the packet.
    Truncated,
}

/// Follows the extension headers of the IPv6 packet in `pkt` (starting at its fixed
/// header): the upper-layer protocol and its offset from the start of `pkt`.
pub fn walk_ipv6(pkt: &[u8]) -> Result<(u8, usize), Ipv6Refusal> {
    if pkt.len() < 40 {
        return Err(Ipv6Refusal::Truncated);
    }
    let mut next = pkt[6];
    let mut at = 40;
    for _ in 0..=MAX_EXT_HEADERS {
        match next {
            NH_HOP_BY_HOP | NH_ROUTING | NH_DEST_OPTS => {
                let h = pkt.get(at..at + 4).ok_or(Ipv6Refusal::Truncated)?;
                // A routing header with segments left names a further destination: the
                // packet is not pl's to rewrite (RFC 8200 4.4).
                if next == NH_ROUTING && h[3] != 0 {
                    return Err(Ipv6Refusal::Shape);
                }
                let len = (usize::from(h[1]) + 1) * 8;
                if pkt.len() < at + len {
                    return Err(Ipv6Refusal::Truncated);
                }
                next = h[0];
                at += len;
            }
            NH_FRAGMENT => return Err(Ipv6Refusal::Fragment),
            NH_ESP | NH_AH => return Err(Ipv6Refusal::Ipsec),
            NH_NONE => return Err(Ipv6Refusal::Shape),
            upper => return Ok((upper, at)),
        }
    }
    Err(Ipv6Refusal::Shape)
}

/// The IPv6 header an IPv4 header `v4` (20 bytes, no options) becomes, with the given
/// addresses: traffic class from TOS, flow label 0, payload length from the total
/// length, ICMP as ICMPv6, hop limit from TTL (RFC 7915 4.1). Packets pl translates are
/// not fragments, so no fragment header is added.
pub fn ipv6_header_from_v4(v4: &[u8; 20], src: [u8; 16], dst: [u8; 16]) -> [u8; 40] {
    let mut h = [0u8; 40];
    let tos = v4[1];
    h[0] = 0x60 | (tos >> 4);
    h[1] = tos << 4;
    let total = u16::from_be_bytes([v4[2], v4[3]]);
    let payload = total.saturating_sub(20);
    h[4..6].copy_from_slice(&payload.to_be_bytes());
    h[6] = if v4[9] == PROTO_ICMP {
        PROTO_ICMPV6
    } else {
        v4[9]
    };
    h[7] = v4[8];
    h[8..24].copy_from_slice(&src);
    h[24..40].copy_from_slice(&dst);
    h
}

/// The IPv4 header an IPv6 header `v6` becomes, carrying `proto` (the upper layer the
/// extension walk found, ICMPv6 as ICMP) and `payload` bytes of it after the extension
/// headers are dropped: TOS from the traffic class, DF set above 1260 bytes as RFC 7915
/// 5.1 says (so a smaller packet may still be fragmented on an IPv4 path), TTL from the
/// hop limit, identification `id`, header checksum computed.
pub fn ipv4_header_from_v6(
    v6: &[u8; 40],
    proto: u8,
    payload: u16,
    src: [u8; 4],
    dst: [u8; 4],
    id: u16,
) -> [u8; 20] {
    let mut h = [0u8; 20];
    h[0] = 0x45;
    h[1] = (v6[0] << 4) | (v6[1] >> 4);
    let total = payload.saturating_add(20);
    h[2..4].copy_from_slice(&total.to_be_bytes());
    h[4..6].copy_from_slice(&id.to_be_bytes());
    if total > 1260 {
        h[6] = 0x40;
    }
    h[8] = v6[7];
    h[9] = if proto == PROTO_ICMPV6 {
        PROTO_ICMP
    } else {
        proto
    };
    h[12..16].copy_from_slice(&src);
    h[16..20].copy_from_slice(&dst);
    let c = !fold(sum(&h, 0));
    h[10..12].copy_from_slice(&c.to_be_bytes());
    h
}

/// Sum of the IPv6 pseudo-header (RFC 8200 8.1) for an upper layer of `len` bytes.
pub fn pseudo_header_sum_v6(src: [u8; 16], dst: [u8; 16], next: u8, len: u32) -> u32 {
    let acc = sum(&src, 0);
    let acc = sum(&dst, acc);
    acc.wrapping_add(len >> 16)
        .wrapping_add(len & 0xffff)
        .wrapping_add(u32::from(next))
}

/// TCP or UDP checksum over the IPv6 pseudo-header and `segment` (checksum zeroed).
pub fn l4_checksum_v6(src: [u8; 16], dst: [u8; 16], next: u8, segment: &[u8]) -> u16 {
    let len = u32::try_from(segment.len()).unwrap_or(u32::MAX);
    !fold(sum(segment, pseudo_header_sum_v6(src, dst, next, len)))
}

/// A TCP or UDP checksum after the pseudo-header's addresses change from `old` to `new`
/// (any family to any family, given as wire bytes: 4 or 16 each). The protocol and
/// length words sum the same in both pseudo-headers, so only the addresses count.
pub fn l4_check_readdressed(check: u16, old: &[&[u8]], new: &[&[u8]]) -> u16 {
    let mut acc = u32::from(!check);
    for a in old {
        acc = acc.wrapping_add(u32::from(!fold(sum(a, 0))));
    }
    for a in new {
        acc = acc.wrapping_add(u32::from(fold(sum(a, 0))));
    }
    !fold(acc)
}

/// ICMP type and code pairs this module maps (RFC 792, RFC 4443).
pub mod icmp_types {
    pub const V4_ECHO_REPLY: u8 = 0;
    pub const V4_DEST_UNREACH: u8 = 3;
    pub const V4_ECHO_REQUEST: u8 = 8;
    pub const V4_TIME_EXCEEDED: u8 = 11;
    pub const V4_PARAM_PROBLEM: u8 = 12;
    pub const V6_DEST_UNREACH: u8 = 1;
    pub const V6_PACKET_TOO_BIG: u8 = 2;
    pub const V6_TIME_EXCEEDED: u8 = 3;
    pub const V6_PARAM_PROBLEM: u8 = 4;
    pub const V6_ECHO_REQUEST: u8 = 128;
    pub const V6_ECHO_REPLY: u8 = 129;
}
use icmp_types::*;

/// An ICMP message's type, code and the 4 bytes after the checksum (identifier and
/// sequence, an MTU, or a pointer), in host order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IcmpHead {
    pub ty: u8,
    pub code: u8,
    pub rest: u32,
}

/// The ICMPv6 message an ICMPv4 one becomes (RFC 7915 4.2), or None: dropped.
pub fn icmp4_to_icmp6(m: IcmpHead) -> Option<IcmpHead> {
    let to = |ty, code, rest| Some(IcmpHead { ty, code, rest });
    match (m.ty, m.code) {
        (V4_ECHO_REQUEST, 0) => to(V6_ECHO_REQUEST, 0, m.rest),
        (V4_ECHO_REPLY, 0) => to(V6_ECHO_REPLY, 0, m.rest),
        (V4_DEST_UNREACH, code) => match code {
            // Net, host, source route, unknown net or host, isolated, TOS.
            0 | 1 | 5 | 6 | 7 | 8 | 11 | 12 => to(V6_DEST_UNREACH, 0, 0),
            // Protocol unreachable: a parameter problem pointing at the next header.
            2 => to(V6_PARAM_PROBLEM, 1, 6),
            3 => to(V6_DEST_UNREACH, 4, 0),
            // Fragmentation needed: packet too big, the MTU grown by the header difference.
            4 => to(V6_PACKET_TOO_BIG, 0, u32::from(mtu_4to6(m.rest as u16))),
            // Administratively prohibited.
            9 | 10 | 13 | 15 => to(V6_DEST_UNREACH, 1, 0),
            _ => None,
        },
        (V4_TIME_EXCEEDED, code @ (0 | 1)) => to(V6_TIME_EXCEEDED, code, 0),
        (V4_PARAM_PROBLEM, 0 | 2) => {
            let ptr = pointer_4to6((m.rest >> 24) as u8)?;
            to(V6_PARAM_PROBLEM, 0, u32::from(ptr))
        }
        _ => None,
    }
}

/// The ICMPv4 message an ICMPv6 one becomes (RFC 7915 5.2), or None: dropped.
pub fn icmp6_to_icmp4(m: IcmpHead) -> Option<IcmpHead> {
    let to = |ty, code, rest| Some(IcmpHead { ty, code, rest });
    match (m.ty, m.code) {
        (V6_ECHO_REQUEST, 0) => to(V4_ECHO_REQUEST, 0, m.rest),
        (V6_ECHO_REPLY, 0) => to(V4_ECHO_REPLY, 0, m.rest),
        (V6_DEST_UNREACH, code) => match code {
            0 | 2 | 3 => to(V4_DEST_UNREACH, 1, 0),
            1 => to(V4_DEST_UNREACH, 10, 0),
            4 => to(V4_DEST_UNREACH, 3, 0),
            _ => None,
        },
        (V6_PACKET_TOO_BIG, 0) => to(V4_DEST_UNREACH, 4, u32::from(mtu_6to4(m.rest))),
        (V6_TIME_EXCEEDED, code @ (0 | 1)) => to(V4_TIME_EXCEEDED, code, 0),
        (V6_PARAM_PROBLEM, 0) => {
            let ptr = pointer_6to4(m.rest)?;
            to(V4_PARAM_PROBLEM, 0, u32::from(ptr) << 24)
        }
        // Unrecognized next header: protocol unreachable.
        (V6_PARAM_PROBLEM, 1) => to(V4_DEST_UNREACH, 2, 0),
        _ => None,
    }
}

/// An IPv4 path MTU seen from IPv6: 20 bytes more of header, never under 1280. A
/// frag-needed without an MTU (RFC 1191's old routers say 0) is taken as 1280 too.
pub fn mtu_4to6(mtu4: u16) -> u16 {
    mtu4.saturating_add(20).max(IPV6_MIN_MTU)
}

/// An IPv6 path MTU seen from IPv4: 20 bytes less, within the 16-bit field and at least
/// the IPv4 minimum of 68.
pub fn mtu_6to4(mtu6: u32) -> u16 {
    let m = mtu6.saturating_sub(20).min(u32::from(u16::MAX)) as u16;
    m.max(68)
}

/// Where an IPv4 header field's parameter-problem pointer lands in IPv6 (RFC 7915 4.2,
/// figure 3); None for fields IPv6 has not.
pub fn pointer_4to6(ptr: u8) -> Option<u8> {
    match ptr {
        0 => Some(0),        // version / IHL
        1 => Some(1),        // type of service
        2 | 3 => Some(4),    // total length
        8 => Some(7),        // TTL
        9 => Some(6),        // protocol
        12..=15 => Some(8),  // source
        16..=19 => Some(24), // destination
        _ => None,
    }
}

/// Where an IPv6 header field's parameter-problem pointer lands in IPv4 (RFC 7915 5.2,
/// figure 6); None for fields IPv4 has not.
pub fn pointer_6to4(ptr: u32) -> Option<u8> {
    match ptr {
        0 => Some(0),
        1 => Some(1),
        4 | 5 => Some(2),
        6 => Some(9),
        7 => Some(8),
        8..=23 => Some(12),
        24..=39 => Some(16),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checksum::{checksum, l4_checksum};

    const C4: [u8; 4] = [10, 0, 0, 10];
    const E4: [u8; 4] = [10, 0, 0, 100];
    const C6: [u8; 16] = [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10];
    const E6: [u8; 16] = [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x64];

    fn v4_header(proto: u8, total: u16, tos: u8, ttl: u8) -> [u8; 20] {
        let mut h = [0u8; 20];
        h[0] = 0x45;
        h[1] = tos;
        h[2..4].copy_from_slice(&total.to_be_bytes());
        h[6] = 0x40;
        h[8] = ttl;
        h[9] = proto;
        h[12..16].copy_from_slice(&C4);
        h[16..20].copy_from_slice(&E4);
        let c = checksum(&h);
        h[10..12].copy_from_slice(&c.to_be_bytes());
        h
    }

    #[test]
    fn an_ipv4_header_becomes_ipv6_field_by_field() {
        let h = ipv6_header_from_v4(&v4_header(6, 60, 0xb8, 63), C6, E6);
        let mut want = [0u8; 40];
        want[0] = 0x6b; // version 6, traffic class 0xb8 over the nibbles
        want[1] = 0x80;
        want[4..6].copy_from_slice(&40u16.to_be_bytes());
        want[6] = 6;
        want[7] = 63;
        want[8..24].copy_from_slice(&C6);
        want[24..40].copy_from_slice(&E6);
        assert_eq!(h, want);
        let icmp = ipv6_header_from_v4(&v4_header(PROTO_ICMP, 28, 0, 64), C6, E6);
        assert_eq!((icmp[6], [icmp[4], icmp[5]]), (PROTO_ICMPV6, [0, 8]));
    }

    #[test]
    fn an_ipv6_header_becomes_ipv4_with_its_checksum_and_df_above_1260() {
        let v6 = ipv6_header_from_v4(&v4_header(17, 48, 0x28, 9), C6, E6);
        let h = ipv4_header_from_v6(&v6, 17, 28, C4, E4, 0x1234);
        let mut want = v4_header(17, 48, 0x28, 9);
        want[4..6].copy_from_slice(&0x1234u16.to_be_bytes());
        want[6] = 0; // 48 bytes: DF clear
        want[10..12].copy_from_slice(&[0, 0]);
        let c = checksum(&want);
        want[10..12].copy_from_slice(&c.to_be_bytes());
        assert_eq!(h, want);
        assert!(crate::checksum::ipv4_header_ok(&h));
        let big = ipv4_header_from_v6(&v6, PROTO_ICMPV6, 1300, C4, E4, 1);
        assert_eq!((big[6], big[9]), (0x40, PROTO_ICMP));
        assert!(crate::checksum::ipv4_header_ok(&big));
    }

    #[test]
    fn a_readdressed_l4_checksum_matches_a_full_recompute_both_ways() {
        // A TCP segment with odd length and a payload.
        let mut seg = [0u8; 25];
        seg[0..2].copy_from_slice(&40000u16.to_be_bytes());
        seg[2..4].copy_from_slice(&443u16.to_be_bytes());
        seg[12] = 0x50;
        seg[13] = 0x18;
        seg[20..25].copy_from_slice(b"hello");
        let c4 = l4_checksum(C4, E4, 6, &seg);
        let c6 = l4_checksum_v6(C6, E6, 6, &seg);
        assert_eq!(l4_check_readdressed(c4, &[&C4, &E4], &[&C6, &E6]), c6);
        assert_eq!(l4_check_readdressed(c6, &[&C6, &E6], &[&C4, &E4]), c4);
        // Mixed: only the source changes family's worth of bytes.
        let c_mixed = l4_checksum_v6(C6, E6, 6, &seg);
        assert_eq!(
            l4_check_readdressed(c4, &[&C4], &[&C6]),
            l4_check_readdressed(c_mixed, &[&E6], &[&E4]),
        );
    }

    #[test]
    fn icmp_types_map_as_rfc_7915_says_and_back() {
        let h = |ty, code, rest| IcmpHead { ty, code, rest };
        // (v4, expected v6)
        let rows: &[(IcmpHead, Option<IcmpHead>)] = &[
            (h(8, 0, 0x0001_0002), Some(h(128, 0, 0x0001_0002))),
            (h(0, 0, 7), Some(h(129, 0, 7))),
            (h(3, 1, 0), Some(h(1, 0, 0))),
            (h(3, 2, 0), Some(h(4, 1, 6))),
            (h(3, 3, 0), Some(h(1, 4, 0))),
            (h(3, 4, 1400), Some(h(2, 0, 1420))),
            (h(3, 4, 576), Some(h(2, 0, 1280))),
            (h(3, 4, 0), Some(h(2, 0, 1280))),
            (h(3, 13, 0), Some(h(1, 1, 0))),
            (h(3, 14, 0), None),
            (h(11, 0, 0), Some(h(3, 0, 0))),
            (h(11, 1, 0), Some(h(3, 1, 0))),
            (h(12, 0, 9 << 24), Some(h(4, 0, 6))),
            (h(12, 0, 16 << 24), Some(h(4, 0, 24))),
            (h(12, 0, 10 << 24), None), // the IPv4 checksum: IPv6 has none
            (h(12, 1, 0), None),
            (h(5, 0, 0), None),  // redirect
            (h(13, 0, 0), None), // timestamp
        ];
        for (v4, want) in rows {
            assert_eq!(icmp4_to_icmp6(*v4), *want, "{v4:?}");
        }
        let back: &[(IcmpHead, Option<IcmpHead>)] = &[
            (h(128, 0, 5), Some(h(8, 0, 5))),
            (h(129, 0, 5), Some(h(0, 0, 5))),
            (h(1, 0, 0), Some(h(3, 1, 0))),
            (h(1, 1, 0), Some(h(3, 10, 0))),
            (h(1, 3, 0), Some(h(3, 1, 0))),
            (h(1, 4, 0), Some(h(3, 3, 0))),
            (h(1, 5, 0), None),
            (h(2, 0, 1500), Some(h(3, 4, 1480))),
            (h(2, 0, 70_000), Some(h(3, 4, 65535))),
            (h(3, 0, 0), Some(h(11, 0, 0))),
            (h(4, 0, 7), Some(h(12, 0, 8 << 24))),
            (h(4, 0, 30), Some(h(12, 0, 16 << 24))),
            (h(4, 0, 2), None), // the flow label
            (h(4, 1, 40), Some(h(3, 2, 0))),
            (h(4, 2, 0), None),
            (h(133, 0, 0), None), // router solicitation
            (h(135, 0, 0), None), // neighbour solicitation: never translated
        ];
        for (v6, want) in back {
            assert_eq!(icmp6_to_icmp4(*v6), *want, "{v6:?}");
        }
    }

    #[test]
    fn the_extension_walk_finds_the_upper_layer_or_refuses() {
        let base = |next: u8| {
            let mut p = [0u8; 40].to_vec();
            p[0] = 0x60;
            p[6] = next;
            p
        };
        assert_eq!(walk_ipv6(&base(6)), Ok((6, 40)));
        // Hop-by-hop (8 bytes), then destination options (16 bytes), then UDP.
        let mut p = base(NH_HOP_BY_HOP);
        p.extend_from_slice(&[NH_DEST_OPTS, 0, 1, 4, 0, 0, 0, 0]);
        p.extend_from_slice(&[17, 1, 1, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(walk_ipv6(&p), Ok((17, 64)));
        // Routing header, truncated.
        let mut t = base(NH_ROUTING);
        t.extend_from_slice(&[6, 1, 0, 0]);
        assert_eq!(walk_ipv6(&t), Err(Ipv6Refusal::Truncated));
        // A routing header with no segments left is passed over; one with some is refused.
        let mut r = base(NH_ROUTING);
        r.extend_from_slice(&[6, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(walk_ipv6(&r), Ok((6, 48)));
        r[43] = 1;
        assert_eq!(walk_ipv6(&r), Err(Ipv6Refusal::Shape));
        assert_eq!(walk_ipv6(&base(NH_FRAGMENT)), Err(Ipv6Refusal::Fragment));
        assert_eq!(walk_ipv6(&base(NH_ESP)), Err(Ipv6Refusal::Ipsec));
        assert_eq!(walk_ipv6(&base(NH_AH)), Err(Ipv6Refusal::Ipsec));
        assert_eq!(walk_ipv6(&base(NH_NONE)), Err(Ipv6Refusal::Shape));
        assert_eq!(walk_ipv6(&p[..39]), Err(Ipv6Refusal::Truncated));
        // A fragment header behind an option header is still a fragment.
        let mut f = base(NH_DEST_OPTS);
        f.extend_from_slice(&[NH_FRAGMENT, 0, 1, 4, 0, 0, 0, 0]);
        assert_eq!(walk_ipv6(&f), Err(Ipv6Refusal::Fragment));
        // Seven option headers: past the bound.
        let mut long = base(NH_DEST_OPTS);
        for i in 0..7 {
            let next = if i == 6 { 6 } else { NH_DEST_OPTS };
            long.extend_from_slice(&[next, 0, 1, 4, 0, 0, 0, 0]);
        }
        assert_eq!(walk_ipv6(&long), Err(Ipv6Refusal::Shape));
        // Six are fine.
        let mut six = base(NH_DEST_OPTS);
        for i in 0..6 {
            let next = if i == 5 { 6 } else { NH_DEST_OPTS };
            six.extend_from_slice(&[next, 0, 1, 4, 0, 0, 0, 0]);
        }
        assert_eq!(walk_ipv6(&six), Ok((6, 88)));
    }
}
