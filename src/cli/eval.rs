//! `nanolab eval ppl|kld|prompts`: quality of models (and adapters) over a text against a
//! reference, and prompt-set scorecards across lanes and seeds.

use std::path::{Path, PathBuf};

use anyhow::bail;
use clap::{Args, Subcommand};

use super::output::OutputArgs;
use super::run::{parse_adapter_arg, StaticPins};
use crate::engine::EngineClient;
use crate::eval::prompts::PromptSet;
use crate::eval::table::quality_table;
use crate::eval::texts::{read_text, DEFAULT_TEXT};
use crate::eval::RunManifest;
use crate::gguf::validate_model_file;
use crate::lab::bundle::Results;
use crate::lab::prompts::{scorecard_table, PromptSampling, PromptSetJob};
use crate::lab::quality::{adapters_label, QualityItem, QualityJob, QualitySettings};
use crate::lab::{self, Job};
use crate::protocol::*;

/// `eval` subcommands.
#[derive(Debug, Subcommand)]
pub enum EvalCommand {
    /// Perplexity of one or more models over a text (llama-perplexity's definition).
    Ppl(QualityArgs),
    /// KL divergence, same-top-1 rate, Δp and PPL ratio of models against a reference model.
    Kld(QualityArgs),
    /// Run a JSONL prompt set on several lanes with several seeds; scorecard per lane.
    Prompts(PromptsArgs),
}

/// Arguments of `eval ppl` and `eval kld`.
#[derive(Debug, Args)]
pub struct QualityArgs {
    /// Model(s) to evaluate; repeat for a ladder.
    #[arg(long, short, required = true)]
    pub model: Vec<PathBuf>,
    /// Adapter for the evaluated models, FILE[:SCALE]; repeat to stack.
    #[arg(long = "adapter", short = 'a', value_parser = parse_adapter_arg)]
    pub adapters: Vec<AdapterSpec>,
    /// Reference model for `kld` (F16 or the best you have).
    #[arg(long, short)]
    pub reference: Option<PathBuf>,
    /// Adapter for the reference, FILE[:SCALE]; repeat to stack.
    #[arg(long = "reference-adapter", value_parser = parse_adapter_arg)]
    pub reference_adapters: Vec<AdapterSpec>,
    /// Text file (default: the shipped assets/eval/gpl-3.0.txt).
    #[arg(long)]
    pub text: Option<PathBuf>,
    /// Tokens per chunk (llama-perplexity's -c).
    #[arg(long, short = 'c', default_value_t = 512)]
    pub ctx: u32,
    /// At most this many chunks (llama-perplexity's --chunks).
    #[arg(long)]
    pub chunks: Option<u32>,
    /// Tokens of a decode benchmark per model for the tok/s column (0 = skip).
    #[arg(long, default_value_t = 32)]
    pub tg: u32,
    /// CPU threads.
    #[arg(long)]
    pub threads: Option<u32>,
    /// Output options.
    #[command(flatten)]
    pub output: OutputArgs,
    /// Do not apply the adapters pinned to a model as static in the registry.
    #[arg(long)]
    pub no_static: bool,
}

/// A local lane on `path` with `adapters`.
pub(super) fn lane(id: LaneId, path: &Path, adapters: &[AdapterSpec], n_ctx: u32, threads: Option<u32>) -> LaneSpec {
    LaneSpec {
        threads,
        ..LaneSpec::local(id, path, n_ctx, adapters.to_vec())
    }
}

pub fn dispatch(cmd: EvalCommand) -> anyhow::Result<()> {
    match cmd {
        EvalCommand::Ppl(a) => quality(&a, false),
        EvalCommand::Kld(a) => quality(&a, true),
        EvalCommand::Prompts(a) => prompt_set(&a),
    }
}

