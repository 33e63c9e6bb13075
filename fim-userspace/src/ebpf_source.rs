//! The eBPF event source: ring buffer -> decode -> path resolution -> [`SourceItem`]s.
//!
//! One task owns the loaded programs and their maps. It drains the ring buffer when it is
//! readable, pairs entry events with their syscall results, turns every increase of the
//! kernel's drop counters into a gap notice, and applies root changes to the maps without
//! reloading anything. Dropping the task (shutdown) detaches every program.
use std::{
    path::PathBuf,
    time::{Duration, Instant},
};

use aya::maps::{
    lpm_trie::Key, Array, HashMap as BpfHashMap, LpmTrie, MapData, PerCpuArray, RingBuf,
};
use fim_common::{
    maps,
    roots::{InodeEntry, InodeKey, PrefixData, PrefixEntry},
};
use fim_engine::daemon::WatchRoot;
use tokio::{
    io::unix::AsyncFd,
    sync::{mpsc, oneshot, watch},
    task::JoinHandle,
};

use crate::{
    assemble::{State, RESULT_WAIT},
    loader::Loaded,
    record::{FileEvent, GapNotice, SourceItem},
    roots::{kernel_dev, plan_with_links, RootPlan, SymlinkAlias},
};

/// How soon the ring is read again after a batch (the kernel skips wakeups for 1 ms).
const FOLLOW_UP: Duration = Duration::from_millis(2);
/// How often drop counters and stale entries are checked.
const TICK: Duration = Duration::from_millis(100);

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("BPF map {0} is missing from the object")]
    MissingMap(&'static str),
    #[error("BPF map {name}: {source}")]
    Map {
        name: &'static str,
        source: aya::maps::MapError,
    },
    #[error(
        "the policy needs {needed} {what} entries in the kernel, more than the {limit} it has \
         room for; monitor a common parent directory recursively instead of its children one by one"
    )]
    TooManyRoots {
        what: &'static str,
        needed: usize,
        limit: u32,
    },
    #[error("cannot poll the ring buffer: {0}")]
    Poll(std::io::Error),
    #[error("the event source has stopped")]
    Stopped,
}

enum Command {
    UpdateRoots(
        Vec<WatchRoot>,
        oneshot::Sender<Result<Vec<String>, SourceError>>,
    ),
}

/// Handle to the running source.
pub struct EbpfSource {
    commands: mpsc::Sender<Command>,
    shutdown: watch::Sender<bool>,
    task: JoinHandle<Result<(), SourceError>>,
}

struct KernelMaps {
    inodes: BpfHashMap<MapData, InodeKey, InodeEntry>,
    prefixes: LpmTrie<MapData, PrefixData, PrefixEntry>,
    drops: PerCpuArray<MapData, u64>,
    /// Bumped whenever the roots change: the kernel's "outside the roots" cache goes stale.
    generation: Array<MapData, u32>,
}

impl KernelMaps {
    fn bump_generation(&mut self) {
        let next = self.generation.get(&0, 0).unwrap_or(0).wrapping_add(1);
        if let Err(error) = self.generation.set(0, next, 0) {
            tracing::warn!("cannot bump the roots generation: {error}");
        }
    }
}

