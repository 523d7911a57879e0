//! End to end, observe mode (`pl run --interface IF...`, no config): counters move by the
//! traffic each network sends; SIGINT leaves the data plane for `pl down`; generic mode;
//! `pl stats` with no instance running says so.

use std::{collections::HashMap, process::Command, time::Duration};

use nix::sys::signal::Signal;
use pl_common::stats::IfaceCounter;
use pl_tests::running::{expect_one_line_error, start_run};
use pl_tests::{TestLab, chain, output, require_kernel, stderr};
use pl_userspace::{
    lab::runner::PlRun,
    lab::{NETWORKS, UDP_FRAME_OVERHEAD},
    stats::StatsReport,
};

fn all_fw_args(lab: &TestLab) -> Vec<String> {
    lab.topo
        .fw_ifaces()
        .into_iter()
        .flat_map(|i| ["--interface".to_owned(), i])
        .collect()
}

/// `pl stats --json` from a second process in the same namespace: each interface counted
/// exactly what `sent` (network: (datagrams, payload bytes)) says.
fn stats_count_what_each_network_sent(lab: &TestLab, sent: &HashMap<&str, (usize, usize)>) {
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
}

/// Stopping leaves the data plane forwarding; `pl down` removes it, and a second finds
/// nothing.
fn stop_leaves_it_for_pl_down(lab: &TestLab, run: PlRun) {
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
fn counters_move_by_the_traffic_each_network_sends() {
    require_kernel!("counters_move_by_the_traffic_each_network_sends");
    let lab = TestLab::up("cnt");
    let run = start_run(&lab, "default", &all_fw_args(&lab));
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
    stats_count_what_each_network_sent(&lab, &sent);
    stop_leaves_it_for_pl_down(&lab, run);
}

#[test]
fn sigint_leaves_the_data_plane_for_pl_down_and_generic_mode_works() {
    require_kernel!("sigint_leaves_the_data_plane_for_pl_down_and_generic_mode_works");
    let lab = TestLab::up("sig");
    let run = start_run(
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

#[test]
fn stats_without_a_running_instance_says_so() {
    require_kernel!("stats_without_a_running_instance_says_so");
    let lab = TestLab::up("nst");
    let out = lab.pl(&lab.fw_ns(), &["stats"]);
    assert!(!out.status.success(), "pl stats succeeded with no pl run");
    expect_one_line_error(&stderr(&out), &["no pl run", "this network namespace"]);
}
