//! Who may drive `pl run`, end to end: the control socket checks each peer's
//! credentials, `reload` opens no path a peer names, the config and state are root's
//! alone, and the read group may only read.

use std::{
    io::{BufRead as _, BufReader, Read as _},
    net::SocketAddrV4,
    os::unix::fs::PermissionsExt as _,
    path::Path,
    process::{Output, Stdio},
    time::Duration,
};

use pl_tests::{
    PublicPl, TestLab, chain, output, pl_bin, require_kernel,
    running::{CLIENT, EP_Z1, OUTSIDER, T1, T2},
    stderr,
};
use pl_userspace::{
    flows::FlowReport,
    lab::LAB_CONFIG,
    lab::netns,
    lab::runner::PlRun,
    lab::traffic::{self, Servers, TCP_PORT},
    stats::StatsReport,
};

const NOBODY: &str = "65534";
const READ_GROUP: &str = "4242";
const TARGETS: &str =
    r#"targets = [{ ip = "10.9.0.11", zone = "z1" }, { ip = "10.9.0.12", zone = "z2" }]"#;

/// `pl ARGS` in `ns` as uid 65534, with `groups` as its only groups (none if empty).
fn as_user(ns: &str, pl: &Path, groups: &str, args: &[&str]) -> Output {
    output(user_cmd(ns, groups).arg(pl).args(args))
}

fn user_cmd(ns: &str, groups: &str) -> std::process::Command {
    let mut cmd = netns::exec(ns, "setpriv");
    cmd.args([
        &format!("--reuid={NOBODY}"),
        &format!("--regid={NOBODY}"),
        "--inh-caps=-all",
    ]);
    if groups.is_empty() {
        cmd.arg("--clear-groups");
    } else {
        cmd.arg(format!("--groups={groups}"));
    }
    cmd
}

/// Sends one raw line to the control socket of `ns` (as uid 65534 if `nobody`), the way a
/// hostile client would; the reply line. A refused peer may be answered and closed before
/// its line is written: the write's EPIPE is expected, the reply is still there to read.
fn raw_request(ns: &str, nobody: bool, line: &str) -> String {
    const CLIENT: &str = "import os, socket\n\
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)\n\
s.settimeout(3)\n\
s.connect('\\0pl.default')\n\
try:\n    s.sendall(os.environ['PL_REQ'].encode() + b'\\n')\n\
except BrokenPipeError:\n    pass\n\
reply = b''\n\
while b'\\n' not in reply and (chunk := s.recv(65536)):\n    reply += chunk\n\
print(reply.decode(errors='replace'))\n";
    let mut cmd = if nobody {
        user_cmd(ns, "")
    } else {
        netns::exec(ns, "env")
    };
    let out = output(
        cmd.args(["/usr/bin/python3", "-c", CLIENT])
            .env("PL_REQ", line),
    );
    assert!(out.status.success(), "raw client: {}", stderr(&out));
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// The config's shape as pl run reports it: endpoints and targets.
fn shape(r: &StatsReport) -> (Vec<String>, Vec<std::net::IpAddr>) {
    (
        r.endpoints.iter().map(|e| e.name.clone()).collect(),
        r.targets.iter().map(|t| t.ip).collect(),
    )
}

fn flows(ns: &str) -> Vec<FlowReport> {
    let out = output(netns::exec(ns, pl_bin()).args(["flows", "--json"]));
    assert!(out.status.success(), "pl flows: {}", stderr(&out));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("pl flows --json: {e}"))
}

/// A refusal as the CLI shows it: one line, naming the request and the uid, exit non-zero.
fn assert_denied(out: &Output, request: &str) {
    let err = stderr(out);
    assert!(!out.status.success(), "{request} as uid {NOBODY} succeeded");
    assert_eq!(
        out.status.code(),
        Some(5),
        "{request}: exit status of a refusal"
    );
    assert_eq!(err.lines().count(), 1, "not one line: {err}");
    for m in ["permission denied", &format!("pl {request}"), "uid 65534"] {
        assert!(err.contains(m), "{request}: refusal lacks {m:?}: {err}");
    }
}

fn write_mode(path: &Path, text: &str, mode: u32, owner: u32) {
    std::fs::write(path, text).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {}: {e}", path.display()));
    std::os::unix::fs::chown(path, Some(owner), Some(owner))
        .unwrap_or_else(|e| panic!("chown {}: {e}", path.display()));
}

