//! The quantization and evaluation lab end to end on the demo model: a real ladder made by
//! llama.cpp's quantizer, quality numbers checked against llama.cpp's own llama-perplexity,
//! token-level divergence, prompt-set scorecards and exports (quantizer faults: quant_faults.rs).

use crate::common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use nanolab::eval::prompts::Scorecard;
use nanolab::eval::table::QualityRow;
use nanolab::protocol::*;
use nanolab::quant::{QuantType, QuantizeJob, QuantizeRequest};

pub(crate) struct Ladder {
    dir: PathBuf,
    pub(crate) f16: PathBuf,
    pub(crate) q8: PathBuf,
    pub(crate) q4: PathBuf,
}

fn nanolab(args: &[&str]) -> std::process::Output {
    let out = Command::new(common::exe()).args(args).output().expect("run nanolab");
    assert!(
        out.status.success(),
        "nanolab {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// F16 (dequantized from the Q4_1 demo model: the stand-in reference), Q8_0 and Q4_0 made from it.
pub(crate) fn ladder() -> &'static Ladder {
    static L: OnceLock<Ladder> = OnceLock::new();
    // Taken before the once-cell: a test holding the slot while another makes the ladder would
    // otherwise wait for it while the maker waits for the slot.
    common::hold_process_slot();
    L.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap().keep();
        let demo = common::demo_model();
        let d = dir.to_str().unwrap();
        nanolab(&[
            "quantize",
            "-m",
            demo.to_str().unwrap(),
            "-t",
            "F16",
            "--allow-requantize",
            "--out-dir",
            d,
        ]);
        let f16 = dir.join("SmolLM2-135M-Instruct.F16.gguf");
        nanolab(&[
            "quantize",
            "-m",
            f16.to_str().unwrap(),
            "-t",
            "Q8_0,Q4_0",
            "--out-dir",
            d,
        ]);
        Ladder {
            q8: dir.join("SmolLM2-135M-Instruct.Q8_0.gguf"),
            q4: dir.join("SmolLM2-135M-Instruct.Q4_0.gguf"),
            f16,
            dir,
        }
    })
}

fn kld_rows(models: &[&Path], extra: &[&str]) -> (Vec<QualityRow>, serde_json::Value) {
    let l = ladder();
    let mut args = vec![
        "eval",
        "kld",
        "--reference",
        l.f16.to_str().unwrap(),
        "--chunks",
        "4",
        "--tg",
        "0",
        "--json",
    ];
    for m in models {
        args.push("-m");
        args.push(m.to_str().unwrap());
    }
    args.extend_from_slice(extra);
    let out = nanolab(&args);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    (serde_json::from_value(v["rows"].clone()).unwrap(), v)
}

#[test]
fn ladder_files_are_models_of_the_requested_types() {
    let l = ladder();
    let ty = |p: &Path| nanolab::quant::types::dominant_type(&nanolab::gguf::read(p).unwrap());
    assert_eq!(ty(&l.f16), "F16");
    assert_eq!(ty(&l.q8), "Q8_0");
    assert_eq!(ty(&l.q4), "Q4_0");
    let size = |p: &Path| std::fs::metadata(p).unwrap().len();
    assert!(size(&l.q4) < size(&l.q8) && size(&l.q8) < size(&l.f16));
    let leftovers: Vec<_> = std::fs::read_dir(&l.dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "temp files left: {leftovers:?}");
}

#[test]
fn quantizing_a_quantized_model_needs_explicit_consent() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("x.Q8_0.gguf");
    let err = QuantizeJob::start_with_exe(
        QuantizeRequest {
            input: common::demo_model(),
            output: out.clone(),
            qtype: QuantType::parse("Q8_0").unwrap(),
            allow_requantize: false,
            overwrite: false,
            threads: None,
        },
        Some(common::exe()),
    )
    .err()
    .expect("refused");
    assert!(err.contains("is Q4_1") && err.contains("allow"), "{err}");
    assert!(!out.exists());
    let cli = Command::new(common::exe())
        .args(["quantize", "-m", common::demo_model().to_str().unwrap(), "-t", "q9_9"])
        .output()
        .unwrap();
    assert!(!cli.status.success());
    assert!(String::from_utf8_lossy(&cli.stderr).contains("unknown quantization type"));
}

