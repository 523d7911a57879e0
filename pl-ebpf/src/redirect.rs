//! Redirect: out of the egress network's interface, through the devmap.

use aya_ebpf::bindings::xdp_action;

use crate::maps::PL_EGRESS;

#[inline(always)]
pub fn to_network(network: u16) -> u32 {
    PL_EGRESS
        .redirect(u32::from(network), 0)
        .unwrap_or(xdp_action::XDP_DROP)
}
