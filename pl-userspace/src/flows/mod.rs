//! The flow tables seen from userspace (IPv4's `PL_FLOWS` and IPv6's `PL_FLOWS6`): the
//! idle sweep that frees SNAT ports, the count of live flows per endpoint, and the flows
//! themselves; [`report`] is how `pl flows` shows them; [`table`] is the mmapped table
//! itself, [`family`] what walking either table's slot type needs.

use std::{
    collections::HashMap as StdHashMap,
    net::{IpAddr, SocketAddr},
    path::Path,
    sync::Mutex,
};

use aya::{Ebpf, maps::MapError};
use pl_common::{
    flow::{
        CT_SEEN, FLOW_FORWARD, FlowValue, Half, Pair, TcpPhase, idle_limit_ns, since, tcp_phase,
    },
    flow6::{Addr6, FlowValue6, Slot6},
    flowtable::{self, Slot},
    maps::{DEFAULT_FLOW_ENTRIES, DEFAULT_FLOW6_ENTRIES, FLOWS_MAP, FLOWS6_MAP},
    proto::IPPROTO_TCP,
    settings::Settings,
};

pub mod family;
mod report;
pub mod table;

pub use family::{Family, addr, addr6};
pub use report::{FlowReport, WatchEvent, proto_name, table, text};
pub use table::{Entry, FlowTable, FlowTable6};

/// Most entries the IPv6 flow table gets: 131 072 flows, 64 MB of slots.
pub const MAX_FLOW6_ENTRIES: u32 = 262_144;

/// Entries of the IPv6 flow table for an IPv4 table of `flow_entries`: a quarter, at least
/// one flow's two, at most [`MAX_FLOW6_ENTRIES`]. Derived rather than configured, so the
/// config keeps one size (`[limits] flow_table_size`) and a restart that keeps the IPv4
/// table keeps the IPv6 one's size too. A quarter of the entries at twice the slot size is
/// half the IPv4 table's memory, while IPv6 consumers are the fewer; the cap keeps a
/// multi-million-flow IPv4 table from bringing hundreds of MB of IPv6 slots with it.
pub const fn flow6_entries(flow_entries: u32) -> u32 {
    let e = flow_entries / 4;
    if e < 2 {
        2
    } else if e > MAX_FLOW6_ENTRIES {
        MAX_FLOW6_ENTRIES
    } else {
        e
    }
}

const _: () = assert!(flow6_entries(DEFAULT_FLOW_ENTRIES) == DEFAULT_FLOW6_ENTRIES);

/// CLOCK_MONOTONIC in ns: the clock `bpf_ktime_get_ns` reads.
pub fn now_ns() -> u64 {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .map(|t| t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64)
        .unwrap_or(0)
}

/// The loaded program's IPv4 flow table, mapped (None, with a warning, if it cannot be).
pub fn open(ebpf: &Ebpf) -> Option<FlowTable> {
    open_named(ebpf, FLOWS_MAP)
}

/// The loaded program's IPv6 flow table, as [`open`].
pub fn open6(ebpf: &Ebpf) -> Option<FlowTable6> {
    open_named(ebpf, FLOWS6_MAP)
}

fn open_named<S: Family>(ebpf: &Ebpf, name: &str) -> Option<FlowTable<S>> {
    let m = ebpf.map(name)?;
    FlowTable::map(m)
        .inspect_err(|e| tracing::warn!("mapping the flow table {name}: {e}"))
        .ok()
}

/// What a sweep did: the flows it removed, and the live flows it left.
#[derive(Debug, Default)]
pub struct Sweep {
    pub closed: Vec<Flow>,
    pub closed6: Vec<Flow<Slot6>>,
    pub live: Counts,
    /// Tombstones turned back into empty slots.
    pub reclaimed: usize,
}

/// The tombstones the last sweep saw in each table, which the next may empty (see
/// [`FlowTable::reclaim_at`]).
#[derive(Debug, Default)]
pub struct Tombs {
    pub v4: StdHashMap<u32, u64>,
    pub v6: StdHashMap<u32, u64>,
}

