//! Fuzzing the data path through BPF_PROG_TEST_RUN: random and mutated frames, seeded from
//! fixture-like frames, against the real object programmed from the lab config.
//!
//! Every frame must come out dropped or redirected (never aborted), every redirected frame
//! must be well formed with a verifying IPv4 checksum and an L4/ICMP checksum exactly as
//! valid as the input's, and policy must hold: consumer frames reach only a target through
//! an NLB address, from an allowed source, to an endpoint's listener; provider frames (and
//! ICMP errors) reach a consumer only along a flow a consumer made. At the end every drop
//! must be counted under a reason.
//!
//! `PL_FUZZ_FRAMES` sets the count (default 100 000; `cargo xtask fuzz` runs 1 000 000) and
//! `PL_FUZZ_SEED` replays a run; the seed is printed.

use std::{
    collections::HashSet,
    net::{Ipv4Addr, Ipv6Addr},
};

use aya::Ebpf;
use pl_common::{
    checksum,
    proto::{XDP_DROP, XDP_PASS, XDP_REDIRECT},
    stats::{EndpointCounter as E, IfaceCounter as I},
};
use pl_tests::{
    Rng, TestLab, chain, programmed, require_kernel,
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
    lab::LAB_CONFIG,
    lab::netns,
    plan::Neighbors,
};

const NLBS: [[u8; 4]; 2] = [NLB1, NLB2];
const CA: Mac = [2, 0, 0, 0, 0x0a, 1];
const TM: Mac = [2, 0, 0, 0, 0x09, 0x11];

/// xorshift64*: small, seedable, good enough to fuzz with.
/// A provider-side tuple of a flow a consumer made: (nlb, snat port, target, target port,
/// protocol).
type Held = (Ipv4Addr, u16, Ipv4Addr, u16, u8);
/// The same for an IPv6 flow.
type Held6 = (Ipv6Addr, u16, Ipv6Addr, u16, u8);

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
    out
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

/// What a redirected frame must satisfy; a description of the breach if it does not.
fn check_redirect(
    on: usize,
    input: &[u8],
    out: &[u8],
    held: &mut HashSet<Held>,
    held6: &mut HashSet<Held6>,
) -> Option<String> {
    if out.len() < 14 {
        return Some("runt output".into());
    }
    match be16(out, 12) {
        0x86dd => return check_redirect6(on, input, out, held6),
        0x0806 => {
            return (out.len() < 42 || be16(out, 20) != 2)
                .then(|| "ARP output that is no reply".into());
        }
        0x0800 => {}
        t => return Some(format!("output EtherType {t:#06x}")),
    }
    if out.len() < 34 || out[14] != 0x45 || usize::from(be16(out, 16)) + 14 > out.len() {
        return Some("output IPv4 header malformed".into());
    }
    if !checksum::ipv4_header_ok(out[14..34].try_into().expect("20 bytes")) {
        return Some("output IPv4 checksum does not verify".into());
    }
    let proto = out[23];
    let (src, dst) = (addr(out, 26), addr(out, 30));
    if proto == 1 && out.len() >= 70 {
        // A time exceeded for a packet whose TTL ran out here goes back to its sender,
        // from the address it was sent to, quoting it.
        if input.len() >= 42 && input[22] <= 1 && out[34] == 11 && out[42..70] == input[14..42] {
            return (src != addr(input, 30) || dst != addr(input, 26) || l4_ok(out) != Some(true))
                .then(|| {
                    "time exceeded not back to the sender from our address, or with a bad checksum"
                        .into()
                });
        }
    }
    if l4_ok(input) != l4_ok(out) {
        return Some(format!(
            "L4 checksum validity changed: {:?} -> {:?}",
            l4_ok(input),
            l4_ok(out)
        ));
    }
    if proto == 1 {
        return icmp_error_breach(on, input, out, held);
    }
    along_a_flow_breach(on, input, out, held)
}