fn quality(args: &QualityArgs, with_reference: bool) -> anyhow::Result<()> {
    let reference = match (with_reference, &args.reference) {
        (true, Some(r)) => Some(r.clone()),
        (true, None) => bail!("eval kld needs --reference MODEL (e.g. an F16 made by `nanolab quantize -t F16`)"),
        (false, Some(_)) => bail!("--reference belongs to `eval kld`; `eval ppl` scores each model alone"),
        (false, None) => None,
    };
    let text = read_text(args.text.as_deref()).map_err(anyhow::Error::msg)?;
    for m in args.model.iter().chain(reference.iter()) {
        validate_model_file(m).map_err(anyhow::Error::msg)?;
    }
    let mut manifest = crate::lab::bundle::manifest(
        if with_reference { "eval kld" } else { "eval ppl" },
        serde_json::json!({ "n_ctx": args.ctx, "chunks": args.chunks, "threads": args.threads, "tg": args.tg,
                            "adapters": args.adapters, "reference_adapters": args.reference_adapters }),
        Vec::new(),
    );
    for m in &args.model {
        manifest.add_file(m, "model")?;
    }
    if let Some(r) = &reference {
        manifest.add_file(r, "reference")?;
    }
    for a in args.adapters.iter().chain(&args.reference_adapters) {
        manifest.add_file(&a.path, "adapter")?;
    }
    match &args.text {
        Some(t) => manifest.add_file(t, "text")?,
        None => manifest.files.push(crate::eval::manifest::FileRecord {
            path: "assets/eval/gpl-3.0.txt (built in)".into(),
            role: "text".into(),
            sha256: crate::models::sha256_bytes(DEFAULT_TEXT.as_bytes()),
            bytes: DEFAULT_TEXT.len() as u64,
        }),
    }
    let pins = StaticPins::load(args.no_static);
    let mut stack = |model: &Path, user: &[AdapterSpec]| -> anyhow::Result<Vec<AdapterSpec>> {
        let adapters = pins.apply(model, user);
        for a in &adapters[..adapters.len() - user.len()] {
            manifest.add_file(&a.path, "static adapter")?;
        }
        Ok(adapters)
    };
    let reference = match reference.as_ref() {
        Some(r) => Some(lane(1, r, &stack(r, &args.reference_adapters)?, args.ctx, args.threads)),
        None => None,
    };
    let mut items = Vec::new();
    for m in &args.model {
        let spec = lane(0, m, &stack(m, &args.adapters)?, args.ctx, args.threads);
        // The column names the user's adapters; static pins are in the manifest.
        items.push(QualityItem {
            test: spec,
            adapters_label: adapters_label(&args.adapters),
        });
    }
    let title = reference
        .as_ref()
        .map(|r| format!("quality vs {}", file_name(&r.model.path)));
    let settings = QualitySettings {
        text,
        n_ctx: args.ctx,
        max_chunks: args.chunks,
        tg: args.tg,
        keep_loaded: Vec::new(),
    };
    let mut job = QualityJob::new(items, reference, settings);
    run_job(&mut job)?;
    let text_table = quality_table(&job.rows);
    let results = Results::Quality {
        rows: job.rows,
        ladder_title: title,
    };
    args.output.emit(&results, &text_table, &manifest)
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned())
}

/// Drives a lab job to its end on a new engine, showing its progress on stderr when that is a
/// terminal.
pub fn run_job(job: &mut dyn Job) -> anyhow::Result<()> {
    let tty = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let mut client = EngineClient::new(None);
    let result = lab::run_to_end(&mut client, job, &mut |p| {
        if tty {
            eprint!("\r{}/{} {:3.0}% {:<60}", p.done, p.total, p.fraction * 100.0, p.label);
        }
    });
    if tty {
        eprint!("\r{:80}\r", "");
    }
    Ok(result?)
}

