//! End to end, family translation (issue 18, RFC 7915 as an NLB does it): the lab with
//! IPv6 addresses on the IPv4 service's acme endpoint and IPv4 addresses on the IPv6
//! service's. An IPv6 consumer reaches the IPv4 targets, which see the zone's IPv4 NLB
//! address; an IPv4 consumer reaches the IPv6 targets, which see the IPv6 one; bulk data
//! crosses intact both ways; same-family consumers of the same service keep working, on
//! SNAT ports apart from the translated flows'.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket},
    time::{Duration, Instant},
};

use pl_common::stats::{EndpointCounter, IfaceCounter};
use pl_tests::{
    chain, output, require_kernel,
    running::{
        CLIENT, CLIENT6, EP_Z1, NLB6_Z1, NLB6_Z2, Running, SHORT, T1, T1_6, T2, T2_6, parse_who_ip,
        pl_flows,
    },
    stderr,
};
use pl_userspace::{
    frame::{Ipv4, Ipv6, ipv4_frame, ipv6_frame, parse_mac},
    lab::{
        LAB_CONFIG, PEER_IFACE, netns,
        traffic::{self, TCP_PORT, UDP_PORT},
    },
    neigh::RawSender,
};

/// acme's IPv6 addresses of the IPv4 service `billing`, and IPv4 addresses of the IPv6
/// service `ledger`.
const BILLING6_Z1: Ipv6Addr = Ipv6Addr::new(0xfd00, 0xa, 0, 0, 0, 0, 0, 0x102);
const BILLING6_Z2: Ipv6Addr = Ipv6Addr::new(0xfd00, 0xa, 0, 0, 0, 0, 0, 0x103);
const LEDGER4_Z1: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 102);
const LEDGER4_Z2: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 103);
const NLB_Z1: Ipv4Addr = Ipv4Addr::new(10, 9, 0, 250);
const NLB_Z2: Ipv4Addr = Ipv4Addr::new(10, 9, 0, 251);

/// The lab config with the other family's addresses (and allowed sources) on acme's two
/// endpoints.
fn config() -> String {
    let swap = |text: String, from: &str, to: &str| {
        assert!(text.contains(from), "the lab config no longer has {from:?}");
        text.replacen(from, to, 1)
    };
    let c = swap(
        LAB_CONFIG.to_owned(),
        "addresses = [{ ip = \"10.0.0.100\", zone = \"z1\" }, { ip = \"10.0.0.101\", zone = \"z2\" }]\nallowed_sources = [\"10.0.0.0/25\"]",
        "addresses = [{ ip = \"10.0.0.100\", zone = \"z1\" }, { ip = \"10.0.0.101\", zone = \"z2\" }, { ip = \"fd00:a::102\", zone = \"z1\" }, { ip = \"fd00:a::103\", zone = \"z2\" }]\nallowed_sources = [\"10.0.0.0/25\", \"fd00:a::/121\"]",
    );
    swap(
        c,
        "addresses = [{ ip = \"fd00:a::100\", zone = \"z1\" }, { ip = \"fd00:a::101\", zone = \"z2\" }]\nallowed_sources = [\"fd00:a::/121\"]",
        "addresses = [{ ip = \"fd00:a::100\", zone = \"z1\" }, { ip = \"fd00:a::101\", zone = \"z2\" }, { ip = \"10.0.0.102\", zone = \"z1\" }, { ip = \"10.0.0.103\", zone = \"z2\" }]\nallowed_sources = [\"fd00:a::/121\", \"10.0.0.0/25\"]",
    )
}

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

/// A connected UDP socket in acme from `src:port` to `ep`, answered once through pl, and
/// its flow's provider side: (NLB address, target).
fn udp_flow(
    r: &Running,
    src: IpAddr,
    port: u16,
    ep: IpAddr,
) -> (UdpSocket, SocketAddr, SocketAddr) {
    let sock = netns::run_in(&r.ns("acme"), || -> std::io::Result<UdpSocket> {
        let u = UdpSocket::bind(SocketAddr::new(src, port))?;
        u.connect(SocketAddr::new(ep, UDP_PORT))?;
        u.set_read_timeout(Some(SHORT))?;
        u.send(b"WHO")?;
        let mut buf = [0u8; 256];
        u.recv(&mut buf)?;
        Ok(u)
    })
    .unwrap_or_else(|e| panic!("{}", chain(e)))
    .unwrap_or_else(|e| panic!("UDP through {ep}: {e}"));
    let mut flows = Vec::new();
    for endpoint in ["acme-billing", "acme-ledger"] {
        flows.extend(pl_flows(r, &["--endpoint", endpoint]).unwrap_or_else(|e| panic!("{e}")));
    }
    let flow = flows
        .iter()
        .find(|f| f.consumer == SocketAddr::new(src, port))
        .unwrap_or_else(|| panic!("no flow for the socket: {flows:#?}"));
    (sock, flow.nlb, flow.target)
}

