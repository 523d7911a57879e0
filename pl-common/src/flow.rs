//! Connection tracking: one table holds both directions of every flow.
//!
//! A consumer flow `(consumer network, proto, client -> endpoint)` has a forward entry
//! that rewrites it to `(nlb:snat_port -> target:target_port)` on the provider network,
//! and a reply entry keyed by that provider-side tuple reversed, which rewrites replies
//! back. The reply entry is also the SNAT port's reservation: it is inserted first, with
//! BPF_NOEXIST, so two flows can never hold one port.
//!
//! Keys are 16 bytes and values 64 (one cache line, counters included); the checksum
//! deltas are computed once per flow, not per packet.

use bytemuck::{Pod, Zeroable};

use crate::{checksum, hash::murmur3_words};

/// Key of `PL_FLOWS`. Addresses and ports in network byte order.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Pod, Zeroable)]
pub struct FlowKey {
    pub src_be: u32,
    pub dst_be: u32,
    pub sport_be: u16,
    pub dport_be: u16,
    /// Network the packet arrives on.
    pub network: u16,
    pub proto: u8,
    pub _pad: u8,
}

/// Seed of the flow hash (Maglev slot, first SNAT port probe).
pub const FLOW_HASH_SEED: u32 = 0x706c;

impl FlowKey {
    /// murmur3 of the key's 16 bytes: network + protocol + 4-tuple (Maglev slot, SNAT
    /// walk: the same for the same tuple on every run).
    #[inline(always)]
    pub fn hash(&self) -> u32 {
        self.hash_with(FLOW_HASH_SEED)
    }

    /// The same with `seed`: the flow table's own, random for each table, so nobody who
    /// knows the algorithm can aim keys at one probe window.
    #[inline(always)]
    pub fn hash_with(&self, seed: u32) -> u32 {
        murmur3_words(bytemuck::cast::<Self, [u32; 4]>(*self), seed)
    }
}

/// This entry translates consumer -> provider.
pub const FLOW_FORWARD: u8 = 0;
/// This entry translates provider -> consumer.
pub const FLOW_REPLY: u8 = 1;
/// What a health probe's entry in `PL_PROBES` says (its state bits, as [`packet_state`]
/// gives them for what came back): Some(true) for a SYN-ACK, Some(false) for a RST,
/// None for no answer yet.
pub const fn probe_outcome(state: u8) -> Option<bool> {
    if state & (CT_FIN | CT_RST) != 0 {
        Some(false)
    } else if state & CT_SEEN != 0 && state & CT_NON_SYN == 0 {
        Some(true)
    } else if state & CT_SEEN != 0 {
        // A bare ACK or data: the port is open but not answering a SYN as it should.
        Some(false)
    } else {
        None
    }
}

/// What a flow-table slot holds besides its key: how to rewrite and where to send a packet
/// that matches the key. 40 bytes, so the slot's control word, key and value fill one
/// cache line ([`crate::flowtable::Slot`]). The egress interface's MAC is the network's
/// (`PL_NET_INFO`), and checksum deltas are computed per packet from the tuple it carries:
/// neither is stored.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct FlowValue {
    /// [`coarse`] clock when the entry was created or last refreshed (refreshed at most
    /// once a second, so established traffic rarely writes it).
    pub last_seen: u32,
    pub new_src_be: u32,
    pub new_dst_be: u32,
    pub new_sport_be: u16,
    pub new_dport_be: u16,
    pub dst_mac: [u8; 6],
    /// Network to send out of (index into the egress devmap).
    pub egress: u8,
    /// [`FLOW_FORWARD`] or [`FLOW_REPLY`].
    pub dir: u8,
    pub endpoint: u16,
    /// What this direction has seen: [`CT_SEEN`], [`CT_NON_SYN`], [`CT_FIN`], [`CT_RST`].
    /// Written only when a bit is new, so established traffic does not write it.
    pub state: u8,
    pub _pad: u8,
    /// Packets and bytes (whole frames) this direction carried. Plain adds, not atomic:
    /// one direction of a flow arrives on one RX queue, so one CPU writes them.
    pub packets: u32,
    pub bytes: u64,
}

/// The flow table's clock: CLOCK_MONOTONIC ns >> 20 (about a millisecond), in 32 bits.
pub const COARSE_SHIFT: u32 = 20;

#[inline(always)]
pub const fn coarse(ns: u64) -> u32 {
    (ns >> COARSE_SHIFT) as u32
}

