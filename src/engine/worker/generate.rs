//! Generation on the engine thread: a lane set up, its KV cleared, the prompt decoded, then
//! token by token sampled, released as text (stop strings held back) and streamed.

use std::time::Instant;

use super::*;

impl Worker {
    pub(super) fn generate(
        &mut self,
        job: JobId,
        spec: &LaneSpec,
        prompt: &Prompt,
        sampling: &Sampling,
        top_n: u32,
        sink: &mut dyn EventSink,
    ) -> JobResultOr<RunStats> {
        let (info, load_ms) = self.setup_lane(job, spec, sink)?;
        let lane = self
            .lanes
            .get_mut(&spec.lane)
            .ok_or_else(|| JobError::from("lane missing".to_string()))?;
        let model = Rc::clone(&lane.model);
        let tokens = prompt_tokens(&model.model, prompt)?;
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
        let n_vocab = usize::try_from(model.info.n_vocab).unwrap_or(0);
        let mut sampler = Sampler::new(sampling, model.info.n_vocab)
            .ok_or_else(|| JobError::from("could not create a sampler".to_string()))?;
        for &t in &tokens {
            sampler.accept(t);
        }
        let abort = lane.ctx.abort_flag();
        self.cancel.attach(job, abort);
        let lane = self
            .lanes
            .get_mut(&spec.lane)
            .ok_or_else(|| JobError::from("lane missing".to_string()))?;

        lane.ctx.clear();
        let t0 = Instant::now();
        let cancelled_err = || JobError {
            message: "cancelled".into(),
            cancelled: true,
        };
        let last_batch = match lane.ctx.decode(&tokens, 0, false) {
            Ok(n) => n,
            Err(_) if self.cancel.is_cancelled(job) => return Err(cancelled_err()),
            Err(e) => return Err(e.into()),
        };
        let prefill_ms = t0.elapsed().as_secs_f64() * 1000.0;

        let mut assembler = TextAssembler::new(&sampling.stop);
        let mut out_idx = last_batch.saturating_sub(1);
        let mut t_prev = t0;
        let mut ttft_ms = 0.0;
        let mut itls_ms = Vec::new();
        let mut generated = 0u32;
        let mut stop_reason = StopReason::MaxTokens;
        let top_n = top_n.min(10) as usize;
        for step in 0..sampling.max_tokens {
            let n_pos = tokens.len() + step as usize;
            if self.cancel.is_cancelled(job) {
                stop_reason = StopReason::Cancelled;
                break;
            }
            if n_pos >= n_ctx {
                stop_reason = StopReason::ContextFull;
                break;
            }
            let idx = i32::try_from(out_idx).unwrap_or(0);
            let token = sampler.sample(&lane.ctx, idx);
            let (prob, top) = match lane.ctx.logits(out_idx, n_vocab) {
                Some(logits) => token_probs(logits, token, top_n, &model.model),
                None => (0.0, Vec::new()),
            };
            let now = Instant::now();
            let latency_ms = (now - t_prev).as_secs_f64() * 1000.0;
            t_prev = now;
            if step == 0 {
                ttft_ms = latency_ms;
            } else {
                itls_ms.push(latency_ms);
            }
            if model.model.is_eog(token) {
                stop_reason = StopReason::EndOfText;
                break;
            }
            generated += 1;
            let bytes = model.model.token_bytes(token);
            let (released, stopped) = assembler.push(&bytes);
            sink.send(Event::Token {
                job,
                lane: spec.lane,
                text: released,
                piece: String::from_utf8_lossy(&bytes).into_owned(),
                token_id: token,
                prob,
                top,
                latency_ms,
                prompt_tokens: tokens.len() as u32,
            });
            if stopped {
                stop_reason = StopReason::StopString;
                break;
            }
            if step + 1 == sampling.max_tokens {
                break;
            }
            match lane
                .ctx
                .decode(&[token], i32::try_from(n_pos).unwrap_or(i32::MAX), false)
            {
                Ok(_) => {}
                Err(_) if self.cancel.is_cancelled(job) => {
                    stop_reason = StopReason::Cancelled;
                    break;
                }
                Err(e) => return Err(e.into()),
            }
            out_idx = 0;
        }
        let tail = assembler.finish();
        if !tail.is_empty() {
            sink.send(Event::Token {
                job,
                lane: spec.lane,
                text: tail,
                piece: String::new(),
                token_id: -1,
                prob: 0.0,
                top: Vec::new(),
                latency_ms: 0.0,
                prompt_tokens: tokens.len() as u32,
            });
        }
        let decode_ms: f64 = itls_ms.iter().sum();
        let (rss_bytes, peak_rss_bytes) = metrics::rss_bytes();
        let prompt_tokens = tokens.len() as u32;
        Ok(RunStats {
            lane: info,
            load_ms,
            ttft_ms,
            prompt_tokens,
            prefill_ms,
            prefill_tokens_per_sec: rate(f64::from(prompt_tokens), prefill_ms),
            generated_tokens: generated,
            decode_ms,
            decode_tokens_per_sec: rate(itls_ms.len() as f64, decode_ms),
            itl_p50_ms: metrics::percentile(&itls_ms, 0.5),
            itl_p95_ms: metrics::percentile(&itls_ms, 0.95),
            peak_rss_bytes,
            rss_bytes,
            text: assembler.text().to_string(),
            stop_reason,
        })
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
