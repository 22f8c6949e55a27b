//! The WSP role's background work:
//!
//! - [`apply_responses`]: reads the exchange's responses on R (as the
//!   `wsp-reader` user, blocking XREAD) from the cursor kept on M, and
//!   applies each on M exactly once ([`CreditStore::apply_response`]). The
//!   cursor lives on M, not in this process: a restarted gateway, or
//!   another one, carries on where the last left off, and any number of
//!   gateways may run it at once (the apply script ignores what was applied).
//! - [`Waiters`]: RequestCredit calls waiting for their decision register
//!   here *before* the request is written; one follower of the event log on
//!   M wakes them. No polling.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
};

use futures_util::StreamExt;
use redis::Value;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot};
use tokio_util::sync::CancellationToken;

use super::{
    error::CreditError,
    keys,
    model::{CreditEvent, CreditResponse},
    store::{ApplyOutcome, CreditStore},
};
use crate::{
    config::StreamsConfig,
    error::ErrorChain,
    redis::{RedisEndpoint, RedisError},
    streams::{
        Backoff, StreamId,
        reply::{self, Parsed},
        watch::{self, WatchEnd, WatchError, WatchHub},
    },
};

/// Reads responses on R and applies them on M until `stop`; reconnects by
/// itself with a capped backoff, resuming from the cursor on M.
pub async fn apply_responses(
    store: CreditStore,
    replica: RedisEndpoint,
    streams: StreamsConfig,
    stop: CancellationToken,
) {
    let mut backoff = Backoff::new();
    loop {
        let error = tokio::select! {
            _ = stop.cancelled() => return,
            Err(e) = read_responses(&store, &replica, &streams, &mut backoff) => e,
        };
        tracing::warn!(error = %ErrorChain(&error), delay = ?backoff.delay(), "credit response reader reconnecting");
        if !backoff.wait(&stop).await {
            return;
        }
    }
}

/// One connection's life; returns only on error.
async fn read_responses(
    store: &CreditStore,
    replica: &RedisEndpoint,
    streams: &StreamsConfig,
    backoff: &mut Backoff,
) -> Result<(), CreditError> {
    let mut blocking = replica.blocking(streams.block).await?;
    loop {
        // Read from M each round: another gateway may have moved it.
        let cursor = store.response_cursor().await?;
        let read: Value = redis::cmd("XREAD")
            .arg("COUNT")
            .arg(streams.read_batch)
            .arg("BLOCK")
            .arg(streams.block.as_millis() as u64)
            .arg("STREAMS")
            .arg(keys::RESPONSE_STREAM)
            .arg(cursor.to_string())
            .query_async(blocking.conn())
            .await
            .map_err(|e| RedisError::from_redis(replica.name(), e))?;
        backoff.reset();
        let entries = reply::read_entries(read);
        if entries.is_empty() {
            rewind_if_reset(store, replica, cursor).await?;
            continue;
        }
        for parsed in entries {
            let entry = match parsed {
                Parsed::Entry(entry) => entry,
                other => {
                    tracing::error!(entry = ?other, "unreadable credit response skipped");
                    continue;
                }
            };
            let response = CreditResponse::parse(&entry);
            let outcome = store.apply_response(&response).await?;
            match outcome {
                ApplyOutcome::Applied => {
                    tracing::debug!(request_id = %response.request_id, status = %response.status, "credit decision applied");
                }
                ApplyOutcome::Anomaly => tracing::error!(
                    request_id = %response.request_id, entry_id = %response.entry_id,
                    "credit response disagrees with its request; not applied (anomaly event recorded)"
                ),
                ApplyOutcome::Unknown => tracing::debug!(
                    request_id = %response.request_id,
                    "response to a request not issued here; ignored"
                ),
                ApplyOutcome::Duplicate | ApplyOutcome::AlreadyFinal => {}
            }
        }
    }
}

