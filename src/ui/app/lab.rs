//! The lab's runtime: token-level comparison of two lanes, the quantization ladder with its
//! quality table, and prompt-set runs. Jobs go to the engine (or, for quantization, to a worker
//! process) and results land here; the lab panel only draws this and emits [`LabCommand`]s.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver};

use super::{App, JobKind};
use crate::eval::prompts::{self, PromptRun, PromptSet, Scorecard};
use crate::eval::table::QualityRow;
use crate::eval::{chart, export, RunManifest};
use crate::protocol::{DivergenceResult, Event, JobId, JobResult, LaneId, LaneSpec, ModelSpec, Request, Sampling};
use crate::quant::{QuantEvent, QuantOutcome, QuantType, QuantizeJob, QuantizeRequest};
use crate::ui::state::LabTab;

/// Engine lane ids the lab uses, far above the window's lanes, so lab runs never touch a
/// lane's output or context.
pub const LAB_LANE_BASE: LaneId = 1 << 40;
const EVAL_TEST: LaneId = LAB_LANE_BASE;
const EVAL_REF: LaneId = LAB_LANE_BASE + 1;
const DIVERGE_A: LaneId = LAB_LANE_BASE + 2;
const DIVERGE_B: LaneId = LAB_LANE_BASE + 3;
const PROMPT_LANES: LaneId = LAB_LANE_BASE + 16;

/// What a lab job in the engine is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LabJob {
    /// Token-level comparison.
    Diverge,
    /// One quality evaluation.
    Eval,
    /// One prompt-set run.
    Prompt,
}

/// Lab actions.
#[derive(Debug, Clone, PartialEq)]
pub enum LabCommand {
    /// Compare the two chosen lanes on the prompt bar's prompt.
    Diverge,
    /// Make the chosen levels of the reference model.
    MakeLadder,
    /// Evaluate every model made (and the reference's other levels found) against the reference.
    EvaluateLadder,
    /// Evaluate every lane against the reference lane (e.g. base+adapter vs base).
    EvaluateLanes,
    /// Run the prompt set on every lane with every seed.
    RunPrompts,
    /// Stop whatever the lab is doing.
    Cancel,
    /// Export a tool's results (tables, charts, manifest) to the exports folder.
    Export(LabTab),
    /// Use a text file for the quality table.
    SetText(Option<PathBuf>),
    /// Use a prompt set file.
    SetPromptSet(PathBuf),
    /// Select a token in the comparison.
    SelectToken(Option<usize>),
}

/// One queued quality evaluation.
#[derive(Debug, Clone)]
pub struct EvalItem {
    /// Model file of the tested lane.
    pub model: PathBuf,
    /// Adapters label.
    pub adapters: String,
    /// The tested lane.
    pub test: LaneSpec,
    /// The reference lane.
    pub reference: LaneSpec,
}

/// A prompt set being run.
pub struct PromptSetRun {
    /// The set.
    pub set: PromptSet,
    /// Lanes: label and spec.
    pub lanes: Vec<(String, LaneSpec)>,
    /// Remaining (lane, case, seed).
    pub queue: VecDeque<(usize, usize, u32)>,
    /// Running.
    pub current: Option<(JobId, usize, usize, u32)>,
    /// Runs in all.
    pub total: usize,
    /// Sampling base.
    pub temperature: f32,
}

/// The lab's runtime state.
#[derive(Default)]
pub struct LabRuntime {
    /// The last comparison.
    pub divergence: Option<DivergenceResult>,
    /// Labels of lanes A and B of it.
    pub divergence_lanes: (String, String),
    /// The comparison running.
    pub diverge_job: Option<JobId>,
    /// Token selected in the comparison.
    pub selected_token: Option<usize>,
    /// Quantization running.
    pub quant: Option<QuantizeJob>,
    /// Levels still to make.
    pub quant_queue: VecDeque<QuantType>,
    /// Progress of the running level: fraction and tensor.
    pub quant_progress: (f32, String),
    /// Files made.
    pub made: Vec<QuantOutcome>,
    /// Evaluations to run.
    pub eval_queue: VecDeque<EvalItem>,
    /// The evaluation running.
    pub eval_current: Option<(JobId, EvalItem)>,
    /// Its progress.
    pub eval_progress: (f32, String),
    /// The quality table.
    pub quality: Vec<QualityRow>,
    /// A prompt set running.
    pub prompt_run: Option<PromptSetRun>,
    /// Prompt-set runs done.
    pub runs: Vec<PromptRun>,
    /// Their scorecards.
    pub scorecards: Vec<Scorecard>,
    /// Last message (error or note) for the lab panel.
    pub message: Option<String>,
    /// Export in progress: where and the result.
    pub export_rx: Option<Receiver<Result<PathBuf, String>>>,
}

