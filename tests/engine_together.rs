//! Lanes together in the engine: streams that interleave with each lane's text as alone, one
//! decode batch for lanes on one model (late ones join), copied prompts, adapter stacks taking
//! turns, status answered mid-run, and every probability the same bits as a lane alone.

use std::time::Duration;

use crate::common::*;
use nanolab::engine::EngineClient;
use nanolab::protocol::*;

/// Sends every generation at once and reads events until each has ended: the events in the
/// order they arrived, and each run's stats in the order sent.
fn send_together(
    c: &mut EngineClient,
    lanes: &[LaneSpec],
    prompt: &str,
    max_tokens: u32,
    exclusive: bool,
) -> (Vec<Event>, Vec<RunStats>) {
    let jobs: Vec<JobId> = lanes
        .iter()
        .map(|spec| {
            let job = c.next_job();
            c.send(&Request::Generate {
                job,
                lane: spec.clone(),
                prompt: Prompt::Raw { text: prompt.into() },
                sampling: greedy(max_tokens),
                top_n: 0,
                exclusive,
            })
            .unwrap();
            job
        })
        .collect();
    let mut events = Vec::new();
    let mut ends = std::collections::HashMap::new();
    wait_for(Duration::from_secs(120), || {
        let ev = c.events().recv_timeout(Duration::from_millis(100)).ok()?;
        if ev.is_terminal() {
            ends.insert(ev.job().unwrap(), stats(&ev));
        }
        events.push(ev);
        (ends.len() == jobs.len()).then_some(())
    })
    .expect("every generation ended");
    (events, jobs.iter().map(|j| ends[j].clone()).collect())
}

/// Positions (in arrival order) of a lane's first and last token events.
fn token_span(events: &[Event], of: LaneId) -> (usize, usize) {
    let at: Vec<usize> = events
        .iter()
        .enumerate()
        .filter_map(|(i, e)| matches!(e, Event::Token { lane, .. } if *lane == of).then_some(i))
        .collect();
    (*at.first().expect("lane streamed"), *at.last().expect("lane streamed"))
}

#[test]
fn lanes_stream_together_with_the_same_greedy_text_as_alone() {
    let model = demo_model();
    let caps = AdapterSpec {
        path: caps_adapter(),
        scale: 1.0,
    };
    let mut c = client();
    let prompt = "Write a list of fruits:\n1.";
    let lanes = [
        lane(1, &model, 512, vec![]),
        lane(2, &model, 512, vec![caps]),
        lane(3, &model, 512, vec![]),
    ];
    let alone: Vec<String> = lanes
        .iter()
        .map(|l| stats(&generate(&mut c, l.clone(), prompt, greedy(40)).1).text)
        .collect();
    assert_ne!(alone[0], alone[1], "the adapter should change the text");

    let (events, together) = send_together(&mut c, &lanes, prompt, 40, false);
    for (i, s) in together.iter().enumerate() {
        assert_eq!(s.text, alone[i], "lane {} changed when run beside the others", i + 1);
        assert_eq!(s.lanes_together, 3, "lane {}", i + 1);
        // Lanes 1 and 3 share model and stack: one decode per step for both. Lane 2's adapter
        // needs a context of its own.
        let batched = if i == 1 { 1 } else { 2 };
        assert_eq!(s.batched_with, batched, "lane {}", i + 1);
        assert!(s.generated_tokens > 1);
        // Its own decode calls are faster than the tokens arrived, with two lanes taking turns.
        assert!(
            s.decode_tokens_per_sec > s.seen_decode_tokens_per_sec,
            "own {} tok/s, seen {} tok/s",
            s.decode_tokens_per_sec,
            s.seen_decode_tokens_per_sec
        );
    }
    let spans: Vec<(usize, usize)> = (1..=3).map(|l| token_span(&events, l)).collect();
    for (i, s) in spans.iter().enumerate().skip(1) {
        assert!(
            s.0 < spans[0].1,
            "lane {} began only after lane 1 had ended: {spans:?}",
            i + 1
        );
    }

    // One lane at a time: each waits for the one before it, and says it ran alone.
    let (events, alone_again) = send_together(&mut c, &lanes, prompt, 40, true);
    let spans: Vec<(usize, usize)> = (1..=3).map(|l| token_span(&events, l)).collect();
    assert!(spans[0].1 < spans[1].0 && spans[1].1 < spans[2].0, "{spans:?}");
    for (i, s) in alone_again.iter().enumerate() {
        assert_eq!(s.text, alone[i]);
        assert_eq!(s.lanes_together, 1);
    }
    // The last one waited for the two before it, and its time to first token says so.
    assert!(alone_again[2].ttft_ms > alone_again[0].decode_ms + alone_again[1].decode_ms);
}

