//! Checks, from the GGUF headers alone, that a LoRA adapter fits a base model, so that a wrong
//! adapter gets a specific message instead of reaching llama.cpp.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;

use crate::gguf::{GgufFile, Value};

/// Why an adapter does not fit a model.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CompatError {
    /// The file is not an adapter.
    #[error("this is not an adapter (general.type is {0:?}); a base model cannot be stacked as an adapter")]
    NotAdapter(String),
    /// Not a LoRA adapter.
    #[error("adapter type {0:?} is not supported (only lora)")]
    NotLora(String),
    /// Architectures differ.
    #[error("adapter is for architecture {adapter:?}; this model is {model:?}")]
    Architecture {
        /// The adapter's architecture.
        adapter: String,
        /// The model's architecture.
        model: String,
    },
    /// Alpha missing.
    #[error("adapter has no adapter.lora.alpha; its effective scale would be undefined")]
    NoAlpha,
    /// No LoRA tensors at all.
    #[error("adapter has no lora_a/lora_b tensors")]
    Empty,
    /// A lora_a without its lora_b or the reverse.
    #[error("adapter is incomplete: {0} has no matching {1}")]
    Unpaired(String, String),
    /// lora_a and lora_b disagree on rank.
    #[error("adapter is inconsistent: {tensor} has rank {rank_a} in lora_a but {rank_b} in lora_b")]
    Rank {
        /// Base tensor name.
        tensor: String,
        /// Rank from lora_a.
        rank_a: u64,
        /// Rank from lora_b.
        rank_b: u64,
    },
    /// Targets tensors this model does not have.
    #[error("adapter targets tensors this model does not have: {first}{more}")]
    MissingTensors {
        /// First missing tensor.
        first: String,
        /// ", and N more" or empty.
        more: String,
    },
    /// Shapes differ (adapter made for another size of model).
    #[error("adapter targets {arch} with n_embd {adapter_embd}; this model has n_embd {model_embd}: {first}{more}")]
    Shape {
        /// Architecture.
        arch: String,
        /// Width implied by the adapter.
        adapter_embd: String,
        /// The model's width.
        model_embd: String,
        /// First mismatch, `name AxB vs CxD`.
        first: String,
        /// ", and N more" or empty.
        more: String,
    },
    /// Quantized LoRA tensors (llama.cpp supports only float ones).
    #[error("adapter tensor {0} is {1}; nanolab supports F32, F16, BF16 and Q8_0 LoRA tensors")]
    QuantizedTensor(String, String),
}

/// What a compatible adapter adds.
#[derive(Debug, Clone, Serialize)]
pub struct CompatReport {
    /// Base tensors modified.
    pub targets: usize,
    /// Ranks found.
    pub ranks: Vec<u64>,
    /// `adapter.lora.alpha`.
    pub alpha: f64,
}

/// Dims of a base tensor's lora_a and lora_b, as found.
type LoraPair<'a> = (Option<&'a [u64]>, Option<&'a [u64]>);

fn more(n: usize) -> String {
    if n == 0 {
        String::new()
    } else {
        format!(", and {n} more")
    }
}

