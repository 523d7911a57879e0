//! ICMPv6 errors (RFC 4443). Generated: time exceeded when the hop limit runs out, packet
//! too big when a packet exceeds the egress MTU (IPv6 is never fragmented on the way).
//! Translated: an error about a flow (destination unreachable, packet too big, time
//! exceeded) goes on to the flow's other side, rewritten as the flow says, as IPv4's
//! `icmp` does. Pure logic: whether a packet may be answered, the message that answers
//! it, and the translation of an error's fixed window.

use crate::{
    checksum::{fold, sum},
    flow::apply_delta,
    flow6::{Addr6, FlowKey6, FlowValue6, addr_delta, word_delta},
    proto::{IPPROTO_TCP, IPPROTO_UDP},
    xlat::{
        PROTO_ICMPV6,
        icmp_types::{V6_DEST_UNREACH, V6_PACKET_TOO_BIG, V6_PARAM_PROBLEM, V6_TIME_EXCEEDED},
        pseudo_header_sum_v6,
    },
};

/// An error message and the packet it answers fit the IPv6 minimum MTU (RFC 4443 2.4 c).
pub const MAX_MESSAGE: usize = 1280 - 40;

/// Whether a packet from `src` to `dst` may be answered with an error; `icmp_type` is its
/// ICMPv6 type if it is ICMPv6. Not to an error (or a redirect), not to a packet for a
/// multicast group (packet too big is the exception), not to an unspecified or multicast
/// source (RFC 4443 2.4 e).
pub fn may_answer(src: &[u8; 16], dst: &[u8; 16], icmp_type: Option<u8>, error: u8) -> bool {
    if *src == [0; 16] || src[0] == 0xff {
        return false;
    }
    if dst[0] == 0xff && error != V6_PACKET_TOO_BIG {
        return false;
    }
    // Error messages are types 0-127; a redirect (137) is not answered either.
    !matches!(icmp_type, Some(t) if t < 128 || t == 137)
}

/// Writes into `out` the ICMPv6 error `ty`/`code` with `rest` (the MTU of packet too big,
/// the pointer of a parameter problem, else 0) quoting as much of `invoking` as fits
/// [`MAX_MESSAGE`], sent from `src` to `dst`, checksum in place. Returns its length.
pub fn error_message(
    ty: u8,
    code: u8,
    rest: u32,
    src: [u8; 16],
    dst: [u8; 16],
    invoking: &[u8],
    out: &mut [u8; MAX_MESSAGE],
) -> usize {
    debug_assert!(matches!(
        ty,
        V6_DEST_UNREACH | V6_PACKET_TOO_BIG | V6_TIME_EXCEEDED | V6_PARAM_PROBLEM
    ));
    let quoted = invoking.len().min(MAX_MESSAGE - 8);
    let len = 8 + quoted;
    out[0] = ty;
    out[1] = code;
    out[2..4].copy_from_slice(&[0, 0]);
    out[4..8].copy_from_slice(&rest.to_be_bytes());
    out[8..len].copy_from_slice(&invoking[..quoted]);
    let c = !fold(sum(
        &out[..len],
        pseudo_header_sum_v6(src, dst, PROTO_ICMPV6, len as u32),
    ));
    out[2..4].copy_from_slice(&c.to_be_bytes());
    len
}

/// The hop limit of the errors pl sends.
pub const HOP_LIMIT: u8 = 64;

/// Bytes of an invoking packet of `packet_len` bytes an error quotes, when only `at_hand`
/// bytes of it can be read (the linear part of a multi-buffer frame): as much as fits
/// [`MAX_MESSAGE`].
#[inline(always)]
pub fn quoted_len(packet_len: usize, at_hand: usize) -> usize {
    packet_len.min(at_hand).min(MAX_MESSAGE - 8)
}

