//! Scenes: one JSON file that brings a whole comparison back — every lane's model and adapters
//! (each pinned by sha256), sampling, context, simulated device and paced mode, local or remote
//! backend; the prompts (inline or a prompt-set file); which panels are open; and the arena's
//! votes. Paths are stored relative to the scene file, so a folder (or a `scene pack` zip) moves
//! as one.

pub mod files;
pub mod pack;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::eval::arena::ArenaRecord;
use crate::eval::prompts::{PromptCase, PromptSet};
use crate::protocol::{RemoteSpec, Sampling};

pub use files::{check, FileProblem, FileRef, Resolved, ResolvedLane};

/// Version of the scene layout this build writes and reads.
pub const SCENE_VERSION: u32 = 1;

/// A scene file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum SceneError {
    /// Unreadable or unwritable.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Not a scene.
    #[error("{path}: not a nanolab scene: {message}")]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// Files it names are missing or changed; nothing was loaded.
    #[error("{}", files::problems_message(.0))]
    Files(Vec<FileProblem>),
}

/// Open panels.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Panels {
    /// Graphs.
    pub graphs: bool,
    /// Model library.
    pub library: bool,
    /// Lab.
    pub lab: bool,
}

/// An adapter of a lane: the file (for a remote lane, the name the endpoint serves it under, with
/// no hash) and its scale.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SceneAdapter {
    /// The file.
    #[serde(flatten)]
    pub file: FileRef,
    /// Scale.
    pub scale: f32,
    /// Applied when running.
    #[serde(default = "yes")]
    pub enabled: bool,
}

fn yes() -> bool {
    true
}

/// One lane of a scene.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SceneLane {
    /// Name shown for the lane's stack (in the arena, after the vote).
    #[serde(default)]
    pub label: String,
    /// Base model (absent on a remote lane).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<FileRef>,
    /// The endpoint it runs on instead of the local engine.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote: Option<RemoteSpec>,
    /// Adapter stack in order.
    #[serde(default)]
    pub adapters: Vec<SceneAdapter>,
    /// Sampling.
    #[serde(default)]
    pub sampling: Sampling,
    /// Context length.
    #[serde(default = "default_ctx")]
    pub n_ctx: u32,
    /// GPU layers (None: the default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu_layers: Option<u32>,
    /// Simulated device profile id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
    /// Tokens streamed at the simulated device's speed.
    #[serde(default)]
    pub paced: bool,
}

fn default_ctx() -> u32 {
    2048
}

/// A scene file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Scene {
    /// Layout version ([`SCENE_VERSION`]).
    pub nanolab_scene: u32,
    /// Title.
    #[serde(default)]
    pub title: String,
    /// Lanes, left to right.
    pub lanes: Vec<SceneLane>,
    /// Prompts, inline (the `eval prompts` JSONL fields).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub prompts: Vec<PromptCase>,
    /// Or a prompt-set file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_set: Option<FileRef>,
    /// Chat template (or raw text) for the prompt bar.
    #[serde(default = "yes")]
    pub chat_mode: bool,
    /// System prompt of the prompt bar.
    #[serde(default)]
    pub system: String,
    /// Open panels.
    #[serde(default)]
    pub panels: Panels,
    /// Blind A/B votes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arena: Option<ArenaRecord>,
}

impl Scene {
    /// Reads and parses a scene file (files it names are not checked here: see [`files::check`]).
    pub fn read(path: &Path) -> Result<Self, SceneError> {
        let text = std::fs::read_to_string(path).map_err(|source| SceneError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text).map_err(|message| SceneError::Format {
            path: path.to_path_buf(),
            message,
        })
    }

    /// Parses scene JSON.
    pub fn parse(text: &str) -> Result<Self, String> {
        let value: serde_json::Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
        match value.get("nanolab_scene").and_then(serde_json::Value::as_u64) {
            None => return Err("no \"nanolab_scene\" version field".into()),
            Some(v) if v > u64::from(SCENE_VERSION) => {
                return Err(format!(
                    "scene version {v} is newer than this nanolab reads ({SCENE_VERSION})"
                ))
            }
            Some(_) => {}
        }
        let scene: Self = serde_json::from_value(value).map_err(|e| e.to_string())?;
        if scene.lanes.is_empty() {
            return Err("a scene needs at least one lane".into());
        }
        for (i, l) in scene.lanes.iter().enumerate() {
            if l.model.is_none() && l.remote.is_none() {
                return Err(format!("lane {} has neither a model nor an endpoint", i + 1));
            }
        }
        Ok(scene)
    }

