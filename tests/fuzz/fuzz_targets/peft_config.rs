//! Any text as a PEFT `adapter_config.json`.
#![no_main]

// nanolab's parser sources, compiled here (paths are relative to this folder).
#[allow(dead_code, unused_imports)]
#[path = "../../../src/gguf/mod.rs"]
mod gguf;
#[allow(dead_code, unused_imports)]
mod adapters {
    #[path = "../../../../src/adapters/peft.rs"]
    pub mod peft;
}

use libfuzzer_sys::fuzz_target;
use adapters::peft;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = peft::parse_config(std::path::Path::new("adapter_config.json"), text);
    }
});
