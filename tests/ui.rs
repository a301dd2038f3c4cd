//! The real window (egui_kittest, no display needed) on the real engine and demo model.

use crate::common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::common::ui::drop_file;
use crate::common::*;
use egui_kittest::kittest::Queryable;
use egui_kittest::Harness;
use nanolab::ui::app::{App, Command, Folders};
use nanolab::ui::state;

fn harness(app: App) -> Harness<'static, App> {
    Harness::builder()
        .with_size(egui::vec2(1400.0, 900.0))
        .build_ui_state(|ui, app: &mut App| app.frame(ui), app)
}

fn new_app(state_path: Option<PathBuf>) -> App {
    new_app_in(state_path, Folders::from_env())
}

/// The app with its own folders (passed in, never through the process's environment).
fn new_app_in(state_path: Option<PathBuf>, folders: Folders) -> App {
    let mut app = App::with_folders(state_path, Some(exe()), folders);
    app.rt.pending.push(Command::SetModel {
        lane: None,
        path: demo_model(),
    });
    app.apply_commands();
    app
}

/// The window on the demo model, once the model is loaded.
fn loaded_app(state_path: Option<PathBuf>) -> Harness<'static, App> {
    loaded_app_in(state_path, Folders::from_env())
}

fn loaded_app_in(state_path: Option<PathBuf>, folders: Folders) -> Harness<'static, App> {
    let mut h = harness(new_app_in(state_path, folders));
    step_until(&mut h, Duration::from_secs(30), "model loaded", |a| {
        a.rt.engine.jobs.is_empty()
    });
    h
}

/// The same with a second lane added (by its button).
fn two_lanes(state_path: Option<PathBuf>) -> Harness<'static, App> {
    let mut h = loaded_app(state_path);
    h.get_by_label("Add lane").click();
    h.run_steps(2);
    h
}

/// Steps the UI until `done` holds or the deadline passes.
fn step_until(h: &mut Harness<'_, App>, deadline: Duration, what: &str, done: impl Fn(&App) -> bool) {
    let end = Instant::now() + deadline;
    while !done(h.state()) {
        if Instant::now() >= end {
            let a = h.state();
            let lanes: Vec<_> = a
                .state
                .lanes
                .iter()
                .map(|l| {
                    (
                        l.id,
                        l.output.tokens.len(),
                        l.output.error.clone(),
                        l.output.stats.is_some(),
                    )
                })
                .collect();
            panic!(
                "timed out waiting for: {what}; lanes {lanes:?}; jobs {:?}; banner {:?}",
                a.rt.engine.jobs, a.rt.banner
            );
        }
        h.step();
        std::thread::sleep(Duration::from_millis(5));
    }
    h.run_steps(2);
}

fn lane_center(h: &Harness<'_, App>, index: usize) -> egui::Pos2 {
    h.state().rt.lanes.rects[index].1.center()
}

