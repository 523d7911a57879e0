//! Prometheus metrics (OpenMetrics text, via prometheus-client): the counters `pl stats`
//! prints, as labelled families (see `families`), and what only `pl run` knows: the flow
//! table's fill, SNAT ports per NLB address, reloads, and the build.
//!
//! [`serve`] answers scrapes with hyper on tasks of their own, from the last snapshot
//! `pl run` published: a scrape never waits on the run loop, and a client that connects and
//! says nothing holds only its own connection, for [`HEADER_TIMEOUT`].

mod cluster;
mod families;
mod serve;
#[cfg(test)]
mod tests;

use std::time::{SystemTime, UNIX_EPOCH};

use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeMetric as _, text},
    metrics::{MetricType, counter::ConstCounter, gauge::ConstGauge},
    registry::Registry,
};

use self::families::Family;
pub use self::serve::{HEADER_TIMEOUT, MAX_CONNECTIONS, serve};
use crate::stats::{EndpointReport, FlowTableReport, IfaceReport, StatsReport, TargetReport};

/// Reloads `pl run` finished (config file, `pl reload` or SIGHUP), for metrics.
#[derive(Clone, Debug)]
pub struct Reloads {
    ok: u64,
    refused: u64,
    last_ok: bool,
    /// When the running config was last loaded: at start, then at each reload that took.
    last_success: SystemTime,
}

impl Reloads {
    /// No reload yet; the config `pl run` started with was loaded at `started`.
    pub const fn new(started: SystemTime) -> Self {
        Self {
            ok: 0,
            refused: 0,
            last_ok: true,
            last_success: started,
        }
    }

    /// Counts a reload that finished at `at`: applied (`ok`) or refused, leaving the
    /// running config as it was.
    pub fn record(&mut self, ok: bool, at: SystemTime) {
        self.last_ok = ok;
        if ok {
            self.ok += 1;
            self.last_success = at;
        } else {
            self.refused += 1;
        }
    }
}

#[derive(Debug)]
struct Snapshot {
    stats: StatsReport,
    table: Option<FlowTableReport>,
    reloads: Reloads,
    cluster: Option<crate::cluster::ClusterStatus>,
}

type Labels = Vec<(String, String)>;

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// Every gauge's value: a count past `i64::MAX` is shown as the largest it can be.
fn gauge(v: u64) -> ConstGauge {
    ConstGauge::new(i64::try_from(v).unwrap_or(i64::MAX))
}

impl Collector for Snapshot {
    fn encode(&self, mut enc: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        build_info(&mut enc)?;
        let interfaces: Vec<_> = (self.stats.interfaces.iter())
            .map(|i| (labels(&[("interface", &i.name)]), i))
            .collect();
        counters(&mut enc, families::INTERFACE, &interfaces, IfaceReport::get)?;
        let endpoints: Vec<_> = (self.stats.endpoints.iter())
            .map(|e| {
                let l = [
                    ("endpoint", e.name.as_str()),
                    ("service", &e.service),
                    ("network", &e.network),
                ];
                (labels(&l), e)
            })
            .collect();
        counters(
            &mut enc,
            families::ENDPOINT,
            &endpoints,
            EndpointReport::get,
        )?;
        let mut m = enc.encode_descriptor(
            "endpoint_active_flows",
            "Live flows through the endpoint, at the last sweep",
            None,
            MetricType::Gauge,
        )?;
        for (l, e) in &endpoints {
            gauge(e.active_flows).encode(m.encode_family(l)?)?;
        }
        self.targets(&mut enc)?;
        self.services(&mut enc)?;
        if let Some(t) = &self.table {
            flow_table(&mut enc, t)?;
        }
        if let Some(c) = &self.cluster {
            cluster::encode(&mut enc, c)?;
        }
        dns(&mut enc, &self.stats.dns)?;
        reloads(&mut enc, &self.reloads)
    }
}

