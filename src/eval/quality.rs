//! Perplexity and KL-divergence statistics with the exact definitions of llama.cpp's
//! `llama-perplexity` (`perplexity()` and `kl_divergence()` in tools/perplexity/perplexity.cpp):
//! each chunk of `n_ctx` tokens is scored on its second half, the reference's tokens with
//! log-probability <= -16 are left out of the KL sum, percentiles interpolate linearly.
//! Accumulators are fed one scored token at a time, so nothing like a multi-GB logits file
//! is ever needed.

use super::logprobs;
pub use crate::protocol::{KldReport, PplReport};

/// llama-perplexity leaves out reference tokens at or below this log-probability in the KL sum.
const KLD_LOG_PROB_FLOOR: f32 = -16.0;

/// Which positions of a chunk are scored: predictions made at positions `first..n_ctx-1`.
pub fn scored_range(n_ctx: usize) -> std::ops::Range<usize> {
    n_ctx / 2..n_ctx.saturating_sub(1)
}

/// How many whole chunks of `n_ctx` tokens a text gives (llama-perplexity needs at least two).
pub fn chunk_count(n_tokens: usize, n_ctx: usize, max_chunks: Option<usize>) -> Result<usize, String> {
    if n_ctx < 8 {
        return Err(format!(
            "a context of {n_ctx} tokens is too small to score; use at least 8"
        ));
    }
    if n_tokens < 2 * n_ctx {
        return Err(format!(
            "the text is {n_tokens} tokens; at least {} (two chunks of {n_ctx}) are needed",
            2 * n_ctx
        ));
    }
    let n = n_tokens / n_ctx;
    Ok(max_chunks.map_or(n, |m| n.min(m.max(1))))
}

/// `mean ± uncertainty` as llama-perplexity computes it.
fn mean_and_uncertainty(sum: f64, sum2: f64, count: usize) -> (f64, f64) {
    if count < 1 {
        return (0.0, 0.0);
    }
    let n = count as f64;
    let f = sum / n;
    let df = sum2 / n - f * f;
    let df = if df > 0.0 && count > 10 {
        (df / (n - 1.0)).sqrt()
    } else {
        0.0
    };
    (f, df)
}

fn covariance(sum_a: f64, sum_b: f64, sum_ab: f64, count: usize) -> f64 {
    if count < 10 {
        return 0.0;
    }
    let n = count as f64;
    (sum_ab / n - (sum_a / n) * (sum_b / n)) / (n - 1.0)
}

/// llama-perplexity's percentile: linear interpolation over sorted values.
pub fn percentile(sorted: &[f32], fraction: f32) -> f32 {
    let (Some(&first), Some(&last)) = (sorted.first(), sorted.last()) else {
        return 0.0;
    };
    if fraction <= 0.0 {
        return first;
    }
    if fraction >= 1.0 {
        return last;
    }
    let p = fraction * (sorted.len() - 1) as f32;
    let ip = p as usize;
    let frac = p - ip as f32;
    (1.0 - frac) * sorted[ip] + frac * sorted[(ip + 1).min(sorted.len() - 1)]
}

fn median(sorted: &[f32]) -> f32 {
    let n = sorted.len();
    match n {
        0 => 0.0,
        _ if n.is_multiple_of(2) => 0.5 * (sorted[n / 2] + sorted[n / 2 - 1]),
        _ => sorted[n / 2],
    }
}

/// Running sums for perplexity.
#[derive(Debug, Default, Clone)]
pub struct PplAccumulator {
    nll: f64,
    nll2: f64,
    count: usize,
}

impl PplAccumulator {
    /// Adds one scored token.
    pub fn add(&mut self, nll: f64) {
        self.nll += nll;
        self.nll2 += nll * nll;
        self.count += 1;
    }

    /// Perplexity so far.
    pub fn ppl(&self) -> f64 {
        if self.count == 0 {
            return f64::NAN;
        }
        (self.nll / self.count as f64).exp()
    }

    /// The final report, as `perplexity()` prints it ("Final estimate: PPL = x +/- y").
    pub fn report(&self, n_chunks: usize, n_ctx: usize) -> PplReport {
        let n = self.count.max(1) as f64;
        let mean = self.nll / n;
        let ppl = mean.exp();
        let var = self.nll2 / n - mean * mean;
        let ppl_unc = if var > 0.0 && self.count > 1 {
            (var / (n - 1.0)).sqrt() * ppl
        } else {
            0.0
        };
        PplReport {
            ppl,
            ppl_unc,
            n_tokens: self.count,
            n_chunks,
            n_ctx,
        }
    }
}

