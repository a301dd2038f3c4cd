//! Typed messages between the UI/CLI and the engine child process: one JSON object per line
//! over the child's stdin (requests) and stdout (events). Every job ends with exactly one
//! [`Event::Done`] or [`Event::Error`].

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

mod quantize;
mod remote;
mod reports;
mod stats;

pub use quantize::WorkerLine;
pub use remote::{RemoteRun, RemoteSpec, ServerTimings, Unavailable};
pub use reports::{DivergenceResult, DivergenceSummary, KldReport, PplReport, TokenDivergence};
pub use stats::{BatchedRow, DeviceInfo, EngineStatus, LaneInfo, ModelInfo, RunStats, StopReason, TopToken};

/// Bumped whenever a message changes shape; parent and child must agree.
pub const PROTOCOL_VERSION: u32 = 5;

/// Identifies one request and every event it causes.
pub type JobId = u64;
/// Identifies a lane (one context on a model, with its own adapter stack).
pub type LaneId = u64;

/// Which model file to use and how to place it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelSpec {
    /// Path of the GGUF file.
    pub path: PathBuf,
    /// Layers to offload to a GPU; `None` = all that fit when a GPU backend exists, 0 otherwise.
    pub gpu_layers: Option<u32>,
}

/// One adapter in a stack.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AdapterSpec {
    /// Path of the GGUF LoRA file.
    pub path: PathBuf,
    /// Scale; 0 disables the adapter without unloading it.
    pub scale: f32,
}

/// Everything that defines a lane's engine state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LaneSpec {
    /// Lane id chosen by the caller.
    pub lane: LaneId,
    /// Base model.
    pub model: ModelSpec,
    /// Context length in tokens.
    pub n_ctx: u32,
    /// CPU threads; `None` = engine default.
    pub threads: Option<u32>,
    /// Adapter stack applied in order. On a remote lane each is named by its file stem (the
    /// path may be just the name), matched against what the endpoint serves.
    pub adapters: Vec<AdapterSpec>,
    /// Where the lane runs when not in the local engine: an OpenAI-compatible endpoint. Its
    /// `Generate` requests go to `remote/` instead of the engine child; `model.path` is then
    /// only a label.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote: Option<RemoteSpec>,
}

impl LaneSpec {
    /// A lane on the model file `path` in the local engine: its default threads, no offload.
    pub fn local(lane: LaneId, path: impl Into<PathBuf>, n_ctx: u32, adapters: Vec<AdapterSpec>) -> Self {
        Self {
            lane,
            model: ModelSpec {
                path: path.into(),
                gpu_layers: None,
            },
            n_ctx,
            threads: None,
            adapters,
            remote: None,
        }
    }

    /// A lane on an endpoint: `model.path` is only its label, the context is the server's.
    pub fn on_endpoint(lane: LaneId, remote: RemoteSpec, adapters: Vec<AdapterSpec>) -> Self {
        Self {
            remote: Some(remote.clone()),
            ..Self::local(lane, remote.label(), 0, adapters)
        }
    }

    /// The same lane with `gpu_layers` offloaded.
    pub fn with_gpu_layers(mut self, gpu_layers: Option<u32>) -> Self {
        self.model.gpu_layers = gpu_layers;
        self
    }
}

/// A lane served under its own name by `nanolab serve --lanes-file` (the window's "Serve
/// lanes" writes these): a base model with a fixed stack of adapter files.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LaneAlias {
    /// The name requests use as `model` (`lane-1`).
    pub name: String,
    /// The base model file.
    pub model: PathBuf,
    /// Its adapters with their scales, in order.
    #[serde(default)]
    pub adapters: Vec<AdapterSpec>,
}

/// One request `nanolab serve --report-requests` answered, from the engine's own measurement;
/// printed on stdout as [`SERVED_PREFIX`] and this as JSON, for the window's "Serve lanes" graph.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServedRequest {
    /// The model name the request used (`lane-1`).
    pub model: String,
    /// Prompt tokens.
    pub prompt_tokens: u32,
    /// Generated tokens.
    pub generated_tokens: u32,
    /// Time to first token as the engine saw it.
    pub ttft_ms: f64,
    /// Decode rate of this request's own decode calls.
    pub decode_tokens_per_sec: f64,
}

