//! Classify: which of our interfaces (if any) the frame arrived on.

use aya_ebpf::programs::XdpContext;
use pl_common::iface::{IFACE_ACTIVE, IfaceConfig};

use crate::maps::PL_IFACES;

#[inline(always)]
pub fn ingress(ctx: &XdpContext) -> Option<IfaceConfig> {
    let c = PL_IFACES.get(ctx.ingress_ifindex() as u32)?;
    (c.flags & IFACE_ACTIVE != 0).then_some(*c)
}

/// Whether the frame is addressed to this interface, broadcast (ARP requests) or an IPv6
/// multicast group (neighbour solicitations go to solicited-node groups; the NDP stage
/// judges which are ours). A frame for another host on the segment is not pl's to judge.
/// Too short to say: yes, and the parse verdict stands.
#[inline(always)]
pub fn addressed_to_us(ctx: &XdpContext, iface: &IfaceConfig) -> bool {
    let Some(eth) = crate::parse::ptr_at::<network_types::eth::EthHdr>(ctx, 0) else {
        return true;
    };
    // SAFETY: bounds-checked by ptr_at.
    let dst = unsafe { (*eth).dst_addr };
    dst == iface.mac || dst == [0xff; 6] || (dst[0] == 0x33 && dst[1] == 0x33)
}
