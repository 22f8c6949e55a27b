//! Pools in memory: the hop reads quotes make (a pool's configuration and
//! its next bins in one direction, what `lua/read_hop.lua` returns), kept
//! in process so a quote reads memory, not Redis (issue #17).
//!
//! - **Whole snapshots.** An entry is one script's reply, stored and
//!   dropped whole: a quote never sees half an update, and prices exactly
//!   what a read of Redis would have given it (a shorter read is the first
//!   bins of a longer one).
//! - **Kept current by the change stream.** Every write of a pool sends an
//!   event on `quote:events`; the follower ([`super::changes`]) drops the
//!   pool's entries when one names it, before telling watchers. A write
//!   through this gateway drops them before it answers, so a client reads
//!   its own writes here at once; a write elsewhere (another gateway,
//!   `openoes pools load`) is seen once its event arrives, a few
//!   milliseconds (`scripts/bench quote` measures it: "freshness").
//! - **Only while confirmed.** Entries are served and kept only while the
//!   follower is subscribed ([`PoolCache::go_live`]). When its watch ends
//!   (Redis restarted, a gap, entries trimmed while it was away) nobody can
//!   say what changed: everything is dropped and reads go to Redis until
//!   it is subscribed again.
//! - **Races.** A read of Redis that started before a change to its pool
//!   (or before everything was dropped) is not kept: each pool and the
//!   cache as a whole count their changes, and a read is stored only if
//!   both counts are what they were when it started.
//! - **Bounded.** At most `quote.max_cached_bins` bins; a read that would
//!   pass it drops everything first, and the pools quotes need come back
//!   on demand.

use std::{
    collections::HashMap,
    sync::{Arc, RwLock},
};

use super::{
    error::StoreError,
    search::PoolSource,
    store::{HopSnapshot, QuoteStore},
};

/// A hop read: the pool-set version seen and the pool, if it exists.
type Read = (u64, Option<HopSnapshot>);
/// What a read of Redis must find unchanged to be kept: (epoch, the pool's
/// changes), or `None` when nothing is kept (not live).
type Seen = Option<(u64, u64)>;

/// One (pool, direction)'s last read.
#[derive(Debug)]
struct Page {
    /// The pool, or `None` if it did not exist.
    hop: Option<HopSnapshot>,
    /// The most bins that read asked for: fewer came back means there are
    /// no more.
    limit: usize,
}

impl Page {
    fn bins(&self) -> usize {
        self.hop.as_ref().map_or(0, |h| h.bins.len())
    }

    /// The read of `limit` bins this page answers, if it holds them all.
    fn serve(&self, limit: usize, version: u64) -> Option<Read> {
        let Some(hop) = &self.hop else {
            return Some((version, None));
        };
        let complete = hop.bins.len() < self.limit;
        if hop.bins.len() < limit && !complete {
            return None;
        }
        let hop = HopSnapshot {
            version,
            pool: hop.pool.clone(),
            bins: hop.bins[..hop.bins.len().min(limit)].to_vec(),
        };
        Some((version, Some(hop)))
    }
}

#[derive(Debug, Default)]
struct Entry {
    /// Changes to this pool so far.
    changes: u64,
    /// By direction: `[down (X->Y), up (Y->X)]`.
    pages: [Option<Arc<Page>>; 2],
}

#[derive(Debug, Default)]
struct State {
    /// The follower is subscribed: entries are current.
    live: bool,
    /// Times everything was dropped.
    epoch: u64,
    /// Bins held, for the bound.
    bins: usize,
    /// The newest pool-set version seen (reads and events): what a read of
    /// Redis would say now, as far as this process knows.
    version: u64,
    pools: HashMap<String, Entry>,
}

impl State {
    fn drop_all(&mut self) {
        self.epoch += 1;
        self.bins = 0;
        self.pools.clear();
    }
}

