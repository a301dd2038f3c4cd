//! The architecture fixtures (tests/fixtures/archs, made by scripts/make-arch-fixtures.sh with
//! transformers, peft and llama.cpp's own converters, see the README there). For llama, mistral,
//! qwen2, qwen3 (with LoRA on embed_tokens and lm_head), gemma2 and phi3 (fused qkv_proj and
//! gate_up_proj):
//! - nanolab's import of peft's folder, and of the same tensors saved without the PEFT prefix or
//!   with `.default` names, equals `convert_lora_to_gguf.py`'s file tensor for tensor: names,
//!   shapes, values (exactly in f32, within f16 rounding in f16) and alpha;
//! - the engine gives the same greedy text with nanolab's file as with the converter's, and
//!   another text than the base model alone;
//! - the converter's file exported back to PEFT holds peft's own tensors, and peft itself loads
//!   that export onto the Hugging Face model with the logits of the adapter it saved;
//! - merging the qwen3 adapter adds peft's own embedding delta to the token embeddings;
//! - DoRA and modules_to_save folders saved by peft are refused naming the reason and tensor.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::nanolab_isolated as nanolab;
use crate::common::*;
use nanolab::gguf::{self, Value};

const ARCHS: [&str; 6] = ["llama", "mistral", "qwen2", "qwen3", "gemma2", "phi3"];

fn fixture(arch: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/archs")
        .join(arch)
}

fn path(p: &Path) -> String {
    p.display().to_string()
}

/// Tensors by name: (dims, f32 values).
type Tensors<D> = BTreeMap<String, (Vec<D>, Vec<f32>)>;

/// Every tensor of a GGUF, and its alpha.
fn gguf_tensors(p: &Path) -> (Tensors<u64>, f64) {
    let file = gguf::read(p).unwrap();
    let alpha = file.get("adapter.lora.alpha").and_then(Value::as_f64).unwrap();
    let tensors = file
        .tensors
        .iter()
        .map(|t| {
            let raw = file.read_tensor_bytes(t).unwrap();
            let values = nanolab::adapters::merge::dequantize(t, &raw).unwrap();
            (t.name.clone(), (t.dims.clone(), values))
        })
        .collect();
    (tensors, alpha)
}

fn import(arch: &str, folder: &str, ty: &str, out: &Path) -> String {
    let dir = fixture(arch);
    let (ok, stdout, stderr) = nanolab(&[
        "adapters",
        "import",
        &path(&dir.join(folder)),
        "--model",
        &path(&dir.join("base.gguf")),
        "--out",
        &path(out),
        "--type",
        ty,
    ]);
    assert!(ok, "{arch}/{folder}: {stderr}");
    stdout + &stderr
}

/// rsLoRA scales by alpha/sqrt(r), llama.cpp by alpha/r: nanolab writes alpha·sqrt(r) for it.
/// llama.cpp's converter writes the config's alpha as it is, so its file for an rsLoRA adapter
/// (the mistral fixture, r = 4) scales the adapter by half of what peft does.
fn expected_alpha(arch: &str, converter_alpha: f64) -> f64 {
    if arch == "mistral" {
        converter_alpha * 2.0
    } else {
        converter_alpha
    }
}

#[test]
fn import_equals_llama_cpp_converter_for_every_architecture() {
    let tmp = tempfile::tempdir().unwrap();
    for arch in ARCHS {
        let (reference, ref_alpha) = gguf_tensors(&fixture(arch).join("lora.gguf"));
        assert!(
            reference.len() >= 4,
            "{arch}: the converter wrote {} tensors",
            reference.len()
        );
        for (folder, ty) in [("peft", "f32"), ("peft-variant", "f16")] {
            let out = tmp.path().join(format!("{arch}-{folder}.gguf"));
            let said = import(arch, folder, ty, &out);
            let (mine, alpha) = gguf_tensors(&out);
            assert_eq!(alpha, expected_alpha(arch, ref_alpha), "{arch}/{folder}: alpha");
            assert_eq!(
                mine.keys().collect::<Vec<_>>(),
                reference.keys().collect::<Vec<_>>(),
                "{arch}/{folder}: tensor names"
            );
            for (name, (dims, values)) in &mine {
                let (ref_dims, ref_values) = &reference[name];
                assert_eq!(dims, ref_dims, "{arch}/{folder}: {name} shape");
                for (i, (x, r)) in values.iter().zip(ref_values).enumerate() {
                    let tolerance = if ty == "f32" { 0.0 } else { r.abs() / 2048.0 + 6e-8 };
                    assert!(
                        (x - r).abs() <= tolerance,
                        "{arch}/{folder}: {name}[{i}] = {x}, converter {r}"
                    );
                }
            }
            // peft saved lm_head's and embed_tokens' base weights beside their LoRA; skipped, said.
            if matches!(arch, "llama" | "qwen3") {
                assert!(
                    said.contains("skipped") && said.contains("base_layer"),
                    "{arch}: {said}"
                );
            }
        }
    }
}

