//! Scene dialogs and the arena: the list of a scene's missing or changed files (each with
//! "Locate…"), and the blind A/B view (lanes lettered in a shuffled order, names hidden until
//! the vote, the results so far).

use crate::eval::arena::{self, Verdict};
use crate::ui::app::scene::{ArenaCommand, SceneProblems};
use crate::ui::app::{App, Command};

/// The dialog listing what keeps a scene from opening.
pub fn problems_ui(ctx: &egui::Context, p: &SceneProblems, checking: bool, cmds: &mut Vec<Command>) {
    egui::Window::new("Scene files missing or changed")
        .collapsible(false)
        .resizable(true)
        .default_width(640.0)
        .show(ctx, |ui| {
            ui.label(format!(
                "{} cannot be opened: nothing was loaded. Locate each file (it must have the recorded sha256).",
                p.path.display()
            ));
            ui.add_space(6.0);
            egui::Grid::new("scene_problems").striped(true).show(ui, |ui| {
                for (i, problem) in p.problems.iter().enumerate() {
                    ui.label(&problem.role);
                    let status = match &problem.actual {
                        Some(actual) => format!(
                            "{} has changed\nexpected sha256 {}\nfound    sha256 {actual}",
                            problem.path.display(),
                            problem.expected.as_deref().unwrap_or("-")
                        ),
                        None => format!(
                            "{} is missing\nexpected sha256 {}",
                            problem.path.display(),
                            problem.expected.as_deref().unwrap_or("-")
                        ),
                    };
                    let mut text = egui::RichText::new(status).monospace();
                    if problem.actual.is_some() {
                        text = text.color(ui.visuals().warn_fg_color);
                    }
                    ui.label(text).on_hover_text(
                        problem
                            .looked_at
                            .iter()
                            .map(|l| l.display().to_string())
                            .collect::<Vec<_>>()
                            .join("\n"),
                    );
                    if let Some(h) = &problem.hint {
                        ui.weak(h);
                    } else {
                        ui.label("");
                    }
                    if ui
                        .add_enabled(!checking, egui::Button::new("Locate…"))
                        .on_hover_text("Choose the file; it is used if its sha256 matches")
                        .clicked()
                    {
                        cmds.push(Command::LocateSceneFile(i));
                    }
                    ui.end_row();
                }
            });
            ui.add_space(6.0);
            ui.horizontal(|ui| {
                if checking {
                    ui.spinner();
                    ui.weak("checking…");
                }
                if ui.button("Close").clicked() {
                    cmds.push(Command::CloseSceneProblems);
                }
            });
        });
}

fn letter(i: usize) -> String {
    char::from(b'A' + (i.min(25) as u8)).to_string()
}

