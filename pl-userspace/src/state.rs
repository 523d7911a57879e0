//! What outlives `pl run`: the flow tables (and with them the SNAT reservations), learned MACs
//! and counters pinned on a bpffs, one pinned XDP link per interface, and the running model
//! in a file beside them. A restart picks them up and swaps its program into the links, so
//! established flows keep going; `pl down` removes it all.
//!
//! Layout, per instance and network namespace (the netns cookie is never reused while the
//! machine is up, so a stale directory cannot be mistaken for a live one):
//! `/run/pl/bpf/<instance>-<cookie>/{PL_FLOWS,..,link-<ifindex>}` on a bpffs mounted at
//! `/run/pl/bpf`, and `/run/pl/<instance>-<cookie>.json`. `/run`, unlike `/sys`, is the same
//! inside `ip netns exec`, so every namespace's `pl` finds its state.

use std::{
    io,
    os::fd::AsRawFd as _,
    path::{Path, PathBuf},
};

use aya::maps::{MapInfo, MapType};
use pl_common::{
    endpoint::{AddrKey, AddrKey6},
    flow6::Slot6,
    flowtable::Slot,
    maps::{
        ENDPOINT_STATS_MAP, FLOWS_MAP, FLOWS6_MAP, IFACE_STATS_MAP, MAX_ENDPOINTS, MAX_IFACES,
        MAX_NEIGH, MAX_TARGETS, NEIGH_MAP, NEIGH6_MAP, TAILS_MAP, TARGET_STATS_MAP, flow_array_len,
    },
    stats::{EndpointStats, IfaceStats},
};

use crate::{flows::flow6_entries, instance::BadInstance, model::Model};

pub const STATE_ROOT: &str = "/run/pl";
const BPFFS_MAGIC: libc::c_long = 0xcafe_4a11;

/// The shape a kept map must have: type, key and value sizes, entries (the flow maps'
/// from the config: the IPv6 one's follows the IPv4 one's, so one saved size checks both).
fn kept_shape(map: &str, flow_entries: u32) -> (MapType, usize, usize, u32) {
    match map {
        FLOWS_MAP => (
            MapType::Array,
            4,
            size_of::<Slot>(),
            flow_array_len(flow_entries),
        ),
        FLOWS6_MAP => (
            MapType::Array,
            4,
            size_of::<Slot6>(),
            flow_array_len(flow6_entries(flow_entries)),
        ),
        NEIGH_MAP => (MapType::Hash, size_of::<AddrKey>(), 8, MAX_NEIGH),
        NEIGH6_MAP => (MapType::Hash, size_of::<AddrKey6>(), 8, MAX_NEIGH),
        IFACE_STATS_MAP => (MapType::PerCpuArray, 4, size_of::<IfaceStats>(), MAX_IFACES),
        ENDPOINT_STATS_MAP => (
            MapType::PerCpuArray,
            4,
            size_of::<EndpointStats>(),
            MAX_ENDPOINTS,
        ),
        TARGET_STATS_MAP => (MapType::PerCpuArray, 4, 8, MAX_TARGETS),
        other => unreachable!("kept map {other} has no shape"),
    }
}

/// Maps that carry over a restart; the rest are written afresh from the config. One
/// missing from the pins (left by a pl without it, as `PL_FLOWS6`) is made new and pinned
/// by the load that takes the others.
pub const KEPT_MAPS: [&str; 7] = [
    FLOWS_MAP,
    FLOWS6_MAP,
    NEIGH_MAP,
    NEIGH6_MAP,
    IFACE_STATS_MAP,
    ENDPOINT_STATS_MAP,
    TARGET_STATS_MAP,
];

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error(transparent)]
    Instance(#[from] BadInstance),
    #[error("{path}: {what}: {source}")]
    Io {
        path: PathBuf,
        what: &'static str,
        source: io::Error,
    },
    #[error(
        "{path}: {what}: permission denied; pl keeps its state as root's alone: run it as root"
    )]
    Permission { path: PathBuf, what: &'static str },
    #[error("reading this network namespace's cookie (SO_NETNS_COOKIE): {source}")]
    Cookie { source: io::Error },
    #[error("{path}: not pl state ({why}); remove it or run `pl down`")]
    Corrupt { path: PathBuf, why: String },
    #[error(
        "pinned map {map} in {dir} is {found}, this pl needs {wanted}: it was made by another pl version or config; `pl run --fresh` starts over (dropping live flows)"
    )]
    Incompatible {
        map: &'static str,
        dir: PathBuf,
        found: String,
        wanted: String,
    },
}

/// Where the program runs on an interface. Saved as `"native"` or `"skb"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// In the driver (`XDP_FLAGS_DRV_MODE`): the fast path, and the default.
    Native,
    /// In the generic stack (`XDP_FLAGS_SKB_MODE`): for drivers without native XDP.
    Skb,
}

