//! The data plane's part of `pl status` and `pl endpoints`: interfaces and modes, the flow
//! table's use, target health per service, and every endpoint with its state.

use std::net::SocketAddr;

use super::Dataplane;
use crate::{
    flows,
    health::Health,
    status::{EndpointAddress, EndpointStatus, FlowTableStatus, InterfaceStatus, ServiceStatus},
};

/// What the data plane says for `pl status`.
#[derive(Debug)]
pub struct DataplaneStatus {
    pub interfaces: Vec<InterfaceStatus>,
    pub flow_table: Option<FlowTableStatus>,
    pub services: Vec<ServiceStatus>,
}

impl Dataplane {
    /// Interfaces, the flow table's use (`live`: flows as counted elsewhere) and services.
    pub fn status(&self, live: &flows::Counts) -> DataplaneStatus {
        let interfaces = self
            .ifaces
            .iter()
            .map(|i| InterfaceStatus {
                name: i.name.clone(),
                ifindex: i.ifindex,
                mode: self.mode.name().to_owned(),
            })
            .collect();
        let Some(d) = self.data.as_ref() else {
            return DataplaneStatus {
                interfaces,
                flow_table: None,
                services: Vec::new(),
            };
        };
        let m = &d.model;
        let resolved = |id: u32| {
            d.plan
                .targets
                .iter()
                .any(|(t, info)| *t == id && info.mac != [0; 6])
        };
        let services = m
            .services
            .iter()
            .zip(0u16..)
            .filter(|(s, _)| !s.removed)
            .map(|(s, sid)| ServiceStatus {
                name: s.name.clone(),
                network: m.networks[usize::from(s.network)].name.clone(),
                healthy_targets: s
                    .targets
                    .iter()
                    .filter(|t| {
                        resolved(t.id)
                            && d.health
                                .target(t.id)
                                .is_none_or(|h| h.health != Health::Unhealthy)
                    })
                    .count(),
                targets: s.targets.len(),
                failing_open: d.health.failing_open(sid),
            })
            .collect();
        DataplaneStatus {
            interfaces,
            // Both tables: flows of either family against the flows both hold.
            flow_table: Some(FlowTableStatus {
                used: live.flows(),
                size: u64::from(m.flow_table_size)
                    + u64::from(flows::flow6_entries(m.flow_table_size.saturating_mul(2)) / 2),
            }),
            services,
        }
    }

    /// Every endpoint of the running config, with its state and live flows (`live`).
    pub fn endpoints(&self, live: &flows::Counts) -> Vec<EndpointStatus> {
        let Some(d) = self.data.as_ref() else {
            return Vec::new();
        };
        let m = &d.model;
        m.endpoints
            .iter()
            .zip(0u16..)
            .filter(|(e, _)| !e.removed)
            .map(|(e, id)| {
                let service = &m.services[usize::from(e.service)];
                let addresses = e
                    .addrs
                    .iter()
                    .flat_map(|(ip, zone)| {
                        service.listeners.iter().map(move |l| EndpointAddress {
                            addr: SocketAddr::new(*ip, l.port),
                            protocol: flows::proto_name(l.proto).to_owned(),
                            zone: m.zones[usize::from(*zone)].clone(),
                        })
                    })
                    .collect();
                EndpointStatus {
                    name: e.name.clone(),
                    service: service.name.clone(),
                    network: m.networks[usize::from(e.network)].name.clone(),
                    addresses,
                    state: e.state,
                    active_flows: live.by_endpoint.get(&id).copied().unwrap_or(0),
                }
            })
            .collect()
    }
}

impl Dataplane {
    /// Live flows counted now (walks the flow table).
    pub fn count_flows(&self) -> flows::Counts {
        flows::count(&self.ebpf)
    }
}

impl Dataplane {
    /// The (service, zone) pairs where an endpoint address of the service leads to no
    /// healthy, resolved target (its own zone's, or any zone's with `cross_zone`): DNS
    /// leaves them out of regional answers while another zone is healthy.
    pub fn dead_zones(&self) -> crate::dns::DeadZones {
        let Some(d) = self.data.as_ref() else {
            return crate::dns::DeadZones::new();
        };
        let m = &d.model;
        // Resolved and not unhealthy, found once: this runs every second.
        let healthy: std::collections::HashSet<u32> = d
            .plan
            .targets
            .iter()
            .filter(|(id, info)| {
                info.mac != [0; 6]
                    && d.health
                        .target(*id)
                        .is_none_or(|h| h.health != Health::Unhealthy)
            })
            .map(|(id, _)| *id)
            .collect();
        let mut dead = crate::dns::DeadZones::new();
        for e in m.endpoints.iter().filter(|e| !e.removed) {
            let Some(s) = m.services.get(usize::from(e.service)) else {
                continue;
            };
            for (_, zone) in &e.addrs {
                let alive = s
                    .targets
                    .iter()
                    .any(|t| (s.cross_zone || t.zone == *zone) && healthy.contains(&t.id));
                if !alive {
                    dead.insert((e.service, *zone));
                }
            }
        }
        dead
    }
}
