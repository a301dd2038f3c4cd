//! The model library: the fetch catalog, downloads, and what is installed in `models/`.

pub mod catalog;
pub mod fetch;

use std::path::{Path, PathBuf};

use serde::Serialize;

pub use catalog::{CatalogModel, CATALOG};
pub use fetch::{fetch_catalog, fetch_url, sha256_bytes, sha256_file, Digest, FetchError, FetchProgress, Fetched};

/// The models folder: `$NANOLAB_MODELS`, else `models/` in the working directory.
pub fn models_dir() -> PathBuf {
    std::env::var_os("NANOLAB_MODELS").map_or_else(|| PathBuf::from("models"), PathBuf::from)
}

/// An installed model file.
#[derive(Debug, Clone, Serialize)]
pub struct Installed {
    /// Path.
    pub path: PathBuf,
    /// Size in bytes.
    pub file_bytes: u64,
    /// Catalog id, if it is a catalog model.
    pub catalog_id: Option<String>,
}

/// GGUF files directly in `dir`, sorted by name.
pub fn list_installed(dir: &Path) -> Vec<Installed> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<Installed> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_file() && p.extension().is_some_and(|x| x.eq_ignore_ascii_case("gguf")))
        .map(|path| Installed {
            file_bytes: std::fs::metadata(&path).map_or(0, |m| m.len()),
            catalog_id: CATALOG
                .iter()
                .find(|c| path.file_name().is_some_and(|n| n == c.file_name))
                .map(|c| c.id.to_string()),
            path,
        })
        .collect();
    out.sort_by(|a, b| a.path.cmp(&b.path));
    out
}

/// Path of the demo model in `dir` (which may not exist yet).
pub fn demo_model_path(dir: &Path) -> PathBuf {
    dir.join(catalog::demo().file_name)
}
