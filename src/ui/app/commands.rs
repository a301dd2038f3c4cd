//! User actions collected during a frame and applied after drawing.

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use super::{App, FetchMsg, FetchTask, JobKind};
use crate::protocol::{AdapterSpec, LaneId, LaneSpec, Prompt, Request, Sampling};
use crate::ui::state::LaneOutput;

/// Everything a user can ask the window to do.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// Add a lane (copying the last lane's settings).
    AddLane,
    /// Remove a lane.
    RemoveLane(LaneId),
    /// Add a copy of a lane next to it.
    DuplicateLane(LaneId),
    /// Use a model in a lane (None: the first lane, creating one if there is none).
    SetModel {
        /// Target lane.
        lane: Option<LaneId>,
        /// Model file.
        path: PathBuf,
    },
    /// Add an adapter file to a lane's stack.
    AddAdapter {
        /// Target lane.
        lane: LaneId,
        /// Adapter file.
        path: PathBuf,
    },
    /// Remove an adapter row.
    RemoveAdapter {
        /// Lane.
        lane: LaneId,
        /// Row index.
        index: usize,
    },
    /// A file was dropped on the window, over a lane or not.
    Dropped {
        /// Lane under the pointer.
        lane: Option<LaneId>,
        /// The file.
        path: PathBuf,
    },
    /// Run the prompt in every lane.
    RunAll,
    /// Cancel every job in flight.
    Stop,
    /// Cancel a model load.
    CancelLoad(LaneId),
    /// Download the demo model.
    FetchDemo,
    /// Cancel the download.
    CancelFetch,
    /// Show the file dialog to open a model.
    OpenDialog,
    /// Bake the lane's enabled adapters (with scales) into a new model file in models/.
    MergeStack(LaneId),
    /// Simulate a device for a lane (None: no device).
    SetDevice {
        /// Lane.
        lane: LaneId,
        /// Profile id.
        device: Option<String>,
    },
    /// Hide a lane's error banner.
    DismissError(LaneId),
    /// Hide the window-wide banner.
    DismissBanner,
    /// Serve the lanes over the OpenAI API (`nanolab serve` on 127.0.0.1), each as `lane-N`.
    ServeLanes,
    /// Stop serving the lanes.
    StopServing,
    /// Set the reference lane for diffs.
    SetReference(Option<LaneId>),
    /// Open the "Add remote lane" dialog.
    OpenRemoteDialog,
    /// Close it.
    CloseRemoteDialog,
    /// Ask the dialog's endpoint what it serves.
    ProbeEndpoint,
    /// Add a lane on the dialog's endpoint with the model and adapters picked there.
    AddRemoteLane,
    /// A lab action.
    Lab(super::lab::LabCommand),
    /// Open a scene file (checked first; nothing changes unless every file is found).
    OpenScene(PathBuf),
    /// Show the file dialog to open a scene.
    OpenSceneDialog,
    /// Show the file dialog to save the window as a scene.
    SaveSceneDialog,
    /// Save the window as a scene file.
    SaveScene(PathBuf),
    /// Choose the file for a scene's missing or changed file (by its index in the list).
    LocateSceneFile(usize),
    /// Give up opening the scene.
    CloseSceneProblems,
    /// An arena action.
    Arena(super::scene::ArenaCommand),
    /// Hide the notice.
    DismissNotice,
}

impl App {
    /// Applies the commands collected this frame.
    pub fn apply_commands(&mut self) {
        let commands = std::mem::take(&mut self.rt.pending);
        for c in commands {
            self.apply(c);
        }
    }

    /// Cancels, drops or unloads without ever starting an engine for it. A write that fails
    /// means the engine just died; the supervisor reports that on every lane with a job, so
    /// here it is only logged.
    pub(super) fn housekeeping(&mut self, req: &Request) {
        if let Err(e) = self.rt.engine.client.send_if_running(req) {
            tracing::warn!("{e}");
        }
    }

    pub(super) fn lane_error(&mut self, lane: Option<LaneId>, message: String) {
        match lane.and_then(|id| self.state.lane_mut(id)) {
            Some(l) => l.output.error = Some(message),
            None => self.rt.banner = Some(message),
        }
    }

