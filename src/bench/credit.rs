//! `bench credit`: the credit flow through a gateway serving both roles.
//!
//! - GetCreditInventory, closed loop at the given concurrency, against
//!   `redis-benchmark` HGETALL of the same CI hash with the same client
//!   count, and against the gRPC floor (Health/Check, same client): the
//!   ratios.
//! - The round trip: RequestCredit with `wait`, answered by auto-accepting
//!   exchange subscribers in this process (SubscribeCreditRequests +
//!   RespondToCreditRequest), at a fixed rate (open loop: latency counts
//!   from when the request was due, so a stall is not hidden), and closed
//!   loop at the given concurrency for the maximum sustained rate.
//!
//! Every round trip uses a user of its own, so no request waits for
//! another's decision (one request in flight per user and asset).
//!
//! `bench pledge` measures CreatePledge the same way (a pool of users with
//! a large deposit each, a user never in two pledges at once) next to the
//! credit round trip, in the same run.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use futures_util::StreamExt;
use openoes::proto::credit::v1::{
    CreditDecision, CreditRequestStatus, GetCreditInventoryRequest, RequestCreditRequest,
    RespondToCreditRequestRequest, SubscribeCreditRequestsRequest,
    credit_service_client::CreditServiceClient as Client,
};
use tokio::sync::Semaphore;
use tonic::transport::Channel;

use super::{BenchError, BenchOptions, Figure, connect, load, new_histogram, redis_benchmark};
use crate::progress::Phase;

/// Auto-accepting exchange subscribers.
const SUBSCRIBERS: usize = 4;
/// Answers each subscriber has in flight at most.
const ANSWERS_IN_FLIGHT: usize = 64;
/// Round trips in flight at most in the paced run; more count as errors.
const MAX_OUTSTANDING: usize = 10_000;
/// How long a round trip may wait for its decision.
const WAIT: Duration = Duration::from_secs(10);

/// When each step of a round trip happened, by user (one round trip per
/// user), all on this process's clock: sent, delivered to the exchange,
/// its answer acknowledged, RequestCredit answered.
#[derive(Clone, Default)]
pub(crate) struct Legs(
    Arc<std::sync::Mutex<std::collections::HashMap<String, [Option<Instant>; 4]>>>,
);

impl Legs {
    fn mark(&self, user: &str, step: usize) {
        if let Ok(mut legs) = self.0.lock() {
            legs.entry(user.to_string()).or_default()[step] = Some(Instant::now());
        }
    }

    /// The three legs, p50/p99/max each, over the round trips fully seen.
    fn figures(&self) -> Vec<Figure> {
        let names = [
            "leg 1: RequestCredit -> delivered to the exchange (script on M, M->R, group read, push)",
            "leg 2: RespondToCreditRequest (screen, XADD on R) -> acknowledged",
            "leg 3: response on R -> applied on M -> RequestCredit answered",
        ];
        let mut histograms: Vec<_> = names.iter().map(|_| new_histogram()).collect();
        if let Ok(legs) = self.0.lock() {
            for steps in legs.values() {
                if let [Some(a), Some(b), Some(c), Some(d)] = steps {
                    for (h, (from, to)) in histograms.iter_mut().zip([(a, b), (b, c), (c, d)]) {
                        let _ =
                            h.record(to.saturating_duration_since(*from).as_micros().max(1) as u64);
                    }
                }
            }
        }
        names
            .iter()
            .zip(&histograms)
            .map(|(name, h)| Figure {
                name: format!("{name} (paced)"),
                ..Figure::latencies(h, 0.0)
            })
            .collect()
    }
}

