//! The cluster lab (`pl lab up --nodes N`, N = 2 or 3): N forwarders on one switch.
//!
//! ```text
//!                                   {P}sw
//!  {P}acme    eth0 ──veth── p-acme   ─ br-acme   ─ f{i}-acme   ──veth── fw-acme   ┐
//!  {P}globex  eth0 ──veth── p-globex ─ br-globex ─ f{i}-globex ──veth── fw-globex ├ {P}fw{i}
//!  {P}prov    eth0 ──veth── p-prov   ─ br-prov   ─ f{i}-prov   ──veth── fw-prov   │ i = 1..N
//!                                      br-mgmt   ─ f{i}-mgmt   ──veth── mgmt0     ┘ 192.168.100.{i}/24
//! ```
//!
//! The peer namespaces are the single lab's (same names, addresses and `eth0`), so its
//! servers (`pl lab up --serve`) and clients work unchanged; only the far end of each
//! `eth0` is a bridge port in `{P}sw` instead of a forwarder's interface. Each forwarder
//! `{P}fw{i}` (node `fw{i}`) has the single lab's `fw-*` interfaces, without addresses,
//! and `mgmt0` on the management bridge, with MACs fixed by node and link (the same after
//! [`ClusterLab::restore_node`]). The peers are dual-stack and quiet as in the single lab;
//! IPv6 is off in the nodes and the switch. The switch-side
//! ends of the `fw-*` veths take the frames a forwarder XDP_REDIRECTs, so they get the
//! same tx-off / GRO-on toggle the single lab gives each `eth0` (see [`super::topology`]).

use std::{
    collections::BTreeMap,
    fmt,
    net::{Ipv4Addr, Ipv6Addr},
    time::Duration,
};

use serde::{Deserialize, Serialize};

use crate::{
    lab::{
        cmd::{self, CmdError},
        netns,
        spec::{
            CLUSTER_NODES, LAB_CONFIG, MGMT_IFACE, MGMT_SUBNET, NETWORKS, NetSpec, PEER_IFACE,
            Role, SWITCH,
        },
        topology::{Ipv6, Lab, LabError, add_addrs},
    },
    state,
};

/// The management network's bridge in the switch namespace.
const MGMT_BRIDGE: &str = "br-mgmt";

/// Seconds a surviving node waits before taking over a silent node's zones.
const TAKEOVER_S: u32 = 3;

/// A cluster lab named by its prefix: N forwarders, one switch, the single lab's peers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterLab {
    lab: Lab,
    nodes: usize,
}

/// What `lab up --nodes N` made, as it prints it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ClusterTopology {
    pub prefix: String,
    pub switch_ns: String,
    pub nodes: Vec<NodeInfo>,
    pub networks: Vec<ClusterNetInfo>,
}

/// One forwarder of a cluster lab.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct NodeInfo {
    /// The node's name in the config (`fw1`..).
    pub name: String,
    pub namespace: String,
    pub mgmt_iface: String,
    pub mgmt_addr: Ipv4Addr,
    /// The MAC of the node's interface on each network, by network name.
    pub fw_macs: BTreeMap<String, String>,
}

/// One network of a cluster lab.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ClusterNetInfo {
    pub network: String,
    pub role: Role,
    pub namespace: String,
    pub peer_iface: String,
    pub peer_mac: String,
    pub addrs: Vec<String>,
    /// The forwarders' interface on this network (the same name in every node).
    pub fw_iface: String,
    /// The network's bridge in the switch namespace.
    pub bridge: String,
    pub service_ip: Ipv4Addr,
    #[serde(default)]
    pub service_ip6: Option<Ipv6Addr>,
    pub mtu: u32,
}

impl ClusterTopology {
    pub fn network(&self, name: &str) -> Option<&ClusterNetInfo> {
        self.networks.iter().find(|n| n.network == name)
    }

    pub fn node(&self, name: &str) -> Option<&NodeInfo> {
        self.nodes.iter().find(|n| n.name == name)
    }
}

