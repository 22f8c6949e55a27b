//! `openoes bench`: load tools that measure the gateway against Redis
//! itself, in the same run, on the same machine (see
//! `shared/docs/performance.md`): absolute numbers drift on shared
//! machines, the ratio to `redis-benchmark` does not.
//!
//! `bench quote` writes its own pools through UpsertPool (so it works
//! against any gateway with a writable quote Redis), then measures GetQuote
//! for a single-hop swap crossing 10 bins and a 3-hop route, closed loop at
//! the given concurrency, and `redis-benchmark` MGET of 10 bin keys with the
//! same client count as the baseline; then the single-hop load again
//! under churn (1,000 WatchQuote streams open, 5 pool writes a second) and
//! how many of the watches survived it.
//!
//! `bench watch` measures the stream bridge's fan-out in this process;
//! `bench credit` ([`credit`]) the credit flow through a gateway;
//! `bench settlement` ([`settlement`]) confirmations and signed cycles;
//! `bench attest` ([`attest`]) the attestation pipeline, XADD to issued.

pub mod attest;
pub mod credit;
pub mod settlement;

use std::{
    process::Command,
    sync::Arc,
    time::{Duration, Instant},
};

use hdrhistogram::Histogram;
use openoes::proto::quote::v1::{
    Bin, GetQuoteRequest, Pool, UpsertPoolRequest, quote_service_client::QuoteServiceClient,
};
use serde::Serialize;
use tonic::transport::Channel;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

use crate::progress::Phase;

/// How `bench quote` runs.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// Gateway address, `host:port`.
    pub addr: String,
    /// The Redis holding quote data (for the redis-benchmark baseline),
    /// `redis://[user:password@]host:port`.
    pub redis_url: String,
    /// Requests in flight.
    pub concurrency: usize,
    /// Measuring time per scenario.
    pub duration: Duration,
    /// HTTP/2 connections the requests are spread over.
    pub connections: usize,
}

/// One measured figure.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Figure {
    /// What was measured.
    pub name: String,
    /// Completed operations per second.
    pub ops_per_sec: f64,
    /// Latency percentiles, microseconds (none for the Redis baseline,
    /// whose own report is in milliseconds).
    pub p50_us: Option<u64>,
    /// 99th percentile, microseconds.
    pub p99_us: Option<u64>,
    /// Worst, microseconds.
    pub max_us: Option<u64>,
    /// Failed operations (must be 0).
    pub errors: u64,
    /// The first failure, to tell what went wrong.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_error: Option<String>,
    /// ops_per_sec relative to the Redis baseline.
    pub ratio_to_redis: Option<f64>,
    /// ops_per_sec relative to the gRPC floor of the same run (Health/Check
    /// from the same client): what the transport alone allows.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ratio_to_floor: Option<f64>,
}

impl Figure {
    /// The latencies recorded in `histogram` (microseconds), as a figure of
    /// `ops_per_sec`; name, errors and ratio are the caller's.
    pub(crate) fn latencies(histogram: &Histogram<u64>, ops_per_sec: f64) -> Self {
        Figure {
            ops_per_sec,
            p50_us: Some(histogram.value_at_quantile(0.50)),
            p99_us: Some(histogram.value_at_quantile(0.99)),
            max_us: Some(histogram.max()),
            ..Figure::default()
        }
    }
}

/// Why a benchmark could not run.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// The gateway could not be reached or refused the setup.
    #[error("gateway: {0}")]
    Gateway(String),
    /// redis-benchmark failed or printed something unexpected.
    #[error("redis-benchmark: {0}")]
    RedisBenchmark(String),
}

const BENCH_TOKENS: [&str; 4] = ["BENCH-A", "BENCH-B", "BENCH-C", "BENCH-D"];
/// Input of the single-hop scenario: crosses bins 0 to -9 of BENCH-A-B.
const SINGLE_HOP_AMOUNT: u64 = 9_000_000;
const THREE_HOP_AMOUNT: u64 = 1_000_000;

