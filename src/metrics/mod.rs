//! Prometheus / OpenMetrics metrics: one [`Metrics`] per server, exposed on
//! its own listener ([`http`], `metrics.listen`), and the one task that
//! samples the gauges of the link ([`sampler`]).
//!
//! Three kinds of metric, kept apart by who updates them:
//!
//! - **per call**, updated as calls happen: requests by method and gRPC
//!   code, latency, calls in flight (`server::layers::MetricsLayer`);
//!   client streams open and cut off as too slow (`streams::Pump`); health
//!   per service (`server::health`);
//! - **sampled**, every `metrics.interval` by [`sampler::Sampler`], each
//!   probe bounded by `metrics.probe_timeout`: Redis up and pool use per
//!   endpoint, R's replication link, the offset lag M -> R in bytes, the age
//!   of the heartbeat a WSP gateway writes on M as seen on R, and the
//!   [`Probe`]s each domain registers (consumer-group lag, dead letters,
//!   response cursors, undecided requests);
//! - **static**: the build ([`Metrics::new`]).
//!
//! Label values come from closed sets only (method names of our own
//! descriptors, gRPC codes, endpoint names, stream and group names fixed by
//! code or config); never a user, request, principal or peer, so the
//! number of series is bounded whatever callers send.

pub mod http;
pub mod sampler;

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex, OnceLock},
};

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{
        counter::Counter,
        family::Family,
        gauge::Gauge,
        histogram::{Histogram, exponential_buckets},
        info::Info,
    },
    registry::{Registry, Unit},
};

use crate::redis::Endpoint;

/// The link heartbeat (ext): a WSP gateway with metrics on writes its clock
/// (unix ms) here on M every `metrics.interval`; replication carries it to
/// R, where every gateway reads it. Its age on R is the replication delay an
/// exchange actually sees (plus the clock difference of the two gateways
/// when they are different machines). Under `mirror:` so the shipped ACLs
/// cover it: `wsp` writes it on M; `exchange` and `wsp-reader` read it on R.
pub const HEARTBEAT_KEY: &str = "mirror:heartbeat";

/// Latency buckets of gRPC calls, seconds: 1 ms doubling to about 33 s (16
/// buckets), which spans a cached quote to a RequestCredit that waits out
/// its 30 s maximum.
const LATENCY_BUCKETS: (f64, f64, u16) = (0.001, 2.0, 16);

/// Latency buckets of Redis commands, seconds: 50 us doubling to about
/// 1.6 s (16 buckets), a cached GET to a slow script.
const COMMAND_LATENCY_BUCKETS: (f64, f64, u16) = (0.000_05, 2.0, 16);

/// A gRPC method, split as dashboards group it.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MethodLabels {
    /// Fully-qualified service, e.g. `openoes.credit.v1.CreditService`;
    /// `other` for a path that is none of ours.
    pub service: String,
    /// Method, e.g. `RequestCredit`; `other` likewise.
    pub method: String,
}

/// A finished gRPC call.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CallLabels {
    /// Fully-qualified service.
    pub service: String,
    /// Method.
    pub method: String,
    /// The gRPC status code's canonical name (`OK`, `UNAVAILABLE`, ...).
    pub code: String,
}

/// One Redis endpoint.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EndpointLabels {
    /// `master` (M) or `replica` (R).
    pub endpoint: String,
}

impl EndpointLabels {
    /// The labels of `endpoint`.
    pub fn of(endpoint: Endpoint) -> Self {
        Self {
            endpoint: endpoint_label(endpoint).into(),
        }
    }
}

/// The label value of an endpoint.
pub fn endpoint_label(endpoint: Endpoint) -> &'static str {
    match endpoint {
        Endpoint::Master => "master",
        Endpoint::Replica => "replica",
    }
}

/// A stream.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StreamLabels {
    /// Its key.
    pub stream: String,
}

/// A consumer group of a stream.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GroupLabels {
    /// The stream's key.
    pub stream: String,
    /// The group's name (from config: a closed set).
    pub group: String,
}

/// A kind of client stream (`watch`, `consumer-group`, ...).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    /// The pump's kind.
    pub kind: String,
}

