//! `pl bench`: packet rates through pl against the bare-redirect limit, on the lab, with
//! frames from an XDP live-frame generator (this kernel has no pktgen) and a sink that
//! counts what reaches the provider. Variants run interleaved and repeated, so noise
//! shows as spread.
//!
//! The generator (`pl_gen`) runs under BPF_PROG_TEST_RUN with live frames on globex's
//! `eth0`, pinned to the last CPU, in one long call per measurement that a signal ends.
//! Live mode turns its XDP_TX into a redirect out of `eth0`, so every frame reaches
//! `fw-globex`, where the variant under test runs. The sink (`pl_sink`) on the provider's
//! `eth0` counts and drops. The rate is what the sink received over the window.

use std::{
    net::Ipv4Addr,
    path::Path,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail, ensure};
use aya::{
    Ebpf,
    maps::{Array, MapData, PerCpuArray, xdp::DevMap},
    programs::{TestRun as _, TestRunAttrs, TestRunOptions, Xdp, XdpMode},
};
use pl_common::{
    bench::{
        BARE_EGRESS_MAP, BARE_PROGRAM, GEN_CONFIG_MAP, GEN_COUNT_MAP, GEN_HEADER, GEN_PROGRAM,
        GenConfig, SINK_COUNT_MAP, SINK_PROGRAM,
    },
    stats::EndpointCounter,
};
use serde::{Deserialize, Serialize};

use crate::{
    control,
    frame::{Ipv4, TCP_SYN, ipv4_frame, parse_mac},
    lab::{Lab, Teardown, Topology, cmd, netns, runner::PlRun},
};

/// Frame size on the wire (no FCS), as pktgen-style benchmarks quote.
pub const FRAME_LEN: usize = 64;
const ENDPOINT: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 100);
/// Generator sources start here; flow i adds i / 60000 to it.
const SOURCE_BASE: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 0);
/// Targets behind the bench service: with 40, a million flows fill ~39% of each target's
/// SNAT ports, so 32 probes practically never all collide.
const TARGETS: u8 = 40;
const BATCH: u32 = 64;

#[derive(Clone, Debug)]
pub struct BenchOptions {
    pub prefix: String,
    pub quick: bool,
}

/// One measurement.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
pub struct Sample {
    pub sent: u64,
    pub received: u64,
    pub seconds: f64,
}

impl Sample {
    pub fn pps(&self) -> f64 {
        self.received as f64 / self.seconds
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct VariantResult {
    pub name: String,
    pub flows: String,
    pub samples: Vec<Sample>,
}

impl VariantResult {
    fn sorted_pps(&self) -> Vec<f64> {
        let mut v: Vec<f64> = self.samples.iter().map(Sample::pps).collect();
        v.sort_by(f64::total_cmp);
        v
    }

    pub fn median(&self) -> f64 {
        let v = self.sorted_pps();
        if v.is_empty() { 0.0 } else { v[v.len() / 2] }
    }

    pub fn min(&self) -> f64 {
        self.sorted_pps().first().copied().unwrap_or(0.0)
    }

    pub fn max(&self) -> f64 {
        self.sorted_pps().last().copied().unwrap_or(0.0)
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BenchResults {
    pub quick: bool,
    pub cpus: usize,
    pub frame_len: usize,
    pub kernel: String,
    pub variants: Vec<VariantResult>,
    /// Flow-table memory per flow: the flow map's kernel memory (fdinfo memlock) divided by
    /// the flows it holds.
    pub flow_table_bytes: u64,
    pub flow_table_flows: u64,
    /// `pl stats` with live-flow counts (a walk of the whole flow table) at the largest
    /// flow count: how long it took, and the flows it counted.
    #[serde(default)]
    pub stats_walk_ms: f64,
    #[serde(default)]
    pub stats_walk_flows: u64,
    /// iperf3 throughput, one TCP stream.
    #[serde(default)]
    pub tcp: Vec<TcpResult>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TcpResult {
    pub name: String,
    pub bits_per_second: f64,
    pub seconds: u32,
    /// Every link's MTU during the run.
    #[serde(default = "mtu_1500")]
    pub mtu: u32,
}

const fn mtu_1500() -> u32 {
    1500
}

impl BenchResults {
    pub fn variant(&self, name: &str, flows: &str) -> Option<&VariantResult> {
        self.variants
            .iter()
            .find(|v| v.name == name && v.flows == flows)
    }
}

/// The generator, sink and bare-redirect programs, loaded once.
struct Progs {
    ebpf: Ebpf,
    sink_link: Option<aya::programs::xdp::XdpLinkId>,
    bare_link: Option<aya::programs::xdp::XdpLinkId>,
}

fn prog<'a>(ebpf: &'a mut Ebpf, name: &str) -> anyhow::Result<&'a mut Xdp> {
    let p: &mut Xdp = ebpf
        .program_mut(name)
        .with_context(|| format!("bench object has no {name}"))?
        .try_into()?;
    Ok(p)
}

fn sum(ebpf: &Ebpf, map: &str, index: u32) -> anyhow::Result<u64> {
    let m: PerCpuArray<&MapData, u64> =
        PerCpuArray::try_from(ebpf.map(map).with_context(|| format!("no map {map}"))?)?;
    Ok(m.get(&index, 0)?.iter().sum())
}

extern "C" fn on_usr1(_: i32) {}

/// The bench's fixed setup: lab, programs, interface indexes.
struct Bench<'a> {
    topo: &'a Topology,
    pl: &'a Path,
    config: String,
    progs: Progs,
    gen_ifindex: u32,
    gen_ns: String,
    cpus: usize,
    run: Option<PlRun>,
    mode: Mode,
}

/// What forwards on the forwarder namespace.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Nothing,
    /// `pl run --config` (a fresh one for every measurement).
    Pl,
    /// `pl_bare` on fw-globex, redirecting to fw-prov.
    Bare,
    /// No XDP: the kernel forwards with nft DNAT + SNAT and conntrack.
    Nft,
    /// No XDP, no NAT: the kernel routes between the namespaces.
    Routing,
}

const NFT_RULES: &str = "table ip plbench {
  chain pre {
    type nat hook prerouting priority dstnat; policy accept;
    iifname \"fw-globex\" ip daddr 10.0.0.100 udp dport 53 dnat to 10.9.0.20:5353
    iifname \"fw-globex\" ip daddr 10.0.0.100 tcp dport 443 dnat to 10.9.0.20:8443
  }
  chain post {
    type nat hook postrouting priority srcnat; policy accept;
    oifname \"fw-prov\" snat to 10.9.0.250
  }
}
";

