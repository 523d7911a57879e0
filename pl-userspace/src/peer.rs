//! Who is on the other end of a control connection, and what they may ask.
//!
//! The control socket is abstract (no file, so no file permissions): every connection's
//! credentials are read from the kernel (`SO_PEERCRED`, `SO_PEERGROUPS`) and checked here.
//! Root, or a process with CAP_NET_ADMIN in pl run's user namespace, may do everything;
//! members of the read group may read; nobody else may do anything.

use std::{
    fmt, io,
    os::fd::{AsRawFd, FromRawFd as _, OwnedFd},
};

/// What a peer may do; ordered, so `have >= need` decides.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Access {
    None,
    /// `stats`, `flows`, `watch`.
    Read,
    /// Everything, `reload` included.
    Admin,
}

/// The credentials of a connected peer, as the kernel recorded them at `connect`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Peer {
    pub pid: i32,
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups (the primary `gid` may or may not be among them).
    pub groups: Vec<u32>,
    /// CAP_NET_ADMIN, effective, in pl run's own user namespace.
    pub net_admin: bool,
}

impl fmt::Display for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "uid {} (pid {})", self.uid, self.pid)
    }
}

impl Peer {
    /// Reads the credentials of the process at the other end of `sock`.
    pub fn of(sock: &impl AsRawFd) -> io::Result<Self> {
        let fd = sock.as_raw_fd();
        let cred: libc::ucred = getsockopt(fd, libc::SO_PEERCRED)?;
        let groups = peer_groups(fd)?;
        Ok(Self {
            pid: cred.pid,
            uid: cred.uid,
            gid: cred.gid,
            groups,
            net_admin: cred.uid != 0 && has_net_admin(fd, cred.pid),
        })
    }

    /// What this peer may do under `policy`.
    pub fn access(&self, policy: &Policy) -> Access {
        if self.uid == 0 || self.net_admin {
            Access::Admin
        } else if policy
            .read_group
            .is_some_and(|g| self.gid == g || self.groups.contains(&g))
        {
            Access::Read
        } else {
            Access::None
        }
    }
}

/// Who may read, beyond root.
#[derive(Clone, Debug, Default)]
pub struct Policy {
    /// `pl run --read-group`: its members may use `stats`, `flows` and `watch`.
    pub read_group: Option<u32>,
}

#[derive(Debug, thiserror::Error)]
#[error("--read-group {given}: no such group (give a group name from /etc/group or a numeric gid)")]
pub struct UnknownGroup {
    pub given: String,
}

/// `--read-group NAME|GID` to a gid.
pub fn group_id(given: &str) -> Result<u32, UnknownGroup> {
    if let Ok(gid) = given.parse::<u32>() {
        return Ok(gid);
    }
    match nix::unistd::Group::from_name(given) {
        Ok(Some(g)) => Ok(g.gid.as_raw()),
        _ => Err(UnknownGroup {
            given: given.to_owned(),
        }),
    }
}

fn getsockopt<T: Copy>(fd: i32, opt: libc::c_int) -> io::Result<T> {
    let mut val = std::mem::MaybeUninit::<T>::zeroed();
    let mut len = size_of::<T>() as libc::socklen_t;
    // SAFETY: the buffer and its length describe `val`; the kernel writes at most `len` bytes.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            opt,
            val.as_mut_ptr().cast(),
            &raw mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: zeroed is a valid value of the plain-data types this is used with, and the
    // kernel filled it.
    Ok(unsafe { val.assume_init() })
}

