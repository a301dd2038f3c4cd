//! Charts of evaluation results with plotters, as PNG or SVG (chosen by the file extension).

use std::path::Path;

use plotters::coord::Shift;
use plotters::prelude::*;

use super::export::ExportError;

/// One rung of a quantization ladder, as charted.
#[derive(Debug, Clone)]
pub struct LadderPoint {
    /// Label (the quant type).
    pub label: String,
    /// File size, MiB.
    pub size_mib: f64,
    /// Mean KLD against the reference.
    pub kld_mean: f64,
    /// Decode tokens/s.
    pub tg_tokens_per_sec: f64,
}

/// One lane's latency figures, as charted.
#[derive(Debug, Clone)]
pub struct LanePoint {
    /// Lane label.
    pub label: String,
    /// Mean time to first token, ms.
    pub ttft_ms_mean: f64,
    /// 95th percentile time to first token, ms.
    pub ttft_ms_p95: f64,
    /// Mean decode tokens/s.
    pub decode_tps_mean: f64,
}

fn err<E: std::fmt::Debug>(e: E) -> ExportError {
    ExportError::Chart(format!("{e:?}"))
}

fn with_backend(
    path: &Path,
    size: (u32, u32),
    draw: impl Fn(&DrawingArea<SVGBackend, Shift>) -> Result<(), ExportError>,
    draw_png: impl Fn(&DrawingArea<BitMapBackend, Shift>) -> Result<(), ExportError>,
) -> Result<(), ExportError> {
    let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, epaint_default_fonts::UBUNTU_LIGHT);
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    // Draw into a temp file, then rename, like every other export.
    let name = path
        .file_name()
        .map_or_else(|| "chart".into(), |n| n.to_string_lossy().into_owned());
    let tmp = path.with_file_name(format!(".{name}.{}.tmp.{ext}", std::process::id()));
    let result = match ext.as_str() {
        "svg" => {
            let root = SVGBackend::new(&tmp, size).into_drawing_area();
            draw(&root).and_then(|()| root.present().map_err(err))
        }
        "png" => {
            let root = BitMapBackend::new(&tmp, size).into_drawing_area();
            draw_png(&root).and_then(|()| root.present().map_err(err))
        }
        other => Err(ExportError::Chart(format!(
            "unknown chart format {other:?}; use a .png or .svg file name"
        ))),
    };
    let result = result.and_then(|()| {
        std::fs::rename(&tmp, path).map_err(|source| ExportError::Io {
            path: path.display().to_string(),
            source,
        })
    });
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Size vs KLD (left) and size vs decode speed (right) for a ladder.
pub fn write_ladder(path: &Path, title: &str, points: &[LadderPoint]) -> Result<(), ExportError> {
    let chart = SizeChart {
        title,
        x_desc: "file size (MiB)",
        left_desc: "mean KLD vs reference (nats/token)",
        right_desc: "decode tok/s",
        points: points
            .iter()
            .map(|p| SizePoint {
                label: p.label.clone(),
                size: p.size_mib,
                left: p.kld_mean,
                right: p.tg_tokens_per_sec,
            })
            .collect(),
    };
    write_size_chart(path, &chart)
}

/// One point of a chart over file size.
#[derive(Debug, Clone)]
pub struct SizePoint {
    /// Label drawn beside it.
    pub label: String,
    /// File size, in the chart's unit.
    pub size: f64,
    /// Value of the left panel.
    pub left: f64,
    /// Value of the right panel.
    pub right: f64,
}

/// Two panels over file size (a quantization ladder, adapter compression levels).
#[derive(Debug, Clone)]
pub struct SizeChart<'a> {
    /// Title.
    pub title: &'a str,
    /// The size axis, with its unit.
    pub x_desc: &'a str,
    /// The left panel's axis.
    pub left_desc: &'a str,
    /// The right panel's axis.
    pub right_desc: &'a str,
    /// Points.
    pub points: Vec<SizePoint>,
}

/// One chart panel: area, axis name, y range top, value, colour.
type Panel<'a, DB> = (
    &'a DrawingArea<DB, Shift>,
    &'a str,
    f64,
    fn(&SizePoint) -> f64,
    RGBColor,
);

