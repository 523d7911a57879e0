//! Fuzzing the data path through BPF_PROG_TEST_RUN: random and mutated frames, seeded from
//! fixture-like frames, against the real object programmed from the lab config with family
//! translation (`pl_tests::family`: acme reaches each service in both families).
//!
//! Every frame must come out dropped or redirected (never aborted), every redirected frame
//! must be well formed (a verifying IPv4 header checksum) with an L4/ICMP checksum exactly
//! as valid as the input's, each judged in its own family (a translated frame changes
//! family), and policy must hold: consumer frames reach only their service's target
//! through its NLB address, from an allowed source, to an endpoint's listener; provider
//! frames (and ICMP errors) reach a consumer only along a flow a consumer made. At the end
//! every drop must be counted under a reason.
//!
//! `PL_FUZZ_FRAMES` sets the count (default 100 000; `cargo xtask fuzz` runs 1 000 000) and
//! `PL_FUZZ_SEED` replays a run; the seed is printed.

use std::{
    collections::HashSet,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

use aya::Ebpf;
use pl_common::{
    checksum,
    proto::{XDP_DROP, XDP_PASS, XDP_REDIRECT},
    stats::{EndpointCounter as E, IfaceCounter as I},
};
use pl_tests::{
    Rng, TestLab, chain,
    family::{self, BILLING6_Z1, BILLING6_Z2, LEDGER4_Z1, LEDGER4_Z2},
    programmed, require_kernel,
    running::{CLIENT6, EP6_Z1, EP6_Z2, NLB6_Z1, NLB6_Z2, OUTSIDER6, T1_6, T2_6},
    wire::{CLIENT, EP1, EP2, IFACES, NLB1, NLB2, OUTSIDER, T1, T2},
    xdp_test_run,
};
use pl_userspace::{
    dataplane,
    frame::{
        Ipv4, Ipv6, Mac, TCP_ACK, TCP_SYN, arp_reply, arp_request, ipv4_frame, ipv6_frame,
        neighbour_solicitation,
    },
    lab::netns,
    plan::Neighbors,
};

const NLBS: [[u8; 4]; 2] = [NLB1, NLB2];
const CA: Mac = [2, 0, 0, 0, 0x0a, 1];
const TM: Mac = [2, 0, 0, 0, 0x09, 0x11];

/// A provider-side tuple of a flow a consumer made, in the provider side's family: (NLB
/// address, SNAT port, target, target port, protocol).
type Held = (IpAddr, u16, IpAddr, u16, u8);

fn be16(f: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([f[at], f[at + 1]])
}

fn addr(f: &[u8], at: usize) -> Ipv4Addr {
    Ipv4Addr::new(f[at], f[at + 1], f[at + 2], f[at + 3])
}

/// Whether the TCP/UDP/ICMP checksum of the IPv4 packet in `f` verifies (UDP 0: none).
/// None if the frame is no whole IPv4 packet.
fn l4_ok(f: &[u8]) -> Option<bool> {
    if f.len() < 34 || be16(f, 12) != 0x0800 || f[14] != 0x45 {
        return None;
    }
    let total = usize::from(be16(f, 16));
    let seg = f.get(34..14 + total)?;
    let (src, dst) = (f[26..30].try_into().ok()?, f[30..34].try_into().ok()?);
    Some(match f[23] {
        6 => {
            checksum::fold(checksum::sum(
                seg,
                checksum::pseudo_header_sum(src, dst, 6, seg.len() as u16),
            )) == 0xffff
        }
        17 if seg.len() >= 8 && be16(seg, 6) == 0 => true,
        17 => {
            checksum::fold(checksum::sum(
                seg,
                checksum::pseudo_header_sum(src, dst, 17, seg.len() as u16),
            )) == 0xffff
        }
        1 => checksum::fold(checksum::sum(seg, 0)) == 0xffff,
        _ => return None,
    })
}

/// Seeds: frames that reach every stage, on each interface (0 acme, 1 globex, 2 prov).
fn seeds(fw: &[Mac; 3]) -> Vec<(usize, Vec<u8>)> {
    let ip = |s, d, ttl| Ipv4 {
        ttl,
        ..Ipv4::new(s, d)
    };
    let mut out = Vec::new();
    for (n, mac) in [(0, CA), (1, [2, 0, 0, 0, 0x0b, 1])] {
        let f = fw[n];
        for src in [CLIENT, OUTSIDER, EP2] {
            for dst in [EP1, EP2] {
                out.push((
                    n,
                    ipv4_frame(
                        f,
                        mac,
                        &ip(src, dst, 64).tcp(40000, 443, 7, 0, TCP_SYN, &[]),
                    ),
                ));
                out.push((
                    n,
                    ipv4_frame(
                        f,
                        mac,
                        &ip(src, dst, 64).tcp(40001, 443, 8, 9, TCP_ACK, b"data"),
                    ),
                ));
                out.push((
                    n,
                    ipv4_frame(f, mac, &ip(src, dst, 64).udp(40002, 53, b"query")),
                ));
            }
        }
        out.push((n, ipv4_frame(f, mac, &ip(CLIENT, EP1, 64).icmp_echo(1, 1))));
        out.push((
            n,
            ipv4_frame(
                f,
                mac,
                &ip(CLIENT, EP1, 64).icmp_error(
                    3,
                    3,
                    [0; 4],
                    &ip(EP1, CLIENT, 63).udp(53, 40002, b"answer")[..28],
                ),
            ),
        ));
        out.push((n, arp_request(mac, CLIENT, EP1)));
    }
    let f = fw[2];
    for t in [T1, T2] {
        for nlb in NLBS {
            out.push((
                2,
                ipv4_frame(
                    f,
                    TM,
                    &ip(t, nlb, 64).tcp(8443, 40000, 1, 8, TCP_SYN | TCP_ACK, &[]),
                ),
            ));
            out.push((
                2,
                ipv4_frame(f, TM, &ip(t, nlb, 64).udp(5353, 40002, b"answer")),
            ));
            out.push((
                2,
                ipv4_frame(
                    f,
                    TM,
                    &ip([10, 9, 0, 1], nlb, 64).icmp_error(
                        3,
                        4,
                        [0, 0, 5, 0x78],
                        &ip(nlb, t, 63).tcp(40000, 8443, 7, 0, TCP_SYN, &[])[..28],
                    ),
                ),
            ));
        }
        out.push((2, arp_reply(TM, t, f, NLBS[0])));
    }
    out.extend(seeds6(fw));
    out.extend(seeds_xlat(fw[0]));
    out
}

/// Family translation seeds, on acme (`fw`: its interface's MAC): consumers of each
/// family to the other family's endpoint addresses, and errors about the answers.
fn seeds_xlat(f: Mac) -> Vec<(usize, Vec<u8>)> {
    let mut out = Vec::new();
    for src in [CLIENT6, OUTSIDER6] {
        for dst in [BILLING6_Z1, BILLING6_Z2] {
            let p = Ipv6::new(src.octets(), dst.octets());
            out.push(ipv6_frame(f, CA, &p.tcp(40000, 443, 7, 0, TCP_SYN, &[])));
            out.push(ipv6_frame(
                f,
                CA,
                &p.tcp(40001, 443, 8, 9, TCP_ACK, b"data"),
            ));
            out.push(ipv6_frame(f, CA, &p.udp(40002, 53, b"query")));
        }
    }
    for src in [CLIENT, OUTSIDER] {
        for dst in [LEDGER4_Z1, LEDGER4_Z2] {
            let p = Ipv4::new(src, dst.octets());
            out.push(ipv4_frame(f, CA, &p.tcp(40000, 443, 7, 0, TCP_SYN, &[])));
            out.push(ipv4_frame(
                f,
                CA,
                &p.tcp(40001, 443, 8, 9, TCP_ACK, b"data"),
            ));
            out.push(ipv4_frame(f, CA, &p.udp(40002, 53, b"query")));
        }
    }
    let answer6 = Ipv6::new(BILLING6_Z1.octets(), CLIENT6.octets()).udp(53, 40002, b"answer");
    out.push(ipv6_frame(
        f,
        CA,
        &Ipv6::new(CLIENT6.octets(), BILLING6_Z1.octets()).icmp6(&icmp6_error(1, 4, &answer6)),
    ));
    let answer4 = Ipv4::new(LEDGER4_Z1.octets(), CLIENT).udp(53, 40002, b"answer");
    out.push(ipv4_frame(
        f,
        CA,
        &Ipv4::new(CLIENT, LEDGER4_Z1.octets()).icmp_error(3, 3, [0; 4], &answer4[..28]),
    ));
    out.into_iter().map(|f| (0, f)).collect()
}

/// The ICMPv6 error `ty`/`code` (`rest` zero) quoting `invoking`, checksum zero.
fn icmp6_error(ty: u8, code: u8, invoking: &[u8]) -> Vec<u8> {
    let mut m = vec![ty, code, 0, 0, 0, 0, 0x05, 0x78];
    m.extend_from_slice(invoking);
    m
}

/// IPv6 seeds: consumer TCP and UDP (one behind a hop-by-hop header, one with hop limit 1)
/// from an allowed source, an outsider and one of our own addresses, solicitations, ICMPv6
/// errors about flows, and the provider's answers, errors and advertisements.
fn seeds6(fw: &[Mac; 3]) -> Vec<(usize, Vec<u8>)> {
    let ip = |s: Ipv6Addr, d: Ipv6Addr| Ipv6::new(s.octets(), d.octets());
    let mut out = Vec::new();
    for (n, mac) in [(0, CA), (1, [2, 0, 0, 0, 0x0b, 1])] {
        let f = fw[n];
        for src in [CLIENT6, OUTSIDER6, EP6_Z2] {
            for dst in [EP6_Z1, EP6_Z2] {
                let p = ip(src, dst);
                out.push((
                    n,
                    ipv6_frame(f, mac, &p.tcp(40000, 443, 7, 0, TCP_SYN, &[])),
                ));
                out.push((
                    n,
                    ipv6_frame(f, mac, &p.tcp(40001, 443, 8, 9, TCP_ACK, b"data")),
                ));
                out.push((n, ipv6_frame(f, mac, &p.udp(40002, 53, b"query"))));
                let mut hbh = ip(src, dst);
                hbh.ext.push((0, vec![0, 0, 1, 4, 0, 0, 0, 0]));
                out.push((n, ipv6_frame(f, mac, &hbh.udp(40003, 53, b"query"))));
                let mut last_hop = ip(src, dst);
                last_hop.hop_limit = 1;
                out.push((n, ipv6_frame(f, mac, &last_hop.udp(40002, 53, b"query"))));
            }
        }
        let answer = ip(EP6_Z1, CLIENT6).udp(53, 40002, b"answer");
        out.push((
            n,
            ipv6_frame(
                f,
                mac,
                &ip(CLIENT6, EP6_Z1).icmp6(&icmp6_error(1, 4, &answer)),
            ),
        ));
        out.push((
            n,
            neighbour_solicitation(mac, CLIENT6.octets(), EP6_Z1.octets()),
        ));
    }
    let f = fw[2];
    for t in [T1_6, T2_6] {
        for nlb in [NLB6_Z1, NLB6_Z2] {
            let p = ip(t, nlb);
            out.push((
                2,
                ipv6_frame(f, TM, &p.tcp(8443, 40000, 1, 8, TCP_SYN | TCP_ACK, &[])),
            ));
            out.push((2, ipv6_frame(f, TM, &p.udp(5353, 40002, b"answer"))));
            let sent = ip(nlb, t).tcp(40000, 8443, 7, 0, TCP_SYN, &[]);
            let router = Ipv6Addr::new(0xfd00, 9, 0, 0, 0, 0, 0, 0xfe);
            out.push((
                2,
                ipv6_frame(f, TM, &ip(router, nlb).icmp6(&icmp6_error(2, 0, &sent))),
            ));
            let na = pl_common::ndp::advertisement(t.octets(), nlb.octets(), TM);
            let mut h = p.clone();
            h.hop_limit = 255;
            out.push((2, ipv6_frame(f, TM, &h.packet(58, &na))));
        }
    }
    out
}

/// Mutates `f` in one of several ways; keeps at least an Ethernet header.
fn mutate(rng: &mut Rng, f: &mut Vec<u8>) {
    for _ in 0..=rng.below(3) {
        match rng.below(9) {
            // Flip a bit, mostly in the headers.
            0 | 1 => {
                let end = f.len().min(if rng.below(4) == 0 { f.len() } else { 64 });
                let i = rng.below(end);
                f[i] ^= 1 << rng.below(8);
            }
            // A random byte.
            2 => {
                let i = rng.below(f.len());
                f[i] = rng.next_u64() as u8;
            }
            // Cut short, or grow.
            3 => {
                let n = 14 + rng.below(f.len().saturating_sub(13).max(1));
                f.truncate(n);
            }
            4 => {
                for _ in 0..rng.below(40) {
                    f.push(rng.next_u64() as u8);
                }
            }
            // Interesting values in length and offset fields.
            5 => {
                let at = rng.pick(&[14, 16, 20, 23, 38, 46]);
                if at + 1 < f.len() {
                    let v = rng.pick(&[0u16, 1, 5, 8, 20, 0x45, 0xff, 0x4000, 0x2000, 0xffff]);
                    f[at..at + 2].copy_from_slice(&v.to_be_bytes());
                }
            }
            // Ports and addresses from the small sets that make flows meet.
            6 if f.len() >= 38 => {
                let at = rng.pick(&[34, 36]);
                let p = rng.pick(&[40000u16, 40001, 40002, 443, 53, 8443, 5353, 1]);
                f[at..at + 2].copy_from_slice(&p.to_be_bytes());
            }
            7 if f.len() >= 34 => {
                let at = rng.pick(&[26, 30]);
                let a = rng.pick(&[CLIENT, OUTSIDER, EP1, EP2, T1, T2, NLBS[0], NLBS[1]]);
                f[at..at + 4].copy_from_slice(&a);
            }
            // Nothing more: some frames stay as they were.
            _ => {}
        }
    }
    // Most of the time keep the IPv4 header checksum right, so frames get past it.
    if rng.below(4) != 0 && f.len() >= 34 && be16(f, 12) == 0x0800 && f[14] == 0x45 {
        f[24..26].fill(0);
        let c = checksum::checksum(&f[14..34]);
        f[24..26].copy_from_slice(&c.to_be_bytes());
    }
}

/// An IP packet of either family in a frame: its addresses, upper-layer protocol, where
/// that starts and where the packet ends, its TTL or hop limit.
struct Packet {
    src: IpAddr,
    dst: IpAddr,
    proto: u8,
    off: usize,
    end: usize,
    hops: u8,
}

/// The IPv4 (no options) or IPv6 (extension headers the walk accepts) packet in `f`.
fn packet(f: &[u8]) -> Option<Packet> {
    if f.len() < 14 {
        return None;
    }
    match be16(f, 12) {
        0x0800 => {
            if f.len() < 34 || f[14] != 0x45 {
                return None;
            }
            let end = 14 + usize::from(be16(f, 16));
            (34..=f.len()).contains(&end).then(|| Packet {
                src: addr(f, 26).into(),
                dst: addr(f, 30).into(),
                proto: f[23],
                off: 34,
                end,
                hops: f[22],
            })
        }
        0x86dd => {
            let (proto, off, end) = upper6(f)?;
            Some(Packet {
                src: addr6(f, 22).into(),
                dst: addr6(f, 38).into(),
                proto,
                off,
                end,
                hops: f[21],
            })
        }
        _ => None,
    }
}

/// Whether the upper layer's checksum verifies, in the packet's own family.
fn l4_any(f: &[u8]) -> Option<bool> {
    l4_ok(f).or_else(|| l4_ok6(f))
}

fn is_icmp(proto: u8) -> bool {
    proto == 1 || proto == 58
}

/// The packet an ICMP or ICMPv6 error in `f` quotes: (source, destination, source port,
/// destination port, protocol).
fn quoted(f: &[u8]) -> Option<(IpAddr, IpAddr, u16, u16, u8)> {
    let p = packet(f)?;
    let q = p.off + 8;
    if p.proto == 1 {
        (f.len() >= q + 24).then(|| {
            (
                addr(f, q + 12).into(),
                addr(f, q + 16).into(),
                be16(f, q + 20),
                be16(f, q + 22),
                f[q + 9],
            )
        })
    } else {
        (f.len() >= q + 44).then(|| {
            (
                addr6(f, q + 8).into(),
                addr6(f, q + 24).into(),
                be16(f, q + 40),
                be16(f, q + 42),
                f[q + 6],
            )
        })
    }
}

/// Where a consumer's packet to `dst` arriving on interface `on` may go: its service's NLB
/// addresses and targets (in the targets' family). None: no endpoint address there.
fn service(on: usize, dst: IpAddr) -> Option<([IpAddr; 2], [IpAddr; 2])> {
    let billing = (NLBS.map(IpAddr::from), [T1, T2].map(IpAddr::from));
    let ledger = (
        [NLB6_Z1, NLB6_Z2].map(IpAddr::from),
        [T1_6, T2_6].map(IpAddr::from),
    );
    let is = |set: &[IpAddr]| set.contains(&dst);
    if is(&[EP1, EP2].map(IpAddr::from)) {
        Some(billing)
    } else if is(&[EP6_Z1, EP6_Z2].map(IpAddr::from)) {
        Some(ledger)
    // The other family's addresses are acme's only.
    } else if on == 0 && is(&[BILLING6_Z1, BILLING6_Z2].map(IpAddr::from)) {
        Some(billing)
    } else if on == 0 && is(&[LEDGER4_Z1, LEDGER4_Z2].map(IpAddr::from)) {
        Some(ledger)
    } else {
        None
    }
}

/// The endpoint addresses in consumer network `on` (the other family's are acme's only).
fn endpoint_addresses(on: usize) -> Vec<IpAddr> {
    let mut all = vec![EP1.into(), EP2.into(), EP6_Z1.into(), EP6_Z2.into()];
    if on == 0 {
        all.extend([
            IpAddr::from(BILLING6_Z1),
            BILLING6_Z2.into(),
            LEDGER4_Z1.into(),
            LEDGER4_Z2.into(),
        ]);
    }
    all
}

/// Whether acme's endpoints allow `src` (10.0.0.0/25 and fd00:a::/121 for both); globex's
/// allow any.
fn allowed(on: usize, src: IpAddr) -> bool {
    on == 1
        || match src {
            IpAddr::V4(a) => a.octets()[..3] == [10, 0, 0] && a.octets()[3] < 128,
            IpAddr::V6(a) => {
                let o = a.octets();
                o[..15] == CLIENT6.octets()[..15] && o[15] < 0x80
            }
        }
}

/// What a redirected frame must satisfy; a description of the breach if it does not.
/// Either family in, either out: a translated flow changes family on the way.
fn check_redirect(on: usize, input: &[u8], out: &[u8], held: &mut HashSet<Held>) -> Option<String> {
    if out.len() < 14 {
        return Some("runt output".into());
    }
    match be16(out, 12) {
        0x0806 => {
            return (out.len() < 42 || be16(out, 20) != 2)
                .then(|| "ARP output that is no reply".into());
        }
        0x0800 | 0x86dd => {}
        t => return Some(format!("output EtherType {t:#06x}")),
    }
    let Some(o) = packet(out) else {
        return Some("output IP packet malformed".into());
    };
    if be16(out, 12) == 0x0800
        && !checksum::ipv4_header_ok(out[14..34].try_into().expect("20 bytes"))
    {
        return Some("output IPv4 checksum does not verify".into());
    }
    if o.proto == 58 && out.get(o.off) == Some(&136) {
        let asked = upper6(input).is_some_and(|(p, o, _)| p == 58 && input[o] == 135);
        let ours = [EP6_Z1, EP6_Z2, NLB6_Z1, NLB6_Z2].map(IpAddr::from);
        return (out[21] != 255 || !ours.contains(&o.src) || !asked || l4_ok6(out) != Some(true))
            .then(|| {
                format!(
                    "advertisement from {} to {} answering no solicitation, or bad",
                    o.src, o.dst
                )
            });
    }
    let Some(i) = packet(input) else {
        return Some("redirected a frame that is no IP packet pl accepts".into());
    };
    if is_icmp(o.proto) && !is_icmp(i.proto) {
        return generated_breach(input, &i, out, &o);
    }
    if l4_any(input) != l4_any(out) {
        return Some(format!(
            "L4 checksum validity changed: {:?} -> {:?}",
            l4_any(input),
            l4_any(out)
        ));
    }
    if is_icmp(o.proto) {
        return icmp_error_breach(on, input, out, held);
    }
    along_a_flow_breach(on, (&i, input), (&o, out), held)
}

/// An ICMP error pl sent back for a TCP or UDP packet: time exceeded only for a TTL or hop
/// limit of 1 or 0, never fragmentation needed or packet too big (the fuzz's frames fit
/// every MTU), in the packet's family, to its sender from its destination, with a
/// verifying checksum, quoting the packet from its start (IPv4: its first 28 bytes;
/// IPv6: what fits 1280 bytes).
fn generated_breach(input: &[u8], i: &Packet, out: &[u8], o: &Packet) -> Option<String> {
    let v6 = be16(out, 12) == 0x86dd;
    let ty = out.get(o.off).copied();
    if be16(input, 12) != be16(out, 12) || ty != Some(if v6 { 3 } else { 11 }) || i.hops > 1 {
        return Some(format!(
            "ICMP type {ty:?} sent back for TTL or hop limit {}",
            i.hops
        ));
    }
    if l4_any(out) != Some(true) {
        return Some("ICMP error with a bad checksum".into());
    }
    if o.src != i.dst || o.dst != i.src {
        return Some("ICMP error not from the destination back to the source".into());
    }
    let quoted = if v6 {
        out.get(o.off + 8..o.end)
    } else {
        out.get(o.off + 8..o.off + 36)
    };
    let ok = quoted.is_some_and(|q| input.get(14..14 + q.len()) == Some(q))
        && (!v6 || out.len() <= 14 + 1280);
    (!ok).then(|| "ICMP error quoting something else, or over 1280 bytes".into())
}

/// A redirected ICMP error about a flow (of either family, and either family out): its
/// quoted packet belongs to a held flow.
fn icmp_error_breach(on: usize, input: &[u8], out: &[u8], held: &HashSet<Held>) -> Option<String> {
    let (Some(qi), Some(qo)) = (quoted(input), quoted(out)) else {
        return Some("ICMP error too short to quote ports".into());
    };
    let flow = if on == 2 {
        // To the consumer: the input quoted our packet to the target.
        let (s, d, sp, dp, p) = qi;
        (s, sp, d, dp, p)
    } else {
        // To the target: the output quotes what the target sent.
        let (s, d, sp, dp, p) = qo;
        (d, dp, s, sp, p)
    };
    (!held.contains(&flow)).then(|| format!("ICMP error about a flow nobody made: {flow:?}"))
}

/// A redirected TCP or UDP frame: from the provider only along a held flow; from a
/// consumer only from its service's NLB address to its target, from an allowed source
/// that is no endpoint address, to a listener (then its flow is held).
fn along_a_flow_breach(
    on: usize,
    (i, input): (&Packet, &[u8]),
    (o, out): (&Packet, &[u8]),
    held: &mut HashSet<Held>,
) -> Option<String> {
    if input.len() < i.off + 4 || out.len() < o.off + 4 {
        return Some("TCP or UDP without ports".into());
    }
    let (isp, idp) = (be16(input, i.off), be16(input, i.off + 2));
    let (sport, dport) = (be16(out, o.off), be16(out, o.off + 2));
    if on == 2 {
        let flow = (i.dst, idp, i.src, isp, i.proto);
        return (!held.contains(&flow)).then(|| format!("provider frame along no flow: {flow:?}"));
    }
    let listener = matches!((o.proto, idp, dport), (6, 443, 8443) | (17, 53, 5353));
    let fits = service(on, i.dst)
        .is_some_and(|(nlbs, targets)| nlbs.contains(&o.src) && targets.contains(&o.dst));
    if !fits
        || !allowed(on, i.src)
        || endpoint_addresses(on).contains(&i.src)
        || !listener
        || i.proto != o.proto
    {
        return Some(format!(
            "consumer frame {} -> {}:{idp} went out as {}:{sport} -> {}:{dport}",
            i.src, i.dst, o.src, o.dst
        ));
    }
    held.insert((o.src, sport, o.dst, dport, o.proto));
    None
}

fn addr6(f: &[u8], at: usize) -> Ipv6Addr {
    Ipv6Addr::from(<[u8; 16]>::try_from(&f[at..at + 16]).expect("16 bytes"))
}

/// The upper layer of the IPv6 packet in `f`: protocol, its offset in `f`, the packet's
/// end. None if the frame is no whole IPv6 packet the walk accepts.
fn upper6(f: &[u8]) -> Option<(u8, usize, usize)> {
    if f.len() < 54 || be16(f, 12) != 0x86dd || f[14] >> 4 != 6 {
        return None;
    }
    let end = 54 + usize::from(be16(f, 18));
    let (proto, off) = pl_common::xlat::walk_ipv6(f.get(14..end)?).ok()?;
    Some((proto, 14 + off, end))
}

/// Whether the TCP/UDP/ICMPv6 checksum of the IPv6 packet in `f` verifies over the
/// pseudo-header (a UDP checksum of 0 does not: it is invalid in IPv6).
fn l4_ok6(f: &[u8]) -> Option<bool> {
    let (proto, off, end) = upper6(f)?;
    let seg = f.get(off..end)?;
    let (src, dst) = (f[22..38].try_into().ok()?, f[38..54].try_into().ok()?);
    let len = u32::try_from(seg.len()).ok()?;
    let sum = checksum::sum(
        seg,
        pl_common::xlat::pseudo_header_sum_v6(src, dst, proto, len),
    );
    let zero_udp = proto == 17 && seg.get(6..8) == Some(&[0, 0]);
    Some(checksum::fold(sum) == 0xffff && !zero_udp)
}

fn total(ebpf: &Ebpf, pick: &dyn Fn(&str) -> bool) -> u64 {
    let mut n = 0;
    for slot in 0..IFACES.len() {
        let s =
            dataplane::iface_stats(ebpf, slot as u32).unwrap_or_else(|e| panic!("{}", chain(e)));
        n += I::ALL
            .iter()
            .filter(|c| pick(c.name()))
            .map(|c| s.get(*c))
            .sum::<u64>();
    }
    // The lab's four endpoints: billing's and ledger's in acme and globex.
    for id in 0..4 {
        let s = dataplane::endpoint_stats(ebpf, id).unwrap_or_else(|e| panic!("{}", chain(e)));
        n += E::ALL
            .iter()
            .filter(|c| pick(c.name()))
            .map(|c| s.get(*c))
            .sum::<u64>();
    }
    n
}

/// What a fuzz run saw: frames redirected, flows made, drops and drops under a reason,
/// (frames passed, passed_not_our_mac), and breaches (at most 10).
struct Outcome {
    redirected: u64,
    flows: usize,
    flows6: usize,
    crossed: (u64, u64),
    drops: u64,
    reasons: u64,
    passes: (u64, u64),
    /// Time exceeded sent, ICMP and ICMPv6 errors translated: what the oracle checked.
    icmp: (u64, u64),
    findings: Vec<String>,
}

/// A fuzzed frame: a seed, mutated, or (a few in a hundred) pure noise after the Ethernet
/// header; the interface it arrives on.
fn fuzzed(rng: &mut Rng, seeds: &[(usize, Vec<u8>)]) -> (usize, Vec<u8>) {
    let (on, mut f) = seeds[rng.below(seeds.len())].clone();
    // A few in a hundred are pure noise after the Ethernet header.
    if rng.below(100) < 3 {
        f.truncate(14);
        f.extend((0..rng.below(80)).map(|_| rng.next_u64() as u8));
    } else {
        mutate(rng, &mut f);
    }
    (on, f)
}

/// Runs `frames` fuzzed frames from `seed` through the loaded program; `ifindex` and `fw`
/// are the interfaces' indexes and MACs, in [`IFACES`] order.
fn fuzz(ebpf: &mut Ebpf, (ifindex, fw): (&[u32], &[Mac; 3]), seed: u64, frames: usize) -> Outcome {
    let seeds = seeds(fw);
    let mut rng = Rng(seed);
    let mut held = HashSet::new();
    let (mut redirected, mut passed, mut findings) = (0u64, 0u64, Vec::new());
    // Redirected frames that changed family: (IPv4 to IPv6, IPv6 to IPv4).
    let mut crossed = (0u64, 0u64);
    for n in 0..frames {
        let (on, f) = fuzzed(&mut rng, &seeds);
        let (action, out) = xdp_test_run(ebpf, ifindex[on], &f);
        let breach = match action {
            XDP_DROP => None,
            // Only a frame for another host (not our MAC, not broadcast), untouched.
            XDP_PASS => {
                passed += 1;
                (f[..6] == fw[on] || f[..6] == [0xff; 6] || out != f)
                    .then(|| "passed a frame addressed to us, or changed it".to_owned())
            }
            XDP_REDIRECT => {
                redirected += 1;
                match (be16(&f, 12), out.get(12..14)) {
                    (0x0800, Some([0x86, 0xdd])) => crossed.0 += 1,
                    (0x86dd, Some([8, 0])) => crossed.1 += 1,
                    _ => {}
                }
                check_redirect(on, &f, &out, &mut held)
            }
            other => Some(format!("action {other}")),
        };
        if let Some(why) = breach {
            findings.push(format!(
                "frame {n} on {}: {why}\n  input  {f:02x?}\n  output {out:02x?}",
                IFACES[on]
            ));
            if findings.len() >= 10 {
                break;
            }
        }
    }
    // Every drop is counted under a reason (or as an ARP learned from a reply); an
    // expired TTL is refused but answered, not dropped.
    let drops = total(ebpf, &|c| c == "xdp_drop");
    let reasons = total(ebpf, &|c| {
        c.starts_with("dropped_")
            || c.starts_with("refused_")
            || c == "arp_learned"
            || c == "ndp_learned"
    }) - total(ebpf, &|c| c == "icmp_time_exceeded");
    let passes = (passed, total(ebpf, &|c| c == "passed_not_our_mac"));
    let icmp = (
        total(ebpf, &|c| c == "icmp_time_exceeded"),
        total(ebpf, &|c| c == "icmp_translated"),
    );
    Outcome {
        redirected,
        flows: held.len(),
        flows6: held.iter().filter(|h| h.0.is_ipv6()).count(),
        crossed,
        drops,
        reasons,
        passes,
        icmp,
        findings,
    }
}

#[test]
fn fuzzed_frames_never_abort_break_checksums_or_policy() {
    require_kernel!("fuzzed_frames_never_abort_break_checksums_or_policy");
    let frames: usize = std::env::var("PL_FUZZ_FRAMES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let seed = pl_tests::seed("FUZZ");
    println!(
        "fuzz: {frames} frames, seed {seed} (replay: PL_FUZZ_SEED={seed} PL_FUZZ_FRAMES={frames})"
    );
    let lab = TestLab::up("fz");
    let fw = lab.fw_macs();
    let result = netns::run_in(&lab.fw_ns(), || {
        let neigh = Neighbors::from([
            ((2, Ipv4Addr::from(T1).into()), TM),
            ((2, Ipv4Addr::from(T2).into()), TM),
            ((2, T1_6.into()), TM),
            ((2, T2_6.into()), TM),
        ]);
        let (mut ebpf, model) = programmed(&family::config(), 4096, &neigh);
        let ifindex: Vec<u32> = IFACES
            .iter()
            .map(|i| {
                model
                    .networks
                    .iter()
                    .find(|n| n.interface == *i)
                    .expect("network")
                    .ifindex
            })
            .collect();
        fuzz(&mut ebpf, (&ifindex, &fw), seed, frames)
    })
    .unwrap_or_else(|e| panic!("{}", chain(e)));
    let Outcome {
        redirected,
        flows,
        flows6,
        crossed,
        drops,
        reasons,
        passes,
        icmp,
        findings,
    } = result;
    println!(
        "fuzz: {redirected} redirected ({} IPv4 to IPv6, {} IPv6 to IPv4), {flows} flows made \
         ({flows6} to IPv6 targets), {drops} dropped, {} time exceeded sent, {} errors translated",
        crossed.0, crossed.1, icmp.0, icmp.1
    );
    assert!(
        findings.is_empty(),
        "seed {seed}: {} findings:\n{}",
        findings.len(),
        findings.join("\n")
    );
    assert_eq!(
        drops, reasons,
        "seed {seed}: drops without a reason counter"
    );
    assert_eq!(
        passes.0, passes.1,
        "seed {seed}: passes and passed_not_our_mac differ"
    );
    assert!(
        redirected > 0 && flows > flows6 && flows6 > 0,
        "seed {seed}: the fuzz never got an IPv4 and an IPv6 frame through: it tested nothing"
    );
    assert!(
        crossed.0 > 0 && crossed.1 > 0,
        "seed {seed}: no frame changed family each way ({crossed:?}): translation went untested"
    );
}
