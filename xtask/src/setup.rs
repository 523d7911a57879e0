//! `cargo xtask setup`: everything pl needs on a fresh machine, each step skipped when
//! its result is already there, each failure naming the step and the fix.

use std::{
    ffi::OsString,
    path::{Path, PathBuf},
    process::Command,
    time::Instant,
};

use anyhow::{Context as _, bail};

/// Debian packages pl and its lab, tests and bench use.
const APT_PACKAGES: &[&str] = &[
    // sysctl, for the lab namespaces
    "procps",
    "iproute2",
    "ethtool",
    "iperf3",
    "socat",
    // /usr/bin/python3: the e2e_control test's raw client, run as an unprivileged user
    "python3-minimal",
    "nftables",
    "tcpdump",
    "bpftool",
    "iputils-ping",
    // the quick start's (and its test's) HTTP request through an endpoint
    "curl",
    // the election engine of a cluster of forwarders (`[cluster]`)
    "keepalived",
    // dig: the e2e DNS tests and the demo ask pl's endpoint names with it
    "bind9-dnsutils",
];
const BPF_LINKER_VERSION: &str = "0.13.0";
/// LLVM majors bpf-linker 0.13.0 has a feature for.
const BPF_LINKER_LLVM: &[&str] = &["21", "22", "23"];
const BPFFS: &str = "/sys/fs/bpf";

/// What later steps need from set-up.
pub struct Env {
    /// PATH with bpf-linker's directory first.
    pub path: OsString,
}

