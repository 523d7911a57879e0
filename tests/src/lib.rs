//! Harness for pl's kernel tests: the root/BPF gate, the `pl` binary, labs with unique
//! prefixes that always come down (also when a test panics), and `pl` as a subprocess.

pub mod bad_configs;
pub mod family;
pub mod fixture;
pub mod running;

use std::{
    io::Write as _,
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
    time::{Duration, Instant},
};

use pl_userspace::{
    lab::netns,
    lab::{Lab, Topology},
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

/// An error with its whole cause chain, for panic messages.
pub fn chain(e: impl Into<anyhow::Error>) -> String {
    format!("{:#}", e.into())
}

/// Removes labs of tag `tag` left by test processes that no longer exist (a run killed
/// before its drops ran), so they do not pile up on a machine that is kept.
fn sweep_stale(tag: &str) {
    let Ok(list) = pl_userspace::lab::cmd::ip(["netns", "list"]) else {
        return;
    };
    let mut stale = std::collections::BTreeSet::new();
    for ns in list.lines().filter_map(|l| l.split_whitespace().next()) {
        let Some(rest) = ns.strip_prefix(tag) else {
            continue;
        };
        let Some((pid, _)) = rest.split_once('-') else {
            continue;
        };
        if pid
            .parse::<u32>()
            .is_ok_and(|p| !Path::new(&format!("/proc/{p}")).exists())
        {
            stale.insert(format!("{tag}{pid}-"));
        }
    }
    for prefix in stale {
        if let Ok(lab) = Lab::new(&prefix) {
            let _ = lab.down();
        }
    }
}

impl TestLab {
    /// `tag`: a few characters naming the test (the prefix is `{tag}{pid}-`).
    pub fn up(tag: &str) -> Self {
        Self::up_with(tag, |lab| lab)
    }

    /// As [`TestLab::up`], the lab shaped by `shape` first (MTUs).
    pub fn up_with(tag: &str, shape: impl FnOnce(Lab) -> Lab) -> Self {
        sweep_stale(tag);
        let prefix = format!("{tag}{}-", std::process::id());
        let lab = Lab::new(&prefix).unwrap_or_else(|e| panic!("lab prefix {prefix}: {}", chain(e)));
        let lab = shape(lab);
        let topo = lab
            .up()
            .unwrap_or_else(|e| panic!("lab up {prefix}: {}", chain(e)));
        Self { lab, topo }
    }

    pub fn fw_ns(&self) -> String {
        self.topo.forwarder_ns.clone()
    }

    /// The MAC of forwarder interface `iface` (`fw-acme`, ...).
    pub fn fw_mac(&self, iface: &str) -> pl_userspace::frame::Mac {
        let n = self
            .topo
            .networks
            .iter()
            .find(|n| n.fw_iface == iface)
            .unwrap_or_else(|| panic!("no lab interface {iface}"));
        pl_userspace::frame::parse_mac(&n.fw_mac)
            .unwrap_or_else(|| panic!("{iface}: bad MAC {}", n.fw_mac))
    }

    /// The MACs of the three forwarder interfaces, in [`wire::IFACES`] order.
    pub fn fw_macs(&self) -> [pl_userspace::frame::Mac; 3] {
        wire::IFACES.map(|i| self.fw_mac(i))
    }

    /// Runs `pl ARGS` inside namespace `ns`; fails the test if it runs past `PL_DEADLINE`
    /// (a `pl run` expected to refuse would otherwise serve forever).
    pub fn pl(&self, ns: &str, args: &[&str]) -> Output {
        output(netns::exec(ns, pl_bin()).args(args))
    }

    /// `pl down --instance INSTANCE` in the forwarder namespace, which must succeed.
    pub fn pl_down(&self, instance: &str) -> String {
        let out = self.pl(&self.fw_ns(), &["down", "--instance", instance]);
        assert!(
            out.status.success(),
            "pl down --instance {instance} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn xdp_attached(&self, iface: &str) -> bool {
        self.lab
            .xdp_attached(iface)
            .unwrap_or_else(|e| panic!("reading {iface}: {}", chain(e)))
    }
}

impl Drop for TestLab {
    fn drop(&mut self) {
        if let Err(e) = self.lab.down() {
            eprintln!("lab down {}: {}", self.lab.prefix(), chain(e));
        }
    }
}

/// How long a command run by [`output`] may take.
pub const PL_DEADLINE: Duration = Duration::from_secs(60);

/// Runs a command to completion within [`PL_DEADLINE`]; kills it and fails the test past
/// that.
pub fn output(cmd: &mut Command) -> Output {
    output_within(cmd, PL_DEADLINE)
}

/// As [`output`], for a command allowed `limit` (the quick bench: its windows add up to
/// most of a minute on a slow machine).
pub fn output_within(cmd: &mut Command, limit: Duration) -> Output {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    let deadline = Instant::now() + limit;
    while child
        .try_wait()
        .unwrap_or_else(|e| panic!("waiting for {cmd:?}: {e}"))
        .is_none()
    {
        if Instant::now() >= deadline {
            let _ = child.kill();
            let out = child.wait_with_output().ok();
            let stderr = out
                .map(|o| String::from_utf8_lossy(&o.stderr).into_owned())
                .unwrap_or_default();
            panic!("{cmd:?} still running after {limit:?}; killed. stderr:\n{stderr}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child
        .wait_with_output()
        .unwrap_or_else(|e| panic!("collecting output of {cmd:?}: {e}"))
}

/// Bytes of a long test frame kept in its linear part; the rest goes to fragments.
pub const JUMBO_LINEAR: u32 = 1024;

/// Runs one frame through the loaded XDP program with BPF_PROG_TEST_RUN, arriving on
/// `ifindex` (a device in the calling thread's namespace): the action and the output frame.
pub fn xdp_test_run(ebpf: &mut aya::Ebpf, ifindex: u32, input: &[u8]) -> (u32, Vec<u8>) {
    use aya::programs::{TestRun as _, TestRunOptions, Xdp};
    // struct xdp_md: data, data_end, data_meta, ingress_ifindex, rx_queue_index, egress_ifindex.
    let len = u32::try_from(input.len()).expect("frame fits u32");
    // A frame over a page goes multi-buffer, as a jumbo frame off a frags-capable driver:
    // data_end below the frame's size makes the kernel put the rest into fragments.
    let linear = if len > JUMBO_LINEAR {
        JUMBO_LINEAR
    } else {
        len
    };
    let ctx: Vec<u8> = [0, linear, 0, ifindex, 0, 0]
        .iter()
        .flat_map(|w: &u32| w.to_ne_bytes())
        .collect();
    let mut out = vec![0u8; 16384];
    let name = pl_common::maps::PROGRAM_NAME;
    let prog: &mut Xdp = ebpf
        .program_mut(name)
        .unwrap_or_else(|| panic!("object has no program {name}"))
        .try_into()
        .unwrap_or_else(|e| panic!("{name} is not XDP: {e}"));
    let res = prog
        .test_run(TestRunOptions {
            data_in: Some(input),
            data_out: Some(&mut out),
            ctx_in: Some(&ctx),
            ..TestRunOptions::default()
        })
        .unwrap_or_else(|e| panic!("BPF_PROG_TEST_RUN: {e}"));
    out.truncate(res.data_size_out as usize);
    (res.return_value, out)
}

/// Compares a fixture's action and output frame with what it expects, adding a line per
/// difference to `failures`.
pub fn check_frame(desc: &str, got: (u32, &[u8]), want: (u32, &[u8]), failures: &mut Vec<String>) {
    if got.0 != want.0 {
        failures.push(format!("{desc}: action {}, expected {}", got.0, want.0));
    }
    if got.1 != want.1 {
        failures.push(format!(
            "{desc}: output frame differs\n  got      {:02x?}\n  expected {:02x?}",
            got.1, want.1
        ));
    }
}

/// Replaces table `table` in namespace `ns` with one input-hook rule (nft syntax), such as
/// `ip daddr 10.9.0.11 tcp dport 8443 tcp flags syn reject with tcp reset`.
pub fn nft_input_rule(ns: &str, table: &str, rule: &str) {
    let rules = std::env::temp_dir().join(format!("{ns}-{table}.nft"));
    std::fs::write(
        &rules,
        format!("table ip {table} {{\n chain input {{\n  type filter hook input priority 0;\n  {rule}\n }}\n}}\n"),
    )
    .expect("write nft rules");
    let out = output(netns::exec(ns, "nft").arg("-f").arg(&rules));
    let _ = std::fs::remove_file(&rules);
    assert!(
        out.status.success(),
        "nft -f ({rule}) in {ns}: {}",
        stderr(&out)
    );
}

/// Removes table `table` from namespace `ns`.
pub fn nft_delete_table(ns: &str, table: &str) {
    let out = output(netns::exec(ns, "nft").args(["delete", "table", "ip", table]));
    assert!(
        out.status.success(),
        "nft delete table {table} in {ns}: {}",
        stderr(&out)
    );
}

/// A small, fast, seedable generator (xorshift*) for fuzzing and churn: replayable from
/// its seed.
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    pub fn pick<T: Copy>(&mut self, from: &[T]) -> T {
        from[self.below(from.len())]
    }
}

/// `PL_<NAME>_SEED` if set, else a seed from the clock (odd, never zero).
pub fn seed(name: &str) -> u64 {
    std::env::var(format!("PL_{name}_SEED"))
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
                | 1
        })
}

/// The real program, loaded with a flow table of `flow_entries` and programmed from
/// `config` with `neigh` as the learned MACs, as `pl run` would. Call it inside a lab's
/// forwarder namespace (the config's interfaces must exist there).
pub fn programmed(
    config: &str,
    flow_entries: u32,
    neigh: &pl_userspace::plan::Neighbors,
) -> (aya::Ebpf, pl_userspace::model::Model) {
    use pl_userspace::{
        config::Source,
        dataplane,
        model::{LiveInterfaces, Model},
        plan::Plan,
    };
    let src = Source::from_text("test.toml", config.to_owned());
    let model = Model::from_source(&src, &LiveInterfaces).unwrap_or_else(|e| panic!("{e}"));
    let mut ebpf =
        dataplane::load_sized(Some(flow_entries)).unwrap_or_else(|e| panic!("{}", chain(e)));
    pl_userspace::apply::apply(
        &mut ebpf,
        &Plan::build(&model, neigh, &Default::default()),
        None,
    )
    .unwrap_or_else(|e| panic!("{}", chain(e)));
    (ebpf, model)
}

/// Stderr as text, trimmed.
pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).trim().to_owned()
}

/// Addresses of the lab config as on the wire, for frame-level tests.
pub mod wire {
    pub const CLIENT: [u8; 4] = [10, 0, 0, 10];
    /// In the consumer networks, outside acme-billing's allowed sources.
    pub const OUTSIDER: [u8; 4] = [10, 0, 0, 200];
    /// Endpoint addresses (zones z1, z2) in both consumer networks.
    pub const EP1: [u8; 4] = [10, 0, 0, 100];
    pub const EP2: [u8; 4] = [10, 0, 0, 101];
    /// NLB addresses (z1, z2) and targets on the provider network.
    pub const NLB1: [u8; 4] = [10, 9, 0, 250];
    pub const NLB2: [u8; 4] = [10, 9, 0, 251];
    pub const T1: [u8; 4] = [10, 9, 0, 11];
    pub const T2: [u8; 4] = [10, 9, 0, 12];
    pub const IFACES: [&str; 3] = ["fw-acme", "fw-globex", "fw-prov"];
}
