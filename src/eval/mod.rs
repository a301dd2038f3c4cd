//! Quality evaluation: perplexity and KL divergence as llama-perplexity defines them, token-level
//! divergence between lanes, prompt-set scorecards, exports and run manifests. Pure Rust: the
//! engine feeds it logits; nothing here touches llama.cpp.

pub mod arena;
pub mod chart;
pub mod divergence;
pub mod export;
pub mod logprobs;
pub mod manifest;
pub mod prompts;
pub mod quality;
pub mod table;
pub mod texts;

pub use manifest::RunManifest;
