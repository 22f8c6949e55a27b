//! The acceptance bar: credentials issued here verify with independent
//! implementations, offline. The Digital Bazaar stack from npm
//! (tests/attestation-verify: @digitalbazaar/vc, data-integrity,
//! eddsa-jcs-2022-cryptosuite, security-document-loader,
//! vc-bitstring-status-list, the status lists from a static loader, the
//! network cut off) and clients/python/verify_attestation.py (the standard
//! library only) each accept an issued credential and refuse a changed
//! one, one signed by another key, an expired one and a revoked one, each
//! for its own reason.
//!
//! Needs `npm ci` in tests/attestation-verify (scripts/test does it).

mod common;

use std::{path::Path, process::Command, time::Duration};

use common::{
    Gateway, Link,
    attestation::{attested_config, client, issuer_key, now_ms, submission, wait_for_attestation},
};
use openoes::{
    crypto::{data_integrity, keys::ServerKey},
    proto::attestation::v1 as pb,
};
use serde_json::{Value, json};

const SOON: Duration = Duration::from_secs(10);

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The same credential, its proof replaced by one of `other`'s; the issuer
/// is re-signed too if `issuer` is set.
fn resigned(credential: &Value, other: &ServerKey, issuer: bool) -> Value {
    let mut doc = credential.clone();
    doc.as_object_mut().expect("object").remove("proof");
    if issuer {
        doc["issuer"] = other.did_key().into();
    }
    data_integrity::add_proof(
        &doc,
        other.signing_key(),
        &data_integrity::ProofOptions {
            verification_method: other.verification_method(),
            proof_purpose: "assertionMethod".into(),
            created: Some("2025-10-03T18:15:10Z".into()),
        },
    )
    .expect("sign")
}

