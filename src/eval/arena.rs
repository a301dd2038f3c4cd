//! Blind A/B votes and what they say: each vote is turned into pairwise games (a pick beats
//! every other lane shown; a tie or "both bad" is a tie between every pair shown), then per
//! stack a win rate with a 95 % Wilson interval, Bradley-Terry ratings for three or more stacks,
//! and win rates per prompt tag.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// z for a two-sided 95 % interval.
const Z_95: f64 = 1.959_963_984_540_054;

/// What the audience said about one prompt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// The lane shown at this position (0 = A) was best.
    Pick(usize),
    /// Equally good.
    Tie,
    /// Equally bad.
    BothBad,
}

/// One vote, with what was shown: the stacks in the order they were lettered A, B, ….
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Vote {
    /// Prompt id.
    pub prompt_id: String,
    /// The prompt's tags.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Stack labels in shown order (A first).
    pub shown: Vec<String>,
    /// The vote.
    pub verdict: Verdict,
    /// When, in ms since the Unix epoch.
    #[serde(default)]
    pub at_unix_ms: u64,
}

/// The arena's record: the seed of the per-prompt shuffles and every vote so far.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ArenaRecord {
    /// Seed of the order lanes are shown in (prompt `i` uses `shuffle(seed, i)`).
    pub seed: u64,
    /// Votes, oldest first.
    pub votes: Vec<Vote>,
}

/// The order `n` lanes are shown in for prompt `round`: a permutation of `0..n` (position →
/// lane), from a SplitMix64 stream so the same seed and round always give the same order.
pub fn shuffle(seed: u64, round: u64, n: usize) -> Vec<usize> {
    let mut state = seed ^ round.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let mut next = || {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    let mut order: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        let j = (next() % (i as u64 + 1)) as usize;
        order.swap(i, j);
    }
    order
}

/// A stack's record.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StackStats {
    /// Stack label.
    pub stack: String,
    /// Pairwise games it took part in.
    pub games: u32,
    /// Games won.
    pub wins: u32,
    /// Games tied (ties and "both bad").
    pub ties: u32,
    /// Games lost.
    pub losses: u32,
    /// Votes it was shown in that said "both bad".
    pub both_bad: u32,
    /// (wins + ties / 2) / games.
    pub win_rate: f64,
    /// 95 % Wilson interval of the win rate, low end.
    pub wilson_low: f64,
    /// 95 % Wilson interval of the win rate, high end.
    pub wilson_high: f64,
    /// Bradley-Terry rating on the Elo scale (400·log10 of the strength, mean 0 over the rated
    /// stacks); `None` with fewer than three stacks, or when it does not exist (a stack that never
    /// won or never lost has no finite maximum-likelihood strength).
    pub bradley_terry: Option<f64>,
}

/// One stack's win rate on the prompts with one tag.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TagStats {
    /// Tag.
    pub tag: String,
    /// Stack label.
    pub stack: String,
    /// Pairwise games on prompts with this tag.
    pub games: u32,
    /// (wins + ties / 2) / games.
    pub win_rate: f64,
}

/// Everything the arena's votes say.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ArenaStats {
    /// Votes counted.
    pub votes: usize,
    /// Per stack, by win rate (best first).
    pub stacks: Vec<StackStats>,
    /// Per tag and stack, sorted by tag then stack.
    pub tags: Vec<TagStats>,
}

/// The 95 % Wilson score interval of a proportion `p` over `n` trials ((0, 1) when n = 0).
pub fn wilson_95(p: f64, n: f64) -> (f64, f64) {
    if n <= 0.0 {
        return (0.0, 1.0);
    }
    let z2 = Z_95 * Z_95;
    let centre = (p + z2 / (2.0 * n)) / (1.0 + z2 / n);
    let half = Z_95 / (1.0 + z2 / n) * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt();
    ((centre - half).max(0.0), (centre + half).min(1.0))
}

/// Pairwise games between stacks: `won[(i, j)]` games i won against j, `tied[(i, j)]` (= `tied[(j,
/// i)]`) games they tied.
#[derive(Debug, Default)]
struct Games {
    stacks: Vec<String>,
    won: BTreeMap<(usize, usize), u32>,
    tied: BTreeMap<(usize, usize), u32>,
}

