//! The library side of the window: model and adapter files checked and put on lanes (chosen,
//! dropped, or a PEFT folder imported), with what each file holds remembered for the panels.

use std::path::PathBuf;

use super::{App, JobKind};
use crate::gguf::{FileKind, Summary};
use crate::protocol::{LaneId, ModelSpec, Request};
use crate::ui::state::{AdapterRow, LaneOutput};

impl App {
    pub(super) fn inspect(&mut self, path: &std::path::Path) -> Result<Summary, String> {
        let r = crate::gguf::read(path)
            .map(|f| Summary::of(&f))
            .map_err(|e| e.to_string());
        self.rt.library.inspected.insert(path.to_path_buf(), r.clone());
        r
    }

    pub(super) fn set_model(&mut self, lane: Option<LaneId>, path: PathBuf) {
        if let Err(e) = crate::gguf::validate_model_file(&path) {
            self.lane_error(lane, e);
            return;
        }
        let _ = self.inspect(&path);
        self.state.touch_recent(&path);
        let lane_id = match lane.or_else(|| self.state.lanes.first().map(|l| l.id)) {
            Some(id) => id,
            None => self.state.add_lane(None),
        };
        let same = self.state.same_settings;
        let targets: Vec<LaneId> = if same && lane.is_none() {
            self.state.lanes.iter().map(|l| l.id).collect()
        } else {
            vec![lane_id]
        };
        for id in targets {
            let Some(l) = self.state.lane_mut(id) else { continue };
            if l.model.as_ref() != Some(&path) {
                l.model = Some(path.clone());
                l.output = LaneOutput::default();
            }
            let spec = ModelSpec {
                path: path.clone(),
                gpu_layers: l.gpu_layers,
            };
            let job = self.rt.engine.client.next_job();
            match self.rt.engine.client.send(&Request::LoadModel { job, model: spec }) {
                Ok(()) => {
                    self.rt.engine.jobs.insert(job, JobKind::Load { lane: id });
                    self.rt.engine.load_progress.insert(id, 0.0);
                }
                Err(e) => self.lane_error(Some(id), e.to_string()),
            }
        }
    }

    pub(super) fn add_adapter(&mut self, lane: LaneId, path: PathBuf) {
        let Some(model) = self
            .state
            .lanes
            .iter()
            .find(|l| l.id == lane)
            .and_then(|l| l.model.clone())
        else {
            self.lane_error(
                Some(lane),
                "choose a base model for this lane before adding adapters".into(),
            );
            return;
        };
        let checked = crate::gguf::read(&model)
            .map_err(|e| e.to_string())
            .and_then(|m| crate::adapters::validate_adapter_file(&path, &m));
        match checked {
            Ok(file) => {
                let summary = Summary::of(&file);
                let Some(l) = self.state.lane_mut(lane) else { return };
                if l.adapters.iter().any(|a| a.path == path) {
                    l.output.error = Some(format!("{} is already on this lane", path.display()));
                    return;
                }
                l.adapters.push(AdapterRow {
                    path,
                    enabled: true,
                    scale: 1.0,
                    ranks: summary.adapter.map(|a| a.ranks).unwrap_or_default(),
                    file_bytes: summary.file_bytes,
                });
            }
            Err(e) => self.lane_error(Some(lane), e),
        }
    }

    /// Converts a dropped PEFT folder for the lane's model into `adapters/` and adds it.
    pub(super) fn import_peft(&mut self, lane: Option<LaneId>, dir: PathBuf) {
        let Some(id) = lane.or_else(|| self.state.lanes.first().map(|l| l.id)) else {
            self.rt.banner = Some("open a model first, then drop PEFT adapter folders on a lane".into());
            return;
        };
        let Some(model) = self
            .state
            .lanes
            .iter()
            .find(|l| l.id == id)
            .and_then(|l| l.model.clone())
        else {
            self.lane_error(
                Some(id),
                "choose a base model for this lane before importing adapters".into(),
            );
            return;
        };
        let name = dir
            .file_name()
            .map_or_else(|| "adapter".to_string(), |n| n.to_string_lossy().into_owned());
        let out = self.rt.library.registry.adapters_dir().join(format!("{name}.gguf"));
        let result = crate::gguf::read(&model).map_err(|e| e.to_string()).and_then(|base| {
            crate::adapters::peft::import(&dir, &base, &out, crate::adapters::peft::OutType::F16)
                .map_err(|e| e.to_string())
        });
        match result {
            Ok(report) => {
                if !report.warnings.is_empty() {
                    self.lane_error(
                        Some(id),
                        format!("imported with warnings: {}", report.warnings.join("; ")),
                    );
                }
                self.rt.library.adapter_entries.clear();
                self.add_adapter(id, report.out);
            }
            Err(e) => self.lane_error(Some(id), format!("PEFT import failed: {e}")),
        }
    }

    pub(super) fn dropped(&mut self, lane: Option<LaneId>, path: PathBuf) {
        if path.is_dir() {
            self.import_peft(lane, path);
            return;
        }
        let target = lane.or_else(|| self.state.lanes.first().map(|l| l.id));
        let ext = path
            .extension()
            .map(|e| e.to_string_lossy().to_ascii_lowercase())
            .unwrap_or_default();
        if ext == "jsonl" {
            self.apply_lab(super::lab::LabCommand::SetPromptSet(path));
            return;
        }
        if ext == "json" {
            self.open_scene(path);
            return;
        }
        if ext == "txt" {
            self.apply_lab(super::lab::LabCommand::SetText(Some(path)));
            self.state.lab.tab = crate::ui::state::LabTab::Quality;
            self.state.lab.show = true;
            return;
        }
        match self.inspect(&path) {
            Ok(s) if s.kind == FileKind::Adapter => match target {
                Some(id) => self.add_adapter(id, path),
                None => self.rt.banner = Some("open a model first, then drop adapters on a lane".into()),
            },
            Ok(s) if s.kind == FileKind::Model => self.set_model(lane, path),
            Ok(_) => self.lane_error(
                target,
                format!("{}: control vectors are not supported yet", path.display()),
            ),
            Err(e) => self.lane_error(target, e),
        }
    }
}
