//! What `pl bench` measured: samples per variant, real-TCP runs, and the JSON they are kept as.

use serde::{Deserialize, Serialize};

/// Variant names, as the JSON and the tables carry them.
pub const BARE: &str = "bare redirect";
pub const BARE_UNVERIFIED: &str = "bare redirect, sink not verifying checksums";
pub const PL_EST: &str = "pl established";
pub const PL_ZIPF: &str = "pl established, Zipf s=1";
pub const PL_NEW: &str = "pl new flows";
pub const PL_NEW_SYNC: &str = "pl new flows, flow sync on";
/// The IPv6 twin service: IPv6 frames (20 bytes longer) through the IPv6 flow table.
pub const PL6_EST: &str = "pl IPv6 established";
pub const PL6_NEW: &str = "pl IPv6 new flows";
/// Established (1000 flows) with one frame in `DnsFloodResult::every` a DNS query.
pub const PL_EST_DNS: &str = "pl established, DNS flood";
pub const NFT: &str = "nftables DNAT+SNAT";

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Sample {
    pub sent: u64,
    /// Frames the sink accepted: addresses, ports and checksums as the flow says.
    pub received: u64,
    pub seconds: f64,
    /// Frames that reached the sink with the wrong addresses or ports (not in `received`).
    #[serde(default)]
    pub wrong_header: u64,
    /// Frames that reached the sink with a bad IPv4 or L4 checksum (not in `received`).
    #[serde(default)]
    pub bad_checksum: u64,
    /// Hardware counters on the generator's CPU over the window (`perf stat`), if any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hw: Vec<HwCount>,
}

/// One `perf stat` event's count over a measurement window.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HwCount {
    pub event: String,
    pub count: f64,
}

impl Sample {
    /// Frames that reached the sink but not as the flow says.
    pub fn wrong(&self) -> u64 {
        self.wrong_header + self.bad_checksum
    }

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
    /// The CPU model of the machine that ran it (empty in older results).
    #[serde(default)]
    pub cpu_model: String,
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
    /// The floor: ns per dependent load over buffers the size of each flow table.
    #[serde(default)]
    pub floor: Vec<FloorResult>,
    /// Hardware counters on the forwarder CPU (`perf stat`), or why there are none.
    #[serde(default)]
    pub hw_counters: String,
    /// Flow-table designs, one lookup each, side by side.
    #[serde(default)]
    pub tables: Vec<TableResult>,
    /// The data path timed stage by stage (BPF_PROG_TEST_RUN, one frame a run).
    #[serde(default)]
    pub stages: Vec<StageResult>,
    /// Each synced new-flow run: flows opened and flows flow sync sent.
    #[serde(default)]
    pub sync: Vec<SyncResult>,
    /// Each DNS flood window: frames sent and queries the server took.
    #[serde(default)]
    pub dns: Vec<DnsFloodResult>,
}

/// One window of the DNS flood variant: frames sent (data and queries), and the queries
/// pl's DNS server took off its socket.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
pub struct DnsFloodResult {
    pub every: u32,
    pub sent: u64,
    pub seconds: f64,
    pub queries: u64,
}

/// One new-flow window with flow sync on: what it opened, what sync sent of it.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
pub struct SyncResult {
    pub created: u64,
    pub sent: u64,
    /// From the window's end until sync had sent as many flows as were opened.
    #[serde(default)]
    pub catch_up_ms: u64,
}

/// One stage of one path: the median time of a run that stops after it, and what that
/// adds to the stage before.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StageResult {
    pub path: String,
    pub stage: String,
    pub ns: f64,
    pub added: f64,
}

/// One flow-table design's lookup cost (`pl_table`, no frames).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TableResult {
    pub design: String,
    pub flows: u32,
    pub zipf: bool,
    /// Over the run's own cost (sequence and key), median of the repeats.
    pub ns_per_lookup: f64,
    /// The table's kernel memory, sized for both entries of `flows` flows.
    pub bytes: u64,
    /// Entries that found no room within the probe bound (slot tables).
    #[serde(default)]
    pub refused: u32,
}

/// A random cyclic pointer chase over `bytes`: what one dependent load costs there.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FloorResult {
    /// The established-flow count whose flow table is this big (its kernel memory), or 0
    /// for the buffer that fits L2.
    pub flows: u32,
    pub bytes: u64,
    pub ns_per_load: f64,
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
    /// Results with nothing measured yet, for this machine.
    pub fn new(quick: bool, cpus: usize) -> Self {
        Self {
            quick,
            cpus,
            cpu_model: super::report::cpu_model(),
            frame_len: super::FRAME_LEN,
            kernel: nix::sys::utsname::uname()
                .map(|u| u.release().to_string_lossy().into_owned())
                .unwrap_or_default(),
            variants: Vec::new(),
            flow_table_bytes: 0,
            flow_table_flows: 0,
            stats_walk_ms: 0.0,
            stats_walk_flows: 0,
            tcp: Vec::new(),
            floor: Vec::new(),
            hw_counters: String::new(),
            tables: Vec::new(),
            stages: Vec::new(),
            sync: Vec::new(),
            dns: Vec::new(),
        }
    }

    pub fn variant(&self, name: &str, flows: &str) -> Option<&VariantResult> {
        self.variants
            .iter()
            .find(|v| v.name == name && v.flows == flows)
    }

    /// The floor measured over the flow table of `flows` established flows.
    pub fn floor_at(&self, flows: u32) -> Option<&FloorResult> {
        self.floor.iter().find(|f| f.flows == flows)
    }
}

/// Collects samples by variant, in the order variants were first measured.
#[derive(Default)]
pub(super) struct Variants(pub(super) Vec<VariantResult>);

impl Variants {
    pub(super) fn push(&mut self, name: &str, flows: &str, s: Sample) {
        if let Some(v) = self
            .0
            .iter_mut()
            .find(|v| v.name == name && v.flows == flows)
        {
            v.samples.push(s);
        } else {
            self.0.push(VariantResult {
                name: name.to_owned(),
                flows: flows.to_owned(),
                samples: vec![s],
            });
        }
    }
}
