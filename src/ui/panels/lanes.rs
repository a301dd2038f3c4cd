//! Lanes side by side: model, adapter stack, sampling, streamed output with diff or token
//! view (the stats strip is `lane_stats.rs`).

use crate::metrics::mib;
use crate::protocol::LaneId;
use crate::ui::app::{Command, JobKind, Runtime};
use crate::ui::state::{LaneState, State};
use crate::ui::theme;

/// Draws every lane as a column; returns each lane's rectangle (for drops).
pub fn lanes_ui(
    ui: &mut egui::Ui,
    state: &mut State,
    rt: &Runtime,
    cmds: &mut Vec<Command>,
) -> Vec<(LaneId, egui::Rect)> {
    let n = state.lanes.len().max(1);
    let same = state.same_settings;
    let one_at_a_time = state.one_lane_at_a_time;
    let reference = state.reference_lane;
    let mut rects = Vec::new();
    let n_lanes = state.lanes.len();
    // For each lane with adapters: a lane on the same model without adapters, and its decode speed.
    let references: Vec<Option<(usize, f64)>> = state
        .lanes
        .iter()
        .map(|l| {
            // A remote lane's decode speed includes the network: no like-for-like reference.
            if l.adapters.iter().all(|a| !a.enabled) || l.remote.is_some() {
                return None;
            }
            state.lanes.iter().enumerate().find_map(|(k, other)| {
                let s = other.output.stats.as_ref()?;
                (other.model == l.model
                    && other.remote.is_none()
                    && s.lane.adapter_bytes == 0
                    && s.decode_tokens_per_sec > 0.0)
                    .then_some((k + 1, s.decode_tokens_per_sec))
            })
        })
        .collect();
    ui.columns(n, |cols| {
        for (i, (col, lane)) in cols.iter_mut().zip(state.lanes.iter_mut()).enumerate() {
            col.push_id(lane.id, |ui| {
                let r = egui::Frame::group(ui.style())
                    .show(ui, |ui| {
                        ui.set_min_height(ui.available_height());
                        let place = LanePlace {
                            index: i,
                            n_lanes,
                            settings_from_first: same && i > 0,
                            reference,
                            overhead_reference: references[i],
                            one_at_a_time,
                        };
                        lane_ui(ui, place, lane, rt, cmds);
                    })
                    .response
                    .rect;
                rects.push((lane.id, r));
            });
        }
    });
    rects
}

/// Where a lane sits among the others, for drawing it.
struct LanePlace {
    /// Its position, from 0.
    index: usize,
    /// Lanes in all.
    n_lanes: usize,
    /// Its sampling follows lane 1's.
    settings_from_first: bool,
    /// The reference lane.
    reference: Option<LaneId>,
    /// The lane (number from 1) and decode tok/s the overhead of this lane's adapters is
    /// measured against.
    overhead_reference: Option<(usize, f64)>,
    /// "Run all" runs lanes one after another.
    one_at_a_time: bool,
}

