//! Conntrack: find the packet's flow, or create one (SNAT port reservation first, then
//! the forward entry, rolled back if another CPU created the same flow meanwhile). The
//! table is `pl_common::flowtable` over `PL_FLOWS`: a lookup is one slot, one cache line,
//! most of the time.

use aya_ebpf::helpers::generated::bpf_ktime_get_coarse_ns;
use pl_common::{
    flow::{FLOW_FORWARD, FlowKey, FlowPair, FlowPlan, FlowValue, Pair, coarse, same_flow, since},
    flowtable::{self, Refused},
    settings::{SNAT_PROBES, snat_port},
    stats::EndpointCounter,
};

use crate::{
    endpoint::Admitted,
    maps::{Flows, PL_PROBES, PL_SCRATCH, PL_SETTINGS},
    table,
};

/// Refresh `last_seen` at most this often, so established traffic rarely writes.
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

/// The entry in the table under `key`, if any.
#[inline(always)]
fn entry(key: &FlowKey, hash: u32) -> Option<*mut FlowValue> {
    // SAFETY: a slot of the live map.
    table::find(key, hash).map(|s| unsafe { &raw mut (*s).entry })
}

/// The flow entry for `key` (whose flow hash is `hash`), refreshed. The fast path reads
/// only this entry: within a second of its own last packet a flow is alive under any
/// timeout, and nothing is written. Past that, and within the shortest idle timeout of any
/// state, it is still alive whatever the other half says: its stamp is refreshed. Past
/// that too, and for a consumer's SYN, the whole pair is judged with [`Pair`], as the sweep
/// judges it.
#[inline(always)]
pub fn lookup(key: &FlowKey, hash: u32, now: u64, syn: bool) -> Found {
    let Some(v) = entry(key, hash) else {
        return Found::Absent;
    };
    // SAFETY: a live slot's entry; concurrent writers only store whole fields. Read in
    // place: copies would not fit the BPF stack.
    let this = unsafe { &*v };
    let idle = since(now, this.last_seen);
    let reopen_check = syn && this.dir == FLOW_FORWARD;
    if idle <= REFRESH_NS && !reopen_check {
        return Found::Live(v);
    }
    let settings = PL_SETTINGS.get(0);
    if !reopen_check && settings.is_some_and(|s| idle <= s.min_idle_ns()) {
        // SAFETY: as above.
        unsafe { (*v).last_seen = coarse(now) };
        return Found::Live(v);
    }
    let other_key = this.reply_key(key.proto);
    let Some(other) = entry(&other_key, Flows::hash(&other_key)) else {
        return Found::Stale;
    };
    // SAFETY: as above.
    let other = unsafe { &*other };
    let Some(pair) = Pair::of(this, other).filter(|_| same_flow(key, this, other)) else {
        return Found::Stale;
    };
    let alive = settings.is_none_or(|s| pair.alive(key.proto, now, s));
    if !alive || (reopen_check && pair.reopened_by_syn(key.proto)) {
        return Found::Stale;
    }
    if idle > REFRESH_NS {
        // SAFETY: as above.
        unsafe { (*v).last_seen = coarse(now) };
    }
    Found::Live(v)
}

/// Removes the consumer flow `key` and its reply entry so the tuple can start afresh. The
/// forward entry goes first: a forward entry never outlives the reply entry that reserves
/// its SNAT port. The reply entry is removed only if it is this flow's, and only by
/// whoever removed the forward entry.
#[inline(always)]
pub fn remove_stale(key: &FlowKey, hash: u32) {
    let Some(s) = table::find(key, hash) else {
        return;
    };
    // SAFETY: read in place, before anything is removed.
    let v = unsafe { &(*s).entry };
    let reply_key = v.reply_key(key.proto);
    let reply_hash = Flows::hash(&reply_key);
    let reply = table::find(&reply_key, reply_hash)
        // SAFETY: as above.
        .filter(|r| same_flow(key, v, unsafe { &(**r).entry }));
    // Only the remover of the forward entry removes its reply: if the sweep took it
    // meanwhile, the reply is the sweep's to judge, and may by then be a newer flow's.
    if flowtable::remove(&Flows, s, hash)
        && let Some(r) = reply
    {
        flowtable::remove(&Flows, r, reply_hash);
    }
}

/// Where a new flow comes from: its endpoint, the consumer's MAC, and the state bits of
/// its first packet.
pub struct Origin {
    pub endpoint: u16,
    pub mac: [u8; 6],
    pub state: u8,
    /// The opening frame's length (counted in the new entry).
    pub len: u16,
}

/// A flow `create` made, or found made by another CPU in the meantime (counted there).
pub enum Created {
    New(*mut FlowValue),
    Raced(*mut FlowValue),
}

/// Creates both entries of a new flow (`hash`: the key's flow hash); the forward value to
/// translate with (in this CPU's scratch space, valid until the next packet on this CPU).
#[inline(always)]
pub fn create(
    key: &FlowKey,
    hash: u32,
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
        consumer_mac: from.mac,
        first_state: from.state,
        _pad: 0,
        first_len: from.len,
    };
    let created = FlowPair::created(&nf.plan);
    let (min, max) = (a.policy.snat_port_min, a.policy.snat_port_max);
    let orig = u16::from_be(key.sport_be);
    // No room near any probe's home is a full table, not exhausted ports.
    let mut full = false;
    for i in 0..SNAT_PROBES {
        nf.plan.snat_port_be = snat_port(min, max, orig, a.hash, i).to_be();
        nf.pair.fill(key, &nf.plan);
        let reply_hash = Flows::hash(&nf.pair.reply_key);
        let reply = match table::insert(&nf.pair.reply_key, reply_hash, created, &nf.pair.reply) {
            Ok(r) => r,
            // That port is held for this (NLB, target, port, protocol), or being taken:
            // next probe.
            Err(Refused::Exists(_) | Refused::Contended) => continue,
            Err(Refused::Full) => {
                full = true;
                continue;
            }
        };
        // A health check holds the port: back off. The checker inserts its probe and then
        // looks for a flow, this inserts the reservation and then looks for a probe, so
        // one of the two always sees the other.
        #[expect(
            clippy::needless_borrows_for_generic_args,
            reason = "by value the key would be copied again onto the 512-byte BPF stack"
        )]
        let probed = PL_PROBES.get_ptr(&nf.pair.reply_key).is_some();
        if probed {
            flowtable::remove(&Flows, reply, reply_hash);
            continue;
        }
        return match table::insert(key, hash, created, &nf.pair.forward) {
            Ok(_) => Ok(Created::New(&mut nf.pair.forward)),
            Err(e) => {
                flowtable::remove(&Flows, reply, reply_hash);
                match e {
                    // Another CPU created this flow between our lookup and insert: use
                    // theirs.
                    Refused::Exists(i) => table::at(i)
                        // SAFETY: a slot of the live map.
                        .map(|s| Created::Raced(unsafe { &raw mut (*s).entry }))
                        .ok_or(EndpointCounter::RefusedFlowTableFull),
                    // Another CPU is creating it right now: this packet goes; the next
                    // finds the flow.
                    Refused::Contended => Err(EndpointCounter::RefusedFlowTableFull),
                    Refused::Full => Err(EndpointCounter::RefusedFlowTableFull),
                }
            }
        };
    }
    Err(if full {
        EndpointCounter::RefusedFlowTableFull
    } else {
        EndpointCounter::RefusedSnatExhausted
    })
}
