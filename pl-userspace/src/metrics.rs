//! Prometheus metrics (OpenMetrics text, via prometheus-client) from a stats snapshot:
//! every scrape gets what `pl stats` would print, under the same counter names.
//!
//! [`serve`] answers scrapes with hyper on tasks of their own, from the last snapshot
//! `pl run` published: a scrape never waits on the run loop, and a client that connects and
//! says nothing holds only its own connection, for [`HEADER_TIMEOUT`].

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
        self.interfaces(&mut enc)?;
        self.endpoints(&mut enc)?;
        self.targets(&mut enc)?;
        self.services(&mut enc)
    }
}

/// Every gauge's value: a count past `i64::MAX` is shown as the largest it can be.
fn gauge(v: u64) -> ConstGauge {
    ConstGauge::new(i64::try_from(v).unwrap_or(i64::MAX))
}

impl Snapshot {
    fn interfaces(&self, enc: &mut DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
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
        Ok(())
    }

    /// Endpoint counters; the refusals as one metric with a `reason` label.
    fn endpoints(&self, enc: &mut DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
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
            gauge(e.active_flows).encode(m.encode_family(&l)?)?;
        }
        Ok(())
    }

    fn targets(&self, enc: &mut DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        for (name, help, kind, value) in PER_TARGET {
            let mut m = enc.encode_descriptor(name, help, None, kind)?;
            for t in &self.0.targets {
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

/// The OpenMetrics text for `report`, names prefixed `pl_`.
pub fn render(report: &StatsReport) -> String {
    let mut registry = Registry::with_prefix("pl");
    registry.register_collector(Box::new(Snapshot(report.clone())));
    let mut out = String::new();
    // Writing into a String cannot fail.
    let _ = text::encode(&mut out, &registry);
    out
}

const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// How long a client has to send its request headers.
pub const HEADER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);
/// Connections served at once; more are closed at once.
pub const MAX_CONNECTIONS: usize = 128;

type Body = http_body_util::Full<hyper::body::Bytes>;

/// The answer to one request: the snapshot for `GET /metrics`, 404 for other paths, 405
/// for other methods.
fn respond(req: &hyper::Request<hyper::body::Incoming>, snapshot: &str) -> hyper::Response<Body> {
    use hyper::{Method, StatusCode, header};
    let text = |status: StatusCode, body: &str| {
        let mut r = hyper::Response::new(Body::from(body.to_owned()));
        *r.status_mut() = status;
        r
    };
    if req.uri().path() != "/metrics" {
        return text(
            StatusCode::NOT_FOUND,
            "not found: pl serves /metrics only\n",
        );
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut r = text(StatusCode::METHOD_NOT_ALLOWED, "only GET /metrics\n");
        r.headers_mut()
            .insert(header::ALLOW, header::HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    let mut r = hyper::Response::new(Body::from(snapshot.to_owned()));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(CONTENT_TYPE),
    );
    r
}

/// Serves `listener` until the snapshot's sender is dropped, each connection on its own task.
pub async fn serve(
    listener: tokio::net::TcpListener,
    snapshot: tokio::sync::watch::Receiver<std::sync::Arc<str>>,
) {
    let slots = std::sync::Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    let mut done = snapshot.clone();
    loop {
        let stream = tokio::select! {
            changed = done.changed() => match changed {
                Ok(()) => continue,
                Err(_) => return,
            },
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::warn!("metrics: accept: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::debug!("metrics: {MAX_CONNECTIONS} connections open; closed a new one");
            continue;
        };
        let snapshot = snapshot.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let body = snapshot.borrow().clone();
                async move { Ok::<_, std::convert::Infallible>(respond(&req, &body)) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .max_buf_size(16 * 1024)
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
            // Bounded as a whole too: a client that trickles, or never reads, goes.
            let _ = tokio::time::timeout(HEADER_TIMEOUT * 6, conn).await;
            drop(slot);
        });
    }
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
                via: None,
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
    }
}