/// Hop reads served from memory while current; see the module docs.
pub struct PoolCache {
    store: QuoteStore,
    max_bins: usize,
    state: RwLock<State>,
}

fn direction(swap_for_y: bool) -> usize {
    usize::from(!swap_for_y)
}

impl PoolCache {
    /// A cache over `store` holding at most `max_bins` bins; not live
    /// until the follower says so.
    pub fn new(store: QuoteStore, max_bins: usize) -> Self {
        Self {
            store,
            max_bins,
            state: RwLock::default(),
        }
    }

    /// The store behind the cache.
    pub fn store(&self) -> &QuoteStore {
        &self.store
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        // A panic while holding the lock leaves nothing half done that
        // matters: at worst a count is off, and dropping all recovers.
        self.state.write().unwrap_or_else(|e| e.into_inner())
    }

    /// The follower is subscribed (`true`, from now on every change is
    /// seen) or its watch ended (`false`). Either way what is held may have
    /// missed changes, and is dropped.
    pub fn go_live(&self, live: bool) {
        let mut state = self.write();
        state.drop_all();
        state.live = live && self.max_bins > 0;
    }

    /// `pool_id` changed (an event, or a write through this gateway), at
    /// pool-set `version` if known: its entries are dropped.
    pub fn changed(&self, pool_id: &str, version: Option<u64>) {
        let mut state = self.write();
        if let Some(v) = version {
            state.version = state.version.max(v);
        }
        let entry = state.pools.entry(pool_id.to_string()).or_default();
        entry.changes += 1;
        let freed: usize = entry
            .pages
            .iter_mut()
            .filter_map(Option::take)
            .map(|p| p.bins())
            .sum();
        state.bins -= freed;
    }

    /// The page for `(pool_id, swap_for_y)` if it answers a read of
    /// `limit`, else what a read must find unchanged to be kept.
    fn lookup(&self, pool_id: &str, swap_for_y: bool, limit: usize) -> Result<Read, Seen> {
        let state = self.state.read().unwrap_or_else(|e| e.into_inner());
        if !state.live {
            return Err(None);
        }
        let entry = state.pools.get(pool_id);
        if let Some(page) = entry.and_then(|e| e.pages[direction(swap_for_y)].as_ref())
            && let Some(read) = page.serve(limit, state.version)
        {
            return Ok(read);
        }
        Err(Some((state.epoch, entry.map_or(0, |e| e.changes))))
    }

    /// Keeps a read made when the cache and the pool were at `seen`, if
    /// neither changed since.
    fn keep(&self, pool_id: &str, swap_for_y: bool, page: Page, seen: (u64, u64)) {
        let mut state = self.write();
        let changes = state.pools.get(pool_id).map_or(0, |e| e.changes);
        if !state.live || (state.epoch, changes) != seen {
            return;
        }
        if let Some(hop) = &page.hop {
            state.version = state.version.max(hop.version);
        }
        let add = page.bins();
        if state.bins + add > self.max_bins {
            state.drop_all();
            if add > self.max_bins {
                return;
            }
        }
        let entry = state.pools.entry(pool_id.to_string()).or_default();
        let old = entry.pages[direction(swap_for_y)].replace(Arc::new(page));
        state.bins = state.bins + add - old.map_or(0, |p| p.bins());
    }
}

impl PoolSource for PoolCache {
    async fn read_hop(
        &self,
        pool_id: &str,
        swap_for_y: bool,
        limit: usize,
    ) -> Result<(u64, Option<HopSnapshot>), StoreError> {
        let seen = match self.lookup(pool_id, swap_for_y, limit) {
            Ok(read) => return Ok(read),
            Err(seen) => seen,
        };
        let (version, hop) = self.store.read_hop(pool_id, swap_for_y, limit).await?;
        if let Some(seen) = seen {
            let page = Page {
                hop: hop.clone(),
                limit,
            };
            self.keep(pool_id, swap_for_y, page, seen);
        }
        Ok((version, hop))
    }
}
