//! The bench's hands: the generator, sink and bare-redirect programs, and what forwards on
//! the forwarder (pl, bare redirect, nftables, routing), switched between measurements.

use std::{
    path::Path,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail, ensure};
use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, MapData, PerCpuArray, xdp::DevMap},
    programs::{TestRun as _, TestRunAttrs, TestRunOptions, Xdp, XdpMode},
};
use pl_common::{
    bench::{
        BARE_EGRESS_MAP, BARE_PROGRAM, GEN_CONFIG_MAP, GEN_COUNT_MAP, GEN_PROGRAM, GEN_SKEW_MAP,
        GenConfig, SINK_BAD_CHECKSUM, SINK_CONFIG_MAP, SINK_COUNT_MAP, SINK_OK, SINK_PROGRAM,
        SINK_WRONG_HEADER, SinkConfig,
    },
    stats::EndpointCounter,
};

use super::{
    BATCH, FRAME_LEN, FRAME_LEN6,
    counters::Perf,
    frames::{self, expect_rewritten, expect_rewritten6, expect_unchanged},
    results::Sample,
};
use crate::{
    control,
    frame::parse_mac,
    lab::{Topology, cmd, netns, runner::PlRun},
};

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

/// Lets SIGUSR1 interrupt the generator's one long syscall without ending the process.
pub(super) fn catch_usr1() -> anyhow::Result<()> {
    use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, sigaction};
    // SAFETY: the handler does nothing; SIGUSR1 only needs to interrupt the generator's syscall.
    unsafe {
        sigaction(
            Signal::SIGUSR1,
            &SigAction::new(
                SigHandler::Handler(on_usr1),
                SaFlags::empty(),
                SigSet::empty(),
            ),
        )?;
    }
    Ok(())
}

/// The bench's fixed setup: lab, programs, interface indexes.
pub(super) struct Bench<'a> {
    pub(super) topo: &'a Topology,
    pl: &'a Path,
    config: String,
    progs: Progs,
    gen_ifindex: u32,
    gen_ns: String,
    cpus: usize,
    pub(super) run: Option<PlRun>,
    mode: Mode,
    /// Where each flow count's skewed table sits in `GEN_SKEW`: (flows, base, len).
    skew: Vec<(u32, u32, u32)>,
    /// The `perf stat` events each measurement counts, where the machine has them.
    pub(super) perf_events: Option<String>,
    /// The silent cluster peer of the synced runs, once made.
    sync_peer: Option<super::sync::Peer>,
    /// The generator's frame length: `FRAME_LEN`, or `FRAME_LEN6` for IPv6 frames.
    frame_len: usize,
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

/// TCP (the new-flow frames) spreads over the 40 targets as pl does, so SNAT has as many
/// tuples as pl's.
const NFT_RULES: &str = "table ip plbench {
  chain pre {
    type nat hook prerouting priority dstnat; policy accept;
    iifname \"fw-globex\" ip daddr 10.0.0.100 udp dport 53 dnat to 10.9.0.20:5353
    iifname \"fw-globex\" ip daddr 10.0.0.100 tcp dport 443 dnat to 10.9.0.20-10.9.0.59:8443
  }
  chain post {
    type nat hook postrouting priority srcnat; policy accept;
    oifname \"fw-prov\" snat to 10.9.0.250
  }
}
";

impl<'a> Bench<'a> {
    /// Loads the generator, sink and bare-redirect programs, with room for `skew_total`
    /// skewed flow indices; nothing is attached yet.
    pub(super) fn new(
        topo: &'a Topology,
        pl: &'a Path,
        config: &Path,
        cpus: usize,
        skew_total: u32,
    ) -> anyhow::Result<Self> {
        let mut progs = Progs {
            ebpf: EbpfLoader::new()
                .map_max_entries(GEN_SKEW_MAP, skew_total.max(1))
                .load(crate::BENCH_OBJECT)?,
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
        Ok(Bench {
            topo,
            pl,
            config: config.to_string_lossy().into_owned(),
            progs,
            gen_ifindex: ifindex(&gen_ns, "eth0")?,
            gen_ns,
            cpus,
            run: None,
            mode: Mode::Nothing,
            skew: Vec::new(),
            perf_events: None,
            sync_peer: None,
            frame_len: FRAME_LEN,
        })
    }
}

impl Bench<'_> {
    /// Sets the generator's template and flow count (uniform: frame `n` is flow
    /// `n % flows`; 0: every frame a new flow).
    pub(super) fn generate(&mut self, tcp_syn: bool, flows: u32) -> anyhow::Result<()> {
        let cfg = self.gen_config(tcp_syn, flows, false)?;
        self.set_gen(cfg)
    }

