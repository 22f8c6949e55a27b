//! Calls that wait for something to be recorded (a credit decision, a
//! settlement report reaching the WSP), woken by one follower of the event
//! log that records it. A call registers *before* it writes what it waits
//! for, so the event cannot slip by unseen; the follower is one watch per
//! log and process, not a poll per call. A waiter that misses its event
//! (the follower reconnecting) is no worse off: its wait ends by timeout
//! and it reads the record, which never misses anything.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
};

use futures_util::StreamExt;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot};
use tokio_util::sync::CancellationToken;
use tonic::Code;

use super::{
    Backoff,
    watch::{Filter, WatchEnd, WatchError, WatchHub},
};
use crate::error::{RpcError, reason};

/// Every call waiting, by the id it waits for.
type WaiterMap = HashMap<String, Vec<(u64, oneshot::Sender<()>)>>;

/// Calls waiting for events of one log, by id.
#[derive(Clone)]
pub struct Waiters {
    map: Arc<Mutex<WaiterMap>>,
    permits: Arc<Semaphore>,
    limit: usize,
    next: Arc<AtomicU64>,
}

/// The limit of waiting calls is reached.
#[derive(Debug, thiserror::Error)]
#[error(
    "too many calls are waiting on this server (limit {limit}); retry without a wait, or later"
)]
pub struct TooManyWaiters {
    /// The limit.
    pub limit: usize,
}

impl RpcError for TooManyWaiters {
    fn code(&self) -> Code {
        Code::ResourceExhausted
    }
    fn reason(&self) -> &'static str {
        reason::TOO_MANY_WAITERS
    }
}

/// Which events of which log wake whom.
pub struct Follow {
    /// The event log.
    pub stream: &'static str,
    /// The field of an event holding the id waited for.
    pub id_field: &'static str,
    /// The events that wake (others are ignored).
    pub filter: Filter,
}

/// One registered wait; dropping it unregisters.
pub struct Waiter {
    woken: oneshot::Receiver<()>,
    key: String,
    id: u64,
    map: Arc<Mutex<WaiterMap>>,
    _permit: OwnedSemaphorePermit,
}

impl Waiter {
    /// Resolves when the awaited event was recorded.
    pub async fn woken(&mut self) {
        // An error means the follower is gone (shutdown): never resolves,
        // the caller's timeout ends the wait.
        if (&mut self.woken).await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

impl Drop for Waiter {
    fn drop(&mut self) {
        if let Ok(mut map) = self.map.lock()
            && let Some(list) = map.get_mut(&self.key)
        {
            list.retain(|(id, _)| *id != self.id);
            if list.is_empty() {
                map.remove(&self.key);
            }
        }
    }
}

impl Waiters {
    /// Room for `limit` waiting calls; starts the follower of `follow` on
    /// `watches`, which ends with `stop`.
    pub fn start(watches: WatchHub, follow: Follow, limit: usize, stop: CancellationToken) -> Self {
        let waiters = Self {
            map: Arc::default(),
            permits: Arc::new(Semaphore::new(limit)),
            limit,
            next: Arc::default(),
        };
        tokio::spawn(run(watches, follow, waiters.clone(), stop));
        waiters
    }

    /// Registers a wait for the event naming `key`. Do it before writing
    /// what is waited for.
    pub fn register(&self, key: &str) -> Result<Waiter, TooManyWaiters> {
        let permit = Arc::clone(&self.permits)
            .try_acquire_owned()
            .map_err(|_| TooManyWaiters { limit: self.limit })?;
        let (tx, rx) = oneshot::channel();
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut map) = self.map.lock() {
            map.entry(key.to_string()).or_default().push((id, tx));
        }
        Ok(Waiter {
            woken: rx,
            key: key.to_string(),
            id,
            map: Arc::clone(&self.map),
            _permit: permit,
        })
    }

    fn wake(&self, key: &str) {
        let list = self.map.lock().ok().and_then(|mut m| m.remove(key));
        for (_, tx) in list.into_iter().flatten() {
            let _ = tx.send(());
        }
    }
}

/// Follows the log and wakes waiters; resumes after its last event when
/// its watch ends.
async fn run(watches: WatchHub, follow: Follow, waiters: Waiters, stop: CancellationToken) {
    let mut after = String::new();
    let mut backoff = Backoff::new();
    loop {
        let subscribed = tokio::select! {
            _ = stop.cancelled() => return,
            s = watches.subscribe(follow.stream, &after, Arc::clone(&follow.filter)) => s,
        };
        match subscribed {
            Ok(mut events) => {
                backoff.reset();
                while let Some(item) = events.next().await {
                    match item {
                        Ok(event) => {
                            after = event.id.to_string();
                            waiters.wake(event.field(follow.id_field));
                        }
                        Err(WatchEnd::Shutdown) => return,
                        Err(end) => {
                            tracing::warn!(
                                ?end,
                                stream = follow.stream,
                                "waiters' follower ended; following again"
                            );
                            if matches!(end, WatchEnd::Trimmed | WatchEnd::Reset) {
                                after.clear();
                            }
                            break;
                        }
                    }
                }
            }
            Err(WatchError::CursorTrimmed { .. } | WatchError::CursorAhead { .. }) => after.clear(),
            Err(e) => {
                tracing::warn!(error = %e, stream = follow.stream, "cannot follow the log yet; retrying")
            }
        }
        if !backoff.wait(&stop).await {
            return;
        }
    }
}