impl LabRuntime {
    /// Whether the lab has work in flight.
    pub fn busy(&self) -> bool {
        self.diverge_job.is_some()
            || self.quant.is_some()
            || self.eval_current.is_some()
            || self.prompt_run.is_some()
            || self.export_rx.is_some()
    }
}

fn file_label(p: &Path) -> String {
    p.file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned())
}

impl App {
    /// Lane index of a lane id.
    fn lane_index(&self, id: LaneId) -> Option<usize> {
        self.state.lanes.iter().position(|l| l.id == id)
    }

    /// The two lanes a comparison uses: the chosen ones, else the reference lane (or the
    /// first) and the next lane with a model.
    pub fn compare_lanes(&self) -> Option<(LaneId, LaneId)> {
        let with_model: Vec<LaneId> = self
            .state
            .lanes
            .iter()
            .filter(|l| l.model.is_some())
            .map(|l| l.id)
            .collect();
        let valid = |id: Option<LaneId>| id.filter(|i| with_model.contains(i));
        let a = valid(self.state.lab.compare_a)
            .or(valid(self.state.reference_lane))
            .or(with_model.first().copied())?;
        let b = valid(self.state.lab.compare_b)
            .filter(|b| *b != a)
            .or_else(|| with_model.iter().copied().find(|i| *i != a))
            .unwrap_or(a);
        Some((a, b))
    }

    /// Label of a lane for tables: "Lane 2: model+adapters".
    pub fn lane_label(&self, id: LaneId) -> String {
        let Some(i) = self.lane_index(id) else {
            return format!("lane {id}");
        };
        let lane = &self.state.lanes[i];
        let mut s = format!(
            "Lane {}: {}",
            i + 1,
            lane.model.as_deref().map(file_label).unwrap_or_default()
        );
        for a in lane.adapters.iter().filter(|a| a.enabled) {
            s.push_str(&format!(" + {}", file_label(&a.path)));
            if (a.scale - 1.0).abs() > 1e-6 {
                s.push_str(&format!(" ×{:.2}", a.scale));
            }
        }
        s
    }

    /// Applies a lab command.
    pub fn apply_lab(&mut self, c: LabCommand) {
        self.rt.lab.message = None;
        match c {
            LabCommand::Diverge => self.lab_diverge(),
            LabCommand::MakeLadder => self.lab_make_ladder(),
            LabCommand::EvaluateLadder => self.lab_evaluate_ladder(),
            LabCommand::EvaluateLanes => self.lab_evaluate_lanes(),
            LabCommand::RunPrompts => self.lab_run_prompts(),
            LabCommand::Cancel => self.lab_cancel(),
            LabCommand::Export(tab) => self.lab_export(tab),
            LabCommand::SetText(p) => self.state.lab.text = p,
            LabCommand::SetPromptSet(p) => {
                self.state.lab.prompt_set = Some(p);
                self.state.lab.tab = LabTab::Prompts;
                self.state.lab.show = true;
            }
            LabCommand::SelectToken(i) => self.rt.lab.selected_token = i,
        }
    }

    fn lab_send(&mut self, req: &Request, kind: LabJob) -> Option<JobId> {
        let job = req.job()?;
        match self.rt.engine.send(req) {
            Ok(()) => {
                self.rt.jobs.insert(job, JobKind::Lab(kind));
                Some(job)
            }
            Err(e) => {
                self.rt.lab.message = Some(e.to_string());
                None
            }
        }
    }

