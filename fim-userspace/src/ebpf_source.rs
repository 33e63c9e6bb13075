//! The eBPF event source: ring buffer -> decode -> path resolution -> [`SourceItem`]s.
//!
//! One task owns the loaded programs and their maps. It drains the ring buffer when it is
//! readable, pairs entry events with their syscall results, turns every increase of the
//! kernel's drop counters into a gap notice, and applies root changes to the maps without
//! reloading anything. Dropping the task (shutdown) detaches every program.
use std::{
    collections::HashMap,
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
    assemble::{Assembler, Followup},
    loader::Loaded,
    record::{GapNotice, SourceItem},
    roots::{plan_with_links, RootPlan},
};

/// How soon the ring is read again after a batch (the kernel skips wakeups for 1 ms).
const FOLLOW_UP: Duration = Duration::from_millis(2);
/// The most ring records turned into events before they are handed on. The ring (in kernel
/// memory, of a fixed size) is the buffer for a burst; draining all of it at once copied a
/// burst of `cp -r` into user space too (a 100,000-file copy peaked at 220 MiB of fimd RSS).
/// Handing on a batch waits for the daemon to take it, which is the back-pressure.
const DRAIN_BATCH: usize = 4096;
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

/// The maps the roots live in, and what user space knows of what they hold.
struct KernelMaps {
    inodes: BpfHashMap<MapData, InodeKey, InodeEntry>,
    prefixes: LpmTrie<MapData, PrefixData, PrefixEntry>,
    drops: PerCpuArray<MapData, u64>,
    /// Bumped whenever the roots change: the kernel's "outside the roots" cache goes stale.
    generation: Array<MapData, u32>,
    /// The maps hold exactly the assembler's plan (false after a write failed half-way: the
    /// next plan is then written whole instead of only what differs).
    match_plan: bool,
    /// Per root id, the drops already reported (0: drops outside any root).
    drops_seen: HashMap<u32, u64>,
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
            match_plan: true,
            drops_seen: HashMap::new(),
        };
        let mut assembler = Assembler::new(RootPlan::default());
        let warnings = apply_roots(&mut assembler, &mut kernel_maps, &roots)?;
        assembler.track_preexisting_writers();
        let ring = register(ring)?;
        let (commands, command_rx) = mpsc::channel(8);
        let (shutdown, shutdown_rx) = watch::channel(false);
        let task = tokio::spawn(run(
            loaded,
            ring,
            kernel_maps,
            assembler,
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
    mut assembler: Assembler,
    mut commands: mpsc::Receiver<Command>,
    mut shutdown: watch::Receiver<bool>,
    output: mpsc::Sender<SourceItem>,
) -> Result<(), SourceError> {
    let Loaded {
        ebpf,
        logger,
        tracepoint_links,
        ..
    } = loaded;
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
                let drained = drain(guard.get_inner_mut(), &mut assembler, &mut ready);
                guard.clear_ready();
                follow_up = next_look(drained);
            }
            _ = tokio::time::sleep_until(follow_up.unwrap_or_else(tokio::time::Instant::now)), if follow_up.is_some() => {
                let drained = drain(ring.get_mut(), &mut assembler, &mut ready);
                follow_up = next_look(drained);
            }
            _ = tick.tick() => {
                assembler.tick(Instant::now(), &mut ready);
                ready.extend(kernel_maps.check_drops(&assembler).map(SourceItem::Gap));
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
                    let links = assembler.symlink_aliases();
                    planning = Some(tokio::task::spawn_blocking(move || plan_with_links(&roots, &links)));
                    planned_reply = Some(reply);
                }
                None => break,
            },
            planned = fim_engine::task::finished(&mut planning) => {
                planning = None;
                let applied = match planned {
                    Ok(next) => apply_plan(&mut assembler, &mut kernel_maps, next),
                    Err(_) => Err(SourceError::Stopped),
                };
                if let Some(reply) = planned_reply.take() {
                    let _ = reply.send(applied);
                }
            }
            _ = shutdown.changed() => break,
        }
        for followup in assembler.take_followups() {
            match followup {
                Followup::RegisterLink(link) => {
                    assembler.register_link(&link, |key, entry| kernel_maps.insert_link(key, entry))
                }
                Followup::Rescan(gap) => ready.push(SourceItem::Gap(gap)),
                Followup::Replan(roots) => {
                    if let Err(error) = apply_roots(&mut assembler, &mut kernel_maps, &roots) {
                        tracing::warn!(
                            "re-registering roots after a missing root appeared failed: {error}"
                        );
                    }
                }
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
    while drain(ring.get_mut(), &mut assembler, &mut ready) == DRAIN_BATCH {
        for item in ready.drain(..) {
            if output.send(item).await.is_err() {
                break;
            }
        }
    }
    assembler.finish(&mut ready);
    ready.extend(kernel_maps.check_drops(&assembler).map(SourceItem::Gap));
    for item in ready {
        if output.send(item).await.is_err() {
            break;
        }
    }
    // The channel closes now, before the programs detach, so the daemon journals and anchors
    // the last events at once rather than after the detach below.
    drop(output);
    // Detaching the tracepoints the plain way holds the exit for seconds (see the module):
    // their teardown is handed to the kernel instead.
    crate::detach::in_background(ebpf, tracepoint_links);
    Ok(())
}

/// Reads up to [`DRAIN_BATCH`] records the ring holds now; returns how many.
fn drain(
    ring: &mut RingBuf<MapData>,
    assembler: &mut Assembler,
    ready: &mut Vec<SourceItem>,
) -> usize {
    let mut count = 0;
    while count < DRAIN_BATCH {
        let Some(record) = ring.next() else { break };
        assembler.handle_record(&record, ready);
        count += 1;
    }
    count
}

/// When to read the ring again without a wakeup: at once after a full batch (more is
/// waiting), shortly after a partial one (records sent without a wakeup), else not.
fn next_look(drained: usize) -> Option<tokio::time::Instant> {
    let now = tokio::time::Instant::now();
    match drained {
        0 => None,
        DRAIN_BATCH => Some(now),
        _ => Some(now + FOLLOW_UP),
    }
}

fn apply_roots(
    assembler: &mut Assembler,
    kernel_maps: &mut KernelMaps,
    roots: &[WatchRoot],
) -> Result<Vec<String>, SourceError> {
    let next = assembler.plan_for(roots);
    apply_plan(assembler, kernel_maps, next)
}

/// Puts a plan in force: written into the kernel maps, then the assembler's.
fn apply_plan(
    assembler: &mut Assembler,
    kernel_maps: &mut KernelMaps,
    next: RootPlan,
) -> Result<Vec<String>, SourceError> {
    assembler.replace_plan(next, |current, next| kernel_maps.write_plan(current, next))
}

impl KernelMaps {
    /// Writes `next` over `current` (what the maps were written from): what it dropped is
    /// removed, what is new or changed is written (the rest is left as it is: 20,000 roots
    /// are 300,000 map entries).
    fn write_plan(&mut self, current: &RootPlan, next: &RootPlan) -> Result<(), SourceError> {
        let in_sync = self.match_plan;
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
        self.match_plan = false;
        for key in current
            .inodes
            .keys()
            .filter(|key| !next.inodes.contains_key(key))
        {
            let _ = self.inodes.remove(key);
        }
        for ((bits, data), _) in current
            .prefixes
            .iter()
            .filter(|(key, _)| !next.prefixes.contains_key(key))
        {
            let _ = self.prefixes.remove(&Key::new(*bits, *data));
        }
        for (key, entry) in &next.inodes {
            if in_sync && current.inodes.get(key) == Some(entry) {
                continue;
            }
            self.inodes
                .insert(key, entry, 0)
                .map_err(map_error(maps::INODES))?;
        }
        for ((bits, data), entry) in &next.prefixes {
            if in_sync && current.prefixes.get(&(*bits, *data)) == Some(entry) {
                continue;
            }
            self.prefixes
                .insert(&Key::new(*bits, *data), entry, 0)
                .map_err(map_error(maps::PREFIXES))?;
        }
        for (id, root) in &next.roots {
            self.start_counting_drops(*id);
            tracing::debug!(id, path = %root.path.display(), exists = root.exists, "root registered");
        }
        self.start_counting_drops(0);
        self.match_plan = true;
        self.bump_generation();
        Ok(())
    }

    /// Drops of a root already counted when it is first registered are not its own.
    fn start_counting_drops(&mut self, id: u32) {
        if !self.drops_seen.contains_key(&id) {
            let current = self
                .drops
                .get(&id, 0)
                .map(|values| values.iter().sum())
                .unwrap_or(0);
            self.drops_seen.insert(id, current);
        }
    }

    /// Puts a hard link's inode in the map ([`Assembler::register_link`]).
    fn insert_link(
        &mut self,
        key: &InodeKey,
        entry: &InodeEntry,
    ) -> Result<(), aya::maps::MapError> {
        self.inodes.insert(key, entry, 0)?;
        self.bump_generation();
        Ok(())
    }

    /// A gap notice for every root whose drop counter grew since the last look.
    fn check_drops(&mut self, assembler: &Assembler) -> Option<GapNotice> {
        let mut affected = Vec::new();
        let mut total = 0;
        for (id, seen) in self.drops_seen.iter_mut() {
            let Ok(values) = self.drops.get(id, 0) else {
                continue;
            };
            let now: u64 = values.iter().sum();
            if now > *seen {
                total += now - *seen;
                affected.push(*id);
                *seen = now;
            }
        }
        if total == 0 {
            return None;
        }
        affected.sort_unstable();
        tracing::warn!(
            dropped = total,
            ?affected,
            "kernel ring buffer overflowed; events were lost"
        );
        Some(assembler.gap_for(&affected, total))
    }
}

/// Registers a map-backed fd with tokio's reactor.
fn register<T: std::os::fd::AsRawFd>(inner: T) -> Result<AsyncFd<T>, SourceError> {
    // SAFETY: the fd is owned by `inner`, which the AsyncFd owns, so it stays open for as long
    // as it is registered.
    unsafe { AsyncFd::register(inner) }.map_err(|error| SourceError::Poll(error.into_parts().1))
}
