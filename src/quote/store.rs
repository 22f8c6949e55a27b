//! Pools and bins in Redis: reads, and writes through one Lua script each
//! (keys in [`super::keys`]).
//!
//! Every write of a pool is one script, and every read a quote makes of a
//! pool is one script, so a quote never sees half a pool. The scripts touch
//! keys of several pools' indexes at once: one Redis, not Cluster.

use redis::{AsyncCommands, Value};

use super::{
    error::StoreError,
    keys::{self, EVENTS_KEY, POOLS_KEY, VERSION_KEY, bin_prefix, index_key, pool_key},
    math::BinReserve,
    model::{Bin, Pool, PoolSnapshot},
};
use crate::{
    redis::{RedisEndpoint, RedisError, script::lua_script, value_text},
    time,
};

lua_script! {
    /// `lua/upsert_pool.lua`: writes a pool and its bins atomically.
    struct UpsertPool<'a>(include_str!("lua/upsert_pool.lua")) {
        keys {
            pool: String, index: String, pools: &'a str, version: &'a str, events: &'a str,
            tokens_x: String, tokens_y: String, pair: String,
        }
        args {
            pool_id: &'a str, json: String, now_ms: u64, replace_bins: &'a str,
            events_maxlen: usize, bin_prefix: String, max_bins: usize, max_inline: usize,
            ..bins: Vec<String>
        }
    }
}

lua_script! {
    /// `lua/stage_bins.lua`: one slice of a staged snapshot.
    struct StageBins(include_str!("lua/stage_bins.lua")) {
        keys { index: String, data: String }
        args { ttl_secs: u64, ..bins: Vec<String> }
    }
}

lua_script! {
    /// `lua/commit_pool.lua`: makes a staged snapshot the pool's, in one step.
    struct CommitPool<'a>(include_str!("lua/commit_pool.lua")) {
        keys {
            pool: String, index: String, data: String, pools: &'a str, version: &'a str,
            events: &'a str, tokens_x: String, tokens_y: String, pair: String, purge: &'a str,
        }
        args {
            pool_id: &'a str, json: String, now_ms: u64, events_maxlen: usize, generation: u64,
            staged: usize,
        }
    }
}

lua_script! {
    /// `lua/purge_bins.lua`: deletes a slice of an old generation of bins.
    struct PurgeBins<'a>(include_str!("lua/purge_bins.lua")) {
        keys { purge: &'a str, pool: String, index: String }
        args { pool_id: &'a str, generation: u64, bin_prefix: String, slice: usize }
    }
}

lua_script! {
    /// `lua/read_bins.lua`: one page of a pool's bins by id.
    struct ReadBins(include_str!("lua/read_bins.lua")) {
        keys { pool: String, index: String }
        args { min: String, limit: usize, bin_prefix: String }
    }
}

/// How long staged bins live unless committed: long enough for any load,
/// short enough that an abandoned one frees its memory soon.
const STAGING_TTL_SECS: u64 = 600;

lua_script! {
    /// `lua/upsert_bins.lua`: writes bins of an existing pool atomically.
    struct UpsertBins<'a>(include_str!("lua/upsert_bins.lua")) {
        keys { pool: String, index: String, events: &'a str, version: &'a str }
        args {
            pool_id: &'a str, now_ms: u64, active_bin_id: String, events_maxlen: usize,
            bin_prefix: String, max_bins: usize, bin_step: u16, ..bins: Vec<String>
        }
    }
}

lua_script! {
    /// `lua/read_hop.lua`: one consistent snapshot of a pool for one swap.
    struct ReadHop<'a>(include_str!("lua/read_hop.lua")) {
        keys { pool: String, index: String, version: &'a str }
        args { direction: &'a str, limit: usize, bin_prefix: String }
    }
}

/// A consistent view of one pool for one swap direction.
#[derive(Debug, Clone)]
pub struct HopSnapshot {
    /// Route graph version when read.
    pub version: u64,
    /// The pool's configuration.
    pub pool: Pool,
    /// Reserves of the non-empty bins from the active bin, in walk order.
    pub bins: Vec<BinReserve>,
}

/// What a pool write did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Written {
    /// The pool is new.
    pub created: bool,
    /// Non-empty bins the pool holds now.
    pub bins: u32,
    /// Anything changed (an identical write changes nothing, not even
    /// `last_updated`, and sends no event).
    pub changed: bool,
}

