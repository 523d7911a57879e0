//! Data-path packet fixtures: a table of (description, ingress interface, input frame,
//! expected action, expected output frame, expected counter deltas) run in order through
//! BPF_PROG_TEST_RUN against the real object, programmed by the real loader from a config.
//! The table is stateful, as a flow table is: later rows see the flows earlier rows made.
//!
//! Expected frames are built from scratch by the frame builders, so every checksum in the
//! output is checked against a full recomputation, not against the data path's own
//! incremental arithmetic. Every interface's and endpoint's counters are compared; a
//! counter a row does not name must not move.

use std::{collections::HashSet, net::Ipv4Addr, path::PathBuf};

use aya::Ebpf;
use pl_common::{
    flow::FlowKey,
    proto::{XDP_DROP, XDP_PASS, XDP_REDIRECT},
    settings::{SNAT_PROBES, snat_port},
    stats::{EndpointCounter as E, IfaceCounter as I},
};
use pl_tests::{
    TestLab, chain, check_frame, require_kernel,
    wire::{CLIENT, EP1, EP2, IFACES, NLB1, OUTSIDER, T1, T2},
    xdp_test_run,
};
use pl_userspace::{
    apply::apply,
    config::Source,
    dataplane,
    frame::{
        Ipv4, Mac, TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN, arp_reply, arp_request, ethernet, ipv4_frame,
    },
    lab::netns,
    lab::{LAB_CONFIG, Lab},
    model::{LiveInterfaces, Model},
    plan::{Neighbors, Plan},
};

const PENDING: [u8; 4] = [10, 0, 0, 102];
/// A router on the provider network, and the MTU it reports.
const ROUTER: [u8; 4] = [10, 9, 0, 1];
const MTU_1400: [u8; 4] = [0, 0, 0x05, 0x78];
const CA: Mac = [2, 0, 0, 0, 0x0a, 1];
const CG: Mac = [2, 0, 0, 0, 0x0b, 1];
const T1_MAC: Mac = [2, 0, 0, 0, 0x09, 0x11];
const T2_MAC: Mac = [2, 0, 0, 0, 0x09, 0x12];
const ENDPOINTS: [&str; 3] = ["acme-billing", "globex-billing", "acme-pending"];

/// The lab config plus an endpoint the service has not accepted and a 3-port SNAT range.
fn config() -> String {
    format!(
        "{LAB_CONFIG}\n[[endpoint]]\nname = \"acme-pending\"\nservice = \"billing\"\nnetwork = \"acme\"\naddresses = [{{ ip = \"10.0.0.102\", zone = \"z1\" }}]\n\n[limits]\nsnat_port_min = 40000\nsnat_port_max = 40002\n"
    )
}

