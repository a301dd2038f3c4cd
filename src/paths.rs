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

/// Writes `bytes` to `path` atomically: a temp file beside it (so the rename stays on one file
/// system), flushed, then renamed over. A crash or full disk leaves the old file or none, never
/// half of a new one.
pub fn write_atomic(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let name = path
        .file_name()
        .map_or_else(|| "out".into(), |n| n.to_string_lossy().into_owned());
    let tmp = path.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Where the window writes exports: `$NANOLAB_EXPORTS`, else `exports/` in nanolab's data folder.
pub fn exports_dir() -> PathBuf {
    if let Some(p) = std::env::var_os("NANOLAB_EXPORTS") {
        return PathBuf::from(p);
    }
    directories::ProjectDirs::from("dev", "nanolab", "nanolab")
        .map_or_else(|| PathBuf::from("nanolab-exports"), |d| d.data_dir().join("exports"))
}

/// Free bytes for an unprivileged writer on the file system holding `dir` (None if unknown).
pub fn free_bytes(dir: &std::path::Path) -> Option<u64> {
    let c = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes()).ok()?;
    // SAFETY: statvfs fills the struct for a valid NUL-terminated path.
    unsafe {
        let mut st: libc::statvfs = std::mem::zeroed();
        (libc::statvfs(c.as_ptr(), &mut st) == 0).then(|| st.f_bavail as u64 * st.f_frsize as u64)
    }
}
