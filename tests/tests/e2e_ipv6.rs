//! End to end, IPv6 in one family (issue 18): the lab's `ledger` service, IPv6 targets
//! behind IPv6 NLB addresses, reached through IPv6 endpoints in both consumer networks
//! (the same /64 in each). pl answers the consumers' and the provider's neighbour
//! solicitations for its addresses; the target sees only the NLB's IPv6 address;
//! `allowed_sources` holds in IPv6; the provider reaches no consumer; a consumer hears
//! packet too big and time exceeded from the endpoint address.

use std::{
    net::{IpAddr, Ipv6Addr, SocketAddr, SocketAddrV6},
    time::{Duration, Instant},
};

use pl_common::stats::{EndpointCounter, IfaceCounter};
use pl_tests::{
    chain, require_kernel,
    running::{
        CLIENT6, EP6_Z1, EP6_Z2, NLB6_Z1, NLB6_Z2, OUTSIDER6, Running, SHORT, T1_6, T2_6,
        parse_who_ip, too_big_from_target,
    },
    stderr,
};
use pl_userspace::lab::{
    LAB_CONFIG, cmd, netns,
    traffic::{self, TCP_PORT, UDP_PORT},
};

/// A lab running the lab config, with the IPv6 targets resolved too.
fn start(tag: &str) -> Running {
    let r = Running::start(tag, LAB_CONFIG);
    wait_resolved6(&r);
    r
}

