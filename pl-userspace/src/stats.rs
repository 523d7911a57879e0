//! The counters report `pl run` serves and `pl stats` prints.

use std::{collections::BTreeMap, fmt::Write as _};

use pl_common::stats::{EndpointCounter, EndpointStats, IfaceCounter, IfaceStats};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatsReport {
    pub interfaces: Vec<IfaceReport>,
    #[serde(default)]
    pub endpoints: Vec<EndpointReport>,
    #[serde(default)]
    pub targets: Vec<TargetReport>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointReport {
    pub name: String,
    pub service: String,
    pub network: String,
    /// Every counter by its `pl_common` name, summed over CPUs.
    pub counters: BTreeMap<String, u64>,
    pub active_flows: u64,
}

impl EndpointReport {
    pub fn new(
        name: &str,
        service: &str,
        network: &str,
        stats: &EndpointStats,
        active_flows: u64,
    ) -> Self {
        let counters = EndpointCounter::ALL
            .iter()
            .map(|c| (c.name().to_owned(), stats.get(*c)))
            .collect();
        Self {
            name: name.to_owned(),
            service: service.to_owned(),
            network: network.to_owned(),
            counters,
            active_flows,
        }
    }

    pub fn get(&self, counter: EndpointCounter) -> u64 {
        self.counters.get(counter.name()).copied().unwrap_or(0)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetReport {
    pub service: String,
    pub ip: std::net::Ipv4Addr,
    pub zone: String,
    /// The router a static route sends it to; None when on-link.
    #[serde(default)]
    pub via: Option<std::net::Ipv4Addr>,
    /// Learned by ARP (its router's, when routed); targets without one take no flows.
    pub mac: Option<String>,
    /// `initial`, `healthy`, `unhealthy` (takes no new flows) or `unchecked`.
    pub health: String,
    /// The last check's answer: `syn-ack`, `rst`, `timeout`, or `none` yet.
    pub last_check: String,
    /// Every target of the service is unhealthy, so all of them take flows (fail open).
    pub service_failing_open: bool,
    /// Flows opened to it (since the flow table was made: restarts keep it).
    pub new_flows: u64,
    pub active_flows: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IfaceReport {
    pub name: String,
    pub ifindex: u32,
    /// `native` or `skb`.
    pub mode: String,
    /// Every counter by its `pl_common` name, summed over CPUs.
    pub counters: BTreeMap<String, u64>,
}

impl IfaceReport {
    pub fn new(name: &str, ifindex: u32, mode: &str, stats: &IfaceStats) -> Self {
        let counters = IfaceCounter::ALL
            .iter()
            .map(|c| (c.name().to_owned(), stats.get(*c)))
            .collect();
        Self {
            name: name.to_owned(),
            ifindex,
            mode: mode.to_owned(),
            counters,
        }
    }

    pub fn get(&self, counter: IfaceCounter) -> u64 {
        self.counters.get(counter.name()).copied().unwrap_or(0)
    }
}

/// The flow table at the last sweep: how full it is, and the SNAT ports held at each NLB
/// address (for metrics; `None` without a data path).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlowTableReport {
    /// Entries in the table: two per flow (forward and reply).
    pub entries: u64,
    /// Entries the table holds: twice `[limits] flow_table_size`.
    pub capacity: u64,
    pub snat: Vec<SnatReport>,
}

/// SNAT ports at one NLB address.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnatReport {
    /// The provider network the address is on.
    pub network: String,
    pub address: std::net::Ipv4Addr,
    /// Distinct ports live flows from this address hold.
    pub in_use: u64,
    /// Ports in `[limits] snat_port_min..=snat_port_max`.
    pub capacity: u64,
}

impl StatsReport {
    pub fn interface(&self, name: &str) -> Option<&IfaceReport> {
        self.interfaces.iter().find(|i| i.name == name)
    }

    pub fn endpoint(&self, name: &str) -> Option<&EndpointReport> {
        self.endpoints.iter().find(|e| e.name == name)
    }

    /// Tables: one row per interface, then one per endpoint, one column per counter in
    /// counter order; then the targets.
    pub fn table(&self) -> String {
        let mut header = vec!["interface".to_owned()];
        header.extend(IfaceCounter::ALL.iter().map(|c| c.name().to_owned()));
        let rows = self.interfaces.iter().map(|i| {
            let mut row = vec![format!("{} ({})", i.name, i.mode)];
            row.extend(IfaceCounter::ALL.iter().map(|c| i.get(*c).to_string()));
            row
        });
        let mut out = render(header, rows);
        if !self.endpoints.is_empty() {
            let mut header = vec![
                "endpoint".to_owned(),
                "service".to_owned(),
                "network".to_owned(),
                "active_flows".to_owned(),
            ];
            header.extend(EndpointCounter::ALL.iter().map(|c| c.name().to_owned()));
            let rows = self.endpoints.iter().map(|e| {
                let mut row = vec![
                    e.name.clone(),
                    e.service.clone(),
                    e.network.clone(),
                    e.active_flows.to_string(),
                ];
                row.extend(EndpointCounter::ALL.iter().map(|c| e.get(*c).to_string()));
                row
            });
            out.push('\n');
            out.push_str(&render(header, rows));
        }
        if !self.targets.is_empty() {
            let header = vec![
                "target".to_owned(),
                "service".to_owned(),
                "zone".to_owned(),
                "next_hop".to_owned(),
                "mac".to_owned(),
                "health".to_owned(),
                "last_check".to_owned(),
                "new_flows".to_owned(),
                "active_flows".to_owned(),
            ];
            let rows = self.targets.iter().map(|t| {
                vec![
                    t.ip.to_string(),
                    t.service.clone(),
                    t.zone.clone(),
                    t.via
                        .map_or_else(|| "on-link".to_owned(), |v| v.to_string()),
                    t.mac.clone().unwrap_or_else(|| "unresolved".to_owned()),
                    if t.service_failing_open {
                        format!("{} (service failing open)", t.health)
                    } else {
                        t.health.clone()
                    },
                    t.last_check.clone(),
                    t.new_flows.to_string(),
                    t.active_flows.to_string(),
                ]
            });
            out.push('\n');
            out.push_str(&render(header, rows));
        }
        out
    }
}

/// Aligned columns: the first left-aligned, the rest right-aligned.
pub(crate) fn render(header: Vec<String>, rows: impl Iterator<Item = Vec<String>>) -> String {
    let rows: Vec<Vec<String>> = std::iter::once(header).chain(rows).collect();
    let widths: Vec<usize> = (0..rows[0].len())
        .map(|col| rows.iter().map(|r| r[col].len()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in &rows {
        for (col, cell) in row.iter().enumerate() {
            if col == 0 {
                let _ = write!(out, "{cell:<w$}", w = widths[col]);
            } else {
                let _ = write!(out, "  {cell:>w$}", w = widths[col]);
            }
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_round_trips_through_json_and_renders_every_counter() {
        let mut s = IfaceStats::default();
        s.counters[IfaceCounter::RxPackets as usize] = 7;
        s.counters[IfaceCounter::Ipv4Udp as usize] = 5;
        let report = StatsReport {
            interfaces: vec![IfaceReport::new("fw-acme", 4, "native", &s)],
            ..StatsReport::default()
        };
        let json = serde_json::to_string(&report).expect("serialize");
        let back: StatsReport = serde_json::from_str(&json).expect("deserialize");
        assert_eq!(back, report);
        let i = back.interface("fw-acme").expect("fw-acme in report");
        assert_eq!(i.get(IfaceCounter::RxPackets), 7);
        assert_eq!(i.get(IfaceCounter::Ipv4Udp), 5);
        let table = report.table();
        for &c in IfaceCounter::ALL {
            assert!(
                table.contains(c.name()),
                "table lacks column {}:\n{table}",
                c.name()
            );
        }
        assert!(
            table
                .lines()
                .nth(1)
                .is_some_and(|l| l.starts_with("fw-acme (native)")),
            "{table}"
        );
    }
}
