//! Shared helpers for integration tests: the demo model, an engine client, fixture files.
#![allow(dead_code)]

pub mod ui;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nanolab::engine::EngineClient;
use nanolab::gguf::writer::{self, TensorData};
use nanolab::gguf::{GgmlType, Value};
use nanolab::protocol::*;

/// The demo model (fetched by `make test`).
pub fn demo_model() -> PathBuf {
    let p = std::env::var_os("NANOLAB_TEST_MODEL")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("models/SmolLM2-135M-Instruct.Q4_1.gguf"));
    assert!(
        p.is_file(),
        "demo model missing at {}; run `make test` (it fetches it)",
        p.display()
    );
    p
}

pub fn exe() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_nanolab"))
}

pub fn client() -> EngineClient {
    EngineClient::new(Some(exe()))
}

pub fn lane(id: LaneId, model: &Path, n_ctx: u32, adapters: Vec<AdapterSpec>) -> LaneSpec {
    LaneSpec {
        lane: id,
        model: ModelSpec {
            path: model.to_path_buf(),
            gpu_layers: None,
        },
        n_ctx,
        threads: None,
        adapters,
    }
}

pub fn greedy(max_tokens: u32) -> Sampling {
    Sampling {
        max_tokens,
        ..Sampling::default()
    }
}

/// Runs a generation; returns the streamed events and the terminal event.
pub fn generate(c: &mut EngineClient, spec: LaneSpec, prompt: &str, sampling: Sampling) -> (Vec<Event>, Event) {
    let job = c.next_job();
    let mut events = Vec::new();
    let end = c
        .call(
            &Request::Generate {
                job,
                lane: spec,
                prompt: Prompt::Raw { text: prompt.into() },
                sampling,
                top_n: 5,
            },
            |e| events.push(e.clone()),
        )
        .expect("engine call");
    (events, end)
}

pub fn stats(end: &Event) -> RunStats {
    match end {
        Event::Done {
            result: JobResult::Generated { stats },
            ..
        } => stats.clone(),
        other => panic!("expected a finished generation, got {other:?}"),
    }
}

pub fn status(c: &mut EngineClient) -> EngineStatus {
    let job = c.next_job();
    match c.call(&Request::Status { job }, |_| {}).expect("status") {
        Event::Done {
            result: JobResult::Status { status },
            ..
        } => status,
        other => panic!("expected status, got {other:?}"),
    }
}

/// Steps `f` until it returns Some or the deadline passes.
pub fn wait_for<T>(deadline: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let end = Instant::now() + deadline;
    while Instant::now() < end {
        if let Some(v) = f() {
            return Some(v);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    None
}

/// Writes a small, valid GGUF with the given metadata and F32 tensors (dims in ggml order).
pub fn write_gguf(path: &Path, metadata: Vec<(&str, Value)>, tensors: &[(&str, Vec<u64>)]) {
    let md: Vec<(String, Value)> = metadata.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
    let f32_type = GgmlType::from_name("F32").unwrap();
    let ts: Vec<TensorData> = tensors
        .iter()
        .map(|(name, dims)| {
            let n: u64 = dims.iter().product();
            TensorData {
                name: name.to_string(),
                dims: dims.clone(),
                ggml_type: f32_type,
                data: writer::f32_bytes(&vec![0.0; n as usize]),
            }
        })
        .collect();
    let mut f = std::fs::File::create(path).unwrap();
    writer::write(&mut f, &md, &ts).unwrap();
}

/// A LoRA adapter for the llama architecture with the given width (q projection only, rank 4).
pub fn write_lora(path: &Path, n_embd: u64, layers: u64) {
    let mut tensors = Vec::new();
    let names: Vec<String> = (0..layers).map(|i| format!("blk.{i}.attn_q.weight")).collect();
    for n in &names {
        tensors.push((format!("{n}.lora_a"), vec![n_embd, 4]));
        tensors.push((format!("{n}.lora_b"), vec![4, n_embd]));
    }
    let refs: Vec<(&str, Vec<u64>)> = tensors.iter().map(|(n, d)| (n.as_str(), d.clone())).collect();
    write_gguf(
        path,
        vec![
            ("general.architecture", Value::Str("llama".into())),
            ("general.type", Value::Str("adapter".into())),
            ("adapter.type", Value::Str("lora".into())),
            ("adapter.lora.alpha", Value::F64(8.0)),
        ],
        &refs,
    );
}