/// Runs the credit benchmark; `rate` is the paced round trips per second.
pub async fn run(options: &BenchOptions, rate: u64) -> Result<Vec<Figure>, BenchError> {
    let channels = connect(options).await?;
    let legs = Legs::default();
    let exchange: Vec<_> = (0..SUBSCRIBERS)
        .map(|i| {
            let channel = channels[i % channels.len()].clone();
            tokio::spawn(accept_everything(channel, i, Some(legs.clone())))
        })
        .collect();
    // Unique per run: a rerun against the same Redis starts from fresh users.
    let run_id = std::process::id();
    let next = Arc::new(AtomicU64::new(0));

    // The CI read: one user's BTC credit, made through the flow itself.
    let user = format!("bench-{run_id}-ci");
    round_trip(channels[0].clone(), &user, "BTC", None)
        .await
        .map_err(gateway)?;
    let key = format!("CI:{user}:BTC");
    let requests = (options.duration.as_secs_f64() * 50_000.0).max(10_000.0) as u64;
    let redis_ops = redis_benchmark(
        &options.redis_url,
        options.concurrency,
        requests,
        &["HGETALL", &key],
    )?;
    let mut figures = vec![Figure {
        name: format!(
            "redis-benchmark HGETALL CI hash, -c {}",
            options.concurrency
        ),
        ops_per_sec: redis_ops,
        ratio_to_redis: Some(1.0),
        ..Figure::default()
    }];
    let mut floor = super::grpc_floor(&channels, options).await;
    floor.ratio_to_redis = Some(floor.ops_per_sec / redis_ops);
    floor.ratio_to_floor = Some(1.0);
    let floor_ops = floor.ops_per_sec;
    figures.push(floor);
    let mut read = load(&channels, options, "GetCreditInventory", move |channel| {
        let mut client = Client::new(channel);
        let request = GetCreditInventoryRequest {
            user_id: user.clone(),
            asset: "BTC".into(),
        };
        async move { client.get_credit_inventory(request).await.map(drop) }
    })
    .await;
    read.name = format!("GetCreditInventory, concurrency {}", options.concurrency);
    read.ratio_to_redis = Some(read.ops_per_sec / redis_ops);
    read.ratio_to_floor = Some(read.ops_per_sec / floor_ops);
    figures.push(read);

    let [mut paced, late] = paced(
        &channels,
        rate,
        options.duration,
        run_id,
        Arc::clone(&next),
        legs.clone(),
    )
    .await;
    paced.name = format!("credit round trip (RequestCredit + wait), paced {rate}/s");
    figures.extend([paced, late]);
    figures.extend(legs.figures());

    figures.push(max_rate(&channels, options, run_id, Arc::clone(&next)).await);
    for task in exchange {
        task.abort();
    }
    Ok(figures)
}

fn gateway(e: tonic::Status) -> BenchError {
    BenchError::Gateway(e.to_string())
}

/// One RequestCredit with wait; an error unless it comes back accepted.
async fn round_trip(
    channel: Channel,
    user: &str,
    asset: &str,
    legs: Option<Legs>,
) -> Result<(), tonic::Status> {
    let request = RequestCreditRequest {
        user_id: user.into(),
        asset: asset.into(),
        change: "+1".into(),
        chain: "bench".into(),
        address: "bench-address".into(),
        request_id: String::new(),
        wait: prost_types::Duration::try_from(WAIT).ok(),
    };
    if let Some(legs) = &legs {
        legs.mark(user, 0);
    }
    let record = Client::new(channel)
        .request_credit(request)
        .await?
        .into_inner()
        .credit_request;
    if let Some(legs) = &legs {
        legs.mark(user, 3);
    }
    match record.map(|r| r.status()) {
        Some(CreditRequestStatus::Accepted) => Ok(()),
        other => Err(tonic::Status::internal(format!(
            "round trip ended {other:?}"
        ))),
    }
}

