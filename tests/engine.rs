//! The engine on the demo model, through the child process: determinism, streaming, stats,
//! shared weights, cancel, and recovery from a killed engine.

use std::time::Duration;

use crate::common::*;
use nanolab::engine::EngineClient;
use nanolab::protocol::*;

#[test]
fn greedy_is_deterministic_and_streams_concatenate() {
    let model = demo_model();
    let mut c = client();
    let prompt = "The three primary colors are";
    let (events_a, end_a) = generate(&mut c, lane(1, &model, 512, vec![]), prompt, greedy(24));
    let (_, end_b) = generate(&mut c, lane(1, &model, 512, vec![]), prompt, greedy(24));
    let (a, b) = (stats(&end_a), stats(&end_b));
    assert!(!a.text.trim().is_empty(), "no text generated");
    assert_eq!(a.text, b.text, "greedy output changed between runs");
    let streamed: String = events_a
        .iter()
        .filter_map(|e| match e {
            Event::Token { text, .. } => Some(text.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(streamed, a.text);
    // A fresh engine process gives the same text too.
    let mut c2 = client();
    let (_, end_c) = generate(&mut c2, lane(7, &model, 512, vec![]), prompt, greedy(24));
    assert_eq!(stats(&end_c).text, a.text);
}

#[test]
fn sampled_output_depends_on_seed_only() {
    let model = demo_model();
    let mut c = client();
    let s = |seed| Sampling {
        temperature: 1.2,
        seed,
        max_tokens: 24,
        ..Sampling::default()
    };
    let t1 = stats(&generate(&mut c, lane(1, &model, 256, vec![]), "Once upon a time", s(1)).1).text;
    let t1b = stats(&generate(&mut c, lane(1, &model, 256, vec![]), "Once upon a time", s(1)).1).text;
    let t2 = stats(&generate(&mut c, lane(1, &model, 256, vec![]), "Once upon a time", s(2)).1).text;
    assert_eq!(t1, t1b);
    assert_ne!(t1, t2, "different seeds gave identical samples");
}

#[test]
fn stats_are_positive_and_consistent() {
    let model = demo_model();
    let mut c = client();
    let t0 = std::time::Instant::now();
    let (events, end) = generate(
        &mut c,
        lane(1, &model, 1024, vec![]),
        "Write a list of fruits:\n1.",
        greedy(32),
    );
    let wall_ms = t0.elapsed().as_secs_f64() * 1000.0;
    let s = stats(&end);
    assert_eq!(s.stop_reason, StopReason::MaxTokens);
    assert_eq!(s.generated_tokens, 32);
    let token_events = events
        .iter()
        .filter(|e| matches!(e, Event::Token { token_id, .. } if *token_id >= 0))
        .count();
    assert_eq!(token_events, 32);
    assert!(s.load_ms > 0.0 && s.ttft_ms > 0.0 && s.prefill_ms > 0.0 && s.decode_ms > 0.0);
    assert!(s.prompt_tokens >= 5);
    // The engine's own clock against the test's: everything it timed happened inside the call,
    // so its rates are no faster than the test saw tokens arrive.
    assert!(
        s.load_ms + s.prefill_ms + s.decode_ms <= wall_ms,
        "engine timed {} ms inside a {wall_ms} ms call",
        s.load_ms + s.prefill_ms + s.decode_ms
    );
    assert!(s.decode_tokens_per_sec >= f64::from(s.generated_tokens - 1) * 1000.0 / wall_ms);
    // Per-token latencies (streamed with each token) and the run's totals are measured apart:
    // after the first token they add up to the decode time.
    let gaps_ms: f64 = events
        .iter()
        .filter_map(|e| match e {
            Event::Token { latency_ms, .. } => Some(*latency_ms),
            _ => None,
        })
        .skip(1)
        .sum();
    assert!(
        (gaps_ms / s.decode_ms - 1.0).abs() < 0.1,
        "token gaps sum to {gaps_ms} ms, decode {} ms",
        s.decode_ms
    );
    assert!(s.itl_p50_ms > 0.0 && s.itl_p50_ms <= s.itl_p95_ms);
    assert!(s.ttft_ms >= s.prefill_ms);
    // KV: f16 K and V, 30 layers x 192 wide, 1024 tokens.
    assert_eq!(s.lane.kv_bytes, 1024 * 30 * 192 * 2 * 2);
    assert!(s.lane.model.model_bytes > 80_000_000 && s.lane.model.model_bytes < 100_000_000);
    assert!(s.peak_rss_bytes >= s.rss_bytes && s.rss_bytes > 50_000_000);
    // Probabilities are probabilities, and the greedy token is the top-1.
    for e in &events {
        if let Event::Token {
            prob, top, token_id, ..
        } = e
        {
            if *token_id < 0 {
                continue;
            }
            assert!(*prob > 0.0 && *prob <= 1.0);
            assert_eq!(top.len(), 5);
            assert_eq!(top[0].token_id, *token_id, "greedy must pick the most likely token");
            assert!(top.windows(2).all(|w| w[0].prob >= w[1].prob));
        }
    }
    // A second run on the same lane costs no load.
    let s2 = stats(&generate(&mut c, lane(1, &model, 1024, vec![]), "Hello", greedy(4)).1);
    assert_eq!(s2.load_ms, 0.0);
    assert!(!s2.lane.context_created);
}

#[test]
fn stop_strings_end_generation_before_the_stop() {
    let model = demo_model();
    let mut c = client();
    let full = stats(&generate(&mut c, lane(1, &model, 512, vec![]), "Count: 1, 2, 3,", greedy(20)).1).text;
    // Stop at a piece of the greedy continuation that is not at its very start.
    let cut = full.char_indices().nth(6).map(|(i, _)| i).expect("long enough");
    let stop: String = full[cut..].chars().take(3).collect();
    let sampling = Sampling {
        stop: vec![stop.clone()],
        ..greedy(20)
    };
    let s = stats(&generate(&mut c, lane(1, &model, 512, vec![]), "Count: 1, 2, 3,", sampling).1);
    assert_eq!(s.stop_reason, StopReason::StopString);
    assert!(!s.text.contains(&stop));
    assert!(full.starts_with(&s.text));
}

#[test]
fn two_lanes_on_one_model_share_the_weights() {
    let model = demo_model();
    let mut c = client();
    let s1 = stats(&generate(&mut c, lane(1, &model, 256, vec![]), "Hi", greedy(4)).1);
    let before = status(&mut c);
    let s2 = stats(&generate(&mut c, lane(2, &model, 256, vec![]), "Hi", greedy(4)).1);
    let after = status(&mut c);
    assert_eq!(after.models.len(), 1, "the model must be loaded once");
    assert_eq!(after.lanes.len(), 2);
    assert_eq!(s2.load_ms, 0.0, "the second lane must not load the model again");
    assert!(s2.lane.context_created);
    let growth = after.rss_bytes.saturating_sub(before.rss_bytes);
    let weights = s1.lane.model.model_bytes;
    assert!(
        growth < weights / 2,
        "second lane grew RSS by {growth} bytes; weights are {weights} bytes (a second copy?)"
    );
}

#[test]
fn cancel_ends_the_job_marked_cancelled() {
    let mut c = client();
    let job = send_counting(&mut c, 1500);
    let mut tokens = 0;
    let end = wait_for(Duration::from_secs(60), || {
        let ev = c.events().recv_timeout(Duration::from_millis(100)).ok()?;
        match ev {
            Event::Token { .. } => {
                tokens += 1;
                if tokens == 3 {
                    c.send(&Request::Cancel { job }).unwrap();
                }
                None
            }
            e if e.is_terminal() => Some(e),
            _ => None,
        }
    })
    .expect("job ended");
    let s = stats(&end);
    assert_eq!(s.stop_reason, StopReason::Cancelled);
    assert!(s.generated_tokens < 1500);
}

/// An executable that runs `body` (a shell script) in place of the engine.
fn fake_engine(dir: &std::path::Path, body: &str) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let p = dir.join("fake-nanolab");
    std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    p
}

#[test]
fn sending_does_not_wait_for_the_engine_to_start_and_a_bad_start_is_an_error_event() {
    let dir = tempfile::tempdir().unwrap();
    // The real engine, started only once the flag file exists.
    let flag = dir.path().join("go");
    let exe = fake_engine(
        dir.path(),
        &format!(
            "while [ ! -e '{}' ]; do sleep 0.05; done; exec '{}' \"$@\"",
            flag.display(),
            exe().display()
        ),
    );
    let mut c = EngineClient::new(Some(exe));
    let job = c.next_job();
    c.send(&Request::Status { job }).unwrap();
    // send returned although the engine cannot have said it is ready: nothing has let it start.
    assert!(!flag.exists());
    assert!(c.events().try_recv().is_err());
    std::fs::write(&flag, "").unwrap();
    let ev = c
        .events()
        .recv_timeout(Duration::from_secs(60))
        .expect("status once started");
    assert!(
        matches!(
            ev,
            Event::Done {
                result: JobResult::Status { .. },
                ..
            }
        ),
        "{ev:?}"
    );
    assert!(c.system_info().contains("CPU"), "{}", c.system_info());

    // A child that answers with something else than Ready: the request gets an error event.
    let bad = tempfile::tempdir().unwrap();
    let mut c = EngineClient::new(Some(fake_engine(bad.path(), "echo 'not json'; sleep 30")));
    let job = c.next_job();
    c.send(&Request::Status { job }).unwrap();
    match c
        .events()
        .recv_timeout(Duration::from_secs(30))
        .expect("an error event")
    {
        Event::Error { job: j, message, .. } => {
            assert_eq!(j, job);
            assert!(
                message.contains("did not start") && message.contains("not json"),
                "{message}"
            );
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn killed_engine_is_reported_and_restarted() {
    let model = demo_model();
    let mut c = client();
    let job = send_counting(&mut c, 1500);
    let pid = c.pid().expect("engine running");
    let mut killed = false;
    let end = wait_for(Duration::from_secs(60), || {
        let ev = c.events().recv_timeout(Duration::from_millis(100)).ok()?;
        if matches!(ev, Event::Token { .. }) && !killed {
            // SAFETY-free: plain kill(2) on our own child.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            killed = true;
        }
        ev.is_terminal().then_some(ev)
    })
    .expect("an error arrives");
    match end {
        Event::Error { message, job: j, .. } => {
            assert_eq!(j, job);
            assert!(
                message.contains("engine stopped while generating on lane 1") && message.contains("signal 9"),
                "{message}"
            );
        }
        other => panic!("expected an error, got {other:?}"),
    }
    // No zombie: the child was reaped.
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    assert!(!stat.contains(") Z "), "engine child left as a zombie");
    // The next request starts a new engine and works.
    let s = stats(&generate(&mut c, lane(1, &model, 256, vec![]), "Hello", greedy(4)).1);
    assert!(s.generated_tokens > 0);
    assert_eq!(c.restarts(), 1);
    assert_ne!(c.pid(), Some(pid));
}

#[test]
fn prompt_longer_than_context_is_refused() {
    let model = demo_model();
    let mut c = client();
    let long = "word ".repeat(600);
    let (_, end) = generate(&mut c, lane(1, &model, 256, vec![]), &long, greedy(4));
    match end {
        Event::Error { message, .. } => assert!(message.contains("context holds 256"), "{message}"),
        other => panic!("expected an error, got {other:?}"),
    }
    // The engine is still fine.
    assert!(stats(&generate(&mut c, lane(1, &model, 256, vec![]), "Hi", greedy(2)).1).generated_tokens > 0);
}

#[test]
fn chat_mode_uses_the_template() {
    let model = demo_model();
    let mut c = client();
    let job = c.next_job();
    let end = c
        .call(
            &Request::Generate {
                job,
                lane: lane(1, &model, 512, vec![]),
                prompt: Prompt::Chat {
                    system: None,
                    user: "What is the capital of France?".into(),
                },
                sampling: greedy(16),
                top_n: 0,
                exclusive: false,
            },
            |_| {},
        )
        .unwrap();
    let s = stats(&end);
    assert!(s.text.contains("Paris"), "{}", s.text);
    // The template adds role markers, so the prompt is longer than the bare question.
    assert!(s.prompt_tokens > 10);
}