impl Mode {
    pub const fn name(self) -> &'static str {
        match self {
            Self::Native => "native",
            Self::Skb => "skb",
        }
    }
}

/// One interface the program is attached to.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Attached {
    pub name: String,
    pub ifindex: u32,
    pub slot: u32,
}

/// What the last `pl run` of an instance left: enough to take over its links and keep the
/// ids its flows refer to.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Saved {
    pub pl_version: String,
    /// A link keeps its mode, so a restart must use the same.
    pub mode: Mode,
    pub interfaces: Vec<Attached>,
    /// Entries of the pinned flow map.
    pub flow_entries: u32,
    /// The model the maps were written from (none in observe mode).
    pub model: Option<Model>,
    /// Flows removed by reloads, by endpoint id (a counter only userspace writes, kept
    /// here rather than in the per-CPU counters XDP writes).
    #[serde(default)]
    pub revoked: Vec<u64>,
}

/// One instance's state location in this network namespace.
#[derive(Debug)]
pub struct State {
    dir: PathBuf,
    meta: PathBuf,
}

/// Writes `path` anew with mode 0600.
fn write_private(path: &Path, bytes: &[u8]) -> io::Result<()> {
    use std::{io::Write as _, os::unix::fs::OpenOptionsExt as _};
    let _ = std::fs::remove_file(path);
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?
        .write_all(bytes)
}

/// Where a cluster node's election files live (keepalived's config, its FIFO, pid files):
/// `/run/pl/<instance>-<cookie>.cluster/`, removed with the instance's other state.
pub fn cluster_dir(instance: &str, cookie: u64) -> PathBuf {
    Path::new(STATE_ROOT).join(format!("{instance}-{cookie}.cluster"))
}

/// This network namespace's cookie: unique among all namespaces since boot.
pub fn netns_cookie() -> Result<u64, StateError> {
    let sock = std::net::UdpSocket::bind("0.0.0.0:0")
        .or_else(|_| std::net::UdpSocket::bind("[::]:0"))
        .map_err(|source| StateError::Cookie { source })?;
    let mut cookie = 0u64;
    let mut len = size_of::<u64>() as libc::socklen_t;
    // SAFETY: the buffer and its length describe `cookie`.
    let rc = unsafe {
        libc::getsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_NETNS_COOKIE,
            (&raw mut cookie).cast(),
            &raw mut len,
        )
    };
    if rc != 0 {
        return Err(StateError::Cookie {
            source: io::Error::last_os_error(),
        });
    }
    Ok(cookie)
}

fn bpffs_root() -> PathBuf {
    Path::new(STATE_ROOT).join("bpf")
}

fn is_bpffs(path: &Path) -> bool {
    nix::sys::statfs::statfs(path).is_ok_and(|s| s.filesystem_type().0 == BPFFS_MAGIC)
}

/// Mounts a bpffs at `/run/pl/bpf` unless one is there. Returns a warning if the mount was
/// made in a mount namespace of its own (`ip netns exec` makes one), where it dies with
/// the process: mount it once in the host's (any `pl lab up` or `pl run` there does).
pub fn ensure_bpffs() -> Result<Option<String>, StateError> {
    let root = bpffs_root();
    if is_bpffs(&root) {
        return private_dir(&root).map(|()| None);
    }
    private_dir(&root)?;
    nix::mount::mount(
        Some("bpf"),
        &root,
        Some("bpf"),
        nix::mount::MsFlags::empty(),
        Some("mode=0700"),
    )
    .map_err(|e| StateError::Io {
        path: root.clone(),
        what: "mounting a bpffs (needs root)",
        source: e.into(),
    })?;
    let own = std::fs::read_link("/proc/self/ns/mnt").ok();
    let parent = std::fs::read_link(format!(
        "/proc/{}/ns/mnt",
        std::os::unix::process::parent_id()
    ))
    .ok();
    Ok((own != parent).then(|| {
        format!(
            "mounted a bpffs on {} in a private mount namespace: state will not outlive this process; run `mount -t bpf bpf {}` in the host namespace to keep flows across restarts",
            root.display(),
            root.display()
        )
    }))
}

/// Makes `dir` (and its parents up to [`STATE_ROOT`]) exist as root's alone: mode 0700,
/// also where an older pl left it more open. Pins and the saved model hold every flow's
/// addresses, and a map fd lets its holder rewrite the data path.
fn private_dir(dir: &Path) -> Result<(), StateError> {
    use std::os::unix::fs::{DirBuilderExt as _, PermissionsExt as _};
    let io = |what, source: io::Error| {
        if source.kind() == io::ErrorKind::PermissionDenied {
            StateError::Permission {
                path: dir.to_owned(),
                what,
            }
        } else {
            StateError::Io {
                path: dir.to_owned(),
                what,
                source,
            }
        }
    };
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| io("creating the state directory", e))?;
    for d in dir.ancestors().take_while(|d| d.starts_with(STATE_ROOT)) {
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| io("making the state directory private (0700)", e))?;
    }
    Ok(())
}

