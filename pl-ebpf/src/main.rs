//! pl's XDP data path. A frame walks: classify (which of our interfaces, which network)
//! -> parse (bounded, one place) -> ARP, or conntrack (existing flow?) -> endpoint lookup
//! and policy (new flow) -> nat -> redirect -> stats.
#![no_std]
#![no_main]

mod arp;
mod classify;
mod conntrack;
mod dns;
mod early;
mod endpoint;
mod events;
mod icmp;
mod icmp46;
mod icmp6;
mod ipv6;
mod lease;
mod maps;
mod mtu;
mod nat;
mod ndp;
mod parse;
mod redirect;
mod stats;
mod stop;
mod table;

use aya_ebpf::{bindings::xdp_action, macros::xdp, programs::XdpContext};
use network_types::eth::EthHdr;
use pl_common::{
    bench::{
        STAGE_ADMITTED, STAGE_CHECKED, STAGE_CLASSIFIED, STAGE_COUNTED, STAGE_COUNTED_ENDPOINT,
        STAGE_CREATED, STAGE_ENTERED, STAGE_HASHED, STAGE_KEYED, STAGE_LOOKED_UP, STAGE_OPENED,
        STAGE_PARSED, STAGE_TRANSLATED, STAGE_WARMED,
    },
    cidr::is_martian,
    flow::{FLOW_FORWARD, FlowKey, opens_flow, packet_state},
    iface::{IFACE_DEDICATED, IfaceConfig},
    maps::{TAIL_IPV6, TAIL_XLAT4},
    proto::{ETH_HLEN, IPPROTO_TCP, TCP_SYN},
    stats::{EndpointCounter, IfaceCounter},
};

use crate::{
    conntrack::{Created, Found},
    endpoint::Dest,
    maps::{Flows, PL_L4_STASH, PL_PROBES, PL_TAILS},
    parse::Frame,
    stats::Slot,
};

// frags: multi-buffer frames (jumbo MTUs) reach the program instead of the driver
// refusing it; headers stay in the linear part, lengths come from `parse::frame_len`.
#[xdp(frags)]
pub fn pl_xdp(ctx: XdpContext) -> u32 {
    run::<false>(&ctx)
}

/// `pl bench`'s copy of the path, with the stage knob (`stop`): loaded only by the bench's
/// itemization, never attached. The product's copy above has no knob at all.
#[xdp(frags)]
pub fn pl_xdp_staged(ctx: XdpContext) -> u32 {
    run::<true>(&ctx)
}

/// The IPv6 data path, tail-called from either copy above for every IPv6 frame on one of
/// our interfaces (after they counted it received).
#[xdp(frags)]
pub fn pl_xdp6(ctx: XdpContext) -> u32 {
    ipv6::run(&ctx).unwrap_or(xdp_action::XDP_ABORTED)
}

/// IPv6 TCP and UDP, tail-called from `pl_xdp6`: along a live flow.
#[xdp(frags)]
pub fn pl_xdp6_l4(ctx: XdpContext) -> u32 {
    ipv6::run_l4::<false>(&ctx).unwrap_or(xdp_action::XDP_ABORTED)
}

/// IPv6 TCP and UDP with no live flow, tail-called from `pl_xdp6_l4`.
#[xdp(frags)]
pub fn pl_xdp6_new(ctx: XdpContext) -> u32 {
    ipv6::run_l4::<true>(&ctx).unwrap_or(xdp_action::XDP_ABORTED)
}

/// Family translation's IPv4 side, tail-called from either copy above for an IPv4 packet
/// whose flow is in the IPv6 table.
#[xdp(frags)]
pub fn pl_xdp46(ctx: XdpContext) -> u32 {
    ipv6::run_xlat4::<false>(&ctx).unwrap_or(xdp_action::XDP_ABORTED)
}

/// The same with no live flow, tail-called from `pl_xdp46`.
#[xdp(frags)]
pub fn pl_xdp46_new(ctx: XdpContext) -> u32 {
    ipv6::run_xlat4::<true>(&ctx).unwrap_or(xdp_action::XDP_ABORTED)
}

/// ICMP errors about a translated flow, which change family with it: tail-called from
/// the IPv4 and IPv6 paths.
#[xdp(frags)]
pub fn pl_icmp46(ctx: XdpContext) -> u32 {
    icmp46::run(&ctx).unwrap_or(xdp_action::XDP_ABORTED)
}

