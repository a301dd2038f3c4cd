//! A sampler chain built from [`Sampling`] settings.

use std::ptr::NonNull;

use super::Context;
use crate::protocol::Sampling;

/// A llama.cpp sampler chain.
pub struct Sampler {
    ptr: NonNull<llama_cpp_sys_2::llama_sampler>,
}

impl Sampler {
    /// Builds the chain: penalties, then greedy (temperature 0) or top-k, top-p, min-p,
    /// temperature and a seeded draw.
    pub fn new(s: &Sampling, n_vocab: i32) -> Option<Self> {
        // SAFETY: each init returns a new sampler that the chain takes ownership of.
        unsafe {
            let chain =
                llama_cpp_sys_2::llama_sampler_chain_init(llama_cpp_sys_2::llama_sampler_chain_default_params());
            let chain = NonNull::new(chain)?;
            let add = |smpl: *mut llama_cpp_sys_2::llama_sampler| {
                if !smpl.is_null() {
                    llama_cpp_sys_2::llama_sampler_chain_add(chain.as_ptr(), smpl);
                }
            };
            if (s.repeat_penalty - 1.0).abs() > f32::EPSILON {
                add(llama_cpp_sys_2::llama_sampler_init_penalties(
                    n_vocab,
                    s.repeat_last_n,
                    s.repeat_penalty,
                    0.0,
                    0.0,
                ));
            }
            if s.temperature <= 0.0 {
                add(llama_cpp_sys_2::llama_sampler_init_greedy());
            } else {
                if s.top_k > 0 {
                    add(llama_cpp_sys_2::llama_sampler_init_top_k(s.top_k));
                }
                if s.top_p < 1.0 {
                    add(llama_cpp_sys_2::llama_sampler_init_top_p(s.top_p, 1));
                }
                if s.min_p > 0.0 {
                    add(llama_cpp_sys_2::llama_sampler_init_min_p(s.min_p, 1));
                }
                add(llama_cpp_sys_2::llama_sampler_init_temp(s.temperature));
                add(llama_cpp_sys_2::llama_sampler_init_dist(s.seed));
            }
            Some(Self { ptr: chain })
        }
    }

    /// Samples from output `idx` of the last decode and accepts the token.
    pub fn sample(&mut self, ctx: &Context, idx: i32) -> i32 {
        // SAFETY: both are alive; llama_sampler_sample also accepts the token.
        unsafe { llama_cpp_sys_2::llama_sampler_sample(self.ptr.as_ptr(), ctx.as_ptr(), idx) }
    }

    /// Samples from logits kept from an earlier decode and accepts the token, as
    /// [`Sampler::sample`] does with a context's (llama.cpp's `llama_sampler_sample` builds the
    /// same candidate list from them); `None` if the chain selected nothing.
    pub fn sample_logits(&mut self, logits: &[f32]) -> Option<i32> {
        let mut cur: Vec<llama_cpp_sys_2::llama_token_data> = (0..)
            .zip(logits)
            .map(|(id, &logit)| llama_cpp_sys_2::llama_token_data { id, logit, p: 0.0 })
            .collect();
        let mut arr = llama_cpp_sys_2::llama_token_data_array {
            data: cur.as_mut_ptr(),
            size: cur.len(),
            selected: -1,
            sorted: false,
        };
        // SAFETY: the chain is alive; `arr` points into `cur`, which outlives the calls. The
        // samplers may point `arr.data` elsewhere, so the selection is read through it.
        unsafe {
            llama_cpp_sys_2::llama_sampler_apply(self.ptr.as_ptr(), &mut arr);
            let selected = usize::try_from(arr.selected).ok().filter(|&i| i < arr.size)?;
            let token = (*arr.data.add(selected)).id;
            llama_cpp_sys_2::llama_sampler_accept(self.ptr.as_ptr(), token);
            Some(token)
        }
    }

    /// Feeds prompt tokens to stateful samplers (repetition penalty).
    pub fn accept(&mut self, token: i32) {
        // SAFETY: the chain is alive.
        unsafe { llama_cpp_sys_2::llama_sampler_accept(self.ptr.as_ptr(), token) }
    }
}

impl Drop for Sampler {
    fn drop(&mut self) {
        // SAFETY: we own the chain (and through it, its samplers).
        unsafe { llama_cpp_sys_2::llama_sampler_free(self.ptr.as_ptr()) }
    }
}