/// Pool ids per MGET when reading every pool: one command stays small
/// however many pools there are (Redis serves no one else while it runs).
const MGET_BATCH: usize = 1000;

/// Reads and writes quote data on one Redis.
#[derive(Clone)]
pub struct QuoteStore {
    redis: RedisEndpoint,
    /// Approximate length `quote:events` is trimmed to (`streams.maxlen`).
    events_maxlen: usize,
    /// Most non-empty bins a pool may hold (`quote.max_bins_per_pool`).
    max_bins_per_pool: usize,
    /// Most bins one script writes or deletes (`quote.max_bins_per_write`):
    /// bigger snapshots are staged in slices of this many.
    max_bins_per_write: usize,
}

impl QuoteStore {
    /// A store on `redis`, trimming `quote:events` as `streams` says.
    pub fn new(redis: RedisEndpoint, streams: &crate::config::StreamsConfig) -> Self {
        Self {
            redis,
            events_maxlen: streams.maxlen_for(EVENTS_KEY),
            max_bins_per_pool: crate::config::QuoteConfig::default().max_bins_per_pool,
            max_bins_per_write: crate::config::QuoteConfig::default().max_bins_per_write,
        }
    }

    /// The same store with `quote`'s bounds: at most `max_bins_per_write`
    /// bins per script, at most `max_bins_per_pool` in a pool.
    pub fn with_limits(mut self, quote: &crate::config::QuoteConfig) -> Self {
        self.max_bins_per_pool = quote.max_bins_per_pool;
        self.max_bins_per_write = quote.max_bins_per_write.max(1);
        self
    }

    /// Most non-empty bins a pool may hold.
    pub fn max_bins_per_pool(&self) -> usize {
        self.max_bins_per_pool
    }

    /// `Err(UNAVAILABLE)` at once if the health monitor knows this Redis
    /// is down: a quote then fails fast, before any graph work or wait.
    pub fn check_reachable(&self) -> Result<(), StoreError> {
        if self.redis.reachability() == crate::redis::Reachability::Down {
            return Err(StoreError::Redis(RedisError::Unavailable {
                endpoint: self.redis.name(),
                source: None,
            }));
        }
        Ok(())
    }

    fn err(&self, e: redis::RedisError) -> StoreError {
        StoreError::Redis(RedisError::from_redis(self.redis.name(), e))
    }

    /// Writes a pool and its bins atomically: a concurrent quote sees the
    /// old pool or the new one. `replace_bins` removes the pool's bins not
    /// in the snapshot. A full snapshot bigger than one script may write
    /// (`max_bins_per_write`), or replacing more stored bins than that, is
    /// staged: written in slices to a generation no reader sees, then made
    /// the pool's in one O(1) step, and the old generation deleted in
    /// slices. No script handles more than `max_bins_per_write` bins.
    pub async fn upsert_pool(
        &self,
        snapshot: &PoolSnapshot,
        replace_bins: bool,
    ) -> Result<Written, StoreError> {
        if snapshot.bins.len() > self.max_bins_per_write {
            if !replace_bins {
                return Err(StoreError::TooManyBins {
                    pool_id: snapshot.pool.pool_id.clone(),
                    max: self.max_bins_per_write,
                });
            }
            return self.upsert_staged(snapshot).await;
        }
        match self.upsert_inline(snapshot, replace_bins).await {
            Err(StoreError::NeedsStaging) if replace_bins => self.upsert_staged(snapshot).await,
            other => other,
        }
    }

