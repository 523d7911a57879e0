//! Several forwarders: this node's part in the cluster. `keepalived` elects each zone's
//! owner, `sync` carries flows to the nodes that may take a zone over (`accept` judges and
//! writes what it receives), `wire` is the sync's datagram format. [`Member`] holds them
//! for `pl run --node`; the daemon's loop feeds it keepalived's state lines, sync datagrams
//! and its ticks.

mod accept;
pub mod keepalived;
pub mod secret;
pub mod sync;
pub mod wire;

use std::{net::Ipv4Addr, path::PathBuf, time::Instant};

use serde::{Deserialize, Serialize};

pub use self::{
    keepalived::{Keepalived, KeepalivedError, VrrpState},
    sync::{Sync, SyncCounts, SyncError},
};
use crate::model::Model;

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("--node {node:?}: no [[node]] of that name in the config (nodes: {names})")]
    NoSuchNode { node: String, names: String },
    #[error("--node is given but the config has no [cluster]")]
    NoCluster,
    #[error("the config has a [cluster]: pass --node NAME (one of: {names})")]
    NodeMissing { names: String },
    #[error(
        "node {node:?}: its address {address} is not on the management interface {interface:?} in this network namespace"
    )]
    AddressMissing {
        node: String,
        address: Ipv4Addr,
        interface: String,
    },
    #[error(transparent)]
    Keepalived(#[from] KeepalivedError),
    #[error(transparent)]
    Sync(#[from] SyncError),
    #[error(transparent)]
    Secret(#[from] secret::SecretError),
    #[error(transparent)]
    State(#[from] crate::state::StateError),
}

/// This node in the cluster.
pub struct Member {
    pub me: usize,
    pub name: String,
    pub keepalived: Option<Keepalived>,
    dir: PathBuf,
    /// keepalived's last word per zone index.
    states: Vec<Option<VrrpState>>,
    pub sync: Sync,
    /// When keepalived last exited, for the restart.
    pub died: Option<Instant>,
    /// keepalived's pid files made root's alone.
    tightened: bool,
}

/// The node named `node` of `model`'s cluster, checked against the config.
pub fn node_index(model: &Model, node: Option<&str>) -> Result<Option<usize>, ClusterError> {
    let names = || {
        model.cluster.as_ref().map_or_else(String::new, |c| {
            c.nodes
                .iter()
                .map(|n| n.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        })
    };
    match (&model.cluster, node) {
        (None, None) => Ok(None),
        (None, Some(_)) => Err(ClusterError::NoCluster),
        (Some(_), None) => Err(ClusterError::NodeMissing { names: names() }),
        (Some(c), Some(n)) => c
            .nodes
            .iter()
            .position(|x| x.name == n)
            .map(Some)
            .ok_or_else(|| ClusterError::NoSuchNode {
                node: n.to_owned(),
                names: names(),
            }),
    }
}

impl Member {
    /// Joins: the sync socket on this node's management address, then keepalived.
    pub fn start(model: &Model, me: usize, instance: &str) -> Result<Self, ClusterError> {
        let c = model.cluster.as_ref().ok_or(ClusterError::NoCluster)?;
        let node = &c.nodes[me];
        if !has_address(&c.interface, node.address) {
            return Err(ClusterError::AddressMissing {
                node: node.name.clone(),
                address: node.address,
                interface: c.interface.clone(),
            });
        }
        let key = secret::Secret::load(&c.secret_file)?;
        let sync = Sync::bind(model, me as u8, key)?;
        let cookie = crate::state::netns_cookie()?;
        let dir = crate::state::cluster_dir(instance, cookie);
        keepalived::installed()?;
        Ok(Self {
            me,
            name: node.name.clone(),
            // Started by `elect` once the data plane is up: its `preempt_delay` (the time a
            // returning node hears its zone's flows before it takes the zone back) must
            // not run out while the programs load.
            keepalived: None,
            dir,
            states: vec![None; model.zones.len()],
            sync,
            died: None,
            tightened: false,
        })
    }

    /// Starts the election (keepalived), once the data plane can serve. A failure here is
    /// as keepalived dying: this node holds no zone, and the tick tries again.
    pub fn elect(&mut self, model: &Model) {
        if let Err(e) = self.restart(model) {
            tracing::warn!("{:#}", anyhow::Error::from(e));
            self.lost_keepalived();
        }
    }

    /// Starts keepalived again after it exited.
    pub fn restart(&mut self, model: &Model) -> Result<(), ClusterError> {
        self.keepalived = Some(Keepalived::start(model, self.me, &self.dir)?);
        self.died = None;
        self.tightened = false;
        Ok(())
    }

    /// keepalived is gone: this node holds no zone until it is back.
    pub fn lost_keepalived(&mut self) {
        self.keepalived = None;
        self.died = Some(Instant::now());
        self.states.iter_mut().for_each(|s| *s = None);
    }

    /// Takes in a line keepalived wrote; the zone and its new state if it is one.
    pub fn on_line(&mut self, model: &Model, line: &str) -> Option<(String, VrrpState)> {
        if !self.tightened {
            // keepalived writes its pid files 0644 whatever its umask; by its first word
            // both are there. The directory is root's alone anyway.
            self.tightened = keepalived::tighten(&self.dir);
        }
        let (zone, state) = keepalived::parse_line(line)?;
        let i = model.zones.iter().position(|z| *z == zone)?;
        if self.states.len() <= i {
            self.states.resize(i + 1, None);
        }
        self.states[i] = Some(state);
        Some((zone, state))
    }

    /// The zones this node is master of, a bit per zone index.
    pub fn serving(&self) -> u32 {
        self.states
            .iter()
            .enumerate()
            .filter(|(_, s)| **s == Some(VrrpState::Master))
            .fold(0, |m, (i, _)| m | 1 << i)
    }

    /// The next thing the cluster has to say: a keepalived line, keepalived's exit, or a
    /// sync datagram (into `buf`). Cancel-safe.
    pub async fn next_event(&mut self, buf: &mut [u8]) -> Event {
        let datagram = |r: std::io::Result<(usize, std::net::SocketAddr)>| match r {
            Ok((n, from)) => Event::Datagram(n, from),
            Err(e) => Event::RecvError(e),
        };
        let Some(k) = self.keepalived.as_mut() else {
            return datagram(self.sync.recv(buf).await);
        };
        let (lines, child) = k.parts();
        tokio::select! {
            line = lines.next_line() => match line {
                Ok(Some(l)) => Event::Line(l),
                Ok(None) => Event::Exited("its event FIFO closed".to_owned()),
                Err(e) => Event::Exited(format!("reading its event FIFO: {e}")),
            },
            status = child.wait() => Event::Exited(match status {
                Ok(s) => s.to_string(),
                Err(e) => e.to_string(),
            }),
            r = self.sync.recv(buf) => datagram(r),
        }
    }

    /// The zones this node may serve now: those keepalived made it master of, less any
    /// another node claimed in its last hello, until that node lets go (a hello without
    /// it) or could no longer hold its lease. A node says hello right after each renewal,
    /// every `lease / 4`: its lease ends before its last hello heard + `lease` + one more
    /// period for a hello lost. True if a zone waits.
    pub fn servable(&self, lease: std::time::Duration) -> (u32, bool) {
        let mut mask = self.serving();
        let mut waiting = false;
        for p in &self.sync.peers {
            let claimed = mask & p.serving;
            if claimed != 0 && p.heard.is_some_and(|t| t.elapsed() < lease + lease / 2) {
                mask &= !claimed;
                waiting = true;
            }
        }
        (mask, waiting)
    }

    /// What `pl status` shows of the cluster.
    pub fn status(&self, model: &Model) -> ClusterStatus {
        let fresh = |p: &sync::Peer| p.heard.is_some_and(|t| t.elapsed().as_secs() < 3);
        let zones = model
            .zones
            .iter()
            .enumerate()
            .map(|(i, name)| {
                let bit = 1u32 << i;
                let owner = if model.serving.unwrap_or(0) & bit != 0 {
                    Some(self.name.clone())
                } else {
                    self.sync
                        .peers
                        .iter()
                        .find(|p| fresh(p) && p.serving & bit != 0)
                        .map(|p| p.name.clone())
                };
                let role = model.cluster.as_ref().map_or("", |c| {
                    let n = &c.nodes[self.me];
                    if n.zones.contains(&(i as u8)) {
                        "primary"
                    } else if n.backup_zones.contains(&(i as u8)) {
                        "backup"
                    } else {
                        "-"
                    }
                });
                ZoneStatus {
                    zone: name.clone(),
                    owner,
                    role: role.to_owned(),
                    state: self.states.get(i).copied().flatten(),
                }
            })
            .collect();
        let peers = self
            .sync
            .peers
            .iter()
            .map(|p| PeerStatus {
                name: p.name.clone(),
                address: *p.addr.ip(),
                heard_ms_ago: p.heard.map(|t| t.elapsed().as_millis() as u64),
                // A silent peer's last word is no longer news.
                serving: if fresh(p) {
                    zone_names(model, p.serving)
                } else {
                    Vec::new()
                },
                mismatched: p.mismatched,
            })
            .collect();
        ClusterStatus {
            node: self.name.clone(),
            zones,
            peers,
            sync: self.sync.counts,
        }
    }

    /// Leaves: keepalived gives its zones up at once; its files go.
    pub async fn stop(self) {
        if let Some(k) = self.keepalived {
            k.stop().await;
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// What [`Member::next_event`] found.
pub enum Event {
    Line(String),
    /// keepalived is gone, and why.
    Exited(String),
    Datagram(usize, std::net::SocketAddr),
    RecvError(std::io::Error),
}

/// The names of the zones in `mask`.
pub fn zone_names(model: &Model, mask: u32) -> Vec<String> {
    model
        .zones
        .iter()
        .enumerate()
        .filter(|(i, _)| mask & (1 << i) != 0)
        .map(|(_, z)| z.clone())
        .collect()
}

/// Whether `address` is on interface `name` here.
fn has_address(name: &str, address: Ipv4Addr) -> bool {
    nix::ifaddrs::getifaddrs().is_ok_and(|mut addrs| {
        addrs.any(|a| {
            a.interface_name == name
                && a.address
                    .and_then(|s| s.as_sockaddr_in().map(nix::sys::socket::SockaddrIn::ip))
                    .is_some_and(|ip| ip == address)
        })
    })
}

/// The cluster part of `pl status`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterStatus {
    /// This node's name.
    pub node: String,
    pub zones: Vec<ZoneStatus>,
    pub peers: Vec<PeerStatus>,
    pub sync: SyncCounts,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ZoneStatus {
    pub zone: String,
    /// The node serving it, as this node knows (itself, or a peer heard in the last 3 s).
    pub owner: Option<String>,
    /// This node's part in it: `primary`, `backup` or `-`.
    pub role: String,
    /// keepalived's state for it here; None before the first word or without an instance.
    pub state: Option<VrrpState>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerStatus {
    pub name: String,
    pub address: Ipv4Addr,
    pub heard_ms_ago: Option<u64>,
    pub serving: Vec<String>,
    /// Its config numbers ids differently: its flows are refused.
    pub mismatched: bool,
}
