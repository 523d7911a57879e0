//! MTU: where an endpoint joins networks of different MTUs, pl neither fragments nor lets
//! the path black-hole. SYN and SYN-ACK have their MSS lowered to what both sides carry;
//! a packet too big for the egress is answered with ICMP fragmentation needed (DF set) or
//! dropped (DF clear), an IPv6 one with ICMPv6 packet too big, and counted.

use aya_ebpf::programs::XdpContext;
use network_types::ip::Ipv4Hdr;
use pl_common::{
    iface::IfaceConfig,
    mss::{clamp, find_mss, mss_for_mtu},
    proto::{ETH_HLEN, IPV4_MIN_HLEN, IPV6_HLEN, TCP_MIN_HLEN},
    stats::EndpointCounter,
};

use crate::{
    maps::PL_NET_INFO,
    parse::{L4_OFF, L4_OFF6, MAX_EXT_BYTES, ptr_at},
    stats,
};

const TCP_CHECK: usize = 16;
/// The furthest a TCP header can start (IPv6 with extension headers).
const MAX_L4_OFF: usize = L4_OFF6 + MAX_EXT_BYTES;
const IP_DF: u16 = 0x4000;

/// The MTU of network `network`'s interface; 0 if unknown.
#[inline(always)]
fn mtu_of(network: u16) -> u32 {
    PL_NET_INFO.get(u32::from(network)).map_or(0, |n| n.mtu)
}

/// [`too_big`]: the packet fits the egress.
pub const FITS: u32 = 0;
/// [`too_big`]: too big, DF clear: drop it (pl does not fragment).
pub const DROP: u32 = 1;
/// What an IPv4 packet grows by when family translation makes it IPv6.
pub const XLAT_GROWTH: u64 = (IPV6_HLEN - IPV4_MIN_HLEN) as u64;

/// Whether a packet of `len` bytes (whole frame) arriving on `iface` can leave through
/// network `egress`: [`FITS`], [`DROP`], or else the MTU to answer with ICMP fragmentation
/// needed (DF set): the one the packet must fit as it arrives. Counted for `endpoint` when
/// it cannot. `GROWTH`: what the packet gains on the way (20 bytes when family
/// translation makes it IPv6).
#[inline(always)]
pub fn too_big<const GROWTH: u64>(
    ctx: &XdpContext,
    iface: &IfaceConfig,
    endpoint: u16,
    egress: u16,
    len: u64,
) -> u32 {
    // The common case costs one compare: it fits the smallest MTU pl has.
    if iface.mtu_floor != 0 && len + GROWTH <= (ETH_HLEN as u64) + u64::from(iface.mtu_floor) {
        return FITS;
    }
    egress_check(ctx, endpoint, egress, GROWTH as u32)
}

/// Out of line, so the main frame's stack does not carry it (the ICMP reply is called
/// from the main frame, and both must fit 512 bytes).
#[inline(never)]
fn egress_check(ctx: &XdpContext, endpoint: u16, egress: u16, growth: u32) -> u32 {
    let mtu = mtu_of(egress).saturating_sub(growth);
    let Some(ip) = ptr_at::<Ipv4Hdr>(ctx, ETH_HLEN) else {
        return FITS;
    };
    // SAFETY: bounds-checked by ptr_at.
    let (total, frags) = unsafe {
        (
            u32::from(u16::from_be_bytes((*ip).tot_len)),
            u16::from_be_bytes((*ip).frags),
        )
    };
    if mtu == 0 || total <= mtu {
        return FITS;
    }
    stats::endpoint_add(endpoint, EndpointCounter::RefusedTooBig, 1);
    if frags & IP_DF == 0 {
        return DROP;
    }
    // MTUs below 68 do not carry IPv4; the floor keeps the answer apart from DROP.
    mtu.max(68)
}

/// Lowers the MSS option of a SYN or SYN-ACK crossing from network `ingress` to `egress`
/// to what the smaller MTU carries; counts it for `endpoint`. Never raises it. Out of line:
/// only SYNs come here, and the option walk's state stays off the main frame's stack.
///
/// `l4_off`: where the TCP header starts. What the IP headers take beyond IPv4's 20 bytes
/// (IPv6: 20, and its extension headers) comes off the MSS too.
#[inline(never)]
pub fn clamp_mss(ctx: &XdpContext, ingress: u16, egress: u16, endpoint: u16, l4_off: usize) {
    let (a, b) = (mtu_of(ingress), mtu_of(egress));
    if a == 0 || b == 0 || !(L4_OFF..=MAX_L4_OFF).contains(&l4_off) {
        return;
    }
    let ip_extra = (l4_off - L4_OFF) as u32;
    let max = mss_for_mtu(a.min(b).saturating_sub(ip_extra));
    let Some(tcp) = ptr_at::<[u8; TCP_MIN_HLEN]>(ctx, l4_off) else {
        return;
    };
    // SAFETY: bounds-checked; byte 12 holds the data offset.
    let doff = usize::from(unsafe { (*tcp)[12] } >> 4) * 4;
    let opts = l4_off + TCP_MIN_HLEN;
    // SAFETY: each byte bounds-checked by ptr_at.
    let Some(at) = find_mss(doff.saturating_sub(TCP_MIN_HLEN), |i| {
        ptr_at::<u8>(ctx, opts + i).map(|p| unsafe { *p })
    }) else {
        return;
    };
    let Some(value) = ptr_at::<[u8; 2]>(ctx, opts + at) else {
        return;
    };
    // SAFETY: both bounds-checked (the checksum through the TCP header's pointer: a second
    // check at a variable offset is one the compiler may merge away); the frame is ours.
    unsafe {
        let check = &mut (&mut (*tcp))[TCP_CHECK..TCP_CHECK + 2];
        let old = u16::from_be_bytes([check[0], check[1]]);
        if let Some((v, c)) = clamp(*value, max, old, at % 2 == 1) {
            *value = v;
            check.copy_from_slice(&c.to_be_bytes());
            stats::endpoint_add(endpoint, EndpointCounter::MssClamped, 1);
        }
    }
}

/// Whether an IPv6 packet arriving on `iface` fits network `egress`'s MTU (IPv6 is never
/// fragmented on the way): [`FITS`], or else the egress MTU to answer with packet too
/// big. Counted for `endpoint` when it does not fit.
#[inline(always)]
pub fn too_big6(iface: &IfaceConfig, endpoint: u16, egress: u16, len: u64) -> u32 {
    if iface.mtu_floor != 0 && len <= (ETH_HLEN as u64) + u64::from(iface.mtu_floor) {
        return FITS;
    }
    let mtu = mtu_of(egress);
    if mtu == 0 || len <= (ETH_HLEN as u64) + u64::from(mtu) {
        return FITS;
    }
    stats::endpoint_add(endpoint, EndpointCounter::RefusedTooBig, 1);
    mtu
}
