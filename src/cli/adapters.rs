//! `nanolab adapters list|inspect|check|import|pin|unpin|note|add-folder`.

use std::path::PathBuf;

use anyhow::{bail, Context as _};
use clap::Subcommand;

use crate::adapters::peft::{self, OutType};
use crate::adapters::registry::{registry_path, Registry};
use crate::metrics::mib;

/// `adapters` subcommands.
#[derive(Debug, Subcommand)]
pub enum AdaptersCommand {
    /// List adapters in adapters/ and added folders (optionally checked against a model).
    List {
        /// Show compatibility with this model, and list only compatible adapters.
        #[arg(long)]
        model: Option<PathBuf>,
        /// JSON output.
        #[arg(long)]
        json: bool,
    },
    /// Show one adapter's header, sha256, tags and notes.
    Inspect {
        /// Adapter file.
        file: PathBuf,
        /// JSON output.
        #[arg(long)]
        json: bool,
    },
    /// Check adapters against a model from their headers alone (exit 1 if any does not fit).
    Check {
        /// Adapter files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Base model.
        #[arg(long)]
        model: PathBuf,
    },
    /// Convert a Hugging Face PEFT LoRA folder to a GGUF adapter for a base model.
    Import {
        /// Folder with adapter_config.json and adapter_model.safetensors.
        dir: PathBuf,
        /// Base model GGUF.
        #[arg(long)]
        model: PathBuf,
        /// Output file (default: adapters/<folder name>.gguf).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Tensor type.
        #[arg(long, value_enum, default_value = "f16")]
        r#type: OutType,
    },
    /// Bake a stack of adapters with scales into a new base model GGUF.
    Merge {
        /// Base model.
        #[arg(long)]
        model: PathBuf,
        /// Adapter, FILE or FILE:SCALE (repeatable, applied in order).
        #[arg(long = "adapter", short = 'a', required = true, value_parser = super::run::parse_adapter_arg)]
        adapters: Vec<crate::protocol::AdapterSpec>,
        /// Output file.
        #[arg(long)]
        out: PathBuf,
        /// Type of the merged tensors.
        #[arg(long, value_enum, default_value = "f16")]
        r#type: crate::adapters::merge::MergedType,
    },
    /// Pin an adapter to a model as a static adapter (always on for lanes on that model).
    Pin {
        /// Adapter file.
        file: PathBuf,
        /// Model file.
        #[arg(long)]
        model: PathBuf,
    },
    /// Remove a static pin.
    Unpin {
        /// Adapter file.
        file: PathBuf,
        /// Model file.
        #[arg(long)]
        model: PathBuf,
    },
    /// Set an adapter's tags and notes.
    Note {
        /// Adapter file.
        file: PathBuf,
        /// Tags (repeatable).
        #[arg(long = "tag")]
        tags: Vec<String>,
        /// Notes.
        #[arg(long, default_value = "")]
        notes: String,
    },
    /// Add a folder to scan for adapters.
    AddFolder {
        /// The folder.
        dir: PathBuf,
    },
    /// Write an adapter as a Hugging Face PEFT folder (--peft) or an MLX-LM adapter folder (--mlx).
    Export(super::adapters_out::ExportArgs),
    /// Lower an adapter's rank by SVD (f16 or q8_0) and measure what it costs (KLD, same top-1).
    Compress(super::adapters_out::CompressArgs),
}

fn file_name(p: &std::path::Path) -> anyhow::Result<String> {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .ok_or_else(|| anyhow::anyhow!("{}: not a file path", p.display()))
}

fn model_header(p: &std::path::Path) -> anyhow::Result<crate::gguf::GgufFile> {
    crate::gguf::validate_model_file(p).map_err(anyhow::Error::msg)
}

