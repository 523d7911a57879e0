//! The program's maps. Names must match `pl_common::maps` (the fixture tests load them by
//! those constants).

use aya_ebpf::{
    macros::map,
    maps::{HashMap, PerCpuArray},
};
use pl_common::{iface::IfaceConfig, maps::MAX_IFACES, stats::IfaceStats};

#[map]
pub static PL_IFACES: HashMap<u32, IfaceConfig> = HashMap::with_max_entries(MAX_IFACES, 0);

#[map]
pub static PL_IFACE_STATS: PerCpuArray<IfaceStats> = PerCpuArray::with_max_entries(MAX_IFACES, 0);
