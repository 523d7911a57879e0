//! Target MAC resolution. pl has no address of its own on the provider network: it sends
//! ARP requests from an NLB address (the one of the target's zone, or of a zone this node
//! serves; an ARP probe from 0.0.0.0 where it serves none) out of the provider interface,
//! and the XDP program learns the replies into `PL_NEIGH`. An IPv6 target (or router) is
//! asked with a neighbour solicitation from an IPv6 NLB address, and the advertisements
//! are learned into `PL_NEIGH6`.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
};

use aya::{
    Ebpf,
    maps::{HashMap, MapData},
};
use pl_common::{
    endpoint::{AddrKey, AddrKey6},
    maps::{NEIGH_MAP, NEIGH6_MAP},
    proto::ETH_P_ARP,
};

use crate::{
    frame,
    model::{Mac, Model},
    plan::{Neighbors, be},
};

/// A raw socket that sends whole frames out of one interface (ARP requests, health
/// probes). Protocol 0: it receives nothing, so nothing queues up on it.
pub struct RawSender {
    fd: OwnedFd,
    ifindex: u32,
}

impl RawSender {
    pub fn open(ifindex: u32) -> std::io::Result<Self> {
        // SAFETY: plain socket(2); the fd is owned at once.
        let raw = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
        if raw < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: raw is a fresh, valid fd nothing else owns.
        Ok(Self {
            fd: unsafe { OwnedFd::from_raw_fd(raw) },
            ifindex,
        })
    }

    /// Broadcasts "who has `target`? tell `from`" with source MAC `mac`.
    pub fn request(&self, mac: Mac, from: Ipv4Addr, target: Ipv4Addr) -> std::io::Result<()> {
        self.send(
            &frame::arp_request(mac, from.octets(), target.octets()),
            ETH_P_ARP,
        )
    }

    /// Multicasts a neighbour solicitation for `target` from `from` with source MAC `mac`.
    pub fn solicit(&self, mac: Mac, from: Ipv6Addr, target: Ipv6Addr) -> std::io::Result<()> {
        self.send(
            &frame::neighbour_solicitation(mac, from.octets(), target.octets()),
            frame::ETH_P_IPV6,
        )
    }

    /// Announces that `addr` is at `mac` with an unsolicited advertisement to all nodes.
    pub fn advertise(&self, mac: Mac, addr: Ipv6Addr) -> std::io::Result<()> {
        self.send(
            &frame::unsolicited_advertisement(mac, addr.octets()),
            frame::ETH_P_IPV6,
        )
    }

    /// Sends `f`, a whole Ethernet frame of type `ether_type` (host order).
    pub fn send(&self, f: &[u8], ether_type: u16) -> std::io::Result<()> {
        // SAFETY: sockaddr_ll is plain data; zeroed is a valid start.
        let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        addr.sll_family = libc::AF_PACKET as u16;
        addr.sll_protocol = ether_type.to_be();
        addr.sll_ifindex = self.ifindex as i32;
        addr.sll_halen = 6;
        addr.sll_addr[..6].copy_from_slice(&f[..6]);
        // SAFETY: buffer and address are valid for the lengths given.
        let n = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                f.as_ptr().cast(),
                f.len(),
                0,
                (&raw const addr).cast(),
                size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        if n < 0 {
            Err(std::io::Error::last_os_error())
        } else {
            Ok(())
        }
    }
}

/// One ARP sender per provider network, and what to ask.
pub struct Resolver {
    senders: std::collections::HashMap<u16, RawSender>,
}

impl Resolver {
    pub fn new(model: &Model) -> std::io::Result<Self> {
        let mut senders = std::collections::HashMap::new();
        for s in model.services.iter().filter(|s| !s.removed) {
            if let std::collections::hash_map::Entry::Vacant(v) = senders.entry(s.network) {
                v.insert(RawSender::open(
                    model.networks[usize::from(s.network)].ifindex,
                )?);
            }
        }
        Ok(Self { senders })
    }

