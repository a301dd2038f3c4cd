//! Projection, thermal model, DVFS with hysteresis, OS thermal states and routing, stepped in
//! simulated time.

use serde::Serialize;

use super::profile::{Accelerator, DeviceProfile, Os};

/// What the simulation needs to know about the model and adapters (from real numbers).
#[derive(Debug, Clone, Copy, Serialize)]
pub struct ModelFacts {
    /// Parameters of the base model.
    pub parameters: u64,
    /// Bytes of weights read per decoded token (the GGUF's tensor bytes).
    pub weight_bytes: u64,
    /// KV cache bytes per token of context.
    pub kv_bytes_per_token: u64,
    /// Bytes of adapter weights applied.
    pub adapter_bytes: u64,
    /// Adapter parameters (each costs 2 FLOPs per token).
    pub adapter_parameters: u64,
}

/// Projected speeds on an accelerator at full clock.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Projection {
    /// Prefill tokens/s (compute-bound).
    pub prefill_tokens_per_sec: f64,
    /// Decode tokens/s (bandwidth-bound) at the given context fill.
    pub decode_tokens_per_sec: f64,
}

/// Projects prefill and decode speed on `acc` with `context_tokens` already in the KV cache.
pub fn project(acc: &Accelerator, m: &ModelFacts, context_tokens: u64) -> Projection {
    let flops_per_token = 2.0 * (m.parameters + m.adapter_parameters) as f64;
    let bytes_per_token = (m.weight_bytes + m.adapter_bytes + m.kv_bytes_per_token * context_tokens) as f64;
    Projection {
        prefill_tokens_per_sec: acc.compute_tflops * 1e12 / flops_per_token,
        decode_tokens_per_sec: acc.bandwidth_gbs * 1e9 / bytes_per_token,
    }
}

/// Android thermal status (0-6) for a temperature.
pub fn android_status(p: &DeviceProfile, temp_c: f64) -> u8 {
    p.thermal.state_thresholds_c.iter().filter(|&&t| temp_c >= t).count() as u8
}

/// The OS-facing name of the thermal state.
pub fn state_name(p: &DeviceProfile, temp_c: f64) -> &'static str {
    let level = android_status(p, temp_c) as usize;
    match p.os {
        Os::Ios => ["nominal", "fair", "serious", "critical"][level.min(3)],
        _ => [
            "NONE",
            "LIGHT",
            "MODERATE",
            "SEVERE",
            "CRITICAL",
            "EMERGENCY",
            "SHUTDOWN",
        ][level.min(6)],
    }
}

/// A routing decision on the timeline.
#[derive(Debug, Clone, Serialize)]
pub struct Decision {
    /// Simulated seconds.
    pub t_secs: f64,
    /// Accelerator chosen.
    pub accelerator: String,
    /// Why.
    pub reason: String,
}

/// Mutable simulation state.
#[derive(Debug, Clone)]
pub struct ThermalState {
    /// Temperature, °C.
    pub temp_c: f64,
    /// DVFS step index per accelerator (0 = full clock).
    pub steps: Vec<usize>,
}

impl ThermalState {
    /// Starts at ambient, full clock.
    pub fn new(p: &DeviceProfile) -> Self {
        Self {
            temp_c: p.thermal.ambient_c,
            steps: vec![0; p.accelerators.len()],
        }
    }

    /// Performance factor of accelerator `i` now.
    pub fn factor(&self, p: &DeviceProfile, i: usize) -> f64 {
        let s = self.steps[i];
        if s == 0 {
            1.0
        } else {
            p.accelerators[i].dvfs[s - 1][1]
        }
    }

    /// Advances by `dt_secs` with accelerator `active` generating (None: idle).
    pub fn step(&mut self, p: &DeviceProfile, active: Option<usize>, dt_secs: f64) {
        let th = &p.thermal;
        let power = match active {
            Some(i) => p.accelerators[i].power_w * self.factor(p, i) + th.idle_power_w,
            None => th.idle_power_w,
        };
        let cooling = (self.temp_c - th.ambient_c) / th.resistance_k_per_w;
        self.temp_c += dt_secs * (power - cooling) / th.heat_capacity_j_per_k;
        for (i, a) in p.accelerators.iter().enumerate() {
            // Step down while above the next threshold; back up only below the current one
            // minus the hysteresis.
            while self.steps[i] < a.dvfs.len() && self.temp_c >= a.dvfs[self.steps[i]][0] {
                self.steps[i] += 1;
            }
            while self.steps[i] > 0 && self.temp_c < a.dvfs[self.steps[i] - 1][0] - th.hysteresis_c {
                self.steps[i] -= 1;
            }
        }
    }
}