    fn lab_diverge(&mut self) {
        if self.rt.lab.diverge_job.is_some() {
            return;
        }
        let Some((a, b)) = self.compare_lanes() else {
            self.rt.lab.message = Some("load a model in a lane first".into());
            return;
        };
        let (Some(ia), Some(ib)) = (self.lane_index(a), self.lane_index(b)) else {
            return;
        };
        let (Some(spec_a), Some(spec_b), Some(sampling)) = (
            self.lane_spec(ia, DIVERGE_A),
            self.lane_spec(ib, DIVERGE_B),
            self.lane_sampling(ia),
        ) else {
            self.rt.lab.message = Some("both lanes need a model".into());
            return;
        };
        if self.state.prompt.trim().is_empty() {
            self.rt.lab.message = Some("type a prompt first".into());
            return;
        }
        let job = self.rt.engine.next_job();
        let req = Request::Diverge {
            job,
            lane_a: spec_a,
            lane_b: spec_b,
            prompt: self.current_prompt(),
            sampling,
            top_n: 5,
        };
        self.rt.lab.divergence_lanes = (self.lane_label(a), self.lane_label(b));
        self.rt.lab.divergence = None;
        self.rt.lab.selected_token = None;
        self.rt.lab.diverge_job = self.lab_send(&req, LabJob::Diverge);
    }

    fn lab_make_ladder(&mut self) {
        if self.rt.lab.quant.is_some() {
            return;
        }
        let Some(reference) = self.state.lab.reference.clone() else {
            self.rt.lab.message = Some("choose a reference model first".into());
            return;
        };
        let mut levels = VecDeque::new();
        for name in &self.state.lab.levels {
            match QuantType::parse(name) {
                Ok(q) => levels.push_back(q),
                Err(e) => {
                    self.rt.lab.message = Some(e);
                    return;
                }
            }
        }
        if levels.is_empty() {
            self.rt.lab.message = Some("tick at least one level".into());
            return;
        }
        if !reference.is_file() {
            self.rt.lab.message = Some(format!("{} does not exist", reference.display()));
            return;
        }
        self.rt.lab.quant_queue = levels;
        self.rt.lab.made.clear();
        self.lab_next_quant();
    }

    /// Starts the next queued level; when none are left, queues their evaluation.
    fn lab_next_quant(&mut self) {
        let Some(reference) = self.state.lab.reference.clone() else {
            return;
        };
        while let Some(q) = self.rt.lab.quant_queue.pop_front() {
            let output = self.rt.models_dir.join(q.output_name(&reference));
            if output.exists() {
                // Already made: reuse it (the table shows it like the others).
                if let Ok(h) = crate::gguf::read(&output) {
                    self.rt.lab.made.push(QuantOutcome {
                        input: reference.clone(),
                        input_type: String::new(),
                        output: output.clone(),
                        quant_type: q.name.to_string(),
                        bytes: h.file_bytes,
                        bits_per_weight: crate::gguf::Summary::of(&h).bits_per_weight,
                        seconds: 0.0,
                    });
                    continue;
                }
            }
            let request = QuantizeRequest {
                input: reference.clone(),
                output,
                qtype: q,
                allow_requantize: self.state.lab.allow_requantize,
                overwrite: true,
                threads: None,
            };
            match QuantizeJob::start_with_exe(request, Some(self.rt.engine.exe().to_path_buf())) {
                Ok(job) => {
                    self.rt.lab.quant_progress = (0.0, format!("{}: starting", q.name));
                    self.rt.lab.quant = Some(job);
                    return;
                }
                Err(e) => {
                    self.rt.lab.message = Some(format!("{}: {e}", q.name));
                    self.rt.lab.quant_queue.clear();
                    return;
                }
            }
        }
        self.rt.installed = crate::models::list_installed(&self.rt.models_dir);
        if !self.rt.lab.made.is_empty() {
            self.lab_evaluate_ladder();
        }
    }