/// Runs the quote benchmark and returns its figures, baseline first.
pub async fn quote(options: &BenchOptions) -> Result<Vec<Figure>, BenchError> {
    let channels = connect(options).await?;
    setup_pools(&channels[0]).await?;
    let single = GetQuoteRequest {
        token_in: BENCH_TOKENS[0].into(),
        token_out: BENCH_TOKENS[1].into(),
        amount: SINGLE_HOP_AMOUNT.to_string(),
        ..GetQuoteRequest::default()
    };
    let three = GetQuoteRequest {
        token_in: BENCH_TOKENS[0].into(),
        token_out: BENCH_TOKENS[3].into(),
        amount: THREE_HOP_AMOUNT.to_string(),
        ..GetQuoteRequest::default()
    };
    // Check the scenarios are what they claim before timing them.
    let mut client = QuoteServiceClient::new(channels[0].clone());
    let q = client
        .get_quote(single.clone())
        .await
        .map_err(|e| BenchError::Gateway(e.to_string()))?;
    let bins = q
        .into_inner()
        .quote
        .map(|q| q.hops.iter().map(|h| h.bins.len()).sum::<usize>());
    if bins != Some(10) {
        return Err(BenchError::Gateway(format!(
            "single-hop scenario crosses {bins:?} bins, not 10"
        )));
    }
    let q = client
        .get_quote(three.clone())
        .await
        .map_err(|e| BenchError::Gateway(e.to_string()))?;
    if q.into_inner().quote.map(|q| q.hops.len()) != Some(3) {
        return Err(BenchError::Gateway(
            "three-hop scenario is not 3 hops".into(),
        ));
    }

    let keys: Vec<String> = (0..10).map(|i| format!("bin:BENCH-A-B:{}", -i)).collect();
    // About `duration` worth of requests at ~50k ops/s, same client count.
    let requests = (options.duration.as_secs_f64() * 50_000.0).max(10_000.0) as u64;
    let mut mget = vec!["MGET"];
    mget.extend(keys.iter().map(String::as_str));
    let redis_ops = redis_benchmark(&options.redis_url, options.concurrency, requests, &mget)?;
    let mut figures = vec![Figure {
        name: format!("redis-benchmark MGET 10 keys, -c {}", options.concurrency),
        ops_per_sec: redis_ops,
        ratio_to_redis: Some(1.0),
        ..Figure::default()
    }];
    let health = grpc_floor(&channels, options).await;
    let floor_ops = health.ops_per_sec;
    for (name, request, mut figure) in [
        ("gRPC floor: Health/Check", None, health),
        (
            "GetQuote single hop, 10 bins",
            Some(single.clone()),
            Figure::default(),
        ),
        ("GetQuote 3 hops", Some(three), Figure::default()),
    ] {
        if let Some(request) = request {
            figure = load(&channels, options, name, move |channel| {
                let mut client = QuoteServiceClient::new(channel);
                let request = request.clone();
                async move { client.get_quote(request).await.map(drop) }
            })
            .await;
        }
        figure.name = format!("{name}, concurrency {}", options.concurrency);
        figure.ratio_to_redis = Some(figure.ops_per_sec / redis_ops);
        figure.ratio_to_floor = Some(figure.ops_per_sec / floor_ops);
        figures.push(figure);
    }
    let hops_ratio = figures[3].ops_per_sec / figures[2].ops_per_sec.max(1.0);
    figures.push(Figure {
        name: format!("GetQuote 3 hops / single hop: {hops_ratio:.3}"),
        ..Figure::default()
    });
    figures.push(freshness(&channels[0], options, &single).await?);
    figures.extend(churn(&channels, options, single, redis_ops).await?);
    Ok(figures)
}

/// Bin writes timed by [`freshness`].
const FRESHNESS_WRITES: usize = 200;

