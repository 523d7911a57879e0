//! Network-namespace end-to-end tests: real labs, `pl run` as a separate process in the
//! forwarder namespace, real sockets, `pl stats` from another process.

use std::{
    collections::HashMap,
    net::{Ipv4Addr, SocketAddrV4},
    process::Command,
    time::Duration,
};

use nix::sys::signal::Signal;
use pl_common::stats::IfaceCounter;
use pl_tests::{PublicPl, TestLab, chain, output, pl_bin, require_kernel, stderr};
use pl_userspace::{
    lab::netns,
    lab::runner::PlRun,
    lab::traffic::{self, Servers, TCP_PORT},
    lab::{LAB_CONFIG, NETWORKS, PEER_IFACE, UDP_FRAME_OVERHEAD},
    stats::StatsReport,
};

fn all_fw_args(lab: &TestLab) -> Vec<String> {
    lab.topo
        .fw_ifaces()
        .into_iter()
        .flat_map(|i| ["--interface".to_owned(), i])
        .collect()
}

fn start(lab: &TestLab, instance: &str, args: &[String]) -> PlRun {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    PlRun::start(&pl_bin(), &lab.fw_ns(), instance, &args)
        .unwrap_or_else(|e| panic!("pl run {args:?}: {}", chain(e)))
}

#[test]
fn lab_up_replaces_and_down_is_idempotent() {
    require_kernel!("lab_up_replaces_and_down_is_idempotent");
    let lab = TestLab::up("lab");
    // A second `up` over the same prefix replaces the lab cleanly.
    let topo = lab
        .lab
        .up()
        .unwrap_or_else(|e| panic!("second lab up: {}", chain(e)));
    for ns in lab.lab.namespaces() {
        assert!(
            ns.starts_with(lab.lab.prefix()),
            "{ns} does not start with the prefix"
        );
        assert!(netns::exists(&ns), "{ns} missing after lab up");
    }
    let fw = lab.fw_ns();
    for net in &topo.networks {
        let addrs = output(Command::new("ip").args([
            "-n",
            &fw,
            "-4",
            "-o",
            "addr",
            "show",
            "dev",
            &net.fw_iface,
        ]));
        assert!(
            String::from_utf8_lossy(&addrs.stdout).trim().is_empty(),
            "{} carries an IPv4 address",
            net.fw_iface
        );
        let k = output(netns::exec(&net.namespace, "ethtool").args(["-k", PEER_IFACE]));
        let k = String::from_utf8_lossy(&k.stdout);
        assert!(
            k.contains("generic-receive-offload: on"),
            "{}: GRO is not on:\n{k}",
            net.namespace
        );
        assert!(
            k.contains("tx-checksumming: off"),
            "{}: tx checksumming is not off:\n{k}",
            net.namespace
        );
        assert_ne!(net.peer_mac, net.fw_mac);
    }
    let acme = topo.network("acme").expect("acme");
    let globex = topo.network("globex").expect("globex");
    assert_eq!(acme.addrs, globex.addrs, "consumer networks must overlap");
    // Printed topology names every namespace, interface and MAC.
    let printed = topo.to_string();
    for net in &topo.networks {
        for s in [&net.namespace, &net.fw_iface, &net.fw_mac, &net.peer_mac] {
            assert!(
                printed.contains(s.as_str()),
                "topology print lacks {s}:\n{printed}"
            );
        }
    }
    lab.lab
        .down()
        .unwrap_or_else(|e| panic!("lab down: {}", chain(e)));
    lab.lab
        .down()
        .unwrap_or_else(|e| panic!("second lab down: {}", chain(e)));
    for ns in lab.lab.namespaces() {
        assert!(!netns::exists(&ns), "{ns} left after lab down");
    }
}

