//! `nanolab models fetch|list`.

use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;

use crate::metrics::mib;
use crate::models::{self, FetchProgress, CATALOG};

/// A one-line progress bar on stderr; where stderr is not a terminal (a log, CI), a plain line
/// for each stage and every 10 %.
pub fn progress_bar() -> impl FnMut(FetchProgress) {
    let tty = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let mut last_pct = u64::MAX;
    let mut last_stage = String::new();
    move |p: FetchProgress| {
        let pct = p.total_bytes.filter(|&t| t > 0).map(|t| p.done_bytes * 100 / t);
        let step = |pct: Option<u64>| if tty { pct } else { pct.map(|v| v / 10 * 10) };
        if step(pct) == step(Some(last_pct)) && p.stage == last_stage {
            return;
        }
        if !tty {
            if pct.is_none() && p.stage == last_stage {
                return;
            }
            last_pct = pct.unwrap_or(u64::MAX - 1);
            last_stage.clone_from(&p.stage);
            match (pct, p.total_bytes) {
                (Some(pct), Some(total)) => {
                    eprintln!("{}: {pct:>3}% {} / {}", p.stage, mib(p.done_bytes), mib(total));
                }
                _ if p.done_bytes == 0 => eprintln!("{}", p.stage),
                _ => eprintln!("{}: {}", p.stage, mib(p.done_bytes)),
            }
            return;
        }
        last_pct = pct.unwrap_or(u64::MAX - 1);
        last_stage.clone_from(&p.stage);
        let mut err = std::io::stderr().lock();
        match (pct, p.total_bytes) {
            (Some(pct), Some(total)) => {
                let filled = (pct / 4) as usize;
                let _ = write!(
                    err,
                    "\r[{}{}] {pct:>3}% {} / {}  {:<40}",
                    "#".repeat(filled),
                    ".".repeat(25 - filled.min(25)),
                    mib(p.done_bytes),
                    mib(total),
                    p.stage
                );
            }
            _ => {
                let _ = write!(err, "\r{} {:<60}", mib(p.done_bytes), p.stage);
            }
        }
        let _ = err.flush();
    }
}

/// Ends the progress bar's line on a terminal (plain lines need no end).
pub fn end_progress_line() {
    if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        eprintln!();
    }
}

pub fn fetch(what: &str, sha256: Option<&str>, dir: Option<PathBuf>) -> anyhow::Result<()> {
    let dir = dir.unwrap_or_else(models::models_dir);
    let cancel = AtomicBool::new(false);
    let mut bar = progress_bar();
    let fetched = if what.starts_with("http://") || what.starts_with("https://") {
        models::fetch_url(what, sha256, &dir, &cancel, &mut bar)?
    } else {
        let model = models::catalog::find(what).ok_or_else(|| {
            models::FetchError::Unknown(what.into(), CATALOG.iter().map(|m| m.id).collect::<Vec<_>>().join(", "))
        })?;
        models::fetch_catalog(model, &dir, true, &cancel, &mut bar)?
    };
    end_progress_line();
    let path = fetched.path.display();
    let done = if fetched.already_present {
        "is already installed"
    } else {
        "installed"
    };
    match &fetched.digest {
        models::Digest::Verified(_) => println!("{path} {done} (sha256 verified)"),
        models::Digest::Unchecked(actual) => {
            println!("{path} {done} (sha256 {actual}, not checked: give --sha256 to verify a download)");
        }
        models::Digest::NotComputed => {
            println!("{path} {done} (a readable GGUF; not checked by sha256: give --sha256 to verify it)");
        }
    }
    Ok(())
}

pub fn list(json: bool, dir: Option<PathBuf>) -> anyhow::Result<()> {
    let dir = dir.unwrap_or_else(models::models_dir);
    let installed = models::list_installed(&dir);
    if json {
        let catalog: Vec<serde_json::Value> = CATALOG
            .iter()
            .map(|m| {
                serde_json::json!({
                    "id": m.id, "title": m.title, "file_name": m.file_name,
                    "gguf_bytes": m.gguf_bytes, "sha256": m.gguf_sha256, "licence": m.licence,
                    "installed": installed.iter().any(|i| i.catalog_id.as_deref() == Some(m.id)),
                })
            })
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(
                &serde_json::json!({ "dir": dir, "installed": installed, "catalog": catalog })
            )?
        );
        return Ok(());
    }
    println!("installed in {}:", dir.display());
    if installed.is_empty() {
        println!("  (none; try: nanolab models fetch {})", CATALOG[0].id);
    }
    for i in &installed {
        println!(
            "  {:<44} {:>10}  {}",
            i.path.file_name().map(|n| n.to_string_lossy()).unwrap_or_default(),
            mib(i.file_bytes),
            i.catalog_id.as_deref().unwrap_or("")
        );
    }
    println!("catalog (nanolab models fetch ID):");
    for m in CATALOG {
        let mark = if installed.iter().any(|i| i.catalog_id.as_deref() == Some(m.id)) {
            "installed"
        } else {
            ""
        };
        println!("  {:<24} {:>10}  {}  {mark}", m.id, mib(m.gguf_bytes), m.title);
    }
    Ok(())
}
