//! Conntrack: find the packet's flow, or create one (SNAT port reservation first, then
//! the forward entry, rolled back if another CPU created the same flow meanwhile). The
//! table is `pl_common::flowtable` over `PL_FLOWS`: a lookup is one slot, one cache line,
//! most of the time.

use aya_ebpf::helpers::generated::bpf_ktime_get_coarse_ns;
use pl_common::{
    flow::{FLOW_FORWARD, FlowKey, FlowPair, FlowPlan, FlowValue, Half, Pair, coarse, since},
    flow6::{FlowKey6, FlowPair6, FlowPlan6, FlowValue6, NewFlow6, Slot6},
    flowtable::{self, Refused, Slot, Slots, TableSlot},
    settings::{SNAT_PROBES, snat_port},
    stats::EndpointCounter,
};

use crate::{
    endpoint::{Admitted, Admitted6},
    maps::{Flows, Flows6, PL_PROBES, PL_PROBES6, PL_SCRATCH, PL_SCRATCH6, PL_SETTINGS},
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

/// What conntrack needs of a flow table: IPv4's or IPv6's (the same algorithm, one key
/// and entry size each).
pub trait Family {
    type Key: Copy + PartialEq;
    type Value: Half;
    type Slot: TableSlot<Key = Self::Key, Entry = Self::Value>;
    type Table: Slots<Slot = Self::Slot>;
    const TABLE: Self::Table;
    fn hash(key: &Self::Key) -> u32;
    fn find(key: &Self::Key, hash: u32) -> Option<*mut Self::Slot>;
    fn reply_key(v: &Self::Value, proto: u8) -> Self::Key;
    fn proto(key: &Self::Key) -> u8;
    /// Stamps the entry at `v` as seen at coarse time `now`.
    fn refresh(v: *mut Self::Value, now: u32);
}

/// The IPv4 table.
pub struct V4;

impl Family for V4 {
    type Key = FlowKey;
    type Value = FlowValue;
    type Slot = Slot;
    type Table = Flows;
    const TABLE: Flows = Flows;
    #[inline(always)]
    fn hash(key: &FlowKey) -> u32 {
        Flows::hash(key)
    }
    #[inline(always)]
    fn find(key: &FlowKey, hash: u32) -> Option<*mut Slot> {
        table::find(key, hash)
    }
    #[inline(always)]
    fn reply_key(v: &FlowValue, proto: u8) -> FlowKey {
        v.reply_key(proto)
    }
    #[inline(always)]
    fn proto(key: &FlowKey) -> u8 {
        key.proto
    }
    #[inline(always)]
    fn refresh(v: *mut FlowValue, now: u32) {
        // SAFETY: a live slot's entry; the field is written whole.
        unsafe { (*v).last_seen = now };
    }
}

/// The IPv6 table.
pub struct V6;

impl Family for V6 {
    type Key = FlowKey6;
    type Value = FlowValue6;
    type Slot = Slot6;
    type Table = Flows6;
    const TABLE: Flows6 = Flows6;
    #[inline(always)]
    fn hash(key: &FlowKey6) -> u32 {
        Flows6::hash(key)
    }
    #[inline(always)]
    fn find(key: &FlowKey6, hash: u32) -> Option<*mut Slot6> {
        table::find6(key, hash)
    }
    #[inline(always)]
    fn reply_key(v: &FlowValue6, proto: u8) -> FlowKey6 {
        v.reply_key(proto)
    }
    #[inline(always)]
    fn proto(key: &FlowKey6) -> u8 {
        key.proto
    }
    #[inline(always)]
    fn refresh(v: *mut FlowValue6, now: u32) {
        // SAFETY: as for IPv4.
        unsafe { (*v).last_seen = now };
    }
}

/// What the table holds for a packet's key.
pub enum Found<V> {
    /// A live flow entry, refreshed.
    Live(*mut V),
    /// An entry that must go before the tuple can start afresh: its flow is past its idle
    /// time (judged from both directions), its other half is missing, or it is a closed TCP
    /// flow that the consumer's SYN reopens.
    Stale,
    Absent,
}

/// The entry in the table under `key`, if any.
#[inline(always)]
fn entry<F: Family>(key: &F::Key, hash: u32) -> Option<*mut F::Value> {
    F::find(key, hash).map(F::Slot::entry_ptr)
}

/// True if `entry`, found under `key`, and `other`, found under the key `entry` points
/// to, are two halves of one flow: `other` points back to `key`.
#[inline(always)]
fn same<F: Family>(key: &F::Key, entry: &F::Value, other: &F::Value) -> bool {
    other.dir() != entry.dir() && F::reply_key(other, F::proto(key)) == *key
}

/// The flow entry for `key` (whose flow hash is `hash`), refreshed. The fast path reads
/// only this entry: within a second of its own last packet a flow is alive under any
/// timeout, and nothing is written. Past that, and within the shortest idle timeout of any
/// state, it is still alive whatever the other half says: its stamp is refreshed. Past
/// that too, and for a consumer's SYN, the whole pair is judged with [`Pair`], as the sweep
/// judges it.
#[inline(always)]
pub fn lookup<F: Family>(key: &F::Key, hash: u32, now: u64, syn: bool) -> Found<F::Value> {
    let Some(v) = entry::<F>(key, hash) else {
        return Found::Absent;
    };
    // SAFETY: a live slot's entry; concurrent writers only store whole fields. Read in
    // place: copies would not fit the BPF stack.
    let this = unsafe { &*v };
    let idle = since(now, this.last_seen());
    let reopen_check = syn && this.dir() == FLOW_FORWARD;
    if idle <= REFRESH_NS && !reopen_check {
        return Found::Live(v);
    }
    let settings = PL_SETTINGS.get(0);
    if !reopen_check && settings.is_some_and(|s| idle <= s.min_idle_ns()) {
        F::refresh(v, coarse(now));
        return Found::Live(v);
    }
    let proto = F::proto(key);
    let other_key = F::reply_key(this, proto);
    let Some(other) = entry::<F>(&other_key, F::hash(&other_key)) else {
        return Found::Stale;
    };
    // SAFETY: as above.
    let other = unsafe { &*other };
    let Some(pair) = Pair::of(this, other).filter(|_| same::<F>(key, this, other)) else {
        return Found::Stale;
    };
    let alive = settings.is_none_or(|s| pair.alive(proto, now, s));
    if !alive || (reopen_check && pair.reopened_by_syn(proto)) {
        return Found::Stale;
    }
    if idle > REFRESH_NS {
        F::refresh(v, coarse(now));
    }
    Found::Live(v)
}

/// Removes the consumer flow `key` and its reply entry so the tuple can start afresh. The
/// forward entry goes first: a forward entry never outlives the reply entry that reserves
/// its SNAT port. The reply entry is removed only if it is this flow's, and only by
/// whoever removed the forward entry.
#[inline(always)]
pub fn remove_stale<F: Family>(key: &F::Key, hash: u32) {
    let Some(s) = F::find(key, hash) else {
        return;
    };
    // SAFETY: read in place, before anything is removed.
    let v = unsafe { &*F::Slot::entry_ptr(s) };
    let reply_key = F::reply_key(v, F::proto(key));
    let reply_hash = F::hash(&reply_key);
    let reply = F::find(&reply_key, reply_hash)
        // SAFETY: as above.
        .filter(|r| same::<F>(key, v, unsafe { &*F::Slot::entry_ptr(*r) }));
    // Only the remover of the forward entry removes its reply: if the sweep took it
    // meanwhile, the reply is the sweep's to judge, and may by then be a newer flow's.
    if flowtable::remove(&F::TABLE, s, hash)
        && let Some(r) = reply
    {
        flowtable::remove(&F::TABLE, r, reply_hash);
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
    /// When it arrived (ktime ns).
    pub now: u64,
}

/// A flow `create` made, or found made by another CPU in the meantime (counted there).
pub enum Created<V = FlowValue> {
    New(*mut V),
    Raced(*mut V),
}

/// Creates both entries of a new flow (`hash`: the key's flow hash); the forward value to
/// translate with (in this CPU's scratch space, valid until the next packet on this CPU).
#[inline(always)]
pub fn create(
    key: &FlowKey,
    hash: u32,
    a: &Admitted,
    from: &Origin,
) -> Result<Created, EndpointCounter> {
    let now = from.now;
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

/// [`create`] for an IPv6 flow, backing off a port an IPv6 health probe holds as IPv4's
/// does.
#[inline(always)]
pub fn create6(
    key: &FlowKey6,
    hash: u32,
    a: &Admitted6,
    from: &Origin,
) -> Result<Created<FlowValue6>, EndpointCounter> {
    let now = from.now;
    let nf = PL_SCRATCH6
        .get_ptr_mut(0)
        .ok_or(EndpointCounter::RefusedFlowTableFull)?;
    // SAFETY: this CPU's scratch element; nothing else on this CPU runs meanwhile.
    let nf = unsafe { &mut *nf };
    nf.plan = FlowPlan6 {
        now_ns: now,
        nlb: a.nlb,
        target: a.target_addr,
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
    let created = FlowPair6::created(&nf.plan);
    let (min, max) = (a.policy.snat_port_min, a.policy.snat_port_max);
    let orig = u16::from_be(key.sport_be);
    let mut full = false;
    for i in 0..SNAT_PROBES {
        let reply_hash = fill6(nf, key, snat_port(min, max, orig, a.hash, i).to_be());
        let reply = match table::insert6(&nf.pair.reply_key, reply_hash, created, &nf.pair.reply) {
            Ok(r) => r,
            Err(Refused::Exists(_) | Refused::Contended) => continue,
            Err(Refused::Full) => {
                full = true;
                continue;
            }
        };
        #[expect(
            clippy::needless_borrows_for_generic_args,
            reason = "by value the key would be copied again onto the 512-byte BPF stack"
        )]
        let probed = PL_PROBES6.get_ptr(&nf.pair.reply_key).is_some();
        if probed || held4(&nf.pair.reply_key) {
            flowtable::remove(&Flows6, reply, reply_hash);
            continue;
        }
        return match table::insert6(key, hash, created, &nf.pair.forward) {
            Ok(_) => Ok(Created::New(&mut nf.pair.forward)),
            Err(e) => {
                flowtable::remove(&Flows6, reply, reply_hash);
                match e {
                    Refused::Exists(i) => table::at6(i)
                        .map(|s| Created::Raced(Slot6::entry_ptr(s)))
                        .ok_or(EndpointCounter::RefusedFlowTableFull),
                    Refused::Contended | Refused::Full => {
                        Err(EndpointCounter::RefusedFlowTableFull)
                    }
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

/// Writes a new IPv6 flow's entries for SNAT port `port_be` into `nf`; the reply key's
/// hash. Out of line: inlined into the probe loop, the compiler keeps the address of every
/// field it writes on the stack, past the 512 bytes the path has.
#[inline(never)]
fn fill6(nf: &mut NewFlow6, key: &FlowKey6, port_be: u16) -> u32 {
    nf.plan.snat_port_be = port_be;
    nf.pair.fill(key, &nf.plan);
    Flows6::hash(&nf.pair.reply_key)
}

/// For a translated flow's reply key (mapped IPv4 addresses): whether the IPv4 table or
/// an IPv4 health probe holds the same (target, NLB address, ports), as a same-family
/// flow of the service may. Userspace gives the two families disjoint SNAT ranges; this
/// covers flows that outlive a reload that moved the split.
#[inline(never)]
fn held4(reply: &FlowKey6) -> bool {
    let Some(k) = reply.unmapped() else {
        return false;
    };
    #[expect(
        clippy::needless_borrows_for_generic_args,
        reason = "by value the key would be copied again onto the 512-byte BPF stack"
    )]
    let probed = PL_PROBES.get_ptr(&k).is_some();
    probed || table::find(&k, Flows::hash(&k)).is_some()
}
