//! SettlementService under faults, done for real: the WSP gateway runs as a
//! child process and is SIGKILLed, R is fully resynced (restarted empty, it
//! reloads from M and loses everything the exchange wrote on it), M is
//! restarted from its AOF, while reports, verdicts and credit traffic run.
//! The exchange gateway runs in this process (role Exchange only) and stays
//! up throughout.
//!
//! What must hold after: a report the exchange submitted is recorded by the
//! WSP exactly once however often R lost it; every report takes exactly one
//! verdict, applied exactly once; the books balance for every (user,
//! asset); a watcher resumed by cursor sees every event exactly once.
//!
//! The randomized test is seeded and reproducible: the seed is printed;
//! `SETTLEMENT_FAULT_SEED=<n>` replays one.

mod common;

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::Duration,
};

use common::{
    Gateway, GatewayProcess, Link,
    books::assert_books_balance,
    credit::{admin, backend, credit_health, hash, serving},
    free_addr,
    settlement::{self as s, get, report, reports, settled_nets, status, submit},
    xrange,
};
use futures_util::StreamExt;
use openoes::{
    config::{Config, Role},
    proto::{
        pledge::v1::{self as ppb, pledge_service_client::PledgeServiceClient},
        settlement::v1::{
            self as pb, settlement_service_client::SettlementServiceClient as Client,
        },
    },
};
use redis::aio::MultiplexedConnection;
use rust_decimal::Decimal;
use tokio::task::JoinHandle;
use tonic::{Code, Status, transport::Channel};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_types::StatusExt;

const EVENTS: &str = "mirror:settlement:events";
const CONFIRMATIONS: &str = "mirror:settlement:confirmation";
const REPORT_STREAM: &str = "mirror:settlement:individual:response";

/// Attempts of one call retried through transient failures (each waits
/// 100 ms or a submission's `wait`): far more than any fault here lasts.
const MAX_ATTEMPTS: usize = 600;

// === the two sides ===

/// An M + R link with the exchange gateway in this process and the WSP
/// gateway as a child process (to SIGKILL it).
struct Sides {
    link: Link,
    dir: tempfile::TempDir,
    _exchange_gateway: Gateway,
    /// To the exchange gateway (role Exchange: submits, closes, backends).
    exchange: Channel,
    wsp_config: Config,
    wsp: Option<GatewayProcess>,
    /// To the WSP gateway's address (the same across restarts).
    wsp_channel: Channel,
}

impl Sides {
    async fn start(durable_master: bool) -> Self {
        let link = Link::start_secured().await;
        if durable_master {
            link.make_master_durable().await;
        }
        let dir = tempfile::tempdir().expect("tmp");
        let base = s::config(&link, dir.path());
        let mut exchange_config = base.clone();
        exchange_config.roles = vec![Role::Exchange];
        // A backend that dies holding a delivery: redelivered soon.
        exchange_config.streams.claim_min_idle = Duration::from_millis(500);
        let (exchange_gateway, exchange) = serving(exchange_config).await;
        let mut wsp_config = base;
        wsp_config.roles = vec![Role::Wsp];
        wsp_config.grpc.listen = free_addr();
        let wsp = GatewayProcess::start(&wsp_config, dir.path());
        let wsp_channel = wsp.channel().await;
        credit_health(&wsp_channel, ServingStatus::Serving).await;
        Self {
            link,
            dir,
            _exchange_gateway: exchange_gateway,
            exchange,
            wsp_config,
            wsp: Some(wsp),
            wsp_channel,
        }
    }

    /// SIGKILLs the WSP gateway and reaps it.
    fn kill_wsp(&mut self) {
        let mut wsp = self.wsp.take().expect("the WSP gateway runs");
        wsp.child.kill().expect("SIGKILL");
        wsp.child.wait().expect("reaped");
    }

    /// Starts the WSP gateway again (same config, same address) and waits
    /// until it serves.
    async fn start_wsp(&mut self) {
        let wsp = GatewayProcess::start(&self.wsp_config, self.dir.path());
        self.wsp_channel = wsp.channel().await;
        credit_health(&self.wsp_channel, ServingStatus::Serving).await;
        self.wsp = Some(wsp);
    }

    /// Restarts R empty: it resyncs fully from M.
    async fn resync_r(&mut self) {
        self.link
            .topology
            .replica
            .restart()
            .await
            .expect("restart R");
        self.link
            .topology
            .wait_for_link()
            .await
            .expect("R resynced");
    }

    /// SIGKILLs M and starts it again from its AOF.
    async fn restart_m(&mut self) {
        self.link.topology.master.kill().await;
        self.link
            .topology
            .master
            .restart()
            .await
            .expect("restart M");
        self.link
            .topology
            .wait_for_link()
            .await
            .expect("link after M");
        credit_health(&self.wsp_channel, ServingStatus::Serving).await;
    }

    async fn m(&self) -> MultiplexedConnection {
        admin(self.link.topology.master.port()).await
    }

    async fn r(&self) -> MultiplexedConnection {
        admin(self.link.topology.replica.port()).await
    }
}

// === calls, retried through faults ===

fn reason(e: &Status) -> String {
    e.get_error_details()
        .error_info()
        .map(|i| i.reason.clone())
        .unwrap_or_default()
}

