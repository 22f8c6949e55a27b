//! Connections to the two Redis endpoints of an OpenOES link.
//!
//! Three kinds of connection, kept apart by type:
//!
//! - [`RedisEndpoint::conn`] hands out one of a few multiplexed
//!   connections (`redis.shared_connections`) for short commands (GET,
//!   HSET, XADD, scripts), shared by every caller: concurrent calls
//!   pipeline on one socket, so a burst of RPCs costs Redis and the kernel
//!   a few reads and writes instead of one round trip each on its own
//!   socket (issue #17). Its reply timeout is `redis.command_timeout`.
//! - [`RedisEndpoint::exclusive`] lends a pooled connection of the
//!   caller's alone (`redis.pool_size`), for a write followed by `WAIT` or
//!   `WAITAOF` ([`Durability::conn`]): those block their connection, and
//!   on a shared one would hold up every other caller.
//! - [`RedisEndpoint::blocking`] opens a [`BlockingConnection`], the only
//!   type that may run `XREAD`/`XREADGROUP` with `BLOCK`. Its reply timeout
//!   is the BLOCK time plus a margin. On a pooled connection redis-rs's
//!   default 500 ms reply timeout would fail every longer BLOCK read while
//!   the server still goes on and delivers: an XREADGROUP reply lost that way
//!   leaves its entries pending (in the PEL) with no consumer to act on them.
//!
//! Each endpoint also carries a [`Reachability`] kept by the health monitor
//! ([`crate::server::health`]). While an endpoint is known to be down,
//! [`RedisEndpoint::conn`] fails at once with UNAVAILABLE instead of letting
//! every call wait out the pool timeout. Commands on shared and exclusive
//! connections are timed into the endpoint's latency histogram
//! ([`RedisEndpoint::time_commands`]) when metrics are on.

pub mod page;
pub mod process;
pub mod script;

use std::{
    fmt,
    ops::{Deref, DerefMut},
    sync::{
        Arc, Mutex, OnceLock,
        atomic::{AtomicU8, AtomicU64, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use bb8::PooledConnection;
use bb8_redis::RedisConnectionManager;
use prometheus_client::metrics::histogram::Histogram;
use redis::{
    AsyncConnectionConfig, Client, ConnectionInfo, IntoConnectionInfo, aio::MultiplexedConnection,
};

use crate::{
    config::{RedisConfig, RedisEndpointConfig},
    error::{RpcError, reason},
};

/// Extra reply time a blocking read gets beyond its BLOCK time: covers the
/// network round trip and a busy server, so the client never gives up on a
/// reply the server is still going to send.
pub const BLOCK_REPLY_MARGIN: Duration = Duration::from_secs(2);

/// Which Redis of the link.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Endpoint {
    /// The WSP's master (M).
    Master,
    /// The exchange's stream-writeable replica (R).
    Replica,
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Master => "master (M)",
            Self::Replica => "replica (R)",
        })
    }
}

/// What the health monitor last saw of an endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Reachability {
    /// Not probed (yet): calls try it. One-shot tools run no monitor.
    Unknown = 0,
    /// The last probe succeeded.
    Up = 1,
    /// The last probe failed: calls fail fast with UNAVAILABLE.
    Down = 2,
}

/// Errors of the Redis layer.
#[derive(Debug, thiserror::Error)]
pub enum RedisError {
    /// The endpoint cannot be reached (down, refused, timed out, or known
    /// down by the health monitor). Safe to retry later.
    #[error("redis {endpoint} is unavailable")]
    Unavailable {
        /// Which endpoint.
        endpoint: Endpoint,
        /// The failure, if one was seen (none when failing fast).
        #[source]
        source: Option<redis::RedisError>,
    },
    /// Redis answered with an error (script error, ACL denial, wrong type).
    #[error("redis {endpoint} refused a command")]
    Command {
        /// Which endpoint.
        endpoint: Endpoint,
        /// What Redis said.
        #[source]
        source: redis::RedisError,
    },
    /// The endpoint's configuration cannot be turned into a connection.
    #[error("bad redis endpoint configuration")]
    Config(#[source] redis::RedisError),
    /// A write happened on the endpoint but did not become as durable as
    /// `redis.durability` asks within its timeout.
    #[error(
        "redis {endpoint} has the write, but {what} within {timeout:?}; retry with the same request_id"
    )]
    NotDurable {
        /// Which endpoint.
        endpoint: Endpoint,
        /// What was missing.
        what: String,
        /// The configured timeout.
        timeout: Duration,
    },
}

