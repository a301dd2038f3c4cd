//! `nanolab scene run|check|pack` and `nanolab arena stats`: a scene replayed headless (every
//! lane on every prompt, with the export bundle), its files verified, packed into one zip; the
//! arena's votes as win rates.

use std::path::PathBuf;

use anyhow::bail;
use clap::{Args, Subcommand};

use super::eval::{check_local, run_prompt_set};
use super::output::OutputArgs;
use super::run::StaticPins;
use crate::eval::arena;
use crate::lab::bundle::Results;
use crate::lab::prompts::PromptSetJob;
use crate::protocol::{LaneId, LaneSpec, Sampling};
use crate::scene::{self, Scene, SceneError};

/// `scene` subcommands.
#[derive(Debug, Subcommand)]
pub enum SceneCommand {
    /// Replay a scene headless: every lane on every prompt, with its own sampling.
    Run(SceneRunArgs),
    /// Verify that every file a scene names is there with its recorded sha256.
    Check(SceneCheckArgs),
    /// Bundle a scene with its adapters (and models with --with-models) into one zip.
    Pack(ScenePackArgs),
}

/// `scene run` arguments.
#[derive(Debug, Args)]
pub struct SceneRunArgs {
    /// The scene file.
    pub file: PathBuf,
    /// Runs at once (greedy results are the same as with 1). Unset: as many as the local
    /// lanes' contexts fit in a quarter of free memory, at most 8 (1 with only remote lanes).
    #[arg(long)]
    pub parallel: Option<usize>,
    /// Output options.
    #[command(flatten)]
    pub output: OutputArgs,
    /// Do not apply the adapters pinned to a model as static in the registry.
    #[arg(long)]
    pub no_static: bool,
}

/// `scene check` arguments.
#[derive(Debug, Args)]
pub struct SceneCheckArgs {
    /// The scene file.
    pub file: PathBuf,
    /// The files found (or the problems) as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `scene pack` arguments.
#[derive(Debug, Args)]
pub struct ScenePackArgs {
    /// The scene file.
    pub file: PathBuf,
    /// The zip to write.
    #[arg(long)]
    pub out: PathBuf,
    /// Put the model files in too (else the scene finds them by name, hash and catalog id).
    #[arg(long)]
    pub with_models: bool,
}

/// `arena` subcommands.
#[derive(Debug, Subcommand)]
pub enum ArenaCommand {
    /// Win rates (95 % Wilson), Bradley-Terry ratings and per-tag results of a scene's votes.
    Stats(ArenaStatsArgs),
}

/// `arena stats` arguments.
#[derive(Debug, Args)]
pub struct ArenaStatsArgs {
    /// A scene file holding votes (Save scene… in the window), or the window's state file.
    pub file: PathBuf,
    /// Output options.
    #[command(flatten)]
    pub output: OutputArgs,
}

/// Runs a `scene` subcommand.
pub fn dispatch(cmd: SceneCommand) -> anyhow::Result<()> {
    match cmd {
        SceneCommand::Run(a) => run(&a),
        SceneCommand::Check(a) => check(&a),
        SceneCommand::Pack(a) => pack(&a),
    }
}

/// Runs an `arena` subcommand.
pub fn arena(cmd: ArenaCommand) -> anyhow::Result<()> {
    match cmd {
        ArenaCommand::Stats(a) => arena_stats(&a),
    }
}

fn load(file: &std::path::Path) -> anyhow::Result<(Scene, scene::Resolved)> {
    let s = Scene::read(file)?;
    let resolved = scene::check(&s, file).map_err(SceneError::Files)?;
    Ok((s, resolved))
}

fn check(args: &SceneCheckArgs) -> anyhow::Result<()> {
    let s = Scene::read(&args.file)?;
    match scene::check(&s, &args.file) {
        Ok(resolved) if args.json => {
            let lanes: Vec<_> = resolved
                .lanes
                .iter()
                .map(|l| serde_json::json!({ "model": l.model, "adapters": l.adapters.iter().map(|a| &a.0).collect::<Vec<_>>() }))
                .collect();
            println!(
                "{}",
                serde_json::to_string_pretty(
                    &serde_json::json!({ "ok": true, "lanes": lanes, "prompt_set": resolved.prompt_set })
                )?
            );
            Ok(())
        }
        Ok(resolved) => {
            let files = resolved
                .lanes
                .iter()
                .map(|l| usize::from(l.model.is_some()) + l.adapters.len())
                .sum::<usize>()
                + usize::from(resolved.prompt_set.is_some());
            println!(
                "{}: ok, {} lanes, {files} files found with their recorded sha256",
                args.file.display(),
                resolved.lanes.len()
            );
            Ok(())
        }
        Err(problems) => {
            if args.json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&serde_json::json!({ "ok": false, "problems": problems }))?
                );
            }
            Err(SceneError::Files(problems).into())
        }
    }
}

