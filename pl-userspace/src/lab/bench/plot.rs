//! The report's plots: packets/s per variant (bars), and ns per packet against the flow
//! count, uniform and skewed, with the bare redirect's line.

use std::path::Path;

use super::{
    report::{ns, scaled},
    results::{BARE, BenchResults, PL_EST, PL_ZIPF},
};

/// A bar chart of packets/s per variant and flow count, as SVG at `svg`.
pub(super) fn bars(r: &BenchResults, svg: &Path) -> anyhow::Result<()> {
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

/// ns per packet against the flow count (log scale), uniform and Zipf, and the bare
/// redirect's ns per packet as a line: what pl costs above the limit as the table grows.
pub(super) fn scale(r: &BenchResults, svg: &Path) -> anyhow::Result<()> {
    use plotters::prelude::*;
    let series = |name: &str| -> Vec<(f64, f64)> {
        scaled(r, name)
            .iter()
            .filter_map(|v| Some((v.flows.parse::<f64>().ok()?, ns(v))))
            .collect()
    };
    let (uniform, zipf) = (series(PL_EST), series(PL_ZIPF));
    let bare = r.variant(BARE, "1").map(ns);
    let xs = uniform.iter().chain(&zipf).map(|p| p.0);
    let (lo, hi) = xs.fold((f64::MAX, 1.0f64), |(lo, hi), x| (lo.min(x), hi.max(x)));
    let lo = if lo == f64::MAX { 1.0 } else { lo };
    let top = uniform
        .iter()
        .chain(&zipf)
        .map(|p| p.1)
        .chain(bare)
        .fold(1.0, f64::max)
        * 1.2;
    let root = SVGBackend::new(&svg, (900, 500)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!(
                "ns per packet through pl against established flows, {}-byte frames",
                r.frame_len
            ),
            ("sans-serif", 18),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d((lo / 2.0..hi * 2.0).log_scale(), 0.0..top)?;
    chart
        .configure_mesh()
        .x_desc("established flows")
        .y_desc("ns per packet (median)")
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|y| format!("{y:.0}"))
        .draw()?;
    for (points, label, colour) in [(&uniform, "uniform", BLUE), (&zipf, "Zipf s=1", RED)] {
        if points.is_empty() {
            continue;
        }
        chart
            .draw_series(LineSeries::new(
                points.iter().copied(),
                colour.stroke_width(2),
            ))?
            .label(label)
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], colour.stroke_width(2)));
        chart.draw_series(points.iter().map(|&p| Circle::new(p, 4, colour.filled())))?;
        chart.draw_series(points.iter().map(|&(x, y)| {
            Text::new(
                format!("{y:.0}"),
                (x * 1.08, y),
                ("sans-serif", 13).into_font().color(&colour),
            )
        }))?;
    }
    if let Some(b) = bare {
        chart
            .draw_series(LineSeries::new(
                [(lo / 2.0, b), (hi * 2.0, b)],
                BLACK.mix(0.5).stroke_width(1),
            ))?
            .label("bare redirect (the limit)")
            .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], BLACK.mix(0.5)));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperLeft)
        .draw()?;
    root.present()?;
    Ok(())
}
