//! The lab panel in the real window (egui_kittest) on the real engine: token comparison,
//! quality of lanes and of a freshly made ladder, prompt sets dropped on the window, exports.

use crate::common;

use std::path::Path;
use std::time::Duration;

use crate::common::ui::*;
use crate::common::*;
use egui_kittest::kittest::Queryable;
use egui_kittest::Harness;
use nanolab::lab::Job;
use nanolab::ui::app::lab::LabCommand;
use nanolab::ui::app::{App, Command, JobKind};
use nanolab::ui::state::LabTab;

/// Two lanes on the demo model, the second with the caps adapter; the lab open.
fn lab_app(models_dir: &Path) -> Harness<'static, App> {
    let mut app = App::new(None, Some(exe()));
    app.rt.library.models_dir = models_dir.to_path_buf();
    app.rt.pending.push(Command::SetModel {
        lane: None,
        path: demo_model(),
    });
    app.apply_commands();
    let template = app.state.lanes[0].clone();
    let second = app.state.add_lane(Some(&template));
    app.rt.pending.push(Command::SetModel {
        lane: Some(second),
        path: demo_model(),
    });
    app.rt.pending.push(Command::AddAdapter {
        lane: second,
        path: caps_adapter(),
    });
    app.apply_commands();
    app.state.prompt = "Explain in two sentences why the sky is blue.".into();
    for l in &mut app.state.lanes {
        l.sampling.max_tokens = 24;
    }
    let mut h = harness_sized(app, LAB_WINDOW);
    step_until(&mut h, Duration::from_secs(30), "models loaded", |a| {
        a.rt.engine.jobs.is_empty()
    });
    h.get_by_label("Lab").click();
    h.run_steps(3);
    h
}

#[test]
fn comparing_lanes_colours_tokens_and_leaves_lane_outputs_alone() {
    let models = tempfile::tempdir().unwrap();
    let mut h = lab_app(models.path());
    h.get_by_label("Compare").click();
    step_until(&mut h, Duration::from_secs(60), "comparison", |a| {
        a.rt.lab.divergence.is_some()
    });
    let d = h.state().rt.lab.divergence.clone().unwrap();
    assert!(d.summary.top1_agreement < 1.0 && d.summary.kl_mean > 0.0);
    assert!(h.state().rt.lab.divergence_lanes.1.contains("smollm2-caps.gguf"));
    // The text is shown token by token and the table lists the worst positions.
    h.get_by_label("Most divergent positions");
    let first = d.tokens[0].piece.clone();
    assert!(h.get_all_by_label(&first).count() >= 1, "token {first:?} shown");
    h.get_all_by_label(&first).next().unwrap().click();
    h.run_steps(2);
    assert_eq!(h.state().rt.lab.selected_token, Some(0));
    h.get_by_label("A's top choices");
    // Lab runs use their own engine lanes: the window's lanes have no output.
    assert!(h
        .state()
        .state
        .lanes
        .iter()
        .all(|l| l.output.text.is_empty() && l.output.stats.is_none()));
    // ... and give their contexts back when done.
    let job = h.state().rt.engine.client.next_job();
    let status = h
        .state_mut()
        .rt
        .engine
        .client
        .call(&nanolab::protocol::Request::Status { job }, |_| {})
        .unwrap();
    let nanolab::protocol::Event::Done {
        result: nanolab::protocol::JobResult::Status { status },
        ..
    } = status
    else {
        panic!("{status:?}");
    };
    assert!(
        status
            .lanes
            .iter()
            .all(|l| l.lane < nanolab::ui::app::lab::LAB_LANE_BASE),
        "lab lanes left in the engine: {:?}",
        status.lanes.iter().map(|l| l.lane).collect::<Vec<_>>()
    );
    // Export: files and a manifest.
    let exports = tempfile::tempdir().unwrap();
    h.state_mut().rt.library.exports_dir = exports.path().to_path_buf();
    h.get_by_label("Export").click();
    step_until(&mut h, Duration::from_secs(30), "export", |a| {
        a.rt.lab.message.as_deref().is_some_and(|m| m.starts_with("exported"))
    });
    let dir = std::fs::read_dir(exports.path())
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let rows: Vec<nanolab::eval::divergence::CsvRow> = csv::Reader::from_path(dir.join("results.csv"))
        .unwrap()
        .deserialize()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(rows.len(), d.tokens.len());
    let manifest: nanolab::eval::RunManifest =
        serde_json::from_str(&std::fs::read_to_string(dir.join("manifest.json")).unwrap()).unwrap();
    let roles: Vec<&str> = manifest.files.iter().map(|f| f.role.as_str()).collect();
    assert_eq!(
        roles,
        ["model", "adapter"],
        "the shared model once, and lane B's adapter"
    );
    assert_eq!(
        manifest.files[1].sha256,
        nanolab::models::sha256_file(&caps_adapter()).unwrap()
    );
}