#[test]
fn base_lanes_decode_in_one_batch_and_late_ones_join() {
    let model = demo_model();
    let mut c = client();
    let prompts = [
        "Write a list of fruits:\n1.",
        "The capital of France is",
        "def add(a, b):",
    ];
    let lanes: Vec<LaneSpec> = (1..=3).map(|l| lane(l, &model, 512, vec![])).collect();
    let alone: Vec<String> = lanes
        .iter()
        .zip(prompts)
        .map(|(l, p)| stats(&generate(&mut c, l.clone(), p, greedy(48)).1).text)
        .collect();
    // Lanes 1 and 2 start together; lane 3 is sent once lane 1 has streamed tokens, and joins.
    let mut jobs = Vec::new();
    let send = |c: &mut EngineClient, i: usize| {
        let job = c.next_job();
        c.send(&Request::Generate {
            job,
            lane: lanes[i].clone(),
            prompt: Prompt::Raw {
                text: prompts[i].into(),
            },
            sampling: greedy(48),
            top_n: 3,
            exclusive: false,
        })
        .unwrap();
        job
    };
    jobs.push(send(&mut c, 0));
    jobs.push(send(&mut c, 1));
    let mut ends = std::collections::HashMap::new();
    let mut tokens_seen = 0;
    wait_for(Duration::from_secs(120), || {
        let ev = c.events().recv_timeout(Duration::from_millis(100)).ok()?;
        if let Event::Token { lane: 1, prob, top, .. } = &ev {
            tokens_seen += 1;
            assert!(
                *prob > 0.0 && *prob <= 1.0 && top.len() == 3,
                "probabilities from the batch"
            );
            if tokens_seen == 5 {
                jobs.push(send(&mut c, 2));
            }
        }
        if ev.is_terminal() {
            ends.insert(ev.job().unwrap(), stats(&ev));
        }
        (ends.len() == 3 && jobs.len() == 3).then_some(())
    })
    .expect("every generation ended");
    for (i, job) in jobs.iter().enumerate() {
        let s = &ends[job];
        assert_eq!(s.text, alone[i], "lane {} changed in the batch", i + 1);
        assert!(s.batched_with >= 2, "lane {} decoded alone: {}", i + 1, s.batched_with);
    }
    // After the pool is gone, a lane alone decodes alone again, with the same text.
    let again = stats(&generate(&mut c, lanes[2].clone(), prompts[2], greedy(48)).1);
    assert_eq!((again.text.as_str(), again.batched_with), (alone[2].as_str(), 1));
}