impl EbpfSource {
    /// Starts consuming. Returns the warnings of the initial root plan.
    pub fn start(
        mut loaded: Loaded,
        roots: Vec<WatchRoot>,
        output: mpsc::Sender<SourceItem>,
    ) -> Result<(Self, Vec<String>), SourceError> {
        let take = |ebpf: &mut aya::Ebpf, name: &'static str| {
            ebpf.take_map(name).ok_or(SourceError::MissingMap(name))
        };
        let ring = RingBuf::try_from(take(&mut loaded.ebpf, maps::EVENTS)?).map_err(|source| {
            SourceError::Map {
                name: maps::EVENTS,
                source,
            }
        })?;
        let mut kernel_maps = KernelMaps {
            inodes: BpfHashMap::try_from(take(&mut loaded.ebpf, maps::INODES)?).map_err(
                |source| SourceError::Map {
                    name: maps::INODES,
                    source,
                },
            )?,
            prefixes: LpmTrie::try_from(take(&mut loaded.ebpf, maps::PREFIXES)?).map_err(
                |source| SourceError::Map {
                    name: maps::PREFIXES,
                    source,
                },
            )?,
            drops: PerCpuArray::try_from(take(&mut loaded.ebpf, maps::DROPS)?).map_err(
                |source| SourceError::Map {
                    name: maps::DROPS,
                    source,
                },
            )?,
            generation: Array::try_from(take(&mut loaded.ebpf, maps::ROOTS_GENERATION)?).map_err(
                |source| SourceError::Map {
                    name: maps::ROOTS_GENERATION,
                    source,
                },
            )?,
        };
        let mut state = State::new(RootPlan::default());
        let warnings = state.apply_roots(&mut kernel_maps, &roots)?;
        state.track_preexisting_writers();
        let ring = register(ring)?;
        let (commands, command_rx) = mpsc::channel(8);
        let (shutdown, shutdown_rx) = watch::channel(false);
        let task = tokio::spawn(run(
            loaded,
            ring,
            kernel_maps,
            state,
            command_rx,
            shutdown_rx,
            output,
        ));
        Ok((
            Self {
                commands,
                shutdown,
                task,
            },
            warnings,
        ))
    }

    /// Replaces the monitored roots; the kernel follows at once, without reloading.
    pub async fn update_roots(&self, roots: Vec<WatchRoot>) -> Result<Vec<String>, SourceError> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(Command::UpdateRoots(roots, reply))
            .await
            .map_err(|_| SourceError::Stopped)?;
        answer.await.map_err(|_| SourceError::Stopped)?
    }

    /// Asks the source to stop. It detaches and closes the event channel once the events
    /// already taken from the ring are handed over; keep reading until the channel ends.
    pub fn request_stop(&self) {
        let _ = self.shutdown.send(true);
    }

    /// Waits for the source to finish (after [`Self::request_stop`]).
    pub async fn join(self) -> Result<(), SourceError> {
        self.task.await.map_err(|_| SourceError::Stopped)?
    }

    /// Stops at once and detaches, dropping events not yet handed over (for callers that
    /// no longer read the channel).
    pub async fn stop(self) -> Result<(), SourceError> {
        self.task.abort();
        match self.task.await {
            Ok(result) => result,
            Err(error) if error.is_cancelled() => Ok(()),
            Err(_) => Err(SourceError::Stopped),
        }
    }
}

async fn run(
    loaded: Loaded,
    mut ring: AsyncFd<RingBuf<MapData>>,
    mut kernel_maps: KernelMaps,
    mut state: State,
    mut commands: mpsc::Receiver<Command>,
    mut shutdown: watch::Receiver<bool>,
    output: mpsc::Sender<SourceItem>,
) -> Result<(), SourceError> {
    let Loaded { ebpf, logger, .. } = loaded;
    let mut logger = match logger {
        Some(logger) => register(logger).ok(),
        None => None,
    };
    let mut tick = tokio::time::interval(TICK);
    // The kernel wakes us at most once a millisecond per CPU; after a batch, look again
    // shortly for records it sent without a wakeup.
    let mut follow_up: Option<tokio::time::Instant> = None;
    // Roots being planned on a blocking thread, and who asked for them.
    let mut planning: Option<tokio::task::JoinHandle<RootPlan>> = None;
    let mut planned_reply = None;
    loop {
        let mut ready = Vec::new();
        tokio::select! {
            guard = ring.readable_mut() => {
                let mut guard = guard.map_err(SourceError::Poll)?;
                let drained = drain(guard.get_inner_mut(), &mut state, &mut ready);
                guard.clear_ready();
                follow_up = (drained > 0).then(|| tokio::time::Instant::now() + FOLLOW_UP);
            }
            _ = tokio::time::sleep_until(follow_up.unwrap_or_else(tokio::time::Instant::now)), if follow_up.is_some() => {
                let drained = drain(ring.get_mut(), &mut state, &mut ready);
                follow_up = (drained > 0).then(|| tokio::time::Instant::now() + FOLLOW_UP);
            }
            _ = tick.tick() => {
                state.expire_pending(&mut ready, Instant::now());
                state.confirm_symlinks(Instant::now());
                state.processes.forget();
                let time = state.clock.now_rfc3339();
                ready.extend(state.writers.poll(Instant::now(), &time).into_iter().map(SourceItem::Change));
                state.check_drops(&kernel_maps.drops, &mut ready);
            }
            Some(guard) = async { match logger.as_mut() { Some(fd) => Some(fd.readable_mut().await), None => None } } => {
                if let Ok(mut guard) = guard {
                    guard.get_inner_mut().flush();
                    guard.clear_ready();
                }
            }
            command = commands.recv(), if planning.is_none() => match command {
                Some(Command::UpdateRoots(roots, reply)) => {
                    // Planning stats every root and its ancestors (seconds for 20,000
                    // roots): off this task, which must keep draining the ring meanwhile.
                    let links = state.symlinks.clone();
                    planning = Some(tokio::task::spawn_blocking(move || plan_with_links(&roots, &links)));
                    planned_reply = Some(reply);
                }
                None => break,
            },
            planned = fim_engine::task::finished(&mut planning) => {
                planning = None;
                let applied = match planned {
                    Ok(next) => state.apply_plan(&mut kernel_maps, next),
                    Err(_) => Err(SourceError::Stopped),
                };
                if let Some(reply) = planned_reply.take() {
                    let _ = reply.send(applied);
                }
            }
            _ = shutdown.changed() => break,
        }
        for link in std::mem::take(&mut state.new_links) {
            state.register_link(&mut kernel_maps, &link);
        }
        if std::mem::take(&mut state.writer_table_full) {
            tracing::warn!("too many files open for writing to track; rescanning every root");
            ready.push(SourceItem::Gap(GapNotice::for_files(
                state.plan.root_paths(&[0]),
                0,
                state.clock.now_rfc3339(),
            )));
        }
        if state.replan_requested {
            state.replan_requested = false;
            let roots: Vec<WatchRoot> = state
                .plan
                .roots
                .values()
                .map(|root| root.spec.clone())
                .collect();
            if let Err(error) = state.apply_roots(&mut kernel_maps, &roots) {
                tracing::warn!(
                    "re-registering roots after a missing root appeared failed: {error}"
                );
            }
        }
        for item in ready {
            if output.send(item).await.is_err() {
                break;
            }
        }
    }
    // A clean stop loses nothing already in the ring: drain it, release events still
    // waiting for a result (marked result_unknown), and report any last drops.
    let mut ready = Vec::new();
    drain(ring.get_mut(), &mut state, &mut ready);
    state.expire_pending(&mut ready, Instant::now() + 2 * RESULT_WAIT);
    state.check_drops(&kernel_maps.drops, &mut ready);
    for item in ready {
        if output.send(item).await.is_err() {
            break;
        }
    }
    // Programs detach when the object is dropped. This takes 3.5 to 6 s for ~90 tracepoint
    // programs: each perf tracepoint's teardown waits for a tracepoint grace period under
    // the kernel's event_mutex, so the waits cannot overlap (detaching from 16 threads was
    // tried and took as long).
    drop(ebpf);
    Ok(())
}

