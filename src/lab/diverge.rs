//! Where and why two lanes differ, token by token. Two local lanes are compared exactly by the
//! engine in one `Diverge` request (teacher forcing over both full distributions). When a lane
//! runs on an endpoint, an OpenAI-compatible API gives a position's top tokens, not its whole
//! distribution, so the comparison is rebuilt from what it does give: lane A generates with its
//! top `N` per token (token ids needed), then lane B reads the prompt and A's first `i` tokens,
//! as ids, for every `i`, one `NextTokens` request each (teacher forcing, one position per
//! request), listing its top `N`. Both lanes go through the backend seam, so either may be local
//! or remote. Top-1 agreement is exact; KL and p_B are approximate, and the result says how.

use super::{failure, Job, JobFailed, Progress};
use crate::eval::divergence::{self, PositionDivergence};
use crate::protocol::{
    DivergenceResult, Event, JobId, JobResult, LaneSpec, Prompt, Sampling, TokenDivergence, TopToken,
};

/// How the numbers were made, stored with the result.
const METHOD: &str = "a lane ran on an endpoint, which lists only its top tokens: KL(A||B) is over A's top tokens plus one bucket for all others (a lower bound of the full KL when B lists those tokens), and a token missing from B's list is given B's last listed probability (an upper bound)";

/// One token lane A generated.
#[derive(Debug, Clone)]
struct Generated {
    id: i32,
    piece: String,
    prob: f32,
    top: Vec<TopToken>,
}

#[derive(Debug)]
enum Stage {
    /// Both lanes are local: the engine compares them in one request.
    Exact,
    Generate,
    /// Lane B reads the prompt and this many of A's tokens.
    Read(usize),
    Over,
}

/// The comparison, one request at a time.
#[derive(Debug)]
pub struct DivergeJob {
    a: LaneSpec,
    b: LaneSpec,
    prompt: Prompt,
    sampling: Sampling,
    top_n: u32,
    stage: Stage,
    sent: bool,
    /// Cancelled with a request in flight: the job waits for that request's end, so its lanes
    /// are released only once the engine is done with them.
    cancelled: bool,
    generated: Vec<Generated>,
    /// A token lane A's endpoint sent without an id.
    no_ids: bool,
    text: String,
    prompt_tokens: u32,
    read: Vec<Vec<TopToken>>,
    progress: Progress,
    /// The comparison, once done.
    pub result: Option<DivergenceResult>,
}

impl DivergeJob {
    /// Lane A generates from `prompt` as `sampling` says and lane B reads it; `top_n` tokens are
    /// listed per position (1-10). Exact when both lanes are local, else approximate.
    pub fn new(a: LaneSpec, b: LaneSpec, prompt: Prompt, sampling: Sampling, top_n: u32) -> Self {
        let exact = a.remote.is_none() && b.remote.is_none();
        Self {
            a,
            b,
            prompt,
            sampling,
            top_n: top_n.clamp(1, 10),
            stage: if exact { Stage::Exact } else { Stage::Generate },
            sent: false,
            cancelled: false,
            generated: Vec::new(),
            no_ids: false,
            text: String::new(),
            prompt_tokens: 0,
            read: Vec::new(),
            progress: Progress {
                total: 1,
                label: if exact { "comparing" } else { "lane A generates" }.into(),
                ..Progress::default()
            },
            result: None,
        }
    }

    fn fail(&mut self, message: String) -> Result<(), JobFailed> {
        self.stage = Stage::Over;
        Err(JobFailed {
            message,
            cancelled: false,
        })
    }

    fn after_generate(&mut self, text: String) -> Result<(), JobFailed> {
        if self.no_ids {
            return self.fail(format!(
                "lane A's endpoint ({}) sends no token ids with its tokens; lane B must read exactly A's tokens, so put the endpoint in lane B or use one that sends ids (llama-server does)",
                self.a.model.path.display()
            ));
        }
        if self.generated.is_empty() {
            return self.fail(
                "lane A generated nothing to compare (it ended at once); change the prompt or raise max tokens".into(),
            );
        }
        self.text = text;
        self.progress.total = 1 + self.generated.len();
        self.progress.done = 1;
        self.reading(0);
        Ok(())
    }

