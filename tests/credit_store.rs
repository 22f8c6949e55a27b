//! The WSP's credit request store on a real Redis: the standard wire fields,
//! idempotency, one request in flight per user and asset, exact decimal CI.

mod common;

use std::collections::HashMap;

use openoes::{
    amount,
    credit::{
        error::CreditError,
        model::{NewCreditRequest, RequestStatus},
        store::{CreditStore, RequestOutcome},
    },
    redis::process::{RedisOptions, RedisProcess},
};

async fn setup() -> (
    RedisProcess,
    CreditStore,
    redis::aio::MultiplexedConnection,
    tempfile::TempDir,
) {
    let dir = tempfile::tempdir().expect("tmp");
    let redis = RedisProcess::start(dir.path(), &RedisOptions::default())
        .await
        .expect("redis");
    let mut config = openoes::config::Config::default();
    config.credit.custodian = "wsp-1".into();
    let store = CreditStore::new(common::endpoint_on(&redis), &config);
    let conn = redis::Client::open(redis.url())
        .expect("client")
        .get_multiplexed_async_connection()
        .await
        .expect("conn");
    (redis, store, conn, dir)
}

fn request(id: &str, uid: &str, asset: &str, change: &str) -> NewCreditRequest {
    NewCreditRequest {
        request_id: id.into(),
        uid: uid.into(),
        asset: asset.into(),
        change: amount::parse_change(change).expect("change"),
        chain: "bitcoin".into(),
        address: "bc1qxyz".into(),
        purpose: openoes::credit::model::Purpose::Plain,
    }
}

async fn stream(
    conn: &mut redis::aio::MultiplexedConnection,
    key: &str,
) -> Vec<HashMap<String, String>> {
    common::xrange(conn, key)
        .await
        .into_iter()
        .map(|(_, fields)| fields)
        .collect()
}

#[tokio::test]
async fn a_request_is_recorded_and_sent_in_the_standard_wire_format() {
    let (_redis, store, mut conn, _dir) = setup().await;
    let outcome = store
        .request(&request("req-1", "alice", "BTC", "+10.50"))
        .await
        .expect("request");
    let RequestOutcome::Created(record) = outcome else {
        panic!("created: {outcome:?}")
    };
    assert_eq!(record.status, RequestStatus::Pending);
    assert_eq!(record.change, "+10.5");
    assert_eq!(record.ci, "10.5", "current 0 + 10.5, exactly");
    assert_eq!(record.ci_version, 0);

    let requests = stream(&mut conn, "mirror:credit:request").await;
    assert_eq!(requests.len(), 1);
    let r = &requests[0];
    let mut names: Vec<&str> = r.keys().map(String::as_str).collect();
    names.sort();
    assert_eq!(
        names,
        [
            "address",
            "asset",
            "c_change",
            "chain",
            "ci",
            "ci_version",
            "created_ms",
            "custodian",
            "request_id",
            "timestamp",
            "uid",
            "v"
        ],
        "std fields plus ci_version, created_ms and v (ext)"
    );
    assert_eq!(
        (
            r["custodian"].as_str(),
            r["request_id"].as_str(),
            r["uid"].as_str()
        ),
        ("wsp-1", "req-1", "alice")
    );
    assert_eq!(
        (
            r["asset"].as_str(),
            r["c_change"].as_str(),
            r["ci"].as_str()
        ),
        ("BTC", "+10.5", "10.5")
    );
    assert_eq!(
        (r["chain"].as_str(), r["address"].as_str(), r["v"].as_str()),
        ("bitcoin", "bc1qxyz", "1")
    );
    let ts: u64 = r["timestamp"].parse().expect("timestamp");
    assert!(
        (1_700_000_000..10_000_000_000).contains(&ts),
        "unix seconds, not ms: {ts}"
    );
    let ms: u64 = r["created_ms"].parse().expect("created_ms");
    assert!(
        ms / 1000 == ts || ms / 1000 == ts + 1,
        "our own time keeps ms: {ms} vs {ts}"
    );

    let events = stream(&mut conn, "mirror:credit:events").await;
    assert_eq!(events.len(), 1);
    assert_eq!(
        (events[0]["type"].as_str(), events[0]["request_id"].as_str()),
        ("requested", "req-1")
    );
    let pending: String = redis::cmd("GET")
        .arg("mirror:credit:inflight:alice:BTC")
        .query_async(&mut conn)
        .await
        .expect("get");
    assert_eq!(pending, "req-1");
}

