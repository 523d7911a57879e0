//! Conntrack: find the packet's flow, or create one (SNAT port reservation first, then
//! the forward entry, rolled back if another CPU created the same flow meanwhile).

use aya_ebpf::{bindings::BPF_NOEXIST, helpers::generated::bpf_ktime_get_coarse_ns};
use pl_common::{
    flow::{FLOW_FORWARD, FlowKey, FlowPlan, FlowValue, Pair, same_flow},
    settings::{SNAT_PROBES, snat_port},
    stats::EndpointCounter,
};

use crate::{
    endpoint::Admitted,
    maps::{PL_FLOWS, PL_PROBES, PL_SCRATCH, PL_SETTINGS},
};

const EEXIST: i32 = 17;
/// Refresh `last_seen_ns` at most this often, so established traffic rarely writes.
const REFRESH_NS: u64 = 1_000_000_000;

/// CLOCK_MONOTONIC at tick resolution: plenty for idle timeouts of seconds, and cheaper
/// than the precise clock on every packet.
#[inline(always)]
pub fn now() -> u64 {
    // SAFETY: no preconditions.
    unsafe { bpf_ktime_get_coarse_ns() }
}

/// What the table holds for a packet's key.
pub enum Found {
    /// A live flow entry, refreshed.
    Live(*mut FlowValue),
    /// An entry that must go before the tuple can start afresh: its flow is past its idle
    /// time (judged from both directions), its other half is missing, or it is a closed TCP
    /// flow that the consumer's SYN reopens.
    Stale,
    Absent,
}

/// The flow entry for `key`, refreshed. The fast path reads only this entry: within a
/// second of its own last packet a flow is alive under any timeout. Past that (at most
/// once a second per direction, since it refreshes then), and for a consumer's SYN, the
/// whole pair is judged with [`Pair`], as the sweep judges it.
#[inline(always)]
pub fn lookup(key: &FlowKey, now: u64, syn: bool) -> Found {
    let Some(v) = PL_FLOWS.get_ptr_mut(key) else {
        return Found::Absent;
    };
    // SAFETY: a live map value; concurrent writers only store whole fields. Read in place:
    // copies of two 64-byte values would not fit the BPF stack.
    let this = unsafe { &*v };
    let idle = now.saturating_sub(this.last_seen_ns);
    let reopen_check = syn && this.dir == FLOW_FORWARD;
    if idle <= REFRESH_NS && !reopen_check {
        return Found::Live(v);
    }
    let other_key = this.reply_key(key.proto);
    // SAFETY: as above.
    #[expect(
        clippy::needless_borrows_for_generic_args,
        reason = "by value the key would be copied again onto the 512-byte BPF stack"
    )]
    let Some(other) = (unsafe { PL_FLOWS.get(&other_key) }) else {
        return Found::Stale;
    };
    let Some(pair) = Pair::of(this, other).filter(|_| same_flow(key, this, other)) else {
        return Found::Stale;
    };
    let alive = PL_SETTINGS
        .get(0)
        .is_none_or(|s| pair.alive(key.proto, now, s));
    if !alive || (reopen_check && pair.reopened_by_syn(key.proto)) {
        return Found::Stale;
    }
    if idle > REFRESH_NS {
        // SAFETY: as above.
        unsafe { (*v).last_seen_ns = now };
    }
    Found::Live(v)
}

/// Removes the consumer flow `key` and its reply entry so the tuple can start afresh. The
/// forward entry goes first: a forward entry never outlives the reply entry that reserves
/// its SNAT port. The reply entry is removed only if it is this flow's, and only by
/// whoever removed the forward entry.
#[inline(always)]
pub fn remove_stale(key: &FlowKey) {
    // SAFETY: read in place, before anything is removed.
    let Some(v) = (unsafe { PL_FLOWS.get(key) }) else {
        return;
    };
    let reply_key = v.reply_key(key.proto);
    // SAFETY: as above.
    #[expect(
        clippy::needless_borrows_for_generic_args,
        reason = "by value the key would be copied again onto the 512-byte BPF stack"
    )]
    let ours = unsafe { PL_FLOWS.get(&reply_key) }.is_some_and(|r| same_flow(key, v, r));
    // Only the remover of the forward entry removes its reply: if the sweep took it
    // meanwhile, the reply is the sweep's to judge, and may by then be a newer flow's.
    if PL_FLOWS.remove(key).is_ok() && ours {
        #[expect(
            clippy::needless_borrows_for_generic_args,
            reason = "by value the key would be copied again onto the 512-byte BPF stack"
        )]
        let _ = PL_FLOWS.remove(&reply_key);
    }
}