impl NodeInfo {
    /// The MAC of this node's interface on `network`.
    pub fn fw_mac(&self, network: &str) -> Option<&str> {
        self.fw_macs.get(network).map(String::as_str)
    }
}

impl fmt::Display for ClusterTopology {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "lab {}: cluster of {} forwarders on switch namespace {} (their network interfaces carry no addresses)",
            self.prefix,
            self.nodes.len(),
            self.switch_ns
        )?;
        for n in &self.nodes {
            write!(
                f,
                "  node {:<4} ns {:<16} {} {:<15}",
                n.name, n.namespace, n.mgmt_iface, n.mgmt_addr
            )?;
            for net in &self.networks {
                if let Some(mac) = n.fw_mac(&net.network) {
                    write!(f, " {} {mac}", net.fw_iface)?;
                }
            }
            writeln!(f)?;
        }
        for n in &self.networks {
            let role = n.role.name();
            writeln!(
                f,
                "  {:<8} {:<8} ns {:<16} {} {} {:<24} <-> {:<10} mtu {}",
                n.network,
                role,
                n.namespace,
                n.peer_iface,
                n.peer_mac,
                n.addrs.join(","),
                n.bridge,
                n.mtu
            )?;
        }
        Ok(())
    }
}

/// The network's bridge in the switch namespace.
fn bridge(network: &str) -> String {
    format!("br-{network}")
}

/// The switch's end of a peer's `eth0`.
fn peer_port(network: &str) -> String {
    format!("p-{network}")
}

/// The switch's end of node `i`'s interface on `network` (or `mgmt`).
fn node_port(i: usize, network: &str) -> String {
    format!("f{i}-{network}")
}

/// Node `i`'s MAC on link `k` (a network's index + 1, or [`MGMT_LINK`]): locally
/// administered, `02:70:6c` ("pl"), and the same every time the node's links are made, so
/// a restored node keeps its MACs as a rebooted machine keeps its NICs'.
fn node_mac(i: usize, k: usize) -> String {
    format!("02:70:6c:00:{i:02x}:{k:02x}")
}

/// [`node_mac`]'s `k` for the management link.
const MGMT_LINK: usize = 0x10;

/// Node `i`'s name in the config.
pub fn node_name(i: usize) -> String {
    format!("fw{i}")
}

/// Node `i`'s management address.
pub fn mgmt_addr(i: usize) -> Ipv4Addr {
    format!("{MGMT_SUBNET}{i}")
        .parse()
        .expect("MGMT_SUBNET and a node number make an address")
}

/// The zones node `i` serves and the ones it backs up: the first two nodes serve a zone
/// each and back up the other's, a third serves none and backs up both.
fn node_zones(i: usize) -> (&'static [&'static str], &'static [&'static str]) {
    match i {
        1 => (&["z1"], &["z2"]),
        2 => (&["z2"], &["z1"]),
        _ => (&[], &["z1", "z2"]),
    }
}

/// The key the lab's nodes share (`[cluster] secret_file`), beside the lab's config.
pub fn secret_path(prefix: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("{prefix}cluster.key"))
}

/// Writes a fresh random key at `path`, readable by its owner only.
pub fn write_secret(path: &std::path::Path) -> std::io::Result<()> {
    use std::io::Read as _;
    let mut key = [0u8; 32];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut key)?;
    let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
    crate::lab::topology::write_private(path, &hex)
}

