//! Networks: one per forwarder interface, with the static routes to targets behind routers.

use std::{
    collections::{HashMap, HashSet},
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

use pl_common::{cidr::Cidr, maps::MAX_NETWORKS};
use toml::Spanned;

use super::{
    Network,
    addresses::Claims,
    cidr6::Cidr6,
    found::Found,
    interfaces::Interfaces,
    section::{Section, name_of, parse_ip},
};
use crate::config::{Config, ConfigError, NetworkCfg, RouteCfg, Source};

/// Addresses in `to` are reached through the on-link router `via`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Route {
    pub to: Cidr,
    pub via: Ipv4Addr,
}

/// An IPv6 route: addresses in `to` are reached through the on-link router `via`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Route6 {
    pub to: Cidr6,
    pub via: Ipv6Addr,
}

/// The router a network's route sends `ip` to: the longest matching prefix, None when no
/// route matches (on-link) or the route's router is `ip` itself.
pub fn next_hop(routes: &[Route], ip: Ipv4Addr) -> Option<Ipv4Addr> {
    routes
        .iter()
        .filter(|r| r.to.contains(ip))
        .max_by_key(|r| r.to.len)
        .map(|r| r.via)
        .filter(|via| *via != ip)
}

/// `next_hop` for an IPv6 address, over the network's IPv6 routes.
pub fn next_hop6(routes: &[Route6], ip: Ipv6Addr) -> Option<Ipv6Addr> {
    routes
        .iter()
        .filter(|r| r.to.contains(ip))
        .max_by_key(|r| r.to.len)
        .map(|r| r.via)
        .filter(|via| *via != ip)
}

/// The router network `n` sends `ip` to, by its family's routes.
pub fn hop_of(n: &Network, ip: IpAddr) -> Option<IpAddr> {
    match ip {
        IpAddr::V4(v4) => next_hop(&n.routes, v4).map(IpAddr::V4),
        IpAddr::V6(v6) => next_hop6(&n.routes6, v6).map(IpAddr::V6),
    }
}

/// The `[[network]]` sections: names unique, interfaces present and used once, routes sound
/// and their routers claimed. A network with errors is still listed (so what refers to it
/// finds it), as is one whose types were wrong.
pub(super) fn networks(
    src: &Source,
    cfg: &Config,
    ifaces: &dyn Interfaces,
    claims: &mut Claims,
    found: &mut Found<'_>,
) -> Vec<Network> {
    let mut names = HashSet::new();
    let mut used_ifaces = HashMap::new();
    let mut networks = Vec::new();
    for (i, n) in cfg.network.iter().enumerate() {
        let c = n.get_ref();
        let sec = Section::new(src, "network", i, c.name.get_ref(), n.span().start);
        found.keep(name_of(&sec, &c.name, &mut names));
        let id = networks.len() as u16;
        networks.push(network(
            &sec,
            c,
            id,
            ifaces,
            &mut used_ifaces,
            claims,
            found,
        ));
    }
    networks.extend(found.unparsed.networks.iter().map(|n| placeholder(n, "")));
    if networks.len() > MAX_NETWORKS as usize {
        found.errors.push(src.error(
            None,
            "[[network]]",
            "",
            format!("{} networks; at most {MAX_NETWORKS}", networks.len()),
        ));
    }
    networks
}

/// A network as far as the config names it: no interface resolved yet.
fn placeholder(name: &str, interface: &str) -> Network {
    Network {
        removed: false,
        name: name.to_owned(),
        interface: interface.to_owned(),
        ifindex: 0,
        mac: [0; 6],
        mtu: super::default_mtu(),
        routes: Vec::new(),
        routes6: Vec::new(),
    }
}

