//! `POST /v1/chat/completions` and `POST /v1/completions`: a request becomes one engine
//! `Generate` on the base model's lane with the request's own adapter stack (the engine clears
//! the lane's KV before every generation, so no request reads KV computed under another stack),
//! answered as one JSON object or as server-sent events ending in `data: [DONE]`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::response::{IntoResponse, Response};

use crate::protocol::{AdapterSpec, ChatTurn, LaneId, LaneSpec, Prompt, Sampling};

use super::answer::respond;
use super::library::parse_model_name;
use super::openai::{ApiError, ChatRequest, CompletionRequest, Content, PromptField, PromptPart, SamplingFields};
use super::pacing::Pacer;
use super::routes::{body_bytes, parse_json, Shared};

/// Engine events a request may hold beyond one per token (load progress, the terminal event).
pub(super) const EVENT_SLACK: usize = 256;
/// Most alternatives per position the engine reports.
const MAX_TOP_LOGPROBS: u32 = 10;

#[derive(Clone, Copy)]
pub(super) enum Kind {
    Chat { logprobs: bool },
    Text { logprobs: bool },
}

pub(super) struct Prepared {
    pub(super) lane: LaneSpec,
    pub(super) prompt: Prompt,
    pub(super) sampling: Sampling,
    pub(super) top_n: u32,
    pub(super) model_name: String,
    pub(super) stream: bool,
    pub(super) include_usage: bool,
    pub(super) pacer: Option<Pacer>,
}

/// `POST /v1/chat/completions`.
pub async fn chat(State(state): State<Shared>, body: Result<Bytes, BytesRejection>) -> Response {
    let prepared = body_bytes(body)
        .and_then(|b| parse_json::<ChatRequest>(&b))
        .and_then(|req| prepare_chat(&state, req));
    match prepared {
        Ok((p, kind)) => respond(state, p, kind).await,
        Err(e) => e.into_response(),
    }
}

/// `POST /v1/completions`.
pub async fn completions(State(state): State<Shared>, body: Result<Bytes, BytesRejection>) -> Response {
    let prepared = body_bytes(body)
        .and_then(|b| parse_json::<CompletionRequest>(&b))
        .and_then(|req| prepare_text(&state, req));
    match prepared {
        Ok((p, kind)) => respond(state, p, kind).await,
        Err(e) => e.into_response(),
    }
}

fn prepare_chat(state: &Shared, req: ChatRequest) -> Result<(Prepared, Kind), ApiError> {
    if req.messages.is_empty() {
        return Err(ApiError::invalid(
            Some("messages"),
            "messages must hold at least one message",
        ));
    }
    let mut turns = Vec::new();
    for (i, m) in req.messages.iter().enumerate() {
        let role = match m.role.as_str() {
            "system" | "developer" => "system",
            "user" => "user",
            "assistant" => "assistant",
            other => {
                return Err(ApiError::invalid(
                    Some(&format!("messages[{i}].role")),
                    format!("role {other:?} is not served (system, developer, user, assistant)"),
                ))
            }
        };
        let content = match &m.content {
            None => String::new(),
            Some(Content::Text(t)) => t.clone(),
            Some(Content::Parts(parts)) => {
                let mut text = String::new();
                for p in parts {
                    match (p.kind.as_str(), &p.text) {
                        ("text", Some(t)) => text.push_str(t),
                        (kind, _) => {
                            return Err(ApiError::invalid(
                                Some(&format!("messages[{i}].content")),
                                format!("content parts of type {kind:?} are not served: these models read text only"),
                            ))
                        }
                    }
                }
                text
            }
        };
        turns.push(ChatTurn {
            role: role.to_string(),
            content,
        });
    }
    let top_n = match (req.logprobs, req.top_logprobs) {
        (_, Some(n)) if n > MAX_TOP_LOGPROBS => {
            return Err(ApiError::invalid(
                Some("top_logprobs"),
                format!("top_logprobs is {n}; at most {MAX_TOP_LOGPROBS}"),
            ))
        }
        (false, Some(n)) if n > 0 => {
            return Err(ApiError::invalid(
                Some("top_logprobs"),
                "top_logprobs needs logprobs: true",
            ))
        }
        (true, n) => n.unwrap_or(0),
        (false, _) => 0,
    };
    let kind = Kind::Chat { logprobs: req.logprobs };
    let prompt = Prompt::Messages { messages: turns };
    Ok((prepare(state, &req.model, req.sampling, prompt, top_n)?, kind))
}