#[test]
fn quality_of_lanes_and_of_a_fresh_ladder() {
    let models = tempfile::tempdir().unwrap();
    let mut h = lab_app(models.path());
    h.state_mut().state.lab.tab = LabTab::Quality;
    h.state_mut().state.lab.chunks = Some(2);
    h.run_steps(2);
    // Lane 2 (caps adapter) against lane 1 (base).
    h.get_by_label("Measure lanes").click();
    step_until(&mut h, Duration::from_secs(120), "lane quality", |a| {
        a.rt.lab.quality.len() == 1 && a.rt.lab.quality_job.is_none()
    });
    let row = h.state().rt.lab.quality[0].clone();
    assert!(row.label().contains("smollm2-caps"), "{}", row.label());
    assert!(
        row.kld_mean.unwrap() > 0.05,
        "the adapter moves the model: {:?}",
        row.kld_mean
    );
    assert_eq!(row.n_tokens, 2 * 255);
    h.get_by_label("mean KLD");

    // A ladder from the demo model (quantized: the window asks for consent first).
    h.state_mut().state.lab.reference = Some(demo_model());
    h.state_mut().state.lab.levels = vec!["Q8_0".into()];
    h.run_steps(3);
    h.get_by_label_contains("requantizing compounds error");
    h.get_by_label("Make ladder").click();
    h.run_steps(2);
    let msg = h.state().rt.lab.message.clone().unwrap_or_default();
    assert!(msg.contains("is Q4_1"), "{msg}");
    h.get_by_label("allow requantizing").click();
    h.run_steps(2);
    h.get_by_label("Make ladder").click();
    step_until(&mut h, Duration::from_secs(120), "ladder made and measured", |a| {
        !a.rt.lab.made.is_empty() && a.rt.lab.quality.len() == 1 && a.rt.lab.quality_job.is_none()
    });
    let made = models.path().join("SmolLM2-135M-Instruct.Q8_0.gguf");
    assert!(made.is_file());
    let q8 = &h.state().rt.lab.quality[0];
    assert_eq!(q8.model_type, "Q8_0");
    assert!(
        q8.kld_mean.unwrap() < row.kld_mean.unwrap(),
        "Q8_0 is closer to its reference than caps is to base"
    );
    assert!(
        h.state().rt.library.installed.iter().any(|m| m.path == made),
        "the library lists it"
    );
}