/// Every file and directory under `dir`, with its mode, that group or others may use.
fn open_to_others(dir: &Path, found: &mut Vec<String>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let Ok(meta) = std::fs::symlink_metadata(e.path()) else {
            continue;
        };
        let mode = meta.permissions().mode() & 0o7777;
        if mode & 0o077 != 0 {
            found.push(format!("{} {mode:04o}", e.path().display()));
        }
        if meta.is_dir() {
            open_to_others(&e.path(), found);
        }
    }
}

/// A config and a root-only file written by a hostile local user (or for one to name),
/// removed on drop.
struct Hostile {
    /// Its own config: the endpoint open to every source, a target of its choosing.
    evil_text: String,
    evil: String,
    /// A root-only file the daemon would echo parts of, if it read it, and the token in it.
    secret: String,
    token: String,
}

impl Hostile {
    fn new(pid: u32) -> Self {
        // What a hostile local user would send: its own config, opening the endpoint to
        // every source and adding a target of its choosing.
        let evil_text = LAB_CONFIG
            .replace(r#"["10.0.0.0/25"]"#, r#"["0.0.0.0/0"]"#)
            .replace(
                TARGETS,
                &TARGETS.replace("]", r#", { ip = "10.9.0.66", zone = "z1" }]"#),
            );
        assert_ne!(evil_text, LAB_CONFIG, "the lab config changed shape");
        let evil = std::env::temp_dir().join(format!("acl{pid}-evil.toml"));
        write_mode(&evil, &evil_text, 0o644, 65534);
        let evil = evil.to_string_lossy().into_owned();
        // A root-only file the daemon would echo parts of, if it read it.
        let secret = std::env::temp_dir().join(format!("acl{pid}-secret.toml"));
        let token = format!("token-{pid}-not-to-be-read");
        write_mode(&secret, &format!("secret_token = \"{token}\"\n"), 0o600, 0);
        let secret = secret.to_string_lossy().into_owned();
        Self {
            evil_text,
            evil,
            secret,
            token,
        }
    }
}

impl Drop for Hostile {
    fn drop(&mut self) {
        for f in [&self.evil, &self.secret] {
            let _ = std::fs::remove_file(f);
        }
    }
}

/// A config someone else could change is refused before anything is attached.
fn refuses_configs_others_could_change(lab: &TestLab, path: &Path, config: &str) {
    let fw = lab.fw_ns();
    for (mode, owner, says) in [
        (0o664, 0, "writable by group or others (mode 0664)"),
        (0o644, 65534, "owned by uid 65534"),
    ] {
        write_mode(path, LAB_CONFIG, mode, owner);
        let out = lab.pl(&fw, &["run", "--instance", "acl-bad", "--config", config]);
        assert!(!out.status.success(), "pl run took a config {says}");
        let err = stderr(&out);
        for m in [config, says, "--insecure-config"] {
            assert!(
                err.contains(m),
                "refusal of a config {says} lacks {m:?}: {err}"
            );
        }
        assert!(
            !lab.xdp_attached("fw-acme"),
            "attached with a config {says}"
        );
    }
    write_mode(path, LAB_CONFIG, 0o644, 0);
}

/// Without the read group: nothing at all, by the CLI or by raw requests.
fn nobody_gets_nothing(fw: &str, pl: &Path, h: &Hostile) {
    for args in [
        &["stats"][..],
        &["flows"],
        &["flows", "--watch"],
        &["reload"],
        &["reload", "--config", &h.evil],
    ] {
        let request = if args.contains(&"--watch") {
            "watch"
        } else {
            args[0]
        };
        assert_denied(&as_user(fw, pl, "", args), request);
    }
    // Raw requests: the whole config in the request, and the old form naming a path.
    let sent =
        serde_json::json!({"request": "reload", "sent": {"name": "evil", "text": h.evil_text}});
    let reply = raw_request(fw, true, &sent.to_string());
    assert!(
        reply.contains("permission denied"),
        "raw reload as nobody: {reply}"
    );
    let by_path = serde_json::json!({"request": "reload", "config": h.secret}).to_string();
    for (nobody, answer) in [
        (true, "permission denied"),
        (false, "unknown field `config`"),
    ] {
        let reply = raw_request(fw, nobody, &by_path);
        assert!(
            reply.contains(answer) && !reply.contains("secret_token") && !reply.contains(&h.token),
            "a reload naming a root-only file (nobody: {nobody}): {reply}"
        );
    }
}

/// With the read group: stats and flows (once a second), but no reload.
fn read_group_only_reads(fw: &str, pl: &Path, h: &Hostile, before: &StatsReport) {
    let out = as_user(fw, pl, READ_GROUP, &["stats", "--json"]);
    assert!(
        out.status.success(),
        "stats in the read group: {}",
        stderr(&out)
    );
    let read: StatsReport =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("stats --json: {e}"));
    assert_eq!(
        shape(&read),
        shape(before),
        "the read group saw other stats"
    );
    // A reader walks the flow table once a second at most (root is not limited).
    let out = as_user(fw, pl, READ_GROUP, &["flows", "--json"]);
    assert!(
        !out.status.success() && stderr(&out).contains("busy"),
        "a reader walked the table twice within a second: {}",
        stderr(&out)
    );
    std::thread::sleep(Duration::from_millis(1100));
    let out = as_user(fw, pl, READ_GROUP, &["flows", "--json"]);
    assert!(
        out.status.success(),
        "flows in the read group: {}",
        stderr(&out)
    );
    let read: Vec<FlowReport> =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("flows --json: {e}"));
    assert_eq!(read.len(), 1, "the read group sees the held flow: {read:?}");
    assert_denied(&as_user(fw, pl, READ_GROUP, &["reload"]), "reload");
    assert_denied(
        &as_user(fw, pl, READ_GROUP, &["reload", "--config", &h.evil]),
        "reload",
    );
}

