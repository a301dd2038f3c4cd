//! The only code that calls llama.cpp: small safe wrappers over `llama-cpp-sys-2`, used by the
//! engine thread. `llama-cpp-2`'s safe types keep their raw pointers private, and hot-loading
//! adapters into live contexts, stacked adapter scales, cancellable loads with progress and raw
//! logits all need those pointers, so contexts, adapters and samplers are wrapped here, once.
//! `llama-cpp-2` still initialises the backend and lists devices.

mod context;
mod log;
mod lora;
mod model;
mod quantize;
mod sampler;

pub use context::{Context, OnLogits, SeqToken};
pub use log::{install_log_capture, set_line_observer, take_recent_errors};
pub use lora::{set_stack, Adapter};
pub use model::{ChatMessage, Model};
pub use quantize::quantize;
pub use sampler::Sampler;

use std::sync::OnceLock;

use crate::protocol::DeviceInfo;

/// Failures reported by llama.cpp, with the reason it logged when there is one.
#[derive(Debug, thiserror::Error)]
pub enum LlamaError {
    /// Model load failed.
    #[error("llama.cpp could not load the model: {0}")]
    ModelLoad(String),
    /// Model load cancelled.
    #[error("loading cancelled")]
    LoadCancelled,
    /// Context creation failed.
    #[error("llama.cpp could not create a context: {0}")]
    Context(String),
    /// Adapter load failed.
    #[error("llama.cpp could not load the adapter: {0}")]
    Adapter(String),
    /// Setting the adapter stack failed.
    #[error("llama.cpp could not apply the adapter stack: {0}")]
    AdapterStack(String),
    /// Decode failed.
    #[error("llama.cpp decode failed: {0}")]
    Decode(String),
    /// Tokenization failed.
    #[error("tokenization failed: {0}")]
    Tokenize(String),
    /// Chat template failed.
    #[error("chat template failed: {0}")]
    ChatTemplate(String),
    /// Quantization failed.
    #[error("llama.cpp could not quantize the model: {0}")]
    Quantize(String),
    /// Backend init failed.
    #[error("llama.cpp backend failed to start: {0}")]
    Backend(String),
}

/// Reason text for an error: the last error lines llama.cpp logged, or a fallback.
pub(crate) fn reason(fallback: &str) -> String {
    let lines = take_recent_errors();
    if lines.is_empty() {
        fallback.to_string()
    } else {
        lines.join("; ")
    }
}

/// Hands freed heap pages back to the OS. A context's compute buffers are tens of MiB and glibc
/// keeps freed memory in its arenas, so without this the engine's resident memory ratchets up as
/// contexts and models come and go (docs/reliability.md, soak). Called when they are freed.
fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free memory to the OS; no pointers are invalidated.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// The llama.cpp build compiled in: ggml's version and commit.
pub fn llama_build() -> String {
    // SAFETY: both return pointers to static NUL-terminated strings.
    let (version, commit) = unsafe {
        (
            std::ffi::CStr::from_ptr(llama_cpp_sys_2::ggml_version())
                .to_string_lossy()
                .into_owned(),
            std::ffi::CStr::from_ptr(llama_cpp_sys_2::ggml_commit())
                .to_string_lossy()
                .into_owned(),
        )
    };
    format!(
        "ggml {version} (commit {commit}) via llama-cpp-sys-2 {}",
        LLAMA_CPP_SYS_VERSION
    )
}

/// The pinned llama-cpp-sys-2 version (Cargo.toml pins it exactly).
const LLAMA_CPP_SYS_VERSION: &str = "0.1.161";

static BACKEND: OnceLock<Result<llama_cpp_2::llama_backend::LlamaBackend, String>> = OnceLock::new();

/// Fixes glibc's mmap threshold at 256 KiB. By default glibc raises the threshold each time an
/// mmapped block is freed (up to 32 MiB), after which a context's large compute and KV buffers
/// come from the heap arenas and fragment them: the engine's idle memory then wandered by a
/// quarter between identical states (docs/reliability.md, soak). With a fixed threshold those
/// buffers are always their own mappings and go back to the OS the moment they are freed.
fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator parameters; called before llama.cpp allocates.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 256 * 1024);
    }
}

/// Initialises llama.cpp once per process and routes its log through `tracing`.
pub fn init_backend() -> Result<(), LlamaError> {
    tune_allocator();
    install_log_capture();
    match BACKEND.get_or_init(|| llama_cpp_2::llama_backend::LlamaBackend::init().map_err(|e| e.to_string())) {
        Ok(_) => Ok(()),
        Err(e) => Err(LlamaError::Backend(e.clone())),
    }
}

/// The process's llama-cpp-2 backend handle, once initialised.
pub fn backend() -> Option<&'static llama_cpp_2::llama_backend::LlamaBackend> {
    BACKEND.get().and_then(|r| r.as_ref().ok())
}

/// Whether this build can offload layers to a GPU.
pub fn supports_gpu_offload() -> bool {
    // SAFETY: a pure query with no arguments.
    unsafe { llama_cpp_sys_2::llama_supports_gpu_offload() }
}

/// llama.cpp's system info line (SIMD features compiled in).
pub fn system_info() -> String {
    // SAFETY: returns a pointer to a static, NUL-terminated string.
    unsafe {
        let p = llama_cpp_sys_2::llama_print_system_info();
        if p.is_null() {
            String::new()
        } else {
            std::ffi::CStr::from_ptr(p).to_string_lossy().trim().to_string()
        }
    }
}

/// The CPU features this build of llama.cpp uses (`AVX2`, `FMA`, `AVX512`, …): the entries of
/// the system line that read `NAME = 1`.
pub fn cpu_features() -> Vec<String> {
    features_on(&system_info())
}

/// Whether models load with llama.cpp's extra weight buffers (repacked layouts and AMX tiles).
/// Off where this build uses AMX: llama.cpp's AMX matrix multiply (ggml-cpu/amx) crashes with
/// SIGSEGV on the first batch of several tokens on the Xeon machines this project runs on, in
/// llama-bench as well, so nanolab loads plain buffers there and compares against llama.cpp's
/// tools run with `--no-repack` (`--repack 0` for llama-bench).
pub fn weight_repacking() -> bool {
    static REPACK: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *REPACK.get_or_init(|| !cpu_features().iter().any(|f| f.starts_with("AMX")))
}

fn features_on(info: &str) -> Vec<String> {
    info.split(['|', ':'])
        .filter_map(|part| {
            let (name, value) = part.split_once('=')?;
            (value.trim() == "1").then(|| name.trim().to_string())
        })
        .filter(|n| !n.is_empty())
        .collect()
}

/// Compute devices that llama.cpp can use.
pub fn devices() -> Vec<DeviceInfo> {
    llama_cpp_2::list_llama_ggml_backend_devices()
        .into_iter()
        .map(|d| DeviceInfo {
            backend: d.backend,
            name: d.name,
            description: d.description,
            kind: format!("{:?}", d.device_type),
            memory_free_bytes: d.memory_free as u64,
            memory_total_bytes: d.memory_total as u64,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn features_are_read_from_the_system_line() {
        let line = "CPU : SSE3 = 1 | AVX = 1 | AVX_VNNI = 0 | AVX2 = 1 | F16C = 1 | AVX512 = 0 | OPENMP = 1 |";
        assert_eq!(super::features_on(line), ["SSE3", "AVX", "AVX2", "F16C", "OPENMP"]);
    }
}
