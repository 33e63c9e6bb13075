//! Memory under a copy storm: `cp -r` of a tree of small files into a monitored tree, then
//! fimd's peak RSS (VmHWM) and whether every copied path got its record journaled.
//!
//! A measurement, not a test: `cargo xtask bench copy [FILES]` builds the release fimd, fim
//! and this driver and runs it as root (FILES defaults to 100000, in directories of 1000).
//! The target it is judged against: peak RSS at most 100 MB, every path journaled.
use std::{
    collections::HashSet,
    path::Path,
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _};
use fim_tests::engine::{Engine, Workspace};

const PER_DIRECTORY: usize = 1000;

/// VmHWM and VmRSS of a process, in KiB.
fn memory_kib(pid: u32) -> anyhow::Result<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let field = |name: &str| -> u64 {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|value| value.parse().ok())
            .unwrap_or(0)
    };
    Ok((field("VmHWM:"), field("VmRSS:")))
}

fn fim_json(workspace: &Workspace, args: &[&str]) -> anyhow::Result<serde_json::Value> {
    let output = workspace.fim(args);
    if !output.status.success() {
        bail!("fim {args:?}: {}", String::from_utf8_lossy(&output.stderr));
    }
    Ok(serde_json::from_slice(&output.stdout)?)
}

fn make_source(source: &Path, files: usize) -> anyhow::Result<()> {
    for index in 0..files {
        let directory = source.join(format!("d{:04}", index / PER_DIRECTORY));
        if index % PER_DIRECTORY == 0 {
            std::fs::create_dir_all(&directory)?;
        }
        let content = format!("file {index}: some small configuration-like content\n");
        std::fs::write(directory.join(format!("f{index:06}.conf")), content)?;
    }
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let files: usize = match std::env::args().nth(1) {
        Some(text) => text.parse().context("the number of files")?,
        None => 100_000,
    };
    let workspace = Workspace::new("bench-copy");
    let source = workspace.base.join("source");
    make_source(&source, files)?;
    let engine = Engine::start(&workspace);
    let status = fim_json(&workspace, &["--local", "status", "--json"])?;
    let pid: u32 = status["daemon"]["pid"]
        .as_str()
        .and_then(|pid| pid.parse().ok())
        .context("fimd's pid")?;
    let (idle_hwm, _) = memory_kib(pid)?;
    let first = status["journal_last_sequence"].as_u64().unwrap_or(0);
    let destination = workspace.tree.join("copy");
    let directories = files.div_ceil(PER_DIRECTORY);
    let expected = (files + directories + 1) as u64;
    let started = Instant::now();
    let copied = Command::new("cp")
        .arg("-r")
        .arg(&source)
        .arg(&destination)
        .status()?;
    if !copied.success() {
        bail!("cp -r failed: {copied}");
    }
    let copy_time = started.elapsed();
    let deadline = Instant::now() + Duration::from_secs(600);
    let mut journaled = 0;
    while Instant::now() < deadline {
        let status = fim_json(&workspace, &["--local", "status", "--json"])?;
        journaled = status["journal_last_sequence"].as_u64().unwrap_or(0) - first;
        if journaled >= expected {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let all_time = started.elapsed();
    let (peak, rss) = memory_kib(pid)?;
    // Every copied path has a record (read from the database, not the stream).
    let output = workspace.fim(&[
        "--local", "changes", "--format", "jsonl", "--limit", "10000000",
    ]);
    let recorded: HashSet<String> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter_map(|record| {
            record["File"]["FileSystemPath"]
                .as_str()
                .map(str::to_string)
        })
        .collect();
    let mut missing = 0;
    for entry in walkdir(&destination)? {
        if !recorded.contains(&entry) {
            missing += 1;
        }
    }
    engine.stop();
    println!(
        "files {files}: cp -r {:.1}s, all journaled after {:.1}s; records {journaled}/{expected}, paths without a record {missing}",
        copy_time.as_secs_f64(),
        all_time.as_secs_f64()
    );
    let peak_mb = peak as f64 * 1024.0 / 1e6;
    println!(
        "fimd VmHWM {:.1} MiB = {peak_mb:.1} MB (idle before the copy {:.1} MiB), VmRSS after {:.1} MiB; target <= 100 MB: {}",
        peak as f64 / 1024.0,
        idle_hwm as f64 / 1024.0,
        rss as f64 / 1024.0,
        if peak_mb <= 100.0 { "PASS" } else { "MISS" }
    );
    if missing > 0 || journaled < expected {
        bail!("not every copied path was journaled");
    }
    Ok(())
}

/// Every path below `root`, the root included, as text.
fn walkdir(root: &Path) -> anyhow::Result<Vec<String>> {
    let mut out = vec![root.to_string_lossy().into_owned()];
    let mut stack = vec![root.to_path_buf()];
    while let Some(directory) = stack.pop() {
        for entry in std::fs::read_dir(&directory)? {
            let path = entry?.path();
            if path.is_dir() {
                stack.push(path.clone());
            }
            out.push(path.to_string_lossy().into_owned());
        }
    }
    Ok(out)
}