fn run(args: &SceneRunArgs) -> anyhow::Result<()> {
    let (s, resolved) = load(&args.file)?;
    let set = s
        .prompt_set(resolved.prompt_set.as_deref())
        .map_err(|e| anyhow::anyhow!("{}: {e}", args.file.display()))?;
    let mut manifest = crate::lab::bundle::manifest(
        "scene run",
        serde_json::json!({ "scene": args.file, "title": s.title }),
        s.lanes.iter().map(|l| l.sampling.seed).collect(),
    );
    manifest.add_file(&args.file, "scene")?;
    if let Some(p) = &resolved.prompt_set {
        manifest.add_file(p, "prompt set")?;
    }
    let pins = StaticPins::load(args.no_static);
    let mut lanes: Vec<(String, LaneSpec, Sampling)> = Vec::new();
    for (i, label) in s.lane_labels().into_iter().enumerate() {
        let Some(mut spec) = scene::lane_spec(&s, &resolved, i, i as LaneId) else {
            bail!("lane {} of the scene has no model", i + 1);
        };
        if spec.remote.is_none() {
            check_local(&mut spec, &pins, &mut manifest)?;
        }
        lanes.push((label, spec, s.lanes[i].sampling.clone()));
    }
    let job = super::eval::with_parallel(
        PromptSetJob::with_lane_sampling(set, lanes),
        args.parallel,
        &mut manifest,
    );
    run_prompt_set(job, &args.output, &manifest)
}

fn pack(args: &ScenePackArgs) -> anyhow::Result<()> {
    let report = scene::pack::pack(&args.file, &args.out, args.with_models)?;
    println!(
        "wrote {} ({} bytes): {}",
        args.out.display(),
        report.zip_bytes,
        report.entries.join(", ")
    );
    Ok(())
}

fn arena_stats(args: &ArenaStatsArgs) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(&args.file).map_err(|e| anyhow::anyhow!("{}: {e}", args.file.display()))?;
    let value: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| anyhow::anyhow!("{}: not JSON: {e}", args.file.display()))?;
    // A scene keeps its votes under "arena"; the window's state under "scene"."arena"."record".
    let record = if value.get("nanolab_scene").is_some() {
        Scene::parse(&text)
            .map_err(|e| anyhow::anyhow!("{}: {e}", args.file.display()))?
            .arena
            .unwrap_or_default()
    } else {
        match value.pointer("/scene/arena/record") {
            Some(r) => serde_json::from_value::<arena::ArenaRecord>(r.clone())
                .map_err(|e| anyhow::anyhow!("{}: bad arena record: {e}", args.file.display()))?,
            None => bail!(
                "{}: neither a scene nor a window state with an arena",
                args.file.display()
            ),
        }
    };
    if record.votes.is_empty() {
        bail!("{}: no arena votes yet", args.file.display());
    }
    let stats = arena::stats(&record.votes);
    let table = arena::stats_table(&stats);
    let manifest = crate::lab::bundle::manifest(
        "arena stats",
        serde_json::json!({ "file": args.file, "seed": record.seed }),
        Vec::new(),
    );
    let results = Results::Arena {
        stats,
        votes: record.votes,
    };
    args.output.emit(&results, &table, &manifest)
}
