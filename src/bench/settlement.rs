//! `bench settlement`: SettlementService through a gateway serving both
//! roles with both settlement keys (`openoes dev` has them).
//!
//! - A cycle of [`LINES`] reports (10 per user; every user first gets
//!   credit through the credit flow, auto-accepted in this process):
//!   SubmitSettlementReport until the WSP's record is on R (with wait),
//!   then ConfirmSettlement COMPLETED of every report (credit and custody
//!   moved in one script each), closed loop; CloseSettlementCycle of it.
//! - A cycle of `--reports` (100,000 by default) reports, submitted the
//!   same way and not confirmed: CloseSettlementCycle (the exchange's tree
//!   and signature, the WSP's recomputation and check) timed to RECORDED,
//!   then GetSettlementProof, closed loop, and the proof's size.
//!
//! Next to them, in the same run: `redis-benchmark` XADD (what every
//! submission and verdict does at least once) and the gRPC floor
//! (Health/Check), with the ratios.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use openoes::proto::{
    credit::v1::{RequestCreditRequest, credit_service_client::CreditServiceClient},
    settlement::v1::{
        CloseSettlementCycleRequest, ConfirmSettlementRequest, CycleStatus, Delivery,
        GetSettlementCycleRequest, GetSettlementProofRequest, NetPosition, SettlementOutcome,
        SettlementStatus, SubmitSettlementReportRequest, TradeLeg,
        settlement_service_client::SettlementServiceClient as Client,
    },
};
use tonic::transport::Channel;

use super::{
    BenchError, BenchOptions, Figure, connect, credit::accept_everything, grpc_floor, load,
    redis_benchmark,
};
use crate::progress::Phase;

/// Reports of the confirmation cycle.
const LINES: u64 = 10_000;
/// Users the reports are spread over.
const USERS: u64 = 1_000;
/// How long a submission or close may wait for the WSP's record.
const WAIT: Duration = Duration::from_secs(20);

/// Runs the settlement benchmark; `reports` is the size of the cycle
/// whose close is timed.
pub async fn run(options: &BenchOptions, reports: u64) -> Result<Vec<Figure>, BenchError> {
    let channels = connect(options).await?;
    let exchange: Vec<_> = (0..4)
        .map(|i| {
            tokio::spawn(accept_everything(
                channels[i % channels.len()].clone(),
                i,
                None,
            ))
        })
        .collect();
    let run_id = std::process::id();
    let user = move |n: u64| format!("sbench-{run_id}-{}", n % USERS);

    // Every user gets USDT credit through the credit flow (a user the WSP
    // never granted credit to is refused as unknown).
    let granted = Arc::new(AtomicU64::new(0));
    let counter = Arc::clone(&granted);
    let setup = BenchOptions {
        duration: Duration::from_secs(3600),
        ..options.clone()
    };
    run_n(
        &channels,
        &setup,
        "setup: credit for each user",
        USERS,
        move |channel| {
            let n = counter.fetch_add(1, Ordering::Relaxed);
            async move { grant(channel, &user(n)).await }
        },
    )
    .await
    .map_err(|e| BenchError::Gateway(format!("granting credit: {e}")))?;

    let requests = (options.duration.as_secs_f64() * 50_000.0).max(10_000.0) as u64;
    let redis_ops = redis_benchmark(
        &options.redis_url,
        options.concurrency,
        requests,
        &[
            "XADD",
            "sbench-baseline",
            "MAXLEN",
            "~",
            "1000",
            "*",
            "type",
            "settlement",
            "report_id",
            "r",
        ],
    )?;
    let mut figures = vec![Figure {
        name: format!("redis-benchmark XADD, -c {}", options.concurrency),
        ops_per_sec: redis_ops,
        ratio_to_redis: Some(1.0),
        ..Figure::default()
    }];
    let mut floor = grpc_floor(&channels, options).await;
    floor.ratio_to_redis = Some(floor.ops_per_sec / redis_ops);
    figures.push(floor);

    // The 10,000-line cycle: submitted, confirmed, closed.
    let cycle = format!("sbench-{run_id}-lines");
    let mut submitted = submit_all(&channels, options, &cycle, LINES, user).await?;
    submitted.name = format!("SubmitSettlementReport to RECORDED, {LINES} reports");
    submitted.ratio_to_redis = Some(submitted.ops_per_sec / redis_ops);
    figures.push(submitted);
    let next = Arc::new(AtomicU64::new(0));
    let counter = Arc::clone(&next);
    let cycle_id = cycle.clone();
    let mut confirmed = run_n(
        &channels,
        options,
        "ConfirmSettlement",
        LINES,
        move |channel| {
            let n = counter.fetch_add(1, Ordering::Relaxed);
            let report_id = format!("{cycle_id}-{n}");
            async move { confirm(channel, report_id).await }
        },
    )
    .await
    .map_err(|e| BenchError::Gateway(format!("confirming: {e}")))?;
    confirmed.name = format!(
        "ConfirmSettlement COMPLETED, {LINES}-line cycle, concurrency {}",
        options.concurrency
    );
    confirmed.ratio_to_redis = Some(confirmed.ops_per_sec / redis_ops);
    figures.push(confirmed);
    figures.push(close(&channels[0], &cycle, LINES).await?);

    // The big cycle: submitted, closed, proved.
    let big = format!("sbench-{run_id}-big");
    let mut submitted = submit_all(&channels, options, &big, reports, user).await?;
    submitted.name = format!("SubmitSettlementReport to RECORDED, {reports} reports");
    submitted.ratio_to_redis = Some(submitted.ops_per_sec / redis_ops);
    figures.push(submitted);
    figures.push(close(&channels[0], &big, reports).await?);
    let proof = Client::new(channels[0].clone())
        .get_settlement_proof(GetSettlementProofRequest {
            report_id: format!("{big}-0"),
        })
        .await
        .map_err(|e| BenchError::Gateway(format!("GetSettlementProof: {e}")))?
        .into_inner()
        .proof
        .ok_or_else(|| BenchError::Gateway("no proof".into()))?;
    let big_id = big.clone();
    let counter = Arc::new(AtomicU64::new(0));
    let mut proving = load(&channels, options, "GetSettlementProof", move |channel| {
        let n = counter.fetch_add(1, Ordering::Relaxed) % reports;
        let report_id = format!("{big_id}-{n}");
        async move {
            Client::new(channel)
                .get_settlement_proof(GetSettlementProofRequest { report_id })
                .await
                .map(drop)
        }
    })
    .await;
    proving.name = format!(
        "GetSettlementProof, {reports}-leaf tree: {} hashes, tlog-proof {} bytes",
        proof.audit_path.len(),
        proof.tlog_proof.len()
    );
    proving.ratio_to_redis = Some(proving.ops_per_sec / redis_ops);
    figures.push(proving);
    for task in exchange {
        task.abort();
    }
    Ok(figures)
}

