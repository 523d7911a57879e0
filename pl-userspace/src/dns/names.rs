//! The names: per consumer network, each endpoint's regional name (every zone's
//! addresses), a zonal name per zone, and its service's private name where the endpoint
//! turns `private_dns` on. A network sees only its own endpoints. Pure: the model in,
//! names and their addresses out, for the server, `pl dns` and its zone file.

use std::{fmt::Write as _, net::IpAddr};

use serde::{Deserialize, Serialize};

use crate::model::{Endpoint, EndpointState, Model, is_label};

/// What a name stands for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// `<endpoint>.<service>.<domain>`: every address of the endpoint.
    Regional,
    /// `<endpoint>-<zone>.<service>.<domain>`: one zone's addresses.
    Zonal,
    /// The service's own name, inside this network only.
    Private,
}

/// One name pl gives in a network, and the addresses it answers with (zone order; the
/// server shuffles the zones per query).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Name {
    /// Lower case, without the trailing dot.
    pub name: String,
    pub kind: Kind,
    pub endpoint: String,
    /// The zone of a zonal name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone: Option<String>,
    pub addresses: Vec<IpAddr>,
    /// The same by zone (zone index, its addresses), for answers that follow health.
    #[serde(skip)]
    pub groups: Vec<(u8, Vec<IpAddr>)>,
    /// The endpoint's service (an index into the model's services).
    #[serde(skip)]
    pub service: u16,
}

/// One network's names: from a config (`pl dns --config`), or as `pl run` answers them
/// now (health applied).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkNames {
    pub network: String,
    /// Where pl answers them; empty: nowhere (list or serve them yourself).
    pub dns_addresses: Vec<IpAddr>,
    pub names: Vec<Name>,
}

/// Every network's names (those with none left out), or only network `only`'s; None
/// when no network is named `only`.
pub fn by_network(model: &Model, only: Option<&str>) -> Option<Vec<NetworkNames>> {
    let ids: Vec<u16> = match only {
        Some(name) => vec![network_id(model, name)?],
        None => (0..model.networks.len() as u16).collect(),
    };
    let all = ids
        .into_iter()
        .filter(|&id| !model.networks[usize::from(id)].removed)
        .map(|id| {
            let network = model.networks[usize::from(id)].name.clone();
            NetworkNames {
                dns_addresses: model
                    .dns
                    .addresses
                    .get(&network)
                    .cloned()
                    .unwrap_or_default(),
                names: names(model, id),
                network,
            }
        })
        .filter(|n| only.is_some() || !n.names.is_empty())
        .collect();
    Some(all)
}

/// The index of the network named `name`.
pub fn network_id(model: &Model, name: &str) -> Option<u16> {
    model
        .networks
        .iter()
        .position(|n| n.name == name)
        .and_then(|i| u16::try_from(i).ok())
}

/// The names network `network` (an index into `model.networks`) sees, endpoint by
/// endpoint in config order: regional, zonal in zone order, private. An endpoint that is
/// not available (not accepted, or its network not allowed) has none, as one whose name,
/// service name or zone name is no DNS label.
pub fn names(model: &Model, network: u16) -> Vec<Name> {
    let mut out = Vec::new();
    for e in model
        .endpoints
        .iter()
        .filter(|e| e.network == network && !e.removed && e.state == EndpointState::Available)
    {
        let Some(s) = model.services.get(usize::from(e.service)) else {
            continue;
        };
        let (label, service) = (e.name.to_ascii_lowercase(), s.name.to_ascii_lowercase());
        if !is_label(&label) || !is_label(&service) {
            continue;
        }
        let regional = format!("{label}.{service}.{}", model.dns.domain);
        out.push(Name {
            name: regional,
            kind: Kind::Regional,
            endpoint: e.name.clone(),
            zone: None,
            addresses: in_zone_order(e, None),
            groups: by_zone(e, None),
            service: e.service,
        });
        let mut zones: Vec<u8> = e.addrs.iter().map(|(_, z)| *z).collect();
        zones.sort_unstable();
        zones.dedup();
        for z in zones {
            let Some(zone) = model.zones.get(usize::from(z)) else {
                continue;
            };
            let zone = zone.to_ascii_lowercase();
            let zonal = format!("{label}-{zone}");
            if !is_label(&zonal) {
                continue;
            }
            out.push(Name {
                name: format!("{zonal}.{service}.{}", model.dns.domain),
                kind: Kind::Zonal,
                endpoint: e.name.clone(),
                zone: Some(zone),
                addresses: in_zone_order(e, Some(z)),
                groups: by_zone(e, Some(z)),
                service: e.service,
            });
        }
        if let Some(private) = model.dns.private_names.get(&s.name)
            && model.dns.private_endpoints.contains(&e.name)
        {
            out.push(Name {
                name: private.clone(),
                kind: Kind::Private,
                endpoint: e.name.clone(),
                zone: None,
                addresses: in_zone_order(e, None),
                groups: by_zone(e, None),
                service: e.service,
            });
        }
    }
    out
}