/// Redis error codes that mean "not now" rather than "never": loading its
/// data after a restart, a busy script, a failover in progress. They are
/// outages (UNAVAILABLE, retry), not refusals.
const NOT_NOW: &[&str] = &[
    "LOADING",
    "BUSY",
    "TRYAGAIN",
    "MASTERDOWN",
    "CLUSTERDOWN",
    "READONLY",
];

impl RedisError {
    /// Classifies a redis-rs error seen on `endpoint`.
    pub fn from_redis(endpoint: Endpoint, source: redis::RedisError) -> Self {
        // A server still loading its dataset after a restart (Valkey's
        // loading window is wide enough that the fault suites hit it), or
        // one in a failover, cannot serve yet: an outage to retry.
        let unreachable = source.is_io_error()
            || source.is_timeout()
            || source.is_connection_refusal()
            || source.is_connection_dropped()
            || source.is_unrecoverable_error()
            || source.code().is_some_and(|c| NOT_NOW.contains(&c));
        if unreachable {
            Self::Unavailable {
                endpoint,
                source: Some(source),
            }
        } else {
            Self::Command { endpoint, source }
        }
    }

    /// True if the error means "cannot reach Redis" rather than "Redis said no".
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Self::Unavailable { .. })
    }
}

impl RpcError for RedisError {
    fn code(&self) -> tonic::Code {
        match self {
            Self::Unavailable { .. } | Self::NotDurable { .. } => tonic::Code::Unavailable,
            _ => tonic::Code::Internal,
        }
    }

    fn reason(&self) -> &'static str {
        match self {
            Self::Unavailable { .. } => reason::REDIS_UNAVAILABLE,
            Self::NotDurable { .. } => reason::DURABILITY_TIMEOUT,
            _ => reason::REDIS_ERROR,
        }
    }
}

/// The connection info for an endpoint: URL, forced TLS, user and password.
pub fn connection_info(config: &RedisEndpointConfig) -> Result<ConnectionInfo, RedisError> {
    let url = match config.url.strip_prefix("redis://") {
        Some(rest) if config.tls => format!("rediss://{rest}"),
        _ => config.url.clone(),
    };
    let info = url
        .as_str()
        .into_connection_info()
        .map_err(RedisError::Config)?;
    let mut settings = info.redis_settings().clone();
    if !config.user.is_empty() {
        settings = settings.set_username(&config.user);
    }
    if !config.password.expose().is_empty() {
        settings = settings.set_password(config.password.expose());
    }
    Ok(info.set_redis_settings(settings))
}

/// Both endpoints of the link.
#[derive(Clone)]
pub struct Redis {
    /// The WSP's master (M).
    pub master: RedisEndpoint,
    /// The exchange's replica (R), as the exchange role's user.
    pub replica: RedisEndpoint,
    /// R again, as the user the WSP role reads responses with (the same
    /// endpoint unless `redis.replica_reader` names another user). Shares
    /// R's health verdict.
    pub replica_reader: RedisEndpoint,
}

impl Redis {
    /// Builds both endpoints. Connects lazily: a server may start while
    /// Redis is down and becomes SERVING when it comes up.
    pub fn new(config: &RedisConfig) -> Result<Self, RedisError> {
        let replica = RedisEndpoint::new(Endpoint::Replica, &config.replica, config)?;
        let replica_reader = if config.replica_reader.user.is_empty() {
            replica.clone()
        } else {
            let mut reader = config.replica.clone();
            reader.user.clone_from(&config.replica_reader.user);
            reader.password = config.replica_reader.password.clone();
            RedisEndpoint {
                reachability: Arc::clone(&replica.reachability),
                ..RedisEndpoint::new(Endpoint::Replica, &reader, config)?
            }
        };
        Ok(Self {
            master: RedisEndpoint::new(Endpoint::Master, &config.master, config)?,
            replica,
            replica_reader,
        })
    }

