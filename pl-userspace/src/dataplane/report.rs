//! What the maps hold, with the model's names: the start-up summary, counters, flows and
//! flow events, and the line a reload logs.

use std::net::{IpAddr, SocketAddr};

use pl_common::{
    event::{EVENT_OPEN, Event},
    maps::TARGET_STATS_MAP,
    stats::EndpointCounter,
};

use super::{
    DataPath, Dataplane, DataplaneError,
    load::{endpoint_stats, iface_stats, sum_per_cpu},
};
use crate::{
    flows::{self, FlowReport, WatchEvent},
    model::Model,
    stats::{EndpointReport, FlowTableReport, IfaceReport, SnatReport, StatsReport, TargetReport},
};

impl Dataplane {
    /// A one-screen summary of what is programmed.
    pub fn summary(&self) -> String {
        use std::fmt::Write as _;
        let Some(d) = self.data.as_ref() else {
            return String::new();
        };
        let m = &d.model;
        let mut out = String::new();
        for n in m.networks.iter().filter(|n| !n.removed) {
            let _ = writeln!(
                out,
                "  network  {:<14} on {} ({})",
                n.name,
                n.interface,
                mac_str(n.mac)
            );
        }
        let targets = target_reports(d, |_, _| Ok((0, 0))).unwrap_or_default();
        for s in m.services.iter().filter(|s| !s.removed) {
            let listeners: Vec<String> = s
                .listeners
                .iter()
                .map(|l| {
                    let proto = flows::proto_name(l.proto);
                    format!("{proto}/{}->{}", l.port, l.target_port)
                })
                .collect();
            let _ = writeln!(
                out,
                "  service  {:<14} in {} NLB {} listeners {}{}",
                s.name,
                m.networks[usize::from(s.network)].name,
                zoned(m, &s.nlbs),
                listeners.join(", "),
                if s.cross_zone { " cross-zone" } else { "" }
            );
            for t in targets.iter().filter(|t| t.service == s.name) {
                let _ = writeln!(
                    out,
                    "    target {} ({}){} {}",
                    t.ip,
                    t.zone,
                    t.via.map_or_else(String::new, |v| format!(" via {v}")),
                    t.mac.as_deref().unwrap_or("unresolved")
                );
            }
        }
        for e in m.endpoints.iter().filter(|e| !e.removed) {
            let _ = writeln!(
                out,
                "  endpoint {:<14} in {} -> {} at {}{}",
                e.name,
                m.networks[usize::from(e.network)].name,
                m.services[usize::from(e.service)].name,
                zoned(m, &e.addrs),
                if e.accepted {
                    String::new()
                } else {
                    format!(" ({}: takes no flows)", e.state.name())
                }
            );
        }
        out
    }

    /// An event from the program, with names; addresses of either family.
    pub fn event(&self, e: &Event) -> Option<WatchEvent> {
        let d = self.data.as_ref()?;
        let h = e.head();
        let kind = if h.kind == EVENT_OPEN {
            "open"
        } else {
            "refused"
        };
        let (consumer, endpoint_addr, nlb, target): (
            SocketAddr,
            SocketAddr,
            SocketAddr,
            SocketAddr,
        ) = match e {
            Event::V4(e) => (
                flows::addr(e.src_be, e.sport_be).into(),
                flows::addr(e.dst_be, e.dport_be).into(),
                flows::addr(e.nlb_be, e.snat_port_be).into(),
                flows::addr(e.target_be, e.target_port_be).into(),
            ),
            Event::V6(e) => (
                flows::addr6(e.src, e.sport_be),
                flows::addr6(e.dst, e.dport_be),
                flows::addr6(e.nlb, e.snat_port_be),
                flows::addr6(e.target, e.target_port_be),
            ),
        };
        let mut w = WatchEvent::new(
            &d.model,
            kind,
            h.proto,
            h.endpoint,
            h.network,
            consumer,
            endpoint_addr,
        )?;
        if h.kind == EVENT_OPEN {
            w.nlb = Some(nlb);
            w.target = Some(target);
        } else {
            let reason = EndpointCounter::ALL.get(usize::from(h.reason))?.name();
            w.reason = Some(reason.trim_start_matches("refused_").to_owned());
        }
        Some(w)
    }

    /// Close events for flows a sweep removed, of either table.
    pub fn close_events<S: flows::Family>(&self, closed: &[flows::Flow<S>]) -> Vec<WatchEvent> {
        let Some(d) = self.data.as_ref() else {
            return Vec::new();
        };
        closed
            .iter()
            .filter_map(|f| {
                let (consumer, endpoint_addr) = f.consumer_side();
                let mut e = WatchEvent::new(
                    &d.model,
                    "close",
                    S::proto(&f.key),
                    S::endpoint(&f.forward),
                    S::network(&f.key),
                    consumer,
                    endpoint_addr,
                )?;
                e.nlb = Some(f.nlb());
                e.target = Some(f.target());
                e.state = Some(f.state().to_owned());
                Some(e)
            })
            .collect()
    }