/// ns from coarse time `last` to `now_ns`. A `last` ahead of `now_ns` (another CPU stamped
/// the entry after this one read the clock) is no time at all, so differences past half
/// the 32-bit range count as 0: right for gaps under 26 days, far beyond any idle timeout.
#[inline(always)]
pub const fn since(now_ns: u64, last: u32) -> u64 {
    let d = coarse(now_ns).wrapping_sub(last);
    if d > u32::MAX / 2 {
        0
    } else {
        (d as u64) << COARSE_SHIFT
    }
}

/// Seconds since boot in the 24 bits a slot keeps of a flow's creation time.
pub const CREATED_MASK: u32 = 0x00ff_ffff;

/// Seconds from creation time `created` (24 bits, from the slot) to `now_ns`.
#[inline(always)]
pub const fn age_s(now_ns: u64, created: u32) -> u32 {
    ((now_ns / 1_000_000_000) as u32).wrapping_sub(created) & CREATED_MASK
}

/// A packet went this way.
pub const CT_SEEN: u8 = 1;
/// A TCP packet without SYN went this way (the handshake got past SYN in this direction).
pub const CT_NON_SYN: u8 = 2;
/// A TCP FIN went this way: this side has finished sending.
pub const CT_FIN: u8 = 4;
/// A TCP RST went this way: the connection is over.
pub const CT_RST: u8 = 8;

const TCP_FIN: u8 = 0x01;
const TCP_SYN: u8 = crate::proto::TCP_SYN;
const TCP_RST: u8 = 0x04;
const TCP_ACK: u8 = 0x10;

/// The state bits a packet sets in its direction's entry (`tcp_flags`: the TCP header's
/// flags byte; ignored for UDP).
#[inline(always)]
pub const fn packet_state(proto: u8, tcp_flags: u8) -> u8 {
    if proto != crate::proto::IPPROTO_TCP {
        return CT_SEEN;
    }
    let mut s = CT_SEEN;
    if tcp_flags & TCP_SYN == 0 {
        s |= CT_NON_SYN;
    }
    if tcp_flags & TCP_FIN != 0 {
        s |= CT_FIN;
    }
    if tcp_flags & TCP_RST != 0 {
        s |= CT_RST;
    }
    s
}

/// True if a packet may open a new flow: any UDP datagram; for TCP only a SYN without
/// ACK, FIN or RST (as conntrack without loose pickup, and Cilium, do). A bare ACK, FIN or
/// RST with no flow takes no table room.
#[inline(always)]
pub const fn opens_flow(proto: u8, tcp_flags: u8) -> bool {
    proto != crate::proto::IPPROTO_TCP
        || tcp_flags & (TCP_SYN | TCP_ACK | TCP_FIN | TCP_RST) == TCP_SYN
}

/// Where a TCP connection is, from both directions' state bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TcpPhase {
    /// SYN seen, the handshake not done both ways.
    Opening,
    /// Past SYN both ways, no FIN or RST.
    Established,
    /// One side sent FIN; the other may still be sending (FIN_WAIT / CLOSE_WAIT).
    HalfClosed,
    /// FIN both ways, or an RST either way (TIME_WAIT / CLOSE). A new SYN from the
    /// consumer starts a fresh flow.
    Closing,
}

#[inline(always)]
pub const fn tcp_phase(forward: u8, reply: u8) -> TcpPhase {
    if (forward | reply) & CT_RST != 0 || forward & reply & CT_FIN != 0 {
        TcpPhase::Closing
    } else if (forward | reply) & CT_FIN != 0 {
        TcpPhase::HalfClosed
    } else if forward & reply & CT_NON_SYN != 0 {
        TcpPhase::Established
    } else {
        TcpPhase::Opening
    }
}

/// How long a flow may stay idle, in ns, from both directions' states: TCP by
/// [`tcp_phase`]; UDP replied or one-way.
#[inline(always)]
pub const fn idle_limit_ns(
    proto: u8,
    forward: u8,
    reply: u8,
    s: &crate::settings::Settings,
) -> u64 {
    if proto == crate::proto::IPPROTO_TCP {
        match tcp_phase(forward, reply) {
            TcpPhase::Opening => s.tcp_transient_ns,
            TcpPhase::Established => s.tcp_idle_ns,
            TcpPhase::HalfClosed => s.tcp_half_closed_ns,
            TcpPhase::Closing => s.tcp_closing_ns,
        }
    } else if reply & CT_SEEN != 0 {
        s.udp_idle_ns
    } else {
        s.udp_oneway_ns
    }
}