pub fn run() -> anyhow::Result<Env> {
    let start = Instant::now();
    let mut did = Vec::new();
    if apt()? {
        did.push("apt packages");
    }
    let nightly = Nightly::detect()?;
    if rust_src(&nightly)? {
        did.push("rust-src");
    }
    let (linker_dir, built) = bpf_linker(&nightly)?;
    if built {
        did.push("bpf-linker");
    }
    if bpffs()? {
        did.push("bpffs mount");
    }
    let took = start.elapsed().as_secs_f32();
    if did.is_empty() {
        println!("xtask setup: everything in place ({took:.1} s)");
    } else {
        println!("xtask setup: installed {} ({took:.1} s)", did.join(", "));
    }
    let mut path = OsString::from(&linker_dir);
    path.push(":");
    path.push(std::env::var_os("PATH").unwrap_or_default());
    Ok(Env { path })
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

fn output(cmd: &mut Command) -> Option<String> {
    let out = cmd.output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Installs missing apt packages; true if it installed any.
fn apt() -> anyhow::Result<bool> {
    let missing: Vec<&str> = APT_PACKAGES
        .iter()
        .copied()
        .filter(|p| {
            output(Command::new("dpkg-query").args(["-W", "-f=${Status}", p]))
                .is_none_or(|s| !s.contains("install ok installed"))
        })
        .collect();
    if missing.is_empty() {
        return Ok(false);
    }
    if !is_root() {
        bail!(
            "apt packages missing: {}; run as root, or `sudo apt-get install {}`",
            missing.join(" "),
            missing.join(" ")
        );
    }
    println!("xtask setup: installing {}", missing.join(" "));
    let apt = |args: &[&str]| -> anyhow::Result<()> {
        let status = Command::new("apt-get")
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .context("running apt-get (is this Debian or Ubuntu?)")?;
        if !status.success() {
            bail!(
                "`apt-get {}` failed ({status}); fix the apt sources and re-run `cargo xtask setup`",
                args.join(" ")
            );
        }
        Ok(())
    };
    apt(&["update", "-qq"])?;
    let mut install = vec!["install", "-y", "-qq", "--no-install-recommends"];
    install.extend(&missing);
    apt(&install)?;
    Ok(true)
}

/// The nightly toolchain that builds the eBPF crate.
struct Nightly {
    sysroot: PathBuf,
    /// First 12 hex digits of its commit: bpf-linker is built against this exact libLLVM.
    commit: String,
    llvm_major: String,
}

impl Nightly {
    fn detect() -> anyhow::Result<Self> {
        let vv = output(Command::new("rustup").args(["run", "nightly", "rustc", "-vV"])).context(
            "the nightly toolchain is missing or broken: `rustup toolchain install nightly` (the eBPF crate needs it)",
        )?;
        let field = |name: &str| {
            vv.lines()
                .find_map(|l| l.strip_prefix(name))
                .map(str::trim)
                .map(str::to_owned)
        };
        let commit =
            field("commit-hash:").context("`rustc +nightly -vV` printed no commit-hash")?;
        let llvm =
            field("LLVM version:").context("`rustc +nightly -vV` printed no LLVM version")?;
        let llvm_major = llvm.split('.').next().unwrap_or_default().to_owned();
        let sysroot =
            output(Command::new("rustup").args(["run", "nightly", "rustc", "--print", "sysroot"]))
                .context("`rustc +nightly --print sysroot` failed")?;
        Ok(Self {
            sysroot: PathBuf::from(sysroot.trim()),
            commit: commit.chars().take(12).collect(),
            llvm_major,
        })
    }

    /// nightly's own libLLVM (`libLLVM-22-rust-1.97.0-nightly.so` -> `LLVM-22-rust-1.97.0-nightly`).
    fn libllvm(&self) -> anyhow::Result<String> {
        let lib = self.sysroot.join("lib");
        let prefix = format!("libLLVM-{}-", self.llvm_major);
        std::fs::read_dir(&lib)
            .with_context(|| format!("reading {}", lib.display()))?
            .filter_map(Result::ok)
            .filter_map(|e| e.file_name().into_string().ok())
            .find(|n| n.starts_with(&prefix) && n.ends_with(".so"))
            .and_then(|n| n.strip_prefix("lib").and_then(|n| n.strip_suffix(".so")).map(str::to_owned))
            .with_context(|| format!("no {prefix}*.so in {}: the nightly toolchain ships no libLLVM to build bpf-linker against", lib.display()))
    }
}

fn rust_src(nightly: &Nightly) -> anyhow::Result<bool> {
    if nightly
        .sysroot
        .join("lib/rustlib/src/rust/library/core")
        .is_dir()
    {
        return Ok(false);
    }
    println!("xtask setup: adding rust-src to nightly");
    let status = Command::new("rustup")
        .args(["component", "add", "rust-src", "--toolchain", "nightly"])
        .status()?;
    if !status.success() {
        bail!("`rustup component add rust-src --toolchain nightly` failed ({status})");
    }
    Ok(true)
}

fn home() -> PathBuf {
    std::env::var_os("HOME").map_or_else(|| PathBuf::from("/root"), PathBuf::from)
}

/// bpf-linker, cached outside the clone per (version, nightly commit): it links against
/// that nightly's libLLVM by rpath, so a new nightly needs a new build.
fn bpf_linker(nightly: &Nightly) -> anyhow::Result<(PathBuf, bool)> {
    let root = home().join(".cache/pl").join(format!(
        "bpf-linker-{BPF_LINKER_VERSION}-{}",
        nightly.commit
    ));
    let bin = root.join("bin");
    let exe = bin.join("bpf-linker");
    if works(&exe) {
        return Ok((bin, false));
    }
    if !BPF_LINKER_LLVM.contains(&nightly.llvm_major.as_str()) {
        bail!(
            "nightly uses LLVM {}, but bpf-linker {BPF_LINKER_VERSION} supports LLVM {} only: install a nightly from that range",
            nightly.llvm_major,
            BPF_LINKER_LLVM.join(", ")
        );
    }
    let lib_dir = nightly.sysroot.join("lib");
    let lib = nightly.libllvm()?;
    println!(
        "xtask setup: building bpf-linker {BPF_LINKER_VERSION} against nightly's {lib} into {} (about a minute, once)",
        root.display()
    );
    let start = Instant::now();
    let lib_dir_s = lib_dir.display().to_string();
    let status = Command::new("cargo")
        .args([
            "+nightly",
            "install",
            "bpf-linker",
            "--locked",
            "--version",
            BPF_LINKER_VERSION,
            "--no-default-features",
        ])
        .arg("--features")
        .arg(format!("llvm-{},no-llvm-linking", nightly.llvm_major))
        .arg("--root")
        .arg(&root)
        .env(
            "RUSTFLAGS",
            format!("-L {lib_dir_s} -l dylib={lib} -C link-arg=-Wl,-rpath,{lib_dir_s}"),
        )
        .status()
        .context("running cargo install bpf-linker")?;
    if !status.success() || !works(&exe) {
        bail!(
            "building bpf-linker {BPF_LINKER_VERSION} failed ({status}); it needs crates.io and nightly's {lib} in {lib_dir_s}"
        );
    }
    println!(
        "xtask setup: bpf-linker built in {:.0} s",
        start.elapsed().as_secs_f32()
    );
    Ok((bin, true))
}

fn works(exe: &Path) -> bool {
    output(Command::new(exe).arg("--version")).is_some_and(|v| v.contains(BPF_LINKER_VERSION))
}

/// Mounts bpffs at /sys/fs/bpf if nothing is mounted there; true if it mounted.
fn bpffs() -> anyhow::Result<bool> {
    let mounts = std::fs::read_to_string("/proc/mounts").context("reading /proc/mounts")?;
    // /proc/mounts fields: source, mount point, type, ...
    if mounts.lines().any(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        f.get(1) == Some(&BPFFS) && f.get(2) == Some(&"bpf")
    }) {
        return Ok(false);
    }
    // Only pins need bpffs, and nothing pl does today pins: a failure here is a warning.
    let mounted = is_root()
        && Command::new("mount")
            .args(["-t", "bpf", "bpf", BPFFS])
            .status()
            .is_ok_and(|s| s.success());
    if !mounted {
        eprintln!(
            "xtask setup: warning: could not mount bpffs at {BPFFS} (as root: `mount -t bpf bpf {BPFFS}`); pins will not work"
        );
        return Ok(false);
    }
    Ok(true)
}
