//! Generation on the engine thread as a state machine, so that lanes stream together:
//! [`Worker::start_generation`] sets the lane up, clears its KV and decodes the prompt; each
//! [`Worker::step_generation`] samples one token, streams it (stop strings held back) and
//! decodes it, on its lane's context or, batched with others, in a pool (`pool.rs`). The
//! scheduler (`schedule.rs`) steps every running generation in turn. A prompt a running lane
//! on the same model and stack already decoded is copied instead (`prompt_copy.rs`).

use std::rc::Rc;
use std::time::Instant;

use super::pool::{PoolId, PoolKey};
use super::prompt_copy::ShareKey;
use super::*;

/// What a `Generate` request asks for.
pub(super) struct Wanted {
    pub(super) job: JobId,
    pub(super) spec: LaneSpec,
    pub(super) prompt: Prompt,
    pub(super) sampling: Sampling,
    pub(super) top_n: u32,
    pub(super) exclusive: bool,
    /// When the engine took the request: time to first token counts from here.
    pub(super) received: Instant,
}

impl Wanted {
    /// The generation a request asks for; other requests are handed back.
    pub(super) fn from_request(req: Request, received: Instant) -> Result<Self, Box<Request>> {
        match req {
            Request::Generate {
                job,
                lane,
                prompt,
                sampling,
                top_n,
                exclusive,
            } => Ok(Self {
                job,
                spec: lane,
                prompt,
                sampling,
                top_n,
                exclusive,
                received,
            }),
            other => Err(Box::new(other)),
        }
    }
}

/// One generation between its steps.
pub(super) struct Generation {
    pub(super) job: JobId,
    pub(super) lane: LaneId,
    pub(super) exclusive: bool,
    /// Most generations running at once while this one ran; the scheduler raises it.
    pub(super) lanes_together: u32,
    /// Most sequences in one decode with this one's token (1: it decoded alone).
    pub(super) batched_with: u32,
    /// What it shares a pool under; `None`: it always decodes on its own context.
    key: Option<PoolKey>,
    /// What it shares its prompt's cells under; `None`: never shared.
    share: Option<ShareKey>,
    /// The logits its prompt ended with, kept while it runs where it may share its prompt.
    first_logits: Option<Rc<[f32]>>,
    /// Its pool and sequence there, once it moved in.
    pub(super) seat: Option<(PoolId, i32)>,
    /// Where the logits it samples next are: its pool's context, or its lane's.
    pub(super) logits_in: Option<PoolId>,
    model: Rc<LoadedModel>,
    sampler: Sampler,
    assembler: TextAssembler,
    info: LaneInfo,
    load_ms: f64,
    received: Instant,
    prompt: Vec<i32>,
    prompt_tokens: u32,
    /// Prompt tokens whose cells were copied from a running lane rather than decoded.
    prompt_reused: u32,
    n_ctx: usize,
    n_vocab: usize,
    top_n: usize,
    max_tokens: u32,
    prefill_ms: f64,
    /// Which row of the last decode's logits the next token is sampled from.
    out_idx: usize,
    step: u32,
    first_token_at: Option<Instant>,
    last_token_at: Option<Instant>,
    ttft_ms: f64,
    /// Time of this lane's decode of its last token: part of the next token's own time.
    decode_pending_ms: f64,
    own_itls_ms: Vec<f64>,
    generated: u32,
}

/// A step's first half: the generation ended, or its new token awaits its decode.
pub(super) enum Sampled {
    // Boxed: a finished run's stats are ~250 bytes and this is returned once per token.
    Ended(Box<JobResultOr<RunStats>>),
    Decode { token: i32, pos: i32 },
}

pub(super) fn ms_since(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1000.0
}

impl Generation {
    pub(super) fn pool_key(&self) -> Option<&PoolKey> {
        self.key.as_ref()
    }

    pub(super) fn share_key(&self) -> Option<&ShareKey> {
        self.share.as_ref()
    }

    /// Its prompt's tokens.
    pub(super) fn prompt(&self) -> &[i32] {
        &self.prompt
    }

    pub(super) fn first_logits(&self) -> Option<&Rc<[f32]>> {
        self.first_logits.as_ref()
    }

    /// KV cells it can fill before it must end: its prompt and every token it may generate.
    pub(super) fn kv_budget(&self) -> u32 {
        let n_ctx = u32::try_from(self.n_ctx).unwrap_or(u32::MAX);
        self.prompt_tokens
            .saturating_add(self.max_tokens)
            .saturating_add(1)
            .min(n_ctx)
    }
}