#[test]
fn two_lanes_run_stream_and_fill_stats_then_a_broken_adapter_shows_a_banner() {
    let dir = tempfile::tempdir().unwrap();
    let mut h = loaded_app(None);
    h.get_by_label("Add lane").click();
    h.run_steps(3);
    assert_eq!(h.state().state.lanes.len(), 2);

    // A real (zero-delta) LoRA adapter file dropped onto lane 2.
    let adapter = dir.path().join("zero-lora.gguf");
    write_lora(&adapter, 576, 30);
    let at = lane_center(&h, 1);
    drop_file(&mut h, &adapter, at);
    assert_eq!(
        h.state().state.lanes[1].adapters.len(),
        1,
        "adapter row added to lane 2"
    );
    assert!(h.state().state.lanes[0].adapters.is_empty(), "lane 1 untouched");
    h.get_by_label("zero-lora.gguf"); // the row's toggle
                                      // Change its scale through the slider.
    h.get_by_role_and_label(egui::accesskit::Role::Slider, "scale")
        .set_value_accesskit(0.5);
    h.run_steps(2);
    assert!((h.state().state.lanes[1].adapters[0].scale - 0.5).abs() < 1e-6);

    h.state_mut().state.prompt = "The capital of France is".into();
    h.state_mut().state.chat_mode = false;
    h.state_mut().state.lanes[0].sampling.max_tokens = 12;
    h.run_steps(2);
    h.get_by_label("Run all").click();
    h.run_steps(2);
    step_until(&mut h, Duration::from_secs(60), "tokens in both lanes", |a| {
        a.state.lanes.iter().all(|l| !l.output.tokens.is_empty())
    });
    step_until(&mut h, Duration::from_secs(60), "both runs done", |a| {
        a.state.lanes.iter().all(|l| l.output.stats.is_some())
    });
    let lanes = &h.state().state.lanes;
    assert_eq!(
        lanes[0].output.text, lanes[1].output.text,
        "a zero LoRA must not change greedy output"
    );
    assert!(lanes[1].output.stats.as_ref().unwrap().lane.adapter_bytes > 0);
    // The stats strip shows real numbers.
    assert_eq!(h.get_all_by_label("TTFT").count(), 2);
    assert_eq!(h.get_all_by_label("decode").count(), 2);
    // Lane 2 (with an adapter) shows its decode cost against lane 1 (none).
    h.get_by_label("adapter cost");
    let text_before = h.state().state.lanes[0].output.text.clone();

    // A broken adapter (for another width) dropped on lane 1: banner on lane 1, nothing lost.
    let wide = dir.path().join("wide-lora.gguf");
    write_lora(&wide, 2048, 30);
    let at = lane_center(&h, 0);
    drop_file(&mut h, &wide, at);
    h.run_steps(2);
    let err = h.state().state.lanes[0].output.error.clone().expect("banner on lane 1");
    assert!(err.contains("n_embd 2048"), "{err}");
    h.get_by_label_contains("this model has n_embd 576");
    assert_eq!(h.state().state.lanes[0].output.text, text_before);
    assert!(h.state().state.lanes[1].output.error.is_none());
    // The window still works: dismiss and run again.
    h.get_by_label("Dismiss").click();
    h.run_steps(2);
    assert!(h.state().state.lanes[0].output.error.is_none());
}

#[test]
fn token_view_shows_tokens_with_probabilities_and_diff_marks_changes() {
    let mut h = two_lanes(None);
    {
        let s = &mut h.state_mut().state;
        s.same_settings = false;
        s.chat_mode = false;
        s.prompt = "Once upon a time".into();
        for l in &mut s.lanes {
            l.sampling.max_tokens = 16;
        }
        s.lanes[1].sampling.temperature = 1.5;
        s.lanes[1].sampling.seed = 11;
    }
    h.run_steps(2);
    let first = h.state().state.lanes[0].id;
    h.state_mut().rt.pending.push(Command::SetReference(Some(first)));
    h.get_by_label("Run all").click();
    step_until(&mut h, Duration::from_secs(60), "both runs done", |a| {
        a.state.lanes.iter().all(|l| l.output.stats.is_some())
    });
    let lane2 = h.state().state.lanes[1].id;
    let spans = h.state().rt.lanes.diffs.get(&lane2).cloned().expect("diff computed");
    let joined: String = spans.iter().map(|(t, _)| t.as_str()).collect();
    assert_eq!(joined, h.state().state.lanes[1].output.text);
    assert!(
        spans.iter().any(|(_, d)| *d),
        "sampled lane should differ from greedy somewhere"
    );
    // Switch lane 1 to the token view: each token is a label.
    h.get_all_by_label("Tokens").next().unwrap().click();
    h.run_steps(3);
    let first = h.state().state.lanes[0].output.tokens[0].piece.replace('\n', "\\n");
    assert!(h.get_all_by_label(&first).count() >= 1, "token {first:?} not shown");
}

/// Runs all lanes on a raw prompt that lane 1 continues for up to 1000 tokens, and waits until
/// lane 1 has streamed a few.
fn start_long_run(h: &mut Harness<'_, App>) {
    {
        let s = &mut h.state_mut().state;
        s.chat_mode = false;
        s.prompt = "1, 2, 3, 4, 5,".into();
        s.lanes[0].sampling.max_tokens = 1000;
        // Tokens of an earlier run must not pass for this one's.
        for l in &mut s.lanes {
            l.output = Default::default();
        }
    }
    h.run_steps(2);
    h.get_by_label("Run all").click();
    step_until(h, Duration::from_secs(30), "tokens in lane 1", |a| {
        a.state.lanes[0].output.tokens.len() > 3
    });
}

