//! `pl check` and the exit codes, with no kernel and no root needed: every config shipped
//! in the repo passes, every config of the bad corpus is refused (exit 4) with its field
//! named and all its errors printed, and each kind of failure has its exit status.

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
};

use pl_tests::{
    bad_configs::{CORPUS, HOST_ONLY, bad_config},
    output, pl_bin, stderr,
};
use pl_userspace::lab::LAB_CONFIG;

/// `pl ARGS`, run here (no namespace, no privilege asked for).
fn pl(args: &[&str]) -> Output {
    output(Command::new(pl_bin()).args(args))
}

fn code(out: &Output) -> Option<i32> {
    out.status.code()
}

/// The repository's root.
fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is inside the repo")
        .to_owned()
}

/// Every pl config the repo ships: its TOML files, less Cargo's and rustup's.
fn shipped_configs() -> Vec<PathBuf> {
    let out = Command::new("git")
        .arg("-C")
        .arg(repo())
        .args(["ls-files", "*.toml"])
        .output();
    let files: Vec<String> = match out {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout)
            .lines()
            .map(str::to_owned)
            .collect(),
        // No git, or a checkout git will not read as this user: the tree itself.
        _ => walk(&repo(), ""),
    };
    files
        .iter()
        .filter(|f| {
            let name = Path::new(f)
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("");
            name != "Cargo.toml" && !name.starts_with("rust-toolchain") && !f.starts_with(".cargo/")
        })
        .map(|f| repo().join(f))
        .collect()
}

/// The `.toml` files under `dir` (paths relative to the repo), skipping `target/` and
/// hidden directories.
fn walk(dir: &Path, rel: &str) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = if rel.is_empty() {
            name.clone()
        } else {
            format!("{rel}/{name}")
        };
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            if !name.starts_with('.') && name != "target" {
                found.extend(walk(&entry.path(), &path));
            }
        } else if name.ends_with(".toml") {
            found.push(path);
        }
    }
    found
}

/// A directory of this test's own, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(tag: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("pl-check-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        Self(dir)
    }

    /// Writes `text` as `name` (0600: pl run would trust it) and returns its path.
    fn write(&self, name: &str, text: &str) -> String {
        use std::os::unix::fs::PermissionsExt as _;
        let p = self.0.join(name);
        std::fs::write(&p, text).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        p.to_string_lossy().into_owned()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `pl check -o json`'s verdict on `path`: (exit code, valid, errors, warnings).
fn json_verdict(path: &str, strict: bool) -> (Option<i32>, serde_json::Value) {
    let mut args = vec!["check", "--config", path, "-o", "json"];
    if strict {
        args.push("--strict");
    }
    let out = pl(&args);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("pl check -o json {path}: {e}: {}", stderr(&out)));
    (code(&out), v)
}

/// A JSON error as the human line shows it: `section: field: message`.
fn as_line(e: &serde_json::Value) -> String {
    let s = |k: &str| e[k].as_str().unwrap_or_default().to_owned();
    match s("field").as_str() {
        "" => format!("{}: {}", s("section"), s("message")),
        f => format!("{}: {f}: {}", s("section"), s("message")),
    }
}

