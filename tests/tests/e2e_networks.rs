//! End to end, networks beyond the lab's plain shape: a target that moves to a new MAC,
//! a target shared by two services, a consumer behind a router and a target reached
//! through one.

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4},
    time::{Duration, Instant},
};

use pl_common::stats::EndpointCounter;
use pl_tests::{
    chain, output, pl_bin, require_kernel,
    running::{
        CLIENT, CLIENT6, EP_Z1, EP6_Z1, ExtraNs, Running, SHORT, T1, T1_6, parse_who, pl_flows,
    },
    stderr,
};
use pl_userspace::{
    lab::cmd,
    lab::netns,
    lab::traffic::{self, Servers, TCP_PORT, UDP_PORT},
    lab::{LAB_CONFIG, PEER_IFACE},
    neigh::RawSender,
};

/// A target's address moves to another MAC (failover, VRRP) and announces it with a
/// gratuitous ARP (IPv4) and an unsolicited advertisement (IPv6): its established flows of
/// both families follow within a second, as new flows do.
#[test]
fn flows_follow_a_target_that_moves_to_a_new_mac() {
    require_kernel!("flows_follow_a_target_that_moves_to_a_new_mac");
    let r = Running::start("mm", LAB_CONFIG);
    let (acme, prov) = (r.ns("acme"), r.ns("prov"));
    let ep = SocketAddrV4::new(EP_Z1, TCP_PORT);
    let mut held = traffic::tcp_hold(&acme, CLIENT, ep).unwrap_or_else(|e| panic!("{}", chain(e)));
    // Tried again until pl has the IPv6 target's MAC (neighbour solicitation).
    let mut held6 = {
        let ep6 = SocketAddr::from((EP6_Z1, TCP_PORT));
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            match traffic::tcp_hold(&acme, CLIENT6, ep6) {
                Ok(s) => break s,
                Err(_) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(200));
                }
                Err(e) => panic!("over IPv6: {}", chain(e)),
            }
        }
    };
    let moved: pl_userspace::frame::Mac = [2, 0, 0, 0, 0x09, 0x99];
    cmd::ip([
        "-n",
        &prov,
        "link",
        "set",
        "dev",
        PEER_IFACE,
        "address",
        "02:00:00:00:09:99",
    ])
    .unwrap_or_else(|e| panic!("moving the provider's MAC: {}", chain(e)));
    netns::run_in(&prov, || -> std::io::Result<()> {
        let ifindex = nix::net::if_::if_nametoindex(PEER_IFACE).map_err(std::io::Error::from)?;
        let garp = pl_userspace::frame::arp_request(moved, T1.octets(), T1.octets());
        let sender = RawSender::open(ifindex)?;
        sender.send(&garp, pl_common::proto::ETH_P_ARP)?;
        sender.advertise(moved, T1_6)
    })
    .unwrap_or_else(|e| panic!("{}", chain(e)))
    .unwrap_or_else(|e| panic!("gratuitous ARP: {e}"));
    let learned = r
        .run
        .wait_for_stats(Duration::from_secs(3), |s| {
            [IpAddr::from(T1), T1_6.into()].iter().all(|ip| {
                s.targets
                    .iter()
                    .any(|t| t.ip == *ip && t.mac.as_deref() == Some("02:00:00:00:09:99"))
            })
        })
        .unwrap_or_else(|e| panic!("{}", chain(e)));
    assert!(
        learned
            .targets
            .iter()
            .any(|t| t.ip == T1 && t.mac.as_deref() == Some("02:00:00:00:09:99")),
        "the gratuitous ARP was not learned: {:?}",
        learned.targets
    );
    assert!(
        learned
            .targets
            .iter()
            .any(|t| t.ip == T1_6 && t.mac.as_deref() == Some("02:00:00:00:09:99")),
        "the unsolicited advertisement was not learned: {:?}",
        learned.targets
    );
    // The refresh that learned it also moved the flows (same tick); give it a second.
    std::thread::sleep(Duration::from_millis(1200));
    let answer = traffic::finish_hold(&mut held)
        .unwrap_or_else(|e| panic!("the established flow kept the dead MAC: {e}"));
    assert_eq!(answer.len(), 64, "not a sha256 answer: {answer:?}");
    let answer = traffic::finish_hold(&mut held6)
        .unwrap_or_else(|e| panic!("the established IPv6 flow kept the dead MAC: {e}"));
    assert_eq!(answer.len(), 64, "not a sha256 answer: {answer:?}");
    r.who_tcp("acme", CLIENT, 0, EP_Z1, TCP_PORT)
        .unwrap_or_else(|e| panic!("a new flow after the move: {e}"));
    let out = r
        .run
        .stop_and_down()
        .unwrap_or_else(|e| panic!("{}", chain(e)));
    let log = stderr(&out);
    // One flow of each family, in one refresh or two.
    let followed: u32 = log
        .lines()
        .filter_map(|l| l.split_once(" flows follow"))
        .filter_map(|(head, _)| head.rsplit(' ').next()?.parse::<u32>().ok())
        .sum();
    assert!(
        log.contains("10.9.0.11 moved from")
            && log.contains("fd00:9::11 moved from")
            && followed == 2,
        "pl run's log lacks the moves ({followed} flows followed):\n{log}"
    );
}