/// Where a new flow comes from: its endpoint, the consumer's MAC, our interface's MAC on
/// that network, and the state bits of its first packet.
pub struct Origin {
    pub endpoint: u16,
    pub mac: [u8; 6],
    pub iface_mac: [u8; 6],
    pub state: u8,
    /// The opening frame's length (counted in the new entry).
    pub len: u16,
}

/// A flow `create` made, or found made by another CPU in the meantime (counted there).
pub enum Created {
    New(*mut FlowValue),
    Raced(*mut FlowValue),
}

/// Creates both entries of a new flow; the forward value to translate with (in this
/// CPU's scratch space, valid until the next packet on this CPU).
#[inline(always)]
#[expect(
    clippy::needless_borrows_for_generic_args,
    reason = "borrowing passes map-value pointers to the helpers; by value they would be copied onto the 512-byte BPF stack"
)]
pub fn create(
    key: &FlowKey,
    a: &Admitted,
    from: &Origin,
    now: u64,
) -> Result<Created, EndpointCounter> {
    let nf = PL_SCRATCH
        .get_ptr_mut(0)
        .ok_or(EndpointCounter::RefusedFlowTableFull)?;
    // SAFETY: this CPU's scratch element; nothing else on this CPU runs meanwhile.
    let nf = unsafe { &mut *nf };
    nf.plan = FlowPlan {
        now_ns: now,
        nlb_be: a.nlb_be,
        target_be: a.target_be,
        snat_port_be: 0,
        target_port_be: a.policy.target_port_be,
        provider_network: a.policy.provider_network,
        endpoint: from.endpoint,
        target_mac: a.target_mac,
        provider_mac: a.policy.provider_mac,
        consumer_mac: from.mac,
        consumer_iface_mac: from.iface_mac,
        first_state: from.state,
        _pad: 0,
        first_len: from.len,
        _pad2: [0; 4],
    };
    let (min, max) = (a.policy.snat_port_min, a.policy.snat_port_max);
    let orig = u16::from_be(key.sport_be);
    for i in 0..SNAT_PROBES {
        nf.plan.snat_port_be = snat_port(min, max, orig, a.hash, i).to_be();
        nf.pair.fill(key, &nf.plan);
        match PL_FLOWS.insert(&nf.pair.reply_key, &nf.pair.reply, u64::from(BPF_NOEXIST)) {
            Ok(()) => {}
            // That port is held for this (NLB, target, port, protocol): next probe.
            Err(e) if e == -EEXIST => continue,
            Err(_) => return Err(EndpointCounter::RefusedFlowTableFull),
        }
        // A health check holds the port: back off. The checker inserts its probe and then
        // looks for a flow, this inserts the reservation and then looks for a probe, so
        // one of the two always sees the other.
        if PL_PROBES.get_ptr(&nf.pair.reply_key).is_some() {
            let _ = PL_FLOWS.remove(&nf.pair.reply_key);
            continue;
        }
        return match PL_FLOWS.insert(key, &nf.pair.forward, u64::from(BPF_NOEXIST)) {
            Ok(()) => Ok(Created::New(&mut nf.pair.forward)),
            Err(e) => {
                let _ = PL_FLOWS.remove(&nf.pair.reply_key);
                if e != -EEXIST {
                    return Err(EndpointCounter::RefusedFlowTableFull);
                }
                // Another CPU created this flow between our lookup and insert: use theirs.
                PL_FLOWS
                    .get_ptr_mut(key)
                    .map(Created::Raced)
                    .ok_or(EndpointCounter::RefusedFlowTableFull)
            }
        };
    }
    Err(EndpointCounter::RefusedSnatExhausted)
}
