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
//!   went backwards) it starts again from `0-0` so new entries are not lost;
//!   if entries it had not read were trimmed meanwhile, every watch ends
//!   with [`WatchEnd::Trimmed`] (OUT_OF_RANGE) rather than skip them;
//! - shutdown: readers stop and every subscription ends with
//!   [`WatchEnd::Shutdown`].

use std::{
    cmp::Ordering,
    collections::HashMap,
    fmt,
    pin::Pin,
    str::FromStr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering as AtomicOrdering},
    },
    task::{Context, Poll},
};

use futures_util::Stream;
use redis::{
    Script, Value,
    streams::{StreamRangeReply, StreamReadOptions, StreamReadReply},
};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

use super::Backoff;

static CATCH_UP: std::sync::LazyLock<Script> =
    std::sync::LazyLock::new(|| Script::new(include_str!("lua/catch_up.lua")));
use crate::{
    config::StreamsConfig,
    redis::{RedisEndpoint, RedisError, value_text},
};

/// A Redis stream entry id, `<ms>-<seq>`, ordered as Redis orders them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct StreamId {
    /// Milliseconds part.
    pub ms: u64,
    /// Sequence part.
    pub seq: u64,
}

impl FromStr for StreamId {
    type Err = ();

    fn from_str(s: &str) -> Result<Self, ()> {
        let (ms, seq) = s.split_once('-').ok_or(())?;
        Ok(Self {
            ms: ms.parse().map_err(drop)?,
            seq: seq.parse().map_err(drop)?,
        })
    }
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.ms, self.seq)
    }
}

/// One stream entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamEvent {
    /// Its id: the `event_id` clients resume after.
    pub id: StreamId,
    /// Its fields, as strings.
    pub fields: HashMap<String, String>,
}

impl StreamEvent {
    /// The value of `field`, or "".
    pub fn field(&self, field: &str) -> &str {
        self.fields.get(field).map_or("", String::as_str)
    }

    fn from_redis(id: &str, map: &HashMap<String, Value>) -> Option<Self> {
        let fields = map
            .iter()
            .map(|(k, v)| (k.clone(), value_text(v)))
            .collect();
        Some(Self {
            id: id.parse().ok()?,
            fields,
        })
    }
}

/// Decides which entries a subscriber wants (e.g. one user's events).
pub type Filter = Arc<dyn Fn(&StreamEvent) -> bool + Send + Sync>;

