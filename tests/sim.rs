//! `nanolab sim` through the real binary.

use std::process::Command;

use crate::common::*;

fn sim(args: &[&str], devices_dir: &std::path::Path) -> (bool, String, String) {
    let out = Command::new(exe())
        .arg("sim")
        .args(args)
        .env("NANOLAB_DEVICES", devices_dir)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

#[test]
fn sustained_run_reports_throttling_states_and_decisions() {
    let demo = demo_model();
    let dir = tempfile::tempdir().unwrap();
    let (ok, out, err) = sim(
        &["--device", "galaxy-s24-ultra", "-m", demo.to_str().unwrap(), "--json"],
        dir.path(),
    );
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let r = &v["report"];
    let burst = r["burst_tokens_per_sec"].as_f64().unwrap();
    let sustained = r["sustained_tokens_per_sec"].as_f64().unwrap();
    assert!(burst > 0.0 && sustained < burst, "a 10-minute run on a phone throttles");
    assert!(r["time_to_minus_25_secs"].as_f64().is_some());
    let states: Vec<&str> = r["states_visited"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    assert_eq!(states[0], "NONE");
    assert!(states.contains(&"SEVERE"), "{states:?}");
    // Routing left the preferred accelerator when the state got serious, and said why.
    let decisions = r["decisions"].as_array().unwrap();
    assert!(decisions.len() >= 2, "{decisions:?}");
    assert!(decisions[1]["reason"].as_str().unwrap().contains("SEVERE"));
    assert_eq!(decisions[1]["accelerator"], "cpu");
    assert_eq!(r["samples"].as_array().unwrap().len(), 600);
    // The demo model fits a phone easily; the projection uses its real size.
    assert_eq!(v["fit"]["fits"], true);
    assert_eq!(v["model_facts"]["parameters"], 134_515_008);
}

#[test]
fn a_malformed_user_profile_is_named_with_its_field() {
    let demo = demo_model();
    let dir = tempfile::tempdir().unwrap();
    let good = include_str!("../assets/devices/raspberry-pi-5.toml");
    std::fs::write(
        dir.path().join("my-board.toml"),
        good.replace("id = \"raspberry-pi-5\"", "id = \"my-board\""),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("broken.toml"),
        good.replace("bandwidth_gbs = 8.5", "bandwidth_gbs = \"fast\""),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("negative.toml"),
        good.replace("power_w = 4.5", "power_w = -1.0"),
    )
    .unwrap();
    let (ok, out, err) = sim(&["--list"], dir.path());
    assert!(ok);
    assert!(out.contains("my-board"), "{out}");
    assert!(err.contains("broken.toml") && err.contains("bandwidth_gbs"), "{err}");
    assert!(
        err.contains("negative.toml") && err.contains("accelerators.cpu.power_w"),
        "{err}"
    );
    let (ok, out, _) = sim(
        &["--device", "my-board", "-m", demo.to_str().unwrap(), "--minutes", "1"],
        dir.path(),
    );
    assert!(ok);
    assert!(out.contains("retention"));
    let (ok, _, err) = sim(&["--device", "nope", "-m", demo.to_str().unwrap()], dir.path());
    assert!(!ok && err.contains("unknown device"));
}

#[test]
fn png_chart_is_written() {
    let demo = demo_model();
    let dir = tempfile::tempdir().unwrap();
    let png = dir.path().join("run.png");
    let (ok, _, err) = sim(
        &[
            "--device",
            "pixel-9-pro",
            "-m",
            demo.to_str().unwrap(),
            "--minutes",
            "3",
            "--png",
            png.to_str().unwrap(),
        ],
        dir.path(),
    );
    assert!(ok, "{err}");
    let img = image::open(&png).expect("a PNG");
    assert_eq!((img.width(), img.height()), (1000, 700));
}
