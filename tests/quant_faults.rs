//! Quantizer and engine faults in the lab: a quantizer killed or cancelled mid-write leaves
//! nothing behind, a full disk fails cleanly (or is refused before writing), and an engine
//! killed while it loads a model is reported and recovered.

use crate::common;
use crate::eval::ladder;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use nanolab::protocol::*;
use nanolab::quant::{QuantEvent, QuantType, QuantizeJob, QuantizeRequest};

fn start(input: &Path, output: &Path, qtype: &str, exe: Option<PathBuf>) -> Result<QuantizeJob, String> {
    QuantizeJob::start_with_exe(
        QuantizeRequest {
            input: input.to_path_buf(),
            output: output.to_path_buf(),
            qtype: QuantType::parse(qtype).unwrap(),
            allow_requantize: false,
            overwrite: false,
            threads: None,
        },
        Some(exe.unwrap_or_else(common::exe)),
    )
}

fn finish(mut job: QuantizeJob) -> Result<nanolab::quant::QuantOutcome, String> {
    common::wait_for(Duration::from_secs(60), || {
        job.poll().into_iter().find_map(|e| match e {
            QuantEvent::Finished(r) => Some(r),
            QuantEvent::Progress { .. } => None,
        })
    })
    .expect("the job ends")
}

#[test]
fn killing_the_quantizer_leaves_nothing_behind() {
    let l = ladder();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("k.Q4_K_M.gguf");
    let mut job = start(&l.f16, &out, "Q4_K_M", None).unwrap();
    // Wait until it is writing tensors, then kill -9 the worker.
    common::wait_for(Duration::from_secs(30), || {
        job.poll()
            .into_iter()
            .any(|e| matches!(e, QuantEvent::Progress { .. }))
            .then_some(())
    })
    .expect("progress before the end");
    let pid = job.pid().expect("running") as i32;
    // SAFETY: signalling our own child.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    let err = finish(job).unwrap_err();
    assert!(err.contains("signal 9"), "{err}");
    assert!(
        common::file_names(dir.path()).is_empty(),
        "left: {:?}",
        common::file_names(dir.path())
    );
    // No zombie: the worker was reaped.
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    assert!(!stat.contains(") Z "), "zombie: {stat}");
    // A re-run works.
    let ok = finish(start(&l.f16, &out, "Q4_K_M", None).unwrap()).unwrap();
    assert_eq!(ok.quant_type, "Q4_K_M");
    assert!(out.is_file());
}

#[test]
fn cancel_stops_the_quantizer_and_cleans_up() {
    let l = ladder();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("c.Q8_0.gguf");
    let mut job = start(&l.f16, &out, "Q8_0", None).unwrap();
    // Cancel only once the worker is writing, so there is a partial file to clean up.
    let writing = common::wait_for(Duration::from_secs(60), || {
        job.poll()
            .iter()
            .any(|e| matches!(e, QuantEvent::Progress { .. }))
            .then_some(())
    });
    assert!(writing.is_some(), "the quantizer never reported progress");
    let pid = job.pid().expect("a running worker");
    assert!(!common::file_names(dir.path()).is_empty(), "no temp file while writing");
    job.cancel();
    assert!(
        common::file_names(dir.path()).is_empty(),
        "left: {:?}",
        common::file_names(dir.path())
    );
    // The worker is gone and reaped, not a zombie.
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "worker {pid} still exists"
    );
}

#[test]
fn running_out_of_space_mid_write_fails_cleanly() {
    // A 10 MB file size limit on the worker: llama.cpp's writes fail part-way, as on a full disk.
    let l = ladder();
    let dir = tempfile::tempdir().unwrap();
    let wrapper = dir.path().join("limited.sh");
    std::fs::write(
        &wrapper,
        format!("#!/bin/sh\nulimit -f 20000\nexec {} \"$@\"\n", common::exe().display()),
    )
    .unwrap();
    Command::new("chmod")
        .args(["755", wrapper.to_str().unwrap()])
        .status()
        .unwrap();
    let out_dir = dir.path().join("out");
    std::fs::create_dir(&out_dir).unwrap();
    let out = out_dir.join("f.Q8_0.gguf");
    let err = finish(start(&l.f16, &out, "Q8_0", Some(wrapper)).unwrap()).unwrap_err();
    assert!(err.contains("SIGXFSZ") || err.contains("File too large"), "{err}");
    assert!(
        common::file_names(&out_dir).is_empty(),
        "left: {:?}",
        common::file_names(&out_dir)
    );
}

#[test]
fn a_disk_without_room_is_refused_before_writing() {
    let l = ladder();
    let dir = tempfile::tempdir().unwrap();
    // Needs root (to mount a tmpfs); `make test` and CI run as root, so there it always runs.
    let Some(disk) = common::small_tmpfs(&dir.path().join("small"), 40) else {
        common::skipped(
            "a_disk_without_room_is_refused_before_writing: cannot mount a small tmpfs here (needs root); \
             the size-limit test covers mid-write failure",
        );
        return;
    };
    let out = disk.path().join("d.Q8_0.gguf");
    let result = start(&l.f16, &out, "Q8_0", None);
    let listing = common::file_names(disk.path());
    drop(disk);
    let err = result.err().expect("refused");
    assert!(err.contains("not enough disk space"), "{err}");
    assert!(listing.is_empty(), "{listing:?}");
}

#[test]
fn killing_the_engine_during_a_model_load_is_reported_and_recovered() {
    // The F16 reference (258 MiB) takes long enough to load to be killed in the middle.
    let l = ladder();
    let mut c = common::client();
    let load = |c: &mut nanolab::engine::EngineClient| {
        let job = c.next_job();
        c.send(&Request::LoadModel {
            job,
            model: ModelSpec {
                path: l.f16.clone(),
                gpu_layers: Some(0),
            },
        })
        .unwrap();
        job
    };
    let job = load(&mut c);
    let pid = c.pid().expect("engine running");
    let mut killed_at = None;
    let end = common::wait_for(Duration::from_secs(60), || {
        let ev = c.events().recv_timeout(Duration::from_millis(100)).ok()?;
        // The first progress event is sent as llama.cpp starts reading the file (about 90 ms
        // of work left for this model); kill(2) lands well within that.
        if let Event::Progress { fraction, .. } = &ev {
            if killed_at.is_none() && *fraction < 1.0 {
                killed_at = Some(*fraction);
                // SAFETY: kill(2) on the engine child this test started.
                unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            }
        }
        ev.is_terminal().then_some(ev)
    })
    .expect("the load ends");
    assert!(killed_at.is_some(), "no progress seen mid-load");
    match end {
        Event::Error { message, job: j, .. } => {
            assert_eq!(j, job);
            assert!(
                message.contains("engine stopped while loading") && message.contains("signal 9"),
                "{message}"
            );
        }
        other => panic!("expected the load to fail: {other:?}"),
    }
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    assert!(!stat.contains(") Z "), "engine child left as a zombie");
    // The next request starts a fresh engine and the model loads.
    let job = load(&mut c);
    let end = common::wait_for(Duration::from_secs(60), || {
        let ev = c.events().recv_timeout(Duration::from_millis(100)).ok()?;
        ev.is_terminal().then_some(ev)
    })
    .expect("the load ends");
    assert!(
        matches!(&end, Event::Done { job: j, result: JobResult::ModelLoaded { .. } } if *j == job),
        "{end:?}"
    );
    assert_eq!(c.restarts(), 1);
}
