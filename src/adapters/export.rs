//! Adapters out: a GGUF LoRA written as a Hugging Face PEFT folder (`adapter_config.json` +
//! `adapter_model.safetensors`, loadable by peft onto the matching model and importable back
//! by nanolab bit for bit) or as an MLX-LM adapter folder (`adapter_config.json` +
//! `adapters.safetensors`). Both undo llama.cpp's Q/K row permutation for llama-family models.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::lora_file::{head_counts, permutes_qk, LoraAdapter};
use super::peft::{Matrix, TOKEN_EMBD};
use crate::gguf::{GgufFile, Value};

/// Why an export failed.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// Writing failed.
    #[error("{path}: {message}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What happened.
        message: String,
    },
    /// The adapter cannot be expressed in the target format.
    #[error("{0}")]
    Unsupported(String),
}

/// What an export wrote.
#[derive(Debug, Clone, Serialize)]
pub struct ExportReport {
    /// The folder.
    pub dir: PathBuf,
    /// Files written.
    pub files: Vec<PathBuf>,
    /// Adapted modules.
    pub tensors: usize,
    /// Rank.
    pub rank: usize,
    /// Alpha (PEFT) or scale (MLX) written.
    pub alpha_or_scale: f64,
}

/// One adapted module in Hugging Face terms.
struct HfModule {
    /// `model.layers.3.self_attn.q_proj` or `lm_head`.
    path: String,
    /// `self_attn.q_proj` (the per-layer key) or `lm_head`.
    key: String,
    /// Layer number, if in a layer.
    layer: Option<usize>,
}

/// The Hugging Face module of a llama.cpp base tensor name.
fn hf_module(name: &str, arch: &str) -> Result<HfModule, ExportError> {
    if name == TOKEN_EMBD {
        return Ok(HfModule {
            path: "model.embed_tokens".into(),
            key: "embed_tokens".into(),
            layer: None,
        });
    }
    if name == "output.weight" {
        return Ok(HfModule {
            path: "lm_head".into(),
            key: "lm_head".into(),
            layer: None,
        });
    }
    let unsupported = || ExportError::Unsupported(format!("tensor {name}: no Hugging Face module for it"));
    let rest = name.strip_prefix("blk.").ok_or_else(unsupported)?;
    let (layer, module) = rest.split_once('.').ok_or_else(unsupported)?;
    let layer: usize = layer.parse().map_err(|_| unsupported())?;
    let module = module.strip_suffix(".weight").ok_or_else(unsupported)?;
    let key = match (module, arch) {
        ("attn_q", _) => "self_attn.q_proj",
        ("attn_k", _) => "self_attn.k_proj",
        ("attn_v", _) => "self_attn.v_proj",
        ("attn_output", _) => "self_attn.o_proj",
        ("attn_qkv", "phi3") => "self_attn.qkv_proj",
        ("ffn_up", "phi3") => "mlp.gate_up_proj",
        ("ffn_gate", _) => "mlp.gate_proj",
        ("ffn_up", _) => "mlp.up_proj",
        ("ffn_down", _) => "mlp.down_proj",
        _ => return Err(unsupported()),
    };
    Ok(HfModule {
        path: format!("model.layers.{layer}.{key}"),
        key: key.to_string(),
        layer: Some(layer),
    })
}

/// Undoes [`super::peft::permute_rows`]: rows [half, 2] per head back to [2, half].
pub fn unpermute_rows(m: &Matrix, n_head: usize) -> Result<Matrix, ExportError> {
    super::peft::reorder_rows(m, n_head, true).map_err(ExportError::Unsupported)
}

/// Every pair as (Hugging Face module, A, B in Hugging Face row order).
fn hf_pairs(adapter: &LoraAdapter, base: Option<&GgufFile>) -> Result<Vec<(HfModule, Matrix, Matrix)>, ExportError> {
    let permute = permutes_qk(&adapter.arch);
    let heads = base.map(head_counts);
    let mut out = Vec::new();
    for (name, pair) in &adapter.pairs {
        let module = hf_module(name, &adapter.arch)?;
        let b = match (permute, module.key.as_str()) {
            (true, "self_attn.q_proj" | "self_attn.k_proj") => {
                let Some((n_head, n_head_kv)) = heads else {
                    return Err(ExportError::Unsupported(format!(
                        "{} adapters have their Q/K rows permuted per attention head; give the base model (--model) so they can be put back",
                        adapter.arch
                    )));
                };
                let n = if module.key == "self_attn.q_proj" {
                    n_head
                } else {
                    n_head_kv
                };
                unpermute_rows(&pair.b, n)?
            }
            _ => pair.b.clone(),
        };
        out.push((module, pair.a.clone(), b));
    }
    Ok(out)
}

