//! A PNG chart of a sustained run (plotters, pure Rust; egui's Ubuntu font for text).

use std::path::Path;

use plotters::prelude::*;

use super::model::SustainedReport;
use super::profile::DeviceProfile;

/// Draws decode speed (top) and temperature with the OS state thresholds (bottom) over time,
/// with routing decisions as vertical lines.
pub fn write_png(path: &Path, profile: &DeviceProfile, report: &SustainedReport) -> anyhow::Result<()> {
    // Registering twice is harmless; the font is static data.
    let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, epaint_default_fonts::UBUNTU_LIGHT);
    let root = BitMapBackend::new(path, (1000, 700)).into_drawing_area();
    root.fill(&WHITE)?;
    let (top, bottom) = root.split_vertically(350);
    let t_max = report.samples.last().map_or(1.0, |s| s.t_secs).max(1.0);
    let speed_max = report
        .samples
        .iter()
        .map(|s| s.decode_tokens_per_sec)
        .fold(1.0, f64::max)
        * 1.1;
    let mut speed = ChartBuilder::on(&top)
        .caption(
            format!(
                "{}: decode tok/s (burst {:.1}, sustained {:.1}, retained {:.0}%)",
                profile.name,
                report.burst_tokens_per_sec,
                report.sustained_tokens_per_sec,
                report.retention * 100.0
            ),
            ("sans-serif", 20),
        )
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(50)
        .build_cartesian_2d(0.0..t_max, 0.0..speed_max)?;
    speed
        .configure_mesh()
        .x_desc("simulated seconds")
        .y_desc("tok/s")
        .draw()?;
    speed.draw_series(LineSeries::new(
        report.samples.iter().map(|s| (s.t_secs, s.decode_tokens_per_sec)),
        BLUE.stroke_width(2),
    ))?;
    for d in &report.decisions {
        speed.draw_series(LineSeries::new(
            [(d.t_secs, 0.0), (d.t_secs, speed_max)],
            RED.stroke_width(1),
        ))?;
    }
    let temp_min = profile.thermal.ambient_c - 1.0;
    let temp_max = report
        .peak_temp_c
        .max(*profile.thermal.state_thresholds_c.first().unwrap_or(&40.0))
        + 2.0;
    let mut temp = ChartBuilder::on(&bottom)
        .caption(
            format!("temperature °C (states: {})", report.states_visited.join(" > ")),
            ("sans-serif", 20),
        )
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(50)
        .build_cartesian_2d(0.0..t_max, temp_min..temp_max)?;
    temp.configure_mesh().x_desc("simulated seconds").y_desc("°C").draw()?;
    for th in &profile.thermal.state_thresholds_c {
        if *th < temp_max {
            temp.draw_series(LineSeries::new(
                [(0.0, *th), (t_max, *th)],
                BLACK.mix(0.3).stroke_width(1),
            ))?;
        }
    }
    temp.draw_series(LineSeries::new(
        report.samples.iter().map(|s| (s.t_secs, s.temp_c)),
        RED.stroke_width(2),
    ))?;
    root.present()?;
    Ok(())
}
