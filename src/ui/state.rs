//! What the window persists: lanes, prompt, settings, recent files and completed outputs.
//! Written atomically on every change, so a killed window loses nothing.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::protocol::{LaneId, RemoteSpec, RunStats, Sampling, TopToken};

/// Version of the state file layout.
pub const STATE_VERSION: u32 = 1;

/// Most lanes side by side: beyond four, each column is too narrow to read.
pub const MAX_LANES: usize = 4;

/// One adapter row on a lane (on a remote lane, an adapter the endpoint serves, by name).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AdapterRow {
    /// File.
    pub path: PathBuf,
    /// Applied when running.
    pub enabled: bool,
    /// Scale, 0-2.
    pub scale: f32,
    /// LoRA rank(s), from the header.
    pub ranks: Vec<u64>,
    /// File size.
    pub file_bytes: u64,
}

/// One generated token as shown in the token view.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenRecord {
    /// Token text.
    pub piece: String,
    /// Probability of this token (NaN when a remote endpoint sent none; JSON writes that as
    /// `null`, read back as NaN).
    #[serde(deserialize_with = "nan_if_null")]
    pub prob: f32,
    /// The most likely tokens at this step.
    pub top: Vec<TopToken>,
    /// Time since the previous token, ms.
    pub latency_ms: f64,
}

fn nan_if_null<'de, D: serde::Deserializer<'de>>(d: D) -> Result<f32, D::Error> {
    Ok(Option::<f32>::deserialize(d)?.unwrap_or(f32::NAN))
}

/// A lane's latest output.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LaneOutput {
    /// Released text.
    pub text: String,
    /// Generated tokens.
    pub tokens: Vec<TokenRecord>,
    /// Stats of the finished run.
    pub stats: Option<RunStats>,
    /// Last error, shown as a banner.
    pub error: Option<String>,
}

/// A lane: model, adapter stack, sampling, and its output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LaneState {
    /// Stable id.
    pub id: LaneId,
    /// The stack's name from a scene (empty: model and adapter file stems).
    pub label: String,
    /// Base model.
    pub model: Option<PathBuf>,
    /// The endpoint the lane runs on instead of the local engine (the key's variable name is
    /// kept, never the key).
    pub remote: Option<RemoteSpec>,
    /// GPU layers (None = default).
    pub gpu_layers: Option<u32>,
    /// Context length.
    pub n_ctx: u32,
    /// Adapter stack.
    pub adapters: Vec<AdapterRow>,
    /// Sampling settings.
    pub sampling: Sampling,
    /// Show tokens with probabilities instead of text with diff.
    pub token_view: bool,
    /// Simulated device for this lane (profile id), if any.
    pub device: Option<String>,
    /// Stream tokens at the simulated device's speed.
    pub paced: bool,
    /// Latest output.
    pub output: LaneOutput,
}

impl Default for LaneState {
    fn default() -> Self {
        Self {
            id: 0,
            label: String::new(),
            model: None,
            remote: None,
            gpu_layers: None,
            n_ctx: 2048,
            adapters: Vec::new(),
            sampling: Sampling::default(),
            token_view: false,
            device: None,
            paced: false,
            output: LaneOutput::default(),
        }
    }
}

/// Everything the window persists.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct State {
    /// File layout version.
    pub version: u32,
    /// Lanes, left to right.
    pub lanes: Vec<LaneState>,
    /// Prompt text.
    pub prompt: String,
    /// System prompt (chat mode).
    pub system: String,
    /// Chat (template) or raw mode.
    pub chat_mode: bool,
    /// Use the first lane's sampling settings everywhere.
    pub same_settings: bool,
    /// "Run all" runs the lanes one after another (each lane's timings undisturbed) instead of
    /// all at once.
    pub one_lane_at_a_time: bool,
    /// Lane others are compared with.
    pub reference_lane: Option<LaneId>,
    /// Recently used model files, newest first.
    pub recent_files: Vec<PathBuf>,
    /// Dark theme.
    pub dark: bool,
    /// Graphs panel open.
    pub show_graphs: bool,
    /// Model library panel open.
    pub show_library: bool,
    /// Next lane id.
    pub next_lane_id: LaneId,
    /// The lab panel (divergence, quant ladder, prompt sets).
    pub lab: LabSettings,
    /// The scene opened or saved last, with its prompts and the arena's votes.
    pub scene: Option<SceneSession>,
}