#[test]
fn a_dropped_prompt_set_runs_on_every_lane_and_a_broken_one_says_why() {
    let models = tempfile::tempdir().unwrap();
    let mut h = lab_app(models.path());
    let set = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/eval/prompts-demo.jsonl");
    drop_file(&mut h, &set, egui::pos2(400.0, 400.0));
    assert_eq!(h.state().state.lab.prompt_set.as_deref(), Some(set.as_path()));
    assert_eq!(h.state().state.lab.tab, LabTab::Prompts);
    h.state_mut().state.lab.seeds = "1,2".into();
    h.state_mut().state.lab.temperature = 0.0;
    assert_eq!(h.state().state.lab.parallel, 0, "runs at once default to auto");
    h.state_mut().state.lab.parallel = 1;
    h.run_steps(2);
    h.get_by_label("Run on all lanes").click();
    step_until(&mut h, Duration::from_secs(120), "scorecards", |a| {
        !a.rt.lab.scorecards.is_empty()
    });
    let cards = h.state().rt.lab.scorecards.clone();
    assert_eq!(cards.len(), 2);
    assert!((cards[0].pass_rate - 2.0 / 3.0).abs() < 1e-9, "{:?}", cards[0]);
    assert!((cards[1].pass_rate - 1.0 / 3.0).abs() < 1e-9, "{:?}", cards[1]);
    assert_eq!(h.state().rt.lab.runs.len(), 12);
    h.get_by_label("same as ref");
    // Three runs at once ("at once" in the tab): the same greedy results, in the same order.
    let texts = |a: &App| {
        a.rt.lab
            .runs
            .iter()
            .map(|r| (r.lane.clone(), r.prompt_id.clone(), r.seed, r.text.clone()))
            .collect::<Vec<_>>()
    };
    let one_at_a_time = texts(h.state());
    h.state_mut().state.lab.parallel = 3;
    h.run_steps(1);
    h.get_by_label("Run on all lanes").click();
    h.run_steps(2);
    step_until(&mut h, Duration::from_secs(120), "scorecards again", |a| {
        a.rt.lab.prompt_job.is_none() && a.rt.lab.runs.len() == 12
    });
    assert_eq!(texts(h.state()), one_at_a_time);
    // "auto": chosen from free memory, capped by the 6 runs each lane has; said in the notice.
    // More endpoints typed with no remote lane are said unused, and the set runs without them
    // (nothing listens on the discard port).
    h.state_mut().state.lab.parallel = 0;
    h.state_mut().state.lab.endpoints = "http://127.0.0.1:9".into();
    h.run_steps(1);
    h.get_by_label("Run on all lanes").click();
    h.run_steps(2);
    let notice = h.state().rt.notice.clone().unwrap_or_default();
    assert!(notice.contains("6 run(s) at once"), "{notice}");
    assert!(
        notice.contains("no lane here is remote, so they are not used"),
        "{notice}"
    );
    step_until(&mut h, Duration::from_secs(120), "scorecards, auto", |a| {
        a.rt.lab.prompt_job.is_none() && a.rt.lab.runs.len() == 12
    });
    assert_eq!(texts(h.state()), one_at_a_time);

    let dir = tempfile::tempdir().unwrap();
    let broken = dir.path().join("broken.jsonl");
    std::fs::write(&broken, "{\"prompt\": \"fine\"}\n{\"prompt\": 3}\n").unwrap();
    drop_file(&mut h, &broken, egui::pos2(400.0, 400.0));
    h.state_mut().rt.pending.push(Command::Lab(LabCommand::RunPrompts));
    h.run_steps(3);
    let msg = h.state().rt.lab.message.clone().unwrap_or_default();
    assert!(msg.contains("line 2"), "{msg}");
    h.get_by_label_contains("line 2");
    assert_eq!(h.state().rt.lab.scorecards.len(), 2, "earlier results kept");
}

#[test]
fn comparing_with_a_remote_lane_reads_it_position_by_position_and_says_approximate() {
    let server = servers::LlamaServer::start(&[common::caps_adapter()]);
    let models = tempfile::tempdir().unwrap();
    let mut h = lab_app(models.path());
    // A raw prompt first: both lanes read exactly the same tokens, so top-1 must agree.
    h.state_mut().state.chat_mode = false;
    let chat_prompt = std::mem::replace(&mut h.state_mut().state.prompt, "The capital of France is".into());
    h.run_steps(2);
    h.get_by_label("Compare").click();
    step_until(&mut h, Duration::from_secs(60), "the local comparison", |a| {
        a.rt.lab.divergence.is_some()
    });
    let exact = h.state().rt.lab.divergence.clone().unwrap();
    assert!(exact.approximate.is_none());
    // Lane 2 (base + caps) moves to llama-server with the same adapter by name.
    {
        let s = &mut h.state_mut().state;
        s.lanes[1].remote = Some(nanolab::protocol::RemoteSpec {
            url: server.url.clone(),
            model: "SmolLM2-135M-Instruct.Q4_1".into(),
            api_key_env: None,
        });
        s.lanes[1].model = None;
        for a in &mut s.lanes[1].adapters {
            a.path = "smollm2-caps".into();
        }
    }
    h.run_steps(2);
    h.get_by_label("Compare").click();
    step_until(&mut h, Duration::from_secs(120), "the remote comparison", |a| {
        a.rt.lab.diverge_job.is_none() && a.rt.lab.divergence.as_ref().is_some_and(|d| d.approximate.is_some())
    });
    let approx = h.state().rt.lab.divergence.clone().unwrap();
    assert!(h.state().rt.lab.divergence_lanes.1.contains(&server.url));
    assert_eq!(approx.text, exact.text);
    assert_eq!(approx.summary.first_disagreement, exact.summary.first_disagreement);
    let agree = |d: &nanolab::protocol::DivergenceResult| d.tokens.iter().map(|t| t.top1_agree).collect::<Vec<_>>();
    assert_eq!(agree(&approx), agree(&exact));
    h.run_steps(2);
    assert!(h.query_by_label_contains("Approximate:").is_some(), "the note is shown");
    // A chat: llama-server renders its own template of it (/apply-template), then reads A's ids.
    h.state_mut().state.chat_mode = true;
    h.state_mut().state.prompt = chat_prompt;
    h.state_mut().rt.lab.divergence = None;
    h.run_steps(2);
    h.get_by_label("Compare").click();
    step_until(&mut h, Duration::from_secs(120), "the remote chat comparison", |a| {
        a.rt.lab.diverge_job.is_none() && a.rt.lab.divergence.is_some()
    });
    let chat = h.state().rt.lab.divergence.clone().unwrap();
    assert!(chat.approximate.is_some() && !chat.tokens.is_empty());
    assert!(
        chat.summary.top1_agreement < 1.0,
        "the caps adapter changes the chat too"
    );
    // Stopped while lane B reads: the job waits for the read in flight to end before it gives
    // its lanes back, says "stopped", and shows no half comparison.
    h.get_by_label("Compare").click();
    step_until(&mut h, Duration::from_secs(60), "lane B reading", |a| {
        a.rt.lab
            .diverge_job
            .as_ref()
            .is_some_and(|j| j.progress().label.starts_with("lane B reads"))
    });
    h.state_mut().apply_lab(LabCommand::Cancel);
    assert!(
        h.state().rt.lab.diverge_job.is_some(),
        "a read is in flight: the job waits for its end"
    );
    step_until(&mut h, Duration::from_secs(30), "stopped", |a| {
        a.rt.lab.diverge_job.is_none()
    });
    assert_eq!(h.state().rt.lab.message.as_deref(), Some("stopped"));
    assert!(h.state().rt.lab.divergence.is_none(), "no half comparison is shown");
    assert!(!h.state().rt.engine.jobs.values().any(|k| matches!(k, JobKind::Lab(_))));
}