    async fn upsert_inline(
        &self,
        snapshot: &PoolSnapshot,
        replace_bins: bool,
    ) -> Result<Written, StoreError> {
        let pool = &snapshot.pool;
        let id = &pool.pool_id;
        let script = UpsertPool {
            pool: pool_key(id),
            index: index_key(id),
            pools: POOLS_KEY,
            version: VERSION_KEY,
            events: EVENTS_KEY,
            tokens_x: keys::tokens(&pool.token_x),
            tokens_y: keys::tokens(&pool.token_y),
            pair: keys::pair(&pool.token_x, &pool.token_y),
            pool_id: id,
            json: to_json(pool)?,
            now_ms: time::now().ms,
            replace_bins: if replace_bins { "1" } else { "0" },
            events_maxlen: self.events_maxlen,
            bin_prefix: bin_prefix(id),
            max_bins: self.max_bins_per_pool,
            max_inline: self.max_bins_per_write,
            bins: bin_args(&snapshot.bins)?,
        };
        let mut conn = self.redis.conn().await?;
        let (created, bins, changed): (u8, u32, u8) = script
            .invoke(&mut *conn)
            .await
            .map_err(|e| self.write_err(id, e))?;
        Ok(Written {
            created: created == 1,
            bins,
            changed: changed == 1,
        })
    }

    /// A full snapshot in slices; see [`Self::upsert_pool`].
    async fn upsert_staged(&self, snapshot: &PoolSnapshot) -> Result<Written, StoreError> {
        let pool = &snapshot.pool;
        let id = &pool.pool_id;
        let bins: Vec<Bin> = snapshot
            .bins
            .iter()
            .filter(|b| !b.is_empty())
            .cloned()
            .collect();
        if bins.len() > self.max_bins_per_pool {
            return Err(StoreError::TooManyBins {
                pool_id: id.clone(),
                max: self.max_bins_per_pool,
            });
        }
        let mut conn = self.redis.conn().await?;
        let generation: u64 = redis::cmd("INCR")
            .arg(keys::BINS_GEN_KEY)
            .query_async(&mut *conn)
            .await
            .map_err(|e| self.err(e))?;
        let (index, data) = keys::generation(id, generation);
        for slice in bins.chunks(self.max_bins_per_write) {
            let staged: usize = StageBins {
                index: index.clone(),
                data: data.clone(),
                ttl_secs: STAGING_TTL_SECS,
                bins: bin_args(slice)?,
            }
            .invoke(&mut *conn)
            .await
            .map_err(|e| self.err(e))?;
            tracing::debug!(pool = %id, generation, staged, "staged bins");
        }
        let (created, count): (u8, u32) = CommitPool {
            pool: pool_key(id),
            index,
            data,
            pools: POOLS_KEY,
            version: VERSION_KEY,
            events: EVENTS_KEY,
            tokens_x: keys::tokens(&pool.token_x),
            tokens_y: keys::tokens(&pool.token_y),
            pair: keys::pair(&pool.token_x, &pool.token_y),
            purge: keys::PURGE_KEY,
            pool_id: id,
            json: to_json(pool)?,
            now_ms: time::now().ms,
            events_maxlen: self.events_maxlen,
            generation,
            staged: bins.len(),
        }
        .invoke(&mut *conn)
        .await
        .map_err(|e| self.write_err(id, e))?;
        drop(conn);
        self.purge(id).await?;
        Ok(Written {
            created: created == 1,
            bins: count,
            changed: true,
        })
    }

    /// Deletes the old generations of `pool_id`'s bins, a slice per script.
    async fn purge(&self, pool_id: &str) -> Result<(), StoreError> {
        let mut conn = self.redis.conn().await?;
        let pending: Vec<String> = conn
            .smembers(keys::PURGE_KEY)
            .await
            .map_err(|e| self.err(e))?;
        for entry in pending {
            let Some((id, generation)) = entry.split_once(' ') else {
                continue;
            };
            let Ok(generation) = generation.parse::<u64>() else {
                continue;
            };
            if id != pool_id {
                continue;
            }
            loop {
                let left: u64 = PurgeBins {
                    purge: keys::PURGE_KEY,
                    pool: pool_key(id),
                    index: index_key(id),
                    pool_id: id,
                    generation,
                    bin_prefix: bin_prefix(id),
                    slice: self.max_bins_per_write,
                }
                .invoke(&mut *conn)
                .await
                .map_err(|e| self.err(e))?;
                if left == 0 {
                    break;
                }
            }
        }
        Ok(())
    }

