//! The lab in the window: the lanes and settings it starts [`crate::lab`]'s jobs with, the
//! token-level comparison of two lanes and the quantization ladder. Requests go to the engine
//! (or, for quantization, to a worker process) as the jobs hand them out, events go back to the
//! jobs as frames drain them; the lab panel only draws this and emits [`LabCommand`]s.

use std::path::{Path, PathBuf};
use std::sync::mpsc::Receiver;

mod adapters_out;
mod export;
mod jobs;

use super::{App, JobKind};
use crate::eval::prompts::{PromptRun, PromptSet, Scorecard};
use crate::eval::table::QualityRow;
use crate::lab::diverge::DivergeJob;
use crate::lab::ladder::{Existing, Ladder, LadderSpec};
use crate::lab::prompts::{PromptSampling, PromptSetJob};
use crate::lab::quality::{QualityItem, QualityJob, QualitySettings};
use crate::lab::{Job, Progress};
use crate::protocol::{DivergenceResult, JobId, LaneId, LaneSpec, Request};
use crate::quant::{QuantOutcome, QuantType};
use crate::ui::state::LabTab;

/// Engine lane ids the lab uses, far above the window's lanes, so lab runs never touch a
/// lane's output or context.
pub const LAB_LANE_BASE: LaneId = 1 << 40;
pub(super) const EVAL_TEST: LaneId = LAB_LANE_BASE;
pub(super) const EVAL_REF: LaneId = LAB_LANE_BASE + 1;
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
    /// Compress a lane's adapter to lower ranks (halving to 1) and measure each against it.
    CompressAdapter {
        /// The lane.
        lane: LaneId,
        /// The adapter row.
        index: usize,
    },
    /// Write a lane's adapter as a PEFT (or, with `mlx`, an MLX-LM) folder in the exports folder.
    ExportAdapter {
        /// The lane.
        lane: LaneId,
        /// The adapter row.
        index: usize,
        /// MLX-LM instead of PEFT.
        mlx: bool,
    },
}

/// The lab's runtime state.
#[derive(Default)]
pub struct LabRuntime {
    /// The last comparison.
    pub divergence: Option<DivergenceResult>,
    /// Labels of lanes A and B of it.
    pub divergence_lanes: (String, String),
    /// The comparison running.
    pub diverge_job: Option<DivergeJob>,
    /// Token selected in the comparison.
    pub selected_token: Option<usize>,
    /// The ladder being made.
    pub ladder: Option<Ladder>,
    /// The levels of the last ladder made.
    pub made: Vec<QuantOutcome>,
    /// The quality table being measured.
    pub quality_job: Option<QualityJob>,
    /// The last quality table measured.
    pub quality: Vec<QualityRow>,
    /// A prompt set running.
    pub prompt_job: Option<PromptSetJob>,
    /// Prompt-set runs done.
    pub runs: Vec<PromptRun>,
    /// Their scorecards.
    pub scorecards: Vec<Scorecard>,
    /// Last message (error or note) for the lab panel.
    pub message: Option<String>,
    /// Export in progress: where and the result.
    pub export_rx: Option<Receiver<Result<PathBuf, String>>>,
    /// A compression being written (then measured): the lane's model, the original, the files.
    pub compress: Option<adapters_out::CompressTask>,
}

impl LabRuntime {
    /// Whether the lab has work in flight.
    pub fn busy(&self) -> bool {
        self.diverge_job.is_some()
            || self.ladder.is_some()
            || self.quality_job.is_some()
            || self.prompt_job.is_some()
            || self.export_rx.is_some()
            || self.compress.is_some()
    }

    /// The quality rows to show: those of the measurement running, else the last one.
    pub fn quality_rows(&self) -> &[QualityRow] {
        self.quality_job.as_ref().map_or(&self.quality, |j| &j.rows)
    }

    /// The levels to show: those of the ladder being made, else the last one's.
    pub fn made(&self) -> &[QuantOutcome] {
        self.ladder.as_ref().map_or(&self.made, |l| &l.made)
    }