/// Sweeps the flow tables pinned at `pin` (IPv4) and `pin6` (IPv6), opened anew so this
/// can run on its own thread while `pl run` goes on serving. `tombs`: the tombstones the
/// last sweep saw.
pub fn sweep_pinned(
    pin: &Path,
    pin6: &Path,
    s: &Settings,
    tombs: &Mutex<Tombs>,
) -> Result<Sweep, MapError> {
    let t = FlowTable::<Slot>::from_pin(pin)?;
    let t6 = FlowTable::<Slot6>::from_pin(pin6)?;
    let mut marked = tombs
        .lock()
        .map(|mut m| std::mem::take(&mut *m))
        .unwrap_or_default();
    let mut out = Sweep::default();
    sweep_into(&t, s, &now_ns, &mut marked.v4, &mut out);
    sweep_into(&t6, s, &now_ns, &mut marked.v6, &mut out);
    if let Ok(mut m) = tombs.lock() {
        *m = marked;
    }
    Ok(out)
}

/// The sweep checks the other half of fresh entries in one of this many slices of the
/// table, a different one every [`PAIR_CHECK_EVERY_NS`]: all of it in a minute.
const PAIR_CHECK_SLICES: u64 = 12;
const PAIR_CHECK_EVERY_NS: u64 = 5_000_000_000;

/// Removes both entries of every flow past its idle time (freeing its SNAT port), and
/// halves whose other half is gone; the flows it removed and the ones it left. One pass
/// over the slots, which also empties the tombstones `tombs` holds from the last pass
/// (see [`FlowTable::reclaim_at`]) and leaves there the ones it saw.
///
/// XDP keeps changing the table meanwhile. Each entry is read as the pass reaches it; one
/// seen within the shortest idle timeout is alive (as in the data path's fast path; a
/// slice of the forward ones is judged anyway, see [`PAIR_CHECK_SLICES`]), any other is
/// judged as [`Pair`] judges it in the data path, with its other half read then too; one
/// judged dead is judged again on the value taken out of its slot (put back if it lives).
/// A forward entry goes before its reply entry (its SNAT reservation), and a reply entry
/// goes only if it points back at the flow taken. A take never takes a newer flow on the
/// same tuple.
///
/// `clock` gives the time (a test sweeps ahead of the data path's clock, so that
/// everything it finds is due while XDP goes on using it).
pub fn sweep_with_clock<S: Family>(
    t: &FlowTable<S>,
    s: &Settings,
    clock: &dyn Fn() -> u64,
    tombs: &mut StdHashMap<u32, u64>,
) -> Sweep {
    let mut out = Sweep::default();
    sweep_into(t, s, clock, tombs, &mut out);
    out
}

/// [`sweep_with_clock`], adding to `out` (one sweep of both tables).
fn sweep_into<S: Family>(
    t: &FlowTable<S>,
    s: &Settings,
    clock: &dyn Fn() -> u64,
    tombs: &mut StdHashMap<u32, u64>,
    out: &mut Sweep,
) {
    let mut next_tombs = StdHashMap::new();
    let (mut held, mut removed) = (0u64, 0u64);
    for i in 0..t.capacity() {
        if t.reclaim_at(i, tombs, &mut next_tombs) {
            out.reclaimed += 1;
        }
        let Some(e) = t.entry_at(i) else {
            continue;
        };
        held += 1;
        let (key, v) = (&e.key, &e.value);
        // Seen within the shortest idle timeout of any state: alive whatever its other
        // half says, as the data path judges it, so the other half is not looked up (a
        // random miss per flow: at a million flows, every 5 s, that took a third of the
        // data path's rate on the CPU it shares with the sweep's). Except a slice of the
        // table each pass, so a forward entry that lost its reply entry (its SNAT port
        // then looks free) is found within a minute even while its traffic goes on.
        let now = clock();
        let fresh = since(now, v.last_seen()) <= s.min_idle_ns();
        if v.dir() != FLOW_FORWARD {
            // Replies go with their forward entry; one without goes once idle (a fresh
            // one cannot be idle yet).
            if !fresh && other_half(t, key, v).is_none() {
                removed += u64::from(remove_orphan_reply(t, key, now, s));
            }
            continue;
        }
        let checked =
            u64::from(i) % PAIR_CHECK_SLICES == (now / PAIR_CHECK_EVERY_NS) % PAIR_CHECK_SLICES;
        if fresh && !checked {
            S::count(&mut out.live, v);
            continue;
        }
        let other = other_half(t, key, v);
        if judge::<S>(key, v, other.as_ref(), now, s) {
            S::count(&mut out.live, v);
            continue;
        }
        // Judged again on the entry as it is taken out, which may be a newer flow on the
        // same tuple by now, with another reply entry.
        match remove_pair(t, key, |f, r| !judge::<S>(key, f, r, clock(), s)) {
            Taken::Removed(flow) => {
                removed += 1 + u64::from(flow.reply.is_some());
                S::closed(out).push(flow);
            }
            Taken::Kept(fresh) => S::count(&mut out.live, &fresh),
            Taken::Gone => {}
        }
    }
    *tombs = next_tombs;
    *S::entries(&mut out.live) += held.saturating_sub(removed);
}