fn prepare_text(state: &Shared, req: CompletionRequest) -> Result<(Prepared, Kind), ApiError> {
    let (text, ids) = match req.prompt {
        PromptField::One(t) => (t, Vec::new()),
        PromptField::Many(mut v) if v.len() == 1 => (v.remove(0), Vec::new()),
        PromptField::Many(v) => {
            return Err(ApiError::invalid(
                Some("prompt"),
                format!("{} prompts given; send one per request", v.len()),
            ))
        }
        PromptField::Mixed(parts) => mixed_prompt(parts)?,
    };
    if text.is_empty() && ids.is_empty() {
        return Err(ApiError::invalid(Some("prompt"), "the prompt is empty"));
    }
    if req.echo {
        return Err(ApiError::invalid(Some("echo"), "echo is not served"));
    }
    if req.suffix.is_some_and(|s| !s.is_empty()) {
        return Err(ApiError::invalid(
            Some("suffix"),
            "suffix (fill-in-the-middle) is not served",
        ));
    }
    let top_n = req.logprobs.unwrap_or(0);
    if top_n > MAX_TOP_LOGPROBS {
        return Err(ApiError::invalid(
            Some("logprobs"),
            format!("logprobs is {top_n}; at most {MAX_TOP_LOGPROBS}"),
        ));
    }
    let kind = Kind::Text {
        logprobs: req.logprobs.is_some(),
    };
    let prompt = if ids.is_empty() {
        Prompt::Raw { text }
    } else {
        Prompt::Continued {
            prompt: Box::new(Prompt::Raw { text }),
            tokens: ids,
        }
    };
    Ok((prepare(state, &req.model, req.sampling, prompt, top_n)?, kind))
}

/// `[text, id, id, …]`: the text, then token ids (the engine checks them against the model's
/// vocabulary). Other orders are refused.
fn mixed_prompt(parts: Vec<PromptPart>) -> Result<(String, Vec<i32>), ApiError> {
    let mut parts = parts.into_iter();
    let Some(PromptPart::Text(text)) = parts.next() else {
        return Err(ApiError::invalid(
            Some("prompt"),
            "a prompt list is text followed by token ids; it must start with the text",
        ));
    };
    let ids = parts
        .map(|p| match p {
            PromptPart::Token(id) => i32::try_from(id).map_err(|_| format!("token id {id} is out of range")),
            PromptPart::Text(_) => Err("only the first element of a prompt list may be text".to_string()),
        })
        .collect::<Result<Vec<i32>, String>>()
        .map_err(|m| ApiError::invalid(Some("prompt"), m))?;
    Ok((text, ids))
}

fn adapters_for(
    state: &Shared,
    model: &str,
    lora: Option<&[super::openai::LoraScale]>,
) -> Result<(usize, Vec<AdapterSpec>), ApiError> {
    if let Some((index, adapters)) = state.library.alias(model) {
        if lora.is_some() {
            return Err(ApiError::invalid(
                Some("lora"),
                format!("{model:?} is a served lane with its own stack; lora does not apply to it"),
            ));
        }
        // The lane's stack as the window resolved it (static pins included).
        return Ok((index, adapters));
    }
    let name = parse_model_name(model)?;
    let (index, base) = state.library.model(&name.base)?;
    let mut stack: Vec<AdapterSpec> = Vec::new();
    if state.static_pins {
        stack.extend(
            state
                .library
                .static_pins(base)
                .into_iter()
                .map(|path| AdapterSpec { path, scale: 1.0 }),
        );
    }
    let chosen = match (name.adapters.is_empty(), lora) {
        (false, Some(_)) => {
            return Err(ApiError::invalid(
                Some("lora"),
                "adapters are named both in the model name and in lora; use one of them",
            ))
        }
        (false, None) => state.library.resolve_adapters(base, &name.adapters)?,
        (true, scales) => {
            let files = state.library.adapter_files();
            let scales: Vec<super::openai::LoraScale> = match scales {
                Some(s) => s.to_vec(),
                None => state.global_lora.lock().map(|g| g.clone()).unwrap_or_default(),
            };
            let mut v = Vec::new();
            for l in scales {
                let Some(file) = files.get(l.id) else {
                    return Err(ApiError::invalid(
                        Some("lora"),
                        format!(
                            "adapter id {} does not exist; GET /lora-adapters lists {}",
                            l.id,
                            files.len()
                        ),
                    ));
                };
                if !l.scale.is_finite() {
                    return Err(ApiError::invalid(
                        Some("lora"),
                        format!("scale {} is not finite", l.scale),
                    ));
                }
                state.library.check_fits(base, &file.path)?;
                v.push(AdapterSpec {
                    path: file.path.clone(),
                    scale: l.scale,
                });
            }
            v
        }
    };
    // A scale of 0 leaves an adapter out entirely, so it costs nothing to load.
    stack.extend(chosen.into_iter().filter(|a| a.scale != 0.0));
    Ok((index, stack))
}

