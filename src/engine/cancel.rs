//! Cancellation flags per job, set from the stdin thread and read by the engine thread
//! (and by llama.cpp's abort callback while it decodes).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use crate::protocol::JobId;

#[derive(Default)]
struct Board {
    /// The parent is gone: every job, running or queued, is cancelled.
    shutdown: bool,
    cancelled: HashSet<JobId>,
    flags: HashMap<JobId, Vec<Arc<AtomicBool>>>,
}

/// Shared cancellation state.
#[derive(Clone, Default)]
pub struct CancelBoard {
    inner: Arc<Mutex<Board>>,
}

impl CancelBoard {
    /// Marks a job cancelled and trips every flag attached to it.
    pub fn cancel(&self, job: JobId) {
        if let Ok(mut b) = self.inner.lock() {
            b.cancelled.insert(job);
            for f in b.flags.get(&job).into_iter().flatten() {
                f.store(true, Ordering::Relaxed);
            }
        }
    }

    /// Cancels everything from now on (the parent closed our stdin).
    pub fn shutdown(&self) {
        if let Ok(mut b) = self.inner.lock() {
            b.shutdown = true;
            for f in b.flags.values().flatten() {
                f.store(true, Ordering::Relaxed);
            }
        }
    }

    /// Whether the job was cancelled.
    pub fn is_cancelled(&self, job: JobId) -> bool {
        self.inner
            .lock()
            .map(|b| b.shutdown || b.cancelled.contains(&job))
            .unwrap_or(false)
    }

    /// Attaches a flag that a cancel of `job` must set (set at once if already cancelled).
    pub fn attach(&self, job: JobId, flag: Arc<AtomicBool>) {
        if let Ok(mut b) = self.inner.lock() {
            flag.store(b.shutdown || b.cancelled.contains(&job), Ordering::Relaxed);
            b.flags.entry(job).or_default().push(flag);
        }
    }

    /// Forgets a finished job, clearing its flags for reuse.
    pub fn finish(&self, job: JobId) {
        if let Ok(mut b) = self.inner.lock() {
            b.cancelled.remove(&job);
            for f in b.flags.remove(&job).into_iter().flatten() {
                f.store(false, Ordering::Relaxed);
            }
        }
    }
}
