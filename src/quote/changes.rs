//! Follows `quote:events` so route graphs and WatchQuote subscribers learn
//! of pool and bin writes, whoever made them (this gateway, another one, or
//! `openoes pools load`).
//!
//! A new pool is read once and added to the route graph in place
//! ([`QuoteEngine::apply_pool`]); other writes change no topology. Each
//! change names its pool, so a watcher wakes only for the pools its quote
//! considered (or, for a new pool, for the tokens near its route).
//!
//! One watch per process on the stream bridge ([`WatchHub`]) feeds a
//! bounded broadcast channel. The bridge loses nothing while Redis keeps
//! the events; whenever this follower (re)subscribes, or the bridge ends
//! its watch (entries trimmed during an outage), it cannot know what it
//! missed, so it drops the route graph and sends [`PoolChange::Resync`]:
//! every watcher recomputes. A watcher that lags behind the broadcast does
//! the same. At worst a quote is recomputed without need. The pools kept in
//! memory ([`super::cache`]) follow the same stream: an event drops its
//! pool's snapshot, and a lost watch drops them all until it is back.

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
    /// A pool was created, trading these tokens: it may open new routes.
    Created {
        /// The pool.
        pool_id: String,
        /// Its token X.
        token_x: String,
        /// Its token Y.
        token_y: String,
    },
    /// An existing pool's configuration (and maybe bins) was written.
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
            Self::Created { pool_id: id, .. } | Self::Pool(id) | Self::Bins(id) => Some(id),
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
        // Subscribed first: every change from here on is seen.
        engine.cache().go_live(true);
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
            let version: u64 = event.field("version").parse().unwrap_or(0);
            // Before watchers hear of it: their recompute must not read
            // the pool as it was.
            engine.cache().changed(&pool_id, Some(version));
            let change = match (event.field("kind"), event.field("created")) {
                ("bins", _) => PoolChange::Bins(pool_id),
                // An existing pool: its tokens (the graph's business) are
                // as they were.
                (_, "0") => PoolChange::Pool(pool_id),
                // New, or written by a writer that does not say: read it.
                _ => match engine.store().pool(&pool_id).await {
                    Ok(pool) => {
                        engine.apply_pool(&pool_id, pool.as_ref(), version);
                        match pool {
                            Some(p) => PoolChange::Created {
                                pool_id,
                                token_x: p.token_x,
                                token_y: p.token_y,
                            },
                            None => PoolChange::Resync,
                        }
                    }
                    Err(e) => {
                        tracing::warn!(pool = %pool_id, error = %e, "cannot read a new pool; the route graph will be rebuilt");
                        engine.invalidate_routes();
                        PoolChange::Resync
                    }
                },
            };
            let _ = changes.send(change);
        }
        // What changes while we resubscribe is unknown: quotes read Redis.
        engine.cache().go_live(false);
    }
}
