//! Registry notifications as engine events: one `RegNotifyChangeKeyValue` per registry entity
//! (with subtree for recursive and wildcard entities), each notification an [`ObjectEvent`]
//! for the entity's key, which makes the engine sweep that entity's tree.
//!
//! Why this loses nothing: a notification is re-armed before the event is handed on, and the
//! engine reads the keys only after its coalescing window, so a change made after the read
//! began fires the re-armed notification and is read again. Notifications that coalesce (a
//! storm of writes gives fewer notifications than writes) lose nothing either, because the
//! sweep compares the whole tree with its baseline, not one change.
//!
//! A key that does not exist yet is watched through its nearest existing ancestor (without
//! subtree, so a busy parent such as `SOFTWARE` does not wake us for every write below it):
//! when the next level appears, the watch moves down, and once the key itself exists an event
//! makes the engine pick it up. A deleted key's notification fires, re-arming it fails, and it
//! is watched through its parent again until it is recreated.
use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    thread::JoinHandle,
    time::Duration,
};

use fim_engine::registry::{
    notify_windows::{wait_any, KeyNotifier},
    KeyRoot,
};
use fim_model::{source::ObjectEvent, source::SourceItem, MonitoredObject, Timestamp};
use tokio::sync::{mpsc, watch};

/// `WaitForMultipleObjects` waits on at most 64 handles: one thread per this many entities.
const PER_THREAD: usize = 64;
/// How often a thread looks at the stop flag and retries keys it could not open.
const POLL: Duration = Duration::from_millis(500);

pub struct RegistrySource {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl RegistrySource {
    /// Starts watching `roots`; events go to `events` until [`RegistrySource::stop`].
    pub fn start(
        roots: Vec<KeyRoot>,
        events: mpsc::Sender<SourceItem>,
    ) -> std::io::Result<RegistrySource> {
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        // Each thread says when its watches are armed: only then does monitoring begin.
        let (armed_in, armed) = std::sync::mpsc::channel::<()>();
        for (index, chunk) in roots.chunks(PER_THREAD).enumerate() {
            let chunk = chunk.to_vec();
            let stop = stop.clone();
            let events = events.clone();
            let armed_in = armed_in.clone();
            // The watches (handles) are made on the thread that waits on them.
            threads.push(
                std::thread::Builder::new()
                    .name(format!("fim-registry-{index}"))
                    .spawn(move || {
                        let watches = chunk.into_iter().map(Watch::new).collect();
                        watch_loop(watches, &events, &stop, &armed_in)
                    })?,
            );
        }
        drop(armed_in);
        // One word from each thread (a thread that died dropped its sender: recv fails).
        for _ in 0..threads.len() {
            if armed.recv().is_err() {
                break;
            }
        }
        Ok(RegistrySource { stop, threads })
    }

    /// Stops every thread (within [`POLL`]); the event channel closes when the last ends.
    pub fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads {
            let _ = thread.join();
        }
    }
}

/// Keeps a [`RegistrySource`] on the policy's registry entities until `stop` completes,
/// starting it again when a reload changes them (the reload's scan baselines new entities).
/// `ready` fires once the first watches are armed. The event channel closes when this
/// returns.
pub async fn supervise(
    mut roots: watch::Receiver<Vec<KeyRoot>>,
    events: mpsc::Sender<SourceItem>,
    stop: impl std::future::Future<Output = ()>,
    ready: tokio::sync::oneshot::Sender<()>,
) -> std::io::Result<()> {
    let first = roots.borrow_and_update().clone();
    tracing::info!(entities = first.len(), "watching the registry entities");
    let mut source = RegistrySource::start(first, events.clone())?;
    let _ = ready.send(());
    tokio::pin!(stop);
    loop {
        tokio::select! {
            () = &mut stop => break,
            changed = roots.changed() => {
                if changed.is_err() {
                    break;
                }
                let next = roots.borrow_and_update().clone();
                let old = std::mem::replace(&mut source, RegistrySource::start(next.clone(), events.clone())?);
                let _ = tokio::task::spawn_blocking(move || old.stop()).await;
                tracing::info!(entities = next.len(), "the registry entities changed: watching the new set");
            }
        }
    }
    let _ = tokio::task::spawn_blocking(move || source.stop()).await;
    Ok(())
}

