//! Parse: the one place that reads headers, every read bounds-checked against data_end.
//! Frames may be multi-buffer (jumbo frames on a frags-capable driver): headers must lie
//! in the linear part, lengths are checked against the whole frame.
//!
//! The data path carries IPv4 TCP and UDP without options and unfragmented, and ICMP
//! errors about its flows (Katran's choice too): fixed offsets keep the verifier's job
//! simple. Every other frame gets a reason here, and dedicated interfaces drop it counted
//! under that reason. Ethernet padding past the IPv4 total length is allowed (and carried).

use core::mem::size_of;

use aya_ebpf::{helpers::bpf_xdp_get_buff_len, programs::XdpContext};
use network_types::{eth::EthHdr, ip::Ipv4Hdr};
use pl_common::{
    checksum,
    proto::{
        ARP_LEN, ETH_HLEN, ETH_P_8021AD, ETH_P_8021Q, ETH_P_ARP, ETH_P_IP, ETH_P_IPV6, ICMP_HLEN,
        IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_TCP, IPPROTO_UDP, IPV4_MIN_HLEN, IPV6_HLEN,
        TCP_MIN_HLEN, UDP_HLEN,
    },
    stats::IfaceCounter,
    xlat::{
        MAX_EXT_HEADERS, NH_AH, NH_DEST_OPTS, NH_ESP, NH_FRAGMENT, NH_HOP_BY_HOP, NH_NONE,
        NH_ROUTING,
    },
};

/// Offset of the L4 header for IPv4 without options.
pub const L4_OFF: usize = ETH_HLEN + IPV4_MIN_HLEN;

/// Offset of the L4 header for IPv6 without extension headers.
pub const L4_OFF6: usize = ETH_HLEN + IPV6_HLEN;

/// Bytes of IPv6 extension headers the walk reads past: a bound for the verifier, and
/// more than hop-by-hop and destination options carry in practice.
pub const MAX_EXT_BYTES: usize = 256;

/// A pointer to a `T` at `offset`, if the whole `T` lies inside the frame.
#[inline(always)]
pub fn ptr_at<T>(ctx: &XdpContext, offset: usize) -> Option<*mut T> {
    let start = ctx.data();
    if start + offset + size_of::<T>() > ctx.data_end() {
        return None;
    }
    Some((start + offset) as *mut T)
}

/// The whole frame's length, fragments included (data_end ends the linear part only).
#[inline(always)]
pub fn frame_len(ctx: &XdpContext) -> u64 {
    // SAFETY: the helper only reads the xdp_buff the context points to.
    unsafe { bpf_xdp_get_buff_len(ctx.ctx) }
}

#[inline(always)]
fn has(ctx: &XdpContext, offset: usize, len: usize) -> bool {
    ctx.data() + offset + len <= ctx.data_end()
}

/// Whether the frame is IPv6 (for the IPv6 program).
#[inline(always)]
pub fn is_ipv6(ctx: &XdpContext) -> bool {
    // SAFETY: bounds checked by ptr_at.
    ptr_at::<EthHdr>(ctx, 0).is_some_and(|e| u16::from_be(unsafe { (*e).ether_type }) == ETH_P_IPV6)
}

/// What the data path does with a frame.
pub enum Frame {
    Arp,
    /// IPv4 TCP or UDP, no options, not fragmented, whole L4 header present and sane.
    Ipv4L4 {
        proto: u8,
    },
    /// IPv4 ICMP, no options, not fragmented, ICMP header present.
    Icmp,
    /// IPv6 TCP or UDP after at most [`MAX_EXT_HEADERS`] extension headers (none of them a
    /// fragment, AH or ESP), whole L4 header present and sane; `l4_off` from the frame's
    /// start, at most [`L4_OFF6`] + [`MAX_EXT_BYTES`].
    Ipv6L4 {
        proto: u8,
        l4_off: u16,
    },
    /// ICMPv6 (neighbour discovery included), header present.
    Icmp6 {
        l4_off: u16,
    },
    /// Not carried: dropped on a dedicated interface, counted under this reason.
    Drop(IfaceCounter),
}

/// The frame's class counter and what the data path makes of it; `len` is the whole
/// frame's length.
#[inline(always)]
pub fn parse(ctx: &XdpContext, len: u64) -> (IfaceCounter, Frame) {
    let Some(eth) = ptr_at::<EthHdr>(ctx, 0) else {
        return (
            IfaceCounter::Malformed,
            Frame::Drop(IfaceCounter::DroppedTruncated),
        );
    };
    // SAFETY: bounds checked by ptr_at.
    match u16::from_be(unsafe { (*eth).ether_type }) {
        ETH_P_ARP if has(ctx, ETH_HLEN, ARP_LEN) => (IfaceCounter::Arp, Frame::Arp),
        ETH_P_ARP => (
            IfaceCounter::Malformed,
            Frame::Drop(IfaceCounter::DroppedTruncated),
        ),
        ETH_P_IP => parse_ipv4(ctx, len),
        ETH_P_8021Q | ETH_P_8021AD => (
            IfaceCounter::NonIpv4,
            Frame::Drop(IfaceCounter::DroppedVlan),
        ),
        _ => (
            IfaceCounter::NonIpv4,
            Frame::Drop(IfaceCounter::DroppedNonIpv4),
        ),
    }
}

