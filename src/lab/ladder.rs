//! A quantization ladder: the chosen levels of one model made in turn, each by llama.cpp's
//! quantizer in its own worker process ([`QuantizeJob`]), with progress, cancel and nothing
//! half-written. The window polls it every frame; the CLI waits on it.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::time::Duration;

use super::Progress;
use crate::quant::{QuantEvent, QuantOutcome, QuantType, QuantizeJob, QuantizeRequest};

/// What to do with a level whose output file already exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Existing {
    /// Use it as made (the window's ladder: make only what is missing).
    Reuse,
    /// Make it again.
    Overwrite,
    /// Stop with the quantizer's error (the CLI without `--overwrite`).
    Refuse,
}

/// What the ladder makes.
#[derive(Debug, Clone)]
pub struct LadderSpec {
    /// The source model.
    pub input: PathBuf,
    /// Where the levels go, named `<stem>.<TYPE>.gguf`.
    pub out_dir: PathBuf,
    /// The levels, in order.
    pub levels: Vec<QuantType>,
    /// Quantize from an already-quantized source.
    pub allow_requantize: bool,
    /// Outputs that exist already.
    pub existing: Existing,
    /// Threads (None: all cores).
    pub threads: Option<u32>,
    /// The nanolab executable to run the workers with (None: this one).
    pub exe: Option<PathBuf>,
}

/// A ladder being made.
pub struct Ladder {
    spec: LadderSpec,
    queue: VecDeque<QuantType>,
    current: Option<QuantizeJob>,
    progress: Progress,
    /// Levels made (or reused), in order.
    pub made: Vec<QuantOutcome>,
}

impl Ladder {
    /// Checks the spec and starts the first level.
    pub fn start(spec: LadderSpec) -> Result<Self, String> {
        if spec.levels.is_empty() {
            return Err("choose at least one level".into());
        }
        if !spec.input.is_file() {
            return Err(format!("{} does not exist", spec.input.display()));
        }
        let mut ladder = Self {
            queue: spec.levels.iter().copied().collect(),
            progress: Progress {
                total: spec.levels.len(),
                ..Progress::default()
            },
            spec,
            current: None,
            made: Vec::new(),
        };
        ladder.start_next()?;
        Ok(ladder)
    }

    /// Whether every level is made.
    pub fn finished(&self) -> bool {
        self.current.is_none()
    }

    /// The worker making the current level.
    pub fn pid(&self) -> Option<u32> {
        self.current.as_ref().and_then(QuantizeJob::pid)
    }

    /// Where the ladder is.
    pub fn progress(&self) -> &Progress {
        &self.progress
    }

    /// Starts the next level that needs making; levels reused count as made at once.
    fn start_next(&mut self) -> Result<(), String> {
        while let Some(q) = self.queue.pop_front() {
            let output = self.spec.out_dir.join(q.output_name(&self.spec.input));
            if self.spec.existing == Existing::Reuse && output.exists() {
                if let Ok(h) = crate::gguf::read(&output) {
                    self.made.push(QuantOutcome {
                        input: self.spec.input.clone(),
                        input_type: String::new(),
                        output,
                        quant_type: q.name.to_string(),
                        bytes: h.file_bytes,
                        bits_per_weight: crate::gguf::Summary::of(&h).bits_per_weight,
                        seconds: 0.0,
                    });
                    self.progress.done += 1;
                    continue;
                }
            }
            let request = QuantizeRequest {
                input: self.spec.input.clone(),
                output,
                qtype: q,
                allow_requantize: self.spec.allow_requantize,
                overwrite: self.spec.existing != Existing::Refuse,
                threads: self.spec.threads,
            };
            let job = QuantizeJob::start_with_exe(request, self.spec.exe.clone()).map_err(|e| self.stop(q, &e))?;
            self.progress.fraction = 0.0;
            self.progress.label = format!("{}: starting", q.name);
            self.current = Some(job);
            return Ok(());
        }
        Ok(())
    }

    fn stop(&mut self, q: QuantType, e: &str) -> String {
        self.queue.clear();
        self.current = None;
        format!("{}: {e}", q.name)
    }

    /// Takes the worker's news without blocking; moves on to the next level when one is made.
    /// An error names the level and ends the ladder.
    pub fn poll(&mut self) -> Result<(), String> {
        let Some(job) = self.current.as_mut() else {
            return Ok(());
        };
        let q = job.request().qtype;
        for ev in job.poll() {
            match ev {
                QuantEvent::Progress { fraction, tensor } => {
                    self.progress.fraction = fraction;
                    self.progress.label = format!("{}: {tensor}", q.name);
                }
                QuantEvent::Finished(Ok(o)) => {
                    self.current = None;
                    self.made.push(o);
                    self.progress.done += 1;
                    return self.start_next();
                }
                QuantEvent::Finished(Err(e)) => return Err(self.stop(q, &e)),
            }
        }
        Ok(())
    }

    /// Blocks until every level is made, calling `on_progress` as the workers report.
    pub fn wait(&mut self, on_progress: &mut dyn FnMut(&Progress, &[QuantOutcome])) -> Result<(), String> {
        while !self.finished() {
            self.poll()?;
            on_progress(&self.progress, &self.made);
            std::thread::sleep(Duration::from_millis(50));
        }
        on_progress(&self.progress, &self.made);
        Ok(())
    }

    /// Stops the level being made (its temp file removed) and the ones after it.
    pub fn cancel(&mut self) {
        if let Some(job) = self.current.as_mut() {
            job.cancel();
        }
        self.current = None;
        self.queue.clear();
    }
}
