//! A context (`llama_context`): KV cache and compute buffers for one lane.

use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use super::{log::clear_recent, reason, LlamaError, Model};

/// Called by [`Context::decode_scored`] with a token index and the logits at it.
pub type OnLogits<'a> = dyn FnMut(usize, &[f32]) -> Result<(), LlamaError> + 'a;

/// A token of one sequence in a multi-sequence batch.
#[derive(Debug, Clone, Copy)]
pub struct SeqToken {
    /// The token.
    pub token: i32,
    /// Its position in its sequence.
    pub pos: i32,
    /// The sequence (below the context's `n_seq`).
    pub seq: i32,
    /// Keep its logits.
    pub logits: bool,
}

/// One lane's llama.cpp context. Must be dropped before its model.
pub struct Context {
    ptr: NonNull<llama_cpp_sys_2::llama_context>,
    batch: llama_cpp_sys_2::llama_batch,
    batch_capacity: usize,
    n_ctx: u32,
    /// Read by llama.cpp's abort callback while decoding (through a pointer into the Arc).
    abort: Arc<AtomicBool>,
}

unsafe extern "C" fn should_abort(data: *mut std::ffi::c_void) -> bool {
    // SAFETY: `data` points into the Arc owned by the context, alive while it decodes.
    let flag = unsafe { &*data.cast::<AtomicBool>() };
    flag.load(Ordering::Relaxed)
}

impl Context {
    /// Creates a context of `n_ctx` tokens on `model` for up to `n_seq` sequences, each with
    /// its own `n_ctx / n_seq` cells.
    pub fn new(model: &Model, n_ctx: u32, n_threads: i32, n_batch: u32, n_seq: u32) -> Result<Self, LlamaError> {
        Self::create(model, n_ctx, n_threads, n_batch, n_seq, false)
    }

    /// A context whose `n_cells` KV cells are shared by up to `n_seq` sequences, each taking
    /// what it uses (a unified cache: no sequence is capped below the whole).
    pub fn new_shared(model: &Model, n_cells: u32, n_threads: i32, n_seq: u32) -> Result<Self, LlamaError> {
        Self::create(model, n_cells, n_threads, n_seq.max(1), n_seq, true)
    }

    fn create(
        model: &Model,
        n_ctx: u32,
        n_threads: i32,
        n_batch: u32,
        n_seq: u32,
        unified: bool,
    ) -> Result<Self, LlamaError> {
        clear_recent();
        let abort = Arc::new(AtomicBool::new(false));
        // SAFETY: params are plain data; the model is alive and outlives the context.
        let raw = unsafe {
            let mut p = llama_cpp_sys_2::llama_context_default_params();
            p.n_ctx = n_ctx;
            p.n_batch = n_batch;
            p.n_ubatch = n_batch.min(512);
            p.n_seq_max = n_seq.max(1);
            p.n_threads = n_threads;
            p.n_threads_batch = n_threads;
            p.kv_unified = unified;
            p.no_perf = true;
            llama_cpp_sys_2::llama_init_from_model(model.as_ptr(), p)
        };
        let ptr = NonNull::new(raw).ok_or_else(|| LlamaError::Context(reason("out of memory or bad parameters")))?;
        // SAFETY: the context is alive; the flag's box lives in the returned struct.
        unsafe {
            llama_cpp_sys_2::llama_set_abort_callback(
                ptr.as_ptr(),
                Some(should_abort),
                Arc::as_ptr(&abort).cast_mut().cast(),
            );
        }
        // llama.cpp may clamp the batch to the context; use what it chose.
        // SAFETY: plain query on a live context.
        let n_batch = unsafe { llama_cpp_sys_2::llama_n_batch(ptr.as_ptr()) }.clamp(1, n_batch);
        let batch_capacity = n_batch as usize;
        // SAFETY: allocates a batch of `n_batch` tokens, freed in Drop.
        let batch = unsafe { llama_cpp_sys_2::llama_batch_init(i32::try_from(n_batch).unwrap_or(512), 0, 1) };
        // SAFETY: plain query on a live context.
        let n_ctx = unsafe { llama_cpp_sys_2::llama_n_ctx(ptr.as_ptr()) };
        Ok(Self {
            ptr,
            batch,
            batch_capacity,
            n_ctx,
            abort,
        })
    }

