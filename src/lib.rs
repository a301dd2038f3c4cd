//! nanolab: a native desktop lab for on-device LLMs. Layers, top to bottom, imports pointing
//! down only: `ui`, `cli` (never each other; `main.rs` sees both) → `engine`, `sim` → `adapters`,
//! `eval` → `quant`, `models` → the leaves `gguf`, `protocol`, `process`, `metrics`, `paths`.
//! Only `engine` links llama.cpp; only `ui` uses egui. `scripts/check-layers.sh` checks all this.

pub mod adapters;
pub mod cli;
pub mod engine;
pub mod eval;
pub mod gguf;
pub mod lab;
pub mod metrics;
pub mod models;
pub mod paths;
pub mod process;
pub mod protocol;
pub mod quant;
pub mod remote;
pub mod scene;
pub mod serve;
pub mod sim;
pub mod ui;
