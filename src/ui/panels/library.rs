//! The model library: installed models, recent files, open, and an inspector card.

use std::path::Path;

use crate::gguf::Summary;
use crate::metrics::mib;
use crate::ui::app::{Command, Runtime};
use crate::ui::state::State;

/// Left panel.
pub fn library_ui(ui: &mut egui::Ui, state: &State, rt: &Runtime, cmds: &mut Vec<Command>) {
    ui.horizontal(|ui| {
        ui.strong("Models");
        if ui.button("Open…").on_hover_text("Open a .gguf model file").clicked() {
            cmds.push(Command::OpenDialog);
        }
    });
    ui.weak(format!("in {}", rt.library.models_dir.display()));
    egui::ScrollArea::vertical().show(ui, |ui| {
        for m in &rt.library.installed {
            model_entry(ui, &m.path, state, rt, cmds);
        }
        let recent: Vec<_> = state
            .recent_files
            .iter()
            .filter(|p| !rt.library.installed.iter().any(|m| &m.path == *p))
            .collect();
        if !recent.is_empty() {
            ui.separator();
            ui.strong("Recent");
            for p in recent {
                model_entry(ui, p, state, rt, cmds);
            }
        }
        if rt.library.installed.is_empty() && state.recent_files.is_empty() {
            ui.weak("No models yet");
        }
        ui.separator();
        adapters_ui(ui, state, rt, cmds);
    });
}

/// Registry adapters checked against lane 1's model, with buttons to add them to a lane.
fn adapters_ui(ui: &mut egui::Ui, state: &State, rt: &Runtime, cmds: &mut Vec<Command>) {
    ui.strong("Adapters").on_hover_text(
        "LoRA adapters in adapters/ and added folders (nanolab adapters add-folder), checked against lane 1's model",
    );
    let Some(model) = state.lanes.first().and_then(|l| l.model.as_ref()) else {
        ui.weak("open a model to see which adapters fit it");
        return;
    };
    let Some(entries) = rt.library.adapter_entries.get(model) else {
        ui.weak("reading…");
        return;
    };
    if entries.is_empty() {
        ui.weak("none found; drop a .gguf adapter or a PEFT folder on a lane");
    }
    for e in entries {
        ui.push_id(&e.path, |ui| {
            let fits = matches!(e.compatible, Some(Ok(())));
            ui.horizontal_wrapped(|ui| {
                let ranks: Vec<String> = e.ranks.iter().map(u64::to_string).collect();
                let label = ui.label(egui::RichText::new(&e.name).strong());
                let mut tip = format!(
                    "{}\n{} · rank {} · alpha {} · {} tensors ({})\nsha256 {}",
                    e.path.display(),
                    e.architecture.as_deref().unwrap_or("?"),
                    ranks.join("/"),
                    e.alpha.map_or_else(|| "?".into(), |a| a.to_string()),
                    e.targets,
                    e.target_kinds.join(", "),
                    e.sha256
                );
                if let Some(src) = &e.source {
                    tip += &format!("\nmade from {} ({}): {}", src.file, src.format, src.conversion);
                }
                if let Some(b) = &e.base_model {
                    tip += &format!("\ntrained on {b}");
                }
                if !e.notes.is_empty() || !e.tags.is_empty() {
                    tip += &format!("\n{} {}", e.tags.join(" "), e.notes);
                }
                label.on_hover_text(tip);
                ui.weak(format!("r{} · {}", ranks.join("/"), mib(e.file_bytes)));
                if !e.static_for.is_empty() {
                    ui.weak("static")
                        .on_hover_text(format!("Always applied to lanes on {}", e.static_for.join(", ")));
                }
            });
            match &e.compatible {
                Some(Err(reason)) => {
                    ui.colored_label(ui.visuals().warn_fg_color, "does not fit this model")
                        .on_hover_text(reason);
                }
                _ if fits => {
                    ui.horizontal(|ui| {
                        for (i, lane) in state.lanes.iter().enumerate() {
                            if ui
                                .small_button(format!("Add to lane {}", i + 1))
                                .on_hover_text("Add this adapter to the lane's stack (no model reload)")
                                .clicked()
                            {
                                cmds.push(Command::AddAdapter {
                                    lane: lane.id,
                                    path: e.path.clone(),
                                });
                            }
                        }
                    });
                }
                _ => {}
            }
        });
    }
}

fn model_entry(ui: &mut egui::Ui, path: &Path, state: &State, rt: &Runtime, cmds: &mut Vec<Command>) {
    let name = path
        .file_name()
        .map_or_else(|| path.display().to_string(), |n| n.to_string_lossy().into_owned());
    let in_use = state.lanes.iter().any(|l| l.model.as_deref() == Some(path));
    egui::Frame::group(ui.style()).show(ui, |ui| {
        ui.set_width(ui.available_width());
        ui.horizontal(|ui| {
            ui.strong(&name);
            if in_use {
                ui.weak("in use");
            }
        });
        match rt.library.inspected.get(path) {
            Some(Ok(s)) => card_ui(ui, s),
            Some(Err(e)) => {
                ui.colored_label(ui.visuals().error_fg_color, e);
            }
            None => {
                ui.weak("reading…");
            }
        }
        ui.horizontal(|ui| {
            let label = if state.same_settings {
                "Use in all lanes"
            } else {
                "Use in first lane"
            };
            if ui
                .button(label)
                .on_hover_text("Load this model (once) and use it")
                .clicked()
            {
                cmds.push(Command::SetModel {
                    lane: None,
                    path: path.to_path_buf(),
                });
            }
        });
    });
}

/// The inspector card: arch, params, quant, size, context, template.
pub fn card_ui(ui: &mut egui::Ui, s: &Summary) {
    egui::Grid::new(("card", &s.path))
        .num_columns(2)
        .spacing([8.0, 2.0])
        .show(ui, |ui| {
            ui.weak("arch");
            ui.label(s.architecture.as_deref().unwrap_or("?"));
            ui.end_row();
            ui.weak("params");
            ui.label(format!("{:.1} M", s.parameters as f64 / 1e6));
            ui.end_row();
            ui.weak("quant");
            ui.label(format!("{} ({:.2} bpw)", s.quant_label(), s.bits_per_weight));
            ui.end_row();
            ui.weak("size");
            ui.label(mib(s.file_bytes));
            ui.end_row();
            ui.weak("context");
            ui.label(s.context_length.map_or_else(|| "?".into(), |c| c.to_string()));
            ui.end_row();
            ui.weak("template");
            ui.label(if s.has_chat_template {
                "chat template"
            } else {
                "none (raw prompts)"
            });
            ui.end_row();
        });
}
