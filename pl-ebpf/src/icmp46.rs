//! ICMP errors about a translated flow change family with it (see `pl_common::icmp46`):
//! a program of its own, tail-called by the IPv4 path for an ICMPv4 error whose flow is
//! not in the IPv4 table, and by the IPv6 path for an ICMPv6 error whose flow leads to
//! IPv4. Rare, so it looks the flow up again rather than carry it over.

use aya_ebpf::{
    bindings::xdp_action,
    helpers::{bpf_xdp_adjust_head, bpf_xdp_adjust_tail},
    programs::XdpContext,
};
use pl_common::{
    flow::FLOW_FORWARD,
    flow6::{FlowKey6, FlowValue6, unmapped},
    icmp::{self, WINDOW as W4},
    icmp6::{self, MAX_MESSAGE, WINDOW as W6},
    icmp46::{GROWTH, mapped_key, window_4to6, window_6to4},
    iface::IfaceConfig,
    proto::{ETH_HLEN, ETH_P_IP, ETH_P_IPV6, IPPROTO_TCP, IPV6_HLEN},
    stats::IfaceCounter,
};

use crate::{
    classify,
    maps::{Flows6, PL_ICMP46_SCRATCH, PL_NET_INFO},
    parse::{self, ptr_at},
    redirect, stats,
    stats::Slot,
    table,
};

/// Both windows and the flow key (the BPF stack has no room for them).
#[repr(C)]
pub struct Scratch {
    w4: [u8; W4],
    w6: [u8; W6],
    key: FlowKey6,
}

pub fn run(ctx: &XdpContext) -> Result<u32, ()> {
    let iface = classify::ingress(ctx).ok_or(())?;
    let slot = Slot::get(iface.slot).ok_or(())?;
    // Counted as received, as every path counts a frame.
    let len = parse::frame_len(ctx);
    let sent = if parse::is_ipv6(ctx) {
        from6(ctx, &iface)
    } else {
        from4(ctx, &iface)
    };
    let action = match sent {
        Some(v) => {
            slot.add(IfaceCounter::IcmpTranslated, 1);
            // SAFETY: a live flow entry.
            let (endpoint, forward, egress) =
                unsafe { ((*v).endpoint, (*v).dir == FLOW_FORWARD, (*v).egress) };
            stats::endpoint_forwarded(endpoint, forward, len);
            redirect::to_network(u16::from(egress))
        }
        None => {
            slot.add(IfaceCounter::DroppedIcmp, 1);
            xdp_action::XDP_DROP
        }
    };
    slot.count_action(action);
    Ok(action)
}

/// An ICMPv4 error: to the flow's IPv6 side as ICMPv6, if it is a translated flow's.
/// The entry it went along, or None: dropped.
#[inline(never)]
fn from4(ctx: &XdpContext, iface: &IfaceConfig) -> Option<*const FlowValue6> {
    let s = PL_ICMP46_SCRATCH.get_ptr_mut(0)?;
    let w = ptr_at::<[u8; W4]>(ctx, ETH_HLEN)?;
    // SAFETY: bounds-checked by ptr_at; this CPU's scratch element.
    let s = unsafe {
        (*s).w4 = *w;
        &mut *s
    };
    let k = icmp::error_key(&s.w4, iface.network)?;
    s.key = mapped_key(&k);
    // SAFETY: a live slot's entry, read in place.
    let v = unsafe { &(*table::find6(&s.key, Flows6::hash(&s.key))?).entry };
    let total = usize::from(u16::from_be_bytes([s.w4[2], s.w4[3]]));
    // Its IPv6 form must fit IPv6's minimum MTU; an entry leading to IPv4 is not a
    // translated flow's.
    if s.w4[8] <= 1 || total > MAX_MESSAGE || unmapped(&v.new_dst).is_some() {
        return None;
    }
    if !to6(s) {
        return None;
    }
    // The quoted TCP checksum counts only if the message quotes that far.
    let tcp_check = if k.proto == IPPROTO_TCP && icmp::QUOTED_TCP_CHECK + 2 <= total {
        ptr_at::<[u8; 2]>(ctx, ETH_HLEN + icmp::QUOTED_TCP_CHECK)
    } else {
        None
    };
    crate::icmp6::rewrite(&mut s.w6, v, tcp_check.unwrap_or(core::ptr::null_mut()));
    send(ctx, v, ETH_HLEN + total, -(GROWTH as i32), ETH_P_IPV6)?;
    let out = ptr_at::<[u8; W6]>(ctx, ETH_HLEN)?;
    // SAFETY: bounds-checked (after the resize); this CPU's scratch element.
    unsafe { *out = s.w6 };
    Some(v)
}

