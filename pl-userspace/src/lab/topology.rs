//! The veth lab: one forwarder namespace joined by a veth pair to each network namespace.
//!
//! ```text
//!  {P}acme    eth0 10.0.0.10/24, fd00:a::10/64 ──veth── fw-acme  ┐
//!  {P}globex  eth0 10.0.0.10/24, fd00:a::10/64 ──veth── fw-globex├ {P}fw (no addresses; pl runs here)
//!  {P}prov    eth0 10.9.0.11/24, fd00:9::11/64 (+ .12, ::12) ─── fw-prov ┘
//! ```
//!
//! The two consumer networks overlap on purpose (same /24 and /64, same client addresses).
//! The peers are dual-stack, with everything IPv6 would send unasked (router
//! solicitations, DAD, MLD reports) off, so the only frames on the wire are the ones a
//! test sends; the forwarder's own stack keeps IPv6 off, so only pl answers for its
//! addresses. See [`Lab::add_ns`].
//! Peers run with tx checksum offload off (XDP cannot fix a partial checksum) and GRO on,
//! toggled after link-up (a veth takes XDP_REDIRECTed frames only with GRO or XDP on its
//! peer, and a fresh veth may report GRO on without honouring it).

use std::{
    fmt,
    net::{Ipv4Addr, Ipv6Addr, SocketAddrV4, UdpSocket},
    time::{Duration, Instant},
};

use serde::{Deserialize, Serialize};

use crate::{
    lab::{
        cmd::{self, CmdError},
        netns::{self, NetnsError},
        spec::{DEFAULT_MTU, NETWORKS, NetSpec, PEER_IFACE, Role, UDP_FRAME_OVERHEAD},
    },
    state,
};

#[derive(Debug, thiserror::Error)]
pub enum LabError {
    #[error("lab prefix {prefix:?}: use 1-16 characters from a-z, 0-9, '-'")]
    BadPrefix { prefix: String },
    #[error("lab {prefix}: {step}")]
    Step {
        prefix: String,
        step: String,
        source: CmdError,
    },
    #[error("lab {prefix}: {source}")]
    Netns { prefix: String, source: NetnsError },
    #[error("lab {prefix}: network {network}: {source}")]
    Traffic {
        prefix: String,
        network: String,
        source: std::io::Error,
    },
    #[error("lab {prefix}: `ip -j link` printed something unexpected for {iface} in {ns}")]
    LinkInfo {
        prefix: String,
        ns: String,
        iface: String,
    },
    #[error("lab {prefix}: no network named {network}")]
    NoSuchNetwork { prefix: String, network: String },
    #[error("lab {prefix}: {message}")]
    Cluster { prefix: String, message: String },
    #[error("lab {prefix}: {source}")]
    State {
        prefix: String,
        source: state::StateError,
    },
}

/// A lab named by its prefix: every namespace it makes starts with the prefix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lab {
    prefix: String,
    /// Every veth's MTU, unless `mtus` names its network.
    mtu: u32,
    mtus: Vec<(String, u32)>,
}

/// What `lab up` made, as `lab up` prints it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Topology {
    pub prefix: String,
    pub forwarder_ns: String,
    pub networks: Vec<NetInfo>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct NetInfo {
    pub network: String,
    pub role: Role,
    pub namespace: String,
    pub peer_iface: String,
    pub peer_mac: String,
    pub addrs: Vec<String>,
    pub fw_iface: String,
    pub fw_mac: String,
    pub service_ip: Ipv4Addr,
    /// The same in IPv6; absent from what an older `lab up` printed.
    #[serde(default)]
    pub service_ip6: Option<Ipv6Addr>,
    #[serde(default)]
    pub mtu: u32,
}

impl Topology {
    pub fn network(&self, name: &str) -> Option<&NetInfo> {
        self.networks.iter().find(|n| n.network == name)
    }

    pub fn fw_ifaces(&self) -> Vec<String> {
        self.networks.iter().map(|n| n.fw_iface.clone()).collect()
    }
}

impl fmt::Display for Topology {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "lab {}: forwarder namespace {} (its interfaces carry no addresses)",
            self.prefix, self.forwarder_ns
        )?;
        for n in &self.networks {
            let role = n.role.name();
            writeln!(
                f,
                "  {:<8} {:<8} ns {:<16} {} {} {:<24} <-> {:<10} {} mtu {}",
                n.network,
                role,
                n.namespace,
                n.peer_iface,
                n.peer_mac,
                n.addrs.join(","),
                n.fw_iface,
                n.fw_mac,
                n.mtu
            )?;
        }
        Ok(())
    }
}

