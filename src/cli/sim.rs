//! `nanolab sim`: what a model, quant and adapter stack would do on a device over time.

use std::path::PathBuf;

use anyhow::bail;
use clap::Args;

use crate::metrics::mib;
use crate::sim::{self, profile, Workload};

/// `sim` arguments.
#[derive(Debug, Args)]
pub struct SimArgs {
    /// Device id (see --list), or this-machine (calibrated by a real run).
    #[arg(long, required_unless_present = "list")]
    pub device: Option<String>,
    /// Model GGUF.
    #[arg(long, short, required_unless_present = "list")]
    pub model: Option<PathBuf>,
    /// Adapter GGUF (repeatable).
    #[arg(long = "adapter", short = 'a')]
    pub adapters: Vec<PathBuf>,
    /// Simulated minutes of back-to-back requests.
    #[arg(long, default_value_t = 10.0)]
    pub minutes: f64,
    /// Pin one accelerator instead of routing.
    #[arg(long)]
    pub accelerator: Option<String>,
    /// Prompt tokens per request.
    #[arg(long, default_value_t = 128)]
    pub prompt_tokens: u64,
    /// Generated tokens per request.
    #[arg(long, default_value_t = 256)]
    pub gen_tokens: u64,
    /// Idle seconds between requests.
    #[arg(long, default_value_t = 0.0)]
    pub gap_secs: f64,
    /// Context length for the memory fit check.
    #[arg(long, default_value_t = 2048)]
    pub ctx: u64,
    /// JSON output (includes the per-second timeline).
    #[arg(long)]
    pub json: bool,
    /// List device profiles.
    #[arg(long)]
    pub list: bool,
    /// Write a chart of the run (decode speed, temperature, routing) to this PNG file.
    #[arg(long)]
    pub png: Option<PathBuf>,
}

