//! Merging: bake a stack of LoRA adapters with their scales into a new base model GGUF
//! (W' = W + Σ scale·alpha/rank · B·A), as llama.cpp's export-lora does. Adapted tensors are
//! written as F16 (or F32); every other tensor and all metadata are copied unchanged.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::gguf::writer::{self, TensorHeader};
use crate::gguf::{self, GgmlType, TensorInfo, Value};

/// Why a merge failed.
#[derive(Debug, thiserror::Error)]
pub enum MergeError {
    /// A file could not be read or does not fit.
    #[error("{0}")]
    Input(String),
    /// A base tensor type nanolab cannot dequantize.
    #[error("base tensor {0} is {1}; merging supports F32, F16, BF16, Q8_0, Q4_0 and Q4_1 base tensors")]
    Unsupported(String, String),
    /// Writing failed (nothing is left behind).
    #[error("{path}: {source}")]
    Io {
        /// Output path.
        path: PathBuf,
        /// OS error.
        source: std::io::Error,
    },
}

/// What a merge produced.
#[derive(Debug, Clone, Serialize)]
pub struct MergeReport {
    /// Output file.
    pub out: PathBuf,
    /// Tensors changed.
    pub tensors_merged: usize,
    /// Output size.
    pub file_bytes: u64,
}

/// Float output type for merged tensors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum MergedType {
    /// 16-bit float.
    F16,
    /// 32-bit float.
    F32,
}

fn f16(b: &[u8]) -> f32 {
    half::f16::from_le_bytes([b[0], b[1]]).to_f32()
}

/// Dequantizes a tensor's raw bytes to f32 (row-major, ne0 fastest).
pub fn dequantize(t: &TensorInfo, raw: &[u8]) -> Result<Vec<f32>, MergeError> {
    let n = t.elems() as usize;
    let mut out = Vec::with_capacity(n);
    match t.ggml_type.name {
        "F32" => out.extend(
            raw.chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
        ),
        "F16" => out.extend(raw.chunks_exact(2).map(f16)),
        "BF16" => out.extend(
            raw.chunks_exact(2)
                .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32()),
        ),
        "Q8_0" => {
            for blk in raw.chunks_exact(34) {
                let d = f16(&blk[0..2]);
                out.extend(blk[2..].iter().map(|&q| f32::from(q as i8) * d));
            }
        }
        "Q4_0" => {
            for blk in raw.chunks_exact(18) {
                let d = f16(&blk[0..2]);
                let qs = &blk[2..];
                out.extend(qs.iter().map(|&q| (f32::from(q & 0x0f) - 8.0) * d));
                out.extend(qs.iter().map(|&q| (f32::from(q >> 4) - 8.0) * d));
            }
        }
        "Q4_1" => {
            for blk in raw.chunks_exact(20) {
                let (d, m) = (f16(&blk[0..2]), f16(&blk[2..4]));
                let qs = &blk[4..];
                out.extend(qs.iter().map(|&q| f32::from(q & 0x0f) * d + m));
                out.extend(qs.iter().map(|&q| f32::from(q >> 4) * d + m));
            }
        }
        other => return Err(MergeError::Unsupported(t.name.clone(), other.to_string())),
    }
    if out.len() != n {
        return Err(MergeError::Input(format!(
            "tensor {}: decoded {} of {n} values",
            t.name,
            out.len()
        )));
    }
    Ok(out)
}

/// One LoRA delta for a base tensor: A (rank × in), B (out × rank), effective scale.
struct Delta {
    a: Vec<f32>,
    b: Vec<f32>,
    rank: usize,
    scale: f32,
}