impl Worker {
    /// Sets the lane up and decodes the prompt, or copies it from one of the `running`
    /// generations that decoded the same; the generation then waits for its steps.
    pub(super) fn start_generation(
        &mut self,
        w: Wanted,
        running: &[Generation],
        sink: &mut dyn EventSink,
    ) -> JobResultOr<Generation> {
        let job = w.job;
        let (info, load_ms) = self.setup_lane(job, &w.spec, sink)?;
        let lane = self
            .lanes
            .get_mut(&w.spec.lane)
            .ok_or_else(|| JobError::from("lane missing".to_string()))?;
        let model = Rc::clone(&lane.model);
        let tokens = prompt_tokens(&model.model, &w.prompt)?;
        let n_ctx = lane.ctx.n_ctx() as usize;
        if tokens.is_empty() {
            return Err("the prompt is empty".to_string().into());
        }
        if tokens.len() >= n_ctx {
            return Err(format!(
                "the prompt is {} tokens but the context holds {n_ctx}; shorten it or raise the context length",
                tokens.len()
            )
            .into());
        }
        let mut sampler = Sampler::new(&w.sampling, model.info.n_vocab)
            .ok_or_else(|| JobError::from("could not create a sampler".to_string()))?;
        for &t in &tokens {
            sampler.accept(t);
        }
        self.cancel.attach(job, lane.ctx.abort_flag());
        lane.ctx.clear();
        let n_vocab = usize::try_from(model.info.n_vocab).unwrap_or(0);
        let share = self.share_key(w.spec.lane, w.exclusive);
        let t0 = Instant::now();
        let copied = share
            .as_ref()
            .and_then(|k| self.copy_prompt(w.spec.lane, k, &tokens, running));
        let prompt_reused = if copied.is_some() { tokens.len() } else { 0 };
        let (last_batch, first_logits) = match copied {
            Some(logits) => (1, Some(logits)),
            None => {
                let lane = self
                    .lanes
                    .get_mut(&w.spec.lane)
                    .ok_or_else(|| JobError::from("lane missing".to_string()))?;
                let last_batch = match lane.ctx.decode(&tokens, 0, false) {
                    Ok(n) => n,
                    Err(_) if self.cancel.is_cancelled(job) => {
                        return Err(JobError {
                            message: "cancelled".into(),
                            cancelled: true,
                        })
                    }
                    Err(e) => return Err(e.into()),
                };
                let kept = share
                    .as_ref()
                    .and_then(|_| lane.ctx.logits(last_batch.saturating_sub(1), n_vocab))
                    .map(Rc::from);
                (last_batch, kept)
            }
        };
        let prefill_ms = ms_since(t0);
        let key = self.pool_key(w.spec.lane, w.exclusive);
        Ok(Generation {
            job,
            lane: w.spec.lane,
            exclusive: w.exclusive,
            lanes_together: 1,
            batched_with: 1,
            key,
            share,
            first_logits,
            seat: None,
            logits_in: None,
            n_vocab,
            model,
            sampler,
            assembler: TextAssembler::new(&w.sampling.stop),
            info,
            load_ms,
            received: w.received,
            prompt_tokens: tokens.len() as u32,
            prompt_reused: u32::try_from(prompt_reused).unwrap_or(0),
            prompt: tokens,
            n_ctx,
            top_n: w.top_n.min(10) as usize,
            max_tokens: w.sampling.max_tokens,
            prefill_ms,
            out_idx: last_batch.saturating_sub(1),
            step: 0,
            first_token_at: None,
            last_token_at: None,
            ttft_ms: 0.0,
            decode_pending_ms: 0.0,
            own_itls_ms: Vec::new(),
            generated: 0,
        })
    }

    /// One token: sampled, streamed and decoded on the generation's own context. `Some` once
    /// the generation has ended.
    pub(super) fn step_generation(
        &mut self,
        g: &mut Generation,
        sink: &mut dyn EventSink,
    ) -> Option<JobResultOr<RunStats>> {
        match self.sample_step(g, sink) {
            Sampled::Ended(outcome) => Some(*outcome),
            Sampled::Decode { token, pos } => self.decode_own(g, token, pos, sink),
        }
    }

