//! ICMP errors about a translated flow change family with it (RFC 7915 4.2, 5.2): an
//! ICMPv4 error about the IPv4 side of a flow goes on to its IPv6 side as ICMPv6, and the
//! mirror. The quoted packet changes family too, so the receiver finds the socket that
//! sent it (PMTU discovery through a translating endpoint works as through any other).
//!
//! The data path does it in two steps, each with code it already trusts:
//! - IPv4 to IPv6: [`window_4to6`] rewrites the error's fixed window as ICMPv6 over the
//!   IPv4-mapped addresses the flow is keyed by; then `icmp6::translate_error` moves
//!   it along the flow entry to the real IPv6 addresses, as for any IPv6 error.
//! - IPv6 to IPv4: `icmp6::translate_error` first (the entry leads to mapped addresses),
//!   then [`window_6to4`].
//!
//! Mapped addresses sum as their IPv4 ones do, so a quoted TCP or UDP checksum that is
//! right over one family's pseudo-header stays right over the other's: only ICMP's own
//! checksum needs work (ICMPv6 covers a pseudo-header, ICMPv4 does not). It is carried
//! over incrementally, so bytes quoted past the window need not be read.

use crate::{
    checksum::{fold, sum},
    flow::FlowKey,
    flow6::{FlowKey6, mapped, unmapped},
    icmp::WINDOW as W4,
    icmp6::WINDOW as W6,
    xlat::{
        IcmpHead, PROTO_ICMP, PROTO_ICMPV6, icmp4_to_icmp6, icmp6_to_icmp4, ipv4_header_from_v6,
        ipv6_header_from_v4, pseudo_header_sum_v6,
    },
};

/// What the frame grows (IPv4 to IPv6) or shrinks by: 20 bytes of outer header and 20 of
/// quoted header.
pub const GROWTH: usize = W6 - W4;

/// Offsets in the windows: the ICMP header and the quoted IP header.
const ICMP4: usize = 20;
const QUOTED4: usize = 28;
const ICMP6: usize = 40;
const QUOTED6: usize = 48;

/// The IPv6-table key (mapped addresses) of the translated flow an ICMPv4 error's key
/// (`icmp::error_key`) stands for.
#[inline(always)]
pub fn mapped_key(k: &FlowKey) -> FlowKey6 {
    FlowKey6 {
        src: mapped(k.src_be),
        dst: mapped(k.dst_be),
        sport_be: k.sport_be,
        dport_be: k.dport_be,
        network: k.network,
        proto: k.proto,
        _pad: 0,
    }
}

#[inline(always)]
fn be32(w: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([w[at], w[at + 1], w[at + 2], w[at + 3]])
}

#[inline(always)]
fn be16(w: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([w[at], w[at + 1]])
}

/// An ICMP header's sum with its checksum field left out.
#[inline(always)]
fn head_sum(h: &[u8]) -> u32 {
    sum(&h[..2], 0).wrapping_add(sum(&h[4..8], 0))
}

