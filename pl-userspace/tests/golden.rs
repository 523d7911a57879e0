//! The human outputs of `pl stats`, `pl flows` and `pl flows --watch`, rendered from fixed
//! reports and compared with `tests/golden/*.txt`. `UPDATE_GOLDEN=1 cargo test -p
//! pl-userspace --test golden` rewrites the files (review the diff before committing).

use std::{collections::BTreeMap, net::Ipv4Addr, path::PathBuf};

use pl_common::stats::{EndpointCounter, EndpointStats, IfaceCounter, IfaceStats};
use pl_userspace::{
    flows::{self, FlowReport, WatchEvent},
    output::{Format, WIDTH},
    stats::{EndpointReport, IfaceReport, StatsReport, TargetReport},
};

/// `counters` (every counter, at 0) with `pairs` set; a name not among them is a typo.
fn set(counters: &mut BTreeMap<String, u64>, pairs: &[(&str, u64)]) {
    for &(name, value) in pairs {
        *counters
            .get_mut(name)
            .unwrap_or_else(|| panic!("no counter {name}")) = value;
    }
}

/// Two interfaces, two endpoints with long names, an on-link, a routed and an unresolved
/// target.
fn stats() -> StatsReport {
    let mut acme = IfaceReport::new("fw-acme", 4, "native", &IfaceStats::default());
    set(
        &mut acme.counters,
        &[
            ("rx_packets", 1_482_903),
            ("rx_bytes", 1_204_331_870),
            ("arp", 41),
            ("ipv4_tcp", 1_482_790),
            ("ipv4_udp", 66),
            ("ipv4_other", 6),
            ("arp_replied", 20),
            ("dropped_not_ours", 3),
            ("dropped_martian", 1),
            ("dropped_icmp", 2),
            ("xdp_drop", 27),
            ("xdp_tx", 20),
            ("xdp_redirect", 1_482_856),
        ],
    );
    let mut prov = IfaceReport::new("fw-prov", 5, "native", &IfaceStats::default());
    set(
        &mut prov.counters,
        &[
            ("rx_packets", 1_391_022),
            ("rx_bytes", 9_817_250_004),
            ("arp", 12),
            ("ipv4_tcp", 1_391_010),
            ("arp_replied", 6),
            ("arp_learned", 6),
            ("dropped_no_flow", 4),
            ("xdp_drop", 4),
            ("xdp_tx", 6),
            ("xdp_redirect", 1_391_012),
        ],
    );
    let endpoint = |name, service, network, active_flows| {
        let none = EndpointStats::default();
        EndpointReport::new(name, service, network, &none, active_flows)
    };
    let mut billing = endpoint("acme-corp-billing-eu-west-1", "billing-api", "acme", 2);
    set(
        &mut billing.counters,
        &[
            ("to_provider_packets", 1_482_790),
            ("to_provider_bytes", 1_190_220_310),
            ("to_consumer_packets", 1_391_010),
            ("to_consumer_bytes", 9_800_112_954),
            ("new_flows", 1_204),
            ("mss_clamped", 2_408),
            ("refused_source", 17),
            ("refused_not_syn", 2),
        ],
    );
    let mut payments = endpoint("globex-payments-gateway-prod", "payments", "globex", 0);
    set(&mut payments.counters, &[("refused_not_accepted", 5)]);
    let target = |service: &str,
                  ip: Ipv4Addr,
                  zone: &str,
                  via: Option<Ipv4Addr>,
                  mac: Option<&str>,
                  health: &str| TargetReport {
        service: service.to_owned(),
        ip: ip.into(),
        zone: zone.to_owned(),
        via: via.map(Into::into),
        mac: mac.map(str::to_owned),
        health: health.to_owned(),
        last_check: if health == "healthy" {
            "syn-ack"
        } else {
            "timeout"
        }
        .to_owned(),
        service_failing_open: health == "unhealthy",
        new_flows: if health == "healthy" { 602 } else { 0 },
        active_flows: if health == "healthy" { 1 } else { 0 },
    };
    StatsReport {
        interfaces: vec![acme, prov],
        endpoints: vec![billing, payments],
        targets: vec![
            target(
                "billing-api",
                Ipv4Addr::new(10, 60, 0, 5),
                "eu-west-1a",
                None,
                Some("0a:58:0a:3c:00:05"),
                "healthy",
            ),
            target(
                "billing-api",
                Ipv4Addr::new(10, 70, 1, 7),
                "eu-west-1b",
                Some(Ipv4Addr::new(10, 60, 0, 1)),
                Some("0a:58:0a:3c:00:01"),
                "healthy",
            ),
            target(
                "payments",
                Ipv4Addr::new(10, 61, 0, 9),
                "eu-west-1a",
                None,
                None,
                "unhealthy",
            ),
        ],
        node: None,
        dns: vec![pl_userspace::dns::DnsStats {
            network: "acme".to_owned(),
            addresses: vec!["10.50.0.2".parse().expect("address")],
            queries: 1_204,
            answers: 1_180,
            nxdomain: 17,
            refused: 5,
            malformed: 2,
            unsent: 0,
        }],
    }
}

