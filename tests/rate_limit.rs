//! Rate limits that hold across gateways: two gateways on one Redis draw
//! from one GCRA budget per (principal, class), refusals carry RetryInfo
//! and QuotaFailure, and a principal's open streams are bounded. An
//! exchange-only gateway keeps its budgets on R as the `exchange` ACL user
//! (the shipped ACL lets it); a budget Redis refuses to check refuses the
//! call, one Redis cannot be reached for lets it pass.

mod common;

use std::time::Duration;

use common::{Gateway, Link, auth::with_tokens, wait_for_health};
use futures_util::future::join_all;
use openoes::config::{CallerRole, RedisEndpointConfig, Role};
use tonic::{Code, Status, metadata::MetadataValue, transport::Channel};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_types::StatusExt;

const SOON: Duration = Duration::from_secs(10);
const RATE: u32 = 1;
const BURST: u32 = 10;

async fn call(channel: &Channel, rpc: &str, token: &str) -> Result<(), Status> {
    let (mut grpc, request, path) = prepare(channel, rpc, token).await?;
    let codec = tonic_prost::ProstCodec::<(), ()>::default();
    grpc.unary(request, path, codec).await.map(drop)
}

async fn open_stream(
    channel: &Channel,
    rpc: &str,
    token: &str,
) -> Result<tonic::Streaming<()>, Status> {
    let (mut grpc, request, path) = prepare(channel, rpc, token).await?;
    let codec = tonic_prost::ProstCodec::<(), ()>::default();
    grpc.server_streaming(request, path, codec)
        .await
        .map(tonic::Response::into_inner)
}

async fn prepare(
    channel: &Channel,
    rpc: &str,
    token: &str,
) -> Result<
    (
        tonic::client::Grpc<Channel>,
        tonic::Request<()>,
        http::uri::PathAndQuery,
    ),
    Status,
> {
    let mut grpc = tonic::client::Grpc::new(channel.clone());
    grpc.ready()
        .await
        .map_err(|e| Status::unknown(e.to_string()))?;
    let mut request = tonic::Request::new(());
    request.set_timeout(Duration::from_secs(5));
    let value: MetadataValue<_> = format!("Bearer {token}").parse().expect("ascii");
    request.metadata_mut().insert("authorization", value);
    let path = http::uri::PathAndQuery::try_from(format!("/{rpc}")).expect("path");
    Ok((grpc, request, path))
}

fn limited(result: &Result<(), Status>) -> bool {
    matches!(result, Err(s) if s.code() == Code::ResourceExhausted)
}

fn reason(status: &Status) -> String {
    status
        .get_error_details()
        .error_info()
        .map(|i| i.reason.clone())
        .unwrap_or_default()
}

/// An exchange-only gateway on a link locked down with the shipped ACLs:
/// it works on R as the `exchange` ACL user. Read budget RATE/s, BURST.
async fn exchange_gateway(link: &Link) -> (Gateway, Channel, String) {
    let mut config = link.secured_config();
    config.roles = vec![Role::Exchange];
    let tokens = with_tokens(&mut config);
    config.rate_limit.enabled = true;
    config.rate_limit.read_per_second = RATE;
    config.rate_limit.burst = BURST;
    let gateway = Gateway::start(config).await;
    let channel = gateway.channel().await;
    wait_for_health(&channel, "", ServingStatus::Serving, SOON).await;
    (gateway, channel, tokens[&CallerRole::Exchange].clone())
}

const EXCHANGE_READ: &str = "openoes.credit.v1.CreditService/GetCreditRequest";

#[tokio::test]
async fn an_exchange_only_gateway_keeps_its_budgets_on_r_as_the_exchange_acl_user() {
    let link = Link::start_secured().await;
    let (_gateway, channel, exchange) = exchange_gateway(&link).await;

    let mut results = Vec::new();
    for _ in 0..2 * BURST {
        results.push(call(&channel, EXCHANGE_READ, &exchange).await);
    }
    // The burst passed the budget (the handler refused the empty request),
    // then the budget refused: the limiter ran, it did not fail open.
    for result in &results[..BURST as usize] {
        let status = result.as_ref().expect_err("empty request");
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    }
    let refused = results
        .iter()
        .filter_map(|r| r.as_ref().err())
        .filter(|s| s.code() == Code::ResourceExhausted)
        .collect::<Vec<_>>();
    assert!(!refused.is_empty(), "no call was limited: {results:?}");
    assert!(
        refused.iter().all(|s| reason(s) == "RATE_LIMITED"),
        "{refused:?}"
    );
    // The budget lives on R, under the exchange's own prefix; M has none.
    let on_r: bool = link
        .topology
        .replica
        .query(redis::cmd("EXISTS").arg("mirror:ratelimit:exchange:read:exchange"))
        .await
        .expect("exists on R");
    assert!(on_r, "the budget is on R");
    let on_m: bool = link
        .topology
        .master
        .query(redis::cmd("EXISTS").arg("mirror:ratelimit:read:exchange"))
        .await
        .expect("exists on M");
    assert!(!on_m, "nothing on M");
}

#[tokio::test]
async fn a_budget_redis_refuses_to_check_refuses_the_call_with_redis_error() {
    let link = Link::start_secured().await;
    // A deployment mistake: the budget's key holds something else.
    link.topology
        .replica
        .query::<()>(
            redis::cmd("HSET")
                .arg("mirror:ratelimit:exchange:read:exchange")
                .arg("not")
                .arg("a budget"),
        )
        .await
        .expect("hset");
    let (_gateway, channel, exchange) = exchange_gateway(&link).await;
    let status = call(&channel, EXCHANGE_READ, &exchange)
        .await
        .expect_err("refused");
    assert_eq!(
        (status.code(), reason(&status).as_str()),
        (Code::Internal, "REDIS_ERROR"),
        "{status:?}"
    );
    assert!(status.message().contains("refused a command"), "{status:?}");
}