impl State {
    /// Where `instance`'s state lives in the caller's network namespace; creates nothing.
    pub fn locate(instance: &str) -> Result<Self, StateError> {
        crate::instance::check(instance)?;
        Ok(Self::for_cookie(instance, netns_cookie()?))
    }

    fn for_cookie(instance: &str, cookie: u64) -> Self {
        let name = format!("{instance}-{cookie}");
        Self {
            dir: bpffs_root().join(&name),
            meta: Path::new(STATE_ROOT).join(format!("{name}.json")),
        }
    }

    /// As [`State::locate`], with the bpffs mounted and the directory made. The second
    /// value is a warning to log, if any.
    pub fn open(instance: &str) -> Result<(Self, Option<String>), StateError> {
        let state = Self::locate(instance)?;
        let warning = ensure_bpffs()?;
        private_dir(&state.dir)?;
        Ok((state, warning))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn map_pin(&self, map: &str) -> PathBuf {
        self.dir.join(map)
    }

    pub fn link_pin(&self, ifindex: u32) -> PathBuf {
        self.dir.join(format!("link-{ifindex}"))
    }

    /// True if anything of this instance is left here.
    pub fn exists(&self) -> bool {
        self.meta.exists() || self.dir.exists()
    }

    /// What the last run saved, if anything.
    pub fn saved(&self) -> Result<Option<Saved>, StateError> {
        let text = match std::fs::read_to_string(&self.meta) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(StateError::Io {
                    path: self.meta.clone(),
                    what: "reading",
                    source,
                });
            }
        };
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| StateError::Corrupt {
                path: self.meta.clone(),
                why: e.to_string(),
            })
    }

    /// Writes `saved` atomically (a crash leaves the old file or the new one).
    pub fn save(&self, saved: &Saved) -> Result<(), StateError> {
        let tmp = self.meta.with_extension("json.tmp");
        let text = serde_json::to_string(saved).expect("the saved state serializes");
        write_private(&tmp, text.as_bytes())
            .and_then(|()| std::fs::rename(&tmp, &self.meta))
            .map_err(|source| StateError::Io {
                path: self.meta.clone(),
                what: "writing",
                source,
            })
    }

    /// Checks that every pinned map has the shape this build uses (a map reused from a
    /// pin is not checked by the loader). With `takeover`, a counter map of another
    /// shape (a pl that counts more, or less) is unpinned, so this run starts its
    /// counters from zero and keeps the flows; the maps returned are those. Flow and
    /// neighbour maps must match, and without `takeover` (a read-only look) every map.
    pub fn check_maps(
        &self,
        flow_entries: u32,
        takeover: bool,
    ) -> Result<Vec<&'static str>, StateError> {
        let mut replaced = Vec::new();
        for map in KEPT_MAPS {
            let (ty, key, value, entries) = kept_shape(map, flow_entries);
            let path = self.map_pin(map);
            if !path.exists() {
                continue;
            }
            let info = MapInfo::from_pin(&path).map_err(|e| StateError::Corrupt {
                path: path.clone(),
                why: e.to_string(),
            })?;
            let found = (
                info.map_type().ok(),
                info.key_size() as usize,
                info.value_size() as usize,
                info.max_entries(),
            );
            let counters = [IFACE_STATS_MAP, ENDPOINT_STATS_MAP, TARGET_STATS_MAP];
            if found != (Some(ty), key, value, entries) && takeover && counters.contains(&map) {
                remove_if_there(&path)?;
                replaced.push(map);
                continue;
            }
            if found != (Some(ty), key, value, entries) {
                return Err(StateError::Incompatible {
                    map,
                    dir: self.dir.clone(),
                    found: format!(
                        "{:?} key {} B value {} B, {} entries",
                        found.0, found.1, found.2, found.3
                    ),
                    wanted: format!("{ty:?} key {key} B value {value} B, {entries} entries"),
                });
            }
        }
        Ok(replaced)
    }

    /// Unpins maps (the kernel frees them once no program uses them).
    pub fn unpin_maps(&self) -> Result<(), StateError> {
        for map in KEPT_MAPS.iter().chain([&TAILS_MAP]) {
            remove_if_there(&self.map_pin(map))?;
        }
        Ok(())
    }

    /// Removes everything: links first (which detaches the program), then maps and the
    /// saved model. Returns the interfaces that were detached.
    pub fn remove(&self) -> Result<Vec<Attached>, StateError> {
        let detached = self
            .saved()
            .ok()
            .flatten()
            .map(|s| s.interfaces)
            .unwrap_or_default();
        if self.dir.exists() {
            let entries = std::fs::read_dir(&self.dir).map_err(|source| StateError::Io {
                path: self.dir.clone(),
                what: "listing",
                source,
            })?;
            for entry in entries.flatten() {
                remove_if_there(&entry.path())?;
            }
            std::fs::remove_dir(&self.dir).map_err(|source| StateError::Io {
                path: self.dir.clone(),
                what: "removing",
                source,
            })?;
        }
        remove_if_there(&self.meta)?;
        remove_dir_if_there(&self.meta.with_extension("cluster"))?;
        Ok(detached)
    }
}

