//! Who-data for fimsvc's records: the ETW session (fim-engine's `etw::session_windows`)
//! feeding the engine's attributor, and the poll that reports the session's lost events.
//!
//! Losing who-data never loses detection: when the session cannot start (always under Wine
//! 8.0, which cannot consume ETW) fimsvc logs it once, says so in `fim status` and records
//! carry no actor.
use std::{sync::Arc, time::Duration};

use fim_engine::{
    daemon::{Daemon, StatusHandle},
    etw::{
        live::LiveWhoData,
        session_windows::{drive_devices, EtwSession, SESSION_NAME},
    },
};
use tokio::sync::watch;

/// How often the session's lost-event count is read.
const LOST_POLL: Duration = Duration::from_secs(10);

/// Starts the session and gives the daemon its who-data; None when ETW is not available.
pub fn start(daemon: &Daemon) -> Option<Arc<EtwSession>> {
    let devices = drive_devices();
    let pairs: Vec<(&str, &str)> = devices
        .iter()
        .map(|(device, drive)| (device.as_str(), drive.as_str()))
        .collect();
    let who = Arc::new(LiveWhoData::new(&pairs));
    match EtwSession::start(who.clone()) {
        Ok(session) => {
            daemon.set_attributor(who);
            tracing::info!(
                session = SESSION_NAME,
                "who-data: ETW session started (Kernel-Registry, Kernel-File, Kernel-Process)"
            );
            daemon.set_status("who-data", &format!("ETW session {SESSION_NAME}"));
            daemon.set_status("etw-events-lost", "0");
            Some(Arc::new(session))
        }
        Err(error) => {
            tracing::warn!(
                "who-data unavailable ({error}): records carry no actor; detection is unaffected"
            );
            daemon.set_status("who-data", &format!("unavailable: {error}"));
            None
        }
    }
}

/// Logs and reports every rise of the session's lost-event count until `stopping`.
pub async fn watch_lost(
    session: Arc<EtwSession>,
    status: StatusHandle,
    mut stopping: watch::Receiver<bool>,
) {
    let mut reported = 0u64;
    let mut ticks = tokio::time::interval(LOST_POLL);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = stopping.wait_for(|stopping| *stopping) => return,
        }
        match session.lost() {
            Ok(lost) if lost > reported => {
                tracing::warn!(
                    lost,
                    new = lost - reported,
                    "the ETW session lost events: who-data has holes (detection is unaffected)"
                );
                status.set("etw-events-lost", &lost.to_string());
                reported = lost;
            }
            Ok(_) => {}
            Err(error) => tracing::debug!("cannot query the ETW session: {error}"),
        }
    }
}