/// Rewrites the ICMPv4 error window `w` (outer IPv4 without options, ICMP, quoted IPv4
/// without options, 8 bytes of TCP or UDP: `icmp::error_key` accepted it) as an ICMPv6 one
/// in `out`, every address its mapped form: outer IPv6 (TTL as hop limit, TOS as traffic
/// class), the ICMPv6 type, code and MTU or pointer RFC 7915 maps it to, the quoted IPv6
/// header, the same 8 L4 bytes, the ICMPv6 checksum over the new pseudo-header. The
/// message grows by [`GROWTH`] - 20 (its quoted header); false if the error has no ICMPv6
/// form (it is dropped).
pub fn window_4to6(w: &[u8; W4], out: &mut [u8; W6]) -> bool {
    let Some(m) = icmp4_to_icmp6(IcmpHead {
        ty: w[ICMP4],
        code: w[ICMP4 + 1],
        rest: be32(w, ICMP4 + 4),
    }) else {
        return false;
    };
    let (outer, quoted) = (first::<20>(w, 0), first::<20>(w, QUOTED4));
    let m4 = |at: usize| mapped(u32::from_ne_bytes([w[at], w[at + 1], w[at + 2], w[at + 3]]));
    let h = ipv6_header_from_v4(outer, m4(12), m4(16));
    out[..40].copy_from_slice(&h);
    // The message: the ICMP message grown by the quoted header's 20 bytes.
    let len = be16(w, 2).saturating_sub(20).saturating_add(20);
    out[4..6].copy_from_slice(&len.to_be_bytes());
    out[ICMP6] = m.ty;
    out[ICMP6 + 1] = m.code;
    out[ICMP6 + 4..QUOTED6].copy_from_slice(&m.rest.to_be_bytes());
    let q = ipv6_header_from_v4(quoted, m4(QUOTED4 + 12), m4(QUOTED4 + 16));
    out[QUOTED6..QUOTED6 + 40].copy_from_slice(&q);
    out[QUOTED6 + 40..].copy_from_slice(&w[QUOTED4 + 20..]);
    // What follows the quoted header (quoted or not) sums the same: take ICMP's sum,
    // remove the header and quoted header it covered, add the new ones and the
    // pseudo-header.
    let rest = u32::from(!be16(w, ICMP4 + 2))
        .wrapping_add(u32::from(!fold(head_sum(&w[ICMP4..QUOTED4]))))
        .wrapping_add(u32::from(!fold(sum(quoted, 0))));
    let acc = rest
        .wrapping_add(head_sum(&out[ICMP6..QUOTED6]))
        .wrapping_add(sum(&q, 0))
        .wrapping_add(pseudo_header_sum_v6(
            m4(12),
            m4(16),
            PROTO_ICMPV6,
            u32::from(len),
        ));
    out[ICMP6 + 2..ICMP6 + 4].copy_from_slice(&(!fold(acc)).to_be_bytes());
    true
}

/// Rewrites the ICMPv6 error window `w` (outer IPv6 without extension headers, ICMPv6,
/// quoted IPv6 without extension headers, 8 bytes of TCP or UDP), whose addresses are
/// all mapped (`icmp6::translate_error` along a translated flow made them so), as an
/// ICMPv4 one in `out`: the mirror of [`window_4to6`], IPv4 headers with identification 0
/// and their checksums computed. False if the error has no ICMPv4 form or an address is
/// not mapped.
pub fn window_6to4(w: &[u8; W6], out: &mut [u8; W4]) -> bool {
    let Some(m) = icmp6_to_icmp4(IcmpHead {
        ty: w[ICMP6],
        code: w[ICMP6 + 1],
        rest: be32(w, ICMP6 + 4),
    }) else {
        return false;
    };
    let (outer, quoted) = (first::<40>(w, 0), first::<40>(w, QUOTED6));
    let addr = |at: usize| unmapped(first::<16>(w, at)).map(u32::to_ne_bytes);
    let (Some(src), Some(dst), Some(qsrc), Some(qdst)) =
        (addr(8), addr(24), addr(QUOTED6 + 8), addr(QUOTED6 + 24))
    else {
        return false;
    };
    let len = be16(w, 4);
    // The message shrinks by the quoted header's 20 bytes.
    let h = ipv4_header_from_v6(outer, PROTO_ICMPV6, len.saturating_sub(20), src, dst, 0);
    out[..20].copy_from_slice(&h);
    out[ICMP4] = m.ty;
    out[ICMP4 + 1] = m.code;
    out[ICMP4 + 4..QUOTED4].copy_from_slice(&m.rest.to_be_bytes());
    let q = ipv4_header_from_v6(quoted, quoted[6], be16(quoted, 4), qsrc, qdst, 0);
    out[QUOTED4..QUOTED4 + 20].copy_from_slice(&q);
    out[QUOTED4 + 20..].copy_from_slice(&w[QUOTED6 + 40..]);
    let rest = u32::from(!be16(w, ICMP6 + 2))
        .wrapping_add(u32::from(!fold(head_sum(&w[ICMP6..QUOTED6]))))
        .wrapping_add(u32::from(!fold(sum(quoted, 0))))
        .wrapping_add(u32::from(!fold(pseudo_header_sum_v6(
            *first::<16>(w, 8),
            *first::<16>(w, 24),
            PROTO_ICMPV6,
            u32::from(len),
        ))));
    let acc = rest
        .wrapping_add(head_sum(&out[ICMP4..QUOTED4]))
        .wrapping_add(sum(&q, 0));
    out[ICMP4 + 2..ICMP4 + 4].copy_from_slice(&(!fold(acc)).to_be_bytes());
    // The outer header came from `ipv4_header_from_v6` as ICMP: its protocol is right.
    debug_assert_eq!(out[9], PROTO_ICMP);
    true
}

