//! End-to-end tests of the PrivateLink data path: a lab, `pl run --config` in its
//! forwarder namespace, real TCP and UDP sockets in the consumer and provider namespaces.

use std::{
    collections::HashSet,
    net::{Ipv4Addr, SocketAddrV4},
    time::Duration,
};

use pl_common::stats::{EndpointCounter, IfaceCounter};
use pl_tests::{
    TestLab, chain, nft_delete_table, nft_input_rule, output, pl_bin, require_kernel, stderr,
};
use pl_userspace::{
    flows::{FlowReport, WatchEvent},
    frame::{Ipv4, TCP_ACK, TCP_SYN, ipv4_frame, parse_mac},
    lab::cmd,
    lab::netns,
    lab::runner::PlRun,
    lab::traffic::{self, Servers, TCP_PORT, UDP_PORT},
    lab::{LAB_CONFIG, PEER_IFACE},
    neigh::RawSender,
    stats::StatsReport,
};

const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 10);
const OUTSIDER: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 200);
const EP_Z1: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 100);
const EP_Z2: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 101);
const T1: Ipv4Addr = Ipv4Addr::new(10, 9, 0, 11);
const T2: Ipv4Addr = Ipv4Addr::new(10, 9, 0, 12);
const SHORT: Duration = Duration::from_millis(1500);

/// A lab running `pl run --config` (with `config`) and the provider's servers.
struct Running {
    run: PlRun,
    servers: Servers,
    lab: TestLab,
}

impl Running {
    fn start(tag: &str, config: &str) -> Self {
        Self::start_with(tag, config, &[])
    }

    /// As [`Running::start`], with more arguments for `pl run`.
    fn start_with(tag: &str, config: &str, extra: &[&str]) -> Self {
        Self::start_shaped(tag, config, extra, |lab| lab)
    }

    /// As [`Running::start_with`] on a lab shaped by `shape` (MTUs).
    fn start_shaped(
        tag: &str,
        config: &str,
        extra: &[&str],
        shape: impl FnOnce(pl_userspace::lab::Lab) -> pl_userspace::lab::Lab,
    ) -> Self {
        let lab = TestLab::up_with(tag, shape);
        let path = lab
            .lab
            .write_config(config)
            .unwrap_or_else(|e| panic!("{}", chain(e)));
        let servers = Servers::start(
            &lab.topo.network("prov").expect("prov").namespace,
            &[T1, T2],
        )
        .unwrap_or_else(|e| panic!("servers: {}", chain(e)));
        let path = path.to_string_lossy().into_owned();
        let mut args = vec!["--config", path.as_str()];
        args.extend_from_slice(extra);
        let run = PlRun::start(&pl_bin(), &lab.fw_ns(), "default", &args)
            .unwrap_or_else(|e| panic!("pl run --config: {}", chain(e)));
        let me = Self { run, servers, lab };
        me.wait_resolved();
        me
    }

    /// Stops `pl run` (SIGTERM) and starts it again with `config` and `extra` arguments, as
    /// an operator upgrading it would; returns the new run and how long it took.
    fn restart(self, config: &str, extra: &[&str]) -> (Self, Duration) {
        let Self { run, servers, lab } = self;
        let path = lab
            .lab
            .write_config(config)
            .unwrap_or_else(|e| panic!("{}", chain(e)));
        let path = path.to_string_lossy().into_owned();
        let mut args = vec!["--config", path.as_str()];
        args.extend_from_slice(extra);
        let began = std::time::Instant::now();
        let out = run
            .stop()
            .unwrap_or_else(|e| panic!("stopping pl run: {}", chain(e)));
        assert!(out.status.success(), "pl run failed: {}", stderr(&out));
        let run = PlRun::start(&pl_bin(), &lab.fw_ns(), "default", &args)
            .unwrap_or_else(|e| panic!("pl run {args:?} again: {}", chain(e)));
        let took = began.elapsed();
        (Self { run, servers, lab }, took)
    }

    fn ns(&self, network: &str) -> String {
        self.lab
            .topo
            .network(network)
            .unwrap_or_else(|| panic!("no network {network}"))
            .namespace
            .clone()
    }

    fn stats(&self) -> StatsReport {
        self.run
            .stats()
            .unwrap_or_else(|e| panic!("stats: {}", chain(e)))
    }

    /// Waits until every target that exists in the lab has a MAC.
    fn wait_resolved(&self) {
        let r = self
            .run
            .wait_for_stats(Duration::from_secs(5), |r| {
                r.targets
                    .iter()
                    .filter(|t| t.ip == T1 || t.ip == T2)
                    .all(|t| t.mac.is_some())
            })
            .unwrap_or_else(|e| panic!("stats: {}", chain(e)));
        let missing: Vec<_> = r
            .targets
            .iter()
            .filter(|t| (t.ip == T1 || t.ip == T2) && t.mac.is_none())
            .collect();
        assert!(
            missing.is_empty(),
            "targets never resolved by ARP: {missing:?}"
        );
    }

    fn who_tcp(
        &self,
        network: &str,
        src: Ipv4Addr,
        sport: u16,
        ep: Ipv4Addr,
        port: u16,
    ) -> Result<String, String> {
        traffic::tcp_who(
            &self.ns(network),
            src,
            sport,
            SocketAddrV4::new(ep, port),
            SHORT,
        )
        .map_err(chain)
    }

    fn who_udp(
        &self,
        network: &str,
        src: Ipv4Addr,
        sport: u16,
        ep: Ipv4Addr,
    ) -> Result<String, String> {
        traffic::udp_who(
            &self.ns(network),
            src,
            sport,
            SocketAddrV4::new(ep, UDP_PORT),
            SHORT,
        )
        .map_err(chain)
    }

    fn endpoint(&self, name: &str, c: EndpointCounter) -> u64 {
        self.stats()
            .endpoint(name)
            .unwrap_or_else(|| panic!("no endpoint {name} in stats"))
            .get(c)
    }

    fn iface(&self, name: &str, c: IfaceCounter) -> u64 {
        self.stats()
            .interface(name)
            .unwrap_or_else(|| panic!("no interface {name} in stats"))
            .get(c)
    }
}

/// `target=IP peer=ADDR:PORT` -> (target, peer address, peer port).
fn parse_who(answer: &str) -> (Ipv4Addr, Ipv4Addr, u16) {
    let field = |k: &str| {
        answer
            .split_whitespace()
            .find_map(|f| f.strip_prefix(k))
            .unwrap_or_else(|| panic!("answer {answer:?} lacks {k}"))
            .to_owned()
    };
    let peer: SocketAddrV4 = field("peer=")
        .parse()
        .unwrap_or_else(|e| panic!("peer in {answer:?}: {e}"));
    (
        field("target=")
            .parse()
            .unwrap_or_else(|e| panic!("target in {answer:?}: {e}")),
        *peer.ip(),
        peer.port(),
    )
}

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
            std::net::SocketAddr::V4(v4) => *v4.ip(),
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

