//! The election: keepalived (VRRP v3) over the management interface, one VRRP instance
//! per zone this node may serve. pl writes its config from `pl.toml`, runs it as a child
//! (killed with pl: `PR_SET_PDEATHSIG`), and reads its state changes from a FIFO.
//!
//! Priorities make the rule: a zone's primary 200, its backups 150, 149, ... in file order,
//! so the first live backup wins. Unicast adverts to the zone's other candidates (no
//! multicast needed on the management network). A recovered primary waits `failback_s`
//! (`preempt_delay`) before it takes its zone back, so it first hears the zone's flows.
//! VRRP wants an address to move: each instance moves a /32 on `lo` (127.77.0.<zone+1>)
//! that nothing uses; the zone's real addresses are answered by the XDP program.

use std::{
    fmt::Write as _,
    path::{Path, PathBuf},
};

use tokio::{
    io::{AsyncBufReadExt as _, BufReader, Lines},
    net::unix::pipe,
    process::{Child, Command},
};

use crate::model::{Cluster, Model};

/// Why keepalived could not be started.
#[derive(Debug, thiserror::Error)]
pub enum KeepalivedError {
    #[error("keepalived: {what} {}", path.display())]
    Files {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "cannot start keepalived (the cluster's election engine; install the `keepalived` package)"
    )]
    Spawn {
        #[source]
        source: std::io::Error,
    },
}

/// Fails as [`Keepalived::start`] would if keepalived is not installed (found on `PATH`), so
/// `pl run` refuses before it attaches anything.
pub fn installed() -> Result<(), KeepalivedError> {
    let found = std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path).any(|d| {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::metadata(d.join("keepalived"))
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
    });
    if found {
        Ok(())
    } else {
        Err(KeepalivedError::Spawn {
            source: std::io::Error::from(std::io::ErrorKind::NotFound),
        })
    }
}

/// VRRP router ids: 200 + zone index, so a LAN's other VRRP users keep the low ids.
const VRID_BASE: u8 = 200;
const PRIMARY: u8 = 200;
const FIRST_BACKUP: u8 = 150;

/// A zone's state as keepalived reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VrrpState {
    Master,
    Backup,
    Fault,
    Stop,
}

/// keepalived's config for node `me`: an instance per zone it is a candidate for.
pub fn config(model: &Model, me: usize, fifo: &Path) -> String {
    let c = model.cluster.as_ref().expect("a cluster model");
    let node = &c.nodes[me];
    // Detection takes about 3 adverts: a quarter of takeover_s leaves room to announce.
    let advert = f64::from(c.takeover_s * 100 / 4).max(5.0) / 100.0;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "# Written by pl run from its config; rewritten at every start.\nglobal_defs {{\n  router_id pl-{}\n  vrrp_version 3\n  notify_fifo {}\n}}",
        node.name,
        fifo.display()
    );
    for (z, name) in model.zones.iter().enumerate() {
        let z = z as u8;
        let Some(priority) = priority(c, z, me) else {
            continue;
        };
        let peers: Vec<String> = c
            .candidates(z)
            .filter(|(i, _)| *i != me)
            .map(|(_, n)| format!("    {}", n.address))
            .collect();
        let _ = writeln!(
            s,
            "vrrp_instance {name} {{\n  state BACKUP\n  interface {}\n  virtual_router_id {}\n  priority {priority}\n  advert_int {advert:.2}\n  preempt_delay {}\n  unicast_src_ip {}\n  check_unicast_src\n  unicast_peer {{\n{}\n  }}\n  virtual_ipaddress {{\n    127.77.0.{}/32 dev lo\n  }}\n}}",
            c.interface,
            VRID_BASE + z,
            c.failback_s,
            node.address,
            peers.join("\n"),
            u16::from(z) + 1,
        );
    }
    s
}

/// Node `me`'s VRRP priority for `zone`, None if it may not serve it.
fn priority(c: &Cluster, zone: u8, me: usize) -> Option<u8> {
    c.candidates(zone)
        .position(|(i, _)| i == me)
        .map(|rank| match rank {
            0 if c.nodes[me].zones.contains(&zone) => PRIMARY,
            r => FIRST_BACKUP.saturating_sub(r as u8 - 1),
        })
}

/// Makes every file in `dir` readable by root only; true once both pid files were there.
pub fn tighten(dir: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    let Ok(entries) = std::fs::read_dir(dir) else {
        return false;
    };
    let mut pids = 0;
    for e in entries.flatten() {
        let _ = std::fs::set_permissions(e.path(), std::fs::Permissions::from_mode(0o600));
        pids += usize::from(e.file_name().to_string_lossy().ends_with(".pid"));
    }
    pids >= 2
}

/// `INSTANCE "z1" MASTER 200` -> (zone name, state); None for other lines.
pub fn parse_line(line: &str) -> Option<(String, VrrpState)> {
    let mut it = line.split_whitespace();
    if it.next()? != "INSTANCE" {
        return None;
    }
    let name = it.next()?.trim_matches('"').to_owned();
    let state = match it.next()? {
        "MASTER" => VrrpState::Master,
        "BACKUP" => VrrpState::Backup,
        "FAULT" => VrrpState::Fault,
        "STOP" | "DELETED" => VrrpState::Stop,
        _ => return None,
    };
    Some((name, state))
}

