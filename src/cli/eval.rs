//! `nanolab eval ppl|kld|prompts`: quality of models (and adapters) over a text against a
//! reference, and prompt-set scorecards across lanes and seeds.

use std::path::{Path, PathBuf};

use anyhow::bail;
use clap::{Args, Subcommand};

use super::output::OutputArgs;
use super::run::{parse_adapter_arg, StaticPins};
use crate::engine::EngineClient;
use crate::eval::chart::{self, LanePoint};
use crate::eval::prompts::{self, PromptRun, PromptSet};
use crate::eval::table::{ladder_points, quality_table, QualityRow};
use crate::eval::texts::{read_text, DEFAULT_TEXT};
use crate::eval::RunManifest;
use crate::gguf::validate_model_file;
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

fn lane(id: LaneId, path: &Path, adapters: &[AdapterSpec], n_ctx: u32, threads: Option<u32>) -> LaneSpec {
    LaneSpec {
        lane: id,
        model: ModelSpec {
            path: path.to_path_buf(),
            gpu_layers: None,
        },
        n_ctx,
        threads,
        adapters: adapters.to_vec(),
    }
}

fn adapters_label(a: &[AdapterSpec]) -> String {
    a.iter()
        .map(|a| format!("{}:{}", a.path.display(), a.scale))
        .collect::<Vec<_>>()
        .join(";")
}

