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

mod counters;
mod driver;
mod floor;
mod frames;
mod plot;
mod report;
mod results;
mod stages;
mod sync;
mod table;
mod tcp;

use std::{
    net::{Ipv4Addr, Ipv6Addr},
    path::Path,
    time::{Duration, Instant},
};

use anyhow::Context as _;

use driver::Bench;
pub use report::{table, write_report};
use results::Variants;
pub use results::{
    BenchResults, DnsFloodResult, FloorResult, HwCount, Sample, StageResult, SyncResult,
    TableResult, TcpResult, VariantResult,
};

use crate::lab::{Lab, Teardown, Topology, cmd};

/// Frame size on the wire (no FCS), as pktgen-style benchmarks quote.
pub const FRAME_LEN: usize = 64;
const ENDPOINT: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 100);
/// Generator sources start here; flow i adds i / 60000 to it.
const SOURCE_BASE: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 0);
/// The consumer network's DNS address (`dns_addresses`), which the flood variant asks.
const DNS: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
/// The flood variant: one frame in this many is a DNS query.
const DNS_EVERY: u32 = 4;
/// The IPv6 rows' frames: the same L4 bytes behind an IPv6 header, 20 bytes longer.
pub const FRAME_LEN6: usize = pl_common::bench::GEN_FRAME6;
/// The IPv6 endpoint address (the bench6 service's) and the IPv6 generator sources,
/// which add i / 60000 to the last 32 bits.
const ENDPOINT6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0xa, 0, 0, 0, 0, 0, 0x100);
const SOURCE_BASE6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0xa, 0, 0, 0, 1, 0, 0);
/// Targets behind the bench service: with 40, a million flows fill ~39% of each target's
/// SNAT ports, so 32 probes practically never all collide.
const TARGETS: u8 = 40;
const BATCH: u32 = 64;

#[derive(Clone, Debug)]
pub struct BenchOptions {
    pub prefix: String,
    pub quick: bool,
    /// Only the flow-table designs: no lab, no frames.
    pub tables_only: bool,
    /// Only the data path stage by stage: the lab, no frames on the wire.
    pub stages_only: bool,
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

/// How long and how wide a run is: `--quick` for CI, the full run for BENCHMARKS.md.
struct Sizes {
    repeats: usize,
    window: Duration,
    /// Established-flow counts measured each round, uniform and skewed.
    scale: &'static [u32],
    /// Zipf samples per flow count that the generator walks.
    skew_len: usize,
    /// Lookups per timing in the flow-table comparison.
    table_runs: u32,
}

impl Sizes {
    fn new(quick: bool) -> Self {
        if quick {
            Self {
                repeats: 2,
                window: Duration::from_millis(400),
                scale: &[1_000, 65_536],
                skew_len: 1 << 18,
                table_runs: 1 << 19,
            }
        } else {
            Self {
                repeats: 5,
                window: Duration::from_secs(2),
                scale: &[1_000, 65_536, 1_000_000],
                skew_len: 1 << 20,
                table_runs: 1 << 22,
            }
        }
    }

    /// Measurements in a round: bare (sink verifying and only counting), pl with 1 flow,
    /// each scale uniform and skewed, established under a DNS flood, new flows (and with
    /// flow sync), IPv6 established and new flows, nftables established and new flows.
    fn per_round(&self) -> usize {
        10 + 2 * self.scale.len()
    }