/// The other half of the flow whose entry under `key` is `entry`, if it points back.
fn other_half<S: Family>(t: &FlowTable<S>, key: &S::Key, entry: &S::Entry) -> Option<S::Entry> {
    t.get(&S::reply_key(key, entry))
        .map(|e| e.value)
        .filter(|o| S::same_flow(key, entry, o))
}

/// Removes the flow under `key` (its forward entry, then its reply entry if that points
/// back). True if there was one.
pub fn remove_flow<S: Family>(t: &FlowTable<S>, key: &S::Key) -> bool {
    matches!(remove_pair(t, key, |_, _| true), Taken::Removed(_))
}

/// What [`remove_pair`] did.
enum Taken<S: Family> {
    /// The flow is gone, both halves.
    Removed(Flow<S>),
    /// The forward entry, as taken, was not doomed: it is back in the table.
    Kept(S::Entry),
    /// Nothing was under the key.
    Gone,
}

/// Removes the flow under `key` if `doomed` says so of its forward entry (and reply entry)
/// as the forward entry is taken out of the table: taken, not read then deleted, so the
/// verdict is on what is removed, never on a newer flow XDP put on the tuple meanwhile.
/// The forward entry goes first, then its reply entry (the SNAT reservation) if it points
/// back. An entry not doomed is put back (a packet in that moment finds no flow; a SYN
/// opens one); if a newer flow took the tuple even then, the taken flow's reservation goes
/// rather than stay orphaned.
fn remove_pair<S: Family>(
    t: &FlowTable<S>,
    key: &S::Key,
    doomed: impl Fn(&S::Entry, Option<&S::Entry>) -> bool,
) -> Taken<S> {
    let Some(taken) = t.take(key) else {
        return Taken::Gone;
    };
    let forward = taken.value;
    let reply = other_half(t, key, &forward);
    if !doomed(&forward, reply.as_ref()) {
        match t.insert(key, &forward, taken.created) {
            Ok(()) => return Taken::Kept(forward),
            // A newer flow took the tuple: this one is over, its reservation goes below.
            Err(flowtable::Refused::Exists(_)) => {}
            // No room, or racing another insert: the flow is lost either way; its reply
            // entry is left for the orphan pass rather than freed under a live peer.
            Err(e) => {
                tracing::warn!("putting a live flow back: {e:?}");
                return Taken::Gone;
            }
        }
    }
    if reply.is_some() {
        t.remove(&S::reply_key(key, &forward));
    }
    Taken::Removed(Flow {
        key: *key,
        forward,
        reply,
        created: taken.created,
    })
}

/// Removes every flow that `refused` says the running config no longer allows (given its
/// consumer key and forward entry); the flows removed.
pub fn revoke<S: Family>(
    t: &FlowTable<S>,
    refused: impl Fn(&S::Key, &S::Entry) -> bool,
) -> Vec<Flow<S>> {
    let mut out = Vec::new();
    for e in t
        .entries()
        .iter()
        .filter(|e| e.value.dir() == FLOW_FORWARD && refused(&e.key, &e.value))
    {
        let key = &e.key;
        // As it is taken out: a newer flow on the tuple is judged on its own. Gone while
        // the key is there again: the sweep had it out for a moment; take it again.
        for _ in 0..3 {
            match remove_pair(t, key, |f, _| refused(key, f)) {
                Taken::Removed(flow) => out.push(flow),
                Taken::Gone if t.get(key).is_some() => continue,
                Taken::Gone | Taken::Kept(_) => {}
            }
            break;
        }
    }
    out
}