/// What judging a flow needs of either table's entries: when each direction was last seen,
/// what it has seen, and which direction it is.
pub trait Half {
    fn last_seen(&self) -> u32;
    fn state(&self) -> u8;
    fn dir(&self) -> u8;
}

impl Half for FlowValue {
    #[inline(always)]
    fn last_seen(&self) -> u32 {
        self.last_seen
    }
    #[inline(always)]
    fn state(&self) -> u8 {
        self.state
    }
    #[inline(always)]
    fn dir(&self) -> u8 {
        self.dir
    }
}

/// A flow's two entries, as one.
#[derive(Clone, Copy, Debug)]
pub struct Pair<'a, V = FlowValue> {
    pub forward: &'a V,
    pub reply: &'a V,
}

impl<'a, V: Half> Pair<'a, V> {
    /// `a` and `b` as a pair, whichever is the forward entry; None unless one of each
    /// direction.
    #[inline(always)]
    pub fn of(a: &'a V, b: &'a V) -> Option<Self> {
        match (a.dir(), b.dir()) {
            (FLOW_FORWARD, FLOW_REPLY) => Some(Self {
                forward: a,
                reply: b,
            }),
            (FLOW_REPLY, FLOW_FORWARD) => Some(Self {
                forward: b,
                reply: a,
            }),
            _ => None,
        }
    }

    /// ns since the last packet either way, at `now`.
    #[inline(always)]
    pub fn idle_ns(&self, now: u64) -> u64 {
        let (f, r) = (
            since(now, self.forward.last_seen()),
            since(now, self.reply.last_seen()),
        );
        if f < r { f } else { r }
    }

    /// Whether the flow is alive at `now`: one judgment of both directions, the same in
    /// the data path and in the sweep. A flow lives while either side uses it.
    #[inline(always)]
    pub fn alive(&self, proto: u8, now: u64, s: &crate::settings::Settings) -> bool {
        self.idle_ns(now) <= idle_limit_ns(proto, self.forward.state(), self.reply.state(), s)
    }

    /// A SYN from the consumer on this flow starts a fresh one (port reuse after close).
    #[inline(always)]
    pub fn reopened_by_syn(&self, proto: u8) -> bool {
        proto == crate::proto::IPPROTO_TCP
            && matches!(
                tcp_phase(self.forward.state(), self.reply.state()),
                TcpPhase::Closing
            )
    }
}

/// True if `entry`, found under `key`, and `other`, found under the key `entry` points
/// to, are two halves of one flow: `other` points back to `key`.
#[inline(always)]
pub fn same_flow(key: &FlowKey, entry: &FlowValue, other: &FlowValue) -> bool {
    other.dir != entry.dir && other.reply_key(key.proto) == *key
}

const fn words_of(addr_be: u32) -> [u16; 2] {
    let b = addr_be.to_ne_bytes();
    [
        u16::from_be_bytes([b[0], b[1]]),
        u16::from_be_bytes([b[2], b[3]]),
    ]
}

const fn port_word(port_be: u16) -> u16 {
    u16::from_be_bytes(port_be.to_ne_bytes())
}

const fn delta(acc: u32, old: u16, new: u16) -> u32 {
    acc + (!old as u32) + new as u32
}

/// The checksum deltas for rewriting `old` into the tuple (src, dst, sport, dport).
#[inline(always)]
pub const fn csum_deltas(
    old: &FlowKey,
    src_be: u32,
    dst_be: u32,
    sport_be: u16,
    dport_be: u16,
) -> (u32, u32) {
    let (os, od, ns, nd) = (
        words_of(old.src_be),
        words_of(old.dst_be),
        words_of(src_be),
        words_of(dst_be),
    );
    let l3 = delta(
        delta(delta(delta(0, os[0], ns[0]), os[1], ns[1]), od[0], nd[0]),
        od[1],
        nd[1],
    );
    let l4 = delta(
        delta(l3, port_word(old.sport_be), port_word(sport_be)),
        port_word(old.dport_be),
        port_word(dport_be),
    );
    (checksum::fold(l3) as u32, checksum::fold(l4) as u32)
}