    /// One with no senders, for tests.
    #[cfg(test)]
    pub fn empty() -> Self {
        Self {
            senders: std::collections::HashMap::new(),
        }
    }

    /// The sender out of provider network `network`.
    pub fn sender(&self, network: u16) -> Option<&RawSender> {
        self.senders.get(&network)
    }

    /// Sends one request for every target, or for its router if a route sends it to one
    /// (unresolved ones to resolve, resolved ones to notice a changed MAC). Errors are per target and do not stop the others.
    pub fn probe(&self, model: &Model) -> Vec<String> {
        let mut errors = Vec::new();
        let mut asked = std::collections::HashSet::new();
        for s in model.services.iter().filter(|s| !s.removed) {
            let Some(sender) = self.senders.get(&s.network) else {
                continue;
            };
            let mac = model.networks[usize::from(s.network)].mac;
            for t in &s.targets {
                // A router serving many targets is asked once a round.
                if !asked.insert((s.network, t.hop())) {
                    continue;
                }
                let (how, from, sent) = match (t.hop(), model.probe_from(s, t.zone, t.ip)) {
                    (IpAddr::V4(hop), nlb) => {
                        // A node serving none of the service's zones asks with an ARP
                        // probe (sender 0.0.0.0): answered, and nobody's cache learns
                        // anything.
                        let nlb = match nlb {
                            Some(IpAddr::V4(v4)) => v4,
                            _ => Ipv4Addr::UNSPECIFIED,
                        };
                        ("ARP", IpAddr::V4(nlb), sender.request(mac, nlb, hop))
                    }
                    // A solicitation from `::` is duplicate address detection, not a
                    // question the target answers to us: with no IPv6 NLB address this
                    // node serves, it waits.
                    (IpAddr::V6(hop), Some(IpAddr::V6(nlb))) => (
                        "neighbour solicitation",
                        IpAddr::V6(nlb),
                        sender.solicit(mac, nlb, hop),
                    ),
                    (IpAddr::V6(_), _) => continue,
                };
                if let Err(e) = sent {
                    errors.push(match t.via {
                        Some(via) => format!(
                            "{how} for router {via} (of target {}) from {from}: {e}",
                            t.ip
                        ),
                        None => format!("{how} for target {} from {from}: {e}", t.ip),
                    });
                }
            }
        }
        errors
    }
}

/// The MACs the XDP program has learned for the targets of `model` (their routers' for
/// routed ones), by (network, address asked): IPv4 ones from `PL_NEIGH`, IPv6 ones from
/// `PL_NEIGH6` (none from an object that lacks it).
pub fn learned(ebpf: &Ebpf, model: &Model) -> Neighbors {
    let v4 = ebpf
        .map(NEIGH_MAP)
        .and_then(|m| HashMap::<&MapData, AddrKey, [u8; 8]>::try_from(m).ok());
    let v6 = ebpf
        .map(NEIGH6_MAP)
        .and_then(|m| HashMap::<&MapData, AddrKey6, [u8; 8]>::try_from(m).ok());
    let mut out = Neighbors::new();
    for s in model.services.iter().filter(|s| !s.removed) {
        for t in &s.targets {
            let got = match t.hop() {
                IpAddr::V4(hop) => v4.as_ref().and_then(|m| {
                    let key = AddrKey {
                        addr_be: be(hop),
                        network: s.network,
                        _pad: 0,
                    };
                    m.get(&key, 0).ok()
                }),
                IpAddr::V6(hop) => v6
                    .as_ref()
                    .and_then(|m| m.get(&AddrKey6::new(hop.octets(), s.network), 0).ok()),
            };
            if let Some(v) = got {
                let mut mac = [0u8; 6];
                mac.copy_from_slice(&v[..6]);
                out.insert((s.network, t.hop()), mac);
            }
        }
    }
    out
}