    /// Polls the quantization worker (called every frame).
    pub fn poll_lab(&mut self) {
        let events = self.rt.lab.quant.as_mut().map(QuantizeJob::poll).unwrap_or_default();
        for ev in events {
            match ev {
                QuantEvent::Progress { fraction, tensor } => {
                    let name = self.rt.lab.quant.as_ref().map_or("", |q| q.request().qtype.name);
                    self.rt.lab.quant_progress = (fraction, format!("{name}: {tensor}"));
                }
                QuantEvent::Finished(r) => {
                    let name = self.rt.lab.quant.take().map_or("", |q| q.request().qtype.name);
                    match r {
                        Ok(o) => {
                            self.rt.lab.made.push(o);
                            self.lab_next_quant();
                        }
                        Err(e) => {
                            self.rt.lab.message = Some(format!("{name}: {e}"));
                            self.rt.lab.quant_queue.clear();
                        }
                    }
                }
            }
        }
        if let Some(rx) = &self.rt.lab.export_rx {
            if let Ok(r) = rx.try_recv() {
                self.rt.lab.export_rx = None;
                self.rt.lab.message = Some(match r {
                    Ok(dir) => format!("exported to {}", dir.display()),
                    Err(e) => format!("export failed: {e}"),
                });
            }
        }
    }

    fn eval_lane_spec(&self, id: LaneId, model: &Path, adapters: Vec<crate::protocol::AdapterSpec>) -> LaneSpec {
        LaneSpec {
            lane: id,
            model: ModelSpec {
                path: model.to_path_buf(),
                gpu_layers: None,
            },
            n_ctx: self.state.lab.n_ctx.max(16),
            threads: None,
            adapters,
        }
    }

    fn lab_evaluate_ladder(&mut self) {
        let Some(reference) = self.state.lab.reference.clone() else {
            self.rt.lab.message = Some("choose a reference model first".into());
            return;
        };
        let ref_spec = self.eval_lane_spec(EVAL_REF, &reference, Vec::new());
        let models: Vec<PathBuf> = self.rt.lab.made.iter().map(|m| m.output.clone()).collect();
        if models.is_empty() {
            self.rt.lab.message = Some("make the ladder first".into());
            return;
        }
        self.rt.lab.quality.clear();
        for m in models {
            let test = self.eval_lane_spec(EVAL_TEST, &m, Vec::new());
            self.rt.lab.eval_queue.push_back(EvalItem {
                model: m,
                adapters: String::new(),
                test,
                reference: ref_spec.clone(),
            });
        }
        self.lab_next_eval();
    }

    fn lab_evaluate_lanes(&mut self) {
        let reference = self.state.reference_lane.and_then(|r| self.lane_index(r)).unwrap_or(0);
        let Some(ref_spec) = self.lane_spec(reference, EVAL_REF) else {
            self.rt.lab.message = Some("the reference lane needs a model".into());
            return;
        };
        let ref_spec = LaneSpec {
            n_ctx: self.state.lab.n_ctx.max(16),
            ..ref_spec
        };
        self.rt.lab.quality.clear();
        for i in 0..self.state.lanes.len() {
            if i == reference {
                continue;
            }
            let Some(spec) = self.lane_spec(i, EVAL_TEST) else {
                continue;
            };
            let adapters = spec
                .adapters
                .iter()
                .map(|a| format!("{}:{}", a.path.display(), a.scale))
                .collect::<Vec<_>>()
                .join(";");
            self.rt.lab.eval_queue.push_back(EvalItem {
                model: spec.model.path.clone(),
                adapters,
                test: LaneSpec {
                    n_ctx: self.state.lab.n_ctx.max(16),
                    ..spec
                },
                reference: ref_spec.clone(),
            });
        }
        if self.rt.lab.eval_queue.is_empty() {
            self.rt.lab.message = Some("add a second lane to compare with the reference lane".into());
        }
        self.lab_next_eval();
    }

    fn lab_text(&mut self) -> Option<String> {
        match crate::eval::texts::read_text(self.state.lab.text.as_deref()) {
            Ok(t) => Some(t),
            Err(e) => {
                self.rt.lab.message = Some(e);
                None
            }
        }
    }

