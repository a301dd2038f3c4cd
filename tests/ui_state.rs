//! The window's state and library on the real engine (egui_kittest): the state file and the
//! adapter registry, kept or set aside and never lost; PEFT folders dropped and imported; a
//! simulated device; a remote lane beside a local one.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::common::ui::*;
use crate::common::*;
use egui_kittest::kittest::Queryable;
use nanolab::ui::app::Folders;
use nanolab::ui::state;

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