/// Quote freshness: a bin of the single-hop route is written from outside
/// the gateway (this process, through the store, as another gateway or
/// `pools load` would), and the clock runs from the write's start to the
/// first GetQuote that shows it. The gateway learns of it only through the
/// change stream, so this is the lag of quotes kept in memory.
async fn freshness(
    channel: &Channel,
    options: &BenchOptions,
    single: &GetQuoteRequest,
) -> Result<Figure, BenchError> {
    use openoes::{
        config::{Config, RedisEndpointConfig},
        quote::{model::Bin as StoredBin, store::QuoteStore},
        redis::Redis,
    };

    let mut config = Config::default();
    config.redis.master = RedisEndpointConfig {
        url: options.redis_url.clone(),
        ..RedisEndpointConfig::default()
    };
    config.redis.replica = config.redis.master.clone();
    let redis = Redis::new(&config.redis).map_err(|e| BenchError::Gateway(e.to_string()))?;
    let store = QuoteStore::new(redis.master.clone(), &config.streams);
    let mut client = QuoteServiceClient::new(channel.clone());
    let mut histogram = new_histogram();
    let mut errors = 0;
    let mut first_error = None;
    const BIN: i32 = -5;
    for i in 0..FRESHNESS_WRITES {
        // Bin -5 is crossed whole by the single-hop swap: its fill shows
        // its Y reserve.
        let y = 1_000_000 - 1 - (i as u64 % 2);
        let bin = StoredBin {
            bin_id: BIN,
            x_amount: 0,
            y_amount: y,
            price: String::new(),
        };
        let started = Instant::now();
        if let Err(e) = store.upsert_bins("BENCH-A-B", 10, &[bin], None).await {
            return Err(BenchError::Gateway(format!("bin write: {e}")));
        }
        let deadline = started + Duration::from_secs(2);
        loop {
            let shown = match client.get_quote(single.clone()).await {
                Ok(q) => q.into_inner().quote.is_some_and(|q| {
                    q.hops[0]
                        .bins
                        .iter()
                        .any(|b| b.bin_id == BIN && b.amount_out == y.to_string())
                }),
                Err(e) => {
                    first_error.get_or_insert_with(|| e.to_string());
                    false
                }
            };
            if shown {
                let _ = histogram.record(started.elapsed().as_micros() as u64);
                break;
            }
            if Instant::now() > deadline {
                errors += 1;
                first_error.get_or_insert_with(|| "not shown within 2 s".into());
                break;
            }
        }
    }
    // Put the bin back as the scenario had it.
    let bin = StoredBin {
        bin_id: BIN,
        x_amount: 0,
        y_amount: 1_000_000,
        price: String::new(),
    };
    let _ = store.upsert_bins("BENCH-A-B", 10, &[bin], None).await;
    Ok(Figure {
        name: format!(
            "quote freshness: {FRESHNESS_WRITES} bin writes elsewhere -> first quote showing it"
        ),
        errors,
        first_error,
        ..Figure::latencies(&histogram, 0.0)
    })
}

/// WatchQuote streams open during the churn figure.
const CHURN_WATCHERS: usize = 1000;
/// Pool writes per second during the churn figure.
const CHURN_WRITES_PER_SEC: u64 = 5;

