//! Zones in a cluster: which this node serves (its addresses answered, its flows opened,
//! probes sent from its NLB addresses) and the gratuitous ARP that moves a zone's
//! addresses to this node.

use std::net::IpAddr;

use aya::maps::Array;
use pl_common::maps::LEASE_MAP;

use super::{Dataplane, DataplaneError, load};
use crate::{flows, model::Model, neigh::RawSender};

impl Dataplane {
    /// The running model; None in observe mode.
    pub fn model(&self) -> Option<&Model> {
        self.data.as_ref().map(|d| &d.model)
    }

    /// The flow table, mapped; None in observe mode.
    pub fn open_flows(&self) -> Option<flows::FlowTable> {
        self.data.as_ref().and_then(|_| flows::open(&self.ebpf))
    }

    /// The IPv6 flow table, as [`Self::open_flows`].
    pub fn open_flows6(&self) -> Option<flows::FlowTable6> {
        self.data.as_ref().and_then(|_| flows::open6(&self.ebpf))
    }

    /// Serves the zones in `mask` (a bit per zone index) from now on: the maps answer for
    /// their addresses only, probes go from their NLB addresses. Returns what changed.
    pub fn set_serving(&mut self, mask: u32) -> Result<Vec<String>, DataplaneError> {
        let Some(d) = self.data.as_mut() else {
            return Ok(Vec::new());
        };
        if d.model.serving == Some(mask) {
            return Ok(Vec::new());
        }
        let before = d.model.serving;
        d.model.serving = Some(mask);
        let mut log = match self.refresh_targets() {
            Ok(log) => log,
            Err(e) => {
                // Still serving what the maps hold: the next call tries again.
                if let Some(d) = self.data.as_mut() {
                    d.model.serving = before;
                }
                return Err(e);
            }
        };
        log.extend(self.probe_targets());
        Ok(log)
    }

    /// The MAC this node has for target address `addr`, if resolved.
    pub fn target_mac(&self, addr: IpAddr) -> Option<[u8; 6]> {
        let d = self.data.as_ref()?;
        d.plan
            .targets
            .iter()
            .find(|(id, t)| t.mac != [0; 6] && super::target_ip(&d.plan, *id, t) == addr)
            .map(|(_, t)| t.mac)
    }

    /// Renews this node's lease on its zones until `until_ns` (CLOCK_MONOTONIC): past it,
    /// if nobody renewed it, the program answers no ARP and opens no flow.
    pub fn renew_lease(&mut self, until_ns: u64) -> Result<(), DataplaneError> {
        let mut map: Array<_, u64> = load::map_mut(&mut self.ebpf, LEASE_MAP)?;
        map.set(0, until_ns, 0)
            .map_err(DataplaneError::map(LEASE_MAP))
    }

    /// Gratuitous ARP (a request for the address from the address) for every endpoint
    /// and NLB address of the zones in `mask`, on its network: consumers, routers and
    /// targets move their neighbour entries to this node at once. Returns the addresses
    /// announced and any send errors.
    pub fn announce(&self, mask: u32) -> (usize, Vec<String>) {
        let Some(d) = self.data.as_ref() else {
            return (0, Vec::new());
        };
        let m = &d.model;
        let zoned = |z: &u8| mask & (1 << z) != 0;
        let endpoints = m
            .endpoints
            .iter()
            .filter(|e| !e.removed)
            .flat_map(|e| e.addrs.iter().map(move |(ip, z)| (e.network, *ip, *z)));
        let nlbs = m
            .services
            .iter()
            .filter(|s| !s.removed)
            .flat_map(|s| s.nlbs.iter().map(move |(ip, z)| (s.network, *ip, *z)));
        let (mut sent, mut errors) = (0, Vec::new());
        // The resolver has senders on provider networks only; consumer networks get theirs
        // for the announcement.
        let mut opened = std::collections::HashMap::new();
        for (network, ip, _) in endpoints.chain(nlbs).filter(|(_, _, z)| zoned(z)) {
            let n = &m.networks[usize::from(network)];
            let sender = match d.resolver.sender(network) {
                Some(s) => s,
                None => match opened.entry(network) {
                    std::collections::hash_map::Entry::Occupied(o) => o.into_mut(),
                    std::collections::hash_map::Entry::Vacant(v) => {
                        match RawSender::open(n.ifindex) {
                            Ok(s) => v.insert(s),
                            Err(e) => {
                                errors.push(format!("gratuitous ARP on {}: {e}", n.interface));
                                continue;
                            }
                        }
                    }
                },
            };
            let (how, result) = match ip {
                IpAddr::V4(v4) => ("gratuitous ARP", sender.request(n.mac, v4, v4)),
                IpAddr::V6(v6) => ("unsolicited advertisement", sender.advertise(n.mac, v6)),
            };
            match result {
                Ok(()) => sent += 1,
                Err(e) => errors.push(format!("{how} for {ip}: {e}")),
            }
        }
        (sent, errors)
    }
}