    pub(super) fn as_ptr(&self) -> *mut llama_cpp_sys_2::llama_context {
        self.ptr.as_ptr()
    }

    /// Context length in tokens.
    pub fn n_ctx(&self) -> u32 {
        self.n_ctx
    }

    /// The flag that aborts a running decode when set.
    pub fn abort_flag(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.abort)
    }

    /// Empties the KV cache.
    pub fn clear(&mut self) {
        // SAFETY: the context is alive.
        unsafe {
            let mem = llama_cpp_sys_2::llama_get_memory(self.ptr.as_ptr());
            llama_cpp_sys_2::llama_memory_clear(mem, true);
        }
    }

    /// Drops one sequence's cells.
    pub fn clear_seq(&mut self, seq: i32) {
        // SAFETY: the context is alive; removing a whole sequence cannot fail.
        unsafe {
            let mem = llama_cpp_sys_2::llama_get_memory(self.ptr.as_ptr());
            llama_cpp_sys_2::llama_memory_seq_rm(mem, seq, -1, -1);
        }
    }

    /// Drops sequence `seq`'s cells from position `from` on; false if llama.cpp cannot cut
    /// the sequence there.
    pub fn truncate_seq(&mut self, seq: i32, from: i32) -> bool {
        // SAFETY: the context is alive.
        unsafe {
            let mem = llama_cpp_sys_2::llama_get_memory(self.ptr.as_ptr());
            llama_cpp_sys_2::llama_memory_seq_rm(mem, seq, from, -1)
        }
    }

    /// The KV cells of sequence `seq`, as bytes [`Context::set_seq_state`] reads back.
    pub fn seq_state(&self, seq: i32) -> Result<Vec<u8>, LlamaError> {
        // SAFETY: the context is alive; the buffer holds the size llama.cpp asked for.
        unsafe {
            let size = llama_cpp_sys_2::llama_state_seq_get_size(self.ptr.as_ptr(), seq);
            let mut buf = vec![0u8; size];
            let written = llama_cpp_sys_2::llama_state_seq_get_data(self.ptr.as_ptr(), buf.as_mut_ptr(), size, seq);
            if written == 0 || written > size {
                return Err(LlamaError::Decode(reason("could not read a sequence's KV cells")));
            }
            buf.truncate(written);
            Ok(buf)
        }
    }

    /// Puts a sequence's cells (from [`Context::seq_state`] of a context on the same model) in
    /// as sequence `seq`, which must be empty.
    pub fn set_seq_state(&mut self, seq: i32, state: &[u8]) -> Result<(), LlamaError> {
        clear_recent();
        // SAFETY: the context is alive; llama.cpp reads at most `state.len()` bytes.
        let read =
            unsafe { llama_cpp_sys_2::llama_state_seq_set_data(self.ptr.as_ptr(), state.as_ptr(), state.len(), seq) };
        if read == 0 {
            self.clear_seq(seq);
            return Err(LlamaError::Decode(reason("no room for a sequence's KV cells")));
        }
        Ok(())
    }

    /// Decodes `tokens` at positions starting at `pos0`, in batches. With `all_logits`, logits
    /// are kept for every token of the last batch; otherwise only for the last token.
    /// Returns the number of tokens in the last batch.
    pub fn decode(&mut self, tokens: &[i32], pos0: i32, all_logits: bool) -> Result<usize, LlamaError> {
        let mut last = 0;
        let chunks: Vec<&[i32]> = tokens.chunks(self.batch_capacity.max(1)).collect();
        let n_chunks = chunks.len();
        for (ci, chunk) in chunks.into_iter().enumerate() {
            let is_last_chunk = ci + 1 == n_chunks;
            let base = pos0 + i32::try_from(ci * self.batch_capacity).unwrap_or(i32::MAX);
            let n = chunk.len();
            self.decode_batch(chunk, base, &|i| is_last_chunk && (all_logits || i + 1 == n))?;
            last = n;
        }
        Ok(last)
    }

    /// Reads `tokens` from position 0 on an empty cache, in batches, and hands the logits of
    /// every position `i` in `first..tokens.len()-1` (each predicts token `i + 1`) to
    /// `on_logits(i, logits)`, in order (llama-perplexity's scoring, and teacher forcing).
    pub fn decode_scored(
        &mut self,
        tokens: &[i32],
        first: usize,
        n_vocab: usize,
        on_logits: &mut OnLogits<'_>,
    ) -> Result<(), LlamaError> {
        self.clear();
        let last = tokens.len().saturating_sub(1);
        let cap = self.batch_capacity.max(1);
        for (ci, chunk) in tokens.chunks(cap).enumerate() {
            let batch_start = ci * cap;
            let pos0 = i32::try_from(batch_start).unwrap_or(i32::MAX);
            let scored = |i: usize| (first..last).contains(&(batch_start + i));
            self.decode_batch(chunk, pos0, &scored)?;
            for i in (0..chunk.len()).filter(|&i| scored(i)) {
                let logits = self
                    .logits(i, n_vocab)
                    .ok_or_else(|| LlamaError::Decode("llama.cpp returned no logits".into()))?;
                on_logits(batch_start + i, logits)?;
            }
        }
        Ok(())
    }

    /// Decodes tokens of several sequences, each at its own position, in batches of at most
    /// the batch capacity (llama.cpp computes each batch in one pass).
    pub fn decode_sequences(&mut self, tokens: &[SeqToken]) -> Result<(), LlamaError> {
        for chunk in tokens.chunks(self.batch_capacity.max(1)) {
            // SAFETY: the batch arrays hold `batch_capacity` entries and the chunk fits.
            unsafe {
                let b = &mut self.batch;
                b.n_tokens = i32::try_from(chunk.len()).unwrap_or(0);
                for (i, t) in chunk.iter().enumerate() {
                    *b.token.add(i) = t.token;
                    *b.pos.add(i) = t.pos;
                    *b.n_seq_id.add(i) = 1;
                    *(*b.seq_id.add(i)) = t.seq;
                    *b.logits.add(i) = i8::from(t.logits);
                }
            }
            self.run_batch()?;
        }
        Ok(())
    }

    /// Decodes one batch (at most `batch_capacity` tokens) at positions from `pos0`, keeping
    /// logits for the indices `want_logits` accepts.
    fn decode_batch(
        &mut self,
        chunk: &[i32],
        pos0: i32,
        want_logits: &dyn Fn(usize) -> bool,
    ) -> Result<(), LlamaError> {
        let n = chunk.len().min(self.batch_capacity);
        // SAFETY: the batch arrays hold `batch_capacity` entries and n <= that.
        unsafe {
            let b = &mut self.batch;
            b.n_tokens = i32::try_from(n).unwrap_or(0);
            for (i, &tok) in chunk[..n].iter().enumerate() {
                *b.token.add(i) = tok;
                *b.pos.add(i) = pos0.saturating_add(i32::try_from(i).unwrap_or(i32::MAX));
                *b.n_seq_id.add(i) = 1;
                *(*b.seq_id.add(i)) = 0;
                *b.logits.add(i) = i8::from(want_logits(i));
            }
        }
        self.run_batch()
    }

    /// Decodes the batch as filled.
    fn run_batch(&mut self) -> Result<(), LlamaError> {
        clear_recent();
        // SAFETY: context and batch are alive and consistent.
        let rc = unsafe { llama_cpp_sys_2::llama_decode(self.ptr.as_ptr(), self.batch) };
        match rc {
            0 => Ok(()),
            1 => Err(LlamaError::Decode("the context is full".into())),
            2 => Err(LlamaError::Decode("aborted".into())),
            other => Err(LlamaError::Decode(reason(&format!("error code {other}")))),
        }
    }

    /// Logits of output `i` of the last decode (index into the last batch).
    pub fn logits(&self, i: usize, n_vocab: usize) -> Option<&[f32]> {
        let idx = i32::try_from(i).ok()?;
        // SAFETY: llama.cpp returns a pointer to n_vocab floats valid until the next decode, or null.
        unsafe {
            let p = llama_cpp_sys_2::llama_get_logits_ith(self.ptr.as_ptr(), idx);
            (!p.is_null()).then(|| std::slice::from_raw_parts(p, n_vocab))
        }
    }
}

impl Drop for Context {
    fn drop(&mut self) {
        // SAFETY: we own both; nothing else refers to them.
        unsafe {
            llama_cpp_sys_2::llama_batch_free(self.batch);
            llama_cpp_sys_2::llama_free(self.ptr.as_ptr());
        }
        super::release_free_memory();
    }
}