/// The start of a [`ServedRequest`] line on `nanolab serve`'s stdout.
pub const SERVED_PREFIX: &str = "served ";

/// Sampling settings. A temperature of 0 is greedy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Sampling {
    /// Softmax temperature; 0 = greedy (deterministic).
    pub temperature: f32,
    /// Keep the k most likely tokens; 0 = off.
    pub top_k: i32,
    /// Nucleus sampling threshold; 1 = off.
    pub top_p: f32,
    /// Minimum probability relative to the best token; 0 = off.
    pub min_p: f32,
    /// Repetition penalty; 1 = off.
    pub repeat_penalty: f32,
    /// Tokens the repetition penalty looks back over.
    pub repeat_last_n: i32,
    /// RNG seed.
    pub seed: u32,
    /// Maximum tokens to generate.
    pub max_tokens: u32,
    /// Generation stops before any of these strings.
    pub stop: Vec<String>,
}

impl Default for Sampling {
    fn default() -> Self {
        Self {
            temperature: 0.0,
            top_k: 40,
            top_p: 0.95,
            min_p: 0.05,
            repeat_penalty: 1.0,
            repeat_last_n: 64,
            seed: 42,
            max_tokens: 128,
            stop: Vec::new(),
        }
    }
}

/// The text to continue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "snake_case")]
pub enum Prompt {
    /// Raw text, tokenized as is.
    Raw {
        /// The text.
        text: String,
    },
    /// A chat turn formatted with the model's chat template.
    Chat {
        /// Optional system message.
        system: Option<String>,
        /// The user message.
        user: String,
    },
    /// A whole conversation (what an OpenAI-style client sends), formatted with the model's
    /// chat template with the assistant turn opened.
    Messages {
        /// The turns, oldest first.
        messages: Vec<ChatTurn>,
    },
    /// A prompt followed by tokens given as ids (what a lane generated after it), so another
    /// lane reads exactly those tokens, not a re-tokenization of their text.
    Continued {
        /// The prompt.
        prompt: Box<Prompt>,
        /// Token ids after it.
        tokens: Vec<i32>,
    },
}

/// One turn of a conversation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatTurn {
    /// `system`, `user` or `assistant`.
    pub role: String,
    /// What was said.
    pub content: String,
}

