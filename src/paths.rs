//! Where nanolab keeps its own files: an environment variable wins, else the user's config
//! folder (`~/.config/nanolab` on Linux).

use std::path::PathBuf;

/// `$env` if set, else `name` in nanolab's config folder (or the working directory if there is none).
pub fn config_path(env: &str, name: &str) -> PathBuf {
    if let Some(p) = std::env::var_os(env) {
        return PathBuf::from(p);
    }
    directories::ProjectDirs::from("dev", "nanolab", "nanolab").map_or_else(
        || PathBuf::from(format!(".nanolab-{name}")),
        |d| d.config_dir().join(name),
    )
}