#[tokio::test]
async fn retries_are_idempotent_and_conflicts_are_refused() {
    let (_redis, store, mut conn, _dir) = setup().await;
    store
        .request(&request("req-1", "alice", "BTC", "+1"))
        .await
        .expect("first");
    let again = store
        .request(&request("req-1", "alice", "BTC", "+1.0"))
        .await
        .expect("retry");
    assert!(
        matches!(again, RequestOutcome::Existing(_)),
        "same id and payload: {again:?}"
    );
    let e = store
        .request(&request("req-1", "alice", "BTC", "+2"))
        .await
        .expect_err("other payload");
    assert!(matches!(e, CreditError::RequestIdReused(_)), "{e:?}");
    let e = store
        .request(&request("req-2", "alice", "BTC", "+1"))
        .await
        .expect_err("in flight");
    assert!(
        matches!(e, CreditError::InFlight { ref pending } if pending == "req-1"),
        "{e:?}"
    );
    store
        .request(&request("req-3", "alice", "ETH", "+1"))
        .await
        .expect("another asset is independent");
    assert_eq!(
        stream(&mut conn, "mirror:credit:request").await.len(),
        2,
        "one entry per request, none for retries"
    );
}

#[tokio::test]
async fn decreases_never_take_credit_below_zero_and_ci_is_exact() {
    let (_redis, store, mut conn, _dir) = setup().await;
    // CI as the WSP gateway keeps it (the apply script will write it).
    let _: () = redis::cmd("HSET")
        .arg("CI:bob:ETH")
        .arg(&["amount", "0.3", "version", "7"])
        .query_async(&mut conn)
        .await
        .expect("hset");
    let e = store
        .request(&request("d-1", "bob", "ETH", "-0.300000000000000001"))
        .await
        .expect_err("below zero");
    assert!(matches!(e, CreditError::InsufficientCredit { .. }), "{e:?}");
    let RequestOutcome::Created(record) = store
        .request(&request("d-2", "bob", "ETH", "-0.1"))
        .await
        .expect("decrease")
    else {
        panic!("created")
    };
    assert_eq!(record.ci, "0.2", "0.3 - 0.1 is exactly 0.2");
    assert_eq!(record.ci_version, 7);
}

