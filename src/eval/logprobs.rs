//! Log-probabilities from raw logits, computed the way llama.cpp's `llama-perplexity` does
//! (max-shifted `expf`, sum in f64, `log` of the sum in f32).

/// Fills `out` with log-softmax(`logits`) and returns the index of the largest logit (the first
/// one on ties, as llama-perplexity picks it).
pub fn log_softmax(logits: &[f32], out: &mut Vec<f32>) -> usize {
    out.clear();
    let (imax, max) = argmax(logits);
    let sum_exp: f64 = logits.iter().map(|&l| f64::from((l - max).exp())).sum();
    let log_sum_exp = sum_exp.ln() as f32;
    out.extend(logits.iter().map(|&l| l - max - log_sum_exp));
    imax
}

/// Index and value of the largest element (first on ties); (0, -inf) when empty.
pub fn argmax(values: &[f32]) -> (usize, f32) {
    let mut best = (0, f32::NEG_INFINITY);
    for (i, &v) in values.iter().enumerate() {
        if i == 0 || v > best.1 {
            best = (i, v);
        }
    }
    best
}

/// Negative log-likelihood of `token` under `logits` (llama-perplexity's `max + log(Σexp) - logit`).
pub fn nll(logits: &[f32], token: usize) -> f64 {
    let (_, max) = argmax(logits);
    let sum_exp: f64 = logits.iter().map(|&l| f64::from((l - max).exp())).sum();
    let log_sum_exp = sum_exp.ln() as f32;
    logits
        .get(token)
        .map_or(f64::INFINITY, |&l| f64::from(max + log_sum_exp - l))
}

/// The `n` most likely entries of a log-probability vector, best first.
pub fn top_n(log_probs: &[f32], n: usize) -> Vec<(usize, f32)> {
    let mut best: Vec<(usize, f32)> = Vec::with_capacity(n + 1);
    if n == 0 {
        return best;
    }
    for (i, &l) in log_probs.iter().enumerate() {
        if best.len() < n || l > best[best.len() - 1].1 {
            let at = best.partition_point(|&(_, bl)| bl >= l);
            best.insert(at, (i, l));
            best.truncate(n);
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_softmax_normalises_and_finds_the_top() {
        let mut out = Vec::new();
        let top = log_softmax(&[1.0, 3.0, 2.0, 3.0], &mut out);
        assert_eq!(top, 1, "first of the tied maxima");
        let total: f64 = out.iter().map(|&l| f64::from(l).exp()).sum();
        assert!((total - 1.0).abs() < 1e-6, "{total}");
        assert!((nll(&[1.0, 3.0, 2.0, 3.0], 2) - f64::from(-out[2])).abs() < 1e-6);
    }

    #[test]
    fn top_n_is_sorted_best_first() {
        let t = top_n(&[-3.0, -0.5, -2.0, -0.1, -5.0], 3);
        assert_eq!(t.iter().map(|x| x.0).collect::<Vec<_>>(), vec![3, 1, 2]);
        assert!(top_n(&[1.0], 0).is_empty());
    }
}