    /// As [`Bench::generate`], in IPv6 to the IPv6 service's endpoint; the sink then
    /// expects pl's IPv6 rewrite (until the next `start_pl` or mode).
    pub(super) fn generate6(&mut self, tcp_syn: bool, flows: u32) -> anyhow::Result<()> {
        let cfg = self.gen_config(tcp_syn, flows, true)?;
        self.set_gen(cfg)?;
        self.expect(expect_rewritten6(true))
    }

    /// As [`Bench::generate`] (established UDP over `flows` flows), with one frame in
    /// `every` a DNS query to the consumer network's DNS address, at its DNS macvlan's
    /// MAC (the one `pl run` derives for this instance and network).
    pub(super) fn generate_dns(&mut self, flows: u32, every: u32) -> anyhow::Result<()> {
        let mut cfg = self.gen_config(false, flows, false)?;
        let net = self.topo.network("globex").context("no globex")?;
        let src = parse_mac(&net.peer_mac).context("peer MAC")?;
        let dst = crate::dns::netns::mac_for(control::DEFAULT_INSTANCE, None, "globex");
        cfg.dns_every = every;
        cfg.dns = frames::dns_query(dst, src);
        self.set_gen(cfg)
    }

    /// The queries `pl run`'s DNS server has taken so far, every network.
    pub(super) fn dns_queries(&self) -> anyhow::Result<u64> {
        let run = self.run.as_ref().context("pl is not running")?;
        Ok(run.stats()?.dns.iter().map(|d| d.queries).sum())
    }

    /// Established UDP over `flows` flows, walking the Zipf table loaded for that count.
    pub(super) fn generate_skewed(&mut self, flows: u32) -> anyhow::Result<()> {
        let &(_, base, len) = self
            .skew
            .iter()
            .find(|(n, ..)| *n == flows)
            .with_context(|| format!("no skewed table for {flows} flows"))?;
        let mut cfg = self.gen_config(false, flows, false)?;
        cfg.skew_base = base;
        cfg.skew_len = len;
        self.set_gen(cfg)
    }

    fn gen_config(&self, tcp_syn: bool, flows: u32, ipv6: bool) -> anyhow::Result<GenConfig> {
        let net = self.topo.network("globex").context("no globex")?;
        let (dst, src) = (
            parse_mac(&net.fw_mac).context("fw MAC")?,
            parse_mac(&net.peer_mac).context("peer MAC")?,
        );
        Ok(frames::gen_config(dst, src, tcp_syn, flows, ipv6))
    }

    fn set_gen(&mut self, cfg: GenConfig) -> anyhow::Result<()> {
        self.frame_len = if cfg.ipv6 != 0 { FRAME_LEN6 } else { FRAME_LEN };
        let mut m: Array<&mut MapData, GenConfig> = Array::try_from(
            self.progs
                .ebpf
                .map_mut(GEN_CONFIG_MAP)
                .context("no generator config map")?,
        )?;
        m.set(0, cfg, 0)?;
        Ok(())
    }

    /// Writes each flow count's skewed table into `GEN_SKEW`, one after the other.
    pub(super) fn load_skew(&mut self, tables: &[(u32, Vec<u32>)]) -> anyhow::Result<()> {
        let mut m: Array<&mut MapData, u32> = Array::try_from(
            self.progs
                .ebpf
                .map_mut(GEN_SKEW_MAP)
                .context("no skewed flow map")?,
        )?;
        let mut base = 0u32;
        for (flows, t) in tables {
            for (k, &i) in t.iter().enumerate() {
                m.set(base + k as u32, i, 0)
                    .with_context(|| format!("writing {GEN_SKEW_MAP}[{}]", base + k as u32))?;
            }
            let len = u32::try_from(t.len()).context("skewed table too long")?;
            self.skew.push((*flows, base, len));
            base += len;
        }
        Ok(())
    }

    /// What the sink accepts from now on.
    pub(super) fn expect(&mut self, cfg: SinkConfig) -> anyhow::Result<()> {
        let mut m: Array<&mut MapData, SinkConfig> = Array::try_from(
            self.progs
                .ebpf
                .map_mut(SINK_CONFIG_MAP)
                .context("no sink config map")?,
        )?;
        m.set(0, cfg, 0)?;
        Ok(())
    }

    /// Runs the generator for `window`, with `perf stat` on its CPU where it counts.
    pub(super) fn measure(&mut self, window: Duration) -> anyhow::Result<Sample> {
        let perf = match &self.perf_events {
            Some(events) => {
                let p = Perf::start(self.cpus.saturating_sub(1), events)?;
                std::thread::sleep(Duration::from_millis(20)); // perf's counters in place
                Some(p)
            }
            None => None,
        };
        let s = self.run_for(window);
        let hw = match perf {
            Some(p) => p.stop()?,
            None => Vec::new(),
        };
        Ok(Sample { hw, ..s? })
    }

