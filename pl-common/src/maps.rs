//! Names of the program and its maps, shared so userspace looks up exactly what the
//! object defines (the fixture tests load the real object by these names).

/// The XDP entry point in the object.
pub const PROGRAM_NAME: &str = "pl_xdp";
/// The IPv6 data path: a program of its own, reached by tail call from [`PROGRAM_NAME`]
/// through [`TAILS_MAP`] (which the loader fills).
pub const IPV6_PROGRAM: &str = "pl_xdp6";
pub const TAILS_MAP: &str = "PL_TAILS";
/// [`TAILS_MAP`]'s slot for [`IPV6_PROGRAM`].
pub const TAIL_IPV6: u32 = 0;
/// IPv6 TCP and UDP, tail-called from [`IPV6_PROGRAM`] through [`TAIL_IPV6_L4`].
pub const IPV6_L4_PROGRAM: &str = "pl_xdp6_l4";
pub const TAIL_IPV6_L4: u32 = 1;
/// Family translation's IPv4 side: an IPv4 packet whose flow lives in the IPv6 table (an
/// IPv4 consumer of a service with IPv6 targets, or an IPv4 target's reply to an IPv6
/// consumer), tail-called from [`PROGRAM_NAME`] through [`TAIL_XLAT4`].
pub const XLAT4_PROGRAM: &str = "pl_xdp46";
pub const TAIL_XLAT4: u32 = 2;
/// The new-flow halves of [`IPV6_L4_PROGRAM`] and [`XLAT4_PROGRAM`], tail-called from them
/// when the lookup finds no live flow: opening a flow and forwarding along one are
/// verified apart.
pub const IPV6_NEW_PROGRAM: &str = "pl_xdp6_new";
pub const TAIL_IPV6_NEW: u32 = 3;
pub const XLAT4_NEW_PROGRAM: &str = "pl_xdp46_new";
pub const TAIL_XLAT4_NEW: u32 = 4;
/// ICMP errors about a translated flow, which change family with it: tail-called from
/// [`PROGRAM_NAME`] (an ICMPv4 error about no IPv4 flow) and [`IPV6_PROGRAM`] (an ICMPv6
/// error whose flow leads to IPv4) through [`TAIL_ICMP46`].
pub const ICMP46_PROGRAM: &str = "pl_icmp46";
pub const TAIL_ICMP46: u32 = 5;

/// `ARRAY<IfaceConfig>` indexed by ifindex: the interfaces pl manages, written by userspace
/// before attaching. A frame arriving on any other interface is passed untouched.
pub const IFACES_MAP: &str = "PL_IFACES";

/// ifindexes pl can manage: `0..MAX_IFINDEX` (the interface array's size).
pub const MAX_IFINDEX: u32 = 16384;

/// `PERCPU_ARRAY<IfaceStats>` indexed by `IfaceConfig::slot`.
pub const IFACE_STATS_MAP: &str = "PL_IFACE_STATS";

/// How many interfaces one program instance can manage (the stats array's size).
pub const MAX_IFACES: u32 = 64;

