//! LoRA adapters: compatibility checks against a base model (from GGUF headers alone).

pub mod compat;

pub use compat::{check, CompatError, CompatReport};
