//! llama.cpp's log: forwarded to `tracing` (target `llama`), never raw to stderr. Warning and
//! error lines are also kept briefly, because llama.cpp reports most failures only as a null
//! return plus a log line, and users need that line.

use std::collections::VecDeque;
use std::ffi::{c_char, c_void, CStr};
use std::sync::{Mutex, Once};

const KEEP_LINES: usize = 16;

static RECENT: Mutex<VecDeque<String>> = Mutex::new(VecDeque::new());
static PARTIAL: Mutex<(u32, String)> = Mutex::new((0, String::new()));
static INSTALL: Once = Once::new();
static OBSERVER: Mutex<Option<fn(&str)>> = Mutex::new(None);

/// Also passes every complete log line to `observer` (the quantize worker reads its progress
/// from llama.cpp's `[  12/ 272]` lines this way).
pub fn set_line_observer(observer: fn(&str)) {
    if let Ok(mut o) = OBSERVER.lock() {
        *o = Some(observer);
    }
}

/// Installs the log callback (idempotent).
pub fn install_log_capture() {
    INSTALL.call_once(|| {
        // SAFETY: the callback is a plain function valid for the life of the process.
        unsafe { llama_cpp_sys_2::llama_log_set(Some(on_log), std::ptr::null_mut()) };
    });
}

/// Takes the warning/error lines logged since the last call.
pub fn take_recent_errors() -> Vec<String> {
    match RECENT.lock() {
        Ok(mut recent) => recent.drain(..).collect(),
        Err(_) => Vec::new(),
    }
}

/// Clears remembered lines, so a later failure reports only its own cause.
pub(crate) fn clear_recent() {
    if let Ok(mut recent) = RECENT.lock() {
        recent.clear();
    }
}

unsafe extern "C" fn on_log(level: llama_cpp_sys_2::ggml_log_level, text: *const c_char, _user: *mut c_void) {
    if text.is_null() {
        return;
    }
    // SAFETY: llama.cpp passes a NUL-terminated string valid for this call.
    let text = unsafe { CStr::from_ptr(text) }.to_string_lossy();
    let Ok(mut partial) = PARTIAL.lock() else { return };
    // Level 5 (GGML_LOG_LEVEL_CONT) continues the previous line at its level.
    if level != 5 {
        partial.0 = level;
    }
    partial.1.push_str(&text);
    while let Some(nl) = partial.1.find('\n') {
        let line: String = partial.1.drain(..=nl).collect();
        emit(partial.0, line.trim_end());
    }
}

fn emit(level: u32, line: &str) {
    if line.is_empty() {
        return;
    }
    if let Some(observer) = OBSERVER.lock().ok().and_then(|o| *o) {
        observer(line);
    }
    match level {
        4 => tracing::error!(target: "llama", "{line}"),
        3 => tracing::warn!(target: "llama", "{line}"),
        2 => tracing::info!(target: "llama", "{line}"),
        _ => tracing::debug!(target: "llama", "{line}"),
    }
    if level >= 3 {
        if let Ok(mut recent) = RECENT.lock() {
            if recent.len() == KEEP_LINES {
                recent.pop_front();
            }
            recent.push_back(
                line.trim_start_matches(|c: char| c == ':' || c.is_whitespace())
                    .to_string(),
            );
        }
    }
}
