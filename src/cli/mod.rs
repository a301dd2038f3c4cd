//! Headless subcommands over the same engine the window uses.

mod adapters;
mod bench;
mod diverge;
pub mod eval;
mod inspect;
mod models;
mod output;
mod quantize;
mod run;
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
    /// Subcommand; none opens the window.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
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
    /// List compute devices llama.cpp can use.
    Devices(JsonFlag),
    /// Render the window in given states to PNG files.
    Screenshot(ScreenshotArgs),
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
pub fn dispatch(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Models(ModelsCommand::Fetch { what, sha256, dir }) => models::fetch(&what, sha256.as_deref(), dir),
        Command::Models(ModelsCommand::List { json, dir }) => models::list(json, dir),
        Command::Inspect(args) => inspect::inspect(&args),
        Command::Adapters(cmd) => adapters::dispatch(cmd),
        Command::Run(args) => run::run(&args),
        Command::Devices(flag) => run::devices(flag.json),
        Command::Sim(args) => sim::sim(&args),
        Command::Bench(args) => bench::bench(&args),
        Command::Screenshot(args) => crate::ui::screenshot::capture(&args.out, args.model),
        Command::Engine => crate::engine::server::run(),
        Command::QuantizeWorker(args) => crate::engine::quantize_worker::run(&args),
        Command::Quantize(args) => quantize::quantize(&args),
        Command::Eval(cmd) => eval::dispatch(cmd),
        Command::Diverge(args) => diverge::diverge(&args),
    }
}
