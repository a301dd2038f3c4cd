//! The app: persisted [`State`] plus runtime handles beside it (engine client, jobs, caches).

mod commands;
pub mod lab;
mod library;
mod logic;
mod persistence;
pub mod remote;
pub mod scene;
pub mod serving;
pub mod telemetry;
mod ui;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::mpsc::Receiver;
use std::sync::Arc;
use std::time::Instant;

pub use commands::Command;
pub use telemetry::MemSample;

/// A window lane's simulated device; each paced token keeps its token record.
pub type LaneSim = crate::sim::live::LaneSim<state::TokenRecord>;

use super::state::{self, State};
use crate::engine::EngineClient;
use crate::gguf::Summary;
use crate::protocol::{JobId, LaneId, LaneInfo};

/// Repaint delay after an engine event. Each repaint costs CPU that the engine's threads would
/// otherwise use (a lot with a software renderer: see docs/performance.md); 10 frames a second
/// still streams text smoothly enough and costs the engine about a fifth of its speed on llvmpipe.
const REPAINT_WHILE_STREAMING: std::time::Duration = std::time::Duration::from_millis(100);

/// What a job in flight is for.
#[derive(Debug, Clone, PartialEq)]
pub enum JobKind {
    /// Loading a model for a lane.
    Load {
        /// The lane.
        lane: LaneId,
    },
    /// Setting a lane's context and adapters up ahead of its first run. "Run all" does not
    /// wait for it: the engine finishes a set-up before any run sent after it.
    Setup {
        /// The lane.
        lane: LaneId,
    },
    /// Generating on a lane.
    Generate {
        /// The lane.
        lane: LaneId,
    },
    /// A lab job (comparison, evaluation, prompt-set run).
    Lab(lab::LabJob),
}

/// Messages from the demo-model download thread.
pub enum FetchMsg {
    /// Progress.
    Progress(crate::models::FetchProgress),
    /// Finished.
    Done(Result<PathBuf, String>),
}

/// A running download of the demo model.
pub struct FetchTask {
    /// Progress and result.
    pub rx: Receiver<FetchMsg>,
    /// Set to cancel.
    pub cancel: Arc<AtomicBool>,
    /// Last progress.
    pub last: Option<crate::models::FetchProgress>,
}

/// A running merge of a lane's stack into a new model file.
pub struct MergeTask {
    /// Lane whose stack is merged.
    pub lane: LaneId,
    /// Output file.
    pub out: PathBuf,
    /// Progress (0-1) and result.
    pub rx: Receiver<FetchMsg>,
    /// Last progress, 0-1.
    pub fraction: f32,
}

/// Word-level diff of a lane against the reference lane: (text, differs).
pub type DiffSpans = Vec<(String, bool)>;

/// The link to the engine child: the client, the jobs in flight and what they are for.
pub struct EngineLink {
    /// The supervised engine process.
    pub client: EngineClient,
    /// Jobs in flight.
    pub jobs: HashMap<JobId, JobKind>,
    /// Load progress per lane (0-1).
    pub load_progress: HashMap<LaneId, f32>,
}

/// What the window knows of files and folders: models, adapters, device profiles.
pub struct Library {
    /// Models folder.
    pub models_dir: PathBuf,
    /// Where lab exports go.
    pub exports_dir: PathBuf,
    /// Installed models in the models folder.
    pub installed: Vec<crate::models::Installed>,
    /// Inspections of model and adapter files.
    pub inspected: HashMap<PathBuf, Result<Summary, String>>,
    /// The adapter registry (folders, notes, static pins).
    pub registry: crate::adapters::registry::Registry,
    /// Registry entries checked against each lane's model, by model path.
    pub adapter_entries: HashMap<PathBuf, Vec<crate::adapters::registry::Entry>>,
    /// Device profiles (shipped and the user's).
    pub profiles: Vec<crate::sim::DeviceProfile>,
}

/// Background work the window polls each frame (besides engine and lab jobs).
pub struct Tasks {
    /// A running demo-model download.
    pub fetch: Option<FetchTask>,
    /// A running merge.
    pub merge: Option<MergeTask>,
    /// A scene being opened or saved.
    pub scene: Option<scene::SceneTask>,
    /// The lanes served over the OpenAI API, while "Serve lanes" is on.
    pub serving: Option<serving::Serving>,
}