#[inline(always)]
fn parse_ipv4(ctx: &XdpContext, len: u64) -> (IfaceCounter, Frame) {
    let malformed = |why| (IfaceCounter::Malformed, Frame::Drop(why));
    let Some(ip) = ptr_at::<Ipv4Hdr>(ctx, ETH_HLEN) else {
        return malformed(IfaceCounter::DroppedTruncated);
    };
    // SAFETY: bounds checked by ptr_at.
    let (version, hlen, total, proto, frags) = unsafe {
        (
            (*ip).version(),
            usize::from((*ip).ihl()),
            usize::from(u16::from_be_bytes((*ip).tot_len)),
            (*ip).proto,
            u16::from_be_bytes((*ip).frags),
        )
    };
    if version != 4 || hlen < IPV4_MIN_HLEN || total < hlen {
        return malformed(IfaceCounter::DroppedBadIpv4);
    }
    if !has(ctx, ETH_HLEN, hlen) {
        return malformed(IfaceCounter::DroppedBadIpv4);
    }
    // The payload may run on into fragments; only the headers must be linear.
    if (ETH_HLEN + total) as u64 > len {
        return malformed(IfaceCounter::DroppedTruncated);
    }
    let class = match proto {
        IPPROTO_TCP => IfaceCounter::Ipv4Tcp,
        IPPROTO_UDP => IfaceCounter::Ipv4Udp,
        _ => IfaceCounter::Ipv4Other,
    };
    // Any fragment, first or not: its L4 header (if any) speaks for a packet not here.
    if frags & 0x3fff != 0 {
        return (class, Frame::Drop(IfaceCounter::DroppedFragment));
    }
    if hlen != IPV4_MIN_HLEN {
        return (class, Frame::Drop(IfaceCounter::DroppedIpOptions));
    }
    // A router drops a header that fails its checksum; translating it would only hide that.
    // SAFETY: the 20-byte header is inside the frame (checked above).
    if !checksum::ipv4_header_ok(unsafe { &*(ip as *const [u8; IPV4_MIN_HLEN]) }) {
        return malformed(IfaceCounter::DroppedBadIpv4);
    }
    let l4_len = total - IPV4_MIN_HLEN;
    match proto {
        IPPROTO_TCP => {
            let Some(tcp) =
                ptr_at::<[u8; TCP_MIN_HLEN]>(ctx, L4_OFF).filter(|_| l4_len >= TCP_MIN_HLEN)
            else {
                return malformed(IfaceCounter::DroppedTruncated);
            };
            // SAFETY: bounds checked by ptr_at; byte 12 holds the data offset.
            let doff = usize::from(unsafe { (*tcp)[12] } >> 4) * 4;
            if doff < TCP_MIN_HLEN || doff > l4_len {
                return malformed(IfaceCounter::DroppedBadL4);
            }
            (class, Frame::Ipv4L4 { proto })
        }
        IPPROTO_UDP => {
            let Some(udp) = ptr_at::<[u8; UDP_HLEN]>(ctx, L4_OFF).filter(|_| l4_len >= UDP_HLEN)
            else {
                return malformed(IfaceCounter::DroppedTruncated);
            };
            // SAFETY: bounds checked by ptr_at; bytes 4..6 hold the length.
            let len = usize::from(u16::from_be_bytes(unsafe { [(*udp)[4], (*udp)[5]] }));
            if len < UDP_HLEN || len > l4_len {
                return malformed(IfaceCounter::DroppedBadL4);
            }
            (class, Frame::Ipv4L4 { proto })
        }
        IPPROTO_ICMP if l4_len >= ICMP_HLEN && has(ctx, L4_OFF, ICMP_HLEN) => (class, Frame::Icmp),
        IPPROTO_ICMP => malformed(IfaceCounter::DroppedTruncated),
        _ => (class, Frame::Drop(IfaceCounter::DroppedProtocol)),
    }
}