fn lane_ui(ui: &mut egui::Ui, place: LanePlace, lane: &mut LaneState, rt: &Runtime, cmds: &mut Vec<Command>) {
    let LanePlace {
        index,
        n_lanes,
        settings_from_first,
        reference,
        overhead_reference,
        one_at_a_time,
    } = place;
    let id = lane.id;
    ui.horizontal(|ui| {
        ui.strong(format!("Lane {}", index + 1));
        if reference == Some(id) {
            ui.weak("(reference)");
        }
        ui.with_layout(egui::Layout::right_to_left(egui::Align::Center), |ui| {
            if ui
                .add_enabled(n_lanes > 1, egui::Button::new("Remove").small())
                .on_hover_text("Remove this lane")
                .clicked()
            {
                cmds.push(Command::RemoveLane(id));
            }
            if ui
                .add_enabled(
                    n_lanes < crate::ui::state::MAX_LANES,
                    egui::Button::new("Duplicate").small(),
                )
                .on_hover_text("Add a copy of this lane next to it")
                .clicked()
            {
                cmds.push(Command::DuplicateLane(id));
            }
        });
    });
    match &lane.remote {
        Some(r) => remote_header(ui, r),
        None => model_picker(ui, lane, rt, cmds),
    }
    if let Some(p) = rt.engine.load_progress.get(&id) {
        ui.horizontal(|ui| {
            ui.add(egui::ProgressBar::new(*p).desired_width(160.0).text("loading model"));
            if ui.small_button("Cancel").on_hover_text("Cancel loading").clicked() {
                cmds.push(Command::CancelLoad(id));
            }
        });
    }
    if let Some(err) = lane.output.error.clone() {
        if super::banner_ui(ui, &err) {
            cmds.push(Command::DismissError(id));
        }
    }
    let my_job = rt
        .engine
        .jobs
        .iter()
        .find(|(_, k)| **k == JobKind::Generate { lane: id })
        .map(|(j, _)| *j);
    let running = my_job.is_some();
    // One at a time, the engine runs generations in the order they were sent: one with an older
    // generation still pending has not started yet. Otherwise they all run at once.
    let queued = one_at_a_time
        && my_job.is_some_and(|mine| {
            lane.output.tokens.is_empty()
                && rt
                    .engine
                    .jobs
                    .iter()
                    .any(|(j, k)| *j < mine && matches!(k, JobKind::Generate { .. }))
        });
    let statics = lane
        .model
        .as_deref()
        .map(|m| rt.library.registry.static_for(m))
        .unwrap_or_default();
    for s in &statics {
        ui.horizontal(|ui| {
            ui.weak("static");
            ui.label(file_name(s)).on_hover_text(format!(
                "{}\nPinned to this model in the adapter registry: always applied at scale 1 (nanolab adapters unpin to remove)",
                s.display()
            ));
        });
    }
    adapters_ui(ui, lane, rt, cmds);
    sampling_ui(ui, lane, settings_from_first);
    if lane.remote.is_some() {
        ui.horizontal(|ui| {
            ui.label("Device");
            ui.weak("unavailable").on_hover_text(
                "A remote lane's tokens arrive at the endpoint's speed; the simulated device needs the model file to project its own",
            );
        });
    } else {
        device_ui(ui, lane, rt, cmds);
    }
    ui.separator();
    ui.horizontal(|ui| {
        ui.selectable_value(&mut lane.token_view, false, "Text")
            .on_hover_text("Show the text; words that differ from the reference lane are highlighted");
        ui.selectable_value(&mut lane.token_view, true, "Tokens")
            .on_hover_text("Show tokens coloured by probability; hover or click one for the top-5 alternatives");
        if queued {
            ui.weak("queued");
        } else if running {
            // A static mark: an animated spinner would repaint every frame and, with a software
            // renderer, take CPU from the engine (see docs/performance.md).
            ui.weak("running");
        }
    });
    super::lane_stats::stats_strip(ui, lane, running, queued, overhead_reference);
    egui::ScrollArea::vertical()
        .id_salt("output")
        .stick_to_bottom(true)
        .auto_shrink([false, false])
        .show(ui, |ui| {
            if lane.token_view {
                tokens_ui(ui, lane);
            } else {
                text_ui(ui, lane, rt.lanes.diffs.get(&id));
            }
        });
}

fn file_name(p: &std::path::Path) -> String {
    p.file_name()
        .map_or_else(|| p.display().to_string(), |n| n.to_string_lossy().into_owned())
}

fn remote_header(ui: &mut egui::Ui, r: &crate::protocol::RemoteSpec) {
    ui.horizontal(|ui| {
        ui.label("Remote");
        ui.strong(&r.model).on_hover_text(format!(
            "Runs on {} (OpenAI API){}",
            r.url,
            r.api_key_env
                .as_ref()
                .map_or_else(String::new, |k| format!(", key from ${k}"))
        ));
        ui.weak(&r.url);
    });
}

