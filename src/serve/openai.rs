//! The OpenAI wire shapes `nanolab serve` reads and writes (chat and text completions, models,
//! errors), plus llama-server's `lora` field and `timings` object, which clients written for
//! llama-server send and read.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::protocol::{RunStats, StopReason};

/// One adapter scale in llama-server's `lora` request field.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct LoraScale {
    /// Index into `GET /lora-adapters`.
    pub id: usize,
    /// Scale; 0 leaves the adapter out.
    pub scale: f32,
}

/// nanolab's own request extension (`"nanolab": {...}`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NanolabExt {
    /// Device profile id (`pixel-9-pro`) whose simulated clock paces or annotates the stream.
    pub device: Option<String>,
    /// Release tokens at the simulated device's speed (default: true when a device is named).
    pub paced: Option<bool>,
}

/// `stop`: one string or a list.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum StopField {
    /// One stop string.
    One(String),
    /// Several.
    Many(Vec<String>),
}

impl StopField {
    /// The stop strings, empties removed.
    pub fn into_vec(self) -> Vec<String> {
        let v = match self {
            StopField::One(s) => vec![s],
            StopField::Many(v) => v,
        };
        v.into_iter().filter(|s| !s.is_empty()).collect()
    }
}

/// `stream_options`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct StreamOptions {
    /// Send a last chunk with `usage` before `[DONE]`.
    #[serde(default)]
    pub include_usage: bool,
}

/// Sampling fields shared by both completion endpoints.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct SamplingFields {
    /// Softmax temperature (OpenAI's default 1; 0 = greedy).
    pub temperature: Option<f32>,
    /// Nucleus threshold.
    pub top_p: Option<f32>,
    /// Top-k (llama-server extension; 0 = off).
    pub top_k: Option<i32>,
    /// Min-p (llama-server extension; 0 = off).
    pub min_p: Option<f32>,
    /// Repetition penalty (llama-server extension; 1 = off).
    pub repeat_penalty: Option<f32>,
    /// RNG seed; absent = a fresh one per request.
    pub seed: Option<i64>,
    /// Token limit (legacy name).
    pub max_tokens: Option<i64>,
    /// Token limit (current name).
    pub max_completion_tokens: Option<i64>,
    /// Stop strings.
    pub stop: Option<StopField>,
    /// Choices wanted; only 1 is served.
    pub n: Option<u32>,
    /// Stream as server-sent events.
    #[serde(default)]
    pub stream: bool,
    /// Streaming options.
    pub stream_options: Option<StreamOptions>,
    /// llama-server's per-request adapter scales.
    pub lora: Option<Vec<LoraScale>>,
    /// nanolab's extension.
    pub nanolab: Option<NanolabExt>,
}

/// A message's content: a string, or a list of parts of which only text is served.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Content {
    /// Plain text.
    Text(String),
    /// Content parts.
    Parts(Vec<ContentPart>),
}

/// One content part.
#[derive(Debug, Clone, Deserialize)]
pub struct ContentPart {
    /// Part type (`text`, `image_url`, …).
    #[serde(rename = "type")]
    pub kind: String,
    /// The text of a `text` part.
    pub text: Option<String>,
}

/// One chat message.
#[derive(Debug, Clone, Deserialize)]
pub struct ChatMessageIn {
    /// `system`, `developer`, `user` or `assistant`.
    pub role: String,
    /// What was said (absent or null is empty).
    pub content: Option<Content>,
}

/// `POST /v1/chat/completions`.
#[derive(Debug, Clone, Deserialize)]
pub struct ChatRequest {
    /// Model name: `BASE` or `BASE+ADAPTER[:SCALE]…`.
    pub model: String,
    /// The conversation.
    pub messages: Vec<ChatMessageIn>,
    /// Return log probabilities of the chosen tokens.
    #[serde(default)]
    pub logprobs: bool,
    /// Alternatives per position (0-10), needs `logprobs`.
    pub top_logprobs: Option<u32>,
    /// Everything about sampling and streaming.
    #[serde(flatten)]
    pub sampling: SamplingFields,
}

