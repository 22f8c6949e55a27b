//! One consumer-group member: the task behind a [`GroupSubscription`]
//! (see the parent module for what it does and what can go wrong).

use std::{
    collections::{HashMap, HashSet},
    time::Duration,
};

use redis::{Value, aio::MultiplexedConnection};
use tokio::{sync::mpsc, time::Instant};
use tokio_util::sync::CancellationToken;

use super::{Delivery, OnLimit, dead_letter};
use crate::{
    config::StreamsConfig,
    redis::{RedisEndpoint, RedisError, script::lua_script},
    streams::{
        Backoff,
        entry::{Fields, StreamId},
        reply::{self, Parsed},
    },
};

lua_script! {
    /// `lua/delete_consumer.lua`: deletes one consumer if it holds nothing.
    struct DeleteConsumer<'a>(include_str!("../lua/delete_consumer.lua")) {
        keys { stream: &'a str }
        args { group: &'a str, consumer: &'a str }
    }
}

lua_script! {
    /// `lua/delete_idle_consumers.lua`: deletes idle consumers that hold nothing.
    struct DeleteIdleConsumers<'a>(include_str!("../lua/delete_idle_consumers.lua")) {
        keys { stream: &'a str }
        args { group: &'a str, min_idle_ms: u64, keep: &'a str }
    }
}

/// One subscriber's task.
pub(super) struct Member {
    pub(super) redis: RedisEndpoint,
    pub(super) config: StreamsConfig,
    pub(super) key: String,
    pub(super) group: String,
    pub(super) consumer: String,
    pub(super) on_limit: OnLimit,
    pub(super) tx: mpsc::Sender<Delivery>,
    pub(super) stop: CancellationToken,
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
    pub(super) async fn run(self) {
        let mut backoff = Backoff::new();
        let mut held = Held::default();
        loop {
            let result = tokio::select! {
                _ = self.stop.cancelled() => break,
                _ = self.tx.closed() => break,
                result = self.serve(&mut backoff, &mut held) => result,
            };
            match result {
                Stop::Done => break,
                Stop::Redis(e) => tracing::warn!(
                    key = %self.key, group = %self.group, consumer = %self.consumer,
                    error = %e, delay = ?backoff.delay(), "group subscriber reconnecting"
                ),
            }
            if !backoff.wait(&self.stop).await {
                break;
            }
        }
        self.leave().await;
    }

