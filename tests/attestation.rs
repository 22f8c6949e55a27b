//! AttestationService against real redis-servers (the shipped ACLs on):
//! both kinds of producer, idempotency, bad input, dead letters,
//! revocation and the status list, verification failing for the right
//! reason, key rotation, the watch, and a gateway without a key. Every test
//! ends by checking the invariants (common::attestation::check_invariants).

mod common;

use std::time::Duration;

use common::{
    Gateway, Link,
    attestation::{
        attested_config, check_invariants, client, id_of, id_of_entry, issuer_key, now_ms,
        submission, wait_for_attestation, xadd, xrange_all,
    },
    wait_for_health,
};
use futures_util::StreamExt;
use openoes::{
    attestation::{SERVICE, keys},
    config::DidType,
    crypto::{data_integrity, status_list::StatusList},
    proto::attestation::v1::{self as pb, verify_attestation_request::Target},
};
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_types::StatusExt;

const SOON: Duration = Duration::from_secs(10);

fn violations(status: &tonic::Status) -> Vec<String> {
    status
        .get_error_details()
        .bad_request()
        .map(|b| b.field_violations.iter().map(|v| v.field.clone()).collect())
        .unwrap_or_default()
}

fn reason(status: &tonic::Status) -> String {
    status
        .get_error_details()
        .error_info()
        .map(|i| i.reason.clone())
        .unwrap_or_default()
}

#[tokio::test]
async fn a_foreign_producer_and_submit_verification_both_end_up_as_attestations() {
    let link = Link::start_secured().await;
    let dir = tempfile::tempdir().expect("tmp");
    let (key_file, key) = issuer_key(dir.path(), "issuer.key");
    let gateway = Gateway::start(attested_config(&link, &key_file)).await;
    let channel = gateway.channel().await;
    wait_for_health(&channel, SERVICE, ServingStatus::Serving, SOON).await;
    let mut api = client(&channel);

    // The producer that knows nothing of us: the std fields only, a naive
    // ISO time (UTC).
    let entry = xadd(
        &link.topology.master,
        &[
            ("user_wallet", "0xAbC123"),
            ("did_id", "0"),
            ("result", "verified"),
            ("evidence_hash", "abc123"),
            ("verified_at", "2025-10-03T18:15:10"),
        ],
    )
    .await;
    let foreign = wait_for_attestation(&mut api, &id_of_entry(&entry), SOON).await;
    assert_eq!(foreign.subject, "0xAbC123");
    assert_eq!(foreign.result, pb::VerificationResult::Passed as i32);
    assert_eq!(
        foreign.verified_at.as_ref().map(|t| t.seconds),
        Some(1_759_515_310)
    );
    assert_eq!(foreign.verification_id, entry);
    assert_eq!(foreign.request_id, "");
    assert_eq!(
        (foreign.did_id.as_str(), foreign.did_type.as_str()),
        ("0", "0")
    );

    // SubmitVerification writes the same shape (plus request_id, did_type, v).
    let verified_ms = now_ms() - 5_000;
    let submitted = api
        .submit_verification(submission("kyc-1", "0xAbC123", verified_ms))
        .await
        .expect("submit")
        .into_inner();
    assert_eq!(submitted.attestation_id, id_of("kyc-1"));
    assert!(!submitted.existing);
    let stream = xrange_all(&link.topology.master, keys::VERIFICATION_STREAM).await;
    let (_, ours) = stream
        .iter()
        .find(|(id, _)| *id == submitted.verification_id)
        .expect("our entry");
    for field in [
        "user_wallet",
        "did_id",
        "result",
        "evidence_hash",
        "verified_at",
        "request_id",
        "did_type",
        "v",
    ] {
        assert!(ours.contains_key(field), "{field} in {ours:?}");
    }
    assert_eq!(ours["result"], "verified");
    let mine = wait_for_attestation(&mut api, &submitted.attestation_id, SOON).await;
    assert_eq!(mine.request_id, "kyc-1");
    assert_eq!(mine.status, pb::AttestationStatus::Active as i32);
    assert_eq!(mine.key_id, key.verification_method());

    // The credential: VC 2.0, issuer = did:key, eddsa-jcs-2022, its fields,
    // strings only; payload and signature are what was signed.
    let doc: serde_json::Value = serde_json::from_str(&mine.credential_json).expect("json");
    assert_eq!(doc["@context"][0], "https://www.w3.org/ns/credentials/v2");
    assert_eq!(doc["issuer"], key.did_key());
    assert_eq!(doc["proof"]["cryptosuite"], "eddsa-jcs-2022");
    assert_eq!(
        doc["proof"]["verificationMethod"],
        key.verification_method()
    );
    assert_eq!(doc["credentialSubject"]["wallet"], "0xAbC123");
    assert_eq!(doc["credentialSubject"]["verificationResult"], "verified");
    assert_eq!(doc["credentialStatus"]["type"], "BitstringStatusListEntry");
    assert_eq!(
        doc["credentialStatus"]["statusListIndex"],
        mine.status_list_index.to_string()
    );
    // validUntil = verified_at + 365 days (the default validity).
    let expires = mine.expires_at.as_ref().expect("expires");
    assert_eq!(
        expires.seconds * 1000 + i64::from(expires.nanos / 1_000_000),
        verified_ms + 365 * 86_400_000
    );
    assert_eq!(
        doc["validUntil"],
        openoes::time::datetime::format_xsd(verified_ms + 365 * 86_400_000)
    );
    data_integrity::verify_proof_with_key(&doc, &key.public_key()).expect("verifies");
    assert!(key.public_key().verify(&mine.payload, &mine.signature));

    // By subject, newest first, paginated.
    let page = api
        .list_attestations(pb::ListAttestationsRequest {
            subject: "0xAbC123".into(),
            page_size: 1,
            page_token: String::new(),
        })
        .await
        .expect("list")
        .into_inner();
    assert_eq!(page.attestations.len(), 1);
    assert_eq!(
        page.attestations[0].attestation_id, mine.attestation_id,
        "newest first"
    );
    let rest = api
        .list_attestations(pb::ListAttestationsRequest {
            subject: "0xAbC123".into(),
            page_size: 1,
            page_token: page.next_page_token.clone(),
        })
        .await
        .expect("list")
        .into_inner();
    assert_eq!(rest.attestations[0].attestation_id, foreign.attestation_id);
    assert!(rest.next_page_token.is_empty(), "last page");
    let nobody = api
        .list_attestations(pb::ListAttestationsRequest {
            subject: "0xnobody".into(),
            ..Default::default()
        })
        .await
        .expect("list")
        .into_inner();
    assert!(nobody.attestations.is_empty());

    let verdict = api
        .verify_attestation(pb::VerifyAttestationRequest {
            target: Some(Target::AttestationId(mine.attestation_id.clone())),
        })
        .await
        .expect("verify")
        .into_inner();
    assert!(verdict.valid, "{verdict:?}");

    let issuer = api
        .get_issuer_key(pb::GetIssuerKeyRequest::default())
        .await
        .expect("key")
        .into_inner();
    assert_eq!(issuer.public_key, key.public_key().as_bytes());
    assert_eq!(issuer.did_key, key.did_key());
    assert!(issuer.active && issuer.keys.len() == 1 && issuer.keys[0].active);

    check_invariants(
        &link.topology.master,
        &[foreign.attestation_id, mine.attestation_id],
        &[&key],
    )
    .await;
}

