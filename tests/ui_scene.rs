//! Scenes and the arena in the real window (egui_kittest) on the real engine: the demo scene
//! from the welcome panel, a saved scene reopened identical, a tampered file named with nothing
//! loaded (then located), and blind A/B votes that hide every stack name until the vote and
//! outlive the window.

use crate::common;

use std::path::PathBuf;
use std::time::Duration;

use crate::common::ui::*;
use crate::common::*;
use egui_kittest::kittest::Queryable;
use egui_kittest::Harness;
use nanolab::eval::arena::Verdict;
use nanolab::ui::app::{App, Command, Folders};
use nanolab::ui::state;

fn demo_scene() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("assets/scenes/demo.json")
}

/// The window with no lanes, its own (empty) registry, the project's models and adapters.
fn fresh(state_path: Option<PathBuf>, registry: PathBuf) -> Harness<'static, App> {
    let exports = registry.with_file_name("exports");
    let folders = Folders {
        registry,
        exports,
        ..Folders::from_env()
    };
    harness(App::with_folders(state_path, Some(exe()), folders))
}

fn opened(h: &mut Harness<'_, App>) {
    step_until(h, Duration::from_secs(60), "scene opened and models loaded", |a| {
        a.rt.tasks.scene.is_none() && a.state.lanes.len() == 2 && a.rt.engine.jobs.is_empty()
    });
}

/// What a scene sets on a lane (not its id or output).
fn settings(l: &state::LaneState) -> impl PartialEq + std::fmt::Debug {
    let adapters: Vec<_> = l
        .adapters
        .iter()
        .map(|a| (a.path.canonicalize().unwrap(), a.scale, a.enabled))
        .collect();
    (
        l.label.clone(),
        l.model.as_ref().map(|m| m.canonicalize().unwrap()),
        adapters,
        l.sampling.clone(),
        l.n_ctx,
        l.device.clone(),
        l.paced,
    )
}

#[test]
fn the_demo_scene_opens_from_the_welcome_panel_and_a_saved_scene_reopens_identical() {
    let dir = tempfile::tempdir().unwrap();
    let mut h = fresh(None, dir.path().join("registry.json"));
    h.run_steps(2);
    h.get_by_label("Try the demo scene").click();
    opened(&mut h);
    {
        let a = h.state();
        let lanes = &a.state.lanes;
        assert!(lanes[0].adapters.is_empty());
        assert_eq!(lanes[1].adapters.len(), 1);
        assert!(lanes[1].adapters[0].path.ends_with("smollm2-caps.gguf"));
        assert_eq!(lanes[1].device.as_deref(), Some("pixel-9-pro"));
        assert!(lanes[1].paced && !lanes[0].paced);
        assert!(
            a.rt.lanes.sims.contains_key(&lanes[1].id),
            "lane 2 simulates its device"
        );
        let scene = a.state.scene.as_ref().unwrap();
        assert_eq!(scene.prompts.len(), 3, "the demo prompts");
        assert_eq!(a.state.prompt, "What is the capital of France?");
    }
    // Change what a scene must carry, save, open in a fresh window.
    h.state_mut().state.lanes[1].adapters[0].scale = 0.5;
    h.state_mut().state.lanes[0].sampling.seed = 777;
    h.state_mut().state.lanes[0].n_ctx = 1024;
    let saved = dir.path().join("mine/scene.json");
    h.state_mut().rt.pending.push(Command::SaveScene(saved.clone()));
    h.run_steps(1);
    step_until(&mut h, Duration::from_secs(60), "scene saved", |a| {
        a.rt.tasks.scene.is_none()
    });
    assert!(saved.is_file(), "banner: {:?}", h.state().rt.banner);
    let text = std::fs::read_to_string(&saved).unwrap();
    assert!(
        text.contains("d7873015601e88ff25806853c7763cedf2889dd41b511a41c84969812010829c"),
        "adapter hash recorded"
    );
    assert!(
        text.contains("\"catalog\": \"smollm2-135m-instruct\""),
        "catalog id recorded"
    );
    let before: Vec<_> = h.state().state.lanes.iter().map(settings).collect();

    // The saved file dropped on a fresh window opens it.
    let mut h2 = fresh(None, dir.path().join("registry.json"));
    h2.run_steps(1);
    common::ui::drop_file(&mut h2, &saved, egui::pos2(600.0, 400.0));
    opened(&mut h2);
    let after: Vec<_> = h2.state().state.lanes.iter().map(settings).collect();
    assert_eq!(after, before, "the saved scene brings the same lanes back");
    assert_eq!(h2.state().state.scene.as_ref().unwrap().prompts.len(), 3);
}

