//! Fan-out watches: every subscriber of a Redis stream sees every entry
//! (that passes its filter), in order, resumable by entry id.
//!
//! One reader task per stream per process reads with `XREAD BLOCK` on a
//! dedicated connection, from the last id it handled, and pushes each entry
//! into each subscriber's bounded queue. No subscriber has a connection of
//! its own.
//!
//! A new subscription starts at a cursor: the id it resumes after, or the
//! stream's newest id for "from now". A catch-up task of its own reads
//! history after the cursor (`XRANGE`, exclusive start), then attaches to
//! the reader under the lock the reader broadcasts under, at a moment when
//! the reader has not gone past what the catch-up delivered. From then on
//! the reader feeds it; an entry the reader sends that the catch-up already
//! delivered (the reader may lag) is skipped by id. So: no gap, no duplicate.
//!
//! What can go wrong, and what happens:
//! - the cursor's successors were trimmed (`XINFO STREAM`'s
//!   `max-deleted-entry-id` is past it): OUT_OF_RANGE, never a silent skip;
//! - the cursor is past the stream's last id (Redis restarted empty):
//!   OUT_OF_RANGE too: events may be missing and the client must know;
//! - a subscriber's queue is full: it alone is cut off (SUBSCRIBER_TOO_SLOW);
//!   the reader never waits for anybody;
//! - a subscriber goes away: dropping its [`Subscription`] unregisters it at
//!   once, freeing its queue;
//! - Redis goes away: the reader backs off and reconnects by itself, from
//!   the last id it handled; if the stream was reset meanwhile (its last id
//!   went backwards: Redis restarted empty, or an AOF restart lost its last
//!   second) every watch ends with [`WatchEnd::Reset`] (OUT_OF_RANGE,
//!   CURSOR_AHEAD) rather than replay the new log under old cursors, and the
//!   reader goes on from the new end; if entries it had not read were
//!   trimmed meanwhile, every watch ends with [`WatchEnd::Trimmed`]
//!   (OUT_OF_RANGE) rather than skip them;
//! - shutdown: readers stop and every subscription ends with
//!   [`WatchEnd::Shutdown`].

use std::{
    cmp::Ordering,
    collections::HashMap,
    pin::Pin,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering as AtomicOrdering},
    },
    task::{Context, Poll},
};

use futures_util::Stream;
use redis::Value;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tonic::Code;

use super::{
    Backoff,
    entry::{Entry, StreamId},
    reply::{self, Parsed, StreamInfo},
};
use crate::{
    config::StreamsConfig,
    error::{RpcError, reason},
    redis::{RedisEndpoint, RedisError, script::lua_script},
    validate::{FieldViolation, echo},
};

lua_script! {
    /// `lua/catch_up.lua`: a batch of history and the stream's facts at
    /// the same instant.
    struct CatchUp<'a>(include_str!("lua/catch_up.lua")) {
        keys { stream: &'a str }
        args { after: String, count: usize }
    }
}

/// Decides which entries a subscriber wants (e.g. one user's events).
pub type Filter = Arc<dyn Fn(&Entry) -> bool + Send + Sync>;

/// Why a watch could not start.
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    /// The cursor is not a stream entry id.
    #[error("start_after_event_id {} is not an event id (<ms>-<seq>)", echo(.0))]
    InvalidCursor(String),
    /// Events after the cursor may have been trimmed away.
    #[error(
        "events after {cursor} were trimmed from the log (oldest kept: {trimmed_up_to}); resume from an event still kept or from now"
    )]
    CursorTrimmed {
        /// The cursor given.
        cursor: StreamId,
        /// The oldest id still kept (or the newest deleted).
        trimmed_up_to: StreamId,
    },
    /// The cursor is past the stream's end: the stream was reset.
    #[error(
        "event {cursor} is past the end of the log ({last}); the log was reset, events may be missing: resume from now"
    )]
    CursorAhead {
        /// The cursor given.
        cursor: StreamId,
        /// The stream's last id.
        last: StreamId,
    },
    /// Redis failed.
    #[error(transparent)]
    Redis(#[from] RedisError),
}

