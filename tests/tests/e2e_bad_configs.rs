//! Bad configs, end to end: a corpus, each refused by `pl run` with a line per error naming
//! the file, the line, the section and the field, leaving nothing attached and nothing
//! written; and each refused by `pl reload` while a stream runs, changing nothing and
//! losing no flow.

use std::{
    net::{Ipv4Addr, SocketAddrV4},
    time::Instant,
};

use pl_tests::{
    TestLab,
    bad_configs::{CORPUS, bad_config},
    chain, pl_bin, require_kernel, stderr,
};
use pl_userspace::{
    flows::FlowReport,
    lab::LAB_CONFIG,
    lab::runner::PlRun,
    lab::traffic::{self, Servers, TCP_PORT},
    stats::StatsReport,
};

const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 10);
const EP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 100);

/// True if `err` names `path` followed by `:LINE:`.
fn names_file_and_line(err: &str, path: &str) -> bool {
    err.split(&format!("{path}:"))
        .nth(1)
        .and_then(|rest| rest.split_once(':'))
        .is_some_and(|(line, _)| !line.is_empty() && line.chars().all(|c| c.is_ascii_digit()))
}

fn check_error(what: &str, err: &str, path: &str, mentions: &[&str]) -> Vec<String> {
    let mut failures = Vec::new();
    // Every error is reported, one a line, each naming file and line.
    if let Some(line) = err.lines().find(|l| !names_file_and_line(l, path)) {
        failures.push(format!("{what}: no {path}:LINE: in {line:?} of:\n{err}"));
    }
    for m in mentions {
        if !err.contains(m) {
            failures.push(format!("{what}: does not name {m:?}: {err}"));
        }
    }
    failures
}

/// Writes each config of the corpus into `dir`; their paths, in corpus order.
fn write_corpus(dir: &std::path::Path) -> Vec<String> {
    std::fs::create_dir_all(dir).expect("corpus dir");
    CORPUS
        .iter()
        .enumerate()
        .map(|(i, (_, replace, with, _))| {
            let p = dir.join(format!("bad-{i:02}.toml"));
            std::fs::write(&p, bad_config(LAB_CONFIG, replace, with)).expect("write config");
            p.to_string_lossy().into_owned()
        })
        .collect()
}

/// At start: refused, nothing attached, no state written. A line per failure.
fn refused_at_start(lab: &TestLab, paths: &[String]) -> Vec<String> {
    let fw = lab.fw_ns();
    let mut failures = Vec::new();
    for ((what, _, _, mentions), path) in CORPUS.iter().zip(paths) {
        let out = lab.pl(&fw, &["run", "--instance", "corpus", "--config", path]);
        if out.status.success() {
            failures.push(format!("{what}: pl run accepted it"));
            continue;
        }
        if out.status.code() != Some(4) {
            failures.push(format!(
                "{what}: pl run exit {:?}, not 4",
                out.status.code()
            ));
        }
        failures.extend(check_error(what, &stderr(&out), path, mentions));
        for i in lab.topo.fw_ifaces() {
            if lab.xdp_attached(&i) {
                failures.push(format!("{what}: {i} has XDP attached"));
            }
        }
        let written = std::fs::read_dir("/run/pl")
            .into_iter()
            .flatten()
            .flatten()
            .any(|e| e.file_name().to_string_lossy().starts_with("corpus-"));
        if written {
            failures.push(format!("{what}: state was written under /run/pl"));
        }
    }
    failures
}

/// What a stream sent and what arrived, or why it broke.
type Stream = Result<(String, String), traffic::TrafficError>;