/// The IPv6 header and ICMPv6 header (checksum zero) of the error `ty` (with `rest`, as
/// [`error_message`]) answering the packet whose IPv6 header is `ip`, from its
/// destination to its source, quoting `quoted` bytes: the message's first 48 bytes, the
/// quoted packet following them.
#[inline(always)]
pub fn error_head(ty: u8, rest: u32, ip: &[u8; 40], quoted: usize, out: &mut [u8; 48]) {
    let plen = ((8 + quoted) as u16).to_be_bytes();
    out[..8].copy_from_slice(&[0x60, 0, 0, 0, plen[0], plen[1], PROTO_ICMPV6, HOP_LIMIT]);
    out[8..24].copy_from_slice(&ip[24..40]);
    out[24..40].copy_from_slice(&ip[8..24]);
    out[40..44].copy_from_slice(&[ty, 0, 0, 0]);
    out[44..48].copy_from_slice(&rest.to_be_bytes());
}

/// The pseudo-header's sum for the message whose IPv6 header starts `head` (as
/// [`pseudo_header_sum_v6`], read from the header itself).
#[inline(always)]
pub fn pseudo_sum(head: &[u8; 48]) -> u32 {
    sum(&head[8..40], 0) + u32::from(u16::from_be_bytes([head[4], head[5]])) + u32::from(head[6])
}

/// Folds a sum of 32-bit big-endian words (as the data path adds a message up, eight
/// bytes at a time) to the 16-bit one's complement sum.
#[inline(always)]
pub const fn fold64(acc: u64) -> u16 {
    let a = (acc & 0xffff_ffff) + (acc >> 32);
    let a = (a & 0xffff_ffff) + (a >> 32);
    fold((a & 0xffff) as u32 + (a >> 16) as u32)
}

/// Bytes of an error about a flow the data path reads, from the outer IPv6 header: outer
/// IPv6 without extension headers (40), ICMPv6 header (8), quoted IPv6 without extension
/// headers (40), the quoted L4 header's first 8 bytes (UDP's whole header, TCP's ports).
pub const WINDOW: usize = 96;
/// Offset of the quoted TCP checksum from the outer IPv6 header, when quoted.
pub const QUOTED_TCP_CHECK: usize = QUOTED_L4 + 16;

const OUT_HOP: usize = 7;
const OUT_SRC: usize = 8;
const OUT_DST: usize = 24;
const ICMP_TYPE: usize = 40;
const ICMP_CHECK: usize = 42;
const QUOTED: usize = 48;
/// Offset of the quoted packet's next header from the outer IPv6 header.
pub const QUOTED_NEXT: usize = QUOTED + 6;
const QUOTED_SRC: usize = QUOTED + 8;
const QUOTED_DST: usize = QUOTED + 24;
const QUOTED_L4: usize = QUOTED + 40;
const QUOTED_UDP_CHECK: usize = QUOTED_L4 + 6;

/// The flow-table key of the entry an ICMPv6 error in `w` (arrived on `network`) belongs
/// to: the quoted packet reversed. None unless it is an error the data path translates
/// (destination unreachable, packet too big, time exceeded, parameter problem),
/// quoting TCP or UDP with no extension headers, the quoted ports inside the message.
/// The caller checked the outer packet is ICMPv6 with no extension headers.
#[inline(always)]
pub fn error_key(w: &[u8; WINDOW], network: u16) -> Option<FlowKey6> {
    if !matches!(
        w[ICMP_TYPE],
        V6_DEST_UNREACH | V6_PACKET_TOO_BIG | V6_TIME_EXCEEDED | V6_PARAM_PROBLEM
    ) || w[QUOTED] >> 4 != 6
    {
        return None;
    }
    // The quoted L4 header must be in the message, not in Ethernet padding after it.
    if 40 + usize::from(u16::from_be_bytes([w[4], w[5]])) < WINDOW {
        return None;
    }
    let proto = w[QUOTED_NEXT];
    if proto != IPPROTO_TCP && proto != IPPROTO_UDP {
        return None;
    }
    let mut key = FlowKey6 {
        network,
        proto,
        sport_be: u16::from_ne_bytes([w[QUOTED_L4 + 2], w[QUOTED_L4 + 3]]),
        dport_be: u16::from_ne_bytes([w[QUOTED_L4], w[QUOTED_L4 + 1]]),
        ..FlowKey6::default()
    };
    key.src.copy_from_slice(&w[QUOTED_DST..QUOTED_DST + 16]);
    key.dst.copy_from_slice(&w[QUOTED_SRC..QUOTED_SRC + 16]);
    Some(key)
}

