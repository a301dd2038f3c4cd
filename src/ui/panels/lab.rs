//! The lab panel: compare two lanes token by token, make a quantization ladder and measure it,
//! run prompt sets. Draws the lab's state and emits commands; the work happens elsewhere.

use egui::{Color32, RichText};
use egui_plot::{Plot, PlotPoints, Points, Text};

use crate::eval::table::QualityRow;
use crate::lab::ladder::Ladder;
use crate::lab::Progress;
use crate::protocol::{DivergenceResult, LaneId, TokenDivergence, TopToken};
use crate::quant::types::is_reference_grade;
use crate::quant::QUANT_TYPES;
use crate::ui::app::lab::LabCommand;
use crate::ui::app::{Command, Runtime};
use crate::ui::state::{LabTab, State};

fn file_name(p: &std::path::Path) -> String {
    p.file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned())
}

/// KL values of the colour legend.
const KL_LEGEND: [f64; 5] = [0.01, 0.1, 0.5, 1.0, 3.0];

/// Background for a token by its KL(A||B), on a log scale: none below 0.01 nats, pale yellow
/// around 0.05, orange around 0.5, red from 5 up.
pub fn kl_colour(kl: f64, dark: bool) -> Color32 {
    if kl < 0.01 {
        return Color32::TRANSPARENT;
    }
    let t = ((kl / 0.01).log10() / 500f64.log10()).clamp(0.0, 1.0) as f32;
    let lerp = |a: f32, b: f32| (a + (b - a) * t) as u8;
    if dark {
        Color32::from_rgb(lerp(70.0, 200.0), lerp(64.0, 40.0), lerp(20.0, 30.0))
    } else {
        Color32::from_rgb(lerp(255.0, 240.0), lerp(246.0, 80.0), lerp(190.0, 60.0))
    }
}

/// The lab panel. `compare` is the pair of lanes a comparison would use.
pub fn lab_ui(
    ui: &mut egui::Ui,
    state: &mut State,
    rt: &Runtime,
    compare: Option<(LaneId, LaneId)>,
    cmds: &mut Vec<Command>,
) {
    ui.horizontal(|ui| {
        ui.heading("Lab");
        ui.selectable_value(&mut state.lab.tab, LabTab::Compare, "Compare tokens")
            .on_hover_text("Where and why two lanes differ, token by token");
        ui.selectable_value(&mut state.lab.tab, LabTab::Quality, "Quality")
            .on_hover_text("Quantization ladder and quality against a reference (perplexity, KL divergence)");
        ui.selectable_value(&mut state.lab.tab, LabTab::Prompts, "Prompt sets")
            .on_hover_text("Run a JSONL prompt set on every lane with several seeds; scorecards");
    });
    if let Some(msg) = &rt.lab.message {
        let ok = msg.starts_with("exported") || msg == "stopped";
        let colour = if ok {
            ui.visuals().weak_text_color()
        } else {
            ui.visuals().error_fg_color
        };
        ui.add(egui::Label::new(RichText::new(msg).color(colour)).wrap());
    }
    ui.separator();
    egui::ScrollArea::both()
        .auto_shrink([false, false])
        .show(ui, |ui| match state.lab.tab {
            LabTab::Compare => compare_ui(ui, state, rt, compare, cmds),
            LabTab::Quality => quality_ui(ui, state, rt, cmds),
            LabTab::Prompts => prompts_ui(ui, state, rt, cmds),
        });
}

fn lane_picker(ui: &mut egui::Ui, id: &str, state: &State, value: &mut Option<LaneId>, shown: LaneId) {
    egui::ComboBox::from_id_salt(id)
        .selected_text(
            state
                .lanes
                .iter()
                .position(|l| l.id == shown)
                .map_or_else(|| "-".into(), |i| format!("Lane {}", i + 1)),
        )
        .show_ui(ui, |ui| {
            for (i, l) in state.lanes.iter().enumerate().filter(|(_, l)| l.model.is_some()) {
                let name = l.model.as_deref().map(file_name).unwrap_or_default();
                let adapters = l.adapters.iter().filter(|a| a.enabled).count();
                let text = if adapters > 0 {
                    format!("Lane {}: {name} + {adapters} adapter(s)", i + 1)
                } else {
                    format!("Lane {}: {name}", i + 1)
                };
                if ui.selectable_label(shown == l.id, text).clicked() {
                    *value = Some(l.id);
                }
            }
        });
}