/// Why a watch ended from the server's side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WatchEnd {
    /// The subscriber's queue filled up: it did not keep up.
    TooSlow,
    /// The server is shutting down.
    Shutdown,
    /// Entries were trimmed before the reader could read them (a long
    /// outage): resuming by cursor tells exactly what is gone.
    Trimmed,
    /// The stream was reset under the reader (its last id went backwards):
    /// events may be missing; resume from now.
    Reset,
}

impl RpcError for WatchError {
    fn code(&self) -> Code {
        match self {
            Self::InvalidCursor(_) => Code::InvalidArgument,
            Self::CursorTrimmed { .. } | Self::CursorAhead { .. } => Code::OutOfRange,
            Self::Redis(e) => e.code(),
        }
    }

    fn reason(&self) -> &'static str {
        match self {
            Self::InvalidCursor(_) => reason::INVALID_ARGUMENT,
            Self::CursorTrimmed { .. } => reason::CURSOR_TRIMMED,
            Self::CursorAhead { .. } => reason::CURSOR_AHEAD,
            Self::Redis(e) => e.reason(),
        }
    }

    fn violations(&self) -> Vec<FieldViolation> {
        match self {
            Self::InvalidCursor(_) => vec![FieldViolation {
                field: "start_after_event_id".into(),
                description: self.to_string(),
            }],
            _ => Vec::new(),
        }
    }
}

impl std::fmt::Display for WatchEnd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::TooSlow => "subscriber too slow: its queue filled up; resume by cursor",
            Self::Shutdown => "server is shutting down; reconnect (streams resume by cursor)",
            Self::Trimmed => {
                "events were trimmed before this server could read them; resume by cursor to learn which"
            }
            Self::Reset => "the event log was reset under this server; events may be missing: resume from now",
        })
    }
}

impl std::error::Error for WatchEnd {}

impl RpcError for WatchEnd {
    fn code(&self) -> Code {
        match self {
            Self::TooSlow => Code::ResourceExhausted,
            Self::Shutdown => Code::Unavailable,
            Self::Trimmed | Self::Reset => Code::OutOfRange,
        }
    }

    fn reason(&self) -> &'static str {
        match self {
            Self::TooSlow => reason::SUBSCRIBER_TOO_SLOW,
            Self::Shutdown => reason::SHUTTING_DOWN,
            Self::Trimmed => reason::CURSOR_TRIMMED,
            Self::Reset => reason::CURSOR_AHEAD,
        }
    }
}

/// Watches of every stream of one Redis, for the whole process.
#[derive(Clone)]
pub struct WatchHub {
    inner: Arc<HubInner>,
}

struct HubInner {
    redis: RedisEndpoint,
    config: StreamsConfig,
    fanouts: tokio::sync::Mutex<HashMap<String, Arc<Fanout>>>,
    stop: CancellationToken,
    next_id: AtomicU64,
    /// Subscriptions alive (attached or catching up), for gauges and tests.
    live: Arc<AtomicU64>,
}

/// The subscribers of one stream, and how far its reader got.
struct Fanout {
    key: String,
    state: Mutex<FanoutState>,
}

struct FanoutState {
    /// Last id the reader handled; it reads after this.
    position: StreamId,
    subscribers: HashMap<u64, Subscriber>,
    /// +1 whenever the reader found the stream reset or trimmed under it: a
    /// subscriber that was catching up meanwhile cannot trust its cursor.
    epoch: u64,
}

struct Subscriber {
    /// Events are shared, not copied, between subscribers.
    tx: mpsc::Sender<Arc<Entry>>,
    /// Entries up to this id were already delivered (by the catch-up).
    after: StreamId,
    filter: Filter,
    end: Arc<Mutex<Option<WatchEnd>>>,
}

impl Subscriber {
    fn end(&self, why: WatchEnd) {
        if let Ok(mut end) = self.end.lock() {
            end.get_or_insert(why);
        }
    }
}