#[test]
fn refusals_are_dropped_and_counted_per_endpoint() {
    require_kernel!("refusals_are_dropped_and_counted_per_endpoint");
    let r = Running::start("rf", LAB_CONFIG);

    assert!(
        r.who_tcp("acme", CLIENT, 0, EP_Z1, 444).is_err(),
        "no listener on 444, yet it answered"
    );
    assert!(r.endpoint("acme-billing", EndpointCounter::RefusedNoListener) >= 1);

    assert!(
        r.who_tcp("acme", OUTSIDER, 0, EP_Z1, TCP_PORT).is_err(),
        "10.0.0.200 is outside acme's allowed_sources"
    );
    assert!(r.endpoint("acme-billing", EndpointCounter::RefusedSource) >= 1);
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

    assert!(
        r.who_tcp("globex", CLIENT, 0, EP_Z1, TCP_PORT).is_err(),
        "an endpoint pending acceptance carried traffic"
    );
    assert!(r.endpoint("globex-billing", EndpointCounter::RefusedNotAccepted) >= 1);

    assert!(
        r.who_tcp("acme", CLIENT, 0, EP_Z2, TCP_PORT).is_err(),
        "z2 has no resolved target, yet it answered"
    );
    assert!(r.endpoint("acme-billing", EndpointCounter::RefusedNoTarget) >= 1);
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
    let targets_for = |r: &Running| -> HashSet<Ipv4Addr> {
        (0..24u16)
            .map(|i| {
                let who = r
                    .who_tcp("globex", CLIENT, 42000 + i, EP_Z1, TCP_PORT)
                    .unwrap_or_else(|e| panic!("flow {i}: {e}"));
                parse_who(&who).0
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
fn flow_table_is_bounded_and_idle_flows_free_their_entries() {
    require_kernel!("flow_table_is_bounded_and_idle_flows_free_their_entries");
    // Room for one flow (two entries); UDP flows idle out after 1 s.
    let r = Running::start(
        "ag",
        &format!("{LAB_CONFIG}\n[limits]\nflow_table_size = 1\nudp_idle_timeout_s = 1\n"),
    );
    r.who_udp("acme", CLIENT, 41000, EP_Z1)
        .unwrap_or_else(|e| panic!("first flow: {e}"));
    assert!(
        r.who_udp("acme", CLIENT, 41001, EP_Z1).is_err(),
        "a second flow fit a table sized for one"
    );
    assert!(r.endpoint("acme-billing", EndpointCounter::RefusedFlowTableFull) >= 1);
    // Health probes take no room in the flow table: it holds exactly one flow, above.
    // The established flow still works while the table is full.
    r.who_udp("acme", CLIENT, 41000, EP_Z1)
        .unwrap_or_else(|e| panic!("established flow while full: {e}"));
    // Once idle, the sweep removes it and the table takes a new flow.
    let swept = r.run.wait_for_stats(Duration::from_secs(10), |s| {
        s.endpoint("acme-billing")
            .is_some_and(|e| e.active_flows == 0)
    });
    assert_eq!(
        swept
            .expect("stats")
            .endpoint("acme-billing")
            .expect("acme")
            .active_flows,
        0,
        "idle flow never swept"
    );
    r.who_udp("acme", CLIENT, 41001, EP_Z1)
        .unwrap_or_else(|e| panic!("new flow after the sweep: {e}"));
    // The XDP program said so itself, through aya-log, into pl run's log.
    let Running {
        run,
        servers: _servers,
        lab: _lab,
    } = r;
    let out = run.stop().unwrap_or_else(|e| panic!("stop: {}", chain(e)));
    let log = stderr(&out);
    assert!(
        log.contains("flow table full: refusing new flows"),
        "the program's log line is missing from pl run's log:\n{log}"
    );
}

#[test]
fn a_bad_config_is_refused_before_anything_is_attached() {
    require_kernel!("a_bad_config_is_refused_before_anything_is_attached");
    let lab = TestLab::up("bc");
    let path = lab
        .lab
        .write_config(&LAB_CONFIG.replace("interface = \"fw-prov\"", "interface = \"fw-nope\""))
        .expect("write config");
    let out = lab.pl(&lab.fw_ns(), &["run", "--config", &path.to_string_lossy()]);
    assert!(
        !out.status.success(),
        "pl run accepted a config naming a missing interface"
    );
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "not one line: {err}");
    for m in [
        path.to_string_lossy().as_ref(),
        ":12:",
        "[[network]] \"prov\"",
        "interface",
        "fw-nope",
    ] {
        assert!(err.contains(m), "error lacks {m:?}: {err}");
    }
    for i in lab.topo.fw_ifaces() {
        assert!(
            !lab.xdp_attached(&i),
            "{i} has XDP attached after a refused config"
        );
    }
}

#[test]
fn reload_under_load_keeps_the_stream_and_applies_the_changes() {
    require_kernel!("reload_under_load_keeps_the_stream_and_applies_the_changes");
    let r = Running::start("rl", LAB_CONFIG);
    let prov = r.ns("prov");
    cmd::ip(["-n", &prov, "addr", "add", "10.9.0.13/24", "dev", "eth0"])
        .unwrap_or_else(|e| panic!("{}", chain(e)));
    // Target .12 (zone z2) goes, .13 comes; endpoint acme-extra appears. The stream runs to .11.
    let new = LAB_CONFIG
        .replace(
            r#"{ ip = "10.9.0.12", zone = "z2" }"#,
            r#"{ ip = "10.9.0.13", zone = "z2" }"#,
        )
        .replace(
            r#"accepted_endpoints = ["acme-billing", "globex-billing"]"#,
            r#"accepted_endpoints = ["acme-billing", "globex-billing", "acme-extra"]"#,
        )
        + "\n[[endpoint]]\nname = \"acme-extra\"\nservice = \"billing\"\nnetwork = \"acme\"\naddresses = [{ ip = \"10.0.0.102\", zone = \"z1\" }]\n";
    let new_path = std::env::temp_dir().join(format!("rl{}-new.toml", std::process::id()));
    std::fs::write(&new_path, &new).expect("write new config");
    let bad_path = std::env::temp_dir().join(format!("rl{}-bad.toml", std::process::id()));
    std::fs::write(
        &bad_path,
        new.replace("interface = \"fw-prov\"", "interface = \"fw-nope\""),
    )
    .expect("write bad config");
    let acme = r.ns("acme");
    let fw = r.lab.fw_ns();

    let (transfer, reload_done_at, stream_done_at) = std::thread::scope(|s| {
        let stream = s.spawn(|| {
            let res = traffic::tcp_sink(
                &acme,
                CLIENT,
                SocketAddrV4::new(EP_Z1, TCP_PORT),
                512 * 1024 * 1024,
            );
            (res, std::time::Instant::now())
        });
        std::thread::sleep(Duration::from_millis(300));
        // A bad config first: refused, nothing changes.
        let bad = r
            .lab
            .pl(&fw, &["reload", "--config", &bad_path.to_string_lossy()]);
        assert!(
            !bad.status.success(),
            "a config naming a missing interface was accepted on reload"
        );
        assert!(
            stderr(&bad).contains("fw-nope"),
            "reload error does not name the interface: {}",
            stderr(&bad)
        );
        let good = r
            .lab
            .pl(&fw, &["reload", "--config", &new_path.to_string_lossy()]);
        assert!(good.status.success(), "reload failed: {}", stderr(&good));
        let reloaded = std::time::Instant::now();
        let (res, done) = stream.join().expect("stream thread");
        (res, reloaded, done)
    });
    let _ = std::fs::remove_file(&new_path);
    let _ = std::fs::remove_file(&bad_path);
    let (sent, got) =
        transfer.unwrap_or_else(|e| panic!("the stream broke across the reload: {}", chain(e)));
    assert_eq!(sent, got, "bytes lost across the reload");
    assert!(
        reload_done_at < stream_done_at,
        "the stream ended before the reload: the test proved nothing"
    );

    // The new endpoint answers; the removed target is gone, the new one resolves.
    let who = r
        .who_tcp("acme", CLIENT, 0, Ipv4Addr::new(10, 0, 0, 102), TCP_PORT)
        .unwrap_or_else(|e| panic!("new endpoint: {e}"));
    assert_eq!(parse_who(&who).0, T1, "{who}");
    let s = r.run.wait_for_stats(Duration::from_secs(5), |s| {
        s.targets
            .iter()
            .any(|t| t.ip == Ipv4Addr::new(10, 9, 0, 13) && t.mac.is_some())
    });
    let s = s.unwrap_or_else(|e| panic!("{}", chain(e)));
    assert!(
        s.targets.iter().all(|t| t.ip != T2),
        "removed target still listed: {:?}",
        s.targets
    );
    assert!(
        s.endpoint("acme-extra").is_some(),
        "new endpoint not in stats"
    );
    // Counters of what stayed kept their history (ids did not shift).
    assert!(
        s.endpoint("acme-billing")
            .expect("acme-billing")
            .get(EndpointCounter::ToProviderBytes)
            > 512 * 1024 * 1024
    );
}

#[test]
fn closing_and_one_way_flows_age_out_fast_established_ones_stay() {
    require_kernel!("closing_and_one_way_flows_age_out_fast_established_ones_stay");
    // Short timeouts for all but established TCP and replied UDP; a UDP listener nobody
    // answers. The held connection survives only if it is seen as established.
    let config = LAB_CONFIG.replace(
        r#"{ protocol = "udp", port = 53, target_port = 5353 }]"#,
        r#"{ protocol = "udp", port = 53, target_port = 5353 }, { protocol = "udp", port = 54, target_port = 5354 }]"#,
    ) + "\n[limits]\ntcp_closing_timeout_s = 1\ntcp_transient_timeout_s = 1\nudp_oneway_timeout_s = 1\n";
    let r = Running::start("st", &config);
    let acme = r.ns("acme");
    let held = traffic::tcp_hold(&acme, CLIENT, SocketAddrV4::new(EP_Z1, TCP_PORT))
        .unwrap_or_else(|e| panic!("{}", chain(e)));
    r.who_tcp("acme", CLIENT, 0, EP_Z1, TCP_PORT)
        .unwrap_or_else(|e| panic!("closed connection: {e}"));
    r.who_udp("acme", CLIENT, 0, EP_Z1)
        .unwrap_or_else(|e| panic!("replied UDP: {e}"));
    assert!(
        traffic::udp_who(
            &acme,
            CLIENT,
            0,
            SocketAddrV4::new(EP_Z1, 54),
            Duration::from_millis(300)
        )
        .is_err(),
        "port 5354 has no server, yet UDP 54 was answered"
    );
    let before = r
        .stats()
        .endpoint("acme-billing")
        .expect("acme")
        .active_flows;
    assert_eq!(before, 4, "held TCP, closed TCP, replied UDP, one-way UDP");
    // The sweep runs every 5 s: the closed and the one-way flow go, the other two stay.
    let after = r
        .run
        .wait_for_stats(Duration::from_secs(15), |s| {
            s.endpoint("acme-billing")
                .is_some_and(|e| e.active_flows <= 2)
        })
        .unwrap_or_else(|e| panic!("{}", chain(e)));
    assert_eq!(
        after.endpoint("acme-billing").expect("acme").active_flows,
        2,
        "closing/one-way flows not swept, or the wrong ones"
    );
    drop(held);
}

#[test]
fn metrics_are_served_in_prometheus_text() {
    require_kernel!("metrics_are_served_in_prometheus_text");
    let r = Running::start_with("mx", LAB_CONFIG, &["--metrics", "127.0.0.1:9464"]);
    r.who_tcp("acme", CLIENT, 0, EP_Z1, TCP_PORT)
        .unwrap_or_else(|e| panic!("tcp: {e}"));
    assert!(r.who_tcp("acme", OUTSIDER, 0, EP_Z1, TCP_PORT).is_err());
    let scrape = netns::run_in(&r.lab.fw_ns(), || -> std::io::Result<String> {
        use std::io::{Read as _, Write as _};
        let mut s = std::net::TcpStream::connect("127.0.0.1:9464")?;
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: pl\r\n\r\n")?;
        let mut out = String::new();
        s.read_to_string(&mut out)?;
        Ok(out)
    })
    .unwrap_or_else(|e| panic!("{}", chain(e)))
    .unwrap_or_else(|e| panic!("scraping metrics: {e}"));
    assert!(scrape.starts_with("HTTP/1.1 200 OK"), "{scrape}");
    let value = |prefix: &str| -> u64 {
        scrape
            .lines()
            .find(|l| l.starts_with(prefix))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {prefix} in:\n{scrape}"))
    };
    assert!(
        value(
            r#"pl_endpoint_new_flows_total{endpoint="acme-billing",service="billing",network="acme"}"#
        ) >= 1
    );
    assert!(
        value(
            r#"pl_endpoint_refused_total{endpoint="acme-billing",service="billing",network="acme",reason="source"}"#
        ) >= 1
    );
    assert_eq!(
        value(r#"pl_target_resolved{service="billing",target="10.9.0.11",zone="z1"}"#),
        1
    );
    assert!(value(r#"pl_interface_rx_packets_total{interface="fw-acme"}"#) > 0);
}

#[test]
fn restart_under_load_keeps_the_stream_and_its_flows_fresh_drops_them() {
    require_kernel!("restart_under_load_keeps_the_stream_and_its_flows_fresh_drops_them");
    let r = Running::start("rs", LAB_CONFIG);
    let acme = r.ns("acme");
    let fw = r.lab.fw_ns();
    // An idle established connection: after a restart its flow must still be in the table.
    let _held = traffic::tcp_hold(&acme, CLIENT, SocketAddrV4::new(EP_Z1, TCP_PORT))
        .unwrap_or_else(|e| panic!("held connection: {}", chain(e)));
    // The restart brings a changed config: one more endpoint.
    let changed = LAB_CONFIG.replace(
        r#"accepted_endpoints = ["acme-billing", "globex-billing"]"#,
        r#"accepted_endpoints = ["acme-billing", "globex-billing", "acme-extra"]"#,
    ) + "\n[[endpoint]]\nname = \"acme-extra\"\nservice = \"billing\"\nnetwork = \"acme\"\naddresses = [{ ip = \"10.0.0.102\", zone = \"z1\" }]\n";
    let len: u64 = 1024 * 1024 * 1024;
    let attached = |lab: &TestLab| {
        lab.topo
            .fw_ifaces()
            .into_iter()
            .all(|i| lab.xdp_attached(&i))
    };
    let before = r
        .run
        .wait_for_stats(Duration::from_secs(3), |s| {
            s.endpoint("acme-billing")
                .is_some_and(|e| e.active_flows == 1)
        })
        .unwrap_or_else(|e| panic!("{}", chain(e)));
    let before = before
        .endpoint("acme-billing")
        .expect("acme-billing")
        .clone();
    assert_eq!(
        before.active_flows, 1,
        "the held connection has no flow: {before:?}"
    );

    // A quiet restart, with a changed config: the idle connection's flow and the counters
    // are still there (nothing has sent a packet that could have recreated them).
    let (r, took) = r.restart(&changed, &[]);
    println!("quiet restart (stop + start until the control socket answers): {took:?}");
    let after = r.stats();
    let after = after.endpoint("acme-billing").expect("acme-billing");
    assert_eq!(after.active_flows, 1, "the idle flow was lost: {after:?}");
    assert_eq!(
        after.get(EndpointCounter::ToProviderPackets),
        before.get(EndpointCounter::ToProviderPackets),
        "counters did not carry over: {after:?}"
    );
    let who = r
        .who_tcp("acme", CLIENT, 0, Ipv4Addr::new(10, 0, 0, 102), TCP_PORT)
        .unwrap_or_else(|e| panic!("endpoint added by the restart: {e}"));
    assert_eq!(parse_who(&who).0, T1, "{who}");

    let (r, transfer, took, restarted_at, stream_done_at) = std::thread::scope(|s| {
        let stream = s.spawn(|| {
            let res = traffic::tcp_sink(&acme, CLIENT, SocketAddrV4::new(EP_Z1, TCP_PORT), len);
            (res, std::time::Instant::now())
        });
        std::thread::sleep(Duration::from_millis(300));
        let (r, took) = r.restart(&changed, &[]);
        let restarted_at = std::time::Instant::now();
        let (res, done) = stream.join().expect("stream thread");
        (r, res, took, restarted_at, done)
    });
    let (sent, got) =
        transfer.unwrap_or_else(|e| panic!("the stream broke across the restart: {}", chain(e)));
    assert_eq!(sent, got, "bytes lost across the restart");
    assert!(
        restarted_at < stream_done_at,
        "the stream ended before pl run was back: the test proved nothing"
    );
    println!("restart under load: {took:?}, {len} bytes intact");
    assert!(
        attached(&r.lab),
        "an interface lost its program across the restart"
    );

    // With no pl run at all the data plane keeps forwarding; a start with another flow
    // table size cannot take the pinned table over and changes nothing.
    let Running { run, servers, lab } = r;
    let out = run.stop().unwrap_or_else(|e| panic!("stop: {}", chain(e)));
    assert!(out.status.success(), "pl run failed: {}", stderr(&out));
    let who = traffic::tcp_who(&acme, CLIENT, 0, SocketAddrV4::new(EP_Z1, TCP_PORT), SHORT)
        .unwrap_or_else(|e| panic!("no forwarding while pl run is stopped: {}", chain(e)));
    assert!([T1, T2].contains(&parse_who(&who).0), "{who}");
    // And observable: pl stats and pl flows read what the stopped run left.
    let out = lab.pl(&fw, &["stats", "--json"]);
    assert!(
        out.status.success(),
        "pl stats without pl run: {}",
        stderr(&out)
    );
    assert!(
        stderr(&out).contains("reading the data plane it left"),
        "{}",
        stderr(&out)
    );
    let left: StatsReport = serde_json::from_slice(&out.stdout).expect("pl stats --json");
    let billing = left.endpoint("acme-billing").expect("acme-billing");
    assert!(
        billing.active_flows >= 1 && billing.get(EndpointCounter::ToProviderBytes) > len,
        "stats from the pins lack the flows or counters: {billing:?}"
    );
    let out = lab.pl(&fw, &["flows", "--json"]);
    assert!(
        out.status.success(),
        "pl flows without pl run: {}",
        stderr(&out)
    );
    let listed: Vec<FlowReport> = serde_json::from_slice(&out.stdout).expect("pl flows --json");
    let listed = listed
        .iter()
        .filter(|f| f.endpoint == "acme-billing")
        .count() as u64;
    assert_eq!(
        listed, billing.active_flows,
        "pl flows and pl stats from the pins disagree"
    );
    let resized = lab
        .lab
        .write_config(&format!("{changed}\n[limits]\nflow_table_size = 5000\n"))
        .unwrap_or_else(|e| panic!("{}", chain(e)));
    let out = lab.pl(&fw, &["run", "--config", &resized.to_string_lossy()]);
    assert!(!out.status.success(), "a resized flow table was taken over");
    let err = stderr(&out);
    assert!(
        err.contains("flow_table_size") && err.contains("--fresh"),
        "error does not explain the resize: {err}"
    );
    assert!(attached(&lab), "a refused start detached the data plane");
    let path = lab
        .lab
        .write_config(&changed)
        .unwrap_or_else(|e| panic!("{}", chain(e)));
    let run = PlRun::start(
        &pl_bin(),
        &fw,
        "default",
        &["--config", &path.to_string_lossy()],
    )
    .unwrap_or_else(|e| panic!("pl run after the refused one: {}", chain(e)));
    let r = Running { run, servers, lab };
    assert!(
        r.stats()
            .endpoint("acme-billing")
            .expect("acme-billing")
            .active_flows
            >= 1,
        "the held flow was lost around a refused start"
    );
    // --fresh starts over: the held connection's flow is gone.
    let (r, _) = r.restart(&changed, &["--fresh"]);
    let billing = r.stats();
    let billing = billing.endpoint("acme-billing").expect("acme-billing");
    assert_eq!(billing.active_flows, 0, "--fresh kept flows: {billing:?}");
    assert_eq!(
        billing.get(EndpointCounter::ToProviderBytes),
        0,
        "--fresh kept counters: {billing:?}"
    );
}

#[test]
fn health_checks_fail_a_dead_target_over_bring_it_back_and_fail_open() {
    require_kernel!("health_checks_fail_a_dead_target_over_bring_it_back_and_fail_open");
    let lab = TestLab::up("hc");
    let prov = lab.topo.network("prov").expect("prov").namespace.clone();
    let acme = lab.topo.network("acme").expect("acme").namespace.clone();
    let config = LAB_CONFIG.replace(
        "cross_zone = false",
        "cross_zone = false\nhealth_check = { interval_s = 1, timeout_ms = 300, healthy_threshold = 2, unhealthy_threshold = 2 }",
    );
    assert_ne!(config, LAB_CONFIG, "the lab config changed shape");
    let path = lab
        .lab
        .write_config(&config)
        .unwrap_or_else(|e| panic!("{}", chain(e)));
    let serve = |t: Ipv4Addr| {
        Servers::start(&prov, &[t]).unwrap_or_else(|e| panic!("servers on {t}: {}", chain(e)))
    };
    let (s1, s2) = (serve(T1), serve(T2));
    let run = PlRun::start(
        &pl_bin(),
        &lab.fw_ns(),
        "default",
        &["--config", &path.to_string_lossy()],
    )
    .unwrap_or_else(|e| panic!("pl run: {}", chain(e)));
    let health = |r: &StatsReport, t: Ipv4Addr| {
        r.targets
            .iter()
            .find(|x| x.ip == t)
            .map(|x| (x.health.clone(), x.service_failing_open))
            .unwrap_or_else(|| panic!("target {t} not in stats"))
    };
    let wait = |what: &str, secs: u64, done: &dyn Fn(&StatsReport) -> bool| {
        let r = run
            .wait_for_stats(Duration::from_secs(secs), done)
            .unwrap_or_else(|e| panic!("{}", chain(e)));
        assert!(done(&r), "{what}: not within {secs} s: {:?}", r.targets);
        r
    };
    wait("both targets healthy", 5, &|r| {
        health(r, T1).0 == "healthy" && health(r, T2).0 == "healthy"
    });
    // Checks never reach the application: a SYN-ACK is reset before it could be accepted.
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        s1.seen().is_empty() && s2.seen().is_empty(),
        "a health check reached the servers as a connection: {:?} {:?}",
        s1.seen(),
        s2.seen()
    );
    let who = |dst: Ipv4Addr| {
        traffic::tcp_who(&acme, CLIENT, 0, SocketAddrV4::new(dst, TCP_PORT), SHORT)
            .map(|a| parse_who(&a).0)
            .map_err(chain)
    };
    assert_eq!(who(EP_Z1), Ok(T1), "zone z1's endpoint goes to T1");
    // How long until new connections to the z1 endpoint reach `target`.
    let until = |target: Ipv4Addr| {
        let began = std::time::Instant::now();
        loop {
            if who(EP_Z1) == Ok(target) {
                return began.elapsed();
            }
            assert!(
                began.elapsed() < Duration::from_secs(10),
                "new flows did not reach {target} within 10 s: {:?}",
                run.stats().map(|r| r.targets)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    };

    // An established connection to T1, to outlive T1's health.
    let mut held = traffic::tcp_hold(&acme, CLIENT, SocketAddrV4::new(EP_Z1, TCP_PORT))
        .unwrap_or_else(|e| panic!("held connection: {}", chain(e)));

    // T1 refuses new connections (a RST to every SYN; established ones go on), as a
    // target that stopped listening does. New flows to the z1 endpoint fail over to zone
    // z2's healthy T2 once two checks in a row have failed.
    // A table `pltest` in the provider's namespace with one rule on new connections.
    let on_syn = |rule: &str| nft_input_rule(&prov, "pltest", rule);
    on_syn("ip daddr 10.9.0.11 tcp dport 8443 tcp flags syn reject with tcp reset");
    let failover = until(T2);
    println!("failover after the target's port closed: {failover:?} (interval 1 s, 2 failures)");
    let r = run.stats().unwrap_or_else(|e| panic!("{}", chain(e)));
    assert_eq!(health(&r, T1), ("unhealthy".to_owned(), false));
    assert!(
        r.targets
            .iter()
            .any(|t| t.ip == T1 && t.last_check == "rst"),
        "T1's last check should have been answered by RST: {:?}",
        r.targets
    );

    // The established flow to the now unhealthy T1 is left alone: it finishes its request.
    let answer = traffic::finish_hold(&mut held)
        .unwrap_or_else(|e| panic!("the held connection broke: {e}"));
    assert_eq!(answer.len(), 64, "not a sha256 answer: {answer:?}");

    // Back: two passes in a row return it to rotation.
    nft_delete_table(&prov, "pltest");
    let recovery = until(T1);
    println!("back in rotation after the port reopened: {recovery:?} (2 passes)");

    // A target that goes silent (SYNs dropped, no answer): out after two timeouts.
    on_syn("ip daddr 10.9.0.12 tcp dport 8443 tcp flags syn drop");
    wait("T2 out by timeouts", 6, &|r| {
        r.targets
            .iter()
            .any(|t| t.ip == T2 && t.health == "unhealthy" && t.last_check == "timeout")
    });
    nft_delete_table(&prov, "pltest");

    // Everything down: the service fails open and says so; new flows are still made.
    drop(s1);
    drop(s2);
    let r = wait("failing open", 10, &|r| {
        health(r, T1) == ("unhealthy".to_owned(), true)
            && health(r, T2) == ("unhealthy".to_owned(), true)
    });
    let flows_before = r
        .endpoint("acme-billing")
        .expect("acme-billing")
        .get(EndpointCounter::NewFlows);
    let _ = traffic::udp_who(
        &acme,
        CLIENT,
        0,
        SocketAddrV4::new(EP_Z1, UDP_PORT),
        Duration::from_millis(200),
    );
    let r = run.stats().unwrap_or_else(|e| panic!("{}", chain(e)));
    let e = r.endpoint("acme-billing").expect("acme-billing");
    assert_eq!(
        (
            e.get(EndpointCounter::NewFlows),
            e.get(EndpointCounter::RefusedNoTarget)
        ),
        (flows_before + 1, 0),
        "failing open must still admit new flows: {e:?}"
    );
    let out = run
        .stop_and_down()
        .unwrap_or_else(|e| panic!("{}", chain(e)));
    let log = stderr(&out);
    for line in [
        "target 10.9.0.11: unhealthy",
        "target 10.9.0.11: healthy",
        "failing open",
    ] {
        assert!(log.contains(line), "pl run's log lacks {line:?}:\n{log}");
    }
}

/// `pl flows --json ARGS` in the forwarder namespace.
fn pl_flows(r: &Running, args: &[&str]) -> Result<Vec<FlowReport>, String> {
    let mut full = vec!["flows", "--json"];
    full.extend_from_slice(args);
    let out = r.lab.pl(&r.lab.fw_ns(), &full);
    if !out.status.success() {
        return Err(stderr(&out));
    }
    serde_json::from_slice(&out.stdout).map_err(|e| {
        format!(
            "pl flows printed no JSON: {e}: {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

#[test]
fn flows_show_both_sides_and_the_nlb_lookup_names_the_consumer() {
    require_kernel!("flows_show_both_sides_and_the_nlb_lookup_names_the_consumer");
    let r = Running::start("fl", LAB_CONFIG);
    let ep = SocketAddrV4::new(EP_Z1, TCP_PORT);
    // Two consumers with the same address in overlapping networks, one TCP, one UDP.
    let held = traffic::tcp_hold(&r.ns("acme"), CLIENT, ep)
        .unwrap_or_else(|e| panic!("held connection: {}", chain(e)));
    let client = match held.local_addr() {
        Ok(std::net::SocketAddr::V4(a)) => a,
        other => panic!("held connection's address: {other:?}"),
    };
    r.who_udp("globex", CLIENT, 4242, EP_Z1)
        .unwrap_or_else(|e| panic!("globex UDP: {e}"));
    std::thread::sleep(Duration::from_millis(1200));

    let flows = pl_flows(&r, &[]).unwrap_or_else(|e| panic!("pl flows: {e}"));
    assert_eq!(flows.len(), 2, "{flows:#?}");
    let tcp = flows
        .iter()
        .find(|f| f.proto == "tcp")
        .unwrap_or_else(|| panic!("no TCP flow: {flows:#?}"));
    assert_eq!(
        (
            tcp.network.as_str(),
            tcp.endpoint.as_str(),
            tcp.service.as_str(),
            tcp.consumer,
            tcp.endpoint_addr,
            tcp.target,
            tcp.state.as_str(),
        ),
        (
            "acme",
            "acme-billing",
            "billing",
            client,
            ep,
            SocketAddrV4::new(T1, traffic::TCP_TARGET_PORT),
            "established",
        ),
        "{tcp:#?}"
    );
    assert_eq!(*tcp.nlb.ip(), Ipv4Addr::new(10, 9, 0, 250), "{tcp:#?}");
    assert!(tcp.age_s >= 1, "age: {tcp:#?}");
    // SYN, ACK, the request; SYN-ACK, ACK.
    assert!(
        tcp.to_provider_packets >= 3 && tcp.to_consumer_packets >= 2,
        "{tcp:#?}"
    );
    let udp = flows
        .iter()
        .find(|f| f.proto == "udp")
        .unwrap_or_else(|| panic!("no UDP flow: {flows:#?}"));
    assert_eq!(
        (udp.network.as_str(), udp.consumer, udp.state.as_str()),
        ("globex", SocketAddrV4::new(CLIENT, 4242), "replied"),
        "{udp:#?}"
    );
    assert_eq!(
        (udp.to_provider_packets, udp.to_consumer_packets),
        (1, 1),
        "{udp:#?}"
    );
    // Per-flow counters add up to the endpoint's, exactly (the first packet included).
    let s = r.stats();
    for f in &flows {
        let e = s.endpoint(&f.endpoint).expect("endpoint in stats");
        assert_eq!(
            (
                f.to_provider_packets,
                f.to_provider_bytes,
                f.to_consumer_packets,
                f.to_consumer_bytes
            ),
            (
                e.get(EndpointCounter::ToProviderPackets),
                e.get(EndpointCounter::ToProviderBytes),
                e.get(EndpointCounter::ToConsumerPackets),
                e.get(EndpointCounter::ToConsumerBytes),
            ),
            "{} flow counters differ from its endpoint's",
            f.endpoint
        );
    }

    // Both flows went to T1 (zone z1): the target's counters say so too.
    let t1 = s.targets.iter().find(|t| t.ip == T1).expect("T1 in stats");
    assert_eq!((t1.new_flows, t1.active_flows), (2, 2), "{t1:?}");
    let t2 = s.targets.iter().find(|t| t.ip == T2).expect("T2 in stats");
    assert_eq!((t2.new_flows, t2.active_flows), (0, 0), "{t2:?}");

    // The provider's question: who is the connection from this NLB address and port?
    let nlb = tcp.nlb.to_string();
    let who = pl_flows(&r, &["--nlb", &nlb]).unwrap_or_else(|e| panic!("--nlb: {e}"));
    assert_eq!(who, vec![tcp.clone()], "--nlb {nlb}");
    let who = pl_flows(&r, &["--nlb", &udp.nlb.to_string()]).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        (who.len(), who[0].network.as_str()),
        (1, "globex"),
        "{who:#?}"
    );
    let none = pl_flows(&r, &["--nlb", "10.9.0.250:1"]).expect_err("no flow holds port 1");
    assert!(
        none.contains("10.9.0.250:1") && none.contains("no live flow"),
        "{none}"
    );

    // Filters, and a name that does not exist.
    let acme = pl_flows(&r, &["--endpoint", "acme-billing"]).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(acme.len(), 1, "{acme:#?}");
    assert_eq!(
        pl_flows(&r, &["--service", "billing"]).map(|f| f.len()),
        Ok(2)
    );
    let bad = pl_flows(&r, &["--endpoint", "nope"]).expect_err("unknown endpoint");
    assert!(bad.contains("no endpoint named \"nope\""), "{bad}");

    // The table names every column.
    let out = r.lab.pl(&r.lab.fw_ns(), &["flows"]);
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.contains("established") && table.contains(&nlb) && table.contains("bytes_to_cons"),
        "{table}"
    );
    drop(held);
}

#[test]
fn watch_streams_opens_refusals_with_reasons_and_closes() {
    require_kernel!("watch_streams_opens_refusals_with_reasons_and_closes");
    let config = format!("{LAB_CONFIG}\n[limits]\ntcp_closing_timeout_s = 1\n");
    let r = Running::start("wt", &config);
    let mut child = netns::exec(&r.lab.fw_ns(), pl_bin())
        .args(["flows", "--watch", "--json"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("pl flows --watch: {e}"));
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, rx) = std::sync::mpsc::channel::<WatchEvent>();
    let reader = std::thread::spawn(move || {
        use std::io::BufRead as _;
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let e = serde_json::from_str(&line)
                .unwrap_or_else(|e| panic!("--watch --json printed {line:?}: {e}"));
            if tx.send(e).is_err() {
                break;
            }
        }
    });
    let mut seen: Vec<WatchEvent> = Vec::new();
    let mut wait_for =
        |what: &str, secs: u64, act: &dyn Fn(), want: &dyn Fn(&WatchEvent) -> bool| {
            let deadline = std::time::Instant::now() + Duration::from_secs(secs);
            loop {
                act();
                while let Ok(e) = rx.recv_timeout(Duration::from_millis(200)) {
                    seen.push(e);
                }
                if let Some(e) = seen.iter().find(|e| want(e)) {
                    return e.clone();
                }
                assert!(
                    std::time::Instant::now() < deadline,
                    "no {what} event within {secs} s; saw {seen:#?}"
                );
            }
        };
    // The watcher may not be registered yet when the first connection goes: repeat.
    let open = wait_for(
        "open",
        5,
        &|| {
            let _ = r.who_tcp("acme", CLIENT, 40001, EP_Z1, TCP_PORT);
        },
        &|e| e.event == "open" && e.consumer == SocketAddrV4::new(CLIENT, 40001),
    );
    assert_eq!(
        (open.endpoint.as_str(), open.network.as_str(), open.target),
        (
            "acme-billing",
            "acme",
            Some(SocketAddrV4::new(T1, traffic::TCP_TARGET_PORT))
        ),
        "{open:#?}"
    );
    assert!(open.nlb.is_some(), "{open:#?}");
    let refused = wait_for(
        "refused",
        5,
        &|| {
            let _ = r.who_udp("acme", OUTSIDER, 0, EP_Z1);
        },
        &|e| e.event == "refused",
    );
    assert_eq!(
        (refused.reason.as_deref(), *refused.consumer.ip()),
        (Some("source"), OUTSIDER),
        "{refused:#?}"
    );
    // The connection closed (FIN both ways): gone at the first sweep past 1 s.
    let closed = wait_for("close", 12, &|| {}, &|e| {
        e.event == "close" && e.consumer == SocketAddrV4::new(CLIENT, 40001)
    });
    assert_eq!(closed.state.as_deref(), Some("closing"), "{closed:#?}");
    let _ = child.kill();
    let _ = child.wait();
    let _ = reader.join();
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
    let (acme, prov) = (r.ns("acme"), r.ns("prov"));
    // A connected UDP socket in acme, with a flow through the endpoint.
    let sock = netns::run_in(&acme, || -> std::io::Result<std::net::UdpSocket> {
        let u = std::net::UdpSocket::bind((CLIENT, 41500))?;
        u.connect((EP_Z1, UDP_PORT))?;
        u.set_read_timeout(Some(SHORT))?;
        u.send(b"WHO")?;
        let mut buf = [0u8; 256];
        u.recv(&mut buf)?;
        Ok(u)
    })
    .unwrap_or_else(|e| panic!("{}", chain(e)))
    .unwrap_or_else(|e| panic!("UDP through the endpoint: {e}"));
    let flows = pl_flows(&r, &["--endpoint", "acme-billing"]).unwrap_or_else(|e| panic!("{e}"));
    let flow = flows
        .iter()
        .find(|f| f.consumer == SocketAddrV4::new(CLIENT, 41500))
        .unwrap_or_else(|| panic!("no flow for the socket: {flows:#?}"));
    let route = || {
        let out = output(netns::exec(&acme, "ip").args(["route", "get", "10.0.0.100"]));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert!(
        !route().contains("mtu"),
        "a PMTU before the test: {}",
        route()
    );

    // A hop on the provider side says the datagram was too big for its 1400-byte link.
    let p = r.lab.topo.network("prov").expect("prov");
    let (peer, fw) = (
        parse_mac(&p.peer_mac).expect("MAC"),
        parse_mac(&p.fw_mac).expect("MAC"),
    );
    // It quotes the datagram as the provider side carried it: NLB address and SNAT port to
    // the target, TTL one lower.
    let quoted = Ipv4 {
        src: flow.nlb.ip().octets(),
        dst: flow.target.ip().octets(),
        ttl: 63,
    }
    .udp(flow.nlb.port(), flow.target.port(), b"WHO");
    let icmp = Ipv4::new(flow.target.ip().octets(), flow.nlb.ip().octets()).icmp_error(
        3,
        4,
        [0, 0, 0x05, 0x78],
        &quoted[..28],
    );
    netns::run_in(&prov, || -> std::io::Result<()> {
        let ifindex = nix::net::if_::if_nametoindex(PEER_IFACE).map_err(std::io::Error::from)?;
        RawSender::open(ifindex)?.send(&ipv4_frame(fw, peer, &icmp), 0x0800)
    })
    .unwrap_or_else(|e| panic!("{}", chain(e)))
    .unwrap_or_else(|e| panic!("sending the ICMP error: {e}"));

    // The consumer learns the path MTU to the endpoint address.
    let deadline = std::time::Instant::now() + Duration::from_secs(3);
    while !route().contains("mtu 1400") && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        route().contains("mtu 1400"),
        "acme did not learn the PMTU:\n{}",
        route()
    );
    assert_eq!(r.iface("fw-prov", IfaceCounter::IcmpTranslated), 1);
    drop(sock);
}

/// Lifecycles that long-lived traffic goes through, with short timeouts: each would lose
/// data (or table room) if a flow were judged one direction at a time, if one FIN closed
/// it, if a reused port rode the old flow, or if any TCP segment opened a flow.
#[test]
fn flows_live_as_long_as_either_side_uses_them() {
    require_kernel!("flows_live_as_long_as_either_side_uses_them");
    let config = format!(
        "{LAB_CONFIG}\n[limits]\ntcp_closing_timeout_s = 1\ntcp_half_closed_timeout_s = 30\nudp_idle_timeout_s = 2\nudp_oneway_timeout_s = 2\n"
    );
    let r = Running::start("lc", &config);
    let (acme, globex) = (r.ns("acme"), r.ns("globex"));
    let ep = SocketAddrV4::new(EP_Z1, TCP_PORT);

    // Half-close: the client sends its request and FIN, the answer comes 6.5 s later, past
    // the closing timeout and at least one sweep: the flow is half-closed, not closing.
    let answer = traffic::tcp_half_closed(&acme, CLIENT, ep, 6500)
        .unwrap_or_else(|e| panic!("half-closed request lost its answer: {}", chain(e)));
    assert_eq!(answer, "late");

    // A UDP flow whose target is quiet for 3.5 s (past the 2 s UDP timeouts) while the
    // consumer keeps sending: alive in both directions, so the late answer arrives.
    let udp = SocketAddrV4::new(EP_Z1, UDP_PORT);
    let answer = traffic::udp_silent_target(&acme, CLIENT, 45001, udp, 3500)
        .unwrap_or_else(|e| panic!("the silent target's late answer was lost: {}", chain(e)));
    assert_eq!(answer, "late");

    // Port reuse: a connection from port 45000 closes (FIN both ways); the same port
    // connects again at once. The new connection gets a fresh, established flow (not the
    // closing one) and survives a pause longer than the closing timeout.
    let port = 45000;
    r.who_tcp("acme", CLIENT, port, EP_Z1, TCP_PORT)
        .unwrap_or_else(|e| panic!("first connection: {e}"));
    std::thread::sleep(Duration::from_millis(200));
    let mut held = traffic::tcp_hold_from(&acme, CLIENT, port, ep)
        .unwrap_or_else(|e| panic!("the reused port did not connect: {}", chain(e)));
    let flow = pl_flows(&r, &["--endpoint", "acme-billing"])
        .unwrap_or_else(|e| panic!("pl flows: {e}"))
        .into_iter()
        .find(|f| f.consumer == SocketAddrV4::new(CLIENT, port) && f.proto == "tcp")
        .expect("the reused port's flow");
    assert_eq!(
        flow.state, "established",
        "the reused port rides the old flow: {flow:?}"
    );
    std::thread::sleep(Duration::from_millis(2500));
    let answer = traffic::finish_hold(&mut held)
        .unwrap_or_else(|e| panic!("the reused port's connection died in a pause: {e}"));
    assert_eq!(answer.len(), 64, "not a sha256 answer: {answer:?}");

    // A flood of bare ACKs opens nothing.
    let g = r.lab.topo.network("globex").expect("globex");
    let macs = (
        parse_mac(&g.peer_mac).expect("peer MAC"),
        parse_mac(&g.fw_mac).expect("fw MAC"),
    );
    let before = r.stats();
    let stop = std::sync::atomic::AtomicBool::new(false);
    let sent = traffic::tcp_flood(&globex, PEER_IFACE, macs, ep, TCP_ACK, (20_000, &stop))
        .unwrap_or_else(|e| panic!("ACK flood: {}", chain(e)));
    let after = r
        .run
        .wait_for_stats(Duration::from_secs(3), |s| {
            s.endpoint("globex-billing")
                .is_some_and(|e| e.get(EndpointCounter::RefusedNotSyn) >= sent * 9 / 10)
        })
        .unwrap_or_else(|e| panic!("{}", chain(e)));
    let g_before = before.endpoint("globex-billing").expect("globex-billing");
    let g_after = after.endpoint("globex-billing").expect("globex-billing");
    println!(
        "bare-ACK flood: {sent} sent, {} refused_not_syn, active flows {} -> {}",
        g_after.get(EndpointCounter::RefusedNotSyn),
        g_before.active_flows,
        g_after.active_flows
    );
    assert!(
        g_after.get(EndpointCounter::RefusedNotSyn) >= sent * 9 / 10,
        "bare ACKs not refused as not_syn: {g_after:?}"
    );
    assert_eq!(
        (g_after.active_flows, g_after.get(EndpointCounter::NewFlows)),
        (
            g_before.active_flows,
            g_before.get(EndpointCounter::NewFlows)
        ),
        "bare ACKs opened flows"
    );
}

/// A reload that narrows an endpoint's allowed sources removes the established flows it
/// now refuses, counts them, and leaves every other flow alone.
#[test]
fn a_reload_revokes_the_flows_it_no_longer_allows() {
    require_kernel!("a_reload_revokes_the_flows_it_no_longer_allows");
    let r = Running::start("rv", LAB_CONFIG);
    let (acme, globex) = (r.ns("acme"), r.ns("globex"));
    let ep = SocketAddrV4::new(EP_Z1, TCP_PORT);
    let mut acme_held =
        traffic::tcp_hold(&acme, CLIENT, ep).unwrap_or_else(|e| panic!("{}", chain(e)));
    let mut globex_held =
        traffic::tcp_hold(&globex, CLIENT, ep).unwrap_or_else(|e| panic!("{}", chain(e)));
    let narrowed = LAB_CONFIG.replace(r#"["10.0.0.0/25"]"#, r#"["10.0.0.64/26"]"#);
    assert_ne!(narrowed, LAB_CONFIG, "the lab config changed shape");
    let path = r
        .lab
        .lab
        .write_config(&narrowed)
        .unwrap_or_else(|e| panic!("{}", chain(e)));
    let out = r.lab.pl(
        &r.lab.fw_ns(),
        &["reload", "--config", &path.to_string_lossy()],
    );
    assert!(out.status.success(), "reload: {}", stderr(&out));
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("1 flows revoked"), "reload said: {said}");
    let flows = pl_flows(&r, &[]).unwrap_or_else(|e| panic!("pl flows: {e}"));
    let endpoints: Vec<&str> = flows.iter().map(|f| f.endpoint.as_str()).collect();
    assert_eq!(
        endpoints,
        ["globex-billing"],
        "flows after the reload: {flows:?}"
    );
    assert_eq!(r.endpoint("acme-billing", EndpointCounter::Revoked), 1);
    assert_eq!(r.endpoint("globex-billing", EndpointCounter::Revoked), 0);
    // The other connection finishes its request; the revoked one goes nowhere.
    let answer = traffic::finish_hold(&mut globex_held)
        .unwrap_or_else(|e| panic!("an allowed connection broke across the reload: {e}"));
    assert_eq!(answer.len(), 64, "not a sha256 answer: {answer:?}");
    acme_held
        .set_read_timeout(Some(Duration::from_secs(2)))
        .expect("read timeout");
    assert!(
        traffic::finish_hold(&mut acme_held).is_err(),
        "the revoked connection still reached its target"
    );
    assert!(
        r.endpoint("acme-billing", EndpointCounter::RefusedNotSyn) > 0,
        "the revoked connection's segments were not refused"
    );
}

/// A target's address moves to another MAC (failover, VRRP) and announces it with a
/// gratuitous ARP: its established flows follow within a second, as new flows do.
#[test]
fn flows_follow_a_target_that_moves_to_a_new_mac() {
    require_kernel!("flows_follow_a_target_that_moves_to_a_new_mac");
    let r = Running::start("mm", LAB_CONFIG);
    let (acme, prov) = (r.ns("acme"), r.ns("prov"));
    let ep = SocketAddrV4::new(EP_Z1, TCP_PORT);
    let mut held = traffic::tcp_hold(&acme, CLIENT, ep).unwrap_or_else(|e| panic!("{}", chain(e)));
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
        RawSender::open(ifindex)?.send(&garp, pl_common::proto::ETH_P_ARP)
    })
    .unwrap_or_else(|e| panic!("{}", chain(e)))
    .unwrap_or_else(|e| panic!("gratuitous ARP: {e}"));
    let learned = r
        .run
        .wait_for_stats(Duration::from_secs(3), |s| {
            s.targets
                .iter()
                .any(|t| t.ip == T1 && t.mac.as_deref() == Some("02:00:00:00:09:99"))
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
    // The refresh that learned it also moved the flows (same tick); give it a second.
    std::thread::sleep(Duration::from_millis(1200));
    let answer = traffic::finish_hold(&mut held)
        .unwrap_or_else(|e| panic!("the established flow kept the dead MAC: {e}"));
    assert_eq!(answer.len(), 64, "not a sha256 answer: {answer:?}");
    r.who_tcp("acme", CLIENT, 0, EP_Z1, TCP_PORT)
        .unwrap_or_else(|e| panic!("a new flow after the move: {e}"));
    let out = r
        .run
        .stop_and_down()
        .unwrap_or_else(|e| panic!("{}", chain(e)));
    let log = stderr(&out);
    assert!(
        log.contains("10.9.0.11 moved from") && log.contains("1 flows follow"),
        "pl run's log lacks the move:\n{log}"
    );
}

/// One host serving two services (two target groups): both reach it, each from its own
/// NLB address, and each service counts only its own flows to it.
#[test]
fn a_target_shared_by_two_services_serves_both() {
    require_kernel!("a_target_shared_by_two_services_serves_both");
    const LEDGER_EP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 110);
    let config = format!(
        r#"{LAB_CONFIG}
[[service]]
name = "ledger"
network = "prov"
nlb_addresses = [{{ ip = "10.9.0.240", zone = "z1" }}]
allowed_principals = ["acme"]
accepted_endpoints = ["acme-ledger"]
listeners = [{{ protocol = "tcp", port = 443, target_port = 8443 }}]
targets = [{{ ip = "10.9.0.11", zone = "z1" }}]

[[endpoint]]
name = "acme-ledger"
service = "ledger"
network = "acme"
addresses = [{{ ip = "10.0.0.110", zone = "z1" }}]
"#
    );
    let r = Running::start("st", &config);
    let acme = r.ns("acme");
    for (ep, nlb) in [(EP_Z1, "10.9.0.250"), (LEDGER_EP, "10.9.0.240")] {
        let who = r
            .who_tcp("acme", CLIENT, 0, ep, TCP_PORT)
            .unwrap_or_else(|e| panic!("{ep}: {e}"));
        let (target, peer, _) = parse_who(&who);
        assert_eq!((target, peer.to_string()), (T1, nlb.to_owned()), "via {ep}");
    }
    let _billing = traffic::tcp_hold(&acme, CLIENT, SocketAddrV4::new(EP_Z1, TCP_PORT))
        .unwrap_or_else(|e| panic!("{}", chain(e)));
    let _ledger: Vec<_> = (0..2)
        .map(|_| {
            traffic::tcp_hold(&acme, CLIENT, SocketAddrV4::new(LEDGER_EP, TCP_PORT))
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
    // ledger (the WHO flows are still closing): each service counts its own.
    assert_eq!(
        t1,
        [("billing", 2, 2), ("ledger", 3, 3)],
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

/// A namespace the test makes beside a lab, removed on drop.
struct ExtraNs(String);

impl Drop for ExtraNs {
    fn drop(&mut self) {
        let _ = cmd::ip(["netns", "del", &self.0]);
    }
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
        flows.iter().any(|f| *f.consumer.ip() == REMOTE),
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

/// Targets behind a router (another subnet, an on-premises site): the provider network
/// carries static routes; a routed target's frames and health checks go to its router's
/// MAC, learned by ARP from an NLB address; `pl stats` names the router. A target whose
/// router never answers stays unresolved and takes no flow.
#[test]
fn a_routed_target_is_reached_and_checked_through_its_router() {
    require_kernel!("a_routed_target_is_reached_and_checked_through_its_router");
    const ROUTED: Ipv4Addr = Ipv4Addr::new(10, 60, 0, 5);
    const STRANDED: Ipv4Addr = Ipv4Addr::new(10, 70, 0, 5);
    const ROUTER: Ipv4Addr = Ipv4Addr::new(10, 9, 0, 1);
    const EP_ON_LINK: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 110);
    const EP_ROUTED: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 111);
    let lab_config = LAB_CONFIG.replace(
        "interface = \"fw-prov\"",
        "interface = \"fw-prov\"\nroutes = [{ to = \"10.60.0.0/16\", via = \"10.9.0.1\" }, { to = \"10.70.0.0/24\", via = \"10.9.0.3\" }]",
    );
    assert_ne!(lab_config, LAB_CONFIG, "the lab config changed shape");
    let config = format!(
        r#"{lab_config}
[[service]]
name = "ledger"
network = "prov"
nlb_addresses = [{{ ip = "10.9.0.240", zone = "z1" }}, {{ ip = "10.9.0.241", zone = "z2" }}]
allowed_principals = ["acme"]
accepted_endpoints = ["acme-ledger"]
listeners = [{{ protocol = "tcp", port = 443, target_port = 8443 }}, {{ protocol = "udp", port = 53, target_port = 5353 }}]
targets = [{{ ip = "10.9.0.11", zone = "z1" }}, {{ ip = "10.60.0.5", zone = "z2" }}, {{ ip = "10.70.0.5", zone = "z2" }}]
health_check = {{ interval_s = 1, timeout_ms = 300, healthy_threshold = 2, unhealthy_threshold = 2 }}

[[endpoint]]
name = "acme-ledger"
service = "ledger"
network = "acme"
addresses = [{{ ip = "10.0.0.110", zone = "z1" }}, {{ ip = "10.0.0.111", zone = "z2" }}]
"#
    );
    let r = Running::start("rtt", &config);
    let prov = r.ns("prov");
    let site = ExtraNs(format!("{}site", r.lab.lab.prefix()));
    let ip = |args: &[&str]| {
        cmd::ip(args.iter().copied()).unwrap_or_else(|e| panic!("ip {args:?}: {}", chain(e)));
    };
    // The router is the provider namespace: 10.9.0.1 on the lab segment, 10.60.0.1 toward
    // the site where the routed target lives.
    ip(&["netns", "add", &site.0]);
    ip(&["-n", &prov, "addr", "add", "10.9.0.1/24", "dev", PEER_IFACE]);
    ip(&[
        "-n", &prov, "link", "add", "site", "type", "veth", "peer", "name", "eth0", "netns",
        &site.0,
    ]);
    ip(&["-n", &prov, "addr", "add", "10.60.0.1/24", "dev", "site"]);
    ip(&["-n", &prov, "link", "set", "site", "up"]);
    ip(&["-n", &site.0, "addr", "add", "10.60.0.5/24", "dev", "eth0"]);
    ip(&["-n", &site.0, "link", "set", "eth0", "up"]);
    ip(&["-n", &site.0, "link", "set", "lo", "up"]);
    ip(&["-n", &site.0, "route", "add", "default", "via", "10.60.0.1"]);
    let out = output(netns::exec(&prov, "sysctl").args(["-qw", "net.ipv4.ip_forward=1"]));
    assert!(out.status.success(), "sysctl: {}", stderr(&out));
    let _site_servers =
        Servers::start(&site.0, &[ROUTED]).unwrap_or_else(|e| panic!("servers: {}", chain(e)));
    let out = output(netns::exec(&prov, "cat").arg(format!("/sys/class/net/{PEER_IFACE}/address")));
    let router_mac = String::from_utf8_lossy(&out.stdout).trim().to_owned();

    // The router is resolved, the routed target checked healthy through it.
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
        (Some(ROUTER), Some(router_mac.as_str()), "healthy"),
        "the routed target: {routed:?}"
    );
    let stranded = t(STRANDED);
    assert_eq!(
        (stranded.via, stranded.mac.as_deref()),
        (Some(Ipv4Addr::new(10, 9, 0, 3)), None),
        "a target whose router never answers: {stranded:?}"
    );
    let text = output(netns::exec(&r.lab.fw_ns(), pl_bin()).args(["stats"]));
    let text = String::from_utf8_lossy(&text.stdout).into_owned();
    assert!(
        text.lines()
            .any(|l| l.starts_with("10.60.0.5") && l.contains("10.9.0.1")),
        "pl stats names the router:\n{text}"
    );

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
    let route = || {
        let out = output(netns::exec(&acme, "ip").args(["route", "get", "10.0.0.100"]));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
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
