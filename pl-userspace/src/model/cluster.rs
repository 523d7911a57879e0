//! `[cluster]` and `[[node]]`: several forwarders on the same networks, each serving its
//! zones, a backup taking a dead node's zones over. Without `[[node]]` there is one node,
//! which serves every zone.

use std::{collections::HashSet, net::Ipv4Addr};

use pl_common::cidr::Cidr;
use toml::Spanned;

use super::{
    found::Found,
    interfaces::Interfaces,
    section::{Section, name_of, parse_ip4},
};
use crate::config::{ClusterCfg, Config, Source};

/// The cluster as configured: the management network and every node.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Cluster {
    pub interface: String,
    pub takeover_s: u32,
    pub failback_s: u32,
    pub sync_port: u16,
    pub sync_interval_ms: u32,
    /// The key flow sync's datagrams are tagged under (read by `pl run`). Defaulted so a
    /// state file saved before it existed still loads.
    #[serde(default)]
    pub secret_file: std::path::PathBuf,
    pub nodes: Vec<Node>,
}

/// One forwarder: its management address and zones (indexes into `Model::zones`).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Node {
    pub name: String,
    pub address: Ipv4Addr,
    pub zones: Vec<u8>,
    pub backup_zones: Vec<u8>,
}

impl Cluster {
    pub fn node(&self, name: &str) -> Option<&Node> {
        self.nodes.iter().find(|n| n.name == name)
    }

    /// The zone's primary node.
    pub fn primary(&self, zone: u8) -> Option<&Node> {
        self.nodes.iter().find(|n| n.zones.contains(&zone))
    }

    /// Nodes that may own `zone`: its primary, then its backups in file order.
    pub fn candidates(&self, zone: u8) -> impl Iterator<Item = (usize, &Node)> {
        let primary = self.nodes.iter().position(|n| n.zones.contains(&zone));
        let backups = self
            .nodes
            .iter()
            .enumerate()
            .filter(move |(_, n)| n.backup_zones.contains(&zone));
        primary
            .map(|i| (i, &self.nodes[i]))
            .into_iter()
            .chain(backups)
    }
}

const DEFAULT_TAKEOVER_S: u32 = 3;
const DEFAULT_FAILBACK_S: u32 = 10;
const DEFAULT_SYNC_PORT: u16 = 7946;
const DEFAULT_SYNC_INTERVAL_MS: u32 = 200;

