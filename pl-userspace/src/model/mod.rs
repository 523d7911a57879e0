//! The validated config: names resolved to ids, addresses parsed, every cross-reference
//! checked. Building a model touches no kernel state, so a bad config leaves nothing
//! behind; every problem found comes back naming file, line, section and field (one bad
//! entry does not hide the next).
//!
//! One file per section of the config (`networks`, `services`, `endpoints`, `limits`),
//! with what they share: `section` (where an error is), `found` (the errors and warnings
//! collected), `addresses` (zones and which address is what), `health_check`, `interfaces`
//! (ifindex, MAC, MTU); `align` re-numbers a reload's model to the running one's ids.

mod addresses;
mod align;
mod cidr6;
mod cluster;
mod dns;
mod endpoints;
mod found;
mod health_check;
mod interfaces;
mod limits;
mod networks;
mod section;
mod services;
#[cfg(test)]
pub(crate) mod testing;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use pl_common::{cidr::Cidr, settings::Settings};

use self::found::Found;
pub use self::{
    align::AlignError,
    cidr6::Cidr6,
    cluster::{Cluster, Node},
    dns::{DEFAULT_DOMAIN, Dns, dns_name, is_label},
    endpoints::EndpointState,
    found::{Check, HostChecks},
    health_check::HealthCheck,
    interfaces::{Interfaces, LiveInterfaces, mtu_of},
    networks::{Route, Route6, hop_of, next_hop, next_hop6},
};
use crate::config::{Config, ConfigErrors, Source, Unparsed};

pub type Mac = [u8; 6];

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Network {
    pub name: String,
    /// Gone from the config since pl run started: kept so ids stay put, programmed as disabled.
    pub removed: bool,
    pub interface: String,
    pub ifindex: u32,
    pub mac: Mac,
    /// The interface's MTU when the config was read (MSS clamping, fragmentation needed).
    #[serde(default = "default_mtu")]
    pub mtu: u32,
    /// Static routes to targets behind routers (longest prefix wins).
    #[serde(default)]
    pub routes: Vec<Route>,
    /// The IPv6 ones.
    #[serde(default)]
    pub routes6: Vec<Route6>,
}

