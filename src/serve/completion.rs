//! `POST /v1/chat/completions` and `POST /v1/completions`: a request becomes one engine
//! `Generate` on the base model's lane with the request's own adapter stack (the engine clears
//! the lane's KV before every generation, so no request reads KV computed under another stack),
//! answered as one JSON object or as server-sent events ending in `data: [DONE]`.

use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use crate::protocol::{
    AdapterSpec, ChatTurn, Event, JobResult, LaneId, LaneSpec, ModelSpec, Prompt, Request, RunStats, Sampling, TopToken,
};

use super::dispatch::SubmitError;
use super::library::parse_model_name;
use super::openai::{
    finish_reason, logprob, timings, usage, ApiError, ChatRequest, CompletionRequest, Content, PromptField,
    SamplingFields,
};
use super::pacing::Pacer;
use super::routes::{body_bytes, parse_json, Shared};

/// Engine events a request may hold beyond one per token (load progress, the terminal event).
const EVENT_SLACK: usize = 256;
/// Most alternatives per position the engine reports.
const MAX_TOP_LOGPROBS: u32 = 10;

#[derive(Clone, Copy)]
enum Kind {
    Chat { logprobs: bool },
    Text { logprobs: bool },
}

struct Prepared {
    lane: LaneSpec,
    prompt: Prompt,
    sampling: Sampling,
    top_n: u32,
    model_name: String,
    stream: bool,
    include_usage: bool,
    pacer: Option<Pacer>,
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
    let text = match req.prompt {
        PromptField::One(t) => t,
        PromptField::Many(mut v) if v.len() == 1 => v.remove(0),
        PromptField::Many(v) => {
            return Err(ApiError::invalid(
                Some("prompt"),
                format!("{} prompts given; send one per request", v.len()),
            ))
        }
    };
    if text.is_empty() {
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
    Ok((
        prepare(state, &req.model, req.sampling, Prompt::Raw { text }, top_n)?,
        kind,
    ))
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
            lane: index as LaneId,
            model: ModelSpec {
                path: base.path.clone(),
                gpu_layers: state.gpu_layers,
            },
            n_ctx: state.n_ctx,
            threads: state.threads,
            adapters,
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

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn response_id(prefix: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// An engine error as the HTTP error it is: the request's fault (400) or the server's (500).
fn engine_error(message: String) -> ApiError {
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

/// One token as the response shows it.
struct TokenOut {
    text: String,
    piece: String,
    prob: f32,
    top: Vec<TopToken>,
}

fn chat_logprob(t: &TokenOut) -> Value {
    let entry = |piece: &str, prob: f32| json!({"token": piece, "logprob": logprob(prob), "bytes": piece.as_bytes()});
    let mut v = entry(&t.piece, t.prob);
    v["top_logprobs"] = Value::Array(t.top.iter().map(|a| entry(&a.piece, a.prob)).collect());
    v
}

fn text_logprobs(tokens: &[TokenOut], offset0: usize) -> Value {
    let mut offset = offset0;
    let mut offsets = Vec::new();
    for t in tokens {
        offsets.push(offset);
        offset += t.text.len();
    }
    json!({
        "tokens": tokens.iter().map(|t| t.piece.clone()).collect::<Vec<_>>(),
        "token_logprobs": tokens.iter().map(|t| logprob(t.prob)).collect::<Vec<_>>(),
        "top_logprobs": tokens.iter().map(|t| {
            t.top.iter().map(|a| (a.piece.clone(), json!(logprob(a.prob)))).collect::<serde_json::Map<_, _>>()
        }).collect::<Vec<_>>(),
        "text_offset": offsets,
    })
}

async fn respond(state: Shared, mut p: Prepared, kind: Kind) -> Response {
    let (tx, mut rx) = mpsc::channel(p.sampling.max_tokens as usize + EVENT_SLACK);
    let (lane, prompt, sampling, top_n) = (p.lane.clone(), p.prompt.clone(), p.sampling.clone(), p.top_n);
    let build = Box::new(move |job| Request::Generate {
        job,
        lane,
        prompt,
        sampling,
        top_n,
    });
    match state.dispatcher.submit(build, tx) {
        Ok(()) => {}
        Err(e @ SubmitError::Busy(_)) => {
            return ApiError {
                status: 503,
                message: format!("{e}; retry shortly"),
                kind: "server_error",
                param: None,
                code: Some("server_busy"),
            }
            .into_response()
        }
        Err(e @ SubmitError::Closed) => {
            return ApiError {
                status: 503,
                ..ApiError::server(e.to_string())
            }
            .into_response()
        }
    }
    // Wait for the first token or the end, so that a request the engine refuses gets its HTTP
    // error status instead of a stream that starts and fails.
    let first = loop {
        match rx.recv().await {
            Some(Event::Progress { .. }) => continue,
            other => break other,
        }
    };
    let first = match first {
        None => return ApiError::server("the engine ended the request without an answer").into_response(),
        Some(Event::Error { message, .. }) => return engine_error(message).into_response(),
        Some(ev) => ev,
    };
    let id = response_id(match kind {
        Kind::Chat { .. } => "chatcmpl",
        Kind::Text { .. } => "cmpl",
    });
    if p.stream {
        let (out_tx, out_rx) = mpsc::channel::<Result<SseEvent, Infallible>>(64);
        let stream = Streamer {
            out: out_tx,
            id,
            created: now_secs(),
            model: std::mem::take(&mut p.model_name),
            kind,
            include_usage: p.include_usage,
            pacer: p.pacer.take(),
            sent_text: String::new(),
        };
        tokio::spawn(stream.run(first, rx));
        Sse::new(ReceiverStream::new(out_rx))
            .keep_alive(KeepAlive::default())
            .into_response()
    } else {
        match collect(first, &mut rx, &mut p.pacer).await {
            Ok((tokens, stats)) => Json(whole_response(&id, &p, kind, &tokens, &stats)).into_response(),
            Err(e) => e.into_response(),
        }
    }
}

async fn pace(pacer: &mut Option<Pacer>, prompt_tokens: u32) {
    if let Some(release) = pacer.as_mut().and_then(|p| p.token(prompt_tokens)) {
        tokio::time::sleep_until(release).await;
    }
}

/// What one engine event means for the response.
enum Step {
    /// A token, released (paced) and ready to show.
    Token(TokenOut),
    /// The run ended with these stats.
    Done(Box<RunStats>),
    /// The run failed.
    Failed(ApiError),
    /// Nothing to show (load progress).
    Nothing,
}

/// Turns the next engine event (`None`: the channel closed) into a step, waiting for a paced
/// token's release time.
async fn step(ev: Option<Event>, pacer: &mut Option<Pacer>) -> Step {
    match ev {
        Some(Event::Token {
            text,
            piece,
            prob,
            top,
            prompt_tokens,
            ..
        }) => {
            pace(pacer, prompt_tokens).await;
            Step::Token(TokenOut { text, piece, prob, top })
        }
        Some(Event::Done {
            result: JobResult::Generated { stats },
            ..
        }) => Step::Done(Box::new(stats)),
        Some(Event::Done { result, .. }) => {
            Step::Failed(ApiError::server(format!("unexpected engine result: {result:?}")))
        }
        Some(Event::Error { message, .. }) => Step::Failed(engine_error(message)),
        Some(Event::Progress { .. } | Event::Ready { .. }) => Step::Nothing,
        None => Step::Failed(ApiError::server("the engine ended the request without an answer")),
    }
}

/// Reads the job to its end: the tokens and the run's stats.
async fn collect(
    first: Event,
    rx: &mut mpsc::Receiver<Event>,
    pacer: &mut Option<Pacer>,
) -> Result<(Vec<TokenOut>, RunStats), ApiError> {
    let mut tokens = Vec::new();
    let mut next = Some(first);
    loop {
        match step(next, pacer).await {
            Step::Token(t) => tokens.push(t),
            Step::Done(stats) => return Ok((tokens, *stats)),
            Step::Failed(e) => return Err(e),
            Step::Nothing => {}
        }
        next = rx.recv().await;
    }
}

fn extensions(v: &mut Value, stats: &RunStats, pacer: Option<&Pacer>) {
    v["timings"] = timings(stats);
    if let Some(p) = pacer {
        v["nanolab"] = p.report();
    }
}

fn whole_response(id: &str, p: &Prepared, kind: Kind, tokens: &[TokenOut], stats: &RunStats) -> Value {
    let finish = finish_reason(stats.stop_reason);
    let mut v = match kind {
        Kind::Chat { logprobs } => json!({
            "id": id, "object": "chat.completion", "created": now_secs(), "model": p.model_name,
            "choices": [{
                "index": 0,
                "message": {"role": "assistant", "content": stats.text},
                "logprobs": if logprobs { json!({"content": tokens.iter().map(chat_logprob).collect::<Vec<_>>(), "refusal": null}) } else { Value::Null },
                "finish_reason": finish,
            }],
            "usage": usage(stats),
        }),
        Kind::Text { logprobs } => json!({
            "id": id, "object": "text_completion", "created": now_secs(), "model": p.model_name,
            "choices": [{
                "index": 0,
                "text": stats.text,
                "logprobs": if logprobs { text_logprobs(tokens, 0) } else { Value::Null },
                "finish_reason": finish,
            }],
            "usage": usage(stats),
        }),
    };
    extensions(&mut v, stats, p.pacer.as_ref());
    v
}

/// Writes one streaming response as SSE chunks.
struct Streamer {
    out: mpsc::Sender<Result<SseEvent, Infallible>>,
    id: String,
    created: u64,
    model: String,
    kind: Kind,
    include_usage: bool,
    pacer: Option<Pacer>,
    sent_text: String,
}

impl Streamer {
    fn object(&self) -> &'static str {
        match self.kind {
            Kind::Chat { .. } => "chat.completion.chunk",
            Kind::Text { .. } => "text_completion",
        }
    }

    fn chunk(&self, choice: Value) -> Value {
        json!({"id": self.id, "object": self.object(), "created": self.created, "model": self.model, "choices": [choice]})
    }

    fn delta(&self, text: &str, token: Option<&TokenOut>, finish: Option<&str>) -> Value {
        match self.kind {
            Kind::Chat { logprobs } => {
                let lp = match token {
                    Some(t) if logprobs => json!({"content": [chat_logprob(t)], "refusal": null}),
                    _ => Value::Null,
                };
                let delta = if finish.is_some() {
                    json!({})
                } else {
                    json!({"content": text})
                };
                self.chunk(json!({"index": 0, "delta": delta, "logprobs": lp, "finish_reason": finish}))
            }
            Kind::Text { logprobs } => {
                let lp = match token {
                    Some(t) if logprobs => text_logprobs(std::slice::from_ref(t), self.sent_text.len()),
                    _ => Value::Null,
                };
                self.chunk(json!({"index": 0, "text": text, "logprobs": lp, "finish_reason": finish}))
            }
        }
    }

    /// Sends one SSE data line; false when the client has gone.
    async fn send(&self, v: &Value) -> bool {
        self.out.send(Ok(SseEvent::default().data(v.to_string()))).await.is_ok()
    }

    async fn run(mut self, first: Event, mut rx: mpsc::Receiver<Event>) {
        if let Kind::Chat { .. } = self.kind {
            let opening = self.chunk(json!({"index": 0, "delta": {"role": "assistant", "content": ""}, "logprobs": null, "finish_reason": null}));
            if !self.send(&opening).await {
                return;
            }
        }
        let mut next = Some(first);
        loop {
            match step(next, &mut self.pacer).await {
                Step::Token(t) => {
                    let chunk = self.delta(&t.text, Some(&t), None);
                    self.sent_text.push_str(&t.text);
                    if !self.send(&chunk).await {
                        return;
                    }
                }
                Step::Done(stats) => {
                    self.finish(&stats).await;
                    return;
                }
                Step::Failed(e) => {
                    self.fail(e).await;
                    return;
                }
                Step::Nothing => {}
            }
            next = rx.recv().await;
        }
    }

    async fn finish(&mut self, stats: &RunStats) {
        // Text the engine held back (a partial stop string or UTF-8 sequence) that turned out
        // to be output is in the final text only.
        if let Some(rest) = stats
            .text
            .strip_prefix(self.sent_text.as_str())
            .filter(|r| !r.is_empty())
        {
            let chunk = self.delta(rest, None, None);
            self.sent_text.push_str(rest);
            if !self.send(&chunk).await {
                return;
            }
        }
        let mut last = self.delta("", None, Some(finish_reason(stats.stop_reason)));
        extensions(&mut last, stats, self.pacer.as_ref());
        if !self.send(&last).await {
            return;
        }
        if self.include_usage {
            let u = json!({"id": self.id, "object": self.object(), "created": self.created, "model": self.model, "choices": [], "usage": usage(stats)});
            if !self.send(&u).await {
                return;
            }
        }
        let _ = self.out.send(Ok(SseEvent::default().data("[DONE]"))).await;
    }

    async fn fail(&self, e: ApiError) {
        if self.send(&e.body()).await {
            let _ = self.out.send(Ok(SseEvent::default().data("[DONE]"))).await;
        }
    }
}
