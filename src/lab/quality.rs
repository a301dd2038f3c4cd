//! Quality over a text, model by model: each tested lane is scored (perplexity, and with a
//! reference lane KL divergence and the token statistics, as llama-perplexity defines them),
//! optionally timed on a short decode for the tok/s column, then its model is unloaded before
//! the next one loads unless something else still uses it.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};

use super::{failure, Job, JobFailed, Progress};
use crate::eval::table::QualityRow;
use crate::protocol::{AdapterSpec, Event, JobId, JobResult, LaneId, LaneSpec, Request};

/// One model (with its adapters) to score.
#[derive(Debug, Clone)]
pub struct QualityItem {
    /// The tested lane.
    pub test: LaneSpec,
    /// Its adapters as the table names them.
    pub adapters_label: String,
}

impl QualityItem {
    /// An item for `test`, its adapters labelled `path:scale;…`.
    pub fn new(test: LaneSpec) -> Self {
        let adapters_label = adapters_label(&test.adapters);
        Self { test, adapters_label }
    }
}

/// The table's adapters column: `path:scale` joined by `;`.
pub fn adapters_label(a: &[AdapterSpec]) -> String {
    a.iter()
        .map(|a| format!("{}:{}", a.path.display(), a.scale))
        .collect::<Vec<_>>()
        .join(";")
}

/// How every item is scored.
#[derive(Debug, Clone)]
pub struct QualitySettings {
    /// The evaluation text.
    pub text: String,
    /// Tokens per chunk (llama-perplexity's `-c`).
    pub n_ctx: u32,
    /// At most this many chunks.
    pub max_chunks: Option<u32>,
    /// Tokens of a decode benchmark per item for the tok/s column (0 = none).
    pub tg: u32,
    /// Models to leave loaded when their item is done (the window's lanes use them).
    pub keep_loaded: Vec<PathBuf>,
}

#[derive(Debug)]
enum Stage {
    Eval,
    Bench(Box<QualityRow>),
    Unload,
}

#[derive(Debug)]
struct Step {
    item: QualityItem,
    stage: Stage,
    sent: bool,
}

/// The quality table, one item at a time.
#[derive(Debug)]
pub struct QualityJob {
    queue: VecDeque<QualityItem>,
    reference: Option<LaneSpec>,
    settings: QualitySettings,
    step: Option<Step>,
    progress: Progress,
    over: bool,
    /// Engine lanes the tested items use.
    lanes: Vec<LaneId>,
    /// Rows so far, in item order.
    pub rows: Vec<QualityRow>,
}

fn file_label(p: &Path) -> String {
    p.file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned())
}

impl QualityJob {
    /// Scores `items` (against `reference` when given).
    pub fn new(items: Vec<QualityItem>, reference: Option<LaneSpec>, settings: QualitySettings) -> Self {
        let progress = Progress {
            total: items.len(),
            ..Progress::default()
        };
        let mut lanes: Vec<LaneId> = items.iter().map(|i| i.test.lane).collect();
        lanes.sort_unstable();
        lanes.dedup();
        Self {
            over: items.is_empty(),
            lanes,
            queue: items.into(),
            reference,
            settings,
            step: None,
            progress,
            rows: Vec::new(),
        }
    }

    /// The model of the item being scored.
    pub fn current_model(&self) -> Option<&Path> {
        self.step.as_ref().map(|s| s.item.test.model.path.as_path())
    }

    fn is_used_elsewhere(&self, model: &Path) -> bool {
        self.settings.keep_loaded.iter().any(|k| k == model)
            || self.reference.as_ref().is_some_and(|r| r.model.path == model)
    }

    fn fail(&mut self, f: JobFailed) -> Result<(), JobFailed> {
        self.queue.clear();
        self.step = None;
        self.over = true;
        Err(f)
    }

    /// The item's row is complete: unload its model next unless something still uses it.
    fn row_done(&mut self, row: QualityRow) {
        self.rows.push(row);
        let Some(step) = self.step.take() else {
            return;
        };
        if self.is_used_elsewhere(&step.item.test.model.path) {
            self.item_done();
        } else {
            self.step = Some(Step {
                stage: Stage::Unload,
                sent: false,
                ..step
            });
        }
    }

