//! A bounds-checked GGUF reader: every count, length and offset is checked against the file size
//! before anything is allocated, so a hostile file costs at most its own size in memory.

use std::collections::{BTreeMap, HashSet};
use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use super::types::GgmlType;

const GGUF_MAGIC: &[u8; 4] = b"GGUF";
/// ggml's `GGML_MAX_DIMS`.
const MAX_DIMS: u32 = 4;
const DEFAULT_ALIGNMENT: u64 = 32;
/// Arrays longer than this keep only their length (vocabularies are read on demand).
const MAX_KEPT_ARRAY_LEN: u64 = 1 << 22;

/// Why a file is not a GGUF file nanolab can use.
#[derive(Debug, thiserror::Error)]
pub enum GgufError {
    /// The path does not exist.
    #[error("{path}: no such file")]
    Missing { path: PathBuf },
    /// The path is a directory.
    #[error("{path}: is a directory, not a GGUF file")]
    Directory { path: PathBuf },
    /// The OS refused to open or read the file.
    #[error("{path}: cannot read: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    /// The file is empty.
    #[error("{path}: file is empty (0 bytes)")]
    Empty { path: PathBuf },
    /// The first four bytes are not `GGUF`.
    #[error("{path}: not a GGUF file (starts with {found:?}, expected \"GGUF\")")]
    BadMagic { path: PathBuf, found: String },
    /// A GGUF version this reader does not know.
    #[error("{path}: unsupported GGUF version {version} (supported: 2, 3)")]
    Version { path: PathBuf, version: u32 },
    /// The file ends before a structure it declares.
    #[error("{path}: truncated: {what} needs bytes up to offset {needed_end}, file has {file_bytes} bytes")]
    Truncated {
        path: PathBuf,
        what: String,
        needed_end: u64,
        file_bytes: u64,
    },
    /// A count or length that cannot fit in the file.
    #[error("{path}: corrupt: {what} is {value}, impossible in a file of {file_bytes} bytes")]
    Absurd {
        path: PathBuf,
        what: String,
        value: u64,
        file_bytes: u64,
    },
    /// Any other structural problem.
    #[error("{path}: corrupt: {detail}")]
    Corrupt { path: PathBuf, detail: String },
}

/// One metadata value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// Any unsigned integer type.
    U64(u64),
    /// Any signed integer type.
    I64(i64),
    /// f32 or f64.
    F64(f64),
    /// A boolean.
    Bool(bool),
    /// A UTF-8 string (invalid UTF-8 is replaced).
    Str(String),
    /// An array that was kept.
    Array(Vec<Value>),
    /// An array too long to keep: element type id and length.
    LongArray { elem_type: u32, len: u64 },
}

impl Value {
    /// The value as an unsigned integer, if it is a non-negative integer.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            Value::U64(v) => Some(v),
            Value::I64(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }
    /// The value as a float, if it is numeric.
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            Value::U64(v) => Some(v as f64),
            Value::I64(v) => Some(v as f64),
            Value::F64(v) => Some(v),
            _ => None,
        }
    }
    /// The value as a string slice.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }
    /// Length of an array value.
    pub fn array_len(&self) -> Option<u64> {
        match self {
            Value::Array(v) => Some(v.len() as u64),
            Value::LongArray { len, .. } => Some(*len),
            _ => None,
        }
    }
}

/// One tensor's header entry.
#[derive(Debug, Clone)]
pub struct TensorInfo {
    /// Tensor name (`blk.0.attn_q.weight`).
    pub name: String,
    /// Dimensions, innermost first (ggml order: ne0, ne1, …).
    pub dims: Vec<u64>,
    /// Element type.
    pub ggml_type: GgmlType,
    /// Absolute offset of the data in the file.
    pub offset_abs: u64,
    /// Bytes of data.
    pub bytes: u64,
}

impl TensorInfo {
    /// Number of elements.
    pub fn elems(&self) -> u64 {
        self.dims.iter().product()
    }
}

/// A parsed, validated GGUF file header.
#[derive(Debug, Clone)]
pub struct GgufFile {
    /// Where it was read from.
    pub path: PathBuf,
    /// GGUF version (2 or 3).
    pub version: u32,
    /// File size in bytes.
    pub file_bytes: u64,
    /// Metadata by key.
    pub metadata: BTreeMap<String, Value>,
    /// Original GGUF type of each metadata value (arrays: `elem_type << 16 | 9`), so a
    /// rewritten file keeps the exact types llama.cpp expects.
    pub metadata_types: BTreeMap<String, u32>,
    /// Metadata keys in file order.
    pub metadata_order: Vec<String>,
    /// Tensor infos in file order.
    pub tensors: Vec<TensorInfo>,
    /// Absolute offset where tensor data begins.
    pub data_offset: u64,
}