#[derive(Clone, Copy)]
enum Delta {
    I(&'static str, I, u64),
    E(&'static str, E, u64),
}

struct Fx {
    desc: &'static str,
    on: &'static str,
    input: Vec<u8>,
    action: u32,
    /// None: leaves unchanged (drops, and what is passed).
    output: Option<Vec<u8>>,
    deltas: Vec<Delta>,
}

/// Ingress counters every frame moves.
fn seen(on: &'static str, f: &[u8], class: I) -> Vec<Delta> {
    vec![
        Delta::I(on, I::RxPackets, 1),
        Delta::I(on, I::RxBytes, f.len() as u64),
        Delta::I(on, class, 1),
    ]
}

fn dropped(desc: &'static str, on: &'static str, input: Vec<u8>, class: I, why: Delta) -> Fx {
    let mut deltas = seen(on, &input, class);
    deltas.extend([why, Delta::I(on, I::XdpDrop, 1)]);
    Fx {
        desc,
        on,
        input,
        action: XDP_DROP,
        output: None,
        deltas,
    }
}

fn refused(desc: &'static str, input: Vec<u8>, class: I, endpoint: &'static str, why: E) -> Fx {
    dropped(desc, "fw-acme", input, class, Delta::E(endpoint, why, 1))
}

/// A row whose frame leaves, redirected, as `output`; `extra` are its deltas beyond the
/// ingress counters and the verdict.
fn redirected(
    desc: &'static str,
    on: &'static str,
    class: I,
    (input, output): (Vec<u8>, Vec<u8>),
    extra: &[Delta],
) -> Fx {
    let mut deltas = seen(on, &input, class);
    deltas.push(Delta::I(on, I::XdpRedirect, 1));
    deltas.extend_from_slice(extra);
    Fx {
        desc,
        on,
        input,
        action: XDP_REDIRECT,
        output: Some(output),
        deltas,
    }
}

/// An endpoint's packet and byte counters for a frame of `len` bytes arriving on `on`.
fn carried(on: &'static str, endpoint: &'static str, len: usize) -> [Delta; 2] {
    let (p, b) = if on == "fw-prov" {
        (E::ToConsumerPackets, E::ToConsumerBytes)
    } else {
        (E::ToProviderPackets, E::ToProviderBytes)
    };
    [Delta::E(endpoint, p, 1), Delta::E(endpoint, b, len as u64)]
}

/// Forwarded along a flow (new or not) of `endpoint`.
fn forwarded(
    desc: &'static str,
    on: &'static str,
    input: Vec<u8>,
    output: Vec<u8>,
    class: I,
    endpoint: &'static str,
    new: bool,
) -> Fx {
    let mut extra = carried(on, endpoint, input.len()).to_vec();
    if new {
        extra.push(Delta::E(endpoint, E::NewFlows, 1));
    }
    redirected(desc, on, class, (input, output), &extra)
}

/// An ICMP error about a flow of `endpoint`, translated and sent to the flow's other side.
fn icmp_translated(
    desc: &'static str,
    on: &'static str,
    input: Vec<u8>,
    output: Vec<u8>,
    endpoint: &'static str,
) -> Fx {
    let mut extra = carried(on, endpoint, input.len()).to_vec();
    extra.push(Delta::I(on, I::IcmpTranslated, 1));
    redirected(desc, on, I::Ipv4Other, (input, output), &extra)
}

/// A TTL that expires here: an ICMP time exceeded goes back out of the same interface.
fn time_exceeded(
    desc: &'static str,
    on: &'static str,
    input: Vec<u8>,
    output: Vec<u8>,
    class: I,
    endpoint: &'static str,
) -> Fx {
    let extra = [
        Delta::I(on, I::IcmpTimeExceeded, 1),
        Delta::E(endpoint, E::RefusedTtl, 1),
    ];
    redirected(desc, on, class, (input, output), &extra)
}

fn arp_answered(desc: &'static str, on: &'static str, input: Vec<u8>, output: Vec<u8>) -> Fx {
    redirected(
        desc,
        on,
        I::Arp,
        (input, output),
        &[Delta::I(on, I::ArpReplied, 1)],
    )
}

/// `f` padded with zeros to Ethernet's 60-byte minimum, as a NIC pads a short frame.
fn padded(mut f: Vec<u8>) -> Vec<u8> {
    f.resize(f.len().max(60), 0);
    f
}

const fn ip(src: [u8; 4], dst: [u8; 4], ttl: u8) -> Ipv4 {
    Ipv4 { src, dst, ttl }
}

/// The SNAT port the data path must pick for `key`, given the ports already held.
fn expect_port(
    key: &FlowKey,
    settings: &pl_common::settings::Settings,
    taken: &mut HashSet<u16>,
) -> u16 {
    let (h, orig) = (key.hash(), u16::from_be(key.sport_be));
    (0..SNAT_PROBES)
        .map(|i| snat_port(settings, orig, h, i))
        .find(|p| taken.insert(*p))
        .expect("the range has a free port")
}

fn key(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16, network: u16, proto: u8) -> FlowKey {
    FlowKey {
        src_be: u32::from_ne_bytes(src),
        dst_be: u32::from_ne_bytes(dst),
        sport_be: sport.to_be(),
        dport_be: dport.to_be(),
        network,
        proto,
        _pad: 0,
    }
}

fn fixtures(fw: &[Mac; 3], settings: &pl_common::settings::Settings) -> Vec<Fx> {
    let [fa, fg, fp] = *fw;
    let mut tcp_ports = HashSet::new();
    let mut udp_ports = HashSet::new();
    let f1 = expect_port(
        &key(CLIENT, EP1, 40000, 443, 0, 6),
        settings,
        &mut tcp_ports,
    );
    let f2 = expect_port(
        &key(CLIENT, EP1, 40000, 443, 1, 6),
        settings,
        &mut tcp_ports,
    );
    let u1 = expect_port(
        &key(CLIENT, EP1, 40000, 53, 0, 17),
        settings,
        &mut udp_ports,
    );
    let u2 = expect_port(
        &key(CLIENT, EP1, 40020, 53, 0, 17),
        settings,
        &mut udp_ports,
    );
    let f3 = expect_port(
        &key(CLIENT, EP1, 40005, 443, 0, 6),
        settings,
        &mut tcp_ports,
    );
    assert_eq!(
        f1, 40000,
        "probe 0 keeps the consumer's port when the range allows"
    );

    let syn = |src, sport: u16, dst, dport: u16, ttl| {
        ip(src, dst, ttl).tcp(sport, dport, 1000, 0, TCP_SYN, &[])
    };
    let mut options = ipv4_frame(fa, CA, &syn(CLIENT, 40030, EP1, 443, 64));
    options.splice(34..34, [1, 1, 1, 1]); // four NOPs: IHL 6
    options[14] = 0x46;
    options[17] += 4;
    let mut first_fragment = ipv4_frame(fa, CA, &ip(CLIENT, EP1, 64).udp(40040, 53, b"frag"));
    first_fragment[20] |= 0x20; // more fragments
    let mut truncated = ipv4_frame(fa, CA, &syn(CLIENT, 40050, EP1, 443, 64));
    truncated.truncate(14 + 20 + 12);
    let mut udp_zero = ipv4_frame(fa, CA, &ip(CLIENT, EP1, 64).udp(40000, 53, b"zero"));
    udp_zero[40..42].fill(0);
    let mut udp_zero_out = ipv4_frame(T1_MAC, fp, &ip(NLB1, T1, 63).udp(u1, 5353, b"zero"));
    udp_zero_out[40..42].fill(0);
    let mut bad_htype = arp_request(CA, CLIENT, EP1);
    bad_htype[15] = 6;
    // Malformed variants of one good UDP datagram and one good SYN (headers at 14, 34).
    let good_udp = ipv4_frame(fa, CA, &ip(CLIENT, EP1, 64).udp(40060, 53, b"malformed"));
    let good_syn = ipv4_frame(fa, CA, &syn(CLIENT, 40061, EP1, 443, 64));
    let with = |f: &[u8], at: usize, bytes: &[u8]| {
        let mut f = f.to_vec();
        f[at..at + bytes.len()].copy_from_slice(bytes);
        f
    };
    let cut_udp = good_udp[..14 + 20 + 6].to_vec();
    let cut_icmp = ipv4_frame(fa, CA, &ip(CLIENT, EP1, 64).icmp_echo(1, 1))[..14 + 20 + 4].to_vec();
    let long_total = with(&good_udp, 16, &(20u16 + 8 + 9 + 1).to_be_bytes());
    let short_total = with(&good_udp, 16, &10u16.to_be_bytes());
    let ihl4 = with(&good_udp, 14, &[0x44]);
    let ihl15 = with(&good_udp, 14, &[0x4f]);
    let v6_in_v4 = with(&good_udp, 14, &[0x65]);
    let doff4 = with(&good_syn, 14 + 20 + 12, &[0x40]);
    let doff15 = with(&good_syn, 14 + 20 + 12, &[0xf0]);
    let udp_len0 = with(&good_udp, 14 + 20 + 4, &[0, 0]);
    let bad_ip_check = with(&good_udp, 14 + 10, &[good_udp[24] ^ 0x10, good_udp[25]]);
    let udp_long = with(&good_udp, 14 + 20 + 4, &200u16.to_be_bytes());
    let later_fragment = with(
        &ipv4_frame(fa, CA, &ip(CLIENT, EP1, 64).udp(40000, 53, b"tail")),
        20,
        &[0, 185],
    );

    let jumbo: Vec<u8> = (0..8972u32).map(|i| (i % 251) as u8).collect();
    let mut jumbo_cut = ipv4_frame(fa, CA, &ip(CLIENT, EP1, 64).udp(40000, 53, &jumbo));
    jumbo_cut.truncate(6000);
    // An error quoting only the source port of a reply: the destination port (40000, a
    // live flow's) sits in Ethernet padding after the message, where it must not be read.
    // A reply naming another host's MAC as the sender: learning it would point flows there.
    let mut arp_spoof = arp_reply(T2_MAC, T2, fp, NLB1);
    arp_spoof[22..28].copy_from_slice(&[2, 0, 0, 0, 0x09, 0x66]);
    let mut short_quote = ipv4_frame(
        fa,
        CA,
        &ip(CLIENT, EP1, 64).icmp_error(
            3,
            3,
            [0; 4],
            &ip(EP1, CLIENT, 63).udp(53, 40000, b"answer")[..22],
        ),
    );
    short_quote.extend_from_slice(&40000u16.to_be_bytes());
    short_quote.resize(80, 0);

    vec![
        // ARP: answered for our addresses on their own network only; targets learned.
        arp_answered(
            "ARP for an endpoint address",
            "fw-acme",
            arp_request(CA, CLIENT, EP1),
            arp_reply(fa, EP1, CA, CLIENT),
        ),
        arp_answered(
            "ARP for the zone-2 endpoint address, other network",
            "fw-globex",
            arp_request(CG, CLIENT, EP2),
            arp_reply(fg, EP2, CG, CLIENT),
        ),
        arp_answered(
            "ARP for an NLB address on the provider network",
            "fw-prov",
            arp_request(T1_MAC, T1, NLB1),
            arp_reply(fp, NLB1, T1_MAC, T1),
        ),
        dropped(
            "ARP for an address that is not ours",
            "fw-acme",
            arp_request(CA, CLIENT, [10, 0, 0, 55]),
            I::Arp,
            Delta::I("fw-acme", I::DroppedArp, 1),
        ),
        dropped(
            "ARP for an NLB address asked on a consumer network",
            "fw-acme",
            arp_request(CA, CLIENT, NLB1),
            I::Arp,
            Delta::I("fw-acme", I::DroppedArp, 1),
        ),
        dropped(
            "ARP for an endpoint address asked on the provider network",
            "fw-prov",
            arp_request(T1_MAC, T1, EP1),
            I::Arp,
            Delta::I("fw-prov", I::DroppedArp, 1),
        ),
        dropped(
            "ARP reply from a target to an NLB address: learned",
            "fw-prov",
            arp_reply(T2_MAC, T2, fp, NLB1),
            I::Arp,
            Delta::I("fw-prov", I::ArpLearned, 1),
        ),
        dropped(
            "ARP reply whose sender MAC is not the frame's source: not learned",
            "fw-prov",
            arp_spoof,
            I::Arp,
            Delta::I("fw-prov", I::DroppedArp, 1),
        ),
        dropped(
            "ARP reply to an address that is not an NLB address",
            "fw-prov",
            arp_reply(T2_MAC, T2, fp, T1),
            I::Arp,
            Delta::I("fw-prov", I::DroppedArp, 1),
        ),
        dropped(
            "ARP with a hardware type other than Ethernet",
            "fw-acme",
            bad_htype,
            I::Arp,
            Delta::I("fw-acme", I::DroppedArp, 1),
        ),
        // Forward and reverse translation.
        forwarded(
            "TCP SYN to an endpoint: new flow, DNAT to the zone's target, SNAT to its NLB address",
            "fw-acme",
            ipv4_frame(fa, CA, &syn(CLIENT, 40000, EP1, 443, 64)),
            ipv4_frame(T1_MAC, fp, &syn(NLB1, f1, T1, 8443, 63)),
            I::Ipv4Tcp,
            "acme-billing",
            true,
        ),
        forwarded(
            "TCP data on the established flow",
            "fw-acme",
            ipv4_frame(
                fa,
                CA,
                &ip(CLIENT, EP1, 64).tcp(40000, 443, 1001, 5001, TCP_ACK, b"hello"),
            ),
            ipv4_frame(
                T1_MAC,
                fp,
                &ip(NLB1, T1, 63).tcp(f1, 8443, 1001, 5001, TCP_ACK, b"hello"),
            ),
            I::Ipv4Tcp,
            "acme-billing",
            false,
        ),
        forwarded(
            "TCP SYN-ACK from the target: reverse-translated to the consumer",
            "fw-prov",
            ipv4_frame(
                fp,
                T1_MAC,
                &ip(T1, NLB1, 64).tcp(8443, f1, 5000, 1001, TCP_SYN | TCP_ACK, &[]),
            ),
            ipv4_frame(
                CA,
                fa,
                &ip(EP1, CLIENT, 63).tcp(443, 40000, 5000, 1001, TCP_SYN | TCP_ACK, &[]),
            ),
            I::Ipv4Tcp,
            "acme-billing",
            false,
        ),
        forwarded(
            "the same client tuple from the overlapping network: its own flow and SNAT port",
            "fw-globex",
            ipv4_frame(fg, CG, &syn(CLIENT, 40000, EP1, 443, 64)),
            ipv4_frame(T1_MAC, fp, &syn(NLB1, f2, T1, 8443, 63)),
            I::Ipv4Tcp,
            "globex-billing",
            true,
        ),
        forwarded(
            "the target's reply to the second flow goes to the second network",
            "fw-prov",
            ipv4_frame(
                fp,
                T1_MAC,
                &ip(T1, NLB1, 64).tcp(8443, f2, 7000, 1001, TCP_SYN | TCP_ACK, &[]),
            ),
            ipv4_frame(
                CG,
                fg,
                &ip(EP1, CLIENT, 63).tcp(443, 40000, 7000, 1001, TCP_SYN | TCP_ACK, &[]),
            ),
            I::Ipv4Tcp,
            "globex-billing",
            false,
        ),
        forwarded(
            "UDP to an endpoint: new flow, listener 53 -> target port 5353",
            "fw-acme",
            ipv4_frame(fa, CA, &ip(CLIENT, EP1, 64).udp(40000, 53, b"query")),
            ipv4_frame(T1_MAC, fp, &ip(NLB1, T1, 63).udp(u1, 5353, b"query")),
            I::Ipv4Udp,
            "acme-billing",
            true,
        ),
        forwarded(
            "Ethernet padding past the IPv4 total length is carried, the datagram translated",
            "fw-acme",
            padded(ipv4_frame(
                fa,
                CA,
                &ip(CLIENT, EP1, 64).udp(40000, 53, b"pad"),
            )),
            padded(ipv4_frame(
                T1_MAC,
                fp,
                &ip(NLB1, T1, 63).udp(u1, 5353, b"pad"),
            )),
            I::Ipv4Udp,
            "acme-billing",
            false,
        ),
        forwarded(
            "UDP with checksum 0 keeps checksum 0",
            "fw-acme",
            udp_zero,
            udp_zero_out,
            I::Ipv4Udp,
            "acme-billing",
            false,
        ),
        forwarded(
            "UDP with an odd payload length",
            "fw-acme",
            ipv4_frame(fa, CA, &ip(CLIENT, EP1, 64).udp(40020, 53, b"odd")),
            ipv4_frame(T1_MAC, fp, &ip(NLB1, T1, 63).udp(u2, 5353, b"odd")),
            I::Ipv4Udp,
            "acme-billing",
            true,
        ),
        forwarded(
            "UDP reply from the target",
            "fw-prov",
            ipv4_frame(fp, T1_MAC, &ip(T1, NLB1, 64).udp(5353, u2, b"answer!")),
            ipv4_frame(CA, fa, &ip(EP1, CLIENT, 63).udp(53, 40020, b"answer!")),
            I::Ipv4Udp,
            "acme-billing",
            false,
        ),
        // Refusals, each counted on its endpoint.
        refused(
            "no listener on the port",
            ipv4_frame(fa, CA, &syn(CLIENT, 40001, EP1, 444, 64)),
            I::Ipv4Tcp,
            "acme-billing",
            E::RefusedNoListener,
        ),
        refused(
            "source outside allowed_sources",
            ipv4_frame(fa, CA, &syn(OUTSIDER, 40001, EP1, 443, 64)),
            I::Ipv4Tcp,
            "acme-billing",
            E::RefusedSource,
        ),
        refused(
            "endpoint the service has not accepted",
            ipv4_frame(fa, CA, &syn(CLIENT, 40001, PENDING, 443, 64)),
            I::Ipv4Tcp,
            "acme-pending",
            E::RefusedNotAccepted,
        ),
        refused(
            "zone whose target has not answered ARP: no eligible target",
            ipv4_frame(fa, CA, &syn(CLIENT, 40001, EP2, 443, 64)),
            I::Ipv4Tcp,
            "acme-billing",
            E::RefusedNoTarget,
        ),
        time_exceeded(
            "TTL 1 on a new flow: time exceeded back to the consumer, from the endpoint address",
            "fw-acme",
            ipv4_frame(fa, CA, &syn(CLIENT, 40001, EP1, 443, 1)),
            ipv4_frame(
                CA,
                fa,
                &ip(EP1, CLIENT, 64).icmp_error(
                    11,
                    0,
                    [0; 4],
                    &syn(CLIENT, 40001, EP1, 443, 1)[..28],
                ),
            ),
            I::Ipv4Tcp,
            "acme-billing",
        ),
        time_exceeded(
            "TTL 1 on an established flow (traceroute): time exceeded from the endpoint address",
            "fw-acme",
            ipv4_frame(
                fa,
                CA,
                &ip(CLIENT, EP1, 1).tcp(40000, 443, 1001, 5001, TCP_ACK, b"hello"),
            ),
            ipv4_frame(
                CA,
                fa,
                &ip(EP1, CLIENT, 64).icmp_error(
                    11,
                    0,
                    [0; 4],
                    &ip(CLIENT, EP1, 1).tcp(40000, 443, 1001, 5001, TCP_ACK, b"hello")[..28],
                ),
            ),
            I::Ipv4Tcp,
            "acme-billing",
        ),
        forwarded(
            "a source port outside the SNAT range gets a port from it",
            "fw-acme",
            ipv4_frame(fa, CA, &syn(CLIENT, 40005, EP1, 443, 64)),
            ipv4_frame(T1_MAC, fp, &syn(NLB1, f3, T1, 8443, 63)),
            I::Ipv4Tcp,
            "acme-billing",
            true,
        ),
        refused(
            "every SNAT port for this target is held",
            ipv4_frame(fa, CA, &syn(CLIENT, 40006, EP1, 443, 64)),
            I::Ipv4Tcp,
            "acme-billing",
            E::RefusedSnatExhausted,
        ),
        // The provider cannot initiate; nothing but our addresses is reachable.
        dropped(
            "provider SYN to an NLB address with no flow",
            "fw-prov",
            ipv4_frame(fp, T1_MAC, &syn(T1, 40000, NLB1, 443, 64)),
            I::Ipv4Tcp,
            Delta::I("fw-prov", I::DroppedNoFlow, 1),
        ),
        dropped(
            "provider packet to a consumer address",
            "fw-prov",
            ipv4_frame(fp, T1_MAC, &syn(T1, 40000, CLIENT, 22, 64)),
            I::Ipv4Tcp,
            Delta::I("fw-prov", I::DroppedNotOurs, 1),
        ),
        dropped(
            "consumer packet to an address that is no endpoint",
            "fw-acme",
            ipv4_frame(fa, CA, &syn(CLIENT, 40000, [10, 0, 0, 55], 443, 64)),
            I::Ipv4Tcp,
            Delta::I("fw-acme", I::DroppedNotOurs, 1),
        ),
        dropped(
            "consumer packet to an NLB address (not in its network)",
            "fw-acme",
            ipv4_frame(fa, CA, &syn(CLIENT, 40000, NLB1, 443, 64)),
            I::Ipv4Tcp,
            Delta::I("fw-acme", I::DroppedNotOurs, 1),
        ),
        // ICMP errors about a flow: translated both ways (PMTU discovery through an endpoint).
        icmp_translated(
            "fragmentation needed from a provider router about a TCP flow: to the consumer, from the endpoint address",
            "fw-prov",
            ipv4_frame(
                fp,
                T2_MAC,
                &ip(ROUTER, NLB1, 64).icmp_error(
                    3,
                    4,
                    MTU_1400,
                    &syn(NLB1, f1, T1, 8443, 63)[..28],
                ),
            ),
            ipv4_frame(
                CA,
                fa,
                &ip(EP1, CLIENT, 63).icmp_error(
                    3,
                    4,
                    MTU_1400,
                    &syn(CLIENT, 40000, EP1, 443, 63)[..28],
                ),
            ),
            "acme-billing",
        ),
        icmp_translated(
            "fragmentation needed quoting the whole TCP header: its checksum is translated too",
            "fw-prov",
            ipv4_frame(
                fp,
                T2_MAC,
                &ip(ROUTER, NLB1, 64).icmp_error(3, 4, MTU_1400, &syn(NLB1, f1, T1, 8443, 63)),
            ),
            ipv4_frame(
                CA,
                fa,
                &ip(EP1, CLIENT, 63).icmp_error(3, 4, MTU_1400, &syn(CLIENT, 40000, EP1, 443, 63)),
            ),
            "acme-billing",
        ),
        icmp_translated(
            "time exceeded from a provider router about a UDP flow: to the consumer",
            "fw-prov",
            ipv4_frame(
                fp,
                T2_MAC,
                &ip(ROUTER, NLB1, 64).icmp_error(
                    11,
                    0,
                    [0; 4],
                    &ip(NLB1, T1, 63).udp(u1, 5353, b"query")[..28],
                ),
            ),
            ipv4_frame(
                CA,
                fa,
                &ip(EP1, CLIENT, 63).icmp_error(
                    11,
                    0,
                    [0; 4],
                    &ip(CLIENT, EP1, 63).udp(40000, 53, b"query")[..28],
                ),
            ),
            "acme-billing",
        ),
        dropped(
            "port unreachable quoting 2 bytes of UDP, the flow's other port in the padding",
            "fw-acme",
            short_quote,
            I::Ipv4Other,
            Delta::I("fw-acme", I::DroppedIcmp, 1),
        ),
        icmp_translated(
            "port unreachable from the consumer about a UDP reply: to the target, from the NLB address",
            "fw-acme",
            ipv4_frame(
                fa,
                CA,
                &ip(CLIENT, EP1, 64).icmp_error(
                    3,
                    3,
                    [0; 4],
                    &ip(EP1, CLIENT, 63).udp(53, 40000, b"answer")[..28],
                ),
            ),
            ipv4_frame(
                T1_MAC,
                fp,
                &ip(NLB1, T1, 63).icmp_error(
                    3,
                    3,
                    [0; 4],
                    &ip(T1, NLB1, 63).udp(5353, u1, b"answer")[..28],
                ),
            ),
            "acme-billing",
        ),
        dropped(
            "ICMP error quoting a tuple no flow holds",
            "fw-prov",
            ipv4_frame(
                fp,
                T2_MAC,
                &ip(ROUTER, NLB1, 64).icmp_error(3, 4, MTU_1400, &syn(NLB1, 1, T1, 8443, 63)[..28]),
            ),
            I::Ipv4Other,
            Delta::I("fw-prov", I::DroppedIcmp, 1),
        ),
        dropped(
            "ICMP error on globex quoting a flow that exists only on acme",
            "fw-globex",
            ipv4_frame(
                fg,
                CG,
                &ip(CLIENT, EP1, 64).icmp_error(
                    3,
                    3,
                    [0; 4],
                    &ip(EP1, CLIENT, 63).udp(53, 40020, b"answer")[..28],
                ),
            ),
            I::Ipv4Other,
            Delta::I("fw-globex", I::DroppedIcmp, 1),
        ),
        dropped(
            "ICMP redirect (not an error pl translates)",
            "fw-prov",
            ipv4_frame(
                fp,
                T2_MAC,
                &ip(ROUTER, NLB1, 64).icmp_error(
                    5,
                    1,
                    [10, 9, 0, 1],
                    &syn(NLB1, f1, T1, 8443, 63)[..28],
                ),
            ),
            I::Ipv4Other,
            Delta::I("fw-prov", I::DroppedIcmp, 1),
        ),
        // Spoofing: our own addresses as a source.
        refused(
            "consumer source is an endpoint address of its own network",
            ipv4_frame(fa, CA, &syn(EP2, 40070, EP1, 443, 64)),
            I::Ipv4Tcp,
            "acme-billing",
            E::RefusedSpoofed,
        ),
        refused(
            "consumer source is the endpoint address it sends to",
            ipv4_frame(fa, CA, &ip(EP1, EP1, 64).udp(40071, 53, b"self")),
            I::Ipv4Udp,
            "acme-billing",
            E::RefusedSpoofed,
        ),
        // Frames the data path does not carry, on a dedicated interface: each dropped
        // under its reason.
        dropped(
            "IPv6",
            "fw-acme",
            ethernet(fa, CA, 0x86dd, &[0x60; 40]),
            I::NonIpv4,
            Delta::I("fw-acme", I::DroppedNonIpv4, 1),
        ),
        dropped(
            "an EtherType pl does not know (LLDP)",
            "fw-acme",
            ethernet(fa, CA, 0x88cc, &[0; 46]),
            I::NonIpv4,
            Delta::I("fw-acme", I::DroppedNonIpv4, 1),
        ),
        dropped(
            "ICMP echo to an endpoint address",
            "fw-acme",
            ipv4_frame(fa, CA, &ip(CLIENT, EP1, 64).icmp_echo(1, 1)),
            I::Ipv4Other,
            Delta::I("fw-acme", I::DroppedIcmp, 1),
        ),
        dropped(
            "802.1Q-tagged frame",
            "fw-acme",
            ethernet(fa, CA, 0x8100, &[0; 46]),
            I::NonIpv4,
            Delta::I("fw-acme", I::DroppedVlan, 1),
        ),
        dropped(
            "802.1ad double-tagged frame",
            "fw-acme",
            ethernet(fa, CA, 0x88a8, &[0x81, 0, 0, 1, 8, 0, 0x45, 0, 0, 0]),
            I::NonIpv4,
            Delta::I("fw-acme", I::DroppedVlan, 1),
        ),
        dropped(
            "IPv4 EtherType and nothing after the Ethernet header",
            "fw-acme",
            ethernet(fa, CA, 0x0800, &[]),
            I::Malformed,
            Delta::I("fw-acme", I::DroppedTruncated, 1),
        ),
        dropped(
            "an IPv4 header announcing TCP and nothing after it",
            "fw-acme",
            good_syn[..34].to_vec(),
            I::Malformed,
            Delta::I("fw-acme", I::DroppedTruncated, 1),
        ),
        dropped(
            "ARP cut inside its body",
            "fw-acme",
            ethernet([0xff; 6], CA, 0x0806, &[0, 1, 8, 0]),
            I::Malformed,
            Delta::I("fw-acme", I::DroppedTruncated, 1),
        ),
        dropped(
            "IPv4 header cut short",
            "fw-acme",
            ethernet(fa, CA, 0x0800, &[0x45, 0, 0, 20, 0, 0]),
            I::Malformed,
            Delta::I("fw-acme", I::DroppedTruncated, 1),
        ),
        dropped(
            "TCP header cut short",
            "fw-acme",
            truncated,
            I::Malformed,
            Delta::I("fw-acme", I::DroppedTruncated, 1),
        ),
        dropped(
            "UDP header cut short",
            "fw-acme",
            cut_udp,
            I::Malformed,
            Delta::I("fw-acme", I::DroppedTruncated, 1),
        ),
        dropped(
            "ICMP header cut short",
            "fw-acme",
            cut_icmp,
            I::Malformed,
            Delta::I("fw-acme", I::DroppedTruncated, 1),
        ),
        dropped(
            "IPv4 total length past the frame",
            "fw-acme",
            long_total,
            I::Malformed,
            Delta::I("fw-acme", I::DroppedTruncated, 1),
        ),
        dropped(
            "IPv4 total length below the header",
            "fw-acme",
            short_total,
            I::Malformed,
            Delta::I("fw-acme", I::DroppedBadIpv4, 1),
        ),
        dropped(
            "IPv4 IHL below 5",
            "fw-acme",
            ihl4,
            I::Malformed,
            Delta::I("fw-acme", I::DroppedBadIpv4, 1),
        ),
        dropped(
            "IPv4 IHL past the frame",
            "fw-acme",
            ihl15,
            I::Malformed,
            Delta::I("fw-acme", I::DroppedBadIpv4, 1),
        ),
        dropped(
            "IP version 6 in an IPv4 EtherType",
            "fw-acme",
            v6_in_v4,
            I::Malformed,
            Delta::I("fw-acme", I::DroppedBadIpv4, 1),
        ),
        dropped(
            "TCP data offset below 5",
            "fw-acme",
            doff4,
            I::Malformed,
            Delta::I("fw-acme", I::DroppedBadL4, 1),
        ),
        dropped(
            "TCP data offset past the packet",
            "fw-acme",
            doff15,
            I::Malformed,
            Delta::I("fw-acme", I::DroppedBadL4, 1),
        ),
        dropped(
            "UDP length zero",
            "fw-acme",
            udp_len0,
            I::Malformed,
            Delta::I("fw-acme", I::DroppedBadL4, 1),
        ),
        dropped(
            "UDP length past the packet",
            "fw-acme",
            udp_long,
            I::Malformed,
            Delta::I("fw-acme", I::DroppedBadL4, 1),
        ),
        dropped(
            "IPv4 header checksum that does not verify",
            "fw-acme",
            bad_ip_check,
            I::Malformed,
            Delta::I("fw-acme", I::DroppedBadIpv4, 1),
        ),
        dropped(
            "IPv4 options",
            "fw-acme",
            options,
            I::Ipv4Tcp,
            Delta::I("fw-acme", I::DroppedIpOptions, 1),
        ),
        dropped(
            "first fragment (more-fragments set)",
            "fw-acme",
            first_fragment,
            I::Ipv4Udp,
            Delta::I("fw-acme", I::DroppedFragment, 1),
        ),
        dropped(
            "non-first fragment of a flow that exists (offset 185)",
            "fw-acme",
            later_fragment,
            I::Ipv4Udp,
            Delta::I("fw-acme", I::DroppedFragment, 1),
        ),
        dropped(
            "GRE (protocol 47)",
            "fw-acme",
            ipv4_frame(fa, CA, &ip(CLIENT, EP1, 64).packet(47, &[0; 8])),
            I::Ipv4Other,
            Delta::I("fw-acme", I::DroppedProtocol, 1),
        ),
        // Conntrack lifecycle: only a SYN opens a TCP flow; a SYN reopens a closed one.
        refused(
            "a bare ACK with no flow opens none",
            ipv4_frame(
                fa,
                CA,
                &ip(CLIENT, EP1, 64).tcp(40070, 443, 1, 1, TCP_ACK, &[]),
            ),
            I::Ipv4Tcp,
            "acme-billing",
            E::RefusedNotSyn,
        ),
        refused(
            "a FIN with no flow opens none",
            ipv4_frame(
                fa,
                CA,
                &ip(CLIENT, EP1, 64).tcp(40071, 443, 1, 1, TCP_FIN | TCP_ACK, &[]),
            ),
            I::Ipv4Tcp,
            "acme-billing",
            E::RefusedNotSyn,
        ),
        refused(
            "a RST with no flow opens none",
            ipv4_frame(
                fa,
                CA,
                &ip(CLIENT, EP1, 64).tcp(40072, 443, 1, 0, TCP_RST, &[]),
            ),
            I::Ipv4Tcp,
            "acme-billing",
            E::RefusedNotSyn,
        ),
        refused(
            "a SYN-ACK with no flow opens none",
            ipv4_frame(
                fa,
                CA,
                &ip(CLIENT, EP1, 64).tcp(40073, 443, 1, 1, TCP_SYN | TCP_ACK, &[]),
            ),
            I::Ipv4Tcp,
            "acme-billing",
            E::RefusedNotSyn,
        ),
        forwarded(
            "the target resets the first flow: the RST reaches the consumer",
            "fw-prov",
            ipv4_frame(
                fp,
                T1_MAC,
                &ip(T1, NLB1, 64).tcp(8443, f1, 5001, 0, TCP_RST, &[]),
            ),
            ipv4_frame(
                CA,
                fa,
                &ip(EP1, CLIENT, 63).tcp(443, 40000, 5001, 0, TCP_RST, &[]),
            ),
            I::Ipv4Tcp,
            "acme-billing",
            false,
        ),
        forwarded(
            "the client reuses its port: the SYN opens a fresh flow on the closed one's tuple",
            "fw-acme",
            ipv4_frame(fa, CA, &syn(CLIENT, 40000, EP1, 443, 64)),
            ipv4_frame(T1_MAC, fp, &syn(NLB1, f1, T1, 8443, 63)),
            I::Ipv4Tcp,
            "acme-billing",
            true,
        ),
        forwarded(
            "a SYN retransmitted on an open flow stays on it",
            "fw-acme",
            ipv4_frame(fa, CA, &syn(CLIENT, 40000, EP1, 443, 64)),
            ipv4_frame(T1_MAC, fp, &syn(NLB1, f1, T1, 8443, 63)),
            I::Ipv4Tcp,
            "acme-billing",
            false,
        ),
        dropped(
            "a loopback source is a martian, whatever allowed_sources says",
            "fw-acme",
            ipv4_frame(fa, CA, &syn([127, 0, 0, 1], 40074, EP1, 443, 64)),
            I::Ipv4Tcp,
            Delta::I("fw-acme", I::DroppedMartian, 1),
        ),
        dropped(
            "a multicast source is a martian",
            "fw-globex",
            ipv4_frame(fg, CG, &ip([224, 0, 0, 5], EP1, 64).udp(40075, 53, b"m")),
            I::Ipv4Udp,
            Delta::I("fw-globex", I::DroppedMartian, 1),
        ),
        dropped(
            "source 0.0.0.0 is a martian",
            "fw-acme",
            ipv4_frame(fa, CA, &ip([0, 0, 0, 0], EP1, 64).udp(68, 53, b"z")),
            I::Ipv4Udp,
            Delta::I("fw-acme", I::DroppedMartian, 1),
        ),
        // Multi-buffer frames (jumbo MTUs): BPF_PROG_TEST_RUN puts what does not fit one
        // page into fragments; the headers stay linear, lengths count the whole frame.
        forwarded(
            "a 9000-byte datagram in a multi-buffer frame is translated whole",
            "fw-acme",
            ipv4_frame(fa, CA, &ip(CLIENT, EP1, 64).udp(40000, 53, &jumbo)),
            ipv4_frame(T1_MAC, fp, &ip(NLB1, T1, 63).udp(u1, 5353, &jumbo)),
            I::Ipv4Udp,
            "acme-billing",
            false,
        ),
        forwarded(
            "its answer, multi-buffer too, goes back to the consumer",
            "fw-prov",
            ipv4_frame(fp, T1_MAC, &ip(T1, NLB1, 64).udp(5353, u1, &jumbo)),
            ipv4_frame(CA, fa, &ip(EP1, CLIENT, 63).udp(53, 40000, &jumbo)),
            I::Ipv4Udp,
            "acme-billing",
            false,
        ),
        dropped(
            "a multi-buffer frame shorter than its IPv4 total length is truncated",
            "fw-acme",
            jumbo_cut,
            I::Malformed,
            Delta::I("fw-acme", I::DroppedTruncated, 1),
        ),
        not_for_us(
            "a frame for another host's MAC is passed to the kernel untouched",
            "fw-acme",
            ipv4_frame(
                [2, 0, 0, 0, 0x0a, 0x99],
                CA,
                &syn(CLIENT, 40076, EP1, 443, 64),
            ),
            I::Ipv4Tcp,
        ),
    ]
}

/// A frame addressed to another host on the segment: passed on, untouched, and counted.
fn not_for_us(desc: &'static str, on: &'static str, input: Vec<u8>, class: I) -> Fx {
    let mut deltas = seen(on, &input, class);
    deltas.extend([
        Delta::I(on, I::PassedNotOurMac, 1),
        Delta::I(on, I::XdpPass, 1),
    ]);
    Fx {
        desc,
        on,
        input,
        action: XDP_PASS,
        output: None,
        deltas,
    }
}

/// Every interface's and endpoint's counters, flattened with names.
fn snapshot(ebpf: &Ebpf) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    for (slot, name) in IFACES.iter().enumerate() {
        let s =
            dataplane::iface_stats(ebpf, slot as u32).unwrap_or_else(|e| panic!("{}", chain(e)));
        out.extend(
            I::ALL
                .iter()
                .map(|c| (format!("{name} {}", c.name()), s.get(*c))),
        );
    }
    for (id, name) in ENDPOINTS.iter().enumerate() {
        let s =
            dataplane::endpoint_stats(ebpf, id as u16).unwrap_or_else(|e| panic!("{}", chain(e)));
        out.extend(
            E::ALL
                .iter()
                .map(|c| (format!("{name} {}", c.name()), s.get(*c))),
        );
    }
    out
}

/// Runs `table` (built from the forwarder MACs and settings) against the real object
/// programmed from `config` on a lab shaped by `shape`; fails with every difference.
fn run_table(
    tag: &str,
    config: String,
    shape: impl FnOnce(Lab) -> Lab,
    table: impl FnOnce(&[Mac; 3], &pl_common::settings::Settings) -> Vec<Fx> + Send,
    min_rows: usize,
) {
    // Ingress ifindexes must be real devices in the running thread's namespace: run in a lab's.
    let lab = TestLab::up_with(tag, shape);
    let fw = lab.fw_macs();
    let failures = netns::run_in(&lab.fw_ns(), || {
        let src = Source {
            path: PathBuf::from("fixtures.toml"),
            text: config,
        };
        let cfg = src.parse().unwrap_or_else(|e| panic!("{e}"));
        let model = Model::build(&src, &cfg, &LiveInterfaces).unwrap_or_else(|e| panic!("{e}"));
        let mut ebpf = dataplane::load_sized(Some(1024)).unwrap_or_else(|e| panic!("{}", chain(e)));
        // Target 1 resolved, target 2 not (zone 2 has no eligible target).
        let neigh = Neighbors::from([((2, Ipv4Addr::from(T1)), T1_MAC)]);
        apply(
            &mut ebpf,
            &Plan::build(&model, &neigh, &Default::default()),
            None,
        )
        .unwrap_or_else(|e| panic!("{}", chain(e)));
        let table = table(&fw, &model.settings);
        assert!(
            table.len() >= min_rows,
            "the table needs at least {min_rows} fixtures"
        );
        let mut failures = Vec::new();
        for f in &table {
            let ifindex = model
                .networks
                .iter()
                .find(|n| n.interface == f.on)
                .expect("fixture interface")
                .ifindex;
            let before = snapshot(&ebpf);
            let (action, output) = xdp_test_run(&mut ebpf, ifindex, &f.input);
            let after = snapshot(&ebpf);
            let expected = f.output.as_ref().unwrap_or(&f.input);
            check_frame(
                f.desc,
                (action, &output),
                (f.action, expected),
                &mut failures,
            );
            for ((name, b), (_, a)) in before.iter().zip(&after) {
                let want: u64 = f
                    .deltas
                    .iter()
                    .filter_map(|d| match d {
                        Delta::I(i, c, n) if *name == format!("{i} {}", c.name()) => Some(*n),
                        Delta::E(e, c, n) if *name == format!("{e} {}", c.name()) => Some(*n),
                        _ => None,
                    })
                    .sum();
                if a - b != want {
                    failures.push(format!(
                        "{}: {name} moved by {}, expected {want}",
                        f.desc,
                        a - b
                    ));
                }
            }
        }
        eprintln!("{} fixtures run", table.len());
        failures
    })
    .unwrap_or_else(|e| panic!("{}", chain(e)));
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn datapath_fixtures() {
    require_kernel!("datapath_fixtures");
    // Jumbo links, so multi-buffer frames fit every egress.
    run_table("fx", config(), |lab| lab.with_mtu(9000), fixtures, 60);
}

/// MTU mismatch: the consumer networks at 9000, the provider at 1500. SYN and SYN-ACK
/// MSS options are clamped to 1460 wherever they sit; a DF datagram too big for the
/// provider is answered with fragmentation needed from the endpoint address, a non-DF
/// one dropped.
#[test]
fn mtu_fixtures() {
    require_kernel!("mtu_fixtures");
    run_table(
        "fm",
        LAB_CONFIG.to_owned(),
        |lab| lab.with_mtu(9000).with_network_mtu("prov", 1500),
        mtu_table,
        8,
    );
}

/// Linux's SYN options with `mss`: MSS, SACK permitted, timestamps, NOP, window scale.
fn linux_syn_options(mss: u16) -> Vec<u8> {
    let m = mss.to_be_bytes();
    vec![
        2, 4, m[0], m[1], 4, 2, 8, 10, 0, 0, 0, 1, 0, 0, 0, 0, 1, 3, 3, 7,
    ]
}

fn mtu_table(fw: &[Mac; 3], settings: &pl_common::settings::Settings) -> Vec<Fx> {
    let [fa, _, fp] = *fw;
    let mut taken = HashSet::new();
    let mut port = |sport: u16, dport: u16, proto: u8| {
        expect_port(
            &key(CLIENT, EP1, sport, dport, 0, proto),
            settings,
            &mut taken,
        )
    };
    let (p1, p2, p3, p4, p5) = (
        port(41000, 443, 6),
        port(41001, 443, 6),
        port(41002, 443, 6),
        port(41003, 443, 6),
        port(41004, 443, 6),
    );
    let mut udp_taken = HashSet::new();
    let u1 = expect_port(
        &key(CLIENT, EP1, 41010, 53, 0, 17),
        settings,
        &mut udp_taken,
    );
    let syn_in = |sport: u16, opts: &[u8]| {
        ipv4_frame(
            fa,
            CA,
            &ip(CLIENT, EP1, 64).tcp_with_options(sport, 443, 7, 0, TCP_SYN, opts, &[]),
        )
    };
    let syn_out = |nat: u16, opts: &[u8]| {
        ipv4_frame(
            T1_MAC,
            fp,
            &ip(NLB1, T1, 63).tcp_with_options(nat, 8443, 7, 0, TCP_SYN, opts, &[]),
        )
    };
    let clamped = |desc, sport, opts_in: Vec<u8>, opts_out: Vec<u8>, nat| {
        let mut fx = forwarded(
            desc,
            "fw-acme",
            syn_in(sport, &opts_in),
            syn_out(nat, &opts_out),
            I::Ipv4Tcp,
            "acme-billing",
            true,
        );
        if opts_in != opts_out {
            fx.deltas.push(Delta::E("acme-billing", E::MssClamped, 1));
        }
        fx
    };
    let mss = |v: u16| v.to_be_bytes();
    let (j, k) = (mss(8960), mss(1460));
    let big = vec![7u8; 3000];
    let datagram = ip(CLIENT, EP1, 64).udp(41010, 53, &big);
    let mut no_df = datagram.clone();
    no_df[6] = 0;
    let c = pl_common::checksum::checksum(&{
        let mut h = no_df[..20].to_vec();
        h[10] = 0;
        h[11] = 0;
        h
    });
    no_df[10..12].copy_from_slice(&c.to_be_bytes());
    let frag_needed = ipv4_frame(
        CA,
        fa,
        &ip(EP1, CLIENT, 64).icmp_error(3, 4, [0, 0, 0x05, 0xdc], &datagram[..28]),
    );
    let too_big_df = redirected(
        "a DF datagram too big for the provider: fragmentation needed (MTU 1500) from the endpoint address",
        "fw-acme",
        I::Ipv4Udp,
        (ipv4_frame(fa, CA, &datagram), frag_needed),
        &[
            Delta::E("acme-billing", E::NewFlows, 1),
            Delta::E("acme-billing", E::RefusedTooBig, 1),
            Delta::I("fw-acme", I::IcmpFragNeeded, 1),
        ],
    );
    vec![
        clamped(
            "a SYN's MSS 8960, first option (Linux's layout), is clamped to 1460",
            41000,
            linux_syn_options(8960),
            linux_syn_options(1460),
            p1,
        ),
        clamped(
            "an MSS after one NOP (odd offset) is clamped, the checksum still right",
            41001,
            vec![1, 2, 4, j[0], j[1], 1, 1, 1],
            vec![1, 2, 4, k[0], k[1], 1, 1, 1],
            p2,
        ),
        clamped(
            "an MSS after SACK-permitted and two NOPs (last option) is clamped",
            41002,
            vec![4, 2, 1, 1, 2, 4, j[0], j[1]],
            vec![4, 2, 1, 1, 2, 4, k[0], k[1]],
            p3,
        ),
        clamped(
            "a SYN without an MSS option is left as it is",
            41003,
            vec![1, 1, 4, 2],
            vec![1, 1, 4, 2],
            p4,
        ),
        clamped(
            "an MSS already below 1460 is never raised",
            41004,
            linux_syn_options(1200),
            linux_syn_options(1200),
            p5,
        ),
        {
            let mut fx = forwarded(
                "the SYN-ACK's MSS (after a NOP, odd offset) is clamped on its way back",
                "fw-prov",
                ipv4_frame(
                    fp,
                    T1_MAC,
                    &ip(T1, NLB1, 64).tcp_with_options(
                        8443,
                        p2,
                        9,
                        8,
                        TCP_SYN | TCP_ACK,
                        &[1, 2, 4, j[0], j[1], 1, 1, 1],
                        &[],
                    ),
                ),
                ipv4_frame(
                    CA,
                    fa,
                    &ip(EP1, CLIENT, 63).tcp_with_options(
                        443,
                        41001,
                        9,
                        8,
                        TCP_SYN | TCP_ACK,
                        &[1, 2, 4, k[0], k[1], 1, 1, 1],
                        &[],
                    ),
                ),
                I::Ipv4Tcp,
                "acme-billing",
                false,
            );
            fx.deltas.push(Delta::E("acme-billing", E::MssClamped, 1));
            fx
        },
        too_big_df,
        dropped(
            "a datagram too big for the provider without DF is dropped: pl does not fragment",
            "fw-acme",
            ipv4_frame(fa, CA, &no_df),
            I::Ipv4Udp,
            Delta::E("acme-billing", E::RefusedTooBig, 1),
        ),
        forwarded(
            "a datagram that fits 1500 goes on",
            "fw-acme",
            ipv4_frame(fa, CA, &ip(CLIENT, EP1, 64).udp(41010, 53, &big[..1400])),
            ipv4_frame(T1_MAC, fp, &ip(NLB1, T1, 63).udp(u1, 5353, &big[..1400])),
            I::Ipv4Udp,
            "acme-billing",
            false,
        ),
    ]
}