fn prepare(state: &Shared, model: &str, f: SamplingFields, prompt: Prompt, top_n: u32) -> Result<Prepared, ApiError> {
    let (index, adapters) = adapters_for(state, model, f.lora.as_deref())?;
    let base = &state.library.models()[index];
    if f.n.is_some_and(|n| n != 1) {
        return Err(ApiError::invalid(Some("n"), "only n = 1 is served"));
    }
    let max_tokens = match f.max_completion_tokens.or(f.max_tokens) {
        None => state.n_ctx,
        Some(v) if v < 1 => {
            return Err(ApiError::invalid(
                Some("max_tokens"),
                format!("max_tokens is {v}; it must be at least 1"),
            ))
        }
        Some(v) if v > i64::from(state.n_ctx) => {
            return Err(ApiError::invalid(
                Some("max_tokens"),
                format!(
                    "max_tokens is {v} but the context holds {} tokens (serve --ctx)",
                    state.n_ctx
                ),
            ))
        }
        Some(v) => u32::try_from(v).unwrap_or(state.n_ctx),
    };
    let temperature = f.temperature.unwrap_or(1.0);
    if !(0.0..=2.0).contains(&temperature) {
        return Err(ApiError::invalid(
            Some("temperature"),
            format!("temperature {temperature} is outside 0-2"),
        ));
    }
    let top_p = f.top_p.unwrap_or(1.0);
    if !(top_p > 0.0 && top_p <= 1.0) {
        return Err(ApiError::invalid(
            Some("top_p"),
            format!("top_p {top_p} is outside (0, 1]"),
        ));
    }
    let min_p = f.min_p.unwrap_or(0.05);
    if !(0.0..=1.0).contains(&min_p) {
        return Err(ApiError::invalid(
            Some("min_p"),
            format!("min_p {min_p} is outside 0-1"),
        ));
    }
    let repeat_penalty = f.repeat_penalty.unwrap_or(1.0);
    if !(repeat_penalty.is_finite() && repeat_penalty > 0.0) {
        return Err(ApiError::invalid(
            Some("repeat_penalty"),
            "repeat_penalty must be a positive number",
        ));
    }
    let seed = match f.seed {
        Some(s) => s.rem_euclid(1 << 32) as u32,
        None => fresh_seed(),
    };
    let ext = f.nanolab.unwrap_or_default();
    let device = ext.device.clone().or_else(|| state.default_device.clone());
    let pacer = match device {
        Some(d) => {
            state.devices.check(&d)?;
            let paths: Vec<&std::path::Path> = adapters.iter().map(|a| a.path.as_path()).collect();
            let facts = crate::sim::facts::read(&base.path, &paths).map_err(|e| ApiError::invalid(Some("model"), e))?;
            Some(Pacer::new(
                Arc::clone(&state.devices),
                d,
                facts,
                ext.paced.unwrap_or(true),
            ))
        }
        None if ext.paced == Some(true) => {
            return Err(ApiError::invalid(
                Some("nanolab.paced"),
                "paced needs a device (nanolab.device or serve --device)",
            ))
        }
        None => None,
    };
    let stop = f.stop.map(super::openai::StopField::into_vec).unwrap_or_default();
    Ok(Prepared {
        lane: LaneSpec {
            threads: state.threads,
            ..LaneSpec::local(index as LaneId, &base.path, state.n_ctx, adapters).with_gpu_layers(state.gpu_layers)
        },
        prompt,
        sampling: Sampling {
            temperature,
            top_k: f.top_k.unwrap_or(40),
            top_p,
            min_p,
            repeat_penalty,
            seed,
            max_tokens,
            stop,
            ..Sampling::default()
        },
        top_n,
        model_name: model.to_string(),
        stream: f.stream,
        include_usage: f.stream_options.is_some_and(|o| o.include_usage),
        pacer,
    })
}

fn fresh_seed() -> u32 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    nanos ^ (std::process::id() << 16)
}

pub(super) fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

pub(super) fn response_id(prefix: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// An engine error as the HTTP error it is: the request's fault (400) or the server's (500).
pub(super) fn engine_error(message: String) -> ApiError {
    // The engine words these as input problems: the prompt does not fit, the model has no chat
    // template for a conversation, an empty prompt.
    let input = [
        "context holds",
        "chat template",
        "has no messages",
        "prompt is empty",
        "NUL byte",
    ];
    if input.iter().any(|s| message.contains(s)) {
        ApiError::invalid(None, message)
    } else {
        ApiError::server(message)
    }
}
