//! Reading a Hugging Face PEFT LoRA folder: `adapter_config.json` (parsed and checked) and
//! `adapter_model.safetensors` (decoded to f32 matrices), and PEFT tensor names mapped to
//! llama.cpp's. Depends only on serde, safetensors and half, so the fuzz targets
//! (tests/fuzz) compile it on its own.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Why a PEFT folder cannot be imported.
#[derive(Debug, thiserror::Error)]
pub enum PeftError {
    /// A file is missing.
    #[error("{0}: missing; a PEFT adapter folder holds adapter_config.json and adapter_model.safetensors")]
    Missing(PathBuf),
    /// I/O.
    #[error("{path}: {source}")]
    Io {
        /// Path.
        path: PathBuf,
        /// OS error.
        source: std::io::Error,
    },
    /// The config is malformed.
    #[error("{path}: invalid adapter config: {detail}")]
    Config {
        /// Path.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// The safetensors file is malformed.
    #[error("{path}: invalid safetensors: {detail}")]
    Tensors {
        /// Path.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// Something the importer does not support.
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// The result does not fit the base model.
    #[error("the converted adapter does not fit the base model: {0}")]
    Mismatch(String),
}

/// The parts of `adapter_config.json` the importer uses.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct PeftConfig {
    /// LoRA rank.
    pub r: u64,
    /// LoRA alpha.
    pub lora_alpha: f64,
    /// `LORA` for LoRA.
    #[serde(default)]
    pub peft_type: Option<String>,
    /// Base model id recorded by PEFT.
    #[serde(default)]
    pub base_model_name_or_path: Option<String>,
    /// rsLoRA scaling (alpha / sqrt(r)).
    #[serde(default)]
    pub use_rslora: bool,
    /// Per-module ranks (unsupported when non-empty).
    #[serde(default)]
    pub rank_pattern: BTreeMap<String, serde_json::Value>,
    /// Per-module alphas (unsupported when non-empty).
    #[serde(default)]
    pub alpha_pattern: BTreeMap<String, serde_json::Value>,
    /// DoRA (unsupported).
    #[serde(default)]
    pub use_dora: bool,
    /// Modules saved whole beside the LoRA (unsupported when non-empty).
    #[serde(default)]
    pub modules_to_save: Option<Vec<String>>,
}

/// A float matrix, row-major (rows × cols), as PEFT stores it.
#[derive(Debug, Clone, PartialEq)]
pub struct Matrix {
    /// Rows.
    pub rows: usize,
    /// Columns.
    pub cols: usize,
    /// Values.
    pub data: Vec<f32>,
}

impl Matrix {
    /// This matrix transposed (cols × rows).
    pub fn transposed(&self) -> Matrix {
        let mut data = vec![0f32; self.data.len()];
        for i in 0..self.rows {
            for j in 0..self.cols {
                data[j * self.rows + i] = self.data[i * self.cols + j];
            }
        }
        Matrix {
            rows: self.cols,
            cols: self.rows,
            data,
        }
    }
}

/// llama.cpp's name of the token embedding matrix. Its LoRA pair is stored the other way round:
/// lora_a as Aᵀ (ggml [rank, vocab], so llama.cpp can take rows of it per token) and lora_b as B.
pub const TOKEN_EMBD: &str = "token_embd.weight";

/// Whether a safetensors key is the untouched copy of a base weight that peft saves beside the
/// LoRA pair when it adapts `embed_tokens` or `lm_head` (`save_embedding_layers`). llama.cpp's
/// converter skips these too: the base model already holds them.
pub fn is_base_layer_copy(key: &str) -> bool {
    key.split('.').any(|p| p == "base_layer")
}

/// llama.cpp's module name for a Hugging Face projection name.
fn module_name(hf: &str) -> Option<&'static str> {
    Some(match hf {
        "q_proj" => "attn_q",
        "k_proj" => "attn_k",
        "v_proj" => "attn_v",
        "o_proj" => "attn_output",
        "gate_proj" => "ffn_gate",
        "up_proj" => "ffn_up",
        "down_proj" => "ffn_down",
        // Phi-3's fused projections: llama.cpp keeps them fused too (`attn_qkv`, and `ffn_up`
        // holding gate and up), so they map one to one.
        "qkv_proj" => "attn_qkv",
        "gate_up_proj" => "ffn_up",
        _ => return None,
    })
}

