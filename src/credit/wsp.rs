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
    model::{CreditEvent, CreditResponse, MalformedResponse},
    store::{ApplyOutcome, CreditStore},
};
use crate::{
    config::StreamsConfig,
    error::ErrorChain,
    redis::{BlockingConnection, RedisEndpoint, RedisError},
    server::health::HealthFlags,
    streams::{
        Backoff, StreamId,
        reply::{self, Parsed, StreamInfo},
        watch::{WatchEnd, WatchError, WatchHub},
    },
};

/// What the response reader needs to know.
#[derive(Clone)]
pub struct ReaderConfig {
    /// BLOCK time and batch size of reads.
    pub streams: StreamsConfig,
    /// A response entry larger than this is skipped as an anomaly.
    pub max_response_bytes: usize,
}

/// Reads responses on R and applies them on M until `stop`; reconnects by
/// itself with a capped backoff, resuming from the cursor on M.
pub async fn apply_responses(
    store: CreditStore,
    replica: RedisEndpoint,
    config: ReaderConfig,
    stop: CancellationToken,
) {
    let mut backoff = Backoff::new();
    loop {
        let error = tokio::select! {
            _ = stop.cancelled() => return,
            Err(e) = read_responses(&store, &replica, &config, &mut backoff) => e,
        };
        tracing::warn!(error = %ErrorChain(&error), delay = ?backoff.delay(), "credit response reader reconnecting");
        if !backoff.wait(&stop).await {
            return;
        }
    }
}

/// One connection's life; returns only on error.
///
/// Each round, in this order: where the WSP stands (its cursor, on M); what
/// R's stream looks like now (XINFO, and whether the cursor's own entry is
/// still there): a new stream (a resync, or a wipe and explicit low ids)
/// rewinds the cursor; entries trimmed past the cursor are recorded as a
/// gap, loudly; then one blocking read after the cursor, applied entry by
/// entry. A malformed entry is recorded as an anomaly and passed; it never
/// stops the reader.
async fn read_responses(
    store: &CreditStore,
    replica: &RedisEndpoint,
    config: &ReaderConfig,
    backoff: &mut Backoff,
) -> Result<(), CreditError> {
    let streams = &config.streams;
    let mut blocking = replica.blocking(streams.block).await?;
    loop {
        // Read from M each round: another gateway may have moved it.
        let cursor = store.response_cursor().await?;
        let Some(view) = view_of(replica, cursor).await? else {
            // No stream yet (or R was just wiped): wait for its first entry.
            backoff.reset();
            block_on(&mut blocking, replica, StreamId::default(), 1, streams).await?;
            continue;
        };
        backoff.reset();
        if view.is_new_stream(cursor) {
            tracing::warn!(
                %cursor, last = %view.info.last_generated, first = %view.info.first,
                "the response stream on R is a new one (resync or wipe); reading it again from the start"
            );
            store.rewind_response_cursor(cursor).await?;
            continue;
        }
        if let Some((resume, lost)) = gap(cursor, &view.info) {
            tracing::error!(%cursor, %resume, %lost, "responses were trimmed on R before this WSP applied them");
            store.record_gap(cursor, resume, &lost).await?;
            continue;
        }
        let entries = block_on(&mut blocking, replica, cursor, streams.read_batch, streams).await?;
        for parsed in entries {
            apply_one(store, parsed, config.max_response_bytes).await?;
        }
    }
}

/// R's response stream as the reader sees it before a read.
struct StreamView {
    info: StreamInfo,
    /// Whether the entry at the cursor is still in the stream.
    cursor_present: bool,
}

impl StreamView {
    /// True if this is not the stream the cursor points into. Trimming
    /// removes the oldest entries first and the exchange has no XDEL, so in
    /// the same stream, an entry older than the cursor can only still be
    /// there if the cursor's own entry is too. An older entry without the
    /// cursor's, or nothing at or after the cursor ever written, means the
    /// stream was made anew (R resynced or wiped), whatever ids its new
    /// writer chose: read it from the start (applying twice changes
    /// nothing).
    fn is_new_stream(&self, cursor: StreamId) -> bool {
        if cursor == StreamId::default() {
            return false;
        }
        self.info.last_generated < cursor
            || (self.info.length > 0 && self.info.first < cursor && !self.cursor_present)
    }
}

/// XINFO STREAM and a check of the cursor's entry, in one round trip;
/// `None` if the stream does not exist.
async fn view_of(
    replica: &RedisEndpoint,
    cursor: StreamId,
) -> Result<Option<StreamView>, CreditError> {
    let mut conn = replica.conn().await?;
    let (info, at_cursor): (redis::RedisResult<Value>, redis::RedisResult<Value>) = {
        let mut pipe = redis::pipe();
        pipe.cmd("XINFO").arg("STREAM").arg(keys::RESPONSE_STREAM);
        pipe.cmd("XRANGE")
            .arg(keys::RESPONSE_STREAM)
            .arg(cursor.to_string())
            .arg(cursor.to_string())
            .arg("COUNT")
            .arg(1);
        let replies: Vec<redis::RedisResult<Value>> =
            match pipe.query_async::<Vec<Value>>(&mut *conn).await {
                Ok(values) => values.into_iter().map(Ok).collect(),
                Err(e) if e.to_string().contains("no such key") => return Ok(None),
                Err(e) => return Err(RedisError::from_redis(replica.name(), e).into()),
            };
        let mut replies = replies.into_iter();
        (
            replies.next().unwrap_or(Ok(Value::Nil)),
            replies.next().unwrap_or(Ok(Value::Nil)),
        )
    };
    let info = match info {
        Ok(Value::Nil) | Err(_) => return Ok(None),
        Ok(info) => StreamInfo::parse(info),
    };
    let cursor_present = matches!(at_cursor, Ok(Value::Array(a)) if !a.is_empty());
    Ok(Some(StreamView {
        info,
        cursor_present,
    }))
}