#[test]
fn lanes_starting_with_the_same_prompt_copy_it_and_keep_their_text() {
    let model = demo_model();
    let mut c = client();
    let same = "The following is a list of the largest cities in Europe by population:\n1.";
    let other = "The following is a list of the largest cities in Europe by area:\n1.";
    let lanes: Vec<LaneSpec> = (1..=4).map(|l| lane(l, &model, 512, vec![])).collect();
    let prompt_of = |i: usize| if i == 3 { other } else { same };
    let alone: Vec<RunStats> = lanes
        .iter()
        .enumerate()
        .map(|(i, l)| stats(&generate(&mut c, l.clone(), prompt_of(i), greedy(40)).1))
        .collect();
    assert_ne!(
        alone[0].text, alone[3].text,
        "the two prompts should give different texts"
    );
    for s in &alone {
        assert_eq!(s.prompt_reused_tokens, 0, "a lane alone decodes its whole prompt");
    }
    let jobs: Vec<JobId> = lanes
        .iter()
        .enumerate()
        .map(|(i, spec)| {
            let job = c.next_job();
            c.send(&Request::Generate {
                job,
                lane: spec.clone(),
                prompt: Prompt::Raw {
                    text: prompt_of(i).into(),
                },
                sampling: greedy(40),
                top_n: 0,
                exclusive: false,
            })
            .unwrap();
            job
        })
        .collect();
    let mut ends = std::collections::HashMap::new();
    wait_for(Duration::from_secs(120), || {
        let ev = c.events().recv_timeout(Duration::from_millis(100)).ok()?;
        if ev.is_terminal() {
            ends.insert(ev.job().unwrap(), stats(&ev));
        }
        (ends.len() == jobs.len()).then_some(())
    })
    .expect("every generation ended");
    let together: Vec<&RunStats> = jobs.iter().map(|j| &ends[j]).collect();
    for (i, s) in together.iter().enumerate() {
        assert_eq!(
            s.text,
            alone[i].text,
            "lane {} changed with a copied prompt prefix",
            i + 1
        );
        assert_eq!(s.prompt_tokens, alone[i].prompt_tokens);
    }
    // Lane 1 decodes its prompt; lanes 2 and 3, running the very same prompt, copy its cells
    // and first logits; lane 4 shares only the first words, so it decodes its own.
    let n = alone[0].prompt_tokens;
    let reused: Vec<u32> = together.iter().map(|s| s.prompt_reused_tokens).collect();
    assert_eq!(reused, vec![0, n, n, 0]);
    assert!(together[0].prefill_tokens_per_sec > 0.0 && together[3].prefill_tokens_per_sec > 0.0);
    assert_eq!(
        together[1].prefill_tokens_per_sec, 0.0,
        "lane 2 decoded no prompt token"
    );
}

#[test]
fn lanes_with_one_adapter_stack_take_turns_and_keep_their_text() {
    // llama.cpp multiplies f32/f16 LoRA matrices by one column with its own dot product and by
    // several with tinyBLAS, which rounds differently: batched, this prompt's text changed
    // after 20 tokens. Such lanes keep their own contexts.
    let model = demo_model();
    let caps = AdapterSpec {
        path: caps_adapter(),
        scale: 1.0,
    };
    let mut c = client();
    let prompt = "The capital of France is";
    let lanes: Vec<LaneSpec> = (1..=2).map(|l| lane(l, &model, 512, vec![caps.clone()])).collect();
    let alone = stats(&generate(&mut c, lanes[0].clone(), prompt, greedy(48)).1);
    let (_, together) = send_together(&mut c, &lanes, prompt, 48, false);
    for s in &together {
        assert_eq!(
            (s.text.as_str(), s.batched_with, s.lanes_together),
            (alone.text.as_str(), 1, 2)
        );
    }
    // The prompt is copied on the same stack (an exact copy, not a batched decode).
    assert_eq!(
        (together[0].prompt_reused_tokens, together[1].prompt_reused_tokens),
        (0, alone.prompt_tokens)
    );
}

#[test]
fn status_is_answered_while_lanes_generate() {
    let mut c = client();
    let job = send_counting(&mut c, 400);
    let status_job = c.next_job();
    let mut sent_status = false;
    let mut order = Vec::new();
    wait_for(Duration::from_secs(120), || {
        let ev = c.events().recv_timeout(Duration::from_millis(100)).ok()?;
        if matches!(ev, Event::Token { .. }) && !sent_status {
            c.send(&Request::Status { job: status_job }).unwrap();
            sent_status = true;
        }
        if ev.is_terminal() {
            order.push(ev.job().unwrap());
        }
        (order.len() == 2).then_some(())
    })
    .expect("both ended");
    assert_eq!(order, vec![status_job, job], "status waited for the generation");
}

/// Every token of a run: id, probability and the top probabilities, as bits.
type TokenBits = Vec<(i32, u32, Vec<u32>)>;