impl GgufFile {
    /// A metadata value by key.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.metadata.get(key)
    }
    /// A string metadata value.
    pub fn get_str(&self, key: &str) -> Option<&str> {
        self.get(key).and_then(Value::as_str)
    }
    /// An integer metadata value.
    pub fn get_u64(&self, key: &str) -> Option<u64> {
        self.get(key).and_then(Value::as_u64)
    }
    /// `general.architecture`.
    pub fn architecture(&self) -> Option<&str> {
        self.get_str("general.architecture")
    }
    /// An architecture-scoped key, e.g. `arch_u64("embedding_length")`.
    pub fn arch_u64(&self, suffix: &str) -> Option<u64> {
        let arch = self.architecture()?;
        self.get_u64(&format!("{arch}.{suffix}"))
    }
    /// A tensor by name.
    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.tensors.iter().find(|t| t.name == name)
    }
    /// Reads a tensor's raw bytes (bounds were checked when the header was read).
    pub fn read_tensor_bytes(&self, tensor: &TensorInfo) -> Result<Vec<u8>, GgufError> {
        let io = |source| GgufError::Io {
            path: self.path.clone(),
            source,
        };
        let mut file = File::open(&self.path).map_err(io)?;
        file.seek(SeekFrom::Start(tensor.offset_abs)).map_err(io)?;
        let len = usize::try_from(tensor.bytes).map_err(|_| GgufError::Corrupt {
            path: self.path.clone(),
            detail: format!("tensor {} too large for this machine", tensor.name),
        })?;
        let mut buf = vec![0u8; len];
        file.read_exact(&mut buf).map_err(io)?;
        Ok(buf)
    }
}

/// Reads and validates the header, metadata and tensor table of a GGUF file.
pub fn read(path: &Path) -> Result<GgufFile, GgufError> {
    let meta = std::fs::metadata(path).map_err(|source| {
        if source.kind() == std::io::ErrorKind::NotFound {
            GgufError::Missing {
                path: path.to_path_buf(),
            }
        } else {
            GgufError::Io {
                path: path.to_path_buf(),
                source,
            }
        }
    })?;
    if meta.is_dir() {
        return Err(GgufError::Directory {
            path: path.to_path_buf(),
        });
    }
    let file = File::open(path).map_err(|source| GgufError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let file_bytes = meta.len();
    if file_bytes == 0 {
        return Err(GgufError::Empty {
            path: path.to_path_buf(),
        });
    }
    let mut r = Cursor {
        inner: BufReader::with_capacity(1 << 16, file),
        last_array_elem: 0,
        pos: 0,
        file_bytes,
        path,
    };
    r.parse()
}

/// Parses a GGUF header held in memory (`bytes` is the whole file, or at least its header and
/// tensor table with `file_bytes` its full size); errors name `<memory>` as the path. Used by
/// the fuzz targets, which must not touch the file system.
pub fn parse_bytes(bytes: &[u8]) -> Result<GgufFile, GgufError> {
    if bytes.is_empty() {
        return Err(GgufError::Empty {
            path: PathBuf::from("<memory>"),
        });
    }
    let path = Path::new("<memory>");
    let mut r = Cursor {
        inner: bytes,
        last_array_elem: 0,
        pos: 0,
        file_bytes: bytes.len() as u64,
        path,
    };
    r.parse()
}

struct Cursor<'p, R: Read = BufReader<File>> {
    inner: R,
    last_array_elem: u32,
    pos: u64,
    file_bytes: u64,
    path: &'p Path,
}

