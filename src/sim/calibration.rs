//! The shipped profiles against the published numbers in `shared/research/devices.md`.

#[cfg(test)]
mod tests {
    use crate::sim::model::{sustained, ModelFacts, Workload};
    use crate::sim::profile::{all, DeviceProfile};

    fn profile(id: &str) -> DeviceProfile {
        all()
            .0
            .into_iter()
            .find(|p| p.id == id)
            .unwrap_or_else(|| panic!("profile {id} missing"))
    }

    /// Gemma3-1B 4-bit as LiteRT-LM ships it (557 MB), 26 layers, 1 KV head of 256.
    const GEMMA3_1B: ModelFacts = ModelFacts {
        parameters: 1_000_000_000,
        weight_bytes: 557_000_000,
        kv_bytes_per_token: 26 * 2 * 256 * 2,
        adapter_bytes: 0,
        adapter_parameters: 0,
    };
    /// Gemma 4 E2B 4-bit (about 1.5 GB of weights read per token; weakly sourced).
    const GEMMA4_E2B: ModelFacts = ModelFacts {
        parameters: 2_000_000_000,
        weight_bytes: 1_500_000_000,
        kv_bytes_per_token: 0,
        adapter_bytes: 0,
        adapter_parameters: 0,
    };

    fn run(
        p: &DeviceProfile,
        m: &ModelFacts,
        acc: &str,
        secs: f64,
        prompt: u64,
        gen: u64,
    ) -> crate::sim::SustainedReport {
        let pinned = p.accelerators.iter().position(|a| a.id == acc);
        assert!(pinned.is_some(), "{} has no {acc}", p.id);
        sustained(
            p,
            m,
            &Workload {
                prompt_tokens: prompt,
                gen_tokens: gen,
                gap_secs: 0.0,
                duration_secs: secs,
                pinned,
            },
        )
    }

    #[test]
    fn every_number_in_every_shipped_profile_has_a_source() {
        let (profiles, errors) = all();
        assert!(errors.is_empty(), "{errors:?}");
        assert!(profiles.len() >= 6);
        let measured = crate::sim::facts::this_machine(&GEMMA3_1B, 100.0, 20.0, "test");
        for p in profiles.iter().chain(std::iter::once(&measured)) {
            assert!(p.unsourced().is_empty(), "{}: no source for {:?}", p.id, p.unsourced());
        }
        assert!(measured
            .sources
            .iter()
            .any(|s| s.field == "accelerators.cpu.bandwidth_gbs" && s.text.contains("measured")));
    }

    #[test]
    fn s24_ultra_burst_decode_matches_litert_lm() {
        let p = profile("galaxy-s24-ultra");
        println!("| accelerator | published tok/s | simulated | error |");
        for (acc, published) in [("cpu", 43.6), ("gpu", 44.6)] {
            let r = run(&p, &GEMMA3_1B, acc, 30.0, 1024, 256);
            let err = (r.burst_tokens_per_sec - published) / published;
            println!(
                "| {acc} | {published} | {:.1} | {:+.1}% |",
                r.burst_tokens_per_sec,
                err * 100.0
            );
            assert!(err.abs() <= 0.15, "{acc}: {:.1} vs {published}", r.burst_tokens_per_sec);
        }
    }

    #[test]
    fn iphone_17_pro_sustained_runs_match_the_published_table() {
        let p = profile("iphone-17-pro");
        println!("| runtime | retained (pub / sim) | time to -25% s (pub / sim) |");
        for (acc, retained, t25) in [
            ("gpu-mlx", 0.38, 35.0),
            ("gpu-litert", 0.48, 40.0),
            ("npu-coreml", 0.67, 390.0),
        ] {
            let r = run(&p, &GEMMA4_E2B, acc, 600.0, 128, 100_000);
            let sim_t25 = r.time_to_minus_25_secs.unwrap_or(f64::INFINITY);
            println!(
                "| {acc} | {:.0}% / {:.0}% | {t25:.0} / {sim_t25:.0} |",
                retained * 100.0,
                r.retention * 100.0
            );
            assert!(
                (r.retention - retained).abs() <= 0.10,
                "{acc}: retention {:.2} vs {retained}",
                r.retention
            );
            assert!(
                (sim_t25 - t25).abs() <= 0.30 * t25,
                "{acc}: time to -25% {sim_t25:.0} s vs {t25} s"
            );
        }
    }
}
