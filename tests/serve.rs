//! `nanolab serve` end to end: the official openai Python client, greedy output against
//! `nanolab run`, KV never shared across adapter stacks, bad requests, the API key and bind
//! refusal, client disconnects, a full queue, an engine killed mid-stream, SIGTERM, and device
//! pacing. Every test starts a real server on 127.0.0.1 with a free port.

use crate::common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::common::servers::Server;
use crate::common::venv_python;

const MODEL: &str = "SmolLM2-135M-Instruct.Q4_1";

fn agent() -> ureq::Agent {
    ureq::Agent::new_with_config(
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(120)))
            .build(),
    )
}

/// POSTs a body (sent as is, so it may be broken JSON); returns status, Retry-After and body.
fn post_raw(s: &Server, path: &str, body: &str, key: Option<&str>) -> (u16, Option<String>, String) {
    let mut req = agent().post(s.url(path)).header("Content-Type", "application/json");
    if let Some(k) = key {
        req = req.header("Authorization", format!("Bearer {k}"));
    }
    let mut resp = req.send(body).unwrap();
    let retry = resp
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_string());
    (resp.status().as_u16(), retry, resp.body_mut().read_to_string().unwrap())
}

fn post(s: &Server, path: &str, body: &Value) -> (u16, Value) {
    let (status, _, text) = post_raw(s, path, &body.to_string(), None);
    (
        status,
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}")),
    )
}

fn get(s: &Server, path: &str, key: Option<&str>) -> (u16, Value) {
    let mut req = agent().get(s.url(path));
    if let Some(k) = key {
        req = req.header("Authorization", format!("Bearer {k}"));
    }
    let mut resp = req.call().unwrap();
    let status = resp.status().as_u16();
    (
        status,
        serde_json::from_str(&resp.body_mut().read_to_string().unwrap()).unwrap(),
    )
}

/// An OpenAI error object with every field OpenAI's clients read.
fn assert_error(v: &Value, param: Option<&str>) -> String {
    let e = &v["error"];
    for k in ["message", "type", "param", "code"] {
        assert!(e.get(k).is_some(), "error object lacks {k}: {v}");
    }
    if let Some(p) = param {
        assert_eq!(e["param"], p, "{v}");
    }
    e["message"].as_str().unwrap().to_string()
}

/// `nanolab run`'s greedy text for a raw prompt with these adapters.
fn run_text(args: &[&str]) -> String {
    let out = Command::new(common::exe())
        .args(["run", "--json", "--no-static", "-n", "24", "-m"])
        .arg(common::demo_model())
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    v["text"].as_str().unwrap().to_string()
}

/// A raw streaming request on its own connection; returns the socket after the first data line.
fn open_stream(s: &Server, body: &Value) -> BufReader<TcpStream> {
    let mut sock = TcpStream::connect(&s.addr).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let body = body.to_string();
    write!(
        sock,
        "POST /v1/completions HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
        s.addr,
        body.len()
    )
    .unwrap();
    let mut r = BufReader::new(sock);
    let mut line = String::new();
    loop {
        line.clear();
        assert!(r.read_line(&mut line).unwrap() > 0, "stream closed before any data");
        if line.starts_with("HTTP/1.1") {
            assert!(line.contains(" 200 "), "{line}");
        }
        if line.starts_with("data: ") {
            return r;
        }
    }
}

fn read_rest(mut r: BufReader<TcpStream>) -> String {
    let mut rest = String::new();
    let _ = r.read_to_string(&mut rest);
    rest
}

fn long_stream() -> Value {
    json!({"model": MODEL, "prompt": "1, 2, 3, 4, 5,", "temperature": 0, "max_tokens": 1500, "stream": true})
}

fn engine_pid(server_pid: i32) -> Option<i32> {
    let tasks = std::fs::read_dir(format!("/proc/{server_pid}/task")).ok()?;
    tasks
        .filter_map(Result::ok)
        .filter_map(|t| std::fs::read_to_string(t.path().join("children")).ok())
        .flat_map(|c| c.split_whitespace().map(str::to_string).collect::<Vec<_>>())
        .filter_map(|p| p.parse().ok())
        .next()
}