/// Routing like AICore: prefer the first accelerator in the profile's order (most efficient);
/// once the device is at SEVERE (Android 3, iOS serious) or above, move to the lowest-power
/// accelerator within the power budget; go back when it has cooled to LIGHT/fair or below.
pub fn route(p: &DeviceProfile, st: &ThermalState, current: Option<usize>) -> (usize, String) {
    let status = android_status(p, st.temp_c);
    let hot_level = if p.os == Os::Ios { 2 } else { 3 };
    let cool_level = 1;
    let preferred = 0;
    let frugal = p
        .accelerators
        .iter()
        .enumerate()
        .filter(|(_, a)| a.power_w <= p.power_budget_w)
        .min_by(|a, b| a.1.power_w.total_cmp(&b.1.power_w))
        .map_or(preferred, |(i, _)| i);
    match current {
        None => (
            preferred,
            format!(
                "start on {} (preferred, thermal state {})",
                p.accelerators[preferred].id,
                state_name(p, st.temp_c)
            ),
        ),
        Some(c) if status >= hot_level && c != frugal => (
            frugal,
            format!(
                "thermal state {} at {:.1} °C: move to {} ({:.1} W, within the {:.1} W budget)",
                state_name(p, st.temp_c),
                st.temp_c,
                p.accelerators[frugal].id,
                p.accelerators[frugal].power_w,
                p.power_budget_w
            ),
        ),
        Some(c) if status <= cool_level && c != preferred => (
            preferred,
            format!(
                "cooled to {} at {:.1} °C: back to {}",
                state_name(p, st.temp_c),
                st.temp_c,
                p.accelerators[preferred].id
            ),
        ),
        Some(c) => (c, String::new()),
    }
}

/// One point of the timeline (once per simulated second).
#[derive(Debug, Clone, Serialize)]
pub struct Sample {
    /// Simulated seconds.
    pub t_secs: f64,
    /// Temperature, °C.
    pub temp_c: f64,
    /// Performance factor of the active accelerator.
    pub throttle: f64,
    /// Android thermal status 0-6.
    pub android_status: u8,
    /// OS-facing state name.
    pub state: String,
    /// Active accelerator.
    pub accelerator: String,
    /// Projected decode tokens/s now.
    pub decode_tokens_per_sec: f64,
}

/// A sustained-run workload: requests back to back.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Workload {
    /// Prompt tokens per request.
    pub prompt_tokens: u64,
    /// Generated tokens per request.
    pub gen_tokens: u64,
    /// Idle seconds between requests.
    pub gap_secs: f64,
    /// Simulated duration.
    pub duration_secs: f64,
    /// Pin one accelerator (no routing).
    pub pinned: Option<usize>,
}

/// Results of a sustained run.
#[derive(Debug, Clone, Serialize)]
pub struct SustainedReport {
    /// Device id.
    pub device: String,
    /// Mean decode tokens/s over the first 10 s of decoding.
    pub burst_tokens_per_sec: f64,
    /// Mean decode tokens/s over the last 60 s.
    pub sustained_tokens_per_sec: f64,
    /// sustained / burst.
    pub retention: f64,
    /// First time decode speed fell below 75% of burst, s.
    pub time_to_minus_25_secs: Option<f64>,
    /// First time decode speed fell below 90% of burst, s.
    pub time_to_minus_10_secs: Option<f64>,
    /// Thermal states visited, in order.
    pub states_visited: Vec<String>,
    /// Peak temperature, °C.
    pub peak_temp_c: f64,
    /// Tokens generated.
    pub tokens: u64,
    /// Routing decisions.
    pub decisions: Vec<Decision>,
    /// Timeline.
    pub samples: Vec<Sample>,
}

