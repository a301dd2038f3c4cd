//! Adapters out from the window: "Compress…" on an adapter row writes the adapter at halved
//! ranks (down to 1) into the adapters folder on an `adapter-compress` thread, then measures each
//! against the original in the lab's quality table (KLD, same top-1), with its progress; "Export
//! as PEFT/MLX-LM" writes the folder into the exports folder.

use std::path::PathBuf;
use std::sync::mpsc::{self, Receiver};

use super::{EVAL_REF, EVAL_TEST};
use crate::adapters::compress::{halvings, write_levels, Written};
use crate::adapters::peft::OutType;
use crate::lab::quality::QualityItem;
use crate::protocol::{AdapterSpec, LaneId};
use crate::ui::app::App;
use crate::ui::state::LabTab;

/// A compression being written.
pub struct CompressTask {
    /// The lane's model.
    pub model: PathBuf,
    /// The adapter compressed.
    pub original: PathBuf,
    /// The files, or why not.
    pub rx: Receiver<Result<Vec<Written>, String>>,
}

impl App {
    fn adapter_of(&self, lane: LaneId, index: usize) -> Option<(PathBuf, PathBuf)> {
        let l = self.state.lanes.iter().find(|l| l.id == lane)?;
        Some((l.model.clone()?, l.adapters.get(index)?.path.clone()))
    }

    pub(super) fn compress_adapter(&mut self, lane: LaneId, index: usize) {
        if self.rt.lab.compress.is_some() || self.rt.lab.quality_job.is_some() {
            self.rt.lab.message = Some("the lab is measuring already; wait for it or stop it".into());
            return;
        }
        let Some((model, original)) = self.adapter_of(lane, index) else {
            self.rt.lab.message = Some("the lane needs a model and the adapter".into());
            return;
        };
        let dir = self.rt.library.registry.adapters_dir().to_path_buf();
        let (tx, rx) = mpsc::channel();
        let (m, o) = (model.clone(), original.clone());
        let spawned = std::thread::Builder::new()
            .name("adapter-compress".into())
            .spawn(move || {
                let result = crate::gguf::validate_model_file(&m).and_then(|base| {
                    let rank = crate::adapters::lora_file::LoraAdapter::read(&o)
                        .map_err(|e| e.to_string())?
                        .max_rank();
                    let ranks = halvings(rank);
                    if ranks.is_empty() {
                        return Err(format!("{}: rank {rank} cannot be lowered", o.display()));
                    }
                    let stem = crate::scene::file_stem(&o);
                    let path_for = |r: usize| dir.join(format!("{stem}.r{r}.f16.gguf"));
                    write_levels(&o, &ranks, OutType::F16, &base, &path_for)
                });
                let _ = tx.send(result);
            });
        match spawned {
            Ok(_) => {
                self.rt.lab.compress = Some(CompressTask { model, original, rx });
                self.state.lab.show = true;
                self.state.lab.tab = LabTab::Quality;
            }
            Err(e) => self.rt.lab.message = Some(format!("could not start compressing: {e}")),
        }
    }

    /// Once the files are written, measures each against the original.
    pub(super) fn poll_compress(&mut self) {
        let Some(task) = &self.rt.lab.compress else { return };
        let result = match task.rx.try_recv() {
            Ok(r) => r,
            Err(mpsc::TryRecvError::Empty) => return,
            Err(mpsc::TryRecvError::Disconnected) => Err("the compression thread stopped".into()),
        };
        let Some(task) = self.rt.lab.compress.take() else {
            return;
        };
        match result {
            Err(e) => self.rt.lab.message = Some(format!("compression failed: {e}")),
            Ok(written) => {
                let with = |id: LaneId, adapter: &PathBuf| {
                    let mut spec = self.eval_lane_spec(id, &task.model);
                    spec.adapters = vec![AdapterSpec {
                        path: adapter.clone(),
                        scale: 1.0,
                    }];
                    spec
                };
                let items = written
                    .iter()
                    .map(|w| QualityItem::new(with(EVAL_TEST, &w.path)))
                    .collect();
                let reference = with(EVAL_REF, &task.original);
                let summary: Vec<String> = written
                    .iter()
                    .map(|w| {
                        format!(
                            "rank {} ({}, {:.1} % of the delta kept)",
                            w.stats.rank,
                            crate::metrics::mib(w.file_bytes),
                            w.stats.energy_kept * 100.0
                        )
                    })
                    .collect();
                self.rt.library.adapter_entries.clear();
                self.lab_measure(items, reference);
                self.rt.lab.message = Some(format!(
                    "wrote {}; measuring each against {}",
                    summary.join(", "),
                    crate::scene::file_stem(&task.original)
                ));
            }
        }
    }

    pub(super) fn export_adapter(&mut self, lane: LaneId, index: usize, mlx: bool) {
        let Some((model, adapter)) = self.adapter_of(lane, index) else {
            self.rt.lab.message = Some("the lane needs a model and the adapter".into());
            return;
        };
        let kind = if mlx { "mlx" } else { "peft" };
        let dir = self
            .rt
            .library
            .exports_dir
            .join(format!("{}-{kind}", crate::scene::file_stem(&adapter)));
        let result = crate::gguf::validate_model_file(&model).and_then(|base| {
            let a = crate::adapters::lora_file::LoraAdapter::read(&adapter).map_err(|e| e.to_string())?;
            let r = if mlx {
                crate::adapters::export::to_mlx(&a, Some(&base), &dir)
            } else {
                crate::adapters::export::to_peft(&a, Some(&base), &dir)
            };
            r.map_err(|e| e.to_string())
        });
        self.rt.lab.message = Some(match result {
            Ok(r) => format!("exported {} to {}", crate::scene::file_stem(&adapter), r.dir.display()),
            Err(e) => format!("export failed: {e}"),
        });
        self.state.lab.show = true;
    }
}
