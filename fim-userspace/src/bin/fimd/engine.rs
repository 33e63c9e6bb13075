//! fimd's default mode: the kernel pipeline feeding the platform-independent engine.
//!
//! This file is the only place that knows both halves: it turns the policy's watch roots into
//! kernel roots, hands the event channel to [`Daemon::run`], applies root updates the engine
//! sends after a policy change, and turns signals into an orderly stop.
use anyhow::Context as _;
use fim_engine::daemon::{Daemon, DaemonConfig, PolicySource, WatchRoot};
use fim_userspace::roots::RootSpec;
use tokio::{
    signal::unix::{signal, SignalKind},
    sync::{mpsc, watch},
};

use crate::{start_kernel_source, Args};

fn kernel_roots(roots: &[WatchRoot]) -> Vec<RootSpec> {
    roots
        .iter()
        .map(|root| RootSpec {
            path: root.path.clone(),
            recursive: root.recursive,
        })
        .collect()
}

fn notify_systemd(state: &[sd_notify::NotifyState]) {
    if let Err(error) = sd_notify::notify(false, state) {
        tracing::debug!("systemd notification failed: {error}");
    }
}

pub(crate) async fn run(args: Args) -> anyhow::Result<()> {
    let daemon = Daemon::open(DaemonConfig {
        state_dir: args.state_dir.clone(),
        policy: PolicySource::File(args.policy.clone()),
        print_records: args.print_records,
        scan_workers_override: None,
    })
    .context("starting the engine")?;
    let roots = daemon.watch_roots();
    let mut terminate =
        signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let (stop, stopping) = watch::channel(false);
    let (root_updates, mut root_requests) = mpsc::channel::<Vec<WatchRoot>>(4);
    daemon.set_status("pid", &std::process::id().to_string());
    daemon.set_status("started", &fim_engine::change::now_rfc3339());
    daemon.set_status(
        "roots",
        &roots
            .iter()
            .map(|root| fim_engine::path_text::display_path(&root.path))
            .collect::<Vec<_>>()
            .join(" "),
    );
    match start_kernel_source(&args, kernel_roots(&roots)).await? {
        Some((strategy, (source, events))) => {
            daemon.set_status("strategy", &strategy.to_string());
            daemon.set_source(
                &strategy.to_string(),
                roots.iter().map(|root| root.path.clone()).collect(),
            );
            notify_systemd(&[
                sd_notify::NotifyState::Ready,
                sd_notify::NotifyState::Status(&format!("monitoring ({strategy})")),
            ]);
            let glue = tokio::spawn(async move {
                loop {
                    tokio::select! {
                        roots = root_requests.recv() => match roots {
                            Some(roots) => match source.update_roots(kernel_roots(&roots)).await {
                                Ok(warnings) => {
                                    for warning in warnings {
                                        tracing::warn!("{warning}");
                                    }
                                    tracing::info!(roots = roots.len(), "kernel roots updated");
                                }
                                Err(error) => tracing::error!("cannot update the kernel roots: {error}"),
                            },
                            None => break,
                        },
                        _ = terminate.recv() => { tracing::info!("SIGTERM: stopping"); break }
                        _ = interrupt.recv() => { tracing::info!("SIGINT: stopping"); break }
                    }
                }
                notify_systemd(&[sd_notify::NotifyState::Stopping]);
                source.request_stop();
                let _ = stop.send(true);
                source
            });
            daemon.run(events, root_updates, stopping).await?;
            let source = glue.await.context("the signal task failed")?;
            source
                .join()
                .await
                .context("stopping the kernel pipeline")?;
            tracing::info!("all programs detached");
        }
        None => {
            // start_kernel_source already said why, loudly, in one line.
            daemon.set_status("strategy", "scan-only");
            daemon.set_source(
                "scan-only",
                roots.iter().map(|root| root.path.clone()).collect(),
            );
            notify_systemd(&[
                sd_notify::NotifyState::Ready,
                sd_notify::NotifyState::Status("scan-only: no kernel events"),
            ]);
            // Root updates have nowhere to go in scan-only mode.
            drop(root_requests);
            let (events_in, events) = mpsc::channel(1);
            tokio::spawn(async move {
                tokio::select! { _ = terminate.recv() => {}, _ = interrupt.recv() => {} }
                let _ = stop.send(true);
                drop(events_in);
            });
            daemon.run(events, root_updates, stopping).await?;
        }
    }
    Ok(())
}