/// Applies a precomputed delta to a checksum field value (host order).
#[inline(always)]
pub const fn apply_delta(check: u16, delta: u32) -> u16 {
    !checksum::fold((!check) as u32 + delta)
}

impl FlowValue {
    /// The key replies to the packet this value produces will carry: the rewritten tuple
    /// reversed, on the egress network.
    #[inline(always)]
    pub const fn reply_key(&self, proto: u8) -> FlowKey {
        FlowKey {
            src_be: self.new_dst_be,
            dst_be: self.new_src_be,
            sport_be: self.new_dport_be,
            dport_be: self.new_sport_be,
            network: self.egress as u16,
            proto,
            _pad: 0,
        }
    }

    /// The checksum deltas for rewriting a packet that carries `old` as this entry says:
    /// (IPv4 header, TCP/UDP), for [`apply_delta`].
    #[inline(always)]
    pub const fn deltas(&self, old: &FlowKey) -> (u32, u32) {
        csum_deltas(
            old,
            self.new_src_be,
            self.new_dst_be,
            self.new_sport_be,
            self.new_dport_be,
        )
    }
}

/// Where and how a new flow goes, apart from its tuple.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct FlowPlan {
    pub now_ns: u64,
    /// Provider-side source: an NLB address and the SNAT port.
    pub nlb_be: u32,
    /// Provider-side destination.
    pub target_be: u32,
    pub snat_port_be: u16,
    pub target_port_be: u16,
    pub provider_network: u16,
    pub endpoint: u16,
    pub target_mac: [u8; 6],
    pub consumer_mac: [u8; 6],
    /// State bits of the packet that opens the flow (see [`packet_state`]).
    pub first_state: u8,
    pub _pad: u8,
    /// Length of the frame that opens the flow: the forward entry's first packet.
    pub first_len: u16,
}

/// The two entries of a new consumer flow. The data path builds it in a per-CPU scratch
/// map (it does not fit the BPF stack beside everything else).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct FlowPair {
    pub forward: FlowValue,
    pub reply_key: FlowKey,
    pub reply: FlowValue,
}

/// Scratch space for creating a flow: `PL_SCRATCH[0]`, one per CPU.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct NewFlow {
    pub plan: FlowPlan,
    pub pair: FlowPair,
}

impl FlowPair {
    pub fn new(key: &FlowKey, plan: &FlowPlan) -> Self {
        let mut pair = Self::zeroed();
        pair.fill(key, plan);
        pair
    }

    /// Writes the forward entry for consumer tuple `key` translated as `p` says, the
    /// reply entry's key (the translated tuple reversed), and the reply entry.
    #[inline(always)]
    pub fn fill(&mut self, key: &FlowKey, p: &FlowPlan) {
        let now = coarse(p.now_ns);
        self.forward = FlowValue {
            last_seen: now,
            new_src_be: p.nlb_be,
            new_dst_be: p.target_be,
            new_sport_be: p.snat_port_be,
            new_dport_be: p.target_port_be,
            dst_mac: p.target_mac,
            egress: p.provider_network as u8,
            dir: FLOW_FORWARD,
            endpoint: p.endpoint,
            state: p.first_state,
            _pad: 0,
            packets: 1,
            bytes: u64::from(p.first_len),
        };
        self.reply_key = self.forward.reply_key(key.proto);
        self.reply = FlowValue {
            last_seen: now,
            new_src_be: key.dst_be,
            new_dst_be: key.src_be,
            new_sport_be: key.dport_be,
            new_dport_be: key.sport_be,
            dst_mac: p.consumer_mac,
            egress: key.network as u8,
            dir: FLOW_REPLY,
            endpoint: p.endpoint,
            state: 0,
            _pad: 0,
            packets: 0,
            bytes: 0,
        };
    }

    /// The creation time both slots keep ([`CREATED_MASK`] bits of seconds since boot).
    #[inline(always)]
    pub const fn created(p: &FlowPlan) -> u32 {
        (p.now_ns / 1_000_000_000) as u32 & CREATED_MASK
    }
}

