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
    ui.weak(format!("in {}", rt.models_dir.display()));
    egui::ScrollArea::vertical().show(ui, |ui| {
        for m in &rt.installed {
            model_entry(ui, &m.path, state, rt, cmds);
        }
        let recent: Vec<_> = state
            .recent_files
            .iter()
            .filter(|p| !rt.installed.iter().any(|m| &m.path == *p))
            .collect();
        if !recent.is_empty() {
            ui.separator();
            ui.strong("Recent");
            for p in recent {
                model_entry(ui, p, state, rt, cmds);
            }
        }
        if rt.installed.is_empty() && state.recent_files.is_empty() {
            ui.weak("No models yet");
        }
    });
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
        match rt.inspected.get(path) {
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
