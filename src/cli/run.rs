//! `nanolab run` and `nanolab devices`.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{bail, Context as _};
use clap::Args;

use crate::engine::EngineClient;
use crate::gguf::validate_model_file;
use crate::metrics::mib;
use crate::protocol::*;

/// `run` arguments.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Model GGUF file; with --endpoint, the model name the endpoint lists (may be left out
    /// when it serves one).
    #[arg(long, short, required_unless_present = "endpoint")]
    pub model: Option<PathBuf>,
    /// Adapter GGUF, optionally with a scale: FILE or FILE:SCALE. Repeat to stack. With
    /// --endpoint, an adapter the endpoint serves, by file stem (`smollm2-caps`).
    #[arg(long = "adapter", short = 'a', value_parser = parse_adapter_arg)]
    pub adapters: Vec<AdapterSpec>,
    /// Run on this OpenAI-compatible endpoint (llama-server, vLLM, Ollama, LM Studio,
    /// `nanolab serve`) instead of the local engine: `http://HOST:PORT`.
    #[arg(long)]
    pub endpoint: Option<String>,
    /// Environment variable holding the endpoint's API key.
    #[arg(long, requires = "endpoint")]
    pub api_key_env: Option<String>,
    /// What to continue.
    #[command(flatten)]
    pub prompt: PromptArgs,
    /// One JSON object with text and stats, instead of streaming.
    #[arg(long)]
    pub json: bool,
    /// Temperature (0 = greedy, deterministic).
    #[arg(long, default_value_t = 0.0)]
    pub temp: f32,
    /// Top-k (0 = off).
    #[arg(long, default_value_t = 40)]
    pub top_k: i32,
    /// Top-p (1 = off).
    #[arg(long, default_value_t = 0.95)]
    pub top_p: f32,
    /// Min-p (0 = off).
    #[arg(long, default_value_t = 0.05)]
    pub min_p: f32,
    /// Repetition penalty (1 = off).
    #[arg(long, default_value_t = 1.0)]
    pub repeat_penalty: f32,
    /// Seed.
    #[arg(long, default_value_t = 42)]
    pub seed: u32,
    /// Maximum tokens to generate.
    #[arg(long, short = 'n', default_value_t = 128)]
    pub max_tokens: u32,
    /// Stop before this string (repeatable).
    #[arg(long)]
    pub stop: Vec<String>,
    /// Context length in tokens.
    #[arg(long, default_value_t = 2048)]
    pub ctx: u32,
    /// CPU threads (default: all cores, up to 8).
    #[arg(long)]
    pub threads: Option<u32>,
    /// Layers to offload to a GPU (default: all when a GPU backend exists, 0 on CPU builds).
    #[arg(long)]
    pub gpu_layers: Option<u32>,
    /// Do not apply the adapters pinned to this model as static in the registry.
    #[arg(long)]
    pub no_static: bool,
    /// Alternatives per token to include in --json output.
    #[arg(long, default_value_t = 0)]
    pub top_n: u32,
}

/// `--prompt` (raw) or `--chat` (with `--system`), shared by the commands that generate.
#[derive(Debug, Args)]
pub struct PromptArgs {
    /// Raw prompt (tokenized as is).
    #[arg(long, short, conflicts_with = "chat", required_unless_present = "chat")]
    pub prompt: Option<String>,
    /// Chat message, formatted with the model's chat template.
    #[arg(long, short)]
    pub chat: Option<String>,
    /// System message for --chat.
    #[arg(long)]
    pub system: Option<String>,
}

impl PromptArgs {
    /// The engine prompt.
    pub fn to_prompt(&self) -> anyhow::Result<Prompt> {
        match (&self.prompt, &self.chat) {
            (Some(text), None) => Ok(Prompt::Raw { text: text.clone() }),
            (None, Some(user)) => Ok(Prompt::Chat {
                system: self.system.clone(),
                user: user.clone(),
            }),
            _ => bail!("give exactly one of --prompt or --chat"),
        }
    }
}

/// Parses `FILE[:SCALE]`.
pub fn parse_adapter_arg(s: &str) -> Result<AdapterSpec, String> {
    if let Some((path, scale)) = s.rsplit_once(':') {
        if let Ok(scale) = scale.parse::<f32>() {
            if !scale.is_finite() {
                return Err(format!("scale {scale} is not a number"));
            }
            return Ok(AdapterSpec {
                path: PathBuf::from(path),
                scale,
            });
        }
    }
    Ok(AdapterSpec {
        path: PathBuf::from(s),
        scale: 1.0,
    })
}