#[test]
fn prompt_sets_spread_a_remote_lane_over_more_endpoints_from_the_window() {
    // Lane 2 on a llama-server that is dead when the set runs; a second one serves the same
    // model. Without "more endpoints" the set fails naming the dead one; with it every prompt is
    // answered, by the live server.
    let mut dead = servers::LlamaServer::start(&[]);
    let alive = servers::LlamaServer::start(&[]);
    let models = tempfile::tempdir().unwrap();
    let mut h = lab_app(models.path());
    let set = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/eval/prompts-demo.jsonl");
    drop_file(&mut h, &set, egui::pos2(400.0, 400.0));
    {
        let s = &mut h.state_mut().state;
        s.lanes[1].adapters.clear();
        s.lanes[1].remote = Some(nanolab::protocol::RemoteSpec {
            url: dead.url.clone(),
            model: "SmolLM2-135M-Instruct.Q4_1".into(),
            api_key_env: None,
        });
        s.lab.seeds = "1".into();
        s.lab.temperature = 0.0;
    }
    dead.kill();
    h.run_steps(2);
    h.get_by_label("Run on all lanes").click();
    step_until(&mut h, Duration::from_secs(120), "the set to fail", |a| {
        a.rt.lab.prompt_job.is_none() && a.rt.lab.message.is_some()
    });
    let msg = h.state().rt.lab.message.clone().unwrap();
    assert!(msg.contains(&dead.url), "{msg}");
    assert!(h.state().rt.lab.scorecards.is_empty(), "{msg}");

    h.state_mut().rt.lab.message = None;
    // The field shows once a lane is remote.
    h.get_by_label("more endpoints");
    h.state_mut().state.lab.endpoints = format!("{} ", alive.url);
    h.run_steps(2);
    h.get_by_label("Run on all lanes").click();
    step_until(&mut h, Duration::from_secs(180), "scorecards", |a| {
        a.rt.lab.prompt_job.is_none() && !a.rt.lab.scorecards.is_empty()
    });
    let runs = h.state().rt.lab.runs.clone();
    let n_prompts = std::fs::read_to_string(&set)
        .unwrap()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .count();
    assert_eq!(runs.len(), 2 * n_prompts, "{:?}", h.state().rt.lab.message);
    // Every prompt on both lanes (so the remote lane's too) was answered.
    let mut lanes: Vec<&str> = runs.iter().map(|r| r.lane.as_str()).collect();
    lanes.sort_unstable();
    lanes.dedup();
    assert_eq!(lanes.len(), 2, "{lanes:?}");
    assert!(runs.iter().all(|r| r.n_gen > 0 && !r.text.is_empty()), "{runs:?}");
}