/// The arena in place of the lanes.
pub fn arena_ui(ui: &mut egui::Ui, app: &App, cmds: &mut Vec<Command>) {
    let Some(session) = &app.state.scene else { return };
    let a = &session.arena;
    let prompts = app.arena_prompts();
    let n_prompts = prompts.len().max(1);
    let case = prompts.get((a.round % n_prompts as u64) as usize);
    let order = app.arena_order();
    let labels = app.stack_labels();
    let generating = app.arena_generating();
    let big = a.presenter;
    let text_size = if big { 26.0 } else { 15.0 };
    ui.horizontal(|ui| {
        ui.heading(format!(
            "Arena · prompt {} of {n_prompts}",
            (a.round % n_prompts as u64) + 1
        ));
        if !big {
            ui.weak(format!(
                "round {} · {} votes · order seed {}",
                a.round + 1,
                a.record.votes.len(),
                a.record.seed
            ));
        }
    });
    if let Some(c) = case {
        ui.label(egui::RichText::new(&c.prompt).size(text_size + 2.0).strong());
    }
    ui.separator();
    if !a.started {
        ui.add_space(20.0);
        if ui
            .add(egui::Button::new(egui::RichText::new("Start (space)").size(text_size)))
            .on_hover_text("Run this prompt on every lane; the answers are shown as A, B, … in a shuffled order")
            .clicked()
        {
            cmds.push(Command::Arena(ArenaCommand::Start));
        }
    } else {
        let cols = order.len().max(1);
        let height = (ui.available_height() - if big { 160.0 } else { 220.0 }).max(120.0);
        ui.columns(cols, |columns| {
            for (pos, &lane_index) in order.iter().enumerate() {
                let ui = &mut columns[pos];
                let Some(lane) = app.state.lanes.get(lane_index) else {
                    continue;
                };
                ui.label(egui::RichText::new(letter(pos)).size(text_size + 8.0).strong());
                if a.revealed {
                    ui.label(egui::RichText::new(&labels[lane_index]).color(ui.visuals().hyperlink_color));
                }
                egui::ScrollArea::vertical()
                    .id_salt(("arena_text", pos))
                    .max_height(height)
                    .show(ui, |ui| {
                        let text = if lane.output.text.is_empty() && generating {
                            "…".to_string()
                        } else {
                            lane.output.text.clone()
                        };
                        ui.add(egui::Label::new(egui::RichText::new(text).size(text_size)).wrap());
                        if let Some(e) = &lane.output.error {
                            ui.colored_label(ui.visuals().error_fg_color, e);
                        }
                    });
            }
        });
        ui.separator();
        let n = order.len();
        ui.horizontal_wrapped(|ui| {
            let can_vote = !a.revealed && !generating;
            for pos in 0..n {
                let b = egui::Button::new(
                    egui::RichText::new(format!("{} is better ({})", letter(pos), pos + 1)).size(text_size),
                );
                if ui.add_enabled(can_vote, b).clicked() {
                    cmds.push(Command::Arena(ArenaCommand::Vote(Verdict::Pick(pos))));
                }
            }
            let tie = egui::Button::new(egui::RichText::new(format!("Tie ({})", n + 1)).size(text_size));
            if ui.add_enabled(can_vote, tie).clicked() {
                cmds.push(Command::Arena(ArenaCommand::Vote(Verdict::Tie)));
            }
            let bad = egui::Button::new(egui::RichText::new(format!("Both bad ({})", n + 2)).size(text_size));
            if ui.add_enabled(can_vote, bad).clicked() {
                cmds.push(Command::Arena(ArenaCommand::Vote(Verdict::BothBad)));
            }
            if generating {
                ui.spinner();
                ui.weak("answers coming in…");
            }
            if a.revealed {
                let next = egui::Button::new(egui::RichText::new("Next prompt (space)").size(text_size));
                if ui.add(next).clicked() {
                    cmds.push(Command::Arena(ArenaCommand::Next));
                }
            }
        });
    }
    if big || a.record.votes.is_empty() {
        return;
    }
    ui.separator();
    // Results by stack name would give the game away before this round's vote.
    if !a.revealed && a.started {
        ui.weak("results are shown after the vote");
        return;
    }
    let stats = arena::stats(&a.record.votes);
    egui::Grid::new("arena_stats").striped(true).show(ui, |ui| {
        for h in ["stack", "games", "win rate", "95 % Wilson", "Bradley-Terry", "both bad"] {
            ui.strong(h);
        }
        ui.end_row();
        for r in &stats.stacks {
            ui.label(&r.stack);
            ui.label(r.games.to_string());
            ui.label(format!("{:.0} %", r.win_rate * 100.0));
            ui.label(format!("{:.0} – {:.0} %", r.wilson_low * 100.0, r.wilson_high * 100.0));
            ui.label(r.bradley_terry.map_or_else(|| "—".into(), |b| format!("{b:+.0}")));
            ui.label(r.both_bad.to_string());
            ui.end_row();
        }
    });
    let mut tags: Vec<String> = Vec::new();
    for t in &stats.tags {
        match tags.last_mut() {
            Some(last) if last.starts_with(&format!("{}:", t.tag)) => {
                last.push_str(&format!(", {} {:.0} %", t.stack, t.win_rate * 100.0));
            }
            _ => tags.push(format!("{}: {} {:.0} %", t.tag, t.stack, t.win_rate * 100.0)),
        }
    }
    if !tags.is_empty() {
        ui.weak(format!("by tag · {}", tags.join(" · ")));
    }
    if ui
        .button("Export results")
        .on_hover_text("results.json, results.csv, votes.csv and a win-rate chart (PNG, SVG) in the exports folder")
        .clicked()
    {
        cmds.push(Command::Arena(ArenaCommand::Export));
    }
}
