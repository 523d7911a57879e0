//! End to end, the service owner's decision: `pl reject` edits the running config file in
//! place (comments kept), pl run reloads it and cuts the endpoint's live connections at
//! once; `pl accept` lets it carry traffic again. `pl endpoints` shows each state and
//! `pl status` exits 0 healthy, 1 degraded, 2 with no pl run.

use std::{
    io::{BufRead as _, BufReader, Write as _},
    net::{SocketAddrV4, TcpStream},
    path::{Path, PathBuf},
    process::Output,
    time::{Duration, Instant},
};

use pl_tests::{
    chain, output, require_kernel,
    running::{CLIENT, EP_Z1, Running},
    stderr,
};
use pl_userspace::{
    control::DEFAULT_INSTANCE,
    lab::{LAB_CONFIG, netns, traffic},
    model::EndpointState,
    status::{EndpointStatus, StatusReport},
};

/// The lab's config with the lists written one name a line, each with a comment.
fn config() -> String {
    LAB_CONFIG.replace(
        r#"accepted_endpoints = ["acme-billing", "globex-billing"]"#,
        "# Who may connect; pl accept and pl reject keep this list.\naccepted_endpoints = [\n    \"acme-billing\",    # acme: contract 42\n    \"globex-billing\",  # globex: trial\n]",
    )
}

const READ_GROUP: &str = "4242";

const COMMENTS: [&str; 4] = [
    "# Generated for the pl lab.",
    "# Who may connect; pl accept and pl reject keep this list.",
    "# acme: contract 42",
    "# globex: trial",
];

fn pl(r: &Running, args: &[&str]) -> Output {
    r.lab.pl(&r.lab.fw_ns(), args)
}

