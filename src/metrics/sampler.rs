//! The one task that samples the link's gauges every `metrics.interval`.
//!
//! Each tick, in this order:
//! 1. per endpoint in use: up (the health monitor's verdict) and pool use,
//!    read from memory;
//! 2. a WSP gateway writes the heartbeat ([`HEARTBEAT_KEY`]) on M and reads
//!    M's replication offset (`INFO replication`);
//! 3. on R, as the WSP's reader (or the exchange's user on an exchange-only
//!    gateway): `master_link_status`, R's offset, and the heartbeat;
//! 4. the domains' [`Probe`]s.
//!
//! Every Redis step runs on a connection of the sampler's own, one per
//! (endpoint, user), so an exhausted pool never blanks the gauges, and is
//! bounded by `metrics.probe_timeout` (connect included). A connection that
//! fails is dropped and reopened next tick; the rest of that connection's
//! steps are skipped for the tick, so a black-holed Redis costs at most one
//! timeout per connection per tick. A failed step counts in
//! `openoes_metrics_sample_errors_total` and leaves a gauge that cannot be
//! known as NaN (or, for the link, down), never at a stale value.

use std::collections::HashMap;

use redis::{FromRedisValue, aio::MultiplexedConnection};
use tokio_util::sync::CancellationToken;

use super::{
    EndpointLabels, FlowLabels, GroupLabels, HEARTBEAT_KEY, Metrics, Probe, ProbeLabels,
    StreamLabels,
};
use crate::{
    config::MetricsConfig,
    redis::{Endpoint, Reachability, Redis, RedisEndpoint},
};

/// The sampler's connections: M as the WSP's user, R as the exchange's, R
/// as the WSP's reader.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Conn {
    Master,
    Replica,
    Reader,
}

/// Samples the gauges of one server; see the module docs.
pub struct Sampler {
    metrics: Metrics,
    redis: Redis,
    /// The endpoints this gateway uses (its health needs).
    endpoints: Vec<Endpoint>,
    /// Serves the WSP role: writes the heartbeat, reads M.
    wsp: bool,
    config: MetricsConfig,
    conns: HashMap<Conn, MultiplexedConnection>,
    /// Connections that failed this tick: their remaining steps are skipped.
    failed: Vec<Conn>,
    /// The newest heartbeat seen on R (unix ms).
    newest_heartbeat: Option<u64>,
}

impl Sampler {
    /// A sampler of `metrics` for a gateway using `endpoints`.
    pub fn new(
        metrics: Metrics,
        redis: Redis,
        endpoints: Vec<Endpoint>,
        wsp: bool,
        config: MetricsConfig,
    ) -> Self {
        Self {
            metrics,
            redis,
            endpoints,
            wsp,
            config,
            conns: HashMap::new(),
            failed: Vec::new(),
            newest_heartbeat: None,
        }
    }