    /// Every interface's and endpoint's counters, summed over CPUs; live flows per endpoint
    /// too if `flows` (that walks the flow table).
    pub fn stats(&self, flows: bool) -> Result<StatsReport, DataplaneError> {
        // Live flows counted now, not at the last sweep, so a new flow shows at once.
        let live = if flows {
            flows::count(&self.ebpf)
        } else {
            flows::Counts::default()
        };
        self.stats_with(&live)
    }

    /// As [`Dataplane::stats`], with live flows as counted elsewhere (the last sweep's).
    pub fn stats_with(&self, live: &flows::Counts) -> Result<StatsReport, DataplaneError> {
        let interfaces = self
            .ifaces
            .iter()
            .map(|i| {
                Ok(IfaceReport::new(
                    &i.name,
                    i.ifindex,
                    self.mode.name(),
                    &iface_stats(&self.ebpf, i.slot)?,
                ))
            })
            .collect::<Result<_, DataplaneError>>()?;
        let (endpoints, targets) = match &self.data {
            None => (Vec::new(), Vec::new()),
            Some(d) => {
                let targets = target_reports(d, |id, key| {
                    Ok((
                        sum_per_cpu(&self.ebpf, TARGET_STATS_MAP, id, |a, b| *a += b)?,
                        live.by_target.get(&key).copied().unwrap_or(0),
                    ))
                })?;
                (self.endpoint_reports(d, live)?, targets)
            }
        };
        Ok(StatsReport {
            interfaces,
            endpoints,
            targets,
            node: None,
            dns: Vec::new(),
        })
    }

    /// How full the flow table was at the sweep that counted `live`, and the SNAT ports
    /// held at every NLB address of the running config. None without a data path.
    pub fn flow_table(&self, live: &flows::Counts) -> Option<FlowTableReport> {
        self.data.as_ref().map(|d| flow_table(&d.model, live))
    }

    /// The live flows that pass `filter`, with names.
    pub fn flows(
        &self,
        filter: &crate::control::FlowFilter,
    ) -> Result<Vec<FlowReport>, DataplaneError> {
        let Some(d) = self.data.as_ref() else {
            return Ok(Vec::new());
        };
        let m = &d.model;
        let unknown = |what, name: &String| DataplaneError::Unknown {
            what,
            name: name.clone(),
        };
        if let Some(e) = &filter.endpoint
            && !m.endpoints.iter().any(|x| !x.removed && x.name == *e)
        {
            return Err(unknown("endpoint", e));
        }
        if let Some(s) = &filter.service
            && !m.services.iter().any(|x| !x.removed && x.name == *s)
        {
            return Err(unknown("service", s));
        }
        let now = flows::now_ns();
        let v6 = flows::list6(&self.ebpf);
        let mut out: Vec<FlowReport> = (flows::list(&self.ebpf).iter())
            .filter_map(|f| FlowReport::new(m, f, now))
            .chain(v6.iter().filter_map(|f| FlowReport::new(m, f, now)))
            .filter(|f| filter.matches(f))
            .collect();
        out.sort_by(|a, b| (&a.endpoint, a.consumer).cmp(&(&b.endpoint, b.consumer)));
        Ok(out)
    }

    fn endpoint_reports(
        &self,
        d: &DataPath,
        active: &flows::Counts,
    ) -> Result<Vec<EndpointReport>, DataplaneError> {
        d.model
            .endpoints
            .iter()
            .zip(0u16..)
            .filter(|(e, _)| !e.removed)
            .map(|(e, id)| {
                let mut stats = endpoint_stats(&self.ebpf, id)?;
                stats.counters[EndpointCounter::Revoked as usize] +=
                    d.revoked.get(usize::from(id)).copied().unwrap_or(0);
                Ok(EndpointReport::new(
                    &e.name,
                    &d.model.services[usize::from(e.service)].name,
                    &d.model.networks[usize::from(e.network)].name,
                    &stats,
                    active.by_endpoint.get(&id).copied().unwrap_or(0),
                ))
            })
            .collect()
    }
}

/// The flow table's fill and the SNAT ports at each NLB address of `m` (its live services),
/// from the flows counted in `live`.
fn flow_table(m: &Model, live: &flows::Counts) -> FlowTableReport {
    let ports = u64::from(m.settings.snat_port_max) - u64::from(m.settings.snat_port_min) + 1;
    let mut snat: Vec<SnatReport> = (m.services.iter())
        .filter(|s| !s.removed)
        .flat_map(|s| s.nlbs.iter().map(move |(a, _)| (s.network, *a)))
        .map(|(network, address)| SnatReport {
            network: m.networks[usize::from(network)].name.clone(),
            address,
            // IPv4's ports only: the IPv6 flow table's are not counted here yet.
            in_use: crate::plan::be4(address)
                .and_then(|a| live.snat_ports.get(&(network, a)))
                .map_or(0, crate::ports::Ports::len),
            capacity: ports,
        })
        .collect();
    snat.sort_by(|a, b| (&a.network, a.address).cmp(&(&b.network, b.address)));
    snat.dedup_by(|a, b| (&a.network, a.address) == (&b.network, b.address));
    let capacity = m.flow_table_size.saturating_mul(2);
    FlowTableReport {
        entries: live.entries,
        capacity: u64::from(capacity),
        entries6: live.entries6,
        capacity6: u64::from(flows::flow6_entries(capacity)),
        snat,
    }
}