/// `prompt`: one string, a list holding one string, or (as llama-server takes it) text
/// followed by token ids.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum PromptField {
    /// One prompt.
    One(String),
    /// A list of prompts (only one is served).
    Many(Vec<String>),
    /// Text, then token ids read as they are.
    Mixed(Vec<PromptPart>),
}

/// An element of a mixed prompt.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum PromptPart {
    /// Text.
    Text(String),
    /// A token id.
    Token(i64),
}

/// `POST /v1/completions`.
#[derive(Debug, Clone, Deserialize)]
pub struct CompletionRequest {
    /// Model name.
    pub model: String,
    /// The text to continue.
    pub prompt: PromptField,
    /// Alternatives per position to return (0-5 in OpenAI's API; up to 10 here).
    pub logprobs: Option<u32>,
    /// Echo the prompt back (not served).
    #[serde(default)]
    pub echo: bool,
    /// Text after the completion (not served).
    pub suffix: Option<String>,
    /// Everything about sampling and streaming.
    #[serde(flatten)]
    pub sampling: SamplingFields,
}

/// OpenAI's error object with the HTTP status it goes with.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// HTTP status.
    pub status: u16,
    /// One clear line.
    pub message: String,
    /// `invalid_request_error`, `authentication_error`, `server_error`, …
    pub kind: &'static str,
    /// The request field at fault.
    pub param: Option<String>,
    /// A short machine-readable code.
    pub code: Option<&'static str>,
}

impl ApiError {
    /// A 400 naming the field at fault.
    pub fn invalid(param: Option<&str>, message: impl Into<String>) -> Self {
        Self {
            status: 400,
            message: message.into(),
            kind: "invalid_request_error",
            param: param.map(str::to_string),
            code: None,
        }
    }

    /// A 404 for a model name that names nothing served.
    pub fn unknown_model(message: impl Into<String>) -> Self {
        Self {
            status: 404,
            message: message.into(),
            kind: "invalid_request_error",
            param: Some("model".into()),
            code: Some("model_not_found"),
        }
    }

    /// A 500 from the engine.
    pub fn server(message: impl Into<String>) -> Self {
        Self {
            status: 500,
            message: message.into(),
            kind: "server_error",
            param: None,
            code: None,
        }
    }

    /// The JSON body.
    pub fn body(&self) -> Value {
        json!({"error": {"message": self.message, "type": self.kind, "param": self.param, "code": self.code}})
    }
}

/// OpenAI's `finish_reason` for an engine stop reason.
pub fn finish_reason(reason: StopReason) -> &'static str {
    match reason {
        StopReason::EndOfText | StopReason::StopString | StopReason::Cancelled => "stop",
        StopReason::MaxTokens | StopReason::ContextFull => "length",
    }
}

/// `usage`.
pub fn usage(stats: &RunStats) -> Value {
    json!({
        "prompt_tokens": stats.prompt_tokens,
        "completion_tokens": stats.generated_tokens,
        "total_tokens": stats.prompt_tokens + stats.generated_tokens,
    })
}

/// llama-server's `timings` object, from the engine's own measurements of this run.
pub fn timings(stats: &RunStats) -> Value {
    let per_token = |ms: f64, n: u32| if n > 0 { ms / f64::from(n) } else { 0.0 };
    json!({
        "prompt_n": stats.prompt_tokens.saturating_sub(stats.prompt_reused_tokens),
        "cache_n": stats.prompt_reused_tokens,
        "prompt_ms": stats.prefill_ms,
        "prompt_per_token_ms": per_token(stats.prefill_ms, stats.prompt_tokens.saturating_sub(stats.prompt_reused_tokens)),
        "prompt_per_second": stats.prefill_tokens_per_sec,
        "predicted_n": stats.generated_tokens,
        "predicted_ms": stats.decode_ms,
        "predicted_per_token_ms": per_token(stats.decode_ms, stats.generated_tokens.saturating_sub(1)),
        "predicted_per_second": stats.decode_tokens_per_sec,
        "ttft_ms": stats.ttft_ms,
    })
}

/// Natural log of a probability, finite for a zero probability (OpenAI's floor is -9999).
pub fn logprob(p: f32) -> f64 {
    if p > 0.0 {
        f64::from(p).ln()
    } else {
        -9999.0
    }
}
