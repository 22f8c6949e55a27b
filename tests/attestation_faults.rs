//! The attestation pipeline under faults and load, against real
//! redis-servers: a gateway SIGKILLed while it holds results (they are
//! reclaimed by another and each attested once), Redis restarting mid-flow,
//! and 5,000 results from concurrent producers. Each ends by checking the
//! invariants: exactly one attestation per accepted result, all verifying.

mod common;

use std::time::Duration;

use common::{
    Gateway, Link,
    attestation::{
        GatewayProcess, attested_config, check_invariants, client, id_of, issuer_key, now_ms,
        pending_by_consumer, submission, wait_for_issued,
    },
    wait_for_health,
};
use openoes::{
    attestation::SERVICE,
    config::{Config, RedisEndpointConfig, Role},
    redis::process::{RedisOptions, RedisProcess},
};
use tonic_health::pb::health_check_response::ServingStatus;

const SOON: Duration = Duration::from_secs(10);

fn fields(i: usize) -> Vec<(String, String)> {
    vec![
        ("user_wallet".into(), format!("0xw{}", i % 50)),
        ("did_id".into(), "0".into()),
        (
            "result".into(),
            if i.is_multiple_of(3) {
                "failed"
            } else {
                "verified"
            }
            .into(),
        ),
        ("evidence_hash".into(), format!("{i:08x}")),
        ("verified_at".into(), "2025-10-03T18:15:10".into()),
        ("request_id".into(), format!("r-{i}")),
    ]
}

/// A foreign producer: one connection, as admin.
async fn producer(link: &Link) -> redis::aio::MultiplexedConnection {
    redis::Client::open(format!(
        "redis://admin:admin-pw@127.0.0.1:{}",
        link.topology.master.port()
    ))
    .expect("client")
    .get_multiplexed_async_connection()
    .await
    .expect("connect")
}

async fn produce(conn: &mut redis::aio::MultiplexedConnection, i: usize) {
    let mut cmd = redis::cmd("XADD");
    cmd.arg("verification_stream").arg("*");
    for (k, v) in fields(i) {
        cmd.arg(k).arg(v);
    }
    let _: String = cmd.query_async(conn).await.expect("xadd");
}

#[tokio::test]
async fn a_sigkilled_processors_results_are_reclaimed_and_each_attested_once() {
    let link = Link::start_secured().await;
    let dir = tempfile::tempdir().expect("tmp");
    let (key_file, key) = issuer_key(dir.path(), "issuer.key");
    let config = attested_config(&link, &key_file);
    let doomed = GatewayProcess::start(config.clone(), dir.path(), "doomed");
    let channel = doomed.channel(SOON).await;
    wait_for_health(&channel, SERVICE, ServingStatus::Serving, SOON).await;

    // Results keep arriving while the doomed gateway attests them.
    const N: usize = 2_000;
    let m = &link.topology.master;
    let mut conn = producer(&link).await;
    let mut produced = 0;
    for _ in 0..200 {
        produce(&mut conn, produced).await;
        produced += 1;
    }
    // Freeze it, and kill it only at a moment it holds results.
    let mut doomed = doomed;
    let mut held = 0;
    for _ in 0..2_000 {
        for _ in 0..10 {
            produce(&mut conn, produced).await;
            produced += 1;
        }
        doomed.signal("STOP");
        held = pending_by_consumer(m).await.values().sum::<u64>();
        if held > 0 && common::attestation::issued(m).await > 0 {
            break;
        }
        doomed.signal("CONT");
        assert!(produced < N, "the doomed gateway never held a result");
    }
    doomed.kill();
    assert!(held > 0);
    let stranded: u64 = pending_by_consumer(m).await.values().sum();
    println!(
        "SIGKILL with {stranded} results held, {} attested",
        common::attestation::issued(m).await
    );
    while produced < N {
        produce(&mut conn, produced).await;
        produced += 1;
    }

    // Another gateway reclaims what the dead one held (after 1 s idle).
    let survivor = Gateway::start(config).await;
    wait_for_issued(m, N as u64, Duration::from_secs(60)).await;
    let ids: Vec<String> = (0..N).map(|i| id_of(&format!("r-{i}"))).collect();
    // Settle: nothing pending any more (the last acks).
    let deadline = tokio::time::Instant::now() + SOON;
    while pending_by_consumer(m).await.values().sum::<u64>() > 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "results left pending"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    check_invariants(m, &ids, &[&key]).await;
    drop(survivor);
}

