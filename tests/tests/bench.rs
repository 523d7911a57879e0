//! The benchmark's smoke run: `pl bench --quick` on its own lab. It asserts that every
//! variant moved packets, that the generator's and the sink's counts agree, and that no
//! frame reached the sink other than as its flow says (addresses, ports, checksums);
//! never a speed (speeds belong to `cargo xtask bench` and BENCHMARKS.md).

use std::time::Duration;

use pl_common::bench::{ESTABLISHED_STAGES, NEW_FLOW_STAGES};
use pl_tests::{PL_DEADLINE, output_within, pl_bin, require_kernel, stderr};
use pl_userspace::lab::bench::BenchResults;

/// Runs `pl bench ARGS --json FILE` within `limit` and fails the test unless it succeeds:
/// its results and what it printed.
fn bench(args: &[&str], limit: Duration) -> (BenchResults, String) {
    let json = std::env::temp_dir().join(format!(
        "pl-bench-{}-{}.json",
        std::process::id(),
        args.join("").replace('-', "")
    ));
    let out = output_within(
        std::process::Command::new(pl_bin())
            .args(args)
            .arg("--json")
            .arg(&json),
        limit,
    );
    let printed = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "pl {} failed: {}\n{printed}",
        args.join(" "),
        stderr(&out)
    );
    let text = std::fs::read_to_string(&json)
        .unwrap_or_else(|e| panic!("reading {}: {e}", json.display()));
    let _ = std::fs::remove_file(&json);
    let r = serde_json::from_str(&text).unwrap_or_else(|e| panic!("bench JSON: {e}"));
    (r, printed)
}

#[test]
fn quick_bench_moves_packets_in_every_variant() {
    require_kernel!("quick_bench_moves_packets_in_every_variant");
    let prefix = format!("bq{}-", std::process::id());
    let (r, table) = bench(
        &["bench", "--quick", "--prefix", &prefix],
        Duration::from_secs(240),
    );
    for (name, flows) in [
        ("bare redirect", "1"),
        ("bare redirect, sink not verifying checksums", "1"),
        ("pl established", "1"),
        ("pl established", "1000"),
        ("pl established", "65536"),
        ("pl established, Zipf s=1", "1000"),
        ("pl established, Zipf s=1", "65536"),
        ("pl new flows", "new"),
        ("pl new flows, flow sync on", "new"),
        // The sink counts these only as IPv6 from the IPv6 NLB address to IPv6 targets.
        ("pl IPv6 established", "1000"),
        ("pl IPv6 new flows", "new"),
        // One frame in four a DNS query: the sink counts the data frames.
        ("pl established, DNS flood", "1000"),
        ("nftables DNAT+SNAT", "1"),
        ("nftables DNAT+SNAT", "new"),
    ] {
        let v = r
            .variant(name, flows)
            .unwrap_or_else(|| panic!("no {name} ({flows} flows) in the results"));
        assert!(!v.samples.is_empty(), "{name}: no samples");
        for s in &v.samples {
            assert!(
                s.sent > 0 && s.received > 0,
                "{name} ({flows}): moved nothing: {s:?}"
            );
            // The sink can only count what the generator sent.
            assert!(
                s.received + s.wrong() <= s.sent,
                "{name} ({flows}): received more than sent: {s:?}"
            );
            // Every frame that arrived was rewritten as its flow says, checksums intact.
            assert_eq!(
                s.wrong(),
                0,
                "{name} ({flows}): wrong frames at the sink: {s:?}"
            );
        }
    }
    assert!(r.flow_table_bytes > 0, "no flow-table memory figure");
    // The floor: a buffer that fits L2, and one per flow table, each a plausible latency.
    for flows in [0, 1000, 65536] {
        let f = r
            .floor_at(flows)
            .unwrap_or_else(|| panic!("no pointer chase for {flows} flows"));
        assert!(
            f.bytes > 0 && f.ns_per_load > 0.0 && f.ns_per_load < 10_000.0,
            "pointer chase for {flows} flows: {f:?}"
        );
    }
    for name in ["pl", "nftables", "routing"] {
        let t = r
            .tcp
            .iter()
            .find(|t| t.name == name)
            .unwrap_or_else(|| panic!("no iperf3 result through {name}"));
        assert!(
            t.bits_per_second > 0.0,
            "iperf3 through {name} moved nothing"
        );
    }
    for row in [
        "pl established, 1000 flows / bare redirect",
        "dependent misses",
        "flows over 1000, Zipf s=1",
        "pl new flows / nftables new flows",
        "pl new flows, flow sync on / off",
        "ns per packet IPv6 adds over IPv4, established, 1000 flows",
        "pl IPv6 / pl IPv4, new flows",
        "ns per DNS query on the forwarding CPU",
    ] {
        assert!(table.contains(row), "no `{row}` in the table:\n{table}");
    }
    // The flood reached pl's DNS server: it took queries off its socket.
    assert!(
        !r.dns.is_empty() && r.dns.iter().all(|d| d.queries > 0),
        "the DNS flood never reached the server: {:?}",
        r.dns
    );
    // Flow sync sent what the synced runs opened (new, then refreshed and ended: at least
    // once each).
    let (created, sent) = r
        .sync
        .iter()
        .fold((0, 0), |(c, s), x| (c + x.created, s + x.sent));
    assert!(
        created > 0 && sent >= created,
        "flow sync sent {sent} of the {created} flows the synced runs opened"
    );
}

