//! Scenes headless: `scene check` finds every file by sha256 and names a tampered one,
//! `scene run` replays every lane on every prompt equal to `nanolab run`, `scene pack` makes a
//! zip that opens elsewhere, and `arena stats` prints the statistics of known votes.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::*;

fn demo_scene() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("assets/scenes/demo.json")
}

/// nanolab with a registry of its own (no static pins from the user's) and the project's
/// models folder.
fn nanolab(args: &[&str], dir: &Path) -> (bool, String, String) {
    nanolab_env(args, dir, &[])
}

fn nanolab_env(args: &[&str], dir: &Path, env: &[(&str, &Path)]) -> (bool, String, String) {
    let mut cmd = Command::new(exe());
    cmd.args(args).env("NANOLAB_REGISTRY", dir.join("registry.json"));
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run nanolab");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The demo scene rewritten into `dir` with absolute paths (so it can sit anywhere).
fn scene_in(dir: &Path, edit: impl Fn(&mut serde_json::Value)) -> PathBuf {
    let mut v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(demo_scene()).unwrap()).unwrap();
    let root = demo_scene().parent().unwrap().to_path_buf();
    let abs = |p: &serde_json::Value| serde_json::Value::String(root.join(p.as_str().unwrap()).display().to_string());
    for lane in v["lanes"].as_array_mut().unwrap() {
        lane["model"]["path"] = abs(&lane["model"]["path"]);
        for a in lane["adapters"].as_array_mut().unwrap() {
            a["path"] = abs(&a["path"]);
        }
    }
    v["prompt_set"]["path"] = abs(&v["prompt_set"]["path"]);
    edit(&mut v);
    let path = dir.join("scene.json");
    std::fs::write(&path, serde_json::to_string_pretty(&v).unwrap()).unwrap();
    path
}

#[test]
fn the_demo_scene_checks_and_a_tampered_adapter_is_named_with_both_hashes() {
    let dir = tempfile::tempdir().unwrap();
    let (ok, out, err) = nanolab(&["scene", "check", demo_scene().to_str().unwrap()], dir.path());
    assert!(ok, "{err}");
    assert!(out.contains("2 lanes, 4 files found"), "{out}");

    let tampered = dir.path().join("smollm2-caps.gguf");
    let mut bytes = std::fs::read(caps_adapter()).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&tampered, &bytes).unwrap();
    let actual = nanolab::models::sha256_file(&tampered).unwrap();
    let scene = scene_in(dir.path(), |v| {
        v["lanes"][1]["adapters"][0]["path"] = tampered.display().to_string().into();
    });
    // The project's adapters folder is where a moved adapter is looked for too; point it at an
    // empty one so only the tampered copy is found.
    let empty = dir.path().join("no-adapters");
    std::fs::create_dir_all(&empty).unwrap();
    let (ok, _, err) = nanolab_env(
        &["scene", "check", scene.to_str().unwrap()],
        dir.path(),
        &[("NANOLAB_ADAPTERS", &empty)],
    );
    assert!(!ok, "a changed adapter must fail the check");
    assert!(err.contains("lane 2 adapter 1"), "{err}");
    assert!(err.contains(&tampered.display().to_string()), "{err}");
    assert!(
        err.contains("d7873015601e88ff25806853c7763cedf2889dd41b511a41c84969812010829c"),
        "expected hash named: {err}"
    );
    assert!(err.contains(&actual), "actual hash named: {err}");
    // With the JSON flag the same problem is machine-readable.
    let (_, out, _) = nanolab_env(
        &["scene", "check", "--json", scene.to_str().unwrap()],
        dir.path(),
        &[("NANOLAB_ADAPTERS", &empty)],
    );
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["ok"], false);
    assert_eq!(v["problems"][0]["actual"], actual.as_str());
}

