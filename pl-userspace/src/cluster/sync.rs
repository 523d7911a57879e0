//! Flow sync: each node sends the flows of the zones it serves to the other nodes that may
//! serve those zones (their primary and backups), and writes what it receives into its own
//! table, so an established connection goes on after a takeover.
//!
//! The sender scans its table every `sync_interval_ms` and sends what is new, what changed
//! state, what carried traffic since the last refresh (so the copies do not idle out), and
//! what ended. A takeover loses what the dead node had not sent yet: flows opened, and
//! state bits set, within the last interval. Both families' tables are synced alike, each
//! scanned on its own ([`Side`]), generic over the slot type.

use std::{
    collections::BTreeMap,
    net::{IpAddr, SocketAddr, SocketAddrV4},
    time::{Duration, Instant},
};

use pl_common::{
    flow::{FLOW_FORWARD, Half as _, since},
    flow6::Slot6,
    flowtable::Slot,
};

use super::accept::{Applied, apply, zone_of};
use super::secret::{self, Fresh, Replay, Secret};
use super::wire::{
    self, Header, KIND_HELLO, MAGIC, OP_REMOVE, OP_UPSERT, Record, Records, VERSION, Wire,
};
use crate::{
    flows::{Family, FlowTable, FlowTable6},
    model::Model,
};

/// Why flow sync could not start.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("flow sync: cannot listen on {addr} (interface {interface})")]
    Bind {
        addr: SocketAddrV4,
        interface: String,
        #[source]
        source: std::io::Error,
    },
}

/// What this node knows of another.
#[derive(Clone, Debug)]
pub struct Peer {
    pub index: u8,
    pub name: String,
    pub addr: SocketAddrV4,
    /// The peer's run, from its last datagram; None until heard.
    pub boot: Option<u64>,
    pub heard: Option<Instant>,
    /// Zones it said it serves.
    pub serving: u32,
    /// Its config numbers ids differently: its flows are refused.
    pub mismatched: bool,
    /// Its datagrams taken so far.
    replay: Replay,
}

/// A flow as last sent: what would make it worth sending again.
struct Sent<S: Family> {
    zone: u8,
    key: S::Key,
    /// The forward entry's endpoint, which a removal names (the receiver finds the
    /// flow's zone from it).
    endpoint: u16,
    reply_key: S::Key,
    states: (u8, u8),
    at: Instant,
}

/// What one family's table has been sent.
struct Side<S: Family> {
    /// By the slot of the flow's forward entry (entries never move): a round looks only
    /// at its slice's, so its cost does not grow with the table.
    sent: BTreeMap<u32, Sent<S>>,
    /// Removals a send failed for, sent again next round.
    unsent_removals: Vec<Pending<S>>,
    /// The first slot of the next round's slice.
    cursor: u32,
}

impl<S: Family> Default for Side<S> {
    fn default() -> Self {
        Self {
            sent: BTreeMap::new(),
            unsent_removals: Vec::new(),
            cursor: 0,
        }
    }
}

/// The flow tables sync reads and writes, each if mapped.
#[derive(Clone, Copy, Default)]
pub struct Tables<'a> {
    pub v4: Option<&'a FlowTable>,
    pub v6: Option<&'a FlowTable6>,
}

/// A family sync handles: its wire format and its side of [`Sync`].
trait Synced: Wire {
    fn side(s: &mut Sync) -> &mut Side<Self>;
}

impl Synced for Slot {
    fn side(s: &mut Sync) -> &mut Side<Self> {
        &mut s.v4
    }
}

impl Synced for Slot6 {
    fn side(s: &mut Sync) -> &mut Side<Self> {
        &mut s.v6
    }
}

