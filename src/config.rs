//! The one typed configuration, loaded once at start-up.
//!
//! Layers, later ones winning: built-in defaults, then a TOML file
//! (`--config FILE`), then environment variables prefixed `OPENOES__` with
//! `__` between levels (`OPENOES__REDIS__MASTER__URL=redis://...`). Unknown
//! keys are errors, so a typo fails start-up instead of being ignored. This
//! is the only place that reads the environment (but for
//! `OPENOES_REDIS_SERVER`, the binary of throw-away local servers of tests
//! and `dev`: see `redis::process`).

use std::{fmt, net::SocketAddr, path::Path, time::Duration};

use figment::{
    Figment,
    providers::{Env, Format, Serialized, Toml},
};
use serde::{Deserialize, Serialize};

use crate::validate::{ID_RULE, is_valid_id};

/// Prefix of the environment variables that override the config file.
pub const ENV_PREFIX: &str = "OPENOES__";

/// Everything the gateway can be told.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Which sides of the OpenOES link this process serves.
    pub roles: Vec<Role>,
    /// The gRPC listener.
    pub grpc: GrpcConfig,
    /// Who may call which RPC: principals (tokens, client certificates)
    /// and their roles.
    pub auth: AuthConfig,
    /// Request budgets per (principal, RPC class), shared by every gateway
    /// on the same Redis.
    pub rate_limit: RateLimitConfig,
    /// Redis endpoints and connection limits.
    pub redis: RedisConfig,
    /// Limits of the Redis-streams bridge (Watch* and Subscribe* RPCs).
    pub streams: StreamsConfig,
    /// The credit flow (CreditService).
    pub credit: CreditConfig,
    /// The custody vault and pledges (PledgeService).
    pub pledge: PledgeConfig,
    /// Settlement reports, verdicts and signed cycles (SettlementService).
    pub settlement: SettlementConfig,
    /// Swap quotes (QuoteService).
    pub quote: QuoteConfig,
    /// Signed attestations (AttestationService).
    pub attestation: AttestationConfig,
    /// How health follows Redis.
    pub health: HealthConfig,
    /// The Prometheus endpoint and the sampler of the link's gauges.
    pub metrics: MetricsConfig,
    /// How the process stops.
    pub shutdown: ShutdownConfig,
    /// Logging.
    pub log: LogConfig,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            // Both roles: one process serving the whole link is what `dev`,
            // tests and single-box installs want; production names its role.
            roles: vec![Role::Wsp, Role::Exchange],
            grpc: GrpcConfig::default(),
            auth: AuthConfig::default(),
            rate_limit: RateLimitConfig::default(),
            redis: RedisConfig::default(),
            streams: StreamsConfig::default(),
            credit: CreditConfig::default(),
            pledge: PledgeConfig::default(),
            settlement: SettlementConfig::default(),
            quote: QuoteConfig::default(),
            attestation: AttestationConfig::default(),
            health: HealthConfig::default(),
            metrics: MetricsConfig::default(),
            shutdown: ShutdownConfig::default(),
            log: LogConfig::default(),
        }
    }
}

/// A side of the OpenOES link.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// The custodian: writes the master (M), reads exchange responses on R.
    Wsp,
    /// The exchange: reads requests and CI on the replica (R), writes its
    /// own response streams there.
    Exchange,
}

/// The gRPC listener and HTTP/2 settings.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct GrpcConfig {
    /// Address to listen on. Port 0 picks a free port.
    pub listen: SocketAddr,
    /// HTTP/2 PING interval: finds dead peers (and keeps NAT and mesh
    /// proxies from dropping idle streams).
    #[serde(with = "humantime_serde")]
    pub keepalive_interval: Duration,
    /// How long a PING may go unanswered before the connection is closed.
    #[serde(with = "humantime_serde")]
    pub keepalive_timeout: Duration,
    /// Concurrent HTTP/2 streams per connection, so one client cannot hold
    /// unbounded server state.
    pub max_concurrent_streams: u32,
    /// Upper bound on the time to answer a unary call (and to start a
    /// stream); a client's shorter `grpc-timeout` wins. Expiry answers
    /// DEADLINE_EXCEEDED.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Largest request message accepted, in bytes: the limit of writes
    /// (bulk bin uploads are the largest), and every service's decoding
    /// limit behind the per-class ones below.
    pub max_message_bytes: usize,
    /// Largest request message of a read (Get*, List*, quotes), in bytes:
    /// reads name a few ids, so a large one is an attack, refused before
    /// it is buffered (RESOURCE_EXHAUSTED, MESSAGE_TOO_LARGE).
    pub max_read_message_bytes: usize,
    /// Largest request message opening a server stream (Watch*,
    /// Subscribe*), or of a client stream (reflection), in bytes.
    pub max_stream_message_bytes: usize,
    /// Largest HTTP/2 header block of a request (names and values), in
    /// bytes; larger is refused by h2 (HTTP 431). Holds a bearer token and
    /// a few gRPC headers with room to spare.
    pub max_header_list_bytes: u32,
    /// Connections open at once on the listener; one more is accepted and
    /// closed at once. With `max_concurrent_streams`, bounds the streams
    /// (and memory) all clients together can hold.
    pub max_connections: usize,
    /// How long a new connection may take to start HTTP/2 (send the client
    /// preface; with TLS, to finish the TLS handshake) before it is
    /// closed, so connections that say nothing hold no slot for long.
    #[serde(with = "humantime_serde")]
    pub handshake_timeout: Duration,
    /// TLS on the listener; plaintext while `tls.cert_file` is empty.
    pub tls: GrpcTlsConfig,
    /// Serve plaintext on a non-loopback address: only where a mesh
    /// (an mTLS sidecar) terminates TLS in front of the gateway. Without
    /// it `serve` refuses to start in plaintext on such an address.
    pub allow_plaintext: bool,
}

/// TLS (and mTLS) of the gRPC listener, with rustls. PEM files.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct GrpcTlsConfig {
    /// The server's certificate chain (PEM). Empty: no TLS.
    pub cert_file: String,
    /// Its private key (PEM; never logged).
    pub key_file: String,
    /// CA bundle (PEM) that client certificates must chain to. Empty: no
    /// client certificates are asked for.
    pub client_ca_file: String,
    /// Refuse a TLS handshake without a client certificate (mTLS only).
    /// Off: a client may present a certificate or a bearer token.
    pub require_client_cert: bool,
}

