//! The real window (egui_kittest, no display needed) on the real engine and demo model.

use crate::common;

use std::time::Duration;

use crate::common::ui::*;
use crate::common::*;
use egui_kittest::kittest::Queryable;
use nanolab::ui::app::Command;

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
