//! kill -9 of the real window (under Xvfb) while a lane streams: the state file stays whole, the
//! engine child does not outlive it, and a reopened window keeps lanes, prompt and outputs.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::x11::{click_run_all, wait_state, xvfb, Killer};
use common::*;
use nanolab::ui::state;

fn children_of(pid: u32) -> Vec<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| !s.contains(") Z "))
}

fn window(state_path: &Path, display: &str) -> Child {
    Command::new(exe())
        .env("DISPLAY", display)
        .env("NANOLAB_STATE", state_path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the window")
}

#[test]
fn killing_the_window_mid_stream_loses_nothing_and_leaves_no_engine() {
    let demo = demo_model();
    let dir = tempfile::tempdir().unwrap();
    let state_path = dir.path().join("state.json");
    // Settings away from their defaults, so that a reset would show.
    let mut s = state::State {
        chat_mode: false,
        prompt: "1, 2, 3, 4, 5, 6,".into(),
        system: "count on".into(),
        show_graphs: true,
        dark: false,
        // The window records the model it opens here; it already is.
        recent_files: vec![demo.clone()],
        ..Default::default()
    };
    let id = s.add_lane(None);
    if let Some(l) = s.lane_mut(id) {
        l.model = Some(demo.clone());
        l.sampling.max_tokens = 3000;
        l.sampling.temperature = 0.0;
        l.sampling.seed = 4242;
        l.n_ctx = 4096;
        l.token_view = true;
        l.adapters.push(state::AdapterRow {
            path: caps_adapter(),
            enabled: true,
            scale: 0.25,
            ranks: vec![8],
            file_bytes: 0,
        });
    }
    // Everything but the outputs.
    let settings = |st: &state::State| {
        let mut st = st.clone();
        for l in &mut st.lanes {
            l.output = Default::default();
            for a in &mut l.adapters {
                a.file_bytes = 0;
            }
        }
        st
    };
    state::save(&state_path, &serde_json::to_string_pretty(&s).unwrap()).unwrap();

    let display = ":97";
    let mut procs = Killer(vec![xvfb(display)]);
    let mut win = window(&state_path, display);
    let win_pid = win.id();
    // Wait for the window, then press "Run all" (bottom right of the 1280x800 window).
    std::thread::sleep(Duration::from_secs(4));
    click_run_all(display);
    let mid = wait_state(&state_path, "tokens streaming into the state file", |s| {
        s.lanes[0].output.tokens.len() >= 20
    });
    let engine = children_of(win_pid);
    assert_eq!(engine.len(), 1, "one engine child: {engine:?}");
    // kill -9 in the middle of the stream.
    win.kill().unwrap();
    win.wait().unwrap();
    let after = std::fs::read_to_string(&state_path).expect("state file still there");
    let saved: state::State = serde_json::from_str(&after).expect("state file is whole JSON after kill -9");
    assert_eq!(settings(&saved), settings(&s), "settings kept across the kill");
    assert!(saved.lanes[0].output.tokens.len() >= mid.lanes[0].output.tokens.len());
    assert!(saved.lanes[0].output.text.starts_with(&mid.lanes[0].output.text));
    // The engine notices its parent is gone (stdin closes) and exits.
    let end = Instant::now() + Duration::from_secs(10);
    while alive(engine[0]) {
        assert!(Instant::now() < end, "engine {} outlived the window", engine[0]);
        std::thread::sleep(Duration::from_millis(100));
    }
    // Reopen: the saved state is used as is (not moved aside), lanes/prompt/output intact.
    let (loaded, problem) = state::load(&state_path);
    assert!(problem.is_none(), "{problem:?}");
    assert_eq!(loaded.prompt, s.prompt);
    assert_eq!(loaded.lanes[0].output.text, saved.lanes[0].output.text);
    let win2 = window(&state_path, display);
    let pid2 = win2.id();
    procs.0.push(win2);
    let end = Instant::now() + Duration::from_secs(20);
    while children_of(pid2).is_empty() {
        assert!(
            Instant::now() < end,
            "the reopened window did not start its engine for the restored lane"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let reopened = wait_state(&state_path, "state readable after reopen", |_| true);
    assert_eq!(settings(&reopened), settings(&s), "settings restored on reopening");
    assert_eq!(
        reopened.lanes[0].output.text, saved.lanes[0].output.text,
        "output kept across the kill"
    );
}