    /// Lane B's next step reads the prompt and A's first `i` tokens. The engine's progress
    /// events of the step before left their own label and fraction, which no longer apply.
    fn reading(&mut self, i: usize) {
        self.progress.label = format!("lane B reads A's token {} of {}", i + 1, self.generated.len());
        self.progress.fraction = 0.0;
        self.stage = Stage::Read(i);
    }

    fn after_read(&mut self, i: usize, prompt_tokens: u32, top: Vec<TopToken>) {
        if i == 0 {
            self.prompt_tokens = prompt_tokens;
        }
        self.read.push(top);
        self.progress.done += 1;
        if i + 1 < self.generated.len() {
            self.reading(i + 1);
        } else {
            self.result = Some(self.compare());
            self.stage = Stage::Over;
        }
    }

    fn compare(&self) -> DivergenceResult {
        let positions: Vec<PositionDivergence> = self
            .generated
            .iter()
            .zip(&self.read)
            .map(|(g, top_b)| position(g, top_b))
            .collect();
        let kls: Vec<f64> = positions.iter().map(|p| p.kl).collect();
        let tokens = self
            .generated
            .iter()
            .zip(&self.read)
            .zip(&positions)
            .enumerate()
            .map(|(index, ((g, top_b), p))| TokenDivergence {
                index,
                token_id: g.id,
                piece: g.piece.clone(),
                kl: p.kl,
                top1_agree: p.top1_agree,
                p_a: p.p_a,
                p_b: p.p_b,
                top_a: g.top.clone(),
                top_b: top_b.clone(),
            })
            .collect();
        DivergenceResult {
            lane_a: self.a.lane,
            lane_b: self.b.lane,
            text: self.text.clone(),
            prompt_tokens: self.prompt_tokens as usize,
            tokens,
            summary: divergence::summarise(&positions),
            most_divergent: divergence::most_divergent(&kls, 10),
            approximate: Some(METHOD.into()),
        }
    }
}

/// Whether two listed tokens are the same: by id where both have one, else by text.
fn same(x: &TopToken, y: &TopToken) -> bool {
    if x.token_id >= 0 && y.token_id >= 0 {
        x.token_id == y.token_id
    } else {
        x.piece == y.piece
    }
}

/// Lane B's probability of `t` from its list; a token it does not list gets its last listed
/// probability, the most it can have.
fn prob_in(top_b: &[TopToken], t: &TopToken) -> f32 {
    top_b
        .iter()
        .find(|b| same(b, t))
        .or(top_b.last())
        .map_or(0.0, |b| b.prob)
}

/// One position from A's token and list and B's list.
fn position(g: &Generated, top_b: &[TopToken]) -> PositionDivergence {
    let mine = TopToken {
        piece: g.piece.clone(),
        token_id: g.id,
        prob: g.prob,
    };
    // A's listed tokens and the bucket of all others, under both lanes.
    let p: Vec<f64> = g.top.iter().map(|t| f64::from(t.prob)).collect();
    let q: Vec<f64> = g.top.iter().map(|t| f64::from(prob_in(top_b, t))).collect();
    let rest = |v: &[f64]| (1.0 - v.iter().sum::<f64>()).max(1e-10);
    let mut kl = 0.0;
    for (&pa, &qb) in p.iter().zip(&q).chain(std::iter::once((&rest(&p), &rest(&q)))) {
        if pa > 0.0 {
            kl += pa * (pa / qb.max(1e-10)).ln();
        }
    }
    PositionDivergence {
        kl: kl.max(0.0),
        top1_agree: match (g.top.first(), top_b.first()) {
            (Some(x), Some(y)) => same(x, y),
            _ => false,
        },
        p_a: g.prob,
        p_b: prob_in(top_b, &mine),
        top_a: Vec::new(),
        top_b: Vec::new(),
    }
}

