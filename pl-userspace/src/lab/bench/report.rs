//! The results as `pl bench` prints them, and as BENCHMARKS.md (with the plots of `plot`).

use std::{fmt::Write as _, path::Path};

use anyhow::Context as _;

use super::{
    plot,
    results::{
        BARE, BARE_UNVERIFIED, BenchResults, NFT, PL_EST, PL_EST_DNS, PL_NEW, PL_NEW_SYNC, PL_ZIPF,
        PL6_EST, PL6_NEW, Sample, StageResult, VariantResult,
    },
};

/// The results as the table `pl bench` prints and BENCHMARKS.md holds.
pub fn table(r: &BenchResults) -> String {
    let mut out = String::new();
    if !r.variants.is_empty() {
        rates(&mut out, r);
        ratios(&mut out, r);
        counters(&mut out, r);
        real_tcp(&mut out, r);
    }
    designs(&mut out, r);
    out.push_str(&stages(&r.stages));
    let ipv6 = if r.variants.iter().any(|v| v.name.starts_with("pl IPv6")) {
        // The same L4 bytes behind a header 20 bytes longer.
        format!(" ({} in the IPv6 rows)", r.frame_len + 20)
    } else {
        String::new()
    };
    let _ = writeln!(
        out,
        "\n{} CPUs (generator on CPU {}), kernel {}, {}-byte frames{ipv6}",
        r.cpus,
        r.cpus.saturating_sub(1),
        r.kernel,
        r.frame_len
    );
    out
}

/// One row per variant: rates over the repeats, and frames lost.
fn rates(out: &mut String, r: &BenchResults) {
    let _ = writeln!(
        out,
        "| variant | flows | median Mpps | min | max | sent | received | wrong | lost |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|---|---|");
    for v in &r.variants {
        let sent: u64 = v.samples.iter().map(|s| s.sent).sum();
        let recv: u64 = v.samples.iter().map(|s| s.received).sum();
        let wrong: u64 = v.samples.iter().map(Sample::wrong).sum();
        let lost = sent.saturating_sub(recv + wrong);
        let _ = writeln!(
            out,
            "| {} | {} | {:.2} | {:.2} | {:.2} | {sent} | {recv} | {wrong} | {:.1}% |",
            v.name,
            v.flows,
            v.median() / 1e6,
            v.min() / 1e6,
            v.max() / 1e6,
            if sent == 0 {
                0.0
            } else {
                lost as f64 * 100.0 / sent as f64
            }
        );
    }
}

/// The ratios between variants, with their targets; per-packet costs; memory and walk time.
fn ratios(out: &mut String, r: &BenchResults) {
    let ratio = |a: Option<&VariantResult>, b: Option<&VariantResult>| match (a, b) {
        (Some(a), Some(b)) if b.median() > 0.0 => format!("{:.2}x", a.median() / b.median()),
        _ => "n/a".to_owned(),
    };
    let est = r.variant(PL_EST, "1");
    // The targets are stated at 1k flows (issue 16); one flow is the best case.
    let est_1k = r.variant(PL_EST, "1000");
    let _ = writeln!(out);
    let _ = writeln!(out, "| ratio | value | target |");
    let _ = writeln!(out, "|---|---|---|");
    let (bare, nft, new, nft_new) = (
        r.variant(BARE, "1"),
        r.variant(NFT, "1"),
        r.variant(PL_NEW, "new"),
        r.variant(NFT, "new"),
    );
    for (label, a, b, target) in [
        (
            "pl established, 1000 flows / bare redirect",
            est_1k,
            bare,
            ">= 0.85x",
        ),
        (
            "pl established, 1000 flows / nftables",
            est_1k,
            nft,
            ">= 5x",
        ),
        ("pl established, 1 flow / bare redirect", est, bare, ""),
        ("pl established, 1 flow / nftables", est, nft, ""),
        ("pl new flows / bare redirect", new, bare, ""),
        ("pl new flows / nftables", new, nft, ""),
        ("pl new flows / nftables new flows", new, nft_new, ">= 5x"),
        ("pl new flows / pl established", new, est, ">= 0.5x"),
    ] {
        let _ = writeln!(out, "| {label} | {} | {target} |", ratio(a, b));
    }
    if let (Some(new), Some(est)) = (new, est) {
        let _ = writeln!(
            out,
            "| ns added by a new flow over an established packet | {:.0} | <= 300 |",
            ns(new) - ns(est)
        );
    }
    sync(out, r, new);
    dns_flood(out, r, est_1k);
    ipv6(out, r, est_1k, new);
    scale(out, r);
    skew(out, r);
    floor(out, r);
    sink_cost(out, r);
    footprint(out, r);
    if !r.hw_counters.is_empty() {
        let _ = writeln!(out, "| hardware counters | {} | |", r.hw_counters);
    }
}