/// The churn figure: the single-hop GetQuote load again, while
/// [`CHURN_WATCHERS`] WatchQuote streams are open (half on the single-hop
/// pair, half on the 3-hop route) and a writer makes
/// [`CHURN_WRITES_PER_SEC`] pool writes a second, alternating a bin of a
/// pool the watchers use and the configuration of an unrelated pool. Then
/// how many watches survived (must be all) and how many quotes they got.
async fn churn(
    channels: &[Channel],
    options: &BenchOptions,
    single: GetQuoteRequest,
    redis_ops: f64,
) -> Result<Vec<Figure>, BenchError> {
    use std::sync::atomic::{AtomicU64, Ordering};

    use futures_util::StreamExt;
    use openoes::proto::quote::v1::{UpsertBinsRequest, WatchQuoteRequest};

    let mut client = QuoteServiceClient::new(channels[0].clone());
    client
        .upsert_pool(bench_pool("BENCH-CHURN", "BENCH-X", "BENCH-Y"))
        .await
        .map_err(|e| BenchError::Gateway(format!("UpsertPool BENCH-CHURN: {e}")))?;
    let ended = Arc::new(AtomicU64::new(0));
    let pushed = Arc::new(AtomicU64::new(0));
    let first_end = Arc::new(std::sync::Mutex::new(None::<String>));
    let stop = tokio_util::sync::CancellationToken::new();
    let mut watchers = Vec::new();
    for i in 0..CHURN_WATCHERS {
        let mut client = QuoteServiceClient::new(channels[i % channels.len()].clone());
        let token_out = if i % 2 == 0 {
            BENCH_TOKENS[1]
        } else {
            BENCH_TOKENS[3]
        };
        let request = WatchQuoteRequest {
            token_in: BENCH_TOKENS[0].into(),
            token_out: token_out.into(),
            amount: THREE_HOP_AMOUNT.to_string(),
            ..WatchQuoteRequest::default()
        };
        let mut stream = client
            .watch_quote(request)
            .await
            .map_err(|e| BenchError::Gateway(format!("WatchQuote: {e}")))?
            .into_inner();
        let (ended, pushed, first_end, stop) = (
            Arc::clone(&ended),
            Arc::clone(&pushed),
            Arc::clone(&first_end),
            stop.clone(),
        );
        watchers.push(tokio::spawn(async move {
            loop {
                let next = tokio::select! {
                    () = stop.cancelled() => return,
                    next = stream.next() => next,
                };
                match next {
                    Some(Ok(m)) if m.quote.is_some() => {
                        pushed.fetch_add(1, Ordering::Relaxed);
                    }
                    Some(Ok(_)) => {}
                    other => {
                        ended.fetch_add(1, Ordering::Relaxed);
                        let why = match other {
                            Some(Err(e)) => format!("{:?}: {}", e.code(), e.message()),
                            _ => "ended".into(),
                        };
                        if let Ok(mut first) = first_end.lock() {
                            first.get_or_insert(why);
                        }
                        return;
                    }
                }
            }
        }));
    }
    // Open loop: writes on a fixed schedule whatever the gateway does.
    let writer = {
        let mut client = QuoteServiceClient::new(channels[0].clone());
        let stop = stop.clone();
        tokio::spawn(async move {
            let (mut writes, mut failed) = (0u64, 0u64);
            let mut tick =
                tokio::time::interval(Duration::from_millis(1000 / CHURN_WRITES_PER_SEC));
            loop {
                tokio::select! {
                    () = stop.cancelled() => return (writes, failed),
                    _ = tick.tick() => {}
                }
                let ok = if writes % 2 == 0 {
                    let y = 1_000_000 + writes % 1000;
                    client
                        .upsert_bins(UpsertBinsRequest {
                            pool_id: "BENCH-A-B".into(),
                            bins: vec![Bin {
                                bin_id: -20,
                                x_amount: "0".into(),
                                y_amount: y.to_string(),
                                price: String::new(),
                            }],
                            active_bin_id: None,
                        })
                        .await
                        .is_ok()
                } else {
                    let mut r = bench_pool("BENCH-CHURN", "BENCH-X", "BENCH-Y");
                    if let Some(p) = r.pool.as_mut() {
                        p.status = format!("rev-{writes}");
                    }
                    r.bins.clear();
                    r.replace_bins = false;
                    client.upsert_pool(r).await.is_ok()
                };
                writes += 1;
                failed += u64::from(!ok);
            }
        })
    };
    let mut figure = load(
        channels,
        options,
        "GetQuote single hop, churn",
        move |channel| {
            let mut client = QuoteServiceClient::new(channel);
            let request = single.clone();
            async move { client.get_quote(request).await.map(drop) }
        },
    )
    .await;
    stop.cancel();
    let (writes, failed_writes) = writer.await.unwrap_or((0, 0));
    for w in watchers {
        let _ = w.await;
    }
    figure.name = format!(
        "GetQuote single hop, churn: {CHURN_WRITES_PER_SEC} pool writes/s, {CHURN_WATCHERS} watchers"
    );
    figure.ratio_to_redis = Some(figure.ops_per_sec / redis_ops);
    let ended = ended.load(Ordering::Relaxed);
    let survival = Figure {
        name: format!(
            "WatchQuote survival: {}/{CHURN_WATCHERS} open, {} pushed, {writes} writes",
            CHURN_WATCHERS as u64 - ended,
            pushed.load(Ordering::Relaxed),
        ),
        // Watches that ended, and pool writes that failed.
        errors: ended + failed_writes,
        first_error: first_end.lock().ok().and_then(|f| f.clone()),
        ..Figure::default()
    };
    Ok(vec![figure, survival])
}

pub(crate) async fn connect(options: &BenchOptions) -> Result<Vec<Channel>, BenchError> {
    let mut channels = Vec::new();
    for _ in 0..options.connections.max(1) {
        let channel = Channel::from_shared(format!("http://{}", options.addr))
            .map_err(|e| BenchError::Gateway(e.to_string()))?
            .connect()
            .await
            .map_err(|e| BenchError::Gateway(e.to_string()))?;
        channels.push(channel);
    }
    Ok(channels)
}

