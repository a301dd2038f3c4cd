//! Checks a model file from its GGUF header before llama.cpp sees it.

use std::path::Path;

use super::{read, FileKind, GgufFile, Summary};

/// Reads and checks a model file before llama.cpp sees it.
pub fn validate_model_file(path: &Path) -> Result<GgufFile, String> {
    let file = read(path).map_err(|e| e.to_string())?;
    match Summary::of(&file).kind {
        FileKind::Model => {}
        FileKind::Adapter => {
            return Err(format!(
                "{}: this is a LoRA adapter, not a model; load a base model and add it as an adapter",
                path.display()
            ))
        }
        FileKind::ControlVector => return Err(format!("{}: this is a control vector, not a model", path.display())),
    }
    if file.tensors.is_empty() {
        return Err(format!(
            "{}: the file has no tensors; it is not a usable model",
            path.display()
        ));
    }
    if file.architecture().is_none() {
        return Err(format!(
            "{}: no general.architecture; not a model llama.cpp can run",
            path.display()
        ));
    }
    Ok(file)
}