/// An exchange backend that accepts every request, answering up to
/// [`ANSWERS_IN_FLIGHT`] at once (as a real backend would, rather than one
/// after another), until aborted.
pub(crate) async fn accept_everything(channel: Channel, i: usize, legs: Option<Legs>) {
    let client = Client::new(channel);
    let in_flight = Arc::new(Semaphore::new(ANSWERS_IN_FLIGHT));
    loop {
        let subscribed = client
            .clone()
            .subscribe_credit_requests(SubscribeCreditRequestsRequest {
                group: String::new(),
                consumer: format!("bench-exchange-{i}"),
            })
            .await;
        if let Ok(deliveries) = subscribed {
            let mut deliveries = deliveries.into_inner();
            while let Some(Ok(delivery)) = deliveries.next().await {
                let Some(request) = delivery.credit_request else {
                    continue;
                };
                let Ok(permit) = Arc::clone(&in_flight).acquire_owned().await else {
                    return;
                };
                if let Some(legs) = &legs {
                    legs.mark(&request.user_id, 1);
                }
                let mut client = client.clone();
                let legs = legs.clone();
                tokio::spawn(async move {
                    let _permit = permit;
                    let answer = RespondToCreditRequestRequest {
                        request_id: request.request_id,
                        decision: CreditDecision::Accept as i32,
                        reject_reason: String::new(),
                    };
                    match client.respond_to_credit_request(answer).await {
                        Ok(_) => {
                            if let Some(legs) = &legs {
                                legs.mark(&request.user_id, 2);
                            }
                        }
                        Err(e) => tracing::warn!(error = %e, "bench exchange could not respond"),
                    }
                });
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Closed loop at the options' concurrency: the maximum rate of credit
/// round trips, each for a fresh user numbered from `next`.
async fn max_rate(
    channels: &[Channel],
    options: &BenchOptions,
    run_id: u32,
    next: Arc<AtomicU64>,
) -> Figure {
    let mut max = load(
        channels,
        options,
        "credit round trip, max rate",
        move |channel| {
            let n = next.fetch_add(1, Ordering::Relaxed);
            async move { round_trip(channel, &format!("bench-{run_id}-{n}"), "BTC", None).await }
        },
    )
    .await;
    max.name = format!(
        "credit round trip, max rate (concurrency {})",
        options.concurrency
    );
    max
}

/// Open loop: a round trip due every 1/rate s for `duration`, each timed
/// from when it was due.
async fn paced(
    channels: &[Channel],
    rate: u64,
    duration: Duration,
    run_id: u32,
    next: Arc<AtomicU64>,
    legs: Legs,
) -> [Figure; 2] {
    paced_with(
        channels,
        rate,
        duration,
        "credit round trip",
        move |channel| {
            let n = next.fetch_add(1, Ordering::Relaxed);
            let legs = legs.clone();
            async move {
                round_trip(channel, &format!("bench-{run_id}-{n}"), "BTC", Some(legs)).await
            }
        },
    )
    .await
}

/// [`paced`] with any round trip: the round trips, and how late each was
/// sent.
///
/// The schedule is kept by a thread of its own (`std::thread::sleep`, tens
/// of microseconds late), not by tokio's timer, whose 1 ms ticks would send
/// each call up to a millisecond after it was due and count that against
/// the gateway. The second figure says how late the calls really started.
async fn paced_with<F, Fut>(
    channels: &[Channel],
    rate: u64,
    duration: Duration,
    what: &str,
    call: F,
) -> [Figure; 2]
where
    F: Fn(Channel) -> Fut + Send + 'static,
    Fut: Future<Output = Result<(), tonic::Status>> + Send + 'static,
{
    let period = Duration::from_secs(1) / u32::try_from(rate.max(1)).unwrap_or(u32::MAX);
    let total = (duration.as_secs_f64() * rate as f64) as u64;
    let outstanding = Arc::new(Semaphore::new(MAX_OUTSTANDING));
    let phase = Phase::counting(format!("{what}, paced {rate}/s"), Some(duration));
    let ops = phase.ops();
    let runtime = tokio::runtime::Handle::current();
    let (finished, mut results) = tokio::sync::mpsc::channel(MAX_OUTSTANDING);
    let channels = channels.to_vec();
    let pacer = std::thread::spawn(move || {
        let started = Instant::now();
        let mut dropped = 0;
        for i in 0..total {
            let due = started + period * u32::try_from(i).unwrap_or(u32::MAX);
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            let Ok(permit) = Arc::clone(&outstanding).try_acquire_owned() else {
                dropped += 1;
                continue;
            };
            let call = call(channels[i as usize % channels.len()].clone());
            let (ops, finished) = (Arc::clone(&ops), finished.clone());
            runtime.spawn(async move {
                let late = due.elapsed();
                let result = call.await;
                if result.is_ok() {
                    ops.fetch_add(1, Ordering::Relaxed);
                }
                let _ = finished.send((result, late, due.elapsed())).await;
                drop(permit);
            });
        }
        dropped
    });
    let mut histogram = new_histogram();
    let mut lateness = new_histogram();
    let (mut errors, mut received) = (0, 0);
    let mut first_error = None;
    while let Some((result, late, latency)) = results.recv().await {
        received += 1;
        let _ = lateness.record(late.as_micros() as u64);
        match result {
            Ok(()) => {
                let _ = histogram.record(latency.as_micros() as u64);
            }
            Err(e) => {
                errors += 1;
                first_error.get_or_insert_with(|| format!("{:?}: {}", e.code(), e.message()));
            }
        }
    }
    // The channel closes once the pacer and every call are done.
    let dropped = pacer.join().unwrap_or(total);
    if dropped > 0 {
        errors += dropped;
        first_error = Some(format!("{dropped} not sent: {MAX_OUTSTANDING} in flight"));
    }
    // A call that panicked sent nothing back.
    let lost = total - dropped - received;
    if lost > 0 {
        errors += lost;
        first_error.get_or_insert_with(|| format!("{lost} calls panicked"));
    }
    phase.finish();
    let sent = lateness.len() as f64 / duration.as_secs_f64();
    [
        Figure {
            errors,
            first_error,
            ..Figure::latencies(&histogram, histogram.len() as f64 / duration.as_secs_f64())
        },
        Figure {
            name: format!("  {what}: sent behind schedule by (client side, included above)"),
            ..Figure::latencies(&lateness, sent)
        },
    ]
}

/// Users of the pledge benchmark.
const PLEDGE_USERS: usize = 512;

/// Runs the pledge benchmark: the credit round trip and the CreatePledge
/// round trip (with wait, auto-accepting exchange), paced at `rate` and at
/// the maximum rate, in one run.
pub async fn pledge(options: &BenchOptions, rate: u64) -> Result<Vec<Figure>, BenchError> {
    use openoes::proto::pledge::v1::{
        CreatePledgeRequest, PledgeStatus, RecordDepositRequest,
        pledge_service_client::PledgeServiceClient,
    };
    let channels = connect(options).await?;
    let exchange: Vec<_> = (0..SUBSCRIBERS)
        .map(|i| {
            tokio::spawn(accept_everything(
                channels[i % channels.len()].clone(),
                i,
                None,
            ))
        })
        .collect();
    let run_id = std::process::id();
    // The pool: each user with a deposit that a million pledges cannot use up.
    let free = UserPool::default();
    for u in 0..PLEDGE_USERS {
        let user = format!("bench-{run_id}-p{u}");
        PledgeServiceClient::new(channels[u % channels.len()].clone())
            .record_deposit(RecordDepositRequest {
                request_id: format!("{user}-dep"),
                user_id: user.clone(),
                asset: "BTC".into(),
                amount: "1000000000".into(),
                chain: "bench".into(),
                address: "bench-address".into(),
                tx_id: String::new(),
            })
            .await
            .map_err(gateway)?;
        free.put(user).await;
    }
    let next = Arc::new(AtomicU64::new(0));
    let pledge_trip = {
        let next = Arc::clone(&next);
        move |channel: Channel| {
            let free = free.clone();
            let n = next.fetch_add(1, Ordering::Relaxed);
            async move {
                // A user not in a pledge now (one in flight per user and asset).
                let user = free.take().await;
                let answer = PledgeServiceClient::new(channel)
                    .create_pledge(CreatePledgeRequest {
                        request_id: format!("bench-{run_id}-pl{n}"),
                        user_id: user.clone(),
                        asset: "BTC".into(),
                        amount: "1".into(),
                        chain: "bench".into(),
                        address: "bench-address".into(),
                        wait: prost_types::Duration::try_from(WAIT).ok(),
                    })
                    .await;
                free.put(user).await;
                match answer?.into_inner().pledge.map(|p| p.status()) {
                    Some(PledgeStatus::Active) => Ok(()),
                    other => Err(tonic::Status::internal(format!("pledge ended {other:?}"))),
                }
            }
        }
    };

    let mut figures = Vec::new();
    let [mut credit, credit_late] = paced(
        &channels,
        rate,
        options.duration,
        run_id,
        Arc::clone(&next),
        Legs::default(),
    )
    .await;
    credit.name = format!("credit round trip (RequestCredit + wait), paced {rate}/s");
    let [mut pledged, pledge_late] = paced_with(
        &channels,
        rate,
        options.duration,
        "pledge round trip",
        pledge_trip.clone(),
    )
    .await;
    pledged.name = format!("pledge round trip (CreatePledge + wait), paced {rate}/s");
    pledged.ratio_to_redis = None;
    figures.extend([credit, credit_late, pledged, pledge_late]);

    let credit_max = max_rate(&channels, options, run_id, Arc::clone(&next)).await;
    let mut pledge_max = load(
        &channels,
        options,
        "pledge round trip, max rate",
        pledge_trip,
    )
    .await;
    pledge_max.name = format!(
        "pledge round trip, max rate (concurrency {})",
        options.concurrency
    );
    figures.extend([credit_max, pledge_max]);
    for task in exchange {
        task.abort();
    }
    Ok(figures)
}

/// Users not in a pledge right now.
#[derive(Clone, Default)]
struct UserPool(
    Arc<(
        tokio::sync::Mutex<std::collections::VecDeque<String>>,
        tokio::sync::Notify,
    )>,
);

impl UserPool {
    async fn put(&self, user: String) {
        self.0.0.lock().await.push_back(user);
        self.0.1.notify_one();
    }

    async fn take(&self) -> String {
        loop {
            if let Some(user) = self.0.0.lock().await.pop_front() {
                return user;
            }
            self.0.1.notified().await;
        }
    }
}
