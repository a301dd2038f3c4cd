//! Quantization levels the ladder offers, named as llama.cpp's `llama-quantize` names them.

use crate::gguf::{self, GgufFile};

/// A target level: llama.cpp file type and what to expect of it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct QuantType {
    /// Name (`Q4_K_M`).
    pub name: &'static str,
    /// `LLAMA_FTYPE_*` value.
    pub ftype: u32,
    /// Typical bits per weight on a large model (small models with odd widths fall back to
    /// bigger types for some tensors, so their files come out larger).
    pub bits_per_weight: f64,
}

/// Levels offered, from largest to smallest. IQ types are left out: they need an importance matrix.
pub const QUANT_TYPES: &[QuantType] = &[
    QuantType {
        name: "F32",
        ftype: 0,
        bits_per_weight: 32.0,
    },
    QuantType {
        name: "F16",
        ftype: 1,
        bits_per_weight: 16.0,
    },
    QuantType {
        name: "BF16",
        ftype: 32,
        bits_per_weight: 16.0,
    },
    QuantType {
        name: "Q8_0",
        ftype: 7,
        bits_per_weight: 8.5,
    },
    QuantType {
        name: "Q6_K",
        ftype: 18,
        bits_per_weight: 6.56,
    },
    QuantType {
        name: "Q5_K_M",
        ftype: 17,
        bits_per_weight: 5.69,
    },
    QuantType {
        name: "Q5_K_S",
        ftype: 16,
        bits_per_weight: 5.54,
    },
    QuantType {
        name: "Q5_1",
        ftype: 9,
        bits_per_weight: 6.0,
    },
    QuantType {
        name: "Q5_0",
        ftype: 8,
        bits_per_weight: 5.5,
    },
    QuantType {
        name: "Q4_K_M",
        ftype: 15,
        bits_per_weight: 4.89,
    },
    QuantType {
        name: "Q4_K_S",
        ftype: 14,
        bits_per_weight: 4.58,
    },
    QuantType {
        name: "Q4_1",
        ftype: 3,
        bits_per_weight: 5.0,
    },
    QuantType {
        name: "Q4_0",
        ftype: 2,
        bits_per_weight: 4.5,
    },
    QuantType {
        name: "Q3_K_L",
        ftype: 13,
        bits_per_weight: 4.27,
    },
    QuantType {
        name: "Q3_K_M",
        ftype: 12,
        bits_per_weight: 3.91,
    },
    QuantType {
        name: "Q3_K_S",
        ftype: 11,
        bits_per_weight: 3.5,
    },
    QuantType {
        name: "Q2_K",
        ftype: 10,
        bits_per_weight: 3.0,
    },
];

/// The default ladder the window pre-selects.
pub const DEFAULT_LADDER: &[&str] = &["Q8_0", "Q6_K", "Q5_K_M", "Q4_K_M", "Q4_0", "Q3_K_M", "Q2_K"];

impl QuantType {
    /// Looks a level up by name, case-insensitively (`q4_k_m`).
    pub fn parse(name: &str) -> Result<Self, String> {
        QUANT_TYPES
            .iter()
            .find(|q| q.name.eq_ignore_ascii_case(name.trim()))
            .copied()
            .ok_or_else(|| {
                format!(
                    "unknown quantization type {name:?}; choose from {}",
                    QUANT_TYPES.iter().map(|q| q.name).collect::<Vec<_>>().join(", ")
                )
            })
    }

    /// Output file name for this level made from `input` (`SmolLM2-135M-Instruct.Q4_1.gguf` →
    /// `SmolLM2-135M-Instruct.Q8_0.gguf`).
    pub fn output_name(&self, input: &std::path::Path) -> String {
        let stem = input
            .file_stem()
            .map_or_else(|| "model".into(), |s| s.to_string_lossy().into_owned());
        let base = match stem.rsplit_once('.') {
            Some((b, last)) if Self::parse(last).is_ok() => b.to_string(),
            _ => stem,
        };
        format!("{base}.{}.gguf", self.name)
    }
}

/// The dominant tensor type of a model (by bytes of 2-D tensors), e.g. `Q4_1`.
pub fn dominant_type(file: &GgufFile) -> String {
    let summary = gguf::Summary::of(file);
    if let Some(name) = summary.file_type {
        return name;
    }
    summary
        .quant_mix
        .first()
        .map_or_else(|| "unknown".into(), |q| q.ggml_type.to_ascii_uppercase())
}

/// Whether a model of this type is a sound reference to quantize from (no requantization).
pub fn is_reference_grade(type_name: &str) -> bool {
    matches!(type_name.to_ascii_uppercase().as_str(), "F32" | "F16" | "BF16" | "Q8_0")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_and_name_outputs() {
        assert_eq!(QuantType::parse("q4_k_m").unwrap().ftype, 15);
        assert!(QuantType::parse("iq2_xxs").unwrap_err().contains("choose from"));
        let q8 = QuantType::parse("Q8_0").unwrap();
        assert_eq!(
            q8.output_name(std::path::Path::new("models/SmolLM2-135M-Instruct.Q4_1.gguf")),
            "SmolLM2-135M-Instruct.Q8_0.gguf"
        );
        assert_eq!(
            q8.output_name(std::path::Path::new("m/gemma-3-270m.gguf")),
            "gemma-3-270m.Q8_0.gguf"
        );
        for name in DEFAULT_LADDER {
            QuantType::parse(name).unwrap();
        }
        // Every ftype here is one llama.cpp knows by the same name.
        for q in QUANT_TYPES {
            assert_eq!(crate::gguf::file_type_name(q.ftype), Some(q.name));
        }
        assert!(is_reference_grade("f16") && !is_reference_grade("Q4_1"));
    }
}