/// One host serving two services (two target groups): both reach it, each from its own
/// NLB address, and each service counts only its own flows to it.
#[test]
fn a_target_shared_by_two_services_serves_both() {
    require_kernel!("a_target_shared_by_two_services_serves_both");
    const PAYROLL_EP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 110);
    let config = format!(
        r#"{LAB_CONFIG}
[[service]]
name = "payroll"
network = "prov"
nlb_addresses = [{{ ip = "10.9.0.240", zone = "z1" }}]
allowed_principals = ["acme"]
accepted_endpoints = ["acme-payroll"]
listeners = [{{ protocol = "tcp", port = 443, target_port = 8443 }}]
targets = [{{ ip = "10.9.0.11", zone = "z1" }}]

[[endpoint]]
name = "acme-payroll"
service = "payroll"
network = "acme"
addresses = [{{ ip = "10.0.0.110", zone = "z1" }}]
"#
    );
    let r = Running::start("st", &config);
    let acme = r.ns("acme");
    for (ep, nlb) in [(EP_Z1, "10.9.0.250"), (PAYROLL_EP, "10.9.0.240")] {
        let who = r
            .who_tcp("acme", CLIENT, 0, ep, TCP_PORT)
            .unwrap_or_else(|e| panic!("{ep}: {e}"));
        let (target, peer, _) = parse_who(&who);
        assert_eq!((target, peer.to_string()), (T1, nlb.to_owned()), "via {ep}");
    }
    let _billing = traffic::tcp_hold(&acme, CLIENT, SocketAddrV4::new(EP_Z1, TCP_PORT))
        .unwrap_or_else(|e| panic!("{}", chain(e)));
    let _payroll: Vec<_> = (0..2)
        .map(|_| {
            traffic::tcp_hold(&acme, CLIENT, SocketAddrV4::new(PAYROLL_EP, TCP_PORT))
                .unwrap_or_else(|e| panic!("{}", chain(e)))
        })
        .collect();
    let stats = r.stats();
    let t1: Vec<(&str, u64, u64)> = stats
        .targets
        .iter()
        .filter(|t| t.ip == T1)
        .map(|t| (t.service.as_str(), t.new_flows, t.active_flows))
        .collect();
    // One WHO and one held connection through billing, one WHO and two held through
    // payroll (the WHO flows are still closing): each service counts its own.
    assert_eq!(
        t1,
        [("billing", 2, 2), ("payroll", 3, 3)],
        "per-service counts for the shared target"
    );
    assert!(
        stats
            .targets
            .iter()
            .filter(|t| t.ip == T1)
            .all(|t| t.mac.is_some()),
        "the shared target is resolved for both: {:?}",
        stats.targets
    );
}