#[test]
fn the_official_openai_client_works_against_serve() {
    let s = Server::start(&["--api-key", "test-key"]);
    let out = Command::new(venv_python("py-openai"))
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/serve/openai_client.py"))
        .args([&s.url("/v1"), MODEL, "smollm2-caps", "test-key"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.trim_end().ends_with("all checks passed"),
        "{stdout}\n{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        s.stderr()
    );
}

#[test]
fn greedy_output_equals_nanolab_run_and_no_kv_crosses_stacks() {
    let s = Server::start(&[]);
    let prompt = "The three primary colours are";
    let completion = |model: &str| {
        let (status, v) = post(
            &s,
            "/v1/completions",
            &json!({"model": model, "prompt": prompt, "temperature": 0, "max_tokens": 24}),
        );
        assert_eq!(status, 200, "{v}");
        v["choices"][0]["text"].as_str().unwrap().to_string()
    };
    // Base, adapter, base again on one server: each equals a fresh process's run.
    let base1 = completion(MODEL);
    let caps = completion(&format!("{MODEL}+smollm2-caps"));
    let base2 = completion(MODEL);
    let caps_half = completion(&format!("{MODEL}+smollm2-caps:0.5"));
    let caps_path = common::caps_adapter();
    let caps_arg = caps_path.to_str().unwrap();
    assert_eq!(base1, run_text(&["-p", prompt]));
    assert_eq!(caps, run_text(&["-p", prompt, "-a", caps_arg]));
    assert_eq!(caps_half, run_text(&["-p", prompt, "-a", &format!("{caps_arg}:0.5")]));
    assert_eq!(
        base2, base1,
        "the base run after an adapter run differs: KV or adapter state leaked"
    );
    assert_ne!(caps, base1, "the adapter changed nothing");
    assert_ne!(caps_half, caps, "the scale changed nothing");

    // Chat: one user message equals `nanolab run --chat`.
    let (status, v) = post(
        &s,
        "/v1/chat/completions",
        &json!({"model": MODEL, "messages": [{"role": "user", "content": "Name a fruit."}], "temperature": 0, "max_tokens": 24}),
    );
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        v["choices"][0]["message"]["content"],
        run_text(&["--chat", "Name a fruit."])
    );
    // The timings extension is the engine's own count of this run.
    assert_eq!(v["timings"]["predicted_n"], v["usage"]["completion_tokens"]);
    assert_eq!(v["timings"]["prompt_n"], v["usage"]["prompt_tokens"]);
}