#[test]
fn every_config_in_the_repo_passes_pl_check() {
    let configs = shipped_configs();
    assert!(
        configs.len() >= 3,
        "expected the examples in docs/examples: {configs:?}"
    );
    let scratch = Scratch::new("lab");
    let lab = scratch.write("lab.toml", LAB_CONFIG);
    let mut failures = Vec::new();
    for path in configs
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .chain([lab])
    {
        let out = pl(&["check", "--config", &path]);
        if code(&out) != Some(0) {
            failures.push(format!("{path}: exit {:?}: {}", code(&out), stderr(&out)));
            continue;
        }
        // Only warnings: what this host lacks (the configs' interfaces; a checkout others
        // could write to, which pl run would refuse to read as its config).
        for w in stderr(&out).lines() {
            if !w.starts_with("pl: warning: ") {
                failures.push(format!("{path}: unexpected line on stderr: {w}"));
            }
        }
        let (c, v) = json_verdict(&path, false);
        if c != Some(0) || v["valid"] != true || v["errors"] != serde_json::json!([]) {
            failures.push(format!("{path}: -o json: exit {c:?}: {v}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn every_bad_config_is_refused_with_its_field_named() {
    assert!(CORPUS.len() >= 20, "the corpus needs at least 20 configs");
    let scratch = Scratch::new("bad");
    let mut failures = Vec::new();
    for (i, (what, replace, with, mentions)) in CORPUS.iter().enumerate() {
        let path = scratch.write(
            &format!("bad-{i:02}.toml"),
            &bad_config(LAB_CONFIG, replace, with),
        );
        let host_only = HOST_ONLY.contains(what);
        let out = pl(&["check", "--config", &path]);
        let err = stderr(&out);
        let want = if host_only { 0 } else { 4 };
        if code(&out) != Some(want) {
            failures.push(format!(
                "{what}: exit {:?}, expected {want}: {err}",
                code(&out)
            ));
        }
        // Named as an error, or (host only) as a warning; --strict refuses those too.
        let prefix = if host_only {
            "pl: warning: "
        } else {
            "pl: error: "
        };
        let named = err
            .lines()
            .filter(|l| l.starts_with(prefix))
            .any(|l| mentions.iter().all(|m| l.contains(m)) && l.contains(&format!("{path}:")));
        if !named {
            failures.push(format!(
                "{what}: no {prefix:?} line naming {mentions:?} in:\n{err}"
            ));
        }
        let (c, v) = json_verdict(&path, host_only);
        let errors = v["errors"].as_array().cloned().unwrap_or_default();
        let structured = errors.iter().any(|e| {
            let text = as_line(e);
            e["line"].is_u64()
                && e["file"] == path.as_str()
                && mentions.iter().all(|m| text.contains(m))
        });
        if c != Some(4) || v["valid"] != false || !structured {
            failures.push(format!(
                "{what}: -o json{}: exit {c:?}: {v}",
                if host_only { " --strict" } else { "" }
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn a_config_with_several_errors_has_them_all_printed() {
    // Four problems in four sections, each its own: all are reported, in file order.
    let edits = [
        ("interface = \"fw-globex\"", "interface = \"fw-acme\""),
        ("protocol = \"udp\"", "protocol = \"sctp\""),
        ("port = 443,", "port = \"443\","),
        ("\"10.0.0.0/25\"", "\"10.0.0.1/25\""),
    ];
    let mut text = LAB_CONFIG.to_owned();
    for (from, to) in edits {
        text = bad_config(&text, from, to);
    }
    text.push_str("\n[limits]\nsnat_port_min = 5000\nsnat_port_max = 4000\n");
    let scratch = Scratch::new("many");
    let path = scratch.write("many.toml", &text);
    let out = pl(&["check", "--config", &path]);
    assert_eq!(code(&out), Some(4), "{}", stderr(&out));
    let errors: Vec<String> = stderr(&out)
        .lines()
        .filter(|l| l.starts_with("pl: error: "))
        .map(str::to_owned)
        .collect();
    let want = [
        "[[network]] \"globex\": interface: fw-acme is already the interface of network \"acme\"",
        "[[service]] \"billing\": listeners[0].port: invalid type: string \"443\", expected u16",
        "[[endpoint]] \"acme-billing\": allowed_sources",
        "[limits]: snat_port_min",
    ];
    assert_eq!(errors.len(), want.len(), "{errors:#?}");
    for (e, w) in errors.iter().zip(want) {
        assert!(
            e.contains(w) && e.contains(&format!("{path}:")),
            "{e:?} lacks {w:?}"
        );
    }
    // The listener protocol sits in the same (unparsed) service entry as the bad port: one
    // error per entry whose types are wrong, the rest of the file still checked.
    assert!(!errors.iter().any(|e| e.contains("sctp")), "{errors:#?}");
}

#[test]
fn what_only_the_host_can_say_is_a_warning_unless_strict() {
    use std::os::unix::fs::PermissionsExt as _;
    let scratch = Scratch::new("host");
    // A valid config, in a file others could write, naming interfaces this host lacks.
    let path = scratch.write("open.toml", &LAB_CONFIG.replace("fw-", "no-such-"));
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).expect("chmod");
    let out = pl(&["check", "--config", &path]);
    let err = stderr(&out);
    assert_eq!(code(&out), Some(0), "{err}");
    let warned = |what: &str| {
        err.lines()
            .any(|l| l.starts_with("pl: warning: ") && l.contains(what))
    };
    assert!(warned("writable by group or others"), "{err}");
    assert!(warned("interface: no-such-prov"), "{err}");
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains("valid: 3 networks, 2 services, 4 endpoints"),
        "{said}"
    );
    let out = pl(&["check", "--config", &path, "--strict"]);
    let err = stderr(&out);
    assert_eq!(code(&out), Some(4), "{err}");
    assert_eq!(
        err.lines().filter(|l| l.starts_with("pl: error: ")).count(),
        4,
        "{err}"
    );
    let (c, v) = json_verdict(&path, false);
    assert_eq!(
        (
            c,
            v["valid"].as_bool(),
            v["warnings"].as_array().map(Vec::len)
        ),
        (Some(0), Some(true), Some(4)),
        "{v}"
    );
    assert_eq!(v["warnings"][1]["field"], "interface", "{v}");
}

#[test]
fn each_kind_of_failure_has_its_exit_code() {
    let scratch = Scratch::new("exit");
    let good = scratch.write("good.toml", LAB_CONFIG);
    let bad = scratch.write("bad.toml", &LAB_CONFIG.replace("port = 443", "port = 0"));
    let unique = format!("nosuch-{}", std::process::id());
    let cases: [(&[&str], i32); 7] = [
        (&["check", "--config", &good], 0),
        (&["check", "--config", &bad], 4),
        (&["check", "--config", "/nonexistent/pl.toml"], 4),
        (&["check"], 2),
        (&["stats", "--instance", "Not-A-Name"], 2),
        // Abstract sockets are per network namespace: no pl run has this name here.
        (&["stats", "--instance", &unique], 3),
        (&["reload", "--instance", &unique], 3),
    ];
    let mut failures = Vec::new();
    for (args, want) in cases {
        let out = pl(args);
        if code(&out) != Some(want) {
            failures.push(format!(
                "pl {}: exit {:?}, expected {want}: {}",
                args.join(" "),
                code(&out),
                stderr(&out)
            ));
        }
    }
    // `pl run` of a bad config refuses it before anything else: 4, every error printed.
    let out = pl(&["run", "--config", &bad, "--instance", &unique]);
    if code(&out) != Some(4) || !stderr(&out).contains("listeners.port: port 0") {
        failures.push(format!(
            "pl run bad: exit {:?}: {}",
            code(&out),
            stderr(&out)
        ));
    }
    // Without privileges: loading the data plane is denied (5); no pl run is still 3.
    for (args, want) in [
        (&["run", "--interface", "lo", "--instance", &unique][..], 5),
        (&["stats", "--instance", &unique][..], 3),
    ] {
        if let Some(out) = unprivileged(args)
            && code(&out) != Some(want)
        {
            failures.push(format!(
                "pl {} (unprivileged): exit {:?}, expected {want}: {}",
                args.join(" "),
                code(&out),
                stderr(&out)
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// `pl ARGS` without privileges: as is when not root, as uid 65534 with no capabilities
/// when root (None if setpriv is missing).
fn unprivileged(args: &[&str]) -> Option<Output> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { nix::libc::geteuid() } != 0 {
        return Some(pl(args));
    }
    if Command::new("setpriv").arg("--version").output().is_err() {
        eprintln!("setpriv not found: the unprivileged case is not checked");
        return None;
    }
    let public = pl_tests::PublicPl::new();
    let mut cmd = Command::new("setpriv");
    cmd.args([
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
        "--inh-caps=-all",
    ])
    .arg(public.path())
    .args(args);
    Some(output(&mut cmd))
}

/// `pl dns` (no root): the lab's names per network, as JSON and as a zone file; a bad
/// config exits 4 with its field named, an unknown network with the flag named.
#[test]
fn pl_dns_lists_each_networks_names_and_prints_a_zone_file() {
    let dir = Scratch::new("dns");
    let config = LAB_CONFIG
        .replacen(
            "interface = \"fw-acme\"",
            "interface = \"fw-acme\"\ndns_addresses = [\"10.0.0.2\"]",
            1,
        )
        .replacen(
            "name = \"billing\"\nnetwork = \"prov\"",
            "name = \"billing\"\nnetwork = \"prov\"\nprivate_dns_name = \"billing.example.com\"",
            1,
        );
    assert!(config.contains("dns_addresses") && config.contains("private_dns_name"));
    let path = dir.write("dns.toml", &config);
    let out = pl(&["dns", "--config", &path, "--json"]);
    assert_eq!(code(&out), Some(0), "pl dns: {}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let names = |net: &str| -> Vec<(String, Vec<String>)> {
        let n = v
            .as_array()
            .expect("an array")
            .iter()
            .find(|n| n["network"] == net)
            .unwrap_or_else(|| panic!("no {net} in {v}"));
        n["names"]
            .as_array()
            .expect("names")
            .iter()
            .map(|x| {
                let addrs = x["addresses"].as_array().expect("addresses");
                (
                    x["name"].as_str().expect("name").to_owned(),
                    addrs
                        .iter()
                        .map(|a| a.as_str().expect("ip").to_owned())
                        .collect(),
                )
            })
            .collect()
    };
    let acme = names("acme");
    let has = |list: &[(String, Vec<String>)], name: &str, addrs: &[&str]| {
        list.iter().any(|(n, a)| n == name && a == addrs)
    };
    assert!(
        has(
            &acme,
            "acme-billing.billing.vpce.internal",
            &["10.0.0.100", "10.0.0.101"]
        ) && has(
            &acme,
            "acme-billing-z2.billing.vpce.internal",
            &["10.0.0.101"]
        ) && has(&acme, "billing.example.com", &["10.0.0.100", "10.0.0.101"])
            && has(
                &acme,
                "acme-ledger-z1.ledger.vpce.internal",
                &["fd00:a::100"]
            ),
        "{acme:?}"
    );
    // globex has the same addresses but its own endpoints' names.
    let globex = names("globex");
    assert!(
        globex.iter().all(|(n, _)| !n.starts_with("acme-"))
            && has(
                &globex,
                "globex-billing.billing.vpce.internal",
                &["10.0.0.100", "10.0.0.101"]
            ),
        "{globex:?}"
    );
    let zone = pl(&["dns", "--config", &path, "--network", "acme", "--zone-file"]);
    assert_eq!(code(&zone), Some(0), "{}", stderr(&zone));
    let text = String::from_utf8_lossy(&zone.stdout);
    for line in [
        "$ORIGIN vpce.internal.",
        "ns.vpce.internal. 60 IN A 10.0.0.2",
        "acme-billing-z1.billing.vpce.internal. 60 IN A 10.0.0.100",
        "$ORIGIN billing.example.com.",
    ] {
        assert!(text.lines().any(|l| l == line), "no {line:?} in:\n{text}");
    }

    let unknown = pl(&["dns", "--config", &path, "--network", "nowhere"]);
    assert!(
        code(&unknown) != Some(0) && stderr(&unknown).contains("--network"),
        "{}",
        stderr(&unknown)
    );
    let bad = dir.write(
        "bad.toml",
        &config.replacen(
            "dns_addresses = [\"10.0.0.2\"]",
            "dns_addresses = [\"10.0.0.100\"]",
            1,
        ),
    );
    let out = pl(&["dns", "--config", &bad]);
    assert_eq!(code(&out), Some(4), "{}", stderr(&out));
    assert!(stderr(&out).contains("dns_addresses"), "{}", stderr(&out));
}
