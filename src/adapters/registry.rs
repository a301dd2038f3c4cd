//! The adapter registry: adapters found in `adapters/` and any folder the user adds, with what
//! their headers say, their sha256, user tags and notes, and static pins to models. Persisted
//! as JSON; facts are recomputed from the files, only user data is stored.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::gguf::{self, FileKind, GgufFile, Summary};

/// User data kept per adapter (by canonical path).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct UserNotes {
    /// Free-form tags.
    pub tags: Vec<String>,
    /// Free-form notes.
    pub notes: String,
}

/// What is persisted.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RegistryFile {
    /// Extra folders to scan (besides `adapters/`).
    pub folders: Vec<PathBuf>,
    /// Tags and notes per adapter path.
    pub notes: BTreeMap<PathBuf, UserNotes>,
    /// Static adapters per model file name: always applied to lanes on that model.
    pub static_pins: BTreeMap<String, Vec<PathBuf>>,
    /// sha256 cache: path -> (size, mtime secs, digest).
    pub digests: BTreeMap<PathBuf, (u64, u64, String)>,
}

/// One adapter as the registry lists it.
#[derive(Debug, Clone, Serialize)]
pub struct Entry {
    /// File.
    pub path: PathBuf,
    /// File name without extension.
    pub name: String,
    /// Base architecture.
    pub architecture: Option<String>,
    /// Base model name recorded in the file.
    pub base_model: Option<String>,
    /// Ranks.
    pub ranks: Vec<u64>,
    /// Alpha.
    pub alpha: Option<f64>,
    /// Number of base tensors adapted.
    pub targets: usize,
    /// Kinds of tensors adapted (attn_q, ffn_up, …).
    pub target_kinds: Vec<String>,
    /// File size.
    pub file_bytes: u64,
    /// sha256 of the file.
    pub sha256: String,
    /// User tags.
    pub tags: Vec<String>,
    /// User notes.
    pub notes: String,
    /// Compatibility with the model asked about: None if no model given, Some(Ok) or Some(Err(reason)).
    pub compatible: Option<Result<(), String>>,
    /// Model file names this adapter is pinned to as a static adapter.
    pub static_for: Vec<String>,
    /// Where it came from, as nanolab recorded it in the file (import, compression).
    pub source: Option<Source>,
}

/// An adapter's origin: the format it was made from, how, and from which file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Source {
    /// `peft` (a PEFT folder) or `gguf` (another GGUF adapter).
    pub format: String,
    /// The conversion or compression, as a command.
    pub conversion: String,
    /// The file or folder it was made from.
    pub file: String,
}

impl Source {
    /// The `nanolab.source.*` keys of a GGUF adapter, when it has them.
    pub fn of(file: &GgufFile) -> Option<Self> {
        Some(Self {
            format: file.get_str("nanolab.source.format")?.to_string(),
            conversion: file
                .get_str("nanolab.source.conversion")
                .unwrap_or_default()
                .to_string(),
            file: file.get_str("nanolab.source.file").unwrap_or_default().to_string(),
        })
    }
}

/// The project's adapter folder: `$NANOLAB_ADAPTERS`, else `adapters/`.
pub fn adapters_dir() -> PathBuf {
    std::env::var_os("NANOLAB_ADAPTERS").map_or_else(|| PathBuf::from("adapters"), PathBuf::from)
}

/// Where the registry file lives: `$NANOLAB_REGISTRY`, else the user's config folder.
pub fn registry_path() -> PathBuf {
    crate::paths::config_path("NANOLAB_REGISTRY", "registry.json")
}

/// The registry: persisted user data plus the folders to scan.
#[derive(Debug, Clone)]
pub struct Registry {
    /// Persisted part.
    pub file: RegistryFile,
    path: PathBuf,
    read_only: bool,
    /// The project's adapter folder, scanned first.
    adapters_dir: PathBuf,
}