fn compare_ui(
    ui: &mut egui::Ui,
    state: &mut State,
    rt: &Runtime,
    compare: Option<(LaneId, LaneId)>,
    cmds: &mut Vec<Command>,
) {
    ui.label("Lane A generates from the prompt; both lanes then read A's text and their next-token distributions are compared at every position. Colour: KL(A||B), the divergence of B from A in nats.");
    let Some((a, b)) = compare else {
        ui.weak("Load a model in a lane first.");
        return;
    };
    let mut pick_a = None;
    let mut pick_b = None;
    ui.horizontal(|ui| {
        ui.label("A");
        lane_picker(ui, "cmp_a", state, &mut pick_a, a);
        ui.label("B");
        lane_picker(ui, "cmp_b", state, &mut pick_b, b);
    });
    if pick_a.is_some() {
        state.lab.compare_a = pick_a;
    }
    if pick_b.is_some() {
        state.lab.compare_b = pick_b;
    }
    ui.horizontal(|ui| {
        let running = rt.lab.diverge_job.is_some();
        if ui
            .add_enabled(!running, egui::Button::new("Compare"))
            .on_hover_text("Generate on lane A with its sampling, then teacher-force both lanes on that text")
            .clicked()
        {
            cmds.push(Command::Lab(LabCommand::Diverge));
        }
        if running {
            ui.weak("comparing…");
            if ui.small_button("Stop").clicked() {
                cmds.push(Command::Lab(LabCommand::Cancel));
            }
        }
        if rt.lab.divergence.is_some()
            && ui
                .small_button("Export")
                .on_hover_text("CSV and JSON per token, with a run manifest, to the exports folder")
                .clicked()
        {
            cmds.push(Command::Lab(LabCommand::Export(LabTab::Compare)));
        }
    });
    if let Some(d) = &rt.lab.divergence {
        divergence_ui(ui, d, &rt.lab.divergence_lanes, rt.lab.selected_token, state.dark, cmds);
    }
}

fn top_list(ui: &mut egui::Ui, top: &[TopToken]) {
    for t in top {
        ui.monospace(format!("{:>5.1}% {:?}", t.prob * 100.0, t.piece));
    }
}

fn token_details(ui: &mut egui::Ui, t: &TokenDivergence) {
    ui.label(format!(
        "token {} {:?}: KL {:.4} nats, p_A {:.3}, p_B {:.3}, top-1 {}",
        t.index,
        t.piece,
        t.kl,
        t.p_a,
        t.p_b,
        if t.top1_agree { "agrees" } else { "differs" }
    ));
    ui.columns(2, |c| {
        c[0].strong("A's top choices");
        top_list(&mut c[0], &t.top_a);
        c[1].strong("B's top choices");
        top_list(&mut c[1], &t.top_b);
    });
}

