//! `nanolab adapters export` (to a PEFT or MLX-LM folder) and `nanolab adapters compress` (lower
//! rank by SVD, f16 or q8_0, with the cost measured as KLD and same-top-1 against the original).

use std::path::{Path, PathBuf};

use anyhow::bail;
use clap::Args;
use serde::Serialize;

use super::eval::run_job;
use crate::adapters::compress::{write_levels, CompressStats};
use crate::adapters::export;
use crate::adapters::lora_file::LoraAdapter;
use crate::adapters::peft::{type_name, OutType};
use crate::eval::chart::{write_size_chart, SizeChart, SizePoint};
use crate::eval::texts::read_text;
use crate::lab::quality::{QualityItem, QualityJob, QualitySettings};
use crate::protocol::{AdapterSpec, LaneSpec};

/// `adapters export` arguments.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// The GGUF adapter.
    pub adapter: PathBuf,
    /// Write a Hugging Face PEFT folder here.
    #[arg(long, required_unless_present = "mlx")]
    pub peft: Option<PathBuf>,
    /// Write an MLX-LM adapter folder here.
    #[arg(long)]
    pub mlx: Option<PathBuf>,
    /// The base model (needed for llama-family models, whose Q/K rows are permuted per head).
    #[arg(long)]
    pub model: Option<PathBuf>,
}