/// `n` calls, closed loop at the options' concurrency; the figure, or the
/// first error if any call failed.
async fn run_n<F, Fut>(
    channels: &[Channel],
    options: &BenchOptions,
    what: &str,
    n: u64,
    call: F,
) -> Result<Figure, String>
where
    F: Fn(Channel) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), tonic::Status>> + Send,
{
    let phase = Phase::counting(
        format!("{what}, {n} calls, concurrency {}", options.concurrency),
        None,
    );
    let ops = phase.ops();
    let left = Arc::new(AtomicU64::new(n));
    let started = Instant::now();
    let gate = Arc::clone(&left);
    let bounded = BenchOptions {
        duration: Duration::from_secs(3600),
        ..options.clone()
    };
    // `load` runs until its deadline; each task stops once `n` are taken.
    let mut figure = load_until(channels, &bounded, move |channel| {
        let taken = gate
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |l| l.checked_sub(1))
            .is_ok();
        let call = taken.then(|| call(channel));
        let ops = Arc::clone(&ops);
        async move {
            match call {
                Some(call) => {
                    call.await?;
                    ops.fetch_add(1, Ordering::Relaxed);
                    Ok(true)
                }
                None => Ok(false),
            }
        }
    })
    .await;
    phase.finish();
    figure.ops_per_sec = n as f64 / started.elapsed().as_secs_f64();
    match figure.first_error.take() {
        Some(e) if figure.errors > 0 => Err(e),
        _ => Ok(figure),
    }
}

/// Like [`load`], but each task stops when its call says there is no more
/// work (`Ok(false)`).
async fn load_until<F, Fut>(channels: &[Channel], options: &BenchOptions, call: F) -> Figure
where
    F: Fn(Channel) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<bool, tonic::Status>> + Send,
{
    let call = Arc::new(call);
    let mut tasks = Vec::new();
    for i in 0..options.concurrency {
        let channel = channels[i % channels.len()].clone();
        let call = Arc::clone(&call);
        tasks.push(tokio::spawn(async move {
            let mut histogram = super::new_histogram();
            let (mut errors, mut first) = (0u64, None);
            loop {
                let started = Instant::now();
                match call(channel.clone()).await {
                    Ok(true) => {
                        let _ = histogram.record(started.elapsed().as_micros() as u64);
                    }
                    Ok(false) => break,
                    Err(e) => {
                        errors += 1;
                        first.get_or_insert_with(|| format!("{:?}: {}", e.code(), e.message()));
                    }
                }
            }
            (histogram, errors, first)
        }));
    }
    let mut histogram = super::new_histogram();
    let (mut errors, mut first_error) = (0, None);
    for task in tasks {
        if let Ok((h, e, first)) = task.await {
            let _ = histogram.add(&h);
            errors += e;
            first_error = first_error.or(first);
        }
    }
    Figure {
        errors,
        first_error,
        ..Figure::latencies(&histogram, 0.0)
    }
}