/// IPv6 against IPv4 in the same run: what an IPv6 packet costs (its frame 20 bytes
/// longer, its flow in the 128-byte-slot table), established at 1000 flows and new.
fn ipv6(
    out: &mut String,
    r: &BenchResults,
    est_1k: Option<&VariantResult>,
    new: Option<&VariantResult>,
) {
    let (est6, new6) = (r.variant(PL6_EST, "1000"), r.variant(PL6_NEW, "new"));
    for (what, v6, v4) in [
        ("established, 1000 flows", est6, est_1k),
        ("new flows", new6, new),
    ] {
        let Some(v6) = v6 else { continue };
        let _ = writeln!(out, "| ns per IPv6 packet, {what} | {:.0} | |", ns(v6));
        if let Some(v4) = v4.filter(|v| v.median() > 0.0) {
            let _ = writeln!(
                out,
                "| ns per packet IPv6 adds over IPv4, {what} | {:.0} | |",
                ns(v6) - ns(v4)
            );
            let _ = writeln!(
                out,
                "| pl IPv6 / pl IPv4, {what} | {:.2}x | |",
                v6.median() / v4.median()
            );
        }
    }
    if let (Some(new6), Some(est6)) = (new6, est6) {
        let _ = writeln!(
            out,
            "| ns added by an IPv6 new flow over an IPv6 established packet | {:.0} | |",
            ns(new6) - ns(est6)
        );
    }
}

/// Established flows with one frame in `every` a DNS query, against none (same run):
/// what a query costs the CPU that forwards, and what the data frames keep.
fn dns_flood(out: &mut String, r: &BenchResults, est_1k: Option<&VariantResult>) {
    let (Some(flood), Some(plain), Some(first)) =
        (r.variant(PL_EST_DNS, "1000"), est_1k, r.dns.first())
    else {
        return;
    };
    let share = 1.0 / f64::from(first.every.max(1));
    // The generator's CPU runs generator, data path and sink, and now the queries' way
    // through XDP and the stack to the server's socket: time per frame sent, split.
    let sent_rate = |v: &VariantResult| {
        median(
            v.samples
                .iter()
                .map(|s| s.sent as f64 / s.seconds.max(1e-9)),
        )
    };
    let (t_flood, t_plain) = (
        1e9 / sent_rate(flood).max(1.0),
        1e9 / sent_rate(plain).max(1.0),
    );
    let per_query = (t_flood - (1.0 - share) * t_plain) / share;
    let qps = median(r.dns.iter().map(|d| d.queries as f64 / d.seconds.max(1e-9)));
    let _ = writeln!(
        out,
        "| pl established, 1000 flows, 1 in {} frames a DNS query / no queries | {:.2}x of the data frames ({:.0} ns per data frame, {:.0} without) | {:.2}x: a query costs what a forwarded frame does |",
        first.every,
        flood.median() / plain.median().max(1.0),
        ns(flood),
        ns(plain),
        1.0 - share
    );
    let _ = writeln!(
        out,
        "| ns per DNS query on the forwarding CPU (up to max_qps the stack to the server's socket, past it an XDP drop) | {per_query:.0} ({:.1}x a forwarded frame) | |",
        per_query / t_plain.max(1.0)
    );
    let _ = writeln!(
        out,
        "| DNS queries pl's server took during the flood, median | {qps:.0} per second | max_qps (10 000 by default) per receiving CPU |"
    );
}

