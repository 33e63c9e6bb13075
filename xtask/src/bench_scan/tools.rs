//! The three things measured on each tree: our `fim scan`, AIDE's `--init`, and the b3sum
//! hashing limit, each set up so that the comparison is fair.
//!
//! Fairness choices (documented in BENCHMARKS.md as well):
//! - every tool gets all CPUs: `scan_workers = 0` for us, `num_workers = nproc` for AIDE
//!   (its default is 1 thread), `xargs -P nproc` for b3sum;
//! - AIDE records what we record, as close as its attributes allow: type, permissions, inode,
//!   link count, owner, group, size, mtime, ctime, symlink target, POSIX ACL, SELinux label,
//!   file capabilities, and one content hash. It has no BLAKE3, so the hash is SHA-256, the
//!   usual choice of AIDE users (a weaker hash like CRC32 would be no integrity monitor);
//! - its database is written uncompressed (`gzip_dbout=false`) to the same disk as ours.

use std::{
    fmt::Write as _,
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{bail, Context as _, Result};
use serde_json::Value;

use super::measure::{self, Sample};
use crate::{cargo, probe, run_cmd, target_dir};

/// The attributes AIDE records per entry (see the module docs).
pub(crate) const AIDE_ATTRIBUTES: &str = "p+ftype+i+l+n+u+g+s+m+c+acl+selinux+caps+sha256";

/// What `fim scan --json` reports.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct ScanReport {
    pub files: u64,
    pub directories: u64,
    pub bytes_hashed: u64,
    pub errors: u64,
    pub elapsed_ms: u64,
    pub changes: u64,
}

impl ScanReport {
    fn parse(stdout: &[u8]) -> Result<Self> {
        let text = String::from_utf8_lossy(stdout);
        // The object is the last non-empty line, should anything else ever be printed first.
        let line = text.lines().rev().find(|l| !l.trim().is_empty()).context(
            "`fim scan --json` printed nothing (does this fim implement the scan contract?)",
        )?;
        let value: Value = serde_json::from_str(line)
            .with_context(|| format!("`fim scan --json` printed no JSON object: {line}"))?;
        let field = |name: &str| {
            value
                .get(name)
                .and_then(Value::as_u64)
                .with_context(|| format!("`fim scan --json` output lacks \"{name}\": {line}"))
        };
        Ok(ScanReport {
            files: field("files")?,
            directories: field("directories")?,
            bytes_hashed: field("bytes_hashed")?,
            errors: field("errors")?,
            elapsed_ms: field("elapsed_ms")?,
            changes: field("changes")?,
        })
    }
}

/// The fim binary: `$FIM_BIN` if set, else built with `cargo build --release -p fim-cli`.
pub(crate) fn fim_binary() -> Result<PathBuf> {
    if let Some(bin) = std::env::var_os("FIM_BIN").filter(|b| !b.is_empty()) {
        let bin = PathBuf::from(bin);
        if !bin.is_file() {
            bail!("FIM_BIN={} is not a file", bin.display());
        }
        return Ok(bin);
    }
    run_cmd(cargo().args(["build", "--release", "-p", "fim-cli", "--bin", "fim"]))?;
    Ok(target_dir().join("release").join("fim"))
}

/// A TOML basic string holding `path`.
fn toml_string(path: &Path) -> Result<String> {
    let text = path
        .to_str()
        .with_context(|| format!("{} is not UTF-8", path.display()))?;
    let mut out = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => write!(out, "\\u{:04X}", c as u32)?,
            c => out.push(c),
        }
    }
    out.push('"');
    Ok(out)
}

/// Writes the policy that monitors `tree` recursively, with every CPU scanning.
pub(crate) fn write_policy(policy: &Path, tree: &Path) -> Result<()> {
    let text = format!(
        "[settings]\nscan_workers = 0\nscan_idle_io = false\n\n[[entity]]\nname = \"bench\"\n\
         kind = \"linux-file\"\npath = {}\nrecursive = true\n",
        toml_string(tree)?
    );
    fs::write(policy, text).with_context(|| format!("writing {}", policy.display()))
}

/// One `fim --state-dir DIR --policy POLICY scan [--full] --json`.
pub(crate) fn fim_scan(
    fim: &Path,
    state_dir: &Path,
    policy: &Path,
    full: bool,
) -> Result<(Sample, ScanReport)> {
    let mut cmd = Command::new(fim);
    cmd.arg("--state-dir")
        .arg(state_dir)
        .arg("--policy")
        .arg(policy)
        .arg("scan");
    if full {
        cmd.arg("--full");
    }
    cmd.arg("--json");
    let sample = measure::run(&mut cmd)?;
    let report = ScanReport::parse(&sample.stdout)?;
    Ok((sample, report))
}

/// The on-disk size of `DIR/fim.db` once its write-ahead log is folded in. fim should leave
/// no WAL behind (SQLite checkpoints when the last connection closes); if it does, sqlite3
/// checkpoints it, and without sqlite3 the WAL's size is added instead.
pub(crate) fn database_bytes(state_dir: &Path) -> Result<u64> {
    let db = state_dir.join("fim.db");
    let wal = state_dir.join("fim.db-wal");
    let wal_len = || fs::metadata(&wal).map_or(0, |m| m.len());
    if wal_len() > 0 {
        let checkpoint = probe(
            Command::new("sqlite3")
                .arg(&db)
                .arg("PRAGMA wal_checkpoint(TRUNCATE);"),
        );
        if !checkpoint.is_ok_and(|out| out.status.success()) {
            eprintln!(
                "bench scan: warning: could not checkpoint {}; counting the WAL",
                db.display()
            );
        }
    }
    let main = fs::metadata(&db)
        .with_context(|| format!("stat {}", db.display()))?
        .len();
    Ok(main + wal_len())
}

