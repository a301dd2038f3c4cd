//! The lab's workflows written once, headless: token-level comparisons, quality evaluations over
//! a text, prompt-set scorecards, quantization ladders and the export bundle. A workflow is a
//! [`Job`] that hands out one engine request at a time and takes that request's events back, so
//! the same code runs under the CLI, which drives a job to its end with [`run_to_end`], and under
//! the window, which sends each request and feeds each event as frames drain them.

pub mod bundle;
pub mod diverge;
pub mod ladder;
pub mod prompts;
pub mod quality;

use std::fmt;

use crate::engine::{ClientError, EngineClient};
use crate::protocol::{Event, JobId, Request};

/// Why a job stopped early.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobFailed {
    /// What went wrong, naming the step (model file, lane and prompt).
    pub message: String,
    /// The user (or the caller) cancelled it.
    pub cancelled: bool,
}

impl fmt::Display for JobFailed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for JobFailed {}

/// Where a job is: steps done of all, and what the current step says (its own fraction and
/// stage, from the engine's progress events).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Progress {
    /// Steps finished.
    pub done: usize,
    /// Steps in all.
    pub total: usize,
    /// How far the current step is, 0..=1.
    pub fraction: f32,
    /// What the current step is doing.
    pub label: String,
}

/// A lab workflow as a sequence of engine requests.
pub trait Job {
    /// The next request to send, built with the id `job`, or `None` while as many are in
    /// flight as the job runs at once (most run one) or when the job is over. Events of several
    /// requests in flight come back in any order, each naming its job.
    fn next_request(&mut self, job: JobId) -> Option<Request>;
    /// An event of the request in flight. After an `Err` the job is over.
    fn on_event(&mut self, ev: Event) -> Result<(), JobFailed>;
    /// Whether every step is done (or the job failed).
    fn finished(&self) -> bool;
    /// Where the job is.
    fn progress(&self) -> &Progress;
    /// Stops handing out requests; the one in flight still ends through [`Job::on_event`].
    fn cancel(&mut self);
    /// Fire-and-forget requests that give back what the job held in the engine (its lanes'
    /// contexts, models nobody else uses), to send once it is over, however it ended.
    fn release(&self, next_job: &mut dyn FnMut() -> JobId) -> Vec<Request>;
}

/// Why [`run_to_end`] stopped.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The engine could not be reached.
    #[error(transparent)]
    Engine(#[from] ClientError),
    /// A step failed.
    #[error(transparent)]
    Failed(#[from] JobFailed),
}

/// Drives `job` to its end on `client`, one request at a time, calling `on_progress` after
/// every event. The job's [`Job::release`] requests are sent at the end whatever happened.
pub fn run_to_end(
    client: &mut EngineClient,
    job: &mut dyn Job,
    on_progress: &mut dyn FnMut(&Progress),
) -> Result<(), RunError> {
    let result = drive(client, job, on_progress);
    for req in job.release(&mut || client.next_job()) {
        // The process may be about to exit; a release that cannot be sent frees nothing anyone
        // is waiting for.
        if client.send_if_running(&req).is_err() {
            break;
        }
    }
    result
}

fn drive(client: &mut EngineClient, job: &mut dyn Job, on_progress: &mut dyn FnMut(&Progress)) -> Result<(), RunError> {
    let mut in_flight = std::collections::HashSet::new();
    loop {
        while let Some(req) = job.next_request(client.next_job()) {
            in_flight.extend(req.job());
            client.send(&req)?;
        }
        if in_flight.is_empty() {
            return Ok(());
        }
        let ev = client.recv("running a lab job")?;
        let Some(id) = ev.job().filter(|j| in_flight.contains(j)) else {
            continue;
        };
        if ev.is_terminal() {
            in_flight.remove(&id);
        }
        let result = job.on_event(ev);
        on_progress(job.progress());
        if let Err(f) = result {
            // The others still running are of no use now.
            for job in in_flight {
                client.send_if_running(&Request::Cancel { job })?;
            }
            return Err(f.into());
        }
    }
}

/// The terminal event of a request as a failure, when it is one; `what` names the step.
pub(crate) fn failure(ev: &Event, what: &str) -> Option<JobFailed> {
    match ev {
        Event::Error { message, cancelled, .. } => Some(JobFailed {
            message: if *cancelled {
                "stopped".into()
            } else if what.is_empty() {
                message.clone()
            } else {
                format!("{what}: {message}")
            },
            cancelled: *cancelled,
        }),
        _ => None,
    }
}