/// One entity's watch: on its own key, or on the nearest existing ancestor while the key is
/// missing.
struct Watch {
    root: KeyRoot,
    notifier: Option<KeyNotifier>,
    /// The key watched when it is an ancestor of the entity's key.
    through: Option<String>,
}

impl Watch {
    fn new(root: KeyRoot) -> Self {
        Watch {
            root,
            notifier: None,
            through: None,
        }
    }

    /// Opens and arms the notification on the entity's key or its nearest existing ancestor.
    /// Says whether the entity's own key is watched now.
    fn open(&mut self) -> bool {
        let subtree = self.root.recursive || self.root.subkeys.is_some();
        let mut key = self.root.key.clone();
        let mut own = true;
        loop {
            match KeyNotifier::open(&key, self.root.view, own && subtree) {
                Ok(Some(mut notifier)) => match notifier.arm() {
                    Ok(()) => {
                        self.notifier = Some(notifier);
                        self.through = (!own).then(|| key.clone());
                        return own;
                    }
                    Err(error) => {
                        tracing::debug!(key, "cannot arm a registry notification: {error}");
                    }
                },
                Ok(None) => {}
                Err(error) => {
                    tracing::warn!(entity = %self.root.entity, key, "cannot watch a registry key: {error}");
                }
            }
            // Up one level; a hive always exists, so this ends there at the latest.
            match key.rsplit_once('\\') {
                Some((parent, _)) => key = parent.to_string(),
                None => {
                    self.notifier = None;
                    self.through = None;
                    return false;
                }
            }
            own = false;
        }
    }
}

fn watch_loop(
    mut watches: Vec<Watch>,
    events: &mpsc::Sender<SourceItem>,
    stop: &AtomicBool,
    armed: &std::sync::mpsc::Sender<()>,
) {
    for watch in &mut watches {
        if !watch.open() {
            tracing::info!(
                entity = %watch.root.entity,
                key = %watch.root.key,
                through = ?watch.through,
                "the registry key does not exist yet: watching its nearest existing parent"
            );
        }
    }
    let _ = armed.send(());
    while !stop.load(Ordering::Relaxed) {
        let armed: Vec<(usize, &KeyNotifier)> = watches
            .iter()
            .enumerate()
            .filter_map(|(index, watch)| watch.notifier.as_ref().map(|notifier| (index, notifier)))
            .collect();
        let notifiers: Vec<&KeyNotifier> = armed.iter().map(|(_, notifier)| *notifier).collect();
        let fired = if notifiers.is_empty() {
            std::thread::sleep(POLL);
            None
        } else {
            match wait_any(&notifiers, POLL) {
                Ok(fired) => {
                    fired.and_then(|position| armed.get(position).map(|(index, _)| *index))
                }
                Err(error) => {
                    tracing::error!("waiting for registry notifications failed: {error}");
                    std::thread::sleep(POLL);
                    None
                }
            }
        };
        match fired {
            Some(index) => {
                if let Some(watch) = watches.get_mut(index) {
                    rearm(watch);
                    if !send(events, &watch.root) {
                        return;
                    }
                }
            }
            None => {
                // Keys watched through a parent, or whose watch broke: try again.
                for watch in watches
                    .iter_mut()
                    .filter(|watch| watch.through.is_some() || watch.notifier.is_none())
                {
                    if watch.open() && !send(events, &watch.root) {
                        return;
                    }
                }
            }
        }
    }
}

/// Re-arms a watch that fired, before anyone reads the key (see the module docs); a watch
/// whose key went away (re-arming fails) or that watched a parent is opened again.
fn rearm(watch: &mut Watch) {
    let armed = watch.through.is_none()
        && watch
            .notifier
            .as_mut()
            .is_some_and(|notifier| notifier.arm().is_ok());
    if !armed {
        watch.open();
    }
}

/// Hands the entity's key to the engine; false once the engine stopped listening.
fn send(events: &mpsc::Sender<SourceItem>, root: &KeyRoot) -> bool {
    let event = SourceItem::Object(ObjectEvent {
        object: MonitoredObject::RegistryKey {
            key: root.key.clone(),
            value: None,
        },
        operation: "registry-notification".to_string(),
        time: Timestamp::now(),
    });
    events.blocking_send(event).is_ok()
}
