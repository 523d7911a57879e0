//! The IPv6 path for TCP and UDP: the IPv4 path's stages (conntrack, endpoint and policy,
//! nat, redirect) over the IPv6 maps and flow table. Family translation runs here too:
//! a translated flow lives in the IPv6 table, its IPv4 side keyed by IPv4-mapped
//! addresses, so an IPv4 packet of such a flow comes here as well (`run_xlat4`, from the
//! IPv4 program), and an IPv6 packet whose entry leads to a mapped address leaves as IPv4.

use aya_ebpf::{bindings::xdp_action, programs::XdpContext};
use network_types::eth::EthHdr;
use pl_common::{
    cidr::{is_martian, is_martian6},
    flow::{FLOW_FORWARD, opens_flow, packet_state},
    flow6::{FlowKey6, FlowValue6, mapped, unmapped},
    iface::{IFACE_DEDICATED, IfaceConfig},
    maps::{TAIL_ICMP46, TAIL_IPV6_L4, TAIL_IPV6_NEW, TAIL_XLAT4, TAIL_XLAT4_NEW},
    policy::Policy6,
    proto::{ETH_HLEN, IPPROTO_TCP, IPPROTO_UDP, IPV4_MIN_HLEN, IPV6_HLEN, TCP_SYN},
    stats::{EndpointCounter, IfaceCounter},
};