/// One blocking read of up to `count` responses after `cursor`.
async fn block_on(
    blocking: &mut BlockingConnection,
    replica: &RedisEndpoint,
    cursor: StreamId,
    count: usize,
    streams: &StreamsConfig,
) -> Result<Vec<Parsed>, CreditError> {
    let read: Value = redis::cmd("XREAD")
        .arg("COUNT")
        .arg(count)
        .arg("BLOCK")
        .arg(streams.block.as_millis() as u64)
        .arg("STREAMS")
        .arg(keys::RESPONSE_STREAM)
        .arg(cursor.to_string())
        .query_async(blocking.conn())
        .await
        .map_err(|e| RedisError::from_redis(replica.name(), e))?;
    Ok(reply::read_entries(read))
}

/// Applies (or records as an anomaly) one entry of the response stream.
async fn apply_one(
    store: &CreditStore,
    parsed: Parsed,
    max_bytes: usize,
) -> Result<(), CreditError> {
    let entry = match parsed {
        Parsed::Entry(entry) => entry,
        Parsed::Deleted(id) | Parsed::Bad { id: Some(id), .. } => {
            let malformed = MalformedResponse {
                request_id: String::new(),
                reason: format!("malformed response: entry {id} is not a list of fields"),
            };
            store.skip_response(id, &malformed).await?;
            return Ok(());
        }
        Parsed::Bad { id: None, why } => {
            tracing::error!(why, "unreadable credit response without an id skipped");
            return Ok(());
        }
    };
    let response = match CreditResponse::parse(&entry, max_bytes) {
        Ok(response) => response,
        Err(malformed) => {
            if store.skip_response(entry.id, &malformed).await? {
                tracing::error!(entry_id = %entry.id, reason = %malformed.reason, "malformed credit response recorded as an anomaly");
            }
            return Ok(());
        }
    };
    match store.apply_response(&response).await? {
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
    Ok(())
}

/// Entries after `cursor` that the stream no longer has: `(where to go on
/// from, what was lost)`, or `None`. Trimming removes from the head, so if
/// anything was ever removed and every entry still there is past the
/// cursor, entries between them may be gone. (If the stream was trimmed to
/// exactly the cursor this says so too: Redis 7.0 cannot tell. A false
/// alarm resolves by itself, as every request is decided.)
fn gap(cursor: StreamId, info: &StreamInfo) -> Option<(StreamId, String)> {
    if cursor >= info.last_generated || !info.removed_any() {
        return None;
    }
    // The stream starts at or right after the cursor: nothing between them
    // is missing (after a gap is recorded the cursor is set right before
    // the first entry, so it is not found again).
    if info.length > 0 && cursor.next().is_none_or(|next| info.first <= next) {
        return None;
    }
    let resume = if info.length == 0 {
        info.last_generated
    } else {
        info.first.prev().unwrap_or_default()
    };
    let lost = format!(
        "responses after {cursor} up to {resume} were trimmed from {} on R before this WSP applied them; their requests stay pending until decided again (ResolveCreditAnomaly)",
        keys::RESPONSE_STREAM
    );
    Some((resume, lost))
}

/// Most undecided requests the sweeper checks per round: bounds a round's
/// work; a longer backlog is checked over several rounds.
const MAX_SWEEP: usize = 10_000;

/// The WSP's sweeper, every `interval` until `stop`:
/// - an undecided request whose entry is gone from the request stream (a
///   trim this gateway did not make: ours never trims past the oldest
///   undecided request) is published again, loudly, so it is decided;
/// - while a response gap is open (see [`gap`]), CreditService is held
///   NOT_SERVING; the gap closes once every request undecided when it was
///   seen is decided.
pub async fn sweep(
    store: CreditStore,
    interval: std::time::Duration,
    batch: usize,
    flags: HealthFlags,
    stop: CancellationToken,
) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = ticker.tick() => {}
        }
        if let Err(e) = sweep_once(&store, batch, &flags).await {
            tracing::warn!(error = %ErrorChain(&e), "credit sweep failed; trying again next round");
        }
    }
}

/// One round of [`sweep`].
pub async fn sweep_once(
    store: &CreditStore,
    batch: usize,
    flags: &HealthFlags,
) -> Result<(), CreditError> {
    match store.response_gap().await? {
        Some(gap) if !store.close_gap_if_resolved(&gap).await? => {
            flags.set(super::SERVICE, &gap.description);
        }
        _ => flags.clear(super::SERVICE),
    }
    let mut start = 0;
    while start < MAX_SWEEP {
        let page = store.undecided(start, batch).await?;
        let with_entry: Vec<(String, StreamId)> = page
            .iter()
            .filter_map(|(id, entry)| entry.map(|e| (id.clone(), e)))
            .collect();
        let entries: Vec<StreamId> = with_entry.iter().map(|(_, e)| *e).collect();
        let exist = store.entries_exist(&entries).await?;
        for ((request_id, entry), exists) in with_entry.iter().zip(exist) {
            if exists {
                continue;
            }
            let why =
                format!("its entry {entry} was gone from the request stream (a foreign trim)");
            if let Ok(new) = store.republish(request_id, &why).await? {
                tracing::error!(%request_id, %entry, %new, "undecided credit request lost its stream entry; published again");
            }
        }
        if page.len() < batch {
            break;
        }
        start += page.len();
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