/// A scene in the window: where it lives, its prompts, and the blind A/B arena over its lanes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SceneSession {
    /// The scene file (None until saved).
    pub path: Option<PathBuf>,
    /// Title.
    pub title: String,
    /// The prompts the arena steps through (the scene's, or the prompt bar's).
    pub prompts: Vec<crate::eval::prompts::PromptCase>,
    /// The prompt-set file they came from, kept for saving.
    pub prompt_set: Option<crate::scene::FileRef>,
    /// The arena.
    pub arena: ArenaState,
}

/// The arena: on or off, where it is, and every vote (saved with the state on every vote, so a
/// killed window keeps them).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ArenaState {
    /// Arena mode shown instead of the lanes.
    pub on: bool,
    /// Presenter view: the whole window, large text, only the votes.
    pub presenter: bool,
    /// Rounds started (prompt `round % prompts` is shown, lanes in `shuffle(seed, round)` order).
    pub round: u64,
    /// The current round has been voted on: names are shown.
    pub revealed: bool,
    /// The current round's generations were started.
    pub started: bool,
    /// Seed and votes.
    pub record: crate::eval::arena::ArenaRecord,
}

/// Which lab tool is shown.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum LabTab {
    /// Token-level divergence between two lanes.
    #[default]
    Compare,
    /// Quantization ladder and quality table.
    Quality,
    /// Prompt-set scorecards.
    Prompts,
}

/// Lab settings the window keeps between sessions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LabSettings {
    /// Lab panel open.
    pub show: bool,
    /// Tool shown.
    pub tab: LabTab,
    /// Lane that generates in the comparison (None: the reference lane or the first).
    pub compare_a: Option<LaneId>,
    /// Lane compared with it (None: the next lane).
    pub compare_b: Option<LaneId>,
    /// Reference model for the ladder and quality table.
    pub reference: Option<PathBuf>,
    /// Levels to make.
    pub levels: Vec<String>,
    /// Allow quantizing from a quantized reference.
    pub allow_requantize: bool,
    /// Evaluation text (None: the shipped one).
    pub text: Option<PathBuf>,
    /// Tokens per chunk.
    pub n_ctx: u32,
    /// Chunk limit (None: the whole text).
    pub chunks: Option<u32>,
    /// Prompt set file.
    pub prompt_set: Option<PathBuf>,
    /// Seeds, comma-separated.
    pub seeds: String,
    /// Temperature for prompt-set runs.
    pub temperature: f32,
    /// Prompt-set runs at once (the engine steps them together; remote ones go out together);
    /// 0: chosen from free memory and the lanes' contexts (`lab::prompts::auto_parallel`).
    pub parallel: usize,
    /// More endpoints serving remote lanes' models under the same names (fan-out), separated by
    /// spaces or commas.
    pub endpoints: String,
}

impl Default for LabSettings {
    fn default() -> Self {
        Self {
            show: false,
            tab: LabTab::Compare,
            compare_a: None,
            compare_b: None,
            reference: None,
            levels: vec!["Q8_0".into(), "Q4_K_M".into(), "Q4_0".into()],
            allow_requantize: false,
            text: None,
            n_ctx: 512,
            chunks: None,
            prompt_set: None,
            seeds: "1,2,3".into(),
            temperature: 0.7,
            parallel: 0,
            endpoints: String::new(),
        }
    }
}

impl Default for State {
    fn default() -> Self {
        Self {
            version: STATE_VERSION,
            lanes: Vec::new(),
            prompt: "Explain in two sentences why the sky is blue.".into(),
            system: String::new(),
            chat_mode: true,
            same_settings: true,
            one_lane_at_a_time: false,
            reference_lane: None,
            recent_files: Vec::new(),
            dark: true,
            show_graphs: true,
            show_library: true,
            next_lane_id: 1,
            lab: LabSettings::default(),
            scene: None,
        }
    }
}

