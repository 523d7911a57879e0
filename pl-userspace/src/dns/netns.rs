//! Where a network's DNS server lives: a macvlan on the network's interface, holding the
//! DNS addresses, inside a network namespace of its own with nothing else in it.
//!
//! Why this shape: the kernel's stack then answers ARP, neighbour discovery and TCP for
//! the address, and the forwarder's own namespace still holds no address on the
//! interface. Overlapping networks may use the same DNS address, each in its namespace.
//! The namespace is anonymous: the sockets bound in it (and the fd kept here) are all that
//! hold it, so it and its macvlan go when pl run does, even on a crash.

use std::{
    fs::File,
    net::{IpAddr, SocketAddr, TcpListener, UdpSocket},
    os::fd::{AsFd as _, AsRawFd as _, OwnedFd},
    process::Command,
    time::{Duration, Instant},
};

use nix::sched::{CloneFlags, setns, unshare};

/// The port DNS is served on.
pub const PORT: u16 = 53;
/// The macvlan's name inside its namespace.
pub const IFACE: &str = "dns0";

#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    #[error("network {network}: DNS namespace: {what}: {source}")]
    Namespace {
        network: String,
        what: &'static str,
        source: std::io::Error,
    },
    #[error("network {network}: `{command}` failed: {stderr}")]
    Command {
        network: String,
        command: String,
        stderr: String,
    },
    #[error("network {network}: dns_addresses: cannot bind {addr} ({proto}): {source}")]
    Bind {
        network: String,
        addr: SocketAddr,
        proto: &'static str,
        source: std::io::Error,
    },
}

/// A network's DNS namespace and the sockets bound in it.
#[derive(Debug)]
pub struct Namespace {
    /// Holds the namespace while the sockets are not yet (or no longer) open.
    pub fd: OwnedFd,
    pub udp: Vec<UdpSocket>,
    pub tcp: Vec<TcpListener>,
    pub mac: [u8; 6],
}

/// Makes network `network`'s DNS namespace: a macvlan of `interface` (in this thread's
/// namespace) with MAC `mac` holding `addrs`, and UDP and TCP sockets on port 53 of each.
/// On any error nothing is left behind (the namespace goes with its last fd).
/// `announce`: send gratuitous ARP and unsolicited advertisements when the link comes up,
/// so consumers holding another MAC for the address learn this one.
pub fn create(
    network: &str,
    interface: &str,
    addrs: &[IpAddr],
    mac: [u8; 6],
    announce: bool,
) -> Result<Namespace, NetnsError> {
    let (network, interface, addrs) = (network.to_owned(), interface.to_owned(), addrs.to_vec());
    // unshare and setns act on the calling thread: a thread of its own, which ends here.
    std::thread::spawn(move || build(&network, &interface, &addrs, mac, announce))
        .join()
        .unwrap_or_else(|_| {
            Err(NetnsError::Namespace {
                network: String::new(),
                what: "the set-up thread panicked",
                source: std::io::Error::other("panic"),
            })
        })
}

