//! `nanolab quantize-worker`: the child process that runs llama.cpp's quantizer for a
//! [`crate::quant::QuantizeJob`]. Writes the temp file, checks it reads back as a model, then
//! renames it into place. Prints one JSON progress line per tensor on stdout; exits (removing
//! the temp file) if its parent goes away.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use super::llama;
use crate::protocol::WorkerLine;
use crate::quant::QuantType;

/// Arguments, as the job passes them.
#[derive(Debug, clap::Args)]
pub struct WorkerArgs {
    /// Source model.
    pub input: PathBuf,
    /// Temp file to write.
    pub temp: PathBuf,
    /// Final name.
    pub output: PathBuf,
    /// Target level name.
    pub qtype: String,
    /// Allow a quantized source.
    #[arg(long)]
    pub allow_requantize: bool,
    /// Threads.
    #[arg(long)]
    pub threads: Option<u32>,
}

/// Parses llama.cpp's per-tensor line: `[  12/ 272]    blk.0.attn_q.weight - [...]`.
pub fn parse_progress(line: &str) -> Option<WorkerLine> {
    let rest = line.trim_start().strip_prefix('[')?;
    let (counts, after) = rest.split_once(']')?;
    let (i, n) = counts.split_once('/')?;
    let name = after.split_whitespace().next()?.to_string();
    Some(WorkerLine {
        tensor: i.trim().parse().ok()?,
        tensors: n.trim().parse().ok()?,
        name,
    })
}

fn on_line(line: &str) {
    if let Some(p) = parse_progress(line) {
        if let Ok(json) = serde_json::to_string(&p) {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{json}");
            let _ = out.flush();
        }
    }
}

/// Runs the quantization.
pub fn run(args: &WorkerArgs) -> anyhow::Result<()> {
    let temp = args.temp.clone();
    // The parent holds our stdin; when it closes (parent gone), stop and leave nothing behind.
    std::thread::Builder::new().name("parent-watch".into()).spawn(move || {
        let mut buf = [0u8; 64];
        while let Ok(n) = std::io::stdin().read(&mut buf) {
            if n == 0 {
                break;
            }
        }
        let _ = std::fs::remove_file(&temp);
        std::process::exit(3);
    })?;
    let qtype = QuantType::parse(&args.qtype).map_err(anyhow::Error::msg)?;
    llama::init_backend()?;
    llama::set_line_observer(on_line);
    let threads = args.threads.map_or(0, |t| t as i32);
    let result = llama::quantize(&args.input, &args.temp, qtype.ftype, args.allow_requantize, threads)
        .map_err(anyhow::Error::from)
        .and_then(|()| check_and_rename(&args.temp, &args.output));
    if result.is_err() {
        let _ = std::fs::remove_file(&args.temp);
    }
    result
}

fn check_and_rename(temp: &Path, output: &Path) -> anyhow::Result<()> {
    crate::gguf::validate_model_file(temp)
        .map_err(|e| anyhow::anyhow!("the quantized file does not read back: {e}"))?;
    std::fs::File::open(temp)?.sync_all()?;
    std::fs::rename(temp, output)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_llama_cpp_progress_lines() {
        let p = parse_progress("[  12/ 272]                   blk.0.attn_q.weight - [  576,   576,     1,     1], type =    f16, converting to q8_0 .. size = 0.63 MiB -> 0.33 MiB").unwrap();
        assert_eq!((p.tensor, p.tensors, p.name.as_str()), (12, 272, "blk.0.attn_q.weight"));
        assert!(parse_progress("llama_model_quantize_impl: model size = 256 MiB").is_none());
    }
}
