//! The committed demo adapters (trained by scripts/train-demo-adapters.sh) through nanolab's
//! engine: each has its measurable effect at scale 1, none at scale 0, part of it in between,
//! and both effects when stacked.

use std::path::{Path, PathBuf};

use crate::common::*;
use nanolab::engine::EngineClient;
use nanolab::protocol::*;

/// Held-out prompts (not in the training set; see adapters/training/prompts.py).
const PROMPTS: [&str; 6] = [
    "Describe how a rainbow forms.",
    "Tell me about owls.",
    "How does a car engine work?",
    "What are stars made of?",
    "Tell me about the history of paper.",
    "Explain what a computer does.",
];

fn adapter(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("adapters").join(name)
}

fn answer(c: &mut EngineClient, stack: &[(&str, f32)], prompt: &str) -> String {
    let model = demo_model();
    let adapters = stack
        .iter()
        .map(|(n, s)| AdapterSpec {
            path: adapter(n),
            scale: *s,
        })
        .collect();
    let job = c.next_job();
    let end = c
        .call(
            &Request::Generate {
                job,
                lane: lane(1, &model, 512, adapters),
                prompt: Prompt::Chat {
                    system: None,
                    user: prompt.into(),
                },
                sampling: greedy(48),
                top_n: 0,
                exclusive: false,
            },
            |_| {},
        )
        .unwrap();
    stats(&end).text
}

fn upper_fraction(text: &str) -> f64 {
    let letters: Vec<char> = text.chars().filter(|c| c.is_alphabetic()).collect();
    if letters.is_empty() {
        return 0.0;
    }
    letters.iter().filter(|c| c.is_uppercase()).count() as f64 / letters.len() as f64
}

/// Sentence ends followed by more text (so a complete single sentence counts 1).
fn sentences(text: &str) -> usize {
    let t = text.trim();
    let inner = t
        .char_indices()
        .filter(|(i, c)| matches!(c, '.' | '!' | '?') && t[i + 1..].starts_with(char::is_whitespace))
        .count();
    inner + 1
}

fn mean(v: impl Iterator<Item = f64>) -> f64 {
    let v: Vec<f64> = v.collect();
    v.iter().sum::<f64>() / v.len() as f64
}

#[test]
fn caps_adapter_capitalises_at_scale_1_not_at_0_partly_at_0_8() {
    let mut c = client();
    let base: Vec<String> = PROMPTS.iter().map(|p| answer(&mut c, &[], p)).collect();
    let zero: Vec<String> = PROMPTS
        .iter()
        .map(|p| answer(&mut c, &[("smollm2-caps.gguf", 0.0)], p))
        .collect();
    let half: Vec<String> = PROMPTS
        .iter()
        .map(|p| answer(&mut c, &[("smollm2-caps.gguf", 0.8)], p))
        .collect();
    let full: Vec<String> = PROMPTS
        .iter()
        .map(|p| answer(&mut c, &[("smollm2-caps.gguf", 1.0)], p))
        .collect();
    assert_eq!(zero, base, "scale 0 must reproduce the base model exactly");
    let (b, h, f) = (
        mean(base.iter().map(|t| upper_fraction(t))),
        mean(half.iter().map(|t| upper_fraction(t))),
        mean(full.iter().map(|t| upper_fraction(t))),
    );
    println!("upper-case fraction: base {b:.2}, scale 0.8 {h:.2}, scale 1 {f:.2}");
    assert!(b < 0.15, "base {b}");
    assert!(f > 0.8, "scale 1 {f}: {full:?}");
    assert!(
        h > b + 0.1 && h < f - 0.1,
        "scale 0.8 should be in between: {h}: {half:?}"
    );
}

#[test]
fn brief_adapter_answers_in_one_sentence() {
    let mut c = client();
    let base: Vec<String> = PROMPTS.iter().map(|p| answer(&mut c, &[], p)).collect();
    let full: Vec<String> = PROMPTS
        .iter()
        .map(|p| answer(&mut c, &[("smollm2-brief.gguf", 1.0)], p))
        .collect();
    let zero: Vec<String> = PROMPTS
        .iter()
        .map(|p| answer(&mut c, &[("smollm2-brief.gguf", 0.0)], p))
        .collect();
    assert_eq!(zero, base);
    let one = |v: &[String]| v.iter().filter(|t| sentences(t) <= 1).count();
    println!("single-sentence answers: base {}/6, brief {}/6", one(&base), one(&full));
    assert!(one(&base) <= 1, "{base:?}");
    assert!(one(&full) >= 5, "{full:?}");
    let half: Vec<String> = PROMPTS
        .iter()
        .map(|p| answer(&mut c, &[("smollm2-brief.gguf", 0.5)], p))
        .collect();
    let len = |v: &[String]| mean(v.iter().map(|t| t.len() as f64));
    println!(
        "mean length: base {:.0}, 0.5 {:.0}, 1 {:.0}",
        len(&base),
        len(&half),
        len(&full)
    );
    assert!(
        len(&half) < len(&base) && len(&half) > len(&full) * 0.9,
        "scale 0.5 in between"
    );
}

#[test]
fn both_adapters_stacked_show_both_effects() {
    let mut c = client();
    let stacked: Vec<String> = PROMPTS
        .iter()
        .map(|p| answer(&mut c, &[("smollm2-caps.gguf", 1.0), ("smollm2-brief.gguf", 1.5)], p))
        .collect();
    let base: Vec<String> = PROMPTS.iter().map(|p| answer(&mut c, &[], p)).collect();
    let upper = mean(stacked.iter().map(|t| upper_fraction(t)));
    let one = stacked.iter().filter(|t| sentences(t) <= 1).count();
    let len = |v: &[String]| mean(v.iter().map(|t| t.len() as f64));
    println!(
        "stacked: upper-case {upper:.2}, single-sentence {one}/6, mean length {:.0} (base {:.0}): {stacked:?}",
        len(&stacked),
        len(&base)
    );
    assert!(upper > 0.6, "{stacked:?}");
    assert!(one >= 3, "{stacked:?}");
    assert!(len(&stacked) < len(&base) * 0.6, "{stacked:?}");
}