/// A deep pool per token pair: 101 bins of 1,000,000 units around bin 0.
fn bench_pool(id: &str, x: &str, y: &str) -> UpsertPoolRequest {
    let pool = Pool {
        pool_id: id.into(),
        token_x: x.into(),
        token_y: y.into(),
        bin_step: 10,
        active_bin_id: 0,
        base_factor: 10_000,
        variable_fee_control: 40_000,
        max_volatility_accumulator: 350_000,
        protocol_share_bps: 500,
        ..Pool::default()
    };
    let bins = (-50..=50)
        .map(|id: i32| Bin {
            bin_id: id,
            x_amount: match id {
                0 => "500000".into(),
                id if id > 0 => "1000000".into(),
                _ => "0".into(),
            },
            y_amount: match id {
                0 => "500000".into(),
                id if id < 0 => "1000000".into(),
                _ => "0".into(),
            },
            price: String::new(),
        })
        .collect();
    UpsertPoolRequest {
        pool: Some(pool),
        bins,
        replace_bins: true,
    }
}

async fn setup_pools(channel: &Channel) -> Result<(), BenchError> {
    let mut client = QuoteServiceClient::new(channel.clone());
    for pair in BENCH_TOKENS.windows(2) {
        let id = format!("{}-{}", pair[0], pair[1].trim_start_matches("BENCH-"));
        client
            .upsert_pool(bench_pool(&id, pair[0], pair[1]))
            .await
            .map_err(|e| BenchError::Gateway(format!("UpsertPool {id}: {e}")))?;
    }
    Ok(())
}

/// The gRPC floor: Health/Check from the same client, closed loop, named
/// by the caller's table.
pub(crate) async fn grpc_floor(channels: &[Channel], options: &BenchOptions) -> Figure {
    let mut floor = load(channels, options, "gRPC floor: Health/Check", |channel| {
        let mut client = HealthClient::new(channel);
        async move {
            client
                .check(HealthCheckRequest {
                    service: String::new(),
                })
                .await
                .map(drop)
        }
    })
    .await;
    floor.name = format!(
        "gRPC floor: Health/Check, concurrency {}",
        options.concurrency
    );
    floor
}

