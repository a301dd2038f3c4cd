//! The engine thread's loop. Requests are taken in arrival order; a generation starts as soon as
//! its lane is free and steps in turn with every other running one (one token each), so all
//! lanes stream together. Anything else waits until the generations before it have ended (it
//! may change a lane they use), except `Status` and `Devices`, which only read. A generation
//! marked `exclusive` runs alone: it waits for the others to end and none starts beside it.
//! Generations that share a model and an adapter stack decode in one batch (`pool.rs`).

use std::collections::{BTreeMap, VecDeque};
use std::sync::mpsc::{Receiver, TryRecvError};
use std::time::Instant;

use super::generate::{ms_since, Generation, Sampled, Wanted};
use super::llama::SeqToken;
use super::pool::PoolId;
use super::*;

impl Worker {
    /// Serves requests from `rx` until it closes and the last job has ended.
    pub fn run(&mut self, rx: &Receiver<Request>, sink: &mut dyn EventSink) {
        let mut queue: VecDeque<(Instant, Request)> = VecDeque::new();
        let mut running: Vec<Generation> = Vec::new();
        let mut open = true;
        loop {
            if open && running.is_empty() && queue.is_empty() {
                match rx.recv() {
                    Ok(req) => queue.push_back((Instant::now(), req)),
                    Err(_) => open = false,
                }
            }
            while open {
                match rx.try_recv() {
                    Ok(req) => queue.push_back((Instant::now(), req)),
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => open = false,
                }
            }
            if !open && queue.is_empty() && running.is_empty() {
                return;
            }
            self.admit(&mut queue, &mut running, sink);
            self.step_round(&mut running, sink);
        }
    }

    /// Starts or handles what may go now, in order.
    fn admit(
        &mut self,
        queue: &mut VecDeque<(Instant, Request)>,
        running: &mut Vec<Generation>,
        sink: &mut dyn EventSink,
    ) {
        let mut i = 0;
        while i < queue.len() {
            if running.iter().any(|g| g.exclusive) {
                return;
            }
            let Some((_, req)) = queue.get(i) else { return };
            match req {
                Request::Generate { lane, exclusive, .. } => {
                    // An exclusive one waiting holds back everything behind it, even when its
                    // lane is busy.
                    if *exclusive && (i > 0 || !running.is_empty()) {
                        return;
                    }
                    if running.iter().any(|g| g.lane == lane.lane) {
                        i += 1;
                        continue;
                    }
                }
                Request::Status { .. } | Request::Devices { .. } => {}
                _ if i == 0 && running.is_empty() => {}
                _ => return,
            }
            let Some((received, req)) = queue.remove(i) else { return };
            match Wanted::from_request(req, received) {
                Ok(w) => {
                    let job = w.job;
                    match self.start_generation(w, running, sink) {
                        Ok(g) => running.push(g),
                        Err(e) => self.end(job, Err(e), sink),
                    }
                }
                Err(req) => self.handle(*req, sink),
            }
        }
    }

    /// One step of every running generation; those that end send their terminal event.
    /// Every generation samples (and streams) its token first; then those sharing a key move
    /// into pools, so a lane that just started shows its first token before a pool is set up
    /// for it; then each pool decodes its members' tokens in one `llama_decode`.
    fn step_round(&mut self, running: &mut Vec<Generation>, sink: &mut dyn EventSink) {
        let together = u32::try_from(running.len()).unwrap_or(u32::MAX);
        let mut ended: Vec<(usize, JobResultOr<RunStats>)> = Vec::new();
        let mut sampled: Vec<(usize, i32, i32)> = Vec::new();
        for (i, g) in running.iter_mut().enumerate() {
            g.lanes_together = g.lanes_together.max(together);
            match self.sample_step(g, sink) {
                Sampled::Ended(outcome) => ended.push((i, *outcome)),
                Sampled::Decode { token, pos } => sampled.push((i, token, pos)),
            }
        }
        let mut going = vec![false; running.len()];
        for &(i, _, _) in &sampled {
            going[i] = true;
        }
        self.group(running, &going);
        let mut batches: BTreeMap<PoolId, Vec<(usize, SeqToken)>> = BTreeMap::new();
        for (i, token, pos) in sampled {
            let Some(g) = running.get_mut(i) else { continue };
            match g.seat {
                Some((pool, seq)) => batches.entry(pool).or_default().push((
                    i,
                    SeqToken {
                        token,
                        pos,
                        seq,
                        logits: true,
                    },
                )),
                None => {
                    if let Some(outcome) = self.decode_own(g, token, pos, sink) {
                        ended.push((i, outcome));
                    }
                }
            }
        }
        for (pool, members) in batches {
            let batch: Vec<SeqToken> = members.iter().map(|(_, t)| *t).collect();
            let t0 = Instant::now();
            let result = self.pools.decode(pool, &batch);
            let ms = ms_since(t0);
            let n = u32::try_from(batch.len()).unwrap_or(u32::MAX);
            for (row, (i, _)) in members.into_iter().enumerate() {
                let Some(g) = running.get_mut(i) else { continue };
                match &result {
                    Ok(()) => g.decoded(Some(pool), row, ms, n),
                    Err(_) if self.cancel.is_cancelled(g.job) => {
                        ended.push((i, Ok(g.finish(StopReason::Cancelled, sink))));
                    }
                    Err(e) => ended.push((i, Err(JobError::from(e.to_string())))),
                }
            }
        }
        ended.sort_by_key(|(i, _)| *i);
        let mut done = Vec::with_capacity(ended.len());
        for (i, outcome) in ended.into_iter().rev() {
            let g = running.remove(i);
            if let Some((pool, seq)) = g.seat {
                self.pools.leave(pool, seq);
            }
            done.push((g.job, outcome));
        }
        for (job, outcome) in done.into_iter().rev() {
            self.end(job, outcome.map(|stats| JobResult::Generated { stats }), sink);
        }
    }
}