/// Writes a [`SizeChart`] as PNG or SVG.
pub fn write_size_chart(path: &Path, chart: &SizeChart) -> Result<(), ExportError> {
    with_backend(
        path,
        (1100, 500),
        |r| draw_size_chart(r, chart),
        |r| draw_size_chart(r, chart),
    )
}

fn draw_size_chart<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, c: &SizeChart) -> Result<(), ExportError> {
    root.fill(&WHITE).map_err(err)?;
    let root = root.titled(c.title, ("sans-serif", 22)).map_err(err)?;
    let (left, right) = root.split_horizontally(550);
    let points = &c.points;
    let x_max = points.iter().map(|p| p.size).fold(1e-6, f64::max) * 1.15;
    let left_max = points.iter().map(|p| p.left).fold(1e-6, f64::max) * 1.25;
    let right_max = points.iter().map(|p| p.right).fold(1.0, f64::max) * 1.25;
    let panels: [Panel<DB>; 2] = [
        (&left, c.left_desc, left_max, |p| p.left, RED),
        (&right, c.right_desc, right_max, |p| p.right, BLUE),
    ];
    for (area, desc, y_max, value, colour) in panels {
        let mut chart = ChartBuilder::on(area)
            .margin(12)
            .x_label_area_size(35)
            .y_label_area_size(60)
            .build_cartesian_2d(0.0..x_max, 0.0..y_max)
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc(c.x_desc)
            .y_desc(desc)
            .draw()
            .map_err(err)?;
        chart
            .draw_series(
                points
                    .iter()
                    .map(|p| Circle::new((p.size, value(p)), 5, colour.filled())),
            )
            .map_err(err)?;
        chart
            .draw_series(points.iter().map(|p| {
                Text::new(
                    format!(" {}", p.label),
                    (p.size, value(p)),
                    ("sans-serif", 15).into_font(),
                )
            }))
            .map_err(err)?;
    }
    Ok(())
}

/// Per-lane latency (TTFT mean and p95) and decode speed, as bars.
pub fn write_lanes(path: &Path, title: &str, lanes: &[LanePoint]) -> Result<(), ExportError> {
    with_backend(
        path,
        (1000, 450),
        |r| draw_lanes(r, title, lanes),
        |r| draw_lanes(r, title, lanes),
    )
}

fn draw_lanes<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    title: &str,
    lanes: &[LanePoint],
) -> Result<(), ExportError> {
    root.fill(&WHITE).map_err(err)?;
    let root = root.titled(title, ("sans-serif", 22)).map_err(err)?;
    let (left, right) = root.split_horizontally(500);
    let n = lanes.len().max(1) as f64;
    let ttft_max = lanes
        .iter()
        .map(|l| l.ttft_ms_p95.max(l.ttft_ms_mean))
        .fold(1.0, f64::max)
        * 1.2;
    let tps_max = lanes.iter().map(|l| l.decode_tps_mean).fold(1.0, f64::max) * 1.2;
    for (area, desc, y_max, is_ttft) in [
        (&left, "TTFT ms (mean, p95)", ttft_max, true),
        (&right, "decode tok/s (mean)", tps_max, false),
    ] {
        let mut chart = ChartBuilder::on(area)
            .margin(12)
            .x_label_area_size(35)
            .y_label_area_size(60)
            .build_cartesian_2d(0.0..n, 0.0..y_max)
            .map_err(err)?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(lanes.len().max(1))
            .x_label_formatter(&|x| {
                let i = x.floor() as usize;
                lanes.get(i).map(|l| l.label.clone()).unwrap_or_default()
            })
            .y_desc(desc)
            .draw()
            .map_err(err)?;
        for (i, l) in lanes.iter().enumerate() {
            let x = i as f64;
            if is_ttft {
                chart
                    .draw_series([Rectangle::new(
                        [(x + 0.15, 0.0), (x + 0.5, l.ttft_ms_mean)],
                        BLUE.filled(),
                    )])
                    .map_err(err)?;
                chart
                    .draw_series([Rectangle::new(
                        [(x + 0.5, 0.0), (x + 0.85, l.ttft_ms_p95)],
                        BLUE.mix(0.4).filled(),
                    )])
                    .map_err(err)?;
            } else {
                chart
                    .draw_series([Rectangle::new(
                        [(x + 0.2, 0.0), (x + 0.8, l.decode_tps_mean)],
                        GREEN.filled(),
                    )])
                    .map_err(err)?;
            }
        }
    }
    Ok(())
}

