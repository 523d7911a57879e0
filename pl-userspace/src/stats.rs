//! The counters report `pl run` serves and `pl stats` prints.

use std::{collections::BTreeMap, fmt::Write as _};

use pl_common::stats::{EndpointCounter, EndpointStats, IfaceCounter, IfaceStats};
use serde::{Deserialize, Serialize};

use crate::output::{Col, Format, render, table};

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatsReport {
    pub interfaces: Vec<IfaceReport>,
    #[serde(default)]
    pub endpoints: Vec<EndpointReport>,
    #[serde(default)]
    pub targets: Vec<TargetReport>,
    /// The cluster node that counted them; None for a lone forwarder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// Each network's DNS server (`dns_addresses`); empty where none answers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dns: Vec<crate::dns::DnsStats>,
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
    pub ip: std::net::IpAddr,
    pub zone: String,
    /// The router a static route sends it to; None when on-link.
    #[serde(default)]
    pub via: Option<std::net::IpAddr>,
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
    /// The same of the IPv6 table (a quarter of the IPv4 table's entries).
    #[serde(default)]
    pub entries6: u64,
    #[serde(default)]
    pub capacity6: u64,
    pub snat: Vec<SnatReport>,
}

/// SNAT ports at one NLB address.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnatReport {
    /// The provider network the address is on.
    pub network: String,
    pub address: std::net::IpAddr,
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

    /// `pl stats` as it prints by default: [`Self::text`] as a table, zeros hidden.
    pub fn table(&self) -> String {
        self.text(Format::Table, false)
    }

    /// The human form. `Table` (fits 100 columns): one row per counter of each interface
    /// and endpoint, zeros left out unless `all` (a few always show, so every interface
    /// and endpoint has a row); then the targets. `Wide`: one row per interface and per
    /// endpoint, one column per counter, and every target column.
    pub fn text(&self, format: Format, all: bool) -> String {
        let mut parts = Vec::new();
        let mut hidden = 0;
        if format == Format::Wide {
            parts.push(self.interfaces_wide());
            if !self.endpoints.is_empty() {
                parts.push(self.endpoints_wide());
            }
        } else {
            let (text, n) = self.interfaces_long(all);
            parts.push(text);
            hidden += n;
            if !self.endpoints.is_empty() {
                let (text, n) = self.endpoints_long(all);
                parts.push(text);
                hidden += n;
            }
        }
        if !self.targets.is_empty() {
            parts.push(self.targets_text(format));
        }
        if !self.dns.is_empty() {
            parts.push(self.dns_text(format));
        }
        let mut out = parts.join("\n");
        if let Some(node) = &self.node {
            out = format!("node {node}\n\n{out}");
        }
        if hidden > 0 {
            let _ = writeln!(
                out,
                "\n{hidden} counters are 0 and not shown (--all shows them)."
            );
        }
        out
    }

    /// interface | mode | counter | value, a row per counter shown; the number hidden.
    fn interfaces_long(&self, all: bool) -> (String, usize) {
        let rows = self.interfaces.iter().flat_map(|i| {
            IfaceCounter::ALL.iter().map(move |&c| {
                let keep = all || IFACE_ALWAYS.contains(&c);
                ([i.name.as_str(), i.mode.as_str()], c.name(), i.get(c), keep)
            })
        });
        counter_rows(["interface", "mode"], rows)
    }

    /// endpoint | service | network | counter | value, `active_flows` first; the number
    /// hidden.
    fn endpoints_long(&self, all: bool) -> (String, usize) {
        let rows = self.endpoints.iter().flat_map(|e| {
            let names = [e.name.as_str(), e.service.as_str(), e.network.as_str()];
            let counters = EndpointCounter::ALL.iter().map(move |&c| {
                let keep = all || ENDPOINT_ALWAYS.contains(&c);
                (names, c.name(), e.get(c), keep)
            });
            std::iter::once((names, "active_flows", e.active_flows, true)).chain(counters)
        });
        counter_rows(["endpoint", "service", "network"], rows)
    }

    /// One row per interface, one column per counter.
    fn interfaces_wide(&self) -> String {
        let rows = self.interfaces.iter().map(|i| {
            let names = [i.name.clone(), i.mode.clone(), i.ifindex.to_string()];
            let counters = IfaceCounter::ALL.iter().map(|c| i.get(*c));
            (names, counters)
        });
        let names = [
            ("interface", Col::Text),
            ("mode", Col::Text),
            ("ifindex", Col::Num),
        ];
        counter_columns(names, IfaceCounter::ALL.iter().map(|c| c.name()), rows)
    }

    /// One row per endpoint, one column per counter (`active_flows` first).
    fn endpoints_wide(&self) -> String {
        let rows = self.endpoints.iter().map(|e| {
            let names = [e.name.clone(), e.service.clone(), e.network.clone()];
            let counters = EndpointCounter::ALL.iter().map(|c| e.get(*c));
            (names, std::iter::once(e.active_flows).chain(counters))
        });
        let names = [
            ("endpoint", Col::Text),
            ("service", Col::Text),
            ("network", Col::Text),
        ];
        let counters = EndpointCounter::ALL.iter().map(|c| c.name());
        counter_columns(names, std::iter::once("active_flows").chain(counters), rows)
    }

    /// The targets: where each is (zone, router, MAC) and how it fares; `Wide` adds the
    /// last check's answer and the flows opened to it. A service failing open is a note
    /// under the table (`Wide`: in the health column).
    fn targets_text(&self, format: Format) -> String {
        let wide = format == Format::Wide;
        let mut cols = vec![
            ("service", Col::Text),
            ("target", Col::Text),
            ("zone", Col::Text),
            ("via", Col::Text),
            ("mac", Col::Text),
            ("health", Col::Text),
        ];
        if wide {
            cols.extend([("last_check", Col::Text), ("new_flows", Col::Num)]);
        }
        cols.push(("active_flows", Col::Num));
        let mut t = table(format, &cols);
        for x in &self.targets {
            let mut row = vec![
                x.service.clone(),
                x.ip.to_string(),
                x.zone.clone(),
                x.via
                    .map_or_else(|| "on-link".to_owned(), |v| v.to_string()),
                x.mac.clone().unwrap_or_else(|| "unresolved".to_owned()),
                if wide && x.service_failing_open {
                    format!("{} (service failing open)", x.health)
                } else {
                    x.health.clone()
                },
            ];
            if wide {
                row.extend([x.last_check.clone(), x.new_flows.to_string()]);
            }
            row.push(x.active_flows.to_string());
            t.add_row(row);
        }
        let mut out = render(&t);
        if !wide {
            let mut failing: Vec<&str> = self
                .targets
                .iter()
                .filter(|x| x.service_failing_open)
                .map(|x| x.service.as_str())
                .collect();
            failing.sort_unstable();
            failing.dedup();
            for service in failing {
                let _ = writeln!(
                    out,
                    "service {service}: every target is unhealthy, so all take flows (failing open)"
                );
            }
        }
        out
    }
}