    fn write_err(&self, id: &str, e: redis::RedisError) -> StoreError {
        match e.code() {
            Some("TOKENS_CHANGED") => StoreError::TokensChanged(id.to_string()),
            Some("BIN_STEP_CHANGED") => StoreError::BinStepChanged(id.to_string()),
            Some("STALE_POOL" | "STAGING_LOST") => StoreError::PoolChanged(id.to_string()),
            Some("NEEDS_STAGING") => StoreError::NeedsStaging,
            Some("TOO_MANY_BINS") => StoreError::TooManyBins {
                pool_id: id.to_string(),
                max: self.max_bins_per_pool,
            },
            _ => self.err(e),
        }
    }

    /// Writes bins of an existing pool atomically, optionally moving its
    /// active bin. `None` if the pool does not exist (nothing written).
    /// `bin_step` is the pool's step the bins were validated against: if
    /// the pool's step changed since, nothing is written
    /// ([`StoreError::PoolChanged`]).
    pub async fn upsert_bins(
        &self,
        pool_id: &str,
        bin_step: u16,
        bins: &[Bin],
        active_bin_id: Option<i32>,
    ) -> Result<Option<(u32, u32)>, StoreError> {
        let script = UpsertBins {
            pool: pool_key(pool_id),
            index: index_key(pool_id),
            events: EVENTS_KEY,
            version: VERSION_KEY,
            pool_id,
            now_ms: time::now().ms,
            active_bin_id: active_bin_id.map(|a| a.to_string()).unwrap_or_default(),
            events_maxlen: self.events_maxlen,
            bin_prefix: bin_prefix(pool_id),
            max_bins: self.max_bins_per_pool,
            bin_step,
            bins: bin_args(bins)?,
        };
        let mut conn = self.redis.conn().await?;
        match script.invoke::<(u32, u32)>(&mut *conn).await {
            Ok(counts) => Ok(Some(counts)),
            Err(e) if e.code() == Some("NOPOOL") => Ok(None),
            Err(e) => Err(self.write_err(pool_id, e)),
        }
    }

    /// Reads a pool and up to `limit` bins in the walk order of a swap
    /// (X->Y walks down when `swap_for_y`). `None` if the pool is gone.
    pub async fn read_hop(
        &self,
        pool_id: &str,
        swap_for_y: bool,
        limit: usize,
    ) -> Result<(u64, Option<HopSnapshot>), StoreError> {
        let mut conn = self.redis.conn().await?;
        let reply: Vec<Value> = ReadHop {
            pool: pool_key(pool_id),
            index: index_key(pool_id),
            version: VERSION_KEY,
            direction: if swap_for_y { "down" } else { "up" },
            limit,
            bin_prefix: bin_prefix(pool_id),
        }
        .invoke(&mut *conn)
        .await
        .map_err(|e| self.err(e))?;
        let mut items = reply.into_iter();
        let version = parse_version(items.next())?;
        let Some(pool_json) = items.next() else {
            return Ok((version, None));
        };
        let pool: Pool = from_json(&pool_key(pool_id), &value_text(&pool_json))?;
        let mut bins = Vec::new();
        while let (Some(id), Some(json)) = (items.next(), items.next()) {
            let json = value_text(&json);
            if json.is_empty() {
                continue; // raced a delete made outside our scripts; skip it
            }
            let key = format!("{}{}", bin_prefix(pool_id), value_text(&id));
            bins.push(from_json::<Bin>(&key, &json)?.reserve());
        }
        Ok((
            version,
            Some(HopSnapshot {
                version,
                pool,
                bins,
            }),
        ))
    }

    /// The route graph version and every pool's configuration.
    pub async fn all_pools(&self) -> Result<(u64, Vec<Pool>), StoreError> {
        let mut conn = self.redis.conn().await?;
        // Version first: a graph built from newer pools than its version
        // says is rebuilt once more, never the other way round.
        let version: Option<u64> = conn.get(VERSION_KEY).await.map_err(|e| self.err(e))?;
        let mut ids: Vec<String> = conn.smembers(POOLS_KEY).await.map_err(|e| self.err(e))?;
        ids.sort();
        let mut pools = Vec::with_capacity(ids.len());
        for batch in ids.chunks(MGET_BATCH) {
            pools.extend(self.pools_by_id(&mut *conn, batch).await?);
        }
        Ok((version.unwrap_or(0), pools))
    }

    /// The route graph version alone.
    pub async fn version(&self) -> Result<u64, StoreError> {
        let mut conn = self.redis.conn().await?;
        let version: Option<u64> = conn.get(VERSION_KEY).await.map_err(|e| self.err(e))?;
        Ok(version.unwrap_or(0))
    }

