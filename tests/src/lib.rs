//! Harness for pl's kernel tests: the root/BPF gate, the `pl` binary, labs with unique
//! prefixes that always come down (also when a test panics), and `pl` as a subprocess.

use std::{
    io::Write as _,
    path::PathBuf,
    process::{Command, Output},
};

use pl_userspace::{
    lab::{Lab, Topology},
    netns,
};

/// Why kernel tests cannot run here, if they cannot.
pub fn kernel_unavailable() -> Option<String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { nix::libc::geteuid() } != 0 {
        return Some("needs root (loads BPF programs, creates network namespaces)".to_owned());
    }
    match aya::sys::is_program_supported(aya::programs::ProgramType::Xdp) {
        Ok(true) => None,
        Ok(false) => Some("this kernel cannot load XDP programs".to_owned()),
        Err(e) => Some(format!("probing for XDP support failed: {e}")),
    }
}

/// True if kernel tests can run. Otherwise: under `CI=true` the test fails loudly;
/// elsewhere it prints one line saying why it is skipped and returns false.
pub fn kernel_available(test: &str) -> bool {
    let Some(reason) = kernel_unavailable() else {
        return true;
    };
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{test}: cannot run: {reason}; CI=true requires every kernel test to run");
    }
    // Straight to fd 2: the test harness captures eprintln! of passing tests.
    let _ = writeln!(std::io::stderr(), "SKIPPED {test}: {reason}");
    false
}

/// Returns from the test (skipping it) where kernel tests cannot run; see [`kernel_available`].
#[macro_export]
macro_rules! require_kernel {
    ($test:expr) => {
        if !$crate::kernel_available($test) {
            return;
        }
    };
}

/// The `pl` binary: `$PL_BIN` (set by `cargo xtask test`), else `target/<profile>/pl`
/// beside this test executable.
pub fn pl_bin() -> PathBuf {
    let bin = std::env::var_os("PL_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let exe = std::env::current_exe().expect("current_exe");
            // target/<profile>/deps/<test> -> target/<profile>/pl
            exe.parent()
                .and_then(|d| d.parent())
                .expect("test binary lives in target/<profile>/deps")
                .join("pl")
        });
    assert!(
        bin.is_file(),
        "pl binary not found at {}: build it (`cargo build -p pl-userspace`) or run `cargo xtask test`",
        bin.display()
    );
    bin
}

/// A copy of the `pl` binary any user can execute (the clone may sit under a
/// private home directory), removed on drop.
pub struct PublicPl {
    dir: PathBuf,
}

impl PublicPl {
    pub fn new() -> Self {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = std::env::temp_dir().join(format!("pl-public-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
        let bin = dir.join("pl");
        std::fs::copy(pl_bin(), &bin)
            .unwrap_or_else(|e| panic!("copying pl to {}: {e}", bin.display()));
        for (p, mode) in [(&dir, 0o755), (&bin, 0o755)] {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode))
                .unwrap_or_else(|e| panic!("chmod {}: {e}", p.display()));
        }
        Self { dir }
    }

    pub fn path(&self) -> PathBuf {
        self.dir.join("pl")
    }
}

impl Default for PublicPl {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for PublicPl {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A lab with a prefix unique to this test and process, removed on drop.
pub struct TestLab {
    pub lab: Lab,
    pub topo: Topology,
}

impl TestLab {
    /// `tag`: a few characters naming the test (the prefix is `{tag}{pid}-`).
    pub fn up(tag: &str) -> Self {
        let prefix = format!("{tag}{}-", std::process::id());
        let lab = Lab::new(&prefix).unwrap_or_else(|e| panic!("lab prefix {prefix}: {e}"));
        let topo = lab
            .up()
            .unwrap_or_else(|e| panic!("lab up {prefix}: {e:#}"));
        Self { lab, topo }
    }

    pub fn fw_ns(&self) -> String {
        self.topo.forwarder_ns.clone()
    }

    /// Runs `pl ARGS` to completion inside namespace `ns`.
    pub fn pl(&self, ns: &str, args: &[&str]) -> Output {
        netns::exec(ns, pl_bin())
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("running pl {args:?} in {ns}: {e}"))
    }

    pub fn xdp_attached(&self, iface: &str) -> bool {
        self.lab
            .xdp_attached(iface)
            .unwrap_or_else(|e| panic!("reading {iface}: {e:#}"))
    }
}

impl Drop for TestLab {
    fn drop(&mut self) {
        if let Err(e) = self.lab.down() {
            eprintln!("lab down {}: {e:#}", self.lab.prefix());
        }
    }
}

/// Runs a command to completion, for tools outside pl.
pub fn output(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"))
}

/// Stderr as text, trimmed.
pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).trim().to_owned()
}
