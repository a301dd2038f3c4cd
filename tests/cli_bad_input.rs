//! Bad input through the real binary: each case gets one clear line and a non-zero exit.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::*;
use nanolab::gguf::Value;

fn nanolab(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(exe()).args(args).output().expect("run nanolab");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Asserts failure with exactly one `error:` line that contains `needle`.
fn fails_with(args: &[&str], needle: &str) {
    let (ok, _, err) = nanolab(args);
    assert!(!ok, "{args:?} should fail");
    assert!(!err.contains("panicked"), "{args:?} panicked: {err}");
    let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(lines.len(), 1, "{args:?}: expected one error line, got: {err}");
    assert!(lines[0].contains(needle), "{args:?}: {:?} lacks {needle:?}", lines[0]);
}

fn header(tensor_count: u64, kv_count: u64) -> Vec<u8> {
    let mut v = b"GGUF".to_vec();
    v.extend_from_slice(&3u32.to_le_bytes());
    v.extend_from_slice(&tensor_count.to_le_bytes());
    v.extend_from_slice(&kv_count.to_le_bytes());
    v
}

fn put_str(v: &mut Vec<u8>, s: &str) {
    v.extend_from_slice(&(s.len() as u64).to_le_bytes());
    v.extend_from_slice(s.as_bytes());
}

struct Fixtures {
    dir: tempfile::TempDir,
}

impl Fixtures {
    fn new() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
        }
    }
    fn file(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let p = self.dir.path().join(name);
        std::fs::write(&p, bytes).unwrap();
        p
    }
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn bad_model_files_get_clear_errors_from_inspect_and_run() {
    let fx = Fixtures::new();
    let demo = demo_model();
    let demo_bytes = std::fs::read(&demo).unwrap();
    let tensor_info_cut = nanolab::gguf::read(&demo).unwrap().data_offset as usize - 100;
    let mut absurd_string = header(0, 1);
    absurd_string.extend_from_slice(&u64::MAX.to_le_bytes());
    absurd_string.extend_from_slice(&[0u8; 64]);
    let mut bad_type = header(0, 1);
    put_str(&mut bad_type, "general.architecture");
    bad_type.extend_from_slice(&99u32.to_le_bytes());
    let cases: Vec<(PathBuf, &str)> = vec![
        (fx.dir.path().join("missing.gguf"), "no such file"),
        (fx.dir.path().to_path_buf(), "is a directory"),
        (fx.file("empty.gguf", b""), "file is empty"),
        (fx.file("text.gguf", b"hello, I am not a model\n"), "not a GGUF file"),
        (fx.file("header-only.gguf", &header(1, 1)[..12]), "truncated"),
        (
            fx.file("counts-cut.gguf", &demo_bytes[..2000]),
            "tensor count is 272, impossible in a file of 2000 bytes",
        ),
        (
            fx.file("vocab-absurd.gguf", &demo_bytes[..10_000]),
            "element count of tokenizer.ggml.tokens is 49152, impossible in a file of 10000 bytes",
        ),
        (fx.file("metadata-cut.gguf", &demo_bytes[..700_000]), "truncated"),
        (
            fx.file("tensor-info-cut.gguf", &demo_bytes[..tensor_info_cut]),
            "truncated",
        ),
        (
            fx.file("data-cut.gguf", &demo_bytes[..demo_bytes.len() / 2]),
            "truncated",
        ),
        (fx.file("many-tensors.gguf", &header(1 << 60, 0)), "tensor count"),
        (fx.file("many-keys.gguf", &header(0, 1 << 60)), "metadata count"),
        (fx.file("long-string.gguf", &absurd_string), "length of key"),
        (fx.file("bad-type.gguf", &bad_type), "unknown value type 99"),
    ];
    for (path, needle) in &cases {
        fails_with(&["inspect", s(path)], needle);
        fails_with(&["run", "-m", s(path), "-p", "hi", "-n", "2"], needle);
    }
}

#[test]
fn unsupported_architecture_is_reported_by_name() {
    let fx = Fixtures::new();
    let p = fx.dir.path().join("weird.gguf");
    write_gguf(
        &p,
        vec![("general.architecture", Value::Str("frobnicator".into()))],
        &[("token_embd.weight", vec![8, 8])],
    );
    let (ok, out, _) = nanolab(&["inspect", s(&p)]);
    assert!(ok && out.contains("frobnicator"));
    fails_with(&["run", "-m", s(&p), "-p", "hi"], "frobnicator");
}

#[test]
fn model_bigger_than_memory_is_refused_with_numbers() {
    let fx = Fixtures::new();
    let p = fx.dir.path().join("huge.gguf");
    let mut v = header(1, 1);
    put_str(&mut v, "general.architecture");
    v.extend_from_slice(&8u32.to_le_bytes());
    put_str(&mut v, "llama");
    put_str(&mut v, "token_embd.weight");
    v.extend_from_slice(&2u32.to_le_bytes());
    v.extend_from_slice(&(1u64 << 17).to_le_bytes());
    v.extend_from_slice(&(1u64 << 18).to_le_bytes());
    v.extend_from_slice(&0u32.to_le_bytes());
    v.extend_from_slice(&0u64.to_le_bytes());
    v.resize(v.len().div_ceil(32) * 32, 0);
    let mut f = std::fs::File::create(&p).unwrap();
    f.write_all(&v).unwrap();
    // A sparse file: 128 GiB of F32 that costs no disk.
    f.set_len(v.len() as u64 + (1u64 << 37)).unwrap();
    drop(f);
    fails_with(&["run", "-m", s(&p), "-p", "hi"], "but only");
}