/// A remote lane on `url`: the model named, or the only one the endpoint lists.
pub fn remote_lane(
    lane: LaneId,
    url: &str,
    model: Option<&str>,
    api_key_env: Option<&str>,
    adapters: &[AdapterSpec],
) -> anyhow::Result<LaneSpec> {
    let model = match model {
        Some(m) => m.to_string(),
        None => {
            let info = crate::remote::probe(url, api_key_env)?;
            let bases: Vec<&str> = info
                .models
                .iter()
                .filter(|m| m.parent.is_none())
                .map(|m| m.id.as_str())
                .collect();
            match bases.as_slice() {
                [one] => (*one).to_string(),
                [] => bail!("{} lists no models", info.url),
                many => bail!(
                    "{} serves {} models; pick one with --model: {}",
                    info.url,
                    many.len(),
                    many.join(", ")
                ),
            }
        }
    };
    let remote = RemoteSpec {
        url: crate::remote::base_url(url),
        model,
        api_key_env: api_key_env.map(str::to_string),
    };
    Ok(LaneSpec::on_endpoint(lane, remote, adapters.to_vec()))
}

fn local_lane(args: &RunArgs, model: &std::path::Path) -> anyhow::Result<LaneSpec> {
    // Fail fast on bad files, before an engine process starts.
    let model_header = validate_model_file(model).map_err(anyhow::Error::msg)?;
    let adapters = StaticPins::load(args.no_static).apply(model, &args.adapters);
    for a in &adapters {
        crate::adapters::validate_adapter_file(&a.path, &model_header).map_err(anyhow::Error::msg)?;
    }
    Ok(LaneSpec {
        lane: 0,
        model: ModelSpec {
            path: model.to_path_buf(),
            gpu_layers: args.gpu_layers,
        },
        n_ctx: args.ctx,
        threads: args.threads,
        adapters,
        remote: None,
    })
}

pub fn run(args: &RunArgs) -> anyhow::Result<()> {
    let lane = match (&args.endpoint, &args.model) {
        (Some(url), model) => remote_lane(
            0,
            url,
            model.as_deref().and_then(std::path::Path::to_str),
            args.api_key_env.as_deref(),
            &args.adapters,
        )?,
        (None, Some(model)) => local_lane(args, model)?,
        (None, None) => bail!("give --model FILE, or --endpoint URL"),
    };
    let prompt = args.prompt.to_prompt()?;
    let mut client = EngineClient::new(None);
    let job = client.next_job();
    let req = Request::Generate {
        job,
        lane,
        prompt,
        sampling: Sampling {
            temperature: args.temp,
            top_k: args.top_k,
            top_p: args.top_p,
            min_p: args.min_p,
            repeat_penalty: args.repeat_penalty,
            repeat_last_n: 64,
            seed: args.seed,
            max_tokens: args.max_tokens,
            stop: args.stop.clone(),
        },
        top_n: args.top_n,
        exclusive: false,
    };
    let mut tokens = Vec::new();
    let stream = !args.json;
    let end = client.call(&req, |ev| {
        if let Event::Token { text, .. } = ev {
            if stream {
                let mut out = std::io::stdout().lock();
                let _ = out.write_all(text.as_bytes());
                let _ = out.flush();
            } else {
                tokens.push(ev.clone());
            }
        }
    })?;
    match end {
        Event::Done {
            result: JobResult::Generated { stats },
            ..
        } => {
            if args.json {
                let mut v = stats_json(&stats)?;
                if args.top_n > 0 {
                    v["tokens"] = serde_json::to_value(&tokens)?;
                }
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                println!();
                eprintln!("{}", stats_line(&stats));
            }
            Ok(())
        }
        Event::Error { message, .. } => bail!(message),
        other => bail!("unexpected engine reply: {other:?}"),
    }
}

/// The registry's static pins as the headless commands apply them (`--no-static` skips them).
/// A registry that cannot be read must not stop a command: it is warned about once and its
/// pins are not applied.
pub struct StaticPins {
    registry: Option<crate::adapters::registry::Registry>,
}

impl StaticPins {
    /// Reads the registry unless `no_static`.
    pub fn load(no_static: bool) -> Self {
        if no_static {
            return Self { registry: None };
        }
        match crate::adapters::registry::Registry::load(crate::adapters::registry::registry_path()) {
            Ok(reg) => Self { registry: Some(reg) },
            Err(e) => {
                eprintln!("warning: {e}; adapters pinned there as static are not applied");
                Self { registry: None }
            }
        }
    }

    /// The stack for a lane on `model`: its static pins (each named on stderr), then `user`.
    pub fn apply(&self, model: &std::path::Path, user: &[AdapterSpec]) -> Vec<AdapterSpec> {
        let Some(reg) = &self.registry else {
            return user.to_vec();
        };
        let stack = crate::adapters::lane_stack(reg, model, user, true);
        for a in &stack[..stack.len() - user.len()] {
            eprintln!("static adapter: {} (--no-static to skip)", a.path.display());
        }
        stack
    }
}