/// Each network's DNS server: queries, and what became of them.
fn dns(
    enc: &mut DescriptorEncoder<'_>,
    servers: &[crate::dns::DnsStats],
) -> Result<(), std::fmt::Error> {
    if servers.is_empty() {
        return Ok(());
    }
    let mut m = enc.encode_descriptor(
        "dns_queries",
        "DNS queries received on the network's DNS addresses, over UDP and TCP",
        None,
        MetricType::Counter,
    )?;
    for d in servers {
        ConstCounter::new(d.queries)
            .encode(m.encode_family(&labels(&[("network", &d.network)]))?)?;
    }
    let mut m = enc.encode_descriptor(
        "dns_results",
        "DNS queries by result: answered (NOERROR), nxdomain, refused (REFUSED, NOTIMP), malformed (FORMERR or dropped); unsent: answers dropped, the send buffer full",
        None,
        MetricType::Counter,
    )?;
    for d in servers {
        for (result, n) in [
            ("answered", d.answers),
            ("nxdomain", d.nxdomain),
            ("refused", d.refused),
            ("malformed", d.malformed),
            ("unsent", d.unsent),
        ] {
            let l = labels(&[("network", &d.network), ("result", result)]);
            ConstCounter::new(n).encode(m.encode_family(&l)?)?;
        }
    }
    Ok(())
}

/// `pl_build_info{version, revision} 1`: a gauge, as Prometheus' own build info is, so text-format
/// parsers (no OpenMetrics `info` type) read it too.
fn build_info(enc: &mut DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
    let mut m = enc.encode_descriptor(
        "build_info",
        "The pl serving these metrics (always 1)",
        None,
        MetricType::Gauge,
    )?;
    let l = labels(&[
        ("version", env!("CARGO_PKG_VERSION")),
        ("revision", env!("PL_GIT_REVISION")),
    ]);
    ConstGauge::new(1).encode(m.encode_family(&l)?)
}

/// One counter family after another; each row's series carry its labels, plus the
/// family's own label where it has one.
fn counters<C: Copy, R>(
    enc: &mut DescriptorEncoder<'_>,
    families: &[Family<C>],
    rows: &[(Labels, &R)],
    get: impl Fn(&R, C) -> u64,
) -> Result<(), std::fmt::Error> {
    for f in families {
        let mut m = enc.encode_descriptor(f.name, f.help, None, MetricType::Counter)?;
        for (row, r) in rows {
            for &(c, value) in f.members {
                let mut l = row.clone();
                l.extend(f.label.map(|k| (k.to_owned(), value.to_owned())));
                ConstCounter::new(get(r, c)).encode(m.encode_family(&l)?)?;
            }
        }
    }
    Ok(())
}

/// Each flow table's entries and capacity (IPv6's under its own names, so the IPv4 ones
/// keep their meaning); SNAT ports in use and available per NLB address.
fn flow_table(enc: &mut DescriptorEncoder<'_>, t: &FlowTableReport) -> Result<(), std::fmt::Error> {
    for (name, help, v) in [
        (
            "flow_table_entries",
            "Entries in the flow table at the last sweep (two per flow)",
            t.entries,
        ),
        (
            "flow_table_capacity",
            "Entries the flow table holds (twice [limits] flow_table_size); new flows are refused past it",
            t.capacity,
        ),
        (
            "flow6_table_entries",
            "Entries in the IPv6 flow table at the last sweep (two per flow)",
            t.entries6,
        ),
        (
            "flow6_table_capacity",
            "Entries the IPv6 flow table holds (a quarter of the IPv4 table's); new IPv6 flows are refused past it",
            t.capacity6,
        ),
    ] {
        let m = enc.encode_descriptor(name, help, None, MetricType::Gauge)?;
        gauge(v).encode(m)?;
    }
    for (name, help, v) in [
        (
            "snat_ports_in_use",
            "Distinct SNAT ports live flows from this NLB address hold, at the last sweep",
            (|s| s.in_use) as fn(&crate::stats::SnatReport) -> u64,
        ),
        (
            "snat_ports_capacity",
            "SNAT ports an NLB address has ([limits] snat_port_min to snat_port_max)",
            |s| s.capacity,
        ),
    ] {
        let mut m = enc.encode_descriptor(name, help, None, MetricType::Gauge)?;
        for s in &t.snat {
            let a = s.address.to_string();
            let l = labels(&[("network", &s.network), ("address", &a)]);
            gauge(v(s)).encode(m.encode_family(&l)?)?;
        }
    }
    Ok(())
}

