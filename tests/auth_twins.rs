//! The suites' main flows again with auth on, over a link locked down with
//! the shipped ACLs, each party calling with its own role's token (the
//! credit flow's twin is in tests/auth.rs): a pledge, a settlement from
//! report to proof, an attestation from verification to revocation, a
//! quote from pool upsert to price. Each also checks that the party who
//! does not own a write is refused it.

mod common;

use std::{collections::BTreeMap, time::Duration};

use common::{
    Gateway, Link,
    attestation::{attested_config, issuer_key, now_ms, submission},
    auth::{Bearer, with_tokens},
    settlement::{self as s, worked_example},
    wait_for_health,
};
use futures_util::StreamExt;
use openoes::{
    config::CallerRole,
    proto::{
        attestation::v1::{self as apb, attestation_service_client::AttestationServiceClient},
        credit::v1::{self as cpb, credit_service_client::CreditServiceClient},
        pledge::v1::{self as ppb, pledge_service_client::PledgeServiceClient},
        quote::v1::{self as qpb, quote_service_client::QuoteServiceClient},
        settlement::v1::{self as spb, settlement_service_client::SettlementServiceClient},
    },
};
use tokio::task::JoinHandle;
use tonic::{Code, Status, service::interceptor::InterceptedService, transport::Channel};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_types::StatusExt;

const SOON: Duration = Duration::from_secs(20);

/// A channel whose every call carries one role's token.
type As = InterceptedService<Channel, Bearer>;

struct Guarded {
    _gateway: Gateway,
    channel: Channel,
    tokens: BTreeMap<CallerRole, String>,
    _dir: tempfile::TempDir,
}

impl Guarded {
    /// A gateway on a secured link with auth on (a token per role), an
    /// issuer key and both settlement keys.
    async fn start(link: &Link) -> Self {
        let dir = tempfile::tempdir().expect("tmp");
        let (key, _) = issuer_key(dir.path(), "issuer.key");
        let mut config = s::with_keys(attested_config(link, &key), dir.path());
        let tokens = with_tokens(&mut config);
        let gateway = Gateway::start(config).await;
        let channel = gateway.channel().await;
        wait_for_health(&channel, "", ServingStatus::Serving, SOON).await;
        Self {
            _gateway: gateway,
            channel,
            tokens,
            _dir: dir,
        }
    }

    fn any(&self, role: CallerRole) -> As {
        InterceptedService::new(self.channel.clone(), Bearer(self.tokens[&role].clone()))
    }

    fn pledge(&self, role: CallerRole) -> PledgeServiceClient<As> {
        PledgeServiceClient::new(self.any(role))
    }

    fn settlement(&self, role: CallerRole) -> SettlementServiceClient<As> {
        SettlementServiceClient::new(self.any(role))
    }