/// Per-lane state derived from runs, never saved.
pub struct LaneRuntime {
    /// Diff against the reference lane, per lane.
    pub diffs: HashMap<LaneId, DiffSpans>,
    /// Where each lane was drawn last frame (for drops).
    pub rects: Vec<(LaneId, egui::Rect)>,
    /// Simulated devices per lane.
    pub sims: HashMap<LaneId, LaneSim>,
    /// What the engine holds for each lane (model, KV cache, adapters) as it said last: when it
    /// set the lane up and when a run ended, so the memory graph knows it during a first run.
    pub held: HashMap<LaneId, LaneInfo>,
}

/// Dialogs open over the window.
#[derive(Default)]
pub struct Dialogs {
    /// The "Add remote lane" dialog, while open.
    pub remote: Option<remote::RemoteDialog>,
    /// A scene that could not be opened, with what is missing or changed.
    pub scene_problems: Option<scene::SceneProblems>,
}

/// Runtime state, by concern: never persisted.
pub struct Runtime {
    /// The engine child and the jobs sent to it.
    pub engine: EngineLink,
    /// Models, adapters and profiles on disk.
    pub library: Library,
    /// Downloads, merges, scene files, serving.
    pub tasks: Tasks,
    /// The lab's jobs and results.
    pub lab: lab::LabRuntime,
    /// Diffs, drop targets and simulated devices of the lanes.
    pub lanes: LaneRuntime,
    /// Open dialogs.
    pub dialogs: Dialogs,
    /// Engine memory over time and frame timing.
    pub telemetry: telemetry::Telemetry,
    /// Where the state is saved and what was written last.
    pub saved: persistence::Persistence,
    /// Commands collected during the frame.
    pub pending: Vec<Command>,
    /// Message for the whole window (not tied to a lane): errors, reported once.
    pub banner: Option<String>,
    /// A message that is not an error (a scene saved, results written).
    pub notice: Option<String>,
}

/// The nanolab window.
pub struct App {
    /// Persisted state.
    pub state: State,
    /// Runtime handles.
    pub rt: Runtime,
}

/// Where the window finds and keeps files. The window takes them from the environment
/// ([`Folders::from_env`]); tests pass their own, so they never change the process's environment.
#[derive(Debug, Clone)]
pub struct Folders {
    /// Installed models (`models/`).
    pub models: PathBuf,
    /// The project's adapter folder (`adapters/`): scanned first, PEFT imports written here.
    pub adapters: PathBuf,
    /// The adapter registry file.
    pub registry: PathBuf,
    /// Where lab exports go.
    pub exports: PathBuf,
}

impl Folders {
    /// The folders named by `NANOLAB_MODELS`, `NANOLAB_ADAPTERS`, `NANOLAB_REGISTRY` and
    /// `NANOLAB_EXPORTS`, else the defaults.
    pub fn from_env() -> Self {
        Self {
            models: crate::models::models_dir(),
            adapters: crate::adapters::registry::adapters_dir(),
            registry: crate::adapters::registry::registry_path(),
            exports: crate::paths::exports_dir(),
        }
    }
}

impl App {
    /// Builds the app from saved state at `state_path` (None: start fresh and never save), with
    /// the folders from the environment.
    pub fn new(state_path: Option<PathBuf>, engine_exe: Option<PathBuf>) -> Self {
        Self::with_folders(state_path, engine_exe, Folders::from_env())
    }

    /// Builds the app with the given folders.
    pub fn with_folders(state_path: Option<PathBuf>, engine_exe: Option<PathBuf>, folders: Folders) -> Self {
        let (state, problem) = match &state_path {
            Some(p) => state::load(p),
            None => (State::default(), None),
        };
        // A state file that could not be moved aside must not be saved over.
        let state_path = state_path.filter(|_| !problem.as_ref().is_some_and(state::StateError::blocks_saving));
        let models_dir = folders.models.clone();
        let (profiles, profile_errors) = crate::sim::profile::all();
        let profile_problem = (!profile_errors.is_empty()).then(|| {
            let v: Vec<String> = profile_errors.iter().map(ToString::to_string).collect();
            format!("device profiles skipped: {}", v.join("; "))
        });
        let reg_path = folders.registry.clone();
        let (registry, reg_problem) = match crate::adapters::registry::Registry::load(reg_path.clone()) {
            Ok(r) => (r.with_adapters_dir(folders.adapters.clone()), None),
            Err(e) => (
                crate::adapters::registry::Registry::empty(reg_path).with_adapters_dir(folders.adapters.clone()),
                Some(format!(
                    "{e}; the adapter registry starts empty and will not be saved over it"
                )),
            ),
        };
        Self {
            state,
            rt: Runtime {
                engine: EngineLink {
                    client: EngineClient::new(engine_exe),
                    jobs: HashMap::new(),
                    load_progress: HashMap::new(),
                },
                library: Library {
                    installed: crate::models::list_installed(&models_dir),
                    models_dir,
                    exports_dir: folders.exports,
                    inspected: HashMap::new(),
                    registry,
                    adapter_entries: HashMap::new(),
                    profiles,
                },
                tasks: Tasks {
                    fetch: None,
                    merge: None,
                    scene: None,
                    serving: None,
                },
                lab: lab::LabRuntime::default(),
                lanes: LaneRuntime {
                    diffs: HashMap::new(),
                    rects: Vec::new(),
                    sims: HashMap::new(),
                    held: HashMap::new(),
                },
                dialogs: Dialogs::default(),
                telemetry: telemetry::Telemetry::new(),
                saved: persistence::Persistence::new(state_path),
                pending: Vec::new(),
                banner: problem.map(|e| e.to_string()).or(reg_problem).or(profile_problem),
                notice: None,
            },
        }
    }

