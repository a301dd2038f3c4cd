//! Token-level divergence between two lanes under teacher forcing: both read the same text
//! (lane A's output), and at each position we compare their next-token distributions.

use serde::{Deserialize, Serialize};

use super::logprobs;
pub use crate::protocol::DivergenceSummary;

/// Numbers for one position, before token ids are turned into text.
#[derive(Debug, Clone, PartialEq)]
pub struct PositionDivergence {
    /// KL(A || B) over the whole vocabulary, nats.
    pub kl: f64,
    /// Both put the same token first.
    pub top1_agree: bool,
    /// Probability of the actual token under A.
    pub p_a: f32,
    /// Probability of the actual token under B.
    pub p_b: f32,
    /// A's top entries (token id, probability), best first.
    pub top_a: Vec<(usize, f32)>,
    /// B's top entries.
    pub top_b: Vec<(usize, f32)>,
}

/// Compares A's log-probabilities with B's at one position whose actual next token is `token`.
pub fn compare(lp_a: &[f32], lp_b: &[f32], token: usize, top_n: usize) -> PositionDivergence {
    let mut kl = 0.0f64;
    for (&a, &b) in lp_a.iter().zip(lp_b) {
        if a > f32::NEG_INFINITY {
            kl += f64::from(a.exp()) * f64::from(a - b);
        }
    }
    let top_a = logprobs::top_n(lp_a, top_n.max(1));
    let top_b = logprobs::top_n(lp_b, top_n.max(1));
    let top1_agree = top_a.first().map(|t| t.0) == top_b.first().map(|t| t.0);
    let p = |lp: &[f32]| lp.get(token).map_or(0.0, |l| l.exp());
    PositionDivergence {
        // Rounding can make an identical pair come out at -1e-9.
        kl: kl.max(0.0),
        top1_agree,
        p_a: p(lp_a),
        p_b: p(lp_b),
        top_a: top_a.into_iter().take(top_n).map(|(i, l)| (i, l.exp())).collect(),
        top_b: top_b.into_iter().take(top_n).map(|(i, l)| (i, l.exp())).collect(),
    }
}

/// Summarises per-position results.
pub fn summarise(positions: &[PositionDivergence]) -> DivergenceSummary {
    let n = positions.len();
    if n == 0 {
        return DivergenceSummary::default();
    }
    let nf = n as f64;
    DivergenceSummary {
        n_tokens: n,
        kl_mean: positions.iter().map(|p| p.kl).sum::<f64>() / nf,
        kl_max: positions.iter().map(|p| p.kl).fold(0.0, f64::max),
        top1_agreement: positions.iter().filter(|p| p.top1_agree).count() as f64 / nf,
        p_b_mean: positions.iter().map(|p| f64::from(p.p_b)).sum::<f64>() / nf,
        first_disagreement: positions.iter().position(|p| !p.top1_agree),
    }
}

/// Indices of the `n` positions with the largest KL, largest first.
pub fn most_divergent(kls: &[f64], n: usize) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..kls.len()).collect();
    idx.sort_by(|&a, &b| kls[b].total_cmp(&kls[a]).then(a.cmp(&b)));
    idx.truncate(n);
    idx
}

/// One CSV row per generated token.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CsvRow {
    /// Position in the output.
    pub index: usize,
    /// Token id.
    pub token_id: i32,
    /// Token text.
    pub piece: String,
    /// KL(A||B), nats.
    pub kl: f64,
    /// Same top-1.
    pub top1_agree: bool,
    /// p(token) under A.
    pub p_a: f32,
    /// p(token) under B.
    pub p_b: f32,
    /// B's first choice.
    pub b_top1: String,
}

impl From<&crate::protocol::TokenDivergence> for CsvRow {
    fn from(t: &crate::protocol::TokenDivergence) -> Self {
        Self {
            index: t.index,
            token_id: t.token_id,
            piece: t.piece.clone(),
            kl: t.kl,
            top1_agree: t.top1_agree,
            p_a: t.p_a,
            p_b: t.p_b,
            b_top1: t.top_b.first().map(|x| x.piece.clone()).unwrap_or_default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lp(logits: &[f32]) -> Vec<f32> {
        let mut out = Vec::new();
        logprobs::log_softmax(logits, &mut out);
        out
    }

    #[test]
    fn a_lane_against_itself_does_not_diverge() {
        let a = lp(&[1.0, 2.0, 0.5]);
        let d = compare(&a, &a, 1, 2);
        assert_eq!(d.kl, 0.0);
        assert!(d.top1_agree);
        assert_eq!(d.p_a, d.p_b);
        assert_eq!(d.top_a.len(), 2);
        let s = summarise(&[d]);
        assert_eq!(s.top1_agreement, 1.0);
        assert_eq!(s.first_disagreement, None);
    }

    #[test]
    fn different_tops_disagree_and_rank_first() {
        let a = lp(&[3.0, 0.0, 0.0]);
        let b = lp(&[0.0, 3.0, 0.0]);
        let same = compare(&a, &a, 0, 3);
        let diff = compare(&a, &b, 0, 3);
        assert!(!diff.top1_agree);
        assert!(diff.kl > 1.0, "{}", diff.kl);
        assert!(diff.p_b < diff.p_a);
        let s = summarise(&[same.clone(), diff.clone()]);
        assert_eq!(s.first_disagreement, Some(1));
        assert_eq!(most_divergent(&[same.kl, diff.kl, 0.5], 2), vec![1, 2]);
    }
}
