//! CreditService end to end over a real M + R link locked down with the
//! shipped ACLs: the WSP role writes M as `wsp` and reads R as `wsp-reader`,
//! the exchange role works on R as `exchange`.

mod common;

use std::{collections::HashMap, time::Duration};

use common::{Gateway, Link, wait_for_health};
use futures_util::StreamExt;
use openoes::proto::credit::v1::{
    self as pb, credit_service_client::CreditServiceClient as Client,
};
use redis::aio::MultiplexedConnection;
use tokio::task::JoinHandle;
use tonic::{Code, transport::Channel};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_types::StatusExt;

const CREDIT: &str = "openoes.credit.v1.CreditService";

async fn start() -> (Link, Gateway, Channel) {
    let link = Link::start_secured().await;
    let gateway = Gateway::start(link.secured_config()).await;
    let channel = gateway.channel().await;
    wait_for_health(
        &channel,
        CREDIT,
        ServingStatus::Serving,
        Duration::from_secs(10),
    )
    .await;
    (link, gateway, channel)
}

fn ask(user: &str, asset: &str, change: &str, id: &str, wait_ms: u64) -> pb::RequestCreditRequest {
    pb::RequestCreditRequest {
        user_id: user.into(),
        asset: asset.into(),
        change: change.into(),
        chain: "bitcoin".into(),
        address: "bc1qcustody".into(),
        request_id: id.into(),
        wait: (wait_ms > 0).then(|| prost_types::Duration {
            seconds: (wait_ms / 1000) as i64,
            nanos: ((wait_ms % 1000) * 1_000_000) as i32,
        }),
    }
}

fn status(r: &pb::CreditRequest) -> pb::CreditRequestStatus {
    pb::CreditRequestStatus::try_from(r.status).expect("status")
}

async fn request(client: &mut Client<Channel>, r: pb::RequestCreditRequest) -> pb::CreditRequest {
    client
        .request_credit(r)
        .await
        .expect("request credit")
        .into_inner()
        .credit_request
        .expect("record")
}

/// An exchange backend: answers every delivery with `decide`, until dropped.
fn backend(
    channel: Channel,
    consumer: &str,
    decide: impl Fn(&pb::CreditRequest) -> Option<String> + Send + 'static,
) -> JoinHandle<()> {
    let consumer = consumer.to_string();
    tokio::spawn(async move {
        let mut client = Client::new(channel);
        let mut deliveries = client
            .subscribe_credit_requests(pb::SubscribeCreditRequestsRequest {
                group: String::new(),
                consumer,
            })
            .await
            .expect("subscribe")
            .into_inner();
        while let Some(Ok(delivery)) = deliveries.next().await {
            let request = delivery.credit_request.expect("request");
            let (decision, reject_reason) = match decide(&request) {
                None => (pb::CreditDecision::Accept, String::new()),
                Some(reason) => (pb::CreditDecision::Reject, reason),
            };
            client
                .respond_to_credit_request(pb::RespondToCreditRequestRequest {
                    request_id: request.request_id,
                    decision: decision as i32,
                    reject_reason,
                })
                .await
                .expect("respond");
        }
    })
}

async fn admin(port: u16) -> MultiplexedConnection {
    redis::Client::open(format!("redis://admin:admin-pw@127.0.0.1:{port}"))
        .expect("client")
        .get_multiplexed_async_connection()
        .await
        .expect("admin connection")
}

type Entry = (String, HashMap<String, String>);

async fn entries(conn: &mut MultiplexedConnection, key: &str) -> Vec<Entry> {
    let reply: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
        .arg(key)
        .arg("-")
        .arg("+")
        .query_async(conn)
        .await
        .expect("xrange");
    reply
        .ids
        .into_iter()
        .map(|e| {
            let fields = e
                .map
                .iter()
                .map(|(k, v)| (k.clone(), openoes::redis::value_text(v)))
                .collect();
            (e.id, fields)
        })
        .collect()
}