/// A consumer on a remote network, routed through a router on the consumer's segment (a
/// VPN or Direct Connect edge): its packets reach the endpoint with the router's MAC and
/// a remote source; replies go back to the router; `allowed_sources` names the remote
/// prefix.
#[test]
fn a_consumer_behind_a_router_reaches_the_endpoint() {
    require_kernel!("a_consumer_behind_a_router_reaches_the_endpoint");
    const REMOTE: Ipv4Addr = Ipv4Addr::new(192, 168, 50, 10);
    let config = LAB_CONFIG.replace(
        r#"allowed_sources = ["10.0.0.0/25"]"#,
        r#"allowed_sources = ["10.0.0.0/25", "192.168.50.0/24"]"#,
    );
    assert_ne!(config, LAB_CONFIG, "the lab config changed shape");
    let r = Running::start("rt", &config);
    let acme = r.ns("acme");
    let remote = ExtraNs(format!("{}remote", r.lab.lab.prefix()));
    let ip = |args: &[&str]| {
        cmd::ip(args.iter().copied()).unwrap_or_else(|e| panic!("ip {args:?}: {}", chain(e)));
    };
    ip(&["netns", "add", &remote.0]);
    // The router is the consumer namespace itself: one leg on the lab segment, one here.
    ip(&[
        "-n", &acme, "link", "add", "edge", "type", "veth", "peer", "name", "eth0", "netns",
        &remote.0,
    ]);
    ip(&["-n", &acme, "addr", "add", "192.168.50.1/24", "dev", "edge"]);
    ip(&["-n", &acme, "link", "set", "edge", "up"]);
    ip(&[
        "-n",
        &remote.0,
        "addr",
        "add",
        "192.168.50.10/24",
        "dev",
        "eth0",
    ]);
    ip(&["-n", &remote.0, "link", "set", "eth0", "up"]);
    ip(&["-n", &remote.0, "link", "set", "lo", "up"]);
    ip(&[
        "-n",
        &remote.0,
        "route",
        "add",
        "default",
        "via",
        "192.168.50.1",
    ]);
    let out = output(netns::exec(&acme, "sysctl").args(["-qw", "net.ipv4.ip_forward=1"]));
    assert!(out.status.success(), "sysctl: {}", stderr(&out));

    let ep = SocketAddrV4::new(EP_Z1, TCP_PORT);
    let who = traffic::tcp_who(&remote.0, REMOTE, 0, ep, SHORT)
        .unwrap_or_else(|e| panic!("TCP from behind the router: {}", chain(e)));
    let (target, nlb, _) = parse_who(&who);
    assert_eq!((target, nlb), (T1, Ipv4Addr::new(10, 9, 0, 250)), "{who}");
    let udp = traffic::udp_who(
        &remote.0,
        REMOTE,
        0,
        SocketAddrV4::new(EP_Z1, UDP_PORT),
        SHORT,
    )
    .unwrap_or_else(|e| panic!("UDP from behind the router: {}", chain(e)));
    assert!(udp.contains("target=10.9.0.11"), "{udp}");
    let flows = pl_flows(&r, &["--endpoint", "acme-billing"]).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        flows.iter().any(|f| f.consumer.ip() == REMOTE),
        "no flow from the remote consumer: {flows:?}"
    );
    // A remote source outside allowed_sources is still refused.
    let before = r.endpoint("acme-billing", EndpointCounter::RefusedSource);
    ip(&[
        "-n",
        &remote.0,
        "addr",
        "add",
        "192.168.60.10/24",
        "dev",
        "eth0",
    ]);
    let outsider = traffic::tcp_who(&remote.0, Ipv4Addr::new(192, 168, 60, 10), 0, ep, SHORT);
    assert!(
        outsider.is_err(),
        "a source outside allowed_sources got through"
    );
    assert!(r.endpoint("acme-billing", EndpointCounter::RefusedSource) > before);
}

