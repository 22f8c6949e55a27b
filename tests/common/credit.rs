//! Helpers of the credit tests: a secured link with a gateway, requests,
//! exchange backends, and the invariant checks.
#![allow(dead_code)] // each test binary uses its own part

use std::{collections::HashMap, time::Duration};

use futures_util::StreamExt;
use openoes::proto::credit::v1::{
    self as pb, credit_service_client::CreditServiceClient as Client,
};
use redis::aio::MultiplexedConnection;
use tokio::task::JoinHandle;
use tonic::{Code, transport::Channel};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_types::StatusExt;

use super::{Gateway, Link, wait_for_health};

pub const CREDIT: &str = "openoes.credit.v1.CreditService";

pub async fn start() -> (Link, Gateway, Channel) {
    let link = Link::start_secured().await;
    let (gateway, channel) = serving(link.secured_config()).await;
    (link, gateway, channel)
}

/// A gateway on `config`, once its CreditService is SERVING.
pub async fn serving(config: openoes::config::Config) -> (Gateway, Channel) {
    let gateway = Gateway::start(config).await;
    let channel = gateway.channel().await;
    credit_health(&channel, ServingStatus::Serving).await;
    (gateway, channel)
}

/// Waits (up to 10 s) until CreditService's health is `want`.
pub async fn credit_health(channel: &Channel, want: ServingStatus) {
    wait_for_health(channel, CREDIT, want, Duration::from_secs(10)).await;
}

pub fn ask(
    user: &str,
    asset: &str,
    change: &str,
    id: &str,
    wait_ms: u64,
) -> pb::RequestCreditRequest {
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

pub fn status(r: &pb::CreditRequest) -> pb::CreditRequestStatus {
    pb::CreditRequestStatus::try_from(r.status).expect("status")
}

/// RequestCredit, retried on UNAVAILABLE as the contract allows (same
/// request_id): on a loaded 2-core runner a slow health probe fails calls
/// fast for a moment.
pub async fn request(
    client: &mut Client<Channel>,
    r: pb::RequestCreditRequest,
) -> pb::CreditRequest {
    loop {
        match client.request_credit(r.clone()).await {
            Ok(response) => return response.into_inner().credit_request.expect("record"),
            Err(e) if e.code() == Code::Unavailable => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("request credit: {e:?}"),
        }
    }
}

/// An exchange backend: answers every delivery with `decide`, until dropped.
pub fn backend(
    channel: Channel,
    consumer: &str,
    decide: impl Fn(&pb::CreditRequest) -> Option<String> + Send + 'static,
) -> JoinHandle<()> {
    let consumer = consumer.to_string();
    tokio::spawn(async move {
        let mut client = Client::new(channel);
        // As a real backend does: a stream that ends (Redis trouble,
        // shutdown) is opened again; answers are retried until they stick.
        loop {
            let subscribed = client
                .subscribe_credit_requests(pb::SubscribeCreditRequestsRequest {
                    group: String::new(),
                    consumer: consumer.clone(),
                })
                .await;
            let Ok(deliveries) = subscribed else {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            };
            let mut deliveries = deliveries.into_inner();
            while let Some(Ok(delivery)) = deliveries.next().await {
                let request = delivery.credit_request.expect("request");
                let (decision, reject_reason) = match decide(&request) {
                    None => (pb::CreditDecision::Accept, String::new()),
                    Some(reason) => (pb::CreditDecision::Reject, reason),
                };
                let answer = pb::RespondToCreditRequestRequest {
                    request_id: request.request_id,
                    decision: decision as i32,
                    reject_reason,
                };
                while let Err(e) = client.respond_to_credit_request(answer.clone()).await {
                    assert_eq!(e.code(), Code::Unavailable, "{e:?}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
}

pub async fn admin(port: u16) -> MultiplexedConnection {
    redis::Client::open(format!("redis://admin:admin-pw@127.0.0.1:{port}"))
        .expect("client")
        .get_multiplexed_async_connection()
        .await
        .expect("admin connection")
}

pub async fn inventory(
    client: &mut Client<Channel>,
    user: &str,
    asset: &str,
) -> pb::CreditInventory {
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

pub fn violations(e: &tonic::Status) -> Vec<String> {
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    e.get_details_bad_request()
        .expect("field violations")
        .field_violations
        .into_iter()
        .map(|v| v.field)
        .collect()
}

/// A deterministic pseudo-random number from a string (no RNG dependency).
pub fn hash(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Every final event per request id, read from the start of the log.
pub async fn final_events(
    client: &mut Client<Channel>,
    want: usize,
) -> HashMap<String, Vec<String>> {
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
pub async fn assert_ci_is_sum_of_accepted(m: &mut MultiplexedConnection, ids: &[String]) {
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

pub async fn login(port: u16, user: &str, password: &str) -> MultiplexedConnection {
    // Longer than the BLOCK times used below.
    let config =
        redis::AsyncConnectionConfig::new().set_response_timeout(Some(Duration::from_secs(30)));
    redis::Client::open(format!("redis://{user}:{password}@127.0.0.1:{port}"))
        .expect("client")
        .get_multiplexed_async_connection_with_config(&config)
        .await
        .expect("login")
}

pub fn now_s() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

/// Polls a request's record until it is final.
/// GetCreditRequest of `id`, which must exist.
pub async fn get_request(client: &mut Client<Channel>, id: &str) -> pb::CreditRequest {
    client
        .get_credit_request(pb::GetCreditRequestRequest {
            request_id: id.into(),
        })
        .await
        .expect("get")
        .into_inner()
        .credit_request
        .expect("record")
}

pub async fn await_final(client: &mut Client<Channel>, id: &str) -> pb::CreditRequest {
    for _ in 0..400 {
        if let Ok(r) = client
            .get_credit_request(pb::GetCreditRequestRequest {
                request_id: id.into(),
            })
            .await
        {
            let record = r.into_inner().credit_request.expect("record");
            if status(&record) != pb::CreditRequestStatus::Pending {
                return record;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{id} never became final");
}

/// Requests `r` while subscriber "a", on a connection of its own, is the
/// only one: it takes the delivery and dies without answering.
pub async fn taken_by_a_subscriber_that_dies(
    gateway: &Gateway,
    client: &mut Client<Channel>,
    r: pb::RequestCreditRequest,
) -> pb::SubscribeCreditRequestsResponse {
    let mut a = Client::new(gateway.channel().await)
        .subscribe_credit_requests(pb::SubscribeCreditRequestsRequest {
            group: String::new(),
            consumer: "a".into(),
        })
        .await
        .expect("subscribe a")
        .into_inner();
    request(client, r).await;
    a.next().await.expect("delivery").expect("ok")
}