#[cfg(feature = "user")]
mod user {
    use super::*;
    // SAFETY: repr(C) with explicit padding, every bit pattern valid (bytemuck-checked).
    unsafe impl aya::Pod for FlowKey {}
    unsafe impl aya::Pod for FlowValue {}
    unsafe impl aya::Pod for NewFlow {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_outcomes_follow_the_state_bits_of_what_came_back() {
        const SYN: u8 = 0x02;
        const ACK: u8 = 0x10;
        const RST: u8 = 0x04;
        let tcp = crate::proto::IPPROTO_TCP;
        for (what, flags, want) in [
            ("SYN-ACK", SYN | ACK, Some(true)),
            ("RST-ACK", RST | ACK, Some(false)),
            ("RST", RST, Some(false)),
            ("bare ACK", ACK, Some(false)),
        ] {
            assert_eq!(probe_outcome(packet_state(tcp, flags)), want, "{what}");
        }
        assert_eq!(probe_outcome(0), None, "nothing came back");
        // A SYN-ACK then a RST (the target gave up): down.
        let both = packet_state(tcp, SYN | ACK) | packet_state(tcp, RST);
        assert_eq!(probe_outcome(both), Some(false));
    }

    const fn be(a: [u8; 4]) -> u32 {
        u32::from_ne_bytes(a)
    }
    const fn port(p: u16) -> u16 {
        p.to_be()
    }

    fn key() -> FlowKey {
        FlowKey {
            src_be: be([10, 0, 0, 10]),
            dst_be: be([10, 0, 0, 100]),
            sport_be: port(40000),
            dport_be: port(443),
            network: 1,
            proto: 6,
            _pad: 0,
        }
    }

    fn plan() -> FlowPlan {
        FlowPlan {
            nlb_be: be([10, 9, 0, 250]),
            snat_port_be: port(40000),
            target_be: be([10, 9, 0, 11]),
            target_port_be: port(8443),
            provider_network: 2,
            endpoint: 5,
            target_mac: [2, 0, 0, 0, 0, 0x11],
            consumer_mac: [2, 0, 0, 0, 0, 0x0a],
            now_ns: 7,
            first_state: CT_SEEN,
            _pad: 0,
            first_len: 60,
        }
    }

    #[test]
    fn states_pick_the_timeout() {
        use crate::proto::{IPPROTO_TCP, IPPROTO_UDP};
        let s = crate::settings::Settings::default();
        let tcp = |flags| packet_state(IPPROTO_TCP, flags);
        let (syn, synack, ack) = (tcp(TCP_SYN), tcp(TCP_SYN | TCP_ACK), tcp(TCP_ACK));
        let (fin, rst) = (tcp(TCP_FIN | TCP_ACK), tcp(TCP_RST));
        assert_eq!(syn, CT_SEEN);
        assert_eq!(ack, CT_SEEN | CT_NON_SYN);
        let est = (syn | ack, synack | ack);
        for (what, f, r, phase, limit) in [
            ("SYN only", syn, 0, TcpPhase::Opening, s.tcp_transient_ns),
            (
                "reply still at SYN-ACK",
                syn | ack,
                synack,
                TcpPhase::Opening,
                s.tcp_transient_ns,
            ),
            (
                "established",
                est.0,
                est.1,
                TcpPhase::Established,
                s.tcp_idle_ns,
            ),
            // One FIN: the other side may still be sending (a client that half-closes and
            // waits for its answer).
            (
                "consumer FIN",
                est.0 | fin,
                est.1,
                TcpPhase::HalfClosed,
                s.tcp_half_closed_ns,
            ),
            (
                "provider FIN",
                est.0,
                est.1 | fin,
                TcpPhase::HalfClosed,
                s.tcp_half_closed_ns,
            ),
            (
                "FIN both ways",
                est.0 | fin,
                est.1 | fin,
                TcpPhase::Closing,
                s.tcp_closing_ns,
            ),
            (
                "RST from the target",
                syn,
                rst,
                TcpPhase::Closing,
                s.tcp_closing_ns,
            ),
            (
                "RST after one FIN",
                est.0 | fin,
                est.1 | rst,
                TcpPhase::Closing,
                s.tcp_closing_ns,
            ),
        ] {
            assert_eq!(tcp_phase(f, r), phase, "{what}");
            assert_eq!(idle_limit_ns(IPPROTO_TCP, f, r, &s), limit, "{what}");
        }
        assert_eq!(
            packet_state(IPPROTO_UDP, 0xff),
            CT_SEEN,
            "UDP ignores the flags byte"
        );
        assert_eq!(idle_limit_ns(IPPROTO_UDP, CT_SEEN, 0, &s), s.udp_oneway_ns);
        assert_eq!(
            idle_limit_ns(IPPROTO_UDP, CT_SEEN, CT_SEEN, &s),
            s.udp_idle_ns
        );
    }

