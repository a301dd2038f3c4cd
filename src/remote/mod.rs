//! Lanes on OpenAI-compatible endpoints (llama-server, vLLM, Ollama, LM Studio, another
//! `nanolab serve`): what an endpoint is and serves ([`probe`]), and one generation on it as
//! the engine's event stream ([`generate`]), so every front end treats a remote lane like a
//! local one. HTTP goes through `ureq`; nothing here knows about llama.cpp.

mod body;
mod next;
mod sse;
mod stream;
mod vllm;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

pub use next::next_tokens;
pub use stream::{generate, GenerateCall};

/// Why talking to an endpoint failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RemoteError {
    /// Nothing answered (refused, unreachable, timed out) or the connection broke.
    #[error("{url} could not be reached: {reason}")]
    Unreachable {
        /// The URL asked.
        url: String,
        /// What the HTTP client said.
        reason: String,
    },
    /// The endpoint answered with an error status.
    #[error("{url} answered HTTP {status}: {message}")]
    Status {
        /// The URL asked.
        url: String,
        /// HTTP status.
        status: u16,
        /// The error message from the body (or the body).
        message: String,
        /// Seconds the server asked to wait (`Retry-After`).
        retry_after_s: Option<u64>,
    },
    /// The answer was not what the OpenAI API says.
    #[error("{url} sent an answer nanolab cannot read: {reason}")]
    Protocol {
        /// The URL asked.
        url: String,
        /// What was wrong.
        reason: String,
    },
    /// The endpoint put an error object in the stream instead of the next chunk.
    #[error("{url} ended the stream with an error: {message}")]
    Stream {
        /// The URL asked.
        url: String,
        /// The error's message.
        message: String,
    },
    /// The request cannot be expressed on this endpoint (a stack on vLLM, an adapter it lacks).
    #[error("{0}")]
    Unsupported(String),
    /// The API key variable named for the lane is not set.
    #[error("the API key variable {0} is not set in nanolab's environment")]
    MissingKey(String),
}

impl RemoteError {
    /// Whether another try (later, or on another endpoint) may succeed.
    pub fn retriable(&self) -> bool {
        match self {
            RemoteError::Unreachable { .. } => true,
            RemoteError::Status { status, .. } => matches!(status, 429 | 502 | 503 | 504),
            _ => false,
        }
    }
}

/// What answers at an endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerKind {
    /// llama.cpp's llama-server (`/props`, `/lora-adapters`, `lora` per request).
    LlamaServer,
    /// vLLM (LoRA adapters are models whose `parent` is the base; one per request).
    Vllm,
    /// Another `nanolab serve` (stacks by model name).
    Nanolab,
    /// Anything else speaking the OpenAI API.
    OpenAi,
}

impl ServerKind {
    /// Its name in stats and messages.
    pub fn name(self) -> &'static str {
        match self {
            ServerKind::LlamaServer => "llama-server",
            ServerKind::Vllm => "vllm",
            ServerKind::Nanolab => "nanolab",
            ServerKind::OpenAi => "openai",
        }
    }
}

/// A model an endpoint lists.
#[derive(Debug, Clone, PartialEq)]
pub struct RemoteModel {
    /// Its id, the name requests use.
    pub id: String,
    /// The base model, for a vLLM LoRA adapter listed as a model.
    pub parent: Option<String>,
}

/// An adapter llama-server has loaded.
#[derive(Debug, Clone, PartialEq)]
pub struct RemoteAdapter {
    /// Its id in the `lora` field.
    pub id: u32,
    /// The file it was loaded from.
    pub path: String,
}

impl RemoteAdapter {
    /// The file stem, which lanes name adapters by.
    pub fn stem(&self) -> &str {
        file_stem(&self.path)
    }
}

/// What [`probe`] found.
#[derive(Debug, Clone, PartialEq)]
pub struct EndpointInfo {
    /// The base URL, without a trailing `/` or `/v1`.
    pub url: String,
    /// What answers there.
    pub kind: ServerKind,
    /// Models from `/v1/models`.
    pub models: Vec<RemoteModel>,
    /// llama-server's loaded adapters (empty elsewhere).
    pub adapters: Vec<RemoteAdapter>,
}

