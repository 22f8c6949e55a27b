//! PledgeService end to end over a real M + R link with the shipped ACLs:
//! the vault, pledges and releases riding the credit flow, exchange
//! backends deciding, faults done for real; every test ends by checking the
//! books' invariants for every (user, asset).

mod common;

use std::{
    collections::{BTreeMap, HashMap},
    time::Duration,
};

use common::{
    GatewayProcess, Link,
    books::assert_books_balance,
    credit::{admin, backend, hash, login, serving, violations},
    free_addr,
};
use futures_util::StreamExt;
use openoes::proto::{
    credit::v1::{self as cpb, credit_service_client::CreditServiceClient},
    pledge::v1::{self as pb, pledge_service_client::PledgeServiceClient as Client},
};
use tonic::{Code, transport::Channel};
use tonic_types::StatusExt;

fn deposit(user: &str, asset: &str, amount: &str, id: &str) -> pb::RecordDepositRequest {
    pb::RecordDepositRequest {
        request_id: id.into(),
        user_id: user.into(),
        asset: asset.into(),
        amount: amount.into(),
        chain: "bitcoin".into(),
        address: "bc1qcustody".into(),
        tx_id: format!("tx-{id}"),
    }
}

fn withdrawal(user: &str, asset: &str, amount: &str, id: &str) -> pb::RecordWithdrawalRequest {
    pb::RecordWithdrawalRequest {
        request_id: id.into(),
        user_id: user.into(),
        asset: asset.into(),
        amount: amount.into(),
        chain: "bitcoin".into(),
        address: "bc1qpayout".into(),
        tx_id: String::new(),
    }
}

fn wait(ms: u64) -> Option<prost_types::Duration> {
    (ms > 0).then(|| prost_types::Duration {
        seconds: (ms / 1000) as i64,
        nanos: ((ms % 1000) * 1_000_000) as i32,
    })
}

fn pledge(
    user: &str,
    asset: &str,
    amount: &str,
    id: &str,
    wait_ms: u64,
) -> pb::CreatePledgeRequest {
    pb::CreatePledgeRequest {
        request_id: id.into(),
        user_id: user.into(),
        asset: asset.into(),
        amount: amount.into(),
        chain: "bitcoin".into(),
        address: "bc1qcustody".into(),
        wait: wait(wait_ms),
    }
}

fn release(
    user: &str,
    asset: &str,
    amount: &str,
    id: &str,
    wait_ms: u64,
) -> pb::ReleasePledgeRequest {
    pb::ReleasePledgeRequest {
        request_id: id.into(),
        user_id: user.into(),
        asset: asset.into(),
        amount: amount.into(),
        wait: wait(wait_ms),
    }
}

/// A call retried on UNAVAILABLE (same request_id), as the contract allows.
macro_rules! retried {
    ($call:expr) => {
        loop {
            match $call.await {
                Err(e) if e.code() == Code::Unavailable => {
                    tokio::time::sleep(Duration::from_millis(100)).await
                }
                other => break other,
            }
        }
    };
}

async fn balance(client: &mut Client<Channel>, user: &str, asset: &str) -> pb::VaultBalance {
    client
        .get_vault_balance(pb::GetVaultBalanceRequest {
            user_id: user.into(),
            asset: asset.into(),
        })
        .await
        .expect("balance")
        .into_inner()
        .balance
        .expect("balance")
}

async fn ci(channel: &Channel, user: &str, asset: &str) -> String {
    CreditServiceClient::new(channel.clone())
        .get_credit_inventory(cpb::GetCreditInventoryRequest {
            user_id: user.into(),
            asset: asset.into(),
        })
        .await
        .map(|r| r.into_inner().credit_inventory.expect("ci").amount)
        .unwrap_or_else(|_| "0".into())
}

fn pstatus(p: &pb::Pledge) -> pb::PledgeStatus {
    pb::PledgeStatus::try_from(p.status).expect("status")
}

fn rstatus(r: &pb::PledgeRelease) -> pb::ReleaseStatus {
    pb::ReleaseStatus::try_from(r.status).expect("status")
}

