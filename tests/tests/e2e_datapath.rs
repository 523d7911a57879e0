//! End to end, the data path: a lab, `pl run --config` in its forwarder namespace, real
//! TCP and UDP sockets in the consumer and provider namespaces. Traffic reaches the
//! service from overlapping networks, refusals are counted, zones and targets are kept,
//! bulk and jumbo transfers arrive intact, a SYN flood stays bounded, PMTU discovery and
//! MSS clamping work through an endpoint.

use std::{
    collections::HashSet,
    net::{Ipv4Addr, SocketAddr, SocketAddrV4},
    time::Duration,
};

use pl_common::stats::{EndpointCounter, IfaceCounter};
use pl_tests::{
    chain, require_kernel,
    running::{
        CLIENT, EP_Z1, EP_Z2, OUTSIDER, Running, SHORT, T1, T2, parse_who, too_big_from_target,
    },
    stderr,
};
use pl_userspace::{
    frame::{TCP_SYN, parse_mac},
    lab::cmd,
    lab::netns,
    lab::traffic::{self, TCP_PORT, UDP_PORT},
    lab::{LAB_CONFIG, PEER_IFACE},
    stats::StatsReport,
};

#[test]
fn tcp_and_udp_reach_the_service_from_overlapping_networks() {
    require_kernel!("tcp_and_udp_reach_the_service_from_overlapping_networks");
    let r = Running::start("dp", LAB_CONFIG);
    for net in ["acme", "globex"] {
        // Zone z1's endpoint address reaches z1's target, from z1's NLB address.
        let who = r
            .who_tcp(net, CLIENT, 0, EP_Z1, TCP_PORT)
            .unwrap_or_else(|e| panic!("{net} tcp: {e}"));
        let (target, src, _) = parse_who(&who);
        assert_eq!(
            (target, src),
            (T1, Ipv4Addr::new(10, 9, 0, 250)),
            "{net}: {who}"
        );
        let who = r
            .who_tcp(net, CLIENT, 0, EP_Z2, TCP_PORT)
            .unwrap_or_else(|e| panic!("{net} tcp z2: {e}"));
        assert_eq!(parse_who(&who).0, T2, "{net} z2: {who}");
        assert_eq!(
            parse_who(&who).1,
            Ipv4Addr::new(10, 9, 0, 251),
            "{net} z2 source: {who}"
        );
        let who = r
            .who_udp(net, CLIENT, 0, EP_Z1)
            .unwrap_or_else(|e| panic!("{net} udp: {e}"));
        assert_eq!(
            parse_who(&who).1,
            Ipv4Addr::new(10, 9, 0, 250),
            "{net} udp: {who}"
        );
    }

    // The same client tuple from both networks at once: two flows, two SNAT tuples.
    let (a, g) = std::thread::scope(|s| {
        let a = s.spawn(|| r.who_tcp("acme", CLIENT, 40000, EP_Z1, TCP_PORT));
        let g = s.spawn(|| r.who_tcp("globex", CLIENT, 40000, EP_Z1, TCP_PORT));
        (
            a.join().expect("acme thread"),
            g.join().expect("globex thread"),
        )
    });
    let (a, g) = (
        a.unwrap_or_else(|e| panic!("acme: {e}")),
        g.unwrap_or_else(|e| panic!("globex: {e}")),
    );
    let (pa, pg) = (parse_who(&a), parse_who(&g));
    assert_ne!(
        (pa.1, pa.2),
        (pg.1, pg.2),
        "both networks' flows share one provider-side tuple: {a} / {g}"
    );

    // The provider only ever saw NLB addresses.
    for (_, proto, peer) in r.servers.seen() {
        let ip = match peer {
            SocketAddr::V4(v4) => *v4.ip(),
            other => panic!("IPv6 peer {other}"),
        };
        assert!(
            ip == Ipv4Addr::new(10, 9, 0, 250) || ip == Ipv4Addr::new(10, 9, 0, 251),
            "{proto} peer {ip} is not an NLB address"
        );
    }

    // Counters, read by a second process.
    let out = r.lab.pl(&r.lab.fw_ns(), &["stats", "--json"]);
    assert!(out.status.success(), "pl stats --json: {}", stderr(&out));
    let report: StatsReport =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("pl stats --json: {e}"));
    for ep in ["acme-billing", "globex-billing"] {
        let e = report
            .endpoint(ep)
            .unwrap_or_else(|| panic!("{ep} missing"));
        assert!(e.get(EndpointCounter::NewFlows) >= 4, "{ep}: {e:?}");
        assert!(
            e.get(EndpointCounter::ToProviderPackets) > 0
                && e.get(EndpointCounter::ToConsumerPackets) > 0,
            "{ep}: {e:?}"
        );
        assert!(e.active_flows >= 4, "{ep}: {e:?}");
    }
}

