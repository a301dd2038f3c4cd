//! The HTTP request for one generation, shaped for what answers at the endpoint: the adapter
//! stack as llama-server's `lora` list (every loaded adapter with an explicit scale, prompt cache
//! off), as a nanolab stack name, or as a vLLM adapter model; sampling fields each server reads.

use serde_json::{json, Map, Value};

use super::{file_stem, EndpointInfo, RemoteError, ServerKind};
use crate::protocol::{AdapterSpec, Prompt, RemoteSpec, Sampling};

/// A request ready to send.
#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    /// `/v1/completions` or `/v1/chat/completions`.
    pub path: &'static str,
    /// The JSON body.
    pub body: Value,
    /// A chat request (deltas in `choices[0].delta`).
    pub chat: bool,
}

/// Most alternatives asked for per token: OpenAI's legacy completions take 0-5, nanolab 10.
fn alternatives(kind: ServerKind, top_n: u32) -> u32 {
    match kind {
        ServerKind::LlamaServer | ServerKind::Nanolab => top_n.clamp(1, 10),
        ServerKind::Vllm | ServerKind::OpenAi => top_n.clamp(1, 5),
    }
}

/// The model name to send and, for llama-server, the `lora` list.
fn model_and_stack(
    info: &EndpointInfo,
    remote: &RemoteSpec,
    adapters: &[AdapterSpec],
) -> Result<(String, Option<Value>), RemoteError> {
    let names: Vec<(&str, f32)> = adapters
        .iter()
        .map(|a| (file_stem(a.path.to_str().unwrap_or_default()), a.scale))
        .collect();
    match info.kind {
        _ if names.is_empty() && info.kind != ServerKind::LlamaServer => Ok((remote.model.clone(), None)),
        ServerKind::LlamaServer => {
            if let Some((missing, _)) = names
                .iter()
                .find(|(n, _)| !info.adapters.iter().any(|a| a.stem() == *n))
            {
                let have: Vec<&str> = info.adapters.iter().map(super::RemoteAdapter::stem).collect();
                return Err(RemoteError::Unsupported(format!(
                    "llama-server at {} has no adapter {missing} loaded (it has: {}); start it with --lora {missing}.gguf",
                    info.url,
                    if have.is_empty() { "none".to_string() } else { have.join(", ") }
                )));
            }
            // Every loaded adapter gets an explicit scale: one left out would stay at the scale
            // the server started with (1 even with --lora-init-without-apply, llama.cpp #28674).
            let lora: Vec<Value> = info
                .adapters
                .iter()
                .map(|a| {
                    let scale: f32 = names.iter().filter(|(n, _)| *n == a.stem()).map(|(_, s)| s).sum();
                    json!({"id": a.id, "scale": scale})
                })
                .collect();
            Ok((remote.model.clone(), Some(Value::Array(lora))))
        }
        ServerKind::Nanolab => {
            let mut name = remote.model.clone();
            for (n, s) in &names {
                name.push_str(&format!("+{n}:{s}"));
            }
            Ok((name, None))
        }
        ServerKind::Vllm => {
            let [(adapter, scale)] = names.as_slice() else {
                return Err(RemoteError::Unsupported(format!(
                    "vLLM at {} applies one adapter per request; this lane stacks {}",
                    info.url,
                    names.len()
                )));
            };
            if (*scale - 1.0).abs() > f32::EPSILON {
                return Err(RemoteError::Unsupported(format!(
                    "vLLM at {} applies adapters at scale 1 only; {adapter} is at {scale}",
                    info.url
                )));
            }
            let served = info
                .models
                .iter()
                .any(|m| m.id == *adapter && m.parent.as_deref().is_none_or(|p| p == remote.model));
            if !served {
                return Err(RemoteError::Unsupported(format!(
                    "vLLM at {} serves no adapter {adapter} on {} (start it with --enable-lora --lora-modules {adapter}=PATH)",
                    info.url, remote.model
                )));
            }
            Ok(((*adapter).to_string(), None))
        }
        ServerKind::OpenAi => Err(RemoteError::Unsupported(format!(
            "{} is a plain OpenAI-compatible endpoint with no way to apply adapters per request",
            info.url
        ))),
    }
}