impl Games {
    fn index(&mut self, stack: &str) -> usize {
        if let Some(i) = self.stacks.iter().position(|s| s == stack) {
            return i;
        }
        self.stacks.push(stack.to_string());
        self.stacks.len() - 1
    }

    fn add(&mut self, vote: &Vote) {
        let ids: Vec<usize> = vote.shown.iter().map(|s| self.index(s)).collect();
        for (a, &i) in ids.iter().enumerate() {
            for (b, &j) in ids.iter().enumerate().skip(a + 1) {
                if i == j {
                    continue;
                }
                match vote.verdict {
                    Verdict::Pick(w) if w == a => *self.won.entry((i, j)).or_default() += 1,
                    Verdict::Pick(w) if w == b => *self.won.entry((j, i)).or_default() += 1,
                    // A pick of a third lane says nothing about this pair.
                    Verdict::Pick(_) => {}
                    Verdict::Tie | Verdict::BothBad => {
                        *self.tied.entry((i, j)).or_default() += 1;
                        *self.tied.entry((j, i)).or_default() += 1;
                    }
                }
            }
        }
    }

    fn get(map: &BTreeMap<(usize, usize), u32>, i: usize, j: usize) -> f64 {
        f64::from(map.get(&(i, j)).copied().unwrap_or(0))
    }

    /// Games between i and j.
    fn between(&self, i: usize, j: usize) -> f64 {
        Self::get(&self.won, i, j) + Self::get(&self.won, j, i) + Self::get(&self.tied, i, j)
    }

    /// i's points against j: a win 1, a tie ½.
    fn score(&self, i: usize, j: usize) -> f64 {
        Self::get(&self.won, i, j) + Self::get(&self.tied, i, j) / 2.0
    }

    fn sum(map: &BTreeMap<(usize, usize), u32>, i: usize) -> u32 {
        map.range((i, 0)..(i + 1, 0)).map(|(_, n)| n).sum()
    }

    fn wins(&self, i: usize) -> u32 {
        Self::sum(&self.won, i)
    }

    fn ties(&self, i: usize) -> u32 {
        Self::sum(&self.tied, i)
    }

    fn losses(&self, i: usize) -> u32 {
        (0..self.stacks.len())
            .map(|j| self.won.get(&(j, i)).copied().unwrap_or(0))
            .sum()
    }

    fn played(&self, i: usize) -> u32 {
        self.wins(i) + self.ties(i) + self.losses(i)
    }

    fn points(&self, i: usize) -> f64 {
        f64::from(self.wins(i)) + f64::from(self.ties(i)) / 2.0
    }

    /// Bradley-Terry strengths by the MM iteration (Hunter 2004), ties as half a win each; a
    /// stack with no points, or no points lost, has no finite strength and is left out.
    fn bradley_terry(&self) -> Vec<Option<f64>> {
        let n = self.stacks.len();
        let rated: Vec<bool> = (0..n)
            .map(|i| self.points(i) > 0.0 && self.points(i) < f64::from(self.played(i)))
            .collect();
        let rated_n = rated.iter().filter(|&&r| r).count();
        if rated_n < 2 {
            return vec![None; n];
        }
        let mut p = vec![1.0_f64; n];
        for _ in 0..100_000 {
            let mut next = p.clone();
            for i in (0..n).filter(|&i| rated[i]) {
                let rated = &rated;
                let others = || (0..n).filter(move |&j| j != i && rated[j]);
                let points: f64 = others().map(|j| self.score(i, j)).sum();
                let denom: f64 = others().map(|j| self.between(i, j) / (p[i] + p[j])).sum();
                if denom > 0.0 && points > 0.0 {
                    next[i] = points / denom;
                }
            }
            let log_mean = (0..n).filter(|&i| rated[i]).map(|i| next[i].ln()).sum::<f64>() / rated_n as f64;
            let mut moved = 0.0_f64;
            for i in (0..n).filter(|&i| rated[i]) {
                next[i] = (next[i].ln() - log_mean).exp();
                moved = moved.max((next[i] - p[i]).abs());
            }
            p = next;
            if moved < 1e-13 {
                break;
            }
        }
        (0..n).map(|i| rated[i].then(|| 400.0 * p[i].log10())).collect()
    }
}

