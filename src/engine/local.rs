//! The engine's worker in the calling process, with no child process, pipe or JSON: what
//! `bench --stack` compares the real engine against to show what the protocol costs.

use super::cancel::CancelBoard;
use super::llama::{self, LlamaError};
use super::worker::{EventSink, Worker};
use crate::protocol::{Event, Request};

/// A worker on the calling thread (llama.cpp objects stay on it).
pub struct LocalEngine {
    worker: Worker,
}

struct Callback<'a>(&'a mut dyn FnMut(&Event), Option<Event>);

impl EventSink for Callback<'_> {
    fn send(&mut self, event: Event) {
        (self.0)(&event);
        if event.is_terminal() {
            self.1 = Some(event);
        }
    }
}

impl LocalEngine {
    /// Starts llama.cpp's backend in this process.
    pub fn new() -> Result<Self, LlamaError> {
        llama::init_backend()?;
        Ok(Self {
            worker: Worker::new(CancelBoard::default()),
        })
    }

    /// Runs `req` to completion, passing every event to `on_event`; returns the terminal one.
    pub fn call(&mut self, req: Request, mut on_event: impl FnMut(&Event)) -> Option<Event> {
        let mut sink = Callback(&mut on_event, None);
        self.worker.handle(req, &mut sink);
        sink.1
    }
}
