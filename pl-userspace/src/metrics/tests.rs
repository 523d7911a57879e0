use std::{collections::BTreeSet, path::PathBuf, time::Duration};

use pl_common::stats::{EndpointCounter, EndpointStats, IfaceCounter, IfaceStats};

use super::*;
use crate::stats::SnatReport;

fn target(service: &str, ip: &str, zone: &str, health: &str, mac: bool) -> TargetReport {
    TargetReport {
        service: service.into(),
        ip: ip.parse().expect("ip"),
        zone: zone.into(),
        via: None,
        mac: mac.then(|| "02:00:00:00:00:11".into()),
        health: health.into(),
        last_check: "rst".into(),
        service_failing_open: service == "billing",
        new_flows: 9,
        active_flows: 4,
    }
}

/// What a `pl run` with two networks, two services and some traffic reports.
fn fake() -> (StatsReport, FlowTableReport, Reloads) {
    let mut i = IfaceStats::default();
    i.counters[IfaceCounter::RxPackets as usize] = 100;
    i.counters[IfaceCounter::Ipv4Tcp as usize] = 90;
    i.counters[IfaceCounter::DroppedFragment as usize] = 3;
    i.counters[IfaceCounter::XdpRedirect as usize] = 97;
    let mut e = EndpointStats::default();
    e.counters[EndpointCounter::ToProviderPackets as usize] = 7;
    e.counters[EndpointCounter::RefusedSource as usize] = 2;
    let stats = StatsReport {
        interfaces: vec![
            IfaceReport::new("fw-acme", 2, "native", &i),
            IfaceReport::new("fw-prov", 3, "native", &IfaceStats::default()),
        ],
        endpoints: vec![
            EndpointReport::new("acme-billing", "billing", "acme", &e, 3),
            EndpointReport::new("acme-search", "search", "acme", &e, 0),
        ],
        targets: vec![
            target("billing", "10.9.0.11", "z1", "unhealthy", true),
            target("billing", "10.9.0.12", "z2", "unhealthy", true),
            target("search", "10.9.0.21", "z1", "healthy", false),
        ],
        node: None,
        dns: vec![crate::dns::DnsStats {
            network: "acme".into(),
            addresses: vec!["10.0.0.2".parse().expect("address")],
            queries: 9,
            answers: 5,
            nxdomain: 2,
            refused: 1,
            malformed: 1,
            unsent: 0,
        }],
    };
    let snat = |address: &str, in_use| SnatReport {
        network: "prov".into(),
        address: address.parse().expect("address"),
        in_use,
        capacity: 64_512,
    };
    let table = FlowTableReport {
        entries: 6,
        capacity: 131_072,
        entries6: 2,
        capacity6: 32_768,
        snat: vec![snat("10.9.0.1", 3), snat("10.9.0.2", 0)],
    };
    let mut reloads = Reloads::new(UNIX_EPOCH + Duration::from_secs(1_700_000_000));
    reloads.record(true, UNIX_EPOCH + Duration::from_secs(1_700_000_100));
    reloads.record(false, UNIX_EPOCH + Duration::from_secs(1_700_000_200));
    (stats, table, reloads)
}

fn exposition() -> String {
    let (stats, table, reloads) = fake();
    render(&stats, Some(&table), &reloads, None)
}

