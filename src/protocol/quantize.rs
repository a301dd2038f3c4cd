//! The quantize worker's stdout (`nanolab quantize-worker`): one JSON line per tensor written,
//! read by the quantize job that started it.

use serde::{Deserialize, Serialize};

/// One line of the worker's stdout.
#[derive(Debug, Serialize, Deserialize)]
pub struct WorkerLine {
    /// Tensor index (1-based).
    pub tensor: u32,
    /// Tensor count.
    pub tensors: u32,
    /// Tensor name.
    pub name: String,
}