/// Points every flow to a moved target at its new MAC (failover, VRRP): `moves` are
/// (provider network, target address, new MAC). One walk of the table for all of them;
/// the number of flows rewritten. The MAC is written in place, so what XDP writes to the
/// entry meanwhile (counts, state bits) stays.
pub fn follow_mac<S: Family>(t: &FlowTable<S>, moves: &[(u16, IpAddr, [u8; 6])]) -> usize {
    let mut n = 0;
    for e in t.entries() {
        let v = &e.value;
        if v.dir() != FLOW_FORWARD {
            continue;
        }
        let target = S::rewritten(v).1.ip();
        let Some((_, _, mac)) = moves
            .iter()
            .find(|(net, ip, _)| S::egress(v) == *net && target == *ip)
        else {
            continue;
        };
        n += usize::from(t.set_dst_mac(&e.key, &e, *mac));
    }
    n
}

/// Whether the flow with forward entry `forward` (under `key`) lives at `now`; a forward
/// entry without its reply entry does not.
fn judge<S: Family>(
    key: &S::Key,
    forward: &S::Entry,
    reply: Option<&S::Entry>,
    now: u64,
    s: &Settings,
) -> bool {
    reply
        .and_then(|r| Pair::of(forward, r))
        .is_some_and(|p| p.alive(S::proto(key), now, s))
}

/// Removes the reply entry `key` if, read afresh, it has no forward entry and has been idle
/// past the longest time its own state allows (a reply entry is made a moment before its
/// forward entry, so a young one is left alone). True if it removed it.
fn remove_orphan_reply<S: Family>(t: &FlowTable<S>, key: &S::Key, now: u64, s: &Settings) -> bool {
    let Some(fresh) = t.get(key) else {
        return false;
    };
    let has_forward = other_half(t, key, &fresh.value).is_some();
    let idle = since(now, fresh.value.last_seen());
    !has_forward && idle > idle_limit_ns(S::proto(key), 0, fresh.value.state(), s) && t.remove(key)
}

/// A target as one service reaches it: (provider network, the NLB address its flows come
/// from, its address), addresses as on the wire. A target several services share has one
/// key per service, since each service has its own NLB addresses.
pub type TargetKey = (u16, u32, u32);

/// An IPv6 target as one service reaches it, as [`TargetKey`].
pub type TargetKey6 = (u16, Addr6, Addr6);

/// Live flows by endpoint id (both families) and by target (provider network, wire-order
/// address); each table's entries and the SNAT ports held per NLB address.
#[derive(Debug, Default)]
pub struct Counts {
    pub by_endpoint: StdHashMap<u16, u64>,
    pub by_target: StdHashMap<TargetKey, u64>,
    /// Entries in the IPv4 table (both halves of every flow, and reply entries left alone).
    pub entries: u64,
    /// Distinct SNAT ports live flows hold, by (provider network, wire-order NLB address).
    pub snat_ports: StdHashMap<(u16, u32), crate::ports::Ports>,
    /// The same of the IPv6 table.
    pub by_target6: StdHashMap<TargetKey6, u64>,
    pub entries6: u64,
    pub snat_ports6: StdHashMap<(u16, Addr6), crate::ports::Ports>,
}

impl Counts {
    /// Counts the flow whose forward entry is `v`.
    fn add(&mut self, v: &FlowValue) {
        *self.by_endpoint.entry(v.endpoint).or_default() += 1;
        *self
            .by_target
            .entry((u16::from(v.egress), v.new_src_be, v.new_dst_be))
            .or_default() += 1;
        self.snat_ports
            .entry((u16::from(v.egress), v.new_src_be))
            .or_default()
            .insert(u16::from_be(v.new_sport_be));
    }

