//! A loaded model (`llama_model`), freed on drop. Contexts and adapters made from it must be
//! dropped first; the engine's ownership (lanes hold `Rc<LoadedModel>`) guarantees that.

use std::ffi::{c_void, CString};
use std::path::Path;
use std::ptr::NonNull;

use super::{log::clear_recent, reason, LlamaError};

/// A model loaded by llama.cpp.
pub struct Model {
    ptr: NonNull<llama_cpp_sys_2::llama_model>,
}

/// One chat message for the template.
#[derive(Debug, Clone)]
pub struct ChatMessage {
    /// `system`, `user` or `assistant`.
    pub role: String,
    /// Text.
    pub content: String,
}

struct ProgressState<'a> {
    on_progress: &'a mut dyn FnMut(f32) -> bool,
    cancelled: bool,
}

unsafe extern "C" fn progress_trampoline(progress: f32, user: *mut c_void) -> bool {
    // SAFETY: `user` is the `ProgressState` passed to the load call, alive for its duration.
    let state = unsafe { &mut *user.cast::<ProgressState>() };
    let keep_going = (state.on_progress)(progress);
    if !keep_going {
        state.cancelled = true;
    }
    keep_going
}

impl Model {
    /// Loads a model; `on_progress` gets 0-1 and returns false to cancel.
    pub fn load(path: &Path, gpu_layers: u32, on_progress: &mut dyn FnMut(f32) -> bool) -> Result<Self, LlamaError> {
        let c_path = CString::new(path.to_string_lossy().as_bytes())
            .map_err(|_| LlamaError::ModelLoad("path contains a NUL byte".into()))?;
        let mut state = ProgressState {
            on_progress,
            cancelled: false,
        };
        clear_recent();
        // SAFETY: default params are plain data; the callback and its state outlive the call.
        let raw = unsafe {
            let mut params = llama_cpp_sys_2::llama_model_default_params();
            params.n_gpu_layers = i32::try_from(gpu_layers).unwrap_or(i32::MAX);
            params.use_extra_bufts = super::weight_repacking();
            params.progress_callback = Some(progress_trampoline);
            params.progress_callback_user_data = (&raw mut state).cast();
            llama_cpp_sys_2::llama_model_load_from_file(c_path.as_ptr(), params)
        };
        if state.cancelled {
            if let Some(ptr) = NonNull::new(raw) {
                drop(Self { ptr });
            }
            return Err(LlamaError::LoadCancelled);
        }
        NonNull::new(raw)
            .map(|ptr| Self { ptr })
            .ok_or_else(|| LlamaError::ModelLoad(reason("unknown reason (see -v)")))
    }

    pub(super) fn as_ptr(&self) -> *mut llama_cpp_sys_2::llama_model {
        self.ptr.as_ptr()
    }

    fn vocab(&self) -> *const llama_cpp_sys_2::llama_vocab {
        // SAFETY: the model is alive; the vocab lives as long as the model.
        unsafe { llama_cpp_sys_2::llama_model_get_vocab(self.ptr.as_ptr()) }
    }

    /// Bytes of weights.
    pub fn size_bytes(&self) -> u64 {
        // SAFETY: the model is alive.
        unsafe { llama_cpp_sys_2::llama_model_size(self.ptr.as_ptr()) }
    }
    /// Parameters.
    pub fn n_params(&self) -> u64 {
        // SAFETY: the model is alive.
        unsafe { llama_cpp_sys_2::llama_model_n_params(self.ptr.as_ptr()) }
    }
    /// Training context length.
    pub fn n_ctx_train(&self) -> u32 {
        // SAFETY: the model is alive.
        u32::try_from(unsafe { llama_cpp_sys_2::llama_model_n_ctx_train(self.ptr.as_ptr()) }).unwrap_or(0)
    }
    /// Vocabulary size.
    pub fn n_vocab(&self) -> i32 {
        // SAFETY: the vocab is alive with the model.
        unsafe { llama_cpp_sys_2::llama_vocab_n_tokens(self.vocab()) }
    }
    /// KV cache bytes per token of context (f16 K and V over all layers).
    pub fn kv_bytes_per_token(&self) -> u64 {
        // SAFETY: plain queries on a live model.
        let (n_embd, n_layer, n_head, n_head_kv) = unsafe {
            let m = self.ptr.as_ptr();
            (
                llama_cpp_sys_2::llama_model_n_embd(m),
                llama_cpp_sys_2::llama_model_n_layer(m),
                llama_cpp_sys_2::llama_model_n_head(m),
                llama_cpp_sys_2::llama_model_n_head_kv(m),
            )
        };
        if n_head <= 0 {
            return 0;
        }
        let head_dim = u64::try_from(n_embd / n_head).unwrap_or(0);
        let kv_width = head_dim * u64::try_from(n_head_kv).unwrap_or(0);
        // K and V, 2 bytes each (f16), per layer.
        2 * 2 * kv_width * u64::try_from(n_layer).unwrap_or(0)
    }

    /// Whether a sequence's KV cells can be copied into a context shared by several sequences
    /// and decode there as they would alone: plain attention caches only (a sliding-window
    /// cache keeps a window per context, a recurrent state is no cells at all).
    pub fn kv_moves_between_contexts(&self) -> bool {
        // SAFETY: plain queries on a live model.
        unsafe {
            let m = self.ptr.as_ptr();
            llama_cpp_sys_2::llama_model_n_swa(m) == 0
                && !llama_cpp_sys_2::llama_model_is_recurrent(m)
                && !llama_cpp_sys_2::llama_model_is_hybrid(m)
        }
    }