/// A flow with a backlog of undecided requests (`credit`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FlowLabels {
    /// The flow.
    pub flow: String,
}

/// A gRPC health service name; `server` for the server as a whole ("").
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ServiceLabels {
    /// The service.
    pub service: String,
}

/// A sampler probe, for its error count.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProbeLabels {
    /// The probe's name (a closed set: see [`sampler`]).
    pub probe: String,
}

type FloatGauge = Gauge<f64, std::sync::atomic::AtomicU64>;

/// What a domain asks the sampler to watch. Registered in its `plug_in`
/// ([`Metrics::probe`]), for the roles it serves; the names are the
/// domain's own keys, so this module knows none of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    /// A consumer group's pending entries and lag (`XINFO GROUPS`), on
    /// `endpoint` as the gateway's user there. A group that does not exist
    /// yet lags by the whole stream (groups start from its beginning).
    Group {
        /// Where the group lives.
        endpoint: Endpoint,
        /// The stream.
        stream: String,
        /// The group.
        group: String,
    },
    /// A dead-letter stream's length (`XLEN`).
    DeadLetters {
        /// Where it lives.
        endpoint: Endpoint,
        /// The stream.
        stream: String,
    },
    /// How long the oldest entry of `stream` (on R, read as the WSP's
    /// reader) has waited beyond the WSP's cursor (a stream id at `cursor`
    /// on M): 0 when the WSP has applied everything.
    Cursor {
        /// The cursor key on M.
        cursor: &'static str,
        /// The stream on R.
        stream: String,
    },
    /// Undecided requests: a sorted set on M whose scores are the unix ms
    /// of each request; its size and the age of its lowest score.
    Backlog {
        /// The flow's label.
        flow: &'static str,
        /// The sorted set.
        key: &'static str,
    },
}

