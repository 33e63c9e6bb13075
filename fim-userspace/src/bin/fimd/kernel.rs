//! Starting the kernel event source, shared by the daemon ([`crate::engine`]) and `--watch`.
use anyhow::Context as _;
use fim_engine::daemon::WatchRoot;
use fim_userspace::{ebpf_source::EbpfSource, loader, record::SourceItem, strategy::Strategy};
use tokio::sync::mpsc;

use crate::args::Args;

/// Chooses a strategy and starts the kernel pipeline, or returns None for scan-only after
/// saying in one line what is missing ([`loader::load_preferred`]).
pub(crate) async fn start_kernel_source(
    args: &Args,
    roots: Vec<WatchRoot>,
) -> anyhow::Result<Option<(Strategy, (EbpfSource, mpsc::Receiver<SourceItem>))>> {
    let Some((strategy, loaded)) =
        loader::load_preferred(args.strategy, &args.btf, args.ring_bytes)?
    else {
        return Ok(None);
    };
    let attached = loaded.attached.len();
    let (sender, receiver) = mpsc::channel(4096);
    let (source, warnings) =
        EbpfSource::start(loaded, roots.clone(), sender).context("starting the event source")?;
    for warning in warnings {
        tracing::warn!("{warning}");
    }
    let watched: Vec<String> = roots
        .iter()
        .map(|root| root.path.display().to_string())
        .collect();
    tracing::info!(strategy = %strategy, programs = attached, roots = ?watched, "monitoring started");
    Ok(Some((strategy, (source, receiver))))
}
