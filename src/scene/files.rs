//! The files a scene names: how each is recorded (path relative to the scene, sha256, size,
//! catalog id), found again (at its path, else by name in the models or adapters folder, else
//! the catalog's file) and verified. A scene loads only when every file is found with its hash.

use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::Scene;
use crate::models::{self, CATALOG};

/// A file a scene depends on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileRef {
    /// Relative to the scene file's folder, or absolute (on a remote lane's adapter: the name the
    /// endpoint serves it under).
    pub path: PathBuf,
    /// sha256 of the contents (none for a remote lane's adapter).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// Size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
    /// The model catalog's id, when it is a catalog model (`models fetch ID` brings it back).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub catalog: Option<String>,
}

impl FileRef {
    /// Records `file` for a scene saved in `scene_dir`: hashed, path made relative.
    pub fn record(file: &Path, scene_dir: &Path) -> std::io::Result<Self> {
        let bytes = std::fs::metadata(file)?.len();
        let sha256 = models::sha256_file(file)?;
        let catalog = CATALOG
            .iter()
            .find(|c| c.gguf_sha256 == sha256)
            .map(|c| c.id.to_string());
        Ok(Self {
            path: relative_to(file, scene_dir),
            sha256: Some(sha256),
            bytes: Some(bytes),
            catalog,
        })
    }

    /// A name only (a remote lane's adapter): nothing to verify.
    pub fn name(name: &Path) -> Self {
        Self {
            path: name.to_path_buf(),
            sha256: None,
            bytes: None,
            catalog: None,
        }
    }
}

/// `file` relative to `dir` (with `..` where needed) when both resolve; else `file` made
/// absolute.
pub fn relative_to(file: &Path, dir: &Path) -> PathBuf {
    let (Ok(file), Ok(dir)) = (std::fs::canonicalize(file), std::fs::canonicalize(dir)) else {
        return std::path::absolute(file).unwrap_or_else(|_| file.to_path_buf());
    };
    let f: Vec<Component> = file.components().collect();
    let d: Vec<Component> = dir.components().collect();
    let common = f.iter().zip(&d).take_while(|(a, b)| a == b).count();
    // Only the root in common: an absolute path says it better than a chain of `..`.
    if common <= 1 {
        return file;
    }
    let mut out = PathBuf::new();
    for _ in common..d.len() {
        out.push("..");
    }
    for c in &f[common..] {
        out.push(c.as_os_str());
    }
    out
}

/// A file that is missing or not what the scene recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FileProblem {
    /// What it is for ("lane 2 adapter", "prompt set").
    pub role: String,
    /// The path the scene gives.
    pub path: PathBuf,
    /// sha256 the scene recorded.
    pub expected: Option<String>,
    /// sha256 of the file found at that path (None: no file there).
    pub actual: Option<String>,
    /// Where it was looked for.
    pub looked_at: Vec<PathBuf>,
    /// How to get it back, when nanolab knows.
    pub hint: Option<String>,
}

