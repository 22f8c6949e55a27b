//! Builds the tonic server (services, health, reflection, layers) and runs
//! it until a stop signal, then drains.
//!
//! Stop sequence, in this order and why:
//! 1. health turns NOT_SERVING for every service, so meshes and load
//!    balancers stop routing new calls here;
//! 2. the server keeps serving for `shutdown.drain_delay` while they notice;
//! 3. the listener closes and every open response stream ends with
//!    UNAVAILABLE ([`layers::DrainLayer`]), so streaming clients resume
//!    elsewhere by cursor;
//! 4. in-flight unary calls get `shutdown.grace_period` to finish; then the
//!    process exits anyway.

pub mod auth;
pub mod context;
pub mod health;
pub mod layers;
pub mod transport;

use std::{net::SocketAddr, sync::Arc, time::Duration};

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::{
    service::RoutesBuilder,
    transport::{Certificate, Identity, ServerTlsConfig, server::TcpIncoming},
};

pub use self::context::{Context, PlugIn, Plugged, RoleNotServed, RoleSlot};
use self::{
    auth::{
        layer::{AuthLayer, Gate},
        rate::{BudgetHome, RateLimiter},
    },
    health::{HealthMonitor, ServiceNeeds},
    layers::{DeadlineLayer, DrainLayer, MetricsLayer},
};
use crate::{
    config::{AuthMode, Config, ReflectionAccess, Role},
    proto,
    redis::{Redis, RedisError},
};