/// A failure a fault explains: the gateway or a Redis is away (UNAVAILABLE,
/// or the connection broke mid-call), or the call raced another writer
/// (ABORTED). The same call again (same ids) is safe: everything here is
/// idempotent.
fn transient(e: &Status) -> bool {
    match e.code() {
        Code::Unavailable | Code::Aborted | Code::Cancelled => true,
        // The gateway died mid-call: the transport's own error.
        Code::Unknown => {
            let m = e.message().to_ascii_lowercase();
            [
                "transport",
                "connection",
                "h2 protocol",
                "broken pipe",
                "stream",
            ]
            .iter()
            .any(|w| m.contains(w))
        }
        _ => false,
    }
}

/// Counts of what the faults and the races caused, printed at the end.
#[derive(Default)]
struct Stats {
    /// Submissions answered DELIVERY_PENDING (then resubmitted).
    pending: AtomicUsize,
    /// Calls failed by a fault and retried.
    transient: AtomicUsize,
    /// Completions refused ABORTED CREDIT_REQUEST_IN_FLIGHT (retried).
    in_flight: AtomicUsize,
    /// Completions refused INSUFFICIENT_CREDIT (then failed).
    insufficient: AtomicUsize,
}

impl Stats {
    fn print(&self) {
        eprintln!(
            "pending deliveries resubmitted: {}, transient failures retried: {}, \
             completions blocked by a pending credit request: {}, refused below zero: {}",
            self.pending.load(Ordering::Relaxed),
            self.transient.load(Ordering::Relaxed),
            self.in_flight.load(Ordering::Relaxed),
            self.insufficient.load(Ordering::Relaxed),
        );
    }
}