/// Sends `packet` (IPv4 or IPv6) into pl from the provider side, as a hop there would.
fn from_provider(r: &Running, packet: &[u8], v6: bool) {
    let p = r.lab.topo.network("prov").expect("prov");
    let (peer, fw) = (
        parse_mac(&p.peer_mac).expect("MAC"),
        parse_mac(&p.fw_mac).expect("MAC"),
    );
    let (frame, ether_type) = if v6 {
        (ipv6_frame(fw, peer, packet), 0x86dd)
    } else {
        (ipv4_frame(fw, peer, packet), 0x0800)
    };
    netns::run_in(&r.ns("prov"), || -> std::io::Result<()> {
        let ifindex = nix::net::if_::if_nametoindex(PEER_IFACE).map_err(std::io::Error::from)?;
        RawSender::open(ifindex)?.send(&frame, ether_type)
    })
    .unwrap_or_else(|e| panic!("{}", chain(e)))
    .unwrap_or_else(|e| panic!("sending the ICMP error: {e}"));
}

/// Waits until acme's route to `ep` carries `want` (a cached path MTU).
fn wait_route(r: &Running, ep: IpAddr, want: &str) {
    let route = || {
        let family = if ep.is_ipv6() { "-6" } else { "-4" };
        let out = output(netns::exec(&r.ns("acme"), "ip").args([
            family,
            "route",
            "get",
            &ep.to_string(),
        ]));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let deadline = Instant::now() + Duration::from_secs(3);
    while !route().contains(want) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        route().contains(want),
        "acme's route to {ep} has no {want}:\n{}",
        route()
    );
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
    let (sock6, nlb, target) = udp_flow(&r, CLIENT6.into(), 41500, BILLING6_Z1.into());
    let (SocketAddr::V4(nlb), SocketAddr::V4(target)) = (nlb, target) else {
        panic!("the IPv4 side of a 6-to-4 flow: {nlb}, {target}");
    };
    let quoted = Ipv4 {
        ttl: 63,
        df: false,
        ..Ipv4::new(nlb.ip().octets(), target.ip().octets())
    }
    .udp(nlb.port(), target.port(), b"WHO");
    let icmp = Ipv4::new(target.ip().octets(), nlb.ip().octets()).icmp_error(
        3,
        4,
        [0, 0, 0x05, 0x78],
        &quoted,
    );
    from_provider(&r, &icmp, false);
    wait_route(&r, BILLING6_Z1.into(), "mtu 1420");

    // IPv4 consumer, IPv6 target: packet too big becomes fragmentation needed, 1380.
    let (sock4, nlb, target) = udp_flow(&r, CLIENT.into(), 41501, LEDGER4_Z1.into());
    let (SocketAddr::V6(nlb), SocketAddr::V6(target)) = (nlb, target) else {
        panic!("the IPv6 side of a 4-to-6 flow: {nlb}, {target}");
    };
    let quoted = Ipv6 {
        hop_limit: 63,
        ..Ipv6::new(nlb.ip().octets(), target.ip().octets())
    }
    .udp(nlb.port(), target.port(), b"WHO");
    let mut msg = vec![2, 0, 0, 0, 0, 0, 0x05, 0x78];
    msg.extend_from_slice(&quoted);
    from_provider(
        &r,
        &Ipv6::new(target.ip().octets(), nlb.ip().octets()).icmp6(&msg),
        true,
    );
    wait_route(&r, LEDGER4_Z1.into(), "mtu 1380");
    assert_eq!(r.iface("fw-prov", IfaceCounter::IcmpTranslated), 2);
    drop((sock6, sock4));
}