/// `S`: the copy with the stage knob.
#[inline(always)]
fn run<const S: bool>(ctx: &XdpContext) -> u32 {
    match try_pl_xdp::<S>(ctx) {
        Ok(action) => action,
        Err(()) => xdp_action::XDP_ABORTED,
    }
}

fn try_pl_xdp<const S: bool>(ctx: &XdpContext) -> Result<u32, ()> {
    if let Some(a) = stop::at::<S>(STAGE_ENTERED) {
        return Ok(a);
    }
    // Not one of our interfaces: leave the frame to the kernel.
    let Some(iface) = classify::ingress(ctx) else {
        return Ok(xdp_action::XDP_PASS);
    };
    if let Some(a) = stop::at::<S>(STAGE_CLASSIFIED) {
        return Ok(a);
    }
    let stats = Slot::get(iface.slot).ok_or(())?;
    stats.add(IfaceCounter::RxPackets, 1);
    let len = parse::frame_len(ctx);
    stats.add(IfaceCounter::RxBytes, len);
    if parse::is_ipv6(ctx) {
        // SAFETY: the context is this program's. On success it does not return.
        unsafe { PL_TAILS.tail_call(ctx, TAIL_IPV6) };
        // Only a broken load leaves the slot empty: not carried, and an observed
        // interface's frames still go on.
        let action = if iface.flags & IFACE_DEDICATED == 0 {
            xdp_action::XDP_PASS
        } else {
            stats.add(IfaceCounter::DroppedNonIpv4, 1);
            xdp_action::XDP_DROP
        };
        stats.count_action(action);
        return Ok(action);
    }
    let (class, frame) = parse::parse(ctx, len);
    stats.add(class, 1);

    // Observe-only interfaces (`pl run --interface`): count, and hand everything on.
    let action = if iface.flags & IFACE_DEDICATED == 0 {
        xdp_action::XDP_PASS
    } else if !classify::addressed_to_us(ctx, &iface) {
        dns::not_our_mac(ctx, &iface, &stats)
    } else {
        match frame {
            Frame::Arp => arp::handle(ctx, &iface, &stats),
            Frame::Ipv4L4 { proto } => ipv4::<S>(ctx, &iface, &stats, proto, len)?,
            Frame::Icmp => icmp::handle(ctx, &iface, &stats),
            // IPv6 went to its own program above.
            Frame::Ipv6L4 { .. } | Frame::Icmp6 { .. } => xdp_action::XDP_DROP,
            Frame::Drop(why) => {
                stats.add(why, 1);
                xdp_action::XDP_DROP
            }
        }
    };
    stats.count_action(action);
    Ok(action)
}