/// Reads every record the ring holds now; returns how many.
fn drain(ring: &mut RingBuf<MapData>, state: &mut State, ready: &mut Vec<SourceItem>) -> usize {
    let mut count = 0;
    while let Some(record) = ring.next() {
        state.handle_record(&record, ready);
        count += 1;
    }
    count
}

impl State {
    /// Tracks the writable descriptors and shared mappings that existed before the programs
    /// were attached (see `preexisting.rs`).
    fn track_preexisting_writers(&mut self) {
        let found = crate::preexisting::find(&self.plan, std::process::id());
        for (index, writer) in found.iter().enumerate() {
            let id = index as u64 + 1;
            let template = crate::preexisting::template(writer, self.clock.now_rfc3339());
            tracing::info!(
                pid = writer.pid,
                process = %template.comm,
                path = %writer.path.display(),
                mapped = writer.mapped,
                "file already open for writing at start-up; tracking it"
            );
            self.writers.opened(id, writer.path.clone(), template);
            if writer.mapped {
                self.writers.mapped(id, writer.pid);
            }
        }
    }

    fn apply_roots(
        &mut self,
        kernel_maps: &mut KernelMaps,
        roots: &[WatchRoot],
    ) -> Result<Vec<String>, SourceError> {
        let next = plan_with_links(roots, &self.symlinks);
        self.apply_plan(kernel_maps, next)
    }