/// A TCP connection from `net` (its endpoint `<net>-billing`) that must get no answer,
/// counted on that endpoint under `counter`.
fn refused_tcp(
    r: &Running,
    (net, src, ep, port): (&str, Ipv4Addr, Ipv4Addr, u16),
    counter: EndpointCounter,
    why: &str,
) {
    assert!(r.who_tcp(net, src, 0, ep, port).is_err(), "{why}");
    assert!(
        r.endpoint(&format!("{net}-billing"), counter) >= 1,
        "{counter:?} not counted: {why}"
    );
}

#[test]
fn refusals_are_dropped_and_counted_per_endpoint() {
    require_kernel!("refusals_are_dropped_and_counted_per_endpoint");
    let r = Running::start("rf", LAB_CONFIG);

    refused_tcp(
        &r,
        ("acme", CLIENT, EP_Z1, 444),
        EndpointCounter::RefusedNoListener,
        "no listener on 444, yet it answered",
    );

    refused_tcp(
        &r,
        ("acme", OUTSIDER, EP_Z1, TCP_PORT),
        EndpointCounter::RefusedSource,
        "10.0.0.200 is outside acme's allowed_sources",
    );
    // globex-billing has no allowed_sources: any source.
    r.who_tcp("globex", OUTSIDER, 0, EP_Z1, TCP_PORT)
        .unwrap_or_else(|e| panic!("globex from 10.0.0.200: {e}"));

    // TTL 1 would expire in the forwarder.
    let ns = r.ns("acme");
    netns::run_in(&ns, || {
        let u = std::net::UdpSocket::bind((CLIENT, 0)).expect("bind");
        u.set_ttl(1).expect("ttl");
        u.send_to(b"x", (EP_Z1, UDP_PORT)).expect("send");
    })
    .unwrap_or_else(|e| panic!("{}", chain(e)));
    let ttl = r.run.wait_for_stats(Duration::from_secs(2), |s| {
        s.endpoint("acme-billing")
            .is_some_and(|e| e.get(EndpointCounter::RefusedTtl) >= 1)
    });
    assert!(
        ttl.expect("stats")
            .endpoint("acme-billing")
            .expect("acme")
            .get(EndpointCounter::RefusedTtl)
            >= 1
    );

    // The provider cannot open a connection toward an NLB address...
    let prov = r.ns("prov");
    let to_nlb = traffic::tcp_who(
        &prov,
        T1,
        0,
        SocketAddrV4::new(Ipv4Addr::new(10, 9, 0, 250), TCP_PORT),
        SHORT,
    );
    assert!(
        to_nlb.is_err(),
        "the provider opened a connection to an NLB address"
    );
    assert!(r.iface("fw-prov", IfaceCounter::DroppedNoFlow) >= 1);
    // ...nor reach a consumer address, even routing it at the forwarder.
    cmd::ip([
        "-n",
        &prov,
        "route",
        "add",
        "10.0.0.0/24",
        "via",
        "10.9.0.250",
    ])
    .unwrap_or_else(|e| panic!("{}", chain(e)));
    assert!(
        traffic::tcp_who(&prov, T1, 0, SocketAddrV4::new(CLIENT, 22), SHORT).is_err(),
        "the provider reached a consumer"
    );
    assert!(r.iface("fw-prov", IfaceCounter::DroppedNotOurs) >= 1);
    // Nothing of either network is reachable past the endpoint: no ICMP, no other address.
    assert!(
        r.iface("fw-acme", IfaceCounter::XdpPass) == 0,
        "a frame was passed to the forwarder's stack"
    );
}

