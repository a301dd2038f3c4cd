//! One teacher-forced position on an endpoint: a lane's most likely next tokens after a prompt,
//! read from the logprobs of a one-token greedy completion, not streamed, since a stream hides
//! the end-of-text token that may be the most likely one.

use std::sync::atomic::AtomicBool;

use serde_json::Value;

use super::stream::{pieces, send};
use super::{api_key, body, post_json, status_error, EndpointInfo, Probes, RemoteError, ServerKind};
use crate::protocol::{JobResult, LaneSpec, Prompt, Sampling};

/// The endpoint's `top_n` most likely next tokens for the remote lane `spec` after `prompt`.
pub fn next_tokens(
    spec: &LaneSpec,
    prompt: &Prompt,
    top_n: u32,
    probes: &Probes,
    cancel: &AtomicBool,
) -> Result<JobResult, RemoteError> {
    let remote = spec
        .remote
        .as_ref()
        .ok_or_else(|| RemoteError::Unsupported(format!("lane {} has no endpoint", spec.lane)))?;
    let key = api_key(remote.api_key_env.as_deref())?;
    let info = super::endpoint_for(probes, remote, &spec.adapters, key.as_deref())?;
    let greedy_one = Sampling {
        temperature: 0.0,
        max_tokens: 1,
        ..Sampling::default()
    };
    let rendered = render_chat(&info, prompt, key.as_deref())?;
    let prompt = rendered.as_ref().unwrap_or(prompt);
    let mut call = body::build(&info, remote, &spec.adapters, prompt, &greedy_one, top_n.max(1))?;
    if let Value::Object(b) = &mut call.body {
        b.insert("stream".into(), Value::Bool(false));
        b.remove("stream_options");
    }
    let url = format!("{}{}", info.url, call.path);
    let (resp, _, _) = send(&call, &url, key.as_deref(), cancel).inspect_err(|e| {
        if e.retriable() {
            probes.forget(&remote.url);
        }
    })?;
    let protocol = |reason: String| RemoteError::Protocol {
        url: url.clone(),
        reason,
    };
    let text = resp
        .into_body()
        .read_to_string()
        .map_err(|e| protocol(format!("the answer could not be read ({e})")))?;
    let v: Value = serde_json::from_str(&text).map_err(|e| protocol(format!("the answer is not JSON ({e})")))?;
    let top = v
        .pointer("/choices/0/logprobs")
        .map(pieces)
        .and_then(|p| p.into_iter().next())
        .map(|p| p.top)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| protocol("no logprobs for the next token".into()))?;
    let prompt_tokens = v
        .pointer("/usage/prompt_tokens")
        .and_then(Value::as_u64)
        .map_or(0, |n| u32::try_from(n).unwrap_or(u32::MAX));
    Ok(JobResult::NextTokens { prompt_tokens, top })
}

/// On llama-server, a chat prompt followed by token ids becomes the text its own template makes
/// of the chat (`/apply-template`: the template a chat request there is read with, default
/// system message included) followed by the ids. `None`: nothing to render.
fn render_chat(info: &EndpointInfo, prompt: &Prompt, key: Option<&str>) -> Result<Option<Prompt>, RemoteError> {
    let Prompt::Continued { prompt: inner, tokens } = prompt else {
        return Ok(None);
    };
    let Some(messages) = body::messages(inner) else {
        return Ok(None);
    };
    if info.kind != ServerKind::LlamaServer {
        return Ok(None);
    }
    let url = format!("{}/apply-template", info.url);
    let (status, text) = post_json(&url, &serde_json::json!({ "messages": messages }), key)?;
    if status >= 400 {
        return Err(status_error(&url, status, &text, None));
    }
    let rendered = serde_json::from_str::<Value>(&text)
        .ok()
        .and_then(|v| v.get("prompt").and_then(Value::as_str).map(str::to_string))
        .ok_or_else(|| RemoteError::Protocol {
            url,
            reason: "no `prompt` in the rendered template".into(),
        })?;
    Ok(Some(Prompt::Continued {
        prompt: Box::new(Prompt::Raw { text: rendered }),
        tokens: tokens.clone(),
    }))
}