/// A TCP flow to the on-link target and a UDP one to the routed target.
fn flows() -> Vec<FlowReport> {
    let flow = |proto: &str, consumer: &str, nlb: &str, target: &str, state: &str| FlowReport {
        proto: proto.to_owned(),
        network: "acme".to_owned(),
        endpoint: "acme-corp-billing-eu-west-1".to_owned(),
        service: "billing-api".to_owned(),
        consumer: consumer.parse().expect("consumer"),
        endpoint_addr: "10.1.0.100:443".parse().expect("endpoint address"),
        nlb: nlb.parse().expect("nlb"),
        target: target.parse().expect("target"),
        state: state.to_owned(),
        age_s: 3_725,
        idle_s: 2,
        to_provider_packets: 1_482_790,
        to_provider_bytes: 1_190_220_310,
        to_consumer_packets: 1_391_010,
        to_consumer_bytes: 9_800_112_954,
    };
    vec![
        flow(
            "tcp",
            "10.1.0.10:45678",
            "10.60.0.2:40001",
            "10.60.0.5:8443",
            "established",
        ),
        flow(
            "udp",
            "10.1.0.11:53124",
            "10.60.0.3:40002",
            "10.70.1.7:8443",
            "replied",
        ),
    ]
}

/// An open, a refusal and a close.
fn watch_events() -> [WatchEvent; 3] {
    let base = WatchEvent {
        time: Some("2026-12-02T05:01:02.123Z".to_owned()),
        event: "open".to_owned(),
        proto: "tcp".to_owned(),
        endpoint: "acme-corp-billing-eu-west-1".to_owned(),
        service: "billing-api".to_owned(),
        network: "acme".to_owned(),
        consumer: "10.1.0.10:45678".parse().expect("consumer"),
        endpoint_addr: "10.1.0.100:443".parse().expect("endpoint address"),
        nlb: Some("10.60.0.2:40001".parse().expect("nlb")),
        target: Some("10.60.0.5:8443".parse().expect("target")),
        reason: None,
        state: None,
    };
    let refused = WatchEvent {
        time: Some("2026-12-02T05:01:02.480Z".to_owned()),
        event: "refused".to_owned(),
        consumer: "10.1.0.66:51000".parse().expect("consumer"),
        nlb: None,
        target: None,
        reason: Some("source".to_owned()),
        ..base.clone()
    };
    let close = WatchEvent {
        time: Some("2026-12-02T06:03:07.002Z".to_owned()),
        event: "close".to_owned(),
        state: Some("closing".to_owned()),
        ..base.clone()
    };
    [base, refused, close]
}

/// The events as `pl flows --watch` prints them.
fn watch_lines() -> String {
    watch_events().iter().map(|e| e.line() + "\n").collect()
}

