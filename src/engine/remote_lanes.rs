//! The other side of the backend seam: a `Generate` whose lane has an endpoint runs on a
//! `remote-lane` thread through [`crate::remote`] instead of in the engine child, and answers on
//! the same event stream, so every front end drives remote lanes as it drives local ones.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::SyncSender;
use std::sync::{Arc, Mutex};

use super::client::{ClientError, Waker};
use crate::protocol::{Event, JobId, JobResult, LaneId, Request};
use crate::remote::{self, Probes};

/// Remote jobs in flight and the lanes that ran remotely.
#[derive(Default)]
pub(super) struct RemoteLanes {
    probes: Probes,
    cancels: Arc<Mutex<HashMap<JobId, Arc<AtomicBool>>>>,
    lanes: HashSet<LaneId>,
}

/// Why a request on a remote lane cannot run: what it needs that the OpenAI API does not give.
fn refusal(req: &Request) -> Option<String> {
    let remote = |l: &crate::protocol::LaneSpec| l.remote.as_ref().map(crate::protocol::RemoteSpec::label);
    match req {
        Request::Eval { lane, reference, .. } => remote(lane)
            .or_else(|| reference.as_ref().and_then(remote))
            .map(|r| format!("{r}: PPL and KLD need the full logits of every position, which an OpenAI-compatible endpoint does not give")),
        Request::Diverge { lane_a, lane_b, .. } => remote(lane_a).or_else(|| remote(lane_b)).map(|r| {
            format!("{r}: the engine's divergence reads both lanes' full next-token distributions, which an OpenAI-compatible endpoint does not give; the lab's approximate comparison (`nanolab diverge`, Compare tokens) reads its top tokens instead")
        }),
        Request::Bench { lane, .. } | Request::BatchedBench { lane, .. } => remote(lane)
            .map(|r| format!("{r}: bench measures llama.cpp's decode calls in the engine; time a remote lane with `run --endpoint` or `eval prompts`")),
        Request::SetupLane { lane, .. } => remote(lane).map(|r| format!("{r}: a remote lane has nothing to set up in the local engine")),
        _ => None,
    }
}

impl RemoteLanes {
    /// Takes `req` if it belongs to a remote lane or job; `Ok(false)` leaves it to the engine.
    pub(super) fn take(
        &mut self,
        req: &Request,
        tx: &SyncSender<Event>,
        waker: Option<&Waker>,
    ) -> Result<bool, ClientError> {
        let deliver = |ev: Event| {
            let _ = tx.send(ev);
            if let Some(w) = waker {
                w();
            }
        };
        if let Some(message) = refusal(req) {
            deliver(Event::Error {
                job: req.job().unwrap_or(0),
                message,
                cancelled: false,
                retry: false,
            });
            return Ok(true);
        }
        match req {
            Request::Generate {
                job,
                lane,
                prompt,
                sampling,
                top_n,
                ..
            } => {
                if lane.remote.is_none() {
                    self.lanes.remove(&lane.lane);
                    return Ok(false);
                }
                self.lanes.insert(lane.lane);
                let (lane, prompt, sampling, top_n) = (lane.clone(), prompt.clone(), sampling.clone(), *top_n);
                self.spawn(*job, req, tx, waker, move |job, probes, cancel, emit| {
                    let call = remote::GenerateCall {
                        spec: &lane,
                        prompt: &prompt,
                        sampling: &sampling,
                        top_n,
                    };
                    remote::generate(job, call, probes, cancel, emit)
                })?;
                Ok(true)
            }
            Request::NextTokens {
                job,
                lane,
                prompt,
                top_n,
            } if lane.remote.is_some() => {
                let (lane, prompt, top_n) = (lane.clone(), prompt.clone(), *top_n);
                self.spawn(
                    *job,
                    req,
                    tx,
                    waker,
                    move |job, probes, cancel, _| match remote::next_tokens(&lane, &prompt, top_n, probes, cancel) {
                        Ok(result) => Event::Done { job, result },
                        Err(e) => Event::Error {
                            job,
                            message: e.to_string(),
                            cancelled: cancel.load(Ordering::Relaxed),
                            retry: e.retriable(),
                        },
                    },
                )?;
                Ok(true)
            }
            Request::Cancel { job } => {
                let flag = self.cancels.lock().ok().and_then(|c| c.get(job).cloned());
                if let Some(f) = &flag {
                    f.store(true, Ordering::Relaxed);
                }
                Ok(flag.is_some())
            }
            // A lane id that ran remotely now runs locally: its drop is the engine's.
            Request::NextTokens { lane, .. } => {
                self.lanes.remove(&lane.lane);
                Ok(false)
            }
            Request::Diverge { lane_a, lane_b, .. } => {
                self.lanes.remove(&lane_a.lane);
                self.lanes.remove(&lane_b.lane);
                Ok(false)
            }
            Request::DropLane { job, lane } if self.lanes.remove(lane) => {
                deliver(Event::Done {
                    job: *job,
                    result: JobResult::LaneDropped,
                });
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    /// Runs `work` for `job` on a `remote-lane` thread with a cancel flag of its own; the
    /// events it emits and the terminal event it returns go to the event stream.
    fn spawn(
        &self,
        job: JobId,
        req: &Request,
        tx: &SyncSender<Event>,
        waker: Option<&Waker>,
        work: impl FnOnce(JobId, &Probes, &AtomicBool, &mut dyn FnMut(Event)) -> Event + Send + 'static,
    ) -> Result<(), ClientError> {
        let cancel = Arc::new(AtomicBool::new(false));
        if let Ok(mut c) = self.cancels.lock() {
            c.insert(job, Arc::clone(&cancel));
        }
        let (tx, waker, probes, cancels) = (
            tx.clone(),
            waker.cloned(),
            self.probes.clone(),
            Arc::clone(&self.cancels),
        );
        std::thread::Builder::new()
            .name("remote-lane".into())
            .spawn(move || {
                let wake = || {
                    if let Some(w) = &waker {
                        w();
                    }
                };
                let end = work(job, &probes, &cancel, &mut |ev| {
                    let _ = tx.send(ev);
                    wake();
                });
                if let Ok(mut c) = cancels.lock() {
                    c.remove(&job);
                }
                let _ = tx.send(end);
                wake();
            })
            .map(|_| ())
            .map_err(|e| ClientError::Write {
                action: req.action(),
                reason: e.to_string(),
            })
    }

    /// Whether a remote job is running (housekeeping for it needs no engine).
    pub(super) fn owns(&self, req: &Request) -> bool {
        match req {
            Request::Cancel { job } => self.cancels.lock().is_ok_and(|c| c.contains_key(job)),
            Request::DropLane { lane, .. } => self.lanes.contains(lane),
            _ => false,
        }
    }
}
