//! WatchChanges: the journal from a sequence number on, then live records, with no gap and no
//! duplicate, at the client's pace.
//!
//! The order of operations is what makes it exact. We subscribe to announcements first, then
//! read the journal: every record is journaled before it is announced, so anything committed
//! after the subscription is either in the pages we read or still ahead in the subscription.
//! Records are sent in sequence order and a live record at or below the last sequence sent is
//! skipped, so the overlap is never sent twice. If the subscription overflows (`Lagged`, the
//! daemon outran this client), the missed records are still in the journal: we go back to it
//! from the last sequence sent. Everything goes through a bounded channel whose receiver is
//! the response stream, so a slow client holds the producer back instead of growing memory.
use fim_engine::{
    daemon::{Announcement, DaemonHandle},
    store::ChangeFilter,
};
use tokio::sync::{broadcast::error::RecvError, mpsc, watch};
use tonic::Status;

use crate::{
    blocking::{blocking, store_status},
    convert, pb,
};

/// Responses buffered per watcher before the producer waits for the client. Small on
/// purpose: a client that does not read holds this much and no more (a watcher that falls
/// behind the announcements catches up from the journal, so nothing is lost by waiting).
pub const WATCH_BUFFER: usize = 32;
/// Records read from the journal per query while catching up: a page is held in memory
/// until the client has taken it, so it is no bigger than the buffer.
const PAGE: usize = WATCH_BUFFER;
/// Journal reads running at once, all watchers together. Two hundred watchers catching up
/// together would otherwise each hold a connection and its page cache on a blocking thread
/// of its own, memory the allocator keeps after they are gone.
static STORE_READS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(4);

pub type Item = Result<pb::WatchChangesResponse, Status>;

/// One watcher: where it is, what it wants, where its responses go.
pub struct Watcher {
    pub handle: DaemonHandle,
    pub filter: ChangeFilter,
    /// The last sequence sent (or skipped over, for `live_only`).
    pub last: u64,
    pub out: mpsc::Sender<Item>,
    pub stop: watch::Receiver<bool>,
    /// Whether this caller may see content diffs ([`convert::Content`]).
    pub content: convert::Content,
    /// This stream's place among the caller's ([`crate::limits`]); given back when it ends.
    pub _slot: crate::limits::Slot,
}

/// Why a watcher ended.
enum End {
    /// The client went away, or the server is stopping: nothing more to say.
    Quiet,
    /// Something failed; the client is told.
    Failed(Status),
}

impl Watcher {
    /// Runs until the client disconnects, the server stops or the daemon ends.
    pub async fn run(mut self, mut live: tokio::sync::broadcast::Receiver<Announcement>) {
        let end = self.pump(&mut live).await;
        if let End::Failed(status) = end {
            tracing::warn!("a change stream ended: {}", status.message());
            let _ = self.out.send(Err(status)).await;
        }
    }

    async fn pump(&mut self, live: &mut tokio::sync::broadcast::Receiver<Announcement>) -> End {
        if let Err(end) = self.catch_up().await {
            return end;
        }
        loop {
            let announcement = tokio::select! {
                received = live.recv() => received,
                _ = self.out.closed() => return End::Quiet,
                _ = stopped(&mut self.stop) => return End::Quiet,
            };
            let item = match announcement {
                Ok(Announcement::Record(record)) => {
                    if record.sequence <= self.last || !self.filter.matches(&record) {
                        continue;
                    }
                    self.last = record.sequence;
                    pb::watch_changes_response::Item::Record(convert::record_for(
                        &record,
                        self.content,
                    ))
                }
                Ok(Announcement::Gap(gap)) => {
                    pb::watch_changes_response::Item::Gap(convert::gap(&gap))
                }
                Err(RecvError::Lagged(missed)) => {
                    tracing::debug!(
                        missed,
                        after = self.last,
                        "a watcher fell behind; reading the journal"
                    );
                    if let Err(end) = self.catch_up().await {
                        return end;
                    }
                    continue;
                }
                Err(RecvError::Closed) => return End::Quiet,
            };
            if !self.send(item).await {
                return End::Quiet;
            }
        }
    }

    /// Sends what the journal holds after `last`, page by page. The store connection (and its
    /// page cache) is let go whenever the client is not keeping up, so a stream nobody reads
    /// holds one page and its buffer, not a database connection.
    async fn catch_up(&mut self) -> Result<(), End> {
        let mut store = None;
        loop {
            // Waiting for a turn, or for the client, is done without a connection.
            let reading = match STORE_READS.try_acquire() {
                Ok(permit) => permit,
                Err(_) => {
                    store = None;
                    STORE_READS.acquire().await.map_err(|_| End::Quiet)?
                }
            };
            if store.is_none() {
                let handle = self.handle.clone();
                store = Some(
                    blocking(move || handle.open_store())
                        .await
                        .map_err(End::Failed)?,
                );
            }
            let mut filter = self.filter.clone();
            filter.after_sequence = Some(self.last);
            let taken = store.take();
            let (back, page) = blocking(move || {
                let Some(store) = taken else {
                    return Ok::<_, std::convert::Infallible>((None, Ok(Vec::new())));
                };
                let page = store.query(&filter, PAGE);
                Ok((Some(store), page))
            })
            .await
            .map_err(End::Failed)?;
            store = back;
            let page = page.map_err(|error| End::Failed(store_status(error)))?;
            let full = page.len() == PAGE;
            if self.out.capacity() < page.len() {
                store = None;
            }
            drop(reading);
            for record in page {
                self.last = record.sequence;
                let item = pb::watch_changes_response::Item::Record(convert::record_for(
                    &record,
                    self.content,
                ));
                if !self.send(item).await {
                    return Err(End::Quiet);
                }
            }
            if !full {
                return Ok(());
            }
        }
    }

    /// False when the client is gone or the server is stopping.
    async fn send(&mut self, item: pb::watch_changes_response::Item) -> bool {
        let response = pb::WatchChangesResponse { item: Some(item) };
        tokio::select! {
            sent = self.out.send(Ok(response)) => sent.is_ok(),
            _ = stopped(&mut self.stop) => false,
        }
    }
}

/// Resolves once the server is stopping.
async fn stopped(stop: &mut watch::Receiver<bool>) {
    if stop.wait_for(|stopping| *stopping).await.is_err() {
        // The sender is gone: the server is gone too.
        std::future::pending::<()>().await;
    }
}
