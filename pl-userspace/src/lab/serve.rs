//! `pl lab up --serve`: the provider's servers as a process of their own inside the lab's
//! provider namespace, so they outlive `pl lab up` and stop with `pl lab down` (which
//! stops every process in the lab's namespaces).

use std::{
    io::{BufRead as _, BufReader},
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    path::Path,
    process::Stdio,
    time::Duration,
};

use super::{Lab, LabError, netns, traffic::Servers};

/// The lab's two targets (one per zone), as `LAB_CONFIG` names them.
pub const TARGETS: [Ipv4Addr; 2] = [Ipv4Addr::new(10, 9, 0, 11), Ipv4Addr::new(10, 9, 0, 12)];

/// The same hosts' IPv6 addresses: the `ledger` service's targets.
pub const TARGETS6: [Ipv6Addr; 2] = [
    Ipv6Addr::new(0xfd00, 0x9, 0, 0, 0, 0, 0, 0x11),
    Ipv6Addr::new(0xfd00, 0x9, 0, 0, 0, 0, 0, 0x12),
];

/// Every address the lab's servers listen on: IPv4 then IPv6.
pub fn all_targets() -> [IpAddr; 4] {
    [
        IpAddr::V4(TARGETS[0]),
        IpAddr::V4(TARGETS[1]),
        IpAddr::V6(TARGETS6[0]),
        IpAddr::V6(TARGETS6[1]),
    ]
}

/// What `serve_forever` prints once every server listens.
const READY: &str = "serving";

impl Lab {
    /// Starts `exe lab serve` in the provider namespace, detached from this process, and
    /// waits (up to 10 s) until its servers listen.
    pub fn serve_detached(&self, exe: &Path) -> Result<(), LabError> {
        let ns = self.provider_ns();
        let io = |what: &str| {
            let what = what.to_owned();
            let prefix = self.prefix().to_owned();
            move |e: std::io::Error| LabError::Traffic {
                prefix,
                network: "prov".to_owned(),
                source: std::io::Error::new(e.kind(), format!("{what}: {e}")),
            }
        };
        let mut cmd = netns::exec(&ns, exe);
        cmd.args(["lab", "serve", "--prefix", self.prefix()])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        // Its own process group: a Ctrl-C meant for the shell's next command spares it.
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let mut child = cmd.spawn().map_err(io("starting the lab's servers"))?;
        let stdout = child.stdout.take().expect("stdout is piped");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        match rx.recv_timeout(Duration::from_secs(10)) {
            Ok(line) if line.trim() == READY => Ok(()),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                Err(io("the lab's servers")(std::io::Error::other(
                    "did not start listening within 10 s",
                )))
            }
        }
    }

    /// Runs the servers on the lab's targets (both families) until SIGTERM or SIGINT (`pl lab serve`).
    pub fn serve_forever(&self) -> Result<(), LabError> {
        use nix::sys::signal::{SigSet, Signal};
        let mut set = SigSet::empty();
        set.add(Signal::SIGTERM);
        set.add(Signal::SIGINT);
        // Blocked before the server threads start, so they inherit the mask and the
        // signal waits for `wait` below.
        set.thread_block().map_err(|e| self.serve_error(e.into()))?;
        let servers = Servers::start(&self.provider_ns(), &all_targets())
            .map_err(|e| self.serve_error(std::io::Error::other(e.to_string())))?;
        println!("{READY}");
        let _ = set.wait();
        drop(servers);
        Ok(())
    }

    fn provider_ns(&self) -> String {
        format!("{}prov", self.prefix())
    }

    fn serve_error(&self, source: std::io::Error) -> LabError {
        LabError::Traffic {
            prefix: self.prefix().to_owned(),
            network: "prov".to_owned(),
            source,
        }
    }
}