fn reloads(enc: &mut DescriptorEncoder<'_>, r: &Reloads) -> Result<(), std::fmt::Error> {
    let mut m = enc.encode_descriptor(
        "reloads",
        "Reloads finished (pl reload, SIGHUP), by result: ok (applied) or refused (the running config stays)",
        None,
        MetricType::Counter,
    )?;
    for (result, n) in [("ok", r.ok), ("refused", r.refused)] {
        ConstCounter::new(n).encode(m.encode_family(&labels(&[("result", result)]))?)?;
    }
    let m = enc.encode_descriptor(
        "reload_last_successful",
        "1 if the last reload was applied (or none was tried), 0 if it was refused",
        None,
        MetricType::Gauge,
    )?;
    ConstGauge::new(i64::from(r.last_ok)).encode(m)?;
    let m = enc.encode_descriptor(
        "reload_last_success_timestamp_seconds",
        "When the running config was loaded: at start, then at each reload applied (Unix time)",
        None,
        MetricType::Gauge,
    )?;
    let at = r
        .last_success
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    gauge(at.as_secs()).encode(m)
}

impl Snapshot {
    fn targets(&self, enc: &mut DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        for (name, help, kind, value) in PER_TARGET {
            let mut m = enc.encode_descriptor(name, help, None, kind)?;
            for t in &self.stats.targets {
                let ip = t.ip.to_string();
                let l = labels(&[("service", &t.service), ("target", &ip), ("zone", &t.zone)]);
                let v = value(t);
                if matches!(kind, MetricType::Counter) {
                    ConstCounter::new(v).encode(m.encode_family(&l)?)?;
                } else {
                    gauge(v).encode(m.encode_family(&l)?)?;
                }
            }
        }
        Ok(())
    }

    fn services(&self, enc: &mut DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let mut m = enc.encode_descriptor(
            "service_failing_open",
            "1 if every target of the service is unhealthy and all of them take flows",
            None,
            MetricType::Gauge,
        )?;
        let mut services: Vec<(&str, bool)> = (self.stats.targets.iter())
            .map(|t| (t.service.as_str(), t.service_failing_open))
            .collect();
        services.dedup();
        for (service, open) in services {
            ConstGauge::new(i64::from(open))
                .encode(m.encode_family(&labels(&[("service", service)]))?)?;
        }
        Ok(())
    }
}

/// A per-target metric: name, help, type, and its value for one target.
type TargetMetric = (
    &'static str,
    &'static str,
    MetricType,
    fn(&TargetReport) -> u64,
);

const PER_TARGET: [TargetMetric; 4] = [
    (
        "target_resolved",
        "1 if ARP resolved the target (only resolved targets take flows)",
        MetricType::Gauge,
        |t| u64::from(t.mac.is_some()),
    ),
    (
        "target_healthy",
        "1 if the target takes new flows by its health checks (initial, healthy, unchecked)",
        MetricType::Gauge,
        |t| u64::from(t.health != "unhealthy"),
    ),
    (
        "target_new_flows",
        "Flows opened to the target",
        MetricType::Counter,
        |t| t.new_flows,
    ),
    (
        "target_active_flows",
        "Live flows to the target, at the last sweep",
        MetricType::Gauge,
        |t| t.active_flows,
    ),
];

/// The OpenMetrics text, names prefixed `pl_`: the counters in `stats`, the flow table
/// (none without a data path) and reloads.
pub fn render(
    stats: &StatsReport,
    table: Option<&FlowTableReport>,
    reloads: &Reloads,
    cluster: Option<&crate::cluster::ClusterStatus>,
) -> String {
    // A cluster node's every family carries its name.
    let mut registry = match cluster {
        Some(c) => Registry::with_prefix_and_labels(
            "pl",
            [("node".into(), c.node.clone().into())].into_iter(),
        ),
        None => Registry::with_prefix("pl"),
    };
    registry.register_collector(Box::new(Snapshot {
        stats: stats.clone(),
        table: table.cloned(),
        reloads: reloads.clone(),
        cluster: cluster.cloned(),
    }));
    let mut out = String::new();
    // Writing into a String cannot fail.
    let _ = text::encode(&mut out, &registry);
    out
}
