//! `[[endpoint]]` sections: a consumer network's addresses for a service, and who may use
//! them.

use std::{collections::HashSet, net::Ipv4Addr};

use pl_common::{cidr::Cidr, maps::MAX_ENDPOINTS};

use super::{
    Endpoint, Network, Service,
    addresses::Addresses,
    networks::network_id,
    section::{Section, name_of},
    services,
};
use crate::config::{Config, ConfigError, EndpointCfg, ServiceCfg, Source};

/// The endpoints of `services`; then every `accepted_endpoints` entry must name one.
pub(super) fn endpoints(
    src: &Source,
    cfg: &Config,
    networks: &[Network],
    services: &[Service],
    addrs: &mut Addresses,
) -> Result<Vec<Endpoint>, ConfigError> {
    let mut names = HashSet::new();
    let mut endpoints = Vec::new();
    for (i, e) in cfg.endpoint.iter().enumerate() {
        let c = e.get_ref();
        let sec = Section::new(src, "endpoint", i, c.name.get_ref(), e.span().start);
        let name = name_of(&sec, &c.name, &mut names)?;
        let service = service_id(services, &sec, c)?;
        let network = network_id(networks, &sec, "network", &c.network)?;
        let svc_cfg = cfg.service[service].get_ref();
        allowed(&sec, c, svc_cfg)?;
        let own = addresses(&sec, c, &name, network, &services[service], svc_cfg, addrs)?;
        let sources = sources(&sec, c)?;
        let accepted = !svc_cfg.acceptance_required
            || svc_cfg
                .accepted_endpoints
                .iter()
                .any(|a| a.get_ref() == &name);
        endpoints.push(Endpoint {
            removed: false,
            name,
            service: service as u16,
            network,
            addrs: own,
            sources,
            accepted,
        });
    }
    if endpoints.len() > MAX_ENDPOINTS as usize {
        return Err(src.error(
            None,
            "[[endpoint]]",
            "",
            format!("{} endpoints; at most {MAX_ENDPOINTS}", endpoints.len()),
        ));
    }
    accepted_endpoints(src, cfg, &endpoints)?;
    Ok(endpoints)
}

/// The index of the service the endpoint names.
fn service_id(
    services: &[Service],
    sec: &Section<'_>,
    c: &EndpointCfg,
) -> Result<usize, ConfigError> {
    services
        .iter()
        .position(|s| &s.name == c.service.get_ref())
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
    service: &Service,
    svc_cfg: &ServiceCfg,
    taken: &mut Addresses,
) -> Result<Vec<(Ipv4Addr, u8)>, ConfigError> {
    let mut addrs = Vec::new();
    for (ip, zone, at) in taken.zoned(sec, "addresses", &c.addresses)? {
        if !service.nlbs.iter().any(|(_, z)| *z == zone) {
            return sec.err(
                "addresses",
                Some(at),
                format!(
                    "zone {:?} has no NLB address of service {:?}",
                    taken.zones.name(zone),
                    svc_cfg.name.get_ref()
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

/// Every `accepted_endpoints` entry names an endpoint.
fn accepted_endpoints(
    src: &Source,
    cfg: &Config,
    endpoints: &[Endpoint],
) -> Result<(), ConfigError> {
    for (i, s) in cfg.service.iter().enumerate() {
        let sec = services::section(src, i, s);
        for a in &s.get_ref().accepted_endpoints {
            if !endpoints.iter().any(|e| &e.name == a.get_ref()) {
                return sec.err(
                    "accepted_endpoints",
                    Some(a.span().start),
                    format!("no endpoint named {:?}", a.get_ref()),
                );
            }
        }
    }
    Ok(())
}