fn divergence_ui(
    ui: &mut egui::Ui,
    d: &DivergenceResult,
    lanes: &(String, String),
    selected: Option<usize>,
    dark: bool,
    cmds: &mut Vec<Command>,
) {
    let s = &d.summary;
    ui.label(format!("A = {}\nB = {}", lanes.0, lanes.1));
    ui.strong(format!(
        "{} tokens · mean KL {:.4} · max {:.3} · top-1 agreement {:.1} % · mean p_B(A's token) {:.3} · first disagreement {}",
        s.n_tokens,
        s.kl_mean,
        s.kl_max,
        s.top1_agreement * 100.0,
        s.p_b_mean,
        s.first_disagreement.map_or_else(|| "none".into(), |i| format!("at token {i}"))
    ));
    egui::Frame::group(ui.style()).show(ui, |ui| {
        ui.horizontal_wrapped(|ui| {
            ui.spacing_mut().item_spacing.x = 0.0;
            for t in &d.tokens {
                let mut text = RichText::new(t.piece.replace('\n', "\\n")).background_color(kl_colour(t.kl, dark));
                if !t.top1_agree {
                    text = text.underline();
                }
                if selected == Some(t.index) {
                    text = text.strong();
                }
                let r = ui.add(egui::Label::new(text).sense(egui::Sense::click()));
                let r = r.on_hover_ui(|ui| token_details(ui, t));
                if r.clicked() {
                    cmds.push(Command::Lab(LabCommand::SelectToken(Some(t.index))));
                }
            }
        });
    });
    ui.horizontal_wrapped(|ui| {
        ui.weak("KL (nats):");
        for kl in KL_LEGEND {
            ui.label(RichText::new(format!(" {kl} ")).background_color(kl_colour(kl, dark)));
        }
        ui.weak(
            "Underlined: B would have picked another token first. Hover or click a token for both lanes' top choices.",
        );
    });
    if let Some(t) = selected.and_then(|i| d.tokens.get(i)) {
        egui::Frame::group(ui.style()).show(ui, |ui| token_details(ui, t));
    }
    ui.strong("Most divergent positions");
    egui::Grid::new("most_divergent").striped(true).show(ui, |ui| {
        for h in ["#", "token", "KL", "p_A", "p_B", "A top-3", "B top-3"] {
            ui.strong(h);
        }
        ui.end_row();
        let short = |v: &[TopToken]| {
            v.iter()
                .take(3)
                .map(|t| format!("{:?} {:.2}", t.piece, t.prob))
                .collect::<Vec<_>>()
                .join(", ")
        };
        for &i in &d.most_divergent {
            let Some(t) = d.tokens.get(i) else { continue };
            if ui.link(t.index.to_string()).clicked() {
                cmds.push(Command::Lab(LabCommand::SelectToken(Some(t.index))));
            }
            ui.monospace(format!("{:?}", t.piece));
            ui.label(format!("{:.3}", t.kl));
            ui.label(format!("{:.3}", t.p_a));
            ui.label(format!("{:.3}", t.p_b));
            ui.label(short(&t.top_a)).on_hover_ui(|ui| top_list(ui, &t.top_a));
            ui.label(short(&t.top_b)).on_hover_ui(|ui| top_list(ui, &t.top_b));
            ui.end_row();
        }
    });
}

