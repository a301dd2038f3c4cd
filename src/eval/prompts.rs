//! Prompt sets: a JSONL file of prompts with optional expectations, run on every lane with
//! several seeds, scored per lane. One line per prompt:
//! `{"id": "capital", "prompt": "...", "expect": "Paris", "max_tokens": 32, "tags": ["geo"]}`;
//! `expect_regex` takes a regular expression instead of a substring; `system` adds a system
//! message; `"raw": true` sends the prompt without the chat template.

use serde::{Deserialize, Serialize};

use crate::metrics;

/// One prompt of a set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PromptCase {
    /// Name for tables; defaults to the line number.
    #[serde(default)]
    pub id: String,
    /// The user message (or raw text with `raw`).
    pub prompt: String,
    /// Optional system message.
    #[serde(default)]
    pub system: Option<String>,
    /// The output must contain this substring.
    #[serde(default)]
    pub expect: Option<String>,
    /// The output must match this regular expression.
    #[serde(default)]
    pub expect_regex: Option<String>,
    /// Token limit for this prompt (default: the run's).
    #[serde(default)]
    pub max_tokens: Option<u32>,
    /// Free-form tags.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Send the text as is, without the chat template.
    #[serde(default)]
    pub raw: bool,
}

impl PromptCase {
    /// The engine prompt: a chat turn (with the system message), or raw text with `raw`.
    pub fn to_prompt(&self) -> crate::protocol::Prompt {
        if self.raw {
            crate::protocol::Prompt::Raw {
                text: self.prompt.clone(),
            }
        } else {
            crate::protocol::Prompt::Chat {
                system: self.system.clone(),
                user: self.prompt.clone(),
            }
        }
    }
}

/// A parsed set whose regular expressions compiled.
#[derive(Debug, Clone)]
pub struct PromptSet {
    /// The prompts, in file order.
    pub cases: Vec<PromptCase>,
    regexes: Vec<Option<regex::Regex>>,
}

impl PromptSet {
    /// Parses JSONL text; errors name the line.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut cases = Vec::new();
        let mut regexes = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line_no = i + 1;
            let line = line.trim();
            if line.is_empty() || line.starts_with("//") {
                continue;
            }
            let mut case: PromptCase =
                serde_json::from_str(line).map_err(|e| format!("line {line_no}: not a prompt object: {e}"))?;
            if case.prompt.trim().is_empty() {
                return Err(format!("line {line_no}: \"prompt\" is empty"));
            }
            if case.id.is_empty() {
                case.id = format!("line{line_no}");
            }
            let re = match &case.expect_regex {
                Some(r) => {
                    Some(regex::Regex::new(r).map_err(|e| format!("line {line_no}: bad expect_regex {r:?}: {e}"))?)
                }
                None => None,
            };
            cases.push(case);
            regexes.push(re);
        }
        if cases.is_empty() {
            return Err("the prompt set has no prompts (one JSON object per line)".into());
        }
        let mut seen = std::collections::HashSet::new();
        for c in &cases {
            if !seen.insert(c.id.as_str()) {
                return Err(format!("prompt id {:?} appears twice", c.id));
            }
        }
        Ok(Self { cases, regexes })
    }

    /// Whether `output` meets prompt `i`'s expectations; `None` when it has none.
    pub fn check(&self, i: usize, output: &str) -> Option<bool> {
        let case = self.cases.get(i)?;
        let re = self.regexes.get(i).and_then(Option::as_ref);
        if case.expect.is_none() && re.is_none() {
            return None;
        }
        let sub_ok = case.expect.as_ref().is_none_or(|e| output.contains(e.as_str()));
        let re_ok = re.is_none_or(|r| r.is_match(output));
        Some(sub_ok && re_ok)
    }
}

/// One run of one prompt on one lane with one seed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PromptRun {
    /// Lane label.
    pub lane: String,
    /// Prompt id.
    pub prompt_id: String,
    /// Seed.
    pub seed: u32,
    /// Expectation met (None: the prompt has none).
    pub passed: Option<bool>,
    /// Time to first token, ms.
    pub ttft_ms: f64,
    /// Decode tokens/s.
    pub decode_tokens_per_sec: f64,
    /// Tokens generated.
    pub n_gen: u32,
    /// Output equals the reference lane's for the same prompt and seed.
    pub same_as_reference: bool,
    /// Similarity of the output to the reference lane's (0-1, by characters).
    pub similarity_to_reference: f64,
    /// The prompt's tags, `;`-separated.
    #[serde(default)]
    pub tags: String,
    /// The output.
    pub text: String,
}

