//! Prometheus metrics (OpenMetrics text, via prometheus-client) from a stats snapshot:
//! every scrape renders what `pl stats` would print, under the same counter names.

use pl_common::stats::{EndpointCounter, IfaceCounter};
use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeMetric as _, text},
    metrics::{MetricType, counter::ConstCounter, gauge::ConstGauge},
    registry::Registry,
};

use crate::stats::{EndpointReport, StatsReport, TargetReport};

const REFUSED: &str = "refused_";

#[derive(Debug)]
struct Snapshot(StatsReport);

type Labels = Vec<(String, String)>;

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// An endpoint's labels, with a refusal `reason` where one applies.
fn endpoint_labels(e: &EndpointReport, reason: Option<&str>) -> Labels {
    let mut l = labels(&[
        ("endpoint", &e.name),
        ("service", &e.service),
        ("network", &e.network),
    ]);
    l.extend(reason.map(|r| ("reason".to_owned(), r.to_owned())));
    l
}

impl Collector for Snapshot {
    fn encode(&self, mut enc: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        for &c in IfaceCounter::ALL {
            let name = format!("interface_{}", c.name());
            let mut m = enc.encode_descriptor(
                &name,
                "per-interface counter (see README, Counters)",
                None,
                MetricType::Counter,
            )?;
            for i in &self.0.interfaces {
                let l = labels(&[("interface", &i.name)]);
                ConstCounter::new(i.get(c)).encode(m.encode_family(&l)?)?;
            }
        }
        for &c in EndpointCounter::ALL
            .iter()
            .filter(|c| !c.name().starts_with(REFUSED))
        {
            let name = format!("endpoint_{}", c.name());
            let mut m = enc.encode_descriptor(
                &name,
                "per-endpoint counter (see README, Counters)",
                None,
                MetricType::Counter,
            )?;
            for e in &self.0.endpoints {
                let l = endpoint_labels(e, None);
                ConstCounter::new(e.get(c)).encode(m.encode_family(&l)?)?;
            }
        }
        let mut m = enc.encode_descriptor(
            "endpoint_refused",
            "new flows refused, by reason",
            None,
            MetricType::Counter,
        )?;
        for e in &self.0.endpoints {
            for &c in EndpointCounter::ALL
                .iter()
                .filter(|c| c.name().starts_with(REFUSED))
            {
                let reason = &c.name()[REFUSED.len()..];
                let l = endpoint_labels(e, Some(reason));
                ConstCounter::new(e.get(c)).encode(m.encode_family(&l)?)?;
            }
        }
        let mut m = enc.encode_descriptor(
            "endpoint_active_flows",
            "live flows",
            None,
            MetricType::Gauge,
        )?;
        for e in &self.0.endpoints {
            let l = endpoint_labels(e, None);
            ConstGauge::new(i64::try_from(e.active_flows).unwrap_or(i64::MAX))
                .encode(m.encode_family(&l)?)?;
        }
        type Metric = (
            &'static str,
            &'static str,
            MetricType,
            fn(&TargetReport) -> u64,
        );
        let per_target: [Metric; 4] = [
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
                "flows opened to the target",
                MetricType::Counter,
                |t| t.new_flows,
            ),
            (
                "target_active_flows",
                "live flows to the target",
                MetricType::Gauge,
                |t| t.active_flows,
            ),
        ];
        for (name, help, kind, value) in per_target {
            let mut m = enc.encode_descriptor(name, help, None, kind)?;
            for t in &self.0.targets {
                let ip = t.ip.to_string();
                let l = labels(&[("service", &t.service), ("target", &ip), ("zone", &t.zone)]);
                let v = value(t);
                if matches!(kind, MetricType::Counter) {
                    ConstCounter::new(v).encode(m.encode_family(&l)?)?;
                } else {
                    ConstGauge::new(i64::try_from(v).unwrap_or(i64::MAX))
                        .encode(m.encode_family(&l)?)?;
                }
            }
        }
        let mut m = enc.encode_descriptor(
            "service_failing_open",
            "1 if every target of the service is unhealthy and all of them take flows",
            None,
            MetricType::Gauge,
        )?;
        let mut services: Vec<(&str, bool)> = self
            .0
            .targets
            .iter()
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

/// The OpenMetrics text for `report`, names prefixed `pl_`.
pub fn render(report: &StatsReport) -> String {
    let mut registry = Registry::with_prefix("pl");
    registry.register_collector(Box::new(Snapshot(report.clone())));
    let mut out = String::new();
    // Writing into a String cannot fail.
    let _ = text::encode(&mut out, &registry);
    out
}

/// A whole HTTP/1.1 response carrying `body`.
pub fn http_response(body: &str) -> String {
    format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/openmetrics-text; version=1.0.0; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::IfaceReport;
    use pl_common::stats::{EndpointStats, IfaceStats};

    #[test]
    fn renders_every_counter_with_its_labels() {
        let mut e = EndpointStats::default();
        e.counters[EndpointCounter::ToProviderPackets as usize] = 7;
        e.counters[EndpointCounter::RefusedSource as usize] = 2;
        let report = StatsReport {
            interfaces: vec![IfaceReport::new(
                "fw-acme",
                2,
                "native",
                &IfaceStats::default(),
            )],
            endpoints: vec![EndpointReport::new(
                "acme-billing",
                "billing",
                "acme",
                &e,
                3,
            )],
            targets: vec![TargetReport {
                service: "billing".into(),
                ip: "10.9.0.11".parse().expect("ip"),
                zone: "z1".into(),
                mac: Some("02:00:00:00:00:11".into()),
                health: "unhealthy".into(),
                last_check: "rst".into(),
                service_failing_open: true,
                new_flows: 9,
                active_flows: 4,
            }],
        };
        let text = render(&report);
        for line in [
            r#"pl_endpoint_to_provider_packets_total{endpoint="acme-billing",service="billing",network="acme"} 7"#,
            r#"pl_endpoint_refused_total{endpoint="acme-billing",service="billing",network="acme",reason="source"} 2"#,
            r#"pl_endpoint_active_flows{endpoint="acme-billing",service="billing",network="acme"} 3"#,
            r#"pl_target_resolved{service="billing",target="10.9.0.11",zone="z1"} 1"#,
            r#"pl_target_healthy{service="billing",target="10.9.0.11",zone="z1"} 0"#,
            r#"pl_service_failing_open{service="billing"} 1"#,
            r#"pl_target_new_flows_total{service="billing",target="10.9.0.11",zone="z1"} 9"#,
            r#"pl_target_active_flows{service="billing",target="10.9.0.11",zone="z1"} 4"#,
            r#"pl_interface_rx_packets_total{interface="fw-acme"} 0"#,
            "# EOF",
        ] {
            assert!(text.contains(line), "metrics lack {line:?}:\n{text}");
        }
        assert!(
            !text.contains("endpoint_refused_source"),
            "refusals must be one metric with a reason label"
        );
        assert!(http_response(&text).starts_with("HTTP/1.1 200 OK\r\n"));
    }
}
