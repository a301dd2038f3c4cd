//! llama-batched-bench's test on the engine thread: several sequences of random tokens in one
//! context, their prompts decoded together and then one token of every sequence per decode,
//! timed and reported with that tool's definitions (prompts not shared).

use std::time::Instant;

use super::llama::SeqToken;
use super::*;

/// One test's sizes.
pub(super) struct BatchedTest {
    pub(super) pp: u32,
    pub(super) tg: u32,
    pub(super) pl: u32,
    pub(super) max_pl: u32,
    pub(super) seed: u64,
}

impl Worker {
    pub(super) fn batched_bench(
        &mut self,
        job: JobId,
        spec: &LaneSpec,
        test: BatchedTest,
        sink: &mut dyn EventSink,
    ) -> JobResultOr<JobResult> {
        let BatchedTest { pp, tg, seed, .. } = test;
        let pl = test.pl.max(1);
        let max_pl = test.max_pl.max(pl);
        if pp == 0 || tg == 0 {
            return Err(
                "the batched bench needs prompt and generated tokens (-p and -n above 0)"
                    .to_string()
                    .into(),
            );
        }
        let n_kv = pl
            .checked_mul(pp + tg)
            .ok_or_else(|| JobError::from("the batched bench is too large".to_string()))?;
        let spec = LaneSpec {
            n_ctx: max_pl.saturating_mul(pp + tg),
            ..spec.clone()
        };
        self.setup_lane_for(job, &spec, max_pl, sink)?;
        let lane = self
            .lanes
            .get_mut(&spec.lane)
            .ok_or_else(|| JobError::from("lane missing".to_string()))?;
        if n_kv > lane.ctx.n_ctx() {
            return Err(format!("the test needs {n_kv} KV cells; the context has {}", lane.ctx.n_ctx()).into());
        }
        self.cancel.attach(job, lane.ctx.abort_flag());
        let n_vocab = lane.model.info.n_vocab;
        let (pp_us, tg_us, pl_us) = (pp as usize, tg as usize, pl as usize);
        let pos = |i: usize| i32::try_from(i).unwrap_or(i32::MAX);
        let prompt_ids = super::super::baseline::bench_tokens(pp_us * pl_us, n_vocab, seed);
        let prompt: Vec<SeqToken> = prompt_ids
            .iter()
            .enumerate()
            .map(|(k, &token)| SeqToken {
                token,
                pos: pos(k % pp_us),
                seq: pos(k / pp_us),
                logits: k % pp_us + 1 == pp_us,
            })
            .collect();
        let gen_ids = super::super::baseline::bench_tokens(tg_us * pl_us, n_vocab, seed ^ 0x5eed);
        lane.ctx.clear();
        let t0 = Instant::now();
        lane.ctx.decode_sequences(&prompt)?;
        let t_pp = t0.elapsed().as_secs_f64();
        let t1 = Instant::now();
        for (i, step) in gen_ids.chunks(pl_us).enumerate() {
            let batch: Vec<SeqToken> = step
                .iter()
                .enumerate()
                .map(|(j, &token)| SeqToken {
                    token,
                    pos: pos(pp_us + i),
                    seq: pos(j),
                    logits: true,
                })
                .collect();
            lane.ctx.decode_sequences(&batch)?;
        }
        let t_tg = t1.elapsed().as_secs_f64();
        lane.ctx.clear();
        let t = t_pp + t_tg;
        let per_sec = |tokens: u32, secs: f64| if secs > 0.0 { f64::from(tokens) / secs } else { 0.0 };
        Ok(JobResult::BatchedBench {
            row: BatchedRow {
                pp,
                tg,
                pl,
                n_kv,
                t_pp,
                speed_pp: per_sec(pl * pp, t_pp),
                t_tg,
                speed_tg: per_sec(pl * tg, t_tg),
                t,
                speed: per_sec(n_kv, t),
            },
        })
    }
}
