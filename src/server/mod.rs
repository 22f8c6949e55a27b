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

pub mod context;
pub mod health;
pub mod layers;

use std::{net::SocketAddr, time::Duration};

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::{service::RoutesBuilder, transport::server::TcpIncoming};

pub use self::context::{Context, PlugIn, Plugged, RoleNotServed, RoleSlot};
use self::{
    health::{HealthMonitor, ServiceNeeds},
    layers::{DeadlineLayer, DrainLayer},
};
use crate::{
    config::Config,
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
    let monitor = HealthMonitor::new(
        reporter,
        ctx.redis.clone(),
        needs,
        config.health.clone(),
        ctx.health_flags.clone(),
    )
    .await;
    let draining = CancellationToken::new();
    let monitor_task = tokio::spawn(monitor.run(draining.clone()));

    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            // google.rpc.ErrorInfo / BadRequest, so grpcurl can print error details.
            .register_encoded_file_descriptor_set(tonic_types::pb::FILE_DESCRIPTOR_SET)
    };
    routes
        .add_service(health_service)
        .add_service(reflection().build_v1()?)
        .add_service(reflection().build_v1alpha()?);
    let incoming = TcpIncoming::from(listener)
        .with_nodelay(Some(true))
        .with_keepalive(Some(config.grpc.keepalive_interval));
    let serve = tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(config.grpc.keepalive_interval))
        .http2_keepalive_timeout(Some(config.grpc.keepalive_timeout))
        .max_concurrent_streams(config.grpc.max_concurrent_streams)
        .layer(DrainLayer { stop: stop.clone() })
        .layer(DeadlineLayer {
            max: config.grpc.request_timeout,
        })
        .add_routes(routes.routes())
        .serve_with_incoming_shutdown(incoming, stop.clone().cancelled_owned());
    tokio::pin!(serve);
    tracing::info!(%addr, roles = ?config.roles, "serving gRPC");

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
