//! `[[endpoint]]` sections: a consumer network's addresses for a service, and who may use
//! them.

use std::{collections::HashSet, net::Ipv4Addr};

use pl_common::{cidr::Cidr, maps::MAX_ENDPOINTS};

use super::{
    Endpoint, Network, Service,
    addresses::Addresses,
    found::Found,
    networks::network_id,
    section::{Section, name_of},
    services,
};
use crate::config::{Config, ConfigError, EndpointCfg, ServiceCfg, Source};

/// The endpoints of `services` (one per `[[service]]` entry, None where it has errors);
/// then every `accepted_endpoints` entry must name one.
pub(super) fn endpoints(
    src: &Source,
    cfg: &Config,
    networks: &[Network],
    services: &[Option<Service>],
    addrs: &mut Addresses,
    found: &mut Found<'_>,
) -> Vec<Endpoint> {
    let mut names = HashSet::new();
    let mut endpoints = Vec::new();
    for (i, e) in cfg.endpoint.iter().enumerate() {
        let c = e.get_ref();
        let sec = Section::new(src, "endpoint", i, c.name.get_ref(), e.span().start);
        found.keep(name_of(&sec, &c.name, &mut names));
        endpoints.push(endpoint(&sec, cfg, c, networks, services, addrs, found));
    }
    if endpoints.len() > MAX_ENDPOINTS as usize {
        found.errors.push(src.error(
            None,
            "[[endpoint]]",
            "",
            format!("{} endpoints; at most {MAX_ENDPOINTS}", endpoints.len()),
        ));
    }
    accepted_endpoints(src, cfg, &endpoints, found);
    endpoints
}

/// One endpoint; its errors go to `found` (what is wrong is left empty). Against a service
/// with errors of its own only what does not depend on that service is checked.
fn endpoint(
    sec: &Section<'_>,
    cfg: &Config,
    c: &EndpointCfg,
    networks: &[Network],
    services: &[Option<Service>],
    addrs: &mut Addresses,
    found: &mut Found<'_>,
) -> Endpoint {
    let name = c.name.get_ref().clone();
    let service = match service_id(cfg, sec, c) {
        Ok(i) => Some(i),
        Err(_) if found.unparsed.services.contains(c.service.get_ref()) => None,
        Err(e) => {
            found.errors.push(e);
            None
        }
    };
    let network = found.keep(network_id(networks, sec, "network", &c.network));
    let svc_cfg = service.map(|i| cfg.service[i].get_ref());
    if let Some(svc_cfg) = svc_cfg {
        found.keep(allowed(sec, c, svc_cfg));
    }
    let svc = service.and_then(|i| services[i].as_ref());
    let own = network.and_then(|n| found.keep(addresses(sec, c, &name, n, svc, addrs)));
    let sources = found.keep(sources(sec, c));
    let accepted = svc_cfg.is_some_and(|s| {
        !s.acceptance_required || s.accepted_endpoints.iter().any(|a| a.get_ref() == &name)
    });
    Endpoint {
        removed: false,
        name,
        service: service.unwrap_or_default() as u16,
        network: network.unwrap_or_default(),
        addrs: own.unwrap_or_default(),
        sources: sources.unwrap_or_default(),
        accepted,
    }
}

/// The index of the service the endpoint names.
fn service_id(cfg: &Config, sec: &Section<'_>, c: &EndpointCfg) -> Result<usize, ConfigError> {
    cfg.service
        .iter()
        .position(|s| s.get_ref().name.get_ref() == c.service.get_ref())
        .map_or_else(
            || {
                sec.err(
                    "service",
                    Some(c.service.span().start),
                    format!("no service named {:?}", c.service.get_ref()),
                )
            },
            Ok,
        )
}

/// The endpoint's network is an allowed principal of its service.
fn allowed(sec: &Section<'_>, c: &EndpointCfg, svc_cfg: &ServiceCfg) -> Result<(), ConfigError> {
    let allowed = svc_cfg
        .allowed_principals
        .iter()
        .any(|p| p.get_ref() == "*" || p.get_ref() == c.network.get_ref());
    if !allowed {
        return sec.err(
            "network",
            Some(c.network.span().start),
            format!("network {:?} is not an allowed principal of service {:?} (add it to allowed_principals)", c.network.get_ref(), svc_cfg.name.get_ref()),
        );
    }
    Ok(())
}

/// `addresses`: one per zone, only in zones where `service` has an NLB address, each
/// claimed in the endpoint's network.
fn addresses(
    sec: &Section<'_>,
    c: &EndpointCfg,
    name: &str,
    network: u16,
    service: Option<&Service>,
    taken: &mut Addresses,
) -> Result<Vec<(Ipv4Addr, u8)>, ConfigError> {
    let mut addrs = Vec::new();
    for (ip, zone, at) in taken.zoned(sec, "addresses", &c.addresses)? {
        // A service with errors of its own: its zones are not known.
        if let Some(service) = service
            && !service.nlbs.iter().any(|(_, z)| *z == zone)
        {
            return sec.err(
                "addresses",
                Some(at),
                format!(
                    "zone {:?} has no NLB address of service {:?}",
                    taken.zones.name(zone),
                    service.name
                ),
            );
        }
        if addrs.iter().any(|(_, z)| *z == zone) {
            return sec.err(
                "addresses",
                Some(at),
                format!(
                    "zone {:?} has two addresses (one per zone)",
                    taken.zones.name(zone)
                ),
            );
        }
        taken.claims.claim(
            sec,
            "addresses",
            at,
            network,
            ip,
            format!("an address of endpoint {name:?}"),
        )?;
        addrs.push((ip, zone));
    }
    Ok(addrs)
}

/// `allowed_sources`, parsed; any source when absent.
fn sources(sec: &Section<'_>, c: &EndpointCfg) -> Result<Vec<Cidr>, ConfigError> {
    match &c.allowed_sources {
        None => Ok(vec![Cidr::ANY]),
        Some(list) => list
            .iter()
            .map(|s| {
                s.get_ref().parse::<Cidr>().or_else(|e| {
                    sec.err(
                        "allowed_sources",
                        Some(s.span().start),
                        format!("{:?}: {e}", s.get_ref()),
                    )
                })
            })
            .collect(),
    }
}

/// Every `accepted_endpoints` entry names an endpoint (one whose types were wrong counts).
fn accepted_endpoints(src: &Source, cfg: &Config, endpoints: &[Endpoint], found: &mut Found<'_>) {
    for (i, s) in cfg.service.iter().enumerate() {
        let sec = services::section(src, i, s);
        for a in &s.get_ref().accepted_endpoints {
            let known = endpoints.iter().any(|e| &e.name == a.get_ref())
                || found.unparsed.endpoints.contains(a.get_ref());
            if !known {
                found.errors.push(sec.error(
                    "accepted_endpoints",
                    Some(a.span().start),
                    format!("no endpoint named {:?}", a.get_ref()),
                ));
            }
        }
    }
}
