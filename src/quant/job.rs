//! A quantization job seen from the window or the CLI: checks first (input is a model, the
//! output does not exist, the disk has room), then `nanolab quantize-worker` in a child process
//! writes a temp file and renames it into place only when complete and readable. Progress comes
//! from the worker's stdout; cancel kills the worker and removes the temp file.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::types::{dominant_type, is_reference_grade, QuantType};
use crate::metrics;
use crate::process::{describe_exit, worker_exe, StderrTail};
use crate::protocol::WorkerLine;

/// What to make.
#[derive(Debug, Clone, PartialEq)]
pub struct QuantizeRequest {
    /// Source model.
    pub input: PathBuf,
    /// Destination file.
    pub output: PathBuf,
    /// Target level.
    pub qtype: QuantType,
    /// Allow a quantized (below Q8_0) source.
    pub allow_requantize: bool,
    /// Replace an existing output file.
    pub overwrite: bool,
    /// Threads (None: all cores).
    pub threads: Option<u32>,
}

/// A finished quantization.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QuantOutcome {
    /// Source model.
    pub input: PathBuf,
    /// Its dominant type.
    pub input_type: String,
    /// The file made.
    pub output: PathBuf,
    /// Target level name.
    pub quant_type: String,
    /// Size of the file made.
    pub bytes: u64,
    /// Bits per weight of the file made.
    pub bits_per_weight: f64,
    /// Wall time.
    pub seconds: f64,
}

/// Progress or the end of a job.
#[derive(Debug, Clone, PartialEq)]
pub enum QuantEvent {
    /// Fraction of tensors done and the one being written.
    Progress {
        /// 0-1.
        fraction: f32,
        /// Tensor name.
        tensor: String,
    },
    /// The job ended.
    Finished(Result<QuantOutcome, String>),
}

/// A running job.
pub struct QuantizeJob {
    request: QuantizeRequest,
    input_type: String,
    child: Option<Child>,
    rx: Receiver<QuantEvent>,
    stderr: StderrTail,
    tmp: PathBuf,
    started: Instant,
    finished: bool,
}

/// The temp file a job writes before the rename (hidden, beside the output).
pub fn temp_path(output: &Path) -> PathBuf {
    let name = output
        .file_name()
        .map_or_else(|| "model.gguf".into(), |n| n.to_string_lossy().into_owned());
    output.with_file_name(format!(".{name}.partial"))
}

impl QuantizeJob {
    /// Checks the request and starts the worker (`exe quantize-worker`; the current executable
    /// unless `NANOLAB_ENGINE_EXE` says otherwise).
    pub fn start(request: QuantizeRequest) -> Result<Self, String> {
        Self::start_with_exe(request, None)
    }

    /// [`QuantizeJob::start`] with an explicit nanolab executable for the worker.
    pub fn start_with_exe(request: QuantizeRequest, exe: Option<PathBuf>) -> Result<Self, String> {
        let header = crate::gguf::validate_model_file(&request.input)?;
        let input_type = dominant_type(&header);
        if !is_reference_grade(&input_type) && !request.allow_requantize {
            return Err(format!(
                "{} is {input_type}: quantizing an already-quantized model compounds its error, so it is a poor \
                 reference; use an F16/BF16/F32/Q8_0 source, or allow requantizing (--allow-requantize) to do it anyway",
                request.input.display()
            ));
        }
        if request.output == request.input {
            return Err("the output would overwrite the input; choose another file name".into());
        }
        if request.output.exists() && !request.overwrite {
            return Err(format!(
                "{} exists; delete it or pass --overwrite",
                request.output.display()
            ));
        }
        let dir = request
            .output
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
            .to_path_buf();
        std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let params: u64 = header.tensors.iter().map(|t| t.elems()).sum();
        let estimate = (params as f64 * request.qtype.bits_per_weight / 8.0) as u64;
        // Small models fall back to bigger types for some tensors: leave generous headroom.
        let needed = estimate + estimate / 2 + (16 << 20);
        if let Some(free) = crate::paths::free_bytes(&dir) {
            if free < needed {
                return Err(format!(
                    "not enough disk space in {}: {} needs about {} but only {} is free",
                    dir.display(),
                    request.qtype.name,
                    metrics::mib(needed),
                    metrics::mib(free)
                ));
            }
        }
        let tmp = temp_path(&request.output);
        let _ = std::fs::remove_file(&tmp);
        let mut cmd = Command::new(worker_exe(exe));
        cmd.arg("quantize-worker")
            .arg(&request.input)
            .arg(&tmp)
            .arg(&request.output)
            .arg(request.qtype.name)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if request.allow_requantize {
            cmd.arg("--allow-requantize");
        }
        if let Some(t) = request.threads {
            cmd.arg("--threads").arg(t.to_string());
        }
        let mut child = cmd.spawn().map_err(|e| format!("cannot start the quantizer: {e}"))?;
        let (tx, rx) = mpsc::channel();
        if let Some(out) = child.stdout.take() {
            std::thread::Builder::new()
                .name("quantize-progress".into())
                .spawn(move || {
                    for line in BufReader::new(out).lines().map_while(Result::ok) {
                        if let Ok(l) = serde_json::from_str::<WorkerLine>(&line) {
                            let fraction = l.tensor as f32 / l.tensors.max(1) as f32;
                            let _ = tx.send(QuantEvent::Progress {
                                fraction,
                                tensor: l.name,
                            });
                        }
                    }
                })
                .map_err(|e| format!("cannot start a thread: {e}"))?;
        }
        let stderr = match child.stderr.take() {
            Some(err) => {
                StderrTail::spawn("quantize-stderr", err, false).map_err(|e| format!("cannot start a thread: {e}"))?
            }
            None => StderrTail::default(),
        };
        Ok(Self {
            request,
            input_type,
            child: Some(child),
            rx,
            stderr,
            tmp,
            started: Instant::now(),
            finished: false,
        })
    }

