//! Classify: which of our interfaces (if any) the frame arrived on.

use aya_ebpf::programs::XdpContext;
use pl_common::iface::IfaceConfig;

use crate::maps::PL_IFACES;

#[inline(always)]
pub fn ingress(ctx: &XdpContext) -> Option<IfaceConfig> {
    let ifindex = ctx.ingress_ifindex() as u32;
    // SAFETY: the value is copied out before the map could change under us.
    unsafe { PL_IFACES.get(ifindex) }.copied()
}