/// The median of `x` (0 for none).
fn median(x: impl Iterator<Item = f64>) -> f64 {
    let mut x: Vec<f64> = x.collect();
    x.sort_by(f64::total_cmp);
    x.get(x.len() / 2).copied().unwrap_or(0.0)
}

/// New flows with flow sync on against off (same run), and whether sync kept up.
fn sync(out: &mut String, r: &BenchResults, new: Option<&VariantResult>) {
    let Some(synced) = r.variant(PL_NEW_SYNC, "new") else {
        return;
    };
    if let Some(new) = new {
        let _ = writeln!(
            out,
            "| pl new flows, flow sync on / off | {:.2}x ({:+.0} ns per new flow) | ~1x: sync is not on the data path |",
            synced.median() / new.median().max(1.0),
            ns(synced) - ns(new)
        );
    }
    let (created, sent) = r
        .sync
        .iter()
        .fold((0, 0), |(c, s), x| (c + x.created, s + x.sent));
    if created > 0 {
        let _ = writeln!(
            out,
            "| flows flow sync sent / flows opened, synced runs | {sent} / {created} ({:.0}%) | >= 100% |",
            sent as f64 * 100.0 / created as f64
        );
        let mut lag: Vec<u64> = r.sync.iter().map(|x| x.catch_up_ms).collect();
        lag.sort_unstable();
        let _ = writeln!(
            out,
            "| flow sync caught up after a new-flow window, median | {} ms for {} flows | a takeover in a flood loses the flows not yet sent |",
            lag[lag.len() / 2],
            created / r.sync.len() as u64
        );
    }
}

/// Hardware counts per frame sent on the generator's CPU (generator, data path and sink),
/// median over the repeats, for every variant that has them.
fn counters(out: &mut String, r: &BenchResults) {
    let Some(events) = r
        .variants
        .iter()
        .flat_map(|v| &v.samples)
        .find(|s| !s.hw.is_empty())
        .map(|s| s.hw.iter().map(|h| h.event.clone()).collect::<Vec<_>>())
    else {
        return;
    };
    let _ = writeln!(
        out,
        "\n| per frame on the generator's CPU | flows | {} |",
        events.join(" | ")
    );
    let _ = writeln!(out, "|---|---|{}", "---|".repeat(events.len()));
    for v in r
        .variants
        .iter()
        .filter(|v| v.samples.iter().any(|s| !s.hw.is_empty()))
    {
        let cells: Vec<String> = events
            .iter()
            .map(|e| {
                let mut per: Vec<f64> = v
                    .samples
                    .iter()
                    .filter_map(|s| {
                        let c = s.hw.iter().find(|h| &h.event == e)?.count;
                        (s.sent > 0).then(|| c / s.sent as f64)
                    })
                    .collect();
                per.sort_by(f64::total_cmp);
                per.get(per.len() / 2).map_or_else(
                    || "n/a".to_owned(),
                    // Misses per frame are small numbers; cycles are not.
                    |&m| {
                        if m < 10.0 {
                            format!("{m:.3}")
                        } else {
                            format!("{m:.1}")
                        }
                    },
                )
            })
            .collect();
        let _ = writeln!(out, "| {} | {} | {} |", v.name, v.flows, cells.join(" | "));
    }
}

/// Nanoseconds per packet at a variant's median rate.
pub(super) fn ns(v: &VariantResult) -> f64 {
    1e9 / v.median().max(1.0)
}

/// Established variants of `name` above one flow, fewest flows first.
pub(super) fn scaled<'r>(r: &'r BenchResults, name: &str) -> Vec<&'r VariantResult> {
    let mut v: Vec<&VariantResult> = r
        .variants
        .iter()
        .filter(|v| v.name == name && v.flows != "1")
        .collect();
    v.sort_by_key(|v| v.flows.parse::<u64>().unwrap_or(u64::MAX));
    v
}

