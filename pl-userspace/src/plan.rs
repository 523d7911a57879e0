//! The exact map contents a model implies, given which target MACs are known. Apply
//! writes a plan; keeping the last one applied is the shadow of what the kernel holds.

use std::{
    collections::HashMap,
    net::{IpAddr, Ipv4Addr},
};

use pl_common::{
    endpoint::{
        ADDR_DNS, ADDR_ENDPOINT, ADDR_NLB, AddrInfo, AddrKey, AddrKey6, SourceKey, SourceKey6,
    },
    iface::{IFACE_ACTIVE, IFACE_DEDICATED, IFACE_PROVIDER, IfaceConfig, NetInfo},
    maglev::{self, MAGLEV_SIZE},
    policy::{
        POLICY_ACCEPTED, POLICY_ANY_SOURCE, POLICY_XLAT, Policy, Policy6, PolicyKey, PolicyKey6,
    },
    service::{MAX_ZONES, TargetInfo, maglev_table},
    settings::Settings,
};

use crate::model::{Endpoint, Mac, Model, Service};

/// Target (or router) MACs learned by ARP or neighbour discovery, by (provider network,
/// address).
pub type Neighbors = HashMap<(u16, IpAddr), Mac>;

/// Target ids that failed their health checks.
pub type Unhealthy = std::collections::HashSet<u32>;

/// Wire-order u32 of an address, as the map types hold it.
pub fn be(ip: Ipv4Addr) -> u32 {
    u32::from_ne_bytes(ip.octets())
}

