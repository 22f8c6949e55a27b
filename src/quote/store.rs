//! Pools and bins in Redis: keys, Lua scripts, reads and writes.
//!
//! Layout (the seed's, made exact; ids are the `[A-Za-z0-9._@-]` ids):
//!
//! | key | type | holds |
//! |---|---|---|
//! | `pool:<pool_id>` | string | pool configuration, JSON ([`Pool`]) |
//! | `bin:<pool_id>:<bin_id>` | string | one non-empty bin, JSON ([`Bin`]), amounts as strings |
//! | `pool:<pool_id>:bins` | sorted set | ids of the non-empty bins (score = id): the walk's index |
//! | `pairs:<token_x>:<token_y>`, `tokens:<token>` | set | pool ids (seed indexes) |
//! | `quote:pools` | set | every pool id |
//! | `quote:pools:version` | string | +1 on every pool write: route graphs rebuild on change |
//! | `quote:events` | stream | `pool_id`, `kind` (`pool` or `bins`) per write |
//!
//! Every write of a pool is one script, and every read a quote makes of a
//! pool is one script, so a quote never sees half a pool. The scripts touch
//! keys of several pools' indexes at once: one Redis, not Cluster.

use std::{sync::LazyLock, time::SystemTime};

use redis::{AsyncCommands, Script, Value};

use super::{
    math::BinReserve,
    model::{Bin, Pool, PoolSnapshot},
};
use crate::redis::{RedisEndpoint, RedisError, value_text};

/// The change stream of pools and bins.
pub const EVENTS_KEY: &str = "quote:events";
const POOLS_KEY: &str = "quote:pools";
const VERSION_KEY: &str = "quote:pools:version";

static UPSERT_POOL: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/upsert_pool.lua")));
static UPSERT_BINS: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/upsert_bins.lua")));
static READ_HOP: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("lua/read_hop.lua")));

fn pool_key(id: &str) -> String {
    format!("pool:{id}")
}

fn index_key(id: &str) -> String {
    format!("pool:{id}:bins")
}

fn bin_prefix(id: &str) -> String {
    format!("bin:{id}:")
}

/// Errors of the quote store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Redis failed.
    #[error(transparent)]
    Redis(#[from] RedisError),
    /// An upsert tried to change an existing pool's tokens.
    #[error(
        "pool {0:?} exists with other tokens; a pool's tokens cannot change (use a new pool_id)"
    )]
    TokensChanged(String),
    /// A key holds something that is not what this store writes.
    #[error("corrupt quote data at {key}: {reason}")]
    Corrupt {
        /// The key.
        key: String,
        /// What is wrong.
        reason: String,
    },
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

/// Reads and writes quote data on one Redis.
#[derive(Clone)]
pub struct QuoteStore {
    redis: RedisEndpoint,
    /// Approximate length `quote:events` is trimmed to (`streams.maxlen`).
    events_maxlen: usize,
}

impl QuoteStore {
    /// A store on `redis`, trimming `quote:events` as `streams` says.
    pub fn new(redis: RedisEndpoint, streams: &crate::config::StreamsConfig) -> Self {
        Self {
            redis,
            events_maxlen: streams.maxlen_for(EVENTS_KEY),
        }
    }

    fn err(&self, e: redis::RedisError) -> StoreError {
        StoreError::Redis(RedisError::from_redis(self.redis.name(), e))
    }

    /// Writes a pool and its bins atomically. `replace_bins` removes the
    /// pool's bins not in the snapshot. Returns (created, non-empty bins).
    pub async fn upsert_pool(
        &self,
        snapshot: &PoolSnapshot,
        replace_bins: bool,
    ) -> Result<(bool, u32), StoreError> {
        let pool = &snapshot.pool;
        let id = &pool.pool_id;
        let json = to_json(pool)?;
        let mut invocation = UPSERT_POOL.prepare_invoke();
        invocation
            .key(pool_key(id))
            .key(index_key(id))
            .key(POOLS_KEY)
            .key(VERSION_KEY)
            .key(EVENTS_KEY)
            .key(format!("tokens:{}", pool.token_x))
            .key(format!("tokens:{}", pool.token_y))
            .key(format!("pairs:{}:{}", pool.token_x, pool.token_y))
            .arg(id)
            .arg(json)
            .arg(now_ms())
            .arg(if replace_bins { "1" } else { "0" })
            .arg(self.events_maxlen)
            .arg(bin_prefix(id));
        push_bins(&mut invocation, &snapshot.bins)?;
        let mut conn = self.redis.conn().await?;
        let (created, count): (u8, u32) =
            invocation
                .invoke_async(&mut *conn)
                .await
                .map_err(|e| match e.code() {
                    Some("TOKENS_CHANGED") => StoreError::TokensChanged(id.clone()),
                    _ => self.err(e),
                })?;
        Ok((created == 1, count))
    }

    /// Writes bins of an existing pool atomically, optionally moving its
    /// active bin. `None` if the pool does not exist (nothing written).
    pub async fn upsert_bins(
        &self,
        pool_id: &str,
        bins: &[Bin],
        active_bin_id: Option<i32>,
    ) -> Result<Option<(u32, u32)>, StoreError> {
        let mut invocation = UPSERT_BINS.prepare_invoke();
        invocation
            .key(pool_key(pool_id))
            .key(index_key(pool_id))
            .key(EVENTS_KEY)
            .arg(pool_id)
            .arg(now_ms())
            .arg(active_bin_id.map(|a| a.to_string()).unwrap_or_default())
            .arg(self.events_maxlen)
            .arg(bin_prefix(pool_id));
        push_bins(&mut invocation, bins)?;
        let mut conn = self.redis.conn().await?;
        match invocation.invoke_async::<(u32, u32)>(&mut *conn).await {
            Ok(counts) => Ok(Some(counts)),
            Err(e) if e.code() == Some("NOPOOL") => Ok(None),
            Err(e) => Err(self.err(e)),
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
        let reply: Vec<Value> = READ_HOP
            .key(pool_key(pool_id))
            .key(index_key(pool_id))
            .key(VERSION_KEY)
            .arg(if swap_for_y { "down" } else { "up" })
            .arg(limit)
            .arg(bin_prefix(pool_id))
            .invoke_async(&mut *conn)
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
        let pools = self.pools_by_id(&mut *conn, &ids).await?;
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
        let key = token.map_or_else(|| POOLS_KEY.to_string(), |t| format!("tokens:{t}"));
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

    /// Every non-empty bin of a pool, by id.
    pub async fn bins(&self, pool_id: &str) -> Result<Vec<Bin>, StoreError> {
        let mut conn = self.redis.conn().await?;
        let ids: Vec<String> = conn
            .zrange(index_key(pool_id), 0, -1)
            .await
            .map_err(|e| self.err(e))?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<String> = ids
            .iter()
            .map(|id| format!("{}{id}", bin_prefix(pool_id)))
            .collect();
        let values: Vec<Option<String>> = redis::cmd("MGET")
            .arg(&keys)
            .query_async(&mut *conn)
            .await
            .map_err(|e| self.err(e))?;
        keys.iter()
            .zip(values)
            .filter_map(|(key, value)| value.map(|json| from_json(key, &json)))
            .collect()
    }
}

fn push_bins(invocation: &mut redis::ScriptInvocation<'_>, bins: &[Bin]) -> Result<(), StoreError> {
    for bin in bins {
        invocation.arg(bin.bin_id);
        if bin.is_empty() {
            invocation.arg("");
        } else {
            invocation.arg(to_json(bin)?);
        }
    }
    Ok(())
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

/// Now, in unix milliseconds.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