/// Sends a request and waits for its result, showing progress on stderr.
pub fn call(client: &mut EngineClient, req: &Request) -> anyhow::Result<JobResult> {
    let tty = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let end = client.call(req, |ev| {
        if let Event::Progress { stage, fraction, .. } = ev {
            if tty {
                eprint!("\r{:3.0}% {stage:<60}", fraction * 100.0);
            }
        }
    })?;
    if tty {
        eprint!("\r{:70}\r", "");
    }
    match end {
        Event::Done { result, .. } => Ok(result),
        Event::Error { message, .. } => bail!(message),
        other => bail!("unexpected engine reply: {other:?}"),
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
    let mut headers = Vec::new();
    for m in args.model.iter().chain(reference.iter()) {
        headers.push(validate_model_file(m).map_err(anyhow::Error::msg)?);
    }
    let mut manifest = RunManifest::new(
        if with_reference { "eval kld" } else { "eval ppl" },
        serde_json::json!({ "n_ctx": args.ctx, "chunks": args.chunks, "threads": args.threads, "tg": args.tg,
                            "adapters": args.adapters, "reference_adapters": args.reference_adapters }),
        Vec::new(),
        crate::engine::llama_build(),
        crate::engine::cpu_features(),
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
    let mut client = EngineClient::new(None);
    let mut rows = Vec::new();
    let pins = StaticPins::load(args.no_static);
    let stack = |model: &Path, user: &[AdapterSpec], manifest: &mut RunManifest| -> anyhow::Result<Vec<AdapterSpec>> {
        let adapters = pins.apply(model, user);
        for a in &adapters[..adapters.len() - user.len()] {
            manifest.add_file(&a.path, "static adapter")?;
        }
        Ok(adapters)
    };
    let ref_lane = match reference.as_ref() {
        Some(r) => Some(lane(
            1,
            r,
            &stack(r, &args.reference_adapters, &mut manifest)?,
            args.ctx,
            args.threads,
        )),
        None => None,
    };
    for (i, m) in args.model.iter().enumerate() {
        eprintln!("{}", m.display());
        let spec = lane(0, m, &stack(m, &args.adapters, &mut manifest)?, args.ctx, args.threads);
        let job = client.next_job();
        let result = call(
            &mut client,
            &Request::Eval {
                job,
                lane: spec.clone(),
                reference: ref_lane.clone(),
                text: text.clone(),
                n_ctx: args.ctx,
                max_chunks: args.chunks,
            },
        )?;
        let JobResult::Eval {
            ppl,
            kld,
            eval_tokens_per_sec,
            ..
        } = result
        else {
            bail!("unexpected engine reply: {result:?}");
        };
        let mut avg_ts = 0.0;
        if args.tg > 0 {
            let job = client.next_job();
            let bench_lane = LaneSpec {
                n_ctx: args.ctx.max(args.tg + 16),
                ..spec.clone()
            };
            if let JobResult::Bench { tg_tokens_per_sec, .. } = call(
                &mut client,
                &Request::Bench {
                    job,
                    lane: bench_lane,
                    n_prompt: 0,
                    n_gen: args.tg,
                    seed: 1,
                },
            )? {
                avg_ts = tg_tokens_per_sec;
            }
        }
        // Free this model before the next rung loads.
        let job = client.next_job();
        call(&mut client, &Request::UnloadModel { job, path: m.clone() })?;
        rows.push(QualityRow::new(
            m,
            &headers[i],
            &adapters_label(&args.adapters),
            &ppl,
            kld.as_deref(),
            eval_tokens_per_sec,
            avg_ts,
        ));
    }
    let text_table = quality_table(&rows);
    let points = ladder_points(&rows);
    let title = match &reference {
        Some(r) => format!(
            "quality vs {}",
            r.file_name()
                .map_or_else(String::new, |n| n.to_string_lossy().into_owned())
        ),
        None => "perplexity".to_string(),
    };
    args.output
        .emit(&rows, &text_table, serde_json::Value::Null, &manifest, &|dir| {
            if with_reference {
                chart::write_ladder(&dir.join("ladder.png"), &title, &points)?;
                chart::write_ladder(&dir.join("ladder.svg"), &title, &points)?;
            }
            Ok(())
        })
}

/// `eval prompts` arguments.
#[derive(Debug, Args)]
pub struct PromptsArgs {
    /// JSONL prompt set.
    #[arg(long)]
    pub set: PathBuf,
    /// A lane: MODEL[+ADAPTER[:SCALE]]... ; repeat for more lanes. The first is the reference.
    #[arg(long = "lane", short = 'l', required = true)]
    pub lanes: Vec<String>,
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
    let (model, user) = parse_lane(arg).map_err(anyhow::Error::msg)?;
    let adapters = pins.apply(&model, &user);
    let header = validate_model_file(&model).map_err(anyhow::Error::msg)?;
    manifest.add_file(&model, "model")?;
    for a in &adapters {
        crate::adapters::validate_adapter_file(&a.path, &header).map_err(anyhow::Error::msg)?;
        manifest.add_file(&a.path, "adapter")?;
    }
    Ok(lane(id, &model, &adapters, n_ctx, threads))
}

fn lane_label(model: &Path, adapters: &[AdapterSpec]) -> String {
    let stem = |p: &Path| {
        p.file_stem()
            .map_or_else(String::new, |s| s.to_string_lossy().into_owned())
    };
    let mut s = stem(model);
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
    let mut manifest = RunManifest::new(
        "eval prompts",
        serde_json::json!({ "lanes": args.lanes, "temperature": args.temp, "max_tokens": args.max_tokens,
                            "n_ctx": args.ctx, "threads": args.threads }),
        args.seeds.clone(),
        crate::engine::llama_build(),
        crate::engine::cpu_features(),
    );
    manifest.add_file(&args.set, "prompt set")?;
    let mut lanes = Vec::new();
    let pins = StaticPins::load(args.no_static);
    for (i, l) in args.lanes.iter().enumerate() {
        let spec = checked_lane(i as LaneId, l, args.ctx, args.threads, &pins, &mut manifest)?;
        let mut label = lane_label(&spec.model.path, &spec.adapters);
        if lanes.iter().any(|(l, _): &(String, LaneSpec)| *l == label) {
            label = format!("{label}#{}", i + 1);
        }
        lanes.push((label, spec));
    }
    let mut client = EngineClient::new(None);
    let mut runs: Vec<PromptRun> = Vec::new();
    let total = lanes.len() * set.cases.len() * args.seeds.len();
    let mut done = 0;
    for (label, spec) in &lanes {
        for (ci, case) in set.cases.iter().enumerate() {
            for &seed in &args.seeds {
                done += 1;
                if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
                    eprint!("\r{done}/{total} {label} {}{:20}", case.id, "");
                }
                let prompt = case.to_prompt();
                let job = client.next_job();
                let result = call(
                    &mut client,
                    &Request::Generate {
                        job,
                        lane: spec.clone(),
                        prompt,
                        sampling: Sampling {
                            temperature: args.temp,
                            seed,
                            max_tokens: case.max_tokens.unwrap_or(args.max_tokens),
                            ..Sampling::default()
                        },
                        top_n: 0,
                    },
                )
                .map_err(|e| anyhow::anyhow!("{label}, prompt {}: {e}", case.id))?;
                let JobResult::Generated { stats } = result else {
                    bail!("unexpected engine reply: {result:?}");
                };
                runs.push(PromptRun {
                    lane: label.clone(),
                    prompt_id: case.id.clone(),
                    seed,
                    passed: set.check(ci, &stats.text),
                    ttft_ms: stats.ttft_ms,
                    decode_tokens_per_sec: stats.decode_tokens_per_sec,
                    n_gen: stats.generated_tokens,
                    same_as_reference: false,
                    similarity_to_reference: 0.0,
                    tags: case.tags.join(";"),
                    text: stats.text,
                });
            }
        }
    }
    if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        eprintln!();
    }
    prompts::compare_to_reference(&mut runs, &lanes[0].0);
    let cards = prompts::scorecards(&runs);
    let mut table = String::from(
        "| lane | runs | pass rate | TTFT ms mean / p95 | decode tok/s mean / p95 (sd over seeds) | tokens | same as ref | similarity | pass by tag |\n|---|---:|---:|---:|---:|---:|---:|---:|---|\n",
    );
    for c in &cards {
        table.push_str(&format!(
            "| {} | {} | {:.0} % ± {:.0} | {:.1} / {:.1} | {:.1} / {:.1} (± {:.1}) | {:.1} | {:.0} % | {:.2} | {} |\n",
            c.lane,
            c.runs,
            c.pass_rate * 100.0,
            c.pass_rate_sd * 100.0,
            c.ttft_ms_mean,
            c.ttft_ms_p95,
            c.decode_tps_mean,
            c.decode_tps_p95,
            c.decode_tps_sd,
            c.n_gen_mean,
            c.agreement * 100.0,
            c.similarity,
            c.pass_by_tag
        ));
    }
    let points: Vec<LanePoint> = cards
        .iter()
        .map(|c| LanePoint {
            label: c.lane.clone(),
            ttft_ms_mean: c.ttft_ms_mean,
            ttft_ms_p95: c.ttft_ms_p95,
            decode_tps_mean: c.decode_tps_mean,
        })
        .collect();
    args.output
        .emit(&cards, &table, serde_json::json!({ "runs": runs }), &manifest, &|dir| {
            let runs_csv = crate::eval::export::csv_string(&runs)?;
            crate::eval::export::write_file(&dir.join("runs.csv"), runs_csv.as_bytes())?;
            chart::write_lanes(&dir.join("lanes.png"), "prompt set: latency per lane", &points)?;
            chart::write_lanes(&dir.join("lanes.svg"), "prompt set: latency per lane", &points)
        })
}
