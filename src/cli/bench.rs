//! `nanolab bench`: llama-bench's pp/tg tests through nanolab's engine, alternating with a bare
//! llama-cpp-2 loop in the same run (ratio printed), plus what adapters, swaps and lanes cost.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::bail;
use clap::{Args, ValueEnum};
use serde::Serialize;

use crate::engine::baseline::Baseline;
use crate::engine::EngineClient;
use crate::protocol::*;

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

fn mean_sd(v: &[f64]) -> (f64, f64) {
    if v.is_empty() {
        return (0.0, 0.0);
    }
    let m = v.iter().sum::<f64>() / v.len() as f64;
    let var = if v.len() > 1 {
        v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (v.len() - 1) as f64
    } else {
        0.0
    };
    (m, var.sqrt())
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

/// Writes a random LoRA of `rank` on q/k/v/o of every layer of `model`.
fn random_lora(model: &crate::gguf::GgufFile, rank: u64, out: &std::path::Path) -> anyhow::Result<()> {
    use crate::gguf::writer::{self, TensorData};
    use crate::gguf::{GgmlType, Value};
    let f16 = GgmlType::from_name("F16").ok_or_else(|| anyhow::anyhow!("type table"))?;
    let mut tensors = Vec::new();
    let mut seed = rank;
    let mut values = |n: u64| -> Vec<u8> {
        (0..n)
            .flat_map(|_| {
                seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                let v = ((seed >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 0.02;
                half::f16::from_f32(v).to_le_bytes()
            })
            .collect()
    };
    for t in &model.tensors {
        let is_target = ["attn_q.weight", "attn_k.weight", "attn_v.weight", "attn_output.weight"]
            .iter()
            .any(|s| t.name.ends_with(s));
        if !is_target || t.dims.len() != 2 {
            continue;
        }
        let (n_in, n_out) = (t.dims[0], t.dims[1]);
        tensors.push(TensorData {
            name: format!("{}.lora_a", t.name),
            dims: vec![n_in, rank],
            ggml_type: f16,
            data: values(n_in * rank),
        });
        tensors.push(TensorData {
            name: format!("{}.lora_b", t.name),
            dims: vec![rank, n_out],
            ggml_type: f16,
            data: values(rank * n_out),
        });
    }
    let md = vec![
        (
            "general.architecture".to_string(),
            Value::Str(model.architecture().unwrap_or("llama").into()),
        ),
        ("general.type".to_string(), Value::Str("adapter".into())),
        ("adapter.type".to_string(), Value::Str("lora".into())),
        ("adapter.lora.alpha".to_string(), Value::F64(rank as f64)),
    ];
    let mut bytes = Vec::new();
    writer::write(&mut bytes, &md, &tensors)?;
    crate::paths::write_atomic(out, &bytes)?;
    Ok(())
}

pub fn bench(args: &BenchArgs) -> anyhow::Result<()> {
    let header = crate::gguf::validate_model_file(&args.model).map_err(anyhow::Error::msg)?;
    let summary = crate::gguf::Summary::of(&header);
    let threads = args.threads.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map_or(2, |n| n.get() as u32)
            .min(8)
    });
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
        lane,
        model: ModelSpec {
            path: args.model.clone(),
            gpu_layers: args.gpu_layers,
        },
        n_ctx,
        threads: Some(threads),
        adapters: pinned.iter().cloned().chain(adapters).collect(),
    };
    let mut client = EngineClient::new(None);
    let baseline = if args.no_baseline {
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
        let (avg_ts, stddev_ts) = mean_sd(samples);
        let tokens = f64::from(n_prompt + n_gen);
        let samples_ns: Vec<f64> = samples.iter().map(|ts| tokens / ts.max(1e-9) * 1e9).collect();
        let (avg_ns, stddev_ns) = mean_sd(&samples_ns);
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
        let ratio = |a: &[f64], b: &[f64]| mean_sd(a).0 / mean_sd(b).0.max(1e-9);
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
        let (with, _) = mean_sd(&tg);
        let (without, _) = mean_sd(&base_tg);
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
            mean_sd(&seen).0,
            mean_sd(&alone).0,
            (mean_sd(&seen).0 / mean_sd(&alone).0.max(1e-9) - 1.0) * 100.0
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

/// Decode tok/s from the moments token events arrive: through the child process and its JSON
/// protocol (what the CLI and the window see), alternating with the same worker in this process
/// (no process, pipe or JSON). Same request, same seeds.
fn through_the_stack(
    c: &mut EngineClient,
    spec: &LaneSpec,
    n_gen: u32,
    reps: u32,
) -> anyhow::Result<(Vec<f64>, Vec<f64>)> {
    let mut local = crate::engine::local::LocalEngine::new()?;
    let request = |job: JobId, seed: u32| Request::Generate {
        job,
        lane: spec.clone(),
        prompt: Prompt::Raw {
            text: "1, 2, 3, 4, 5, 6,".into(),
        },
        sampling: Sampling {
            max_tokens: n_gen,
            seed,
            ..Sampling::default()
        },
        top_n: 5,
    };
    let rate_of = |arrivals: &[Instant]| match (arrivals.first(), arrivals.last()) {
        (Some(first), Some(last)) if arrivals.len() > 1 => {
            let secs = last.duration_since(*first).as_secs_f64();
            (secs > 0.0).then(|| (arrivals.len() - 1) as f64 / secs)
        }
        _ => None,
    };
    let is_token = |ev: &Event| matches!(ev, Event::Token { token_id, .. } if *token_id >= 0);
    let (mut seen, mut alone) = (Vec::new(), Vec::new());
    // One unmeasured run each: the weights paged in, the contexts made.
    for seed in 0..=reps {
        let mut run_child = || -> anyhow::Result<Option<f64>> {
            let job = c.next_job();
            let mut arrivals = Vec::new();
            let end = c.call(&request(job, seed), |ev| {
                if is_token(ev) {
                    arrivals.push(Instant::now());
                }
            })?;
            if !matches!(end, Event::Done { .. }) {
                bail!("benchmark generation failed: {end:?}");
            }
            Ok(rate_of(&arrivals))
        };
        let mut run_local = || -> anyhow::Result<Option<f64>> {
            let mut arrivals = Vec::new();
            let end = local.call(request(1, seed), |ev| {
                if is_token(ev) {
                    arrivals.push(Instant::now());
                }
            });
            if !matches!(end, Some(Event::Done { .. })) {
                bail!("in-process benchmark generation failed: {end:?}");
            }
            Ok(rate_of(&arrivals))
        };
        // Alternate which runs first so drift in the machine's speed hits both equally.
        let (a, b) = if seed % 2 == 0 {
            let a = run_child()?;
            (a, run_local()?)
        } else {
            let b = run_local()?;
            (run_child()?, b)
        };
        if let (Some(a), Some(b), true) = (a, b, seed > 0) {
            seen.push(a);
            alone.push(b);
        }
    }
    Ok((seen, alone))
}

/// Bar chart of decode tok/s by adapter rank, with the no-adapter speed as a line.
fn rank_chart(path: &std::path::Path, model: &str, base: f64, by_rank: &[(u32, f64)]) -> anyhow::Result<()> {
    use plotters::prelude::*;
    let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, epaint_default_fonts::UBUNTU_LIGHT);
    let root = BitMapBackend::new(path, (800, 450)).into_drawing_area();
    root.fill(&WHITE)?;
    let top = by_rank.iter().map(|(_, t)| *t).fold(base, f64::max) * 1.15;
    let labels: Vec<String> = by_rank.iter().map(|(r, _)| format!("r{r}")).collect();
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!("{model}: decode tok/s with one LoRA (q/k/v/o) by rank"),
            ("sans-serif", 20),
        )
        .margin(12)
        .x_label_area_size(30)
        .y_label_area_size(50)
        .build_cartesian_2d(0usize..by_rank.len().max(1), 0.0..top.max(1.0))?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(by_rank.len().max(1))
        .x_label_formatter(&|i| labels.get(*i).cloned().unwrap_or_default())
        .y_desc("tok/s")
        .draw()?;
    chart.draw_series(
        by_rank
            .iter()
            .enumerate()
            .map(|(i, (_, t))| Rectangle::new([(i, 0.0), (i + 1, *t)], BLUE.mix(0.6).filled())),
    )?;
    chart
        .draw_series(LineSeries::new(
            [(0, base), (by_rank.len().max(1), base)],
            RED.stroke_width(2),
        ))?
        .label(format!("no adapter: {base:.1} tok/s"))
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], RED));
    chart
        .configure_series_labels()
        .background_style(WHITE)
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}

