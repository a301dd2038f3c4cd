//! `nanolab bench` output shape (the performance targets themselves are read from the benchmark's
//! printed ratios, not asserted here).

use std::process::Command;

use crate::common::*;

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
    // llama.cpp's own system line, recorded in each row, says whether this build uses AMX; there
    // the llama-cpp-2 baseline would crash (it cannot turn the AMX weight buffers off), so it is
    // left out with a note instead.
    let amx = rows[0]["cpu_features"].as_str().unwrap().contains("AMX");
    let baseline: &[&str] = if amx {
        &[]
    } else {
        &["llama-cpp-2 baseline", "llama-cpp-2 baseline"]
    };
    let want: Vec<&str> = ["nanolab", "nanolab"]
        .iter()
        .chain(baseline)
        .chain(&["nanolab + LoRA r4 (q/k/v/o)"])
        .copied()
        .collect();
    assert_eq!(runners, want);
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
    let first = if amx {
        "no llama-cpp-2 baseline on this CPU"
    } else {
        "nanolab / llama-cpp-2 baseline: pp64"
    };
    assert!(notes[0].starts_with(first), "{notes:?}");
    assert!(notes[1].contains("LoRA rank 4"), "{notes:?}");
}

#[test]
fn bench_parallel_reports_llama_batched_bench_rows() {
    let demo = demo_model();
    let run = |parallel: &str| {
        Command::new(exe())
            .args([
                "bench",
                "-m",
                demo.to_str().unwrap(),
                "-p",
                "32",
                "-n",
                "8",
                "--threads",
                "2",
            ])
            .args(["--no-static", "-o", "json", "--parallel", parallel])
            .output()
            .unwrap()
    };
    let t0 = std::time::Instant::now();
    let out = run("1,2,4");
    let wall_s = t0.elapsed().as_secs_f64();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let rows = v.as_array().unwrap();
    let pls: Vec<u64> = rows.iter().map(|r| r["pl"].as_u64().unwrap()).collect();
    assert_eq!(pls, [1, 2, 4]);
    let mut timed_s = 0.0;
    for r in rows {
        // llama-batched-bench's JSON field names, each present.
        for k in [
            "pp", "tg", "pl", "n_kv", "t_pp", "speed_pp", "t_tg", "speed_tg", "t", "speed",
        ] {
            assert!(r.get(k).is_some(), "{k} missing in {r}");
        }
        let pl = r["pl"].as_u64().unwrap();
        assert_eq!((r["pp"].as_u64(), r["tg"].as_u64()), (Some(32), Some(8)));
        assert_eq!(r["n_kv"].as_u64(), Some(pl * 40), "prompts are not shared");
        assert!(
            r["t_pp"].as_f64().unwrap() > 0.0 && r["t_tg"].as_f64().unwrap() > 0.0,
            "{r}"
        );
        timed_s += r["t"].as_f64().unwrap();
    }
    assert!(timed_s < wall_s, "{timed_s} s timed inside a {wall_s} s command");
    let bad = run("0,2");
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("batch sizes of 1 or more"));
}
