//! The gateway over the wire: health that follows real Redis outages,
//! reflection, UNIMPLEMENTED for a role not served, and graceful shutdown.

mod common;

use std::time::Duration;

use common::{Gateway, Link, wait_for_health};
use openoes::{config::Role, error::DOMAIN, services::NAMES as SERVICE_NAMES};
use tokio_stream::StreamExt;
use tonic::Code;
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};
use tonic_types::StatusExt;

const SOON: Duration = Duration::from_secs(5);

#[tokio::test]
async fn health_follows_the_master_going_down_and_coming_back() {
    let mut link = Link::start().await;
    // AttestationService serves only with an issuer key.
    let dir = tempfile::tempdir().expect("tmp");
    let mut config = link.config();
    config.attestation.key_file = common::attestation::issuer_key(dir.path(), "issuer.key").0;
    let gateway = Gateway::start(config).await;
    let channel = gateway.channel().await;
    for service in SERVICE_NAMES.iter().chain(&[""]) {
        wait_for_health(&channel, service, ServingStatus::Serving, SOON).await;
    }

    link.topology.master.kill().await;
    let took = wait_for_health(&channel, "", ServingStatus::NotServing, SOON).await;
    println!("NOT_SERVING {took:?} after SIGKILL of M");
    for service in SERVICE_NAMES {
        wait_for_health(&channel, service, ServingStatus::NotServing, SOON).await;
    }
    // A liveness probe must not restart the gateway for Redis's outage.
    let liveness = HealthCheckRequest {
        service: openoes::server::LIVENESS_SERVICE.into(),
    };
    let status = HealthClient::new(channel.clone())
        .check(liveness)
        .await
        .expect("liveness check")
        .into_inner()
        .status;
    assert_eq!(
        status,
        ServingStatus::Serving as i32,
        "liveness with M dead"
    );

    link.topology.master.restart().await.expect("restart M");
    let took = wait_for_health(&channel, "", ServingStatus::Serving, SOON).await;
    println!("SERVING {took:?} after M restarted");
    for service in SERVICE_NAMES {
        wait_for_health(&channel, service, ServingStatus::Serving, SOON).await;
    }
}

#[tokio::test]
async fn an_exchange_only_gateway_needs_only_the_replica() {
    let mut link = Link::start().await;
    let mut config = link.config();
    config.roles = vec![Role::Exchange];
    let gateway = Gateway::start(config).await;
    let channel = gateway.channel().await;
    wait_for_health(&channel, "", ServingStatus::Serving, SOON).await;

    // The exchange cannot reach the WSP's master in a real deployment; its
    // credit service must not care. Services whose data lives on M do.
    link.topology.master.kill().await;
    wait_for_health(
        &channel,
        "openoes.quote.v1.QuoteService",
        ServingStatus::NotServing,
        SOON,
    )
    .await;
    let mut health = HealthClient::new(channel.clone());
    for service in ["", "openoes.credit.v1.CreditService"] {
        let status = health
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .expect("check")
            .into_inner()
            .status();
        assert_eq!(status, ServingStatus::Serving, "{service:?} with M down");
    }

    link.topology.replica.kill().await;
    wait_for_health(&channel, "", ServingStatus::NotServing, SOON).await;
}

#[tokio::test]
async fn the_gateway_starts_while_redis_is_down_and_serves_once_it_is_up() {
    let mut link = Link::start().await;
    link.topology.master.kill().await;
    link.topology.replica.kill().await;
    let gateway = Gateway::start(link.config()).await;
    let channel = gateway.channel().await;
    wait_for_health(&channel, "", ServingStatus::NotServing, SOON).await;
    link.topology.master.restart().await.expect("restart M");
    link.topology.replica.restart().await.expect("restart R");
    wait_for_health(&channel, "", ServingStatus::Serving, SOON).await;
}

