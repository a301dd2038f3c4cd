//! What the window measures about itself and its engine: engine memory sampled at a steady
//! rate (idle or busy, so an idle stretch draws a flat step, not a slope that reads as a leak)
//! and, for benchmarks, frame timing.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::App;

/// Memory is sampled this often while lanes run.
pub(super) const SAMPLE_EVERY: Duration = Duration::from_millis(250);
/// While idle the window wakes this often to keep the memory graph's rate steady.
pub(super) const IDLE_SAMPLE_EVERY: Duration = Duration::from_secs(1);

/// One memory sample of the engine process.
#[derive(Debug, Clone, Copy)]
pub struct MemSample {
    /// Seconds since the window opened.
    pub t_secs: f64,
    /// Engine resident memory.
    pub rss_bytes: u64,
    /// Model weights held.
    pub weights_bytes: u64,
    /// KV caches held.
    pub kv_bytes: u64,
    /// Adapter files applied.
    pub adapter_bytes: u64,
}

/// The window's measurements.
pub struct Telemetry {
    /// When the window opened.
    pub started: Instant,
    /// Last memory sample time.
    pub last_sample: Option<Instant>,
    /// Engine memory over time.
    pub memory: Vec<MemSample>,
    /// The engine's restarts at the last sample: a new engine holds nothing yet.
    restarts_seen: u64,
    /// Frame timing for benchmarks.
    pub frame_stats: FrameStats,
}

impl Telemetry {
    pub(super) fn new() -> Self {
        Self {
            started: Instant::now(),
            last_sample: None,
            memory: Vec::new(),
            restarts_seen: 0,
            frame_stats: FrameStats::from_env(),
        }
    }
}

impl App {
    pub(super) fn sample_memory(&mut self) {
        // A steady rate, idle or busy: a graph sampled only while busy joins distant samples
        // with long slopes that read as a leak.
        let every = if self.busy() { SAMPLE_EVERY } else { IDLE_SAMPLE_EVERY };
        let due = self.rt.telemetry.last_sample.is_none_or(|t| t.elapsed() >= every);
        if !due {
            return;
        }
        let Some(pid) = self.rt.engine.client.pid() else { return };
        self.rt.telemetry.last_sample = Some(Instant::now());
        let rss_bytes = crate::metrics::rss_bytes_of(pid);
        let restarts = self.rt.engine.client.restarts();
        if restarts != self.rt.telemetry.restarts_seen {
            self.rt.telemetry.restarts_seen = restarts;
            self.rt.lanes.held.clear();
        }
        let mut models = std::collections::BTreeMap::new();
        let (mut kv_bytes, mut adapter_bytes) = (0, 0);
        // Lanes still open and still on the model the engine set them up with (remote lanes
        // hold no memory of this machine's engine).
        for lane in &self.state.lanes {
            let held = self.rt.lanes.held.get(&lane.id);
            if let Some(info) = held.filter(|i| lane.remote.is_none() && lane.model.as_ref() == Some(&i.model.path)) {
                models.insert(info.model.path.clone(), info.model.model_bytes);
                kv_bytes += info.kv_bytes;
                adapter_bytes += info.adapter_bytes;
            }
        }
        self.rt.telemetry.memory.push(MemSample {
            t_secs: self.rt.telemetry.started.elapsed().as_secs_f64(),
            rss_bytes,
            weights_bytes: models.values().sum(),
            kv_bytes,
            adapter_bytes,
        });
        if self.rt.telemetry.memory.len() > 4000 {
            self.rt.telemetry.memory.drain(..1000);
        }
    }
}

/// Frame timing for benchmarks: with `$NANOLAB_FRAME_STATS` set, two times per frame while lanes
/// run are written there as JSON every 2 seconds and whenever the window goes busy or idle:
/// the UI pass (nanolab's own code) and eframe's frame time (UI pass, tessellation and the GL
/// paint calls; the buffer swap, where a software renderer finishes drawing, is not in it).
#[derive(Default)]
pub struct FrameStats {
    path: Option<PathBuf>,
    busy_ui_ms: Vec<f64>,
    busy_frame_ms: Vec<f64>,
    idle_frames: u64,
    was_busy: bool,
    last_write: Option<Instant>,
}

impl FrameStats {
    /// Reads `$NANOLAB_FRAME_STATS`.
    pub fn from_env() -> Self {
        Self {
            path: std::env::var_os("NANOLAB_FRAME_STATS").map(PathBuf::from),
            ..Self::default()
        }
    }

    /// `previous_frame_s` is eframe's time for the frame before this one; it counts as busy
    /// when both frames are.
    pub(super) fn record(&mut self, ui_pass: std::time::Duration, previous_frame_s: Option<f32>, busy: bool) {
        let Some(path) = &self.path else { return };
        if busy {
            self.busy_ui_ms.push(ui_pass.as_secs_f64() * 1000.0);
            if let Some(s) = previous_frame_s.filter(|_| self.was_busy) {
                self.busy_frame_ms.push(f64::from(s) * 1000.0);
            }
        } else {
            self.idle_frames += 1;
        }
        let changed = busy != self.was_busy;
        self.was_busy = busy;
        if changed || self.last_write.is_none_or(|t| t.elapsed().as_secs() >= 2) {
            self.last_write = Some(Instant::now());
            let ui = |q| crate::metrics::percentile(&self.busy_ui_ms, q);
            let frame = |q| crate::metrics::percentile(&self.busy_frame_ms, q);
            let json = serde_json::json!({
                "busy_frames": self.busy_ui_ms.len(),
                "busy_ui_pass_ms_p50": ui(0.5),
                "busy_ui_pass_ms_p95": ui(0.95),
                "busy_ui_pass_ms_max": ui(1.0),
                "busy_frame_ms_p50": frame(0.5),
                "busy_frame_ms_p95": frame(0.95),
                "busy_frame_ms_max": frame(1.0),
                "idle_frames": self.idle_frames,
            });
            if let Err(e) = crate::paths::write_atomic(path, json.to_string().as_bytes()) {
                tracing::warn!("could not write frame stats to {}: {e}", path.display());
            }
        }
    }
}