/// A redirected ICMP error must be about a flow: its quoted packet belongs to a held flow.
fn icmp_error_breach(on: usize, input: &[u8], out: &[u8], held: &HashSet<Held>) -> Option<String> {
    if out.len() < 62 {
        return Some("ICMP output too short to quote a packet".into());
    }
    // An ICMP error about a flow: its quoted packet belongs to a held flow.
    let (qs, qd, qsp, qdp, qp) = (
        addr(out, 54),
        addr(out, 58),
        be16(out, 62),
        be16(out, 64),
        out[51],
    );
    let flow = if on == 2 {
        // To the consumer: the input quoted our packet to the target.
        let (is, id, isp, idp) = (
            addr(input, 54),
            addr(input, 58),
            be16(input, 62),
            be16(input, 64),
        );
        (is, isp, id, idp, input[51])
    } else {
        (qd, qdp, qs, qsp, qp)
    };
    (!held.contains(&flow)).then(|| format!("ICMP error about a flow nobody made: {flow:?}"))
}

/// A redirected TCP or UDP frame: from the provider only along a held flow; from a
/// consumer only from an NLB address to a target, from an allowed source to a listener
/// (then its flow is held).
fn along_a_flow_breach(
    on: usize,
    input: &[u8],
    out: &[u8],
    held: &mut HashSet<Held>,
) -> Option<String> {
    let proto = out[23];
    let (src, dst) = (addr(out, 26), addr(out, 30));
    let nlbs = NLBS.map(Ipv4Addr::from);
    let targets = [Ipv4Addr::from(T1), Ipv4Addr::from(T2)];
    let (sport, dport) = (be16(out, 34), be16(out, 36));
    if on == 2 {
        let (is, id, isp, idp) = (
            addr(input, 26),
            addr(input, 30),
            be16(input, 34),
            be16(input, 36),
        );
        let flow = (id, idp, is, isp, proto);
        return (!held.contains(&flow)).then(|| format!("provider frame along no flow: {flow:?}"));
    }
    // Consumer to provider: NLB address to a target, from an allowed source to a listener.
    let (isrc, idst, idport) = (
        Ipv4Addr::from(<[u8; 4]>::try_from(&input[26..30]).ok()?),
        addr(input, 30),
        be16(input, 36),
    );
    let allowed = on == 1 || isrc.octets()[..3] == [10, 0, 0] && isrc.octets()[3] < 128;
    let ours = [EP1, EP2].map(Ipv4Addr::from).contains(&isrc);
    let listener = matches!((proto, idport, dport), (6, 443, 8443) | (17, 53, 5353));
    if !nlbs.contains(&src)
        || !targets.contains(&dst)
        || !allowed
        || ours
        || !listener
        || ![EP1, EP2].map(Ipv4Addr::from).contains(&idst)
    {
        return Some(format!(
            "consumer frame {isrc} -> {idst}:{idport} went out as {src}:{sport} -> {dst}:{dport}"
        ));
    }
    held.insert((src, sport, dst, dport, proto));
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

/// A redirected IPv6 frame: a neighbour advertisement from one of our addresses answering
/// a solicitation, or TCP/UDP under the same policy as IPv4's.
fn check_redirect6(
    on: usize,
    input: &[u8],
    out: &[u8],
    held: &mut HashSet<Held6>,
) -> Option<String> {
    let Some((proto, off, _)) = upper6(out) else {
        return Some("output IPv6 packet malformed".into());
    };
    let (src, dst) = (addr6(out, 22), addr6(out, 38));
    let ours = [EP6_Z1, EP6_Z2, NLB6_Z1, NLB6_Z2];
    if proto == 58 && out[off] == 136 {
        let asked = upper6(input).is_some_and(|(p, o, _)| p == 58 && input[o] == 135);
        return (out[21] != 255 || !ours.contains(&src) || !asked || l4_ok6(out) != Some(true))
            .then(|| {
                format!("advertisement from {src} to {dst} answering no solicitation, or bad")
            });
    }
    if proto == 58 && upper6(input).is_some_and(|(p, _, _)| p != 58) {
        return generated6_breach(input, out);
    }
    if l4_ok6(input) != l4_ok6(out) {
        return Some(format!(
            "IPv6 L4 checksum validity changed: {:?} -> {:?}",
            l4_ok6(input),
            l4_ok6(out)
        ));
    }
    let Some((_, ioff, _)) = upper6(input) else {
        return Some("redirected an IPv6 frame the walk refuses".into());
    };
    if proto == 58 {
        return icmp6_error_breach(on, input, out, held);
    }
    let (sport, dport) = (be16(out, off), be16(out, off + 2));
    let (isrc, idst, isp, idp) = (
        addr6(input, 22),
        addr6(input, 38),
        be16(input, ioff),
        be16(input, ioff + 2),
    );
    if on == 2 {
        let flow = (idst, idp, isrc, isp, proto);
        return (!held.contains(&flow))
            .then(|| format!("IPv6 provider frame along no flow: {flow:?}"));
    }
    let o = isrc.octets();
    let allowed = on == 1 || (o[..15] == CLIENT6.octets()[..15] && o[15] < 0x80);
    let listener = matches!((proto, idp, dport), (6, 443, 8443) | (17, 53, 5353));
    if ![NLB6_Z1, NLB6_Z2].contains(&src)
        || ![T1_6, T2_6].contains(&dst)
        || !allowed
        || ours.contains(&isrc)
        || !listener
        || ![EP6_Z1, EP6_Z2].contains(&idst)
    {
        return Some(format!(
            "IPv6 consumer frame [{isrc}] -> [{idst}]:{idp} went out as [{src}]:{sport} -> [{dst}]:{dport}"
        ));
    }
    held.insert((src, sport, dst, dport, proto));
    None
}

/// An ICMPv6 error pl sent back for a TCP or UDP packet: time exceeded only for hop limit
/// 1 or 0, never packet too big (the fuzz's frames fit every MTU); to the packet's sender
/// from its destination, with a verifying checksum, quoting the packet from its start
/// within 1280 bytes.
fn generated6_breach(input: &[u8], out: &[u8]) -> Option<String> {
    let (ty, hop) = (out[54], input[21]);
    if ty != 3 || hop > 1 {
        return Some(format!("ICMPv6 type {ty} sent back for hop limit {hop}"));
    }
    if l4_ok6(out) != Some(true) {
        return Some("ICMPv6 error with a bad checksum".into());
    }
    if addr6(out, 22) != addr6(input, 38) || addr6(out, 38) != addr6(input, 22) {
        return Some("ICMPv6 error not from the destination back to the source".into());
    }
    let quoted = &out[62..];
    if out.len() > 14 + 1280 || input.get(14..14 + quoted.len()) != Some(quoted) {
        return Some("ICMPv6 error quoting something else, or over 1280 bytes".into());
    }
    None
}

/// A redirected ICMPv6 error about a flow: its quoted packet belongs to a held flow, and
/// its checksum is as valid as the input's.
fn icmp6_error_breach(
    on: usize,
    input: &[u8],
    out: &[u8],
    held: &HashSet<Held6>,
) -> Option<String> {
    if l4_ok6(input) != l4_ok6(out) {
        return Some("ICMPv6 checksum validity changed".into());
    }
    if out.len() < 106 || input.len() < 106 {
        return Some("ICMPv6 error too short to quote ports".into());
    }
    let quoted = |f: &[u8]| {
        (
            addr6(f, 70),
            addr6(f, 86),
            be16(f, 102),
            be16(f, 104),
            f[68],
        )
    };
    let flow = if on == 2 {
        // To the consumer: the input quoted our packet to the target.
        let (s, d, sp, dp, p) = quoted(input);
        (s, sp, d, dp, p)
    } else {
        // To the target: the output quotes what the target sent.
        let (s, d, sp, dp, p) = quoted(out);
        (d, dp, s, sp, p)
    };
    (!held.contains(&flow)).then(|| format!("ICMPv6 error about a flow nobody made: {flow:?}"))
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
    let (mut held, mut held6) = (HashSet::new(), HashSet::new());
    let (mut redirected, mut passed, mut findings) = (0u64, 0u64, Vec::new());
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
                check_redirect(on, &f, &out, &mut held, &mut held6)
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
        flows: held.len() + held6.len(),
        flows6: held6.len(),
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
        let (mut ebpf, model) = programmed(LAB_CONFIG, 4096, &neigh);
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
        drops,
        reasons,
        passes,
        icmp,
        findings,
    } = result;
    println!(
        "fuzz: {redirected} redirected, {flows} flows made ({flows6} IPv6), {drops} dropped, \
         {} time exceeded sent, {} errors translated",
        icmp.0, icmp.1
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
}