/// Requests from the parent to the engine.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Request {
    /// Load a model (or find it loaded); reports progress; can be cancelled.
    LoadModel {
        /// Job id.
        job: JobId,
        /// Which model.
        model: ModelSpec,
    },
    /// Unload a model and every lane on it.
    UnloadModel {
        /// Job id.
        job: JobId,
        /// Path the model was loaded from.
        path: PathBuf,
    },
    /// Create or update a lane: model, context and adapter stack (hot-swapped, no reload).
    SetupLane {
        /// Job id.
        job: JobId,
        /// The lane's wanted state.
        lane: LaneSpec,
    },
    /// Drop a lane and its context.
    DropLane {
        /// Job id.
        job: JobId,
        /// Which lane.
        lane: LaneId,
    },
    /// Set up the lane as in `SetupLane`, then generate, streaming tokens.
    Generate {
        /// Job id.
        job: JobId,
        /// The lane's wanted state.
        lane: LaneSpec,
        /// What to continue.
        prompt: Prompt,
        /// How to sample.
        sampling: Sampling,
        /// How many alternatives to report per token (0-10).
        top_n: u32,
        /// Run alone: wait until no other generation runs and start none beside it, so its
        /// timings are undisturbed. Otherwise it steps in turn with every generation running.
        #[serde(default)]
        exclusive: bool,
    },
    /// Cancel a running job; it ends with its usual terminal event, marked cancelled.
    Cancel {
        /// The job to cancel.
        job: JobId,
    },
    /// One repetition of llama-bench's pp and tg tests on a lane's model and adapters.
    Bench {
        /// Job id.
        job: JobId,
        /// Model, threads and adapters (the lane id is used for the bench context).
        lane: LaneSpec,
        /// Prompt tokens for the pp test (0 = skip).
        n_prompt: u32,
        /// Generated tokens for the tg test (0 = skip).
        n_gen: u32,
        /// Seed for the random tokens.
        seed: u64,
    },
    /// llama-batched-bench's test for one batch size: `n_parallel` sequences of `n_prompt`
    /// random tokens decoded together, then `n_gen` steps of one token per sequence, each step
    /// one decode (prompts not shared).
    BatchedBench {
        /// Job id.
        job: JobId,
        /// Model, threads and adapters (the lane id is used for the bench context; its n_ctx is
        /// replaced by what the test needs).
        lane: LaneSpec,
        /// Prompt tokens per sequence.
        n_prompt: u32,
        /// Generated tokens per sequence.
        n_gen: u32,
        /// Sequences decoded together.
        n_parallel: u32,
        /// The largest `n_parallel` of the run: the context is sized for it once and kept.
        max_parallel: u32,
        /// Seed for the random tokens.
        seed: u64,
    },
    /// Perplexity of a lane over a text, and with a reference lane, KL divergence and token
    /// statistics against it (llama-perplexity's definitions), streamed chunk by chunk.
    Eval {
        /// Job id.
        job: JobId,
        /// The lane under test.
        lane: LaneSpec,
        /// The reference lane (another lane id), if any.
        reference: Option<LaneSpec>,
        /// The evaluation text.
        text: String,
        /// Tokens per chunk (llama-perplexity's `-c`).
        n_ctx: u32,
        /// Stop after this many chunks (llama-perplexity's `--chunks`).
        max_chunks: Option<u32>,
    },
    /// Generate on lane A, then make both lanes read A's output (teacher forcing) and compare
    /// their next-token distributions at every generated position.
    Diverge {
        /// Job id.
        job: JobId,
        /// Lane A (generates).
        lane_a: LaneSpec,
        /// Lane B (compared; may equal A's spec with another lane id).
        lane_b: LaneSpec,
        /// The prompt.
        prompt: Prompt,
        /// Lane A's sampling.
        sampling: Sampling,
        /// Alternatives to list per position (1-10).
        top_n: u32,
    },
    /// The lane's most likely next tokens after `prompt` (end of text included), without
    /// sampling or generating: one teacher-forced position, as a remote lane can give it.
    NextTokens {
        /// Job id.
        job: JobId,
        /// The lane.
        lane: LaneSpec,
        /// What it reads (usually [`Prompt::Continued`]).
        prompt: Prompt,
        /// How many to list (1-10).
        top_n: u32,
    },
    /// List compute devices.
    Devices {
        /// Job id.
        job: JobId,
    },
    /// Memory use of the engine process and what it holds.
    Status {
        /// Job id.
        job: JobId,
    },
}

impl Request {
    /// The job id, if this request starts a job.
    pub fn job(&self) -> Option<JobId> {
        match self {
            Request::LoadModel { job, .. }
            | Request::UnloadModel { job, .. }
            | Request::SetupLane { job, .. }
            | Request::DropLane { job, .. }
            | Request::Generate { job, .. }
            | Request::Bench { job, .. }
            | Request::BatchedBench { job, .. }
            | Request::Eval { job, .. }
            | Request::Diverge { job, .. }
            | Request::NextTokens { job, .. }
            | Request::Devices { job }
            | Request::Status { job } => Some(*job),
            Request::Cancel { .. } => None,
        }
    }

    /// What the engine is doing for this request, for error messages ("engine stopped while …").
    pub fn action(&self) -> String {
        match self {
            Request::LoadModel { model, .. } => format!("loading {}", model.path.display()),
            Request::UnloadModel { path, .. } => format!("unloading {}", path.display()),
            Request::SetupLane { lane, .. } => format!("setting up lane {}", lane.lane),
            Request::DropLane { lane, .. } => format!("dropping lane {lane}"),
            Request::Generate { lane, .. } => format!("generating on lane {}", lane.lane),
            Request::Cancel { job } => format!("cancelling job {job}"),
            Request::Bench { lane, .. } | Request::BatchedBench { lane, .. } => {
                format!("benchmarking {}", lane.model.path.display())
            }
            Request::Eval { lane, .. } => format!("evaluating {}", lane.model.path.display()),
            Request::Diverge { lane_a, lane_b, .. } => {
                format!("comparing lanes {} and {}", lane_a.lane, lane_b.lane)
            }
            Request::NextTokens { lane, .. } => format!("reading next tokens on lane {}", lane.lane),
            Request::Devices { .. } => "listing devices".to_string(),
            Request::Status { .. } => "reading status".to_string(),
        }
    }
}

