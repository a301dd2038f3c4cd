//! `nanolab screenshot`: opens the real window (run it under Xvfb on a headless machine), drives
//! it through a few states with the demo model and saves the window's own pixels as PNG files.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::app::lab::LabCommand;
use super::app::scene::ArenaCommand;
use super::app::{App, Command};
use super::state::LabTab;
use crate::quant::{QuantType, QuantizeJob, QuantizeRequest};

#[derive(Debug, Clone, Copy, PartialEq)]
enum Phase {
    Welcome,
    Compare,
    Graphs,
    LabCompare,
    LabQuality,
    LabPrompts,
    RemoteDialog,
    ArenaBlind,
    ArenaVoted,
    Finished,
}

/// Every phase that takes a picture, in order.
const SHOTS: [Phase; 9] = [
    Phase::Welcome,
    Phase::Compare,
    Phase::Graphs,
    Phase::LabCompare,
    Phase::LabQuality,
    Phase::LabPrompts,
    Phase::RemoteDialog,
    Phase::ArenaBlind,
    Phase::ArenaVoted,
];

/// Levels the quality screenshot makes from an F16 stand-in reference.
const LADDER: [&str; 5] = ["Q8_0", "Q6_K", "Q4_K_M", "Q4_0", "Q2_K"];

struct Shooter {
    app: App,
    phase: Phase,
    out: PathBuf,
    model: PathBuf,
    phase_started: Instant,
    shot_requested: bool,
    saved: Arc<Mutex<Vec<Result<PathBuf, String>>>>,
    frames_in_phase: u32,
}

const DEADLINE: Duration = Duration::from_secs(120);

impl Shooter {
    fn enter(&mut self, phase: Phase) {
        self.phase = phase;
        self.phase_started = Instant::now();
        self.shot_requested = false;
        self.frames_in_phase = 0;
        if phase == Phase::Compare {
            let mut app = App::new(None, None);
            app.rt.pending.push(Command::SetModel {
                lane: None,
                path: self.model.clone(),
            });
            app.apply_commands();
            app.state.same_settings = false;
            app.state.show_library = true;
            let template = app.state.lanes[0].clone();
            let second = app.state.add_lane(Some(&template));
            let caps = crate::adapters::registry::adapters_dir().join("smollm2-caps.gguf");
            if caps.is_file() {
                app.rt.pending.push(Command::AddAdapter {
                    lane: second,
                    path: caps,
                });
            } else if let Some(l) = app.state.lane_mut(second) {
                l.sampling.temperature = 0.9;
                l.sampling.seed = 7;
            }
            app.rt.pending.push(Command::SetModel {
                lane: Some(second),
                path: self.model.clone(),
            });
            for l in &mut app.state.lanes {
                l.sampling.max_tokens = 60;
            }
            app.state.prompt = "Explain in two sentences why the sky is blue.".into();
            app.state.reference_lane = Some(app.state.lanes[0].id);
            app.apply_commands();
            app.set_device(second, Some("pixel-9-pro".into()));
            let old = std::mem::replace(&mut self.app, app);
            drop(old);
        }
        if phase == Phase::Graphs {
            if let Some(l) = self.app.state.lanes.get_mut(1) {
                l.token_view = true;
            }
        }
        let lab = |app: &mut App, tab: LabTab| {
            app.state.lab.show = true;
            app.state.lab.tab = tab;
            app.state.show_graphs = false;
            app.state.show_library = false;
        };
        match phase {
            Phase::LabCompare => {
                lab(&mut self.app, LabTab::Compare);
                if let Some(l) = self.app.state.lanes.get_mut(1) {
                    l.token_view = false;
                }
                self.app.rt.pending.push(Command::Lab(LabCommand::Diverge));
            }
            Phase::LabQuality => {
                lab(&mut self.app, LabTab::Quality);
                match self.stand_in_reference() {
                    Ok(f16) => {
                        self.app.state.lab.reference = Some(f16);
                        self.app.state.lab.levels = LADDER.iter().map(ToString::to_string).collect();
                        self.app.state.lab.chunks = Some(4);
                        self.app.rt.pending.push(Command::Lab(LabCommand::MakeLadder));
                    }
                    Err(e) => self.app.rt.lab.message = Some(e),
                }
            }
            Phase::RemoteDialog => {
                self.app.state.lab.show = false;
                self.app.state.show_library = true;
                self.app.rt.pending.push(Command::OpenRemoteDialog);
                self.app.apply_commands();
                if let Some(d) = &mut self.app.rt.dialogs.remote {
                    d.url = "http://127.0.0.1:8080".into();
                }
            }
            Phase::ArenaBlind => {
                self.app.rt.pending.push(Command::CloseRemoteDialog);
                self.app
                    .rt
                    .pending
                    .push(Command::OpenScene(super::app::scene::demo_scene_path()));
            }
            Phase::ArenaVoted => {
                self.app
                    .rt
                    .pending
                    .push(Command::Arena(ArenaCommand::Vote(crate::eval::arena::Verdict::Pick(1))));
            }
            Phase::LabPrompts => {
                lab(&mut self.app, LabTab::Prompts);
                let set = std::path::Path::new("assets/eval/prompts-demo.jsonl");
                self.app.state.lab.prompt_set = Some(set.to_path_buf());
                self.app.state.lab.seeds = "1,2,3".into();
                self.app.rt.pending.push(Command::Lab(LabCommand::RunPrompts));
            }
            _ => {}
        }
    }