/// `eval prompts` arguments.
#[derive(Debug, Args)]
pub struct PromptsArgs {
    /// JSONL prompt set.
    #[arg(long)]
    pub set: PathBuf,
    /// A lane: MODEL[+ADAPTER[:SCALE]]... , or a remote one URL#NAME[+ADAPTER[:SCALE]]...
    /// (an adapter by the file stem the endpoint serves it under); repeat for more lanes. The
    /// first is the reference.
    #[arg(long = "lane", short = 'l', required = true)]
    pub lanes: Vec<String>,
    /// Runs at once (local lanes stream together in the engine; remote runs go out
    /// concurrently); greedy results are the same as with 1. Unset: as many as the local
    /// lanes' contexts fit in a quarter of free memory, at most 8 (1 with only remote lanes).
    #[arg(long, visible_alias = "concurrency")]
    pub parallel: Option<usize>,
    /// Another endpoint serving the remote lanes' model under the same name; repeat. Runs are
    /// spread over all of them and one that fails on an unreachable or overloaded endpoint is
    /// tried on another.
    #[arg(long = "endpoint")]
    pub endpoints: Vec<String>,
    /// Environment variable holding the remote lanes' API key.
    #[arg(long)]
    pub api_key_env: Option<String>,
    /// Seeds, comma-separated; each prompt runs once per seed on every lane.
    #[arg(long, value_delimiter = ',', default_value = "1,2,3")]
    pub seeds: Vec<u32>,
    /// Temperature (0 = greedy: every seed gives the same output).
    #[arg(long, default_value_t = 0.7)]
    pub temp: f32,
    /// Default token limit (a prompt's max_tokens wins).
    #[arg(long, short = 'n', default_value_t = 64)]
    pub max_tokens: u32,
    /// Context length per lane.
    #[arg(long, default_value_t = 2048)]
    pub ctx: u32,
    /// CPU threads.
    #[arg(long)]
    pub threads: Option<u32>,
    /// Output options.
    #[command(flatten)]
    pub output: OutputArgs,
    /// Do not apply the adapters pinned to a model as static in the registry.
    #[arg(long)]
    pub no_static: bool,
}

/// Parses `MODEL[+ADAPTER[:SCALE]]...`.
pub fn parse_lane(s: &str) -> Result<(PathBuf, Vec<AdapterSpec>), String> {
    let mut parts = s.split('+');
    let model = parts.next().filter(|m| !m.is_empty()).ok_or("a lane needs a model")?;
    let adapters = parts.map(parse_adapter_arg).collect::<Result<Vec<_>, _>>()?;
    Ok((PathBuf::from(model), adapters))
}

/// A `--lane`-style argument parsed, its model and adapters checked (before any engine starts)
/// and recorded in the manifest, as the engine lane `id`.
pub fn checked_lane(
    id: LaneId,
    arg: &str,
    n_ctx: u32,
    threads: Option<u32>,
    pins: &StaticPins,
    manifest: &mut RunManifest,
) -> anyhow::Result<LaneSpec> {
    if let Some((url, rest)) = arg.split_once('#').filter(|(u, _)| u.contains("://")) {
        let (name, adapters) = parse_lane(rest).map_err(anyhow::Error::msg)?;
        return super::run::remote_lane(id, url, name.to_str(), None, &adapters);
    }
    let (model, adapters) = parse_lane(arg).map_err(anyhow::Error::msg)?;
    let mut spec = lane(id, &model, &adapters, n_ctx, threads);
    check_local(&mut spec, pins, manifest)?;
    Ok(spec)
}

/// A local lane with its static pins put under its adapters, its model and adapters checked
/// (before any engine starts) and recorded in the manifest.
pub fn check_local(spec: &mut LaneSpec, pins: &StaticPins, manifest: &mut RunManifest) -> anyhow::Result<()> {
    spec.adapters = pins.apply(&spec.model.path, &spec.adapters);
    let header = validate_model_file(&spec.model.path).map_err(anyhow::Error::msg)?;
    manifest.add_file(&spec.model.path, "model")?;
    for a in &spec.adapters {
        crate::adapters::validate_adapter_file(&a.path, &header).map_err(anyhow::Error::msg)?;
        manifest.add_file(&a.path, "adapter")?;
    }
    Ok(())
}