#[tokio::test]
async fn reflection_v1_and_v1alpha_list_every_service() {
    use tonic_reflection::pb::{v1, v1alpha};
    let link = Link::start().await;
    let gateway = Gateway::start(link.config()).await;
    let channel = gateway.channel().await;

    let mut expected: Vec<String> = SERVICE_NAMES.iter().map(|s| s.to_string()).collect();
    expected.push("grpc.health.v1.Health".into());

    let request = v1::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(v1::server_reflection_request::MessageRequest::ListServices(
            String::new(),
        )),
    };
    let mut client = v1::server_reflection_client::ServerReflectionClient::new(channel.clone());
    let mut responses = client
        .server_reflection_info(tokio_stream::once(request))
        .await
        .expect("v1 reflection")
        .into_inner();
    let Some(Ok(response)) = responses.next().await else {
        panic!("no v1 reflection answer")
    };
    let Some(v1::server_reflection_response::MessageResponse::ListServicesResponse(list)) =
        response.message_response
    else {
        panic!("unexpected v1 reflection answer")
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    for name in expected
        .iter()
        .chain(&["grpc.reflection.v1.ServerReflection".to_string()])
    {
        assert!(
            names.contains(name),
            "v1 reflection lists {name}: {names:?}"
        );
    }

    let request = v1alpha::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(
            v1alpha::server_reflection_request::MessageRequest::ListServices(String::new()),
        ),
    };
    let mut client = v1alpha::server_reflection_client::ServerReflectionClient::new(channel);
    let mut responses = client
        .server_reflection_info(tokio_stream::once(request))
        .await
        .expect("v1alpha reflection")
        .into_inner();
    let Some(Ok(response)) = responses.next().await else {
        panic!("no v1alpha answer")
    };
    let Some(v1alpha::server_reflection_response::MessageResponse::ListServicesResponse(list)) =
        response.message_response
    else {
        panic!("unexpected v1alpha reflection answer")
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    for name in &expected {
        assert!(
            names.contains(name),
            "v1alpha reflection lists {name}: {names:?}"
        );
    }
}

#[tokio::test]
async fn an_rpc_of_a_role_not_served_answers_unimplemented_naming_the_role() {
    use openoes::proto::settlement::v1::{
        SubmitSettlementReportRequest, settlement_service_client::SettlementServiceClient,
    };
    let link = Link::start().await;
    let mut config = link.config();
    config.roles = vec![openoes::config::Role::Wsp];
    let gateway = Gateway::start(config).await;
    let status = SettlementServiceClient::new(gateway.channel().await)
        .submit_settlement_report(SubmitSettlementReportRequest::default())
        .await
        .expect_err("the exchange role is not served");
    assert_eq!(status.code(), Code::Unimplemented, "{status:?}");
    assert!(status.message().contains("exchange role"), "{status:?}");
    let info = status
        .get_error_details()
        .error_info()
        .cloned()
        .expect("ErrorInfo attached");
    assert_eq!(info.reason, "ROLE_NOT_SERVED");
    assert_eq!(info.domain, DOMAIN);
}

#[tokio::test]
async fn stop_turns_health_not_serving_and_ends_open_streams_with_unavailable() {
    let link = Link::start().await;
    // A drain grace far past the test's deadlines: if the open stream held
    // the drain, the stop would miss them.
    let mut config = link.config();
    config.shutdown.grace_period = Duration::from_secs(120);
    let mut gateway = Gateway::start(config).await;
    let channel = gateway.channel().await;
    wait_for_health(&channel, "", ServingStatus::Serving, SOON).await;

    // A stream that would never end by itself: Health/Watch.
    let mut watch = HealthClient::new(channel.clone())
        .watch(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .expect("watch")
        .into_inner();
    let first = watch.next().await.expect("first status").expect("ok");
    assert_eq!(first.status(), ServingStatus::Serving);

    gateway.signal_stop();
    let mut saw_not_serving = false;
    let end = loop {
        match tokio::time::timeout(SOON, watch.next())
            .await
            .expect("stream must end promptly")
        {
            Some(Ok(update)) => saw_not_serving |= update.status() == ServingStatus::NotServing,
            Some(Err(status)) => break status,
            None => panic!("stream ended without a status"),
        }
    };
    assert!(
        saw_not_serving,
        "watchers hear NOT_SERVING before the stream ends"
    );
    assert_eq!(end.code(), Code::Unavailable, "{end:?}");
    let info = end
        .get_error_details()
        .error_info()
        .cloned()
        .expect("ErrorInfo");
    assert_eq!(info.reason, "SHUTTING_DOWN");

    let result = tokio::time::timeout(SOON, gateway.task)
        .await
        .expect("run returns promptly");
    result.expect("task").expect("clean stop");
}
