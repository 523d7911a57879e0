//! The program's maps. Names must match `pl_common::maps` (the fixture tests load them by
//! those constants); sizes come from there too.

use aya_ebpf::{
    bindings::BPF_F_NO_PREALLOC,
    macros::map,
    maps::{Array, DevMap, HashMap, LpmTrie, PerCpuArray, RingBuf},
};
use pl_common::{
    endpoint::{AddrInfo, AddrKey, SourceKey},
    flow::{FlowKey, FlowValue, NewFlow},
    iface::IfaceConfig,
    maps::{
        DEFAULT_FLOW_ENTRIES, EVENTS_BYTES, MAGLEV_ENTRIES, MAX_ADDRS, MAX_ENDPOINTS, MAX_IFACES,
        MAX_IFINDEX, MAX_NEIGH, MAX_NETWORKS, MAX_POLICIES, MAX_SOURCES, MAX_TARGETS,
    },
    policy::{Policy, PolicyKey},
    service::TargetInfo,
    settings::Settings,
    stats::{EndpointStats, IfaceStats},
};

#[map]
pub static PL_IFACES: Array<IfaceConfig> = Array::with_max_entries(MAX_IFINDEX, 0);

#[map]
pub static PL_IFACE_STATS: PerCpuArray<IfaceStats> = PerCpuArray::with_max_entries(MAX_IFACES, 0);

#[map]
pub static PL_ADDRS: HashMap<AddrKey, AddrInfo> = HashMap::with_max_entries(MAX_ADDRS, 0);

#[map]
pub static PL_POLICY: HashMap<PolicyKey, Policy> = HashMap::with_max_entries(MAX_POLICIES, 0);

#[map]
pub static PL_SOURCES: LpmTrie<SourceKey, u8> =
    LpmTrie::with_max_entries(MAX_SOURCES, BPF_F_NO_PREALLOC);

#[map]
pub static PL_TARGETS: Array<TargetInfo> = Array::with_max_entries(MAX_TARGETS, 0);

#[map]
pub static PL_MAGLEV: Array<u32> = Array::with_max_entries(MAGLEV_ENTRIES, 0);

#[map]
pub static PL_FLOWS: HashMap<FlowKey, FlowValue> =
    HashMap::with_max_entries(DEFAULT_FLOW_ENTRIES, 0);

#[map]
pub static PL_EGRESS: DevMap = DevMap::with_max_entries(MAX_NETWORKS, 0);

#[map]
pub static PL_NET_MTU: Array<u32> = Array::with_max_entries(MAX_NETWORKS, 0);

#[map]
pub static PL_NEIGH: HashMap<AddrKey, [u8; 8]> = HashMap::with_max_entries(MAX_NEIGH, 0);

#[map]
pub static PL_ENDPOINT_STATS: PerCpuArray<EndpointStats> =
    PerCpuArray::with_max_entries(MAX_ENDPOINTS, 0);

#[map]
pub static PL_TARGET_STATS: PerCpuArray<u64> = PerCpuArray::with_max_entries(MAX_TARGETS, 0);

#[map]
pub static PL_SETTINGS: Array<Settings> = Array::with_max_entries(1, 0);

#[map]
pub static PL_SCRATCH: PerCpuArray<NewFlow> = PerCpuArray::with_max_entries(1, 0);

#[map]
pub static PL_EVENTS: RingBuf = RingBuf::with_byte_size(EVENTS_BYTES, 0);

#[map]
pub static PL_WATCH: Array<u32> = Array::with_max_entries(1, 0);

/// When this CPU last wrote a log line (ktime ns): logs are at most one a second per CPU.
#[map]
pub static PL_LOG_GATE: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

#[map]
pub static PL_PROBES: HashMap<FlowKey, u32> = HashMap::with_max_entries(MAX_TARGETS, 0);

/// Per-CPU scratch for building an ICMP message (the BPF stack has no room left).
#[map]
pub static PL_ICMP_SCRATCH: PerCpuArray<[u8; pl_common::icmp::TIME_EXCEEDED_LEN]> =
    PerCpuArray::with_max_entries(1, 0);