/// Counts for `pl status` and metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SyncCounts {
    pub flows_sent: u64,
    pub datagrams_sent: u64,
    pub send_errors: u64,
    pub flows_received: u64,
    pub flows_written: u64,
    /// Records refused: unknown sender, mismatched config, or not a flow this config
    /// could have opened.
    pub refused: u64,
    /// A received flow whose SNAT reservation another flow here holds.
    pub conflicts: u64,
    /// Datagrams from a node's address whose tag is not under the key, for another node,
    /// not sent within 30 s of this node's clock, or seen before.
    #[serde(default)]
    pub unauthenticated: u64,
}

/// Flows a round sends at most, of each family: bounds what a round costs the run loop
/// (which also renews the lease) under a flood of new flows; past it sync lags, 250k
/// flows/s at the default interval.
pub const MAX_RECORDS_PER_ROUND: usize = 50_000;

/// Slots a round scans (64 MiB): a table of up to 500k flows is covered every round.
const SLOTS_PER_ROUND: u32 = 1 << 20;

/// State bits no flow has: a record whose send failed is due again.
const UNSENT: (u8, u8) = (u8::MAX, u8::MAX);

/// The wall clock in ns since the epoch: a run's number, and (in ms) each datagram's send
/// time (see `secret::fresh`).
fn wall_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

fn wall_ms() -> u64 {
    wall_ns() / 1_000_000
}

/// Bytes of send and receive buffer on the sync socket.
const SOCKET_BUFFER: usize = 16 << 20;

pub struct Sync {
    sock: tokio::net::UdpSocket,
    me: u8,
    key: Secret,
    boot: u64,
    /// The next datagram's number.
    seq: std::cell::Cell<u64>,
    fingerprint: u32,
    pub peers: Vec<Peer>,
    v4: Side<Slot>,
    v6: Side<Slot6>,
    refresh: Duration,
    pub counts: SyncCounts,
}

