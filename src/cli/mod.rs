//! Headless subcommands over the same engine the window uses.

mod adapters;
mod adapters_out;
mod bench;
mod diverge;
pub mod eval;
mod inspect;
mod models;
mod output;
mod quantize;
mod run;
mod scene;
mod serve;
mod sim;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

pub use run::parse_adapter_arg;

/// nanolab: a desktop lab for on-device LLMs. With no subcommand, opens the window.
#[derive(Debug, Parser)]
#[command(name = "nanolab", version, about)]
pub struct Cli {
    /// More logging (-v: info incl. llama.cpp, -vv: debug).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// Model to open in the window.
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Scene file to open in the window (lanes, adapters, devices, prompts, arena votes).
    #[arg(long, conflicts_with = "model")]
    pub scene: Option<PathBuf>,
    /// Subcommand; none opens the window.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Subcommands: the headless ones [`dispatch`] runs, and the one that renders the window (run by
/// the binary, which may use `ui`; this module may not).
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Everything that runs without the window.
    #[command(flatten)]
    Headless(HeadlessCommand),
    /// Render the window in given states to PNG files.
    Screenshot(ScreenshotArgs),
}

/// Subcommands that run without the window.
#[derive(Debug, Subcommand)]
pub enum HeadlessCommand {
    /// Fetch and list models.
    #[command(subcommand)]
    Models(ModelsCommand),
    /// Show what a GGUF file holds (model or adapter), validating it.
    Inspect(InspectArgs),
    /// Adapter registry, compatibility checks and PEFT import.
    #[command(subcommand)]
    Adapters(adapters::AdaptersCommand),
    /// Generate text with a model and optional adapters; prints timings.
    Run(run::RunArgs),
    /// Simulate a sustained run on a phone-class device (thermal throttling, routing).
    Sim(sim::SimArgs),
    /// Benchmark prefill/decode like llama-bench, against a bare llama-cpp-2 loop in the same run.
    Bench(bench::BenchArgs),
    /// Make quantization levels of a model with llama.cpp's quantizer (a ladder).
    Quantize(quantize::QuantizeArgs),
    /// Quality over a text (ppl, kld vs a reference) and prompt-set scorecards.
    #[command(subcommand)]
    Eval(eval::EvalCommand),
    /// Token-level divergence between two lanes (teacher forcing on lane A's output).
    Diverge(diverge::DivergeArgs),
    /// Serve the models over an OpenAI-compatible HTTP API, adapter stacks chosen per request.
    Serve(serve::ServeArgs),
    /// Scenes: replay one headless, verify its files, pack it into a zip.
    #[command(subcommand)]
    Scene(scene::SceneCommand),
    /// Blind A/B arena results of a scene.
    #[command(subcommand)]
    Arena(scene::ArenaCommand),
    /// List compute devices llama.cpp can use.
    Devices(JsonFlag),
    /// The engine process (started by nanolab itself; speaks JSON lines on stdio).
    #[command(hide = true)]
    Engine,
    /// The quantizer process (started by nanolab itself).
    #[command(hide = true)]
    QuantizeWorker(crate::engine::quantize_worker::WorkerArgs),
}

/// `models` subcommands.
#[derive(Debug, Subcommand)]
pub enum ModelsCommand {
    /// Download a catalog model (e.g. smollm2-135m-instruct, gemma3-270m) or a direct .gguf link.
    Fetch {
        /// Catalog id or http(s) URL of a .gguf file.
        what: String,
        /// Expected sha256 of a file fetched by URL.
        #[arg(long)]
        sha256: Option<String>,
        /// Folder to put models in (default: models/ or $NANOLAB_MODELS).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// List installed models and the catalog.
    List {
        /// JSON output.
        #[arg(long)]
        json: bool,
        /// Folder to look in.
        #[arg(long)]
        dir: Option<PathBuf>,
    },
}

/// `inspect` arguments.
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// The GGUF file.
    pub file: PathBuf,
    /// JSON output.
    #[arg(long)]
    pub json: bool,
}

/// A lone `--json` flag.
#[derive(Debug, Args)]
pub struct JsonFlag {
    /// JSON output.
    #[arg(long)]
    pub json: bool,
}

/// `screenshot` arguments.
#[derive(Debug, Args)]
pub struct ScreenshotArgs {
    /// Output folder.
    #[arg(long, default_value = "screenshots")]
    pub out: PathBuf,
    /// Model to use (default: the demo model).
    #[arg(long)]
    pub model: Option<PathBuf>,
}

/// Runs a headless subcommand.
pub fn dispatch(command: HeadlessCommand) -> anyhow::Result<()> {
    match command {
        HeadlessCommand::Models(ModelsCommand::Fetch { what, sha256, dir }) => {
            models::fetch(&what, sha256.as_deref(), dir)
        }
        HeadlessCommand::Models(ModelsCommand::List { json, dir }) => models::list(json, dir),
        HeadlessCommand::Inspect(args) => inspect::inspect(&args),
        HeadlessCommand::Adapters(cmd) => adapters::dispatch(cmd),
        HeadlessCommand::Run(args) => run::run(&args),
        HeadlessCommand::Devices(flag) => run::devices(flag.json),
        HeadlessCommand::Serve(args) => serve::serve(&args),
        HeadlessCommand::Sim(args) => sim::sim(&args),
        HeadlessCommand::Bench(args) => bench::bench(&args),
        HeadlessCommand::Engine => crate::engine::server::run(),
        HeadlessCommand::QuantizeWorker(args) => crate::engine::quantize_worker::run(&args),
        HeadlessCommand::Quantize(args) => quantize::quantize(&args),
        HeadlessCommand::Eval(cmd) => eval::dispatch(cmd),
        HeadlessCommand::Diverge(args) => diverge::diverge(&args),
        HeadlessCommand::Scene(cmd) => scene::dispatch(cmd),
        HeadlessCommand::Arena(cmd) => scene::arena(cmd),
    }
}