fn lane_label(spec: &LaneSpec) -> String {
    let stem = |p: &Path| {
        p.file_stem()
            .map_or_else(String::new, |s| s.to_string_lossy().into_owned())
    };
    let (model, adapters) = (&spec.model.path, &spec.adapters);
    let mut s = match &spec.remote {
        Some(r) => format!(
            "{}#{}",
            r.url.split("://").last().unwrap_or(&r.url),
            stem(Path::new(&r.model))
        ),
        None => stem(model),
    };
    for a in adapters {
        s.push_str(&format!("+{}", stem(&a.path)));
        if (a.scale - 1.0).abs() > f32::EPSILON {
            s.push_str(&format!(":{}", a.scale));
        }
    }
    s
}

fn prompt_set(args: &PromptsArgs) -> anyhow::Result<()> {
    let text =
        std::fs::read_to_string(&args.set).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", args.set.display()))?;
    let set = PromptSet::parse(&text).map_err(|e| anyhow::anyhow!("{}: {e}", args.set.display()))?;
    if args.seeds.is_empty() {
        bail!("give at least one seed");
    }
    let mut manifest = crate::lab::bundle::manifest(
        "eval prompts",
        serde_json::json!({ "lanes": args.lanes, "temperature": args.temp, "max_tokens": args.max_tokens,
                            "n_ctx": args.ctx, "threads": args.threads, "endpoints": args.endpoints }),
        args.seeds.clone(),
    );
    manifest.add_file(&args.set, "prompt set")?;
    let mut lanes = Vec::new();
    let pins = StaticPins::load(args.no_static);
    for (i, l) in args.lanes.iter().enumerate() {
        let mut spec = checked_lane(i as LaneId, l, args.ctx, args.threads, &pins, &mut manifest)?;
        if let Some(r) = &mut spec.remote {
            r.api_key_env.clone_from(&args.api_key_env);
        }
        let mut label = lane_label(&spec);
        if lanes.iter().any(|(l, _): &(String, LaneSpec)| *l == label) {
            label = format!("{label}#{}", i + 1);
        }
        lanes.push((label, spec));
    }
    let sampling = PromptSampling {
        temperature: args.temp,
        max_tokens: args.max_tokens,
    };
    let mut job = PromptSetJob::new(set, lanes, &args.seeds, sampling);
    job.fan_out(&args.endpoints)
        .map_err(|e| anyhow::anyhow!("--endpoint: {e} (a remote lane is -l URL#NAME)"))?;
    let job = with_parallel(job, args.parallel, &mut manifest);
    run_prompt_set(job, &args.output, &manifest)
}

/// `--parallel N`, or the lab's choice from memory and contexts (said on stderr); recorded in
/// the manifest either way.
pub fn with_parallel(job: PromptSetJob, asked: Option<usize>, manifest: &mut RunManifest) -> PromptSetJob {
    let (job, n, why) = job.parallel_or_auto(asked);
    if let Some(why) = why {
        eprintln!("{n} run(s) at once ({why}; --parallel sets it)");
    }
    if let Some(settings) = manifest.settings.as_object_mut() {
        settings.insert("parallel".into(), n.into());
    }
    job
}

/// Runs a prompt set to its end and prints its scorecards (and writes the bundle with `--out`).
pub fn run_prompt_set(mut job: PromptSetJob, output: &OutputArgs, manifest: &RunManifest) -> anyhow::Result<()> {
    run_job(&mut job)?;
    let table = scorecard_table(&job.scorecards);
    let results = Results::Prompts {
        cards: job.scorecards,
        runs: job.runs,
    };
    output.emit(&results, &table, manifest)
}