impl Sync {
    /// Listens on node `me`'s management address, on the management interface only;
    /// datagrams are tagged and checked under `key`.
    pub fn bind(model: &Model, me: u8, key: Secret) -> Result<Self, SyncError> {
        let c = model.cluster.as_ref().expect("a cluster model");
        let node = &c.nodes[usize::from(me)];
        let addr = SocketAddrV4::new(node.address, c.sync_port);
        let bind = || -> std::io::Result<tokio::net::UdpSocket> {
            use nix::sys::socket::{setsockopt, sockopt};
            let sock = std::net::UdpSocket::bind(addr)?;
            setsockopt(
                &sock,
                sockopt::BindToDevice,
                &std::ffi::OsString::from(&c.interface),
            )?;
            // A round's burst (up to ~4,600 datagrams) must fit: a full buffer fails the
            // rest of the round's sends, and a full receive buffer drops them.
            setsockopt(&sock, sockopt::SndBufForce, &SOCKET_BUFFER)
                .or_else(|_| setsockopt(&sock, sockopt::SndBuf, &SOCKET_BUFFER))?;
            setsockopt(&sock, sockopt::RcvBufForce, &SOCKET_BUFFER)
                .or_else(|_| setsockopt(&sock, sockopt::RcvBuf, &SOCKET_BUFFER))?;
            sock.set_nonblocking(true)?;
            tokio::net::UdpSocket::from_std(sock)
        };
        let sock = bind().map_err(|source| SyncError::Bind {
            addr,
            interface: c.interface.clone(),
            source,
        })?;
        let peers = c
            .nodes
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != usize::from(me))
            .map(|(i, n)| Peer {
                index: i as u8,
                name: n.name.clone(),
                addr: SocketAddrV4::new(n.address, c.sync_port),
                boot: None,
                heard: None,
                serving: 0,
                mismatched: false,
                replay: Replay::default(),
            })
            .collect();
        let shortest = model.settings.min_idle_ns();
        Ok(Self {
            sock,
            me,
            key,
            // A later run, a larger number: the wall clock's ns (see `Replay::accept`).
            boot: wall_ns().max(1),
            seq: std::cell::Cell::new(1),
            fingerprint: fingerprint(model),
            peers,
            v4: Side::default(),
            v6: Side::default(),
            refresh: Duration::from_nanos(shortest / 3)
                .clamp(Duration::from_secs(1), Duration::from_secs(10)),
            counts: SyncCounts::default(),
        })
    }

    /// Numbers as `model` does (the running model: a restart's ids may differ from the
    /// file's order).
    pub fn set_fingerprint(&mut self, model: &Model) {
        self.fingerprint = fingerprint(model);
    }

    /// The next datagram.
    pub async fn recv(&self, buf: &mut [u8]) -> std::io::Result<(usize, SocketAddr)> {
        self.sock.recv_from(buf).await
    }

    /// A header to peer `to`, of wire version `version`.
    fn header(&self, version: u16, kind: u8, serving: u32, to: u8) -> Header {
        let seq = self.seq.get();
        self.seq.set(seq + 1);
        Header {
            to,
            sent_ms: wall_ms(),
            seq,
            magic: MAGIC,
            version,
            node: self.me,
            kind,
            fingerprint: self.fingerprint,
            serving,
            boot: self.boot,
            ..Header::default()
        }
    }

    /// One round: scans both tables for what the peers must hear and sends it. Returns
    /// the flows sent.
    pub fn round(&mut self, tables: Tables<'_>, model: &Model, now_ns: u64) -> usize {
        tables.v4.map_or(0, |t| self.round_of(t, model, now_ns))
            + tables.v6.map_or(0, |t| self.round_of(t, model, now_ns))
    }

    /// A round of one family's table.
    fn round_of<S: Synced>(&mut self, table: &FlowTable<S>, model: &Model, now_ns: u64) -> usize
    where
        Record<S>: bytemuck::Pod,
    {
        let Some(c) = model.cluster.as_ref() else {
            return 0;
        };
        let refresh = self.refresh;
        let side = S::side(self);
        let mut records = std::mem::take(&mut side.unsent_removals);
        records.extend(side.scan(table, model, now_ns, refresh));
        let serving = model.serving.unwrap_or(0);
        let mut failed: Vec<Pending<S>> = Vec::new();
        for p in &self.peers {
            let mine: Vec<Pending<S>> = records
                .iter()
                .filter(|r| c.candidates(r.zone).any(|(i, _)| i == usize::from(p.index)))
                .copied()
                .collect();
            for chunk in mine.chunks(S::PER_DATAGRAM) {
                let flows: Vec<Record<S>> = chunk.iter().map(|r| r.record).collect();
                let h = self.header(S::VERSION, S::KIND, serving, p.index);
                let d = wire::encode(h, &flows, &self.key);
                if self.sock.try_send_to(&d, SocketAddr::V4(p.addr)).is_ok() {
                    self.counts.datagrams_sent += 1;
                    self.counts.flows_sent += chunk.len() as u64;
                } else {
                    self.counts.send_errors += 1;
                    failed.extend_from_slice(chunk);
                }
            }
        }
        // Sent again next round: an update by marking it changed (still known, so its end
        // is sent if it ends first), a removal as is.
        let side = S::side(self);
        for r in failed {
            if r.record.op == OP_REMOVE {
                side.unsent_removals.push(r);
            } else if let Some(s) = side.sent.get_mut(&r.slot) {
                s.states = UNSENT;
            }
        }
        records.len()
    }

    /// Tells every peer now which zones this node serves (at once when that changes, so a
    /// node waiting for a zone this one let go need not wait for its lease).
    /// `pl run` says hello on every lease renewal, right after it: a peer that heard a
    /// hello at `t` knows this node's lease ends before `t` + lease + one renewal period
    /// (one lost hello allowed for: see `Member::servable`).
    pub fn hello(&self, serving: u32) {
        for p in &self.peers {
            let h = self.header(VERSION, KIND_HELLO, serving, p.index);
            let d = wire::encode::<Record>(h, &[], &self.key);
            let _ = self.sock.try_send_to(&d, SocketAddr::V4(p.addr));
        }
    }

    /// Takes in a datagram from `from`: hello or flows. Returns the name of a peer heard
    /// for the first time (or again after a restart).
    pub fn receive(
        &mut self,
        from: SocketAddr,
        buf: &[u8],
        tables: Tables<'_>,
        model: &Model,
        now_ns: u64,
        target_mac: &dyn Fn(IpAddr) -> Option<[u8; 6]>,
    ) -> Result<Option<String>, String> {
        let SocketAddr::V4(from) = from else {
            return Err(format!("flow sync from {from}: not a node"));
        };
        let Some(pi) = self.peers.iter().position(|p| p.addr == from) else {
            self.counts.refused += 1;
            return Err(format!(
                "flow sync from {from}: not a node's address and port"
            ));
        };
        let (h, records) = wire::decode(buf, &self.key).map_err(|e| {
            if e == wire::WireError::Tag {
                self.counts.unauthenticated += 1;
            } else {
                self.counts.refused += 1;
            }
            format!("flow sync from {}: {e}", self.peers[pi].name)
        })?;
        let p = &mut self.peers[pi];
        if h.node != p.index {
            self.counts.refused += 1;
            return Err(format!(
                "flow sync from {}: says it is node #{}",
                p.name, h.node
            ));
        }
        // Tagged, but for another node (replayed to this one), or old.
        if h.to != self.me {
            self.counts.unauthenticated += 1;
            return Err(format!(
                "flow sync from {}: a datagram for node #{} (replayed?)",
                p.name, h.to
            ));
        }
        let now_ms = wall_ms();
        if !secret::fresh(h.sent_ms, now_ms) {
            self.counts.unauthenticated += 1;
            return Err(format!(
                "flow sync from {}: sent {} s from this node's clock (replayed, or the clocks disagree by more than {} s: run NTP)",
                p.name,
                (i128::from(now_ms) - i128::from(h.sent_ms)) / 1000,
                secret::FRESH_MS / 1000
            ));
        }
        // Past a takeover without a word, an earlier run number is a restart too.
        let takeover =
            Duration::from_secs(model.cluster.as_ref().map_or(3, |c| c.takeover_s).into());
        let silent = p.heard.is_none_or(|t| t.elapsed() > takeover);
        let fresh = p.replay.accept(h.boot, h.seq, silent);
        if fresh == Fresh::Replayed {
            self.counts.unauthenticated += 1;
            return Err(format!(
                "flow sync from {}: a datagram seen before, or of an earlier run (replayed?)",
                p.name
            ));
        }
        p.heard = Some(Instant::now());
        p.serving = h.serving;
        let news = (fresh == Fresh::NewRun).then(|| p.name.clone());
        p.boot = Some(h.boot);
        if news.is_some() {
            // A new run of the peer has nothing: it hears every flow again.
            self.v4.sent.clear();
            self.v6.sent.clear();
        }
        let mismatched = h.fingerprint != self.fingerprint;
        let newly = mismatched && !p.mismatched;
        p.mismatched = mismatched;
        if mismatched {
            self.counts.refused += records.len() as u64;
            return if newly {
                Err(format!(
                    "flow sync from {}: its config numbers networks, services or endpoints differently; its flows are refused until both run the same config",
                    p.name
                ))
            } else {
                Ok(news)
            };
        }
        let sender = usize::from(h.node);
        match (&records, tables.v4, tables.v6) {
            (Records::V4(r), Some(t), _) => self.apply_all(t, model, sender, r, now_ns, target_mac),
            (Records::V6(r), _, Some(t)) => self.apply_all(t, model, sender, r, now_ns, target_mac),
            _ => {}
        }
        Ok(news)
    }

    /// Writes `records` from node `sender` into `t`, counting what became of each.
    fn apply_all<S: Family>(
        &mut self,
        t: &FlowTable<S>,
        model: &Model,
        sender: usize,
        records: &[Record<S>],
        now_ns: u64,
        target_mac: &dyn Fn(IpAddr) -> Option<[u8; 6]>,
    ) {
        for r in records {
            self.counts.flows_received += 1;
            match apply(t, model, sender, r, now_ns, target_mac) {
                Applied::Written => self.counts.flows_written += 1,
                Applied::Refused => self.counts.refused += 1,
                Applied::Conflict => self.counts.conflicts += 1,
                Applied::Nothing => {}
            }
        }
    }

    /// Forgets what was sent, so the next round sends every flow (after a takeover: the
    /// other candidates hear the zone's flows from their new owner).
    pub fn resend_all(&mut self) {
        self.v4.sent.clear();
        self.v6.sent.clear();
    }
}