/// Submits `request` (same report_id every time) until the WSP's record
/// of it is visible on R: DELIVERY_PENDING and transient failures are
/// resubmitted.
async fn submit_until_recorded(
    ex: &mut Client<Channel>,
    request: &pb::SubmitSettlementReportRequest,
    stats: &Stats,
) -> pb::SettlementReport {
    for _ in 0..MAX_ATTEMPTS {
        match submit(ex, request.clone()).await {
            Ok((r, pb::Delivery::Recorded)) => return r,
            Ok((r, _)) => {
                assert_eq!(status(&r), pb::SettlementStatus::Submitted, "{r:?}");
                stats.pending.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) if transient(&e) => {
                stats.transient.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("submit {}: {e:?}", request.report_id),
        }
    }
    panic!("report {} never recorded", request.report_id);
}

/// GetSettlementReport, retried through transient failures.
async fn get_retrying(
    client: &mut Client<Channel>,
    id: &str,
) -> Result<pb::SettlementReport, Status> {
    for _ in 0..MAX_ATTEMPTS {
        match get(client, id).await {
            Err(e) if transient(&e) => tokio::time::sleep(Duration::from_millis(100)).await,
            other => return other,
        }
    }
    panic!("report {id} could not be read");
}

/// A verdict call, retried through transient failures except ABORTED,
/// which the caller handles.
async fn verdict_call(
    wsp: &mut Client<Channel>,
    id: &str,
    verdict: Verdict,
    stats: &Stats,
) -> Result<pb::SettlementReport, Status> {
    for _ in 0..MAX_ATTEMPTS {
        let result = match verdict {
            Verdict::Complete | Verdict::OverSell => wsp
                .confirm_settlement(pb::ConfirmSettlementRequest {
                    report_id: id.into(),
                    outcome: pb::SettlementOutcome::Completed as i32,
                    reason: String::new(),
                })
                .await
                .map(|r| r.into_inner().report),
            Verdict::Fail => wsp
                .confirm_settlement(pb::ConfirmSettlementRequest {
                    report_id: id.into(),
                    outcome: pb::SettlementOutcome::Failed as i32,
                    reason: "could not settle".into(),
                })
                .await
                .map(|r| r.into_inner().report),
            Verdict::Dispute(asset) => wsp
                .dispute_settlement(pb::DisputeSettlementRequest {
                    report_id: id.into(),
                    assets: vec![asset.to_string()],
                    reason: "the line is off".into(),
                    lines: Vec::new(),
                })
                .await
                .map(|r| r.into_inner().report),
        };
        match result {
            Ok(r) => return Ok(r.expect("report")),
            Err(e) if e.code() != Code::Aborted && transient(&e) => {
                stats.transient.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => return Err(e),
        }
    }
    panic!("no verdict on {id}");
}

/// Decides report `id` as planned and returns the status it ends in. A
/// completion blocked by a pending credit request of one of its pairs is
/// retried later; one that would take CI below zero must apply nothing and
/// is failed instead (an over-sell must always be).
async fn decide(
    wsp: &mut Client<Channel>,
    id: &str,
    planned: Verdict,
    stats: &Stats,
) -> pb::SettlementStatus {
    let mut verdict = planned;
    for _ in 0..MAX_ATTEMPTS {
        match verdict_call(wsp, id, verdict, stats).await {
            Ok(r) => {
                let want = match verdict {
                    Verdict::Complete => pb::SettlementStatus::Completed,
                    Verdict::OverSell => panic!("{id} would take CI below zero, yet: {r:?}"),
                    Verdict::Fail => pb::SettlementStatus::Failed,
                    Verdict::Dispute(_) => pb::SettlementStatus::Disputed,
                };
                assert_eq!(status(&r), want, "{id}: {r:?}");
                return want;
            }
            Err(e) if e.code() == Code::Aborted => {
                if reason(&e) == "CREDIT_REQUEST_IN_FLIGHT" {
                    stats.in_flight.fetch_add(1, Ordering::Relaxed);
                } else {
                    stats.transient.fetch_add(1, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e)
                if matches!(verdict, Verdict::Complete | Verdict::OverSell)
                    && e.code() == Code::FailedPrecondition
                    && reason(&e) == "INSUFFICIENT_CREDIT" =>
            {
                stats.insufficient.fetch_add(1, Ordering::Relaxed);
                // Nothing at all applied: the report awaits a verdict still.
                let r = get_retrying(wsp, id).await.expect("the report");
                assert_eq!(status(&r), pb::SettlementStatus::Reported, "{id}: {r:?}");
                assert!(r.applied.is_empty(), "{id}: {r:?}");
                verdict = Verdict::Fail;
            }
            Err(e) => panic!("verdict {verdict:?} on {id}: {e:?}"),
        }
    }
    panic!("{id} never decided");
}

// === 1. durable submission ===

/// Entries of the report stream on R carrying `report_id`.
async fn entries_on_r(r: &mut MultiplexedConnection, report_id: &str) -> Vec<String> {
    xrange(r, REPORT_STREAM)
        .await
        .into_iter()
        .filter(|(_, f)| f.get("report_id").map(String::as_str) == Some(report_id))
        .map(|(id, _)| id)
        .collect()
}

/// Events of `kind` about `report_id` in the settlement event log on M.
async fn events_of(m: &mut MultiplexedConnection, kind: &str, report_id: &str) -> usize {
    xrange(m, EVENTS)
        .await
        .iter()
        .filter(|(_, e)| e["type"] == kind && e["report_id"] == report_id)
        .count()
}

async fn books(m: &mut MultiplexedConnection) {
    let nets = settled_nets(m).await;
    assert_books_balance(m, &nets).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_published_while_the_wsp_is_down_survives_a_resync_of_r_and_is_recorded_once() {
    let mut sides = Sides::start(false).await;
    let _backend = backend(sides.exchange.clone(), "ex", |_| None);
    s::pledged(&sides.wsp_channel, "alice", "USDT", "1000").await;
    let mut ex = Client::new(sides.exchange.clone());
    let stats = Stats::default();

    // Published while nobody on the WSP side reads R: PENDING, and the
    // exchange gateway shows its own record, SUBMITTED.
    sides.kill_wsp();
    let mut first = report(
        "dur-1",
        "alice",
        "c-dur",
        &[("BTC", "0.01", "60000")],
        &[("USDT", "600", "1")],
    );
    first.wait = s::wait(300);
    let (r, delivery) = submit(&mut ex, first.clone()).await.expect("submit");
    assert_eq!(
        (delivery, status(&r)),
        (pb::Delivery::Pending, pb::SettlementStatus::Submitted)
    );
    let r = get(&mut ex, "dur-1").await.expect("the exchange's record");
    assert_eq!(status(&r), pb::SettlementStatus::Submitted);
    let mut on_r = sides.r().await;
    assert_eq!(entries_on_r(&mut on_r, "dur-1").await.len(), 1);

    // R fully resynced: the entry and the exchange's record are gone.
    sides.resync_r().await;
    let mut on_r = sides.r().await;
    assert!(
        entries_on_r(&mut on_r, "dur-1").await.is_empty(),
        "wiped with R"
    );
    let e = get_retrying(&mut ex, "dur-1")
        .await
        .expect_err("nothing left of it");
    assert_eq!(e.code(), Code::NotFound, "{e:?}");

    // The WSP back, the retry publishes it again and it is recorded once.
    sides.start_wsp().await;
    first.wait = s::wait(10_000);
    let r = tokio::time::timeout(
        Duration::from_secs(60),
        submit_until_recorded(&mut ex, &first, &stats),
    )
    .await
    .expect("recorded in time");
    assert_eq!(status(&r), pb::SettlementStatus::Reported);
    let republished = entries_on_r(&mut on_r, "dur-1").await;
    assert_eq!(republished.len(), 1, "published again, once");
    let mut m = sides.m().await;
    let records = reports(&mut m).await;
    assert_eq!(
        records.keys().collect::<Vec<_>>(),
        ["dur-1"],
        "one record on M"
    );
    assert_eq!(
        records["dur-1"]["entry_id"], republished[0],
        "of the entry published again"
    );
    assert_eq!(events_of(&mut m, "reported", "dur-1").await, 1);

    let mut wsp = Client::new(sides.wsp_channel.clone());
    let r = s::confirm(&mut wsp, "dur-1").await.expect("confirm");
    assert_eq!(status(&r), pb::SettlementStatus::Completed);
    assert_eq!(events_of(&mut m, "completed", "dur-1").await, 1);
    books(&mut m).await;

    // The same retry without a resync (the entry still on R) publishes
    // nothing more.
    sides.kill_wsp();
    let mut second = report(
        "dur-2",
        "alice",
        "c-dur",
        &[("ETH", "1", "3000")],
        &[("USDT", "300", "1")],
    );
    second.wait = s::wait(300);
    for _ in 0..2 {
        let (r, delivery) = submit(&mut ex, second.clone()).await.expect("submit");
        assert_eq!(
            (delivery, status(&r)),
            (pb::Delivery::Pending, pb::SettlementStatus::Submitted)
        );
    }
    assert_eq!(
        entries_on_r(&mut on_r, "dur-2").await.len(),
        1,
        "published once"
    );
    sides.start_wsp().await;
    second.wait = s::wait(10_000);
    let r = tokio::time::timeout(
        Duration::from_secs(60),
        submit_until_recorded(&mut ex, &second, &stats),
    )
    .await
    .expect("recorded in time");
    assert_eq!(status(&r), pb::SettlementStatus::Reported);
    assert_eq!(
        entries_on_r(&mut on_r, "dur-2").await.len(),
        1,
        "still once"
    );
    assert_eq!(events_of(&mut m, "reported", "dur-2").await, 1);
    let mut wsp = Client::new(sides.wsp_channel.clone());
    s::confirm(&mut wsp, "dur-2").await.expect("confirm");
    let confirmations: Vec<String> = xrange(&mut m, CONFIRMATIONS)
        .await
        .into_iter()
        .map(|(_, c)| format!("{}:{}", c["settlement_id"], c["status"]))
        .collect();
    assert_eq!(confirmations, ["dur-1:completed", "dur-2:completed"]);
    books(&mut m).await;
    stats.print();
}

// === 2. randomized, with every fault ===

/// The seed, printed; `SETTLEMENT_FAULT_SEED=<n>` replays one.
fn seed() -> u64 {
    let seed = std::env::var("SETTLEMENT_FAULT_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x005e_771e);
    eprintln!("SETTLEMENT_FAULT_SEED={seed}");
    seed
}

/// splitmix64.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// 0.001 to `whole`.999, three decimals.
    fn amount(&mut self, whole: u64) -> String {
        let n = self.below(whole * 1000) + 1;
        format!("{}.{:03}", n / 1000, n % 1000)
    }
}

const USERS: u64 = 50;
const REPORTS: usize = 200;
const CYCLES: usize = 5;
/// Report workers: each submits and decides its share in order.
const WORKERS: usize = 4;
/// Clients sending pledges and releases meanwhile.
const CREDIT_CLIENTS: u64 = 2;
/// Pledged by every user in every asset first (of DEPOSIT in custody).
const PLEDGED: &str = "100";
const DEPOSIT: &str = "1000";
/// Assets pledged; SOL only ever arrives by settlement (a settlement lot).
const PLEDGED_ASSETS: [&str; 3] = ["BTC", "ETH", "USDT"];
const ALL_ASSETS: [&str; 4] = ["BTC", "ETH", "USDT", "SOL"];
/// Sold by an over-sell: far beyond anything a user ever holds here.
const OVER_SELL: &str = "1000000";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Complete,
    Fail,
    Dispute(&'static str),
    /// Sells more than CI can ever be: COMPLETED must fail
    /// INSUFFICIENT_CREDIT, then the report is FAILED.
    OverSell,
}

struct Planned {
    request: pb::SubmitSettlementReportRequest,
    verdict: Verdict,
}

/// Report `i`: a random user and cycle, one or two assets bought, one sold
/// (small amounts: CI stays non-negative most of the time, except selling
/// SOL nobody has yet, or a pair drained by releases), and a verdict.
fn plan(rng: &mut Rng, i: usize) -> Planned {
    let user = format!("fu{}", rng.below(USERS));
    let cycle = format!("fc-{}", i % CYCLES);
    let mut assets = ALL_ASSETS.to_vec();
    let take = |rng: &mut Rng, assets: &mut Vec<&'static str>| {
        assets.remove(rng.below(assets.len() as u64) as usize)
    };
    let verdict = match rng.below(20) {
        0 | 1 => Verdict::OverSell,
        2..=4 => Verdict::Fail,
        5..=7 => Verdict::Dispute(""),
        _ => Verdict::Complete,
    };
    let sold_asset = if verdict == Verdict::OverSell {
        let a = PLEDGED_ASSETS[rng.below(3) as usize];
        assets.retain(|x| *x != a);
        a
    } else {
        take(rng, &mut assets)
    };
    let bought: Vec<(&str, String)> = (0..1 + rng.below(2))
        .map(|_| (take(rng, &mut assets), rng.amount(2)))
        .collect();
    let sold_amount = if verdict == Verdict::OverSell {
        OVER_SELL.to_string()
    } else {
        rng.amount(3)
    };
    let bought: Vec<(&str, &str, &str)> =
        bought.iter().map(|(a, n)| (*a, n.as_str(), "1")).collect();
    let mut request = report(
        &format!("sf-{i}"),
        &user,
        &cycle,
        &bought,
        &[(sold_asset, &sold_amount, "1")],
    );
    request.wait = s::wait(3_000);
    let verdict = match verdict {
        Verdict::Dispute(_) => Verdict::Dispute(bought[0].0),
        v => v,
    };
    Planned { request, verdict }
}

/// Deposits DEPOSIT and pledges PLEDGED of every pledged asset for `user`.
async fn fund(channel: Channel, user: String) {
    let mut client = PledgeServiceClient::new(channel);
    for asset in PLEDGED_ASSETS {
        client
            .record_deposit(ppb::RecordDepositRequest {
                request_id: format!("dep-{user}-{asset}"),
                user_id: user.clone(),
                asset: asset.into(),
                amount: DEPOSIT.into(),
                chain: "ethereum".into(),
                address: "0xcustody".into(),
                tx_id: format!("tx-{user}-{asset}"),
            })
            .await
            .expect("deposit");
        let p = client
            .create_pledge(ppb::CreatePledgeRequest {
                request_id: format!("pl-{user}-{asset}"),
                user_id: user.clone(),
                asset: asset.into(),
                amount: PLEDGED.into(),
                chain: "ethereum".into(),
                address: "0xcustody".into(),
                wait: s::wait(10_000),
            })
            .await
            .expect("pledge")
            .into_inner()
            .pledge
            .expect("pledge");
        assert_eq!(p.status, ppb::PledgeStatus::Active as i32, "{p:?}");
    }
}

/// Pledges and releases on the same users and assets, until `stop`: the
/// ids of those the WSP took (each must end decided).
fn credit_traffic(
    channel: Channel,
    seed: u64,
    client_no: u64,
    stop: Arc<AtomicBool>,
) -> JoinHandle<Vec<String>> {
    tokio::spawn(async move {
        let mut rng = Rng(seed ^ (client_no << 40) ^ 0xc4ed17);
        let mut client = PledgeServiceClient::new(channel);
        let mut taken = Vec::new();
        let mut k = 0;
        while !stop.load(Ordering::Relaxed) {
            k += 1;
            let id = format!("cr-{client_no}-{k}");
            let user = format!("fu{}", rng.below(USERS));
            let release = rng.below(2) == 0;
            // Releases of SOL too: its credit comes from settlement lots.
            let asset = if release {
                ALL_ASSETS[rng.below(4) as usize]
            } else {
                PLEDGED_ASSETS[rng.below(3) as usize]
            };
            let amount = rng.amount(2);
            let mut result = Err(Status::unavailable("not sent"));
            for _ in 0..MAX_ATTEMPTS {
                result = if release {
                    client
                        .release_pledge(ppb::ReleasePledgeRequest {
                            request_id: id.clone(),
                            user_id: user.clone(),
                            asset: asset.into(),
                            amount: amount.clone(),
                            wait: s::wait(2_000),
                        })
                        .await
                        .map(drop)
                } else {
                    client
                        .create_pledge(ppb::CreatePledgeRequest {
                            request_id: id.clone(),
                            user_id: user.clone(),
                            asset: asset.into(),
                            amount: amount.clone(),
                            chain: "ethereum".into(),
                            address: "0xcustody".into(),
                            wait: s::wait(2_000),
                        })
                        .await
                        .map(drop)
                };
                match &result {
                    // The same request again (same id) is idempotent.
                    Err(e) if e.code() != Code::Aborted && transient(e) => {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    _ => break,
                }
            }
            match result {
                Ok(()) => taken.push(id),
                // Refused by state (CI or balance short), or another
                // request of the pair in flight: nothing written.
                Err(e) if matches!(e.code(), Code::FailedPrecondition | Code::Aborted) => {}
                Err(e) => panic!("{id}: {e:?}"),
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        taken
    })
}

/// Follows WatchSettlements on `channel` from the start of the log,
/// resuming after the last event it saw whenever the stream ends (the
/// gateway died, Redis went away), until it has seen `want` events (0:
/// not known yet). A gap would show as OUT_OF_RANGE, which it refuses.
fn watcher(channel: Channel, want: Arc<AtomicUsize>) -> JoinHandle<(Vec<String>, usize)> {
    tokio::spawn(async move {
        let mut client = Client::new(channel);
        let mut seen: Vec<String> = Vec::new();
        let mut resumed = 0;
        let done = |seen: &Vec<String>| {
            let want = want.load(Ordering::Relaxed);
            want > 0 && seen.len() >= want
        };
        loop {
            let after = seen.last().cloned().unwrap_or_else(|| "0-0".into());
            let opened = client
                .watch_settlements(pb::WatchSettlementsRequest {
                    user_id: String::new(),
                    cycle_id: String::new(),
                    start_after_event_id: after.clone(),
                })
                .await;
            let mut events = match opened {
                Ok(events) => events.into_inner(),
                Err(e) => {
                    assert!(transient(&e), "watch after {after}: {e:?}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            loop {
                match tokio::time::timeout(Duration::from_millis(200), events.next()).await {
                    Ok(Some(Ok(e))) => seen.push(e.event.expect("event").event_id),
                    Ok(Some(Err(e))) => {
                        // Ended by a fault: resume by cursor. A slow reader
                        // cut off may resume too; a gap may not.
                        assert!(
                            transient(&e) || e.code() == Code::ResourceExhausted,
                            "watch after {after}: {e:?}"
                        );
                        break;
                    }
                    Ok(None) => break,
                    Err(_) if done(&seen) => return (seen, resumed),
                    Err(_) => {}
                }
            }
            resumed += 1;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
}

/// Waits until `n` reports are decided.
async fn progress(decided: &AtomicUsize, n: usize) {
    for _ in 0..3000 {
        if decided.load(Ordering::Relaxed) >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("fewer than {n} reports decided in time");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn random_reports_and_verdicts_through_every_fault_apply_once_and_keep_the_books() {
    tokio::time::timeout(Duration::from_secs(240), random_run())
        .await
        .expect("the run ended in time");
}

async fn random_run() {
    let seed = seed();
    let mut rng = Rng(seed);
    let mut sides = Sides::start(true).await;
    let decide_credit = |r: &openoes::proto::credit::v1::CreditRequest| {
        (r.request_id.starts_with("cr-") && hash(&r.request_id).is_multiple_of(5))
            .then(|| "random no".to_string())
    };
    let backends: Vec<_> = (0..2)
        .map(|i| backend(sides.exchange.clone(), &format!("ex{i}"), decide_credit))
        .collect();
    let stats = Arc::new(Stats::default());

    // Every user pledged in every asset first.
    let funding: Vec<_> = (0..8)
        .map(|t| {
            let channel = sides.wsp_channel.clone();
            tokio::spawn(async move {
                for u in (t..USERS).step_by(8) {
                    fund(channel.clone(), format!("fu{u}")).await;
                }
            })
        })
        .collect();
    for task in funding {
        task.await.expect("funded");
    }

    // A completion that meets a pending credit request of its pair is
    // refused ABORTED CREDIT_REQUEST_IN_FLIGHT with nothing applied, and
    // retried later (below, first of worker 0's). With no backend
    // answering, the pledge stays pending for sure.
    for b in backends {
        b.abort();
        let _ = b.await;
    }
    let mut ex = Client::new(sides.exchange.clone());
    let mut wsp = Client::new(sides.wsp_channel.clone());
    PledgeServiceClient::new(sides.wsp_channel.clone())
        .create_pledge(ppb::CreatePledgeRequest {
            request_id: "hold-fu0-USDT".into(),
            user_id: "fu0".into(),
            asset: "USDT".into(),
            amount: "1".into(),
            chain: "ethereum".into(),
            address: "0xcustody".into(),
            wait: None,
        })
        .await
        .expect("pledge");
    let mut held = report(
        "sf-held",
        "fu0",
        "fc-0",
        &[("BTC", "0.001", "1")],
        &[("USDT", "1", "1")],
    );
    held.wait = s::wait(3_000);
    submit_until_recorded(&mut ex, &held, &stats).await;
    let e = s::confirm(&mut wsp, "sf-held")
        .await
        .expect_err("in flight");
    assert_eq!(
        (e.code(), reason(&e).as_str()),
        (Code::Aborted, "CREDIT_REQUEST_IN_FLIGHT"),
        "{e:?}"
    );
    assert!(e.message().contains("hold-fu0-USDT"), "{}", e.message());
    let r = get(&mut wsp, "sf-held").await.expect("get");
    assert_eq!(
        status(&r),
        pb::SettlementStatus::Reported,
        "nothing applied"
    );
    let _backends: Vec<_> = (0..2)
        .map(|i| backend(sides.exchange.clone(), &format!("ex{i}"), decide_credit))
        .collect();

    // The run: report workers, credit traffic, a watcher; faults between.
    let mut planned: Vec<Vec<Planned>> = (0..WORKERS).map(|_| Vec::new()).collect();
    planned[0].push(Planned {
        request: held,
        verdict: Verdict::Complete,
    });
    for i in 0..REPORTS {
        planned[i % WORKERS].push(plan(&mut rng, i));
    }
    let plans: HashMap<String, (pb::SubmitSettlementReportRequest, Verdict)> = planned
        .iter()
        .flatten()
        .map(|p| (p.request.report_id.clone(), (p.request.clone(), p.verdict)))
        .collect();
    let decided = Arc::new(AtomicUsize::new(0));
    let want_events = Arc::new(AtomicUsize::new(0));
    let watch = watcher(sides.wsp_channel.clone(), Arc::clone(&want_events));
    let stop_credit = Arc::new(AtomicBool::new(false));
    let credit: Vec<_> = (0..CREDIT_CLIENTS)
        .map(|c| credit_traffic(sides.wsp_channel.clone(), seed, c, Arc::clone(&stop_credit)))
        .collect();
    let workers: Vec<_> = planned
        .into_iter()
        .map(|mine| {
            let (exchange, wsp_channel) = (sides.exchange.clone(), sides.wsp_channel.clone());
            let (stats, decided) = (Arc::clone(&stats), Arc::clone(&decided));
            tokio::spawn(async move {
                let mut ex = Client::new(exchange);
                let mut wsp = Client::new(wsp_channel);
                let mut finals = Vec::new();
                for p in mine {
                    let id = p.request.report_id.clone();
                    submit_until_recorded(&mut ex, &p.request, &stats).await;
                    let end = decide(&mut wsp, &id, p.verdict, &stats).await;
                    finals.push((id, end));
                    decided.fetch_add(1, Ordering::Relaxed);
                }
                finals
            })
        })
        .collect();

    progress(&decided, 40).await;
    eprintln!("fault: the WSP gateway SIGKILLed");
    sides.kill_wsp();
    tokio::time::sleep(Duration::from_millis(300)).await;
    sides.start_wsp().await;
    progress(&decided, 90).await;
    eprintln!("fault: R fully resynced");
    sides.resync_r().await;
    progress(&decided, 140).await;
    eprintln!("fault: M restarted from its AOF");
    sides.restart_m().await;

    let mut finals: BTreeMap<String, pb::SettlementStatus> = BTreeMap::new();
    for w in workers {
        finals.extend(w.await.expect("worker"));
    }
    stop_credit.store(true, Ordering::Relaxed);
    let mut credit_ids = Vec::new();
    for c in credit {
        credit_ids.extend(c.await.expect("credit traffic"));
    }
    assert_eq!(finals.len(), REPORTS + 1);

    // Every credit request decided: none left pending.
    let mut m = sides.m().await;
    let mut undecided = u64::MAX;
    for _ in 0..600 {
        undecided = redis::cmd("ZCARD")
            .arg("mirror:credit:undecided")
            .query_async(&mut m)
            .await
            .expect("zcard");
        if undecided == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(undecided, 0, "every credit request decided");
    for id in &credit_ids {
        let s: Option<String> = redis::cmd("HGET")
            .arg(format!("mirror:credit:req:{id}"))
            .arg("status")
            .query_async(&mut m)
            .await
            .expect("hget");
        assert!(
            matches!(s.as_deref(), Some("accepted" | "rejected")),
            "{id}: {s:?}"
        );
    }

    // The books: CI = accepted credit changes + completed nets, and the
    // vault's invariants, for every (user, asset).
    let nets = settled_nets(&mut m).await;
    assert_books_balance(&mut m, &nets).await;

    // Each report: recorded once, one verdict (the one the test reached),
    // one standard confirmation, applied once per (report, asset).
    let events = xrange(&mut m, EVENTS).await;
    let mut per_report: HashMap<String, Vec<String>> = HashMap::new();
    for (_, e) in &events {
        per_report
            .entry(e["report_id"].clone())
            .or_default()
            .push(e["type"].clone());
    }
    let confirmations = xrange(&mut m, CONFIRMATIONS).await;
    let mut confirmed: HashMap<String, Vec<String>> = HashMap::new();
    for (_, c) in &confirmations {
        confirmed
            .entry(c["settlement_id"].clone())
            .or_default()
            .push(c["status"].clone());
    }
    let credit_events = xrange(&mut m, "mirror:credit:events").await;
    let mut settled: HashMap<String, BTreeSet<String>> = HashMap::new();
    let mut settled_count: HashMap<String, usize> = HashMap::new();
    for (_, e) in &credit_events {
        if e["type"] == "settled" {
            settled
                .entry(e["request_id"].clone())
                .or_default()
                .insert(e["asset"].clone());
            *settled_count.entry(e["request_id"].clone()).or_default() += 1;
        }
    }
    let records = reports(&mut m).await;
    assert_eq!(records.len(), REPORTS + 1, "one record per report");
    let mut tally: BTreeMap<&str, usize> = BTreeMap::new();
    for (id, end) in &finals {
        let word = match end {
            pb::SettlementStatus::Completed => "completed",
            pb::SettlementStatus::Failed => "failed",
            pb::SettlementStatus::Disputed => "disputed",
            other => panic!("{id} ended {other:?}"),
        };
        *tally.entry(word).or_default() += 1;
        let kinds = &per_report[id];
        let count = |k: &str| kinds.iter().filter(|x| *x == k).count();
        assert_eq!(count("reported"), 1, "{id}: {kinds:?}");
        assert_eq!(
            (
                count("completed") + count("failed") + count("disputed"),
                count(word)
            ),
            (1, 1),
            "{id}: one verdict, {word}: {kinds:?}"
        );
        assert_eq!(confirmed.get(id), Some(&vec![word.to_string()]), "{id}");
        assert_eq!(records[id]["status"], word, "{id}: {:?}", records[id]);
        let (request, verdict) = &plans[id];
        if *verdict == Verdict::OverSell {
            assert_eq!(*end, pb::SettlementStatus::Failed, "{id}");
        }
        // Applied exactly once per (report_id, asset), and only if completed.
        let nets: BTreeSet<String> = request
            .net_positions
            .iter()
            .filter(|n| {
                !n.net
                    .trim_start_matches(['+', '-'])
                    .parse::<Decimal>()
                    .expect("net")
                    .is_zero()
            })
            .map(|n| n.asset.clone())
            .collect();
        if *end == pb::SettlementStatus::Completed {
            assert_eq!(settled.get(id), Some(&nets), "{id}");
            assert_eq!(
                settled_count[id],
                nets.len(),
                "{id}: applied once per asset"
            );
        } else {
            assert!(
                !settled.contains_key(id),
                "{id} applied nothing: {:?}",
                settled.get(id)
            );
        }
    }
    eprintln!("verdicts: {tally:?}");
    stats.print();
    assert!(stats.insufficient.load(Ordering::Relaxed) > 0);

    // Every cycle closes, verifies and is countersigned: the exchange's
    // tree and the WSP's records agree, and every report is decided.
    let mut wsp = Client::new(sides.wsp_channel.clone());
    for c in 0..CYCLES {
        let cycle_id = format!("fc-{c}");
        let mut closed = None;
        for _ in 0..MAX_ATTEMPTS {
            match ex
                .close_settlement_cycle(pb::CloseSettlementCycleRequest {
                    cycle_id: cycle_id.clone(),
                    wait: s::wait(3_000),
                })
                .await
            {
                Ok(r) if r.get_ref().delivery == pb::Delivery::Recorded as i32 => {
                    closed = r.into_inner().cycle;
                    break;
                }
                Ok(_) => {}
                Err(e) if transient(&e) => tokio::time::sleep(Duration::from_millis(100)).await,
                Err(e) => panic!("close {cycle_id}: {e:?}"),
            }
        }
        let closed = closed.expect("closed");
        assert_ne!(
            closed.status,
            pb::CycleStatus::Mismatch as i32,
            "{closed:?}"
        );
        let cycle = s::cycle_until(&mut wsp, &cycle_id, pb::CycleStatus::Cosigned).await;
        assert_eq!(cycle.undecided, 0, "{cycle:?}");
    }

    // The watcher, resumed through every fault, saw every event once, in
    // order.
    let ids: Vec<String> = xrange(&mut m, EVENTS)
        .await
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    want_events.store(ids.len(), Ordering::Relaxed);
    let (seen, resumed) = tokio::time::timeout(Duration::from_secs(30), watch)
        .await
        .expect("the watcher caught up in time")
        .expect("watcher");
    eprintln!("watcher: {} events, resumed {resumed} times", seen.len());
    assert_eq!(seen, ids, "every event exactly once, in order");
}

// === 3. a crashed watcher ===

async fn open_watch(
    channel: &Channel,
    after: &str,
) -> tonic::Streaming<pb::WatchSettlementsResponse> {
    Client::new(channel.clone())
        .watch_settlements(pb::WatchSettlementsRequest {
            user_id: String::new(),
            cycle_id: String::new(),
            start_after_event_id: after.into(),
        })
        .await
        .expect("watch")
        .into_inner()
}

/// The next event of `watch` (within a deadline).
async fn next_event(
    watch: &mut tonic::Streaming<pb::WatchSettlementsResponse>,
) -> pb::SettlementEvent {
    tokio::time::timeout(Duration::from_secs(20), watch.next())
        .await
        .expect("an event in time")
        .expect("open")
        .expect("ok")
        .event
        .expect("event")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_resumed_by_cursor_after_its_gateway_was_sigkilled_sees_every_event_once() {
    let mut sides = Sides::start(false).await;
    let _backend = backend(sides.exchange.clone(), "ex", |_| None);
    s::pledged(&sides.wsp_channel, "wa", "USDT", "1000").await;
    let mut ex = Client::new(sides.exchange.clone());
    let mut wsp = Client::new(sides.wsp_channel.clone());
    let stats = Stats::default();
    let request = |i: usize| {
        let mut r = report(
            &format!("w-{i}"),
            "wa",
            "wc",
            &[("BTC", "0.001", "1")],
            &[("USDT", "1", "1")],
        );
        r.wait = s::wait(3_000);
        r
    };

    // 6 reports recorded and 3 confirmed: 9 events; the watcher reads 5.
    let mut watch = open_watch(&sides.wsp_channel, "0-0").await;
    for i in 0..6 {
        submit_until_recorded(&mut ex, &request(i), &stats).await;
    }
    for i in 0..3 {
        s::confirm(&mut wsp, &format!("w-{i}"))
            .await
            .expect("confirm");
    }
    let mut seen = Vec::new();
    for _ in 0..5 {
        seen.push(next_event(&mut watch).await.event_id);
    }

    // The watcher crashes having read 5 of the 9 (whatever else its
    // transport had buffered is lost with it), and the gateway dies too.
    drop(watch);
    sides.kill_wsp();

    // Reports published meanwhile are recorded once the WSP is back: events
    // before the watcher resumes (its catch-up), and more after (live).
    for i in 6..9 {
        let mut r = request(i);
        r.wait = None;
        let (_, delivery) = submit(&mut ex, r).await.expect("submit");
        assert_eq!(delivery, pb::Delivery::Pending);
    }
    sides.start_wsp().await;
    for i in 6..9 {
        submit_until_recorded(&mut ex, &request(i), &stats).await;
    }
    let mut watch = open_watch(&sides.wsp_channel, seen.last().expect("seen some")).await;
    let mut wsp = Client::new(sides.wsp_channel.clone());
    for i in 3..9 {
        s::confirm(&mut wsp, &format!("w-{i}"))
            .await
            .expect("confirm");
    }
    submit_until_recorded(&mut ex, &request(9), &stats).await;

    // 10 reported + 9 completed, each once, in the log's order.
    while seen.len() < 19 {
        seen.push(next_event(&mut watch).await.event_id);
    }
    let extra = tokio::time::timeout(Duration::from_millis(500), watch.next()).await;
    assert!(extra.is_err(), "no further event: {extra:?}");
    let mut m = sides.m().await;
    let ids: Vec<String> = xrange(&mut m, EVENTS)
        .await
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    assert_eq!(ids.len(), 19);
    assert_eq!(seen, ids, "no gap, no duplicate");
}
