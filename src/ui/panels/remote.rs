//! The "Add remote lane" dialog: an endpoint's URL and key variable, what it serves, and the
//! model and adapters the new lane uses.

use crate::ui::app::remote::RemoteDialog;
use crate::ui::app::Command;

/// Draws the dialog; edits go into `d`, actions into `cmds`.
pub fn remote_dialog_ui(ctx: &egui::Context, d: &mut RemoteDialog, can_add: bool, cmds: &mut Vec<Command>) {
    let mut open = true;
    egui::Window::new("Add remote lane")
        .open(&mut open)
        .collapsible(false)
        .resizable(false)
        .default_width(crate::ui::theme::WIDE_CONTROL_WIDTH * 2.0)
        .show(ctx, |ui| {
            ui.weak("A lane on an OpenAI-compatible endpoint: llama-server, vLLM, Ollama, LM Studio or another nanolab serve.");
            egui::Grid::new("remote_fields").num_columns(2).show(ui, |ui| {
                let label = ui.label("URL");
                ui.add(egui::TextEdit::singleline(&mut d.url).desired_width(260.0))
                    .labelled_by(label.id)
                    .on_hover_text("Base URL of the endpoint, e.g. http://127.0.0.1:8080");
                ui.end_row();
                let label = ui.label("API key variable");
                ui.add(
                    egui::TextEdit::singleline(&mut d.key_env)
                        .hint_text("none")
                        .desired_width(260.0),
                )
                .labelled_by(label.id)
                .on_hover_text("Name of an environment variable holding the API key; the key itself is never saved");
                ui.end_row();
            });
            ui.horizontal(|ui| {
                let asking = d.probing.is_some();
                if ui
                    .add_enabled(!asking && !d.url.trim().is_empty(), egui::Button::new("Connect"))
                    .on_hover_text("Ask the endpoint what it is and which models and adapters it serves")
                    .clicked()
                {
                    cmds.push(Command::ProbeEndpoint);
                }
                if asking {
                    ui.weak("asking…");
                }
            });
            if let Some(e) = &d.error {
                ui.colored_label(ui.visuals().error_fg_color, e);
            }
            let Some(info) = d.info.clone() else { return };
            ui.label(format!("{} at {}", info.kind.name(), info.url));
            let mut picked = None;
            ui.horizontal(|ui| {
                let label = ui.label("Model");
                egui::ComboBox::from_id_salt("remote_model")
                    .selected_text(if d.model.is_empty() { "choose" } else { d.model.as_str() })
                    .show_ui(ui, |ui| {
                        for m in info.models.iter().filter(|m| m.parent.is_none()) {
                            if ui.selectable_label(d.model == m.id, &m.id).clicked() {
                                picked = Some(m.id.clone());
                            }
                        }
                    })
                    .response
                    .labelled_by(label.id);
            });
            if let Some(m) = picked {
                d.pick_model(m);
            }
            if d.adapters.is_empty() {
                ui.weak("no adapters served for this model");
            } else {
                ui.label("Adapters (scales can be changed on the lane)");
                for (name, on) in &mut d.adapters {
                    ui.checkbox(on, name.as_str());
                }
            }
            ui.separator();
            if ui
                .add_enabled(can_add && !d.model.is_empty(), egui::Button::new("Add to the lanes"))
                .on_hover_text("Add a lane on this endpoint beside the local ones (up to 4 lanes)")
                .clicked()
            {
                cmds.push(Command::AddRemoteLane);
            }
        });
    if !open {
        cmds.push(Command::CloseRemoteDialog);
    }
}