    #[test]
    fn only_a_bare_syn_opens_a_tcp_flow() {
        use crate::proto::{IPPROTO_TCP, IPPROTO_UDP};
        for (what, flags, opens) in [
            ("SYN", TCP_SYN, true),
            ("SYN with ECN bits", TCP_SYN | 0xc0, true),
            ("SYN-ACK", TCP_SYN | TCP_ACK, false),
            ("bare ACK", TCP_ACK, false),
            ("FIN", TCP_FIN | TCP_ACK, false),
            ("RST", TCP_RST, false),
            ("SYN+RST", TCP_SYN | TCP_RST, false),
            ("SYN+FIN", TCP_SYN | TCP_FIN, false),
        ] {
            assert_eq!(opens_flow(IPPROTO_TCP, flags), opens, "{what}");
        }
        assert!(opens_flow(IPPROTO_UDP, 0), "any UDP datagram");
    }

    fn entry(dir: u8, last_seen_ns: u64, state: u8) -> FlowValue {
        FlowValue {
            dir,
            last_seen: coarse(last_seen_ns),
            state,
            ..FlowValue::default()
        }
    }

    #[test]
    fn a_flow_lives_while_either_side_uses_it() {
        use crate::proto::{IPPROTO_TCP, IPPROTO_UDP};
        const S: u64 = 1_000_000_000;
        let s = crate::settings::Settings::default();
        // A consumer that keeps sending to a target silent for longer than the UDP idle
        // timeout: the flow is alive in both directions, so the reply can still come.
        let now = 1000 * S;
        let fwd = entry(FLOW_FORWARD, now - S, CT_SEEN);
        let rep = entry(FLOW_REPLY, now - 200 * S, CT_SEEN);
        let pair = Pair::of(&rep, &fwd).expect("one of each");
        assert!(core::ptr::eq(pair.forward, &fwd), "ordered by direction");
        assert!(pair.alive(IPPROTO_UDP, now, &s));
        // The mirror: the provider pushes, the consumer is quiet.
        let (f, r) = (
            entry(FLOW_FORWARD, now - 300 * S, CT_SEEN | CT_NON_SYN),
            entry(FLOW_REPLY, now - S, CT_SEEN | CT_NON_SYN),
        );
        assert!(Pair::of(&f, &r).expect("pair").alive(IPPROTO_TCP, now, &s));
        // Both quiet past the limit: gone.
        let (f, r) = (
            entry(FLOW_FORWARD, now - 121 * S, CT_SEEN),
            entry(FLOW_REPLY, now - 130 * S, CT_SEEN),
        );
        assert!(!Pair::of(&f, &r).expect("pair").alive(IPPROTO_UDP, now, &s));
        assert!(
            Pair::of(&fwd, &fwd).is_none(),
            "two forward entries are no pair"
        );
    }

    #[test]
    fn a_syn_reopens_only_a_closed_flow() {
        use crate::proto::{IPPROTO_TCP, IPPROTO_UDP};
        let est = CT_SEEN | CT_NON_SYN;
        let pair = |f, r| (entry(FLOW_FORWARD, 0, f), entry(FLOW_REPLY, 0, r));
        for (what, f, r, reopens) in [
            ("established", est, est, false),
            ("half-closed", est | CT_FIN, est, false),
            ("closed by FINs", est | CT_FIN, est | CT_FIN, true),
            ("reset", est, est | CT_RST, true),
        ] {
            let (a, b) = pair(f, r);
            let p = Pair::of(&a, &b).expect("pair");
            assert_eq!(p.reopened_by_syn(IPPROTO_TCP), reopens, "{what}");
        }
        let (a, b) = pair(CT_SEEN, CT_SEEN);
        assert!(!Pair::of(&a, &b).expect("pair").reopened_by_syn(IPPROTO_UDP));
    }

    #[test]
    fn halves_of_one_flow_point_at_each_other() {
        let pair = FlowPair::new(&key(), &plan());
        assert!(same_flow(&key(), &pair.forward, &pair.reply));
        assert!(same_flow(&pair.reply_key, &pair.reply, &pair.forward));
        // A reply entry of another consumer's flow on the same provider tuple.
        let mut other = key();
        other.sport_be = port(40001);
        let theirs = FlowPair::new(&other, &plan());
        assert!(!same_flow(&key(), &pair.forward, &theirs.reply));
        assert!(!same_flow(&key(), &pair.forward, &pair.forward));
    }

