//! Shared output options of the evaluation commands: a table on stdout as text, JSON or CSV,
//! and with `--out DIR` every format at once plus charts and the run manifest.

use std::path::{Path, PathBuf};

use clap::Args;
use serde::Serialize;

use crate::eval::export;
use crate::eval::RunManifest;

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
    /// Prints `rows` in the chosen format (`text` is the human table) and writes `--out` files.
    /// `extra` is added to the JSON (per-token detail, scorecards' runs…).
    pub fn emit<T: Serialize>(
        &self,
        rows: &[T],
        text: &str,
        extra: serde_json::Value,
        manifest: &RunManifest,
        charts: &dyn Fn(&Path) -> Result<(), export::ExportError>,
    ) -> anyhow::Result<()> {
        let json = serde_json::json!({ "rows": rows, "detail": extra, "manifest": manifest });
        if self.json {
            println!("{}", export::json_string(&json)?);
        } else if self.csv {
            print!("{}", export::csv_string(rows)?);
        } else {
            print!("{text}");
        }
        if let Some(dir) = &self.out {
            export::write_file(&dir.join("results.json"), export::json_string(&json)?.as_bytes())?;
            export::write_file(&dir.join("results.csv"), export::csv_string(rows)?.as_bytes())?;
            export::write_file(&dir.join("manifest.json"), export::json_string(manifest)?.as_bytes())?;
            charts(dir)?;
            eprintln!("wrote {}", dir.display());
        }
        Ok(())
    }
}
