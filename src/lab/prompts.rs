//! A prompt set on several lanes with several seeds: every (lane, prompt, seed) is one
//! generation, the reference lane (the first) runs first, and the scorecards compare every lane
//! with it once the last run is in.

use std::collections::VecDeque;

use super::{failure, Job, JobFailed, Progress};
use crate::eval::chart::LanePoint;
use crate::eval::prompts::{self, PromptRun, PromptSet, Scorecard};
use crate::protocol::{Event, JobId, JobResult, LaneSpec, Request, RunStats, Sampling};

/// How every prompt is sampled.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PromptSampling {
    /// Temperature (0 = greedy: every seed gives the same output).
    pub temperature: f32,
    /// Token limit of a prompt that sets none.
    pub max_tokens: u32,
}

/// A prompt set being run.
#[derive(Debug)]
pub struct PromptSetJob {
    set: PromptSet,
    lanes: Vec<(String, LaneSpec)>,
    queue: VecDeque<(usize, usize, u32)>,
    current: Option<(usize, usize, u32)>,
    sampling: PromptSampling,
    progress: Progress,
    over: bool,
    /// Runs so far.
    pub runs: Vec<PromptRun>,
    /// One per lane, when every run is in.
    pub scorecards: Vec<Scorecard>,
}

impl PromptSetJob {
    /// Runs `set` on `lanes` (label and spec; the first is the reference) with every seed.
    pub fn new(set: PromptSet, lanes: Vec<(String, LaneSpec)>, seeds: &[u32], sampling: PromptSampling) -> Self {
        let mut queue = VecDeque::new();
        for li in 0..lanes.len() {
            for ci in 0..set.cases.len() {
                for &s in seeds {
                    queue.push_back((li, ci, s));
                }
            }
        }
        Self {
            progress: Progress {
                total: queue.len(),
                ..Progress::default()
            },
            over: queue.is_empty(),
            set,
            lanes,
            queue,
            current: None,
            sampling,
            runs: Vec::new(),
            scorecards: Vec::new(),
        }
    }

    /// The lanes: label and spec.
    pub fn lanes(&self) -> &[(String, LaneSpec)] {
        &self.lanes
    }

    fn run_from(&self, li: usize, ci: usize, seed: u32, stats: RunStats) -> PromptRun {
        let case = &self.set.cases[ci];
        PromptRun {
            lane: self.lanes[li].0.clone(),
            prompt_id: case.id.clone(),
            seed,
            passed: self.set.check(ci, &stats.text),
            ttft_ms: stats.ttft_ms,
            decode_tokens_per_sec: stats.decode_tokens_per_sec,
            n_gen: stats.generated_tokens,
            same_as_reference: false,
            similarity_to_reference: 0.0,
            tags: case.tags.join(";"),
            text: stats.text,
        }
    }

    fn stop(&mut self) {
        self.queue.clear();
        self.current = None;
        self.over = true;
    }
}

impl Job for PromptSetJob {
    fn next_request(&mut self, job: JobId) -> Option<Request> {
        if self.over || self.current.is_some() {
            return None;
        }
        let (li, ci, seed) = self.queue.pop_front()?;
        self.current = Some((li, ci, seed));
        let case = &self.set.cases[ci];
        self.progress.label = format!("{} {}", self.lanes[li].0, case.id);
        Some(Request::Generate {
            job,
            lane: self.lanes[li].1.clone(),
            prompt: case.to_prompt(),
            sampling: Sampling {
                temperature: self.sampling.temperature,
                seed,
                max_tokens: case.max_tokens.unwrap_or(self.sampling.max_tokens),
                ..Sampling::default()
            },
            top_n: 0,
            exclusive: false,
        })
    }

    fn on_event(&mut self, ev: Event) -> Result<(), JobFailed> {
        let Some((li, ci, seed)) = self.current else {
            return Ok(());
        };
        let what = format!("{}, prompt {}", self.lanes[li].0, self.set.cases[ci].id);
        if let Some(f) = failure(&ev, &what) {
            self.stop();
            return Err(f);
        }
        match ev {
            Event::Done {
                result: JobResult::Generated { stats },
                ..
            } => {
                let run = self.run_from(li, ci, seed, stats);
                self.runs.push(run);
                self.current = None;
                self.progress.done += 1;
                if self.queue.is_empty() {
                    prompts::compare_to_reference(&mut self.runs, &self.lanes[0].0);
                    self.scorecards = prompts::scorecards(&self.runs);
                    self.over = true;
                }
                Ok(())
            }
            Event::Done { result, .. } => {
                self.stop();
                Err(JobFailed {
                    message: format!("{what}: unexpected engine reply: {result:?}"),
                    cancelled: false,
                })
            }
            _ => Ok(()),
        }
    }

    fn finished(&self) -> bool {
        self.over
    }

    fn progress(&self) -> &Progress {
        &self.progress
    }

    fn cancel(&mut self) {
        self.queue.clear();
        if self.current.is_none() {
            self.over = true;
        }
    }

    fn release(&self, next_job: &mut dyn FnMut() -> JobId) -> Vec<Request> {
        self.lanes
            .iter()
            .map(|(_, spec)| Request::DropLane {
                job: next_job(),
                lane: spec.lane,
            })
            .collect()
    }
}

/// The scorecards as a markdown table.
pub fn scorecard_table(cards: &[Scorecard]) -> String {
    let mut table = String::from(
        "| lane | runs | pass rate | TTFT ms mean / p95 | decode tok/s mean / p95 (sd over seeds) | tokens | same as ref | similarity | pass by tag |\n|---|---:|---:|---:|---:|---:|---:|---:|---|\n",
    );
    for c in cards {
        table.push_str(&format!(
            "| {} | {} | {:.0} % ± {:.0} | {:.1} / {:.1} | {:.1} / {:.1} (± {:.1}) | {:.1} | {:.0} % | {:.2} | {} |\n",
            c.lane,
            c.runs,
            c.pass_rate * 100.0,
            c.pass_rate_sd * 100.0,
            c.ttft_ms_mean,
            c.ttft_ms_p95,
            c.decode_tps_mean,
            c.decode_tps_p95,
            c.decode_tps_sd,
            c.n_gen_mean,
            c.agreement * 100.0,
            c.similarity,
            c.pass_by_tag
        ));
    }
    table
}

/// The latency chart's points, one per scorecard.
pub fn lane_points(cards: &[Scorecard]) -> Vec<LanePoint> {
    cards
        .iter()
        .map(|c| LanePoint {
            label: c.lane.clone(),
            ttft_ms_mean: c.ttft_ms_mean,
            ttft_ms_p95: c.ttft_ms_p95,
            decode_tps_mean: c.decode_tps_mean,
        })
        .collect()
}
