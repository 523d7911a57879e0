//! End to end, what `pl run` checks and reports: health checks fail a dead target over,
//! bring it back and fail open; metrics are served in Prometheus text.

use std::{
    net::{Ipv4Addr, SocketAddrV4},
    time::Duration,
};

use pl_common::stats::EndpointCounter;
use pl_tests::{
    TestLab, chain, nft_delete_table, nft_input_rule, pl_bin, require_kernel,
    running::{CLIENT, EP_Z1, OUTSIDER, Running, SHORT, T1, T2, parse_who},
    stderr,
};
use pl_userspace::{
    lab::LAB_CONFIG,
    lab::netns,
    lab::runner::PlRun,
    lab::traffic::{self, Servers, TCP_PORT, UDP_PORT},
    stats::StatsReport,
};

/// One scrape of `pl run`'s metrics at 127.0.0.1:9464 in the forwarder's namespace.
fn scrape(r: &Running) -> String {
    let text = netns::run_in(&r.lab.fw_ns(), || -> std::io::Result<String> {
        use std::io::{Read as _, Write as _};
        let mut s = std::net::TcpStream::connect("127.0.0.1:9464")?;
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: pl\r\nConnection: close\r\n\r\n")?;
        let mut out = String::new();
        s.read_to_string(&mut out)?;
        Ok(out)
    })
    .unwrap_or_else(|e| panic!("{}", chain(e)))
    .unwrap_or_else(|e| panic!("scraping metrics: {e}"));
    assert!(text.starts_with("HTTP/1.1 200 OK"), "{text}");
    text
}