    fn lab_next_eval(&mut self) {
        if self.rt.lab.eval_current.is_some() {
            return;
        }
        let Some(item) = self.rt.lab.eval_queue.pop_front() else {
            // Done: give back the contexts, and the reference unless a lane uses it.
            self.lab_release(&[EVAL_TEST, EVAL_REF]);
            if let Some(r) = self.state.lab.reference.clone() {
                if !self.state.lanes.iter().any(|l| l.model.as_ref() == Some(&r)) {
                    let job = self.rt.engine.next_job();
                    self.housekeeping(&Request::UnloadModel { job, path: r });
                }
            }
            return;
        };
        let Some(text) = self.lab_text() else {
            self.rt.lab.eval_queue.clear();
            return;
        };
        let job = self.rt.engine.next_job();
        let req = Request::Eval {
            job,
            lane: item.test.clone(),
            reference: Some(item.reference.clone()),
            text,
            n_ctx: self.state.lab.n_ctx.max(16),
            max_chunks: self.state.lab.chunks,
        };
        self.rt.lab.eval_progress = (0.0, format!("{}: starting", file_label(&item.model)));
        if let Some(job) = self.lab_send(&req, LabJob::Eval) {
            self.rt.lab.eval_current = Some((job, item));
        } else {
            self.rt.lab.eval_queue.clear();
        }
    }