/// Nothing changed since `before`: config, flows, counters; the evil config not applied.
fn nothing_changed(
    run: &PlRun,
    (fw, acme): (&str, &str),
    ep: SocketAddrV4,
    (before, before_flows): (&StatsReport, &[FlowReport]),
) {
    let after = run.stats().unwrap_or_else(|e| panic!("{}", chain(e)));
    assert_eq!(
        shape(&after),
        shape(before),
        "a refused reload changed the config"
    );
    assert_eq!(after.endpoints, before.endpoints, "counters moved");
    let after_flows = flows(fw);
    let key = |f: &FlowReport| (f.consumer, f.nlb, f.target, f.to_provider_packets);
    assert_eq!(
        after_flows.iter().map(key).collect::<Vec<_>>(),
        before_flows.iter().map(key).collect::<Vec<_>>(),
        "flows changed"
    );
    assert!(
        traffic::tcp_who(acme, OUTSIDER, 0, ep, Duration::from_millis(800)).is_err(),
        "a source outside allowed_sources got through: the evil config was applied"
    );
}

/// CAP_NET_ADMIN without root grants nothing: capabilities are not recorded at connect,
/// and reading them later races with an exec of a setuid program.
fn net_admin_grants_nothing(fw: &str, pl: &Path) {
    let out = output(
        netns::exec(fw, "setpriv")
            .args([
                &format!("--reuid={NOBODY}"),
                &format!("--regid={NOBODY}"),
                "--clear-groups",
                "--inh-caps=+net_admin",
                "--ambient-caps=+net_admin",
            ])
            .arg(pl)
            .arg("reload"),
    );
    assert_denied(&out, "reload");
}

