//! The trees the scan benchmark walks, built once and cached under `.cache/bench/`.
//!
//! Why generated as well as copied: a copy of /usr is a real tree but differs from machine to
//! machine and is dominated by small files; the generated tree is the same everywhere (a fixed
//! seed and a fixed PRNG, no dependency whose output could change) and adds the large files a
//! real monitored host also has. Both are built into `NAME.partial` and renamed when complete,
//! then a marker `NAME.ready` records what the tree holds; a tree is reused only when its
//! marker matches the current generator, so an interrupted build is never measured.

use std::{
    fs,
    io::Write as _,
    os::unix::fs::symlink,
    path::{Path, PathBuf},
    process::Command,
    thread,
    time::Instant,
};

use anyhow::{bail, Context as _, Result};

use crate::run_cmd;

/// Bump when the generator's output changes, so cached trees are rebuilt.
const GENERATOR_VERSION: u32 = 1;
const SEED: u64 = 0x00F1_3BE9_C4A5_0001;
const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;
/// Share of files drawn from the large class (8-32 MiB): about 20 per 100k files.
const LARGE_SHARE: f64 = 0.0002;
/// Share of files drawn from the medium class (64 KiB - 1 MiB, log-uniform).
const MEDIUM_SHARE: f64 = 0.02;
/// Files per directory on average; directories nest up to `MAX_DEPTH` below the root.
const FILES_PER_DIR: u64 = 25;
const MAX_DEPTH: u32 = 7;
/// One symlink (to a file in the same directory) per this many files.
const FILES_PER_SYMLINK: u64 = 100;
const EXTENSIONS: &[&str] = &["conf", "so", "py", "txt", "dat", "json", "gz", "h"];

/// What a tree holds; all of it counts toward AIDE's entry count, only `files` and `bytes`
/// toward hashing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct TreeStats {
    /// Regular files.
    pub files: u64,
    /// Directories, the root included.
    pub dirs: u64,
    pub symlinks: u64,
    /// Fifos, sockets, devices.
    pub other: u64,
    /// Sum of the regular files' sizes (a hard-linked file counts once per path, as every tool
    /// measured here hashes it once per path).
    pub bytes: u64,
}

impl TreeStats {
    pub fn entries(&self) -> u64 {
        self.files + self.dirs + self.symlinks + self.other
    }

    fn to_marker(self, origin: &str) -> String {
        format!(
            "generator {GENERATOR_VERSION}\norigin {origin}\nfiles {}\ndirs {}\nsymlinks {}\n\
             other {}\nbytes {}\n",
            self.files, self.dirs, self.symlinks, self.other, self.bytes
        )
    }

    /// `None` unless the marker was written by this generator for the same origin.
    fn from_marker(text: &str, origin: &str) -> Option<Self> {
        let mut stats = TreeStats::default();
        let (mut version_ok, mut origin_ok) = (false, false);
        for line in text.lines() {
            let (key, value) = line.split_once(' ')?;
            match key {
                "generator" => version_ok = value == GENERATOR_VERSION.to_string(),
                "origin" => origin_ok = value == origin,
                "files" => stats.files = value.parse().ok()?,
                "dirs" => stats.dirs = value.parse().ok()?,
                "symlinks" => stats.symlinks = value.parse().ok()?,
                "other" => stats.other = value.parse().ok()?,
                "bytes" => stats.bytes = value.parse().ok()?,
                _ => {}
            }
        }
        (version_ok && origin_ok).then_some(stats)
    }
}

/// A tree ready to be measured.
#[derive(Clone, Debug)]
pub(crate) struct Tree {
    pub name: String,
    pub path: PathBuf,
    pub stats: TreeStats,
}

/// Where a tree comes from.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Source {
    /// The deterministic generator with this many regular files.
    Generated { files: u64 },
    /// `cp -a` of a directory of this machine.
    Copy { from: &'static str },
}

impl Source {
    fn origin(self) -> String {
        match self {
            Source::Generated { files } => format!("generated:{files}:{SEED:x}"),
            Source::Copy { from } => format!("copy:{from}"),
        }
    }
}