    /// Writes the scene atomically (a killed process leaves the old file or the new one).
    pub fn write(&self, path: &Path) -> Result<(), SceneError> {
        let io = |source| SceneError::Io {
            path: path.to_path_buf(),
            source,
        };
        let mut text = serde_json::to_string_pretty(self).map_err(|e| io(std::io::Error::other(e)))?;
        text.push('\n');
        crate::paths::write_atomic(path, text.as_bytes()).map_err(io)
    }

    /// The prompts: the inline ones, or those of the prompt-set file at `set_path`.
    pub fn prompt_set(&self, set_path: Option<&Path>) -> Result<PromptSet, String> {
        match set_path {
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()))?;
                PromptSet::parse(&text).map_err(|e| format!("{}: {e}", p.display()))
            }
            None if self.prompts.is_empty() => Err("the scene has no prompts".into()),
            None => {
                let lines: Vec<String> = self
                    .prompts
                    .iter()
                    .map(serde_json::to_string)
                    .collect::<Result<_, _>>()
                    .map_err(|e| e.to_string())?;
                PromptSet::parse(&lines.join("\n"))
            }
        }
    }

    /// The label of lane `i`: its own, else model stem + adapter stems (with scales ≠ 1).
    pub fn lane_label(&self, i: usize) -> String {
        let Some(l) = self.lanes.get(i) else {
            return String::new();
        };
        if !l.label.is_empty() {
            return l.label.clone();
        }
        let base = match (&l.remote, &l.model) {
            (Some(r), _) => r.label(),
            (None, Some(m)) => file_stem(&m.path),
            (None, None) => String::new(),
        };
        let adapters: Vec<(&Path, f32)> = l
            .adapters
            .iter()
            .filter(|a| a.enabled)
            .map(|a| (a.file.path.as_path(), a.scale))
            .collect();
        stack_label(&base, &adapters)
    }

    /// Labels of every lane, made unique (`#2` on a repeat).
    pub fn lane_labels(&self) -> Vec<String> {
        unique_labels((0..self.lanes.len()).map(|i| self.lane_label(i)))
    }
}

/// `labels` with a repeat made unique by its position (`base#2`).
pub fn unique_labels(labels: impl IntoIterator<Item = String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for (i, mut l) in labels.into_iter().enumerate() {
        if out.contains(&l) {
            l = format!("{l}#{}", i + 1);
        }
        out.push(l);
    }
    out
}

/// A file's stem as text.
pub fn file_stem(p: &Path) -> String {
    p.file_stem()
        .map_or_else(String::new, |s| s.to_string_lossy().into_owned())
}

/// A stack's name: `base+adapter+adapter:0.5` (file stems; a scale shown when it is not 1).
pub fn stack_label(base: &str, adapters: &[(&Path, f32)]) -> String {
    let mut s = base.to_string();
    for (path, scale) in adapters {
        s.push('+');
        s.push_str(&file_stem(path));
        if (scale - 1.0).abs() > f32::EPSILON {
            s.push_str(&format!(":{scale}"));
        }
    }
    s
}

/// The engine's spec for lane `i` of `scene` (found as `resolved`), as engine lane `id`: the
/// enabled adapters in order. Registry static pins are the caller's to add, as every front end
/// does.
pub fn lane_spec(
    scene: &Scene,
    resolved: &Resolved,
    i: usize,
    id: crate::protocol::LaneId,
) -> Option<crate::protocol::LaneSpec> {
    use crate::protocol::{AdapterSpec, LaneSpec};
    let lane = scene.lanes.get(i)?;
    let found = resolved.lanes.get(i)?;
    let adapters = found
        .adapters
        .iter()
        .filter(|(_, _, enabled)| *enabled)
        .map(|(path, scale, _)| AdapterSpec {
            path: path.clone(),
            scale: *scale,
        })
        .collect();
    let spec = match (&lane.remote, &found.model) {
        (Some(r), _) => LaneSpec::on_endpoint(id, r.clone(), adapters),
        (None, Some(m)) => LaneSpec::local(id, m, lane.n_ctx, adapters),
        (None, None) => return None,
    };
    Some(spec.with_gpu_layers(lane.gpu_layers))
}