/// The value of the series `series` (name and labels as served) in `scrape`.
fn value(scrape: &str, series: &str) -> u64 {
    scrape
        .lines()
        .find(|l| {
            l.strip_prefix(series)
                .is_some_and(|rest| rest.starts_with(' '))
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {series} in:\n{scrape}"))
}

#[test]
fn metrics_are_served_in_prometheus_text() {
    require_kernel!("metrics_are_served_in_prometheus_text");
    let r = Running::start_with("mx", LAB_CONFIG, &["--metrics", "127.0.0.1:9464"]);
    r.who_tcp("acme", CLIENT, 0, EP_Z1, TCP_PORT)
        .unwrap_or_else(|e| panic!("tcp: {e}"));
    assert!(r.who_tcp("acme", OUTSIDER, 0, EP_Z1, TCP_PORT).is_err());
    // UDP flows stay live for the sweep to count: three clients ports, one NLB address.
    for sport in [40001, 40002, 40003] {
        r.who_udp("acme", CLIENT, sport, EP_Z1)
            .unwrap_or_else(|e| panic!("udp: {e}"));
    }
    let ep = r#"endpoint="acme-billing",service="billing",network="acme""#;
    let text = scrape(&r);
    assert!(value(&text, &format!("pl_endpoint_new_flows_total{{{ep}}}")) >= 1);
    assert!(
        value(
            &text,
            &format!(r#"pl_endpoint_refused_total{{{ep},reason="source"}}"#)
        ) >= 1
    );
    assert_eq!(
        value(
            &text,
            r#"pl_target_resolved{service="billing",target="10.9.0.11",zone="z1"}"#
        ),
        1
    );
    assert!(
        value(
            &text,
            r#"pl_interface_rx_packets_total{interface="fw-acme"}"#
        ) > 0
    );
    let fw_acme = r#"pl_interface_xdp_actions_total{interface="fw-acme",action="redirect"}"#;
    assert!(value(&text, fw_acme) > 0, "{text}");
    let ipv4_tcp = r#"pl_interface_frames_total{interface="fw-acme",class="ipv4_tcp"}"#;
    assert!(value(&text, ipv4_tcp) > 0, "{text}");
    let version = env!("CARGO_PKG_VERSION");
    let info = format!(r#"pl_build_info{{version="{version}",revision=""#);
    assert!(
        text.lines().any(|l| l.starts_with(&info)
            && !l.starts_with(&format!("{info}\""))
            && l.ends_with("} 1")),
        "no build info with a revision:\n{text}"
    );
    assert_eq!(value(&text, r#"pl_reloads_total{result="ok"}"#), 0);
    // The flow table and SNAT ports come from the sweep (every 5 s), published each second.
    let nlb = r#"pl_snat_ports_in_use{network="prov",address="10.9.0.250"}"#;
    let deadline = std::time::Instant::now() + Duration::from_secs(12);
    let mut text = scrape(&r);
    while value(&text, nlb) < 3 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(500));
        text = scrape(&r);
    }
    assert!(
        value(&text, nlb) >= 3,
        "three UDP flows hold three ports:\n{text}"
    );
    let entries = value(&text, "pl_flow_table_entries");
    assert!(entries >= 6, "two entries per live flow:\n{text}");
    assert!(value(&text, "pl_flow_table_capacity") > entries);
    let capacity = r#"pl_snat_ports_capacity{network="prov",address="10.9.0.251"}"#;
    assert_eq!(value(&text, capacity), 65535 - 1024 + 1);
    assert_eq!(
        value(
            &text,
            r#"pl_snat_ports_in_use{network="prov",address="10.9.0.251"}"#
        ),
        0
    );
    reloads_are_counted(&r);
}

/// A reload that applies, then one refused: both counted, the last one's result shown.
fn reloads_are_counted(r: &Running) {
    let fw = r.lab.fw_ns();
    let out = r.lab.pl(&fw, &["reload"]);
    assert!(out.status.success(), "pl reload: {}", stderr(&out));
    let text = scrape(r);
    assert_eq!(value(&text, r#"pl_reloads_total{result="ok"}"#), 1);
    assert_eq!(value(&text, "pl_reload_last_successful"), 1);
    let loaded = value(&text, "pl_reload_last_success_timestamp_seconds");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    assert!(now.abs_diff(loaded) < 30, "loaded at {loaded}, now {now}");
    let bad = r
        .lab
        .lab
        .write_config("[[network]]\nname = 1\n")
        .unwrap_or_else(|e| panic!("{}", chain(e)));
    let out = r
        .lab
        .pl(&fw, &["reload", "--config", &bad.to_string_lossy()]);
    assert!(!out.status.success(), "a bad config reloaded");
    let text = scrape(r);
    assert_eq!(value(&text, r#"pl_reloads_total{result="refused"}"#), 1);
    assert_eq!(value(&text, r#"pl_reloads_total{result="ok"}"#), 1);
    assert_eq!(value(&text, "pl_reload_last_successful"), 0);
    assert_eq!(
        value(&text, "pl_reload_last_success_timestamp_seconds"),
        loaded
    );
}

/// A lab with quick health checks (every second, two in a row to change) and `pl run`.
struct Checked {
    lab: TestLab,
    prov: String,
    acme: String,
    run: PlRun,
}

/// Target `t`'s (health, service failing open) in `r`.
fn health(r: &StatsReport, t: Ipv4Addr) -> (String, bool) {
    r.targets
        .iter()
        .find(|x| x.ip == t)
        .map(|x| (x.health.clone(), x.service_failing_open))
        .unwrap_or_else(|| panic!("target {t} not in stats"))
}

impl Checked {
    /// The lab and its config, each target's servers (returned), then `pl run`.
    fn start() -> (Self, Servers, Servers) {
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
        (
            Self {
                lab,
                prov,
                acme,
                run,
            },
            s1,
            s2,
        )
    }

    fn wait(&self, what: &str, secs: u64, done: &dyn Fn(&StatsReport) -> bool) -> StatsReport {
        let r = self
            .run
            .wait_for_stats(Duration::from_secs(secs), done)
            .unwrap_or_else(|e| panic!("{}", chain(e)));
        assert!(done(&r), "{what}: not within {secs} s: {:?}", r.targets);
        r
    }

    /// The target a new TCP connection to `dst` reaches.
    fn who(&self, dst: Ipv4Addr) -> Result<Ipv4Addr, String> {
        traffic::tcp_who(
            &self.acme,
            CLIENT,
            0,
            SocketAddrV4::new(dst, TCP_PORT),
            SHORT,
        )
        .map(|a| parse_who(&a).0)
        .map_err(chain)
    }

    /// How long until new connections to the z1 endpoint reach `target`.
    fn until(&self, target: Ipv4Addr) -> Duration {
        let began = std::time::Instant::now();
        loop {
            if self.who(EP_Z1) == Ok(target) {
                return began.elapsed();
            }
            assert!(
                began.elapsed() < Duration::from_secs(10),
                "new flows did not reach {target} within 10 s: {:?}",
                self.run.stats().map(|r| r.targets)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Replaces the provider's table `pltest` with one input rule on new connections.
    fn on_syn(&self, rule: &str) {
        nft_input_rule(&self.prov, "pltest", rule);
    }
}

/// T1 refuses new connections (a RST to every SYN; established ones go on), as a target
/// that stopped listening does. New flows to the z1 endpoint fail over to zone z2's
/// healthy T2 once two checks in a row have failed; the established flow to the now
/// unhealthy T1 (`held`) is left alone and finishes its request.
fn a_closed_port_fails_over(c: &Checked, held: &mut std::net::TcpStream) {
    c.on_syn("ip daddr 10.9.0.11 tcp dport 8443 tcp flags syn reject with tcp reset");
    let failover = c.until(T2);
    println!("failover after the target's port closed: {failover:?} (interval 1 s, 2 failures)");
    let r = c.run.stats().unwrap_or_else(|e| panic!("{}", chain(e)));
    assert_eq!(health(&r, T1), ("unhealthy".to_owned(), false));
    assert!(
        r.targets
            .iter()
            .any(|t| t.ip == T1 && t.last_check == "rst"),
        "T1's last check should have been answered by RST: {:?}",
        r.targets
    );

    // The established flow to the now unhealthy T1 is left alone: it finishes its request.
    let answer =
        traffic::finish_hold(held).unwrap_or_else(|e| panic!("the held connection broke: {e}"));
    assert_eq!(answer.len(), 64, "not a sha256 answer: {answer:?}");
}

/// Everything down: the service fails open and says so; new flows are still made.
fn everything_down_fails_open(c: &Checked, s1: Servers, s2: Servers) {
    drop(s1);
    drop(s2);
    let r = c.wait("failing open", 10, &|r| {
        health(r, T1) == ("unhealthy".to_owned(), true)
            && health(r, T2) == ("unhealthy".to_owned(), true)
    });
    let flows_before = r
        .endpoint("acme-billing")
        .expect("acme-billing")
        .get(EndpointCounter::NewFlows);
    let _ = traffic::udp_who(
        &c.acme,
        CLIENT,
        0,
        SocketAddrV4::new(EP_Z1, UDP_PORT),
        Duration::from_millis(200),
    );
    let r = c.run.stats().unwrap_or_else(|e| panic!("{}", chain(e)));
    let e = r.endpoint("acme-billing").expect("acme-billing");
    assert_eq!(
        (
            e.get(EndpointCounter::NewFlows),
            e.get(EndpointCounter::RefusedNoTarget)
        ),
        (flows_before + 1, 0),
        "failing open must still admit new flows: {e:?}"
    );
}

#[test]
fn health_checks_fail_a_dead_target_over_bring_it_back_and_fail_open() {
    require_kernel!("health_checks_fail_a_dead_target_over_bring_it_back_and_fail_open");
    let (c, s1, s2) = Checked::start();
    c.wait("both targets healthy", 5, &|r| {
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
    assert_eq!(c.who(EP_Z1), Ok(T1), "zone z1's endpoint goes to T1");

    // An established connection to T1, to outlive T1's health.
    let mut held = traffic::tcp_hold(&c.acme, CLIENT, SocketAddrV4::new(EP_Z1, TCP_PORT))
        .unwrap_or_else(|e| panic!("held connection: {}", chain(e)));
    a_closed_port_fails_over(&c, &mut held);

    // Back: two passes in a row return it to rotation.
    nft_delete_table(&c.prov, "pltest");
    let recovery = c.until(T1);
    println!("back in rotation after the port reopened: {recovery:?} (2 passes)");

    // A target that goes silent (SYNs dropped, no answer): out after two timeouts.
    c.on_syn("ip daddr 10.9.0.12 tcp dport 8443 tcp flags syn drop");
    c.wait("T2 out by timeouts", 6, &|r| {
        r.targets
            .iter()
            .any(|t| t.ip == T2 && t.health == "unhealthy" && t.last_check == "timeout")
    });
    nft_delete_table(&c.prov, "pltest");

    everything_down_fails_open(&c, s1, s2);
    let Checked { lab, run, .. } = c;
    let out = run
        .stop_and_down()
        .unwrap_or_else(|e| panic!("{}", chain(e)));
    drop(lab);
    let log = stderr(&out);
    for line in [
        "target 10.9.0.11: unhealthy",
        "target 10.9.0.11: healthy",
        "failing open",
    ] {
        assert!(log.contains(line), "pl run's log lacks {line:?}:\n{log}");
    }
}
