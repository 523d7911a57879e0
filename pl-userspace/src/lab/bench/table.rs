//! Flow-table designs side by side, without frames: `pl_table` runs under
//! BPF_PROG_TEST_RUN with `repeat`, one forward-key lookup per run, over a table holding
//! both entries of every flow. The kernel hash map (what `PL_FLOWS` is) against the
//! open-addressing table of `pl_common::flowtable` at two loads, uniform and Zipf, so
//! the report can say what one lookup costs in each and how many dependent misses that is.

use std::{
    os::fd::{AsFd as _, AsRawFd as _},
    time::Instant,
};

use anyhow::{Context as _, bail, ensure};
use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, HashMap, Map, MapData, PerCpuArray},
    programs::{TestRun as _, TestRunOptions, Xdp},
};
use pl_common::{
    bench::{
        GEN_SKEW_MAP, TABLE_CONFIG_MAP, TABLE_COUNT_MAP, TABLE_HASH, TABLE_HASH_MAP, TABLE_NONE,
        TABLE_PROGRAM, TABLE_SLOTS, TABLE_SLOTS_MAP, TableConfig, table_forward_key,
        table_reply_key,
    },
    flow::{FlowKey, FlowValue},
    flowtable::{self, Slot, Slots},
};

use super::{frames, results::TableResult};
use crate::flows::table::Mapping;

/// A design under test: the hash map, or slots at a load factor.
#[derive(Clone, Copy)]
enum Design {
    Hash,
    /// `current`: the load `PL_FLOWS` runs at when full (`maps::flow_slots`).
    Slots {
        load: f64,
        current: bool,
    },
}

impl Design {
    fn name(self) -> String {
        match self {
            Self::Hash => "kernel hash map, 64-byte values (PL_FLOWS before)".to_owned(),
            Self::Slots { load, current } => format!(
                "open addressing, 64-byte slots, load {load:.2}{}",
                if current { " (PL_FLOWS)" } else { "" }
            ),
        }
    }
}

const DESIGNS: [Design; 3] = [
    Design::Hash,
    Design::Slots {
        load: 0.5,
        current: true,
    },
    Design::Slots {
        load: 0.7,
        current: false,
    },
];