/// Runs an `adapters` subcommand.
pub fn dispatch(cmd: AdaptersCommand) -> anyhow::Result<()> {
    // Export and compress need no registry.
    let cmd = match cmd {
        AdaptersCommand::Export(a) => return super::adapters_out::export_cmd(&a),
        AdaptersCommand::Compress(a) => return super::adapters_out::compress_cmd(&a),
        other => other,
    };
    let mut reg = Registry::load(registry_path())?;
    match cmd {
        AdaptersCommand::List { model, json } => {
            let header = model.as_deref().map(model_header).transpose()?;
            let mut entries = reg.list(header.as_ref());
            if header.is_some() {
                entries.retain(|e| matches!(e.compatible, Some(Ok(()))));
            }
            reg.save()?;
            if json {
                println!("{}", serde_json::to_string_pretty(&entries)?);
                return Ok(());
            }
            if entries.is_empty() {
                println!("no adapters found in {:?}", reg.folders());
            }
            for e in &entries {
                let ranks: Vec<String> = e.ranks.iter().map(u64::to_string).collect();
                println!(
                    "{:<28} {:<8} r{:<4} alpha {:<5} {:>3} tensors ({}) {:>9}  {}{}",
                    e.name,
                    e.architecture.as_deref().unwrap_or("?"),
                    ranks.join("/"),
                    e.alpha.map_or_else(|| "?".into(), |a| a.to_string()),
                    e.targets,
                    e.target_kinds.join(","),
                    mib(e.file_bytes),
                    &e.sha256[..12.min(e.sha256.len())],
                    if e.static_for.is_empty() {
                        String::new()
                    } else {
                        format!("  static for {}", e.static_for.join(", "))
                    }
                );
            }
            Ok(())
        }
        AdaptersCommand::Inspect { file, json } => {
            let e = reg.entry(&file, None).map_err(anyhow::Error::msg)?;
            reg.save()?;
            if json {
                println!("{}", serde_json::to_string_pretty(&e)?);
            } else {
                let summary = crate::gguf::Summary::of(&crate::gguf::read(&file)?);
                print!("{}", super::inspect::render(&summary));
                println!("  sha256          {}", e.sha256);
                if let Some(s) = &e.source {
                    println!("  made from       {} ({}): {}", s.file, s.format, s.conversion);
                }
                println!("  tags            {}", e.tags.join(", "));
                println!("  notes           {}", e.notes);
                if !e.static_for.is_empty() {
                    println!("  static for      {}", e.static_for.join(", "));
                }
            }
            Ok(())
        }
        AdaptersCommand::Check { files, model } => {
            let header = model_header(&model)?;
            let mut bad = 0;
            for f in &files {
                match crate::adapters::validate_adapter_file(f, &header) {
                    Ok(_) => println!("ok    {}", f.display()),
                    Err(e) => {
                        bad += 1;
                        println!("FAIL  {e}");
                    }
                }
            }
            if bad > 0 {
                bail!("{bad} of {} adapters do not fit {}", files.len(), model.display());
            }
            Ok(())
        }
        AdaptersCommand::Import {
            dir,
            model,
            out,
            r#type,
        } => {
            let header = model_header(&model)?;
            let out = match out {
                Some(o) => o,
                None => crate::adapters::registry::adapters_dir().join(format!("{}.gguf", file_name(&dir)?)),
            };
            let report = peft::import(&dir, &header, &out, r#type)?;
            for w in &report.warnings {
                eprintln!("warning: {w}");
            }
            println!(
                "wrote {} ({} tensors adapted, rank {}, alpha {}, {})",
                report.out.display(),
                report.targets,
                report.rank,
                report.alpha,
                mib(report.file_bytes)
            );
            Ok(())
        }
        AdaptersCommand::Merge {
            model,
            adapters,
            out,
            r#type,
        } => {
            let stack: Vec<(PathBuf, f32)> = adapters.into_iter().map(|a| (a.path, a.scale)).collect();
            let mut bar = super::models::progress_bar();
            let report = crate::adapters::merge::merge(&model, &stack, &out, r#type, &mut |f| {
                bar(crate::models::FetchProgress {
                    stage: "merging".into(),
                    done_bytes: (f * 1000.0) as u64,
                    total_bytes: Some(1000),
                })
            })?;
            super::models::end_progress_line();
            println!(
                "wrote {} ({} tensors merged, {})",
                report.out.display(),
                report.tensors_merged,
                mib(report.file_bytes)
            );
            Ok(())
        }
        AdaptersCommand::Pin { file, model } => {
            let header = model_header(&model)?;
            crate::adapters::validate_adapter_file(&file, &header).map_err(anyhow::Error::msg)?;
            let key = file_name(&model)?;
            let pins = reg.file.static_pins.entry(key.clone()).or_default();
            if !pins.contains(&file) {
                pins.push(file.clone());
            }
            reg.save()?;
            println!("{} is now a static adapter for {key}", file.display());
            Ok(())
        }
        AdaptersCommand::Unpin { file, model } => {
            let key = file_name(&model)?;
            let pins = reg
                .file
                .static_pins
                .get_mut(&key)
                .context("no static adapters for this model")?;
            let before = pins.len();
            pins.retain(|p| p != &file);
            if pins.len() == before {
                bail!("{} is not pinned to {key}", file.display());
            }
            reg.save()?;
            Ok(())
        }
        AdaptersCommand::Note { file, tags, notes } => {
            reg.entry(&file, None).map_err(anyhow::Error::msg)?;
            reg.file
                .notes
                .insert(file.clone(), crate::adapters::registry::UserNotes { tags, notes });
            reg.save()?;
            Ok(())
        }
        AdaptersCommand::Export(_) | AdaptersCommand::Compress(_) => Ok(()),
        AdaptersCommand::AddFolder { dir } => {
            if !dir.is_dir() {
                bail!("{}: not a folder", dir.display());
            }
            if !reg.file.folders.contains(&dir) {
                reg.file.folders.push(dir);
            }
            reg.save()?;
            Ok(())
        }
    }
}