impl<S: Family> Side<S> {
    /// The flow sent from slot `i` ended: forgotten, and its removal if its zone is still
    /// served here (a zone let go is another node's now).
    fn ended(&mut self, i: u32, model: &Model) -> Option<Pending<S>> {
        let s = self.sent.remove(&i)?;
        model.serves(s.zone).then(|| Pending::removal(&s))
    }

    /// What changed since the last round in the round's slice of the table.
    fn scan(
        &mut self,
        table: &FlowTable<S>,
        model: &Model,
        now_ns: u64,
        refresh: Duration,
    ) -> Vec<Pending<S>> {
        let now = Instant::now();
        let mut out = Vec::new();
        // A slice a round (64 MiB of slots at most), so a round's cost does not grow with
        // the table: a table of N slots is covered in N / SLOTS_PER_ROUND rounds.
        let (start, end) = (
            self.cursor,
            self.cursor
                .saturating_add(SLOTS_PER_ROUND)
                .min(table.capacity()),
        );
        self.cursor = if end >= table.capacity() { 0 } else { end };
        let forward_at = |i: u32| table.entry_at(i).filter(|e| e.value.dir() == FLOW_FORWARD);
        // Sent from this slice and no longer in its slot: ended here. A zone this node
        // stopped serving is another's now; its flows are forgotten, not removed.
        let ended: Vec<u32> = self
            .sent
            .range(start..end)
            .filter(|(i, s)| forward_at(**i).is_none_or(|e| e.key != s.key))
            .map(|(i, _)| *i)
            .collect();
        out.extend(ended.into_iter().filter_map(|i| self.ended(i, model)));
        for i in start..end {
            let Some(e) = forward_at(i) else {
                continue;
            };
            // The flow sent from this slot ended and another took the slot since the
            // check above: its end goes out before the newcomer is looked at.
            if self.sent.get(&i).is_some_and(|s| s.key != e.key)
                && let Some(r) = self.ended(i, model)
            {
                out.push(r);
            }
            let Some(zone) = zone_of::<S>(model, &e.key, &e.value) else {
                continue;
            };
            if !model.serves(zone) {
                self.sent.remove(&i);
                continue;
            }
            let reply_key = S::reply_key(&e.key, &e.value);
            let Some(r) = table.get(&reply_key) else {
                continue;
            };
            let idle = |v: &S::Entry| (since(now_ns, v.last_seen()) / 1_000_000) as u32;
            let states = (e.value.state(), r.value.state());
            let due = match self.sent.get(&i) {
                None => true,
                // Another flow on the tuple (a reopened one takes a new SNAT port).
                Some(s) if s.reply_key != reply_key || s.states != states => true,
                Some(s) => {
                    let gone = now.duration_since(s.at);
                    gone >= refresh
                        && u128::from(idle(&e.value).min(idle(&r.value))) < gone.as_millis()
                }
            };
            // Past the round's budget, the rest waits for a later round.
            if !due || out.len() >= MAX_RECORDS_PER_ROUND {
                continue;
            }
            out.push(Pending {
                zone,
                slot: i,
                record: Record {
                    forward_key: e.key,
                    forward: e.value,
                    reply_key,
                    reply: r.value,
                    forward_idle_ms: idle(&e.value),
                    reply_idle_ms: idle(&r.value),
                    age_s: pl_common::flow::age_s(now_ns, e.created),
                    op: OP_UPSERT,
                    _pad: [0; 3],
                },
            });
            self.sent.insert(
                i,
                Sent {
                    zone,
                    key: e.key,
                    endpoint: S::endpoint(&e.value),
                    reply_key,
                    states,
                    at: now,
                },
            );
        }
        out
    }
}

