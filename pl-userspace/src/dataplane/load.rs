//! Loading the embedded object and reaching its program and maps.
//!
//! The object is built with pl, so a missing program or map is a broken build (a panic);
//! a map of the wrong type or a failed access is a [`DataplaneError::Map`] naming it.

use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, HashMap, Map, MapError, PerCpuArray, ProgramArray},
    programs::Xdp,
};
use pl_common::{
    bench::{STAGE_NONE, STOP_AT_GLOBAL, program_for},
    flow6::Slot6,
    flowtable::Slot,
    iface::{IFACE_ACTIVE, IfaceConfig},
    maps::{
        DEFAULT_FLOW_ENTRIES, ENDPOINT_STATS_MAP, FLOW_SEED_GLOBAL, FLOW_SLOTS_GLOBAL,
        FLOW6_SLOTS_GLOBAL, FLOWS_MAP, FLOWS6_MAP, ICMP46_PROGRAM, IFACE_STATS_MAP, IFACES_MAP,
        IPV6_L4_PROGRAM, IPV6_NEW_PROGRAM, IPV6_PROGRAM, PROBES_MAP, PROBES6_MAP, PROGRAM_NAME,
        TAIL_ICMP46, TAIL_IPV6, TAIL_IPV6_L4, TAIL_IPV6_NEW, TAIL_XLAT4, TAIL_XLAT4_NEW, TAILS_MAP,
        XLAT4_NEW_PROGRAM, XLAT4_PROGRAM, flow_array_len, flow_slots,
    },
    stats::{EndpointStats, IfaceStats},
};

use super::{Attached, DataplaneError};
use crate::{
    errno,
    flows::{Family, FlowTable, FlowTable6, flow6_entries},
    health::HealthMaps,
    state::{KEPT_MAPS, State},
};

/// Loads the embedded object and its program, attaching nothing.
pub fn load() -> Result<Ebpf, DataplaneError> {
    load_sized(None)
}

/// As [`load`], with the flow map sized to `flow_entries` entries if given (and the IPv6
/// one to [`flow6_entries`] of them).
pub fn load_sized(flow_entries: Option<u32>) -> Result<Ebpf, DataplaneError> {
    load_with(flow_entries, None)
}

/// As [`load_sized`]; with `kept`, the maps that outlive a run are taken from its pins
/// (and pinned there if missing).
pub(super) fn load_with(
    flow_entries: Option<u32>,
    kept: Option<&State>,
) -> Result<Ebpf, DataplaneError> {
    let mut ebpf = open_maps(flow_entries, kept)?;
    load_programs(&mut ebpf, PROGRAM_NAME)?;
    Ok(ebpf)
}

/// Loads the program `name` and the IPv6 programs it tail-calls, and puts those in their
/// slots of `PL_TAILS`.
fn load_programs(ebpf: &mut Ebpf, name: &str) -> Result<(), DataplaneError> {
    for (tail, slot) in [
        (IPV6_PROGRAM, TAIL_IPV6),
        (IPV6_L4_PROGRAM, TAIL_IPV6_L4),
        (XLAT4_PROGRAM, TAIL_XLAT4),
        (IPV6_NEW_PROGRAM, TAIL_IPV6_NEW),
        (XLAT4_NEW_PROGRAM, TAIL_XLAT4_NEW),
        (ICMP46_PROGRAM, TAIL_ICMP46),
    ] {
        program_named(ebpf, tail)
            .load()
            .map_err(|e| classify(tail, Box::new(e)))?;
        let fd = program_named(ebpf, tail)
            .fd()
            .map_err(|e| classify(tail, Box::new(e)))?
            .try_clone()
            .map_err(|e| classify(tail, Box::new(e)))?;
        let mut tails = ProgramArray::try_from(raw_map_mut(ebpf, TAILS_MAP))
            .map_err(DataplaneError::map(TAILS_MAP))?;
        tails
            .set(slot, &fd, 0)
            .map_err(DataplaneError::map(TAILS_MAP))?;
    }
    program_named(ebpf, name)
        .load()
        .map_err(|e| classify(name, Box::new(e)))?;
    Ok(())
}