    /// The embedded chat template, if any.
    pub fn chat_template(&self) -> Option<String> {
        // SAFETY: returns a pointer owned by the model or null.
        unsafe {
            let p = llama_cpp_sys_2::llama_model_chat_template(self.ptr.as_ptr(), std::ptr::null());
            (!p.is_null()).then(|| std::ffi::CStr::from_ptr(p).to_string_lossy().into_owned())
        }
    }

    /// Formats messages with the model's template, ending with the assistant's turn.
    pub fn apply_chat_template(&self, messages: &[ChatMessage]) -> Result<String, LlamaError> {
        let template = self
            .chat_template()
            .ok_or_else(|| LlamaError::ChatTemplate("this model has no chat template; use a raw prompt".into()))?;
        let c_template = CString::new(template).map_err(|e| LlamaError::ChatTemplate(e.to_string()))?;
        let owned: Vec<(CString, CString)> = messages
            .iter()
            .map(|m| Ok((CString::new(m.role.as_str())?, CString::new(m.content.as_str())?)))
            .collect::<Result<_, std::ffi::NulError>>()
            .map_err(|_| LlamaError::ChatTemplate("message contains a NUL byte".into()))?;
        let chat: Vec<llama_cpp_sys_2::llama_chat_message> = owned
            .iter()
            .map(|(r, c)| llama_cpp_sys_2::llama_chat_message {
                role: r.as_ptr(),
                content: c.as_ptr(),
            })
            .collect();
        let total: usize = messages.iter().map(|m| m.content.len() + m.role.len()).sum();
        let mut buf = vec![0u8; total * 2 + 512];
        loop {
            let len = i32::try_from(buf.len()).unwrap_or(i32::MAX);
            // SAFETY: all pointers are valid for the call; buf is writable for `len` bytes.
            let n = unsafe {
                llama_cpp_sys_2::llama_chat_apply_template(
                    c_template.as_ptr(),
                    chat.as_ptr(),
                    chat.len(),
                    true,
                    buf.as_mut_ptr().cast(),
                    len,
                )
            };
            if n < 0 {
                return Err(LlamaError::ChatTemplate(
                    "llama.cpp does not recognise this model's chat template; use a raw prompt".into(),
                ));
            }
            let n = n as usize;
            if n <= buf.len() {
                buf.truncate(n);
                return Ok(String::from_utf8_lossy(&buf).into_owned());
            }
            buf.resize(n, 0);
        }
    }

    /// Tokenizes text; `add_special` adds BOS where the model wants it; special-token text
    /// (`<|im_start|>`) becomes special tokens, as chat templates need.
    pub fn tokenize(&self, text: &str, add_special: bool) -> Result<Vec<i32>, LlamaError> {
        self.tokenize_with(text, add_special, true)
    }

    /// Tokenizes plain text (special-token text stays text), as llama-perplexity does.
    pub fn tokenize_plain(&self, text: &str) -> Result<Vec<i32>, LlamaError> {
        self.tokenize_with(text, true, false)
    }

    /// Whether the model wants a BOS token at the start of a sequence.
    pub fn add_bos(&self) -> bool {
        // SAFETY: plain query.
        unsafe { llama_cpp_sys_2::llama_vocab_get_add_bos(self.vocab()) }
    }

    /// The BOS token.
    pub fn bos(&self) -> i32 {
        // SAFETY: plain query.
        unsafe { llama_cpp_sys_2::llama_vocab_bos(self.vocab()) }
    }

    fn tokenize_with(&self, text: &str, add_special: bool, parse_special: bool) -> Result<Vec<i32>, LlamaError> {
        let len = i32::try_from(text.len()).map_err(|_| LlamaError::Tokenize("text too long".into()))?;
        let mut tokens = vec![0i32; text.len() + 8];
        loop {
            let cap = i32::try_from(tokens.len()).unwrap_or(i32::MAX);
            // SAFETY: text is valid for `len` bytes; tokens writable for `cap` entries.
            let n = unsafe {
                llama_cpp_sys_2::llama_tokenize(
                    self.vocab(),
                    text.as_ptr().cast(),
                    len,
                    tokens.as_mut_ptr(),
                    cap,
                    add_special,
                    parse_special,
                )
            };
            if n >= 0 {
                tokens.truncate(n as usize);
                return Ok(tokens);
            }
            if n == i32::MIN {
                return Err(LlamaError::Tokenize("too many tokens".into()));
            }
            tokens.resize((-n) as usize, 0);
        }
    }

    /// The bytes of one token (special tokens rendered).
    pub fn token_bytes(&self, token: i32) -> Vec<u8> {
        let mut buf = vec![0u8; 32];
        loop {
            let cap = i32::try_from(buf.len()).unwrap_or(i32::MAX);
            // SAFETY: buf is writable for `cap` bytes.
            let n = unsafe {
                llama_cpp_sys_2::llama_token_to_piece(self.vocab(), token, buf.as_mut_ptr().cast(), cap, 0, true)
            };
            if n >= 0 {
                buf.truncate(n as usize);
                return buf;
            }
            buf.resize((-n) as usize, 0);
        }
    }

    /// Whether a token ends generation.
    pub fn is_eog(&self, token: i32) -> bool {
        // SAFETY: plain query.
        unsafe { llama_cpp_sys_2::llama_vocab_is_eog(self.vocab(), token) }
    }
}

impl Drop for Model {
    fn drop(&mut self) {
        // SAFETY: we own the model; contexts and adapters made from it were dropped first.
        unsafe { llama_cpp_sys_2::llama_model_free(self.ptr.as_ptr()) }
        super::release_free_memory();
    }
}
