//! The lab panel: compare two lanes token by token, make a quantization ladder and measure it,
//! run prompt sets. Draws the lab's state and emits commands; the work happens elsewhere.

use egui::RichText;

use crate::lab::Progress;
use crate::protocol::{DivergenceResult, LaneId, TokenDivergence, TopToken};
use crate::ui::app::lab::LabCommand;
use crate::ui::app::{Command, Runtime};
use crate::ui::state::{LabTab, State};
use crate::ui::theme::{kl_colour, KL_LEGEND};

mod prompts;
mod quality;
use prompts::prompts_ui;
use quality::quality_ui;

fn file_name(p: &std::path::Path) -> String {
    p.file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned())
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
            for (i, l) in state
                .lanes
                .iter()
                .enumerate()
                .filter(|(_, l)| l.model.is_some() || l.remote.is_some())
            {
                let name = match &l.remote {
                    Some(r) => r.label(),
                    None => l.model.as_deref().map(file_name).unwrap_or_default(),
                };
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
    ui.label("Lane A generates from the prompt; both lanes then read A's text and their next-token distributions are compared at every position. Colour: KL(A||B), the divergence of B from A in nats. With a remote lane, B reads one position per request and the endpoint lists only its top tokens, so KL is approximate.");
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
    if let Some(how) = &d.approximate {
        ui.label(RichText::new(format!("Approximate: {how}.")).italics());
    }
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

/// A job's progress: its steps, the current one's own fraction and what it is doing.
fn step_bar(p: &Progress) -> egui::ProgressBar {
    egui::ProgressBar::new((p.done as f32 + p.fraction) / p.total.max(1) as f32).text(format!(
        "{}/{} {}",
        (p.done + 1).min(p.total),
        p.total,
        p.label
    ))
}
