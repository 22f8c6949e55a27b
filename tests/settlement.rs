//! SettlementService end to end over a real M + R link with the shipped
//! ACLs: reports published on R, recorded by the WSP, confirmed into Credit
//! Inventory and the vault exactly once, disputed and corrected; signed
//! cycles and their proofs; what the exchange's ACL user may write on R,
//! done for real. Money tests end with the books' invariants.

mod common;

use std::time::Duration;

use common::{
    Link,
    books::assert_books_balance,
    credit::{admin, backend, login, serving, violations},
    settlement::{
        self as s, confirm, cycle_until, get, pledged, report, settled_nets, status, submit, until,
        worked_example,
    },
    xrange,
};
use openoes::{
    crypto::{merkle, note::NoteVerifier, tlog_proof::TlogProof},
    proto::{
        credit::v1::{self as cpb, credit_service_client::CreditServiceClient},
        pledge::v1::{self as ppb, pledge_service_client::PledgeServiceClient},
        settlement::v1::{
            self as pb, settlement_service_client::SettlementServiceClient as Client,
        },
    },
};
use tonic::{Code, transport::Channel};
use tonic_types::StatusExt;

fn reason(e: &tonic::Status) -> String {
    e.get_error_details()
        .error_info()
        .map(|i| i.reason.clone())
        .unwrap_or_default()
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

async fn vault(channel: &Channel, user: &str, asset: &str) -> (String, String, String) {
    let b = PledgeServiceClient::new(channel.clone())
        .get_vault_balance(ppb::GetVaultBalanceRequest {
            user_id: user.into(),
            asset: asset.into(),
        })
        .await
        .expect("vault")
        .into_inner()
        .balance
        .expect("balance");
    (b.total, b.locked, b.pledged)
}

async fn books(link: &Link) {
    let mut m = admin(link.topology.master.port()).await;
    let nets = settled_nets(&mut m).await;
    assert_books_balance(&mut m, &nets).await;
}

#[tokio::test]
async fn the_worked_example_settles_once_into_credit_and_custody_and_proves_its_line() {
    let link = Link::start_secured().await;
    let dir = tempfile::tempdir().expect("tmp");
    let (_gateway, channel) = serving(s::config(&link, dir.path())).await;
    let _exchange = backend(channel.clone(), "ex", |_| None);
    let mut client = Client::new(channel.clone());

    pledged(&channel, "alice", "USDT", "70000").await;
    // A wait (24 s: 80% of the call's 30 s) past the test's deadline: the
    // call must be woken by the WSP's record, not end by its wait.
    let mut example = worked_example("rep-1", "alice", "2025-04-04");
    example.wait = s::wait(120_000);
    let (r, delivery) = tokio::time::timeout(Duration::from_secs(15), submit(&mut client, example))
        .await
        .expect("woken by the WSP's record")
        .expect("submit");
    assert_eq!(delivery, pb::Delivery::Recorded, "the WSP's record is on R");
    assert_eq!(status(&r), pb::SettlementStatus::Reported);
    // Canonical amounts out: the same values.
    let nets: Vec<(String, String)> = r
        .net_positions
        .iter()
        .map(|n| (n.asset.clone(), n.net.clone()))
        .collect();
    assert_eq!(
        nets,
        [("BTC", "+0.5"), ("ETH", "+10"), ("USDT", "-67500")]
            .map(|(a, n)| (a.to_string(), n.to_string()))
    );

    let r = confirm(&mut client, "rep-1").await.expect("confirm");
    assert_eq!(status(&r), pb::SettlementStatus::Completed);
    let after = [
        ci(&channel, "alice", "USDT").await,
        ci(&channel, "alice", "BTC").await,
        ci(&channel, "alice", "ETH").await,
    ];
    assert_eq!(after, ["2500", "0.5", "10"].map(String::from));
    assert_eq!(
        vault(&channel, "alice", "USDT").await,
        ("2500".into(), "2500".into(), "2500".into()),
        "67500 left custody from the pledge"
    );
    assert_eq!(
        vault(&channel, "alice", "BTC").await,
        ("0.5".into(), "0.5".into(), "0.5".into()),
        "0.5 arrived as a settlement lot"
    );
    let lot = PledgeServiceClient::new(channel.clone())
        .get_pledge(ppb::GetPledgeRequest {
            pledge_id: "settlement/rep-1/ETH".into(),
        })
        .await
        .expect("lot")
        .into_inner()
        .pledge
        .expect("lot");
    assert_eq!(
        (
            lot.status,
            lot.remaining.as_str(),
            lot.settlement_report_id.as_str()
        ),
        (ppb::PledgeStatus::Active as i32, "10", "rep-1")
    );

    // Again, and again with the other verdict: nothing changes.
    let again = confirm(&mut client, "rep-1").await.expect("confirm again");
    assert_eq!(status(&again), pb::SettlementStatus::Completed);
    let e = client
        .confirm_settlement(pb::ConfirmSettlementRequest {
            report_id: "rep-1".into(),
            outcome: pb::SettlementOutcome::Failed as i32,
            reason: "too late".into(),
        })
        .await
        .expect_err("another verdict");
    assert_eq!(
        (e.code(), reason(&e).as_str()),
        (Code::FailedPrecondition, "ALREADY_CONFIRMED")
    );
    assert_eq!(ci(&channel, "alice", "USDT").await, "2500");

    // The standard confirmation, once, on M (and so on R).
    let mut m = admin(link.topology.master.port()).await;
    let confirmations = xrange(&mut m, "mirror:settlement:confirmation").await;
    assert_eq!(confirmations.len(), 1, "{confirmations:?}");
    let c = &confirmations[0].1;
    assert_eq!(
        (
            c["type"].as_str(),
            c["settlement_id"].as_str(),
            c["user_id"].as_str(),
            c["status"].as_str()
        ),
        ("confirmation", "rep-1", "alice", "completed")
    );
    let details: serde_json::Value = serde_json::from_str(&c["details"]).expect("details");
    assert_eq!(details["assets_transferred"]["USDT"], "-67500");
    books(&link).await;

    // Close the cycle: verified, and countersigned at once (all decided).
    let closing = client.close_settlement_cycle(pb::CloseSettlementCycleRequest {
        cycle_id: "2025-04-04".into(),
        wait: s::wait(120_000),
    });
    let closed = tokio::time::timeout(Duration::from_secs(15), closing)
        .await
        .expect("woken by the WSP's record")
        .expect("close")
        .into_inner();
    assert_eq!(closed.delivery, pb::Delivery::Recorded as i32, "{closed:?}");
    let cycle = cycle_until(&mut client, "2025-04-04", pb::CycleStatus::Cosigned).await;
    assert_eq!((cycle.size, cycle.reports, cycle.undecided), (1, 1, 0));
    // The proof verifies with both keys, from GetSigningKeys.
    let keys = client
        .get_signing_keys(pb::GetSigningKeysRequest {})
        .await
        .expect("keys")
        .into_inner()
        .keys;
    assert_eq!(
        keys.iter().map(|k| k.role.as_str()).collect::<Vec<_>>(),
        ["exchange", "wsp"]
    );
    let verifiers: Vec<NoteVerifier> = keys
        .iter()
        .map(|k| NoteVerifier::parse(&k.vkey).expect("vkey"))
        .collect();
    let proof = client
        .get_settlement_proof(pb::GetSettlementProofRequest {
            report_id: "rep-1".into(),
        })
        .await
        .expect("proof")
        .into_inner()
        .proof
        .expect("proof");
    let leaf: serde_json::Value = serde_json::from_str(&proof.leaf).expect("leaf json");
    assert_eq!(leaf["net_position"]["USDT"], "-67500");
    assert_eq!(leaf["salt"].as_str().map(str::len), Some(64));
    let leaf_hash = merkle::leaf_hash(proof.leaf.as_bytes());
    assert_eq!(proof.leaf_hash, leaf_hash.to_vec());
    let tlog = TlogProof::parse(&proof.tlog_proof).expect("tlog proof");
    let origin = format!("{}/2025-04-04", keys[0].name);
    tlog.verify(&leaf_hash, &origin, &verifiers[..1])
        .expect("exchange's signature");
    tlog.verify(&leaf_hash, &origin, &verifiers[1..])
        .expect("WSP's countersignature");
    // The closed cycle takes no more reports.
    let e = submit(
        &mut client,
        report("rep-late", "alice", "2025-04-04", &[("BTC", "1", "1")], &[]),
    )
    .await
    .expect_err("closed");
    assert_eq!(
        (e.code(), reason(&e).as_str()),
        (Code::FailedPrecondition, "CYCLE_CLOSED")
    );
}

#[tokio::test]
async fn bad_input_is_refused_field_by_field() {
    let link = Link::start_secured().await;
    let dir = tempfile::tempdir().expect("tmp");
    let (_gateway, channel) = serving(s::config(&link, dir.path())).await;
    let mut client = Client::new(channel.clone());
    let base = || {
        report(
            "r-1",
            "u",
            "c",
            &[("BTC", "1", "100")],
            &[("USDT", "100", "1")],
        )
    };
    type Edit = fn(&mut pb::SubmitSettlementReportRequest);
    let cases: Vec<(&str, Edit)> = vec![
        ("report_id", |r| r.report_id = "a b".into()),
        ("user_id", |r| r.user_id.clear()),
        ("cycle_id", |r| r.cycle_id = "x:y".into()),
        ("eod_time", |r| r.eod_time = None),
        ("bought[0].amount", |r| r.bought[0].amount = "1e5".into()),
        ("bought[0].amount", |r| r.bought[0].amount = "0".into()),
        ("bought[0].price", |r| r.bought[0].price = "-1".into()),
        ("net_positions[0].net", |r| {
            r.net_positions[0].net = "1".into()
        }),
        ("net_positions[0].net", |r| {
            r.net_positions[0].net = "+0.1234567890123456789".into()
        }),
        ("net_positions[USDT]", |r| {
            r.net_positions[1].net = "-99".into()
        }),
        ("bought", |r| {
            r.bought.clear();
            r.sold.clear();
        }),
        ("bought[1].asset", |r| {
            r.bought.push(s::leg("BTC", "1", "1"))
        }),
        ("net_positions", |r| r.net_positions.clear()),
        ("net_positions[2].asset", |r| {
            r.net_positions.push(s::net("BTC", "+1"))
        }),
        ("net_positions[ETH]", |r| {
            r.net_positions.push(s::net("ETH", "+1"))
        }),
        ("supersedes", |r| r.supersedes = "r-1".into()),
        ("instructions.deposit_address", |r| {
            r.instructions
                .as_mut()
                .expect("instructions")
                .deposit_address = "a\u{202e}b".into()
        }),
    ];
    for (field, edit) in cases {
        let mut request = base();
        edit(&mut request);
        let e = client
            .submit_settlement_report(request)
            .await
            .expect_err(field);
        assert_eq!(e.code(), Code::InvalidArgument, "{field}: {e:?}");
        let named = violations(&e);
        assert!(
            named.iter().any(|f| f == field),
            "{field} not among {named:?}: {}",
            e.message()
        );
    }
    // The asset is named when the net does not match its legs.
    let mut wrong = base();
    wrong.net_positions[1].net = "-99".into();
    let e = client
        .submit_settlement_report(wrong)
        .await
        .expect_err("net");
    assert!(e.message().contains("USDT"), "{}", e.message());

    // Verdicts: unknown reports, missing reasons, unknown outcomes.
    let e = confirm(&mut client, "nope").await.expect_err("unknown");
    assert_eq!(e.code(), Code::NotFound, "{e:?}");
    for (request, field) in [
        (
            pb::ConfirmSettlementRequest {
                report_id: "nope".into(),
                outcome: pb::SettlementOutcome::Failed as i32,
                reason: String::new(),
            },
            "reason",
        ),
        (
            pb::ConfirmSettlementRequest {
                report_id: "nope".into(),
                outcome: 0,
                reason: String::new(),
            },
            "outcome",
        ),
        (
            pb::ConfirmSettlementRequest {
                report_id: String::new(),
                outcome: 1,
                reason: String::new(),
            },
            "report_id",
        ),
    ] {
        let e = client.confirm_settlement(request).await.expect_err(field);
        assert_eq!(e.code(), Code::InvalidArgument, "{field}: {e:?}");
        assert!(violations(&e).iter().any(|f| f == field), "{field}: {e:?}");
    }
    let e = client
        .dispute_settlement(pb::DisputeSettlementRequest {
            report_id: "nope".into(),
            assets: Vec::new(),
            reason: "why".into(),
            lines: Vec::new(),
        })
        .await
        .expect_err("no lines");
    assert!(violations(&e).iter().any(|f| f == "lines"), "{e:?}");
    let e = client
        .list_settlement_reports(pb::ListSettlementReportsRequest::default())
        .await
        .expect_err("no filter");
    assert!(violations(&e).iter().any(|f| f == "user_id"), "{e:?}");
    let e = client
        .get_settlement_proof(pb::GetSettlementProofRequest {
            report_id: "nope".into(),
        })
        .await
        .expect_err("unknown");
    assert_eq!(e.code(), Code::NotFound);
    let e = client
        .get_settlement_cycle(pb::GetSettlementCycleRequest {
            cycle_id: "nope".into(),
        })
        .await
        .expect_err("unknown");
    assert_eq!(e.code(), Code::NotFound);
}

#[tokio::test]
async fn a_dispute_is_corrected_by_a_report_that_supersedes_it() {
    let link = Link::start_secured().await;
    let dir = tempfile::tempdir().expect("tmp");
    let (_gateway, channel) = serving(s::config(&link, dir.path())).await;
    let _exchange = backend(channel.clone(), "ex", |_| None);
    let mut client = Client::new(channel.clone());
    pledged(&channel, "bob", "USDT", "1000").await;

    submit(
        &mut client,
        report(
            "d-1",
            "bob",
            "c1",
            &[("BTC", "0.01", "60000")],
            &[("USDT", "600", "1")],
        ),
    )
    .await
    .expect("submit");
    // Superseding a report that is not disputed is refused.
    let mut early = report(
        "d-2",
        "bob",
        "c1",
        &[("BTC", "0.01", "50000")],
        &[("USDT", "500", "1")],
    );
    early.supersedes = "d-1".into();
    let e = submit(&mut client, early.clone())
        .await
        .expect_err("not disputed");
    assert_eq!(
        (e.code(), reason(&e).as_str()),
        (Code::FailedPrecondition, "NOT_DISPUTED")
    );
    // A line not in the report is refused; a real one disputes it.
    let e = client
        .dispute_settlement(pb::DisputeSettlementRequest {
            report_id: "d-1".into(),
            assets: vec!["DOGE".into()],
            reason: "?".into(),
            lines: Vec::new(),
        })
        .await
        .expect_err("not a line");
    assert_eq!(e.code(), Code::InvalidArgument);
    let disputed = client
        .dispute_settlement(pb::DisputeSettlementRequest {
            report_id: "d-1".into(),
            assets: Vec::new(),
            reason: "price off".into(),
            lines: vec![pb::DisputedLine {
                asset: "USDT".into(),
                expected_net: "-500".into(),
                reason: "we saw 50000".into(),
            }],
        })
        .await
        .expect("dispute")
        .into_inner()
        .report
        .expect("report");
    assert_eq!(status(&disputed), pb::SettlementStatus::Disputed);
    assert_eq!(disputed.disputed_lines[0].expected_net, "-500");
    let e = confirm(&mut client, "d-1").await.expect_err("disputed");
    assert_eq!(reason(&e), "ALREADY_CONFIRMED");
    // The correction: the old one SUPERSEDED, the new one confirmed.
    let (corrected, _) = submit(&mut client, early).await.expect("correction");
    assert_eq!(status(&corrected), pb::SettlementStatus::Reported);
    let old = get(&mut client, "d-1").await.expect("old");
    assert_eq!(
        (status(&old), old.superseded_by.as_str()),
        (pb::SettlementStatus::Superseded, "d-2")
    );
    let e = confirm(&mut client, "d-1").await.expect_err("superseded");
    assert_eq!(reason(&e), "NOT_CONFIRMABLE");
    confirm(&mut client, "d-2").await.expect("confirm");
    assert_eq!(ci(&channel, "bob", "USDT").await, "500");
    // The exchange saw the dispute as a standard confirmation.
    let mut r = login(link.topology.replica.port(), "exchange", "exchange-pw").await;
    let statuses: Vec<String> = xrange(&mut r, "mirror:settlement:confirmation")
        .await
        .into_iter()
        .map(|(_, f)| format!("{}:{}", f["settlement_id"], f["status"]))
        .collect();
    assert_eq!(statuses, ["d-1:disputed", "d-2:completed"]);
    books(&link).await;
}

#[tokio::test]
async fn a_pending_credit_request_blocks_the_pair_and_nothing_goes_below_zero() {
    let link = Link::start_secured().await;
    let dir = tempfile::tempdir().expect("tmp");
    let (_gateway, channel) = serving(s::config(&link, dir.path())).await;
    let accepting = backend(channel.clone(), "ex", |_| None);
    let mut client = Client::new(channel.clone());
    pledged(&channel, "carol", "USDT", "100").await;
    pledged(&channel, "carol", "BTC", "1").await;
    accepting.abort();

    // A second pledge of USDT stays pending: nobody answers it now.
    let mut pledges = PledgeServiceClient::new(channel.clone());
    pledges
        .record_deposit(ppb::RecordDepositRequest {
            request_id: "dep-2".into(),
            user_id: "carol".into(),
            asset: "USDT".into(),
            amount: "50".into(),
            chain: "ethereum".into(),
            address: "0xc".into(),
            tx_id: "tx-2".into(),
        })
        .await
        .expect("deposit");
    pledges
        .create_pledge(ppb::CreatePledgeRequest {
            request_id: "pl-pending".into(),
            user_id: "carol".into(),
            asset: "USDT".into(),
            amount: "50".into(),
            chain: "ethereum".into(),
            address: "0xc".into(),
            wait: None,
        })
        .await
        .expect("pledge");
    submit(
        &mut client,
        report(
            "p-1",
            "carol",
            "c",
            &[("BTC", "0.5", "100")],
            &[("USDT", "50", "1")],
        ),
    )
    .await
    .expect("submit");
    let e = confirm(&mut client, "p-1").await.expect_err("in flight");
    assert_eq!(
        (e.code(), reason(&e).as_str()),
        (Code::Aborted, "CREDIT_REQUEST_IN_FLIGHT")
    );
    assert!(e.message().contains("pl-pending"), "{}", e.message());
    assert_eq!(ci(&channel, "carol", "BTC").await, "1", "nothing applied");

    // Decided, the pair is free again.
    let _exchange = backend(channel.clone(), "ex2", |_| None);
    until(&mut client, "p-1", |_| true).await;
    for _ in 0..200 {
        if ci(&channel, "carol", "USDT").await == "150" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    confirm(&mut client, "p-1").await.expect("confirm");
    assert_eq!(ci(&channel, "carol", "USDT").await, "100");
    assert_eq!(ci(&channel, "carol", "BTC").await, "1.5");

    // More than CI: FAILED_PRECONDITION naming the asset, nothing applied.
    submit(
        &mut client,
        report(
            "p-2",
            "carol",
            "c",
            &[("ETH", "1", "100")],
            &[("BTC", "2", "1")],
        ),
    )
    .await
    .expect("submit");
    let e = confirm(&mut client, "p-2").await.expect_err("below zero");
    assert_eq!(
        (e.code(), reason(&e).as_str()),
        (Code::FailedPrecondition, "INSUFFICIENT_CREDIT")
    );
    assert!(e.message().contains("BTC"), "{}", e.message());
    assert_eq!(
        ci(&channel, "carol", "ETH").await,
        "0",
        "not even the other line"
    );
    assert_eq!(
        status(&get(&mut client, "p-2").await.expect("get")),
        pb::SettlementStatus::Reported
    );
    // FAILED records the reason and applies nothing.
    let failed = client
        .confirm_settlement(pb::ConfirmSettlementRequest {
            report_id: "p-2".into(),
            outcome: pb::SettlementOutcome::Failed as i32,
            reason: "not enough BTC".into(),
        })
        .await
        .expect("fail")
        .into_inner()
        .report
        .expect("report");
    assert_eq!(
        (status(&failed), failed.reason.as_str()),
        (pb::SettlementStatus::Failed, "not enough BTC")
    );
    books(&link).await;
}

#[tokio::test]
async fn reports_are_listed_by_user_and_cycle_and_watched() {
    let link = Link::start_secured().await;
    let dir = tempfile::tempdir().expect("tmp");
    let (_gateway, channel) = serving(s::config(&link, dir.path())).await;
    let _exchange = backend(channel.clone(), "ex", |_| None);
    let mut client = Client::new(channel.clone());
    pledged(&channel, "dave", "USDT", "100").await;
    pledged(&channel, "erin", "USDT", "100").await;
    let mut watch = client
        .watch_settlements(pb::WatchSettlementsRequest {
            user_id: "dave".into(),
            cycle_id: String::new(),
            start_after_event_id: "0-0".into(),
        })
        .await
        .expect("watch")
        .into_inner();
    for (i, user) in ["dave", "erin", "dave", "dave"].iter().enumerate() {
        submit(
            &mut client,
            report(
                &format!("l-{i}"),
                user,
                &format!("c{}", i % 2),
                &[("BTC", "0.001", "1")],
                &[("USDT", "1", "1")],
            ),
        )
        .await
        .expect("submit");
    }
    let page = client
        .list_settlement_reports(pb::ListSettlementReportsRequest {
            user_id: "dave".into(),
            cycle_id: String::new(),
            page_size: 2,
            page_token: String::new(),
        })
        .await
        .expect("list")
        .into_inner();
    assert_eq!(
        page.reports
            .iter()
            .map(|r| r.report_id.as_str())
            .collect::<Vec<_>>(),
        ["l-3", "l-2"]
    );
    let rest = client
        .list_settlement_reports(pb::ListSettlementReportsRequest {
            user_id: "dave".into(),
            cycle_id: String::new(),
            page_size: 2,
            page_token: page.next_page_token,
        })
        .await
        .expect("list")
        .into_inner();
    assert_eq!(
        rest.reports
            .iter()
            .map(|r| r.report_id.as_str())
            .collect::<Vec<_>>(),
        ["l-0"]
    );
    let c0 = client
        .list_settlement_reports(pb::ListSettlementReportsRequest {
            user_id: String::new(),
            cycle_id: "c0".into(),
            page_size: 0,
            page_token: String::new(),
        })
        .await
        .expect("list")
        .into_inner();
    assert_eq!(
        c0.reports
            .iter()
            .map(|r| r.report_id.as_str())
            .collect::<Vec<_>>(),
        ["l-2", "l-0"]
    );

    confirm(&mut client, "l-0").await.expect("confirm");
    let mut seen = Vec::new();
    while seen.len() < 4 {
        let event = tokio::time::timeout(
            Duration::from_secs(10),
            futures_util::StreamExt::next(&mut watch),
        )
        .await
        .expect("event in time")
        .expect("open")
        .expect("ok")
        .event
        .expect("event");
        let r = event.report.expect("report");
        assert_eq!(r.user_id, "dave", "filtered by user");
        seen.push(format!("{}:{}", r.report_id, event.r#type));
    }
    let reported = pb::SettlementEventType::Reported as i32;
    let completed = pb::SettlementEventType::Completed as i32;
    assert_eq!(
        seen,
        [
            format!("l-0:{reported}"),
            format!("l-2:{reported}"),
            format!("l-3:{reported}"),
            format!("l-0:{completed}"),
        ]
    );
}
