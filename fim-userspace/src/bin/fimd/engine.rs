//! fimd's default mode: the kernel pipeline feeding the platform-independent engine.
//!
//! This file is the only place that knows both halves: it turns the policy's watch roots into
//! kernel roots, hands the event channel to [`Daemon::run`], applies root updates the engine
//! sends after a policy change, serves the gRPC API over the daemon's handle, and turns
//! signals into an orderly stop (the engine finishes first, then the API).
use anyhow::Context as _;
use fim_api::{group_flag, ApiConfig, RunningApi, TcpConfig};
use fim_engine::daemon::{Daemon, DaemonConfig, PolicySource, WatchRoot};
use tokio::{
    signal::unix::{signal, SignalKind},
    sync::{mpsc, watch},
};

use crate::{args::Args, kernel::start_kernel_source};

fn notify_systemd(state: &[sd_notify::NotifyState]) {
    if let Err(error) = sd_notify::notify(false, state) {
        tracing::debug!("systemd notification failed: {error}");
    }
}

fn api_config(args: &Args) -> Result<ApiConfig, fim_api::ApiError> {
    Ok(ApiConfig {
        socket: args.api_socket.clone(),
        owner_group: group_flag(&args.api_owner_group),
        reader_group: group_flag(&args.api_reader_group),
        tcp: TcpConfig::from_flags(
            args.api_tcp,
            &args.api_tls_cert,
            &args.api_tls_key,
            &args.api_client_ca,
            &args.api_clients,
        )?,
    })
}

/// Binds the API now (a bad configuration stops start-up) and serves it in the background;
/// None with `--no-api`.
async fn start_api(daemon: &Daemon, args: &Args) -> anyhow::Result<Option<RunningApi>> {
    if args.no_api {
        tracing::info!("the gRPC API is off (--no-api)");
        return Ok(None);
    }
    let config = api_config(args).context("starting the gRPC API")?;
    RunningApi::start(daemon.handle(), config)
        .await
        .map(Some)
        .context("starting the gRPC API")
}

pub(crate) async fn run(args: Args) -> anyhow::Result<()> {
    // Shared by the push task (which learns it) and retention (which waits for it).
    let acknowledged =
        (!args.reporting.collectors.is_empty()).then(fim_engine::store::Acknowledged::default);
    let daemon = Daemon::open(DaemonConfig {
        state_dir: args.state_dir.clone(),
        policy: PolicySource::File(args.policy.clone()),
        print_records: args.print_records,
        scan_workers_override: None,
        trusted_config_only: true,
        syslog_socket: args.syslog_socket.clone(),
        workspace_acknowledged: acknowledged.clone(),
    })
    .context("starting the engine")?;
    let roots = daemon.watch_roots();
    let (stop, stopping) = watch::channel(false);
    let (root_updates, root_requests) = mpsc::channel::<Vec<WatchRoot>>(4);
    daemon.set_status("pid", &std::process::id().to_string());
    daemon.set_status(
        "started",
        &fim_engine::change::Timestamp::now().to_rfc3339(),
    );
    let api = start_api(&daemon, &args).await?;
    // The push task reads the journal through its own read-only connection: journaling
    // never waits on it.
    let push = match acknowledged {
        Some(acknowledged) => args
            .reporting
            .start(
                &args.state_dir,
                "linux",
                env!("CARGO_PKG_VERSION"),
                acknowledged,
            )
            .context("reporting to the workspace")?,
        None => None,
    };
    let result = run_engine(
        daemon,
        &args,
        roots,
        root_updates,
        root_requests,
        stop,
        stopping,
    )
    .await;
    if let Some(push) = push {
        push.abort();
    }
    if let Some(api) = api {
        api.stop().await;
    }
    result
}

async fn run_engine(
    daemon: Daemon,
    args: &Args,
    roots: Vec<WatchRoot>,
    root_updates: mpsc::Sender<Vec<WatchRoot>>,
    mut root_requests: mpsc::Receiver<Vec<WatchRoot>>,
    stop: watch::Sender<bool>,
    stopping: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let mut terminate =
        signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    match start_kernel_source(args, roots.clone()).await? {
        Some((strategy, (source, events))) => {
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
                            Some(roots) => match source.update_roots(roots.clone()).await {
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
