//! `[[endpoint]]` sections: a consumer network's addresses for a service, and who may use
//! them.

use std::{collections::HashSet, net::IpAddr};

use pl_common::{
    cidr::Cidr,
    maps::{MAX_ENDPOINTS, MAX_POLICIES},
};

use super::{
    Endpoint, Network, Service,
    addresses::Addresses,
    cidr6::Cidr6,
    found::Found,
    networks::network_id,
    section::{Section, name_of},
    services,
};
use crate::config::{Config, ConfigError, EndpointCfg, ServiceCfg, Source};

/// An endpoint's state, as AWS names endpoint connections. Only `Available` forwards.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum EndpointState {
    /// Its network is not one of the service's `allowed_principals`.
    NotAllowed,
    /// Listed in the service's `rejected_endpoints`.
    Rejected,
    /// Accepted, or the service needs no acceptance.
    Available,
    /// Waiting for the service to accept it.
    #[default]
    PendingAcceptance,
}

impl EndpointState {
    /// The state of an endpoint whose principal is `allowed`, that the service lists as
    /// `rejected`, and that is `accepted` (listed, or no acceptance required). Refusals
    /// win: not allowed, then rejected, before acceptance counts.
    pub fn derive(allowed: bool, rejected: bool, accepted: bool) -> Self {
        match (allowed, rejected, accepted) {
            (false, _, _) => Self::NotAllowed,
            (true, true, _) => Self::Rejected,
            (true, false, true) => Self::Available,
            (true, false, false) => Self::PendingAcceptance,
        }
    }

    /// Whether new flows are admitted and live ones kept.
    pub fn forwards(self) -> bool {
        self == Self::Available
    }

    /// The name reports and JSON use.
    pub fn name(self) -> &'static str {
        match self {
            Self::NotAllowed => "notAllowed",
            Self::Rejected => "rejected",
            Self::Available => "available",
            Self::PendingAcceptance => "pendingAcceptance",
        }
    }
}

