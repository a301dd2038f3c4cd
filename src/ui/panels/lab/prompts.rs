//! The Prompt sets tab: a JSONL set run on every lane with several seeds, its scorecards and
//! every run behind them.

use crate::ui::app::lab::LabCommand;
use crate::ui::app::{Command, Runtime};
use crate::ui::state::{LabTab, State};

use super::file_name;

pub(super) fn prompts_ui(ui: &mut egui::Ui, state: &mut State, rt: &Runtime, cmds: &mut Vec<Command>) {
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
        ui.label("at once");
        ui.add(
            egui::DragValue::new(&mut state.lab.parallel)
                .range(0..=crate::lab::prompts::AUTO_PARALLEL_MAX * 2)
                .custom_formatter(|n, _| if n < 0.5 { "auto".into() } else { format!("{n:.0}") }),
        )
        .on_hover_text("Runs in flight together: local lanes decode them side by side, remote lanes send them concurrently; greedy results are the same as one at a time. \"auto\" (0): as many as the local lanes' contexts fit in a quarter of free memory, at most 8 (1 when every lane is remote)");
    });
    if state.lanes.iter().any(|l| l.remote.is_some()) {
        ui.horizontal(|ui| {
            ui.label("more endpoints");
            ui.add(
                egui::TextEdit::singleline(&mut state.lab.endpoints)
                    .hint_text("http://host:8080 http://host2:8080")
                    .desired_width(crate::ui::theme::WIDE_CONTROL_WIDTH),
            )
            .on_hover_text(
                "Servers with the same model under the same name as the remote lanes' own: runs go to the least \
                 busy, and one that meets a dead or overloaded endpoint is sent to another; every prompt is scored once",
            );
        });
    }
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
                    .desired_width(crate::ui::theme::CONTROL_WIDTH),
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
