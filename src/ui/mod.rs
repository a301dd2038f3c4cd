//! The window (egui/eframe, glow renderer). Draws state and emits commands; all work happens in
//! the engine process or in `logic`.

pub mod app;
pub mod panels;
pub mod screenshot;
pub mod state;
pub mod theme;

use std::path::PathBuf;

/// Opens the window.
pub fn run(model: Option<PathBuf>, scene: Option<PathBuf>) -> anyhow::Result<()> {
    let options = eframe::NativeOptions {
        viewport: egui::ViewportBuilder::default()
            .with_title("nanolab")
            .with_inner_size([1280.0, 800.0])
            .with_drag_and_drop(true),
        renderer: eframe::Renderer::Glow,
        ..Default::default()
    };
    let state_path = Some(state::state_path());
    eframe::run_native(
        "nanolab",
        options,
        Box::new(move |cc| {
            let mut app = app::App::new(state_path, None);
            app.set_repaint(&cc.egui_ctx);
            app.open_initial_scene(model, scene);
            Ok(Box::new(app))
        }),
    )
    .map_err(|e| anyhow::anyhow!("could not open the window: {e}"))
}