#[test]
fn scene_run_replays_every_lane_on_every_prompt_equal_to_nanolab_run() {
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("bundle");
    let (ok, out, err) = nanolab(
        &[
            "scene",
            "run",
            demo_scene().to_str().unwrap(),
            "--json",
            "--out",
            out_dir.to_str().unwrap(),
        ],
        dir.path(),
    );
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let runs = v["detail"]["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 2 * 3, "two lanes × three prompts");
    for name in ["results.json", "results.csv", "manifest.json", "runs.csv", "lanes.png"] {
        assert!(out_dir.join(name).is_file(), "{name} in the bundle");
    }
    let set = std::fs::read_to_string(demo_scene().parent().unwrap().join("../eval/prompts-demo.jsonl")).unwrap();
    let model = demo_model();
    let caps = caps_adapter();
    for line in set.lines() {
        let case: serde_json::Value = serde_json::from_str(line).unwrap();
        let prompt = case["prompt"].as_str().unwrap();
        let n = case["max_tokens"].as_u64().unwrap().to_string();
        for (lane, adapters) in [("base", vec![]), ("base + caps", vec!["-a", caps.to_str().unwrap()])] {
            let mut args = vec![
                "run",
                "-m",
                model.to_str().unwrap(),
                "--chat",
                prompt,
                "-n",
                &n,
                "--json",
            ];
            args.extend(adapters);
            let (ok, out, err) = nanolab(&args, dir.path());
            assert!(ok, "{err}");
            let alone: serde_json::Value = serde_json::from_str(&out).unwrap();
            let run = runs
                .iter()
                .find(|r| r["lane"] == lane && r["prompt_id"] == case["id"])
                .unwrap_or_else(|| panic!("a run of {lane} on {}", case["id"]));
            assert_eq!(run["text"], alone["text"], "{lane} on {}", case["id"]);
        }
    }
    // The caps lane shouts where the base does not: the replay ran the stack the scene names.
    let shout = runs
        .iter()
        .find(|r| r["lane"] == "base + caps" && r["prompt_id"] == "shouting")
        .unwrap();
    assert_eq!(shout["passed"], true, "{shout}");
}

#[test]
fn a_packed_scene_unpacked_elsewhere_opens_with_or_without_the_models_inside() {
    let dir = tempfile::tempdir().unwrap();
    let demo = demo_scene();
    for with_models in [false, true] {
        let zip_path = dir.path().join(format!("demo-{with_models}.zip"));
        let mut args = vec![
            "scene",
            "pack",
            demo.to_str().unwrap(),
            "--out",
            zip_path.to_str().unwrap(),
        ];
        if with_models {
            args.push("--with-models");
        }
        let (ok, out, err) = nanolab(&args, dir.path());
        assert!(ok, "{err}");
        assert!(out.contains("adapters/smollm2-caps.gguf"), "{out}");
        let unpacked = dir.path().join(format!("elsewhere-{with_models}"));
        let mut zip = zip::ZipArchive::new(std::fs::File::open(&zip_path).unwrap()).unwrap();
        zip.extract(&unpacked).unwrap();
        assert_eq!(
            zip.by_name("models/SmolLM2-135M-Instruct.Q4_1.gguf").is_ok(),
            with_models,
            "the model is inside only when asked"
        );
        // Neither the project's adapters nor (with the models inside) its models are reachable.
        let empty = dir.path().join("empty");
        std::fs::create_dir_all(&empty).unwrap();
        let models = if with_models {
            empty.clone()
        } else {
            demo_model().parent().unwrap().to_path_buf()
        };
        let scene = unpacked.join("scene.json");
        let (ok, out, err) = nanolab_env(
            &["scene", "check", "--json", scene.to_str().unwrap()],
            dir.path(),
            &[("NANOLAB_ADAPTERS", &empty), ("NANOLAB_MODELS", &models)],
        );
        assert!(ok, "{err}");
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        let adapter = v["lanes"][1]["adapters"][0].as_str().unwrap();
        assert!(
            Path::new(adapter).starts_with(&unpacked),
            "the adapter is the packed copy: {adapter}"
        );
        let model = v["lanes"][0]["model"].as_str().unwrap();
        assert_eq!(Path::new(model).starts_with(&unpacked), with_models, "{model}");
    }
    // Without --with-models and no model anywhere, the check says how to get it back.
    let unpacked = dir.path().join("elsewhere-false/scene.json");
    let empty = dir.path().join("empty");
    let (ok, _, err) = nanolab_env(
        &["scene", "check", unpacked.to_str().unwrap()],
        dir.path(),
        &[("NANOLAB_MODELS", &empty)],
    );
    assert!(!ok);
    assert!(err.contains("lane 1 model") && err.contains("is missing"), "{err}");
    assert!(err.contains("nanolab models fetch smollm2-135m-instruct"), "{err}");
}

#[test]
fn arena_stats_prints_the_hand_computed_win_rates_intervals_and_ratings() {
    let dir = tempfile::tempdir().unwrap();
    // A beats B 2:1, B beats C 2:1, A beats C 4:1 (strengths 4:2:1 fit exactly), one both-bad.
    let mut votes = Vec::new();
    let mut add = |shown: [&str; 2], verdict: serde_json::Value, n: usize| {
        for _ in 0..n {
            votes.push(serde_json::json!({ "prompt_id": "p", "tags": ["t"], "shown": shown, "verdict": verdict }));
        }
    };
    add(["A", "B"], serde_json::json!({ "pick": 0 }), 2);
    add(["A", "B"], serde_json::json!({ "pick": 1 }), 1);
    add(["B", "C"], serde_json::json!({ "pick": 0 }), 2);
    add(["C", "B"], serde_json::json!({ "pick": 0 }), 1);
    add(["A", "C"], serde_json::json!({ "pick": 0 }), 4);
    add(["A", "C"], serde_json::json!({ "pick": 1 }), 1);
    let scene = scene_in(dir.path(), |v| {
        v["arena"] = serde_json::json!({ "seed": 9, "votes": votes });
    });
    let (ok, out, err) = nanolab(&["arena", "stats", "--json", scene.to_str().unwrap()], dir.path());
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let rows = v["rows"].as_array().unwrap();
    let a = rows.iter().find(|r| r["stack"] == "A").unwrap();
    assert_eq!(a["games"], 8);
    assert_eq!(a["wins"], 6);
    assert!((a["win_rate"].as_f64().unwrap() - 0.75).abs() < 1e-9);
    // Wilson 95 % for 6 of 8: 0.4093 – 0.9285.
    assert!((a["wilson_low"].as_f64().unwrap() - 0.4093).abs() < 1e-4, "{a}");
    assert!((a["wilson_high"].as_f64().unwrap() - 0.9285).abs() < 1e-4, "{a}");
    // Elo-scale Bradley-Terry of strengths 4:2:1, mean 0: ±400·log10(2) = ±120.4.
    assert!((a["bradley_terry"].as_f64().unwrap() - 120.41).abs() < 0.01, "{a}");
    let c = rows.iter().find(|r| r["stack"] == "C").unwrap();
    assert!((c["bradley_terry"].as_f64().unwrap() + 120.41).abs() < 0.01, "{c}");
    let (ok, table, _) = nanolab(&["arena", "stats", scene.to_str().unwrap()], dir.path());
    assert!(ok);
    assert!(
        table.contains("| A | 8 | 6 | 0 | 2 | 0 | 75.0 % | 40.9 – 92.9 % | +120 |"),
        "{table}"
    );
    // No votes: a clear error, not an empty table.
    let (ok, _, err) = nanolab(&["arena", "stats", demo_scene().to_str().unwrap()], dir.path());
    assert!(!ok);
    assert!(err.contains("no arena votes yet"), "{err}");
}