impl Lab {
    pub fn new(prefix: &str) -> Result<Self, LabError> {
        let ok = !prefix.is_empty()
            && prefix.len() <= 16
            && prefix
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !ok {
            return Err(LabError::BadPrefix {
                prefix: prefix.to_owned(),
            });
        }
        Ok(Self {
            prefix: prefix.to_owned(),
            mtu: DEFAULT_MTU,
            mtus: Vec::new(),
        })
    }

    /// Every network's link at `mtu` (both ends of its veth).
    #[must_use]
    pub fn with_mtu(mut self, mtu: u32) -> Self {
        self.mtu = mtu;
        self
    }

    /// One network's link at `mtu`, the others as [`Lab::with_mtu`] says.
    #[must_use]
    pub fn with_network_mtu(mut self, network: &str, mtu: u32) -> Self {
        self.mtus.push((network.to_owned(), mtu));
        self
    }

    pub(super) fn mtu_of(&self, network: &str) -> u32 {
        self.mtus
            .iter()
            .rev()
            .find(|(n, _)| n == network)
            .map_or(self.mtu, |(_, m)| *m)
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Writes [`LAB_CONFIG`](super::spec::LAB_CONFIG) (or `config`) to a file named after the lab in the temp dir.
    pub fn write_config(&self, config: &str) -> Result<std::path::PathBuf, LabError> {
        let path = std::env::temp_dir().join(format!("{}pl.toml", self.prefix));
        write_private(&path, config).map_err(|source| LabError::Traffic {
            prefix: self.prefix.clone(),
            network: "config".to_owned(),
            source,
        })?;
        Ok(path)
    }

    pub fn fw_ns(&self) -> String {
        format!("{}fw", self.prefix)
    }

    pub fn ns(&self, net: &NetSpec) -> String {
        format!("{}{}", self.prefix, net.name)
    }

    /// Every namespace the lab makes, forwarder first.
    pub fn namespaces(&self) -> Vec<String> {
        std::iter::once(self.fw_ns())
            .chain(NETWORKS.iter().map(|n| self.ns(n)))
            .collect()
    }

    fn step(&self, step: impl Into<String>) -> impl FnOnce(CmdError) -> LabError + '_ {
        let step = step.into();
        move |source| LabError::Step {
            prefix: self.prefix.clone(),
            step,
            source,
        }
    }

    /// Builds the lab, replacing any lab of the same prefix. On failure nothing is left.
    pub fn up(&self) -> Result<Topology, LabError> {
        self.down()?;
        // In this (the host's) mount namespace, so every `ip netns exec` made later sees
        // the same pins and `pl run` restarts inside the lab keep their flows.
        if let Some(w) = state::ensure_bpffs().map_err(|source| LabError::State {
            prefix: self.prefix.clone(),
            source,
        })? {
            eprintln!("lab {}: {w}", self.prefix);
        }
        match self.build().and_then(|()| self.topology()) {
            Ok(topo) => Ok(topo),
            Err(e) => {
                let _ = self.down();
                Err(e)
            }
        }
    }

    fn build(&self) -> Result<(), LabError> {
        let fw = self.fw_ns();
        self.add_ns(&fw, Ipv6::Off)?;
        for net in &NETWORKS {
            self.add_ns(&self.ns(net), Ipv6::Quiet)?;
        }
        for net in &NETWORKS {
            let ns = self.ns(net);
            let what = |s: &str| format!("network {}: {s}", net.name);
            cmd::ip([
                "-n",
                &fw,
                "link",
                "add",
                net.fw_iface,
                "type",
                "veth",
                "peer",
                "name",
                PEER_IFACE,
                "netns",
                &ns,
            ])
            .map_err(self.step(what("creating the veth pair")))?;
            add_addrs(&ns, net).map_err(self.step(what("adding address")))?;
            let mtu = self.mtu_of(net.name).to_string();
            cmd::ip(["-n", &fw, "link", "set", net.fw_iface, "mtu", &mtu])
                .and_then(|_| cmd::ip(["-n", &ns, "link", "set", PEER_IFACE, "mtu", &mtu]))
                .map_err(self.step(what(&format!("MTU {mtu}"))))?;
            cmd::run(
                netns::exec(&ns, "ethtool").args(["-K", PEER_IFACE, "tx", "off", "gro", "off"]),
            )
            .map_err(self.step(what("ethtool tx off")))?;
            cmd::ip(["-n", &fw, "link", "set", net.fw_iface, "up"])
                .map_err(self.step(what("forwarder side up")))?;
            cmd::ip(["-n", &ns, "link", "set", PEER_IFACE, "up"])
                .map_err(self.step(what("peer up")))?;
            cmd::run(netns::exec(&ns, "ethtool").args(["-K", PEER_IFACE, "gro", "on"]))
                .map_err(self.step(what("ethtool gro on")))?;
        }
        Ok(())
    }