    fn lab_run_prompts(&mut self) {
        if self.rt.lab.prompt_run.is_some() {
            return;
        }
        let Some(path) = self.state.lab.prompt_set.clone() else {
            self.rt.lab.message = Some("open a prompt set (.jsonl) first, or drop one on the window".into());
            return;
        };
        let set = match std::fs::read_to_string(&path)
            .map_err(|e| e.to_string())
            .and_then(|t| PromptSet::parse(&t))
        {
            Ok(s) => s,
            Err(e) => {
                self.rt.lab.message = Some(format!("{}: {e}", path.display()));
                return;
            }
        };
        let seeds: Result<Vec<u32>, _> = self
            .state
            .lab
            .seeds
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::parse::<u32>)
            .collect();
        let seeds = match seeds {
            Ok(s) if !s.is_empty() => s,
            _ => {
                self.rt.lab.message = Some(format!(
                    "seeds must be whole numbers separated by commas, not {:?}",
                    self.state.lab.seeds
                ));
                return;
            }
        };
        // The reference lane first: agreement is measured against it.
        let mut order: Vec<usize> = (0..self.state.lanes.len()).collect();
        if let Some(r) = self.state.reference_lane.and_then(|r| self.lane_index(r)) {
            order.retain(|&i| i != r);
            order.insert(0, r);
        }
        let mut lanes = Vec::new();
        for (k, i) in order.into_iter().enumerate() {
            if let Some(spec) = self.lane_spec(i, PROMPT_LANES + k as LaneId) {
                lanes.push((self.lane_label(self.state.lanes[i].id), spec));
            }
        }
        if lanes.is_empty() {
            self.rt.lab.message = Some("load a model in a lane first".into());
            return;
        }
        let mut queue = VecDeque::new();
        for li in 0..lanes.len() {
            for ci in 0..set.cases.len() {
                for &s in &seeds {
                    queue.push_back((li, ci, s));
                }
            }
        }
        self.rt.lab.runs.clear();
        self.rt.lab.scorecards.clear();
        let total = queue.len();
        self.rt.lab.prompt_run = Some(PromptSetRun {
            set,
            lanes,
            queue,
            current: None,
            total,
            temperature: self.state.lab.temperature,
        });
        self.lab_next_prompt();
    }

    fn lab_next_prompt(&mut self) {
        let Some(run) = self.rt.lab.prompt_run.as_mut() else {
            return;
        };
        let Some((li, ci, seed)) = run.queue.pop_front() else {
            prompts::compare_to_reference(&mut self.rt.lab.runs, &run.lanes[0].0);
            self.rt.lab.scorecards = prompts::scorecards(&self.rt.lab.runs);
            let lanes: Vec<LaneId> = run.lanes.iter().map(|(_, spec)| spec.lane).collect();
            self.rt.lab.prompt_run = None;
            self.lab_release(&lanes);
            return;
        };
        let case = &run.set.cases[ci];
        let prompt = case.to_prompt();
        let job = self.rt.engine.next_job();
        let req = Request::Generate {
            job,
            lane: run.lanes[li].1.clone(),
            prompt,
            sampling: Sampling {
                temperature: run.temperature,
                seed,
                max_tokens: case.max_tokens.unwrap_or(64),
                ..Sampling::default()
            },
            top_n: 0,
        };
        match self.lab_send(&req, LabJob::Prompt) {
            Some(job) => {
                if let Some(run) = self.rt.lab.prompt_run.as_mut() {
                    run.current = Some((job, li, ci, seed));
                }
            }
            None => self.rt.lab.prompt_run = None,
        }
    }

    /// Drops lab lanes in the engine (their contexts), fire and forget.
    fn lab_release(&mut self, lanes: &[LaneId]) {
        for &lane in lanes {
            let job = self.rt.engine.next_job();
            self.housekeeping(&Request::DropLane { job, lane });
        }
    }

    fn lab_cancel(&mut self) {
        if let Some(q) = self.rt.lab.quant.as_mut() {
            q.cancel();
        }
        self.rt.lab.quant = None;
        self.rt.lab.quant_queue.clear();
        self.rt.lab.eval_queue.clear();
        if let Some(run) = self.rt.lab.prompt_run.as_mut() {
            run.queue.clear();
        }
        let lab_jobs: Vec<JobId> = self
            .rt
            .jobs
            .iter()
            .filter(|(_, k)| matches!(k, JobKind::Lab(_)))
            .map(|(j, _)| *j)
            .collect();
        for job in lab_jobs {
            self.housekeeping(&Request::Cancel { job });
        }
        self.rt.lab.message = Some("stopped".into());
    }

    /// Applies an engine event of a lab job.
    pub fn apply_lab_event(&mut self, kind: LabJob, ev: Event) {
        match (kind, ev) {
            (LabJob::Eval, Event::Progress { fraction, stage, .. }) => {
                let name = self
                    .rt
                    .lab
                    .eval_current
                    .as_ref()
                    .map_or_else(String::new, |(_, i)| file_label(&i.model));
                self.rt.lab.eval_progress = (fraction, format!("{name}: {stage}"));
            }
            (
                LabJob::Diverge,
                Event::Done {
                    result: JobResult::Divergence { result },
                    ..
                },
            ) => {
                self.rt.lab.diverge_job = None;
                self.rt.lab.divergence = Some(result);
                self.lab_release(&[DIVERGE_A, DIVERGE_B]);
            }
            (LabJob::Diverge, Event::Error { message, .. }) => {
                self.rt.lab.diverge_job = None;
                self.rt.lab.message = Some(message);
                self.lab_release(&[DIVERGE_A, DIVERGE_B]);
            }
            (
                LabJob::Eval,
                Event::Done {
                    result:
                        JobResult::Eval {
                            ppl,
                            kld,
                            eval_tokens_per_sec,
                            ..
                        },
                    ..
                },
            ) => {
                if let Some((_, item)) = self.rt.lab.eval_current.take() {
                    match crate::gguf::read(&item.model) {
                        Ok(h) => self.rt.lab.quality.push(QualityRow::new(
                            &item.model,
                            &h,
                            &item.adapters,
                            &ppl,
                            kld.as_deref(),
                            eval_tokens_per_sec,
                            0.0,
                        )),
                        Err(e) => self.rt.lab.message = Some(e.to_string()),
                    }
                    // Free the tested model unless a lane or the reference uses it.
                    let in_use = self
                        .state
                        .lanes
                        .iter()
                        .any(|l| l.model.as_deref() == Some(item.model.as_path()))
                        || item.model == item.reference.model.path;
                    if !in_use {
                        let job = self.rt.engine.next_job();
                        self.housekeeping(&Request::UnloadModel {
                            job,
                            path: item.model.clone(),
                        });
                    }
                }
                self.lab_next_eval();
            }
            (LabJob::Eval, Event::Error { message, cancelled, .. }) => {
                let name = self
                    .rt
                    .lab
                    .eval_current
                    .take()
                    .map_or_else(String::new, |(_, i)| file_label(&i.model));
                self.rt.lab.message = Some(if cancelled {
                    "stopped".into()
                } else {
                    format!("{name}: {message}")
                });
                self.rt.lab.eval_queue.clear();
                self.lab_release(&[EVAL_TEST, EVAL_REF]);
            }
            (
                LabJob::Prompt,
                Event::Done {
                    result: JobResult::Generated { stats },
                    ..
                },
            ) => {
                if let Some(run) = self.rt.lab.prompt_run.as_mut() {
                    if let Some((_, li, ci, seed)) = run.current.take() {
                        self.rt.lab.runs.push(PromptRun {
                            lane: run.lanes[li].0.clone(),
                            prompt_id: run.set.cases[ci].id.clone(),
                            seed,
                            passed: run.set.check(ci, &stats.text),
                            ttft_ms: stats.ttft_ms,
                            decode_tokens_per_sec: stats.decode_tokens_per_sec,
                            n_gen: stats.generated_tokens,
                            same_as_reference: false,
                            similarity_to_reference: 0.0,
                            tags: run.set.cases[ci].tags.join(";"),
                            text: stats.text,
                        });
                    }
                }
                self.lab_next_prompt();
            }
            (LabJob::Prompt, Event::Error { message, cancelled, .. }) => {
                self.rt.lab.message = Some(if cancelled { "stopped".into() } else { message });
                if let Some(run) = self.rt.lab.prompt_run.take() {
                    let lanes: Vec<LaneId> = run.lanes.iter().map(|(_, spec)| spec.lane).collect();
                    self.lab_release(&lanes);
                }
            }
            _ => {}
        }
    }

    /// Writes a tool's results to a new folder under the exports folder, on a thread (hashing
    /// model files for the manifest takes a moment).
    fn lab_export(&mut self, tab: LabTab) {
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let name = match tab {
            LabTab::Compare => "divergence",
            LabTab::Quality => "quality",
            LabTab::Prompts => "prompts",
        };
        let dir = self.rt.exports_dir.join(format!("{name}-{stamp}"));
        let mut files: Vec<(PathBuf, &'static str)> = Vec::new();
        let payload: Result<ExportPayload, String> = match tab {
            LabTab::Compare => match &self.rt.lab.divergence {
                Some(d) => {
                    if let Some((a, b)) = self.compare_lanes() {
                        for id in [a, b] {
                            if let Some(spec) = self.lane_index(id).and_then(|i| self.lane_spec(i, id)) {
                                files.extend(spec_files(&spec));
                            }
                        }
                    }
                    Ok(ExportPayload::Divergence(
                        d.clone(),
                        self.rt.lab.divergence_lanes.clone(),
                    ))
                }
                None => Err("compare two lanes first".into()),
            },
            LabTab::Quality => {
                if self.rt.lab.quality.is_empty() {
                    Err("measure quality first".into())
                } else {
                    for r in &self.rt.lab.quality {
                        files.push((PathBuf::from(&r.model_filename), "model"));
                        for a in r.adapters.split(';').filter(|a| !a.is_empty()) {
                            let path = a.rsplit_once(':').map_or(a, |(p, _)| p);
                            files.push((PathBuf::from(path), "adapter"));
                        }
                    }
                    if let Some(r) = &self.state.lab.reference {
                        files.push((r.clone(), "reference"));
                    }
                    Ok(ExportPayload::Quality(self.rt.lab.quality.clone()))
                }
            }
            LabTab::Prompts => {
                if self.rt.lab.scorecards.is_empty() {
                    Err("run a prompt set first".into())
                } else {
                    if let Some(p) = &self.state.lab.prompt_set {
                        files.push((p.clone(), "prompt set"));
                    }
                    for i in 0..self.state.lanes.len() {
                        if let Some(spec) = self.lane_spec(i, 0) {
                            files.extend(spec_files(&spec));
                        }
                    }
                    Ok(ExportPayload::Prompts(
                        self.rt.lab.scorecards.clone(),
                        self.rt.lab.runs.clone(),
                    ))
                }
            }
        };
        let payload = match payload {
            Ok(p) => p,
            Err(e) => {
                self.rt.lab.message = Some(e);
                return;
            }
        };
        let settings = serde_json::json!({
            "n_ctx": self.state.lab.n_ctx, "chunks": self.state.lab.chunks,
            "text": self.state.lab.text, "temperature": self.state.lab.temperature,
            "prompt": self.state.prompt, "chat_mode": self.state.chat_mode,
        });
        let seeds: Vec<u32> = self
            .state
            .lab
            .seeds
            .split(',')
            .filter_map(|s| s.trim().parse().ok())
            .collect();
        let kind = format!("window {name}");
        let (tx, rx) = mpsc::channel();
        let spawned = std::thread::Builder::new().name("lab-export".into()).spawn(move || {
            let mut manifest = RunManifest::new(
                &kind,
                settings,
                seeds,
                crate::engine::llama_build(),
                crate::engine::cpu_features(),
            );
            manifest.command.clear();
            for (p, role) in files {
                if let Err(e) = manifest.add_file(&p, role) {
                    let _ = tx.send(Err(format!("{}: {e}", p.display())));
                    return;
                }
            }
            let _ = tx.send(payload.write(&dir, &manifest).map(|()| dir).map_err(|e| e.to_string()));
        });
        match spawned {
            Ok(_) => self.rt.lab.export_rx = Some(rx),
            Err(e) => self.rt.lab.message = Some(format!("cannot start the export: {e}")),
        }
    }
}