    /// The endpoint named `which`.
    pub fn endpoint(&self, which: Endpoint) -> &RedisEndpoint {
        match which {
            Endpoint::Master => &self.master,
            Endpoint::Replica => &self.replica,
        }
    }
}

/// One Redis server: a pool for short commands, a factory for blocking
/// connections, and the health monitor's verdict on it.
#[derive(Clone)]
pub struct RedisEndpoint {
    endpoint: Endpoint,
    client: Client,
    pool: bb8::Pool<Manager>,
    /// Set by the health monitor ([`Reachability`]); read by every `conn()`
    /// to fail fast while the endpoint is known to be down.
    reachability: Arc<AtomicU8>,
    connect_timeout: Duration,
    /// Why the pool's last connect attempt failed: bb8 reports only "timed
    /// out" to the caller, and an operator needs the cause (refused, TLS,
    /// auth).
    last_connect_error: LastConnectError,
    /// The connection generation (see [`PoolConnection`]): shared and
    /// pooled connections of an ended one are not handed out again.
    generation: Arc<AtomicU64>,
    pool_size: u32,
    /// The shared multiplexed connections ([`RedisEndpoint::conn`]).
    shared: Arc<[SharedSlot]>,
    /// Round robin over `shared`.
    next_shared: Arc<AtomicUsize>,
    command_timeout: Duration,
    /// Command latency, set when metrics are on.
    latency: Arc<OnceLock<Histogram>>,
}

impl RedisEndpoint {
    fn new(
        endpoint: Endpoint,
        config: &RedisEndpointConfig,
        limits: &RedisConfig,
    ) -> Result<Self, RedisError> {
        let info = connection_info(config)?;
        let client = Client::open(info.clone()).map_err(RedisError::Config)?;
        let generation = Arc::new(AtomicU64::new(0));
        let latency = Arc::new(OnceLock::new());
        let manager = Manager {
            inner: RedisConnectionManager::new(info).map_err(RedisError::Config)?,
            reply_timeout: limits.command_timeout,
            generation: Arc::clone(&generation),
        };
        let last_connect_error = LastConnectError::default();
        let pool = bb8::Pool::builder()
            .max_size(limits.pool_size)
            .connection_timeout(limits.pool_timeout)
            .error_sink(Box::new(last_connect_error.clone()))
            // Manager::has_broken notices dead connections instead.
            .test_on_check_out(false)
            .build_unchecked(manager);
        Ok(Self {
            endpoint,
            client,
            pool,
            reachability: Arc::new(AtomicU8::new(Reachability::Unknown as u8)),
            connect_timeout: limits.connect_timeout,
            last_connect_error,
            generation,
            pool_size: limits.pool_size,
            shared: (0..limits.shared_connections.max(1))
                .map(|_| SharedSlot::default())
                .collect(),
            next_shared: Arc::default(),
            command_timeout: limits.command_timeout,
            latency,
        })
    }

    /// Times every command on this endpoint's shared and pooled
    /// connections into `histogram` (once; later calls change nothing).
    pub fn time_commands(&self, histogram: Histogram) {
        let _ = self.latency.set(histogram);
    }

    /// Which endpoint this is.
    pub fn name(&self) -> Endpoint {
        self.endpoint
    }

    /// The health monitor's last verdict.
    pub fn reachability(&self) -> Reachability {
        match self.reachability.load(Ordering::Relaxed) {
            x if x == Reachability::Up as u8 => Reachability::Up,
            x if x == Reachability::Down as u8 => Reachability::Down,
            _ => Reachability::Unknown,
        }
    }

    /// True if the health monitor's last probe succeeded.
    pub fn is_up(&self) -> bool {
        self.reachability() == Reachability::Up
    }