impl Registry {
    /// Loads the registry (a missing file is an empty registry; a broken one is an error).
    pub fn load(path: PathBuf) -> anyhow::Result<Self> {
        let file = match std::fs::read_to_string(&path) {
            Ok(text) => serde_json::from_str(&text)
                .map_err(|e| anyhow::anyhow!("{}: not a valid registry file: {e}", path.display()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => RegistryFile::default(),
            Err(e) => return Err(anyhow::anyhow!("{}: {e}", path.display())),
        };
        Ok(Self {
            file,
            path,
            read_only: false,
            adapters_dir: adapters_dir(),
        })
    }

    /// An empty registry that refuses to save (used when the file on disk is unreadable).
    pub fn empty(path: PathBuf) -> Self {
        Self {
            file: RegistryFile::default(),
            path,
            read_only: true,
            adapters_dir: adapters_dir(),
        }
    }

    /// Scans `dir` as the project's adapter folder instead of [`adapters_dir`].
    pub fn with_adapters_dir(mut self, dir: PathBuf) -> Self {
        self.adapters_dir = dir;
        self
    }

    /// The project's adapter folder (where imports are written).
    pub fn adapters_dir(&self) -> &Path {
        &self.adapters_dir
    }

    /// Writes the registry atomically.
    pub fn save(&self) -> anyhow::Result<()> {
        if self.read_only {
            anyhow::bail!(
                "{}: not saved (the file could not be read at start)",
                self.path.display()
            );
        }
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let tmp = self.path.with_extension("json.tmp");
        std::fs::write(&tmp, serde_json::to_string_pretty(&self.file)?)?;
        std::fs::rename(&tmp, &self.path)?;
        Ok(())
    }

    /// Folders scanned: `adapters/` first, then the user's.
    pub fn folders(&self) -> Vec<PathBuf> {
        let mut v = vec![self.adapters_dir.clone()];
        v.extend(self.file.folders.iter().cloned());
        v
    }

    fn digest(&mut self, path: &Path) -> String {
        let meta = std::fs::metadata(path).ok();
        let size = meta.as_ref().map_or(0, std::fs::Metadata::len);
        let mtime = meta
            .and_then(|m| m.modified().ok())
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_secs());
        if let Some((s, m, d)) = self.file.digests.get(path) {
            if *s == size && *m == mtime {
                return d.clone();
            }
        }
        let d = crate::models::fetch::sha256_file(path).unwrap_or_default();
        self.file.digests.insert(path.to_path_buf(), (size, mtime, d.clone()));
        d
    }

    /// Lists every adapter in the folders, sorted by path, checked against `model` if given.
    pub fn list(&mut self, model: Option<&GgufFile>) -> Vec<Entry> {
        let mut paths = Vec::new();
        for folder in self.folders() {
            let Ok(rd) = std::fs::read_dir(&folder) else { continue };
            for e in rd.filter_map(Result::ok) {
                let p = e.path();
                if p.is_file() && p.extension().is_some_and(|x| x.eq_ignore_ascii_case("gguf")) {
                    paths.push(p);
                }
            }
        }
        paths.sort();
        paths.dedup();
        paths.into_iter().filter_map(|p| self.entry(&p, model).ok()).collect()
    }

    /// Describes one adapter file (an error if it is not a readable adapter).
    pub fn entry(&mut self, path: &Path, model: Option<&GgufFile>) -> Result<Entry, String> {
        let file = gguf::read(path).map_err(|e| e.to_string())?;
        let s = Summary::of(&file);
        if s.kind != FileKind::Adapter {
            return Err(format!("{}: not an adapter", path.display()));
        }
        let a = s.adapter.clone().unwrap_or_else(unreachable_summary);
        let mut kinds: Vec<String> = a
            .targets
            .iter()
            .filter_map(|t| t.split('.').rev().nth(1).map(str::to_string))
            .collect();
        kinds.sort();
        kinds.dedup();
        let notes = self.file.notes.get(path).cloned().unwrap_or_default();
        let file_name = |p: &Path| {
            p.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        };
        let static_for = self
            .file
            .static_pins
            .iter()
            .filter(|(_, v)| v.iter().any(|p| p == path))
            .map(|(m, _)| m.clone())
            .collect();
        Ok(Entry {
            name: path
                .file_stem()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            architecture: s.architecture.clone(),
            base_model: a.base_model.clone(),
            ranks: a.ranks.clone(),
            alpha: a.alpha,
            targets: a.targets.len(),
            target_kinds: kinds,
            file_bytes: s.file_bytes,
            sha256: self.digest(path),
            tags: notes.tags,
            notes: notes.notes,
            compatible: model.map(|m| super::check(&file, m).map(|_| ()).map_err(|e| e.to_string())),
            static_for,
            source: Source::of(&file),
            path: path.to_path_buf(),
        })
        .map(|mut e: Entry| {
            if e.name.is_empty() {
                e.name = file_name(path);
            }
            e
        })
    }

    /// Static adapters pinned to a model file.
    pub fn static_for(&self, model: &Path) -> Vec<PathBuf> {
        model
            .file_name()
            .and_then(|n| self.file.static_pins.get(&n.to_string_lossy().into_owned()))
            .cloned()
            .unwrap_or_default()
    }
}

fn unreachable_summary() -> gguf::AdapterSummary {
    gguf::AdapterSummary {
        adapter_type: None,
        alpha: None,
        ranks: Vec::new(),
        targets: Vec::new(),
        base_model: None,
        alora_invocation_tokens: Vec::new(),
    }
}