/// `pl reload --config` of each config while a stream runs from `acme` to `ep`, adding a
/// line per failure; the stream's result, when the reloads were done, when it was.
fn reload_each_under_a_stream(
    lab: &TestLab,
    (acme, ep): (&str, SocketAddrV4),
    paths: &[String],
    failures: &mut Vec<String>,
) -> (Stream, Instant, Instant) {
    let fw = lab.fw_ns();
    std::thread::scope(|s| {
        let stream = s.spawn(|| {
            let r = traffic::tcp_sink(acme, CLIENT, ep, 256 * 1024 * 1024);
            (r, Instant::now())
        });
        for ((what, _, _, mentions), path) in CORPUS.iter().zip(paths) {
            let out = lab.pl(&fw, &["reload", "--config", path]);
            if out.status.success() {
                failures.push(format!("{what}: reload accepted it"));
            } else {
                // Refused by pl run for its config: told apart from a failed reload.
                if out.status.code() != Some(4) {
                    failures.push(format!(
                        "reload: {what}: exit {:?}, not 4",
                        out.status.code()
                    ));
                }
                failures.extend(check_error(
                    &format!("reload: {what}"),
                    &stderr(&out),
                    path,
                    mentions,
                ));
            }
        }
        let reloads_done = Instant::now();
        let (r, done) = stream.join().expect("stream thread");
        (r, reloads_done, done)
    })
}

/// The config's shape as pl run reports it: endpoints and targets.
fn shape(r: &StatsReport) -> (Vec<String>, Vec<std::net::IpAddr>) {
    (
        r.endpoints
            .iter()
            .map(|e| e.name.clone())
            .collect::<Vec<_>>(),
        r.targets.iter().map(|t| t.ip).collect::<Vec<_>>(),
    )
}

#[test]
fn every_bad_config_is_refused_at_start_and_on_reload_under_load() {
    require_kernel!("every_bad_config_is_refused_at_start_and_on_reload_under_load");
    assert!(CORPUS.len() >= 20, "the corpus needs at least 20 configs");
    let lab = TestLab::up("cc");
    let fw = lab.fw_ns();
    let dir = std::env::temp_dir().join(format!("cc{}-corpus", std::process::id()));
    let paths = write_corpus(&dir);
    let mut failures = refused_at_start(&lab, &paths);

    // On reload, while a stream and an idle connection run: refused, nothing changes.
    let prov = lab.topo.network("prov").expect("prov").namespace.clone();
    let acme = lab.topo.network("acme").expect("acme").namespace.clone();
    let _servers = Servers::start(
        &prov,
        &[Ipv4Addr::new(10, 9, 0, 11), Ipv4Addr::new(10, 9, 0, 12)],
    )
    .unwrap_or_else(|e| panic!("servers: {}", chain(e)));
    let good = lab.lab.write_config(LAB_CONFIG).expect("write config");
    let run = PlRun::start(
        &pl_bin(),
        &fw,
        "default",
        &["--config", &good.to_string_lossy()],
    )
    .unwrap_or_else(|e| panic!("pl run: {}", chain(e)));
    let ep = SocketAddrV4::new(EP, TCP_PORT);
    let _held = traffic::tcp_hold(&acme, CLIENT, ep).unwrap_or_else(|e| panic!("{}", chain(e)));
    let flows = || -> Vec<FlowReport> {
        let out = lab.pl(&fw, &["flows", "--json"]);
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("pl flows: {e}"))
    };
    let before_flows = flows();
    let before = run.stats().unwrap_or_else(|e| panic!("{}", chain(e)));
    let (transfer, reloads_done, stream_done) =
        reload_each_under_a_stream(&lab, (&acme, ep), &paths, &mut failures);
    let _ = std::fs::remove_dir_all(&dir);
    let (sent, got) = transfer.unwrap_or_else(|e| panic!("the stream broke: {}", chain(e)));
    assert_eq!(sent, got, "bytes lost during the refused reloads");
    assert!(
        reloads_done < stream_done,
        "the stream ended before the reloads: the test proved nothing"
    );
    let after = run.stats().unwrap_or_else(|e| panic!("{}", chain(e)));
    assert_eq!(
        shape(&after),
        shape(&before),
        "a refused reload changed the config"
    );
    let after_flows = flows();
    for f in &before_flows {
        assert!(
            after_flows
                .iter()
                .any(|a| a.consumer == f.consumer && a.nlb == f.nlb),
            "flow {} -> {} lost across the refused reloads",
            f.consumer,
            f.nlb
        );
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
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
