//! The evaluation text shipped with nanolab, and reading the one a user picks instead.

use std::path::Path;

/// The evaluation text shipped with nanolab (see assets/eval/README.md).
pub const DEFAULT_TEXT: &str = include_str!("../../assets/eval/gpl-3.0.txt");

/// Reads the evaluation text at `path` (or the shipped one).
pub fn read_text(path: Option<&Path>) -> Result<String, String> {
    match path {
        None => Ok(DEFAULT_TEXT.to_string()),
        Some(p) => {
            let bytes = std::fs::read(p).map_err(|e| format!("cannot read {}: {e}", p.display()))?;
            String::from_utf8(bytes).map_err(|_| format!("{} is not UTF-8 text", p.display()))
        }
    }
}
