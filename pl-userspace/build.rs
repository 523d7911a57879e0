//! Builds the XDP object with aya-build (nightly, bpfel-unknown-none, -Z build-std=core)
//! so `src/lib.rs` can embed it. Needs `bpf-linker`: on PATH, or where `cargo xtask setup`
//! caches it (`~/.cache/pl/bpf-linker-<version>-<nightly commit>/bin`), which is found
//! here so a plain `cargo build` works after setup.

use std::{
    ffi::OsString,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, anyhow};

fn main() -> anyhow::Result<()> {
    let manifest_dir = std::env::var("CARGO_MANIFEST_DIR").context("CARGO_MANIFEST_DIR not set")?;
    let root_dir = Path::new(&manifest_dir)
        .parent()
        .ok_or_else(|| anyhow!("{manifest_dir} has no parent"))?
        .join("pl-ebpf");
    let root_dir = root_dir
        .to_str()
        .ok_or_else(|| anyhow!("{} is not UTF-8", root_dir.display()))?;
    println!("cargo:rerun-if-env-changed=PATH");
    git_revision(Path::new(&manifest_dir));
    if let Some(path) = path_with_cached_linker() {
        // SAFETY: build scripts run single-threaded; nothing else reads the environment now.
        unsafe { std::env::set_var("PATH", path) };
    }
    aya_build::build_ebpf(
        [aya_build::Package { name: "pl-ebpf", root_dir, ..Default::default() }],
        aya_build::Toolchain::default(),
    )
    .context("building the XDP object failed: run `cargo xtask setup` (needs nightly with rust-src and bpf-linker, which setup builds into ~/.cache/pl/)")
}

/// PATH with setup's bpf-linker directory first, when bpf-linker is not on PATH already
/// and setup built one for the installed nightly.
fn path_with_cached_linker() -> Option<OsString> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    if std::env::split_paths(&path).any(|d| d.join("bpf-linker").is_file()) {
        return None;
    }
    let dir = cached_linker_dir()?;
    println!("cargo:rerun-if-changed={}", dir.display());
    std::env::join_paths(std::iter::once(dir).chain(std::env::split_paths(&path))).ok()
}

/// `~/.cache/pl/bpf-linker-*-<nightly commit>/bin`: built against this nightly's libLLVM.
fn cached_linker_dir() -> Option<PathBuf> {
    let home = std::env::var_os("HOME")?;
    let out = Command::new("rustup")
        .args(["run", "nightly", "rustc", "-vV"])
        .output()
        .ok()?;
    let vv = String::from_utf8(out.stdout).ok()?;
    let commit: String = vv
        .lines()
        .find_map(|l| l.strip_prefix("commit-hash:"))?
        .trim()
        .chars()
        .take(12)
        .collect();
    let cache = Path::new(&home).join(".cache/pl");
    std::fs::read_dir(&cache)
        .ok()?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("bpf-linker-") && n.ends_with(&commit))
        })
        .map(|p| p.join("bin"))
        .find(|bin| bin.join("bpf-linker").is_file())
}

/// `PL_GIT_REVISION` for `pl_build_info` and `pl version`: the commit built, with `-dirty`
/// for uncommitted changes; `unknown` outside a git checkout.
fn git_revision(manifest_dir: &Path) {
    let git = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .current_dir(manifest_dir)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
    };
    let rev = git(&["rev-parse", "--short=12", "HEAD"]).map_or_else(
        || "unknown".to_owned(),
        |rev| match git(&["status", "--porcelain", "--untracked-files=no"]) {
            Some(s) if !s.is_empty() => format!("{rev}-dirty"),
            _ => rev,
        },
    );
    if let Some(head) = git(&["rev-parse", "--git-path", "HEAD"]) {
        println!(
            "cargo:rerun-if-changed={}",
            manifest_dir.join(head).display()
        );
    }
    if let Some(index) = git(&["rev-parse", "--git-path", "index"]) {
        println!(
            "cargo:rerun-if-changed={}",
            manifest_dir.join(index).display()
        );
    }
    println!("cargo:rustc-env=PL_GIT_REVISION={rev}");
}
