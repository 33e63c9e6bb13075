//! What the scan benchmark prints: per tree and cache state, a table of medians and the
//! targets as ratios measured in the same run, each marked PASS or MISS.
//!
//! Why ratios: the machines are noisy, so absolute times move from run to run; a ratio of two
//! tools measured side by side in the same minutes moves much less. Absolute numbers are
//! printed for scale. The tables are Markdown so they paste into BENCHMARKS.md as they are.

use std::{collections::BTreeMap, fmt::Write as _, time::Duration};

use super::{measure::Sample, tools::ScanReport, tree::Tree};

/// Page cache state of a measurement.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Cache {
    /// Page cache, dentries and inodes dropped right before the run.
    Cold,
    /// Everything the run reads is already in memory.
    Warm,
}

impl Cache {
    fn describe(self) -> &'static str {
        match self {
            Cache::Cold => {
                "cold (primary): page cache, dentries and inodes dropped before every run"
            }
            Cache::Warm => "warm (secondary): the tree read once beforehand, page cache hot",
        }
    }
}

/// What was run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Run {
    /// `fim scan` into an empty state directory: the baseline, every file hashed.
    FimFirst,
    /// `fim scan` again on the unchanged tree: the metadata sweep.
    FimRescan,
    AideInit,
    B3sum,
}

/// Targets from the issue.
const VS_AIDE: f64 = 5.0;
const VS_B3SUM: f64 = 0.8;
const MAX_RSS_MB: f64 = 100.0;
const RESCAN_SPEEDUP: f64 = 10.0;

/// Everything measured on one tree.
pub(crate) struct TreeResults {
    pub tree: Tree,
    pub samples: BTreeMap<(Cache, Run), Vec<Sample>>,
    pub scans: BTreeMap<(Cache, Run), Vec<ScanReport>>,
    /// fim.db after the first scan (checkpointed), in bytes, and fim's reported file count.
    pub database: Option<(u64, u64)>,
    /// Entries in AIDE's database and how many of them carry a SHA-256.
    pub aide_entries: Option<(u64, u64)>,
    pub notes: Vec<String>,
}

impl TreeResults {
    pub fn new(tree: Tree) -> Self {
        TreeResults {
            tree,
            samples: BTreeMap::new(),
            scans: BTreeMap::new(),
            database: None,
            aide_entries: None,
            notes: Vec::new(),
        }
    }

    pub fn add(&mut self, cache: Cache, run: Run, sample: Sample) {
        self.samples.entry((cache, run)).or_default().push(sample);
    }

    pub fn add_scan(&mut self, cache: Cache, run: Run, sample: Sample, scan: ScanReport) {
        self.add(cache, run, sample);
        self.scans.entry((cache, run)).or_default().push(scan);
    }

    /// Notes a problem once (the same note from every round is printed once).
    pub fn note(&mut self, text: String) {
        if !self.notes.contains(&text) {
            self.notes.push(text);
        }
    }
}

/// The median wall and CPU time and the largest peak RSS over the rounds.
struct Summary {
    wall: Duration,
    cpu: Duration,
    max_rss: u64,
    rounds: usize,
}

fn median(mut values: Vec<Duration>) -> Duration {
    values.sort();
    let n = values.len();
    if n == 0 {
        Duration::ZERO
    } else if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2
    }
}

fn summarize(samples: &[Sample]) -> Summary {
    Summary {
        wall: median(samples.iter().map(|s| s.wall).collect()),
        cpu: median(samples.iter().map(|s| s.cpu).collect()),
        max_rss: samples.iter().map(|s| s.max_rss).max().unwrap_or(0),
        rounds: samples.len(),
    }
}

/// `1234567` as `1,234,567`.
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn mb(bytes: u64) -> f64 {
    bytes as f64 / 1e6
}

fn verdict(ok: bool) -> &'static str {
    if ok {
        "PASS"
    } else {
        "MISS"
    }
}

fn label(run: Run, workers: usize) -> String {
    match run {
        Run::FimFirst => "fim scan, first (baseline)".into(),
        Run::FimRescan => "fim scan, rescan (unchanged tree)".into(),
        Run::AideInit => format!("aide --init ({workers} workers, sha256)"),
        Run::B3sum => format!("b3sum via find + xargs -P{workers} (limit)"),
    }
}

