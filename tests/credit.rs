//! CreditService end to end over a real M + R link locked down with the
//! shipped ACLs: the WSP role writes M as `wsp` and reads R as `wsp-reader`,
//! the exchange role works on R as `exchange`.

mod common;

use std::{collections::HashMap, time::Duration};

use common::{GatewayProcess, Link, credit::*, wait_for_health, xrange};
use futures_util::StreamExt;
use openoes::proto::credit::v1::{
    self as pb, credit_service_client::CreditServiceClient as Client,
};
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_types::StatusExt;

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
    let responses = xrange(&mut r, "mirror:credit:response").await;
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
    assert_eq!(xrange(&mut m, "mirror:credit:request").await.len(), 1);

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
    assert_eq!(xrange(&mut r, "mirror:credit:response").await.len(), 1);

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
    assert_eq!(xrange(&mut m, "mirror:credit:request").await.len(), 1);
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
    let record = get_request(&mut client, "slow-1").await;
    assert_eq!(status(&record), pb::CreditRequestStatus::Accepted);
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
        // Addresses that look like another: a right-to-left override and a
        // zero-width space.
        (
            pb::RequestCreditRequest {
                address: "bc1q\u{202E}ydobw".into(),
                ..ask("alice", "BTC", "+1", "", 0)
            },
            vec!["address"],
        ),
        (
            pb::RequestCreditRequest {
                address: "bc1q\u{200B}custody".into(),
                ..ask("alice", "BTC", "+1", "", 0)
            },
            vec!["address"],
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
                            // Another client's request for this user and asset
                            // is pending; or Redis looked slow to the health
                            // probe: retry, same request_id.
                            Err(e) if matches!(e.code(), Code::Aborted | Code::Unavailable) => {
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
    assert_eq!(xrange(&mut r, "mirror:credit:response").await.len(), 1000);
    assert_eq!(xrange(&mut m, "mirror:credit:request").await.len(), 1000);
}

// === interoperability with parties that use plain Redis commands only ===

#[tokio::test]
async fn our_wsp_works_with_a_plain_redis_exchange() {
    let link = Link::start_secured().await;
    let mut config = link.secured_config();
    config.roles = vec![openoes::config::Role::Wsp];
    let (_gateway, channel) = serving(config).await;
    let mut client = Client::new(channel.clone());

    // The plain exchange: XREADGROUP on R as `exchange`, answers by XADD.
    let r_port = link.topology.replica.port();
    let exchange = tokio::spawn(async move {
        let mut r = login(r_port, "exchange", "exchange-pw").await;
        let created: redis::RedisResult<()> = redis::cmd("XGROUP")
            .arg(&[
                "CREATE",
                "mirror:credit:request",
                "credit-request-processor",
                "0",
                "MKSTREAM",
            ])
            .query_async(&mut r)
            .await;
        assert!(created.is_ok() || created.is_err_and(|e| e.code() == Some("BUSYGROUP")));
        // First a response to a request nobody issued: must be ignored.
        let _: String = redis::cmd("XADD")
            .arg(&[
                "mirror:credit:response",
                "*",
                "custodian",
                "x",
                "request_id",
                "ghost",
                "uid",
                "zed",
            ])
            .arg(&[
                "asset",
                "BTC",
                "c_change",
                "+1",
                "timestamp",
                "1",
                "ci",
                "1",
                "status",
                "accepted",
            ])
            .arg(&["reject_reason", ""])
            .query_async(&mut r)
            .await
            .expect("ghost response");
        loop {
            let reply: redis::streams::StreamReadReply = redis::cmd("XREADGROUP")
                .arg(&[
                    "GROUP",
                    "credit-request-processor",
                    "plain",
                    "COUNT",
                    "1",
                    "BLOCK",
                    "10000",
                ])
                .arg(&["STREAMS", "mirror:credit:request", ">"])
                .query_async(&mut r)
                .await
                .expect("xreadgroup");
            let Some(entry) = reply.keys.into_iter().flat_map(|k| k.ids).next() else {
                continue;
            };
            let field = |name: &str| {
                openoes::redis::value_text(entry.map.get(name).expect("standard field present"))
            };
            let ts: u64 = field("timestamp").parse().expect("seconds");
            assert!(
                ts.abs_diff(now_s()) < 600,
                "timestamp in unix seconds: {ts}"
            );
            assert_eq!(field("c_change"), "+7.25");
            assert_eq!(
                (field("chain").as_str(), field("address").as_str()),
                ("bitcoin", "bc1qcustody")
            );
            let _: String = redis::cmd("XADD")
                .arg(&["mirror:credit:response", "*"])
                .arg(&[
                    "custodian",
                    &field("custodian"),
                    "request_id",
                    &field("request_id"),
                ])
                .arg(&[
                    "uid",
                    &field("uid"),
                    "asset",
                    &field("asset"),
                    "c_change",
                    &field("c_change"),
                ])
                .arg(&["timestamp", &now_s().to_string(), "ci", &field("ci")])
                .arg(&["status", "accepted", "reject_reason", ""])
                .query_async(&mut r)
                .await
                .expect("response");
            let _: u64 = redis::cmd("XACK")
                .arg(&[
                    "mirror:credit:request",
                    "credit-request-processor",
                    &entry.id,
                ])
                .query_async(&mut r)
                .await
                .expect("xack");
            return field("request_id");
        }
    });
    let record = request(
        &mut client,
        ask("erin", "BTC", "+7.25", "plain-x-1", 15_000),
    )
    .await;
    assert_eq!(exchange.await.expect("exchange"), "plain-x-1");
    assert_eq!(status(&record), pb::CreditRequestStatus::Accepted);
    assert_eq!(inventory(&mut client, "erin", "BTC").await.amount, "7.25");
    // The ghost response changed nothing and did not stop the reader.
    let mut m = admin(link.topology.master.port()).await;
    let ghost: bool = redis::cmd("EXISTS")
        .arg("mirror:credit:req:ghost")
        .query_async(&mut m)
        .await
        .expect("exists");
    assert!(!ghost);
    let zed: bool = redis::cmd("EXISTS")
        .arg("CI:zed:BTC")
        .query_async(&mut m)
        .await
        .expect("exists");
    assert!(!zed);
}

#[tokio::test]
async fn our_exchange_works_with_a_plain_redis_wsp() {
    let link = Link::start_secured().await;
    let mut config = link.secured_config();
    config.roles = vec![openoes::config::Role::Exchange];
    let (_gateway, channel) = serving(config).await;
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let _backend = {
        let seen = std::sync::Arc::clone(&seen);
        backend(channel.clone(), "ex", move |r| {
            seen.lock().expect("lock").push(r.clone());
            None
        })
    };

    // The plain WSP: only standard keys and fields, on M as `wsp`.
    let mut m = login(link.topology.master.port(), "wsp", "wsp-pw").await;
    let _: () = redis::cmd("HSET")
        .arg(&["CI:dave:BTC", "amount", "5"])
        .query_async(&mut m)
        .await
        .expect("ci");
    let xadd = |id: &'static str, ci: &'static str| {
        let mut cmd = redis::cmd("XADD");
        cmd.arg(&[
            "mirror:credit:request",
            "*",
            "custodian",
            "other-wsp",
            "request_id",
            id,
        ])
        .arg(&[
            "uid",
            "dave",
            "timestamp",
            &now_s().to_string(),
            "asset",
            "BTC",
        ])
        .arg(&[
            "c_change", "+1.5", "ci", ci, "chain", "bitcoin", "address", "bc1qdave",
        ]);
        cmd
    };
    let _: String = xadd("plain-w-bad", "7")
        .query_async(&mut m)
        .await
        .expect("xadd");
    let _: String = xadd("plain-w-1", "6.5")
        .query_async(&mut m)
        .await
        .expect("xadd");

    // The plain WSP reads R as `wsp-reader` and finds standard responses.
    let mut reader = login(link.topology.replica.port(), "wsp-reader", "reader-pw").await;
    let mut responses: HashMap<String, HashMap<String, String>> = HashMap::new();
    let mut after = "0-0".to_string();
    while responses.len() < 2 {
        let reply: redis::streams::StreamReadReply = redis::cmd("XREAD")
            .arg(&[
                "BLOCK",
                "10000",
                "STREAMS",
                "mirror:credit:response",
                &after,
            ])
            .query_async(&mut reader)
            .await
            .expect("xread");
        let got: Vec<_> = reply.keys.into_iter().flat_map(|k| k.ids).collect();
        assert!(!got.is_empty(), "responses arrive");
        for entry in got {
            after = entry.id.clone();
            let fields: HashMap<String, String> = entry
                .map
                .iter()
                .map(|(k, v)| (k.clone(), openoes::redis::value_text(v)))
                .collect();
            responses.insert(fields["request_id"].clone(), fields);
        }
    }
    let ok = &responses["plain-w-1"];
    let want = [
        ("custodian", "other-wsp"),
        ("uid", "dave"),
        ("asset", "BTC"),
        ("c_change", "+1.5"),
        ("ci", "6.5"),
        ("status", "accepted"),
        ("reject_reason", ""),
    ];
    for (name, value) in want {
        assert_eq!(ok[name], value, "{name}");
    }
    assert!(
        ok["timestamp"]
            .parse::<u64>()
            .expect("seconds")
            .abs_diff(now_s())
            < 600
    );
    assert_eq!(ok.len(), 9, "exactly the standard fields: {ok:?}");
    // The wrong ci never reached the backend: the gateway rejected it.
    let bad = &responses["plain-w-bad"];
    assert_eq!(bad["status"], "rejected");
    assert!(bad["reject_reason"].starts_with("CI_MISMATCH"), "{bad:?}");
    let seen = seen.lock().expect("lock").clone();
    assert_eq!(seen.len(), 1);
    assert_eq!(
        (
            seen[0].request_id.as_str(),
            seen[0].user_id.as_str(),
            seen[0].expected_ci.as_str()
        ),
        ("plain-w-1", "dave", "6.5")
    );
    assert_eq!(seen[0].custodian, "other-wsp");
    assert!(seen[0].created_at.is_some(), "from the standard timestamp");
}

// === faults: each kills, restarts or resyncs something for real ===

#[tokio::test]
async fn a_subscriber_that_dies_holding_a_request_hands_it_to_another() {
    let link = Link::start_secured().await;
    let mut config = link.secured_config();
    config.streams.claim_min_idle = Duration::from_millis(500);
    let (gateway, channel) = serving(config).await;
    let mut client = Client::new(channel.clone());

    let held = taken_by_a_subscriber_that_dies(
        &gateway,
        &mut client,
        ask("fred", "ETH", "+3", "die-1", 0),
    )
    .await;
    assert_eq!(held.credit_request.expect("request").request_id, "die-1");

    // Subscriber B gets it after min-idle and answers it, once.
    let counts = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let b = {
        let counts = std::sync::Arc::clone(&counts);
        let mut client = Client::new(channel.clone());
        tokio::spawn(async move {
            let mut b = client
                .subscribe_credit_requests(pb::SubscribeCreditRequestsRequest {
                    group: String::new(),
                    consumer: "b".into(),
                })
                .await
                .expect("subscribe b")
                .into_inner();
            while let Some(Ok(d)) = b.next().await {
                counts.lock().expect("lock").push(d.delivery_count);
                let id = d.credit_request.expect("request").request_id;
                client
                    .respond_to_credit_request(pb::RespondToCreditRequestRequest {
                        request_id: id,
                        decision: pb::CreditDecision::Accept as i32,
                        reject_reason: String::new(),
                    })
                    .await
                    .expect("respond");
            }
        })
    };
    let record = await_final(&mut client, "die-1").await;
    assert_eq!(status(&record), pb::CreditRequestStatus::Accepted);
    tokio::time::sleep(Duration::from_millis(1200)).await; // more than min-idle: nothing else comes
    b.abort();
    assert_eq!(
        *counts.lock().expect("lock"),
        [2],
        "redelivered once, as its second delivery"
    );
    let mut r = admin(link.topology.replica.port()).await;
    assert_eq!(xrange(&mut r, "mirror:credit:response").await.len(), 1);
    assert!(xrange(&mut r, "mirror:credit:request:dlq").await.is_empty());
    assert_eq!(inventory(&mut client, "fred", "ETH").await.amount, "3");
}

#[tokio::test]
async fn a_request_no_backend_answers_is_rejected_at_the_delivery_limit() {
    let link = Link::start_secured().await;
    let mut config = link.secured_config();
    config.streams.claim_min_idle = Duration::from_millis(300);
    config.streams.max_deliveries = 2;
    let (gateway, channel) = serving(config).await;
    let mut client = Client::new(channel.clone());

    let held =
        taken_by_a_subscriber_that_dies(&gateway, &mut client, ask("hal", "ETH", "+3", "lim-1", 0))
            .await;
    assert_eq!(held.delivery_count, 1);

    // B is live: the second delivery (the limit) is decided by the gateway
    // itself instead of reaching B or the dead-letter stream.
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let _b = {
        let seen = std::sync::Arc::clone(&seen);
        backend(channel.clone(), "b", move |r| {
            seen.lock().expect("lock").push(r.request_id.clone());
            None
        })
    };
    let record = await_final(&mut client, "lim-1").await;
    assert_eq!(status(&record), pb::CreditRequestStatus::Rejected);
    assert!(
        record
            .reject_reason
            .starts_with("DELIVERY_LIMIT: delivered 2 times"),
        "{record:?}"
    );
    assert!(seen.lock().expect("lock").is_empty(), "B never saw it");
    let mut r = admin(link.topology.replica.port()).await;
    assert!(xrange(&mut r, "mirror:credit:request:dlq").await.is_empty());
    // The (user, asset) is free again.
    let next = request(&mut client, ask("hal", "ETH", "+1", "lim-2", 0)).await;
    assert_eq!(status(&next), pb::CreditRequestStatus::Pending);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_resync_of_r_mid_flow_loses_nothing_and_applies_nothing_twice() {
    let mut link = Link::start_secured().await;
    let mut config = link.secured_config();
    config.streams.claim_min_idle = Duration::from_millis(500);
    let (gateway, channel) = serving(config).await;
    let mut client = Client::new(channel.clone());

    // Ten requests decided before the resync.
    let answering = backend(channel.clone(), "before", |_| None);
    let mut ids = Vec::new();
    for n in 0..10 {
        let id = format!("rs-{n}");
        let r = request(&mut client, ask(&format!("u{n}"), "BTC", "+1", &id, 10_000)).await;
        assert_eq!(status(&r), pb::CreditRequestStatus::Accepted);
        ids.push(id);
    }
    answering.abort();
    // Ten more delivered to a subscriber that holds them, unanswered.
    let mut hold = Client::new(gateway.channel().await)
        .subscribe_credit_requests(pb::SubscribeCreditRequestsRequest {
            group: String::new(),
            consumer: "hold".into(),
        })
        .await
        .expect("subscribe")
        .into_inner();
    for n in 0..10 {
        let id = format!("rs-late-{n}");
        request(&mut client, ask(&format!("u{n}"), "BTC", "+2", &id, 0)).await;
        ids.push(id);
    }
    for _ in 0..10 {
        hold.next().await.expect("delivery").expect("ok");
    }
    drop(hold);

    // R restarts without persistence: a full resync from M wipes the group,
    // the exchange's records and its responses.
    link.topology.replica.restart().await.expect("restart R");
    link.topology.wait_for_link().await.expect("R resynced");
    let mut r = admin(link.topology.replica.port()).await;
    assert!(
        xrange(&mut r, "mirror:credit:response").await.is_empty(),
        "R's own writes are gone"
    );

    let _after = backend(channel.clone(), "after", |_| None);
    for id in &ids {
        assert_eq!(
            status(&await_final(&mut client, id).await),
            pb::CreditRequestStatus::Accepted,
            "{id}"
        );
    }
    let mut m = admin(link.topology.master.port()).await;
    assert_ci_is_sum_of_accepted(&mut m, &ids).await;
    let finals = final_events(&mut client, 20).await;
    assert!(finals.values().all(|v| v.len() == 1), "{finals:?}");
    // Only the ten undecided were answered again: decided ones were skipped.
    assert_eq!(xrange(&mut r, "mirror:credit:response").await.len(), 10);
}

#[tokio::test]
async fn a_killed_wsp_gateway_resumes_applying_responses_from_its_cursor() {
    let link = Link::start_secured().await;
    let dir = tempfile::tempdir().expect("tmp");
    let mut exchange_config = link.secured_config();
    exchange_config.roles = vec![openoes::config::Role::Exchange];
    let (_exchange, exchange_channel) = serving(exchange_config).await;

    let mut wsp_config = link.secured_config();
    wsp_config.roles = vec![openoes::config::Role::Wsp];
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("port")
        .local_addr()
        .expect("addr");
    wsp_config.grpc.listen = port;
    let mut wsp = GatewayProcess::start(&wsp_config, dir.path());
    let mut client = Client::new(wsp.channel().await);
    credit_health(&wsp.channel().await, ServingStatus::Serving).await;
    let ids: Vec<String> = (0..10).map(|n| format!("wr-{n}")).collect();
    for (n, id) in ids.iter().enumerate() {
        request(&mut client, ask(&format!("w{n}"), "ETH", "+4", id, 0)).await;
    }

    // The WSP gateway dies; the exchange answers meanwhile.
    wsp.child.kill().expect("SIGKILL");
    wsp.child.wait().expect("reaped");
    let _backend = backend(exchange_channel.clone(), "ex", |_| None);
    let mut r = admin(link.topology.replica.port()).await;
    for _ in 0..200 {
        if xrange(&mut r, "mirror:credit:response").await.len() == 10 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(xrange(&mut r, "mirror:credit:response").await.len(), 10);
    let mut m = admin(link.topology.master.port()).await;
    let still: String = redis::cmd("HGET")
        .arg("mirror:credit:req:wr-0")
        .arg("status")
        .query_async(&mut m)
        .await
        .expect("status");
    assert_eq!(still, "pending", "nobody applied it while the WSP was down");

    // Back up: it applies all ten from the cursor, then serves on.
    wsp = GatewayProcess::start(&wsp_config, dir.path());
    let mut client = Client::new(wsp.channel().await);
    for id in &ids {
        assert_eq!(
            status(&await_final(&mut client, id).await),
            pb::CreditRequestStatus::Accepted
        );
    }
    let r2 = request(&mut client, ask("w0", "ETH", "+1", "wr-after", 10_000)).await;
    assert_eq!(status(&r2), pb::CreditRequestStatus::Accepted);
    assert_eq!(inventory(&mut client, "w0", "ETH").await.amount, "5");
    let responses = xrange(&mut r, "mirror:credit:response").await;
    let cursor: String = redis::cmd("GET")
        .arg("mirror:cursor:mirror:credit:response")
        .query_async(&mut m)
        .await
        .expect("cursor");
    assert_eq!(Some(&cursor), responses.last().map(|(id, _)| id));
    let finals = final_events(&mut client, 11).await;
    assert!(finals.values().all(|v| v.len() == 1));
}

#[tokio::test]
async fn with_m_down_calls_fail_fast_and_everything_recovers_when_it_returns() {
    let mut link = Link::start_secured().await;
    // M persists every write (as a WSP's master must); R resyncs from it.
    link.make_master_durable().await;
    let (_gateway, channel) = serving(link.secured_config()).await;
    let mut client = Client::new(channel.clone());
    let _backend = backend(channel.clone(), "ex", |_| None);
    let first = request(&mut client, ask("gina", "BTC", "+1", "md-1", 10_000)).await;
    assert_eq!(status(&first), pb::CreditRequestStatus::Accepted);

    link.topology.master.kill().await;
    credit_health(&channel, ServingStatus::NotServing).await;
    // Within a 1 s deadline the answer is UNAVAILABLE, not a timeout.
    let mut call = tonic::Request::new(ask("gina", "BTC", "+1", "md-2", 0));
    call.set_timeout(Duration::from_secs(1));
    let e = client.request_credit(call).await.expect_err("M is down");
    assert_eq!(e.code(), Code::Unavailable, "{e:?}");
    let mut call = tonic::Request::new(pb::GetCreditInventoryRequest {
        user_id: "gina".into(),
        asset: "BTC".into(),
    });
    call.set_timeout(Duration::from_secs(1));
    let e = client
        .get_credit_inventory(call)
        .await
        .expect_err("M is down");
    assert_eq!(e.code(), Code::Unavailable, "{e:?}");

    link.topology.master.restart().await.expect("M back");
    link.topology.wait_for_link().await.expect("R back on M");
    let mut m = admin(link.topology.master.port()).await;
    let ci: Option<String> = redis::cmd("HGET")
        .arg("CI:gina:BTC")
        .arg("amount")
        .query_async(&mut m)
        .await
        .expect("ci");
    // Script effects are persisted as MULTI/EXEC: replayed despite the
    // default user being off (see deploy/redis/acl/master.acl).
    assert_eq!(ci.as_deref(), Some("1"), "M kept its data");
    wait_for_health(
        &channel,
        CREDIT,
        ServingStatus::Serving,
        Duration::from_secs(15),
    )
    .await;
    let second = request(&mut client, ask("gina", "BTC", "+2", "md-2", 15_000)).await;
    assert_eq!(
        status(&second),
        pb::CreditRequestStatus::Accepted,
        "{second:?}"
    );
    assert_eq!(inventory(&mut client, "gina", "BTC").await.amount, "3");
}

#[tokio::test]
async fn decisions_still_apply_each_once_after_m_forgets_its_scripts() {
    // The WSP sends its response scripts by hash only; after SCRIPT FLUSH
    // (or a restart) it must load them and apply each decision once.
    let link = Link::start_secured().await;
    let (_gateway, channel) = serving(link.secured_config()).await;
    let mut client = Client::new(channel.clone());
    let _backend = backend(channel.clone(), "ex", |_| None);
    let mut m = admin(link.topology.master.port()).await;
    let mut ids = Vec::new();
    for (n, change) in ["+1", "+2", "+3"].into_iter().enumerate() {
        let () = redis::cmd("SCRIPT")
            .arg("FLUSH")
            .query_async(&mut m)
            .await
            .expect("SCRIPT FLUSH");
        let id = format!("sf-{n}");
        let r = request(&mut client, ask("sf", "BTC", change, &id, 10_000)).await;
        assert_eq!(status(&r), pb::CreditRequestStatus::Accepted, "{r:?}");
        ids.push(id);
    }
    assert_ci_is_sum_of_accepted(&mut m, &ids).await;
    assert_eq!(inventory(&mut client, "sf", "BTC").await.amount, "6");
    let finals = final_events(&mut client, 3).await;
    assert!(finals.values().all(|v| v.len() == 1), "{finals:?}");
}
