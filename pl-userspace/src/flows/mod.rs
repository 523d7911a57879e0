//! The flow table seen from userspace: the idle sweep that frees SNAT ports, the count of
//! live flows per endpoint, and the flows themselves; [`report`] is how `pl flows` shows
//! them; [`table`] is the mmapped table itself.

use std::{
    collections::HashMap as StdHashMap,
    net::{Ipv4Addr, SocketAddrV4},
    sync::Mutex,
};

use aya::{Ebpf, maps::MapError};
use pl_common::{
    flow::{
        CT_SEEN, FLOW_FORWARD, FlowKey, FlowValue, Pair, TcpPhase, idle_limit_ns, same_flow, since,
        tcp_phase,
    },
    flowtable,
    maps::FLOWS_MAP,
    proto::IPPROTO_TCP,
    settings::Settings,
};

mod report;
pub mod table;

pub use report::{FlowReport, WatchEvent, proto_name, table, text};
pub use table::{Entry, FlowTable};

/// CLOCK_MONOTONIC in ns: the clock `bpf_ktime_get_ns` reads.
pub fn now_ns() -> u64 {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .map(|t| t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64)
        .unwrap_or(0)
}

/// The loaded program's flow table, mapped (None, with a warning, if it cannot be).
pub fn open(ebpf: &Ebpf) -> Option<FlowTable> {
    let m = ebpf.map(FLOWS_MAP)?;
    FlowTable::map(m)
        .inspect_err(|e| tracing::warn!("mapping the flow table: {e}"))
        .ok()
}

/// Every entry of the flow table (empty if it cannot be mapped).
fn entries(ebpf: &Ebpf) -> Vec<Entry> {
    open(ebpf).map(|t| t.entries()).unwrap_or_default()
}

/// What a sweep did: the flows it removed, and the live flows it left.
#[derive(Debug, Default)]
pub struct Sweep {
    pub closed: Vec<Flow>,
    pub live: Counts,
    /// Tombstones turned back into empty slots.
    pub reclaimed: usize,
}

/// Sweeps the flow table pinned at `pin` (opened anew, so this can run on its own thread
/// while `pl run` goes on serving). `tombs`: the tombstones the last sweep saw, which this
/// one may empty (see [`FlowTable::reclaim_at`]).
pub fn sweep_pinned(
    pin: &std::path::Path,
    s: &Settings,
    tombs: &Mutex<StdHashMap<u32, u64>>,
) -> Result<Sweep, MapError> {
    let t = FlowTable::from_pin(pin)?;
    let mut marked = tombs.lock().map(|m| m.clone()).unwrap_or_default();
    let out = sweep_with_clock(&t, s, &now_ns, &mut marked);
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
/// judged as [`Pair`] judges it in the data path, with its other half read then too; one judged dead is judged again on the value taken out of its slot (put back if
/// it lives).
/// A forward entry goes before its reply entry (its SNAT reservation), and a reply entry
/// goes only if it points back at the flow taken. A take never takes a newer flow on the
/// same tuple.
///
/// `clock` gives the time (a test sweeps ahead of the data path's clock, so that
/// everything it finds is due while XDP goes on using it).
pub fn sweep_with_clock(
    t: &FlowTable,
    s: &Settings,
    clock: &dyn Fn() -> u64,
    tombs: &mut StdHashMap<u32, u64>,
) -> Sweep {
    let mut out = Sweep::default();
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
        let fresh = since(now, v.last_seen) <= s.min_idle_ns();
        if v.dir != FLOW_FORWARD {
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
            out.live.add(v);
            continue;
        }
        let other = other_half(t, key, v);
        if judge(key, v, other.as_ref(), now, s) {
            out.live.add(v);
            continue;
        }
        // Judged again on the entry as it is taken out, which may be a newer flow on the
        // same tuple by now, with another reply entry.
        match remove_pair(t, key, |f, r| !judge(key, f, r, clock(), s)) {
            Taken::Removed(flow) => {
                removed += 1 + u64::from(flow.reply.is_some());
                out.closed.push(flow);
            }
            Taken::Kept(fresh) => out.live.add(&fresh),
            Taken::Gone => {}
        }
    }
    *tombs = next_tombs;
    out.live.entries = held.saturating_sub(removed);
    out
}

/// The other half of the flow whose entry under `key` is `entry`, if it points back.
fn other_half(t: &FlowTable, key: &FlowKey, entry: &FlowValue) -> Option<FlowValue> {
    t.get(&entry.reply_key(key.proto))
        .map(|e| e.value)
        .filter(|o| same_flow(key, entry, o))
}

/// Removes the flow under `key` (its forward entry, then its reply entry if that points
/// back). True if there was one.
pub fn remove_flow(t: &FlowTable, key: &FlowKey) -> bool {
    matches!(remove_pair(t, key, |_, _| true), Taken::Removed(_))
}

