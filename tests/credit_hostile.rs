//! The credit link against a hostile or broken peer: each test does the
//! hostile thing for real, as the `exchange` ACL user on R (with plain
//! Redis commands), or by blipping connections, trimming streams and
//! wiping R, and ends by checking the link's invariants.

mod common;

use std::time::Duration;

use common::{Link, credit::*, xrange};
use futures_util::StreamExt;
use openoes::{
    config::Config,
    proto::credit::v1::{self as pb, credit_service_client::CreditServiceClient as Client},
};
use redis::aio::MultiplexedConnection;
use tonic::{Code, transport::Channel};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_types::StatusExt;

const RESPONSES: &str = "mirror:credit:response";
const REQUESTS: &str = "mirror:credit:request";
const EVENTS: &str = "mirror:credit:events";

/// R as the exchange's ACL user: what another company can do there.
async fn as_exchange(link: &Link) -> MultiplexedConnection {
    login(link.topology.replica.port(), "exchange", "exchange-pw").await
}

/// A standard response on R for `request`, as a plain exchange writes it.
fn response_of(r: &pb::CreditRequest, status: &str, reason: &str) -> redis::Cmd {
    response_at("*", r, status, reason)
}

/// The same with an explicit entry id.
fn response_at(id: &str, r: &pb::CreditRequest, status: &str, reason: &str) -> redis::Cmd {
    let mut cmd = redis::cmd("XADD");
    cmd.arg(RESPONSES).arg(id);
    cmd.arg(&[
        ("custodian", r.custodian.as_str()),
        ("request_id", r.request_id.as_str()),
        ("uid", r.user_id.as_str()),
        ("asset", r.asset.as_str()),
        ("c_change", r.change.as_str()),
        ("timestamp", &now_s().to_string()),
        ("ci", r.expected_ci.as_str()),
        ("status", status),
        ("reject_reason", reason),
    ]);
    cmd
}

/// The anomaly events of the log, (request_id, reason).
async fn anomalies(m: &mut MultiplexedConnection) -> Vec<(String, String)> {
    xrange(m, EVENTS)
        .await
        .into_iter()
        .filter(|(_, e)| e["type"] == "anomaly")
        .map(|(_, e)| (e["request_id"].clone(), e["reason"].clone()))
        .collect()
}

async fn wsp_only(link: &Link, edit: impl FnOnce(&mut Config)) -> (common::Gateway, Channel) {
    let mut config = link.secured_config();
    config.roles = vec![openoes::config::Role::Wsp];
    edit(&mut config);
    serving(config).await
}

#[tokio::test]
async fn malformed_responses_are_recorded_as_anomalies_and_never_stop_the_reader() {
    let link = Link::start_secured().await;
    let (_gateway, channel) = wsp_only(&link, |c| c.credit.max_response_bytes = 4096).await;
    let mut client = Client::new(channel.clone());
    let first = request(&mut client, ask("mal", "BTC", "+1", "mal-1", 0)).await;
    let mut r = as_exchange(&link).await;

    // A field name that is not UTF-8 (bytes ff fe), a response without
    // request_id, one far over the size limit, one naming an invalid id,
    // and one with an unknown status.
    let _: String = redis::cmd("XADD")
        .arg(RESPONSES)
        .arg("*")
        .arg(&[0xffu8, 0xfe][..])
        .arg("x")
        .arg("request_id")
        .arg("mal-1")
        .query_async(&mut r)
        .await
        .expect("xadd non-utf8");
    let _: String = redis::cmd("XADD")
        .arg(RESPONSES)
        .arg("*")
        .arg("status")
        .arg("accepted")
        .query_async(&mut r)
        .await
        .expect("xadd without id");
    let _: String = response_of(&first, "accepted", &"x".repeat(10_000))
        .query_async(&mut r)
        .await
        .expect("xadd huge");
    let _: String = redis::cmd("XADD")
        .arg(RESPONSES)
        .arg("*")
        .arg(&[("request_id", "bad id with spaces"), ("status", "accepted")])
        .query_async(&mut r)
        .await
        .expect("xadd bad id");
    let _: String = response_of(&first, "maybe", "")
        .query_async(&mut r)
        .await
        .expect("xadd odd status");
    // Then the real decision: it must still be applied.
    let _: String = response_of(&first, "accepted", "")
        .query_async(&mut r)
        .await
        .expect("xadd good");

    let decided = await_final(&mut client, "mal-1").await;
    assert_eq!(status(&decided), pb::CreditRequestStatus::Accepted);
    assert_eq!(inventory(&mut client, "mal", "BTC").await.amount, "1");
    credit_health(&channel, ServingStatus::Serving).await;
    let mut m = admin(link.topology.master.port()).await;
    let seen = anomalies(&mut m).await;
    assert_eq!(seen.len(), 5, "one anomaly per bad entry: {seen:?}");
    assert!(
        seen[0].1.contains("not UTF-8") && seen[0].1.contains("\\xff\\xfe"),
        "{seen:?}"
    );
    assert!(seen[1].1.contains("request_id"), "{seen:?}");
    assert!(seen[2].1.contains("limit 4096"), "{seen:?}");
    assert!(
        seen.iter().all(|(_, reason)| reason.len() < 600),
        "bounded copies: {seen:?}"
    );
    assert!(seen[4].1.contains("unknown status"), "{seen:?}");
    // The reader's cursor is past all of them.
    let cursor: String = redis::cmd("GET")
        .arg("mirror:cursor:mirror:credit:response")
        .query_async(&mut m)
        .await
        .expect("cursor");
    let info: std::collections::HashMap<String, redis::Value> = redis::cmd("XINFO")
        .arg(&["STREAM", RESPONSES])
        .query_async(&mut admin(link.topology.replica.port()).await)
        .await
        .expect("xinfo");
    assert_eq!(
        cursor,
        openoes::redis::value_text(&info["last-generated-id"])
    );
}

