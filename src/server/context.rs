//! What every service is built from: one [`Context`], made once by the
//! server, and the one shape a domain plugs in with ([`PlugIn`]).

use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use tonic::{Code, Request, service::RoutesBuilder};

use super::{health::HealthFlags, layers::Call};
use crate::{
    config::{Config, Role},
    error::{RpcError, reason},
    metrics::Metrics,
    redis::{Endpoint, Redis},
    streams::{Pump, watch::WatchHub},
};

/// Everything a service may need, built once per server.
#[derive(Clone)]
pub struct Context {
    /// The configuration.
    pub config: Arc<Config>,
    /// Both Redis endpoints of the link.
    pub redis: Redis,
    /// The fan-out of streams on M: one reader per stream for the process.
    pub master_watches: WatchHub,
    /// The fan-out of streams on R, as the exchange role's user (readers
    /// start only when something is watched).
    pub replica_watches: WatchHub,
    /// Client `Watch*` streams (fan-out), limited together to
    /// `streams.max_watch_subscribers`.
    pub watch_pump: Pump,
    /// Client `Subscribe*` streams (consumer groups), limited together to
    /// `streams.max_group_subscribers`.
    pub group_pump: Pump,
    /// Services a domain holds NOT_SERVING, with the reason.
    pub health_flags: HealthFlags,
    /// Cancelled when the server stops: every background task ends with it.
    pub stop: CancellationToken,
    /// The server's metrics; domains register their probes here.
    pub metrics: Metrics,
}

impl Context {
    /// The context of a server over `redis`, stopping with `stop`.
    pub fn new(config: Config, redis: Redis, stop: CancellationToken) -> Self {
        let streams = &config.streams;
        let metrics = Metrics::new();
        for endpoint in [&redis.master, &redis.replica, &redis.replica_reader] {
            endpoint.time_commands(metrics.redis_command_latency(endpoint.name()));
        }
        let pump = |kind, limit| {
            Pump::new(kind, limit, streams.slow_subscriber_timeout, stop.clone())
                .with_metrics(&metrics)
        };
        Self {
            master_watches: WatchHub::new(redis.master.clone(), streams.clone(), stop.clone()),
            replica_watches: WatchHub::new(redis.replica.clone(), streams.clone(), stop.clone()),
            watch_pump: pump("watch", streams.max_watch_subscribers),
            group_pump: pump("consumer-group", streams.max_group_subscribers),
            redis,
            health_flags: HealthFlags::default(),
            stop,
            metrics,
            config: Arc::new(config),
        }
    }

    /// True if this gateway serves `role`.
    pub fn serves(&self, role: Role) -> bool {
        self.config.serves(role)
    }

    /// `make()` if this gateway serves `role`, behind the role check every
    /// RPC of that role goes through ([`RoleSlot::get`]).
    pub fn role<T>(&self, role: Role, make: impl FnOnce() -> T) -> RoleSlot<T> {
        RoleSlot {
            role,
            inner: self.serves(role).then(make),
        }
    }

    /// The endpoints the OpenOES link needs for the roles served: the WSP
    /// works on M and reads the exchange's streams on R; the exchange works
    /// on R only, so an exchange-only gateway stays SERVING without
    /// reaching the WSP's master.
    pub fn link_endpoints(&self) -> Vec<Endpoint> {
        let mut link = Vec::new();
        if self.serves(Role::Wsp) {
            link.extend([Endpoint::Master, Endpoint::Replica]);
        }
        if self.serves(Role::Exchange) && !link.contains(&Endpoint::Replica) {
            link.push(Endpoint::Replica);
        }
        link
    }

    /// Largest request message a service accepts, in bytes.
    pub fn max_message_bytes(&self) -> usize {
        self.config.grpc.max_message_bytes
    }
}

/// What a domain tells the server when it plugs in.
#[derive(Debug, Clone)]
pub struct Plugged {
    /// The gRPC service's fully-qualified name (health checks use it).
    pub name: &'static str,
    /// The Redis endpoints it cannot work without: its health is SERVING
    /// only while all of them are up.
    pub needs: Vec<Endpoint>,
}

/// The one constructor every domain exports: adds its gRPC service (with
/// its background work started) to `routes`.
pub type PlugIn = fn(&Context, &mut RoutesBuilder) -> Plugged;

/// State of one OpenOES role, present only if the gateway serves it.
#[derive(Clone)]
pub struct RoleSlot<T> {
    role: Role,
    inner: Option<T>,
}

impl<T> RoleSlot<T> {
    /// The role's state for an RPC of that role, or UNIMPLEMENTED
    /// (ROLE_NOT_SERVED) naming the RPC and the role.
    pub fn get<M>(&self, request: &Request<M>) -> Result<&T, RoleNotServed> {
        self.inner.as_ref().ok_or_else(|| RoleNotServed {
            rpc: Call::of(request).rpc,
            role: self.role,
        })
    }

    /// The role's state, if served (for work that is not an RPC).
    pub fn served(&self) -> Option<&T> {
        self.inner.as_ref()
    }
}

/// An RPC of a role this gateway does not serve.
#[derive(Debug, thiserror::Error)]
#[error(
    "{rpc} belongs to the {} role, which this gateway does not serve (see `roles` in its config)",
    role_name(*role)
)]
pub struct RoleNotServed {
    /// Fully-qualified method.
    pub rpc: String,
    /// The role it needs.
    pub role: Role,
}

fn role_name(role: Role) -> &'static str {
    match role {
        Role::Wsp => "wsp",
        Role::Exchange => "exchange",
    }
}

impl RpcError for RoleNotServed {
    fn code(&self) -> Code {
        Code::Unimplemented
    }
    fn reason(&self) -> &'static str {
        reason::ROLE_NOT_SERVED
    }
}
