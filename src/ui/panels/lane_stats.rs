//! A lane's stats strip: what its last run measured (time to first token, prefill, decode,
//! "as seen" beside other lanes, memory), or for a remote lane what was measured here and what
//! the server reported, each labelled.

use crate::metrics::mib;
use crate::ui::state::LaneState;

pub(super) fn stats_strip(
    ui: &mut egui::Ui,
    lane: &LaneState,
    running: bool,
    queued: bool,
    overhead_reference: Option<(usize, f64)>,
) {
    let Some(s) = &lane.output.stats else {
        ui.weak(if queued {
            "queued: waiting for the lanes before it".to_string()
        } else if running {
            format!("running… {} tokens", lane.output.tokens.len())
        } else {
            "no run yet".to_string()
        });
        return;
    };
    if let Some(r) = &s.remote {
        remote_stats_strip(ui, s, r);
        return;
    }
    ui.horizontal_wrapped(|ui| {
        let item = stat_item;
        item(
            ui,
            "TTFT",
            format!("{:.0} ms", s.ttft_ms),
            "Time to first token as you saw it: from the engine taking the run to its first token, other lanes' turns included, model load not",
        );
        if s.prompt_reused_tokens > 0 && s.prompt_reused_tokens >= s.prompt_tokens {
            item(
                ui,
                "prefill",
                format!("copied, {:.1} ms", s.prefill_ms),
                "A lane on the same model and stack was running this very prompt: its decoded cells and first logits were copied (the same bits this lane's own decode gives), so this lane decoded no prompt token",
            );
        } else {
            item(
                ui,
                "prefill",
                format!("{:.0} tok/s", s.prefill_tokens_per_sec),
                "Prompt tokens per second",
            );
        }
        item(
            ui,
            "decode",
            format!("{:.1} tok/s", s.decode_tokens_per_sec),
            "Generated tokens per second from this lane's own decode calls (what llama-bench counts)",
        );
        if s.lanes_together > 1 {
            item(
                ui,
                "as seen",
                format!("{:.1} tok/s with {} lanes", s.seen_decode_tokens_per_sec, s.lanes_together),
                "Tokens per second as they arrived while lanes generated together, a step of each in turn",
            );
        }
        if s.batched_with > 1 {
            item(
                ui,
                "batched",
                format!("{} sequences", s.batched_with),
                "Lanes on the same model without adapters shared one context and decoded in one llama_decode \
                 per step; this lane's decode times are those shared calls",
            );
        }
        item(
            ui,
            "tokens",
            format!("{}+{}", s.prompt_tokens, s.generated_tokens),
            "Prompt + generated tokens",
        );
        item(ui, "KV", mib(s.lane.kv_bytes), "KV cache of this lane");
        item(ui, "RSS", mib(s.rss_bytes), "Engine process resident memory");
        if let Some((k, base_tps)) = overhead_reference {
            let pct = (s.decode_tokens_per_sec / base_tps - 1.0) * 100.0;
            item(
                ui,
                "adapter cost",
                format!("{pct:+.1}% decode vs lane {k}"),
                "Decode speed of this lane (with adapters) relative to a lane on the same model without adapters, from the last runs",
            );
        }
        if s.lane.adapter_bytes > 0 || s.lane.adapter_swap_ms > 0.0 {
            item(
                ui,
                "adapter swap",
                format!("{:.2} ms vs load {:.0} ms", s.lane.adapter_swap_ms, s.lane.model.load_ms),
                "Time to load and apply the adapter stack in this run (0 when unchanged), next to the time the base model took to load",
            );
        }
    });
}

/// A remote run's figures, each saying where it was measured; what the endpoint cannot give is
/// shown as unavailable with the reason.
fn remote_stats_strip(ui: &mut egui::Ui, s: &crate::protocol::RunStats, r: &crate::protocol::RemoteRun) {
    ui.horizontal_wrapped(|ui| {
        let item = stat_item;
        item(
            ui,
            "TTFT",
            format!("{:.0} ms", s.ttft_ms),
            "Measured here: from sending the request to the first streamed token",
        );
        match &r.server_timings {
            Some(t) => item(
                ui,
                "prefill",
                format!("{:.0} tok/s", t.prompt_per_second),
                &format!("Prompt tokens per second as {} measured them (its timings)", r.server),
            ),
            None => item(
                ui,
                "prefill",
                "n/a".into(),
                r.unavailable("prefill_tokens_per_sec").unwrap_or_default(),
            ),
        }
        item(
            ui,
            "decode",
            format!("{:.1} tok/s", s.decode_tokens_per_sec),
            "Measured here from the arrival times of the streamed tokens (network included)",
        );
        if let Some(t) = &r.server_timings {
            item(
                ui,
                "server",
                format!("{:.1} tok/s", t.predicted_per_second),
                &format!("Decode speed {} reports for itself", r.server),
            );
        }
        item(
            ui,
            "tokens",
            format!("{}+{}", s.prompt_tokens, s.generated_tokens),
            "Prompt + generated tokens",
        );
        item(
            ui,
            "memory",
            "n/a".into(),
            r.unavailable("peak_rss_bytes")
                .unwrap_or("not reported by the endpoint"),
        );
        ui.weak(format!("on {}", r.server)).on_hover_text(&r.url);
    });
}

/// One figure of a stats strip: its name, its value, what it means.
fn stat_item(ui: &mut egui::Ui, k: &str, v: String, tip: &str) {
    ui.weak(k);
    ui.strong(v).on_hover_text(tip);
}
