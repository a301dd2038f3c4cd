//! The parent side: spawns `nanolab engine` as a child, sends requests, reads events on a
//! named thread, and supervises. If the child dies, every pending job gets one error
//! ("engine stopped while …: killed by signal 9") and the next request starts a new child.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::{Arc, Mutex};

use super::remote_lanes::RemoteLanes;
use crate::process::{describe_exit, worker_exe, StderrTail};
use crate::protocol::{Event, JobId, Request, PROTOCOL_VERSION};

/// Called after each event is queued (the UI passes `request_repaint`).
pub type Waker = Arc<dyn Fn() + Send + Sync>;

/// Errors talking to the engine process.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The child could not be started.
    #[error("could not start the engine process ({exe}): {source}")]
    Spawn {
        /// Executable used.
        exe: String,
        /// OS error.
        source: std::io::Error,
    },
    /// The child spoke another protocol version.
    #[error("engine speaks protocol {found}, this build speaks {PROTOCOL_VERSION}")]
    Version {
        /// Version the child reported.
        found: u32,
    },
    /// The child died before saying it was ready.
    #[error("engine stopped while starting: {0}")]
    Startup(String),
    /// Writing to the child failed.
    #[error("engine stopped while {action}: {reason}")]
    Write {
        /// What was being sent.
        action: String,
        /// Why.
        reason: String,
    },
}

struct Running {
    child: Arc<Mutex<Child>>,
    stdin: ChildStdin,
    pid: u32,
    alive: Arc<std::sync::atomic::AtomicBool>,
}

type Pending = Arc<Mutex<HashMap<JobId, String>>>;

/// A supervised engine child process.
pub struct EngineClient {
    exe: PathBuf,
    running: Option<Running>,
    pending: Pending,
    events_tx: SyncSender<Event>,
    events_rx: Receiver<Event>,
    waker: Option<Waker>,
    next_job: AtomicU64,
    restarts: u64,
    /// Filled by the reader thread from the child's `Ready` line.
    system_info: Arc<Mutex<String>>,
    remote: RemoteLanes,
}

impl EngineClient {
    /// A client that will run `exe engine` (the current executable by default) on first use.
    pub fn new(exe: Option<PathBuf>) -> Self {
        let exe = worker_exe(exe);
        let (events_tx, events_rx) = mpsc::sync_channel(16_384);
        Self {
            exe,
            running: None,
            pending: Arc::default(),
            events_tx,
            events_rx,
            waker: None,
            next_job: AtomicU64::new(1),
            restarts: 0,
            system_info: Arc::default(),
            remote: RemoteLanes::default(),
        }
    }

    /// Sets the function called after each event arrives.
    pub fn set_waker(&mut self, waker: Waker) {
        self.waker = Some(waker);
    }

    /// A fresh job id.
    pub fn next_job(&self) -> JobId {
        self.next_job.fetch_add(1, Ordering::Relaxed)
    }

    /// Blocks for the next event of any job; an error (naming `action`) once no event can come.
    pub fn recv(&self, action: &str) -> Result<Event, ClientError> {
        self.events_rx.recv().map_err(|_| ClientError::Write {
            action: action.to_string(),
            reason: "event channel closed".into(),
        })
    }

    /// The receiving end of engine events.
    pub fn events(&self) -> &Receiver<Event> {
        &self.events_rx
    }

    /// How many times the engine was (re)started after the first.
    pub fn restarts(&self) -> u64 {
        self.restarts
    }

