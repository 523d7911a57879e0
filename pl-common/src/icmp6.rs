//! ICMPv6 errors pl generates (RFC 4443): time exceeded when the hop limit runs out, packet
//! too big when a packet exceeds the egress MTU (IPv6 is never fragmented on the way).
//! Pure logic: whether a packet may be answered, and the message that answers it.

use crate::{
    checksum::{fold, sum},
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

#[cfg(test)]
mod tests {
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
}
