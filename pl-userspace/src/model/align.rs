//! A reload's model, re-numbered to the running one's ids.

use std::net::IpAddr;

use pl_common::{
    maps::{MAX_ENDPOINTS, MAX_NETWORKS, MAX_SERVICES, MAX_TARGETS},
    service::MAX_ZONES,
};

use super::{Endpoint, Model, Network, Service};

/// Why a reload's model cannot take the running one's ids: the running maps would not fit
/// it, or it changes what a live id means.
#[derive(Debug, thiserror::Error)]
pub enum AlignError {
    #[error("zones used since pl run started exceed {max}: restart pl run", max = MAX_ZONES)]
    TooManyZones,
    #[error(
        "network {network:?}: its interface cannot change while running (remove the network, reload, add it back)"
    )]
    InterfaceChanged { network: String },
    #[error(
        "networks, services, endpoints or targets added since pl run started exceed the map sizes: restart pl run"
    )]
    MapsFull,
}

impl Model {
    /// Re-numbers this (new) model so that everything the running model `prev` has keeps its
    /// index: names that stay keep their ids, removed ones become tombstones (disabled, not
    /// reused while pl runs), new ones are appended; target ids likewise by (service, address).
    /// Flows and counters refer to these ids, so a reload must not shift them.
    pub fn align(self, prev: &Model) -> Result<Model, AlignError> {
        let (zones, zmap) = align_zones(&prev.zones, &self.zones)?;
        let (networks, nmap) = align_vec(
            &prev.networks,
            self.networks,
            |n| &n.name,
            |n| Network {
                removed: true,
                ..n.clone()
            },
        );
        for (new, old) in networks.iter().zip(&prev.networks) {
            if !new.removed && !old.removed && new.ifindex != old.ifindex {
                return Err(AlignError::InterfaceChanged {
                    network: new.name.clone(),
                });
            }
        }
        let ids = Ids { zmap, nmap };
        let mut next_target = prev.next_target;
        let (services, smap) = align_services(prev, self.services, &ids, &mut next_target);
        let endpoints = align_endpoints(prev, self.endpoints, &ids, &smap);
        let mut cluster = self.cluster;
        for n in cluster.iter_mut().flat_map(|c| c.nodes.iter_mut()) {
            n.zones.iter_mut().for_each(|z| *z = ids.zone(*z));
            n.backup_zones.iter_mut().for_each(|z| *z = ids.zone(*z));
        }
        if networks.len() > MAX_NETWORKS as usize
            || services.len() > MAX_SERVICES as usize
            || endpoints.len() > MAX_ENDPOINTS as usize
            || next_target > MAX_TARGETS
        {
            return Err(AlignError::MapsFull);
        }
        Ok(Model {
            networks,
            services,
            endpoints,
            zones,
            flow_table_size: self.flow_table_size,
            settings: self.settings,
            next_target,
            // Ownership is the election's, not the config's: a reload keeps it.
            serving: cluster.as_ref().and(prev.serving.or(Some(0))),
            cluster,
            dns: self.dns,
        })
    }
}

/// Where the new model's zone and network indexes went.
struct Ids {
    zmap: Vec<u8>,
    nmap: Vec<u16>,
}

impl Ids {
    fn zone(&self, i: u8) -> u8 {
        self.zmap[usize::from(i)]
    }

    fn network(&self, i: u16) -> u16 {
        self.nmap[usize::from(i)]
    }
}

/// Zones: keep the running indexes, append new names.
fn align_zones(prev: &[String], new: &[String]) -> Result<(Vec<String>, Vec<u8>), AlignError> {
    let mut zones = prev.to_vec();
    let mut zmap = Vec::new();
    for z in new {
        let i = zones.iter().position(|p| p == z).unwrap_or_else(|| {
            zones.push(z.clone());
            zones.len() - 1
        });
        zmap.push(i as u8);
    }
    if zones.len() > MAX_ZONES {
        return Err(AlignError::TooManyZones);
    }
    Ok((zones, zmap))
}

/// Services at their running indexes; a target keeps its id while its service lists its
/// address, new ones take ids from `next_target`.
fn align_services(
    prev: &Model,
    new: Vec<Service>,
    ids: &Ids,
    next_target: &mut u32,
) -> (Vec<Service>, Vec<u16>) {
    let prev_target = |svc: &str, ip: IpAddr| {
        prev.services
            .iter()
            .filter(|s| s.name == svc)
            .flat_map(|s| s.targets.iter())
            .find(|t| t.ip == ip)
            .map(|t| t.id)
    };
    let services_new: Vec<Service> = new
        .into_iter()
        .map(|mut s| {
            s.network = ids.network(s.network);
            s.nlbs
                .iter_mut()
                .for_each(|(_, zone)| *zone = ids.zone(*zone));
            for t in &mut s.targets {
                t.zone = ids.zone(t.zone);
                t.id = prev_target(&s.name, t.ip).unwrap_or_else(|| {
                    *next_target += 1;
                    *next_target - 1
                });
            }
            s
        })
        .collect();
    align_vec(
        &prev.services,
        services_new,
        |s| &s.name,
        |s| Service {
            removed: true,
            targets: Vec::new(),
            ..s.clone()
        },
    )
}