/// For `pl bench`'s itemization only: the data path's staged copy (`STAGED_PROGRAM`, which
/// only the bench attaches) with its stage knob set to `stop` (every packet ends there),
/// or for `STAGE_NONE` the product's program. The maps that
/// outlive a run are shared through `kept`'s pins with the other loads of one measurement
/// (the flows one load made are there for the next).
pub fn load_staged(flow_entries: u32, kept: &State, stop: u32) -> Result<Ebpf, DataplaneError> {
    let mut ebpf = open_maps_stopping(Some(flow_entries), Some(kept), stop)?;
    load_programs(&mut ebpf, program_for(stop))?;
    if !kept.map_pin(FLOWS_MAP).exists() {
        pin_kept_maps(&ebpf, kept)?;
    }
    Ok(ebpf)
}

/// A load error, told apart by whether it is a missing privilege.
fn classify(program: &str, e: Box<dyn std::error::Error + Send + Sync>) -> DataplaneError {
    if errno::find(e.as_ref()) == Some(libc::EPERM) {
        DataplaneError::Permission { source: e }
    } else {
        DataplaneError::Load {
            program: program.to_owned(),
            source: e,
        }
    }
}

/// The object's maps (the kept ones from `kept`'s pins), its program not loaded.
pub(super) fn open_maps(
    flow_entries: Option<u32>,
    kept: Option<&State>,
) -> Result<Ebpf, DataplaneError> {
    open_maps_stopping(flow_entries, kept, STAGE_NONE)
}

/// As [`open_maps`], with the bench's stage knob set (`STAGE_NONE` for the product).
fn open_maps_stopping(
    flow_entries: Option<u32>,
    kept: Option<&State>,
    stop: u32,
) -> Result<Ebpf, DataplaneError> {
    let mut loader = EbpfLoader::new();
    if stop != STAGE_NONE {
        loader.override_global(STOP_AT_GLOBAL, &stop, true);
    }
    // The program's probe sequences wrap at the table's slot count, which must be the
    // map's: both come from here.
    let entries = flow_entries.unwrap_or(DEFAULT_FLOW_ENTRIES);
    let slots = flow_slots(entries);
    loader.map_max_entries(FLOWS_MAP, flow_array_len(entries));
    loader.override_global(FLOW_SLOTS_GLOBAL, &slots, true);
    // The IPv6 table likewise, sized from the same setting.
    let entries6 = flow6_entries(entries);
    let slots6 = flow_slots(entries6);
    loader.map_max_entries(FLOWS6_MAP, flow_array_len(entries6));
    loader.override_global(FLOW6_SLOTS_GLOBAL, &slots6, true);
    // A kept table keeps its seed (its keys sit where that seed put them); a new one gets
    // a random one. Both tables hash with the one seed (`PL_FLOW_SEED`); the IPv4 table's
    // is the one kept, and an IPv6 table new beside a kept IPv4 one (a restart from a pl
    // without it) takes it too.
    let kept_seed = kept
        .map(|state| state.map_pin(FLOWS_MAP))
        .filter(|pin| pin.exists())
        .and_then(|pin| FlowTable::<Slot>::from_pin(&pin).ok())
        .map(|t| t.seed());
    let seed = kept_seed.unwrap_or_else(random_seed);
    loader.override_global(FLOW_SEED_GLOBAL, &seed, true);
    if let Some(state) = kept {
        for map in KEPT_MAPS {
            loader.map_pin_path(map, state.map_pin(map));
        }
    }
    let ebpf = loader
        .load(crate::EBPF_OBJECT)
        .map_err(|e| classify("(the object)", Box::new(e)))?;
    // Before the program runs: userspace finds the seed in the tables.
    keep_seed::<Slot>(&ebpf, FLOWS_MAP, seed)?;
    keep_seed::<Slot6>(&ebpf, FLOWS6_MAP, seed)?;
    Ok(ebpf)
}