/// The routed target, behind ROUTER, in a site namespace.
const ROUTED: Ipv4Addr = Ipv4Addr::new(10, 60, 0, 5);
/// A target behind a router (10.9.0.3) that never answers.
const STRANDED: Ipv4Addr = Ipv4Addr::new(10, 70, 0, 5);
const ROUTER: Ipv4Addr = Ipv4Addr::new(10, 9, 0, 1);
/// acme-payroll's endpoint addresses: z1 (on-link target T1) and z2 (ROUTED, STRANDED).
const EP_ON_LINK: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 110);
const EP_ROUTED: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 111);

/// The lab config with routes on the provider network and a service, payroll, with a
/// target on the link, one behind ROUTER and one stranded.
fn routed_config() -> String {
    let lab_config = LAB_CONFIG.replace(
        "interface = \"fw-prov\"",
        "interface = \"fw-prov\"\nroutes = [{ to = \"10.60.0.0/16\", via = \"10.9.0.1\" }, { to = \"10.70.0.0/24\", via = \"10.9.0.3\" }]",
    );
    assert_ne!(lab_config, LAB_CONFIG, "the lab config changed shape");
    format!(
        r#"{lab_config}
[[service]]
name = "payroll"
network = "prov"
nlb_addresses = [{{ ip = "10.9.0.240", zone = "z1" }}, {{ ip = "10.9.0.241", zone = "z2" }}]
allowed_principals = ["acme"]
accepted_endpoints = ["acme-payroll"]
listeners = [{{ protocol = "tcp", port = 443, target_port = 8443 }}, {{ protocol = "udp", port = 53, target_port = 5353 }}]
targets = [{{ ip = "10.9.0.11", zone = "z1" }}, {{ ip = "10.60.0.5", zone = "z2" }}, {{ ip = "10.70.0.5", zone = "z2" }}]
health_check = {{ interval_s = 1, timeout_ms = 300, healthy_threshold = 2, unhealthy_threshold = 2 }}

[[endpoint]]
name = "acme-payroll"
service = "payroll"
network = "acme"
addresses = [{{ ip = "10.0.0.110", zone = "z1" }}, {{ ip = "10.0.0.111", zone = "z2" }}]
"#
    )
}

/// The router is the provider namespace: 10.9.0.1 on the lab segment, 10.60.0.1 toward
/// `site`, where the routed target lives and serves. The servers, and the router's MAC.
fn route_a_site(prov: &str, site: &ExtraNs) -> (Servers, String) {
    let ip = |args: &[&str]| {
        cmd::ip(args.iter().copied()).unwrap_or_else(|e| panic!("ip {args:?}: {}", chain(e)));
    };
    ip(&["netns", "add", &site.0]);
    ip(&["-n", prov, "addr", "add", "10.9.0.1/24", "dev", PEER_IFACE]);
    ip(&[
        "-n", prov, "link", "add", "site", "type", "veth", "peer", "name", "eth0", "netns", &site.0,
    ]);
    ip(&["-n", prov, "addr", "add", "10.60.0.1/24", "dev", "site"]);
    ip(&["-n", prov, "link", "set", "site", "up"]);
    ip(&["-n", &site.0, "addr", "add", "10.60.0.5/24", "dev", "eth0"]);
    ip(&["-n", &site.0, "link", "set", "eth0", "up"]);
    ip(&["-n", &site.0, "link", "set", "lo", "up"]);
    ip(&["-n", &site.0, "route", "add", "default", "via", "10.60.0.1"]);
    let out = output(netns::exec(prov, "sysctl").args(["-qw", "net.ipv4.ip_forward=1"]));
    assert!(out.status.success(), "sysctl: {}", stderr(&out));
    let site_servers =
        Servers::start(&site.0, &[ROUTED]).unwrap_or_else(|e| panic!("servers: {}", chain(e)));
    let out = output(netns::exec(prov, "cat").arg(format!("/sys/class/net/{PEER_IFACE}/address")));
    let router_mac = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    (site_servers, router_mac)
}