impl Bench<'_> {
    /// Sets the generator's template and flow count.
    fn generate(&mut self, tcp_syn: bool, flows: u32) -> anyhow::Result<()> {
        let net = self.topo.network("globex").context("no globex")?;
        let (dst, src) = (
            parse_mac(&net.fw_mac).context("fw MAC")?,
            parse_mac(&net.peer_mac).context("peer MAC")?,
        );
        let ip = Ipv4::new(SOURCE_BASE.octets(), ENDPOINT.octets());
        let mut f = if tcp_syn {
            ipv4_frame(
                dst,
                src,
                &ip.tcp(1024, 443, 1, 0, TCP_SYN, &[0; FRAME_LEN - 54]),
            )
        } else {
            let mut f = ipv4_frame(dst, src, &ip.udp(1024, 53, &[0; FRAME_LEN - 42]));
            f[40..42].fill(0); // UDP checksum 0: nothing to recompute per frame
            f
        };
        f.resize(GEN_HEADER, 0);
        let mut header = [0u8; GEN_HEADER];
        header.copy_from_slice(&f);
        let cfg = GenConfig {
            header,
            header_len: GEN_HEADER as u32,
            flows,
            cpus: 1,
            _pad: 0,
        };
        let mut m: Array<&mut MapData, GenConfig> = Array::try_from(
            self.progs
                .ebpf
                .map_mut(GEN_CONFIG_MAP)
                .context("no generator config map")?,
        )?;
        m.set(0, cfg, 0)?;
        Ok(())
    }

    /// Runs the generator for `window` and returns what it sent and the sink received.
    fn measure(&mut self, window: Duration) -> anyhow::Result<Sample> {
        let (sent0, recv0) = (
            sum(&self.progs.ebpf, GEN_COUNT_MAP, 0)?,
            sum(&self.progs.ebpf, SINK_COUNT_MAP, 0)?,
        );
        let frame = vec![0u8; FRAME_LEN];
        let ctx: Vec<u8> = [0, FRAME_LEN as u32, 0, self.gen_ifindex, 0, 0]
            .iter()
            .flat_map(|w: &u32| w.to_ne_bytes())
            .collect();
        let ns_file = std::fs::File::open(netns::path(&self.gen_ns))?;
        let gen_cpu = self.cpus.saturating_sub(1);
        let ebpf = &mut self.progs.ebpf;
        let start = Instant::now();
        let stop = std::sync::atomic::AtomicBool::new(false);
        let (tid_tx, tid_rx) = std::sync::mpsc::channel();
        let elapsed = std::thread::scope(|s| -> anyhow::Result<Duration> {
            let h = s.spawn(|| -> anyhow::Result<()> {
                let _ = tid_tx.send(nix::sys::pthread::pthread_self());
                let mut set = nix::sched::CpuSet::new();
                set.set(gen_cpu)?;
                nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set)?;
                nix::sched::setns(&ns_file, nix::sched::CloneFlags::CLONE_NEWNET)?;
                let p = prog(ebpf, GEN_PROGRAM)?;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    // One long call; SIGUSR1 ends it (EINTR), which is how it should end.
                    let _ = p.test_run(TestRunOptions {
                        data_in: Some(&frame),
                        ctx_in: Some(&ctx),
                        repeat: u32::MAX,
                        attrs: TestRunAttrs::new().xdp_live_frames(BATCH),
                        ..TestRunOptions::default()
                    });
                }
                Ok(())
            });
            std::thread::sleep(window);
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
            let elapsed = start.elapsed();
            let tid = tid_rx
                .recv()
                .map_err(|_| anyhow::anyhow!("generator thread ended before it started"))?;
            while !h.is_finished() {
                let _ = nix::sys::pthread::pthread_kill(tid, nix::sys::signal::Signal::SIGUSR1);
                std::thread::sleep(Duration::from_millis(5));
            }
            h.join()
                .map_err(|_| anyhow::anyhow!("generator thread panicked"))??;
            Ok(elapsed)
        })?;
        // Let frames in flight land before reading the sink.
        std::thread::sleep(Duration::from_millis(50));
        let (sent1, recv1) = (
            sum(&self.progs.ebpf, GEN_COUNT_MAP, 0)?,
            sum(&self.progs.ebpf, SINK_COUNT_MAP, 0)?,
        );
        Ok(Sample {
            sent: sent1 - sent0,
            received: recv1 - recv0,
            seconds: elapsed.as_secs_f64(),
        })
    }

    fn ip_in(&self, ns: &str, args: &[&str]) -> anyhow::Result<()> {
        let mut full = vec!["-n", ns];
        full.extend_from_slice(args);
        cmd::ip(full)?;
        Ok(())
    }

    /// Every lab link, both ends, at `mtu`.
    fn set_mtu(&self, mtu: u32) -> anyhow::Result<()> {
        let mtu = mtu.to_string();
        for n in &self.topo.networks {
            self.ip_in(
                &self.topo.forwarder_ns,
                &["link", "set", &n.fw_iface, "mtu", &mtu],
            )?;
            self.ip_in(&n.namespace, &["link", "set", &n.peer_iface, "mtu", &mtu])?;
        }
        Ok(())
    }

    fn exec_in(&self, ns: &str, program: &str, args: &[&str]) -> anyhow::Result<()> {
        cmd::run(netns::exec(ns, program).args(args))?;
        Ok(())
    }

    /// Leaves the current mode: stops pl, detaches the bare redirect, or removes the
    /// kernel's addresses, rules and routes.
    fn leave(&mut self) -> anyhow::Result<()> {
        let fw = self.topo.forwarder_ns.clone();
        match self.mode {
            Mode::Nothing => {}
            Mode::Pl => self.stop_pl()?,
            Mode::Bare => self.detach_bare()?,
            Mode::Nft | Mode::Routing => {
                if self.mode == Mode::Nft {
                    self.exec_in(&fw, "nft", &["delete", "table", "ip", "plbench"])?;
                } else {
                    let (glob, prov) = (self.ns_of("globex")?, self.ns_of("prov")?);
                    self.ip_in(&glob, &["route", "del", "10.9.0.0/24"])?;
                    self.ip_in(&prov, &["route", "del", "10.0.0.0/24"])?;
                }
                for dev in ["fw-globex", "fw-prov"] {
                    self.ip_in(&fw, &["addr", "flush", "dev", dev])?;
                }
                self.exec_in(&fw, "sysctl", &["-qw", "net.ipv4.ip_forward=0"])?;
            }
        }
        self.mode = Mode::Nothing;
        Ok(())
    }

    fn ns_of(&self, network: &str) -> anyhow::Result<String> {
        Ok(self
            .topo
            .network(network)
            .with_context(|| format!("no network {network}"))?
            .namespace
            .clone())
    }

    /// The kernel as the forwarder: addresses on its interfaces, forwarding on, and either
    /// nft NAT (`nat`) or plain routes in the consumer and provider.
    fn enter_kernel(&mut self, nat: bool) -> anyhow::Result<()> {
        self.leave()?;
        let fw = self.topo.forwarder_ns.clone();
        let (glob_addr, prov_addr) = if nat {
            ("10.0.0.100/24", "10.9.0.250/24")
        } else {
            ("10.0.0.1/24", "10.9.0.1/24")
        };
        self.ip_in(&fw, &["addr", "add", glob_addr, "dev", "fw-globex"])?;
        self.ip_in(&fw, &["addr", "add", prov_addr, "dev", "fw-prov"])?;
        // Generator sources (10.1.0.0/16) route back through fw-globex.
        self.ip_in(
            &fw,
            &["route", "replace", "10.1.0.0/16", "dev", "fw-globex"],
        )?;
        self.exec_in(
            &fw,
            "sysctl",
            &[
                "-qw",
                "net.ipv4.ip_forward=1",
                "net.ipv4.conf.all.rp_filter=0",
                "net.ipv4.conf.fw-globex.rp_filter=0",
            ],
        )?;
        // Without an XDP program, fw-globex takes the generator's redirected frames only with GRO.
        self.exec_in(&fw, "ethtool", &["-K", "fw-globex", "gro", "off"])?;
        self.exec_in(&fw, "ethtool", &["-K", "fw-globex", "gro", "on"])?;
        if nat {
            let rules = std::env::temp_dir().join(format!("{}nft.rules", self.topo.prefix));
            std::fs::write(&rules, NFT_RULES)
                .with_context(|| format!("writing {}", rules.display()))?;
            self.exec_in(&fw, "nft", &["-f", &rules.to_string_lossy()])?;
            self.mode = Mode::Nft;
        } else {
            let (glob, prov) = (self.ns_of("globex")?, self.ns_of("prov")?);
            self.ip_in(&glob, &["route", "add", "10.9.0.0/24", "via", "10.0.0.1"])?;
            self.ip_in(&prov, &["route", "add", "10.0.0.0/24", "via", "10.9.0.1"])?;
            self.mode = Mode::Routing;
        }
        Ok(())
    }

    fn stop_pl(&mut self) -> anyhow::Result<()> {
        if let Some(run) = self.run.take() {
            let out = run.stop_and_down()?;
            ensure!(
                out.status.success(),
                "pl run failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(())
    }

    /// A fresh `pl run` whose flow table holds `flows`, targets resolved.
    fn start_pl(&mut self, flows: u32) -> anyhow::Result<()> {
        self.leave()?;
        std::fs::write(&self.config, config(flows))
            .with_context(|| format!("writing {}", self.config))?;
        let run = PlRun::start(
            self.pl,
            &self.topo.forwarder_ns,
            control::DEFAULT_INSTANCE,
            &["--config", &self.config],
        )?;
        let r = run.wait_for_stats(Duration::from_secs(10), |r| {
            r.targets.iter().all(|t| t.mac.is_some())
        })?;
        let missing = r.targets.iter().filter(|t| t.mac.is_none()).count();
        ensure!(missing == 0, "{missing} bench targets never answered ARP");
        self.run = Some(run);
        self.mode = Mode::Pl;
        Ok(())
    }

    /// Creates `flows` established flows by running the generator until pl counted them.
    fn warm_up(&mut self, flows: u32) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            self.measure(Duration::from_millis(300))?;
            let stats = self.run.as_ref().context("pl is not running")?.counters()?;
            let made = stats
                .endpoints
                .first()
                .map_or(0, |e| e.get(EndpointCounter::NewFlows));
            // SNAT probes can miss a free port once in a few thousand flows at a million.
            if made * 1000 >= u64::from(flows) * 999 {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("only {made} of {flows} flows created in 60 s");
            }
        }
    }

    fn attach_bare(&mut self) -> anyhow::Result<()> {
        self.leave()?;
        let (fw, prov_if, glob_if) = (
            self.topo.forwarder_ns.clone(),
            ifindex(&self.topo.forwarder_ns, "fw-prov")?,
            ifindex(&self.topo.forwarder_ns, "fw-globex")?,
        );
        let ebpf = &mut self.progs.ebpf;
        // A devmap resolves the ifindex in the writer's namespace: write from the forwarder's.
        let link = netns::run_in(&fw, || -> anyhow::Result<_> {
            let mut egress: DevMap<&mut MapData> = DevMap::try_from(
                ebpf.map_mut(BARE_EGRESS_MAP)
                    .context("no bare egress map")?,
            )?;
            egress.set(0, prov_if, None, 0)?;
            Ok(prog(ebpf, BARE_PROGRAM)?.attach_to_if_index(glob_if, XdpMode::Driver)?)
        })??;
        self.progs.bare_link = Some(link);
        self.mode = Mode::Bare;
        Ok(())
    }

    fn detach_bare(&mut self) -> anyhow::Result<()> {
        if let Some(link) = self.progs.bare_link.take() {
            prog(&mut self.progs.ebpf, BARE_PROGRAM)?.detach(link)?;
        }
        Ok(())
    }
}