impl WatchHub {
    /// A hub over `redis`; its readers stop when `stop` is cancelled. It
    /// sets no limit of its own on subscribers: client streams are limited
    /// by their [`Pump`](super::pump::Pump), and the gateway's internal
    /// followers must never be refused.
    pub fn new(redis: RedisEndpoint, config: StreamsConfig, stop: CancellationToken) -> Self {
        Self {
            inner: Arc::new(HubInner {
                redis,
                config,
                fanouts: tokio::sync::Mutex::new(HashMap::new()),
                stop,
                next_id: AtomicU64::new(0),
                live: Arc::default(),
            }),
        }
    }

    /// Watches `key` after `start_after` (an entry id), or from now if it is
    /// empty, delivering the entries `filter` accepts.
    pub async fn subscribe(
        &self,
        key: &str,
        start_after: &str,
        filter: Filter,
    ) -> Result<Subscription, WatchError> {
        let hub = &self.inner;
        let cursor = if start_after.is_empty() {
            None
        } else {
            Some(
                start_after
                    .parse()
                    .map_err(|()| WatchError::InvalidCursor(start_after.into()))?,
            )
        };
        let fanout = self.fanout(key).await?;
        let cursor = match cursor {
            Some(cursor) => {
                check_cursor(&hub.redis, key, cursor).await?;
                cursor
            }
            None => newest_id(&hub.redis, key).await?,
        };
        let (tx, rx) = mpsc::channel(hub.config.watch_queue_capacity);
        let end = Arc::new(Mutex::new(None));
        let id = hub.next_id.fetch_add(1, AtomicOrdering::Relaxed);
        let subscriber = Subscriber {
            tx,
            after: cursor,
            filter,
            end: Arc::clone(&end),
        };
        tokio::spawn(catch_up(
            Arc::clone(hub),
            Arc::clone(&fanout),
            id,
            subscriber,
        ));
        Ok(Subscription {
            rx,
            end,
            fanout,
            id,
            ended: false,
            _live: LiveCount::new(&hub.live),
        })
    }

    /// The fan-out of `key`, starting its reader on first use.
    async fn fanout(&self, key: &str) -> Result<Arc<Fanout>, WatchError> {
        let hub = &self.inner;
        if let Some(fanout) = hub.fanouts.lock().await.get(key) {
            return Ok(Arc::clone(fanout));
        }
        // Start where the stream ends now: every subscriber's catch-up
        // covers what came before its own cursor. Read without holding the
        // hub's lock, so a slow Redis does not queue every subscribe.
        let position = newest_id(&hub.redis, key).await?;
        let mut fanouts = hub.fanouts.lock().await;
        if let Some(fanout) = fanouts.get(key) {
            return Ok(Arc::clone(fanout)); // another subscribe won the race
        }
        let state = FanoutState {
            position,
            subscribers: HashMap::new(),
            epoch: 0,
        };
        let fanout = Arc::new(Fanout {
            key: key.to_string(),
            state: Mutex::new(state),
        });
        fanouts.insert(key.to_string(), Arc::clone(&fanout));
        tokio::spawn(read(Arc::clone(hub), Arc::clone(&fanout)));
        Ok(fanout)
    }

    /// Subscriptions alive (attached or catching up), over all streams.
    pub fn subscriber_count(&self) -> u64 {
        self.inner.live.load(AtomicOrdering::Relaxed)
    }

    /// Subscribers attached to live fan-outs (past their catch-up), over
    /// all streams.
    pub async fn attached_subscribers(&self) -> usize {
        let fanouts: Vec<Arc<Fanout>> = self.inner.fanouts.lock().await.values().cloned().collect();
        fanouts
            .iter()
            .map(|f| f.state.lock().map(|s| s.subscribers.len()).unwrap_or(0))
            .sum()
    }
}

/// A live watch: a stream of entries that ends with `Err(WatchEnd)` when
/// the server ends it. Dropping it unsubscribes at once.
pub struct Subscription {
    rx: mpsc::Receiver<Arc<Entry>>,
    end: Arc<Mutex<Option<WatchEnd>>>,
    fanout: Arc<Fanout>,
    id: u64,
    ended: bool,
    _live: LiveCount,
}