/// The router is resolved, the routed target checked healthy through it; the stranded
/// one has no MAC; `pl stats` names the router.
fn the_router_is_resolved(r: &Running, router_mac: &str) {
    let stats = r
        .run
        .wait_for_stats(Duration::from_secs(10), |s| {
            s.targets
                .iter()
                .any(|t| t.ip == ROUTED && t.health == "healthy")
        })
        .unwrap_or_else(|e| panic!("stats: {}", chain(e)));
    let t = |ip: Ipv4Addr| {
        stats
            .targets
            .iter()
            .find(|t| t.ip == ip)
            .unwrap_or_else(|| panic!("no target {ip} in {:?}", stats.targets))
    };
    let routed = t(ROUTED);
    assert_eq!(
        (routed.via, routed.mac.as_deref(), routed.health.as_str()),
        (Some(ROUTER.into()), Some(router_mac), "healthy"),
        "the routed target: {routed:?}"
    );
    let stranded = t(STRANDED);
    assert_eq!(
        (stranded.via, stranded.mac.as_deref()),
        (Some(Ipv4Addr::new(10, 9, 0, 3).into()), None),
        "a target whose router never answers: {stranded:?}"
    );
    let text = output(netns::exec(&r.lab.fw_ns(), pl_bin()).args(["stats"]));
    let text = String::from_utf8_lossy(&text.stdout).into_owned();
    assert!(
        text.lines().any(|l| {
            let cells: Vec<&str> = l.split_whitespace().collect();
            cells
                .get(1..4)
                .is_some_and(|c| c[0] == "10.60.0.5" && c[2] == "10.9.0.1")
        }),
        "pl stats names the router:\n{text}"
    );
}

/// Targets behind a router (another subnet, an on-premises site): the provider network
/// carries static routes; a routed target's frames and health checks go to its router's
/// MAC, learned by ARP from an NLB address; `pl stats` names the router. A target whose
/// router never answers stays unresolved and takes no flow.
#[test]
fn a_routed_target_is_reached_and_checked_through_its_router() {
    require_kernel!("a_routed_target_is_reached_and_checked_through_its_router");
    let r = Running::start("rtt", &routed_config());
    let prov = r.ns("prov");
    let site = ExtraNs(format!("{}site", r.lab.lab.prefix()));
    let (_site_servers, router_mac) = route_a_site(&prov, &site);
    the_router_is_resolved(&r, &router_mac);

    // Flows reach the on-link target in z1 and the routed one in z2, TCP and UDP, each
    // seeing its zone's NLB address; the stranded target takes none.
    for (ep, target, nlb) in [
        (EP_ON_LINK, T1, Ipv4Addr::new(10, 9, 0, 240)),
        (EP_ROUTED, ROUTED, Ipv4Addr::new(10, 9, 0, 241)),
    ] {
        for _ in 0..4 {
            let who = r
                .who_tcp("acme", CLIENT, 0, ep, TCP_PORT)
                .unwrap_or_else(|e| panic!("TCP to {ep}: {e}"));
            let (t, peer, _) = parse_who(&who);
            assert_eq!((t, peer), (target, nlb), "TCP through {ep}");
        }
        let udp = r
            .who_udp("acme", CLIENT, 0, ep)
            .unwrap_or_else(|e| panic!("UDP to {ep}: {e}"));
        assert!(
            udp.contains(&format!("target={target}")),
            "UDP through {ep}: {udp}"
        );
    }
    let stats = r.stats();
    let stranded = stats
        .targets
        .iter()
        .find(|t| t.ip == STRANDED)
        .expect("stranded target");
    assert_eq!(stranded.new_flows, 0, "an unresolved target took flows");
}
