//! The engine thread: owns every llama.cpp object (models, lanes' contexts, adapters). Requests
//! run in arrival order, except that generations on different lanes run together, a step of
//! each in turn (`schedule.rs`). Models are loaded once and shared by every lane that uses them.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::Instant;

use super::cancel::CancelBoard;
use super::llama::{self, Adapter, ChatMessage, Context, LlamaError, Model, Sampler};
use super::text::TextAssembler;
use crate::adapters::validate_adapter_file;
use crate::gguf::{validate_model_file, GgufFile};
use crate::metrics;
use crate::protocol::*;

mod eval;
use eval::{DivergeArgs, EvalArgs};
mod generate;
use generate::Wanted;
mod batched;
mod pool;
mod prompt_copy;
mod schedule;
use batched::BatchedTest;

/// Where the engine thread sends its events.
pub trait EventSink {
    /// Sends one event.
    fn send(&mut self, event: Event);
}

/// Tokens per decode batch.
const N_BATCH: u32 = 512;

struct LoadedModel {
    /// Adapters loaded for this model, by path. Declared before `model`: dropped first.
    adapters: RefCell<HashMap<PathBuf, Rc<Adapter>>>,
    header: GgufFile,
    info: ModelInfo,
    model: Model,
}

struct Lane {
    /// Declared first: the context is freed before the adapters and model it uses.
    ctx: Context,
    active: Vec<(Rc<Adapter>, f32)>,
    spec: LaneSpec,
    adapter_bytes: u64,
    kv_bytes: u64,
    /// Sequences its context holds (1 but for the batched bench).
    n_seq: u32,
    model: Rc<LoadedModel>,
}

/// A job failure: a message for the user, and whether it was a cancel.
#[derive(Debug)]
struct JobError {
    message: String,
    cancelled: bool,
}

impl From<String> for JobError {
    fn from(message: String) -> Self {
        Self {
            message,
            cancelled: false,
        }
    }
}

impl From<LlamaError> for JobError {
    fn from(e: LlamaError) -> Self {
        Self {
            cancelled: matches!(e, LlamaError::LoadCancelled),
            message: e.to_string(),
        }
    }
}

type JobResultOr<T> = Result<T, JobError>;

/// State of the engine thread.
pub struct Worker {
    // Field order matters for drop: lanes (contexts) before models.
    lanes: BTreeMap<LaneId, Lane>,
    pools: pool::Pools,
    models: HashMap<(PathBuf, u32), Rc<LoadedModel>>,
    cancel: CancelBoard,
    threads: i32,
}

impl Worker {
    /// A worker with no models loaded.
    pub fn new(cancel: CancelBoard) -> Self {
        let threads = i32::try_from(super::default_threads()).unwrap_or(8);
        Self {
            lanes: BTreeMap::new(),
            pools: pool::Pools::default(),
            models: HashMap::new(),
            cancel,
            threads,
        }
    }

    /// Runs one request to completion, sending exactly one terminal event.
    pub fn handle(&mut self, req: Request, sink: &mut dyn EventSink) {
        let Some(job) = req.job() else { return };
        let outcome = match req {
            Request::LoadModel { model, .. } => {
                self.ensure_model(job, &model, sink)
                    .map(|(m, load_ms)| JobResult::ModelLoaded {
                        info: ModelInfo {
                            cached: load_ms == 0.0,
                            ..m.info.clone()
                        },
                    })
            }
            Request::UnloadModel { path, .. } => {
                self.unload(&path);
                Ok(JobResult::ModelUnloaded)
            }
            Request::SetupLane { lane, .. } => self
                .setup_lane(job, &lane, sink)
                .map(|(info, _)| JobResult::LaneReady { info }),
            Request::DropLane { lane, .. } => {
                self.lanes.remove(&lane);
                Ok(JobResult::LaneDropped)
            }
            req @ Request::Generate { .. } => match Wanted::from_request(req, Instant::now()) {
                Ok(w) => self.generate(w, sink).map(|stats| JobResult::Generated { stats }),
                Err(_) => return,
            },
            Request::Bench {
                lane,
                n_prompt,
                n_gen,
                seed,
                ..
            } => self.bench(job, &lane, n_prompt, n_gen, seed, sink),
            Request::BatchedBench {
                lane,
                n_prompt,
                n_gen,
                n_parallel,
                max_parallel,
                seed,
                ..
            } => self.batched_bench(
                job,
                &lane,
                BatchedTest {
                    pp: n_prompt,
                    tg: n_gen,
                    pl: n_parallel,
                    max_pl: max_parallel,
                    seed,
                },
                sink,
            ),
            Request::Eval {
                lane,
                reference,
                text,
                n_ctx,
                max_chunks,
                ..
            } => self.eval(
                EvalArgs {
                    job,
                    spec: &lane,
                    reference: reference.as_ref(),
                    text: &text,
                    n_ctx,
                    max_chunks,
                },
                sink,
            ),
            Request::Diverge {
                lane_a,
                lane_b,
                prompt,
                sampling,
                top_n,
                ..
            } => self.diverge(
                DivergeArgs {
                    job,
                    a: &lane_a,
                    b: &lane_b,
                    prompt: &prompt,
                    sampling: &sampling,
                    top_n,
                },
                sink,
            ),
            Request::NextTokens {
                lane, prompt, top_n, ..
            } => self.next_tokens(job, &lane, &prompt, top_n, sink),
            Request::Devices { .. } => Ok(JobResult::Devices {
                devices: llama::devices(),
            }),
            Request::Status { .. } => Ok(JobResult::Status { status: self.status() }),
            Request::Cancel { .. } => return,
        };
        self.end(job, outcome, sink);
    }