#[test]
fn wrong_adapters_are_refused_before_llama_cpp() {
    let fx = Fixtures::new();
    let demo = demo_model();
    let wide = fx.dir.path().join("wide.gguf");
    write_lora(&wide, 2048, 30);
    fails_with(
        &["run", "-m", s(&demo), "-a", s(&wide), "-p", "hi"],
        "adapter targets llama with n_embd 2048; this model has n_embd 576: blk.0.attn_q.weight 2048x2048 vs 576x576, and 29 more",
    );
    let deep = fx.dir.path().join("deep.gguf");
    write_lora(&deep, 576, 40);
    fails_with(
        &["run", "-m", s(&demo), "-a", s(&deep), "-p", "hi"],
        "blk.30.attn_q.weight",
    );
    fails_with(
        &["run", "-m", s(&demo), "-a", &format!("{}:0.5", s(&demo)), "-p", "hi"],
        "is not an adapter",
    );
    fails_with(
        &["run", "-m", s(&wide), "-p", "hi"],
        "this is a LoRA adapter, not a model",
    );
    fails_with(
        &["run", "-m", s(&demo), "-a", "/nonexistent/a.gguf", "-p", "hi"],
        "no such file",
    );
}

#[test]
fn prompt_longer_than_context_fails_cleanly() {
    let demo = demo_model();
    let long = "token ".repeat(600);
    fails_with(
        &["run", "-m", s(&demo), "--ctx", "256", "-p", &long],
        "context holds 256",
    );
}