/// An AIDE rule matching `tree` and everything below it, and nothing beside it: AIDE rules
/// are regular expressions anchored only at the start, so `/x/tree` alone would also select
/// `/x/tree2`. Special characters are escaped; AIDE reads `%XX` as a byte.
fn aide_rule(tree: &Path) -> Result<String> {
    let text = tree
        .to_str()
        .with_context(|| format!("{} is not UTF-8", tree.display()))?;
    let mut rule = String::new();
    for c in text.chars() {
        match c {
            '.' | '^' | '$' | '*' | '+' | '?' | '(' | ')' | '[' | ']' | '{' | '}' | '|' | '\\' => {
                rule.push('\\');
                rule.push(c);
            }
            c if c.is_whitespace() || c == '%' || c == '#' || c == '@' => {
                write!(rule, "%{:02X}", c as u32)?;
            }
            c => rule.push(c),
        }
    }
    rule.push_str("(/|$)");
    Ok(rule)
}

/// Writes an AIDE config that selects `tree` only and writes its database to `database`.
pub(crate) fn write_aide_config(
    config: &Path,
    tree: &Path,
    database: &Path,
    workers: usize,
) -> Result<()> {
    let text = format!(
        "# Written by `cargo xtask bench scan`.\n\
         database_out=file:{}\n\
         gzip_dbout=false\n\
         num_workers={workers}\n\
         log_level=warning\n\
         report_url=stdout\n\
         FIMBENCH = {AIDE_ATTRIBUTES}\n\
         {} FIMBENCH\n",
        database.display(),
        aide_rule(tree)?
    );
    fs::write(config, text).with_context(|| format!("writing {}", config.display()))
}

/// One `aide --init` with `config`; its report goes to the captured stdout.
pub(crate) fn aide_init(config: &Path) -> Result<Sample> {
    let mut cmd = Command::new("aide");
    cmd.arg("--init")
        .arg(format!("--config={}", config.display()));
    measure::run(&mut cmd)
}

/// Entries in an uncompressed AIDE database (one line per path, each starting with `/`).
pub(crate) fn aide_entries(database: &Path) -> Result<u64> {
    let text = fs::read(database).with_context(|| format!("reading {}", database.display()))?;
    Ok(text
        .split(|&b| b == b'\n')
        .filter(|line| line.first() == Some(&b'/'))
        .count() as u64)
}

/// Entries with a SHA-256 in an AIDE database: the files it really hashed.
pub(crate) fn aide_hashed(database: &Path) -> Result<u64> {
    let text =
        fs::read_to_string(database).with_context(|| format!("reading {}", database.display()))?;
    let mut columns: Vec<&str> = Vec::new();
    let mut hashed = 0;
    for line in text.lines() {
        if let Some(spec) = line.strip_prefix("@@db_spec ") {
            columns = spec.split_whitespace().collect();
        } else if line.starts_with('/') {
            let sha = columns.iter().position(|&c| c == "sha256");
            let value = sha.and_then(|i| line.split(' ').nth(i));
            if value.is_some_and(|v| v != "0") {
                hashed += 1;
            }
        }
    }
    Ok(hashed)
}

/// The hashing limit: `find TREE -type f -print0 | xargs -0 -P<workers> b3sum > /dev/null`,
/// under bash with pipefail so that a failure anywhere fails the run.
pub(crate) fn b3sum(tree: &Path, workers: usize) -> Result<Sample> {
    let mut cmd = Command::new("bash");
    cmd.args([
        "-c",
        "set -o pipefail; find \"$1\" -type f -print0 | xargs -0 -P\"$2\" b3sum > /dev/null",
        "b3sum-limit",
    ])
    .arg(tree)
    .arg(workers.to_string());
    measure::run(&mut cmd)
}

/// Version lines of the peers, for the report header.
pub(crate) fn peer_versions() -> String {
    let first_line = |cmd: &mut Command| {
        probe(cmd).ok().and_then(|out| {
            let text = String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr);
            text.lines().next().map(|l| l.trim().to_owned())
        })
    };
    let aide = first_line(Command::new("aide").arg("--version"));
    let b3sum = first_line(Command::new("b3sum").arg("--version"));
    format!(
        "{}, {}",
        aide.unwrap_or_else(|| "aide (version unknown)".into()),
        b3sum.unwrap_or_else(|| "b3sum (version unknown)".into())
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aide_rule_escapes_and_bounds_the_tree() {
        let rule = aide_rule(Path::new("/w/.cache/bench/tree-10k")).unwrap();
        assert_eq!(rule, r"/w/\.cache/bench/tree-10k(/|$)");
        assert_eq!(aide_rule(Path::new("/a b")).unwrap(), "/a%20b(/|$)");
    }

    #[test]
    fn parses_the_scan_contract() {
        let out = br#"{"files": 3, "directories": 2, "bytes_hashed": 10, "errors": 0, "elapsed_ms": 7, "changes": 0}"#;
        let report = ScanReport::parse(out).unwrap();
        assert_eq!(
            (report.files, report.directories, report.bytes_hashed),
            (3, 2, 10)
        );
        assert!(ScanReport::parse(br#"{"files": 3}"#).is_err());
    }

    #[test]
    fn policy_paths_are_toml_strings() {
        assert_eq!(toml_string(Path::new("/a/\"b\\")).unwrap(), r#""/a/\"b\\""#);
    }
}