/// The report for one tree, and its verdict lines (for the closing summary).
pub(crate) fn tree_report(
    results: &TreeResults,
    caches: &[Cache],
    workers: usize,
) -> (String, Vec<String>) {
    let tree = &results.tree;
    let stats = &tree.stats;
    let mut out = String::new();
    let mut verdicts = Vec::new();
    let _ = writeln!(
        out,
        "\n### {} ({})\n\n{} entries: {} regular files, {} dirs, {} symlinks, {} other; \
         {:.1} MB in regular files (MB = 10^6 bytes)",
        tree.name,
        tree.path.display(),
        thousands(stats.entries()),
        thousands(stats.files),
        thousands(stats.dirs),
        thousands(stats.symlinks),
        thousands(stats.other),
        mb(stats.bytes)
    );
    for &cache in caches {
        let _ = writeln!(out, "\n{}; medians.\n", cache.describe());
        let _ = writeln!(
            out,
            "| run | rounds | wall | files/s | MB/s | CPU (user+sys) | peak RSS |\n\
             | --- | --- | --- | --- | --- | --- | --- |"
        );
        let mut summaries = BTreeMap::new();
        for run in [Run::FimFirst, Run::FimRescan, Run::AideInit, Run::B3sum] {
            let Some(samples) = results.samples.get(&(cache, run)) else {
                continue;
            };
            let s = summarize(samples);
            let secs = s.wall.as_secs_f64().max(1e-9);
            let throughput = if run == Run::FimRescan {
                "-".to_owned()
            } else {
                format!("{:.1}", mb(stats.bytes) / secs)
            };
            let _ = writeln!(
                out,
                "| {} | {} | {:.2} s | {} | {throughput} | {:.2} s | {:.1} MB |",
                label(run, workers),
                s.rounds,
                secs,
                thousands((stats.files as f64 / secs) as u64),
                s.cpu.as_secs_f64(),
                mb(s.max_rss)
            );
            summaries.insert(run, s);
        }
        let wall = |run| summaries.get(&run).map(|s: &Summary| s.wall.as_secs_f64());
        let _ = writeln!(
            out,
            "\n| target ({}) | measured | goal | verdict |\n| --- | --- | --- | --- |",
            match cache {
                Cache::Cold => "cold",
                Cache::Warm => "warm",
            }
        );
        let Some(first) = wall(Run::FimFirst) else {
            let _ = writeln!(out, "| all | fim not measured (peers only) | - | - |");
            continue;
        };
        let mut target = |name: &str, measured: String, goal: &str, ok: bool| {
            let _ = writeln!(out, "| {name} | {measured} | {goal} | {} |", verdict(ok));
            verdicts.push(format!(
                "{} {:?} {name}: {measured} (goal {goal}) {}",
                tree.name,
                cache,
                verdict(ok)
            ));
        };
        if let Some(aide) = wall(Run::AideInit) {
            let ratio = aide / first;
            target(
                "fim throughput / AIDE",
                format!("{ratio:.2}x"),
                &format!(">= {VS_AIDE}x"),
                ratio >= VS_AIDE,
            );
        }
        if let Some(b3) = wall(Run::B3sum) {
            let ratio = b3 / first;
            target(
                "fim throughput / b3sum limit",
                format!("{ratio:.2}x"),
                &format!(">= {VS_B3SUM}x"),
                ratio >= VS_B3SUM,
            );
        }
        let rss = [Run::FimFirst, Run::FimRescan]
            .iter()
            .filter_map(|run| summaries.get(run).map(|s| s.max_rss))
            .max()
            .unwrap_or(0);
        target(
            "fim peak RSS",
            format!("{:.1} MB", mb(rss)),
            &format!("<= {MAX_RSS_MB} MB"),
            mb(rss) <= MAX_RSS_MB,
        );
        if let Some(rescan) = wall(Run::FimRescan) {
            let ratio = first / rescan.max(1e-9);
            target(
                "first scan time / rescan time",
                format!("{ratio:.1}x"),
                &format!(">= {RESCAN_SPEEDUP}x"),
                ratio >= RESCAN_SPEEDUP,
            );
        }
    }
    out.push('\n');
    if let Some((bytes, files)) = results.database {
        let _ = writeln!(
            out,
            "fim database after the first scan: {} bytes, {:.0} bytes per file ({} files \
             reported).",
            thousands(bytes),
            bytes as f64 / files.max(1) as f64,
            thousands(files)
        );
    }
    for (&(cache, run), scans) in &results.scans {
        if let Some(last) = scans.last() {
            let _ = writeln!(
                out,
                "{} {cache:?} (last round): files {}, directories {}, bytes_hashed {}, \
                 errors {}, changes {}, elapsed_ms {}.",
                label(run, workers),
                thousands(last.files),
                thousands(last.directories),
                thousands(last.bytes_hashed),
                last.errors,
                last.changes,
                thousands(last.elapsed_ms)
            );
        }
    }
    if let Some((entries, hashed)) = results.aide_entries {
        let _ = writeln!(
            out,
            "AIDE database: {} entries ({} expected), {} with a SHA-256 ({} regular files).",
            thousands(entries),
            thousands(stats.entries()),
            thousands(hashed),
            thousands(stats.files)
        );
    }
    for note in &results.notes {
        let _ = writeln!(out, "NOTE: {note}");
    }
    (out, verdicts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_and_thousands() {
        let ms = Duration::from_millis;
        assert_eq!(median(vec![ms(3), ms(1), ms(2)]), ms(2));
        assert_eq!(
            median(vec![ms(4), ms(1), ms(2), ms(3)]),
            Duration::from_micros(2500)
        );
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(thousands(999), "999");
    }
}