    /// The exchange, with its own token: accepts every credit request
    /// delivered, until aborted.
    fn accepting_exchange(&self) -> JoinHandle<()> {
        let mut client = CreditServiceClient::new(self.any(CallerRole::Exchange));
        tokio::spawn(async move {
            loop {
                let subscribed = client
                    .subscribe_credit_requests(cpb::SubscribeCreditRequestsRequest {
                        group: String::new(),
                        consumer: "ex-twin".into(),
                    })
                    .await;
                let Ok(deliveries) = subscribed else {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                };
                let mut deliveries = deliveries.into_inner();
                while let Some(Ok(delivery)) = deliveries.next().await {
                    let answer = cpb::RespondToCreditRequestRequest {
                        request_id: delivery.credit_request.expect("request").request_id,
                        decision: cpb::CreditDecision::Accept as i32,
                        reject_reason: String::new(),
                    };
                    while let Err(e) = client.respond_to_credit_request(answer.clone()).await {
                        assert_eq!(e.code(), Code::Unavailable, "{e:?}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
        })
    }

    /// The WSP deposits and pledges `amount` for `user`; waits until ACTIVE.
    async fn pledged(&self, user: &str, asset: &str, amount: &str) -> ppb::Pledge {
        let mut wsp = self.pledge(CallerRole::Wsp);
        let deposit = wsp
            .record_deposit(ppb::RecordDepositRequest {
                request_id: format!("dep-{user}"),
                user_id: user.into(),
                asset: asset.into(),
                amount: amount.into(),
                chain: "ethereum".into(),
                address: "0xcustody".into(),
                tx_id: format!("tx-{user}"),
            })
            .await
            .expect("the WSP records a deposit");
        assert_eq!(
            deposit.into_inner().balance.expect("balance").available,
            amount
        );
        let id = format!("pl-{user}");
        wsp.create_pledge(ppb::CreatePledgeRequest {
            request_id: id.clone(),
            user_id: user.into(),
            asset: asset.into(),
            amount: amount.into(),
            chain: "ethereum".into(),
            address: "0xcustody".into(),
            wait: s::wait(10_000),
        })
        .await
        .expect("the WSP pledges");
        let deadline = tokio::time::Instant::now() + SOON;
        loop {
            let pledge = wsp
                .get_pledge(ppb::GetPledgeRequest {
                    pledge_id: id.clone(),
                })
                .await
                .expect("the WSP reads its pledge")
                .into_inner()
                .pledge
                .expect("pledge");
            if pledge.status == ppb::PledgeStatus::Active as i32 {
                return pledge;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "pledge {id} never ACTIVE: {pledge:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn refused(result: Result<impl std::fmt::Debug, Status>, who: &str) {
    let status = result.expect_err(who);
    assert_eq!(status.code(), Code::PermissionDenied, "{who}: {status:?}");
    assert_eq!(
        status
            .get_error_details()
            .error_info()
            .map(|i| i.reason.clone()),
        Some("ROLE_NOT_ALLOWED".into()),
        "{who}: {status:?}"
    );
}

#[tokio::test]
async fn a_pledge_with_auth_on_the_wsp_pledges_the_exchange_accepts() {
    let link = Link::start_secured().await;
    let g = Guarded::start(&link).await;
    let exchange = g.accepting_exchange();

    let pledge = g.pledged("bob", "BTC", "10").await;
    assert_eq!(pledge.amount, "10");
    let balance = g
        .pledge(CallerRole::Reader)
        .get_vault_balance(ppb::GetVaultBalanceRequest {
            user_id: "bob".into(),
            asset: "BTC".into(),
        })
        .await
        .expect("a reader reads the vault")
        .into_inner()
        .balance
        .expect("balance");
    assert_eq!(
        (balance.locked.as_str(), balance.available.as_str()),
        ("10", "0")
    );
    let ci = CreditServiceClient::new(g.any(CallerRole::Reader))
        .get_credit_inventory(cpb::GetCreditInventoryRequest {
            user_id: "bob".into(),
            asset: "BTC".into(),
        })
        .await
        .expect("a reader reads CI")
        .into_inner()
        .credit_inventory
        .expect("ci");
    assert_eq!(ci.amount, "10");

    // Custody is the WSP's alone.
    refused(
        g.pledge(CallerRole::Exchange)
            .record_deposit(ppb::RecordDepositRequest {
                request_id: "dep-forged".into(),
                user_id: "bob".into(),
                asset: "BTC".into(),
                amount: "1000".into(),
                chain: "ethereum".into(),
                address: "0xcustody".into(),
                tx_id: "tx-forged".into(),
            })
            .await,
        "the exchange records a deposit",
    );
    refused(
        g.pledge(CallerRole::Reader)
            .release_pledge(ppb::ReleasePledgeRequest {
                request_id: "rel-forged".into(),
                user_id: "bob".into(),
                asset: "BTC".into(),
                amount: "1".into(),
                ..Default::default()
            })
            .await,
        "a reader releases a pledge",
    );
    exchange.abort();
}

#[tokio::test]
async fn a_settlement_with_auth_on_from_report_to_proof() {
    let link = Link::start_secured().await;
    let g = Guarded::start(&link).await;
    let exchange = g.accepting_exchange();
    g.pledged("alice", "USDT", "70000").await;

    let example = worked_example("rep-1", "alice", "2025-04-04");
    refused(
        g.settlement(CallerRole::Wsp)
            .submit_settlement_report(example.clone())
            .await,
        "the WSP submits a report",
    );
    let submitted = g
        .settlement(CallerRole::Exchange)
        .submit_settlement_report(example)
        .await
        .expect("the exchange submits")
        .into_inner();
    assert_eq!(
        submitted.delivery,
        spb::Delivery::Recorded as i32,
        "{submitted:?}"
    );
    let report = submitted.report.expect("report");
    assert_eq!(s::status(&report), spb::SettlementStatus::Reported);

    let confirmation = spb::ConfirmSettlementRequest {
        report_id: "rep-1".into(),
        outcome: spb::SettlementOutcome::Completed as i32,
        reason: String::new(),
    };
    refused(
        g.settlement(CallerRole::Exchange)
            .confirm_settlement(confirmation.clone())
            .await,
        "the exchange confirms its own report",
    );
    let confirmed = g
        .settlement(CallerRole::Wsp)
        .confirm_settlement(confirmation)
        .await
        .expect("the WSP confirms")
        .into_inner()
        .report
        .expect("report");
    assert_eq!(s::status(&confirmed), spb::SettlementStatus::Completed);

    let close = spb::CloseSettlementCycleRequest {
        cycle_id: "2025-04-04".into(),
        wait: s::wait(10_000),
    };
    refused(
        g.settlement(CallerRole::Wsp)
            .close_settlement_cycle(close.clone())
            .await,
        "the WSP closes a cycle",
    );
    let closed = g
        .settlement(CallerRole::Exchange)
        .close_settlement_cycle(close)
        .await
        .expect("the exchange closes")
        .into_inner();
    assert_eq!(
        closed.delivery,
        spb::Delivery::Recorded as i32,
        "{closed:?}"
    );
    let mut reader = g.settlement(CallerRole::Reader);
    let deadline = tokio::time::Instant::now() + SOON;
    loop {
        let cycle = reader
            .get_settlement_cycle(spb::GetSettlementCycleRequest {
                cycle_id: "2025-04-04".into(),
            })
            .await
            .expect("a reader reads the cycle")
            .into_inner()
            .cycle
            .expect("cycle");
        if cycle.status == spb::CycleStatus::Cosigned as i32 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never COSIGNED: {cycle:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let proof = reader
        .get_settlement_proof(spb::GetSettlementProofRequest {
            report_id: "rep-1".into(),
        })
        .await
        .expect("a reader reads the proof")
        .into_inner()
        .proof
        .expect("proof");
    let leaf: serde_json::Value = serde_json::from_str(&proof.leaf).expect("leaf");
    assert_eq!(leaf["net_position"]["USDT"], "-67500");
    assert!(
        proof.tlog_proof.starts_with("c2sp.org/tlog-proof@v1"),
        "{proof:?}"
    );
    // Public key material: any principal.
    let keys = g
        .settlement(CallerRole::QuoteIngest)
        .get_signing_keys(spb::GetSigningKeysRequest {})
        .await
        .expect("any principal reads the keys")
        .into_inner()
        .keys;
    assert_eq!(keys.len(), 2);
    exchange.abort();
}

#[tokio::test]
async fn an_attestation_with_auth_on_the_verifier_submits_the_issuer_revokes() {
    let link = Link::start_secured().await;
    let g = Guarded::start(&link).await;
    let client = |role| AttestationServiceClient::new(g.any(role));

    let verification = submission("kyc-twin", "0xabc", now_ms() - 60_000);
    refused(
        client(CallerRole::Wsp)
            .submit_verification(verification.clone())
            .await,
        "the WSP submits a verification",
    );
    let submitted = client(CallerRole::Verifier)
        .submit_verification(verification)
        .await
        .expect("the verifier submits")
        .into_inner();
    let id = submitted.attestation_id;
    let mut reader = client(CallerRole::Reader);
    let deadline = tokio::time::Instant::now() + SOON;
    let attestation = loop {
        match reader
            .get_attestation(apb::GetAttestationRequest {
                attestation_id: id.clone(),
            })
            .await
        {
            Ok(r) => break r.into_inner().attestation.expect("attestation"),
            Err(s) if s.code() == Code::NotFound => {}
            Err(s) => panic!("GetAttestation: {s:?}"),
        }
        assert!(tokio::time::Instant::now() < deadline, "{id} never issued");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(attestation.subject, "0xabc");
    let verified = reader
        .verify_attestation(apb::VerifyAttestationRequest {
            target: Some(apb::verify_attestation_request::Target::AttestationId(
                id.clone(),
            )),
        })
        .await
        .expect("a reader verifies")
        .into_inner();
    assert!(verified.valid, "{verified:?}");

    let revoke = apb::RevokeAttestationRequest {
        attestation_id: id.clone(),
        reason: "twin".into(),
    };
    refused(
        client(CallerRole::Verifier)
            .revoke_attestation(revoke.clone())
            .await,
        "the verifier revokes",
    );
    let revoked = client(CallerRole::Issuer)
        .revoke_attestation(revoke)
        .await
        .expect("the issuer revokes")
        .into_inner()
        .attestation
        .expect("attestation");
    assert_eq!(revoked.status, apb::AttestationStatus::Revoked as i32);
}

#[tokio::test]
async fn a_quote_with_auth_on_quote_ingest_writes_a_reader_prices() {
    let link = Link::start_secured().await;
    let g = Guarded::start(&link).await;
    let client = |role| QuoteServiceClient::new(g.any(role));
    let pool = qpb::Pool {
        pool_id: "TWIN".into(),
        token_x: "TKX".into(),
        token_y: "TKY".into(),
        bin_step: 10,
        active_bin_id: 0,
        base_factor: 10_000,
        max_volatility_accumulator: 350_000,
        protocol_share_bps: 500,
        ..qpb::Pool::default()
    };
    let bin = |id: i32, x: u64, y: u64| qpb::Bin {
        bin_id: id,
        x_amount: x.to_string(),
        y_amount: y.to_string(),
        price: String::new(),
    };
    let upsert = qpb::UpsertPoolRequest {
        pool: Some(pool),
        bins: vec![
            bin(-1, 0, 1_000_000),
            bin(0, 500_000, 500_000),
            bin(1, 1_000_000, 0),
        ],
        replace_bins: true,
    };
    refused(
        client(CallerRole::Reader).upsert_pool(upsert.clone()).await,
        "a reader writes a pool",
    );
    client(CallerRole::QuoteIngest)
        .upsert_pool(upsert)
        .await
        .expect("quote-ingest writes the pool");
    let quote = client(CallerRole::Reader)
        .get_quote(qpb::GetQuoteRequest {
            token_in: "TKX".into(),
            token_out: "TKY".into(),
            amount: "1000".into(),
            ..qpb::GetQuoteRequest::default()
        })
        .await
        .expect("a reader quotes")
        .into_inner()
        .quote
        .expect("quote");
    assert_eq!(
        quote
            .hops
            .iter()
            .map(|h| h.pool_id.as_str())
            .collect::<Vec<_>>(),
        ["TWIN"]
    );
    let out: u64 = quote.amount_out.parse().expect("amount");
    assert!(out > 0 && out < 1000, "{quote:?}");
    // Without a token, nothing.
    let status = QuoteServiceClient::new(g.channel.clone())
        .get_quote(qpb::GetQuoteRequest::default())
        .await
        .expect_err("no token");
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
}
