//! First run: no model yet.

use crate::ui::app::{Command, Runtime};

/// The welcome panel: fetch the demo model or open a file.
pub fn welcome_ui(ui: &mut egui::Ui, rt: &Runtime, cmds: &mut Vec<Command>) {
    ui.vertical_centered(|ui| {
        ui.add_space(60.0);
        ui.heading("Welcome to nanolab");
        ui.label("Try on-device LLMs on your desktop: one small base model, LoRA adapters hot-swapped onto it, lanes compared side by side.");
        ui.add_space(20.0);
        match &rt.tasks.fetch {
            Some(task) => {
                let (stage, fraction) = task.last.as_ref().map_or(("starting download".to_string(), 0.0), |p| {
                    (
                        p.stage.clone(),
                        p.total_bytes.filter(|&t| t > 0).map_or(0.0, |t| p.done_bytes as f32 / t as f32),
                    )
                });
                ui.add(egui::ProgressBar::new(fraction).desired_width(360.0).text(stage));
                if ui.button("Cancel").on_hover_text("Stop the download; nothing half-written is kept").clicked() {
                    cmds.push(Command::CancelFetch);
                }
            }
            None => {
                let demo = crate::models::catalog::demo();
                if ui
                    .button(format!("Download the demo model ({}, {})", demo.id, crate::metrics::mib(demo.gguf_bytes)))
                    .on_hover_text(demo.title)
                    .clicked()
                {
                    cmds.push(Command::FetchDemo);
                }
                ui.add_space(8.0);
                if ui
                    .button("Try the demo scene")
                    .on_hover_text("The demo model beside the demo model + caps adapter on a simulated Pixel 9 Pro, with the demo prompts (assets/scenes/demo.json)")
                    .clicked()
                {
                    cmds.push(Command::OpenScene(crate::ui::app::scene::demo_scene_path()));
                }
                ui.add_space(8.0);
                if ui.button("Open…").on_hover_text("Choose a .gguf model file").clicked() {
                    cmds.push(Command::OpenDialog);
                }
                ui.add_space(8.0);
                ui.weak("or drop a .gguf file or a scene .json anywhere on this window");
            }
        }
    });
}