async fn inventory(client: &mut Client<Channel>, user: &str, asset: &str) -> pb::CreditInventory {
    client
        .get_credit_inventory(pb::GetCreditInventoryRequest {
            user_id: user.into(),
            asset: asset.into(),
        })
        .await
        .expect("inventory")
        .into_inner()
        .credit_inventory
        .expect("ci")
}

#[tokio::test]
async fn a_request_is_decided_by_the_exchange_and_applied_on_m() {
    let (link, _gateway, channel) = start().await;
    let mut client = Client::new(channel.clone());
    let _exchange = backend(channel.clone(), "ex-1", |r| {
        (r.asset == "DOGE").then(|| "not today".to_string())
    });
    let mut watch = client
        .watch_credit_events(pb::WatchCreditEventsRequest {
            user_id: "alice".into(),
            ..Default::default()
        })
        .await
        .expect("watch")
        .into_inner();

    let accepted = request(&mut client, ask("alice", "BTC", "+10.5", "r-1", 5000)).await;
    assert_eq!(
        status(&accepted),
        pb::CreditRequestStatus::Accepted,
        "{accepted:?}"
    );
    assert_eq!(
        (accepted.change.as_str(), accepted.expected_ci.as_str()),
        ("+10.5", "10.5")
    );
    assert!(accepted.decided_at.is_some());
    let ci = inventory(&mut client, "alice", "BTC").await;
    assert_eq!(
        (ci.amount.as_str(), ci.version, ci.last_request_id.as_str()),
        ("10.5", 1, "r-1")
    );

    // A decrease, exact: 10.5 - 0.3 = 10.2.
    let down = request(&mut client, ask("alice", "BTC", "-0.3", "r-2", 5000)).await;
    assert_eq!(status(&down), pb::CreditRequestStatus::Accepted);
    assert_eq!(inventory(&mut client, "alice", "BTC").await.amount, "10.2");

    // The exchange rejects: CI unchanged, the reason recorded.
    let rejected = request(&mut client, ask("alice", "DOGE", "+1", "r-3", 5000)).await;
    assert_eq!(status(&rejected), pb::CreditRequestStatus::Rejected);
    assert_eq!(rejected.reject_reason, "not today");
    let e = client
        .get_credit_inventory(pb::GetCreditInventoryRequest {
            user_id: "alice".into(),
            asset: "DOGE".into(),
        })
        .await
        .expect_err("no CI");
    assert_eq!(e.code(), Code::NotFound);

    let listed = client
        .list_credit_inventory(pb::ListCreditInventoryRequest {
            user_id: "alice".into(),
            ..Default::default()
        })
        .await
        .expect("list")
        .into_inner();
    assert_eq!(listed.credit_inventories.len(), 1);
    assert_eq!(listed.credit_inventories[0].amount, "10.2");

    // The event log: requested and final, per request, in order.
    let mut seen = Vec::new();
    while seen.len() < 6 {
        let event = tokio::time::timeout(Duration::from_secs(5), watch.next())
            .await
            .expect("event in time")
            .expect("open")
            .expect("event")
            .event
            .expect("event");
        seen.push((
            event.request_id.clone(),
            event.r#type().as_str_name().to_string(),
        ));
    }
    let kinds: Vec<(&str, &str)> = seen.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
    assert_eq!(
        kinds,
        [
            ("r-1", "CREDIT_EVENT_TYPE_REQUESTED"),
            ("r-1", "CREDIT_EVENT_TYPE_ACCEPTED"),
            ("r-2", "CREDIT_EVENT_TYPE_REQUESTED"),
            ("r-2", "CREDIT_EVENT_TYPE_ACCEPTED"),
            ("r-3", "CREDIT_EVENT_TYPE_REQUESTED"),
            ("r-3", "CREDIT_EVENT_TYPE_REJECTED"),
        ]
    );

    // The wire, byte for byte: the standard response on R.
    let mut r = admin(link.topology.replica.port()).await;
    let responses = entries(&mut r, "mirror:credit:response").await;
    assert_eq!(responses.len(), 3);
    let (_, first) = &responses[0];
    let mut names: Vec<&str> = first.keys().map(String::as_str).collect();
    names.sort_unstable();
    assert_eq!(
        names,
        [
            "asset",
            "c_change",
            "ci",
            "custodian",
            "reject_reason",
            "request_id",
            "status",
            "timestamp",
            "uid"
        ]
    );
    assert_eq!(first["status"], "accepted");
    assert_eq!(first["reject_reason"], "");
    assert_eq!(first["c_change"], "+10.5");
    assert_eq!(first["ci"], "10.5");
    assert_eq!(first["custodian"], "openoes-wsp");
    let ts: u64 = first["timestamp"].parse().expect("unix seconds");
    assert!(
        (1_600_000_000..4_000_000_000).contains(&ts),
        "seconds, not ms: {ts}"
    );
    assert_eq!(responses[2].1["status"], "rejected");
    assert_eq!(responses[2].1["reject_reason"], "not today");
    assert_eq!(
        responses[2].1["ci"], "1",
        "on reject the requested ci is echoed"
    );
    // Every delivery was acknowledged.
    let pending: (u64, redis::Value, redis::Value, redis::Value) = redis::cmd("XPENDING")
        .arg("mirror:credit:request")
        .arg("credit-request-processor")
        .query_async(&mut r)
        .await
        .expect("xpending");
    assert_eq!(pending.0, 0);
}

