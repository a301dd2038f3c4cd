//! The bad-input corpus: generated, not hand-made binaries. Each case is a file (or folder or
//! link) and a phrase its error must contain.
#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};

use nanolab::gguf::writer::{self, TensorData};
use nanolab::gguf::{GgmlType, Value};

/// How a case is used.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Role {
    /// Given as a model.
    Model,
    /// Given as an adapter for the demo model.
    Adapter,
}

/// One corpus case.
pub struct Case {
    /// Short name.
    pub name: &'static str,
    /// Path of the bad input.
    pub path: PathBuf,
    /// How it is fed.
    pub role: Role,
    /// Phrase the error must contain.
    pub expect: &'static str,
}

fn head(version: u32, tensors: u64, kvs: u64) -> Vec<u8> {
    let mut v = b"GGUF".to_vec();
    v.extend_from_slice(&version.to_le_bytes());
    v.extend_from_slice(&tensors.to_le_bytes());
    v.extend_from_slice(&kvs.to_le_bytes());
    v
}
fn s(v: &mut Vec<u8>, text: &[u8]) {
    v.extend_from_slice(&(text.len() as u64).to_le_bytes());
    v.extend_from_slice(text);
}
fn kv_str(v: &mut Vec<u8>, k: &[u8], val: &str) {
    s(v, k);
    v.extend_from_slice(&8u32.to_le_bytes());
    s(v, val.as_bytes());
}
fn tensor_info(v: &mut Vec<u8>, name: &str, dims: &[u64], ty: u32, offset: u64) {
    s(v, name.as_bytes());
    v.extend_from_slice(&(dims.len() as u32).to_le_bytes());
    for d in dims {
        v.extend_from_slice(&d.to_le_bytes());
    }
    v.extend_from_slice(&ty.to_le_bytes());
    v.extend_from_slice(&offset.to_le_bytes());
}
fn pad(v: &mut Vec<u8>, extra: usize) {
    v.resize(v.len().div_ceil(32) * 32 + extra, 0);
}

/// A one-tensor model file with custom tensor infos, then `data` bytes of zeros.
fn model_with(tensors: &[(&str, &[u64], u32, u64)], data: usize) -> Vec<u8> {
    let mut v = head(3, tensors.len() as u64, 1);
    kv_str(&mut v, b"general.architecture", "llama");
    for (n, d, t, o) in tensors {
        tensor_info(&mut v, n, d, *t, *o);
    }
    pad(&mut v, data);
    v
}

fn lora(path: &Path, arch: &str, n_embd: u64, layers: u64, ty: &str, with_b: bool) {
    let t = GgmlType::from_name(ty).unwrap();
    let mut tensors = Vec::new();
    for i in 0..layers {
        let n = format!("blk.{i}.attn_q.weight");
        let elems = n_embd * 32;
        let bytes = t.bytes_for(elems).unwrap() as usize;
        tensors.push(TensorData {
            name: format!("{n}.lora_a"),
            dims: vec![n_embd, 32],
            ggml_type: t,
            data: vec![0; bytes],
        });
        if with_b {
            tensors.push(TensorData {
                name: format!("{n}.lora_b"),
                dims: vec![32, n_embd],
                ggml_type: t,
                data: vec![0; bytes],
            });
        }
    }
    let md = vec![
        ("general.architecture".to_string(), Value::Str(arch.into())),
        ("general.type".to_string(), Value::Str("adapter".into())),
        ("adapter.type".to_string(), Value::Str("lora".into())),
        ("adapter.lora.alpha".to_string(), Value::F64(32.0)),
    ];
    let mut f = std::fs::File::create(path).unwrap();
    writer::write(&mut f, &md, &tensors).unwrap();
}