/// Running sums for KL divergence, mirroring llama-perplexity's `kl_divergence_result`.
#[derive(Debug, Default, Clone)]
pub struct KldAccumulator {
    sum_nll: f64,
    sum_nll2: f64,
    sum_nll_base: f64,
    sum_nll_base2: f64,
    sum_nll_nll_base: f64,
    sum_kld: f64,
    sum_kld2: f64,
    sum_p_diff: f64,
    sum_p_diff2: f64,
    sum_p_diff4: f64,
    n_same_top: usize,
    count: usize,
    kld_values: Vec<f32>,
    p_diff_values: Vec<f32>,
    scratch: Vec<f32>,
}

impl KldAccumulator {
    /// Adds one scored position: the reference's log-probabilities (with its top token) and
    /// the tested model's raw logits, for the true next `token`.
    pub fn add(&mut self, base_log_probs: &[f32], base_top: usize, logits: &[f32], token: usize) {
        let mut lp = std::mem::take(&mut self.scratch);
        let top = logprobs::log_softmax(logits, &mut lp);
        let nll = -lp.get(token).copied().unwrap_or(f32::NEG_INFINITY);
        let nll_base = -base_log_probs.get(token).copied().unwrap_or(f32::NEG_INFINITY);
        self.sum_nll += f64::from(nll);
        self.sum_nll2 += f64::from(nll) * f64::from(nll);
        self.sum_nll_base += f64::from(nll_base);
        self.sum_nll_base2 += f64::from(nll_base) * f64::from(nll_base);
        self.sum_nll_nll_base += f64::from(nll) * f64::from(nll_base);
        let mut kld = 0.0f64;
        for (&b, &q) in base_log_probs.iter().zip(&lp) {
            if b > KLD_LOG_PROB_FLOOR {
                kld += f64::from(b.exp() * (b - q));
            }
        }
        self.sum_kld += kld;
        self.sum_kld2 += kld * kld;
        self.count += 1;
        if top == base_top {
            self.n_same_top += 1;
        }
        let p_diff = (-nll).exp() - (-nll_base).exp();
        self.sum_p_diff += f64::from(p_diff);
        let d2 = f64::from(p_diff) * f64::from(p_diff);
        self.sum_p_diff2 += d2;
        self.sum_p_diff4 += d2 * d2;
        self.kld_values.push(kld as f32);
        self.p_diff_values.push(p_diff);
        self.scratch = lp;
    }

    /// Scored positions so far.
    pub fn count(&self) -> usize {
        self.count
    }

    /// Mean KLD so far.
    pub fn kld_mean(&self) -> f64 {
        mean_and_uncertainty(self.sum_kld, self.sum_kld2, self.count).0
    }

