//! pl's XDP data path. A frame walks: classify (is the ingress interface ours?) -> parse
//! (bounded, one place) -> stats. The PrivateLink stages (endpoint, policy, conntrack,
//! nat, redirect) slot in between parse and stats.
#![no_std]
#![no_main]

mod classify;
mod maps;
mod parse;
mod stats;

use aya_ebpf::{bindings::xdp_action, macros::xdp, programs::XdpContext};
use pl_common::stats::IfaceCounter;

#[xdp]
pub fn pl_xdp(ctx: XdpContext) -> u32 {
    match try_pl_xdp(&ctx) {
        Ok(action) => action,
        Err(()) => xdp_action::XDP_ABORTED,
    }
}

fn try_pl_xdp(ctx: &XdpContext) -> Result<u32, ()> {
    // Not one of our interfaces: leave the frame to the kernel.
    let Some(iface) = classify::ingress(ctx) else {
        return Ok(xdp_action::XDP_PASS);
    };
    let stats = stats::Slot::get(iface.slot).ok_or(())?;
    stats.add(IfaceCounter::RxPackets, 1);
    stats.add(IfaceCounter::RxBytes, (ctx.data_end() - ctx.data()) as u64);
    stats.add(parse::classify(ctx), 1);

    // Nothing is translated yet: hand everything to the kernel, so attaching to an
    // interface that carries other traffic changes nothing but the counters.
    let action = xdp_action::XDP_PASS;
    stats.count_action(action);
    Ok(action)
}

// Host builds (clippy --workspace) link std, which brings its own handler.
#[cfg(target_arch = "bpf")]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo<'_>) -> ! {
    loop {}
}

// GPL-compatible: bpf_redirect and friends are GPL-only helpers.
#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