#[test]
fn counters_move_by_the_traffic_each_network_sends() {
    require_kernel!("counters_move_by_the_traffic_each_network_sends");
    let lab = TestLab::up("cnt");
    let run = start(&lab, "default", &all_fw_args(&lab));
    // Different counts per network, so traffic counted on the wrong interface shows.
    let sent: HashMap<&str, (usize, usize)> =
        [("acme", (7, 100)), ("globex", (11, 33)), ("prov", (13, 1))].into();
    for (net, (count, payload)) in &sent {
        lab.lab
            .send_udp(&lab.topo, net, 5353, *count, *payload)
            .unwrap_or_else(|e| panic!("sending from {net}: {}", chain(e)));
    }
    let expected = |r: &StatsReport| {
        NETWORKS.iter().all(|n| {
            r.interface(n.fw_iface)
                .is_some_and(|i| i.get(IfaceCounter::RxPackets) >= sent[n.name].0 as u64)
        })
    };
    run.wait_for_stats(Duration::from_secs(3), expected)
        .unwrap_or_else(|e| panic!("stats: {}", chain(e)));

    // `pl stats --json` from a second process in the same namespace.
    let out = lab.pl(&lab.fw_ns(), &["stats", "--json"]);
    assert!(
        out.status.success(),
        "pl stats --json failed: {}",
        stderr(&out)
    );
    let report: StatsReport = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("pl stats --json output: {}", chain(e)));
    for n in &NETWORKS {
        let (count, payload) = sent[n.name];
        let i = report
            .interface(n.fw_iface)
            .unwrap_or_else(|| panic!("{} missing from stats", n.fw_iface));
        let c = count as u64;
        assert_eq!(i.mode, "native", "{}", n.fw_iface);
        for (counter, want) in [
            (IfaceCounter::RxPackets, c),
            (
                IfaceCounter::RxBytes,
                c * (UDP_FRAME_OVERHEAD + payload) as u64,
            ),
            (IfaceCounter::Ipv4Udp, c),
            (IfaceCounter::XdpPass, c),
            (IfaceCounter::Arp, 0),
            (IfaceCounter::NonIpv4, 0),
            (IfaceCounter::Malformed, 0),
        ] {
            assert_eq!(
                i.get(counter),
                want,
                "{} {}: {report:#?}",
                n.fw_iface,
                counter.name()
            );
        }
    }
    // The table form names every interface.
    let table = lab.pl(&lab.fw_ns(), &["stats"]);
    assert!(
        table.status.success(),
        "pl stats failed: {}",
        stderr(&table)
    );
    let table = String::from_utf8_lossy(&table.stdout);
    for n in &NETWORKS {
        assert!(
            table.contains(n.fw_iface),
            "pl stats table lacks {}:\n{table}",
            n.fw_iface
        );
    }

    let out = run
        .stop()
        .unwrap_or_else(|e| panic!("stopping pl run: {}", chain(e)));
    assert!(
        out.status.success(),
        "pl run exited with {}: {}",
        out.status,
        stderr(&out)
    );
    // Stopping leaves the data plane forwarding; `pl down` removes it.
    for n in &NETWORKS {
        assert!(
            lab.xdp_attached(n.fw_iface),
            "{} lost its XDP program when pl run stopped",
            n.fw_iface
        );
    }
    let down = lab.pl_down("default");
    assert!(down.contains("detached from"), "pl down said: {down}");
    for n in &NETWORKS {
        assert!(
            !lab.xdp_attached(n.fw_iface),
            "{} still has XDP attached after pl down",
            n.fw_iface
        );
    }
    let again = lab.pl_down("default");
    assert!(
        again.contains("nothing"),
        "a second pl down should find nothing: {again}"
    );
}

#[test]
fn sigint_leaves_the_data_plane_for_pl_down_and_generic_mode_works() {
    require_kernel!("sigint_leaves_the_data_plane_for_pl_down_and_generic_mode_works");
    let lab = TestLab::up("sig");
    let run = start(
        &lab,
        "default",
        &[
            "--skb".to_owned(),
            "--interface".to_owned(),
            "fw-acme".to_owned(),
        ],
    );
    let link =
        output(Command::new("ip").args(["-n", &lab.fw_ns(), "link", "show", "dev", "fw-acme"]));
    let link = String::from_utf8_lossy(&link.stdout);
    assert!(
        link.contains("xdpgeneric"),
        "--skb did not attach in generic mode:\n{link}"
    );
    let report = run
        .stats()
        .unwrap_or_else(|e| panic!("stats: {}", chain(e)));
    assert_eq!(report.interfaces[0].mode, "skb");
    // pl down refuses while the instance runs, and changes nothing.
    let busy = lab.pl(&lab.fw_ns(), &["down"]);
    assert!(
        !busy.status.success(),
        "pl down succeeded under a live pl run"
    );
    expect_one_line_error(&stderr(&busy), &["is active", "stop it first"]);
    assert!(lab.xdp_attached("fw-acme"), "a refused pl down detached");
    let out = run
        .stop_with(Signal::SIGINT)
        .unwrap_or_else(|e| panic!("stopping pl run: {}", chain(e)));
    assert!(
        out.status.success(),
        "pl run exited with {} on SIGINT: {}",
        out.status,
        stderr(&out)
    );
    let said = stderr(&out);
    assert!(
        said.contains("stays attached to fw-acme"),
        "pl run's log (stderr): {said}"
    );
    assert!(
        lab.xdp_attached("fw-acme"),
        "fw-acme lost its program on SIGINT"
    );
    // A native-mode start cannot take over a generic-mode link.
    let out = lab.pl(&lab.fw_ns(), &["run", "--interface", "fw-acme"]);
    assert!(!out.status.success(), "a native run took over an skb link");
    expect_one_line_error(&stderr(&out), &["skb mode", "--fresh", "pl down"]);
    let down = lab.pl_down("default");
    assert!(down.contains("fw-acme"), "pl down said: {down}");
    assert!(
        !lab.xdp_attached("fw-acme"),
        "fw-acme still has XDP attached after pl down"
    );
}

