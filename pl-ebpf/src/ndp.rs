//! Neighbour discovery, IPv6's ARP: answer solicitations for our IPv6 endpoint and NLB
//! addresses with an advertisement carrying the interface's MAC (duplicate address
//! detection for one of them included: pl defends its addresses); learn the MACs of
//! targets and next hops from the advertisements that answer userspace's solicitations
//! from an NLB address, and a known neighbour's new MAC from an unsolicited one. The
//! checks are `pl_common::ndp::parse`'s (RFC 4861 7.1), on the message copied to scratch.
//! Other ICMPv6 (router solicitations, echo, errors `icmp6` does not translate) is dropped
//! and counted.

use aya_ebpf::{bindings::xdp_action, helpers::bpf_xdp_adjust_tail, programs::XdpContext};
use pl_common::{
    endpoint::{ADDR_DNS, ADDR_NLB, AddrKey6},
    iface::{IFACE_PROVIDER, IfaceConfig},
    ndp::{
        MESSAGE_LEN, NA_OVERRIDE, NA_SOLICITED, NEIGHBOUR_ADVERTISEMENT, NEIGHBOUR_SOLICITATION,
        advertisement, answer_to, is_multicast, multicast_mac, parse,
    },
    proto::{ETH_HLEN, IPPROTO_ICMPV6, IPV6_HLEN},
    stats::IfaceCounter,
};

use crate::{
    conntrack, endpoint, lease,
    maps::{PL_NDP_SCRATCH, PL_NEIGH6},
    parse::{L4_OFF6, ptr_at},
    redirect,
    stats::Slot,
};

/// The answer's length: Ethernet, IPv6, an advertisement with its option.
const ANSWER_LEN: usize = ETH_HLEN + IPV6_HLEN + MESSAGE_LEN;

/// Scratch layout: the message as received, then the answer's IPv6 header and message.
const MSG: usize = 0;
const OUT_IP: usize = MESSAGE_LEN;
const OUT_MSG: usize = OUT_IP + IPV6_HLEN;
pub const NDP_SCRATCH_LEN: usize = OUT_MSG + MESSAGE_LEN;