/// A matrix as safetensors bytes of `dtype` (F16 or F32), shape as given.
fn tensor_bytes(m: &Matrix, f16: bool) -> Vec<u8> {
    if f16 {
        m.data
            .iter()
            .flat_map(|v| half::f16::from_f32(*v).to_le_bytes())
            .collect()
    } else {
        m.data.iter().flat_map(|v| v.to_le_bytes()).collect()
    }
}

fn write_safetensors(
    path: &Path,
    tensors: &BTreeMap<String, (Vec<usize>, Vec<u8>)>,
    f16: bool,
) -> Result<(), ExportError> {
    let io = |message: String| ExportError::Io {
        path: path.to_path_buf(),
        message,
    };
    let dtype = if f16 {
        safetensors::Dtype::F16
    } else {
        safetensors::Dtype::F32
    };
    let views = tensors
        .iter()
        .map(|(name, (shape, bytes))| {
            safetensors::tensor::TensorView::new(dtype, shape.clone(), bytes).map(|v| (name.clone(), v))
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| io(e.to_string()))?;
    let mut info = std::collections::HashMap::new();
    info.insert("format".to_string(), "pt".to_string());
    let bytes = safetensors::serialize(views, Some(info)).map_err(|e| io(e.to_string()))?;
    crate::paths::write_atomic(path, &bytes).map_err(|e| io(e.to_string()))
}

fn write_json(path: &Path, value: &serde_json::Value) -> Result<(), ExportError> {
    let mut text = serde_json::to_string_pretty(value).map_err(|e| ExportError::Io {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    text.push('\n');
    crate::paths::write_atomic(path, text.as_bytes()).map_err(|e| ExportError::Io {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

fn uniform_rank(adapter: &LoraAdapter, format: &str) -> Result<usize, ExportError> {
    adapter.uniform_rank().ok_or_else(|| {
        let ranks: BTreeSet<usize> = adapter.pairs.values().map(super::lora_file::LoraPair::rank).collect();
        ExportError::Unsupported(format!(
            "{format} keeps one rank for every module; this adapter has ranks {ranks:?}"
        ))
    })
}

fn base_model_name(adapter: &LoraAdapter) -> Option<String> {
    adapter
        .metadata
        .iter()
        .find(|(k, _)| k == "general.base_model.0.name" || k == "general.base_model.0.repo_url")
        .and_then(|(_, v)| v.as_str().map(str::to_string))
}

/// Writes `adapter` as a PEFT folder in `dir` (`base` is needed for llama-family models).
pub fn to_peft(adapter: &LoraAdapter, base: Option<&GgufFile>, dir: &Path) -> Result<ExportReport, ExportError> {
    let rank = uniform_rank(adapter, "PEFT")?;
    let f16 = adapter.stored_as == "F16";
    let mut tensors = BTreeMap::new();
    let mut targets = BTreeSet::new();
    for (module, a, b) in hf_pairs(adapter, base)? {
        targets.insert(module.key.rsplit('.').next().unwrap_or(&module.key).to_string());
        let prefix = format!("base_model.model.{}", module.path);
        // peft names an embedding's pair lora_embedding_A (rank × vocab) / _B (embd × rank).
        let (a_key, b_key) = if module.key == "embed_tokens" {
            (
                format!("{prefix}.lora_embedding_A"),
                format!("{prefix}.lora_embedding_B"),
            )
        } else {
            (format!("{prefix}.lora_A.weight"), format!("{prefix}.lora_B.weight"))
        };
        tensors.insert(a_key, (vec![a.rows, a.cols], tensor_bytes(&a, f16)));
        tensors.insert(b_key, (vec![b.rows, b.cols], tensor_bytes(&b, f16)));
    }
    let config = serde_json::json!({
            "peft_type": "LORA",
            "task_type": "CAUSAL_LM",
            "r": rank,
            "lora_alpha": adapter.alpha,
            "target_modules": targets,
            "lora_dropout": 0.0,
            "bias": "none",
            "fan_in_fan_out": false,
            "use_rslora": false,
            "use_dora": false,
            "modules_to_save": null,
            "inference_mode": true,
            "base_model_name_or_path": base_model_name(adapter),
            "rank_pattern": {},
            "alpha_pattern": {},
    });
    let files = write_folder(dir, "adapter_model.safetensors", &tensors, f16, &config)?;
    Ok(ExportReport {
        dir: dir.to_path_buf(),
        files,
        tensors: adapter.pairs.len(),
        rank,
        alpha_or_scale: adapter.alpha,
    })
}

/// Writes the weights and `adapter_config.json` into `dir`; their paths.
fn write_folder(
    dir: &Path,
    weights_name: &str,
    tensors: &BTreeMap<String, (Vec<usize>, Vec<u8>)>,
    f16: bool,
    config: &serde_json::Value,
) -> Result<Vec<PathBuf>, ExportError> {
    let weights = dir.join(weights_name);
    let config_path = dir.join("adapter_config.json");
    write_safetensors(&weights, tensors, f16)?;
    write_json(&config_path, config)?;
    Ok(vec![config_path, weights])
}

/// Writes `adapter` as an MLX-LM adapter folder in `dir`: `lora_a` is Aᵀ (in × r), `lora_b` Bᵀ
/// (r × out), `scale` = alpha / r, LoRA on the last `num_layers` layers with the same keys.
pub fn to_mlx(adapter: &LoraAdapter, base: Option<&GgufFile>, dir: &Path) -> Result<ExportReport, ExportError> {
    let rank = uniform_rank(adapter, "MLX-LM")?;
    let pairs = hf_pairs(adapter, base)?;
    if pairs.iter().any(|(m, _, _)| m.layer.is_none()) {
        return Err(ExportError::Unsupported(
            "MLX-LM adapters cover the transformer layers only; this adapter also adapts lm_head or the token embeddings".into(),
        ));
    }
    let layers = base
        .and_then(|b| b.arch_u64("block_count"))
        .map(|n| n as usize)
        .or_else(|| pairs.iter().filter_map(|(m, _, _)| m.layer).max().map(|l| l + 1))
        .unwrap_or(0);
    let first = pairs.iter().filter_map(|(m, _, _)| m.layer).min().unwrap_or(0);
    let keys: BTreeSet<String> = pairs.iter().map(|(m, _, _)| m.key.clone()).collect();
    let mut tensors = BTreeMap::new();
    for (module, a, b) in &pairs {
        let (at, bt) = (a.transposed(), b.transposed());
        tensors.insert(
            format!("{}.lora_a", module.path),
            (vec![at.rows, at.cols], tensor_bytes(&at, false)),
        );
        tensors.insert(
            format!("{}.lora_b", module.path),
            (vec![bt.rows, bt.cols], tensor_bytes(&bt, false)),
        );
    }
    let scale = adapter.alpha / rank as f64;
    let config = serde_json::json!({
            "fine_tune_type": "lora",
            // LoRA layers are made for the last `num_layers` layers; those this adapter does not
            // touch get a zero lora_b there and change nothing.
            "num_layers": layers.saturating_sub(first),
            "lora_parameters": { "rank": rank, "scale": scale, "dropout": 0.0, "keys": keys },
            "model": base_model_name(adapter),
    });
    let files = write_folder(dir, "adapters.safetensors", &tensors, false, &config)?;
    Ok(ExportReport {
        dir: dir.to_path_buf(),
        files,
        tensors: adapter.pairs.len(),
        rank,
        alpha_or_scale: scale,
    })
}

/// Metadata recording where an adapter came from (kept in the GGUF and by the registry).
pub fn provenance(source_format: &str, how: &str, from: &Path) -> Vec<(String, Value)> {
    vec![
        ("nanolab.source.format".to_string(), Value::Str(source_format.into())),
        ("nanolab.source.conversion".to_string(), Value::Str(how.into())),
        (
            "nanolab.source.file".to_string(),
            Value::Str(from.display().to_string()),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unpermute_undoes_the_importers_permutation() {
        let m = Matrix {
            rows: 16,
            cols: 3,
            data: (0..48).map(|v| v as f32).collect(),
        };
        let p = super::super::peft::permute_rows(&m, 2).unwrap();
        assert_ne!(p, m);
        assert_eq!(unpermute_rows(&p, 2).unwrap(), m);
    }

    #[test]
    fn names_go_back_to_hugging_face_modules() {
        let m = hf_module("blk.7.attn_output.weight", "qwen2").unwrap();
        assert_eq!((m.path.as_str(), m.layer), ("model.layers.7.self_attn.o_proj", Some(7)));
        assert_eq!(
            hf_module("blk.0.ffn_up.weight", "phi3").unwrap().key,
            "mlp.gate_up_proj"
        );
        assert_eq!(hf_module("blk.0.ffn_up.weight", "llama").unwrap().key, "mlp.up_proj");
        assert_eq!(hf_module("output.weight", "llama").unwrap().path, "lm_head");
        assert!(hf_module("blk.0.ssm_in.weight", "mamba").is_err());
    }
}
