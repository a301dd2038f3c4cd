//! The benchmark floor: a bare decode loop over `llama-cpp-2`'s safe API (as in the crate's
//! `simple` example), with no nanolab layer: no child process, no protocol, no wrappers.
//! `nanolab bench` runs it alternately with nanolab's engine and prints the ratio.

use std::num::NonZeroU32;
use std::path::Path;
use std::time::Instant;

use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::token::LlamaToken;

/// A model loaded through llama-cpp-2 for baseline runs.
pub struct Baseline {
    model: LlamaModel,
    threads: i32,
}

/// Deterministic pseudo-random token ids (llama-bench also feeds random tokens).
pub fn bench_tokens(n: usize, n_vocab: i32, seed: u64) -> Vec<i32> {
    let mut s = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
    (0..n)
        .map(|_| {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((s >> 33) % u64::try_from(n_vocab.max(1)).unwrap_or(1)) as i32
        })
        .collect()
}

impl Baseline {
    /// Why the baseline cannot run on this machine, if it cannot. llama-cpp-2's safe API has no
    /// switch for llama.cpp's extra weight buffers, and where this build uses AMX their matrix
    /// multiply crashes the process (the engine loads plain buffers there: `weight_repacking`).
    pub fn unavailable() -> Option<&'static str> {
        (!super::weight_repacking()).then_some(
            "no llama-cpp-2 baseline on this CPU: its safe API loads llama.cpp's AMX weight buffers, whose matrix multiply crashes here (SIGSEGV); nanolab loads plain buffers",
        )
    }

    /// Loads the model (CPU; `gpu_layers` as for nanolab).
    /// `gpu_layers` None: every layer where a GPU backend exists, as the engine does.
    pub fn load(path: &Path, threads: i32, gpu_layers: Option<u32>) -> anyhow::Result<Self> {
        super::llama::init_backend()?;
        let gpu_layers = gpu_layers.unwrap_or_else(super::default_gpu_layers);
        let backend = super::llama::backend().ok_or_else(|| anyhow::anyhow!("llama.cpp backend unavailable"))?;
        let params = LlamaModelParams::default().with_n_gpu_layers(gpu_layers);
        let model = LlamaModel::load_from_file(backend, path, &params)?;
        Ok(Self { model, threads })
    }

    fn context(&self, n_ctx: u32) -> anyhow::Result<llama_cpp_2::context::LlamaContext<'_>> {
        let backend = super::llama::backend().ok_or_else(|| anyhow::anyhow!("llama.cpp backend unavailable"))?;
        let params = LlamaContextParams::default()
            .with_n_ctx(NonZeroU32::new(n_ctx))
            .with_n_batch(512)
            .with_n_ubatch(512)
            .with_n_threads(self.threads)
            .with_n_threads_batch(self.threads);
        Ok(self.model.new_context(backend, params)?)
    }

    /// Prompt processing: tokens/s decoding `n` tokens in batches of 512.
    pub fn pp(&self, n: usize, seed: u64) -> anyhow::Result<f64> {
        let tokens = bench_tokens(n, self.model.n_vocab(), seed);
        let mut ctx = self.context(u32::try_from(n + 16).unwrap_or(u32::MAX))?;
        let mut batch = LlamaBatch::new(512, 1);
        let t0 = Instant::now();
        for (ci, chunk) in tokens.chunks(512).enumerate() {
            batch.clear();
            for (i, &t) in chunk.iter().enumerate() {
                let pos = (ci * 512 + i) as i32;
                batch.add(LlamaToken(t), pos, &[0], ci * 512 + i + 1 == n)?;
            }
            ctx.decode(&mut batch)?;
        }
        Ok(n as f64 / t0.elapsed().as_secs_f64())
    }

    /// Text generation: tokens/s decoding `n` tokens one at a time.
    pub fn tg(&self, n: usize, seed: u64) -> anyhow::Result<f64> {
        let tokens = bench_tokens(n, self.model.n_vocab(), seed);
        let mut ctx = self.context(u32::try_from(n + 16).unwrap_or(u32::MAX))?;
        let mut batch = LlamaBatch::new(1, 1);
        let t0 = Instant::now();
        for (i, &t) in tokens.iter().enumerate() {
            batch.clear();
            batch.add(LlamaToken(t), i as i32, &[0], true)?;
            ctx.decode(&mut batch)?;
        }
        Ok(n as f64 / t0.elapsed().as_secs_f64())
    }
}
