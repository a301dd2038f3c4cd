//! Quantization ladders: make chosen levels of a reference model with llama.cpp's quantizer,
//! in a worker process, with progress, cancel and nothing half-written.

pub mod job;
pub mod types;

pub use job::{QuantEvent, QuantOutcome, QuantizeJob, QuantizeRequest};
pub use types::{QuantType, DEFAULT_LADDER, QUANT_TYPES};
