//! Walks the generated bad-input corpus through `inspect`, `run` (as model or as adapter) and
//! the window (as a drop on a lane whose neighbour keeps its output).

use crate::common;
use crate::corpus;

use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::*;
use corpus::Role;
use egui_kittest::kittest::Queryable;
use nanolab::ui::app::{App, Command as UiCommand};

fn one_error_line(args: &[&str], expect: &str, name: &str) -> String {
    let out = Command::new(exe()).args(args).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{name}: {args:?} should fail");
    assert!(!err.contains("panicked"), "{name}: panic: {err}");
    let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(lines.len(), 1, "{name}: expected one error line: {err}");
    assert!(lines[0].contains(expect), "{name}: {:?} lacks {expect:?}", lines[0]);
    lines[0].to_string()
}

#[test]
fn every_corpus_case_gets_a_specific_error_from_the_cli() {
    let demo = demo_model();
    let dir = tempfile::tempdir().unwrap();
    let cases = corpus::generate(dir.path(), &demo);
    assert!(cases.len() >= 30, "corpus has {} cases", cases.len());
    let d = demo.to_str().unwrap();
    for c in &cases {
        let p = c.path.to_str().unwrap();
        match c.role {
            Role::Model => {
                // These are well-formed files: inspect describes them; only run refuses them.
                if !matches!(c.name, "unknown-architecture" | "no-tensors" | "adapter-as-model") {
                    one_error_line(&["inspect", p], c.expect, c.name);
                }
                one_error_line(&["run", "-m", p, "-p", "hi", "-n", "2"], c.expect, c.name);
            }
            Role::Adapter if c.name.starts_with("peft") => {
                one_error_line(
                    &[
                        "adapters",
                        "import",
                        p,
                        "--model",
                        d,
                        "--out",
                        dir.path().join("x.gguf").to_str().unwrap(),
                    ],
                    c.expect,
                    c.name,
                );
            }
            Role::Adapter => {
                one_error_line(&["run", "-m", d, "-a", p, "-p", "hi", "-n", "2"], c.expect, c.name);
            }
        }
    }
}

#[test]
fn every_corpus_file_gets_a_specific_error_in_its_other_role_too() {
    let demo = demo_model();
    let dir = tempfile::tempdir().unwrap();
    let cases = corpus::generate(dir.path(), &demo);
    eprintln!("corpus: {} cases", cases.len());
    let d = demo.to_str().unwrap();
    for c in &cases {
        let p = c.path.to_str().unwrap();
        let line = match c.role {
            // A valid adapter is not an error as an adapter.
            Role::Model if c.name == "adapter-as-model" => continue,
            Role::Model => {
                // Well-formed models are refused as adapters for being models; the rest for
                // the same fault as in their own role.
                let expect = match c.name {
                    "no-tensors" | "unknown-architecture" => "is not an adapter (general.type is \"model\")",
                    _ => c.expect,
                };
                one_error_line(&["run", "-m", d, "-a", p, "-p", "hi", "-n", "2"], expect, c.name)
            }
            // A PEFT folder is imported, not run; a model given as an adapter is a good model.
            Role::Adapter if c.name.starts_with("peft") || c.name == "model-as-adapter" => continue,
            // As a model, each of these well-formed adapter files is refused for being an adapter.
            Role::Adapter => one_error_line(
                &["run", "-m", p, "-p", "hi", "-n", "2"],
                "this is a LoRA adapter, not a model",
                c.name,
            ),
        };
        eprintln!("{:<28} {line}", c.name);
    }
}