/// One stack's arena win rate with its 95 % Wilson interval, as charted.
#[derive(Debug, Clone)]
pub struct WinRatePoint {
    /// Stack label.
    pub label: String,
    /// Win rate, 0-1.
    pub win_rate: f64,
    /// Interval, low end.
    pub low: f64,
    /// Interval, high end.
    pub high: f64,
}

/// Arena win rates as bars with their 95 % Wilson intervals as whiskers.
pub fn write_win_rates(path: &Path, title: &str, points: &[WinRatePoint]) -> Result<(), ExportError> {
    with_backend(
        path,
        (800, 450),
        |r| draw_win_rates(r, title, points),
        |r| draw_win_rates(r, title, points),
    )
}

fn draw_win_rates<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    title: &str,
    points: &[WinRatePoint],
) -> Result<(), ExportError> {
    root.fill(&WHITE).map_err(err)?;
    let n = points.len().max(1) as f64;
    let mut chart = ChartBuilder::on(root)
        .caption(title, ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(35)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..n, 0.0..100.0)
        .map_err(err)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(points.len().max(1))
        .x_label_formatter(&|x| {
            let i = x.floor() as usize;
            points.get(i).map(|p| p.label.clone()).unwrap_or_default()
        })
        .y_desc("win rate % (95 % Wilson interval)")
        .draw()
        .map_err(err)?;
    for (i, p) in points.iter().enumerate() {
        let x = i as f64;
        chart
            .draw_series([Rectangle::new(
                [(x + 0.25, 0.0), (x + 0.75, p.win_rate * 100.0)],
                BLUE.mix(0.7).filled(),
            )])
            .map_err(err)?;
        chart
            .draw_series([PathElement::new(
                vec![(x + 0.5, p.low * 100.0), (x + 0.5, p.high * 100.0)],
                BLACK.stroke_width(2),
            )])
            .map_err(err)?;
        for y in [p.low, p.high] {
            chart
                .draw_series([PathElement::new(
                    vec![(x + 0.42, y * 100.0), (x + 0.58, y * 100.0)],
                    BLACK.stroke_width(2),
                )])
                .map_err(err)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ladder_charts_are_written_as_png_and_svg() {
        let dir = tempfile::tempdir().unwrap();
        let pts = vec![
            LadderPoint {
                label: "Q8_0".into(),
                size_mib: 138.0,
                kld_mean: 0.001,
                tg_tokens_per_sec: 90.0,
            },
            LadderPoint {
                label: "Q4_0".into(),
                size_mib: 85.0,
                kld_mean: 0.09,
                tg_tokens_per_sec: 120.0,
            },
        ];
        let png = dir.path().join("l.png");
        write_ladder(&png, "ladder", &pts).unwrap();
        assert_eq!(&std::fs::read(&png).unwrap()[1..4], b"PNG");
        let svg = dir.path().join("l.svg");
        write_ladder(&svg, "ladder", &pts).unwrap();
        let text = std::fs::read_to_string(&svg).unwrap();
        assert!(text.contains("<svg") && text.contains("Q4_0"), "labels are in the SVG");
        let lanes = [LanePoint {
            label: "base".into(),
            ttft_ms_mean: 20.0,
            ttft_ms_p95: 30.0,
            decode_tps_mean: 80.0,
        }];
        write_lanes(&dir.path().join("lanes.svg"), "lanes", &lanes).unwrap();
        let bad = write_ladder(&dir.path().join("l.gif"), "x", &pts).unwrap_err();
        assert!(bad.to_string().contains(".png or .svg"), "{bad}");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 3, "no temp files left");
    }
}