/// ns per packet added by each flow count over the smallest, uniform: in ns, and in
/// dependent loads over a buffer the size of that count's flow table (the floor).
fn scale_in_misses(out: &mut String, r: &BenchResults, scaled: &[&VariantResult]) {
    let Some(first) = scaled.first() else { return };
    for v in &scaled[1..] {
        let added = ns(v) - ns(first);
        let floor = v.flows.parse::<u32>().ok().and_then(|n| r.floor_at(n));
        let misses = match floor {
            Some(f) if f.ns_per_load > 0.0 => format!(
                " = {:.2} dependent misses ({:.0} ns each over {:.0} MiB)",
                added / f.ns_per_load,
                f.ns_per_load,
                f.bytes as f64 / 1048576.0
            ),
            _ => String::new(),
        };
        let target = if v.flows == "1000000" {
            "<= 1 miss"
        } else {
            ""
        };
        let _ = writeln!(
            out,
            "| ns per packet added by {} flows over {}, uniform | {added:.0}{misses} | {target} |",
            v.flows, first.flows
        );
    }
}

/// The same, for flows drawn from Zipf (s = 1): hot flows stay in the cache.
fn skew(out: &mut String, r: &BenchResults) {
    let scaled = scaled(r, PL_ZIPF);
    let Some(first) = scaled.first() else { return };
    for v in &scaled {
        let _ = writeln!(
            out,
            "| ns per packet at {} flows, Zipf s=1 | {:.0} | |",
            v.flows,
            ns(v)
        );
    }
    for v in &scaled[1..] {
        let target = if v.flows == "1000000" { "<= 30" } else { "" };
        let _ = writeln!(
            out,
            "| ns per packet added by {} flows over {}, Zipf s=1 | {:.0} | {target} |",
            v.flows,
            first.flows,
            ns(v) - ns(first)
        );
    }
}

/// The floor: one dependent load over each buffer measured.
fn floor(out: &mut String, r: &BenchResults) {
    for f in &r.floor {
        let what = if f.flows == 0 {
            "fits L2".to_owned()
        } else {
            format!("the {}-flow table's size", f.flows)
        };
        let _ = writeln!(
            out,
            "| dependent load over {:.1} MiB ({what}) | {:.1} ns | |",
            f.bytes as f64 / 1048576.0,
            f.ns_per_load
        );
    }
}

/// What verifying checksums costs the sink, per packet, on the bare redirect; and the
/// established ratio to the limit with that cost taken out of both (the sink shares the
/// forwarder's CPU, so its cost narrows every ratio to the bare redirect).
fn sink_cost(out: &mut String, r: &BenchResults) {
    if let (Some(v), Some(u)) = (r.variant(BARE, "1"), r.variant(BARE_UNVERIFIED, "1")) {
        let cost = ns(v) - ns(u);
        let _ = writeln!(
            out,
            "| ns per packet the sink spends verifying checksums (bare redirect) | {cost:.0} | |"
        );
        if let Some(est) = r.variant(PL_EST, "1000") {
            let _ = writeln!(
                out,
                "| pl established, 1000 flows / bare redirect, the sink's checksum cost taken out of both | {:.2}x | |",
                ns(u) / (ns(est) - cost).max(1.0)
            );
        }
    }
}

/// How the per-packet cost grows with the flow count.
fn scale(out: &mut String, r: &BenchResults) {
    let scaled = scaled(r, PL_EST);
    if let (Some(first), Some(last)) = (scaled.first(), scaled.last()) {
        let loss = 100.0 * (1.0 - last.median() / first.median().max(1.0));
        let _ = writeln!(
            out,
            "| per-packet rate lost from {} to {} flows | {loss:.1}% | < 15% |",
            first.flows, last.flows
        );
        for v in &scaled {
            let _ = writeln!(
                out,
                "| ns per packet at {} flows | {:.0} | |",
                v.flows,
                ns(v)
            );
        }
        scale_in_misses(out, r, &scaled);
    }
}

