//! Model facts for the simulator, read from real GGUF files (and a real run for "this machine").

use std::path::Path;

use super::model::ModelFacts;
use super::profile::{Accelerator, DeviceProfile, Kind, Os, Source, Thermal};
use crate::gguf::{self, GgufFile};

/// Facts of a model plus adapters, from their headers.
pub fn from_files(model: &GgufFile, adapters: &[GgufFile]) -> ModelFacts {
    let sum_bytes = |f: &GgufFile| f.tensors.iter().map(|t| t.bytes).sum::<u64>();
    let sum_elems = |f: &GgufFile| f.tensors.iter().map(gguf::TensorInfo::elems).sum::<u64>();
    let n_layer = model.arch_u64("block_count").unwrap_or(0);
    let n_embd = model.arch_u64("embedding_length").unwrap_or(0);
    let n_head = model.arch_u64("attention.head_count").unwrap_or(1).max(1);
    let n_head_kv = model.arch_u64("attention.head_count_kv").unwrap_or(n_head);
    let head_dim = model.arch_u64("attention.key_length").unwrap_or(n_embd / n_head);
    ModelFacts {
        parameters: sum_elems(model),
        weight_bytes: sum_bytes(model),
        kv_bytes_per_token: n_layer * 2 * head_dim * n_head_kv * 2,
        adapter_bytes: adapters.iter().map(sum_bytes).sum(),
        adapter_parameters: adapters.iter().map(sum_elems).sum(),
    }
}

/// Reads the files and returns their facts.
pub fn read(model: &Path, adapters: &[&Path]) -> Result<ModelFacts, String> {
    let m = crate::gguf::validate_model_file(model)?;
    let a = adapters
        .iter()
        .map(|p| crate::adapters::validate_adapter_file(p, &m))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(from_files(&m, &a))
}

/// A profile for this machine, calibrated from a real run: bandwidth from measured decode speed,
/// compute from measured prefill speed.
pub fn this_machine(
    m: &ModelFacts,
    prefill_tokens_per_sec: f64,
    decode_tokens_per_sec: f64,
    when: &str,
) -> DeviceProfile {
    let measured = |what: &str| Source {
        field: String::new(),
        text: format!("measured by nanolab on this machine ({when}): {what}"),
        derived: true,
    };
    let mem = crate::metrics::mem_available_bytes().unwrap_or(0) as f64 / (1u64 << 30) as f64;
    let acc = Accelerator {
        id: "cpu".into(),
        kind: Kind::Cpu,
        compute_tflops: 2.0 * (m.parameters + m.adapter_parameters) as f64 * prefill_tokens_per_sec / 1e12,
        bandwidth_gbs: (m.weight_bytes + m.adapter_bytes) as f64 * decode_tokens_per_sec / 1e9,
        power_w: 65.0,
        dvfs: Vec::new(),
    };
    let sources = vec![
        Source {
            field: "accelerators.cpu.compute_tflops".into(),
            ..measured(&format!(
                "prefill {prefill_tokens_per_sec:.1} tok/s x 2 FLOP per parameter"
            ))
        },
        Source {
            field: "accelerators.cpu.bandwidth_gbs".into(),
            ..measured(&format!("decode {decode_tokens_per_sec:.1} tok/s x bytes of weights"))
        },
        Source {
            field: "app_memory_gib".into(),
            ..measured("MemAvailable from /proc/meminfo")
        },
    ];
    let mut profile = DeviceProfile {
        id: "this-machine".into(),
        name: "This machine (measured)".into(),
        os: Os::Other,
        app_memory_gib: mem.max(0.1),
        accelerators: vec![acc],
        thermal: Thermal {
            heat_capacity_j_per_k: 500.0,
            resistance_k_per_w: 0.3,
            ambient_c: 25.0,
            idle_power_w: 10.0,
            hysteresis_c: 2.0,
            state_thresholds_c: vec![60.0, 70.0, 80.0, 85.0, 90.0, 95.0],
        },
        power_budget_w: 100.0,
        sources,
    };
    // Everything not measured above is a desktop assumption; say so for each field.
    for field in profile.unsourced() {
        profile.sources.push(Source {
            field,
            text: "desktop assumption: a cooled machine that does not throttle (not measured)".into(),
            derived: true,
        });
    }
    profile
}
