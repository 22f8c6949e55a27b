//! Quotes: the cached route graph and the search over live bins.
//!
//! The route graph ([`RouteGraph`]: which pools join which tokens) is kept
//! in memory and updated one pool at a time from the change stream
//! ([`QuoteEngine::apply_pool`]). It is rebuilt from Redis only when it may
//! be wrong: at start, after the change stream was lost, or when a quote's
//! read sees a pool-set version the graph does not hold. A rebuild is single
//! flight: however many quotes find the graph stale at once, one reads the
//! pools and the others wait for its result, so a burst of pool writes can
//! never turn every concurrent quote into a full scan of Redis (issue #18,
//! item 8). Each quote reads each (pool, direction)
//! it needs, each read one consistent snapshot: from memory
//! ([`PoolCache`]) while the change stream keeps it current, else from
//! Redis.

use std::sync::{
    Arc, RwLock,
    atomic::{AtomicU64, Ordering},
};

use super::{cache::PoolCache, graph::RouteGraph, model::Pool, search, store::QuoteStore};
pub use super::{
    error::QuoteError,
    search::{
        Considered, DEFAULT_MAX_HOPS, Hop, MAX_HOPS_LIMIT, Quote, QuoteLimits, QuoteRequest,
        SwapMode,
    },
};

/// Times a quote starts again because the pool set changed under it; the
/// last attempt answers from the graph it has.
const VERSION_RETRIES: usize = 3;
/// How long a quote that saw a newer pool set waits for the change stream
/// to bring it (normally a few milliseconds) before rebuilding the graph
/// itself: a new pool then costs an update in place, not a full read of
/// every pool by every concurrent quote.
const FOLLOWER_GRACE: std::time::Duration = std::time::Duration::from_millis(250);

/// Prices swaps over the pools in one Redis.
pub struct QuoteEngine {
    cache: PoolCache,
    limits: QuoteLimits,
    /// The route graph; `None` until built or after the change stream was
    /// lost (then the next quote rebuilds it).
    graph: RwLock<Option<Arc<RouteGraph>>>,
    /// Held by the one task rebuilding the graph: single flight.
    rebuild: tokio::sync::Mutex<()>,
    /// Full rebuilds done (for tests and operators).
    rebuilds: AtomicU64,
    /// Pools skipped by a quote because their data could not be priced.
    broken_pools_skipped: AtomicU64,
    /// The graph's version, for quotes waiting for the change stream.
    version: tokio::sync::watch::Sender<u64>,
}

impl QuoteEngine {
    /// An engine over `cache`, each quote bounded by `limits`.
    pub fn new(cache: PoolCache, limits: QuoteLimits) -> Self {
        Self {
            cache,
            limits,
            graph: RwLock::new(None),
            rebuild: tokio::sync::Mutex::new(()),
            rebuilds: AtomicU64::new(0),
            broken_pools_skipped: AtomicU64::new(0),
            version: tokio::sync::watch::Sender::new(0),
        }
    }

    /// The store, for ingest and pool reads.
    pub fn store(&self) -> &QuoteStore {
        self.cache.store()
    }

    /// The pools kept in memory.
    pub fn cache(&self) -> &PoolCache {
        &self.cache
    }

    /// Full graph rebuilds so far.
    pub fn rebuilds(&self) -> u64 {
        self.rebuilds.load(Ordering::Relaxed)
    }

    /// Pools a quote skipped because their data could not be priced.
    pub fn broken_pools_skipped(&self) -> u64 {
        self.broken_pools_skipped.load(Ordering::Relaxed)
    }

    /// Forgets the route graph: the next quote rebuilds it. For when the
    /// change stream may have been missed.
    pub fn invalidate_routes(&self) {
        if let Ok(mut graph) = self.graph.write() {
            *graph = None;
        }
    }

    fn current(&self) -> Option<Arc<RouteGraph>> {
        self.graph.read().ok().and_then(|g| g.clone())
    }