    /// Forgets a finished job's cancel flags and sends its one terminal event.
    fn end(&self, job: JobId, outcome: JobResultOr<JobResult>, sink: &mut dyn EventSink) {
        self.cancel.finish(job);
        sink.send(match outcome {
            Ok(result) => Event::Done { job, result },
            Err(e) => Event::Error {
                job,
                message: e.message,
                cancelled: e.cancelled,
                retry: false,
            },
        });
    }

    fn status(&self) -> EngineStatus {
        let (rss_bytes, peak_rss_bytes) = metrics::rss_bytes();
        let mut models: Vec<ModelInfo> = self.models.values().map(|m| m.info.clone()).collect();
        models.sort_by(|a, b| a.path.cmp(&b.path));
        EngineStatus {
            rss_bytes,
            peak_rss_bytes,
            models,
            lanes: self.lanes.values().map(|l| lane_info(l, 0.0, false)).collect(),
        }
    }

    fn unload(&mut self, path: &Path) {
        self.pools.forget_model(path);
        self.lanes.retain(|_, l| l.model.info.path != path);
        self.models.retain(|(p, _), _| p != path);
    }

    fn ensure_model(
        &mut self,
        job: JobId,
        spec: &ModelSpec,
        sink: &mut dyn EventSink,
    ) -> JobResultOr<(Rc<LoadedModel>, f64)> {
        let gpu_layers = spec.gpu_layers.unwrap_or_else(super::default_gpu_layers);
        let key = (spec.path.clone(), gpu_layers);
        if let Some(m) = self.models.get(&key) {
            return Ok((Rc::clone(m), 0.0));
        }
        let header = validate_model_file(&spec.path)?;
        if let Some(avail) = metrics::mem_available_bytes() {
            if gpu_layers == 0 && header.file_bytes > avail {
                return Err(format!(
                    "{}: model needs {} but only {} of memory is available; not loading",
                    spec.path.display(),
                    metrics::mib(header.file_bytes),
                    metrics::mib(avail)
                )
                .into());
            }
        }
        sink.send(Event::Progress {
            job,
            fraction: 0.0,
            stage: "loading model".into(),
        });
        let t0 = Instant::now();
        let cancel = self.cancel.clone();
        let mut last_sent = -1.0f32;
        let model = Model::load(&spec.path, gpu_layers, &mut |p| {
            if p - last_sent >= 0.05 || p >= 1.0 {
                last_sent = p;
                sink.send(Event::Progress {
                    job,
                    fraction: p,
                    stage: "loading model".into(),
                });
            }
            !cancel.is_cancelled(job)
        })?;
        let load_ms = t0.elapsed().as_secs_f64() * 1000.0;
        let info = ModelInfo {
            path: spec.path.clone(),
            model_bytes: model.size_bytes(),
            parameters: model.n_params(),
            n_ctx_train: model.n_ctx_train(),
            n_vocab: model.n_vocab(),
            gpu_layers,
            load_ms,
            cached: false,
            has_chat_template: model.chat_template().is_some(),
        };
        let loaded = Rc::new(LoadedModel {
            adapters: RefCell::new(HashMap::new()),
            header,
            info,
            model,
        });
        self.models.insert(key, Rc::clone(&loaded));
        Ok((loaded, load_ms))
    }

    /// Makes the lane match `spec`; returns its info and the model load time (0 if cached).
    fn setup_lane(&mut self, job: JobId, spec: &LaneSpec, sink: &mut dyn EventSink) -> JobResultOr<(LaneInfo, f64)> {
        self.setup_lane_for(job, spec, 1, sink)
    }

