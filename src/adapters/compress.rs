//! Making an adapter small for shipping: each pair's product scale·B·A truncated to a lower rank
//! by SVD (the best approximation of that rank; exact when the rank is not lowered), stored in
//! f16 or q8_0. What the truncation keeps is reported as the share of the squared singular values
//! (the delta's energy); what it costs in the model's output is measured by the lab (KLD and
//! same-top-1 against the original adapter).

use serde::Serialize;

use super::lora_file::{LoraAdapter, LoraPair};
use super::peft::Matrix;
use super::svd::{self, Dense};

/// One compressed level.
#[derive(Debug, Clone)]
pub struct Compressed {
    /// The adapter at the new rank.
    pub adapter: LoraAdapter,
    /// What was kept.
    pub stats: CompressStats,
}

/// What a truncation kept.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct CompressStats {
    /// Target rank.
    pub rank: usize,
    /// Rank before (largest pair).
    pub rank_before: usize,
    /// Parameters after.
    pub n_params: usize,
    /// Parameters before.
    pub n_params_before: usize,
    /// Σ kept σ² / Σ σ² over every pair: the share of the deltas' squared Frobenius norm kept.
    pub energy_kept: f64,
    /// ‖Δ − Δₖ‖ / ‖Δ‖ over every pair (Frobenius).
    pub relative_error: f64,
}

fn dense(m: &Matrix) -> Dense {
    Dense {
        rows: m.rows,
        cols: m.cols,
        data: m.data.iter().map(|&v| f64::from(v)).collect(),
    }
}

fn matrix(d: &Dense, factor: f64) -> Matrix {
    Matrix {
        rows: d.rows,
        cols: d.cols,
        data: d.data.iter().map(|&v| (v * factor) as f32).collect(),
    }
}

/// `adapter` truncated to `rank` (pairs of lower rank keep theirs). The new alpha equals the new
/// rank, so llama.cpp's per-pair scale alpha / rank is 1 and the old scale lives in the factors.
pub fn compress(adapter: &LoraAdapter, rank: usize) -> Compressed {
    let rank = rank.max(1);
    if rank >= adapter.max_rank() {
        // Nothing to truncate: the factors as they are (refactoring them would change nothing but
        // the rounding, which the engine's f16 arithmetic can see).
        let mut same = adapter.clone();
        same.metadata.retain(|(k, _)| !k.starts_with("nanolab.source."));
        return Compressed {
            stats: CompressStats {
                rank: adapter.max_rank(),
                rank_before: adapter.max_rank(),
                n_params: adapter.n_params(),
                n_params_before: adapter.n_params(),
                energy_kept: 1.0,
                relative_error: 0.0,
            },
            adapter: same,
        };
    }
    let (mut kept, mut total) = (0.0_f64, 0.0_f64);
    let mut pairs = std::collections::BTreeMap::new();
    for (name, p) in &adapter.pairs {
        let r = p.rank();
        let scale = if r > 0 { adapter.alpha / r as f64 } else { 0.0 };
        let k = rank.min(r).max(1);
        let t = svd::truncate(&dense(&p.b), &dense(&p.a), scale, k);
        total += t.sigma.iter().map(|s| s * s).sum::<f64>();
        kept += t.sigma.iter().take(k).map(|s| s * s).sum::<f64>();
        // llama.cpp will scale this pair by alpha / k = rank / k: fold the inverse into B.
        let fold = k as f64 / rank as f64;
        pairs.insert(
            name.clone(),
            LoraPair {
                a: matrix(&t.a, 1.0),
                b: matrix(&t.b, fold),
            },
        );
    }
    let mut out = LoraAdapter {
        arch: adapter.arch.clone(),
        alpha: rank as f64,
        metadata: adapter.metadata.clone(),
        pairs,
        stored_as: adapter.stored_as.clone(),
    };
    out.metadata.retain(|(k, _)| !k.starts_with("nanolab.source."));
    let energy_kept = if total > 0.0 { kept / total } else { 1.0 };
    Compressed {
        stats: CompressStats {
            rank,
            rank_before: adapter.max_rank(),
            n_params: out.n_params(),
            n_params_before: adapter.n_params(),
            energy_kept,
            relative_error: (1.0 - energy_kept).max(0.0).sqrt(),
        },
        adapter: out,
    }
}

/// One level written to disk.
#[derive(Debug, Clone)]
pub struct Written {
    /// The file.
    pub path: std::path::PathBuf,
    /// Its size.
    pub file_bytes: u64,
    /// What the truncation kept.
    pub stats: CompressStats,
}

