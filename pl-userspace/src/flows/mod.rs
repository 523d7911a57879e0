//! The flow table seen from userspace: the idle sweep that frees SNAT ports, the count of
//! live flows per endpoint, and the flows themselves; [`report`] is how `pl flows` shows
//! them.

use std::{
    collections::HashMap as StdHashMap,
    net::{Ipv4Addr, SocketAddrV4},
    os::fd::RawFd,
};

use aya::{
    Ebpf,
    maps::{HashMap, MapData, MapError},
};
use pl_common::{
    flow::{
        CT_SEEN, FLOW_FORWARD, FlowKey, FlowValue, Pair, TcpPhase, idle_limit_ns, same_flow,
        tcp_phase,
    },
    maps::FLOWS_MAP,
    proto::IPPROTO_TCP,
    settings::Settings,
};

/// `BPF_NOEXIST`: an update that only creates an entry.
mod report;

pub use report::{FlowReport, WatchEvent, proto_name, table, text};

const BPF_NOEXIST: u64 = 1;
/// `BPF_EXIST`: an update that only replaces an entry that is there.
const BPF_EXIST: u64 = 2;

/// CLOCK_MONOTONIC in ns: the clock `bpf_ktime_get_ns` reads.
pub fn now_ns() -> u64 {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .map(|t| t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64)
        .unwrap_or(0)
}

/// Every entry of the flow table, read in batches (empty if the map is missing).
fn entries(ebpf: &Ebpf) -> Vec<(FlowKey, FlowValue)> {
    ebpf.map(FLOWS_MAP).map(entries_of).unwrap_or_default()
}

/// Every entry of the flow map `m`, read in batches (empty, with a warning, on error).
fn entries_of(m: &aya::maps::Map) -> Vec<(FlowKey, FlowValue)> {
    let Some(data) = crate::batch::hash_data(m) else {
        return Vec::new();
    };
    crate::batch::entries(data).unwrap_or_else(|e| {
        tracing::warn!("reading the flow table in batches: {e}");
        Vec::new()
    })
}

/// What a sweep did: the flows it removed, and the live flows it left.
#[derive(Debug, Default)]
pub struct Sweep {
    pub closed: Vec<Flow>,
    pub live: Counts,
}

/// Sweeps the flow table pinned at `pin` (opened anew, so this can run on its own thread
/// while `pl run` goes on serving).
pub fn sweep_pinned(pin: &std::path::Path, s: &Settings) -> Result<Sweep, MapError> {
    let mut map = aya::maps::Map::HashMap(MapData::from_pin(pin)?);
    Ok(sweep(&mut map, s))
}

/// Removes both entries of every flow past its idle time (freeing its SNAT port), and
/// halves whose other half is gone; the flows it removed and the ones it left.
///
/// The snapshot may be a second old by the time an entry is judged dead, and XDP keeps
/// changing the table meanwhile. So every entry due is judged again, as [`Pair`] judges it
/// in the data path, on the value an atomic lookup-and-delete took out (put back if it
/// lives); a forward entry goes before its reply entry (its SNAT reservation), and a reply
/// entry goes only if it points back at the flow taken. A delete never takes a newer flow
/// on the same tuple.
pub fn sweep(m: &mut aya::maps::Map, s: &Settings) -> Sweep {
    sweep_with_clock(m, s, &now_ns)
}

/// As [`sweep`], with the time from `clock` (a test sweeps ahead of the data path's
/// clock, so that everything it finds is due while XDP goes on using it).
pub fn sweep_with_clock(m: &mut aya::maps::Map, s: &Settings, clock: &dyn Fn() -> u64) -> Sweep {
    let mut out = Sweep::default();
    let entries = entries_of(m);
    let Some((fd, mut map)) = open(m) else {
        return out;
    };
    let snapshot: StdHashMap<FlowKey, FlowValue> = entries.iter().copied().collect();
    let mut removed = 0;
    for (key, v) in &entries {
        let other_key = v.reply_key(key.proto);
        let other = snapshot.get(&other_key).filter(|o| same_flow(key, v, o));
        if v.dir != FLOW_FORWARD {
            // Replies go with their forward entry; one without goes once idle.
            if other.is_none() {
                removed += u64::from(remove_orphan_reply(&mut map, key, clock(), s));
            }
            continue;
        }
        if other.is_some_and(|o| judge(key, v, Some(o), clock(), s)) {
            out.live.add(v);
            continue;
        }
        // Dead in the snapshot. Alive as it is now (used since)? Then it stays, untouched.
        if let Ok(fresh) = map.get(key, 0) {
            let other = other_half(&map, key, &fresh);
            if judge(key, &fresh, other.as_ref(), clock(), s) {
                out.live.add(&fresh);
                continue;
            }
        }
        // Judged again on the entry as it is taken out, which may be a newer flow on the
        // same tuple by now, with another reply entry.
        match remove_pair(&mut map, fd, key, |f, r| !judge(key, f, r, clock(), s)) {
            Taken::Removed(flow) => {
                removed += 1 + u64::from(flow.reply.is_some());
                out.closed.push(flow);
            }
            Taken::Kept(fresh) => out.live.add(&fresh),
            Taken::Gone => {}
        }
    }
    out.live.entries = (entries.len() as u64).saturating_sub(removed);
    out
}

/// The flow map `m` typed, with its descriptor for [`crate::batch::take`].
fn open(m: &mut aya::maps::Map) -> Option<(RawFd, HashMap<&mut MapData, FlowKey, FlowValue>)> {
    let fd = crate::batch::hash_data(m).map(crate::batch::raw_fd)?;
    Some((fd, HashMap::try_from(m).ok()?))
}

