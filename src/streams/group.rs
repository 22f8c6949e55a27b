//! Consumer groups: competing subscribers split a stream's entries,
//! at-least-once. An entry stays pending until acknowledged with
//! [`GroupHub::ack`] (for credit requests: when they are answered).
//!
//! Each subscriber has a task and a blocking connection of its own (a
//! consumer in the group). The task:
//! 1. creates the group with MKSTREAM (BUSYGROUP means it exists: fine);
//! 2. delivers its own pending entries first (`XREADGROUP ... 0`), so a
//!    restarted subscriber with a stable name resumes what it held; after a
//!    reconnect it does so again, skipping what it has already handed to its
//!    client: what is left never reached the client (a reply lost with the
//!    connection, a claim whose delivery failed) and would otherwise sit on
//!    this live consumer, where nobody reclaims it;
//! 3. then reads new entries (`XREADGROUP ... >`), and every
//!    `claim_min_idle / 2` reclaims entries idle longer than `claim_min_idle`
//!    on other consumers (`XPENDING ... IDLE`, then `XCLAIM`): those of
//!    subscribers that died holding them. Its own are never reclaimed: they
//!    are with its client.
//!
//! What can go wrong, and what happens:
//! - an entry is delivered more than `max_deliveries` times (a poison entry
//!   that kills or stalls every subscriber): it moves to `<stream>:dlq` with
//!   its original id, fields and the reason, and is acknowledged, in one
//!   script (`lua/dead_letter.lua`);
//! - an entry is trimmed while pending: its own consumer acknowledges it
//!   when reading its pending list (nil fields), and XCLAIM drops it from
//!   the pending list when another claims it; never looped on;
//! - NOGROUP (the stream or group vanished, e.g. Redis restarted without
//!   persistence): the group is created again from `0` and reading goes on;
//! - Redis down: the task backs off and reconnects; unacknowledged entries
//!   stay pending in Redis, nothing is lost;
//! - the subscriber goes away: its task ends; what it held is reclaimed by
//!   others after `claim_min_idle`;
//! - idle consumers are deleted only when they hold nothing pending
//!   (`lua/delete_idle_consumers.lua`, check and delete in one step).
//!
//! Deliveries queue in a small bounded channel: a subscriber that does not
//! read simply stops its task from reading more (backpressure), and what it
//! holds is reclaimed by others.

use std::{
    collections::{HashMap, HashSet},
    pin::Pin,
    sync::{
        Arc, LazyLock,
        atomic::{AtomicU64, Ordering},
    },
    task::{Context, Poll},
    time::Duration,
};

use futures_util::Stream;
use redis::{Script, Value, aio::MultiplexedConnection};
use tokio::{sync::mpsc, time::Instant};
use tokio_util::sync::CancellationToken;

use super::{
    Backoff,
    watch::{StreamId, WatchEnd},
};
use crate::{
    config::StreamsConfig,
    redis::{RedisEndpoint, RedisError, value_text},
};

static DEAD_LETTER: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/dead_letter.lua")));
static DELETE_IDLE_CONSUMERS: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/delete_idle_consumers.lua")));

/// The dead-letter stream of `key`.
pub fn dlq_key(key: &str) -> String {
    format!("{key}:dlq")
}

/// One delivery of a stream entry to a group member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The entry id: acknowledge it with [`GroupHub::ack`].
    pub id: StreamId,
    /// The entry's fields.
    pub fields: HashMap<String, String>,
    /// Times the entry has been delivered, 1 the first time.
    pub delivery_count: u64,
}

impl Delivery {
    /// The value of `field`, or "".
    pub fn field(&self, field: &str) -> &str {
        self.fields.get(field).map_or("", String::as_str)
    }
}

/// Consumer groups on one Redis, for the whole process.
#[derive(Clone)]
pub struct GroupHub {
    redis: RedisEndpoint,
    config: StreamsConfig,
    /// Makes generated consumer names unique to this process.
    instance: String,
    next: Arc<AtomicU64>,
    stop: CancellationToken,
}