#[test]
fn lanes_stream_at_once_and_one_at_a_time_says_queued() {
    let mut h = two_lanes(None);
    // Lane 2 follows lane 1's settings: 1000 tokens too.
    start_long_run(&mut h);
    // Both lanes stream while lane 1 is still running.
    step_until(&mut h, Duration::from_secs(30), "tokens in lane 2", |a| {
        a.state.lanes[1].output.tokens.len() > 3
    });
    assert!(h.state().state.lanes[0].output.stats.is_none(), "lane 1 ended first");
    assert!(
        h.query_by_label_contains("queued").is_none(),
        "a streaming lane says queued"
    );
    h.key_press(egui::Key::Escape);
    step_until(&mut h, Duration::from_secs(30), "stopped", |a| {
        a.rt.engine.jobs.is_empty()
    });

    // One lane at a time: lane 2 waits its turn in the engine and says so.
    h.get_by_label("One lane at a time").click();
    h.run_steps(2);
    assert!(h.state().state.one_lane_at_a_time);
    start_long_run(&mut h);
    h.run_steps(2);
    assert!(h.state().state.lanes[1].output.tokens.is_empty());
    h.get_by_label("queued: waiting for the lanes before it");
    assert!(
        h.query_by_label_contains("running… 0 tokens").is_none(),
        "a waiting lane claims to be running"
    );
    h.key_press(egui::Key::Escape);
    step_until(&mut h, Duration::from_secs(30), "stopped", |a| {
        a.rt.engine.jobs.is_empty()
    });
}

#[test]
fn the_memory_graph_holds_weights_and_kv_cache_from_set_up_not_from_the_first_run_s_end() {
    let mut h = two_lanes(None);
    start_long_run(&mut h);
    step_until(&mut h, Duration::from_secs(30), "a memory sample with weights", |a| {
        a.rt.telemetry.memory.last().is_some_and(|s| s.weights_bytes > 0)
    });
    assert!(
        h.state().state.lanes[0].output.stats.is_none(),
        "lane 1's run of 1000 tokens ended before the sample"
    );
    let sample = *h.state().rt.telemetry.memory.last().unwrap();
    // Two lanes on one model: the weights once, most of the file's bytes and never more.
    let file_bytes = std::fs::metadata(demo_model()).unwrap().len();
    assert!(
        sample.weights_bytes <= file_bytes && sample.weights_bytes > file_bytes * 9 / 10,
        "weights {} of a {file_bytes}-byte file",
        sample.weights_bytes
    );
    // Each lane's own f16 KV cache, from SmolLM2-135M's shape in llama.cpp: 30 layers, K and V,
    // 3 KV heads of 64 dimensions, 2 bytes each per token.
    let per_token: u64 = 30 * 2 * 3 * 64 * 2;
    let cells: u64 = h.state().state.lanes.iter().map(|l| u64::from(l.n_ctx)).sum();
    assert_eq!(sample.kv_bytes, cells * per_token);
    h.key_press(egui::Key::Escape);
    step_until(&mut h, Duration::from_secs(30), "stopped", |a| {
        a.rt.engine.jobs.is_empty()
    });
}

