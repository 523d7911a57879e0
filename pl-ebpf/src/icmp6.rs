//! ICMPv6 errors (see `pl_common::icmp6`): time exceeded and packet too big sent back to
//! the sender of a packet that cannot go on, and errors about a flow pl holds translated
//! and sent to the flow's other side, as IPv4's `icmp` does both.

use aya_ebpf::{
    bindings::xdp_action,
    helpers::{bpf_xdp_adjust_head, bpf_xdp_adjust_tail},
    programs::XdpContext,
};
use network_types::eth::EthHdr;
use pl_common::{
    flow::FLOW_FORWARD,
    flow6::{Addr6, FlowKey6, FlowValue6, Slot6, unmapped},
    icmp6::{
        MAX_MESSAGE, QUOTED_NEXT, QUOTED_TCP_CHECK, WINDOW, error_head, error_key, fold64,
        may_answer, pseudo_sum, quoted_len, replace_addr, translate_error_with,
    },
    iface::IfaceConfig,
    proto::{ETH_HLEN, IPPROTO_TCP, IPV6_HLEN},
    stats::IfaceCounter,
    xlat::icmp_types::{V6_DEST_UNREACH, V6_PACKET_TOO_BIG, V6_PARAM_PROBLEM, V6_TIME_EXCEEDED},
};

use crate::{
    maps::{Flows6, PL_ICMP6_SCRATCH, PL_NET_INFO},
    parse::{L4_OFF6, ptr_at},
    redirect, stats,
    stats::Slot,
    table,
};

/// The answer's headers: Ethernet, IPv6, ICMPv6; the invoking packet follows them.
const HEAD: usize = ETH_HLEN + IPV6_HLEN + 8;
/// What the frame grows at its head: the invoking packet keeps its place after the new
/// IPv6 and ICMPv6 headers.
const GROW: usize = IPV6_HLEN + 8;

/// The answer's headers, built before the frame is resized; the key of the flow an error
/// is about (the BPF stack has no room for them).
#[repr(C)]
pub struct Scratch {
    eth: [u8; ETH_HLEN],
    head: [u8; 48],
    key: FlowKey6,
}

/// Whether the ICMPv6 message at `l4_off` is an error this module translates: one of the
/// four types, with no extension headers before it (fixed offsets, as for IPv4).
#[inline(always)]
pub fn is_error(ctx: &XdpContext, l4_off: u16) -> bool {
    // Four bytes, not one: see `ndp::handle`.
    // SAFETY: bounds checked by ptr_at.
    let ty = ptr_at::<[u8; 4]>(ctx, usize::from(l4_off)).map(|t| unsafe { (*t)[0] });
    usize::from(l4_off) == L4_OFF6
        && matches!(
            ty,
            Some(V6_DEST_UNREACH | V6_PACKET_TOO_BIG | V6_TIME_EXCEEDED | V6_PARAM_PROBLEM)
        )
}

