//! One generation on an endpoint, streamed: the request sent, each server-sent chunk turned
//! into the engine's `Token` events (pieces and alternatives from the chunk's logprobs), and the
//! run's stats measured here from arrival times beside the server's own `timings`.

use std::io::BufReader;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::body::{self, Call};
use super::sse::Events;
use super::{agent, api_key, status_error, EndpointInfo, Probes, RemoteError};
use crate::metrics::percentile;
use crate::protocol::{
    Event, JobId, JobResult, LaneInfo, LaneSpec, ModelInfo, Prompt, RemoteRun, RemoteSpec, RunStats, Sampling,
    ServerTimings, StopReason, TopToken, Unavailable,
};

/// Tries of one request when the server says 429/503 with a short `Retry-After`.
const MAX_ATTEMPTS: u32 = 3;
/// Longest `Retry-After` waited for here; longer ones go back to the caller as retriable.
const MAX_RETRY_AFTER_S: u64 = 10;

/// One token as a chunk's logprobs describe it.
pub(super) struct Piece {
    piece: String,
    token_id: i32,
    prob: f32,
    pub(super) top: Vec<TopToken>,
}

/// What the stream said besides tokens.
#[derive(Default)]
struct Tail {
    finish_reason: Option<String>,
    prompt_tokens: Option<u32>,
    timings: Option<ServerTimings>,
}

fn prob_of(logprob: Option<f64>) -> f32 {
    logprob.map_or(f32::NAN, |lp| lp.exp() as f32)
}

fn token_id(v: &Value) -> i32 {
    v.get("id")
        .and_then(Value::as_i64)
        .and_then(|i| i32::try_from(i).ok())
        .unwrap_or(-1)
}

/// Tokens of one chunk: llama-server's and OpenAI chat's `logprobs.content` list, or OpenAI's
/// legacy completions lists (`tokens`, `token_logprobs`, `top_logprobs` as maps).
pub(super) fn pieces(logprobs: &Value) -> Vec<Piece> {
    if let Some(content) = logprobs.get("content").and_then(Value::as_array) {
        return content
            .iter()
            .map(|t| Piece {
                piece: t.get("token").and_then(Value::as_str).unwrap_or_default().to_string(),
                token_id: token_id(t),
                prob: prob_of(t.get("logprob").and_then(Value::as_f64)),
                top: t
                    .get("top_logprobs")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .map(|a| TopToken {
                        piece: a.get("token").and_then(Value::as_str).unwrap_or_default().to_string(),
                        token_id: token_id(a),
                        prob: prob_of(a.get("logprob").and_then(Value::as_f64)),
                    })
                    .collect(),
            })
            .collect();
    }
    let tokens = logprobs.get("tokens").and_then(Value::as_array);
    let lps = logprobs.get("token_logprobs").and_then(Value::as_array);
    let tops = logprobs.get("top_logprobs").and_then(Value::as_array);
    tokens
        .into_iter()
        .flatten()
        .enumerate()
        .map(|(i, t)| {
            let mut top: Vec<TopToken> = tops
                .and_then(|v| v.get(i))
                .and_then(Value::as_object)
                .into_iter()
                .flatten()
                .map(|(piece, lp)| TopToken {
                    piece: piece.clone(),
                    token_id: -1,
                    prob: prob_of(lp.as_f64()),
                })
                .collect();
            top.sort_by(|a, b| b.prob.total_cmp(&a.prob));
            Piece {
                piece: t.as_str().unwrap_or_default().to_string(),
                token_id: -1,
                prob: prob_of(lps.and_then(|v| v.get(i)).and_then(Value::as_f64)),
                top,
            }
        })
        .collect()
}

fn timings(v: &Value) -> Option<ServerTimings> {
    let f = |k: &str| v.get(k).and_then(Value::as_f64);
    Some(ServerTimings {
        prompt_n: f("prompt_n")? as u32,
        cache_n: f("cache_n").unwrap_or(0.0) as u32,
        prompt_ms: f("prompt_ms")?,
        prompt_per_second: f("prompt_per_second").unwrap_or(0.0),
        predicted_n: f("predicted_n")? as u32,
        predicted_ms: f("predicted_ms")?,
        predicted_per_second: f("predicted_per_second").unwrap_or(0.0),
    })
}