impl StatsReport {
    /// A row per network whose DNS server answers: where, and what became of the queries.
    fn dns_text(&self, format: Format) -> String {
        let mut t = table(
            format,
            &[
                ("dns", Col::Text),
                ("addresses", Col::Text),
                ("queries", Col::Num),
                ("answers", Col::Num),
                ("nxdomain", Col::Num),
                ("refused", Col::Num),
                ("malformed", Col::Num),
                ("unsent", Col::Num),
            ],
        );
        for d in &self.dns {
            let addrs: Vec<String> = d.addresses.iter().map(ToString::to_string).collect();
            t.add_row([
                d.network.clone(),
                addrs.join(", "),
                d.queries.to_string(),
                d.answers.to_string(),
                d.nxdomain.to_string(),
                d.refused.to_string(),
                d.malformed.to_string(),
                d.unsent.to_string(),
            ]);
        }
        render(&t)
    }
}

/// A table of what is counted (`names`), then counter | value: a row per (names, counter,
/// value, keep) that is not 0 or is to be kept; the number of rows left out.
fn counter_rows<'a, const N: usize>(
    names: [&str; N],
    rows: impl Iterator<Item = ([&'a str; N], &'a str, u64, bool)>,
) -> (String, usize) {
    let mut cols: Vec<(&str, Col)> = names.iter().map(|n| (*n, Col::Text)).collect();
    cols.extend([("counter", Col::Text), ("value", Col::Num)]);
    let mut t = table(Format::Table, &cols);
    let mut hidden = 0;
    for (names, counter, value, keep) in rows {
        if value == 0 && !keep {
            hidden += 1;
            continue;
        }
        let value = value.to_string();
        t.add_row(names.iter().copied().chain([counter, value.as_str()]));
    }
    (render(&t), hidden)
}

/// A wide table of what is counted (`names`), then a column per counter in `counters`: a
/// row per (names, values in counter order).
fn counter_columns<const N: usize, V: Iterator<Item = u64>>(
    names: [(&str, Col); N],
    counters: impl Iterator<Item = &'static str>,
    rows: impl Iterator<Item = ([String; N], V)>,
) -> String {
    let mut cols = names.to_vec();
    cols.extend(counters.map(|c| (c, Col::Num)));
    let mut t = table(Format::Wide, &cols);
    for (names, values) in rows {
        t.add_row(names.into_iter().chain(values.map(|v| v.to_string())));
    }
    render(&t)
}

/// Interface counters `pl stats` shows even at 0, so every interface has rows.
const IFACE_ALWAYS: &[IfaceCounter] = &[IfaceCounter::RxPackets, IfaceCounter::RxBytes];
/// Endpoint counters shown even at 0 (with `active_flows`).
const ENDPOINT_ALWAYS: &[EndpointCounter] = &[EndpointCounter::NewFlows];

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
        let wide = report.text(Format::Wide, false);
        for &c in IfaceCounter::ALL {
            assert!(
                wide.contains(c.name()),
                "-o wide lacks column {}:\n{wide}",
                c.name()
            );
        }
        // The table: a row per counter that is not 0, and rx_bytes, which always shows.
        let rows: Vec<Vec<String>> = report
            .table()
            .lines()
            .skip(1)
            .take_while(|l| !l.is_empty())
            .map(|l| l.split_whitespace().map(str::to_owned).collect())
            .collect();
        let want = [("rx_packets", "7"), ("rx_bytes", "0"), ("ipv4_udp", "5")]
            .map(|(c, v)| ["fw-acme", "native", c, v].map(str::to_owned).to_vec());
        assert_eq!(rows, want, "{}", report.table());
        let hidden = IfaceCounter::COUNT - 3;
        assert!(
            report.table().ends_with(&format!(
                "{hidden} counters are 0 and not shown (--all shows them).\n"
            )),
            "{}",
            report.table()
        );
        assert_eq!(
            report.text(Format::Table, true).lines().count(),
            1 + IfaceCounter::COUNT,
            "--all: a row per counter"
        );
    }
}
