//! `scene pack`: a scene and the files it needs in one zip — `scene.json` at the top with paths
//! relative to it, adapters under `adapters/`, the prompt set under `prompts/`, and the models
//! under `models/` when asked (else the scene still names them by sha256 and catalog id, and
//! they are found in the models folder of the machine that opens it).

use std::io::Write;
use std::path::{Path, PathBuf};

use super::{files, Scene, SceneError};

/// What was packed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackReport {
    /// Files inside the zip (scene.json first).
    pub entries: Vec<String>,
    /// Size of the zip.
    pub zip_bytes: u64,
}

/// A name inside the zip for `file` under `folder`, not yet taken by another file.
fn entry_name(folder: &str, file: &Path, taken: &mut Vec<(PathBuf, String)>) -> String {
    if let Some((_, name)) = taken.iter().find(|(p, _)| p == file) {
        return name.clone();
    }
    let base = file
        .file_name()
        .map_or_else(|| "file".to_string(), |n| n.to_string_lossy().into_owned());
    let mut name = format!("{folder}/{base}");
    let mut k = 2;
    while taken.iter().any(|(_, n)| *n == name) {
        name = format!("{folder}/{k}-{base}");
        k += 1;
    }
    taken.push((file.to_path_buf(), name.clone()));
    name
}

/// Packs the scene at `scene_path` into `out` (written beside and renamed, so a full disk leaves
/// no half zip). Every file is verified first.
pub fn pack(scene_path: &Path, out: &Path, with_models: bool) -> Result<PackReport, SceneError> {
    let scene = Scene::read(scene_path)?;
    let resolved = files::check(&scene, scene_path).map_err(SceneError::Files)?;
    let mut packed = scene.clone();
    let mut taken: Vec<(PathBuf, String)> = Vec::new();
    let mut copies: Vec<(PathBuf, String)> = Vec::new();
    for (lane, found) in packed.lanes.iter_mut().zip(&resolved.lanes) {
        if lane.remote.is_some() {
            continue;
        }
        if let (Some(m), Some(path)) = (&mut lane.model, &found.model) {
            let name = entry_name("models", path, &mut taken);
            if with_models && !copies.iter().any(|(p, _)| p == path) {
                copies.push((path.clone(), name.clone()));
            }
            m.path = PathBuf::from(name);
        }
        for (a, (path, _, _)) in lane.adapters.iter_mut().zip(&found.adapters) {
            let name = entry_name("adapters", path, &mut taken);
            if !copies.iter().any(|(p, _)| p == path) {
                copies.push((path.clone(), name.clone()));
            }
            a.file.path = PathBuf::from(name);
        }
    }
    if let (Some(s), Some(path)) = (&mut packed.prompt_set, &resolved.prompt_set) {
        let name = entry_name("prompts", path, &mut taken);
        copies.push((path.clone(), name.clone()));
        s.path = PathBuf::from(name);
    }
    let io = |source| SceneError::Io {
        path: out.to_path_buf(),
        source,
    };
    let json = serde_json::to_string_pretty(&packed).map_err(|e| io(std::io::Error::other(e)))?;
    let name = out
        .file_name()
        .map_or_else(|| "scene.zip".into(), |n| n.to_string_lossy().into_owned());
    let tmp = out.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
    let result = (|| -> Result<Vec<String>, std::io::Error> {
        let file = std::fs::File::create(&tmp)?;
        let mut zip = zip::ZipWriter::new(file);
        let deflated = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated)
            .large_file(false);
        // GGUF weights do not deflate; storing them keeps packing fast.
        let stored = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Stored)
            .large_file(true);
        zip.start_file("scene.json", deflated).map_err(std::io::Error::other)?;
        zip.write_all(json.as_bytes())?;
        let mut entries = vec!["scene.json".to_string()];
        for (path, name) in &copies {
            let opts = if name.ends_with(".gguf") { stored } else { deflated };
            zip.start_file(name.as_str(), opts).map_err(std::io::Error::other)?;
            std::io::copy(&mut std::fs::File::open(path)?, &mut zip)?;
            entries.push(name.clone());
        }
        zip.finish().map_err(std::io::Error::other)?.sync_all()?;
        std::fs::rename(&tmp, out)?;
        Ok(entries)
    })();
    match result {
        Ok(entries) => Ok(PackReport {
            entries,
            zip_bytes: std::fs::metadata(out).map_or(0, |m| m.len()),
        }),
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(io(e))
        }
    }
}
