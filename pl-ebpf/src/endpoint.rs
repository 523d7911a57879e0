//! Endpoint lookup and policy for a consumer packet that matches no flow: is the
//! destination an endpoint here, does its service listen on that port, is the endpoint
//! accepted, is the source allowed, which target takes the flow.

use aya_ebpf::maps::lpm_trie::Key;
use pl_common::{
    endpoint::{AddrKey, ENDPOINT_ACCEPTED, ENDPOINT_ANY_SOURCE, ListenerKey, SourceKey},
    flow::FlowKey,
    maglev::NO_BACKEND,
    service::{MAX_ZONES, SERVICE_CROSS_ZONE, maglev_slot, maglev_table},
    stats::EndpointCounter,
};

use crate::maps::{
    PL_ADDRS, PL_ENDPOINTS, PL_LISTENERS, PL_MAGLEV, PL_SERVICES, PL_SOURCES, PL_TARGETS,
};

/// Where an admitted flow goes.
pub struct Admitted {
    pub nlb_be: u32,
    pub target_be: u32,
    pub target_port_be: u16,
    pub target_mac: [u8; 6],
    pub provider_network: u16,
    pub provider_mac: [u8; 6],
    pub target: u32,
}

/// Admits a new flow of `key` to endpoint `endpoint` (whose address is in zone `zone`), or
/// says which refusal counter it earns.
#[inline(always)]
pub fn admit(key: &FlowKey, endpoint: u16, zone: u8) -> Result<Admitted, EndpointCounter> {
    let ep = PL_ENDPOINTS
        .get(u32::from(endpoint))
        .ok_or(EndpointCounter::RefusedNotAccepted)?;
    let listener = ListenerKey {
        service: ep.service,
        port_be: key.dport_be,
        proto: key.proto,
        _pad: [0; 3],
    };
    // SAFETY: copied out at once.
    let listener = unsafe { PL_LISTENERS.get(listener) }
        .copied()
        .ok_or(EndpointCounter::RefusedNoListener)?;
    if ep.flags & ENDPOINT_ACCEPTED == 0 {
        return Err(EndpointCounter::RefusedNotAccepted);
    }
    // Nobody else on the network may hold our addresses.
    // SAFETY: only tested for presence.
    let own = unsafe {
        PL_ADDRS.get(AddrKey {
            addr_be: key.src_be,
            network: key.network,
            _pad: 0,
        })
    };
    if own.is_some() {
        return Err(EndpointCounter::RefusedSpoofed);
    }
    if ep.flags & ENDPOINT_ANY_SOURCE == 0 {
        let source = Key::new(64, SourceKey::new(endpoint, key.src_be));
        if PL_SOURCES.get(source).is_none() {
            return Err(EndpointCounter::RefusedSource);
        }
    }
    let svc = PL_SERVICES
        .get(u32::from(ep.service))
        .ok_or(EndpointCounter::RefusedNoTarget)?;
    let zone = if svc.flags & SERVICE_CROSS_ZONE != 0 {
        None
    } else {
        Some(zone)
    };
    let slot = maglev_slot(maglev_table(ep.service, zone), key.hash());
    let target_id = *PL_MAGLEV
        .get(slot)
        .ok_or(EndpointCounter::RefusedNoTarget)?;
    if target_id == NO_BACKEND {
        return Err(EndpointCounter::RefusedNoTarget);
    }
    let target = PL_TARGETS
        .get(target_id)
        .ok_or(EndpointCounter::RefusedNoTarget)?;
    let nlb_be = svc.nlb_be[usize::from(target.zone) % MAX_ZONES];
    if nlb_be == 0 {
        return Err(EndpointCounter::RefusedNoTarget);
    }
    Ok(Admitted {
        nlb_be,
        target_be: target.addr_be,
        target_port_be: listener.target_port_be,
        target_mac: target.mac,
        provider_network: svc.network,
        provider_mac: svc.provider_mac,
        target: target_id,
    })
}