/// Unloads a model (and its lanes) from the engine.
fn unload(client: &mut EngineClient, model: &std::path::Path) -> anyhow::Result<()> {
    let job = client.next_job();
    client.call(
        &Request::UnloadModel {
            job,
            path: model.to_path_buf(),
        },
        |_| {},
    )?;
    Ok(())
}

/// Hot-swap of an adapter stack vs a full model reload; RSS with 1, 2 and 4 lanes.
fn swap_and_memory(
    client: &mut EngineClient,
    model: &std::path::Path,
    header: &crate::gguf::GgufFile,
    threads: u32,
    gpu_layers: Option<u32>,
) -> anyhow::Result<Vec<String>> {
    let dir = std::env::temp_dir().join(format!("nanolab-swap-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let a = dir.join("a.gguf");
    let b = dir.join("b.gguf");
    random_lora(header, 8, &a)?;
    random_lora(header, 16, &b)?;
    let spec = |lane: LaneId, adapters: Vec<AdapterSpec>| LaneSpec {
        lane,
        model: ModelSpec {
            path: model.to_path_buf(),
            gpu_layers,
        },
        n_ctx: 512,
        threads: Some(threads),
        adapters,
    };
    let ad = |p: &PathBuf, s: f32| AdapterSpec {
        path: p.clone(),
        scale: s,
    };
    // What a changed stack costs in all, from the request to its first token: llama.cpp's
    // set_adapters plus the scheduler re-reserve that it leaves to the next decode. Measured as
    // the round trip of a one-token request that swaps, minus the same request again (stack
    // unchanged). A reload likewise: unload, load, new context and first token, minus the same
    // request again. Adapter files are loaded once first: swapping is the hot path.
    let timed = |client: &mut EngineClient, spec: &LaneSpec| -> anyhow::Result<(f64, f64)> {
        let t0 = Instant::now();
        let (_, _, set_ms, _) = bench_rep(client, spec, 0, 1, 0)?;
        Ok((t0.elapsed().as_secs_f64() * 1000.0, set_ms))
    };
    timed(client, &spec(10, vec![ad(&a, 1.0), ad(&b, 1.0)]))?;
    let (mut swaps, mut sets) = (Vec::new(), Vec::new());
    for i in 0..20 {
        let stack = if i % 2 == 0 {
            vec![ad(&a, 0.5)]
        } else {
            vec![ad(&b, 1.0), ad(&a, 0.3)]
        };
        let (with_swap, set_ms) = timed(client, &spec(10, stack.clone()))?;
        let (unchanged, _) = timed(client, &spec(10, stack))?;
        swaps.push(with_swap - unchanged);
        sets.push(set_ms);
    }
    let mut reloads = Vec::new();
    for _ in 0..3 {
        unload(client, model)?;
        let (with_reload, _) = timed(client, &spec(10, vec![]))?;
        let (unchanged, _) = timed(client, &spec(10, vec![]))?;
        reloads.push(with_reload - unchanged);
    }
    let (swap, swap_sd) = mean_sd(&swaps);
    let (set, _) = mean_sd(&sets);
    let (reload, _) = mean_sd(&reloads);
    let mut notes = vec![format!(
        "hot-swap of an adapter stack {swap:.2} ± {swap_sd:.2} ms from request to first token (llama.cpp's set_adapters {set:.2} ms, the rest the re-reserve at the next decode) vs model reload (unload, load, new context, first token) {reload:.1} ms: {:.0}x faster (target >= 20x)",
        reload / swap.max(1e-3)
    )];
    // Memory: lanes on one base, each with the same adapter and 256 tokens through its context
    // (so KV cache and compute buffers are in use), engine RSS after 1, 2 and 4 lanes.
    unload(client, model)?;
    let mut rss = Vec::new();
    let (mut kv, mut adapter, mut weights) = (0, 0, 0);
    for lanes in [1u64, 2, 4] {
        for l in 0..lanes {
            bench_rep(client, &spec(100 + l, vec![ad(&a, 1.0)]), 256, 4, 0)?;
        }
        let job = client.next_job();
        if let Event::Done {
            result: JobResult::Status { status },
            ..
        } = client.call(&Request::Status { job }, |_| {})?
        {
            if let Some(l) = status.lanes.first() {
                (kv, adapter, weights) = (l.kv_bytes, l.adapter_bytes, l.model.model_bytes);
            }
            rss.push((lanes, status.rss_bytes));
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    if let [(_, one), (_, two), (_, four)] = rss[..] {
        let mib = crate::metrics::mib;
        let steps = [two.saturating_sub(one), four.saturating_sub(two) / 2];
        notes.push(format!(
            "engine RSS with 1/2/4 lanes on one base (each with the same rank-8 adapter): {} / {} / {}; growth per lane {} (1->2) and {} (2->4) vs KV cache {} per lane; the adapter ({}) and the weights ({}) are held once; {}",
            mib(one),
            mib(two),
            mib(four),
            mib(steps[0]),
            mib(steps[1]),
            mib(kv),
            mib(adapter),
            mib(weights),
            if steps.iter().all(|&g| g < kv + weights / 4) {
                "the rest of each step is the lane's own compute buffer"
            } else {
                "MORE than KV and a compute buffer: the weights may be held per lane"
            }
        ));
    }
    Ok(notes)
}
