//! Helpers for tests that drive the real window through egui_kittest.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use egui_kittest::Harness;
use nanolab::ui::app::App;

/// A file dropped on the window, as the windowing layer delivers it.
#[derive(Debug)]
pub struct DroppedPath(pub PathBuf);

impl egui::DroppedFile for DroppedPath {
    fn path(&self) -> &Path {
        &self.0
    }
    fn bytes(&self) -> Result<Vec<u8>, String> {
        std::fs::read(&self.0).map_err(|e| e.to_string())
    }
}

/// Drops `path` on the window at `at`, as a real drag and drop would.
pub fn drop_file(h: &mut Harness<'_, App>, path: &Path, at: egui::Pos2) {
    h.hover_at(at);
    h.step();
    h.input_mut()
        .dropped_files
        .push(Arc::new(DroppedPath(path.to_path_buf())));
    h.run_steps(3);
}