#[test]
fn bad_requests_get_openai_error_objects_and_the_server_keeps_serving() {
    let s = Server::start_with(&[], |dir| {
        // An adapter made for a model 64 wide: it must be refused for the 576-wide demo model.
        common::write_lora(&dir.join("adapters/misfit.gguf"), 64, 2);
    });
    let chat = |model: &str, extra: Value| {
        let mut body = json!({"model": model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4});
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        post(&s, "/v1/chat/completions", &body)
    };
    let (st, v) = chat(&format!("{MODEL}+misfit"), json!({}));
    assert_eq!(st, 400, "{v}");
    assert_eq!(v["error"]["code"], "adapter_incompatible");
    assert!(assert_error(&v, Some("model")).contains("misfit.gguf"), "{v}");
    let (_, models) = get(&s, "/v1/models", None);
    let ids: Vec<&str> = models["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert!(ids.contains(&format!("{MODEL}+smollm2-caps").as_str()), "{ids:?}");
    assert!(
        !ids.iter().any(|i| i.contains("misfit")),
        "an adapter that does not fit is listed: {ids:?}"
    );

    let (st, v) = chat("nope", json!({}));
    assert_eq!((st, v["error"]["code"].as_str()), (404, Some("model_not_found")), "{v}");
    for name in [
        "../models/x",
        "x/../../etc/passwd",
        &format!("{MODEL}+../adapters/smollm2-caps"),
    ] {
        let (st, v) = chat(name, json!({}));
        assert_eq!(st, 400, "{name}: {v}");
        assert!(assert_error(&v, Some("model")).contains("no paths"), "{v}");
    }
    let (st, v) = chat(MODEL, json!({"max_tokens": 0}));
    assert_eq!(st, 400);
    assert_error(&v, Some("max_tokens"));
    let (st, v) = chat(MODEL, json!({"max_tokens": 100_000}));
    assert_eq!(st, 400);
    assert!(assert_error(&v, Some("max_tokens")).contains("context"), "{v}");
    let (st, v) = chat(MODEL, json!({"temperature": -1}));
    assert_eq!(st, 400);
    assert_error(&v, Some("temperature"));
    let (st, v) = chat(MODEL, json!({"n": 3}));
    assert_eq!(st, 400);
    assert_error(&v, Some("n"));
    // Missing field, wrong type, broken JSON, not JSON at all.
    for body in [r#"{"model": "x"}"#, r#"{"model": 5, "messages": []}"#, "{", "hello"] {
        let (st, _, text) = post_raw(&s, "/v1/chat/completions", body, None);
        assert_eq!(st, 400, "{body}: {text}");
        assert_error(&serde_json::from_str(&text).unwrap(), None);
    }
    let (st, _, text) = post_raw(&s, "/v1/chat/completions", r#"{"model": "x"}"#, None);
    assert_eq!(st, 400);
    assert!(
        text.contains("messages"),
        "the error does not name the missing field: {text}"
    );
    // A body over the limit is refused from its declared length, before it is read. (Sending
    // the whole body first would race the server closing the connection after its answer.)
    let mut sock = TcpStream::connect(&s.addr).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        sock,
        "POST /v1/completions HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        s.addr,
        3 << 20
    )
    .unwrap();
    let reply = read_rest(BufReader::new(sock));
    assert!(reply.starts_with("HTTP/1.1 413"), "{reply}");
    let body = &reply[reply.find("\r\n\r\n").unwrap() + 4..];
    let json_start = body.find('{').unwrap();
    let json_end = body.rfind('}').unwrap();
    assert_error(&serde_json::from_str(&body[json_start..=json_end]).unwrap(), None);
    // A prompt longer than the context: the engine's refusal becomes a 400.
    let long = "word ".repeat(3000);
    let (st, v) = post(
        &s,
        "/v1/completions",
        &json!({"model": MODEL, "prompt": long, "max_tokens": 4}),
    );
    assert_eq!(st, 400, "{v}");
    assert!(assert_error(&v, None).contains("context"), "{v}");
    let (st, v) = get(&s, "/v1/nothing", None);
    assert_eq!(st, 404);
    assert_error(&v, None);
    // llama-server's /lora-adapters: a non-array body is refused as it refuses it.
    let (st, v) = post(&s, "/lora-adapters", &json!({"id": 0}));
    assert_eq!(st, 400);
    assert_eq!(assert_error(&v, None), "Request body must be an array");

    // After all of that the server still answers.
    let (st, v) = chat(MODEL, json!({"temperature": 0}));
    assert_eq!(st, 200, "{v}");
    assert!(!v["choices"][0]["message"]["content"].as_str().unwrap().is_empty());
}

#[test]
fn an_api_key_guards_v1_and_open_addresses_need_one() {
    let out = Command::new(common::exe())
        .args(["serve", "--host", "0.0.0.0", "--port", "0", "--model"])
        .arg(common::demo_model())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--api-key"));

    let s = Server::start(&["--api-key", "k3y"]);
    assert_eq!(get(&s, "/health", None).0, 200, "health needs no key");
    let (st, v) = get(&s, "/v1/models", None);
    assert_eq!(st, 401);
    assert_eq!(v["error"]["type"], "authentication_error");
    assert_eq!(get(&s, "/v1/models", Some("wrong")).0, 401);
    assert_eq!(get(&s, "/lora-adapters", None).0, 401);
    let (st, _, _) = post_raw(&s, "/v1/completions", r#"{"model": "x", "prompt": "a"}"#, None);
    assert_eq!(st, 401);
    let (st, v) = get(&s, "/v1/models", Some("k3y"));
    assert_eq!(st, 200);
    assert_eq!(v["data"][0]["id"], MODEL);
}

#[test]
fn a_client_that_leaves_cancels_its_generation_and_a_full_queue_says_503() {
    let s = Server::start(&["--queue", "1"]);
    let stream = open_stream(&s, &long_stream());
    // The one slot is taken: the next request is refused at once, with Retry-After.
    let (st, retry, text) = post_raw(
        &s,
        "/v1/completions",
        &json!({"model": MODEL, "prompt": "a", "max_tokens": 2}).to_string(),
        None,
    );
    assert_eq!(st, 503, "{text}");
    assert_eq!(retry.as_deref(), Some("1"));
    assert_error(&serde_json::from_str(&text).unwrap(), None);
    drop(stream);
    let freed = common::wait_for(Duration::from_secs(30), || {
        (get(&s, "/health", None).1["in_flight"] == 0).then_some(())
    });
    assert!(freed.is_some(), "the job of a client that left is still running");
    assert!(s.stderr().contains("went away: cancelling it"), "{}", s.stderr());
    let (st, v) = post(
        &s,
        "/v1/completions",
        &json!({"model": MODEL, "prompt": "a", "max_tokens": 2}),
    );
    assert_eq!(st, 200, "{v}");
}

#[test]
fn an_engine_killed_mid_stream_ends_that_stream_with_an_error_and_the_next_request_works() {
    let s = Server::start(&[]);
    let stream = open_stream(&s, &long_stream());
    let engine = engine_pid(s.pid()).expect("no engine child of the server");
    // SAFETY: kill(2) on a pid we just read from /proc; no memory is involved.
    assert_eq!(unsafe { libc::kill(engine, libc::SIGKILL) }, 0);
    let rest = read_rest(stream);
    assert!(
        rest.contains(r#"data: {"error""#),
        "no error event after the crash: {rest}"
    );
    assert!(rest.contains("engine stopped"), "{rest}");
    assert!(rest.contains("data: [DONE]"), "{rest}");
    let (st, v) = post(
        &s,
        "/v1/completions",
        &json!({"model": MODEL, "prompt": "Hello", "temperature": 0, "max_tokens": 4}),
    );
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["usage"]["completion_tokens"], 4);
    assert_ne!(engine_pid(s.pid()), Some(engine), "the engine was not restarted");
}

#[test]
fn sigterm_lets_the_stream_in_flight_finish_then_exits() {
    let mut s = Server::start(&[]);
    let stream = open_stream(
        &s,
        &json!({"model": MODEL, "prompt": "1, 2, 3,", "temperature": 0, "max_tokens": 48, "stream": true}),
    );
    // SAFETY: kill(2) on our own child's pid.
    assert_eq!(unsafe { libc::kill(s.pid(), libc::SIGTERM) }, 0);
    let rest = read_rest(stream);
    assert!(rest.contains(r#""finish_reason":"length""#), "{rest}");
    assert!(rest.contains("data: [DONE]"), "{rest}");
    let status = common::wait_for(Duration::from_secs(20), || s.child.try_wait().unwrap());
    assert!(status.is_some_and(|st| st.success()), "{status:?}\n{}", s.stderr());
    // Nothing listens any more.
    assert!(TcpStream::connect(&s.addr).is_err());
}

#[test]
fn a_simulated_device_paces_the_stream_and_keeps_its_temperature_across_requests() {
    // A phone 1000 times slower than a Pixel 9 Pro, so pacing is far slower than this machine even
    // while other tests load its cores.
    let profile =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/devices/pixel-9-pro.toml"))
            .unwrap()
            .replace(r#"id = "pixel-9-pro""#, r#"id = "slow-phone""#);
    let re = regex::Regex::new(r"bandwidth_gbs = ([0-9.]+)").unwrap();
    let profile = re.replace_all(&profile, |c: &regex::Captures| {
        format!("bandwidth_gbs = {}", c[1].parse::<f64>().unwrap() / 1000.0)
    });
    let s = Server::start_with(&[], |dir| {
        std::fs::create_dir(dir.join("devices")).unwrap();
        std::fs::write(dir.join("devices/slow-phone.toml"), profile.as_bytes()).unwrap();
    });
    let run = |paced: bool| {
        let t0 = Instant::now();
        let (st, v) = post(
            &s,
            "/v1/completions",
            &json!({"model": MODEL, "prompt": "1, 2, 3,", "temperature": 0, "max_tokens": 8,
                    "nanolab": {"device": "slow-phone", "paced": paced}}),
        );
        assert_eq!(st, 200, "{v}");
        (t0.elapsed().as_secs_f64(), v)
    };
    let (paced_s, paced) = run(true);
    let ext = &paced["nanolab"];
    let sim_rate = ext["simulated_decode_tokens_per_sec"].as_f64().unwrap();
    let real_rate = paced["timings"]["predicted_per_second"].as_f64().unwrap();
    let n = paced["usage"]["completion_tokens"].as_f64().unwrap();
    assert!(
        sim_rate > 0.0 && sim_rate < real_rate,
        "simulated {sim_rate} tok/s, real {real_rate}"
    );
    assert!(
        paced_s >= 0.9 * n / sim_rate,
        "paced request took {paced_s:.2} s; {n} tokens at the device's {sim_rate:.1} tok/s take {:.2} s",
        n / sim_rate
    );
    // Unpaced, the answer comes as soon as the engine is done: no simulated time is waited for.
    let (unpaced_s, unpaced) = run(false);
    let engine_s = (unpaced["timings"]["prompt_ms"].as_f64().unwrap()
        + unpaced["timings"]["predicted_ms"].as_f64().unwrap())
        / 1000.0;
    assert!(
        unpaced_s < engine_s + 1.0 && unpaced_s < 0.9 * n / sim_rate,
        "unpaced took {unpaced_s:.2} s for {engine_s:.2} s of engine work; paced {paced_s:.2} s"
    );
    // The device heats under load and keeps its temperature from one request to the next.
    let t1 = ext["temp_c"].as_f64().unwrap();
    let t2 = unpaced["nanolab"]["temp_c"].as_f64().unwrap();
    assert!(t2 > t1, "temperature {t1} then {t2}");
    assert!(ext["thermal_state"].is_string(), "{ext}");
    let (st, v) = post(
        &s,
        "/v1/completions",
        &json!({"model": MODEL, "prompt": "a", "nanolab": {"device": "no-such-phone"}}),
    );
    assert_eq!(st, 400);
    assert!(assert_error(&v, Some("nanolab.device")).contains("pixel-9-pro"), "{v}");
}

#[test]
fn lanes_from_a_lanes_file_are_served_under_their_names() {
    let caps = common::caps_adapter();
    let lanes_dir = tempfile::tempdir().unwrap();
    let lanes = lanes_dir.path().join("lanes.json");
    std::fs::write(
        &lanes,
        json!([
            {"name": "lane-1", "model": common::demo_model()},
            {"name": "lane-2", "model": common::demo_model(), "adapters": [{"path": caps, "scale": 0.5}]},
        ])
        .to_string(),
    )
    .unwrap();
    let s = Server::start(&["--lanes-file", lanes.to_str().unwrap()]);
    let (_, models) = get(&s, "/v1/models", None);
    let ids: Vec<&str> = models["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert!(ids.contains(&"lane-1") && ids.contains(&"lane-2"), "{ids:?}");
    let text = |model: &str| {
        let (st, v) = post(
            &s,
            "/v1/completions",
            &json!({"model": model, "prompt": "The capital of France is", "temperature": 0, "max_tokens": 16}),
        );
        assert_eq!(st, 200, "{v}");
        v["choices"][0]["text"].as_str().unwrap().to_string()
    };
    // A lane is its stack: the same text as naming that stack, and as `nanolab run`.
    assert_eq!(text("lane-2"), text(&format!("{MODEL}+smollm2-caps:0.5")));
    assert_eq!(text("lane-1"), text(MODEL));
    let (st, v) = post(
        &s,
        "/v1/completions",
        &json!({"model": "lane-2", "prompt": "a", "lora": [{"id": 0, "scale": 1.0}]}),
    );
    assert_eq!(st, 400, "{v}");

    // A lanes file naming an adapter that does not fit is refused at start, with the reason.
    let misfit = lanes_dir.path().join("misfit.gguf");
    common::write_lora(&misfit, 64, 2);
    std::fs::write(
        &lanes,
        json!([{"name": "lane-1", "model": common::demo_model(), "adapters": [{"path": misfit, "scale": 1.0}]}])
            .to_string(),
    )
    .unwrap();
    let out = Command::new(common::exe())
        .args(["serve", "--port", "0", "--lanes-file", lanes.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("misfit.gguf"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A streamed completion read to its end with ureq: when each text chunk arrived, and the text.
fn timed_stream(s: &Server, body: &Value) -> (Vec<Instant>, String) {
    let mut resp = agent()
        .post(s.url("/v1/completions"))
        .header("Content-Type", "application/json")
        .send(body.to_string())
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let mut at = Vec::new();
    let mut text = String::new();
    for line in BufReader::new(resp.body_mut().as_reader()).lines() {
        let line = line.unwrap();
        let Some(data) = line.strip_prefix("data: ") else {
            continue;
        };
        if data == "[DONE]" {
            break;
        }
        let v: Value = serde_json::from_str(data).unwrap();
        let piece = v["choices"][0]["text"].as_str().unwrap_or("");
        if !piece.is_empty() {
            at.push(Instant::now());
            text.push_str(piece);
        }
    }
    (at, text)
}

#[test]
fn with_parallel_requests_stream_together_and_answer_as_alone() {
    let body = json!({"model": MODEL, "prompt": "Write a list of fruits:\n1.", "temperature": 0, "max_tokens": 48, "stream": true});
    let mut alone = None;
    for (parallel, together) in [("1", false), ("2", true)] {
        let s = Server::start(&["--parallel", parallel]);
        let want = alone.get_or_insert_with(|| timed_stream(&s, &body).1).clone();
        assert!(!want.is_empty());
        let (a, b) = std::thread::scope(|scope| {
            let a = scope.spawn(|| timed_stream(&s, &body));
            let b = scope.spawn(|| timed_stream(&s, &body));
            (a.join().unwrap(), b.join().unwrap())
        });
        assert_eq!(a.1, want, "--parallel {parallel}");
        assert_eq!(b.1, want, "--parallel {parallel}");
        let (a0, a1, b0, b1) = (a.0[0], *a.0.last().unwrap(), b.0[0], *b.0.last().unwrap());
        let overlap = b0 < a1 && a0 < b1;
        assert_eq!(
            overlap, together,
            "--parallel {parallel}: a {a0:?}..{a1:?}, b {b0:?}..{b1:?}"
        );
    }
}