/// Merges `stack` (adapter path, scale) into `base`, writing `out` atomically.
pub fn merge(
    base_path: &Path,
    stack: &[(PathBuf, f32)],
    out: &Path,
    out_type: MergedType,
    progress: &mut dyn FnMut(f32),
) -> Result<MergeReport, MergeError> {
    let base = crate::gguf::validate_model_file(base_path).map_err(MergeError::Input)?;
    if base.get_u64("general.alignment").is_some_and(|a| a != 32) {
        return Err(MergeError::Input(
            "base models with an alignment other than 32 are not supported".into(),
        ));
    }
    let mut deltas: BTreeMap<String, Vec<Delta>> = BTreeMap::new();
    for (path, scale) in stack {
        let adapter = crate::adapters::validate_adapter_file(path, &base).map_err(MergeError::Input)?;
        let alpha = adapter.get("adapter.lora.alpha").and_then(Value::as_f64).unwrap_or(0.0);
        for t in &adapter.tensors {
            let Some(name) = t.name.strip_suffix(".lora_a") else {
                continue;
            };
            let b_info = adapter
                .tensor(&format!("{name}.lora_b"))
                .ok_or_else(|| MergeError::Input(format!("{}: {name}.lora_b missing", path.display())))?;
            let read = |ti: &TensorInfo| {
                adapter
                    .read_tensor_bytes(ti)
                    .map_err(|e| MergeError::Input(e.to_string()))
                    .and_then(|raw| dequantize(ti, &raw))
            };
            let delta = if name == super::peft::TOKEN_EMBD {
                // The embeddings' pair is flipped: lora_a holds vocab rows of rank values and
                // lora_b embd rows of rank, so ΔE[v][e] = Σ_r lora_a[v][r] · lora_b[e][r]. In the
                // sum below (W[o][i] += Σ_r b[o][r] · a[r][i], o over vocab, i over embd) that is
                // b = lora_a as stored and a = lora_b transposed.
                let rank = t.dims.first().copied().unwrap_or(1) as usize;
                let lb = read(b_info)?;
                let lb = super::peft::Matrix {
                    rows: lb.len() / rank.max(1),
                    cols: rank,
                    data: lb,
                };
                Delta {
                    a: lb.transposed().data,
                    b: read(t)?,
                    rank,
                    scale: scale * (alpha as f32) / rank as f32,
                }
            } else {
                let rank = t.dims.get(1).copied().unwrap_or(1) as usize;
                Delta {
                    a: read(t)?,
                    b: read(b_info)?,
                    rank,
                    scale: scale * (alpha as f32) / rank as f32,
                }
            };
            deltas.entry(name.to_string()).or_default().push(delta);
        }
    }
    let out_ggml = match out_type {
        MergedType::F16 => "F16",
        MergedType::F32 => "F32",
    };
    let out_ty = GgmlType::from_name(out_ggml).ok_or_else(|| MergeError::Input("type table".into()))?;
    let headers: Vec<TensorHeader> = base
        .tensors
        .iter()
        .map(|t| {
            let merged = deltas.contains_key(&t.name);
            TensorHeader {
                name: t.name.clone(),
                dims: t.dims.clone(),
                ggml_type: if merged { out_ty } else { t.ggml_type },
                bytes: if merged {
                    t.elems() * out_ty.block_bytes
                } else {
                    t.bytes
                },
            }
        })
        .collect();
    let mut metadata: Vec<(String, Value, Option<u32>)> = base
        .metadata_order
        .iter()
        .filter_map(|k| {
            Some((
                k.clone(),
                base.metadata.get(k)?.clone(),
                base.metadata_types.get(k).copied(),
            ))
        })
        .collect();
    let names: Vec<String> = stack
        .iter()
        .map(|(p, s)| {
            format!(
                "{}:{s}",
                p.file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default()
            )
        })
        .collect();
    metadata.push(("nanolab.merged_adapters".into(), Value::Str(names.join(", ")), None));

    let tmp = out.with_extension("gguf.partial");
    let n_tensors = base.tensors.len().max(1);
    let result = (|| -> Result<(), MergeError> {
        let io = |source| MergeError::Io {
            path: out.to_path_buf(),
            source,
        };
        if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let file = std::fs::File::create(&tmp).map_err(io)?;
        let mut w = std::io::BufWriter::new(file);
        let mut failure: Option<MergeError> = None;
        let write_result = writer::write_streaming(&mut w, &metadata, &headers, |i| {
            progress(i as f32 / n_tensors as f32);
            let t = &base.tensors[i];
            let raw = base
                .read_tensor_bytes(t)
                .map_err(|e| std::io::Error::other(e.to_string()))?;
            let Some(ds) = deltas.get(&t.name) else { return Ok(raw) };
            let mut w_f32 = match dequantize(t, &raw) {
                Ok(v) => v,
                Err(e) => {
                    let msg = e.to_string();
                    failure = Some(e);
                    return Err(std::io::Error::other(msg));
                }
            };
            let n_in = t.dims.first().copied().unwrap_or(0) as usize;
            let n_out = t.dims.get(1).copied().unwrap_or(1) as usize;
            for d in ds {
                // W[o][i] += scale * Σ_r B[o][r] * A[r][i]
                for o in 0..n_out {
                    let row = &mut w_f32[o * n_in..(o + 1) * n_in];
                    for r in 0..d.rank {
                        let coef = d.scale * d.b[o * d.rank + r];
                        if coef == 0.0 {
                            continue;
                        }
                        let a_row = &d.a[r * n_in..(r + 1) * n_in];
                        for (x, a) in row.iter_mut().zip(a_row) {
                            *x += coef * a;
                        }
                    }
                }
            }
            Ok(match out_type {
                MergedType::F32 => writer::f32_bytes(&w_f32),
                MergedType::F16 => w_f32
                    .iter()
                    .flat_map(|v| half::f16::from_f32(*v).to_le_bytes())
                    .collect(),
            })
        });
        if let Some(f) = failure {
            return Err(f);
        }
        write_result.map_err(io)?;
        w.flush().map_err(io)?;
        w.into_inner().map_err(|e| io(e.into_error()))?.sync_all().map_err(io)?;
        Ok(())
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    if let Err(e) = gguf::read(&tmp) {
        let _ = std::fs::remove_file(&tmp);
        return Err(MergeError::Input(format!("the merged file did not validate: {e}")));
    }
    std::fs::rename(&tmp, out).map_err(|source| MergeError::Io {
        path: out.to_path_buf(),
        source,
    })?;
    progress(1.0);
    Ok(MergeReport {
        out: out.to_path_buf(),
        tensors_merged: deltas.len(),
        file_bytes: std::fs::metadata(out).map_or(0, |m| m.len()),
    })
}