/// One count in a hub's number of live subscriptions, for as long as it
/// lives.
struct LiveCount(Arc<AtomicU64>);

impl LiveCount {
    fn new(count: &Arc<AtomicU64>) -> Self {
        count.fetch_add(1, AtomicOrdering::Relaxed);
        Self(Arc::clone(count))
    }
}

impl Drop for LiveCount {
    fn drop(&mut self) {
        self.0.fetch_sub(1, AtomicOrdering::Relaxed);
    }
}

impl Stream for Subscription {
    type Item = Result<Arc<Entry>, WatchEnd>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.ended {
            return Poll::Ready(None);
        }
        match self.rx.poll_recv(cx) {
            Poll::Ready(Some(event)) => Poll::Ready(Some(Ok(event))),
            Poll::Ready(None) => {
                // The sender is gone only when the server ended the watch.
                self.ended = true;
                let why = self
                    .end
                    .lock()
                    .ok()
                    .and_then(|e| *e)
                    .unwrap_or(WatchEnd::Shutdown);
                Poll::Ready(Some(Err(why)))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        // Closed first: a catch-up about to attach sees it and does not.
        self.rx.close();
        if let Ok(mut state) = self.fanout.state.lock() {
            state.subscribers.remove(&self.id);
        }
    }
}

/// Delivers history after the subscriber's cursor, then attaches it to the
/// live fan-out; see the module docs for why this order leaves no gap. Each
/// batch is read with the stream's facts at the same instant
/// (`lua/catch_up.lua`): if entries after the cursor were trimmed meanwhile,
/// or the reader found the stream reset or trimmed (epoch), the watch ends
/// with [`WatchEnd::Trimmed`] instead of skipping them.
async fn catch_up(hub: Arc<HubInner>, fanout: Arc<Fanout>, id: u64, mut subscriber: Subscriber) {
    let batch = hub.config.read_batch;
    let epoch = fanout.state.lock().map(|s| s.epoch).unwrap_or_default();
    loop {
        if subscriber.tx.is_closed() {
            return; // the client left during catch-up
        }
        if hub.stop.is_cancelled() {
            return subscriber.end(WatchEnd::Shutdown);
        }
        let read = history_after(&hub.redis, &fanout.key, subscriber.after, batch).await;
        let (entries, info) = match read {
            Ok(read) => read,
            Err(e) => {
                tracing::debug!(error = %e, key = %fanout.key, "watch catch-up read failed; retrying");
                tokio::select! {
                    _ = hub.stop.cancelled() => return subscriber.end(WatchEnd::Shutdown),
                    _ = tokio::time::sleep(Backoff::START) => continue,
                }
            }
        };
        if cursor_status(subscriber.after, info.as_ref()).is_err() {
            return subscriber.end(WatchEnd::Trimmed);
        }
        let full = entries.len() >= batch;
        for event in entries {
            let id = event.id;
            if (subscriber.filter)(&event) {
                // The client reads as fast as it can; one that cannot take
                // the history within a queue's worth of time is too slow.
                let event = Arc::new(event);
                let patience = hub.config.slow_subscriber_timeout;
                tokio::select! {
                    _ = hub.stop.cancelled() => return subscriber.end(WatchEnd::Shutdown),
                    sent = tokio::time::timeout(patience, subscriber.tx.send(event)) => match sent {
                        Ok(Ok(())) => {}
                        Ok(Err(_)) => return,
                        Err(_) => return subscriber.end(WatchEnd::TooSlow),
                    },
                }
            }
            subscriber.after = id;
        }
        if full {
            continue;
        }
        let Ok(mut state) = fanout.state.lock() else {
            return;
        };
        if state.epoch != epoch {
            return subscriber.end(WatchEnd::Trimmed);
        }
        if subscriber.tx.is_closed() {
            return; // dropped while we read: never register it
        }
        if state.position <= subscriber.after {
            state.subscribers.insert(id, subscriber);
            return;
        }
        // The reader already broadcast entries past our cursor: read them too.
    }
}

/// The reader of one stream; runs until shutdown.
async fn read(hub: Arc<HubInner>, fanout: Arc<Fanout>) {
    let mut backoff = Backoff::new();
    loop {
        let result = tokio::select! {
            _ = hub.stop.cancelled() => break,
            result = read_until_error(&hub, &fanout, &mut backoff) => result,
        };
        if let Err(e) = result {
            let delay = backoff.delay();
            tracing::warn!(key = %fanout.key, error = %e, ?delay, "watch reader reconnecting");
        }
        if !backoff.wait(&hub.stop).await {
            break;
        }
    }
    if let Ok(mut state) = fanout.state.lock() {
        for (_, subscriber) in state.subscribers.drain() {
            subscriber.end(WatchEnd::Shutdown);
        }
    }
}

async fn read_until_error(
    hub: &HubInner,
    fanout: &Fanout,
    backoff: &mut Backoff,
) -> Result<(), RedisError> {
    let mut conn = hub.redis.blocking(hub.config.block).await?;
    let endpoint = hub.redis.name();
    // While we were away, Redis may have restarted empty or lost its last
    // writes (the stream's last id went backwards), or trimmed entries we
    // had not read. Either way the watches cannot go on as if nothing
    // happened: they end, and their clients resume by cursor and learn
    // exactly what is gone (CURSOR_TRIMMED, or CURSOR_AHEAD: from now).
    let info = stream_info(&hub.redis, &fanout.key).await?;
    if let Ok(mut state) = fanout.state.lock() {
        let end = match cursor_status(state.position, info.as_ref()) {
            Ok(()) => None,
            Err(WatchError::CursorAhead { .. }) => {
                tracing::warn!(key = %fanout.key, "stream was reset under the reader; ending watches");
                Some(WatchEnd::Reset)
            }
            Err(_) => {
                tracing::warn!(key = %fanout.key, "entries were trimmed while the reader was away; ending watches");
                Some(WatchEnd::Trimmed)
            }
        };
        if let Some(end) = end {
            state.epoch += 1;
            for (_, subscriber) in state.subscribers.drain() {
                subscriber.end(end);
            }
            state.position = info.as_ref().map(|i| i.last_generated).unwrap_or_default();
        }
    }
    backoff.reset();
    // One read is pushed to every queue at once: never read more than a
    // queue holds, or a burst would cut off subscribers that keep up fine.
    // "Too slow" then means: had not drained the previous read.
    let batch = hub.config.read_batch.min(hub.config.watch_queue_capacity);
    loop {
        let position = fanout.state.lock().map(|s| s.position).unwrap_or_default();
        let read: Value = redis::cmd("XREAD")
            .arg("COUNT")
            .arg(batch)
            .arg("BLOCK")
            .arg(hub.config.block.as_millis() as u64)
            .arg("STREAMS")
            .arg(&fanout.key)
            .arg(position.to_string())
            .query_async(conn.conn())
            .await
            .map_err(|e| RedisError::from_redis(endpoint, e))?;
        let parsed = reply::read_entries(read);
        let Some(last) = parsed.iter().filter_map(Parsed::id).max() else {
            continue;
        };
        let events = parsed.into_iter().filter_map(|p| match p {
            Parsed::Entry(e) => Some(e),
            other => {
                tracing::warn!(key = %fanout.key, entry = ?other, "unreadable stream entry skipped");
                None
            }
        });
        let Ok(mut state) = fanout.state.lock() else {
            return Ok(());
        };
        broadcast(&mut state, events);
        state.position = state.position.max(last);
    }
}

/// Pushes `events` to every attached subscriber; cuts off those whose queue
/// is full and forgets those that left.
fn broadcast(state: &mut FanoutState, events: impl Iterator<Item = Entry>) {
    for event in events.map(Arc::new) {
        state.subscribers.retain(|_, s| {
            if event.id <= s.after || !(s.filter)(&event) {
                return true;
            }
            match s.tx.try_send(Arc::clone(&event)) {
                Ok(()) => true,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    s.end(WatchEnd::TooSlow);
                    false
                }
                Err(mpsc::error::TrySendError::Closed(_)) => false,
            }
        });
        state.position = state.position.max(event.id);
    }
}