/// Waits (up to 5 s) until `pl stats --json` shows a MAC for both IPv6 targets: pl
/// resolves them by neighbour solicitation. Read as JSON, by address text, so the check
/// does not depend on how the report types an address.
fn wait_resolved6(r: &Running) {
    let want: Vec<String> = [T1_6, T2_6].iter().map(Ipv6Addr::to_string).collect();
    let resolved = |targets: &[serde_json::Value]| {
        want.iter().all(|ip| {
            targets
                .iter()
                .any(|t| t["ip"].as_str() == Some(ip.as_str()) && t["mac"].as_str().is_some())
        })
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let targets = stats_json(r)["targets"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if resolved(&targets) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "IPv6 targets {want:?} never resolved by neighbour solicitation: {targets:#?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `pl stats --json`, by a second process, as JSON.
fn stats_json(r: &Running) -> serde_json::Value {
    let out = r.lab.pl(&r.lab.fw_ns(), &["stats", "--json"]);
    assert!(out.status.success(), "pl stats --json: {}", stderr(&out));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("pl stats --json: {e}"))
}

/// A WHO answer's target and source, both IPv6.
fn who6(answer: &str) -> (Ipv6Addr, SocketAddrV6) {
    match parse_who_ip(answer) {
        (IpAddr::V6(target), IpAddr::V6(peer), port) => {
            (target, SocketAddrV6::new(peer, port, 0, 0))
        }
        _ => panic!("answer {answer:?} is not IPv6 on both sides"),
    }
}

#[test]
fn tcp_and_udp_over_ipv6_reach_the_service_from_overlapping_networks() {
    require_kernel!("tcp_and_udp_over_ipv6_reach_the_service_from_overlapping_networks");
    let r = start("v6dp");
    for net in ["acme", "globex"] {
        // Zone by zone: the endpoint address's zone picks the target and the NLB address.
        for (ep, target, nlb) in [(EP6_Z1, T1_6, NLB6_Z1), (EP6_Z2, T2_6, NLB6_Z2)] {
            let who = r
                .who_tcp(net, CLIENT6, 0, ep, TCP_PORT)
                .unwrap_or_else(|e| panic!("{net} tcp [{ep}]: {e}"));
            let (t, peer) = who6(&who);
            assert_eq!((t, *peer.ip()), (target, nlb), "{net} tcp [{ep}]: {who}");
        }
        let who = r
            .who_udp(net, CLIENT6, 0, EP6_Z1)
            .unwrap_or_else(|e| panic!("{net} udp: {e}"));
        let (t, peer) = who6(&who);
        assert_eq!((t, *peer.ip()), (T1_6, NLB6_Z1), "{net} udp: {who}");
    }

    // The same IPv6 client tuple from both networks at once: two flows, two SNAT tuples.
    let (a, g) = std::thread::scope(|s| {
        let a = s.spawn(|| r.who_tcp("acme", CLIENT6, 41000, EP6_Z1, TCP_PORT));
        let g = s.spawn(|| r.who_tcp("globex", CLIENT6, 41000, EP6_Z1, TCP_PORT));
        (
            a.join().expect("acme thread"),
            g.join().expect("globex thread"),
        )
    });
    let (a, g) = (
        a.unwrap_or_else(|e| panic!("acme [{CLIENT6}]:41000: {e}")),
        g.unwrap_or_else(|e| panic!("globex [{CLIENT6}]:41000: {e}")),
    );
    let (pa, pg) = (who6(&a).1, who6(&g).1);
    assert_eq!((*pa.ip(), *pg.ip()), (NLB6_Z1, NLB6_Z1), "{a} / {g}");
    assert_ne!(
        pa, pg,
        "both networks' flows share one provider-side tuple: {a} / {g}"
    );

    // The same tuple over UDP from both networks.
    for net in ["acme", "globex"] {
        let who = r
            .who_udp(net, CLIENT6, 41000, EP6_Z1)
            .unwrap_or_else(|e| panic!("{net} udp [{CLIENT6}]:41000: {e}"));
        assert_eq!(who6(&who).1.ip(), &NLB6_Z1, "{net} udp: {who}");
    }

    // The provider only ever saw NLB addresses: never a consumer's.
    let seen: Vec<_> = r
        .servers
        .seen()
        .into_iter()
        .filter(|(target, _, _)| target.is_ipv6())
        .collect();
    assert!(seen.len() >= 9, "the IPv6 servers saw too little: {seen:?}");
    for (target, proto, peer) in &seen {
        assert!(
            [NLB6_Z1, NLB6_Z2].map(IpAddr::V6).contains(&peer.ip()),
            "{target} saw {proto} from {peer}, not an NLB address"
        );
    }

    // Counters: pl answered the consumers' solicitations and counted IPv6 frames.
    let stats = r.stats();
    for iface in ["fw-acme", "fw-globex"] {
        let i = stats
            .interface(iface)
            .unwrap_or_else(|| panic!("no {iface} in stats"));
        assert!(i.get(IfaceCounter::NdpReplied) > 0, "{iface}: {i:?}");
        assert!(i.get(IfaceCounter::Ipv6Tcp) > 0, "{iface}: {i:?}");
        assert!(i.get(IfaceCounter::Ipv6Udp) > 0, "{iface}: {i:?}");
    }
    let prov = stats.interface("fw-prov").expect("fw-prov in stats");
    assert!(prov.get(IfaceCounter::Ipv6Tcp) > 0, "fw-prov: {prov:?}");
    // The targets' MACs came from their advertisements, answering pl's solicitations.
    assert!(prov.get(IfaceCounter::NdpLearned) > 0, "fw-prov: {prov:?}");
    for ep in ["acme-ledger", "globex-ledger"] {
        let e = stats
            .endpoint(ep)
            .unwrap_or_else(|| panic!("{ep} missing from stats"));
        // Two zones and the shared tuple over TCP, twice over UDP.
        assert!(e.get(EndpointCounter::NewFlows) >= 5, "{ep}: {e:?}");
        assert!(
            e.get(EndpointCounter::ToProviderPackets) > 0
                && e.get(EndpointCounter::ToConsumerPackets) > 0,
            "{ep}: {e:?}"
        );
    }
    // The IPv4 service's counters are its own: nothing IPv6 landed there.
    for ep in ["acme-billing", "globex-billing"] {
        let e = stats.endpoint(ep).unwrap_or_else(|| panic!("{ep} missing"));
        assert_eq!(e.get(EndpointCounter::NewFlows), 0, "{ep}: {e:?}");
    }
}

#[test]
fn megabytes_over_ipv6_arrive_intact_both_ways() {
    require_kernel!("megabytes_over_ipv6_arrive_intact_both_ways");
    let r = start("v6mb");
    let ep = SocketAddr::from(SocketAddrV6::new(EP6_Z1, TCP_PORT, 0, 0));
    let len = 16 * 1024 * 1024;
    let (sent, got) = traffic::tcp_sink(&r.ns("acme"), CLIENT6, ep, len)
        .unwrap_or_else(|e| panic!("consumer -> provider: {}", chain(e)));
    assert_eq!(sent, got, "sha256 of the 16 MB sent to the target differs");
    let (want, got) = traffic::tcp_source(&r.ns("globex"), CLIENT6, ep, len)
        .unwrap_or_else(|e| panic!("provider -> consumer: {}", chain(e)));
    assert_eq!(want, got, "sha256 of the 16 MB from the target differs");
}

#[test]
fn ipv6_refusals_hold() {
    require_kernel!("ipv6_refusals_hold");
    let r = start("v6rf");

    // acme-ledger admits fd00:a::/121 only; globex-ledger admits any source.
    assert!(
        r.who_tcp("acme", OUTSIDER6, 0, EP6_Z1, TCP_PORT).is_err(),
        "{OUTSIDER6} is outside acme-ledger's allowed_sources, yet it was answered"
    );
    assert!(
        r.endpoint("acme-ledger", EndpointCounter::RefusedSource) >= 1,
        "refused_source not counted on acme-ledger"
    );
    r.who_tcp("globex", OUTSIDER6, 0, EP6_Z1, TCP_PORT)
        .unwrap_or_else(|e| panic!("globex from {OUTSIDER6}: {e}"));
    r.who_udp("globex", OUTSIDER6, 0, EP6_Z1)
        .unwrap_or_else(|e| panic!("globex udp from {OUTSIDER6}: {e}"));

    // The provider cannot open a connection toward an NLB address...
    let prov = r.ns("prov");
    let to_nlb = traffic::tcp_who(
        &prov,
        T1_6,
        0,
        SocketAddrV6::new(NLB6_Z1, TCP_PORT, 0, 0),
        SHORT,
    );
    assert!(
        to_nlb.is_err(),
        "the provider opened a connection to an NLB address: {to_nlb:?}"
    );
    assert!(r.iface("fw-prov", IfaceCounter::DroppedNoFlow) >= 1);
    // ...nor reach a consumer address, even routing the consumers' /64 at the forwarder.
    cmd::ip([
        "-n",
        &prov,
        "-6",
        "route",
        "add",
        "fd00:a::/64",
        "via",
        "fd00:9::250",
    ])
    .unwrap_or_else(|e| panic!("{}", chain(e)));
    let to_consumer = traffic::tcp_who(&prov, T1_6, 0, SocketAddrV6::new(CLIENT6, 22, 0, 0), SHORT);
    assert!(
        to_consumer.is_err(),
        "the provider reached a consumer: {to_consumer:?}"
    );
    assert!(r.iface("fw-prov", IfaceCounter::DroppedNotOurs) >= 1);
    // Neighbour discovery is answered by pl itself: nothing goes to the forwarder's stack.
    for iface in ["fw-acme", "fw-globex", "fw-prov"] {
        assert_eq!(
            r.iface(iface, IfaceCounter::XdpPass),
            0,
            "{iface}: a frame was passed to the forwarder's stack"
        );
    }
}

/// The lab config with quick health checks on the IPv6 service only.
fn ledger_checked() -> String {
    let at = LAB_CONFIG
        .find("name = \"ledger\"")
        .expect("the lab has a ledger service");
    let (head, tail) = LAB_CONFIG.split_at(at);
    let tail = tail.replacen(
        "cross_zone = false",
        "cross_zone = false\nhealth_check = { interval_s = 1, timeout_ms = 300, healthy_threshold = 2, unhealthy_threshold = 2 }",
        1,
    );
    assert!(
        tail.contains("health_check"),
        "the ledger section changed shape"
    );
    format!("{head}{tail}")
}

/// `target`'s (health, last check) as `pl stats --json` tells it.
fn health6(r: &Running, target: Ipv6Addr) -> (String, String) {
    let stats = stats_json(r);
    let t = stats["targets"]
        .as_array()
        .and_then(|ts| {
            ts.iter()
                .find(|t| t["ip"].as_str() == Some(target.to_string().as_str()))
        })
        .unwrap_or_else(|| panic!("target {target} not in stats: {stats:#}"))
        .clone();
    let s = |k: &str| t[k].as_str().unwrap_or_default().to_owned();
    (s("health"), s("last_check"))
}

/// Waits up to `secs` for `target`'s health to be `want`.
fn wait_health6(r: &Running, target: Ipv6Addr, want: &str, secs: u64) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let (health, last) = health6(r, target);
        if health == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{target} not {want} within {secs} s: {health} (last check {last})"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Sets (or with `None` removes) an ip6 input rule in the provider's namespace.
fn provider_rule6(ns: &str, rule: Option<&str>) {
    let mut c = netns::exec(ns, "nft");
    let file = std::env::temp_dir().join(format!("{ns}-pltest6.nft"));
    match rule {
        Some(rule) => {
            std::fs::write(
                &file,
                format!("table ip6 pltest6 {{\n chain input {{\n  type filter hook input priority 0;\n  {rule}\n }}\n}}\n"),
            )
            .expect("write nft rules");
            c.arg("-f").arg(&file)
        }
        None => c.args(["delete", "table", "ip6", "pltest6"]),
    };
    let out = c.output().expect("nft");
    let _ = std::fs::remove_file(&file);
    assert!(out.status.success(), "nft in {ns}: {}", stderr(&out));
}

/// IPv6 targets are health-checked from their zone's IPv6 NLB address: both pass; one
/// that answers SYNs with RST goes unhealthy and new flows through its zone's endpoint
/// address fail over to the other zone's target; it comes back when it answers again.
#[test]
fn an_ipv6_target_that_refuses_fails_over_and_comes_back() {
    require_kernel!("an_ipv6_target_that_refuses_fails_over_and_comes_back");
    let r = Running::start("v6hc", &ledger_checked());
    wait_resolved6(&r);
    for t in [T1_6, T2_6] {
        wait_health6(&r, t, "healthy", 6);
        assert_eq!(health6(&r, t).1, "syn-ack", "{t}: passed on a SYN-ACK");
    }
    let prov = r.ns("prov");
    provider_rule6(
        &prov,
        Some("ip6 daddr fd00:9::11 tcp dport 8443 tcp flags syn reject with tcp reset"),
    );
    wait_health6(&r, T1_6, "unhealthy", 6);
    assert_eq!(health6(&r, T1_6).1, "rst");
    let who = r
        .who_tcp("acme", CLIENT6, 0, EP6_Z1, TCP_PORT)
        .unwrap_or_else(|e| panic!("acme tcp [{EP6_Z1}] after failover: {e}"));
    assert_eq!(
        who6(&who).0,
        T2_6,
        "the new flow went to the unhealthy target: {who}"
    );
    provider_rule6(&prov, None);
    wait_health6(&r, T1_6, "healthy", 6);
    let who = r
        .who_tcp("acme", CLIENT6, 0, EP6_Z1, TCP_PORT)
        .unwrap_or_else(|e| panic!("acme tcp [{EP6_Z1}] after recovery: {e}"));
    assert_eq!(
        who6(&who).0,
        T1_6,
        "the recovered target takes its zone's flows: {who}"
    );
}

/// While `pl run` is stopped (as during an upgrade) its attached program carries on, IPv6
/// included: the IPv6 programs stay in the pinned `PL_TAILS`, so neighbour solicitations
/// are answered and TCP over IPv6 reaches the service; after the restart, too.
#[test]
fn ipv6_is_carried_while_pl_run_is_stopped() {
    require_kernel!("ipv6_is_carried_while_pl_run_is_stopped");
    let r = start("v6st");
    let acme = r.ns("acme");
    let ask = |ns: &str| {
        traffic::tcp_who(
            ns,
            CLIENT6,
            0,
            SocketAddrV6::new(EP6_Z1, TCP_PORT, 0, 0),
            SHORT,
        )
    };
    let before = ask(&acme).unwrap_or_else(|e| panic!("before the stop: {e}"));
    assert_eq!(who6(&before).0, T1_6, "{before}");
    // Forget the endpoint's MAC, so the client must solicit it while pl run is down.
    cmd::ip(["-n", &acme, "-6", "neigh", "flush", "dev", "eth0"])
        .unwrap_or_else(|e| panic!("{}", chain(e)));
    let (r, _, during) = r.restart_after(LAB_CONFIG, &[], |_| ask(&acme));
    let during = during.unwrap_or_else(|e| panic!("while pl run was stopped: {e}"));
    assert_eq!(who6(&during).0, T1_6, "{during}");
    let after = ask(&acme).unwrap_or_else(|e| panic!("after the restart: {e}"));
    assert_eq!(who6(&after).0, T1_6, "{after}");
    assert!(r.iface("fw-acme", IfaceCounter::NdpReplied) >= 1);
}

/// What a consumer's socket heard about a datagram it sent with hop limit 1: the ICMPv6
/// origin, type and code of the error queued on it, and the address that sent the error.
fn hop_limit_1_error(ns: &str) -> (u8, u8, u8, Option<Ipv6Addr>) {
    use nix::sys::socket::{MsgFlags, SockaddrIn6, recvmsg, setsockopt, sockopt};
    use std::os::fd::AsRawFd as _;
    netns::run_in(ns, || -> std::io::Result<(u8, u8, u8, Option<Ipv6Addr>)> {
        let u = std::net::UdpSocket::bind(SocketAddrV6::new(CLIENT6, 0, 0, 0))?;
        u.connect(SocketAddrV6::new(EP6_Z1, UDP_PORT, 0, 0))?;
        setsockopt(&u, sockopt::Ipv6Ttl, &1)?;
        setsockopt(&u, sockopt::Ipv6RecvErr, &true)?;
        u.send(b"WHO")?;
        let deadline = Instant::now() + SHORT;
        loop {
            let mut buf = [0u8; 256];
            let mut iov = [std::io::IoSliceMut::new(&mut buf)];
            let mut cmsg = nix::cmsg_space!(nix::libc::sock_extended_err, nix::libc::sockaddr_in6);
            let flags = MsgFlags::MSG_ERRQUEUE | MsgFlags::MSG_DONTWAIT;
            match recvmsg::<SockaddrIn6>(u.as_raw_fd(), &mut iov, Some(&mut cmsg), flags) {
                Ok(m) => {
                    for c in m.cmsgs()? {
                        if let nix::sys::socket::ControlMessageOwned::Ipv6RecvErr(e, from) = c {
                            let from = from.map(|a| Ipv6Addr::from(a.sin6_addr.s6_addr));
                            return Ok((e.ee_origin, e.ee_type, e.ee_code, from));
                        }
                    }
                    return Err(std::io::Error::other("an error queued without its ICMPv6"));
                }
                Err(nix::errno::Errno::EAGAIN) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => return Err(e.into()),
            }
        }
    })
    .unwrap_or_else(|e| panic!("{}", chain(e)))
    .unwrap_or_else(|e| panic!("a hop-limit-1 datagram's error in {ns}: {e}"))
}

/// PMTU discovery and traceroute through an IPv6 endpoint: the consumer network at 9000,
/// the provider at 1500. A 3000-byte datagram is answered with packet too big (MTU 1500)
/// from the endpoint address and the consumer's kernel caches the path MTU (it checks
/// the ICMPv6 checksum and that the quoted packet is one its socket sent); a datagram
/// with hop limit 1 is answered with time exceeded from the endpoint address.
#[test]
fn an_ipv6_consumer_hears_packet_too_big_and_time_exceeded() {
    require_kernel!("an_ipv6_consumer_hears_packet_too_big_and_time_exceeded");
    let r = Running::start_shaped("v6pm", LAB_CONFIG, &[], |lab| {
        lab.with_mtu(9000).with_network_mtu("prov", 1500)
    });
    wait_resolved6(&r);
    let acme = r.ns("acme");
    let route = r.route_to("acme", EP6_Z1.into());
    assert!(!route.contains("mtu"), "a PMTU before the test: {route}");
    netns::run_in(&acme, || -> std::io::Result<()> {
        let u = std::net::UdpSocket::bind(SocketAddrV6::new(CLIENT6, 0, 0, 0))?;
        u.connect(SocketAddrV6::new(EP6_Z1, UDP_PORT, 0, 0))?;
        u.send(&[0x5a; 3000])?;
        Ok(())
    })
    .unwrap_or_else(|e| panic!("{}", chain(e)))
    .unwrap_or_else(|e| panic!("sending 3000 bytes: {e}"));
    r.wait_route("acme", EP6_Z1.into(), "mtu 1500");
    assert!(r.endpoint("acme-ledger", EndpointCounter::RefusedTooBig) >= 1);
    assert!(r.iface("fw-acme", IfaceCounter::IcmpFragNeeded) >= 1);

    // SO_EE_ORIGIN_ICMP6, time exceeded in transit, from the endpoint address.
    let heard = hop_limit_1_error(&acme);
    assert_eq!(heard, (3, 3, 0, Some(EP6_Z1)), "(origin, type, code, from)");
    assert!(r.endpoint("acme-ledger", EndpointCounter::RefusedTtl) >= 1);
    assert_eq!(r.iface("fw-acme", IfaceCounter::IcmpTimeExceeded), 1);
}

/// A hop on the provider side says a consumer's datagram was too big for its 1400-byte
/// link: the error, translated along the flow, reaches the consumer from the endpoint
/// address quoting what it sent, and its kernel caches the path MTU.
#[test]
fn packet_too_big_from_the_provider_side_reaches_the_ipv6_consumer() {
    require_kernel!("packet_too_big_from_the_provider_side_reaches_the_ipv6_consumer");
    let r = start("v6pt");
    // A connected UDP socket in acme, with a flow through the endpoint.
    let ep = SocketAddr::from(SocketAddrV6::new(EP6_Z1, UDP_PORT, 0, 0));
    let (sock, flow) = r.udp_flow("acme", SocketAddrV6::new(CLIENT6, 41500, 0, 0).into(), ep);
    let route = r.route_to("acme", EP6_Z1.into());
    assert!(!route.contains("mtu"), "a PMTU before the test: {route}");
    // Quoting the datagram as the provider side carried it: NLB address and SNAT port to
    // the target, hop limit one lower.
    r.from_provider(&too_big_from_target(&flow, 1400));

    r.wait_route("acme", EP6_Z1.into(), "mtu 1400");
    assert_eq!(r.iface("fw-prov", IfaceCounter::IcmpTranslated), 1);
    drop(sock);
}
