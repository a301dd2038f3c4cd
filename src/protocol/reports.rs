//! Reports that travel on the wire: what the engine's evaluation and comparison jobs end with. The
//! accumulators that produce them live in `eval`.

use serde::{Deserialize, Serialize};

use super::{LaneId, TopToken};

/// Perplexity of one model over a text.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PplReport {
    /// exp(mean negative log-likelihood).
    pub ppl: f64,
    /// Its uncertainty (llama-perplexity's `+/-`).
    pub ppl_unc: f64,
    /// Scored tokens.
    pub n_tokens: usize,
    /// Chunks evaluated.
    pub n_chunks: usize,
    /// Tokens per chunk.
    pub n_ctx: usize,
}

/// Quality of a model against a reference over a text (llama-perplexity `--kl-divergence`).
/// Δp values are fractions (0.01 = 1 percentage point); llama-perplexity prints them in %.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct KldReport {
    /// Perplexity of the model under test.
    pub ppl: f64,
    /// Its uncertainty.
    pub ppl_unc: f64,
    /// Perplexity of the reference.
    pub ppl_base: f64,
    /// Its uncertainty.
    pub ppl_base_unc: f64,
    /// Correlation of ln(PPL) of the two.
    pub ln_ppl_cor: f64,
    /// Mean ln(PPL(Q)/PPL(base)).
    pub ln_ppl_ratio: f64,
    /// Its uncertainty.
    pub ln_ppl_ratio_unc: f64,
    /// Mean PPL(Q)/PPL(base).
    pub ppl_ratio: f64,
    /// Mean PPL(Q)-PPL(base).
    pub ppl_diff: f64,
    /// Mean KL divergence KL(base || Q), nats per token.
    pub kld_mean: f64,
    /// Its uncertainty.
    pub kld_unc: f64,
    /// Largest per-token KLD.
    pub kld_max: f32,
    /// 99.9th percentile.
    pub kld_p99_9: f32,
    /// 99th percentile.
    pub kld_p99: f32,
    /// 95th percentile.
    pub kld_p95: f32,
    /// 90th percentile.
    pub kld_p90: f32,
    /// Median.
    pub kld_median: f32,
    /// 10th percentile.
    pub kld_p10: f32,
    /// Smallest.
    pub kld_min: f32,
    /// Mean Δp = p_Q(token) - p_base(token).
    pub dp_mean: f64,
    /// Its uncertainty.
    pub dp_unc: f64,
    /// Largest Δp.
    pub dp_max: f32,
    /// 99th percentile of Δp.
    pub dp_p99: f32,
    /// 95th percentile.
    pub dp_p95: f32,
    /// 90th percentile.
    pub dp_p90: f32,
    /// 75th percentile.
    pub dp_p75: f32,
    /// Median.
    pub dp_median: f32,
    /// 25th percentile.
    pub dp_p25: f32,
    /// 10th percentile.
    pub dp_p10: f32,
    /// 5th percentile.
    pub dp_p5: f32,
    /// 1st percentile.
    pub dp_p1: f32,
    /// Smallest Δp.
    pub dp_min: f32,
    /// Root mean square of Δp.
    pub dp_rms: f64,
    /// Its uncertainty.
    pub dp_rms_unc: f64,
    /// Share of positions where both put the same token first (0-1).
    pub same_top_p: f64,
    /// Its uncertainty.
    pub same_top_p_unc: f64,
    /// Scored tokens.
    pub n_tokens: usize,
    /// Chunks evaluated.
    pub n_chunks: usize,
    /// Tokens per chunk.
    pub n_ctx: usize,
}

/// Summary over all positions.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DivergenceSummary {
    /// Positions compared.
    pub n_tokens: usize,
    /// Mean KL(A||B), nats per token.
    pub kl_mean: f64,
    /// Largest KL.
    pub kl_max: f64,
    /// Share of positions where both put the same token first (0-1).
    pub top1_agreement: f64,
    /// Mean probability of A's tokens under B.
    pub p_b_mean: f64,
    /// First position where B would not have picked A's token greedily (None: never).
    pub first_disagreement: Option<usize>,
}

/// One generated position compared between two lanes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenDivergence {
    /// Index in the generated text (0 = first generated token).
    pub index: usize,
    /// Lane A's token.
    pub token_id: i32,
    /// Its text.
    pub piece: String,
    /// KL(A || B) at this position, nats.
    pub kl: f64,
    /// Both lanes put the same token first.
    pub top1_agree: bool,
    /// Probability of A's token under A.
    pub p_a: f32,
    /// Probability of A's token under B.
    pub p_b: f32,
    /// A's most likely tokens.
    pub top_a: Vec<TopToken>,
    /// B's most likely tokens.
    pub top_b: Vec<TopToken>,
}

/// Token-level divergence between two lanes over lane A's output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DivergenceResult {
    /// Lane A.
    pub lane_a: LaneId,
    /// Lane B.
    pub lane_b: LaneId,
    /// Lane A's output (what both read).
    pub text: String,
    /// Prompt tokens before it.
    pub prompt_tokens: usize,
    /// One entry per generated token.
    pub tokens: Vec<TokenDivergence>,
    /// Totals.
    pub summary: DivergenceSummary,
    /// Indices into `tokens` of the largest KL, largest first (up to 10).
    pub most_divergent: Vec<usize>,
    /// Set when a lane ran on an endpoint, which lists only its top tokens: how KL and p_B
    /// were computed instead of over the whole vocabulary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approximate: Option<String>,
}
