//! The Quality tab: make a quantization ladder of the reference model, measure it (or the
//! lanes) against the reference over a text, and show the table and the size/quality plot.

use crate::eval::table::QualityRow;
use crate::lab::ladder::Ladder;
use crate::quant::types::is_reference_grade;
use crate::quant::QUANT_TYPES;
use crate::ui::app::lab::LabCommand;
use crate::ui::app::{Command, Runtime};
use crate::ui::state::{LabTab, State};
use egui_plot::{Plot, PlotPoints, Points, Text};

use super::{file_name, step_bar};

pub(super) fn quality_ui(ui: &mut egui::Ui, state: &mut State, rt: &Runtime, cmds: &mut Vec<Command>) {
    ui.strong("Quantization ladder");
    let mut choices: Vec<std::path::PathBuf> = rt.library.installed.iter().map(|m| m.path.clone()).collect();
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
            .width(crate::ui::theme::WIDE_CONTROL_WIDTH)
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
        .and_then(|r| rt.library.inspected.get(r))
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
            ui.add(step_bar(p).desired_width(crate::ui::theme::WIDE_CONTROL_WIDTH));
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