#[tokio::test]
async fn a_budget_on_an_unreachable_redis_lets_calls_pass() {
    let link = Link::start().await;
    let mut config = link.config();
    let tokens = with_tokens(&mut config);
    // M (a WSP gateway's budgets) is a port nobody listens on.
    config.redis.master = RedisEndpointConfig::local(common::free_addr().port());
    config.rate_limit.enabled = true;
    config.rate_limit.read_per_second = RATE;
    config.rate_limit.burst = 1;
    let gateway = Gateway::start(config).await;
    let channel = gateway.channel().await;
    let reader = &tokens[&CallerRole::Reader];
    // Three times the burst, at once: a checked budget would refuse two.
    for _ in 0..3 {
        let result = call(
            &channel,
            "openoes.credit.v1.CreditService/GetCreditInventory",
            reader,
        )
        .await;
        let status = result.expect_err("empty request");
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_gateways_on_one_redis_share_one_budget() {
    let link = Link::start().await;
    let mut config = link.config();
    let tokens = with_tokens(&mut config);
    config.rate_limit.enabled = true;
    config.rate_limit.read_per_second = RATE;
    config.rate_limit.burst = BURST;
    let gateways = [
        Gateway::start(config.clone()).await,
        Gateway::start(config).await,
    ];
    let mut channels = Vec::new();
    for gateway in &gateways {
        let channel = gateway.channel().await;
        wait_for_health(&channel, "", ServingStatus::Serving, SOON).await;
        channels.push(channel);
    }
    let reader = &tokens[&CallerRole::Reader];
    let rpc = "openoes.credit.v1.CreditService/GetCreditInventory";

    let started = tokio::time::Instant::now();
    let calls = (0..40).map(|i| call(&channels[i % 2], rpc, reader));
    let results = join_all(calls).await;
    let elapsed = started.elapsed();

    let allowed = results.iter().filter(|r| !limited(r)).count();
    // Within the one budget: the burst, plus what the rate refilled while
    // the calls ran (measured), plus one for the refill in progress.
    let refilled = (elapsed.as_secs_f64() * f64::from(RATE)).ceil() as usize;
    assert!(
        allowed <= BURST as usize + refilled + 1,
        "{allowed} calls passed over both gateways in {elapsed:?}: the budget is not shared"
    );
    assert!(allowed >= BURST as usize, "the burst passes: {allowed}");
    for result in results.iter().filter(|r| !limited(r)) {
        // Passed the budget: the handler answered the empty request.
        let status = result.as_ref().expect_err("empty request");
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    }
    // Both gateways refused some: each enforces the shared budget.
    for side in 0..2 {
        assert!(
            results.iter().skip(side).step_by(2).any(limited),
            "gateway {side} refused nothing"
        );
    }
    let refused = results
        .iter()
        .find_map(|r| {
            r.as_ref()
                .err()
                .filter(|s| s.code() == Code::ResourceExhausted)
        })
        .expect("a refusal");
    let details = refused.get_error_details();
    assert_eq!(
        details.error_info().map(|i| i.reason.as_str()),
        Some("RATE_LIMITED")
    );
    let retry = details
        .retry_info()
        .and_then(|r| r.retry_delay)
        .expect("RetryInfo");
    assert!(
        retry > Duration::ZERO && retry <= Duration::from_secs(1),
        "at most one interval: {retry:?}"
    );
    let quota = details.quota_failure().expect("QuotaFailure");
    assert_eq!(quota.violations[0].subject, "principal:reader/class:read");

    // Another class and another principal have budgets of their own.
    let other = call(&channels[0], rpc, &tokens[&CallerRole::Wsp]).await;
    assert!(!limited(&other), "{other:?}");
    let write = call(
        &channels[1],
        "openoes.quote.v1.QuoteService/UpsertPool",
        &tokens[&CallerRole::QuoteIngest],
    )
    .await;
    assert!(!limited(&write), "{write:?}");
}

#[tokio::test]
async fn a_principal_holds_at_most_max_streams_per_principal() {
    let link = Link::start().await;
    let mut config = link.config();
    let tokens = with_tokens(&mut config);
    config.rate_limit.max_streams_per_principal = 2;
    let gateway = Gateway::start(config).await;
    let channel = gateway.channel().await;
    wait_for_health(&channel, "", ServingStatus::Serving, SOON).await;
    let watch = "openoes.credit.v1.CreditService/WatchCreditEvents";
    let reader = &tokens[&CallerRole::Reader];

    let first = open_stream(&channel, watch, reader).await.expect("first");
    let _second = open_stream(&channel, watch, reader).await.expect("second");
    let status = open_stream(&channel, watch, reader)
        .await
        .expect_err("third is over the bound");
    assert_eq!(status.code(), Code::ResourceExhausted);
    assert_eq!(
        status
            .get_error_details()
            .error_info()
            .map(|i| i.reason.clone()),
        Some("TOO_MANY_STREAMS".into())
    );
    // Others are not held back by this principal's streams.
    let _other = open_stream(&channel, watch, &tokens[&CallerRole::Wsp])
        .await
        .expect("another principal");
    // Closing a stream gives its slot back (once the server sees the reset).
    drop(first);
    let reopened = tokio::time::timeout(SOON, async {
        loop {
            match open_stream(&channel, watch, reader).await {
                Ok(stream) => break stream,
                Err(s) if s.code() == Code::ResourceExhausted => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(s) => panic!("{s:?}"),
            }
        }
    })
    .await;
    assert!(reopened.is_ok(), "the slot never came back");
}
