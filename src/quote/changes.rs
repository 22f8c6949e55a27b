//! Follows `quote:events` so route graphs and WatchQuote subscribers learn
//! of pool and bin writes, whoever made them (this gateway, another one, or
//! `openoes pools load`).
//!
//! One watch per process on the stream bridge ([`WatchHub`]) feeds a
//! bounded broadcast channel. The bridge loses nothing while Redis keeps
//! the events; whenever this follower (re)subscribes, or the bridge ends
//! its watch (entries trimmed during an outage), it cannot know what it
//! missed, so it drops the route graph and sends [`PoolChange::Resync`]:
//! every watcher recomputes. A watcher that lags behind the broadcast does
//! the same. At worst a quote is recomputed without need.

use std::{sync::Arc, time::Duration};

use futures_util::StreamExt;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use super::{engine::QuoteEngine, keys::EVENTS_KEY};
use crate::streams::watch::{WatchEnd, WatchHub};

/// Changes buffered for slow watchers before they are told to resync.
pub const BROADCAST_CAPACITY: usize = 1024;
/// Wait before subscribing again after a failed subscribe (Redis down).
const RETRY: Duration = Duration::from_millis(500);

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
    hub: WatchHub,
    engine: Arc<QuoteEngine>,
    changes: broadcast::Sender<PoolChange>,
    stop: CancellationToken,
) {
    loop {
        let subscribed = tokio::select! {
            _ = stop.cancelled() => return,
            subscribed = hub.subscribe(EVENTS_KEY, "", Arc::new(|_| true)) => subscribed,
        };
        let mut events = match subscribed {
            Ok(events) => events,
            Err(e) => {
                tracing::debug!(error = %e, "cannot watch quote changes yet; retrying");
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(RETRY) => continue,
                }
            }
        };
        engine.invalidate_routes();
        // No receivers is fine: nobody is watching.
        let _ = changes.send(PoolChange::Resync);
        while let Some(event) = events.next().await {
            let event = match event {
                Ok(event) => event,
                Err(WatchEnd::Shutdown) => return,
                Err(end) => {
                    tracing::warn!(?end, "quote change watch ended; resubscribing");
                    break;
                }
            };
            let pool_id = event.field("pool_id").to_string();
            if pool_id.is_empty() {
                continue;
            }
            let change = if event.field("kind") == "bins" {
                PoolChange::Bins(pool_id)
            } else {
                engine.invalidate_routes();
                PoolChange::Pool(pool_id)
            };
            let _ = changes.send(change);
        }
    }
}