impl EndpointInfo {
    /// Adapters a lane on `model` can stack here, by the name a lane gives them: llama-server's
    /// loaded adapters by file stem, nanolab's `MODEL+ADAPTER` entries, vLLM's adapter models.
    pub fn adapters_for(&self, model: &str) -> Vec<String> {
        match self.kind {
            ServerKind::LlamaServer => self.adapters.iter().map(|a| a.stem().to_string()).collect(),
            ServerKind::Nanolab => self
                .models
                .iter()
                .filter_map(|m| m.id.strip_prefix(model)?.strip_prefix('+'))
                .filter(|a| !a.contains('+'))
                .map(str::to_string)
                .collect(),
            ServerKind::Vllm => self
                .models
                .iter()
                .filter(|m| m.parent.as_deref() == Some(model))
                .map(|m| m.id.clone())
                .collect(),
            ServerKind::OpenAi => Vec::new(),
        }
    }
}

/// `http://host:port`, from what a user typed (`host:port/v1/`, …).
pub fn base_url(url: &str) -> String {
    let mut u = url.trim().trim_end_matches('/').to_string();
    if let Some(stripped) = u.strip_suffix("/v1") {
        u = stripped.to_string();
    }
    if !u.contains("://") {
        u = format!("http://{u}");
    }
    u
}

/// The last path component without `.gguf` (or any extension).
pub fn file_stem(path: &str) -> &str {
    let name = path.rsplit(['/', '\\']).next().unwrap_or(path);
    name.rsplit_once('.').map_or(name, |(stem, _)| stem)
}

/// One HTTP client per endpoint use; a read that stalls this long ends the request.
fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_connect(Some(Duration::from_secs(5)))
        .timeout_per_read(Some(Duration::from_secs(120)))
        .build()
        .into()
}

/// The `Authorization` value for a lane whose key lives in `key_env`.
pub fn api_key(key_env: Option<&str>) -> Result<Option<String>, RemoteError> {
    match key_env {
        None => Ok(None),
        Some(var) => std::env::var(var)
            .map(Some)
            .map_err(|_| RemoteError::MissingKey(var.to_string())),
    }
}

/// GETs `path` from the endpoint as JSON.
fn get_json(agent: &ureq::Agent, base: &str, path: &str, key: Option<&str>) -> Result<Value, RemoteError> {
    let url = format!("{base}{path}");
    let mut req = agent.get(&url);
    if let Some(k) = key {
        req = req.header("Authorization", &format!("Bearer {k}"));
    }
    let mut resp = req.call().map_err(|e| unreachable(&url, &e))?;
    let status = resp.status().as_u16();
    let text = resp.body_mut().read_to_string().map_err(|e| unreachable(&url, &e))?;
    if status >= 400 {
        return Err(status_error(&url, status, &text, None));
    }
    serde_json::from_str(&text).map_err(|e| RemoteError::Protocol {
        url,
        reason: e.to_string(),
    })
}

/// POSTs `body` to `url` as JSON; the status and the body's text, whatever the status.
fn post_json(url: &str, body: &Value, key: Option<&str>) -> Result<(u16, String), RemoteError> {
    let mut req = agent().post(url).header("Content-Type", "application/json");
    if let Some(k) = key {
        req = req.header("Authorization", &format!("Bearer {k}"));
    }
    let mut resp = req
        .send(body.to_string().as_bytes())
        .map_err(|e| unreachable(url, &e))?;
    let status = resp.status().as_u16();
    let text = resp.body_mut().read_to_string().map_err(|e| unreachable(url, &e))?;
    Ok((status, text))
}

fn unreachable(url: &str, e: &ureq::Error) -> RemoteError {
    RemoteError::Unreachable {
        url: url.to_string(),
        reason: e.to_string(),
    }
}

/// An error status with the message of an OpenAI-style error body when there is one.
fn status_error(url: &str, status: u16, body: &str, retry_after_s: Option<u64>) -> RemoteError {
    let message = serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| {
            v.pointer("/error/message")
                .or_else(|| v.get("message"))
                .or_else(|| v.get("detail"))
                .and_then(Value::as_str)
                .map(str::to_string)
        })
        .unwrap_or_else(|| body.chars().take(300).collect());
    RemoteError::Status {
        url: url.to_string(),
        status,
        message,
        retry_after_s,
    }
}