/// Turns the frame (IPv6 TCP or UDP that cannot go on) into the ICMPv6 error back to its
/// sender, from the address it was sent to, out of the interface it came in on: the
/// invoking packet stays where it is, truncated to what fits 1280 bytes (a multi-buffer
/// frame quotes its linear part), new headers grow in front of it.
///
/// `too_big_mtu`: 0 for time exceeded, else the egress MTU packet too big reports.
#[inline(never)]
pub fn reply(ctx: &XdpContext, iface: &IfaceConfig, too_big_mtu: u32) -> u32 {
    let (ty, counter) = if too_big_mtu == 0 {
        (V6_TIME_EXCEEDED, IfaceCounter::IcmpTimeExceeded)
    } else {
        (V6_PACKET_TOO_BIG, IfaceCounter::IcmpFragNeeded)
    };
    // The scratch first: a helper call between a bounds check and the reads it guards
    // makes the compiler reload the packet pointer, unchecked.
    let Some(s) = PL_ICMP6_SCRATCH.get_ptr_mut(0) else {
        return xdp_action::XDP_DROP;
    };
    let (Some(eth), Some(ip)) = (
        ptr_at::<[u8; ETH_HLEN]>(ctx, 0),
        ptr_at::<[u8; IPV6_HLEN]>(ctx, ETH_HLEN),
    ) else {
        return xdp_action::XDP_DROP;
    };
    let linear = ctx.data_end() - ctx.data();
    // SAFETY: bounds-checked; this CPU's scratch element.
    let (eth, ip, s) = unsafe { (&*eth, &*ip, &mut *s) };
    let packet = IPV6_HLEN + usize::from(u16::from_be_bytes([ip[4], ip[5]]));
    let q = quoted_len(packet, linear - ETH_HLEN);
    // Only TCP and UDP come here: never an ICMPv6 error.
    let answered = match (
        <&[u8; 16]>::try_from(&ip[8..24]),
        <&[u8; 16]>::try_from(&ip[24..40]),
    ) {
        (Ok(src), Ok(dst)) => may_answer(src, dst, None, ty),
        _ => false,
    };
    // (The bound on `q` again: for the verifier.)
    if q > MAX_MESSAGE - 8 || !answered {
        return xdp_action::XDP_DROP;
    }
    s.eth[..6].copy_from_slice(&eth[6..12]);
    s.eth[6..12].copy_from_slice(&iface.mac);
    s.eth[12..].copy_from_slice(&eth[12..14]);
    error_head(ty, too_big_mtu, ip, q, &mut s.head);
    // The whole frame: a multi-buffer one sheds its fragments too.
    let len = crate::parse::frame_len(ctx) as i32;
    // SAFETY: the helpers check the new lengths against the buffer.
    if unsafe { bpf_xdp_adjust_tail(ctx.ctx, (ETH_HLEN + q) as i32 - len) } != 0
        || unsafe { bpf_xdp_adjust_head(ctx.ctx, -(GROW as i32)) } != 0
    {
        return xdp_action::XDP_DROP;
    }
    let end = HEAD + q;
    // Packet pointers are stale after the resize: look again.
    let (Some(f_eth), Some(f), Some(s)) = (
        ptr_at::<[u8; ETH_HLEN]>(ctx, 0),
        ptr_at::<[u8; 48]>(ctx, ETH_HLEN),
        PL_ICMP6_SCRATCH.get_ptr(0),
    ) else {
        return xdp_action::XDP_DROP;
    };
    if ctx.data() + end != ctx.data_end() {
        return xdp_action::XDP_DROP;
    }
    // SAFETY: bounds-checked; this CPU's scratch element.
    let (f, mut acc) = unsafe {
        *f_eth = (*s).eth;
        *f = (*s).head;
        (&mut *f, u64::from(pseudo_sum(&(*s).head)))
    };
    // The message eight bytes at a time, then its last partial word. (Written here: moved
    // into a function of its own, the compiler split the last word's read from its
    // bounds check, and the verifier refused it.)
    let mut off = ETH_HLEN + IPV6_HLEN;
    for _ in 0..MAX_MESSAGE / 8 {
        let Some(p) = ptr_at::<[u8; 8]>(ctx, off) else {
            break;
        };
        // SAFETY: bounds-checked.
        let x = u64::from_be_bytes(unsafe { *p });
        acc += (x >> 32) + (x & 0xffff_ffff);
        off += 8;
    }
    let rest = end.saturating_sub(off);
    if rest > 0 {
        // The message's last eight bytes, less those already summed.
        let Some(p) = ptr_at::<[u8; 8]>(ctx, end - 8) else {
            return xdp_action::XDP_DROP;
        };
        // SAFETY: bounds-checked.
        let x = u64::from_be_bytes(unsafe { *p });
        let x = (x & ((1u64 << (8 * rest)) - 1)) << (8 * (8 - rest));
        acc += (x >> 32) + (x & 0xffff_ffff);
    }
    f[42..44].copy_from_slice(&(!fold64(acc)).to_be_bytes());
    if let Some(slot) = Slot::get(iface.slot) {
        slot.add(counter, 1);
    }
    redirect::to_network(iface.network)
}

