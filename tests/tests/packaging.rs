//! What ships beside the binary, checked without root: logs fit for a pipe or a
//! collector, shell completions, man pages, and the systemd unit.

use std::{
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
    process::Command,
};

use pl_tests::{output, pl_bin, stderr};

/// A temporary directory of this test, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("pl-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        Self(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A config anyone may write, which `pl run --insecure-config` reads with a logged
/// warning before refusing its content: a log line with no root needed.
fn warned_config(dir: &Path) -> PathBuf {
    let path = dir.join("pl.toml");
    std::fs::write(&path, "this is not toml\n").expect("write config");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).expect("chmod");
    path
}

/// Stderr (a pipe) of a `pl run` that logs a warning and fails, `RUST_LOG` set to
/// `rust_log` if given.
fn run_logging(format: &str, rust_log: Option<&str>) -> String {
    let dir = Scratch::new("logs");
    let config = warned_config(&dir.0);
    let mut cmd = Command::new(pl_bin());
    cmd.args([
        "--log-format",
        format,
        "run",
        "--insecure-config",
        "--config",
    ])
    .arg(&config)
    .env_remove("RUST_LOG")
    .env_remove("NO_COLOR");
    if let Some(v) = rust_log {
        cmd.env("RUST_LOG", v);
    }
    let out = output(&mut cmd);
    assert!(!out.status.success(), "a config that is not TOML was taken");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn logs_into_a_pipe_have_no_colours() {
    let err = run_logging("text", None);
    assert!(err.contains("WARN"), "no warning logged: {err}");
    assert!(!err.contains('\x1b'), "escape codes into a pipe: {err:?}");
}

#[test]
fn rust_log_still_filters() {
    for format in ["text", "json"] {
        let err = run_logging(format, Some("error"));
        // The command's own error still comes out: as text, or as a JSON line.
        let error = if format == "json" {
            r#""level":"ERROR""#
        } else {
            "pl: error:"
        };
        assert!(
            !err.contains("WARN") && err.contains(error),
            "RUST_LOG=error let a warning through, or hid the error ({format}): {err}"
        );
    }
}

/// Under a terminal (`script` gives one), colours unless `NO_COLOR` is set non-empty.
#[test]
fn logs_on_a_terminal_are_coloured_unless_no_color() {
    if Command::new("script").arg("--version").output().is_err() {
        eprintln!(
            "SKIPPED logs_on_a_terminal_are_coloured_unless_no_color: no `script` (util-linux)"
        );
        return;
    }
    let dir = Scratch::new("tty");
    let config = warned_config(&dir.0);
    let under_tty = |no_color: &str| {
        let line = format!(
            "NO_COLOR={no_color} {} run --insecure-config --config {}",
            pl_bin().display(),
            config.display()
        );
        let out = output(
            Command::new("script")
                .args(["-qec", &line, "/dev/null"])
                .env_remove("RUST_LOG")
                .env_remove("NO_COLOR"),
        );
        let all = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(all.contains("WARN"), "no warning logged under a tty: {all}");
        all
    };
    assert!(
        under_tty("").contains('\x1b'),
        "no colours on a terminal with NO_COLOR empty"
    );
    assert!(
        !under_tty("1").contains('\x1b'),
        "colours on a terminal despite NO_COLOR=1"
    );
}

#[test]
fn json_logs_are_one_object_per_line() {
    let err = run_logging("json", None);
    assert!(err.contains("WARN"), "no warning logged: {err}");
    // Every line is JSON, the command's own error (its last line) included.
    let lines: Vec<&str> = err.lines().collect();
    assert!(lines.len() >= 2, "no log lines before the error: {err}");
    let mut levels = Vec::new();
    for line in &lines {
        let v: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not a JSON line ({e}): {line:?}"));
        for key in ["timestamp", "level", "target", "fields"] {
            assert!(v.get(key).is_some(), "{key} missing: {line}");
        }
        assert!(
            v["fields"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("pl.toml")),
            "the message does not name the file: {line}"
        );
        levels.push(v["level"].as_str().unwrap_or_default().to_owned());
    }
    assert!(
        levels[..levels.len() - 1].iter().all(|l| l == "WARN"),
        "{err}"
    );
    assert_eq!(levels.last().map(String::as_str), Some("ERROR"), "{err}");
}

#[test]
fn completions_for_each_shell_name_the_commands() {
    for shell in ["bash", "zsh", "fish"] {
        let out = output(Command::new(pl_bin()).args(["completions", shell]));
        assert!(
            out.status.success(),
            "pl completions {shell}: {}",
            stderr(&out)
        );
        let script = String::from_utf8_lossy(&out.stdout);
        for sub in [
            "run",
            "reload",
            "stats",
            "flows",
            "down",
            "config",
            "interface",
        ] {
            assert!(script.contains(sub), "{shell} completions lack {sub}");
        }
        if shell == "bash" {
            let dir = Scratch::new("bash");
            let path = dir.0.join("pl.bash");
            std::fs::write(&path, &out.stdout).expect("write completions");
            let check = output(Command::new("bash").arg("-n").arg(&path));
            assert!(check.status.success(), "bash -n: {}", stderr(&check));
        }
    }
    let out = output(Command::new(pl_bin()).args(["completions", "tcsh"]));
    assert!(!out.status.success(), "an unknown shell was accepted");
}

#[test]
fn man_pages_render_for_pl_and_each_command() {
    let out = output(Command::new(pl_bin()).arg("man"));
    assert!(out.status.success(), "pl man: {}", stderr(&out));
    let page = String::from_utf8_lossy(&out.stdout);
    assert!(page.contains(".TH pl 1"), "no .TH header: {page}");
    for sub in [
        "pl\\-run",
        "pl\\-reload",
        "pl\\-stats",
        "pl\\-flows",
        "pl\\-down",
    ] {
        assert!(page.contains(sub), "pl.1 does not list {sub}");
    }
    let dir = Scratch::new("man");
    let out = output(Command::new(pl_bin()).arg("man").arg("--out").arg(&dir.0));
    assert!(out.status.success(), "pl man --out: {}", stderr(&out));
    for name in ["pl.1", "pl-run.1", "pl-reload.1", "pl-completions.1"] {
        let text = std::fs::read_to_string(dir.0.join(name))
            .unwrap_or_else(|e| panic!("{name} not written: {e}"));
        assert!(text.contains(".TH "), "{name} has no .TH");
    }
    let run = std::fs::read_to_string(dir.0.join("pl-run.1")).expect("pl-run.1");
    assert!(
        run.contains("\\-\\-interface"),
        "pl-run.1 lacks --interface"
    );
}

/// `dist/pl.service`, with its binary path pointed at the built pl, passes
/// `systemd-analyze verify` without a single complaint (it warns and exits 0 for an
/// unknown key or a bad value, so its stderr must be empty).
#[test]
fn the_unit_verifies() {
    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("SKIPPED the_unit_verifies: no systemd-analyze on this machine");
        return;
    }
    let unit = Path::new(env!("CARGO_MANIFEST_DIR")).join("../dist/pl.service");
    let text = std::fs::read_to_string(&unit).unwrap_or_else(|e| panic!("{}: {e}", unit.display()));
    assert!(text.contains("ExecStart=/usr/local/bin/pl run"), "{text}");
    let dir = Scratch::new("unit");
    let copy = dir.0.join("pl.service");
    let bin = pl_bin().display().to_string();
    std::fs::write(&copy, text.replace("/usr/local/bin/pl", &bin)).expect("write unit");
    // The man pages it names are not installed here.
    let out = output(
        Command::new("systemd-analyze")
            .args(["verify", "--man=no"])
            .arg(&copy),
    );
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "systemd-analyze verify {}: {}",
        copy.display(),
        stderr(&out)
    );
}
