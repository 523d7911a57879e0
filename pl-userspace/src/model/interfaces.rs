//! Interface lookup: the kernel's in production, a fixed set in tests.

use pl_common::cidr::Cidr;

use super::Mac;

/// Looks interfaces up; the live one asks the kernel, tests give a fixed set.
pub trait Interfaces {
    /// The interface's ifindex, MAC and MTU, or why not.
    fn resolve(&self, name: &str) -> Result<(u32, Mac, u32), String>;

    /// The IPv4 subnets on the interface (the management interface's, for node addresses).
    fn ipv4_nets(&self, name: &str) -> Result<Vec<Cidr>, String>;
}
/// The interfaces of the caller's network namespace.
pub struct LiveInterfaces;

impl Interfaces for LiveInterfaces {
    fn resolve(&self, name: &str) -> Result<(u32, Mac, u32), String> {
        let ifindex = nix::net::if_::if_nametoindex(name)
            .map_err(|_| "no such interface in this network namespace".to_owned())?;
        let addrs = nix::ifaddrs::getifaddrs().map_err(|e| format!("listing interfaces: {e}"))?;
        let mac = addrs
            .filter(|a| a.interface_name == name)
            .find_map(|a| {
                a.address
                    .and_then(|s| s.as_link_addr().and_then(nix::sys::socket::LinkAddr::addr))
            })
            .ok_or_else(|| "has no MAC address (not an Ethernet interface?)".to_owned())?;
        let mtu = mtu_of(name).map_err(|e| format!("reading its MTU: {e}"))?;
        Ok((ifindex, mac, mtu))
    }

    fn ipv4_nets(&self, name: &str) -> Result<Vec<Cidr>, String> {
        nix::net::if_::if_nametoindex(name)
            .map_err(|_| "no such interface in this network namespace".to_owned())?;
        let addrs = nix::ifaddrs::getifaddrs().map_err(|e| format!("listing interfaces: {e}"))?;
        Ok(addrs
            .filter(|a| a.interface_name == name)
            .filter_map(|a| {
                let ip = a.address?.as_sockaddr_in()?.ip();
                let mask = a.netmask?.as_sockaddr_in()?.ip();
                let len = u32::from(mask).leading_ones() as u8;
                Some(Cidr {
                    addr: std::net::Ipv4Addr::from(u32::from(ip) & Cidr::mask(len)),
                    len,
                })
            })
            .collect())
    }
}

/// The MTU of interface `name` in the caller's network namespace (SIOCGIFMTU: sysfs may
/// show another namespace's devices).
pub fn mtu_of(name: &str) -> std::io::Result<u32> {
    use std::os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd};
    // SAFETY: plain socket(2); the fd is owned at once.
    let raw = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if raw < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: raw is a fresh fd nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    // SAFETY: ifreq is plain data; zeroed is a valid start.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    let bytes = name.as_bytes();
    if bytes.len() >= req.ifr_name.len() {
        return Err(std::io::Error::from(std::io::ErrorKind::InvalidInput));
    }
    for (d, s) in req.ifr_name.iter_mut().zip(bytes) {
        *d = *s as libc::c_char;
    }
    // SAFETY: SIOCGIFMTU reads ifr_name and writes ifr_mtu inside `req`.
    if unsafe { libc::ioctl(fd.as_raw_fd(), libc::SIOCGIFMTU, &raw mut req) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: the union member SIOCGIFMTU fills.
    let mtu = unsafe { req.ifr_ifru.ifru_mtu };
    Ok(u32::try_from(mtu).unwrap_or(0))
}