impl GrpcTlsConfig {
    /// True if the listener speaks TLS.
    pub fn enabled(&self) -> bool {
        !self.cert_file.is_empty()
    }
}

/// Whether the policy table is enforced. There is no default: `serve`
/// refuses to start until the config says which.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    /// Every call but health needs a credential whose roles the policy
    /// table allows for the RPC.
    Enforce,
    /// Anyone who reaches the port may call anything (a mesh in front
    /// authenticates callers, or a laptop).
    Off,
}

/// Who may reach server reflection.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ReflectionAccess {
    /// Anyone (dev: grpcurl works without `-proto`).
    Open,
    /// Any authenticated principal, whatever its roles.
    #[default]
    Authenticated,
    /// Not served at all (UNIMPLEMENTED).
    Off,
}

/// What a caller may be allowed to do; the policy table
/// (`server::auth::policy`) says which RPCs each role may call. A principal
/// holds one or more.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[serde(rename_all = "kebab-case")]
pub enum CallerRole {
    /// The custodian: requests credit, records custody, pledges, confirms
    /// or disputes settlements.
    Wsp,
    /// The exchange: takes and answers credit requests, submits settlement
    /// reports, closes cycles.
    Exchange,
    /// Submits verification results (AttestationService).
    Verifier,
    /// Revokes attestations.
    Issuer,
    /// Writes DLMM pools and bins (UpsertPool, UpsertBins).
    QuoteIngest,
    /// Reads: every Get/List/Watch and quotes.
    Reader,
    /// Operator RPCs (anomalies, dead letters) and every read.
    Admin,
}

impl CallerRole {
    /// Every role, in the order docs list them.
    pub const ALL: [CallerRole; 7] = [
        Self::Wsp,
        Self::Exchange,
        Self::Verifier,
        Self::Issuer,
        Self::QuoteIngest,
        Self::Reader,
        Self::Admin,
    ];

    /// Its name in config files and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Self::Wsp => "wsp",
            Self::Exchange => "exchange",
            Self::Verifier => "verifier",
            Self::Issuer => "issuer",
            Self::QuoteIngest => "quote-ingest",
            Self::Reader => "reader",
            Self::Admin => "admin",
        }
    }

    /// The role named `name`.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.name() == name)
    }
}

/// Principals and the policy's enforcement.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// `enforce` or `off`; unset makes `serve` refuse to start.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<AuthMode>,
    /// Who may use server reflection (`open`, `authenticated`, `off`).
    /// With `mode = "off"`, `authenticated` means anyone.
    pub reflection: ReflectionAccess,
    /// Bearer tokens (`authorization: Bearer <token>`), stored as SHA-256
    /// hashes only: `openoes tokens create` prints a token and its entry.
    pub tokens: Vec<TokenEntry>,
    /// Client certificates (mTLS, `grpc.tls.client_ca_file`) by a subject
    /// alternative name they carry.
    pub clients: Vec<ClientEntry>,
}

/// A bearer token's principal.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TokenEntry {
    /// The principal's name (audit lines and rate limits use it).
    pub name: String,
    /// SHA-256 of the whole token, lowercase hex (64 digits).
    pub sha256: String,
    /// Its roles.
    pub roles: Vec<CallerRole>,
}

/// A client certificate's principal.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ClientEntry {
    /// The principal's name.
    pub name: String,
    /// A DNS or URI subject alternative name of the certificate, matched
    /// exactly (e.g. `exchange-gw.example` or
    /// `spiffe://example/ns/x/sa/exchange`).
    pub san: String,
    /// Its roles.
    pub roles: Vec<CallerRole>,
}

/// GCRA budgets per (principal, RPC class), kept on Redis so every gateway
/// on the same Redis draws from one budget. If that Redis cannot be
/// reached (or is loading, busy, failing over) the call passes with a
/// warning (an outage fails the calls that need Redis anyway; refusing
/// adds a second failure to those that might work); if it refuses the
/// check (an ACL without the budget's keys) the call is refused with
/// REDIS_ERROR, so a broken deployment shows at once instead of running
/// without limits (`server::auth::rate`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct RateLimitConfig {
    /// Off: no budgets (the stream bound below still holds).
    pub enabled: bool,
    /// Reads (Get*, List*, GetQuote, VerifyAttestation), per second.
    pub read_per_second: u32,
    /// Writes (every mutating RPC), per second.
    pub write_per_second: u32,
    /// Stream opens (Watch*, Subscribe*), per second.
    pub stream_per_second: u32,
    /// Calls a principal may make at once above its rate (the GCRA burst).
    pub burst: u32,
    /// Server streams one principal may hold open at once on this gateway;
    /// more answer RESOURCE_EXHAUSTED (TOO_MANY_STREAMS).
    pub max_streams_per_principal: usize,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            read_per_second: 1000,
            write_per_second: 200,
            stream_per_second: 20,
            burst: 50,
            max_streams_per_principal: 256,
        }
    }
}

impl Default for GrpcConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 50051)),
            keepalive_interval: Duration::from_secs(30),
            keepalive_timeout: Duration::from_secs(10),
            max_concurrent_streams: 1024,
            request_timeout: Duration::from_secs(30),
            max_message_bytes: 4 * 1024 * 1024,
            max_read_message_bytes: 64 * 1024,
            max_stream_message_bytes: 64 * 1024,
            max_header_list_bytes: 16 * 1024,
            max_connections: 1024,
            handshake_timeout: Duration::from_secs(10),
            tls: GrpcTlsConfig::default(),
            allow_plaintext: false,
        }
    }
}