/// Maps `…layers.N.self_attn.q_proj.lora_A.weight` to (`blk.N.attn_q.weight`, is_a, hf module).
pub fn map_name(key: &str) -> Result<(String, bool, String), PeftError> {
    let parts: Vec<&str> = key.split('.').collect();
    let refuse = |why: &str| Err(PeftError::Unsupported(format!("tensor {key}: {why}")));
    if parts.contains(&"modules_to_save") || parts.contains(&"original_module") {
        return refuse("a full copy of a module (modules_to_save); llama.cpp adapters hold only LoRA pairs");
    }
    if parts.iter().any(|p| p.starts_with("lora_magnitude_vector")) {
        return refuse("a DoRA magnitude vector; llama.cpp runs plain LoRA only");
    }
    if let Some(ab) = parts
        .iter()
        .position(|p| *p == "lora_embedding_A" || *p == "lora_embedding_B")
    {
        if ab > 0 && parts[ab - 1] == "embed_tokens" {
            return Ok((
                TOKEN_EMBD.into(),
                parts[ab] == "lora_embedding_A",
                "embed_tokens".into(),
            ));
        }
        return refuse("an embedding LoRA on a module other than embed_tokens");
    }
    if let Some(ab) = parts.iter().position(|p| *p == "lora_A" || *p == "lora_B") {
        if ab > 0 && parts[ab - 1] == "lm_head" {
            return Ok(("output.weight".into(), parts[ab] == "lora_A", "lm_head".into()));
        }
    }
    let layer_pos = parts
        .iter()
        .position(|p| *p == "layers")
        .ok_or_else(|| PeftError::Unsupported(format!("tensor {key}: not in a transformer layer")))?;
    let layer: u64 = parts
        .get(layer_pos + 1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| PeftError::Unsupported(format!("tensor {key}: no layer number")))?;
    let ab_pos = parts
        .iter()
        .position(|p| *p == "lora_A" || *p == "lora_B")
        .ok_or_else(|| PeftError::Unsupported(format!("tensor {key}: not a lora_A/lora_B tensor")))?;
    let hf_module = parts
        .get(ab_pos.wrapping_sub(1))
        .copied()
        .ok_or_else(|| PeftError::Unsupported(format!("tensor {key}: no module name")))?;
    let module = module_name(hf_module)
        .ok_or_else(|| PeftError::Unsupported(format!("tensor {key}: target module {hf_module} is not supported")))?;
    Ok((
        format!("blk.{layer}.{module}.weight"),
        parts[ab_pos] == "lora_A",
        hf_module.to_string(),
    ))
}

/// Refuses what llama.cpp cannot run: DoRA (`use_dora`), naming its magnitude vectors, and
/// whole modules saved beside the LoRA (`modules_to_save`), naming their tensors.
pub fn refuse_unsupported(cfg: &PeftConfig, tensor_names: &[&str]) -> Result<(), PeftError> {
    let saved = cfg.modules_to_save.as_deref().unwrap_or_default();
    if !saved.is_empty() {
        let whole: Vec<&str> = tensor_names
            .iter()
            .copied()
            .filter(|n| saved.iter().any(|m| n.split('.').any(|p| p == m)) && !n.contains("lora_"))
            .collect();
        return Err(PeftError::Unsupported(format!(
            "modules_to_save {saved:?}: the adapter carries whole copies of those modules ({}); llama.cpp adapters hold only LoRA pairs",
            if whole.is_empty() { "none saved".to_string() } else { whole.join(", ") }
        )));
    }
    if !cfg.use_dora {
        return Ok(());
    }
    let vectors: Vec<&str> = tensor_names
        .iter()
        .copied()
        .filter(|n| n.contains("lora_magnitude_vector"))
        .collect();
    Err(PeftError::Unsupported(format!(
        "a DoRA adapter (use_dora in adapter_config.json, {} magnitude vectors such as {}); llama.cpp runs plain LoRA only",
        vectors.len(),
        vectors.first().copied().unwrap_or("none saved")
    )))
}