    fn apply(&mut self, c: Command) {
        match c {
            Command::AddLane => {
                if self.state.lanes.len() < crate::ui::state::MAX_LANES {
                    let template = self.state.lanes.last().cloned();
                    let id = self.state.add_lane(template.as_ref());
                    // On the template's model: set up now, as a lane whose model just loaded.
                    self.prepare_lane(id);
                }
            }
            Command::RemoveLane(id) => {
                self.cancel_lane_jobs(id);
                self.state.lanes.retain(|l| l.id != id);
                if self.state.reference_lane == Some(id) {
                    self.state.reference_lane = None;
                }
                let job = self.rt.engine.client.next_job();
                self.housekeeping(&Request::DropLane { job, lane: id });
                self.recompute_diffs();
            }
            Command::DuplicateLane(id) => {
                if self.state.lanes.len() < crate::ui::state::MAX_LANES {
                    if let Some(pos) = self.state.lanes.iter().position(|l| l.id == id) {
                        let template = self.state.lanes[pos].clone();
                        let new_id = self.state.add_lane(Some(&template));
                        self.prepare_lane(new_id);
                        if let Some(new_pos) = self.state.lanes.iter().position(|l| l.id == new_id) {
                            let lane = self.state.lanes.remove(new_pos);
                            self.state.lanes.insert(pos + 1, lane);
                        }
                    }
                }
            }
            Command::SetModel { lane, path } => self.set_model(lane, path),
            Command::AddAdapter { lane, path } => self.add_adapter(lane, path),
            Command::RemoveAdapter { lane, index } => {
                if let Some(l) = self.state.lane_mut(lane) {
                    if index < l.adapters.len() {
                        l.adapters.remove(index);
                    }
                }
            }
            Command::Dropped { lane, path } => self.dropped(lane, path),
            Command::RunAll => self.run_all(),
            Command::Stop => {
                let jobs: Vec<_> = self.rt.engine.jobs.keys().copied().collect();
                for job in jobs {
                    self.housekeeping(&Request::Cancel { job });
                }
            }
            Command::CancelLoad(lane) => self.cancel_lane_jobs(lane),
            Command::FetchDemo => self.fetch_demo(),
            Command::MergeStack(lane) => self.merge_stack(lane),
            Command::SetDevice { lane, device } => self.set_device(lane, device),
            Command::CancelFetch => {
                if let Some(t) = &self.rt.tasks.fetch {
                    t.cancel.store(true, std::sync::atomic::Ordering::Relaxed);
                }
            }
            Command::OpenDialog => {
                let picked = rfd::FileDialog::new().add_filter("GGUF", &["gguf"]).pick_file();
                match picked {
                    Some(path) => self.dropped(self.state.lanes.first().map(|l| l.id), path),
                    None => {
                        self.rt.banner = Some(
                            "no file chosen (if no dialog appeared, no desktop portal is running: drop a .gguf file on the window or start with --model)"
                                .into(),
                        );
                    }
                }
            }
            Command::DismissError(id) => {
                if let Some(l) = self.state.lane_mut(id) {
                    l.output.error = None;
                }
            }
            Command::DismissBanner => self.rt.banner = None,
            Command::ServeLanes => self.serve_lanes(),
            Command::StopServing => self.rt.tasks.serving = None,
            Command::SetReference(r) => {
                self.state.reference_lane = r;
                self.recompute_diffs();
            }
            Command::Lab(c) => self.apply_lab(c),
            Command::OpenRemoteDialog => self.open_remote_dialog(),
            Command::CloseRemoteDialog => self.rt.dialogs.remote = None,
            Command::ProbeEndpoint => self.probe_endpoint(),
            Command::AddRemoteLane => self.add_remote_lane(),
            Command::OpenScene(path) => self.open_scene(path),
            Command::OpenSceneDialog => match rfd::FileDialog::new()
                .add_filter("nanolab scene", &["json"])
                .pick_file()
            {
                Some(path) => self.open_scene(path),
                None => self.no_dialog("drop a scene .json on the window or start with --scene"),
            },
            Command::SaveSceneDialog => {
                let mut dialog = rfd::FileDialog::new()
                    .add_filter("nanolab scene", &["json"])
                    .set_file_name("scene.json");
                if let Some(dir) = self
                    .state
                    .scene
                    .as_ref()
                    .and_then(|s| s.path.as_ref())
                    .and_then(|p| p.parent())
                {
                    dialog = dialog.set_directory(dir);
                }
                match dialog.save_file() {
                    Some(path) => self.save_scene(path),
                    None => {
                        self.no_dialog("save from the command line is not possible; use a desktop with a file portal")
                    }
                }
            }
            Command::SaveScene(path) => self.save_scene(path),
            Command::LocateSceneFile(i) => match rfd::FileDialog::new().pick_file() {
                Some(path) => self.locate_scene_file(i, path),
                None => self.no_dialog(
                    "put the file back at the path shown, or in models/ or adapters/, and open the scene again",
                ),
            },
            Command::CloseSceneProblems => self.rt.dialogs.scene_problems = None,
            Command::Arena(c) => self.apply_arena(c),
            Command::DismissNotice => self.rt.notice = None,
        }
    }

    fn no_dialog(&mut self, instead: &str) {
        self.rt.banner = Some(format!(
            "no file chosen (if no dialog appeared, no desktop portal is running: {instead})"
        ));
    }

