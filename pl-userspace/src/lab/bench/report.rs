//! The results as `pl bench` prints them, and as BENCHMARKS.md and bench.svg.

use std::{fmt::Write as _, path::Path};

use anyhow::Context as _;

use super::results::{BenchResults, VariantResult};

/// The results as the table `pl bench` prints and BENCHMARKS.md holds.
pub fn table(r: &BenchResults) -> String {
    let mut out = String::new();
    rates(&mut out, r);
    ratios(&mut out, r);
    real_tcp(&mut out, r);
    let _ = writeln!(
        out,
        "\n{} CPUs (generator on CPU {}), kernel {}, {}-byte frames",
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
        "| variant | flows | median Mpps | min | max | sent | received | lost |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|---|");
    for v in &r.variants {
        let sent: u64 = v.samples.iter().map(|s| s.sent).sum();
        let recv: u64 = v.samples.iter().map(|s| s.received).sum();
        let lost = sent.saturating_sub(recv);
        let _ = writeln!(
            out,
            "| {} | {} | {:.2} | {:.2} | {:.2} | {sent} | {recv} | {:.1}% |",
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
    let est = r.variant("pl established", "1");
    let _ = writeln!(out);
    let _ = writeln!(out, "| ratio | value | target |");
    let _ = writeln!(out, "|---|---|---|");
    let (bare, nft, new) = (
        r.variant("bare redirect", "1"),
        r.variant("nftables DNAT+SNAT", "1"),
        r.variant("pl new flows", "new"),
    );
    for (label, a, b, target) in [
        ("pl established / bare redirect", est, bare, ">= 0.85x"),
        ("pl established / nftables", est, nft, ">= 5x"),
        ("pl new flows / bare redirect", new, bare, ""),
        ("pl new flows / nftables", new, nft, ""),
        ("pl new flows / pl established", new, est, ">= 0.5x"),
    ] {
        let _ = writeln!(out, "| {label} | {} | {target} |", ratio(a, b));
    }
    scale(out, r);
    footprint(out, r);
}

/// How the per-packet cost grows with the flow count.
fn scale(out: &mut String, r: &BenchResults) {
    let scaled: Vec<&VariantResult> = r
        .variants
        .iter()
        .filter(|v| v.name == "pl established" && v.flows != "1")
        .collect();
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
                1e9 / v.median().max(1.0)
            );
        }
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

/// Writes `BENCHMARKS.md` and `bench.svg` into `dir`: the table, the machine, the exact
/// command, and a bar chart of packets/s per variant and flow count.
pub fn write_report(r: &BenchResults, dir: &Path, command: &str) -> anyhow::Result<()> {
    chart(r, &dir.join("bench.svg"))?;
    let machine = machine(r);
    let md = format!(
        "# Benchmarks\n\nThe latest full run of `{command}` (`pl bench` without `--quick`) on {machine}. \
         Frames are generated by an XDP program under BPF_PROG_TEST_RUN with live frames (this kernel has no \
         pktgen) on the consumer's veth and counted by an XDP sink on the provider's; the rate is what reached \
         the sink. Variants ran interleaved, {} times each; median, min and max are over those repeats.\n\n\
         ![packets/s per variant](bench.svg)\n\n{}",
        r.variants.first().map_or(0, |v| v.samples.len()),
        table(r)
    );
    std::fs::write(dir.join("BENCHMARKS.md"), md)
        .with_context(|| format!("writing {}", dir.join("BENCHMARKS.md").display()))?;
    Ok(())
}

/// A bar chart of packets/s per variant and flow count, as SVG at `svg`.
fn chart(r: &BenchResults, svg: &Path) -> anyhow::Result<()> {
    use plotters::prelude::*;
    let bars: Vec<(String, f64)> = r
        .variants
        .iter()
        .map(|v| {
            let flows = match v.flows.as_str() {
                "new" => "each frame a new flow".to_owned(),
                "1" => "1 flow".to_owned(),
                n => format!("{n} flows"),
            };
            (format!("{} ({flows})", v.name), v.median() / 1e6)
        })
        .collect();
    let n = bars.len() as u32;
    let top = bars.iter().map(|(_, m)| *m).fold(1.0, f64::max) * 1.2;
    let root = SVGBackend::new(&svg, (900, 60 + 44 * n)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!(
                "Mpps through the forwarder, {}-byte frames (median of repeats)",
                r.frame_len
            ),
            ("sans-serif", 18),
        )
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(260)
        .build_cartesian_2d(0.0..top, (0..n).into_segmented())?;
    let names = bars.clone();
    chart
        .configure_mesh()
        .disable_y_mesh()
        .x_desc("Mpps")
        .y_labels(bars.len())
        .y_label_formatter(&|v| match v {
            SegmentValue::CenterOf(i) | SegmentValue::Exact(i) => names
                .get(*i as usize)
                .map(|(l, _)| l.clone())
                .unwrap_or_default(),
            SegmentValue::Last => String::new(),
        })
        .draw()?;
    chart.draw_series(
        Histogram::horizontal(&chart)
            .style_func(|i, _| {
                let pl = matches!(i, SegmentValue::CenterOf(i) | SegmentValue::Exact(i) if bars[*i as usize].0.starts_with("pl"));
                if pl { BLUE.mix(0.7).filled() } else { BLACK.mix(0.35).filled() }
            })
            .margin(8)
            .data(bars.iter().enumerate().map(|(i, (_, m))| (i as u32, *m))),
    )?;
    chart.draw_series(bars.iter().enumerate().map(|(i, (_, m))| {
        Text::new(
            format!("{m:.2}"),
            (*m + top * 0.01, SegmentValue::CenterOf(i as u32)),
            ("sans-serif", 13),
        )
    }))?;
    root.present()?;
    Ok(())
}

/// The machine the run was on: CPUs, their model, the kernel.
fn machine(r: &BenchResults) -> String {
    format!(
        "{} CPUs ({}), kernel {}",
        r.cpus,
        std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|c| c
                .lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_owned()))
            .unwrap_or_default(),
        r.kernel
    )
}
