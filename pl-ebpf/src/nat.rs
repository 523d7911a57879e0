//! NAT: rewrite addresses, ports, TTL and MACs from a flow entry, with incremental
//! checksum updates (RFC 1624) from the packet's tuple to the entry's. The source MAC is
//! the egress network's interface's.

use network_types::{eth::EthHdr, ip::Ipv4Hdr};
use pl_common::{
    checksum,
    flow::{FlowKey, FlowValue, apply_delta},
    flow6::{FlowKey6, FlowValue6},
    proto::{ETH_HLEN, IPPROTO_TCP, IPV6_HLEN},
};

use aya_ebpf::programs::XdpContext;

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
    let delta = v.delta(key);
    let eth = ptr_at::<EthHdr>(ctx, 0).ok_or(())?;
    let ip = ptr_at::<[u8; IPV6_HLEN]>(ctx, ETH_HLEN).ok_or(())?;
    let ports = ptr_at::<[u8; 4]>(ctx, l4_off).ok_or(())?;
    let check_at = l4_off
        + if proto == IPPROTO_TCP {
            TCP_CHECK
        } else {
            UDP_CHECK
        };
    let c = ptr_at::<[u8; 2]>(ctx, check_at).ok_or(())?;
    // SAFETY: all bounds-checked above; the frame is ours to rewrite.
    unsafe {
        (*eth).dst_addr = v.dst_mac;
        (*eth).src_addr = src_mac;
        (*ip)[7] -= 1;
        (&mut (*ip))[8..24].copy_from_slice(&v.new_src);
        (&mut (*ip))[24..40].copy_from_slice(&v.new_dst);
        let (sp, dp) = (v.new_sport_be.to_ne_bytes(), v.new_dport_be.to_ne_bytes());
        *ports = [sp[0], sp[1], dp[0], dp[1]];
        // A UDP checksum is never 0 in IPv6 (parse refused it); a computed 0 is sent as
        // 0xffff.
        let new = match apply_delta(u16::from_be_bytes(*c), delta) {
            0 if proto != IPPROTO_TCP => 0xffff,
            n => n,
        };
        *c = new.to_be_bytes();
    }
    Ok(())
}