    pub(crate) fn set_up(&self, up: bool) {
        let value = if up {
            Reachability::Up
        } else {
            Reachability::Down
        };
        let before = self.reachability.swap(value as u8, Ordering::Relaxed);
        if !up && before != Reachability::Down as u8 {
            // Whatever the pool holds was opened to the server that went
            // away: none of it is handed out again.
            self.generation.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The exclusive pool's connections: (open, lent out now), for metrics.
    pub fn pool_state(&self) -> (u32, u32) {
        let state = self.pool.state();
        (
            state.connections,
            state.connections.saturating_sub(state.idle_connections),
        )
    }

    fn check_not_down(&self) -> Result<(), RedisError> {
        if self.reachability() == Reachability::Down {
            return Err(RedisError::Unavailable {
                endpoint: self.endpoint,
                source: None,
            });
        }
        Ok(())
    }

    /// A shared connection for short commands (never `BLOCK`, `WAIT` or
    /// `MULTI` spread over calls: every caller's commands go down the same
    /// socket). Fails at once with UNAVAILABLE while the endpoint is known
    /// to be down.
    pub async fn conn(&self) -> Result<Conn<'_>, RedisError> {
        self.check_not_down()?;
        let index = self.next_shared.fetch_add(1, Ordering::Relaxed) % self.shared.len();
        let slot = &self.shared[index];
        let generation = self.generation.load(Ordering::Relaxed);
        if let Some(shared) = slot.current(generation, &self.generation) {
            return Ok(self.lease(Lease::Shared(shared)));
        }
        // One connect per slot at a time; whoever waited uses its result.
        let _connecting = slot.connecting.lock().await;
        if let Some(shared) = slot.current(generation, &self.generation) {
            return Ok(self.lease(Lease::Shared(shared)));
        }
        let conn = self.dedicated(self.command_timeout).await?;
        Ok(self.lease(Lease::Shared(slot.install(
            conn,
            generation,
            &self.generation,
        ))))
    }

    fn lease<'a>(&self, lease: Lease<'a>) -> Conn<'a> {
        Conn(Timed {
            lease,
            latency: self.latency.get().cloned(),
        })
    }

    /// A pooled connection of the caller's alone until dropped: for a write
    /// followed by `WAIT`/`WAITAOF` on the same connection. Fails at once
    /// with UNAVAILABLE while the endpoint is known to be down.
    pub async fn exclusive(&self) -> Result<Conn<'_>, RedisError> {
        self.check_not_down()?;
        // Idle connections of an older generation are dropped here, not
        // handed out: after a restart each would fail its first command.
        // Bounded: the pool replaces what it drops with current ones.
        for _ in 0..=self.pool_size {
            let mut conn = self.pool.get().await.map_err(|e| match e {
                bb8::RunError::User(e) => RedisError::from_redis(self.endpoint, e),
                bb8::RunError::TimedOut => RedisError::Unavailable {
                    endpoint: self.endpoint,
                    source: self.last_connect_error.take(),
                },
            })?;
            if !conn.is_stale() {
                return Ok(self.lease(Lease::Pooled(conn)));
            }
            conn.broken = true;
        }
        Err(RedisError::Unavailable {
            endpoint: self.endpoint,
            source: None,
        })
    }

    /// Opens a connection of its own for blocking reads of up to `block`.
    pub async fn blocking(&self, block: Duration) -> Result<BlockingConnection, RedisError> {
        let conn = self.dedicated(block + BLOCK_REPLY_MARGIN).await?;
        Ok(BlockingConnection { conn })
    }

    /// Opens an unpooled connection whose replies time out after `reply_timeout`.
    pub(crate) async fn dedicated(
        &self,
        reply_timeout: Duration,
    ) -> Result<MultiplexedConnection, RedisError> {
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.connect_timeout))
            .set_response_timeout(Some(reply_timeout));
        self.client
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .map_err(|e| RedisError::from_redis(self.endpoint, e))
    }
}

/// Keeps the latest connect error of a pool (bb8's error sink).
#[derive(Debug, Clone, Default)]
struct LastConnectError(Arc<std::sync::Mutex<Option<redis::RedisError>>>);

impl LastConnectError {
    fn take(&self) -> Option<redis::RedisError> {
        self.0.lock().ok().and_then(|mut e| e.take())
    }
}

