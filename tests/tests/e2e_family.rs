//! End to end, family translation (issue 18, RFC 7915 as an NLB does it): the lab with
//! IPv6 addresses on the IPv4 service's acme endpoint and IPv4 addresses on the IPv6
//! service's. An IPv6 consumer reaches the IPv4 targets, which see the zone's IPv4 NLB
//! address; an IPv4 consumer reaches the IPv6 targets, which see the IPv6 one; bulk data
//! crosses intact both ways; same-family consumers of the same service keep working, on
//! SNAT ports apart from the translated flows'.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    time::{Duration, Instant},
};

use pl_common::stats::{EndpointCounter, IfaceCounter};
use pl_tests::{
    chain,
    family::{BILLING6_Z1, BILLING6_Z2, LEDGER4_Z1, LEDGER4_Z2, config},
    require_kernel,
    running::{
        CLIENT, CLIENT6, EP_Z1, NLB6_Z1, NLB6_Z2, Running, T1, T1_6, T2, T2_6, parse_who_ip,
        too_big_from_target,
    },
    stderr,
};
use pl_userspace::lab::traffic::{self, TCP_PORT, UDP_PORT};

const NLB_Z1: Ipv4Addr = Ipv4Addr::new(10, 9, 0, 250);
const NLB_Z2: Ipv4Addr = Ipv4Addr::new(10, 9, 0, 251);