#[test]
fn serve_lanes_serves_each_lane_under_its_name_until_stopped() {
    let mut h = two_lanes(None);
    h.get_by_label("Serve lanes").click();
    h.run_steps(2);
    step_until(&mut h, Duration::from_secs(60), "the server's address", |a| {
        a.rt.tasks.serving.as_ref().is_some_and(|s| s.url.is_some())
    });
    let url = h.state().rt.tasks.serving.as_ref().unwrap().url.clone().unwrap();
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    h.get_by_label(&format!("serving at {url}/v1"));
    let agent = ureq::Agent::new_with_config(ureq::Agent::config_builder().http_status_as_error(false).build());
    let models: serde_json::Value = serde_json::from_str(
        &agent
            .get(format!("{url}/v1/models"))
            .call()
            .unwrap()
            .body_mut()
            .read_to_string()
            .unwrap(),
    )
    .unwrap();
    let ids: Vec<&str> = models["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert!(ids.contains(&"lane-1") && ids.contains(&"lane-2"), "{ids:?}");
    let body = serde_json::json!({"model": "lane-2", "messages": [{"role": "user", "content": "Hi"}], "temperature": 0, "max_tokens": 8});
    let mut resp = agent
        .post(format!("{url}/v1/chat/completions"))
        .header("Content-Type", "application/json")
        .send(body.to_string())
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let v: serde_json::Value = serde_json::from_str(&resp.body_mut().read_to_string().unwrap()).unwrap();
    assert!(
        !v["choices"][0]["message"]["content"].as_str().unwrap().is_empty(),
        "{v}"
    );
    // The answered request reaches the window (the Served requests graph and the count), with
    // the token count the client was told.
    let completion_tokens = v["usage"]["completion_tokens"].as_u64().unwrap();
    step_until(
        &mut h,
        Duration::from_secs(10),
        "the served request in the window",
        |a| a.rt.tasks.serving.as_ref().is_some_and(|s| !s.served.is_empty()),
    );
    h.get_by_label("1 request answered");
    let (n, r) = h.state().rt.tasks.serving.as_ref().unwrap().served[0].clone();
    assert_eq!(
        (n, r.model.as_str(), u64::from(r.generated_tokens)),
        (1, "lane-2", completion_tokens)
    );
    assert!(r.decode_tokens_per_sec > 0.0 && r.ttft_ms > 0.0, "{r:?}");
    h.get_by_label("Stop serving").click();
    h.run_steps(2);
    assert!(h.state().rt.tasks.serving.is_none());
    let addr = url.trim_start_matches("http://").to_string();
    assert!(
        common::wait_for(Duration::from_secs(5), || std::net::TcpStream::connect(&addr)
            .is_err()
            .then_some(()))
        .is_some(),
        "still listening after Stop serving"
    );
}

#[test]
fn esc_stops_running_lanes() {
    let mut h = loaded_app(None);
    start_long_run(&mut h);
    h.key_press(egui::Key::Escape);
    step_until(&mut h, Duration::from_secs(30), "stopped", |a| {
        a.rt.engine.jobs.is_empty()
    });
    let out = &h.state().state.lanes[0].output;
    let stats = out.stats.as_ref().expect("a cancelled run still reports its stats");
    assert_eq!(stats.stop_reason, nanolab::protocol::StopReason::Cancelled);
    assert!(stats.generated_tokens < 1000);
}

#[test]
fn an_engine_killed_while_a_model_loads_shows_on_that_lane_and_a_reload_works() {
    let mut h = two_lanes(None);
    {
        let s = &mut h.state_mut().state;
        s.chat_mode = false;
        s.prompt = "The capital of France is".into();
        s.lanes[0].sampling.max_tokens = 8;
    }
    h.run_steps(2);
    h.get_by_label("Run all").click();
    step_until(&mut h, Duration::from_secs(60), "first outputs", |a| {
        a.state.lanes.iter().all(|l| l.output.stats.is_some())
    });
    let lane1_text = h.state().state.lanes[0].output.text.clone();
    // Another file (a copy, so the engine cannot reuse the loaded model) opened on lane 2, and
    // the engine killed right after the load request went out: it cannot have finished loading.
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("copy.gguf");
    std::fs::copy(demo_model(), &copy).unwrap();
    let lane2 = h.state().state.lanes[1].id;
    let pid = h.state().rt.engine.client.pid().expect("engine running");
    h.state_mut().rt.pending.push(Command::SetModel {
        lane: Some(lane2),
        path: copy.clone(),
    });
    h.state_mut().apply_commands();
    assert!(h.state().rt.engine.load_progress.contains_key(&lane2), "load under way");
    // SAFETY: kill(2) on the engine child this window started.
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    step_until(&mut h, Duration::from_secs(30), "lane 2 told", |a| {
        a.state.lanes[1].output.error.is_some()
    });
    let e = h.state().state.lanes[1].output.error.clone().unwrap();
    assert!(
        e.contains("engine stopped while loading") && e.contains("copy.gguf") && e.contains("signal 9"),
        "{e}"
    );
    h.get_by_label_contains("engine stopped while loading");
    assert!(h.state().rt.engine.load_progress.is_empty(), "no load left spinning");
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "engine {pid} not reaped"
    );
    assert!(
        h.state().state.lanes[0].output.error.is_none(),
        "lane 1 had nothing running"
    );
    assert_eq!(
        h.state().state.lanes[0].output.text,
        lane1_text,
        "lane 1 keeps its output"
    );
    // Open it again: a fresh engine loads it, and both lanes run.
    h.state_mut().rt.pending.push(Command::SetModel {
        lane: Some(lane2),
        path: copy.clone(),
    });
    h.state_mut().apply_commands();
    step_until(&mut h, Duration::from_secs(60), "reloaded", |a| {
        a.rt.engine.jobs.is_empty()
    });
    h.get_by_label("Run all").click();
    step_until(&mut h, Duration::from_secs(60), "both runs done", |a| {
        a.state
            .lanes
            .iter()
            .all(|l| l.output.stats.is_some() && l.output.error.is_none())
    });
    assert_eq!(h.state().state.lanes[1].model.as_deref(), Some(copy.as_path()));
    assert_eq!(
        h.state().state.lanes[1].output.text,
        lane1_text,
        "same model, same greedy output"
    );
    assert_eq!(h.state().rt.engine.client.restarts(), 1);
}