/// One lane's scorecard over a whole set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Scorecard {
    /// Lane label.
    pub lane: String,
    /// Runs (prompts × seeds).
    pub runs: usize,
    /// Seeds.
    pub seeds: usize,
    /// Share of runs with expectations that passed (0-1), mean over seeds.
    pub pass_rate: f64,
    /// Standard deviation of the per-seed pass rate.
    pub pass_rate_sd: f64,
    /// Mean time to first token, ms.
    pub ttft_ms_mean: f64,
    /// 95th percentile time to first token, ms.
    pub ttft_ms_p95: f64,
    /// Mean decode tokens/s.
    pub decode_tps_mean: f64,
    /// 95th percentile of decode tokens/s.
    pub decode_tps_p95: f64,
    /// Standard deviation of the per-seed mean decode tokens/s.
    pub decode_tps_sd: f64,
    /// Mean tokens generated.
    pub n_gen_mean: f64,
    /// Share of runs whose output equals the reference lane's (0-1).
    pub agreement: f64,
    /// Mean character similarity to the reference lane's output (0-1).
    pub similarity: f64,
    /// Pass rate per tag, e.g. `facts 100 %; style 0 %` (tags of prompts with expectations).
    pub pass_by_tag: String,
}

/// Fills `same_as_reference` and `similarity_to_reference` from the reference lane's runs.
pub fn compare_to_reference(runs: &mut [PromptRun], reference: &str) {
    let reference_text: std::collections::HashMap<(String, u32), String> = runs
        .iter()
        .filter(|r| r.lane == reference)
        .map(|r| ((r.prompt_id.clone(), r.seed), r.text.clone()))
        .collect();
    for r in runs.iter_mut() {
        if let Some(t) = reference_text.get(&(r.prompt_id.clone(), r.seed)) {
            r.same_as_reference = *t == r.text;
            r.similarity_to_reference = f64::from(similar::TextDiff::from_chars(t.as_str(), r.text.as_str()).ratio());
        }
    }
}

fn pass_by_tag(runs: &[&PromptRun]) -> String {
    let mut by_tag: std::collections::BTreeMap<&str, (usize, usize)> = std::collections::BTreeMap::new();
    for r in runs {
        let Some(passed) = r.passed else { continue };
        for tag in r.tags.split(';').filter(|t| !t.is_empty()) {
            let e = by_tag.entry(tag).or_default();
            e.0 += usize::from(passed);
            e.1 += 1;
        }
    }
    by_tag
        .into_iter()
        .map(|(t, (p, n))| format!("{t} {:.0} %", p as f64 * 100.0 / n as f64))
        .collect::<Vec<_>>()
        .join("; ")
}

