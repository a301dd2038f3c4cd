//! Helpers for tests that drive the real window through egui_kittest.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use egui_kittest::kittest::Queryable;
use egui_kittest::Harness;
use nanolab::ui::app::{App, Command, Folders};

use super::{demo_model, exe};

/// The window's size in most tests.
pub const WINDOW: egui::Vec2 = egui::vec2(1400.0, 900.0);
/// Room for the lab panel beside two lanes.
pub const LAB_WINDOW: egui::Vec2 = egui::vec2(1600.0, 1000.0);

/// `app` in a window of [`WINDOW`].
pub fn harness(app: App) -> Harness<'static, App> {
    harness_sized(app, WINDOW)
}

pub fn harness_sized(app: App, size: egui::Vec2) -> Harness<'static, App> {
    Harness::builder()
        .with_size(size)
        .build_ui_state(|ui, app: &mut App| app.frame(ui), app)
}

/// The app with the demo model set on its lane, its folders from the environment.
pub fn new_app(state_path: Option<PathBuf>) -> App {
    new_app_in(state_path, Folders::from_env())
}

/// The app with its own folders (passed in, never through the process's environment).
pub fn new_app_in(state_path: Option<PathBuf>, folders: Folders) -> App {
    let mut app = App::with_folders(state_path, Some(exe()), folders);
    app.rt.pending.push(Command::SetModel {
        lane: None,
        path: demo_model(),
    });
    app.apply_commands();
    app
}

/// The window on the demo model, once the model is loaded.
pub fn loaded_app(state_path: Option<PathBuf>) -> Harness<'static, App> {
    loaded_app_in(state_path, Folders::from_env())
}

pub fn loaded_app_in(state_path: Option<PathBuf>, folders: Folders) -> Harness<'static, App> {
    let mut h = harness(new_app_in(state_path, folders));
    step_until(&mut h, Duration::from_secs(30), "model loaded", |a| {
        a.rt.engine.jobs.is_empty()
    });
    h
}

/// The same with a second lane added (by its button).
pub fn two_lanes(state_path: Option<PathBuf>) -> Harness<'static, App> {
    let mut h = loaded_app(state_path);
    h.get_by_label("Add lane").click();
    h.run_steps(2);
    h
}

/// Runs all lanes on a raw prompt that lane 1 continues for up to 1000 tokens, and waits until
/// lane 1 has streamed a few.
pub fn start_long_run(h: &mut Harness<'_, App>) {
    {
        let s = &mut h.state_mut().state;
        s.chat_mode = false;
        s.prompt = "1, 2, 3, 4, 5,".into();
        s.lanes[0].sampling.max_tokens = 1000;
        // Tokens of an earlier run must not pass for this one's.
        for l in &mut s.lanes {
            l.output = Default::default();
        }
    }
    h.run_steps(2);
    h.get_by_label("Run all").click();
    step_until(h, Duration::from_secs(30), "tokens in lane 1", |a| {
        a.state.lanes[0].output.tokens.len() > 3
    });
}

/// Steps the UI until `done` holds; past the deadline it fails with what the window shows
/// (each lane's tokens, error and stats, the jobs in flight, the banner, the lab's message).
pub fn step_until(h: &mut Harness<'_, App>, deadline: Duration, what: &str, done: impl Fn(&App) -> bool) {
    let end = Instant::now() + deadline;
    while !done(h.state()) {
        if Instant::now() >= end {
            let a = h.state();
            let lanes: Vec<_> = a
                .state
                .lanes
                .iter()
                .map(|l| {
                    (
                        l.id,
                        l.output.tokens.len(),
                        l.output.error.clone(),
                        l.output.stats.is_some(),
                    )
                })
                .collect();
            panic!(
                "timed out waiting for: {what}; lanes {lanes:?}; jobs {:?}; banner {:?}; lab message {:?}",
                a.rt.engine.jobs, a.rt.banner, a.rt.lab.message
            );
        }
        h.step();
        std::thread::sleep(Duration::from_millis(5));
    }
    h.run_steps(2);
}

/// The centre of lane `index` as last drawn.
pub fn lane_center(h: &Harness<'_, App>, index: usize) -> egui::Pos2 {
    h.state().rt.lanes.rects[index].1.center()
}

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