/// One network, to be network `id`; its errors go to `found`.
fn network(
    sec: &Section<'_>,
    c: &NetworkCfg,
    id: u16,
    ifaces: &dyn Interfaces,
    used_ifaces: &mut HashMap<String, String>,
    claims: &mut Claims,
    found: &mut Found<'_>,
) -> Network {
    let iface = &c.interface;
    let mut net = placeholder(c.name.get_ref(), iface.get_ref());
    if let Some(other) = used_ifaces.insert(iface.get_ref().clone(), net.name.clone()) {
        found.errors.push(sec.error(
            "interface",
            Some(iface.span().start),
            format!(
                "{} is already the interface of network {other:?}",
                iface.get_ref()
            ),
        ));
    } else {
        match ifaces.resolve(iface.get_ref()) {
            Ok((ifindex, mac, mtu)) => (net.ifindex, net.mac, net.mtu) = (ifindex, mac, mtu),
            // Only this host can say: `pl check` may be run elsewhere.
            Err(why) => found.host_problem(sec.error(
                "interface",
                Some(iface.span().start),
                format!("{}: {why}", iface.get_ref()),
            )),
        }
    }
    let (v4, v6): (Vec<_>, Vec<_>) = c
        .routes
        .iter()
        .partition(|rc| !rc.get_ref().to.get_ref().contains(':'));
    if let Some(routes) = found.keep(routes::<Cidr>(sec, &v4)) {
        for ((_, via), rc) in routes.iter().zip(&v4) {
            let at = rc.get_ref().via.span().start;
            found.keep(claims.claim_hop(sec, at, id, IpAddr::V4(*via)));
        }
        net.routes = routes
            .into_iter()
            .map(|(to, via)| Route { to, via })
            .collect();
    }
    if let Some(routes) = found.keep(routes::<Cidr6>(sec, &v6)) {
        for ((_, via), rc) in routes.iter().zip(&v6) {
            let at = rc.get_ref().via.span().start;
            found.keep(claims.claim_hop(sec, at, id, IpAddr::V6(*via)));
        }
        net.routes6 = routes
            .into_iter()
            .map(|(to, via)| Route6 { to, via })
            .collect();
    }
    net
}

/// The id of the network `n` names.
pub(super) fn network_id(
    networks: &[Network],
    sec: &Section<'_>,
    field: &str,
    n: &Spanned<String>,
) -> Result<u16, ConfigError> {
    networks
        .iter()
        .position(|x| &x.name == n.get_ref())
        .map(|i| i as u16)
        .map_or_else(
            || {
                sec.err(
                    field,
                    Some(n.span().start),
                    format!("no network named {:?}", n.get_ref()),
                )
            },
            Ok,
        )
}

/// A prefix family `routes` validates: IPv4's [`Cidr`] or IPv6's [`Cidr6`].
trait Prefix: std::str::FromStr<Err: std::fmt::Display> + PartialEq + Copy {
    type Addr: Copy + std::fmt::Display;
    /// `ip` as a router of this family, or why it cannot be one.
    fn router(ip: IpAddr) -> Result<Self::Addr, String>;
    /// Whether a route to this prefix takes `ip` elsewhere: a default route does not
    /// (it cannot mean that the router's own segment is remote).
    fn covers(&self, ip: Self::Addr) -> bool;
    /// `addr/len`.
    fn text(&self) -> String;
}

impl Prefix for Cidr {
    type Addr = Ipv4Addr;

    fn router(ip: IpAddr) -> Result<Ipv4Addr, String> {
        match ip {
            IpAddr::V4(a) if pl_common::cidr::is_martian(u32::from_ne_bytes(a.octets())) => {
                Err(format!("{a} cannot be a router's address"))
            }
            IpAddr::V4(a) => Ok(a),
            IpAddr::V6(_) => Err(format!("{ip}: an IPv4 route's router must be IPv4")),
        }
    }

    fn covers(&self, ip: Ipv4Addr) -> bool {
        self.len > 0 && self.contains(ip)
    }

    fn text(&self) -> String {
        format!("{}/{}", self.addr, self.len)
    }
}