/// Where the run stands while chunks arrive.
struct Run<'a> {
    job: JobId,
    lane: u64,
    t0: Instant,
    arrivals: Vec<Instant>,
    text: String,
    tail: Tail,
    /// A token with no text, held until the next one: llama-server sends the end-of-generation
    /// token as one, which the local engine neither streams nor counts.
    held: Option<(Piece, Instant)>,
    emit: &'a mut dyn FnMut(Event),
}

impl Run<'_> {
    /// Applies one chunk; `Err` for an error object in the stream.
    fn chunk(&mut self, v: &Value, chat: bool) -> Result<(), String> {
        if let Some(e) = v.get("error") {
            return Err(e
                .get("message")
                .and_then(Value::as_str)
                .map_or_else(|| e.to_string(), str::to_string));
        }
        if let Some(u) = v.get("usage").filter(|u| u.is_object()) {
            self.tail.prompt_tokens = u.get("prompt_tokens").and_then(Value::as_u64).map(|x| x as u32);
        }
        if let Some(t) = v.get("timings").and_then(timings) {
            self.tail.timings = Some(t);
        }
        let Some(choice) = v.get("choices").and_then(|c| c.get(0)) else {
            return Ok(());
        };
        if let Some(r) = choice.get("finish_reason").and_then(Value::as_str) {
            self.tail.finish_reason = Some(r.to_string());
        }
        let text = if chat {
            choice.pointer("/delta/content").and_then(Value::as_str)
        } else {
            choice.get("text").and_then(Value::as_str)
        }
        .unwrap_or_default();
        let mut toks = choice.get("logprobs").map(pieces).unwrap_or_default();
        if toks.is_empty() && !text.is_empty() {
            // No logprobs: the chunk is one piece of unknown probability.
            toks.push(Piece {
                piece: text.to_string(),
                token_id: -1,
                prob: f32::NAN,
                top: Vec::new(),
            });
        }
        let mut text = Some(text.to_string());
        for t in toks {
            let now = Instant::now();
            let released = text.take().unwrap_or_default();
            if t.piece.is_empty() && released.is_empty() {
                self.flush();
                self.held = Some((t, now));
                continue;
            }
            self.flush();
            self.token(t, released, now);
        }
        Ok(())
    }

    /// Streams a held empty token after all: something came after it.
    fn flush(&mut self) {
        if let Some((t, at)) = self.held.take() {
            self.token(t, String::new(), at);
        }
    }

    fn token(&mut self, t: Piece, released: String, now: Instant) {
        let since = self.arrivals.last().copied().unwrap_or(self.t0);
        self.arrivals.push(now);
        self.text.push_str(&released);
        (self.emit)(Event::Token {
            job: self.job,
            lane: self.lane,
            text: released,
            piece: t.piece,
            token_id: t.token_id,
            prob: t.prob,
            top: t.top,
            latency_ms: now.duration_since(since).as_secs_f64() * 1e3,
            prompt_tokens: 0,
        });
    }

    fn stats(
        self,
        spec: &LaneSpec,
        remote: &RemoteSpec,
        info: &EndpointInfo,
        stop_reason: StopReason,
        attempts: u32,
    ) -> RunStats {
        let ms = |a: Instant, b: Instant| b.duration_since(a).as_secs_f64() * 1e3;
        let n = self.arrivals.len();
        let ttft_ms = self.arrivals.first().map_or(0.0, |&f| ms(self.t0, f));
        let decode_ms = match (self.arrivals.first(), self.arrivals.last()) {
            (Some(&f), Some(&l)) if n > 1 => ms(f, l),
            _ => 0.0,
        };
        let per_s = |count: usize, ms: f64| if ms > 0.0 { count as f64 / ms * 1e3 } else { 0.0 };
        let itl: Vec<f64> = self.arrivals.windows(2).map(|w| ms(w[0], w[1])).collect();
        let mut unavailable = vec![
            ("load_ms", "the endpoint does not say when it loaded the model"),
            (
                "peak_rss_bytes",
                "the memory of the remote process is not reported over the API",
            ),
            (
                "rss_bytes",
                "the memory of the remote process is not reported over the API",
            ),
            ("lane.kv_bytes", "the endpoint does not report its KV cache"),
            (
                "lane.model.model_bytes",
                "the endpoint does not report the model's size",
            ),
            ("lane.adapter_swap_ms", "the endpoint does not report adapter swaps"),
            (
                "lanes_together",
                "the endpoint does not say what it ran beside this request",
            ),
        ];
        if self.tail.timings.is_none() {
            unavailable.push(("prefill_ms", "the endpoint reports no timings"));
            unavailable.push(("prefill_tokens_per_sec", "the endpoint reports no timings"));
        }
        let prompt_tokens = self
            .tail
            .prompt_tokens
            .or(self.tail.timings.as_ref().map(|t| t.prompt_n));
        if prompt_tokens.is_none() {
            unavailable.push(("prompt_tokens", "the endpoint reports no usage"));
        }
        let t = self.tail.timings.as_ref();
        RunStats {
            lane: LaneInfo {
                lane: spec.lane,
                model: ModelInfo {
                    path: PathBuf::from(remote.label()),
                    model_bytes: 0,
                    parameters: 0,
                    n_ctx_train: 0,
                    n_vocab: 0,
                    gpu_layers: 0,
                    load_ms: 0.0,
                    cached: true,
                    has_chat_template: true,
                },
                kv_bytes: 0,
                adapter_bytes: 0,
                adapter_swap_ms: 0.0,
                context_created: false,
            },
            load_ms: 0.0,
            ttft_ms,
            prompt_tokens: prompt_tokens.unwrap_or(0),
            prompt_reused_tokens: t.map_or(0, |t| t.cache_n),
            prefill_ms: t.map_or(0.0, |t| t.prompt_ms),
            prefill_tokens_per_sec: t.map_or(0.0, |t| t.prompt_per_second),
            // Counted as the local engine counts: the tokens streamed, end-of-generation excluded.
            generated_tokens: n as u32,
            decode_ms,
            decode_tokens_per_sec: per_s(n.saturating_sub(1), decode_ms),
            itl_p50_ms: percentile(&itl, 0.5),
            itl_p95_ms: percentile(&itl, 0.95),
            seen_decode_tokens_per_sec: per_s(n.saturating_sub(1), decode_ms),
            lanes_together: 0,
            batched_with: 0,
            peak_rss_bytes: 0,
            rss_bytes: 0,
            text: self.text,
            stop_reason,
            remote: Some(Box::new(RemoteRun {
                url: info.url.clone(),
                server: info.kind.name().to_string(),
                model: remote.model.clone(),
                server_timings: self.tail.timings,
                measured: "ttft_ms, decode_tokens_per_sec and ITL measured by nanolab from the arrival times of the \
                           streamed chunks; prefill from the server's timings"
                    .into(),
                unavailable: unavailable
                    .into_iter()
                    .map(|(field, reason)| Unavailable {
                        field: field.into(),
                        reason: reason.into(),
                    })
                    .collect(),
                attempts,
            })),
        }
    }
}

