//! `[[service]]` sections: NLB addresses, listeners, targets and the health check.

use std::{collections::HashSet, net::IpAddr};

use pl_common::{
    maps::{MAX_SERVICES, MAX_TARGETS},
    proto::{IPPROTO_TCP, IPPROTO_UDP},
};
use toml::Spanned;

use super::{
    Listener, Network, Service, Target,
    addresses::Addresses,
    found::Found,
    health_check::health_check,
    networks::{hop_of, network_id},
    section::{Section, family, name_of},
};
use crate::config::{Config, ConfigError, ListenerCfg, ServiceCfg, Source};

/// The services, one per `[[service]]` entry (None where it has errors), and the next
/// unused target id.
pub(super) fn services(
    src: &Source,
    cfg: &Config,
    networks: &[Network],
    addrs: &mut Addresses,
    found: &mut Found<'_>,
) -> (Vec<Option<Service>>, u32) {
    let mut names = HashSet::new();
    let mut services = Vec::new();
    let mut next_target = 0u32; // ids from 0; `align` carries them across reloads
    for (i, s) in cfg.service.iter().enumerate() {
        let sec = section(src, i, s);
        found.keep(name_of(&sec, &s.get_ref().name, &mut names));
        services.push(service(
            &sec,
            s.get_ref(),
            networks,
            addrs,
            &mut next_target,
            found,
        ));
    }
    if services.len() > MAX_SERVICES as usize || next_target > MAX_TARGETS {
        found.errors.push(src.error(
            None,
            "[[service]]",
            "",
            format!(
                "{} services, {next_target} targets; at most {MAX_SERVICES} and {MAX_TARGETS}",
                services.len()
            ),
        ));
    }
    principals(src, cfg, networks, found);
    (services, next_target)
}

/// One service; None if it has errors (each recorded in `found`). Parts that do not depend
/// on each other are all checked.
fn service(
    sec: &Section<'_>,
    c: &ServiceCfg,
    networks: &[Network],
    addrs: &mut Addresses,
    next_target: &mut u32,
    found: &mut Found<'_>,
) -> Option<Service> {
    let network = found.keep(network_id(networks, sec, "network", &c.network));
    let nlbs = network.and_then(|n| found.keep(nlbs(sec, c, c.name.get_ref(), n, addrs)));
    let listeners = found.keep(listeners(sec, c));
    let health = listeners
        .as_ref()
        .and_then(|l| found.keep(health_check(sec, c.health_check.as_ref(), l)));
    let (network, nlbs, listeners, health) = (network?, nlbs?, listeners?, health?);
    let mut service = Service {
        removed: false,
        nlbs,
        name: c.name.get_ref().clone(),
        network,
        cross_zone: c.cross_zone,
        listeners,
        targets: Vec::new(),
        health,
    };
    let net = &networks[usize::from(network)];
    service.targets = found.keep(targets(sec, c, &service, net, addrs, next_target))?;
    Some(service)
}

/// Where the `i`th service `s` is, for errors.
pub(super) fn section<'a>(src: &'a Source, i: usize, s: &Spanned<ServiceCfg>) -> Section<'a> {
    Section::new(
        src,
        "service",
        i,
        s.get_ref().name.get_ref(),
        s.span().start,
    )
}

/// Every `allowed_principals` entry is `"*"` or a network.
fn principals(src: &Source, cfg: &Config, networks: &[Network], found: &mut Found<'_>) {
    for (i, s) in cfg.service.iter().enumerate() {
        let sec = section(src, i, s);
        for p in &s.get_ref().allowed_principals {
            if p.get_ref() != "*" {
                found.keep(network_id(networks, &sec, "allowed_principals", p));
            }
        }
    }
}

/// `nlb_addresses`: at most one of each family per zone, each claimed in the service's
/// network.
fn nlbs(
    sec: &Section<'_>,
    c: &ServiceCfg,
    name: &str,
    network: u16,
    addrs: &mut Addresses,
) -> Result<Vec<(IpAddr, u8)>, ConfigError> {
    let mut nlbs: Vec<(IpAddr, u8)> = Vec::new();
    for (ip, zone, at) in addrs.zoned(sec, "nlb_addresses", &c.nlb_addresses)? {
        if nlbs
            .iter()
            .any(|(a, z)| *z == zone && a.is_ipv4() == ip.is_ipv4())
        {
            let zone = addrs.zones.name(zone);
            return sec.err(
                "nlb_addresses",
                Some(at),
                if ip.is_ipv4() {
                    format!("zone {zone:?} has two NLB addresses")
                } else {
                    format!("zone {zone:?} has two IPv6 NLB addresses (one of each family)")
                },
            );
        }
        addrs.claims.claim(
            sec,
            "nlb_addresses",
            at,
            network,
            ip,
            format!("an NLB address of service {name:?}"),
        )?;
        nlbs.push((ip, zone));
    }
    Ok(nlbs)
}

/// `listeners`: at least one, each (protocol, port) once.
fn listeners(sec: &Section<'_>, c: &ServiceCfg) -> Result<Vec<Listener>, ConfigError> {
    let mut listeners: Vec<Listener> = Vec::new();
    if c.listeners.get_ref().is_empty() {
        return sec.err(
            "listeners",
            Some(c.listeners.span().start),
            "must not be empty",
        );
    }
    for l in c.listeners.get_ref() {
        let lc = l.get_ref();
        let listener = listener(sec, lc)?;
        if listeners
            .iter()
            .any(|x| x.proto == listener.proto && x.port == listener.port)
        {
            return sec.err(
                "listeners.port",
                Some(lc.port.span().start),
                format!(
                    "{} port {} is listed twice",
                    lc.protocol.get_ref(),
                    listener.port
                ),
            );
        }
        listeners.push(listener);
    }
    Ok(listeners)
}