    /// Counts the IPv6 flow whose forward entry is `v`.
    fn add6(&mut self, v: &FlowValue6) {
        *self.by_endpoint.entry(v.endpoint).or_default() += 1;
        *self
            .by_target6
            .entry((u16::from(v.egress), v.new_src, v.new_dst))
            .or_default() += 1;
        self.snat_ports6
            .entry((u16::from(v.egress), v.new_src))
            .or_default()
            .insert(u16::from_be(v.new_sport_be));
    }

    /// Live flows in both tables.
    pub fn flows(&self) -> u64 {
        self.by_endpoint.values().sum()
    }

    /// Counts `t`'s entries and its flows.
    fn count_table<S: Family>(&mut self, t: &FlowTable<S>) {
        let all = t.entries();
        *S::entries(self) = all.len() as u64;
        for e in all.iter().filter(|e| e.value.dir() == FLOW_FORWARD) {
            S::count(self, &e.value);
        }
    }
}

/// Counts live flows of both tables, without removing anything.
pub fn count(ebpf: &Ebpf) -> Counts {
    let mut out = Counts::default();
    if let Some(t) = open(ebpf) {
        out.count_table(&t);
    }
    if let Some(t) = open6(ebpf) {
        out.count_table(&t);
    }
    out
}

/// A flow as the table holds it: the consumer tuple, its forward entry and (unless it was
/// lost) its reply entry.
#[derive(Clone, Copy, Debug)]
pub struct Flow<S: Family = Slot> {
    pub key: S::Key,
    pub forward: S::Entry,
    pub reply: Option<S::Entry>,
    /// Seconds since boot, 24 bits (`pl_common::flow::age_s`).
    pub created: u32,
}

/// An IPv6 flow.
pub type Flow6 = Flow<Slot6>;

impl<S: Family> Flow<S> {
    /// The state from both directions' bits.
    pub fn state(&self) -> &'static str {
        let (f, r) = (self.forward.state(), self.reply.map_or(0, |r| r.state()));
        if S::proto(&self.key) == IPPROTO_TCP {
            match tcp_phase(f, r) {
                TcpPhase::Closing => "closing",
                TcpPhase::HalfClosed => "half_closed",
                TcpPhase::Established => "established",
                TcpPhase::Opening if r & CT_SEEN != 0 => "syn_received",
                TcpPhase::Opening => "syn_sent",
            }
        } else if r & CT_SEEN != 0 {
            "replied"
        } else {
            "one_way"
        }
    }

    /// The consumer and the endpoint address it connected to.
    pub fn consumer_side(&self) -> (SocketAddr, SocketAddr) {
        S::ends(&self.key)
    }

    /// The provider-side source: the NLB address and SNAT port.
    pub fn nlb(&self) -> SocketAddr {
        S::rewritten(&self.forward).0
    }

    /// The provider-side destination: the target and its port.
    pub fn target(&self) -> SocketAddr {
        S::rewritten(&self.forward).1
    }
}

/// Every consumer flow in the IPv4 table (orphan replies left out).
pub fn list(ebpf: &Ebpf) -> Vec<Flow> {
    open(ebpf).map(|t| flows_of(&t)).unwrap_or_default()
}

/// Every consumer flow in the IPv6 table.
pub fn list6(ebpf: &Ebpf) -> Vec<Flow6> {
    open6(ebpf).map(|t| flows_of(&t)).unwrap_or_default()
}