    /// Creates namespace `ns` with `lo` up and its IPv6 set as `ipv6` says. Before any
    /// other link exists, so the `default` sysctls cover every link made later.
    pub(super) fn add_ns(&self, ns: &str, ipv6: Ipv6) -> Result<(), LabError> {
        cmd::ip(["netns", "add", ns]).map_err(self.step(format!("creating namespace {ns}")))?;
        cmd::ip(["-n", ns, "link", "set", "lo", "up"])
            .map_err(self.step(format!("{ns}: lo up")))?;
        let sysctls: &[&str] = match ipv6 {
            Ipv6::Off => &[
                "net.ipv6.conf.all.disable_ipv6=1",
                "net.ipv6.conf.default.disable_ipv6=1",
            ],
            // No router solicitations (accept_ra off, none to send), no DAD (and `nodad`
            // on every address), no link-local address: a peer speaks IPv6 only when a
            // test makes it. MLD reports have no switch; the nft rule below drops them.
            Ipv6::Quiet => &[
                "net.ipv6.conf.all.disable_ipv6=0",
                "net.ipv6.conf.default.disable_ipv6=0",
                "net.ipv6.conf.all.accept_ra=0",
                "net.ipv6.conf.default.accept_ra=0",
                "net.ipv6.conf.all.router_solicitations=0",
                "net.ipv6.conf.default.router_solicitations=0",
                "net.ipv6.conf.all.accept_dad=0",
                "net.ipv6.conf.default.accept_dad=0",
                "net.ipv6.conf.all.dad_transmits=0",
                "net.ipv6.conf.default.dad_transmits=0",
                "net.ipv6.conf.default.addr_gen_mode=1",
            ],
        };
        cmd::run(netns::exec(ns, "sysctl").arg("-qw").args(sysctls))
            .map_err(self.step(format!("{ns}: IPv6 sysctls")))?;
        if ipv6 == Ipv6::Quiet {
            // The kernel sends an MLD report for each solicited-node group it joins, on
            // link-up and again up to a second later, and no sysctl stops it; dropped at
            // the namespace's own output hook, none ever reaches pl's counters.
            cmd::run(netns::exec(ns, "nft").arg(QUIET_MLD))
                .map_err(self.step(format!("{ns}: nft rule dropping MLD reports")))?;
        }
        Ok(())
    }

    /// Removes everything the lab made; stops processes still running inside it first
    /// (a namespace lives on while a process holds it). Idempotent.
    pub fn down(&self) -> Result<(), LabError> {
        for ns in self.namespaces() {
            self.remove_ns(&ns)?;
        }
        Ok(())
    }

    /// Removes namespace `ns` as [`Lab::down`] removes each of the lab's: its processes
    /// stopped, its pins removed. Nothing to do if it does not exist.
    pub(super) fn remove_ns(&self, ns: &str) -> Result<(), LabError> {
        if !netns::exists(ns) {
            return Ok(());
        }
        stop_processes(ns);
        // What a stopped `pl run` left attached and pinned dies with the namespace.
        let removed = netns::run_in(ns, state::netns_cookie)
            .map_err(|source| LabError::Netns {
                prefix: self.prefix.clone(),
                source,
            })
            .and_then(|cookie| {
                cookie
                    .and_then(state::remove_netns)
                    .map_err(|source| LabError::State {
                        prefix: self.prefix.clone(),
                        source,
                    })
            });
        if let Err(e) = removed
            && netns::exists(ns)
        {
            return Err(e);
        }
        // The demo's signal path may tear down concurrently and delete it first.
        if let Err(e) = cmd::ip(["netns", "del", ns])
            && netns::exists(ns)
        {
            return Err(self.step(format!("deleting namespace {ns}"))(e));
        }
        Ok(())
    }

