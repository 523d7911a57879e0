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

/// The verdict for a frame addressed to another MAC: passed on, unless it is an IPv4 or
/// IPv6 packet for the DNS address (any protocol, fragments and options included, so
/// nothing gets past the budget) and over this CPU's budget.
#[inline(always)]
pub fn not_our_mac(ctx: &XdpContext, iface: &IfaceConfig, stats: &Slot) -> u32 {
    // SAFETY: bounds-checked by ptr_at.
    let ethertype = ptr_at::<[u8; ETH_HLEN]>(ctx, 0).map(|e| unsafe { [(*e)[12], (*e)[13]] });
    let to_dns = match ethertype {
        // The destination address: 16 bytes into the IPv4 header.
        Some([0x08, 0x00]) => ptr_at::<[u8; 4]>(ctx, ETH_HLEN + 16)
            // SAFETY: bounds-checked by ptr_at.
            .map(|d| unsafe { *d })
            .and_then(|d| endpoint::addr(u32::from_ne_bytes(d), iface.network))
            .is_some_and(|a| a.kind == ADDR_DNS),
        // 24 bytes into the IPv6 header.
        Some([0x86, 0xdd]) => ptr_at::<[u8; 16]>(ctx, ETH_HLEN + 24)
            // SAFETY: bounds-checked by ptr_at.
            .map(|d| unsafe { *d })
            .and_then(|d| endpoint::addr6(d, iface.network))
            .is_some_and(|a| a.kind == ADDR_DNS),
        _ => false,
    };
    verdict(stats, iface.network, to_dns)
}

#[inline(always)]
fn verdict(stats: &Slot, network: u16, to_dns: bool) -> u32 {
    if to_dns && !within_budget(network) {
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