/// A record on its way, with the flow's zone (which peers hear it) and the slot of its
/// forward entry (what to forget if it cannot be sent).
#[derive(Clone, Copy)]
struct Pending<S: Family> {
    zone: u8,
    slot: u32,
    record: Record<S>,
}

impl<S: Family> Pending<S> {
    /// The removal of a flow as last sent: the forward key and endpoint (the receiver
    /// finds the zone from them) and the reply key (so it removes only that flow).
    fn removal(s: &Sent<S>) -> Self {
        Self {
            zone: s.zone,
            slot: u32::MAX,
            record: Record {
                forward_key: s.key,
                forward: S::forward_of(s.endpoint),
                reply_key: s.reply_key,
                reply: S::Entry::default(),
                forward_idle_ms: 0,
                reply_idle_ms: 0,
                age_s: 0,
                op: OP_REMOVE,
                _pad: [0; 3],
            },
        }
    }
}

/// FNV-1a over the names behind every id a flow carries: networks, services, endpoints,
/// zones, in id order.
pub fn fingerprint(model: &Model) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    let mut eat = |s: &str| {
        for b in s.bytes().chain([0]) {
            h = (h ^ u32::from(b)).wrapping_mul(0x0100_0193);
        }
    };
    model.networks.iter().for_each(|n| eat(&n.name));
    eat("/");
    model.services.iter().for_each(|s| eat(&s.name));
    eat("/");
    model.endpoints.iter().for_each(|e| eat(&e.name));
    eat("/");
    model.zones.iter().for_each(|z| eat(z));
    h
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::accept::tests::{NODES, record, record6};
    use crate::flows;
    use crate::model::testing::{EXAMPLE, EXAMPLE6, build};
    use std::net::Ipv4Addr;

    /// Node fw-a's sync, sending to a local socket that stands for fw-b.
    fn sync_for(m: &Model) -> (Sync, std::net::UdpSocket) {
        let fw_b = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        fw_b.set_read_timeout(Some(Duration::from_millis(200)))
            .expect("timeout");
        let own = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        own.set_nonblocking(true).expect("nonblocking");
        let mut s = Sync {
            sock: tokio::net::UdpSocket::from_std(own).expect("tokio socket"),
            me: 0,
            key: Secret::new(vec![4; 32]).expect("key"),
            boot: 1,
            seq: std::cell::Cell::new(1),
            fingerprint: fingerprint(m),
            peers: Vec::new(),
            v4: Side::default(),
            v6: Side::default(),
            refresh: Duration::from_secs(10),
            counts: SyncCounts::default(),
        };
        let SocketAddr::V4(addr) = fw_b.local_addr().expect("addr") else {
            panic!("not IPv4");
        };
        s.peers.push(Peer {
            index: 1,
            name: "fw-b".into(),
            addr,
            boot: None,
            heard: None,
            serving: 0,
            mismatched: false,
            replay: Replay::default(),
        });
        (s, fw_b)
    }

    /// The datagrams fw-b has waiting, whole.
    fn datagrams(fw_b: &std::net::UdpSocket) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let mut buf = [0u8; 2048];
        while let Ok(n) = fw_b.recv(&mut buf) {
            out.push(buf[..n].to_vec());
        }
        out
    }

    /// The IPv4 records of every datagram fw-b has waiting.
    fn heard(fw_b: &std::net::UdpSocket, key: &Secret) -> Vec<Record> {
        let mut out = Vec::new();
        for d in datagrams(fw_b) {
            let (h, r) = wire::decode(&d, key).expect("a good datagram");
            assert_eq!((h.node, h.to), (0, 1));
            let Records::V4(r) = r else {
                panic!("IPv6 records from an IPv4 table");
            };
            out.extend(r);
        }
        out
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_flow_is_sent_once_then_its_end_even_after_a_failed_send() {
        let mut m = build(&format!("{EXAMPLE}{NODES}")).unwrap_or_else(|e| panic!("{e}"));
        m.serving = Some(1); // fw-a serves z1
        let t = FlowTable::anonymous(1024);
        let (mut s, fw_b) = sync_for(&m);
        let key = s.key.clone();
        // Sends are non-blocking tries: the reactor must have seen the socket writable.
        s.sock.writable().await.expect("writable");
        let r = record(&m);
        t.insert(&r.reply_key, &r.reply, 0).expect("reply entry");
        t.insert(&r.forward_key, &r.forward, 0)
            .expect("forward entry");
        let now = 1_000_000_000;
        assert_eq!(s.round(v4(&t), &m, now), 1);
        let got = heard(&fw_b, &key);
        assert_eq!(got.len(), 1);
        assert_eq!(
            (got[0].op, got[0].forward_key, got[0].reply_key),
            (OP_UPSERT, r.forward_key, r.reply_key)
        );
        assert_eq!(s.round(v4(&t), &m, now), 0, "sent again unchanged");
        // The flow ends: its end goes out, naming both keys.
        assert!(flows::remove_flow(&t, &r.forward_key));
        assert_eq!(s.round(v4(&t), &m, now), 1);
        let got = heard(&fw_b, &key);
        assert_eq!(
            (got.len(), got[0].op, got[0].forward_key, got[0].reply_key),
            (1, OP_REMOVE, r.forward_key, r.reply_key)
        );
        assert_eq!(s.round(v4(&t), &m, now), 0);

        // A send that fails: the flow is sent again next round, and its end still goes
        // out once it ends.
        t.insert(&r.reply_key, &r.reply, 0).expect("reply entry");
        t.insert(&r.forward_key, &r.forward, 0)
            .expect("forward entry");
        let good = s.peers[0].addr;
        // Port 0: the kernel refuses the send, nothing leaves the host.
        s.peers[0].addr = SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0);
        assert_eq!(s.round(v4(&t), &m, now), 1);
        assert_eq!(s.counts.send_errors, 1, "the send did fail");
        s.peers[0].addr = good;
        assert_eq!(
            s.round(v4(&t), &m, now),
            1,
            "not sent again after the failure"
        );
        assert_eq!(heard(&fw_b, &key)[0].op, OP_UPSERT);
        // Failed again, and the flow ends before the next round: its end still goes out
        // (the peer may hold an older copy).
        s.peers[0].addr = SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0);
        s.v4.sent.values_mut().for_each(|x| x.states = (9, 9));
        assert_eq!(s.round(v4(&t), &m, now), 1, "a changed flow");
        s.peers[0].addr = good;
        assert!(flows::remove_flow(&t, &r.forward_key));
        assert_eq!(
            s.round(v4(&t), &m, now),
            1,
            "the end of a flow whose update failed"
        );
        assert_eq!(heard(&fw_b, &key)[0].op, OP_REMOVE);

        // A zone this node no longer serves: its flows are forgotten, not removed.
        t.insert(&r.reply_key, &r.reply, 0).expect("reply entry");
        t.insert(&r.forward_key, &r.forward, 0)
            .expect("forward entry");
        assert_eq!(s.round(v4(&t), &m, now), 1);
        let _ = heard(&fw_b, &key);
        m.serving = Some(0);
        assert!(flows::remove_flow(&t, &r.forward_key));
        assert_eq!(s.round(v4(&t), &m, now), 0, "a removal for a zone let go");
        assert!(s.v4.sent.is_empty());
    }

    fn v4(t: &FlowTable) -> Tables<'_> {
        Tables {
            v4: Some(t),
            v6: None,
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn an_ipv6_flow_is_synced_and_usable_on_the_peer_then_removed_there() {
        let mut m = build(&format!("{EXAMPLE6}{NODES}")).unwrap_or_else(|e| panic!("{e}"));
        m.serving = Some(1); // fw-a serves z1
        let (ours, theirs) = (FlowTable6::anonymous(1024), FlowTable6::anonymous(1024));
        let (mut s, fw_b) = sync_for(&m);
        let key = s.key.clone();
        s.sock.writable().await.expect("writable");
        let r = record6(&m);
        ours.insert(&r.reply_key, &r.reply, 0).expect("reply entry");
        ours.insert(&r.forward_key, &r.forward, 0)
            .expect("forward entry");
        let tables = |t| Tables {
            v4: None,
            v6: Some(t),
        };
        let now = 1_000_000_000;
        assert_eq!(s.round(tables(&ours), &m, now), 1);
        assert_eq!(s.round(tables(&ours), &m, now), 0, "sent again unchanged");
        let sent = datagrams(&fw_b);
        assert_eq!(sent.len(), 1);
        // IPv6 records in a version 3 datagram; the same checks as IPv4's on receipt.
        let (h, got) = wire::decode(&sent[0], &key).expect("a good datagram");
        assert_eq!(
            (h.version, h.kind, h.count),
            (wire::VERSION6, wire::KIND_FLOWS6, 1)
        );
        let Records::V6(got) = got else {
            panic!("IPv4 records from the IPv6 table");
        };
        assert_eq!(
            (got[0].forward_key, got[0].reply_key),
            (r.forward_key, r.reply_key)
        );

        // fw-b, serving z2 only, writes it with its own MAC for the target.
        let mut peer = m.clone();
        peer.serving = Some(2);
        let mac = [2, 0, 0, 0, 0, 0x22];
        let target_mac =
            |ip: IpAddr| (ip == "fd00:9::11".parse::<IpAddr>().expect("ip")).then_some(mac);
        assert!(matches!(
            apply(&theirs, &peer, 0, &got[0], now, &target_mac),
            Applied::Written
        ));
        let fwd = theirs.get(&r.forward_key).expect("the forward entry");
        assert_eq!(
            (fwd.value.new_src, fwd.value.new_dst),
            (r.forward.new_src, r.forward.new_dst)
        );
        assert_eq!(fwd.value.dst_mac, mac, "the target's MAC is the receiver's");
        let rep = theirs
            .get(&r.reply_key)
            .expect("the reply entry: its SNAT reservation");
        assert_eq!(rep.value.new_dst, r.forward_key.src);
        // A packet of the flow finds both halves as XDP would.
        assert_eq!(flows::flows_of(&theirs).len(), 1);
        assert_eq!(flows::flows_of(&theirs)[0].state(), "syn_sent");

        // The flow ends at fw-a: its end goes out and fw-b removes it, both halves.
        assert!(flows::remove_flow(&ours, &r.forward_key));
        assert_eq!(s.round(tables(&ours), &m, now), 1);
        let sent = datagrams(&fw_b);
        let (_, gone) = wire::decode(&sent[0], &key).expect("a good datagram");
        let Records::V6(gone) = gone else {
            panic!("IPv4 records from the IPv6 table");
        };
        assert_eq!(gone[0].op, OP_REMOVE);
        assert!(matches!(
            apply(&theirs, &peer, 0, &gone[0], now, &target_mac),
            Applied::Written
        ));
        assert!(theirs.get(&r.forward_key).is_none() && theirs.get(&r.reply_key).is_none());
        assert!(s.v6.sent.is_empty() && s.v4.sent.is_empty());
    }

    #[test]
    fn the_fingerprint_follows_the_ids() {
        let a = build(&format!("{EXAMPLE}{NODES}")).unwrap_or_else(|e| panic!("{e}"));
        let mut b = a.clone();
        assert_eq!(fingerprint(&a), fingerprint(&b));
        b.endpoints.swap(0, 1);
        assert_ne!(fingerprint(&a), fingerprint(&b));
    }
}