/// The IPv6 header and its extension headers, walked as `pl_common::xlat::walk_ipv6`
/// does (the host-tested oracle), within [`MAX_EXT_BYTES`].
#[inline(always)]
pub fn parse_ipv6(ctx: &XdpContext, len: u64) -> (IfaceCounter, Frame) {
    let malformed = |why| (IfaceCounter::Malformed, Frame::Drop(why));
    let Some(ip) = ptr_at::<[u8; IPV6_HLEN]>(ctx, ETH_HLEN) else {
        return malformed(IfaceCounter::DroppedTruncated);
    };
    // SAFETY: bounds checked by ptr_at.
    let (version, payload, first) = unsafe {
        (
            (*ip)[0] >> 4,
            usize::from(u16::from_be_bytes([(*ip)[4], (*ip)[5]])),
            (*ip)[6],
        )
    };
    // Payload length 0 is a jumbogram's (or nothing at all): neither is carried.
    if version != 6 || payload == 0 {
        return malformed(IfaceCounter::DroppedBadIpv6);
    }
    if (L4_OFF6 + payload) as u64 > len {
        return malformed(IfaceCounter::DroppedTruncated);
    }
    let mut next = first;
    let mut off = L4_OFF6;
    let mut upper = None;
    for _ in 0..=MAX_EXT_HEADERS {
        match next {
            NH_HOP_BY_HOP | NH_ROUTING | NH_DEST_OPTS => {
                if off > L4_OFF6 + MAX_EXT_BYTES {
                    break;
                }
                let Some(h) = ptr_at::<[u8; 4]>(ctx, off) else {
                    return malformed(IfaceCounter::DroppedTruncated);
                };
                // SAFETY: bounds checked by ptr_at.
                let (nh, hlen, left) =
                    unsafe { ((*h)[0], (usize::from((*h)[1]) + 1) * 8, (*h)[3]) };
                // Segments left: a further destination, not pl's to rewrite (RFC 8200 4.4).
                if next == NH_ROUTING && left != 0 {
                    break;
                }
                next = nh;
                off += hlen;
            }
            NH_FRAGMENT => {
                return (
                    IfaceCounter::Ipv6Other,
                    Frame::Drop(IfaceCounter::DroppedFragment),
                );
            }
            NH_ESP | NH_AH | NH_NONE => {
                return (
                    IfaceCounter::Ipv6Other,
                    Frame::Drop(IfaceCounter::DroppedExtHeaders),
                );
            }
            p => {
                upper = Some(p);
                break;
            }
        }
    }
    let Some(proto) = upper.filter(|_| off <= L4_OFF6 + MAX_EXT_BYTES) else {
        return (
            IfaceCounter::Ipv6Other,
            Frame::Drop(IfaceCounter::DroppedExtHeaders),
        );
    };
    // Bytes of the payload from the upper-layer header on.
    let Some(l4_len) = (L4_OFF6 + payload).checked_sub(off) else {
        return malformed(IfaceCounter::DroppedTruncated);
    };
    let class = match proto {
        IPPROTO_TCP => IfaceCounter::Ipv6Tcp,
        IPPROTO_UDP => IfaceCounter::Ipv6Udp,
        _ => IfaceCounter::Ipv6Other,
    };
    let l4_off = off as u16;
    match proto {
        IPPROTO_TCP => {
            let Some(tcp) =
                ptr_at::<[u8; TCP_MIN_HLEN]>(ctx, off).filter(|_| l4_len >= TCP_MIN_HLEN)
            else {
                return malformed(IfaceCounter::DroppedTruncated);
            };
            // SAFETY: bounds checked by ptr_at; byte 12 holds the data offset.
            let doff = usize::from(unsafe { (*tcp)[12] } >> 4) * 4;
            if doff < TCP_MIN_HLEN || doff > l4_len {
                return malformed(IfaceCounter::DroppedBadL4);
            }
            (class, Frame::Ipv6L4 { proto, l4_off })
        }
        IPPROTO_UDP => {
            let Some(udp) = ptr_at::<[u8; UDP_HLEN]>(ctx, off).filter(|_| l4_len >= UDP_HLEN)
            else {
                return malformed(IfaceCounter::DroppedTruncated);
            };
            // SAFETY: bounds checked by ptr_at; bytes 4..6 hold the length, 6..8 the checksum.
            let (ulen, check) = unsafe {
                (
                    usize::from(u16::from_be_bytes([(*udp)[4], (*udp)[5]])),
                    u16::from_be_bytes([(*udp)[6], (*udp)[7]]),
                )
            };
            // A zero UDP checksum is invalid in IPv6 (RFC 8200 8.1).
            if ulen < UDP_HLEN || ulen > l4_len || check == 0 {
                return malformed(IfaceCounter::DroppedBadL4);
            }
            (class, Frame::Ipv6L4 { proto, l4_off })
        }
        IPPROTO_ICMPV6 if l4_len >= ICMP_HLEN && has(ctx, off, ICMP_HLEN) => {
            (class, Frame::Icmp6 { l4_off })
        }
        IPPROTO_ICMPV6 => malformed(IfaceCounter::DroppedTruncated),
        _ => (class, Frame::Drop(IfaceCounter::DroppedProtocol)),
    }
}
