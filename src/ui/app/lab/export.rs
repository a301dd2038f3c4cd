//! The lab's Export: a tool's results written as the export bundle to a new folder under the
//! exports folder, with a manifest naming every file by sha256, on a named thread (hashing model
//! files takes a moment).

use std::path::PathBuf;
use std::sync::mpsc;

use super::super::App;
use crate::lab::bundle::Results;
use crate::protocol::LaneSpec;
use crate::ui::state::LabTab;

impl App {
    /// Writes a tool's results to a new folder under the exports folder, on a thread (hashing
    /// model files for the manifest takes a moment).
    pub(super) fn lab_export(&mut self, tab: LabTab) {
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let name = match tab {
            LabTab::Compare => "divergence",
            LabTab::Quality => "quality",
            LabTab::Prompts => "prompts",
        };
        let dir = self.rt.library.exports_dir.join(format!("{name}-{stamp}"));
        let mut files: Vec<(PathBuf, &'static str)> = Vec::new();
        let results: Result<Results, String> = match tab {
            LabTab::Compare => match &self.rt.lab.divergence {
                Some(d) => {
                    if let Some((a, b)) = self.compare_lanes() {
                        for id in [a, b] {
                            if let Some(spec) = self.lane_index(id).and_then(|i| self.lane_spec(i, id)) {
                                files.extend(spec_files(&spec));
                            }
                        }
                    }
                    Ok(Results::Divergence {
                        result: d.clone(),
                        lanes: self.rt.lab.divergence_lanes.clone(),
                    })
                }
                None => Err("compare two lanes first".into()),
            },
            LabTab::Quality => {
                if self.rt.lab.quality.is_empty() {
                    Err("measure quality first".into())
                } else {
                    for r in &self.rt.lab.quality {
                        files.push((PathBuf::from(&r.model_filename), "model"));
                        for a in r.adapters.split(';').filter(|a| !a.is_empty()) {
                            let path = a.rsplit_once(':').map_or(a, |(p, _)| p);
                            files.push((PathBuf::from(path), "adapter"));
                        }
                    }
                    if let Some(r) = &self.state.lab.reference {
                        files.push((r.clone(), "reference"));
                    }
                    Ok(Results::Quality {
                        rows: self.rt.lab.quality.clone(),
                        ladder_title: Some("quality vs reference".into()),
                    })
                }
            }
            LabTab::Prompts => {
                if self.rt.lab.scorecards.is_empty() {
                    Err("run a prompt set first".into())
                } else {
                    if let Some(p) = &self.state.lab.prompt_set {
                        files.push((p.clone(), "prompt set"));
                    }
                    for i in 0..self.state.lanes.len() {
                        if let Some(spec) = self.lane_spec(i, 0) {
                            files.extend(spec_files(&spec));
                        }
                    }
                    Ok(Results::Prompts {
                        cards: self.rt.lab.scorecards.clone(),
                        runs: self.rt.lab.runs.clone(),
                    })
                }
            }
        };
        let results = match results {
            Ok(r) => r,
            Err(e) => {
                self.rt.lab.message = Some(e);
                return;
            }
        };
        let settings = serde_json::json!({
            "n_ctx": self.state.lab.n_ctx, "chunks": self.state.lab.chunks,
            "text": self.state.lab.text, "temperature": self.state.lab.temperature,
            "prompt": self.state.prompt, "chat_mode": self.state.chat_mode,
        });
        let seeds = self.lab_seeds().unwrap_or_default();
        let kind = format!("window {name}");
        let (tx, rx) = mpsc::channel();
        let spawned = std::thread::Builder::new().name("lab-export".into()).spawn(move || {
            let mut manifest = crate::lab::bundle::manifest(&kind, settings, seeds);
            manifest.command.clear();
            for (p, role) in files {
                if let Err(e) = manifest.add_file(&p, role) {
                    let _ = tx.send(Err(format!("{}: {e}", p.display())));
                    return;
                }
            }
            let _ = tx.send(results.write(&dir, &manifest).map(|()| dir).map_err(|e| e.to_string()));
        });
        match spawned {
            Ok(_) => self.rt.lab.export_rx = Some(rx),
            Err(e) => self.rt.lab.message = Some(format!("cannot start the export: {e}")),
        }
    }
}

/// A lane's model and adapter files, for a manifest.
fn spec_files(spec: &LaneSpec) -> Vec<(PathBuf, &'static str)> {
    std::iter::once((spec.model.path.clone(), "model"))
        .chain(spec.adapters.iter().map(|a| (a.path.clone(), "adapter")))
        .collect()
}
