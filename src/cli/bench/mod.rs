//! `nanolab bench`: llama-bench's pp/tg tests through nanolab's engine, alternating with a bare
//! llama-cpp-2 loop in the same run (ratio printed), plus what adapters, swaps and lanes cost.

use std::path::PathBuf;

use anyhow::bail;
use clap::{Args, ValueEnum};
use serde::Serialize;

use crate::engine::baseline::Baseline;
use crate::engine::EngineClient;
use crate::metrics;
use crate::protocol::*;

mod batched;
mod costs;
use costs::{random_lora, rank_chart, swap_and_memory, through_the_stack};

/// Output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Markdown table.
    Md,
    /// CSV.
    Csv,
    /// JSON.
    Json,
}

/// `bench` arguments.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Model GGUF.
    #[arg(long, short)]
    pub model: PathBuf,
    /// Prompt tokens for the pp test.
    #[arg(short = 'p', long = "n-prompt", default_value_t = 512)]
    pub n_prompt: u32,
    /// Generated tokens for the tg test.
    #[arg(short = 'n', long = "n-gen", default_value_t = 128)]
    pub n_gen: u32,
    /// Repetitions.
    #[arg(short = 'r', long, default_value_t = 5)]
    pub reps: u32,
    /// CPU threads (default: all cores, up to 8).
    #[arg(long)]
    pub threads: Option<u32>,
    /// Layers to offload to the GPU, for nanolab and the baseline alike (default: all when a GPU
    /// backend exists, 0 on CPU builds).
    #[arg(long)]
    pub gpu_layers: Option<u32>,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value = "md")]
    pub output: Format,
    /// Skip the bare llama-cpp-2 baseline.
    #[arg(long)]
    pub no_baseline: bool,
    /// Also measure decode cost per adapter rank (comma-separated ranks; random LoRAs on q/k/v/o).
    #[arg(long, value_delimiter = ',')]
    pub adapter_ranks: Vec<u32>,
    /// Also measure hot-swap vs model reload, and memory with 1, 2 and 4 lanes.
    #[arg(long)]
    pub swap_and_memory: bool,
    /// Also measure decode as the CLI sees it: token events arriving over the child-process
    /// protocol, vs the engine's own timing of the same runs.
    #[arg(long)]
    pub stack: bool,
    /// Write a chart of decode tok/s by adapter rank (needs --adapter-ranks) to this PNG file.
    #[arg(long)]
    pub png: Option<PathBuf>,
    /// Do not apply the adapters pinned to a model as static in the registry.
    #[arg(long)]
    pub no_static: bool,
    /// Instead of the tests above, llama-batched-bench's: for each batch size (comma-separated),
    /// that many sequences of -p prompt and -n generated tokens decoded together.
    #[arg(long, value_delimiter = ',')]
    pub parallel: Vec<u32>,
}

/// One result row, named as llama-bench names its fields where they overlap.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// What ran: nanolab engine, llama-cpp-2 baseline, or an adapter variant.
    pub runner: String,
    /// llama.cpp's build: ggml version and commit as compiled in.
    pub build_commit: String,
    /// Backends: CPU, or the GPU backend this binary was built with.
    pub backends: String,
    /// CPU features llama.cpp was built to use (`AVX2,FMA,…`; native or portable build).
    pub cpu_features: String,
    /// Layers offloaded (999: all).
    pub n_gpu_layers: u32,
    /// Model file.
    pub model_filename: String,
    /// Model bytes.
    pub model_size: u64,
    /// Parameters.
    pub model_n_params: u64,
    /// Threads.
    pub n_threads: u32,
    /// Prompt tokens (pp test) or 0.
    pub n_prompt: u32,
    /// Generated tokens (tg test) or 0.
    pub n_gen: u32,
    /// Mean tokens/s.
    pub avg_ts: f64,
    /// Standard deviation of tokens/s.
    pub stddev_ts: f64,
    /// Every repetition's tokens/s.
    pub samples_ts: Vec<f64>,
    /// Mean time of one test, ns.
    pub avg_ns: f64,
    /// Standard deviation of that time, ns.
    pub stddev_ns: f64,
    /// Every repetition's time, ns.
    pub samples_ns: Vec<f64>,
}

fn bench_rep(
    c: &mut EngineClient,
    spec: &LaneSpec,
    n_prompt: u32,
    n_gen: u32,
    seed: u64,
) -> anyhow::Result<(f64, f64, f64, f64)> {
    let job = c.next_job();
    match c.call(
        &Request::Bench {
            job,
            lane: spec.clone(),
            n_prompt,
            n_gen,
            seed,
        },
        |_| {},
    )? {
        Event::Done {
            result:
                JobResult::Bench {
                    pp_tokens_per_sec,
                    tg_tokens_per_sec,
                    adapter_swap_ms,
                    load_ms,
                },
            ..
        } => Ok((pp_tokens_per_sec, tg_tokens_per_sec, adapter_swap_ms, load_ms)),
        Event::Error { message, .. } => bail!(message),
        other => bail!("unexpected engine reply: {other:?}"),
    }
}