/// The two Redis endpoints of an OpenOES link and the limits used to talk
/// to them.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct RedisConfig {
    /// The WSP's master (M): Credit Inventory, requests, events; also the
    /// default home of quote and attestation data.
    pub master: RedisEndpointConfig,
    /// The exchange's stream-writeable replica of M (R). The exchange role
    /// works on it with these credentials (the `exchange` ACL user).
    pub replica: RedisEndpointConfig,
    /// Credentials the WSP role uses to read the exchange's responses on R
    /// (the `wsp-reader` ACL user). An empty user means the `replica`
    /// credentials: enough when this process serves only one role.
    pub replica_reader: Credentials,
    /// Pooled connections per endpoint for a write followed by WAIT /
    /// WAITAOF (`redis.durability`), each the caller's alone while it
    /// waits. Blocking reads never use the pool.
    pub pool_size: u32,
    /// Multiplexed connections per endpoint that every short command
    /// shares: concurrent calls pipeline on them (fewer syscalls and
    /// round trips than a connection per call). Redis runs one command at
    /// a time anyway; a few keep one slow reply from delaying all others.
    pub shared_connections: u32,
    /// Time to open a TCP (and TLS) connection.
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Time to wait for a free pooled connection before failing with
    /// UNAVAILABLE.
    #[serde(with = "humantime_serde")]
    pub pool_timeout: Duration,
    /// Time to wait for the reply to a short command. Blocking reads get
    /// their own, longer timeout derived from their BLOCK time.
    #[serde(with = "humantime_serde")]
    pub command_timeout: Duration,
    /// How durable a money-moving write on M must be before its RPC
    /// answers (credit requests, pledges, settlements).
    pub durability: DurabilityConfig,
}

/// What a money-moving write waits for before it is acknowledged. By
/// default nothing beyond M's memory: with `appendfsync everysec`, a crash
/// of M can lose the last second of acknowledged writes. Each wait costs
/// latency (measured by `openoes bench credit`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct DurabilityConfig {
    /// Replicas of M (R is one) that must have the write (`WAIT`); 0: none.
    pub replicas: u32,
    /// M's own AOF must have fsynced the write (`WAITAOF 1 0`, Redis 7.2+ or
    /// Valkey 8; refused at first use on older servers, saying so).
    pub aof: bool,
    /// Longest wait; a write not durable by then answers UNAVAILABLE
    /// (DURABILITY_TIMEOUT): it did happen on M, and a retry with the same
    /// request_id returns it once it is durable.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
}

impl Default for DurabilityConfig {
    fn default() -> Self {
        Self {
            replicas: 0,
            aof: false,
            timeout: Duration::from_secs(1),
        }
    }
}

impl DurabilityConfig {
    /// True if writes wait for anything.
    pub fn waits(&self) -> bool {
        self.replicas > 0 || self.aof
    }
}

impl Default for RedisConfig {
    fn default() -> Self {
        Self {
            master: RedisEndpointConfig::local(6379),
            replica: RedisEndpointConfig::local(6380),
            replica_reader: Credentials::default(),
            pool_size: 16,
            shared_connections: 2,
            connect_timeout: Duration::from_secs(1),
            pool_timeout: Duration::from_millis(500),
            command_timeout: Duration::from_secs(2),
            durability: DurabilityConfig::default(),
        }
    }
}

/// How to reach one Redis server.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct RedisEndpointConfig {
    /// `redis://host:port[/db]` or `rediss://` for TLS. Credentials belong
    /// in `user` and `password`, not in the URL.
    pub url: String,
    /// ACL user; empty means `default`.
    pub user: String,
    /// ACL password; empty means none.
    pub password: Secret,
    /// A file holding the password instead (e.g. a mounted secret);
    /// trailing newlines are ignored. Not both.
    pub password_file: String,
    /// Use TLS even if the URL says `redis://`. Server certificates are
    /// checked against the system roots (or the bundle named by the
    /// standard `SSL_CERT_FILE` variable).
    pub tls: bool,
}

impl RedisEndpointConfig {
    /// A plain local endpoint on `port`, as used by defaults and `dev`.
    pub fn local(port: u16) -> Self {
        Self {
            url: format!("redis://127.0.0.1:{port}"),
            user: String::new(),
            password: Secret::default(),
            password_file: String::new(),
            tls: false,
        }
    }
}

impl Default for RedisEndpointConfig {
    fn default() -> Self {
        Self::local(6379)
    }
}

/// An ACL user and password for an endpoint whose address is given
/// elsewhere.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Credentials {
    /// ACL user; empty means "not set".
    pub user: String,
    /// ACL password.
    pub password: Secret,
    /// A file holding the password instead; not both.
    pub password_file: String,
}

/// A string that never shows in logs or `Debug` output; [`Config::to_toml`]
/// redacts it too. (Serde sees the real value: figment's layering passes
/// values through it.)
#[derive(Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself, for the one place that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    fn redacted(&self) -> &'static str {
        if self.0.is_empty() { "" } else { "<redacted>" }
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.redacted())
    }
}

/// Limits of the bridge from Redis streams to gRPC streams.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct StreamsConfig {
    /// Events queued per watch subscriber before it is cut off as too slow
    /// (RESOURCE_EXHAUSTED): bounds memory per subscriber.
    pub watch_queue_capacity: usize,
    /// Client `Watch*` streams per process, all services together; more
    /// answer RESOURCE_EXHAUSTED. The gateway's own followers never count.
    pub max_watch_subscribers: usize,
    /// Client `Subscribe*` streams (consumer-group members) per process;
    /// more answer RESOURCE_EXHAUSTED. Each holds a blocking Redis
    /// connection, so this also bounds the connections they cost R.
    pub max_group_subscribers: usize,
    /// BLOCK time of stream reads. Also bounds how long a reader waits
    /// before it notices a dead connection.
    #[serde(with = "humantime_serde")]
    pub block: Duration,
    /// Entries per read (live and catch-up).
    pub read_batch: usize,
    /// How long a subscriber may take to accept one event during catch-up
    /// before it is cut off as too slow.
    #[serde(with = "humantime_serde")]
    pub slow_subscriber_timeout: Duration,
    /// Consumer groups: deliveries queued per subscriber. A subscriber that
    /// does not read stops receiving more (its entries stay pending).
    pub group_queue_capacity: usize,
    /// Consumer groups: an entry pending this long on a consumer is
    /// reclaimed and delivered to a live subscriber. Longer than the slowest
    /// honest handling of one entry.
    #[serde(with = "humantime_serde")]
    pub claim_min_idle: Duration,
    /// Consumer groups: an entry delivered more often than this goes to the
    /// dead-letter stream `<stream>:dlq`.
    pub max_deliveries: u64,
    /// Consumer groups: consumers idle this long that hold nothing are
    /// deleted from the group.
    #[serde(with = "humantime_serde")]
    pub idle_consumer_ttl: Duration,
    /// Approximate MAXLEN (`XADD ... MAXLEN ~ n`) of every stream this
    /// server writes, unless `maxlen` names the stream.
    pub default_maxlen: usize,
    /// Approximate MAXLEN per stream key, e.g. `"quote:events" = 10000`.
    /// Longer logs let watchers resume after longer absences.
    pub maxlen: std::collections::BTreeMap<String, usize>,
}

