//! `fim scan`: a one-off scan with the same engine the daemon uses.
use std::{io::IsTerminal as _, path::Path, process::ExitCode, sync::Mutex};

use anyhow::Context as _;
use clap::Args;
use fim_engine::{
    change::Detection,
    daemon::{database_path, PolicySource, PolicyWatcher},
    identity::Computer,
    path_text::display_path,
    reconcile::{
        sweep::{sweep, SweepKind},
        Reconciler,
    },
    scan::{ScanMode, ScanOptions},
    store::Store,
};

#[derive(Args, Debug)]
pub struct ScanArgs {
    /// Rehash every file, not only those whose metadata changed.
    #[arg(long)]
    pub full: bool,
    /// Only these entities (repeatable).
    #[arg(long = "entity")]
    pub entities: Vec<String>,
    /// Hashing threads (default: the policy's scan_workers).
    #[arg(long)]
    workers: Option<usize>,
    /// Print the summary as one JSON object.
    #[arg(long)]
    json: bool,
}

pub fn run(state_dir: &Path, policy: &Path, args: ScanArgs) -> anyhow::Result<ExitCode> {
    std::fs::create_dir_all(state_dir)
        .with_context(|| format!("creating the state directory {}", display_path(state_dir)))?;
    let store = Store::open(database_path(state_dir))?;
    let policy = PolicyWatcher::load(PolicySource::File(policy.to_path_buf()))?;
    let settings = policy.compiled().settings.clone();
    let mut options = ScanOptions::from_settings(&settings, ScanMode::Full);
    if std::io::stderr().is_terminal() {
        options.progress = Some(std::sync::Arc::new(crate::progress::Progress::new()));
    }
    if let Some(workers) = args.workers {
        options.workers = workers;
    }
    let reconciler = Mutex::new(Reconciler::new(
        store,
        policy.compiled().clone(),
        Computer::of_this_host(),
    ));
    let kind = if args.full {
        SweepKind::Full
    } else {
        SweepKind::Metadata
    };
    let only = (!args.entities.is_empty()).then_some(args.entities.as_slice());
    let outcome = sweep(&reconciler, only, kind, Detection::Scan, &options)?;
    if args.json {
        println!(
            "{}",
            serde_json::json!({
                "files": outcome.files,
                "directories": outcome.directories,
                "bytes_hashed": outcome.bytes_hashed,
                "errors": outcome.errors,
                "elapsed_ms": outcome.elapsed.as_millis() as u64,
                "changes": outcome.changes,
                "baselined": outcome.baselined,
                "missing": outcome.missing,
            })
        );
    } else {
        println!(
            "scanned {} files and {} directories ({} MB hashed) in {:.1}s: {} change(s), {} error(s)",
            outcome.files,
            outcome.directories,
            outcome.bytes_hashed / 1_000_000,
            outcome.elapsed.as_secs_f64(),
            outcome.changes,
            outcome.errors
        );
        if !outcome.baselined.is_empty() {
            println!("baseline recorded for: {}", outcome.baselined.join(", "));
        }
        for name in &outcome.missing {
            println!("missing: entity {name} points at a path that does not exist");
        }
    }
    Ok(ExitCode::SUCCESS)
}
