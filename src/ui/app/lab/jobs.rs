//! The lab's jobs in the window: each [`crate::lab::Job`] hands out its engine requests as
//! earlier ones end, takes their events as frames drain them, and gives back its engine lanes
//! when it is over, however it ended.

use super::LabJob;
use crate::lab::Job;
use crate::protocol::{Event, JobId, Request};
use crate::ui::app::{App, JobKind};

impl App {
    pub(super) fn lab_job_mut(&mut self, kind: LabJob) -> Option<&mut dyn Job> {
        match kind {
            LabJob::Eval => self.rt.lab.quality_job.as_mut().map(|j| j as &mut dyn Job),
            LabJob::Prompt => self.rt.lab.prompt_job.as_mut().map(|j| j as &mut dyn Job),
            LabJob::Diverge => self.rt.lab.diverge_job.as_mut().map(|j| j as &mut dyn Job),
        }
    }

    /// Sends the job's next requests (as many as it runs at once), or ends the job when it has
    /// none left.
    pub(super) fn lab_pump(&mut self, kind: LabJob) {
        loop {
            let id = self.rt.engine.client.next_job();
            let Some(job) = self.lab_job_mut(kind) else {
                return;
            };
            let next = job.next_request(id);
            let finished = job.finished();
            match next {
                // A request the engine could not take ends the job (lab_send said why).
                Some(req) => {
                    if self.lab_send(&req, kind).is_none() {
                        self.lab_end(kind);
                        return;
                    }
                }
                None => {
                    if finished {
                        self.lab_end(kind);
                    }
                    return;
                }
            }
        }
    }

    /// Keeps a finished job's results and gives back what it held in the engine. A job that
    /// failed may still have requests running at once with the failed one: they are cancelled
    /// before the lanes they run on are dropped, and their events are no longer applied.
    pub(super) fn lab_end(&mut self, kind: LabJob) {
        for job in self.lab_requests(Some(kind)) {
            self.rt.engine.jobs.remove(&job);
            self.housekeeping(&Request::Cancel { job });
        }
        let engine = &self.rt.engine.client;
        let releases = match kind {
            LabJob::Eval => self.rt.lab.quality_job.take().map(|j| {
                let r = j.release(&mut || engine.next_job());
                self.rt.lab.quality = j.rows;
                r
            }),
            LabJob::Prompt => self.rt.lab.prompt_job.take().map(|j| {
                let r = j.release(&mut || engine.next_job());
                self.rt.lab.runs = j.runs;
                self.rt.lab.scorecards = j.scorecards;
                r
            }),
            LabJob::Diverge => self.rt.lab.diverge_job.take().map(|j| {
                let r = j.release(&mut || engine.next_job());
                if j.result.is_some() {
                    self.rt.lab.divergence = j.result;
                }
                r
            }),
        };
        for req in releases.unwrap_or_default() {
            self.housekeeping(&req);
        }
    }

    pub(super) fn lab_cancel(&mut self) {
        if let Some(mut ladder) = self.rt.lab.ladder.take() {
            ladder.cancel();
            self.rt.lab.made = ladder.made;
        }
        for kind in [LabJob::Eval, LabJob::Prompt, LabJob::Diverge] {
            if let Some(job) = self.lab_job_mut(kind) {
                job.cancel();
            }
            self.lab_pump(kind);
        }
        for job in self.lab_requests(None) {
            self.housekeeping(&Request::Cancel { job });
        }
        self.rt.lab.message = Some("stopped".into());
    }

    /// The lab's requests in the engine: of one job, or of all with `None`.
    fn lab_requests(&self, kind: Option<LabJob>) -> Vec<JobId> {
        self.rt
            .engine
            .jobs
            .iter()
            .filter(|(_, k)| matches!(k, JobKind::Lab(l) if kind.is_none_or(|want| *l == want)))
            .map(|(j, _)| *j)
            .collect()
    }

    /// Applies an engine event of a lab job.
    pub fn apply_lab_event(&mut self, kind: LabJob, ev: Event) {
        let terminal = ev.is_terminal();
        if let Some(Err(f)) = self.lab_job_mut(kind).map(|j| j.on_event(ev)) {
            self.rt.lab.message = Some(f.message);
        }
        if terminal {
            self.lab_pump(kind);
        }
    }
}