    fn max_flows(&self) -> u32 {
        self.scale.iter().copied().max().unwrap_or(1)
    }
}

/// Established runs get a table sized for their flows, as an operator would size it.
fn sized(flows: u32) -> u32 {
    flows.saturating_mul(2).max(1024)
}

/// New-flow windows create about rate x window flows; their table has room for that.
const NEW_FLOW_TABLE: u32 = 4_000_000;

/// The IPv6 established row's flows: the count the IPv4 ratios compare at.
const IPV6_FLOWS: u32 = 1_000;

/// A config whose IPv6 table (a quarter of `flow_table_size`'s entries) is sized for
/// `flows` as `sized` sizes the IPv4 one.
fn sized6(flows: u32) -> u32 {
    sized(flows).saturating_mul(4)
}

/// The IPv6 table holds at most 131 072 flows whatever the config says: IPv6 new-flow
/// windows stay short enough to fill a fraction of it (about 33 000 flows at 0.33 Mpps),
/// so they measure opening flows, not a filling table or its refusals.
const IPV6_NEW_WINDOW: Duration = Duration::from_millis(100);

pub fn run(opts: &BenchOptions, pl: &Path) -> anyhow::Result<BenchResults> {
    let cpus = std::thread::available_parallelism().map_or(1, usize::from);
    let sizes = Sizes::new(opts.quick);
    if opts.tables_only {
        return Ok(BenchResults {
            tables: measure_tables(&sizes)?,
            ..BenchResults::new(opts.quick, cpus)
        });
    }
    driver::catch_usr1()?;

    let lab = Lab::new(&opts.prefix)?;
    println!("==> lab {}", opts.prefix);
    let topo = lab.up()?;
    let _teardown = Teardown::new(lab.clone(), "bench");
    add_targets(&topo)?;
    let config_path = lab.write_config(&frames::config(sized(sizes.max_flows())))?;
    let skew_total = sizes.skew_len * sizes.scale.len();
    let mut b = Bench::new(&topo, pl, &config_path, cpus, u32::try_from(skew_total)?)?;
    let tables: Vec<(u32, Vec<u32>)> = sizes
        .scale
        .iter()
        .map(|&n| (n, frames::zipf_table(n, sizes.skew_len, u64::from(n))))
        .collect();
    b.load_skew(&tables)?;
    let events = counters::events();
    let hw_counters = match counters::available(&events) {
        Ok(()) => {
            b.perf_events = Some(events.clone());
            format!("`perf stat -e {events}` on CPU {}", cpus.saturating_sub(1))
        }
        Err(why) => why,
    };
    b.sink(true)?;
    if opts.stages_only {
        let stages = measure_stages(&mut b, &sizes)?;
        b.leave()?;
        return Ok(BenchResults {
            stages,
            ..BenchResults::new(opts.quick, cpus)
        });
    }

    let mut rounds = Rounds::new(&sizes);
    println!(
        "==> {} rounds of {} measurements, {} ms each, {FRAME_LEN}-byte frames ({FRAME_LEN6} in IPv6), generator on CPU {}",
        sizes.repeats,
        sizes.per_round(),
        sizes.window.as_millis(),
        cpus.saturating_sub(1)
    );
    for _ in 0..sizes.repeats {
        rounds.round(&mut b)?;
    }
    println!();

    let tcp = tcp::real_tcp(&mut b, opts.quick)?;
    // As the tables below: `--quick --stages-only` runs these alone.
    let stages = if opts.quick {
        Vec::new()
    } else {
        measure_stages(&mut b, &sizes)?
    };
    b.leave()?;
    let floor = measure_floor(&rounds.table_bytes, cpus.saturating_sub(1))?;
    // The quick run stays a CI-sized smoke run; `--quick --tables-only` runs these alone.
    let tables = if opts.quick {
        Vec::new()
    } else {
        measure_tables(&sizes)?
    };
    Ok(BenchResults {
        variants: rounds.variants.0,
        flow_table_bytes: rounds.flow_table_bytes,
        flow_table_flows: rounds.flow_table_flows,
        stats_walk_ms: rounds.stats_walk_ms,
        stats_walk_flows: rounds.stats_walk_flows,
        sync: rounds.sync,
        dns: rounds.dns,
        tcp,
        floor,
        hw_counters,
        tables,
        stages,
        ..BenchResults::new(opts.quick, cpus)
    })
}

fn measure_tables(sizes: &Sizes) -> anyhow::Result<Vec<TableResult>> {
    println!("==> flow-table designs, one lookup per run (BPF_PROG_TEST_RUN)");
    table::measure(
        sizes.scale,
        sizes.skew_len,
        sizes.table_runs,
        sizes.repeats.min(3),
    )
}

fn measure_stages(b: &mut Bench<'_>, sizes: &Sizes) -> anyhow::Result<Vec<StageResult>> {
    println!("==> the data path stage by stage (a copy that drops after each stage)");
    let new_window = sizes.window.min(Duration::from_millis(500));
    // 1k flows, as the ratios' established rows, and the largest count, uniform and Zipf
    // (quick: 1k only).
    let est: Vec<u32> = if sizes.max_flows() >= 1_000_000 {
        vec![1000, sizes.max_flows()]
    } else {
        vec![1000]
    };
    let zipf = (est.len() > 1).then(|| sizes.max_flows());
    let s = stages::measure(b, &est, zipf, sizes.window, new_window, sizes.repeats)?;
    print!("{}", report::stages(&s));
    Ok(s)
}

/// The floor over a buffer that fits L2 and over one the size of each flow table.
fn measure_floor(tables: &[(u32, u64)], cpu: usize) -> anyhow::Result<Vec<FloorResult>> {
    let mut out = Vec::new();
    for (flows, bytes) in std::iter::once((0, floor::l2_fit(cpu))).chain(tables.iter().copied()) {
        let ns = floor::ns_per_load(bytes, cpu)?;
        println!(
            "  dependent load over {:.1} MiB on CPU {cpu}: {ns:.1} ns",
            bytes as f64 / 1048576.0
        );
        out.push(FloorResult {
            flows,
            bytes,
            ns_per_load: ns,
        });
    }
    Ok(out)
}

/// The provider's `TARGETS` addresses, one per bench target, in each family (pl
/// resolves them by ARP and neighbour solicitation, which the sink passes to the stack).
fn add_targets(topo: &Topology) -> anyhow::Result<()> {
    let prov = &topo.network("prov").context("no prov")?.namespace;
    for i in 0..TARGETS {
        let addr = format!("10.9.0.{}/24", 20 + i);
        cmd::ip(["-n", prov, "addr", "add", &addr, "dev", "eth0"])?;
    }
    for ip in frames::targets6() {
        let addr = format!("{ip}/64");
        cmd::ip(["-n", prov, "addr", "add", &addr, "dev", "eth0", "nodad"])?;
    }
    Ok(())
}

/// The interleaved packet-rate rounds: every variant once per round, so drift shows as
/// spread in each variant rather than as a gap between them.
struct Rounds<'s> {
    sizes: &'s Sizes,
    variants: Variants,
    done: usize,
    total: usize,
    /// The flow map's kernel memory at each established-flow count (first round).
    table_bytes: Vec<(u32, u64)>,
    flow_table_bytes: u64,
    flow_table_flows: u64,
    stats_walk_ms: f64,
    stats_walk_flows: u64,
    sync: Vec<SyncResult>,
    dns: Vec<DnsFloodResult>,
}

