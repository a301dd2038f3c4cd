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
        self.stage = Stage::Read(0);
        Ok(())
    }

    fn after_read(&mut self, i: usize, prompt_tokens: u32, top: Vec<TopToken>) {
        if i == 0 {
            self.prompt_tokens = prompt_tokens;
        }
        self.read.push(top);
        self.progress.done += 1;
        if i + 1 < self.generated.len() {
            self.progress.label = format!("lane B reads A's token {} of {}", i + 2, self.generated.len());
            self.stage = Stage::Read(i + 1);
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
        if self.sent {
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

    fn finished(&self) -> bool {
        matches!(self.stage, Stage::Over)
    }

    fn progress(&self) -> &Progress {
        &self.progress
    }

    fn cancel(&mut self) {
        self.stage = Stage::Over;
    }

    /// Drops the local lanes' contexts (a remote lane holds nothing in the engine).
    fn release(&self, next_job: &mut dyn FnMut() -> JobId) -> Vec<crate::protocol::Request> {
        [&self.a, &self.b]
            .into_iter()
            .filter(|l| l.remote.is_none())
            .map(|l| crate::protocol::Request::DropLane {
                job: next_job(),
                lane: l.lane,
            })
            .collect()
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
}