/// Up to `count` entries after `after` (exclusive), and the stream's facts
/// at the same instant (`None` if it does not exist).
async fn history_after(
    redis: &RedisEndpoint,
    key: &str,
    after: StreamId,
    count: usize,
) -> Result<(Vec<Entry>, Option<StreamInfo>), RedisError> {
    let mut conn = redis.conn().await?;
    let (entries, info): (Value, Value) = CatchUp {
        stream: key,
        after: after.to_string(),
        count,
    }
    .invoke(&mut *conn)
    .await
    .map_err(|e| RedisError::from_redis(redis.name(), e))?;
    let info = match info {
        Value::Array(_) | Value::Map(_) => Some(StreamInfo::parse(info)),
        _ => None,
    };
    let events = reply::entries(entries)
        .into_iter()
        .filter_map(|p| match p {
            Parsed::Entry(e) => Some(e),
            _ => None,
        })
        .collect();
    Ok((events, info))
}

/// The newest id in `key`, or `0-0` if it is empty or missing.
async fn newest_id(redis: &RedisEndpoint, key: &str) -> Result<StreamId, RedisError> {
    Ok(stream_info(redis, key)
        .await?
        .map(|i| i.last_generated)
        .unwrap_or_default())
}

/// `XINFO STREAM` of `key`; `None` if the stream does not exist.
pub async fn stream_info(
    redis: &RedisEndpoint,
    key: &str,
) -> Result<Option<StreamInfo>, RedisError> {
    let mut conn = redis.conn().await?;
    let reply: redis::RedisResult<Value> = redis::cmd("XINFO")
        .arg("STREAM")
        .arg(key)
        .query_async(&mut *conn)
        .await;
    match reply {
        Ok(info) => Ok(Some(StreamInfo::parse(info))),
        Err(e) if e.to_string().contains("no such key") => Ok(None),
        Err(e) => Err(RedisError::from_redis(redis.name(), e)),
    }
}

