//! Live graphs: per-token latency and tokens/s per lane, engine memory by kind over time, the
//! simulated devices, and the requests "Serve lanes" answered.

use egui_plot::{Legend, Line, Plot, PlotPoints, Points};

use crate::ui::app::Runtime;
use crate::ui::state::State;

const MIB: f64 = 1024.0 * 1024.0;

/// The graphs panel.
pub fn graphs_ui(ui: &mut egui::Ui, state: &State, rt: &Runtime) {
    let with_device = !rt.lanes.sims.is_empty();
    let served = rt.tasks.serving.as_ref().map(|s| &s.served).filter(|s| !s.is_empty());
    let plots = 3.0 + if with_device { 2.0 } else { 0.0 } + if served.is_some() { 1.0 } else { 0.0 };
    let width = (ui.available_width() - 16.0) / plots;
    let height = (ui.available_height() - 24.0).max(140.0);
    ui.horizontal(|ui| {
        ui.vertical(|ui| {
            ui.strong("Per-token latency (ms)").on_hover_text("Time between consecutive tokens, per lane");
            Plot::new("latency")
                .width(width)
                .height(height)
                .legend(Legend::default())
                .x_axis_label("token")
                .allow_scroll(false)
                .show(ui, |plot| {
                    for (i, lane) in state.lanes.iter().enumerate() {
                        let pts: PlotPoints = lane
                            .output
                            .tokens
                            .iter()
                            .enumerate()
                            .skip(1)
                            .map(|(k, t)| [k as f64, t.latency_ms])
                            .collect();
                        plot.line(Line::new(format!("lane {}", i + 1), pts));
                    }
                });
        });
        ui.vertical(|ui| {
            ui.strong("Decode rate (tok/s)")
                .on_hover_text("Tokens per second over the last 8 tokens, per lane");
            Plot::new("throughput")
                .width(width)
                .height(height)
                .legend(Legend::default())
                .x_axis_label("token")
                .allow_scroll(false)
                .show(ui, |plot| {
                    for (i, lane) in state.lanes.iter().enumerate() {
                        let lat: Vec<f64> = lane.output.tokens.iter().skip(1).map(|t| t.latency_ms).collect();
                        let pts: PlotPoints = (0..lat.len())
                            .map(|k| {
                                let from = k.saturating_sub(7);
                                let window = &lat[from..=k];
                                let ms: f64 = window.iter().sum();
                                [(k + 1) as f64, if ms > 0.0 { window.len() as f64 * 1000.0 / ms } else { 0.0 }]
                            })
                            .collect();
                        plot.line(Line::new(format!("lane {}", i + 1), pts));
                    }
                });
        });
        ui.vertical(|ui| {
            ui.strong("Engine memory (MiB)").on_hover_text(
                "Resident memory of the engine process, and what it holds: weights (once per model), KV caches, adapters (stacked)",
            );
            Plot::new("memory")
                .width(width)
                .height(height)
                .legend(Legend::default())
                .x_axis_label("seconds")
                .allow_scroll(false)
                .show(ui, |plot| {
                    let m = &rt.telemetry.memory;
                    // Steps: a value holds until the next sample, so nothing rises between samples
                    // that did not.
                    let series = |f: &dyn Fn(&crate::ui::app::MemSample) -> f64| -> PlotPoints {
                        let mut pts: Vec<[f64; 2]> = Vec::with_capacity(m.len() * 2);
                        for s in m.iter() {
                            if let Some(&[_, prev]) = pts.last() {
                                pts.push([s.t_secs, prev]);
                            }
                            pts.push([s.t_secs, f(s) / MIB]);
                        }
                        pts.into()
                    };
                    // Largest first, so each smaller filled area is drawn over the one below it and
                    // stays visible.
                    plot.line(
                        Line::new(
                            "+ adapters",
                            series(&|s| (s.weights_bytes + s.kv_bytes + s.adapter_bytes) as f64),
                        )
                        .fill(0.0),
                    );
                    plot.line(
                        Line::new("+ KV cache", series(&|s| (s.weights_bytes + s.kv_bytes) as f64)).fill(0.0),
                    );
                    plot.line(Line::new("weights", series(&|s| s.weights_bytes as f64)).fill(0.0));
                    plot.line(Line::new("engine RSS", series(&|s| s.rss_bytes as f64)).width(2.0));
                });
        });
        if with_device {
            device_plots(ui, state, rt, width, height);
        }
        if let Some(served) = served {
            served_plot(ui, served, width, height);
        }
    });
}

