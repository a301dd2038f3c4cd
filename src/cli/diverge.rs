//! `nanolab diverge`: where and why two lanes differ, token by token (teacher forcing).

use std::io::IsTerminal;

use clap::Args;

use super::eval::{checked_lane, run_job};
use super::output::OutputArgs;
use super::run::{PromptArgs, StaticPins};
use crate::lab::bundle::Results;
use crate::lab::diverge::DivergeJob;
use crate::protocol::*;

/// `diverge` arguments.
#[derive(Debug, Args)]
pub struct DivergeArgs {
    /// Lane A (generates): MODEL[+ADAPTER[:SCALE]]...
    #[arg(long)]
    pub a: String,
    /// Lane B (reads A's output): MODEL[+ADAPTER[:SCALE]]...
    #[arg(long)]
    pub b: String,
    /// What lane A continues.
    #[command(flatten)]
    pub prompt: PromptArgs,
    /// Tokens lane A generates.
    #[arg(long, short = 'n', default_value_t = 64)]
    pub max_tokens: u32,
    /// Lane A's temperature (0 = greedy).
    #[arg(long, default_value_t = 0.0)]
    pub temp: f32,
    /// Seed.
    #[arg(long, default_value_t = 42)]
    pub seed: u32,
    /// Alternatives listed per position.
    #[arg(long, default_value_t = 5)]
    pub top: u32,
    /// Context length.
    #[arg(long, default_value_t = 2048)]
    pub ctx: u32,
    /// Output options (CSV: one row per token).
    #[command(flatten)]
    pub output: OutputArgs,
    /// Do not apply the adapters pinned to a model as static in the registry.
    #[arg(long)]
    pub no_static: bool,
}

/// A 6-step colour scale for KL, as ANSI background codes (none … strong).
fn ansi_for(kl: f64) -> &'static str {
    match kl {
        k if k < 0.01 => "",
        k if k < 0.1 => "\x1b[48;5;229m",
        k if k < 0.5 => "\x1b[48;5;222m",
        k if k < 1.0 => "\x1b[48;5;215m",
        k if k < 2.0 => "\x1b[48;5;209m",
        _ => "\x1b[48;5;203m",
    }
}

pub fn diverge(args: &DivergeArgs) -> anyhow::Result<()> {
    let prompt = args.prompt.to_prompt()?;
    let sampling = Sampling {
        temperature: args.temp,
        seed: args.seed,
        max_tokens: args.max_tokens,
        ..Sampling::default()
    };
    let mut manifest = crate::lab::bundle::manifest(
        "diverge",
        serde_json::json!({ "a": args.a, "b": args.b, "prompt": prompt, "sampling": sampling, "n_ctx": args.ctx }),
        vec![args.seed],
    );
    let pins = StaticPins::load(args.no_static);
    let a = checked_lane(0, &args.a, args.ctx, None, &pins, &mut manifest)?;
    let b = checked_lane(1, &args.b, args.ctx, None, &pins, &mut manifest)?;
    let mut job = DivergeJob::new(a, b, prompt, sampling, args.top);
    run_job(&mut job)?;
    let result = job
        .result
        .ok_or_else(|| anyhow::anyhow!("the comparison ended without a result"))?;
    let text = report_text(&result, std::io::stdout().is_terminal());
    let results = Results::Divergence {
        result,
        lanes: (args.a.clone(), args.b.clone()),
    };
    args.output.emit(&results, &text, &manifest)
}

/// The human report: the text (coloured by KL on a terminal, otherwise marked where the top-1
/// differs), the summary and the ten most divergent positions with both lanes' top choices.
pub fn report_text(r: &DivergenceResult, colour: bool) -> String {
    let mut s = String::new();
    for t in &r.tokens {
        if colour {
            let c = ansi_for(t.kl);
            s.push_str(&format!("{c}{}{}", t.piece, if c.is_empty() { "" } else { "\x1b[0m" }));
        } else if t.top1_agree {
            s.push_str(&t.piece);
        } else {
            s.push_str(&format!("[{}]", t.piece));
        }
    }
    let m = &r.summary;
    s.push_str(&format!(
        "\n\n{} tokens | mean KL(A||B) {:.4} nats | max {:.3} | top-1 agreement {:.1} % | mean p_B(A's token) {:.3} | first disagreement {}\n",
        m.n_tokens,
        m.kl_mean,
        m.kl_max,
        m.top1_agreement * 100.0,
        m.p_b_mean,
        m.first_disagreement.map_or_else(|| "none".to_string(), |i| format!("at token {i}"))
    ));
    if !colour {
        s.push_str("([x]: lane B would not have picked x first)\n");
    }
    if let Some(how) = &r.approximate {
        s.push_str(&format!("approximate: {how}\n"));
    }
    s.push_str("\nmost divergent positions:\n| # | token | KL | p_A | p_B | A top | B top |\n|---:|---|---:|---:|---:|---|---|\n");
    let fmt_top = |v: &[TopToken]| {
        v.iter()
            .map(|t| format!("{:?} {:.2}", t.piece, t.prob))
            .collect::<Vec<_>>()
            .join(", ")
    };
    for &i in &r.most_divergent {
        if let Some(t) = r.tokens.get(i) {
            s.push_str(&format!(
                "| {} | {:?} | {:.3} | {:.3} | {:.3} | {} | {} |\n",
                t.index,
                t.piece,
                t.kl,
                t.p_a,
                t.p_b,
                fmt_top(&t.top_a),
                fmt_top(&t.top_b)
            ));
        }
    }
    s
}