/// The successful outcome of a job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum JobResult {
    /// A model is loaded.
    ModelLoaded {
        /// The model.
        info: ModelInfo,
    },
    /// A model was unloaded.
    ModelUnloaded,
    /// A lane is ready.
    LaneReady {
        /// The lane.
        info: LaneInfo,
    },
    /// A lane was dropped.
    LaneDropped,
    /// A generation finished (possibly cancelled; see `stop_reason`).
    Generated {
        /// Timings and text.
        stats: RunStats,
    },
    /// Device list.
    Devices {
        /// The devices.
        devices: Vec<DeviceInfo>,
    },
    /// One bench repetition.
    Bench {
        /// Prompt processing tokens/s (0 if skipped).
        pp_tokens_per_sec: f64,
        /// Text generation tokens/s (0 if skipped).
        tg_tokens_per_sec: f64,
        /// Milliseconds the adapter stack took to apply in this job (0 if unchanged).
        adapter_swap_ms: f64,
        /// Model load time in this job (0 if it was loaded).
        load_ms: f64,
    },
    /// One batched-bench row.
    BatchedBench {
        /// The measurement.
        row: BatchedRow,
    },
    /// Quality over a text.
    Eval {
        /// Perplexity of the lane under test.
        ppl: PplReport,
        /// Divergence from the reference, when one was given.
        kld: Option<Box<KldReport>>,
        /// Tokens the text has.
        text_tokens: usize,
        /// Tokens/s the tested lane processed the chunks at.
        eval_tokens_per_sec: f64,
    },
    /// Token-level divergence between two lanes.
    Divergence {
        /// The result.
        result: DivergenceResult,
    },
    /// A lane's most likely next tokens.
    NextTokens {
        /// Prompt tokens read (0: the endpoint did not say).
        prompt_tokens: u32,
        /// Most likely first, with probabilities (softmax at temperature 1).
        top: Vec<TopToken>,
    },
    /// Engine status.
    Status {
        /// The status.
        status: EngineStatus,
    },
}

/// Events from the engine to the parent.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    /// First line the engine writes.
    Ready {
        /// Must equal [`PROTOCOL_VERSION`].
        protocol_version: u32,
        /// nanolab version of the engine binary.
        engine_version: String,
        /// llama.cpp's system info line.
        system_info: String,
    },
    /// Progress of a long job, 0-1.
    Progress {
        /// Job id.
        job: JobId,
        /// 0-1.
        fraction: f32,
        /// What is happening.
        stage: String,
    },
    /// One generated token.
    Token {
        /// Job id.
        job: JobId,
        /// Lane id.
        lane: LaneId,
        /// Text released by this token (may be empty while a stop string or UTF-8 sequence is pending).
        text: String,
        /// This token's own text.
        piece: String,
        /// Token id.
        token_id: i32,
        /// Probability of this token under the model.
        prob: f32,
        /// The most likely tokens at this step.
        top: Vec<TopToken>,
        /// Milliseconds since the previous token (or since prompt start for the first).
        latency_ms: f64,
        /// Tokens in the prompt of this run.
        #[serde(default)]
        prompt_tokens: u32,
    },
    /// The job finished.
    Done {
        /// Job id.
        job: JobId,
        /// Result.
        result: JobResult,
    },
    /// The job failed (or was cancelled before it produced a result).
    Error {
        /// Job id.
        job: JobId,
        /// One clear line for the user.
        message: String,
        /// The caller cancelled it.
        #[serde(default)]
        cancelled: bool,
        /// Trying again (on another endpoint, or later) may succeed: the endpoint was
        /// unreachable, overloaded (429/503) or dropped the connection before the answer ended.
        #[serde(default)]
        retry: bool,
    },
}

impl Event {
    /// The job this event belongs to.
    pub fn job(&self) -> Option<JobId> {
        match self {
            Event::Ready { .. } => None,
            Event::Progress { job, .. }
            | Event::Token { job, .. }
            | Event::Done { job, .. }
            | Event::Error { job, .. } => Some(*job),
        }
    }
    /// Whether this event ends its job.
    pub fn is_terminal(&self) -> bool {
        matches!(self, Event::Done { .. } | Event::Error { .. })
    }
}
