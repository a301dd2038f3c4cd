//! A GGUF LoRA adapter as matrices: every `blk.N.X.weight.lora_a` / `.lora_b` pair decoded to
//! f32 (A: rank × in, B: out × rank, as PEFT stores them), with its alpha and metadata; and
//! written back as a GGUF adapter in f32, f16 or q8_0. What export and compression work on.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::peft::{encode, Matrix, OutType, TOKEN_EMBD};
use crate::gguf::writer::{self, TensorData};
use crate::gguf::{GgufFile, Value};

/// Why an adapter file cannot be read or written.
#[derive(Debug, thiserror::Error)]
pub enum LoraFileError {
    /// Unreadable or unwritable.
    #[error("{path}: {message}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What happened.
        message: String,
    },
    /// Not a LoRA adapter nanolab can take apart.
    #[error("{path}: {message}")]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

/// One adapted base tensor: A (rank × in) and B (out × rank).
#[derive(Debug, Clone, PartialEq)]
pub struct LoraPair {
    /// lora_a.
    pub a: Matrix,
    /// lora_b.
    pub b: Matrix,
}

impl LoraPair {
    /// This pair's rank.
    pub fn rank(&self) -> usize {
        self.a.rows
    }
}

/// A LoRA adapter in memory.
#[derive(Debug, Clone, PartialEq)]
pub struct LoraAdapter {
    /// `general.architecture`.
    pub arch: String,
    /// `adapter.lora.alpha` (llama.cpp scales each pair by alpha / its rank).
    pub alpha: f64,
    /// Every metadata key but the ones written anew (type, alpha).
    pub metadata: Vec<(String, Value)>,
    /// By base tensor name (`blk.0.attn_q.weight`).
    pub pairs: BTreeMap<String, LoraPair>,
    /// The dominant tensor type it was stored in (`F16`).
    pub stored_as: String,
}

