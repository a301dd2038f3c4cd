//! Evaluation jobs on the engine thread: perplexity/KLD over a text (llama-perplexity's
//! chunking, one chunk in memory at a time) and token-level divergence between two lanes.

use std::rc::Rc;
use std::time::Instant;

use super::{prompt_tokens, rate, EventSink, JobError, JobResultOr, Worker};
use crate::eval::divergence::{self, PositionDivergence};
use crate::eval::logprobs;
use crate::eval::quality::{self, KldAccumulator, PplAccumulator};
use crate::protocol::*;

/// What a `Request::Eval` asks for.
pub(super) struct EvalArgs<'a> {
    pub job: JobId,
    /// The lane under test.
    pub spec: &'a LaneSpec,
    pub reference: Option<&'a LaneSpec>,
    pub text: &'a str,
    /// Tokens per chunk.
    pub n_ctx: u32,
    pub max_chunks: Option<u32>,
}

/// What a `Request::Diverge` asks for.
pub(super) struct DivergeArgs<'a> {
    pub job: JobId,
    /// Lane A (generates).
    pub a: &'a LaneSpec,
    /// Lane B (reads A's output).
    pub b: &'a LaneSpec,
    pub prompt: &'a Prompt,
    /// Lane A's sampling.
    pub sampling: &'a Sampling,
    /// Alternatives per position.
    pub top_n: u32,
}

/// Forwards events and remembers the token ids a generation produced.
struct CaptureTokens<'a> {
    inner: &'a mut dyn EventSink,
    ids: Vec<i32>,
}

impl EventSink for CaptureTokens<'_> {
    fn send(&mut self, event: Event) {
        if let Event::Token { token_id, .. } = &event {
            if *token_id >= 0 {
                self.ids.push(*token_id);
            }
        }
        self.inner.send(event);
    }
}

fn cancelled() -> JobError {
    JobError {
        message: "cancelled".into(),
        cancelled: true,
    }
}

impl Worker {
    /// Lane `lane` reads `tokens`; `on_logits(i, logits)` gets every position from `first` on
    /// (see [`super::Context::decode_scored`]). A decode failure caused by the job's cancel is
    /// reported as a cancel.
    fn read_scored(
        &mut self,
        job: JobId,
        lane: LaneId,
        tokens: &[i32],
        first: usize,
        on_logits: &mut super::llama::OnLogits<'_>,
    ) -> JobResultOr<()> {
        let lane = self
            .lanes
            .get_mut(&lane)
            .ok_or_else(|| JobError::from("lane missing".to_string()))?;
        let n_vocab = usize::try_from(lane.model.info.n_vocab).unwrap_or(0);
        match lane.ctx.decode_scored(tokens, first, n_vocab, on_logits) {
            Err(_) if self.cancel.is_cancelled(job) => Err(cancelled()),
            other => Ok(other?),
        }
    }

    /// Log-probabilities (n_vocab per row) of lane `lane` at positions `first..` of `tokens`.
    fn forced_log_probs(&mut self, job: JobId, lane: LaneId, tokens: &[i32], first: usize) -> JobResultOr<Vec<f32>> {
        let mut out = Vec::new();
        let mut scratch = Vec::new();
        self.read_scored(job, lane, tokens, first, &mut |_, logits| {
            logprobs::log_softmax(logits, &mut scratch);
            out.extend_from_slice(&scratch);
            Ok(())
        })?;
        Ok(out)
    }

    /// Sets up a lane and hooks its decode to the job's cancel; returns its vocabulary size.
    fn eval_lane(&mut self, job: JobId, spec: &LaneSpec, n_ctx: usize, sink: &mut dyn EventSink) -> JobResultOr<usize> {
        self.setup_lane(job, spec, sink)?;
        let lane = self
            .lanes
            .get(&spec.lane)
            .ok_or_else(|| JobError::from("lane missing".to_string()))?;
        if (lane.ctx.n_ctx() as usize) < n_ctx {
            return Err(format!(
                "lane {} has a context of {} tokens; this needs {n_ctx}",
                spec.lane,
                lane.ctx.n_ctx()
            )
            .into());
        }
        self.cancel.attach(job, lane.ctx.abort_flag());
        Ok(usize::try_from(lane.model.info.n_vocab).unwrap_or(0))
    }