impl StreamsConfig {
    /// The approximate MAXLEN writers use for `key`.
    pub fn maxlen_for(&self, key: &str) -> usize {
        self.maxlen.get(key).copied().unwrap_or(self.default_maxlen)
    }
}

impl Default for StreamsConfig {
    fn default() -> Self {
        Self {
            watch_queue_capacity: 1024,
            max_watch_subscribers: 10_000,
            max_group_subscribers: 64,
            block: Duration::from_secs(5),
            read_batch: 512,
            slow_subscriber_timeout: Duration::from_secs(5),
            group_queue_capacity: 64,
            claim_min_idle: Duration::from_secs(30),
            max_deliveries: 5,
            idle_consumer_ttl: Duration::from_secs(3600),
            default_maxlen: 100_000,
            maxlen: std::collections::BTreeMap::new(),
        }
    }
}

/// The credit flow.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct CreditConfig {
    /// The WSP's custodian id, sent in every request (`custodian`, std).
    pub custodian: String,
    /// Exchange role: assets it accepts requests for; requests for others
    /// are rejected by the gateway (`ASSET_NOT_ALLOWED`). Empty: all.
    pub asset_allowlist: Vec<String>,
    /// Longest `wait` a RequestCredit call may ask for; longer waits are
    /// cut to this (and always to the call's deadline).
    #[serde(with = "humantime_serde")]
    pub max_wait: Duration,
    /// RequestCredit calls waiting for a decision at once, per process;
    /// more answer RESOURCE_EXHAUSTED before anything is written.
    pub max_waiters: usize,
    /// Exchange role: how long its record of an answer
    /// (`mirror:credit:answer:<id>` on R) is kept after the answer. A
    /// repeated RespondToCreditRequest within this time returns the first
    /// answer. The record of a delivered request that is not answered yet
    /// is kept until it is.
    #[serde(with = "humantime_serde")]
    pub answer_retention: Duration,
    /// WSP role: how long the record of a decided request
    /// (`mirror:credit:req:<id>` on M) is kept: the idempotency window of
    /// RequestCredit. A retry after it creates a new request. Undecided
    /// requests are kept until decided.
    #[serde(with = "humantime_serde")]
    pub request_retention: Duration,
    /// Exchange role: the consumer groups SubscribeCreditRequests may join.
    /// A new group starts from the beginning of the request stream, so an
    /// unknown name is refused rather than created.
    pub consumer_groups: Vec<String>,
    /// WSP role: how often the sweeper checks that every undecided request
    /// still has its entry in the request stream (publishing it again if a
    /// foreign trim removed it) and whether a response gap is resolved.
    #[serde(with = "humantime_serde")]
    pub sweep_interval: Duration,
    /// WSP role: a response entry on R larger than this (all names and
    /// values) is not applied: it is recorded as an anomaly and skipped.
    pub max_response_bytes: usize,
}

impl Default for CreditConfig {
    fn default() -> Self {
        Self {
            custodian: "openoes-wsp".into(),
            asset_allowlist: Vec::new(),
            max_wait: Duration::from_secs(30),
            max_waiters: 10_000,
            answer_retention: Duration::from_secs(7 * 24 * 3600),
            request_retention: Duration::from_secs(30 * 24 * 3600),
            consumer_groups: vec!["credit-request-processor".into()],
            sweep_interval: Duration::from_secs(30),
            max_response_bytes: 64 * 1024,
        }
    }
}

/// The custody vault and pledges.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct PledgeConfig {
    /// Refuse CreditService.RequestCredit for a (user, asset) that has a
    /// vault (CREDIT_MANAGED_BY_PLEDGES): its credit then moves only through
    /// pledges and releases, so the vault invariant (locked = CI + pending
    /// pledges) cannot be broken by a direct change. Off only where credit
    /// and custody are reconciled elsewhere.
    pub exclusive_credit: bool,
}

impl Default for PledgeConfig {
    fn default() -> Self {
        Self {
            exclusive_credit: true,
        }
    }
}

/// Settlement: reports, verdicts, signed cycles.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct SettlementConfig {
    /// Exchange role: its Ed25519 key file (`openoes keys generate`); it
    /// signs every closed cycle's checkpoint. Empty: CloseSettlementCycle
    /// answers FAILED_PRECONDITION (SIGNING_KEY_NOT_CONFIGURED). A key that
    /// cannot be read fails start-up.
    pub exchange_key_file: String,
    /// WSP role: its Ed25519 key file; it countersigns a verified cycle's
    /// checkpoint once every report is decided. Empty: cycles are verified
    /// but never countersigned.
    pub wsp_key_file: String,
    /// WSP role: the exchange's verifier key (C2SP vkey), which every
    /// cycle's checkpoint must be signed with; a cycle that is not is
    /// MISMATCH. Empty: the key of `exchange_key_file` if this gateway has
    /// it (both roles), else every closed cycle is MISMATCH.
    pub exchange_vkey: String,
    /// Exchange role: the WSP's verifier key, for GetSigningKeys. Empty:
    /// the key of `wsp_key_file` if this gateway has it.
    pub wsp_vkey: String,
    /// Longest `wait` a SubmitSettlementReport or CloseSettlementCycle may
    /// ask for (always cut to the call's deadline too).
    #[serde(with = "humantime_serde")]
    pub max_wait: Duration,
    /// Calls waiting for the WSP's record at once, per process; more
    /// answer RESOURCE_EXHAUSTED before anything is written.
    pub max_waiters: usize,
    /// WSP role: a report entry on R larger than this (all names and
    /// values) is refused unread.
    pub max_report_bytes: usize,
    /// Most reports one cycle may have when it is closed (the tree is
    /// built in memory: 100 bytes or so a report).
    pub max_cycle_reports: usize,
    /// Exchange role: how long its record of a published report (on R) is
    /// kept: the idempotency window of SubmitSettlementReport before the
    /// WSP records it (after, the WSP's record answers, for good).
    #[serde(with = "humantime_serde")]
    pub submission_retention: Duration,
    /// WSP role: confirmations older than this are trimmed from
    /// mirror:settlement:confirmation on M (the exchange has no cursor the
    /// WSP can see: it must read them within this time; every verdict also
    /// stays in its report's record).
    #[serde(with = "humantime_serde")]
    pub confirmation_retention: Duration,
    /// WSP role: how long a refused report's record is kept (refusals of
    /// a hostile stream must not grow M for good).
    #[serde(with = "humantime_serde")]
    pub refused_retention: Duration,
    /// WSP role: how often cycles due for the countersignature are checked
    /// (a verdict countersigns at once; this catches a gateway that died
    /// in between).
    #[serde(with = "humantime_serde")]
    pub sweep_interval: Duration,
    /// Closed cycles' trees kept in memory for GetSettlementProof.
    pub cached_trees: usize,
}