/// `pl bench --quick --tables-only`: every flow-table design at each flow count, uniform
/// and Zipf, reading and writing; the bench itself fails if a lookup does not find the
/// flow it filled, so this also checks the slot table's lookups in the kernel.
#[test]
fn flow_table_designs_are_measured_side_by_side() {
    require_kernel!("flow_table_designs_are_measured_side_by_side");
    let (r, table) = bench(&["bench", "--quick", "--tables-only"], PL_DEADLINE);
    for flows in [1000, 65536] {
        let rows: Vec<_> = r.tables.iter().filter(|t| t.flows == flows).collect();
        assert_eq!(rows.len(), 12, "flow-table rows at {flows} flows: {rows:?}");
        for t in rows {
            assert!(
                t.bytes >= 64 * 2 * u64::from(flows) && t.ns_per_lookup < 100_000.0,
                "{t:?}"
            );
        }
    }
    assert!(
        table.contains("| open addressing, 64-byte slots, load 0.50 (PL_FLOWS) | 65536 |"),
        "{table}"
    );
}

/// `pl bench --quick --stages-only`: the data path timed stage by stage, live. The bench
/// itself fails if a stage's copy lets a frame through (its stop never reached), if the
/// product's copy does not forward every path as its flows say, or if established frames
/// make or remove flows; this checks every stage of both paths has its row.
#[test]
fn data_path_is_timed_stage_by_stage() {
    require_kernel!("data_path_is_timed_stage_by_stage");
    let prefix = format!("bs{}-", std::process::id());
    let (r, table) = bench(
        &["bench", "--quick", "--stages-only", "--prefix", &prefix],
        Duration::from_secs(180),
    );
    for (path, stages) in [
        ("established UDP, 1000 flows", &ESTABLISHED_STAGES[..]),
        ("new flow (TCP SYN)", &NEW_FLOW_STAGES[..]),
    ] {
        let rows: Vec<_> = r.stages.iter().filter(|s| s.path == path).collect();
        assert_eq!(rows.len(), stages.len() + 1, "{path}: {rows:?}");
        for ((_, label), row) in stages.iter().zip(&rows) {
            assert_eq!(row.stage, *label, "{path}");
        }
        let (first, whole) = (rows[0], rows[rows.len() - 1]);
        assert!(
            first.ns > 0.0 && whole.ns > first.ns,
            "{path}: the whole path costs no more than entering it: {rows:?}"
        );
    }
    assert!(
        table.contains("| new flow (TCP SYN) | both home slots touched"),
        "{table}"
    );
}
