//! ARP: answer for our addresses with the interface's MAC; learn target MACs from the
//! replies to the requests userspace sends from an NLB address (or, on a node that serves
//! no zone yet, as probes from 0.0.0.0), and a known target's new MAC from its gratuitous
//! ARP. Requests for a network's DNS address go to the stack, where pl's DNS server
//! answers them.

use aya_ebpf::{bindings::xdp_action, programs::XdpContext};
use pl_common::{
    endpoint::{ADDR_DNS, ADDR_NLB, AddrKey},
    iface::{IFACE_PROVIDER, IfaceConfig},
    proto::ETH_HLEN,
    stats::IfaceCounter,
};

use crate::{
    conntrack, lease,
    maps::{PL_ADDRS, PL_NEIGH},
    parse::ptr_at,
    redirect,
    stats::Slot,
};

/// The Ethernet/IPv4 ARP body.
#[repr(C)]
struct ArpBody {
    htype: [u8; 2],
    ptype: [u8; 2],
    hlen: u8,
    plen: u8,
    op: [u8; 2],
    sha: [u8; 6],
    spa: [u8; 4],
    tha: [u8; 6],
    tpa: [u8; 4],
}

const OP_REQUEST: u16 = 1;
const OP_REPLY: u16 = 2;

#[inline(always)]
pub fn handle(ctx: &XdpContext, iface: &IfaceConfig, stats: &Slot) -> u32 {
    let (Some(eth), Some(arp)) = (
        ptr_at::<[u8; ETH_HLEN]>(ctx, 0),
        ptr_at::<ArpBody>(ctx, ETH_HLEN),
    ) else {
        stats.add(IfaceCounter::DroppedArp, 1);
        return xdp_action::XDP_DROP;
    };
    // SAFETY: both pointers are bounds-checked and the frame is ours to rewrite.
    let (eth, arp) = unsafe { (&mut *eth, &mut *arp) };
    if arp.htype != [0, 1] || arp.ptype != [8, 0] || arp.hlen != 6 || arp.plen != 4 {
        stats.add(IfaceCounter::DroppedArp, 1);
        return xdp_action::XDP_DROP;
    }
    let op = u16::from_be_bytes(arp.op);
    let ours = |ip: [u8; 4]| {
        let key = AddrKey {
            addr_be: u32::from_ne_bytes(ip),
            network: iface.network,
            _pad: 0,
        };
        // SAFETY: copied out at once.
        unsafe { PL_ADDRS.get(key) }.copied()
    };
    let asked_for = ours(arp.tpa);
    // The DNS address: its server's stack answers, with its own MAC (only where this node
    // answers for its addresses at all).
    if op == OP_REQUEST && asked_for.is_some_and(|a| a.kind == ADDR_DNS) {
        if !lease::held(conntrack::now()) {
            stats.add(IfaceCounter::DroppedArp, 1);
            return xdp_action::XDP_DROP;
        }
        if !crate::dns::within_budget(iface.network) {
            stats.add(IfaceCounter::DroppedDnsRate, 1);
            return xdp_action::XDP_DROP;
        }
        stats.add(IfaceCounter::PassedDns, 1);
        return xdp_action::XDP_PASS;
    }
    if op == OP_REQUEST && asked_for.is_some() && lease::held(conntrack::now()) {
        let asked = arp.tpa;
        let (asker_mac, asker_ip) = (arp.sha, arp.spa);
        arp.op = OP_REPLY.to_be_bytes();
        arp.tha = asker_mac;
        arp.tpa = asker_ip;
        arp.sha = iface.mac;
        arp.spa = asked;
        eth[..6].copy_from_slice(&asker_mac);
        eth[6..12].copy_from_slice(&iface.mac);
        stats.add(IfaceCounter::ArpReplied, 1);
        // Out of the ingress interface by redirect, not XDP_TX: a veth flushes an XDP_TX
        // frame to its peer only if the peer runs XDP itself, while a redirect always
        // flushes (the peer needs GRO, as for forwarded frames).
        return redirect::to_network(iface.network);
    }
    // What is learned must be a host's own address: unicast, not zero, and the frame's
    // Ethernet source (a spoofed sender field cannot point flows at a third host or at
    // broadcast).
    let sender_ok = arp.sha[0] & 1 == 0 && arp.sha != [0; 6] && arp.sha == eth[6..12];
    // A reply to a probe (sender 0.0.0.0: a node serving no zone yet asks without taking
    // an address), unicast to us on a provider network, teaches as much.
    let probe_reply =
        arp.tpa == [0; 4] && iface.flags & IFACE_PROVIDER != 0 && eth[..6] == iface.mac;
    if op == OP_REPLY && sender_ok && (probe_reply || asked_for.is_some_and(|a| a.kind == ADDR_NLB))
    {
        let key = AddrKey {
            addr_be: u32::from_ne_bytes(arp.spa),
            network: iface.network,
            _pad: 0,
        };
        let mut mac = [0u8; 8];
        mac[..6].copy_from_slice(&arp.sha);
        // A full table only means this MAC is not learned; userspace asks again.
        let _ = PL_NEIGH.insert(key, mac, 0);
        stats.add(IfaceCounter::ArpLearned, 1);
        return xdp_action::XDP_DROP;
    }
    // A gratuitous ARP (a host announcing its own address, as after a failover or a VRRP
    // move): a neighbour pl already knows changed MAC. Unknown senders teach nothing.
    if arp.spa == arp.tpa && sender_ok {
        let key = AddrKey {
            addr_be: u32::from_ne_bytes(arp.spa),
            network: iface.network,
            _pad: 0,
        };
        #[expect(
            clippy::needless_borrows_for_generic_args,
            reason = "by value the key would be copied again onto the 512-byte BPF stack"
        )]
        let known = PL_NEIGH.get_ptr_mut(&key);
        if let Some(known) = known {
            // SAFETY: a live map value; written whole.
            unsafe { (&mut (*known))[..6].copy_from_slice(&arp.sha) };
            stats.add(IfaceCounter::ArpLearned, 1);
            return xdp_action::XDP_DROP;
        }
    }
    stats.add(IfaceCounter::DroppedArp, 1);
    xdp_action::XDP_DROP
}
