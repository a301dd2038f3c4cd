//! The engine: the only place that touches llama.cpp. It runs in a child process of the same
//! binary (`nanolab engine`); [`EngineClient`] spawns and supervises it and speaks
//! [`crate::protocol`] to it; a generation on a remote lane goes through [`crate::remote`]
//! instead, behind the same client.

pub mod baseline;
mod cancel;
pub mod client;
mod llama;
pub mod local;
pub mod quantize_worker;
mod remote_lanes;
pub mod server;
mod text;
mod worker;

pub use client::{ClientError, EngineClient, Waker};
pub use llama::{cpu_features, llama_build, weight_repacking};

/// Threads a lane decodes with unless it names its own: every core, at most 8 (past that a
/// small model's step is bound by memory, not by threads).
pub fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get()).min(8)
}

/// Layers the engine offloads when none are asked for: all of them where llama.cpp found a GPU,
/// none otherwise.
pub fn default_gpu_layers() -> u32 {
    if llama::supports_gpu_offload() {
        999
    } else {
        0
    }
}
