//! A minimal GGUF v3 writer, used by the PEFT importer and by tests that build fixture files.

use std::io::{self, Write};

use super::reader::Value;
use super::types::GgmlType;

const ALIGNMENT: u64 = 32;

/// A tensor to write: name, ggml dims (innermost first), type and raw data.
#[derive(Debug, Clone)]
pub struct TensorData {
    /// Tensor name.
    pub name: String,
    /// Dimensions in ggml order (ne0 first).
    pub dims: Vec<u64>,
    /// Element type of `data`.
    pub ggml_type: GgmlType,
    /// Raw bytes, already in `ggml_type`'s encoding.
    pub data: Vec<u8>,
}

/// A tensor header for streaming writes: the data comes later from a callback.
#[derive(Debug, Clone)]
pub struct TensorHeader {
    /// Tensor name.
    pub name: String,
    /// Dimensions in ggml order.
    pub dims: Vec<u64>,
    /// Element type.
    pub ggml_type: GgmlType,
    /// Bytes of data.
    pub bytes: u64,
}

/// Serialises metadata and tensors into a GGUF v3 byte stream.
pub fn write(out: &mut impl Write, metadata: &[(String, Value)], tensors: &[TensorData]) -> io::Result<()> {
    let headers: Vec<TensorHeader> = tensors
        .iter()
        .map(|t| TensorHeader {
            name: t.name.clone(),
            dims: t.dims.clone(),
            ggml_type: t.ggml_type,
            bytes: t.data.len() as u64,
        })
        .collect();
    let typed: Vec<(String, Value, Option<u32>)> = metadata.iter().map(|(k, v)| (k.clone(), v.clone(), None)).collect();
    write_streaming(out, &typed, &headers, |i| Ok(tensors[i].data.clone()))
}

/// Writes a GGUF v3 file tensor by tensor: `data_for(i)` returns tensor i's bytes when needed.
/// Metadata entries may carry their original GGUF type id, which is kept when it fits the value.
pub fn write_streaming(
    out: &mut impl Write,
    metadata: &[(String, Value, Option<u32>)],
    tensors: &[TensorHeader],
    mut data_for: impl FnMut(usize) -> io::Result<Vec<u8>>,
) -> io::Result<()> {
    let mut head = Vec::new();
    head.extend_from_slice(b"GGUF");
    head.extend_from_slice(&3u32.to_le_bytes());
    head.extend_from_slice(&(tensors.len() as u64).to_le_bytes());
    head.extend_from_slice(&(metadata.len() as u64).to_le_bytes());
    for (key, value, ty) in metadata {
        put_str(&mut head, key);
        match ty {
            Some(ty) => put_typed(&mut head, value, *ty, true)?,
            None => put_value(&mut head, value, true)?,
        }
    }
    let mut offset = 0u64;
    let mut offsets = Vec::with_capacity(tensors.len());
    for t in tensors {
        put_str(&mut head, &t.name);
        head.extend_from_slice(&(t.dims.len() as u32).to_le_bytes());
        for d in &t.dims {
            head.extend_from_slice(&d.to_le_bytes());
        }
        head.extend_from_slice(&t.ggml_type.id.to_le_bytes());
        head.extend_from_slice(&offset.to_le_bytes());
        offsets.push(offset);
        offset = (offset + t.bytes).div_ceil(ALIGNMENT) * ALIGNMENT;
    }
    pad(&mut head);
    out.write_all(&head)?;
    let mut written = 0u64;
    for (i, (t, &off)) in tensors.iter().zip(&offsets).enumerate() {
        let data = data_for(i)?;
        if data.len() as u64 != t.bytes {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("tensor {}: {} bytes, header says {}", t.name, data.len(), t.bytes),
            ));
        }
        out.write_all(&vec![0u8; (off - written) as usize])?;
        out.write_all(&data)?;
        written = off + t.bytes;
    }
    let end = written.div_ceil(ALIGNMENT) * ALIGNMENT;
    out.write_all(&vec![0u8; (end - written) as usize])?;
    Ok(())
}

