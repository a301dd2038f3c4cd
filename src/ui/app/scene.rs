//! Scenes in the window: open one (checked on a `scene-open` thread: every file found with its
//! sha256, else one dialog listing each problem with "Locate…", and nothing changed), save the
//! window as one (hashed and written on a `scene-save` thread), and the arena's rounds and votes.

use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver};

use super::{App, JobKind};
use crate::eval::arena::{self, Verdict, Vote};
use crate::protocol::Request;
use crate::scene::{self, FileProblem, FileRef, Resolved, Scene, SceneAdapter, SceneLane};
use crate::ui::state::{AdapterRow, ArenaState, LaneOutput, SceneSession};

/// The shipped demo scene (the source tree is where `make run` builds nanolab).
pub fn demo_scene_path() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/assets/scenes/demo.json"))
}

/// What a scene thread reports.
pub enum SceneMsg {
    /// Read and every file verified.
    Opened(Box<(PathBuf, Scene, Resolved)>),
    /// Files missing or changed: the scene as read, and each problem.
    Problems(Box<(PathBuf, Scene, Vec<FileProblem>)>),
    /// Written.
    Saved(PathBuf),
    /// Unreadable, not a scene, or not written.
    Failed(String),
}

/// A scene whose files were not all found: shown as a dialog until located or closed.
pub struct SceneProblems {
    /// The scene file.
    pub path: PathBuf,
    /// The scene as read (with any located files swapped in).
    pub scene: Scene,
    /// What is missing or changed.
    pub problems: Vec<FileProblem>,
}

/// A scene being opened or saved.
pub struct SceneTask {
    /// What it is doing, for the window.
    pub what: String,
    /// Its answer.
    pub rx: Receiver<SceneMsg>,
}

/// Arena actions.
#[derive(Debug, Clone, PartialEq)]
pub enum ArenaCommand {
    /// Arena mode on or off.
    Toggle,
    /// Presenter view on or off.
    Presenter,
    /// Run the current round's prompt on every lane.
    Start,
    /// Vote on the current round.
    Vote(Verdict),
    /// Go on to the next prompt.
    Next,
    /// Write the results as CSV, JSON and PNG to the exports folder.
    Export,
}

impl App {
    /// Opens a scene file: checked off the UI thread, applied when every file is found.
    pub fn open_scene(&mut self, path: PathBuf) {
        let (tx, rx) = mpsc::channel();
        let what = format!("checking {}", path.display());
        let spawned = std::thread::Builder::new().name("scene-open".into()).spawn(move || {
            let msg = match Scene::read(&path) {
                Err(e) => SceneMsg::Failed(e.to_string()),
                Ok(s) => check_msg(path, s),
            };
            let _ = tx.send(msg);
        });
        match spawned {
            Ok(_) => self.rt.tasks.scene = Some(SceneTask { what, rx }),
            Err(e) => self.rt.banner = Some(format!("could not start checking the scene: {e}")),
        }
    }

    /// Swaps `located` in for problem `index`'s file (every lane naming it) and checks again.
    pub fn locate_scene_file(&mut self, index: usize, located: PathBuf) {
        let Some(p) = self.rt.dialogs.scene_problems.take() else {
            return;
        };
        let Some(problem) = p.problems.get(index) else {
            self.rt.dialogs.scene_problems = Some(p);
            return;
        };
        let mut s = p.scene.clone();
        let old = problem.path.clone();
        let swap = |f: &mut FileRef| {
            if f.path == old {
                f.path.clone_from(&located);
            }
        };
        for lane in &mut s.lanes {
            if let Some(m) = &mut lane.model {
                swap(m);
            }
            for a in &mut lane.adapters {
                swap(&mut a.file);
            }
        }
        if let Some(ps) = &mut s.prompt_set {
            swap(ps);
        }
        let (tx, rx) = mpsc::channel();
        let path = p.path.clone();
        let what = format!("checking {}", located.display());
        let spawned = std::thread::Builder::new().name("scene-open".into()).spawn(move || {
            let _ = tx.send(check_msg(path, s));
        });
        match spawned {
            Ok(_) => self.rt.tasks.scene = Some(SceneTask { what, rx }),
            Err(e) => {
                self.rt.dialogs.scene_problems = Some(p);
                self.rt.banner = Some(format!("could not start checking the scene: {e}"));
            }
        }
    }

