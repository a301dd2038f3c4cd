//! Any text as a PEFT `adapter_config.json`.
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
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = peft_files::parse_config(std::path::Path::new("adapter_config.json"), text);
    }
});