    /// Samples every `metrics.interval` until `stop` is cancelled.
    pub async fn run(mut self, stop: CancellationToken) {
        let mut ticker = tokio::time::interval(self.config.interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                _ = ticker.tick() => {}
            }
            tokio::select! {
                () = stop.cancelled() => return,
                () = self.sample() => {}
            }
        }
    }

    /// One round of every gauge.
    pub async fn sample(&mut self) {
        self.failed.clear();
        let m = self.metrics.clone();
        for &endpoint in &self.endpoints {
            let target = self.redis.endpoint(endpoint);
            let labels = EndpointLabels::of(endpoint);
            let up = target.reachability() == Reachability::Up;
            m.redis_up.get_or_create(&labels).set(i64::from(up));
            let (open, in_use) = target.pool_state();
            m.redis_pool_open
                .get_or_create(&labels)
                .set(i64::from(open));
            m.redis_pool_in_use
                .get_or_create(&labels)
                .set(i64::from(in_use));
        }
        self.sample_link().await;
        for probe in m.probes() {
            self.sample_probe(&probe).await;
        }
    }

    async fn sample_link(&mut self) {
        let m = self.metrics.clone();
        let mut master_offset = None;
        if self.wsp {
            let now = crate::time::now().ms;
            let mut set = redis::cmd("SET");
            set.arg(HEARTBEAT_KEY).arg(now);
            let _: Option<()> = self.query(Conn::Master, "heartbeat_write", &set).await;
            let info: Option<String> = self
                .query(
                    Conn::Master,
                    "master_info",
                    redis::cmd("INFO").arg("replication"),
                )
                .await;
            master_offset = info
                .as_deref()
                .and_then(|i| info_field(i, "master_repl_offset"))
                .and_then(|v| v.parse::<i64>().ok());
        }
        // The WSP watches R as its reader; an exchange-only gateway as its
        // own user.
        let on_r = if self.wsp {
            Conn::Reader
        } else {
            Conn::Replica
        };
        let info: Option<String> = self
            .query(on_r, "replica_info", redis::cmd("INFO").arg("replication"))
            .await;
        let link_up = info
            .as_deref()
            .and_then(|i| info_field(i, "master_link_status"))
            == Some("up");
        m.link_up.set(i64::from(link_up));
        let replica_offset = info
            .as_deref()
            .and_then(|i| info_field(i, "slave_repl_offset"))
            .and_then(|v| v.parse::<i64>().ok());
        m.link_lag_bytes.set(match (master_offset, replica_offset) {
            (Some(master), Some(replica)) => (master - replica).max(0) as f64,
            _ => f64::NAN,
        });
        let heartbeat: Option<Option<u64>> = self
            .query(on_r, "heartbeat_read", redis::cmd("GET").arg(HEARTBEAT_KEY))
            .await;
        if let Some(Some(seen)) = heartbeat {
            self.newest_heartbeat = Some(self.newest_heartbeat.map_or(seen, |n| n.max(seen)));
        }
        // Without a new read (R down, the link down) the newest one seen
        // only gets older: that is what the exchange sees.
        if let Some(newest) = self.newest_heartbeat {
            let age_ms = crate::time::now().ms.saturating_sub(newest);
            m.link_heartbeat_age.set(age_ms as f64 / 1000.0);
        }
    }

    async fn sample_probe(&mut self, probe: &Probe) {
        let m = self.metrics.clone();
        let conn = |endpoint| match endpoint {
            Endpoint::Master => Conn::Master,
            Endpoint::Replica => Conn::Replica,
        };
        match probe {
            Probe::Group {
                endpoint,
                stream,
                group,
            } => {
                let labels = GroupLabels {
                    stream: stream.clone(),
                    group: group.clone(),
                };
                let groups: Option<Vec<HashMap<String, redis::Value>>> = self
                    .query(
                        conn(*endpoint),
                        "consumer_group",
                        redis::cmd("XINFO").arg("GROUPS").arg(stream.as_str()),
                    )
                    .await;
                let found = groups.as_ref().map(|groups| {
                    groups
                        .iter()
                        .find(|g| {
                            g.get("name").map(crate::redis::value_text) == Some(group.clone())
                        })
                        .map(|g| {
                            let int = |k: &str| {
                                g.get(k).and_then(|v| i64::from_redis_value(v.clone()).ok())
                            };
                            (int("pending").unwrap_or(0), int("lag"))
                        })
                });
                let (pending, lag) = match found {
                    Some(Some((pending, lag))) => (pending, lag.map_or(f64::NAN, |l| l as f64)),
                    // No group yet: it will start at the stream's beginning.
                    Some(None) => {
                        let len: Option<i64> = self
                            .query(
                                conn(*endpoint),
                                "consumer_group",
                                redis::cmd("XLEN").arg(stream.as_str()),
                            )
                            .await;
                        (0, len.map_or(f64::NAN, |l| l as f64))
                    }
                    None => (0, f64::NAN),
                };
                m.group_pending.get_or_create(&labels).set(pending);
                m.group_lag.get_or_create(&labels).set(lag);
            }
            Probe::DeadLetters { endpoint, stream } => {
                let len: Option<i64> = self
                    .query(
                        conn(*endpoint),
                        "dead_letters",
                        redis::cmd("XLEN").arg(stream.as_str()),
                    )
                    .await;
                if let Some(len) = len {
                    m.dead_letters
                        .get_or_create(&StreamLabels {
                            stream: stream.clone(),
                        })
                        .set(len);
                }
            }
            Probe::Cursor { cursor, stream } => {
                let labels = StreamLabels {
                    stream: stream.clone(),
                };
                let at: Option<Option<String>> = self
                    .query(
                        Conn::Master,
                        "response_cursor",
                        redis::cmd("GET").arg(*cursor),
                    )
                    .await;
                let mut lag = f64::NAN;
                if let Some(at) = at {
                    // The oldest entry beyond the cursor (exclusive start).
                    let start = at.map_or_else(|| "-".to_string(), |id| format!("({id}"));
                    let next: Option<redis::streams::StreamRangeReply> = self
                        .query(
                            Conn::Reader,
                            "response_cursor",
                            redis::cmd("XRANGE")
                                .arg(stream.as_str())
                                .arg(start)
                                .arg("+")
                                .arg("COUNT")
                                .arg(1),
                        )
                        .await;
                    if let Some(next) = next {
                        let oldest = next.ids.first().and_then(|e| stream_id_ms(&e.id));
                        lag = oldest.map_or(0.0, |ms| {
                            crate::time::now().ms.saturating_sub(ms) as f64 / 1000.0
                        });
                    }
                }
                m.cursor_lag.get_or_create(&labels).set(lag);
            }
            Probe::Backlog { flow, key } => {
                let labels = FlowLabels {
                    flow: (*flow).into(),
                };
                let count: Option<i64> = self
                    .query(Conn::Master, "undecided", redis::cmd("ZCARD").arg(*key))
                    .await;
                let oldest: Option<Vec<(String, f64)>> = self
                    .query(
                        Conn::Master,
                        "undecided",
                        redis::cmd("ZRANGE")
                            .arg(*key)
                            .arg(0)
                            .arg(0)
                            .arg("WITHSCORES"),
                    )
                    .await;
                if let Some(count) = count {
                    m.undecided.get_or_create(&labels).set(count);
                }
                let age = oldest.map_or(f64::NAN, |o| {
                    o.first().map_or(0.0, |(_, score)| {
                        (crate::time::now().ms as f64 - score).max(0.0) / 1000.0
                    })
                });
                m.undecided_oldest_age.get_or_create(&labels).set(age);
            }
        }
    }

    /// Runs `cmd` on connection `which`, opening it if needed; `None` (and
    /// one sample error for `probe`) if it fails or times out.
    async fn query<T: FromRedisValue>(
        &mut self,
        which: Conn,
        probe: &'static str,
        cmd: &redis::Cmd,
    ) -> Option<T> {
        if self.failed.contains(&which) {
            return None;
        }
        let timeout = self.config.probe_timeout;
        let endpoint: RedisEndpoint = match which {
            Conn::Master => self.redis.master.clone(),
            Conn::Replica => self.redis.replica.clone(),
            Conn::Reader => self.redis.replica_reader.clone(),
        };
        let cached = self.conns.get(&which).cloned();
        let attempt = async {
            let mut conn = match cached {
                Some(conn) => conn,
                None => endpoint.dedicated(timeout).await.ok()?,
            };
            let reply = cmd.query_async::<T>(&mut conn).await;
            Some((conn, reply))
        };
        match tokio::time::timeout(timeout, attempt).await {
            Ok(Some((conn, Ok(value)))) => {
                self.conns.insert(which, conn);
                Some(value)
            }
            Ok(Some((conn, Err(e)))) => {
                // Redis said no (a missing ACL rule, a wrong type): the
                // connection is fine, and the operator needs the reason.
                if e.is_io_error() || e.is_timeout() || e.is_connection_dropped() {
                    self.fail(which);
                } else {
                    self.conns.insert(which, conn);
                    tracing::debug!(probe, error = %e, "metrics probe refused");
                }
                self.count_error(probe);
                None
            }
            Ok(None) | Err(_) => {
                self.fail(which);
                self.count_error(probe);
                None
            }
        }
    }

    fn fail(&mut self, which: Conn) {
        self.conns.remove(&which);
        self.failed.push(which);
    }

    fn count_error(&self, probe: &'static str) {
        self.metrics
            .sample_errors
            .get_or_create(&ProbeLabels {
                probe: probe.into(),
            })
            .inc();
    }
}

/// The value of `key` in an `INFO` reply (`key:value` lines).
pub fn info_field<'a>(info: &'a str, key: &str) -> Option<&'a str> {
    info.lines().find_map(|line| {
        line.trim_end()
            .strip_prefix(key)
            .and_then(|rest| rest.strip_prefix(':'))
    })
}

/// The milliseconds part of a stream id `ms-seq`.
fn stream_id_ms(id: &str) -> Option<u64> {
    id.split_once('-').and_then(|(ms, _)| ms.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_fields_match_whole_keys() {
        let info = "# Replication\r\nrole:slave\r\nmaster_link_status:up\r\nslave_repl_offset:42\r\nslave_repl_offset_x:1\r\n";
        assert_eq!(info_field(info, "master_link_status"), Some("up"));
        assert_eq!(info_field(info, "slave_repl_offset"), Some("42"));
        assert_eq!(info_field(info, "slave_repl"), None);
        assert_eq!(stream_id_ms("1700000000000-3"), Some(1_700_000_000_000));
        assert_eq!(stream_id_ms("junk"), None);
    }
}