    /// Deletes this member's consumer from the group if it holds nothing,
    /// so subscriptions that come and go leave no consumers behind (one
    /// that holds entries stays, for a reconnect with its name or for a
    /// reclaim).
    async fn leave(&self) {
        let left: redis::RedisResult<u64> = async {
            let mut conn = self.redis.conn().await.map_err(|e| {
                redis::RedisError::from((redis::ErrorKind::Io, "connect", e.to_string()))
            })?;
            DeleteConsumer {
                stream: &self.key,
                group: &self.group,
                consumer: &self.consumer,
            }
            .invoke(&mut *conn)
            .await
        }
        .await;
        match left {
            Ok(1) => {
                tracing::debug!(consumer = %self.consumer, "consumer deleted as its subscription ended")
            }
            Ok(_) => {}
            Err(e) => {
                tracing::debug!(consumer = %self.consumer, error = %e, "consumer not deleted; the idle cleanup will")
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
    ///
    /// Listed with XPENDING and handed over with XCLAIM to ourselves, only
    /// those the client does not hold: `XREADGROUP ... 0` would raise the
    /// delivery count of every pending entry, held ones too, so a few
    /// reconnects would push an entry a live client still works on past
    /// `max_deliveries` without any delivery having failed.
    async fn read_own(
        &self,
        conn: &mut MultiplexedConnection,
        after: StreamId,
        held: &mut Held,
    ) -> Result<Option<StreamId>, Stop> {
        let rows = reply::pending_rows(
            redis::cmd("XPENDING")
                .arg(&self.key)
                .arg(&self.group)
                .arg(range_after(after))
                .arg("+")
                .arg(self.config.read_batch)
                .arg(&self.consumer)
                .query_async(&mut *conn)
                .await?,
        );
        let Some(last) = rows.last().map(|r| r.id) else {
            return Ok(None);
        };
        // In id order: a restarted subscriber gets what it held in order.
        let unheld: Vec<_> = rows.iter().filter(|r| !held.0.contains(&r.id)).collect();
        let counts: HashMap<StreamId, u64> = unheld.iter().map(|r| (r.id, r.deliveries)).collect();
        if !unheld.is_empty() {
            let mut claim = redis::cmd("XCLAIM");
            claim
                .arg(&self.key)
                .arg(&self.group)
                .arg(&self.consumer)
                .arg(0);
            for row in &unheld {
                claim.arg(row.id.to_string());
            }
            // Entries trimmed away meanwhile are not returned (and leave the
            // pending list): nothing to deliver.
            for parsed in reply::entries(claim.query_async(&mut *conn).await?) {
                let count = parsed
                    .id()
                    .and_then(|id| counts.get(&id))
                    .map_or(1, |c| c + 1);
                self.handle(conn, parsed, count, held).await?;
            }
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
        for parsed in reply::read_entries(reply) {
            self.handle(conn, parsed, 1, held).await?;
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
        let rows = reply::pending_rows(
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
            rows.last().map(|r| r.id).unwrap_or_default()
        } else {
            StreamId::default()
        };
        let others: HashMap<StreamId, u64> = rows
            .into_iter()
            .filter(|r| r.consumer != self.consumer)
            .map(|r| (r.id, r.deliveries))
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
        let claimed = reply::entries(claim.query_async(&mut *conn).await?);
        for parsed in claimed {
            let count = parsed
                .id()
                .and_then(|id| others.get(&id))
                .map_or(1, |c| c + 1);
            self.handle(conn, parsed, count, held).await?;
        }
        Ok(next)
    }

    /// Delivers an entry, or dead-letters it if delivered too often (or
    /// unreadable), or acknowledges it if its data was trimmed away.
    async fn handle(
        &self,
        conn: &mut MultiplexedConnection,
        parsed: Parsed,
        count: u64,
        held: &mut Held,
    ) -> Result<(), Stop> {
        let (id, fields, unreadable) = match parsed {
            Parsed::Entry(e) => (e.id, Some(e.fields), None),
            Parsed::Deleted(id) => (id, None, None),
            Parsed::Bad { id: Some(id), why } => (id, Some(Fields::default()), Some(why)),
            Parsed::Bad { id: None, why } => {
                tracing::error!(key = %self.key, group = %self.group, why, "unreadable entry without an id skipped");
                return Ok(());
            }
        };
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
        let over_limit = count > self.config.max_deliveries && self.on_limit == OnLimit::DeadLetter;
        if over_limit || unreadable.is_some() {
            let reason = match unreadable {
                Some(why) => format!("unreadable entry: {why}"),
                None => format!(
                    "delivered {count} times without being acknowledged (limit {})",
                    self.config.max_deliveries
                ),
            };
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
            let rows = reply::pending_rows(
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
            let Some(last) = rows.last().map(|r| r.id) else {
                break;
            };
            pending.extend(rows.into_iter().map(|r| r.id));
            if !full {
                break;
            }
            cursor = last;
        }
        held.0.retain(|id| pending.contains(id));
        Ok(())
    }

    async fn delete_idle_consumers(&self, conn: &mut MultiplexedConnection) -> Result<(), Stop> {
        let deleted: u64 = DeleteIdleConsumers {
            stream: &self.key,
            group: &self.group,
            min_idle_ms: self.config.idle_consumer_ttl.as_millis() as u64,
            keep: &self.consumer,
        }
        .invoke(conn)
        .await?;
        if deleted > 0 {
            tracing::info!(key = %self.key, group = %self.group, deleted, "deleted idle consumers that held nothing");
        }
        Ok(())
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
