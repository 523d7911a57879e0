//! Who a consumer packet with no flow is for (one `PL_POLICY` lookup: endpoint, acceptance,
//! listener, Maglev table, NLB addresses) and whether it may open one: spoof check, allowed
//! sources (only for an endpoint with a list), Maglev slot -> target.

use aya_ebpf::maps::lpm_trie::Key;
use pl_common::{
    endpoint::{ADDR_NLB, AddrInfo, AddrKey, SourceKey},
    flow::FlowKey,
    maglev::NO_BACKEND,
    policy::{POLICY_ACCEPTED, POLICY_ANY_SOURCE, Policy, PolicyKey},
    service::{MAX_ZONES, maglev_slot},
    stats::EndpointCounter,
};

use crate::maps::{PL_ADDRS, PL_MAGLEV, PL_POLICY, PL_SOURCES, PL_TARGETS};

/// What a packet with no flow is addressed to.
pub enum Dest {
    /// A listener on an endpoint address.
    Listener(&'static Policy),
    /// An endpoint address (this endpoint id), with no listener on that port.
    NoListener(u16),
    /// An NLB address: a health probe's answer, or a provider packet with no flow.
    Nlb,
    /// None of our addresses.
    NotOurs,
}

#[inline(always)]
fn addr(addr_be: u32, network: u16) -> Option<&'static AddrInfo> {
    // SAFETY: read at once by the callers.
    unsafe { PL_ADDRS.get(AddrKey::new(addr_be, network)) }
}

/// The policy of `key`'s listener (one lookup, the common case), or what its address is.
#[inline(always)]
pub fn dest(key: &FlowKey) -> Dest {
    // SAFETY: a map value, only read.
    if let Some(p) = unsafe { PL_POLICY.get(PolicyKey::of(key)) } {
        return Dest::Listener(p);
    }
    match addr(key.dst_be, key.network) {
        None => Dest::NotOurs,
        Some(a) if a.kind == ADDR_NLB => Dest::Nlb,
        Some(a) => Dest::NoListener(a.id),
    }
}

/// Where an admitted flow goes.
pub struct Admitted {
    pub policy: &'static Policy,
    pub nlb_be: u32,
    pub target_be: u32,
    pub target_mac: [u8; 6],
    pub target: u32,
    /// The flow hash (Maglev slot; start of the SNAT port walk), computed once.
    pub hash: u32,
}

/// Admits a new flow of `key` under `p`, or says which refusal counter it earns.
#[inline(always)]
pub fn admit(key: &FlowKey, p: &'static Policy) -> Result<Admitted, EndpointCounter> {
    if p.flags & POLICY_ACCEPTED == 0 {
        return Err(EndpointCounter::RefusedNotAccepted);
    }
    // Nobody else on the network may hold our addresses.
    if addr(key.src_be, key.network).is_some() {
        return Err(EndpointCounter::RefusedSpoofed);
    }
    if p.flags & POLICY_ANY_SOURCE == 0 {
        let source = Key::new(64, SourceKey::new(p.endpoint, key.src_be));
        if PL_SOURCES.get(source).is_none() {
            return Err(EndpointCounter::RefusedSource);
        }
    }
    let hash = key.hash();
    let target_id = *PL_MAGLEV
        .get(maglev_slot(p.maglev_table, hash))
        .ok_or(EndpointCounter::RefusedNoTarget)?;
    if target_id == NO_BACKEND {
        return Err(EndpointCounter::RefusedNoTarget);
    }
    let target = PL_TARGETS
        .get(target_id)
        .ok_or(EndpointCounter::RefusedNoTarget)?;
    let nlb_be = p.nlb_be[usize::from(target.zone) % MAX_ZONES];
    if nlb_be == 0 {
        return Err(EndpointCounter::RefusedNoTarget);
    }
    Ok(Admitted {
        policy: p,
        nlb_be,
        target_be: target.addr_be,
        target_mac: target.mac,
        target: target_id,
        hash,
    })
}
