//! The quality table: one row per evaluated model (or lane), as the CLI prints and exports it
//! and the window shows it.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::chart::LadderPoint;
use super::quality::{KldReport, PplReport};
use crate::gguf::GgufFile;
use crate::quant::types::dominant_type;

/// One evaluated model: a row of the quality table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QualityRow {
    /// Model file.
    pub model_filename: String,
    /// Dominant tensor type (`Q4_0`).
    pub model_type: String,
    /// File size, bytes (llama-bench's `model_size`).
    pub model_size: u64,
    /// Parameters (llama-bench's `model_n_params`).
    pub model_n_params: u64,
    /// Bits per weight.
    pub bpw: f64,
    /// Adapters applied, `file:scale;…`.
    pub adapters: String,
    /// Tokens per chunk.
    pub n_ctx: usize,
    /// Chunks evaluated.
    pub n_chunks: usize,
    /// Scored tokens.
    pub n_tokens: usize,
    /// Perplexity.
    pub ppl: f64,
    /// Its uncertainty.
    pub ppl_unc: f64,
    /// Reference perplexity (kld only).
    pub ppl_base: Option<f64>,
    /// ln(PPL/PPL(base)).
    pub ln_ppl_ratio: Option<f64>,
    /// Mean KLD, nats/token.
    pub kld_mean: Option<f64>,
    /// Its uncertainty.
    pub kld_unc: Option<f64>,
    /// 99th percentile KLD.
    pub kld_p99: Option<f32>,
    /// Largest KLD.
    pub kld_max: Option<f32>,
    /// Same top-1 rate, 0-1.
    pub same_top_p: Option<f64>,
    /// Mean Δp (fraction).
    pub dp_mean: Option<f64>,
    /// RMS Δp (fraction).
    pub dp_rms: Option<f64>,
    /// Prompt-processing tokens/s during the evaluation.
    pub eval_ts: f64,
    /// Decode tokens/s (llama-bench's `avg_ts` for a tg test), 0 when skipped.
    pub avg_ts: f64,
}

impl QualityRow {
    /// A row from a model's header and its evaluation.
    pub fn new(
        model: &Path,
        header: &GgufFile,
        adapters: &str,
        ppl: &PplReport,
        kld: Option<&KldReport>,
        eval_ts: f64,
        avg_ts: f64,
    ) -> Self {
        let summary = crate::gguf::Summary::of(header);
        Self {
            model_filename: model.display().to_string(),
            model_type: dominant_type(header),
            model_size: header.file_bytes,
            model_n_params: summary.parameters,
            bpw: summary.bits_per_weight,
            adapters: adapters.to_string(),
            n_ctx: ppl.n_ctx,
            n_chunks: ppl.n_chunks,
            n_tokens: ppl.n_tokens,
            ppl: ppl.ppl,
            ppl_unc: ppl.ppl_unc,
            ppl_base: kld.map(|k| k.ppl_base),
            ln_ppl_ratio: kld.map(|k| k.ln_ppl_ratio),
            kld_mean: kld.map(|k| k.kld_mean),
            kld_unc: kld.map(|k| k.kld_unc),
            kld_p99: kld.map(|k| k.kld_p99),
            kld_max: kld.map(|k| k.kld_max),
            same_top_p: kld.map(|k| k.same_top_p),
            dp_mean: kld.map(|k| k.dp_mean),
            dp_rms: kld.map(|k| k.dp_rms),
            eval_ts,
            avg_ts,
        }
    }

    /// The row's label: quant type, plus adapters when there are any.
    pub fn label(&self) -> String {
        if self.adapters.is_empty() {
            self.model_type.clone()
        } else {
            let names: Vec<String> = self
                .adapters
                .split(';')
                .map(|a| {
                    let (path, scale) = a.rsplit_once(':').unwrap_or((a, "1"));
                    let stem = Path::new(path)
                        .file_stem()
                        .map_or_else(String::new, |s| s.to_string_lossy().into_owned());
                    if scale == "1" {
                        stem
                    } else {
                        format!("{stem}:{scale}")
                    }
                })
                .collect();
            format!("{}+{}", self.model_type, names.join("+"))
        }
    }
}

/// Chart points of a quality table.
pub fn ladder_points(rows: &[QualityRow]) -> Vec<LadderPoint> {
    rows.iter()
        .map(|r| LadderPoint {
            label: r.label(),
            size_mib: r.model_size as f64 / 1048576.0,
            kld_mean: r.kld_mean.unwrap_or(0.0),
            tg_tokens_per_sec: r.avg_ts,
        })
        .collect()
}

/// The human table of quality rows.
pub fn quality_table(rows: &[QualityRow]) -> String {
    let mut s = String::from(
        "| model | type | size MiB | bpw | PPL | PPL(Q)/PPL(base) | mean KLD | KLD p99 | same top-1 | RMS Δp | tg tok/s |\n|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for r in rows {
        let name = Path::new(&r.model_filename)
            .file_name()
            .map_or_else(|| r.model_filename.clone(), |n| n.to_string_lossy().into_owned());
        let opt = |v: Option<f64>, f: &dyn Fn(f64) -> String| v.map_or_else(|| "-".into(), f);
        s.push_str(&format!(
            "| {name} | {} | {:.1} | {:.2} | {:.4} ± {:.4} | {} | {} | {} | {} | {} | {:.1} |\n",
            r.model_type,
            r.model_size as f64 / 1048576.0,
            r.bpw,
            r.ppl,
            r.ppl_unc,
            opt(r.ln_ppl_ratio, &|v| format!("{:.4}", v.exp())),
            opt(r.kld_mean, &|v| format!("{v:.6}")),
            opt(r.kld_p99.map(f64::from), &|v| format!("{v:.5}")),
            opt(r.same_top_p, &|v| format!("{:.2} %", v * 100.0)),
            opt(r.dp_rms, &|v| format!("{:.3} %", v * 100.0)),
            r.avg_ts
        ));
    }
    s
}
