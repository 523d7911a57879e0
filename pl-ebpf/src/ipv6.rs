//! The IPv6 path for TCP and UDP: the IPv4 path's stages (conntrack, endpoint and policy,
//! nat, redirect) over the IPv6 maps and flow table. Same family only: a service's
//! targets are one family, and an IPv6 endpoint address leads to IPv6 targets.

use aya_ebpf::{bindings::xdp_action, programs::XdpContext};
use network_types::eth::EthHdr;
use pl_common::{
    cidr::is_martian6,
    flow::{FLOW_FORWARD, opens_flow, packet_state},
    flow6::{FlowKey6, FlowValue6},
    iface::{IFACE_DEDICATED, IfaceConfig},
    maps::TAIL_IPV6_L4,
    policy::Policy6,
    proto::{ETH_HLEN, IPPROTO_TCP, IPV6_HLEN, TCP_SYN},
    stats::{EndpointCounter, IfaceCounter},
};

use crate::{
    classify,
    conntrack::{self, Created, Found, V6},
    endpoint::{self, Admitted6, Dest},
    events, lease,
    maps::{Flows6, PL_L4_STASH, PL_PROBES6, PL_TAILS},
    mtu, nat, ndp, parse,
    parse::{Frame, L4_OFF6, MAX_EXT_BYTES, ptr_at},
    redirect, stats,
    stats::Slot,
};

/// The IPv6 program: the interface was classified and the frame counted received by the
/// program that tail-called this one; classify again (one array read) for its config.
#[inline(always)]
pub fn run(ctx: &XdpContext) -> Result<u32, ()> {
    let iface = classify::ingress(ctx).ok_or(())?;
    let slot = Slot::get(iface.slot).ok_or(())?;
    let len = parse::frame_len(ctx);
    let (class, frame) = parse::parse_ipv6(ctx, len);
    slot.add(class, 1);
    let action = if iface.flags & IFACE_DEDICATED == 0 {
        xdp_action::XDP_PASS
    } else if !classify::addressed_to_us(ctx, &iface) {
        slot.add(IfaceCounter::PassedNotOurMac, 1);
        xdp_action::XDP_PASS
    } else {
        match frame {
            Frame::Ipv6L4 { proto, l4_off } => {
                if let Some(stash) = PL_L4_STASH.get_ptr_mut(0) {
                    // SAFETY: this CPU's element; read by the program called next.
                    unsafe { *stash = u32::from(l4_off) << 8 | u32::from(proto) };
                    // SAFETY: the context is this program's. On success it does not return
                    // (and that program counts the action).
                    unsafe { PL_TAILS.tail_call(ctx, TAIL_IPV6_L4) };
                }
                // Only a broken load leaves the slot empty.
                slot.add(IfaceCounter::DroppedNonIpv4, 1);
                xdp_action::XDP_DROP
            }
            Frame::Icmp6 { l4_off } => ndp::handle(ctx, &iface, &slot, l4_off),
            Frame::Drop(why) => {
                slot.add(why, 1);
                xdp_action::XDP_DROP
            }
            // parse_ipv6 gives nothing else.
            _ => xdp_action::XDP_DROP,
        }
    };
    slot.count_action(action);
    Ok(action)
}

/// TCP or UDP over IPv6: a program of its own, tail-called from [`run`]'s with the L4
/// header's offset and protocol in `PL_L4_STASH`. Checked by the verifier on its own: in
/// one program, everything after the extension-header walk would be checked again for
/// every shape the walk can end in, and its stack would sit on top of the walk's.
#[inline(always)]
pub fn run_l4(ctx: &XdpContext) -> Result<u32, ()> {
    let iface = classify::ingress(ctx).ok_or(())?;
    let slot = Slot::get(iface.slot).ok_or(())?;
    let len = parse::frame_len(ctx);
    // SAFETY: this CPU's element, written by the program that called this one.
    let l4 = unsafe { *PL_L4_STASH.get_ptr(0).ok_or(())? };
    let (l4_off, proto) = ((l4 >> 8) as usize, l4 as u8);
    let action = handle(ctx, &iface, &slot, proto, l4_off, len)?;
    slot.count_action(action);
    Ok(action)
}