    /// Runs the generator for `window` and returns what it sent and the sink received.
    pub(super) fn run_for(&mut self, window: Duration) -> anyhow::Result<Sample> {
        let before = self.counts()?;
        let frame = vec![0u8; self.frame_len];
        let ctx: Vec<u8> = [0, self.frame_len as u32, 0, self.gen_ifindex, 0, 0]
            .iter()
            .flat_map(|w: &u32| w.to_ne_bytes())
            .collect();
        let ns_file = std::fs::File::open(netns::path(&self.gen_ns))?;
        let gen_cpu = self.cpus.saturating_sub(1);
        let ebpf = &mut self.progs.ebpf;
        let stop = std::sync::atomic::AtomicBool::new(false);
        let (started_tx, started_rx) = std::sync::mpsc::channel();
        let elapsed = std::thread::scope(|s| -> anyhow::Result<Duration> {
            let h = s.spawn(|| -> anyhow::Result<()> {
                let mut set = nix::sched::CpuSet::new();
                set.set(gen_cpu)?;
                nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set)?;
                nix::sched::setns(&ns_file, nix::sched::CloneFlags::CLONE_NEWNET)?;
                let p = prog(ebpf, GEN_PROGRAM)?;
                // The window starts when frames do: on a busy machine this thread may
                // wait for its CPU, and a short window would count that wait as slowness.
                let _ = started_tx.send((nix::sys::pthread::pthread_self(), Instant::now()));
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
            let Ok((tid, start)) = started_rx.recv() else {
                return match h.join() {
                    Ok(Err(e)) => Err(e.context("the generator thread never started")),
                    _ => Err(anyhow::anyhow!("the generator thread never started")),
                };
            };
            std::thread::sleep(window);
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
            let elapsed = start.elapsed();
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
        let after = self.counts()?;
        Ok(Sample {
            sent: after[0] - before[0],
            received: after[1] - before[1],
            seconds: elapsed.as_secs_f64(),
            wrong_header: after[2] - before[2],
            bad_checksum: after[3] - before[3],
            hw: Vec::new(),
        })
    }

    /// Frames sent; frames the sink accepted, found with the wrong header, with a bad checksum.
    fn counts(&self) -> anyhow::Result<[u64; 4]> {
        let e = &self.progs.ebpf;
        Ok([
            sum(e, GEN_COUNT_MAP, 0)?,
            sum(e, SINK_COUNT_MAP, SINK_OK)?,
            sum(e, SINK_COUNT_MAP, SINK_WRONG_HEADER)?,
            sum(e, SINK_COUNT_MAP, SINK_BAD_CHECKSUM)?,
        ])
    }

    fn ip_in(&self, ns: &str, args: &[&str]) -> anyhow::Result<()> {
        let mut full = vec!["-n", ns];
        full.extend_from_slice(args);
        cmd::ip(full)?;
        Ok(())
    }

    /// Every lab link, both ends, at `mtu`.
    pub(super) fn set_mtu(&self, mtu: u32) -> anyhow::Result<()> {
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
    pub(super) fn leave(&mut self) -> anyhow::Result<()> {
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

    pub(super) fn ns_of(&self, network: &str) -> anyhow::Result<String> {
        Ok(self
            .topo
            .network(network)
            .with_context(|| format!("no network {network}"))?
            .namespace
            .clone())
    }

    /// The kernel as the forwarder: addresses on its interfaces, forwarding on, and either
    /// nft NAT (`nat`) or plain routes in the consumer and provider.
    pub(super) fn enter_kernel(&mut self, nat: bool) -> anyhow::Result<()> {
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
            // New-flow windows leave SYN_SENT entries behind: let them go within seconds
            // rather than fill conntrack for the next rounds.
            self.exec_in(
                &fw,
                "sysctl",
                &["-qw", "net.netfilter.nf_conntrack_tcp_timeout_syn_sent=2"],
            )?;
            self.expect(expect_rewritten(true))?;
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
    pub(super) fn start_pl(&mut self, flows: u32) -> anyhow::Result<()> {
        self.start_pl_with(flows, false)
    }

    /// As [`Bench::start_pl`]; `synced`: as node fw1 of a cluster, syncing every flow to
    /// a silent peer (it serves once keepalived makes it master: its targets then resolve).
    pub(super) fn start_pl_with(&mut self, flows: u32, synced: bool) -> anyhow::Result<()> {
        self.leave()?;
        let mut config = frames::config(flows);
        let mut args = vec!["--config", self.config.as_str()];
        if synced {
            if self.sync_peer.is_none() {
                let prefix = self.topo.prefix.clone();
                self.sync_peer = Some(super::sync::Peer::new(&prefix, &self.topo.forwarder_ns)?);
            }
            if let Some(peer) = &self.sync_peer {
                config.push_str(&peer.cluster());
            }
            args.extend(["--node", "fw1"]);
        }
        std::fs::write(&self.config, config).with_context(|| format!("writing {}", self.config))?;
        let run = PlRun::start(
            self.pl,
            &self.topo.forwarder_ns,
            control::DEFAULT_INSTANCE,
            &args,
        )?;
        let r = run.wait_for_stats(Duration::from_secs(10), |r| {
            r.targets.iter().all(|t| t.mac.is_some())
        })?;
        let missing = r.targets.iter().filter(|t| t.mac.is_none()).count();
        ensure!(
            missing == 0,
            "{missing} bench targets never answered ARP or neighbour solicitation"
        );
        self.run = Some(run);
        self.mode = Mode::Pl;
        self.expect(expect_rewritten(true))?;
        Ok(())
    }

    /// After a synced run's window: the flows it opened, those flow sync sent, and how
    /// long after the window sync took to send them all (up to 15 s).
    pub(super) fn sync_counts(&self) -> anyhow::Result<super::SyncResult> {
        let ended = Instant::now();
        let run = self.run.as_ref().context("pl is not running")?;
        let created = run
            .counters()?
            .endpoints
            .first()
            .map_or(0, |e| e.get(EndpointCounter::NewFlows));
        let sent = || -> anyhow::Result<u64> {
            let status = netns::run_in(&self.topo.forwarder_ns, || {
                control::status(control::DEFAULT_INSTANCE)
            })??;
            Ok(status.cluster.map_or(0, |c| c.sync.flows_sent))
        };
        let mut now = sent()?;
        while now < created && ended.elapsed() < Duration::from_secs(15) {
            std::thread::sleep(Duration::from_millis(100));
            now = sent()?;
        }
        Ok(super::SyncResult {
            created,
            sent: now,
            catch_up_ms: ended.elapsed().as_millis() as u64,
        })
    }

    /// Creates `flows` established flows by running the generator until pl counted them.
    pub(super) fn warm_up(&mut self, flows: u32) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            self.run_for(Duration::from_millis(300))?;
            let stats = self.run.as_ref().context("pl is not running")?.counters()?;
            // Whichever endpoint (IPv4 or IPv6) the generator sends to.
            let made: u64 = stats
                .endpoints
                .iter()
                .map(|e| e.get(EndpointCounter::NewFlows))
                .sum();
            // SNAT probes can miss a free port once in a few thousand flows at a million.
            if made * 1000 >= u64::from(flows) * 999 {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("only {made} of {flows} flows created in 60 s");
            }
        }
    }

    /// The bare redirect; the sink verifies checksums or (`verify` false) only counts
    /// frames with the right addresses, to show what verifying costs it.
    pub(super) fn attach_bare(&mut self, verify: bool) -> anyhow::Result<()> {
        self.leave()?;
        self.expect(expect_unchanged(verify))?;
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
    pub(super) fn sink(&mut self, on: bool) -> anyhow::Result<()> {
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
}

pub(super) fn ifindex(ns: &str, dev: &str) -> anyhow::Result<u32> {
    let dev = dev.to_owned();
    Ok(netns::run_in(ns, move || {
        nix::net::if_::if_nametoindex(dev.as_str())
    })??)
}

/// Kernel memory of the running pl's flow map: `memlock` in its fdinfo (via bpftool,
/// which finds it by name).
pub(super) fn flow_map_memlock() -> anyhow::Result<u64> {
    let out = cmd::run(
        std::process::Command::new("bpftool").args(["-j", "map", "show", "name", "PL_FLOWS"]),
    )?;
    let v: serde_json::Value = serde_json::from_str(&out).context("bpftool -j map show")?;
    // Other PL_FLOWS maps may live on this machine (another pl run, a kept pin): the
    // bench's pl run made its own last, so it has the highest id.
    let entries = v.as_array().cloned().unwrap_or_else(|| vec![v]);
    entries
        .iter()
        .max_by_key(|e| e.get("id").and_then(serde_json::Value::as_u64))
        .and_then(|e| e.get("bytes_memlock").and_then(serde_json::Value::as_u64))
        .context("bpftool printed no bytes_memlock for PL_FLOWS")
}
