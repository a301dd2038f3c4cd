//! Hugging Face PEFT LoRA folders (`adapter_config.json` + `adapter_model.safetensors`) converted
//! to GGUF LoRA adapters for a given base model: tensor names mapped to llama.cpp's, the Q/K row
//! permutation llama.cpp's converter applies to llama-family weights, alpha and rank from the
//! config, f32/f16/q8_0 output, and a check of the PEFT tokenizer against the base vocabulary.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::peft_files::read_config;
pub use super::peft_files::{
    is_base_layer_copy, map_name, parse_config, read_tensors, tensors_from_bytes, Matrix, PeftConfig, PeftError,
    TOKEN_EMBD,
};
use crate::gguf::writer::{self, TensorData};
use crate::gguf::{GgmlType, GgufFile, Value};

/// Output tensor type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum OutType {
    /// 32-bit float.
    F32,
    /// 16-bit float.
    F16,
    /// 8-bit blocks (tensors whose rows are not a multiple of 32 stay f16).
    #[value(name = "q8_0", alias = "q8-0")]
    Q8_0,
}

/// The name the command line uses for `t`.
pub fn type_name(t: OutType) -> &'static str {
    match t {
        OutType::F32 => "f32",
        OutType::F16 => "f16",
        OutType::Q8_0 => "q8_0",
    }
}

/// What an import produced.
#[derive(Debug, Clone, Serialize)]
pub struct ImportReport {
    /// Output file.
    pub out: PathBuf,
    /// Base tensors adapted.
    pub targets: usize,
    /// Rank.
    pub rank: u64,
    /// Alpha written to the GGUF.
    pub alpha: f64,
    /// Output file size.
    pub file_bytes: u64,
    /// Warnings (tokenizer differences, …).
    pub warnings: Vec<String>,
}

/// The row permutation llama.cpp's converter applies to llama-family Q and K weights:
/// rows grouped per head as [2, half] become [half, 2].
pub fn permute_rows(m: &Matrix, n_head: usize) -> Result<Matrix, PeftError> {
    reorder_rows(m, n_head, false).map_err(PeftError::Mismatch)
}

/// [`permute_rows`], or with `inverse` its undoing ([half, 2] per head back to [2, half]).
pub fn reorder_rows(m: &Matrix, n_head: usize, inverse: bool) -> Result<Matrix, String> {
    if n_head == 0 || !m.rows.is_multiple_of(n_head * 2) {
        return Err(format!(
            "{} rows cannot be split into {n_head} heads for the Q/K permutation",
            m.rows
        ));
    }
    let half = m.rows / n_head / 2;
    let mut out = vec![0f32; m.data.len()];
    for h in 0..n_head {
        for s in 0..2 {
            for i in 0..half {
                let hf = h * 2 * half + s * half + i;
                let gguf = h * 2 * half + i * 2 + s;
                let (from, to) = if inverse { (gguf, hf) } else { (hf, gguf) };
                out[to * m.cols..(to + 1) * m.cols].copy_from_slice(&m.data[from * m.cols..(from + 1) * m.cols]);
            }
        }
    }
    Ok(Matrix {
        rows: m.rows,
        cols: m.cols,
        data: out,
    })
}

/// Encodes a matrix for a GGUF tensor of `ty` (ggml dims [cols, rows]).
pub(crate) fn encode(name: String, m: &Matrix, ty: OutType) -> TensorData {
    let dims = vec![m.cols as u64, m.rows as u64];
    let ty = if ty == OutType::Q8_0 && !m.cols.is_multiple_of(32) {
        OutType::F16
    } else {
        ty
    };
    let (ggml, data) = match ty {
        OutType::F32 => ("F32", writer::f32_bytes(&m.data)),
        OutType::F16 => (
            "F16",
            m.data
                .iter()
                .flat_map(|v| half::f16::from_f32(*v).to_le_bytes())
                .collect(),
        ),
        OutType::Q8_0 => ("Q8_0", quantize_q8_0(&m.data)),
    };
    TensorData {
        name,
        dims,
        ggml_type: GgmlType::from_name(ggml).unwrap_or_else(unreachable_type),
        data,
    }
}

