//! ggml tensor types as they appear in GGUF files: id, name, block size and bytes per block.

use serde::Serialize;

/// A ggml tensor element type known to nanolab's reader.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct GgmlType {
    /// The numeric id stored in the file.
    pub id: u32,
    /// llama.cpp's name for the type (`Q4_K`, `F16`, …).
    pub name: &'static str,
    /// Elements per block.
    pub block_elems: u64,
    /// Bytes per block.
    pub block_bytes: u64,
}

/// (id, name, elements per block, bytes per block), from ggml's `type_traits`.
const TABLE: &[(u32, &str, u64, u64)] = &[
    (0, "F32", 1, 4),
    (1, "F16", 1, 2),
    (2, "Q4_0", 32, 18),
    (3, "Q4_1", 32, 20),
    (6, "Q5_0", 32, 22),
    (7, "Q5_1", 32, 24),
    (8, "Q8_0", 32, 34),
    (9, "Q8_1", 32, 36),
    (10, "Q2_K", 256, 84),
    (11, "Q3_K", 256, 110),
    (12, "Q4_K", 256, 144),
    (13, "Q5_K", 256, 176),
    (14, "Q6_K", 256, 210),
    (15, "Q8_K", 256, 292),
    (16, "IQ2_XXS", 256, 66),
    (17, "IQ2_XS", 256, 74),
    (18, "IQ3_XXS", 256, 98),
    (19, "IQ1_S", 256, 50),
    (20, "IQ4_NL", 32, 18),
    (21, "IQ3_S", 256, 110),
    (22, "IQ2_S", 256, 82),
    (23, "IQ4_XS", 256, 136),
    (24, "I8", 1, 1),
    (25, "I16", 1, 2),
    (26, "I32", 1, 4),
    (27, "I64", 1, 8),
    (28, "F64", 1, 8),
    (29, "IQ1_M", 256, 56),
    (30, "BF16", 1, 2),
    (34, "TQ1_0", 256, 54),
    (35, "TQ2_0", 256, 66),
    (39, "MXFP4", 32, 17),
];

impl GgmlType {
    /// Looks up a type id; `None` for ids this reader does not know.
    pub fn from_id(id: u32) -> Option<Self> {
        TABLE
            .iter()
            .find(|(i, ..)| *i == id)
            .map(|&(id, name, block_elems, block_bytes)| Self {
                id,
                name,
                block_elems,
                block_bytes,
            })
    }

    /// Looks up a type by its llama.cpp name (case-insensitive).
    pub fn from_name(name: &str) -> Option<Self> {
        TABLE
            .iter()
            .find(|(_, n, ..)| n.eq_ignore_ascii_case(name))
            .and_then(|&(id, ..)| Self::from_id(id))
    }

    /// Bytes needed for `elems` elements, or `None` if `elems` is not a whole number of blocks.
    pub fn bytes_for(&self, elems: u64) -> Option<u64> {
        if !elems.is_multiple_of(self.block_elems) {
            return None;
        }
        (elems / self.block_elems).checked_mul(self.block_bytes)
    }
}

/// llama.cpp's `general.file_type` values (`enum llama_ftype`), for display.
pub fn file_type_name(ftype: u32) -> Option<&'static str> {
    Some(match ftype {
        0 => "F32",
        1 => "F16",
        2 => "Q4_0",
        3 => "Q4_1",
        7 => "Q8_0",
        8 => "Q5_0",
        9 => "Q5_1",
        10 => "Q2_K",
        11 => "Q3_K_S",
        12 => "Q3_K_M",
        13 => "Q3_K_L",
        14 => "Q4_K_S",
        15 => "Q4_K_M",
        16 => "Q5_K_S",
        17 => "Q5_K_M",
        18 => "Q6_K",
        19 => "IQ2_XXS",
        20 => "IQ2_XS",
        21 => "Q2_K_S",
        22 => "IQ3_XS",
        23 => "IQ3_XXS",
        24 => "IQ1_S",
        25 => "IQ4_NL",
        26 => "IQ3_S",
        27 => "IQ3_M",
        28 => "IQ2_S",
        29 => "IQ2_M",
        30 => "IQ4_XS",
        31 => "IQ1_M",
        32 => "BF16",
        36 => "TQ1_0",
        37 => "TQ2_0",
        38 => "MXFP4_MOE",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_sizes_match_ggml() {
        let q4_k = GgmlType::from_id(12).unwrap();
        assert_eq!(q4_k.name, "Q4_K");
        assert_eq!(q4_k.bytes_for(576 * 256), Some(576 * 144));
        assert_eq!(q4_k.bytes_for(100), None);
        assert_eq!(GgmlType::from_name("q8_0").unwrap().id, 8);
        assert!(GgmlType::from_id(4).is_none());
    }
}