/// Every design at every flow count, uniform and Zipf: `repeats` interleaved timings of
/// `runs` lookups each, the median kept.
pub(super) fn measure(
    scale: &[u32],
    skew_len: usize,
    runs: u32,
    repeats: usize,
) -> anyhow::Result<Vec<TableResult>> {
    let mut out = Vec::new();
    for &flows in scale {
        let zipf = frames::zipf_table(flows, skew_len, u64::from(flows));
        for design in DESIGNS {
            let mut t = Loaded::new(design, flows, &zipf)?;
            for (skewed, write) in [(false, false), (true, false), (false, true), (true, true)] {
                let mut own = Vec::new();
                let mut with = Vec::new();
                for _ in 0..repeats {
                    own.push(t.time(TABLE_NONE, false, skewed, runs)?);
                    with.push(t.time(t.code(), write, skewed, runs)?);
                }
                let (own, with) = (median(own), median(with));
                let name = if write {
                    format!("{}, counters written per packet", design.name())
                } else {
                    design.name()
                };
                println!(
                    "  {name} at {flows} flows{}: {:.1} ns per lookup",
                    if skewed { ", Zipf" } else { "" },
                    with - own
                );
                out.push(TableResult {
                    design: name,
                    flows,
                    zipf: skewed,
                    ns_per_lookup: (with - own).max(0.0),
                    bytes: t.bytes,
                    refused: t.refused,
                });
            }
        }
    }
    Ok(out)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

/// The bench object loaded with one design's table filled for `flows` flows.
struct Loaded {
    ebpf: Ebpf,
    design: Design,
    flows: u32,
    slots: u32,
    skew_len: u32,
    /// Kernel memory of the table (fdinfo memlock).
    bytes: u64,
    /// Entries the table had no room for within the probe bound.
    refused: u32,
}

impl Loaded {
    fn new(design: Design, flows: u32, zipf: &[u32]) -> anyhow::Result<Self> {
        let entries = flows.checked_mul(2).context("flow count too large")?;
        let (hash_entries, slots) = match design {
            Design::Hash => (entries, 1),
            Design::Slots { load, .. } => (1, (f64::from(entries) / load).ceil() as u32),
        };
        let skew_len = u32::try_from(zipf.len())?;
        let mut ebpf = EbpfLoader::new()
            .map_max_entries(TABLE_HASH_MAP, hash_entries)
            .map_max_entries(TABLE_SLOTS_MAP, slots)
            .map_max_entries(GEN_SKEW_MAP, skew_len.max(1))
            .load(crate::BENCH_OBJECT)
            .context("loading the flow-table bench")?;
        let p: &mut Xdp = ebpf
            .program_mut(TABLE_PROGRAM)
            .context("bench object has no pl_table")?
            .try_into()?;
        p.load()?;
        let mut skew: Array<&mut MapData, u32> =
            Array::try_from(ebpf.map_mut(GEN_SKEW_MAP).context("no skew map")?)?;
        for (k, &i) in zipf.iter().enumerate() {
            skew.set(u32::try_from(k)?, i, 0)?;
        }
        let map = match design {
            Design::Hash => TABLE_HASH_MAP,
            Design::Slots { .. } => TABLE_SLOTS_MAP,
        };
        let bytes = memlock(ebpf.map(map).context("no table map")?)?;
        let mut t = Self {
            ebpf,
            design,
            flows,
            slots,
            skew_len,
            bytes,
            refused: 0,
        };
        match design {
            Design::Hash => t.fill_hash()?,
            Design::Slots { .. } => t.fill_slots()?,
        }
        Ok(t)
    }

    fn code(&self) -> u32 {
        match self.design {
            Design::Hash => TABLE_HASH,
            Design::Slots { .. } => TABLE_SLOTS,
        }
    }

    /// Both entries of every flow; the forward entry's rewritten destination is the flow's
    /// index, which the lookup checks.
    fn fill_hash(&mut self) -> anyhow::Result<()> {
        let mut m: HashMap<&mut MapData, FlowKey, [u32; 16]> =
            HashMap::try_from(self.ebpf.map_mut(TABLE_HASH_MAP).context("no hash map")?)?;
        for i in 0..self.flows {
            let mut forward = [0u32; 16];
            forward[0] = i;
            m.insert(table_forward_key(i), forward, 0)
                .with_context(|| format!("filling the hash map at flow {i}"))?;
            m.insert(table_reply_key(i), [0u32; 16], 0)
                .with_context(|| format!("filling the hash map at flow {i}"))?;
        }
        Ok(())
    }

    /// The same through an mmap of the array, with the data path's own insert.
    fn fill_slots(&mut self) -> anyhow::Result<()> {
        let Map::Array(data) = self.ebpf.map_mut(TABLE_SLOTS_MAP).context("no slot map")? else {
            bail!("{TABLE_SLOTS_MAP} is not an array");
        };
        // The program does not run meanwhile.
        let mapping = Mapping::new::<Slot>(data, self.slots)
            .with_context(|| format!("mmap of {TABLE_SLOTS_MAP}"))?;
        let table = Mapped(mapping.ptr(), self.slots);
        for i in 0..self.flows {
            for (key, entry) in [
                (
                    table_forward_key(i),
                    FlowValue {
                        new_dst_be: i,
                        ..FlowValue::default()
                    },
                ),
                (table_reply_key(i), FlowValue::default()),
            ] {
                if flowtable::insert(&table, &key, key.hash(), 0, &entry).is_err() {
                    self.refused += 1;
                }
            }
        }
        Ok(())
    }

    /// ns per run of `runs` lookups in `design` (TABLE_NONE: the run's own cost), each
    /// counting the packet in the entry if `write`.
    fn time(&mut self, design: u32, write: bool, skewed: bool, runs: u32) -> anyhow::Result<f64> {
        let cfg = TableConfig {
            design,
            write: u32::from(write),
            flows: self.flows,
            skew_base: 0,
            skew_len: if skewed { self.skew_len } else { 0 },
            slots: self.slots,
        };
        let mut c: Array<&mut MapData, TableConfig> =
            Array::try_from(self.ebpf.map_mut(TABLE_CONFIG_MAP).context("no config")?)?;
        c.set(0, cfg, 0)?;
        let before = self.found()?;
        let frame = [0u8; 64];
        let p: &mut Xdp = self
            .ebpf
            .program_mut(TABLE_PROGRAM)
            .context("no pl_table")?
            .try_into()?;
        let t = Instant::now();
        p.test_run(TestRunOptions {
            data_in: Some(&frame),
            repeat: runs,
            ..TestRunOptions::default()
        })
        .context("running pl_table")?;
        let ns = t.elapsed().as_secs_f64() * 1e9 / f64::from(runs);
        // Every flow is found, except in a slot table that refused some (in the data path
        // a refused flow is a refused connection; the report gives the rate).
        let found = self.found()? - before;
        let tolerated = if self.refused == 0 {
            0
        } else {
            u64::from(runs / 100)
        };
        ensure!(
            found + tolerated >= u64::from(runs),
            "pl_table found {found} of {runs} flows in {}",
            self.design.name()
        );
        Ok(ns)
    }

    fn found(&self) -> anyhow::Result<u64> {
        let m: PerCpuArray<&MapData, u64> =
            PerCpuArray::try_from(self.ebpf.map(TABLE_COUNT_MAP).context("no counters")?)?;
        Ok(m.get(&1, 0)?.iter().sum())
    }
}

/// The mmapped slot array.
struct Mapped(*mut Slot, u32);

impl Slots for Mapped {
    type Slot = Slot;
    fn slots(&self) -> u32 {
        self.1
    }
    fn slot(&self, i: u32) -> Option<*mut Slot> {
        // SAFETY: in bounds of the mapping.
        (i < self.1).then(|| unsafe { self.0.add(i as usize) })
    }
}

/// A map's kernel memory: `memlock` in its fdinfo.
fn memlock(map: &Map) -> anyhow::Result<u64> {
    let fd = match map {
        Map::Array(d) | Map::HashMap(d) => d.fd().as_fd().as_raw_fd(),
        _ => bail!("not a table map"),
    };
    let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{fd}"))?;
    info.lines()
        .find_map(|l| l.strip_prefix("memlock:"))
        .and_then(|v| v.trim().parse().ok())
        .context("no memlock in the map's fdinfo")
}