#[tokio::test]
async fn a_huge_reject_reason_is_cut_and_every_read_stays_readable() {
    let link = Link::start_secured().await;
    let (_gateway, channel) = wsp_only(&link, |_| {}).await;
    let mut client = Client::new(channel.clone());
    let pending = request(&mut client, ask("big", "ETH", "+2", "big-1", 0)).await;
    let mut r = as_exchange(&link).await;
    // 9 MiB: over credit.max_response_bytes (64 KiB), so recorded as an
    // anomaly and never copied; a 40 KB one (under it) is cut to 1 KiB.
    let reason = "no ".repeat(3 * 1024 * 1024);
    let _: String = response_of(&pending, "rejected", &reason)
        .query_async(&mut r)
        .await
        .expect("xadd 9 MiB");
    let _: String = response_of(&pending, "rejected", &"why ".repeat(10_000))
        .query_async(&mut r)
        .await
        .expect("xadd 40 KB");

    let decided = await_final(&mut client, "big-1").await;
    assert_eq!(status(&decided), pb::CreditRequestStatus::Rejected);
    assert!(
        decided.reject_reason.len() < 1200,
        "{}",
        decided.reject_reason.len()
    );
    assert!(
        decided.reject_reason.ends_with("[cut: 40000 bytes]"),
        "{}",
        &decided.reject_reason[1000..]
    );
    // Every event is readable by a default client (4 MiB messages).
    let mut watch = client
        .watch_credit_events(pb::WatchCreditEventsRequest {
            start_after_event_id: "0-0".into(),
            ..Default::default()
        })
        .await
        .expect("watch")
        .into_inner();
    let mut kinds = Vec::new();
    while kinds.len() < 3 {
        let event = tokio::time::timeout(Duration::from_secs(10), watch.next())
            .await
            .expect("in time")
            .expect("open")
            .expect("readable")
            .event
            .expect("event");
        kinds.push(event.r#type());
    }
    use pb::CreditEventType as T;
    assert_eq!(kinds, [T::Requested, T::Anomaly, T::Rejected]);
}

#[tokio::test]
async fn stream_ids_past_two_to_the_53_are_compared_exactly() {
    let link = Link::start_secured().await;
    let (_gateway, channel) = wsp_only(&link, |_| {}).await;
    let mut client = Client::new(channel.clone());
    let a = request(&mut client, ask("ida", "BTC", "+1", "id-a", 0)).await;
    let b = request(&mut client, ask("idb", "BTC", "+1", "id-b", 0)).await;
    let mut r = as_exchange(&link).await;
    // As doubles, 9007199254740992 and 9007199254740993 are the same number.
    for (id, request) in [("1-9007199254740992", &a), ("1-9007199254740993", &b)] {
        let _: String = response_at(id, request, "accepted", "")
            .query_async(&mut r)
            .await
            .expect("xadd explicit id");
    }
    for id in ["id-a", "id-b"] {
        assert_eq!(
            status(&await_final(&mut client, id).await),
            pb::CreditRequestStatus::Accepted,
            "{id}"
        );
    }
}

#[tokio::test]
async fn a_response_naming_another_custodian_is_an_anomaly_not_applied() {
    let link = Link::start_secured().await;
    let (_gateway, channel) = wsp_only(&link, |_| {}).await;
    let mut client = Client::new(channel.clone());
    let mut pending = request(&mut client, ask("cus", "SOL", "+7", "cus-1", 0)).await;
    let mut r = as_exchange(&link).await;
    let real = pending.custodian.clone();
    pending.custodian = "another-wsp".into();
    let _: String = response_of(&pending, "accepted", "")
        .query_async(&mut r)
        .await
        .expect("xadd");
    pending.custodian = real;
    let mut m = admin(link.topology.master.port()).await;
    for _ in 0..100 {
        if !anomalies(&mut m).await.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let seen = anomalies(&mut m).await;
    assert!(
        seen.iter()
            .any(|(id, why)| id == "cus-1" && why.contains("custodian")),
        "{seen:?}"
    );
    let record = get_request(&mut client, "cus-1").await;
    assert_eq!(
        status(&record),
        pb::CreditRequestStatus::Pending,
        "not applied"
    );
    // The right custodian's answer is.
    let _: String = response_of(&pending, "accepted", "")
        .query_async(&mut r)
        .await
        .expect("xadd");
    assert_eq!(
        status(&await_final(&mut client, "cus-1").await),
        pb::CreditRequestStatus::Accepted
    );
}

#[tokio::test]
async fn connection_blips_never_raise_delivery_counts_and_every_request_is_answered() {
    let link = Link::start_secured().await;
    let mut config = link.secured_config();
    config.streams.claim_min_idle = Duration::from_millis(500);
    config.streams.max_deliveries = 3;
    let (gateway, channel) = serving(config).await;
    let mut client = Client::new(channel.clone());
    // A live subscriber takes the request and works on it, unanswered.
    let mut holder = Client::new(gateway.channel().await)
        .subscribe_credit_requests(pb::SubscribeCreditRequestsRequest {
            group: String::new(),
            consumer: "holder".into(),
        })
        .await
        .expect("subscribe")
        .into_inner();
    request(&mut client, ask("blip", "BTC", "+1", "blip-1", 0)).await;
    let first = tokio::time::timeout(Duration::from_secs(10), holder.next())
        .await
        .expect("delivery in time")
        .expect("open")
        .expect("delivery");
    let request_id = first.credit_request.expect("request").request_id;
    assert_eq!(request_id, "blip-1");

    // Five blips of every connection of the exchange user on R.
    let mut r_admin = admin(link.topology.replica.port()).await;
    for _ in 0..5 {
        let _: redis::Value = redis::cmd("CLIENT")
            .arg(&["KILL", "USER", "exchange"])
            .query_async(&mut r_admin)
            .await
            .expect("client kill");
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    // The holder still works on it: its delivery count has not moved.
    let pending: Vec<(String, String, u64, u64)> = redis::cmd("XPENDING")
        .arg(&[REQUESTS, "credit-request-processor", "-", "+", "10"])
        .query_async(&mut r_admin)
        .await
        .expect("xpending");
    assert_eq!(pending.len(), 1, "{pending:?}");
    assert_eq!(pending[0].3, 1, "blips are not deliveries: {pending:?}");

    // The holder dies; a live backend gets it as its second delivery and
    // answers. Nothing ends in the dead-letter stream without an answer.
    drop(holder);
    let _b = backend(channel.clone(), "b", |_| None);
    let decided = await_final(&mut client, "blip-1").await;
    assert_eq!(status(&decided), pb::CreditRequestStatus::Accepted);
    assert!(
        xrange(&mut r_admin, "mirror:credit:request:dlq")
            .await
            .is_empty()
    );
}

#[tokio::test]
async fn trimming_never_removes_an_undecided_request_and_a_foreign_trim_is_repaired() {
    let link = Link::start_secured().await;
    let mut config = link.secured_config();
    config.streams.maxlen.insert(REQUESTS.into(), 10);
    config.credit.sweep_interval = Duration::from_millis(200);
    let (_gateway, channel) = serving(config).await;
    let mut client = Client::new(channel.clone());
    // A backend answers everything but "keep-me", which stays undecided.
    let skipping = backend_skipping(channel.clone(), "b", "keep-me");
    for n in 0..150 {
        let r = request(
            &mut client,
            ask(
                &format!("t{n}"),
                "BTC",
                "+1",
                &format!("before-{n}"),
                10_000,
            ),
        )
        .await;
        assert_eq!(status(&r), pb::CreditRequestStatus::Accepted);
    }
    request(&mut client, ask("keeper", "BTC", "+1", "keep-me", 0)).await;
    for n in 0..150 {
        request(
            &mut client,
            ask(&format!("t{n}"), "ETH", "+1", &format!("after-{n}"), 10_000),
        )
        .await;
    }
    let mut m = admin(link.topology.master.port()).await;
    let entries = xrange(&mut m, REQUESTS).await;
    assert!(entries.len() < 301, "trimmed: {}", entries.len());
    assert!(
        entries.iter().any(|(_, e)| e["request_id"] == "keep-me"),
        "the undecided request keeps its entry"
    );

    // A foreign trim removes it anyway (an operator on M): the sweeper
    // publishes it again, and it gets decided (by another backend: the
    // skipping one goes away first).
    skipping.abort();
    let id: String = redis::cmd("HGET")
        .arg("mirror:credit:req:keep-me")
        .arg("entry_id")
        .query_async(&mut m)
        .await
        .expect("entry id");
    let _: u64 = redis::cmd("XDEL")
        .arg(REQUESTS)
        .arg(&id)
        .query_async(&mut m)
        .await
        .expect("xdel");
    let _late = backend(channel.clone(), "late", |_| None);
    let decided = await_final(&mut client, "keep-me").await;
    assert_eq!(status(&decided), pb::CreditRequestStatus::Accepted);
    let events = xrange(&mut m, EVENTS).await;
    assert!(
        events
            .iter()
            .any(|(_, e)| e["type"] == "redelivered" && e["request_id"] == "keep-me"),
        "the repair is recorded"
    );
}

/// A backend that answers everything except `skip` (which it holds).
fn backend_skipping(
    channel: Channel,
    consumer: &str,
    skip: &'static str,
) -> tokio::task::JoinHandle<()> {
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
        let mut held = Vec::new();
        while let Some(Ok(d)) = deliveries.next().await {
            let r = d.credit_request.expect("request");
            if r.request_id == skip {
                held.push(r);
                continue;
            }
            client
                .respond_to_credit_request(pb::RespondToCreditRequestRequest {
                    request_id: r.request_id,
                    decision: pb::CreditDecision::Accept as i32,
                    reject_reason: String::new(),
                })
                .await
                .expect("respond");
        }
    })
}

#[tokio::test]
async fn the_exchange_never_trims_responses_the_wsp_has_not_applied() {
    let link = Link::start_secured().await;
    let mut wsp_config = link.secured_config();
    wsp_config.roles = vec![openoes::config::Role::Wsp];
    let (mut wsp, wsp_channel) = serving(wsp_config.clone()).await;
    let mut client = Client::new(wsp_channel);
    let ids: Vec<String> = (0..300).map(|n| format!("resp-{n}")).collect();
    for (n, id) in ids.iter().enumerate() {
        request(&mut client, ask(&format!("r{n}"), "BTC", "+1", id, 0)).await;
    }
    // The WSP is down while the exchange answers all 300, with a response
    // stream limit of 10.
    wsp.signal_stop();
    let _ = wsp.task.await;
    let mut exchange_config = link.secured_config();
    exchange_config.roles = vec![openoes::config::Role::Exchange];
    exchange_config.streams.maxlen.insert(RESPONSES.into(), 10);
    let (_exchange, exchange_channel) = serving(exchange_config).await;
    let _b = backend(exchange_channel, "b", |_| None);
    let mut r = admin(link.topology.replica.port()).await;
    for _ in 0..400 {
        let answered: Vec<Option<String>> = redis::cmd("HMGET")
            .arg("mirror:credit:answer:resp-0")
            .arg("status")
            .query_async(&mut r)
            .await
            .expect("hmget");
        if answered.iter().flatten().count() == 1 && xrange(&mut r, RESPONSES).await.len() >= 300 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        xrange(&mut r, RESPONSES).await.len(),
        300,
        "nothing unapplied was trimmed"
    );
    // The WSP comes back and applies every one.
    let (_wsp, wsp_channel) = serving(wsp_config).await;
    let mut client = Client::new(wsp_channel);
    for id in &ids {
        assert_eq!(
            status(&await_final(&mut client, id).await),
            pb::CreditRequestStatus::Accepted
        );
    }
    let mut m = admin(link.topology.master.port()).await;
    assert_ci_is_sum_of_accepted(&mut m, &ids).await;
}

#[tokio::test]
async fn a_response_gap_is_loud_and_resolved_by_redelivery() {
    let link = Link::start_secured().await;
    let mut wsp_config = link.secured_config();
    wsp_config.roles = vec![openoes::config::Role::Wsp];
    wsp_config.credit.sweep_interval = Duration::from_millis(200);
    let (mut wsp, wsp_channel) = serving(wsp_config.clone()).await;
    let mut client = Client::new(wsp_channel);
    let early = request(&mut client, ask("g0", "BTC", "+1", "gap-0", 0)).await;
    let mut ex = as_exchange(&link).await;
    let _: String = response_of(&early, "accepted", "")
        .query_async(&mut ex)
        .await
        .expect("xadd");
    await_final(&mut client, "gap-0").await;
    let ids: Vec<String> = (1..4).map(|n| format!("gap-{n}")).collect();
    let mut pending = Vec::new();
    for (n, id) in ids.iter().enumerate() {
        pending.push(request(&mut client, ask(&format!("g{}", n + 1), "BTC", "+1", id, 0)).await);
    }
    wsp.signal_stop();
    let _ = wsp.task.await;

    // The exchange's own gateway answers (and records its answers on R)...
    let mut exchange_config = link.secured_config();
    exchange_config.roles = vec![openoes::config::Role::Exchange];
    let (_exchange, exchange_channel) = serving(exchange_config).await;
    let _b = backend(exchange_channel, "b", |_| None);
    let mut r = admin(link.topology.replica.port()).await;
    for _ in 0..200 {
        if xrange(&mut r, RESPONSES).await.len() == 4 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // ...then a trim nobody should make removes them all, unapplied.
    let _: u64 = redis::cmd("XTRIM")
        .arg(&[RESPONSES, "MAXLEN", "0"])
        .query_async(&mut ex)
        .await
        .expect("xtrim as exchange");

    let (_wsp, wsp_channel) = serving_or_not(wsp_config).await;
    let mut client = Client::new(wsp_channel.clone());
    let mut m = admin(link.topology.master.port()).await;
    let mut seen = Vec::new();
    for _ in 0..200 {
        seen = anomalies(&mut m).await;
        if seen.iter().any(|(_, why)| why.contains("trimmed")) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        seen.iter().any(|(_, why)| why.contains("trimmed")),
        "{seen:?}"
    );
    // Loudly: the service is held NOT_SERVING (the first probe has made it
    // SERVING by now if nothing held it).
    tokio::time::sleep(Duration::from_millis(600)).await;
    credit_health(&wsp_channel, ServingStatus::NotServing).await;
    for id in &ids {
        let r = get_request(&mut client, id).await;
        assert_eq!(
            status(&r),
            pb::CreditRequestStatus::Pending,
            "{id} lost its decision, not skipped"
        );
    }
    // An operator redelivers each: the exchange answers again from its
    // record, and the gap closes.
    for id in &ids {
        let resolved = client
            .resolve_credit_anomaly(pb::ResolveCreditAnomalyRequest {
                request_id: id.clone(),
                resolution: pb::CreditAnomalyResolution::Redeliver as i32,
                reason: "response gap".into(),
            })
            .await
            .expect("redeliver")
            .into_inner();
        assert!(!resolved.delivery_id.is_empty());
    }
    for id in &ids {
        assert_eq!(
            status(&await_final(&mut client, id).await),
            pb::CreditRequestStatus::Accepted
        );
    }
    credit_health(&wsp_channel, ServingStatus::Serving).await;
    let all: Vec<String> = std::iter::once("gap-0".to_string())
        .chain(ids.iter().cloned())
        .collect();
    assert_ci_is_sum_of_accepted(&mut m, &all).await;
}

/// A gateway on `config` that may start NOT_SERVING.
async fn serving_or_not(config: Config) -> (common::Gateway, Channel) {
    let gateway = common::Gateway::start(config).await;
    let channel = gateway.channel().await;
    (gateway, channel)
}

#[tokio::test]
async fn responses_written_with_lower_ids_after_a_wipe_of_r_are_applied() {
    let mut link = Link::start_secured().await;
    let (_gateway, channel) = wsp_only(&link, |_| {}).await;
    let mut client = Client::new(channel.clone());
    let first = request(&mut client, ask("w1", "BTC", "+1", "wipe-1", 0)).await;
    let mut ex = as_exchange(&link).await;
    let _: String = response_of(&first, "accepted", "")
        .query_async(&mut ex)
        .await
        .expect("xadd");
    await_final(&mut client, "wipe-1").await;
    let second = request(&mut client, ask("w2", "BTC", "+1", "wipe-2", 0)).await;
    let third = request(&mut client, ask("w3", "BTC", "+1", "wipe-3", 0)).await;

    // R restarts empty (a full resync). The exchange then writes one
    // response with an explicit id far below the WSP's cursor, and one
    // with a normal id above it.
    link.topology.replica.restart().await.expect("restart R");
    link.topology.wait_for_link().await.expect("resynced");
    let mut ex = as_exchange(&link).await;
    let _: String = response_at("5-1", &second, "accepted", "")
        .query_async(&mut ex)
        .await
        .expect("xadd low id");
    let _: String = response_of(&third, "accepted", "")
        .query_async(&mut ex)
        .await
        .expect("xadd");
    for id in ["wipe-2", "wipe-3"] {
        assert_eq!(
            status(&await_final(&mut client, id).await),
            pb::CreditRequestStatus::Accepted,
            "{id}"
        );
    }
    let mut m = admin(link.topology.master.port()).await;
    assert_ci_is_sum_of_accepted(&mut m, &["wipe-1".into(), "wipe-2".into(), "wipe-3".into()])
        .await;
}

#[tokio::test]
async fn subscriptions_are_bounded_named_once_in_known_groups_and_leave_no_consumers() {
    let link = Link::start_secured().await;
    let mut config = link.secured_config();
    config.streams.max_group_subscribers = 3;
    let (gateway, channel) = serving(config).await;
    let subscribe = |group: &str, consumer: &str| {
        let channel = channel.clone();
        let request = pb::SubscribeCreditRequestsRequest {
            group: group.into(),
            consumer: consumer.into(),
        };
        async move {
            Client::new(channel)
                .subscribe_credit_requests(request)
                .await
        }
    };
    let unknown = subscribe("my-own-group", "").await.expect_err("refused");
    assert_eq!(violations(&unknown), ["group"]);
    let a = subscribe("", "a").await.expect("a");
    let twin = subscribe("", "a").await;
    // The refusal may come at once or as the stream's first item.
    let twin = match twin {
        Err(e) => e,
        Ok(s) => s
            .into_inner()
            .next()
            .await
            .expect("ends")
            .expect_err("refused"),
    };
    assert_eq!(twin.code(), Code::AlreadyExists, "{twin:?}");
    assert_eq!(
        twin.get_details_error_info().expect("info").reason,
        "CONSUMER_IN_USE"
    );
    let b = subscribe("", "b").await.expect("b");
    let c = subscribe("", "").await.expect("c");
    let over = subscribe("", "d").await.expect_err("limit");
    assert_eq!(over.code(), Code::ResourceExhausted);
    assert_eq!(
        over.get_details_error_info().expect("info").reason,
        "TOO_MANY_SUBSCRIBERS"
    );

    // Streams that end leave no consumer behind (they held nothing).
    tokio::time::sleep(Duration::from_millis(300)).await;
    drop((a, b, c));
    let mut r = admin(link.topology.replica.port()).await;
    let mut left = Vec::new();
    for _ in 0..100 {
        left = consumers(&mut r).await;
        if left.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(left.is_empty(), "consumers left: {left:?}");
    drop(gateway);
}

async fn consumers(r: &mut MultiplexedConnection) -> Vec<String> {
    let rows: Vec<Vec<redis::Value>> = redis::cmd("XINFO")
        .arg(&["CONSUMERS", REQUESTS, "credit-request-processor"])
        .query_async(r)
        .await
        .unwrap_or_default();
    rows.iter()
        .filter_map(|row| row.get(1).map(openoes::redis::value_text))
        .collect()
}

#[tokio::test]
async fn an_answer_record_never_expires_while_its_request_waits_for_an_answer() {
    let link = Link::start_secured().await;
    let mut config = link.secured_config();
    config.credit.answer_retention = Duration::from_millis(50);
    let (_gateway, channel) = serving(config).await;
    let mut client = Client::new(channel.clone());
    let mut sub = client
        .subscribe_credit_requests(pb::SubscribeCreditRequestsRequest::default())
        .await
        .expect("subscribe")
        .into_inner();
    request(&mut client, ask("slow", "BTC", "+1", "slow-answer", 0)).await;
    sub.next().await.expect("delivery").expect("ok");
    tokio::time::sleep(Duration::from_millis(500)).await; // ten retentions
    client
        .respond_to_credit_request(pb::RespondToCreditRequestRequest {
            request_id: "slow-answer".into(),
            decision: pb::CreditDecision::Accept as i32,
            reject_reason: String::new(),
        })
        .await
        .expect("still answerable");
    assert_eq!(
        status(&await_final(&mut client, "slow-answer").await),
        pb::CreditRequestStatus::Accepted
    );
}

#[tokio::test]
async fn resolve_credit_anomaly_rejects_or_redelivers_a_pending_request() {
    let link = Link::start_secured().await;
    let (_gateway, channel) = wsp_only(&link, |_| {}).await;
    let mut client = Client::new(channel.clone());
    let mut stuck = request(&mut client, ask("an", "BTC", "+5", "anom-1", 0)).await;
    let mut ex = as_exchange(&link).await;
    // Accepted with another ci: an anomaly, the pair blocked.
    let real_ci = stuck.expected_ci.clone();
    stuck.expected_ci = "500".into();
    let _: String = response_of(&stuck, "accepted", "")
        .query_async(&mut ex)
        .await
        .expect("xadd");
    stuck.expected_ci = real_ci;
    let mut m = admin(link.topology.master.port()).await;
    for _ in 0..100 {
        if !anomalies(&mut m).await.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let blocked = client
        .request_credit(ask("an", "BTC", "+1", "anom-2", 0))
        .await
        .expect_err("in flight");
    assert_eq!(blocked.code(), Code::Aborted);

    let bad = client
        .resolve_credit_anomaly(pb::ResolveCreditAnomalyRequest {
            request_id: "anom-1".into(),
            resolution: pb::CreditAnomalyResolution::Reject as i32,
            reason: String::new(),
        })
        .await
        .expect_err("a reason is required");
    assert_eq!(violations(&bad), ["reason"]);
    let rejected = client
        .resolve_credit_anomaly(pb::ResolveCreditAnomalyRequest {
            request_id: "anom-1".into(),
            resolution: pb::CreditAnomalyResolution::Reject as i32,
            reason: "the exchange confirmed it never credited".into(),
        })
        .await
        .expect("reject")
        .into_inner()
        .credit_request
        .expect("record");
    assert_eq!(status(&rejected), pb::CreditRequestStatus::Rejected);
    assert_eq!(
        rejected.reject_reason,
        "RESOLVED: the exchange confirmed it never credited"
    );
    let again = client
        .resolve_credit_anomaly(pb::ResolveCreditAnomalyRequest {
            request_id: "anom-1".into(),
            resolution: pb::CreditAnomalyResolution::Redeliver as i32,
            reason: String::new(),
        })
        .await
        .expect_err("not pending");
    assert_eq!(again.code(), Code::FailedPrecondition);
    assert_eq!(
        again.get_details_error_info().expect("info").reason,
        "NOT_PENDING"
    );
    // The pair is free: a new request goes through, and a late answer to
    // the rejected one changes nothing.
    let next = request(&mut client, ask("an", "BTC", "+1", "anom-2", 0)).await;
    let _: String = response_of(&stuck, "accepted", "")
        .query_async(&mut ex)
        .await
        .expect("xadd late");
    let _: String = response_of(&next, "accepted", "")
        .query_async(&mut ex)
        .await
        .expect("xadd");
    assert_eq!(
        status(&await_final(&mut client, "anom-2").await),
        pb::CreditRequestStatus::Accepted
    );
    assert_eq!(inventory(&mut client, "an", "BTC").await.amount, "1");

    // Redeliver: a plain exchange that reads the stream sees it again.
    let mut stuck2 = request(&mut client, ask("an2", "ETH", "+3", "anom-3", 0)).await;
    let entries_before = xrange(&mut m, REQUESTS).await.len();
    let resolved = client
        .resolve_credit_anomaly(pb::ResolveCreditAnomalyRequest {
            request_id: "anom-3".into(),
            resolution: pb::CreditAnomalyResolution::Redeliver as i32,
            reason: "exchange lost it".into(),
        })
        .await
        .expect("redeliver")
        .into_inner();
    let entries = xrange(&mut m, REQUESTS).await;
    assert_eq!(entries.len(), entries_before + 1);
    let (last_id, last) = entries.last().expect("entry");
    assert_eq!(
        (&resolved.delivery_id, last["request_id"].as_str()),
        (last_id, "anom-3")
    );
    stuck2.custodian = last["custodian"].clone();
    let _: String = response_of(&stuck2, "accepted", "")
        .query_async(&mut ex)
        .await
        .expect("xadd");
    assert_eq!(
        status(&await_final(&mut client, "anom-3").await),
        pb::CreditRequestStatus::Accepted
    );
    let ids = ["anom-1", "anom-2", "anom-3"].map(String::from);
    assert_ci_is_sum_of_accepted(&mut m, &ids).await;
}

#[tokio::test]
async fn a_huge_cursor_is_invalid_argument_with_a_bounded_message() {
    let link = Link::start_secured().await;
    let (_gateway, channel) = serving(link.secured_config()).await;
    let mut client = Client::new(channel);
    let e = client
        .watch_credit_events(pb::WatchCreditEventsRequest {
            // Under grpc.max_stream_message_bytes (64 KiB), so the handler
            // sees it; larger is refused before it is decoded
            // (MESSAGE_TOO_LARGE, tests/transport.rs).
            start_after_event_id: "9".repeat(60_000),
            ..Default::default()
        })
        .await
        .expect_err("refused");
    assert_eq!(violations(&e), ["start_after_event_id"]);
    assert!(e.message().len() <= 1024, "{}", e.message().len());
}

#[tokio::test]
async fn durable_writes_wait_for_r_and_say_so_when_it_cannot_have_them() {
    let mut link = Link::start_secured().await;
    let mut config = link.secured_config();
    config.roles = vec![openoes::config::Role::Wsp];
    config.redis.durability.replicas = 1;
    config.redis.durability.timeout = Duration::from_millis(300);
    let (_gateway, channel) = serving(config).await;
    let mut client = Client::new(channel.clone());
    let ok = request(&mut client, ask("dur", "BTC", "+1", "dur-1", 0)).await;
    assert_eq!(status(&ok), pb::CreditRequestStatus::Pending);

    // R stops: a write on M cannot reach it.
    link.topology.replica.stop().await;
    let e = client
        .request_credit(ask("dur2", "BTC", "+1", "dur-2", 0))
        .await
        .expect_err("not durable");
    assert_eq!(e.code(), Code::Unavailable, "{e:?}");
    assert_eq!(
        e.get_details_error_info().expect("info").reason,
        "DURABILITY_TIMEOUT"
    );
    // It did happen on M; once R is back, the retry returns it.
    link.topology.replica.restart().await.expect("restart R");
    link.topology.wait_for_link().await.expect("link");
    let again = request(&mut client, ask("dur2", "BTC", "+1", "dur-2", 0)).await;
    assert_eq!(again.request_id, "dur-2");
    let mut m = admin(link.topology.master.port()).await;
    let entries = xrange(&mut m, REQUESTS).await;
    assert_eq!(
        entries
            .iter()
            .filter(|(_, e)| e["request_id"] == "dur-2")
            .count(),
        1,
        "written once"
    );
}

#[tokio::test]
async fn waitaof_is_used_where_the_server_has_it_and_refused_clearly_where_not() {
    let link = Link::start_secured().await;
    let version: String = link
        .topology
        .master
        .query(redis::cmd("INFO").arg("server"))
        .await
        .expect("info");
    // Redis 7.0 has no WAITAOF; 7.2+ and Valkey (which reports
    // redis_version:7.2.4) do.
    let has_waitaof = !version.contains("redis_version:7.0");
    if has_waitaof {
        link.make_master_durable().await;
    }
    let mut config = link.secured_config();
    config.roles = vec![openoes::config::Role::Wsp];
    config.redis.durability.aof = true;
    let (_gateway, channel) = serving(config).await;
    let mut client = Client::new(channel);
    let answer = client
        .request_credit(ask("aof", "BTC", "+1", "aof-1", 0))
        .await;
    if has_waitaof {
        // M fsyncs its AOF on every write: WAITAOF acknowledges at once.
        let r = answer.expect("WAITAOF acknowledged the write");
        assert!(r.into_inner().credit_request.is_some());
    } else {
        let e = answer.expect_err("no WAITAOF on Redis 7.0");
        assert_eq!(e.code(), Code::Unavailable);
        assert!(e.message().contains("WAITAOF"), "{}", e.message());
    }
}

/// The WSP applies the responses of one read in one pipeline of scripts.
/// If one fails (here: its request's record is of the wrong type on M, so
/// its script errors), the responses after it must wait, never move the
/// cursor past it: else the failed one would be skipped for good.
#[tokio::test]
async fn a_response_whose_apply_fails_is_never_passed_by_the_ones_after_it() {
    let link = Link::start_secured().await;
    let (_gateway, channel) = wsp_only(&link, |_| {}).await;
    let mut client = Client::new(channel.clone());
    let a = request(&mut client, ask("stuck-a", "BTC", "+1", "stuck-1", 0)).await;
    let b = request(&mut client, ask("stuck-b", "BTC", "+2", "stuck-2", 0)).await;
    let mut m = admin(link.topology.master.port()).await;
    let record = "mirror:credit:req:stuck-1";
    let saved: Vec<u8> = redis::cmd("DUMP")
        .arg(record)
        .query_async(&mut m)
        .await
        .expect("dump");
    let _: () = redis::cmd("SET")
        .arg(record)
        .arg("not a hash")
        .query_async(&mut m)
        .await
        .expect("break the record");

    let mut r = as_exchange(&link).await;
    let mut both = redis::pipe();
    both.add_command(response_of(&a, "accepted", ""))
        .add_command(response_of(&b, "accepted", ""));
    let _: Vec<String> = both.query_async(&mut r).await.expect("xadd both");

    // The follower retries A (and reads B with it) again and again: B must
    // stay pending all the while.
    for _ in 0..15 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let b_now = get_request(&mut client, "stuck-2").await;
        assert_eq!(
            status(&b_now),
            pb::CreditRequestStatus::Pending,
            "B was applied past the failed A"
        );
    }

    // Repaired, both are applied, in order, once.
    let _: () = redis::cmd("RESTORE")
        .arg(record)
        .arg(0)
        .arg(saved)
        .arg("REPLACE")
        .query_async(&mut m)
        .await
        .expect("restore");
    for id in ["stuck-1", "stuck-2"] {
        assert_eq!(
            status(&await_final(&mut client, id).await),
            pb::CreditRequestStatus::Accepted
        );
    }
    assert_ci_is_sum_of_accepted(&mut m, &["stuck-1".into(), "stuck-2".into()]).await;
    assert_eq!(inventory(&mut client, "stuck-a", "BTC").await.amount, "1");
    assert_eq!(inventory(&mut client, "stuck-b", "BTC").await.amount, "2");
}