fn error(job: JobId, e: &RemoteError) -> Event {
    Event::Error {
        job,
        message: e.to_string(),
        cancelled: false,
        retry: e.retriable(),
    }
}

/// Sends the request, waiting out short `Retry-After`s; the response whose body to stream.
pub(super) fn send(
    call: &Call,
    url: &str,
    key: Option<&str>,
    cancel: &AtomicBool,
) -> Result<(ureq::http::Response<ureq::Body>, Instant, u32), RemoteError> {
    let agent = agent();
    let mut attempts = 0;
    loop {
        attempts += 1;
        let t0 = Instant::now();
        let mut req = agent.post(url).header("Content-Type", "application/json");
        if let Some(k) = key {
            req = req.header("Authorization", &format!("Bearer {k}"));
        }
        let resp = req
            .send(call.body.to_string().as_bytes())
            .map_err(|e| super::unreachable(url, &e))?;
        let status = resp.status().as_u16();
        if status < 400 {
            return Ok((resp, t0, attempts));
        }
        let retry_after_s = resp
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        let text = resp.into_body().read_to_string().unwrap_or_default();
        let err = status_error(url, status, &text, retry_after_s);
        let wait = retry_after_s.unwrap_or(1);
        if !err.retriable() || attempts >= MAX_ATTEMPTS || wait > MAX_RETRY_AFTER_S {
            return Err(err);
        }
        let until = Instant::now() + Duration::from_secs(wait);
        while Instant::now() < until {
            if cancel.load(Ordering::Relaxed) {
                return Err(err);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// What a remote generation runs: a `Generate` request's lane, prompt, sampling and how many
/// top probabilities each token carries.
#[derive(Debug, Clone, Copy)]
pub struct GenerateCall<'a> {
    /// The lane (its `remote` names the endpoint).
    pub spec: &'a LaneSpec,
    /// The prompt.
    pub prompt: &'a Prompt,
    /// How to sample.
    pub sampling: &'a Sampling,
    /// Top probabilities per token.
    pub top_n: u32,
}

/// Runs `call` on its remote lane, handing every `Token` to `emit`, and returns the terminal
/// event (`Done` with the stats, or `Error`, marked `retry` when another try may work).
/// `cancel` ends it at the next chunk, as `Done` with `Cancelled`.
pub fn generate(
    job: JobId,
    call: GenerateCall<'_>,
    probes: &Probes,
    cancel: &AtomicBool,
    emit: &mut dyn FnMut(Event),
) -> Event {
    let GenerateCall {
        spec,
        prompt,
        sampling,
        top_n,
    } = call;
    let Some(remote) = &spec.remote else {
        return error(
            job,
            &RemoteError::Unsupported(format!("lane {} has no endpoint", spec.lane)),
        );
    };
    let key = match api_key(remote.api_key_env.as_deref()) {
        Ok(k) => k,
        Err(e) => return error(job, &e),
    };
    let info = match super::endpoint_for(probes, remote, &spec.adapters, key.as_deref()) {
        Ok(i) => i,
        Err(e) => return error(job, &e),
    };
    let call = match body::build(&info, remote, &spec.adapters, prompt, sampling, top_n) {
        Ok(c) => c,
        Err(e) => return error(job, &e),
    };
    let url = format!("{}{}", info.url, call.path);
    let (resp, t0, attempts) = match send(&call, &url, key.as_deref(), cancel) {
        Ok(r) => r,
        Err(e) => {
            if e.retriable() {
                probes.forget(&remote.url);
            }
            return error(job, &e);
        }
    };
    let mut run = Run {
        job,
        lane: spec.lane,
        t0,
        arrivals: Vec::new(),
        text: String::new(),
        tail: Tail::default(),
        held: None,
        emit,
    };
    let mut events = Events::new(BufReader::new(resp.into_body().into_reader()));
    let mut done = false;
    let mut cancelled = false;
    loop {
        if cancel.load(Ordering::Relaxed) {
            // Dropping the response closes the connection, which stops the server's generation.
            cancelled = true;
            break;
        }
        let data = match events.next_data() {
            Ok(Some(d)) => d,
            Ok(None) => break,
            Err(e) => {
                probes.forget(&remote.url);
                let lost = RemoteError::Unreachable {
                    url: url.clone(),
                    reason: format!("the stream broke after {} tokens: {e}", run.arrivals.len()),
                };
                return error(job, &lost);
            }
        };
        if data.trim() == "[DONE]" {
            done = true;
            break;
        }
        let v: Value = match serde_json::from_str(&data) {
            Ok(v) => v,
            Err(e) => {
                let bad = RemoteError::Protocol {
                    url: url.clone(),
                    reason: format!("a streamed chunk is not JSON ({e})"),
                };
                return error(job, &bad);
            }
        };
        if let Err(message) = run.chunk(&v, call.chat) {
            return error(job, &RemoteError::Stream { url, message });
        }
    }
    if !done && !cancelled && run.tail.finish_reason.is_none() {
        probes.forget(&remote.url);
        let lost = RemoteError::Unreachable {
            url,
            reason: format!(
                "the connection closed after {} tokens, before the answer ended",
                run.arrivals.len()
            ),
        };
        return error(job, &lost);
    }
    if run.tail.finish_reason.as_deref() != Some("stop") {
        run.flush();
    }
    // A `stop` finish is a stop string or the end-of-text token and servers do not say which:
    // with stop strings set it is reported as a stop string.
    let stop_reason = match run.tail.finish_reason.as_deref() {
        _ if cancelled => StopReason::Cancelled,
        Some("length") => StopReason::MaxTokens,
        _ if !sampling.stop.is_empty() => StopReason::StopString,
        _ => StopReason::EndOfText,
    };
    let stats = run.stats(spec, remote, &info, stop_reason, attempts);
    Event::Done {
        job,
        result: JobResult::Generated { stats },
    }
}
