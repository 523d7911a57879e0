//! The counters report `pl run` serves and `pl stats` prints.

use std::{collections::BTreeMap, fmt::Write as _};

use pl_common::stats::{IfaceCounter, IfaceStats};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatsReport {
    pub interfaces: Vec<IfaceReport>,
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

impl StatsReport {
    pub fn interface(&self, name: &str) -> Option<&IfaceReport> {
        self.interfaces.iter().find(|i| i.name == name)
    }

    /// One row per interface, one column per counter, in counter order.
    pub fn table(&self) -> String {
        let mut header = vec!["interface".to_owned()];
        header.extend(IfaceCounter::ALL.iter().map(|c| c.name().to_owned()));
        let mut rows = vec![header];
        for i in &self.interfaces {
            let mut row = vec![format!("{} ({})", i.name, i.mode)];
            row.extend(IfaceCounter::ALL.iter().map(|c| i.get(*c).to_string()));
            rows.push(row);
        }
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