/// The flow table's memory per flow, and how long a walk of it takes.
fn footprint(out: &mut String, r: &BenchResults) {
    if r.flow_table_bytes > 0 {
        let _ = writeln!(
            out,
            "| flow-table memory per flow | {} B ({} B for a table of {} flows) | |",
            r.flow_table_bytes / r.flow_table_flows.max(1),
            r.flow_table_bytes,
            r.flow_table_flows
        );
    }
    if r.stats_walk_flows > 0 {
        let _ = writeln!(
            out,
            "| `pl stats` with live-flow counts at {} flows (walks the table) | {:.0} ms | |",
            r.stats_walk_flows, r.stats_walk_ms
        );
    }
}

/// One iperf3 stream through pl, nftables and routing at each MTU, and pl / nftables.
fn real_tcp(out: &mut String, r: &BenchResults) {
    if !r.tcp.is_empty() {
        let _ = writeln!(out, "\n| real TCP, one iperf3 stream | MTU | Gbit/s |");
        let _ = writeln!(out, "|---|---|---|");
        for t in &r.tcp {
            let _ = writeln!(
                out,
                "| {} | {} | {:.2} |",
                t.name,
                t.mtu,
                t.bits_per_second / 1e9
            );
        }
        let at = |name: &str, mtu: u32| {
            r.tcp
                .iter()
                .find(|t| t.name == name && t.mtu == mtu)
                .map(|t| t.bits_per_second)
        };
        let _ = writeln!(out, "\n| real TCP ratio | value | target |");
        let _ = writeln!(out, "|---|---|---|");
        for (mtu, target) in [(1500, ""), (9000, ">= 1x")] {
            if let (Some(pl), Some(nft)) = (at("pl", mtu), at("nftables", mtu)) {
                let _ = writeln!(
                    out,
                    "| pl / nftables at MTU {mtu} | {:.2}x | {target} |",
                    pl / nft.max(1.0)
                );
            }
        }
    }
}

/// Flow-table designs side by side: one lookup (no frames), both entries of every flow in
/// the table, in ns and in dependent misses where the floor was measured at that size.
fn designs(out: &mut String, r: &BenchResults) {
    if r.tables.is_empty() {
        return;
    }
    let _ = writeln!(
        out,
        "\n| flow-table design (one lookup, BPF_PROG_TEST_RUN) | flows | ns uniform | dependent misses | ns Zipf s=1 | kernel memory per flow | entries refused |\n|---|---|---|---|---|---|---|"
    );
    for u in r.tables.iter().filter(|t| !t.zipf) {
        let zipf = r
            .tables
            .iter()
            .find(|t| t.zipf && t.design == u.design && t.flows == u.flows)
            .map_or_else(String::new, |z| format!("{:.0}", z.ns_per_lookup));
        let misses = r.floor_at(u.flows).map_or_else(String::new, |f| {
            format!("{:.2}", u.ns_per_lookup / f.ns_per_load)
        });
        let refused = if u.refused == 0 {
            "0".to_owned()
        } else {
            format!(
                "{} ({:.4}%)",
                u.refused,
                f64::from(u.refused) * 100.0 / (2.0 * f64::from(u.flows))
            )
        };
        let _ = writeln!(
            out,
            "| {} | {} | {:.0} | {misses} | {zipf} | {} B | {refused} |",
            u.design,
            u.flows,
            u.ns_per_lookup,
            u.bytes / u64::from(u.flows.max(1)),
        );
    }
}

/// The data path stage by stage: each path's stages in order, the generator CPU's ns per
/// frame with a copy that drops after each, and what each adds to the one before.
pub(super) fn stages(stages: &[StageResult]) -> String {
    let mut out = String::new();
    if stages.is_empty() {
        return out;
    }
    let _ = writeln!(
        out,
        "\n| path | stage (live, the copy drops after it) | ns per frame to here | ns added |\n|---|---|---|---|"
    );
    for s in stages {
        let _ = writeln!(
            out,
            "| {} | {} | {:.0} | {:+.0} |",
            s.path, s.stage, s.ns, s.added
        );
    }
    out
}

