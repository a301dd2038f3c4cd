//! nanolab's binary: parses the command line; no subcommand opens the window.

use std::process::ExitCode;

use clap::Parser;
use nanolab::cli::{Cli, Command, HeadlessCommand};

fn init_logging(verbose: u8, is_engine: bool) {
    // The engine child inherits the parent's filter through NANOLAB_LOG.
    let filter = match std::env::var("NANOLAB_LOG") {
        Ok(f) if !f.is_empty() => f,
        _ => {
            let f = match verbose {
                0 => "warn,llama=off",
                1 => "info,llama=info",
                _ => "debug,llama=debug",
            };
            if !is_engine {
                std::env::set_var("NANOLAB_LOG", f);
            }
            f.to_string()
        }
    };
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_writer(std::io::stderr)
        .with_target(true)
        .try_init();
}

/// Software rendering (Mesa's llvmpipe: Xvfb, or no GPU driver) draws with a thread per core,
/// on the very cores the engine decodes on: lane 1's first token in a 4-lane window under Xvfb
/// took 2-5x as long as from the command line. The window gets the cores the engine leaves
/// (one at least) unless the user set the variable; only llvmpipe reads it. Set before any
/// thread starts, as changing the environment later would race their reads.
fn leave_engine_cores_to_engine() {
    if std::env::var_os("LP_NUM_THREADS").is_none() {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let free = cores.saturating_sub(nanolab::engine::default_threads()).max(1);
        std::env::set_var("LP_NUM_THREADS", free.to_string());
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let is_engine = matches!(cli.command, Some(Command::Headless(HeadlessCommand::Engine)));
    if !matches!(cli.command, Some(Command::Headless(_))) {
        leave_engine_cores_to_engine();
    }
    init_logging(cli.verbose, is_engine);
    // The binary is the one place that sees both faces: `cli` runs headless work, `ui` the window.
    let result = match cli.command {
        Some(Command::Headless(cmd)) => nanolab::cli::dispatch(cmd),
        Some(Command::Screenshot(args)) => nanolab::ui::screenshot::capture(&args.out, args.model),
        None => nanolab::ui::run(cli.model, cli.scene),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