/// `HASH<AddrKey, AddrInfo>`: endpoint and NLB addresses per network (ARP and lookup).
pub const ADDRS_MAP: &str = "PL_ADDRS";
/// `HASH<PolicyKey, Policy>`: what a new flow to a listener on an endpoint address gets.
pub const POLICY_MAP: &str = "PL_POLICY";
/// IPv6 twins of the address, policy, sources, neighbour and flow maps: `HASH<AddrKey6,
/// AddrInfo>`, `HASH<PolicyKey6, Policy6>`, `LPM<SourceKey6, u8>`, `HASH<AddrKey6, [u8; 8]>`
/// and an mmapable `ARRAY<Slot6>` (with its own slot count global); `PL_TARGETS6` holds an
/// IPv6 target's address by target id (zero for an IPv4 target; its MAC and zone stay in
/// `PL_TARGETS`).
pub const ADDRS6_MAP: &str = "PL_ADDRS6";
pub const POLICY6_MAP: &str = "PL_POLICY6";
pub const SOURCES6_MAP: &str = "PL_SOURCES6";
pub const NEIGH6_MAP: &str = "PL_NEIGH6";
pub const TARGETS6_MAP: &str = "PL_TARGETS6";
pub const FLOWS6_MAP: &str = "PL_FLOWS6";
pub const FLOW6_SLOTS_GLOBAL: &str = "PL_FLOW6_SLOTS";
/// Entries in the IPv6 flow map compiled into the object, resized at load as IPv4's.
pub const DEFAULT_FLOW6_ENTRIES: u32 = 32_768;
/// `LPM_TRIE<SourceKey, u8>`: allowed sources per endpoint.
pub const SOURCES_MAP: &str = "PL_SOURCES";
/// `ARRAY<TargetInfo>` by target id.
pub const TARGETS_MAP: &str = "PL_TARGETS";
/// `ARRAY<u32>`: every Maglev table back to back, `MAGLEV_SIZE` target ids each.
pub const MAGLEV_MAP: &str = "PL_MAGLEV";
/// `ARRAY<flowtable::Slot>`, mmapable: both directions of every flow, one 64-byte slot
/// each, open addressing ([`crate::flowtable`]); the last element counts the entries.
pub const FLOWS_MAP: &str = "PL_FLOWS";
/// The program's global holding `PL_FLOWS`'s slot count (set at load).
pub const FLOW_SLOTS_GLOBAL: &str = "PL_FLOW_SLOTS";
/// The program's global holding the flow table's hash seed (set at load: random for a new
/// table, the kept table's own across restarts, which keeps it in the element past the
/// slots).
pub const FLOW_SEED_GLOBAL: &str = "PL_FLOW_SEED";
/// `DEVMAP` by network id: the interface to redirect out of.
pub const EGRESS_MAP: &str = "PL_EGRESS";
/// `ARRAY<NetInfo>` by network id: the MTU and MAC of the network's interface.
pub const NET_INFO_MAP: &str = "PL_NET_INFO";
/// `HASH<AddrKey, [u8; 8]>`: MACs learned from ARP replies (6 bytes + 2 padding).
pub const NEIGH_MAP: &str = "PL_NEIGH";
/// `PERCPU_ARRAY<EndpointStats>` by endpoint id.
pub const ENDPOINT_STATS_MAP: &str = "PL_ENDPOINT_STATS";
/// `PERCPU_ARRAY<u64>` by target id: flows opened to the target.
pub const TARGET_STATS_MAP: &str = "PL_TARGET_STATS";
/// `ARRAY<Settings>` of one element.
pub const SETTINGS_MAP: &str = "PL_SETTINGS";

pub const MAX_NETWORKS: u32 = MAX_IFACES;
pub const MAX_ENDPOINTS: u32 = 1024;
pub const MAX_SERVICES: u32 = 64;
pub const MAX_TARGETS: u32 = 1024;
pub const MAX_ADDRS: u32 = 4096;
/// Listeners on endpoint addresses: (endpoint address, listener) pairs.
pub const MAX_POLICIES: u32 = 16384;
pub const MAX_SOURCES: u32 = 16384;
pub const MAX_NEIGH: u32 = 4096;
/// Entries in the flow map compiled into the object; `pl run` resizes it from the
/// config's `limits.flow_table_size` (two entries per flow) before loading.
pub const DEFAULT_FLOW_ENTRIES: u32 = 131_072;

/// Slots of a flow table for `entries` entries: twice as many, so it runs at load 0.5 at
/// most, where linear probing bounded at [`crate::flowtable::PROBE_SLOTS`] refuses about
/// one insert in a million (`pl bench` measures it).
pub const fn flow_slots(entries: u32) -> u32 {
    entries.saturating_mul(2)
}

/// Elements of the `PL_FLOWS` array: the slots, and one past them whose first word counts
/// the entries held (the table refuses past `entries`, half its slots).
pub const fn flow_array_len(entries: u32) -> u32 {
    flow_slots(entries).saturating_add(1)
}
/// Slots of `PL_MAGLEV`: a table per (service, zone) and one cross-zone table per service.
pub const MAGLEV_ENTRIES: u32 =
    MAX_SERVICES * (crate::service::MAX_ZONES as u32 + 1) * crate::maglev::MAGLEV_SIZE as u32;
/// `HASH<FlowKey, u32>`: health probes in flight, keyed like a reply (target -> NLB address
/// and probe port). The program ORs the state bits of what comes back into the value and
/// drops it; only packets to an NLB address with no flow are looked up here.
pub const PROBES_MAP: &str = "PL_PROBES";
/// `HASH<FlowKey6, u32>`: IPv6 health probes in flight, as [`PROBES_MAP`].
pub const PROBES6_MAP: &str = "PL_PROBES6";
/// `RINGBUF` of [`crate::event::FlowEvent`]s, for `pl flows --watch`.
pub const EVENTS_MAP: &str = "PL_EVENTS";
pub const EVENTS_BYTES: u32 = 256 * 1024;
/// `ARRAY<u32>` of one element: nonzero while someone watches events.
pub const WATCH_MAP: &str = "PL_WATCH";
/// `ARRAY<u64>` of one element: a cluster node's lease on its zones, CLOCK_MONOTONIC ns
/// until which it answers ARP and opens flows; 0 for none (a lone forwarder).
pub const LEASE_MAP: &str = "PL_LEASE";
/// `PERCPU_ARRAY<NewFlow>` of one element: scratch space for creating a flow.
pub const SCRATCH_MAP: &str = "PL_SCRATCH";