fn listener(sec: &Section<'_>, lc: &ListenerCfg) -> Result<Listener, ConfigError> {
    let proto = match lc.protocol.get_ref().as_str() {
        "tcp" => IPPROTO_TCP,
        "udp" => IPPROTO_UDP,
        other => {
            return sec.err(
                "listeners.protocol",
                Some(lc.protocol.span().start),
                format!("{other:?}: use \"tcp\" or \"udp\""),
            );
        }
    };
    let port = *lc.port.get_ref();
    if port == 0 {
        return sec.err(
            "listeners.port",
            Some(lc.port.span().start),
            "port 0 is not a port",
        );
    }
    let target_port = lc.target_port.as_ref().map_or(port, |t| *t.get_ref());
    if target_port == 0 {
        return sec.err(
            "listeners.target_port",
            lc.target_port.as_ref().map(|t| t.span().start),
            "port 0 is not a port",
        );
    }
    Ok(Listener {
        proto,
        port,
        target_port,
    })
}

/// `targets` of service `s` (its NLB addresses known): all of one family (as a target group
/// has one IP address type), each in a zone with an NLB address of that family, listed
/// once, given the next ids and the router `routes` send it to.
fn targets(
    sec: &Section<'_>,
    c: &ServiceCfg,
    s: &Service,
    net: &Network,
    addrs: &mut Addresses,
    next_target: &mut u32,
) -> Result<Vec<Target>, ConfigError> {
    let mut targets: Vec<Target> = Vec::new();
    for (ip, zone, at) in addrs.zoned(sec, "targets", &c.targets)? {
        if let Some(first) = targets.first()
            && first.ip.is_ipv4() != ip.is_ipv4()
        {
            return sec.err(
                "targets",
                Some(at),
                format!(
                    "{ip} is {} but {} is {}: a service's targets share one address family",
                    family(ip),
                    first.ip,
                    family(first.ip)
                ),
            );
        }
        if !s.nlbs.iter().any(|(_, z)| *z == zone) {
            return sec.err(
                "targets",
                Some(at),
                format!(
                    "zone {:?} has no NLB address (add one to nlb_addresses)",
                    addrs.zones.name(zone)
                ),
            );
        }
        if !s
            .nlbs
            .iter()
            .any(|(a, z)| *z == zone && a.is_ipv4() == ip.is_ipv4())
        {
            return sec.err(
                "targets",
                Some(at),
                format!(
                    "zone {:?} has no {} NLB address for {ip} to be reached from (add one to nlb_addresses)",
                    addrs.zones.name(zone),
                    family(ip)
                ),
            );
        }
        if targets.iter().any(|t| t.ip == ip) {
            return sec.err("targets", Some(at), format!("{ip} is given twice"));
        }
        // Services may share a target (one host serving several target groups),
        // but it may be nothing else in the network.
        addrs
            .claims
            .claim_target(sec, "targets", at, s.network, ip, &s.name)?;
        targets.push(Target {
            id: *next_target,
            ip,
            zone,
            via: hop_of(net, ip),
        });
        *next_target += 1;
    }
    Ok(targets)
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};

    use crate::model::testing::{EXAMPLE, build};

    #[test]
    fn services_may_share_a_target_but_not_list_it_twice() {
        let second = "\n[[service]]\nname = \"ledger\"\nnetwork = \"billing-prod\"\nnlb_addresses = [{ ip = \"10.9.0.240\", zone = \"z1\" }]\nlisteners = [{ protocol = \"tcp\", port = 443 }]\ntargets = [{ ip = \"10.9.0.11\", zone = \"z1\" }]\n";
        let m = build(&format!("{EXAMPLE}{second}")).unwrap_or_else(|e| panic!("{e}"));
        let ids: Vec<(u32, IpAddr)> = m
            .services
            .iter()
            .flat_map(|s| s.targets.iter().map(|t| (t.id, t.ip)))
            .filter(|(_, ip)| *ip == IpAddr::V4(Ipv4Addr::new(10, 9, 0, 11)))
            .collect();
        assert_eq!(ids.len(), 2, "one target per service: {ids:?}");
        assert_ne!(ids[0].0, ids[1].0, "each service's target has its own id");
        let twice = second.replace(
            "targets = [{ ip = \"10.9.0.11\", zone = \"z1\" }]",
            "targets = [{ ip = \"10.9.0.11\", zone = \"z1\" }, { ip = \"10.9.0.11\", zone = \"z1\" }]",
        );
        let e = build(&format!("{EXAMPLE}{twice}")).expect_err("a target given twice");
        assert!(e.to_string().contains("10.9.0.11 is given twice"), "{e}");
        // A shared target is still nothing else: not an NLB address of another service.
        let as_nlb = second.replace("10.9.0.240", "10.9.0.12");
        let e = build(&format!("{EXAMPLE}{as_nlb}")).expect_err("a target as an NLB address");
        assert!(
            e.to_string().contains("10.9.0.12 is already a target"),
            "{e}"
        );
    }
}