impl<'s> Rounds<'s> {
    fn new(sizes: &'s Sizes) -> Self {
        Self {
            sizes,
            variants: Variants::default(),
            done: 0,
            total: sizes.repeats * sizes.per_round(),
            table_bytes: Vec::new(),
            flow_table_bytes: 0,
            flow_table_flows: 0,
            stats_walk_ms: 0.0,
            stats_walk_flows: 0,
            sync: Vec::new(),
            dns: Vec::new(),
        }
    }

    /// Records one measurement and advances the progress line.
    fn record(&mut self, label: &str, name: &str, flows: &str, s: Sample) {
        self.done += 1;
        progress(label, self.done, self.total, Some(s.pps()));
        self.variants.push(name, flows, s);
    }

    fn round(&mut self, b: &mut Bench<'_>) -> anyhow::Result<()> {
        let window = self.sizes.window;
        progress("bare redirect", self.done, self.total, None);
        b.attach_bare(true)?;
        b.generate(false, 1)?;
        let s = b.measure(window)?;
        self.record("bare redirect", results::BARE, "1", s);
        b.attach_bare(false)?;
        let s = b.measure(window)?;
        self.record(
            "bare redirect, sink not verifying",
            results::BARE_UNVERIFIED,
            "1",
            s,
        );

        b.start_pl(sized(1))?;
        b.generate(false, 1)?;
        b.warm_up(1)?;
        let s = b.measure(window)?;
        self.record("pl established", results::PL_EST, "1", s);

        for &n in self.sizes.scale {
            self.established(b, n)?;
        }
        self.dns_flood(b)?;

        b.start_pl(NEW_FLOW_TABLE)?;
        b.generate(true, 0)?;
        // Short: every frame takes a SNAT tuple, and there are ~2.6 M of them.
        let s = b.measure(window.min(Duration::from_millis(500)))?;
        self.record("pl new flows", results::PL_NEW, "new", s);

        b.start_pl_with(NEW_FLOW_TABLE, true)?;
        b.generate(true, 0)?;
        let s = b.measure(window.min(Duration::from_millis(500)))?;
        self.record("pl new flows, flow sync on", results::PL_NEW_SYNC, "new", s);
        self.sync.push(b.sync_counts()?);

        // IPv6: the same service and frames' L4 bytes, through the IPv6 flow table.
        b.start_pl(sized6(IPV6_FLOWS))?;
        b.generate6(false, IPV6_FLOWS)?;
        b.warm_up(IPV6_FLOWS)?;
        let s = b.measure(window)?;
        let label = format!("pl IPv6 established, {IPV6_FLOWS} flows");
        self.record(&label, results::PL6_EST, &IPV6_FLOWS.to_string(), s);

        b.start_pl(NEW_FLOW_TABLE)?;
        b.generate6(true, 0)?;
        let s = b.measure(window.min(IPV6_NEW_WINDOW))?;
        self.record("pl IPv6 new flows", results::PL6_NEW, "new", s);

        b.enter_kernel(true)?;
        b.generate(false, 1)?;
        b.run_for(Duration::from_millis(100))?; // conntrack entry and neighbour in place
        let s = b.measure(window)?;
        self.record("nftables", results::NFT, "1", s);
        b.generate(true, 0)?;
        let s = b.measure(window.min(Duration::from_millis(500)))?;
        self.record("nftables new flows", results::NFT, "new", s);
        Ok(())
    }

