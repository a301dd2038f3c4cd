//! A prompt set on several lanes with several seeds: every (lane, prompt, seed) is one
//! generation, the reference lane (the first) runs first, and the scorecards compare every lane
//! with it once the last run is in.

use std::collections::{HashMap, VecDeque};

use super::{failure, Job, JobFailed, Progress};
use crate::eval::chart::LanePoint;
use crate::eval::prompts::{self, PromptRun, PromptSet, Scorecard};
use crate::protocol::{Event, JobId, JobResult, LaneId, LaneSpec, Request, RunStats, Sampling};

/// Tries of one run on endpoints that were unreachable or overloaded, before the set fails.
const MAX_TRIES: u32 = 4;

/// How every prompt is sampled.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PromptSampling {
    /// Temperature (0 = greedy: every seed gives the same output).
    pub temperature: f32,
    /// Token limit of a prompt that sets none.
    pub max_tokens: u32,
}

/// One (lane, prompt, seed) and the tries it took.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Item {
    lane: usize,
    case: usize,
    seed: u32,
    tries: u32,
}

/// A run in flight: its item, and where it runs (a slot of a local lane, or an endpoint).
#[derive(Debug, Clone, Copy)]
struct Flight {
    item: Item,
    slot: usize,
}

/// The most runs at once [`auto_parallel`] picks: llama.cpp's own batched bench still gains from
/// 4 to 8 sequences on 2 cores here (1.2× to 1.5× over one), and a pool holds 16.
pub const AUTO_PARALLEL_MAX: usize = 8;

/// Runs at once when the caller names none, and why: as many as the local lanes' contexts fit
/// in a quarter of `avail_bytes` (each run in flight holds a context of `n_ctx` cells of its own
/// and, batched, a seat of at most as many in a pool: twice a context's KV cache per run), at
/// most [`AUTO_PARALLEL_MAX`] and at most the runs each lane has. 1 where free memory or a
/// model's header is unknown, or where every lane is remote (the endpoint's slots decide; send
/// more with `--parallel`).
pub fn auto_parallel(lanes: &[(String, LaneSpec)], runs_per_lane: usize, avail_bytes: Option<u64>) -> (usize, String) {
    let local: Vec<&LaneSpec> = lanes.iter().map(|(_, l)| l).filter(|l| l.remote.is_none()).collect();
    if local.is_empty() {
        return (1, "every lane is remote".into());
    }
    let Some(avail) = avail_bytes else {
        return (1, "free memory unknown".into());
    };
    let mut per_run_bytes = 0u64;
    for l in &local {
        // Adapters add no KV cache: only the model's header is read.
        let Ok(facts) = crate::sim::facts::read(&l.model.path, &[]) else {
            return (1, format!("{} could not be read", l.model.path.display()));
        };
        // A context of 0 cells means the model's own length, which the engine caps at 4096.
        let n_ctx = if l.n_ctx == 0 { 4096 } else { u64::from(l.n_ctx) };
        per_run_bytes = per_run_bytes.saturating_add(facts.kv_bytes_per_token.saturating_mul(n_ctx).saturating_mul(2));
    }
    let fits = usize::try_from((avail / 4) / per_run_bytes.max(1)).unwrap_or(usize::MAX);
    let n = fits.min(AUTO_PARALLEL_MAX).min(runs_per_lane).max(1);
    // Says which bound decided, shortly: the window shows it in a one-line notice.
    let kv = crate::metrics::mib(per_run_bytes);
    let free = crate::metrics::mib(avail);
    let why = if n == runs_per_lane && n < fits.min(AUTO_PARALLEL_MAX) {
        format!("{runs_per_lane} run(s) per lane")
    } else if n == AUTO_PARALLEL_MAX && n < fits {
        format!("at most {AUTO_PARALLEL_MAX}; {kv} of KV cache per run, {free} free")
    } else {
        format!("{kv} of KV cache per run in a quarter of {free} free")
    };
    (n, why)
}

/// A prompt set being run.
#[derive(Debug)]
pub struct PromptSetJob {
    set: PromptSet,
    lanes: Vec<(String, LaneSpec)>,
    queue: VecDeque<Item>,
    in_flight: HashMap<JobId, Flight>,
    /// Runs at once; each local lane gets this many engine lanes, a remote lane's runs are
    /// spread over its endpoints.
    parallel: usize,
    /// Extra endpoints serving the same model as each remote lane's own (fan-out).
    replicas: Vec<String>,
    /// Endpoints (by slot) that failed and are skipped while another one works.
    down: Vec<bool>,
    sampling: PromptSampling,
    /// Each lane's own sampling (a scene's lanes), used instead of `sampling` and the seeds.
    lane_sampling: Vec<Sampling>,
    progress: Progress,
    over: bool,
    /// Cancelled: runs in flight end, nothing is queued again.
    cancelled: bool,
    /// Runs so far.
    pub runs: Vec<PromptRun>,
    /// Runs tried again after an endpoint was unreachable or overloaded.
    pub retried: usize,
    /// One per lane, when every run is in.
    pub scorecards: Vec<Scorecard>,
}

