//! "Add remote lane…": the dialog's state, asking an endpoint what it serves on a
//! `remote-probe` thread (never on the UI thread), and the lane it adds.

use std::sync::mpsc::{self, Receiver};

use super::App;
use crate::protocol::RemoteSpec;
use crate::remote::{self, EndpointInfo};
use crate::ui::state::{AdapterRow, LaneOutput, MAX_LANES};

/// The dialog while it is open.
#[derive(Debug, Default)]
pub struct RemoteDialog {
    /// Base URL as typed.
    pub url: String,
    /// Environment variable holding the API key (empty: none).
    pub key_env: String,
    /// What the endpoint said, once asked.
    pub info: Option<EndpointInfo>,
    /// The model picked from its list.
    pub model: String,
    /// Adapters it serves for that model, and whether each is picked.
    pub adapters: Vec<(String, bool)>,
    /// Why asking failed.
    pub error: Option<String>,
    /// An answer on its way.
    pub probing: Option<Receiver<Result<EndpointInfo, String>>>,
}

impl RemoteDialog {
    /// The adapters to offer for the picked model.
    pub fn pick_model(&mut self, model: String) {
        self.adapters = self
            .info
            .as_ref()
            .map(|i| i.adapters_for(&model).into_iter().map(|a| (a, false)).collect())
            .unwrap_or_default();
        self.model = model;
    }
}

impl App {
    pub(super) fn open_remote_dialog(&mut self) {
        if self.rt.dialogs.remote.is_none() {
            self.rt.dialogs.remote = Some(RemoteDialog {
                url: "http://127.0.0.1:8080".into(),
                ..RemoteDialog::default()
            });
        }
    }

    pub(super) fn probe_endpoint(&mut self) {
        let Some(d) = &mut self.rt.dialogs.remote else { return };
        let (tx, rx) = mpsc::sync_channel(1);
        let (url, key_env) = (
            d.url.clone(),
            Some(d.key_env.trim().to_string()).filter(|k| !k.is_empty()),
        );
        let spawned = std::thread::Builder::new().name("remote-probe".into()).spawn(move || {
            let _ = tx.send(remote::probe(&url, key_env.as_deref()).map_err(|e| e.to_string()));
        });
        match spawned {
            Ok(_) => {
                d.error = None;
                d.probing = Some(rx);
            }
            Err(e) => d.error = Some(format!("could not ask the endpoint: {e}")),
        }
    }

    /// Takes the endpoint's answer when it came; whether one did.
    pub(super) fn poll_remote_dialog(&mut self) -> bool {
        let Some(d) = &mut self.rt.dialogs.remote else {
            return false;
        };
        let Some(answer) = d.probing.as_ref().and_then(|rx| rx.try_recv().ok()) else {
            return false;
        };
        d.probing = None;
        match answer {
            Ok(info) => {
                let first = info.models.iter().find(|m| m.parent.is_none()).map(|m| m.id.clone());
                d.info = Some(info);
                d.pick_model(first.unwrap_or_default());
            }
            Err(e) => {
                d.info = None;
                d.error = Some(e);
            }
        }
        true
    }

    pub(super) fn add_remote_lane(&mut self) {
        let Some(d) = &self.rt.dialogs.remote else { return };
        let Some(info) = &d.info else { return };
        if d.model.is_empty() || self.state.lanes.len() >= MAX_LANES {
            return;
        }
        let spec = RemoteSpec {
            url: info.url.clone(),
            model: d.model.clone(),
            api_key_env: Some(d.key_env.trim().to_string()).filter(|k| !k.is_empty()),
        };
        let adapters = d
            .adapters
            .iter()
            .filter(|(_, on)| *on)
            .map(|(name, _)| AdapterRow {
                path: name.into(),
                enabled: true,
                scale: 1.0,
                ranks: Vec::new(),
                file_bytes: 0,
            })
            .collect();
        let template = self.state.lanes.last().cloned();
        let id = self.state.add_lane(template.as_ref());
        if let Some(lane) = self.state.lane_mut(id) {
            lane.model = None;
            lane.remote = Some(spec);
            lane.adapters = adapters;
            lane.device = None;
            lane.paced = false;
            lane.output = LaneOutput::default();
        }
        self.rt.lanes.sims.remove(&id);
        self.rt.dialogs.remote = None;
    }
}