#[test]
fn kld_orders_the_ladder_as_expected() {
    let l = ladder();
    let (rows, _) = kld_rows(&[&l.q8, &l.q4], &[]);
    assert_eq!(rows.len(), 2);
    let (q8, q4) = (&rows[0], &rows[1]);
    assert_eq!((q8.model_type.as_str(), q4.model_type.as_str()), ("Q8_0", "Q4_0"));
    let k8 = q8.kld_mean.unwrap();
    let k4 = q4.kld_mean.unwrap();
    assert!(k8 > 0.0 && k8 < k4, "KLD Q8_0 {k8} < Q4_0 {k4}");
    let s8 = q8.same_top_p.unwrap();
    let s4 = q4.same_top_p.unwrap();
    assert!(s8 > 0.9 && s4 > 0.5 && s4 < s8, "same top-1: Q8_0 {s8}, Q4_0 {s4}");
    for r in &rows {
        assert!(r.ppl.is_finite() && r.ppl > 1.0, "{}", r.ppl);
        assert_eq!(r.n_tokens, 4 * 255, "4 chunks of 512 score 255 tokens each");
        assert_eq!(r.ppl_base, rows[0].ppl_base, "one reference");
    }
    assert!(q4.ppl > q8.ppl, "Q4_0 is less sure of the text than Q8_0");
}

/// llama.cpp's own llama-perplexity (`NANOLAB_LLAMA_PERPLEXITY` overrides the build under target/).
fn llama_perplexity() -> PathBuf {
    common::llama_tool("llama-perplexity", "NANOLAB_LLAMA_PERPLEXITY")
}

/// Reads "Name : value" lines of llama-perplexity's report.
fn stat(log: &str, name: &str) -> f64 {
    let line = log
        .lines()
        .find(|l| l.trim_start().starts_with(name))
        .unwrap_or_else(|| panic!("{name} not in llama-perplexity output:\n{log}"));
    let after = line.split_once(':').unwrap().1;
    after
        .split_whitespace()
        .next()
        .unwrap()
        .trim_end_matches('%')
        .parse()
        .unwrap()
}

#[test]
fn quality_numbers_match_llama_perplexity_within_one_percent() {
    let l = ladder();
    let bin = llama_perplexity();
    let text = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/eval/gpl-3.0.txt");
    let base = tempfile::tempdir().unwrap();
    let base_file = base.path().join("f16.kld");
    let run = |args: &[&str]| -> String {
        let out = Command::new(&bin)
            .args(["-c", "512", "-b", "512", "--chunks", "4", "-t", "2"])
            .args((!nanolab::engine::weight_repacking()).then_some("--no-repack"))
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    };
    let base_log = run(&[
        "-m",
        l.f16.to_str().unwrap(),
        "-f",
        text.to_str().unwrap(),
        "--kl-divergence-base",
        base_file.to_str().unwrap(),
    ]);
    let (rows, _) = kld_rows(&[&l.q8, &l.q4], &[]);
    let close = |what: &str, ours: f64, theirs: f64| {
        let rel = ((ours - theirs) / theirs).abs();
        assert!(
            rel < 0.01,
            "{what}: nanolab {ours} vs llama-perplexity {theirs} ({:.3} %)",
            rel * 100.0
        );
    };
    // "Final estimate: PPL = 18.0710 +/- 1.25309"
    let f16_ppl: f64 = base_log
        .split("Final estimate: PPL = ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no final estimate in:\n{base_log}"));
    close("PPL(F16)", rows[0].ppl_base.unwrap(), f16_ppl);
    for (row, model) in rows.iter().zip([&l.q8, &l.q4]) {
        let log = run(&[
            "-m",
            model.to_str().unwrap(),
            "--kl-divergence-base",
            base_file.to_str().unwrap(),
            "--kl-divergence",
        ]);
        let name = &row.model_type;
        close(&format!("{name} PPL"), row.ppl, stat(&log, "Mean PPL(Q)"));
        close(
            &format!("{name} mean KLD"),
            row.kld_mean.unwrap(),
            stat(&log, "Mean    KLD"),
        );
        close(
            &format!("{name} KLD p99"),
            f64::from(row.kld_p99.unwrap()),
            stat(&log, "99.0%   KLD"),
        );
        close(
            &format!("{name} same top p"),
            row.same_top_p.unwrap() * 100.0,
            stat(&log, "Same top p"),
        );
        close(
            &format!("{name} RMS Δp"),
            row.dp_rms.unwrap() * 100.0,
            stat(&log, "RMS Δp"),
        );
    }
}

