//! NAT: rewrite addresses, ports, TTL and MACs from a flow entry, with incremental
//! checksum updates (RFC 1624) from the packet's tuple to the entry's. The source MAC is
//! the egress network's interface's.

use network_types::{eth::EthHdr, ip::Ipv4Hdr};
use pl_common::{
    checksum,
    flow::{FlowKey, FlowValue, apply_delta},
    flow6::{FlowKey6, FlowValue6, unmapped},
    proto::{ETH_HLEN, ETH_P_IP, ETH_P_IPV6, IPPROTO_TCP, IPV4_MIN_HLEN, IPV6_HLEN},
    xlat::{ipv4_header_from_v6, ipv6_header_from_v4},
};

use aya_ebpf::{helpers::bpf_xdp_adjust_head, programs::XdpContext};

use crate::{
    maps::PL_NET_INFO,
    parse::{L4_OFF, L4_OFF6, MAX_EXT_BYTES, ptr_at},
};

/// Offsets of the checksum inside the TCP and UDP headers.
const TCP_CHECK: usize = 16;
const UDP_CHECK: usize = 6;

/// The frame's TTL, if its IPv4 header is there.
#[inline(always)]
pub fn ttl(ctx: &XdpContext) -> Option<u8> {
    // SAFETY: bounds checked by ptr_at.
    ptr_at::<Ipv4Hdr>(ctx, ETH_HLEN).map(|ip| unsafe { (*ip).ttl })
}

/// Rewrites the frame, which carries `key`, as `v` says. `proto` is TCP or UDP; the
/// caller checked TTL > 1.
#[inline(always)]
pub fn translate(ctx: &XdpContext, v: &FlowValue, key: &FlowKey, proto: u8) -> Result<(), ()> {
    let src_mac = PL_NET_INFO.get(u32::from(v.egress)).ok_or(())?.mac;
    let (csum_l3, csum_l4) = v.deltas(key);
    let eth = ptr_at::<EthHdr>(ctx, 0).ok_or(())?;
    let ip = ptr_at::<Ipv4Hdr>(ctx, ETH_HLEN).ok_or(())?;
    let ports = ptr_at::<[u8; 4]>(ctx, L4_OFF).ok_or(())?;
    // SAFETY: all three bounds-checked above; the frame is ours to rewrite.
    unsafe {
        (*eth).dst_addr = v.dst_mac;
        (*eth).src_addr = src_mac;

        let ttl_word = u16::from_be_bytes([(*ip).ttl, (*ip).proto]);
        (*ip).ttl -= 1;
        let mut check = apply_delta(u16::from_be_bytes((*ip).check), csum_l3);
        check = checksum::update16(check, ttl_word, ttl_word - 0x0100);
        (*ip).check = check.to_be_bytes();
        (*ip).src_addr = v.new_src_be.to_ne_bytes();
        (*ip).dst_addr = v.new_dst_be.to_ne_bytes();

        let (sp, dp) = (v.new_sport_be.to_ne_bytes(), v.new_dport_be.to_ne_bytes());
        *ports = [sp[0], sp[1], dp[0], dp[1]];
    }
    if proto == IPPROTO_TCP {
        let c = ptr_at::<[u8; 2]>(ctx, L4_OFF + TCP_CHECK).ok_or(())?;
        // SAFETY: bounds-checked.
        unsafe { *c = apply_delta(u16::from_be_bytes(*c), csum_l4).to_be_bytes() };
    } else {
        let c = ptr_at::<[u8; 2]>(ctx, L4_OFF + UDP_CHECK).ok_or(())?;
        // SAFETY: bounds-checked.
        unsafe {
            let old = u16::from_be_bytes(*c);
            // 0 means "no checksum" and stays so; a computed 0 is sent as 0xffff.
            if old != 0 {
                let new = match apply_delta(old, csum_l4) {
                    0 => 0xffff,
                    n => n,
                };
                *c = new.to_be_bytes();
            }
        }
    }
    Ok(())
}

/// Offset of the hop limit in the IPv6 header.
const HOP_LIMIT: usize = ETH_HLEN + 7;