fn unreachable_type() -> GgmlType {
    // The three names above are in the type table; this keeps `unwrap` out of library code.
    GgmlType {
        id: 0,
        name: "F32",
        block_elems: 1,
        block_bytes: 4,
    }
}

/// ggml's Q8_0: per 32 values, an f16 scale d = max|x| / 127 and 32 rounded int8 values.
pub fn quantize_q8_0(values: &[f32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(values.len() / 32 * 34);
    for block in values.chunks(32) {
        let amax = block.iter().fold(0f32, |m, v| m.max(v.abs()));
        let d = amax / 127.0;
        let id = if d > 0.0 { 1.0 / d } else { 0.0 };
        out.extend_from_slice(&half::f16::from_f32(d).to_le_bytes());
        for v in block {
            out.push((v * id).round().clamp(-127.0, 127.0) as i8 as u8);
        }
    }
    out
}

/// Compares a PEFT folder's `tokenizer.json` with the base model's vocabulary.
fn tokenizer_warnings(dir: &Path, base: &GgufFile) -> Vec<String> {
    let path = dir.join("tokenizer.json");
    if !path.is_file() {
        return Vec::new();
    }
    let tok = match tokenizers::Tokenizer::from_file(&path) {
        Ok(t) => t,
        Err(e) => {
            return vec![format!(
                "{}: could not be read ({e}); vocabulary not compared",
                path.display()
            )]
        }
    };
    let base_tokens: Vec<&str> = match base.get("tokenizer.ggml.tokens") {
        Some(Value::Array(items)) => items.iter().map(|v| v.as_str().unwrap_or("")).collect(),
        _ => return vec!["the base model has no token list; vocabulary not compared".into()],
    };
    let mut vocab: Vec<(String, u32)> = tok.get_vocab(true).into_iter().collect();
    vocab.sort_by_key(|(_, id)| *id);
    let mut added = Vec::new();
    let mut changed = Vec::new();
    for (token, id) in vocab {
        match base_tokens.get(id as usize) {
            None => added.push(format!("{token:?} ({id})")),
            Some(b) if *b != token => changed.push(format!("{id}: {b:?} -> {token:?}")),
            Some(_) => {}
        }
    }
    let mut warnings = Vec::new();
    let show = |v: &[String]| v.iter().take(5).cloned().collect::<Vec<_>>().join(", ");
    if !added.is_empty() {
        warnings.push(format!(
            "the adapter's tokenizer adds {} tokens the base model does not have (e.g. {}); text using them will not tokenize as in training",
            added.len(),
            show(&added)
        ));
    }
    if !changed.is_empty() {
        warnings.push(format!(
            "the adapter's tokenizer changes {} token ids of the base model (e.g. {})",
            changed.len(),
            show(&changed)
        ));
    }
    warnings
}

fn skipped_warning(skipped: &[String]) -> Option<String> {
    (!skipped.is_empty()).then(|| {
        format!(
            "skipped {} copies of base weights that peft saves beside an embed_tokens/lm_head LoRA ({}); the base model's own are used",
            skipped.len(),
            skipped.join(", ")
        )
    })
}

/// Converts the PEFT folder `dir` to a GGUF LoRA for `base` at `out`.
pub fn import(dir: &Path, base: &GgufFile, out: &Path, out_type: OutType) -> Result<ImportReport, PeftError> {
    if !dir.is_dir() {
        return Err(PeftError::Missing(dir.to_path_buf()));
    }
    let cfg = read_config(dir)?;
    let tensors = read_tensors(&dir.join("adapter_model.safetensors"))?;
    super::peft_files::refuse_unsupported(&cfg, &tensors.keys().map(String::as_str).collect::<Vec<_>>())?;
    let arch = base
        .architecture()
        .ok_or_else(|| PeftError::Mismatch("the base model has no architecture".into()))?
        .to_string();
    let permute_qk = super::lora_file::permutes_qk(&arch);
    let (n_head, n_head_kv) = super::lora_file::head_counts(base);

    let mut pairs: BTreeMap<String, (Option<Matrix>, Option<Matrix>, String)> = BTreeMap::new();
    let mut skipped = Vec::new();
    for (key, m) in tensors {
        if is_base_layer_copy(&key) {
            skipped.push(key);
            continue;
        }
        let (base_name, is_a, hf_module) = map_name(&key)?;
        let e = pairs.entry(base_name).or_insert((None, None, hf_module));
        if is_a {
            e.0 = Some(m);
        } else {
            e.1 = Some(m);
        }
    }
    if pairs.is_empty() {
        return Err(PeftError::Tensors {
            path: dir.join("adapter_model.safetensors"),
            detail: "no LoRA tensors".into(),
        });
    }
    let mut out_tensors = Vec::new();
    for (name, (a, b, hf_module)) in pairs {
        let (Some(a), Some(b)) = (a, b) else {
            return Err(PeftError::Mismatch(format!("{name}: lora_A or lora_B is missing")));
        };
        if a.rows as u64 != cfg.r || b.cols as u64 != cfg.r {
            return Err(PeftError::Mismatch(format!(
                "{name}: lora_A is {}x{} and lora_B {}x{}, but the config says rank {}",
                a.rows, a.cols, b.rows, b.cols, cfg.r
            )));
        }
        let b = match (permute_qk, hf_module.as_str()) {
            (true, "q_proj") => permute_rows(&b, n_head)?,
            (true, "k_proj") => permute_rows(&b, n_head_kv)?,
            _ => b,
        };
        let a = if name == TOKEN_EMBD { a.transposed() } else { a };
        out_tensors.push(encode(format!("{name}.lora_a"), &a, out_type));
        out_tensors.push(encode(format!("{name}.lora_b"), &b, out_type));
    }
    // rsLoRA scales by alpha/sqrt(r); llama.cpp by alpha/r: write the alpha that gives the same.
    let alpha = if cfg.use_rslora {
        cfg.lora_alpha * (cfg.r as f64).sqrt()
    } else {
        cfg.lora_alpha
    };
    let name = dir
        .file_name()
        .map_or_else(|| "adapter".to_string(), |n| n.to_string_lossy().into_owned());
    let mut metadata = vec![
        ("general.architecture".to_string(), Value::Str(arch)),
        ("general.type".to_string(), Value::Str("adapter".into())),
        ("general.name".to_string(), Value::Str(name)),
        ("adapter.type".to_string(), Value::Str("lora".into())),
        ("adapter.lora.alpha".to_string(), Value::F64(alpha)),
    ];
    metadata.extend(super::export::provenance(
        "peft",
        &format!("nanolab adapters import ({})", format!("{out_type:?}").to_lowercase()),
        dir,
    ));
    if let Some(b) = cfg.base_model_name_or_path.as_ref().filter(|b| !b.starts_with('/')) {
        metadata.push(("general.base_model.count".to_string(), Value::U64(1)));
        metadata.push(("general.base_model.0.name".to_string(), Value::Str(b.clone())));
    }
    let tmp = out.with_extension("gguf.partial");
    let write = || -> std::io::Result<()> {
        if let Some(parent) = out.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let mut f = std::io::BufWriter::new(std::fs::File::create(&tmp)?);
        writer::write(&mut f, &metadata, &out_tensors)?;
        std::io::Write::flush(&mut f)?;
        f.into_inner().map_err(|e| e.into_error())?.sync_all()
    };
    if let Err(source) = write() {
        let _ = std::fs::remove_file(&tmp);
        return Err(PeftError::Io {
            path: out.to_path_buf(),
            source,
        });
    }
    // Check the result exactly as a dropped adapter is checked, before it is kept.
    let check = crate::gguf::read(&tmp)
        .map_err(|e| PeftError::Mismatch(e.to_string()))
        .and_then(|f| super::check(&f, base).map_err(|e| PeftError::Mismatch(e.to_string())));
    let report = match check {
        Ok(r) => r,
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
    };
    std::fs::rename(&tmp, out).map_err(|source| PeftError::Io {
        path: out.to_path_buf(),
        source,
    })?;
    Ok(ImportReport {
        out: out.to_path_buf(),
        targets: report.targets,
        rank: cfg.r,
        alpha,
        file_bytes: std::fs::metadata(out).map_or(0, |m| m.len()),
        warnings: skipped_warning(&skipped)
            .into_iter()
            .chain(tokenizer_warnings(dir, base))
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_map_to_llama_cpp() {
        let (n, a, m) = map_name("base_model.model.model.layers.12.self_attn.k_proj.lora_A.weight").unwrap();
        assert_eq!((n.as_str(), a, m.as_str()), ("blk.12.attn_k.weight", true, "k_proj"));
        let (n, a, _) = map_name("base_model.model.model.layers.0.mlp.down_proj.lora_B.weight").unwrap();
        assert_eq!((n.as_str(), a), ("blk.0.ffn_down.weight", false));
        let (n, a, _) = map_name("base_model.model.lm_head.lora_A.weight").unwrap();
        assert_eq!((n.as_str(), a), ("output.weight", true));
        let (n, a, _) = map_name("base_model.model.model.embed_tokens.lora_embedding_A").unwrap();
        assert_eq!((n.as_str(), a), ("token_embd.weight", true));
        assert!(is_base_layer_copy("base_model.model.lm_head.base_layer.weight"));
        assert!(!is_base_layer_copy("base_model.model.lm_head.lora_A.weight"));
        // Without the PEFT prefix, with the `.default` adapter name, and Phi-3's fused modules.
        let (n, a, _) = map_name("model.layers.3.self_attn.qkv_proj.lora_B.default.weight").unwrap();
        assert_eq!((n.as_str(), a), ("blk.3.attn_qkv.weight", false));
        let (n, _, _) = map_name("model.layers.3.mlp.gate_up_proj.lora_A.weight").unwrap();
        assert_eq!(n, "blk.3.ffn_up.weight");
        for (key, why) in [
            (
                "base_model.model.model.layers.0.self_attn.q_proj.lora_magnitude_vector",
                "DoRA",
            ),
            (
                "base_model.model.lm_head.modules_to_save.default.weight",
                "modules_to_save",
            ),
        ] {
            let e = map_name(key).unwrap_err().to_string();
            assert!(e.contains(why) && e.contains(key), "{e}");
        }
    }

    #[test]
    fn permutation_matches_the_reference_reshape() {
        // 2 heads, head dim 4: rows [h0: a0 a1 b0 b1 | h1: ...] become [a0 b0 a1 b1 | ...].
        let m = Matrix {
            rows: 8,
            cols: 1,
            data: (0..8).map(|v| v as f32).collect(),
        };
        let p = permute_rows(&m, 2).unwrap();
        assert_eq!(p.data, vec![0.0, 2.0, 1.0, 3.0, 4.0, 6.0, 5.0, 7.0]);
    }

    #[test]
    fn q8_0_round_trips_within_half_a_step() {
        let v: Vec<f32> = (0..64).map(|i| (i as f32 - 30.0) / 7.0).collect();
        let q = quantize_q8_0(&v);
        assert_eq!(q.len(), 2 * 34);
        for (b, block) in v.chunks(32).enumerate() {
            let d = half::f16::from_le_bytes([q[b * 34], q[b * 34 + 1]]).to_f32();
            for (i, x) in block.iter().enumerate() {
                let back = f32::from(q[b * 34 + 2 + i] as i8) * d;
                assert!((back - x).abs() <= d * 0.5 + 1e-3, "{back} vs {x}");
            }
        }
    }
}