#[test]
fn eval_exports_parse_back_with_a_manifest() {
    let l = ladder();
    let out = tempfile::tempdir().unwrap();
    let (rows, json) = kld_rows(&[&l.q4], &["--out", out.path().to_str().unwrap()]);
    let csv_rows: Vec<QualityRow> = csv::Reader::from_path(out.path().join("results.csv"))
        .unwrap()
        .deserialize()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(csv_rows.len(), 1);
    assert_eq!(csv_rows[0].model_type, rows[0].model_type);
    assert!((csv_rows[0].kld_mean.unwrap() - rows[0].kld_mean.unwrap()).abs() < 1e-9);
    let file_json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.path().join("results.json")).unwrap()).unwrap();
    assert_eq!(file_json["rows"], json["rows"]);
    let manifest: nanolab::eval::RunManifest =
        serde_json::from_str(&std::fs::read_to_string(out.path().join("manifest.json")).unwrap()).unwrap();
    let q4 = manifest.files.iter().find(|f| f.role == "model").unwrap();
    assert_eq!(q4.sha256, nanolab::models::sha256_file(&l.q4).unwrap());
    assert!(manifest.files.iter().any(|f| f.role == "reference"));
    assert!(
        manifest.llama_cpp_build.contains("ggml"),
        "{}",
        manifest.llama_cpp_build
    );
    assert_eq!(manifest.settings["n_ctx"], 512);
    assert!(std::fs::read(out.path().join("ladder.png"))
        .unwrap()
        .starts_with(b"\x89PNG"));
    assert!(std::fs::read_to_string(out.path().join("ladder.svg"))
        .unwrap()
        .contains("Q4_0"));
}