impl<R: Read> Cursor<'_, R> {
    fn truncated(&self, what: &str, needed_end: u64) -> GgufError {
        GgufError::Truncated {
            path: self.path.to_path_buf(),
            what: what.to_string(),
            needed_end,
            file_bytes: self.file_bytes,
        }
    }
    fn absurd(&self, what: &str, value: u64) -> GgufError {
        GgufError::Absurd {
            path: self.path.to_path_buf(),
            what: what.to_string(),
            value,
            file_bytes: self.file_bytes,
        }
    }
    fn corrupt(&self, detail: String) -> GgufError {
        GgufError::Corrupt {
            path: self.path.to_path_buf(),
            detail,
        }
    }
    /// Checks that `bytes_needed` more bytes can exist: absurd if not even the whole file
    /// could hold them, truncated if the file just ends too soon.
    fn need(&self, what: &str, value: u64, bytes_needed: u64) -> Result<(), GgufError> {
        if bytes_needed > self.file_bytes {
            Err(self.absurd(what, value))
        } else if bytes_needed > self.remaining() {
            Err(self.truncated(what, self.pos.saturating_add(bytes_needed)))
        } else {
            Ok(())
        }
    }
    fn remaining(&self) -> u64 {
        self.file_bytes.saturating_sub(self.pos)
    }

    fn bytes(&mut self, n: u64, what: &str) -> Result<Vec<u8>, GgufError> {
        let end = self.pos.saturating_add(n);
        if end > self.file_bytes {
            return Err(self.truncated(what, end));
        }
        let mut buf = vec![0u8; n as usize];
        self.inner.read_exact(&mut buf).map_err(|source| GgufError::Io {
            path: self.path.to_path_buf(),
            source,
        })?;
        self.pos = end;
        Ok(buf)
    }
    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N], GgufError> {
        let v = self.bytes(N as u64, what)?;
        let mut out = [0u8; N];
        out.copy_from_slice(&v);
        Ok(out)
    }
    fn u32(&mut self, what: &str) -> Result<u32, GgufError> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }
    fn u64(&mut self, what: &str) -> Result<u64, GgufError> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }
    fn string(&mut self, what: &str) -> Result<Vec<u8>, GgufError> {
        let len = self.u64(what)?;
        self.need(&format!("length of {what}"), len, len)?;
        self.bytes(len, what)
    }

    fn value(&mut self, ty: u32, what: &str, depth: u32) -> Result<Value, GgufError> {
        Ok(match ty {
            0 => Value::U64(u64::from(self.array::<1>(what)?[0])),
            1 => Value::I64(i64::from(self.array::<1>(what)?[0] as i8)),
            2 => Value::U64(u64::from(u16::from_le_bytes(self.array(what)?))),
            3 => Value::I64(i64::from(i16::from_le_bytes(self.array(what)?))),
            4 => Value::U64(u64::from(self.u32(what)?)),
            5 => Value::I64(i64::from(i32::from_le_bytes(self.array(what)?))),
            6 => Value::F64(f64::from(f32::from_le_bytes(self.array(what)?))),
            7 => {
                let b = self.array::<1>(what)?[0];
                if b > 1 {
                    return Err(self.corrupt(format!("{what}: bool value {b}")));
                }
                Value::Bool(b == 1)
            }
            8 => Value::Str(String::from_utf8_lossy(&self.string(what)?).into_owned()),
            9 => {
                if depth > 0 {
                    return Err(self.corrupt(format!("{what}: nested arrays are not supported")));
                }
                let elem_type = self.u32(what)?;
                self.last_array_elem = elem_type;
                let len = self.u64(what)?;
                let min_elem = min_value_bytes(elem_type)
                    .ok_or_else(|| self.corrupt(format!("{what}: unknown array element type {elem_type}")))?;
                self.need(&format!("element count of {what}"), len, len.saturating_mul(min_elem))?;
                if len > MAX_KEPT_ARRAY_LEN {
                    for _ in 0..len {
                        self.value(elem_type, what, depth + 1)?;
                    }
                    Value::LongArray { elem_type, len }
                } else {
                    let mut items = Vec::with_capacity(len as usize);
                    for _ in 0..len {
                        items.push(self.value(elem_type, what, depth + 1)?);
                    }
                    Value::Array(items)
                }
            }
            10 => Value::U64(self.u64(what)?),
            11 => Value::I64(i64::from_le_bytes(self.array(what)?)),
            12 => Value::F64(f64::from_le_bytes(self.array(what)?)),
            other => return Err(self.corrupt(format!("{what}: unknown value type {other}"))),
        })
    }

    fn parse(&mut self) -> Result<GgufFile, GgufError> {
        let magic = self.bytes(4.min(self.file_bytes), "magic")?;
        if magic.as_slice() != GGUF_MAGIC {
            return Err(GgufError::BadMagic {
                path: self.path.to_path_buf(),
                found: String::from_utf8_lossy(&magic).escape_debug().to_string(),
            });
        }
        let version = self.u32("header (version)")?;
        if !(2..=3).contains(&version) {
            return Err(GgufError::Version {
                path: self.path.to_path_buf(),
                version,
            });
        }
        let tensor_count = self.u64("header (tensor count)")?;
        let kv_count = self.u64("header (metadata count)")?;
        // Each metadata entry needs at least a key length, a type and one byte of value;
        // each tensor entry at least name length, n_dims, one dim, type and offset.
        self.need("metadata count", kv_count, kv_count.saturating_mul(8 + 4 + 1))?;
        self.need(
            "tensor count",
            tensor_count,
            tensor_count.saturating_mul(8 + 4 + 8 + 4 + 8),
        )?;

        let mut metadata = BTreeMap::new();
        let mut metadata_types = BTreeMap::new();
        let mut metadata_order = Vec::new();
        for i in 0..kv_count {
            let what = format!("metadata entry {i}");
            let key_raw = self.string(&format!("key of {what}"))?;
            let key =
                String::from_utf8(key_raw).map_err(|_| self.corrupt(format!("key of {what} is not valid UTF-8")))?;
            let ty = self.u32(&format!("type of {key}"))?;
            let value = self.value(ty, &key, 0)?;
            // Nested arrays are refused, so the last array element type read is this array's.
            let full_type = if ty == 9 { (self.last_array_elem << 16) | 9 } else { ty };
            if metadata.insert(key.clone(), value).is_some() {
                return Err(self.corrupt(format!("duplicate metadata key {key:?}")));
            }
            metadata_types.insert(key.clone(), full_type);
            metadata_order.push(key);
        }

        let mut raw = Vec::with_capacity(tensor_count.min(1 << 16) as usize);
        let mut names = HashSet::new();
        for i in 0..tensor_count {
            let what = format!("tensor info {i}");
            let name = String::from_utf8(self.string(&format!("name of {what}"))?)
                .map_err(|_| self.corrupt(format!("name of {what} is not valid UTF-8")))?;
            let n_dims = self.u32(&format!("dimension count of {name}"))?;
            if n_dims == 0 || n_dims > MAX_DIMS {
                return Err(self.corrupt(format!("tensor {name} has {n_dims} dimensions (1-{MAX_DIMS} allowed)")));
            }
            let mut dims = Vec::with_capacity(n_dims as usize);
            for _ in 0..n_dims {
                dims.push(self.u64(&format!("dimensions of {name}"))?);
            }
            let type_id = self.u32(&format!("type of {name}"))?;
            let offset = self.u64(&format!("offset of {name}"))?;
            if !names.insert(name.clone()) {
                return Err(self.corrupt(format!("duplicate tensor name {name:?}")));
            }
            raw.push((name, dims, type_id, offset));
        }

        let alignment = match metadata.get("general.alignment") {
            None => DEFAULT_ALIGNMENT,
            Some(v) => {
                let a = v.as_u64().unwrap_or(0);
                if a == 0 || !a.is_power_of_two() {
                    return Err(self.corrupt(format!("general.alignment {a} is not a power of two")));
                }
                a
            }
        };
        let data_offset = self.pos.div_ceil(alignment) * alignment;

        let mut tensors = Vec::with_capacity(raw.len());
        for (name, dims, type_id, offset) in raw {
            let ggml_type = GgmlType::from_id(type_id)
                .ok_or_else(|| self.corrupt(format!("tensor {name} has unknown type id {type_id}")))?;
            let elems = dims
                .iter()
                .try_fold(1u64, |acc, &d| acc.checked_mul(d))
                .ok_or_else(|| self.corrupt(format!("tensor {name}: dimensions {dims:?} overflow")))?;
            let bytes = ggml_type.bytes_for(elems).ok_or_else(|| {
                self.corrupt(format!(
                    "tensor {name}: {elems} elements is not a whole number of {} blocks",
                    ggml_type.name
                ))
            })?;
            if offset % alignment != 0 {
                return Err(self.corrupt(format!("tensor {name}: offset {offset} is not aligned to {alignment}")));
            }
            let offset_abs = data_offset
                .checked_add(offset)
                .ok_or_else(|| self.absurd(&format!("offset of tensor {name}"), offset))?;
            let end = offset_abs.saturating_add(bytes);
            if end > self.file_bytes {
                return Err(self.truncated(&format!("data of tensor {name}"), end));
            }
            tensors.push(TensorInfo {
                name,
                dims,
                ggml_type,
                offset_abs,
                bytes,
            });
        }

        let mut spans: Vec<(u64, u64, &str)> = tensors
            .iter()
            .filter(|t| t.bytes > 0)
            .map(|t| (t.offset_abs, t.offset_abs + t.bytes, t.name.as_str()))
            .collect();
        spans.sort_unstable();
        for pair in spans.windows(2) {
            if pair[1].0 < pair[0].1 {
                return Err(self.corrupt(format!("tensors {} and {} overlap", pair[0].2, pair[1].2)));
            }
        }

        Ok(GgufFile {
            path: self.path.to_path_buf(),
            version,
            file_bytes: self.file_bytes,
            metadata,
            metadata_types,
            metadata_order,
            tensors,
            data_offset,
        })
    }
}

/// Smallest encoding of a value of this type, for plausibility checks on counts.
fn min_value_bytes(ty: u32) -> Option<u64> {
    Some(match ty {
        0 | 1 | 7 => 1,
        2 | 3 => 2,
        4..=6 => 4,
        8 | 10 | 11 | 12 => 8,
        9 => 12,
        _ => return None,
    })
}
