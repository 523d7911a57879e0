//! Parse: the one place that reads headers, every read bounds-checked against data_end.

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

/// A pointer to a `T` at `offset`, if the whole `T` lies inside the frame.
#[inline(always)]
fn ptr_at<T>(ctx: &XdpContext, offset: usize) -> Option<*const T> {
    let start = ctx.data();
    if start + offset + size_of::<T>() > ctx.data_end() {
        return None;
    }
    Some((start + offset) as *const T)
}

/// True when `len` bytes from `offset` lie inside the frame.
#[inline(always)]
fn has(ctx: &XdpContext, offset: usize, len: usize) -> bool {
    ctx.data() + offset + len <= ctx.data_end()
}

/// Which class counter the frame belongs to.
#[inline(always)]
pub fn classify(ctx: &XdpContext) -> IfaceCounter {
    let Some(eth) = ptr_at::<EthHdr>(ctx, 0) else {
        return IfaceCounter::Malformed;
    };
    // SAFETY: bounds checked by ptr_at.
    match u16::from_be(unsafe { (*eth).ether_type }) {
        ETH_P_ARP if has(ctx, ETH_HLEN, ARP_LEN) => IfaceCounter::Arp,
        ETH_P_ARP => IfaceCounter::Malformed,
        ETH_P_IP => classify_ipv4(ctx),
        _ => IfaceCounter::NonIpv4,
    }
}

#[inline(always)]
fn classify_ipv4(ctx: &XdpContext) -> IfaceCounter {
    let Some(ip) = ptr_at::<Ipv4Hdr>(ctx, ETH_HLEN) else {
        return IfaceCounter::Malformed;
    };
    // SAFETY: bounds checked by ptr_at.
    let (version, hlen, proto) =
        unsafe { ((*ip).version(), usize::from((*ip).ihl()), (*ip).proto) };
    if version != 4 || hlen < IPV4_MIN_HLEN || !has(ctx, ETH_HLEN, hlen) {
        return IfaceCounter::Malformed;
    }
    let l4 = ETH_HLEN + hlen;
    match proto {
        IPPROTO_TCP if has(ctx, l4, TCP_MIN_HLEN) => IfaceCounter::Ipv4Tcp,
        IPPROTO_UDP if has(ctx, l4, UDP_HLEN) => IfaceCounter::Ipv4Udp,
        IPPROTO_TCP | IPPROTO_UDP => IfaceCounter::Malformed,
        _ => IfaceCounter::Ipv4Other,
    }
}