    /// The demo model dequantized to F16 in the models folder (made once): the reference the
    /// ladder is measured against.
    fn stand_in_reference(&self) -> Result<PathBuf, String> {
        let f16 = QuantType::parse("F16")?;
        let out = self.app.rt.library.models_dir.join(f16.output_name(&self.model));
        if out.is_file() {
            return Ok(out);
        }
        QuantizeJob::start(QuantizeRequest {
            input: self.model.clone(),
            output: out.clone(),
            qtype: f16,
            allow_requantize: true,
            overwrite: false,
            threads: None,
        })?
        .wait(&mut |_, _| {})
        .map(|o| o.output)
    }

    /// Steps a phase on once the window has done what it started (the scene opens off the UI
    /// thread, then the arena starts its first round).
    fn drive(&mut self) {
        // "Run all" once both lanes are loaded and set up, as a user can press it.
        if self.phase == Phase::Compare
            && !self.app.busy()
            && self
                .app
                .state
                .lanes
                .iter()
                .all(|l| l.output.tokens.is_empty() && l.output.stats.is_none() && l.output.error.is_none())
        {
            self.app.rt.pending.push(Command::RunAll);
        }
        if self.phase == Phase::ArenaBlind
            && self.app.state.scene.as_ref().is_some_and(|s| !s.arena.on)
            && self.app.rt.tasks.scene.is_none()
            && self.app.rt.engine.jobs.is_empty()
        {
            self.app.rt.pending.push(Command::Arena(ArenaCommand::Toggle));
            self.app.rt.pending.push(Command::Arena(ArenaCommand::Start));
        }
    }

    fn ready(&self) -> bool {
        match self.phase {
            // egui fades a new window in: wait until it is opaque.
            Phase::RemoteDialog => self.frames_in_phase > 5 && self.phase_started.elapsed() > Duration::from_secs(1),
            Phase::ArenaBlind => {
                self.app.state.scene.as_ref().is_some_and(|s| s.arena.started)
                    && !self.app.arena_generating()
                    && self.app.state.lanes.iter().all(|l| l.output.stats.is_some())
                    && self.frames_in_phase > 5
            }
            Phase::ArenaVoted => {
                self.app.state.scene.as_ref().is_some_and(|s| s.arena.revealed) && self.frames_in_phase > 5
            }
            Phase::Welcome => self.frames_in_phase > 5,
            Phase::Compare => self
                .app
                .state
                .lanes
                .get(1)
                .is_some_and(|l| l.output.tokens.len() >= 25 || l.output.stats.is_some()),
            Phase::Graphs => {
                !self.app.busy()
                    && self.app.state.lanes.iter().all(|l| l.output.stats.is_some())
                    && self.frames_in_phase > 5
            }
            Phase::LabCompare => self.app.rt.lab.divergence.is_some() && self.frames_in_phase > 5,
            Phase::LabQuality => {
                self.app.rt.lab.quality.len() == LADDER.len() && !self.app.rt.lab.busy() && self.frames_in_phase > 5
            }
            Phase::LabPrompts => !self.app.rt.lab.scorecards.is_empty() && self.frames_in_phase > 5,
            Phase::Finished => false,
        }
    }