/// Watch in the read group: it streams.
fn read_group_watch_streams(fw: &str, pl: &Path, acme: &str, ep: SocketAddrV4) {
    let mut watch = user_cmd(fw, READ_GROUP)
        .arg(pl)
        .args(["flows", "--watch", "--json"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn pl flows --watch");
    let stdout = watch.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    std::thread::sleep(Duration::from_millis(300));
    let _ = traffic::tcp_who(acme, CLIENT, 0, ep, Duration::from_millis(800));
    let event = rx.recv_timeout(Duration::from_secs(5));
    let _ = watch.kill();
    let mut err = String::new();
    if let Some(mut e) = watch.stderr.take() {
        let _ = e.read_to_string(&mut err);
    }
    let _ = watch.wait();
    let event = event.unwrap_or_else(|_| panic!("no event for the read group's watch: {err}"));
    assert!(event.contains("\"open\""), "not an open event: {event}");
}

/// Root: `pl reload` and SIGHUP read the file pl run was started with (`path`), again;
/// `pl reload --config FILE` sends a file the client reads.
fn root_reloads(lab: &TestLab, run: &PlRun, path: &Path, pid: u32) {
    let fw = lab.fw_ns();
    let three = LAB_CONFIG.replace(
        TARGETS,
        &TARGETS.replace("]", r#", { ip = "10.9.0.13", zone = "z1" }]"#),
    );
    // billing's: the lab's other service (ledger, IPv6) keeps its two throughout.
    let targets = |r: &StatsReport| r.targets.iter().filter(|t| t.service == "billing").count();
    write_mode(path, &three, 0o644, 0);
    let out = lab.pl(&fw, &["reload"]);
    assert!(out.status.success(), "pl reload: {}", stderr(&out));
    assert_eq!(
        targets(&run.stats().expect("stats")),
        3,
        "pl reload did not read the file again"
    );
    write_mode(path, LAB_CONFIG, 0o644, 0);
    nix::sys::signal::kill(run.pid(), nix::sys::signal::Signal::SIGHUP).expect("SIGHUP");
    let r = run
        .wait_for_stats(Duration::from_secs(5), |r| targets(r) == 2)
        .expect("stats");
    assert_eq!(targets(&r), 2, "SIGHUP did not read the file again");
    // `pl reload --config FILE`: the client reads it (root may read anything) and sends it.
    let other = std::env::temp_dir().join(format!("acl{pid}-other.toml"));
    write_mode(&other, &three, 0o600, 0);
    let out = lab.pl(&fw, &["reload", "--config", &other.to_string_lossy()]);
    assert!(out.status.success(), "pl reload --config: {}", stderr(&out));
    assert_eq!(
        targets(&run.stats().expect("stats")),
        3,
        "the sent config was not applied"
    );
    let _ = std::fs::remove_file(&other);
}

/// pl run's log names who asked what, and never quotes the root-only file.
fn log_names_peers(out: &Output, token: &str) {
    let log = stderr(out);
    for line in [
        "control: uid 65534",
        "reload: refused (permission denied",
        "refused (permission denied: uid 65534 may not use this socket",
        "control: uid 0",
        "reload: reloaded",
    ] {
        assert!(log.contains(line), "pl run's log lacks {line:?}:\n{log}");
    }
    assert!(
        !log.contains(token),
        "pl run's log quotes the root-only file:\n{log}"
    );
}

#[test]
fn only_root_commands_the_data_plane_and_the_read_group_only_reads() {
    require_kernel!("only_root_commands_the_data_plane_and_the_read_group_only_reads");
    let lab = TestLab::up("acl");
    let fw = lab.fw_ns();
    let acme = lab.topo.network("acme").expect("acme").namespace.clone();
    let prov = lab.topo.network("prov").expect("prov").namespace.clone();
    let _servers = Servers::start(&prov, &[T1, T2]).unwrap_or_else(|e| panic!("{}", chain(e)));
    let path = lab
        .lab
        .write_config(LAB_CONFIG)
        .unwrap_or_else(|e| panic!("{}", chain(e)));
    let config = path.to_string_lossy().into_owned();
    refuses_configs_others_could_change(&lab, &path, &config);

    let run = PlRun::start(
        &pl_bin(),
        &fw,
        "default",
        &["--config", &config, "--read-group", READ_GROUP],
    )
    .unwrap_or_else(|e| panic!("pl run: {}", chain(e)));

    // The state it keeps is root's alone.
    let mut open = Vec::new();
    open_to_others(Path::new("/run/pl"), &mut open);
    assert!(open.is_empty(), "state open to others: {open:?}");

    let ep = SocketAddrV4::new(EP_Z1, TCP_PORT);
    let held = traffic::tcp_hold(&acme, CLIENT, ep).unwrap_or_else(|e| panic!("{}", chain(e)));
    let before = run.stats().unwrap_or_else(|e| panic!("{}", chain(e)));
    let before_flows = flows(&fw);
    assert_eq!(before_flows.len(), 1, "the held connection is one flow");

    let pid = std::process::id();
    let hostile = Hostile::new(pid);
    let public = PublicPl::new();
    let pl = public.path();
    nobody_gets_nothing(&fw, &pl, &hostile);
    read_group_only_reads(&fw, &pl, &hostile, &before);
    nothing_changed(&run, (&fw, &acme), ep, (&before, &before_flows));
    net_admin_grants_nothing(&fw, &pl);
    read_group_watch_streams(&fw, &pl, &acme, ep);
    root_reloads(&lab, &run, &path, pid);

    drop(held);
    let token = hostile.token.clone();
    drop(hostile);
    let out = run
        .stop_and_down()
        .unwrap_or_else(|e| panic!("{}", chain(e)));
    log_names_peers(&out, &token);
}