/// Every problem, one per line.
pub fn problems_message(problems: &[FileProblem]) -> String {
    let mut out = format!(
        "the scene cannot be opened: {} file{} missing or changed (nothing was loaded)",
        problems.len(),
        if problems.len() == 1 { " is" } else { "s are" }
    );
    for p in problems {
        let expected = p.expected.as_deref().unwrap_or("-");
        match &p.actual {
            Some(actual) => out.push_str(&format!(
                "\n  {}: {} has changed: expected sha256 {expected}, found {actual}",
                p.role,
                p.path.display()
            )),
            None => out.push_str(&format!(
                "\n  {}: {} is missing (expected sha256 {expected}; looked at {})",
                p.role,
                p.path.display(),
                p.looked_at
                    .iter()
                    .map(|l| l.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
        }
        if let Some(h) = &p.hint {
            out.push_str(&format!(" — {h}"));
        }
    }
    out
}

/// A lane with its files found.
#[derive(Debug, Clone, PartialEq)]
pub struct ResolvedLane {
    /// The model file (None on a remote lane).
    pub model: Option<PathBuf>,
    /// Adapter files (names on a remote lane), scales and whether each is enabled.
    pub adapters: Vec<(PathBuf, f32, bool)>,
}

/// A scene whose files were all found with their recorded hashes.
#[derive(Debug, Clone, PartialEq)]
pub struct Resolved {
    /// Per lane, in order.
    pub lanes: Vec<ResolvedLane>,
    /// The prompt-set file, if the scene uses one.
    pub prompt_set: Option<PathBuf>,
}

/// Hashes each path once per check (the same model on several lanes is read once).
#[derive(Default)]
struct Hashes(HashMap<PathBuf, Option<String>>);

impl Hashes {
    fn of(&mut self, p: &Path) -> Option<String> {
        self.0
            .entry(p.to_path_buf())
            .or_insert_with(|| p.is_file().then(|| models::sha256_file(p).ok()).flatten())
            .clone()
    }
}

/// Where `r` may be: its own path (against the scene's folder), then the same file name in the
/// models or adapters folder, then the catalog's file name in the models folder.
fn candidates(r: &FileRef, scene_dir: &Path, fallback_dir: &Path) -> Vec<PathBuf> {
    let mut out = vec![if r.path.is_absolute() {
        r.path.clone()
    } else {
        scene_dir.join(&r.path)
    }];
    if let Some(name) = r.path.file_name() {
        out.push(fallback_dir.join(name));
    }
    if let Some(c) = r.catalog.as_deref().and_then(|id| CATALOG.iter().find(|c| c.id == id)) {
        out.push(models::models_dir().join(c.file_name));
    }
    out.dedup();
    out
}

fn find(
    r: &FileRef,
    role: &str,
    scene_dir: &Path,
    fallback_dir: &Path,
    hashes: &mut Hashes,
) -> Result<PathBuf, Box<FileProblem>> {
    let looked_at = candidates(r, scene_dir, fallback_dir);
    let Some(expected) = r.sha256.clone() else {
        // No hash recorded (a hand-written scene): the first file that exists.
        return looked_at.iter().find(|p| p.is_file()).cloned().ok_or_else(|| {
            Box::new(FileProblem {
                role: role.to_string(),
                path: r.path.clone(),
                expected: None,
                actual: None,
                looked_at: looked_at.clone(),
                hint: None,
            })
        });
    };
    let mut first_found = None;
    for p in &looked_at {
        match hashes.of(p) {
            Some(h) if h.eq_ignore_ascii_case(&expected) => return Ok(p.clone()),
            Some(h) => {
                first_found.get_or_insert(h);
            }
            None => {}
        }
    }
    let hint = r
        .catalog
        .as_deref()
        .map(|id| format!("`nanolab models fetch {id}` brings it back"));
    Err(Box::new(FileProblem {
        role: role.to_string(),
        path: r.path.clone(),
        expected: Some(expected),
        actual: first_found,
        looked_at,
        hint,
    }))
}

/// Finds and verifies every file of `scene` (saved at `scene_path`): all of them, or the list of
/// every one that is missing or changed.
pub fn check(scene: &Scene, scene_path: &Path) -> Result<Resolved, Vec<FileProblem>> {
    let scene_dir = scene_path.parent().unwrap_or(Path::new("."));
    let (models_dir, adapters_dir) = (models::models_dir(), crate::adapters::registry::adapters_dir());
    let mut hashes = Hashes::default();
    let mut problems = Vec::new();
    let mut lanes = Vec::new();
    for (i, lane) in scene.lanes.iter().enumerate() {
        let mut model = None;
        if let (None, Some(m)) = (&lane.remote, &lane.model) {
            match find(m, &format!("lane {} model", i + 1), scene_dir, &models_dir, &mut hashes) {
                Ok(p) => model = Some(p),
                Err(e) => problems.push(*e),
            }
        }
        let mut adapters = Vec::new();
        for (k, a) in lane.adapters.iter().enumerate() {
            if lane.remote.is_some() {
                adapters.push((a.file.path.clone(), a.scale, a.enabled));
                continue;
            }
            let role = format!("lane {} adapter {}", i + 1, k + 1);
            match find(&a.file, &role, scene_dir, &adapters_dir, &mut hashes) {
                Ok(p) => adapters.push((p, a.scale, a.enabled)),
                Err(e) => problems.push(*e),
            }
        }
        lanes.push(ResolvedLane { model, adapters });
    }
    let mut prompt_set = None;
    if let Some(s) = &scene.prompt_set {
        match find(s, "prompt set", scene_dir, scene_dir, &mut hashes) {
            Ok(p) => prompt_set = Some(p),
            Err(e) => problems.push(*e),
        }
    }
    if problems.is_empty() {
        Ok(Resolved { lanes, prompt_set })
    } else {
        Err(problems)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_climb_with_dotdot_and_resolve_back() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("a/scenes")).unwrap();
        std::fs::create_dir_all(root.path().join("models")).unwrap();
        let file = root.path().join("models/m.gguf");
        std::fs::write(&file, b"x").unwrap();
        let dir = root.path().join("a/scenes");
        let rel = relative_to(&file, &dir);
        assert_eq!(rel, PathBuf::from("../../models/m.gguf"));
        assert_eq!(std::fs::read(dir.join(rel)).unwrap(), b"x");
    }
}
