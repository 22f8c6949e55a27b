//! grpc.health.v1 statuses that follow Redis.
//!
//! One task PINGs each Redis endpoint in use every `health.interval`, on a
//! connection of its own (so an exhausted pool never looks like an outage),
//! and sets:
//! - each endpoint's up/down flag, which makes RPCs fail fast while it is down;
//! - each gRPC service's status: SERVING iff every endpoint it needs is up
//!   (the overall status, service name "", is one entry of that table).
//!
//! A service may also be held NOT_SERVING by its own domain, with a reason
//! ([`HealthFlags`]): e.g. credit while responses were lost on R.
//!
//! A failed or slow PING marks the endpoint down at once (money moves here:
//! better to refuse calls than to let them hang), and the first good PING
//! marks it up again. Outage detection therefore takes at most
//! `interval + probe_timeout`.

use std::{
    collections::{BTreeSet, HashMap},
    sync::{Arc, Mutex},
};

use redis::aio::MultiplexedConnection;
use tokio_util::sync::CancellationToken;
use tonic_health::{ServingStatus, server::HealthReporter};

use crate::{
    config::HealthConfig,
    metrics::{Metrics, ServiceLabels},
    redis::{Endpoint, Reachability, Redis, RedisError},
};

/// A gRPC service and the Redis endpoints it cannot work without.
#[derive(Debug, Clone)]
pub struct ServiceNeeds {
    /// Fully-qualified service name, as health checks ask for it; "" for
    /// the server as a whole.
    pub service: &'static str,
    /// Endpoints that must be up for it to serve.
    pub endpoints: Vec<Endpoint>,
}

/// Reasons a domain holds its service NOT_SERVING, by service name.
#[derive(Clone, Default)]
pub struct HealthFlags(Arc<Mutex<HashMap<&'static str, String>>>);

impl HealthFlags {
    /// Holds `service` NOT_SERVING for `reason` (logged once per change).
    pub fn set(&self, service: &'static str, reason: &str) {
        if let Ok(mut flags) = self.0.lock()
            && flags.get(service).is_none_or(|r| r != reason)
        {
            tracing::error!(service, reason, "service held NOT_SERVING");
            flags.insert(service, reason.to_string());
        }
    }

    /// Releases `service`.
    pub fn clear(&self, service: &'static str) {
        if let Ok(mut flags) = self.0.lock()
            && flags.remove(service).is_some()
        {
            tracing::info!(service, "service no longer held NOT_SERVING");
        }
    }

    /// Why `service` is held NOT_SERVING, if it is.
    pub fn reason(&self, service: &str) -> Option<String> {
        self.0.lock().ok().and_then(|f| f.get(service).cloned())
    }
}

/// Keeps health statuses in step with Redis; see the module docs.
pub struct HealthMonitor {
    reporter: HealthReporter,
    redis: Redis,
    services: Vec<ServiceNeeds>,
    config: HealthConfig,
    flags: HealthFlags,
    /// `openoes_health_serving`, kept in step with every status set.
    metrics: Option<Metrics>,
}

impl HealthMonitor {
    /// A monitor for `services`; all start NOT_SERVING until the first probe.
    pub async fn new(
        reporter: HealthReporter,
        redis: Redis,
        services: Vec<ServiceNeeds>,
        config: HealthConfig,
        flags: HealthFlags,
    ) -> Self {
        let monitor = Self {
            reporter,
            redis,
            services,
            config,
            flags,
            metrics: None,
        };
        monitor.set_all(ServingStatus::NotServing).await;
        monitor
    }

    /// The same monitor, mirroring every status into `metrics`
    /// (`openoes_health_serving`; the server as a whole is `server`).
    pub fn with_metrics(mut self, metrics: Metrics) -> Self {
        for s in &self.services {
            Self::gauge(&metrics, s.service, ServingStatus::NotServing);
        }
        self.metrics = Some(metrics);
        self
    }

    fn gauge(metrics: &Metrics, service: &str, status: ServingStatus) {
        let service = if service.is_empty() {
            "server"
        } else {
            service
        };
        metrics
            .health_serving
            .get_or_create(&ServiceLabels {
                service: service.into(),
            })
            .set(i64::from(status == ServingStatus::Serving));
    }

    async fn publish(&self, service: &'static str, status: ServingStatus) {
        self.reporter.set_service_status(service, status).await;
        if let Some(metrics) = &self.metrics {
            Self::gauge(metrics, service, status);
        }
    }

    /// Probes until `draining` is cancelled, then sets every status to
    /// NOT_SERVING and returns. The caller awaits this before draining, so
    /// no late probe can flip a status back to SERVING.
    pub async fn run(self, draining: CancellationToken) {
        let endpoints: BTreeSet<Endpoint> = self
            .services
            .iter()
            .flat_map(|s| s.endpoints.iter().copied())
            .collect();
        let mut probes: HashMap<Endpoint, Option<MultiplexedConnection>> =
            endpoints.iter().map(|e| (*e, None)).collect();
        let mut last: HashMap<&'static str, ServingStatus> = HashMap::new();
        let mut ticker = tokio::time::interval(self.config.interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = draining.cancelled() => break,
                _ = ticker.tick() => {}
            }
            for (&endpoint, conn) in probes.iter_mut() {
                let target = self.redis.endpoint(endpoint);
                let result = self.probe(endpoint, conn).await;
                match (&result, target.reachability()) {
                    (Ok(()), Reachability::Down) => {
                        tracing::info!(%endpoint, "redis is reachable again");
                    }
                    (Ok(()), Reachability::Unknown) => {
                        tracing::info!(%endpoint, "redis is reachable")
                    }
                    (Err(e), Reachability::Up | Reachability::Unknown) => tracing::warn!(
                        %endpoint,
                        error = %crate::error::ErrorChain(e),
                        "redis is unreachable; failing calls fast until it returns"
                    ),
                    _ => {}
                }
                target.set_up(result.is_ok());
            }
            for s in &self.services {
                let up = s.endpoints.iter().all(|e| self.redis.endpoint(*e).is_up())
                    && self.flags.reason(s.service).is_none();
                let status = if up {
                    ServingStatus::Serving
                } else {
                    ServingStatus::NotServing
                };
                if last.insert(s.service, status) != Some(status) {
                    self.publish(s.service, status).await;
                }
            }
        }
        self.set_all(ServingStatus::NotServing).await;
    }

    /// One PING on the probe's own connection, (re)connecting if needed.
    /// Any failure drops the connection so the next probe starts afresh.
    async fn probe(
        &self,
        endpoint: Endpoint,
        conn: &mut Option<MultiplexedConnection>,
    ) -> Result<(), RedisError> {
        let timeout = self.config.probe_timeout;
        let attempt = async {
            let c = match conn {
                Some(c) => c,
                None => conn.insert(self.redis.endpoint(endpoint).dedicated(timeout).await?),
            };
            redis::cmd("PING")
                .query_async::<String>(c)
                .await
                .map(drop)
                .map_err(|e| RedisError::from_redis(endpoint, e))
        };
        // Bounds connect + PING together: a black-holed host must not stall
        // the loop past one probe timeout.
        let result = match tokio::time::timeout(timeout, attempt).await {
            Ok(result) => result,
            Err(_) => Err(RedisError::Unavailable {
                endpoint,
                source: None,
            }),
        };
        if result.is_err() {
            *conn = None;
        }
        result
    }

    async fn set_all(&self, status: ServingStatus) {
        for s in &self.services {
            self.publish(s.service, status).await;
        }
    }
}