#[test]
fn a_killed_engine_shows_on_the_lanes_concerned_and_a_rerun_works() {
    let mut h = two_lanes(None);
    start_long_run(&mut h);
    let pid = h.state().rt.engine.client.pid().expect("engine running");
    // SAFETY: kill(2) on the engine child this window started.
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    step_until(&mut h, Duration::from_secs(30), "both lanes told", |a| {
        a.state.lanes.iter().all(|l| l.output.error.is_some())
    });
    for l in &h.state().state.lanes {
        let e = l.output.error.as_deref().unwrap();
        assert!(e.contains("engine stopped") && e.contains("signal 9"), "{e}");
    }
    let partial = h.state().state.lanes[0].output.text.clone();
    assert!(!partial.is_empty(), "lane 1 keeps what it streamed before the crash");
    assert_eq!(
        h.get_all_by_label_contains("engine stopped").count(),
        2,
        "a banner on each lane"
    );
    // Run again: a fresh engine serves both lanes.
    {
        let s = &mut h.state_mut().state;
        s.lanes[0].sampling.max_tokens = 8;
    }
    h.run_steps(2);
    h.get_by_label("Run all").click();
    step_until(&mut h, Duration::from_secs(60), "both runs done", |a| {
        a.state.lanes.iter().all(|l| l.output.stats.is_some())
    });
    assert!(h.state().state.lanes.iter().all(|l| l.output.error.is_none()));
    assert_ne!(h.state().rt.engine.client.pid(), Some(pid));
    assert_eq!(h.state().rt.engine.client.restarts(), 1);
    h.get_by_label_contains("restarted 1 times");
}

#[test]
fn state_round_trips_through_the_state_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    let mut h = two_lanes(Some(path.clone()));
    h.state_mut().state.prompt = "persist me".into();
    h.state_mut().state.lanes[1].sampling.seed = 1234;
    h.get_by_label("Light theme").click();
    h.run_steps(2);
    let saved = h.state().state.clone();
    drop(h);
    let (loaded, problem) = state::load(&path);
    assert!(problem.is_none());
    assert_eq!(loaded, saved);
    assert!(!loaded.dark);
    // A corrupt file is moved aside with a message, never silently reset.
    std::fs::write(&path, "{ not json").unwrap();
    let (fresh, problem) = state::load(&path);
    assert_eq!(fresh, state::State::default());
    let msg = problem.expect("a message").to_string();
    assert!(msg.contains("moved to"), "{msg}");
    assert!(!path.exists());
}