/// The endpoints of `services` (one per `[[service]]` entry, None where it has errors);
/// then every `accepted_endpoints` and `rejected_endpoints` entry must name one, and no
/// endpoint may be in both.
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
    // One new-flow policy entry per endpoint address and listener (`PL_POLICY`).
    let policies: usize = endpoints
        .iter()
        .filter_map(|e| {
            let svc = services.get(usize::from(e.service))?.as_ref()?;
            Some(e.addrs.len() * svc.listeners.len())
        })
        .sum();
    if policies > MAX_POLICIES as usize {
        found.errors.push(src.error(
            None,
            "[[endpoint]]",
            "addresses",
            format!(
                "{policies} endpoint addresses x listeners; at most {MAX_POLICIES} (one new-flow policy entry each)"
            ),
        ));
    }
    listed_endpoints(src, cfg, &endpoints, found);
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
    let allowed = svc_cfg.is_none_or(|s| allowed(sec, c, s, found));
    let svc = service.and_then(|i| services[i].as_ref());
    let own = network.and_then(|n| found.keep(addresses(sec, c, &name, n, svc, addrs)));
    let sources = found.keep(sources(sec, c));
    let listed = |list: &[toml::Spanned<String>]| list.iter().any(|a| a.get_ref() == &name);
    let state = svc_cfg.map_or(EndpointState::PendingAcceptance, |s| {
        EndpointState::derive(
            allowed,
            listed(&s.rejected_endpoints),
            !s.acceptance_required || listed(&s.accepted_endpoints),
        )
    });
    Endpoint {
        removed: false,
        name,
        service: service.unwrap_or_default() as u16,
        network: network.unwrap_or_default(),
        addrs: own.unwrap_or_default(),
        sources: sources.as_ref().map(|s| s.0.clone()).unwrap_or_default(),
        sources6: sources.map(|s| s.1).unwrap_or_default(),
        accepted: state.forwards(),
        state,
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
/// Whether the endpoint's network is one of the service's `allowed_principals`. One that
/// is not is `notAllowed`: it stays in the config (a provider revokes a principal without
/// deleting its endpoints) and carries no traffic; `pl check` warns about it.
fn allowed(
    sec: &Section<'_>,
    c: &EndpointCfg,
    svc_cfg: &ServiceCfg,
    found: &mut Found<'_>,
) -> bool {
    let allowed = svc_cfg
        .allowed_principals
        .iter()
        .any(|p| p.get_ref() == "*" || p.get_ref() == c.network.get_ref());
    if !allowed {
        found.warnings.push(sec.error(
            "network",
            Some(c.network.span().start),
            format!(
                "network {:?} is not an allowed principal of service {:?}: the endpoint is notAllowed and carries no traffic (add it to allowed_principals)",
                c.network.get_ref(),
                svc_cfg.name.get_ref()
            ),
        ));
    }
    allowed
}

/// `addresses`: at most one of each family per zone, only in zones where `service` has an
/// NLB address, of its targets' family, each claimed in the endpoint's network.
fn addresses(
    sec: &Section<'_>,
    c: &EndpointCfg,
    name: &str,
    network: u16,
    service: Option<&Service>,
    taken: &mut Addresses,
) -> Result<Vec<(IpAddr, u8)>, ConfigError> {
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
        if addrs
            .iter()
            .any(|(a, z): &(IpAddr, u8)| *z == zone && a.is_ipv4() == ip.is_ipv4())
        {
            let zone = taken.zones.name(zone);
            return sec.err(
                "addresses",
                Some(at),
                if ip.is_ipv4() {
                    format!("zone {zone:?} has two addresses (one per zone)")
                } else {
                    format!("zone {zone:?} has two IPv6 addresses (one of each family per zone)")
                },
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

/// `allowed_sources`, parsed: the IPv4 prefixes, then the IPv6 ones; any source of either
/// family when absent. A family the list does not name is refused.
fn sources(sec: &Section<'_>, c: &EndpointCfg) -> Result<(Vec<Cidr>, Vec<Cidr6>), ConfigError> {
    let Some(list) = &c.allowed_sources else {
        return Ok((vec![Cidr::ANY], vec![Cidr6::ANY]));
    };
    let (mut v4, mut v6) = (Vec::new(), Vec::new());
    for s in list {
        let text = s.get_ref();
        let parsed = if text.contains(':') {
            text.parse::<Cidr6>()
                .map(|c| v6.push(c))
                .map_err(|e| e.to_string())
        } else {
            text.parse::<Cidr>()
                .map(|c| v4.push(c))
                .map_err(|e| e.to_string())
        };
        if let Err(e) = parsed {
            return sec.err(
                "allowed_sources",
                Some(s.span().start),
                format!("{text:?}: {e}"),
            );
        }
    }
    Ok((v4, v6))
}

/// Every `accepted_endpoints` and `rejected_endpoints` entry names an endpoint (one whose
/// types were wrong counts), and no endpoint is in both lists of a service.
fn listed_endpoints(src: &Source, cfg: &Config, endpoints: &[Endpoint], found: &mut Found<'_>) {
    for (i, s) in cfg.service.iter().enumerate() {
        let sec = services::section(src, i, s);
        let c = s.get_ref();
        for (field, list) in [
            ("accepted_endpoints", &c.accepted_endpoints),
            ("rejected_endpoints", &c.rejected_endpoints),
        ] {
            for a in list {
                let known = endpoints.iter().any(|e| &e.name == a.get_ref())
                    || found.unparsed.endpoints.contains(a.get_ref());
                if !known {
                    found.errors.push(sec.error(
                        field,
                        Some(a.span().start),
                        format!("no endpoint named {:?}", a.get_ref()),
                    ));
                }
            }
        }
        for r in &c.rejected_endpoints {
            if c.accepted_endpoints
                .iter()
                .any(|a| a.get_ref() == r.get_ref())
            {
                found.errors.push(sec.error(
                    "rejected_endpoints",
                    Some(r.span().start),
                    format!(
                        "{:?} is also in accepted_endpoints (an endpoint is accepted or rejected, not both)",
                        r.get_ref()
                    ),
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::testing::{EXAMPLE, build};

    #[test]
    fn refusals_win_then_acceptance_counts() {
        use EndpointState::*;
        let cases = [
            ((false, false, true), NotAllowed),
            ((false, true, true), NotAllowed),
            ((true, true, true), Rejected),
            ((true, true, false), Rejected),
            ((true, false, true), Available),
            ((true, false, false), PendingAcceptance),
        ];
        for ((allowed, rejected, accepted), want) in cases {
            let got = EndpointState::derive(allowed, rejected, accepted);
            assert_eq!(
                got, want,
                "allowed {allowed} rejected {rejected} accepted {accepted}"
            );
            assert_eq!(got.forwards(), want == Available);
        }
        let names: Vec<String> = [NotAllowed, Rejected, Available, PendingAcceptance]
            .iter()
            .map(|s| serde_json::to_string(s).expect("serialize"))
            .collect();
        assert_eq!(
            names,
            [
                r#""notAllowed""#,
                r#""rejected""#,
                r#""available""#,
                r#""pendingAcceptance""#
            ]
        );
    }

    #[test]
    fn states_come_from_the_service_lists() {
        let accepted = r#"accepted_endpoints = ["acme-billing", "globex-billing"]"#;
        let state = |text: &str| {
            let m = build(text).unwrap_or_else(|e| panic!("{e}"));
            m.endpoints
                .iter()
                .map(|e| (e.state, e.accepted))
                .collect::<Vec<_>>()
        };
        use EndpointState::*;
        assert_eq!(state(EXAMPLE), [(Available, true), (Available, true)]);
        let one = EXAMPLE.replace(
            accepted,
            "accepted_endpoints = [\"acme-billing\"]\nrejected_endpoints = [\"globex-billing\"]",
        );
        assert_eq!(state(&one), [(Available, true), (Rejected, false)]);
        let pending = EXAMPLE.replace(accepted, "accepted_endpoints = [\"acme-billing\"]");
        assert_eq!(
            state(&pending),
            [(Available, true), (PendingAcceptance, false)]
        );
        // No acceptance needed: available unless rejected.
        let open = one.replace("acceptance_required = true", "acceptance_required = false");
        assert_eq!(state(&open), [(Available, true), (Rejected, false)]);
        // A network taken out of allowed_principals: its endpoint stays, notAllowed, and a
        // warning says so (the config is still valid).
        let revoked = EXAMPLE.replace(
            r#"allowed_principals = ["acme", "globex"]"#,
            r#"allowed_principals = ["acme"]"#,
        );
        assert_ne!(revoked, EXAMPLE, "the example lists both principals");
        assert_eq!(state(&revoked), [(Available, true), (NotAllowed, false)]);
        let check = crate::model::Model::check(
            &crate::model::testing::source(&revoked),
            &crate::model::testing::Fixed,
            crate::model::HostChecks::Errors,
        );
        assert!(check.errors.is_empty(), "{:?}", check.errors);
        assert!(
            check.warnings.iter().any(|w| w.to_string().contains(
                "[[endpoint]] \"globex-billing\": network: network \"globex\" is not an allowed principal"
            )),
            "{:?}",
            check.warnings
        );
    }

    #[test]
    fn more_policy_entries_than_the_map_holds_is_an_error() {
        // 2 endpoints x 2 addresses x 4100 listeners = 16400 entries.
        let listeners: Vec<String> = (10_000..14_100)
            .map(|p| format!("{{ protocol = \"tcp\", port = {p}, target_port = 8443 }}"))
            .collect();
        let text = EXAMPLE.replace(
            r#"listeners = [{ protocol = "tcp", port = 443, target_port = 8443 }, { protocol = "udp", port = 53 }]"#,
            &format!("listeners = [{}]", listeners.join(", ")),
        );
        assert_ne!(text, EXAMPLE);
        let err = build(&text)
            .map(|_| ())
            .expect_err("16400 policy entries")
            .to_string();
        assert!(
            err.contains("16400 endpoint addresses x listeners; at most 16384"),
            "{err}"
        );
    }

    #[test]
    fn the_lists_name_endpoints_and_never_the_same_one_twice() {
        let accepted = r#"accepted_endpoints = ["acme-billing", "globex-billing"]"#;
        let err = |extra: &str| {
            build(&EXAMPLE.replace(accepted, &format!("{accepted}\n{extra}")))
                .map(|_| ())
                .expect_err(extra)
                .to_string()
        };
        let unknown = err(r#"rejected_endpoints = ["nobody"]"#);
        assert!(
            unknown.contains(
                "[[service]] \"billing\": rejected_endpoints: no endpoint named \"nobody\""
            ),
            "{unknown}"
        );
        let both = err(r#"rejected_endpoints = ["globex-billing"]"#);
        assert!(
            both.contains("rejected_endpoints: \"globex-billing\" is also in accepted_endpoints"),
            "{both}"
        );
        assert!(both.starts_with("pl.toml:"), "{both}");
    }
}