fn model_picker(ui: &mut egui::Ui, lane: &LaneState, rt: &Runtime, cmds: &mut Vec<Command>) {
    let current = lane
        .model
        .as_deref()
        .map_or_else(|| "choose a model".to_string(), file_name);
    let mut choices: Vec<std::path::PathBuf> = rt.library.installed.iter().map(|m| m.path.clone()).collect();
    for p in rt.library.inspected.keys() {
        if !choices.contains(p)
            && rt
                .library
                .inspected
                .get(p)
                .is_some_and(|r| r.as_ref().is_ok_and(|s| s.kind == crate::gguf::FileKind::Model))
        {
            choices.push(p.clone());
        }
    }
    choices.sort();
    let mut picked = None;
    ui.horizontal(|ui| {
        let label = ui.label("Model");
        egui::ComboBox::from_id_salt("model")
            .selected_text(current)
            .width(ui.available_width() - 8.0)
            .show_ui(ui, |ui| {
                for c in &choices {
                    if ui
                        .selectable_label(lane.model.as_ref() == Some(c), file_name(c))
                        .clicked()
                    {
                        picked = Some(c.clone());
                    }
                }
            })
            .response
            .labelled_by(label.id)
            .on_hover_text("Base model of this lane; lanes on the same file share its weights");
    });
    if let Some(path) = picked {
        cmds.push(Command::SetModel {
            lane: Some(lane.id),
            path,
        });
    }
}

fn adapters_ui(ui: &mut egui::Ui, lane: &mut LaneState, rt: &Runtime, cmds: &mut Vec<Command>) {
    ui.horizontal(|ui| {
        ui.strong("Adapters");
        ui.weak(if lane.adapters.is_empty() {
            "drop LoRA .gguf files or PEFT folders on this lane"
        } else {
            "applied in order"
        });
        if !lane.adapters.is_empty() && lane.remote.is_none() {
            match &rt.tasks.merge {
                Some(m) if m.lane == lane.id => {
                    ui.add(egui::ProgressBar::new(m.fraction).desired_width(100.0).text("merging"))
                        .on_hover_text(format!("writing {}", m.out.display()));
                }
                _ => {
                    if ui
                        .add_enabled(rt.tasks.merge.is_none(), egui::Button::new("Bake into model").small())
                        .on_hover_text("Merge the enabled adapters with their scales into a new model file in models/")
                        .clicked()
                    {
                        cmds.push(Command::MergeStack(lane.id));
                    }
                }
            }
        }
    });
    let id = lane.id;
    let lane_is_local = lane.remote.is_none() && lane.model.is_some();
    for (i, a) in lane.adapters.iter_mut().enumerate() {
        ui.push_id(i, |ui| {
            ui.horizontal(|ui| {
                ui.checkbox(&mut a.enabled, file_name(&a.path))
                    .on_hover_text(format!("{}\nApply this adapter when running", a.path.display()));
                if ui
                    .small_button("Remove")
                    .on_hover_text("Remove this adapter from the lane")
                    .clicked()
                {
                    cmds.push(Command::RemoveAdapter { lane: id, index: i });
                }
                if lane_is_local {
                    adapter_menu_ui(ui, id, i, cmds);
                }
            });
            ui.horizontal(|ui| {
                ui.add(
                    egui::Slider::new(&mut a.scale, 0.0..=2.0)
                        .text("scale")
                        .fixed_decimals(2),
                )
                .on_hover_text(
                    "Adapter scale: 0 = no effect, 1 = as trained; applies to the next run without reloading",
                );
                let ranks: Vec<String> = a.ranks.iter().map(u64::to_string).collect();
                ui.weak(format!("r{} · {}", ranks.join("/"), mib(a.file_bytes)));
            });
        });
    }
}

/// Export and compression of one adapter row.
fn adapter_menu_ui(ui: &mut egui::Ui, lane: LaneId, index: usize, cmds: &mut Vec<Command>) {
    use crate::ui::app::lab::LabCommand;
    let items = [
        (
            "Compress…",
            "Lower the rank by SVD (halving to 1), write each into adapters/ and measure its KLD and same top-1 against this adapter in the lab",
            LabCommand::CompressAdapter { lane, index },
        ),
        (
            "Export as PEFT",
            "adapter_config.json + adapter_model.safetensors in the exports folder",
            LabCommand::ExportAdapter { lane, index, mlx: false },
        ),
        (
            "Export as MLX-LM",
            "adapter_config.json + adapters.safetensors in the exports folder",
            LabCommand::ExportAdapter { lane, index, mlx: true },
        ),
    ];
    ui.menu_button("More", |ui| {
        for (label, tip, command) in items {
            if ui.button(label).on_hover_text(tip).clicked() {
                cmds.push(Command::Lab(command));
                ui.close();
            }
        }
    });
}