/// Polls a pledge until it is no longer PENDING.
async fn pledge_final(client: &mut Client<Channel>, id: &str) -> pb::Pledge {
    for _ in 0..400 {
        if let Ok(r) = client
            .get_pledge(pb::GetPledgeRequest {
                pledge_id: id.into(),
            })
            .await
        {
            let p = r.into_inner().pledge.expect("pledge");
            if pstatus(&p) != pb::PledgeStatus::Pending {
                return p;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("pledge {id} never decided");
}

/// Polls a release until it is no longer PENDING.
async fn release_final(client: &mut Client<Channel>, id: &str) -> pb::PledgeRelease {
    for _ in 0..400 {
        if let Ok(r) = client
            .get_pledge_release(pb::GetPledgeReleaseRequest {
                release_id: id.into(),
            })
            .await
        {
            let r = r.into_inner().release.expect("release");
            if rstatus(&r) != pb::ReleaseStatus::Pending {
                return r;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("release {id} never decided");
}

async fn books_balance(link: &Link) {
    let mut m = admin(link.topology.master.port()).await;
    assert_books_balance(&mut m, &BTreeMap::new()).await;
}

#[tokio::test]
async fn the_walk_deposit_pledge_release_withdraw() {
    let link = Link::start_secured().await;
    let (_gateway, channel) = serving(link.secured_config()).await;
    let mut client = Client::new(channel.clone());
    let _exchange = backend(channel.clone(), "ex", |_| None);

    let b = client
        .record_deposit(deposit("alice", "BTC", "10", "dep-1"))
        .await
        .expect("deposit");
    let b = b.into_inner().balance.expect("balance");
    assert_eq!(
        (b.total.as_str(), b.locked.as_str(), b.available.as_str()),
        ("10", "0", "10")
    );

    let p = client
        .create_pledge(pledge("alice", "BTC", "4", "pl-1", 10_000))
        .await
        .expect("pledge")
        .into_inner()
        .pledge
        .expect("pledge");
    assert_eq!(pstatus(&p), pb::PledgeStatus::Active, "{p:?}");
    assert_eq!((p.amount.as_str(), p.remaining.as_str()), ("4", "4"));
    assert_eq!(p.credit_request_id, "pl-1");
    let b = balance(&mut client, "alice", "BTC").await;
    assert_eq!(
        (
            b.total.as_str(),
            b.locked.as_str(),
            b.available.as_str(),
            b.pledged.as_str()
        ),
        ("10", "4", "6", "4")
    );
    assert_eq!(ci(&channel, "alice", "BTC").await, "4");
    // The exchange saw an ordinary credit increase.
    let mut m = admin(link.topology.master.port()).await;
    let entry = common::xrange(&mut m, "mirror:credit:request").await;
    let (_, fields) = entry
        .iter()
        .find(|(_, f)| f["request_id"] == "pl-1")
        .expect("entry");
    assert_eq!(
        (
            fields["c_change"].as_str(),
            fields["ci"].as_str(),
            fields["chain"].as_str()
        ),
        ("+4", "4", "bitcoin")
    );

    let r = client
        .release_pledge(release("alice", "BTC", "1.5", "rel-1", 10_000))
        .await
        .expect("release")
        .into_inner()
        .release
        .expect("release");
    assert_eq!(rstatus(&r), pb::ReleaseStatus::Completed, "{r:?}");
    assert_eq!(r.unlocks.len(), 1);
    assert_eq!(
        (
            r.unlocks[0].pledge_id.as_str(),
            r.unlocks[0].amount.as_str()
        ),
        ("pl-1", "1.5")
    );
    assert_eq!(ci(&channel, "alice", "BTC").await, "2.5");
    let p = client
        .get_pledge(pb::GetPledgeRequest {
            pledge_id: "pl-1".into(),
        })
        .await
        .expect("get");
    let p = p.into_inner().pledge.expect("pledge");
    assert_eq!(
        (pstatus(&p), p.remaining.as_str()),
        (pb::PledgeStatus::Active, "2.5"),
        "split"
    );
    let b = balance(&mut client, "alice", "BTC").await;
    assert_eq!((b.locked.as_str(), b.available.as_str()), ("2.5", "7.5"));

    let w = client
        .record_withdrawal(withdrawal("alice", "BTC", "6", "wd-1"))
        .await
        .expect("withdraw 6");
    assert_eq!(w.into_inner().balance.expect("b").available, "1.5");
    client
        .record_withdrawal(withdrawal("alice", "BTC", "1.5", "wd-2"))
        .await
        .expect("the rest");
    let refused = client
        .record_withdrawal(withdrawal("alice", "BTC", "0.000000000000000001", "wd-3"))
        .await
        .expect_err("nothing available");
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert_eq!(
        refused.get_details_error_info().expect("info").reason,
        "INSUFFICIENT_AVAILABLE_BALANCE"
    );
    let b = balance(&mut client, "alice", "BTC").await;
    assert_eq!(
        (b.total.as_str(), b.locked.as_str(), b.available.as_str()),
        ("2.5", "2.5", "0")
    );
    books_balance(&link).await;
}

#[tokio::test]
async fn releases_unlock_the_oldest_pledges_first_splitting_a_partly_used_one() {
    let link = Link::start_secured().await;
    let (_gateway, channel) = serving(link.secured_config()).await;
    let mut client = Client::new(channel.clone());
    let _exchange = backend(channel.clone(), "ex", |_| None);
    client
        .record_deposit(deposit("bo", "ETH", "10", "bo-dep"))
        .await
        .expect("deposit");
    for (id, amount) in [("bo-1", "1"), ("bo-2", "2"), ("bo-3", "3")] {
        let p = client
            .create_pledge(pledge("bo", "ETH", amount, id, 10_000))
            .await
            .expect("pledge");
        assert_eq!(
            pstatus(&p.into_inner().pledge.expect("p")),
            pb::PledgeStatus::Active
        );
    }
    let r = client
        .release_pledge(release("bo", "ETH", "2.5", "bo-r", 10_000))
        .await
        .expect("release");
    let r = r.into_inner().release.expect("r");
    let unlocks: Vec<(&str, &str)> = r
        .unlocks
        .iter()
        .map(|u| (u.pledge_id.as_str(), u.amount.as_str()))
        .collect();
    assert_eq!(unlocks, [("bo-1", "1"), ("bo-2", "1.5")]);
    let listed = client
        .list_pledges(pb::ListPledgesRequest {
            user_id: "bo".into(),
            page_size: 2,
            ..Default::default()
        })
        .await
        .expect("list")
        .into_inner();
    let first: Vec<(&str, &str)> = listed
        .pledges
        .iter()
        .map(|p| (p.pledge_id.as_str(), p.remaining.as_str()))
        .collect();
    assert_eq!(first, [("bo-3", "3"), ("bo-2", "0.5")], "newest first");
    let rest = client
        .list_pledges(pb::ListPledgesRequest {
            user_id: "bo".into(),
            page_size: 2,
            page_token: listed.next_page_token,
            ..Default::default()
        })
        .await
        .expect("page 2")
        .into_inner();
    assert_eq!(rest.pledges.len(), 1);
    assert_eq!(
        (
            rest.pledges[0].pledge_id.as_str(),
            pstatus(&rest.pledges[0])
        ),
        ("bo-1", pb::PledgeStatus::Released)
    );
    assert!(rest.next_page_token.is_empty());
    let released = client
        .list_pledges(pb::ListPledgesRequest {
            user_id: "bo".into(),
            status: pb::PledgeStatus::Released as i32,
            ..Default::default()
        })
        .await
        .expect("by status")
        .into_inner();
    assert_eq!(released.pledges.len(), 1);
    books_balance(&link).await;
}

#[tokio::test]
async fn a_rejection_and_the_delivery_limit_unlock_the_pledge() {
    let link = Link::start_secured().await;
    let mut config = link.secured_config();
    config.streams.claim_min_idle = Duration::from_millis(300);
    config.streams.max_deliveries = 2;
    let (gateway, channel) = serving(config).await;
    let mut client = Client::new(channel.clone());
    client
        .record_deposit(deposit("cy", "BTC", "5", "cy-dep"))
        .await
        .expect("deposit");

    let no = backend(channel.clone(), "no", |_| Some("risk limits".into()));
    let p = client
        .create_pledge(pledge("cy", "BTC", "2", "cy-1", 10_000))
        .await
        .expect("pledge");
    let p = p.into_inner().pledge.expect("p");
    assert_eq!(
        (pstatus(&p), p.reject_reason.as_str()),
        (pb::PledgeStatus::Rejected, "risk limits")
    );
    let b = balance(&mut client, "cy", "BTC").await;
    assert_eq!(
        (b.locked.as_str(), b.available.as_str()),
        ("0", "5"),
        "unlocked"
    );
    no.abort();

    // A subscriber takes the next pledge's request and dies; the next
    // delivery is the limit: rejected by the gateway, and unlocked.
    let mut dying = CreditServiceClient::new(gateway.channel().await)
        .subscribe_credit_requests(cpb::SubscribeCreditRequestsRequest {
            group: String::new(),
            consumer: "dying".into(),
        })
        .await
        .expect("subscribe")
        .into_inner();
    client
        .create_pledge(pledge("cy", "BTC", "3", "cy-2", 0))
        .await
        .expect("pledge");
    dying.next().await.expect("delivery").expect("ok");
    drop(dying);
    let b = balance(&mut client, "cy", "BTC").await;
    assert_eq!(b.locked, "3", "locked while pending");
    let _b = backend(channel.clone(), "b", |_| None);
    let p = pledge_final(&mut client, "cy-2").await;
    assert_eq!(pstatus(&p), pb::PledgeStatus::Rejected);
    assert!(p.reject_reason.starts_with("DELIVERY_LIMIT"), "{p:?}");
    let b = balance(&mut client, "cy", "BTC").await;
    assert_eq!((b.locked.as_str(), b.available.as_str()), ("0", "5"));
    books_balance(&link).await;
}

#[tokio::test]
async fn one_operation_in_flight_per_pair_and_every_mutation_is_idempotent() {
    let link = Link::start_secured().await;
    let (_gateway, channel) = serving(link.secured_config()).await;
    let mut client = Client::new(channel.clone());
    let mut credit = CreditServiceClient::new(channel.clone());

    let d1 = client
        .record_deposit(deposit("di", "BTC", "10", "di-dep"))
        .await
        .expect("deposit");
    let again = client
        .record_deposit(deposit("di", "BTC", "10", "di-dep"))
        .await
        .expect("retry");
    assert_eq!(d1.into_inner(), again.into_inner(), "same first result");
    let reused = client
        .record_deposit(deposit("di", "BTC", "11", "di-dep"))
        .await
        .expect_err("reused");
    assert_eq!(reused.code(), Code::AlreadyExists);
    assert_eq!(
        balance(&mut client, "di", "BTC").await.total,
        "10",
        "deposited once"
    );

    // No exchange backend: the pledge stays PENDING.
    let p = client
        .create_pledge(pledge("di", "BTC", "4", "di-p1", 0))
        .await
        .expect("pledge");
    assert_eq!(
        pstatus(&p.into_inner().pledge.expect("p")),
        pb::PledgeStatus::Pending
    );
    let retry = client
        .create_pledge(pledge("di", "BTC", "4", "di-p1", 0))
        .await
        .expect("retry");
    assert_eq!(retry.into_inner().pledge.expect("p").pledge_id, "di-p1");
    assert_eq!(
        balance(&mut client, "di", "BTC").await.locked,
        "4",
        "locked once"
    );
    for e in [
        client
            .create_pledge(pledge("di", "BTC", "1", "di-p2", 0))
            .await
            .expect_err("in flight"),
        client
            .release_pledge(release("di", "BTC", "1", "di-r1", 0))
            .await
            .expect_err("in flight"),
    ] {
        assert_eq!(e.code(), Code::Aborted, "{e:?}");
        assert_eq!(
            e.get_details_error_info().expect("info").reason,
            "CREDIT_REQUEST_IN_FLIGHT"
        );
    }
    let other = client
        .create_pledge(pledge("di", "BTC", "5", "di-p1", 0))
        .await
        .expect_err("reused");
    assert_eq!(other.code(), Code::AlreadyExists);
    // A pledge id is a credit request id: RequestCredit cannot take it.
    let clash = credit
        .request_credit(cpb::RequestCreditRequest {
            user_id: "di".into(),
            asset: "BTC".into(),
            change: "+4".into(),
            chain: "bitcoin".into(),
            address: "bc1qcustody".into(),
            request_id: "di-p1".into(),
            wait: None,
        })
        .await
        .expect_err("one id space");
    assert_eq!(clash.code(), Code::AlreadyExists);
    // Decided: releases and withdrawals are idempotent too.
    let _ex = backend(channel.clone(), "ex", |_| None);
    assert_eq!(
        pstatus(&pledge_final(&mut client, "di-p1").await),
        pb::PledgeStatus::Active
    );
    // Direct credit for a vault user is refused (pledge.exclusive_credit).
    let direct = credit
        .request_credit(cpb::RequestCreditRequest {
            user_id: "di".into(),
            asset: "BTC".into(),
            change: "+1".into(),
            chain: "bitcoin".into(),
            address: "bc1qcustody".into(),
            request_id: "di-c1".into(),
            wait: None,
        })
        .await
        .expect_err("managed by pledges");
    assert_eq!(direct.code(), Code::FailedPrecondition);
    assert_eq!(
        direct.get_details_error_info().expect("info").reason,
        "CREDIT_MANAGED_BY_PLEDGES"
    );

    let r = client
        .release_pledge(release("di", "BTC", "1", "di-r1", 10_000))
        .await
        .expect("release");
    let r2 = client
        .release_pledge(release("di", "BTC", "1", "di-r1", 0))
        .await
        .expect("retry");
    assert_eq!(r.into_inner(), r2.into_inner());
    let too_much = client
        .release_pledge(release("di", "BTC", "3.5", "di-r2", 0))
        .await
        .expect_err("only 3 pledged");
    assert_eq!(
        too_much.get_details_error_info().expect("info").reason,
        "INSUFFICIENT_PLEDGED"
    );
    let w = client
        .record_withdrawal(withdrawal("di", "BTC", "7", "di-w1"))
        .await
        .expect("withdraw");
    let w2 = client
        .record_withdrawal(withdrawal("di", "BTC", "7", "di-w1"))
        .await
        .expect("retry");
    assert_eq!(
        w.into_inner(),
        w2.into_inner(),
        "a retry returns the first result, not a refusal"
    );
    assert_eq!(ci(&channel, "di", "BTC").await, "3");
    books_balance(&link).await;
}

#[tokio::test]
async fn bad_input_is_refused_field_by_field() {
    let link = Link::start_secured().await;
    let (_gateway, channel) = serving(link.secured_config()).await;
    let mut client = Client::new(channel);
    for (bad, field) in [
        ("1e3", "amount"),
        ("0.0000000000000000001", "amount"),
        ("0", "amount"),
        ("-1", "amount"),
        ("", "amount"),
    ] {
        let e = client
            .record_deposit(deposit("u", "BTC", bad, "bad-1"))
            .await
            .expect_err("bad amount");
        assert_eq!(violations(&e), [field], "{bad:?}");
        let e = client
            .create_pledge(pledge("u", "BTC", bad, "bad-2", 0))
            .await
            .expect_err("bad amount");
        assert_eq!(violations(&e), [field], "{bad:?}");
    }
    let e = client
        .create_pledge(pb::CreatePledgeRequest {
            request_id: String::new(),
            user_id: "a:b".into(),
            asset: "B TC".into(),
            chain: String::new(),
            address: "bc1q\u{202E}x".into(),
            ..pledge("u", "BTC", "1", "x", 0)
        })
        .await
        .expect_err("bad ids");
    assert_eq!(
        violations(&e),
        ["request_id", "user_id", "asset", "chain", "address"]
    );
    let e = client
        .get_pledge(pb::GetPledgeRequest {
            pledge_id: "nope".into(),
        })
        .await
        .expect_err("unknown");
    assert_eq!(e.code(), Code::NotFound);
    let e = client
        .get_pledge_release(pb::GetPledgeReleaseRequest {
            release_id: "nope".into(),
        })
        .await
        .expect_err("unknown");
    assert_eq!(e.code(), Code::NotFound);
    let e = client
        .get_vault_balance(pb::GetVaultBalanceRequest {
            user_id: "nobody".into(),
            asset: "BTC".into(),
        })
        .await
        .expect_err("unknown");
    assert_eq!(e.code(), Code::NotFound);
    let e = client
        .list_pledges(pb::ListPledgesRequest {
            user_id: "u".into(),
            page_token: "garbage".into(),
            ..Default::default()
        })
        .await
        .expect_err("bad token");
    assert_eq!(violations(&e), ["page_token"]);
    let e = client
        .list_pledges(pb::ListPledgesRequest {
            user_id: "u".into(),
            page_size: -1,
            status: 99,
            ..Default::default()
        })
        .await
        .expect_err("bad page");
    assert_eq!(violations(&e), ["page_size", "status"]);
}

#[tokio::test]
async fn a_plain_redis_exchange_answering_the_request_makes_the_pledge_active() {
    let link = Link::start_secured().await;
    let mut config = link.secured_config();
    config.roles = vec![openoes::config::Role::Wsp];
    let (_gateway, channel) = serving(config).await;
    let mut client = Client::new(channel.clone());
    client
        .record_deposit(deposit("pl", "SOL", "100", "pl-dep"))
        .await
        .expect("deposit");
    client
        .create_pledge(pledge("pl", "SOL", "25", "pl-plain", 0))
        .await
        .expect("pledge");

    // The exchange: plain commands as its ACL user on R.
    let mut r = login(link.topology.replica.port(), "exchange", "exchange-pw").await;
    // The request reaches R by replication: create the group once it has.
    for _ in 0..100 {
        let created: redis::RedisResult<()> = redis::cmd("XGROUP")
            .arg(&[
                "CREATE",
                "mirror:credit:request",
                "credit-request-processor",
                "0",
            ])
            .query_async(&mut r)
            .await;
        match created {
            Ok(()) => break,
            Err(e) if e.code() == Some("BUSYGROUP") => break,
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    let mut request = HashMap::new();
    for _ in 0..100 {
        let read: redis::streams::StreamReadReply = redis::cmd("XREADGROUP")
            .arg(&[
                "GROUP",
                "credit-request-processor",
                "plain",
                "COUNT",
                "1",
                "STREAMS",
                "mirror:credit:request",
                ">",
            ])
            .query_async(&mut r)
            .await
            .expect("xreadgroup");
        if let Some(entry) = read.keys.into_iter().flat_map(|k| k.ids).next() {
            request = entry
                .map
                .iter()
                .map(|(k, v)| (k.clone(), openoes::redis::value_text(v)))
                .collect();
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        (request["request_id"].as_str(), request["c_change"].as_str()),
        ("pl-plain", "+25")
    );
    let _: String = redis::cmd("XADD")
        .arg("mirror:credit:response")
        .arg("*")
        .arg(&[
            ("custodian", request["custodian"].as_str()),
            ("request_id", "pl-plain"),
            ("uid", "pl"),
            ("asset", "SOL"),
            ("c_change", "+25"),
            ("timestamp", "1"),
            ("ci", request["ci"].as_str()),
            ("status", "accepted"),
            ("reject_reason", ""),
        ])
        .query_async(&mut r)
        .await
        .expect("xadd response");
    let p = pledge_final(&mut client, "pl-plain").await;
    assert_eq!(pstatus(&p), pb::PledgeStatus::Active);
    assert_eq!(ci(&channel, "pl", "SOL").await, "25");
    // The exchange user reads nothing of the vault.
    for key in ["mirror:vault:pl:SOL", "mirror:pledge:pl-plain"] {
        let e = redis::cmd("HGETALL")
            .arg(key)
            .query_async::<redis::Value>(&mut r)
            .await
            .expect_err("NOPERM");
        assert!(
            e.to_string().contains("NOPERM") || e.to_string().to_lowercase().contains("permission"),
            "{e}"
        );
    }
    books_balance(&link).await;
}

/// One random operation's outcome, for the final event check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Deposit,
    Withdrawal,
    Pledge,
    Release,
}

/// A deterministic pseudo-random stream (no RNG dependency).
fn mix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Runs `n` random operations from `clients` concurrent clients over
/// `users` x `assets`, each waiting for its decision; returns the ids of
/// those that were accepted by the API, with their kind.
async fn random_operations(
    channel: &Channel,
    seed: u64,
    n: u64,
    clients: u64,
    users: u64,
) -> Vec<(String, Op)> {
    const ASSETS: [&str; 3] = ["BTC", "ETH", "SOL"];
    let tasks: Vec<_> = (0..clients)
        .map(|c| {
            let mut client = Client::new(channel.clone());
            tokio::spawn(async move {
                let mut done = Vec::new();
                for k in 0..n / clients {
                    let h = mix(seed ^ (c << 32) ^ k);
                    let user = format!("ru{}", h % users);
                    let asset = ASSETS[(h / users % 3) as usize];
                    let amount = format!("{}.{}", h % 7 + 1, h % 10);
                    let id = format!("op-{seed}-{c}-{k}");
                    let (op, result) = match h / 97 % 4 {
                        0 => (
                            Op::Deposit,
                            retried!(client.record_deposit(deposit(&user, asset, &amount, &id)))
                                .map(drop),
                        ),
                        1 => (
                            Op::Withdrawal,
                            retried!(
                                client.record_withdrawal(withdrawal(&user, asset, &amount, &id))
                            )
                            .map(drop),
                        ),
                        2 => (
                            Op::Pledge,
                            retried!(
                                client.create_pledge(pledge(&user, asset, &amount, &id, 5_000))
                            )
                            .map(drop),
                        ),
                        _ => (
                            Op::Release,
                            retried!(
                                client.release_pledge(release(&user, asset, &amount, &id, 5_000))
                            )
                            .map(drop),
                        ),
                    };
                    match result {
                        Ok(()) => done.push((id, op)),
                        // Refusals by state, and an operation in flight for
                        // the pair: nothing written.
                        Err(e) if matches!(e.code(), Code::FailedPrecondition | Code::Aborted) => {}
                        Err(e) => panic!("{id} {op:?}: {e:?}"),
                    }
                }
                done
            })
        })
        .collect();
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.expect("client"));
    }
    all
}

/// Every vault event from the start, grouped by reference id.
async fn vault_events(
    channel: &Channel,
    want_finals: usize,
) -> HashMap<String, Vec<pb::PledgeEventType>> {
    let mut watch = Client::new(channel.clone())
        .watch_pledge_events(pb::WatchPledgeEventsRequest {
            start_after_event_id: "0-0".into(),
            ..Default::default()
        })
        .await
        .expect("watch")
        .into_inner();
    use pb::PledgeEventType as T;
    let mut by_ref: HashMap<String, Vec<T>> = HashMap::new();
    let mut finals = 0;
    while finals < want_finals {
        let event = tokio::time::timeout(Duration::from_secs(20), watch.next())
            .await
            .expect("events in time")
            .expect("open")
            .expect("event")
            .event
            .expect("event");
        let kind = event.r#type();
        if !matches!(kind, T::PledgeRequested | T::ReleaseRequested) {
            finals += 1;
        }
        by_ref.entry(event.reference_id).or_default().push(kind);
    }
    let extra = tokio::time::timeout(Duration::from_millis(500), watch.next()).await;
    assert!(extra.is_err(), "no further event: {extra:?}");
    by_ref
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_thousand_random_operations_keep_every_invariant_and_end_with_one_final_event_each() {
    let link = Link::start_secured().await;
    let (_gateway, channel) = serving(link.secured_config()).await;
    let decide = |r: &cpb::CreditRequest| {
        hash(&r.request_id)
            .is_multiple_of(4)
            .then(|| "random no".to_string())
    };
    let _backends: Vec<_> = (0..2)
        .map(|i| backend(channel.clone(), &format!("ex-{i}"), decide))
        .collect();
    let done = random_operations(&channel, 1, 1000, 20, 30).await;
    assert!(
        done.len() > 300,
        "enough operations went through: {}",
        done.len()
    );
    let mut client = Client::new(channel.clone());
    for (id, op) in &done {
        match op {
            Op::Pledge => assert_ne!(
                pstatus(&pledge_final(&mut client, id).await),
                pb::PledgeStatus::Pending
            ),
            Op::Release => assert_ne!(
                rstatus(&release_final(&mut client, id).await),
                pb::ReleaseStatus::Pending
            ),
            _ => {}
        }
    }
    books_balance(&link).await;
    let events = vault_events(&channel, done.len()).await;
    use pb::PledgeEventType as T;
    for (id, op) in &done {
        let kinds = &events[id];
        let finals: Vec<_> = kinds
            .iter()
            .filter(|k| !matches!(k, T::PledgeRequested | T::ReleaseRequested))
            .collect();
        assert_eq!(finals.len(), 1, "{id} {op:?}: {kinds:?}");
        let expected: &[T] = match op {
            Op::Deposit => &[T::DepositRecorded],
            Op::Withdrawal => &[T::WithdrawalRecorded],
            Op::Pledge => &[T::PledgeActive, T::PledgeRejected],
            Op::Release => &[T::ReleaseCompleted, T::ReleaseRejected],
        };
        assert!(expected.contains(finals[0]), "{id} {op:?}: {kinds:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_mid_flow_lose_nothing_and_apply_nothing_twice() {
    let mut link = Link::start_secured().await;
    let dir = tempfile::tempdir().expect("tmp");
    // M persists every write (as a WSP's master must).
    link.make_master_durable().await;
    // The exchange side runs in this process; the WSP gateway as a child.
    let mut exchange_config = link.secured_config();
    exchange_config.roles = vec![openoes::config::Role::Exchange];
    exchange_config.streams.claim_min_idle = Duration::from_millis(500);
    let (_exchange, exchange_channel) = serving(exchange_config).await;
    let mut wsp_config = link.secured_config();
    wsp_config.roles = vec![openoes::config::Role::Wsp];
    wsp_config.grpc.listen = free_addr();
    let mut wsp = GatewayProcess::start(&wsp_config, dir.path());
    let channel = wsp.channel().await;
    common::credit::credit_health(
        &channel,
        tonic_health::pb::health_check_response::ServingStatus::Serving,
    )
    .await;

    // 1. An exchange backend dies holding a pledge's request.
    let mut client = Client::new(channel.clone());
    client
        .record_deposit(deposit("f", "BTC", "50", "f-dep"))
        .await
        .expect("deposit");
    let mut dying = CreditServiceClient::new(exchange_channel.clone())
        .subscribe_credit_requests(cpb::SubscribeCreditRequestsRequest {
            group: String::new(),
            consumer: "dying".into(),
        })
        .await
        .expect("subscribe")
        .into_inner();
    client
        .create_pledge(pledge("f", "BTC", "5", "f-p1", 0))
        .await
        .expect("pledge");
    dying.next().await.expect("delivery").expect("ok");
    drop(dying);
    let backend_task = backend(exchange_channel.clone(), "live", |_| None);
    assert_eq!(
        pstatus(&pledge_final(&mut client, "f-p1").await),
        pb::PledgeStatus::Active
    );

    // 2. R fully resynced mid-flow: pledges sent, R restarted empty.
    let first = random_operations(&channel, 2, 120, 4, 6).await;
    link.topology.replica.restart().await.expect("restart R");
    link.topology.wait_for_link().await.expect("resynced");
    let second = random_operations(&channel, 3, 120, 4, 6).await;

    // 3. The WSP gateway SIGKILLed mid-flow and restarted.
    let killer = {
        let channel = channel.clone();
        tokio::spawn(async move { random_operations(&channel, 4, 200, 4, 6).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    wsp.child.kill().expect("SIGKILL");
    wsp.child.wait().expect("reaped");
    killer.abort();
    wsp = GatewayProcess::start(&wsp_config, dir.path());
    let channel = wsp.channel().await;
    common::credit::credit_health(
        &channel,
        tonic_health::pb::health_check_response::ServingStatus::Serving,
    )
    .await;
    let third = random_operations(&channel, 5, 120, 4, 6).await;

    // 4. M restarted (AOF).
    link.topology.master.kill().await;
    link.topology.master.restart().await.expect("restart M");
    link.topology.wait_for_link().await.expect("link after M");
    common::credit::credit_health(
        &channel,
        tonic_health::pb::health_check_response::ServingStatus::Serving,
    )
    .await;
    let fourth = random_operations(&channel, 6, 120, 4, 6).await;

    let mut client = Client::new(channel.clone());
    for (id, op) in first.iter().chain(&second).chain(&third).chain(&fourth) {
        match op {
            Op::Pledge => assert_ne!(
                pstatus(&pledge_final(&mut client, id).await),
                pb::PledgeStatus::Pending
            ),
            Op::Release => assert_ne!(
                rstatus(&release_final(&mut client, id).await),
                pb::ReleaseStatus::Pending
            ),
            _ => {}
        }
    }
    // Every pledge and release the killed gateway may have left behind is
    // decided too (none stays pending), then the books balance.
    let mut m = admin(link.topology.master.port()).await;
    for _ in 0..400 {
        let undecided: u64 = redis::cmd("ZCARD")
            .arg("mirror:credit:undecided")
            .query_async(&mut m)
            .await
            .expect("zcard");
        if undecided == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let undecided: u64 = redis::cmd("ZCARD")
        .arg("mirror:credit:undecided")
        .query_async(&mut m)
        .await
        .expect("zcard");
    assert_eq!(undecided, 0, "every request decided");
    assert_books_balance(&mut m, &BTreeMap::new()).await;
    // Nothing applied twice: one accepted/rejected credit event per request.
    let events = common::xrange(&mut m, "mirror:credit:events").await;
    let mut finals: HashMap<String, usize> = HashMap::new();
    for (_, e) in &events {
        if matches!(e["type"].as_str(), "accepted" | "rejected") {
            *finals.entry(e["request_id"].clone()).or_default() += 1;
        }
    }
    assert!(finals.values().all(|n| *n == 1), "{finals:?}");
    backend_task.abort();
}

#[tokio::test]
async fn a_decision_is_not_applied_if_the_vault_moved_under_its_pending_pledge() {
    let link = Link::start_secured().await;
    let (_gateway, channel) = serving(link.secured_config()).await;
    let mut client = Client::new(channel.clone());
    client
        .record_deposit(deposit("mv", "BTC", "10", "mv-dep"))
        .await
        .expect("deposit");
    client
        .create_pledge(pledge("mv", "BTC", "4", "mv-1", 0))
        .await
        .expect("pledge");
    // Nothing in the API can do this; an operator with redis-cli can.
    let mut m = admin(link.topology.master.port()).await;
    let _: () = redis::cmd("HSET")
        .arg(&["mirror:vault:mv:BTC", "locked", "9"])
        .query_async(&mut m)
        .await
        .expect("hset");
    let _ex = backend(channel.clone(), "ex", |_| None);
    let mut anomaly = None;
    for _ in 0..200 {
        let events = common::xrange(&mut m, "mirror:credit:events").await;
        anomaly = events
            .into_iter()
            .find(|(_, e)| e["type"] == "anomaly" && e["request_id"] == "mv-1");
        if anomaly.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (_, event) = anomaly.expect("an anomaly is recorded");
    assert!(event["reason"].contains("vault moved"), "{event:?}");
    let p = client
        .get_pledge(pb::GetPledgeRequest {
            pledge_id: "mv-1".into(),
        })
        .await
        .expect("get");
    assert_eq!(
        pstatus(&p.into_inner().pledge.expect("p")),
        pb::PledgeStatus::Pending,
        "not applied"
    );
    assert_eq!(ci(&channel, "mv", "BTC").await, "0");
}