/// Checks `adapter` against `model`.
pub fn check(adapter: &GgufFile, model: &GgufFile) -> Result<CompatReport, CompatError> {
    let general_type = adapter.get_str("general.type").unwrap_or("model");
    if general_type != "adapter" {
        return Err(CompatError::NotAdapter(general_type.to_string()));
    }
    let adapter_type = adapter.get_str("adapter.type").unwrap_or("");
    if adapter_type != "lora" {
        return Err(CompatError::NotLora(adapter_type.to_string()));
    }
    let a_arch = adapter.architecture().unwrap_or("?");
    let m_arch = model.architecture().unwrap_or("?");
    if a_arch != m_arch {
        return Err(CompatError::Architecture {
            adapter: a_arch.into(),
            model: m_arch.into(),
        });
    }
    let alpha = adapter
        .get("adapter.lora.alpha")
        .and_then(Value::as_f64)
        .ok_or(CompatError::NoAlpha)?;

    // base tensor -> (lora_a dims, lora_b dims)
    let mut pairs: BTreeMap<&str, LoraPair> = BTreeMap::new();
    for t in &adapter.tensors {
        if let Some(base) = t.name.strip_suffix(".lora_a") {
            pairs.entry(base).or_default().0 = Some(&t.dims);
        } else if let Some(base) = t.name.strip_suffix(".lora_b") {
            pairs.entry(base).or_default().1 = Some(&t.dims);
        } else {
            continue;
        }
        if !matches!(t.ggml_type.name, "F32" | "F16" | "BF16" | "Q8_0") {
            return Err(CompatError::QuantizedTensor(
                t.name.clone(),
                t.ggml_type.name.to_string(),
            ));
        }
    }
    if pairs.is_empty() {
        return Err(CompatError::Empty);
    }
    let mut ranks = std::collections::BTreeSet::new();
    let mut missing = Vec::new();
    let mut mismatched = Vec::new();
    let mut implied_embd = None;
    for (&base, &(a, b)) in &pairs {
        let (a, b) = match (a, b) {
            (Some(a), Some(b)) => (a, b),
            (Some(_), None) => {
                return Err(CompatError::Unpaired(
                    format!("{base}.lora_a"),
                    format!("{base}.lora_b"),
                ))
            }
            (None, _) => {
                return Err(CompatError::Unpaired(
                    format!("{base}.lora_b"),
                    format!("{base}.lora_a"),
                ))
            }
        };
        // ggml dims: lora_a [in, rank], lora_b [rank, out]; base weight [in, out]. The token
        // embeddings' pair is flipped (llama.cpp takes rows of lora_a per token): lora_a
        // [rank, vocab], lora_b [rank, embd], base [embd, vocab].
        let dim = |d: &[u64], i: usize, or: u64| d.get(i).copied().unwrap_or(or);
        let (a_in, rank_a, rank_b, b_out) = if base == crate::adapters::peft::TOKEN_EMBD {
            (dim(b, 1, 1), dim(a, 0, 0), dim(b, 0, 0), dim(a, 1, 1))
        } else {
            (dim(a, 0, 0), dim(a, 1, 1), dim(b, 0, 0), dim(b, 1, 1))
        };
        if rank_a != rank_b {
            return Err(CompatError::Rank {
                tensor: base.into(),
                rank_a,
                rank_b,
            });
        }
        ranks.insert(rank_a);
        if base.ends_with("attn_q.weight") && implied_embd.is_none() {
            implied_embd = Some(a_in);
        }
        match model.tensor(base) {
            None => missing.push(base.to_string()),
            Some(w) => {
                let w_in = w.dims.first().copied().unwrap_or(0);
                let w_out = w.dims.get(1).copied().unwrap_or(1);
                if w_in != a_in || w_out != b_out {
                    mismatched.push(format!("{base} {a_in}x{b_out} vs {w_in}x{w_out}"));
                }
            }
        }
    }
    if !mismatched.is_empty() {
        let model_embd = model
            .arch_u64("embedding_length")
            .map_or_else(|| "?".to_string(), |v| v.to_string());
        return Err(CompatError::Shape {
            arch: a_arch.into(),
            adapter_embd: implied_embd.map_or_else(|| "?".to_string(), |v| v.to_string()),
            model_embd,
            first: mismatched[0].clone(),
            more: more(mismatched.len() - 1),
        });
    }
    if !missing.is_empty() {
        return Err(CompatError::MissingTensors {
            first: missing[0].clone(),
            more: more(missing.len() - 1),
        });
    }
    Ok(CompatReport {
        targets: pairs.len(),
        ranks: ranks.into_iter().collect(),
        alpha,
    })
}

/// Reads an adapter file and checks it against the model's header before llama.cpp sees it.
pub fn validate_adapter_file(path: &Path, model: &GgufFile) -> Result<GgufFile, String> {
    let file = crate::gguf::read(path).map_err(|e| e.to_string())?;
    check(&file, model).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(file)
}
