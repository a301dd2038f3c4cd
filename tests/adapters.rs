//! The LoRA workbench on the demo model: PEFT import (checked against a reference computed here
//! from the PEFT weights), merge vs runtime adapters, stacking and hot-swap, registry CLI.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::*;
use nanolab::adapters::merge::{self, MergedType};
use nanolab::adapters::peft::{self, OutType};
use nanolab::gguf::{self, Value};
use nanolab::protocol::*;

const RANK: usize = 4;
const N_EMBD: usize = 576;
const N_KV: usize = 192;
const N_HEAD: usize = 9;
const N_HEAD_KV: usize = 3;

/// Deterministic pseudo-random values in [-amp, amp].
fn values(seed: u64, n: usize, amp: f32) -> Vec<f32> {
    let mut s = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((s >> 33) as f32 / (1u64 << 31) as f32 * 2.0 - 1.0) * amp
        })
        .collect()
}

/// (hf module, out features) for the projections the fake adapter targets.
const MODULES: [(&str, usize); 4] = [
    ("q_proj", N_EMBD),
    ("k_proj", N_KV),
    ("v_proj", N_KV),
    ("o_proj", N_EMBD),
];

/// Writes a PEFT folder for the demo model: layers 0-3, q/k/v/o, rank 4, alpha 8.
fn write_peft(dir: &Path, amp: f32) -> BTreeMap<String, (Vec<f32>, Vec<f32>, usize)> {
    std::fs::create_dir_all(dir).unwrap();
    let mut weights = BTreeMap::new();
    let mut bytes: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
    for layer in 0..4 {
        for (k, (module, out)) in MODULES.iter().enumerate() {
            let seed = (layer * 10 + k) as u64;
            let a = values(seed, RANK * N_EMBD, amp);
            let b = values(seed + 1000, out * RANK, amp);
            let prefix = format!("base_model.model.model.layers.{layer}.self_attn.{module}");
            bytes.push((
                format!("{prefix}.lora_A.weight"),
                vec![RANK, N_EMBD],
                a.iter().flat_map(|v| v.to_le_bytes()).collect(),
            ));
            bytes.push((
                format!("{prefix}.lora_B.weight"),
                vec![*out, RANK],
                b.iter().flat_map(|v| v.to_le_bytes()).collect(),
            ));
            weights.insert(format!("{layer}.{module}"), (a, b, *out));
        }
    }
    let views: Vec<(String, safetensors::tensor::TensorView)> = bytes
        .iter()
        .map(|(n, shape, data)| {
            (
                n.clone(),
                safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.clone(), data).unwrap(),
            )
        })
        .collect();
    let st = safetensors::serialize(views, None).unwrap();
    std::fs::write(dir.join("adapter_model.safetensors"), st).unwrap();
    std::fs::write(
        dir.join("adapter_config.json"),
        r#"{"peft_type":"LORA","r":4,"lora_alpha":8,"target_modules":["q_proj","k_proj","v_proj","o_proj"],"base_model_name_or_path":"HuggingFaceTB/SmolLM2-135M-Instruct"}"#,
    )
    .unwrap();
    weights
}

/// The reference Q/K reordering written independently of the importer: within each head,
/// rows [first half | second half] are interleaved as first[0], second[0], first[1], …
fn interleave_heads(rows: &[Vec<f32>], n_head: usize) -> Vec<Vec<f32>> {
    let per_head = rows.len() / n_head;
    let half = per_head / 2;
    let mut out = Vec::new();
    for h in 0..n_head {
        let block = &rows[h * per_head..(h + 1) * per_head];
        for i in 0..half {
            out.push(block[i].clone());
            out.push(block[half + i].clone());
        }
    }
    out
}