impl bb8::ErrorSink<redis::RedisError> for LastConnectError {
    fn sink(&self, error: redis::RedisError) {
        if let Ok(mut last) = self.0.lock() {
            *last = Some(error);
        }
    }

    fn boxed_clone(&self) -> Box<dyn bb8::ErrorSink<redis::RedisError>> {
        Box::new(self.clone())
    }
}

/// One shared multiplexed connection, made on first use and again after it
/// broke or its generation ended.
#[derive(Default)]
struct SharedSlot {
    /// The connection, its generation and its number (to tell a broken
    /// one from its replacement).
    current: Arc<Mutex<Option<(MultiplexedConnection, u64, u64)>>>,
    /// Held while (re)connecting: one connect per slot at a time.
    connecting: tokio::sync::Mutex<()>,
    connects: AtomicU64,
}

impl SharedSlot {
    /// A handle on the slot's connection, if it is of `generation`.
    fn current(&self, generation: u64, generations: &Arc<AtomicU64>) -> Option<SharedConnection> {
        let current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        let (conn, conn_generation, number) = current.as_ref()?;
        (*conn_generation == generation).then(|| SharedConnection {
            conn: conn.clone(),
            number: *number,
            generation: *conn_generation,
            slot: Arc::clone(&self.current),
            current: Arc::clone(generations),
        })
    }

    fn install(
        &self,
        conn: MultiplexedConnection,
        generation: u64,
        generations: &Arc<AtomicU64>,
    ) -> SharedConnection {
        let number = self.connects.fetch_add(1, Ordering::Relaxed);
        *self.current.lock().unwrap_or_else(|e| e.into_inner()) =
            Some((conn.clone(), generation, number));
        SharedConnection {
            conn,
            number,
            generation,
            slot: Arc::clone(&self.current),
            current: Arc::clone(generations),
        }
    }
}

/// A handle on a shared connection: a connection-level failure empties its
/// slot (the next caller reconnects), and an I/O failure ends the
/// generation as [`PoolConnection`]'s does.
struct SharedConnection {
    conn: MultiplexedConnection,
    number: u64,
    generation: u64,
    slot: Arc<Mutex<Option<(MultiplexedConnection, u64, u64)>>>,
    current: Arc<AtomicU64>,
}

impl SharedConnection {
    fn note<T>(&self, result: redis::RedisResult<T>) -> redis::RedisResult<T> {
        if let Err(e) = &result
            && connection_failed(e)
        {
            let mut slot = self.slot.lock().unwrap_or_else(|e| e.into_inner());
            if slot.as_ref().is_some_and(|(_, _, n)| *n == self.number) {
                *slot = None;
            }
            drop(slot);
            if e.is_io_error() || e.is_connection_dropped() {
                let _ = self.current.compare_exchange(
                    self.generation,
                    self.generation + 1,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                );
            }
        }
        result
    }
}

/// A connection-level failure: the connection is not to be used again.
fn connection_failed(e: &redis::RedisError) -> bool {
    e.is_io_error() || e.is_connection_dropped() || e.is_timeout() || e.is_unrecoverable_error()
}

/// What [`RedisEndpoint::conn`] and [`RedisEndpoint::exclusive`] hand
/// out: use it as `&mut *conn` wherever redis-rs wants a connection.
pub struct Conn<'a>(Timed<'a>);

/// The connection inside a [`Conn`], timing each command.
pub struct Timed<'a> {
    lease: Lease<'a>,
    latency: Option<Histogram>,
}

/// A shared or an exclusive connection (see [`Conn`]).
enum Lease<'a> {
    /// One of the endpoint's shared multiplexed connections.
    Shared(SharedConnection),
    /// A pooled connection of the caller's alone.
    Pooled(PooledConnection<'a, Manager>),
}

impl<'a> Deref for Conn<'a> {
    type Target = Timed<'a>;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl DerefMut for Conn<'_> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

impl Timed<'_> {
    fn observe(&self, started: Instant) {
        if let Some(latency) = &self.latency {
            latency.observe(started.elapsed().as_secs_f64());
        }
    }
}