#[test]
fn an_unusable_state_file_is_moved_aside_with_a_message_never_reset_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    let newer = serde_json::json!({ "version": 99, "prompt": "from the future" }).to_string();
    for what in ["not UTF-8", "newer than this nanolab", "a folder"] {
        match what {
            "not UTF-8" => std::fs::write(&path, b"{\"prompt\": \"\xff\xfe\"}").unwrap(),
            "a folder" => std::fs::create_dir(&path).unwrap(),
            _ => std::fs::write(&path, &newer).unwrap(),
        }
        let (fresh, problem) = state::load(&path);
        assert_eq!(fresh, state::State::default(), "{what}");
        let msg = problem.expect("a message").to_string();
        assert!(msg.contains("moved to"), "{what}: {msg}");
        assert!(!path.exists(), "{what}: still in place");
        let moved: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.to_string_lossy().contains("unreadable"))
            .collect();
        assert_eq!(moved.len(), 1, "{what}: {moved:?}");
        if what.starts_with("newer") {
            assert!(msg.contains("version 99"), "{msg}");
            assert_eq!(std::fs::read_to_string(&moved[0]).unwrap(), newer);
        }
        for m in moved {
            if m.is_dir() {
                std::fs::remove_dir(m).unwrap();
            } else {
                std::fs::remove_file(m).unwrap();
            }
        }
    }

    // The window shows the message.
    std::fs::write(&path, "{ not json").unwrap();
    let mut h = harness(new_app(Some(path.clone())));
    h.run_steps(2);
    h.get_by_label_contains("could not be used");
    drop(h);

    // A file that cannot even be moved (immutable, so not even root may rename it) is left as it
    // was: the window says so and never saves over it.
    std::fs::write(&path, "{ not json either").unwrap();
    let immutable = std::process::Command::new("chattr").arg("+i").arg(&path).status();
    // Needs root and a file system with attributes (chattr +i); `make test` and CI have both.
    if !immutable.is_ok_and(|s| s.success()) {
        skipped(
            "an_unusable_state_file_is_moved_aside_with_a_message_never_reset_in_place: chattr +i is not \
             available here (needs root and ext4/xfs-like attributes); the kept-in-place case is not run",
        );
        return;
    }
    struct Mutable(PathBuf);
    impl Drop for Mutable {
        fn drop(&mut self) {
            let _ = std::process::Command::new("chattr").arg("-i").arg(&self.0).status();
        }
    }
    let _guard = Mutable(path.clone());
    let mut h = harness(new_app(Some(path.clone())));
    h.run_steps(2);
    h.get_by_label_contains("will not be saved over it");
    assert!(h.state().rt.saved.state_path.is_none());
    h.get_by_label("Add lane").click();
    h.state_mut().state.prompt = "new work".into();
    h.run_steps(3);
    drop(h);
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "{ not json either");
}

#[test]
fn a_broken_adapter_registry_is_reported_and_never_saved_over() {
    let dir = tempfile::tempdir().unwrap();
    let registry = dir.path().join("registry.json");
    std::fs::write(&registry, "{ not json").unwrap();
    let folders = Folders {
        registry: registry.clone(),
        ..Folders::from_env()
    };
    let mut h = harness(new_app_in(None, folders));
    h.run_steps(2);
    h.get_by_label_contains("the adapter registry starts empty and will not be saved over it");
    assert!(h.state_mut().rt.library.registry.save().is_err());
    drop(h);
    assert_eq!(std::fs::read_to_string(&registry).unwrap(), "{ not json");
}