fn f32s(raw: &[u8]) -> Vec<f32> {
    raw.chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

/// Builds, from the PEFT weights directly, the GGUF adapter llama.cpp expects (reference path).
fn reference_adapter(path: &Path, weights: &BTreeMap<String, (Vec<f32>, Vec<f32>, usize)>) {
    let f32_type = gguf::GgmlType::from_name("F32").unwrap();
    let mut tensors = Vec::new();
    for (key, (a, b, out)) in weights {
        let (layer, module) = key.split_once('.').unwrap();
        let gg = match module {
            "q_proj" => "attn_q",
            "k_proj" => "attn_k",
            "v_proj" => "attn_v",
            _ => "attn_output",
        };
        let rows: Vec<Vec<f32>> = b.chunks(RANK).map(<[f32]>::to_vec).collect();
        let rows = match module {
            "q_proj" => interleave_heads(&rows, N_HEAD),
            "k_proj" => interleave_heads(&rows, N_HEAD_KV),
            _ => rows,
        };
        let b_flat: Vec<f32> = rows.concat();
        tensors.push(nanolab::gguf::writer::TensorData {
            name: format!("blk.{layer}.{gg}.weight.lora_a"),
            dims: vec![N_EMBD as u64, RANK as u64],
            ggml_type: f32_type,
            data: nanolab::gguf::writer::f32_bytes(a),
        });
        tensors.push(nanolab::gguf::writer::TensorData {
            name: format!("blk.{layer}.{gg}.weight.lora_b"),
            dims: vec![RANK as u64, *out as u64],
            ggml_type: f32_type,
            data: nanolab::gguf::writer::f32_bytes(&b_flat),
        });
    }
    let md = vec![
        ("general.architecture".to_string(), Value::Str("llama".into())),
        ("general.type".to_string(), Value::Str("adapter".into())),
        ("adapter.type".to_string(), Value::Str("lora".into())),
        ("adapter.lora.alpha".to_string(), Value::F64(8.0)),
    ];
    let mut f = std::fs::File::create(path).unwrap();
    nanolab::gguf::writer::write(&mut f, &md, &tensors).unwrap();
}

fn tokens_of(events: &[Event]) -> Vec<(i32, f32, Vec<TopToken>)> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Token {
                token_id, prob, top, ..
            } if *token_id >= 0 => Some((*token_id, *prob, top.clone())),
            _ => None,
        })
        .collect()
}

