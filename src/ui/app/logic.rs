//! What must happen every frame, even when nothing is drawn: drain engine events under a time
//! budget, poll downloads, sample memory, react to drops and shortcuts, recompute diffs, save.

use std::time::{Duration, Instant};

use super::{App, Command, FetchMsg, JobKind};
use crate::protocol::{Event, JobResult, LaneId, Request};
use crate::ui::state::TokenRecord;

/// At most this long per frame is spent applying engine events.
const DRAIN_BUDGET: Duration = Duration::from_millis(8);

impl App {
    /// Non-drawing work for one frame.
    pub fn logic(&mut self, ctx: &egui::Context) {
        let mut changed = self.drain_events();
        let before: usize = self.state.lanes.iter().map(|l| l.output.text.len()).sum();
        self.release_paced(ctx);
        changed |= self.state.lanes.iter().map(|l| l.output.text.len()).sum::<usize>() != before;
        self.poll_fetch();
        self.poll_merge();
        self.poll_lab();
        changed |= self.poll_scene();
        if self.rt.tasks.scene.is_some() {
            ctx.request_repaint_after(std::time::Duration::from_millis(50));
        }
        if self.poll_remote_dialog() {
            changed = true;
        }
        if self.rt.dialogs.remote.as_ref().is_some_and(|d| d.probing.is_some()) {
            ctx.request_repaint_after(std::time::Duration::from_millis(50));
        }
        if let Some(serving) = &mut self.rt.tasks.serving {
            if let Some(ended) = serving.poll() {
                self.rt.banner = Some(ended);
                self.rt.tasks.serving = None;
            } else if serving.url.is_none() {
                // Starting: look again soon for the address it prints.
                ctx.request_repaint_after(std::time::Duration::from_millis(100));
            }
        }
        self.sample_memory();
        self.handle_input(ctx);
        if changed {
            self.recompute_diffs();
        }
        self.inspect_known_files();
        if self.busy() {
            ctx.request_repaint_after(super::telemetry::SAMPLE_EVERY);
        } else if self.rt.engine.client.pid().is_some() {
            ctx.request_repaint_after(super::telemetry::IDLE_SAMPLE_EVERY);
        }
    }

    fn drain_events(&mut self) -> bool {
        let start = Instant::now();
        let mut changed = false;
        while start.elapsed() < DRAIN_BUDGET {
            let Ok(ev) = self.rt.engine.client.events().try_recv() else {
                break;
            };
            changed = true;
            self.apply_event(ev);
        }
        changed
    }

    /// Applies one engine event to the lanes it concerns.
    pub fn apply_event(&mut self, ev: Event) {
        let Some(job) = ev.job() else { return };
        let Some(kind) = self.rt.engine.jobs.get(&job).cloned() else {
            return;
        };
        let lane_id = match kind {
            JobKind::Load { lane } | JobKind::Setup { lane } | JobKind::Generate { lane } => lane,
            JobKind::Lab(lab) => {
                if ev.is_terminal() {
                    self.rt.engine.jobs.remove(&job);
                }
                self.apply_lab_event(lab, ev);
                return;
            }
        };
        if ev.is_terminal() {
            self.rt.engine.jobs.remove(&job);
            self.rt.engine.load_progress.remove(&lane_id);
        }
        let mut prepare = false;
        let Some(lane) = self.state.lane_mut(lane_id) else {
            return;
        };
        match ev {
            Event::Progress { fraction, .. } => {
                self.rt.engine.load_progress.insert(lane_id, fraction);
            }
            Event::Token {
                text,
                piece,
                token_id,
                prob,
                top,
                latency_ms,
                prompt_tokens,
                ..
            } => {
                let record = (token_id >= 0).then_some(TokenRecord {
                    piece,
                    prob,
                    top,
                    latency_ms,
                });
                match self.rt.lanes.sims.get_mut(&lane_id) {
                    Some(sim) => {
                        let produced = sim.pending.len() + lane.output.tokens.len();
                        if produced == 0 {
                            sim.start_run(u64::from(prompt_tokens));
                        }
                        if record.is_some() {
                            sim.token(u64::from(prompt_tokens) + produced as u64);
                        }
                        if lane.paced {
                            sim.pending.push_back((sim.release_time(), text, record));
                        } else {
                            lane.output.text.push_str(&text);
                            lane.output.tokens.extend(record);
                        }
                    }
                    None => {
                        lane.output.text.push_str(&text);
                        lane.output.tokens.extend(record);
                    }
                }
            }
            Event::Done { result, .. } => match result {
                JobResult::Generated { stats } => {
                    if stats.remote.is_none() {
                        self.rt.lanes.held.insert(lane_id, stats.lane.clone());
                    }
                    let paced = lane.paced && self.rt.lanes.sims.get(&lane_id).is_some_and(|s| !s.pending.is_empty());
                    if !paced {
                        lane.output.text.clone_from(&stats.text);
                    }
                    lane.output.stats = Some(stats);
                }
                JobResult::ModelLoaded { .. } => prepare = matches!(kind, JobKind::Load { .. }),
                JobResult::LaneReady { info } => {
                    self.rt.lanes.held.insert(lane_id, info);
                }
                _ => {}
            },
            Event::Error { message, cancelled, .. } => {
                lane.output.error = Some(if cancelled { "stopped".to_string() } else { message });
            }
            Event::Ready { .. } => {}
        }
        if prepare {
            self.prepare_lane(lane_id);
        }
    }