    /// Reads the lab as it is now (MACs come from the kernel).
    pub fn topology(&self) -> Result<Topology, LabError> {
        let fw = self.fw_ns();
        let networks = NETWORKS
            .iter()
            .map(|net| {
                let ns = self.ns(net);
                Ok(NetInfo {
                    network: net.name.to_owned(),
                    role: net.role,
                    peer_mac: self.mac(&ns, PEER_IFACE)?,
                    fw_mac: self.mac(&fw, net.fw_iface)?,
                    namespace: ns,
                    peer_iface: PEER_IFACE.to_owned(),
                    addrs: net.addrs.iter().map(|a| (*a).to_owned()).collect(),
                    fw_iface: net.fw_iface.to_owned(),
                    service_ip: net.service_ip,
                    service_ip6: Some(net.service_ip6),
                    mtu: self.mtu(&fw, net.fw_iface)?,
                })
            })
            .collect::<Result<_, LabError>>()?;
        Ok(Topology {
            prefix: self.prefix.clone(),
            forwarder_ns: fw,
            networks,
        })
    }

    /// `ip -j link show dev IFACE` in `ns`, as JSON.
    fn link_json(&self, ns: &str, iface: &str) -> Result<serde_json::Value, LabError> {
        let out = cmd::ip(["-n", ns, "-j", "link", "show", "dev", iface])
            .map_err(self.step(format!("reading {iface} in {ns}")))?;
        serde_json::from_str::<serde_json::Value>(&out)
            .ok()
            .and_then(|v| v.get(0).cloned())
            .ok_or_else(|| LabError::LinkInfo {
                prefix: self.prefix.clone(),
                ns: ns.to_owned(),
                iface: iface.to_owned(),
            })
    }

    fn mtu(&self, ns: &str, iface: &str) -> Result<u32, LabError> {
        let link = self.link_json(ns, iface)?;
        link.get("mtu")
            .and_then(serde_json::Value::as_u64)
            .and_then(|m| u32::try_from(m).ok())
            .ok_or_else(|| LabError::LinkInfo {
                prefix: self.prefix.clone(),
                ns: ns.to_owned(),
                iface: iface.to_owned(),
            })
    }

    pub(crate) fn mac(&self, ns: &str, iface: &str) -> Result<String, LabError> {
        let link = self.link_json(ns, iface)?;
        link.get("address")
            .and_then(|a| a.as_str())
            .map(str::to_owned)
            .ok_or_else(|| LabError::LinkInfo {
                prefix: self.prefix.clone(),
                ns: ns.to_owned(),
                iface: iface.to_owned(),
            })
    }

    /// Whether an XDP program is attached to the forwarder's `iface` (`ip -j link` shows
    /// an `xdp` object for it).
    pub fn xdp_attached(&self, iface: &str) -> Result<bool, LabError> {
        Ok(self.link_json(&self.fw_ns(), iface)?.get("xdp").is_some())
    }

    /// Sends `count` UDP datagrams of `payload` bytes from network `network`'s first
    /// address to its service address, port `port`, and returns the frame bytes sent.
    /// The service address's neighbour entry is pinned to the forwarder's MAC: in observe
    /// mode (`pl run --interface`) the forwarder answers no ARP.
    pub fn send_udp(
        &self,
        topo: &Topology,
        network: &str,
        port: u16,
        count: usize,
        payload: usize,
    ) -> Result<u64, LabError> {
        let net = topo
            .network(network)
            .ok_or_else(|| LabError::NoSuchNetwork {
                prefix: self.prefix.clone(),
                network: network.to_owned(),
            })?;
        let dst = net.service_ip.to_string();
        cmd::ip([
            "-n",
            &net.namespace,
            "neigh",
            "replace",
            &dst,
            "lladdr",
            &net.fw_mac,
            "dev",
            &net.peer_iface,
            "nud",
            "permanent",
        ])
        .map_err(self.step(format!("network {network}: neighbour entry for {dst}")))?;
        let target = SocketAddrV4::new(net.service_ip, port);
        let buf = vec![0x5a_u8; payload];
        let io = |source| LabError::Traffic {
            prefix: self.prefix.clone(),
            network: network.to_owned(),
            source,
        };
        netns::run_in(&net.namespace, || -> std::io::Result<()> {
            let sock = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))?;
            for _ in 0..count {
                sock.send_to(&buf, target)?;
            }
            Ok(())
        })
        .map_err(|source| LabError::Netns {
            prefix: self.prefix.clone(),
            source,
        })?
        .map_err(io)?;
        Ok((count * (UDP_FRAME_OVERHEAD + payload)) as u64)
    }
}

/// How a lab namespace's IPv6 is set up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Ipv6 {
    /// Off: the forwarder's own stack (and the cluster's switch), so the kernel never
    /// answers for an address on a `fw-*` interface.
    Off,
    /// On, and silent unless a test sends: the peers.
    Quiet,
}

