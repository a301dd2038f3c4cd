//! `nanolab bench` output shape (the performance targets themselves are read from the benchmark's
//! printed ratios, not asserted here).

mod common;

use std::process::Command;

use common::*;

#[test]
fn bench_reports_llama_bench_fields_for_nanolab_and_the_baseline() {
    let demo = demo_model();
    let t0 = std::time::Instant::now();
    let out = Command::new(exe())
        .args([
            "bench",
            "-m",
            demo.to_str().unwrap(),
            "-p",
            "64",
            "-n",
            "16",
            "-r",
            "2",
            "-o",
            "json",
            "--adapter-ranks",
            "4",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // llama-bench's shape: an array of rows on stdout, notes on stderr.
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let rows = v.as_array().unwrap();
    let wall_ns = t0.elapsed().as_secs_f64() * 1e9;
    let runners: Vec<&str> = rows.iter().map(|r| r["runner"].as_str().unwrap()).collect();
    assert_eq!(
        runners,
        [
            "nanolab",
            "nanolab",
            "llama-cpp-2 baseline",
            "llama-cpp-2 baseline",
            "nanolab + LoRA r4 (q/k/v/o)"
        ]
    );
    for r in rows {
        let ts = r["avg_ts"].as_f64().unwrap();
        assert!(ts > 0.0);
        assert_eq!(r["samples_ts"].as_array().unwrap().len(), 2);
        assert_eq!(r["samples_ns"].as_array().unwrap().len(), 2);
        assert_eq!(r["model_n_params"], 134_515_008);
        assert_eq!(r["backends"], "CPU");
        assert_eq!(r["n_gpu_layers"], 0);
        assert!(r["build_commit"].as_str().unwrap().contains("ggml"), "{r}");
        // Against the test's own clock: every timed repetition happened inside the command.
        let timed_ns: f64 = r["samples_ns"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n.as_f64().unwrap())
            .sum();
        assert!(timed_ns < wall_ns, "{timed_ns} ns timed in a {wall_ns} ns command: {r}");
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    let notes: Vec<&str> = stderr.lines().filter_map(|l| l.strip_prefix("note: ")).collect();
    assert!(
        notes[0].starts_with("nanolab / llama-cpp-2 baseline: pp64"),
        "{notes:?}"
    );
    assert!(notes[1].contains("LoRA rank 4"), "{notes:?}");
}
