//! LoRA adapters: loaded onto a model, applied to contexts as a stack with per-adapter scales.
//! This is the one place that wraps `llama_set_adapters_lora`.

use std::ffi::CString;
use std::path::Path;
use std::ptr::NonNull;

use super::{log::clear_recent, reason, Context, LlamaError, Model};

/// A LoRA adapter loaded for one model. Must be dropped before that model.
pub struct Adapter {
    ptr: NonNull<llama_cpp_sys_2::llama_adapter_lora>,
}

impl Adapter {
    /// Loads an adapter file for `model`. The caller has validated the file first.
    pub fn load(model: &Model, path: &Path) -> Result<Self, LlamaError> {
        let c_path = CString::new(path.to_string_lossy().as_bytes())
            .map_err(|_| LlamaError::Adapter("path contains a NUL byte".into()))?;
        clear_recent();
        // SAFETY: model is alive; the path is a valid C string.
        let raw = unsafe { llama_cpp_sys_2::llama_adapter_lora_init(model.as_ptr(), c_path.as_ptr()) };
        NonNull::new(raw)
            .map(|ptr| Self { ptr })
            .ok_or_else(|| LlamaError::Adapter(reason("unknown reason (see -v)")))
    }
}

impl Drop for Adapter {
    fn drop(&mut self) {
        // SAFETY: we own the adapter; contexts that used it were reset or dropped first.
        unsafe { llama_cpp_sys_2::llama_adapter_lora_free(self.ptr.as_ptr()) }
    }
}

/// Replaces the context's active adapters with `stack` (adapter, scale), in order.
/// An empty stack removes every adapter.
pub fn set_stack(ctx: &mut Context, stack: &[(&Adapter, f32)]) -> Result<(), LlamaError> {
    let mut ptrs: Vec<*mut llama_cpp_sys_2::llama_adapter_lora> = stack.iter().map(|(a, _)| a.ptr.as_ptr()).collect();
    let mut scales: Vec<f32> = stack.iter().map(|(_, s)| *s).collect();
    clear_recent();
    // SAFETY: the arrays hold `len` valid adapters and scales for the duration of the call.
    let rc = unsafe {
        llama_cpp_sys_2::llama_set_adapters_lora(ctx.as_ptr(), ptrs.as_mut_ptr(), ptrs.len(), scales.as_mut_ptr())
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(LlamaError::AdapterStack(reason(&format!("error code {rc}"))))
    }
}