/// The statistics of `votes`.
pub fn stats(votes: &[Vote]) -> ArenaStats {
    let mut all = Games::default();
    let mut by_tag: BTreeMap<&str, Games> = BTreeMap::new();
    let mut both_bad: BTreeMap<&str, u32> = BTreeMap::new();
    for v in votes {
        all.add(v);
        for t in &v.tags {
            by_tag.entry(t.as_str()).or_default().add(v);
        }
        if v.verdict == Verdict::BothBad {
            for s in &v.shown {
                *both_bad.entry(s.as_str()).or_default() += 1;
            }
        }
    }
    let ratings = if all.stacks.len() > 2 {
        all.bradley_terry()
    } else {
        vec![None; all.stacks.len()]
    };
    let rate = |g: &Games, i: usize| {
        let games = g.played(i);
        if games > 0 {
            g.points(i) / f64::from(games)
        } else {
            0.0
        }
    };
    let mut stacks: Vec<StackStats> = all
        .stacks
        .iter()
        .enumerate()
        .map(|(i, stack)| {
            let games = all.played(i);
            let win_rate = rate(&all, i);
            let (wilson_low, wilson_high) = wilson_95(win_rate, f64::from(games));
            StackStats {
                stack: stack.clone(),
                games,
                wins: all.wins(i),
                ties: all.ties(i),
                losses: all.losses(i),
                both_bad: both_bad.get(stack.as_str()).copied().unwrap_or(0),
                win_rate,
                wilson_low,
                wilson_high,
                bradley_terry: ratings[i],
            }
        })
        .collect();
    stacks.sort_by(|a, b| b.win_rate.total_cmp(&a.win_rate).then_with(|| a.stack.cmp(&b.stack)));
    let mut tags = Vec::new();
    for (tag, g) in &by_tag {
        for (i, stack) in g.stacks.iter().enumerate() {
            tags.push(TagStats {
                tag: (*tag).to_string(),
                stack: stack.clone(),
                games: g.played(i),
                win_rate: rate(g, i),
            });
        }
    }
    tags.sort_by(|a, b| a.tag.cmp(&b.tag).then_with(|| a.stack.cmp(&b.stack)));
    ArenaStats {
        votes: votes.len(),
        stacks,
        tags,
    }
}