const fn default_mtu() -> u32 {
    1500
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Listener {
    pub proto: u8,
    pub port: u16,
    pub target_port: u16,
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Target {
    /// Global target id (index into `PL_TARGETS`, and `PL_TARGETS6` for an IPv6 target).
    pub id: u32,
    /// A service's targets are all of one family.
    pub ip: IpAddr,
    pub zone: u8,
    /// The router a static route sends it to; None when on-link.
    #[serde(default)]
    pub via: Option<IpAddr>,
}

impl Target {
    /// The address whose MAC its frames go to: its router's, or its own.
    pub fn hop(&self) -> IpAddr {
        self.via.unwrap_or(self.ip)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Service {
    pub name: String,
    /// Gone from the config since pl run started: kept so ids stay put, programmed as disabled.
    pub removed: bool,
    /// The provider network.
    pub network: u16,
    /// NLB addresses with their zone index: at most one of each family per zone.
    pub nlbs: Vec<(IpAddr, u8)>,
    pub cross_zone: bool,
    pub listeners: Vec<Listener>,
    pub targets: Vec<Target>,
    #[serde(default)]
    pub health: HealthCheck,
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Endpoint {
    pub name: String,
    /// Gone from the config since pl run started: kept so ids stay put, programmed as disabled.
    pub removed: bool,
    pub service: u16,
    pub network: u16,
    /// At most one of each family per zone; all of its service's targets' family.
    pub addrs: Vec<(IpAddr, u8)>,
    pub sources: Vec<Cidr>,
    /// The IPv6 prefixes of `allowed_sources` (`::/0` when it is absent).
    #[serde(default)]
    pub sources6: Vec<Cidr6>,
    /// Accepted by the service (or acceptance not required): carries traffic. Always
    /// `state == Available`.
    pub accepted: bool,
    /// As AWS names it; only `available` forwards.
    #[serde(default)]
    pub state: EndpointState,
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Model {
    pub networks: Vec<Network>,
    pub services: Vec<Service>,
    pub endpoints: Vec<Endpoint>,
    /// Zone names by index.
    pub zones: Vec<String>,
    /// Concurrent flows the table holds.
    pub flow_table_size: u32,
    pub settings: Settings,
    /// The next unused target id: ids are never reused while pl runs.
    pub next_target: u32,
    /// Several forwarders (`[cluster]`, `[[node]]`); None: this one serves every zone.
    #[serde(default)]
    pub cluster: Option<Cluster>,
    /// The zones this node serves now, as a bit mask of zone indexes; None: every zone.
    /// Not from the config: the cluster's election sets it.
    #[serde(default)]
    pub serving: Option<u32>,
    /// Endpoint DNS names: the domain, where each network is answered, private names.
    #[serde(default)]
    pub dns: Dns,
}

impl Model {
    /// Validates `cfg` (parsed from `src`) against the interfaces `ifaces` knows: every
    /// error, or the model.
    pub fn build(
        src: &Source,
        cfg: &Config,
        ifaces: &dyn Interfaces,
    ) -> Result<Self, ConfigErrors> {
        let unparsed = Unparsed::default();
        let mut found = Found::new(HostChecks::Errors, &unparsed);
        let model = Self::build_found(src, cfg, ifaces, &mut found);
        into_result(found.into_check(model))
    }

    /// Parses and validates a config's text in full, as `pl check` does: with
    /// `HostChecks::Warnings` an interface this host lacks is a warning, not an error.
    pub fn check(src: &Source, ifaces: &dyn Interfaces, host: HostChecks) -> Check {
        let parsed = src.parse_entries();
        let mut found = Found::new(host, &parsed.unparsed);
        // The entries whose types were right are still checked (a syntax error leaves none).
        found.errors = parsed.errors;
        let model = Self::build_found(src, &parsed.config, ifaces, &mut found);
        found.into_check(model)
    }

    /// Networks, then services, endpoints and limits: later sections refer to earlier ones
    /// by name. None if `found` has errors.
    fn build_found(
        src: &Source,
        cfg: &Config,
        ifaces: &dyn Interfaces,
        found: &mut Found<'_>,
    ) -> Option<Self> {
        let mut addrs = addresses::Addresses::default();
        let networks = networks::networks(src, cfg, ifaces, &mut addrs.claims, found);
        let (services, next_target) = services::services(src, cfg, &networks, &mut addrs, found);
        let endpoints = endpoints::endpoints(src, cfg, &networks, &services, &mut addrs, found);
        let limits = limits::limits(src, cfg, found);
        let dns = dns::dns(src, cfg, &networks, &endpoints, &mut addrs.claims, found);
        let cluster = cluster::cluster(
            src,
            cfg,
            &addrs.zones.0,
            ifaces,
            limits.as_ref().map(|(_, s)| s),
            found,
        );
        if !found.errors.is_empty() {
            return None;
        }
        let (flow_table_size, mut settings) = limits?;
        settings.dns_per_window = dns.max_qps.div_ceil(10);
        Some(Self {
            next_target,
            networks,
            services: services.into_iter().collect::<Option<_>>()?,
            endpoints,
            zones: addrs.zones.0,
            flow_table_size,
            settings,
            serving: cluster.as_ref().map(|_| 0),
            cluster,
            dns,
        })
    }

    /// Whether this node serves zone `zone` now: answers for its addresses, opens and
    /// carries its flows, probes from its NLB addresses.
    pub fn serves(&self, zone: u8) -> bool {
        self.serving.is_none_or(|m| m & (1 << zone) != 0)
    }

    /// The NLB address ARP requests, neighbour solicitations and health probes for a
    /// target at `target` in `zone` of `s` go from: of the target's family, the zone's own
    /// if this node serves it, else that of a zone it serves. Never another node's: a
    /// target that hears from an address points its neighbour entry here.
    pub fn probe_from(&self, s: &Service, zone: u8, target: IpAddr) -> Option<IpAddr> {
        let same = |ip: &IpAddr| ip.is_ipv4() == target.is_ipv4();
        s.nlbs
            .iter()
            .find(|(ip, z)| same(ip) && *z == zone && self.serves(*z))
            .or_else(|| s.nlbs.iter().find(|(ip, z)| same(ip) && self.serves(*z)))
            .map(|(ip, _)| *ip)
    }

    /// Whether this config still lets a consumer flow of `endpoint` from `src` on `network`
    /// run: network, endpoint and service live, the endpoint accepted, the source allowed
    /// (an empty list allows any). A reload removes the flows it does not.
    pub fn allows(&self, endpoint: u16, network: u16, src: Ipv4Addr) -> bool {
        let live_net = |id: u16| {
            self.networks
                .get(usize::from(id))
                .is_some_and(|n| !n.removed)
        };
        self.endpoints.get(usize::from(endpoint)).is_some_and(|e| {
            !e.removed
                && e.accepted
                && e.network == network
                && live_net(network)
                && self
                    .services
                    .get(usize::from(e.service))
                    .is_some_and(|s| !s.removed && live_net(s.network))
                && (e.sources.is_empty() || e.sources.iter().any(|c| c.contains(src)))
        })
    }

    /// `allows` for an IPv6 consumer flow: the same checks, the source against the
    /// endpoint's IPv6 prefixes.
    pub fn allows6(&self, endpoint: u16, network: u16, src: Ipv6Addr) -> bool {
        let live_net = |id: u16| {
            self.networks
                .get(usize::from(id))
                .is_some_and(|n| !n.removed)
        };
        self.endpoints.get(usize::from(endpoint)).is_some_and(|e| {
            !e.removed
                && e.accepted
                && e.network == network
                && live_net(network)
                && self
                    .services
                    .get(usize::from(e.service))
                    .is_some_and(|s| !s.removed && live_net(s.network))
                && e.sources6.iter().any(|c| c.contains(src))
        })
    }

    /// Parses and validates a config's text, as `pl run` and `pl reload` do: every error,
    /// or the model.
    pub fn from_source(src: &Source, ifaces: &dyn Interfaces) -> Result<Self, ConfigErrors> {
        into_result(Self::check(src, ifaces, HostChecks::Errors))
    }
}

fn into_result(check: Check) -> Result<Model, ConfigErrors> {
    match check.model {
        Some(m) if check.errors.is_empty() => Ok(m),
        _ => Err(ConfigErrors(check.errors)),
    }
}

#[cfg(test)]
mod tests {
    use pl_common::proto::{IPPROTO_TCP, IPPROTO_UDP};

    use super::*;
    use crate::model::testing::{EXAMPLE, build};

    #[test]
    fn example_builds() {
        let m = build(EXAMPLE).unwrap_or_else(|e| panic!("example rejected: {e}"));
        assert_eq!(m.networks.len(), 3);
        assert_eq!(m.zones, ["z1", "z2"]);
        let s = &m.services[0];
        assert_eq!(s.network, 2);
        assert_eq!(
            s.listeners[0],
            Listener {
                proto: IPPROTO_TCP,
                port: 443,
                target_port: 8443
            }
        );
        assert_eq!(
            s.listeners[1],
            Listener {
                proto: IPPROTO_UDP,
                port: 53,
                target_port: 53
            }
        );
        assert_eq!(
            m.endpoints[0].sources,
            vec!["10.0.0.0/24".parse::<Cidr>().expect("cidr")]
        );
        assert_eq!(
            m.endpoints[1].sources,
            vec![Cidr::ANY],
            "no allowed_sources means any source"
        );
        assert!(m.endpoints.iter().all(|e| e.accepted));
        // Overlap: the same address in two networks is fine.
        assert_eq!(m.endpoints[0].addrs, m.endpoints[1].addrs);
        assert_eq!(m.flow_table_size, 65_536);
    }

    #[test]
    fn a_reload_allows_only_what_its_config_still_would_admit() {
        let prev = build(EXAMPLE).unwrap_or_else(|e| panic!("{e}"));
        let ip = |s: &str| s.parse::<Ipv4Addr>().expect("address");
        let (acme, globex) = (0u16, 1u16);
        // Endpoint ids 0 (acme-billing, on network 0) and 1 (globex-billing, network 1).
        assert!(prev.allows(0, acme, ip("10.0.0.10")));
        assert!(
            !prev.allows(0, acme, ip("10.0.1.10")),
            "outside allowed_sources"
        );
        assert!(
            prev.allows(1, globex, ip("192.0.2.1")),
            "no allowed_sources: any"
        );
        assert!(
            !prev.allows(0, globex, ip("10.0.0.10")),
            "not the endpoint's network"
        );
        assert!(!prev.allows(9, acme, ip("10.0.0.10")), "no such endpoint");
        // globex-billing no longer accepted.
        let unaccepted = build(&EXAMPLE.replace(
            r#"accepted_endpoints = ["acme-billing", "globex-billing"]"#,
            r#"accepted_endpoints = ["acme-billing"]"#,
        ))
        .unwrap_or_else(|e| panic!("{e}"))
        .align(&prev)
        .unwrap_or_else(|e| panic!("{e}"));
        assert!(!unaccepted.allows(1, globex, ip("192.0.2.1")));
        assert!(unaccepted.allows(0, acme, ip("10.0.0.10")));
        // globex-billing gone from the config: a tombstone allows nothing.
        let cut = EXAMPLE
            .find("[[endpoint]]\nname = \"globex-billing\"")
            .expect("globex");
        let removed = build(&EXAMPLE[..cut].replace(
            r#"accepted_endpoints = ["acme-billing", "globex-billing"]"#,
            r#"accepted_endpoints = ["acme-billing"]"#,
        ))
        .unwrap_or_else(|e| panic!("{e}"))
        .align(&prev)
        .unwrap_or_else(|e| panic!("{e}"));
        assert!(
            removed.endpoints[1].removed,
            "test config did not change as meant"
        );
        assert!(!removed.allows(1, globex, ip("192.0.2.1")));
    }

    /// Each case: a replacement in the example, then what the error must say.
    #[test]
    fn bad_configs_name_line_section_and_field() {
        let cases: &[(&str, &str, &str, &[&str])] = &[
            (
                "cross_zone = false",
                "cross_zone = false\nhealth_check = { interval_s = 2, timeout_ms = 2000 }",
                "[[service]] \"billing\": health_check.timeout_ms",
                &["2000 ms must be shorter than interval_s (2 s)"],
            ),
            (
                "cross_zone = false",
                "cross_zone = false\nhealth_check = { protocol = \"http\" }",
                "[[service]] \"billing\": health_check.protocol",
                &["only \"tcp\""],
            ),
            (
                "cross_zone = false",
                "cross_zone = false\nhealth_check = { unhealthy_threshold = 0 }",
                "[[service]] \"billing\": health_check.unhealthy_threshold",
                &["0 is out of range 1..=10"],
            ),
            (
                "name = \"globex\"\ninterface = \"fw-globex\"",
                "name = \"acme\"\ninterface = \"fw-globex\"",
                "[[network]] \"acme\": name",
                &["used twice", ":7:"],
            ),
            (
                "interface = \"fw-prov\"",
                "interface = \"fw-nope\"",
                "[[network]] \"billing-prod\": interface",
                &["fw-nope", "no such interface"],
            ),
            (
                "interface = \"fw-globex\"",
                "interface = \"fw-acme\"",
                "[[network]] \"globex\": interface",
                &["already the interface of network \"acme\""],
            ),
            (
                "network = \"billing-prod\"",
                "network = \"billing\"",
                "[[service]] \"billing\": network",
                &["no network named \"billing\""],
            ),
            (
                "service = \"billing\"\nnetwork = \"globex\"",
                "service = \"payroll\"\nnetwork = \"globex\"",
                "[[endpoint]] \"globex-billing\": service",
                &["no service named \"payroll\""],
            ),
            (
                "allowed_principals = [\"acme\", \"globex\"]",
                "allowed_principals = [\"acme\", \"initech\"]",
                "[[service]] \"billing\": allowed_principals",
                &["no network named \"initech\""],
            ),
            (
                "accepted_endpoints = [\"acme-billing\", \"globex-billing\"]",
                "accepted_endpoints = [\"acme-billing\", \"nobody\"]",
                "[[service]] \"billing\": accepted_endpoints",
                &["no endpoint named \"nobody\""],
            ),
            (
                "{ ip = \"10.0.0.101\", zone = \"z2\" }]\nallowed_sources",
                "{ ip = \"10.0.0.100\", zone = \"z2\" }]\nallowed_sources",
                "[[endpoint]] \"acme-billing\": addresses",
                &["10.0.0.100 is already an address of endpoint \"acme-billing\""],
            ),
            (
                "{ ip = \"10.9.0.12\", zone = \"z2\" }]",
                "{ ip = \"10.9.0.250\", zone = \"z2\" }]",
                "[[service]] \"billing\": targets",
                &["already an NLB address"],
            ),
            (
                "{ ip = \"10.9.0.12\", zone = \"z2\" }]",
                "{ ip = \"10.9.0.12\", zone = \"z3\" }]",
                "[[service]] \"billing\": targets",
                &["zone \"z3\" has no NLB address"],
            ),
            (
                "{ ip = \"10.0.0.101\", zone = \"z2\" }]\nallowed_sources",
                "{ ip = \"10.0.0.101\", zone = \"z9\" }]\nallowed_sources",
                "[[endpoint]] \"acme-billing\": addresses",
                &["zone \"z9\" has no NLB address"],
            ),
            (
                "{ protocol = \"udp\", port = 53 }",
                "{ protocol = \"tcp\", port = 443 }",
                "[[service]] \"billing\": listeners.port",
                &["tcp port 443 is listed twice"],
            ),
            (
                "{ protocol = \"udp\", port = 53 }",
                "{ protocol = \"sctp\", port = 53 }",
                "[[service]] \"billing\": listeners.protocol",
                &["\"sctp\""],
            ),
            (
                "{ ip = \"10.9.0.11\", zone = \"z1\" }",
                "{ ip = \"10.9.0.311\", zone = \"z1\" }",
                "[[service]] \"billing\": targets",
                &["\"10.9.0.311\" is not an IPv4 or IPv6 address"],
            ),
            (
                "allowed_sources = [\"10.0.0.0/24\"]",
                "allowed_sources = [\"10.0.0.1/24\"]",
                "[[endpoint]] \"acme-billing\": allowed_sources",
                &["bits set past the prefix"],
            ),
            (
                "cross_zone = false",
                "cross_zone = false\ncolour = \"blue\"",
                "[[service]] \"billing\": colour",
                &["unknown field `colour`"],
            ),
            (
                "port = 443,",
                "port = 70000,",
                "[[service]] \"billing\": listeners[0].port",
                &[":22:", "expected u16"],
            ),
            (
                "name = \"billing\"\nnetwork",
                "name = \"bil ling\"\nnetwork",
                "[[service]] \"bil ling\": name",
                &["use 1-64 characters"],
            ),
        ];
        for (from, to, section, mentions) in cases {
            assert!(
                EXAMPLE.contains(from),
                "case {section}: {from:?} is not in the example"
            );
            let text = EXAMPLE.replacen(from, to, 1);
            let err = build(&text)
                .map(|_| ())
                .expect_err(&format!("{section}: {to:?} was accepted"));
            let msg = err.to_string();
            assert!(msg.starts_with("pl.toml:"), "{msg}");
            assert!(
                msg.contains(section),
                "error lacks section/field {section:?}: {msg}"
            );
            for m in *mentions {
                assert!(msg.contains(m), "error lacks {m:?}: {msg}");
            }
            assert!(err.line.is_some(), "no line in {msg}");
        }
        let limits = format!("{EXAMPLE}\n[limits]\nsnat_port_min = 2000\nsnat_port_max = 1000\n");
        let msg = build(&limits)
            .expect_err("inverted SNAT range accepted")
            .to_string();
        assert!(
            msg.contains("[limits]: snat_port_min") && msg.contains(":38:"),
            "{msg}"
        );
    }

    mod ipv6 {
        use std::net::{IpAddr, Ipv6Addr};

        use crate::model::{
            Cidr6,
            testing::{EXAMPLE6, build},
        };

        fn v6(s: &str) -> IpAddr {
            IpAddr::V6(s.parse().expect("an IPv6 address"))
        }

        /// The error `EXAMPLE6` with `from` replaced by `to` gets: it names `field` and says
        /// `what`.
        fn refused(from: &str, to: &str, field: &str, what: &str) {
            assert!(EXAMPLE6.contains(from), "{from:?} not in the example");
            let e = build(&EXAMPLE6.replacen(from, to, 1))
                .expect_err(what)
                .to_string();
            assert!(e.contains(field), "{field:?} not named: {e}");
            assert!(e.contains(what), "{what:?} not said: {e}");
        }

        #[test]
        fn a_same_family_ipv6_service_builds() {
            let m = build(EXAMPLE6).unwrap_or_else(|e| panic!("{e}"));
            let s = &m.services[0];
            assert_eq!(
                s.nlbs,
                [
                    ("10.9.0.250".parse().expect("addr"), 0),
                    (v6("fd00:9::fa"), 0),
                    (v6("fd00:9::fb"), 1)
                ]
            );
            assert_eq!(s.targets[0].ip, v6("fd00:9::11"));
            assert_eq!(s.targets[0].via, None, "on-link");
            assert_eq!(
                s.targets[1].via,
                Some(v6("fd00:9::1")),
                "an IPv6 route's router"
            );
            let e = &m.endpoints[0];
            assert_eq!(e.addrs, [(v6("fd00::64"), 0), (v6("fd00::65"), 1)]);
            assert_eq!(e.sources, ["10.0.0.0/24".parse().expect("cidr")]);
            assert_eq!(e.sources6, ["fd00::/64".parse::<Cidr6>().expect("cidr")]);
            let ip = |s: &str| s.parse::<Ipv6Addr>().expect("addr");
            assert!(m.allows6(0, 0, ip("fd00::10")));
            assert!(!m.allows6(0, 0, ip("fd00:1::10")), "outside fd00::/64");
            // No allowed_sources: any source of either family.
            let any =
                build(&EXAMPLE6.replace("allowed_sources = [\"10.0.0.0/24\", \"fd00::/64\"]", ""))
                    .unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(any.endpoints[0].sources6, [Cidr6::ANY]);
            assert!(any.allows6(0, 0, ip("2001:db8::1")));
        }

        #[test]
        fn targets_are_asked_for_from_an_nlb_address_of_their_family() {
            let mut m = build(EXAMPLE6).unwrap_or_else(|e| panic!("{e}"));
            let s = m.services[0].clone();
            // z1 has an NLB address of each family: the target's is chosen.
            assert_eq!(
                m.probe_from(&s, 0, v6("fd00:9::11")),
                Some(v6("fd00:9::fa"))
            );
            assert_eq!(
                m.probe_from(&s, 0, "10.9.0.11".parse().expect("addr")),
                Some("10.9.0.250".parse().expect("addr"))
            );
            // Serving only z1: a z2 target is asked for from z1's IPv6 address.
            m.serving = Some(1);
            assert_eq!(
                m.probe_from(&s, 1, v6("fd00:60::5")),
                Some(v6("fd00:9::fa"))
            );
            // Serving only z2: an IPv4 target has no IPv4 NLB address to be asked from.
            m.serving = Some(2);
            assert_eq!(
                m.probe_from(&s, 0, "10.9.0.11".parse().expect("addr")),
                None
            );
        }

        #[test]
        fn at_most_one_address_of_each_family_per_zone() {
            refused(
                "{ ip = \"fd00:9::fb\", zone = \"z2\" }",
                "{ ip = \"fd00:9::fb\", zone = \"z1\" }",
                "nlb_addresses",
                "zone \"z1\" has two IPv6 NLB addresses",
            );
            refused(
                "{ ip = \"fd00::65\", zone = \"z2\" }",
                "{ ip = \"fd00::65\", zone = \"z1\" }",
                "addresses",
                "zone \"z1\" has two IPv6 addresses",
            );
        }

        #[test]
        fn a_services_targets_share_one_family() {
            refused(
                "{ ip = \"fd00:60::5\", zone = \"z2\" }",
                "{ ip = \"10.9.0.12\", zone = \"z1\" }",
                "targets",
                "a service's targets share one address family",
            );
        }

        #[test]
        fn a_targets_zone_needs_an_nlb_address_of_its_family() {
            // z2 keeps an IPv4 NLB address only.
            refused(
                "{ ip = \"fd00:9::fb\", zone = \"z2\" }",
                "{ ip = \"10.9.0.251\", zone = \"z2\" }",
                "targets",
                "zone \"z2\" has no IPv6 NLB address",
            );
        }

        #[test]
        fn bad_prefixes_and_addresses_name_their_field() {
            refused(
                "\"fd00::/64\"",
                "\"fd00::1/64\"",
                "allowed_sources",
                "bits set past the prefix length",
            );
            refused(
                "\"fd00::/64\"",
                "\"fd00::/129\"",
                "allowed_sources",
                "prefix length must be 0 to 128",
            );
            refused(
                "\"fd00::64\"",
                "\"fd00::zz\"",
                "addresses",
                "is not an IPv4 or IPv6 address",
            );
            refused(
                "\"fd00::64\"",
                "\"::ffff:10.0.0.100\"",
                "addresses",
                "IPv4-mapped",
            );
            refused(
                "\"fd00::64\"",
                "\"ff02::1\"",
                "addresses",
                "not a unicast IPv6 address",
            );
            refused(
                "via = \"fd00:9::1\"",
                "via = \"10.9.0.1\"",
                "routes.via",
                "an IPv6 route's router must be IPv6",
            );
        }

        #[test]
        fn an_ipv6_address_is_one_thing_in_a_network() {
            refused(
                "{ ip = \"fd00:9::fb\", zone = \"z2\" }",
                "{ ip = \"fd00:9::11\", zone = \"z2\" }",
                "targets",
                "fd00:9::11 is already an NLB address",
            );
            // Written another way, the same address.
            refused(
                "{ ip = \"fd00:9::fb\", zone = \"z2\" }",
                "{ ip = \"fd00:9:0:0::fa\", zone = \"z2\" }",
                "nlb_addresses",
                "fd00:9::fa is already an NLB address",
            );
        }
    }
}