/// Writes `seed` into the flow table `name` of `ebpf` unless it holds it already.
fn keep_seed<S: Family>(ebpf: &Ebpf, name: &'static str, seed: u32) -> Result<(), DataplaneError> {
    let mut table = FlowTable::<S>::map(present(name, ebpf.map(name)))
        .map_err(|e| DataplaneError::map(name)(MapError::from(e)))?;
    if table.seed() != seed {
        table.set_seed(seed);
    }
    Ok(())
}

/// A random 32-bit seed (the kernel's getrandom; the clock if that fails).
fn random_seed() -> u32 {
    let mut b = [0u8; 4];
    // SAFETY: writes at most 4 bytes into `b`.
    let n = unsafe { libc::getrandom(b.as_mut_ptr().cast(), b.len(), 0) };
    if n == 4 {
        u32::from_ne_bytes(b)
    } else {
        crate::flows::now_ns() as u32
    }
}

pub(super) fn program(ebpf: &mut Ebpf) -> &mut Xdp {
    program_named(ebpf, PROGRAM_NAME)
}

/// The XDP program `name` of the embedded object (`PROGRAM_NAME`, or the bench's
/// `STAGED_PROGRAM`).
pub fn program_named<'a>(ebpf: &'a mut Ebpf, name: &str) -> &'a mut Xdp {
    ebpf.program_mut(name)
        .and_then(|p| <&mut Xdp>::try_from(p).ok())
        .unwrap_or_else(|| {
            panic!("the embedded object has no XDP program {name}: the build is broken")
        })
}

/// `map`, which the embedded object has unless the build is broken.
fn present<T>(name: &str, map: Option<T>) -> T {
    map.unwrap_or_else(|| panic!("the embedded object has no map {name}"))
}

/// The map `name`, untyped.
pub(super) fn raw_map<'a>(ebpf: &'a Ebpf, name: &str) -> &'a Map {
    present(name, ebpf.map(name))
}

/// The map `name`, untyped, writable.
pub(super) fn raw_map_mut<'a>(ebpf: &'a mut Ebpf, name: &str) -> &'a mut Map {
    present(name, ebpf.map_mut(name))
}

/// The map `name` as `M` (an [`Array`], a [`HashMap`], ..), read-only.
fn map<'a, M>(ebpf: &'a Ebpf, name: &'static str) -> Result<M, DataplaneError>
where
    M: TryFrom<&'a Map, Error = MapError>,
{
    M::try_from(raw_map(ebpf, name)).map_err(DataplaneError::map(name))
}

/// The map `name` as `M`, writable.
pub(super) fn map_mut<'a, M>(ebpf: &'a mut Ebpf, name: &'static str) -> Result<M, DataplaneError>
where
    M: TryFrom<&'a mut Map, Error = MapError>,
{
    M::try_from(raw_map_mut(ebpf, name)).map_err(DataplaneError::map(name))
}

/// Registers interfaces in the program's interface map (observe mode: count and pass), slot
/// `i` for the `i`th.
pub fn register(
    ebpf: &mut Ebpf,
    ifaces: &[(String, u32)],
) -> Result<Vec<Attached>, DataplaneError> {
    let mut map: Array<_, IfaceConfig> = map_mut(ebpf, IFACES_MAP)?;
    ifaces
        .iter()
        .zip(0u32..)
        .map(|((name, ifindex), slot)| {
            let config = IfaceConfig {
                slot,
                flags: IFACE_ACTIVE,
                ..IfaceConfig::default()
            };
            map.set(*ifindex, config, 0)
                .map_err(DataplaneError::map(IFACES_MAP))?;
            Ok(Attached {
                name: name.clone(),
                ifindex: *ifindex,
                slot,
            })
        })
        .collect()
}

