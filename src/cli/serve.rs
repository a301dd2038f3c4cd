//! `nanolab serve`: arguments for the OpenAI-compatible server in [`crate::serve`].

use std::net::IpAddr;
use std::path::PathBuf;

use clap::Args;

use crate::serve::{check_exposure, ServeConfig};

/// `serve` arguments.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Model GGUF file to serve (repeatable); default: every model in the models folder.
    #[arg(long = "model", short)]
    pub models: Vec<PathBuf>,
    /// Address to bind; anything but loopback needs --api-key.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: IpAddr,
    /// Port (0 picks a free one; the address is printed).
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    /// Bearer token every /v1 route requires.
    #[arg(long)]
    pub api_key: Option<String>,
    /// Device profile that paces every request naming none (e.g. pixel-9-pro).
    #[arg(long)]
    pub device: Option<String>,
    /// Context length in tokens.
    #[arg(long, default_value_t = 2048)]
    pub ctx: u32,
    /// CPU threads (default: all cores, up to 8).
    #[arg(long)]
    pub threads: Option<u32>,
    /// Layers to offload to a GPU.
    #[arg(long)]
    pub gpu_layers: Option<u32>,
    /// Requests queued or running at most; more are answered 503 with Retry-After.
    #[arg(long, default_value_t = 32)]
    pub queue: usize,
    /// Generations that run together per model or lane, each in a context of its own (so N
    /// times the KV memory); more wait their turn.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub parallel: u32,
    /// Do not apply the adapters pinned to a model as static in the registry.
    #[arg(long)]
    pub no_static: bool,
    /// JSON list of lanes to serve under their own names:
    /// `[{"name": "lane-1", "model": FILE, "adapters": [{"path": FILE, "scale": 1.0}]}]`.
    #[arg(long)]
    pub lanes_file: Option<PathBuf>,
    /// Print a line `served {JSON}` on stdout for every answered request (model, prompt and
    /// generated tokens, TTFT, decode tok/s), as the window's "Serve lanes" reads them.
    #[arg(long)]
    pub report_requests: bool,
}

/// Runs the server; an exposed address without a key exits with status 2.
pub fn serve(args: &ServeArgs) -> anyhow::Result<()> {
    let lanes = match &args.lanes_file {
        Some(f) => {
            let text = std::fs::read_to_string(f).map_err(|e| anyhow::anyhow!("{}: {e}", f.display()))?;
            serde_json::from_str(&text).map_err(|e| anyhow::anyhow!("{}: not a lanes file: {e}", f.display()))?
        }
        None => Vec::new(),
    };
    let config = ServeConfig {
        models: args.models.clone(),
        lanes,
        host: args.host,
        port: args.port,
        api_key: args.api_key.clone(),
        device: args.device.clone(),
        n_ctx: args.ctx,
        threads: args.threads,
        gpu_layers: args.gpu_layers,
        queue: args.queue,
        parallel: args.parallel,
        static_pins: !args.no_static,
        report_requests: args.report_requests,
    };
    if let Err(e) = check_exposure(&config) {
        eprintln!("error: {e}");
        std::process::exit(2);
    }
    crate::serve::run(config)
}