/// Addresses with their zones' names: `10.0.0.1 (a), 10.0.1.1 (b)`.
fn zoned(m: &Model, addrs: &[(IpAddr, u8)]) -> String {
    addrs
        .iter()
        .map(|(ip, z)| format!("{ip} ({})", m.zones[usize::from(*z)]))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A report per (service, target); `flows` gives a target's new and live flows from its
/// id and its [`flows::TargetKey`] (a target several services share has one per service).
fn target_reports(
    d: &DataPath,
    flows: impl Fn(u32, flows::TargetKey) -> Result<(u64, u64), DataplaneError>,
) -> Result<Vec<TargetReport>, DataplaneError> {
    d.model
        .services
        .iter()
        .zip(0u16..)
        .filter(|(s, _)| !s.removed)
        .flat_map(|(s, sid)| s.targets.iter().map(move |t| (s, sid, t)))
        .map(|(s, sid, t)| {
            let mac = d
                .plan
                .targets
                .iter()
                .find(|(id, _)| *id == t.id)
                .map(|(_, i)| i.mac)
                .unwrap_or_default();
            let h = d.health.target(t.id);
            // Its flows come from the NLB address of its zone and family, one per service.
            // An IPv6 target's key matches no IPv4 flow (its flows are not counted here).
            let nlb = s
                .nlbs
                .iter()
                .find(|(a, z)| *z == t.zone && a.is_ipv4() == t.ip.is_ipv4())
                .map(|(a, _)| *a);
            let be4 = |a: Option<IpAddr>| a.and_then(crate::plan::be4).unwrap_or(0);
            let key = (s.network, be4(nlb), be4(Some(t.ip)));
            let (new_flows, active_flows) = flows(t.id, key)?;
            Ok(TargetReport {
                service: s.name.clone(),
                ip: t.ip,
                zone: d.model.zones[usize::from(t.zone)].clone(),
                via: t.via,
                mac: (mac != [0; 6]).then(|| mac_str(mac)),
                health: h.map_or("unknown", |h| h.health.name()).to_owned(),
                last_check: h.map_or("none", |h| h.last).to_owned(),
                service_failing_open: d.health.failing_open(sid),
                new_flows,
                active_flows,
            })
        })
        .collect()
}

/// The line a reload from `before` to `after` logs; `changes`: networks now, networks
/// added, networks gone, flows revoked.
pub(super) fn reloaded(
    before: &Model,
    after: &Model,
    (networks, added, gone, revoked): (usize, usize, usize, usize),
) -> String {
    let count = |f: &dyn Fn(&Model) -> usize| (f(after), f(before));
    let (eps, eps_before) = count(&|m| m.endpoints.iter().filter(|e| !e.removed).count());
    let (svcs, svcs_before) = count(&|m| m.services.iter().filter(|s| !s.removed).count());
    let (tgts, tgts_before) = count(&|m| {
        m.services
            .iter()
            .filter(|s| !s.removed)
            .map(|s| s.targets.len())
            .sum()
    });
    format!(
        "reloaded: {networks} networks (+{added} -{gone}), services {svcs_before} -> {svcs}, endpoints {eps_before} -> {eps}, targets {tgts_before} -> {tgts}, {revoked} flows revoked"
    )
}

pub fn mac_str(m: [u8; 6]) -> String {
    format!(
        "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        m[0], m[1], m[2], m[3], m[4], m[5]
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::testing::{EXAMPLE, build};

    #[test]
    fn flow_table_counts_snat_ports_per_nlb_address_of_the_config() {
        let m = build(&format!(
            "{EXAMPLE}\n[limits]\nflow_table_size = 1000\nsnat_port_min = 2000\nsnat_port_max = 2099\n"
        ))
        .unwrap_or_else(|e| panic!("{e}"));
        let prov = 2;
        let mut live = flows::Counts {
            entries: 6,
            ..flows::Counts::default()
        };
        let nlb = |ip: &str| crate::plan::be(ip.parse().expect("ip"));
        for port in [2000, 2001, 2001] {
            live.snat_ports
                .entry((prov, nlb("10.9.0.250")))
                .or_default()
                .insert(port);
        }
        // Not an NLB address of the config (a service since removed): not reported.
        live.snat_ports
            .entry((prov, nlb("10.9.0.99")))
            .or_default()
            .insert(2000);
        let t = flow_table(&m, &live);
        assert_eq!((t.entries, t.capacity), (6, 2000));
        let got: Vec<(&str, String, u64, u64)> = (t.snat.iter())
            .map(|s| {
                (
                    s.network.as_str(),
                    s.address.to_string(),
                    s.in_use,
                    s.capacity,
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                ("billing-prod", "10.9.0.250".to_owned(), 2, 100),
                ("billing-prod", "10.9.0.251".to_owned(), 0, 100),
            ]
        );
    }
}