impl LoraAdapter {
    /// Reads and decodes `path`.
    pub fn read(path: &Path) -> Result<Self, LoraFileError> {
        let format = |message: String| LoraFileError::Format {
            path: path.to_path_buf(),
            message,
        };
        let file = crate::gguf::read(path).map_err(|e| LoraFileError::Io {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        if file.get_str("general.type") != Some("adapter") || file.get_str("adapter.type") != Some("lora") {
            return Err(format("not a LoRA adapter (general.type / adapter.type)".into()));
        }
        let arch = file
            .architecture()
            .ok_or_else(|| format("no general.architecture".into()))?
            .to_string();
        let alpha = file
            .get("adapter.lora.alpha")
            .and_then(Value::as_f64)
            .ok_or_else(|| format("no adapter.lora.alpha".into()))?;
        let mut pairs: BTreeMap<String, (Option<Matrix>, Option<Matrix>)> = BTreeMap::new();
        let mut types: BTreeMap<&str, usize> = BTreeMap::new();
        for t in &file.tensors {
            let (base, is_a) = if let Some(b) = t.name.strip_suffix(".lora_a") {
                (b, true)
            } else if let Some(b) = t.name.strip_suffix(".lora_b") {
                (b, false)
            } else {
                return Err(format(format!("tensor {} is not a lora_a/lora_b tensor", t.name)));
            };
            let [cols, rows] = t.dims[..] else {
                return Err(format(format!("tensor {} is not 2-D: {:?}", t.name, t.dims)));
            };
            let raw = file.read_tensor_bytes(t).map_err(|e| format(e.to_string()))?;
            let data = super::merge::dequantize(t, &raw).map_err(|e| format(e.to_string()))?;
            *types.entry(t.ggml_type.name).or_default() += 1;
            let m = Matrix {
                rows: rows as usize,
                cols: cols as usize,
                data,
            };
            let e = pairs.entry(base.to_string()).or_default();
            if is_a {
                e.0 = Some(m);
            } else {
                e.1 = Some(m);
            }
        }
        let mut out = BTreeMap::new();
        for (name, (a, b)) in pairs {
            let (Some(a), Some(b)) = (a, b) else {
                return Err(format(format!("{name}: lora_a or lora_b is missing")));
            };
            // In memory every pair is A (rank × in), B (out × rank); see `TOKEN_EMBD`.
            let a = if name == TOKEN_EMBD { a.transposed() } else { a };
            if a.rows != b.cols {
                return Err(format(format!(
                    "{name}: lora_a has rank {} but lora_b {}",
                    a.rows, b.cols
                )));
            }
            out.insert(name, LoraPair { a, b });
        }
        if out.is_empty() {
            return Err(format("no LoRA tensors".into()));
        }
        let stored_as = types
            .iter()
            .max_by_key(|(_, n)| **n)
            .map_or("F32", |(t, _)| *t)
            .to_string();
        let skip = [
            "general.architecture",
            "general.type",
            "adapter.type",
            "adapter.lora.alpha",
        ];
        let metadata = file
            .metadata_order
            .iter()
            .filter(|k| !skip.contains(&k.as_str()))
            .filter_map(|k| file.metadata.get(k).map(|v| (k.clone(), v.clone())))
            .collect();
        Ok(Self {
            arch,
            alpha,
            metadata,
            pairs: out,
            stored_as,
        })
    }

    /// The rank when every pair has the same one.
    pub fn uniform_rank(&self) -> Option<usize> {
        let mut ranks = self.pairs.values().map(LoraPair::rank);
        let first = ranks.next()?;
        ranks.all(|r| r == first).then_some(first)
    }

    /// The largest rank of any pair.
    pub fn max_rank(&self) -> usize {
        self.pairs.values().map(LoraPair::rank).max().unwrap_or(0)
    }

    /// Parameters (every A and B value).
    pub fn n_params(&self) -> usize {
        self.pairs.values().map(|p| p.a.data.len() + p.b.data.len()).sum()
    }

    /// Writes the adapter to `out` as `ty` (beside, then renamed), with `extra` metadata added.
    pub fn write(&self, out: &Path, ty: OutType, extra: &[(String, Value)]) -> Result<u64, LoraFileError> {
        let io = |e: std::io::Error| LoraFileError::Io {
            path: out.to_path_buf(),
            message: e.to_string(),
        };
        let mut metadata = vec![
            ("general.architecture".to_string(), Value::Str(self.arch.clone())),
            ("general.type".to_string(), Value::Str("adapter".into())),
            ("adapter.type".to_string(), Value::Str("lora".into())),
            ("adapter.lora.alpha".to_string(), Value::F64(self.alpha)),
        ];
        for (k, v) in self.metadata.iter().chain(extra) {
            if let Some(slot) = metadata.iter_mut().find(|(key, _)| key == k) {
                slot.1 = v.clone();
            } else {
                metadata.push((k.clone(), v.clone()));
            }
        }
        let tensors: Vec<TensorData> = self
            .pairs
            .iter()
            .flat_map(|(name, p)| {
                let a = if name == TOKEN_EMBD {
                    std::borrow::Cow::Owned(p.a.transposed())
                } else {
                    std::borrow::Cow::Borrowed(&p.a)
                };
                [
                    encode(format!("{name}.lora_a"), &a, ty),
                    encode(format!("{name}.lora_b"), &p.b, ty),
                ]
            })
            .collect();
        let tmp = out.with_extension("gguf.partial");
        let write = || -> std::io::Result<()> {
            if let Some(parent) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::create_dir_all(parent)?;
            }
            let mut f = std::io::BufWriter::new(std::fs::File::create(&tmp)?);
            writer::write(&mut f, &metadata, &tensors)?;
            std::io::Write::flush(&mut f)?;
            f.into_inner().map_err(|e| e.into_error())?.sync_all()?;
            std::fs::rename(&tmp, out)
        };
        if let Err(e) = write() {
            let _ = std::fs::remove_file(&tmp);
            return Err(io(e));
        }
        std::fs::metadata(out).map(|m| m.len()).map_err(io)
    }
}

/// The base model a Q/K row permutation needs the head counts of, when the architecture has one.
pub fn head_counts(base: &GgufFile) -> (usize, usize) {
    let n_head = base.arch_u64("attention.head_count").unwrap_or(0) as usize;
    let n_head_kv = base.arch_u64("attention.head_count_kv").map_or(n_head, |v| v as usize);
    (n_head, n_head_kv)
}

/// Architectures whose Q/K rows llama.cpp's converter permutes (and nanolab's importer too).
pub fn permutes_qk(arch: &str) -> bool {
    matches!(arch, "llama" | "mistral" | "granite")
}
