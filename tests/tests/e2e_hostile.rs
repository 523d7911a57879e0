//! Hostile and idle clients, end to end: idle clients on the control socket or the
//! metrics port hold up neither requests nor health checks.

use std::{
    io::{BufRead as _, BufReader, Write as _},
    net::{Ipv4Addr, SocketAddrV4},
    sync::atomic::{AtomicBool, AtomicUsize, Ordering},
    time::{Duration, Instant},
};

use pl_tests::{
    TestLab, chain, nft_delete_table, nft_input_rule, output, pl_bin, require_kernel,
    running::{CLIENT, EP_Z1, T1, T2},
    stderr,
};
use pl_userspace::{
    lab::LAB_CONFIG,
    lab::netns,
    lab::runner::PlRun,
    lab::traffic::{self, Servers, TCP_PORT},
    stats::StatsReport,
};

/// Keeps `n` idle connections open to each of the control socket and the metrics port of
/// `ns` until `stop`, opening a new one whenever pl run closes one. Counts (connections
/// made, closed by pl run) for each.
struct Pests {
    stop: AtomicBool,
    control: [AtomicUsize; 2],
    metrics: [AtomicUsize; 2],
}

impl Pests {
    fn run(&self, ns: &str, n: usize, metrics: SocketAddrV4) {
        use std::os::linux::net::SocketAddrExt as _;
        netns::run_in(ns, || {
            let name = std::os::unix::net::SocketAddr::from_abstract_name("pl.default")
                .expect("abstract name");
            let mut control: Vec<Option<std::os::unix::net::UnixStream>> =
                (0..n).map(|_| None).collect();
            let mut scrape: Vec<Option<std::net::TcpStream>> = (0..n).map(|_| None).collect();
            while !self.stop.load(Ordering::Relaxed) {
                for c in &mut control {
                    keep(c, &self.control, || {
                        std::os::unix::net::UnixStream::connect_addr(&name)
                    });
                }
                for c in &mut scrape {
                    keep(c, &self.metrics, || std::net::TcpStream::connect(metrics));
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        })
        .expect("pests in the forwarder namespace");
    }
}

/// Opens `slot` if it is empty; empties it if the other side closed it.
fn keep<S: std::io::Read + std::os::fd::AsFd>(
    slot: &mut Option<S>,
    counts: &[AtomicUsize; 2],
    open: impl FnOnce() -> std::io::Result<S>,
) {
    let Some(s) = slot else {
        if let Ok(s) = open() {
            counts[0].fetch_add(1, Ordering::Relaxed);
            *slot = Some(s);
        }
        return;
    };
    let ready = {
        let mut fds = [nix::poll::PollFd::new(
            s.as_fd(),
            nix::poll::PollFlags::POLLIN,
        )];
        nix::poll::poll(&mut fds, nix::poll::PollTimeout::ZERO).is_ok_and(|n| n > 0)
    };
    // Readable with nothing to read (or an error): pl run closed it.
    if ready && !matches!(s.read(&mut [0u8; 4096]), Ok(n) if n > 0) {
        counts[1].fetch_add(1, Ordering::Relaxed);
        *slot = None;
    }
}

/// How long `pl ARGS` takes in `ns`; it must succeed.
fn timed(ns: &str, args: &[&str]) -> Duration {
    let began = Instant::now();
    let out = output(netns::exec(ns, pl_bin()).args(args));
    let took = began.elapsed();
    assert!(out.status.success(), "pl {args:?}: {}", stderr(&out));
    took
}

/// The slowest of three runs of `pl ARGS`.
fn slowest(ns: &str, args: &[&str]) -> Duration {
    (0..3).map(|_| timed(ns, args)).max().expect("three runs")
}

/// One HTTP request to the metrics port: the status line.
fn http(ns: &str, addr: SocketAddrV4, request: &str) -> String {
    netns::run_in(ns, || -> std::io::Result<String> {
        let mut s = std::net::TcpStream::connect(addr)?;
        s.set_read_timeout(Some(Duration::from_secs(3)))?;
        s.write_all(request.as_bytes())?;
        let mut out = String::new();
        BufReader::new(s).read_line(&mut out)?;
        Ok(out.trim().to_owned())
    })
    .expect("netns")
    .unwrap_or_else(|e| panic!("{request:?} to {addr}: {e}"))
}

/// `pl run` with quick health checks and metrics on `metrics`, its targets healthy.
fn run_with_metrics(lab: &TestLab, metrics: SocketAddrV4) -> PlRun {
    let config = LAB_CONFIG.replace(
        "cross_zone = false",
        "cross_zone = false\nhealth_check = { interval_s = 1, timeout_ms = 300, healthy_threshold = 2, unhealthy_threshold = 2 }",
    );
    let path = lab
        .lab
        .write_config(&config)
        .unwrap_or_else(|e| panic!("{}", chain(e)));
    let run = PlRun::start(
        &pl_bin(),
        &lab.fw_ns(),
        "default",
        &[
            "--config",
            &path.to_string_lossy(),
            "--metrics",
            &metrics.to_string(),
        ],
    )
    .unwrap_or_else(|e| panic!("pl run: {}", chain(e)));
    // billing's (IPv4) targets: IPv6 targets are not health-checked yet.
    let healthy = |r: &StatsReport| {
        r.targets
            .iter()
            .filter(|t| t.service == "billing")
            .all(|t| t.health == "healthy")
    };
    let r = run
        .wait_for_stats(Duration::from_secs(6), healthy)
        .unwrap_or_else(|e| panic!("{}", chain(e)));
    assert!(healthy(&r), "targets not healthy: {:?}", r.targets);
    run
}

/// Health failover: T1 answers SYNs with RST; how long until new flows reach T2.
fn failover(prov: &str, acme: &str) -> Duration {
    nft_input_rule(
        prov,
        "idle",
        "ip daddr 10.9.0.11 tcp dport 8443 tcp flags syn reject with tcp reset",
    );
    let cut = Instant::now();
    let failover = loop {
        let who = traffic::tcp_who(
            acme,
            CLIENT,
            0,
            SocketAddrV4::new(EP_Z1, TCP_PORT),
            Duration::from_millis(800),
        );
        if who.is_ok_and(|a| a.contains("target=10.9.0.12")) {
            break cut.elapsed();
        }
        assert!(
            cut.elapsed() < Duration::from_secs(10),
            "no failover within 10 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    nft_delete_table(prov, "idle");
    failover
}

/// The status lines of a scrape, a path that is not served and a POST.
fn http_codes(fw: &str, metrics: SocketAddrV4) -> [String; 3] {
    [
        http(fw, metrics, "GET /metrics HTTP/1.1\r\nHost: pl\r\n\r\n"),
        http(fw, metrics, "GET /secrets HTTP/1.1\r\nHost: pl\r\n\r\n"),
        http(
            fw,
            metrics,
            "POST /metrics HTTP/1.1\r\nHost: pl\r\nContent-Length: 0\r\n\r\n",
        ),
    ]
}

/// Until `pests` hold `n` idle connections on each of the control socket and the metrics
/// port.
fn wait_open(pests: &Pests, n: usize, began: Instant) {
    while pests.control[0].load(Ordering::Relaxed) < n
        || pests.metrics[0].load(Ordering::Relaxed) < n
    {
        assert!(
            began.elapsed() < Duration::from_secs(5),
            "the idle connections did not open"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// What the run with idle clients measured against the quiet one.
struct Stalls {
    /// (pl stats, pl flows), quiet and with the idle clients.
    quiet: (Duration, Duration),
    loaded: (Duration, Duration),
    failover: Duration,
    codes: [String; 3],
}

fn assert_not_stalled(s: &Stalls, pests: &Pests) {
    assert_eq!(s.codes[0], "HTTP/1.1 200 OK", "GET /metrics");
    assert_eq!(s.codes[1], "HTTP/1.1 404 Not Found", "GET /secrets");
    assert_eq!(
        s.codes[2], "HTTP/1.1 405 Method Not Allowed",
        "POST /metrics"
    );
    let limit = |q: Duration| q * 3 + Duration::from_millis(300);
    assert!(
        s.loaded.0 < limit(s.quiet.0),
        "pl stats slowed by idle clients: {:?} vs {:?}",
        s.loaded.0,
        s.quiet.0
    );
    assert!(
        s.loaded.1 < limit(s.quiet.1),
        "pl flows slowed by idle clients: {:?} vs {:?}",
        s.loaded.1,
        s.quiet.1
    );
    // The health test sees about 1.6 s with the same settings and no idle clients.
    assert!(
        s.failover < Duration::from_secs(4),
        "failover took {:?} with idle clients",
        s.failover
    );
    assert!(
        count(&pests.control).1 >= 50,
        "pl run never closed the idle control connections: {:?}",
        count(&pests.control)
    );
}

/// (connections made, closed by pl run).
fn count(c: &[AtomicUsize; 2]) -> (usize, usize) {
    (c[0].load(Ordering::Relaxed), c[1].load(Ordering::Relaxed))
}

#[test]
fn idle_clients_stall_neither_requests_nor_health_checks() {
    require_kernel!("idle_clients_stall_neither_requests_nor_health_checks");
    let lab = TestLab::up("idle");
    let fw = lab.fw_ns();
    let acme = lab.topo.network("acme").expect("acme").namespace.clone();
    let prov = lab.topo.network("prov").expect("prov").namespace.clone();
    let _servers = Servers::start(&prov, &[T1, T2]).unwrap_or_else(|e| panic!("{}", chain(e)));
    let metrics = SocketAddrV4::new(Ipv4Addr::LOCALHOST, 9464);
    let run = run_with_metrics(&lab, metrics);
    let _held = traffic::tcp_hold(&acme, CLIENT, SocketAddrV4::new(EP_Z1, TCP_PORT))
        .unwrap_or_else(|e| panic!("{}", chain(e)));

    let quiet = (slowest(&fw, &["stats"]), slowest(&fw, &["flows"]));

    let pests = Pests {
        stop: AtomicBool::new(false),
        control: Default::default(),
        metrics: Default::default(),
    };
    let (stalls, held_for) = std::thread::scope(|s| {
        let began = Instant::now();
        s.spawn(|| pests.run(&fw, 50, metrics));
        // Until all 100 are open.
        wait_open(&pests, 50, began);
        let loaded = (slowest(&fw, &["stats"]), slowest(&fw, &["flows"]));
        let codes = http_codes(&fw, metrics);
        // Health failover while they sit there.
        let failover = failover(&prov, &acme);
        // Long enough for pl run to have closed the first idle control connections.
        while began.elapsed() < Duration::from_secs(3) {
            std::thread::sleep(Duration::from_millis(50));
        }
        pests.stop.store(true, Ordering::Relaxed);
        let stalls = Stalls {
            quiet,
            loaded,
            failover,
            codes,
        };
        (stalls, began.elapsed())
    });
    println!(
        "quiet: pl stats {:?}, pl flows {:?}; with 50 idle control and 50 idle metrics connections: pl stats {:?}, pl flows {:?}, failover {:?} (interval 1 s, 2 failures); over {held_for:?}: control connections opened/closed by pl run {:?}, metrics {:?}",
        stalls.quiet.0,
        stalls.quiet.1,
        stalls.loaded.0,
        stalls.loaded.1,
        stalls.failover,
        count(&pests.control),
        count(&pests.metrics)
    );
    assert_not_stalled(&stalls, &pests);
    drop(run);
    lab.pl_down("default");
}
