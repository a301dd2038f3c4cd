//! kill -9 of the real window (under Xvfb) while a lane streams: the state file stays whole, the
//! engine child does not outlive it, and a reopened window keeps lanes, prompt and outputs.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::x11::{click, click_run_all, close_window, wait_state, xvfb, Killer};
use crate::common::*;
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

/// Waits up to 10 s for the engine child `pid` to exit after its window went.
fn wait_gone(pid: u32) {
    let end = Instant::now() + Duration::from_secs(10);
    while alive(pid) {
        assert!(Instant::now() < end, "engine {pid} outlived the window");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The window's log (its stderr) beside its state file, for a failure to show.
fn log_of(state_path: &Path) -> std::path::PathBuf {
    state_path.with_extension("log")
}

fn window(state_path: &Path, display: &str) -> Child {
    let log = std::fs::File::create(log_of(state_path)).expect("the window's log file");
    Command::new(exe())
        .env("DISPLAY", display)
        .env("NANOLAB_STATE", state_path)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start the window")
}

/// What a window that does not close is doing: its state and kernel wait channel per thread,
/// and the end of its log.
fn stuck(pid: u32, state_path: &Path) -> String {
    let threads: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/task"))
        .map(|d| {
            d.flatten()
                .map(|t| {
                    let read = |f: &str| std::fs::read_to_string(t.path().join(f)).unwrap_or_default();
                    let state = read("status")
                        .lines()
                        .find(|l| l.starts_with("State:"))
                        .unwrap_or("")
                        .to_string();
                    format!("{} {} {}", read("comm").trim(), state, read("wchan"))
                })
                .collect()
        })
        .unwrap_or_default();
    let log = std::fs::read_to_string(log_of(state_path)).unwrap_or_default();
    let tail: Vec<&str> = log.lines().rev().take(20).collect();
    format!("threads {threads:?}; log tail {tail:?}")
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
    wait_gone(engine[0]);
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

/// Closing the real window (its close button, as a window manager sends it) while a lane streams:
/// what changed in the last second, when saves are spaced while tokens stream, is saved on the
/// way out, and the engine child ends with the window.
#[test]
fn closing_the_window_mid_stream_saves_its_last_changes() {
    let demo = demo_model();
    let dir = tempfile::tempdir().unwrap();
    let state_path = dir.path().join("state.json");
    let mut s = state::State {
        chat_mode: false,
        prompt: "1, 2, 3, 4, 5, 6,".into(),
        recent_files: vec![demo.clone()],
        dark: true,
        ..Default::default()
    };
    let id = s.add_lane(None);
    if let Some(l) = s.lane_mut(id) {
        l.model = Some(demo.clone());
        l.sampling.max_tokens = 3000;
        l.sampling.temperature = 0.0;
    }
    state::save(&state_path, &serde_json::to_string_pretty(&s).unwrap()).unwrap();
    // A display of its own, apart from the other window tests' numbers.
    let display = &format!(":{}", 700 + std::process::id() % 200);
    let _procs = Killer(vec![xvfb(display)]);
    let mut win = window(&state_path, display);
    let win_pid = win.id();
    std::thread::sleep(Duration::from_secs(4));
    click_run_all(display);
    wait_state(&state_path, "tokens streaming into the state file", |s| {
        s.lanes[0].output.tokens.len() >= 20
    });
    let engine = children_of(win_pid);
    assert_eq!(engine.len(), 1, "one engine child: {engine:?}");
    // "Light theme" in the top bar (see screenshots/), then close at once: the change comes
    // within a second of the last save made while tokens stream.
    click(display, 310, 12);
    close_window(display);
    let end = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = win.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < end,
            "the window did not close: {}",
            stuck(win_pid, &state_path)
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "the window exited with {status}");
    let (saved, problem) = state::load(&state_path);
    assert!(problem.is_none(), "{problem:?}");
    assert!(!saved.dark, "the theme chosen just before closing was lost");
    assert_eq!(saved.prompt, s.prompt);
    assert!(saved.lanes[0].output.tokens.len() >= 20);
    wait_gone(engine[0]);
}

/// The real window under Xvfb, the demo scene from `--scene`, an arena vote by key, then kill -9:
/// the vote is in the state file.
#[test]
fn an_arena_vote_survives_kill_9_of_the_window() {
    let dir = tempfile::tempdir().unwrap();
    let state_path = dir.path().join("state.json");
    // A display of its own, so a run beside another never shares one.
    let display = &format!(":{}", 200 + std::process::id() % 500);
    let _procs = Killer(vec![xvfb(display)]);
    let scene = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("assets/scenes/demo.json");
    let mut win = Command::new(exe())
        .args(["--scene", scene.to_str().unwrap()])
        .env("DISPLAY", display)
        .env("NANOLAB_STATE", &state_path)
        .env("NANOLAB_REGISTRY", dir.path().join("registry.json"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the window");
    wait_state(&state_path, "the scene's two lanes", |s| {
        s.lanes.len() == 2 && s.scene.is_some()
    });
    std::thread::sleep(Duration::from_secs(2));
    let xdo = |args: &[&str]| {
        let ok = Command::new("xdotool")
            .env("DISPLAY", display)
            .args(args)
            .status()
            .expect("xdotool");
        assert!(ok.success(), "xdotool {args:?}");
    };
    // "Arena" in the top bar (see screenshots/08-arena-blind.png), then space starts the round.
    xdo(&["mousemove", "605", "12", "click", "1"]);
    wait_state(&state_path, "arena on", |s| {
        s.scene.as_ref().is_some_and(|c| c.arena.on)
    });
    // Keys go to the focused window; without a window manager nothing focuses it but us.
    let found = Command::new("xdotool")
        .env("DISPLAY", display)
        .args(["search", "--onlyvisible", "--name", "^nanolab$"])
        .output()
        .expect("xdotool search");
    let id = String::from_utf8_lossy(&found.stdout)
        .lines()
        .next()
        .unwrap_or_default()
        .to_string();
    assert!(!id.is_empty(), "the window is found by its title");
    xdo(&["windowfocus", &id]);
    // A key sent while the focus change is still on its way is lost: press until the round
    // starts (space does nothing more once it has).
    let started = |s: &state::State| s.scene.as_ref().is_some_and(|c| c.arena.started);
    let end = Instant::now() + Duration::from_secs(60);
    loop {
        xdo(&["key", "space"]);
        std::thread::sleep(Duration::from_millis(500));
        let text = std::fs::read_to_string(&state_path).unwrap_or_default();
        if serde_json::from_str::<state::State>(&text).is_ok_and(|s| started(&s)) {
            break;
        }
        assert!(Instant::now() < end, "space never started the arena round");
    }
    wait_state(&state_path, "both answers in", |s| {
        s.scene.as_ref().is_some_and(|c| c.arena.started) && s.lanes.iter().all(|l| l.output.stats.is_some())
    });
    // Paced tokens of lane 2 may still be released: wait for the vote to be taken.
    let end = Instant::now() + Duration::from_secs(60);
    loop {
        xdo(&["key", "1"]);
        std::thread::sleep(Duration::from_millis(500));
        let text = std::fs::read_to_string(&state_path).unwrap_or_default();
        if serde_json::from_str::<state::State>(&text)
            .ok()
            .and_then(|s| s.scene)
            .is_some_and(|c| c.arena.record.votes.len() == 1)
        {
            break;
        }
        assert!(Instant::now() < end, "the vote never reached the state file");
    }
    win.kill().unwrap();
    win.wait().unwrap();
    let (saved, problem) = state::load(&state_path);
    assert!(problem.is_none(), "{problem:?}");
    let arena = saved.scene.unwrap().arena;
    assert_eq!(arena.record.votes.len(), 1, "exactly the one vote");
    assert_eq!(arena.record.votes[0].verdict, nanolab::eval::arena::Verdict::Pick(0));
    assert!(arena.revealed);
}
