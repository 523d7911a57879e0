//! End to end, restarting `pl run` under load: the stream and its flows survive a
//! restart; `--fresh` drops them.

use std::{
    net::{Ipv4Addr, SocketAddrV4},
    time::Duration,
};

use pl_common::stats::EndpointCounter;
use pl_tests::{
    TestLab, chain, pl_bin, require_kernel,
    running::{CLIENT, EP_Z1, Running, SHORT, T1, T2, parse_who},
    stderr,
};
use pl_userspace::{
    flows::FlowReport,
    lab::LAB_CONFIG,
    lab::runner::PlRun,
    lab::traffic::{self, TCP_PORT},
    stats::{EndpointReport, StatsReport},
};

/// The lab config with one more endpoint, acme-extra (10.0.0.102).
fn changed() -> String {
    LAB_CONFIG.replace(
        r#"accepted_endpoints = ["acme-billing", "globex-billing"]"#,
        r#"accepted_endpoints = ["acme-billing", "globex-billing", "acme-extra"]"#,
    ) + "\n[[endpoint]]\nname = \"acme-extra\"\nservice = \"billing\"\nnetwork = \"acme\"\naddresses = [{ ip = \"10.0.0.102\", zone = \"z1\" }]\n"
}

/// Bytes the stream across a restart moves.
const LEN: u64 = 1024 * 1024 * 1024;

fn attached(lab: &TestLab) -> bool {
    lab.topo
        .fw_ifaces()
        .into_iter()
        .all(|i| lab.xdp_attached(&i))
}

/// acme-billing once the held connection's flow is in the table.
fn with_the_held_flow(r: &Running) -> EndpointReport {
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
    before
}

/// A quiet restart, with a changed config: the idle connection's flow and the counters
/// are still there (nothing has sent a packet that could have recreated them).
fn quiet_restart(r: Running, before: &EndpointReport) -> Running {
    let (r, took) = r.restart(&changed(), &[]);
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
    r
}

/// A restart while a stream of [`LEN`] bytes runs: every byte arrives.
fn restart_under_load(r: Running, acme: &str) -> Running {
    let changed = changed();
    let (r, transfer, took, restarted_at, stream_done_at) = std::thread::scope(|s| {
        let stream = s.spawn(|| {
            let res = traffic::tcp_sink(acme, CLIENT, SocketAddrV4::new(EP_Z1, TCP_PORT), LEN);
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
    println!("restart under load: {took:?}, {LEN} bytes intact");
    assert!(
        attached(&r.lab),
        "an interface lost its program across the restart"
    );
    r
}

/// With no pl run at all the data plane keeps forwarding, and pl stats and pl flows read
/// what the stopped run left.
fn stopped_it_forwards_and_reads_the_pins(lab: &TestLab, acme: &str) {
    let fw = lab.fw_ns();
    let who = traffic::tcp_who(acme, CLIENT, 0, SocketAddrV4::new(EP_Z1, TCP_PORT), SHORT)
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
        billing.active_flows >= 1 && billing.get(EndpointCounter::ToProviderBytes) > LEN,
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
}

/// A start with another flow table size cannot take the pinned table over and changes
/// nothing.
fn a_resized_table_is_refused(lab: &TestLab) {
    let resized = lab
        .lab
        .write_config(&format!(
            "{}\n[limits]\nflow_table_size = 5000\n",
            changed()
        ))
        .unwrap_or_else(|e| panic!("{}", chain(e)));
    let out = lab.pl(
        &lab.fw_ns(),
        &["run", "--config", &resized.to_string_lossy()],
    );
    assert!(!out.status.success(), "a resized flow table was taken over");
    let err = stderr(&out);
    assert!(
        err.contains("flow_table_size") && err.contains("--fresh"),
        "error does not explain the resize: {err}"
    );
    assert!(attached(lab), "a refused start detached the data plane");
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
    // The restarts bring a changed config: one more endpoint.
    let before = with_the_held_flow(&r);
    let r = quiet_restart(r, &before);
    let r = restart_under_load(r, &acme);

    // With no pl run at all the data plane keeps forwarding; a start with another flow
    // table size cannot take the pinned table over and changes nothing.
    let Running { run, servers, lab } = r;
    let out = run.stop().unwrap_or_else(|e| panic!("stop: {}", chain(e)));
    assert!(out.status.success(), "pl run failed: {}", stderr(&out));
    stopped_it_forwards_and_reads_the_pins(&lab, &acme);
    a_resized_table_is_refused(&lab);
    let path = lab
        .lab
        .write_config(&changed())
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
    let (r, _) = r.restart(&changed(), &["--fresh"]);
    let billing = r.stats();
    let billing = billing.endpoint("acme-billing").expect("acme-billing");
    assert_eq!(billing.active_flows, 0, "--fresh kept flows: {billing:?}");
    assert_eq!(
        billing.get(EndpointCounter::ToProviderBytes),
        0,
        "--fresh kept counters: {billing:?}"
    );
}