/// [`in_zone_order`] cut into zones.
fn by_zone(e: &Endpoint, zone: Option<u8>) -> Vec<(u8, Vec<IpAddr>)> {
    let mut groups: Vec<(u8, Vec<IpAddr>)> = Vec::new();
    let zone_of = |ip: &IpAddr| e.addrs.iter().find(|(a, _)| a == ip).map(|(_, z)| *z);
    for ip in in_zone_order(e, zone) {
        let z = zone_of(&ip).unwrap_or_default();
        match groups.last_mut() {
            Some((last, addrs)) if *last == z => addrs.push(ip),
            _ => groups.push((z, vec![ip])),
        }
    }
    groups
}

/// The endpoint's addresses in zone order (IPv4 before IPv6 within a zone), or one zone's.
fn in_zone_order(e: &Endpoint, zone: Option<u8>) -> Vec<IpAddr> {
    let mut a: Vec<(u8, bool, IpAddr)> = e
        .addrs
        .iter()
        .filter(|(_, z)| zone.is_none_or(|want| want == *z))
        .map(|(ip, z)| (*z, ip.is_ipv6(), *ip))
        .collect();
    a.sort_unstable();
    a.into_iter().map(|(_, _, ip)| ip).collect()
}

/// An RFC 1035 zone file of network `network`'s names, for people who serve them from
/// their own DNS: the domain's zone (SOA, NS, the regional and zonal names), then each
/// private name as a zone of its own (it lives outside the domain). The SOA serial is a
/// hash of the records, so it changes when they do.
pub fn zone_file(model: &Model, network: u16) -> String {
    let names = names(model, network);
    let (domain, ttl) = (&model.dns.domain, model.dns.ttl_s);
    let net = model
        .networks
        .get(usize::from(network))
        .map_or("", |n| n.name.as_str());
    let ns = model.dns.addresses.get(net).cloned().unwrap_or_default();
    let records = |owner: &str, addrs: &[IpAddr]| {
        addrs.iter().fold(String::new(), |mut s, ip| {
            let ty = if ip.is_ipv4() { "A" } else { "AAAA" };
            let _ = writeln!(s, "{owner}. {ttl} IN {ty} {ip}");
            s
        })
    };
    let body: String = names
        .iter()
        .filter(|n| n.kind != Kind::Private)
        .map(|n| records(&n.name, &n.addresses))
        .collect();
    let serial = serial(&body);
    let apex = |origin: &str| {
        let mut s = format!("$ORIGIN {origin}.\n$TTL {ttl}\n");
        let _ = writeln!(
            s,
            "@ IN SOA ns.{domain}. hostmaster.{domain}. ( {serial} 3600 600 86400 {ttl} )"
        );
        let _ = writeln!(s, "@ IN NS ns.{domain}.");
        s
    };
    let mut out = format!("; pl endpoint names for network {net:?}\n");
    out.push_str(&apex(domain));
    out.push_str(&records(&format!("ns.{domain}"), &ns));
    out.push_str(&body);
    for n in names.iter().filter(|n| n.kind == Kind::Private) {
        let _ = writeln!(out, "\n; the private name of endpoint {:?}", n.endpoint);
        out.push_str(&apex(&n.name));
        out.push_str(&records(&n.name, &n.addresses));
    }
    out
}

/// FNV-1a of the records, as a 32-bit SOA serial (never 0).
pub(super) fn serial(records: &str) -> u32 {
    let h = records.bytes().fold(0x811c_9dc5_u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    });
    h.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::testing::build;

    fn model_of(text: &str) -> Model {
        build(text).unwrap_or_else(|e| panic!("{e}"))
    }

    const CONFIG: &str = r#"