    /// [`Worker::setup_lane`] with a context for `n_seq` sequences.
    fn setup_lane_for(
        &mut self,
        job: JobId,
        spec: &LaneSpec,
        n_seq: u32,
        sink: &mut dyn EventSink,
    ) -> JobResultOr<(LaneInfo, f64)> {
        let (model, load_ms) = self.ensure_model(job, &spec.model, sink)?;
        let reuse = self.lanes.get(&spec.lane).is_some_and(|l| {
            Rc::ptr_eq(&l.model, &model)
                && l.spec.n_ctx == spec.n_ctx
                && l.spec.threads == spec.threads
                && l.n_seq == n_seq
        });
        let mut context_created = false;
        if !reuse {
            self.lanes.remove(&spec.lane);
            let n_ctx = if spec.n_ctx == 0 {
                model.info.n_ctx_train.min(4096)
            } else {
                spec.n_ctx
            };
            let kv_bytes = model.model.kv_bytes_per_token() * u64::from(n_ctx);
            if let Some(avail) = metrics::mem_available_bytes() {
                if kv_bytes > avail {
                    return Err(format!(
                        "a context of {n_ctx} tokens needs {} of KV cache but only {} is available; lower the context length",
                        metrics::mib(kv_bytes),
                        metrics::mib(avail)
                    )
                    .into());
                }
            }
            let threads = self.lane_threads(spec);
            // One pass takes a whole step of every sequence (llama-batched-bench's default batch).
            let n_batch = if n_seq > 1 { N_BATCH.max(2048) } else { N_BATCH };
            let ctx = Context::new(&model.model, n_ctx, threads, n_batch, n_seq)?;
            // llama.cpp may round the context up; report what was allocated.
            let kv_bytes = model.model.kv_bytes_per_token() * u64::from(ctx.n_ctx());
            context_created = true;
            self.lanes.insert(
                spec.lane,
                Lane {
                    ctx,
                    active: Vec::new(),
                    spec: LaneSpec {
                        adapters: Vec::new(),
                        ..spec.clone()
                    },
                    adapter_bytes: 0,
                    kv_bytes,
                    n_seq,
                    model: Rc::clone(&model),
                },
            );
        }
        let swap_ms = self.apply_adapters(spec)?;
        let lane = self
            .lanes
            .get(&spec.lane)
            .ok_or_else(|| JobError::from("lane vanished during setup".to_string()))?;
        Ok((lane_info(lane, swap_ms, context_created), load_ms))
    }

    /// CPU threads a lane's contexts use.
    fn lane_threads(&self, spec: &LaneSpec) -> i32 {
        spec.threads.map_or(self.threads, |t| t.max(1) as i32)
    }

    /// Loads any new adapters and applies the stack if it changed; returns the time it took.
    fn apply_adapters(&mut self, spec: &LaneSpec) -> JobResultOr<f64> {
        let lane = self
            .lanes
            .get_mut(&spec.lane)
            .ok_or_else(|| JobError::from("lane missing".to_string()))?;
        if lane.spec.adapters == spec.adapters {
            return Ok(0.0);
        }
        let t0 = Instant::now();
        // llama.cpp keys active adapters by pointer, so one file listed twice would keep only
        // its last scale; LoRA deltas are linear in the scale, so the scales add up instead.
        let mut merged: Vec<AdapterSpec> = Vec::with_capacity(spec.adapters.len());
        for a in &spec.adapters {
            match merged.iter_mut().find(|m| m.path == a.path) {
                Some(m) => m.scale += a.scale,
                None => merged.push(a.clone()),
            }
        }
        let mut stack = Vec::with_capacity(merged.len());
        let mut bytes = 0;
        for a in &merged {
            if !a.scale.is_finite() {
                return Err(format!("adapter {}: scale {} is not a number", a.path.display(), a.scale).into());
            }
            let cached = lane.model.adapters.borrow().get(&a.path).cloned();
            let adapter = match cached {
                Some(ad) => ad,
                None => {
                    let header = validate_adapter_file(&a.path, &lane.model.header)?;
                    let ad = Rc::new(
                        Adapter::load(&lane.model.model, &a.path)
                            .map_err(|e| JobError::from(format!("{}: {e}", a.path.display())))?,
                    );
                    drop(header);
                    lane.model.adapters.borrow_mut().insert(a.path.clone(), Rc::clone(&ad));
                    ad
                }
            };
            bytes += std::fs::metadata(&a.path).map_or(0, |m| m.len());
            stack.push((adapter, a.scale));
        }
        let refs: Vec<(&Adapter, f32)> = stack.iter().map(|(a, s)| (a.as_ref(), *s)).collect();
        llama::set_stack(&mut lane.ctx, &refs)?;
        // The KV cache was computed with the old stack.
        lane.ctx.clear();
        lane.active = stack;
        lane.adapter_bytes = bytes;
        lane.spec.adapters = spec.adapters.clone();
        Ok(t0.elapsed().as_secs_f64() * 1000.0)
    }