/// The `[cluster]` and `[[node]]` sections, checked against the zones the addresses use.
pub(super) fn cluster(
    src: &Source,
    cfg: &Config,
    zones: &[String],
    ifaces: &dyn Interfaces,
    settings: Option<&pl_common::settings::Settings>,
    found: &mut Found<'_>,
) -> Option<Cluster> {
    let Some(c) = &cfg.cluster else {
        if let Some(n) = cfg.node.first() {
            let sec = Section::new(src, "node", 0, n.get_ref().name.get_ref(), n.span().start);
            found
                .errors
                .push(sec.error("name", None, "[[node]] needs a [cluster] section"));
        }
        return None;
    };
    let sec = Section {
        src,
        label: "[cluster]".to_owned(),
        at: c.span().start,
    };
    let timing = settings_of(&sec, c.get_ref(), found);
    let nets = mgmt_nets(&sec, c.get_ref(), cfg, ifaces, found);
    let mut names = HashSet::new();
    let mut nodes: Vec<Node> = Vec::new();
    for (i, n) in cfg.node.iter().enumerate() {
        let nc = n.get_ref();
        let nsec = Section::new(src, "node", i, nc.name.get_ref(), n.span().start);
        let name = found.keep(name_of(&nsec, &nc.name, &mut names));
        let address = found.keep(parse_ip4(&nsec, "address", &nc.address));
        if let Some(a) = address {
            if nodes.iter().any(|o| o.address == a) {
                found.errors.push(nsec.error(
                    "address",
                    Some(nc.address.span().start),
                    format!("{a} is another node's address"),
                ));
            }
            if let Some(nets) = &nets
                && !nets.iter().any(|n| n.contains(a))
            {
                found.host_problem(nsec.error(
                    "address",
                    Some(nc.address.span().start),
                    format!(
                        "{a} is outside the subnets of the management interface {:?}",
                        c.get_ref().interface.get_ref()
                    ),
                ));
            }
        }
        let own = zone_list(&nsec, "zones", &nc.zones, zones, found);
        let backup = zone_list(&nsec, "backup_zones", &nc.backup_zones, zones, found);
        for (z, at) in &own {
            if let Some(other) = nodes.iter().find(|o| o.zones.contains(z)) {
                found.errors.push(nsec.error(
                    "zones",
                    Some(*at),
                    format!(
                        "zone {:?} has two primaries ({:?} and this node)",
                        zones[usize::from(*z)],
                        other.name
                    ),
                ));
            }
            if backup.iter().any(|(b, _)| b == z) {
                found.errors.push(nsec.error(
                    "backup_zones",
                    Some(*at),
                    format!(
                        "zone {:?} is already this node's own",
                        zones[usize::from(*z)]
                    ),
                ));
            }
        }
        nodes.push(Node {
            name: name.unwrap_or_default(),
            address: address.unwrap_or(Ipv4Addr::UNSPECIFIED),
            zones: own.into_iter().map(|(z, _)| z).collect(),
            backup_zones: backup.into_iter().map(|(z, _)| z).collect(),
        });
    }
    if nodes.is_empty() {
        found
            .errors
            .push(sec.error("node", None, "a cluster needs at least one [[node]]"));
    }
    for (z, name) in zones.iter().enumerate() {
        if !nodes.iter().any(|n| n.zones.contains(&(z as u8))) {
            found.errors.push(sec.error(
                "node",
                None,
                format!("zone {name:?} has no node (list it in one [[node]]'s zones)"),
            ));
        }
    }
    for z in zones {
        let ok = z.len() <= 32
            && z.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
        if !ok {
            found.errors.push(sec.error(
                "node",
                None,
                format!(
                    "zone {z:?} cannot name a VRRP instance: use up to 32 of A-Z, a-z, 0-9, '-', '_', '.'"
                ),
            ));
        }
    }
    let secret_file = secret_file_of(&sec, c, found);
    let (takeover_s, failback_s, sync_port, sync_interval_ms) = timing?;
    // A backup's copy must be refreshed before it could idle out.
    if let Some(limits) = settings {
        let shortest = limits.min_idle_ns();
        if u64::from(sync_interval_ms) * 3_000_000 > shortest {
            found.errors.push(
                sec.error(
                    "sync_interval_ms",
                    c.get_ref()
                        .sync_interval_ms
                        .as_ref()
                        .map(|v| v.span().start),
                    format!(
                        "must be under a third of the shortest [limits] timeout ({} ms)",
                        shortest / 1_000_000
                    ),
                ),
            );
            return None;
        }
    }
    Some(Cluster {
        interface: c.get_ref().interface.get_ref().clone(),
        takeover_s,
        failback_s,
        sync_port,
        sync_interval_ms,
        secret_file: secret_file?,
        nodes,
    })
}

/// `secret_file`: required, an absolute path (`pl run` reads and checks the file).
fn secret_file_of(
    sec: &Section<'_>,
    c: &Spanned<ClusterCfg>,
    found: &mut Found<'_>,
) -> Option<std::path::PathBuf> {
    let Some(f) = &c.get_ref().secret_file else {
        found.errors.push(sec.error(
            "secret_file",
            Some(c.span().start),
            "required: the key every node shares, which flow sync's datagrams are tagged under (e.g. `head -c 32 /dev/urandom > /etc/pl/cluster.key && chmod 600 /etc/pl/cluster.key`, the same file on every node)",
        ));
        return None;
    };
    let path = std::path::PathBuf::from(f.get_ref());
    if !path.is_absolute() {
        found.errors.push(sec.error(
            "secret_file",
            Some(f.span().start),
            format!("{:?}: must be an absolute path", f.get_ref()),
        ));
        return None;
    }
    Some(path)
}