#[tokio::test]
async fn submit_verification_is_idempotent_on_request_id_and_names_bad_fields() {
    let link = Link::start_secured().await;
    let dir = tempfile::tempdir().expect("tmp");
    let (key_file, key) = issuer_key(dir.path(), "issuer.key");
    let mut config = attested_config(&link, &key_file);
    config.attestation.did_types = vec![DidType {
        name: "kyc".into(),
        did_id: "0".into(),
        validity: Some(Duration::from_secs(86_400)),
    }];
    let gateway = Gateway::start(config).await;
    let mut api = client(&gateway.channel().await);

    let mut first = submission("r-1", "0xabc", now_ms() - 1000);
    first.did_type = "kyc".into();
    let a = api
        .submit_verification(first.clone())
        .await
        .expect("first")
        .into_inner();
    let b = api
        .submit_verification(first.clone())
        .await
        .expect("repeat")
        .into_inner();
    assert!(!a.existing && b.existing);
    assert_eq!(
        a.verification_id, b.verification_id,
        "the repeat writes nothing"
    );
    let att = wait_for_attestation(&mut api, &a.attestation_id, SOON).await;
    assert_eq!((att.did_type.as_str(), att.did_id.as_str()), ("kyc", "0"));
    let validity = att.expires_at.expect("e").seconds - att.verified_at.expect("v").seconds;
    assert_eq!(validity, 86_400, "the did type's validity");
    // Still the same after it was attested (the attestation answers now).
    let c = api
        .submit_verification(first.clone())
        .await
        .expect("again")
        .into_inner();
    assert!(c.existing);
    assert_eq!(c.verification_id, a.verification_id);

    let mut other = first.clone();
    other.result = pb::VerificationResult::Failed as i32;
    let reused = api.submit_verification(other).await.expect_err("reused");
    assert_eq!(reused.code(), Code::AlreadyExists);
    assert_eq!(reason(&reused), "REQUEST_ID_REUSED");

    // Bad input: each field named.
    let bad = pb::SubmitVerificationRequest {
        request_id: "r 2".into(),
        subject: "0x:abc".into(),
        did_type: "aml".into(),
        result: 0,
        evidence_hash: "not-hex".into(),
        verified_at: Some(openoes::time::timestamp_ms(now_ms() + 3_600_000)),
    };
    let status = api.submit_verification(bad).await.expect_err("bad");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(reason(&status), "INVALID_ARGUMENT");
    assert_eq!(
        violations(&status),
        [
            "request_id",
            "subject",
            "did_type",
            "result",
            "evidence_hash",
            "verified_at"
        ]
    );
    let mut odd = submission("r-3", "0xabc", now_ms());
    odd.did_type = "kyc".into();
    odd.evidence_hash = "abc".into();
    let status = api.submit_verification(odd).await.expect_err("odd hex");
    assert_eq!(violations(&status), ["evidence_hash"]);
    for (bad, field) in [(
        pb::GetAttestationRequest {
            attestation_id: "a:b".into(),
        },
        "attestation_id",
    )] {
        let status = api.get_attestation(bad).await.expect_err("bad id");
        assert_eq!(violations(&status), [field]);
    }
    let status = api
        .revoke_attestation(pb::RevokeAttestationRequest {
            attestation_id: a.attestation_id.clone(),
            reason: String::new(),
        })
        .await
        .expect_err("no reason");
    assert_eq!(violations(&status), ["reason"]);
    let status = api
        .verify_attestation(pb::VerifyAttestationRequest {
            target: Some(Target::CredentialJson("{not json".into())),
        })
        .await
        .expect_err("not json");
    assert_eq!(violations(&status), ["credential_json"]);
    let status = api
        .get_attestation(pb::GetAttestationRequest {
            attestation_id: id_of("nope"),
        })
        .await
        .expect_err("unknown");
    assert_eq!(status.code(), Code::NotFound);

    check_invariants(&link.topology.master, &[a.attestation_id], &[&key]).await;
}

