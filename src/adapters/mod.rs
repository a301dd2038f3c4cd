//! LoRA adapters: compatibility checks against a base model (from GGUF headers alone), the
//! registry, and the PEFT importer.

pub mod compat;
pub mod merge;
pub mod peft;
pub mod peft_files;
pub mod registry;
pub mod stack;

pub use compat::{check, validate_adapter_file, CompatError, CompatReport};
pub use stack::lane_stack;