/// The `N` bytes of `w` from `at` (constant offsets inside the window: never short).
#[inline(always)]
fn first<const N: usize>(w: &[u8], at: usize) -> &[u8; N] {
    match w[at..].first_chunk() {
        Some(a) => a,
        None => unreachable!(),
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use std::vec::Vec;

    use super::*;
    use crate::{
        checksum::{checksum, ipv4_header_ok, l4_checksum},
        icmp::error_key,
        icmp6,
        proto::IPPROTO_UDP,
        xlat::l4_checksum_v6,
    };

    const NLB4: [u8; 4] = [10, 9, 0, 252];
    const T4: [u8; 4] = [10, 9, 0, 13];
    const ROUTER4: [u8; 4] = [10, 9, 0, 254];

    fn v4(src: [u8; 4], dst: [u8; 4], proto: u8, ttl: u8, payload: &[u8]) -> Vec<u8> {
        let mut h = [0u8; 20];
        h[0] = 0x45;
        h[2..4].copy_from_slice(&(20 + payload.len() as u16).to_be_bytes());
        h[8] = ttl;
        h[9] = proto;
        h[12..16].copy_from_slice(&src);
        h[16..20].copy_from_slice(&dst);
        let c = checksum(&h);
        h[10..12].copy_from_slice(&c.to_be_bytes());
        let mut p = h.to_vec();
        p.extend_from_slice(payload);
        p
    }

    fn v6(src: [u8; 16], dst: [u8; 16], next: u8, hop: u8, payload: &[u8]) -> Vec<u8> {
        let mut p = std::vec![0u8; 40];
        p[0] = 0x60;
        p[4..6].copy_from_slice(&(payload.len() as u16).to_be_bytes());
        p[6] = next;
        p[7] = hop;
        p[8..24].copy_from_slice(&src);
        p[24..40].copy_from_slice(&dst);
        p.extend_from_slice(payload);
        p
    }

    fn udp4(src: [u8; 4], dst: [u8; 4], data: &[u8]) -> Vec<u8> {
        let mut u = std::vec![0, 53, 0x9c, 0x40, 0, 0, 0, 0];
        u[4..6].copy_from_slice(&(8 + data.len() as u16).to_be_bytes());
        u.extend_from_slice(data);
        let c = l4_checksum(src, dst, IPPROTO_UDP, &u);
        u[6..8].copy_from_slice(&c.to_be_bytes());
        u
    }

    fn icmp(ty: u8, code: u8, rest: u32, quoted: &[u8]) -> Vec<u8> {
        let mut m = std::vec![ty, code, 0, 0];
        m.extend_from_slice(&rest.to_be_bytes());
        m.extend_from_slice(quoted);
        m
    }

    fn with_check4(mut m: Vec<u8>) -> Vec<u8> {
        let c = checksum(&m);
        m[2..4].copy_from_slice(&c.to_be_bytes());
        m
    }

    fn with_check6(mut m: Vec<u8>, src: [u8; 16], dst: [u8; 16]) -> Vec<u8> {
        let c = !fold(sum(
            &m,
            pseudo_header_sum_v6(src, dst, PROTO_ICMPV6, m.len() as u32),
        ));
        m[2..4].copy_from_slice(&c.to_be_bytes());
        m
    }

    /// A fragmentation needed from an IPv4 router about a UDP datagram pl sent from the
    /// NLB address, quoting `data` beyond the UDP header (past the window).
    fn frag_needed(data: &[u8], mtu: u16) -> Vec<u8> {
        let quoted = v4(NLB4, T4, IPPROTO_UDP, 63, &udp4(NLB4, T4, data));
        let m = with_check4(icmp(3, 4, u32::from(mtu), &quoted));
        v4(ROUTER4, NLB4, PROTO_ICMP, 64, &m)
    }

    #[test]
    fn an_icmpv4_error_becomes_icmpv6_over_mapped_addresses_every_byte_as_rebuilt() {
        for data in [&b""[..], b"query", b"an odd-length datagram"] {
            let pkt = frag_needed(data, 1400);
            let mut w = [0u8; W4];
            w.copy_from_slice(&pkt[..W4]);
            let mut out = [0u8; W6];
            assert!(window_4to6(&w, &mut out));
            let m = |a: [u8; 4]| mapped(u32::from_ne_bytes(a));
            // From scratch: the quoted datagram as IPv6 over mapped addresses (its UDP
            // checksum unchanged: mapped addresses sum as IPv4's), in packet too big.
            let quoted = v6(m(NLB4), m(T4), IPPROTO_UDP, 63, &udp4(NLB4, T4, data));
            assert_eq!(
                l4_checksum_v6(m(NLB4), m(T4), IPPROTO_UDP, &{
                    let mut u = quoted[40..].to_vec();
                    u[6..8].fill(0);
                    u
                }),
                be16(&quoted, 46),
                "mapped addresses sum as IPv4's"
            );
            let msg = with_check6(icmp(2, 0, 1420, &quoted), m(ROUTER4), m(NLB4));
            let want = v6(m(ROUTER4), m(NLB4), PROTO_ICMPV6, 64, &msg);
            assert_eq!(&out[..], &want[..W6], "{data:?}");
            // Back again: the same IPv4 error, bar the identification (0) and what RFC
            // 7915 says of DF (clear at this size).
            let mut w6 = [0u8; W6];
            w6.copy_from_slice(&want[..W6]);
            let mut back = [0u8; W4];
            assert!(window_6to4(&w6, &mut back));
            assert!(ipv4_header_ok(first::<20>(&back, 0)));
            assert!(ipv4_header_ok(first::<20>(&back, QUOTED4)));
            assert_eq!(&back[..], &pkt[..W4], "{data:?}");
        }
    }

    #[test]
    fn the_carried_checksum_verifies_over_the_whole_message_both_ways() {
        let data = [0x5au8; 333];
        let pkt = frag_needed(&data, 576);
        let mut w = [0u8; W4];
        w.copy_from_slice(&pkt[..W4]);
        let mut out = [0u8; W6];
        assert!(window_4to6(&w, &mut out));
        let mut msg = out[ICMP6..].to_vec();
        msg.extend_from_slice(&pkt[W4..]);
        assert_eq!(msg.len(), usize::from(be16(&out, 4)));
        let (s, d) = (*first::<16>(&out, 8), *first::<16>(&out, 24));
        assert_eq!(
            fold(sum(
                &msg,
                pseudo_header_sum_v6(s, d, PROTO_ICMPV6, msg.len() as u32)
            )),
            0xffff
        );
        assert_eq!(
            be32(&out, ICMP6 + 4),
            1280,
            "576 + 20, raised to IPv6's minimum"
        );
        let mut back = [0u8; W4];
        assert!(window_6to4(&out, &mut back));
        let mut msg4 = back[ICMP4..].to_vec();
        msg4.extend_from_slice(&pkt[W4..]);
        assert_eq!(fold(sum(&msg4, 0)), 0xffff);
        assert_eq!(be16(&back, 2) as usize, 20 + msg4.len());
        assert_eq!(be16(&back, ICMP4 + 6), 1260, "IPv6's 1280 less 20");
    }

    #[test]
    fn the_mapped_key_is_the_ipv4_keys_and_translating_along_it_reaches_ipv6() {
        let pkt = frag_needed(b"query", 1400);
        let mut w = [0u8; W4];
        w.copy_from_slice(&pkt[..W4]);
        let k = error_key(&w, 3).expect("an error pl translates");
        let k6 = mapped_key(&k);
        assert_eq!(k6.unmapped(), Some(k));
        assert_eq!((k6.network, k6.proto), (3, IPPROTO_UDP));
        let mut out = [0u8; W6];
        assert!(window_4to6(&w, &mut out));
        assert_eq!(icmp6::error_key(&out, 3), Some(k6));
    }

    #[test]
    fn errors_without_a_form_in_the_other_family_are_refused() {
        let mut w = [0u8; W4];
        w.copy_from_slice(&frag_needed(b"query", 1400)[..W4]);
        w[ICMP4 + 1] = 14; // precedence violation
        assert!(!window_4to6(&w, &mut [0u8; W6]));
        let mut w6 = [0u8; W6];
        w6[ICMP6] = 1;
        w6[ICMP6 + 1] = 5; // source address failed policy
        assert!(!window_6to4(&w6, &mut [0u8; W4]));
        // A quoted address that is not mapped: not a translated flow's.
        let mut ok = [0u8; W6];
        assert!(window_4to6(
            first::<W4>(&frag_needed(b"query", 1400), 0),
            &mut ok
        ));
        ok[QUOTED6 + 8] = 0xfd;
        assert!(!window_6to4(&ok, &mut [0u8; W4]));
    }
}