#[test]
fn a_dropped_peft_folder_is_imported_and_registry_adapters_can_be_added() {
    let dir = tempfile::tempdir().unwrap();
    let folders = Folders {
        adapters: dir.path().join("adapters"),
        registry: dir.path().join("registry.json"),
        models: dir.path().join("models"),
        exports: dir.path().join("exports"),
    };
    // A PEFT folder with zero lora_B (no effect), as PEFT initialises it.
    let peft = dir.path().join("my-peft");
    std::fs::create_dir_all(&peft).unwrap();
    let a: Vec<u8> = vec![0u8; 4 * 576 * 4];
    let b: Vec<u8> = vec![0u8; 576 * 4 * 4];
    let views = vec![
        (
            "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight".to_string(),
            safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![4, 576], &a).unwrap(),
        ),
        (
            "base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight".to_string(),
            safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![576, 4], &b).unwrap(),
        ),
    ];
    std::fs::write(
        peft.join("adapter_model.safetensors"),
        safetensors::serialize(views, None).unwrap(),
    )
    .unwrap();
    std::fs::write(peft.join("adapter_config.json"), r#"{"r": 4, "lora_alpha": 8}"#).unwrap();

    let mut h = loaded_app_in(None, folders);
    let at = lane_center(&h, 0);
    drop_file(&mut h, &peft, at);
    let lane = &h.state().state.lanes[0];
    assert_eq!(lane.adapters.len(), 1, "{:?}", lane.output.error);
    assert!(dir.path().join("adapters/my-peft.gguf").is_file());
    // Bake the stack into a new model file, with progress, and find it in the library.
    h.get_by_label("Bake into model").click();
    h.run_steps(2);
    step_until(&mut h, Duration::from_secs(60), "merge done", |a| {
        a.rt.tasks.merge.is_none()
    });
    let merged = dir.path().join("models/SmolLM2-135M-Instruct.Q4_1+my-peft@1.00.gguf");
    assert!(
        merged.is_file(),
        "{:?} {:?}",
        h.state().rt.banner,
        h.state().state.lanes[0].output.error
    );
    assert!(h.state().rt.library.installed.iter().any(|m| m.path == merged));
    nanolab::gguf::validate_model_file(&merged).unwrap();
    // The registry panel lists it as fitting; add it to a second lane from there.
    h.get_by_label("Add lane").click();
    h.run_steps(4);
    h.get_by_label("Add to lane 2").click();
    h.run_steps(3);
    assert_eq!(h.state().state.lanes[1].adapters.len(), 1);
    // A broken PEFT folder gives a banner naming the problem.
    std::fs::write(peft.join("adapter_config.json"), "{ broken").unwrap();
    let at = lane_center(&h, 1);
    drop_file(&mut h, &peft, at);
    let err = h.state().state.lanes[1].output.error.clone().expect("banner");
    assert!(err.contains("invalid adapter config"), "{err}");
}

#[test]
fn a_lane_on_a_simulated_device_heats_and_paces_its_tokens() {
    let mut h = loaded_app(None);
    {
        let s = &mut h.state_mut().state;
        s.chat_mode = false;
        s.prompt = "1, 2, 3, 4, 5,".into();
        s.lanes[0].sampling.max_tokens = 60;
    }
    h.run_steps(2);
    // Pick the device through the combo box, then turn on paced mode.
    h.get_by_label("Device").click();
    h.run_steps(2);
    h.get_by_label("Raspberry Pi 5 (BCM2712, 8 GB, passive heatsink)")
        .click();
    h.run_steps(2);
    assert_eq!(h.state().state.lanes[0].device.as_deref(), Some("raspberry-pi-5"));
    h.get_by_label("paced").click();
    h.run_steps(2);
    assert!(h.state().state.lanes[0].paced);
    let started = Instant::now();
    h.get_by_label("Run all").click();
    h.run_steps(2);
    step_until(&mut h, Duration::from_secs(60), "run done", |a| {
        a.rt.engine.jobs.is_empty() && a.state.lanes[0].output.stats.is_some()
    });
    let lane_id = h.state().state.lanes[0].id;
    let stats = h.state().state.lanes[0].output.stats.clone().expect("stats");
    {
        let sim = &h.state().rt.lanes.sims[&lane_id];
        assert_eq!(
            sim.points.len() as u32,
            stats.generated_tokens,
            "one simulated step per real token"
        );
        assert!(sim.temp_c() > 25.0, "generating heats the device");
    }
    step_until(&mut h, Duration::from_secs(30), "paced tokens shown", |a| {
        a.rt.lanes.sims[&lane_id].pending.is_empty()
    });
    // Paced: the last token is shown no earlier than the simulated device would produce it.
    let sim = &h.state().rt.lanes.sims[&lane_id];
    let simulated_secs = sim.points.last().unwrap().t_secs - sim.points.first().unwrap().t_secs;
    assert!(simulated_secs > 0.3, "{simulated_secs}");
    assert!(
        started.elapsed().as_secs_f64() >= simulated_secs * 0.95,
        "tokens shown in {:?}, the device needs {simulated_secs:.2} s",
        started.elapsed()
    );
    assert_eq!(h.state().state.lanes[0].output.text, stats.text);
    assert!(h.get_all_by_label_contains("°C").count() >= 1);
}