/// `be` of an IPv4 address; None for an IPv6 one.
pub fn be4(ip: IpAddr) -> Option<u32> {
    match ip {
        IpAddr::V4(v4) => Some(be(v4)),
        IpAddr::V6(_) => None,
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// By ifindex.
    pub ifaces: Vec<(u32, IfaceConfig)>,
    /// Network id -> ifindex, for the egress devmap.
    pub egress: Vec<(u32, u32)>,
    /// Network id -> its interface's MTU and MAC.
    pub nets: Vec<(u32, NetInfo)>,
    pub addrs: Vec<(AddrKey, AddrInfo)>,
    /// One per (endpoint address, listener of its service): all a new flow needs.
    pub policies: Vec<(PolicyKey, Policy)>,
    /// (LPM prefix length, key data).
    pub sources: Vec<(u32, SourceKey)>,
    pub targets: Vec<(u32, TargetInfo)>,
    /// The IPv6 twins of `addrs`, `policies`, `sources`; `targets6` holds an IPv6 target's
    /// address by its id (its `targets` entry has `addr_be` 0).
    pub addrs6: Vec<(AddrKey6, AddrInfo)>,
    pub policies6: Vec<(PolicyKey6, Policy6)>,
    pub sources6: Vec<(u32, SourceKey6)>,
    pub targets6: Vec<(u32, [u8; 16])>,
    /// Maglev table index -> `MAGLEV_SIZE` target ids.
    pub maglev: Vec<(u32, Vec<u32>)>,
    pub settings: Settings,
}

/// The bytes of an address, as Maglev hashes it (an IPv4 target's 4, an IPv6 one's 16).
fn octets(ip: IpAddr) -> Vec<u8> {
    match ip {
        IpAddr::V4(v4) => v4.octets().to_vec(),
        IpAddr::V6(v6) => v6.octets().to_vec(),
    }
}

/// A Maglev table over `targets` (global ids with their addresses).
fn table(targets: &[(u32, IpAddr)]) -> Vec<u32> {
    let keys: Vec<Vec<u8>> = targets.iter().map(|(_, ip)| octets(*ip)).collect();
    let mut t = vec![0; MAGLEV_SIZE];
    let mut walks = vec![maglev::Walk::default(); keys.len()];
    maglev::populate(&keys, &mut t, &mut walks);
    t.iter()
        .map(|i| {
            if *i == maglev::NO_BACKEND {
                *i
            } else {
                targets[*i as usize].0
            }
        })
        .collect()
}

impl Plan {
    /// Maglev tables hold the resolved, healthy targets. A zone whose resolved targets are
    /// all unhealthy fails over to the healthy targets of the other zones; a service with
    /// no healthy target fails open (each table holds all its resolved targets, as an NLB
    /// does). A zone with no resolved target stays empty (its flows are refused).
    pub fn build(model: &Model, neigh: &Neighbors, unhealthy: &Unhealthy) -> Self {
        let mut p = Self {
            settings: model.settings,
            ..Self::default()
        };
        p.networks(model);
        let families = Families::all(model);
        for (sid, s) in model.services.iter().enumerate() {
            p.service(model, sid as u16, s, &families[sid], neigh, unhealthy);
        }
        for (eid, e) in model.endpoints.iter().enumerate() {
            p.endpoint(model, eid as u16, e, &families);
        }
        p.dns(model);
        p
    }

    /// The networks' DNS addresses: the program passes their ARP and neighbour
    /// solicitations to the stack, where the DNS server owns them.
    fn dns(&mut self, model: &Model) {
        for (id, n) in model.networks.iter().enumerate() {
            let Some(addrs) = model.dns.addresses.get(&n.name) else {
                continue;
            };
            if n.removed {
                continue;
            }
            for ip in addrs {
                self.addr(*ip, id as u16, ADDR_DNS, 0, 0);
            }
        }
    }

    /// Interfaces, egress and MTUs of the live networks.
    fn networks(&mut self, model: &Model) {
        let mtu_floor = model
            .networks
            .iter()
            .filter(|n| !n.removed)
            .map(|n| n.mtu)
            .min()
            .map_or(0, |m| u16::try_from(m).unwrap_or(u16::MAX));
        let provider = |id: u16| model.services.iter().any(|s| !s.removed && s.network == id);
        for (id, n) in model.networks.iter().enumerate() {
            if n.removed {
                continue;
            }
            let slot = id as u32;
            self.nets.push((
                slot,
                NetInfo {
                    mtu: n.mtu,
                    mac: n.mac,
                    _pad: [0; 2],
                },
            ));
            self.ifaces.push((
                n.ifindex,
                IfaceConfig {
                    slot,
                    network: id as u16,
                    flags: IFACE_ACTIVE
                        | IFACE_DEDICATED
                        | if provider(id as u16) {
                            IFACE_PROVIDER
                        } else {
                            0
                        },
                    mac: n.mac,
                    mtu_floor,
                },
            ));
            self.egress.push((slot, n.ifindex));
        }
    }

    /// Service `sid`: its NLB addresses, targets and Maglev tables.
    fn service(
        &mut self,
        model: &Model,
        sid: u16,
        s: &Service,
        families: &Families,
        neigh: &Neighbors,
        unhealthy: &Unhealthy,
    ) {
        if s.removed {
            // Nothing reaches it once its endpoints and NLB addresses are gone.
            return;
        }
        // Another node's zone is its business: its addresses are not answered here.
        for (ip, zone) in s.nlbs.iter().filter(|(_, z)| model.serves(*z)) {
            self.addr(*ip, s.network, ADDR_NLB, *zone, sid);
        }
        let resolved = self.targets(s, neigh, families.translated);
        // One table per zone, however many families its NLB addresses are of.
        let mut zones: Vec<u8> = Vec::new();
        for (_, zone) in &s.nlbs {
            if !zones.contains(zone) {
                zones.push(*zone);
            }
        }
        for zone in zones {
            let table = pick(&resolved, Some(zone), unhealthy);
            self.maglev.push((maglev_table(sid, Some(zone)), table));
        }
        let table = pick(&resolved, None, unhealthy);
        self.maglev.push((maglev_table(sid, None), table));
    }

    /// Service `s`'s targets; returns the resolved ones (id, address, zone). Only these
    /// take flows: a target with no MAC cannot be sent to.
    /// `translated`: IPv6 consumers reach the service too, so an IPv4 target's mapped
    /// address goes to `targets6`, where the IPv6 path picks targets.
    fn targets(
        &mut self,
        s: &Service,
        neigh: &Neighbors,
        translated: bool,
    ) -> Vec<(u32, IpAddr, u8)> {
        let mut resolved = Vec::new();
        for t in &s.targets {
            // A routed target's frames go to its router.
            let mac = neigh.get(&(s.network, t.hop())).copied();
            let addr_be = match t.ip {
                IpAddr::V4(v4) => {
                    if translated {
                        self.targets6.push((t.id, v4.to_ipv6_mapped().octets()));
                    }
                    be(v4)
                }
                IpAddr::V6(v6) => {
                    self.targets6.push((t.id, v6.octets()));
                    0
                }
            };
            self.targets.push((
                t.id,
                TargetInfo {
                    addr_be,
                    mac: mac.unwrap_or_default(),
                    zone: t.zone,
                    _pad: 0,
                },
            ));
            if mac.is_some() {
                resolved.push((t.id, t.ip, t.zone));
            }
        }
        resolved
    }

    /// Endpoint `eid`: its addresses, the policy of each listener on each, and its
    /// allowed sources.
    /// `families`: each service's, by service id.
    fn endpoint(&mut self, model: &Model, eid: u16, e: &Endpoint, families: &[Families]) {
        if e.removed {
            return;
        }
        let s = &model.services[usize::from(e.service)];
        let families = &families[usize::from(e.service)];
        let accepted = if e.accepted { POLICY_ACCEPTED } else { 0 };
        let any = |yes: bool| if yes { POLICY_ANY_SOURCE } else { 0 };
        let flags = accepted | any(e.sources.iter().any(|c| c.len == 0));
        let flags6 = accepted | any(e.sources6.iter().any(|c| c.len == 0));
        for (ip, zone) in e.addrs.iter().filter(|(_, z)| model.serves(*z)) {
            self.addr(*ip, e.network, ADDR_ENDPOINT, *zone, eid);
            if s.removed {
                continue;
            }
            let table = maglev_table(e.service, (!s.cross_zone).then_some(*zone));
            // A consumer of the other family than the targets': family translation.
            let translated = families.targets_v6.is_some_and(|v6| v6 != ip.is_ipv6());
            let (snat_port_min, snat_port_max) = families.snat_range(model, translated);
            for l in &s.listeners {
                let (proto, port_be) = (l.proto, l.port.to_be());
                let (target_port_be, provider_network) = (l.target_port.to_be(), s.network);
                let policy6 = |addr: [u8; 16], nlb, flags| {
                    (
                        PolicyKey6 {
                            addr,
                            network: e.network,
                            port_be,
                            proto,
                            _pad: [0; 3],
                        },
                        Policy6 {
                            nlb,
                            maglev_table: table,
                            endpoint: eid,
                            target_port_be,
                            provider_network,
                            snat_port_min,
                            snat_port_max,
                            flags,
                            _pad: 0,
                        },
                    )
                };
                match ip {
                    IpAddr::V4(v4) => {
                        let key = PolicyKey {
                            addr_be: be(*v4),
                            network: e.network,
                            port_be,
                            proto,
                            _pad: [0; 3],
                        };
                        if translated {
                            // Keyed in the IPv6 table by its mapped address; the IPv4
                            // entry only sends the packet there.
                            self.policies.push((
                                key,
                                Policy {
                                    endpoint: eid,
                                    flags: flags | POLICY_XLAT,
                                    ..Policy::default()
                                },
                            ));
                            self.policies6.push(policy6(
                                v4.to_ipv6_mapped().octets(),
                                nlb6_of(s, *zone),
                                flags,
                            ));
                        } else {
                            self.policies.push((
                                key,
                                Policy {
                                    nlb_be: nlb_of(s, *zone),
                                    maglev_table: table,
                                    endpoint: eid,
                                    target_port_be,
                                    provider_network,
                                    snat_port_min,
                                    snat_port_max,
                                    flags,
                                    _pad: 0,
                                },
                            ));
                        }
                    }
                    IpAddr::V6(v6) => {
                        // To IPv4 targets: from the zone's IPv4 NLB address, mapped.
                        let nlb = if translated {
                            nlb_of(s, *zone).map(|a| match a {
                                0 => [0; 16],
                                a => Ipv4Addr::from(a.to_ne_bytes()).to_ipv6_mapped().octets(),
                            })
                        } else {
                            nlb6_of(s, *zone)
                        };
                        self.policies6.push(policy6(v6.octets(), nlb, flags6));
                    }
                }
            }
        }
        for c in &e.sources {
            self.sources
                .push((32 + u32::from(c.len), SourceKey::new(eid, be(c.addr))));
        }
        // As IPv4's: the endpoint id's 32 bits, then the prefix. Only an endpoint with an
        // IPv6 address has IPv6 consumers to admit.
        let v6 = e.addrs.iter().any(|(ip, _)| ip.is_ipv6());
        for c in e.sources6.iter().filter(|_| v6) {
            self.sources6
                .push((32 + u32::from(c.len), SourceKey6::new(eid, c.addr.octets())));
        }
    }

    /// An address (NLB or endpoint `kind`) in `network`, owned by service or endpoint `id`.
    fn addr(&mut self, ip: IpAddr, network: u16, kind: u8, zone: u8, id: u16) {
        let info = AddrInfo { kind, zone, id };
        match ip {
            IpAddr::V4(v4) => self.addrs.push((
                AddrKey {
                    addr_be: be(v4),
                    network,
                    _pad: 0,
                },
                info,
            )),
            IpAddr::V6(v6) => self
                .addrs6
                .push((AddrKey6::new(v6.octets(), network), info)),
        }
    }
}

/// Which families reach a service's targets.
struct Families {
    /// Whether the targets are IPv6 (None: the service has none).
    targets_v6: Option<bool>,
    /// Consumers of the targets' family reach it through some endpoint address.
    same: bool,
    /// So do consumers of the other family (family translation).
    translated: bool,
}

impl Families {
    /// Every service's, by service id: one pass over the endpoints.
    fn all(model: &Model) -> Vec<Self> {
        let mut all: Vec<Self> = model
            .services
            .iter()
            .map(|s| Self {
                targets_v6: s.targets.first().map(|t| t.ip.is_ipv6()),
                same: false,
                translated: false,
            })
            .collect();
        for e in model.endpoints.iter().filter(|e| !e.removed) {
            let Some(f) = all.get_mut(usize::from(e.service)) else {
                continue;
            };
            for (ip, _) in &e.addrs {
                if f.targets_v6.is_some_and(|v6| v6 != ip.is_ipv6()) {
                    f.translated = true;
                } else {
                    f.same = true;
                }
            }
        }
        all
    }

    /// The SNAT ports of a flow (`translated` or not): the whole `[limits]` range, split in
    /// two when both kinds of flow reach the service. The halves are disjoint because the
    /// two kinds reserve ports in different tables (IPv4 or IPv6), which do not see each
    /// other's entries, while both kinds leave from the same NLB address to the same
    /// targets.
    fn snat_range(&self, model: &Model, translated: bool) -> (u16, u16) {
        let (min, max) = (model.settings.snat_port_min, model.settings.snat_port_max);
        if !(self.same && self.translated) || min == max {
            return (min, max);
        }
        let mid = min + (max - min) / 2;
        if translated {
            (mid + 1, max)
        } else {
            (min, mid)
        }
    }
}

/// The NLB address per target zone for flows in through an endpoint address of `zone`:
/// the zone's own NLB address for every target (flows follow the zone that carried them
/// in, so the provider's replies reach the node that holds the flow); where the service
/// has none in that zone, the one of the target's zone.
fn nlb_of(s: &Service, zone: u8) -> [u32; MAX_ZONES] {
    let v4 = || {
        s.nlbs.iter().filter_map(|(ip, z)| match ip {
            IpAddr::V4(v4) => Some((*v4, *z)),
            IpAddr::V6(_) => None,
        })
    };
    let mut nlb_be = [0u32; MAX_ZONES];
    for (ip, z) in v4() {
        nlb_be[usize::from(z)] = be(ip);
    }
    if let Some((ip, _)) = v4().find(|(_, z)| *z == zone) {
        nlb_be.fill(be(ip));
    }
    nlb_be
}

/// `nlb_of` for an IPv6 endpoint address: the service's IPv6 NLB addresses, by the same rule.
fn nlb6_of(s: &Service, zone: u8) -> [[u8; 16]; MAX_ZONES] {
    let v6 = || {
        s.nlbs.iter().filter_map(|(ip, z)| match ip {
            IpAddr::V6(v6) => Some((v6.octets(), *z)),
            IpAddr::V4(_) => None,
        })
    };
    let mut nlb = [[0u8; 16]; MAX_ZONES];
    for (ip, z) in v6() {
        nlb[usize::from(z)] = ip;
    }
    if let Some((ip, _)) = v6().find(|(_, z)| *z == zone) {
        nlb.fill(ip);
    }
    nlb
}

/// The Maglev table of `zone` (None: the service-wide one) over the `resolved` targets: the
/// healthy ones; failing over to other zones' healthy targets, then open to all the zone's.
fn pick(resolved: &[(u32, IpAddr, u8)], zone: Option<u8>, unhealthy: &Unhealthy) -> Vec<u32> {
    let select = |zone: Option<u8>, healthy_only: bool| -> Vec<(u32, IpAddr)> {
        resolved
            .iter()
            .filter(|(id, _, z)| {
                zone.is_none_or(|zone| *z == zone) && !(healthy_only && unhealthy.contains(id))
            })
            .map(|(id, ip, _)| (*id, *ip))
            .collect()
    };
    let any_healthy = !select(None, true).is_empty();
    let healthy = select(zone, true);
    // A zone with no resolved target at all refuses: nothing there answers.
    let chosen = if !healthy.is_empty() || select(zone, false).is_empty() {
        healthy
    } else if any_healthy {
        select(None, true)
    } else {
        select(zone, false)
    };
    table(&chosen)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Listener, Network, Target};

    fn model(cross_zone: bool) -> Model {
        Model {
            next_target: 2,
            cluster: None,
            serving: None,
            dns: crate::model::Dns::default(),
            networks: vec![
                Network {
                    removed: false,
                    name: "acme".into(),
                    interface: "fw-acme".into(),
                    ifindex: 2,
                    mac: [2, 0, 0, 0, 0, 2],
                    mtu: 1500,
                    routes: Vec::new(),
                    routes6: Vec::new(),
                },
                Network {
                    removed: false,
                    name: "prov".into(),
                    interface: "fw-prov".into(),
                    ifindex: 4,
                    mac: [2, 0, 0, 0, 0, 4],
                    mtu: 1500,
                    routes: Vec::new(),
                    routes6: Vec::new(),
                },
            ],
            services: vec![Service {
                removed: false,
                name: "billing".into(),
                network: 1,
                nlbs: vec![
                    (Ipv4Addr::new(10, 9, 0, 250).into(), 0),
                    (Ipv4Addr::new(10, 9, 0, 251).into(), 1),
                ],
                cross_zone,
                listeners: vec![Listener {
                    proto: 6,
                    port: 443,
                    target_port: 8443,
                }],
                targets: vec![
                    Target {
                        id: 0,
                        ip: Ipv4Addr::new(10, 9, 0, 11).into(),
                        zone: 0,
                        via: None,
                    },
                    Target {
                        id: 1,
                        ip: Ipv4Addr::new(10, 9, 0, 12).into(),
                        zone: 1,
                        via: None,
                    },
                ],
                health: Default::default(),
            }],
            endpoints: vec![Endpoint {
                removed: false,
                name: "acme-billing".into(),
                service: 0,
                network: 0,
                addrs: vec![(Ipv4Addr::new(10, 0, 0, 100).into(), 0)],
                sources: vec!["10.0.0.0/25".parse().expect("cidr")],
                sources6: Vec::new(),
                accepted: true,
                state: crate::model::EndpointState::Available,
            }],
            zones: vec!["z1".into(), "z2".into()],
            flow_table_size: 1000,
            settings: Settings::default(),
        }
    }

    #[test]
    fn a_routed_target_takes_its_routers_mac() {
        let mut m = model(false);
        let router = Ipv4Addr::new(10, 9, 0, 1);
        m.services[0].targets[1].ip = Ipv4Addr::new(10, 60, 0, 5).into();
        m.services[0].targets[1].via = Some(router.into());
        let target_mac = [2, 0, 0, 0, 0, 0x11];
        let router_mac = [2, 0, 0, 0, 0, 1];
        let mut neigh = Neighbors::new();
        neigh.insert((1, Ipv4Addr::new(10, 9, 0, 11).into()), target_mac);
        // A MAC learned for the routed target's own address is not the one to use.
        neigh.insert(
            (1, Ipv4Addr::new(10, 60, 0, 5).into()),
            [2, 0, 0, 0, 0, 0x99],
        );
        let p = Plan::build(&m, &neigh, &Unhealthy::new());
        assert_eq!(p.targets[1].1.mac, [0; 6], "router not resolved yet");
        assert!(!maglev_of(&p, maglev_table(0, None)).contains(&1));
        neigh.insert((1, router.into()), router_mac);
        let p = Plan::build(&m, &neigh, &Unhealthy::new());
        assert_eq!(p.targets[0].1.mac, target_mac, "on-link target");
        assert_eq!(p.targets[1].1.mac, router_mac, "routed target");
        assert_eq!(p.targets[1].1.addr_be, be(Ipv4Addr::new(10, 60, 0, 5)));
        assert!(maglev_of(&p, maglev_table(0, None)).contains(&1));
    }

    fn maglev_of(p: &Plan, table: u32) -> &[u32] {
        &p.maglev
            .iter()
            .find(|(t, _)| *t == table)
            .expect("table planned")
            .1
    }

    #[test]
    fn unresolved_targets_take_no_flows() {
        let m = model(false);
        let none = Plan::build(&m, &Neighbors::new(), &Unhealthy::new());
        for (_, t) in &none.maglev {
            assert!(
                t.iter().all(|s| *s == maglev::NO_BACKEND),
                "a table has an unresolved target"
            );
        }
        let mut neigh = Neighbors::new();
        neigh.insert(
            (1, Ipv4Addr::new(10, 9, 0, 11).into()),
            [2, 0, 0, 0, 0, 0x11],
        );
        let one = Plan::build(&m, &neigh, &Unhealthy::new());
        assert!(
            maglev_of(&one, maglev_table(0, Some(0)))
                .iter()
                .all(|s| *s == 0),
            "zone z1 table must be all target 0"
        );
        assert!(
            maglev_of(&one, maglev_table(0, Some(1)))
                .iter()
                .all(|s| *s == maglev::NO_BACKEND),
            "z2 has no resolved target"
        );
        assert!(
            maglev_of(&one, maglev_table(0, None))
                .iter()
                .all(|s| *s == 0)
        );
        assert_eq!(one.targets[0].1.mac, [2, 0, 0, 0, 0, 0x11]);
    }

    #[test]
    fn unhealthy_targets_leave_the_tables_until_all_are_unhealthy() {
        let m = model(true);
        let mut neigh = Neighbors::new();
        neigh.insert(
            (1, Ipv4Addr::new(10, 9, 0, 11).into()),
            [2, 0, 0, 0, 0, 0x11],
        );
        neigh.insert(
            (1, Ipv4Addr::new(10, 9, 0, 12).into()),
            [2, 0, 0, 0, 0, 0x12],
        );
        let ids = |p: &Plan, t| {
            let mut v: Vec<u32> = maglev_of(p, t).to_vec();
            v.sort_unstable();
            v.dedup();
            v
        };
        let all = Plan::build(&m, &neigh, &Unhealthy::new());
        assert_eq!(ids(&all, maglev_table(0, None)), vec![0, 1]);
        let one_down = Plan::build(&m, &neigh, &Unhealthy::from([1]));
        assert_eq!(ids(&one_down, maglev_table(0, None)), vec![0]);
        // Zone z2's only target is down: its table fails over to zone z1's.
        assert_eq!(ids(&one_down, maglev_table(0, Some(1))), vec![0]);
        assert_eq!(ids(&one_down, maglev_table(0, Some(0))), vec![0]);
        // Every target down: the service fails open to all of them.
        let both = Plan::build(&m, &neigh, &Unhealthy::from([0, 1]));
        assert_eq!(ids(&both, maglev_table(0, None)), vec![0, 1]);
        assert_eq!(ids(&both, maglev_table(0, Some(1))), vec![1]);
    }

    #[test]
    fn addresses_listeners_sources_and_flags() {
        let p = Plan::build(&model(true), &Neighbors::new(), &Unhealthy::new());
        assert_eq!(p.ifaces[0].1.flags, IFACE_ACTIVE | IFACE_DEDICATED);
        assert_eq!(
            p.ifaces[1].1.flags,
            IFACE_ACTIVE | IFACE_DEDICATED | IFACE_PROVIDER
        );
        assert_eq!(p.egress, vec![(0, 2), (1, 4)]);
        let nlb = p
            .addrs
            .iter()
            .find(|(k, _)| k.addr_be == be(Ipv4Addr::new(10, 9, 0, 251)))
            .expect("NLB address planned");
        assert_eq!((nlb.0.network, nlb.1.kind, nlb.1.zone), (1, ADDR_NLB, 1));
        let ep = p
            .addrs
            .iter()
            .find(|(_, v)| v.kind == ADDR_ENDPOINT)
            .expect("endpoint address planned");
        assert_eq!(ep.0.network, 0);
        assert_eq!(
            p.sources,
            vec![(32 + 25, SourceKey::new(0, be(Ipv4Addr::new(10, 0, 0, 0))))]
        );
        let [(k, v)] = p.policies[..] else {
            panic!("one address x one listener: {:?}", p.policies)
        };
        assert_eq!(k.addr_be, be(Ipv4Addr::new(10, 0, 0, 100)));
        assert_eq!((k.network, k.proto, k.port_be), (0, 6, 443u16.to_be()));
        assert_eq!(v.target_port_be, 8443u16.to_be());
        assert_eq!(v.maglev_table, maglev_table(0, None), "cross-zone table");
        assert_eq!(v.provider_network, 1);
        // The provider network's MAC, the source of what is forwarded there.
        assert_eq!(
            p.nets.iter().find(|(id, _)| *id == 1).map(|(_, n)| n.mac),
            Some([2, 0, 0, 0, 0, 4])
        );
        // Flows follow the zone: in through 10.0.0.100 (z1), out from z1's NLB address,
        // whichever zone the target is in.
        assert_eq!(v.nlb_be, [be(Ipv4Addr::new(10, 9, 0, 250)); MAX_ZONES]);
        assert_eq!(v.flags, POLICY_ACCEPTED, "a /25 is not any source");
        assert_eq!(
            (v.snat_port_min, v.snat_port_max),
            (
                Settings::default().snat_port_min,
                Settings::default().snat_port_max
            )
        );
    }

    /// An IPv4 address on an endpoint of a service with IPv6 targets: its listener's IPv4
    /// policy only sends packets to the IPv6 path, where the real one sits under the
    /// address's mapped form; the SNAT range splits between the two kinds of flow.
    #[test]
    fn an_address_of_the_other_family_is_translated() {
        let text = crate::model::testing::EXAMPLE6.replace(
            "addresses = [{ ip = \"fd00::64\", zone = \"z1\" }",
            "addresses = [{ ip = \"10.0.0.100\", zone = \"z1\" }, { ip = \"fd00::64\", zone = \"z1\" }",
        );
        let m = crate::model::testing::build(&text).unwrap_or_else(|e| panic!("{e}"));
        let p = Plan::build(&m, &Neighbors::new(), &Unhealthy::new());
        let [(k, v)] = p.policies[..] else {
            panic!("one IPv4 address x one listener: {:?}", p.policies)
        };
        assert_eq!(k.addr_be, be(Ipv4Addr::new(10, 0, 0, 100)));
        assert_eq!(v.flags & POLICY_XLAT, POLICY_XLAT);
        let mapped = Ipv4Addr::new(10, 0, 0, 100).to_ipv6_mapped().octets();
        let (_, x) = p
            .policies6
            .iter()
            .find(|(k, _)| k.addr == mapped)
            .expect("the translated policy, under the mapped address");
        let (_, same) = p
            .policies6
            .iter()
            .find(|(k, _)| k.addr != mapped)
            .expect("a same-family policy");
        let nlb6: std::net::Ipv6Addr = "fd00:9::fa".parse().expect("addr");
        assert_eq!(
            x.nlb,
            [nlb6.octets(); MAX_ZONES],
            "from the zone's IPv6 NLB address"
        );
        assert_eq!(x.flags & POLICY_ANY_SOURCE, 0, "IPv4 allowed_sources apply");
        // Disjoint halves: the two tables cannot see each other's reservations.
        assert_eq!((same.snat_port_min, same.snat_port_max), (1024, 33279));
        assert_eq!((x.snat_port_min, x.snat_port_max), (33280, 65535));
        assert!(
            p.targets6.iter().all(|(_, a)| a[..12] != mapped[..12]),
            "IPv6 targets stay as they are: {:?}",
            p.targets6
        );
    }

    /// An IPv6 endpoint address of a service with IPv4 targets: the targets' mapped
    /// addresses join `targets6`, and flows leave from the zone's mapped IPv4 NLB address.
    #[test]
    fn ipv4_targets_are_mapped_for_ipv6_consumers() {
        let text = crate::model::testing::EXAMPLE6
            .replace(
                "targets = [{ ip = \"fd00:9::11\", zone = \"z1\" }, { ip = \"fd00:60::5\", zone = \"z2\" }]",
                "targets = [{ ip = \"10.9.0.11\", zone = \"z1\" }]",
            )
            .replace(
                "addresses = [{ ip = \"fd00::64\", zone = \"z1\" }, { ip = \"fd00::65\", zone = \"z2\" }]",
                "addresses = [{ ip = \"fd00::64\", zone = \"z1\" }]",
            );
        let m = crate::model::testing::build(&text).unwrap_or_else(|e| panic!("{e}"));
        let p = Plan::build(&m, &Neighbors::new(), &Unhealthy::new());
        let t = Ipv4Addr::new(10, 9, 0, 11);
        assert_eq!(p.targets6, [(0, t.to_ipv6_mapped().octets())]);
        assert_eq!(p.targets[0].1.addr_be, be(t), "and its IPv4 entry as ever");
        let [(_, v)] = p.policies6[..] else {
            panic!("one address x one listener: {:?}", p.policies6)
        };
        let nlb = Ipv4Addr::new(10, 9, 0, 250).to_ipv6_mapped().octets();
        assert_eq!(v.nlb, [nlb; MAX_ZONES]);
        // Only translated flows reach the service: the whole range.
        assert_eq!((v.snat_port_min, v.snat_port_max), (1024, 65535));
    }

    #[test]
    fn ipv6_addresses_fill_the_ipv6_maps() {
        let m = crate::model::testing::build(crate::model::testing::EXAMPLE6)
            .unwrap_or_else(|e| panic!("{e}"));
        let v6 = |s: &str| s.parse::<std::net::Ipv6Addr>().expect("addr");
        let mut neigh = Neighbors::new();
        neigh.insert((1, v6("fd00:9::11").into()), [2, 0, 0, 0, 0, 0x11]);
        // The routed target is resolved through its router.
        neigh.insert((1, v6("fd00:9::1").into()), [2, 0, 0, 0, 0, 1]);
        let p = Plan::build(&m, &neigh, &Unhealthy::new());
        // The IPv4 NLB address in its map, the IPv6 ones in theirs.
        assert_eq!(p.addrs.len(), 1);
        let kinds: Vec<([u8; 16], u16, u8, u8)> = p
            .addrs6
            .iter()
            .map(|(k, v)| (k.addr, k.network, v.kind, v.zone))
            .collect();
        assert_eq!(
            kinds,
            [
                (v6("fd00:9::fa").octets(), 1, ADDR_NLB, 0),
                (v6("fd00:9::fb").octets(), 1, ADDR_NLB, 1),
                (v6("fd00::64").octets(), 0, ADDR_ENDPOINT, 0),
                (v6("fd00::65").octets(), 0, ADDR_ENDPOINT, 1),
            ]
        );
        assert!(p.policies.is_empty(), "no IPv4 endpoint address");
        let [(k, v), (k2, v2)] = p.policies6[..] else {
            panic!("two addresses x one listener: {:?}", p.policies6)
        };
        assert_eq!(k.addr, v6("fd00::64").octets());
        assert_eq!((k.network, k.proto, k.port_be), (0, 6, 443u16.to_be()));
        assert_eq!(k2.addr, v6("fd00::65").octets());
        assert_eq!(v.target_port_be, 8443u16.to_be());
        assert_eq!(v.maglev_table, maglev_table(0, Some(0)));
        assert_eq!(v2.maglev_table, maglev_table(0, Some(1)));
        // Flows follow the zone, from its IPv6 NLB address, never the IPv4 one.
        assert_eq!(v.nlb, [v6("fd00:9::fa").octets(); MAX_ZONES]);
        assert_eq!(v2.nlb, [v6("fd00:9::fb").octets(); MAX_ZONES]);
        assert_eq!(v.flags, POLICY_ACCEPTED, "a /64 is not any source");
        assert_eq!(
            p.sources6,
            [(32 + 64, SourceKey6::new(0, v6("fd00::").octets()))]
        );
        assert_eq!(
            p.sources,
            [(32 + 24, SourceKey::new(0, be(Ipv4Addr::new(10, 0, 0, 0))))]
        );
        // Target ids index both maps; an IPv6 target's IPv4 address is 0.
        assert_eq!(
            p.targets6,
            [
                (0, v6("fd00:9::11").octets()),
                (1, v6("fd00:60::5").octets())
            ]
        );
        assert_eq!(p.targets[0].1.addr_be, 0);
        assert_eq!(p.targets[0].1.mac, [2, 0, 0, 0, 0, 0x11]);
        assert_eq!(p.targets[1].1.mac, [2, 0, 0, 0, 0, 1], "its router's");
        // One table per zone, though z1 has an NLB address of each family.
        let tables: Vec<u32> = p.maglev.iter().map(|(t, _)| *t).collect();
        assert_eq!(
            tables,
            [
                maglev_table(0, Some(0)),
                maglev_table(0, Some(1)),
                maglev_table(0, None)
            ]
        );
        assert!(
            maglev_of(&p, maglev_table(0, Some(1)))
                .iter()
                .all(|t| *t == 1)
        );
        // An IPv4-only config plans nothing for the IPv6 maps (not even the `::/0` of an
        // endpoint with no allowed_sources).
        let m = crate::model::testing::build(crate::model::testing::EXAMPLE)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(m.endpoints[1].sources6, [crate::model::Cidr6::ANY]);
        let p = Plan::build(&m, &Neighbors::new(), &Unhealthy::new());
        assert!(p.addrs6.is_empty() && p.policies6.is_empty());
        assert!(p.sources6.is_empty() && p.targets6.is_empty());
    }
}