impl Job for DivergeJob {
    fn next_request(&mut self, job: JobId) -> Option<crate::protocol::Request> {
        if self.sent || self.cancelled {
            return None;
        }
        let req = match self.stage {
            Stage::Exact => crate::protocol::Request::Diverge {
                job,
                lane_a: self.a.clone(),
                lane_b: self.b.clone(),
                prompt: self.prompt.clone(),
                sampling: self.sampling.clone(),
                top_n: self.top_n,
            },
            Stage::Generate => crate::protocol::Request::Generate {
                job,
                lane: self.a.clone(),
                prompt: self.prompt.clone(),
                sampling: self.sampling.clone(),
                top_n: self.top_n,
                exclusive: false,
            },
            Stage::Read(i) => crate::protocol::Request::NextTokens {
                job,
                lane: self.b.clone(),
                prompt: Prompt::Continued {
                    prompt: Box::new(self.prompt.clone()),
                    tokens: self.generated.iter().take(i).map(|g| g.id).collect(),
                },
                top_n: self.top_n,
            },
            Stage::Over => return None,
        };
        self.sent = true;
        Some(req)
    }

    fn on_event(&mut self, ev: Event) -> Result<(), JobFailed> {
        if !self.cancelled {
            return self.take(ev);
        }
        if ev.is_terminal() {
            self.sent = false;
            self.stage = Stage::Over;
            return Err(JobFailed {
                message: "stopped".into(),
                cancelled: true,
            });
        }
        Ok(())
    }

    fn finished(&self) -> bool {
        matches!(self.stage, Stage::Over)
    }

    fn progress(&self) -> &Progress {
        &self.progress
    }

    fn cancel(&mut self) {
        if self.sent {
            self.cancelled = true;
        } else {
            self.stage = Stage::Over;
        }
    }

    /// Drops both lanes: the local ones' contexts, and the remote set's record of a remote one.
    fn release(&self, next_job: &mut dyn FnMut() -> JobId) -> Vec<crate::protocol::Request> {
        [&self.a, &self.b]
            .into_iter()
            .map(|l| crate::protocol::Request::DropLane {
                job: next_job(),
                lane: l.lane,
            })
            .collect()
    }
}