impl redis::aio::ConnectionLike for Timed<'_> {
    fn req_packed_command<'a>(
        &'a mut self,
        cmd: &'a redis::Cmd,
    ) -> redis::RedisFuture<'a, redis::Value> {
        Box::pin(async move {
            let started = Instant::now();
            let result = match &mut self.lease {
                Lease::Shared(s) => {
                    let result = s.conn.req_packed_command(cmd).await;
                    s.note(result)
                }
                Lease::Pooled(p) => p.req_packed_command(cmd).await,
            };
            self.observe(started);
            result
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> redis::RedisFuture<'a, Vec<redis::Value>> {
        Box::pin(async move {
            let started = Instant::now();
            let result = match &mut self.lease {
                Lease::Shared(s) => {
                    let result = s.conn.req_packed_commands(pipeline, offset, count).await;
                    s.note(result)
                }
                Lease::Pooled(p) => p.req_packed_commands(pipeline, offset, count).await,
            };
            self.observe(started);
            result
        })
    }

    fn get_db(&self) -> i64 {
        match &self.lease {
            Lease::Shared(s) => s.conn.get_db(),
            Lease::Pooled(p) => p.get_db(),
        }
    }
}

/// The pool's connection manager: bb8-redis's, plus what it lacks for us.
/// bb8-redis checks a connection with a PING on every checkout (it cannot
/// tell a dead multiplexed connection otherwise), which doubled the round
/// trips of every call; here a connection is retired when a command on it
/// fails at the connection level, and replies time out after
/// `redis.command_timeout` rather than redis-rs's 500 ms default.
pub struct Manager {
    inner: RedisConnectionManager,
    reply_timeout: Duration,
    generation: Arc<AtomicU64>,
}

impl bb8::ManageConnection for Manager {
    type Connection = PoolConnection;
    type Error = redis::RedisError;

    async fn connect(&self) -> Result<PoolConnection, redis::RedisError> {
        // Read before connecting: a failure seen while this connect runs
        // makes the new connection stale too, which is the safe side.
        let generation = self.generation.load(Ordering::Relaxed);
        let mut conn = self.inner.connect().await?;
        conn.set_response_timeout(self.reply_timeout);
        Ok(PoolConnection {
            conn,
            broken: false,
            generation,
            current: Arc::clone(&self.generation),
        })
    }

    async fn is_valid(&self, conn: &mut PoolConnection) -> Result<(), redis::RedisError> {
        self.inner.is_valid(&mut conn.conn).await
    }

    fn has_broken(&self, conn: &mut PoolConnection) -> bool {
        conn.broken || conn.is_stale()
    }
}

/// A pooled connection that remembers whether it failed at the connection
/// level (I/O, dropped, timed out), so the pool drops it, and its
/// generation: one connection failing that way, or the health monitor
/// finding the server down, ends the generation, and the pool drops every
/// connection of an ended one instead of handing it out (they were opened
/// to the same server: after a restart each would fail its first command,
/// one call after another).
pub struct PoolConnection {
    conn: MultiplexedConnection,
    broken: bool,
    generation: u64,
    current: Arc<AtomicU64>,
}

impl PoolConnection {
    fn note<T>(&mut self, result: redis::RedisResult<T>) -> redis::RedisResult<T> {
        if let Err(e) = &result
            && connection_failed(e)
        {
            self.broken = true;
        }
        if let Err(e) = &result
            && (e.is_io_error() || e.is_connection_dropped())
        {
            // The server went away: so did every connection of this
            // generation. Once per generation, however many of them fail.
            let _ = self.current.compare_exchange(
                self.generation,
                self.generation + 1,
                Ordering::Relaxed,
                Ordering::Relaxed,
            );
        }
        result
    }

    fn is_stale(&self) -> bool {
        self.generation != self.current.load(Ordering::Relaxed)
    }
}