/// A chat prompt's `messages` list (`None` for a raw one).
pub(super) fn messages(prompt: &Prompt) -> Option<Value> {
    match prompt {
        Prompt::Chat { system, user } => {
            let mut messages = Vec::new();
            if let Some(sys) = system {
                messages.push(json!({"role": "system", "content": sys}));
            }
            messages.push(json!({"role": "user", "content": user}));
            Some(Value::Array(messages))
        }
        Prompt::Messages { messages } => Some(Value::Array(
            messages
                .iter()
                .map(|t| json!({"role": t.role, "content": t.content}))
                .collect(),
        )),
        Prompt::Raw { .. } | Prompt::Continued { .. } => None,
    }
}

/// A raw prompt followed by token ids, as llama-server's (and nanolab serve's) completions take
/// it: one array of the text and then the ids, which the server reads without re-tokenizing.
fn continued_prompt(info: &EndpointInfo, prompt: &Prompt) -> Result<Value, RemoteError> {
    if !matches!(info.kind, ServerKind::LlamaServer | ServerKind::Nanolab) {
        return Err(RemoteError::Unsupported(format!(
            "{} ({}) takes a prompt either as text or as token ids, not text followed by ids; reading a lane's tokens back (divergence) needs llama-server or nanolab serve",
            info.url,
            info.kind.name()
        )));
    }
    let mut parts: Vec<Value> = Vec::new();
    let mut p = prompt;
    let mut tails: Vec<&[i32]> = Vec::new();
    loop {
        match p {
            Prompt::Continued { prompt, tokens } => {
                tails.push(tokens);
                p = prompt;
            }
            Prompt::Raw { text } => {
                parts.push(json!(text));
                break;
            }
            Prompt::Chat { .. } | Prompt::Messages { .. } => {
                return Err(RemoteError::Unsupported(format!(
                    "{} ({}): a chat prompt cannot be followed by token ids there (only llama-server renders its template on its own, through /apply-template); give the prompt as raw text",
                    info.url,
                    info.kind.name()
                )))
            }
        }
    }
    parts.extend(tails.into_iter().rev().flatten().map(|&t| json!(t)));
    Ok(Value::Array(parts))
}

