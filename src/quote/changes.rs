//! Follows `quote:events` so route graphs and WatchQuote subscribers learn
//! of pool and bin writes, whoever made them (this gateway, another one, or
//! `openoes pools load`).
//!
//! One task per process reads the stream on its own blocking connection and
//! fans changes out on a bounded broadcast channel. It tracks the last entry
//! id it handled, so consecutive reads leave no gap. Whenever it (re)connects
//! it cannot know what it missed, so it sends [`PoolChange::Resync`] and
//! drops the route graph: every watcher recomputes. A watcher that lags
//! behind the broadcast does the same. Nothing is lost: at worst a quote is
//! recomputed without need.

use std::{sync::Arc, time::Duration};

use redis::streams::{StreamReadOptions, StreamReadReply};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use super::{engine::QuoteEngine, store::EVENTS_KEY};
use crate::redis::RedisEndpoint;

/// How long one XREAD blocks; bounds how late the task sees shutdown only
/// if the select below did not (it does), and keeps the connection in use.
const BLOCK: Duration = Duration::from_secs(5);
/// Entries per read.
const BATCH: usize = 512;
/// Changes buffered for slow watchers before they are told to resync.
pub const BROADCAST_CAPACITY: usize = 1024;
/// Reconnect backoff: first wait, and the cap it doubles up to.
const BACKOFF_START: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// A change to quote data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PoolChange {
    /// A pool was written (configuration, maybe new): routes may change.
    Pool(String),
    /// Bins of a pool were written.
    Bins(String),
    /// Changes may have been missed: recompute everything.
    Resync,
}

impl PoolChange {
    /// The pool concerned, if one.
    pub fn pool_id(&self) -> Option<&str> {
        match self {
            Self::Pool(id) | Self::Bins(id) => Some(id),
            Self::Resync => None,
        }
    }
}

/// Runs until `stop` is cancelled; see the module docs.
pub async fn follow(
    redis: RedisEndpoint,
    engine: Arc<QuoteEngine>,
    changes: broadcast::Sender<PoolChange>,
    stop: CancellationToken,
) {
    let mut backoff = BACKOFF_START;
    loop {
        let result = tokio::select! {
            _ = stop.cancelled() => return,
            result = follow_once(&redis, &engine, &changes, &mut backoff) => result,
        };
        if let Err(e) = result {
            tracing::debug!(error = %e, ?backoff, "quote change follower reconnecting");
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

/// One connection's life: returns when it fails.
async fn follow_once(
    redis: &RedisEndpoint,
    engine: &QuoteEngine,
    changes: &broadcast::Sender<PoolChange>,
    backoff: &mut Duration,
) -> Result<(), redis::RedisError> {
    let mut conn = redis
        .blocking(BLOCK)
        .await
        .map_err(|e| redis::RedisError::from((redis::ErrorKind::Io, "connect", e.to_string())))?;
    // Start after the newest entry: older ones are covered by the resync.
    let newest: redis::streams::StreamRangeReply = redis::cmd("XREVRANGE")
        .arg(EVENTS_KEY)
        .arg("+")
        .arg("-")
        .arg("COUNT")
        .arg(1)
        .query_async(conn.conn())
        .await?;
    let mut last_id = newest
        .ids
        .first()
        .map_or_else(|| "0-0".to_string(), |e| e.id.clone());
    engine.invalidate_routes();
    let _ = changes.send(PoolChange::Resync);
    *backoff = BACKOFF_START;

    let options = StreamReadOptions::default()
        .block(conn.block().as_millis() as usize)
        .count(BATCH);
    loop {
        let reply: Option<StreamReadReply> = redis::cmd("XREAD")
            .arg(&options)
            .arg("STREAMS")
            .arg(EVENTS_KEY)
            .arg(&last_id)
            .query_async(conn.conn())
            .await?;
        for entry in reply.into_iter().flat_map(|r| r.keys).flat_map(|k| k.ids) {
            let pool_id: Option<String> = entry.get("pool_id");
            let kind: Option<String> = entry.get("kind");
            last_id = entry.id;
            let Some(pool_id) = pool_id else { continue };
            let change = if kind.as_deref() == Some("bins") {
                PoolChange::Bins(pool_id)
            } else {
                engine.invalidate_routes();
                PoolChange::Pool(pool_id)
            };
            // No receivers is fine: nobody is watching.
            let _ = changes.send(change);
        }
    }
}