impl Default for SettlementConfig {
    fn default() -> Self {
        Self {
            exchange_key_file: String::new(),
            wsp_key_file: String::new(),
            exchange_vkey: String::new(),
            wsp_vkey: String::new(),
            max_wait: Duration::from_secs(30),
            max_waiters: 10_000,
            max_report_bytes: 64 * 1024,
            max_cycle_reports: 1_000_000,
            submission_retention: Duration::from_secs(30 * 24 * 3600),
            confirmation_retention: Duration::from_secs(30 * 24 * 3600),
            refused_retention: Duration::from_secs(7 * 24 * 3600),
            sweep_interval: Duration::from_secs(5),
            cached_trees: 4,
        }
    }
}

/// Swap quotes.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct QuoteConfig {
    /// WatchQuote streams per process; more answer RESOURCE_EXHAUSTED.
    /// Each recomputes its quote when a pool it considered changes.
    pub max_watchers: usize,
    /// WatchQuote recomputes running at once (per process): a burst of
    /// pool writes costs at most this many quotes' CPU and Redis reads at
    /// a time, beside the unary calls. Others wait, and changes that
    /// arrive meanwhile fold into one recompute.
    pub max_concurrent_recomputes: usize,
    /// Reads of a pool's bins per quote (Redis round trips). Bounds the
    /// Redis work one quote over a dense token graph can cause.
    pub max_pool_reads_per_quote: usize,
    /// Swaps priced per quote (one per hop of every candidate route
    /// prefix). Bounds CPU on graphs with many parallel pools.
    pub max_swaps_per_quote: usize,
    /// Bins per quote, read from Redis plus walked by the swap math
    /// (64 pools x 5,000 bins took 1.4 s unbounded).
    pub max_bins_per_quote: usize,
    /// Most bins one hop may walk; a swap needing more is insufficient
    /// liquidity at that pool.
    pub max_bins_per_hop: usize,
    /// Bins per UpsertPool / UpsertBins call (and per `pools load` file).
    /// One call is one Lua script on Redis, which blocks every other client
    /// while it runs: this keeps each script to a few milliseconds.
    pub max_bins_per_write: usize,
    /// Non-empty bins one pool may hold, and so the most a full snapshot
    /// may carry. A snapshot bigger than `max_bins_per_write` is staged in
    /// slices of that size and made the pool's in one O(1) step (atomic to
    /// quotes, no long script).
    pub max_bins_per_pool: usize,
    /// Bins of pools kept in memory for quotes (about 16 bytes each plus
    /// a pool's configuration per page): a quote reads memory while the
    /// change stream keeps it current (`quote::cache`). Past it,
    /// everything is dropped and reloaded on demand; 0 reads Redis on
    /// every quote.
    pub max_cached_bins: usize,
}

impl Default for QuoteConfig {
    fn default() -> Self {
        Self {
            max_watchers: 1024,
            max_concurrent_recomputes: 4,
            max_pool_reads_per_quote: 512,
            max_swaps_per_quote: 20_000,
            max_bins_per_quote: 200_000,
            max_bins_per_hop: 4096,
            max_bins_per_write: 1_000,
            max_bins_per_pool: 20_000,
            max_cached_bins: 1_000_000,
        }
    }
}

/// Signed attestations: the issuer's keys, what credentials say, and the
/// bounds of the processor that issues them.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct AttestationConfig {
    /// The issuer's Ed25519 key file (`openoes keys generate`), the active
    /// key: it signs every new credential. Empty: no key, and the service
    /// answers FAILED_PRECONDITION (ISSUER_KEY_NOT_CONFIGURED) rather than
    /// invent one. A key that cannot be read fails start-up.
    pub key_file: String,
    /// Earlier issuer key files: their credentials still verify and their
    /// status lists are still signed (a status list is signed by the key of
    /// the credentials it covers, so verifiers can match the issuers), but
    /// no new credential uses them.
    pub retired_key_files: Vec<String>,
    /// How long a credential is valid after its verification (`validUntil`
    /// = `verified_at` + this), unless its did type says otherwise.
    #[serde(with = "humantime_serde")]
    pub default_validity: Duration,
    /// The did types results may name, with their `did_id` (the code
    /// existing producers send) and validity. Empty: any did type, and a
    /// result's did type and did_id are the same string. Not empty: an
    /// allow-list; a result of another did type is dead-lettered.
    pub did_types: Vec<DidType>,
    /// Prefix of every status list's URL (the list id follows it): what
    /// credentials name as `statusListCredential`. A URN by default; an
    /// `https://` prefix where the lists are published for verifiers.
    pub status_list_url: String,
    /// Entries per status list, in bits: at least the spec's 131,072 (16
    /// KiB, so a list hides which credential a verifier checks), a multiple
    /// of 8. A full list is followed by a new one.
    pub status_list_size: usize,
    /// Status list indexes a processor reserves per round trip to Redis.
    /// At most this many stay unused per gateway stop (unused bits are
    /// harmless).
    pub index_block: usize,
    /// Results a gateway attests at once (signing and the issuing script in
    /// flight).
    pub concurrency: usize,
    /// A result entry larger than this (all names and values) is
    /// dead-lettered unread: producers are another party.
    pub max_entry_bytes: usize,
    /// How long SubmitVerification remembers a request_id whose result is
    /// not attested yet (once attested, the attestation itself answers
    /// repeats, for good).
    #[serde(with = "humantime_serde")]
    pub request_retention: Duration,
    /// Approximate MAXLEN of the attestation event log. Each event carries
    /// its attestation (about 2 KB), so this bounds the log's memory
    /// (10,000: about 20 MB) and how far back a watch can resume.
    pub events_maxlen: usize,
}