/// An ICMPv6 error: to the flow's IPv4 side as ICMPv4, if it is a translated flow's.
#[inline(never)]
fn from6(ctx: &XdpContext, iface: &IfaceConfig) -> Option<*const FlowValue6> {
    let s = PL_ICMP46_SCRATCH.get_ptr_mut(0)?;
    let w = ptr_at::<[u8; W6]>(ctx, ETH_HLEN)?;
    // SAFETY: bounds-checked by ptr_at; this CPU's scratch element.
    let s = unsafe {
        (*s).w6 = *w;
        &mut *s
    };
    if !key6(s, iface.network) {
        return None;
    }
    // SAFETY: a live slot's entry, read in place.
    let v = unsafe { &(*table::find6(&s.key, Flows6::hash(&s.key))?).entry };
    let payload = usize::from(u16::from_be_bytes([s.w6[4], s.w6[5]]));
    if s.w6[7] <= 1 || unmapped(&v.new_dst).is_none() {
        return None;
    }
    let tcp_check =
        if s.key.proto == IPPROTO_TCP && icmp6::QUOTED_TCP_CHECK + 2 <= IPV6_HLEN + payload {
            ptr_at::<[u8; 2]>(ctx, ETH_HLEN + icmp6::QUOTED_TCP_CHECK)
        } else {
            None
        };
    // Along the entry to mapped addresses, then IPv4.
    crate::icmp6::rewrite(&mut s.w6, v, tcp_check.unwrap_or(core::ptr::null_mut()));
    if !to4(s) {
        return None;
    }
    send(
        ctx,
        v,
        ETH_HLEN + IPV6_HLEN + payload,
        GROWTH as i32,
        ETH_P_IP,
    )?;
    let out = ptr_at::<[u8; W4]>(ctx, ETH_HLEN)?;
    // SAFETY: as above.
    unsafe { *out = s.w4 };
    Some(v)
}

// The window rewrites out of line: their headers and sums take a frame of their own,
// beside (not on top of) the flow lookup's and the address rewrite's.

#[inline(never)]
fn key6(s: *mut Scratch, network: u16) -> bool {
    // SAFETY: this CPU's scratch element.
    unsafe {
        match icmp6::error_key(&(*s).w6, network) {
            Some(k) => {
                (*s).key = k;
                true
            }
            None => false,
        }
    }
}

#[inline(never)]
fn to6(s: *mut Scratch) -> bool {
    // SAFETY: this CPU's scratch element.
    unsafe { window_4to6(&(*s).w4, &mut (*s).w6) }
}

#[inline(never)]
fn to4(s: *mut Scratch) -> bool {
    // SAFETY: this CPU's scratch element.
    unsafe { window_6to4(&(*s).w6, &mut (*s).w4) }
}

/// Cuts the frame to the message's `end` (Ethernet padding and all past it), moves its
/// start by `head` (the new window is written after), and writes the Ethernet header
/// toward the flow's next hop.
#[inline(always)]
fn send(ctx: &XdpContext, v: &FlowValue6, end: usize, head: i32, ether_type: u16) -> Option<()> {
    let src = PL_NET_INFO.get(u32::from(v.egress))?.mac;
    let cut = end as i64 - parse::frame_len(ctx) as i64;
    // More than the frame holds: a truncated message.
    // SAFETY: the helpers check the new lengths against the buffer.
    if cut > 0
        || unsafe { bpf_xdp_adjust_tail(ctx.ctx, cut as i32) } != 0
        || unsafe { bpf_xdp_adjust_head(ctx.ctx, head) } != 0
    {
        return None;
    }
    let eth = ptr_at::<[u8; ETH_HLEN]>(ctx, 0)?;
    // SAFETY: bounds-checked (after the resize).
    unsafe {
        let eth = &mut *eth;
        eth[..6].copy_from_slice(&v.dst_mac);
        eth[6..12].copy_from_slice(&src);
        eth[12..].copy_from_slice(&ether_type.to_be_bytes());
    }
    Some(())
}
