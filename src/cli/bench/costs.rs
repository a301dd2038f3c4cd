//! What nanolab's own layers and adapters cost, for `nanolab bench`: the engine's protocol
//! against the same worker in-process, random LoRA adapters of chosen ranks (written as GGUF),
//! their decode cost by rank as a chart, and the time and memory of swapping stacks.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::bail;

use super::bench_rep;
use crate::engine::EngineClient;
use crate::metrics;
use crate::protocol::*;

/// Decode tok/s from the moments token events arrive: through the child process and its JSON
/// protocol (what the CLI and the window see), alternating with the same worker in this process
/// (no process, pipe or JSON). Same request, same seeds.
pub(super) fn through_the_stack(
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
        exclusive: true,
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
pub(super) fn rank_chart(path: &std::path::Path, model: &str, base: f64, by_rank: &[(u32, f64)]) -> anyhow::Result<()> {
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
pub(super) fn swap_and_memory(
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
        threads: Some(threads),
        ..LaneSpec::local(lane, model, 512, adapters).with_gpu_layers(gpu_layers)
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
    let (swap, swap_sd) = metrics::mean_sd(&swaps);
    let (set, _) = metrics::mean_sd(&sets);
    let (reload, _) = metrics::mean_sd(&reloads);
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

/// Writes a random LoRA of `rank` on q/k/v/o of every layer of `model`.
pub(super) fn random_lora(model: &crate::gguf::GgufFile, rank: u64, out: &std::path::Path) -> anyhow::Result<()> {
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
