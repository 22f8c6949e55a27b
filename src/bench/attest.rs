//! `bench attest`: the attestation pipeline through a gateway with an
//! issuer key (e.g. `openoes dev`), from XADD on `verification_stream` to
//! the issued attestation (its `issued` event on M), signing included.
//!
//! - the ceiling, measured in this process in the same run: Ed25519 signs
//!   per second on one core (ring, 64-byte messages: what eddsa-jcs-2022
//!   signs), and whole credentials built and signed per second on one core;
//! - `redis-benchmark` XADD of a result-sized entry, the Redis baseline;
//! - open loop at `rate` results/s: latency from each XADD to its issued
//!   event (p50/p99/max), results not attested within the wait;
//! - a burst of `burst` results XADDed at once: results/s from the first
//!   XADD to the last issued event, and its ratio to the signing ceiling.
//!
//! Results are foreign-producer entries (no request_id); each carries its
//! send time (microseconds since the run began) as its evidence hash, which
//! its issued event carries back.

use std::{
    collections::HashSet,
    time::{Duration, Instant},
};

use hdrhistogram::Histogram;
use openoes::{
    attestation::{
        credential::{self, Issuer, StatusEntry},
        keys,
        model::{Outcome, Verification},
    },
    config::{RedisConfig, RedisEndpointConfig},
    crypto::{ed25519::SigningKey, keys::ServerKey},
    redis::Redis,
    streams::reply::{self, Parsed},
};

use super::{BenchError, Figure, new_histogram, redis_benchmark};
use crate::progress::Phase;

/// How `bench attest` runs.
#[derive(Debug, Clone)]
pub struct AttestBenchOptions {
    /// The Redis the gateway attests on (M), with credentials that may XADD
    /// to `verification_stream` and read the event log.
    pub redis_url: String,
    /// Results per second of the paced run.
    pub rate: u64,
    /// Seconds of the paced run.
    pub duration: Duration,
    /// Results of the burst.
    pub burst: u64,
}

/// How long the benchmark waits for the last attestation of a run.
const WAIT: Duration = Duration::from_secs(60);
/// How long each ceiling is measured.
const CEILING_TIME: Duration = Duration::from_secs(2);

fn gateway(e: impl std::fmt::Display) -> BenchError {
    BenchError::Gateway(e.to_string())
}

/// Ed25519 signs/s on this thread (one core), over 64-byte messages.
fn signs_per_sec() -> Result<f64, BenchError> {
    let key = SigningKey::generate().map_err(gateway)?;
    let message = [7u8; 64];
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < CEILING_TIME {
        for _ in 0..256 {
            std::hint::black_box(key.sign(std::hint::black_box(&message)));
        }
        n += 256;
    }
    Ok(n as f64 / start.elapsed().as_secs_f64())
}

/// Whole credentials (JSON, JCS, SHA-256, Ed25519) built and signed per
/// second on this thread.
fn credentials_per_sec() -> Result<f64, BenchError> {
    let issuer = Issuer::from_keys(ServerKey::generate("bench").map_err(gateway)?, vec![]);
    let verification = Verification {
        request_id: None,
        subject: "0xbench".into(),
        did_type: "kyc".into(),
        did_id: "0".into(),
        outcome: Outcome::Verified,
        evidence_hash: "abc123".into(),
        verified_ms: 1_759_515_310_000,
    };
    let status = StatusEntry {
        list_id: "1".into(),
        index: 7,
    };
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < CEILING_TIME {
        let signed = credential::attest(
            issuer.active(),
            &credential::Attestation {
                attestation_id: "2c5ea4c0-4067-8bcd-8000-000000000000",
                verification: &verification,
                status: &status,
                list_prefix: "urn:openoes:status-list:",
                expires_ms: 1_791_051_310_000,
                issued_ms: 1_759_515_311_000,
            },
        )
        .map_err(gateway)?;
        std::hint::black_box(signed);
        n += 1;
    }
    Ok(n as f64 / start.elapsed().as_secs_f64())
}