    /// Pool ids, optionally only those trading `token`, sorted.
    pub async fn pool_ids(&self, token: Option<&str>) -> Result<Vec<String>, StoreError> {
        let mut conn = self.redis.conn().await?;
        let key = token.map_or_else(|| POOLS_KEY.to_string(), keys::tokens);
        let mut ids: Vec<String> = conn.smembers(key).await.map_err(|e| self.err(e))?;
        ids.sort();
        Ok(ids)
    }

    /// Configurations of `ids` (missing ones left out), in order.
    pub async fn pools(&self, ids: &[String]) -> Result<Vec<Pool>, StoreError> {
        let mut conn = self.redis.conn().await?;
        self.pools_by_id(&mut *conn, ids).await
    }

    async fn pools_by_id(
        &self,
        conn: &mut (impl redis::aio::ConnectionLike + Send),
        ids: &[String],
    ) -> Result<Vec<Pool>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<String> = ids.iter().map(|id| pool_key(id)).collect();
        let values: Vec<Option<String>> = redis::cmd("MGET")
            .arg(&keys)
            .query_async(conn)
            .await
            .map_err(|e| self.err(e))?;
        keys.iter()
            .zip(values)
            .filter_map(|(key, value)| value.map(|json| from_json(key, &json)))
            .collect()
    }

    /// A pool's configuration alone; `None` if unknown.
    pub async fn pool(&self, pool_id: &str) -> Result<Option<Pool>, StoreError> {
        Ok(self.pools(&[pool_id.to_string()]).await?.into_iter().next())
    }

    /// Up to `limit` non-empty bins of a pool with ids above `after` (all
    /// from the lowest if `None`), by id, from one generation.
    pub async fn bins(
        &self,
        pool_id: &str,
        after: Option<i32>,
        limit: usize,
    ) -> Result<Vec<Bin>, StoreError> {
        let mut conn = self.redis.conn().await?;
        let reply: Vec<String> = ReadBins {
            pool: pool_key(pool_id),
            index: index_key(pool_id),
            min: after.map_or_else(|| "-inf".to_string(), |a| format!("({a}")),
            limit,
            bin_prefix: bin_prefix(pool_id),
        }
        .invoke(&mut *conn)
        .await
        .map_err(|e| self.err(e))?;
        let mut bins = Vec::with_capacity(reply.len() / 2);
        for pair in reply.chunks(2) {
            if let [id, json] = pair
                && !json.is_empty()
            {
                bins.push(from_json(&format!("{}{id}", bin_prefix(pool_id)), json)?);
            }
        }
        Ok(bins)
    }
}

/// The scripts' bin pairs: id, then JSON ("" for an empty bin: remove it).
fn bin_args(bins: &[Bin]) -> Result<Vec<String>, StoreError> {
    let mut args = Vec::with_capacity(bins.len() * 2);
    for bin in bins {
        args.push(bin.bin_id.to_string());
        args.push(if bin.is_empty() {
            String::new()
        } else {
            to_json(bin)?
        });
    }
    Ok(args)
}

fn to_json<T: serde::Serialize>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| StoreError::Corrupt {
        key: "(encoding)".into(),
        reason: e.to_string(),
    })
}

fn from_json<T: serde::de::DeserializeOwned>(key: &str, json: &str) -> Result<T, StoreError> {
    serde_json::from_str(json).map_err(|e| StoreError::Corrupt {
        key: key.to_string(),
        reason: e.to_string(),
    })
}

fn parse_version(value: Option<Value>) -> Result<u64, StoreError> {
    let raw = value.as_ref().map(value_text).unwrap_or_default();
    raw.parse().map_err(|_| StoreError::Corrupt {
        key: VERSION_KEY.into(),
        reason: format!("{raw:?} is not a version number"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripts_match_their_headers() {
        for shape in [
            UpsertPool::SHAPE,
            UpsertBins::SHAPE,
            ReadHop::SHAPE,
            StageBins::SHAPE,
            CommitPool::SHAPE,
            PurgeBins::SHAPE,
            ReadBins::SHAPE,
        ] {
            shape.check();
        }
    }
}
