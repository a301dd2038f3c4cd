//! `models fetch URL` against a local HTTP server on loopback, and `models list`.

use std::process::Command;

use crate::common::*;
use nanolab::gguf::Value;
use nanolab::models::fetch::sha256_file;

#[test]
fn fetch_by_url_verifies_and_installs_once() {
    let demo = demo_model();
    let body = std::fs::read(&demo).unwrap();
    let digest = sha256_file(&demo).unwrap();
    let base = serve(body, 3, None);
    let dir = tempfile::tempdir().unwrap();
    let url = format!("{base}/files/demo.gguf");
    let run = |extra: &[&str]| {
        let mut args = vec!["models", "fetch", url.as_str(), "--dir", dir.path().to_str().unwrap()];
        args.extend_from_slice(extra);
        Command::new(exe()).args(&args).output().unwrap()
    };
    let out = run(&["--sha256", &digest]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // stderr is a pipe here, as in CI logs: plain progress lines, no redrawn bar.
    let progress = String::from_utf8_lossy(&out.stderr);
    assert!(!progress.contains('\r'), "{progress:?}");
    let percents: Vec<&str> = progress.lines().filter(|l| l.contains("% ")).collect();
    assert!(
        (2..=12).contains(&percents.len()) && percents.last().is_some_and(|l| l.contains("100%")),
        "{progress}"
    );
    let dest = dir.path().join("demo.gguf");
    assert_eq!(sha256_file(&dest).unwrap(), digest);
    assert!(!dir.path().join("demo.gguf.partial").exists());
    assert!(
        String::from_utf8_lossy(&out.stdout).ends_with("installed (sha256 verified)\n"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    // Again: nothing downloaded; the digest is checked when one is given, and not claimed when not.
    let out = run(&["--sha256", &digest]);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("is already installed (sha256 verified)"), "{said}");
    let out = run(&[]);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains("is already installed (a readable GGUF; not checked by sha256"),
        "{said}"
    );
    // A download without a digest says which one it got, and that it was not checked.
    let other = tempfile::tempdir().unwrap();
    let out = Command::new(exe())
        .args(["models", "fetch", url.as_str(), "--dir", other.path().to_str().unwrap()])
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains(&format!("installed (sha256 {digest}, not checked")),
        "{said}"
    );
    // listed
    let out = Command::new(exe())
        .args(["models", "list", "--json", "--dir", dir.path().to_str().unwrap()])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["installed"][0]["file_bytes"], std::fs::metadata(&dest).unwrap().len());
}

#[test]
fn wrong_digest_and_truncated_downloads_leave_nothing() {
    let demo = demo_model();
    let body = std::fs::read(&demo).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let base = serve(body.clone(), 1, None);
    let out = Command::new(exe())
        .args([
            "models",
            "fetch",
            &format!("{base}/a.gguf"),
            "--dir",
            d,
            "--sha256",
            &"0".repeat(64),
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("sha256 mismatch"));
    let base = serve(body, 1, Some(1000));
    let out = Command::new(exe())
        .args(["models", "fetch", &format!("{base}/b.gguf"), "--dir", d])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert!(left.is_empty(), "files left behind: {left:?}");
    let base = serve(b"not a gguf at all".to_vec(), 1, None);
    let out = Command::new(exe())
        .args(["models", "fetch", &format!("{base}/c.gguf"), "--dir", d])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a valid GGUF"));
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn fetching_the_demo_model_again_skips_it() {
    let demo = demo_model();
    let dir = demo.parent().unwrap();
    let out = Command::new(exe())
        .args([
            "models",
            "fetch",
            "smollm2-135m-instruct",
            "--dir",
            dir.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("already installed"));
}

#[test]
fn a_full_disk_refuses_or_rolls_back_a_download() {
    let dir = tempfile::tempdir().unwrap();
    // Needs root (to mount a tmpfs); `make test` and CI run as root, so there it always runs.
    let Some(disk) = small_tmpfs(&dir.path().join("small"), 8) else {
        skipped("a_full_disk_refuses_or_rolls_back_a_download: cannot mount a small tmpfs here (needs root)");
        return;
    };
    let small = disk.path();
    let fetch = |url: String| {
        Command::new(exe())
            .args(["models", "fetch", &url, "--dir", small.to_str().unwrap()])
            .output()
            .unwrap()
    };
    let listing = || file_names(small);
    let body = vec![7u8; 20 << 20];
    // Size known: refused before writing anything.
    let sized = fetch(format!("{}/big.gguf", serve(body.clone(), 1, None)));
    let sized_err = String::from_utf8_lossy(&sized.stderr).into_owned();
    let after_sized = listing();
    // Size unknown: the disk fills mid-write; the partial file is removed.
    let streamed = fetch(format!("{}/big.gguf", serve_unsized(body)));
    let streamed_err = String::from_utf8_lossy(&streamed.stderr).into_owned();
    let after_streamed = listing();
    drop(disk);
    assert!(
        !sized.status.success() && sized_err.contains("not enough disk space"),
        "{sized_err}"
    );
    assert!(after_sized.is_empty(), "{after_sized:?}");
    assert!(
        !streamed.status.success() && streamed_err.contains("No space left on device"),
        "{streamed_err}"
    );
    assert!(after_streamed.is_empty(), "{after_streamed:?}");
}

#[test]
fn a_partial_file_left_by_a_killed_fetch_is_cleared_before_space_is_counted() {
    let dir = tempfile::tempdir().unwrap();
    // Needs root (to mount a tmpfs); `make test` and CI run as root, so there it always runs.
    let Some(mounted) = small_tmpfs(&dir.path().join("disk"), 40) else {
        skipped(
            "a_partial_file_left_by_a_killed_fetch_is_cleared_before_space_is_counted: \
             cannot mount a small tmpfs here (needs root)",
        );
        return;
    };
    let disk = mounted.path();
    let listing = || file_names(disk);
    // kill -9 gives a fetch no chance to clean up: 25 MiB of .partial stays on a 40 MiB disk.
    std::fs::write(disk.join("six.gguf.partial"), vec![0u8; 25 << 20]).unwrap();
    let after_kill = listing();
    // A 6 MiB model needs 22 MiB with the margin: it fits only once the stale file is gone.
    let model = dir.path().join("six.gguf");
    write_gguf(
        &model,
        vec![("general.architecture", Value::Str("llama".into()))],
        &[("w", vec![1024, 1536])],
    );
    let url = format!("{}/six.gguf", serve(std::fs::read(&model).unwrap(), 1, None));
    let out = Command::new(exe())
        .args(["models", "fetch", &url, "--dir", disk.to_str().unwrap()])
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stderr).into_owned();
    let after = listing();
    drop(mounted);
    assert_eq!(after_kill, vec!["six.gguf.partial".to_string()]);
    assert!(out.status.success(), "{said}");
    assert_eq!(after, vec!["six.gguf".to_string()], "{said}");
}