fn pl_ok(r: &Running, args: &[&str]) -> String {
    let out = pl(r, args);
    assert!(out.status.success(), "pl {args:?}: {}", stderr(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn state(r: &Running, name: &str) -> EndpointStatus {
    let list: Vec<EndpointStatus> = serde_json::from_str(&pl_ok(r, &["endpoints", "--json"]))
        .unwrap_or_else(|e| panic!("pl endpoints --json: {e}"));
    list.into_iter()
        .find(|e| e.name == name)
        .unwrap_or_else(|| panic!("no endpoint {name} in pl endpoints"))
}

fn new_connection(r: &Running) -> Result<String, String> {
    r.who_tcp("acme", CLIENT, 0, EP_Z1, traffic::TCP_PORT)
}

/// `pl status` in the forwarder namespace: its exit code and stdout.
fn status(r: &Running) -> (Option<i32>, String) {
    let out = pl(r, &["status"]);
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// `pl status` exits 0 on a healthy lab, its lines fit 100 columns, and `pl version`
/// names the daemon; the config file pl run runs.
fn healthy_at_start(r: &Running) -> PathBuf {
    let report: serde_json::Value = serde_json::from_str(&pl_ok(r, &["status", "--json"]))
        .unwrap_or_else(|e| panic!("pl status --json: {e}"));
    let daemon: StatusReport =
        serde_json::from_value(report["daemon"].clone()).expect("a status report");
    assert_eq!(report["healthy"], true, "{report}");
    let file = daemon.config_file.expect("pl run's config file");
    let (code, text) = status(r);
    assert_eq!(code, Some(0), "a healthy lab is not healthy:\n{text}");
    assert!(text.starts_with("Status:       healthy\n"), "{text}");
    assert!(text.lines().all(|l| l.chars().count() <= 100), "{text}");
    let version = pl_ok(r, &["version"]);
    assert!(version.contains("daemon: pl "), "{version}");
    file
}

#[test]
fn reject_cuts_live_connections_and_accept_restores_the_endpoint() {
    require_kernel!("reject_cuts_live_connections_and_accept_restores_the_endpoint");
    let t0 = Instant::now();
    let r = Running::start_with("ea", &config(), &["--read-group", READ_GROUP]);
    let file = healthy_at_start(&r);

    // A connection through acme-billing carries data; another stays open across the
    // reject, its request half sent (the server waits for the rest only 10 s, so the lab
    // comes down fast after).
    let dst = SocketAddrV4::new(EP_Z1, traffic::TCP_PORT);
    let acme = r.ns("acme");
    let mut done = traffic::tcp_hold(&acme, CLIENT, dst).unwrap_or_else(|e| panic!("{}", chain(e)));
    traffic::finish_hold(&mut done).unwrap_or_else(|e| panic!("data through acme-billing: {e}"));
    let mut held = netns::run_in(&acme, || {
        TcpStream::connect_timeout(&dst.into(), Duration::from_secs(3))
    })
    .unwrap_or_else(|e| panic!("{}", chain(e)))
    .unwrap_or_else(|e| panic!("connecting through acme-billing: {e}"));
    held.write_all(b"WH").expect("the first half of a request");
    let before = state(&r, "acme-billing");
    assert_eq!(before.state, EndpointState::Available);
    assert!(before.active_flows >= 1, "{before:?}");

    let said = pl_ok(&r, &["reject", "acme-billing"]);
    assert!(
        said.contains("\"acme-billing\" of service \"billing\" rejected"),
        "{said}"
    );
    let after = state(&r, "acme-billing");
    assert_eq!(after.state, EndpointState::Rejected, "{after:?}");
    assert_eq!(after.active_flows, 0, "its flows were revoked: {after:?}");
    assert_eq!(state(&r, "globex-billing").state, EndpointState::Available);
    let text = std::fs::read_to_string(&file).expect("read the config");
    for c in COMMENTS {
        assert!(text.contains(c), "comment {c:?} lost:\n{text}");
    }
    assert!(
        text.contains("rejected_endpoints = [\"acme-billing\"]"),
        "{text}"
    );

    // The held connection is cut at once: the rest of its request never gets an answer.
    held.set_read_timeout(Some(Duration::from_secs(2)))
        .expect("timeout");
    let began = Instant::now();
    let answer = held.write_all(b"O\n").and_then(|()| {
        let mut line = String::new();
        BufReader::new(&held).read_line(&mut line).map(|_| line)
    });
    assert!(
        answer.as_ref().is_err() || answer.as_ref().is_ok_and(String::is_empty),
        "a rejected endpoint's connection still answered: {answer:?}"
    );
    assert!(
        began.elapsed() < Duration::from_secs(5),
        "took {:?}",
        began.elapsed()
    );
    assert!(
        new_connection(&r).is_err(),
        "a rejected endpoint took a new connection"
    );

    let said = pl_ok(&r, &["accept", "acme-billing"]);
    assert!(said.contains("accepted"), "{said}");
    assert_eq!(state(&r, "acme-billing").state, EndpointState::Available);
    new_connection(&r).unwrap_or_else(|e| panic!("accepted again, yet: {e}"));
    let text = std::fs::read_to_string(&file).expect("read the config");
    for c in COMMENTS {
        assert!(text.contains(c), "comment {c:?} lost:\n{text}");
    }

    principal_revoked(&r, &file);
    refused_edits(&r, &file);
    degraded_then_gone(r);
    eprintln!("e2e_acceptance: {:?}", t0.elapsed());
}

/// acme taken out of `allowed_principals`: the config still loads, acme-billing is
/// `notAllowed` and takes no connection; put back, it is available again.
fn principal_revoked(r: &Running, file: &Path) {
    let good = std::fs::read_to_string(file).expect("read");
    let revoked = good.replace(
        r#"allowed_principals = ["acme", "globex"]"#,
        r#"allowed_principals = ["globex"]"#,
    );
    assert_ne!(revoked, good, "the lab config lists both principals");
    std::fs::write(file, &revoked).expect("write");
    pl_ok(r, &["reload"]);
    assert_eq!(state(r, "acme-billing").state, EndpointState::NotAllowed);
    assert_eq!(state(r, "globex-billing").state, EndpointState::Available);
    assert!(
        new_connection(r).is_err(),
        "a notAllowed endpoint took a new connection"
    );
    std::fs::write(file, &good).expect("write");
    pl_ok(r, &["reload"]);
    assert_eq!(state(r, "acme-billing").state, EndpointState::Available);
    new_connection(r).unwrap_or_else(|e| panic!("allowed again, yet: {e}"));
}

/// Readers read, non-root may not decide; a file pl run refuses is put back as it was; an unknown
/// endpoint is named with the file.
fn refused_edits(r: &Running, file: &Path) {
    let fw = r.lab.fw_ns();
    // A member of the read group reads status and endpoints, and may not decide.
    let reader = |args: &[&str]| {
        output(
            netns::exec(&fw, "setpriv")
                .args([
                    "--reuid=65534",
                    "--regid=65534",
                    &format!("--groups={READ_GROUP}"),
                    "--inh-caps=-all",
                ])
                .arg(pl_tests::pl_bin())
                .args(args),
        )
    };
    for args in [&["status"][..], &["endpoints"], &["version"]] {
        let out = reader(args);
        assert!(
            out.status.success(),
            "read group: pl {args:?}: {}",
            stderr(&out)
        );
    }
    let denied = reader(&["reject", "acme-billing"]);
    assert!(!denied.status.success(), "uid 65534 rejected an endpoint");
    assert!(stderr(&denied).contains("only root"), "{}", stderr(&denied));

    let unknown = pl(r, &["reject", "acme-nope"]);
    assert!(!unknown.status.success());
    let why = stderr(&unknown);
    assert!(
        why.contains("acme-nope") && why.contains(&file.display().to_string()),
        "{why}"
    );

    let good = std::fs::read_to_string(file).expect("read");
    let bad = good.replace("interface = \"fw-prov\"", "interface = \"fw-nope\"");
    std::fs::write(file, &bad).expect("write");
    let refused = pl(r, &["reject", "globex-billing"]);
    assert_eq!(
        refused.status.code(),
        Some(4),
        "pl run took a config naming fw-nope, or the refusal's exit status is not config's: {}",
        stderr(&refused)
    );
    assert!(
        stderr(&refused).contains("as it was"),
        "{}",
        stderr(&refused)
    );
    assert_eq!(
        std::fs::read_to_string(file).expect("read"),
        bad,
        "not restored"
    );
    std::fs::write(file, &good).expect("write");
    assert_eq!(state(r, "globex-billing").state, EndpointState::Available);
}

/// A target that never answers ARP makes the status degraded (exit 1); with pl run
/// stopped, `pl endpoints` reads the data plane it left; with it gone, status exits 2.
fn degraded_then_gone(r: Running) {
    let path = std::env::temp_dir().join(format!("ea{}-down.toml", std::process::id()));
    let unreachable = config().replace(
        r#"{ ip = "10.9.0.12", zone = "z2" }"#,
        r#"{ ip = "10.9.0.13", zone = "z2" }"#,
    );
    std::fs::write(&path, unreachable).expect("write");
    pl_ok(&r, &["reload", "--config", &path.to_string_lossy()]);
    let _ = std::fs::remove_file(&path);
    let (code, text) = status(&r);
    assert_eq!(
        code,
        Some(1),
        "an unresolved target is not degraded:\n{text}"
    );
    assert!(
        text.contains("degraded: unresolved targets: 10.9.0.13"),
        "{text}"
    );
    assert!(text.contains("(control): ok, reloaded"), "{text}");

    let Running { run, servers, lab } = r;
    // Stopped, the data plane stays: `pl endpoints` reads what it left, as `pl stats` does.
    run.stop()
        .unwrap_or_else(|e| panic!("stopping pl run: {}", chain(e)));
    let left = lab.pl(&lab.fw_ns(), &["endpoints", "--json"]);
    assert!(
        left.status.success(),
        "pl endpoints with no pl run: {}",
        stderr(&left)
    );
    let left = String::from_utf8_lossy(&left.stdout);
    assert!(
        left.contains("\"globex-billing\"") && left.contains("available"),
        "{left}"
    );
    lab.pl_down(DEFAULT_INSTANCE);
    let out = lab.pl(&lab.fw_ns(), &["status"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "no pl run, yet:\n{text}");
    assert!(text.contains("no pl run"), "{text}");
    let version = String::from_utf8_lossy(&lab.pl(&lab.fw_ns(), &["version"]).stdout).into_owned();
    assert!(version.contains("daemon: none answered"), "{version}");
    drop(servers);
}