    /// Samples the next token from the last decode's logits and streams it.
    pub(super) fn sample_step(&mut self, g: &mut Generation, sink: &mut dyn EventSink) -> Sampled {
        let stop =
            |g: &mut Generation, sink: &mut dyn EventSink, why| Sampled::Ended(Box::new(Ok(g.finish(why, sink))));
        if self.cancel.is_cancelled(g.job) {
            return stop(g, sink, StopReason::Cancelled);
        }
        if g.step >= g.max_tokens {
            return stop(g, sink, StopReason::MaxTokens);
        }
        let n_pos = g.prompt_tokens as usize + g.step as usize;
        if n_pos >= g.n_ctx {
            return stop(g, sink, StopReason::ContextFull);
        }
        let ctx = match g.logits_in {
            Some(pool) => self.pools.get(pool).map(super::pool::Pool::ctx),
            None => self.lanes.get(&g.lane).map(|l| &l.ctx),
        };
        let Some(ctx) = ctx else {
            return Sampled::Ended(Box::new(Err("the lane was dropped while it generated"
                .to_string()
                .into())));
        };
        let started = Instant::now();
        // A copied prompt left no logits in the lane's context: its first token is sampled
        // from those the donor's prefill ended with.
        let copied_logits = (g.step == 0 && g.prompt_reused > 0)
            .then(|| g.first_logits.clone())
            .flatten();
        let (token, logits) = match &copied_logits {
            Some(logits) => (g.sampler.sample_logits(logits), Some(&logits[..])),
            None => {
                let idx = i32::try_from(g.out_idx).unwrap_or(0);
                (Some(g.sampler.sample(ctx, idx)), ctx.logits(g.out_idx, g.n_vocab))
            }
        };
        let Some(token) = token else {
            return Sampled::Ended(Box::new(Err("the sampler chose no token".to_string().into())));
        };
        let (prob, top) = match logits {
            Some(logits) => token_probs(logits, token, g.top_n, &g.model.model),
            None => (0.0, Vec::new()),
        };
        let now = Instant::now();
        let latency_ms = match g.last_token_at {
            Some(prev) => (now - prev).as_secs_f64() * 1000.0,
            None => {
                g.ttft_ms = (now - g.received).as_secs_f64() * 1000.0 - g.load_ms;
                g.first_token_at = Some(now);
                g.ttft_ms
            }
        };
        if g.step > 0 {
            g.own_itls_ms
                .push(g.decode_pending_ms + (now - started).as_secs_f64() * 1000.0);
        }
        g.last_token_at = Some(now);
        if g.model.model.is_eog(token) {
            return stop(g, sink, StopReason::EndOfText);
        }
        g.generated += 1;
        let bytes = g.model.model.token_bytes(token);
        let (released, stopped) = g.assembler.push(&bytes);
        sink.send(Event::Token {
            job: g.job,
            lane: g.lane,
            text: released,
            piece: String::from_utf8_lossy(&bytes).into_owned(),
            token_id: token,
            prob,
            top,
            latency_ms,
            prompt_tokens: g.prompt_tokens,
        });
        if stopped {
            return stop(g, sink, StopReason::StopString);
        }
        if g.step + 1 == g.max_tokens {
            return stop(g, sink, StopReason::MaxTokens);
        }
        Sampled::Decode {
            token,
            pos: i32::try_from(n_pos).unwrap_or(i32::MAX),
        }
    }

    /// Decodes the generation's new token on its lane's own context.
    pub(super) fn decode_own(
        &mut self,
        g: &mut Generation,
        token: i32,
        pos: i32,
        sink: &mut dyn EventSink,
    ) -> Option<JobResultOr<RunStats>> {
        let Some(lane) = self.lanes.get_mut(&g.lane) else {
            return Some(Err("the lane was dropped while it generated".to_string().into()));
        };
        let t_decode = Instant::now();
        match lane.ctx.decode(&[token], pos, false) {
            Ok(_) => {}
            Err(_) if self.cancel.is_cancelled(g.job) => return Some(Ok(g.finish(StopReason::Cancelled, sink))),
            Err(e) => return Some(Err(e.into())),
        }
        g.decoded(None, 0, ms_since(t_decode), 1);
        None
    }

    /// The lane's `top_n` most likely next tokens after `prompt`, end of text included.
    pub(super) fn next_tokens(
        &mut self,
        job: JobId,
        spec: &LaneSpec,
        prompt: &Prompt,
        top_n: u32,
        sink: &mut dyn EventSink,
    ) -> JobResultOr<JobResult> {
        self.setup_lane(job, spec, sink)?;
        let lane = self
            .lanes
            .get_mut(&spec.lane)
            .ok_or_else(|| JobError::from("lane missing".to_string()))?;
        let model = Rc::clone(&lane.model);
        let tokens = prompt_tokens(&model.model, prompt)?;
        let n_ctx = lane.ctx.n_ctx() as usize;
        if tokens.is_empty() || tokens.len() > n_ctx {
            return Err(format!("the prompt is {} tokens; the context holds {n_ctx}", tokens.len()).into());
        }
        self.cancel.attach(job, lane.ctx.abort_flag());
        lane.ctx.clear();
        let last = lane.ctx.decode(&tokens, 0, false)?;
        let n_vocab = usize::try_from(model.info.n_vocab).unwrap_or(0);
        let logits = lane
            .ctx
            .logits(last.saturating_sub(1), n_vocab)
            .ok_or_else(|| JobError::from("llama.cpp returned no logits".to_string()))?;
        let (_, top) = token_probs(logits, -1, top_n.clamp(1, 10) as usize, &model.model);
        Ok(JobResult::NextTokens {
            prompt_tokens: u32::try_from(tokens.len()).unwrap_or(u32::MAX),
            top,
        })
    }