/// Compresses the adapter at `adapter_path` to each of `ranks`, writing `path_for(rank)` as `ty`
/// with its provenance, each checked against `base` like a dropped adapter (a file that does not
/// fit is removed and the error names it).
pub fn write_levels(
    adapter_path: &std::path::Path,
    ranks: &[usize],
    ty: super::peft::OutType,
    base: &crate::gguf::GgufFile,
    path_for: &dyn Fn(usize) -> std::path::PathBuf,
) -> Result<Vec<Written>, String> {
    let original = LoraAdapter::read(adapter_path).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    for &rank in ranks {
        if rank == 0 {
            return Err("a rank must be at least 1".into());
        }
        let path = path_for(rank);
        if path == adapter_path {
            return Err(format!("{}: the output would overwrite the adapter", path.display()));
        }
        let c = compress(&original, rank);
        let how = format!(
            "nanolab adapters compress: rank {} -> {rank} by SVD, {}",
            c.stats.rank_before,
            super::peft::type_name(ty)
        );
        let extra = super::export::provenance("gguf", &how, adapter_path);
        let file_bytes = c.adapter.write(&path, ty, &extra).map_err(|e| e.to_string())?;
        if let Err(e) = super::validate_adapter_file(&path, base) {
            let _ = std::fs::remove_file(&path);
            return Err(format!(
                "{}: the compressed adapter does not fit the model: {e}",
                path.display()
            ));
        }
        out.push(Written {
            path,
            file_bytes,
            stats: c.stats,
        });
    }
    Ok(out)
}

/// The ranks worth trying below `rank`: halving down to 1 (8 → 4, 2, 1).
pub fn halvings(rank: usize) -> Vec<usize> {
    let mut out = Vec::new();
    let mut r = rank / 2;
    while r >= 1 {
        out.push(r);
        r /= 2;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(rows: usize, cols: usize, r: usize, seed: u32) -> LoraPair {
        let v = |n: usize, s: u32| -> Vec<f32> {
            (0..n)
                .map(|i| (((i as u32).wrapping_mul(2_654_435_761) ^ s) % 1000) as f32 / 500.0 - 1.0)
                .collect()
        };
        LoraPair {
            a: Matrix {
                rows: r,
                cols,
                data: v(r * cols, seed),
            },
            b: Matrix {
                rows,
                cols: r,
                data: v(rows * r, seed + 7),
            },
        }
    }

    /// scale·B·A of a pair, as llama.cpp applies it.
    fn delta(p: &LoraPair, alpha: f64) -> Vec<f64> {
        let scale = alpha / p.rank() as f64;
        let (m, n, r) = (p.b.rows, p.a.cols, p.rank());
        let mut out = vec![0.0; m * n];
        for i in 0..m {
            for j in 0..n {
                out[i * n + j] = scale
                    * (0..r)
                        .map(|k| f64::from(p.b.data[i * r + k]) * f64::from(p.a.data[k * n + j]))
                        .sum::<f64>();
            }
        }
        out
    }

    fn adapter() -> LoraAdapter {
        let mut pairs = std::collections::BTreeMap::new();
        pairs.insert("blk.0.attn_q.weight".to_string(), pair(24, 16, 8, 1));
        pairs.insert("blk.0.attn_v.weight".to_string(), pair(8, 16, 8, 2));
        LoraAdapter {
            arch: "llama".into(),
            alpha: 16.0,
            metadata: Vec::new(),
            pairs,
            stored_as: "F32".into(),
        }
    }

    #[test]
    fn keeping_the_rank_keeps_every_delta_and_lowering_it_loses_energy() {
        let a = adapter();
        let same = compress(&a, 8);
        assert!((same.stats.energy_kept - 1.0).abs() < 1e-9);
        assert_eq!(same.adapter.pairs, a.pairs, "nothing to truncate: the same factors");
        // A rank between the pairs' (one pair of rank 8, the other 4 after this): the product of
        // the truncated pair is kept exactly when its rank is not lowered.
        let mut mixed = a.clone();
        let small = compress(&a, 4).adapter.pairs["blk.0.attn_v.weight"].clone();
        mixed.pairs.insert("blk.0.attn_v.weight".into(), small);
        let refit = compress(&mixed, 6);
        assert_eq!(refit.adapter.pairs["blk.0.attn_v.weight"].rank(), 4);
        let want = delta(&mixed.pairs["blk.0.attn_v.weight"], mixed.alpha);
        let got = delta(&refit.adapter.pairs["blk.0.attn_v.weight"], refit.adapter.alpha);
        let err = want.iter().zip(&got).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max);
        assert!(err < 1e-4, "a pair below the target rank keeps its product: {err}");
        for (name, p) in &a.pairs {
            let want = delta(p, a.alpha);
            let got = delta(&same.adapter.pairs[name], same.adapter.alpha);
            let err = want.iter().zip(&got).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max);
            assert!(err < 1e-4, "{name}: {err}");
        }
        let low = compress(&a, 2);
        assert_eq!(low.adapter.max_rank(), 2);
        assert!(low.stats.energy_kept < 1.0 && low.stats.energy_kept > 0.0);
        assert!((low.stats.relative_error - (1.0 - low.stats.energy_kept).sqrt()).abs() < 1e-12);
        assert_eq!(low.stats.n_params, 2 * (16 + 24) + 2 * (16 + 8));
        // Measured independently: the rank-2 delta's error equals the reported one.
        let (mut err2, mut norm2) = (0.0, 0.0);
        for (name, p) in &a.pairs {
            let want = delta(p, a.alpha);
            let got = delta(&low.adapter.pairs[name], low.adapter.alpha);
            err2 += want.iter().zip(&got).map(|(x, y)| (x - y).powi(2)).sum::<f64>();
            norm2 += want.iter().map(|x| x * x).sum::<f64>();
        }
        assert!(((err2 / norm2).sqrt() - low.stats.relative_error).abs() < 1e-5);
    }
}