    /// llama.cpp's system info from the running engine.
    pub fn system_info(&self) -> String {
        self.system_info.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// The nanolab executable the engine (and other worker processes) run from.
    pub fn exe(&self) -> &std::path::Path {
        &self.exe
    }

    /// Process id of the running child, if any.
    pub fn pid(&self) -> Option<u32> {
        self.running
            .as_ref()
            .filter(|r| r.alive.load(Ordering::SeqCst))
            .map(|r| r.pid)
    }

    fn ensure_running(&mut self) -> Result<(), ClientError> {
        if let Some(r) = &self.running {
            if r.alive.load(Ordering::SeqCst) {
                return Ok(());
            }
            self.restarts += 1;
        }
        self.running = None;
        let mut cmd = Command::new(&self.exe);
        cmd.arg("engine")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .env("NANOLAB_LOG", std::env::var("NANOLAB_LOG").unwrap_or_default());
        let mut child = cmd.spawn().map_err(|source| ClientError::Spawn {
            exe: self.exe.display().to_string(),
            source,
        })?;
        let pid = child.id();
        let (Some(stdin), Some(stdout), Some(stderr)) = (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            return Err(ClientError::Startup("no pipes to the child".into()));
        };
        // The child's `Ready` line is read on the reader thread, not here: a caller on the UI
        // thread goes on at once, and requests written meanwhile wait in the pipe.
        let lines = BufReader::new(stdout).lines();
        let child = Arc::new(Mutex::new(child));
        // Without the thread the tail stays empty; the engine still runs.
        let stderr_tail = StderrTail::spawn("engine-stderr", stderr, true).unwrap_or_default();
        let alive = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let reader = Reader {
            child: Arc::clone(&child),
            pending: Arc::clone(&self.pending),
            tx: self.events_tx.clone(),
            waker: self.waker.clone(),
            alive: Arc::clone(&alive),
            stderr_tail,
            system_info: Arc::clone(&self.system_info),
        };
        std::thread::Builder::new()
            .name("engine-reader".into())
            .spawn(move || reader.run(lines))
            .map_err(|e| ClientError::Startup(e.to_string()))?;
        self.running = Some(Running {
            child,
            stdin,
            pid,
            alive,
        });
        Ok(())
    }

    /// Sends a request, starting (or restarting) the engine if needed. A generation on a
    /// remote lane (and its cancel) goes to the endpoint instead, on a thread of its own,
    /// answering on the same event stream; what a remote lane cannot do is answered with an
    /// error naming why.
    pub fn send(&mut self, req: &Request) -> Result<(), ClientError> {
        if self.remote.take(req, &self.events_tx, self.waker.as_ref())? {
            return Ok(());
        }
        self.ensure_running()?;
        let action = req.action();
        if let Some(job) = req.job() {
            if let Ok(mut p) = self.pending.lock() {
                p.insert(job, action.clone());
            }
        }
        let line = serde_json::to_string(req).map_err(|e| ClientError::Write {
            action: action.clone(),
            reason: e.to_string(),
        })?;
        let result = self.running.as_mut().map_or_else(
            || Err(std::io::Error::other("engine not running")),
            |r| writeln!(r.stdin, "{line}").and_then(|()| r.stdin.flush()),
        );
        result.map_err(|e| {
            if let Some(job) = req.job() {
                if let Ok(mut p) = self.pending.lock() {
                    p.remove(&job);
                }
            }
            ClientError::Write {
                action,
                reason: e.to_string(),
            }
        })
    }

    /// Sends a housekeeping request (cancel, drop a lane, unload) only to a running engine:
    /// a dead engine holds no lanes or jobs, so there is nothing to do and no reason to start
    /// one. Returns whether it was sent.
    pub fn send_if_running(&mut self, req: &Request) -> Result<bool, ClientError> {
        if self.remote.owns(req) {
            return self.send(req).map(|()| true);
        }
        if self.pid().is_none() {
            return Ok(false);
        }
        self.send(req).map(|()| true)
    }

    /// Sends a request and blocks until its terminal event, passing every event of the job to
    /// `on_event`. Events of other jobs are dropped; use only when nothing else is in flight.
    pub fn call(&mut self, req: &Request, mut on_event: impl FnMut(&Event)) -> Result<Event, ClientError> {
        let job = req.job().unwrap_or(0);
        self.send(req)?;
        loop {
            let ev = self.recv(&req.action())?;
            if ev.job() != Some(job) {
                continue;
            }
            on_event(&ev);
            if ev.is_terminal() {
                return Ok(ev);
            }
        }
    }

    /// Kills the child (used by tests and on shutdown); pending jobs get errors.
    pub fn kill(&mut self) {
        if let Some(r) = &self.running {
            kill(&r.child);
        }
    }
}

impl Drop for EngineClient {
    fn drop(&mut self) {
        if let Some(r) = self.running.take() {
            // Closing stdin ends the engine's loop; then make sure it is gone and reaped.
            drop(r.stdin);
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
            loop {
                let done = r
                    .child
                    .lock()
                    .map(|mut c| matches!(c.try_wait(), Ok(Some(_))))
                    .unwrap_or(true);
                if done || std::time::Instant::now() > deadline {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            kill(&r.child);
        }
    }
}

fn kill(child: &Arc<Mutex<Child>>) {
    if let Ok(mut c) = child.lock() {
        let _ = c.kill();
        let _ = c.wait();
    }
}

fn wait_status(child: &Arc<Mutex<Child>>) -> String {
    match child.lock() {
        Ok(mut c) => match c.wait() {
            Ok(status) => describe_exit(status),
            Err(e) => e.to_string(),
        },
        Err(_) => "unknown".into(),
    }
}

struct Reader {
    child: Arc<Mutex<Child>>,
    pending: Pending,
    tx: SyncSender<Event>,
    waker: Option<Waker>,
    alive: Arc<std::sync::atomic::AtomicBool>,
    stderr_tail: StderrTail,
    system_info: Arc<Mutex<String>>,
}

impl Reader {
    /// Reads the child's first line: `None` when it is a `Ready` of this protocol version,
    /// else why the engine cannot be used.
    fn startup(&self, first: Option<std::io::Result<String>>) -> Option<String> {
        let Some(line) = first.and_then(Result::ok) else {
            return Some("the engine did not start (it wrote nothing)".into());
        };
        match serde_json::from_str::<Event>(&line) {
            Ok(Event::Ready {
                protocol_version,
                system_info,
                ..
            }) => {
                if protocol_version != PROTOCOL_VERSION {
                    return Some(
                        ClientError::Version {
                            found: protocol_version,
                        }
                        .to_string(),
                    );
                }
                if let Ok(mut s) = self.system_info.lock() {
                    *s = system_info;
                }
                None
            }
            _ => {
                let shown: String = line.chars().take(200).collect();
                Some(format!("the engine did not start (its first line: {shown:?})"))
            }
        }
    }

    fn deliver(&self, ev: Event) {
        let _ = self.tx.send(ev);
        if let Some(w) = &self.waker {
            w();
        }
    }

    fn run(self, mut lines: std::io::Lines<BufReader<std::process::ChildStdout>>) {
        let failed_start = self.startup(lines.next());
        if failed_start.is_some() {
            kill(&self.child);
        }
        // After a failed start nothing more is read: a grandchild may hold the pipe open.
        let lines = lines.take(if failed_start.is_none() { usize::MAX } else { 0 });
        for line in lines {
            let Ok(line) = line else { break };
            match serde_json::from_str::<Event>(&line) {
                Ok(ev) => {
                    if ev.is_terminal() {
                        if let (Some(job), Ok(mut p)) = (ev.job(), self.pending.lock()) {
                            p.remove(&job);
                        }
                    }
                    self.deliver(ev);
                }
                Err(e) => tracing::warn!("engine wrote an unreadable line ({e}): {line}"),
            }
        }
        // stdout closed: the child is exiting or dead.
        let status = wait_status(&self.child);
        self.alive.store(false, Ordering::SeqCst);
        // Let the stderr thread catch the last lines.
        std::thread::sleep(std::time::Duration::from_millis(50));
        let tail = self.stderr_tail.tail_text();
        let orphans: Vec<(JobId, String)> = self
            .pending
            .lock()
            .map(|mut p| {
                let mut v: Vec<_> = p.drain().collect();
                v.sort();
                v
            })
            .unwrap_or_default();
        let why = failed_start.map_or_else(String::new, |w| format!("{w}; "));
        for (job, action) in orphans {
            self.deliver(Event::Error {
                job,
                message: format!("engine stopped while {action}: {why}{status}{tail}"),
                cancelled: false,
                retry: false,
            });
        }
    }
}