/// `l4_off`: where the TCP or UDP header starts (parse walked the extension headers);
/// `len`: the whole frame's length.
#[inline(always)]
fn handle(
    ctx: &XdpContext,
    iface: &IfaceConfig,
    slot: &Slot,
    proto: u8,
    l4_off: usize,
    len: u64,
) -> Result<u32, ()> {
    if l4_off > L4_OFF6 + MAX_EXT_BYTES {
        return Err(());
    }
    let ip = ptr_at::<[u8; IPV6_HLEN]>(ctx, ETH_HLEN).ok_or(())?;
    let ports = ptr_at::<[u8; 4]>(ctx, l4_off).ok_or(())?;
    let mut key = FlowKey6 {
        network: iface.network,
        proto,
        ..FlowKey6::default()
    };
    // SAFETY: both bounds-checked by ptr_at.
    unsafe {
        key.src.copy_from_slice(&(&(*ip))[8..24]);
        key.dst.copy_from_slice(&(&(*ip))[24..40]);
        key.sport_be = u16::from_ne_bytes([(*ports)[0], (*ports)[1]]);
        key.dport_be = u16::from_ne_bytes([(*ports)[2], (*ports)[3]]);
    }
    let tcp_flags = if proto == IPPROTO_TCP {
        // SAFETY: a whole TCP header is present (parse checked it); byte 13 holds the flags.
        ptr_at::<[u8; 14]>(ctx, l4_off).map_or(0, |h| unsafe { (*h)[13] })
    } else {
        0
    };
    if is_martian6(&key.src) {
        slot.add(IfaceCounter::DroppedMartian, 1);
        return Ok(xdp_action::XDP_DROP);
    }
    let now = conntrack::now();
    let bits = packet_state(proto, tcp_flags);
    let opens = opens_flow(proto, tcp_flags);
    let syn = opens && proto == IPPROTO_TCP;
    let hash = Flows6::hash(&key);
    let stale = match lookup(&key, hash, now, syn) {
        Found::Live(v) => {
            return Ok(forward(
                ctx, iface, v, &key, proto, l4_off, len, bits, tcp_flags,
            ));
        }
        Found::Stale => true,
        Found::Absent => false,
    };
    let dest = if lease::held(now) {
        endpoint::dest6(&key)
    } else {
        Dest::NotOurs
    };
    let (endpoint, policy) = match dest {
        Dest::Listener(p) => (p.endpoint, Some(p)),
        Dest::NoListener(endpoint) => (endpoint, None),
        // A health probe's answer (its state bits are the result, for userspace), or
        // dropped: the provider cannot initiate.
        Dest::Nlb => {
            #[expect(
                clippy::needless_borrows_for_generic_args,
                reason = "by value the key would be copied again onto the 512-byte BPF stack"
            )]
            let probe = PL_PROBES6.get_ptr_mut(&key);
            if let Some(p) = probe {
                // SAFETY: a live map value, written whole.
                unsafe { *p |= u32::from(bits) };
            } else {
                slot.add(IfaceCounter::DroppedNoFlow, 1);
            }
            return Ok(xdp_action::XDP_DROP);
        }
        Dest::NotOurs => {
            slot.add(IfaceCounter::DroppedNotOurs, 1);
            return Ok(xdp_action::XDP_DROP);
        }
    };
    let refuse = |reason| {
        stats::endpoint_add(endpoint, reason, 1);
        events::refused6(&key, endpoint, reason);
        events::log_refusal(ctx, now, endpoint, reason);
        Ok(xdp_action::XDP_DROP)
    };
    if !opens {
        return refuse(EndpointCounter::RefusedNotSyn);
    }
    if stale {
        remove_stale(&key, hash);
    }
    let Some(policy) = policy else {
        return refuse(EndpointCounter::RefusedNoListener);
    };
    let admitted = match admit(&key, policy) {
        Ok(a) => a,
        Err(reason) => return refuse(reason),
    };
    if nat::hop_limit(ctx).ok_or(())? <= 1 {
        return refuse(EndpointCounter::RefusedTtl);
    }
    let eth = ptr_at::<EthHdr>(ctx, 0).ok_or(())?;
    let from = conntrack::Origin {
        endpoint,
        // SAFETY: bounds-checked.
        mac: unsafe { (*eth).src_addr },
        state: bits,
        len: len as u16,
        now,
    };
    let v = match conntrack::create6(&key, hash, &admitted, &from) {
        Ok(Created::New(v)) => {
            stats::endpoint_add(endpoint, EndpointCounter::NewFlows, 1);
            stats::target_new_flow(admitted.target);
            // SAFETY: this CPU's copy of the entry just made.
            events::opened6(&key, unsafe { &*v });
            v
        }
        Ok(Created::Raced(v)) => v,
        Err(reason) => return refuse(reason),
    };
    Ok(forward(
        ctx, iface, v, &key, proto, l4_off, len, bits, tcp_flags,
    ))
}

// The stages out of line: each one's locals leave the frame when it returns, so the
// path's stack is its own plus the deepest stage's, not the sum (512 bytes in all).

#[inline(never)]
fn lookup(key: &FlowKey6, hash: u32, now: u64, syn: bool) -> Found<FlowValue6> {
    conntrack::lookup::<V6>(key, hash, now, syn)
}

#[inline(never)]
fn remove_stale(key: &FlowKey6, hash: u32) {
    conntrack::remove_stale::<V6>(key, hash);
}

#[inline(never)]
fn admit(key: &FlowKey6, p: &'static Policy6) -> Result<Admitted6, EndpointCounter> {
    endpoint::admit6(key, p)
}

/// Translates along an existing IPv6 flow entry and redirects.
#[inline(always)]
#[expect(
    clippy::too_many_arguments,
    reason = "inlined; a struct would cost BPF stack"
)]
fn forward(
    ctx: &XdpContext,
    iface: &IfaceConfig,
    v: *mut FlowValue6,
    key: &FlowKey6,
    proto: u8,
    l4_off: usize,
    len: u64,
    bits: u8,
    tcp_flags: u8,
) -> u32 {
    // SAFETY: as in the IPv4 path's `forward`.
    let v = unsafe {
        if (*v).state & bits != bits {
            (*v).state |= bits;
        }
        (*v).packets = (*v).packets.wrapping_add(1);
        (*v).bytes = (*v).bytes.wrapping_add(len);
        &*v
    };
    if nat::hop_limit(ctx).is_none_or(|h| h <= 1) {
        stats::endpoint_add(v.endpoint, EndpointCounter::RefusedTtl, 1);
        return xdp_action::XDP_DROP;
    }
    if !mtu::fits6(iface, v.endpoint, u16::from(v.egress), len) {
        return xdp_action::XDP_DROP;
    }
    if nat::translate6(ctx, v, key, proto, l4_off).is_err() {
        return xdp_action::XDP_ABORTED;
    }
    if tcp_flags & TCP_SYN != 0 {
        mtu::clamp_mss(ctx, iface.network, u16::from(v.egress), v.endpoint, l4_off);
    }
    stats::endpoint_forwarded(v.endpoint, v.dir == FLOW_FORWARD, len);
    redirect::to_network(u16::from(v.egress))
}