    /// Perplexity (and with a reference, KLD and friends) of `spec` over `text`.
    pub(super) fn eval(&mut self, args: EvalArgs<'_>, sink: &mut dyn EventSink) -> JobResultOr<JobResult> {
        let EvalArgs {
            job,
            spec,
            reference,
            text,
            n_ctx,
            max_chunks,
        } = args;
        let n_ctx = n_ctx as usize;
        if reference.is_some_and(|r| r.lane == spec.lane) {
            return Err("the reference must be another lane".to_string().into());
        }
        let n_vocab = self.eval_lane(job, spec, n_ctx, sink)?;
        let model = Rc::clone(&self.lanes[&spec.lane].model);
        let tokens = model.model.tokenize_plain(text)?;
        if let Some(r) = reference {
            let ref_vocab = self.eval_lane(job, r, n_ctx, sink)?;
            let ref_model = Rc::clone(&self.lanes[&r.lane].model);
            if ref_vocab != n_vocab || ref_model.model.tokenize_plain(text)? != tokens {
                return Err(format!(
                    "{} and {} tokenize the text differently ({n_vocab} vs {ref_vocab} tokens in the vocabulary); KL divergence needs the same tokenizer",
                    spec.model.path.display(),
                    r.model.path.display()
                )
                .into());
            }
        }
        let n_chunks = quality::chunk_count(tokens.len(), n_ctx, max_chunks.map(|m| m as usize))?;
        // The scored positions; decode_scored stops before the last token of the chunk itself.
        let first = quality::scored_range(n_ctx).start;
        let (add_bos, bos) = (model.model.add_bos(), model.model.bos());
        let mut ppl = PplAccumulator::default();
        let mut kld = reference.map(|_| KldAccumulator::default());
        // One chunk of reference log-probabilities at a time: (n_ctx/2 - 1) × n_vocab floats.
        let mut ref_lp: Vec<f32> = Vec::new();
        let mut ref_top: Vec<usize> = Vec::new();
        let mut scratch = Vec::new();
        let mut test_ms = 0.0;
        for c in 0..n_chunks {
            if self.cancel.is_cancelled(job) {
                return Err(cancelled());
            }
            let mut chunk = tokens[c * n_ctx..(c + 1) * n_ctx].to_vec();
            if add_bos {
                chunk[0] = bos;
            }
            if let Some(r) = reference {
                ref_lp.clear();
                ref_top.clear();
                self.read_scored(job, r.lane, &chunk, first, &mut |_, logits| {
                    ref_top.push(logprobs::log_softmax(logits, &mut scratch));
                    ref_lp.extend_from_slice(&scratch);
                    Ok(())
                })?;
            }
            let t0 = Instant::now();
            self.read_scored(job, spec.lane, &chunk, first, &mut |i, logits| {
                let next = usize::try_from(chunk[i + 1]).unwrap_or(0);
                ppl.add(logprobs::nll(logits, next));
                if let Some(k) = kld.as_mut() {
                    let j = i - first;
                    k.add(&ref_lp[j * n_vocab..(j + 1) * n_vocab], ref_top[j], logits, next);
                }
                Ok(())
            })?;
            test_ms += t0.elapsed().as_secs_f64() * 1000.0;
            let stage = match &kld {
                Some(k) => format!(
                    "chunk {}/{n_chunks}: PPL {:.4}, mean KLD {:.5}",
                    c + 1,
                    ppl.ppl(),
                    k.kld_mean()
                ),
                None => format!("chunk {}/{n_chunks}: PPL {:.4}", c + 1, ppl.ppl()),
            };
            sink.send(Event::Progress {
                job,
                fraction: (c + 1) as f32 / n_chunks as f32,
                stage,
            });
        }
        Ok(JobResult::Eval {
            ppl: ppl.report(n_chunks, n_ctx),
            kld: kld.map(|k| Box::new(k.report(n_chunks, n_ctx))),
            text_tokens: tokens.len(),
            eval_tokens_per_sec: rate((n_chunks * n_ctx) as f64, test_ms),
        })
    }