#[test]
fn acceptance_missing_targets_and_snat_exhaustion_are_refused() {
    require_kernel!("acceptance_missing_targets_and_snat_exhaustion_are_refused");
    // globex-billing not accepted; z2's target does not exist; one SNAT port.
    let config = LAB_CONFIG
        .replace(
            r#"accepted_endpoints = ["acme-billing", "globex-billing"]"#,
            r#"accepted_endpoints = ["acme-billing"]"#,
        )
        .replace(
            r#"{ ip = "10.9.0.12", zone = "z2" }"#,
            r#"{ ip = "10.9.0.13", zone = "z2" }"#,
        )
        + "\n[limits]\nsnat_port_min = 20000\nsnat_port_max = 20000\n";
    let r = Running::start("ac", &config);

    refused_tcp(
        &r,
        ("globex", CLIENT, EP_Z1, TCP_PORT),
        EndpointCounter::RefusedNotAccepted,
        "an endpoint pending acceptance carried traffic",
    );

    refused_tcp(
        &r,
        ("acme", CLIENT, EP_Z2, TCP_PORT),
        EndpointCounter::RefusedNoTarget,
        "z2 has no resolved target, yet it answered",
    );
    let t = r
        .stats()
        .targets
        .into_iter()
        .find(|t| t.ip == Ipv4Addr::new(10, 9, 0, 13))
        .expect("target .13 in stats");
    assert!(
        t.mac.is_none(),
        "a target that does not exist resolved: {t:?}"
    );

    // One SNAT port: the first flow takes it, a second flow to the same target is refused.
    let who = r
        .who_udp("acme", CLIENT, 41000, EP_Z1)
        .unwrap_or_else(|e| panic!("first flow: {e}"));
    assert_eq!(
        parse_who(&who).2,
        20000,
        "SNAT port outside the configured range: {who}"
    );
    assert!(
        r.who_udp("acme", CLIENT, 41001, EP_Z1).is_err(),
        "a second flow got a port from a range of one"
    );
    assert!(r.endpoint("acme-billing", EndpointCounter::RefusedSnatExhausted) >= 1);
}

#[test]
fn flows_stay_in_zone_unless_cross_zone_and_spread_over_targets() {
    require_kernel!("flows_stay_in_zone_unless_cross_zone_and_spread_over_targets");
    // Flows follow the zone: whichever target, the source it sees is the NLB address of
    // the zone the flow came in through (z1's, 10.9.0.250).
    let targets_for = |r: &Running| -> HashSet<Ipv4Addr> {
        (0..24u16)
            .map(|i| {
                let who = r
                    .who_tcp("globex", CLIENT, 42000 + i, EP_Z1, TCP_PORT)
                    .unwrap_or_else(|e| panic!("flow {i}: {e}"));
                let (target, nlb, _) = parse_who(&who);
                assert_eq!(nlb, Ipv4Addr::new(10, 9, 0, 250), "flow {i} to {target}");
                target
            })
            .collect()
    };
    let r = Running::start("zn", LAB_CONFIG);
    assert_eq!(
        targets_for(&r),
        HashSet::from([T1]),
        "cross_zone off: z1's endpoint address must reach z1's target only"
    );
    drop(r);
    let r = Running::start(
        "zx",
        &LAB_CONFIG.replace("cross_zone = false", "cross_zone = true"),
    );
    assert_eq!(
        targets_for(&r),
        HashSet::from([T1, T2]),
        "cross_zone on: 24 flows should spread over both targets"
    );
}