#[test]
fn every_corpus_case_dropped_on_the_window_shows_a_banner_and_loses_nothing() {
    let demo = demo_model();
    let dir = tempfile::tempdir().unwrap();
    let cases = corpus::generate(dir.path(), &demo);
    let folders = nanolab::ui::app::Folders {
        adapters: dir.path().join("imported"),
        ..nanolab::ui::app::Folders::from_env()
    };
    let mut app = App::with_folders(None, Some(exe()), folders);
    app.rt.pending.push(UiCommand::SetModel {
        lane: None,
        path: demo.clone(),
    });
    app.apply_commands();
    let mut h = crate::common::ui::harness(app);
    let wait = |h: &mut egui_kittest::Harness<'_, App>, what: &str, f: &dyn Fn(&App) -> bool| {
        let end = Instant::now() + Duration::from_secs(60);
        while !f(h.state()) {
            assert!(Instant::now() < end, "timed out: {what}");
            h.step();
            std::thread::sleep(Duration::from_millis(5));
        }
    };
    wait(&mut h, "model loaded", &|a| a.rt.engine.jobs.is_empty());
    h.get_by_label("Add lane").click();
    h.run_steps(3);
    {
        let s = &mut h.state_mut().state;
        s.chat_mode = false;
        s.prompt = "The capital of France is".into();
        s.lanes[0].sampling.max_tokens = 8;
    }
    h.run_steps(2);
    h.get_by_label("Run all").click();
    h.run_steps(2);
    wait(&mut h, "outputs", &|a| {
        a.state.lanes.iter().all(|l| l.output.stats.is_some())
    });
    let kept: Vec<String> = h.state().state.lanes.iter().map(|l| l.output.text.clone()).collect();
    // A model dropped on a lane opens it: that is not an error in the window.
    // A model dropped on a lane opens it and a fitting adapter is added: not errors in the window.
    for c in cases
        .iter()
        .filter(|c| !matches!(c.name, "model-as-adapter" | "adapter-as-model"))
    {
        let target = h.state().rt.lanes.rects[1].1.center();
        h.state_mut().state.lanes[1].output.error = None;
        h.state_mut().rt.banner = None;
        common::ui::drop_file(&mut h, &c.path, target);
        // Files only llama.cpp can reject come back from the engine a moment later.
        wait(&mut h, "engine answered", &|a| a.rt.engine.jobs.is_empty());
        h.run_steps(2);
        let lane2 = &h.state().state.lanes[1];
        let shown = lane2.output.error.clone().or_else(|| h.state().rt.banner.clone());
        let shown = shown.unwrap_or_else(|| panic!("{}: no banner", c.name));
        assert!(!shown.is_empty(), "{}", c.name);
        // A folder dropped on the window is taken as a PEFT adapter folder, so it says what it lacks.
        let expect = if c.name == "directory" {
            "adapter_config.json: missing"
        } else {
            c.expect
        };
        assert!(shown.contains(expect), "{}: {shown:?} lacks {expect:?}", c.name);
        assert_eq!(
            h.state().state.lanes[0].output.text,
            kept[0],
            "{}: lane 1 lost its output",
            c.name
        );
        assert!(
            h.state().state.lanes[1].adapters.is_empty(),
            "{}: a bad adapter was added",
            c.name
        );
        // Put lane 2 back on the demo model if a bad model was dropped on it.
        if h.state().state.lanes[1].model.as_deref() != Some(demo.as_path()) {
            let id = h.state().state.lanes[1].id;
            h.state_mut().rt.pending.push(UiCommand::SetModel {
                lane: Some(id),
                path: demo.clone(),
            });
            h.run_steps(2);
        }
        wait(&mut h, "engine idle", &|a| a.rt.engine.jobs.is_empty());
    }

    // A file the user may not read. Root reads anything, so this thread gives up that power
    // for the drop (capabilities are per thread; the window reads dropped files on this one).
    let locked = locked_adapter_copy(dir.path());
    let target = h.state().rt.lanes.rects[1].1.center();
    h.state_mut().state.lanes[1].output.error = None;
    h.state_mut().rt.banner = None;
    without_reading_everything(|| {
        assert!(
            std::fs::File::open(&locked).is_err(),
            "still allowed to read the locked file"
        );
        common::ui::drop_file(&mut h, &locked, target);
        h.run_steps(2);
    });
    let shown = h.state().state.lanes[1]
        .output
        .error
        .clone()
        .or_else(|| h.state().rt.banner.clone());
    let shown = shown.expect("unreadable file: no banner");
    assert!(
        shown.contains("locked.gguf") && shown.contains("Permission denied"),
        "{shown:?}"
    );
    assert_eq!(
        h.state().state.lanes[0].output.text,
        kept[0],
        "unreadable file: lane 1 lost its output"
    );
    assert!(h.state().state.lanes[1].adapters.is_empty());
}

/// Runs `f` with CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH out of this thread's effective set
/// (a no-op for a user without them), then puts them back.
fn without_reading_everything(f: impl FnOnce()) {
    #[repr(C)]
    struct Header {
        version: u32,
        pid: i32,
    }
    #[repr(C)]
    #[derive(Clone, Copy, Default)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    const VERSION_3: u32 = 0x2008_0522;
    const DAC_BITS: u32 = (1 << 1) | (1 << 2);
    let mut header = Header {
        version: VERSION_3,
        pid: 0,
    };
    let mut data = [Data::default(); 2];
    // SAFETY: capget/capset with a v3 header and two data structs, as the kernel's ABI defines.
    let set = |header: &mut Header, data: &[Data; 2]| unsafe {
        libc::syscall(libc::SYS_capset, header as *mut Header, data.as_ptr())
    };
    // SAFETY: as above; capget fills `data`.
    assert_eq!(
        unsafe { libc::syscall(libc::SYS_capget, &mut header as *mut Header, data.as_mut_ptr()) },
        0
    );
    let saved = data;
    data[0].effective &= !DAC_BITS;
    assert_eq!(set(&mut header, &data), 0, "capset");
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    assert_eq!(set(&mut header, &saved), 0, "capset (restore)");
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}
