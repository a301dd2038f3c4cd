//! What the engine reports about runs, models, lanes and itself: the stats of one generation,
//! the facts of a loaded model and a set-up lane, devices, memory, llama-batched-bench rows.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::{LaneId, RemoteRun};

/// One row of llama-batched-bench, with its field names and definitions (times in seconds).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchedRow {
    /// Prompt tokens per sequence.
    pub pp: u32,
    /// Generated tokens per sequence.
    pub tg: u32,
    /// Sequences in parallel.
    pub pl: u32,
    /// KV cells used: pl * (pp + tg).
    pub n_kv: u32,
    /// Time to decode every prompt, s.
    pub t_pp: f64,
    /// pl * pp / t_pp.
    pub speed_pp: f64,
    /// Time of the tg steps, s.
    pub t_tg: f64,
    /// pl * tg / t_tg.
    pub speed_tg: f64,
    /// t_pp + t_tg.
    pub t: f64,
    /// (pl * pp + pl * tg) / t.
    pub speed: f64,
}

/// One alternative token at a generation step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TopToken {
    /// Token text.
    pub piece: String,
    /// Token id.
    pub token_id: i32,
    /// Probability under the model (temperature 1, before sampling filters).
    pub prob: f32,
}

/// Why a generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// The model produced an end-of-generation token.
    EndOfText,
    /// `max_tokens` reached.
    MaxTokens,
    /// A stop string matched.
    StopString,
    /// The context is full.
    ContextFull,
    /// The caller cancelled.
    Cancelled,
}

/// Facts about a loaded model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelInfo {
    /// Path it was loaded from.
    pub path: PathBuf,
    /// Bytes of weights as llama.cpp counts them.
    pub model_bytes: u64,
    /// Parameters.
    pub parameters: u64,
    /// Training context length.
    pub n_ctx_train: u32,
    /// Vocabulary size.
    pub n_vocab: i32,
    /// Layers offloaded to a GPU.
    pub gpu_layers: u32,
    /// Milliseconds the load took (when it was first loaded).
    pub load_ms: f64,
    /// It was already loaded: this request cost no load.
    pub cached: bool,
    /// The model embeds a chat template.
    pub has_chat_template: bool,
}

/// Facts about a lane after setup.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LaneInfo {
    /// Lane id.
    pub lane: LaneId,
    /// The model under it.
    pub model: ModelInfo,
    /// KV cache bytes for this lane's context.
    pub kv_bytes: u64,
    /// Bytes of adapter files in the active stack.
    pub adapter_bytes: u64,
    /// Milliseconds spent loading/applying adapters in this setup (0 if unchanged).
    pub adapter_swap_ms: f64,
    /// A new context was created in this setup.
    pub context_created: bool,
}

/// Timings and sizes of one generation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunStats {
    /// The lane.
    pub lane: LaneInfo,
    /// Model load time in ms (0 when it was already loaded).
    pub load_ms: f64,
    /// Time to the first generated token as the caller saw it, ms: from the engine taking the
    /// request to the token, waiting for other lanes included, model load (`load_ms`) excluded.
    pub ttft_ms: f64,
    /// Prompt tokens.
    pub prompt_tokens: u32,
    /// Prompt tokens not processed again: on a remote lane those the server took from its cache
    /// (llama-server's `cache_n`); on a local lane the whole prompt when a lane running the same
    /// prompt on the same model and stack had it decoded and its cells were copied (else 0).
    #[serde(default)]
    pub prompt_reused_tokens: u32,
    /// Time this lane's own prompt decode took, or the copy of its reused cells, ms.
    pub prefill_ms: f64,
    /// Prompt tokens this lane decoded itself, per second of `prefill_ms`.
    pub prefill_tokens_per_sec: f64,
    /// Tokens generated.
    pub generated_tokens: u32,
    /// Time this lane's own decode and sampling calls took for the tokens after the first, ms
    /// (what llama-bench counts; steps of other lanes running beside it are not in it).
    pub decode_ms: f64,
    /// (generated_tokens - 1) / decode time.
    pub decode_tokens_per_sec: f64,
    /// Median of this lane's own time per token after the first, ms.
    pub itl_p50_ms: f64,
    /// 95th percentile of this lane's own time per token after the first, ms.
    pub itl_p95_ms: f64,
    /// Decode rate as the tokens arrived: (generated_tokens - 1) over the time from the first
    /// to the last token, other lanes' steps included. Equals `decode_tokens_per_sec` but for
    /// overhead when the lane ran alone.
    #[serde(default)]
    pub seen_decode_tokens_per_sec: f64,
    /// Most generations running at once while this one ran (1: it ran alone).
    #[serde(default)]
    pub lanes_together: u32,
    /// Most sequences decoded in one `llama_decode` with this lane's tokens: lanes on the same
    /// model and adapter stack share a context and decode together (1: it decoded alone; 0: not
    /// known, a remote run). Its decode times are then those shared calls.
    #[serde(default)]
    pub batched_with: u32,
    /// Peak resident memory of the engine process, bytes.
    pub peak_rss_bytes: u64,
    /// Resident memory of the engine process now, bytes.
    pub rss_bytes: u64,
    /// The complete generated text.
    pub text: String,
    /// Why it ended.
    pub stop_reason: StopReason,
    /// Set when the lane ran on an endpoint: which one, the server's own timings, and the
    /// fields above it could not give (they hold 0 and must be shown as unavailable).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote: Option<Box<RemoteRun>>,
}

/// A compute device seen by llama.cpp.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeviceInfo {
    /// Backend (CPU, CUDA, Vulkan).
    pub backend: String,
    /// Device name.
    pub name: String,
    /// Description.
    pub description: String,
    /// CPU, GPU, iGPU or accelerator.
    pub kind: String,
    /// Free memory, bytes.
    pub memory_free_bytes: u64,
    /// Total memory, bytes.
    pub memory_total_bytes: u64,
}

/// Memory held by the engine.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EngineStatus {
    /// Resident memory now, bytes.
    pub rss_bytes: u64,
    /// Peak resident memory, bytes.
    pub peak_rss_bytes: u64,
    /// Loaded models.
    pub models: Vec<ModelInfo>,
    /// Lanes, by id.
    pub lanes: Vec<LaneInfo>,
}