/// Compares `text` with `tests/golden/<name>` (`.txt` unless it has an extension), or rewrites it under `UPDATE_GOLDEN=1`.
fn golden(name: &str, text: &str) {
    let file = if name.contains('.') {
        name.to_owned()
    } else {
        format!("{name}.txt")
    };
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(file);
    if std::env::var_os("UPDATE_GOLDEN").is_some_and(|v| v == "1") {
        std::fs::write(&path, text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        return;
    }
    let want = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (UPDATE_GOLDEN=1 writes it)\nrendered:\n{text}",
            path.display()
        )
    });
    assert!(
        text == want,
        "{name} differs from {} (UPDATE_GOLDEN=1 rewrites it)\n--- rendered:\n{text}--- golden:\n{want}",
        path.display()
    );
}

/// The default outputs fit a 100-column terminal.
fn fits(name: &str, text: &str) {
    for line in text.lines() {
        assert!(
            line.chars().count() <= usize::from(WIDTH),
            "{name}: a line of {} characters:\n{line}\n{text}",
            line.chars().count()
        );
    }
}

#[test]
fn stats_default_shows_counters_as_rows_without_zeros() {
    let text = stats().text(Format::Table, false);
    fits("stats", &text);
    assert!(
        !text.contains("dropped_vlan"),
        "a zero counter shows:\n{text}"
    );
    assert_eq!(text, stats().table(), "table() is the default");
    golden("stats", &text);
}

#[test]
fn stats_all_shows_every_counter() {
    let text = stats().text(Format::Table, true);
    fits("stats_all", &text);
    // The counter is the third cell of an interface's row, the fourth of an endpoint's.
    let iface = IfaceCounter::ALL.iter().map(|c| (c.name(), 2));
    let endpoint = EndpointCounter::ALL.iter().map(|c| (c.name(), 3));
    for (name, cell) in iface.chain(endpoint) {
        let rows = text
            .lines()
            .filter(|l| l.split_whitespace().nth(cell) == Some(name))
            .count();
        assert_eq!(
            rows, 2,
            "{name}: one row per interface or endpoint:\n{text}"
        );
    }
    golden("stats_all", &text);
}

#[test]
fn stats_wide_has_a_column_per_counter() {
    let text = stats().text(Format::Wide, false);
    let header = text.lines().next().expect("a header");
    for c in IfaceCounter::ALL {
        assert!(header.contains(c.name()), "{} not in {header}", c.name());
    }
    golden("stats_wide", &text);
}

#[test]
fn flows_default_fits_and_names_the_service() {
    let text = flows::text(&flows(), Format::Table);
    fits("flows", &text);
    assert!(
        text.lines().skip(1).all(|l| l.contains("billing-api")),
        "{text}"
    );
    assert_eq!(text, flows::table(&flows()), "table() is the default");
    golden("flows", &text);
}

#[test]
fn flows_wide_has_every_column() {
    let text = flows::text(&flows(), Format::Wide);
    let json = serde_json::to_value(&flows()[0]).expect("a flow serializes");
    let header = text.lines().next().expect("a header");
    let headers: Vec<&str> = header.split_whitespace().collect();
    for field in json.as_object().expect("an object").keys() {
        assert!(headers.contains(&field.as_str()), "{field} not in {header}");
    }
    golden("flows_wide", &text);
}

#[test]
fn watch_lines_start_with_the_time() {
    let text = watch_lines();
    for line in text.lines() {
        let (time, _) = line.split_once(' ').expect("a time, then the event");
        assert!(
            time.len() == 24 && time.ends_with('Z') && time.as_bytes()[10] == b'T',
            "{line}"
        );
    }
    golden("watch", &text);
}

/// `-o json` is what scripts read: its fields change only on purpose (new ones may be
/// added; a rename or removal shows here first). As the CLI prints it.
#[test]
fn json_keeps_its_fields() {
    let stats = serde_json::to_string_pretty(&stats()).expect("a report serializes");
    golden("stats.json", &(stats + "\n"));
    let flows = serde_json::to_string_pretty(&flows()).expect("flows serialize");
    golden("flows.json", &(flows + "\n"));
    let lines: String = watch_events()
        .iter()
        .map(|e| serde_json::to_string(e).expect("an event serializes") + "\n")
        .collect();
    golden("watch.jsonl", &lines);
}
