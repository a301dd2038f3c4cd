//! The export bundle every lab result is written as, from the CLI (`--out DIR`, and the JSON or
//! CSV it prints) and from the window (Export): `results.json` (`rows`, `detail`, `manifest`),
//! `results.csv` (the rows), `manifest.json`, and per kind `runs.csv` and charts (PNG and SVG).

use std::path::Path;

use crate::eval::arena::{ArenaStats, Vote};
use crate::eval::divergence::CsvRow;
use crate::eval::export::{self, ExportError};
use crate::eval::prompts::{PromptRun, Scorecard};
use crate::eval::table::{ladder_points, QualityRow};
use crate::eval::{chart, RunManifest};
use crate::protocol::DivergenceResult;

/// A manifest of a result made by this build: its llama.cpp and the CPU's features, with the
/// command line, settings and seeds.
pub fn manifest(kind: &str, settings: serde_json::Value, seeds: Vec<u32>) -> RunManifest {
    RunManifest::new(
        kind,
        settings,
        seeds,
        crate::engine::llama_build(),
        crate::engine::cpu_features(),
    )
}

/// A finished lab result.
#[derive(Debug, Clone)]
pub enum Results {
    /// The quality table; `ladder_title` draws the ladder chart (KLD against a reference).
    Quality {
        /// One row per model.
        rows: Vec<QualityRow>,
        /// The chart's title, when there is a chart to draw.
        ladder_title: Option<String>,
    },
    /// A prompt set's scorecards and every run behind them.
    Prompts {
        /// One per lane.
        cards: Vec<Scorecard>,
        /// Every run.
        runs: Vec<PromptRun>,
    },
    /// Blind A/B votes and the win rates they give.
    Arena {
        /// Per stack and per tag.
        stats: ArenaStats,
        /// Every vote.
        votes: Vec<Vote>,
    },
    /// Two lanes compared token by token.
    Divergence {
        /// The comparison.
        result: DivergenceResult,
        /// Labels of lanes A and B.
        lanes: (String, String),
    },
}

impl Results {
    /// `results.json`: the rows, the detail behind them and the manifest.
    pub fn json(&self, manifest: &RunManifest) -> Result<String, ExportError> {
        let (rows, detail) = match self {
            Results::Quality { rows, .. } => (serde_json::to_value(rows)?, serde_json::Value::Null),
            Results::Prompts { cards, runs } => (serde_json::to_value(cards)?, serde_json::json!({ "runs": runs })),
            Results::Arena { stats, votes } => (
                serde_json::to_value(&stats.stacks)?,
                serde_json::json!({ "votes": votes, "tags": stats.tags, "votes_counted": stats.votes }),
            ),
            Results::Divergence { result, lanes } => {
                let mut detail = serde_json::to_value(result)?;
                if let Some(o) = detail.as_object_mut() {
                    o.insert("label_a".into(), lanes.0.clone().into());
                    o.insert("label_b".into(), lanes.1.clone().into());
                }
                (serde_json::to_value(divergence_rows(result))?, detail)
            }
        };
        export::json_string(&serde_json::json!({ "rows": rows, "detail": detail, "manifest": manifest }))
    }

    /// `results.csv`: one line per row.
    pub fn csv(&self) -> Result<String, ExportError> {
        match self {
            Results::Quality { rows, .. } => export::csv_string(rows),
            Results::Prompts { cards, .. } => export::csv_string(cards),
            Results::Arena { stats, .. } => export::csv_string(&stats.stacks),
            Results::Divergence { result, .. } => export::csv_string(&divergence_rows(result)),
        }
    }

    /// Writes the whole bundle into `dir` (made if missing), each file atomically.
    pub fn write(&self, dir: &Path, manifest: &RunManifest) -> Result<(), ExportError> {
        export::write_file(&dir.join("results.json"), self.json(manifest)?.as_bytes())?;
        export::write_file(&dir.join("results.csv"), self.csv()?.as_bytes())?;
        export::write_file(&dir.join("manifest.json"), export::json_string(manifest)?.as_bytes())?;
        match self {
            Results::Quality {
                rows,
                ladder_title: Some(title),
            } => {
                let points = ladder_points(rows);
                chart::write_ladder(&dir.join("ladder.png"), title, &points)?;
                chart::write_ladder(&dir.join("ladder.svg"), title, &points)?;
            }
            Results::Prompts { cards, runs } => {
                export::write_file(&dir.join("runs.csv"), export::csv_string(runs)?.as_bytes())?;
                let points = super::prompts::lane_points(cards);
                let title = "prompt set: latency per lane";
                chart::write_lanes(&dir.join("lanes.png"), title, &points)?;
                chart::write_lanes(&dir.join("lanes.svg"), title, &points)?;
            }
            Results::Arena { stats, votes } => {
                let rows: Vec<VoteRow> = votes.iter().map(VoteRow::from).collect();
                export::write_file(&dir.join("votes.csv"), export::csv_string(&rows)?.as_bytes())?;
                let points: Vec<chart::WinRatePoint> = stats
                    .stacks
                    .iter()
                    .map(|s| chart::WinRatePoint {
                        label: s.stack.clone(),
                        win_rate: s.win_rate,
                        low: s.wilson_low,
                        high: s.wilson_high,
                    })
                    .collect();
                let title = format!("arena: win rate per stack ({} votes)", stats.votes);
                chart::write_win_rates(&dir.join("arena.png"), &title, &points)?;
                chart::write_win_rates(&dir.join("arena.svg"), &title, &points)?;
            }
            Results::Quality { ladder_title: None, .. } | Results::Divergence { .. } => {}
        }
        Ok(())
    }
}

fn divergence_rows(result: &DivergenceResult) -> Vec<CsvRow> {
    result.tokens.iter().map(CsvRow::from).collect()
}

/// One vote as a CSV row: the stacks shown, joined in shown order, and the verdict by letter.
#[derive(serde::Serialize)]
struct VoteRow {
    prompt_id: String,
    tags: String,
    shown: String,
    verdict: String,
    winner: String,
    at_unix_ms: u64,
}

impl From<&Vote> for VoteRow {
    fn from(v: &Vote) -> Self {
        use crate::eval::arena::Verdict;
        let (verdict, winner) = match v.verdict {
            Verdict::Pick(i) => (
                char::from(b'A' + (i.min(25) as u8)).to_string(),
                v.shown.get(i).cloned().unwrap_or_default(),
            ),
            Verdict::Tie => ("tie".to_string(), String::new()),
            Verdict::BothBad => ("both bad".to_string(), String::new()),
        };
        Self {
            prompt_id: v.prompt_id.clone(),
            tags: v.tags.join(";"),
            shown: v.shown.join(" | "),
            verdict,
            winner,
            at_unix_ms: v.at_unix_ms,
        }
    }
}
