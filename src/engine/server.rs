//! The engine child process (`nanolab engine`): reads requests from stdin, runs them on the
//! named engine thread, writes events to stdout. Cancels are handled on the stdin thread so
//! they reach a running job.

use std::io::{BufRead, Write};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::cancel::CancelBoard;
use super::llama;
use super::worker::{EventSink, Worker};
use crate::protocol::{Event, Request, PROTOCOL_VERSION};

/// Token events closer together than this are written together: each write wakes the parent's
/// reader thread, and on a machine with as many cores as llama.cpp has threads every wake-up
/// stalls a decode (its threads wait for each other). 16 ms keeps streaming smooth.
const TOKEN_FLUSH_EVERY: Duration = Duration::from_millis(16);

/// Events as JSON lines on stdout: every event is written at once except token events, which are
/// held for at most [`TOKEN_FLUSH_EVERY`] (the job's terminal event writes whatever is held).
/// The engine thread and the stdin thread each have one; every write holds whole lines.
#[derive(Default)]
struct StdoutSink {
    held: Vec<u8>,
    last_write: Option<Instant>,
}

impl EventSink for StdoutSink {
    fn send(&mut self, event: Event) {
        let Ok(line) = serde_json::to_string(&event) else {
            return;
        };
        self.held.extend_from_slice(line.as_bytes());
        self.held.push(b'\n');
        let hold =
            matches!(event, Event::Token { .. }) && self.last_write.is_some_and(|t| t.elapsed() < TOKEN_FLUSH_EVERY);
        if hold {
            return;
        }
        let mut out = std::io::stdout().lock();
        // If the parent is gone there is no one to tell; the stdin loop will end too.
        let _ = out.write_all(&self.held);
        let _ = out.flush();
        self.held.clear();
        self.last_write = Some(Instant::now());
    }
}

/// Runs the engine until stdin closes. Returns an error only if the engine cannot start.
pub fn run() -> anyhow::Result<()> {
    llama::init_backend()?;
    let mut sink = StdoutSink::default();
    sink.send(Event::Ready {
        protocol_version: PROTOCOL_VERSION,
        engine_version: env!("CARGO_PKG_VERSION").to_string(),
        system_info: llama::system_info(),
    });
    let cancel = CancelBoard::default();
    let (tx, rx) = mpsc::sync_channel::<Request>(64);
    let worker_cancel = cancel.clone();
    let worker = std::thread::Builder::new().name("llama-engine".into()).spawn(move || {
        let mut worker = Worker::new(worker_cancel);
        let mut sink = StdoutSink::default();
        worker.run(&rx, &mut sink);
    })?;

    let stdin = std::io::stdin().lock();
    for line in stdin.lines() {
        let Ok(line) = line else { break };
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<Request>(&line) {
            Ok(Request::Cancel { job }) => cancel.cancel(job),
            Ok(req) => {
                if tx.send(req).is_err() {
                    break;
                }
            }
            Err(e) => sink.send(Event::Error {
                job: job_of(&line),
                message: format!("engine could not read a request: {e}"),
                cancelled: false,
                retry: false,
            }),
        }
    }
    // stdin closed: the parent is gone (or done). Stop the running job instead of generating for
    // no one, drop the queue, and exit.
    cancel.shutdown();
    drop(tx);
    let _ = worker.join();
    Ok(())
}

/// Best-effort job id from a request the engine could not parse, so the caller is answered.
fn job_of(line: &str) -> u64 {
    serde_json::from_str::<serde_json::Value>(line)
        .ok()
        .and_then(|v| v.get("job").and_then(serde_json::Value::as_u64))
        .unwrap_or(0)
}