impl DivergeJob {
    /// An event of the request in flight, the job not cancelled.
    fn take(&mut self, ev: Event) -> Result<(), JobFailed> {
        let what = match self.stage {
            Stage::Exact => "",
            Stage::Generate => "lane A",
            _ => "lane B",
        };
        if let Some(f) = failure(&ev, what) {
            self.stage = Stage::Over;
            return Err(f);
        }
        match ev {
            Event::Token {
                token_id,
                piece,
                prob,
                top,
                ..
            } => {
                if token_id >= 0 {
                    self.generated.push(Generated {
                        id: token_id,
                        piece,
                        prob,
                        top,
                    });
                } else if !piece.is_empty() {
                    self.no_ids = true;
                }
                Ok(())
            }
            Event::Progress { fraction, stage, .. } => {
                self.progress.fraction = fraction;
                self.progress.label = stage;
                Ok(())
            }
            Event::Done { result, .. } => {
                self.sent = false;
                match (&self.stage, result) {
                    (Stage::Exact, JobResult::Divergence { result }) => {
                        self.progress.done = 1;
                        self.result = Some(result);
                        self.stage = Stage::Over;
                        Ok(())
                    }
                    (Stage::Generate, JobResult::Generated { stats }) => self.after_generate(stats.text),
                    (Stage::Read(i), JobResult::NextTokens { prompt_tokens, top }) => {
                        let i = *i;
                        self.after_read(i, prompt_tokens, top);
                        Ok(())
                    }
                    (_, other) => self.fail(format!("unexpected answer: {other:?}")),
                }
            }
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tok(id: i32, prob: f32) -> TopToken {
        TopToken {
            piece: format!("t{id}"),
            token_id: id,
            prob,
        }
    }

    fn generated(id: i32, top: Vec<TopToken>) -> Generated {
        let prob = top.iter().find(|t| t.token_id == id).map_or(0.0, |t| t.prob);
        Generated {
            id,
            piece: format!("t{id}"),
            prob,
            top,
        }
    }

    #[test]
    fn identical_lists_diverge_zero_and_agree() {
        let top = vec![tok(5, 0.6), tok(7, 0.3)];
        let p = position(&generated(5, top.clone()), &top);
        assert!(p.kl.abs() < 1e-12, "{}", p.kl);
        assert!(p.top1_agree);
        assert_eq!((p.p_a, p.p_b), (0.6, 0.6));
    }

    #[test]
    fn a_token_b_does_not_list_gets_b_s_last_probability() {
        let a = vec![tok(5, 0.6), tok(7, 0.3)];
        let b = vec![tok(9, 0.5), tok(5, 0.2)];
        let p = position(&generated(7, a), &b);
        assert!(!p.top1_agree);
        assert_eq!(p.p_b, 0.2);
        // By hand: A = (0.6, 0.3, 0.1), B = (0.2, 0.2, 0.6) over (t5, t7, rest).
        let want = 0.6 * (0.6f64 / 0.2).ln() + 0.3 * (0.3f64 / 0.2).ln() + 0.1 * (0.1f64 / 0.6).ln();
        assert!((p.kl - want).abs() < 1e-6, "{} vs {want}", p.kl);
    }

    /// Lane A local, lane B on an endpoint: the approximate, step-by-step path.
    fn remote_job() -> DivergeJob {
        let b = crate::protocol::RemoteSpec {
            url: "http://127.0.0.1:9".into(),
            model: "m".into(),
            api_key_env: None,
        };
        DivergeJob::new(
            LaneSpec::local(1, "a.gguf", 512, Vec::new()),
            LaneSpec::on_endpoint(2, b, Vec::new()),
            Prompt::Raw { text: "hi".into() },
            Sampling::default(),
            3,
        )
    }

    #[test]
    fn a_cancel_in_flight_waits_for_the_request_s_end_and_sends_nothing_more() {
        let mut job = remote_job();
        assert!(matches!(
            job.next_request(7),
            Some(crate::protocol::Request::Generate { .. })
        ));
        job.cancel();
        assert!(!job.finished(), "the lanes are still in use by the request in flight");
        assert!(job.next_request(8).is_none());
        let progress = Event::Progress {
            job: 7,
            fraction: 0.5,
            stage: "decoding".into(),
        };
        assert_eq!(job.on_event(progress), Ok(()));
        assert!(!job.finished());
        let end = Event::Error {
            job: 7,
            message: "cancelled".into(),
            cancelled: true,
            retry: false,
        };
        let f = job.on_event(end).unwrap_err();
        assert!(f.cancelled, "{f:?}");
        assert!(job.finished());
        assert!(job.next_request(9).is_none());
    }

    #[test]
    fn a_cancel_between_requests_ends_the_job_at_once() {
        let mut job = remote_job();
        job.cancel();
        assert!(job.finished());
        assert!(job.next_request(1).is_none());
    }

    #[test]
    fn reading_starts_with_its_own_label_after_the_engine_s_progress() {
        let mut job = remote_job();
        job.generated = vec![generated(5, vec![tok(5, 0.9)]), generated(6, vec![tok(6, 0.8)])];
        job.progress.fraction = 0.7;
        job.progress.label = "decoding".into();
        job.after_generate("t5t6".into()).unwrap();
        assert_eq!(job.progress().label, "lane B reads A's token 1 of 2");
        assert_eq!(job.progress().fraction, 0.0);
        assert_eq!((job.progress().done, job.progress().total), (1, 3));
        job.after_read(0, 4, vec![tok(5, 0.5)]);
        assert_eq!(job.progress().label, "lane B reads A's token 2 of 2");
        match job.next_request(3) {
            Some(crate::protocol::Request::NextTokens { lane, prompt, .. }) => {
                assert_eq!(lane.lane, 2);
                match prompt {
                    Prompt::Continued { tokens, .. } => assert_eq!(tokens, vec![5]),
                    other => panic!("{other:?}"),
                }
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn release_drops_both_lanes_local_and_remote() {
        let job = remote_job();
        let mut next = 10;
        let dropped: Vec<_> = job
            .release(&mut || {
                next += 1;
                next
            })
            .into_iter()
            .map(|r| match r {
                crate::protocol::Request::DropLane { job, lane } => (job, lane),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(dropped, vec![(11, 1), (12, 2)]);
    }
}
