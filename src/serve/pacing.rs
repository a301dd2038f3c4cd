//! Device pacing for served requests: one simulated device per profile, shared by every request
//! that names it, so its temperature carries across requests (it heats under load and cools for
//! the real time it sits idle). Each real token advances the device's clock by the time it would
//! take there; in paced mode the token is released when that simulated time has come.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use serde_json::{json, Value};
use tokio::time::Instant;

use crate::sim::live::LaneSim;
use crate::sim::{DeviceProfile, ModelFacts};

use super::openai::ApiError;

/// The device profiles and their running simulations.
pub struct Devices {
    profiles: Vec<DeviceProfile>,
    sims: Mutex<HashMap<String, LaneSim>>,
}

impl Devices {
    /// Loads every profile (shipped and the user's); broken user files are logged and skipped.
    pub fn load() -> Self {
        let (profiles, errors) = crate::sim::profile::all();
        for e in errors {
            tracing::warn!("device profile skipped: {e}");
        }
        Self {
            profiles,
            sims: Mutex::new(HashMap::new()),
        }
    }

    /// Profile ids, for messages.
    pub fn ids(&self) -> Vec<&str> {
        self.profiles.iter().map(|p| p.id.as_str()).collect()
    }

    /// Whether a profile exists.
    pub fn check(&self, id: &str) -> Result<(), ApiError> {
        if self.profiles.iter().any(|p| p.id == id) {
            Ok(())
        } else {
            Err(ApiError::invalid(
                Some("nanolab.device"),
                format!("no device profile {id:?}; known: {}", self.ids().join(", ")),
            ))
        }
    }

    fn sims(&self) -> MutexGuard<'_, HashMap<String, LaneSim>> {
        // A poisoned lock only means a panic elsewhere mid-update; the thermal state is still usable.
        self.sims.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// One request's view of its device.
pub struct Pacer {
    devices: Arc<Devices>,
    device: String,
    facts: ModelFacts,
    paced: bool,
    prompt_tokens: u64,
    generated: u64,
    simulated_decode_secs: f64,
}

impl Pacer {
    /// A pacer on `device` (checked by [`Devices::check`]) for a run with these model facts.
    pub fn new(devices: Arc<Devices>, device: String, facts: ModelFacts, paced: bool) -> Self {
        Self {
            devices,
            device,
            facts,
            paced,
            prompt_tokens: 0,
            generated: 0,
            simulated_decode_secs: 0.0,
        }
    }

    /// The first token arrived: the device cools for its idle time, then processes the prompt.
    fn start(&mut self, sims: &mut HashMap<String, LaneSim>, prompt_tokens: u32) -> bool {
        let Some(profile) = self.devices.profiles.iter().find(|p| p.id == self.device) else {
            return false;
        };
        let sim = sims
            .entry(self.device.clone())
            .or_insert_with(|| LaneSim::new(0, profile.clone(), self.facts));
        sim.facts = self.facts;
        sim.start_run(u64::from(prompt_tokens));
        self.prompt_tokens = u64::from(prompt_tokens);
        true
    }

    /// One real token: advances the device; returns when to release it in paced mode.
    pub fn token(&mut self, prompt_tokens: u32) -> Option<Instant> {
        let devices = Arc::clone(&self.devices);
        let mut sims = devices.sims();
        if self.generated == 0 && !self.start(&mut sims, prompt_tokens) {
            return None;
        }
        let sim = sims.get_mut(&self.device)?;
        self.simulated_decode_secs += sim.token(self.prompt_tokens + self.generated);
        self.generated += 1;
        self.paced.then(|| Instant::from_std(sim.release_time()))
    }

    /// The response's `nanolab` extension: the device, its simulated speed and thermal state.
    pub fn report(&self) -> Value {
        let sims = self.devices.sims();
        let sim = sims.get(&self.device);
        json!({
            "device": self.device,
            "paced": self.paced,
            "simulated_tokens": self.generated,
            "simulated_decode_tokens_per_sec": if self.simulated_decode_secs > 0.0 {
                self.generated as f64 / self.simulated_decode_secs
            } else {
                0.0
            },
            "thermal_state": sim.map(LaneSim::state_name),
            "temp_c": sim.map(LaneSim::temp_c),
        })
    }
}
