//! Answering a prepared completion: the engine job submitted, its tokens paced by the simulated
//! device when the request asks for one, and the result sent as one JSON object (chat or text
//! shape, logprobs, `usage`, llama-server's `timings`) or as server-sent events ending in
//! `data: [DONE]`; a client that goes away cancels its job.

use std::convert::Infallible;

use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use crate::protocol::{Event, JobResult, Request, RunStats, ServedRequest, TopToken, SERVED_PREFIX};

use super::completion::{engine_error, now_secs, response_id, Kind, Prepared, EVENT_SLACK};
use super::dispatch::SubmitError;
use super::openai::{finish_reason, logprob, timings, usage, ApiError};
use super::pacing::Pacer;
use super::routes::Shared;

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

pub(super) async fn respond(state: Shared, mut p: Prepared, kind: Kind) -> Response {
    let (tx, mut rx) = mpsc::channel(p.sampling.max_tokens as usize + EVENT_SLACK);
    let (lane, prompt, sampling, top_n) = (p.lane.clone(), p.prompt.clone(), p.sampling.clone(), p.top_n);
    let build = Box::new(move |job| Request::Generate {
        job,
        lane,
        prompt,
        sampling,
        top_n,
        exclusive: false,
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
            report: state.report_requests,
        };
        tokio::spawn(stream.run(first, rx));
        Sse::new(ReceiverStream::new(out_rx))
            .keep_alive(KeepAlive::default())
            .into_response()
    } else {
        match collect(first, &mut rx, &mut p.pacer).await {
            Ok((tokens, stats)) => {
                if state.report_requests {
                    report_served(&p.model_name, &stats);
                }
                Json(whole_response(&id, &p, kind, &tokens, &stats)).into_response()
            }
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
    /// Print a `served` line when the answer is complete.
    report: bool,
}

/// One `served {JSON}` line on stdout for an answered request (`--report-requests`).
fn report_served(model: &str, stats: &RunStats) {
    let line = ServedRequest {
        model: model.to_string(),
        prompt_tokens: stats.prompt_tokens,
        generated_tokens: stats.generated_tokens,
        ttft_ms: stats.ttft_ms,
        decode_tokens_per_sec: stats.decode_tokens_per_sec,
    };
    if let Ok(json) = serde_json::to_string(&line) {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        // A reader that went away (the window closed) only loses the report, not the answer.
        let _ = writeln!(out, "{SERVED_PREFIX}{json}").and_then(|()| out.flush());
    }
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
        if self.report {
            report_served(&self.model, stats);
        }
    }

    async fn fail(&self, e: ApiError) {
        if self.send(&e.body()).await {
            let _ = self.out.send(Ok(SseEvent::default().data("[DONE]"))).await;
        }
    }
}