/// Encodes a value with an explicit GGUF type id (9 = array; element type from `elem`).
fn put_typed(buf: &mut Vec<u8>, value: &Value, ty: u32, with_type: bool) -> io::Result<()> {
    let bad = || {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("value {value:?} does not fit GGUF type {ty}"),
        )
    };
    if with_type {
        buf.extend_from_slice(&(ty & 0xffff).to_le_bytes());
    }
    match (ty & 0xffff, value) {
        (0, Value::U64(v)) => buf.push(u8::try_from(*v).map_err(|_| bad())?),
        (1, Value::I64(v)) => buf.push(i8::try_from(*v).map_err(|_| bad())? as u8),
        (2, Value::U64(v)) => buf.extend_from_slice(&u16::try_from(*v).map_err(|_| bad())?.to_le_bytes()),
        (3, Value::I64(v)) => buf.extend_from_slice(&i16::try_from(*v).map_err(|_| bad())?.to_le_bytes()),
        (4, Value::U64(v)) => buf.extend_from_slice(&u32::try_from(*v).map_err(|_| bad())?.to_le_bytes()),
        (5, Value::I64(v)) => buf.extend_from_slice(&i32::try_from(*v).map_err(|_| bad())?.to_le_bytes()),
        (6, Value::F64(v)) => buf.extend_from_slice(&(*v as f32).to_le_bytes()),
        (7, Value::Bool(b)) => buf.push(u8::from(*b)),
        (8, Value::Str(s)) => put_str(buf, s),
        (10, Value::U64(v)) => buf.extend_from_slice(&v.to_le_bytes()),
        (11, Value::I64(v)) => buf.extend_from_slice(&v.to_le_bytes()),
        (12, Value::F64(v)) => buf.extend_from_slice(&v.to_le_bytes()),
        (9, Value::Array(items)) => {
            let elem = ty >> 16;
            buf.extend_from_slice(&elem.to_le_bytes());
            buf.extend_from_slice(&(items.len() as u64).to_le_bytes());
            for item in items {
                put_typed(buf, item, elem, false)?;
            }
        }
        _ => return Err(bad()),
    }
    Ok(())
}

fn pad(buf: &mut Vec<u8>) {
    let len = buf.len() as u64;
    let target = len.div_ceil(ALIGNMENT) * ALIGNMENT;
    buf.resize(target as usize, 0);
}

fn put_str(buf: &mut Vec<u8>, s: &str) {
    buf.extend_from_slice(&(s.len() as u64).to_le_bytes());
    buf.extend_from_slice(s.as_bytes());
}

fn type_id(value: &Value) -> u32 {
    match value {
        Value::U64(v) if *v <= u64::from(u32::MAX) => 4,
        Value::U64(_) => 10,
        Value::I64(v) if i32::try_from(*v).is_ok() => 5,
        Value::I64(_) => 11,
        Value::F64(_) => 6,
        Value::Bool(_) => 7,
        Value::Str(_) => 8,
        Value::Array(_) | Value::LongArray { .. } => 9,
    }
}

fn put_value(buf: &mut Vec<u8>, value: &Value, with_type: bool) -> io::Result<()> {
    if with_type {
        buf.extend_from_slice(&type_id(value).to_le_bytes());
    }
    match value {
        Value::U64(v) if *v <= u64::from(u32::MAX) => buf.extend_from_slice(&(*v as u32).to_le_bytes()),
        Value::U64(v) => buf.extend_from_slice(&v.to_le_bytes()),
        Value::I64(v) => match i32::try_from(*v) {
            Ok(small) => buf.extend_from_slice(&small.to_le_bytes()),
            Err(_) => buf.extend_from_slice(&v.to_le_bytes()),
        },
        Value::F64(v) => buf.extend_from_slice(&(*v as f32).to_le_bytes()),
        Value::Bool(b) => buf.push(u8::from(*b)),
        Value::Str(s) => put_str(buf, s),
        Value::Array(items) => {
            let elem = items.first().map(type_id).unwrap_or(4);
            if items.iter().any(|v| type_id(v) != elem) {
                return Err(io::Error::new(io::ErrorKind::InvalidInput, "mixed array element types"));
            }
            buf.extend_from_slice(&elem.to_le_bytes());
            buf.extend_from_slice(&(items.len() as u64).to_le_bytes());
            for item in items {
                put_value(buf, item, false)?;
            }
        }
        Value::LongArray { .. } => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "cannot write an array that was not kept",
            ))
        }
    }
    Ok(())
}

/// Encodes f32 values as little-endian bytes for an F32 tensor.
pub fn f32_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}