/// Writes `BENCHMARKS.md` and `bench.svg` into `dir`: the table, the machine, the exact
/// command, and a bar chart of packets/s per variant and flow count.
pub fn write_report(r: &BenchResults, dir: &Path, command: &str) -> anyhow::Result<()> {
    plot::bars(r, &dir.join("bench.svg"))?;
    plot::scale(r, &dir.join("bench-scale.svg"))?;
    let machine = machine(r);
    let md = format!(
        "# Benchmarks\n\nThe latest full run of `{command}` (`pl bench` without `--quick`) on {machine}. \
         Frames are generated by an XDP program under BPF_PROG_TEST_RUN with live frames (this kernel has no \
         pktgen) on the consumer's veth and counted by an XDP sink on the provider's, which counts a frame as \
         received only if its addresses, ports and checksums are what its flow says (the `wrong` column counts \
         the others); the rate is what the sink received. Variants ran interleaved, {} times each; median, min \
         and max are over those repeats. Uniform flows: frame n is flow n mod N; Zipf s=1: flows drawn with \
         weight 1/(k+1) from a precomputed table. Dependent misses: ns per packet added over 1k flows divided by \
         the latency of a dependent load (a random cyclic pointer chase over 64-byte lines) over a buffer the \
         size of that flow table, measured in the same run on the forwarder's CPU.\n\n\
         ![packets/s per variant](bench.svg)\n\n\
         ![ns per packet against flow count](bench-scale.svg)\n\n{}",
        r.variants.first().map_or(0, |v| v.samples.len()),
        table(r)
    );
    std::fs::write(dir.join("BENCHMARKS.md"), md)
        .with_context(|| format!("writing {}", dir.join("BENCHMARKS.md").display()))?;
    Ok(())
}

/// The machine the run was on: CPUs, their model (this machine's for results from before
/// the model was kept), the kernel.
fn machine(r: &BenchResults) -> String {
    let model = if r.cpu_model.is_empty() {
        cpu_model()
    } else {
        r.cpu_model.clone()
    };
    format!("{} CPUs ({model}), kernel {}", r.cpus, r.kernel)
}

