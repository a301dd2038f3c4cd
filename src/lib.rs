//! nanolab: a native desktop lab for on-device LLMs. Layers, top to bottom:
//! `ui`/`cli` → `engine`, `adapters`, `models`, `metrics` → `gguf`. Only `engine` links llama.cpp;
//! only `ui` uses egui.

pub mod adapters;
pub mod cli;
pub mod engine;
pub mod eval;
pub mod gguf;
pub mod metrics;
pub mod models;
pub mod paths;
pub mod protocol;
pub mod quant;
pub mod sim;
pub mod ui;