impl PromptSetJob {
    /// Runs `set` on `lanes` (label and spec; the first is the reference) with every seed, one
    /// run at a time.
    pub fn new(set: PromptSet, lanes: Vec<(String, LaneSpec)>, seeds: &[u32], sampling: PromptSampling) -> Self {
        let mut queue = VecDeque::new();
        for lane in 0..lanes.len() {
            for case in 0..set.cases.len() {
                for &seed in seeds {
                    queue.push_back(Item {
                        lane,
                        case,
                        seed,
                        tries: 0,
                    });
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
            in_flight: HashMap::new(),
            parallel: 1,
            replicas: Vec::new(),
            down: Vec::new(),
            sampling,
            lane_sampling: Vec::new(),
            cancelled: false,
            runs: Vec::new(),
            retried: 0,
            scorecards: Vec::new(),
        }
    }

    /// Runs `set` once on every lane with that lane's own sampling (seed included), as a scene
    /// replays; a prompt's `max_tokens` still wins over the lane's.
    pub fn with_lane_sampling(set: PromptSet, lanes: Vec<(String, LaneSpec, Sampling)>) -> Self {
        let (lanes, lane_sampling): (Vec<_>, Vec<_>) = lanes.into_iter().map(|(l, s, p)| ((l, s), p)).unzip();
        let mut job = Self::new(
            set,
            lanes,
            &[0],
            PromptSampling {
                temperature: 0.0,
                max_tokens: 0,
            },
        );
        for item in &mut job.queue {
            item.seed = lane_sampling[item.lane].seed;
        }
        job.lane_sampling = lane_sampling;
        job
    }

    /// Keeps up to `n` runs going at once (the engine steps local ones together; remote ones
    /// run concurrently), with greedy results the same as one at a time.
    pub fn parallel(mut self, n: usize) -> Self {
        self.parallel = n.max(1);
        self
    }

    /// Spreads remote lanes' runs over these endpoints too (each serving the same model under
    /// the same name); a run that finds an endpoint unreachable or overloaded goes to another.
    /// An error, the job left as it was, when endpoints are given and no lane is remote (they
    /// would never be used): the command line refuses it, the window runs without them.
    pub fn fan_out(&mut self, endpoints: &[String]) -> Result<(), String> {
        if !endpoints.is_empty() && self.lanes.iter().all(|(_, l)| l.remote.is_none()) {
            return Err("they spread remote lanes' runs, and no lane here is remote".into());
        }
        self.replicas = endpoints.iter().map(|u| crate::remote::base_url(u)).collect();
        Ok(())
    }

    /// Keeps `asked` runs going at once, or with `None` [`auto_parallel`]'s choice; returns the
    /// number and, for a choice made here, why.
    pub fn parallel_or_auto(self, asked: Option<usize>) -> (Self, usize, Option<String>) {
        if let Some(n) = asked {
            return (self.parallel(n), n.max(1), None);
        }
        let runs_per_lane = self.progress.total / self.lanes.len().max(1);
        let (n, why) = auto_parallel(&self.lanes, runs_per_lane, crate::metrics::mem_available_bytes());
        (self.parallel(n), n, Some(why))
    }

    /// The lanes: label and spec.
    pub fn lanes(&self) -> &[(String, LaneSpec)] {
        &self.lanes
    }

    /// Engine lane id of a local lane's `slot`th run at once (slot 0 is the lane itself).
    fn slot_lane(spec: &LaneSpec, slot: usize) -> LaneId {
        spec.lane + ((slot as LaneId) << 32)
    }

    /// Slots a lane has: endpoints for a remote lane, `parallel` engine lanes for a local one.
    fn slots(&self, lane: usize) -> usize {
        if self.lanes[lane].1.remote.is_some() {
            1 + self.replicas.len()
        } else {
            self.parallel
        }
    }

    /// The least busy usable slot of `lane`: an endpoint not down (unless all are), or an
    /// engine lane not running.
    fn pick_slot(&self, lane: usize) -> Option<usize> {
        let busy = |slot: usize| {
            self.in_flight
                .values()
                .filter(|f| f.item.lane == lane && f.slot == slot)
                .count()
        };
        let remote = self.lanes[lane].1.remote.is_some();
        let n = self.slots(lane);
        let up = |slot: usize| !remote || !self.down.get(slot).copied().unwrap_or(false);
        let any_up = (0..n).any(up);
        (0..n)
            .filter(|&s| up(s) || !any_up)
            // A local engine lane runs one generation at a time.
            .filter(|&s| remote || busy(s) == 0)
            .min_by_key(|&s| busy(s))
    }

    fn request(&self, job: JobId, item: Item, slot: usize) -> Request {
        let case = &self.set.cases[item.case];
        let mut lane = self.lanes[item.lane].1.clone();
        match &mut lane.remote {
            Some(r) if slot > 0 => r.url.clone_from(&self.replicas[slot - 1]),
            Some(_) => {}
            None => lane.lane = Self::slot_lane(&lane, slot),
        }
        let sampling = match self.lane_sampling.get(item.lane) {
            Some(own) => Sampling {
                max_tokens: case.max_tokens.unwrap_or(own.max_tokens),
                ..own.clone()
            },
            None => Sampling {
                temperature: self.sampling.temperature,
                seed: item.seed,
                max_tokens: case.max_tokens.unwrap_or(self.sampling.max_tokens),
                ..Sampling::default()
            },
        };
        Request::Generate {
            job,
            lane,
            prompt: case.to_prompt(),
            sampling,
            top_n: 0,
            exclusive: false,
        }
    }

    fn run_from(&self, item: Item, stats: RunStats) -> PromptRun {
        let case = &self.set.cases[item.case];
        PromptRun {
            lane: self.lanes[item.lane].0.clone(),
            prompt_id: case.id.clone(),
            seed: item.seed,
            passed: self.set.check(item.case, &stats.text),
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
        self.in_flight.clear();
        self.over = true;
    }

    fn finish_if_done(&mut self) {
        if self.queue.is_empty() && self.in_flight.is_empty() && !self.over {
            // In the order of the set, whatever order the runs ended in.
            let order = |r: &PromptRun| {
                let lane = self.lanes.iter().position(|(l, _)| *l == r.lane);
                let case = self.set.cases.iter().position(|c| c.id == r.prompt_id);
                (lane, case, r.seed)
            };
            self.runs.sort_by_key(order);
            prompts::compare_to_reference(&mut self.runs, &self.lanes[0].0);
            self.scorecards = prompts::scorecards(&self.runs);
            self.over = true;
        }
    }
}

impl Job for PromptSetJob {
    fn next_request(&mut self, job: JobId) -> Option<Request> {
        if self.over || self.in_flight.len() >= self.parallel {
            return None;
        }
        // The first queued item that has a free slot (lanes may be busy while others are not).
        let (at, slot) = self
            .queue
            .iter()
            .enumerate()
            .find_map(|(i, item)| self.pick_slot(item.lane).map(|s| (i, s)))?;
        let item = self.queue.remove(at)?;
        self.in_flight.insert(job, Flight { item, slot });
        let case = &self.set.cases[item.case];
        self.progress.label = format!("{} {}", self.lanes[item.lane].0, case.id);
        Some(self.request(job, item, slot))
    }

    fn on_event(&mut self, ev: Event) -> Result<(), JobFailed> {
        if !ev.is_terminal() {
            return Ok(());
        }
        let Some(flight) = ev.job().and_then(|j| self.in_flight.remove(&j)) else {
            return Ok(());
        };
        let item = flight.item;
        let what = format!("{}, prompt {}", self.lanes[item.lane].0, self.set.cases[item.case].id);
        if let Event::Error { retry: true, .. } = &ev {
            if item.tries + 1 < MAX_TRIES && !self.over && !self.cancelled {
                if self.down.len() <= flight.slot {
                    self.down.resize(flight.slot + 1, false);
                }
                self.down[flight.slot] = true;
                self.retried += 1;
                self.queue.push_front(Item {
                    tries: item.tries + 1,
                    ..item
                });
                return Ok(());
            }
        }
        if let Some(f) = failure(&ev, &what) {
            self.stop();
            return Err(f);
        }
        match ev {
            Event::Done {
                result: JobResult::Generated { stats },
                ..
            } => {
                if let Some(d) = self.down.get_mut(flight.slot) {
                    *d = false;
                }
                let run = self.run_from(item, stats);
                self.runs.push(run);
                self.progress.done += 1;
                self.finish_if_done();
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
        self.cancelled = true;
        if self.in_flight.is_empty() {
            self.over = true;
        }
    }

    fn release(&self, next_job: &mut dyn FnMut() -> JobId) -> Vec<Request> {
        self.lanes
            .iter()
            .filter(|(_, spec)| spec.remote.is_none())
            .flat_map(|(_, spec)| (0..self.parallel).map(|slot| Self::slot_lane(spec, slot)))
            .map(|lane| Request::DropLane { job: next_job(), lane })
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
