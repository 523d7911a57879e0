//! DNS: a network's DNS address belongs to pl's DNS server, a macvlan with its own MAC in
//! a namespace of its own. Its frames reach the stack as any other host's do; past
//! `[dns] max_qps` on this CPU they are dropped here, so a flood costs the forwarding CPU
//! an XDP drop rather than the stack's way to the server's socket.

use aya_ebpf::{bindings::xdp_action, programs::XdpContext};
use pl_common::{
    dns::admit, endpoint::ADDR_DNS, iface::IfaceConfig, proto::ETH_HLEN, stats::IfaceCounter,
};

use crate::{
    conntrack, endpoint,
    maps::{PL_DNS_RATE, PL_SETTINGS},
    parse::ptr_at,
    stats::Slot,
};

/// The verdict for an IPv4 frame addressed to another MAC (`l4`: it carries TCP or UDP):
/// passed on, unless it is for the DNS address and over this CPU's budget.
#[inline(always)]
pub fn not_our_mac(ctx: &XdpContext, iface: &IfaceConfig, stats: &Slot, l4: bool) -> u32 {
    // The destination address: 16 bytes into the IPv4 header.
    let dst = if l4 {
        // SAFETY: bounds-checked by ptr_at.
        ptr_at::<[u8; 4]>(ctx, ETH_HLEN + 16).map(|d| unsafe { *d })
    } else {
        None
    };
    let to_dns = dst.is_some_and(|d| {
        endpoint::addr(u32::from_ne_bytes(d), iface.network).is_some_and(|a| a.kind == ADDR_DNS)
    });
    verdict(iface, stats, to_dns)
}

/// As [`not_our_mac`] for IPv6 (`l4`: TCP or UDP, after any extension headers).
#[inline(always)]
pub fn not_our_mac6(ctx: &XdpContext, iface: &IfaceConfig, stats: &Slot, l4: bool) -> u32 {
    // The destination address: 24 bytes into the IPv6 header.
    let dst = if l4 {
        // SAFETY: bounds-checked by ptr_at.
        ptr_at::<[u8; 16]>(ctx, ETH_HLEN + 24).map(|d| unsafe { *d })
    } else {
        None
    };
    let to_dns =
        dst.is_some_and(|d| endpoint::addr6(d, iface.network).is_some_and(|a| a.kind == ADDR_DNS));
    verdict(iface, stats, to_dns)
}

#[inline(always)]
fn verdict(iface: &IfaceConfig, stats: &Slot, to_dns: bool) -> u32 {
    if to_dns && !within_budget(iface.network) {
        stats.add(IfaceCounter::DroppedDnsRate, 1);
        return xdp_action::XDP_DROP;
    }
    stats.add(IfaceCounter::PassedNotOurMac, 1);
    xdp_action::XDP_PASS
}

/// Counts one frame against this CPU's window for `network`; false past the budget.
/// ARP and neighbour solicitations for the DNS address count too.
#[inline(always)]
pub fn within_budget(network: u16) -> bool {
    let per_window = PL_SETTINGS.get(0).map_or(0, |s| s.dns_per_window);
    match PL_DNS_RATE.get_ptr_mut(u32::from(network)) {
        // SAFETY: this CPU's element; nothing else on this CPU runs meanwhile.
        Some(w) => admit(unsafe { &mut *w }, conntrack::now(), per_window),
        None => false,
    }
}