    /// Writes a plan into the kernel maps: what it dropped is removed, what is new or changed
    /// is written (the rest is left as it is: 20,000 roots are 300,000 map entries).
    fn apply_plan(
        &mut self,
        kernel_maps: &mut KernelMaps,
        next: RootPlan,
    ) -> Result<Vec<String>, SourceError> {
        self.symlinks.retain(SymlinkAlias::holds);
        let in_sync = self.maps_match_plan;
        // Refused before anything changes: the roots in force stay whole.
        for (what, needed, limit) in [
            ("inode", next.inodes.len(), maps::MAX_INODES),
            ("path prefix", next.prefixes.len(), maps::MAX_PREFIXES),
        ] {
            if needed > limit as usize {
                return Err(SourceError::TooManyRoots {
                    what,
                    needed,
                    limit,
                });
            }
        }
        let map_error = |name| move |source| SourceError::Map { name, source };
        // Until every write below has gone through, the maps hold neither plan.
        self.maps_match_plan = false;
        for key in self
            .plan
            .inodes
            .keys()
            .filter(|key| !next.inodes.contains_key(key))
        {
            let _ = kernel_maps.inodes.remove(key);
        }
        for ((bits, data), _) in self
            .plan
            .prefixes
            .iter()
            .filter(|(key, _)| !next.prefixes.contains_key(key))
        {
            let _ = kernel_maps.prefixes.remove(&Key::new(*bits, *data));
        }
        for (key, entry) in &next.inodes {
            if in_sync && self.plan.inodes.get(key) == Some(entry) {
                continue;
            }
            kernel_maps
                .inodes
                .insert(key, entry, 0)
                .map_err(map_error(maps::INODES))?;
        }
        for ((bits, data), entry) in &next.prefixes {
            if in_sync && self.plan.prefixes.get(&(*bits, *data)) == Some(entry) {
                continue;
            }
            kernel_maps
                .prefixes
                .insert(&Key::new(*bits, *data), entry, 0)
                .map_err(map_error(maps::PREFIXES))?;
        }
        for (id, root) in &next.roots {
            let seen = self.drops_seen.get(id).copied();
            if seen.is_none() {
                let current = kernel_maps
                    .drops
                    .get(id, 0)
                    .map(|values| values.iter().sum())
                    .unwrap_or(0);
                self.drops_seen.insert(*id, current);
            }
            tracing::debug!(id, path = %root.path.display(), exists = root.exists, "root registered");
        }
        self.drops_seen.entry(0).or_insert_with(|| {
            kernel_maps
                .drops
                .get(&0, 0)
                .map(|v| v.iter().sum())
                .unwrap_or(0)
        });
        let warnings = next.warnings.clone();
        self.plan = next;
        self.maps_match_plan = true;
        kernel_maps.bump_generation();
        self.paths.clear();
        Ok(warnings)
    }

    /// Registers the inode of a new hard link under the monitored name.
    fn register_link(&mut self, kernel_maps: &mut KernelMaps, link: &FileEvent) {
        use std::os::unix::fs::MetadataExt;
        let new = PathBuf::from(&link.path);
        let old = link.old_path.as_ref().map(PathBuf::from);
        let (anchor, root_id) = match (
            self.plan.root_of(&new),
            old.as_ref()
                .and_then(|old| self.plan.root_of(old).map(|id| (old, id))),
        ) {
            (_, Some((old, id))) => (old.clone(), id),
            (Some(id), None) => (new.clone(), id),
            (None, None) => return,
        };
        tracing::trace!(new = %new.display(), anchor = %anchor.display(), "registering hard link");
        let Ok(metadata) = std::fs::symlink_metadata(&new) else {
            return;
        };
        if !metadata.is_file() {
            return;
        }
        let key = InodeKey {
            dev: kernel_dev(metadata.dev()),
            _pad: 0,
            ino: metadata.ino(),
        };
        let entry = InodeEntry {
            kind: fim_common::roots::INODE_ROOT,
            max_depth: 0,
            _pad: 0,
            id: root_id,
        };
        if self.plan.inodes.contains_key(&key) {
            return;
        }
        match kernel_maps.inodes.insert(key, entry, 0) {
            Ok(()) => {
                tracing::debug!(link = %new.display(), anchor = %anchor.display(), "hard link registered");
                self.plan.inodes.insert(key, entry);
                self.plan.anchors.insert(key, anchor);
                kernel_maps.bump_generation();
            }
            Err(error) => tracing::warn!("cannot register hard link {}: {error}", new.display()),
        }
    }

    fn check_drops(&mut self, drops: &PerCpuArray<MapData, u64>, ready: &mut Vec<SourceItem>) {
        let mut affected = Vec::new();
        let mut total = 0;
        for (id, seen) in self.drops_seen.iter_mut() {
            let Ok(values) = drops.get(id, 0) else {
                continue;
            };
            let now: u64 = values.iter().sum();
            if now > *seen {
                total += now - *seen;
                affected.push(*id);
                *seen = now;
            }
        }
        if total > 0 {
            affected.sort_unstable();
            let roots = self.plan.root_paths(&affected);
            tracing::warn!(
                dropped = total,
                ?affected,
                "kernel ring buffer overflowed; events were lost"
            );
            ready.push(SourceItem::Gap(GapNotice::for_files(
                roots,
                total,
                self.clock.now_rfc3339(),
            )));
        }
    }
}

/// Registers a map-backed fd with tokio's reactor.
fn register<T: std::os::fd::AsRawFd>(inner: T) -> Result<AsyncFd<T>, SourceError> {
    // SAFETY: the fd is owned by `inner`, which the AsyncFd owns, so it stays open for as long
    // as it is registered.
    unsafe { AsyncFd::register(inner) }.map_err(|error| SourceError::Poll(error.into_parts().1))
}