#[test]
fn pooled_lanes_keep_every_probability_bit_for_bit_when_others_end_first() {
    // Chat prompts whose answers end after a few tokens beside one that runs on: once the short
    // ones end, the long one decodes on in the pool. Its probabilities must stay exactly those
    // of a run alone (freed cells once broke that: see engine/worker/pool.rs), also for lanes
    // whose prompt was copied from a running one (prompt_copy.rs). Six lanes, so
    // that llama.cpp's kernels for several rows (tinyBLAS for F16 and Q8_0, the repacked Q4_0
    // GEMM) meet its one-row ones.
    let ladder = crate::eval::ladder();
    for model in [demo_model(), ladder.q8.clone()] {
        pooled_bits_equal_alone(&model, 2..=6);
    }
    // Repacked Q4_0 weights go through llama.cpp's GEMM from four rows on (a lane once changed
    // at its last token in a step of six): its pools hold three lanes, two pools for six.
    pooled_bits_equal_alone(&ladder.q4, 2..=3);
    // An F16 model's lanes would change at the first batched step: they take turns instead.
    pooled_bits_equal_alone(&ladder.f16, 1..=1);
}

/// Runs the demo prompts alone and then on six lanes at once; every token's probabilities must
/// be the same bits, and the most sequences each lane decoded with must lie in `batched_with`.
fn pooled_bits_equal_alone(model: &std::path::Path, batched_with: std::ops::RangeInclusive<u32>) {
    let name = model.file_name().unwrap().to_string_lossy().to_string();
    let mut c = client();
    let prompts = [
        "What is the capital of France?",
        "What is 2 + 2?",
        "Name a primary colour.",
    ];
    let run = |c: &mut EngineClient, lanes: &[(LaneId, usize)]| {
        let jobs: Vec<JobId> = lanes
            .iter()
            .map(|&(l, p)| {
                let job = c.next_job();
                c.send(&Request::Generate {
                    job,
                    lane: lane(l, model, 512, vec![]),
                    prompt: Prompt::Chat {
                        system: None,
                        user: prompts[p].into(),
                    },
                    sampling: greedy(40),
                    top_n: 5,
                    exclusive: false,
                })
                .unwrap();
                job
            })
            .collect();
        let mut tokens: std::collections::HashMap<JobId, TokenBits> = Default::default();
        let mut ends = std::collections::HashMap::new();
        wait_for(Duration::from_secs(120), || {
            let ev = c.events().recv_timeout(Duration::from_millis(100)).ok()?;
            if let Event::Token {
                job,
                token_id,
                prob,
                top,
                ..
            } = &ev
            {
                let top = top.iter().map(|t| t.prob.to_bits()).collect();
                tokens.entry(*job).or_default().push((*token_id, prob.to_bits(), top));
            }
            if ev.is_terminal() {
                ends.insert(ev.job().unwrap(), stats(&ev));
            }
            (ends.len() == jobs.len()).then_some(())
        })
        .expect("every generation ended");
        jobs.iter()
            .map(|j| {
                let end: &RunStats = &ends[j];
                (
                    tokens.remove(j).unwrap_or_default(),
                    end.batched_with,
                    end.prompt_reused_tokens,
                )
            })
            .collect::<Vec<_>>()
    };
    let alone: Vec<TokenBits> = (0..3).map(|p| run(&mut c, &[(1, p)]).remove(0).0).collect();
    assert!(
        !name.contains("Q4_1") || alone[2].len() > alone[0].len() + 10 && alone[2].len() > alone[1].len() + 10,
        "{name}: the third answer should run well past the others: {:?}",
        alone.iter().map(Vec::len).collect::<Vec<_>>()
    );
    for round in 0..2 {
        let lanes: Vec<(LaneId, usize)> = (0..6).map(|i| (i as LaneId + 1, (i + round) % 3)).collect();
        for ((l, p), (tokens, got_batched, reused)) in lanes.iter().zip(run(&mut c, &lanes)) {
            // Lanes 4-6 run the prompts of lanes 1-3, which are still running: their prompts
            // are copied, and their first tokens come from the copied logits.
            assert_eq!(reused > 0, *l > 3, "{name}: lane {l} reused {reused} prompt tokens");
            assert!(
                batched_with.contains(&got_batched),
                "{name}: lane {l} decoded with {got_batched} sequences, not {batched_with:?}"
            );
            let first_change = tokens.iter().zip(&alone[*p]).position(|(a, b)| a != b);
            assert_eq!(
                (tokens.len(), first_change),
                (alone[*p].len(), None),
                "{name}, round {round}, lane {l}, prompt {p}: token count and first changed probability"
            );
        }
    }
}