/// Writes `new` over the address `at` and returns the change's checksum delta (folded).
#[inline(always)]
pub fn replace_addr(at: &mut Addr6, new: &Addr6) -> u32 {
    let d = addr_delta(0, at, new);
    *at = *new;
    d
}

#[inline(always)]
fn addr_mut(w: &mut [u8; WINDOW], at: usize) -> &mut Addr6 {
    // Constant offsets inside the window: never the empty case.
    match w[at..].first_chunk_mut() {
        Some(a) => a,
        None => unreachable!(),
    }
}

#[inline(always)]
fn word(w: &[u8; WINDOW], at: usize) -> u16 {
    u16::from_be_bytes([w[at], w[at + 1]])
}

/// Rewrites the error in `w` (see [`error_key`]) along the entry `v` found for it: the
/// outer packet goes from `v.new_src` to `v.new_dst` with its hop limit one lower (the
/// caller checked it is above 1); the quoted packet becomes the one the receiver sent,
/// `v.new_dst:new_dport -> v.new_src:new_sport`. Checksums updated incrementally: the
/// quoted UDP checksum (unless 0), the quoted TCP checksum if `tcp_check` holds it, and
/// ICMPv6's, over its pseudo-header and everything quoted.
#[inline(always)]
pub fn translate_error(w: &mut [u8; WINDOW], v: &FlowValue6, tcp_check: Option<&mut [u8; 2]>) {
    translate_error_with(w, v, tcp_check, replace_addr);
}

/// [`translate_error`] with `replace` for [`replace_addr`]: the data path passes it out
/// of line, where each address's unrolled word loop fits a small stack frame.
#[inline(always)]
pub fn translate_error_with(
    w: &mut [u8; WINDOW],
    v: &FlowValue6,
    tcp_check: Option<&mut [u8; 2]>,
    replace: impl Fn(&mut Addr6, &Addr6) -> u32,
) {
    w[OUT_HOP] -= 1;
    let outer = replace(addr_mut(w, OUT_SRC), &v.new_src);
    let outer = outer + replace(addr_mut(w, OUT_DST), &v.new_dst);
    let quoted = replace(addr_mut(w, QUOTED_SRC), &v.new_dst);
    let quoted = quoted + replace(addr_mut(w, QUOTED_DST), &v.new_src);
    let (sport, dport) = (u16::from_be(v.new_dport_be), u16::from_be(v.new_sport_be));
    let quoted = word_delta(quoted, word(w, QUOTED_L4), sport);
    let mut quoted = u32::from(fold(word_delta(quoted, word(w, QUOTED_L4 + 2), dport)));
    w[QUOTED_L4..QUOTED_L4 + 2].copy_from_slice(&sport.to_be_bytes());
    w[QUOTED_L4 + 2..QUOTED_L4 + 4].copy_from_slice(&dport.to_be_bytes());
    // The quoted L4 checksum covers the quoted addresses (its pseudo-header) and ports;
    // its own change is part of what ICMPv6's covers.
    let udp = w[QUOTED_NEXT] == IPPROTO_UDP;
    let old = if udp {
        word(w, QUOTED_UDP_CHECK)
    } else {
        tcp_check.as_ref().map_or(0, |c| u16::from_be_bytes(**c))
    };
    if old != 0 || (!udp && tcp_check.is_some()) {
        let new = match apply_delta(old, quoted) {
            0 if udp => 0xffff,
            n => n,
        };
        if udp {
            w[QUOTED_UDP_CHECK..QUOTED_UDP_CHECK + 2].copy_from_slice(&new.to_be_bytes());
        } else if let Some(c) = tcp_check {
            *c = new.to_be_bytes();
        }
        quoted = u32::from(fold(word_delta(quoted, old, new)));
    }
    let icmp = apply_delta(
        word(w, ICMP_CHECK),
        u32::from(fold(u32::from(fold(outer)) + quoted)),
    );
    w[ICMP_CHECK..ICMP_CHECK + 2].copy_from_slice(&icmp.to_be_bytes());
}

