//! `--plot DIR`: SVG charts of a run, beside the table. For each scenario, the throughput
//! over time of every wait on the receiver it made (deliveries/s in 250 ms steps), with the
//! scenario's ceilings as horizontal lines; for `latency`, the distribution of herald's
//! insert→receipt latency against the bare change stream's at the same rate (percentile
//! against milliseconds).
//!
//! The scenarios record what they see as they run (`crate::samples`); [`write`] draws
//! what one scenario recorded and forgets it.

use plotters::prelude::*;
use std::path::{Path, PathBuf};

use crate::harness::Outcome;
use crate::samples;

type PlotResult<T> = Result<T, Box<dyn std::error::Error>>;

/// Writes the charts of what `scenario` recorded into `dir`; returns the files written.
pub fn write(dir: &Path, scenario: &str, outcomes: &[Outcome]) -> PlotResult<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let (progress, latencies) = samples::take()?;
    let mut written = Vec::new();
    if !progress.is_empty() {
        let path = dir.join(format!("{scenario}-throughput.svg"));
        throughput_chart(&path, scenario, &progress, outcomes)?;
        written.push(path);
    }
    if !latencies.is_empty() {
        let path = dir.join(format!("{scenario}-latency.svg"));
        latency_chart(&path, scenario, &latencies)?;
        written.push(path);
    }
    Ok(written)
}

/// Requests/s in steps of `step` seconds from (time, cumulative count) samples.
fn rates(seen: &[(f64, u64)], step: f64) -> Vec<(f64, f64)> {
    let mut out = Vec::new();
    let Some(&(mut t0, mut n0)) = seen.first() else {
        return out;
    };
    for &(t, n) in seen {
        if t - t0 >= step {
            out.push((t, n.saturating_sub(n0) as f64 / (t - t0)));
            (t0, n0) = (t, n);
        }
    }
    out
}

fn throughput_chart(
    path: &Path,
    scenario: &str,
    progress: &[samples::Progress],
    outcomes: &[Outcome],
) -> PlotResult<()> {
    let series: Vec<(&str, Vec<(f64, f64)>)> = progress
        .iter()
        .map(|(label, seen)| (label.as_str(), rates(seen, 0.25)))
        .collect();
    // Ceilings of rates only (a latency's ceiling is in ms).
    let ceilings: Vec<(&str, f64)> = outcomes
        .iter()
        .filter(|o| o.metric.contains("/s"))
        .filter_map(|o| o.ceiling.map(|c| (o.metric.as_str(), c)))
        .collect();
    let x_max = series
        .iter()
        .flat_map(|(_, points)| points.iter().map(|p| p.0))
        .fold(1.0, f64::max);
    let y_max = series
        .iter()
        .flat_map(|(_, points)| points.iter().map(|p| p.1))
        .chain(ceilings.iter().map(|c| c.1))
        .fold(1.0, f64::max)
        * 1.1;

    let root = SVGBackend::new(path, (1000, 600)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!("{scenario}: throughput over time"),
            ("sans-serif", 22),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..x_max, 0.0..y_max)?;
    chart
        .configure_mesh()
        .x_desc("seconds since the run began")
        .y_desc("requests/s at the receiver")
        .draw()?;
    for (i, (label, points)) in series.iter().enumerate() {
        let colour = Palette99::pick(i).to_rgba();
        chart
            .draw_series(LineSeries::new(
                points.iter().copied(),
                colour.stroke_width(2),
            ))?
            .label(label.to_string())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], colour));
    }
    for (i, (metric, ceiling)) in ceilings.iter().enumerate() {
        let colour = Palette99::pick(series.len() + i).to_rgba();
        chart
            .draw_series(DashedLineSeries::new(
                [(0.0, *ceiling), (x_max, *ceiling)],
                6,
                4,
                colour.stroke_width(1),
            ))?
            .label(format!("ceiling of {metric}: {ceiling:.0}/s"))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], colour));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}

fn latency_chart(path: &Path, scenario: &str, latencies: &[samples::Latencies]) -> PlotResult<()> {
    // Each set as (percentile, ms), sorted.
    let curves: Vec<(&str, Vec<(f64, f64)>)> = latencies
        .iter()
        .map(|(label, samples)| {
            let mut sorted = samples.clone();
            sorted.sort_unstable();
            let last = sorted.len().saturating_sub(1).max(1) as f64;
            let points = sorted
                .iter()
                .enumerate()
                .map(|(i, ns)| (100.0 * i as f64 / last, *ns as f64 / 1e6))
                .collect();
            (label.as_str(), points)
        })
        .collect();
    let y_max = curves
        .iter()
        .flat_map(|(_, points)| points.iter().map(|p| p.1))
        .fold(1.0, f64::max)
        * 1.1;
    let root = SVGBackend::new(path, (1000, 600)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!("{scenario}: latency distribution against the bare change stream"),
            ("sans-serif", 22),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..100.0, (0.1..y_max).log_scale())?;
    chart
        .configure_mesh()
        .x_desc("percentile")
        .y_desc("ms (log scale)")
        .draw()?;
    for (i, (label, points)) in curves.iter().enumerate() {
        let colour = Palette99::pick(i).to_rgba();
        chart
            .draw_series(LineSeries::new(
                points.iter().map(|&(p, ms)| (p, ms.max(0.1))),
                colour.stroke_width(2),
            ))?
            .label(label.to_string())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], colour));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}
