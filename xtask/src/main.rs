//! `cargo xtask`: set-up, build, demo and test driver for pl.
//!
//! Kept free of the pl crates so it builds before `setup` has installed what they need.

mod dist;
mod setup;

use std::{
    path::{Path, PathBuf},
    process::{Command, ExitCode, ExitStatus},
};

use anyhow::{Context as _, bail};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask", about = "Set up, build, demo and test pl")]
struct Cli {
    #[command(subcommand)]
    command: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Install what pl needs (apt packages, nightly rust-src, bpf-linker, bpffs). Idempotent.
    Setup,
    /// Set up, then build the eBPF object and `pl` (release).
    Build,
    /// Set up, build, then put the release binary, the systemd unit, completions, man
    /// pages, licences and README into target/dist/.
    Dist,
    /// Set up, build, then run `pl demo` on a fresh lab (arguments go to `pl demo`).
    Demo {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Set up, build, then run `pl bench` (arguments go to `pl bench`, e.g. --quick).
    Bench {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Set up, then the full fuzz run: 1 000 000 random and mutated frames through the XDP
    /// program (BPF_PROG_TEST_RUN). `--seed N` replays a run.
    Fuzz {
        #[arg(long, default_value_t = 1_000_000)]
        frames: u64,
        #[arg(long)]
        seed: Option<u64>,
    },
    /// Set up, then a long churn run (a soak): the flow sweep against XDP creating, closing
    /// and reopening flows on a small table, every pair checked after each round. `--seed N`
    /// replays a run's frames.
    Churn {
        #[arg(long, default_value_t = 5000)]
        rounds: u64,
        #[arg(long)]
        seed: Option<u64>,
    },
    /// Set up, then run every test: unit, packet fixtures, network-namespace end to end.
    Test {
        /// Extra arguments for `cargo test` (before `--`), e.g. a test name filter.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

fn main() -> ExitCode {
    match run(Cli::parse().command) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("xtask: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(task: Task) -> anyhow::Result<ExitCode> {
    let root = workspace_root();
    let env = setup::run()?;
    match task {
        Task::Setup => Ok(ExitCode::SUCCESS),
        Task::Build => {
            build_release(&env, &root)?;
            println!(
                "xtask: built {}",
                target_dir(&root).join("release/pl").display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Task::Dist => {
            build_release(&env, &root)?;
            let target = target_dir(&root);
            let out = target.join("dist");
            for path in dist::assemble(&target.join("release/pl"), &root, &out)? {
                println!("xtask: wrote {}", path.display());
            }
            Ok(ExitCode::SUCCESS)
        }
        Task::Demo { args } => {
            build_release(&env, &root)?;
            let mut child = Command::new(target_dir(&root).join("release/pl"))
                .arg("demo")
                .args(args)
                .spawn()
                .context("starting pl demo")?;
            // Ctrl-C reaches the demo too; it tears the lab down and exits, and we wait for that.
            ignore_interrupts();
            exit_code(child.wait().context("waiting for pl demo")?)
        }
        Task::Bench { args } => {
            build_release(&env, &root)?;
            let mut bench = Command::new(target_dir(&root).join("release/pl"));
            bench.arg("bench").args(&args);
            // A full run is the published one: it rewrites BENCHMARKS.md and its plot.
            if !args
                .iter()
                .any(|a| a == "--quick" || a == "--report" || a == "--from-json")
            {
                bench.arg("--report").arg(&root);
                bench
                    .arg("--json")
                    .arg(target_dir(&root).join("bench.json"));
            }
            let status = bench.status().context("running pl bench")?;
            exit_code(status)
        }
        Task::Fuzz { frames, seed } => {
            one_test(&env, &root, "fuzz", ("FUZZ", "FRAMES", frames), seed)
        }
        Task::Churn { rounds, seed } => {
            one_test(&env, &root, "churn", ("CHURN", "ROUNDS", rounds), seed)
        }
        Task::Test { args } => {
            // The end-to-end tests run this binary as a separate process, as a user would.
            check(
                cargo(&env, &root)
                    .args(["build", "--package", "pl-userspace", "--bin", "pl"])
                    .status(),
                "cargo build",
            )?;
            let status = cargo(&env, &root)
                .arg("test")
                .args(args)
                .args(["--", "--test-threads=1"])
                .env("PL_BIN", target_dir(&root).join("debug/pl"))
                .status()
                .context("running cargo test")?;
            exit_code(status)
        }
    }
}

/// `target/release/pl`, with the eBPF object embedded.
fn build_release(env: &setup::Env, root: &Path) -> anyhow::Result<()> {
    let status = cargo(env, root)
        .args(["build", "--release", "--package", "pl-userspace"])
        .status();
    check(status, "cargo build")
}

/// Where cargo puts builds: `$CARGO_TARGET_DIR` or the workspace's `target/`.
fn target_dir(root: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), |d| root.join(d))
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

/// Runs test file `test` alone, with `PL_<NAME>_<SIZE>` set to `n` and `PL_<NAME>_SEED` to
/// `seed` if given.
fn one_test(
    env: &setup::Env,
    root: &Path,
    test: &str,
    (name, size, n): (&str, &str, u64),
    seed: Option<u64>,
) -> anyhow::Result<ExitCode> {
    let mut cmd = cargo(env, root);
    cmd.args([
        "test",
        "--package",
        "pl-tests",
        "--test",
        test,
        "--",
        "--nocapture",
    ])
    .env(format!("PL_{name}_{size}"), n.to_string());
    if let Some(s) = seed {
        cmd.env(format!("PL_{name}_SEED"), s.to_string());
    }
    exit_code(
        cmd.status()
            .with_context(|| format!("running the {test} test"))?,
    )
}

/// `cargo` (the one running us), in the workspace, with bpf-linker on PATH.
fn cargo(env: &setup::Env, root: &Path) -> Command {
    let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cmd.current_dir(root).env("PATH", &env.path);
    cmd
}

fn check(status: std::io::Result<ExitStatus>, what: &str) -> anyhow::Result<()> {
    let status = status.with_context(|| format!("starting {what}"))?;
    if !status.success() {
        bail!("{what} failed ({status})");
    }
    Ok(())
}

fn exit_code(status: ExitStatus) -> anyhow::Result<ExitCode> {
    Ok(match status.code() {
        Some(0) => ExitCode::SUCCESS,
        Some(c) => ExitCode::from(u8::try_from(c).unwrap_or(1)),
        None => bail!("killed by a signal ({status})"),
    })
}

fn ignore_interrupts() {
    // SAFETY: SIG_IGN is a valid disposition; no handler runs in our process.
    unsafe {
        libc::signal(libc::SIGINT, libc::SIG_IGN);
    }
}