/// The other half of the flow whose entry under `key` is `entry`, if it points back.
fn other_half(
    map: &HashMap<&mut MapData, FlowKey, FlowValue>,
    key: &FlowKey,
    entry: &FlowValue,
) -> Option<FlowValue> {
    map.get(&entry.reply_key(key.proto), 0)
        .ok()
        .filter(|o| same_flow(key, entry, o))
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
    map: &mut HashMap<&mut MapData, FlowKey, FlowValue>,
    fd: RawFd,
    key: &FlowKey,
    doomed: impl Fn(&FlowValue, Option<&FlowValue>) -> bool,
) -> Taken {
    let forward = match crate::batch::take::<FlowKey, FlowValue>(fd, key) {
        Ok(Some(f)) => f,
        Ok(None) => return Taken::Gone,
        Err(e) => {
            tracing::warn!("taking a flow entry out of the table: {e}");
            return Taken::Gone;
        }
    };
    let reply = other_half(map, key, &forward);
    if !doomed(&forward, reply.as_ref()) {
        match map.insert(key, forward, BPF_NOEXIST) {
            Ok(()) => return Taken::Kept(forward),
            // A newer flow took the tuple: this one is over, its reservation goes below.
            Err(MapError::SyscallError(e)) if e.io_error.raw_os_error() == Some(libc::EEXIST) => {}
            // No room (another CPU took the freed slot): the flow is lost either way; its
            // reply entry is left for the orphan pass rather than freed under a live peer.
            Err(e) => {
                tracing::warn!("putting a live flow back: {e}");
                return Taken::Gone;
            }
        }
    }
    if reply.is_some() {
        let _ = map.remove(&forward.reply_key(key.proto));
    }
    Taken::Removed(Flow {
        key: *key,
        forward,
        reply,
    })
}

/// Removes every flow that `refused` says the running config no longer allows (given its
/// consumer key and forward entry); the flows removed.
pub fn revoke(m: &mut aya::maps::Map, refused: impl Fn(&FlowKey, &FlowValue) -> bool) -> Vec<Flow> {
    let entries = entries_of(m);
    let Some((fd, mut map)) = open(m) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (key, _) in entries
        .iter()
        .filter(|(k, v)| v.dir == FLOW_FORWARD && refused(k, v))
    {
        // As it is taken out: a newer flow on the tuple is judged on its own. Gone while
        // the key is there again: the sweep had it out for a moment; take it again.
        for _ in 0..3 {
            match remove_pair(&mut map, fd, key, |f, _| refused(key, f)) {
                Taken::Removed(flow) => out.push(flow),
                Taken::Gone if map.get(key, 0).is_ok() => continue,
                Taken::Gone | Taken::Kept(_) => {}
            }
            break;
        }
    }
    out
}

/// Points every flow to a moved target at its new MAC (failover, VRRP): `moves` are
/// (provider network, target address on the wire, new MAC). One walk of the table for
/// all of them; the number of flows rewritten.
///
/// A syscall cannot change part of an entry: each is read afresh and written back whole,
/// only if it is the same flow (same creation time and reservation) and, just before the
/// write, still unchanged. What XDP writes to that entry in the remaining window (a
/// packet's counts, a new state bit) is lost; a lost FIN or RST leaves the flow to its
/// longer timeout.
pub fn follow_mac(m: &mut aya::maps::Map, moves: &[(u16, u32, [u8; 6])]) -> usize {
    let entries = entries_of(m);
    let Ok(mut map) = HashMap::<&mut MapData, FlowKey, FlowValue>::try_from(m) else {
        return 0;
    };
    let mut n = 0;
    for (key, v) in &entries {
        let Some((_, _, mac)) = moves
            .iter()
            .find(|(net, ip, _)| v.dir == FLOW_FORWARD && v.egress == *net && v.new_dst_be == *ip)
        else {
            continue;
        };
        let Ok(fresh) = map.get(key, 0) else {
            continue;
        };
        let same_flow = fresh.created_s == v.created_s && fresh.new_sport_be == v.new_sport_be;
        if !same_flow || fresh.dst_mac == *mac {
            continue;
        }
        let mut moved = fresh;
        moved.dst_mac = *mac;
        if map.get(key, 0).is_ok_and(|now| now == fresh) {
            n += usize::from(map.insert(key, moved, BPF_EXIST).is_ok());
        }
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
fn remove_orphan_reply(
    map: &mut HashMap<&mut MapData, FlowKey, FlowValue>,
    key: &FlowKey,
    now: u64,
    s: &Settings,
) -> bool {
    let Ok(fresh) = map.get(key, 0) else {
        return false;
    };
    let has_forward = other_half(map, key, &fresh).is_some();
    let idle = now.saturating_sub(fresh.last_seen_ns);
    !has_forward && idle > idle_limit_ns(key.proto, 0, fresh.state, s) && map.remove(key).is_ok()
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
            .entry((v.egress, v.new_src_be, v.new_dst_be))
            .or_default() += 1;
        self.snat_ports
            .entry((v.egress, v.new_src_be))
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
    for (_, v) in all {
        if v.dir == FLOW_FORWARD {
            out.add(&v);
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
    let entries: StdHashMap<FlowKey, FlowValue> = entries(ebpf).into_iter().collect();
    entries
        .iter()
        .filter(|(_, v)| v.dir == FLOW_FORWARD)
        .map(|(k, v)| Flow {
            key: *k,
            forward: *v,
            reply: entries.get(&v.reply_key(k.proto)).copied(),
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