    /// Takes a scene thread's answer, if it has one.
    pub fn poll_scene(&mut self) -> bool {
        let Some(task) = &self.rt.tasks.scene else { return false };
        let msg = match task.rx.try_recv() {
            Ok(m) => m,
            Err(mpsc::TryRecvError::Empty) => return false,
            Err(mpsc::TryRecvError::Disconnected) => SceneMsg::Failed("the scene thread stopped".into()),
        };
        self.rt.tasks.scene = None;
        match msg {
            SceneMsg::Opened(b) => {
                let (path, s, resolved) = *b;
                self.rt.dialogs.scene_problems = None;
                self.apply_scene(path, &s, &resolved);
            }
            SceneMsg::Problems(b) => {
                let (path, scene, problems) = *b;
                self.rt.dialogs.scene_problems = Some(SceneProblems { path, scene, problems });
            }
            SceneMsg::Saved(path) => {
                self.rt.banner = None;
                self.rt.notice = Some(format!("scene saved to {}", path.display()));
                if let Some(sc) = &mut self.state.scene {
                    sc.path = Some(path);
                }
            }
            SceneMsg::Failed(e) => self.rt.banner = Some(e),
        }
        true
    }

    /// Replaces the lanes, prompt and panels with the scene's (everything was verified first).
    fn apply_scene(&mut self, path: PathBuf, s: &Scene, resolved: &Resolved) {
        let prompts = match s.prompt_set(resolved.prompt_set.as_deref()) {
            Ok(set) => set.cases,
            Err(e) => {
                self.rt.banner = Some(format!("{}: {e}", path.display()));
                return;
            }
        };
        let jobs: Vec<_> = self.rt.engine.jobs.keys().copied().collect();
        for job in jobs {
            self.housekeeping(&Request::Cancel { job });
        }
        for id in self.state.lanes.iter().map(|l| l.id).collect::<Vec<_>>() {
            let job = self.rt.engine.client.next_job();
            self.housekeeping(&Request::DropLane { job, lane: id });
        }
        self.rt.lanes.sims.clear();
        self.rt.engine.jobs.retain(|_, k| {
            !matches!(
                k,
                JobKind::Load { .. } | JobKind::Setup { .. } | JobKind::Generate { .. }
            )
        });
        self.state.lanes.clear();
        self.state.reference_lane = None;
        // Each lane keeps its own sampling and context.
        self.state.same_settings = false;
        for (lane, found) in s.lanes.iter().zip(&resolved.lanes) {
            let id = self.state.add_lane(None);
            let Some(l) = self.state.lane_mut(id) else { continue };
            l.label.clone_from(&lane.label);
            l.model.clone_from(&found.model);
            l.remote.clone_from(&lane.remote);
            l.gpu_layers = lane.gpu_layers;
            l.n_ctx = lane.n_ctx;
            l.sampling = lane.sampling.clone();
            l.paced = lane.paced;
            l.output = LaneOutput::default();
            if lane.remote.is_some() {
                // The endpoint's adapters, by the names it serves them under.
                l.adapters = found
                    .adapters
                    .iter()
                    .map(|(p, scale, enabled)| AdapterRow {
                        path: p.clone(),
                        enabled: *enabled,
                        scale: *scale,
                        ranks: Vec::new(),
                        file_bytes: 0,
                    })
                    .collect();
                continue;
            }
            // Local files go in as a dropped adapter does: checked against the model, ranks and
            // size from the header.
            for (path, scale, enabled) in &found.adapters {
                self.add_adapter(id, path.clone());
                if let Some(row) = self
                    .state
                    .lane_mut(id)
                    .and_then(|l| l.adapters.iter_mut().find(|a| a.path == *path))
                {
                    row.scale = *scale;
                    row.enabled = *enabled;
                }
            }
        }
        if let Some(first) = prompts.first() {
            self.state.prompt.clone_from(&first.prompt);
        }
        self.state.chat_mode = s.chat_mode;
        self.state.system.clone_from(&s.system);
        self.state.show_graphs = s.panels.graphs;
        self.state.show_library = s.panels.library;
        self.state.lab.show = s.panels.lab;
        self.state.scene = Some(SceneSession {
            path: Some(path),
            title: s.title.clone(),
            prompts,
            prompt_set: s.prompt_set.clone(),
            arena: ArenaState {
                record: s.arena.clone().unwrap_or_default(),
                ..ArenaState::default()
            },
        });
        let lanes: Vec<_> = self
            .state
            .lanes
            .iter()
            .map(|l| (l.id, l.model.clone(), l.device.clone()))
            .collect();
        let devices: Vec<_> = s.lanes.iter().map(|l| l.device.clone()).collect();
        for ((id, model, _), device) in lanes.into_iter().zip(devices) {
            if let Some(m) = model {
                self.rt.pending.push(super::Command::SetModel {
                    lane: Some(id),
                    path: m,
                });
            }
            if device.is_some() {
                self.set_device(id, device);
            }
        }
        self.recompute_diffs();
    }

