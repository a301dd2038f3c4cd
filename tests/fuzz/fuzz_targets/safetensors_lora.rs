//! Any bytes as a PEFT `adapter_model.safetensors`, and every tensor name through the name map.
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
    if let Ok(tensors) = peft_files::tensors_from_bytes(std::path::Path::new("adapter_model.safetensors"), data) {
        for name in tensors.keys() {
            let _ = peft_files::map_name(name);
        }
    }
});