#[test]
fn hundred_megabytes_arrive_intact() {
    require_kernel!("hundred_megabytes_arrive_intact");
    let r = Running::start("mb", LAB_CONFIG);
    let (sent, got) = traffic::tcp_sink(
        &r.ns("acme"),
        CLIENT,
        SocketAddrV4::new(EP_Z1, TCP_PORT),
        100 * 1024 * 1024,
    )
    .unwrap_or_else(|e| panic!("transfer: {}", chain(e)));
    assert_eq!(
        sent, got,
        "sha256 of the 100 MB sent differs from what the target received"
    );
    let bytes = r.endpoint("acme-billing", EndpointCounter::ToProviderBytes);
    assert!(
        bytes > 100 * 1024 * 1024,
        "to_provider_bytes {bytes} < 100 MB"
    );
}

/// Jumbo frames: every link at MTU 9000, so the program is attached frags-aware and
/// multi-buffer frames cross it; 100 MB each way, sha256-checked.
#[test]
fn jumbo_frames_carry_a_hundred_megabytes_both_ways() {
    require_kernel!("jumbo_frames_carry_a_hundred_megabytes_both_ways");
    let r = Running::start_shaped("jb", LAB_CONFIG, &[], |lab| lab.with_mtu(9000));
    let ep = SocketAddrV4::new(EP_Z1, TCP_PORT);
    let big_before = r.iface("fw-acme", IfaceCounter::RxBytes);
    let (sent, got) = traffic::tcp_sink(&r.ns("acme"), CLIENT, ep, 100 * 1024 * 1024)
        .unwrap_or_else(|e| panic!("consumer -> provider: {}", chain(e)));
    assert_eq!(sent, got, "sha256 of the 100 MB sent to the target differs");
    let (want, got) = traffic::tcp_source(&r.ns("acme"), CLIENT, ep, 100 * 1024 * 1024)
        .unwrap_or_else(|e| panic!("provider -> consumer: {}", chain(e)));
    assert_eq!(want, got, "sha256 of the 100 MB from the target differs");
    let s = r.stats();
    let acme = s.interface("fw-acme").expect("fw-acme");
    let prov = s.interface("fw-prov").expect("fw-prov");
    // Frames of about 9000 bytes: 100 MB in well under 20 000 frames each way (at 1500,
    // over 70 000).
    let per_frame = |bytes: u64, frames: u64| bytes / frames.max(1);
    let (a, p) = (
        per_frame(
            acme.get(IfaceCounter::RxBytes) - big_before,
            acme.get(IfaceCounter::RxPackets),
        ),
        per_frame(
            prov.get(IfaceCounter::RxBytes),
            prov.get(IfaceCounter::RxPackets),
        ),
    );
    eprintln!("mean frame: consumer side {a} bytes, provider side {p} bytes");
    assert!(
        a > 4000 && p > 4000,
        "frames were not jumbo: consumer side {a} bytes, provider side {p} bytes on average"
    );
    assert_eq!(acme.get(IfaceCounter::DroppedTruncated), 0);
    assert_eq!(prov.get(IfaceCounter::DroppedTruncated), 0);
}