/// The pl config for a cluster lab of `nodes` forwarders: [`LAB_CONFIG`] and its
/// `[cluster]` and `[[node]]` sections, the shared key at `secret`.
pub fn cluster_config(nodes: usize, secret: &std::path::Path) -> String {
    let list = |zs: &[&str]| {
        zs.iter()
            .map(|z| format!("{z:?}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut out = format!(
        "{LAB_CONFIG}\n[cluster]\ninterface = \"{MGMT_IFACE}\"\ntakeover_s = {TAKEOVER_S}\nsecret_file = {:?}\n",
        secret.display().to_string()
    );
    for i in 1..=nodes {
        let (zones, backup) = node_zones(i);
        out.push_str(&format!(
            "\n[[node]]\nname = \"{}\"\naddress = \"{}\"\nzones = [{}]\nbackup_zones = [{}]\n",
            node_name(i),
            mgmt_addr(i),
            list(zones),
            list(backup)
        ));
    }
    out
}

/// Every namespace a lab of either shape makes under `lab`'s prefix: the single lab's
/// forwarder, every node a cluster lab may have, the switch, the peers.
fn every_namespace(lab: &Lab) -> Vec<String> {
    let prefix = lab.prefix();
    std::iter::once(lab.fw_ns())
        .chain((1..=*CLUSTER_NODES.end()).map(|i| format!("{prefix}fw{i}")))
        .chain(std::iter::once(format!("{prefix}{SWITCH}")))
        .chain(NETWORKS.iter().map(|n| lab.ns(n)))
        .collect()
}

/// Removes every namespace a lab of either shape (single or cluster, any node count)
/// makes under `lab`'s prefix, as [`Lab::down`] removes its own. Idempotent.
pub fn down_any(lab: &Lab) -> Result<(), LabError> {
    for ns in every_namespace(lab) {
        lab.remove_ns(&ns)?;
    }
    let _ = std::fs::remove_file(secret_path(lab.prefix()));
    Ok(())
}

/// Pids of the processes in namespace `ns`.
fn pids(ns: &str) -> Vec<i32> {
    cmd::ip(["netns", "pids", ns])
        .map(|out| {
            out.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

impl ClusterLab {
    /// A cluster lab of `nodes` forwarders (2 or 3) under `prefix`.
    pub fn new(prefix: &str, nodes: usize) -> Result<Self, LabError> {
        let lab = Lab::new(prefix)?;
        if !CLUSTER_NODES.contains(&nodes) {
            return Err(LabError::Cluster {
                prefix: prefix.to_owned(),
                message: format!(
                    "a cluster lab has {} to {} nodes, not {nodes}",
                    CLUSTER_NODES.start(),
                    CLUSTER_NODES.end()
                ),
            });
        }
        Ok(Self { lab, nodes })
    }

    /// Every network's links at `mtu` (the management network stays at the default).
    #[must_use]
    pub fn with_mtu(mut self, mtu: u32) -> Self {
        self.lab = self.lab.with_mtu(mtu);
        self
    }

    /// The lab under the same prefix: its peers are this lab's (for its servers,
    /// `write_config`, traffic into the peer namespaces).
    pub fn lab(&self) -> &Lab {
        &self.lab
    }

    pub fn prefix(&self) -> &str {
        self.lab.prefix()
    }

    pub fn nodes(&self) -> usize {
        self.nodes
    }

    pub fn switch_ns(&self) -> String {
        format!("{}{SWITCH}", self.prefix())
    }

    /// Node `i`'s namespace (`i` from 1).
    pub fn node_ns(&self, i: usize) -> String {
        format!("{}fw{i}", self.prefix())
    }

    /// Every namespace the cluster lab makes: nodes first, then the switch, the peers.
    pub fn namespaces(&self) -> Vec<String> {
        (1..=self.nodes)
            .map(|i| self.node_ns(i))
            .chain(std::iter::once(self.switch_ns()))
            .chain(NETWORKS.iter().map(|n| self.lab.ns(n)))
            .collect()
    }

    /// The pl config for this lab (every node runs `pl run` with it, `--node fw{i}`).
    pub fn config(&self) -> String {
        cluster_config(self.nodes, &secret_path(self.prefix()))
    }

    fn step(&self, step: impl Into<String>) -> impl FnOnce(CmdError) -> LabError + '_ {
        let step = step.into();
        move |source| LabError::Step {
            prefix: self.prefix().to_owned(),
            step,
            source,
        }
    }

    fn check_node(&self, i: usize) -> Result<(), LabError> {
        if (1..=self.nodes).contains(&i) {
            return Ok(());
        }
        Err(LabError::Cluster {
            prefix: self.prefix().to_owned(),
            message: format!("no node {i} (nodes are 1 to {})", self.nodes),
        })
    }

    /// Builds the cluster lab, replacing any lab (single or cluster) of the same prefix.
    /// On failure nothing is left.
    pub fn up(&self) -> Result<ClusterTopology, LabError> {
        self.down()?;
        // As `Lab::up`: in the host's mount namespace, so every `ip netns exec` sees the
        // same pins.
        if let Some(w) = state::ensure_bpffs().map_err(|source| LabError::State {
            prefix: self.prefix().to_owned(),
            source,
        })? {
            eprintln!("lab {}: {w}", self.prefix());
        }
        let secret = || {
            write_secret(&secret_path(self.prefix())).map_err(|e| LabError::Cluster {
                prefix: self.prefix().to_owned(),
                message: format!("writing the cluster key: {e}"),
            })
        };
        match self
            .build()
            .and_then(|()| secret())
            .and_then(|()| self.topology())
        {
            Ok(topo) => Ok(topo),
            Err(e) => {
                let _ = self.down();
                Err(e)
            }
        }
    }

    /// Removes every namespace of the cluster lab (all nodes it may have), and a single
    /// lab of the same prefix too; stops processes inside first. Idempotent.
    pub fn down(&self) -> Result<(), LabError> {
        down_any(&self.lab)
    }

    fn build(&self) -> Result<(), LabError> {
        for i in 1..=self.nodes {
            self.lab.add_ns(&self.node_ns(i), Ipv6::Off)?;
        }
        let sw = self.switch_ns();
        self.lab.add_ns(&sw, Ipv6::Off)?;
        for net in &NETWORKS {
            self.lab.add_ns(&self.lab.ns(net), Ipv6::Quiet)?;
        }
        let bridges = NETWORKS
            .iter()
            .map(|n| bridge(n.name))
            .chain(std::iter::once(MGMT_BRIDGE.to_owned()));
        for br in bridges {
            let what = |s: &str| format!("bridge {br}: {s}");
            cmd::ip([
                "-n",
                &sw,
                "link",
                "add",
                &br,
                "type",
                "bridge",
                "stp_state",
                "0",
                "forward_delay",
                "0",
                "ageing_time",
                "30000",
                // Flooded, not snooped: the peers send no MLD reports, and a node's
                // interfaces join no group, yet must get the neighbour solicitations.
                "mcast_snooping",
                "0",
            ])
            .map_err(self.step(what("creating it")))?;
            cmd::ip(["-n", &sw, "link", "set", &br, "up"]).map_err(self.step(what("up")))?;
        }
        for net in &NETWORKS {
            self.build_peer(net)?;
        }
        for i in 1..=self.nodes {
            self.build_node(i)?;
        }
        Ok(())
    }

    /// A peer's `eth0` (addresses, MTU, tx off, GRO on as the single lab makes it) and
    /// its switch port.
    fn build_peer(&self, net: &NetSpec) -> Result<(), LabError> {
        let sw = self.switch_ns();
        let ns = self.lab.ns(net);
        let port = peer_port(net.name);
        let br = bridge(net.name);
        let what = |s: &str| format!("network {}: {s}", net.name);
        cmd::ip([
            "-n", &sw, "link", "add", &port, "type", "veth", "peer", "name", PEER_IFACE, "netns",
            &ns,
        ])
        .map_err(self.step(what("creating the veth pair")))?;
        add_addrs(&ns, net).map_err(self.step(what("adding address")))?;
        let mtu = self.lab.mtu_of(net.name).to_string();
        cmd::ip(["-n", &sw, "link", "set", &port, "mtu", &mtu])
            .and_then(|_| cmd::ip(["-n", &ns, "link", "set", PEER_IFACE, "mtu", &mtu]))
            .map_err(self.step(what(&format!("MTU {mtu}"))))?;
        cmd::run(netns::exec(&ns, "ethtool").args(["-K", PEER_IFACE, "tx", "off", "gro", "off"]))
            .map_err(self.step(what("ethtool tx off")))?;
        cmd::ip(["-n", &sw, "link", "set", &port, "master", &br])
            .map_err(self.step(what(&format!("{port} into {br}"))))?;
        cmd::ip(["-n", &sw, "link", "set", &port, "up"])
            .map_err(self.step(what("switch side up")))?;
        cmd::ip(["-n", &ns, "link", "set", PEER_IFACE, "up"])
            .map_err(self.step(what("peer up")))?;
        cmd::run(netns::exec(&ns, "ethtool").args(["-K", PEER_IFACE, "gro", "on"]))
            .map_err(self.step(what("ethtool gro on")))?;
        Ok(())
    }

    /// Node `i`'s links: a `fw-*` interface on each network's bridge and `mgmt0` on the
    /// management bridge. Its namespace exists.
    fn build_node(&self, i: usize) -> Result<(), LabError> {
        let sw = self.switch_ns();
        let fw = self.node_ns(i);
        for (k, net) in NETWORKS.iter().enumerate() {
            let port = node_port(i, net.name);
            let br = bridge(net.name);
            let what = |s: &str| format!("node {}, network {}: {s}", node_name(i), net.name);
            veth(&fw, net.fw_iface, &node_mac(i, k + 1), &sw, &port)
                .map_err(self.step(what("creating the veth pair")))?;
            let mtu = self.lab.mtu_of(net.name).to_string();
            cmd::ip(["-n", &fw, "link", "set", net.fw_iface, "mtu", &mtu])
                .and_then(|_| cmd::ip(["-n", &sw, "link", "set", &port, "mtu", &mtu]))
                .map_err(self.step(what(&format!("MTU {mtu}"))))?;
            // The switch side takes the frames the forwarder XDP_REDIRECTs: GRO on, after
            // link-up, as the single lab's peers.
            cmd::run(netns::exec(&sw, "ethtool").args(["-K", &port, "tx", "off", "gro", "off"]))
                .map_err(self.step(what("ethtool tx off")))?;
            cmd::ip(["-n", &sw, "link", "set", &port, "master", &br])
                .map_err(self.step(what(&format!("{port} into {br}"))))?;
            cmd::ip(["-n", &fw, "link", "set", net.fw_iface, "up"])
                .map_err(self.step(what("forwarder side up")))?;
            cmd::ip(["-n", &sw, "link", "set", &port, "up"])
                .map_err(self.step(what("switch side up")))?;
            cmd::run(netns::exec(&sw, "ethtool").args(["-K", &port, "gro", "on"]))
                .map_err(self.step(what("ethtool gro on")))?;
        }
        let port = node_port(i, "mgmt");
        let addr = format!("{}/24", mgmt_addr(i));
        let what = |s: &str| format!("node {}, management: {s}", node_name(i));
        veth(&fw, MGMT_IFACE, &node_mac(i, MGMT_LINK), &sw, &port)
            .map_err(self.step(what("creating the veth pair")))?;
        cmd::ip(["-n", &fw, "addr", "add", &addr, "dev", MGMT_IFACE])
            .map_err(self.step(what("adding address")))?;
        cmd::ip(["-n", &sw, "link", "set", &port, "master", MGMT_BRIDGE])
            .map_err(self.step(what(&format!("{port} into {MGMT_BRIDGE}"))))?;
        cmd::ip(["-n", &fw, "link", "set", MGMT_IFACE, "up"])
            .map_err(self.step(what("forwarder side up")))?;
        cmd::ip(["-n", &sw, "link", "set", &port, "up"])
            .map_err(self.step(what("switch side up")))?;
        Ok(())
    }

    /// The switch-side ends of node `i`'s links (deleting one deletes its pair).
    fn node_ports(i: usize) -> Vec<String> {
        NETWORKS
            .iter()
            .map(|n| n.name)
            .chain(std::iter::once("mgmt"))
            .map(|n| node_port(i, n))
            .collect()
    }

    /// Deletes whichever of node `i`'s links exist.
    fn unplug(&self, i: usize) -> Result<(), LabError> {
        let sw = self.switch_ns();
        for port in Self::node_ports(i) {
            if cmd::ip(["-n", &sw, "link", "show", "dev", &port]).is_err() {
                continue;
            }
            if let Err(e) = cmd::ip(["-n", &sw, "link", "del", &port])
                && cmd::ip(["-n", &sw, "link", "show", "dev", &port]).is_ok()
            {
                return Err(self.step(format!("node {}: deleting {port}", node_name(i)))(e));
            }
        }
        Ok(())
    }

    /// A hard failure of node `i`: SIGKILL to every process in its namespace (waiting up
    /// to 2 s for them to go), then its links deleted (the namespace stays).
    pub fn kill_node(&self, i: usize) -> Result<(), LabError> {
        self.check_node(i)?;
        let ns = self.node_ns(i);
        if netns::exists(&ns) {
            for pid in pids(&ns) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            let deadline = std::time::Instant::now() + Duration::from_secs(2);
            while !pids(&ns).is_empty() && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        self.unplug(i)
    }

    /// Node `i`'s links made again as [`ClusterLab::up`] made them (same names, addresses
    /// and MACs),
    /// after [`ClusterLab::kill_node`]; whatever is left of them is replaced, and the
    /// namespace made again if it is gone.
    pub fn restore_node(&self, i: usize) -> Result<(), LabError> {
        self.check_node(i)?;
        let ns = self.node_ns(i);
        if netns::exists(&ns) {
            self.unplug(i)?;
        } else {
            self.lab.add_ns(&ns, Ipv6::Off)?;
        }
        self.build_node(i)
    }

    /// Reads the cluster lab as it is now (MACs come from the kernel).
    pub fn topology(&self) -> Result<ClusterTopology, LabError> {
        let nodes = (1..=self.nodes)
            .map(|i| {
                let ns = self.node_ns(i);
                let fw_macs = NETWORKS
                    .iter()
                    .map(|net| Ok((net.name.to_owned(), self.lab.mac(&ns, net.fw_iface)?)))
                    .collect::<Result<_, LabError>>()?;
                Ok(NodeInfo {
                    name: node_name(i),
                    namespace: ns,
                    mgmt_iface: MGMT_IFACE.to_owned(),
                    mgmt_addr: mgmt_addr(i),
                    fw_macs,
                })
            })
            .collect::<Result<_, LabError>>()?;
        let networks = NETWORKS
            .iter()
            .map(|net| {
                let ns = self.lab.ns(net);
                Ok(ClusterNetInfo {
                    network: net.name.to_owned(),
                    role: net.role,
                    peer_mac: self.lab.mac(&ns, PEER_IFACE)?,
                    namespace: ns,
                    peer_iface: PEER_IFACE.to_owned(),
                    addrs: net.addrs.iter().map(|a| (*a).to_owned()).collect(),
                    fw_iface: net.fw_iface.to_owned(),
                    bridge: bridge(net.name),
                    service_ip: net.service_ip,
                    service_ip6: Some(net.service_ip6),
                    mtu: self.lab.mtu_of(net.name),
                })
            })
            .collect::<Result<_, LabError>>()?;
        Ok(ClusterTopology {
            prefix: self.prefix().to_owned(),
            switch_ns: self.switch_ns(),
            nodes,
            networks,
        })
    }
}

/// A veth pair: `iface` (with `mac`) in `ns`, its peer `port` in `peer_ns`.
fn veth(ns: &str, iface: &str, mac: &str, peer_ns: &str, port: &str) -> Result<String, CmdError> {
    cmd::ip([
        "-n", ns, "link", "add", iface, "address", mac, "type", "veth", "peer", "name", port,
        "netns", peer_ns,
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_counts_outside_two_to_three_are_refused() {
        for bad in [0, 1, 4] {
            assert!(
                matches!(ClusterLab::new("t1-", bad), Err(LabError::Cluster { .. })),
                "{bad} nodes accepted"
            );
        }
        assert!(matches!(
            ClusterLab::new("UP", 2),
            Err(LabError::BadPrefix { .. })
        ));
        let lab = ClusterLab::new("t1-", 2).expect("two nodes");
        assert!(lab.check_node(0).is_err() && lab.check_node(3).is_err());
        assert!(lab.check_node(1).is_ok() && lab.check_node(2).is_ok());
    }

    #[test]
    fn namespaces_start_with_the_prefix_and_names_fit() {
        let lab = ClusterLab::new("t1-", 3).expect("three nodes");
        assert_eq!(
            lab.namespaces(),
            [
                "t1-fw1",
                "t1-fw2",
                "t1-fw3",
                "t1-sw",
                "t1-acme",
                "t1-globex",
                "t1-prov"
            ]
        );
        // Down covers a single lab and any node count too.
        let every = every_namespace(&lab.lab);
        assert!(lab.namespaces().iter().all(|ns| every.contains(ns)));
        assert!(every.contains(&"t1-fw".to_owned()));
        let mut names = vec![MGMT_IFACE.to_owned(), MGMT_BRIDGE.to_owned()];
        for net in &NETWORKS {
            names.extend([bridge(net.name), peer_port(net.name)]);
        }
        for i in 1..=*CLUSTER_NODES.end() {
            names.extend(ClusterLab::node_ports(i));
        }
        for name in &names {
            assert!(name.len() < 16, "{name} is too long for IFNAMSIZ");
        }
        let macs: Vec<_> = (1..=*CLUSTER_NODES.end())
            .flat_map(|i| {
                (1..=NETWORKS.len())
                    .chain([MGMT_LINK])
                    .map(move |k| node_mac(i, k))
            })
            .collect();
        let mut unique_macs = macs.clone();
        unique_macs.sort();
        unique_macs.dedup();
        assert_eq!(unique_macs.len(), macs.len(), "{macs:?}");
        let mut unique = names.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), names.len(), "{names:?}");
    }

    #[test]
    fn config_names_every_node_with_its_zones() {
        let two = ClusterLab::new("t1-", 2).expect("two nodes").config();
        assert!(two.starts_with(LAB_CONFIG));
        assert!(two.contains("[cluster]\ninterface = \"mgmt0\"\ntakeover_s = 3\nsecret_file = \""));
        assert!(two.contains("t1-cluster.key\"\n"));
        assert!(two.contains(
            "[[node]]\nname = \"fw1\"\naddress = \"192.168.100.1\"\nzones = [\"z1\"]\nbackup_zones = [\"z2\"]\n"
        ));
        assert!(two.contains(
            "[[node]]\nname = \"fw2\"\naddress = \"192.168.100.2\"\nzones = [\"z2\"]\nbackup_zones = [\"z1\"]\n"
        ));
        assert!(!two.contains("fw3"));
        let three = cluster_config(3, std::path::Path::new("/k"));
        assert_eq!(three.matches("[[node]]").count(), 3);
        assert!(three.contains(
            "[[node]]\nname = \"fw3\"\naddress = \"192.168.100.3\"\nzones = []\nbackup_zones = [\"z1\", \"z2\"]\n"
        ));
        // Valid TOML, whatever pl makes of the sections.
        let parsed: toml::Table = three.parse().expect("TOML");
        assert_eq!(parsed["node"].as_array().map(Vec::len), Some(3));
    }
}