impl redis::aio::ConnectionLike for PoolConnection {
    fn req_packed_command<'a>(
        &'a mut self,
        cmd: &'a redis::Cmd,
    ) -> redis::RedisFuture<'a, redis::Value> {
        Box::pin(async move {
            let result = self.conn.req_packed_command(cmd).await;
            self.note(result)
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> redis::RedisFuture<'a, Vec<redis::Value>> {
        Box::pin(async move {
            let result = self.conn.req_packed_commands(pipeline, offset, count).await;
            self.note(result)
        })
    }

    fn get_db(&self) -> i64 {
        self.conn.get_db()
    }
}

/// A connection of its own for `XREAD`/`XREADGROUP` with `BLOCK`.
///
/// Its reply timeout is fixed at creation to the BLOCK time it was made for
/// ([`RedisEndpoint::blocking`]) plus [`BLOCK_REPLY_MARGIN`]: its user must
/// not BLOCK longer than that.
pub struct BlockingConnection {
    conn: MultiplexedConnection,
}

impl BlockingConnection {
    /// The connection, for running the blocking read.
    pub fn conn(&mut self) -> &mut MultiplexedConnection {
        &mut self.conn
    }
}

/// Waits, after a money-moving write, until it is as durable as
/// `redis.durability` asks: on R (`WAIT`) and/or in M's AOF (`WAITAOF`).
/// Run on the connection that made the write: both commands wait for that
/// connection's last write.
#[derive(Clone)]
pub struct Durability {
    endpoint: Endpoint,
    config: crate::config::DurabilityConfig,
}

impl Durability {
    /// Waits as `config` says, for writes on `endpoint`.
    pub fn new(endpoint: RedisEndpoint, config: &crate::config::DurabilityConfig) -> Self {
        Self {
            endpoint: endpoint.name(),
            config: config.clone(),
        }
    }

    /// True if writes are waited for (WAIT and/or WAITAOF).
    pub fn waits(&self) -> bool {
        self.config.replicas > 0 || self.config.aof
    }

    /// The connection for a write that [`Durability::wait`] will wait for:
    /// the caller's alone when it waits (WAIT blocks its connection, and
    /// counts that connection's writes), else a shared one.
    pub async fn conn<'a>(&self, redis: &'a RedisEndpoint) -> Result<Conn<'a>, RedisError> {
        if self.waits() {
            redis.exclusive().await
        } else {
            redis.conn().await
        }
    }

    /// Waits for the last write made on `conn`.
    pub async fn wait(
        &self,
        conn: &mut (impl redis::aio::ConnectionLike + Send),
    ) -> Result<(), RedisError> {
        let c = &self.config;
        let timeout_ms = c.timeout.as_millis() as u64;
        let not_durable = |what: String| RedisError::NotDurable {
            endpoint: self.endpoint,
            what,
            timeout: c.timeout,
        };
        if c.replicas > 0 {
            let acked: u32 = redis::cmd("WAIT")
                .arg(c.replicas)
                .arg(timeout_ms)
                .query_async(conn)
                .await
                .map_err(|e| RedisError::from_redis(self.endpoint, e))?;
            if acked < c.replicas {
                return Err(not_durable(format!(
                    "only {acked} of {} replicas acknowledged it",
                    c.replicas
                )));
            }
        }
        if c.aof {
            let reply: redis::RedisResult<(u32, u32)> = redis::cmd("WAITAOF")
                .arg(1)
                .arg(0)
                .arg(timeout_ms)
                .query_async(conn)
                .await;
            let (local, _) = reply.map_err(|e| {
                if e.to_string().to_lowercase().contains("unknown command") {
                    not_durable(
                        "this server has no WAITAOF (it needs Redis 7.2+ or Valkey 8; set redis.durability.aof = false or upgrade)"
                            .into(),
                    )
                } else {
                    RedisError::from_redis(self.endpoint, e)
                }
            })?;
            if local < 1 {
                return Err(not_durable("its AOF did not fsync it".into()));
            }
        }
        Ok(())
    }
}

/// A reply value as text: bulk and simple strings, integers; "" otherwise.
pub fn value_text(value: &redis::Value) -> String {
    match value {
        redis::Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
        redis::Value::SimpleString(s) => s.clone(),
        redis::Value::Int(i) => i.to_string(),
        _ => String::new(),
    }
}