/// Every metric of one server, and the probes its domains registered.
/// Cheap to clone: all handles share the same values.
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    probes: Arc<Mutex<Vec<Probe>>>,
    /// gRPC calls finished, by method and code.
    pub grpc_requests: Family<CallLabels, Counter>,
    /// gRPC call latency by method: to the end of the response (for a
    /// server stream, its whole life).
    pub grpc_duration: Family<MethodLabels, Histogram, fn() -> Histogram>,
    /// gRPC calls (unary and streams) in flight, by method.
    pub grpc_in_flight: Family<MethodLabels, Gauge>,
    /// Client streams open, by pump kind.
    pub stream_subscribers: Family<KindLabels, Gauge>,
    /// Client streams cut off as too slow (SUBSCRIBER_TOO_SLOW), by kind.
    pub stream_cut_off: Family<KindLabels, Counter>,
    /// 1 while a health service is SERVING.
    pub health_serving: Family<ServiceLabels, Gauge>,
    /// 1 while the health monitor's last PING of an endpoint succeeded.
    pub redis_up: Family<EndpointLabels, Gauge>,
    /// Redis command latency (shared and pooled connections), by endpoint.
    pub redis_command_duration: Family<EndpointLabels, Histogram, fn() -> Histogram>,
    /// Pooled connections lent out now, by endpoint.
    pub redis_pool_in_use: Family<EndpointLabels, Gauge>,
    /// Pooled connections open (lent or idle), by endpoint.
    pub redis_pool_open: Family<EndpointLabels, Gauge>,
    /// 1 while R says `master_link_status:up`; 0 when it says down or
    /// cannot be asked.
    pub link_up: Gauge,
    /// M's replication offset minus R's, bytes (NaN while either cannot
    /// be read).
    pub link_lag_bytes: FloatGauge,
    /// Age of the newest heartbeat seen on R, seconds (NaN until one is
    /// seen; it keeps growing while R is unreachable).
    pub link_heartbeat_age: FloatGauge,
    /// Age of the oldest response beyond the WSP's cursor, by stream.
    pub cursor_lag: Family<StreamLabels, FloatGauge>,
    /// Consumer-group entries not yet delivered (NaN when Redis cannot
    /// tell), by stream and group.
    pub group_lag: Family<GroupLabels, FloatGauge>,
    /// Consumer-group entries delivered and not acknowledged.
    pub group_pending: Family<GroupLabels, Gauge>,
    /// Entries in each dead-letter stream.
    pub dead_letters: Family<StreamLabels, Gauge>,
    /// Undecided requests, by flow.
    pub undecided: Family<FlowLabels, Gauge>,
    /// Age of the oldest undecided request, seconds, by flow.
    pub undecided_oldest_age: Family<FlowLabels, FloatGauge>,
    /// Probes that failed or timed out, by probe.
    pub sample_errors: Family<ProbeLabels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// The command latency histogram of `endpoint` (for
    /// [`crate::redis::RedisEndpoint::time_commands`]).
    pub fn redis_command_latency(&self, endpoint: Endpoint) -> Histogram {
        self.redis_command_duration
            .get_or_create(&EndpointLabels::of(endpoint))
            .clone()
    }

    /// A fresh set of metrics, all registered, prefixed `openoes_`.
    pub fn new() -> Self {
        fn latency() -> Histogram {
            let (start, factor, n) = LATENCY_BUCKETS;
            Histogram::new(exponential_buckets(start, factor, n))
        }
        fn command_latency() -> Histogram {
            let (start, factor, n) = COMMAND_LATENCY_BUCKETS;
            Histogram::new(exponential_buckets(start, factor, n))
        }
        let mut registry = Registry::with_prefix("openoes");
        let m = Self {
            registry: Arc::default(),
            probes: Arc::default(),
            grpc_requests: Family::default(),
            grpc_duration: Family::new_with_constructor(latency),
            grpc_in_flight: Family::default(),
            stream_subscribers: Family::default(),
            stream_cut_off: Family::default(),
            health_serving: Family::default(),
            redis_up: Family::default(),
            redis_command_duration: Family::new_with_constructor(command_latency),
            redis_pool_in_use: Family::default(),
            redis_pool_open: Family::default(),
            link_up: Gauge::default(),
            link_lag_bytes: FloatGauge::default(),
            link_heartbeat_age: FloatGauge::default(),
            cursor_lag: Family::default(),
            group_lag: Family::default(),
            group_pending: Family::default(),
            dead_letters: Family::default(),
            undecided: Family::default(),
            undecided_oldest_age: Family::default(),
            sample_errors: Family::default(),
        };
        m.link_lag_bytes.set(f64::NAN);
        m.link_heartbeat_age.set(f64::NAN);
        let r = &mut registry;
        r.register(
            "build",
            "The gateway's version",
            Info::new(vec![("version", env!("CARGO_PKG_VERSION"))]),
        );
        r.register(
            "grpc_requests",
            "gRPC calls finished, by method and status code",
            m.grpc_requests.clone(),
        );
        r.register_with_unit(
            "grpc_request_duration",
            "gRPC call latency to the end of the response (a server stream's whole life)",
            Unit::Seconds,
            m.grpc_duration.clone(),
        );
        r.register(
            "grpc_in_flight",
            "gRPC calls and streams in flight",
            m.grpc_in_flight.clone(),
        );
        r.register(
            "stream_subscribers",
            "Client Watch*/Subscribe* streams open, by kind",
            m.stream_subscribers.clone(),
        );
        r.register(
            "stream_subscribers_cut_off",
            "Client streams cut off as too slow (SUBSCRIBER_TOO_SLOW)",
            m.stream_cut_off.clone(),
        );
        r.register(
            "health_serving",
            "1 while the gRPC health service is SERVING (service=\"server\" is the server as a whole)",
            m.health_serving.clone(),
        );
        r.register(
            "redis_up",
            "1 while the health monitor's last PING of the endpoint succeeded",
            m.redis_up.clone(),
        );
        r.register_with_unit(
            "redis_command_duration",
            "Redis command latency, call to reply, by endpoint (shared and pooled connections; blocking reads excluded)",
            Unit::Seconds,
            m.redis_command_duration.clone(),
        );
        r.register(
            "redis_pool_connections_in_use",
            "Pooled Redis connections lent out",
            m.redis_pool_in_use.clone(),
        );
        r.register(
            "redis_pool_connections",
            "Pooled Redis connections open",
            m.redis_pool_open.clone(),
        );
        r.register(
            "link_master_link_up",
            "1 while the replica R reports master_link_status:up",
            m.link_up.clone(),
        );
        r.register_with_unit(
            "link_replication_lag",
            "Replication offset of M minus that of R (NaN while either cannot be read)",
            Unit::Bytes,
            m.link_lag_bytes.clone(),
        );
        r.register_with_unit(
            "link_heartbeat_age",
            "Age of the newest mirror:heartbeat seen on R: the replication delay an exchange sees",
            Unit::Seconds,
            m.link_heartbeat_age.clone(),
        );
        r.register_with_unit(
            "response_cursor_lag",
            "Age of the oldest response on R beyond the WSP's cursor (0: all applied)",
            Unit::Seconds,
            m.cursor_lag.clone(),
        );
        r.register(
            "consumer_group_lag",
            "Consumer-group entries not delivered yet (NaN when Redis cannot tell)",
            m.group_lag.clone(),
        );
        r.register(
            "consumer_group_pending",
            "Consumer-group entries delivered and not acknowledged",
            m.group_pending.clone(),
        );
        r.register(
            "dead_letter_entries",
            "Entries in a dead-letter stream",
            m.dead_letters.clone(),
        );
        r.register(
            "requests_undecided",
            "Requests waiting for the other side's decision",
            m.undecided.clone(),
        );
        r.register_with_unit(
            "requests_undecided_oldest_age",
            "Age of the oldest undecided request",
            Unit::Seconds,
            m.undecided_oldest_age.clone(),
        );
        r.register(
            "metrics_sample_errors",
            "Sampler probes that failed or timed out",
            m.sample_errors.clone(),
        );
        Self {
            registry: Arc::new(registry),
            ..m
        }
    }

    /// Asks the sampler to watch `probe` (domains call this in `plug_in`;
    /// the same probe twice is kept once).
    pub fn probe(&self, probe: Probe) {
        if let Ok(mut probes) = self.probes.lock()
            && !probes.contains(&probe)
        {
            probes.push(probe);
        }
    }

    /// The probes registered so far.
    pub fn probes(&self) -> Vec<Probe> {
        self.probes.lock().map(|p| p.clone()).unwrap_or_default()
    }

    /// The Prometheus text format (0.0.4), which `promtool check metrics`
    /// reads.
    pub fn prometheus_text(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry);
        out
    }

    /// The OpenMetrics text format (ends with `# EOF`).
    pub fn openmetrics_text(&self) -> String {
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// The gRPC methods a server serves, as `service/method`: calls to any
/// other path are counted under `other`, so a caller sending random paths
/// cannot grow the number of series.
///
/// Each method's metrics are resolved once ([`MethodMetrics`]): a call
/// costs one lookup by path and a few atomic adds, never a label set
/// allocated or hashed (that was most of the metrics layer's cost).
#[derive(Clone)]
pub struct KnownMethods {
    methods: Arc<HashMap<String, Arc<MethodMetrics>>>,
    other: Arc<MethodMetrics>,
}

impl KnownMethods {
    /// The methods of the services in `descriptors` (encoded
    /// `FileDescriptorSet`s) and of `extra` (`service/method` names),
    /// counted in `metrics`.
    pub fn new(metrics: &Metrics, descriptors: &[&[u8]], extra: &[&str]) -> Self {
        use prost::Message;
        let mut known: HashSet<String> = extra.iter().map(|s| s.to_string()).collect();
        for bytes in descriptors {
            let Ok(set) = prost_types::FileDescriptorSet::decode(*bytes) else {
                continue;
            };
            for file in &set.file {
                for service in &file.service {
                    for method in &service.method {
                        known.insert(format!(
                            "{}.{}/{}",
                            file.package(),
                            service.name(),
                            method.name()
                        ));
                    }
                }
            }
        }
        let methods = known
            .into_iter()
            .filter_map(|rpc| {
                let (service, method) = rpc.split_once('/')?;
                let labels = MethodLabels {
                    service: service.into(),
                    method: method.into(),
                };
                Some((rpc.clone(), Arc::new(MethodMetrics::new(metrics, labels))))
            })
            .collect();
        let other = MethodLabels {
            service: "other".into(),
            method: "other".into(),
        };
        Self {
            methods: Arc::new(methods),
            other: Arc::new(MethodMetrics::new(metrics, other)),
        }
    }

    /// The metrics of the call to `path` (`/service/method`).
    pub fn of(&self, path: &str) -> Arc<MethodMetrics> {
        let rpc = path.trim_start_matches('/');
        Arc::clone(self.methods.get(rpc).unwrap_or(&self.other))
    }
}

/// One method's metrics, each created in its family on first use (a
/// method never called has no series) and then kept.
pub struct MethodMetrics {
    metrics: Metrics,
    /// The method's labels.
    pub labels: MethodLabels,
    in_flight: OnceLock<Gauge>,
    duration: OnceLock<Histogram>,
    /// Finished calls by gRPC code, indexed by the code's number.
    requests: [OnceLock<Counter>; 17],
}

impl MethodMetrics {
    fn new(metrics: &Metrics, labels: MethodLabels) -> Self {
        Self {
            metrics: metrics.clone(),
            labels,
            in_flight: OnceLock::new(),
            duration: OnceLock::new(),
            requests: Default::default(),
        }
    }

    /// Calls (unary and streams) of the method in flight.
    pub fn in_flight(&self) -> &Gauge {
        self.in_flight.get_or_init(|| {
            self.metrics
                .grpc_in_flight
                .get_or_create(&self.labels)
                .clone()
        })
    }

    /// Latency of the method's calls.
    pub fn duration(&self) -> &Histogram {
        self.duration.get_or_init(|| {
            self.metrics
                .grpc_duration
                .get_or_create(&self.labels)
                .clone()
        })
    }

    /// Calls of the method that finished with `code`.
    pub fn requests(&self, code: tonic::Code) -> &Counter {
        // tonic's codes are 0..=16; anything else would be a bug upstream,
        // counted as UNKNOWN rather than lost.
        let index = (code as usize).min(16);
        let code = if index == code as usize {
            code
        } else {
            tonic::Code::Unknown
        };
        self.requests[index].get_or_init(|| {
            self.metrics
                .grpc_requests
                .get_or_create(&CallLabels {
                    service: self.labels.service.clone(),
                    method: self.labels.method.clone(),
                    code: code_name(code).into(),
                })
                .clone()
        })
    }
}

/// The gRPC status code's canonical name, as the metrics and the audit
/// trail spell it.
pub fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code;
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_paths_share_one_label_set() {
        let metrics = Metrics::new();
        let known = KnownMethods::new(&metrics, &[crate::proto::FILE_DESCRIPTOR_SET], &["a.B/C"]);
        let credit = known.of("/openoes.credit.v1.CreditService/RequestCredit");
        assert_eq!(credit.labels.service, "openoes.credit.v1.CreditService");
        assert_eq!(credit.labels.method, "RequestCredit");
        assert_eq!(known.of("/a.B/C").labels.method, "C");
        for junk in ["/x.Y/Z", "/openoes.credit.v1.CreditService/Nope", "/", ""] {
            assert_eq!(known.of(junk).labels.service, "other", "{junk}");
        }
        // Resolved handles count in the registry's families.
        credit.requests(tonic::Code::NotFound).inc();
        credit.requests(tonic::Code::NotFound).inc();
        let text = metrics.prometheus_text();
        assert!(
            text.contains(r#"method="RequestCredit",code="NOT_FOUND"} 2"#),
            "{text}"
        );
    }

    #[test]
    fn both_formats_name_every_family() {
        let m = Metrics::new();
        m.grpc_requests
            .get_or_create(&CallLabels {
                service: "s".into(),
                method: "m".into(),
                code: "OK".into(),
            })
            .inc();
        let prom = m.prometheus_text();
        assert!(prom.contains("openoes_grpc_requests_total{"), "{prom}");
        assert!(
            prom.contains("openoes_link_heartbeat_age_seconds NaN"),
            "{prom}"
        );
        assert!(m.openmetrics_text().ends_with("# EOF\n"));
    }
}