impl Bench<'_> {
    /// Attaches or detaches the sink on the provider's eth0 (real TCP needs the stack).
    fn sink(&mut self, on: bool) -> anyhow::Result<()> {
        let prov = self.ns_of("prov")?;
        if on && self.progs.sink_link.is_none() {
            let idx = ifindex(&prov, "eth0")?;
            let ebpf = &mut self.progs.ebpf;
            self.progs.sink_link = Some(netns::run_in(&prov, || {
                prog(ebpf, SINK_PROGRAM)?
                    .attach_to_if_index(idx, XdpMode::Driver)
                    .map_err(anyhow::Error::from)
            })??);
        } else if !on && let Some(link) = self.progs.sink_link.take() {
            prog(&mut self.progs.ebpf, SINK_PROGRAM)?.detach(link)?;
        }
        Ok(())
    }

    /// iperf3 from globex to `dst:port` for `seconds`: received bits per second.
    fn iperf(&self, dst: &str, port: u16, seconds: u32) -> anyhow::Result<f64> {
        let prov = self.ns_of("prov")?;
        let glob = self.ns_of("globex")?;
        let mut server = netns::exec(&prov, "iperf3")
            .args(["-s", "-1", "-p", "8443"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .context("starting iperf3 -s (is iperf3 installed? `cargo xtask setup`)")?;
        std::thread::sleep(Duration::from_millis(300));
        let out = netns::exec(&glob, "iperf3")
            .args([
                "-J",
                "-c",
                dst,
                "-p",
                &port.to_string(),
                "-t",
                &seconds.to_string(),
            ])
            .output();
        let _ = server.kill();
        let _ = server.wait();
        let out = out.context("running iperf3 -c")?;
        let v: serde_json::Value =
            serde_json::from_slice(&out.stdout).context("iperf3 -J output")?;
        if let Some(e) = v.get("error").and_then(serde_json::Value::as_str) {
            bail!("iperf3 to {dst}:{port}: {e}");
        }
        v.pointer("/end/sum_received/bits_per_second")
            .and_then(serde_json::Value::as_f64)
            .context("iperf3 reported no received rate")
    }
}

fn ifindex(ns: &str, dev: &str) -> anyhow::Result<u32> {
    let dev = dev.to_owned();
    Ok(netns::run_in(ns, move || {
        nix::net::if_::if_nametoindex(dev.as_str())
    })??)
}

/// The bench config: globex reaches one service with `TARGETS` targets in one zone, so
/// SNAT tuples (targets x ports) exceed two million.
fn config(flow_table_size: u32) -> String {
    let targets: Vec<String> = (0..TARGETS)
        .map(|i| format!("{{ ip = \"10.9.0.{}\", zone = \"z1\" }}", 20 + i))
        .collect();
    format!(
        r#"[[network]]
name = "globex"
interface = "fw-globex"

[[network]]
name = "prov"
interface = "fw-prov"

[[service]]
name = "bench"
network = "prov"
nlb_addresses = [{{ ip = "10.9.0.250", zone = "z1" }}]
allowed_principals = ["globex"]
accepted_endpoints = ["globex-bench"]
listeners = [{{ protocol = "udp", port = 53, target_port = 5353 }}, {{ protocol = "tcp", port = 443, target_port = 8443 }}]
# The sink answers nothing, and its counts must be the generator's frames only.
health_check = {{ enabled = false }}
targets = [{}]

[[endpoint]]
name = "globex-bench"
service = "bench"
network = "globex"
addresses = [{{ ip = "10.0.0.100", zone = "z1" }}]

[limits]
flow_table_size = {flow_table_size}
"#,
        targets.join(", ")
    )
}

/// Prints a progress line for a variant, overwritten as it runs.
fn progress(label: &str, done: usize, total: usize, last: Option<f64>) {
    use std::io::Write as _;
    let width = 20;
    let filled = done * width / total.max(1);
    let bar: String = "#".repeat(filled) + &"-".repeat(width - filled);
    let rate = last
        .map(|p| format!(" {:.2} Mpps", p / 1e6))
        .unwrap_or_default();
    print!("\r  [{bar}] {done}/{total} {label}{rate}        ");
    let _ = std::io::stdout().flush();
}

pub fn run(opts: &BenchOptions, pl: &Path) -> anyhow::Result<BenchResults> {
    let cpus = std::thread::available_parallelism().map_or(1, usize::from);
    let (repeats, window, scale): (usize, Duration, &[u32]) = if opts.quick {
        (2, Duration::from_millis(400), &[1_000, 65_536])
    } else {
        (5, Duration::from_secs(2), &[1_000, 65_536, 1_000_000])
    };
    let max_flows = scale.iter().copied().max().unwrap_or(1);
    // Established runs get a table sized for their flows, as an operator would size it; new-flow
    // windows create about rate x window flows, so theirs has room for that.
    let sized = |flows: u32| flows.saturating_mul(2).max(1024);
    let new_flow_table = 4_000_000;

    // SAFETY: the handler does nothing; SIGUSR1 only needs to interrupt the generator's syscall.
    unsafe {
        nix::sys::signal::sigaction(
            nix::sys::signal::Signal::SIGUSR1,
            &nix::sys::signal::SigAction::new(
                nix::sys::signal::SigHandler::Handler(on_usr1),
                nix::sys::signal::SaFlags::empty(),
                nix::sys::signal::SigSet::empty(),
            ),
        )?;
    }

    let lab = Lab::new(&opts.prefix)?;
    println!("==> lab {}", opts.prefix);
    let topo = lab.up()?;
    let _teardown = Teardown::new(lab.clone(), "bench");
    let prov = topo.network("prov").context("no prov")?.namespace.clone();
    for i in 0..TARGETS {
        cmd::ip([
            "-n",
            &prov,
            "addr",
            "add",
            &format!("10.9.0.{}/24", 20 + i),
            "dev",
            "eth0",
        ])?;
    }
    let config_path = lab.write_config(&config(sized(max_flows)))?;
    let mut progs = Progs {
        ebpf: Ebpf::load(crate::BENCH_OBJECT)?,
        sink_link: None,
        bare_link: None,
    };
    for name in [GEN_PROGRAM, SINK_PROGRAM, BARE_PROGRAM] {
        prog(&mut progs.ebpf, name)?.load()?;
    }
    let gen_ns = topo
        .network("globex")
        .context("no globex")?
        .namespace
        .clone();
    let mut b = Bench {
        topo: &topo,
        pl,
        config: config_path.to_string_lossy().into_owned(),
        progs,
        gen_ifindex: ifindex(&gen_ns, "eth0")?,
        gen_ns,
        cpus,
        run: None,
        mode: Mode::Nothing,
    };
    b.sink(true)?;

    // (name, flows label, setup + measure)
    let mut variants: Vec<VariantResult> = Vec::new();
    let mut push = |name: &str, flows: &str, s: Sample| {
        if let Some(v) = variants
            .iter_mut()
            .find(|v| v.name == name && v.flows == flows)
        {
            v.samples.push(s);
        } else {
            variants.push(VariantResult {
                name: name.to_owned(),
                flows: flows.to_owned(),
                samples: vec![s],
            });
        }
    };
    let per_round = 4 + scale.len();
    let total = repeats * per_round;
    let mut done = 0;
    let mut flow_table_bytes = 0;
    let mut flow_table_flows = 0;
    let (mut stats_walk_ms, mut stats_walk_flows) = (0.0, 0);
    println!(
        "==> {repeats} rounds of {per_round} measurements, {} ms each, {FRAME_LEN}-byte frames, generator on CPU {}",
        window.as_millis(),
        cpus.saturating_sub(1)
    );
    for _ in 0..repeats {
        progress("bare redirect", done, total, None);
        b.attach_bare()?;
        b.generate(false, 1)?;
        let s = b.measure(window)?;
        done += 1;
        progress("bare redirect", done, total, Some(s.pps()));
        push("bare redirect", "1", s);

        b.start_pl(sized(1))?;
        b.generate(false, 1)?;
        b.warm_up(1)?;
        let s = b.measure(window)?;
        done += 1;
        progress("pl established", done, total, Some(s.pps()));
        push("pl established", "1", s);

        for &n in scale {
            b.start_pl(sized(n))?;
            b.generate(false, n)?;
            b.warm_up(n)?;
            let s = b.measure(window)?;
            done += 1;
            progress(
                &format!("pl established, {n} flows"),
                done,
                total,
                Some(s.pps()),
            );
            push("pl established", &n.to_string(), s);
            if n == max_flows {
                flow_table_bytes = flow_map_memlock(&b.topo.forwarder_ns)?;
                flow_table_flows = u64::from(sized(n));
                let run = b.run.as_ref().context("pl is not running")?;
                let began = Instant::now();
                let report = run.stats()?;
                stats_walk_ms = began.elapsed().as_secs_f64() * 1e3;
                stats_walk_flows = report.endpoints.iter().map(|e| e.active_flows).sum();
            }
        }

        b.start_pl(new_flow_table)?;
        b.generate(true, 0)?;
        // Short: every frame takes a SNAT tuple, and there are ~2.6 M of them.
        let s = b.measure(window.min(Duration::from_millis(500)))?;
        done += 1;
        progress("pl new flows", done, total, Some(s.pps()));
        push("pl new flows", "new", s);

        b.enter_kernel(true)?;
        b.generate(false, 1)?;
        b.measure(Duration::from_millis(100))?; // conntrack entry and neighbour in place
        let s = b.measure(window)?;
        done += 1;
        progress("nftables", done, total, Some(s.pps()));
        push("nftables DNAT+SNAT", "1", s);
    }
    println!();

    // Real TCP: iperf3 through pl, through nft, and plain routing (sink off: TCP needs the
    // stack), with every link at 1500 and then at 9000: on veth any XDP program strips GSO
    // from its peer, so pl moves MTU-sized packets where nftables moves 64 KB ones.
    let seconds = if opts.quick { 1 } else { 5 };
    let mut tcp = Vec::new();
    b.sink(false)?;
    for mtu in [1500, 9000] {
        b.leave()?;
        b.set_mtu(mtu)?;
        for (name, dst, port) in [
            ("pl", "10.0.0.100", 443),
            ("nftables", "10.0.0.100", 443),
            ("routing", "10.9.0.20", 8443),
        ] {
            match name {
                "pl" => b.start_pl(sized(1))?,
                "nftables" => b.enter_kernel(true)?,
                _ => b.enter_kernel(false)?,
            }
            let bps = b
                .iperf(dst, port, seconds)
                .with_context(|| format!("iperf3 through {name} at MTU {mtu}"))?;
            println!(
                "  iperf3 through {name} at MTU {mtu}: {:.2} Gbit/s",
                bps / 1e9
            );
            tcp.push(TcpResult {
                name: name.to_owned(),
                bits_per_second: bps,
                seconds,
                mtu,
            });
        }
    }
    b.leave()?;
    b.set_mtu(1500)?;
    b.sink(true)?;
    b.leave()?;
    Ok(BenchResults {
        quick: opts.quick,
        cpus,
        frame_len: FRAME_LEN,
        kernel: nix::sys::utsname::uname()
            .map(|u| u.release().to_string_lossy().into_owned())
            .unwrap_or_default(),
        variants,
        flow_table_bytes,
        flow_table_flows,
        stats_walk_ms,
        stats_walk_flows,
        tcp,
    })
}

/// Kernel memory of the running pl's flow map: `memlock` in its fdinfo (via bpftool,
/// which finds it by name).
fn flow_map_memlock(_ns: &str) -> anyhow::Result<u64> {
    let out = cmd::run(
        std::process::Command::new("bpftool").args(["-j", "map", "show", "name", "PL_FLOWS"]),
    )?;
    let v: serde_json::Value = serde_json::from_str(&out).context("bpftool -j map show")?;
    let entry = if v.is_array() {
        v.get(0).cloned()
    } else {
        Some(v)
    };
    entry
        .and_then(|e| e.get("bytes_memlock").and_then(serde_json::Value::as_u64))
        .context("bpftool printed no bytes_memlock for PL_FLOWS")
}

/// The results as the table `pl bench` prints and BENCHMARKS.md holds.
pub fn table(r: &BenchResults) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "| variant | flows | median Mpps | min | max | sent | received | lost |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|---|");
    for v in &r.variants {
        let sent: u64 = v.samples.iter().map(|s| s.sent).sum();
        let recv: u64 = v.samples.iter().map(|s| s.received).sum();
        let lost = sent.saturating_sub(recv);
        let _ = writeln!(
            out,
            "| {} | {} | {:.2} | {:.2} | {:.2} | {sent} | {recv} | {:.1}% |",
            v.name,
            v.flows,
            v.median() / 1e6,
            v.min() / 1e6,
            v.max() / 1e6,
            if sent == 0 {
                0.0
            } else {
                lost as f64 * 100.0 / sent as f64
            }
        );
    }
    let ratio = |a: Option<&VariantResult>, b: Option<&VariantResult>| match (a, b) {
        (Some(a), Some(b)) if b.median() > 0.0 => format!("{:.2}x", a.median() / b.median()),
        _ => "n/a".to_owned(),
    };
    let est = r.variant("pl established", "1");
    let _ = writeln!(out);
    let _ = writeln!(out, "| ratio | value | target |");
    let _ = writeln!(out, "|---|---|---|");
    let (bare, nft, new) = (
        r.variant("bare redirect", "1"),
        r.variant("nftables DNAT+SNAT", "1"),
        r.variant("pl new flows", "new"),
    );
    for (label, a, b, target) in [
        ("pl established / bare redirect", est, bare, ">= 0.85x"),
        ("pl established / nftables", est, nft, ">= 5x"),
        ("pl new flows / bare redirect", new, bare, ""),
        ("pl new flows / nftables", new, nft, ""),
        ("pl new flows / pl established", new, est, ">= 0.5x"),
    ] {
        let _ = writeln!(out, "| {label} | {} | {target} |", ratio(a, b));
    }
    let scaled: Vec<&VariantResult> = r
        .variants
        .iter()
        .filter(|v| v.name == "pl established" && v.flows != "1")
        .collect();
    if let (Some(first), Some(last)) = (scaled.first(), scaled.last()) {
        let loss = 100.0 * (1.0 - last.median() / first.median().max(1.0));
        let _ = writeln!(
            out,
            "| per-packet rate lost from {} to {} flows | {loss:.1}% | < 15% |",
            first.flows, last.flows
        );
        for v in &scaled {
            let _ = writeln!(
                out,
                "| ns per packet at {} flows | {:.0} | |",
                v.flows,
                1e9 / v.median().max(1.0)
            );
        }
    }
    if r.flow_table_bytes > 0 {
        let _ = writeln!(
            out,
            "| flow-table memory per flow | {} B ({} B for a table of {} flows) | |",
            r.flow_table_bytes / r.flow_table_flows.max(1),
            r.flow_table_bytes,
            r.flow_table_flows
        );
    }
    if r.stats_walk_flows > 0 {
        let _ = writeln!(
            out,
            "| `pl stats` with live-flow counts at {} flows (walks the table) | {:.0} ms | |",
            r.stats_walk_flows, r.stats_walk_ms
        );
    }
    if !r.tcp.is_empty() {
        let _ = writeln!(out, "\n| real TCP, one iperf3 stream | MTU | Gbit/s |");
        let _ = writeln!(out, "|---|---|---|");
        for t in &r.tcp {
            let _ = writeln!(
                out,
                "| {} | {} | {:.2} |",
                t.name,
                t.mtu,
                t.bits_per_second / 1e9
            );
        }
        let at = |name: &str, mtu: u32| {
            r.tcp
                .iter()
                .find(|t| t.name == name && t.mtu == mtu)
                .map(|t| t.bits_per_second)
        };
        let _ = writeln!(out, "\n| real TCP ratio | value | target |");
        let _ = writeln!(out, "|---|---|---|");
        for (mtu, target) in [(1500, ""), (9000, ">= 1x")] {
            if let (Some(pl), Some(nft)) = (at("pl", mtu), at("nftables", mtu)) {
                let _ = writeln!(
                    out,
                    "| pl / nftables at MTU {mtu} | {:.2}x | {target} |",
                    pl / nft.max(1.0)
                );
            }
        }
    }
    let _ = writeln!(
        out,
        "\n{} CPUs (generator on CPU {}), kernel {}, {}-byte frames",
        r.cpus,
        r.cpus.saturating_sub(1),
        r.kernel,
        r.frame_len
    );
    out
}