    fn cancel_lane_jobs(&mut self, lane: LaneId) {
        let jobs: Vec<_> = self
            .rt
            .engine
            .jobs
            .iter()
            .filter(|(_, k)| matches!(k, JobKind::Load { lane: l } | JobKind::Setup { lane: l } | JobKind::Generate { lane: l } if *l == lane))
            .map(|(j, _)| *j)
            .collect();
        for job in jobs {
            self.housekeeping(&Request::Cancel { job });
        }
    }

    /// The request that runs the prompt on a lane.
    pub fn generate_request(&self, lane_index: usize, job: u64) -> Option<Request> {
        let lane = self.state.lanes.get(lane_index)?;
        Some(Request::Generate {
            job,
            lane: self.lane_spec(lane_index, lane.id)?,
            prompt: self.current_prompt(),
            sampling: self.lane_sampling(lane_index)?,
            top_n: 5,
            exclusive: self.state.one_lane_at_a_time,
        })
    }

    /// The prompt bar's prompt.
    pub fn current_prompt(&self) -> Prompt {
        if self.state.chat_mode {
            Prompt::Chat {
                system: Some(self.state.system.clone()).filter(|s| !s.trim().is_empty()),
                user: self.state.prompt.clone(),
            }
        } else {
            Prompt::Raw {
                text: self.state.prompt.clone(),
            }
        }
    }

    /// A lane's sampling (the first lane's when settings are shared).
    pub fn lane_sampling(&self, lane_index: usize) -> Option<Sampling> {
        let lane = self.state.lanes.get(lane_index)?;
        let src = if self.state.same_settings {
            self.state.lanes.first().unwrap_or(lane)
        } else {
            lane
        };
        Some(src.sampling.clone())
    }

    /// What the engine needs to run a lane (model, context, static pins and enabled adapters),
    /// under engine lane id `engine_lane` (the lab uses its own ids so lane outputs stay put).
    pub fn lane_spec(&self, lane_index: usize, engine_lane: LaneId) -> Option<LaneSpec> {
        let lane = self.state.lanes.get(lane_index)?;
        let user: Vec<AdapterSpec> = lane
            .adapters
            .iter()
            .filter(|a| a.enabled)
            .map(|a| AdapterSpec {
                path: a.path.clone(),
                scale: a.scale,
            })
            .collect();
        let n_ctx = if self.state.same_settings {
            self.state.lanes.first().unwrap_or(lane).n_ctx
        } else {
            lane.n_ctx
        };
        if let Some(remote) = &lane.remote {
            // Static pins belong to local model files; the endpoint applies what it serves.
            return Some(LaneSpec {
                n_ctx,
                ..LaneSpec::on_endpoint(engine_lane, remote.clone(), user)
            });
        }
        let model = lane.model.clone()?;
        let adapters = crate::adapters::lane_stack(&self.rt.library.registry, &model, &user, true);
        Some(LaneSpec::local(engine_lane, model, n_ctx, adapters).with_gpu_layers(lane.gpu_layers))
    }

    fn serve_lanes(&mut self) {
        let lanes: Vec<crate::protocol::LaneAlias> = (0..self.state.lanes.len())
            // A remote lane is already served by its endpoint; `nanolab serve` serves model files.
            .filter(|&i| self.state.lanes[i].remote.is_none())
            .filter_map(|i| {
                self.lane_spec(i, 0).map(|spec| crate::protocol::LaneAlias {
                    name: format!("lane-{}", i + 1),
                    model: spec.model.path,
                    adapters: spec.adapters,
                })
            })
            .collect();
        if lanes.is_empty() {
            self.rt.banner = Some(
                "give a lane a local model before serving the lanes (remote lanes are served by their endpoints)"
                    .into(),
            );
            return;
        }
        match super::serving::Serving::start(self.rt.engine.client.exe(), lanes) {
            Ok(s) => self.rt.tasks.serving = Some(s),
            Err(e) => self.rt.banner = Some(e),
        }
    }

    fn run_all(&mut self) {
        self.run_all_with(None);
    }

    /// Runs every lane, with `max_tokens` instead of each lane's own limit when given (an
    /// arena prompt's `max_tokens`).
    pub(super) fn run_all_with(&mut self, max_tokens: Option<u32>) {
        if self
            .rt
            .engine
            .jobs
            .values()
            .any(|k| matches!(k, JobKind::Generate { .. }))
        {
            return;
        }
        for sim in self.rt.lanes.sims.values_mut() {
            sim.pending.clear();
        }
        for i in 0..self.state.lanes.len() {
            let job = self.rt.engine.client.next_job();
            let Some(mut req) = self.generate_request(i, job) else {
                continue;
            };
            if let (Request::Generate { sampling, .. }, Some(n)) = (&mut req, max_tokens) {
                sampling.max_tokens = n;
            }
            let id = self.state.lanes[i].id;
            self.state.lanes[i].output = LaneOutput::default();
            match self.rt.engine.client.send(&req) {
                Ok(()) => {
                    self.rt.engine.jobs.insert(job, JobKind::Generate { lane: id });
                }
                Err(e) => self.state.lanes[i].output.error = Some(e.to_string()),
            }
        }
        self.recompute_diffs();
    }