#[cfg(test)]
mod tests {
    extern crate std;
    use std::{vec, vec::Vec};

    use super::*;

    const NLB: [u8; 16] = [0xfd, 9, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
    const CLIENT: [u8; 16] = [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10];
    const GROUP: [u8; 16] = [0xff, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];

    #[test]
    fn only_what_rfc_4443_allows_is_answered() {
        // (what, source, destination, its ICMPv6 type, the error, answered)
        type Row = (&'static str, [u8; 16], [u8; 16], Option<u8>, u8, bool);
        let rows: &[Row] = &[
            (
                "TCP, time exceeded",
                CLIENT,
                NLB,
                None,
                V6_TIME_EXCEEDED,
                true,
            ),
            (
                "an echo request",
                CLIENT,
                NLB,
                Some(128),
                V6_TIME_EXCEEDED,
                true,
            ),
            ("an error", CLIENT, NLB, Some(1), V6_TIME_EXCEEDED, false),
            (
                "a packet too big",
                CLIENT,
                NLB,
                Some(2),
                V6_PACKET_TOO_BIG,
                false,
            ),
            (
                "a redirect",
                CLIENT,
                NLB,
                Some(137),
                V6_TIME_EXCEEDED,
                false,
            ),
            ("to a group", CLIENT, GROUP, None, V6_TIME_EXCEEDED, false),
            (
                "to a group, too big",
                CLIENT,
                GROUP,
                None,
                V6_PACKET_TOO_BIG,
                true,
            ),
            ("from ::", [0; 16], NLB, None, V6_TIME_EXCEEDED, false),
            ("from a group", GROUP, NLB, None, V6_PACKET_TOO_BIG, false),
        ];
        for (what, src, dst, icmp, error, want) in rows {
            assert_eq!(may_answer(src, dst, *icmp, *error), *want, "{what}");
        }
    }

    #[test]
    fn an_error_quotes_what_fits_1280_bytes_and_its_checksum_verifies() {
        let mut out = [0u8; MAX_MESSAGE];
        let small = [0xabu8; 100];
        let n = error_message(V6_TIME_EXCEEDED, 0, 0, NLB, CLIENT, &small, &mut out);
        assert_eq!(n, 108);
        assert_eq!(&out[..2], &[V6_TIME_EXCEEDED, 0]);
        assert_eq!(&out[4..8], &[0, 0, 0, 0]);
        assert_eq!(&out[8..108], &small[..]);
        let verify = |m: &[u8]| {
            fold(sum(
                m,
                pseudo_header_sum_v6(NLB, CLIENT, PROTO_ICMPV6, m.len() as u32),
            ))
        };
        assert_eq!(verify(&out[..n]), 0xffff);
        let big = [0x5au8; 9000];
        let n = error_message(V6_PACKET_TOO_BIG, 0, 1500, NLB, CLIENT, &big, &mut out);
        assert_eq!(n, MAX_MESSAGE, "40 + {n} bytes: the minimum MTU exactly");
        assert_eq!(&out[4..8], &1500u32.to_be_bytes());
        assert_eq!(verify(&out[..n]), 0xffff);
        // Another destination: the pseudo-header is covered.
        assert_ne!(
            fold(sum(
                &out[..n],
                pseudo_header_sum_v6(NLB, GROUP, PROTO_ICMPV6, n as u32)
            )),
            0xffff
        );
    }

    const EP: [u8; 16] = [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xe1];
    const ROUTER: [u8; 16] = [0xfd, 9, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xfe];
    const TARGET: [u8; 16] = [0xfd, 9, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x11];

    /// An IPv6 packet (hop limit 63) carrying `proto` `segment`, its checksum (at
    /// `check`) computed from scratch.
    fn packet(src: Addr6, dst: Addr6, proto: u8, mut segment: Vec<u8>, check: usize) -> Vec<u8> {
        segment[check..check + 2].fill(0);
        let c = crate::xlat::l4_checksum_v6(src, dst, proto, &segment);
        segment[check..check + 2].copy_from_slice(&c.to_be_bytes());
        let len = (segment.len() as u16).to_be_bytes();
        let mut p = vec![0x60, 0, 0, 0, len[0], len[1], proto, 63];
        p.extend_from_slice(&src);
        p.extend_from_slice(&dst);
        p.extend_from_slice(&segment);
        p
    }

    fn udp(src: Addr6, sport: u16, dst: Addr6, dport: u16) -> Vec<u8> {
        let mut s = [
            sport.to_be_bytes(),
            dport.to_be_bytes(),
            13u16.to_be_bytes(),
            [0, 0],
        ]
        .concat();
        s.extend_from_slice(b"query");
        packet(src, dst, IPPROTO_UDP, s, 6)
    }

    fn tcp(src: Addr6, sport: u16, dst: Addr6, dport: u16) -> Vec<u8> {
        let mut s = [sport.to_be_bytes(), dport.to_be_bytes()].concat();
        s.extend_from_slice(&[0, 0, 3, 232, 0, 0, 0, 0, 0x50, 2, 0xff, 0xff, 0, 0, 0, 0]);
        packet(src, dst, IPPROTO_TCP, s, 16)
    }

    /// The whole error `ty` (rest `rest`) from `src` to `dst` (hop limit `hop`) quoting
    /// `invoking`, checksummed from scratch.
    fn error(ty: u8, rest: u32, src: Addr6, dst: Addr6, hop: u8, invoking: &[u8]) -> Vec<u8> {
        let mut m = [0u8; MAX_MESSAGE];
        let n = error_message(ty, 0, rest, src, dst, invoking, &mut m);
        let mut ip = [0u8; 40];
        ip[8..24].copy_from_slice(&dst);
        ip[24..40].copy_from_slice(&src);
        let mut head = [0u8; 48];
        error_head(ty, rest, &ip, invoking.len(), &mut head);
        head[7] = hop;
        let mut out = head[..40].to_vec();
        out.extend_from_slice(&m[..n]);
        out
    }

    /// The reply entry of a flow CLIENT:40000 -> EP:443 sent on as NLB:40001 -> TARGET:8443.
    fn reply_entry() -> FlowValue6 {
        FlowValue6 {
            new_src: EP,
            new_dst: CLIENT,
            new_sport_be: 443u16.to_be(),
            new_dport_be: 40000u16.to_be(),
            egress: 0,
            ..FlowValue6::default()
        }
    }

    #[test]
    fn an_error_about_a_flow_is_keyed_by_the_quoted_packet_reversed() {
        let e = error(
            V6_PACKET_TOO_BIG,
            1400,
            ROUTER,
            NLB,
            64,
            &udp(NLB, 40001, TARGET, 5353),
        );
        let w: &[u8; WINDOW] = e[..WINDOW].try_into().unwrap();
        let key = error_key(w, 2).expect("keyed");
        assert_eq!(
            (key.src, key.dst, key.network, key.proto),
            (TARGET, NLB, 2, IPPROTO_UDP)
        );
        assert_eq!(
            (u16::from_be(key.sport_be), u16::from_be(key.dport_be)),
            (5353, 40001)
        );
        // A parameter problem is keyed alike (its pointer stays valid: the quoted
        // packet keeps its layout).
        let mut pp = *w;
        pp[40] = V6_PARAM_PROBLEM;
        assert_eq!(error_key(&pp, 2), Some(key));
        // Not an error pl translates: a redirect; an echo; quoting ICMPv6.
        for (at, b) in [(40, 137), (40, 128), (54, PROTO_ICMPV6)] {
            let mut x = *w;
            x[at] = b;
            assert_eq!(error_key(&x, 2), None, "byte {at} = {b}");
        }
        // The quoted ports past the message's payload length: Ethernet padding.
        let mut short = *w;
        short[4..6].copy_from_slice(&55u16.to_be_bytes());
        assert_eq!(error_key(&short, 2), None);
    }

    #[test]
    fn a_translated_error_is_the_error_about_what_the_receiver_sent() {
        let v = reply_entry();
        // UDP, quoted whole: every checksum against one computed from scratch.
        let mut e = error(
            V6_PACKET_TOO_BIG,
            1400,
            ROUTER,
            NLB,
            64,
            &udp(NLB, 40001, TARGET, 5353),
        );
        let w: &mut [u8; WINDOW] = (&mut e[..WINDOW]).try_into().unwrap();
        translate_error(w, &v, None);
        let want = error(
            V6_PACKET_TOO_BIG,
            1400,
            EP,
            CLIENT,
            63,
            &udp(CLIENT, 40000, EP, 443),
        );
        assert_eq!(e, want);
        // TCP, its checksum quoted and passed apart from the window.
        let mut e = error(
            V6_TIME_EXCEEDED,
            0,
            ROUTER,
            NLB,
            64,
            &tcp(NLB, 40001, TARGET, 8443),
        );
        let (w, rest) = e.split_at_mut(WINDOW);
        let check: &mut [u8; 2] = (&mut rest[QUOTED_TCP_CHECK - WINDOW..][..2])
            .try_into()
            .unwrap();
        translate_error(w.try_into().unwrap(), &v, Some(check));
        let want = error(
            V6_TIME_EXCEEDED,
            0,
            EP,
            CLIENT,
            63,
            &tcp(CLIENT, 40000, EP, 443),
        );
        assert_eq!(e, want);
        // TCP quoted only to its ports: the ICMPv6 checksum still verifies.
        let mut e = error(
            V6_DEST_UNREACH,
            0,
            ROUTER,
            NLB,
            64,
            &tcp(NLB, 40001, TARGET, 8443)[..48],
        );
        translate_error((&mut e[..WINDOW]).try_into().unwrap(), &v, None);
        let want = error(
            V6_DEST_UNREACH,
            0,
            EP,
            CLIENT,
            63,
            &tcp(CLIENT, 40000, EP, 443)[..48],
        );
        assert_eq!(e, want);
    }

    #[test]
    fn a_generated_error_summed_eight_bytes_at_a_time_matches_the_builder() {
        for len in [48usize, 61, 1231, 1232, 1300] {
            let invoking: Vec<u8> = (0..len).map(|i| (i * 7 + 3) as u8).collect();
            let q = quoted_len(len, 4000);
            assert_eq!(q, len.min(MAX_MESSAGE - 8));
            let want = error(
                V6_PACKET_TOO_BIG,
                1500,
                EP,
                CLIENT,
                HOP_LIMIT,
                &invoking[..q],
            );
            // As the data path does: head, quoted bytes, then the sum of 64-bit words
            // with the last partial word masked, as 32-bit halves.
            let mut ip = [0u8; 40];
            ip[8..24].copy_from_slice(&CLIENT);
            ip[24..40].copy_from_slice(&EP);
            let mut head = [0u8; 48];
            error_head(V6_PACKET_TOO_BIG, 1500, &ip, q, &mut head);
            let mut msg = head[40..].to_vec();
            msg.extend_from_slice(&invoking[..q]);
            let mut acc = u64::from(pseudo_sum(&head));
            assert_eq!(
                fold(pseudo_sum(&head)),
                fold(pseudo_header_sum_v6(
                    EP,
                    CLIENT,
                    PROTO_ICMPV6,
                    msg.len() as u32
                ))
            );
            let mut chunks = msg.chunks_exact(8);
            for c in &mut chunks {
                let x = u64::from_be_bytes(c.try_into().unwrap());
                acc += (x >> 32) + (x & 0xffff_ffff);
            }
            let r = chunks.remainder().len();
            if r > 0 {
                let x = u64::from_be_bytes(msg[msg.len() - 8..].try_into().unwrap());
                let x = (x & ((1u64 << (8 * r)) - 1)) << (8 * (8 - r));
                acc += (x >> 32) + (x & 0xffff_ffff);
            }
            let c = (!fold64(acc)).to_be_bytes();
            let mut got = head.to_vec();
            got.extend_from_slice(&invoking[..q]);
            got[42..44].copy_from_slice(&c);
            assert_eq!(got, want, "{len} bytes");
        }
        assert_eq!(
            quoted_len(3000, 1010),
            1010,
            "a multi-buffer frame's linear part"
        );
    }
}