impl GroupHub {
    /// A hub over `redis`; subscriptions end when `stop` is cancelled.
    pub fn new(redis: RedisEndpoint, config: StreamsConfig, stop: CancellationToken) -> Self {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_else(|_| "gateway".into());
        let instance = format!("{host}-{}", std::process::id());
        Self {
            redis,
            config,
            instance,
            next: Arc::new(AtomicU64::new(0)),
            stop,
        }
    }

    /// Joins `group` on `key` as `consumer` (generated, unique to this
    /// process, if `None`). Deliveries start with the consumer's own
    /// pending entries.
    pub fn subscribe(&self, key: &str, group: &str, consumer: Option<&str>) -> GroupSubscription {
        let consumer = consumer.map_or_else(
            || {
                format!(
                    "{}-{}",
                    self.instance,
                    self.next.fetch_add(1, Ordering::Relaxed)
                )
            },
            str::to_string,
        );
        let (tx, rx) = mpsc::channel(self.config.group_queue_capacity);
        let member = Member {
            redis: self.redis.clone(),
            config: self.config.clone(),
            key: key.to_string(),
            group: group.to_string(),
            consumer: consumer.clone(),
            tx,
            stop: self.stop.clone(),
        };
        tokio::spawn(member.run());
        GroupSubscription {
            rx,
            consumer,
            ended: false,
        }
    }

    /// Acknowledges a delivery: it will not be delivered again. Returns
    /// false if it was not pending (already acknowledged).
    pub async fn ack(&self, key: &str, group: &str, id: StreamId) -> Result<bool, RedisError> {
        let mut conn = self.redis.conn().await?;
        let acked: u64 = redis::cmd("XACK")
            .arg(key)
            .arg(group)
            .arg(id.to_string())
            .query_async(&mut *conn)
            .await
            .map_err(|e| RedisError::from_redis(self.redis.name(), e))?;
        Ok(acked == 1)
    }
}

impl GroupHub {
    /// Moves a delivery its subscriber cannot handle (malformed) to the
    /// dead-letter stream, acknowledged, for a person to look at.
    pub async fn dead_letter(
        &self,
        key: &str,
        group: &str,
        delivery: &Delivery,
        reason: &str,
    ) -> Result<(), RedisError> {
        let mut conn = self.redis.conn().await?;
        dead_letter(
            &mut *conn,
            &self.config,
            key,
            group,
            delivery.id,
            &delivery.fields,
            reason,
            delivery.delivery_count,
        )
        .await
        .map_err(|e| RedisError::from_redis(self.redis.name(), e))?;
        tracing::error!(%key, %group, id = %delivery.id, %reason, "entry moved to the dead-letter stream");
        Ok(())
    }
}

/// A group membership: a stream of deliveries, ending with
/// `Err(WatchEnd::Shutdown)` when the server stops.
pub struct GroupSubscription {
    rx: mpsc::Receiver<Delivery>,
    consumer: String,
    ended: bool,
}

impl GroupSubscription {
    /// The consumer name in the group.
    pub fn consumer(&self) -> &str {
        &self.consumer
    }
}