    /// Starts (or stops) simulating a device for a lane, from the lane's real model and adapters.
    pub fn set_device(&mut self, lane_id: LaneId, device: Option<String>) {
        self.rt.lanes.sims.remove(&lane_id);
        let Some(lane) = self.state.lane_mut(lane_id) else {
            return;
        };
        lane.device.clone_from(&device);
        let Some(id) = device else { return };
        let Some(model) = lane.model.clone() else {
            lane.output.error = Some("choose a model before a device".into());
            return;
        };
        let adapters: Vec<PathBuf> = lane
            .adapters
            .iter()
            .filter(|a| a.enabled)
            .map(|a| a.path.clone())
            .collect();
        let Some(profile) = self.rt.library.profiles.iter().find(|p| p.id == id).cloned() else {
            lane.output.error = Some(format!("no device profile {id:?}"));
            return;
        };
        let refs: Vec<&std::path::Path> = adapters.iter().map(PathBuf::as_path).collect();
        match crate::sim::facts::read(&model, &refs) {
            Ok(facts) => {
                self.rt
                    .lanes
                    .sims
                    .insert(lane_id, super::LaneSim::new(lane_id, profile, facts));
            }
            Err(e) => lane.output.error = Some(e),
        }
    }

    fn merge_stack(&mut self, lane_id: LaneId) {
        if self.rt.tasks.merge.is_some() {
            return;
        }
        let Some(lane) = self.state.lanes.iter().find(|l| l.id == lane_id) else {
            return;
        };
        let Some(model) = lane.model.clone() else { return };
        let stack: Vec<(PathBuf, f32)> = lane
            .adapters
            .iter()
            .filter(|a| a.enabled)
            .map(|a| (a.path.clone(), a.scale))
            .collect();
        if stack.is_empty() {
            self.lane_error(Some(lane_id), "enable at least one adapter to merge".into());
            return;
        }
        let stem = |p: &std::path::Path| {
            p.file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default()
        };
        let suffix: Vec<String> = stack.iter().map(|(p, s)| format!("{}@{s:.2}", stem(p))).collect();
        let out = self
            .rt
            .library
            .models_dir
            .join(format!("{}+{}.gguf", stem(&model), suffix.join("+")));
        let (tx, rx) = std::sync::mpsc::sync_channel(64);
        let out_for_thread = out.clone();
        let spawned = std::thread::Builder::new().name("merge".into()).spawn(move || {
            let progress_tx = tx.clone();
            let result = crate::adapters::merge::merge(
                &model,
                &stack,
                &out_for_thread,
                crate::adapters::merge::MergedType::F16,
                &mut |f| {
                    let _ = progress_tx.try_send(FetchMsg::Progress(crate::models::FetchProgress {
                        stage: "merging".into(),
                        done_bytes: (f * 1000.0) as u64,
                        total_bytes: Some(1000),
                    }));
                },
            );
            let _ = tx.send(FetchMsg::Done(result.map(|r| r.out).map_err(|e| e.to_string())));
        });
        match spawned {
            Ok(_) => {
                self.rt.tasks.merge = Some(super::MergeTask {
                    lane: lane_id,
                    out,
                    rx,
                    fraction: 0.0,
                })
            }
            Err(e) => self.lane_error(Some(lane_id), format!("could not start the merge: {e}")),
        }
    }

    fn fetch_demo(&mut self) {
        if self.rt.tasks.fetch.is_some() {
            return;
        }
        let (tx, rx) = std::sync::mpsc::sync_channel(64);
        let cancel = Arc::new(AtomicBool::new(false));
        let dir = self.rt.library.models_dir.clone();
        let flag = Arc::clone(&cancel);
        let spawned = std::thread::Builder::new().name("model-fetch".into()).spawn(move || {
            let model = crate::models::catalog::demo();
            let progress_tx = tx.clone();
            let result = crate::models::fetch_catalog(model, &dir, false, &flag, &mut |p| {
                let _ = progress_tx.try_send(FetchMsg::Progress(p));
            });
            let _ = tx.send(FetchMsg::Done(result.map(|f| f.path).map_err(|e| e.to_string())));
        });
        match spawned {
            Ok(_) => self.rt.tasks.fetch = Some(FetchTask { rx, cancel, last: None }),
            Err(e) => self.rt.banner = Some(format!("could not start the download: {e}")),
        }
    }
}