    fn name(&self) -> &'static str {
        match self.phase {
            Phase::Welcome => "01-welcome.png",
            Phase::Compare => "02-compare-diff.png",
            Phase::Graphs => "03-tokens-and-graphs.png",
            Phase::LabCompare => "04-lab-compare-tokens.png",
            Phase::LabQuality => "05-lab-quant-ladder.png",
            Phase::LabPrompts => "06-lab-prompt-set.png",
            Phase::RemoteDialog => "07-remote-lane-dialog.png",
            Phase::ArenaBlind => "08-arena-blind.png",
            Phase::ArenaVoted => "09-arena-voted.png",
            Phase::Finished => "",
        }
    }
}

impl eframe::App for Shooter {
    fn persist_egui_memory(&self) -> bool {
        false
    }

    fn logic(&mut self, ctx: &egui::Context, _frame: &mut eframe::Frame) {
        self.app.logic(ctx);
        ctx.request_repaint_after(Duration::from_millis(30));
    }

    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut eframe::Frame) {
        let ctx = ui.ctx().clone();
        self.app.set_repaint(&ctx);
        self.app.ui(ui);
        self.app.apply_commands();
        self.frames_in_phase += 1;
        self.drive();
        if self.phase_started.elapsed() > DEADLINE {
            if let Ok(mut s) = self.saved.lock() {
                s.push(Err(format!("timed out waiting for the {:?} state", self.phase)));
            }
            ctx.send_viewport_cmd(egui::ViewportCommand::Close);
            return;
        }
        if !self.shot_requested && self.ready() {
            self.shot_requested = true;
            let path = self.out.join(self.name());
            let saved = Arc::clone(&self.saved);
            ctx.request_screenshot(move |image| {
                let [w, h] = image.size;
                let bytes: Vec<u8> = image.pixels.iter().flat_map(|c| c.to_array()).collect();
                let r = image::RgbaImage::from_raw(w as u32, h as u32, bytes)
                    .ok_or_else(|| "bad image buffer".to_string())
                    .and_then(|img| img.save(&path).map_err(|e| e.to_string()))
                    .map(|()| path.clone());
                if let Ok(mut s) = saved.lock() {
                    s.push(r);
                }
            });
        }
        let n_saved = self.saved.lock().map(|s| s.len()).unwrap_or(0);
        let index = SHOTS.iter().position(|p| *p == self.phase).unwrap_or(SHOTS.len());
        if self.shot_requested && n_saved > index {
            let next = SHOTS.get(index + 1).copied().unwrap_or(Phase::Finished);
            self.enter(next);
            if next == Phase::Finished {
                ctx.send_viewport_cmd(egui::ViewportCommand::Close);
            }
        }
    }
}

/// Renders the window states to `out`.
pub fn capture(out: &Path, model: Option<PathBuf>) -> anyhow::Result<()> {
    let model = model.unwrap_or_else(|| crate::models::demo_model_path(&crate::models::models_dir()));
    crate::gguf::validate_model_file(&model).map_err(anyhow::Error::msg)?;
    std::fs::create_dir_all(out)?;
    let saved = Arc::new(Mutex::new(Vec::new()));
    let mut welcome = App::new(None, None);
    welcome.rt.library.installed.clear();
    let shooter = Shooter {
        app: welcome,
        phase: Phase::Welcome,
        out: out.to_path_buf(),
        model,
        phase_started: Instant::now(),
        shot_requested: false,
        saved: Arc::clone(&saved),
        frames_in_phase: 0,
    };
    let options = eframe::NativeOptions {
        viewport: egui::ViewportBuilder::default()
            .with_title("nanolab")
            .with_inner_size([1280.0, 800.0]),
        renderer: eframe::Renderer::Glow,
        ..Default::default()
    };
    eframe::run_native(
        "nanolab-screenshot",
        options,
        Box::new(move |_cc| Ok(Box::new(shooter))),
    )
    .map_err(|e| anyhow::anyhow!("could not open the window: {e}"))?;
    let results = saved.lock().map(|s| s.clone()).unwrap_or_default();
    if results.len() < SHOTS.len() {
        anyhow::bail!(
            "only {} of {} screenshots were taken: {results:?}",
            results.len(),
            SHOTS.len()
        );
    }
    for r in results {
        match r {
            Ok(p) => println!("wrote {}", p.display()),
            Err(e) => anyhow::bail!(e),
        }
    }
    Ok(())
}