/// The statistics as markdown tables.
pub fn stats_table(s: &ArenaStats) -> String {
    let mut out = format!(
        "{} votes\n\n| stack | games | wins | ties | losses | both bad | win rate | 95 % Wilson | Bradley-Terry |\n|---|---:|---:|---:|---:|---:|---:|---|---:|\n",
        s.votes
    );
    for r in &s.stacks {
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {:.1} % | {:.1} – {:.1} % | {} |\n",
            r.stack,
            r.games,
            r.wins,
            r.ties,
            r.losses,
            r.both_bad,
            r.win_rate * 100.0,
            r.wilson_low * 100.0,
            r.wilson_high * 100.0,
            r.bradley_terry.map_or_else(|| "—".to_string(), |b| format!("{b:+.0}"))
        ));
    }
    if !s.tags.is_empty() {
        out.push_str("\n| tag | stack | games | win rate |\n|---|---|---:|---:|\n");
        for t in &s.tags {
            out.push_str(&format!(
                "| {} | {} | {} | {:.1} % |\n",
                t.tag,
                t.stack,
                t.games,
                t.win_rate * 100.0
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn votes(pairs: &[(&str, &str, Verdict, u32)]) -> Vec<Vote> {
        let mut out = Vec::new();
        for &(a, b, verdict, n) in pairs {
            for _ in 0..n {
                out.push(Vote {
                    prompt_id: "p".into(),
                    tags: vec!["t".into()],
                    shown: vec![a.into(), b.into()],
                    verdict,
                    at_unix_ms: 0,
                });
            }
        }
        out
    }

    fn stack<'a>(s: &'a ArenaStats, name: &str) -> &'a StackStats {
        s.stacks.iter().find(|r| r.stack == name).expect("stack present")
    }

    #[test]
    fn wilson_matches_the_textbook_interval_for_6_of_8() {
        // 6 successes in 8: the 95 % Wilson score interval is 0.4093 – 0.9285 (z = 1.96).
        let (lo, hi) = wilson_95(0.75, 8.0);
        assert!((lo - 0.409_275).abs() < 1e-5, "{lo}");
        assert!((hi - 0.928_521).abs() < 1e-5, "{hi}");
        assert_eq!(wilson_95(0.3, 0.0), (0.0, 1.0));
    }

    #[test]
    fn bradley_terry_recovers_strengths_4_2_1_from_counts_that_fit_them_exactly() {
        // A beats B 2:1, B beats C 2:1, A beats C 4:1: strengths 4, 2, 1 satisfy every likelihood
        // equation (A: 3·4/6 + 5·4/5 = 6 wins), so on the Elo scale with mean 0 they are
        // +120.4, 0, −120.4.
        let v = votes(&[
            ("A", "B", Verdict::Pick(0), 2),
            ("A", "B", Verdict::Pick(1), 1),
            ("B", "C", Verdict::Pick(0), 2),
            ("C", "B", Verdict::Pick(0), 1),
            ("A", "C", Verdict::Pick(0), 4),
            ("A", "C", Verdict::Pick(1), 1),
        ]);
        let s = stats(&v);
        let (a, b, c) = (stack(&s, "A"), stack(&s, "B"), stack(&s, "C"));
        assert!((a.bradley_terry.unwrap() - 120.412).abs() < 1e-3, "{a:?}");
        assert!(b.bradley_terry.unwrap().abs() < 1e-3, "{b:?}");
        assert!((c.bradley_terry.unwrap() + 120.412).abs() < 1e-3, "{c:?}");
        assert_eq!((a.games, a.wins, a.losses, a.ties), (8, 6, 2, 0));
        assert_eq!((c.games, c.wins, c.losses), (8, 2, 6));
        assert!((a.win_rate - 0.75).abs() < 1e-12);
        assert!((a.wilson_low - 0.409_275).abs() < 1e-5);
        assert!((c.wilson_high - 0.590_725).abs() < 1e-5);
        assert_eq!(s.stacks[0].stack, "A");
    }

    #[test]
    fn ties_count_half_both_bad_is_counted_apart_and_two_stacks_get_no_rating() {
        let v = votes(&[
            ("base", "caps", Verdict::Pick(1), 1),
            ("caps", "base", Verdict::Tie, 1),
            ("base", "caps", Verdict::BothBad, 2),
        ]);
        let s = stats(&v);
        let caps = stack(&s, "caps");
        // 1 win + 3 ties over 4 games = 2.5 / 4.
        assert_eq!(
            (caps.games, caps.wins, caps.ties, caps.losses, caps.both_bad),
            (4, 1, 3, 0, 2)
        );
        assert!((caps.win_rate - 0.625).abs() < 1e-12);
        assert!(caps.bradley_terry.is_none());
        assert_eq!(s.tags.len(), 2);
    }

    #[test]
    fn a_pick_among_three_beats_both_others_and_leaves_their_pair_unplayed() {
        let v = vec![Vote {
            prompt_id: "p".into(),
            tags: vec![],
            shown: vec!["x".into(), "y".into(), "z".into()],
            verdict: Verdict::Pick(1),
            at_unix_ms: 0,
        }];
        let s = stats(&v);
        assert_eq!((stack(&s, "y").wins, stack(&s, "y").games), (2, 2));
        assert_eq!((stack(&s, "x").losses, stack(&s, "x").games), (1, 1));
        // y never lost: no finite strength; only x and z would remain, so nobody is rated.
        assert!(s.stacks.iter().all(|r| r.bradley_terry.is_none()));
    }

    #[test]
    fn the_shuffle_is_a_permutation_fixed_by_seed_and_round() {
        let a = shuffle(7, 3, 4);
        let mut sorted = a.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, vec![0, 1, 2, 3]);
        assert_eq!(a, shuffle(7, 3, 4));
        // Over many rounds both orders of two lanes come up.
        let firsts: std::collections::HashSet<usize> = (0..32).map(|r| shuffle(7, r, 2)[0]).collect();
        assert_eq!(firsts.len(), 2);
    }
}