#[tokio::test]
async fn redis_restarting_mid_flow_loses_no_result_and_issues_none_twice() {
    // One persistent Redis (AOF, fsync always): a restart keeps every
    // acknowledged write, as a production M does.
    let dir = tempfile::tempdir().expect("tmp");
    let mut redis = RedisProcess::start(
        &dir.path().join("redis"),
        &RedisOptions {
            extra_conf: vec!["appendonly yes".into(), "appendfsync always".into()],
            ..RedisOptions::default()
        },
    )
    .await
    .expect("redis");
    let (key_file, key) = issuer_key(dir.path(), "issuer.key");
    let mut config = Config {
        roles: vec![Role::Wsp],
        ..Config::default()
    };
    config.grpc.listen = ([127, 0, 0, 1], 0).into();
    config.auth.mode = Some(openoes::config::AuthMode::Off);
    config.redis.master = RedisEndpointConfig::local(redis.port());
    config.redis.replica = RedisEndpointConfig::local(redis.port());
    config.health.interval = Duration::from_millis(200);
    config.attestation.key_file = key_file;
    config.streams.claim_min_idle = Duration::from_secs(1);
    config.streams.block = Duration::from_millis(500);
    let gateway = Gateway::start(config).await;
    let channel = gateway.channel().await;
    wait_for_health(&channel, SERVICE, ServingStatus::Serving, SOON).await;
    let mut api = client(&channel);

    // Submissions retried until answered, as a producer does: idempotent
    // on request_id, so a retry of one that did land adds nothing.
    const N: usize = 600;
    let mut submitted = 0;
    let mut retries = 0;
    let mut restarted = false;
    while submitted < N {
        if submitted == N / 2 && !restarted {
            redis.kill().await;
            redis.restart().await.expect("restart redis");
            restarted = true;
        }
        let request = submission(
            &format!("s-{submitted}"),
            &format!("0xs{}", submitted % 20),
            now_ms(),
        );
        match api.submit_verification(request).await {
            Ok(_) => submitted += 1,
            Err(status) => {
                assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
                retries += 1;
                assert!(retries < 2_000, "Redis never came back for the gateway");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
    println!("{retries} submissions retried across the restart");
    let ids: Vec<String> = (0..N).map(|i| id_of(&format!("s-{i}"))).collect();
    wait_for_issued(&redis, N as u64, Duration::from_secs(60)).await;
    let deadline = tokio::time::Instant::now() + SOON;
    while pending_by_consumer(&redis).await.values().sum::<u64>() > 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "results left pending"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    check_invariants(&redis, &ids, &[&key]).await;
}

#[tokio::test]
async fn five_thousand_results_from_concurrent_producers_make_five_thousand_attestations() {
    let link = Link::start_secured().await;
    let dir = tempfile::tempdir().expect("tmp");
    let (key_file, key) = issuer_key(dir.path(), "issuer.key");
    let gateway = Gateway::start(attested_config(&link, &key_file)).await;
    let channel = gateway.channel().await;
    wait_for_health(&channel, SERVICE, ServingStatus::Serving, SOON).await;

    // Eight producers: four foreign (plain XADD, one connection each), four
    // through SubmitVerification; the same 5,000 request ids split between
    // them, each sent once.
    const N: usize = 5_000;
    const PRODUCERS: usize = 8;
    let mut tasks = Vec::new();
    for p in 0..PRODUCERS {
        let channel = channel.clone();
        let mut conn = producer(&link).await;
        tasks.push(tokio::spawn(async move {
            let mut api = client(&channel);
            for i in (p..N).step_by(PRODUCERS) {
                if p.is_multiple_of(2) {
                    produce(&mut conn, i).await;
                } else {
                    let request =
                        submission(&format!("r-{i}"), &format!("0xw{}", i % 50), now_ms());
                    api.submit_verification(request).await.expect("submit");
                }
            }
        }));
    }
    for task in tasks {
        task.await.expect("producer");
    }
    let start = tokio::time::Instant::now();
    wait_for_issued(&link.topology.master, N as u64, Duration::from_secs(120)).await;
    println!(
        "5,000 attested {:?} after the last result was produced",
        start.elapsed()
    );
    let m = &link.topology.master;
    let deadline = tokio::time::Instant::now() + SOON;
    while pending_by_consumer(m).await.values().sum::<u64>() > 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "results left pending"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let ids: Vec<String> = (0..N).map(|i| id_of(&format!("r-{i}"))).collect();
    check_invariants(m, &ids, &[&key]).await;
}