    /// The request.
    pub fn request(&self) -> &QuantizeRequest {
        &self.request
    }

    /// Process id of the worker while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Events since the last call, without blocking; the last is `Finished` once it ended.
    pub fn poll(&mut self) -> Vec<QuantEvent> {
        let mut events: Vec<QuantEvent> = self.rx.try_iter().collect();
        if let Some(done) = self.check_exit() {
            events.extend(self.rx.try_iter());
            events.push(QuantEvent::Finished(done));
        }
        events
    }

    /// Blocks until the job ends, passing progress to `on_progress`.
    pub fn wait(mut self, on_progress: &mut dyn FnMut(f32, &str)) -> Result<QuantOutcome, String> {
        loop {
            match self.rx.recv_timeout(Duration::from_millis(100)) {
                Ok(QuantEvent::Progress { fraction, tensor }) => on_progress(fraction, &tensor),
                Ok(QuantEvent::Finished(r)) => return r,
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => {}
            }
            if let Some(done) = self.check_exit() {
                return done;
            }
        }
    }

    /// Stops the worker and removes its temp file; nothing is left in the output folder.
    pub fn cancel(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_file(&self.tmp);
        self.finished = true;
    }

    fn check_exit(&mut self) -> Option<Result<QuantOutcome, String>> {
        if self.finished {
            return None;
        }
        let status = match self.child.as_mut()?.try_wait() {
            Ok(Some(status)) => status,
            Ok(None) => return None,
            Err(e) => {
                self.cancel();
                return Some(Err(format!("lost the quantizer: {e}")));
            }
        };
        self.child = None;
        self.finished = true;
        // Give the stderr thread a moment to drain the last line.
        std::thread::sleep(Duration::from_millis(20));
        if status.success() && self.request.output.exists() {
            let bytes = std::fs::metadata(&self.request.output).map_or(0, |m| m.len());
            let bpw = crate::gguf::read(&self.request.output)
                .map(|f| crate::gguf::Summary::of(&f).bits_per_weight)
                .unwrap_or(0.0);
            return Some(Ok(QuantOutcome {
                input: self.request.input.clone(),
                input_type: self.input_type.clone(),
                output: self.request.output.clone(),
                quant_type: self.request.qtype.name.to_string(),
                bytes,
                bits_per_weight: bpw,
                seconds: self.started.elapsed().as_secs_f64(),
            }));
        }
        let _ = std::fs::remove_file(&self.tmp);
        let last = self.stderr.last_line();
        Some(Err(if status.success() {
            "the quantizer exited without writing the output".to_string()
        } else if last.is_empty() {
            format!("the quantizer stopped: {}", describe_exit(status))
        } else {
            format!("{last} ({})", describe_exit(status))
        }))
    }
}

impl Drop for QuantizeJob {
    fn drop(&mut self) {
        if !self.finished {
            self.cancel();
        }
    }
}