/// Why the server could not start or stopped on its own.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The Redis configuration is unusable.
    #[error("cannot set up redis")]
    Redis(#[from] RedisError),
    /// The reflection descriptors are broken (a build problem).
    #[error("cannot build the reflection service")]
    Reflection(#[from] tonic_reflection::server::Error),
    /// The transport failed.
    #[error("gRPC transport failed")]
    Transport(#[from] tonic::transport::Error),
    /// The listener's address could not be read.
    #[error("cannot read the listener address")]
    Listener(#[from] std::io::Error),
    /// The metrics listener could not be opened.
    #[error("cannot listen for metrics on {addr} (metrics.listen)")]
    MetricsListener {
        /// The address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The configuration would serve without the protection it needs; the
    /// message says how to fix it.
    #[error("{0}")]
    Insecure(String),
    /// A TLS file could not be read.
    #[error("cannot read {field} {path}")]
    TlsFile {
        /// The config field naming it.
        field: &'static str,
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// The secure defaults `serve` holds to: authentication must be
/// configured (on, or off explicitly), and plaintext is only for loopback
/// addresses unless `grpc.allow_plaintext` says a mesh terminates TLS.
pub fn check_security(config: &Config, addr: SocketAddr) -> Result<(), ServerError> {
    if config.auth.mode.is_none() {
        return Err(ServerError::Insecure(
            "auth.mode is not set: set `[auth] mode = \"enforce\"` with [[auth.tokens]] entries \
             (`openoes tokens create --name NAME --role ROLE`) or [[auth.clients]], \
             or `mode = \"off\"` if something in front of the gateway authenticates callers"
                .into(),
        ));
    }
    if !config.grpc.tls.enabled() && !addr.ip().is_loopback() && !config.grpc.allow_plaintext {
        return Err(ServerError::Insecure(format!(
            "refusing plaintext gRPC on {addr}, which is not a loopback address: set \
             grpc.tls.cert_file and grpc.tls.key_file, or `grpc.allow_plaintext = true` if a \
             mesh (an mTLS sidecar) terminates TLS in front of the gateway"
        )));
    }
    Ok(())
}

/// The listener's TLS settings, if `grpc.tls` turns TLS on.
fn tls_config(config: &Config) -> Result<Option<ServerTlsConfig>, ServerError> {
    let tls = &config.grpc.tls;
    if !tls.enabled() {
        return Ok(None);
    }
    let read = |field: &'static str, path: &str| {
        std::fs::read(path).map_err(|source| ServerError::TlsFile {
            field,
            path: path.into(),
            source,
        })
    };
    let identity = Identity::from_pem(
        read("grpc.tls.cert_file", &tls.cert_file)?,
        read("grpc.tls.key_file", &tls.key_file)?,
    );
    let mut server = ServerTlsConfig::new()
        .identity(identity)
        // Half-open TLS connections hold nothing for long.
        .timeout(config.grpc.handshake_timeout);
    if !tls.client_ca_file.is_empty() {
        server = server
            .client_ca_root(Certificate::from_pem(read(
                "grpc.tls.client_ca_file",
                &tls.client_ca_file,
            )?))
            .client_auth_optional(!tls.require_client_cert);
    }
    // tonic's rustls uses the process-wide provider; an Err only means one
    // is installed already.
    let _ = rustls::crypto::ring::default_provider().install_default();
    Ok(Some(server))
}

/// Serves `services` on `listener` until `stop_signal` resolves, then
/// drains (see the module docs) and returns. Starts even while Redis is
/// down: health says NOT_SERVING until it is reachable.
///
/// Each entry of `services` is one domain's [`PlugIn`]: it adds its gRPC
/// service to the routes and says which Redis endpoints its health needs;
/// the server as a whole (health service "") needs the link's.
pub async fn run(
    config: Config,
    listener: TcpListener,
    stop_signal: impl Future<Output = ()>,
    services: &[PlugIn],
) -> Result<(), ServerError> {
    let addr: SocketAddr = listener.local_addr()?;
    check_security(&config, addr)?;
    let tls = tls_config(&config)?;
    let redis = Redis::new(&config.redis)?;
    // Closes the listener, ends open streams (DrainLayer), stops background
    // readers and starts the grace period.
    let stop = CancellationToken::new();
    let ctx = Context::new(config, redis, stop.clone());
    let config = &ctx.config;

    let mut routes = RoutesBuilder::default();
    let mut needs: Vec<ServiceNeeds> = services
        .iter()
        .map(|plug_in| {
            let plugged = plug_in(&ctx, &mut routes);
            ServiceNeeds {
                service: plugged.name,
                endpoints: plugged.needs,
            }
        })
        .collect();
    // The server as a whole ("") is the OpenOES link of the roles served:
    // an exchange-only gateway is SERVING without the WSP's master, even
    // though services whose data lives on M are not.
    needs.insert(
        0,
        ServiceNeeds {
            service: "",
            endpoints: ctx.link_endpoints(),
        },
    );

    let (reporter, health_service) = tonic_health::server::health_reporter();
    // Liveness (a Kubernetes livenessProbe's `service`): SERVING while the
    // process answers at all, whatever Redis does and through the drain, so
    // an outage of Redis or a shutdown never restarts the pod. Readiness is
    // "" (and each service), which follows Redis.
    reporter
        .set_service_status(LIVENESS_SERVICE, tonic_health::ServingStatus::Serving)
        .await;
    // Ends the metrics listener and sampler however this function returns.
    let metrics_stop = CancellationToken::new();
    let _metrics_stop = metrics_stop.clone().drop_guard();
    if let Some(metrics_addr) = config.metrics.listen {
        start_metrics(&ctx, metrics_addr, &needs, metrics_stop).await?;
    }
    let monitor = HealthMonitor::new(
        reporter,
        ctx.redis.clone(),
        needs,
        config.health.clone(),
        ctx.health_flags.clone(),
    )
    .await
    .with_metrics(ctx.metrics.clone());
    let draining = CancellationToken::new();
    let monitor_task = tokio::spawn(monitor.run(draining.clone()));

    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            // google.rpc.ErrorInfo / BadRequest, so grpcurl can print error details.
            .register_encoded_file_descriptor_set(tonic_types::pb::FILE_DESCRIPTOR_SET)
    };
    routes.add_service(health_service);
    if config.auth.reflection != ReflectionAccess::Off {
        routes
            .add_service(reflection().build_v1()?)
            .add_service(reflection().build_v1alpha()?);
    }
    // Budgets live where this gateway writes: M for a WSP, R for an
    // exchange-only gateway.
    let limiter = config.rate_limit.enabled.then(|| {
        let (endpoint, home) = if ctx.serves(Role::Wsp) {
            (ctx.redis.master.clone(), BudgetHome::Master)
        } else {
            (ctx.redis.replica.clone(), BudgetHome::Replica)
        };
        RateLimiter::new(endpoint, home, config.rate_limit.clone())
    });
    let gate = Arc::new(Gate::new(config, limiter, &[proto::FILE_DESCRIPTOR_SET]));
    if config.auth.mode == Some(AuthMode::Off) {
        tracing::warn!("auth.mode = \"off\": anyone who reaches {addr} may call every RPC");
    }
    let incoming = transport::bounded(
        TcpIncoming::from(listener)
            .with_nodelay(Some(true))
            .with_keepalive(Some(config.grpc.keepalive_interval)),
        &config.grpc,
    );
    let mut server = tonic::transport::Server::builder();
    if let Some(tls) = tls {
        server = server.tls_config(tls)?;
    }
    let serve = server
        .http2_keepalive_interval(Some(config.grpc.keepalive_interval))
        .http2_keepalive_timeout(Some(config.grpc.keepalive_timeout))
        .max_concurrent_streams(config.grpc.max_concurrent_streams)
        .http2_max_header_list_size(config.grpc.max_header_list_bytes)
        // Outermost of all: refusals are counted too.
        .layer(MetricsLayer {
            methods: crate::metrics::KnownMethods::new(
                &ctx.metrics,
                &[
                    proto::FILE_DESCRIPTOR_SET,
                    tonic_health::pb::FILE_DESCRIPTOR_SET,
                ],
                &REFLECTION_METHODS,
            ),
        })
        // Outermost but metrics: a refused call costs nothing further, and
        // the audit line sees the deadline layer's answer too.
        .layer(AuthLayer { gate })
        .layer(DrainLayer { stop: stop.clone() })
        .layer(DeadlineLayer {
            max: config.grpc.request_timeout,
        })
        .add_routes(routes.routes())
        .serve_with_incoming_shutdown(incoming, stop.clone().cancelled_owned());
    tokio::pin!(serve);
    tracing::info!(%addr, roles = ?config.roles, tls = config.grpc.tls.enabled(), "serving gRPC");

    tokio::select! {
        result = &mut serve => {
            draining.cancel();
            return result.map_err(ServerError::from);
        }
        () = stop_signal => {}
    }

    tracing::info!(drain_delay = ?config.shutdown.drain_delay, "health NOT_SERVING; draining");
    draining.cancel();
    if let Err(e) = monitor_task.await {
        tracing::error!(error = %e, "health monitor task failed");
    }
    if !config.shutdown.drain_delay.is_zero() {
        tokio::select! {
            result = &mut serve => return result.map_err(ServerError::from),
            () = tokio::time::sleep(config.shutdown.drain_delay) => {}
        }
    }

    tracing::info!(grace_period = ?config.shutdown.grace_period, "closing listener, ending streams");
    stop.cancel();
    finish(serve, config.shutdown.grace_period).await
}
/// The reflection methods, labelled by name in metrics (their descriptors
/// are not in our set).
/// The health service name that is SERVING for as long as the process
/// answers (Kubernetes' livenessProbe asks for it; readiness asks for "").
pub const LIVENESS_SERVICE: &str = "liveness";

const REFLECTION_METHODS: [&str; 2] = [
    "grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
    "grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
];

/// Opens the metrics listener (failing start-up if it cannot) and starts
/// it and the sampler, both ending with `stop`.
async fn start_metrics(
    ctx: &Context,
    addr: SocketAddr,
    needs: &[ServiceNeeds],
    stop: CancellationToken,
) -> Result<(), ServerError> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| ServerError::MetricsListener { addr, source })?;
    let bound = listener.local_addr()?;
    tracing::info!(%bound, "serving metrics on http://{bound}/metrics");
    tokio::spawn(crate::metrics::http::serve(
        listener,
        ctx.metrics.clone(),
        stop.clone(),
    ));
    let mut endpoints: Vec<_> = needs.iter().flat_map(|n| n.endpoints.clone()).collect();
    endpoints.sort();
    endpoints.dedup();
    let sampler = crate::metrics::sampler::Sampler::new(
        ctx.metrics.clone(),
        ctx.redis.clone(),
        endpoints,
        ctx.serves(Role::Wsp),
        ctx.config.metrics.clone(),
    );
    tokio::spawn(sampler.run(stop));
    Ok(())
}

async fn finish(
    serve: impl Future<Output = Result<(), tonic::transport::Error>>,
    grace: Duration,
) -> Result<(), ServerError> {
    match tokio::time::timeout(grace, serve).await {
        Ok(result) => result?,
        Err(_) => tracing::warn!(
            ?grace,
            "grace period over with calls in flight; stopping anyway"
        ),
    }
    tracing::info!("stopped");
    Ok(())
}