/// Writes every case into `dir`; `demo` is the real demo model (cut up for truncation cases).
pub fn generate(dir: &Path, demo: &Path) -> Vec<Case> {
    let demo_bytes = std::fs::read(demo).unwrap();
    let data_offset = nanolab::gguf::read(demo).unwrap().data_offset as usize;
    let mut cases = Vec::new();
    let mut file = |name: &'static str, bytes: Vec<u8>, role: Role, expect: &'static str| {
        let p = dir.join(format!("{name}.gguf"));
        std::fs::write(&p, bytes).unwrap();
        cases.push(Case {
            name,
            path: p,
            role,
            expect,
        });
    };
    file("zero-bytes", vec![], Role::Model, "file is empty");
    file(
        "wrong-magic",
        b"GGML\x03\x00\x00\x00rest of a file".to_vec(),
        Role::Model,
        "not a GGUF file",
    );
    file(
        "text-file",
        b"# just some notes\n".to_vec(),
        Role::Model,
        "not a GGUF file",
    );
    file("header-cut", head(3, 1, 1)[..14].to_vec(), Role::Model, "truncated");
    file("metadata-cut", demo_bytes[..700_000].to_vec(), Role::Model, "truncated");
    file(
        "tensor-info-cut",
        demo_bytes[..data_offset - 100].to_vec(),
        Role::Model,
        "truncated",
    );
    file(
        "data-cut",
        demo_bytes[..demo_bytes.len() - 4096].to_vec(),
        Role::Model,
        "truncated",
    );
    file(
        "absurd-tensor-count",
        head(3, u64::MAX / 2, 0),
        Role::Model,
        "tensor count",
    );
    file(
        "absurd-kv-count",
        head(3, 0, u64::MAX / 2),
        Role::Model,
        "metadata count",
    );
    let mut v = head(3, 0, 1);
    v.extend_from_slice(&(u64::MAX / 3).to_le_bytes());
    v.extend_from_slice(&[0; 64]);
    file("absurd-string-length", v, Role::Model, "length of key");
    let mut v = head(3, 0, 1);
    s(&mut v, b"tokenizer.ggml.tokens");
    v.extend_from_slice(&9u32.to_le_bytes());
    v.extend_from_slice(&8u32.to_le_bytes());
    v.extend_from_slice(&(u64::MAX / 9).to_le_bytes());
    v.extend_from_slice(&[0; 64]);
    file("absurd-array-length", v, Role::Model, "element count");
    file(
        "offset-past-eof",
        model_with(&[("token_embd.weight", &[64, 64], 0, 1 << 40)], 0),
        Role::Model,
        "truncated: data of tensor",
    );
    file(
        "overlapping-tensors",
        model_with(&[("a.weight", &[64, 4], 0, 0), ("b.weight", &[64, 4], 0, 512)], 2048),
        Role::Model,
        "overlap",
    );
    file(
        "unknown-tensor-type",
        model_with(&[("a.weight", &[32], 77, 0)], 256),
        Role::Model,
        "unknown type id 77",
    );
    let mut v = head(3, 0, 1);
    s(&mut v, b"general.weird");
    v.extend_from_slice(&42u32.to_le_bytes());
    v.extend_from_slice(&[0; 32]);
    file("unknown-value-type", v, Role::Model, "unknown value type 42");
    let mut v = head(3, 0, 1);
    kv_str(&mut v, b"general.\xff\xfename", "x");
    file("non-utf8-key", v, Role::Model, "not valid UTF-8");
    let mut v = head(3, 0, 2);
    kv_str(&mut v, b"general.architecture", "llama");
    kv_str(&mut v, b"general.architecture", "gemma3");
    file("duplicate-keys", v, Role::Model, "duplicate metadata key");
    file(
        "duplicate-tensors",
        model_with(&[("a.weight", &[32], 0, 0), ("a.weight", &[32], 0, 128)], 512),
        Role::Model,
        "duplicate tensor name",
    );
    file(
        "too-many-dims",
        model_with(&[("a.weight", &[2, 2, 2, 2, 2], 0, 0)], 256),
        Role::Model,
        "dimensions",
    );
    file(
        "misaligned-offset",
        model_with(&[("a.weight", &[32], 0, 3)], 256),
        Role::Model,
        "not aligned",
    );
    file(
        "dims-overflow",
        model_with(&[("a.weight", &[u64::MAX / 2, 4], 0, 0)], 256),
        Role::Model,
        "overflow",
    );
    file(
        "partial-block",
        model_with(&[("a.weight", &[33], 2, 0)], 256),
        Role::Model,
        "whole number",
    );
    file("version-1", head(1, 0, 0), Role::Model, "unsupported GGUF version 1");
    file("version-99", head(99, 0, 0), Role::Model, "unsupported GGUF version 99");
    let mut v = head(3, 0, 1);
    s(&mut v, b"general.flag");
    v.extend_from_slice(&7u32.to_le_bytes());
    v.push(2);
    file("bool-value-2", v, Role::Model, "bool value 2");
    file(
        "no-tensors",
        {
            let mut v = head(3, 0, 1);
            kv_str(&mut v, b"general.architecture", "llama");
            v
        },
        Role::Model,
        "no tensors",
    );
    let mut v = head(3, 1, 1);
    kv_str(&mut v, b"general.architecture", "frobnicator");
    tensor_info(&mut v, "token_embd.weight", &[64, 64], 0, 0);
    pad(&mut v, 64 * 64 * 4);
    file("unknown-architecture", v, Role::Model, "frobnicator");

    let mut adapter = |name: &'static str, f: &dyn Fn(&Path), expect: &'static str| {
        let p = dir.join(format!("{name}.gguf"));
        f(&p);
        cases.push(Case {
            name,
            path: p,
            role: Role::Adapter,
            expect,
        });
    };
    adapter(
        "adapter-other-arch",
        &|p| lora(p, "gemma3", 576, 2, "F16", true),
        "architecture \"gemma3\"",
    );
    adapter(
        "adapter-other-width",
        &|p| lora(p, "llama", 2048, 2, "F16", true),
        "n_embd 2048",
    );
    adapter(
        "adapter-more-layers",
        &|p| lora(p, "llama", 576, 40, "F16", true),
        "blk.30.attn_q.weight",
    );
    adapter(
        "adapter-missing-lora-b",
        &|p| lora(p, "llama", 576, 2, "F16", false),
        "no matching",
    );
    adapter(
        "adapter-quantized-q4",
        &|p| lora(p, "llama", 576, 2, "Q4_0", true),
        "is Q4_0",
    );
    let demo_copy = dir.join("model-as-adapter.gguf");
    std::os::unix::fs::symlink(demo, &demo_copy).unwrap();
    cases.push(Case {
        name: "model-as-adapter",
        path: demo_copy,
        role: Role::Adapter,
        expect: "is not an adapter",
    });
    let a = dir.join("adapter-as-model.gguf");
    lora(&a, "llama", 576, 2, "F16", true);
    cases.push(Case {
        name: "adapter-as-model",
        path: a,
        role: Role::Model,
        expect: "LoRA adapter, not a model",
    });

    let d = dir.join("a-directory.gguf");
    std::fs::create_dir_all(&d).unwrap();
    cases.push(Case {
        name: "directory",
        path: d,
        role: Role::Model,
        expect: "is a directory",
    });
    let l = dir.join("dangling.gguf");
    std::os::unix::fs::symlink(dir.join("nowhere.gguf"), &l).unwrap();
    cases.push(Case {
        name: "dangling-symlink",
        path: l,
        role: Role::Model,
        expect: "no such file",
    });
    let sparse = dir.join("sparse-2gib.gguf");
    let f = std::fs::File::create(&sparse).unwrap();
    f.set_len(2 << 30).unwrap();
    cases.push(Case {
        name: "sparse-2gib-zeros",
        path: sparse,
        role: Role::Model,
        expect: "not a GGUF file",
    });
    let peft = dir.join("peft-broken-config");
    std::fs::create_dir_all(&peft).unwrap();
    std::fs::File::create(peft.join("adapter_config.json"))
        .unwrap()
        .write_all(b"{\"r\": \"eight\"")
        .unwrap();
    cases.push(Case {
        name: "peft-broken-config",
        path: peft,
        role: Role::Adapter,
        expect: "invalid adapter config",
    });
    cases
}
