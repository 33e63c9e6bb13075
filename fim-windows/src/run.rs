//! The engine on the policy, fed by file, registry and service notifications, until told to stop:
//! by Ctrl-C in the foreground (`fimsvc run`), by the service control manager as a service.
use std::{future::Future, sync::Arc};

use anyhow::Context;
use fim_engine::{
    daemon::{Daemon, DaemonConfig, PolicySource},
    registry::read_windows::WindowsRegistry,
    service::read_windows::WindowsServices,
};
use tokio::sync::{mpsc, watch};

use crate::{
    api, file_source, registry_source, service_source::ServiceSource, usn_source, who_data, RunArgs,
};

/// Runs until `stop` completes; `started` is called once monitoring has begun (the service
/// reports SERVICE_RUNNING then, not before). Pending work is drained before it returns.
pub async fn run(
    args: RunArgs,
    stop: impl Future<Output = ()> + Send + 'static,
    started: impl FnOnce(),
) -> anyhow::Result<()> {
    // Shared by the push task (which learns it) and retention (which waits for it).
    let acknowledged =
        (!args.reporting.collectors.is_empty()).then(fim_engine::store::Acknowledged::default);
    let daemon = Daemon::open(DaemonConfig {
        state_dir: args.state_dir.clone(),
        policy: PolicySource::File(args.policy.clone()),
        print_records: args.print_records,
        scan_workers_override: None,
        // The policy file and state directory must be changeable by nobody but SYSTEM,
        // Administrators and fimsvc's own account (fim_engine::trust, owner and DACL).
        trusted_config_only: true,
        // No syslog on Windows: the chain head goes to fimsvc's own log.
        syslog_socket: std::path::PathBuf::new(),
        workspace_acknowledged: acknowledged.clone(),
    })
    .context("starting the engine")?;
    daemon.set_key_reader(Arc::new(WindowsRegistry));
    daemon.set_service_reader(Arc::new(WindowsServices));
    daemon.set_status("pid", &std::process::id().to_string());
    daemon.set_status("started", &fim_model::Timestamp::now().to_rfc3339());
    // Before any source starts: its first real-time records can already be attributed.
    let etw = who_data::start(&daemon);
    // Bound before monitoring starts: a taken pipe or a bad TLS file fails start-up.
    let api = api::start(&daemon, &args.api).await?;
    let (events_in, events) = mpsc::channel(4096);
    let files = start_files(&daemon, &events_in).await?;
    // What the change journals say happened while fimsvc was stopped (gaps become notices).
    let journal_roots = daemon.watch_roots();
    let journals = {
        let (state_dir, roots) = (args.state_dir.clone(), journal_roots.clone());
        tokio::task::spawn_blocking(move || usn_source::at_start(&state_dir, &roots))
            .await
            .context("reading the change journals")?
    };
    for gap in journals.gaps {
        let _ = events_in
            .send(fim_model::source::SourceItem::Gap(gap))
            .await;
    }
    let services = if daemon.has_service_entities() {
        Some(ServiceSource::start(events_in.clone()).context("starting the service source")?)
    } else {
        None
    };
    let (stopping_in, stopping) = watch::channel(false);
    let etw_lost = etw.clone().map(|session| {
        tokio::spawn(who_data::watch_lost(
            session,
            daemon.status_handle(),
            stopping.clone(),
        ))
    });
    let mut registry_stop = stopping.clone();
    let files_stop = stopping.clone();
    let files_events = events_in.clone();
    let (ready_in, ready) = tokio::sync::oneshot::channel();
    let registry = tokio::spawn(registry_source::supervise(
        daemon.key_roots(),
        events_in,
        async move {
            let _ = registry_stop.wait_for(|stopping| *stopping).await;
        },
        ready_in,
    ));
    // Monitoring begins when the watches are armed (a failure shows when the task is joined).
    let _ = ready.await;
    tracing::info!(
        services = services.is_some(),
        "monitoring started (file and registry notifications)"
    );
    started();
    save_cursors(&args.state_dir, &journal_roots).await;
    // A policy reload sends the new file roots: the file watches start again on them.
    let (root_updates, root_requests) = mpsc::channel(4);
    let files = tokio::spawn(file_source::supervise(
        files,
        root_requests,
        files_events,
        files_stop,
    ));
    let stopper = tokio::spawn(async move {
        stop.await;
        tracing::info!("stopping: finishing the events already read");
        let _ = stopping_in.send(true);
        if let Some(services) = services {
            let _ = tokio::task::spawn_blocking(move || services.stop()).await;
        }
    });
    // The push task reads the journal through its own read-only connection.
    let push = match acknowledged {
        Some(acknowledged) => args
            .reporting
            .start(
                &args.state_dir,
                "windows",
                env!("CARGO_PKG_VERSION"),
                acknowledged,
            )
            .context("reporting to the workspace")?,
        None => None,
    };
    let result = daemon.run(events, root_updates, stopping).await;
    if let Some(push) = push {
        push.abort();
    }
    // The engine has drained: now the API's streams end and its calls finish.
    if let Some(api) = api {
        api.stop().await;
    }
    result?;
    stopper.abort();
    if let Some(task) = etw_lost {
        let _ = task.await;
    }
    // The session stops (and its consumer thread ends) when the last handle goes.
    drop(etw);
    save_cursors(&args.state_dir, &journal_roots).await;
    let _ = files.await;
    match registry.await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(error)) => Err(error).context("watching the registry"),
        Err(error) => Err(anyhow::anyhow!("the registry source failed: {error}")),
    }
}

/// Stores where the change journals stand (off the async threads: it is device I/O).
async fn save_cursors(state_dir: &std::path::Path, roots: &[fim_engine::daemon::WatchRoot]) {
    let (state_dir, roots) = (state_dir.to_path_buf(), roots.to_vec());
    let _ = tokio::task::spawn_blocking(move || usn_source::save(&state_dir, &roots)).await;
}

/// Watches the daemon's file roots, armed before the start-up scan begins, so a change during
/// it is seen by one or both.
async fn start_files(
    daemon: &Daemon,
    events: &mpsc::Sender<fim_model::source::SourceItem>,
) -> anyhow::Result<file_source::FileSource> {
    let roots = daemon.watch_roots();
    daemon.set_source(
        "read-directory-changes, registry-notify",
        roots.iter().map(|root| root.path.clone()).collect(),
    );
    let events = events.clone();
    tokio::task::spawn_blocking(move || file_source::FileSource::start(&roots, &events))
        .await
        .context("starting the file source")?
        .context("starting the file source")
}