/// Returns the cached tree `name` under `cache`, building it first if needed.
pub(crate) fn prepare(cache: &Path, name: &str, source: Source) -> Result<Tree> {
    let path = cache.join(name);
    let marker = cache.join(format!("{name}.ready"));
    let origin = source.origin();
    if path.is_dir() {
        if let Ok(text) = fs::read_to_string(&marker) {
            if let Some(stats) = TreeStats::from_marker(&text, &origin) {
                eprintln!(
                    "bench scan: reusing {} ({})",
                    path.display(),
                    describe(&stats)
                );
                return Ok(Tree {
                    name: name.to_owned(),
                    path,
                    stats,
                });
            }
        }
    }
    let partial = cache.join(format!("{name}.partial"));
    for stale in [&path, &partial] {
        if stale.exists() {
            eprintln!("bench scan: removing stale {}", stale.display());
            fs::remove_dir_all(stale).with_context(|| format!("removing {}", stale.display()))?;
        }
    }
    let _ = fs::remove_file(&marker);
    fs::create_dir_all(cache).with_context(|| format!("creating {}", cache.display()))?;
    let started = Instant::now();
    match source {
        Source::Generated { files } => generate(&partial, files)?,
        Source::Copy { from } => run_cmd(Command::new("cp").arg("-a").arg(from).arg(&partial))?,
    }
    // Written data must be on disk before anything is timed, or writeback would run during
    // the first cold measurement.
    run_cmd(&mut Command::new("sync"))?;
    fs::rename(&partial, &path)
        .with_context(|| format!("renaming {} to {}", partial.display(), path.display()))?;
    let stats = walk(&path)?;
    fs::write(&marker, stats.to_marker(&origin))
        .with_context(|| format!("writing {}", marker.display()))?;
    eprintln!(
        "bench scan: built {} in {:.1} s ({})",
        path.display(),
        started.elapsed().as_secs_f64(),
        describe(&stats)
    );
    Ok(Tree {
        name: name.to_owned(),
        path,
        stats,
    })
}

pub(crate) fn describe(stats: &TreeStats) -> String {
    format!(
        "{} files, {} dirs, {} symlinks, {} other, {:.1} MB in regular files",
        stats.files,
        stats.dirs,
        stats.symlinks,
        stats.other,
        stats.bytes as f64 / 1e6
    )
}

/// Counts what is under `root` (the root included), never following symlinks.
pub(crate) fn walk(root: &Path) -> Result<TreeStats> {
    let mut stats = TreeStats {
        dirs: 1,
        ..TreeStats::default()
    };
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in fs::read_dir(&dir).with_context(|| format!("listing {}", dir.display()))? {
            let entry = entry.with_context(|| format!("listing {}", dir.display()))?;
            let meta = entry
                .metadata()
                .with_context(|| format!("stat {}", entry.path().display()))?;
            let kind = meta.file_type();
            if kind.is_dir() {
                stats.dirs += 1;
                pending.push(entry.path());
            } else if kind.is_file() {
                stats.files += 1;
                stats.bytes += meta.len();
            } else if kind.is_symlink() {
                stats.symlinks += 1;
            } else {
                stats.other += 1;
            }
        }
    }
    Ok(stats)
}

/// SplitMix64: tiny, fast, and fully specified here, so the tree never changes under us.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Rng(seed)
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in [0, n); n > 0.
    fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let word = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&word[..chunk.len()]);
        }
    }
}

/// The shape of a generated tree: directories (relative paths, parents first) and files.
struct Plan {
    dirs: Vec<PathBuf>,
    /// (directory index, size) per file; the file's name and content follow from its index.
    files: Vec<(usize, u64)>,
    /// (file index) per symlink; the link sits beside its target.
    symlinks: Vec<usize>,
}

fn file_size(rng: &mut Rng) -> u64 {
    let class = rng.unit();
    if class < LARGE_SHARE {
        8 * MIB + rng.below(24 * MIB + 1)
    } else if class < LARGE_SHARE + MEDIUM_SHARE {
        (64.0 * KIB as f64 * 16f64.powf(rng.unit())) as u64
    } else {
        // Mostly small, skewed toward the very small end like real configuration and source
        // trees (mean about 5.5 KiB).
        let u = rng.unit();
        (16.0 * KIB as f64 * u * u) as u64
    }
}