/// Each answered request's decode rate and time to first token, by served name, in order.
fn served_plot(ui: &mut egui::Ui, served: &[(usize, crate::protocol::ServedRequest)], width: f32, height: f32) {
    let mut names: Vec<&str> = served.iter().map(|(_, r)| r.model.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    ui.vertical(|ui| {
        ui.strong("Served requests").on_hover_text(
            "Requests answered by \"Serve lanes\", in order: decode tok/s and time to first token (ms) of each, \
             as its engine measured them",
        );
        Plot::new("served")
            .width(width)
            .height(height)
            .legend(Legend::default())
            .x_axis_label("request")
            .allow_scroll(false)
            .show(ui, |plot| {
                for name in names {
                    let of = || served.iter().filter(move |(_, r)| r.model == name);
                    let tps: PlotPoints = of().map(|(n, r)| [*n as f64, r.decode_tokens_per_sec]).collect();
                    let ttft: PlotPoints = of().map(|(n, r)| [*n as f64, r.ttft_ms]).collect();
                    // Points, not lines: one request is one measurement, and the first must show.
                    plot.points(Points::new(format!("{name} tok/s"), tps).radius(3.0));
                    plot.points(Points::new(format!("{name} TTFT ms"), ttft).radius(3.0));
                }
            });
    });
}

fn device_plots(ui: &mut egui::Ui, state: &State, rt: &Runtime, width: f32, height: f32) {
    let lanes: Vec<(usize, &crate::ui::app::LaneSim)> = state
        .lanes
        .iter()
        .enumerate()
        .filter_map(|(i, l)| rt.lanes.sims.get(&l.id).map(|s| (i, s)))
        .collect();
    ui.vertical(|ui| {
        ui.strong("Simulated temperature (°C)").on_hover_text(
            "Device temperature over simulated time, per lane with a device; vertical lines are routing decisions",
        );
        Plot::new("sim_temp")
            .width(width)
            .height(height)
            .legend(Legend::default())
            .x_axis_label("simulated s")
            .allow_scroll(false)
            .show(ui, |plot| {
                for (i, sim) in &lanes {
                    let pts: PlotPoints = sim.points.iter().map(|p| [p.t_secs, p.temp_c]).collect();
                    plot.line(Line::new(format!("lane {} {}", i + 1, sim.profile.id), pts));
                    for d in &sim.decisions {
                        plot.vline(egui_plot::VLine::new(
                            format!("lane {} on {}", i + 1, d.accelerator),
                            d.t_secs,
                        ));
                    }
                }
            });
    });
    ui.vertical(|ui| {
        ui.strong("Projected tok/s and throttle")
            .on_hover_text("Decode speed the device would reach now (throttling included), and the DVFS factor x100");
        Plot::new("sim_speed")
            .width(width)
            .height(height)
            .legend(Legend::default())
            .x_axis_label("simulated s")
            .allow_scroll(false)
            .show(ui, |plot| {
                for (i, sim) in &lanes {
                    let pts: PlotPoints = sim.points.iter().map(|p| [p.t_secs, p.decode_tokens_per_sec]).collect();
                    plot.line(Line::new(format!("lane {} tok/s", i + 1), pts));
                    let thr: PlotPoints = sim.points.iter().map(|p| [p.t_secs, p.throttle * 100.0]).collect();
                    plot.line(Line::new(format!("lane {} throttle x100", i + 1), thr));
                }
            });
    });
}
