//! A lane that starts with exactly the prompt of a running lane on the same model and stack
//! (seed, sampling or temperature comparisons, the window's "Run all" on one prompt) takes
//! that lane's prompt cells and first logits instead of decoding the prompt again, so its first
//! token comes about when the first lane's does.
//!
//! The copy is exact: the donor decoded the same tokens in the same batches on a context made
//! the same way (the [`ShareKey`]), and ggml computes each value the same way every time, so
//! the cells and logits are the bits this lane's own prefill would have written. The cells
//! land at positions 0.. in order in the lane's emptied context, as its own decode puts them.
//! Only whole prompts are shared: decoding just the tail of a prompt after a copied prefix
//! runs other batch sizes, and llama.cpp's kernels for one row and for many (FA's tiled path
//! from 64 rows, tinyBLAS) round differently.

use std::path::PathBuf;
use std::rc::Rc;

use super::generate::Generation;
use super::*;

/// What must match for two lanes' computations to be the same bits: the model and its offload,
/// the context's size, threads and sequences, and the adapter stack with its scales. Prompts
/// are copied under it; pools (`pool.rs`) batch under it where the stack is empty.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct ShareKey {
    pub(super) model: (PathBuf, u32),
    pub(super) n_ctx: u32,
    pub(super) threads: i32,
    n_seq: u32,
    /// Each applied adapter (the model's one loaded copy, by address) and its scale as bits.
    stack: Vec<(usize, u32)>,
}

impl Worker {
    /// The key `lane` shares its prompt under; `None` for exclusive runs (their prefill is
    /// timed on its own) and where llama.cpp cannot move a sequence's cells.
    pub(super) fn share_key(&self, lane: LaneId, exclusive: bool) -> Option<ShareKey> {
        let l = self.lanes.get(&lane)?;
        if exclusive || !l.model.model.kv_moves_between_contexts() {
            return None;
        }
        Some(ShareKey {
            model: (l.model.info.path.clone(), l.model.info.gpu_layers),
            n_ctx: l.ctx.n_ctx(),
            threads: self.lane_threads(&l.spec),
            n_seq: l.n_seq,
            stack: l
                .active
                .iter()
                .map(|(a, scale)| (Rc::as_ptr(a) as usize, scale.to_bits()))
                .collect(),
        })
    }

    /// Puts the prompt cells of a running generation with the same key and prompt into
    /// `lane`'s emptied context; returns the logits its prefill ended with (`None`: nothing
    /// copied, the context is empty again and the lane decodes its prompt itself).
    pub(super) fn copy_prompt(
        &mut self,
        lane: LaneId,
        key: &ShareKey,
        tokens: &[i32],
        running: &[Generation],
    ) -> Option<Rc<[f32]>> {
        let donor = running
            .iter()
            .find(|g| g.lane != lane && g.share_key() == Some(key) && g.prompt() == tokens)?;
        let logits = Rc::clone(donor.first_logits()?);
        // The donor's own context holds its prompt at positions 0.. (it may decode in a pool
        // now: moving there copies the cells and leaves these).
        let state = self.lanes.get(&donor.lane)?.ctx.seq_state(0).ok()?;
        let target = self.lanes.get_mut(&lane)?;
        let n = i32::try_from(tokens.len()).ok()?;
        if target.ctx.set_seq_state(0, &state).is_err() || !target.ctx.truncate_seq(0, n) {
            target.ctx.clear();
            return None;
        }
        tracing::debug!("lane {lane}: {n} prompt tokens copied from lane {}", donor.lane);
        Some(logits)
    }
}