#[test]
fn context_bigger_than_memory_is_refused_with_numbers() {
    let demo = demo_model();
    // 4 billion tokens of KV cache (about 86 TiB for this model) fit no machine.
    let (ok, _, err) = nanolab(&["run", "-m", s(&demo), "--ctx", "4000000000", "-p", "hi", "-n", "1"]);
    assert!(!ok);
    assert!(
        err.contains("a context of 4000000000 tokens needs") && err.contains("of KV cache but only"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "{err}");
}

#[test]
fn run_json_and_inspect_json_are_machine_readable() {
    let demo = demo_model();
    let (ok, out, err) = nanolab(&["run", "-m", s(&demo), "-p", "The sky is", "-n", "8", "--json"]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("one JSON object");
    for key in [
        "load_ms",
        "ttft_ms",
        "prompt_tokens",
        "prefill_tokens_per_sec",
        "generated_tokens",
        "decode_tokens_per_sec",
        "itl_p50_ms",
        "itl_p95_ms",
        "peak_rss_bytes",
    ] {
        assert!(
            v[key].as_f64().is_some_and(|x| x > 0.0),
            "{key} missing or zero in {out}"
        );
    }
    assert!(v["lane"]["kv_bytes"].as_u64().unwrap() > 0);
    assert!(v["lane"]["model"]["model_bytes"].as_u64().unwrap() > 0);
    let (ok, out, _) = nanolab(&["inspect", s(&demo), "--json"]);
    assert!(ok);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["architecture"], "llama");
    assert_eq!(v["file_type"], "Q4_1");
    assert_eq!(v["tensor_count"], 272);
    assert_eq!(v["has_chat_template"], true);
    assert_eq!(v["vocab_size"], 49152);
    assert_eq!(v["context_length"], 8192);
    assert_eq!(v["parameters"], 134_515_008);
}

#[test]
fn plain_run_streams_text_and_prints_a_stats_line() {
    let demo = demo_model();
    let (ok, out, err) = nanolab(&[
        "run",
        "-m",
        s(&demo),
        "--chat",
        "What is the capital of France?",
        "-n",
        "16",
    ]);
    assert!(ok, "{err}");
    assert!(out.contains("Paris"), "{out}");
    let line = err.lines().find(|l| l.starts_with("load ")).expect("stats line");
    for part in ["ttft", "tok/s", "itl p50", "peak rss", "kv"] {
        assert!(line.contains(part), "{line}");
    }
}

#[test]
fn an_unreadable_file_is_reported_as_such() {
    // Root reads any file, so as root the check runs as `nobody` (setpriv, util-linux) on a
    // copy of the binary in a folder nobody can enter.
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let file = locked_adapter_copy(dir.path());
    // The base model for the adapter case, where `nobody` may read it.
    let demo = dir.path().join("demo.gguf");
    if std::fs::hard_link(demo_model(), &demo).is_err() {
        std::fs::copy(demo_model(), &demo).unwrap();
    }
    std::fs::set_permissions(&demo, std::fs::Permissions::from_mode(0o644)).unwrap();
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let exe_copy = dir.path().join("nanolab");
    if root {
        std::fs::copy(exe(), &exe_copy).unwrap();
        std::fs::set_permissions(&exe_copy, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let (f, m) = (file.to_str().unwrap(), demo.to_str().unwrap());
    let uses: [&[&str]; 3] = [
        &["inspect", f],
        &["run", "-m", f, "-p", "hi", "-n", "1"],
        &["run", "-m", m, "-a", f, "-p", "hi", "-n", "1"],
    ];
    for args in uses {
        let out = if root {
            Command::new("setpriv")
                .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
                .arg(&exe_copy)
                .args(args)
                .output()
                .expect("setpriv (util-linux) runs")
        } else {
            Command::new(exe()).args(args).output().unwrap()
        };
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?}");
        let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
        assert_eq!(errors.len(), 1, "{args:?}: {stderr}");
        assert!(
            errors[0].contains("locked.gguf") && errors[0].contains("Permission denied"),
            "{args:?}: {stderr}"
        );
    }
}

#[test]
fn a_broken_adapter_registry_does_not_stop_a_run() {
    let dir = tempfile::tempdir().unwrap();
    let registry = dir.path().join("registry.json");
    std::fs::write(&registry, "{ not json").unwrap();
    let out = Command::new(exe())
        .env("NANOLAB_REGISTRY", &registry)
        .args(["run", "-m", s(&demo_model()), "-p", "The sky is", "-n", "4"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("not a valid registry file") && stderr.contains("pinned there as static are not applied"),
        "{stderr}"
    );
    assert!(!String::from_utf8_lossy(&out.stdout).trim().is_empty());
    assert_eq!(std::fs::read_to_string(&registry).unwrap(), "{ not json");
}

#[test]
fn devices_lists_the_cpu_and_says_where_work_runs() {
    let (ok, out, err) = nanolab(&["devices", "--json"]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("one JSON object");
    let devices = v["devices"].as_array().expect("a device list");
    let cpu = devices.iter().find(|d| d["kind"] == "Cpu").expect("a CPU device");
    assert!(cpu["memory_total_bytes"].as_u64().unwrap() > 0, "{out}");
    let gpus = devices
        .iter()
        .filter(|d| d["kind"] == "Gpu" || d["kind"] == "IntegratedGpu")
        .count();
    assert_eq!(v["gpu_offload"], gpus > 0, "{out}");
    let built = if cfg!(feature = "cuda") {
        serde_json::json!("CUDA")
    } else if cfg!(feature = "vulkan") {
        serde_json::json!("Vulkan")
    } else {
        assert_eq!(gpus, 0, "a CPU build lists a GPU: {out}");
        serde_json::Value::Null
    };
    assert_eq!(v["gpu_backend_built"], built, "{out}");
    // The build is for this CPU (target-cpu=native → GGML_NATIVE): every SIMD extension the
    // kernel reports that llama.cpp's x86 CPU backend has a switch for is in use, and nothing
    // is in use that the CPU lacks.
    let features: Vec<&str> = v["cpu_features"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap())
        .collect();
    if cfg!(target_arch = "x86_64") {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap();
        let flags: Vec<&str> = cpuinfo
            .lines()
            .find(|l| l.starts_with("flags"))
            .unwrap()
            .split_whitespace()
            .collect();
        for (feature, flag) in [
            ("AVX", "avx"),
            ("AVX2", "avx2"),
            ("F16C", "f16c"),
            ("FMA", "fma"),
            ("AVX512", "avx512f"),
            ("AVX_VNNI", "avx_vnni"),
            ("AVX512_VNNI", "avx512_vnni"),
        ] {
            assert_eq!(
                features.contains(&feature),
                flags.contains(&flag),
                "{feature}: build uses it = {}, CPU has {flag} = {}; features {features:?}",
                features.contains(&feature),
                flags.contains(&flag)
            );
        }
    }
    let (ok, text, _) = nanolab(&["devices"]);
    assert!(ok);
    assert!(text.contains(" CPU "), "{text}");
    if gpus == 0 {
        let says = if cfg!(any(feature = "cuda", feature = "vulkan")) {
            "everything runs on the CPU"
        } else {
            "CPU build"
        };
        assert!(text.contains(says), "{text}");
    }
}

#[test]
fn extra_endpoints_without_a_remote_lane_are_refused_before_any_run() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let demo = demo_model();
    let out = tempfile::tempdir().unwrap();
    let set = root.join("assets/eval/prompts-demo.jsonl");
    let args = [
        "eval",
        "prompts",
        "--set",
        s(&set),
        "-l",
        s(&demo),
        // Nothing listens on the discard port: a run that used it would fail differently.
        "--endpoint",
        "http://127.0.0.1:9/v1",
        "--out",
        s(out.path()),
    ];
    fails_with(&args, "no lane here is remote");
    fails_with(&args, "-l URL#NAME");
    let written: Vec<_> = std::fs::read_dir(out.path()).unwrap().collect();
    assert!(written.is_empty(), "nothing is written: {written:?}");
}