/// Every consumer flow in `t`.
pub fn flows_of<S: Family>(t: &FlowTable<S>) -> Vec<Flow<S>> {
    // Each reply entry found where the data path finds it, not through a copy of the table.
    t.entries()
        .into_iter()
        .filter(|e| e.value.dir() == FLOW_FORWARD)
        .map(|e| Flow {
            key: e.key,
            forward: e.value,
            reply: t.get(&S::reply_key(&e.key, &e.value)).map(|r| r.value),
            created: e.created,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A forward entry from NLB address `nlb` and SNAT port `port` to `target`.
    fn forward(nlb: [u8; 4], port: u16, target: [u8; 4]) -> FlowValue {
        FlowValue {
            new_src_be: u32::from_ne_bytes(nlb),
            new_sport_be: port.to_be(),
            new_dst_be: u32::from_ne_bytes(target),
            egress: 2,
            endpoint: 1,
            ..FlowValue::default()
        }
    }

    #[test]
    fn counts_distinct_snat_ports_per_nlb_address() {
        let mut c = Counts::default();
        let (a, b) = ([10, 9, 0, 250], [10, 9, 0, 251]);
        // One port to two targets is one port in use; byte order as on the wire.
        c.add(&forward(a, 40000, [10, 9, 0, 11]));
        c.add(&forward(a, 40000, [10, 9, 0, 12]));
        c.add(&forward(a, 1024, [10, 9, 0, 11]));
        c.add(&forward(b, 65535, [10, 9, 0, 12]));
        let held = |nlb| {
            c.snat_ports
                .get(&(2, u32::from_ne_bytes(nlb)))
                .map(crate::ports::Ports::len)
        };
        assert_eq!((held(a), held(b)), (Some(2), Some(1)));
        assert_eq!(c.by_endpoint.get(&1), Some(&4));
    }

    use pl_common::{
        flow::{CT_NON_SYN, FlowKey, FlowPair, FlowPlan},
        flow6::{FlowKey6, FlowPair6, FlowPlan6},
        flowtable::{EMPTY, Slots as _, TOMB, ctl_of, state_of},
        proto::IPPROTO_UDP,
    };

    const S: u64 = 1_000_000_000;

    fn v6(last: u8) -> Addr6 {
        let mut a = [0u8; 16];
        a[0] = 0xfd;
        a[15] = last;
        a
    }

    /// An IPv6 UDP flow from consumer port `sport`, its last packet at `now_ns` (both
    /// ways: replied), put in `t` as the data path puts it, reply entry first.
    fn put6(t: &FlowTable6, sport: u16, now_ns: u64) -> FlowKey6 {
        let key = FlowKey6 {
            src: v6(0x10),
            dst: v6(0x64),
            sport_be: sport.to_be(),
            dport_be: 53u16.to_be(),
            network: 0,
            proto: IPPROTO_UDP,
            _pad: 0,
        };
        let plan = FlowPlan6 {
            now_ns,
            nlb: v6(0xfa),
            target: v6(0x0b),
            snat_port_be: sport.wrapping_add(1).to_be(),
            target_port_be: 53u16.to_be(),
            provider_network: 2,
            endpoint: 0,
            first_state: CT_SEEN | CT_NON_SYN,
            first_len: 100,
            ..FlowPlan6::default()
        };
        let mut pair = FlowPair6::new(&key, &plan);
        pair.reply.state = CT_SEEN | CT_NON_SYN;
        let created = FlowPair6::created(&plan);
        t.insert(&pair.reply_key, &pair.reply, created)
            .expect("reply entry");
        t.insert(&key, &pair.forward, created)
            .expect("forward entry");
        key
    }

    /// The same for IPv4.
    fn put4(t: &FlowTable, sport: u16, now_ns: u64) -> FlowKey {
        let key = FlowKey {
            src_be: u32::from_ne_bytes([10, 0, 0, 10]),
            dst_be: u32::from_ne_bytes([10, 0, 0, 100]),
            sport_be: sport.to_be(),
            dport_be: 53u16.to_be(),
            network: 0,
            proto: IPPROTO_UDP,
            _pad: 0,
        };
        let plan = FlowPlan {
            now_ns,
            nlb_be: u32::from_ne_bytes([10, 9, 0, 250]),
            target_be: u32::from_ne_bytes([10, 9, 0, 11]),
            snat_port_be: sport.wrapping_add(1).to_be(),
            target_port_be: 53u16.to_be(),
            provider_network: 2,
            endpoint: 0,
            first_state: CT_SEEN | CT_NON_SYN,
            first_len: 100,
            ..FlowPlan::default()
        };
        let mut pair = FlowPair::new(&key, &plan);
        pair.reply.state = CT_SEEN | CT_NON_SYN;
        let created = FlowPair::created(&plan);
        t.insert(&pair.reply_key, &pair.reply, created)
            .expect("reply entry");
        t.insert(&key, &pair.forward, created)
            .expect("forward entry");
        key
    }

    /// States of `t`'s slots that are not EMPTY.
    fn used<F: Family>(t: &FlowTable<F>) -> Vec<u8> {
        (0..t.capacity())
            .filter_map(|i| t.slot(i))
            .map(|s| state_of(ctl_of(s)))
            .filter(|&st| st != EMPTY)
            .collect()
    }

    #[test]
    fn an_idle_ipv6_flow_goes_both_halves_and_a_live_one_stays() {
        let t = FlowTable6::anonymous(256);
        let s = Settings::default();
        let idle = put6(&t, 40000, S);
        // Used 10 minutes later: past UDP's 120 s for the first, fresh for the second.
        let later = 600 * S;
        let live = put6(&t, 40002, later);
        let mut tombs = StdHashMap::new();
        let out = sweep_with_clock(&t, &s, &|| later + S, &mut tombs);
        assert!(out.closed.is_empty(), "no IPv4 flow");
        assert_eq!(out.closed6.len(), 1, "{out:?}");
        let gone = &out.closed6[0];
        assert_eq!((gone.key, gone.reply.is_some()), (idle, true));
        assert_eq!(gone.state(), "replied");
        assert_eq!(
            (gone.nlb().to_string(), gone.target().to_string()),
            ("[fd00::fa]:40001".to_owned(), "[fd00::b]:53".to_owned())
        );
        assert!(t.get(&idle).is_none());
        assert!(
            t.get(&gone.forward.reply_key(IPPROTO_UDP)).is_none(),
            "SNAT port freed"
        );
        let kept = t.get(&live).expect("the live flow stays");
        assert!(
            t.get(&kept.value.reply_key(IPPROTO_UDP)).is_some(),
            "with its reply"
        );
        // Counted in the IPv6 table's entries (the pass's count is approximate: an entry
        // removed before the pass reaches it was never counted).
        assert!(
            out.live.entries6 > 0 && out.live.entries == 0,
            "{:?}",
            out.live
        );
        assert_eq!(out.live.by_endpoint.get(&0), Some(&1));
        assert_eq!(
            out.live
                .snat_ports6
                .get(&(2, v6(0xfa)))
                .map(crate::ports::Ports::len),
            Some(1)
        );
        assert_eq!(t.held(), 2, "the table's own count");
    }

    #[test]
    fn an_ipv6_tombstone_is_emptied_by_a_later_sweep() {
        let t = FlowTable6::anonymous(256);
        let s = Settings::default();
        put6(&t, 40000, S);
        let mut tombs = StdHashMap::new();
        let late = 600 * S;
        let out = sweep_with_clock(&t, &s, &|| late, &mut tombs);
        assert_eq!((out.closed6.len(), out.reclaimed), (1, 0));
        assert_eq!(used(&t), [TOMB, TOMB]);
        // Each is seen (marked) by one pass and emptied by the next: the one the removal
        // passed already is emptied a pass later than the other.
        let second = sweep_with_clock(&t, &s, &|| late + S, &mut tombs).reclaimed;
        assert!(second < 2, "a tombstone is marked before it is emptied");
        let third = sweep_with_clock(&t, &s, &|| late + 2 * S, &mut tombs).reclaimed;
        assert_eq!(second + third, 2);
        assert!(used(&t).is_empty());
    }

    #[test]
    fn an_ipv6_reply_entry_without_its_forward_entry_goes_once_idle() {
        let t = FlowTable6::anonymous(256);
        let s = Settings::default();
        let key = put6(&t, 40000, S);
        let forward = t.take(&key).expect("forward entry").value;
        let out = sweep_with_clock(&t, &s, &|| 2 * S, &mut StdHashMap::new());
        assert_eq!(out.live.entries6, 1, "young: left alone");
        let out = sweep_with_clock(&t, &s, &|| 600 * S, &mut StdHashMap::new());
        assert_eq!(out.live.entries6, 0);
        assert!(t.get(&forward.reply_key(IPPROTO_UDP)).is_none());
    }

    #[test]
    fn the_ipv4_sweep_is_unchanged_by_the_ipv6_table() {
        let t = FlowTable::anonymous(256);
        let s = Settings::default();
        let idle = put4(&t, 40000, S);
        let later = 600 * S;
        let live = put4(&t, 40002, later);
        let out = sweep_with_clock(&t, &s, &|| later + S, &mut StdHashMap::new());
        assert!(out.closed6.is_empty());
        assert_eq!(out.closed.len(), 1);
        assert_eq!(out.closed[0].key, idle);
        assert!(t.get(&live).is_some() && t.get(&idle).is_none());
        assert!(
            out.live.entries > 0 && out.live.entries6 == 0,
            "{:?}",
            out.live
        );
        assert_eq!(t.held(), 2);
        assert_eq!(
            out.closed[0].nlb().to_string(),
            "10.9.0.250:40001",
            "{:?}",
            out.closed[0]
        );
    }

    #[test]
    fn an_ipv6_flow_is_reported_in_ipv6_notation_and_found_by_its_nlb_side() {
        let m = crate::model::testing::build(crate::model::testing::EXAMPLE)
            .unwrap_or_else(|e| panic!("{e}"));
        let t = FlowTable6::anonymous(256);
        put6(&t, 40000, S);
        let flows = flows_of(&t);
        let r = FlowReport::new(&m, &flows[0], 3 * S).expect("endpoint 0 exists");
        assert_eq!(
            (
                r.consumer.to_string(),
                r.endpoint_addr.to_string(),
                r.nlb.to_string(),
                r.target.to_string(),
                r.state.as_str()
            ),
            (
                "[fd00::10]:40000".to_owned(),
                "[fd00::64]:53".to_owned(),
                "[fd00::fa]:40001".to_owned(),
                "[fd00::b]:53".to_owned(),
                "replied"
            )
        );
        let json = serde_json::to_value(&r).expect("serializes");
        assert_eq!(json["nlb"], "[fd00::fa]:40001");
        assert_eq!(json["consumer"], "[fd00::10]:40000");
        let by = |nlb: &str| crate::control::FlowFilter {
            nlb: Some(nlb.parse().expect("addr")),
            ..crate::control::FlowFilter::default()
        };
        assert!(by("[fd00::fa]:40001").matches(&r));
        assert!(!by("[fd00::fa]:40002").matches(&r));
        assert!(!by("10.9.0.250:40001").matches(&r));
    }

    #[test]
    fn ipv6_flows_follow_a_moved_target_and_are_revoked_as_ipv4_ones() {
        let t = FlowTable6::anonymous(256);
        let (kept, doomed) = (put6(&t, 40000, S), put6(&t, 40002, S));
        let target = IpAddr::from(std::net::Ipv6Addr::from(v6(0x0b)));
        let mac = [2, 0, 0, 0, 9, 0x99];
        assert_eq!(
            follow_mac(&t, &[(2, target, mac)]),
            2,
            "both flows' forward entries"
        );
        assert_eq!(t.get(&kept).map(|e| e.value.dst_mac), Some(mac));
        assert_eq!(follow_mac(&t, &[(2, target, mac)]), 0, "already there");
        assert_eq!(
            follow_mac(&t, &[(1, target, [1; 6])]),
            0,
            "another network's target"
        );
        let gone = revoke(&t, |k, _| k.sport_be == 40002u16.to_be());
        assert_eq!(gone.iter().map(|f| f.key).collect::<Vec<_>>(), [doomed]);
        assert!(t.get(&doomed).is_none());
        assert!(
            t.get(&gone[0].forward.reply_key(IPPROTO_UDP)).is_none(),
            "its SNAT port freed"
        );
        assert!(t.get(&kept).is_some());
    }

    #[test]
    fn the_ipv6_table_is_a_quarter_of_the_ipv4_one() {
        assert_eq!(flow6_entries(131_072), 32_768);
        assert_eq!(flow6_entries(2_000), 500);
        assert_eq!(flow6_entries(2), 2, "room for one flow at least");
        assert_eq!(flow6_entries(16_000_000), MAX_FLOW6_ENTRIES, "capped");
    }
}