/// Runs `pl run ARGS` in `ns` expecting it to fail with a one-line error that mentions
/// every fragment in `mentions`.
fn expect_run_error(lab: &TestLab, ns: &str, args: &[&str], mentions: &[&str]) {
    let mut full = vec!["run", "--instance", "bad"];
    full.extend_from_slice(args);
    let out = lab.pl(ns, &full);
    assert!(
        !out.status.success(),
        "pl {full:?} in {ns} succeeded; expected an error"
    );
    expect_one_line_error(&stderr(&out), mentions);
}

fn expect_one_line_error(err: &str, mentions: &[&str]) {
    assert_eq!(err.lines().count(), 1, "error is not one line:\n{err}");
    for m in mentions {
        assert!(err.contains(m), "error does not mention {m:?}: {err}");
    }
}

#[test]
fn bad_interfaces_fail_with_one_line_and_leave_nothing_attached() {
    require_kernel!("bad_interfaces_fail_with_one_line_and_leave_nothing_attached");
    let lab = TestLab::up("bad");
    let fw = lab.fw_ns();
    let acme_ns = lab.topo.network("acme").expect("acme").namespace.clone();

    for (ns, args, mentions) in [
        (
            &fw,
            &["--interface", "nope0"][..],
            &["interface nope0", "not found in this network namespace"][..],
        ),
        // fw-acme exists, but in the forwarder's namespace, not the consumer's.
        (
            &acme_ns,
            &["--interface", "fw-acme"],
            &["interface fw-acme", "not found", "another one"],
        ),
        (
            &fw,
            &["--interface", "fw-acme", "--interface", "fw-acme"],
            &["interface fw-acme: given twice"],
        ),
        // lo has no native XDP support.
        (
            &fw,
            &["--interface", "lo"],
            &["interface lo", "native XDP", "--skb"],
        ),
    ] {
        expect_run_error(&lab, ns, args, mentions);
    }

    // Occupied slot: fw-globex attaches first, then fw-acme refuses; fw-globex must be
    // detached again and the owner of fw-acme left alone.
    let owner = start(
        &lab,
        "owner",
        &["--interface".to_owned(), "fw-acme".to_owned()],
    );
    expect_run_error(
        &lab,
        &fw,
        &["--interface", "fw-globex", "--interface", "fw-acme"],
        &["interface fw-acme", "already attached"],
    );
    assert!(
        !lab.xdp_attached("fw-globex"),
        "fw-globex left attached after a failed multi-interface attach"
    );
    assert!(
        lab.xdp_attached("fw-acme"),
        "the first instance lost its attachment"
    );
    owner
        .stats()
        .unwrap_or_else(|e| panic!("owner stats after the refused attach: {}", chain(e)));

    // Missing privilege: the same command as an unprivileged user.
    let public = PublicPl::new();
    let out = output(
        netns::exec(&fw, "setpriv")
            .args([
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                "--inh-caps=-all",
            ])
            .arg(public.path())
            .args(["run", "--instance", "nopriv", "--interface", "fw-globex"]),
    );
    assert!(!out.status.success(), "pl run as nobody succeeded");
    expect_one_line_error(&stderr(&out), &["permission denied", "root"]);
    assert!(
        !lab.xdp_attached("fw-globex"),
        "fw-globex attached by an unprivileged run"
    );

    drop(owner);
    assert!(
        lab.xdp_attached("fw-acme"),
        "fw-acme lost its program when its pl run stopped"
    );
    lab.pl_down("owner");
    assert!(
        !lab.xdp_attached("fw-acme"),
        "fw-acme left attached after pl down"
    );
}

