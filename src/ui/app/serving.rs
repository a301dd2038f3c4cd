//! "Serve lanes": the window's lanes served over the OpenAI API by a `nanolab serve` child on
//! 127.0.0.1, each under its own name (`lane-1`, …) with its stack as the window resolves it
//! (static pins included). The child has its own engine, so served requests do not slow the
//! window's lanes; it reports each answered request (`--report-requests`), which the graphs
//! panel draws as "Served requests". It ends with the window.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};

use crate::process::StderrTail;
use crate::protocol::{LaneAlias, ServedRequest, SERVED_PREFIX};

/// Answered requests kept for the graph; older ones are dropped.
const MAX_SERVED: usize = 1000;

enum Line {
    Listening(String),
    Ended,
}

/// A running `nanolab serve` child serving the lanes.
pub struct Serving {
    child: Child,
    lines: Receiver<Line>,
    stderr: StderrTail,
    lanes_file: PathBuf,
    /// `http://127.0.0.1:PORT` once the server listens.
    pub url: Option<String>,
    /// The served names.
    pub names: Vec<String>,
    /// Requests answered so far (the last [`MAX_SERVED`]), with their number from 1.
    pub served: Vec<(usize, ServedRequest)>,
    /// Filled by the reader thread, which must never block: a full pipe would stall the server.
    incoming: Arc<Mutex<VecDeque<ServedRequest>>>,
    answered: usize,
}

impl Serving {
    /// Writes the lanes file and starts `exe serve` on a free loopback port.
    pub fn start(exe: &Path, lanes: Vec<LaneAlias>) -> Result<Self, String> {
        let lanes_file = std::env::temp_dir().join(format!("nanolab-serve-lanes-{}.json", std::process::id()));
        let json = serde_json::to_vec_pretty(&lanes).map_err(|e| e.to_string())?;
        crate::paths::write_atomic(&lanes_file, &json).map_err(|e| format!("{}: {e}", lanes_file.display()))?;
        let mut child = Command::new(exe)
            .args([
                "serve",
                "--report-requests",
                "--host",
                "127.0.0.1",
                "--port",
                "0",
                "--lanes-file",
            ])
            .arg(&lanes_file)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("could not start {} serve: {e}", exe.display()))?;
        let (Some(out), Some(err)) = (child.stdout.take(), child.stderr.take()) else {
            let _ = child.kill();
            let _ = child.wait();
            return Err("no pipes to the serve process".into());
        };
        let stderr = StderrTail::spawn("serve-stderr", err, false).map_err(|e| e.to_string())?;
        let (tx, lines) = mpsc::sync_channel(4);
        let incoming = Arc::new(Mutex::new(VecDeque::new()));
        let sink = Arc::clone(&incoming);
        std::thread::Builder::new()
            .name("serve-watch".into())
            .spawn(move || {
                // Read to the end whatever comes: a line that is not UTF-8 must not stop the
                // reading, or the pipe would fill and stall the server's answers.
                let mut reader = BufReader::new(out);
                let mut buf = Vec::new();
                loop {
                    buf.clear();
                    match reader.read_until(b'\n', &mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(_) => {}
                    }
                    let line = String::from_utf8_lossy(&buf);
                    let line = line.trim_end();
                    if let Some(url) = line.strip_prefix("listening on ") {
                        let _ = tx.send(Line::Listening(url.trim().to_string()));
                    } else if let Some(json) = line.strip_prefix(SERVED_PREFIX) {
                        let Ok(req) = serde_json::from_str::<ServedRequest>(json) else {
                            continue;
                        };
                        if let Ok(mut q) = sink.lock() {
                            if q.len() == MAX_SERVED {
                                q.pop_front();
                            }
                            q.push_back(req);
                        }
                    }
                }
                let _ = tx.send(Line::Ended);
            })
            .map_err(|e| e.to_string())?;
        Ok(Self {
            child,
            lines,
            stderr,
            lanes_file,
            url: None,
            names: lanes.into_iter().map(|l| l.name).collect(),
            served: Vec::new(),
            incoming,
            answered: 0,
        })
    }

    /// Reads what the child said; an error message once it has ended.
    pub fn poll(&mut self) -> Option<String> {
        if let Ok(mut q) = self.incoming.lock() {
            for req in q.drain(..) {
                self.answered += 1;
                self.served.push((self.answered, req));
            }
        }
        if self.served.len() > MAX_SERVED {
            self.served.drain(..self.served.len() - MAX_SERVED);
        }
        while let Ok(line) = self.lines.try_recv() {
            match line {
                Line::Listening(url) => self.url = Some(url),
                Line::Ended => {
                    let status = self
                        .child
                        .wait()
                        .map_or_else(|e| e.to_string(), crate::process::describe_exit);
                    let last = self.stderr.last_line();
                    return Some(format!(
                        "serving lanes stopped: {status}{}",
                        if last.is_empty() {
                            String::new()
                        } else {
                            format!(" ({last})")
                        }
                    ));
                }
            }
        }
        None
    }
}

impl Drop for Serving {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.lanes_file);
    }
}
