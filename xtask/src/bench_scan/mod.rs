//! `cargo xtask bench scan`: how fast `fim scan` builds a baseline and rescans, beside AIDE
//! (the established peer) and b3sum over the same files (the hashing limit of this machine).
//!
//! Why side by side: machines here are noisy (2 shared cores, a shared disk), so every round
//! runs us and both peers on the same tree within the same minutes, in an order that rotates
//! from round to round, and the targets are judged on ratios of medians. Each tree is measured
//! cold (caches dropped before every run: what a baseline of a real host sees; the primary
//! numbers, see BENCHMARKS.md for why) and warm (the CPU cost alone). The trees are cached
//! under `.cache/bench/` (see [`tree`]).
//!
//! Modules: [`tree`] builds the trees, [`tools`] runs fim, AIDE and b3sum, [`measure`] times a
//! child with wait4, [`report`] prints the tables and the PASS/MISS verdicts.

mod measure;
mod report;
mod tools;
mod tree;

use std::{fs, path::Path, thread, time::Instant};

use anyhow::{Context as _, Result};
use clap::{Parser, ValueEnum};

use report::{Cache, Run, TreeResults};
use tree::{Source, Tree};

use crate::{setup, workspace_root};

#[derive(Parser, Debug)]
#[command(
    name = "cargo xtask bench scan",
    about = "Scan throughput, RSS, database size and rescan speed, beside AIDE and b3sum"
)]
struct Opts {
    /// Rounds per tree and cache state; the report gives medians. Three rounds of both trees
    /// take about 8 minutes on 2 cores, most of it AIDE.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
    rounds: u32,
    /// Smoke run: the 10k-file generated tree only.
    #[arg(long)]
    quick: bool,
    /// Which trees to measure (ignored with --quick).
    #[arg(long, value_enum, default_value_t = Trees::All)]
    trees: Trees,
    /// Which cache states to measure.
    #[arg(long, value_enum, default_value_t = Caches::Both)]
    cache: Caches,
    /// Measure AIDE and b3sum only (no fim build, no fim runs).
    #[arg(long)]
    peers_only: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Trees {
    /// The generated 100k-file tree.
    Gen,
    /// The copy of /usr.
    Usr,
    All,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Caches {
    Cold,
    Warm,
    Both,
}

/// The trees: a name under `.cache/bench/` and where it comes from.
const GENERATED: (&str, Source) = ("tree-100k", Source::Generated { files: 100_000 });
const QUICK: (&str, Source) = ("tree-10k", Source::Generated { files: 10_000 });
const USR: (&str, Source) = ("usr-copy", Source::Copy { from: "/usr" });

pub(crate) fn run(args: &[String]) -> Result<()> {
    let opts =
        Opts::parse_from(std::iter::once("cargo xtask bench scan".to_owned()).chain(args.to_vec()));
    let started = Instant::now();
    setup::scan_bench_tools()?;
    let fim = if opts.peers_only {
        None
    } else {
        Some(tools::fim_binary()?)
    };
    let cache_dir = workspace_root().join(".cache").join("bench");
    let specs: Vec<(&str, Source)> = match (opts.quick, opts.trees) {
        (true, _) => vec![QUICK],
        (false, Trees::Gen) => vec![GENERATED],
        (false, Trees::Usr) => vec![USR],
        (false, Trees::All) => vec![GENERATED, USR],
    };
    let trees = specs
        .into_iter()
        .map(|(name, source)| tree::prepare(&cache_dir, name, source))
        .collect::<Result<Vec<Tree>>>()?;
    let mut caches = Vec::new();
    if opts.cache != Caches::Warm {
        if measure::can_drop_caches() {
            caches.push(Cache::Cold);
        } else {
            eprintln!(
                "bench scan: warning: cannot write /proc/sys/vm/drop_caches (not root?); \
                 cold runs skipped"
            );
        }
    }
    if opts.cache != Caches::Cold {
        caches.push(Cache::Warm);
    }
    let workers = thread::available_parallelism().map_or(1, |n| n.get());
    let work = cache_dir.join("run");
    println!(
        "\n## scan benchmark: {} round(s), medians; {} CPUs; {}{}",
        opts.rounds,
        workers,
        tools::peer_versions(),
        if fim.is_none() {
            "; PEERS ONLY (fim not run)"
        } else {
            ""
        }
    );
    println!(
        "AIDE attributes: {}; every tool uses {workers} workers.",
        tools::AIDE_ATTRIBUTES
    );
    let mut verdicts = Vec::new();
    for tree in trees {
        let mut results = TreeResults::new(tree);
        for round in 0..opts.rounds as usize {
            for &cache in &caches {
                eprintln!(
                    "bench scan: {} round {}/{} {cache:?}",
                    results.tree.name,
                    round + 1,
                    opts.rounds
                );
                measure_round(&mut results, fim.as_deref(), &work, cache, round, workers)?;
            }
        }
        let (text, lines) = report::tree_report(&results, &caches, workers);
        print!("{text}");
        verdicts.extend(lines);
    }
    fs::remove_dir_all(&work).with_context(|| format!("removing {}", work.display()))?;
    if !verdicts.is_empty() {
        println!("\nTargets:");
        for line in &verdicts {
            println!("  {line}");
        }
    }
    println!(
        "\nbench scan: done in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// The measured units of a round; fim's rescan always follows its first scan.
#[derive(Clone, Copy)]
enum Unit {
    Fim,
    Aide,
    B3sum,
}

/// One round on one tree in one cache state: fim (first scan, rescan), AIDE and b3sum, in an
/// order rotated by `round` so that no tool always runs first (or last) in the round.
fn measure_round(
    results: &mut TreeResults,
    fim: Option<&Path>,
    work: &Path,
    cache: Cache,
    round: usize,
    workers: usize,
) -> Result<()> {
    if work.exists() {
        fs::remove_dir_all(work).with_context(|| format!("removing {}", work.display()))?;
    }
    fs::create_dir_all(work).with_context(|| format!("creating {}", work.display()))?;
    let tree = results.tree.clone();
    if cache == Cache::Warm {
        eprintln!("bench scan: warming the page cache (untimed b3sum pass)");
        tools::b3sum(&tree.path, workers)?;
    }
    let prepare = || -> Result<()> {
        if cache == Cache::Cold {
            measure::drop_caches()?;
        }
        Ok(())
    };
    let mut units = [Unit::Fim, Unit::Aide, Unit::B3sum];
    let len = units.len();
    units.rotate_left(round % len);
    for unit in units {
        match unit {
            Unit::Fim => {
                let Some(fim) = fim else { continue };
                let state = work.join("fim-state");
                let policy = work.join("policy.toml");
                if state.exists() {
                    fs::remove_dir_all(&state)
                        .with_context(|| format!("removing {}", state.display()))?;
                }
                fs::create_dir_all(&state)
                    .with_context(|| format!("creating {}", state.display()))?;
                tools::write_policy(&policy, &tree.path)?;
                prepare()?;
                let (sample, scan) = tools::fim_scan(fim, &state, &policy, false)?;
                results.add_scan(cache, Run::FimFirst, sample, scan);
                if scan.errors > 0 {
                    results.note(format!("fim first scan reported {} errors", scan.errors));
                }
                if results.database.is_none() {
                    results.database = Some((tools::database_bytes(&state)?, scan.files));
                }
                prepare()?;
                let (sample, rescan) = tools::fim_scan(fim, &state, &policy, false)?;
                results.add_scan(cache, Run::FimRescan, sample, rescan);
                if rescan.changes > 0 || rescan.bytes_hashed > 0 {
                    results.note(format!(
                        "fim rescan of the unchanged tree reported {} changes and hashed {} \
                         bytes",
                        rescan.changes, rescan.bytes_hashed
                    ));
                }
            }
            Unit::Aide => {
                let config = work.join("aide.conf");
                let database = work.join("aide.db");
                let _ = fs::remove_file(&database);
                tools::write_aide_config(&config, &tree.path, &database, workers)?;
                prepare()?;
                let sample = tools::aide_init(&config)?;
                results.add(cache, Run::AideInit, sample);
                let counts = (
                    tools::aide_entries(&database)?,
                    tools::aide_hashed(&database)?,
                );
                if counts != (tree.stats.entries(), tree.stats.files) {
                    results.note(format!(
                        "AIDE recorded {} entries and {} hashes; the tree has {} entries and \
                         {} regular files",
                        counts.0,
                        counts.1,
                        tree.stats.entries(),
                        tree.stats.files
                    ));
                }
                results.aide_entries = Some(counts);
                fs::remove_file(&database)
                    .with_context(|| format!("removing {}", database.display()))?;
            }
            Unit::B3sum => {
                prepare()?;
                let sample = tools::b3sum(&tree.path, workers)?;
                results.add(cache, Run::B3sum, sample);
            }
        }
    }
    Ok(())
}
