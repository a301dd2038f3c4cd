//! `nanolab serve`: an OpenAI-compatible HTTP server (axum on tokio) over the supervised engine.
//! Any stack of adapter files with per-adapter scales is chosen per request by model name
//! (`BASE+ADAPTER[:SCALE]…`) or by llama-server's `lora` field; a simulated device can pace the
//! stream. A front end like `ui` and `cli`: it drives the engine through [`dispatch`].

mod answer;
pub mod completion;
pub mod dispatch;
pub mod library;
pub mod openai;
pub mod pacing;
pub mod routes;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use anyhow::Context as _;

use crate::adapters::registry::{registry_path, Registry};

/// How `nanolab serve` was asked to run.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// Model files; empty (and no lanes) = every model in the models folder.
    pub models: Vec<PathBuf>,
    /// Lanes served under their own names (`lane-1`: a model with a fixed adapter stack).
    pub lanes: Vec<crate::protocol::LaneAlias>,
    /// Address to bind.
    pub host: IpAddr,
    /// Port (0 = any free one; the chosen one is printed).
    pub port: u16,
    /// Required bearer token.
    pub api_key: Option<String>,
    /// Device profile pacing every request that names none.
    pub device: Option<String>,
    /// Context length per model.
    pub n_ctx: u32,
    /// CPU threads.
    pub threads: Option<u32>,
    /// GPU layers.
    pub gpu_layers: Option<u32>,
    /// Requests queued or running at most; more get 503.
    pub queue: usize,
    /// Generations that run together per model or lane (each its own engine lane).
    pub parallel: u32,
    /// Apply the registry's static pins.
    pub static_pins: bool,
    /// Print a `served` line per answered request on stdout.
    pub report_requests: bool,
}

/// Why the server refuses to start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// A non-loopback address without a key would expose the engine to the network.
    #[error("refusing to listen on {0} without --api-key: anyone on the network could use it (bind 127.0.0.1, or give a key)")]
    OpenWithoutKey(IpAddr),
}

/// Checks the configuration that must be refused before anything starts.
pub fn check_exposure(config: &ServeConfig) -> Result<(), ServeError> {
    if !config.host.is_loopback() && config.api_key.as_deref().is_none_or(str::is_empty) {
        return Err(ServeError::OpenWithoutKey(config.host));
    }
    Ok(())
}

/// Runs the server until SIGINT or SIGTERM; in-flight requests finish first.
pub fn run(config: ServeConfig) -> anyhow::Result<()> {
    check_exposure(&config)?;
    let models = if config.models.is_empty() && config.lanes.is_empty() {
        let dir = crate::models::models_dir();
        let found: Vec<PathBuf> = crate::models::list_installed(&dir)
            .into_iter()
            .map(|m| m.path)
            .collect();
        if found.is_empty() {
            anyhow::bail!(
                "no models in {}: give --model FILE or fetch one (nanolab models fetch smollm2-135m-instruct)",
                dir.display()
            );
        }
        found
    } else {
        config.models.clone()
    };
    let registry = Registry::load(registry_path()).unwrap_or_else(|e| {
        eprintln!("warning: {e}; serving the adapters folders without the registry's pins");
        Registry::empty(registry_path())
    });
    let library = library::Library::open(&models, &config.lanes, registry)?;
    let devices = Arc::new(pacing::Devices::load());
    if let Some(d) = &config.device {
        devices.check(d).map_err(|e| anyhow::anyhow!(e.message))?;
    }
    let (dispatcher, engine_thread) = dispatch::Dispatcher::start(config.queue, config.parallel)?;
    let state = Arc::new(routes::AppState {
        library,
        dispatcher,
        devices,
        default_device: config.device.clone(),
        api_key: config.api_key.clone(),
        n_ctx: config.n_ctx,
        threads: config.threads,
        gpu_layers: config.gpu_layers,
        static_pins: config.static_pins,
        report_requests: config.report_requests,
        global_lora: Mutex::new(Vec::new()),
    });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("serve-http")
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        let addr = SocketAddr::new(config.host, config.port);
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("could not listen on {addr}"))?;
        let local = listener.local_addr()?;
        for m in state.library.models() {
            eprintln!("serving {} ({})", m.id, m.path.display());
        }
        for (name, base, adapters) in state.library.aliases() {
            eprintln!("serving {name} ({} with {} adapters)", base.id, adapters.len());
        }
        println!("listening on http://{local}");
        std::io::Write::flush(&mut std::io::stdout())?;
        axum::serve(listener, routes::router(state))
            .with_graceful_shutdown(shutdown_signal())
            .await
            .context("serving HTTP")
    })?;
    drop(runtime);
    // The router (and with it the last dispatcher handle) is gone: the engine thread ends.
    let _ = engine_thread.join();
    eprintln!("server stopped");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    eprintln!("shutting down: finishing requests in flight");
}