/// Refuses a cursor whose successors may have been removed, or that is past
/// the end.
async fn check_cursor(
    redis: &RedisEndpoint,
    key: &str,
    cursor: StreamId,
) -> Result<(), WatchError> {
    cursor_status(cursor, stream_info(redis, key).await?.as_ref())
}

/// Whether reading after `cursor` can miss nothing. Trimming removes from
/// the head, so if anything was ever removed and the cursor is older than
/// the oldest entry kept, entries after it may be gone: refused. (A cursor
/// that is exactly the last entry trimmed is refused too; Redis does not
/// say which id that was. Refusing is safe.)
fn cursor_status(cursor: StreamId, info: Option<&StreamInfo>) -> Result<(), WatchError> {
    let Some(info) = info else {
        // No stream: only a cursor from its very beginning is meaningful.
        return if cursor == StreamId::default() {
            Ok(())
        } else {
            Err(WatchError::CursorAhead {
                cursor,
                last: StreamId::default(),
            })
        };
    };
    let last = info.last_generated;
    match cursor.cmp(&last) {
        Ordering::Greater => return Err(WatchError::CursorAhead { cursor, last }),
        Ordering::Equal => return Ok(()), // nothing after it could be lost
        Ordering::Less => {}
    }
    if cursor < info.max_deleted {
        return Err(WatchError::CursorTrimmed {
            cursor,
            trimmed_up_to: info.max_deleted,
        });
    }
    let removed = info.entries_added > info.length;
    if removed && (info.length == 0 || cursor < info.first) {
        let kept_from = if info.length == 0 { last } else { info.first };
        return Err(WatchError::CursorTrimmed {
            cursor,
            trimmed_up_to: kept_from,
        });
    }
    Ok(())
}