fn build(
    network: &str,
    interface: &str,
    addrs: &[IpAddr],
    mac: [u8; 6],
    announce: bool,
) -> Result<Namespace, NetnsError> {
    let io = |what: &'static str| {
        move |source: std::io::Error| NetnsError::Namespace {
            network: network.to_owned(),
            what,
            source,
        }
    };
    let nix_io = |what: &'static str| move |e: nix::Error| io(what)(std::io::Error::from(e));
    let home: OwnedFd = File::open("/proc/thread-self/ns/net")
        .map_err(io("opening this thread's namespace"))?
        .into();
    unshare(CloneFlags::CLONE_NEWNET).map_err(nix_io("unshare"))?;
    let fd: OwnedFd = File::open("/proc/thread-self/ns/net")
        .map_err(io("opening the new namespace"))?
        .into();
    // The macvlan is made from the interface's namespace, straight into the new one.
    setns(home.as_fd(), CloneFlags::CLONE_NEWNET).map_err(nix_io("setns (home)"))?;
    let ns_path = format!("/proc/{}/fd/{}", std::process::id(), fd.as_raw_fd());
    let mac_s = mac_str(mac);
    ip(
        network,
        &[
            "link", "add", IFACE, "link", interface, "address", &mac_s, "netns", &ns_path, "type",
            "macvlan", "mode", "private",
        ],
    )?;
    setns(fd.as_fd(), CloneFlags::CLONE_NEWNET).map_err(nix_io("setns (dns)"))?;
    // Addresses go on before the link comes up, so a replacement's gratuitous ARP and
    // unsolicited advertisements (arp_notify, ndisc_notify) carry them: a consumer that
    // knew the address at the older MAC learns the new one at once.
    let notify = if announce { "1" } else { "0" };
    // Nothing but the DNS address: no router advertisements, redirects or forwarding
    // (best effort: a kernel without IPv6 has no such keys).
    for (key, value) in [
        ("ipv4/conf/{i}/arp_notify", notify),
        ("ipv6/conf/{i}/ndisc_notify", notify),
        ("ipv4/conf/{i}/accept_redirects", "0"),
        ("ipv4/conf/{i}/forwarding", "0"),
        ("ipv6/conf/{i}/accept_ra", "0"),
        ("ipv6/conf/{i}/accept_redirects", "0"),
        ("ipv6/conf/{i}/forwarding", "0"),
    ] {
        let key = key.replace("{i}", IFACE);
        let _ = std::fs::write(format!("/proc/sys/net/{key}"), value);
    }
    // An answer to a source that never answers ARP (a spoofed one) waits in its
    // neighbour's queue, charged to the socket: few of them, given up on soon, so a
    // flood of such sources cannot hold the send buffer (and every answer) for long.
    for family in ["ipv4", "ipv6"] {
        for (key, value) in [
            ("unres_qlen", "2"),
            ("mcast_solicit", "2"),
            ("retrans_time_ms", "250"),
        ] {
            let _ = std::fs::write(format!("/proc/sys/net/{family}/neigh/{IFACE}/{key}"), value);
        }
    }
    ip(network, &["link", "set", IFACE, "addrgenmode", "none"])?;
    for a in addrs {
        let cidr = match a {
            IpAddr::V4(v4) => format!("{v4}/32"),
            IpAddr::V6(v6) => format!("{v6}/128"),
        };
        let mut args = vec!["addr", "add", cidr.as_str(), "dev", IFACE];
        if a.is_ipv6() {
            args.push("nodad");
        }
        ip(network, &args)?;
    }
    up(network)?;
    ip(network, &["link", "set", "lo", "up"])?;
    // Every consumer is on the link: answers go straight to the asker's MAC.
    if addrs.iter().any(IpAddr::is_ipv4) {
        ip(network, &["route", "add", "default", "dev", IFACE])?;
    }
    if addrs.iter().any(IpAddr::is_ipv6) {
        ip(network, &["-6", "route", "add", "default", "dev", IFACE])?;
    }
    let mut udp = Vec::new();
    let mut tcp = Vec::new();
    for a in addrs {
        let addr = SocketAddr::new(*a, PORT);
        let bind = |proto: &'static str| {
            move |source| NetnsError::Bind {
                network: network.to_owned(),
                addr,
                proto,
                source,
            }
        };
        let u = UdpSocket::bind(addr).map_err(bind("udp"))?;
        u.set_nonblocking(true).map_err(bind("udp"))?;
        // Room for a burst of answers; as root, past wmem_max. Best effort.
        let _ =
            nix::sys::socket::setsockopt(&u, nix::sys::socket::sockopt::SndBufForce, &(4 << 20));
        let _ =
            nix::sys::socket::setsockopt(&u, nix::sys::socket::sockopt::RcvBufForce, &(4 << 20));
        let t = TcpListener::bind(addr).map_err(bind("tcp"))?;
        t.set_nonblocking(true).map_err(bind("tcp"))?;
        udp.push(u);
        tcp.push(t);
    }
    Ok(Namespace { fd, udp, tcp, mac })
}

/// Brings the macvlan up. A MAC still held by a macvlan of a pl run that just stopped
/// (its namespace is torn down asynchronously) refuses the link for a moment: retried.
fn up(network: &str) -> Result<(), NetnsError> {
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        match ip(network, &["link", "set", IFACE, "up"]) {
            Ok(()) => return Ok(()),
            Err(NetnsError::Command { stderr, .. })
                if stderr.contains("in use") && Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(e) => return Err(e),
        }
    }
}

/// Runs `ip args` in this thread's namespace.
fn ip(network: &str, args: &[&str]) -> Result<(), NetnsError> {
    let command = format!("ip {}", args.join(" "));
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| NetnsError::Command {
            network: network.to_owned(),
            command: command.clone(),
            stderr: format!("cannot run ip (iproute2): {e}"),
        })?;
    if out.status.success() {
        return Ok(());
    }
    Err(NetnsError::Command {
        network: network.to_owned(),
        command,
        stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
    })
}

/// The macvlan's MAC: the same for the same instance, node and network across restarts
/// (a consumer's neighbour cache stays right), locally administered and unicast.
pub fn mac_for(instance: &str, node: Option<&str>, network: &str) -> [u8; 6] {
    let seed = format!("pl-dns\0{instance}\0{}\0{network}", node.unwrap_or(""));
    let h = seed.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    let b = h.to_be_bytes();
    [0x02, b[0], b[1], b[2], b[3], b[4]]
}

fn mac_str(m: [u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mac_is_stable_local_and_unicast_and_differs_by_network() {
        let a = mac_for("default", None, "acme");
        assert_eq!(a, mac_for("default", None, "acme"));
        assert_ne!(a, mac_for("default", None, "globex"));
        assert_ne!(a, mac_for("default", Some("n2"), "acme"));
        assert_eq!(a[0] & 0x03, 0x02, "locally administered, unicast");
    }
}