#[test]
fn killing_the_quantizer_shows_in_the_lab_and_a_rerun_works() {
    let models = tempfile::tempdir().unwrap();
    let mut h = lab_app(models.path());
    {
        let lab = &mut h.state_mut().state.lab;
        lab.tab = LabTab::Quality;
        lab.reference = Some(demo_model());
        lab.allow_requantize = true;
        lab.levels = vec!["F16".into()];
        lab.chunks = Some(2);
    }
    h.run_steps(2);
    h.get_by_label("Make ladder").click();
    step_until(&mut h, Duration::from_secs(30), "quantizing", |a| {
        a.rt.lab.ladder.as_ref().is_some_and(|l| l.progress().fraction > 0.0)
    });
    let pid = h
        .state()
        .rt
        .lab
        .ladder
        .as_ref()
        .and_then(|l| l.pid())
        .expect("worker running");
    // SAFETY: kill(2) on the quantizer child the window started.
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    step_until(&mut h, Duration::from_secs(30), "the lab says so", |a| {
        a.rt.lab.ladder.is_none()
    });
    let msg = h.state().rt.lab.message.clone().unwrap_or_default();
    assert!(msg.contains("F16") && msg.contains("signal 9"), "{msg}");
    h.get_by_label_contains("signal 9");
    let left: Vec<_> = std::fs::read_dir(models.path()).unwrap().collect();
    assert!(left.is_empty(), "nothing half-written in the models folder: {left:?}");
    assert!(
        h.state().rt.lab.quality.is_empty(),
        "nothing measured from a killed run"
    );
    // Again, to the end: the level is made and measured.
    h.get_by_label("Make ladder").click();
    step_until(&mut h, Duration::from_secs(120), "made and measured", |a| {
        a.rt.lab.quality.len() == 1 && !a.rt.lab.busy()
    });
    assert!(models.path().join("SmolLM2-135M-Instruct.F16.gguf").is_file());
}

#[test]
fn compress_on_an_adapter_row_writes_lower_ranks_and_measures_each_against_the_original() {
    let dir = tempfile::tempdir().unwrap();
    let adapters = dir.path().join("adapters");
    let folders = nanolab::ui::app::Folders {
        models: dir.path().join("models"),
        adapters: adapters.clone(),
        registry: dir.path().join("registry.json"),
        exports: dir.path().join("exports"),
    };
    let mut app = App::with_folders(None, Some(exe()), folders);
    app.rt.pending.push(Command::SetModel {
        lane: None,
        path: demo_model(),
    });
    app.apply_commands();
    let lane = app.state.lanes[0].id;
    app.rt.pending.push(Command::AddAdapter {
        lane,
        path: caps_adapter(),
    });
    app.apply_commands();
    app.state.lab.chunks = Some(1);
    app.state.lab.n_ctx = 256;
    let mut h = harness_sized(app, LAB_WINDOW);
    step_until(&mut h, Duration::from_secs(30), "model loaded", |a| {
        a.rt.engine.jobs.is_empty()
    });
    h.get_by_label("More").click();
    h.run_steps(2);
    h.get_by_label("Compress…").click();
    h.run_steps(2);
    step_until(&mut h, Duration::from_secs(300), "three ranks measured", |a| {
        a.rt.lab.compress.is_none() && a.rt.lab.quality_job.is_none() && a.rt.lab.quality.len() == 3
    });
    let rows = h.state().rt.lab.quality.clone();
    for (row, rank) in rows.iter().zip([4, 2, 1]) {
        assert!(
            row.adapters.contains(&format!("smollm2-caps.r{rank}.f16.gguf")),
            "{}",
            row.adapters
        );
        assert!(adapters.join(format!("smollm2-caps.r{rank}.f16.gguf")).is_file());
        assert!(row.kld_mean.unwrap() > 0.0, "rank {rank} costs something");
    }
    // Rank 1 keeps least of the adapter: it costs the most.
    assert!(rows[2].kld_mean.unwrap() > rows[0].kld_mean.unwrap());
    assert!(h
        .state()
        .rt
        .lab
        .message
        .as_deref()
        .is_some_and(|m| m.contains("rank 4")));
    // Export as PEFT from the same menu.
    h.get_by_label("More").click();
    h.run_steps(2);
    h.get_by_label("Export as PEFT").click();
    h.run_steps(2);
    let peft = dir.path().join("exports/smollm2-caps-peft");
    assert!(peft.join("adapter_config.json").is_file() && peft.join("adapter_model.safetensors").is_file());
}
