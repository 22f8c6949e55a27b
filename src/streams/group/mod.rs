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

mod member;

use std::{
    collections::HashSet,
    pin::Pin,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    task::{Context, Poll},
};

use futures_util::Stream;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use self::member::Member;
use super::{
    entry::{Fields, StreamId},
    watch::WatchEnd,
};
use crate::{
    config::StreamsConfig,
    redis::{RedisEndpoint, RedisError, script::lua_script},
};

lua_script! {
    /// `lua/dead_letter.lua`: moves a pending entry to the DLQ, acknowledged.
    struct DeadLetter<'a>(include_str!("../lua/dead_letter.lua")) {
        keys { stream: &'a str, dlq: String }
        args { group: &'a str, id: String, reason: &'a str, deliveries: u64, dlq_maxlen: usize, ..fields: Vec<&'a [u8]> }
    }
}

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
    pub fields: Fields,
    /// Times the entry has been delivered, 1 the first time.
    pub delivery_count: u64,
}

impl Delivery {
    /// The value of `field` as text, or "".
    pub fn field(&self, field: &str) -> &str {
        self.fields.text(field)
    }
}

/// What a member does with an entry delivered more than
/// `streams.max_deliveries` times.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnLimit {
    /// Move it to the dead-letter stream (a poison entry nobody can handle).
    DeadLetter,
    /// Deliver it anyway, with its count: the subscriber must end it (credit
    /// requests are rejected with DELIVERY_LIMIT: a request must always be
    /// answered, never parked in a DLQ with its (user, asset) blocked).
    Deliver,
}

/// A consumer name already used by a live subscription of this process.
#[derive(Debug, thiserror::Error)]
#[error(
    "consumer {consumer:?} of group {group:?} is in use by a live subscription on this gateway; use another name, or retry once that one has ended"
)]
pub struct ConsumerInUse {
    /// The group.
    pub group: String,
    /// The name.
    pub consumer: String,
}

impl crate::error::RpcError for ConsumerInUse {
    fn code(&self) -> tonic::Code {
        tonic::Code::AlreadyExists
    }
    fn reason(&self) -> &'static str {
        crate::error::reason::CONSUMER_IN_USE
    }
}

/// Live (stream, group, consumer) names of this process.
type LiveNames = Arc<Mutex<HashSet<(String, String, String)>>>;

/// Consumer groups on one Redis, for the whole process.
#[derive(Clone)]
pub struct GroupHub {
    redis: RedisEndpoint,
    config: StreamsConfig,
    /// Makes generated consumer names unique to this process.
    instance: String,
    next: Arc<AtomicU64>,
    /// Consumer names in use, so two subscriptions never share one (they
    /// would take each other's deliveries without either reclaiming them).
    live: LiveNames,
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
            live: LiveNames::default(),
            stop,
        }
    }

    /// Joins `group` on `key` as `consumer` (generated, unique to this
    /// process, if `None`). Deliveries start with the consumer's own
    /// pending entries. A name in use by a live subscription of this
    /// process is refused; names must also be unique across gateways (the
    /// generated ones are).
    pub fn subscribe(
        &self,
        key: &str,
        group: &str,
        consumer: Option<&str>,
        on_limit: OnLimit,
    ) -> Result<GroupSubscription, ConsumerInUse> {
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
        let name = (key.to_string(), group.to_string(), consumer.clone());
        let fresh = self
            .live
            .lock()
            .map(|mut l| l.insert(name.clone()))
            .unwrap_or(false);
        if !fresh {
            return Err(ConsumerInUse {
                group: group.to_string(),
                consumer,
            });
        }
        let (tx, rx) = mpsc::channel(self.config.group_queue_capacity);
        let member = Member {
            redis: self.redis.clone(),
            config: self.config.clone(),
            key: key.to_string(),
            group: group.to_string(),
            consumer: consumer.clone(),
            on_limit,
            tx,
            stop: self.stop.clone(),
        };
        tokio::spawn(member.run());
        Ok(GroupSubscription {
            rx,
            consumer,
            ended: false,
            name: Some((Arc::clone(&self.live), name)),
        })
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
/// `Err(WatchEnd::Shutdown)` when the server stops. Dropping it ends the
/// member (and frees its consumer name at once).
pub struct GroupSubscription {
    rx: mpsc::Receiver<Delivery>,
    consumer: String,
    ended: bool,
    name: Option<(LiveNames, (String, String, String))>,
}

impl GroupSubscription {
    /// The consumer name in the group.
    pub fn consumer(&self) -> &str {
        &self.consumer
    }
}

impl Drop for GroupSubscription {
    fn drop(&mut self) {
        if let Some((live, name)) = self.name.take()
            && let Ok(mut live) = live.lock()
        {
            live.remove(&name);
        }
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

/// Moves a pending entry to the dead-letter stream and acknowledges it, in
/// one script; false if it was acknowledged meanwhile.
#[allow(clippy::too_many_arguments)]
async fn dead_letter(
    conn: &mut (impl redis::aio::ConnectionLike + Send),
    config: &StreamsConfig,
    key: &str,
    group: &str,
    id: StreamId,
    fields: &Fields,
    reason: &str,
    count: u64,
) -> redis::RedisResult<bool> {
    let moved: u64 = DeadLetter {
        stream: key,
        dlq: dlq_key(key),
        group,
        id: id.to_string(),
        reason,
        deliveries: count,
        dlq_maxlen: config.maxlen_for(&dlq_key(key)),
        fields: fields.pairs().flat_map(|(k, v)| [k, v]).collect(),
    }
    .invoke(conn)
    .await?;
    Ok(moved == 1)
}