/// `len`: the frame's length, measured once at entry (recomputing it from the packet
/// pointers this deep can compile to arithmetic on pkt_end, which the verifier refuses).
fn ipv4<const S: bool>(
    ctx: &XdpContext,
    iface: &IfaceConfig,
    stats: &Slot,
    proto: u8,
    len: u64,
) -> Result<u32, ()> {
    let ip = parse::ptr_at::<network_types::ip::Ipv4Hdr>(ctx, ETH_HLEN).ok_or(())?;
    if let Some(a) = stop::at::<S>(STAGE_PARSED) {
        return Ok(a);
    }
    let ports = parse::ptr_at::<[u8; 4]>(ctx, parse::L4_OFF).ok_or(())?;
    // SAFETY: both bounds-checked by ptr_at.
    let (src, dst, p) = unsafe { ((*ip).src_addr, (*ip).dst_addr, *ports) };
    let key = FlowKey {
        src_be: u32::from_ne_bytes(src),
        dst_be: u32::from_ne_bytes(dst),
        sport_be: u16::from_ne_bytes([p[0], p[1]]),
        dport_be: u16::from_ne_bytes([p[2], p[3]]),
        network: iface.network,
        proto,
        _pad: 0,
    };
    let now = conntrack::now();
    let tcp_flags = if proto == IPPROTO_TCP {
        // SAFETY: a TCP header is present (parse checked it); byte 13 holds the flags.
        parse::ptr_at::<[u8; 14]>(ctx, parse::L4_OFF).map_or(0, |h| unsafe { (*h)[13] })
    } else {
        0
    };
    if is_martian(key.src_be) {
        stats.add(IfaceCounter::DroppedMartian, 1);
        return Ok(xdp_action::XDP_DROP);
    }
    let bits = packet_state(proto, tcp_flags);
    let opens = opens_flow(proto, tcp_flags);
    // A TCP SYN on a flow may reopen it (port reuse); nothing else needs its pair judged
    // before a second of idleness, so UDP stays on the one-lookup path.
    // A SYN is admitted before its flow lookup (see `early`); anything else
    // only if it finds no flow.
    let syn = opens && proto == IPPROTO_TCP;
    if let Some(a) = stop::at::<S>(STAGE_KEYED) {
        return Ok(a);
    }
    let hash = Flows::hash(&key);
    if let Some(a) = stop::at::<S>(STAGE_HASHED) {
        return Ok(a);
    }
    let early = if syn { early::admit(&key) } else { None };
    if let Some(a) = stop::at::<S>(STAGE_ADMITTED) {
        return Ok(a);
    }
    if let Some(a) = &early {
        early::warm(&key, hash, a);
    }
    if let Some(a) = stop::at::<S>(STAGE_WARMED) {
        return Ok(a);
    }
    let found = conntrack::lookup::<conntrack::V4>(&key, hash, now, syn);
    if let Some(a) = stop::at::<S>(STAGE_LOOKED_UP) {
        return Ok(a);
    }
    let stale = match found {
        Found::Live(v) => {
            return Ok(forward::<S>(
                ctx, iface, stats, v, &key, proto, len, bits, tcp_flags,
            ));
        }
        Found::Stale => true,
        Found::Absent => false,
    };

    let dest = match &early {
        // A node whose lease lapsed opens nothing: its zones are another's by now.
        _ if !lease::held(now) => Dest::NotOurs,
        Some(a) => Dest::Listener(a.policy),
        None => endpoint::dest(&key),
    };
    let (endpoint, policy) = match dest {
        Dest::Listener(p) => (p.endpoint, Some(p)),
        Dest::NoListener(endpoint) => (endpoint, None),
        // A translated flow's IPv4 side is keyed in the IPv6 table: the IPv6 path takes
        // it on (an NLB packet with no flow there is judged there as here).
        Dest::Nlb | Dest::Xlat => {
            if let Some(stash) = PL_L4_STASH.get_ptr_mut(0) {
                // SAFETY: this CPU's element: a fresh packet, no flow opened for it yet.
                unsafe { *stash = 0 };
                // SAFETY: the context is this program's. On success it does not return.
                unsafe { PL_TAILS.tail_call(ctx, TAIL_XLAT4) };
            }
            // Only a broken load leaves the slot empty.
            return Ok(match dest {
                Dest::Nlb => nlb(&key, stats, bits),
                _ => {
                    stats.add(IfaceCounter::DroppedNonIpv4, 1);
                    xdp_action::XDP_DROP
                }
            });
        }
        Dest::NotOurs => {
            stats.add(IfaceCounter::DroppedNotOurs, 1);
            return Ok(xdp_action::XDP_DROP);
        }
    };
    let refuse = |reason| {
        stats::endpoint_add(endpoint, reason, 1);
        events::refused(&key, endpoint, reason);
        events::log_refusal(ctx, now, endpoint, reason);
        Ok(xdp_action::XDP_DROP)
    };
    // Only a SYN (or any UDP datagram) opens a flow: a stray ACK, FIN or RST takes no
    // table room, and leaves a stale entry for the sweep.
    if !opens {
        return refuse(EndpointCounter::RefusedNotSyn);
    }
    if stale {
        conntrack::remove_stale::<conntrack::V4>(&key, hash);
    }
    let Some(policy) = policy else {
        return refuse(EndpointCounter::RefusedNoListener);
    };
    let admitted = match early.map_or_else(|| endpoint::admit(&key, policy), Ok) {
        Ok(a) => a,
        Err(reason) => return refuse(reason),
    };
    if nat::ttl(ctx).ok_or(())? <= 1 {
        // As a router would: the sender hears it from the endpoint address.
        stats::endpoint_add(endpoint, EndpointCounter::RefusedTtl, 1);
        return Ok(icmp::reply(ctx, iface, stats, 0));
    }
    let eth = parse::ptr_at::<EthHdr>(ctx, 0).ok_or(())?;
    // SAFETY: bounds-checked.
    let from = conntrack::Origin {
        endpoint,
        mac: unsafe { (*eth).src_addr },
        state: bits,
        len: len as u16,
        now,
    };
    let created = conntrack::create(&key, hash, &admitted, &from);
    if let Some(a) = stop::at::<S>(STAGE_CREATED) {
        return Ok(a);
    }
    let v = match created {
        Ok(Created::New(v)) => {
            stats::endpoint_add(endpoint, EndpointCounter::NewFlows, 1);
            stats::target_new_flow(admitted.target);
            // SAFETY: this CPU's copy of the entry just made.
            events::opened(&key, unsafe { &*v });
            v
        }
        // Another CPU made this flow meanwhile and counted it.
        Ok(Created::Raced(v)) => v,
        Err(reason) => return refuse(reason),
    };
    if let Some(a) = stop::at::<S>(STAGE_OPENED) {
        return Ok(a);
    }
    Ok(forward::<S>(
        ctx, iface, stats, v, &key, proto, len, bits, tcp_flags,
    ))
}

