//! Any bytes through the GGUF header/metadata/tensor-table parser and the summary built on it:
//! an error is fine, a panic, hang or huge allocation is a bug.
#![no_main]

// nanolab's parser sources, compiled here (paths are relative to this folder).
#[allow(dead_code, unused_imports)]
#[path = "../../../src/gguf/mod.rs"]
mod gguf;
#[allow(dead_code, unused_imports)]
#[path = "../../../src/adapters/peft_files.rs"]
mod peft_files;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(file) = gguf::parse_bytes(data) {
        let _ = gguf::Summary::of(&file);
        let _ = file.architecture();
    }
});