/// Writes `BENCHMARKS.md` and `bench.svg` into `dir`: the table, the machine, the exact
/// command, and a bar chart of packets/s per variant and flow count.
pub fn write_report(r: &BenchResults, dir: &Path, command: &str) -> anyhow::Result<()> {
    use plotters::prelude::*;
    let svg = dir.join("bench.svg");
    {
        let bars: Vec<(String, f64)> = r
            .variants
            .iter()
            .map(|v| {
                let flows = match v.flows.as_str() {
                    "new" => "each frame a new flow".to_owned(),
                    "1" => "1 flow".to_owned(),
                    n => format!("{n} flows"),
                };
                (format!("{} ({flows})", v.name), v.median() / 1e6)
            })
            .collect();
        let n = bars.len() as u32;
        let top = bars.iter().map(|(_, m)| *m).fold(1.0, f64::max) * 1.2;
        let root = SVGBackend::new(&svg, (900, 60 + 44 * n)).into_drawing_area();
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(
                format!(
                    "Mpps through the forwarder, {}-byte frames (median of repeats)",
                    r.frame_len
                ),
                ("sans-serif", 18),
            )
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(260)
            .build_cartesian_2d(0.0..top, (0..n).into_segmented())?;
        let names = bars.clone();
        chart
            .configure_mesh()
            .disable_y_mesh()
            .x_desc("Mpps")
            .y_labels(bars.len())
            .y_label_formatter(&|v| match v {
                SegmentValue::CenterOf(i) | SegmentValue::Exact(i) => names
                    .get(*i as usize)
                    .map(|(l, _)| l.clone())
                    .unwrap_or_default(),
                SegmentValue::Last => String::new(),
            })
            .draw()?;
        chart.draw_series(
            Histogram::horizontal(&chart)
                .style_func(|i, _| {
                    let pl = matches!(i, SegmentValue::CenterOf(i) | SegmentValue::Exact(i) if bars[*i as usize].0.starts_with("pl"));
                    if pl { BLUE.mix(0.7).filled() } else { BLACK.mix(0.35).filled() }
                })
                .margin(8)
                .data(bars.iter().enumerate().map(|(i, (_, m))| (i as u32, *m))),
        )?;
        chart.draw_series(bars.iter().enumerate().map(|(i, (_, m))| {
            Text::new(
                format!("{m:.2}"),
                (*m + top * 0.01, SegmentValue::CenterOf(i as u32)),
                ("sans-serif", 13),
            )
        }))?;
        root.present()?;
    }
    let machine = format!(
        "{} CPUs ({}), kernel {}",
        r.cpus,
        std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|c| c
                .lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_owned()))
            .unwrap_or_default(),
        r.kernel
    );
    let md = format!(
        "# Benchmarks\n\nThe latest full run of `{command}` (`pl bench` without `--quick`) on {machine}. \
         Frames are generated by an XDP program under BPF_PROG_TEST_RUN with live frames (this kernel has no \
         pktgen) on the consumer's veth and counted by an XDP sink on the provider's; the rate is what reached \
         the sink. Variants ran interleaved, {} times each; median, min and max are over those repeats.\n\n\
         ![packets/s per variant](bench.svg)\n\n{}",
        r.variants.first().map_or(0, |v| v.samples.len()),
        table(r)
    );
    std::fs::write(dir.join("BENCHMARKS.md"), md)
        .with_context(|| format!("writing {}", dir.join("BENCHMARKS.md").display()))?;
    Ok(())
}