/// takeover_s, failback_s, sync_port, sync_interval_ms, each in range.
fn settings_of(
    sec: &Section<'_>,
    c: &ClusterCfg,
    found: &mut Found<'_>,
) -> Option<(u32, u32, u16, u32)> {
    let mut ranged = |field: &str, v: &Option<Spanned<u32>>, default: u32, lo: u32, hi: u32| {
        let Some(v) = v else {
            return Some(default);
        };
        if (lo..=hi).contains(v.get_ref()) {
            return Some(*v.get_ref());
        }
        found
            .errors
            .push(sec.error(field, Some(v.span().start), format!("must be {lo} to {hi}")));
        None
    };
    let takeover = ranged("takeover_s", &c.takeover_s, DEFAULT_TAKEOVER_S, 1, 60);
    let failback = ranged("failback_s", &c.failback_s, DEFAULT_FAILBACK_S, 0, 3600);
    let interval = ranged(
        "sync_interval_ms",
        &c.sync_interval_ms,
        DEFAULT_SYNC_INTERVAL_MS,
        10,
        10_000,
    );
    let port = match &c.sync_port {
        None => Some(DEFAULT_SYNC_PORT),
        Some(p) if *p.get_ref() == 0 => {
            found
                .errors
                .push(sec.error("sync_port", Some(p.span().start), "must be 1 to 65535"));
            None
        }
        Some(p) => Some(*p.get_ref()),
    };
    Some((takeover?, failback?, port?, interval?))
}

/// The management interface's IPv4 subnets, or None where they cannot be known (then a
/// host problem is recorded). Also refuses an interface a network uses.
fn mgmt_nets(
    sec: &Section<'_>,
    c: &ClusterCfg,
    cfg: &Config,
    ifaces: &dyn Interfaces,
    found: &mut Found<'_>,
) -> Option<Vec<Cidr>> {
    let name = c.interface.get_ref();
    let at = Some(c.interface.span().start);
    if cfg
        .network
        .iter()
        .any(|n| n.get_ref().interface.get_ref() == name)
    {
        found.errors.push(sec.error(
            "interface",
            at,
            format!("{name:?} is a network's interface; the management network must be its own"),
        ));
        return None;
    }
    match ifaces.ipv4_nets(name) {
        Ok(nets) if nets.is_empty() => {
            found.host_problem(sec.error("interface", at, format!("{name:?} has no IPv4 address")));
            None
        }
        Ok(nets) => Some(nets),
        Err(why) => {
            found.host_problem(sec.error("interface", at, format!("{name:?}: {why}")));
            None
        }
    }
}