fn remove_if_there(path: &Path) -> Result<(), StateError> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(StateError::Io {
            path: path.to_owned(),
            what: "removing",
            source: e,
        }),
        _ => Ok(()),
    }
}

/// Removes the state of every instance in the network namespace with `cookie` (for
/// tearing a namespace down). Returns how many instances had state.
pub fn remove_netns(cookie: u64) -> Result<usize, StateError> {
    let suffix = format!("-{cookie}.json");
    let Ok(entries) = std::fs::read_dir(STATE_ROOT) else {
        return Ok(0);
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(instance) = name.strip_suffix(&suffix) {
            State::for_cookie(instance, cookie).remove()?;
            removed += 1;
        }
    }
    // A cluster node that died before saving leaves its election files only.
    if let Ok(entries) = std::fs::read_dir(STATE_ROOT) {
        let suffix = format!("-{cookie}.cluster");
        for entry in entries.flatten() {
            if entry.file_name().to_string_lossy().ends_with(&suffix) {
                remove_dir_if_there(&entry.path())?;
            }
        }
    }
    // A run that died before saving leaves a directory only.
    if let Ok(entries) = std::fs::read_dir(bpffs_root()) {
        let suffix = format!("-{cookie}");
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Some(instance) = name.strip_suffix(&suffix) {
                State::for_cookie(instance, cookie).remove()?;
            }
        }
    }
    Ok(removed)
}

/// Removes the directory at `path` and what it holds, if it is there.
fn remove_dir_if_there(path: &Path) -> Result<(), StateError> {
    match std::fs::remove_dir_all(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(StateError::Io {
            path: path.to_owned(),
            what: "removing",
            source: e,
        }),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kept_map_has_a_shape() {
        for map in KEPT_MAPS {
            let (_, key, value, _) = kept_shape(map, 2);
            assert!(key > 0 && value > 0, "{map}");
        }
    }

    /// The saved IPv4 size checks the IPv6 table too: a quarter of the entries, 128-byte
    /// slots, the counting element past them.
    #[test]
    fn the_kept_ipv6_flow_table_follows_the_ipv4_one() {
        assert_eq!(
            kept_shape(FLOWS6_MAP, 131_072),
            (MapType::Array, 4, 128, 2 * 32_768 + 1)
        );
        assert_eq!(kept_shape(FLOWS_MAP, 131_072).3, 2 * 131_072 + 1);
    }

    #[test]
    fn an_old_saved_state_still_loads() {
        let text = r#"{"pl_version":"0.1.0","mode":"skb","interfaces":[{"name":"veth0","ifindex":7,"slot":0}],"flow_entries":2048,"model":null}"#;
        let saved: Saved = serde_json::from_str(text).expect("an old state file parses");
        assert_eq!(saved.mode, Mode::Skb);
        assert_eq!(saved.interfaces[0].ifindex, 7);
        assert!(saved.revoked.is_empty());
        let native = text.replace("\"skb\"", "\"native\"");
        let saved: Saved = serde_json::from_str(&native).expect("parses");
        assert_eq!(saved.mode, Mode::Native);
        // Written back the same way, for an older pl to read.
        assert!(
            serde_json::to_string(&saved)
                .expect("serializes")
                .contains(r#""mode":"native""#)
        );
    }

    #[test]
    fn a_bad_instance_reads_as_before() {
        let e = State::locate("Bad").expect_err("refused");
        assert_eq!(
            e.to_string(),
            "instance name \"Bad\": use 1-64 characters from a-z, 0-9, '-', '_'"
        );
    }

    #[test]
    fn state_paths_are_per_instance_and_namespace() {
        let s = State::for_cookie("x", 7);
        assert_eq!(s.dir, Path::new("/run/pl/bpf/x-7"));
        assert_eq!(s.meta, Path::new("/run/pl/x-7.json"));
    }
}
