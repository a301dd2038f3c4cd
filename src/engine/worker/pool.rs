//! Generations on lanes that share a model, a context length and a thread count, with no
//! adapters, decode in one batch: a shared context with a sequence each and one `llama_decode`
//! per step for all of them. Lanes with adapters keep their own contexts and take turns (see
//! [`Worker::pool_key`] for why: batched, their text would change).
//!
//! A generation always starts on its own lane's context (prefill and first token exactly as
//! when it runs alone). Once two or more with the same key are running, each moves into a pool
//! by copying its sequence's KV cells byte for byte, so what it computes next does not change,
//! and from then on its tokens go into the shared decode. A pool is freed when its last
//! sequence ends.
//!
//! Nothing in a pool is freed before that: a sequence that ends keeps its cells and its seat
//! (sequence id) is not given again. llama.cpp puts a new token in the first free cell, and
//! attention sums a sequence's cells in cell order; when an ended sequence's cells were freed,
//! the others' next tokens filled those holes before their earlier cells, the sums ran in
//! another order, probabilities changed in their last bits and a greedy text changed after a
//! few dozen tokens (tested). With no holes every sequence's cells stay in position order, as
//! on its lane's own context, and its probabilities are bit for bit the same as alone.

use std::collections::BTreeMap;

use super::generate::Generation;
use super::llama::SeqToken;
use super::prompt_copy::ShareKey;
use super::*;

/// Most sequences one pool holds.
pub(super) const MAX_SEATS: u32 = 16;

/// Most sequences a pool holds on a model with repacked weights: llama.cpp's repacked CPU
/// kernels multiply four rows or more with a GEMM and fewer with the one-row GEMV, each row on
/// its own (ggml-cpu/repack.cpp, "If there are more than three rows in src1, use gemm"), so a
/// step of at most three sequences computes every row as a lane alone does.
pub(super) const REPACKED_MAX_SEATS: u32 = 3;

/// KV cells are allocated in blocks of this many (llama.cpp pads contexts to 256 too).
const CELL_BLOCK: u32 = 256;

/// Pool handle, unique for the worker's life.
pub(super) type PoolId = u64;

/// What generations must have in common to decode in one batch: what makes two lanes compute
/// the same bits ([`ShareKey`]), with no adapters (see [`Worker::pool_key`]).
pub(super) type PoolKey = ShareKey;

/// One shared context and who sits in it.
pub(super) struct Pool {
    /// Declared first: freed before the model it uses.
    ctx: Context,
    key: PoolKey,
    /// Index = sequence id; `None` once its generation ended (never reused, see above).
    seats: Vec<Option<JobId>>,
    /// Cells promised to every seat ever taken, ended ones included.
    promised_cells: u32,
    cells: u32,
    /// Seats it may ever give ([`MAX_SEATS`], or [`REPACKED_MAX_SEATS`]).
    max_seats: u32,
    _model: Rc<LoadedModel>,
}

impl Pool {
    /// The next unused seat, if one is left and the cells for `budget` are.
    fn free_seat(&self, budget: u32) -> Option<usize> {
        let fits = self.promised_cells.saturating_add(budget) <= self.cells;
        (fits && self.seats.len() < self.max_seats as usize).then_some(self.seats.len())
    }

    /// The context the members decode in.
    pub(super) fn ctx(&self) -> &Context {
        &self.ctx
    }
}

/// The worker's pools.
#[derive(Default)]
pub(super) struct Pools {
    by_id: BTreeMap<PoolId, Pool>,
    next: PoolId,
}

impl Pools {
    pub(super) fn get(&self, id: PoolId) -> Option<&Pool> {
        self.by_id.get(&id)
    }

    /// Ends a generation's seat (its cells stay, see above); the pool goes when no seat is
    /// taken.
    pub(super) fn leave(&mut self, id: PoolId, seq: i32) {
        let Some(pool) = self.by_id.get_mut(&id) else { return };
        if let Some(seat) = usize::try_from(seq).ok().and_then(|s| pool.seats.get_mut(s)) {
            *seat = None;
        }
        if pool.seats.iter().all(Option::is_none) {
            self.by_id.remove(&id);
        }
    }

    /// Drops every pool on the model at `path` (before the model is unloaded).
    pub(super) fn forget_model(&mut self, path: &Path) {
        self.by_id.retain(|_, p| p.key.model.0 != path);
    }

    /// One decode of every token in `batch` (a token per sequence) in pool `id`.
    pub(super) fn decode(&mut self, id: PoolId, batch: &[SeqToken]) -> Result<(), LlamaError> {
        match self.by_id.get_mut(&id) {
            Some(p) => p.ctx.decode_sequences(batch),
            None => Err(LlamaError::Decode("the shared context is gone".into())),
        }
    }
}

impl Worker {
    /// The key a generation on `lane` batches under, or `None` if it must run on its own
    /// context: exclusive runs, a model whose cache cannot move between contexts, lanes with
    /// adapters and models with float weight matrices. llama.cpp multiplies an f32/f16/bf16
    /// matrix by a single column with ggml's dot product and by two or more with tinyBLAS
    /// (`llamafile_sgemm` refuses n < 2), which sums in another order: batched, a greedy text
    /// with an adapter changed after 20 tokens, and an F16 model's probabilities changed at
    /// the first batched step (both tested). Quantized weights give the same sums either way
    /// (tested bit for bit with Q4_1 and Q8_0), and repacked ones (Q4_0, Q4_K, IQ4_NL) in
    /// steps of at most [`REPACKED_MAX_SEATS`] rows (tested with Q4_0; with six sequences in
    /// one step a Q4_0 lane's last probability once differed).
    pub(super) fn pool_key(&self, lane: LaneId, exclusive: bool) -> Option<PoolKey> {
        let l = self.lanes.get(&lane)?;
        if !l.active.is_empty() || has_float_matrix(&l.model.header) {
            return None;
        }
        self.share_key(lane, exclusive)
    }

