//! The bridge between the async HTTP side and the supervised engine child: one named thread owns
//! the [`EngineClient`], takes submissions from a bounded queue, and routes each engine event to
//! the request that caused it. A request whose client went away is cancelled in the engine.
//! When the engine dies, every request in flight gets its error and the next one restarts it.
//! Each served model or lane has `parallel` engine lanes (slots); a generation goes to the slot
//! with the fewest jobs, so up to `parallel` of them run together in the engine.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender, TrySendError};
use tokio::sync::mpsc;

use crate::engine::EngineClient;
use crate::protocol::{Event, JobId, LaneId, Request};

/// How often the thread looks for clients that went away while their job waits in the engine.
const DISCONNECT_POLL: Duration = Duration::from_millis(100);

/// Builds the engine request once the dispatcher has given the job its id.
pub type BuildRequest = Box<dyn FnOnce(JobId) -> Request + Send>;

struct Submission {
    build: BuildRequest,
    events: mpsc::Sender<Event>,
}

/// Why a submission was refused.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    /// As many requests are queued or running as the server takes.
    #[error("the server is busy: {0} requests are queued or running")]
    Busy(usize),
    /// The dispatcher thread is gone (the server is shutting down).
    #[error("the server is shutting down")]
    Closed,
}

/// A handle to the dispatcher thread; cheap to clone.
#[derive(Clone)]
pub struct Dispatcher {
    tx: Sender<Submission>,
    in_flight: Arc<AtomicUsize>,
    capacity: usize,
}

impl Dispatcher {
    /// Starts the thread; it ends when every handle is dropped and its last job has ended.
    pub fn start(capacity: usize, parallel: u32) -> anyhow::Result<(Self, std::thread::JoinHandle<()>)> {
        let capacity = capacity.max(1);
        let (tx, rx) = crossbeam_channel::bounded(capacity);
        let in_flight = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&in_flight);
        let handle = std::thread::Builder::new()
            .name("serve-engine".into())
            .spawn(move || run(rx, counter, LaneId::from(parallel.max(1))))?;
        Ok((
            Self {
                tx,
                in_flight,
                capacity,
            },
            handle,
        ))
    }

    /// Requests queued or running now.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::SeqCst)
    }

    /// Queues a job; its events (ending with exactly one terminal event) arrive on `events`.
    pub fn submit(&self, build: BuildRequest, events: mpsc::Sender<Event>) -> Result<(), SubmitError> {
        // Reserve a slot first so that concurrent submitters cannot overshoot the capacity.
        let before = self.in_flight.fetch_add(1, Ordering::SeqCst);
        if before >= self.capacity {
            self.in_flight.fetch_sub(1, Ordering::SeqCst);
            return Err(SubmitError::Busy(before));
        }
        match self.tx.try_send(Submission { build, events }) {
            Ok(()) => Ok(()),
            Err(e) => {
                self.in_flight.fetch_sub(1, Ordering::SeqCst);
                match e {
                    TrySendError::Full(_) => Err(SubmitError::Busy(before)),
                    TrySendError::Disconnected(_) => Err(SubmitError::Closed),
                }
            }
        }
    }
}

struct Active {
    events: mpsc::Sender<Event>,
    cancel_sent: bool,
    /// The engine lane its generation runs on.
    lane: Option<LaneId>,
}

fn run(rx: Receiver<Submission>, in_flight: Arc<AtomicUsize>, slots: LaneId) {
    let mut client = EngineClient::new(None);
    let (wake_tx, wake_rx) = crossbeam_channel::bounded::<()>(1);
    client.set_waker(Arc::new(move || {
        // A full wake channel already holds a wake-up.
        let _ = wake_tx.try_send(());
    }));
    let mut jobs: HashMap<JobId, Active> = HashMap::new();
    let mut open = true;
    while open || !jobs.is_empty() {
        crossbeam_channel::select! {
            recv(rx) -> msg => match msg {
                Ok(sub) => start(&mut client, &mut jobs, &in_flight, slots, sub),
                Err(_) => open = false,
            },
            recv(wake_rx) -> _ => {},
            default(DISCONNECT_POLL) => {},
        }
        while let Ok(ev) = client.events().try_recv() {
            route(&mut client, &mut jobs, &in_flight, ev);
        }
        for (job, a) in &mut jobs {
            if !a.cancel_sent && a.events.is_closed() {
                a.cancel_sent = true;
                tracing::info!("client of job {job} went away: cancelling it");
                if let Err(e) = client.send_if_running(&Request::Cancel { job: *job }) {
                    tracing::warn!("could not cancel job {job}: {e}");
                }
            }
        }
        if !open && rx.is_empty() && jobs.is_empty() {
            break;
        }
    }
}

fn start(
    client: &mut EngineClient,
    jobs: &mut HashMap<JobId, Active>,
    in_flight: &AtomicUsize,
    slots: LaneId,
    sub: Submission,
) {
    let job = client.next_job();
    let mut req = (sub.build)(job);
    let mut lane = None;
    if let Request::Generate { lane: spec, .. } = &mut req {
        // Served model or lane `k` owns engine lanes k*slots .. k*slots+slots-1.
        let first = spec.lane.saturating_mul(slots);
        let busy = |l: LaneId| jobs.values().filter(|a| a.lane == Some(l)).count();
        spec.lane = (first..first.saturating_add(slots))
            .min_by_key(|&l| busy(l))
            .unwrap_or(first);
        lane = Some(spec.lane);
    }
    match client.send(&req) {
        Ok(()) => {
            jobs.insert(
                job,
                Active {
                    events: sub.events,
                    cancel_sent: false,
                    lane,
                },
            );
        }
        Err(e) => {
            in_flight.fetch_sub(1, Ordering::SeqCst);
            let _ = sub.events.try_send(Event::Error {
                job,
                message: e.to_string(),
                cancelled: false,
                retry: false,
            });
        }
    }
}

fn route(client: &mut EngineClient, jobs: &mut HashMap<JobId, Active>, in_flight: &AtomicUsize, ev: Event) {
    let Some(job) = ev.job() else { return };
    let terminal = ev.is_terminal();
    let Some(active) = jobs.get_mut(&job) else { return };
    match active.events.try_send(ev) {
        Ok(()) | Err(mpsc::error::TrySendError::Closed(_)) => {}
        Err(mpsc::error::TrySendError::Full(ev)) => {
            // The channel holds one slot per token the request may produce, so only a client
            // that stopped reading fills it: progress lines may go, a token may not.
            if matches!(ev, Event::Token { .. }) && !active.cancel_sent {
                active.cancel_sent = true;
                tracing::warn!("job {job}: its client stopped reading; cancelling it");
                if let Err(e) = client.send_if_running(&Request::Cancel { job }) {
                    tracing::warn!("could not cancel job {job}: {e}");
                }
            }
        }
    }
    if terminal {
        jobs.remove(&job);
        in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}