    /// One llama-bench style repetition: pp of `n_prompt` random tokens in batches, then tg of
    /// `n_gen` random tokens one at a time, each on an empty cache.
    fn bench(
        &mut self,
        job: JobId,
        spec: &LaneSpec,
        n_prompt: u32,
        n_gen: u32,
        seed: u64,
        sink: &mut dyn EventSink,
    ) -> JobResultOr<JobResult> {
        let (info, load_ms) = self.setup_lane(job, spec, sink)?;
        let lane = self
            .lanes
            .get_mut(&spec.lane)
            .ok_or_else(|| JobError::from("lane missing".to_string()))?;
        let n_vocab = lane.model.info.n_vocab;
        let needed = (n_prompt.max(n_gen) + 16) as usize;
        if needed > lane.ctx.n_ctx() as usize {
            return Err(format!(
                "bench needs a context of {needed} tokens; the lane has {}",
                lane.ctx.n_ctx()
            )
            .into());
        }
        let mut pp = 0.0;
        if n_prompt > 0 {
            let tokens = super::baseline::bench_tokens(n_prompt as usize, n_vocab, seed);
            lane.ctx.clear();
            let t0 = Instant::now();
            lane.ctx.decode(&tokens, 0, false)?;
            pp = rate(f64::from(n_prompt), t0.elapsed().as_secs_f64() * 1000.0);
        }
        let mut tg = 0.0;
        if n_gen > 0 {
            let tokens = super::baseline::bench_tokens(n_gen as usize, n_vocab, seed ^ 0x5eed);
            lane.ctx.clear();
            let t0 = Instant::now();
            for (i, &t) in tokens.iter().enumerate() {
                lane.ctx.decode(&[t], i32::try_from(i).unwrap_or(i32::MAX), false)?;
            }
            tg = rate(f64::from(n_gen), t0.elapsed().as_secs_f64() * 1000.0);
        }
        lane.ctx.clear();
        Ok(JobResult::Bench {
            pp_tokens_per_sec: pp,
            tg_tokens_per_sec: tg,
            adapter_swap_ms: info.adapter_swap_ms,
            load_ms,
        })
    }
}

/// The tokens of a prompt: raw text as is, a chat turn through the model's template, given
/// token ids checked against the vocabulary.
fn prompt_tokens(model: &Model, prompt: &Prompt) -> JobResultOr<Vec<i32>> {
    let text = match prompt {
        Prompt::Continued { prompt, tokens } => {
            let n_vocab = model.n_vocab();
            if let Some(bad) = tokens.iter().find(|&&t| t < 0 || t >= n_vocab) {
                return Err(format!("token id {bad} is not in this model's vocabulary of {n_vocab}").into());
            }
            let mut ids = prompt_tokens(model, prompt)?;
            ids.extend_from_slice(tokens);
            return Ok(ids);
        }
        Prompt::Raw { text } => text.clone(),
        Prompt::Chat { system, user } => {
            let mut msgs = Vec::new();
            if let Some(s) = system.as_ref().filter(|s| !s.trim().is_empty()) {
                msgs.push(ChatMessage {
                    role: "system".into(),
                    content: s.clone(),
                });
            }
            msgs.push(ChatMessage {
                role: "user".into(),
                content: user.clone(),
            });
            model.apply_chat_template(&msgs)?
        }
        Prompt::Messages { messages } => {
            if messages.is_empty() {
                return Err("the conversation has no messages".to_string().into());
            }
            let msgs: Vec<ChatMessage> = messages
                .iter()
                .map(|m| ChatMessage {
                    role: m.role.clone(),
                    content: m.content.clone(),
                })
                .collect();
            model.apply_chat_template(&msgs)?
        }
    };
    Ok(model.tokenize(&text, true)?)
}

fn rate(count: f64, ms: f64) -> f64 {
    if ms > 0.0 {
        count * 1000.0 / ms
    } else {
        0.0
    }
}

fn lane_info(lane: &Lane, adapter_swap_ms: f64, context_created: bool) -> LaneInfo {
    LaneInfo {
        lane: lane.spec.lane,
        model: lane.model.info.clone(),
        kv_bytes: lane.kv_bytes,
        adapter_bytes: lane.adapter_bytes,
        adapter_swap_ms,
        context_created,
    }
}