#[test]
fn peft_import_equals_the_reference_layout_and_warns_on_tokenizer_changes() {
    let demo = demo_model();
    let base = gguf::read(&demo).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let peft_dir = dir.path().join("my-peft");
    let weights = write_peft(&peft_dir, 0.05);
    std::fs::write(
        peft_dir.join("tokenizer.json"),
        r#"{"version":"1.0","truncation":null,"padding":null,"added_tokens":[],"normalizer":null,"pre_tokenizer":null,"post_processor":null,"decoder":null,"model":{"type":"WordLevel","vocab":{"<|endoftext|>":0,"hello-new":49152,"changed":5},"unk_token":"<|endoftext|>"}}"#,
    )
    .unwrap();
    let out = dir.path().join("my.gguf");
    let report = peft::import(&peft_dir, &base, &out, OutType::F32).unwrap();
    assert_eq!(report.targets, 16);
    assert_eq!(report.rank, 4);
    assert!(
        report.warnings.iter().any(|w| w.contains("adds 1 tokens")),
        "{:?}",
        report.warnings
    );
    assert!(
        report.warnings.iter().any(|w| w.contains("changes 1 token ids")),
        "{:?}",
        report.warnings
    );

    let reference = dir.path().join("reference.gguf");
    reference_adapter(&reference, &weights);
    let got = gguf::read(&out).unwrap();
    let want = gguf::read(&reference).unwrap();
    assert_eq!(got.get_str("general.architecture"), Some("llama"));
    assert_eq!(got.get("adapter.lora.alpha").and_then(Value::as_f64), Some(8.0));
    for t in &want.tensors {
        let g = got.tensor(&t.name).unwrap_or_else(|| panic!("{} missing", t.name));
        assert_eq!(g.dims, t.dims, "{}", t.name);
        assert_eq!(
            f32s(&got.read_tensor_bytes(g).unwrap()),
            f32s(&want.read_tensor_bytes(t).unwrap()),
            "{} differs from the reference",
            t.name
        );
    }
    // f16 and q8_0 outputs load and check too, and are smaller.
    for (ty, name) in [(OutType::F16, "f16.gguf"), (OutType::Q8_0, "q8.gguf")] {
        let p = dir.path().join(name);
        let r = peft::import(&peft_dir, &base, &p, ty).unwrap();
        assert!(r.file_bytes < report.file_bytes);
        nanolab::adapters::validate_adapter_file(&p, &base).unwrap();
    }
    // A broken config is refused with the reason, and nothing is written.
    std::fs::write(peft_dir.join("adapter_config.json"), r#"{"r": 0, "lora_alpha": 8}"#).unwrap();
    let err = peft::import(&peft_dir, &base, &dir.path().join("x.gguf"), OutType::F16).unwrap_err();
    assert!(err.to_string().contains("rank r = 0"), "{err}");
    assert!(!dir.path().join("x.gguf").exists());
}

#[test]
fn imported_adapter_matches_the_reference_merged_into_the_weights() {
    let demo = demo_model();
    let base = gguf::read(&demo).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let weights = write_peft(&dir.path().join("p"), 0.08);
    let imported = dir.path().join("imported.gguf");
    peft::import(&dir.path().join("p"), &base, &imported, OutType::F32).unwrap();
    // Reference: the PEFT weights, laid out by this test, merged into the base weights.
    let reference = dir.path().join("reference.gguf");
    reference_adapter(&reference, &weights);
    let merged = dir.path().join("merged.gguf");
    let scale = 0.7;
    merge::merge(
        &demo,
        &[(reference.clone(), scale)],
        &merged,
        MergedType::F32,
        &mut |_| {},
    )
    .unwrap();

    let mut c = client();
    let prompt = "The history of the bicycle";
    let (base_ev, base_end) = generate(&mut c, lane(1, &demo, 512, vec![]), prompt, greedy(12));
    let spec = vec![AdapterSpec {
        path: imported.clone(),
        scale,
    }];
    let (rt_ev, rt_end) = generate(&mut c, lane(2, &demo, 512, spec), prompt, greedy(12));
    let (mg_ev, mg_end) = generate(&mut c, lane(3, &merged, 512, vec![]), prompt, greedy(12));
    let (b, r, m) = (stats(&base_end), stats(&rt_end), stats(&mg_end));
    assert_ne!(b.text, r.text, "the adapter should change the output");
    let (rt, mg) = (tokens_of(&rt_ev), tokens_of(&mg_ev));
    // The first tokens agree, with probabilities within a small tolerance (the base is Q4_1 at
    // run time and dequantized to f32 in the merged file).
    let n = 4.min(rt.len()).min(mg.len());
    assert!(n >= 4);
    for i in 0..n {
        assert_eq!(
            rt[i].0, mg[i].0,
            "token {i}: runtime {:?} vs merged {:?}",
            r.text, m.text
        );
        assert!(
            (rt[i].1 - mg[i].1).abs() < 0.05,
            "token {i}: p {} vs {}",
            rt[i].1,
            mg[i].1
        );
    }
    let _ = base_ev;
}

#[test]
fn hot_swap_stack_and_scale_changes_need_no_reload() {
    let demo = demo_model();
    let base = gguf::read(&demo).unwrap();
    let dir = tempfile::tempdir().unwrap();
    write_peft(&dir.path().join("a"), 0.08);
    let a = dir.path().join("a.gguf");
    peft::import(&dir.path().join("a"), &base, &a, OutType::F16).unwrap();
    let zero = dir.path().join("zero.gguf");
    write_lora(&zero, 576, 30);
    let mut c = client();
    let prompt = "My favourite food is";
    let s0 = stats(&generate(&mut c, lane(1, &demo, 512, vec![]), prompt, greedy(10)).1);
    let with = |p: &PathBuf, s: f32| AdapterSpec {
        path: p.clone(),
        scale: s,
    };
    let s1 = stats(&generate(&mut c, lane(1, &demo, 512, vec![with(&a, 1.0)]), prompt, greedy(10)).1);
    assert_eq!(s1.load_ms, 0.0, "adding an adapter must not reload the model");
    assert!(!s1.lane.context_created, "nor recreate the context");
    assert!(s1.lane.adapter_swap_ms > 0.0 && s1.lane.adapter_swap_ms < s0.lane.model.load_ms);
    assert_ne!(s1.text, s0.text);
    // Scale 0 reproduces the base exactly; so does removing the adapter.
    let s2 = stats(&generate(&mut c, lane(1, &demo, 512, vec![with(&a, 0.0)]), prompt, greedy(10)).1);
    assert_eq!(s2.text, s0.text);
    let s3 = stats(&generate(&mut c, lane(1, &demo, 512, vec![]), prompt, greedy(10)).1);
    assert_eq!(s3.text, s0.text);
    // A stack (adapter + zero adapter) equals the adapter alone; a scale change applies at once.
    let s4 = stats(
        &generate(
            &mut c,
            lane(1, &demo, 512, vec![with(&a, 1.0), with(&zero, 1.0)]),
            prompt,
            greedy(10),
        )
        .1,
    );
    assert_eq!(s4.text, s1.text);
    let s5 = stats(
        &generate(
            &mut c,
            lane(1, &demo, 512, vec![with(&a, 1.0), with(&a, -1.0)]),
            prompt,
            greedy(10),
        )
        .1,
    );
    assert_eq!(s5.text, s0.text, "an adapter and its negative cancel out");
    // Two lanes on one model hold different stacks at the same time.
    let l2 = stats(&generate(&mut c, lane(2, &demo, 512, vec![with(&a, 1.0)]), prompt, greedy(10)).1);
    let l1 = stats(&generate(&mut c, lane(1, &demo, 512, vec![]), prompt, greedy(10)).1);
    assert_eq!(l2.text, s1.text);
    assert_eq!(l1.text, s0.text);
    assert_eq!(status(&mut c).models.len(), 1);
}

fn nanolab(args: &[&str], registry: &Path) -> (bool, String, String) {
    let out = Command::new(exe())
        .args(args)
        .env("NANOLAB_REGISTRY", registry)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

#[test]
fn registry_lists_checks_pins_and_notes() {
    let demo = demo_model();
    let dir = tempfile::tempdir().unwrap();
    let reg = dir.path().join("registry.json");
    let folder = dir.path().join("mine");
    std::fs::create_dir_all(&folder).unwrap();
    let good = folder.join("zero.gguf");
    write_lora(&good, 576, 30);
    let wide = folder.join("wide.gguf");
    write_lora(&wide, 2048, 30);
    let d = demo.to_str().unwrap();
    assert!(nanolab(&["adapters", "add-folder", folder.to_str().unwrap()], &reg).0);
    let (ok, out, _) = nanolab(&["adapters", "list", "--json"], &reg);
    assert!(ok);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let names: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"zero") && names.contains(&"wide"), "{names:?}");
    let zero = v.as_array().unwrap().iter().find(|e| e["name"] == "zero").unwrap();
    assert_eq!(zero["ranks"][0], 4);
    assert_eq!(zero["sha256"].as_str().unwrap().len(), 64);
    // Filtered by compatibility with the demo model.
    let (_, out, _) = nanolab(&["adapters", "list", "--json", "--model", d], &reg);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let names: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"zero") && !names.contains(&"wide"), "{names:?}");
    let (ok, out, _) = nanolab(
        &[
            "adapters",
            "check",
            "--model",
            d,
            good.to_str().unwrap(),
            wide.to_str().unwrap(),
        ],
        &reg,
    );
    assert!(!ok);
    assert!(out.contains("ok    ") && out.contains("n_embd 2048"), "{out}");
    // Notes and a static pin, applied by `run`.
    assert!(
        nanolab(
            &[
                "adapters",
                "note",
                good.to_str().unwrap(),
                "--tag",
                "test",
                "--notes",
                "zero delta"
            ],
            &reg
        )
        .0
    );
    assert!(nanolab(&["adapters", "pin", good.to_str().unwrap(), "--model", d], &reg).0);
    let (_, out, _) = nanolab(&["adapters", "inspect", good.to_str().unwrap(), "--json"], &reg);
    let e: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(e["tags"][0], "test");
    assert_eq!(e["notes"], "zero delta");
    assert_eq!(e["static_for"][0], "SmolLM2-135M-Instruct.Q4_1.gguf");
    let (ok, out, err) = nanolab(&["run", "-m", d, "-p", "Hi", "-n", "2", "--json"], &reg);
    assert!(ok, "{err}");
    assert!(err.contains("static adapter"), "{err}");
    let s: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(s["lane"]["adapter_bytes"].as_u64().unwrap() > 0);
    assert!(
        nanolab(&["adapters", "pin", wide.to_str().unwrap(), "--model", d], &reg)
            .2
            .contains("n_embd 2048")
    );
}