/// The request for `prompt` on `remote` with `adapters`, sampled as `s`, asking for `top_n`
/// alternatives per token.
pub fn build(
    info: &EndpointInfo,
    remote: &RemoteSpec,
    adapters: &[AdapterSpec],
    prompt: &Prompt,
    s: &Sampling,
    top_n: u32,
) -> Result<Call, RemoteError> {
    let (model, lora) = model_and_stack(info, remote, adapters)?;
    let mut body = Map::new();
    body.insert("model".into(), json!(model));
    let (path, chat) = match prompt {
        Prompt::Raw { text } => {
            body.insert("prompt".into(), json!(text));
            ("/v1/completions", false)
        }
        Prompt::Chat { .. } | Prompt::Messages { .. } => {
            body.insert("messages".into(), messages(prompt).unwrap_or_default());
            ("/v1/chat/completions", true)
        }
        Prompt::Continued { .. } => {
            body.insert("prompt".into(), continued_prompt(info, prompt)?);
            ("/v1/completions", false)
        }
    };
    body.insert("stream".into(), json!(true));
    body.insert("stream_options".into(), json!({"include_usage": true}));
    body.insert("temperature".into(), json!(s.temperature));
    body.insert("top_p".into(), json!(s.top_p));
    body.insert("seed".into(), json!(s.seed));
    body.insert("max_tokens".into(), json!(s.max_tokens));
    if !s.stop.is_empty() {
        body.insert("stop".into(), json!(s.stop));
    }
    if info.kind != ServerKind::OpenAi {
        body.insert("top_k".into(), json!(s.top_k));
        body.insert("min_p".into(), json!(s.min_p));
    }
    match info.kind {
        ServerKind::LlamaServer | ServerKind::Nanolab => {
            body.insert("repeat_penalty".into(), json!(s.repeat_penalty));
        }
        ServerKind::Vllm => {
            body.insert("repetition_penalty".into(), json!(s.repeat_penalty));
        }
        ServerKind::OpenAi => {}
    }
    let n = alternatives(info.kind, top_n);
    if chat {
        body.insert("logprobs".into(), json!(true));
        body.insert("top_logprobs".into(), json!(n));
    } else if info.kind == ServerKind::LlamaServer {
        body.insert("n_probs".into(), json!(n));
    } else {
        body.insert("logprobs".into(), json!(n));
    }
    if info.kind == ServerKind::LlamaServer {
        body.insert("repeat_last_n".into(), json!(s.repeat_last_n));
        // The prompt cache is reused across adapter stacks (llama.cpp #26207): never here.
        body.insert("cache_prompt".into(), json!(false));
        if let Some(lora) = lora {
            body.insert("lora".into(), lora);
        }
    }
    Ok(Call {
        path,
        body: Value::Object(body),
        chat,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::remote::{RemoteAdapter, RemoteModel};

    fn info(kind: ServerKind) -> EndpointInfo {
        EndpointInfo {
            url: "http://h".into(),
            kind,
            models: vec![
                RemoteModel {
                    id: "base".into(),
                    parent: None,
                },
                RemoteModel {
                    id: "caps".into(),
                    parent: Some("base".into()),
                },
            ],
            adapters: vec![
                RemoteAdapter {
                    id: 0,
                    path: "a/brief.gguf".into(),
                },
                RemoteAdapter {
                    id: 1,
                    path: "a/caps.gguf".into(),
                },
            ],
        }
    }

    fn spec() -> RemoteSpec {
        RemoteSpec {
            url: "http://h".into(),
            model: "base".into(),
            api_key_env: None,
        }
    }

    fn adapter(name: &str, scale: f32) -> AdapterSpec {
        AdapterSpec {
            path: name.into(),
            scale,
        }
    }

    fn raw() -> Prompt {
        Prompt::Raw { text: "hi".into() }
    }

    #[test]
    fn llama_server_gets_every_adapter_with_an_explicit_scale_and_no_prompt_cache() {
        let call = build(
            &info(ServerKind::LlamaServer),
            &spec(),
            &[adapter("adapters/caps.gguf", 0.5)],
            &raw(),
            &Sampling::default(),
            3,
        )
        .unwrap();
        assert_eq!(
            call.body["lora"],
            json!([{"id": 0, "scale": 0.0}, {"id": 1, "scale": 0.5}])
        );
        assert_eq!(call.body["cache_prompt"], json!(false));
        assert_eq!(call.body["n_probs"], json!(3));
        assert_eq!(call.path, "/v1/completions");
        let none = build(
            &info(ServerKind::LlamaServer),
            &spec(),
            &[],
            &raw(),
            &Sampling::default(),
            0,
        )
        .unwrap();
        assert_eq!(
            none.body["lora"],
            json!([{"id": 0, "scale": 0.0}, {"id": 1, "scale": 0.0}])
        );
        let err = build(
            &info(ServerKind::LlamaServer),
            &spec(),
            &[adapter("tone", 1.0)],
            &raw(),
            &Sampling::default(),
            0,
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("no adapter tone loaded (it has: brief, caps)"),
            "{err}"
        );
    }

    #[test]
    fn nanolab_takes_the_stack_in_the_model_name_and_vllm_one_adapter_as_a_model() {
        let stack = [adapter("caps", 1.0), adapter("brief", 0.5)];
        let call = build(
            &info(ServerKind::Nanolab),
            &spec(),
            &stack,
            &raw(),
            &Sampling::default(),
            0,
        )
        .unwrap();
        assert_eq!(call.body["model"], json!("base+caps:1+brief:0.5"));
        let v = build(
            &info(ServerKind::Vllm),
            &spec(),
            &stack[..1],
            &raw(),
            &Sampling::default(),
            0,
        )
        .unwrap();
        assert_eq!(v.body["model"], json!("caps"));
        assert_eq!(v.body["logprobs"], json!(1));
        let err = build(
            &info(ServerKind::Vllm),
            &spec(),
            &stack,
            &raw(),
            &Sampling::default(),
            0,
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("one adapter per request; this lane stacks 2"),
            "{err}"
        );
        let chat = Prompt::Chat {
            system: None,
            user: "u".into(),
        };
        let c = build(&info(ServerKind::OpenAi), &spec(), &[], &chat, &Sampling::default(), 2).unwrap();
        assert_eq!(
            (c.path, c.body["top_logprobs"].clone(), c.body.get("top_k")),
            ("/v1/chat/completions", json!(2), None)
        );
        assert!(build(
            &info(ServerKind::OpenAi),
            &spec(),
            &stack[..1],
            &raw(),
            &Sampling::default(),
            0
        )
        .is_err());
    }
}