/// IPv6 routers: unicast, not `::` (which `parse_ip` refuses).
impl Prefix for Cidr6 {
    type Addr = Ipv6Addr;

    fn router(ip: IpAddr) -> Result<Ipv6Addr, String> {
        match ip {
            IpAddr::V6(a) => Ok(a),
            IpAddr::V4(_) => Err(format!("{ip}: an IPv6 route's router must be IPv6")),
        }
    }

    fn covers(&self, ip: Ipv6Addr) -> bool {
        self.len > 0 && self.contains(ip)
    }

    fn text(&self) -> String {
        format!("{}/{}", self.addr, self.len)
    }
}

/// A network's `routes` of one family, validated: prefixes well-formed and listed once,
/// routers usable and on-link. pl does not route recursively, so a router may be covered
/// by no route but a default one. (prefix, router) per route, in `cfg` order.
fn routes<P: Prefix>(
    sec: &Section<'_>,
    cfg: &[&Spanned<RouteCfg>],
) -> Result<Vec<(P, P::Addr)>, ConfigError> {
    let mut out: Vec<(P, P::Addr)> = Vec::new();
    for rc in cfg {
        let c = rc.get_ref();
        let to = c.to.get_ref().parse::<P>().or_else(|e| {
            sec.err(
                "routes.to",
                Some(c.to.span().start),
                format!("{:?}: {e}", c.to.get_ref()),
            )
        })?;
        if out.iter().any(|r| r.0 == to) {
            return sec.err(
                "routes.to",
                Some(c.to.span().start),
                format!("{:?} is listed twice", c.to.get_ref()),
            );
        }
        let via = P::router(parse_ip(sec, "routes.via", &c.via)?)
            .or_else(|why| sec.err("routes.via", Some(c.via.span().start), why))?;
        out.push((to, via));
    }
    for ((_, via), rc) in out.iter().zip(cfg) {
        if let Some((to, next)) = out.iter().find(|(to, _)| to.covers(*via)) {
            return sec.err(
                "routes.via",
                Some(rc.get_ref().via.span().start),
                format!(
                    "{via} is not on-link: route {} sends it to {next} (a next hop must be on the network's own segment; pl does not route recursively)",
                    to.text()
                ),
            );
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::testing::{EXAMPLE, build};

    #[test]
    fn routes_send_targets_to_the_longest_matching_router() {
        let text = EXAMPLE.replace(
            "interface = \"fw-prov\"",
            "interface = \"fw-prov\"\nroutes = [{ to = \"0.0.0.0/0\", via = \"10.9.0.1\" }, { to = \"10.9.0.12/32\", via = \"10.9.0.2\" }, { to = \"10.9.0.0/24\", via = \"10.9.0.3\" }]",
        );
        // Without the /24 the routers are on-link; with it they are not.
        let err = build(&text).expect_err("a router covered by a /24 route");
        assert!(err.to_string().contains("routes.via"), "{err}");
        let text = text.replace(", { to = \"10.9.0.0/24\", via = \"10.9.0.3\" }", "");
        let m = build(&text).unwrap_or_else(|e| panic!("{e}"));
        let vias: Vec<_> = m.services[0].targets.iter().map(|t| t.via).collect();
        assert_eq!(
            vias,
            [
                Some(IpAddr::V4(Ipv4Addr::new(10, 9, 0, 1))),
                Some(IpAddr::V4(Ipv4Addr::new(10, 9, 0, 2)))
            ],
            "the /32 wins over the default"
        );
        let routes = &m.networks[2].routes;
        assert_eq!(
            next_hop(routes, Ipv4Addr::new(10, 9, 0, 1)),
            None,
            "a router is its own next hop"
        );
        assert_eq!(
            next_hop(&[], Ipv4Addr::new(10, 9, 0, 11)),
            None,
            "no routes: on-link"
        );
    }
}
