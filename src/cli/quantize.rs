//! `nanolab quantize`: make one or more quantization levels of a model (a ladder).

use std::io::Write;
use std::path::PathBuf;

use clap::Args;

use crate::lab::ladder::{Existing, Ladder, LadderSpec};
use crate::quant::{QuantOutcome, QuantType};

/// `quantize` arguments.
#[derive(Debug, Args)]
pub struct QuantizeArgs {
    /// Source model (F32/F16/BF16/Q8_0; others need --allow-requantize).
    #[arg(long, short)]
    pub model: PathBuf,
    /// Levels, comma-separated (Q8_0,Q6_K,Q5_K_M,Q4_K_M,Q4_0,Q3_K_M,Q2_K, F16, …).
    #[arg(long = "type", short = 't', value_delimiter = ',', required = true)]
    pub types: Vec<String>,
    /// Folder for the outputs (default: the source's folder); named `<stem>.<TYPE>.gguf`.
    #[arg(long)]
    pub out_dir: Option<PathBuf>,
    /// Quantize from an already-quantized source (e.g. Q4_1 → F16 as a reference stand-in).
    #[arg(long)]
    pub allow_requantize: bool,
    /// Replace existing outputs.
    #[arg(long)]
    pub overwrite: bool,
    /// Threads (default: all cores).
    #[arg(long)]
    pub threads: Option<u32>,
    /// JSON summary on stdout.
    #[arg(long)]
    pub json: bool,
}

pub fn quantize(args: &QuantizeArgs) -> anyhow::Result<()> {
    let types = args
        .types
        .iter()
        .map(|t| QuantType::parse(t))
        .collect::<Result<Vec<_>, _>>()
        .map_err(anyhow::Error::msg)?;
    let dir = args.out_dir.clone().unwrap_or_else(|| {
        args.model
            .parent()
            .map_or_else(|| PathBuf::from("."), std::path::Path::to_path_buf)
    });
    let mut ladder = Ladder::start(LadderSpec {
        input: args.model.clone(),
        out_dir: dir,
        levels: types,
        allow_requantize: args.allow_requantize,
        existing: if args.overwrite {
            Existing::Overwrite
        } else {
            Existing::Refuse
        },
        threads: args.threads,
        exe: None,
    })
    .map_err(anyhow::Error::msg)?;
    let tty = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let (mut last_pct, mut reported) = (-1i32, 0);
    ladder
        .wait(&mut |p, made| {
            // One line per level made, as it is made.
            for o in &made[reported..] {
                eprintln!(
                    "{}{}: {} ({:.1} MiB, {:.2} bits/weight, {:.1} s){:20}",
                    if tty { "\r" } else { "" },
                    o.quant_type,
                    o.output.display(),
                    o.bytes as f64 / 1048576.0,
                    o.bits_per_weight,
                    o.seconds,
                    ""
                );
                last_pct = -1;
            }
            reported = made.len();
            let pct = (p.fraction * 100.0) as i32;
            if tty && pct != last_pct && p.done < p.total {
                last_pct = pct;
                eprint!("\r{pct:3}% {:<48}", p.label);
                let _ = std::io::stderr().flush();
            }
        })
        .map_err(anyhow::Error::msg)?;
    let outcomes: &[QuantOutcome] = &ladder.made;
    if args.json {
        println!("{}", serde_json::to_string_pretty(outcomes)?);
    }
    Ok(())
}
