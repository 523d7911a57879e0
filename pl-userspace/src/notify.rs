//! systemd's service notification protocol (sd_notify(3)), spoken by `pl run`: one
//! datagram of `KEY=VALUE` lines to the unix socket named in `$NOTIFY_SOCKET` (a path, or
//! an abstract name written `@name`). Without the variable (not under systemd) every call
//! does nothing.

use std::{
    os::{
        linux::net::SocketAddrExt as _,
        unix::net::{SocketAddr, UnixDatagram},
    },
    path::Path,
    time::Duration,
};

#[derive(Debug, thiserror::Error)]
#[error("$NOTIFY_SOCKET {socket}: {source}")]
pub struct NotifyError {
    socket: String,
    source: std::io::Error,
}

/// Where notifications go; `None` inside when pl is not run by systemd.
#[derive(Debug, Default)]
pub struct Notifier {
    to: Option<(String, SocketAddr)>,
    /// How often to say `WATCHDOG=1`: half of `$WATCHDOG_USEC` when systemd asks this
    /// process for keep-alives (`WatchdogSec=`).
    watchdog: Option<Duration>,
}

impl Notifier {
    /// The notifier `$NOTIFY_SOCKET` names.
    pub fn from_env() -> Result<Self, NotifyError> {
        let mut n = match std::env::var("NOTIFY_SOCKET") {
            Ok(socket) if !socket.is_empty() => Self::to(&socket)?,
            _ => return Ok(Self::default()),
        };
        n.watchdog = watchdog_from(
            std::env::var("WATCHDOG_USEC").ok().as_deref(),
            std::env::var("WATCHDOG_PID").ok().as_deref(),
            std::process::id(),
        );
        Ok(n)
    }

    /// How often [`Notifier::alive`] is due, if systemd watches this process.
    pub fn watchdog_every(&self) -> Option<Duration> {
        self.watchdog
    }

    /// The run loop is turning: systemd restarts pl run if this stops coming (a restart
    /// keeps every flow).
    pub fn alive(&self) -> Result<(), NotifyError> {
        self.send("WATCHDOG=1")
    }

    /// A notifier sending to `socket` (a path, or `@name` for an abstract socket).
    pub fn to(socket: &str) -> Result<Self, NotifyError> {
        let addr = match socket.strip_prefix('@') {
            Some(name) => SocketAddr::from_abstract_name(name),
            None => SocketAddr::from_pathname(Path::new(socket)),
        }
        .map_err(|source| NotifyError {
            socket: socket.to_owned(),
            source,
        })?;
        Ok(Self {
            to: Some((socket.to_owned(), addr)),
            watchdog: None,
        })
    }

    /// Sends `state` (newline-separated `KEY=VALUE` lines) as one datagram.
    pub fn send(&self, state: &str) -> Result<(), NotifyError> {
        let Some((socket, addr)) = &self.to else {
            return Ok(());
        };
        let io = |source| NotifyError {
            socket: socket.clone(),
            source,
        };
        let sock = UnixDatagram::unbound().map_err(io)?;
        sock.send_to_addr(state.as_bytes(), addr).map_err(io)?;
        Ok(())
    }

    /// Started: the data plane is attached and the control socket listens.
    pub fn ready(&self, status: &str) -> Result<(), NotifyError> {
        self.send(&format!("READY=1\nSTATUS={}", one_line(status)))
    }

    /// A reload begins; [`Notifier::ready`] ends it (whether it applied or not).
    pub fn reloading(&self) -> Result<(), NotifyError> {
        self.send(&format!("RELOADING=1\nMONOTONIC_USEC={}", monotonic_usec()))
    }

    pub fn stopping(&self, status: &str) -> Result<(), NotifyError> {
        self.send(&format!("STOPPING=1\nSTATUS={}", one_line(status)))
    }
}

/// Half the watchdog timeout `usec`, when it is meant for `pid` (`WATCHDOG_PID` unset, or
/// ours).
fn watchdog_from(usec: Option<&str>, for_pid: Option<&str>, pid: u32) -> Option<Duration> {
    if for_pid.is_some_and(|p| p.parse() != Ok(pid)) {
        return None;
    }
    let usec: u64 = usec?.parse().ok().filter(|u| *u > 0)?;
    Some(Duration::from_micros(usec / 2))
}

/// A STATUS value ends at the first newline.
fn one_line(s: &str) -> String {
    s.replace('\n', " ")
}

/// CLOCK_MONOTONIC in microseconds, which systemd compares with its own to tell this
/// reload from an earlier one.
fn monotonic_usec() -> u64 {
    let now = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .expect("CLOCK_MONOTONIC is always readable");
    u64::try_from(now.tv_sec()).unwrap_or(0) * 1_000_000
        + u64::try_from(now.tv_nsec()).unwrap_or(0) / 1_000
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_watchdog_is_half_its_timeout_and_only_for_its_pid() {
        let half = Some(Duration::from_secs(15));
        assert_eq!(watchdog_from(Some("30000000"), None, 7), half);
        assert_eq!(watchdog_from(Some("30000000"), Some("7"), 7), half);
        assert_eq!(watchdog_from(Some("30000000"), Some("8"), 7), None);
        assert_eq!(watchdog_from(Some("0"), None, 7), None);
        assert_eq!(watchdog_from(Some("soon"), None, 7), None);
        assert_eq!(watchdog_from(None, None, 7), None);
    }

    fn received(sock: &UnixDatagram) -> String {
        let mut buf = [0u8; 512];
        let n = sock.recv(&mut buf).expect("a notification");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    #[test]
    fn abstract_and_path_sockets_get_one_datagram_each() {
        let name = format!("pl-notify-test-{}", std::process::id());
        let listener =
            UnixDatagram::bind_addr(&SocketAddr::from_abstract_name(&name).expect("name"))
                .expect("bind abstract");
        let n = Notifier::to(&format!("@{name}")).expect("notifier");
        n.ready("forwarding\non fw-acme").expect("send");
        assert_eq!(received(&listener), "READY=1\nSTATUS=forwarding on fw-acme");
        n.reloading().expect("send");
        let r = received(&listener);
        let usec: u64 = r
            .strip_prefix("RELOADING=1\nMONOTONIC_USEC=")
            .unwrap_or_else(|| panic!("{r:?}"))
            .parse()
            .expect("a number");
        assert!(usec > 0 && usec <= monotonic_usec(), "{r:?}");

        let dir = std::env::temp_dir().join(format!("pl-notify-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("notify");
        let listener = UnixDatagram::bind(&path).expect("bind path");
        Notifier::to(path.to_str().expect("utf-8"))
            .expect("notifier")
            .stopping("bye")
            .expect("send");
        assert_eq!(received(&listener), "STOPPING=1\nSTATUS=bye");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn without_a_socket_nothing_is_sent() {
        Notifier::default().ready("x").expect("a no-op");
    }
}