impl Default for AttestationConfig {
    fn default() -> Self {
        Self {
            key_file: String::new(),
            retired_key_files: Vec::new(),
            default_validity: Duration::from_secs(365 * 24 * 3600),
            did_types: Vec::new(),
            status_list_url: "urn:openoes:status-list:".into(),
            status_list_size: 131_072,
            index_block: 64,
            concurrency: 16,
            max_entry_bytes: 16 * 1024,
            request_retention: Duration::from_secs(30 * 24 * 3600),
            events_maxlen: 10_000,
        }
    }
}

/// One did type results may name.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DidType {
    /// Its name, the `did_type` field (and SubmitVerification's).
    pub name: String,
    /// Its code, the `did_id` field existing producers send.
    pub did_id: String,
    /// How long its credentials are valid; `default_validity` if unset.
    #[serde(default, with = "humantime_serde")]
    pub validity: Option<Duration>,
}

/// How health follows Redis.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct HealthConfig {
    /// Time between PINGs of each endpoint. With `probe_timeout` this bounds
    /// how long an outage goes unnoticed: at most interval + timeout.
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// A PING not answered within this counts as Redis down.
    #[serde(with = "humantime_serde")]
    pub probe_timeout: Duration,
}

impl Default for HealthConfig {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(1),
            probe_timeout: Duration::from_millis(500),
        }
    }
}

/// The Prometheus / OpenMetrics endpoint (`GET /metrics`) and the task
/// that samples the gauges of the link (replication, streams, backlogs).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsConfig {
    /// Address of the HTTP listener, apart from the gRPC port (so a scraper
    /// needs no gRPC credentials and a mesh's gRPC policy never applies to
    /// it). Unset: no endpoint and no sampler. Its output names no user,
    /// request or principal, but shows load and backlog: keep it on a
    /// private network.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<SocketAddr>,
    /// Time between two samples of the gauges (each a handful of Redis
    /// commands per endpoint). Also how often a WSP gateway writes the
    /// link heartbeat on M: the age an exchange sees on R is at least this.
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// Longest one probe (connect + its commands on one endpoint) may take;
    /// a probe that times out counts as a failed sample, so a black-holed
    /// Redis never stalls the other gauges for more than this.
    #[serde(with = "humantime_serde")]
    pub probe_timeout: Duration,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            listen: None,
            interval: Duration::from_secs(5),
            probe_timeout: Duration::from_secs(1),
        }
    }
}

/// How the process stops on SIGINT or SIGTERM.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ShutdownConfig {
    /// Time to keep serving after health turns NOT_SERVING, so load
    /// balancers and meshes stop sending new calls before the listener
    /// closes.
    #[serde(with = "humantime_serde")]
    pub drain_delay: Duration,
    /// Time in-flight calls get to finish once the listener is closed;
    /// then the process exits anyway.
    #[serde(with = "humantime_serde")]
    pub grace_period: Duration,
}

impl Default for ShutdownConfig {
    fn default() -> Self {
        Self {
            drain_delay: Duration::ZERO,
            grace_period: Duration::from_secs(10),
        }
    }
}

/// Logging.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// `human` for terminals, `json` for log pipelines.
    pub format: LogFormat,
    /// A tracing filter, e.g. `info` or `info,openoes=debug`.
    pub filter: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: LogFormat::Human,
            filter: "info".into(),
        }
    }
}

/// Log line format.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Readable lines for a terminal.
    Human,
    /// One JSON object per line.
    Json,
}

