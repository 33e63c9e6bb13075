//! `fim status` and `fim verify`.
use std::{path::Path, process::ExitCode};

use anyhow::{bail, Context as _};
use clap::Args;
use fim_engine::{
    daemon::{database_path, saved_hashing, HASHING_META},
    path_text::display_path,
    store::Store,
};

/// Opens the daemon's store for reading; says clearly when there is none yet.
pub fn open_store(state_dir: &Path) -> anyhow::Result<Store> {
    let path = database_path(state_dir);
    if !path.exists() {
        bail!(
            "no database at {}: start fimd or run `fim scan` first (or pass --state-dir)",
            display_path(&path)
        );
    }
    Store::open_read_only(&path).with_context(|| format!("opening {}", display_path(&path)))
}

#[derive(Args, Debug)]
pub struct StatusArgs {
    /// Print as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Whether the pid saved by the daemon is a live fimd.
fn daemon_alive(pid: &str) -> bool {
    let Ok(pid) = pid.parse::<u32>() else {
        return false;
    };
    std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|comm| comm.trim() == "fimd")
}

pub fn status(state_dir: &Path, policy: &Path, args: StatusArgs) -> anyhow::Result<ExitCode> {
    let store = open_store(state_dir)?;
    let meta = |key: &str| store.get_meta(key).ok().flatten();
    let pid = meta("daemon/pid");
    let running = pid.as_deref().is_some_and(daemon_alive);
    // Saved by the daemon about once a second; meaningless once it is gone.
    let (hashing, hashes_queued) = match meta(HASHING_META) {
        Some(text) if running => saved_hashing(&text),
        _ => (Vec::new(), 0),
    };
    let hashing: Vec<(String, u64, u64)> = hashing
        .iter()
        .map(|file| (display_path(&file.path), file.done, file.size))
        .collect();
    let status = serde_json::json!({
        "daemon": {
            "running": running,
            "pid": pid,
            "started": meta("daemon/started"),
            "strategy": meta("daemon/strategy"),
            "roots": meta("daemon/roots"),
        },
        "policy": display_path(policy),
        "baseline_entries": store.count()?,
        "journal_last_sequence": store.last_sequence()?,
        "last_sweep": meta("last_sweep"),
        "last_rehash": meta("last_rehash"),
        "hashing": hashing.iter().map(|(path, done, size)| serde_json::json!({
            "path": path, "size": size, "done": done,
        })).collect::<Vec<_>>(),
        "hashes_queued": hashes_queued,
        "recent_scans": store.last_scans(5)?.iter().map(|scan| serde_json::json!({
            "kind": scan.kind, "started_ns": scan.started.unix_nanos(), "finished_ns": scan.finished.unix_nanos(),
            "files": scan.files, "changes": scan.changes, "errors": scan.errors,
        })).collect::<Vec<_>>(),
    });
    if args.json {
        println!("{}", serde_json::to_string_pretty(&status)?);
        return Ok(ExitCode::SUCCESS);
    }
    let text = |value: &serde_json::Value| match value {
        serde_json::Value::String(text) => text.clone(),
        serde_json::Value::Null => "-".to_string(),
        other => other.to_string(),
    };
    println!(
        "daemon:     {}",
        if running {
            format!(
                "running (pid {}, strategy {}, since {})",
                text(&status["daemon"]["pid"]),
                text(&status["daemon"]["strategy"]),
                text(&status["daemon"]["started"])
            )
        } else {
            "not running".to_string()
        }
    );
    println!("roots:      {}", text(&status["daemon"]["roots"]));
    println!("policy:     {}", text(&status["policy"]));
    println!("baseline:   {} entries", status["baseline_entries"]);
    println!(
        "journal:    last sequence {}",
        status["journal_last_sequence"]
    );
    println!("last sweep: {}", text(&status["last_sweep"]));
    println!("last rehash: {}", text(&status["last_rehash"]));
    print_hashing(&hashing, hashes_queued);
    Ok(ExitCode::SUCCESS)
}

/// Large files the daemon hashes beside its event path: (path, bytes done, size) each.
pub fn print_hashing(files: &[(String, u64, u64)], queued: u64) {
    if files.is_empty() && queued == 0 {
        return;
    }
    println!("hashing:    {} file(s), {queued} more queued", files.len());
    for (path, done, size) in files {
        let percent = if *size == 0 {
            100.0
        } else {
            *done as f64 * 100.0 / *size as f64
        };
        println!("  {path}: {done} / {size} bytes ({percent:.1}%)");
    }
}

#[derive(Args, Debug)]
pub struct VerifyArgs {
    /// A chain head kept elsewhere, as SEQUENCE:HASH (fimd writes its head to the system log;
    /// `fim verify` prints it): record SEQUENCE must still have exactly that hash.
    #[arg(long, value_name = "SEQ:HASH")]
    pub expect: Option<fim_engine::store::Anchor>,
}

pub fn verify(state_dir: &Path, args: VerifyArgs) -> anyhow::Result<ExitCode> {
    let store = open_store(state_dir)?;
    let report = store.verify_anchored(args.expect)?;
    println!("{report}");
    Ok(if report.problem.is_none() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    })
}
