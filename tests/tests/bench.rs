//! The benchmark's smoke run: `pl bench --quick` on its own lab. It asserts that every
//! variant moved packets and that the generator's and the sink's counts agree; never a
//! speed (speeds belong to `cargo xtask bench` and BENCHMARKS.md).

use pl_tests::{output, pl_bin, require_kernel, stderr};
use pl_userspace::lab::bench::BenchResults;

#[test]
fn quick_bench_moves_packets_in_every_variant() {
    require_kernel!("quick_bench_moves_packets_in_every_variant");
    let json = std::env::temp_dir().join(format!("pl-bench-{}.json", std::process::id()));
    let prefix = format!("bq{}-", std::process::id());
    let out = output(
        std::process::Command::new(pl_bin())
            .args(["bench", "--quick", "--prefix", &prefix, "--json"])
            .arg(&json),
    );
    assert!(
        out.status.success(),
        "pl bench --quick failed: {}\n{}",
        stderr(&out),
        String::from_utf8_lossy(&out.stdout)
    );
    let text = std::fs::read_to_string(&json)
        .unwrap_or_else(|e| panic!("reading {}: {e}", json.display()));
    let _ = std::fs::remove_file(&json);
    let r: BenchResults = serde_json::from_str(&text).unwrap_or_else(|e| panic!("bench JSON: {e}"));
    for (name, flows) in [
        ("bare redirect", "1"),
        ("pl established", "1"),
        ("pl established", "65536"),
        ("pl new flows", "new"),
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
                s.received <= s.sent,
                "{name} ({flows}): received more than sent: {s:?}"
            );
        }
    }
    assert!(r.flow_table_bytes > 0, "no flow-table memory figure");
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
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.contains("pl established / bare redirect"),
        "no ratio table:\n{table}"
    );
}
