//! Classify: which of our interfaces (if any) the frame arrived on.

use aya_ebpf::programs::XdpContext;
use pl_common::iface::{IFACE_ACTIVE, IfaceConfig};

use crate::maps::PL_IFACES;

#[inline(always)]
pub fn ingress(ctx: &XdpContext) -> Option<IfaceConfig> {
    let c = PL_IFACES.get(ctx.ingress_ifindex() as u32)?;
    (c.flags & IFACE_ACTIVE != 0).then_some(*c)
}