#[test]
fn a_remote_lane_added_from_the_dialog_runs_beside_a_local_one_and_its_endpoint_dying_leaves_it_alone() {
    let mut server = servers::LlamaServer::start(&[caps_adapter()]);
    let mut h = loaded_app(None);
    h.get_by_label("Add remote lane…").click();
    h.run_steps(4);
    assert!(h.state().rt.dialogs.remote.is_some(), "the dialog opens");
    h.get_by_label("URL").focus();
    h.run_steps(1);
    h.state_mut().rt.dialogs.remote.as_mut().unwrap().url.clear();
    h.get_by_label("URL").type_text(&server.url);
    h.run_steps(2);
    h.get_by_label("Connect").click();
    step_until(&mut h, Duration::from_secs(30), "the endpoint's answer", |a| {
        a.rt.dialogs
            .remote
            .as_ref()
            .is_some_and(|d| d.info.is_some() || d.error.is_some())
    });
    h.run_steps(2);
    h.get_by_label(&format!("llama-server at {}", server.url));
    h.get_by_role_and_label(egui::accesskit::Role::CheckBox, "smollm2-caps")
        .click();
    h.run_steps(2);
    h.get_by_label("Add to the lanes").click();
    h.run_steps(3);
    let remote = h.state().state.lanes[1].remote.clone().expect("lane 2 is remote");
    assert_eq!(remote.url, server.url);
    assert!(h.state().rt.dialogs.remote.is_none(), "the dialog closes");
    h.get_by_label("Remote");

    // Both lanes with the caps adapter: the remote one must say what the local one says.
    let caps = h.state().state.lanes[1].adapters[0].clone();
    assert_eq!(caps.path, PathBuf::from("smollm2-caps"));
    let at = lane_center(&h, 0);
    drop_file(&mut h, &caps_adapter(), at);
    {
        let s = &mut h.state_mut().state;
        s.chat_mode = false;
        s.prompt = "The capital of France is".into();
        s.lanes[0].sampling.max_tokens = 16;
    }
    h.run_steps(2);
    h.get_by_label("Run all").click();
    step_until(&mut h, Duration::from_secs(60), "both lanes done", |a| {
        a.rt.engine.jobs.is_empty() && a.state.lanes.iter().all(|l| l.output.stats.is_some())
    });
    h.run_steps(2);
    let (local, far) = (&h.state().state.lanes[0].output, &h.state().state.lanes[1].output);
    assert_eq!(far.text, local.text);
    assert!(!far.text.is_empty());
    assert_eq!(
        far.stats.as_ref().unwrap().remote.as_ref().unwrap().server,
        "llama-server"
    );
    h.get_by_label("on llama-server");

    // The endpoint dies mid-stream: the remote lane shows why, the local one finishes.
    start_long_run(&mut h);
    step_until(&mut h, Duration::from_secs(30), "remote tokens", |a| {
        a.state.lanes[1].output.tokens.len() > 3
    });
    server.kill();
    step_until(&mut h, Duration::from_secs(60), "the remote lane's error", |a| {
        a.state.lanes[1].output.error.is_some()
    });
    assert!(h.state().state.lanes[0].output.error.is_none());
    assert!(
        h.state().state.lanes[0].output.stats.is_none(),
        "the local lane is still running"
    );
    let n = h.state().state.lanes[0].output.tokens.len();
    step_until(&mut h, Duration::from_secs(30), "the local lane goes on", |a| {
        a.state.lanes[0].output.tokens.len() > n + 3
    });
    let err = h.state().state.lanes[1].output.error.clone().unwrap();
    assert!(err.contains(&server.url), "{err}");
    h.key_press(egui::Key::Escape);
    step_until(&mut h, Duration::from_secs(30), "stopped", |a| {
        a.rt.engine.jobs.is_empty()
    });
}
