//! Benchmark programs. `pl_gen` runs under BPF_PROG_TEST_RUN with live frames on a
//! consumer's interface and sends each frame out of it (XDP_TX, which live mode turns into
//! a redirect), varying the flow per frame. `pl_sink` counts what reaches the provider and
//! drops it. `pl_bare` only redirects, with no lookups: the limit pl is measured against.
//! `pl_table` runs without frames (BPF_PROG_TEST_RUN with `repeat`): one flow-table
//! lookup per run, in the design the config names, so designs compare in ns per lookup.
#![no_std]
#![no_main]

use aya_ebpf::{
    bindings::{BPF_F_MMAPABLE, xdp_action},
    helpers::bpf_get_smp_processor_id,
    macros::{map, xdp},
    maps::{Array, DevMap, HashMap, PerCpuArray},
    programs::XdpContext,
};
use pl_common::{
    bench::{
        GEN_FRAME4, GEN_FRAME6, GenConfig, SINK_BYTES, SINK_FRAME, SINK_FRAME6, SinkConfig,
        TABLE_HASH, TABLE_SLOTS, TableConfig, gen_rewrite, gen_rewrite6, sink_verdict,
        sink_verdict6, table_forward_key,
    },
    flow::FlowKey,
    flowtable::{self, Slot, Slots},
};

#[map]
static GEN_CONFIG: Array<GenConfig> = Array::with_max_entries(1, 0);
#[map]
static GEN_COUNT: PerCpuArray<u64> = PerCpuArray::with_max_entries(2, 0);
/// Sized by `pl bench` at load (one table per flow count).
#[map]
static GEN_SKEW: Array<u32> = Array::with_max_entries(1, 0);
#[map]
static SINK_COUNT: PerCpuArray<u64> = PerCpuArray::with_max_entries(4, 0);
#[map]
static SINK_CONFIG: Array<SinkConfig> = Array::with_max_entries(1, 0);
#[map]
static BARE_EGRESS: DevMap = DevMap::with_max_entries(1, 0);

#[map]
static TABLE_CONFIG: Array<TableConfig> = Array::with_max_entries(1, 0);
/// Sized by `pl bench` at load, like the two below.
#[map]
static TABLE_HASHMAP: HashMap<FlowKey, [u32; 16]> = HashMap::with_max_entries(1, 0);
/// Mmapable: `pl bench` fills it in place, and the kernel places it page-aligned, so
/// every slot is one cache line.
#[map]
static TABLE_ARRAY: Array<Slot> = Array::with_max_entries(1, BPF_F_MMAPABLE);
#[map]
static TABLE_COUNT: PerCpuArray<u64> = PerCpuArray::with_max_entries(2, 0);

#[inline(always)]
fn bump(map: &PerCpuArray<u64>, index: u32, n: u64) -> u64 {
    match map.get_ptr_mut(index) {
        // SAFETY: this CPU's element; nothing else on this CPU runs meanwhile.
        Some(p) => unsafe {
            let old = *p;
            *p = old.wrapping_add(n);
            old
        },
        None => 0,
    }
}

/// The flow of frame (or run) `n`: `GEN_SKEW[skew_base + n % skew_len]` if skewed, else
/// `n % flows` (every frame a new flow with `flows` 0).
#[inline(always)]
fn flow_index(n: u32, flows: u32, skew_base: u32, skew_len: u32) -> Option<u32> {
    if skew_len != 0 {
        GEN_SKEW.get(skew_base.wrapping_add(n % skew_len)).copied()
    } else if flows == 0 {
        Some(n)
    } else {
        Some(n % flows)
    }
}

#[xdp]
pub fn pl_gen(ctx: XdpContext) -> u32 {
    let Some(cfg) = GEN_CONFIG.get(0) else {
        return xdp_action::XDP_ABORTED;
    };
    let start = ctx.data();
    // SAFETY: no preconditions.
    let cpu = unsafe { bpf_get_smp_processor_id() };
    let seq = bump(&GEN_COUNT, 1, 1);
    let cpus = if cfg.cpus == 0 { 1 } else { cfg.cpus };
    let n = (seq * u64::from(cpus) + u64::from(cpu % cpus)) as u32;
    let Some(i) = flow_index(n, cfg.flows, cfg.skew_base, cfg.skew_len) else {
        return xdp_action::XDP_ABORTED;
    };
    // Each family a fixed size, so the verifier sees constant bounds.
    if cfg.ipv6 != 0 {
        if start + GEN_FRAME6 > ctx.data_end() {
            return xdp_action::XDP_ABORTED;
        }
        // SAFETY: GEN_FRAME6 bytes are inside the frame (checked above).
        let frame = unsafe { &mut *(start as *mut [u8; GEN_FRAME6]) };
        // SAFETY: the header holds at least GEN_FRAME6 bytes.
        *frame = unsafe { *(cfg.header.as_ptr() as *const [u8; GEN_FRAME6]) };
        gen_rewrite6(frame, i, cfg.udp != 0);
    } else {
        if start + GEN_FRAME4 > ctx.data_end() {
            return xdp_action::XDP_ABORTED;
        }
        // SAFETY: GEN_FRAME4 bytes are inside the frame (checked above).
        let frame = unsafe { &mut *(start as *mut [u8; GEN_FRAME4]) };
        if cfg.dns_every != 0 && n.is_multiple_of(cfg.dns_every) {
            *frame = cfg.dns;
        } else {
            // SAFETY: the header holds at least GEN_FRAME4 bytes.
            *frame = unsafe { *(cfg.header.as_ptr() as *const [u8; GEN_FRAME4]) };
            gen_rewrite(frame, i, cfg.udp != 0);
        }
    }
    bump(&GEN_COUNT, 0, 1);
    xdp_action::XDP_TX
}