    /// The final report, with every statistic llama-perplexity prints.
    pub fn report(&self, n_chunks: usize, n_ctx: usize) -> KldReport {
        let n = self.count;
        let log_ppl = mean_and_uncertainty(self.sum_nll, self.sum_nll2, n);
        let log_ppl_base = mean_and_uncertainty(self.sum_nll_base, self.sum_nll_base2, n);
        let ppl = log_ppl.0.exp();
        let ppl_unc = ppl * log_ppl.1;
        let ppl_base = log_ppl_base.0.exp();
        let ppl_base_unc = ppl_base * log_ppl_base.1;
        let cov = covariance(self.sum_nll, self.sum_nll_base, self.sum_nll_nll_base, n);
        let ln_ppl_cor = if log_ppl.1 > 0.0 && log_ppl_base.1 > 0.0 {
            cov / (log_ppl.1 * log_ppl_base.1)
        } else {
            0.0
        };
        let ln_ppl_ratio = log_ppl.0 - log_ppl_base.0;
        let ln_ppl_ratio_unc = (log_ppl.1 * log_ppl.1 + log_ppl_base.1 * log_ppl_base.1 - 2.0 * cov)
            .max(0.0)
            .sqrt();
        let kld = mean_and_uncertainty(self.sum_kld, self.sum_kld2, n);
        let dp = mean_and_uncertainty(self.sum_p_diff, self.sum_p_diff2, n);
        let mse = mean_and_uncertainty(self.sum_p_diff2, self.sum_p_diff4, n);
        let dp_rms = mse.0.sqrt();
        let dp_rms_unc = if dp_rms > 0.0 { 0.5 / dp_rms * mse.1 } else { 0.0 };
        let same_top_p = if n > 0 { self.n_same_top as f64 / n as f64 } else { 0.0 };
        let same_top_p_unc = if n > 1 {
            (same_top_p * (1.0 - same_top_p) / (n as f64 - 1.0)).sqrt()
        } else {
            0.0
        };
        let mut k = self.kld_values.clone();
        k.sort_by(f32::total_cmp);
        let mut d = self.p_diff_values.clone();
        d.sort_by(f32::total_cmp);
        KldReport {
            ppl,
            ppl_unc,
            ppl_base,
            ppl_base_unc,
            ln_ppl_cor,
            ln_ppl_ratio,
            ln_ppl_ratio_unc,
            ppl_ratio: ln_ppl_ratio.exp(),
            ppl_diff: ppl - ppl_base,
            kld_mean: kld.0,
            kld_unc: kld.1,
            kld_max: k.last().copied().unwrap_or(0.0),
            kld_p99_9: percentile(&k, 0.999),
            kld_p99: percentile(&k, 0.99),
            kld_p95: percentile(&k, 0.95),
            kld_p90: percentile(&k, 0.90),
            kld_median: median(&k),
            kld_p10: percentile(&k, 0.10),
            kld_min: k.first().copied().unwrap_or(0.0),
            dp_mean: dp.0,
            dp_unc: dp.1,
            dp_max: d.last().copied().unwrap_or(0.0),
            dp_p99: percentile(&d, 0.99),
            dp_p95: percentile(&d, 0.95),
            dp_p90: percentile(&d, 0.90),
            dp_p75: percentile(&d, 0.75),
            dp_median: median(&d),
            dp_p25: percentile(&d, 0.25),
            dp_p10: percentile(&d, 0.10),
            dp_p5: percentile(&d, 0.05),
            dp_p1: percentile(&d, 0.01),
            dp_min: d.first().copied().unwrap_or(0.0),
            dp_rms,
            dp_rms_unc,
            same_top_p,
            same_top_p_unc,
            n_tokens: n,
            n_chunks,
            n_ctx,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunking_follows_llama_perplexity() {
        assert_eq!(scored_range(512), 256..511);
        assert_eq!(chunk_count(2048, 512, None), Ok(4));
        assert_eq!(chunk_count(2048, 512, Some(3)), Ok(3));
        assert!(chunk_count(1000, 512, None).unwrap_err().contains("at least 1024"));
    }

    #[test]
    fn percentile_interpolates() {
        let v = [0.0, 1.0, 2.0, 3.0, 4.0];
        assert_eq!(percentile(&v, 0.5), 2.0);
        assert!((percentile(&v, 0.9) - 3.6).abs() < 1e-6);
        assert_eq!(percentile(&v, 1.0), 4.0);
        assert_eq!(median(&[1.0, 2.0, 3.0, 4.0]), 2.5);
    }

    #[test]
    fn identical_models_have_zero_divergence() {
        let logits = [[0.5f32, 2.0, -1.0, 0.1], [3.0, 0.0, 0.0, 1.0]];
        let mut acc = KldAccumulator::default();
        let mut lp = Vec::new();
        for (i, l) in logits.iter().enumerate() {
            let top = logprobs::log_softmax(l, &mut lp);
            acc.add(&lp, top, l, i);
        }
        let r = acc.report(1, 4);
        assert!(r.kld_mean.abs() < 1e-7, "{}", r.kld_mean);
        assert_eq!(r.same_top_p, 1.0);
        assert!((r.ppl - r.ppl_base).abs() < 1e-9);
        assert_eq!(r.dp_max, 0.0);
    }

    #[test]
    fn a_different_model_has_positive_divergence() {
        let base = [0.5f32, 2.0, -1.0, 0.1];
        let test = [2.5f32, 0.0, -1.0, 0.1];
        let mut lp = Vec::new();
        let top = logprobs::log_softmax(&base, &mut lp);
        let mut acc = KldAccumulator::default();
        acc.add(&lp, top, &test, 1);
        let r = acc.report(1, 4);
        assert!(r.kld_mean > 0.1, "{}", r.kld_mean);
        assert_eq!(r.same_top_p, 0.0);
        assert!(r.dp_mean < 0.0, "token 1 lost probability: {}", r.dp_mean);
        assert!(r.ppl > r.ppl_base);
    }

    #[test]
    fn perplexity_of_uniform_guesses_is_the_vocabulary_size() {
        let mut acc = PplAccumulator::default();
        for _ in 0..20 {
            acc.add(logprobs::nll(&[0.0; 8], 3));
        }
        let r = acc.report(1, 40);
        assert!((r.ppl - 8.0).abs() < 1e-4, "{}", r.ppl);
        assert_eq!(r.ppl_unc, 0.0);
    }
}
