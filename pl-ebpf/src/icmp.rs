//! ICMP: errors about a flow pl holds are translated and sent to the flow's other side (see
//! `pl_common::icmp`); everything else ICMP, echo included, is dropped and counted.

use aya_ebpf::{bindings::xdp_action, helpers::bpf_xdp_adjust_tail, programs::XdpContext};
use network_types::eth::EthHdr;
use pl_common::{
    flow::FLOW_FORWARD,
    icmp::{
        QUOTED_TCP_CHECK, Reply, Rewrite, TIME_EXCEEDED_LEN, WINDOW, error_key, error_reply,
        translate_error,
    },
    iface::IfaceConfig,
    maps::TAIL_ICMP46,
    proto::{ETH_HLEN, IPPROTO_TCP},
    stats::IfaceCounter,
};

use crate::{
    maps::{Flows, PL_ICMP_SCRATCH, PL_NET_INFO, PL_TAILS},
    nat,
    parse::ptr_at,
    redirect, stats,
    stats::Slot,
    table,
};

#[inline(always)]
pub fn handle(ctx: &XdpContext, iface: &IfaceConfig, slot: &Slot) -> u32 {
    let drop = || {
        slot.add(IfaceCounter::DroppedIcmp, 1);
        xdp_action::XDP_DROP
    };
    let Some(w) = ptr_at::<[u8; WINDOW]>(ctx, ETH_HLEN) else {
        return drop();
    };
    // SAFETY: bounds-checked by ptr_at.
    let Some(key) = error_key(unsafe { &*w }, iface.network) else {
        return drop();
    };
    let Some(s) = table::find(&key, Flows::hash(&key)) else {
        // Perhaps a translated flow's IPv4 side, keyed in the IPv6 table.
        // SAFETY: the context is this program's. On success it does not return (and that
        // program counts the action).
        unsafe { PL_TAILS.tail_call(ctx, TAIL_ICMP46) };
        return drop();
    };
    // SAFETY: a live slot's entry, copied out at once.
    let v = unsafe { (*s).entry };
    let Some(src_mac) = PL_NET_INFO.get(u32::from(v.egress)).map(|n| n.mac) else {
        return drop();
    };
    if nat::ttl(ctx).is_none_or(|t| t <= 1) {
        return drop();
    }
    // The quoted TCP checksum counts only if the ICMP message quotes that far: bytes past
    // the IPv4 total length are padding, outside every checksum.
    // SAFETY: bounds-checked by ptr_at.
    let total = usize::from(u16::from_be_bytes(unsafe { [(*w)[2], (*w)[3]] }));
    let tcp_check = if key.proto == IPPROTO_TCP && QUOTED_TCP_CHECK + 2 <= total {
        ptr_at::<[u8; 2]>(ctx, ETH_HLEN + QUOTED_TCP_CHECK)
    } else {
        None
    };
    let r = Rewrite {
        src_be: v.new_src_be,
        dst_be: v.new_dst_be,
        sport_be: v.new_sport_be,
        dport_be: v.new_dport_be,
    };
    // SAFETY: all bounds-checked; the frame is ours to rewrite.
    unsafe {
        translate_error(&mut *w, &r, tcp_check.map(|c| &mut *c));
    }
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

/// Turns the frame (IPv4 without options, TCP or UDP, that cannot go on) into the ICMP
/// error back to its sender, from the address it was sent to, out of the interface
/// it came in on. Built in per-CPU scratch space: the BPF stack is spent.
///
/// `frag_mtu`: 0 for time exceeded, else the MTU a fragmentation needed reports (one
/// scalar: a BPF call passes an enum's fields in registers the callee cannot trust).
#[inline(never)]
pub fn reply(ctx: &XdpContext, iface: &IfaceConfig, slot: &Slot, frag_mtu: u32) -> u32 {
    let reply = if frag_mtu == 0 {
        Reply::TimeExceeded
    } else {
        Reply::FragNeeded {
            mtu: frag_mtu.min(u32::from(u16::MAX)) as u16,
        }
    };
    let Some(w) = PL_ICMP_SCRATCH.get_ptr_mut(0) else {
        return xdp_action::XDP_DROP;
    };
    let Some(quoted) = ptr_at::<[u8; 28]>(ctx, ETH_HLEN) else {
        return xdp_action::XDP_DROP;
    };
    // SAFETY: this CPU's scratch element; packet reads bounds-checked.
    unsafe {
        let w = &mut *w;
        w[28..].copy_from_slice(&*quoted);
        error_reply(w, reply);
    }
    // The whole frame: a multi-buffer one sheds its fragments too.
    let len = crate::parse::frame_len(ctx) as i32;
    let want = (ETH_HLEN + TIME_EXCEEDED_LEN) as i32;
    // SAFETY: the helper checks the new length against the buffer.
    if unsafe { bpf_xdp_adjust_tail(ctx.ctx, want - len) } != 0 {
        return xdp_action::XDP_DROP;
    }
    // Packet pointers are stale after the resize: look again.
    let (Some(eth), Some(out)) = (
        ptr_at::<EthHdr>(ctx, 0),
        ptr_at::<[u8; TIME_EXCEEDED_LEN]>(ctx, ETH_HLEN),
    ) else {
        return xdp_action::XDP_DROP;
    };
    // SAFETY: bounds-checked; scratch as above. Shrinking the tail left the Ethernet
    // header as it came: back to where it came from.
    unsafe {
        (*eth).dst_addr = (*eth).src_addr;
        (*eth).src_addr = iface.mac;
        *out = *w;
    }
    slot.add(
        match reply {
            Reply::TimeExceeded => IfaceCounter::IcmpTimeExceeded,
            Reply::FragNeeded { .. } => IfaceCounter::IcmpFragNeeded,
        },
        1,
    );
    redirect::to_network(iface.network)
}