pub fn sim(args: &SimArgs) -> anyhow::Result<()> {
    let (profiles, errors) = profile::all();
    for e in &errors {
        eprintln!("warning: device profile skipped: {e}");
    }
    if args.list {
        for p in &profiles {
            let accs: Vec<&str> = p.accelerators.iter().map(|a| a.id.as_str()).collect();
            println!("{:<18} {:<50} {}", p.id, p.name, accs.join(", "));
        }
        println!(
            "{:<18} {:<50} cpu",
            "this-machine", "This machine (calibrated by a real run)"
        );
        return Ok(());
    }
    let (Some(device), Some(model)) = (&args.device, &args.model) else {
        bail!("give --device and --model (or --list)");
    };
    let adapter_refs: Vec<&std::path::Path> = args.adapters.iter().map(PathBuf::as_path).collect();
    let facts = sim::facts::read(model, &adapter_refs).map_err(anyhow::Error::msg)?;
    let profile = if device == "this-machine" {
        let (prefill, decode) = measure(model, &args.adapters)?;
        let when = format!("{prefill:.1} tok/s prefill, {decode:.1} tok/s decode");
        sim::facts::this_machine(&facts, prefill, decode, &when)
    } else {
        match profiles.into_iter().find(|p| &p.id == device) {
            Some(p) => p,
            None => bail!("unknown device {device:?}; see nanolab sim --list"),
        }
    };
    let pinned = match &args.accelerator {
        Some(id) => Some(
            profile
                .accelerators
                .iter()
                .position(|a| &a.id == id)
                .ok_or_else(|| anyhow::anyhow!("{} has no accelerator {id:?}", profile.id))?,
        ),
        None => None,
    };
    if !(args.minutes > 0.0 && args.minutes <= 600.0) {
        bail!("--minutes must be between 0 and 600");
    }
    let workload = Workload {
        prompt_tokens: args.prompt_tokens,
        gen_tokens: args.gen_tokens.max(1),
        gap_secs: args.gap_secs.max(0.0),
        duration_secs: args.minutes * 60.0,
        pinned,
    };
    let fit = sim::fit(&profile, &facts, args.ctx);
    let report = sim::sustained(&profile, &facts, &workload);
    if let Some(png) = &args.png {
        sim::chart::write_png(png, &profile, &report)?;
        eprintln!("wrote {}", png.display());
    }
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "device": profile, "model_facts": facts, "fit": fit, "workload": workload, "report": report,
            }))?
        );
        return Ok(());
    }
    println!("{} ({})", profile.name, profile.id);
    for a in &profile.accelerators {
        let p = sim::project(a, &facts, args.prompt_tokens);
        println!(
            "  {:<12} full clock: prefill {:>8.1} tok/s, decode {:>6.1} tok/s ({:.1} W)",
            a.id, p.prefill_tokens_per_sec, p.decode_tokens_per_sec, a.power_w
        );
    }
    println!(
        "  memory: needs {} (weights + KV at {} tokens + adapters), app may use {}: {}",
        mib(fit.needed_bytes),
        args.ctx,
        mib(fit.available_bytes),
        if fit.fits { "fits" } else { "DOES NOT FIT" }
    );
    println!("sustained run, {:.0} simulated minutes:", args.minutes);
    println!("  burst decode      {:.1} tok/s", report.burst_tokens_per_sec);
    println!(
        "  sustained decode  {:.1} tok/s (last minute)",
        report.sustained_tokens_per_sec
    );
    println!("  retention         {:.0}%", report.retention * 100.0);
    let secs = |t: Option<f64>| t.map_or_else(|| "never".to_string(), |t| format!("{t:.0} s"));
    println!("  time to -10%      {}", secs(report.time_to_minus_10_secs));
    println!("  time to -25%      {}", secs(report.time_to_minus_25_secs));
    println!("  peak temperature  {:.1} °C", report.peak_temp_c);
    println!("  states visited    {}", report.states_visited.join(" -> "));
    println!("  tokens generated  {}", report.tokens);
    println!("routing decisions:");
    for d in report.decisions.iter().take(20) {
        println!("  {:>6.1} s  {:<12} {}", d.t_secs, d.accelerator, d.reason);
    }
    if report.decisions.len() > 20 {
        println!("  … {} more (see --json)", report.decisions.len() - 20);
    }
    println!("timeline (every 30 s): t, temperature, state, accelerator, throttle, decode tok/s");
    for s in report
        .samples
        .iter()
        .filter(|s| (s.t_secs.round() as u64).is_multiple_of(30))
    {
        println!(
            "  {:>5.0} s  {:>5.1} °C  {:<10} {:<12} {:>4.2}  {:>6.1}",
            s.t_secs, s.temp_c, s.state, s.accelerator, s.throttle, s.decode_tokens_per_sec
        );
    }
    Ok(())
}

/// Measures prefill and decode speed on this machine with a real run of the engine.
fn measure(model: &std::path::Path, adapters: &[PathBuf]) -> anyhow::Result<(f64, f64)> {
    use crate::protocol::*;
    let mut client = crate::engine::EngineClient::new(None);
    let job = client.next_job();
    let req = Request::Generate {
        job,
        lane: LaneSpec::local(
            0,
            model,
            1024,
            adapters.iter().map(|p| AdapterSpec { path: p.clone(), scale: 1.0 }).collect(),
        ),
        prompt: Prompt::Raw {
            text: "The history of measurement begins with the human body: the foot, the hand and the cubit were the first units. ".repeat(4),
        },
        sampling: Sampling {
            max_tokens: 64,
            ..Sampling::default()
        },
        top_n: 0,
        exclusive: false,
    };
    match client.call(&req, |_| {})? {
        Event::Done {
            result: JobResult::Generated { stats },
            ..
        } => {
            if stats.decode_tokens_per_sec <= 0.0 {
                bail!("the calibration run produced too few tokens to measure decode speed");
            }
            Ok((stats.prefill_tokens_per_sec, stats.decode_tokens_per_sec))
        }
        Event::Error { message, .. } => bail!(message),
        other => bail!("unexpected engine reply: {other:?}"),
    }
}