/// What [`remove_pair`] did.
enum Taken {
    /// The flow is gone, both halves.
    Removed(Flow),
    /// The forward entry, as taken, was not doomed: it is back in the table.
    Kept(FlowValue),
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
fn remove_pair(
    t: &FlowTable,
    key: &FlowKey,
    doomed: impl Fn(&FlowValue, Option<&FlowValue>) -> bool,
) -> Taken {
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
        t.remove(&forward.reply_key(key.proto));
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
pub fn revoke(t: &FlowTable, refused: impl Fn(&FlowKey, &FlowValue) -> bool) -> Vec<Flow> {
    let mut out = Vec::new();
    for e in t
        .entries()
        .iter()
        .filter(|e| e.value.dir == FLOW_FORWARD && refused(&e.key, &e.value))
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
/// (provider network, target address on the wire, new MAC). One walk of the table for
/// all of them; the number of flows rewritten. The MAC is written in place, so what XDP
/// writes to the entry meanwhile (counts, state bits) stays.
pub fn follow_mac(t: &FlowTable, moves: &[(u16, u32, [u8; 6])]) -> usize {
    let mut n = 0;
    for e in t.entries() {
        let v = &e.value;
        let Some((_, _, mac)) = moves.iter().find(|(net, ip, _)| {
            v.dir == FLOW_FORWARD && u16::from(v.egress) == *net && v.new_dst_be == *ip
        }) else {
            continue;
        };
        n += usize::from(t.set_dst_mac(&e.key, &e, *mac));
    }
    n
}

/// Whether the flow with forward entry `forward` (under `key`) lives at `now`; a forward
/// entry without its reply entry does not.
fn judge(
    key: &FlowKey,
    forward: &FlowValue,
    reply: Option<&FlowValue>,
    now: u64,
    s: &Settings,
) -> bool {
    reply
        .and_then(|r| Pair::of(forward, r))
        .is_some_and(|p| p.alive(key.proto, now, s))
}

/// Removes the reply entry `key` if, read afresh, it has no forward entry and has been idle
/// past the longest time its own state allows (a reply entry is made a moment before its
/// forward entry, so a young one is left alone). True if it removed it.
fn remove_orphan_reply(t: &FlowTable, key: &FlowKey, now: u64, s: &Settings) -> bool {
    let Some(fresh) = t.get(key) else {
        return false;
    };
    let has_forward = other_half(t, key, &fresh.value).is_some();
    let idle = since(now, fresh.value.last_seen);
    !has_forward && idle > idle_limit_ns(key.proto, 0, fresh.value.state, s) && t.remove(key)
}

/// A target as one service reaches it: (provider network, the NLB address its flows come
/// from, its address), addresses as on the wire. A target several services share has one
/// key per service, since each service has its own NLB addresses.
pub type TargetKey = (u16, u32, u32);

/// Live flows by endpoint id and by target (provider network, wire-order address); the
/// table's entries and the SNAT ports held per NLB address.
#[derive(Debug, Default)]
pub struct Counts {
    pub by_endpoint: StdHashMap<u16, u64>,
    pub by_target: StdHashMap<TargetKey, u64>,
    /// Entries in the table (both halves of every flow, and reply entries left alone).
    pub entries: u64,
    /// Distinct SNAT ports live flows hold, by (provider network, wire-order NLB address).
    pub snat_ports: StdHashMap<(u16, u32), crate::ports::Ports>,
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
}

/// Counts live flows, without removing anything.
pub fn count(ebpf: &Ebpf) -> Counts {
    let all = entries(ebpf);
    let mut out = Counts {
        entries: all.len() as u64,
        ..Counts::default()
    };
    for e in all {
        if e.value.dir == FLOW_FORWARD {
            out.add(&e.value);
        }
    }
    out
}

/// A flow as the table holds it: the consumer tuple, its forward entry and (unless it was
/// lost) its reply entry.
#[derive(Clone, Copy, Debug)]
pub struct Flow {
    pub key: FlowKey,
    pub forward: FlowValue,
    pub reply: Option<FlowValue>,
    /// Seconds since boot, 24 bits (`pl_common::flow::age_s`).
    pub created: u32,
}

impl Flow {
    /// The state from both directions' bits.
    pub fn state(&self) -> &'static str {
        let (f, r) = (self.forward.state, self.reply.map_or(0, |r| r.state));
        if self.key.proto == IPPROTO_TCP {
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

    pub fn nlb(&self) -> SocketAddrV4 {
        addr(self.forward.new_src_be, self.forward.new_sport_be)
    }

    /// The provider-side destination: the target and its port.
    pub fn target(&self) -> SocketAddrV4 {
        addr(self.forward.new_dst_be, self.forward.new_dport_be)
    }
}

/// The socket address of a wire-order address and port.
pub fn addr(ip_be: u32, port_be: u16) -> SocketAddrV4 {
    SocketAddrV4::new(Ipv4Addr::from(ip_be.to_ne_bytes()), u16::from_be(port_be))
}

/// Every consumer flow in the table (orphan replies left out).
pub fn list(ebpf: &Ebpf) -> Vec<Flow> {
    let Some(t) = open(ebpf) else {
        return Vec::new();
    };
    // Each reply entry found where the data path finds it, not through a copy of the table.
    t.entries()
        .into_iter()
        .filter(|e| e.value.dir == FLOW_FORWARD)
        .map(|e| Flow {
            key: e.key,
            forward: e.value,
            reply: t.get(&e.value.reply_key(e.key.proto)).map(|r| r.value),
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
}