/// A node's zone list: each a zone the addresses use, none twice; with where each is.
fn zone_list(
    sec: &Section<'_>,
    field: &str,
    list: &[Spanned<String>],
    zones: &[String],
    found: &mut Found<'_>,
) -> Vec<(u8, usize)> {
    let mut out: Vec<(u8, usize)> = Vec::new();
    for z in list {
        let at = z.span().start;
        match zones.iter().position(|n| n == z.get_ref()) {
            None => found.errors.push(sec.error(
                field,
                Some(at),
                format!(
                    "unknown zone {:?} (no address of the config is in it)",
                    z.get_ref()
                ),
            )),
            Some(i) if out.iter().any(|(o, _)| usize::from(*o) == i) => {
                found.errors.push(sec.error(
                    field,
                    Some(at),
                    format!("zone {:?} listed twice", z.get_ref()),
                ));
            }
            Some(i) => out.push((i as u8, at)),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use crate::model::testing::{EXAMPLE, build, build_all};

    const NODES: &str = "\n[cluster]\ninterface = \"mgmt0\"\nsecret_file = \"/etc/pl/cluster.key\"\n\n[[node]]\nname = \"fw-a\"\naddress = \"192.168.100.1\"\nzones = [\"z1\"]\nbackup_zones = [\"z2\"]\n\n[[node]]\nname = \"fw-b\"\naddress = \"192.168.100.2\"\nzones = [\"z2\"]\nbackup_zones = [\"z1\"]\n";

    fn err(text: &str) -> String {
        match build_all(text) {
            Ok(_) => panic!("accepted:\n{text}"),
            Err(e) => e
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n"),
        }
    }

    #[test]
    fn a_cluster_builds_with_its_defaults() {
        let m = build(&format!("{EXAMPLE}{NODES}")).unwrap_or_else(|e| panic!("{e}"));
        let c = m.cluster.expect("cluster");
        assert_eq!((c.takeover_s, c.failback_s, c.sync_port), (3, 10, 7946));
        assert_eq!(c.nodes[0].zones, [0]);
        assert_eq!(c.nodes[1].backup_zones, [0]);
        let order: Vec<usize> = c.candidates(0).map(|(i, _)| i).collect();
        assert_eq!(order, [0, 1], "primary first, then backups");
        assert!(build(EXAMPLE).expect("one node").cluster.is_none());
    }

    #[test]
    fn bad_clusters_are_refused_naming_the_field() {
        let with = |from: &str, to: &str| format!("{EXAMPLE}{}", NODES.replacen(from, to, 1));
        for (text, want) in [
            (
                with("name = \"fw-b\"", "name = \"fw-a\""),
                "[[node]] \"fw-a\": name",
            ),
            (
                with("zones = [\"z2\"]\nbackup", "zones = [\"z1\"]\nbackup"),
                "zone \"z1\" has two primaries",
            ),
            (with("[\"z2\"]\n\n", "[\"z9\"]\n\n"), "unknown zone \"z9\""),
            (
                with("192.168.100.2", "192.168.7.2"),
                "outside the subnets of the management interface",
            ),
            (
                with("interface = \"mgmt0\"", "interface = \"fw-prov\""),
                "[cluster]: interface",
            ),
            (
                with("zones = [\"z2\"]\nbackup", "zones = []\nbackup"),
                "zone \"z2\" has no node",
            ),
            (
                format!("{EXAMPLE}\n[[node]]\nname = \"x\"\naddress = \"192.168.100.1\"\n"),
                "needs a [cluster] section",
            ),
            (
                with(
                    "interface = \"mgmt0\"",
                    "interface = \"mgmt0\"\ntakeover_s = 0",
                ),
                "takeover_s: must be 1 to 60",
            ),
            (
                with(
                    "interface = \"mgmt0\"",
                    "interface = \"mgmt0\"\nsync_interval_ms = 5000",
                ),
                "sync_interval_ms: must be under a third of the shortest [limits] timeout",
            ),
            (
                format!("{EXAMPLE}{NODES}").replace("z2", "z 2"),
                "zone \"z 2\" cannot name a VRRP instance",
            ),
            (
                with("secret_file = \"/etc/pl/cluster.key\"\n", ""),
                "[cluster]: secret_file",
            ),
            (
                with("\"/etc/pl/cluster.key\"", "\"cluster.key\""),
                "\"cluster.key\": must be an absolute path",
            ),
        ] {
            let e = err(&text);
            assert!(e.contains(want), "{want:?} not in {e:?}");
        }
    }

    #[test]
    fn a_cluster_saved_before_secret_file_still_loads() {
        let text = r#"{"interface":"mgmt0","takeover_s":3,"failback_s":10,"sync_port":7946,"sync_interval_ms":200,"nodes":[]}"#;
        let c: super::Cluster = serde_json::from_str(text).expect("an older saved cluster parses");
        assert_eq!(c.secret_file, std::path::PathBuf::new());
    }
}