/// Scorecards, one per lane label, in the order lanes first appear.
pub fn scorecards(runs: &[PromptRun]) -> Vec<Scorecard> {
    let mut lanes: Vec<&str> = Vec::new();
    for r in runs {
        if !lanes.contains(&r.lane.as_str()) {
            lanes.push(&r.lane);
        }
    }
    lanes
        .into_iter()
        .map(|lane| {
            let mine: Vec<&PromptRun> = runs.iter().filter(|r| r.lane == lane).collect();
            let mut seeds: Vec<u32> = mine.iter().map(|r| r.seed).collect();
            seeds.sort_unstable();
            seeds.dedup();
            let per_seed = |f: &dyn Fn(&[&PromptRun]) -> Option<f64>| -> Vec<f64> {
                seeds
                    .iter()
                    .filter_map(|s| {
                        let rs: Vec<&PromptRun> = mine.iter().copied().filter(|r| r.seed == *s).collect();
                        f(&rs)
                    })
                    .collect()
            };
            let pass = per_seed(&|rs| {
                let judged: Vec<bool> = rs.iter().filter_map(|r| r.passed).collect();
                (!judged.is_empty()).then(|| judged.iter().filter(|&&p| p).count() as f64 / judged.len() as f64)
            });
            let tps_by_seed = per_seed(&|rs| {
                let v: Vec<f64> = rs
                    .iter()
                    .map(|r| r.decode_tokens_per_sec)
                    .filter(|t| *t > 0.0)
                    .collect();
                (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
            });
            let ttft: Vec<f64> = mine.iter().map(|r| r.ttft_ms).collect();
            let tps: Vec<f64> = mine
                .iter()
                .map(|r| r.decode_tokens_per_sec)
                .filter(|t| *t > 0.0)
                .collect();
            let n = mine.len().max(1) as f64;
            let (pass_rate, pass_rate_sd) = metrics::mean_sd(&pass);
            Scorecard {
                lane: lane.to_string(),
                runs: mine.len(),
                seeds: seeds.len(),
                pass_rate,
                pass_rate_sd,
                ttft_ms_mean: metrics::mean_sd(&ttft).0,
                ttft_ms_p95: metrics::percentile(&ttft, 0.95),
                decode_tps_mean: metrics::mean_sd(&tps).0,
                decode_tps_p95: metrics::percentile(&tps, 0.95),
                decode_tps_sd: metrics::mean_sd(&tps_by_seed).1,
                n_gen_mean: mine.iter().map(|r| f64::from(r.n_gen)).sum::<f64>() / n,
                agreement: mine.iter().filter(|r| r.same_as_reference).count() as f64 / n,
                similarity: mine.iter().map(|r| r.similarity_to_reference).sum::<f64>() / n,
                pass_by_tag: pass_by_tag(&mine),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(lane: &str, id: &str, seed: u32, passed: Option<bool>, text: &str) -> PromptRun {
        PromptRun {
            lane: lane.into(),
            prompt_id: id.into(),
            seed,
            passed,
            ttft_ms: 10.0,
            decode_tokens_per_sec: 100.0,
            n_gen: 4,
            same_as_reference: false,
            similarity_to_reference: 0.0,
            tags: if id == "p" { "facts;geo".into() } else { String::new() },
            text: text.into(),
        }
    }

    #[test]
    fn parses_and_checks_expectations() {
        let set = PromptSet::parse(
            "{\"id\":\"a\",\"prompt\":\"hi\",\"expect\":\"Paris\"}\n\n{\"prompt\":\"x\",\"expect_regex\":\"^[A-Z ]+$\"}\n{\"prompt\":\"free\"}\n",
        )
        .unwrap();
        assert_eq!(set.cases.len(), 3);
        assert_eq!(set.cases[1].id, "line3");
        assert_eq!(set.check(0, "It is Paris."), Some(true));
        assert_eq!(set.check(0, "It is paris."), Some(false));
        assert_eq!(set.check(1, "ALL CAPS"), Some(true));
        assert_eq!(set.check(1, "Not caps"), Some(false));
        assert_eq!(set.check(2, "anything"), None);
    }

    #[test]
    fn bad_sets_name_the_line() {
        assert!(PromptSet::parse("{\"prompt\":\"a\"}\nnot json")
            .unwrap_err()
            .starts_with("line 2"));
        assert!(PromptSet::parse("{\"prompt\":\"a\",\"expect_regex\":\"(\"}")
            .unwrap_err()
            .contains("bad expect_regex"));
        assert!(PromptSet::parse("\n\n").unwrap_err().contains("no prompts"));
        assert!(
            PromptSet::parse("{\"id\":\"x\",\"prompt\":\"a\"}\n{\"id\":\"x\",\"prompt\":\"b\"}")
                .unwrap_err()
                .contains("twice")
        );
    }

    #[test]
    fn scorecards_report_spread_over_seeds_and_agreement() {
        let mut runs = vec![
            run("base", "p", 1, Some(true), "yes"),
            run("base", "p", 2, Some(false), "no"),
            run("caps", "p", 1, Some(true), "yes"),
            run("caps", "p", 2, Some(true), "YES"),
        ];
        compare_to_reference(&mut runs, "base");
        let cards = scorecards(&runs);
        assert_eq!(cards.len(), 2);
        assert_eq!(cards[0].lane, "base");
        assert_eq!(cards[0].pass_rate, 0.5);
        assert!((cards[0].pass_rate_sd - std::f64::consts::FRAC_1_SQRT_2).abs() < 1e-9);
        assert_eq!(cards[0].agreement, 1.0);
        assert_eq!(cards[1].pass_rate, 1.0);
        assert_eq!(cards[1].pass_rate_sd, 0.0);
        assert_eq!(cards[1].agreement, 0.5);
        assert!(cards[1].similarity < 1.0);
        assert_eq!(cards[0].pass_by_tag, "facts 50 %; geo 50 %");
        assert_eq!(cards[1].pass_by_tag, "facts 100 %; geo 100 %");
    }
}