impl Stream for GroupSubscription {
    type Item = Result<Delivery, WatchEnd>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.ended {
            return Poll::Ready(None);
        }
        match self.rx.poll_recv(cx) {
            Poll::Ready(Some(delivery)) => Poll::Ready(Some(Ok(delivery))),
            Poll::Ready(None) => {
                self.ended = true;
                Poll::Ready(Some(Err(WatchEnd::Shutdown)))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

/// One subscriber's task.
struct Member {
    redis: RedisEndpoint,
    config: StreamsConfig,
    key: String,
    group: String,
    consumer: String,
    tx: mpsc::Sender<Delivery>,
    stop: CancellationToken,
}

/// Entries handed to this subscription's client that it may still hold:
/// never sent to it again. Pruned to our pending list every reclaim round,
/// so it holds no more than the client does.
#[derive(Default)]
struct Held(HashSet<StreamId>);

/// Where a member's reading stands on one connection.
struct Progress {
    /// Still delivering our own pending entries (those not [`Held`]), after
    /// this id; on every (re)connect.
    own: Option<StreamId>,
    /// Where the scan for others' idle entries continues; `0-0` starts over.
    claim_cursor: StreamId,
    next_claim: Instant,
    next_cleanup: Instant,
}

/// Why a member's read loop stopped.
enum Stop {
    /// The subscriber left, or shutdown: end the task.
    Done,
    /// Redis failed: reconnect.
    Redis(redis::RedisError),
}

impl From<redis::RedisError> for Stop {
    fn from(e: redis::RedisError) -> Self {
        Self::Redis(e)
    }
}

impl Member {
    async fn run(self) {
        let mut backoff = Backoff::new();
        let mut held = Held::default();
        loop {
            let result = tokio::select! {
                _ = self.stop.cancelled() => return,
                _ = self.tx.closed() => return,
                result = self.serve(&mut backoff, &mut held) => result,
            };
            match result {
                Stop::Done => return,
                Stop::Redis(e) => tracing::warn!(
                    key = %self.key, group = %self.group, consumer = %self.consumer,
                    error = %e, delay = ?backoff.delay(), "group subscriber reconnecting"
                ),
            }
            if !backoff.wait(&self.stop).await {
                return;
            }
        }
    }

    /// One connection's life.
    async fn serve(&self, backoff: &mut Backoff, held: &mut Held) -> Stop {
        let block = self
            .config
            .block
            .min(self.config.claim_min_idle / 2)
            .max(Duration::from_millis(10));
        let mut conn = match self.redis.blocking(block).await {
            Ok(conn) => conn,
            Err(e) => {
                return Stop::Redis(redis::RedisError::from((
                    redis::ErrorKind::Io,
                    "connect",
                    e.to_string(),
                )));
            }
        };
        let conn = conn.conn();
        if let Err(e) = self.create_group(conn).await {
            return e.into();
        }
        backoff.reset();
        let mut state = Progress {
            own: Some(StreamId::default()),
            claim_cursor: StreamId::default(),
            next_claim: Instant::now(),
            next_cleanup: Instant::now(),
        };
        loop {
            let result = self.step(conn, &mut state, held, block).await;
            match result {
                Ok(()) => {}
                Err(Stop::Redis(e)) if e.code() == Some("NOGROUP") => {
                    tracing::warn!(key = %self.key, group = %self.group, "consumer group vanished; creating it again from 0");
                    if let Err(e) = self.create_group(conn).await {
                        return e.into();
                    }
                    // A new group: its entries are new deliveries.
                    state.own = None;
                    held.0.clear();
                }
                Err(stop) => return stop,
            }
        }
    }

    /// One round: reclaim and clean up when due, then read.
    async fn step(
        &self,
        conn: &mut MultiplexedConnection,
        state: &mut Progress,
        held: &mut Held,
        block: Duration,
    ) -> Result<(), Stop> {
        // Reclaim only once our own pending entries are out: reclaiming them
        // first would deliver them twice.
        if state.own.is_none() && Instant::now() >= state.next_claim {
            state.claim_cursor = self.reclaim(conn, state.claim_cursor, held).await?;
            if state.claim_cursor == StreamId::default() {
                self.prune(conn, held).await?;
                state.next_claim = Instant::now() + self.config.claim_min_idle / 2;
            }
        }
        if Instant::now() >= state.next_cleanup {
            self.delete_idle_consumers(conn).await?;
            state.next_cleanup = Instant::now() + self.config.idle_consumer_ttl / 4;
        }
        match state.own {
            Some(after) => state.own = self.read_own(conn, after, held).await?,
            None => self.read_new(conn, block, held).await?,
        }
        Ok(())
    }

    async fn create_group(
        &self,
        conn: &mut MultiplexedConnection,
    ) -> Result<(), redis::RedisError> {
        let created: redis::RedisResult<()> = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(&self.key)
            .arg(&self.group)
            .arg("0")
            .arg("MKSTREAM")
            .query_async(conn)
            .await;
        match created {
            Err(e) if e.code() != Some("BUSYGROUP") => Err(e),
            _ => Ok(()),
        }
    }

    /// Delivers our own pending entries after `after` that the client does
    /// not hold already; `None` once done.
    async fn read_own(
        &self,
        conn: &mut MultiplexedConnection,
        after: StreamId,
        held: &mut Held,
    ) -> Result<Option<StreamId>, Stop> {
        let reply: Value = redis::cmd("XREADGROUP")
            .arg("GROUP")
            .arg(&self.group)
            .arg(&self.consumer)
            .arg("COUNT")
            .arg(self.config.read_batch)
            .arg("STREAMS")
            .arg(&self.key)
            .arg(after.to_string())
            .query_async(conn)
            .await?;
        let entries = entries_of_read(reply);
        let Some(last) = entries.last().map(|(id, _)| *id) else {
            return Ok(None);
        };
        for (id, fields) in entries {
            if held.0.contains(&id) {
                continue;
            }
            let count = self.delivery_count(conn, id).await?;
            self.handle(conn, id, fields, count, held).await?;
        }
        Ok(Some(last))
    }

    async fn read_new(
        &self,
        conn: &mut MultiplexedConnection,
        block: Duration,
        held: &mut Held,
    ) -> Result<(), Stop> {
        let reply: Value = redis::cmd("XREADGROUP")
            .arg("GROUP")
            .arg(&self.group)
            .arg(&self.consumer)
            .arg("COUNT")
            .arg(self.config.group_queue_capacity)
            .arg("BLOCK")
            .arg(block.as_millis() as u64)
            .arg("STREAMS")
            .arg(&self.key)
            .arg(">")
            .query_async(conn)
            .await?;
        for (id, fields) in entries_of_read(reply) {
            self.handle(conn, id, fields, 1, held).await?;
        }
        Ok(())
    }

    /// Claims entries idle past `claim_min_idle` on *other* consumers (ours
    /// are with our client, however long it takes) and delivers them; returns
    /// where the scan continues (`0-0` when it is complete). On Redis 7,
    /// XCLAIM also drops from the group's pending list entries whose data
    /// was trimmed away, so those are not looped on.
    async fn reclaim(
        &self,
        conn: &mut MultiplexedConnection,
        cursor: StreamId,
        held: &mut Held,
    ) -> Result<StreamId, Stop> {
        let min_idle = self.config.claim_min_idle.as_millis() as u64;
        let rows = pending_rows(
            redis::cmd("XPENDING")
                .arg(&self.key)
                .arg(&self.group)
                .arg("IDLE")
                .arg(min_idle)
                .arg(range_after(cursor))
                .arg("+")
                .arg(self.config.read_batch)
                .query_async(&mut *conn)
                .await?,
        );
        let next = if rows.len() >= self.config.read_batch {
            rows.last().map(|(id, _, _)| *id).unwrap_or_default()
        } else {
            StreamId::default()
        };
        let others: HashMap<StreamId, u64> = rows
            .into_iter()
            .filter(|(_, owner, _)| *owner != self.consumer)
            .map(|(id, _, count)| (id, count))
            .collect();
        if others.is_empty() {
            return Ok(next);
        }
        let mut claim = redis::cmd("XCLAIM");
        claim
            .arg(&self.key)
            .arg(&self.group)
            .arg(&self.consumer)
            .arg(min_idle);
        for id in others.keys() {
            claim.arg(id.to_string());
        }
        // Only entries still idle enough are claimed: a race with another
        // member claiming the same entry is settled by Redis.
        let claimed = entries_of(claim.query_async(&mut *conn).await?);
        for (id, fields) in claimed {
            let count = others.get(&id).map_or(1, |c| c + 1);
            self.handle(conn, id, fields, count, held).await?;
        }
        Ok(next)
    }

    /// Delivers an entry, or dead-letters it if delivered too often, or
    /// acknowledges it if its data was trimmed away.
    async fn handle(
        &self,
        conn: &mut MultiplexedConnection,
        id: StreamId,
        fields: Option<HashMap<String, String>>,
        count: u64,
        held: &mut Held,
    ) -> Result<(), Stop> {
        let Some(fields) = fields else {
            tracing::warn!(key = %self.key, group = %self.group, %id, "pending entry was trimmed before it was handled; acknowledging it");
            let _: u64 = redis::cmd("XACK")
                .arg(&self.key)
                .arg(&self.group)
                .arg(id.to_string())
                .query_async(conn)
                .await?;
            return Ok(());
        };
        if count > self.config.max_deliveries {
            let reason = format!(
                "delivered {count} times without being acknowledged (limit {})",
                self.config.max_deliveries
            );
            let moved = dead_letter(
                conn,
                &self.config,
                &self.key,
                &self.group,
                id,
                &fields,
                &reason,
                count,
            )
            .await;
            match moved {
                Ok(true) => {
                    tracing::error!(key = %self.key, group = %self.group, %id, %reason, "entry moved to the dead-letter stream");
                }
                Ok(false) => {} // acknowledged meanwhile
                // Redis refused the move itself (e.g. a wrong-type key at the
                // dead-letter stream): retrying cannot help. Leave the entry
                // pending for an operator and go on with the others, rather
                // than reconnect-loop on it forever.
                Err(e)
                    if !RedisError::from_redis(self.redis.name(), e.clone()).is_unavailable() =>
                {
                    tracing::error!(key = %self.key, group = %self.group, %id, error = %e, "cannot dead-letter entry; left pending for an operator");
                }
                Err(e) => return Err(e.into()),
            }
            return Ok(());
        }
        let delivery = Delivery {
            id,
            fields,
            delivery_count: count,
        };
        // Waits while the subscriber's queue is full: we read no more than
        // it takes. A subscriber that left ends the task.
        self.tx.send(delivery).await.map_err(|_| Stop::Done)?;
        held.0.insert(id);
        Ok(())
    }

    /// Forgets held entries that are no longer pending on us (answered, or
    /// reclaimed by another member after `claim_min_idle`).
    async fn prune(&self, conn: &mut MultiplexedConnection, held: &mut Held) -> Result<(), Stop> {
        if held.0.is_empty() {
            return Ok(());
        }
        let mut pending = HashSet::new();
        let mut cursor = StreamId::default();
        loop {
            let rows = pending_rows(
                redis::cmd("XPENDING")
                    .arg(&self.key)
                    .arg(&self.group)
                    .arg(range_after(cursor))
                    .arg("+")
                    .arg(self.config.read_batch)
                    .arg(&self.consumer)
                    .query_async(&mut *conn)
                    .await?,
            );
            let full = rows.len() >= self.config.read_batch;
            let Some(last) = rows.last().map(|(id, _, _)| *id) else {
                break;
            };
            pending.extend(rows.into_iter().map(|(id, _, _)| id));
            if !full {
                break;
            }
            cursor = last;
        }
        held.0.retain(|id| pending.contains(id));
        Ok(())
    }

    async fn delivery_count(
        &self,
        conn: &mut MultiplexedConnection,
        id: StreamId,
    ) -> Result<u64, Stop> {
        let rows = pending_rows(
            redis::cmd("XPENDING")
                .arg(&self.key)
                .arg(&self.group)
                .arg(id.to_string())
                .arg(id.to_string())
                .arg(1)
                .query_async(conn)
                .await?,
        );
        Ok(rows.first().map_or(1, |(_, _, count)| *count))
    }

    async fn delete_idle_consumers(&self, conn: &mut MultiplexedConnection) -> Result<(), Stop> {
        let deleted: u64 = DELETE_IDLE_CONSUMERS
            .key(&self.key)
            .arg(&self.group)
            .arg(self.config.idle_consumer_ttl.as_millis() as u64)
            .arg(&self.consumer)
            .invoke_async(conn)
            .await?;
        if deleted > 0 {
            tracing::info!(key = %self.key, group = %self.group, deleted, "deleted idle consumers that held nothing");
        }
        Ok(())
    }
}

/// Moves a pending entry to the dead-letter stream and acknowledges it, in
/// one script; false if it was acknowledged meanwhile.
#[allow(clippy::too_many_arguments)]
async fn dead_letter(
    conn: &mut (impl redis::aio::ConnectionLike + Send),
    config: &StreamsConfig,
    key: &str,
    group: &str,
    id: StreamId,
    fields: &HashMap<String, String>,
    reason: &str,
    count: u64,
) -> redis::RedisResult<bool> {
    let mut invocation = DEAD_LETTER.key(key);
    invocation
        .key(dlq_key(key))
        .arg(group)
        .arg(id.to_string())
        .arg(reason)
        .arg(count)
        .arg(config.maxlen_for(&dlq_key(key)));
    for (k, v) in fields {
        invocation.arg(k).arg(v);
    }
    Ok(invocation.invoke_async::<u64>(conn).await? == 1)
}

/// Rows of an extended XPENDING reply, `[[id, consumer, idle ms, delivery
/// count], ...]`, as (id, consumer, delivery count).
fn pending_rows(reply: Value) -> Vec<(StreamId, String, u64)> {
    match reply {
        Value::Array(rows) => rows
            .into_iter()
            .filter_map(|row| match row {
                Value::Array(cols) if cols.len() == 4 => Some((
                    value_text(&cols[0]).parse().ok()?,
                    value_text(&cols[1]),
                    value_text(&cols[3]).parse().unwrap_or(1),
                )),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// The XPENDING start bound of a scan that goes on after `cursor` (`0-0`:
/// from the start).
fn range_after(cursor: StreamId) -> String {
    if cursor == StreamId::default() {
        "-".to_string()
    } else {
        format!("({cursor}")
    }
}

type Entry = (StreamId, Option<HashMap<String, String>>);

/// Entries of an XREADGROUP reply (one stream): `[[key, [entry...]]]`.
fn entries_of_read(reply: Value) -> Vec<Entry> {
    match reply {
        Value::Array(streams) => streams
            .into_iter()
            .flat_map(|s| match s {
                Value::Array(mut parts) if parts.len() == 2 => entries_of(parts.remove(1)),
                _ => Vec::new(),
            })
            .collect(),
        // RESP3 may answer with a map.
        Value::Map(streams) => streams
            .into_iter()
            .flat_map(|(_, v)| entries_of(v))
            .collect(),
        _ => Vec::new(),
    }
}

/// `[[id, [field, value, ...] or nil], ...]`; nil fields mean the entry was
/// deleted while pending.
fn entries_of(value: Value) -> Vec<Entry> {
    let Value::Array(entries) = value else {
        return Vec::new();
    };
    entries
        .into_iter()
        .filter_map(|entry| {
            let Value::Array(mut parts) = entry else {
                return None;
            };
            if parts.is_empty() {
                return None;
            }
            let id: StreamId = value_text(&parts[0]).parse().ok()?;
            let fields = match parts.get_mut(1).map(std::mem::take) {
                Some(Value::Array(kv)) => Some(
                    kv.chunks(2)
                        .filter_map(|p| match p {
                            [k, v] => Some((value_text(k), value_text(v))),
                            _ => None,
                        })
                        .collect(),
                ),
                _ => None,
            };
            Some((id, fields))
        })
        .collect()
}
