//! Flow events for `pl flows --watch`: written on the new-flow path only, and only while
//! userspace has set `PL_WATCH[0]` (a watcher is connected). A full ring drops the event.

use pl_common::{
    event::{EVENT_OPEN, EVENT_REFUSED, FlowEvent},
    flow::{FlowKey, FlowValue},
    stats::EndpointCounter,
};

use crate::maps::{PL_EVENTS, PL_WATCH};

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
#[inline(always)]
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
#[inline(always)]
pub fn refused(key: &FlowKey, endpoint: u16, reason: EndpointCounter) {
    if !watched() {
        return;
    }
    let mut e = consumer_side(key, endpoint, EVENT_REFUSED);
    e.reason = reason as u8;
    let _ = PL_EVENTS.output::<FlowEvent>(&e, 0);
}