/// A packet to an NLB address with no flow: a health probe's answer (its state bits are
/// the result, for userspace), or dropped: the provider cannot initiate.
#[inline(always)]
fn nlb(key: &FlowKey, stats: &Slot, bits: u8) -> u32 {
    if let Some(p) = PL_PROBES.get_ptr_mut(key) {
        // SAFETY: a live map value, written whole.
        unsafe { *p |= u32::from(bits) };
    } else {
        stats.add(IfaceCounter::DroppedNoFlow, 1);
    }
    xdp_action::XDP_DROP
}

/// Translates along an existing flow entry and redirects.
#[inline(always)]
#[expect(
    clippy::too_many_arguments,
    reason = "inlined; a struct would cost BPF stack"
)]
fn forward<const S: bool>(
    ctx: &XdpContext,
    iface: &IfaceConfig,
    slot: &Slot,
    v: *mut pl_common::flow::FlowValue,
    key: &FlowKey,
    proto: u8,
    len: u64,
    bits: u8,
    tcp_flags: u8,
) -> u32 {
    // SAFETY: a live map value, or this CPU's scratch copy of one just inserted (whose
    // first packet `create` counted); fields are written whole, the state only when this
    // packet adds a bit (rarely), the counters by the one CPU this direction arrives on.
    let v = unsafe {
        if (*v).state & bits != bits {
            (*v).state |= bits;
        }
        (*v).packets = (*v).packets.wrapping_add(1);
        (*v).bytes = (*v).bytes.wrapping_add(len);
        &*v
    };
    if let Some(a) = stop::at::<S>(STAGE_COUNTED) {
        return a;
    }
    let to_provider = v.dir == FLOW_FORWARD;
    match nat::ttl(ctx) {
        Some(ttl) if ttl > 1 => {}
        _ => {
            stats::endpoint_add(v.endpoint, EndpointCounter::RefusedTtl, 1);
            return icmp::reply(ctx, iface, slot, 0);
        }
    }
    match mtu::too_big::<0>(ctx, iface, v.endpoint, u16::from(v.egress), len) {
        mtu::FITS => {}
        mtu::DROP => return xdp_action::XDP_DROP,
        // Told to the sender, from the address it sent to.
        egress_mtu => return icmp::reply(ctx, iface, slot, egress_mtu),
    }
    if let Some(a) = stop::at::<S>(STAGE_CHECKED) {
        return a;
    }
    if nat::translate(ctx, v, key, proto).is_err() {
        return xdp_action::XDP_ABORTED;
    }
    if tcp_flags & TCP_SYN != 0 {
        mtu::clamp_mss(
            ctx,
            iface.network,
            u16::from(v.egress),
            v.endpoint,
            parse::L4_OFF,
        );
    }
    if let Some(a) = stop::at::<S>(STAGE_TRANSLATED) {
        return a;
    }
    stats::endpoint_forwarded(v.endpoint, to_provider, len);
    if let Some(a) = stop::at::<S>(STAGE_COUNTED_ENDPOINT) {
        return a;
    }
    redirect::to_network(u16::from(v.egress))
}

// Host builds (clippy --workspace) link std, which brings its own handler.
#[cfg(target_arch = "bpf")]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo<'_>) -> ! {
    loop {}
}

// GPL-compatible: bpf_redirect and friends are GPL-only helpers.
#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