#[test]
fn syn_flood_fills_the_table_to_its_bound_and_established_flows_keep_going() {
    require_kernel!("syn_flood_fills_the_table_to_its_bound_and_established_flows_keep_going");
    const TABLE: u64 = 2000;
    let config = format!(
        "{LAB_CONFIG}\n[limits]\nflow_table_size = {TABLE}\ntcp_transient_timeout_s = 2\ntcp_closing_timeout_s = 2\n"
    );
    let r = Running::start("sf", &config);
    let (acme, globex) = (r.ns("acme"), r.ns("globex"));
    let ep = SocketAddrV4::new(EP_Z1, TCP_PORT);
    // Established before the flood, on the endpoint the flood hits.
    let mut held = traffic::tcp_hold(&globex, CLIENT, ep)
        .unwrap_or_else(|e| panic!("held connection: {}", chain(e)));
    let len: u64 = 64 * 1024 * 1024;
    let stream = || {
        let began = std::time::Instant::now();
        let (sent, got) = traffic::tcp_sink(&acme, CLIENT, ep, len)
            .unwrap_or_else(|e| panic!("stream: {}", chain(e)));
        assert_eq!(sent, got, "bytes lost");
        len as f64 / began.elapsed().as_secs_f64() / 1e6
    };
    let before = stream();
    let g = r.lab.topo.network("globex").expect("globex");
    let macs = (
        parse_mac(&g.peer_mac).expect("peer MAC"),
        parse_mac(&g.fw_mac).expect("fw MAC"),
    );
    let stop = std::sync::atomic::AtomicBool::new(false);
    // The stream connects first (a new flow could not get in once the table is full), then
    // the flood starts and runs until the stream is done.
    let (during, sent, peak) = std::thread::scope(|s| {
        let measured = s.spawn(stream);
        std::thread::sleep(Duration::from_millis(100));
        let flood = s.spawn(|| {
            traffic::tcp_flood(&globex, PEER_IFACE, macs, ep, TCP_SYN, (50_000_000, &stop))
                .unwrap_or_else(|e| panic!("flood: {}", chain(e)))
        });
        std::thread::sleep(Duration::from_millis(300));
        let peak: u64 = r.stats().endpoints.iter().map(|e| e.active_flows).sum();
        let during = measured.join().expect("stream thread");
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        (during, flood.join().expect("flood thread"), peak)
    });
    let full = r.endpoint("globex-billing", EndpointCounter::RefusedFlowTableFull);
    println!(
        "flood: {sent} SYNs; flows at the peak {peak} (table {TABLE}); refused as table full {full}; stream {before:.0} MB/s before, {during:.0} MB/s during"
    );
    assert!(
        full > 0,
        "the flood never filled the table: it tested nothing"
    );
    assert!(peak <= TABLE, "{peak} flows in a table of {TABLE}");
    // The connection established before the flood finishes its request.
    let answer = traffic::finish_hold(&mut held)
        .unwrap_or_else(|e| panic!("the held connection broke: {e}"));
    assert_eq!(answer.len(), 64, "not a sha256 answer: {answer:?}");
    // After the flood the half-open entries age out (2 s, then a sweep) and new flows fit.
    let began = std::time::Instant::now();
    let recovered = loop {
        if r.who_tcp("globex", CLIENT, 0, EP_Z1, TCP_PORT).is_ok() {
            let active: u64 = r.stats().endpoints.iter().map(|e| e.active_flows).sum();
            if active < TABLE / 10 {
                break began.elapsed();
            }
        }
        assert!(
            began.elapsed() < Duration::from_secs(20),
            "the table did not recover within 20 s"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    println!("flood: table recovered {recovered:?} after the flood stopped");
}

#[test]
fn pmtu_discovery_works_through_an_endpoint() {
    require_kernel!("pmtu_discovery_works_through_an_endpoint");
    let r = Running::start("pm", LAB_CONFIG);
    // A connected UDP socket in acme, with a flow through the endpoint.
    let ep = SocketAddr::from(SocketAddrV4::new(EP_Z1, UDP_PORT));
    let (sock, flow) = r.udp_flow("acme", SocketAddrV4::new(CLIENT, 41500).into(), ep);
    let route = r.route_to("acme", EP_Z1.into());
    assert!(!route.contains("mtu"), "a PMTU before the test: {route}");

    // A hop on the provider side says the datagram was too big for its 1400-byte link,
    // quoting it as the provider side carried it: NLB address and SNAT port to the target.
    r.from_provider(&too_big_from_target(&flow, 1400));

    // The consumer learns the path MTU to the endpoint address.
    r.wait_route("acme", EP_Z1.into(), "mtu 1400");
    assert_eq!(r.iface("fw-prov", IfaceCounter::IcmpTranslated), 1);
    drop(sock);
}

/// A consumer network at 9000 talking to a provider at 1500, the target host itself set to
/// 9000 (only pl's side of its segment carries 1500): the SYN-ACK's MSS reaches the
/// consumer clamped, the target's segments fit pl's provider link (unclamped, they would
/// be dropped there and the transfer would stall); a 3000-byte DF datagram gets
/// fragmentation needed and the consumer's kernel caches MTU 1500 for the endpoint.
#[test]
fn a_jumbo_consumer_reaches_a_1500_provider_through_clamped_mss_and_pmtu() {
    require_kernel!("a_jumbo_consumer_reaches_a_1500_provider_through_clamped_mss_and_pmtu");
    let r = Running::start_shaped("mm", LAB_CONFIG, &[], |lab| {
        lab.with_mtu(9000).with_network_mtu("prov", 1500)
    });
    let (acme, prov) = (r.ns("acme"), r.ns("prov"));
    cmd::ip(["-n", &prov, "link", "set", PEER_IFACE, "mtu", "9000"])
        .unwrap_or_else(|e| panic!("{}", chain(e)));
    let ep = SocketAddrV4::new(EP_Z1, TCP_PORT);

    // The consumer's view of the connection: the MSS it may send.
    let mss = netns::run_in(&acme, || -> std::io::Result<u32> {
        let s = std::net::TcpStream::connect_timeout(&ep.into(), SHORT)?;
        let mss = nix::sys::socket::getsockopt(&s, nix::sys::socket::sockopt::TcpMaxSeg)?;
        Ok(mss)
    })
    .unwrap_or_else(|e| panic!("{}", chain(e)))
    .unwrap_or_else(|e| panic!("connecting: {e}"));
    assert!(
        mss <= 1460,
        "the consumer may send {mss}-byte segments: the SYN-ACK's MSS was not clamped"
    );
    let clamped = r.endpoint("acme-billing", EndpointCounter::MssClamped);
    assert!(clamped >= 2, "SYN and SYN-ACK clamped: {clamped}");
    let (want, got) = traffic::tcp_source(&acme, CLIENT, ep, 8 * 1024 * 1024)
        .unwrap_or_else(|e| panic!("provider -> consumer: {}", chain(e)));
    assert_eq!(want, got, "sha256 of 8 MB from the target differs");
    let (sent, got) = traffic::tcp_sink(&acme, CLIENT, ep, 8 * 1024 * 1024)
        .unwrap_or_else(|e| panic!("consumer -> provider: {}", chain(e)));
    assert_eq!(sent, got, "sha256 of 8 MB to the target differs");

    // PMTU: a 3000-byte datagram with DF is answered from the endpoint address.
    let route = || r.route_to("acme", EP_Z1.into());
    assert!(
        !route().contains("mtu"),
        "a PMTU before the test: {}",
        route()
    );
    let before = r.endpoint("acme-billing", EndpointCounter::RefusedTooBig);
    let mtu = traffic::udp_pmtu(&acme, CLIENT, SocketAddrV4::new(EP_Z1, UDP_PORT), 3000)
        .unwrap_or_else(|e| panic!("{}", chain(e)));
    assert_eq!(
        mtu, 1500,
        "the consumer's socket did not learn the path MTU"
    );
    assert!(
        route().contains("mtu 1500"),
        "acme did not cache the PMTU:\n{}",
        route()
    );
    assert!(r.endpoint("acme-billing", EndpointCounter::RefusedTooBig) > before);
    assert!(r.iface("fw-acme", IfaceCounter::IcmpFragNeeded) >= 1);
}
