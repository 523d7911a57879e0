//! New flows with flow sync on: `pl run` as node fw1 of a two-node cluster whose other
//! node is a namespace that only receives (`{prefix}mg`, on `mgmt0`'s far end), so every
//! flow the bench opens is scanned, encoded and sent as in a real cluster. Sync runs in
//! `pl run`'s loop, not in the data path: what it can cost new flows is CPU and memory
//! bandwidth taken from the forwarder.

use crate::lab::{cmd, netns};

/// The cluster the synced run joins, appended to the bench config with the peer's key.
pub(super) const CLUSTER: &str = r#"
[cluster]
interface = "mgmt0"
takeover_s = 3
secret_file = "SECRET"

[[node]]
name = "fw1"
address = "192.168.100.1"
zones = ["z1"]

[[node]]
name = "fw2"
address = "192.168.100.2"
backup_zones = ["z1"]
"#;

/// The silent peer: a namespace with fw2's address on the far end of the forwarder's
/// `mgmt0`. Removed (with the veth) when dropped.
pub(super) struct Peer {
    ns: String,
    secret: std::path::PathBuf,
}

impl Peer {
    pub(super) fn new(prefix: &str, fw_ns: &str) -> anyhow::Result<Self> {
        let ns = format!("{prefix}mg");
        if netns::exists(&ns) {
            cmd::ip(["netns", "del", &ns])?;
        }
        cmd::ip(["netns", "add", &ns])?;
        let secret = crate::lab::cluster::secret_path(prefix);
        let peer = Self { ns, secret };
        crate::lab::cluster::write_secret(&peer.secret)?;
        let ns = &peer.ns;
        cmd::ip([
            "-n", fw_ns, "link", "add", "mgmt0", "type", "veth", "peer", "name", "eth0", "netns",
            ns,
        ])?;
        cmd::ip([
            "-n",
            fw_ns,
            "addr",
            "add",
            "192.168.100.1/24",
            "dev",
            "mgmt0",
        ])?;
        cmd::ip(["-n", ns, "addr", "add", "192.168.100.2/24", "dev", "eth0"])?;
        for (n, dev) in [(fw_ns, "mgmt0"), (ns.as_str(), "eth0"), (ns.as_str(), "lo")] {
            cmd::ip(["-n", n, "link", "set", dev, "up"])?;
        }
        Ok(peer)
    }
}

impl Peer {
    /// [`CLUSTER`] with this peer's key.
    pub(super) fn cluster(&self) -> String {
        CLUSTER.replace("SECRET", &self.secret.display().to_string())
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = cmd::ip(["netns", "del", &self.ns]);
        let _ = std::fs::remove_file(&self.secret);
    }
}