use crate::{
    classify,
    conntrack::{self, Created, Found, V6},
    dns,
    endpoint::{self, Admitted6, Dest},
    events, icmp, icmp6, lease,
    maps::{Flows6, PL_L4_STASH, PL_PROBES, PL_PROBES6, PL_TAILS},
    mtu, nat, ndp, parse,
    parse::{Frame, L4_OFF, L4_OFF6, MAX_EXT_BYTES, ptr_at},
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
        dns::not_our_mac(ctx, &iface, &slot)
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
            Frame::Icmp6 { l4_off } if icmp6::is_error(ctx, l4_off) => {
                match icmp6::handle(ctx, &iface, &slot) {
                    icmp6::TO_ICMP46 => {
                        // SAFETY: the context is this program's. On success it does not
                        // return (and that program counts the action).
                        unsafe { PL_TAILS.tail_call(ctx, TAIL_ICMP46) };
                        slot.add(IfaceCounter::DroppedIcmp, 1);
                        xdp_action::XDP_DROP
                    }
                    action => action,
                }
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
///
/// `NEW`: the copy for a packet with no live flow (tail-called from the other when its
/// lookup misses): opening a flow and forwarding along one are checked apart, each
/// within the verifier's budget, where together they were not.
#[inline(always)]
pub fn run_l4<const NEW: bool>(ctx: &XdpContext) -> Result<u32, ()> {
    let iface = classify::ingress(ctx).ok_or(())?;
    let slot = Slot::get(iface.slot).ok_or(())?;
    let len = parse::frame_len(ctx);
    // SAFETY: this CPU's element, written by the program that called this one.
    let l4 = unsafe { *PL_L4_STASH.get_ptr(0).ok_or(())? };
    let (l4_off, proto) = (((l4 >> 8) & 0xffff) as usize, l4 as u8);
    let action = handle::<false, NEW>(ctx, &iface, &slot, proto, l4_off, len)?;
    slot.count_action(action);
    Ok(action)
}

/// An IPv4 TCP or UDP packet whose flow is keyed in the IPv6 table: tail-called from the
/// IPv4 program (which parsed it, counted it received and found no IPv4 flow) for a
/// listener whose service has IPv6 targets, or a packet to an NLB address. `NEW`: as for
/// [`run_l4`].
#[inline(always)]
pub fn run_xlat4<const NEW: bool>(ctx: &XdpContext) -> Result<u32, ()> {
    let iface = classify::ingress(ctx).ok_or(())?;
    let slot = Slot::get(iface.slot).ok_or(())?;
    let len = parse::frame_len(ctx);
    // SAFETY: bounds-checked; byte 9 is the protocol.
    let proto = unsafe { (*ptr_at::<[u8; IPV4_MIN_HLEN]>(ctx, ETH_HLEN).ok_or(())?)[9] };
    let action = handle::<true, NEW>(ctx, &iface, &slot, proto, L4_OFF, len)?;
    slot.count_action(action);
    Ok(action)
}

/// `l4_off`: where the TCP or UDP header starts (parse walked the extension headers);
/// `len`: the whole frame's length. `V4`: the frame is IPv4 (20-byte header, no options:
/// the IPv4 parse saw to it), keyed by its mapped addresses. `NEW`: as for [`run_l4`].
#[inline(always)]
fn handle<const V4: bool, const NEW: bool>(
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
    let ports = ptr_at::<[u8; 4]>(ctx, l4_off).ok_or(())?;
    let mut key = FlowKey6 {
        network: iface.network,
        proto,
        ..FlowKey6::default()
    };
    let martian = if V4 {
        let ip = ptr_at::<[u8; IPV4_MIN_HLEN]>(ctx, ETH_HLEN).ok_or(())?;
        // SAFETY: bounds-checked by ptr_at.
        let (src, dst) = unsafe {
            let ip = &*ip;
            (
                u32::from_ne_bytes([ip[12], ip[13], ip[14], ip[15]]),
                u32::from_ne_bytes([ip[16], ip[17], ip[18], ip[19]]),
            )
        };
        key.src = mapped(src);
        key.dst = mapped(dst);
        is_martian(src)
    } else {
        let ip = ptr_at::<[u8; IPV6_HLEN]>(ctx, ETH_HLEN).ok_or(())?;
        // SAFETY: bounds-checked by ptr_at.
        unsafe {
            key.src.copy_from_slice(&(&(*ip))[8..24]);
            key.dst.copy_from_slice(&(&(*ip))[24..40]);
        }
        is_martian6(&key.src)
    };
    // SAFETY: bounds-checked by ptr_at.
    unsafe {
        key.sport_be = u16::from_ne_bytes([(*ports)[0], (*ports)[1]]);
        key.dport_be = u16::from_ne_bytes([(*ports)[2], (*ports)[3]]);
    }
    let tcp_flags = if proto == IPPROTO_TCP {
        // SAFETY: a whole TCP header is present (parse checked it); byte 13 holds the flags.
        ptr_at::<[u8; 14]>(ctx, l4_off).map_or(0, |h| unsafe { (*h)[13] })
    } else {
        0
    };
    if martian {
        slot.add(IfaceCounter::DroppedMartian, 1);
        return Ok(xdp_action::XDP_DROP);
    }
    // IPv6 has no "no checksum": such a datagram cannot be carried over.
    if V4 && proto == IPPROTO_UDP && !nat::udp_checksummed(ctx) {
        slot.add(IfaceCounter::DroppedBadL4, 1);
        return Ok(xdp_action::XDP_DROP);
    }
    let bits = packet_state(proto, tcp_flags);
    let syn = opens_flow(proto, tcp_flags) && proto == IPPROTO_TCP;
    let hash = Flows6::hash(&key);
    let found = lookup(&key, hash, conntrack::now(), syn);
    let stash = PL_L4_STASH.get_ptr_mut(0).ok_or(())?;
    let (this, other) = if V4 {
        (TAIL_XLAT4, TAIL_XLAT4_NEW)
    } else {
        (TAIL_IPV6_L4, TAIL_IPV6_NEW)
    };
    if !NEW {
        if let Found::Live(v) = found {
            return Ok(forward::<V4>(
                ctx, iface, slot, v, &key, proto, l4_off, len, bits, tcp_flags,
            ));
        }
        // SAFETY: this CPU's element.
        if unsafe { *stash } & STASH_OPENED != 0 {
            // The flow opened for this very packet is gone again (a full table's churn):
            // no second round.
            slot.add(IfaceCounter::DroppedNoFlow, 1);
            return Ok(xdp_action::XDP_DROP);
        }
        // SAFETY: the context is this program's. On success it does not return.
        unsafe { PL_TAILS.tail_call(ctx, other) };
        // Only a broken load leaves the slot empty.
        slot.add(IfaceCounter::DroppedNonIpv4, 1);
        return Ok(xdp_action::XDP_DROP);
    }
    let opening = match found {
        // Another CPU opened it meanwhile.
        Found::Live(_) => false,
        // Only a packet that may open a flow clears the way; any other leaves the stale
        // entry to the sweep. Here, not in `open`: its callees' frames would stack on
        // `open`'s.
        Found::Stale => {
            if opens_flow(proto, tcp_flags) {
                remove_stale(&key, hash);
            }
            true
        }
        Found::Absent => true,
    };
    if opening {
        let found = u64::from(hash) << 32 | u64::from(tcp_flags);
        if let Err(action) = open::<V4>(ctx, iface, &key, found) {
            return Ok(action);
        }
    }
    // Back to the program that forwards along flows: it finds this one now.
    // SAFETY: this CPU's element; the context is this program's (on success the call
    // does not return).
    unsafe {
        *stash |= STASH_OPENED;
        PL_TAILS.tail_call(ctx, this);
    }
    slot.add(IfaceCounter::DroppedNonIpv4, 1);
    Ok(xdp_action::XDP_DROP)
}

/// `PL_L4_STASH`: the new-flow program opened this packet's flow (and handed it back).
pub const STASH_OPENED: u32 = 1 << 31;

/// Opens the flow of a packet with no live flow, or says what the packet gets instead.
/// Out of line: its callees' frames do not sit on `lookup`'s.
#[inline(never)]
fn open<const V4: bool>(
    ctx: &XdpContext,
    iface: &IfaceConfig,
    key: &FlowKey6,
    found: u64,
) -> Result<(), u32> {
    // A BPF call passes at most five arguments: the key's hash and the TCP flags come
    // packed in `found`, and the stats slot is looked up again.
    let (hash, tcp_flags) = ((found >> 32) as u32, found as u8);
    let slot = &Slot::get(iface.slot).ok_or(xdp_action::XDP_ABORTED)?;
    let proto = key.proto;
    let now = conntrack::now();
    let bits = packet_state(proto, tcp_flags);
    let opens = opens_flow(proto, tcp_flags);
    let dest = if lease::held(now) {
        endpoint::dest6::<V4>(key)
    } else {
        Dest::NotOurs
    };
    let (endpoint, policy) = match dest {
        Dest::Listener(p) => (p.endpoint, Some(p)),
        Dest::NoListener(endpoint) => (endpoint, None),
        // A health probe's answer (its state bits are the result, for userspace), or
        // dropped: the provider cannot initiate.
        Dest::Nlb => {
            if !probe_answer::<V4>(key, bits) {
                slot.add(IfaceCounter::DroppedNoFlow, 1);
            }
            return Err(xdp_action::XDP_DROP);
        }
        Dest::NotOurs | Dest::Xlat => {
            slot.add(IfaceCounter::DroppedNotOurs, 1);
            return Err(xdp_action::XDP_DROP);
        }
    };
    let refuse = |reason| {
        stats::endpoint_add(endpoint, reason, 1);
        events::refused6(key, endpoint, reason);
        events::log_refusal(ctx, now, endpoint, reason);
        Err(xdp_action::XDP_DROP)
    };
    if !opens {
        return refuse(EndpointCounter::RefusedNotSyn);
    }
    let Some(policy) = policy else {
        return refuse(EndpointCounter::RefusedNoListener);
    };
    let admitted = match admit::<V4>(key, policy) {
        Ok(a) => a,
        Err(reason) => return refuse(reason),
    };
    if hops::<V4>(ctx).ok_or(xdp_action::XDP_ABORTED)? <= 1 {
        // As a router would: the sender hears it from the endpoint address.
        stats::endpoint_add(endpoint, EndpointCounter::RefusedTtl, 1);
        return Err(if V4 {
            icmp::reply(ctx, iface, slot, 0)
        } else {
            icmp6::reply(ctx, iface, 0)
        });
    }
    let eth = ptr_at::<EthHdr>(ctx, 0).ok_or(xdp_action::XDP_ABORTED)?;
    let from = conntrack::Origin {
        endpoint,
        // SAFETY: bounds-checked.
        mac: unsafe { (*eth).src_addr },
        state: bits,
        len: parse::frame_len(ctx) as u16,
        now,
    };
    match conntrack::create6(key, hash, &admitted, &from) {
        Ok(Created::New(v)) => {
            stats::endpoint_add(endpoint, EndpointCounter::NewFlows, 1);
            stats::target_new_flow(admitted.target);
            // SAFETY: this CPU's copy of the entry just made.
            events::opened6(key, unsafe { &*v });
            Ok(())
        }
        Ok(Created::Raced(_)) => Ok(()),
        Err(reason) => refuse(reason),
    }
}

/// The frame's TTL (`V4`) or hop limit.
#[inline(always)]
fn hops<const V4: bool>(ctx: &XdpContext) -> Option<u8> {
    if V4 {
        nat::ttl(ctx)
    } else {
        nat::hop_limit(ctx)
    }
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
fn admit<const V4: bool>(
    key: &FlowKey6,
    p: &'static Policy6,
) -> Result<Admitted6, EndpointCounter> {
    endpoint::admit6::<V4>(key, p)
}

/// Records a health probe's answer to `key` (an IPv4 probe's under its IPv4 key); false if
/// no probe waits for it.
#[inline(never)]
fn probe_answer<const V4: bool>(key: &FlowKey6, bits: u8) -> bool {
    #[expect(
        clippy::needless_borrows_for_generic_args,
        reason = "by value the key would be copied again onto the 512-byte BPF stack"
    )]
    let probe = if V4 {
        let Some(k4) = key.unmapped() else {
            return false;
        };
        PL_PROBES.get_ptr_mut(&k4)
    } else {
        PL_PROBES6.get_ptr_mut(key)
    };
    match probe {
        Some(p) => {
            // SAFETY: a live map value, written whole.
            unsafe { *p |= u32::from(bits) };
            true
        }
        None => false,
    }
}

/// Translates along an existing entry of the IPv6 table and redirects: IPv6 to IPv6, IPv6
/// to IPv4 (the entry leads to mapped addresses), or IPv4 to IPv6 (`V4`).
#[inline(always)]
#[expect(
    clippy::too_many_arguments,
    reason = "inlined; a struct would cost BPF stack"
)]
fn forward<const V4: bool>(
    ctx: &XdpContext,
    iface: &IfaceConfig,
    slot: &Slot,
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
    let egress = u16::from(v.egress);
    if hops::<V4>(ctx).is_none_or(|h| h <= 1) {
        stats::endpoint_add(v.endpoint, EndpointCounter::RefusedTtl, 1);
        return if V4 {
            icmp::reply(ctx, iface, slot, 0)
        } else {
            icmp6::reply(ctx, iface, 0)
        };
    }
    let to_v4 = !V4 && unmapped(&v.new_dst).is_some();
    if V4 {
        match mtu::too_big::<{ mtu::XLAT_GROWTH }>(ctx, iface, v.endpoint, egress, len) {
            mtu::FITS => {}
            mtu::DROP => return xdp_action::XDP_DROP,
            egress_mtu => return icmp::reply(ctx, iface, slot, egress_mtu),
        }
    } else {
        // Translated to IPv4, the IPv6 header and its extensions give way to 20 bytes.
        let out = if to_v4 {
            len - (l4_off - L4_OFF) as u64
        } else {
            len
        };
        match mtu::too_big6(iface, v.endpoint, egress, out) {
            mtu::FITS => {}
            // The IPv6 packet may be 20 bytes more than the IPv4 link carries.
            egress_mtu if to_v4 => return icmp6::reply(ctx, iface, egress_mtu + 20),
            egress_mtu => return icmp6::reply(ctx, iface, egress_mtu),
        }
        // Before the rewrite, while the frame's own IPv6 headers are there to come off
        // the MSS (also when it leaves as IPv4: the consumer's side is IPv6).
        if tcp_flags & TCP_SYN != 0 {
            mtu::clamp_mss(ctx, iface.network, egress, v.endpoint, l4_off);
        }
    }
    let translated = if V4 {
        nat::translate46(ctx, v, key, proto)
    } else if to_v4 {
        nat::translate64(ctx, v, key, proto, l4_off)
    } else {
        nat::translate6(ctx, v, key, proto, l4_off)
    };
    if translated.is_err() {
        return xdp_action::XDP_ABORTED;
    }
    // Now IPv6: the 20 bytes more than IPv4 come off the MSS.
    if V4 && tcp_flags & TCP_SYN != 0 {
        mtu::clamp_mss(ctx, iface.network, egress, v.endpoint, L4_OFF6);
    }
    stats::endpoint_forwarded(v.endpoint, v.dir == FLOW_FORWARD, len);
    redirect::to_network(egress)
}
