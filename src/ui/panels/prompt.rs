//! The prompt bar: mode, system prompt, prompt, run and stop.

use crate::ui::app::Command;
use crate::ui::state::State;

/// Bottom panel with the prompt.
pub fn prompt_ui(ui: &mut egui::Ui, state: &mut State, busy: bool, cmds: &mut Vec<Command>) {
    ui.add_space(4.0);
    ui.horizontal(|ui| {
        ui.selectable_value(&mut state.chat_mode, true, "Chat")
            .on_hover_text("Format the prompt with the model's chat template");
        ui.selectable_value(&mut state.chat_mode, false, "Raw")
            .on_hover_text("Send the prompt as plain text to continue");
        ui.separator();
        ui.checkbox(&mut state.same_settings, "Same settings in all lanes")
            .on_hover_text("Use the first lane's sampling settings and context length in every lane");
        ui.checkbox(&mut state.one_lane_at_a_time, "One lane at a time")
            .on_hover_text("Run all runs the lanes one after another, so each lane's timings are its own alone (exact timings); otherwise every lane streams at once, a step of each in turn");
        ui.separator();
        let ref_label = state
            .reference_lane
            .and_then(|id| state.lanes.iter().position(|l| l.id == id))
            .map_or_else(|| "none".to_string(), |i| format!("lane {}", i + 1));
        let mut reference = state.reference_lane;
        egui::ComboBox::from_label("Compare with")
            .selected_text(ref_label)
            .show_ui(ui, |ui| {
                ui.selectable_value(&mut reference, None, "none");
                for (i, l) in state.lanes.iter().enumerate() {
                    ui.selectable_value(&mut reference, Some(l.id), format!("lane {}", i + 1));
                }
            })
            .response
            .on_hover_text("Highlight words in other lanes that differ from this lane");
        if reference != state.reference_lane {
            cmds.push(Command::SetReference(reference));
        }
        ui.separator();
        if ui
            .add_enabled(
                state.lanes.len() < crate::ui::state::MAX_LANES,
                egui::Button::new("Add lane"),
            )
            .on_hover_text("Add a lane with the last lane's settings (up to 4)")
            .clicked()
        {
            cmds.push(Command::AddLane);
        }
        if ui
            .add_enabled(
                state.lanes.len() < crate::ui::state::MAX_LANES,
                egui::Button::new("Add remote lane…"),
            )
            .on_hover_text("Add a lane on an OpenAI-compatible endpoint (llama-server, vLLM, Ollama, nanolab serve)")
            .clicked()
        {
            cmds.push(Command::OpenRemoteDialog);
        }
    });
    if state.chat_mode {
        ui.horizontal(|ui| {
            let label = ui.label("System");
            ui.add(
                egui::TextEdit::singleline(&mut state.system)
                    .hint_text("optional system message")
                    .desired_width(f32::INFINITY),
            )
            .labelled_by(label.id)
            .on_hover_text("System message for chat mode");
        });
    }
    ui.horizontal(|ui| {
        let label = ui.label("Prompt");
        let width = ui.available_width() - crate::ui::theme::PROMPT_BUTTONS_WIDTH;
        ui.add(
            egui::TextEdit::multiline(&mut state.prompt)
                .desired_rows(2)
                .desired_width(width.max(100.0)),
        )
        .labelled_by(label.id)
        .on_hover_text("The prompt every lane runs (Ctrl+Enter runs all)");
        ui.vertical(|ui| {
            let can_run =
                !busy && state.lanes.iter().any(crate::ui::state::State::runnable) && !state.prompt.trim().is_empty();
            if ui
                .add_enabled(can_run, egui::Button::new("Run all").min_size(egui::vec2(150.0, 0.0)))
                .on_hover_text("Run the prompt in every lane (Ctrl+Enter)")
                .clicked()
            {
                cmds.push(Command::RunAll);
            }
            if ui
                .add_enabled(busy, egui::Button::new("Stop").min_size(egui::vec2(150.0, 0.0)))
                .on_hover_text("Stop every running lane (Esc)")
                .clicked()
            {
                cmds.push(Command::Stop);
            }
        });
    });
    ui.add_space(4.0);
}
