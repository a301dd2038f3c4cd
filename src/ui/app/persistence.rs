//! The window's state file: written whenever the state changes (at most once a second while
//! tokens stream), atomically, so a kill at any moment leaves the last whole state.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::App;

/// Where the state is saved and what was written last.
pub struct Persistence {
    /// Where state is saved; None disables saving (tests that want it off).
    pub state_path: Option<PathBuf>,
    /// JSON last written to the state file.
    pub last_saved: String,
    /// When it was written.
    pub last_save_at: Option<Instant>,
}

impl Persistence {
    pub(super) fn new(state_path: Option<PathBuf>) -> Self {
        Self {
            state_path,
            last_saved: String::new(),
            last_save_at: None,
        }
    }
}

impl App {
    /// Saves the state if it changed since the last save.
    pub fn save_if_changed(&mut self) {
        self.save_state(false);
    }

    /// Saves whatever changed since the last save, however recent that was (the window is
    /// closing).
    pub fn save_now(&mut self) {
        self.save_state(true);
    }

    fn save_state(&mut self, now: bool) {
        let Some(path) = self.rt.saved.state_path.clone() else {
            return;
        };
        // While tokens stream, save at most once a second; idle changes (a lane being set up
        // counts as idle) are saved at once.
        if !now
            && self.run_waits()
            && self
                .rt
                .saved
                .last_save_at
                .is_some_and(|t| t.elapsed() < Duration::from_secs(1))
        {
            return;
        }
        let Ok(json) = serde_json::to_string_pretty(&self.state) else {
            return;
        };
        if json == self.rt.saved.last_saved {
            return;
        }
        match crate::ui::state::save(&path, &json) {
            Ok(()) => {
                self.rt.saved.last_saved = json;
                self.rt.saved.last_save_at = Some(Instant::now());
            }
            Err(e) => self.rt.banner = Some(format!("could not save the window state to {}: {e}", path.display())),
        }
    }
}
