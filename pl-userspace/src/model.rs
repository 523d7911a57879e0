//! The validated config: names resolved to ids, addresses parsed, every cross-reference
//! checked. Building a model touches no kernel state, so a bad config leaves nothing
//! behind; the first problem found comes back naming file, line, section and field.

use std::{
    collections::{HashMap, HashSet},
    net::Ipv4Addr,
};

use pl_common::{
    cidr::Cidr,
    maps::{MAX_ENDPOINTS, MAX_NETWORKS, MAX_SERVICES, MAX_TARGETS},
    proto::{IPPROTO_TCP, IPPROTO_UDP},
    service::MAX_ZONES,
    settings::Settings,
};
use toml::Spanned;

use crate::config::{Config, ConfigError, Source, ZonedIp};

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
}

const fn default_mtu() -> u32 {
    1500
}

/// Addresses in `to` are reached through the on-link router `via`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Route {
    pub to: Cidr,
    pub via: Ipv4Addr,
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

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Listener {
    pub proto: u8,
    pub port: u16,
    pub target_port: u16,
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Target {
    /// Global target id (index into `PL_TARGETS`).
    pub id: u32,
    pub ip: Ipv4Addr,
    pub zone: u8,
    /// The router a static route sends it to; None when on-link.
    #[serde(default)]
    pub via: Option<Ipv4Addr>,
}

impl Target {
    /// The address whose MAC its frames go to: its router's, or its own.
    pub fn hop(&self) -> Ipv4Addr {
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
    /// NLB address per zone index.
    pub nlbs: Vec<(Ipv4Addr, u8)>,
    pub cross_zone: bool,
    pub listeners: Vec<Listener>,
    pub targets: Vec<Target>,
    #[serde(default)]
    pub health: HealthCheck,
}

/// A service's active health check (TCP SYN to `port` from the NLB address of the target's
/// zone). Defaults are NLB's: every 30 s, 10 s timeout, 5 passes to come back, 2 failures
/// to go.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct HealthCheck {
    pub enabled: bool,
    pub port: u16,
    pub interval_ms: u64,
    pub timeout_ms: u64,
    pub healthy_threshold: u32,
    pub unhealthy_threshold: u32,
}

impl Default for HealthCheck {
    fn default() -> Self {
        Self {
            enabled: true,
            port: 0,
            interval_ms: 30_000,
            timeout_ms: 10_000,
            healthy_threshold: 5,
            unhealthy_threshold: 2,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Endpoint {
    pub name: String,
    /// Gone from the config since pl run started: kept so ids stay put, programmed as disabled.
    pub removed: bool,
    pub service: u16,
    pub network: u16,
    pub addrs: Vec<(Ipv4Addr, u8)>,
    pub sources: Vec<Cidr>,
    /// Accepted by the service (or acceptance not required): carries traffic.
    pub accepted: bool,
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
}

/// Looks interfaces up; the live one asks the kernel, tests give a fixed set.
pub trait Interfaces {
    /// The interface's ifindex, MAC and MTU, or why not.
    fn resolve(&self, name: &str) -> Result<(u32, Mac, u32), String>;
}

/// The interfaces of the caller's network namespace.
pub struct LiveInterfaces;

impl Interfaces for LiveInterfaces {
    fn resolve(&self, name: &str) -> Result<(u32, Mac, u32), String> {
        let ifindex = nix::net::if_::if_nametoindex(name)
            .map_err(|_| "no such interface in this network namespace".to_owned())?;
        let addrs = nix::ifaddrs::getifaddrs().map_err(|e| format!("listing interfaces: {e}"))?;
        let mac = addrs
            .filter(|a| a.interface_name == name)
            .find_map(|a| {
                a.address
                    .and_then(|s| s.as_link_addr().and_then(nix::sys::socket::LinkAddr::addr))
            })
            .ok_or_else(|| "has no MAC address (not an Ethernet interface?)".to_owned())?;
        let mtu = mtu_of(name).map_err(|e| format!("reading its MTU: {e}"))?;
        Ok((ifindex, mac, mtu))
    }
}

/// The MTU of interface `name` in the caller's network namespace (SIOCGIFMTU: sysfs may
/// show another namespace's devices).
pub fn mtu_of(name: &str) -> std::io::Result<u32> {
    use std::os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd};
    // SAFETY: plain socket(2); the fd is owned at once.
    let raw = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if raw < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: raw is a fresh fd nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    // SAFETY: ifreq is plain data; zeroed is a valid start.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    let bytes = name.as_bytes();
    if bytes.len() >= req.ifr_name.len() {
        return Err(std::io::Error::from(std::io::ErrorKind::InvalidInput));
    }
    for (d, s) in req.ifr_name.iter_mut().zip(bytes) {
        *d = *s as libc::c_char;
    }
    // SAFETY: SIOCGIFMTU reads ifr_name and writes ifr_mtu inside `req`.
    if unsafe { libc::ioctl(fd.as_raw_fd(), libc::SIOCGIFMTU, &raw mut req) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: the union member SIOCGIFMTU fills.
    let mtu = unsafe { req.ifr_ifru.ifru_mtu };
    Ok(u32::try_from(mtu).unwrap_or(0))
}

/// `prev`'s entries at their indexes (tombstoned with `tomb` if gone from `new`), then the
/// entries new in `new`; and where each of `new`'s entries went.
fn align_vec<T>(
    prev: &[T],
    new: Vec<T>,
    name: impl Fn(&T) -> &String,
    tomb: impl Fn(&T) -> T,
) -> (Vec<T>, Vec<u16>) {
    let mut out: Vec<T> = prev.iter().map(&tomb).collect();
    let mut map = Vec::with_capacity(new.len());
    for item in new {
        match prev.iter().position(|p| name(p) == name(&item)) {
            Some(i) => {
                out[i] = item;
                map.push(i as u16);
            }
            None => {
                map.push(out.len() as u16);
                out.push(item);
            }
        }
    }
    (out, map)
}

/// Where in the file a section is, for errors.
struct Section<'a> {
    src: &'a Source,
    label: String,
    at: usize,
}

impl Section<'_> {
    fn err<T>(
        &self,
        field: &str,
        at: Option<usize>,
        msg: impl Into<String>,
    ) -> Result<T, ConfigError> {
        Err(self
            .src
            .error(Some(at.unwrap_or(self.at)), &self.label, field, msg))
    }
}

fn label(kind: &str, index: usize, name: &str) -> String {
    if name.is_empty() {
        format!("[[{kind}]] #{}", index + 1)
    } else {
        format!("[[{kind}]] \"{name}\"")
    }
}

fn parse_ip(sec: &Section<'_>, field: &str, s: &Spanned<String>) -> Result<Ipv4Addr, ConfigError> {
    s.get_ref().parse().or_else(|_| {
        sec.err(
            field,
            Some(s.span().start),
            format!("{:?} is not an IPv4 address", s.get_ref()),
        )
    })
}

/// Checks a name is usable and not taken; returns it.
fn name_of(
    sec: &Section<'_>,
    n: &Spanned<String>,
    taken: &mut HashSet<String>,
) -> Result<String, ConfigError> {
    let name = n.get_ref();
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
    if !ok {
        return sec.err(
            "name",
            Some(n.span().start),
            format!("{name:?}: use 1-64 characters from A-Z, a-z, 0-9, '-', '_', '.'"),
        );
    }
    if !taken.insert(name.clone()) {
        return sec.err(
            "name",
            Some(n.span().start),
            format!("{name:?} is used twice"),
        );
    }
    Ok(name.clone())
}

struct Zones(Vec<String>);

impl Zones {
    fn index(
        &mut self,
        sec: &Section<'_>,
        field: &str,
        z: &Spanned<String>,
    ) -> Result<u8, ConfigError> {
        if z.get_ref().is_empty() {
            return sec.err(field, Some(z.span().start), "zone must not be empty");
        }
        if let Some(i) = self.0.iter().position(|n| n == z.get_ref()) {
            return Ok(i as u8);
        }
        if self.0.len() == MAX_ZONES {
            return sec.err(
                field,
                Some(z.span().start),
                format!("more than {MAX_ZONES} zones in the config"),
            );
        }
        self.0.push(z.get_ref().clone());
        Ok((self.0.len() - 1) as u8)
    }
}

/// Addresses claimed per network: no address may be two things in one network, except a
/// target shared by services.
#[derive(Default)]
struct Claims(HashMap<(u16, Ipv4Addr), String>);

const TARGET_OF: &str = "a target of service ";
const NEXT_HOP: &str = "the next hop of a route";

impl Claims {
    /// Claims `ip` as a target of `service`: fine if it is already another service's target.
    fn claim_target(
        &mut self,
        sec: &Section<'_>,
        field: &str,
        at: usize,
        network: u16,
        ip: Ipv4Addr,
        service: &str,
    ) -> Result<(), ConfigError> {
        if self
            .0
            .get(&(network, ip))
            .is_some_and(|prev| prev.starts_with(TARGET_OF) || prev == NEXT_HOP)
        {
            return Ok(());
        }
        self.claim(
            sec,
            field,
            at,
            network,
            ip,
            format!("{TARGET_OF}{service:?}"),
        )
    }

    /// Claims `ip` as a router: several routes may share one, and it may be a target too.
    fn claim_hop(
        &mut self,
        sec: &Section<'_>,
        at: usize,
        network: u16,
        ip: Ipv4Addr,
    ) -> Result<(), ConfigError> {
        if self.0.contains_key(&(network, ip)) {
            return Ok(());
        }
        self.claim(sec, "routes.via", at, network, ip, NEXT_HOP.to_owned())
    }

    fn claim(
        &mut self,
        sec: &Section<'_>,
        field: &str,
        at: usize,
        network: u16,
        ip: Ipv4Addr,
        what: String,
    ) -> Result<(), ConfigError> {
        if let Some(prev) = self.0.get(&(network, ip)) {
            return sec.err(
                field,
                Some(at),
                format!("{ip} is already {prev} in the same network"),
            );
        }
        self.0.insert((network, ip), what);
        Ok(())
    }
}

/// A network's `routes`, validated: prefixes well-formed and listed once, routers usable
/// and on-link. pl does not route recursively, so a router may be covered by no route but
/// a default one (`0.0.0.0/0`, which cannot mean that the router's own segment is remote).
fn routes(
    sec: &Section<'_>,
    cfg: &[Spanned<crate::config::RouteCfg>],
) -> Result<Vec<Route>, ConfigError> {
    let mut out: Vec<Route> = Vec::new();
    for rc in cfg {
        let c = rc.get_ref();
        let to = c.to.get_ref().parse::<Cidr>().or_else(|e| {
            sec.err(
                "routes.to",
                Some(c.to.span().start),
                format!("{:?}: {e}", c.to.get_ref()),
            )
        })?;
        if out.iter().any(|r| r.to == to) {
            return sec.err(
                "routes.to",
                Some(c.to.span().start),
                format!("{:?} is listed twice", c.to.get_ref()),
            );
        }
        let via = parse_ip(sec, "routes.via", &c.via)?;
        let b = via.octets();
        if pl_common::cidr::is_martian(u32::from_ne_bytes(b)) {
            return sec.err(
                "routes.via",
                Some(c.via.span().start),
                format!("{via} cannot be a router's address"),
            );
        }
        out.push(Route { to, via });
    }
    for (r, rc) in out.iter().zip(cfg) {
        if let Some(cover) = out.iter().find(|o| o.to.len > 0 && o.to.contains(r.via)) {
            return sec.err(
                "routes.via",
                Some(rc.get_ref().via.span().start),
                format!(
                    "{} is not on-link: route {}/{} sends it to {} (a next hop must be on the network's own segment; pl does not route recursively)",
                    r.via, cover.to.addr, cover.to.len, cover.via
                ),
            );
        }
    }
    Ok(out)
}

/// `health_check`, validated, with defaults filled in.
fn health_check(
    sec: &Section<'_>,
    cfg: Option<&Spanned<crate::config::HealthCheckCfg>>,
    listeners: &[Listener],
) -> Result<HealthCheck, ConfigError> {
    let mut h = HealthCheck {
        port: listeners[0].target_port,
        ..HealthCheck::default()
    };
    let Some(cfg) = cfg else {
        return Ok(h);
    };
    let c = cfg.get_ref();
    h.enabled = c.enabled;
    if let Some(p) = &c.protocol
        && p.get_ref() != "tcp"
    {
        return sec.err(
            "health_check.protocol",
            Some(p.span().start),
            format!("{:?}: only \"tcp\" (SYN probes) is supported", p.get_ref()),
        );
    }
    let ranged = |field: &str, v: &Option<Spanned<u32>>, lo: u32, hi: u32, default: u64| match v {
        None => Ok(default),
        Some(s) if (lo..=hi).contains(s.get_ref()) => Ok(u64::from(*s.get_ref())),
        Some(s) => sec.err(
            field,
            Some(s.span().start),
            format!("{} is out of range {lo}..={hi}", s.get_ref()),
        ),
    };
    if let Some(p) = &c.port {
        if *p.get_ref() == 0 {
            return sec.err(
                "health_check.port",
                Some(p.span().start),
                "port 0 is not a port",
            );
        }
        h.port = *p.get_ref();
    }
    h.interval_ms = ranged("health_check.interval_s", &c.interval_s, 1, 300, 30)? * 1000;
    // NLB's 10 s, or half the interval if that is shorter.
    let timeout = h.timeout_ms.min(h.interval_ms / 2);
    h.timeout_ms = ranged(
        "health_check.timeout_ms",
        &c.timeout_ms,
        50,
        120_000,
        timeout,
    )?;
    if h.timeout_ms >= h.interval_ms {
        return sec.err(
            "health_check.timeout_ms",
            c.timeout_ms.as_ref().map(|s| s.span().start),
            format!(
                "{} ms must be shorter than interval_s ({} s)",
                h.timeout_ms,
                h.interval_ms / 1000
            ),
        );
    }
    h.healthy_threshold = ranged(
        "health_check.healthy_threshold",
        &c.healthy_threshold,
        1,
        10,
        5,
    )? as u32;
    h.unhealthy_threshold = ranged(
        "health_check.unhealthy_threshold",
        &c.unhealthy_threshold,
        1,
        10,
        2,
    )? as u32;
    Ok(h)
}

fn zoned(
    sec: &Section<'_>,
    field: &str,
    list: &Spanned<Vec<Spanned<ZonedIp>>>,
    zones: &mut Zones,
) -> Result<Vec<(Ipv4Addr, u8, usize)>, ConfigError> {
    if list.get_ref().is_empty() {
        return sec.err(field, Some(list.span().start), "must not be empty");
    }
    list.get_ref()
        .iter()
        .map(|z| {
            let ip = parse_ip(sec, field, &z.get_ref().ip)?;
            let zone = zones.index(sec, field, &z.get_ref().zone)?;
            Ok((ip, zone, z.span().start))
        })
        .collect()
}

impl Model {
    /// Validates `cfg` (parsed from `src`) against the interfaces `ifaces` knows.
    pub fn build(src: &Source, cfg: &Config, ifaces: &dyn Interfaces) -> Result<Self, ConfigError> {
        let mut zones = Zones(Vec::new());
        let mut claims = Claims::default();

        // Networks.
        let mut names = HashSet::new();
        let mut used_ifaces = HashMap::new();
        let mut networks = Vec::new();
        for (i, n) in cfg.network.iter().enumerate() {
            let sec = Section {
                src,
                label: label("network", i, n.get_ref().name.get_ref()),
                at: n.span().start,
            };
            let name = name_of(&sec, &n.get_ref().name, &mut names)?;
            let iface = &n.get_ref().interface;
            if let Some(other) = used_ifaces.insert(iface.get_ref().clone(), name.clone()) {
                return sec.err(
                    "interface",
                    Some(iface.span().start),
                    format!(
                        "{} is already the interface of network {other:?}",
                        iface.get_ref()
                    ),
                );
            }
            let (ifindex, mac, mtu) = ifaces.resolve(iface.get_ref()).or_else(|why| {
                sec.err(
                    "interface",
                    Some(iface.span().start),
                    format!("{}: {why}", iface.get_ref()),
                )
            })?;
            let routes = routes(&sec, &n.get_ref().routes)?;
            for (r, rc) in routes.iter().zip(&n.get_ref().routes) {
                claims.claim_hop(
                    &sec,
                    rc.get_ref().via.span().start,
                    networks.len() as u16,
                    r.via,
                )?;
            }
            networks.push(Network {
                removed: false,
                name,
                interface: iface.get_ref().clone(),
                ifindex,
                mac,
                mtu,
                routes,
            });
        }
        if networks.len() > MAX_NETWORKS as usize {
            return Err(src.error(
                None,
                "[[network]]",
                "",
                format!("{} networks; at most {MAX_NETWORKS}", networks.len()),
            ));
        }
        let network_id =
            |sec: &Section<'_>, field: &str, n: &Spanned<String>| -> Result<u16, ConfigError> {
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
            };

        // Services.
        let mut names = HashSet::new();
        let mut services = Vec::new();
        let mut principals = Vec::new();
        let mut next_target = 0u32; // ids from 0; `align` carries them across reloads
        for (i, s) in cfg.service.iter().enumerate() {
            let c = s.get_ref();
            let sec = Section {
                src,
                label: label("service", i, c.name.get_ref()),
                at: s.span().start,
            };
            let name = name_of(&sec, &c.name, &mut names)?;
            let network = network_id(&sec, "network", &c.network)?;
            let mut nlbs: Vec<(Ipv4Addr, u8)> = Vec::new();
            for (ip, zone, at) in zoned(&sec, "nlb_addresses", &c.nlb_addresses, &mut zones)? {
                if nlbs.iter().any(|(_, z)| *z == zone) {
                    return sec.err(
                        "nlb_addresses",
                        Some(at),
                        format!(
                            "zone {:?} has two NLB addresses",
                            zones.0[usize::from(zone)]
                        ),
                    );
                }
                claims.claim(
                    &sec,
                    "nlb_addresses",
                    at,
                    network,
                    ip,
                    format!("an NLB address of service {name:?}"),
                )?;
                nlbs.push((ip, zone));
            }
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
                if listeners.iter().any(|x| x.proto == proto && x.port == port) {
                    return sec.err(
                        "listeners.port",
                        Some(lc.port.span().start),
                        format!("{} port {port} is listed twice", lc.protocol.get_ref()),
                    );
                }
                listeners.push(Listener {
                    proto,
                    port,
                    target_port,
                });
            }
            let mut targets: Vec<Target> = Vec::new();
            for (ip, zone, at) in zoned(&sec, "targets", &c.targets, &mut zones)? {
                if !nlbs.iter().any(|(_, z)| *z == zone) {
                    return sec.err(
                        "targets",
                        Some(at),
                        format!(
                            "zone {:?} has no NLB address (add one to nlb_addresses)",
                            zones.0[usize::from(zone)]
                        ),
                    );
                }
                if targets.iter().any(|t| t.ip == ip) {
                    return sec.err("targets", Some(at), format!("{ip} is given twice"));
                }
                // Services may share a target (one host serving several target groups),
                // but it may be nothing else in the network.
                claims.claim_target(&sec, "targets", at, network, ip, &name)?;
                targets.push(Target {
                    id: next_target,
                    ip,
                    zone,
                    via: next_hop(&networks[usize::from(network)].routes, ip),
                });
                next_target += 1;
            }
            principals.push(&c.allowed_principals);
            let health = health_check(&sec, c.health_check.as_ref(), &listeners)?;
            services.push(Service {
                removed: false,
                name,
                network,
                nlbs,
                cross_zone: c.cross_zone,
                listeners,
                targets,
                health,
            });
        }
        if services.len() > MAX_SERVICES as usize || next_target > MAX_TARGETS {
            return Err(src.error(
                None,
                "[[service]]",
                "",
                format!(
                    "{} services, {next_target} targets; at most {MAX_SERVICES} and {MAX_TARGETS}",
                    services.len()
                ),
            ));
        }
        for (i, s) in cfg.service.iter().enumerate() {
            let sec = Section {
                src,
                label: label("service", i, s.get_ref().name.get_ref()),
                at: s.span().start,
            };
            for p in &s.get_ref().allowed_principals {
                if p.get_ref() != "*" {
                    network_id(&sec, "allowed_principals", p)?;
                }
            }
        }

        // Endpoints.
        let mut names = HashSet::new();
        let mut endpoints = Vec::new();
        for (i, e) in cfg.endpoint.iter().enumerate() {
            let c = e.get_ref();
            let sec = Section {
                src,
                label: label("endpoint", i, c.name.get_ref()),
                at: e.span().start,
            };
            let name = name_of(&sec, &c.name, &mut names)?;
            let service = services
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
                )?;
            let network = network_id(&sec, "network", &c.network)?;
            let svc_cfg = cfg.service[service].get_ref();
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
            let mut addrs = Vec::new();
            for (ip, zone, at) in zoned(&sec, "addresses", &c.addresses, &mut zones)? {
                if !services[service].nlbs.iter().any(|(_, z)| *z == zone) {
                    return sec.err(
                        "addresses",
                        Some(at),
                        format!(
                            "zone {:?} has no NLB address of service {:?}",
                            zones.0[usize::from(zone)],
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
                            zones.0[usize::from(zone)]
                        ),
                    );
                }
                claims.claim(
                    &sec,
                    "addresses",
                    at,
                    network,
                    ip,
                    format!("an address of endpoint {name:?}"),
                )?;
                addrs.push((ip, zone));
            }
            let sources = match &c.allowed_sources {
                None => vec![Cidr::ANY],
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
                    .collect::<Result<_, _>>()?,
            };
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
                addrs,
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
        for (i, s) in cfg.service.iter().enumerate() {
            let sec = Section {
                src,
                label: label("service", i, s.get_ref().name.get_ref()),
                at: s.span().start,
            };
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

        // Limits.
        let default = crate::config::LimitsCfg::default();
        let (l, at) = cfg
            .limits
            .as_ref()
            .map_or((&default, None), |s| (s.get_ref(), Some(s.span().start)));
        let limit_err = |field: &str, msg: &str| Err(src.error(at, "[limits]", field, msg));
        if l.flow_table_size == 0 || l.flow_table_size > 8_000_000 {
            return limit_err("flow_table_size", "must be 1 to 8000000");
        }
        if l.snat_port_min == 0 || l.snat_port_min > l.snat_port_max {
            return limit_err("snat_port_min", "must be 1 to snat_port_max");
        }
        for (field, v) in [
            ("tcp_idle_timeout_s", l.tcp_idle_timeout_s),
            ("tcp_transient_timeout_s", l.tcp_transient_timeout_s),
            ("tcp_half_closed_timeout_s", l.tcp_half_closed_timeout_s),
            ("tcp_closing_timeout_s", l.tcp_closing_timeout_s),
            ("udp_idle_timeout_s", l.udp_idle_timeout_s),
            ("udp_oneway_timeout_s", l.udp_oneway_timeout_s),
        ] {
            if v == 0 || v > u64::from(u32::MAX) {
                return limit_err(field, "must be 1 to 4294967295 seconds");
            }
        }
        let ns = |s: u64| s.saturating_mul(1_000_000_000);
        let settings = Settings {
            tcp_idle_ns: ns(l.tcp_idle_timeout_s),
            tcp_transient_ns: ns(l.tcp_transient_timeout_s),
            tcp_half_closed_ns: ns(l.tcp_half_closed_timeout_s),
            tcp_closing_ns: ns(l.tcp_closing_timeout_s),
            udp_idle_ns: ns(l.udp_idle_timeout_s),
            udp_oneway_ns: ns(l.udp_oneway_timeout_s),
            snat_port_min: l.snat_port_min,
            snat_port_max: l.snat_port_max,
            _pad: 0,
        };
        Ok(Self {
            next_target,
            networks,
            services,
            endpoints,
            zones: zones.0,
            flow_table_size: l.flow_table_size,
            settings,
        })
    }

    /// Re-numbers this (new) model so that everything the running model `prev` has keeps its
    /// index: names that stay keep their ids, removed ones become tombstones (disabled, not
    /// reused while pl runs), new ones are appended; target ids likewise by (service, address).
    /// Flows and counters refer to these ids, so a reload must not shift them.
    pub fn align(self, prev: &Model) -> Result<Model, String> {
        // Zones: keep the running indexes, append new names.
        let mut zones = prev.zones.clone();
        let mut zmap = Vec::new();
        for z in &self.zones {
            let i = zones.iter().position(|p| p == z).unwrap_or_else(|| {
                zones.push(z.clone());
                zones.len() - 1
            });
            zmap.push(i as u8);
        }
        if zones.len() > MAX_ZONES {
            return Err(format!(
                "zones used since pl run started exceed {MAX_ZONES}: restart pl run"
            ));
        }
        let z = |i: u8| zmap[usize::from(i)];

        let (networks, nmap) = align_vec(
            &prev.networks,
            self.networks,
            |n| &n.name,
            |n| Network {
                removed: true,
                ..n.clone()
            },
        );
        for (new, old) in networks.iter().zip(&prev.networks) {
            if !new.removed && !old.removed && new.ifindex != old.ifindex {
                return Err(format!(
                    "network {:?}: its interface cannot change while running (remove the network, reload, add it back)",
                    new.name
                ));
            }
        }
        let n = |i: u16| nmap[usize::from(i)];

        let mut next_target = prev.next_target;
        let prev_target = |svc: &str, ip: Ipv4Addr| {
            prev.services
                .iter()
                .filter(|s| s.name == svc)
                .flat_map(|s| s.targets.iter())
                .find(|t| t.ip == ip)
                .map(|t| t.id)
        };
        let services_new: Vec<Service> = self
            .services
            .into_iter()
            .map(|mut s| {
                s.network = n(s.network);
                s.nlbs.iter_mut().for_each(|(_, zone)| *zone = z(*zone));
                for t in &mut s.targets {
                    t.zone = z(t.zone);
                    t.id = prev_target(&s.name, t.ip).unwrap_or_else(|| {
                        next_target += 1;
                        next_target - 1
                    });
                }
                s
            })
            .collect();
        let (services, smap) = align_vec(
            &prev.services,
            services_new,
            |s| &s.name,
            |s| Service {
                removed: true,
                targets: Vec::new(),
                ..s.clone()
            },
        );
        let endpoints_new: Vec<Endpoint> = self
            .endpoints
            .into_iter()
            .map(|mut e| {
                e.service = smap[usize::from(e.service)];
                e.network = n(e.network);
                e.addrs.iter_mut().for_each(|(_, zone)| *zone = z(*zone));
                e
            })
            .collect();
        let (endpoints, _) = align_vec(
            &prev.endpoints,
            endpoints_new,
            |e| &e.name,
            |e| Endpoint {
                removed: true,
                ..e.clone()
            },
        );
        if networks.len() > MAX_NETWORKS as usize
            || services.len() > MAX_SERVICES as usize
            || endpoints.len() > MAX_ENDPOINTS as usize
            || next_target > MAX_TARGETS
        {
            return Err("networks, services, endpoints or targets added since pl run started exceed the map sizes: restart pl run".to_owned());
        }
        Ok(Model {
            networks,
            services,
            endpoints,
            zones,
            flow_table_size: self.flow_table_size,
            settings: self.settings,
            next_target,
        })
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

    /// Parses and validates a config's text.
    pub fn from_source(src: &Source, ifaces: &dyn Interfaces) -> Result<Self, ConfigError> {
        Self::build(src, &src.parse()?, ifaces)
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    /// The example from the issue that fixed the schema.
    pub const EXAMPLE: &str = r#"
[[network]]
name = "acme"
interface = "fw-acme"

[[network]]
name = "globex"
interface = "fw-globex"

[[network]]
name = "billing-prod"
interface = "fw-prov"

[[service]]
name = "billing"
network = "billing-prod"
nlb_addresses = [{ ip = "10.9.0.250", zone = "z1" }, { ip = "10.9.0.251", zone = "z2" }]
acceptance_required = true
allowed_principals = ["acme", "globex"]
accepted_endpoints = ["acme-billing", "globex-billing"]
cross_zone = false
listeners = [{ protocol = "tcp", port = 443, target_port = 8443 }, { protocol = "udp", port = 53 }]
targets = [{ ip = "10.9.0.11", zone = "z1" }, { ip = "10.9.0.12", zone = "z2" }]

[[endpoint]]
name = "acme-billing"
service = "billing"
network = "acme"
addresses = [{ ip = "10.0.0.100", zone = "z1" }, { ip = "10.0.0.101", zone = "z2" }]
allowed_sources = ["10.0.0.0/24"]

[[endpoint]]
name = "globex-billing"
service = "billing"
network = "globex"
addresses = [{ ip = "10.0.0.100", zone = "z1" }, { ip = "10.0.0.101", zone = "z2" }]
"#;

    struct Fixed;
    impl Interfaces for Fixed {
        fn resolve(&self, name: &str) -> Result<(u32, Mac, u32), String> {
            match name {
                "fw-acme" => Ok((2, [2, 0, 0, 0, 0, 2], 9000)),
                "fw-globex" => Ok((3, [2, 0, 0, 0, 0, 3], 1500)),
                "fw-prov" => Ok((4, [2, 0, 0, 0, 0, 4], 1500)),
                _ => Err("no such interface in this network namespace".to_owned()),
            }
        }
    }

    fn build(text: &str) -> Result<Model, ConfigError> {
        let src = Source {
            path: PathBuf::from("pl.toml"),
            text: text.to_owned(),
        };
        let cfg = src.parse()?;
        Model::build(&src, &cfg, &Fixed)
    }

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
                Some(Ipv4Addr::new(10, 9, 0, 1)),
                Some(Ipv4Addr::new(10, 9, 0, 2))
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
    fn services_may_share_a_target_but_not_list_it_twice() {
        let second = "\n[[service]]\nname = \"ledger\"\nnetwork = \"billing-prod\"\nnlb_addresses = [{ ip = \"10.9.0.240\", zone = \"z1\" }]\nlisteners = [{ protocol = \"tcp\", port = 443 }]\ntargets = [{ ip = \"10.9.0.11\", zone = \"z1\" }]\n";
        let m = build(&format!("{EXAMPLE}{second}")).unwrap_or_else(|e| panic!("{e}"));
        let ids: Vec<(u32, Ipv4Addr)> = m
            .services
            .iter()
            .flat_map(|s| s.targets.iter().map(|t| (t.id, t.ip)))
            .filter(|(_, ip)| *ip == Ipv4Addr::new(10, 9, 0, 11))
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

    #[test]
    fn align_keeps_ids_of_what_stays_and_tombstones_what_goes() {
        let prev = build(EXAMPLE).unwrap_or_else(|e| panic!("{e}"));
        // globex-billing removed, acme-extra added, target .12 swapped for .13, a zone added.
        let mut text = EXAMPLE
            .replace(
                "[[endpoint]]\nname = \"globex-billing\"",
                "[[endpoint]]\nname = \"acme-extra\"",
            )
            .replace(
                "network = \"globex\"\naddresses",
                "network = \"acme\"\naddresses",
            )
            .replace(
                "{ ip = \"10.9.0.12\", zone = \"z2\" }",
                "{ ip = \"10.9.0.13\", zone = \"z2\" }",
            )
            .replace(
                "accepted_endpoints = [\"acme-billing\", \"globex-billing\"]",
                "accepted_endpoints = [\"acme-billing\", \"acme-extra\"]",
            );
        // The last endpoint (now acme-extra) gets an address of its own.
        let last = text.rfind("addresses = [").expect("an endpoint");
        text.replace_range(
            last..,
            "addresses = [{ ip = \"10.0.0.102\", zone = \"z1\" }]\n",
        );
        let new = build(&text).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            new.endpoints[1].name, "acme-extra",
            "test config did not change as meant"
        );
        let a = new.align(&prev).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(a.endpoints.len(), 3);
        assert_eq!(
            (a.endpoints[0].name.as_str(), a.endpoints[0].removed),
            ("acme-billing", false)
        );
        assert_eq!(
            (a.endpoints[1].name.as_str(), a.endpoints[1].removed),
            ("globex-billing", true),
            "a removed endpoint keeps its id as a tombstone"
        );
        assert_eq!(
            (a.endpoints[2].name.as_str(), a.endpoints[2].removed),
            ("acme-extra", false),
            "a new endpoint is appended"
        );
        let ids: Vec<(Ipv4Addr, u32)> =
            a.services[0].targets.iter().map(|t| (t.ip, t.id)).collect();
        assert_eq!(
            ids,
            vec![
                (Ipv4Addr::new(10, 9, 0, 11), 0),
                (Ipv4Addr::new(10, 9, 0, 13), 2)
            ],
            "kept target keeps id 0; new one gets a fresh id"
        );
        assert_eq!(a.next_target, 3);
        assert_eq!(a.zones, prev.zones);
        // Changing a live network's interface is refused.
        let moved = build(&EXAMPLE.replace("interface = \"fw-prov\"", "interface = \"fw-acme2\""))
            .map(|_| ())
            .expect_err("fw-acme2 does not exist");
        assert!(moved.to_string().contains("fw-acme2"));
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
                "allowed_principals = [\"acme\"]",
                "[[endpoint]] \"globex-billing\": network",
                &["not an allowed principal"],
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
                &["\"10.9.0.311\" is not an IPv4 address"],
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
                "file",
                &["unknown field `colour`"],
            ),
            (
                "port = 443,",
                "port = 70000,",
                "file",
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
}