pub fn bench(args: &BenchArgs) -> anyhow::Result<()> {
    let header = crate::gguf::validate_model_file(&args.model).map_err(anyhow::Error::msg)?;
    let summary = crate::gguf::Summary::of(&header);
    let threads = args
        .threads
        .unwrap_or_else(|| u32::try_from(crate::engine::default_threads()).unwrap_or(8));
    let n_ctx = args.n_prompt.max(args.n_gen) + 64;
    // Static pins are part of every nanolab lane on this model, so the benchmark runs with them
    // (the llama-cpp-2 baseline cannot: --no-static compares like with like).
    let pins = super::run::StaticPins::load(args.no_static);
    let pinned = pins.apply(&args.model, &[]);
    if !pinned.is_empty() {
        eprintln!(
            "note: the nanolab rows include {} static adapter(s); the baseline has none",
            pinned.len()
        );
    }
    let spec = |lane: LaneId, adapters: Vec<AdapterSpec>| LaneSpec {
        threads: Some(threads),
        ..LaneSpec::local(
            lane,
            &args.model,
            n_ctx,
            pinned.iter().cloned().chain(adapters).collect(),
        )
        .with_gpu_layers(args.gpu_layers)
    };
    if !args.parallel.is_empty() {
        return batched::batched(&spec(1, vec![]), args.n_prompt, args.n_gen, &args.parallel, args.output);
    }
    let mut client = EngineClient::new(None);
    let baseline = if args.no_baseline {
        None
    } else if let Some(why) = Baseline::unavailable() {
        eprintln!("note: {why}");
        None
    } else {
        Some(Baseline::load(&args.model, threads as i32, args.gpu_layers)?)
    };
    // Warm-up (page in the weights) for both.
    bench_rep(&mut client, &spec(1, vec![]), 32, 8, 0)?;
    if let Some(b) = &baseline {
        b.pp(32, 0)?;
    }
    let (mut n_pp, mut n_tg, mut b_pp, mut b_tg) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for r in 0..args.reps {
        let seed = u64::from(r) + 1;
        // Alternate which runs first so drift in the machine's speed hits both equally.
        let run_nanolab = |c: &mut EngineClient, pp: &mut Vec<f64>, tg: &mut Vec<f64>| -> anyhow::Result<()> {
            let (p, t, _, _) = bench_rep(c, &spec(1, vec![]), args.n_prompt, args.n_gen, seed)?;
            pp.push(p);
            tg.push(t);
            Ok(())
        };
        if r % 2 == 0 {
            run_nanolab(&mut client, &mut n_pp, &mut n_tg)?;
        }
        if let Some(b) = &baseline {
            b_pp.push(b.pp(args.n_prompt as usize, seed)?);
            b_tg.push(b.tg(args.n_gen as usize, seed)?);
        }
        if r % 2 == 1 {
            run_nanolab(&mut client, &mut n_pp, &mut n_tg)?;
        }
    }
    let name = args
        .model
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let build_commit = crate::engine::llama_build();
    let backends = super::run::gpu_backend_built().unwrap_or("CPU").to_string();
    let cpu_features = crate::engine::cpu_features().join(",");
    let n_gpu_layers = args.gpu_layers.unwrap_or_else(crate::engine::default_gpu_layers);
    let row = |runner: &str, n_prompt: u32, n_gen: u32, samples: &[f64]| {
        let (avg_ts, stddev_ts) = metrics::mean_sd(samples);
        let tokens = f64::from(n_prompt + n_gen);
        let samples_ns: Vec<f64> = samples.iter().map(|ts| tokens / ts.max(1e-9) * 1e9).collect();
        let (avg_ns, stddev_ns) = metrics::mean_sd(&samples_ns);
        Row {
            runner: runner.into(),
            build_commit: build_commit.clone(),
            backends: backends.clone(),
            cpu_features: cpu_features.clone(),
            n_gpu_layers,
            model_filename: name.clone(),
            model_size: summary.file_bytes,
            model_n_params: summary.parameters,
            n_threads: threads,
            n_prompt,
            n_gen,
            avg_ts,
            stddev_ts,
            samples_ts: samples.to_vec(),
            avg_ns,
            stddev_ns,
            samples_ns,
        }
    };
    let mut rows = vec![
        row("nanolab", args.n_prompt, 0, &n_pp),
        row("nanolab", 0, args.n_gen, &n_tg),
    ];
    if baseline.is_some() {
        rows.push(row("llama-cpp-2 baseline", args.n_prompt, 0, &b_pp));
        rows.push(row("llama-cpp-2 baseline", 0, args.n_gen, &b_tg));
    }
    let mut notes = Vec::new();
    if baseline.is_some() {
        let ratio = |a: &[f64], b: &[f64]| metrics::mean_sd(a).0 / metrics::mean_sd(b).0.max(1e-9);
        notes.push(format!(
            "nanolab / llama-cpp-2 baseline: pp{} {:.3}, tg{} {:.3} (target >= 0.98)",
            args.n_prompt,
            ratio(&n_pp, &b_pp),
            args.n_gen,
            ratio(&n_tg, &b_tg)
        ));
    }
    for &rank in &args.adapter_ranks {
        let dir = std::env::temp_dir().join(format!("nanolab-bench-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let path = dir.join(format!("rank{rank}.gguf"));
        random_lora(&header, u64::from(rank), &path)?;
        let mut tg = Vec::new();
        let mut base_tg = Vec::new();
        for r in 0..args.reps {
            let seed = u64::from(r) + 100;
            base_tg.push(bench_rep(&mut client, &spec(2, vec![]), 0, args.n_gen, seed)?.1);
            let adapters = vec![AdapterSpec {
                path: path.clone(),
                scale: 1.0,
            }];
            tg.push(bench_rep(&mut client, &spec(3, adapters), 0, args.n_gen, seed)?.1);
        }
        let _ = std::fs::remove_dir_all(&dir);
        let (with, _) = metrics::mean_sd(&tg);
        let (without, _) = metrics::mean_sd(&base_tg);
        rows.push(row(&format!("nanolab + LoRA r{rank} (q/k/v/o)"), 0, args.n_gen, &tg));
        notes.push(format!(
            "LoRA rank {rank}: tg {with:.1} vs {without:.1} tok/s without, {:+.1}% decode",
            (with / without.max(1e-9) - 1.0) * 100.0
        ));
    }
    if args.swap_and_memory {
        notes.extend(swap_and_memory(
            &mut client,
            &args.model,
            &header,
            threads,
            args.gpu_layers,
        )?);
    }
    if args.stack {
        let (seen, alone) = through_the_stack(&mut client, &spec(4, vec![]), args.n_gen, args.reps)?;
        rows.push(row("generate, over the child-process protocol", 0, args.n_gen, &seen));
        rows.push(row("generate, same worker in-process", 0, args.n_gen, &alone));
        notes.push(format!(
            "decode as token events arrive: over the child-process protocol {:.1} vs the same worker in-process {:.1} tok/s: {:+.2}% (target: > -2%)",
            metrics::mean_sd(&seen).0,
            metrics::mean_sd(&alone).0,
            (metrics::mean_sd(&seen).0 / metrics::mean_sd(&alone).0.max(1e-9) - 1.0) * 100.0
        ));
    }
    if let Some(png) = &args.png {
        let by_rank: Vec<(u32, f64)> = args
            .adapter_ranks
            .iter()
            .zip(rows.iter().filter(|r| r.runner.contains("LoRA")))
            .map(|(rank, r)| (*rank, r.avg_ts))
            .collect();
        let base = rows
            .iter()
            .find(|r| r.runner == "nanolab" && r.n_gen > 0)
            .map_or(0.0, |r| r.avg_ts);
        rank_chart(png, &name, base, &by_rank)?;
        eprintln!("wrote {}", png.display());
    }
    match args.output {
        // As llama-bench: an array of rows on stdout; the notes go to stderr.
        Format::Json => {
            println!("{}", serde_json::to_string_pretty(&rows)?);
            for n in &notes {
                eprintln!("note: {n}");
            }
        }
        Format::Csv => {
            println!(
                "runner,build_commit,backends,n_gpu_layers,model_filename,model_size,model_n_params,n_threads,n_prompt,n_gen,avg_ns,stddev_ns,avg_ts,stddev_ts"
            );
            for r in &rows {
                println!(
                    "\"{}\",\"{}\",\"{}\",{},\"{}\",{},{},{},{},{},{:.0},{:.0},{:.3},{:.3}",
                    r.runner,
                    r.build_commit,
                    r.backends,
                    r.n_gpu_layers,
                    r.model_filename,
                    r.model_size,
                    r.model_n_params,
                    r.n_threads,
                    r.n_prompt,
                    r.n_gen,
                    r.avg_ns,
                    r.stddev_ns,
                    r.avg_ts,
                    r.stddev_ts
                );
            }
            for n in &notes {
                eprintln!("note: {n}");
            }
        }
        Format::Md => {
            println!("| runner | model | size | params | backend | ngl | threads | test | t/s |");
            println!("| --- | --- | ---: | ---: | --- | ---: | ---: | ---: | ---: |");
            for r in &rows {
                let test = if r.n_prompt > 0 {
                    format!("pp{}", r.n_prompt)
                } else {
                    format!("tg{}", r.n_gen)
                };
                println!(
                    "| {} | {} | {} | {:.1} M | {} | {} | {} | {test} | {:.2} ± {:.2} |",
                    r.runner,
                    r.model_filename,
                    crate::metrics::mib(r.model_size),
                    r.model_n_params as f64 / 1e6,
                    r.backends,
                    r.n_gpu_layers,
                    r.n_threads,
                    r.avg_ts,
                    r.stddev_ts
                );
            }
            println!();
            for n in &notes {
                println!("- {n}");
            }
        }
    }
    Ok(())
}