/// keepalived running as pl's child, and the lines it writes to its FIFO.
pub struct Keepalived {
    child: Child,
    lines: Lines<BufReader<pipe::Receiver>>,
}

impl Keepalived {
    /// Writes the config into `dir` (root's only) and starts keepalived on it.
    pub fn start(model: &Model, me: usize, dir: &Path) -> Result<Self, KeepalivedError> {
        let files = |what, path: &Path| {
            let path = path.to_owned();
            move |source| KeepalivedError::Files { what, path, source }
        };
        std::fs::create_dir_all(dir).map_err(files("cannot create", dir))?;
        let (conf, fifo) = (dir.join("keepalived.conf"), dir.join("events.fifo"));
        let _ = std::fs::remove_file(&fifo);
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600))
            .map_err(|e| files("cannot make the FIFO", &fifo)(e.into()))?;
        std::fs::write(&conf, config(model, me, &fifo)).map_err(files("cannot write", &conf))?;
        // Read-write, so the FIFO never reads as closed while keepalived restarts.
        let rx = pipe::OpenOptions::new()
            .read_write(true)
            .open_receiver(&fifo)
            .map_err(files("cannot open the FIFO", &fifo))?;
        let mut cmd = Command::new("keepalived");
        // Its pid files are root's alone, as the rest of pl's state.
        cmd.args([
            "--dont-fork",
            "--vrrp",
            "--log-console",
            "--no-syslog",
            "--umask=077",
        ])
        .arg("--use-file")
        .arg(&conf)
        .arg("--pid")
        .arg(dir.join("keepalived.pid"))
        .arg("--vrrp_pid")
        .arg(dir.join("vrrp.pid"))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::inherit())
        .kill_on_drop(true);
        // SAFETY: prctl in the child before exec, async-signal-safe.
        unsafe {
            cmd.pre_exec(|| {
                // keepalived dies with pl, so a dead pl never holds a zone.
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd
            .spawn()
            .map_err(|source| KeepalivedError::Spawn { source })?;
        Ok(Self {
            child,
            lines: BufReader::new(rx).lines(),
        })
    }

    /// Its FIFO's lines and the process, to wait on both.
    pub fn parts(&mut self) -> (&mut Lines<BufReader<pipe::Receiver>>, &mut Child) {
        (&mut self.lines, &mut self.child)
    }

    /// Stops keepalived: its last adverts give the zones up at once (priority 0).
    pub async fn stop(mut self) {
        if let Some(pid) = self.child.id() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
        let _ = tokio::time::timeout(std::time::Duration::from_secs(3), self.child.wait()).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::testing::{EXAMPLE, build};

    const NODES: &str = "\n[cluster]\ninterface = \"mgmt0\"\nsecret_file = \"/etc/pl/cluster.key\"\n\n[[node]]\nname = \"fw-a\"\naddress = \"192.168.100.1\"\nzones = [\"z1\"]\nbackup_zones = [\"z2\"]\n\n[[node]]\nname = \"fw-b\"\naddress = \"192.168.100.2\"\nzones = [\"z2\"]\nbackup_zones = [\"z1\"]\n\n[[node]]\nname = \"fw-c\"\naddress = \"192.168.100.3\"\nbackup_zones = [\"z1\"]\n";

    #[test]
    fn each_node_runs_an_instance_per_zone_it_may_serve() {
        let m = build(&format!("{EXAMPLE}{NODES}")).unwrap_or_else(|e| panic!("{e}"));
        let a = config(&m, 0, Path::new("/run/x/fifo"));
        assert!(a.contains("vrrp_instance z1 {"), "{a}");
        assert!(
            a.contains("priority 200") && a.contains("priority 150"),
            "{a}"
        );
        assert!(a.contains("advert_int 0.75"), "{a}");
        assert!(a.contains("preempt_delay 10"), "{a}");
        assert!(a.contains("notify_fifo /run/x/fifo"), "{a}");
        let c = config(&m, 2, Path::new("/f"));
        assert!(
            c.contains("vrrp_instance z1") && !c.contains("vrrp_instance z2"),
            "{c}"
        );
        assert!(c.contains("priority 149"), "second backup of z1: {c}");
        assert!(
            c.contains("192.168.100.1") && c.contains("192.168.100.2"),
            "{c}"
        );
    }

    #[test]
    fn fifo_lines_are_read() {
        assert_eq!(
            parse_line("INSTANCE \"z1\" MASTER 200"),
            Some(("z1".to_owned(), VrrpState::Master))
        );
        assert_eq!(
            parse_line("INSTANCE \"z2\" BACKUP 150").map(|l| l.1),
            Some(VrrpState::Backup)
        );
        assert_eq!(parse_line("GROUP \"g\" MASTER"), None);
    }
}