fn sampling_ui(ui: &mut egui::Ui, lane: &mut LaneState, from_first: bool) {
    egui::CollapsingHeader::new("Sampling")
        .id_salt("sampling")
        .show(ui, |ui| {
            if from_first {
                ui.weak("Uses lane 1's settings (turn off \"Same settings in all lanes\" to change)");
            }
            ui.add_enabled_ui(!from_first, |ui| {
                let s = &mut lane.sampling;
                ui.add(egui::Slider::new(&mut s.temperature, 0.0..=2.0).text("temperature"))
                    .on_hover_text("0 = greedy and deterministic");
                ui.add(egui::Slider::new(&mut s.top_k, 0..=200).text("top-k"))
                    .on_hover_text("Keep the k most likely tokens (0 = off)");
                ui.add(egui::Slider::new(&mut s.top_p, 0.0..=1.0).text("top-p"))
                    .on_hover_text("Nucleus sampling threshold (1 = off)");
                ui.add(egui::Slider::new(&mut s.min_p, 0.0..=1.0).text("min-p"))
                    .on_hover_text("Drop tokens below this fraction of the best token's probability");
                ui.add(egui::Slider::new(&mut s.repeat_penalty, 1.0..=2.0).text("repeat penalty"))
                    .on_hover_text("Penalise repeated tokens (1 = off)");
                ui.add(egui::Slider::new(&mut s.max_tokens, 1..=1024).text("max tokens"))
                    .on_hover_text("Stop after this many tokens");
                ui.horizontal(|ui| {
                    let l = ui.label("seed");
                    ui.add(egui::DragValue::new(&mut s.seed))
                        .labelled_by(l.id)
                        .on_hover_text("Random seed (same seed, same settings: same output)");
                    let l = ui.label("context");
                    ui.add(egui::DragValue::new(&mut lane.n_ctx).range(256..=32768).speed(64))
                        .labelled_by(l.id)
                        .on_hover_text("Context length in tokens (KV cache size)");
                });
                ui.horizontal(|ui| {
                    let mut auto = lane.gpu_layers.is_none();
                    if ui
                        .checkbox(&mut auto, "GPU layers: auto")
                        .on_hover_text(
                            "All layers on the GPU when nanolab is built with a GPU backend, none on CPU builds",
                        )
                        .changed()
                    {
                        lane.gpu_layers = if auto { None } else { Some(0) };
                    }
                    if let Some(n) = lane.gpu_layers.as_mut() {
                        let l = ui.label("layers");
                        ui.add(egui::DragValue::new(n).range(0..=999))
                            .labelled_by(l.id)
                            .on_hover_text("Layers to offload to the GPU (reloads the model)");
                    }
                });
            });
        });
}