fn quality_ui(ui: &mut egui::Ui, state: &mut State, rt: &Runtime, cmds: &mut Vec<Command>) {
    ui.strong("Quantization ladder");
    let mut choices: Vec<std::path::PathBuf> = rt.installed.iter().map(|m| m.path.clone()).collect();
    for l in &state.lanes {
        if let Some(m) = &l.model {
            if !choices.contains(m) {
                choices.push(m.clone());
            }
        }
    }
    ui.horizontal(|ui| {
        ui.label("Reference");
        egui::ComboBox::from_id_salt("lab_reference")
            .selected_text(
                state
                    .lab
                    .reference
                    .as_deref()
                    .map_or_else(|| "choose…".into(), file_name),
            )
            .width(260.0)
            .show_ui(ui, |ui| {
                for c in &choices {
                    if ui
                        .selectable_label(state.lab.reference.as_ref() == Some(c), file_name(c))
                        .clicked()
                    {
                        state.lab.reference = Some(c.clone());
                    }
                }
            });
    });
    let ref_type = state
        .lab
        .reference
        .as_ref()
        .and_then(|r| rt.inspected.get(r))
        .and_then(|s| s.as_ref().ok())
        .and_then(|s| {
            s.file_type
                .clone()
                .or_else(|| s.quant_mix.first().map(|q| q.ggml_type.to_uppercase()))
        });
    if let Some(t) = &ref_type {
        ui.horizontal(|ui| {
            ui.label(format!("reference type: {t}"));
            if !is_reference_grade(t) {
                ui.checkbox(&mut state.lab.allow_requantize, "allow requantizing")
                    .on_hover_text("The reference is already quantized; levels made from it carry its error too. Make an F16 from it first for a stand-in reference.");
            }
        });
        if !is_reference_grade(t) {
            ui.colored_label(
                ui.visuals().warn_fg_color,
                format!("{t} is quantized: requantizing compounds error. Tick F16 to make a stand-in reference first, then choose it."),
            );
        }
    }
    ui.horizontal_wrapped(|ui| {
        for q in QUANT_TYPES {
            let mut on = state.lab.levels.iter().any(|l| l == q.name);
            if ui.checkbox(&mut on, q.name).changed() {
                if on {
                    state.lab.levels.push(q.name.to_string());
                } else {
                    state.lab.levels.retain(|l| l != q.name);
                }
            }
        }
    });
    ui.horizontal(|ui| {
        let ladder = rt.lab.ladder.as_ref().map(Ladder::progress);
        let quantizing = ladder.is_some();
        if ui
            .add_enabled(!quantizing, egui::Button::new("Make ladder"))
            .on_hover_text("Quantize the reference to each ticked level into the models folder (llama.cpp's quantizer, in a separate process), then measure each against the reference")
            .clicked()
        {
            cmds.push(Command::Lab(LabCommand::MakeLadder));
        }
        if let Some(p) = ladder {
            ui.add(step_bar(p).desired_width(260.0));
            if ui.small_button("Cancel").clicked() {
                cmds.push(Command::Lab(LabCommand::Cancel));
            }
        }
    });
    for m in rt.lab.made() {
        ui.weak(format!(
            "{}: {} ({:.1} MiB, {:.2} bpw{})",
            m.quant_type,
            file_name(&m.output),
            m.bytes as f64 / 1048576.0,
            m.bits_per_weight,
            if m.seconds > 0.0 {
                format!(", {:.1} s", m.seconds)
            } else {
                ", already in the models folder: reused; delete it to make it again".into()
            }
        ));
    }
    ui.separator();
    ui.strong("Quality against the reference");
    ui.horizontal(|ui| {
        ui.label("Text");
        let name = state
            .lab
            .text
            .as_deref()
            .map_or_else(|| "GPL-3.0 (built in)".into(), file_name);
        ui.monospace(name)
            .on_hover_text("Drop a .txt file on the window to use it");
        if state.lab.text.is_some() && ui.small_button("built-in").clicked() {
            cmds.push(Command::Lab(LabCommand::SetText(None)));
        }
        ui.label("chunk");
        ui.add(
            egui::DragValue::new(&mut state.lab.n_ctx)
                .range(16..=8192)
                .suffix(" tok"),
        )
        .on_hover_text("Tokens per chunk (llama-perplexity -c); the second half of each chunk is scored");
        let mut limit = state.lab.chunks.is_some();
        if ui.checkbox(&mut limit, "at most").changed() {
            state.lab.chunks = limit.then_some(4);
        }
        if let Some(c) = state.lab.chunks.as_mut() {
            ui.add(egui::DragValue::new(c).range(1..=10_000).suffix(" chunks"));
        }
    });
    ui.horizontal(|ui| {
        let progress = rt.lab.quality_progress();
        let evaluating = progress.is_some();
        if ui
            .add_enabled(
                !evaluating && !rt.lab.made.is_empty(),
                egui::Button::new("Measure ladder"),
            )
            .on_hover_text("Perplexity, KL divergence, same-top-1 and Δp of every level against the reference")
            .clicked()
        {
            cmds.push(Command::Lab(LabCommand::EvaluateLadder));
        }
        if ui
            .add_enabled(!evaluating, egui::Button::new("Measure lanes"))
            .on_hover_text("Every lane (model + adapters) against the reference lane")
            .clicked()
        {
            cmds.push(Command::Lab(LabCommand::EvaluateLanes));
        }
        if let Some(p) = progress {
            ui.add(step_bar(p).desired_width(300.0));
            if ui.small_button("Stop").clicked() {
                cmds.push(Command::Lab(LabCommand::Cancel));
            }
        }
        if !evaluating
            && !rt.lab.quality.is_empty()
            && ui
                .small_button("Export")
                .on_hover_text("CSV, JSON, ladder chart (PNG, SVG) and a run manifest to the exports folder")
                .clicked()
        {
            cmds.push(Command::Lab(LabCommand::Export(LabTab::Quality)));
        }
    });
    if !rt.lab.quality_rows().is_empty() {
        quality_table_ui(ui, rt.lab.quality_rows());
        ladder_plot(ui, rt.lab.quality_rows());
    }
}

