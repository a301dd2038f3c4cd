//! Turns token bytes into released text: whole UTF-8 characters only, and nothing that could be
//! the start of a stop string until it is known not to be one.

/// Accumulates generated text and decides what may be shown.
#[derive(Debug, Default)]
pub struct TextAssembler {
    pending: Vec<u8>,
    all: String,
    released: usize,
    stops: Vec<String>,
}

impl TextAssembler {
    /// A new assembler that stops before any of `stops`.
    pub fn new(stops: &[String]) -> Self {
        Self {
            stops: stops.iter().filter(|s| !s.is_empty()).cloned().collect(),
            ..Self::default()
        }
    }

    /// Adds a token's bytes; returns the newly released text and whether a stop string matched.
    pub fn push(&mut self, bytes: &[u8]) -> (String, bool) {
        self.pending.extend_from_slice(bytes);
        loop {
            match std::str::from_utf8(&self.pending) {
                Ok(s) => {
                    self.all.push_str(s);
                    self.pending.clear();
                    break;
                }
                Err(e) => {
                    let valid = e.valid_up_to();
                    // SAFETY-free: from_utf8 vouched for the prefix.
                    self.all.push_str(&String::from_utf8_lossy(&self.pending[..valid]));
                    match e.error_len() {
                        // Incomplete sequence at the end: wait for the next token.
                        None => {
                            self.pending.drain(..valid);
                            break;
                        }
                        // Invalid bytes: show a replacement character and go on.
                        Some(bad) => {
                            self.all.push(char::REPLACEMENT_CHARACTER);
                            self.pending.drain(..valid + bad);
                        }
                    }
                }
            }
        }
        let search_from = self
            .released
            .saturating_sub(self.stops.iter().map(String::len).max().unwrap_or(0));
        let search_from = floor_boundary(&self.all, search_from);
        let hit = self
            .stops
            .iter()
            .filter_map(|s| self.all[search_from..].find(s.as_str()).map(|p| p + search_from))
            .min();
        if let Some(pos) = hit {
            self.all.truncate(pos);
            self.pending.clear();
            let out = self.all[self.released.min(pos)..].to_string();
            self.released = self.all.len();
            return (out, true);
        }
        let hold = self
            .stops
            .iter()
            .map(|s| longest_suffix_prefix(&self.all, s))
            .max()
            .unwrap_or(0);
        let safe = floor_boundary(&self.all, self.all.len() - hold).max(self.released);
        let out = self.all[self.released..safe].to_string();
        self.released = safe;
        (out, false)
    }

    /// Releases whatever is still held (end of generation).
    pub fn finish(&mut self) -> String {
        if !self.pending.is_empty() {
            self.all.push_str(&String::from_utf8_lossy(&self.pending));
            self.pending.clear();
        }
        let out = self.all[self.released..].to_string();
        self.released = self.all.len();
        out
    }

    /// All text so far (after `finish`, the final text).
    pub fn text(&self) -> &str {
        &self.all
    }
}

fn floor_boundary(s: &str, mut i: usize) -> usize {
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// Length of the longest suffix of `text` that is a proper prefix of `stop`.
fn longest_suffix_prefix(text: &str, stop: &str) -> usize {
    (1..stop.len())
        .rev()
        .find(|&n| {
            n <= text.len() && text.is_char_boundary(text.len() - n) && stop.starts_with(&text[text.len() - n..])
        })
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(pieces: &[&[u8]], stops: &[&str]) -> (Vec<String>, String, bool) {
        let stops: Vec<String> = stops.iter().map(|s| s.to_string()).collect();
        let mut a = TextAssembler::new(&stops);
        let mut out = Vec::new();
        let mut stopped = false;
        for p in pieces {
            let (t, s) = a.push(p);
            out.push(t);
            if s {
                stopped = true;
                break;
            }
        }
        out.push(a.finish());
        (out, a.text().to_string(), stopped)
    }

    #[test]
    fn splits_utf8_across_tokens() {
        let e = "é".as_bytes();
        let (out, text, _) = run(&[b"caf", &e[..1], &e[1..], b"!"], &[]);
        assert_eq!(text, "café!");
        assert_eq!(out.concat(), "café!");
        assert_eq!(out[1], "");
    }

    #[test]
    fn stop_string_is_held_then_cut() {
        let (out, text, stopped) = run(&[b"Hello", b" wor", b"ld\nUs", b"er:", b" more"], &["\nUser:"]);
        assert!(stopped);
        assert_eq!(text, "Hello world");
        assert_eq!(out.concat(), "Hello world");
        assert!(!out.iter().any(|p| p.contains('\n')));
    }

    #[test]
    fn near_miss_is_released() {
        let (out, text, stopped) = run(&[b"a\nU", b"nder"], &["\nUser:"]);
        assert!(!stopped);
        assert_eq!(text, "a\nUnder");
        assert_eq!(out.concat(), "a\nUnder");
    }
}