#[xdp]
pub fn pl_sink(ctx: XdpContext) -> u32 {
    // ARP goes to the stack, so the forwarder can resolve the targets behind the sink;
    // so does ICMPv6 (neighbour discovery for the IPv6 targets, never a bench frame).
    let start = ctx.data();
    if start + 21 <= ctx.data_end() {
        // SAFETY: 21 bytes are inside the frame (checked above).
        let eth = unsafe { &*(start as *const [u8; 21]) };
        if (eth[12] == 0x08 && eth[13] == 0x06)
            || (eth[12] == 0x86 && eth[13] == 0xdd && eth[20] == 58)
        {
            return xdp_action::XDP_PASS;
        }
    }
    // Exactly one family's frame length; the verifier learns the bound only from a `>`
    // check.
    let (end, len) = (ctx.data_end(), ctx.data_end() - start);
    let verdict = match SINK_CONFIG.get(0) {
        Some(cfg) if cfg.ipv6 != 0 && start + SINK_FRAME6 <= end && len == SINK_FRAME6 => {
            // SAFETY: SINK_FRAME6 bytes are inside the frame (checked above).
            sink_verdict6(unsafe { &*(start as *const [u8; SINK_FRAME6]) }, cfg)
        }
        Some(cfg) if cfg.ipv6 == 0 && start + SINK_FRAME <= end && len == SINK_FRAME => {
            // SAFETY: SINK_FRAME bytes are inside the frame (checked above).
            sink_verdict(unsafe { &*(start as *const [u8; SINK_FRAME]) }, cfg)
        }
        _ => pl_common::bench::SINK_WRONG_HEADER,
    };
    bump(&SINK_COUNT, verdict, 1);
    bump(
        &SINK_COUNT,
        SINK_BYTES,
        (ctx.data_end() - ctx.data()) as u64,
    );
    xdp_action::XDP_DROP
}

struct BenchSlots(u32);

impl Slots for BenchSlots {
    type Slot = Slot;
    #[inline(always)]
    fn slots(&self) -> u32 {
        self.0
    }
    #[inline(always)]
    fn slot(&self, i: u32) -> Option<*mut Slot> {
        TABLE_ARRAY.get_ptr_mut(i)
    }
}

#[xdp]
pub fn pl_table(_ctx: XdpContext) -> u32 {
    let Some(cfg) = TABLE_CONFIG.get(0) else {
        return xdp_action::XDP_ABORTED;
    };
    let n = bump(&TABLE_COUNT, 0, 1) as u32;
    let Some(i) = flow_index(n, cfg.flows, cfg.skew_base, cfg.skew_len) else {
        return xdp_action::XDP_ABORTED;
    };
    let key = table_forward_key(i);
    // Each design reads what the data path would: the rewritten destination. The fill
    // wrote the flow's index there, so a wrong entry is not counted as found.
    let found = match cfg.design {
        TABLE_HASH => TABLE_HASHMAP.get_ptr_mut(key).map(|v| {
            // SAFETY: a live map value; only this CPU runs the bench.
            unsafe {
                if cfg.write != 0 {
                    (*v)[13] = (*v)[13].wrapping_add(1);
                    (*v)[14] = (*v)[14].wrapping_add(64);
                }
                (*v)[0]
            }
        }),
        TABLE_SLOTS if cfg.slots != 0 => {
            flowtable::find(&BenchSlots(cfg.slots), &key, key.hash()).map(|s| {
                // SAFETY: a LIVE slot; as above.
                unsafe {
                    if cfg.write != 0 {
                        (*s).entry.packets = (*s).entry.packets.wrapping_add(1);
                        (*s).entry.bytes = (*s).entry.bytes.wrapping_add(64);
                    }
                    (*s).entry.new_dst_be
                }
            })
        }
        _ => Some(i),
    };
    if found == Some(i) {
        bump(&TABLE_COUNT, 1, 1);
    }
    xdp_action::XDP_DROP
}

#[xdp]
pub fn pl_bare(_ctx: XdpContext) -> u32 {
    BARE_EGRESS.redirect(0, 0).unwrap_or(xdp_action::XDP_DROP)
}

#[cfg(target_arch = "bpf")]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo<'_>) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
