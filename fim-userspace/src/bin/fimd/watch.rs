//! `fimd --watch PATH`: a debugging tool, not the daemon. No baseline, no journal: each raw
//! kernel event under the paths is printed as one JSON line on stdout.
use anyhow::Context as _;
use fim_engine::daemon::WatchRoot;
use tokio::{
    io::AsyncWriteExt,
    signal::unix::{signal, SignalKind},
};

use crate::{args::Args, kernel::start_kernel_source};

/// Prints events until SIGINT/SIGTERM, then drains what the source already took and detaches.
pub(crate) async fn run(args: Args) -> anyhow::Result<()> {
    if !args.ring_bytes.is_power_of_two() || args.ring_bytes < 4096 {
        anyhow::bail!(
            "--ring-bytes {} must be a power of two of at least 4096",
            args.ring_bytes
        );
    }
    let roots: Vec<WatchRoot> = args.watch.iter().map(WatchRoot::recursive).collect();
    let mut terminate =
        signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;

    let Some((_, source)) = start_kernel_source(&args, roots).await? else {
        // Scan-only: nothing to stream until the scanner lands; wait for a signal.
        tokio::select! { _ = terminate.recv() => {}, _ = interrupt.recv() => {} }
        return Ok(());
    };
    let (source, mut events) = source;
    // Buffered: tokio's stdout hands every write to a blocking thread.
    let mut stdout = tokio::io::BufWriter::with_capacity(1 << 16, tokio::io::stdout());
    // After a signal, keep printing until the source closes the channel: nothing it already
    // took from the kernel is lost on a clean shutdown.
    loop {
        tokio::select! {
            item = events.recv() => {
                let Some(item) = item else { break };
                let mut line = serde_json::to_vec(&item).context("encoding an event")?;
                line.push(b'\n');
                stdout.write_all(&line).await.context("writing to stdout")?;
                if events.is_empty() {
                    stdout.flush().await.context("writing to stdout")?;
                }
            }
            _ = terminate.recv() => { tracing::info!("SIGTERM: detaching"); source.request_stop() }
            _ = interrupt.recv() => { tracing::info!("SIGINT: detaching"); source.request_stop() }
        }
    }
    stdout.flush().await.context("writing to stdout")?;
    source
        .join()
        .await
        .context("stopping the kernel pipeline")?;
    tracing::info!("all programs detached");
    Ok(())
}