#[tokio::test]
async fn poison_and_replayed_entries_go_to_the_dead_letter_stream_and_never_issue_twice() {
    let link = Link::start_secured().await;
    let dir = tempfile::tempdir().expect("tmp");
    let (key_file, key) = issuer_key(dir.path(), "issuer.key");
    let mut config = attested_config(&link, &key_file);
    config.attestation.did_types = vec![DidType {
        name: "kyc".into(),
        did_id: "0".into(),
        validity: None,
    }];
    let gateway = Gateway::start(config).await;
    let mut api = client(&gateway.channel().await);
    let m = &link.topology.master;

    let good = |wallet: &'static str| {
        vec![
            ("user_wallet", wallet),
            ("did_id", "0"),
            ("result", "verified"),
            ("evidence_hash", "abc123"),
            ("verified_at", "2025-10-03T18:15:10Z"),
        ]
    };
    let with = |wallet: &'static str, name: &'static str, value: &'static str| {
        let mut fields = good(wallet);
        fields.retain(|(k, _)| *k != name);
        if !value.is_empty() {
            fields.push((name, value));
        }
        fields
    };
    let huge: &'static str = "f".repeat(40_000).leak();
    let poison: Vec<(Vec<(&str, &str)>, &str)> = vec![
        (with("0xp1", "result", "maybe"), "UNKNOWN_RESULT"),
        (with("0xp2", "evidence_hash", ""), "MISSING_FIELD"),
        (with("0xp3", "verified_at", "03/10/2025 18:15"), "BAD_TIME"),
        (with("0xp4", "did_id", "7"), "UNKNOWN_DID_TYPE"),
        (
            with("0xp5", "verified_at", "2999-01-01T00:00:00Z"),
            "FUTURE_TIME",
        ),
        (with("0xp6", "v", "9"), "UNSUPPORTED_VERSION"),
        (with("0xp7", "padding", huge), "ENTRY_TOO_LARGE"),
        (with("0xp8", "evidence_hash", "zz"), "INVALID_FIELD"),
    ];
    let mut ids = Vec::new();
    let mut poison_entries = Vec::new();
    for (i, (fields, code)) in poison.iter().enumerate() {
        poison_entries.push((xadd(m, fields).await, *code));
        // A good one between the bad ones: one bad entry stops nothing.
        let entry = xadd(
            m,
            &good(
                [
                    "0xg1", "0xg2", "0xg3", "0xg4", "0xg5", "0xg6", "0xg7", "0xg8",
                ][i],
            ),
        )
        .await;
        ids.push(id_of_entry(&entry));
    }
    // An entry whose values are not UTF-8 at all.
    let raw: String = m
        .query(
            redis::cmd("XADD")
                .arg(keys::VERIFICATION_STREAM)
                .arg("*")
                .arg("user_wallet")
                .arg(&[0xffu8, 0xfe][..])
                .arg("result")
                .arg(&[0xc3u8][..]),
        )
        .await
        .expect("raw");
    poison_entries.push((raw, "MISSING_FIELD"));

    // A producer repeating its request_id: once with the same result (a
    // retry: no second attestation), once with another (dead-lettered).
    let mut replay = good("0xr1");
    replay.push(("request_id", "rep-1"));
    xadd(m, &replay).await;
    xadd(m, &replay).await;
    ids.push(id_of("rep-1"));
    let mut reuse = with("0xr1", "result", "failed");
    reuse.push(("request_id", "rep-1"));
    poison_entries.push((xadd(m, &reuse).await, "REQUEST_ID_REUSED"));

    for id in &ids {
        wait_for_attestation(&mut api, id, SOON).await;
    }
    let deadline = tokio::time::Instant::now() + SOON;
    let letters = loop {
        let page = api
            .list_dead_letters(pb::ListDeadLettersRequest::default())
            .await
            .expect("dead letters")
            .into_inner();
        if page.dead_letters.len() >= poison_entries.len() || tokio::time::Instant::now() > deadline
        {
            break page.dead_letters;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(letters.len(), poison_entries.len(), "{letters:#?}");
    for (entry, code) in &poison_entries {
        let letter = letters
            .iter()
            .find(|l| l.verification_id == *entry)
            .unwrap_or_else(|| panic!("{entry} ({code}) dead-lettered"));
        assert!(
            letter.reason.starts_with(code),
            "{entry}: {} is not {code}",
            letter.reason
        );
    }
    let big = letters
        .iter()
        .find(|l| l.reason.starts_with("ENTRY_TOO_LARGE"))
        .expect("too large");
    assert!(
        big.fields.values().map(String::len).sum::<usize>() < 4096,
        "a huge entry is not copied whole: {:?}",
        big.fields.keys()
    );
    // Newest first, paginated.
    let first = api
        .list_dead_letters(pb::ListDeadLettersRequest {
            page_size: 2,
            page_token: String::new(),
        })
        .await
        .expect("page")
        .into_inner();
    assert_eq!(first.dead_letters.len(), 2);
    assert_eq!(
        first.dead_letters[0].dead_letter_id,
        letters[0].dead_letter_id
    );
    let second = api
        .list_dead_letters(pb::ListDeadLettersRequest {
            page_size: 2,
            page_token: first.next_page_token,
        })
        .await
        .expect("page")
        .into_inner();
    assert_eq!(
        second.dead_letters[0].dead_letter_id,
        letters[2].dead_letter_id
    );

    // A replay of the whole stream (the group destroyed and made again from
    // 0, as after a lost group): nothing is issued twice, nothing new in the
    // dead-letter stream beyond the same poison again.
    let issued_before = common::attestation::issued(m).await;
    let _: u64 = m
        .query(
            redis::cmd("XGROUP")
                .arg("DESTROY")
                .arg(keys::VERIFICATION_STREAM)
                .arg(keys::GROUP),
        )
        .await
        .expect("destroy");
    // The processor meets NOGROUP and makes the group again from 0 itself
    // (BUSYGROUP here if it already has).
    let _: redis::RedisResult<()> = m
        .query(
            redis::cmd("XGROUP")
                .arg("CREATE")
                .arg(keys::VERIFICATION_STREAM)
                .arg(keys::GROUP)
                .arg("0"),
        )
        .await;
    let deadline = tokio::time::Instant::now() + SOON;
    loop {
        let pending: u64 = common::attestation::pending_by_consumer(m)
            .await
            .values()
            .sum();
        let lag = group_lag(m).await;
        if pending == 0 && lag == Some(0) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "replay not consumed: lag {lag:?}, pending {pending}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        common::attestation::issued(m).await,
        issued_before,
        "the replay issued nothing"
    );
    check_invariants(m, &ids, &[&key]).await;
}

/// The attestation group's lag (entries not yet delivered to it).
async fn group_lag(m: &openoes::redis::process::RedisProcess) -> Option<i64> {
    let groups: Vec<redis::Value> = m
        .query(
            redis::cmd("XINFO")
                .arg("GROUPS")
                .arg(keys::VERIFICATION_STREAM),
        )
        .await
        .ok()?;
    let redis::Value::Array(group) = groups.into_iter().next()? else {
        return None;
    };
    let at = group
        .iter()
        .position(|v| openoes::redis::value_text(v) == "lag")?;
    match group.get(at + 1)? {
        redis::Value::Int(n) => Some(*n),
        _ => None,
    }
}

#[tokio::test]
async fn revocation_is_idempotent_published_in_the_status_list_and_watched() {
    let link = Link::start_secured().await;
    let dir = tempfile::tempdir().expect("tmp");
    let (key_file, key) = issuer_key(dir.path(), "issuer.key");
    let gateway = Gateway::start(attested_config(&link, &key_file)).await;
    let mut api = client(&gateway.channel().await);

    let mut watch = api
        .watch_attestations(pb::WatchAttestationsRequest {
            subject: "0xwatched".into(),
            start_after_event_id: String::new(),
        })
        .await
        .expect("watch")
        .into_inner();
    let a = api
        .submit_verification(submission("w-1", "0xwatched", now_ms()))
        .await
        .expect("a")
        .into_inner();
    let b = api
        .submit_verification(submission("w-2", "0xother", now_ms()))
        .await
        .expect("b")
        .into_inner();
    let att = wait_for_attestation(&mut api, &a.attestation_id, SOON).await;
    wait_for_attestation(&mut api, &b.attestation_id, SOON).await;

    // Before: the list exists, nothing is set, it verifies.
    let list = api
        .get_status_list(pb::GetStatusListRequest {
            status_list_id: att.status_list_id.clone(),
        })
        .await
        .expect("list")
        .into_inner();
    assert_eq!(list.revision, 0);
    assert_eq!(list.size, 131_072);
    let doc: serde_json::Value = serde_json::from_str(&list.credential_json).expect("json");
    data_integrity::verify_proof_with_key(&doc, &key.public_key()).expect("list verifies");
    assert_eq!(doc["issuer"], key.did_key());
    let again = api
        .get_status_list(pb::GetStatusListRequest {
            status_list_id: list.url.clone(),
        })
        .await
        .expect("by url")
        .into_inner();
    assert_eq!(
        again.credential_json, list.credential_json,
        "kept until it changes"
    );

    let revoked = api
        .revoke_attestation(pb::RevokeAttestationRequest {
            attestation_id: a.attestation_id.clone(),
            reason: "key compromised".into(),
        })
        .await
        .expect("revoke")
        .into_inner()
        .attestation
        .expect("attestation");
    assert_eq!(revoked.status, pb::AttestationStatus::Revoked as i32);
    assert_eq!(revoked.revocation_reason, "key compromised");
    let twice = api
        .revoke_attestation(pb::RevokeAttestationRequest {
            attestation_id: a.attestation_id.clone(),
            reason: "another reason".into(),
        })
        .await
        .expect("revoke again")
        .into_inner()
        .attestation
        .expect("attestation");
    assert_eq!(
        twice.revocation_reason, "key compromised",
        "as first revoked"
    );
    assert_eq!(twice.revoked_at, revoked.revoked_at);
    let unknown = api
        .revoke_attestation(pb::RevokeAttestationRequest {
            attestation_id: id_of("never"),
            reason: "x".into(),
        })
        .await
        .expect_err("unknown");
    assert_eq!(unknown.code(), Code::NotFound);

    let list = api
        .get_status_list(pb::GetStatusListRequest {
            status_list_id: att.status_list_id.clone(),
        })
        .await
        .expect("list")
        .into_inner();
    assert_eq!(
        list.revision, 1,
        "one revocation, the repeat changed nothing"
    );
    let doc: serde_json::Value = serde_json::from_str(&list.credential_json).expect("json");
    data_integrity::verify_proof_with_key(&doc, &key.public_key()).expect("list verifies");
    let bits = StatusList::decode(
        doc["credentialSubject"]["encodedList"]
            .as_str()
            .expect("list"),
    )
    .expect("decode");
    let set: Vec<usize> = (0..bits.len())
        .filter(|&i| bits.get(i) == Ok(true))
        .collect();
    assert_eq!(
        set,
        [att.status_list_index as usize],
        "exactly the revoked one"
    );

    let verdict = api
        .verify_attestation(pb::VerifyAttestationRequest {
            target: Some(Target::AttestationId(a.attestation_id.clone())),
        })
        .await
        .expect("verify")
        .into_inner();
    assert!(!verdict.valid);
    assert_eq!(
        verdict.failed_checks,
        [pb::VerificationCheck::Revocation as i32]
    );
    let other = api
        .verify_attestation(pb::VerifyAttestationRequest {
            target: Some(Target::AttestationId(b.attestation_id.clone())),
        })
        .await
        .expect("verify")
        .into_inner();
    assert!(other.valid, "{other:?}");

    // The watch: the subject's issued then revoked, nothing of the other.
    let mut seen = Vec::new();
    while seen.len() < 2 {
        let event = tokio::time::timeout(SOON, watch.next())
            .await
            .expect("event in time")
            .expect("stream open")
            .expect("event")
            .event
            .expect("event");
        seen.push(event);
    }
    assert_eq!(seen[0].r#type, pb::AttestationEventType::Issued as i32);
    assert_eq!(seen[1].r#type, pb::AttestationEventType::Revoked as i32);
    let issued_event = seen[0].attestation.as_ref().expect("attestation");
    assert_eq!(issued_event.attestation_id, a.attestation_id);
    assert_eq!(
        issued_event.status,
        pb::AttestationStatus::Active as i32,
        "as of the event"
    );
    assert_eq!(issued_event.credential_json, att.credential_json);
    // Resumed after the first event: the second comes again.
    let mut resumed = api
        .watch_attestations(pb::WatchAttestationsRequest {
            subject: String::new(),
            start_after_event_id: seen[0].event_id.clone(),
        })
        .await
        .expect("resume")
        .into_inner();
    let mut after = Vec::new();
    while !after
        .iter()
        .any(|e: &pb::AttestationEvent| e.event_id == seen[1].event_id)
    {
        let event = tokio::time::timeout(SOON, resumed.next())
            .await
            .expect("in time")
            .expect("open")
            .expect("event")
            .event
            .expect("event");
        after.push(event);
    }
    assert!(after.iter().all(|e| e.event_id != seen[0].event_id));

    check_invariants(
        &link.topology.master,
        &[a.attestation_id, b.attestation_id],
        &[&key],
    )
    .await;
}

#[tokio::test]
async fn verification_fails_for_the_right_reason() {
    let link = Link::start_secured().await;
    let dir = tempfile::tempdir().expect("tmp");
    let (key_file, key) = issuer_key(dir.path(), "issuer.key");
    let gateway = Gateway::start(attested_config(&link, &key_file)).await;
    let mut api = client(&gateway.channel().await);

    let good = api
        .submit_verification(submission("v-1", "0xv", now_ms()))
        .await
        .expect("good")
        .into_inner();
    // Verified two years ago: valid for one year, so expired already.
    let old = api
        .submit_verification(submission("v-2", "0xv", now_ms() - 2 * 365 * 86_400_000))
        .await
        .expect("old")
        .into_inner();
    let good = wait_for_attestation(&mut api, &good.attestation_id, SOON).await;
    let old = wait_for_attestation(&mut api, &old.attestation_id, SOON).await;
    assert_eq!(old.status, pb::AttestationStatus::Expired as i32);

    let check = |json: String| pb::VerifyAttestationRequest {
        target: Some(Target::CredentialJson(json)),
    };
    let mut verify = async |json: String| {
        api.verify_attestation(check(json))
            .await
            .expect("verify")
            .into_inner()
    };
    let ok = verify(good.credential_json.clone()).await;
    assert!(ok.valid, "{ok:?}");
    assert_eq!(
        ok.attestation.expect("known here").attestation_id,
        good.attestation_id
    );

    let mut changed: serde_json::Value = serde_json::from_str(&good.credential_json).expect("json");
    changed["credentialSubject"]["verificationResult"] = "failed".into();
    let v = verify(changed.to_string()).await;
    assert_eq!(
        v.failed_checks,
        [pb::VerificationCheck::Signature as i32],
        "{v:?}"
    );

    let v = verify(old.credential_json.clone()).await;
    assert_eq!(
        v.failed_checks,
        [pb::VerificationCheck::Expiry as i32],
        "{v:?}"
    );
    assert!(v.reasons[0].contains("expired"), "{:?}", v.reasons);

    // Signed by another key (a forger's), with its own issuer.
    let stranger = openoes::crypto::keys::ServerKey::generate("stranger").expect("key");
    let mut forged: serde_json::Value = serde_json::from_str(&good.credential_json).expect("json");
    forged.as_object_mut().expect("object").remove("proof");
    forged["issuer"] = stranger.did_key().into();
    let forged = data_integrity::add_proof(
        &forged,
        stranger.signing_key(),
        &data_integrity::ProofOptions {
            verification_method: stranger.verification_method(),
            proof_purpose: "assertionMethod".into(),
            created: Some("2025-10-03T18:15:10Z".into()),
        },
    )
    .expect("forge");
    let v = verify(forged.to_string()).await;
    assert_eq!(
        v.failed_checks,
        [pb::VerificationCheck::Key as i32],
        "{v:?}"
    );

    api.revoke_attestation(pb::RevokeAttestationRequest {
        attestation_id: good.attestation_id.clone(),
        reason: "test".into(),
    })
    .await
    .expect("revoke");
    let v = api
        .verify_attestation(check(good.credential_json.clone()))
        .await
        .expect("verify")
        .into_inner();
    assert_eq!(
        v.failed_checks,
        [pb::VerificationCheck::Revocation as i32],
        "{v:?}"
    );

    check_invariants(
        &link.topology.master,
        &[good.attestation_id, old.attestation_id],
        &[&key],
    )
    .await;
}

#[tokio::test]
async fn a_rotated_key_signs_new_credentials_and_old_ones_still_verify() {
    let link = Link::start_secured().await;
    let dir = tempfile::tempdir().expect("tmp");
    let (old_file, old_key) = issuer_key(dir.path(), "old.key");
    let (new_file, new_key) = issuer_key(dir.path(), "new.key");
    let mut gateway = Gateway::start(attested_config(&link, &old_file)).await;
    let mut api = client(&gateway.channel().await);
    let before = api
        .submit_verification(submission("k-1", "0xk", now_ms()))
        .await
        .expect("a")
        .into_inner();
    let before = wait_for_attestation(&mut api, &before.attestation_id, SOON).await;
    gateway.signal_stop();
    let _ = gateway.task.await;

    let mut config = attested_config(&link, &new_file);
    config.attestation.retired_key_files = vec![old_file.clone()];
    let gateway = Gateway::start(config).await;
    let mut api = client(&gateway.channel().await);
    let after = api
        .submit_verification(submission("k-2", "0xk", now_ms()))
        .await
        .expect("b")
        .into_inner();
    let after = wait_for_attestation(&mut api, &after.attestation_id, SOON).await;
    assert_eq!(before.key_id, old_key.verification_method());
    assert_eq!(after.key_id, new_key.verification_method());
    assert_ne!(
        after.status_list_id, before.status_list_id,
        "a list per key"
    );

    let keys = api
        .get_issuer_key(pb::GetIssuerKeyRequest::default())
        .await
        .expect("keys")
        .into_inner();
    assert_eq!(keys.key_id, new_key.verification_method());
    let listed: Vec<(String, bool)> = keys
        .keys
        .iter()
        .map(|k| (k.key_id.clone(), k.active))
        .collect();
    assert_eq!(
        listed,
        [
            (new_key.verification_method(), true),
            (old_key.verification_method(), false)
        ]
    );
    let old = api
        .get_issuer_key(pb::GetIssuerKeyRequest {
            key_id: old_key.did_key(),
        })
        .await
        .expect("old key by did")
        .into_inner();
    assert!(!old.active && old.public_key == old_key.public_key().as_bytes());

    for att in [&before, &after] {
        let v = api
            .verify_attestation(pb::VerifyAttestationRequest {
                target: Some(Target::AttestationId(att.attestation_id.clone())),
            })
            .await
            .expect("verify")
            .into_inner();
        assert!(v.valid, "{v:?}");
    }
    // Revoking an old credential: its list is still signed by its own key.
    api.revoke_attestation(pb::RevokeAttestationRequest {
        attestation_id: before.attestation_id.clone(),
        reason: "rotated".into(),
    })
    .await
    .expect("revoke");
    let list = api
        .get_status_list(pb::GetStatusListRequest {
            status_list_id: before.status_list_id.clone(),
        })
        .await
        .expect("old list")
        .into_inner();
    let doc: serde_json::Value = serde_json::from_str(&list.credential_json).expect("json");
    assert_eq!(doc["issuer"], old_key.did_key());
    data_integrity::verify_proof_with_key(&doc, &old_key.public_key())
        .expect("signed by the old key");

    check_invariants(
        &link.topology.master,
        &[before.attestation_id, after.attestation_id],
        &[&old_key, &new_key],
    )
    .await;
}

#[tokio::test]
async fn without_an_issuer_key_the_service_refuses_and_says_why() {
    let link = Link::start_secured().await;
    let gateway = Gateway::start(link.secured_config()).await;
    let channel = gateway.channel().await;
    wait_for_health(&channel, "", ServingStatus::Serving, SOON).await;
    wait_for_health(&channel, SERVICE, ServingStatus::NotServing, SOON).await;
    let mut api = client(&channel);
    let statuses = [
        api.submit_verification(submission("n-1", "0xn", now_ms()))
            .await
            .map(drop),
        api.get_issuer_key(pb::GetIssuerKeyRequest::default())
            .await
            .map(drop),
        api.get_status_list(pb::GetStatusListRequest {
            status_list_id: "1".into(),
        })
        .await
        .map(drop),
        api.list_attestations(pb::ListAttestationsRequest {
            subject: "0xn".into(),
            ..Default::default()
        })
        .await
        .map(drop),
    ];
    for result in statuses {
        let status = result.expect_err("refused");
        assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
        assert_eq!(reason(&status), "ISSUER_KEY_NOT_CONFIGURED");
        assert!(
            status.message().contains("attestation.key_file"),
            "{status:?}"
        );
    }
    // Nothing consumed the stream: no group, no key material anywhere.
    let groups: redis::Value = link
        .topology
        .master
        .query(redis::cmd("EXISTS").arg(keys::VERIFICATION_STREAM))
        .await
        .expect("exists");
    assert_eq!(groups, redis::Value::Int(0));
}

#[tokio::test]
async fn the_verification_stream_is_trimmed_only_of_what_every_group_acknowledged() {
    use openoes::attestation::store::AttestationStore;
    let link = Link::start().await;
    let dir = tempfile::tempdir().expect("tmp");
    let (key_file, key) = issuer_key(dir.path(), "issuer.key");
    let mut config = link.config();
    config.attestation.key_file = key_file;
    let gateway = Gateway::start(config).await;
    let mut api = client(&gateway.channel().await);
    let m = &link.topology.master;
    let store = AttestationStore::new(common::endpoint_on(m), 1000);
    let xlen = async || -> u64 {
        m.query(redis::cmd("XLEN").arg(keys::VERIFICATION_STREAM))
            .await
            .expect("xlen")
    };

    // Another party's group that has read nothing yet: nothing goes.
    let _: () = m
        .query(
            redis::cmd("XGROUP")
                .arg("CREATE")
                .arg(keys::VERIFICATION_STREAM)
                .arg("their-auditors")
                .arg("0")
                .arg("MKSTREAM"),
        )
        .await
        .expect("their group");
    const N: usize = 450;
    let mut ids = Vec::new();
    for i in 0..N {
        let entry = xadd(
            m,
            &[
                ("user_wallet", "0xtrim"),
                ("did_id", "0"),
                ("result", "verified"),
                ("evidence_hash", "abc123"),
                ("verified_at", "2025-10-03T18:15:10"),
                ("n", &i.to_string()),
            ],
        )
        .await;
        ids.push(id_of_entry(&entry));
    }
    wait_for_attestation(&mut api, ids.last().expect("last"), SOON).await;
    common::attestation::wait_for_issued(m, N as u64, SOON).await;
    assert_eq!(
        store.trim_results().await.expect("trim"),
        0,
        "their group read nothing"
    );
    assert_eq!(xlen().await, N as u64);

    // Once they have read and acknowledged everything, it goes (whole
    // stream nodes of 100 entries: approximate trimming).
    let read: redis::Value = m
        .query(
            redis::cmd("XREADGROUP")
                .arg("GROUP")
                .arg("their-auditors")
                .arg("auditor-1")
                .arg("STREAMS")
                .arg(keys::VERIFICATION_STREAM)
                .arg(">"),
        )
        .await
        .expect("their read");
    let theirs: Vec<String> = openoes::streams::reply::read_entries(read)
        .into_iter()
        .filter_map(|p| p.id().map(|id| id.to_string()))
        .collect();
    assert_eq!(theirs.len(), N);
    // Still pending on them: nothing goes.
    assert_eq!(
        store.trim_results().await.expect("trim"),
        0,
        "pending on their consumer"
    );
    let mut ack = redis::cmd("XACK");
    ack.arg(keys::VERIFICATION_STREAM).arg("their-auditors");
    for id in &theirs {
        ack.arg(id);
    }
    let _: u64 = m.query(&mut ack).await.expect("their ack");
    let trimmed = store.trim_results().await.expect("trim");
    assert!(trimmed >= 100, "trimmed {trimmed}");
    let left = xlen().await;
    assert!(left < N as u64 && left >= 1, "{left} left");
    check_invariants(m, &ids, &[&key]).await;
}

#[test]
fn keys_generate_writes_a_private_file_and_serve_refuses_a_readable_one() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("issuer.key");
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_openoes"))
            .args(args)
            .output()
            .expect("run openoes")
    };
    let out = run(&["keys", "generate", "--out", path.to_str().expect("path")]);
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let key = openoes::crypto::keys::ServerKey::read(&path).expect("a key file");
    assert!(stdout.contains(&key.did_key()), "{stdout}");
    assert!(stdout.contains(&key.verification_method()), "{stdout}");
    let secret = std::fs::read_to_string(&path).expect("read");
    let secret_part = secret.trim().rsplit('+').next().expect("key part");
    assert!(
        !stdout.contains(secret_part),
        "the private key is never printed"
    );
    assert_eq!(
        std::fs::metadata(&path).expect("meta").permissions().mode() & 0o777,
        0o600
    );
    let again = run(&["keys", "generate", "--out", path.to_str().expect("path")]);
    assert!(!again.status.success(), "never overwritten");
    assert_eq!(std::fs::read_to_string(&path).expect("read"), secret);

    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).expect("chmod");
    let config = dir.path().join("openoes.toml");
    std::fs::write(
        &config,
        format!(
            "[attestation]\nkey_file = {:?}\n",
            path.display().to_string()
        ),
    )
    .expect("config");
    let serve = run(&["serve", "--config", config.to_str().expect("path")]);
    assert_eq!(serve.status.code(), Some(2), "{serve:?}");
    let stderr = String::from_utf8_lossy(&serve.stderr);
    assert!(
        stderr.contains("attestation.key_file") && stderr.contains("chmod 600"),
        "{stderr}"
    );
    assert!(!stderr.contains(secret_part));
}