impl State {
    /// A lane by id.
    pub fn lane_mut(&mut self, id: LaneId) -> Option<&mut LaneState> {
        self.lanes.iter_mut().find(|l| l.id == id)
    }

    /// Adds a lane (copying `template`'s settings if given) and returns its id.
    pub fn add_lane(&mut self, template: Option<&LaneState>) -> LaneId {
        let id = self.next_lane_id;
        self.next_lane_id += 1;
        let mut lane = template.cloned().unwrap_or_default();
        lane.id = id;
        lane.output = LaneOutput::default();
        self.lanes.push(lane);
        id
    }

    /// Whether a lane can run: it has a model or an endpoint.
    pub fn runnable(lane: &LaneState) -> bool {
        lane.model.is_some() || lane.remote.is_some()
    }

    /// Records a model file as recently used.
    pub fn touch_recent(&mut self, path: &Path) {
        self.recent_files.retain(|p| p != path);
        self.recent_files.insert(0, path.to_path_buf());
        self.recent_files.truncate(10);
    }
}

/// Where the state file lives: `$NANOLAB_STATE`, else the user's config folder.
pub fn state_path() -> PathBuf {
    crate::paths::config_path("NANOLAB_STATE", "state.json")
}

/// Why the saved state could not be used.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// Unreadable or from a newer version; it was moved aside.
    #[error("saved state {path} could not be used ({reason}); it was moved to {moved_to} and a fresh state started")]
    MovedAside {
        /// The file.
        path: String,
        /// Why.
        reason: String,
        /// Where it went.
        moved_to: String,
    },
    /// Unusable and it could not be moved aside either: nothing may be saved over it.
    #[error("saved state {path} could not be used ({reason}) nor moved aside ({error}); a fresh state started and will not be saved over it")]
    KeptInPlace {
        /// The file.
        path: String,
        /// Why it could not be used.
        reason: String,
        /// Why it could not be moved.
        error: String,
    },
}

impl StateError {
    /// True when the file is still where it was, so saving would overwrite it.
    pub fn blocks_saving(&self) -> bool {
        matches!(self, Self::KeptInPlace { .. })
    }
}

/// Loads the state; a missing file gives the default, a bad one (unreadable, not UTF-8, not
/// JSON, from a newer version, a folder) is moved aside with a message.
pub fn load(path: &Path) -> (State, Option<StateError>) {
    let reason = match std::fs::read_to_string(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return (State::default(), None),
        Err(e) => format!("cannot read it: {e}"),
        Ok(text) => match serde_json::from_str::<State>(&text) {
            Ok(s) if s.version <= STATE_VERSION => return (s, None),
            Ok(s) => format!("it is version {}, newer than this nanolab ({STATE_VERSION})", s.version),
            Err(e) => e.to_string(),
        },
    };
    let moved = path.with_extension(format!("unreadable-{}.json", std::process::id()));
    let problem = match std::fs::rename(path, &moved) {
        Ok(()) => StateError::MovedAside {
            path: path.display().to_string(),
            reason,
            moved_to: moved.display().to_string(),
        },
        Err(e) => StateError::KeptInPlace {
            path: path.display().to_string(),
            reason,
            error: e.to_string(),
        },
    };
    (State::default(), Some(problem))
}

/// Writes the state atomically (temporary file, then rename).
pub fn save(path: &Path, json: &str) -> std::io::Result<()> {
    crate::paths::write_atomic(path, json.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_without_a_probability_survives_the_state_file() {
        // A remote lane on an endpoint that sends no logprobs records NaN; serde_json writes null.
        let mut s = State::default();
        let id = s.add_lane(None);
        if let Some(l) = s.lane_mut(id) {
            l.output.tokens.push(TokenRecord {
                piece: "Paris".into(),
                prob: f32::NAN,
                top: Vec::new(),
                latency_ms: 12.0,
            });
        }
        let json = serde_json::to_string(&s).unwrap();
        assert!(json.contains("\"prob\":null"), "{json}");
        let back: State = serde_json::from_str(&json).expect("the state file reads back");
        assert!(back.lanes[0].output.tokens[0].prob.is_nan());
        assert_eq!(back.lanes[0].output.tokens[0].piece, "Paris");
    }
}
