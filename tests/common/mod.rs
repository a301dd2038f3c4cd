//! Shared helpers for integration tests: the demo model, an engine client, fixture files.
#![allow(dead_code)]

pub mod servers;
pub mod ui;
pub mod x11;

use std::cell::RefCell;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use nanolab::engine::EngineClient;
use nanolab::gguf::writer::{self, TensorData};
use nanolab::gguf::{GgmlType, Value};
use nanolab::protocol::*;

/// Held by the test that is starting programs (engines, windows, servers, the binary, Python).
/// On 2 cores two engines or windows side by side run past each other's deadlines, so such tests
/// take turns whatever `cargo test`'s thread count, while tests that only read and write files
/// run beside them.
static PROCESS_SLOT: Mutex<()> = Mutex::new(());

thread_local! {
    /// The slot, once this test's thread has it: libtest runs each test on a thread of its own,
    /// and the guard is dropped with the thread, so the slot is held until the test ends.
    static HELD: RefCell<Option<MutexGuard<'static, ()>>> = const { RefCell::new(None) };
}

/// Waits for the process slot and keeps it for the rest of the calling test. Every helper that
/// names a program to start calls it (`exe`, `demo_model`, `venv_python`, `llama_tool`), so a
/// test cannot forget it; call it yourself before starting any other program. Call it from the
/// test's own thread: a thread the test spawns would wait for its parent.
pub fn hold_process_slot() {
    HELD.with(|held| {
        let mut held = held.borrow_mut();
        if held.is_none() {
            // A test that panicked while holding it poisons nothing of ours: the slot guards no data.
            *held = Some(PROCESS_SLOT.lock().unwrap_or_else(|p| p.into_inner()));
        }
    });
}

/// A tool built from llama.cpp's tree by `scripts/llama-tools.sh` (`make test` builds those the
/// tests use): `target/llama-tools/build/bin/NAME`, or the path in `env_override` where set.
pub fn llama_tool(name: &str, env_override: &str) -> PathBuf {
    hold_process_slot();
    let p = std::env::var_os(env_override).map_or_else(
        || {
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("target/llama-tools/build/bin")
                .join(name)
        },
        PathBuf::from,
    );
    assert!(
        p.is_file(),
        "{name} missing at {}; `scripts/llama-tools.sh {name}` builds it (make test does)",
        p.display()
    );
    p
}

/// Runs the nanolab binary with an adapter registry of its own in a fresh temporary folder (the
/// user's is never read or written): whether it succeeded, its stdout and its stderr.
pub fn nanolab_isolated(args: &[&str]) -> (bool, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(exe())
        .args(args)
        .env("NANOLAB_REGISTRY", dir.path().join("registry.json"))
        .output()
        .expect("run nanolab");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The Python of a test venv under target/ (`py-openai`, `py-fixtures`).
pub fn venv_python(venv: &str) -> PathBuf {
    hold_process_slot();
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("target")
        .join(venv)
        .join("bin/python");
    assert!(
        p.is_file(),
        "{} missing: `scripts/setup.sh --test` (run by `make test`) makes the venv",
        p.display()
    );
    p
}

/// The demo model (fetched by `make test`).
pub fn demo_model() -> PathBuf {
    hold_process_slot();
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
    hold_process_slot();
    PathBuf::from(env!("CARGO_BIN_EXE_nanolab"))
}

/// The committed demo adapter that makes the demo model answer in capitals.
pub fn caps_adapter() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("adapters/smollm2-caps.gguf")
}

/// A copy of the caps adapter at `dir/locked.gguf` that nobody may read (mode 000; root still
/// can, so tests that need the refusal run as `nobody` or drop that capability).
pub fn locked_adapter_copy(dir: &Path) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let locked = dir.join("locked.gguf");
    std::fs::copy(caps_adapter(), &locked).unwrap();
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o000)).unwrap();
    locked
}

/// Serves `body` for every request, `count` times, on a loopback port (cut short after
/// `truncate_at` bytes if given); returns `http://127.0.0.1:PORT`.
pub fn serve(body: Vec<u8>, count: usize, truncate_at: Option<usize>) -> String {
    serve_with(body, count, truncate_at, true)
}

/// Serves `body` once without a Content-Length (the client learns the size only at the end).
pub fn serve_unsized(body: Vec<u8>) -> String {
    serve_with(body, 1, None, false)
}

fn serve_with(body: Vec<u8>, count: usize, truncate_at: Option<usize>, content_length: bool) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(count) {
            let mut stream = stream.unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            while reader.read_line(&mut line).unwrap_or(0) > 2 {
                line.clear();
            }
            let send = truncate_at.unwrap_or(body.len());
            let length = if content_length {
                format!("Content-Length: {}\r\n", body.len())
            } else {
                String::new()
            };
            let _ = write!(stream, "HTTP/1.1 200 OK\r\n{length}Connection: close\r\n\r\n");
            let _ = stream.write_all(&body[..send]);
        }
    });
    format!("http://{addr}")
}

/// The names in `dir`, sorted.
pub fn file_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// A tmpfs mounted for a disk-full test; unmounted when dropped.
pub struct Tmpfs(PathBuf);

impl Tmpfs {
    /// Where it is mounted.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// Says that (part of) a test did not run, and why, past the harness's output capture: the test
/// still reports "ok", so the skip must not be silent. (`eprintln!` is captured and hidden for a
/// passing test; a direct write to stderr is not.)
pub fn skipped(why: &str) {
    let _ = writeln!(std::io::stderr(), "SKIPPED: {why}");
}

/// Mounts a tmpfs of `size_mib` MiB at `at` (made here); None where mounting is not allowed
/// (it needs root).
pub fn small_tmpfs(at: &Path, size_mib: u32) -> Option<Tmpfs> {
    std::fs::create_dir_all(at).unwrap();
    Command::new("mount")
        .args(["-t", "tmpfs", "-o", &format!("size={size_mib}m"), "tmpfs"])
        .arg(at)
        .status()
        .is_ok_and(|s| s.success())
        .then(|| Tmpfs(at.to_path_buf()))
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
        remote: None,
    }
}

pub fn greedy(max_tokens: u32) -> Sampling {
    Sampling {
        max_tokens,
        ..Sampling::default()
    }
}

/// Sends lane 1 on the demo model counting on from "1, 2, 3, 4, 5, 6," greedily for up to
/// `max_tokens` (a run long enough to act on while it streams); returns its job.
pub fn send_counting(c: &mut EngineClient, max_tokens: u32) -> JobId {
    let job = c.next_job();
    c.send(&Request::Generate {
        job,
        lane: lane(1, &demo_model(), 2048, vec![]),
        prompt: Prompt::Raw {
            text: "1, 2, 3, 4, 5, 6,".into(),
        },
        sampling: greedy(max_tokens),
        top_n: 0,
        exclusive: false,
    })
    .unwrap();
    job
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
                exclusive: false,
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