fn quality_table_ui(ui: &mut egui::Ui, rows: &[QualityRow]) {
    egui::Grid::new("quality").striped(true).show(ui, |ui| {
        for (h, tip) in [
            ("model", "Level or lane"),
            ("MiB", "File size"),
            ("bpw", "Bits per weight"),
            ("PPL", "Perplexity over the text"),
            ("PPL ratio", "PPL(Q)/PPL(reference)"),
            ("mean KLD", "Mean KL divergence from the reference, nats per token"),
            ("KLD p99", "99th percentile of per-token KLD"),
            ("same top-1", "Share of positions where both put the same token first"),
            ("RMS Δp", "Root mean square change of the correct token's probability"),
            (
                "eval tok/s",
                "Tokens per second the tested model read the text at (prompt processing)",
            ),
        ] {
            ui.strong(h).on_hover_text(tip);
        }
        ui.end_row();
        for r in rows {
            ui.label(r.label());
            ui.label(format!("{:.1}", r.model_size as f64 / 1048576.0));
            ui.label(format!("{:.2}", r.bpw));
            ui.label(format!("{:.3} ± {:.3}", r.ppl, r.ppl_unc));
            ui.label(r.ln_ppl_ratio.map_or_else(|| "-".into(), |v| format!("{:.4}", v.exp())));
            ui.label(r.kld_mean.map_or_else(|| "-".into(), |v| format!("{v:.5}")));
            ui.label(r.kld_p99.map_or_else(|| "-".into(), |v| format!("{v:.4}")));
            ui.label(
                r.same_top_p
                    .map_or_else(|| "-".into(), |v| format!("{:.1} %", v * 100.0)),
            );
            ui.label(r.dp_rms.map_or_else(|| "-".into(), |v| format!("{:.2} %", v * 100.0)));
            ui.label(format!("{:.0}", r.eval_ts));
            ui.end_row();
        }
    });
}

fn ladder_plot(ui: &mut egui::Ui, rows: &[QualityRow]) {
    Plot::new("ladder_plot")
        .height(200.0)
        .x_axis_label("file size (MiB)")
        .y_axis_label("mean KLD")
        .allow_scroll(false)
        .show(ui, |plot| {
            let pts: Vec<[f64; 2]> = rows
                .iter()
                .map(|r| [r.model_size as f64 / 1048576.0, r.kld_mean.unwrap_or(0.0)])
                .collect();
            plot.points(Points::new("levels", PlotPoints::from(pts.clone())).radius(4.0));
            for (r, p) in rows.iter().zip(pts) {
                plot.text(Text::new(r.label(), p.into(), format!("  {}", r.label())).anchor(egui::Align2::LEFT_CENTER));
            }
        });
}