    /// Lane A generates; both lanes then read prompt + A's output and are compared per token.
    pub(super) fn diverge(&mut self, args: DivergeArgs<'_>, sink: &mut dyn EventSink) -> JobResultOr<JobResult> {
        let DivergeArgs {
            job,
            a,
            b,
            prompt,
            sampling,
            top_n,
        } = args;
        let top_n = top_n.clamp(1, 10) as usize;
        let mut capture = CaptureTokens {
            inner: sink,
            ids: Vec::new(),
        };
        let wanted = super::Wanted {
            job,
            spec: a.clone(),
            prompt: prompt.clone(),
            sampling: sampling.clone(),
            top_n: 0,
            exclusive: true,
            received: Instant::now(),
        };
        let stats = self.generate(wanted, &mut capture)?;
        if stats.stop_reason == StopReason::Cancelled {
            return Err(cancelled());
        }
        let generated = capture.ids;
        let sink = capture.inner;
        if generated.is_empty() {
            return Err(
                "lane A generated nothing to compare (it ended at once); change the prompt or raise max tokens"
                    .to_string()
                    .into(),
            );
        }
        let model_a = Rc::clone(&self.lanes[&a.lane].model);
        let prompt_ids = prompt_tokens(&model_a.model, prompt)?;
        let mut full = prompt_ids.clone();
        full.extend_from_slice(&generated);
        let first = prompt_ids.len() - 1;
        // Position i (first..full.len()-1) predicts full[i + 1], the generated tokens in order.
        let n_pos = full.len() - 1 - first;
        let n_vocab = self.eval_lane(job, a, full.len(), sink)?;
        let lp_a = self.forced_log_probs(job, a.lane, &full, first)?;
        let n_vocab_b = self.eval_lane(job, b, full.len(), sink)?;
        let model_b = Rc::clone(&self.lanes[&b.lane].model);
        if n_vocab_b != n_vocab || prompt_tokens(&model_b.model, prompt)? != prompt_ids {
            return Err(format!(
                "lane {} and lane {} use different tokenizers ({n_vocab} vs {n_vocab_b} tokens); token-level comparison needs the same one",
                a.lane, b.lane
            )
            .into());
        }
        let lp_b = self.forced_log_probs(job, b.lane, &full, first)?;
        let positions: Vec<PositionDivergence> = (0..n_pos)
            .map(|j| {
                let token = usize::try_from(generated[j]).unwrap_or(0);
                divergence::compare(
                    &lp_a[j * n_vocab..(j + 1) * n_vocab],
                    &lp_b[j * n_vocab..(j + 1) * n_vocab],
                    token,
                    top_n,
                )
            })
            .collect();
        let piece = |id: usize| String::from_utf8_lossy(&model_a.model.token_bytes(id as i32)).into_owned();
        let tops = |t: &[(usize, f32)]| -> Vec<TopToken> {
            t.iter()
                .map(|&(id, prob)| TopToken {
                    piece: piece(id),
                    token_id: id as i32,
                    prob,
                })
                .collect()
        };
        let summary = divergence::summarise(&positions);
        let kls: Vec<f64> = positions.iter().map(|p| p.kl).collect();
        let tokens = positions
            .iter()
            .enumerate()
            .map(|(j, p)| TokenDivergence {
                index: j,
                token_id: generated[j],
                piece: piece(usize::try_from(generated[j]).unwrap_or(0)),
                kl: p.kl,
                top1_agree: p.top1_agree,
                p_a: p.p_a,
                p_b: p.p_b,
                top_a: tops(&p.top_a),
                top_b: tops(&p.top_b),
            })
            .collect();
        Ok(JobResult::Divergence {
            result: DivergenceResult {
                lane_a: a.lane,
                lane_b: b.lane,
                text: stats.text,
                prompt_tokens: prompt_ids.len(),
                tokens,
                summary,
                most_divergent: divergence::most_divergent(&kls, 10),
                approximate: None,
            },
        })
    }
}