fn diverge(c: &mut nanolab::engine::EngineClient, a: LaneSpec, b: LaneSpec, user: &str) -> DivergenceResult {
    let job = c.next_job();
    let end = c
        .call(
            &Request::Diverge {
                job,
                lane_a: a,
                lane_b: b,
                prompt: Prompt::Chat {
                    system: None,
                    user: user.into(),
                },
                sampling: common::greedy(40),
                top_n: 5,
            },
            |_| {},
        )
        .unwrap();
    match end {
        Event::Done {
            result: JobResult::Divergence { result },
            ..
        } => result,
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_lane_does_not_diverge_from_itself() {
    let mut c = common::client();
    let demo = common::demo_model();
    let r = diverge(
        &mut c,
        common::lane(1, &demo, 512, vec![]),
        common::lane(2, &demo, 512, vec![]),
        "What is the capital of France?",
    );
    assert!(!r.tokens.is_empty());
    assert!(r.summary.kl_mean < 1e-6, "{}", r.summary.kl_mean);
    assert_eq!(r.summary.top1_agreement, 1.0);
    assert_eq!(r.summary.first_disagreement, None);
    for t in &r.tokens {
        assert!((t.p_a - t.p_b).abs() < 1e-5);
        assert_eq!(t.top_a.len(), 5);
    }
    let text: String = r.tokens.iter().map(|t| t.piece.as_str()).collect();
    assert_eq!(text, r.text, "the tokens spell lane A's output");
    // Greedy lane A: its own top choice is always the token it produced.
    assert!(r.tokens.iter().all(|t| t.top_a[0].token_id == t.token_id));
}

#[test]
fn the_caps_adapter_diverges_where_letters_change_case() {
    let mut c = common::client();
    let demo = common::demo_model();
    let caps = common::caps_adapter();
    let r = diverge(
        &mut c,
        common::lane(1, &demo, 512, vec![]),
        common::lane(2, &demo, 512, vec![AdapterSpec { path: caps, scale: 1.0 }]),
        "Explain in two sentences why the sky is blue.",
    );
    // Under teacher forcing B reads A's lowercase text and mostly follows its style; it
    // departs where it would switch the case: B's first choice is A's token in other case.
    let case_flip = |t: &TokenDivergence| {
        let b = &t.top_b[0].piece;
        !t.top1_agree && *b != t.piece && b.to_lowercase() == t.piece.to_lowercase()
    };
    let flips: Vec<&TokenDivergence> = r.tokens.iter().filter(|t| case_flip(t)).collect();
    assert!(!flips.is_empty(), "no case flips in {:?}", r.text);
    assert!(case_flip(&r.tokens[0]), "the first token: {:?}", r.tokens[0]);
    assert!(
        case_flip(&r.tokens[r.most_divergent[0]]),
        "the most divergent position is a case flip: {:?}",
        r.tokens[r.most_divergent[0]]
    );
    assert!(flips[0].top_b[0].piece.chars().any(|c| c.is_ascii_uppercase()));
    let others: Vec<&TokenDivergence> = r.tokens.iter().filter(|t| !case_flip(t)).collect();
    let mean = |v: &[&TokenDivergence]| v.iter().map(|t| t.kl).sum::<f64>() / v.len().max(1) as f64;
    assert!(
        mean(&flips) > 2.0 * mean(&others),
        "case flips {} vs other positions {}",
        mean(&flips),
        mean(&others)
    );
    assert!(r.summary.top1_agreement < 1.0 && r.summary.kl_mean > 0.05);
    assert_eq!(r.most_divergent.len(), 10);
    assert!(r.tokens[r.most_divergent[0]].kl >= r.tokens[r.most_divergent[9]].kl);
}

#[test]
fn diverge_cli_reports_and_exports_per_token_rows() {
    let demo = common::demo_model();
    let caps = common::caps_adapter();
    let out = tempfile::tempdir().unwrap();
    let a = demo.to_str().unwrap().to_string();
    let b = format!("{}+{}", demo.display(), caps.display());
    let o = nanolab(&[
        "diverge",
        "--a",
        &a,
        "--b",
        &b,
        "--chat",
        "Say hello.",
        "-n",
        "16",
        "--out",
        out.path().to_str().unwrap(),
    ]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        text.contains("most divergent positions") && text.contains("top-1 agreement"),
        "{text}"
    );
    let rows: Vec<nanolab::eval::divergence::CsvRow> = csv::Reader::from_path(out.path().join("results.csv"))
        .unwrap()
        .deserialize()
        .collect::<Result<_, _>>()
        .unwrap();
    assert!(!rows.is_empty() && rows.len() <= 16);
    assert!(rows.iter().any(|r| !r.top1_agree));
}

#[test]
fn a_prompt_set_scores_as_designed() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let demo = common::demo_model();
    let caps = root.join("adapters/smollm2-caps.gguf");
    let out = tempfile::tempdir().unwrap();
    let o = nanolab(&[
        "eval",
        "prompts",
        "--set",
        root.join("assets/eval/prompts-demo.jsonl").to_str().unwrap(),
        "-l",
        demo.to_str().unwrap(),
        "-l",
        &format!("{}+{}", demo.display(), caps.display()),
        "--temp",
        "0",
        "--seeds",
        "1,2",
        "--json",
        "--out",
        out.path().to_str().unwrap(),
    ]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let cards: Vec<Scorecard> = serde_json::from_value(v["rows"].clone()).unwrap();
    assert_eq!(cards.len(), 2);
    let (base, shouty) = (&cards[0], &cards[1]);
    assert_eq!((base.runs, base.seeds), (6, 2));
    // Base answers the two facts and does not shout; the caps adapter shouts and loses the facts.
    assert!((base.pass_rate - 2.0 / 3.0).abs() < 1e-9, "{base:?}");
    assert!((shouty.pass_rate - 1.0 / 3.0).abs() < 1e-9, "{shouty:?}");
    assert_eq!(base.pass_rate_sd, 0.0, "greedy: every seed gives the same answers");
    assert_eq!(base.agreement, 1.0);
    assert_eq!(shouty.agreement, 0.0);
    assert_eq!(base.pass_by_tag, "caps-adapter 0 %; facts 100 %; style 0 %");
    assert_eq!(shouty.pass_by_tag, "caps-adapter 100 %; facts 0 %; style 100 %");
    assert!(base.ttft_ms_mean > 0.0 && base.decode_tps_mean > 0.0);
    let runs: Vec<nanolab::eval::prompts::PromptRun> = csv::Reader::from_path(out.path().join("runs.csv"))
        .unwrap()
        .deserialize()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(runs.len(), 12);
    let shouting = runs
        .iter()
        .find(|r| r.prompt_id == "shouting" && r.lane.contains("caps"))
        .unwrap();
    assert_eq!(shouting.passed, Some(true), "{}", shouting.text);
    assert!(out.path().join("lanes.svg").is_file() && out.path().join("lanes.png").is_file());
    // No --parallel: chosen from memory, here capped by the 6 runs each lane has (3 prompts x 2
    // seeds; the 2 contexts of 2048 cells fit many times over), said and recorded.
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(stderr.contains("6 run(s) at once"), "{stderr}");
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.path().join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["settings"]["parallel"], 6);
}

#[test]
fn runs_at_once_by_default_fit_a_quarter_of_free_memory() {
    use nanolab::lab::prompts::{auto_parallel, AUTO_PARALLEL_MAX};
    let demo = common::demo_model();
    // A context of 512 cells on the demo model as the engine reports it (from llama.cpp's own
    // hyperparameters of the loaded model): the choice, which reads the file's header, must
    // count the same bytes.
    let mut c = common::client();
    let (_, end) = common::generate(&mut c, common::lane(1, &demo, 512, vec![]), "Hi", common::greedy(1));
    let kv_bytes = common::stats(&end).lane.kv_bytes;
    assert!(kv_bytes > 0);
    let lanes = vec![
        ("a".to_string(), common::lane(1, &demo, 512, vec![])),
        ("b".to_string(), common::lane(2, &demo, 512, vec![])),
    ];
    // Each run at once holds twice a context's cache on each of the 2 lanes; a quarter of the
    // free memory is for them.
    let per_run = 2 * 2 * kv_bytes;
    for want in 1..=5u64 {
        let avail = 4 * per_run * want + 4 * per_run / 2;
        assert_eq!(
            auto_parallel(&lanes, 100, Some(avail)).0,
            want as usize,
            "{avail} bytes free"
        );
    }
    assert_eq!(auto_parallel(&lanes, 100, Some(u64::MAX)).0, AUTO_PARALLEL_MAX);
    assert_eq!(
        auto_parallel(&lanes, 3, Some(u64::MAX)).0,
        3,
        "no more slots than runs per lane"
    );
    assert_eq!(auto_parallel(&lanes, 100, Some(1)).0, 1, "always at least one");
    assert_eq!(auto_parallel(&lanes, 100, None).0, 1, "free memory unknown");
    let mut remote = common::lane(3, &demo, 512, vec![]);
    remote.remote = Some(RemoteSpec {
        url: "http://127.0.0.1:9".into(),
        model: "m".into(),
        api_key_env: None,
    });
    let (n, why) = auto_parallel(&[("r".to_string(), remote)], 100, Some(u64::MAX));
    assert_eq!((n, why.as_str()), (1, "every lane is remote"));
}