    /// Opens `model` (from the command line), or on a first run the demo model if installed,
    /// or reloads the models the restored lanes use.
    pub fn open_initial(&mut self, model: Option<PathBuf>) {
        self.open_initial_scene(model, None);
    }

    /// Like [`App::open_initial`], or opens `scene` (from `--scene`) over the restored lanes.
    pub fn open_initial_scene(&mut self, model: Option<PathBuf>, scene: Option<PathBuf>) {
        if let Some(scene) = scene {
            self.open_scene(scene);
            return;
        }
        if let Some(model) = model {
            self.rt.pending.push(Command::SetModel {
                lane: None,
                path: model,
            });
        } else if self.state.lanes.is_empty() {
            let demo = crate::models::demo_model_path(&self.rt.library.models_dir);
            if demo.is_file() {
                self.rt.pending.push(Command::SetModel { lane: None, path: demo });
            }
        } else {
            let lanes: Vec<_> = self
                .state
                .lanes
                .iter()
                .filter_map(|l| Some((l.id, l.model.clone()?)))
                .collect();
            for (id, path) in lanes {
                self.rt.pending.push(Command::SetModel { lane: Some(id), path });
            }
        }
        self.apply_commands();
        let devices: Vec<_> = self.state.lanes.iter().map(|l| (l.id, l.device.clone())).collect();
        for (id, device) in devices {
            if device.is_some() {
                self.set_device(id, device);
            }
        }
    }

    /// Lets the engine wake the UI when events arrive.
    pub fn set_repaint(&mut self, ctx: &egui::Context) {
        let ctx = ctx.clone();
        self.rt
            .engine
            .client
            .set_waker(Arc::new(move || ctx.request_repaint_after(REPAINT_WHILE_STREAMING)));
    }

    /// Whether any job is in flight.
    pub fn busy(&self) -> bool {
        !self.rt.engine.jobs.is_empty() || self.tasks_busy()
    }

    /// Whether "Run all" waits: anything in flight but lanes being set up.
    pub fn run_waits(&self) -> bool {
        self.rt
            .engine
            .jobs
            .values()
            .any(|k| !matches!(k, JobKind::Setup { .. }))
            || self.tasks_busy()
    }

    fn tasks_busy(&self) -> bool {
        self.rt.tasks.fetch.is_some()
            || self.rt.tasks.merge.is_some()
            || self.rt.lanes.sims.values().any(|s| !s.pending.is_empty())
            || self.rt.lab.busy()
            || self.rt.tasks.scene.is_some()
    }

    /// One frame: logic (drain events, sample, save) then drawing then commands.
    pub fn frame(&mut self, ui: &mut egui::Ui) {
        self.logic(ui.ctx());
        self.ui(ui);
        self.apply_commands();
        self.save_if_changed();
    }
}

impl eframe::App for App {
    fn logic(&mut self, ctx: &egui::Context, _frame: &mut eframe::Frame) {
        self.logic(ctx);
    }

    /// eframe persists egui's memory (panel sizes, window geometry); nanolab's own state is
    /// saved on every change by `save_if_changed`.
    fn auto_save_interval(&self) -> std::time::Duration {
        std::time::Duration::from_secs(5)
    }

    /// The last second's changes while tokens streamed are not saved yet (saves are spaced
    /// then): saved on the way out.
    fn on_exit(&mut self, _gl: Option<&eframe::glow::Context>) {
        self.save_now();
    }

    fn ui(&mut self, ui: &mut egui::Ui, frame: &mut eframe::Frame) {
        let t0 = Instant::now();
        self.ui(ui);
        self.apply_commands();
        self.save_if_changed();
        let previous_frame_s = frame.info().cpu_usage;
        self.rt
            .telemetry
            .frame_stats
            .record(t0.elapsed(), previous_frame_s, self.busy());
    }
}