fn device_ui(ui: &mut egui::Ui, lane: &mut LaneState, rt: &Runtime, cmds: &mut Vec<Command>) {
    ui.horizontal(|ui| {
        let label = ui.label("Device");
        let current = lane
            .device
            .as_ref()
            .and_then(|id| rt.library.profiles.iter().find(|p| &p.id == id))
            .map_or_else(|| "none (this machine)".to_string(), |p| p.name.clone());
        let mut picked = None;
        egui::ComboBox::from_id_salt("device")
            .selected_text(current)
            .width(theme::CONTROL_WIDTH)
            .show_ui(ui, |ui| {
                if ui
                    .selectable_label(lane.device.is_none(), "none (this machine)")
                    .clicked()
                {
                    picked = Some(None);
                }
                for p in &rt.library.profiles {
                    if ui
                        .selectable_label(lane.device.as_ref() == Some(&p.id), &p.name)
                        .clicked()
                    {
                        picked = Some(Some(p.id.clone()));
                    }
                }
            })
            .response
            .labelled_by(label.id)
            .on_hover_text(
                "Simulate a phone-class device for this lane: its speed, heat and throttling follow the real tokens",
            );
        if let Some(device) = picked {
            cmds.push(Command::SetDevice { lane: lane.id, device });
        }
        ui.add_enabled(lane.device.is_some(), egui::Checkbox::new(&mut lane.paced, "paced"))
            .on_hover_text("Show the tokens at the simulated device's speed, throttling included");
    });
    let Some(sim) = rt.lanes.sims.get(&lane.id) else { return };
    let fit = crate::sim::fit(&sim.profile, &sim.facts, u64::from(lane.n_ctx));
    if !fit.fits {
        ui.colored_label(
            ui.visuals().error_fg_color,
            format!(
                "Does not fit {}: needs {} (weights + KV at {} tokens + adapters), an app may use {}",
                sim.profile.name,
                mib(fit.needed_bytes),
                lane.n_ctx,
                mib(fit.available_bytes)
            ),
        );
    }
    let last = sim.points.last();
    ui.horizontal_wrapped(|ui| {
        ui.weak("simulated");
        ui.strong(format!("{:.1} °C", sim.temp_c()))
            .on_hover_text("Device temperature (lumped thermal model)");
        ui.strong(sim.state_name())
            .on_hover_text("The OS thermal state an app would see");
        if let Some(p) = last {
            ui.strong(format!("throttle {:.2}", p.throttle))
                .on_hover_text("DVFS performance factor");
            ui.strong(format!("{:.1} tok/s", p.decode_tokens_per_sec))
                .on_hover_text("Projected decode speed on the device now");
        }
        if let Some(d) = sim.decisions.last() {
            ui.weak(format!("on {}", d.accelerator))
                .on_hover_text(format!("{:.1} s: {}", d.t_secs, d.reason));
        }
    });
}

fn text_ui(ui: &mut egui::Ui, lane: &LaneState, diff: Option<&crate::ui::app::DiffSpans>) {
    let text = &lane.output.text;
    match diff {
        Some(spans) if !text.is_empty() => {
            let mut job = egui::text::LayoutJob::default();
            let normal = ui.visuals().text_color();
            let hl = ui.visuals().warn_fg_color;
            for (t, differs) in spans {
                let mut fmt = egui::TextFormat {
                    color: if *differs { hl } else { normal },
                    ..Default::default()
                };
                if *differs {
                    fmt.background = hl.gamma_multiply(0.18);
                }
                job.append(t, 0.0, fmt);
            }
            job.wrap.max_width = ui.available_width();
            ui.label(job);
        }
        _ => {
            ui.add(egui::Label::new(text.as_str()).wrap());
        }
    }
}

fn tokens_ui(ui: &mut egui::Ui, lane: &LaneState) {
    let dark = ui.visuals().dark_mode;
    ui.horizontal_wrapped(|ui| {
        ui.spacing_mut().item_spacing.x = 1.0;
        for t in &lane.output.tokens {
            let shown = t.piece.replace('\n', "\\n");
            let text = egui::RichText::new(shown)
                .background_color(theme::prob_colour(t.prob, dark))
                .monospace();
            ui.add(egui::Label::new(text).sense(egui::Sense::hover()))
                .on_hover_ui(|ui| token_tip(ui, t));
            if t.piece.contains('\n') {
                ui.end_row();
            }
        }
    });
}

fn token_tip(ui: &mut egui::Ui, t: &crate::ui::state::TokenRecord) {
    if t.prob.is_nan() {
        ui.label(format!(
            "{:?}  p not sent by the endpoint  ({:.1} ms)",
            t.piece, t.latency_ms
        ));
    } else {
        ui.label(format!("{:?}  p = {:.3}  ({:.1} ms)", t.piece, t.prob, t.latency_ms));
    }
    egui::Grid::new("top5").num_columns(2).show(ui, |ui| {
        for alt in &t.top {
            ui.monospace(format!("{:?}", alt.piece));
            ui.label(format!("{:.3}", alt.prob));
            ui.end_row();
        }
    });
}
