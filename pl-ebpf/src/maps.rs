//! The program's maps. Names must match `pl_common::maps` (the fixture tests load them by
//! those constants); sizes come from there too.

use aya_ebpf::{
    bindings::{BPF_F_MMAPABLE, BPF_F_NO_PREALLOC},
    macros::map,
    maps::{Array, DevMap, HashMap, LpmTrie, PerCpuArray, ProgramArray, RingBuf},
};
use pl_common::{
    dns::DnsWindow,
    endpoint::{AddrInfo, AddrKey, AddrKey6, SourceKey, SourceKey6},
    flow::{FlowKey, NewFlow},
    flow6::{FlowKey6, NewFlow6, Slot6},
    flowtable::{Slot, Slots},
    iface::{IfaceConfig, NetInfo},
    maps::{
        DEFAULT_FLOW_ENTRIES, DEFAULT_FLOW6_ENTRIES, EVENTS_BYTES, MAGLEV_ENTRIES, MAX_ADDRS,
        MAX_ENDPOINTS, MAX_IFACES, MAX_IFINDEX, MAX_NEIGH, MAX_NETWORKS, MAX_POLICIES, MAX_SOURCES,
        MAX_TARGETS,
    },
    policy::{Policy, Policy6, PolicyKey, PolicyKey6},
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

/// Mmapable: userspace walks and sweeps it in place, and the kernel places it page
/// aligned, so every slot is one cache line. Sized at load (see `PL_FLOW_SLOTS`).
#[map]
pub static PL_FLOWS: Array<Slot> = Array::with_max_entries(
    pl_common::maps::flow_array_len(DEFAULT_FLOW_ENTRIES),
    BPF_F_MMAPABLE,
);

/// `PL_FLOWS`'s slot count, set by the loader (read-only data: the verifier knows it).
#[unsafe(no_mangle)]
static PL_FLOW_SLOTS: u32 = pl_common::maps::flow_slots(DEFAULT_FLOW_ENTRIES);

/// The flow table's hash seed, set by the loader.
#[unsafe(no_mangle)]
static PL_FLOW_SEED: u32 = 0;

/// The flow table, for `pl_common::flowtable`.
pub struct Flows;

impl Flows {
    /// `key`'s hash in the flow table (its seed, not the Maglev hash's).
    #[inline(always)]
    pub fn hash(key: &FlowKey) -> u32 {
        // SAFETY: a plain read of a global the loader sets.
        key.hash_with(unsafe { core::ptr::read_volatile(&raw const PL_FLOW_SEED) })
    }
}

impl Slots for Flows {
    type Slot = Slot;
    #[inline(always)]
    fn slots(&self) -> u32 {
        // SAFETY: a plain read of a global the loader sets.
        unsafe { core::ptr::read_volatile(&raw const PL_FLOW_SLOTS) }
    }

    #[inline(always)]
    fn slot(&self, i: u32) -> Option<*mut Slot> {
        PL_FLOWS.get_ptr_mut(i)
    }

    /// The element past the slots counts the entries; at most half the slots.
    #[inline(always)]
    fn bound(&self) -> Option<(*mut u64, u64)> {
        let n = self.slots();
        // SAFETY: a live map element; its first word is only ever changed atomically.
        PL_FLOWS
            .get_ptr_mut(n)
            .map(|c| (unsafe { &raw mut (*c).ctl }, u64::from(n / 2)))
    }
}

#[map]
pub static PL_EGRESS: DevMap = DevMap::with_max_entries(MAX_NETWORKS, 0);

#[map]
pub static PL_NET_INFO: Array<NetInfo> = Array::with_max_entries(MAX_NETWORKS, 0);

#[map]
pub static PL_NEIGH: HashMap<AddrKey, [u8; 8]> = HashMap::with_max_entries(MAX_NEIGH, 0);

#[map]
pub static PL_ENDPOINT_STATS: PerCpuArray<EndpointStats> =
    PerCpuArray::with_max_entries(MAX_ENDPOINTS, 0);

#[map]
pub static PL_TARGET_STATS: PerCpuArray<u64> = PerCpuArray::with_max_entries(MAX_TARGETS, 0);

#[map]
pub static PL_SETTINGS: Array<Settings> = Array::with_max_entries(1, 0);

/// Per CPU and network: the DNS address's current 100 ms window (`dns::admit`).
#[map]
pub static PL_DNS_RATE: PerCpuArray<DnsWindow> = PerCpuArray::with_max_entries(MAX_NETWORKS, 0);

#[map]
pub static PL_SCRATCH: PerCpuArray<NewFlow> = PerCpuArray::with_max_entries(1, 0);

#[map]
pub static PL_EVENTS: RingBuf = RingBuf::with_byte_size(EVENTS_BYTES, 0);

#[map]
pub static PL_WATCH: Array<u32> = Array::with_max_entries(1, 0);

/// A cluster node's lease (see `lease`); not kept across restarts, so a new run starts
/// with none until its daemon renews it.
#[map]
pub static PL_LEASE: Array<u64> = Array::with_max_entries(1, 0);

/// When this CPU last wrote a log line (ktime ns): logs are at most one a second per CPU.
#[map]
pub static PL_LOG_GATE: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

#[map]
pub static PL_PROBES: HashMap<FlowKey, u32> = HashMap::with_max_entries(MAX_TARGETS, 0);

/// Per-CPU scratch for building an ICMP message (the BPF stack has no room left).
#[map]
pub static PL_ICMP_SCRATCH: PerCpuArray<[u8; pl_common::icmp::TIME_EXCEEDED_LEN]> =
    PerCpuArray::with_max_entries(1, 0);

// IPv6: the same maps with 16-byte addresses (see `pl_common::maps::ADDRS6_MAP`).

#[map]
pub static PL_ADDRS6: HashMap<AddrKey6, AddrInfo> = HashMap::with_max_entries(MAX_ADDRS, 0);

#[map]
pub static PL_POLICY6: HashMap<PolicyKey6, Policy6> = HashMap::with_max_entries(MAX_POLICIES, 0);

#[map]
pub static PL_SOURCES6: LpmTrie<SourceKey6, u8> =
    LpmTrie::with_max_entries(MAX_SOURCES, BPF_F_NO_PREALLOC);

/// An IPv6 target's address by target id (its MAC and zone are in `PL_TARGETS`).
#[map]
pub static PL_TARGETS6: Array<[u8; 16]> = Array::with_max_entries(MAX_TARGETS, 0);

#[map]
pub static PL_NEIGH6: HashMap<AddrKey6, [u8; 8]> = HashMap::with_max_entries(MAX_NEIGH, 0);

/// The IPv6 flow table: as `PL_FLOWS`, two cache lines a slot.
#[map]
pub static PL_FLOWS6: Array<Slot6> = Array::with_max_entries(
    pl_common::maps::flow_array_len(DEFAULT_FLOW6_ENTRIES),
    BPF_F_MMAPABLE,
);

/// `PL_FLOWS6`'s slot count, set by the loader.
#[unsafe(no_mangle)]
static PL_FLOW6_SLOTS: u32 = pl_common::maps::flow_slots(DEFAULT_FLOW6_ENTRIES);

/// IPv6 health probes in flight, as `PL_PROBES`.
#[map]
pub static PL_PROBES6: HashMap<FlowKey6, u32> = HashMap::with_max_entries(MAX_TARGETS, 0);

#[map]
pub static PL_SCRATCH6: PerCpuArray<NewFlow6> = PerCpuArray::with_max_entries(1, 0);

/// The IPv6 flow table, for `pl_common::flowtable`.
pub struct Flows6;

impl Flows6 {
    /// `key`'s hash in the IPv6 flow table (the same seed as IPv4's).
    #[inline(always)]
    pub fn hash(key: &FlowKey6) -> u32 {
        // SAFETY: a plain read of a global the loader sets.
        key.hash_with(unsafe { core::ptr::read_volatile(&raw const PL_FLOW_SEED) })
    }
}

impl Slots for Flows6 {
    type Slot = Slot6;

    #[inline(always)]
    fn slots(&self) -> u32 {
        // SAFETY: a plain read of a global the loader sets.
        unsafe { core::ptr::read_volatile(&raw const PL_FLOW6_SLOTS) }
    }

    #[inline(always)]
    fn slot(&self, i: u32) -> Option<*mut Slot6> {
        PL_FLOWS6.get_ptr_mut(i)
    }

    #[inline(always)]
    fn bound(&self) -> Option<(*mut u64, u64)> {
        let n = self.slots();
        // SAFETY: a live map element; its first word is only ever changed atomically.
        PL_FLOWS6
            .get_ptr_mut(n)
            .map(|c| (unsafe { &raw mut (*c).ctl }, u64::from(n / 2)))
    }
}

/// Per-CPU scratch for a neighbour discovery message and the advertisement answering it.
#[map]
pub static PL_NDP_SCRATCH: PerCpuArray<[u8; crate::ndp::NDP_SCRATCH_LEN]> =
    PerCpuArray::with_max_entries(1, 0);

/// Per-CPU scratch for the headers of an ICMPv6 error pl sends.
#[map]
pub static PL_ICMP6_SCRATCH: PerCpuArray<crate::icmp6::Scratch> =
    PerCpuArray::with_max_entries(1, 0);

/// Per-CPU scratch for an ICMP error changing family along a translated flow.
#[map]
pub static PL_ICMP46_SCRATCH: PerCpuArray<crate::icmp46::Scratch> =
    PerCpuArray::with_max_entries(1, 0);

/// Tail calls: the IPv6 programs (`pl_common::maps::TAIL_IPV6`, `TAIL_IPV6_L4`,
/// `TAIL_IPV6_NEW`), family translation's IPv4 side (`TAIL_XLAT4`, `TAIL_XLAT4_NEW`) and
/// its ICMP errors (`TAIL_ICMP46`), which the loader puts there. Programs of their own: the verifier's budget and the 512-byte stack
/// are per program, and the IPv4 path already uses most of one.
#[map]
pub static PL_TAILS: ProgramArray = ProgramArray::with_max_entries(8, 0);

/// The L4 header's offset << 8 | its protocol, from `pl_xdp6` to `pl_xdp6_l4` (a tail
/// call carries only the context).
#[map]
pub static PL_L4_STASH: PerCpuArray<u32> = PerCpuArray::with_max_entries(1, 0);
