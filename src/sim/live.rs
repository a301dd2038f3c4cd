//! The device simulator fed by real runs: each lane (or served device) advances a simulated clock
//! by the time its real tokens would take on that device, heating and throttling as it goes,
//! and cooling for the real time it sits idle. In paced mode tokens are released at the
//! simulated speed. Shared by the window (per lane) and `nanolab serve` (per device).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::model::{android_status, project, route, state_name, Decision, ThermalState};
use super::{DeviceProfile, ModelFacts};
use crate::protocol::LaneId;

/// One simulated point per real token.
#[derive(Debug, Clone)]
pub struct SimPoint {
    /// Simulated seconds since the lane's device was chosen.
    pub t_secs: f64,
    /// Temperature, °C.
    pub temp_c: f64,
    /// Performance factor of the active accelerator.
    pub throttle: f64,
    /// Android status 0-6 (iOS: 0-3).
    pub status: u8,
    /// Projected decode tokens/s on the device now.
    pub decode_tokens_per_sec: f64,
}

/// A lane's simulated device; `R` is what the caller keeps with each paced token.
pub struct LaneSim<R = ()> {
    /// Lane.
    pub lane: LaneId,
    /// The device.
    pub profile: DeviceProfile,
    /// Model facts of the lane's model and adapters.
    pub facts: ModelFacts,
    state: ThermalState,
    active: Option<usize>,
    /// Simulated clock.
    pub t_secs: f64,
    /// Timeline.
    pub points: Vec<SimPoint>,
    /// Routing decisions.
    pub decisions: Vec<Decision>,
    /// Real time of the last update (idle cooling between runs uses it).
    last_real: Instant,
    /// Tokens waiting to be shown (paced mode): release time, text, record.
    pub pending: VecDeque<(Instant, String, Option<R>)>,
    /// Real time the current paced run started and its simulated start.
    pace_origin: Option<(Instant, f64)>,
}

impl<R> LaneSim<R> {
    /// Starts a simulation at ambient temperature.
    pub fn new(lane: LaneId, profile: DeviceProfile, facts: ModelFacts) -> Self {
        let state = ThermalState::new(&profile);
        Self {
            lane,
            profile,
            facts,
            state,
            active: None,
            t_secs: 0.0,
            points: Vec::new(),
            decisions: Vec::new(),
            last_real: Instant::now(),
            pending: VecDeque::new(),
            pace_origin: None,
        }
    }

    fn advance(&mut self, dt_secs: f64, generating: bool) {
        let mut left = dt_secs;
        while left > 0.0 {
            let dt = left.min(0.05);
            self.state
                .step(&self.profile, generating.then_some(self.active.unwrap_or(0)), dt);
            self.t_secs += dt;
            left -= dt;
        }
    }

    fn route_now(&mut self) -> usize {
        let (i, reason) = route(&self.profile, &self.state, self.active);
        if !reason.is_empty() {
            self.decisions.push(Decision {
                t_secs: self.t_secs,
                accelerator: self.profile.accelerators[i].id.clone(),
                reason,
            });
        }
        self.active = Some(i);
        i
    }

    /// A run starts: the device cools for the real idle time since the last update, then
    /// processes the prompt.
    pub fn start_run(&mut self, prompt_tokens: u64) {
        let idle = self.last_real.elapsed().as_secs_f64().min(3600.0);
        self.advance(idle, false);
        let i = self.route_now();
        let f = self.state.factor(&self.profile, i);
        let p = project(&self.profile.accelerators[i], &self.facts, prompt_tokens);
        self.advance(prompt_tokens as f64 / (p.prefill_tokens_per_sec * f).max(1e-9), true);
        self.last_real = Instant::now();
        self.pace_origin = Some((Instant::now(), self.t_secs));
    }

    /// One real token was generated at context position `context`; returns the simulated
    /// seconds it took on the device.
    pub fn token(&mut self, context: u64) -> f64 {
        let i = if self.points.len().is_multiple_of(16) {
            self.route_now()
        } else {
            self.active.unwrap_or(0)
        };
        let f = self.state.factor(&self.profile, i);
        let rate = project(&self.profile.accelerators[i], &self.facts, context).decode_tokens_per_sec * f;
        let dt = 1.0 / rate.max(1e-9);
        self.advance(dt, true);
        self.points.push(SimPoint {
            t_secs: self.t_secs,
            temp_c: self.state.temp_c,
            throttle: f,
            status: android_status(&self.profile, self.state.temp_c),
            decode_tokens_per_sec: rate,
        });
        self.last_real = Instant::now();
        dt
    }

    /// When a token produced now should be shown in paced mode.
    pub fn release_time(&self) -> Instant {
        match self.pace_origin {
            Some((real0, sim0)) => real0 + Duration::from_secs_f64((self.t_secs - sim0).max(0.0)),
            None => Instant::now(),
        }
    }

    /// Current state name.
    pub fn state_name(&self) -> &'static str {
        state_name(&self.profile, self.state.temp_c)
    }

    /// Current temperature.
    pub fn temp_c(&self) -> f64 {
        self.state.temp_c
    }
}