/// An ICMPv6 frame whose header starts at `l4_off`.
#[inline(never)]
pub fn handle(ctx: &XdpContext, iface: &IfaceConfig, slot: &Slot, l4_off: u16) -> u32 {
    // Four bytes, not one: a one-byte bounds check compiles to a form the verifier
    // cannot follow at a variable offset.
    // SAFETY: bounds checked by ptr_at.
    let ty = ptr_at::<[u8; 4]>(ctx, usize::from(l4_off)).map(|t| unsafe { (*t)[0] });
    if !matches!(ty, Some(NEIGHBOUR_SOLICITATION | NEIGHBOUR_ADVERTISEMENT)) {
        slot.add(IfaceCounter::DroppedIcmp, 1);
        return xdp_action::XDP_DROP;
    }
    let drop = || {
        slot.add(IfaceCounter::DroppedNdp, 1);
        xdp_action::XDP_DROP
    };
    // Neighbour discovery never carries extension headers.
    if usize::from(l4_off) != L4_OFF6 {
        return drop();
    }
    // The scratch first: a helper call between a bounds check and the reads it guards
    // makes the compiler reload the packet pointer, unchecked.
    let Some(s) = PL_NDP_SCRATCH.get_ptr_mut(0) else {
        return drop();
    };
    let (Some(eth), Some(ip)) = (
        ptr_at::<[u8; ETH_HLEN]>(ctx, 0),
        ptr_at::<[u8; IPV6_HLEN]>(ctx, ETH_HLEN),
    ) else {
        return drop();
    };
    // SAFETY: bounds-checked; this CPU's scratch element.
    let (eth, ip, s) = unsafe { (&mut *eth, &*ip, &mut *s) };
    let payload = usize::from(u16::from_be_bytes([ip[4], ip[5]]));
    let mut src = [0u8; 16];
    let mut dst = [0u8; 16];
    src.copy_from_slice(&ip[8..24]);
    dst.copy_from_slice(&ip[24..40]);
    // The messages pl takes: with one option (a link-layer address, or DAD's nonce), or
    // none. Copied whole so the parser reads fixed-size memory.
    let msg = if payload == MESSAGE_LEN {
        let Some(m) = ptr_at::<[u8; MESSAGE_LEN]>(ctx, L4_OFF6) else {
            return drop();
        };
        // SAFETY: bounds-checked.
        s[MSG..MSG + MESSAGE_LEN].copy_from_slice(unsafe { &*m });
        parse(&s[MSG..MSG + MESSAGE_LEN], src, dst, ip[7])
    } else if payload == 24 {
        let Some(m) = ptr_at::<[u8; 24]>(ctx, L4_OFF6) else {
            return drop();
        };
        // SAFETY: bounds-checked.
        s[MSG..MSG + 24].copy_from_slice(unsafe { &*m });
        parse(&s[MSG..MSG + 24], src, dst, ip[7])
    } else {
        return drop();
    };
    let Ok(msg) = msg else {
        return drop();
    };
    let ours = endpoint::addr6(msg.target, iface.network);
    if msg.ty == NEIGHBOUR_SOLICITATION {
        if ours.is_none() || !lease::held(conntrack::now()) {
            return drop();
        }
        // The DNS address: its server's stack answers, with its own MAC.
        if ours.is_some_and(|a| a.kind == ADDR_DNS) {
            if !crate::dns::within_budget(iface.network) {
                slot.add(IfaceCounter::DroppedDnsRate, 1);
                return xdp_action::XDP_DROP;
            }
            slot.add(IfaceCounter::PassedDns, 1);
            return xdp_action::XDP_PASS;
        }
        let to = answer_to(src);
        let to_mac = if is_multicast(&to) {
            multicast_mac(to)
        } else {
            let mut m = [0u8; 6];
            m.copy_from_slice(&eth[6..12]);
            m
        };
        let out = &mut s[OUT_IP..NDP_SCRATCH_LEN];
        out[..8].copy_from_slice(&[0x60, 0, 0, 0, 0, MESSAGE_LEN as u8, IPPROTO_ICMPV6, 255]);
        out[8..24].copy_from_slice(&msg.target);
        out[24..40].copy_from_slice(&to);
        out[40..].copy_from_slice(&advertisement(msg.target, to, iface.mac));
        return answer(ctx, iface, slot, to_mac);
    }
    // An advertisement: learned only with its link-layer address, from that very MAC,
    // unicast. A provider network's answer to one of our NLB addresses teaches a new
    // neighbour; an unsolicited one (to a group) only updates one we know.
    let Some(mac) = msg.lladdr else {
        return drop();
    };
    if mac[0] & 1 != 0 || mac == [0; 6] || eth[6..12] != mac || ours.is_some() {
        return drop();
    }
    let key = AddrKey6::new(msg.target, iface.network);
    let mut value = [0u8; 8];
    value[..6].copy_from_slice(&mac);
    // An answer (solicited) to one of our NLB addresses on a provider network; an
    // unsolicited one may replace a known MAC only with override set (RFC 4861 7.2.5).
    let answers_us = iface.flags & IFACE_PROVIDER != 0
        && msg.flags & NA_SOLICITED != 0
        && endpoint::addr6(dst, iface.network).is_some_and(|a| a.kind == ADDR_NLB);
    if answers_us {
        // A full table only means this MAC is not learned; userspace asks again.
        let _ = PL_NEIGH6.insert(key, value, 0);
    } else if is_multicast(&dst)
        && msg.flags & NA_OVERRIDE != 0
        && let Some(known) = PL_NEIGH6.get_ptr_mut(key)
    {
        // SAFETY: a live map value; written whole.
        unsafe { *known = value };
    } else {
        return drop();
    }
    slot.add(IfaceCounter::NdpLearned, 1);
    xdp_action::XDP_DROP
}

/// Turns the frame into the advertisement built in scratch, to `to_mac`, out of the
/// interface it came in on.
#[inline(always)]
fn answer(ctx: &XdpContext, iface: &IfaceConfig, slot: &Slot, to_mac: [u8; 6]) -> u32 {
    let len = crate::parse::frame_len(ctx) as i32;
    // SAFETY: the helper checks the new length against the buffer.
    if unsafe { bpf_xdp_adjust_tail(ctx.ctx, ANSWER_LEN as i32 - len) } != 0 {
        slot.add(IfaceCounter::DroppedNdp, 1);
        return xdp_action::XDP_DROP;
    }
    // Packet pointers are stale after the resize: look again.
    let (Some(f), Some(s)) = (
        ptr_at::<[u8; ANSWER_LEN]>(ctx, 0),
        PL_NDP_SCRATCH.get_ptr(0),
    ) else {
        slot.add(IfaceCounter::DroppedNdp, 1);
        return xdp_action::XDP_DROP;
    };
    // SAFETY: bounds-checked; this CPU's scratch element.
    unsafe {
        let f = &mut *f;
        f[..6].copy_from_slice(&to_mac);
        f[6..12].copy_from_slice(&iface.mac);
        f[ETH_HLEN..].copy_from_slice(&(&*s)[OUT_IP..NDP_SCRATCH_LEN]);
    }
    slot.add(IfaceCounter::NdpReplied, 1);
    // As ARP answers: a redirect, which a veth always flushes.
    redirect::to_network(iface.network)
}