/// Endpoints at their running indexes, pointing at the aligned services (`smap`).
fn align_endpoints(prev: &Model, new: Vec<Endpoint>, ids: &Ids, smap: &[u16]) -> Vec<Endpoint> {
    let endpoints_new: Vec<Endpoint> = new
        .into_iter()
        .map(|mut e| {
            e.service = smap[usize::from(e.service)];
            e.network = ids.network(e.network);
            e.addrs
                .iter_mut()
                .for_each(|(_, zone)| *zone = ids.zone(*zone));
            e
        })
        .collect();
    align_vec(
        &prev.endpoints,
        endpoints_new,
        |e| &e.name,
        |e| Endpoint {
            removed: true,
            ..e.clone()
        },
    )
    .0
}

/// `prev`'s entries at their indexes (tombstoned with `tomb` if gone from `new`), then the
/// entries new in `new`; and where each of `new`'s entries went.
fn align_vec<T>(
    prev: &[T],
    new: Vec<T>,
    name: impl Fn(&T) -> &String,
    tomb: impl Fn(&T) -> T,
) -> (Vec<T>, Vec<u16>) {
    let mut out: Vec<T> = prev.iter().map(&tomb).collect();
    let mut map = Vec::with_capacity(new.len());
    for item in new {
        match prev.iter().position(|p| name(p) == name(&item)) {
            Some(i) => {
                out[i] = item;
                map.push(i as u16);
            }
            None => {
                map.push(out.len() as u16);
                out.push(item);
            }
        }
    }
    (out, map)
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};

    use crate::model::testing::{EXAMPLE, build};

    #[test]
    fn align_keeps_ids_of_what_stays_and_tombstones_what_goes() {
        let prev = build(EXAMPLE).unwrap_or_else(|e| panic!("{e}"));
        // globex-billing removed, acme-extra added, target .12 swapped for .13, a zone added.
        let mut text = EXAMPLE
            .replace(
                "[[endpoint]]\nname = \"globex-billing\"",
                "[[endpoint]]\nname = \"acme-extra\"",
            )
            .replace(
                "network = \"globex\"\naddresses",
                "network = \"acme\"\naddresses",
            )
            .replace(
                "{ ip = \"10.9.0.12\", zone = \"z2\" }",
                "{ ip = \"10.9.0.13\", zone = \"z2\" }",
            )
            .replace(
                "accepted_endpoints = [\"acme-billing\", \"globex-billing\"]",
                "accepted_endpoints = [\"acme-billing\", \"acme-extra\"]",
            );
        // The last endpoint (now acme-extra) gets an address of its own.
        let last = text.rfind("addresses = [").expect("an endpoint");
        text.replace_range(
            last..,
            "addresses = [{ ip = \"10.0.0.102\", zone = \"z1\" }]\n",
        );
        let new = build(&text).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            new.endpoints[1].name, "acme-extra",
            "test config did not change as meant"
        );
        let a = new.align(&prev).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(a.endpoints.len(), 3);
        assert_eq!(
            (a.endpoints[0].name.as_str(), a.endpoints[0].removed),
            ("acme-billing", false)
        );
        assert_eq!(
            (a.endpoints[1].name.as_str(), a.endpoints[1].removed),
            ("globex-billing", true),
            "a removed endpoint keeps its id as a tombstone"
        );
        assert_eq!(
            (a.endpoints[2].name.as_str(), a.endpoints[2].removed),
            ("acme-extra", false),
            "a new endpoint is appended"
        );
        let ids: Vec<(IpAddr, u32)> = a.services[0].targets.iter().map(|t| (t.ip, t.id)).collect();
        assert_eq!(
            ids,
            vec![
                (IpAddr::V4(Ipv4Addr::new(10, 9, 0, 11)), 0),
                (IpAddr::V4(Ipv4Addr::new(10, 9, 0, 13)), 2)
            ],
            "kept target keeps id 0; new one gets a fresh id"
        );
        assert_eq!(a.next_target, 3);
        assert_eq!(a.zones, prev.zones);
        // Changing a live network's interface is refused.
        let moved = build(&EXAMPLE.replace("interface = \"fw-prov\"", "interface = \"fw-acme2\""))
            .map(|_| ())
            .expect_err("fw-acme2 does not exist");
        assert!(moved.to_string().contains("fw-acme2"));
    }
}