    fn item_done(&mut self) {
        self.step = None;
        self.progress.done += 1;
        self.progress.fraction = 0.0;
        self.over = self.queue.is_empty();
    }
}

impl Job for QualityJob {
    fn next_request(&mut self, job: JobId) -> Option<Request> {
        if self.over {
            return None;
        }
        if self.step.is_none() {
            let item = self.queue.pop_front()?;
            self.progress.label = format!("{}: starting", file_label(&item.test.model.path));
            self.step = Some(Step {
                item,
                stage: Stage::Eval,
                sent: false,
            });
        }
        let step = self.step.as_mut()?;
        if step.sent {
            return None;
        }
        step.sent = true;
        let test = &step.item.test;
        Some(match &step.stage {
            Stage::Eval => Request::Eval {
                job,
                lane: test.clone(),
                reference: self.reference.clone(),
                text: self.settings.text.clone(),
                n_ctx: self.settings.n_ctx,
                max_chunks: self.settings.max_chunks,
            },
            Stage::Bench(_) => Request::Bench {
                job,
                lane: LaneSpec {
                    n_ctx: self.settings.n_ctx.max(self.settings.tg + 16),
                    ..test.clone()
                },
                n_prompt: 0,
                n_gen: self.settings.tg,
                seed: 1,
            },
            Stage::Unload => Request::UnloadModel {
                job,
                path: test.model.path.clone(),
            },
        })
    }

    fn on_event(&mut self, ev: Event) -> Result<(), JobFailed> {
        let Some(step) = self.step.as_mut() else {
            return Ok(());
        };
        let name = file_label(&step.item.test.model.path);
        if let Some(f) = failure(&ev, &name) {
            return self.fail(f);
        }
        let Event::Done { result, .. } = ev else {
            if let Event::Progress { fraction, stage, .. } = ev {
                self.progress.fraction = fraction;
                self.progress.label = format!("{name}: {stage}");
            }
            return Ok(());
        };
        match (std::mem::replace(&mut step.stage, Stage::Unload), result) {
            (
                Stage::Eval,
                JobResult::Eval {
                    ppl,
                    kld,
                    eval_tokens_per_sec,
                    ..
                },
            ) => {
                let header = match crate::gguf::read(&step.item.test.model.path) {
                    Ok(h) => h,
                    Err(e) => {
                        return self.fail(JobFailed {
                            message: format!("{name}: {e}"),
                            cancelled: false,
                        })
                    }
                };
                let row = QualityRow::new(
                    &step.item.test.model.path,
                    &header,
                    &step.item.adapters_label,
                    &ppl,
                    kld.as_deref(),
                    eval_tokens_per_sec,
                    0.0,
                );
                if self.settings.tg > 0 {
                    step.stage = Stage::Bench(Box::new(row));
                    step.sent = false;
                    self.progress.label = format!("{name}: timing {} tokens", self.settings.tg);
                } else {
                    self.row_done(row);
                }
            }
            (Stage::Bench(row), JobResult::Bench { tg_tokens_per_sec, .. }) => {
                self.row_done(QualityRow {
                    avg_ts: tg_tokens_per_sec,
                    ..*row
                });
            }
            (Stage::Unload, JobResult::ModelUnloaded) => self.item_done(),
            (_, other) => {
                return self.fail(JobFailed {
                    message: format!("{name}: unexpected engine reply: {other:?}"),
                    cancelled: false,
                })
            }
        }
        Ok(())
    }

    fn finished(&self) -> bool {
        self.over
    }

    fn progress(&self) -> &Progress {
        &self.progress
    }

    fn cancel(&mut self) {
        self.queue.clear();
        if self.step.as_ref().is_none_or(|s| !s.sent) {
            self.step = None;
            self.over = true;
        }
    }

    fn release(&self, next_job: &mut dyn FnMut() -> JobId) -> Vec<Request> {
        let mut out: Vec<Request> = self
            .lanes
            .iter()
            .chain(self.reference.as_ref().map(|r| &r.lane))
            .map(|&lane| Request::DropLane { job: next_job(), lane })
            .collect();
        if let Some(r) = &self.reference {
            if !self.settings.keep_loaded.contains(&r.model.path) {
                out.push(Request::UnloadModel {
                    job: next_job(),
                    path: r.model.path.clone(),
                });
            }
        }
        out
    }
}