/// A full resync of R, or a stream deleted and written again, restarts the
/// response stream's ids. If they restart *below* the cursor (R's clock went
/// back), reading after the cursor would miss responses forever: rewind it.
/// Re-applying old responses is harmless (their requests are final).
async fn rewind_if_reset(
    store: &CreditStore,
    replica: &RedisEndpoint,
    cursor: StreamId,
) -> Result<(), CreditError> {
    if cursor == StreamId::default() {
        return Ok(());
    }
    let Some(info) = watch::stream_info(replica, keys::RESPONSE_STREAM).await? else {
        return Ok(()); // no stream yet (e.g. R just resynced): nothing to read
    };
    let last = info.last_generated;
    if last < cursor {
        tracing::warn!(%cursor, %last, "response stream on R restarted below the cursor; reading it again from the start");
        store.rewind_response_cursor(cursor).await?;
    }
    Ok(())
}

type WaiterMap = HashMap<String, Vec<(u64, oneshot::Sender<()>)>>;

/// RequestCredit calls waiting for a decision, by request id.
#[derive(Clone)]
pub struct Waiters {
    map: Arc<Mutex<WaiterMap>>,
    permits: Arc<Semaphore>,
    limit: usize,
    next: Arc<AtomicU64>,
}

/// One registered wait; dropping it unregisters.
pub struct Waiter {
    woken: oneshot::Receiver<()>,
    request_id: String,
    id: u64,
    map: Arc<Mutex<WaiterMap>>,
    _permit: OwnedSemaphorePermit,
}

impl Waiter {
    /// Resolves when the request's decision was applied on M.
    pub async fn decided(&mut self) {
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
            && let Some(list) = map.get_mut(&self.request_id)
        {
            list.retain(|(id, _)| *id != self.id);
            if list.is_empty() {
                map.remove(&self.request_id);
            }
        }
    }
}

impl Waiters {
    /// Room for `limit` waiting calls; starts the follower of the event log
    /// on `watches` (M), which ends with `stop`.
    pub fn start(watches: WatchHub, limit: usize, stop: CancellationToken) -> Self {
        let waiters = Self {
            map: Arc::default(),
            permits: Arc::new(Semaphore::new(limit)),
            limit,
            next: Arc::default(),
        };
        tokio::spawn(follow_decisions(watches, waiters.clone(), stop));
        waiters
    }

    /// Registers a wait for `request_id`'s decision. Do it before the
    /// request is written, so the decision cannot slip by unseen.
    pub fn register(&self, request_id: &str) -> Result<Waiter, CreditError> {
        let permit = Arc::clone(&self.permits)
            .try_acquire_owned()
            .map_err(|_| CreditError::TooManyWaiters { limit: self.limit })?;
        let (tx, rx) = oneshot::channel();
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut map) = self.map.lock() {
            map.entry(request_id.to_string())
                .or_default()
                .push((id, tx));
        }
        Ok(Waiter {
            woken: rx,
            request_id: request_id.to_string(),
            id,
            map: Arc::clone(&self.map),
            _permit: permit,
        })
    }

    fn wake(&self, request_id: &str) {
        let list = self.map.lock().ok().and_then(|mut m| m.remove(request_id));
        for (_, tx) in list.into_iter().flatten() {
            let _ = tx.send(());
        }
    }
}

/// Follows decisions in the event log on M and wakes their waiters;
/// resumes after its last event when its watch ends.
async fn follow_decisions(watches: WatchHub, waiters: Waiters, stop: CancellationToken) {
    let mut after = String::new();
    let mut backoff = Backoff::new();
    loop {
        let subscribed = tokio::select! {
            _ = stop.cancelled() => return,
            s = watches.subscribe(keys::EVENTS_STREAM, &after, Arc::new(CreditEvent::is_decision)) => s,
        };
        match subscribed {
            Ok(mut decisions) => {
                backoff.reset();
                while let Some(item) = decisions.next().await {
                    match item {
                        Ok(event) => {
                            after = event.id.to_string();
                            waiters.wake(event.field("request_id"));
                        }
                        Err(WatchEnd::Shutdown) => return,
                        Err(end) => {
                            // Waiters that miss their event this way still
                            // read the record when their wait ends.
                            tracing::warn!(?end, "credit decision follower ended; following again");
                            if matches!(end, WatchEnd::Trimmed | WatchEnd::Reset) {
                                after.clear();
                            }
                            break;
                        }
                    }
                }
            }
            Err(WatchError::CursorTrimmed { .. } | WatchError::CursorAhead { .. }) => after.clear(),
            Err(e) => tracing::warn!(error = %e, "cannot follow credit decisions yet; retrying"),
        }
        if !backoff.wait(&stop).await {
            return;
        }
    }
}