#[tokio::test]
async fn of_twenty_concurrent_requests_for_one_user_and_asset_exactly_one_wins() {
    let (_redis, store, mut conn, _dir) = setup().await;
    let mut tasks = Vec::new();
    for i in 0..20 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            store
                .request(&request(&format!("c-{i}"), "carol", "SOL", "+5"))
                .await
        }));
    }
    let (mut created, mut in_flight) = (0, 0);
    for task in tasks {
        match task.await.expect("task") {
            Ok(RequestOutcome::Created(_)) => created += 1,
            Err(CreditError::InFlight { .. }) => in_flight += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!((created, in_flight), (1, 19));
    assert_eq!(stream(&mut conn, "mirror:credit:request").await.len(), 1);
}

// === applying the exchange's responses ===

use openoes::credit::{model::CreditResponse, store::ApplyOutcome};

fn response(
    entry_id: &str,
    request_id: &str,
    (uid, asset): (&str, &str),
    status: &str,
    ci: &str,
    reason: &str,
) -> CreditResponse {
    CreditResponse {
        entry_id: entry_id.into(),
        request_id: request_id.into(),
        uid: uid.into(),
        asset: asset.into(),
        custodian: "wsp-1".into(),
        status: status.into(),
        ci: ci.into(),
        reject_reason: reason.into(),
    }
}

async fn ci(conn: &mut redis::aio::MultiplexedConnection, key: &str) -> (String, String) {
    let (amount, version): (Option<String>, Option<String>) = redis::cmd("HMGET")
        .arg(key)
        .arg("amount")
        .arg("version")
        .query_async(conn)
        .await
        .expect("hmget");
    (amount.unwrap_or_default(), version.unwrap_or_default())
}

#[tokio::test]
async fn an_accepted_response_is_applied_exactly_once() {
    let (_redis, store, mut conn, _dir) = setup().await;
    store
        .request(&request("r-1", "alice", "BTC", "+10.5"))
        .await
        .expect("request");
    // The exchange may print the same value differently: compared exactly.
    let accepted = response(
        "1700000000000-0",
        "r-1",
        ("alice", "BTC"),
        "accepted",
        "10.50",
        "",
    );
    assert_eq!(
        store.apply_response(&accepted).await.expect("apply"),
        ApplyOutcome::Applied
    );
    assert_eq!(
        ci(&mut conn, "CI:alice:BTC").await,
        ("10.5".into(), "1".into())
    );
    let record = store.record("r-1").await.expect("read").expect("record");
    assert_eq!(record.status, RequestStatus::Accepted);

    // The same response again (a WSP restart re-reading it): nothing changes.
    assert_eq!(
        store.apply_response(&accepted).await.expect("again"),
        ApplyOutcome::Duplicate
    );
    // A later, second answer to the decided request: nothing changes either.
    let late = response(
        "1700000000001-0",
        "r-1",
        ("alice", "BTC"),
        "rejected",
        "10.5",
        "changed my mind",
    );
    assert_eq!(
        store.apply_response(&late).await.expect("late"),
        ApplyOutcome::AlreadyFinal
    );
    assert_eq!(
        ci(&mut conn, "CI:alice:BTC").await,
        ("10.5".into(), "1".into())
    );

    // The next request builds on the applied CI: 10.5 - 3.25 = 7.25.
    store
        .request(&request("r-2", "alice", "BTC", "-3.25"))
        .await
        .expect("next request is allowed");
    let accepted = response(
        "1700000000002-0",
        "r-2",
        ("alice", "BTC"),
        "accepted",
        "7.25",
        "",
    );
    assert_eq!(
        store.apply_response(&accepted).await.expect("apply"),
        ApplyOutcome::Applied
    );
    assert_eq!(
        ci(&mut conn, "CI:alice:BTC").await,
        ("7.25".into(), "2".into())
    );
    let types: Vec<String> = stream(&mut conn, "mirror:credit:events")
        .await
        .iter()
        .map(|e| e["type"].clone())
        .collect();
    assert_eq!(
        types,
        ["requested", "accepted", "requested", "accepted"],
        "one final event per request"
    );
    let cursor: String = redis::cmd("GET")
        .arg("mirror:cursor:mirror:credit:response")
        .query_async(&mut conn)
        .await
        .expect("cursor");
    assert_eq!(cursor, "1700000000002-0");
}

#[tokio::test]
async fn rejections_anomalies_and_strangers_never_touch_credit() {
    let (_redis, store, mut conn, _dir) = setup().await;
    store
        .request(&request("r-1", "bob", "ETH", "+2"))
        .await
        .expect("request");
    let rejected = response(
        "1700000000000-0",
        "r-1",
        ("bob", "ETH"),
        "rejected",
        "2",
        "address not whitelisted",
    );
    assert_eq!(
        store.apply_response(&rejected).await.expect("apply"),
        ApplyOutcome::Applied
    );
    let record = store.record("r-1").await.expect("read").expect("record");
    assert_eq!(
        (record.status, record.reject_reason.as_str()),
        (RequestStatus::Rejected, "address not whitelisted")
    );
    assert_eq!(
        ci(&mut conn, "CI:bob:ETH").await,
        (String::new(), String::new()),
        "no CI written"
    );
    store
        .request(&request("r-2", "bob", "ETH", "+2"))
        .await
        .expect("no longer in flight");

    // Accepted, but with a ci the request never carried: not applied.
    let odd = response(
        "1700000000001-0",
        "r-2",
        ("bob", "ETH"),
        "accepted",
        "2000",
        "",
    );
    assert_eq!(
        store.apply_response(&odd).await.expect("apply"),
        ApplyOutcome::Anomaly
    );
    assert_eq!(
        ci(&mut conn, "CI:bob:ETH").await,
        (String::new(), String::new())
    );
    let record = store.record("r-2").await.expect("read").expect("record");
    assert_eq!(record.status, RequestStatus::Pending, "left for a person");
    let last = stream(&mut conn, "mirror:credit:events")
        .await
        .pop()
        .expect("event");
    assert_eq!(last["type"], "anomaly");

    // Accepted with the right ci but naming another user: not applied,
    // neither to bob nor to mallory.
    let forged = response(
        "1700000000001-1",
        "r-2",
        ("mallory", "ETH"),
        "accepted",
        "2",
        "",
    );
    assert_eq!(
        store.apply_response(&forged).await.expect("apply"),
        ApplyOutcome::Anomaly
    );
    for key in ["CI:bob:ETH", "CI:mallory:ETH"] {
        assert_eq!(
            ci(&mut conn, key).await,
            (String::new(), String::new()),
            "{key}"
        );
    }

    // A response to a request this WSP never issued is ignored.
    let stranger = response(
        "1700000000002-0",
        "someone-else",
        ("zed", "BTC"),
        "accepted",
        "1",
        "",
    );
    assert_eq!(
        store.apply_response(&stranger).await.expect("apply"),
        ApplyOutcome::Unknown
    );
    assert!(store.record("someone-else").await.expect("read").is_none());
}

#[tokio::test]
async fn a_change_whose_sum_would_round_is_refused_and_writes_nothing() {
    let (_redis, store, mut conn, _dir) = setup().await;
    let big = "+70000000000.000000000000000001";
    store
        .request(&request("r-1", "sam", "SHIB", big))
        .await
        .expect("request");
    let accepted = response(
        "1700000000000-0",
        "r-1",
        ("sam", "SHIB"),
        "accepted",
        &big[1..],
        "",
    );
    store.apply_response(&accepted).await.expect("apply");
    // Exactly 80000000000.000000000000000001 needs 29 significant digits:
    // rust_decimal's `+` would store 80000000000 and lose the last unit.
    let refused = store
        .request(&request("r-2", "sam", "SHIB", "+10000000000"))
        .await
        .expect_err("would round");
    assert!(
        matches!(refused, CreditError::TooLarge { .. }),
        "{refused:?}"
    );
    assert_eq!(
        ci(&mut conn, "CI:sam:SHIB").await,
        ("70000000000.000000000000000001".into(), "1".into())
    );
    assert_eq!(stream(&mut conn, "mirror:credit:request").await.len(), 1);
    assert!(store.record("r-2").await.expect("read").is_none());
    // A retry of the accepted request would now sum beyond exact range too,
    // but it is a retry: it returns the record, as any retry does.
    let retry = store
        .request(&request("r-1", "sam", "SHIB", big))
        .await
        .expect("idempotent retry");
    assert!(matches!(retry, RequestOutcome::Existing(_)), "{retry:?}");
}

#[tokio::test]
async fn a_batch_read_after_a_cursor_m_no_longer_has_applies_nothing() {
    // The follower goes on from the last entry it applied without reading
    // M again; if M lost writes since (a crash, a failover), its cursor is
    // older, and the batch must not jump it past what was lost.
    use openoes::{
        credit::store::{EntryOutcome, ResponseEntry},
        streams::StreamId,
    };
    let (_redis, store, mut conn, _dir) = setup().await;
    for (id, uid) in [("b-1", "ann"), ("b-2", "ben"), ("b-3", "cat")] {
        store
            .request(&request(id, uid, "BTC", "+1"))
            .await
            .expect("request");
    }
    let entry = |id: &str, rid: &str, uid: &str| {
        ResponseEntry::Response(response(id, rid, (uid, "BTC"), "accepted", "1", ""))
    };
    let first = [entry("1700000000001-0", "b-1", "ann")];
    let at = |id: &str| id.parse::<StreamId>().expect("id");
    let outcomes = store
        .apply_responses(StreamId::default(), &first)
        .await
        .expect("apply");
    assert!(matches!(
        outcomes[..],
        [Ok(EntryOutcome::Applied(ApplyOutcome::Applied))]
    ));

    // Read after 1700000000002-0, which M never reached: nothing is done.
    let later = [
        entry("1700000000003-0", "b-2", "ben"),
        entry("1700000000004-0", "b-3", "cat"),
    ];
    let outcomes = store
        .apply_responses(at("1700000000002-0"), &later)
        .await
        .expect("apply");
    assert!(
        outcomes
            .iter()
            .all(|o| matches!(o, Ok(EntryOutcome::Behind))),
        "{outcomes:?}"
    );
    let cursor: String = redis::cmd("GET")
        .arg("mirror:cursor:mirror:credit:response")
        .query_async(&mut conn)
        .await
        .expect("cursor");
    assert_eq!(cursor, "1700000000001-0", "the cursor did not move");
    assert_eq!(ci(&mut conn, "CI:ben:BTC").await.0, "");

    // Read after where M stands: applied, in order.
    let outcomes = store
        .apply_responses(at("1700000000001-0"), &later)
        .await
        .expect("apply");
    assert!(
        outcomes
            .iter()
            .all(|o| matches!(o, Ok(EntryOutcome::Applied(ApplyOutcome::Applied)))),
        "{outcomes:?}"
    );
    assert_eq!(ci(&mut conn, "CI:cat:BTC").await.0, "1");
    let ids = ["b-1", "b-2", "b-3"].map(String::from);
    common::credit::assert_ci_is_sum_of_accepted(&mut conn, &ids).await;
}
