//! Who is on the other end of a control connection, and what they may ask.
//!
//! The control socket is abstract (no file, so no file permissions): every connection's
//! credentials are read from the kernel (`SO_PEERCRED`, `SO_PEERGROUPS`) and checked here.
//! Root may do everything; members of the read group may read; nobody else may do anything.
//!
//! Only what the kernel recorded at `connect` counts. Capabilities are not recorded there,
//! and reading them later from /proc races with the peer: it can connect, send a request
//! and then exec a setuid or file-capability program (or enter a user namespace) before
//! they are read. So CAP_NET_ADMIN without uid 0 grants nothing.

use std::{fmt, io, os::fd::AsRawFd};

/// What a peer may do; ordered, so `have >= need` decides.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Access {
    None,
    /// `stats`, `flows`, `watch`, `status`, `endpoints`.
    Read,
    /// Everything, `reload` (and so `pl accept`/`pl reject`) included.
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
        })
    }

    /// What this peer may do under `policy`.
    pub fn access(&self, policy: &Policy) -> Access {
        if self.uid == 0 {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(uid: u32, gid: u32, groups: &[u32]) -> Peer {
        Peer {
            pid: 1,
            uid,
            gid,
            groups: groups.to_vec(),
        }
    }

    #[test]
    fn root_commands_the_read_group_reads_others_nothing() {
        let none = Policy::default();
        let readers = Policy {
            read_group: Some(4242),
        };
        assert_eq!(peer(0, 0, &[]).access(&none), Access::Admin);
        assert_eq!(peer(1000, 1000, &[]).access(&none), Access::None);
        assert_eq!(peer(1000, 1000, &[4242]).access(&none), Access::None);
        assert_eq!(peer(1000, 1000, &[4242]).access(&readers), Access::Read);
        assert_eq!(peer(1000, 4242, &[]).access(&readers), Access::Read);
        assert_eq!(peer(1000, 1000, &[7]).access(&readers), Access::None);
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