#[test]
fn stats_without_a_running_instance_says_so() {
    require_kernel!("stats_without_a_running_instance_says_so");
    let lab = TestLab::up("nst");
    let out = lab.pl(&lab.fw_ns(), &["stats"]);
    assert!(!out.status.success(), "pl stats succeeded with no pl run");
    expect_one_line_error(&stderr(&out), &["no pl run", "this network namespace"]);
}

#[test]
fn demo_runs_end_to_end() {
    require_kernel!("demo_runs_end_to_end");
    let prefix = format!("dm{}-", std::process::id());
    let out = output(Command::new(pl_bin()).args(["demo", "--prefix", &prefix, "--packets", "5"]));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "pl demo failed: {}\n{stdout}",
        stderr(&out)
    );
    for s in [
        "fw-acme (native)",
        "fw-globex (native)",
        "fw-prov (native)",
        "acme-billing",
        "globex-billing",
        "peer=10.9.0.250:",
        "refused_source",
        "tearing down",
    ] {
        assert!(stdout.contains(s), "demo output lacks {s:?}:\n{stdout}");
    }
    let lab = pl_userspace::lab::Lab::new(&prefix).expect("valid prefix");
    for ns in lab.namespaces() {
        assert!(!netns::exists(&ns), "demo left namespace {ns}");
    }
}

/// Interfaces that cannot carry pl as asked are refused before anything is attached: in
/// native mode a driver that is no redirect target (a veth whose peer has neither XDP nor
/// GRO), in generic mode an interface with GRO on (generic XDP would see merged packets
/// whose checksums NAT cannot update). With GRO off, generic mode forwards.
#[test]
fn interfaces_that_cannot_carry_pl_are_refused_by_feature() {
    require_kernel!("interfaces_that_cannot_carry_pl_are_refused_by_feature");
    let lab = TestLab::up("feat");
    let config = lab
        .lab
        .write_config(LAB_CONFIG)
        .unwrap_or_else(|e| panic!("{}", chain(e)));
    let config = config.to_string_lossy().into_owned();
    let fw = lab.fw_ns();
    let acme = lab.topo.network("acme").expect("acme").namespace.clone();
    let ethtool = |ns: &str, args: &[&str]| {
        let out = output(netns::exec(ns, "ethtool").args(args));
        assert!(out.status.success(), "ethtool {args:?}: {}", stderr(&out));
    };
    let none_attached = || {
        for n in &NETWORKS {
            assert!(
                !lab.xdp_attached(n.fw_iface),
                "{} left attached",
                n.fw_iface
            );
        }
    };

    // Native: acme's end loses GRO, so fw-acme is no redirect target.
    ethtool(&acme, &["-K", PEER_IFACE, "gro", "off"]);
    expect_run_error(
        &lab,
        &fw,
        &["--config", &config],
        &["interface fw-acme", "redirect target", "--skb"],
    );
    none_attached();
    ethtool(&acme, &["-K", PEER_IFACE, "gro", "on"]);

    // Generic: GRO on the interface itself.
    ethtool(&fw, &["-K", "fw-globex", "gro", "on"]);
    expect_run_error(
        &lab,
        &fw,
        &["--skb", "--config", &config],
        &["interface fw-globex", "generic-receive-offload", "gro off"],
    );
    none_attached();
    ethtool(&fw, &["-K", "fw-globex", "gro", "off"]);

    // Generic mode with GRO off forwards (the lab's peers send with checksums done).
    let run = PlRun::start(&pl_bin(), &fw, "feat", &["--skb", "--config", &config])
        .unwrap_or_else(|e| panic!("pl run --skb: {}", chain(e)));
    let servers = Servers::start(
        &lab.topo.network("prov").expect("prov").namespace,
        &[Ipv4Addr::new(10, 9, 0, 11), Ipv4Addr::new(10, 9, 0, 12)],
    )
    .unwrap_or_else(|e| panic!("{}", chain(e)));
    run.wait_for_stats(Duration::from_secs(5), |r| {
        r.targets.iter().all(|t| t.mac.is_some())
    })
    .unwrap_or_else(|e| panic!("{}", chain(e)));
    let (sent, got) = traffic::tcp_sink(
        &acme,
        Ipv4Addr::new(10, 0, 0, 10),
        SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 100), TCP_PORT),
        4 * 1024 * 1024,
    )
    .unwrap_or_else(|e| panic!("through generic mode: {}", chain(e)));
    assert_eq!(sent, got, "sha256 through generic mode differs");
    drop(servers);
    let out = run.stop().unwrap_or_else(|e| panic!("{}", chain(e)));
    assert!(out.status.success(), "pl run --skb: {}", stderr(&out));
}
