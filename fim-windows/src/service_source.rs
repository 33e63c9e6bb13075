//! Service events: a registry notification on `HKLM\SYSTEM\CurrentControlSet\Services` (every
//! service's configuration lives there, so creating, deleting or reconfiguring one fires it at
//! once), and a poll of the service control manager every [`POLL`] for state changes, which
//! touch no registry value. Each becomes an [`ObjectEvent`] for a service, which makes the
//! engine sweep the service entities (one enumeration of the service control manager).
//!
//! `NotifyServiceStatusChangeW` would make state changes real time too; Wine 8.0 does not
//! implement it, so this source does not use it yet, and says so once in the log.
use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use fim_engine::registry::{
    notify_windows::{KeyNotifier, Notified},
    RegistryView,
};
use fim_model::{source::ObjectEvent, source::SourceItem, MonitoredObject, Timestamp};
use tokio::sync::mpsc;

/// Where the service control manager keeps every service's configuration.
const SERVICES_KEY: &str = r"HKEY_LOCAL_MACHINE\SYSTEM\CurrentControlSet\Services";
/// How often states are polled.
pub const POLL: Duration = Duration::from_secs(10);
/// How often the thread looks at the stop flag.
const TICK: Duration = Duration::from_millis(500);

pub struct ServiceSource {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<()>,
}

impl ServiceSource {
    pub fn start(events: mpsc::Sender<SourceItem>) -> std::io::Result<ServiceSource> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("fim-services".into())
            .spawn(move || watch_loop(&events, &flag))?;
        tracing::info!(
            "service states are polled every {}s (NotifyServiceStatusChangeW is not used); \
             configuration changes come from registry notifications on {SERVICES_KEY}",
            POLL.as_secs()
        );
        Ok(ServiceSource { stop, thread })
    }

    pub fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.thread.join();
    }
}

fn watch_loop(events: &mpsc::Sender<SourceItem>, stop: &AtomicBool) {
    let mut notifier = open();
    let mut last_poll = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        let fired = match &notifier {
            Some(watch) => matches!(watch.wait(TICK), Ok(Notified::Changed)),
            None => {
                std::thread::sleep(TICK);
                false
            }
        };
        if fired {
            // Re-armed before the engine reads, so a change meanwhile fires again.
            let rearmed = notifier.as_mut().is_some_and(|watch| watch.arm().is_ok());
            if !rearmed {
                notifier = open();
            }
            if !send(events, "registry-notification") {
                return;
            }
        }
        if last_poll.elapsed() >= POLL {
            last_poll = Instant::now();
            if notifier.is_none() {
                notifier = open();
            }
            if !send(events, "service-poll") {
                return;
            }
        }
    }
}

fn open() -> Option<KeyNotifier> {
    match KeyNotifier::open(SERVICES_KEY, RegistryView::Native, true) {
        Ok(Some(mut notifier)) => match notifier.arm() {
            Ok(()) => Some(notifier),
            Err(error) => {
                tracing::warn!("cannot watch {SERVICES_KEY}: {error}; polling only");
                None
            }
        },
        Ok(None) => None,
        Err(error) => {
            tracing::warn!("cannot watch {SERVICES_KEY}: {error}; polling only");
            None
        }
    }
}

fn send(events: &mpsc::Sender<SourceItem>, operation: &str) -> bool {
    let event = SourceItem::Object(ObjectEvent {
        object: MonitoredObject::Service("*".to_string()),
        operation: operation.to_string(),
        time: Timestamp::now(),
    });
    events.blocking_send(event).is_ok()
}