/// Closed loop: `concurrency` tasks each send one request after another
/// for `duration`, spread over the channels. `call` makes one call on a
/// channel.
pub(crate) async fn load<F, Fut>(
    channels: &[Channel],
    options: &BenchOptions,
    what: &str,
    call: F,
) -> Figure
where
    F: Fn(Channel) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), tonic::Status>> + Send,
{
    let phase = Phase::counting(
        format!("{what}, concurrency {}", options.concurrency),
        Some(options.duration),
    );
    let deadline = Instant::now() + options.duration;
    let call = Arc::new(call);
    let mut tasks = Vec::new();
    for i in 0..options.concurrency {
        let channel = channels[i % channels.len()].clone();
        let call = Arc::clone(&call);
        let ops = phase.ops();
        tasks.push(tokio::spawn(async move {
            let mut histogram = new_histogram();
            let mut errors = 0u64;
            let mut first = None;
            while Instant::now() < deadline {
                let started = Instant::now();
                match call(channel.clone()).await {
                    Ok(_) => {
                        let _ = histogram.record(started.elapsed().as_micros() as u64);
                        ops.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                    Err(e) => {
                        errors += 1;
                        first.get_or_insert_with(|| format!("{:?}: {}", e.code(), e.message()));
                    }
                }
            }
            (histogram, errors, first)
        }));
    }
    let started = Instant::now();
    let mut histogram = new_histogram();
    let mut errors = 0;
    let mut first_error = None;
    for task in tasks {
        if let Ok((h, e, first)) = task.await {
            let _ = histogram.add(&h);
            errors += e;
            first_error = first_error.or(first);
        }
    }
    phase.finish();
    let elapsed = started.elapsed().max(options.duration).as_secs_f64();
    Figure {
        errors,
        first_error,
        ..Figure::latencies(&histogram, histogram.len() as f64 / elapsed)
    }
}

pub(crate) fn new_histogram() -> Histogram<u64> {
    // 1 us to 60 s, 3 significant digits: constant, valid bounds.
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds")
}

/// Runs `redis-benchmark` with `clients` connections and `requests`
/// requests of `command` against `url`; returns requests per second.
pub(crate) fn redis_benchmark(
    url: &str,
    clients: usize,
    requests: u64,
    command: &[&str],
) -> Result<f64, BenchError> {
    let name = command.first().copied().unwrap_or_default();
    let phase = Phase::start(
        format!("baseline redis-benchmark {name}, -c {clients}, {requests} requests"),
        None,
    );
    let output = Command::new("redis-benchmark")
        .args(["-u", url, "-c", &clients.to_string()])
        .args(["-n", &requests.to_string(), "--csv"])
        .args(command)
        .output()
        .map_err(|e| {
            BenchError::RedisBenchmark(format!("cannot run it ({e}); apt-get install redis-tools"))
        })?;
    phase.finish();
    parse_csv_rps(&String::from_utf8_lossy(&output.stdout), name)
}

/// The requests per second of `command` in redis-benchmark's CSV output
/// (`"test","rps",...`, the data line after the header).
fn parse_csv_rps(text: &str, command: &str) -> Result<f64, BenchError> {
    text.lines()
        .filter(|l| l.starts_with(&format!("\"{command}")))
        .filter_map(|l| l.split(',').nth(1))
        .filter_map(|v| v.trim_matches('"').parse::<f64>().ok())
        .next_back()
        .ok_or_else(|| BenchError::RedisBenchmark(format!("unexpected output: {text}")))
}

/// The figures as a table for a terminal.
pub fn table(figures: &[Figure]) -> String {
    let mut out = format!(
        "{:<64} {:>12} {:>9} {:>9} {:>9} {:>7} {:>8} {:>8}\n",
        "figure", "ops/s", "p50 us", "p99 us", "max us", "errors", "ratio", "x floor"
    );
    let ratio = |r: Option<f64>| r.map_or_else(|| "-".into(), |r| format!("{r:.3}"));
    let opt = |v: Option<u64>| v.map_or_else(|| "-".to_string(), |v| v.to_string());
    for f in figures {
        out += &format!(
            "{:<64} {:>12.0} {:>9} {:>9} {:>9} {:>7} {:>8} {:>8}\n",
            f.name,
            f.ops_per_sec,
            opt(f.p50_us),
            opt(f.p99_us),
            opt(f.max_us),
            f.errors,
            ratio(f.ratio_to_redis),
            ratio(f.ratio_to_floor),
        );
    }
    for f in figures {
        if let Some(e) = &f.first_error {
            out += &format!("first error of \"{}\": {e}\n", f.name);
        }
    }
    out
}

// === bench watch ===

/// How `bench watch` runs.
#[derive(Debug, Clone)]
pub struct WatchBenchOptions {
    /// The Redis to publish to and watch, `redis://[user:password@]host:port`.
    pub redis_url: String,
    /// Subscribers receiving every event.
    pub subscribers: usize,
    /// Events published per second.
    pub rate: u64,
    /// Publishing time.
    pub duration: Duration,
    /// Idle subscribers for the memory figure.
    pub idle_subscribers: usize,
}

/// The fan-out benchmark: the stream bridge in this process, `subscribers`
/// watching one stream, a publisher XADDing at `rate`; latency from XADD to
/// each subscriber, events lost, and this process's RSS with
/// `idle_subscribers` idle watches.
pub async fn watch(options: &WatchBenchOptions) -> Result<Vec<Figure>, BenchError> {
    use futures_util::StreamExt;
    use openoes::{
        config::{RedisConfig, RedisEndpointConfig, StreamsConfig},
        redis::Redis,
        streams::watch::WatchHub,
    };

    const KEY: &str = "bench:watch";
    let endpoint = RedisEndpointConfig {
        url: options.redis_url.clone(),
        ..RedisEndpointConfig::default()
    };
    let redis = Redis::new(&RedisConfig {
        master: endpoint.clone(),
        replica: endpoint,
        ..RedisConfig::default()
    })
    .map_err(|e| BenchError::Gateway(e.to_string()))?;
    let stop = tokio_util::sync::CancellationToken::new();
    let config = StreamsConfig {
        max_watch_subscribers: options.idle_subscribers.max(options.subscribers) + 1,
        ..StreamsConfig::default()
    };
    let hub = WatchHub::new(redis.master.clone(), config, stop.clone());
    let gateway_err = |e: &dyn std::fmt::Display| BenchError::Gateway(e.to_string());

    let xadd = [
        "XADD",
        "bench:baseline",
        "MAXLEN",
        "~",
        "10000",
        "*",
        "t",
        "0",
    ];
    let redis_ops = redis_benchmark(&options.redis_url, 50, 200_000, &xadd)?;

    let started = Instant::now();
    let total = options.rate * options.duration.as_secs();
    let mut receivers = Vec::new();
    for _ in 0..options.subscribers {
        let mut sub = hub
            .subscribe(KEY, "", Arc::new(|_| true))
            .await
            .map_err(|e| gateway_err(&e))?;
        receivers.push(tokio::spawn(async move {
            let mut histogram = new_histogram();
            let mut received = 0u64;
            let deadline = tokio::time::sleep(Duration::from_secs(30));
            tokio::pin!(deadline);
            while received < total {
                tokio::select! {
                    event = sub.next() => match event {
                        Some(Ok(event)) => {
                            let sent: u64 = event.field("t").parse().unwrap_or(0);
                            let now = started.elapsed().as_micros() as u64;
                            let _ = histogram.record(now.saturating_sub(sent).max(1));
                            received += 1;
                        }
                        _ => break,
                    },
                    () = &mut deadline => break,
                }
            }
            (histogram, received)
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Open loop: publish on a fixed schedule, whatever the subscribers do.
    let mut conn = redis.master.conn().await.map_err(|e| gateway_err(&e))?;
    let interval = Duration::from_secs_f64(1.0 / options.rate as f64);
    let phase = Phase::start(
        format!(
            "watch fan-out: {} subscribers, {}/s",
            options.subscribers, options.rate
        ),
        Some(options.duration),
    );
    let publish_start = Instant::now();
    for i in 0..total {
        let due = publish_start + interval.mul_f64(i as f64);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            tokio::time::sleep(wait).await;
        }
        let t = started.elapsed().as_micros() as u64;
        let _: String = redis::cmd("XADD")
            .arg(KEY)
            .arg("MAXLEN")
            .arg("~")
            .arg(100_000)
            .arg("*")
            .arg("t")
            .arg(t)
            .query_async(&mut *conn)
            .await
            .map_err(|e| gateway_err(&e))?;
    }
    let published_in = publish_start.elapsed();
    let mut histogram = new_histogram();
    let mut received = 0;
    for receiver in receivers {
        if let Ok((h, r)) = receiver.await {
            let _ = histogram.add(&h);
            received += r;
        }
    }
    phase.finish();
    // The memory figure after the fan-out, so 10,000 subscriptions made and
    // dropped just before do not weigh on the fan-out's latency.
    let phase = Phase::start(
        format!(
            "{} idle watches, for the memory figure",
            options.idle_subscribers
        ),
        None,
    );
    let rss_before = rss_kib();
    let mut idle = Vec::new();
    for _ in 0..options.idle_subscribers {
        idle.push(
            hub.subscribe(KEY, "", Arc::new(|_| true))
                .await
                .map_err(|e| gateway_err(&e))?,
        );
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_idle = rss_kib();
    drop(idle);
    phase.finish();

    stop.cancel();
    let lost = total * options.subscribers as u64 - received;
    Ok(vec![
        Figure {
            name: "redis-benchmark XADD, -c 50".into(),
            ops_per_sec: redis_ops,
            ratio_to_redis: Some(1.0),
            ..Figure::default()
        },
        Figure {
            name: format!(
                "watch fan-out: {} subscribers, {}/s for {:?} (published in {:.1}s)",
                options.subscribers,
                options.rate,
                options.duration,
                published_in.as_secs_f64()
            ),
            errors: lost,
            ratio_to_redis: Some(options.rate as f64 / redis_ops),
            ..Figure::latencies(&histogram, received as f64 / published_in.as_secs_f64())
        },
        Figure {
            name: format!(
                "RSS: {rss_before} KiB, {rss_idle} KiB with {} idle watches",
                options.idle_subscribers
            ),
            ..Figure::default()
        },
    ])
}

/// This process's resident memory, KiB (Linux).
pub fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .map(str::to_string)
        })
        .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        .unwrap_or(0)
}