/// `adapters compress` arguments.
#[derive(Debug, Args)]
pub struct CompressArgs {
    /// The GGUF adapter.
    pub adapter: PathBuf,
    /// The base model it is for (checked against, and measured on).
    #[arg(long)]
    pub model: PathBuf,
    /// Target rank(s), comma-separated (`--ranks 8,4,2,1`); truncation is exact when a rank is
    /// not lowered.
    #[arg(long = "rank", visible_alias = "ranks", value_delimiter = ',', required = true)]
    pub ranks: Vec<usize>,
    /// Tensor type of the result (q8_0: tensors whose rows are not a multiple of 32 stay f16).
    #[arg(long, value_enum, default_value = "f16")]
    pub r#type: OutType,
    /// Output: a .gguf file for one rank, else a folder (`<stem>.r<R>.<type>.gguf` in it).
    #[arg(long)]
    pub out: PathBuf,
    /// Evaluation text for the quality cost (default: the shipped one).
    #[arg(long)]
    pub text: Option<PathBuf>,
    /// Tokens per chunk.
    #[arg(long, short = 'c', default_value_t = 512)]
    pub ctx: u32,
    /// At most this many chunks of the text.
    #[arg(long)]
    pub chunks: Option<u32>,
    /// Write the files without measuring them.
    #[arg(long)]
    pub no_eval: bool,
    /// JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

/// Runs `adapters export`.
pub fn export_cmd(args: &ExportArgs) -> anyhow::Result<()> {
    let adapter = LoraAdapter::read(&args.adapter)?;
    let base = args
        .model
        .as_deref()
        .map(crate::gguf::validate_model_file)
        .transpose()
        .map_err(anyhow::Error::msg)?;
    if let Some(b) = &base {
        crate::adapters::validate_adapter_file(&args.adapter, b).map_err(anyhow::Error::msg)?;
    }
    for (dir, is_peft) in [(&args.peft, true), (&args.mlx, false)] {
        let Some(dir) = dir else { continue };
        let report = if is_peft {
            export::to_peft(&adapter, base.as_ref(), dir)?
        } else {
            export::to_mlx(&adapter, base.as_ref(), dir)?
        };
        println!(
            "wrote {} ({} modules, rank {}, {} {}): {}",
            report.dir.display(),
            report.tensors,
            report.rank,
            if is_peft { "lora_alpha" } else { "scale" },
            report.alpha_or_scale,
            report
                .files
                .iter()
                .map(|f| f.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    Ok(())
}

/// One compressed level as reported.
#[derive(Debug, Clone, Serialize)]
pub struct CompressRow {
    /// The file written.
    pub file: PathBuf,
    /// Tensor type.
    pub r#type: String,
    /// File size.
    pub file_bytes: u64,
    /// The original's size.
    pub original_bytes: u64,
    /// What the truncation kept.
    #[serde(flatten)]
    pub stats: CompressStats,
    /// Mean KLD of base + this against base + the original, nats/token.
    pub kld_mean: Option<f64>,
    /// Its 99th percentile.
    pub kld_p99: Option<f32>,
    /// Same top-1 token as base + the original, 0-1.
    pub same_top_p: Option<f64>,
    /// ln(PPL / PPL of base + the original).
    pub ln_ppl_ratio: Option<f64>,
}

fn lane(id: u64, model: &Path, adapter: &Path, n_ctx: u32) -> LaneSpec {
    let stack = [AdapterSpec {
        path: adapter.to_path_buf(),
        scale: 1.0,
    }];
    super::eval::lane(id, model, &stack, n_ctx, None)
}

/// Runs `adapters compress`.
pub fn compress_cmd(args: &CompressArgs) -> anyhow::Result<()> {
    if args.ranks.contains(&0) {
        bail!("a rank must be at least 1");
    }
    let base = crate::gguf::validate_model_file(&args.model).map_err(anyhow::Error::msg)?;
    crate::adapters::validate_adapter_file(&args.adapter, &base).map_err(anyhow::Error::msg)?;
    let original_bytes = std::fs::metadata(&args.adapter)?.len();
    let single = args.ranks.len() == 1 && args.out.extension().is_some_and(|e| e == "gguf");
    let stem = crate::scene::file_stem(&args.adapter);
    let path_for = |rank: usize| {
        if single {
            args.out.clone()
        } else {
            args.out.join(format!("{stem}.r{rank}.{}.gguf", type_name(args.r#type)))
        }
    };
    let written =
        write_levels(&args.adapter, &args.ranks, args.r#type, &base, &path_for).map_err(anyhow::Error::msg)?;
    let mut rows: Vec<CompressRow> = written
        .into_iter()
        .map(|w| CompressRow {
            file: w.path,
            r#type: type_name(args.r#type).into(),
            file_bytes: w.file_bytes,
            original_bytes,
            stats: w.stats,
            kld_mean: None,
            kld_p99: None,
            same_top_p: None,
            ln_ppl_ratio: None,
        })
        .collect();
    if !args.no_eval {
        let text = read_text(args.text.as_deref()).map_err(anyhow::Error::msg)?;
        let items = rows
            .iter()
            .map(|r| QualityItem::new(lane(0, &args.model, &r.file, args.ctx)))
            .collect();
        let reference = lane(1, &args.model, &args.adapter, args.ctx);
        let settings = QualitySettings {
            text,
            n_ctx: args.ctx,
            max_chunks: args.chunks,
            tg: 0,
            keep_loaded: Vec::new(),
        };
        let mut job = QualityJob::new(items, Some(reference), settings);
        run_job(&mut job)?;
        for (row, q) in rows.iter_mut().zip(&job.rows) {
            row.kld_mean = q.kld_mean;
            row.kld_p99 = q.kld_p99;
            row.same_top_p = q.same_top_p;
            row.ln_ppl_ratio = q.ln_ppl_ratio;
        }
        let chart_dir = if single {
            args.out.parent().map_or_else(|| PathBuf::from("."), Path::to_path_buf)
        } else {
            args.out.clone()
        };
        let title = format!("{stem}: size against quality cost (vs the original)");
        let chart = SizeChart {
            title: &title,
            x_desc: "file size (KiB)",
            left_desc: "mean KLD vs original (nats/token)",
            right_desc: "same top-1 as original (%)",
            points: rows
                .iter()
                .map(|r| SizePoint {
                    label: format!("r{} {}", r.stats.rank, r.r#type),
                    size: r.file_bytes as f64 / 1024.0,
                    left: r.kld_mean.unwrap_or(0.0),
                    right: r.same_top_p.unwrap_or(0.0) * 100.0,
                })
                .collect(),
        };
        for ext in ["png", "svg"] {
            let p = chart_dir.join(format!("{stem}.compression.{ext}"));
            write_size_chart(&p, &chart)?;
            eprintln!("wrote {}", p.display());
        }
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    println!(
        "| file | rank | type | size | smaller | energy kept | KLD mean | KLD p99 | same top-1 |\n|---|---:|---|---:|---:|---:|---:|---:|---:|"
    );
    for r in &rows {
        let opt = |v: Option<f64>, f: &dyn Fn(f64) -> String| v.map_or_else(|| "-".to_string(), f);
        println!(
            "| {} | {} → {} | {} | {} | {:.1}× | {:.2} % | {} | {} | {} |",
            r.file.display(),
            r.stats.rank_before,
            r.stats.rank,
            r.r#type,
            crate::metrics::mib(r.file_bytes),
            r.original_bytes as f64 / r.file_bytes.max(1) as f64,
            r.stats.energy_kept * 100.0,
            opt(r.kld_mean, &|v| format!("{v:.5}")),
            opt(r.kld_p99.map(f64::from), &|v| format!("{v:.4}")),
            opt(r.same_top_p, &|v| format!("{:.1} %", v * 100.0)),
        );
    }
    Ok(())
}