#[tokio::test]
async fn retries_and_conflicts_are_idempotent_or_refused() {
    let (link, _gateway, channel) = start().await;
    let mut client = Client::new(channel.clone());

    let first = request(&mut client, ask("bob", "ETH", "+2", "dup-1", 0)).await;
    assert_eq!(status(&first), pb::CreditRequestStatus::Pending);
    // The same request again: the same record, one stream entry.
    let again = request(&mut client, ask("bob", "ETH", "+2", "dup-1", 0)).await;
    assert_eq!(again, first);
    let mut m = admin(link.topology.master.port()).await;
    assert_eq!(entries(&mut m, "mirror:credit:request").await.len(), 1);

    let reused = client
        .request_credit(ask("bob", "ETH", "+3", "dup-1", 0))
        .await
        .expect_err("same id, other payload");
    assert_eq!(reused.code(), Code::AlreadyExists);
    assert_eq!(
        reused.get_details_error_info().expect("info").reason,
        "REQUEST_ID_REUSED"
    );
    let in_flight = client
        .request_credit(ask("bob", "ETH", "+1", "dup-2", 0))
        .await
        .expect_err("one in flight per user and asset");
    assert_eq!(in_flight.code(), Code::Aborted);
    assert_eq!(
        in_flight.get_details_error_info().expect("info").reason,
        "CREDIT_REQUEST_IN_FLIGHT"
    );

    // Answer it by hand: subscribe, respond twice, then the other way.
    let mut deliveries = client
        .subscribe_credit_requests(pb::SubscribeCreditRequestsRequest::default())
        .await
        .expect("subscribe")
        .into_inner();
    let delivery = deliveries.next().await.expect("one").expect("delivery");
    assert_eq!(delivery.delivery_count, 1);
    let delivered = delivery.credit_request.expect("request");
    assert_eq!(
        (
            delivered.request_id.as_str(),
            delivered.expected_ci.as_str()
        ),
        ("dup-1", "2")
    );
    let respond = |decision: pb::CreditDecision, reason: &str| pb::RespondToCreditRequestRequest {
        request_id: "dup-1".into(),
        decision: decision as i32,
        reject_reason: reason.into(),
    };
    let answer = client
        .respond_to_credit_request(respond(pb::CreditDecision::Accept, ""))
        .await
        .expect("accept")
        .into_inner();
    let repeat = client
        .respond_to_credit_request(respond(pb::CreditDecision::Accept, ""))
        .await
        .expect("accept again: no-op")
        .into_inner();
    assert_eq!(repeat, answer);
    let other = client
        .respond_to_credit_request(respond(pb::CreditDecision::Reject, "no"))
        .await
        .expect_err("the other decision");
    assert_eq!(other.code(), Code::FailedPrecondition);
    assert_eq!(
        other.get_details_error_info().expect("info").reason,
        "ALREADY_ANSWERED"
    );
    let mut r = admin(link.topology.replica.port()).await;
    assert_eq!(entries(&mut r, "mirror:credit:response").await.len(), 1);

    // Unknown request ids.
    let unknown = client
        .respond_to_credit_request(pb::RespondToCreditRequestRequest {
            request_id: "never-sent".into(),
            ..respond(pb::CreditDecision::Accept, "")
        })
        .await
        .expect_err("unknown");
    assert_eq!(unknown.code(), Code::NotFound);
    let unknown = client
        .get_credit_request(pb::GetCreditRequestRequest {
            request_id: "never-sent".into(),
        })
        .await
        .expect_err("unknown");
    assert_eq!(unknown.code(), Code::NotFound);

    // The decision reaches M; a retry of the request returns the final record.
    let mut decided = None;
    for _ in 0..100 {
        let now = request(&mut client, ask("bob", "ETH", "+2", "dup-1", 0)).await;
        if status(&now) == pb::CreditRequestStatus::Accepted {
            decided = Some(now);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(decided.is_some(), "the acceptance was applied on M");
    assert_eq!(inventory(&mut client, "bob", "ETH").await.amount, "2");
    assert_eq!(entries(&mut m, "mirror:credit:request").await.len(), 1);
}

#[tokio::test]
async fn a_wait_that_elapses_returns_pending_and_the_decision_lands_later() {
    let (_link, _gateway, channel) = start().await;
    let mut client = Client::new(channel.clone());
    // No exchange backend yet: the wait elapses.
    let pending = request(&mut client, ask("carol", "SOL", "+5", "slow-1", 300)).await;
    assert_eq!(status(&pending), pb::CreditRequestStatus::Pending);
    // The backend shows up later; a waiting call returns with the decision.
    let waiting = {
        let mut client = client.clone();
        tokio::spawn(async move {
            request(&mut client, ask("carol", "SOL", "+5", "slow-1", 20_000)).await
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!waiting.is_finished());
    let _exchange = backend(channel.clone(), "late", |_| None);
    let decided = waiting.await.expect("task");
    assert_eq!(status(&decided), pb::CreditRequestStatus::Accepted);
    let record = client
        .get_credit_request(pb::GetCreditRequestRequest {
            request_id: "slow-1".into(),
        })
        .await
        .expect("get")
        .into_inner()
        .credit_request
        .expect("record");
    assert_eq!(status(&record), pb::CreditRequestStatus::Accepted);
}

fn violations(e: &tonic::Status) -> Vec<String> {
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    e.get_details_bad_request()
        .expect("field violations")
        .field_violations
        .into_iter()
        .map(|v| v.field)
        .collect()
}

#[tokio::test]
async fn bad_input_is_refused_field_by_field() {
    let (_link, _gateway, channel) = start().await;
    let mut client = Client::new(channel.clone());
    let long = "x".repeat(129);
    let cases: Vec<(pb::RequestCreditRequest, Vec<&str>)> = vec![
        (ask("alice", "BTC", "+1e3", "", 0), vec!["change"]),
        (
            ask("alice", "BTC", "+0.0000000000000000001", "", 0),
            vec!["change"],
        ),
        (ask("alice", "BTC", "", "", 0), vec!["change"]),
        (ask("alice", "BTC", "NaN", "", 0), vec!["change"]),
        (ask("alice", "BTC", "10", "", 0), vec!["change"]),
        (ask("alice", "BTC", "+0", "", 0), vec!["change"]),
        (ask("al:ice", "B TC", "+1", "", 0), vec!["user_id", "asset"]),
        (
            ask(&long, "BTC", "+1", "id with space", 0),
            vec!["user_id", "request_id"],
        ),
        (
            pb::RequestCreditRequest {
                chain: String::new(),
                address: String::new(),
                ..ask("alice", "BTC", "+1", "", 0)
            },
            vec!["chain", "address"],
        ),
    ];
    for (bad, fields) in cases {
        let e = client
            .request_credit(bad.clone())
            .await
            .expect_err("bad input");
        assert_eq!(violations(&e), fields, "{bad:?}");
    }
    // A decrease below zero: refused before anything is written, naming
    // the field.
    let e = client
        .request_credit(ask("alice", "BTC", "-1", "", 0))
        .await
        .expect_err("below zero");
    assert_eq!(e.code(), Code::FailedPrecondition);
    assert_eq!(
        e.get_details_error_info().expect("info").reason,
        "INSUFFICIENT_CREDIT"
    );
    assert_eq!(
        e.get_details_bad_request()
            .expect("bad request")
            .field_violations[0]
            .field,
        "change"
    );

    let e = client
        .respond_to_credit_request(pb::RespondToCreditRequestRequest {
            request_id: "a:b".into(),
            decision: 0,
            reject_reason: String::new(),
        })
        .await
        .expect_err("bad respond");
    assert_eq!(violations(&e), ["request_id", "decision"]);
    let e = client
        .respond_to_credit_request(pb::RespondToCreditRequestRequest {
            request_id: "r".into(),
            decision: pb::CreditDecision::Reject as i32,
            reject_reason: String::new(),
        })
        .await
        .expect_err("reject without reason");
    assert_eq!(violations(&e), ["reject_reason"]);
    let e = client
        .get_credit_inventory(pb::GetCreditInventoryRequest::default())
        .await
        .expect_err("empty");
    assert_eq!(violations(&e), ["user_id", "asset"]);
    let e = client
        .list_credit_inventory(pb::ListCreditInventoryRequest {
            user_id: "alice".into(),
            page_size: -1,
            page_token: "x:y".into(),
        })
        .await
        .expect_err("bad list");
    assert_eq!(violations(&e), ["page_token", "page_size"]);
    let e = client
        .watch_credit_events(pb::WatchCreditEventsRequest {
            start_after_event_id: "yesterday".into(),
            ..Default::default()
        })
        .await
        .expect_err("bad cursor");
    assert_eq!(violations(&e), ["start_after_event_id"]);
}

/// A deterministic pseudo-random number from a string (no RNG dependency).
fn hash(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Every final event per request id, read from the start of the log.
async fn final_events(client: &mut Client<Channel>, want: usize) -> HashMap<String, Vec<String>> {
    let mut watch = client
        .watch_credit_events(pb::WatchCreditEventsRequest {
            start_after_event_id: "0-0".into(),
            ..Default::default()
        })
        .await
        .expect("watch from the start")
        .into_inner();
    let mut finals: HashMap<String, Vec<String>> = HashMap::new();
    let mut count = 0;
    while count < want {
        let event = tokio::time::timeout(Duration::from_secs(20), watch.next())
            .await
            .expect("events in time")
            .expect("open")
            .expect("event")
            .event
            .expect("event");
        use pb::CreditEventType as T;
        if matches!(event.r#type(), T::Accepted | T::Rejected) {
            finals
                .entry(event.request_id)
                .or_default()
                .push(event.change.clone());
            count += 1;
        }
    }
    // Nothing more arrives: a duplicate would show here.
    let extra = tokio::time::timeout(Duration::from_millis(500), watch.next()).await;
    assert!(extra.is_err(), "no further event: {extra:?}");
    finals
}

/// CI on M must equal the sum of accepted changes per (user, asset).
async fn assert_ci_is_sum_of_accepted(m: &mut MultiplexedConnection, ids: &[String]) {
    use rust_decimal::Decimal;
    let mut sums: HashMap<(String, String), Decimal> = HashMap::new();
    for id in ids {
        let record: HashMap<String, String> = redis::cmd("HGETALL")
            .arg(format!("mirror:credit:req:{id}"))
            .query_async(m)
            .await
            .expect("record");
        let status = record.get("status").map(String::as_str);
        assert!(
            matches!(status, Some("accepted" | "rejected")),
            "{id}: {record:?}"
        );
        let key = (record["uid"].clone(), record["asset"].clone());
        let sum = sums.entry(key).or_default();
        if status == Some("accepted") {
            *sum += record["c_change"].parse::<Decimal>().expect("decimal");
        }
    }
    for ((user, asset), sum) in sums {
        let amount: Option<String> = redis::cmd("HGET")
            .arg(format!("CI:{user}:{asset}"))
            .arg("amount")
            .query_async(m)
            .await
            .expect("ci");
        let amount: Decimal = amount.as_deref().unwrap_or("0").parse().expect("decimal");
        assert_eq!(amount, sum, "CI of {user}/{asset}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_thousand_concurrent_requests_end_exactly_once_with_exact_ci() {
    const USERS: u64 = 50;
    const ASSETS: [&str; 4] = ["BTC", "ETH", "SOL", "USDC"];
    const CLIENTS: u64 = 20;
    const PER_CLIENT: u64 = 50;
    let (link, _gateway, channel) = start().await;
    // Three competing exchange backends; each rejects about a third, at random.
    let decide = |r: &pb::CreditRequest| {
        hash(&r.request_id)
            .is_multiple_of(3)
            .then(|| "random no".to_string())
    };
    let _backends: Vec<_> = (0..3)
        .map(|i| backend(channel.clone(), &format!("ex-{i}"), decide))
        .collect();

    let tasks: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let mut client = Client::new(channel.clone());
            tokio::spawn(async move {
                let mut decided = Vec::new();
                for n in 0..PER_CLIENT {
                    let id = format!("load-{c}-{n}");
                    let h = hash(&id);
                    let user = format!("u{}", h % USERS);
                    let asset = ASSETS[(h / USERS % 4) as usize];
                    let units = h % 1000 + 1;
                    // One in four is a decrease; below zero it becomes an increase.
                    let mut change = if h.is_multiple_of(4) {
                        format!("-0.{units:03}")
                    } else {
                        format!("+{units}.5")
                    };
                    let record = loop {
                        match client
                            .request_credit(ask(&user, asset, &change, &id, 10_000))
                            .await
                        {
                            Ok(r) => break r.into_inner().credit_request.expect("record"),
                            // Another client's request for this user and asset is pending.
                            Err(e) if e.code() == Code::Aborted => {
                                tokio::time::sleep(Duration::from_millis(5)).await;
                            }
                            Err(e) if e.code() == Code::FailedPrecondition => {
                                change = format!("+{units}.5");
                            }
                            Err(e) => panic!("{id}: {e:?}"),
                        }
                    };
                    decided.push((id, status(&record)));
                }
                decided
            })
        })
        .collect();
    let mut ids = Vec::new();
    for task in tasks {
        for (id, status) in task.await.expect("client") {
            assert_ne!(
                status,
                pb::CreditRequestStatus::Pending,
                "{id} decided within its wait"
            );
            ids.push(id);
        }
    }
    assert_eq!(ids.len(), 1000);

    let mut m = admin(link.topology.master.port()).await;
    assert_ci_is_sum_of_accepted(&mut m, &ids).await;
    let mut client = Client::new(channel.clone());
    let finals = final_events(&mut client, 1000).await;
    assert_eq!(finals.len(), 1000);
    assert!(finals.values().all(|v| v.len() == 1));
    let mut r = admin(link.topology.replica.port()).await;
    assert_eq!(entries(&mut r, "mirror:credit:response").await.len(), 1000);
    assert_eq!(entries(&mut m, "mirror:credit:request").await.len(), 1000);
}