/// The live slot of the flow an ICMPv6 error on `network` is about, if any. Out of line:
/// the key leaves the stack when it returns.
#[inline(never)]
fn flow_of(ctx: &XdpContext, network: u16) -> Option<*mut Slot6> {
    let s = PL_ICMP6_SCRATCH.get_ptr_mut(0)?;
    let w = ptr_at::<[u8; WINDOW]>(ctx, ETH_HLEN)?;
    // SAFETY: bounds-checked by ptr_at; this CPU's scratch element.
    let key = unsafe {
        (*s).key = error_key(&*w, network)?;
        &(*s).key
    };
    table::find6(key, Flows6::hash(key))
}

/// `translate_error` out of line: its unrolled word loops spill to a frame of their own.
#[inline(never)]
pub fn rewrite(w: *mut [u8; WINDOW], v: *const FlowValue6, tcp_check: *mut [u8; 2]) {
    // SAFETY: the caller's bounds-checked window and checksum (null: not quoted), and a
    // live flow entry.
    unsafe { translate_error_with(&mut *w, &*v, tcp_check.as_mut(), |a, n| replace(a, n)) }
}

/// [`replace_addr`] out of line, for the same reason.
#[inline(never)]
fn replace(at: *mut Addr6, new: *const Addr6) -> u32 {
    // SAFETY: an address in the caller's bounds-checked window, and one in a flow entry.
    unsafe { replace_addr(&mut *at, &*new) }
}

/// What [`handle`] returns for an error about a translated flow: the caller tail-calls
/// `pl_icmp46`, which sends it on as ICMPv4. (The caller, not `handle`: a tail call from
/// a subprogram returns to that subprogram's caller, which would count the frame again.)
pub const TO_ICMP46: u32 = u32::MAX;

/// An ICMPv6 error (see [`is_error`]) arrived on `iface`: translated along the flow its
/// quoted packet belongs to and sent to the flow's other side, else dropped; or
/// [`TO_ICMP46`].
#[inline(never)]
pub fn handle(ctx: &XdpContext, iface: &IfaceConfig, slot: &Slot) -> u32 {
    let drop = || {
        slot.add(IfaceCounter::DroppedIcmp, 1);
        xdp_action::XDP_DROP
    };
    let Some(s) = flow_of(ctx, iface.network) else {
        return drop();
    };
    // SAFETY: a live slot's entry; read in place.
    let v = unsafe { &(*s).entry };
    if unmapped(&v.new_dst).is_some() {
        return TO_ICMP46;
    }
    let Some(src_mac) = PL_NET_INFO.get(u32::from(v.egress)).map(|n| n.mac) else {
        return drop();
    };
    // Helper calls above: bounds-check the window again.
    let Some(w) = ptr_at::<[u8; WINDOW]>(ctx, ETH_HLEN) else {
        return drop();
    };
    // SAFETY: bounds-checked by ptr_at.
    let (hop, payload, proto) = unsafe {
        (
            (*w)[7],
            u16::from_be_bytes([(*w)[4], (*w)[5]]),
            (*w)[QUOTED_NEXT],
        )
    };
    if hop <= 1 {
        return drop();
    }
    // The quoted TCP checksum counts only if the message quotes that far.
    let tcp_check =
        if proto == IPPROTO_TCP && QUOTED_TCP_CHECK + 2 <= IPV6_HLEN + usize::from(payload) {
            ptr_at::<[u8; 2]>(ctx, ETH_HLEN + QUOTED_TCP_CHECK)
        } else {
            None
        };
    rewrite(w, v, tcp_check.unwrap_or(core::ptr::null_mut()));
    let Some(eth) = ptr_at::<EthHdr>(ctx, 0) else {
        return drop();
    };
    // SAFETY: bounds-checked.
    unsafe {
        (*eth).dst_addr = v.dst_mac;
        (*eth).src_addr = src_mac;
    }
    slot.add(IfaceCounter::IcmpTranslated, 1);
    stats::endpoint_forwarded(
        v.endpoint,
        v.dir == FLOW_FORWARD,
        (ctx.data_end() - ctx.data()) as u64,
    );
    redirect::to_network(u16::from(v.egress))
}