/// One interface slot's counters, summed over CPUs.
pub fn iface_stats(ebpf: &Ebpf, slot: u32) -> Result<IfaceStats, DataplaneError> {
    sum_per_cpu(ebpf, IFACE_STATS_MAP, slot, IfaceStats::accumulate)
}

/// One endpoint's counters, summed over CPUs.
pub fn endpoint_stats(ebpf: &Ebpf, id: u16) -> Result<EndpointStats, DataplaneError> {
    sum_per_cpu(
        ebpf,
        ENDPOINT_STATS_MAP,
        u32::from(id),
        EndpointStats::accumulate,
    )
}

/// Entry `index` of the per-CPU array `name`, summed over CPUs with `add`.
pub(super) fn sum_per_cpu<T: aya::Pod + Default>(
    ebpf: &Ebpf,
    name: &'static str,
    index: u32,
    add: fn(&mut T, &T),
) -> Result<T, DataplaneError> {
    let map: PerCpuArray<_, T> = map(ebpf, name)?;
    let mut total = T::default();
    for cpu in map
        .get(&index, 0)
        .map_err(DataplaneError::map(name))?
        .iter()
    {
        add(&mut total, cpu);
    }
    Ok(total)
}

/// The flow tables (read) and the probe maps, for the health checker.
pub(super) fn health_maps(ebpf: &mut Ebpf) -> Result<HealthMaps<'_>, DataplaneError> {
    let [flows, flows6, probes, probes6] =
        ebpf.maps_disjoint_mut([FLOWS_MAP, FLOWS6_MAP, PROBES_MAP, PROBES6_MAP]);
    let flows = FlowTable::map(present(FLOWS_MAP, flows.as_deref()))
        .map_err(|e| DataplaneError::map(FLOWS_MAP)(MapError::from(e)))?;
    let flows6 = FlowTable6::map(present(FLOWS6_MAP, flows6.as_deref()))
        .map_err(|e| DataplaneError::map(FLOWS6_MAP)(MapError::from(e)))?;
    Ok(HealthMaps {
        flows,
        flows6,
        probes: HashMap::try_from(present(PROBES_MAP, probes))
            .map_err(DataplaneError::map(PROBES_MAP))?,
        probes6: HashMap::try_from(present(PROBES6_MAP, probes6))
            .map_err(DataplaneError::map(PROBES6_MAP))?,
    })
}

/// Pins this run's `PL_TAILS` in `state`, in place of the last run's, once this run's
/// program is the attached one. The program array empties when nothing in userspace holds
/// it: unpinned, the attached program would drop every IPv6 frame while `pl run` is
/// stopped. Not shared with the next run (as the kept maps are): the old program tail-calls
/// the old IPv6 programs until its links are swapped.
pub(super) fn pin_tails(ebpf: &Ebpf, state: &State) -> Result<(), DataplaneError> {
    let path = state.map_pin(TAILS_MAP);
    let pin_err = |cause: String| DataplaneError::Pin {
        what: format!("map {TAILS_MAP}"),
        path: path.clone(),
        cause,
    };
    match std::fs::remove_file(&path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(pin_err(e.to_string())),
    }
    raw_map(ebpf, TAILS_MAP)
        .pin(&path)
        .map_err(|e| pin_err(e.to_string()))
}

/// Pins the maps that outlive a run in `state`, where the next run takes them from.
pub(super) fn pin_kept_maps(ebpf: &Ebpf, state: &State) -> Result<(), DataplaneError> {
    for map in KEPT_MAPS {
        let path = state.map_pin(map);
        raw_map(ebpf, map)
            .pin(&path)
            .map_err(|e| DataplaneError::Pin {
                what: format!("map {map}"),
                path,
                cause: e.to_string(),
            })?;
    }
    Ok(())
}
