//! nanolab opens network connections only for `models fetch`: every other command and the window
//! (running a lane with an adapter) are traced with strace, and any connect/send to an internet
//! address (AF_INET or AF_INET6) fails the test. `models fetch` from a loopback server is the
//! control that shows the trace would catch one.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::common::x11::{click_run_all, wait_state, xvfb, Killer};
use crate::common::*;
use nanolab::ui::state;

const TRACED: &str = "trace=connect,sendto,sendmsg,bind";

/// The traced calls that name an internet address.
fn inet_calls(log: &Path) -> Vec<String> {
    std::fs::read_to_string(log)
        .expect("strace log")
        .lines()
        .filter(|l| l.contains("AF_INET"))
        .map(str::to_string)
        .collect()
}

/// Runs nanolab with `args` under strace (following the engine child) and returns the internet
/// calls it made.
fn traced(args: &[&str], dir: &Path) -> Vec<String> {
    let log = dir.join(format!(
        "trace-{}.log",
        args.join("-").replace('/', "_").chars().take(60).collect::<String>()
    ));
    let out = Command::new("strace")
        .args(["-f", "-qq", "-e", TRACED, "-o"])
        .arg(&log)
        .arg(exe())
        .args(args)
        .output()
        .expect("strace (scripts/setup.sh --test installs it)");
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    inet_calls(&log)
}

#[test]
fn only_models_fetch_opens_a_network_connection() {
    let dir = tempfile::tempdir().unwrap();
    let demo = demo_model();
    let (d, a) = (demo.to_str().unwrap(), caps_adapter());
    let a = a.to_str().unwrap();
    let prompts = dir.path().join("set.jsonl");
    std::fs::write(
        &prompts,
        "{\"id\": \"sky\", \"prompt\": \"The sky is\", \"expect\": \"blue\"}\n",
    )
    .unwrap();
    let uses: [&[&str]; 6] = [
        &["inspect", d],
        &["run", "-m", d, "-a", a, "-p", "The sky is", "-n", "8"],
        &["adapters", "check", a, "--model", d],
        &["models", "list"],
        &["devices"],
        &[
            "eval",
            "prompts",
            "--set",
            prompts.to_str().unwrap(),
            "-l",
            d,
            "--seeds",
            "1",
            "-n",
            "8",
        ],
    ];
    for args in uses {
        let calls = traced(args, dir.path());
        assert!(calls.is_empty(), "{args:?} reached for the network: {calls:#?}");
    }

    // The control: a fetch from a loopback server is seen by the same trace.
    let base = serve(std::fs::read(&demo).unwrap(), 1, None);
    let port = base.rsplit(':').next().unwrap().to_string();
    let url = format!("{base}/m.gguf");
    let calls = traced(
        &["models", "fetch", &url, "--dir", dir.path().to_str().unwrap()],
        dir.path(),
    );
    assert!(
        calls
            .iter()
            .any(|c| c.contains("connect(") && c.contains(&format!("htons({port})"))),
        "the trace missed the fetch's connection: {calls:#?}"
    );
}

#[test]
fn the_window_running_a_lane_opens_no_network_connection() {
    let dir = tempfile::tempdir().unwrap();
    let state_path = dir.path().join("state.json");
    let mut s = state::State {
        chat_mode: false,
        prompt: "The sky is".into(),
        ..Default::default()
    };
    let id = s.add_lane(None);
    if let Some(l) = s.lane_mut(id) {
        l.model = Some(demo_model());
        l.sampling.max_tokens = 16;
        l.adapters.push(state::AdapterRow {
            path: caps_adapter(),
            enabled: true,
            scale: 1.0,
            ranks: vec![8],
            file_bytes: 0,
        });
    }
    state::save(&state_path, &serde_json::to_string_pretty(&s).unwrap()).unwrap();
    let display = ":96";
    let mut procs = Killer(vec![xvfb(display)]);
    let log = dir.path().join("window.log");
    let strace = Command::new("strace")
        .args(["-f", "-qq", "-e", TRACED, "-o"])
        .arg(&log)
        .arg(exe())
        .env("DISPLAY", display)
        .env("NANOLAB_STATE", &state_path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("strace (scripts/setup.sh --test installs it)");
    procs.0.push(strace);
    std::thread::sleep(Duration::from_secs(5));
    click_run_all(display);
    wait_state(&state_path, "the lane's run to finish", |s| {
        s.lanes[0].output.stats.is_some()
    });
    drop(procs);
    let calls = inet_calls(&log);
    assert!(calls.is_empty(), "the window reached for the network: {calls:#?}");
    // The trace did follow the window and its engine: both connected to something local (X11).
    let traced = std::fs::read_to_string(&log).unwrap();
    assert!(traced.contains("AF_UNIX"), "nothing traced: {traced}");
}
