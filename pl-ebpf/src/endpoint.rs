//! Who a consumer packet with no flow is for (one `PL_POLICY` lookup: endpoint, acceptance,
//! listener, Maglev table, NLB addresses) and whether it may open one: spoof check, allowed
//! sources (only for an endpoint with a list), Maglev slot -> target.

use aya_ebpf::maps::lpm_trie::Key;
use pl_common::{
    endpoint::{ADDR_DNS, ADDR_NLB, AddrInfo, AddrKey, AddrKey6, SourceKey, SourceKey6},
    flow::FlowKey,
    flow6::{FlowKey6, unmapped},
    maglev::NO_BACKEND,
    policy::{
        POLICY_ACCEPTED, POLICY_ANY_SOURCE, POLICY_XLAT, Policy, Policy6, PolicyKey, PolicyKey6,
    },
    service::{MAX_ZONES, TargetInfo, maglev_slot},
    stats::EndpointCounter,
};

use crate::maps::{
    PL_ADDRS, PL_ADDRS6, PL_MAGLEV, PL_POLICY, PL_POLICY6, PL_SOURCES, PL_SOURCES6, PL_TARGETS,
    PL_TARGETS6,
};

/// What a packet with no flow is addressed to (`P`: the family's policy).
pub enum Dest<P: 'static = Policy> {
    /// A listener on an endpoint address.
    Listener(&'static P),
    /// An endpoint address (this endpoint id), with no listener on that port.
    NoListener(u16),
    /// An NLB address: a health probe's answer, or a provider packet with no flow.
    Nlb,
    /// An IPv4 listener whose service has IPv6 targets: for the IPv6 path.
    Xlat,
    /// None of our addresses.
    NotOurs,
}

#[inline(always)]
pub fn addr(addr_be: u32, network: u16) -> Option<&'static AddrInfo> {
    // SAFETY: read at once by the callers.
    unsafe { PL_ADDRS.get(AddrKey::new(addr_be, network)) }
}

/// The policy of `key`'s listener (one lookup, the common case), or what its address is.
#[inline(always)]
pub fn dest(key: &FlowKey) -> Dest {
    // SAFETY: a map value, only read.
    if let Some(p) = unsafe { PL_POLICY.get(PolicyKey::of(key)) } {
        if p.flags & POLICY_XLAT != 0 {
            return Dest::Xlat;
        }
        return Dest::Listener(p);
    }
    match addr(key.dst_be, key.network) {
        // The DNS address belongs to the stack (its own MAC): nothing is forwarded to it.
        None => Dest::NotOurs,
        Some(a) if a.kind == ADDR_DNS => Dest::NotOurs,
        Some(a) if a.kind == ADDR_NLB => Dest::Nlb,
        Some(a) => Dest::NoListener(a.id),
    }
}

/// The target Maglev table `table` gives flow hash `hash`: its id and what the maps hold
/// for it.
#[inline(always)]
fn pick(table: u32, hash: u32) -> Result<(u32, &'static TargetInfo), EndpointCounter> {
    let id = *PL_MAGLEV
        .get(maglev_slot(table, hash))
        .ok_or(EndpointCounter::RefusedNoTarget)?;
    if id == NO_BACKEND {
        return Err(EndpointCounter::RefusedNoTarget);
    }
    let target = PL_TARGETS.get(id).ok_or(EndpointCounter::RefusedNoTarget)?;
    Ok((id, target))
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
    let (target_id, target) = pick(p.maglev_table, hash)?;
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

// IPv6: the same judgments over the IPv6 maps.

/// What an IPv6 address is on `network`, if one of ours.
#[inline(always)]
pub fn addr6(addr: [u8; 16], network: u16) -> Option<&'static AddrInfo> {
    // SAFETY: read at once by the callers.
    unsafe { PL_ADDRS6.get(AddrKey6::new(addr, network)) }
}

/// [`dest`] for a packet keyed in the IPv6 table. `V4`: the packet is IPv4 (its key's
/// addresses are mapped), and its address is judged in the IPv4 maps.
#[inline(always)]
pub fn dest6<const V4: bool>(key: &FlowKey6) -> Dest<Policy6> {
    // SAFETY: a map value, only read.
    if let Some(p) = unsafe { PL_POLICY6.get(PolicyKey6::of(key)) } {
        return Dest::Listener(p);
    }
    let info = if V4 {
        unmapped(&key.dst).and_then(|a| addr(a, key.network))
    } else {
        addr6(key.dst, key.network)
    };
    match info {
        // The DNS address belongs to the stack (its own MAC): nothing is forwarded to it.
        None => Dest::NotOurs,
        Some(a) if a.kind == ADDR_DNS => Dest::NotOurs,
        Some(a) if a.kind == ADDR_NLB => Dest::Nlb,
        Some(a) => Dest::NoListener(a.id),
    }
}

/// Where an admitted IPv6 flow goes.
pub struct Admitted6 {
    pub policy: &'static Policy6,
    pub nlb: [u8; 16],
    pub target_addr: [u8; 16],
    pub target_mac: [u8; 6],
    pub target: u32,
    pub hash: u32,
}

/// [`admit`] for a flow in the IPv6 table. Its targets' addresses come from
/// `PL_TARGETS6` (an IPv4 target's mapped), its source from the policy's NLB addresses
/// of the targets' family. `V4`: the consumer is IPv4 (mapped in `key`), judged against
/// the IPv4 address and source maps.
#[inline(always)]
pub fn admit6<const V4: bool>(
    key: &FlowKey6,
    p: &'static Policy6,
) -> Result<Admitted6, EndpointCounter> {
    if p.flags & POLICY_ACCEPTED == 0 {
        return Err(EndpointCounter::RefusedNotAccepted);
    }
    if V4 {
        let src_be = unmapped(&key.src).ok_or(EndpointCounter::RefusedSource)?;
        if addr(src_be, key.network).is_some() {
            return Err(EndpointCounter::RefusedSpoofed);
        }
        if p.flags & POLICY_ANY_SOURCE == 0 {
            let source = Key::new(64, SourceKey::new(p.endpoint, src_be));
            if PL_SOURCES.get(source).is_none() {
                return Err(EndpointCounter::RefusedSource);
            }
        }
    } else {
        if addr6(key.src, key.network).is_some() {
            return Err(EndpointCounter::RefusedSpoofed);
        }
        if p.flags & POLICY_ANY_SOURCE == 0 {
            let source = Key::new(32 + 128, SourceKey6::new(p.endpoint, key.src));
            if PL_SOURCES6.get(source).is_none() {
                return Err(EndpointCounter::RefusedSource);
            }
        }
    }
    let hash = key.hash();
    let (target_id, target) = pick(p.maglev_table, hash)?;
    let target_addr = *PL_TARGETS6
        .get(target_id)
        .ok_or(EndpointCounter::RefusedNoTarget)?;
    let nlb = p.nlb[usize::from(target.zone) % MAX_ZONES];
    if nlb == [0; 16] || target_addr == [0; 16] {
        return Err(EndpointCounter::RefusedNoTarget);
    }
    Ok(Admitted6 {
        policy: p,
        nlb,
        target_addr,
        target_mac: target.mac,
        target: target_id,
        hash,
    })
}