    /// Sets a lane's context (and adapters) up in the engine once its model is in, as
    /// llama-server sets its slots up at start: the first run then spends its time to first
    /// token on the prompt, and lanes started together do not wait for each other's set-up.
    pub(super) fn prepare_lane(&mut self, lane_id: LaneId) {
        let Some(i) = self
            .state
            .lanes
            .iter()
            .position(|l| l.id == lane_id && l.remote.is_none())
        else {
            return;
        };
        let Some(spec) = self.lane_spec(i, lane_id) else { return };
        let job = self.rt.engine.client.next_job();
        match self.rt.engine.client.send(&Request::SetupLane { job, lane: spec }) {
            Ok(()) => {
                self.rt.engine.jobs.insert(job, JobKind::Setup { lane: lane_id });
            }
            Err(e) => self.lane_error(Some(lane_id), e.to_string()),
        }
    }

    /// Paced mode: shows tokens whose simulated time has come.
    fn release_paced(&mut self, ctx: &egui::Context) {
        let now = Instant::now();
        for (lane_id, sim) in &mut self.rt.lanes.sims {
            let Some(lane) = self.state.lanes.iter_mut().find(|l| l.id == *lane_id) else {
                continue;
            };
            while sim.pending.front().is_some_and(|(t, _, _)| *t <= now) {
                if let Some((_, text, record)) = sim.pending.pop_front() {
                    lane.output.text.push_str(&text);
                    lane.output.tokens.extend(record);
                }
            }
            if let Some((t, _, _)) = sim.pending.front() {
                ctx.request_repaint_after(t.saturating_duration_since(now));
            }
        }
    }

    fn poll_fetch(&mut self) {
        let Some(task) = self.rt.tasks.fetch.as_mut() else {
            return;
        };
        let mut finished = None;
        while let Ok(msg) = task.rx.try_recv() {
            match msg {
                FetchMsg::Progress(p) => task.last = Some(p),
                FetchMsg::Done(r) => finished = Some(r),
            }
        }
        if let Some(result) = finished {
            self.rt.tasks.fetch = None;
            self.rt.library.installed = crate::models::list_installed(&self.rt.library.models_dir);
            match result {
                Ok(path) => self.rt.pending.push(Command::SetModel { lane: None, path }),
                Err(e) => self.rt.banner = Some(format!("download failed: {e}")),
            }
        }
    }

    fn poll_merge(&mut self) {
        let Some(task) = self.rt.tasks.merge.as_mut() else {
            return;
        };
        let mut finished = None;
        while let Ok(msg) = task.rx.try_recv() {
            match msg {
                FetchMsg::Progress(p) => task.fraction = p.done_bytes as f32 / 1000.0,
                FetchMsg::Done(r) => finished = Some(r),
            }
        }
        let Some(result) = finished else { return };
        let lane = task.lane;
        self.rt.tasks.merge = None;
        self.rt.library.installed = crate::models::list_installed(&self.rt.library.models_dir);
        match result {
            Ok(path) => {
                self.rt.banner = Some(format!(
                    "merged into {} (now in the model library; use it in a lane to compare with the runtime stack)",
                    path.display()
                ));
            }
            Err(e) => {
                if let Some(l) = self.state.lane_mut(lane) {
                    l.output.error = Some(format!("merge failed: {e}"));
                }
            }
        }
    }

