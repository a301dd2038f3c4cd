//! Long use, bounded in time: 1000 runs with adapter swaps, lane add/remove and model switches
//! through one engine. After warm-up, the engine's anonymous resident memory (heap; the mmap'd
//! weights come and go with the page cache, so total RSS is not a leak signal), compared at the
//! same point of the model-switch cycle, stays within 5 %, and its open file descriptors and
//! threads stay constant. Not part of `make test` (a few minutes):
//! `cargo test --release --test soak -- --ignored --nocapture`.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use nanolab::protocol::*;

fn count(dir: String) -> usize {
    std::fs::read_dir(dir).map(|d| d.count()).unwrap_or(0)
}

fn engine_numbers(pid: u32) -> (u64, usize, usize) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let rss_kb = status
        .lines()
        .find(|l| l.starts_with("RssAnon:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    (
        rss_kb * 1024,
        count(format!("/proc/{pid}/fd")),
        count(format!("/proc/{pid}/task")),
    )
}

#[test]
#[ignore = "soak: run on demand"]
fn a_thousand_runs_keep_memory_descriptors_and_threads_flat() {
    let demo = demo_model();
    let dir = tempfile::tempdir().unwrap();
    let zero = dir.path().join("zero.gguf");
    write_lora(&zero, 576, 30);
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let caps: PathBuf = root.join("adapters/smollm2-caps.gguf");
    let brief: PathBuf = root.join("adapters/smollm2-brief.gguf");
    // A second "model" file: the same weights under another path, so switching reloads.
    let other = dir.path().join("other.gguf");
    std::fs::copy(&demo, &other).unwrap();
    let mut c = client();
    let stacks: Vec<Vec<AdapterSpec>> = vec![
        vec![],
        vec![AdapterSpec {
            path: caps.clone(),
            scale: 1.0,
        }],
        vec![AdapterSpec {
            path: brief.clone(),
            scale: 0.5,
        }],
        vec![
            AdapterSpec { path: caps, scale: 0.8 },
            AdapterSpec {
                path: brief,
                scale: 1.0,
            },
        ],
        vec![AdapterSpec { path: zero, scale: 1.0 }],
    ];
    // Two states are compared across the run: "idle" (the model loaded, every lane dropped),
    // measured every 100 runs, and "busy" (the peak with up to three lanes holding contexts),
    // the maximum over each 200 runs. After warm-up (200 runs) both must stay within 5 %.
    let mut idle0: Option<(u64, usize, usize)> = None;
    let mut busy0: Option<u64> = None;
    let mut busy_peak = 0u64;
    let mut report = Vec::new();
    let started = std::time::Instant::now();
    for i in 0..1000u64 {
        let model = if (i / 100) % 2 == 0 { &demo } else { &other };
        let lane_id = 1 + (i % 3);
        let spec = lane(lane_id, model, 256, stacks[(i % 5) as usize].clone());
        let s = stats(&generate(&mut c, spec, "Hello", greedy(4)).1);
        assert!(s.generated_tokens > 0 || s.stop_reason == StopReason::EndOfText);
        let pid = c.pid().expect("engine alive");
        busy_peak = busy_peak.max(engine_numbers(pid).0);
        if i % 7 == 6 {
            let job = c.next_job();
            c.call(&Request::DropLane { job, lane: lane_id }, |_| {}).unwrap();
        }
        if i % 100 == 99 {
            for l in 1..=3 {
                let job = c.next_job();
                c.call(&Request::DropLane { job, lane: l }, |_| {}).unwrap();
            }
            let idle = engine_numbers(pid);
            report.push(format!(
                "run {}: idle anonymous RSS {} KiB, busy peak {} KiB, fds {}, threads {}",
                i + 1,
                idle.0 >> 10,
                busy_peak >> 10,
                idle.1,
                idle.2
            ));
            println!("{}", report.last().unwrap());
            if i == 199 {
                idle0 = Some(idle);
            }
            if let Some((rss0, fd0, th0)) = idle0 {
                assert!(
                    idle.0 as f64 <= rss0 as f64 * 1.05,
                    "idle anonymous RSS grew from {rss0} to {}",
                    idle.0
                );
                assert_eq!(idle.1, fd0, "open file descriptors changed");
                assert_eq!(idle.2, th0, "threads changed");
            }
            if i % 200 == 199 {
                match busy0 {
                    None => busy0 = Some(busy_peak),
                    Some(b0) => assert!(
                        busy_peak as f64 <= b0 as f64 * 1.05,
                        "busy anonymous RSS peak grew from {b0} to {busy_peak}"
                    ),
                }
                busy_peak = 0;
            }
            // Unload the model not in use next, so switches really load and free.
            let unused = if (i / 100) % 2 == 0 { &demo } else { &other };
            let job = c.next_job();
            c.call(
                &Request::UnloadModel {
                    job,
                    path: unused.to_path_buf(),
                },
                |_| {},
            )
            .unwrap();
        }
    }
    assert_eq!(c.restarts(), 0, "the engine never died");
    println!("1000 runs in {:.0} s", started.elapsed().as_secs_f64());
}