#[test]
fn a_static_pin_applies_to_run_eval_diverge_and_bench_alike() {
    let dir = tempfile::tempdir().unwrap();
    let registry = dir.path().join("registry.json");
    let demo = demo_model();
    let caps = caps_adapter();
    let (demo_s, caps_s) = (demo.to_str().unwrap(), caps.to_str().unwrap());
    let (ok, _, err) = nanolab(&["adapters", "pin", caps_s, "--model", demo_s], &registry);
    assert!(ok, "{err}");
    let prompt = "The capital of France is";
    let run = |extra: &[&str]| {
        let mut args = vec!["run", "-m", demo_s, "-p", prompt, "-n", "16", "--json"];
        args.extend_from_slice(extra);
        let (ok, out, err) = nanolab(&args, &registry);
        assert!(ok, "{err}");
        serde_json::from_str::<serde_json::Value>(&out).unwrap()["text"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let pinned = run(&[]);
    let base = run(&["--no-static"]);
    assert_eq!(
        pinned,
        run(&["--no-static", "-a", caps_s]),
        "the pin is the caps adapter at scale 1"
    );
    assert_ne!(pinned, base);

    // diverge: lane A (the bare model name) generates with its pin.
    let diverge = |extra: &[&str]| {
        let mut args = vec![
            "diverge", "--a", demo_s, "--b", demo_s, "-p", prompt, "-n", "16", "--json",
        ];
        args.extend_from_slice(extra);
        let (ok, out, err) = nanolab(&args, &registry);
        assert!(ok, "{err}");
        serde_json::from_str::<serde_json::Value>(&out).unwrap()["detail"]["text"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(diverge(&[]), pinned);
    assert_eq!(diverge(&["--no-static"]), base);

    // eval prompts: the demo set scores 1/3 with the caps pin, 2/3 without (tests/eval.rs).
    let set = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/eval/prompts-demo.jsonl");
    let score = |extra: &[&str]| {
        let mut args = vec![
            "eval",
            "prompts",
            "--set",
            set.to_str().unwrap(),
            "-l",
            demo_s,
            "--temp",
            "0",
            "--seeds",
            "1",
            "--json",
        ];
        args.extend_from_slice(extra);
        let (ok, out, err) = nanolab(&args, &registry);
        assert!(ok, "{err}");
        serde_json::from_str::<serde_json::Value>(&out).unwrap()["rows"][0]["pass_rate"]
            .as_f64()
            .unwrap()
    };
    assert!((score(&[]) - 1.0 / 3.0).abs() < 1e-9);
    assert!((score(&["--no-static"]) - 2.0 / 3.0).abs() < 1e-9);

    // bench: the nanolab rows run with the pin, and say so.
    let bench = |extra: &[&str]| {
        let mut args = vec![
            "bench",
            "-m",
            demo_s,
            "-p",
            "16",
            "-n",
            "4",
            "-r",
            "1",
            "--no-baseline",
            "-o",
            "json",
        ];
        args.extend_from_slice(extra);
        let (ok, _, err) = nanolab(&args, &registry);
        assert!(ok, "{err}");
        err
    };
    let err = bench(&[]);
    assert!(
        err.contains("static adapter: ") && err.contains("smollm2-caps.gguf"),
        "{err}"
    );
    assert!(err.contains("include 1 static adapter"), "{err}");
    assert!(!bench(&["--no-static"]).contains("static adapter"));
}