/// This machine's CPU model, from /proc/cpuinfo.
pub(super) fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_owned())
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(json: &str) -> BenchResults {
        serde_json::from_str(json).expect("fixture is bench JSON")
    }

    fn has(table: &str, row: &str) {
        assert!(table.contains(row), "no `{row}` in:\n{table}");
    }

    #[test]
    fn the_report_states_costs_in_misses_skew_and_new_flows() {
        let t = table(&load(include_str!("testdata/new.json")));
        // 1k: 400 ns, 1M: 800 ns; a dependent load over the 1M table: 250 ns.
        has(
            &t,
            "| ns per packet added by 1000000 flows over 1000, uniform | 400 = 1.60 dependent misses (250 ns each over 552 MiB) | <= 1 miss |",
        );
        has(
            &t,
            "| ns per packet added by 65536 flows over 1000, uniform | 100 = 0.56 dependent misses",
        );
        has(
            &t,
            "| ns per packet added by 1000000 flows over 1000, Zipf s=1 | 100 | <= 30 |",
        );
        has(
            &t,
            "| ns per packet added by 65536 flows over 1000, Zipf s=1 | 17 |",
        );
        has(&t, "| pl new flows / nftables new flows | 4.00x | >= 5x |");
        has(
            &t,
            "| ns added by a new flow over an established packet | 600 | <= 300 |",
        );
        has(&t, "| dependent load over 1.0 MiB (fits L2) | 8.0 ns |");
        has(
            &t,
            "| dependent load over 552.0 MiB (the 1000000-flow table's size) | 250.0 ns |",
        );
        has(
            &t,
            "| ns per packet the sink spends verifying checksums (bare redirect) | 50 |",
        );
        // 200 ns bare without checking; pl 400 ns less the 50 the sink spent.
        has(
            &t,
            "| pl established, 1000 flows / bare redirect, the sink's checksum cost taken out of both | 0.57x |",
        );
        // Frames that arrived wrong are their own column, neither received nor lost.
        has(
            &t,
            "| pl new flows | new | 1.00 | 1.00 | 1.00 | 1000003 | 1000000 | 3 | 0.0% |",
        );
        has(
            &t,
            "| nftables DNAT+SNAT | new | 0.25 | 0.25 | 0.25 | 250007 | 250000 | 7 | 0.0% |",
        );
        has(
            &t,
            "| hardware counters | hardware counters not exposed by this VM |",
        );
        // IPv6 at 1000 flows: 500 ns against IPv4's 400; new: 1250 against 1000.
        has(
            &t,
            "| pl IPv6 established | 1000 | 2.00 | 2.00 | 2.00 | 2000000 | 2000000 | 0 | 0.0% |",
        );
        has(
            &t,
            "| ns per IPv6 packet, established, 1000 flows | 500 | |",
        );
        has(
            &t,
            "| ns per packet IPv6 adds over IPv4, established, 1000 flows | 100 | |",
        );
        has(
            &t,
            "| pl IPv6 / pl IPv4, established, 1000 flows | 0.80x | |",
        );
        has(&t, "| ns per IPv6 packet, new flows | 1250 | |");
        has(
            &t,
            "| ns per packet IPv6 adds over IPv4, new flows | 250 | |",
        );
        has(
            &t,
            "| ns added by an IPv6 new flow over an IPv6 established packet | 750 | |",
        );
        has(&t, "64-byte frames (84 in the IPv6 rows)");
    }

    #[test]
    fn hardware_counts_are_per_frame_sent() {
        let mut r = load(include_str!("testdata/new.json"));
        let s = &mut r.variants[3].samples[0]; // pl established, 1000 flows: 2.5 M sent
        s.hw = vec![
            super::super::HwCount {
                event: "cycles".to_owned(),
                count: 2.5e9,
            },
            super::super::HwCount {
                event: "instructions".to_owned(),
                count: 5e9,
            },
        ];
        let t = table(&r);
        has(
            &t,
            "| per frame on the generator's CPU | flows | cycles | instructions |",
        );
        has(&t, "| pl established | 1000 | 1000.0 | 2000.0 |");
        assert!(!table(&load(include_str!("testdata/new.json"))).contains("per frame on"));
    }

    #[test]
    fn results_from_before_the_floor_still_render() {
        let t = table(&load(include_str!("testdata/old.json")));
        has(&t, "| ns per packet at 1000000 flows | 769 |");
        has(
            &t,
            "| ns per packet added by 1000000 flows over 1000, uniform | 392 | <= 1 miss |",
        );
        has(&t, "| pl new flows / nftables new flows | n/a | >= 5x |");
        assert!(!t.contains("Zipf") && !t.contains("dependent load"), "{t}");
    }

    #[test]
    fn the_report_writes_the_markdown_and_both_plots() {
        let dir = std::env::temp_dir().join(format!("pl-bench-report-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        for fixture in [
            include_str!("testdata/new.json"),
            include_str!("testdata/old.json"),
        ] {
            write_report(&load(fixture), &dir, "cargo xtask bench").expect("report");
            let md = std::fs::read_to_string(dir.join("BENCHMARKS.md")).expect("BENCHMARKS.md");
            has(&md, "![ns per packet against flow count](bench-scale.svg)");
            has(&md, "| pl established, 1000 flows / bare redirect |");
            let svg = std::fs::read_to_string(dir.join("bench-scale.svg")).expect("svg");
            has(&svg, "uniform");
            has(&svg, "bare redirect");
        }
        let svg = std::fs::read_to_string(dir.join("bench-scale.svg")).expect("svg");
        assert!(!svg.contains("Zipf"), "old results have no skewed series");
        write_report(&load(include_str!("testdata/new.json")), &dir, "x").expect("report");
        let md = std::fs::read_to_string(dir.join("BENCHMARKS.md")).expect("BENCHMARKS.md");
        has(&md, "on 2 CPUs (Test CPU 9000), kernel 6.1.0-test.");
        let svg = std::fs::read_to_string(dir.join("bench-scale.svg")).expect("svg");
        has(&svg, "Zipf s=1");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