/// Why a watch could not start.
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    /// The cursor is not a stream entry id.
    #[error("start_after_event_id {0:?} is not an event id (<ms>-<seq>)")]
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
    /// The per-process subscriber limit is reached.
    #[error("{limit} watch subscribers already")]
    TooManySubscribers {
        /// The limit.
        limit: usize,
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
    permits: Arc<Semaphore>,
    stop: CancellationToken,
    next_id: AtomicU64,
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
    tx: mpsc::Sender<Arc<StreamEvent>>,
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
    /// A hub over `redis`; its readers stop when `stop` is cancelled.
    pub fn new(redis: RedisEndpoint, config: StreamsConfig, stop: CancellationToken) -> Self {
        let permits = Arc::new(Semaphore::new(config.max_watch_subscribers));
        Self {
            inner: Arc::new(HubInner {
                redis,
                config,
                fanouts: tokio::sync::Mutex::new(HashMap::new()),
                permits,
                stop,
                next_id: AtomicU64::new(0),
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
        let limit = hub.config.max_watch_subscribers;
        let permit = Arc::clone(&hub.permits)
            .try_acquire_owned()
            .map_err(|_| WatchError::TooManySubscribers { limit })?;
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
            _permit: permit,
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

    /// Subscribers attached to live fan-outs (past their catch-up), over
    /// all streams.
    pub async fn attached_subscribers(&self) -> usize {
        let fanouts: Vec<Arc<Fanout>> = self.inner.fanouts.lock().await.values().cloned().collect();
        fanouts
            .iter()
            .map(|f| f.state.lock().map(|s| s.subscribers.len()).unwrap_or(0))
            .sum()
    }

    /// Subscribers currently attached or catching up, over all streams.
    pub fn subscriber_count(&self) -> usize {
        self.inner.config.max_watch_subscribers - self.inner.permits.available_permits()
    }
}

/// A live watch: a stream of entries that ends with `Err(WatchEnd)` when
/// the server ends it. Dropping it unsubscribes at once.
pub struct Subscription {
    rx: mpsc::Receiver<Arc<StreamEvent>>,
    end: Arc<Mutex<Option<WatchEnd>>>,
    fanout: Arc<Fanout>,
    id: u64,
    ended: bool,
    _permit: OwnedSemaphorePermit,
}

impl Stream for Subscription {
    type Item = Result<Arc<StreamEvent>, WatchEnd>;

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
    // While we were away, Redis may have restarted empty (the stream's last
    // id went backwards: watch the new stream from its start), or trimmed
    // entries we had not read (end every watch: they resume by cursor and
    // learn exactly what is gone, instead of skipping it unknowingly).
    let info = stream_info(&hub.redis, &fanout.key).await?;
    if let Ok(mut state) = fanout.state.lock() {
        match cursor_status(state.position, info.as_ref()) {
            Ok(()) => {}
            Err(WatchError::CursorAhead { .. }) => {
                tracing::warn!(key = %fanout.key, "stream was reset; watching it from its start");
                state.epoch += 1;
                state.position = StreamId::default();
                for subscriber in state.subscribers.values_mut() {
                    subscriber.after = StreamId::default();
                }
            }
            Err(_) => {
                tracing::warn!(key = %fanout.key, "entries were trimmed while the reader was away; ending watches");
                state.epoch += 1;
                for (_, subscriber) in state.subscribers.drain() {
                    subscriber.end(WatchEnd::Trimmed);
                }
                state.position = info.as_ref().map(|i| i.last_generated).unwrap_or_default();
            }
        }
    }
    backoff.reset();
    // One read is pushed to every queue at once: never read more than a
    // queue holds, or a burst would cut off subscribers that keep up fine.
    // "Too slow" then means: had not drained the previous read.
    let batch = hub.config.read_batch.min(hub.config.watch_queue_capacity);
    let options = StreamReadOptions::default()
        .block(hub.config.block.as_millis() as usize)
        .count(batch);
    loop {
        let position = fanout.state.lock().map(|s| s.position).unwrap_or_default();
        let reply: Option<StreamReadReply> = redis::cmd("XREAD")
            .arg(&options)
            .arg("STREAMS")
            .arg(&fanout.key)
            .arg(position.to_string())
            .query_async(conn.conn())
            .await
            .map_err(|e| RedisError::from_redis(endpoint, e))?;
        let events: Vec<StreamEvent> = reply
            .into_iter()
            .flat_map(|r| r.keys)
            .flat_map(|k| k.ids)
            .filter_map(|e| StreamEvent::from_redis(&e.id, &e.map))
            .collect();
        if events.is_empty() {
            continue;
        }
        let Ok(mut state) = fanout.state.lock() else {
            return Ok(());
        };
        broadcast(&mut state, events);
    }
}

/// Pushes `events` to every attached subscriber; cuts off those whose queue
/// is full and forgets those that left.
fn broadcast(state: &mut FanoutState, events: Vec<StreamEvent>) {
    for event in events.into_iter().map(Arc::new) {
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
) -> Result<(Vec<StreamEvent>, Option<StreamInfo>), RedisError> {
    let mut conn = redis.conn().await?;
    let (entries, info): (StreamRangeReply, Value) = CATCH_UP
        .key(key)
        .arg(after.to_string())
        .arg(count)
        .invoke_async(&mut *conn)
        .await
        .map_err(|e| RedisError::from_redis(redis.name(), e))?;
    let info = match info {
        Value::Array(flat) => {
            let map: HashMap<String, Value> = flat
                .chunks(2)
                .filter_map(|kv| match kv {
                    [k, v] => Some((value_text(k), v.clone())),
                    _ => None,
                })
                .collect();
            Some(StreamInfo::from_map(&map))
        }
        _ => None,
    };
    let events = entries
        .ids
        .iter()
        .filter_map(|e| StreamEvent::from_redis(&e.id, &e.map))
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

struct StreamInfo {
    last_generated: StreamId,
    /// Newest id removed by XDEL (Redis 7.0 does not count trimming here).
    max_deleted: StreamId,
    /// Oldest id still in the stream.
    first: StreamId,
    /// Entries now in the stream.
    length: u64,
    /// Entries ever added.
    entries_added: u64,
}

/// `XINFO STREAM`'s ids; `None` if the stream does not exist.
async fn stream_info(redis: &RedisEndpoint, key: &str) -> Result<Option<StreamInfo>, RedisError> {
    let mut conn = redis.conn().await?;
    let reply: redis::RedisResult<HashMap<String, Value>> = redis::cmd("XINFO")
        .arg("STREAM")
        .arg(key)
        .query_async(&mut *conn)
        .await;
    let info = match reply {
        Ok(info) => info,
        Err(e) if e.to_string().contains("no such key") => return Ok(None),
        Err(e) => return Err(RedisError::from_redis(redis.name(), e)),
    };
    Ok(Some(StreamInfo::from_map(&info)))
}

impl StreamInfo {
    fn from_map(info: &HashMap<String, Value>) -> Self {
        let id = |field: &str| {
            info.get(field)
                .map(value_text)
                .and_then(|t| t.parse().ok())
                .unwrap_or_default()
        };
        let count = |field: &str| match info.get(field) {
            Some(Value::Int(n)) => u64::try_from(*n).unwrap_or(0),
            _ => 0,
        };
        Self {
            last_generated: id("last-generated-id"),
            max_deleted: id("max-deleted-entry-id"),
            first: id("recorded-first-entry-id"),
            length: count("length"),
            entries_added: count("entries-added"),
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_ids_parse_and_order_like_redis() {
        let a: StreamId = "1700000000000-5".parse().expect("id");
        let b: StreamId = "1700000000000-10".parse().expect("id");
        let c: StreamId = "1700000000001-0".parse().expect("id");
        assert!(a < b && b < c, "numeric, not lexical");
        assert_eq!(a.to_string(), "1700000000000-5");
        assert!("17".parse::<StreamId>().is_err());
        assert!("a-1".parse::<StreamId>().is_err());
        assert!("1-".parse::<StreamId>().is_err());
    }
}