/// A lane's model and adapter files, for a manifest.
fn spec_files(spec: &LaneSpec) -> Vec<(PathBuf, &'static str)> {
    std::iter::once((spec.model.path.clone(), "model"))
        .chain(spec.adapters.iter().map(|a| (a.path.clone(), "adapter")))
        .collect()
}

/// What an export writes.
enum ExportPayload {
    Divergence(DivergenceResult, (String, String)),
    Quality(Vec<QualityRow>),
    Prompts(Vec<Scorecard>, Vec<PromptRun>),
}

impl ExportPayload {
    fn write(&self, dir: &Path, manifest: &RunManifest) -> Result<(), export::ExportError> {
        let json = |v: serde_json::Value| export::json_string(&v);
        match self {
            ExportPayload::Divergence(d, (a, b)) => {
                let rows: Vec<serde_json::Value> = d
                    .tokens
                    .iter()
                    .map(|t| {
                        serde_json::json!({"index": t.index, "token_id": t.token_id, "piece": t.piece, "kl": t.kl,
                        "top1_agree": t.top1_agree, "p_a": t.p_a, "p_b": t.p_b})
                    })
                    .collect();
                let csv_rows: Vec<crate::eval::divergence::CsvRow> =
                    d.tokens.iter().map(crate::eval::divergence::CsvRow::from).collect();
                export::write_file(&dir.join("results.csv"), export::csv_string(&csv_rows)?.as_bytes())?;
                export::write_file(
                    &dir.join("results.json"),
                    json(
                        serde_json::json!({"lane_a": a, "lane_b": b, "rows": rows, "detail": d, "manifest": manifest}),
                    )?
                    .as_bytes(),
                )?;
            }
            ExportPayload::Quality(rows) => {
                export::write_file(&dir.join("results.csv"), export::csv_string(rows)?.as_bytes())?;
                export::write_file(
                    &dir.join("results.json"),
                    json(serde_json::json!({"rows": rows, "manifest": manifest}))?.as_bytes(),
                )?;
                let points = crate::eval::table::ladder_points(rows);
                chart::write_ladder(&dir.join("ladder.png"), "quality vs reference", &points)?;
                chart::write_ladder(&dir.join("ladder.svg"), "quality vs reference", &points)?;
            }
            ExportPayload::Prompts(cards, runs) => {
                export::write_file(&dir.join("results.csv"), export::csv_string(cards)?.as_bytes())?;
                export::write_file(&dir.join("runs.csv"), export::csv_string(runs)?.as_bytes())?;
                export::write_file(
                    &dir.join("results.json"),
                    json(serde_json::json!({"rows": cards, "detail": {"runs": runs}, "manifest": manifest}))?
                        .as_bytes(),
                )?;
                let points: Vec<chart::LanePoint> = cards
                    .iter()
                    .map(|c| chart::LanePoint {
                        label: c.lane.clone(),
                        ttft_ms_mean: c.ttft_ms_mean,
                        ttft_ms_p95: c.ttft_ms_p95,
                        decode_tps_mean: c.decode_tps_mean,
                    })
                    .collect();
                chart::write_lanes(&dir.join("lanes.png"), "prompt set: latency per lane", &points)?;
                chart::write_lanes(&dir.join("lanes.svg"), "prompt set: latency per lane", &points)?;
            }
        }
        export::write_file(&dir.join("manifest.json"), export::json_string(manifest)?.as_bytes())
    }
}