#[test]
fn a_tampered_adapter_is_named_with_both_hashes_nothing_loads_and_locating_the_right_file_opens_it() {
    let dir = tempfile::tempdir().unwrap();
    // The demo scene beside a copy of the caps adapter that is then changed.
    let copy = dir.path().join("caps-copy.gguf");
    let mut bytes = std::fs::read(caps_adapter()).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&copy, &bytes).unwrap();
    let mut v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(demo_scene()).unwrap()).unwrap();
    let root = demo_scene().parent().unwrap().to_path_buf();
    for lane in v["lanes"].as_array_mut().unwrap() {
        let p = root.join(lane["model"]["path"].as_str().unwrap());
        lane["model"]["path"] = p.display().to_string().into();
    }
    v["lanes"][1]["adapters"][0]["path"] = copy.display().to_string().into();
    let ps = root.join(v["prompt_set"]["path"].as_str().unwrap());
    v["prompt_set"]["path"] = ps.display().to_string().into();
    let scene = dir.path().join("scene.json");
    std::fs::write(&scene, serde_json::to_string(&v).unwrap()).unwrap();

    let mut h = fresh(None, dir.path().join("registry.json"));
    // A lane already open must survive the failed open untouched.
    h.state_mut().rt.pending.push(Command::SetModel {
        lane: None,
        path: demo_model(),
    });
    h.run_steps(1);
    step_until(&mut h, Duration::from_secs(30), "model loaded", |a| {
        a.rt.engine.jobs.is_empty()
    });
    let lanes_before = h.state().state.lanes.clone();
    h.state_mut().rt.pending.push(Command::OpenScene(scene.clone()));
    h.run_steps(1);
    step_until(&mut h, Duration::from_secs(30), "scene checked", |a| {
        a.rt.tasks.scene.is_none()
    });
    h.get_by_label_contains("caps-copy.gguf has changed");
    h.get_by_label_contains("d7873015601e88ff25806853c7763cedf2889dd41b511a41c84969812010829c");
    h.get_by_label("lane 2 adapter 1");
    assert_eq!(h.state().state.lanes, lanes_before, "nothing half-loaded");
    assert!(h.state().state.scene.is_none());
    // "Locate…" with the real adapter: its hash matches, the scene opens.
    h.state_mut().locate_scene_file(0, caps_adapter());
    h.run_steps(1);
    opened(&mut h);
    assert!(h.state().rt.dialogs.scene_problems.is_none());
    assert_eq!(h.state().state.lanes[1].adapters[0].path, caps_adapter());
}

#[test]
fn the_arena_hides_every_stack_name_until_the_vote_and_the_votes_survive_the_window() {
    let dir = tempfile::tempdir().unwrap();
    let state_path = dir.path().join("state.json");
    let mut h = fresh(Some(state_path.clone()), dir.path().join("registry.json"));
    h.state_mut().rt.pending.push(Command::OpenScene(demo_scene()));
    h.run_steps(1);
    opened(&mut h);
    // The library lists adapter files by name: it must not show while the arena runs.
    h.state_mut().state.show_library = true;
    h.run_steps(1);
    h.get_by_label("Arena").click();
    h.run_steps(2);
    assert!(h.state().arena_on());
    h.key_press(egui::Key::Space);
    h.run_steps(2);
    step_until(
        &mut h,
        Duration::from_secs(120),
        "both answers in (lane 2 paced)",
        |a| !a.arena_generating() && a.state.lanes.iter().all(|l| l.output.stats.is_some()),
    );
    // The prompt's own limit (24 tokens in the demo set), not the lane's 64.
    for l in &h.state().state.lanes {
        assert!(
            l.output.stats.as_ref().unwrap().generated_tokens <= 24,
            "{}",
            l.output.text
        );
    }
    // Before the vote: letters only; no lane label, adapter or model name anywhere.
    h.get_by_label("A");
    h.get_by_label("B");
    for hidden in ["caps", "base", "SmolLM2", "smollm2"] {
        assert!(
            h.query_by_label_contains(hidden).is_none(),
            "{hidden:?} is shown before the vote"
        );
    }
    let order = h.state().arena_order();
    // Key 2 votes for B.
    h.key_press(egui::Key::Num2);
    h.run_steps(2);
    assert!(
        h.get_all_by_label("base + caps").count() >= 1,
        "names shown after the vote"
    );
    let votes = h.state().state.scene.as_ref().unwrap().arena.record.votes.clone();
    assert_eq!(votes.len(), 1);
    assert_eq!(votes[0].verdict, Verdict::Pick(1));
    let labels = ["base", "base + caps"];
    assert_eq!(
        votes[0].shown,
        order.iter().map(|&i| labels[i].to_string()).collect::<Vec<_>>()
    );
    assert_eq!(votes[0].prompt_id, "capital");
    // The results table is shown once the vote is in, and exports as a bundle.
    h.get_by_label("95 % Wilson");
    h.get_by_label("Export results").click();
    h.run_steps(2);
    let exports = dir.path().join("exports");
    let bundle = std::fs::read_dir(&exports).unwrap().next().unwrap().unwrap().path();
    for name in [
        "results.json",
        "results.csv",
        "votes.csv",
        "arena.png",
        "arena.svg",
        "manifest.json",
    ] {
        assert!(bundle.join(name).is_file(), "{name} exported");
    }
    let results: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(bundle.join("results.json")).unwrap()).unwrap();
    let winner = results["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["win_rate"] == 1.0)
        .unwrap();
    assert_eq!(winner["stack"], labels[order[1]], "B won its one game");
    // Presenter view: only the votes and the answers.
    h.state_mut()
        .rt
        .pending
        .push(Command::Arena(nanolab::ui::app::scene::ArenaCommand::Presenter));
    h.run_steps(2);
    assert!(h.query_by_label("Library").is_none(), "no controls in presenter view");
    h.get_by_label("Next prompt (space)");
    // The window goes away without any shutdown (as under kill -9): the state file already has
    // the vote.
    std::mem::forget(h);
    let (saved, problem) = state::load(&state_path);
    assert!(problem.is_none());
    assert_eq!(saved.scene.unwrap().arena.record.votes, votes);
}