    /// The window as a scene saved at `path` (files recorded without hashes: the save thread
    /// hashes them).
    fn scene_outline(&self) -> Scene {
        let lanes = (0..self.state.lanes.len())
            .map(|i| {
                let l = &self.state.lanes[i];
                SceneLane {
                    label: l.label.clone(),
                    model: l.model.as_deref().filter(|_| l.remote.is_none()).map(FileRef::name),
                    remote: l.remote.clone(),
                    adapters: l
                        .adapters
                        .iter()
                        .map(|a| SceneAdapter {
                            file: FileRef::name(&a.path),
                            scale: a.scale,
                            enabled: a.enabled,
                        })
                        .collect(),
                    sampling: self.lane_sampling(i).unwrap_or_default(),
                    n_ctx: if self.state.same_settings {
                        self.state.lanes.first().unwrap_or(l).n_ctx
                    } else {
                        l.n_ctx
                    },
                    gpu_layers: l.gpu_layers,
                    device: l.device.clone(),
                    paced: l.paced,
                }
            })
            .collect();
        let session = self.state.scene.as_ref();
        let prompts = match session {
            Some(sc) if sc.prompt_set.is_none() && !sc.prompts.is_empty() => sc.prompts.clone(),
            Some(sc) if sc.prompt_set.is_some() => Vec::new(),
            _ => vec![self.bar_prompt()],
        };
        Scene {
            nanolab_scene: scene::SCENE_VERSION,
            title: session.map(|s| s.title.clone()).unwrap_or_default(),
            lanes,
            prompts,
            prompt_set: session.and_then(|s| s.prompt_set.clone()),
            chat_mode: self.state.chat_mode,
            system: self.state.system.clone(),
            panels: scene::Panels {
                graphs: self.state.show_graphs,
                library: self.state.show_library,
                lab: self.state.lab.show,
            },
            arena: session.map(|s| s.arena.record.clone()).filter(|r| !r.votes.is_empty()),
        }
    }

    /// Saves the window as a scene at `path`, on a `scene-save` thread (hashing models takes a
    /// while).
    pub fn save_scene(&mut self, path: PathBuf) {
        if !self.state.lanes.iter().any(crate::ui::state::State::runnable) {
            self.rt.banner = Some("nothing to save: no lane has a model or an endpoint".into());
            return;
        }
        let outline = self.scene_outline();
        // A prompt set recorded relative to the old scene file is found from there.
        let old_dir = self
            .state
            .scene
            .as_ref()
            .and_then(|s| s.path.as_ref())
            .and_then(|p| p.parent().map(Path::to_path_buf));
        if self.state.scene.is_none() {
            self.state.scene = Some(SceneSession {
                prompts: outline.prompts.clone(),
                ..SceneSession::default()
            });
        }
        let (tx, rx) = mpsc::channel();
        let what = format!("saving {}", path.display());
        let spawned = std::thread::Builder::new().name("scene-save".into()).spawn(move || {
            let msg = match hashed(outline, &path, old_dir.as_deref())
                .and_then(|s| s.write(&path).map_err(|e| e.to_string()))
            {
                Ok(()) => SceneMsg::Saved(path),
                Err(e) => SceneMsg::Failed(format!("scene not saved: {e}")),
            };
            let _ = tx.send(msg);
        });
        match spawned {
            Ok(_) => self.rt.tasks.scene = Some(SceneTask { what, rx }),
            Err(e) => self.rt.banner = Some(format!("could not start saving the scene: {e}")),
        }
    }