#[test]
fn renders_every_counter_with_its_labels() {
    let text = exposition();
    let ep = r#"endpoint="acme-billing",service="billing",network="acme""#;
    for line in [
        format!("pl_endpoint_to_provider_packets_total{{{ep}}} 7"),
        format!(r#"pl_endpoint_refused_total{{{ep},reason="source"}} 2"#),
        format!(r#"pl_endpoint_refused_total{{{ep},reason="snat_exhausted"}} 0"#),
        format!("pl_endpoint_active_flows{{{ep}}} 3"),
        format!("pl_endpoint_revoked_total{{{ep}}} 0"),
        r#"pl_target_resolved{service="billing",target="10.9.0.11",zone="z1"} 1"#.into(),
        r#"pl_target_resolved{service="search",target="10.9.0.21",zone="z1"} 0"#.into(),
        r#"pl_target_healthy{service="billing",target="10.9.0.11",zone="z1"} 0"#.into(),
        r#"pl_service_failing_open{service="billing"} 1"#.into(),
        r#"pl_service_failing_open{service="search"} 0"#.into(),
        r#"pl_target_new_flows_total{service="billing",target="10.9.0.11",zone="z1"} 9"#.into(),
        r#"pl_target_active_flows{service="billing",target="10.9.0.11",zone="z1"} 4"#.into(),
        r#"pl_interface_rx_packets_total{interface="fw-acme"} 100"#.into(),
        r#"pl_interface_frames_total{interface="fw-acme",class="ipv4_tcp"} 90"#.into(),
        r#"pl_interface_frames_total{interface="fw-prov",class="malformed"} 0"#.into(),
        r#"pl_interface_dropped_total{interface="fw-acme",reason="fragment"} 3"#.into(),
        r#"pl_interface_dropped_total{interface="fw-acme",reason="not_ours"} 0"#.into(),
        r#"pl_interface_xdp_actions_total{interface="fw-acme",action="redirect"} 97"#.into(),
        r#"pl_interface_xdp_actions_total{interface="fw-acme",action="drop"} 0"#.into(),
        r#"pl_interface_icmp_frag_needed_total{interface="fw-acme"} 0"#.into(),
        format!(
            r#"pl_build_info{{version="{}",revision="{}"}} 1"#,
            env!("CARGO_PKG_VERSION"),
            env!("PL_GIT_REVISION")
        ),
        "pl_flow_table_entries 6".into(),
        "pl_flow_table_capacity 131072".into(),
        "pl_flow6_table_entries 2".into(),
        "pl_flow6_table_capacity 32768".into(),
        r#"pl_snat_ports_in_use{network="prov",address="10.9.0.1"} 3"#.into(),
        r#"pl_snat_ports_in_use{network="prov",address="10.9.0.2"} 0"#.into(),
        r#"pl_snat_ports_capacity{network="prov",address="10.9.0.1"} 64512"#.into(),
        r#"pl_dns_queries_total{network="acme"} 9"#.into(),
        r#"pl_dns_results_total{network="acme",result="nxdomain"} 2"#.into(),
        r#"pl_dns_results_total{network="acme",result="malformed"} 1"#.into(),
        r#"pl_reloads_total{result="ok"} 1"#.into(),
        r#"pl_reloads_total{result="refused"} 1"#.into(),
        "pl_reload_last_successful 0".into(),
        "pl_reload_last_success_timestamp_seconds 1700000100".into(),
        "# HELP pl_interface_dropped Frames the data path dropped, by reason".into(),
        "# TYPE pl_interface_dropped counter".into(),
        "# EOF".into(),
    ] {
        assert!(text.contains(&line), "metrics lack {line:?}:\n{text}");
    }
    for old in [
        "endpoint_refused_source",
        "interface_dropped_fragment",
        "interface_xdp_pass",
        "interface_ipv4_tcp",
    ] {
        assert!(
            !text.lines().any(|l| l.starts_with(&format!("pl_{old}_"))),
            "{old}: counters of one kind are one metric with a label:\n{text}"
        );
    }
    assert!(
        !text.contains("see README, Counters)."),
        "every family has help of its own:\n{text}"
    );
}

#[test]
#[ignore = "prints the exposition: cargo test -p pl-userspace --lib show_exposition -- --ignored --nocapture"]
fn show_exposition() {
    println!("{}", exposition());
}

#[test]
fn without_a_data_path_there_is_no_flow_table() {
    let (stats, _, reloads) = fake();
    let text = render(&stats, None, &Reloads::new(UNIX_EPOCH), None);
    assert!(!text.contains("pl_flow_table_entries"), "{text}");
    assert!(text.contains("pl_reload_last_successful 1"), "{text}");
    assert!(
        render(&stats, None, &reloads, None).contains("pl_build_info"),
        "build info always"
    );
}

/// Every sample name in an exposition (what a query names: `_total` on counters, `_info`
/// on infos, `_bucket`/`_sum`/`_count` on histograms all appear as written).
fn sample_names(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(str::to_owned)
        .collect()
}

/// Every `pl_...` metric name in `text`: `pl_` not inside a longer word, then
/// `[a-z0-9_]+`.
fn referenced(text: &str) -> BTreeSet<String> {
    let bytes = text.as_bytes();
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let mut out = BTreeSet::new();
    for (at, _) in text.match_indices("pl_") {
        if at > 0 && word(bytes[at - 1]) {
            continue;
        }
        let end = bytes[at..]
            .iter()
            .position(|b| !(b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'_'))
            .map_or(text.len(), |n| at + n);
        out.insert(text[at..end].to_owned());
    }
    out
}

fn dist(path: &str) -> (PathBuf, String) {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../dist")
        .join(path);
    let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    (p, text)
}

/// Names the file uses that pl does not serve.
fn unknown(text: &str, served: &BTreeSet<String>) -> Vec<String> {
    referenced(text).difference(served).cloned().collect()
}

#[test]
fn reference_scanner_finds_names_and_only_names() {
    let found = referenced(
        r#"sum(rate(pl_interface_dropped_total{job="pl"}[5m])) / pl_flow_table_capacity, simpl_x"#,
    );
    let want: BTreeSet<String> = ["pl_interface_dropped_total", "pl_flow_table_capacity"]
        .map(str::to_owned)
        .into();
    assert_eq!(found, want);
    let served = sample_names("# TYPE pl_a counter\npl_a_total{x=\"1\"} 3\npl_b 1\n# EOF\n");
    assert_eq!(unknown("pl_a_total + pl_b", &served), Vec::<String>::new());
    assert_eq!(unknown("rate(pl_a[5m])", &served), vec!["pl_a".to_owned()]);
}

#[test]
fn alert_rules_name_only_metrics_pl_serves() {
    let served = sample_names(&exposition());
    let (path, text) = dist("prometheus/pl-alerts.yml");
    assert_eq!(
        unknown(&text, &served),
        Vec::<String>::new(),
        "{}",
        path.display()
    );
    let docs = yaml_rust2::YamlLoader::load_from_str(&text)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let groups = docs[0]["groups"].as_vec().expect("groups: a list");
    let mut alerts = BTreeSet::new();
    for g in groups {
        assert!(g["name"].as_str().is_some(), "a group without a name");
        for r in g["rules"].as_vec().expect("rules: a list") {
            let name = r["alert"].as_str().expect("every rule is an alert");
            let field = |k: &str| r[k].as_str().is_some_and(|s| !s.trim().is_empty());
            assert!(field("expr") && field("for"), "{name}: expr and for");
            assert!(
                ["critical", "warning"].contains(&r["labels"]["severity"].as_str().unwrap_or("")),
                "{name}: severity critical or warning"
            );
            let notes = &r["annotations"];
            assert!(
                notes["summary"].as_str().is_some() && notes["description"].as_str().is_some(),
                "{name}: summary and description"
            );
            assert!(alerts.insert(name.to_owned()), "{name} twice");
        }
    }
    assert!(alerts.len() >= 8, "{alerts:?}");
    promtool_check_rules(&path);
}

/// `promtool check rules` and the rule unit tests beside the file, where promtool is
/// installed (Debian: `apt-get install prometheus`).
fn promtool_check_rules(path: &std::path::Path) {
    let tests = path.with_file_name("pl-alerts.test.yml");
    for args in [["check", "rules"], ["test", "rules"]] {
        let file = if args[0] == "check" { path } else { &tests };
        match std::process::Command::new("promtool")
            .args(args)
            .arg(file)
            .output()
        {
            Ok(out) => assert!(
                out.status.success(),
                "promtool {} {}:\n{}{}",
                args.join(" "),
                file.display(),
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
            Err(e) => {
                eprintln!(
                    "promtool not run ({e}): skipped `promtool {}`",
                    args.join(" ")
                );
                return;
            }
        }
    }
}

#[test]
fn dashboard_names_only_metrics_pl_serves() {
    let served = sample_names(&exposition());
    let (path, text) = dist("grafana/pl-dashboard.json");
    assert_eq!(
        unknown(&text, &served),
        Vec::<String>::new(),
        "{}",
        path.display()
    );
    let d: serde_json::Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(
        d["title"].is_string() && d["uid"].is_string(),
        "title and uid"
    );
    let panels = d["panels"].as_array().expect("panels");
    let mut ids = BTreeSet::new();
    let mut exprs = 0;
    for p in panels {
        let title = p["title"].as_str().expect("every panel has a title");
        assert!(
            ids.insert(p["id"].as_u64().expect("panel id")),
            "{title}: id twice"
        );
        if p["type"] == "row" {
            continue;
        }
        let targets = p["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "{title}: no query");
        for t in targets {
            let expr = t["expr"]
                .as_str()
                .unwrap_or_else(|| panic!("{title}: expr"));
            assert!(
                !referenced(expr).is_empty(),
                "{title}: {expr} names no pl metric"
            );
            exprs += 1;
        }
    }
    assert!(exprs >= 10, "{exprs} queries");
}

#[test]
fn a_cluster_node_labels_every_family_with_its_name() {
    use crate::cluster::{ClusterStatus, PeerStatus, SyncCounts, ZoneStatus};
    let zone = |z: &str, owner: &str| ZoneStatus {
        zone: z.into(),
        owner: Some(owner.into()),
        role: "primary".into(),
        state: None,
    };
    let c = ClusterStatus {
        node: "fw1".into(),
        zones: vec![zone("z1", "fw1"), zone("z2", "fw2")],
        peers: vec![PeerStatus {
            name: "fw2".into(),
            address: "192.168.100.2".parse().expect("address"),
            heard_ms_ago: Some(120),
            serving: vec!["z2".into()],
            mismatched: false,
        }],
        sync: SyncCounts {
            flows_sent: 9,
            ..SyncCounts::default()
        },
    };
    let stats = StatsReport {
        interfaces: vec![IfaceReport::new(
            "fw-acme",
            2,
            "native",
            &IfaceStats::default(),
        )],
        ..StatsReport::default()
    };
    let text = render(&stats, None, &Reloads::new(UNIX_EPOCH), Some(&c));
    for want in [
        r#"pl_cluster_zone_serving{node="fw1",zone="z1"} 1"#,
        r#"pl_cluster_zone_serving{node="fw1",zone="z2"} 0"#,
        r#"pl_cluster_peer_heard_age_ms{node="fw1",peer="fw2"} 120"#,
        r#"pl_cluster_sync_flows_sent_total{node="fw1"} 9"#,
        r#"pl_interface_rx_packets_total{node="fw1",interface="fw-acme"} 0"#,
    ] {
        assert!(text.contains(want), "{want} not in:\n{text}");
    }
}