    fn handle_input(&mut self, ctx: &egui::Context) {
        let (dropped, pointer, run, stop) = ctx.input(|i| {
            (
                i.raw
                    .dropped_files
                    .iter()
                    .map(|f| f.path().to_path_buf())
                    .collect::<Vec<_>>(),
                i.pointer.latest_pos(),
                i.modifiers.command && i.key_pressed(egui::Key::Enter),
                i.key_pressed(egui::Key::Escape),
            )
        });
        if self.arena_on() {
            self.arena_keys(ctx);
        } else if run {
            self.rt.pending.push(Command::RunAll);
        }
        if stop {
            self.rt.pending.push(Command::Stop);
        }
        let lane = pointer.and_then(|p| {
            self.rt
                .lanes
                .rects
                .iter()
                .find(|(_, r)| r.contains(p))
                .map(|(id, _)| *id)
        });
        for path in dropped {
            self.rt.pending.push(Command::Dropped { lane, path });
        }
    }

    /// Whether the arena is shown instead of the lanes.
    pub fn arena_on(&self) -> bool {
        self.state.scene.as_ref().is_some_and(|s| s.arena.on)
    }

    /// 1…N vote for a lane, N+1 tie, N+2 both bad, space the next prompt (or start); keys go to
    /// the arena only while no text field has focus.
    fn arena_keys(&mut self, ctx: &egui::Context) {
        if ctx.memory(|m| m.focused().is_some()) {
            return;
        }
        let n = self.state.lanes.len();
        let keys = [
            egui::Key::Num1,
            egui::Key::Num2,
            egui::Key::Num3,
            egui::Key::Num4,
            egui::Key::Num5,
            egui::Key::Num6,
        ];
        let (pressed, space) = ctx.input(|i| {
            (
                keys.iter().position(|k| i.key_pressed(*k)),
                i.key_pressed(egui::Key::Space),
            )
        });
        use super::scene::ArenaCommand;
        use crate::eval::arena::Verdict;
        if let Some(k) = pressed {
            let verdict = match k {
                k if k < n => Some(Verdict::Pick(k)),
                k if k == n => Some(Verdict::Tie),
                k if k == n + 1 => Some(Verdict::BothBad),
                _ => None,
            };
            if let Some(v) = verdict {
                self.rt.pending.push(Command::Arena(ArenaCommand::Vote(v)));
            }
        }
        if space {
            self.rt.pending.push(Command::Arena(ArenaCommand::Next));
        }
    }

    /// Recomputes word diffs of every lane against the reference lane.
    pub fn recompute_diffs(&mut self) {
        self.rt.lanes.diffs.clear();
        let Some(ref_id) = self.state.reference_lane else {
            return;
        };
        let Some(reference) = self.state.lanes.iter().find(|l| l.id == ref_id) else {
            return;
        };
        let ref_text = reference.output.text.clone();
        for lane in &self.state.lanes {
            if lane.id == ref_id {
                continue;
            }
            let diff = similar::TextDiff::from_words(ref_text.as_str(), lane.output.text.as_str());
            let spans = diff
                .iter_all_changes()
                .filter(|c| c.tag() != similar::ChangeTag::Delete)
                .map(|c| (c.value().to_string(), c.tag() == similar::ChangeTag::Insert))
                .collect();
            self.rt.lanes.diffs.insert(lane.id, spans);
        }
    }

    /// Lists registry adapters against each lane's model (once per model; refreshed on drops).
    fn refresh_adapter_entries(&mut self) {
        let models: Vec<std::path::PathBuf> = self.state.lanes.iter().filter_map(|l| l.model.clone()).collect();
        for m in models {
            if self.rt.library.adapter_entries.contains_key(&m) {
                continue;
            }
            let header = crate::gguf::read(&m).ok();
            let entries = self.rt.library.registry.list(header.as_ref());
            self.rt.library.adapter_entries.insert(m, entries);
        }
    }

    fn inspect_known_files(&mut self) {
        self.refresh_adapter_entries();
        let mut paths: Vec<std::path::PathBuf> = self.rt.library.installed.iter().map(|i| i.path.clone()).collect();
        paths.extend(self.state.recent_files.iter().cloned());
        paths.extend(self.state.lanes.iter().filter_map(|l| l.model.clone()));
        paths.extend(self.state.lab.reference.clone());
        for p in paths {
            self.rt.library.inspected.entry(p).or_insert_with_key(|p| {
                crate::gguf::read(p)
                    .map(|f| crate::gguf::Summary::of(&f))
                    .map_err(|e| e.to_string())
            });
        }
    }
}