/// Runs the attestation benchmark.
pub async fn run(options: &AttestBenchOptions) -> Result<Vec<Figure>, BenchError> {
    let phase = Phase::start("ceiling: Ed25519 signs/s", Some(CEILING_TIME));
    let signs = signs_per_sec()?;
    phase.finish();
    let phase = Phase::start("ceiling: credentials built + signed/s", Some(CEILING_TIME));
    let credentials = credentials_per_sec()?;
    phase.finish();
    let endpoint = RedisEndpointConfig {
        url: options.redis_url.clone(),
        ..RedisEndpointConfig::default()
    };
    let redis = Redis::new(&RedisConfig {
        master: endpoint.clone(),
        replica: endpoint,
        ..RedisConfig::default()
    })
    .map_err(gateway)?;
    let xadd = [
        "XADD",
        "bench:attest-baseline",
        "MAXLEN",
        "~",
        "10000",
        "*",
        "user_wallet",
        "0xbench",
        "did_id",
        "0",
        "result",
        "verified",
        "evidence_hash",
        "00000000deadbeef",
        "verified_at",
        "2025-10-03T18:15:10",
    ];
    let redis_ops = redis_benchmark(&options.redis_url, 50, 200_000, &xadd)?;

    let run_id = std::process::id();
    let started = Instant::now();
    let paced_total = options.rate * options.duration.as_secs();
    let paced_subject = format!("bench-{run_id}-paced");
    let phase = Phase::start(
        format!("attest, paced {}/s: XADD -> issued", options.rate),
        Some(options.duration),
    );
    let (paced, paced_histogram, paced_lost, paced_first_error) = {
        let follower = tokio::spawn(follow(
            redis.clone(),
            paced_subject.clone(),
            paced_total,
            started,
        ));
        tokio::time::sleep(Duration::from_millis(300)).await;
        let mut conn = redis.master.conn().await.map_err(gateway)?;
        let interval = Duration::from_secs_f64(1.0 / options.rate.max(1) as f64);
        let begin = Instant::now();
        for i in 0..paced_total {
            let due = begin + interval.mul_f64(i as f64);
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                tokio::time::sleep(wait).await;
            }
            produce(&mut *conn, &paced_subject, started).await?;
        }
        drop(conn);
        let (histogram, seen, error) = follower.await.map_err(gateway)??;
        (
            seen as f64 / begin.elapsed().as_secs_f64(),
            histogram,
            paced_total - seen,
            error,
        )
    };

    phase.finish();
    let phase = Phase::start(format!("attest, burst of {}", options.burst), None);
    let burst_subject = format!("bench-{run_id}-burst");
    let follower = tokio::spawn(follow(
        redis.clone(),
        burst_subject.clone(),
        options.burst,
        started,
    ));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let begin = Instant::now();
    let mut conn = redis.master.conn().await.map_err(gateway)?;
    // Pipelined, 500 at a time: the backlog arrives as fast as Redis takes it.
    let mut sent = 0;
    while sent < options.burst {
        let n = (options.burst - sent).min(500);
        let mut pipe = redis::pipe();
        for _ in 0..n {
            pipe.add_command(entry(&burst_subject, started));
        }
        let _: Vec<String> = pipe.query_async(&mut *conn).await.map_err(gateway)?;
        sent += n;
    }
    drop(conn);
    let (burst_histogram, burst_seen, burst_error) = follower.await.map_err(gateway)??;
    let burst_time = begin.elapsed();
    phase.finish();
    let burst_rate = burst_seen as f64 / burst_time.as_secs_f64();

    Ok(vec![
        Figure {
            name: "redis-benchmark XADD of a result, -c 50".into(),
            ops_per_sec: redis_ops,
            ratio_to_redis: Some(1.0),
            ..Figure::default()
        },
        Figure {
            name: "ceiling: Ed25519 signs/s, one core (this process)".into(),
            ops_per_sec: signs,
            ..Figure::default()
        },
        Figure {
            name: "ceiling: credentials built + signed/s, one core".into(),
            ops_per_sec: credentials,
            ..Figure::default()
        },
        Figure {
            name: format!(
                "attest, paced {}/s for {:?}: XADD -> issued",
                options.rate, options.duration
            ),
            errors: paced_lost,
            first_error: paced_first_error,
            ratio_to_redis: Some(paced / redis_ops),
            ..Figure::latencies(&paced_histogram, paced)
        },
        Figure {
            name: format!(
                "attest, burst of {}: results/s (x{:.3} of one core's signs/s)",
                options.burst,
                burst_rate / signs
            ),
            errors: options.burst - burst_seen,
            first_error: burst_error,
            ratio_to_redis: Some(burst_rate / redis_ops),
            ..Figure::latencies(&burst_histogram, burst_rate)
        },
    ])
}