/// The peer's supplementary groups (`SO_PEERGROUPS`, recorded at connect).
fn peer_groups(fd: i32) -> io::Result<Vec<u32>> {
    let mut groups = vec![0u32; 64];
    loop {
        let mut len = (groups.len() * size_of::<u32>()) as libc::socklen_t;
        // SAFETY: the buffer and its length describe `groups`.
        let rc = unsafe {
            libc::getsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_PEERGROUPS,
                groups.as_mut_ptr().cast(),
                &raw mut len,
            )
        };
        let n = len as usize / size_of::<u32>();
        if rc == 0 {
            groups.truncate(n);
            return Ok(groups);
        }
        let err = io::Error::last_os_error();
        // ERANGE: the kernel says how much room it needs.
        if err.raw_os_error() == Some(libc::ERANGE) && n > groups.len() {
            groups.resize(n, 0);
            continue;
        }
        return Err(err);
    }
}

const CAP_NET_ADMIN: u32 = 12;

/// True if the peer process has CAP_NET_ADMIN effective in our user namespace.
///
/// Read from /proc through a pidfd of the peer (`SO_PEERPIDFD`): the status is trusted only
/// if the process is still alive after it was read, so a recycled pid cannot lend its
/// capabilities to a peer that has exited. Any doubt answers no.
fn has_net_admin(fd: i32, pid: i32) -> bool {
    let Ok(pidfd) = getsockopt::<libc::c_int>(fd, libc::SO_PEERPIDFD) else {
        return false;
    };
    if pidfd < 0 {
        return false;
    }
    // SAFETY: the kernel just gave us this fd; we own it from here.
    let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd) };
    let same_userns = std::fs::read_link(format!("/proc/{pid}/ns/user")).ok()
        == std::fs::read_link("/proc/self/ns/user").ok();
    let caps = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| cap_eff(&s));
    // SAFETY: signal 0 only checks that the process exists; the pidfd is valid.
    let alive = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            0,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    } == 0;
    alive && same_userns && caps.is_some_and(|c| c & (1 << CAP_NET_ADMIN) != 0)
}

/// The `CapEff:` mask of a /proc/PID/status text.
fn cap_eff(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(uid: u32, gid: u32, groups: &[u32], net_admin: bool) -> Peer {
        Peer {
            pid: 1,
            uid,
            gid,
            groups: groups.to_vec(),
            net_admin,
        }
    }

    #[test]
    fn root_and_net_admin_command_the_read_group_reads_others_nothing() {
        let none = Policy::default();
        let readers = Policy {
            read_group: Some(4242),
        };
        assert_eq!(peer(0, 0, &[], false).access(&none), Access::Admin);
        assert_eq!(peer(1000, 1000, &[], true).access(&none), Access::Admin);
        assert_eq!(peer(1000, 1000, &[], false).access(&none), Access::None);
        assert_eq!(peer(1000, 1000, &[4242], false).access(&none), Access::None);
        assert_eq!(
            peer(1000, 1000, &[4242], false).access(&readers),
            Access::Read
        );
        assert_eq!(peer(1000, 4242, &[], false).access(&readers), Access::Read);
        assert_eq!(peer(1000, 1000, &[7], false).access(&readers), Access::None);
    }

    #[test]
    fn cap_eff_is_read_from_proc_status() {
        let s = "Name:\tx\nCapInh:\t0000000000000000\nCapEff:\t0000000000001000\n";
        assert_eq!(cap_eff(s), Some(1 << CAP_NET_ADMIN));
        assert_eq!(cap_eff("Name:\tx\n"), None);
    }

    #[test]
    fn groups_are_names_or_numbers() {
        assert_eq!(group_id("4242").expect("numeric"), 4242);
        assert_eq!(group_id("root").expect("root exists"), 0);
        let e = group_id("no-such-group-pl").expect_err("unknown");
        assert!(
            e.to_string().contains("--read-group no-such-group-pl"),
            "{e}"
        );
    }

    #[test]
    fn a_socketpair_peer_is_this_process() {
        let (a, _b) = std::os::unix::net::UnixStream::pair().expect("socketpair");
        let p = Peer::of(&a).expect("peer credentials");
        assert_eq!(p.pid, std::process::id() as i32);
        // SAFETY: getuid has no preconditions.
        assert_eq!(p.uid, unsafe { libc::getuid() });
    }
}
