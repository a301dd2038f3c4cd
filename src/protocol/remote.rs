//! Lanes on OpenAI-compatible endpoints: where a remote lane runs, and what a run there reports
//! besides the fields of a local run.

use serde::{Deserialize, Serialize};

/// An endpoint a lane runs on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoteSpec {
    /// Base URL (`http://127.0.0.1:8080`; a trailing `/v1` is accepted).
    pub url: String,
    /// Model name as the endpoint lists it in `/v1/models`.
    pub model: String,
    /// Environment variable holding the API key; the key itself is never stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key_env: Option<String>,
}

impl RemoteSpec {
    /// `URL#MODEL`, the form `-l` takes on the command line.
    pub fn label(&self) -> String {
        format!("{}#{}", self.url, self.model)
    }
}

/// llama-server's `timings` object, as the server measured the run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServerTimings {
    /// Prompt tokens the server processed (after any cache reuse).
    pub prompt_n: u32,
    /// Prompt tokens it took from its cache instead (llama-server's `cache_n`; 0 if not sent).
    #[serde(default)]
    pub cache_n: u32,
    /// Prompt processing time, ms.
    pub prompt_ms: f64,
    /// Prompt tokens per second.
    pub prompt_per_second: f64,
    /// Tokens generated.
    pub predicted_n: u32,
    /// Generation time, ms.
    pub predicted_ms: f64,
    /// Generated tokens per second.
    pub predicted_per_second: f64,
}

/// A field of [`super::RunStats`] a remote run cannot fill, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unavailable {
    /// The field's name in `RunStats` (`peak_rss_bytes`).
    pub field: String,
    /// Why the endpoint cannot give it.
    pub reason: String,
}

/// What a run on an endpoint adds to its stats.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RemoteRun {
    /// The endpoint's base URL.
    pub url: String,
    /// What answered there (`llama-server`, `vllm`, `nanolab`, `openai`).
    pub server: String,
    /// The model name sent.
    pub model: String,
    /// The server's own timings, when it reports them (llama-server, nanolab serve).
    pub server_timings: Option<ServerTimings>,
    /// How `ttft_ms`, `decode_tokens_per_sec` and the ITL were measured.
    pub measured: String,
    /// Fields left at 0 because the endpoint cannot give them.
    pub unavailable: Vec<Unavailable>,
    /// Attempts it took (retries after 429/503 or a lost connection).
    pub attempts: u32,
}

impl RemoteRun {
    /// Why `field` is unavailable, if it is.
    pub fn unavailable(&self, field: &str) -> Option<&str> {
        self.unavailable
            .iter()
            .find(|u| u.field == field)
            .map(|u| u.reason.as_str())
    }
}