/// The frame's IPv6 hop limit, if its header is there.
#[inline(always)]
pub fn hop_limit(ctx: &XdpContext) -> Option<u8> {
    // SAFETY: bounds checked by ptr_at.
    ptr_at::<u8>(ctx, HOP_LIMIT).map(|h| unsafe { *h })
}

/// Rewrites the IPv6 frame carrying `key` (TCP or UDP at `l4_off`) as `v` says. IPv6 has
/// no header checksum: the addresses count in the L4 checksum's pseudo-header, so one
/// delta covers addresses and ports. The caller checked hop limit > 1.
#[inline(always)]
pub fn translate6(
    ctx: &XdpContext,
    v: &FlowValue6,
    key: &FlowKey6,
    proto: u8,
    l4_off: usize,
) -> Result<(), ()> {
    if l4_off > L4_OFF6 + MAX_EXT_BYTES {
        return Err(());
    }
    let src_mac = PL_NET_INFO.get(u32::from(v.egress)).ok_or(())?.mac;
    rewrite_l4(ctx, v, proto, l4_off, v.delta(key))?;
    let eth = ptr_at::<EthHdr>(ctx, 0).ok_or(())?;
    let ip = ptr_at::<[u8; IPV6_HLEN]>(ctx, ETH_HLEN).ok_or(())?;
    // SAFETY: bounds-checked above; the frame is ours to rewrite.
    unsafe {
        (*eth).dst_addr = v.dst_mac;
        (*eth).src_addr = src_mac;
        (*ip)[7] -= 1;
        (&mut (*ip))[8..24].copy_from_slice(&v.new_src);
        (&mut (*ip))[24..40].copy_from_slice(&v.new_dst);
    }
    Ok(())
}

/// The ports and checksum of the TCP or UDP header at `l4_off`, as `v` says; `delta`:
/// the checksum's change (pseudo-header and ports). The same bytes in either family.
#[inline(always)]
fn rewrite_l4(
    ctx: &XdpContext,
    v: &FlowValue6,
    proto: u8,
    l4_off: usize,
    delta: u32,
) -> Result<(), ()> {
    if l4_off > L4_OFF6 + MAX_EXT_BYTES {
        return Err(());
    }
    let ports = ptr_at::<[u8; 4]>(ctx, l4_off).ok_or(())?;
    let check_at = l4_off
        + if proto == IPPROTO_TCP {
            TCP_CHECK
        } else {
            UDP_CHECK
        };
    let c = ptr_at::<[u8; 2]>(ctx, check_at).ok_or(())?;
    // SAFETY: bounds-checked above; the frame is ours to rewrite.
    unsafe {
        let (sp, dp) = (v.new_sport_be.to_ne_bytes(), v.new_dport_be.to_ne_bytes());
        *ports = [sp[0], sp[1], dp[0], dp[1]];
        // A UDP checksum is never 0 here (IPv6 refuses it, translation from IPv4 drops
        // it); a computed 0 is sent as 0xffff.
        let new = match apply_delta(u16::from_be_bytes(*c), delta) {
            0 if proto != IPPROTO_TCP => 0xffff,
            n => n,
        };
        *c = new.to_be_bytes();
    }
    Ok(())
}

/// Whether the IPv4 UDP datagram in the frame carries a checksum (not 0).
#[inline(always)]
pub fn udp_checksummed(ctx: &XdpContext) -> bool {
    // SAFETY: bounds-checked by ptr_at.
    ptr_at::<[u8; 2]>(ctx, L4_OFF + UDP_CHECK).is_some_and(|c| unsafe { *c } != [0, 0])
}