    #[test]
    fn layout_is_cache_friendly() {
        assert_eq!(size_of::<FlowKey>(), 16);
        // With the slot's control word and key: one cache line, counters included.
        assert_eq!(size_of::<FlowValue>(), 40);
        assert_eq!(align_of::<FlowValue>(), 8);
    }

    #[test]
    fn the_coarse_clock_counts_idleness_and_never_runs_backwards() {
        const S: u64 = 1_000_000_000;
        let now = 1000 * S;
        let idle = since(now, coarse(now - 30 * S));
        assert!(idle.abs_diff(30 * S) < 2 << COARSE_SHIFT, "{idle}");
        assert_eq!(
            since(now, coarse(now + S)),
            0,
            "stamped after we read the clock"
        );
        // Across the 32-bit wrap of the coarse clock (about 52 days of uptime).
        let wrap = (u64::from(u32::MAX) + 1) << COARSE_SHIFT;
        let idle = since(wrap + 5 * S, coarse(wrap - 5 * S));
        assert!(idle.abs_diff(10 * S) < 2 << COARSE_SHIFT, "{idle}");
        assert_eq!(age_s(100 * S, 40), 60);
        assert_eq!(age_s(5 * S, CREATED_MASK - 4), 10, "across the 24-bit wrap");
    }

    #[test]
    fn hash_golden_vector() {
        // bytes 0a00000a 0a000064 9c4001bb 01000600, seed 0x706c: mmh3 gives 0x0ba9c7ca.
        assert_eq!(key().hash(), 0x0ba9_c7ca);
    }

    #[test]
    fn reply_key_is_the_rewritten_tuple_reversed() {
        let pair = FlowPair::new(&key(), &plan());
        let r = pair.reply_key;
        assert_eq!(
            (r.src_be, r.dst_be),
            (be([10, 9, 0, 11]), be([10, 9, 0, 250]))
        );
        assert_eq!((r.sport_be, r.dport_be), (port(8443), port(40000)));
        assert_eq!((r.network, r.proto), (2, 6));
        // Reversing the reply's rewrite gives back the consumer's key.
        assert_eq!(pair.reply.reply_key(6), key());
        assert_eq!(pair.forward.dir, FLOW_FORWARD);
        assert_eq!(pair.reply.dir, FLOW_REPLY);
        assert_eq!(pair.reply.dst_mac, plan().consumer_mac);
    }

    /// Rewrites a real IPv4+TCP header with the deltas and checks both checksums against a
    /// full recomputation.
    #[test]
    fn deltas_match_full_recompute() {
        let k = key();
        let pair = FlowPair::new(&k, &plan());
        let mut pkt = [0u8; 40];
        pkt[..20].copy_from_slice(&[
            0x45, 0, 0, 40, 0, 0, 0x40, 0, 64, 6, 0, 0, 10, 0, 0, 10, 10, 0, 0, 100,
        ]);
        pkt[20..24].copy_from_slice(&[0x9c, 0x40, 0x01, 0xbb]);
        pkt[32] = 0x50;
        pkt[33] = 0x02;
        let ip_c = checksum::checksum(&pkt[..20]);
        pkt[10..12].copy_from_slice(&ip_c.to_be_bytes());
        let tcp_c = checksum::l4_checksum([10, 0, 0, 10], [10, 0, 0, 100], 6, &pkt[20..]);
        pkt[36..38].copy_from_slice(&tcp_c.to_be_bytes());

        let f = pair.forward;
        let (l3, l4) = f.deltas(&k);
        pkt[12..16].copy_from_slice(&f.new_src_be.to_ne_bytes());
        pkt[16..20].copy_from_slice(&f.new_dst_be.to_ne_bytes());
        pkt[20..22].copy_from_slice(&f.new_sport_be.to_ne_bytes());
        pkt[22..24].copy_from_slice(&f.new_dport_be.to_ne_bytes());
        let ip_new = apply_delta(ip_c, l3);
        let tcp_new = apply_delta(tcp_c, l4);
        pkt[10..12].fill(0);
        pkt[36..38].fill(0);
        assert_eq!(ip_new, checksum::checksum(&pkt[..20]));
        assert_eq!(
            tcp_new,
            checksum::l4_checksum([10, 9, 0, 250], [10, 9, 0, 11], 6, &pkt[20..])
        );
    }
}