    /// pl established at 1000 flows with one frame in [`DNS_EVERY`] a DNS query to the
    /// consumer network's DNS address: the same CPU forwards and takes the queries
    /// (XDP passes them, the stack delivers them to the server's socket).
    fn dns_flood(&mut self, b: &mut Bench<'_>) -> anyhow::Result<()> {
        b.start_pl(sized(IPV6_FLOWS))?;
        b.generate(false, IPV6_FLOWS)?;
        b.warm_up(IPV6_FLOWS)?;
        let before = b.dns_queries()?;
        b.generate_dns(IPV6_FLOWS, DNS_EVERY)?;
        let s = b.measure(self.sizes.window)?;
        let took = b.dns_queries()?.saturating_sub(before);
        self.dns.push(DnsFloodResult {
            every: DNS_EVERY,
            sent: s.sent,
            seconds: s.seconds,
            queries: took,
        });
        let label = format!("pl established, {IPV6_FLOWS} flows, 1 in {DNS_EVERY} frames DNS");
        self.record(&label, results::PL_EST_DNS, &IPV6_FLOWS.to_string(), s);
        Ok(())
    }

    /// pl with `n` established flows; at the largest count, also the flow table's memory
    /// and how long `pl stats` takes to walk it.
    fn established(&mut self, b: &mut Bench<'_>, n: u32) -> anyhow::Result<()> {
        b.start_pl(sized(n))?;
        b.generate(false, n)?;
        b.warm_up(n)?;
        let s = b.measure(self.sizes.window)?;
        let label = format!("pl established, {n} flows");
        self.record(&label, results::PL_EST, &n.to_string(), s);
        // The same table, the same flows, walked with Zipf: hot flows stay in the cache.
        b.generate_skewed(n)?;
        let s = b.measure(self.sizes.window)?;
        let label = format!("pl established, {n} flows, Zipf");
        self.record(&label, results::PL_ZIPF, &n.to_string(), s);
        if !self.table_bytes.iter().any(|(f, _)| *f == n) {
            self.table_bytes.push((n, driver::flow_map_memlock()?));
        }
        if n == self.sizes.max_flows() {
            self.flow_table_bytes = driver::flow_map_memlock()?;
            self.flow_table_flows = u64::from(sized(n));
            let run = b.run.as_ref().context("pl is not running")?;
            let began = Instant::now();
            let report = run.stats()?;
            self.stats_walk_ms = began.elapsed().as_secs_f64() * 1e3;
            self.stats_walk_flows = report.endpoints.iter().map(|e| e.active_flows).sum();
        }
        Ok(())
    }
}
