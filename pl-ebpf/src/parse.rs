//! Parse: the one place that reads headers, every read bounds-checked against data_end.
//!
//! The data path handles IPv4 without options and unfragmented (Katran's choice too):
//! fixed offsets keep the verifier's job simple. Anything else is classified here and
//! dropped on dedicated interfaces.

use core::mem::size_of;

use aya_ebpf::programs::XdpContext;
use network_types::{eth::EthHdr, ip::Ipv4Hdr};
use pl_common::{
    proto::{
        ARP_LEN, ETH_HLEN, ETH_P_ARP, ETH_P_IP, IPPROTO_TCP, IPPROTO_UDP, IPV4_MIN_HLEN,
        TCP_MIN_HLEN, UDP_HLEN,
    },
    stats::IfaceCounter,
};

/// Offset of the L4 header for IPv4 without options.
pub const L4_OFF: usize = ETH_HLEN + IPV4_MIN_HLEN;

/// A pointer to a `T` at `offset`, if the whole `T` lies inside the frame.
#[inline(always)]
pub fn ptr_at<T>(ctx: &XdpContext, offset: usize) -> Option<*mut T> {
    let start = ctx.data();
    if start + offset + size_of::<T>() > ctx.data_end() {
        return None;
    }
    Some((start + offset) as *mut T)
}

#[inline(always)]
fn has(ctx: &XdpContext, offset: usize, len: usize) -> bool {
    ctx.data() + offset + len <= ctx.data_end()
}

/// What the data path does with a frame.
pub enum Frame {
    Arp,
    /// IPv4 TCP or UDP, no options, not fragmented, whole L4 header present.
    Ipv4L4 {
        proto: u8,
    },
    /// Anything else, with its class counter.
    Other,
}

/// The frame's class counter and what the data path makes of it.
#[inline(always)]
pub fn parse(ctx: &XdpContext) -> (IfaceCounter, Frame) {
    let Some(eth) = ptr_at::<EthHdr>(ctx, 0) else {
        return (IfaceCounter::Malformed, Frame::Other);
    };
    // SAFETY: bounds checked by ptr_at.
    match u16::from_be(unsafe { (*eth).ether_type }) {
        ETH_P_ARP if has(ctx, ETH_HLEN, ARP_LEN) => (IfaceCounter::Arp, Frame::Arp),
        ETH_P_ARP => (IfaceCounter::Malformed, Frame::Other),
        ETH_P_IP => parse_ipv4(ctx),
        _ => (IfaceCounter::NonIpv4, Frame::Other),
    }
}

#[inline(always)]
fn parse_ipv4(ctx: &XdpContext) -> (IfaceCounter, Frame) {
    let Some(ip) = ptr_at::<Ipv4Hdr>(ctx, ETH_HLEN) else {
        return (IfaceCounter::Malformed, Frame::Other);
    };
    // SAFETY: bounds checked by ptr_at.
    let (version, hlen, proto, frags) = unsafe {
        (
            (*ip).version(),
            usize::from((*ip).ihl()),
            (*ip).proto,
            u16::from_be_bytes((*ip).frags),
        )
    };
    if version != 4 || hlen < IPV4_MIN_HLEN || !has(ctx, ETH_HLEN, hlen) {
        return (IfaceCounter::Malformed, Frame::Other);
    }
    // A non-first fragment has no L4 header: classify by protocol, read nothing more.
    if frags & 0x1fff != 0 {
        let class = match proto {
            IPPROTO_TCP => IfaceCounter::Ipv4Tcp,
            IPPROTO_UDP => IfaceCounter::Ipv4Udp,
            _ => IfaceCounter::Ipv4Other,
        };
        return (class, Frame::Other);
    }
    let l4 = ETH_HLEN + hlen;
    let class = match proto {
        IPPROTO_TCP if has(ctx, l4, TCP_MIN_HLEN) => IfaceCounter::Ipv4Tcp,
        IPPROTO_UDP if has(ctx, l4, UDP_HLEN) => IfaceCounter::Ipv4Udp,
        IPPROTO_TCP | IPPROTO_UDP => return (IfaceCounter::Malformed, Frame::Other),
        _ => return (IfaceCounter::Ipv4Other, Frame::Other),
    };
    // Options, or a first fragment (more-fragments set): not handled by the data path yet.
    if hlen != IPV4_MIN_HLEN || frags & 0x2000 != 0 {
        return (class, Frame::Other);
    }
    (class, Frame::Ipv4L4 { proto })
}