/// Runs a sustained workload in simulated time.
pub fn sustained(p: &DeviceProfile, m: &ModelFacts, w: &Workload) -> SustainedReport {
    const DT: f64 = 0.05;
    let mut st = ThermalState::new(p);
    let mut active: Option<usize> = None;
    let mut decisions = Vec::new();
    let mut samples: Vec<Sample> = Vec::new();
    let mut t = 0.0;
    // Request phase: prefill tokens left, decode tokens left, idle seconds left.
    let (mut prefill_left, mut decode_left, mut idle_left) = (w.prompt_tokens as f64, w.gen_tokens as f64, 0.0);
    let mut decode_log: Vec<(f64, f64)> = Vec::new(); // (t, tok/s) while decoding
    let mut next_sample = 0.0;
    while t < w.duration_secs {
        let new_request = prefill_left == w.prompt_tokens as f64 && decode_left == w.gen_tokens as f64;
        let idx = match w.pinned {
            Some(i) => {
                if active.is_none() {
                    decisions.push(Decision {
                        t_secs: t,
                        accelerator: p.accelerators[i].id.clone(),
                        reason: "pinned by the user".into(),
                    });
                }
                i
            }
            None => {
                // Decide per request, and re-check every second mid-run.
                let recheck = new_request || (t - decisions.last().map_or(0.0, |d: &Decision| d.t_secs)) >= 1.0;
                if recheck || active.is_none() {
                    let (i, reason) = route(p, &st, active);
                    if !reason.is_empty() {
                        decisions.push(Decision {
                            t_secs: t,
                            accelerator: p.accelerators[i].id.clone(),
                            reason,
                        });
                    }
                    i
                } else {
                    active.unwrap_or(0)
                }
            }
        };
        active = Some(idx);
        let acc = &p.accelerators[idx];
        let f = st.factor(p, idx);
        let context = w.prompt_tokens + (w.gen_tokens as f64 - decode_left) as u64;
        let proj = project(acc, m, context);
        let generating = idle_left <= 0.0;
        if generating {
            if prefill_left > 0.0 {
                prefill_left -= proj.prefill_tokens_per_sec * f * DT;
            } else {
                let rate = proj.decode_tokens_per_sec * f;
                decode_left -= rate * DT;
                decode_log.push((t, rate));
                if decode_left <= 0.0 {
                    idle_left = w.gap_secs;
                    if idle_left <= 0.0 {
                        prefill_left = w.prompt_tokens as f64;
                        decode_left = w.gen_tokens as f64;
                    }
                }
            }
        } else {
            idle_left -= DT;
            if idle_left <= 0.0 {
                prefill_left = w.prompt_tokens as f64;
                decode_left = w.gen_tokens as f64;
            }
        }
        st.step(p, generating.then_some(idx), DT);
        if t >= next_sample {
            next_sample += 1.0;
            samples.push(Sample {
                t_secs: t,
                temp_c: st.temp_c,
                throttle: f,
                android_status: android_status(p, st.temp_c),
                state: state_name(p, st.temp_c).to_string(),
                accelerator: acc.id.clone(),
                decode_tokens_per_sec: proj.decode_tokens_per_sec * f,
            });
        }
        t += DT;
    }
    let tokens = decode_log.iter().map(|(_, r)| r * DT).sum::<f64>().round() as u64;
    let first_t = decode_log.first().map_or(0.0, |d| d.0);
    let mean = |from: f64, to: f64| {
        let v: Vec<f64> = decode_log
            .iter()
            .filter(|(t, _)| *t >= from && *t < to)
            .map(|(_, r)| *r)
            .collect();
        if v.is_empty() {
            0.0
        } else {
            v.iter().sum::<f64>() / v.len() as f64
        }
    };
    let burst = mean(first_t, first_t + 10.0);
    let sustained = mean(w.duration_secs - 60.0, w.duration_secs + 1.0);
    let below = |frac: f64| decode_log.iter().find(|(_, r)| *r < burst * frac).map(|(t, _)| *t);
    let mut states_visited: Vec<String> = Vec::new();
    for s in &samples {
        if states_visited.last() != Some(&s.state) && !states_visited.contains(&s.state) {
            states_visited.push(s.state.clone());
        }
    }
    SustainedReport {
        device: p.id.clone(),
        burst_tokens_per_sec: burst,
        sustained_tokens_per_sec: sustained,
        retention: if burst > 0.0 { sustained / burst } else { 0.0 },
        time_to_minus_25_secs: below(0.75),
        time_to_minus_10_secs: below(0.90),
        states_visited,
        peak_temp_c: samples.iter().map(|s| s.temp_c).fold(f64::MIN, f64::max),
        tokens,
        decisions,
        samples,
    }
}

/// Memory fit check: weights + KV at `n_ctx` + adapters vs the device's app memory.
#[derive(Debug, Clone, Serialize)]
pub struct FitCheck {
    /// Bytes needed.
    pub needed_bytes: u64,
    /// Bytes an app may use.
    pub available_bytes: u64,
    /// needed <= available.
    pub fits: bool,
}

/// Checks whether the model fits the device's app memory.
pub fn fit(p: &DeviceProfile, m: &ModelFacts, n_ctx: u64) -> FitCheck {
    let needed_bytes = m.weight_bytes + m.kv_bytes_per_token * n_ctx + m.adapter_bytes;
    let available_bytes = (p.app_memory_gib * 1024.0 * 1024.0 * 1024.0) as u64;
    FitCheck {
        needed_bytes,
        available_bytes,
        fits: needed_bytes <= available_bytes,
    }
}
