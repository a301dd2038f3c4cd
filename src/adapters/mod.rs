//! LoRA adapters: compatibility checks against a base model (from GGUF headers alone), the
//! registry, the PEFT importer, export to PEFT and MLX-LM, and compression by SVD.

pub mod compat;
pub mod compress;
pub mod export;
pub mod lora_file;
pub mod merge;
pub mod peft;
pub mod peft_files;
pub mod registry;
pub mod stack;
pub mod svd;

pub use compat::{check, validate_adapter_file, CompatError, CompatReport};
pub use stack::lane_stack;
