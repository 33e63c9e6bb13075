//! The `fim scan` progress line: paths seen, bytes hashed, and their rates, on stderr (the
//! engine only reports, through [`ScanProgress`]).
//!
//! Why a spinner and not a bar: the total is unknown until the walk ends, and counting first
//! would double the metadata work. Workers only bump atomics (bytes go through indicatif's own
//! atomic position); a steady tick thread redraws ten times a second, and indicatif draws
//! nothing when stderr is not a terminal, so a redirected `fim scan` stays clean.
use std::{
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};

use fim_engine::scan::ScanProgress;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};

/// The terminal line; draws nothing when stderr is not a terminal.
#[derive(Debug)]
pub struct Progress {
    bar: ProgressBar,
    paths: Arc<AtomicU64>,
}

impl Progress {
    pub fn new() -> Self {
        let paths = Arc::new(AtomicU64::new(0));
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
        let count = Arc::clone(&paths);
        let rate = Arc::clone(&paths);
        let template = "{spinner} {elapsed} {paths} paths ({paths_per_sec}/s), {bytes} hashed \
                        ({binary_bytes_per_sec})";
        match ProgressStyle::with_template(template) {
            Ok(style) => bar.set_style(
                style
                    .with_key(
                        "paths",
                        move |_: &ProgressState, out: &mut dyn std::fmt::Write| {
                            let _ = write!(out, "{}", count.load(Ordering::Relaxed));
                        },
                    )
                    .with_key(
                        "paths_per_sec",
                        move |state: &ProgressState, out: &mut dyn std::fmt::Write| {
                            let seconds = state.elapsed().as_secs_f64().max(0.001);
                            let per_sec = rate.load(Ordering::Relaxed) as f64 / seconds;
                            let _ = write!(out, "{per_sec:.0}");
                        },
                    ),
            ),
            // The template is a constant: this only guards against an indicatif change.
            Err(error) => tracing::debug!(%error, "progress template rejected"),
        }
        bar.enable_steady_tick(Duration::from_millis(100));
        Progress { bar, paths }
    }
}

impl ScanProgress for Progress {
    fn path_done(&self, bytes: u64) {
        self.paths.fetch_add(1, Ordering::Relaxed);
        if bytes > 0 {
            self.bar.inc(bytes);
        }
    }

    fn finish(&self) {
        self.bar.finish_and_clear();
    }
}