/// Submits `n` reports of `cycle` (report ids `<cycle>-<i>`), each waiting
/// for the WSP's record; an error unless every one is RECORDED.
async fn submit_all(
    channels: &[Channel],
    options: &BenchOptions,
    cycle: &str,
    n: u64,
    user: impl Fn(u64) -> String + Send + Sync + 'static,
) -> Result<Figure, BenchError> {
    let next = Arc::new(AtomicU64::new(0));
    let cycle = cycle.to_string();
    run_n(
        channels,
        options,
        "SubmitSettlementReport",
        n,
        move |channel| {
            let i = next.fetch_add(1, Ordering::Relaxed);
            let request = report(&format!("{cycle}-{i}"), &user(i), &cycle);
            async move {
                let r = Client::new(channel)
                    .submit_settlement_report(request)
                    .await?
                    .into_inner();
                if r.delivery != Delivery::Recorded as i32 {
                    return Err(tonic::Status::deadline_exceeded(
                        "not recorded within the wait",
                    ));
                }
                Ok(())
            }
        },
    )
    .await
    .map_err(|e| BenchError::Gateway(format!("submitting: {e}")))
}

/// A report: the user sold 100 USDT and bought 0.001 BTC.
fn report(id: &str, user: &str, cycle: &str) -> SubmitSettlementReportRequest {
    let leg = |asset: &str, amount: &str, price: &str| TradeLeg {
        asset: asset.into(),
        amount: amount.into(),
        price: price.into(),
    };
    let net = |asset: &str, net: &str| NetPosition {
        asset: asset.into(),
        net: net.into(),
    };
    SubmitSettlementReportRequest {
        report_id: id.into(),
        user_id: user.into(),
        cycle_id: cycle.into(),
        eod_time: Some(prost_types::Timestamp {
            seconds: 1_743_786_000,
            nanos: 0,
        }),
        bought: vec![leg("BTC", "0.001", "100000")],
        sold: vec![leg("USDT", "100", "1")],
        net_positions: vec![net("BTC", "+0.001"), net("USDT", "-100")],
        instructions: None,
        supersedes: String::new(),
        wait: prost_types::Duration::try_from(WAIT).ok(),
    }
}

/// Grants a user 1,000,000 USDT of credit through the credit flow.
async fn grant(channel: Channel, user: &str) -> Result<(), tonic::Status> {
    CreditServiceClient::new(channel)
        .request_credit(RequestCreditRequest {
            user_id: user.into(),
            asset: "USDT".into(),
            change: "+1000000".into(),
            chain: "bench".into(),
            address: "bench-address".into(),
            request_id: format!("grant-{user}"),
            wait: prost_types::Duration::try_from(WAIT).ok(),
        })
        .await
        .map(drop)
}

/// One ConfirmSettlement COMPLETED; an error unless it completed.
async fn confirm(channel: Channel, report_id: String) -> Result<(), tonic::Status> {
    let r = Client::new(channel)
        .confirm_settlement(ConfirmSettlementRequest {
            report_id,
            outcome: SettlementOutcome::Completed as i32,
            reason: String::new(),
        })
        .await?
        .into_inner()
        .report;
    match r.map(|r| r.status()) {
        Some(SettlementStatus::Completed) => Ok(()),
        other => Err(tonic::Status::internal(format!("confirm ended {other:?}"))),
    }
}

/// CloseSettlementCycle of `size` reports, timed until the WSP recorded it.
async fn close(channel: &Channel, cycle: &str, size: u64) -> Result<Figure, BenchError> {
    let phase = Phase::start(format!("CloseSettlementCycle, {size} reports"), None);
    let started = Instant::now();
    let closed = Client::new(channel.clone())
        .close_settlement_cycle(CloseSettlementCycleRequest {
            cycle_id: cycle.into(),
            wait: prost_types::Duration::try_from(Duration::from_secs(600)).ok(),
        })
        .await
        .map_err(|e| BenchError::Gateway(format!("CloseSettlementCycle: {e}")))?
        .into_inner();
    // Past the call's wait (a very large cycle), the WSP's record comes later.
    let mut recorded = closed.delivery == Delivery::Recorded as i32;
    let give_up = started + Duration::from_secs(600);
    while !recorded && Instant::now() < give_up {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let cycle = Client::new(channel.clone())
            .get_settlement_cycle(GetSettlementCycleRequest {
                cycle_id: cycle.into(),
            })
            .await
            .map_err(|e| BenchError::Gateway(format!("GetSettlementCycle: {e}")))?
            .into_inner()
            .cycle;
        recorded = cycle
            .is_some_and(|c| [CycleStatus::Verified, CycleStatus::Cosigned].contains(&c.status()));
    }
    let took = started.elapsed();
    phase.finish();
    if !recorded {
        return Err(BenchError::Gateway(format!("cycle {cycle} never recorded")));
    }
    let us = took.as_micros() as u64;
    Ok(Figure {
        name: format!("CloseSettlementCycle, {size} reports, to RECORDED (leaves/s; time in us)"),
        ops_per_sec: size as f64 / took.as_secs_f64(),
        p50_us: Some(us),
        p99_us: Some(us),
        max_us: Some(us),
        ..Figure::default()
    })
}
