//! `nanolab bench --parallel 1,2,4,8`: llama-batched-bench's test through nanolab's engine,
//! one row per batch size with that tool's field names and definitions.

use anyhow::bail;
use serde::Serialize;

use super::Format;
use crate::engine::EngineClient;
use crate::protocol::*;

/// A row as llama-batched-bench's JSON lines name it, with what ran it.
#[derive(Debug, Serialize)]
struct Row<'a> {
    runner: &'static str,
    build_commit: &'a str,
    cpu_features: &'a str,
    model_filename: &'a str,
    n_threads: u32,
    #[serde(flatten)]
    row: BatchedRow,
}

/// Runs every batch size in `parallel` once, after a warm-up, and prints the rows.
pub(super) fn batched(
    spec: &LaneSpec,
    n_prompt: u32,
    n_gen: u32,
    parallel: &[u32],
    output: Format,
) -> anyhow::Result<()> {
    if parallel.contains(&0) {
        bail!("--parallel takes batch sizes of 1 or more");
    }
    let max_parallel = parallel.iter().copied().max().unwrap_or(1);
    let mut client = EngineClient::new(None);
    let mut call = |pp: u32, tg: u32, pl: u32, seed: u64| -> anyhow::Result<BatchedRow> {
        let job = client.next_job();
        match client.call(
            &Request::BatchedBench {
                job,
                lane: spec.clone(),
                n_prompt: pp,
                n_gen: tg,
                n_parallel: pl,
                max_parallel,
                seed,
            },
            |_| {},
        )? {
            Event::Done {
                result: JobResult::BatchedBench { row },
                ..
            } => Ok(row),
            Event::Error { message, .. } => bail!(message),
            other => bail!("unexpected engine reply: {other:?}"),
        }
    };
    // As llama-batched-bench: a short warm-up before the first measurement.
    call(16, 1, 1, 0)?;
    let rows: Vec<BatchedRow> = parallel
        .iter()
        .enumerate()
        .map(|(i, &pl)| call(n_prompt, n_gen, pl, i as u64 + 1))
        .collect::<anyhow::Result<_>>()?;
    let build_commit = crate::engine::llama_build();
    let cpu_features = crate::engine::cpu_features().join(",");
    let name = spec
        .model
        .path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let n_threads = spec.threads.unwrap_or(0);
    let named: Vec<Row<'_>> = rows
        .into_iter()
        .map(|row| Row {
            runner: "nanolab",
            build_commit: &build_commit,
            cpu_features: &cpu_features,
            model_filename: &name,
            n_threads,
            row,
        })
        .collect();
    match output {
        Format::Json => println!("{}", serde_json::to_string_pretty(&named)?),
        Format::Csv => {
            let mut w = csv::Writer::from_writer(std::io::stdout());
            w.write_record([
                "runner",
                "model_filename",
                "n_threads",
                "pp",
                "tg",
                "pl",
                "n_kv",
                "t_pp",
                "speed_pp",
                "t_tg",
                "speed_tg",
                "t",
                "speed",
            ])?;
            for r in &named {
                let b = &r.row;
                w.write_record([
                    r.runner.to_string(),
                    r.model_filename.to_string(),
                    r.n_threads.to_string(),
                    b.pp.to_string(),
                    b.tg.to_string(),
                    b.pl.to_string(),
                    b.n_kv.to_string(),
                    format!("{:.6}", b.t_pp),
                    format!("{:.3}", b.speed_pp),
                    format!("{:.6}", b.t_tg),
                    format!("{:.3}", b.speed_tg),
                    format!("{:.6}", b.t),
                    format!("{:.3}", b.speed),
                ])?;
            }
            w.flush()?;
        }
        Format::Md => {
            println!("{name}, {n_threads} threads, prompts not shared");
            println!();
            println!("| PP | TG | B | N_KV | T_PP s | S_PP t/s | T_TG s | S_TG t/s | T s | S t/s |");
            println!("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
            for r in &named {
                let b = &r.row;
                println!(
                    "| {} | {} | {} | {} | {:.3} | {:.2} | {:.3} | {:.2} | {:.3} | {:.2} |",
                    b.pp, b.tg, b.pl, b.n_kv, b.t_pp, b.speed_pp, b.t_tg, b.speed_tg, b.t, b.speed
                );
            }
        }
    }
    Ok(())
}