/// Family translation, IPv6 to IPv4 (RFC 7915 5): the IPv6 frame carrying `key` (TCP or
/// UDP at `l4_off`) leaves as IPv4 to `v`'s mapped addresses. The L4 header keeps its
/// place; the IPv6 header and its extensions give way to a 20-byte IPv4 header (hop
/// limit - 1 as TTL, traffic class as TOS, DF on above 1260 bytes). The caller checked
/// hop limit > 1.
#[inline(never)]
pub fn translate64(
    ctx: &XdpContext,
    v: &FlowValue6,
    key: &FlowKey6,
    proto: u8,
    l4_off: usize,
) -> Result<(), ()> {
    if !(L4_OFF6..=L4_OFF6 + MAX_EXT_BYTES).contains(&l4_off) {
        return Err(());
    }
    let src_mac = PL_NET_INFO.get(u32::from(v.egress)).ok_or(())?.mac;
    let (src, dst) = (
        unmapped(&v.new_src).ok_or(())?,
        unmapped(&v.new_dst).ok_or(())?,
    );
    rewrite_l4(ctx, v, proto, l4_off, v.delta(key))?;
    let ip = ptr_at::<[u8; IPV6_HLEN]>(ctx, ETH_HLEN).ok_or(())?;
    // SAFETY: bounds-checked; the frame is ours to rewrite.
    let h4 = unsafe {
        (*ip)[7] -= 1;
        let payload = u16::from_be_bytes([(*ip)[4], (*ip)[5]])
            .checked_sub((l4_off - L4_OFF6) as u16)
            .ok_or(())?;
        // The identification only matters if a router fragments (DF off): the flow's
        // packet count tells one packet from the next.
        ipv4_header_from_v6(
            &*ip,
            proto,
            payload,
            src.to_ne_bytes(),
            dst.to_ne_bytes(),
            v.packets as u16,
        )
    };
    let shrink = (l4_off - L4_OFF) as i32;
    // SAFETY: the helper checks the new start against the frame.
    if unsafe { bpf_xdp_adjust_head(ctx.ctx, shrink) } != 0 {
        return Err(());
    }
    write_front(ctx, &h4, v.dst_mac, src_mac, ETH_P_IP)
}

/// Family translation, IPv4 to IPv6 (RFC 7915 4): the IPv4 frame carrying `key` (mapped;
/// TCP or UDP after a 20-byte header) leaves as IPv6 to `v`'s addresses: 20 bytes more in
/// front, TTL - 1 as hop limit, TOS as traffic class, flow label 0. The caller checked
/// TTL > 1 and that a UDP datagram has a checksum.
#[inline(never)]
pub fn translate46(ctx: &XdpContext, v: &FlowValue6, key: &FlowKey6, proto: u8) -> Result<(), ()> {
    let src_mac = PL_NET_INFO.get(u32::from(v.egress)).ok_or(())?.mac;
    rewrite_l4(ctx, v, proto, L4_OFF, v.delta(key))?;
    let ip = ptr_at::<[u8; IPV4_MIN_HLEN]>(ctx, ETH_HLEN).ok_or(())?;
    // SAFETY: bounds-checked.
    let mut h6 = unsafe { ipv6_header_from_v4(&*ip, v.new_src, v.new_dst) };
    h6[7] -= 1;
    // SAFETY: the helper checks the new start against the frame's headroom.
    if unsafe { bpf_xdp_adjust_head(ctx.ctx, -((IPV6_HLEN - IPV4_MIN_HLEN) as i32)) } != 0 {
        return Err(());
    }
    write_front(ctx, &h6, v.dst_mac, src_mac, ETH_P_IPV6)
}

/// Writes the Ethernet header and the IP header `ip` at the front of a frame whose start
/// just moved (packet pointers taken before the move are stale: this looks again).
#[inline(always)]
fn write_front<const N: usize>(
    ctx: &XdpContext,
    ip: &[u8; N],
    dst: [u8; 6],
    src: [u8; 6],
    ether_type: u16,
) -> Result<(), ()> {
    let eth = ptr_at::<[u8; ETH_HLEN]>(ctx, 0).ok_or(())?;
    let out = ptr_at::<[u8; N]>(ctx, ETH_HLEN).ok_or(())?;
    // SAFETY: bounds-checked; the frame is ours.
    unsafe {
        let eth = &mut *eth;
        eth[..6].copy_from_slice(&dst);
        eth[6..12].copy_from_slice(&src);
        eth[12..].copy_from_slice(&ether_type.to_be_bytes());
        *out = *ip;
    }
    Ok(())
}