/// The lab running [`config`], with the IPv6 targets resolved.
fn start(tag: &str) -> Running {
    let r = Running::start(tag, &config());
    let want: Vec<String> = [T1_6, T2_6].iter().map(Ipv6Addr::to_string).collect();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let out = r.lab.pl(&r.lab.fw_ns(), &["stats", "--json"]);
        assert!(out.status.success(), "pl stats --json: {}", stderr(&out));
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("stats JSON");
        let targets = json["targets"].as_array().cloned().unwrap_or_default();
        let resolved = want.iter().all(|ip| {
            targets
                .iter()
                .any(|t| t["ip"].as_str() == Some(ip.as_str()) && t["mac"].as_str().is_some())
        });
        if resolved {
            return r;
        }
        assert!(Instant::now() < deadline, "IPv6 targets never resolved");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The SNAT ports split at the middle of the default range (1024-65535) when a service
/// has consumers of both families: the translated flows take the upper half.
const SPLIT: u16 = 1024 + (65535 - 1024) / 2;

#[test]
fn consumers_reach_targets_of_the_other_family_and_the_target_sees_its_own() {
    require_kernel!("consumers_reach_targets_of_the_other_family_and_the_target_sees_its_own");
    let r = start("fam");
    // IPv6 consumer, IPv4 targets: zone by zone, the zone's IPv4 NLB address.
    for (ep, target, nlb) in [(BILLING6_Z1, T1, NLB_Z1), (BILLING6_Z2, T2, NLB_Z2)] {
        let who = r
            .who_tcp("acme", CLIENT6, 0, ep, TCP_PORT)
            .unwrap_or_else(|e| panic!("tcp [{ep}]: {e}"));
        let (t, peer, port) = parse_who_ip(&who);
        assert_eq!((t, peer), (target.into(), nlb.into()), "tcp [{ep}]: {who}");
        assert!(
            port > SPLIT,
            "a translated flow took SNAT port {port}: {who}"
        );
    }
    let who = r
        .who_udp("acme", CLIENT6, 0, BILLING6_Z1)
        .unwrap_or_else(|e| panic!("udp [{BILLING6_Z1}]: {e}"));
    let (t, peer, _) = parse_who_ip(&who);
    assert_eq!((t, peer), (T1.into(), NLB_Z1.into()), "udp: {who}");

    // IPv4 consumer, IPv6 targets.
    for (ep, target, nlb) in [(LEDGER4_Z1, T1_6, NLB6_Z1), (LEDGER4_Z2, T2_6, NLB6_Z2)] {
        let who = r
            .who_tcp("acme", CLIENT, 0, ep, TCP_PORT)
            .unwrap_or_else(|e| panic!("tcp {ep}: {e}"));
        let (t, peer, port) = parse_who_ip(&who);
        assert_eq!((t, peer), (target.into(), nlb.into()), "tcp {ep}: {who}");
        assert!(
            port > SPLIT,
            "a translated flow took SNAT port {port}: {who}"
        );
    }
    let who = r
        .who_udp("acme", CLIENT, 0, LEDGER4_Z1)
        .unwrap_or_else(|e| panic!("udp {LEDGER4_Z1}: {e}"));
    let (t, peer, _) = parse_who_ip(&who);
    assert_eq!((t, peer), (T1_6.into(), NLB6_Z1.into()), "udp: {who}");

    // The same family through the same service, alongside: the lower half of the ports.
    let who = r
        .who_tcp("acme", CLIENT, 0, EP_Z1, TCP_PORT)
        .unwrap_or_else(|e| panic!("tcp {EP_Z1}: {e}"));
    let (t, peer, port) = parse_who_ip(&who);
    assert_eq!((t, peer), (T1.into(), NLB_Z1.into()), "same family: {who}");
    assert!(
        port <= SPLIT,
        "a same-family flow took SNAT port {port}: {who}"
    );

    // The targets saw only NLB addresses, each of its own family.
    let seen = r.servers.seen();
    assert!(seen.len() >= 7, "the servers saw too little: {seen:?}");
    let nlbs: [IpAddr; 4] = [NLB_Z1.into(), NLB_Z2.into(), NLB6_Z1.into(), NLB6_Z2.into()];
    for (target, proto, peer) in &seen {
        assert!(
            nlbs.contains(&peer.ip()) && peer.is_ipv6() == target.is_ipv6(),
            "{target} saw {proto} from {peer}"
        );
    }

    // `pl flows` shows a translated flow with each side in its own notation.
    let out = r.lab.pl(&r.lab.fw_ns(), &["flows", "--json"]);
    assert!(out.status.success(), "pl flows: {}", stderr(&out));
    let flows: serde_json::Value = serde_json::from_slice(&out.stdout).expect("flows JSON");
    let text = flows.to_string();
    assert!(
        text.contains(&format!("[{CLIENT6}]:")) && text.contains(&format!("\"{NLB_Z1}:")),
        "no translated flow in IPv6 and IPv4 notation: {text}"
    );
    assert!(
        !text.contains("::ffff:"),
        "a mapped address leaked into the report: {text}"
    );

    let stats = r.stats();
    for ep in ["acme-billing", "acme-ledger"] {
        let e = stats.endpoint(ep).unwrap_or_else(|| panic!("{ep} missing"));
        assert!(e.get(EndpointCounter::NewFlows) >= 3, "{ep}: {e:?}");
        assert!(e.get(EndpointCounter::ToConsumerPackets) > 0, "{ep}: {e:?}");
    }
}

#[test]
fn a_hundred_megabytes_cross_families_intact_each_way() {
    require_kernel!("a_hundred_megabytes_cross_families_intact_each_way");
    let r = start("fammb");
    let len = 100 * 1024 * 1024;
    let ns = r.ns("acme");
    for (src, ep, what) in [
        (
            IpAddr::from(CLIENT6),
            SocketAddr::new(BILLING6_Z1.into(), TCP_PORT),
            "IPv6 consumer, IPv4 target",
        ),
        (
            IpAddr::from(CLIENT),
            SocketAddr::new(LEDGER4_Z1.into(), TCP_PORT),
            "IPv4 consumer, IPv6 target",
        ),
    ] {
        let (sent, got) = traffic::tcp_sink(&ns, src, ep, len)
            .unwrap_or_else(|e| panic!("{what}: consumer -> provider: {}", chain(e)));
        assert_eq!(sent, got, "{what}: sha256 of the 100 MB sent to the target");
        let (want, got) = traffic::tcp_source(&ns, src, ep, len)
            .unwrap_or_else(|e| panic!("{what}: provider -> consumer: {}", chain(e)));
        assert_eq!(want, got, "{what}: sha256 of the 100 MB from the target");
    }
}

/// PMTU discovery across families: a hop on the provider side says a consumer's datagram
/// was too big for its 1400-byte link, in the provider side's family. The error changes
/// family along the translated flow, quoting what the consumer sent, and the consumer's
/// kernel caches the path MTU less (or more) the 20 bytes between the headers.
#[test]
fn a_too_big_error_changes_family_and_the_consumer_learns_the_path_mtu() {
    require_kernel!("a_too_big_error_changes_family_and_the_consumer_learns_the_path_mtu");
    let r = start("fampt");

    // IPv6 consumer, IPv4 target: fragmentation needed becomes packet too big, 1420.
    let ep = SocketAddr::new(BILLING6_Z1.into(), UDP_PORT);
    let (sock6, flow) = r.udp_flow("acme", SocketAddr::new(CLIENT6.into(), 41500), ep);
    assert!(
        flow.nlb.is_ipv4(),
        "the IPv4 side of a 6-to-4 flow: {flow:?}"
    );
    r.from_provider(&too_big_from_target(&flow, 1400));
    r.wait_route("acme", BILLING6_Z1.into(), "mtu 1420");

    // IPv4 consumer, IPv6 target: packet too big becomes fragmentation needed, 1380.
    let ep = SocketAddr::new(LEDGER4_Z1.into(), UDP_PORT);
    let (sock4, flow) = r.udp_flow("acme", SocketAddr::new(CLIENT.into(), 41501), ep);
    assert!(
        flow.nlb.is_ipv6(),
        "the IPv6 side of a 4-to-6 flow: {flow:?}"
    );
    r.from_provider(&too_big_from_target(&flow, 1400));
    r.wait_route("acme", LEDGER4_Z1.into(), "mtu 1380");
    assert_eq!(r.iface("fw-prov", IfaceCounter::IcmpTranslated), 2);
    drop((sock6, sock4));
}