pub(crate) fn read_config(dir: &Path) -> Result<PeftConfig, PeftError> {
    let path = dir.join("adapter_config.json");
    if !path.is_file() {
        return Err(PeftError::Missing(path));
    }
    let text = std::fs::read_to_string(&path).map_err(|source| PeftError::Io {
        path: path.clone(),
        source,
    })?;
    parse_config(&path, &text)
}

/// Parses and checks an `adapter_config.json` (`path` names it in errors).
pub fn parse_config(path: &Path, text: &str) -> Result<PeftConfig, PeftError> {
    let cfg: PeftConfig = serde_json::from_str(text).map_err(|e| PeftError::Config {
        path: path.to_path_buf(),
        detail: e.to_string(),
    })?;
    let bad = |detail: String| PeftError::Config {
        path: path.to_path_buf(),
        detail,
    };
    if cfg
        .peft_type
        .as_deref()
        .is_some_and(|t| !t.eq_ignore_ascii_case("lora"))
    {
        return Err(bad(format!("peft_type {:?} is not LORA", cfg.peft_type)));
    }
    if cfg.r == 0 || cfg.r > 4096 {
        return Err(bad(format!("rank r = {} is out of range", cfg.r)));
    }
    if !cfg.lora_alpha.is_finite() || cfg.lora_alpha <= 0.0 {
        return Err(bad(format!("lora_alpha = {} is not a positive number", cfg.lora_alpha)));
    }
    if !cfg.rank_pattern.is_empty() || !cfg.alpha_pattern.is_empty() {
        return Err(PeftError::Unsupported("per-module rank_pattern/alpha_pattern".into()));
    }
    Ok(cfg)
}

/// Reads every tensor of a safetensors file as f32 matrices.
pub fn read_tensors(path: &Path) -> Result<BTreeMap<String, Matrix>, PeftError> {
    if !path.is_file() {
        return Err(PeftError::Missing(path.to_path_buf()));
    }
    let bytes = std::fs::read(path).map_err(|source| PeftError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    tensors_from_bytes(path, &bytes)
}

/// Decodes a safetensors file held in memory into f32 matrices (`path` names it in errors).
pub fn tensors_from_bytes(path: &Path, bytes: &[u8]) -> Result<BTreeMap<String, Matrix>, PeftError> {
    let bad = |detail: String| PeftError::Tensors {
        path: path.to_path_buf(),
        detail,
    };
    let st = safetensors::SafeTensors::deserialize(bytes).map_err(|e| bad(e.to_string()))?;
    let mut out = BTreeMap::new();
    for (name, view) in st.tensors() {
        let shape = view.shape();
        let (rows, cols) = match shape {
            [r, c] => (*r, *c),
            other => return Err(bad(format!("tensor {name} has shape {other:?}; LoRA tensors are 2-D"))),
        };
        let raw = view.data();
        let data: Vec<f32> = match view.dtype() {
            safetensors::Dtype::F32 => raw
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
            safetensors::Dtype::F16 => raw
                .chunks_exact(2)
                .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
            safetensors::Dtype::BF16 => raw
                .chunks_exact(2)
                .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
            other => {
                return Err(bad(format!(
                    "tensor {name} has dtype {other:?}; expected F32, F16 or BF16"
                )))
            }
        };
        if data.len() != rows * cols {
            return Err(bad(format!(
                "tensor {name}: {} values for shape {rows}x{cols}",
                data.len()
            )));
        }
        out.insert(name, Matrix { rows, cols, data });
    }
    Ok(out)
}
