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

pub mod health;
pub mod layers;

use std::{net::SocketAddr, time::Duration};

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::{server::NamedService, transport::server::TcpIncoming};

use self::{
    health::{HealthMonitor, ServiceNeeds},
    layers::{DeadlineLayer, DrainLayer},
};
use crate::{
    attestation::AttestationApi,
    config::{Config, Role},
    credit::CreditApi,
    pledge::PledgeApi,
    proto::{
        self, attestation::v1::attestation_service_server::AttestationServiceServer,
        credit::v1::credit_service_server::CreditServiceServer,
        pledge::v1::pledge_service_server::PledgeServiceServer,
        quote::v1::quote_service_server::QuoteServiceServer,
        settlement::v1::settlement_service_server::SettlementServiceServer,
    },
    quote::QuoteApi,
    redis::{Endpoint, Redis, RedisError},
    settlement::SettlementApi,
    streams::watch::WatchHub,
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

/// The names of the five OpenOES services, as health and reflection know them.
pub const SERVICE_NAMES: [&str; 5] = [
    <CreditServiceServer<CreditApi> as NamedService>::NAME,
    <PledgeServiceServer<PledgeApi> as NamedService>::NAME,
    <SettlementServiceServer<SettlementApi> as NamedService>::NAME,
    <QuoteServiceServer<QuoteApi> as NamedService>::NAME,
    <AttestationServiceServer<AttestationApi> as NamedService>::NAME,
];

/// Which Redis endpoints each service (and the server as a whole, "")
/// needs, given the roles served. The WSP role works on M and reads the
/// exchange's responses on R; the exchange role works on R only, so an
/// exchange-only gateway stays SERVING without reaching the WSP's master.
/// Pledge, quote and attestation data live on M.
pub fn service_needs(config: &Config) -> Vec<ServiceNeeds> {
    use Endpoint::{Master, Replica};
    let mut link = Vec::new();
    if config.serves(Role::Wsp) {
        link.extend([Master, Replica]);
    }
    if config.serves(Role::Exchange) && !link.contains(&Replica) {
        link.push(Replica);
    }
    let [credit, pledge, settlement, quote, attestation] = SERVICE_NAMES;
    vec![
        ServiceNeeds {
            service: "",
            endpoints: link.clone(),
        },
        ServiceNeeds {
            service: credit,
            endpoints: link.clone(),
        },
        ServiceNeeds {
            service: settlement,
            endpoints: link,
        },
        ServiceNeeds {
            service: pledge,
            endpoints: vec![Master],
        },
        ServiceNeeds {
            service: quote,
            endpoints: vec![Master],
        },
        ServiceNeeds {
            service: attestation,
            endpoints: vec![Master],
        },
    ]
}

/// Serves on `listener` until `stop_signal` resolves, then drains (see the
/// module docs) and returns. Starts even while Redis is down: health says
/// NOT_SERVING until it is reachable.
pub async fn run(
    config: Config,
    listener: TcpListener,
    stop_signal: impl Future<Output = ()>,
) -> Result<(), ServerError> {
    let addr: SocketAddr = listener.local_addr()?;
    let redis = Redis::new(&config.redis)?;

    let (reporter, health_service) = tonic_health::server::health_reporter();
    let monitor = HealthMonitor::new(
        reporter,
        redis.clone(),
        service_needs(&config),
        config.health.clone(),
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
    let max = config.grpc.max_message_bytes;
    // Closes the listener, ends open streams (DrainLayer), stops background
    // readers and starts the grace period.
    let stop = CancellationToken::new();
    // One fan-out per Redis for every Watch* stream on it.
    let master_watches = WatchHub::new(redis.master.clone(), config.streams.clone(), stop.clone());
    let credit = CreditApi::start(&config, &redis, &master_watches, &stop);
    let quote = QuoteApi::start(
        redis.master.clone(),
        &config.streams,
        master_watches,
        stop.clone(),
    );
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
        .add_service(health_service)
        .add_service(reflection().build_v1()?)
        .add_service(reflection().build_v1alpha()?)
        .add_service(CreditServiceServer::new(credit).max_decoding_message_size(max))
        .add_service(PledgeServiceServer::new(PledgeApi).max_decoding_message_size(max))
        .add_service(SettlementServiceServer::new(SettlementApi).max_decoding_message_size(max))
        .add_service(QuoteServiceServer::new(quote).max_decoding_message_size(max))
        .add_service(AttestationServiceServer::new(AttestationApi).max_decoding_message_size(max))
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