[dns]
domain = "VPCE.Internal."
ttl_s = 30

[[network]]
name = "acme"
interface = "fw-acme"
dns_addresses = ["10.0.0.2", "fd00:a::2"]

[[network]]
name = "globex"
interface = "fw-globex"

[[network]]
name = "prov"
interface = "fw-prov"

[[service]]
name = "billing"
network = "prov"
private_dns_name = "Billing.Example.com"
acceptance_required = false
allowed_principals = ["*"]
nlb_addresses = [{ ip = "10.9.0.250", zone = "z1" }, { ip = "10.9.0.251", zone = "z2" }]
listeners = [{ protocol = "tcp", port = 443 }]
targets = [{ ip = "10.9.0.11", zone = "z1" }, { ip = "10.9.0.12", zone = "z2" }]

[[endpoint]]
name = "acme-billing"
service = "billing"
network = "acme"
addresses = [{ ip = "10.0.0.101", zone = "z2" }, { ip = "10.0.0.100", zone = "z1" }, { ip = "fd00:a::100", zone = "z1" }]

[[endpoint]]
name = "globex-billing"
service = "billing"
network = "globex"
private_dns = false
addresses = [{ ip = "10.0.0.100", zone = "z1" }]
"#;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("address")
    }

    #[test]
    fn each_network_sees_its_own_endpoints_names() {
        let m = model_of(CONFIG);
        assert_eq!(m.dns.domain, "vpce.internal");
        let acme = names(&m, 0);
        let got: Vec<(&str, Kind, Vec<IpAddr>)> = acme
            .iter()
            .map(|n| (n.name.as_str(), n.kind, n.addresses.clone()))
            .collect();
        assert_eq!(
            got,
            vec![
                (
                    "acme-billing.billing.vpce.internal",
                    Kind::Regional,
                    vec![ip("10.0.0.100"), ip("fd00:a::100"), ip("10.0.0.101")]
                ),
                (
                    "acme-billing-z1.billing.vpce.internal",
                    Kind::Zonal,
                    vec![ip("10.0.0.100"), ip("fd00:a::100")]
                ),
                (
                    "acme-billing-z2.billing.vpce.internal",
                    Kind::Zonal,
                    vec![ip("10.0.0.101")]
                ),
                (
                    "billing.example.com",
                    Kind::Private,
                    vec![ip("10.0.0.100"), ip("fd00:a::100"), ip("10.0.0.101")]
                ),
            ]
        );
        // globex turned the private name off; prov has no endpoints.
        let globex: Vec<String> = names(&m, 1).into_iter().map(|n| n.name).collect();
        assert_eq!(
            globex,
            [
                "globex-billing.billing.vpce.internal",
                "globex-billing-z1.billing.vpce.internal"
            ]
        );
        assert!(names(&m, 2).is_empty());
    }

    #[test]
    fn the_zone_file_has_every_record_and_a_serial_that_follows_them() {
        let m = model_of(CONFIG);
        let z = zone_file(&m, 0);
        for line in [
            "$ORIGIN vpce.internal.",
            "$TTL 30",
            "@ IN NS ns.vpce.internal.",
            "ns.vpce.internal. 30 IN A 10.0.0.2",
            "ns.vpce.internal. 30 IN AAAA fd00:a::2",
            "acme-billing.billing.vpce.internal. 30 IN A 10.0.0.101",
            "acme-billing-z1.billing.vpce.internal. 30 IN AAAA fd00:a::100",
            "$ORIGIN billing.example.com.",
            "billing.example.com. 30 IN A 10.0.0.100",
        ] {
            assert!(z.lines().any(|l| l == line), "no {line:?} in:\n{z}");
        }
        assert!(
            !z.contains("globex"),
            "another network's names leaked:\n{z}"
        );
        let other = model_of(&CONFIG.replace("10.0.0.101", "10.0.0.102"));
        let soa = |z: &str| {
            z.lines()
                .find(|l| l.contains("SOA"))
                .map(str::to_owned)
                .expect("SOA")
        };
        assert_ne!(
            soa(&z),
            soa(&zone_file(&other, 0)),
            "the serial follows the records"
        );
    }
}