/// The peers' nftables rule: every MLD report or done message dropped on output.
const QUIET_MLD: &str = "add table ip6 pl-lab; \
    add chain ip6 pl-lab out { type filter hook output priority 0; policy accept; }; \
    add rule ip6 pl-lab out icmpv6 type { mld-listener-report, mld2-listener-report, mld-listener-done } drop";

/// Adds network `net`'s addresses to its peer's `eth0`; IPv6 ones without DAD and in
/// reverse order: among equals the kernel picks the newest IPv6 address as a source, and the
/// first listed (the client, as in IPv4) should be the one an unbound socket uses.
pub(super) fn add_addrs(ns: &str, net: &NetSpec) -> Result<(), CmdError> {
    let (v6, v4): (Vec<&str>, Vec<&str>) = net.addrs.iter().partition(|a| a.contains(':'));
    for a in v4 {
        cmd::ip(["-n", ns, "addr", "add", a, "dev", PEER_IFACE])?;
    }
    for a in v6.into_iter().rev() {
        cmd::ip(["-n", ns, "addr", "add", a, "dev", PEER_IFACE, "nodad"])?;
    }
    Ok(())
}

/// SIGTERM to every process in `ns`, SIGKILL to those left after two seconds.
fn stop_processes(ns: &str) {
    let pids = || -> Vec<i32> {
        cmd::ip(["netns", "pids", ns])
            .map(|out| {
                out.split_whitespace()
                    .filter_map(|p| p.parse().ok())
                    .collect()
            })
            .unwrap_or_default()
    };
    let signal = |sig| {
        for pid in pids() {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), sig);
        }
    };
    signal(nix::sys::signal::Signal::SIGTERM);
    let deadline = Instant::now() + Duration::from_secs(2);
    while !pids().is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    signal(nix::sys::signal::Signal::SIGKILL);
}

/// Removes a lab when dropped, however the command that made it (demo, bench) ends.
pub struct Teardown {
    lab: Lab,
    /// The `pl` subcommand that made the lab, for its error line.
    command: &'static str,
}

impl Teardown {
    pub fn new(lab: Lab, command: &'static str) -> Self {
        Self { lab, command }
    }

    pub fn lab(&self) -> &Lab {
        &self.lab
    }
}

impl Drop for Teardown {
    fn drop(&mut self) {
        println!("==> tearing down lab {}", self.lab.prefix());
        if let Err(e) = self.lab.down() {
            eprintln!(
                "pl {}: teardown failed: {:#}; run `pl lab down --prefix {}`",
                self.command,
                anyhow::Error::from(e),
                self.lab.prefix()
            );
        }
    }
}

/// Writes `text` to `path`, readable by its owner only (`pl run` refuses a config others
/// could change). A symlink at `path` is refused, not followed, and so is a file another
/// user owns: the temp dir is shared, and a name there may have been planted.
pub fn write_private(path: &std::path::Path, text: &str) -> std::io::Result<()> {
    use std::{
        io::Write as _,
        os::unix::fs::{MetadataExt as _, OpenOptionsExt as _, PermissionsExt as _},
    };
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)?;
    let owner = f.metadata()?.uid();
    if owner != nix::unistd::geteuid().as_raw() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            format!(
                "{} belongs to uid {owner}, not to this user",
                path.display()
            ),
        ));
    }
    f.set_len(0)?;
    f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    f.write_all(text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_are_checked_and_namespaces_start_with_them() {
        let lab = Lab::new("t1-").expect("valid prefix");
        assert_eq!(
            lab.namespaces(),
            ["t1-fw", "t1-acme", "t1-globex", "t1-prov"]
        );
        for bad in ["", "UP", "a b", "a/b", "12345678901234567"] {
            assert!(
                matches!(Lab::new(bad), Err(LabError::BadPrefix { .. })),
                "{bad:?} accepted"
            );
        }
    }

    #[test]
    fn consumer_networks_overlap_and_interface_names_fit() {
        let consumers: Vec<_> = NETWORKS
            .iter()
            .filter(|n| n.role == Role::Consumer)
            .collect();
        assert!(consumers.len() >= 2);
        assert!(consumers.windows(2).all(|w| w[0].addrs == w[1].addrs
            && w[0].service_ip == w[1].service_ip
            && w[0].service_ip6 == w[1].service_ip6));
        assert_eq!(
            NETWORKS.iter().filter(|n| n.role == Role::Provider).count(),
            1
        );
        for n in &NETWORKS {
            assert!(
                n.fw_iface.len() < 16,
                "{} is too long for IFNAMSIZ",
                n.fw_iface
            );
        }
    }
}