    /// Where the quality measurement running is.
    pub fn quality_progress(&self) -> Option<&Progress> {
        self.quality_job.as_ref().map(Job::progress)
    }

    /// Where the prompt set running is.
    pub fn prompt_progress(&self) -> Option<&Progress> {
        self.prompt_job.as_ref().map(Job::progress)
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
            .filter(|l| l.model.is_some() || l.remote.is_some())
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
        let what = match &lane.remote {
            Some(r) => r.label(),
            None => lane.model.as_deref().map(file_label).unwrap_or_default(),
        };
        let mut s = format!("Lane {}: {what}", i + 1);
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
            LabCommand::CompressAdapter { lane, index } => self.compress_adapter(lane, index),
            LabCommand::ExportAdapter { lane, index, mlx } => self.export_adapter(lane, index, mlx),
        }
    }

    fn lab_send(&mut self, req: &Request, kind: LabJob) -> Option<JobId> {
        let job = req.job()?;
        match self.rt.engine.client.send(req) {
            Ok(()) => {
                self.rt.engine.jobs.insert(job, JobKind::Lab(kind));
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
        self.rt.lab.divergence_lanes = (self.lane_label(a), self.lane_label(b));
        self.rt.lab.divergence = None;
        self.rt.lab.selected_token = None;
        let prompt = self.current_prompt();
        self.rt.lab.diverge_job = Some(DivergeJob::new(spec_a, spec_b, prompt, sampling, 5));
        self.lab_pump(LabJob::Diverge);
    }

    fn lab_make_ladder(&mut self) {
        if self.rt.lab.ladder.is_some() {
            return;
        }
        let Some(reference) = self.state.lab.reference.clone() else {
            self.rt.lab.message = Some("choose a reference model first".into());
            return;
        };
        let levels = match self.state.lab.levels.iter().map(|n| QuantType::parse(n)).collect() {
            Ok(l) => l,
            Err(e) => {
                self.rt.lab.message = Some(e);
                return;
            }
        };
        let spec = LadderSpec {
            input: reference,
            out_dir: self.rt.library.models_dir.clone(),
            levels,
            allow_requantize: self.state.lab.allow_requantize,
            existing: Existing::Reuse,
            threads: None,
            exe: Some(self.rt.engine.client.exe().to_path_buf()),
        };
        match Ladder::start(spec) {
            Ok(ladder) => {
                self.rt.lab.made.clear();
                self.rt.lab.ladder = Some(ladder);
                self.poll_ladder();
            }
            Err(e) => self.rt.lab.message = Some(e),
        }
    }

    /// Moves the ladder on; once every level is made, measures them against the reference.
    fn poll_ladder(&mut self) {
        let Some(ladder) = self.rt.lab.ladder.as_mut() else {
            return;
        };
        let result = ladder.poll();
        if !ladder.finished() {
            return;
        }
        if let Some(ladder) = self.rt.lab.ladder.take() {
            self.rt.lab.made = ladder.made;
        }
        self.rt.library.installed = crate::models::list_installed(&self.rt.library.models_dir);
        match result {
            Ok(()) => self.lab_evaluate_ladder(),
            Err(e) => self.rt.lab.message = Some(e),
        }
    }

    /// Polls the quantization workers and the export (called every frame).
    pub fn poll_lab(&mut self) {
        self.poll_ladder();
        self.poll_compress();
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

    pub(super) fn eval_lane_spec(&self, id: LaneId, model: &Path) -> LaneSpec {
        LaneSpec::local(id, model, self.state.lab.n_ctx.max(16), Vec::new())
    }

    fn lab_evaluate_ladder(&mut self) {
        let Some(reference) = self.state.lab.reference.clone() else {
            self.rt.lab.message = Some("choose a reference model first".into());
            return;
        };
        let items: Vec<QualityItem> = self
            .rt
            .lab
            .made
            .iter()
            .map(|m| QualityItem::new(self.eval_lane_spec(EVAL_TEST, &m.output)))
            .collect();
        if items.is_empty() {
            self.rt.lab.message = Some("make the ladder first".into());
            return;
        }
        let reference = self.eval_lane_spec(EVAL_REF, &reference);
        self.lab_measure(items, reference);
    }

    fn lab_evaluate_lanes(&mut self) {
        let n_ctx = self.state.lab.n_ctx.max(16);
        let reference = self.state.reference_lane.and_then(|r| self.lane_index(r)).unwrap_or(0);
        let Some(ref_spec) = self.lane_spec(reference, EVAL_REF) else {
            self.rt.lab.message = Some("the reference lane needs a model".into());
            return;
        };
        let items: Vec<QualityItem> = (0..self.state.lanes.len())
            .filter(|&i| i != reference)
            .filter_map(|i| self.lane_spec(i, EVAL_TEST))
            .map(|spec| QualityItem::new(LaneSpec { n_ctx, ..spec }))
            .collect();
        if items.is_empty() {
            self.rt.lab.message = Some("add a second lane to compare with the reference lane".into());
            return;
        }
        self.lab_measure(items, LaneSpec { n_ctx, ..ref_spec });
    }

    /// Starts measuring `items` against `reference` over the lab's text.
    pub(super) fn lab_measure(&mut self, items: Vec<QualityItem>, reference: LaneSpec) {
        if self.rt.lab.quality_job.is_some() {
            return;
        }
        let text = match crate::eval::texts::read_text(self.state.lab.text.as_deref()) {
            Ok(t) => t,
            Err(e) => {
                self.rt.lab.message = Some(e);
                return;
            }
        };
        let settings = QualitySettings {
            text,
            n_ctx: self.state.lab.n_ctx.max(16),
            max_chunks: self.state.lab.chunks,
            tg: 0,
            keep_loaded: self.state.lanes.iter().filter_map(|l| l.model.clone()).collect(),
        };
        self.rt.lab.quality.clear();
        self.rt.lab.quality_job = Some(QualityJob::new(items, Some(reference), settings));
        self.lab_pump(LabJob::Eval);
    }

    fn lab_run_prompts(&mut self) {
        if self.rt.lab.prompt_job.is_some() {
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
        let Some(seeds) = self.lab_seeds() else {
            self.rt.lab.message = Some(format!(
                "seeds must be whole numbers separated by commas, not {:?}",
                self.state.lab.seeds
            ));
            return;
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
        let sampling = PromptSampling {
            temperature: self.state.lab.temperature,
            max_tokens: 64,
        };
        let endpoints: Vec<String> = self
            .state
            .lab
            .endpoints
            .split([',', ' '])
            .filter(|u| !u.trim().is_empty())
            .map(String::from)
            .collect();
        let mut job = PromptSetJob::new(set, lanes, &seeds, sampling);
        // The field stays filled while the lanes change; endpoints no lane can use are not an
        // error here, as they are for a command line that names both.
        let unused = job
            .fan_out(&endpoints)
            .err()
            .map(|e| format!("more endpoints: {e}, so they are not used"));
        let asked = (self.state.lab.parallel > 0).then_some(self.state.lab.parallel);
        let (job, n, why) = job.parallel_or_auto(asked);
        let parallel = why.map(|why| format!("prompt set: {n} run(s) at once ({why})"));
        if let Some(notice) = [parallel, unused]
            .into_iter()
            .flatten()
            .reduce(|a, b| format!("{a}; {b}"))
        {
            self.rt.notice = Some(notice);
        }
        self.rt.lab.runs.clear();
        self.rt.lab.scorecards.clear();
        self.rt.lab.prompt_job = Some(job);
        self.lab_pump(LabJob::Prompt);
    }

    /// The seeds field parsed; `None` unless it is a non-empty list of whole numbers.
    fn lab_seeds(&self) -> Option<Vec<u32>> {
        let seeds: Vec<u32> = self
            .state
            .lab
            .seeds
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::parse::<u32>)
            .collect::<Result<_, _>>()
            .ok()?;
        (!seeds.is_empty()).then_some(seeds)
    }
}