/// The stats as JSON, with what a remote run could not measure as `null` (the reasons are in
/// `remote.unavailable`).
pub fn stats_json(stats: &RunStats) -> anyhow::Result<serde_json::Value> {
    let mut v = serde_json::to_value(stats)?;
    for u in stats.remote.iter().flat_map(|r| &r.unavailable) {
        if let Some(field) = v.pointer_mut(&format!("/{}", u.field.replace('.', "/"))) {
            *field = serde_json::Value::Null;
        }
    }
    Ok(v)
}

/// The one-line summary printed after a run.
pub fn stats_line(s: &RunStats) -> String {
    if let Some(r) = &s.remote {
        let server = r.server_timings.as_ref().map_or_else(
            || format!("{} reports no timings", r.server),
            |t| {
                format!(
                    "{}'s timings: prompt {} tok @ {:.1} tok/s, gen {} tok @ {:.1} tok/s",
                    r.server, t.prompt_n, t.prompt_per_second, t.predicted_n, t.predicted_per_second
                )
            },
        );
        return format!(
            "remote {} | ttft {:.1} ms | prompt {} tok | gen {} tok @ {:.1} tok/s | itl p50 {:.1} ms p95 {:.1} ms (measured here) | {server} | memory unavailable (remote process) | {:?}",
            r.url, s.ttft_ms, s.prompt_tokens, s.generated_tokens, s.decode_tokens_per_sec, s.itl_p50_ms, s.itl_p95_ms, s.stop_reason
        );
    }
    format!(
        "load {:.0} ms | ttft {:.1} ms | prompt {} tok @ {:.1} tok/s | gen {} tok @ {:.1} tok/s | itl p50 {:.1} ms p95 {:.1} ms | peak rss {} | model {} | kv {} | adapters {} ({:.2} ms swap) | {:?}",
        s.load_ms,
        s.ttft_ms,
        s.prompt_tokens,
        s.prefill_tokens_per_sec,
        s.generated_tokens,
        s.decode_tokens_per_sec,
        s.itl_p50_ms,
        s.itl_p95_ms,
        mib(s.peak_rss_bytes),
        mib(s.lane.model.model_bytes),
        mib(s.lane.kv_bytes),
        mib(s.lane.adapter_bytes),
        s.lane.adapter_swap_ms,
        s.stop_reason
    )
}

/// The GPU backend this binary was built with, if any.
pub fn gpu_backend_built() -> Option<&'static str> {
    if cfg!(feature = "cuda") {
        Some("CUDA")
    } else if cfg!(feature = "vulkan") {
        Some("Vulkan")
    } else {
        None
    }
}

pub fn devices(json: bool) -> anyhow::Result<()> {
    let mut client = EngineClient::new(None);
    let job = client.next_job();
    match client
        .call(&Request::Devices { job }, |_| {})
        .context("asking the engine for devices")?
    {
        Event::Done {
            result: JobResult::Devices { devices },
            ..
        } => {
            let gpu_backend = gpu_backend_built();
            let gpu_devices = devices
                .iter()
                .filter(|d| matches!(d.kind.as_str(), "Gpu" | "IntegratedGpu"))
                .count();
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&serde_json::json!({
                        "gpu_backend_built": gpu_backend,
                        "gpu_offload": gpu_devices > 0,
                        "system_info": client.system_info(),
                        "cpu_features": crate::engine::cpu_features(),
                        "devices": devices,
                    }))?
                );
            } else {
                println!("llama.cpp: {}", client.system_info());
                println!(
                    "CPU features this build uses: {}",
                    crate::engine::cpu_features().join(" ")
                );
                for d in &devices {
                    println!(
                        "  {:<8} {:<12} {:<12} {} free of {}  {}",
                        d.backend,
                        d.name,
                        d.kind,
                        mib(d.memory_free_bytes),
                        mib(d.memory_total_bytes),
                        d.description
                    );
                }
                match gpu_backend {
                    None => println!(
                        "(CPU build: --gpu-layers defaults to 0; build with --features cuda or vulkan to offload)"
                    ),
                    Some(backend) if gpu_devices == 0 => println!(
                        "(built with {backend}, but llama.cpp found no {backend} device: everything runs on the CPU; \
                         `nanolab devices -v` shows llama.cpp's reason)"
                    ),
                    Some(_) => {}
                }
            }
            Ok(())
        }
        Event::Error { message, .. } => bail!(message),
        other => bail!("unexpected engine reply: {other:?}"),
    }
}