/// One result XADD of `subject`, carrying its send time.
fn entry(subject: &str, started: Instant) -> redis::Cmd {
    let sent = started.elapsed().as_micros() as u64;
    let mut cmd = redis::cmd("XADD");
    cmd.arg(keys::VERIFICATION_STREAM)
        .arg("*")
        .arg("user_wallet")
        .arg(subject)
        .arg("did_id")
        .arg("0")
        .arg("result")
        .arg("verified")
        .arg("evidence_hash")
        .arg(format!("{sent:016x}"))
        .arg("verified_at")
        .arg("2025-10-03T18:15:10");
    cmd
}

async fn produce(
    conn: &mut (impl redis::aio::ConnectionLike + Send),
    subject: &str,
    started: Instant,
) -> Result<(), BenchError> {
    let _: String = entry(subject, started)
        .query_async(conn)
        .await
        .map_err(gateway)?;
    Ok(())
}

/// Follows the event log until `total` attestations of `subject` are
/// issued (or [`WAIT`] passes without one): latency of each from its send
/// time, how many were seen, the first oddity.
async fn follow(
    redis: Redis,
    subject: String,
    total: u64,
    started: Instant,
) -> Result<(Histogram<u64>, u64, Option<String>), BenchError> {
    let mut histogram = new_histogram();
    let mut seen = HashSet::new();
    let mut error = None;
    let mut blocking = redis
        .master
        .blocking(Duration::from_millis(500))
        .await
        .map_err(gateway)?;
    let conn = blocking.conn();
    let mut cursor = "$".to_string();
    let mut last_progress = Instant::now();
    while (seen.len() as u64) < total && last_progress.elapsed() < WAIT {
        let value: redis::Value = redis::cmd("XREAD")
            .arg("COUNT")
            .arg(1000)
            .arg("BLOCK")
            .arg(500)
            .arg("STREAMS")
            .arg(keys::EVENTS)
            .arg(&cursor)
            .query_async(conn)
            .await
            .map_err(gateway)?;
        for parsed in reply::read_entries(value) {
            let Parsed::Entry(event) = parsed else {
                continue;
            };
            cursor = event.id.to_string();
            if event.field("type") != "issued" || event.field("subject") != subject {
                continue;
            }
            let now = started.elapsed().as_micros() as u64;
            match u64::from_str_radix(event.field("evidence_hash"), 16) {
                Ok(sent) if seen.insert(event.field("entry_id").to_string()) => {
                    let _ = histogram.record(now.saturating_sub(sent).max(1));
                    last_progress = Instant::now();
                }
                Ok(_) => {
                    error.get_or_insert_with(|| {
                        format!("entry {} attested twice", event.field("entry_id"))
                    });
                }
                Err(_) => {
                    error.get_or_insert_with(|| "an event without its send time".to_string());
                }
            }
        }
    }
    Ok((histogram, seen.len() as u64, error))
}
