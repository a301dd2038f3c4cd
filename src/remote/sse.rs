//! Server-sent events as the HTML standard frames them: `data:` lines joined by newlines, an
//! event dispatched at a blank line, comments (`:`) and other fields ignored. What OpenAI-style
//! servers stream over HTTP.

use std::io::BufRead;

/// Reads one event's data at a time from a stream.
pub struct Events<R> {
    reader: R,
    line: String,
}

impl<R: BufRead> Events<R> {
    /// Events from `reader`.
    pub fn new(reader: R) -> Self {
        Self {
            reader,
            line: String::new(),
        }
    }

    /// The next event's data; `Ok(None)` when the stream ended.
    pub fn next_data(&mut self) -> std::io::Result<Option<String>> {
        let mut data: Option<String> = None;
        loop {
            self.line.clear();
            if self.reader.read_line(&mut self.line)? == 0 {
                // A last event not followed by a blank line is dispatched all the same.
                return Ok(data);
            }
            let line = self.line.trim_end_matches(['\r', '\n']);
            if line.is_empty() {
                if data.is_some() {
                    return Ok(data);
                }
                continue;
            }
            let (field, value) = line.split_once(':').unwrap_or((line, ""));
            if field == "data" {
                let value = value.strip_prefix(' ').unwrap_or(value);
                match &mut data {
                    Some(d) => {
                        d.push('\n');
                        d.push_str(value);
                    }
                    None => data = Some(value.to_string()),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_data_lines_into_events() {
        let wire = ": keep-alive\r\n\r\ndata: {\"a\":1}\r\n\r\nevent: x\ndata: one\ndata:two\n\ndata: [DONE]";
        let mut ev = Events::new(wire.as_bytes());
        assert_eq!(ev.next_data().unwrap().as_deref(), Some("{\"a\":1}"));
        assert_eq!(ev.next_data().unwrap().as_deref(), Some("one\ntwo"));
        assert_eq!(ev.next_data().unwrap().as_deref(), Some("[DONE]"));
        assert_eq!(ev.next_data().unwrap(), None);
    }
}