    /// The prompt bar as a prompt-set case.
    fn bar_prompt(&self) -> crate::eval::prompts::PromptCase {
        crate::eval::prompts::PromptCase {
            id: "prompt".into(),
            prompt: self.state.prompt.clone(),
            system: Some(self.state.system.clone()).filter(|s| !s.trim().is_empty()),
            expect: None,
            expect_regex: None,
            max_tokens: None,
            tags: Vec::new(),
            raw: !self.state.chat_mode,
        }
    }

    /// The arena's prompts: the scene's, else the prompt bar's as the only one.
    pub fn arena_prompts(&self) -> Vec<crate::eval::prompts::PromptCase> {
        match &self.state.scene {
            Some(s) if !s.prompts.is_empty() => s.prompts.clone(),
            _ => vec![self.bar_prompt()],
        }
    }

    /// Each lane's stack name, made unique (what the arena reveals and counts votes by).
    pub fn stack_labels(&self) -> Vec<String> {
        let labels = self.state.lanes.iter().enumerate().map(|(i, l)| {
            if !l.label.is_empty() {
                return l.label.clone();
            }
            let base = match (&l.remote, &l.model) {
                (Some(r), _) => r.label(),
                (None, Some(m)) => scene::file_stem(m),
                (None, None) => format!("lane {}", i + 1),
            };
            let adapters: Vec<(&Path, f32)> = l
                .adapters
                .iter()
                .filter(|a| a.enabled)
                .map(|a| (a.path.as_path(), a.scale))
                .collect();
            scene::stack_label(&base, &adapters)
        });
        scene::unique_labels(labels)
    }

    /// Lane indices in the order the current round shows them (position 0 is "A").
    pub fn arena_order(&self) -> Vec<usize> {
        let (seed, round) = self
            .state
            .scene
            .as_ref()
            .map_or((0, 0), |s| (s.arena.record.seed, s.arena.round));
        arena::shuffle(seed, round, self.state.lanes.len())
    }

    fn arena_mut(&mut self) -> &mut ArenaState {
        if self.state.scene.is_none() {
            self.state.scene = Some(SceneSession {
                prompts: vec![self.bar_prompt()],
                ..SceneSession::default()
            });
        }
        &mut self.state.scene.get_or_insert_with(SceneSession::default).arena
    }

    /// Whether generations of the current round are still coming in.
    pub fn arena_generating(&self) -> bool {
        self.rt.engine.jobs.values().any(|k| {
            matches!(
                k,
                JobKind::Generate { .. } | JobKind::Load { .. } | JobKind::Setup { .. }
            )
        }) || self.rt.lanes.sims.values().any(|s| !s.pending.is_empty())
    }