/// Why the configuration could not be loaded. Every message names the field.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file named by `--config` does not exist.
    #[error("config file {0} does not exist")]
    MissingFile(String),
    /// A value could not be parsed (figment's message names the key and
    /// where it came from: file or environment variable).
    #[error("invalid configuration")]
    Parse(#[from] Box<figment::Error>),
    /// A value parsed but is not allowed.
    #[error("invalid configuration: `{field}` {reason}")]
    Invalid {
        /// Dotted path of the field, e.g. `redis.pool_size`.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
}

impl Config {
    /// Loads defaults, then `file` (if any), then `OPENOES__*` variables,
    /// and validates the result.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(file) = file {
            if !file.is_file() {
                return Err(ConfigError::MissingFile(file.display().to_string()));
            }
            figment = figment.merge(Toml::file_exact(file));
        }
        figment = figment.merge(Env::prefixed(ENV_PREFIX).split("__"));
        let mut config: Config = figment.extract().map_err(Box::new)?;
        config.read_password_files()?;
        config.validate()?;
        Ok(config)
    }

    /// Reads each `password_file` into its `password` (the file wins only
    /// if the password is empty: both set is an error).
    pub fn read_password_files(&mut self) -> Result<(), ConfigError> {
        let redis = &mut self.redis;
        for (field, password, file) in [
            (
                "redis.master.password_file",
                &mut redis.master.password,
                &redis.master.password_file,
            ),
            (
                "redis.replica.password_file",
                &mut redis.replica.password,
                &redis.replica.password_file,
            ),
            (
                "redis.replica_reader.password_file",
                &mut redis.replica_reader.password,
                &redis.replica_reader.password_file,
            ),
        ] {
            if file.is_empty() {
                continue;
            }
            if !password.expose().is_empty() {
                return Err(ConfigError::Invalid {
                    field,
                    reason: "and the password are both set: keep one".into(),
                });
            }
            let text = std::fs::read_to_string(file).map_err(|e| ConfigError::Invalid {
                field,
                // The path and the OS error only: never the contents.
                reason: format!("cannot be read ({file}): {e}"),
            })?;
            *password = Secret::new(text.trim_end_matches(['\n', '\r']));
        }
        Ok(())
    }

    /// Checks what serde cannot: ranges, non-empty lists, parseable URLs.
    pub fn validate(&self) -> Result<(), ConfigError> {
        fn invalid(field: &'static str, reason: impl Into<String>) -> ConfigError {
            ConfigError::Invalid {
                field,
                reason: reason.into(),
            }
        }
        let positive = [
            ("grpc.keepalive_interval", self.grpc.keepalive_interval),
            ("grpc.keepalive_timeout", self.grpc.keepalive_timeout),
            ("grpc.request_timeout", self.grpc.request_timeout),
            ("grpc.handshake_timeout", self.grpc.handshake_timeout),
            ("redis.connect_timeout", self.redis.connect_timeout),
            ("redis.pool_timeout", self.redis.pool_timeout),
            ("redis.command_timeout", self.redis.command_timeout),
            ("streams.block", self.streams.block),
            (
                "streams.slow_subscriber_timeout",
                self.streams.slow_subscriber_timeout,
            ),
            ("health.interval", self.health.interval),
            ("metrics.interval", self.metrics.interval),
            ("metrics.probe_timeout", self.metrics.probe_timeout),
            ("credit.answer_retention", self.credit.answer_retention),
            ("credit.request_retention", self.credit.request_retention),
            ("credit.sweep_interval", self.credit.sweep_interval),
            ("redis.durability.timeout", self.redis.durability.timeout),
            ("health.probe_timeout", self.health.probe_timeout),
            ("shutdown.grace_period", self.shutdown.grace_period),
            (
                "settlement.submission_retention",
                self.settlement.submission_retention,
            ),
            (
                "settlement.confirmation_retention",
                self.settlement.confirmation_retention,
            ),
            (
                "settlement.refused_retention",
                self.settlement.refused_retention,
            ),
            ("settlement.sweep_interval", self.settlement.sweep_interval),
        ];
        for (field, value) in positive {
            if value.is_zero() {
                return Err(invalid(field, "must be greater than zero"));
            }
        }
        if self.roles.is_empty() {
            return Err(invalid(
                "roles",
                "must name at least one of \"wsp\", \"exchange\"",
            ));
        }
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&self.log.filter) {
            return Err(invalid("log.filter", format!("is not a valid filter: {e}")));
        }
        if self.redis.pool_size == 0 {
            return Err(invalid("redis.pool_size", "must be at least 1"));
        }
        if self.redis.shared_connections == 0 {
            return Err(invalid("redis.shared_connections", "must be at least 1"));
        }
        for (field, value) in [
            (
                "streams.watch_queue_capacity",
                self.streams.watch_queue_capacity,
            ),
            (
                "streams.max_watch_subscribers",
                self.streams.max_watch_subscribers,
            ),
            (
                "streams.max_group_subscribers",
                self.streams.max_group_subscribers,
            ),
            ("quote.max_watchers", self.quote.max_watchers),
            (
                "quote.max_concurrent_recomputes",
                self.quote.max_concurrent_recomputes,
            ),
            (
                "quote.max_pool_reads_per_quote",
                self.quote.max_pool_reads_per_quote,
            ),
            ("quote.max_swaps_per_quote", self.quote.max_swaps_per_quote),
            ("quote.max_bins_per_quote", self.quote.max_bins_per_quote),
            ("quote.max_bins_per_hop", self.quote.max_bins_per_hop),
            ("quote.max_bins_per_write", self.quote.max_bins_per_write),
            ("quote.max_bins_per_pool", self.quote.max_bins_per_pool),
            ("streams.read_batch", self.streams.read_batch),
            (
                "streams.group_queue_capacity",
                self.streams.group_queue_capacity,
            ),
            (
                "streams.max_deliveries",
                self.streams.max_deliveries as usize,
            ),
        ] {
            if value == 0 {
                return Err(invalid(field, "must be at least 1"));
            }
        }
        if self.credit.max_waiters == 0 {
            return Err(invalid("credit.max_waiters", "must be at least 1"));
        }
        if self.streams.max_deliveries < 2 {
            // The delivery that reaches the limit is rejected; with 1, every
            // request would be rejected on its first delivery.
            return Err(invalid(
                "streams.max_deliveries",
                "must be at least 2 (the delivery that reaches it is rejected)",
            ));
        }
        if self.credit.max_response_bytes < 1024 {
            return Err(invalid(
                "credit.max_response_bytes",
                "must be at least 1024",
            ));
        }
        if self.credit.consumer_groups.is_empty()
            || !self.credit.consumer_groups.iter().all(|g| is_valid_id(g))
        {
            return Err(invalid(
                "credit.consumer_groups",
                format!("must name at least one group; each {ID_RULE}"),
            ));
        }
        if !is_valid_id(&self.credit.custodian) {
            return Err(invalid("credit.custodian", ID_RULE));
        }
        if !self.credit.asset_allowlist.iter().all(|a| is_valid_id(a)) {
            return Err(invalid("credit.asset_allowlist", ID_RULE));
        }
        if self.streams.maxlen.values().any(|n| *n == 0) {
            return Err(invalid("streams.maxlen", "every length must be at least 1"));
        }
        self.validate_attestation()?;
        self.validate_auth()?;
        if self.grpc.max_concurrent_streams == 0 {
            return Err(invalid("grpc.max_concurrent_streams", "must be at least 1"));
        }
        if self.grpc.max_message_bytes < 1024 {
            return Err(invalid("grpc.max_message_bytes", "must be at least 1024"));
        }
        for (field, value) in [
            (
                "grpc.max_read_message_bytes",
                self.grpc.max_read_message_bytes,
            ),
            (
                "grpc.max_stream_message_bytes",
                self.grpc.max_stream_message_bytes,
            ),
        ] {
            if value < 1024 || value > self.grpc.max_message_bytes {
                return Err(invalid(
                    field,
                    "must be from 1024 to grpc.max_message_bytes",
                ));
            }
        }
        if self.grpc.max_header_list_bytes < 1024 {
            return Err(invalid(
                "grpc.max_header_list_bytes",
                "must be at least 1024",
            ));
        }
        if self.grpc.max_connections == 0 {
            return Err(invalid("grpc.max_connections", "must be at least 1"));
        }
        for (field, endpoint) in [
            ("redis.master.url", &self.redis.master),
            ("redis.replica.url", &self.redis.replica),
        ] {
            redis::IntoConnectionInfo::into_connection_info(endpoint.url.as_str())
                .map_err(|e| invalid(field, format!("is not a Redis URL: {e}")))?;
        }
        Ok(())
    }

    fn validate_auth(&self) -> Result<(), ConfigError> {
        fn invalid(field: &'static str, reason: impl Into<String>) -> ConfigError {
            ConfigError::Invalid {
                field,
                reason: reason.into(),
            }
        }
        let auth = &self.auth;
        let mut names = std::collections::HashSet::new();
        for t in &auth.tokens {
            if !is_valid_id(&t.name) || !names.insert(t.name.as_str()) {
                return Err(invalid(
                    "auth.tokens",
                    format!("names must be unique; each {ID_RULE}"),
                ));
            }
            let hex = t.sha256.len() == 64
                && t.sha256
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
            if !hex {
                return Err(invalid(
                    "auth.tokens",
                    format!(
                        "{:?}: sha256 must be 64 lowercase hex digits (`openoes tokens create` prints it)",
                        t.name
                    ),
                ));
            }
            if t.roles.is_empty() {
                return Err(invalid(
                    "auth.tokens",
                    format!("{:?} must have at least one role", t.name),
                ));
            }
        }
        let mut hashes = std::collections::HashSet::new();
        if !auth.tokens.iter().all(|t| hashes.insert(&t.sha256)) {
            return Err(invalid("auth.tokens", "two entries have the same sha256"));
        }
        let mut sans = std::collections::HashSet::new();
        for c in &auth.clients {
            if !is_valid_id(&c.name) || !names.insert(c.name.as_str()) {
                return Err(invalid(
                    "auth.clients",
                    format!("names must be unique among tokens and clients; each {ID_RULE}"),
                ));
            }
            if c.san.is_empty() || c.san.len() > 1024 || !sans.insert(c.san.as_str()) {
                return Err(invalid(
                    "auth.clients",
                    format!("{:?}: san must be set, unique, at most 1024 bytes", c.name),
                ));
            }
            if c.roles.is_empty() {
                return Err(invalid(
                    "auth.clients",
                    format!("{:?} must have at least one role", c.name),
                ));
            }
        }
        let tls = &self.grpc.tls;
        if tls.enabled() == tls.key_file.is_empty() {
            return Err(invalid(
                "grpc.tls",
                "cert_file and key_file go together: set both or neither",
            ));
        }
        if !tls.client_ca_file.is_empty() && !tls.enabled() {
            return Err(invalid(
                "grpc.tls.client_ca_file",
                "needs cert_file and key_file",
            ));
        }
        if tls.require_client_cert && tls.client_ca_file.is_empty() {
            return Err(invalid(
                "grpc.tls.require_client_cert",
                "needs client_ca_file (the CA client certificates chain to)",
            ));
        }
        if !auth.clients.is_empty() && tls.client_ca_file.is_empty() {
            return Err(invalid(
                "auth.clients",
                "need grpc.tls.client_ca_file: without it no client certificate is asked for",
            ));
        }
        if auth.mode == Some(AuthMode::Enforce) && auth.tokens.is_empty() && auth.clients.is_empty()
        {
            return Err(invalid(
                "auth",
                "mode = \"enforce\" with no tokens and no clients lets nobody in; add [[auth.tokens]] (`openoes tokens create`) or [[auth.clients]]",
            ));
        }
        let r = &self.rate_limit;
        for (field, value) in [
            ("rate_limit.read_per_second", r.read_per_second),
            ("rate_limit.write_per_second", r.write_per_second),
            ("rate_limit.stream_per_second", r.stream_per_second),
            ("rate_limit.burst", r.burst),
        ] {
            if value == 0 || value > 1_000_000 {
                return Err(invalid(field, "must be from 1 to 1000000"));
            }
        }
        if r.max_streams_per_principal == 0 {
            return Err(invalid(
                "rate_limit.max_streams_per_principal",
                "must be at least 1",
            ));
        }
        Ok(())
    }

    fn validate_attestation(&self) -> Result<(), ConfigError> {
        fn invalid(field: &'static str, reason: impl Into<String>) -> ConfigError {
            ConfigError::Invalid {
                field,
                reason: reason.into(),
            }
        }
        let a = &self.attestation;
        if a.default_validity.is_zero() {
            return Err(invalid(
                "attestation.default_validity",
                "must be greater than zero",
            ));
        }
        if a.request_retention.is_zero() {
            return Err(invalid(
                "attestation.request_retention",
                "must be greater than zero",
            ));
        }
        let size = a.status_list_size;
        if size < 131_072 || !size.is_multiple_of(8) || size > 16 * 8 * 1024 * 1024 {
            return Err(invalid(
                "attestation.status_list_size",
                "must be a multiple of 8 from 131072 (16 KiB) to 134217728 (16 MiB)",
            ));
        }
        for (field, value, max) in [
            ("attestation.index_block", a.index_block, 4096),
            ("attestation.concurrency", a.concurrency, 1024),
            ("attestation.events_maxlen", a.events_maxlen, usize::MAX),
        ] {
            if value == 0 || value > max {
                return Err(invalid(field, format!("must be from 1 to {max}")));
            }
        }
        if a.max_entry_bytes < 1024 {
            return Err(invalid(
                "attestation.max_entry_bytes",
                "must be at least 1024",
            ));
        }
        let url = &a.status_list_url;
        if url.is_empty()
            || !url.contains(':')
            || url
                .chars()
                .any(|c| c.is_whitespace() || c.is_control() || c == '#' || c == '?')
        {
            return Err(invalid(
                "attestation.status_list_url",
                "must be a URL prefix (e.g. \"urn:openoes:status-list:\" or \"https://issuer.example/status/\") without spaces, '#' or '?'",
            ));
        }
        let mut names = std::collections::HashSet::new();
        let mut codes = std::collections::HashSet::new();
        for t in &a.did_types {
            let rule = |s: &str| {
                (1..=64).contains(&s.len())
                    && s.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"._:-".contains(&b))
            };
            if !rule(&t.name) || !rule(&t.did_id) {
                return Err(invalid(
                    "attestation.did_types",
                    "each name and did_id must be 1-64 characters of [A-Za-z0-9._:-]",
                ));
            }
            if !names.insert(&t.name) || !codes.insert(&t.did_id) {
                return Err(invalid(
                    "attestation.did_types",
                    format!("names and did_ids must be unique ({:?} repeats)", t.name),
                ));
            }
            if t.validity.is_some_and(|v| v.is_zero()) {
                return Err(invalid(
                    "attestation.did_types",
                    "a validity must be greater than zero",
                ));
            }
        }
        if a.key_file.is_empty() && !a.retired_key_files.is_empty() {
            return Err(invalid(
                "attestation.retired_key_files",
                "needs an active key_file: retired keys sign nothing new",
            ));
        }
        Ok(())
    }

    /// True if this process serves `role`.
    pub fn serves(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }

    /// The effective configuration as TOML, secrets redacted.
    pub fn to_toml(&self) -> String {
        let mut shown = self.clone();
        for password in [
            &mut shown.redis.master.password,
            &mut shown.redis.replica.password,
            &mut shown.redis.replica_reader.password,
        ] {
            *password = Secret::new(password.redacted());
        }
        toml::to_string_pretty(&shown).unwrap_or_else(|e| format!("# cannot render config: {e}\n"))
    }
}