fn plan(files: u64) -> Plan {
    let mut rng = Rng::new(SEED);
    let dir_count = (files / FILES_PER_DIR).max(1) as usize;
    let mut dirs = vec![PathBuf::new()];
    let mut depth = vec![0u32];
    for index in 1..dir_count {
        // A random earlier directory as the parent (a random recursive tree), re-drawn a few
        // times when it is already at the depth limit, else the root.
        let parent = (0..4)
            .map(|_| rng.below(index as u64) as usize)
            .find(|&p| depth[p] < MAX_DEPTH)
            .unwrap_or(0);
        dirs.push(dirs[parent].join(format!("d{index:05}")));
        depth.push(depth[parent] + 1);
    }
    let files: Vec<(usize, u64)> = (0..files)
        .map(|_| {
            let dir = rng.below(dir_count as u64) as usize;
            (dir, file_size(&mut rng))
        })
        .collect();
    let symlinks = (0..files.len() as u64 / FILES_PER_SYMLINK)
        .map(|_| rng.below(files.len() as u64) as usize)
        .collect();
    Plan {
        dirs,
        files,
        symlinks,
    }
}

fn file_name(index: usize) -> String {
    format!("f{index:06}.{}", EXTENSIONS[index % EXTENSIONS.len()])
}

/// Writes the generated tree into `root`, files in parallel (one thread per CPU).
fn generate(root: &Path, files: u64) -> Result<()> {
    let plan = plan(files);
    let total: u64 = plan.files.iter().map(|&(_, size)| size).sum();
    eprintln!(
        "bench scan: generating {} files ({:.1} MB) in {} directories under {}",
        plan.files.len(),
        total as f64 / 1e6,
        plan.dirs.len(),
        root.display()
    );
    for dir in &plan.dirs {
        let path = root.join(dir);
        fs::create_dir_all(&path).with_context(|| format!("creating {}", path.display()))?;
    }
    let threads = thread::available_parallelism().map_or(1, |n| n.get());
    thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|worker| {
                let plan = &plan;
                scope.spawn(move || write_files(root, plan, worker, threads))
            })
            .collect();
        workers.into_iter().try_for_each(|w| {
            w.join()
                .unwrap_or_else(|_| bail!("a generator thread panicked"))
        })
    })?;
    for (n, &file) in plan.symlinks.iter().enumerate() {
        let (dir, _) = plan.files[file];
        let link = root.join(&plan.dirs[dir]).join(format!("l{n:05}"));
        symlink(file_name(file), &link).with_context(|| format!("creating {}", link.display()))?;
    }
    Ok(())
}

/// Writes every `stride`-th file starting at `first`; each file's content comes from its own
/// seed, so the split between threads does not change the tree.
fn write_files(root: &Path, plan: &Plan, first: usize, stride: usize) -> Result<()> {
    let mut buf = vec![0u8; MIB as usize];
    for index in (first..plan.files.len()).step_by(stride) {
        let (dir, size) = plan.files[index];
        let path = root.join(&plan.dirs[dir]).join(file_name(index));
        let mut rng = Rng::new(SEED ^ (index as u64 + 1).wrapping_mul(0xA076_1D64_78BD_642F));
        let mut file =
            fs::File::create(&path).with_context(|| format!("creating {}", path.display()))?;
        let mut left = size;
        while left > 0 {
            let n = left.min(buf.len() as u64) as usize;
            rng.fill(&mut buf[..n]);
            file.write_all(&buf[..n])
                .with_context(|| format!("writing {}", path.display()))?;
            left -= n as u64;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_is_deterministic_and_mostly_small() {
        let a = plan(2_000);
        let b = plan(2_000);
        assert_eq!(a.files, b.files);
        assert_eq!(a.dirs, b.dirs);
        let small = a.files.iter().filter(|&&(_, s)| s < 16 * KIB).count();
        assert!(small > 1_900, "{small} small files of 2000");
        assert!(a.files.iter().all(|&(_, s)| s <= 32 * MIB));
    }

    #[test]
    fn marker_round_trips_and_rejects_other_origins() {
        let stats = TreeStats {
            files: 3,
            dirs: 2,
            symlinks: 1,
            other: 0,
            bytes: 99,
        };
        let text = stats.to_marker("copy:/usr");
        assert_eq!(TreeStats::from_marker(&text, "copy:/usr"), Some(stats));
        assert_eq!(TreeStats::from_marker(&text, "copy:/etc"), None);
    }
}
