//! Shared output options of the evaluation commands: a table on stdout as text, JSON or CSV,
//! and with `--out DIR` every format at once plus charts and the run manifest.

use std::path::PathBuf;

use clap::Args;

use crate::eval::RunManifest;
use crate::lab::bundle::Results;

/// `--json`, `--csv`, `--out`.
#[derive(Debug, Args, Clone)]
pub struct OutputArgs {
    /// JSON on stdout.
    #[arg(long, conflicts_with = "csv")]
    pub json: bool,
    /// CSV on stdout (one row per result; field names match llama-bench's where they overlap).
    #[arg(long)]
    pub csv: bool,
    /// Also write results.json, results.csv, charts (PNG and SVG) and manifest.json here.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

impl OutputArgs {
    /// Prints `results` in the chosen format (`text` is the human table) and writes the whole
    /// bundle to `--out`.
    pub fn emit(&self, results: &Results, text: &str, manifest: &RunManifest) -> anyhow::Result<()> {
        if self.json {
            println!("{}", results.json(manifest)?);
        } else if self.csv {
            print!("{}", results.csv()?);
        } else {
            print!("{text}");
        }
        if let Some(dir) = &self.out {
            results.write(dir, manifest)?;
            eprintln!("wrote {}", dir.display());
        }
        Ok(())
    }
}