/// Asks the endpoint what it is and what it serves: `/v1/models`, then llama-server's `/props`
/// and `/lora-adapters` where they answer.
pub fn probe(url: &str, key_env: Option<&str>) -> Result<EndpointInfo, RemoteError> {
    let base = base_url(url);
    let key = api_key(key_env)?;
    let agent = agent();
    let listed = get_json(&agent, &base, "/v1/models", key.as_deref())?;
    let data = listed
        .get("data")
        .and_then(Value::as_array)
        .ok_or_else(|| RemoteError::Protocol {
            url: format!("{base}/v1/models"),
            reason: "no `data` list of models".into(),
        })?;
    let owners: Vec<&str> = data
        .iter()
        .filter_map(|m| m.get("owned_by").and_then(Value::as_str))
        .collect();
    let models: Vec<RemoteModel> = data
        .iter()
        .filter_map(|m| {
            Some(RemoteModel {
                id: m.get("id")?.as_str()?.to_string(),
                parent: m.get("parent").and_then(Value::as_str).map(str::to_string),
            })
        })
        .collect();
    let mut adapters = Vec::new();
    let kind = if owners.contains(&"nanolab") {
        ServerKind::Nanolab
    } else if owners.contains(&"vllm") || models.iter().any(|m| m.parent.is_some()) {
        ServerKind::Vllm
    } else if get_json(&agent, &base, "/props", key.as_deref())
        .map(|p| p.get("default_generation_settings").is_some())
        .unwrap_or(false)
    {
        let list = get_json(&agent, &base, "/lora-adapters", key.as_deref())?;
        for a in list.as_array().into_iter().flatten() {
            let (Some(id), Some(path)) = (
                a.get("id").and_then(Value::as_u64),
                a.get("path").and_then(Value::as_str),
            ) else {
                continue;
            };
            adapters.push(RemoteAdapter {
                id: u32::try_from(id).unwrap_or(u32::MAX),
                path: path.to_string(),
            });
        }
        ServerKind::LlamaServer
    } else {
        ServerKind::OpenAi
    };
    Ok(EndpointInfo {
        url: base,
        kind,
        models,
        adapters,
    })
}

/// The endpoint's description for a lane, after loading into vLLM the PEFT folders the lane
/// names that it does not serve yet (`vllm.rs`).
pub(crate) fn endpoint_for(
    probes: &Probes,
    remote: &crate::protocol::RemoteSpec,
    adapters: &[crate::protocol::AdapterSpec],
    key: Option<&str>,
) -> Result<EndpointInfo, RemoteError> {
    let info = probes.get(&remote.url, remote.api_key_env.as_deref())?;
    let wanted = vllm::to_load(&info, remote, adapters);
    if vllm::load(&info, &wanted, key)? {
        probes.forget(&remote.url);
        return probes.get(&remote.url, remote.api_key_env.as_deref());
    }
    Ok(info)
}

/// Probes, remembered per URL while they succeed, so a lane's every run does not ask again.
#[derive(Debug, Clone, Default)]
pub struct Probes(Arc<Mutex<HashMap<String, EndpointInfo>>>);

impl Probes {
    /// What is at `url`, asked once.
    pub fn get(&self, url: &str, key_env: Option<&str>) -> Result<EndpointInfo, RemoteError> {
        let base = base_url(url);
        if let Some(info) = self.0.lock().ok().and_then(|m| m.get(&base).cloned()) {
            return Ok(info);
        }
        let info = probe(&base, key_env)?;
        if let Ok(mut m) = self.0.lock() {
            m.insert(base, info.clone());
        }
        Ok(info)
    }

    /// Forgets `url`, so the next run asks again (after it failed there).
    pub fn forget(&self, url: &str) {
        if let Ok(mut m) = self.0.lock() {
            m.remove(&base_url(url));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls_and_stems() {
        assert_eq!(base_url("127.0.0.1:8080/v1/"), "http://127.0.0.1:8080");
        assert_eq!(base_url("https://x.example/v1"), "https://x.example");
        assert_eq!(file_stem("adapters/smollm2-caps.gguf"), "smollm2-caps");
        assert_eq!(file_stem("caps"), "caps");
    }

    #[test]
    fn error_bodies_give_their_message() {
        let e = status_error("u", 503, r#"{"error":{"message":"busy","type":"x"}}"#, Some(2));
        assert_eq!(e.to_string(), "u answered HTTP 503: busy");
        assert!(e.retriable());
        assert!(!status_error("u", 400, "bad", None).retriable());
    }
}
