//! The bench's stage knob (`pl_common::bench::STOP_AT_GLOBAL`): `pl bench` loads
//! `pl_xdp_staged` with a stage set and every packet ends there, to itemize the path. The
//! product's copy (`pl_xdp`, `S = false`) compiles every check away.

use aya_ebpf::bindings::xdp_action;

#[unsafe(no_mangle)]
static PL_STOP_AT: u32 = pl_common::bench::STAGE_NONE;

/// `Some(XDP_DROP)` if this is the staged copy (`S`) and the bench stops packets at `stage`.
#[inline(always)]
pub fn at<const S: bool>(stage: u32) -> Option<u32> {
    if !S {
        return None;
    }
    // SAFETY: a plain read of a global the loader sets; volatile so the compiler does not
    // fold the default in.
    let stop = unsafe { core::ptr::read_volatile(&raw const PL_STOP_AT) };
    (stop == stage).then_some(xdp_action::XDP_DROP)
}