    /// Applies one pool's change to the graph in place: `pool` as it is now
    /// (`None`: gone), written at pool-set `version`. Idempotent; a change
    /// already in the graph changes nothing. Without a graph, nothing to do
    /// (the next rebuild reads the pool).
    pub fn apply_pool(&self, pool_id: &str, pool: Option<&Pool>, version: u64) {
        let Ok(mut slot) = self.graph.write() else {
            return;
        };
        let Some(graph) = slot.as_mut() else {
            return;
        };
        let same = match (pool, graph.tokens_of(pool_id)) {
            (Some(p), Some((x, y))) => p.token_x == x && p.token_y == y,
            (None, None) => true,
            _ => false,
        };
        if same && graph.version >= version {
            return;
        }
        // Copy on write: quotes holding the old graph keep it.
        let graph = Arc::make_mut(graph);
        match pool {
            Some(p) => graph.upsert(&p.pool_id, &p.token_x, &p.token_y),
            None => graph.remove(pool_id),
        }
        graph.version = graph.version.max(version);
        self.version.send_replace(graph.version);
    }

    /// The graph, rebuilt first if there is none or if it is older than
    /// `seen` (a version a read saw) and the change stream does not bring
    /// it within [`FOLLOWER_GRACE`]. Single flight: one rebuild at a time,
    /// and a caller that waited for another's rebuild uses it.
    async fn graph(&self, seen: Option<u64>) -> Result<Arc<RouteGraph>, QuoteError> {
        let fits = |g: &Arc<RouteGraph>| seen.is_none_or(|v| g.version >= v);
        if let (Some(v), Some(graph)) = (seen, self.current())
            && graph.version < v
        {
            let mut version = self.version.subscribe();
            let _ = tokio::time::timeout(FOLLOWER_GRACE, version.wait_for(|g| *g >= v)).await;
        }
        let before = self.current();
        if let Some(graph) = before.as_ref().filter(|g| fits(g)) {
            return Ok(Arc::clone(graph));
        }
        let _flight = self.rebuild.lock().await;
        if let Some(graph) = self.current() {
            // Another caller rebuilt it while we waited: use theirs.
            let replaced = before.as_ref().is_none_or(|b| !Arc::ptr_eq(b, &graph));
            if fits(&graph) || replaced {
                return Ok(graph);
            }
        }
        let (version, pools) = self.store().all_pools().await?;
        self.rebuilds.fetch_add(1, Ordering::Relaxed);
        let fresh = Arc::new(RouteGraph::build(version, &pools));
        if let Ok(mut graph) = self.graph.write() {
            *graph = Some(Arc::clone(&fresh));
        }
        self.version.send_replace(version);
        Ok(fresh)
    }

    /// Prices `request` along its best route. Also says what the search
    /// considered, so a watcher knows which changes matter.
    pub async fn quote(&self, request: &QuoteRequest) -> Result<(Quote, Considered), QuoteError> {
        self.store().check_reachable()?;
        let mut seen = None;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let graph = self.graph(seen).await?;
            let outcome = search::search(&graph, &self.cache, request, self.limits).await;
            self.broken_pools_skipped
                .fetch_add(outcome.broken_pools.len() as u64, Ordering::Relaxed);
            if attempt >= VERSION_RETRIES {
                return outcome.result.map(|q| (q, outcome.considered));
            }
            // A read saw another pool set, or the graph does not know the
            // tokens or a route and may be behind: check before answering.
            let unknown = matches!(
                outcome.result,
                Err(QuoteError::UnknownToken(_) | QuoteError::NoRoute { .. })
            );
            if outcome.stale || unknown {
                let version = self.store().version().await?;
                if version != graph.version {
                    seen = Some(version);
                    continue;
                }
            }
            return outcome.result.map(|q| (q, outcome.considered));
        }
    }
}