    /// Applies an arena action.
    pub fn apply_arena(&mut self, c: ArenaCommand) {
        match c {
            ArenaCommand::Toggle => {
                let runnable = self
                    .state
                    .lanes
                    .iter()
                    .filter(|l| crate::ui::state::State::runnable(l))
                    .count();
                let a = self.arena_mut();
                if !a.on && runnable < 2 {
                    self.rt.banner = Some("the arena needs two or more lanes with a model or an endpoint".into());
                    return;
                }
                a.on = !a.on;
                if a.record.seed == 0 {
                    // A fresh arena: a seed of its own, recorded, so the orders can be replayed.
                    a.record.seed = now_ms() | 1;
                }
                if !a.on {
                    a.presenter = false;
                }
            }
            ArenaCommand::Presenter => {
                let a = self.arena_mut();
                a.presenter = !a.presenter;
            }
            ArenaCommand::Start => {
                let prompts = self.arena_prompts();
                let round = self.arena_mut().round;
                let Some(case) = prompts.get((round % prompts.len().max(1) as u64) as usize) else {
                    return;
                };
                self.state.prompt.clone_from(&case.prompt);
                self.state.chat_mode = !case.raw;
                if let Some(sys) = &case.system {
                    self.state.system.clone_from(sys);
                }
                let max_tokens = case.max_tokens;
                let a = self.arena_mut();
                a.started = true;
                a.revealed = false;
                self.run_all_with(max_tokens);
            }
            ArenaCommand::Vote(verdict) => {
                let n = self.state.lanes.len();
                let a = self.state.scene.as_ref().map(|s| &s.arena);
                if a.is_none_or(|a| !a.started || a.revealed) || self.arena_generating() {
                    return;
                }
                if matches!(verdict, Verdict::Pick(i) if i >= n) {
                    return;
                }
                let prompts = self.arena_prompts();
                let labels = self.stack_labels();
                let order = self.arena_order();
                let a = self.arena_mut();
                let case = prompts.get((a.round % prompts.len().max(1) as u64) as usize);
                a.record.votes.push(Vote {
                    prompt_id: case.map(|c| c.id.clone()).unwrap_or_default(),
                    tags: case.map(|c| c.tags.clone()).unwrap_or_default(),
                    shown: order.iter().map(|&i| labels[i].clone()).collect(),
                    verdict,
                    at_unix_ms: now_ms(),
                });
                a.revealed = true;
                // Saved now, even while paced tokens are still being released.
                self.rt.saved.last_save_at = None;
            }
            ArenaCommand::Next => {
                if self.arena_generating() {
                    return;
                }
                let a = self.arena_mut();
                if a.started && !a.revealed {
                    return;
                }
                if a.started {
                    a.round += 1;
                }
                a.started = false;
                a.revealed = false;
                self.apply_arena(ArenaCommand::Start);
            }
            ArenaCommand::Export => self.export_arena(),
        }
    }

    fn export_arena(&mut self) {
        let votes = self
            .state
            .scene
            .as_ref()
            .map(|s| s.arena.record.votes.clone())
            .unwrap_or_default();
        if votes.is_empty() {
            self.rt.banner = Some("no votes to export yet".into());
            return;
        }
        let stats = arena::stats(&votes);
        let dir = self.rt.library.exports_dir.join(format!("arena-{}", now_ms()));
        let manifest = crate::lab::bundle::manifest(
            "arena",
            serde_json::json!({ "scene": self.state.scene.as_ref().and_then(|s| s.path.clone()),
                                "seed": self.state.scene.as_ref().map(|s| s.arena.record.seed) }),
            Vec::new(),
        );
        let results = crate::lab::bundle::Results::Arena { stats, votes };
        match results.write(&dir, &manifest) {
            Ok(()) => self.rt.notice = Some(format!("arena results written to {}", dir.display())),
            Err(e) => self.rt.banner = Some(format!("arena results not written: {e}")),
        }
    }
}

fn check_msg(path: PathBuf, s: Scene) -> SceneMsg {
    match scene::check(&s, &path) {
        Ok(resolved) => SceneMsg::Opened(Box::new((path, s, resolved))),
        Err(problems) => SceneMsg::Problems(Box::new((path, s, problems))),
    }
}

/// `outline`'s files hashed and recorded relative to `path`'s folder; a prompt set recorded
/// relative to the scene it came from (`old_dir`) is found from there first.
fn hashed(mut outline: Scene, path: &Path, old_dir: Option<&Path>) -> Result<Scene, String> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    // The same model on several lanes is hashed once.
    let mut recorded: std::collections::HashMap<PathBuf, FileRef> = std::collections::HashMap::new();
    let mut record = |f: &Path| -> Result<FileRef, String> {
        if let Some(r) = recorded.get(f) {
            return Ok(r.clone());
        }
        let r = FileRef::record(f, dir).map_err(|e| format!("{}: {e}", f.display()))?;
        recorded.insert(f.to_path_buf(), r.clone());
        Ok(r)
    };
    for lane in &mut outline.lanes {
        if let Some(m) = &mut lane.model {
            *m = record(&m.path)?;
        }
        if lane.remote.is_none() {
            for a in &mut lane.adapters {
                a.file = record(&a.file.path)?;
            }
        }
    }
    if let Some(ps) = &mut outline.prompt_set {
        let at = match old_dir {
            Some(d) if ps.path.is_relative() => d.join(&ps.path),
            _ => ps.path.clone(),
        };
        *ps = record(&at)?;
    }
    Ok(outline)
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