    /// Runs a generation alone to its end (for [`Worker::handle`]).
    pub(super) fn generate(&mut self, w: Wanted, sink: &mut dyn EventSink) -> JobResultOr<RunStats> {
        let mut g = self.start_generation(w, &[], sink)?;
        loop {
            if let Some(outcome) = self.step_generation(&mut g, sink) {
                return outcome;
            }
        }
    }
}

impl Generation {
    /// Records a decode of its token: where its logits are now, and what the decode took.
    pub(super) fn decoded(&mut self, logits_in: Option<PoolId>, out_idx: usize, ms: f64, batch: u32) {
        self.logits_in = logits_in;
        self.out_idx = out_idx;
        self.decode_pending_ms = ms;
        self.batched_with = self.batched_with.max(batch);
        self.step += 1;
    }

    /// Releases any held text and reports the run.
    pub(super) fn finish(&mut self, stop_reason: StopReason, sink: &mut dyn EventSink) -> RunStats {
        let tail = self.assembler.finish();
        if !tail.is_empty() {
            sink.send(Event::Token {
                job: self.job,
                lane: self.lane,
                text: tail,
                piece: String::new(),
                token_id: -1,
                prob: 0.0,
                top: Vec::new(),
                latency_ms: 0.0,
                prompt_tokens: self.prompt_tokens,
            });
        }
        let decode_ms: f64 = self.own_itls_ms.iter().sum();
        let intervals = self.own_itls_ms.len() as f64;
        let seen_ms = match (self.first_token_at, self.last_token_at) {
            (Some(a), Some(b)) => (b - a).as_secs_f64() * 1000.0,
            _ => 0.0,
        };
        let (rss_bytes, peak_rss_bytes) = metrics::rss_bytes();
        RunStats {
            lane: self.info.clone(),
            load_ms: self.load_ms,
            ttft_ms: self.ttft_ms,
            prompt_tokens: self.prompt_tokens,
            prompt_reused_tokens: self.prompt_reused,
            prefill_ms: self.prefill_ms,
            // Over the tokens it decoded: 0 when its whole prompt was copied.
            prefill_tokens_per_sec: rate(
                f64::from(self.prompt_tokens.saturating_sub(self.prompt_reused)),
                self.prefill_ms,
            ),
            generated_tokens: self.generated,
            decode_ms,
            decode_tokens_per_sec: rate(intervals, decode_ms),
            itl_p50_ms: metrics::percentile(&self.own_itls_ms, 0.5),
            itl_p95_ms: metrics::percentile(&self.own_itls_ms, 0.95),
            seen_decode_tokens_per_sec: rate(intervals, seen_ms),
            lanes_together: self.lanes_together,
            batched_with: self.batched_with,
            peak_rss_bytes,
            rss_bytes,
            text: self.assembler.text().to_string(),
            stop_reason,
            remote: None,
        }
    }
}

/// Probability of `token` and the `top_n` most likely tokens, from raw logits (softmax, T=1).
pub(super) fn token_probs(logits: &[f32], token: i32, top_n: usize, model: &Model) -> (f32, Vec<TopToken>) {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f64 = logits.iter().map(|&l| f64::from((l - max).exp())).sum();
    let p = |l: f32| (f64::from((l - max).exp()) / sum) as f32;
    let prob = usize::try_from(token)
        .ok()
        .and_then(|i| logits.get(i))
        .map_or(0.0, |&l| p(l));
    let mut best: Vec<(usize, f32)> = Vec::with_capacity(top_n + 1);
    if top_n > 0 {
        for (i, &l) in logits.iter().enumerate() {
            if best.len() < top_n || l > best[best.len() - 1].1 {
                let at = best.partition_point(|&(_, bl)| bl >= l);
                best.insert(at, (i, l));
                best.truncate(top_n);
            }
        }
    }
    let top = best
        .into_iter()
        .map(|(i, l)| TopToken {
            piece: String::from_utf8_lossy(&model.token_bytes(i as i32)).into_owned(),
            token_id: i as i32,
            prob: p(l),
        })
        .collect();
    (prob, top)
}