fn prompts_ui(ui: &mut egui::Ui, state: &mut State, rt: &Runtime, cmds: &mut Vec<Command>) {
    ui.label("A JSONL file, one prompt per line: {\"id\": \"…\", \"prompt\": \"…\", \"expect\": \"substring\" or \"expect_regex\": \"…\", \"max_tokens\": 32}. Drop one on the window.");
    ui.horizontal(|ui| {
        ui.label("Set");
        ui.monospace(
            state
                .lab
                .prompt_set
                .as_deref()
                .map_or_else(|| "none (drop a .jsonl)".into(), file_name),
        );
    });
    ui.horizontal(|ui| {
        ui.label("seeds");
        ui.add(egui::TextEdit::singleline(&mut state.lab.seeds).desired_width(90.0))
            .on_hover_text("Each prompt runs once per seed on every lane; the scorecard shows the spread");
        ui.label("temperature");
        ui.add(
            egui::DragValue::new(&mut state.lab.temperature)
                .range(0.0..=2.0)
                .speed(0.05),
        );
    });
    ui.horizontal(|ui| {
        let progress = rt.lab.prompt_progress();
        let running = progress.is_some();
        if ui
            .add_enabled(
                !running && state.lab.prompt_set.is_some(),
                egui::Button::new("Run on all lanes"),
            )
            .on_hover_text("The reference lane (or lane 1) is what agreement is measured against")
            .clicked()
        {
            cmds.push(Command::Lab(LabCommand::RunPrompts));
        }
        if let Some(p) = progress {
            ui.add(
                egui::ProgressBar::new(p.done as f32 / p.total.max(1) as f32)
                    .text(format!("{}/{} runs", p.done, p.total))
                    .desired_width(220.0),
            );
            if ui.small_button("Stop").clicked() {
                cmds.push(Command::Lab(LabCommand::Cancel));
            }
        }
        if !rt.lab.scorecards.is_empty() && ui.small_button("Export").clicked() {
            cmds.push(Command::Lab(LabCommand::Export(LabTab::Prompts)));
        }
    });
    if rt.lab.scorecards.is_empty() {
        return;
    }
    egui::Grid::new("scorecards").striped(true).show(ui, |ui| {
        for (h, tip) in [
            ("lane", ""),
            ("runs", "prompts × seeds"),
            ("pass", "Share of runs meeting their expectation (mean ± sd over seeds)"),
            ("TTFT ms", "Time to first token, mean / p95"),
            ("tok/s", "Decode speed, mean / p95 (± sd of per-seed means)"),
            ("tokens", "Mean tokens generated"),
            ("same as ref", "Share of runs with exactly the reference lane's output"),
            ("similarity", "Mean character similarity to the reference lane's output"),
            ("by tag", "Pass rate per tag of the prompts"),
        ] {
            ui.strong(h).on_hover_text(tip);
        }
        ui.end_row();
        for c in &rt.lab.scorecards {
            // "Lane 2: model + adapter" is long: the short name, the rest on hover.
            ui.label(c.lane.split(':').next().unwrap_or(&c.lane))
                .on_hover_text(&c.lane);
            ui.label(c.runs.to_string());
            ui.label(format!("{:.0} % ± {:.0}", c.pass_rate * 100.0, c.pass_rate_sd * 100.0));
            ui.label(format!("{:.1} / {:.1}", c.ttft_ms_mean, c.ttft_ms_p95));
            ui.label(format!(
                "{:.1} / {:.1} (± {:.1})",
                c.decode_tps_mean, c.decode_tps_p95, c.decode_tps_sd
            ));
            ui.label(format!("{:.1}", c.n_gen_mean));
            ui.label(format!("{:.0} %", c.agreement * 100.0));
            ui.label(format!("{:.2}", c.similarity));
            ui.label(&c.pass_by_tag);
            ui.end_row();
        }
    });
    egui::CollapsingHeader::new(format!("Runs ({})", rt.lab.runs.len()))
        .id_salt("prompt_runs")
        .show(ui, |ui| {
            egui::Grid::new("runs").striped(true).show(ui, |ui| {
                for h in ["lane", "prompt", "seed", "expectation", "output"] {
                    ui.strong(h);
                }
                ui.end_row();
                for r in &rt.lab.runs {
                    ui.label(r.lane.split(':').next().unwrap_or(&r.lane));
                    ui.label(&r.prompt_id);
                    ui.label(r.seed.to_string());
                    match r.passed {
                        Some(true) => ui.label("met"),
                        Some(false) => ui.colored_label(ui.visuals().error_fg_color, "missed"),
                        None => ui.weak("none"),
                    };
                    let one_line: String = r.text.replace('\n', " ").chars().take(60).collect();
                    ui.label(one_line).on_hover_text(&r.text);
                    ui.end_row();
                }
            });
        });
}

/// A job's progress: its steps, the current one's own fraction and what it is doing.
fn step_bar(p: &Progress) -> egui::ProgressBar {
    egui::ProgressBar::new((p.done as f32 + p.fraction) / p.total.max(1) as f32).text(format!(
        "{}/{} {}",
        (p.done + 1).min(p.total),
        p.total,
        p.label
    ))
}