fn greedy(model: &Path, adapter: Option<&str>) -> String {
    let model = path(model);
    let mut args = vec!["run", "-m", &model, "-p", "the lab runs", "-n", "24", "--json"];
    if let Some(a) = adapter {
        args.extend(["-a", a]);
    }
    let (ok, out, err) = nanolab(&args);
    assert!(ok, "{args:?}: {err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let n = v["generated_tokens"].as_u64().unwrap();
    assert!(n > 0, "{args:?}: {out}");
    format!("{n} tokens: {}", v["text"].as_str().unwrap())
}

#[test]
fn the_engine_runs_every_architecture_with_either_file_alike() {
    let tmp = tempfile::tempdir().unwrap();
    for arch in ARCHS {
        let dir = fixture(arch);
        let mine = tmp.path().join(format!("{arch}.gguf"));
        import(arch, "peft", "f32", &mine);
        let base = greedy(&dir.join("base.gguf"), None);
        // The converter's file needs twice the scale for the rsLoRA fixture (see expected_alpha).
        let scale = if arch == "mistral" { ":2" } else { "" };
        let theirs = greedy(
            &dir.join("base.gguf"),
            Some(&format!("{}{scale}", path(&dir.join("lora.gguf")))),
        );
        let ours = greedy(&dir.join("base.gguf"), Some(&path(&mine)));
        assert_eq!(ours, theirs, "{arch}: nanolab's import and the converter's file");
        assert_ne!(ours, base, "{arch}: the adapter changes nothing");
    }
}

fn safetensors(p: &Path) -> Tensors<usize> {
    let bytes = std::fs::read(p).unwrap();
    let st = ::safetensors::SafeTensors::deserialize(&bytes).unwrap();
    st.tensors()
        .into_iter()
        .filter(|(name, _)| !name.contains(".base_layer."))
        .map(|(name, v)| {
            assert_eq!(v.dtype(), ::safetensors::Dtype::F32, "{name}");
            let data = v
                .data()
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            (name, (v.shape().to_vec(), data))
        })
        .collect()
}

#[test]
fn export_gives_peft_its_own_tensors_back_and_peft_loads_it() {
    let tmp = tempfile::tempdir().unwrap();
    let python = venv_python("py-fixtures");
    let checker = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/archs/peft_load.py");
    for arch in ARCHS {
        let dir = fixture(arch);
        let out = tmp.path().join(arch);
        let (ok, _, err) = nanolab(&[
            "adapters",
            "export",
            &path(&dir.join("lora.gguf")),
            "--peft",
            &path(&out),
            "--model",
            &path(&dir.join("base.gguf")),
        ]);
        assert!(ok, "{arch}: {err}");
        if arch == "mistral" {
            // The converter's file lost rsLoRA (see expected_alpha); export nanolab's own import.
            let mine = tmp.path().join("mistral.gguf");
            import(arch, "peft", "f32", &mine);
            std::fs::remove_dir_all(&out).unwrap();
            let (ok, _, err) = nanolab(&[
                "adapters",
                "export",
                &path(&mine),
                "--peft",
                &path(&out),
                "--model",
                &path(&dir.join("base.gguf")),
            ]);
            assert!(ok, "{arch}: {err}");
        }
        let theirs = safetensors(&dir.join("peft/adapter_model.safetensors"));
        let ours = safetensors(&out.join("adapter_model.safetensors"));
        assert_eq!(ours, theirs, "{arch}: exported tensors");

        let run = Command::new(&python)
            .arg(&checker)
            .args([dir.join("hf"), dir.join("peft"), out.clone()])
            .output()
            .unwrap();
        let said = String::from_utf8_lossy(&run.stdout);
        assert!(
            run.status.success(),
            "{arch}: {said} {}",
            String::from_utf8_lossy(&run.stderr)
        );
        let v: serde_json::Value = serde_json::from_str(said.trim()).unwrap();
        let (diff, effect) = (
            v["max_abs_diff"].as_f64().unwrap(),
            v["adapter_effect"].as_f64().unwrap(),
        );
        assert!(
            effect > 0.1,
            "{arch}: the reference adapter moves logits by only {effect}"
        );
        // mistral's export is rsLoRA written as plain LoRA with alpha·sqrt(r): the same scale.
        assert!(diff < 1e-4, "{arch}: peft's logits with the export differ by {diff}");
    }
}

#[test]
fn merging_an_embedding_lora_adds_peft_s_delta_to_the_token_embeddings() {
    // Expected from peft's own tensors: ΔE[v][e] = alpha/r · Σ_k A[k][v] · B[e][k].
    let dir = fixture("qwen3");
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("merged.gguf");
    nanolab::adapters::merge::merge(
        &dir.join("base.gguf"),
        &[(dir.join("lora.gguf"), 1.0)],
        &out,
        nanolab::adapters::merge::MergedType::F32,
        &mut |_| {},
    )
    .unwrap();
    let tensor = |p: &Path, name: &str| {
        let f = gguf::read(p).unwrap();
        let t = f.tensor(name).unwrap().clone();
        let raw = f.read_tensor_bytes(&t).unwrap();
        (t.dims.clone(), nanolab::adapters::merge::dequantize(&t, &raw).unwrap())
    };
    let (dims, base) = tensor(&dir.join("base.gguf"), "token_embd.weight");
    let (_, merged) = tensor(&out, "token_embd.weight");
    let (embd, vocab) = (dims[0] as usize, dims[1] as usize);
    let peft = safetensors(&dir.join("peft/adapter_model.safetensors"));
    let (a_shape, a) = &peft["base_model.model.model.embed_tokens.lora_embedding_A"];
    let (b_shape, b) = &peft["base_model.model.model.embed_tokens.lora_embedding_B"];
    let r = a_shape[0];
    assert_eq!((a_shape[1], b_shape[0], b_shape[1]), (vocab, embd, r));
    let scale = 8.0 / r as f32;
    let mut moved = 0f32;
    for v in 0..vocab {
        for e in 0..embd {
            let delta: f32 = (0..r).map(|k| a[k * vocab + v] * b[e * r + k]).sum();
            let (want, got) = (base[v * embd + e] + scale * delta, merged[v * embd + e]);
            assert!(
                (want - got).abs() <= 1e-4 * (1.0 + want.abs()),
                "[{v}][{e}]: {got} vs {want}"
            );
            moved = moved.max((got - base[v * embd + e]).abs());
        }
    }
    assert!(moved > 1e-3, "the merge left the embeddings as they were");
}

#[test]
fn peft_folders_llama_cpp_cannot_run_are_refused_with_the_reason() {
    let tmp = tempfile::tempdir().unwrap();
    let base = fixture("llama").join("base.gguf");
    for (folder, why) in [
        ("dora", "lora_magnitude_vector"),
        ("modules-to-save", "base_model.model.lm_head.weight"),
    ] {
        let dir = fixture("refused").join(folder);
        let out = tmp.path().join(format!("{folder}.gguf"));
        let (ok, _, err) = nanolab(&[
            "adapters",
            "import",
            &path(&dir),
            "--model",
            &path(&base),
            "--out",
            &path(&out),
        ]);
        assert!(!ok && err.contains(why), "{folder}: {err}");
        assert!(
            !out.exists() && !out.with_extension("gguf.partial").exists(),
            "{folder}: left a file"
        );
    }
}

#[test]
fn mlx_export_refuses_embedding_and_lm_head_pairs() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = fixture("qwen3");
    let (ok, _, err) = nanolab(&[
        "adapters",
        "export",
        &path(&dir.join("lora.gguf")),
        "--mlx",
        &path(&tmp.path().join("mlx")),
    ]);
    assert!(!ok && err.contains("token embeddings"), "{err}");
}
