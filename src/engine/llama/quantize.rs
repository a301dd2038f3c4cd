//! `llama_model_quantize`: llama.cpp's own quantizer, run in a `nanolab quantize-worker` child
//! process (it has no cancel hook, so cancel = kill the child; an abort in C++ takes down only
//! that child).

use std::ffi::CString;
use std::path::Path;

use super::{log::clear_recent, reason, LlamaError};

/// Quantizes `input` into `output` as llama.cpp file type `ftype` (a `LLAMA_FTYPE_*` value).
/// `allow_requantize` lets already-quantized tensors be dequantized and quantized again.
pub fn quantize(
    input: &Path,
    output: &Path,
    ftype: u32,
    allow_requantize: bool,
    threads: i32,
) -> Result<(), LlamaError> {
    let c_in = CString::new(input.to_string_lossy().as_bytes())
        .map_err(|_| LlamaError::Quantize("input path contains a NUL byte".into()))?;
    let c_out = CString::new(output.to_string_lossy().as_bytes())
        .map_err(|_| LlamaError::Quantize("output path contains a NUL byte".into()))?;
    clear_recent();
    // SAFETY: default params are plain data; the paths outlive the call.
    let rc = unsafe {
        let mut p = llama_cpp_sys_2::llama_model_quantize_default_params();
        p.nthread = threads;
        p.ftype = ftype as llama_cpp_sys_2::llama_ftype;
        p.allow_requantize = allow_requantize;
        llama_cpp_sys_2::llama_model_quantize(c_in.as_ptr(), c_out.as_ptr(), &p)
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(LlamaError::Quantize(reason(&format!("error code {rc}"))))
    }
}