    /// Moves running generations (those `going` marks; the others are ending) into pools
    /// wherever two or more share a key. A generation that cannot move (no memory for a pool,
    /// no room in it) stays on its own context.
    pub(super) fn group(&mut self, running: &mut [Generation], going: &[bool]) {
        let going = |i: usize| going.get(i).copied().unwrap_or(false);
        for i in 0..running.len() {
            let Some(key) = running[i].pool_key().cloned() else {
                continue;
            };
            if running[i].seat.is_some() || !going(i) {
                continue;
            }
            let budget = running[i].kv_budget();
            let found = self
                .pools
                .by_id
                .iter()
                .find(|(_, p)| p.key == key && p.free_seat(budget).is_some())
                .map(|(id, _)| *id);
            let id = match found {
                Some(id) => id,
                None => {
                    let peers: Vec<u32> = running
                        .iter()
                        .enumerate()
                        .filter(|(j, g)| going(*j) && g.seat.is_none() && g.pool_key() == Some(&key))
                        .map(|(_, g)| g.kv_budget())
                        .collect();
                    if peers.len() < 2 {
                        continue;
                    }
                    match self.new_pool(&running[i], key, &peers) {
                        Some(id) => id,
                        None => continue,
                    }
                }
            };
            self.seat(&mut running[i], id);
        }
    }

    /// A pool sized for `peers` (their KV budgets) and as many again, so that generations
    /// starting later can join it.
    fn new_pool(&mut self, g: &Generation, key: PoolKey, peers: &[u32]) -> Option<PoolId> {
        let lane = self.lanes.get(&g.lane)?;
        let max_seats = if has_repacked_matrix(&lane.model.header) {
            REPACKED_MAX_SEATS
        } else {
            MAX_SEATS
        };
        let wanted: u32 = peers.iter().sum::<u32>().saturating_mul(2);
        let cells = wanted
            .div_ceil(CELL_BLOCK)
            .saturating_mul(CELL_BLOCK)
            .min(key.n_ctx.saturating_mul(max_seats));
        let kv_bytes = lane.model.model.kv_bytes_per_token() * u64::from(cells);
        if metrics::mem_available_bytes().is_some_and(|avail| kv_bytes > avail) {
            return None;
        }
        let ctx = Context::new_shared(&lane.model.model, cells, key.threads, max_seats).ok()?;
        let pool = Pool {
            ctx,
            key,
            seats: Vec::new(),
            promised_cells: 0,
            cells,
            max_seats,
            _model: Rc::clone(&lane.model),
        };
        let id = self.pools.next;
        self.pools.next += 1;
        self.pools.by_id.insert(id, pool);
        Some(id)
    }

    /// Copies the generation's cells from its lane's context into a free seat of pool `id`.
    fn seat(&mut self, g: &mut Generation, id: PoolId) {
        let budget = g.kv_budget();
        let (Some(lane), Some(pool)) = (self.lanes.get(&g.lane), self.pools.by_id.get_mut(&id)) else {
            return;
        };
        let Some(seat) = pool.free_seat(budget) else { return };
        let seq = i32::try_from(seat).unwrap_or(0);
        let moved = lane
            .ctx
            .seq_state(0)
            .and_then(|state| pool.ctx.set_seq_state(seq, &state));
        if moved.is_ok() {
            pool.seats.push(Some(g.job));
            pool.promised_cells = pool.promised_cells.saturating_add(budget);
            g.seat = Some((id, seq));
        }
    }
}

/// Whether a model has a weight matrix (two or more dimensions) stored as floats: ggml
/// multiplies those by one row and by several with different kernels (see
/// [`Worker::pool_key`]). One-dimensional tensors (norms, biases) are not multiplied so.
fn has_float_matrix(header: &GgufFile) -> bool {
    matrix_types(header).any(|name| matches!(name, "F32" | "F16" | "BF16"))
}

/// Whether llama.cpp repacks some of the model's weight matrices for its CPU kernels (Q4_0,
/// Q4_K, IQ4_NL on x86; the check holds where AMX turned repacking off too, so lanes behave
/// the same on every machine): those take the GEMM for four rows or more and the one-row GEMV
/// below, and a Q4_0 lane decoded in a step of six once differed from the lane alone at its
/// last probability (a clean-clone CI run of the bit-for-bit test), so their pools hold at most
/// [`REPACKED_MAX_SEATS`] sequences.
fn has_repacked_matrix(header: &GgufFile) -> bool {
    matrix_types(header).any(|name| matches!(name, "Q4_0" | "Q4_K" | "IQ4_NL"))
}

/// The storage type of every tensor with two or more dimensions above 1 (the ones ggml
/// multiplies as matrices).
fn matrix_types(header: &GgufFile) -> impl Iterator<Item = &str> {
    header
        .tensors
        .iter()
        .filter(|t| t.dims.iter().filter(|&&d| d > 1).count() >= 2)
        .map(|t| t.ggml_type.name)
}
