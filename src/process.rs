//! Helpers shared by the supervisors of nanolab's child processes (the engine and the
//! quantizer): which executable to run, what an exit status means, and the tail of a child's
//! stderr, read on a named thread.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{ChildStderr, ExitStatus};
use std::sync::{Arc, Mutex};

/// How many of a child's last stderr lines are kept.
const TAIL_LINES: usize = 8;

/// The nanolab executable a worker process runs from: `explicit`, else `NANOLAB_ENGINE_EXE`,
/// else the current executable.
pub fn worker_exe(explicit: Option<PathBuf>) -> PathBuf {
    explicit
        .or_else(|| std::env::var_os("NANOLAB_ENGINE_EXE").map(PathBuf::from))
        .or_else(|| std::env::current_exe().ok())
        .unwrap_or_else(|| PathBuf::from("nanolab"))
}

/// "killed by signal 9 (SIGKILL)", "exited with status 1".
pub fn describe_exit(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    if let Some(sig) = status.signal() {
        let name = match sig {
            libc::SIGKILL => " (SIGKILL)",
            libc::SIGABRT => " (SIGABRT, llama.cpp aborted)",
            libc::SIGSEGV => " (SIGSEGV)",
            libc::SIGTERM => " (SIGTERM)",
            libc::SIGBUS => " (SIGBUS)",
            libc::SIGXFSZ => " (SIGXFSZ: file size limit reached)",
            _ => "",
        };
        format!("killed by signal {sig}{name}")
    } else {
        format!("exited with status {}", status.code().unwrap_or(-1))
    }
}

/// The last lines a child wrote on stderr, filled by a reader thread until the pipe closes.
#[derive(Debug, Clone, Default)]
pub struct StderrTail(Arc<Mutex<VecDeque<String>>>);

impl StderrTail {
    /// Reads `stderr` on a thread called `thread_name`, keeping the last lines; with `echo`,
    /// passes every line through to this process's stderr (the child already formatted them).
    pub fn spawn(thread_name: &str, stderr: ChildStderr, echo: bool) -> std::io::Result<Self> {
        let tail = Self::default();
        let sink = tail.clone();
        std::thread::Builder::new().name(thread_name.into()).spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if echo {
                    eprintln!("{line}");
                }
                sink.push(line);
            }
        })?;
        Ok(tail)
    }

    fn push(&self, line: String) {
        if let Ok(mut t) = self.0.lock() {
            if t.len() == TAIL_LINES {
                t.pop_front();
            }
            t.push_back(line);
        }
    }

    /// The kept lines, oldest first.
    pub fn lines(&self) -> Vec<String> {
        self.0.lock().map(|t| t.iter().cloned().collect()).unwrap_or_default()
    }

    /// The last kept line that says something, trimmed; empty if none.
    pub fn last_line(&self) -> String {
        let said = self.lines().join("\n");
        said.trim().lines().last().unwrap_or("").to_string()
    }

    /// " (the last error line)" for an error message, or empty: the last kept line that
    /// mentions ERROR, abort or GGML_ASSERT.
    pub fn tail_text(&self) -> String {
        let lines: Vec<String> = self
            .lines()
            .into_iter()
            .filter(|l| l.contains("ERROR") || l.contains("abort") || l.contains("GGML_ASSERT"))
            .collect();
        match lines.last() {
            Some(l) => format!(" ({l})"),
            None => String::new(),
        }
    }
}
