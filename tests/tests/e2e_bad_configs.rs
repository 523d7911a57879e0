//! Bad configs, end to end: a corpus, each refused by `pl run` with one line naming the
//! file, the line, the section and the field, leaving nothing attached and nothing
//! written; and each refused by `pl reload` while a stream runs, changing nothing and
//! losing no flow.

use std::{
    net::{Ipv4Addr, SocketAddrV4},
    time::Instant,
};

use pl_tests::{TestLab, chain, pl_bin, require_kernel, stderr};
use pl_userspace::{
    flows::FlowReport,
    lab::LAB_CONFIG,
    lab::runner::PlRun,
    lab::traffic::{self, Servers, TCP_PORT},
    stats::StatsReport,
};

const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 10);
const EP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 100);

/// (what is wrong, replace this, with this, what the error must name). An empty "replace"
/// appends.
const CORPUS: &[(&str, &str, &str, &[&str])] = &[
    (
        "a network name used twice",
        "name = \"globex\"\ninterface = \"fw-globex\"",
        "name = \"acme\"\ninterface = \"fw-globex\"",
        &["[[network]] \"acme\": name", "used twice"],
    ),
    (
        "an interface that does not exist",
        "interface = \"fw-prov\"",
        "interface = \"fw-nope\"",
        &["[[network]] \"prov\": interface", "fw-nope"],
    ),
    (
        "one interface for two networks",
        "interface = \"fw-globex\"",
        "interface = \"fw-acme\"",
        &["[[network]] \"globex\": interface", "fw-acme"],
    ),
    (
        "a route whose router is off-link",
        "interface = \"fw-prov\"",
        "interface = \"fw-prov\"\nroutes = [{ to = \"10.60.0.0/24\", via = \"10.9.0.1\" }, { to = \"10.9.0.0/28\", via = \"10.9.0.2\" }]",
        &[
            "[[network]] \"prov\": routes.via",
            "10.9.0.1 is not on-link",
        ],
    ),
    (
        "a route to a prefix that is no prefix",
        "interface = \"fw-prov\"",
        "interface = \"fw-prov\"\nroutes = [{ to = \"10.60.0.1/24\", via = \"10.9.0.1\" }]",
        &["[[network]] \"prov\": routes.to", "10.60.0.1/24"],
    ),
    (
        "a route listed twice",
        "interface = \"fw-prov\"",
        "interface = \"fw-prov\"\nroutes = [{ to = \"10.60.0.0/24\", via = \"10.9.0.1\" }, { to = \"10.60.0.0/24\", via = \"10.9.0.2\" }]",
        &["[[network]] \"prov\": routes.to", "listed twice"],
    ),
    (
        "a route through an NLB address",
        "interface = \"fw-prov\"",
        "interface = \"fw-prov\"\nroutes = [{ to = \"10.60.0.0/24\", via = \"10.9.0.250\" }]",
        &[
            "[[service]] \"billing\": nlb_addresses",
            "10.9.0.250 is already the next hop",
        ],
    ),
    (
        "a service on a network that does not exist",
        "network = \"prov\"\nnlb",
        "network = \"nowhere\"\nnlb",
        &["[[service]] \"billing\": network", "nowhere"],
    ),
    (
        "an NLB address that is no address",
        "10.9.0.250",
        "10.9.0.999",
        &["[[service]] \"billing\": nlb_addresses", "10.9.0.999"],
    ),
    (
        "two NLB addresses in one zone",
        "\"10.9.0.251\", zone = \"z2\"",
        "\"10.9.0.251\", zone = \"z1\"",
        &[
            "[[service]] \"billing\": nlb_addresses",
            "two NLB addresses",
        ],
    ),
    (
        "a target in a zone with no NLB address",
        "{ ip = \"10.9.0.12\", zone = \"z2\" }",
        "{ ip = \"10.9.0.12\", zone = \"z3\" }",
        &["[[service]] \"billing\": targets", "z3"],
    ),
    (
        "a target that is also an NLB address",
        "{ ip = \"10.9.0.12\", zone = \"z2\" }",
        "{ ip = \"10.9.0.250\", zone = \"z2\" }",
        &["[[service]] \"billing\": targets", "10.9.0.250"],
    ),
    (
        "a listener protocol pl does not carry",
        "protocol = \"udp\"",
        "protocol = \"sctp\"",
        &["[[service]] \"billing\": listeners.protocol", "sctp"],
    ),
    (
        "listener port 0",
        "port = 443",
        "port = 0",
        &["[[service]] \"billing\": listeners.port", "port 0"],
    ),
    (
        "a listener given twice",
        "{ protocol = \"udp\", port = 53, target_port = 5353 }",
        "{ protocol = \"tcp\", port = 443 }",
        &["[[service]] \"billing\": listeners.port", "twice"],
    ),
    (
        "no listeners",
        "listeners = [{ protocol = \"tcp\", port = 443, target_port = 8443 }, { protocol = \"udp\", port = 53, target_port = 5353 }]",
        "listeners = []",
        &["[[service]] \"billing\": listeners", "must not be empty"],
    ),
    (
        "a field the schema does not have",
        "cross_zone = false",
        "cross_zone = false\ncolour = \"blue\"",
        &["colour"],
    ),
    (
        "a health check timeout not shorter than its interval",
        "cross_zone = false",
        "cross_zone = false\nhealth_check = { interval_s = 2, timeout_ms = 5000 }",
        &[
            "[[service]] \"billing\": health_check.timeout_ms",
            "shorter",
        ],
    ),
    (
        "a health check protocol pl does not send",
        "cross_zone = false",
        "cross_zone = false\nhealth_check = { protocol = \"http\" }",
        &["[[service]] \"billing\": health_check.protocol", "http"],
    ),
    (
        "an endpoint of a service that does not exist",
        "service = \"billing\"\nnetwork = \"globex\"",
        "service = \"payroll\"\nnetwork = \"globex\"",
        &["[[endpoint]] \"globex-billing\": service", "payroll"],
    ),
    (
        "an endpoint in a network the service does not allow",
        "allowed_principals = [\"acme\", \"globex\"]",
        "allowed_principals = [\"acme\"]",
        &["[[endpoint]] \"globex-billing\": network", "principal"],
    ),
    (
        "an allowed source with host bits set",
        "\"10.0.0.0/25\"",
        "\"10.0.0.1/25\"",
        &[
            "[[endpoint]] \"acme-billing\": allowed_sources",
            "10.0.0.1/25",
        ],
    ),
    (
        "an endpoint address in a zone with no NLB address",
        "zone = \"z2\" }]\nallowed_sources",
        "zone = \"z9\" }]\nallowed_sources",
        &["[[endpoint]] \"acme-billing\": addresses", "z9"],
    ),
    (
        "an endpoint name used twice",
        "name = \"globex-billing\"",
        "name = \"acme-billing\"",
        &["[[endpoint]] \"acme-billing\": name", "used twice"],
    ),
    (
        "an endpoint address another endpoint of its network holds",
        "",
        "[[endpoint]]\nname = \"acme-again\"\nservice = \"billing\"\nnetwork = \"acme\"\naddresses = [{ ip = \"10.0.0.100\", zone = \"z1\" }]\n",
        &["[[endpoint]] \"acme-again\": addresses", "10.0.0.100"],
    ),
    (
        "an inverted SNAT range",
        "",
        "[limits]\nsnat_port_min = 5000\nsnat_port_max = 4000\n",
        &["[limits]", "snat_port"],
    ),
    (
        "a limit the schema does not have",
        "",
        "[limits]\nflow_table_sizes = 5\n",
        &["flow_table_sizes"],
    ),
    (
        "broken TOML",
        "name = \"acme\"",
        "name = \"acme",
        // A syntax error has no section: file and line are what there is.
        &["invalid basic string"],
    ),
];

fn bad_config(original: &str, replace: &str, with: &str) -> String {
    if replace.is_empty() {
        return format!("{original}\n{with}");
    }
    assert!(
        original.contains(replace),
        "the corpus no longer matches the lab config: {replace:?}"
    );
    original.replacen(replace, with, 1)
}

/// True if `err` names `path` followed by `:LINE:`.
fn names_file_and_line(err: &str, path: &str) -> bool {
    err.split(&format!("{path}:"))
        .nth(1)
        .and_then(|rest| rest.split_once(':'))
        .is_some_and(|(line, _)| !line.is_empty() && line.chars().all(|c| c.is_ascii_digit()))
}

fn check_error(what: &str, err: &str, path: &str, mentions: &[&str]) -> Vec<String> {
    let mut failures = Vec::new();
    if err.lines().count() != 1 {
        failures.push(format!("{what}: not one line:\n{err}"));
    }
    if !names_file_and_line(err, path) {
        failures.push(format!("{what}: no {path}:LINE: in {err}"));
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
fn shape(r: &StatsReport) -> (Vec<String>, Vec<Ipv4Addr>) {
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
