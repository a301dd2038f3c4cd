//! Pure-Rust GGUF reading, validation, summaries and writing. Validates a file before
//! llama.cpp ever sees it.

mod reader;
mod summary;
mod types;
mod validate;
pub mod writer;

pub use reader::{parse_bytes, read, GgufError, GgufFile, TensorInfo, Value};
pub use summary::{AdapterSummary, FileKind, QuantShare, Summary};
pub use types::{file_type_name, GgmlType};
pub use validate::validate_model_file;
pub use writer::TensorHeader;