#[tokio::test]
async fn independent_verifiers_accept_issued_credentials_and_refuse_bad_ones_for_the_right_reason()
{
    let verifier = root().join("tests/attestation-verify");
    assert!(
        verifier.join("node_modules/@digitalbazaar/vc").is_dir(),
        "the npm verifier is not installed: run `npm ci` in {} (scripts/test does)",
        verifier.display()
    );
    let link = Link::start_secured().await;
    let dir = tempfile::tempdir().expect("tmp");
    let (key_file, key) = issuer_key(dir.path(), "issuer.key");
    let gateway = Gateway::start(attested_config(&link, &key_file)).await;
    let mut api = client(&gateway.channel().await);

    let mut issue = async |id: &str, verified_ms: i64| {
        let r = api
            .submit_verification(submission(id, "0xindependent", verified_ms))
            .await
            .expect("submit")
            .into_inner();
        wait_for_attestation(&mut api, &r.attestation_id, SOON).await
    };
    let good = issue("i-good", now_ms() - 1000).await;
    let revoked = issue("i-revoked", now_ms() - 1000).await;
    let expired = issue("i-expired", now_ms() - 2 * 365 * 86_400_000).await;
    let mut api = client(&gateway.channel().await);
    api.revoke_attestation(pb::RevokeAttestationRequest {
        attestation_id: revoked.attestation_id.clone(),
        reason: "independent check".into(),
    })
    .await
    .expect("revoke");
    let list = api
        .get_status_list(pb::GetStatusListRequest {
            status_list_id: good.status_list_id.clone(),
        })
        .await
        .expect("status list")
        .into_inner();
    let issuer = api
        .get_issuer_key(pb::GetIssuerKeyRequest::default())
        .await
        .expect("key")
        .into_inner();
    assert_eq!(issuer.did_key, key.did_key());

    let parse =
        |a: &pb::Attestation| -> Value { serde_json::from_str(&a.credential_json).expect("json") };
    let mut changed = parse(&good);
    changed["credentialSubject"]["verificationResult"] = "failed".into();
    let stranger = ServerKey::generate("stranger").expect("key");
    let cases = [
        ("issued", parse(&good)),
        ("changed", changed),
        ("other-key", resigned(&parse(&good), &stranger, false)),
        ("other-issuer", resigned(&parse(&good), &stranger, true)),
        ("expired", parse(&expired)),
        ("revoked", parse(&revoked)),
    ];
    let input = json!({
        "issuer": issuer.did_key,
        "statusLists": { list.url.clone(): serde_json::from_str::<Value>(&list.credential_json).expect("json") },
        "cases": cases.iter().map(|(name, c)| json!({"name": name, "credential": c})).collect::<Vec<_>>(),
    });
    let input_file = dir.path().join("cases.json");
    std::fs::write(&input_file, input.to_string()).expect("write cases");

    // --- the Digital Bazaar stack ---
    let out = Command::new("node")
        .arg(verifier.join("verify.mjs"))
        .arg(&input_file)
        .output()
        .expect("run node");
    assert!(
        out.status.success(),
        "node verify.mjs failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).expect("report");
    println!(
        "{}",
        serde_json::to_string_pretty(&report).unwrap_or_default()
    );
    assert_eq!(
        report["networkAttempts"],
        json!([]),
        "nothing fetched from the network"
    );
    let result = |name: &str| -> Value {
        report["results"]
            .as_array()
            .expect("results")
            .iter()
            .find(|r| r["name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("no result for {name}"))
    };
    let errors = |r: &Value| r["errors"].to_string().to_lowercase();

    let issued = result("issued");
    assert_eq!(issued["verified"], true, "{issued}");
    assert_eq!(issued["proofVerified"], true);
    assert_eq!(
        issued["statusChecked"], true,
        "the status list was read and verified"
    );
    assert_eq!(issued["revoked"], false);

    let changed = result("changed");
    assert_eq!(changed["verified"], false);
    assert_eq!(changed["proofVerified"], false, "{changed}");
    assert!(errors(&changed).contains("signature"), "{changed}");

    let other = result("other-key");
    assert_eq!(other["verified"], false);
    assert!(errors(&other).contains("issuer"), "{other}");

    let impostor = result("other-issuer");
    assert_eq!(
        impostor["proofVerified"], true,
        "a did:key always resolves: {impostor}"
    );
    assert_eq!(impostor["trustedIssuer"], false);
    assert_eq!(impostor["verified"], false);

    // vc checks the validity period before the proof: the error says why.
    let expired = result("expired");
    assert_eq!(expired["verified"], false);
    assert!(
        errors(&expired).contains("is after \\\"validuntil\\\""),
        "{expired}"
    );

    let revoked = result("revoked");
    assert_eq!(revoked["revoked"], true, "{revoked}");
    assert_eq!(revoked["proofVerified"], true);
    assert_eq!(revoked["statusChecked"], true);
    assert_eq!(revoked["verified"], false);

    // --- the Python verifier, the standard library only ---
    let list_file = dir.path().join("status-list.json");
    std::fs::write(&list_file, &list.credential_json).expect("write list");
    for (name, credential) in &cases {
        let file = dir.path().join(format!("{name}.json"));
        std::fs::write(&file, credential.to_string()).expect("write credential");
        let out = Command::new("python3")
            .arg(root().join("clients/python/verify_attestation.py"))
            .arg(&file)
            .arg("--public-key")
            .arg(&issuer.did_key)
            .arg("--status-list")
            .arg(&list_file)
            .output()
            .expect("run python3");
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let want: &[&str] = match *name {
            "issued" => &[],
            "changed" => &["signature:"],
            "other-key" => &["key:", "signature:"],
            "other-issuer" => &["issuer:", "key:", "signature:"],
            "expired" => &["expiry:"],
            "revoked" => &["revocation: revoked"],
            _ => unreachable!(),
        };
        if want.is_empty() {
            assert_eq!(out.status.code(), Some(0), "{name}: {text}");
            assert_eq!(text.trim(), "OK");
        } else {
            assert_eq!(out.status.code(), Some(1), "{name}: {text}");
            for reason in want {
                assert!(text.contains(reason), "{name}: {reason} in {text}");
            }
            let lines = text.lines().filter(|l| l.starts_with("  ")).count();
            assert_eq!(lines, want.len(), "{name}: only its own reasons: {text}");
        }
    }
}
