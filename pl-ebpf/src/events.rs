//! Flow events for `pl flows --watch`: written on the new-flow path only, and only while
//! userspace has set `PL_WATCH[0]` (a watcher is connected). A full ring drops the event.
//! Also the program's own log lines (aya-log), for conditions an operator must hear about,
//! at most one a second per CPU so a flood cannot flood the log.

use aya_ebpf::programs::XdpContext;
use aya_log_ebpf::warn;
use pl_common::{
    event::{EVENT_OPEN, EVENT_REFUSED, FAMILY_IPV6, FlowEvent, FlowEvent6},
    flow::{FlowKey, FlowValue},
    flow6::{Addr6, FlowKey6, FlowValue6},
    stats::EndpointCounter,
};

use crate::maps::{PL_EVENTS, PL_LOG_GATE, PL_WATCH};

#[inline(always)]
fn watched() -> bool {
    PL_WATCH.get(0).is_some_and(|w| *w != 0)
}

#[inline(always)]
fn consumer_side(key: &FlowKey, endpoint: u16, kind: u8) -> FlowEvent {
    FlowEvent {
        kind,
        proto: key.proto,
        endpoint,
        network: key.network,
        src_be: key.src_be,
        dst_be: key.dst_be,
        sport_be: key.sport_be,
        dport_be: key.dport_be,
        ..FlowEvent::default()
    }
}

/// A flow opened: consumer tuple `key`, translated as `v` (its forward entry) says.
// Out of line: keeps the caller's frame (near the 512-byte limit) as it was.
#[inline(never)]
pub fn opened(key: &FlowKey, v: &FlowValue) {
    if !watched() {
        return;
    }
    let mut e = consumer_side(key, v.endpoint, EVENT_OPEN);
    e.nlb_be = v.new_src_be;
    e.target_be = v.new_dst_be;
    e.snat_port_be = v.new_sport_be;
    e.target_port_be = v.new_dport_be;
    let _ = PL_EVENTS.output::<FlowEvent>(&e, 0);
}

/// A new flow was refused for `reason`.
// Out of line: keeps the caller's frame (near the 512-byte limit) as it was.
#[inline(never)]
pub fn refused(key: &FlowKey, endpoint: u16, reason: EndpointCounter) {
    if !watched() {
        return;
    }
    let mut e = consumer_side(key, endpoint, EVENT_REFUSED);
    e.reason = reason as u8;
    let _ = PL_EVENTS.output::<FlowEvent>(&e, 0);
}

/// An IPv6 flow opened: as [`opened`].
// Out of line, and written in place in the ring: the IPv6 path's frame gets nothing of
// the event's 80 bytes.
#[inline(never)]
pub fn opened6(key: &FlowKey6, v: &FlowValue6) {
    if watched() {
        output6(key, v.endpoint, EVENT_OPEN, 0, Some(v));
    }
}

/// A new IPv6 flow was refused for `reason`.
#[inline(never)]
pub fn refused6(key: &FlowKey6, endpoint: u16, reason: EndpointCounter) {
    if watched() {
        output6(key, endpoint, EVENT_REFUSED, reason as u8, None);
    }
}

/// An IPv6 event, every field written into its reserved place (a reserved record is not
/// zeroed): the provider side from `v` for an open, zeros for a refusal.
#[inline(always)]
fn output6(key: &FlowKey6, endpoint: u16, kind: u8, reason: u8, v: Option<&FlowValue6>) {
    let Some(mut slot) = PL_EVENTS.reserve::<FlowEvent6>(0) else {
        return;
    };
    let e = slot.as_mut_ptr();
    let none: Addr6 = [0; 16];
    // SAFETY: `e` is the reserved record, FlowEvent6-sized; each field written once.
    unsafe {
        (*e).kind = kind;
        (*e).reason = reason;
        (*e).proto = key.proto;
        (*e).family = FAMILY_IPV6;
        (*e).endpoint = endpoint;
        (*e).network = key.network;
        (*e).sport_be = key.sport_be;
        (*e).dport_be = key.dport_be;
        (*e).src = key.src;
        (*e).dst = key.dst;
        match v {
            Some(v) => {
                (*e).snat_port_be = v.new_sport_be;
                (*e).target_port_be = v.new_dport_be;
                (*e).nlb = v.new_src;
                (*e).target = v.new_dst;
            }
            None => {
                (*e).snat_port_be = 0;
                (*e).target_port_be = 0;
                (*e).nlb = none;
                (*e).target = none;
            }
        }
    }
    slot.submit(0);
}

/// True at most once a second per CPU.
#[inline(always)]
fn log_allowed(now: u64) -> bool {
    let Some(last) = PL_LOG_GATE.get_ptr_mut(0) else {
        return false;
    };
    // SAFETY: this CPU's element; nothing else on this CPU runs meanwhile.
    unsafe {
        if now.saturating_sub(*last) < 1_000_000_000 {
            return false;
        }
        *last = now;
    }
    true
}

/// Logs a refusal an operator must act on: the flow table or an NLB's SNAT ports are full.
// Out of line: keeps the caller's frame (near the 512-byte limit) as it was.
#[inline(never)]
pub fn log_refusal(ctx: &XdpContext, now: u64, endpoint: u16, reason: EndpointCounter) {
    match reason {
        EndpointCounter::RefusedFlowTableFull if log_allowed(now) => {
            warn!(
                ctx,
                "flow table full: refusing new flows (endpoint id {}); established flows go on",
                endpoint
            );
        }
        EndpointCounter::RefusedSnatExhausted if log_allowed(now) => {
            warn!(
                ctx,
                "SNAT ports exhausted for a target: refusing new flows (endpoint id {})", endpoint
            );
        }
        _ => {}
    }
}
