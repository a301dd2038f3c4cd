//! What `nanolab inspect` shows: a summary of a model or adapter GGUF computed from its header.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use super::reader::{GgufFile, Value};
use super::types::file_type_name;

/// What a GGUF file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FileKind {
    /// A base model.
    Model,
    /// A LoRA (or other) adapter.
    Adapter,
    /// A control vector (llama.cpp cvec).
    ControlVector,
}

/// Bytes and tensor count of one ggml type.
#[derive(Debug, Clone, Serialize)]
pub struct QuantShare {
    /// ggml type name.
    pub ggml_type: String,
    /// Tensors of this type.
    pub tensors: u64,
    /// Bytes of data of this type.
    pub bytes: u64,
    /// Share of all tensor bytes, 0-1.
    pub fraction: f64,
}

/// Adapter-specific facts.
#[derive(Debug, Clone, Serialize)]
pub struct AdapterSummary {
    /// `adapter.type` (`lora`, …).
    pub adapter_type: Option<String>,
    /// `adapter.lora.alpha`.
    pub alpha: Option<f64>,
    /// Distinct ranks found across lora_a tensors.
    pub ranks: Vec<u64>,
    /// Base tensors the adapter modifies, sorted.
    pub targets: Vec<String>,
    /// Base model name recorded by the converter, if any.
    pub base_model: Option<String>,
    /// aLoRA invocation tokens, if present.
    pub alora_invocation_tokens: Vec<u64>,
}

/// A summary of a GGUF file.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// Path as given.
    pub path: String,
    /// Model, adapter or control vector.
    pub kind: FileKind,
    /// GGUF version.
    pub gguf_version: u32,
    /// `general.architecture`.
    pub architecture: Option<String>,
    /// `general.name`.
    pub name: Option<String>,
    /// Total parameters (elements over all tensors).
    pub parameters: u64,
    /// Training context length.
    pub context_length: Option<u64>,
    /// Embedding width.
    pub embedding_length: Option<u64>,
    /// Transformer blocks.
    pub block_count: Option<u64>,
    /// Attention heads.
    pub head_count: Option<u64>,
    /// KV heads.
    pub head_count_kv: Option<u64>,
    /// File size in bytes.
    pub file_bytes: u64,
    /// `general.file_type` as a name (`Q4_K_M`).
    pub file_type: Option<String>,
    /// Bytes per ggml type, largest first.
    pub quant_mix: Vec<QuantShare>,
    /// Number of tensors.
    pub tensor_count: u64,
    /// Number of metadata keys.
    pub metadata_count: u64,
    /// A chat template is embedded.
    pub has_chat_template: bool,
    /// `tokenizer.ggml.model` (`gpt2`, `llama`, …).
    pub tokenizer: Option<String>,
    /// Vocabulary size.
    pub vocab_size: Option<u64>,
    /// Mean bits per weight over all tensors.
    pub bits_per_weight: f64,
    /// Adapter facts, for adapters.
    pub adapter: Option<AdapterSummary>,
}

impl Summary {
    /// Builds the summary from a parsed file.
    pub fn of(file: &GgufFile) -> Self {
        let general_type = file.get_str("general.type");
        let architecture = file.architecture().map(str::to_string);
        let kind = if general_type == Some("adapter") {
            FileKind::Adapter
        } else if architecture.as_deref() == Some("controlvector") {
            FileKind::ControlVector
        } else {
            FileKind::Model
        };
        let mut mix: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
        let mut parameters = 0u64;
        let mut tensor_bytes = 0u64;
        for t in &file.tensors {
            let e = mix.entry(t.ggml_type.name).or_default();
            e.0 += 1;
            e.1 += t.bytes;
            parameters += t.elems();
            tensor_bytes += t.bytes;
        }
        let mut quant_mix: Vec<QuantShare> = mix
            .into_iter()
            .map(|(name, (tensors, bytes))| QuantShare {
                ggml_type: name.to_string(),
                tensors,
                bytes,
                fraction: if tensor_bytes == 0 {
                    0.0
                } else {
                    bytes as f64 / tensor_bytes as f64
                },
            })
            .collect();
        quant_mix.sort_by(|a, b| b.bytes.cmp(&a.bytes).then_with(|| a.ggml_type.cmp(&b.ggml_type)));
        let adapter = (kind == FileKind::Adapter).then(|| adapter_summary(file));
        Self {
            path: file.path.display().to_string(),
            kind,
            gguf_version: file.version,
            name: file.get_str("general.name").map(str::to_string),
            parameters,
            context_length: file.arch_u64("context_length"),
            embedding_length: file.arch_u64("embedding_length"),
            block_count: file.arch_u64("block_count"),
            head_count: file.arch_u64("attention.head_count"),
            head_count_kv: file.arch_u64("attention.head_count_kv"),
            file_bytes: file.file_bytes,
            file_type: file
                .get_u64("general.file_type")
                .and_then(|t| u32::try_from(t).ok())
                .and_then(file_type_name)
                .map(str::to_string),
            quant_mix,
            tensor_count: file.tensors.len() as u64,
            metadata_count: file.metadata.len() as u64,
            has_chat_template: file.get_str("tokenizer.chat_template").is_some(),
            tokenizer: file.get_str("tokenizer.ggml.model").map(str::to_string),
            vocab_size: file.get("tokenizer.ggml.tokens").and_then(Value::array_len),
            bits_per_weight: if parameters == 0 {
                0.0
            } else {
                tensor_bytes as f64 * 8.0 / parameters as f64
            },
            architecture,
            adapter,
        }
    }

    /// The dominant quantization: `general.file_type` or the type holding most bytes.
    pub fn quant_label(&self) -> String {
        self.file_type
            .clone()
            .or_else(|| self.quant_mix.first().map(|q| q.ggml_type.clone()))
            .unwrap_or_else(|| "?".to_string())
    }
}

fn adapter_summary(file: &GgufFile) -> AdapterSummary {
    let mut ranks = BTreeSet::new();
    let mut targets = BTreeSet::new();
    for t in &file.tensors {
        if let Some(base) = t.name.strip_suffix(".lora_a") {
            // lora_a has ggml dims [in, rank], but [rank, vocab] for the token embeddings
            // (llama.cpp takes a row of it per token).
            let rank_dim = usize::from(base != "token_embd.weight");
            if let Some(&rank) = t.dims.get(rank_dim) {
                ranks.insert(rank);
            }
            targets.insert(base.to_string());
        }
    }
    let alora = match file.get("adapter.alora.invocation_tokens") {
        Some(Value::Array(items)) => items.iter().filter_map(Value::as_u64).collect(),
        _ => Vec::new(),
    };
    AdapterSummary {
        adapter_type: file.get_str("adapter.type").map(str::to_string),
        alpha: file.get("adapter.lora.alpha").and_then(Value::as_f64),
        ranks: ranks.into_iter().collect(),
        targets: targets.into_iter().collect(),
        base_model: file
            .get_str("general.base_model.0.name")
            .or_else(|| file.get_str("adapter.base_model"))
            .map(str::to_string),
        alora_invocation_tokens: alora,
    }
}
