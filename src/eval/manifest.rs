//! A run manifest: everything needed to reproduce an evaluation (versions, the exact files by
//! sha256, settings, seeds, the machine).

use std::path::Path;

use serde::{Deserialize, Serialize};

/// One input file, identified by content.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileRecord {
    /// Path as given.
    pub path: String,
    /// What it is in this run (model, reference, adapter, text, prompt set).
    pub role: String,
    /// sha256 of the content.
    pub sha256: String,
    /// Size.
    pub bytes: u64,
}

/// The manifest written beside every evaluation result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunManifest {
    /// What ran (`eval kld`, `diverge`, …).
    pub kind: String,
    /// nanolab version.
    pub nanolab_version: String,
    /// llama.cpp build: the ggml version and commit compiled into the engine.
    pub llama_cpp_build: String,
    /// CPU features that build uses (native or portable build: `AVX2`, `AVX512`, …).
    #[serde(default)]
    pub cpu_features: Vec<String>,
    /// Command line, when run from the CLI.
    pub command: Vec<String>,
    /// Inputs.
    pub files: Vec<FileRecord>,
    /// Settings (context, chunks, sampling, threads…), as given to the engine.
    pub settings: serde_json::Value,
    /// Seeds used.
    pub seeds: Vec<u32>,
    /// Seconds since the Unix epoch when the run started.
    pub started_unix_s: u64,
    /// CPU model and core count, OS.
    pub machine: String,
}

impl RunManifest {
    /// A manifest for `kind` with the given settings, from an engine built on `llama_cpp_build`
    /// (`engine::llama_build()`) with `cpu_features` (`engine::cpu_features()`); add files with
    /// [`RunManifest::add_file`].
    pub fn new(
        kind: &str,
        settings: serde_json::Value,
        seeds: Vec<u32>,
        llama_cpp_build: String,
        cpu_features: Vec<String>,
    ) -> Self {
        Self {
            kind: kind.to_string(),
            nanolab_version: env!("CARGO_PKG_VERSION").to_string(),
            llama_cpp_build,
            cpu_features,
            command: std::env::args().collect(),
            files: Vec::new(),
            settings,
            seeds,
            started_unix_s: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            machine: machine(),
        }
    }

    /// Hashes a file and records it (files already recorded are skipped).
    pub fn add_file(&mut self, path: &Path, role: &str) -> std::io::Result<()> {
        let p = path.display().to_string();
        if self.files.iter().any(|f| f.path == p && f.role == role) {
            return Ok(());
        }
        let sha256 = crate::models::sha256_file(path)?;
        let bytes = std::fs::metadata(path)?.len();
        self.files.push(FileRecord {
            path: p,
            role: role.to_string(),
            sha256,
            bytes,
        });
        Ok(())
    }
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| std::env::consts::ARCH.to_string());
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    format!("{cpu}, {cores} cores, {}", std::env::consts::OS)
}
