//! Proto <-> domain for AttestationService: every input check, and every
//! record's translation to its message.

use std::sync::Arc;

use super::{
    credential::{self, Check, Issuer, IssuerKey},
    model::{self, AttestationRecord, DeadLetter, EventKind, Outcome, StoredStatus, Verification},
};
use crate::{
    proto::attestation::v1 as pb,
    streams::{Entry, StreamId, watch::Filter},
    time::timestamp_ms,
    validate::{FieldViolations, echo, is_valid_id},
};

/// Most attestations or dead letters per page, and the default.
pub const MAX_PAGE_SIZE: usize = 1000;
const DEFAULT_PAGE_SIZE: usize = 100;
/// Longest revocation reason.
pub const MAX_REASON_LEN: usize = 1024;
/// Longest credential VerifyAttestation reads (ours are about 1.5 KB).
pub const MAX_CREDENTIAL_BYTES: usize = 64 * 1024;

// === proto -> domain ===

/// A SubmitVerification call, checked against the rules at `now_ms`.
pub fn submission(
    r: pb::SubmitVerificationRequest,
    rules: &model::Rules,
    now_ms: i64,
) -> Result<Verification, FieldViolations> {
    let mut v = FieldViolations::default();
    v.check_id("request_id", &r.request_id);
    if r.subject.is_empty() {
        v.add("subject", "is required");
    } else if let Err(why) = model::check_subject(&r.subject) {
        v.add("subject", why);
    }
    let mut did_id = String::new();
    if r.did_type.is_empty() {
        v.add("did_type", "is required");
    } else if let Err(why) = model::check_did_type(&r.did_type) {
        v.add("did_type", why);
    } else {
        match rules.did_id_of(&r.did_type) {
            Some(code) => did_id = code,
            None => v.add(
                "did_type",
                format!(
                    "must be one of the configured did types ({})",
                    rules.did_type_names()
                ),
            ),
        }
    }
    let outcome = match pb::VerificationResult::try_from(r.result) {
        Ok(pb::VerificationResult::Passed) => Outcome::Verified,
        Ok(pb::VerificationResult::Failed) => Outcome::Failed,
        _ => {
            v.add(
                "result",
                "must be VERIFICATION_RESULT_PASSED or VERIFICATION_RESULT_FAILED",
            );
            Outcome::Failed
        }
    };
    let evidence_hash = if r.evidence_hash.is_empty() {
        v.add("evidence_hash", "is required");
        String::new()
    } else {
        model::check_evidence_hash(&r.evidence_hash).unwrap_or_else(|why| {
            v.add("evidence_hash", why);
            String::new()
        })
    };
    let verified_ms = match r.verified_at {
        None => {
            v.add("verified_at", "is required");
            0
        }
        Some(t) if !(0..1_000_000_000).contains(&t.nanos) => {
            v.add("verified_at", "nanos must be 0-999999999");
            0
        }
        Some(t) => {
            let ms = t
                .seconds
                .checked_mul(1000)
                .and_then(|s| s.checked_add(i64::from(t.nanos / 1_000_000)));
            match ms {
                // Years 1-9999, what ISO-8601 and the wire write.
                Some(ms) if (-62_135_596_800_000..=253_402_300_799_999).contains(&ms) => {
                    if let Err(why) = model::check_not_future(ms, now_ms) {
                        v.add("verified_at", why);
                    }
                    ms
                }
                _ => {
                    v.add("verified_at", "must be within the years 1-9999");
                    0
                }
            }
        }
    };
    v.into_result()?;
    Ok(Verification {
        request_id: Some(r.request_id),
        subject: r.subject,
        did_type: r.did_type,
        did_id,
        outcome,
        evidence_hash,
        verified_ms,
    })
}

/// A ListAttestations call: (subject, issued before this sequence, size).
pub fn list_page(r: &pb::ListAttestationsRequest) -> Result<(Option<u64>, usize), FieldViolations> {
    let mut v = FieldViolations::default();
    v.check_id("subject", &r.subject);
    let size = v.page_size(r.page_size, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE);
    let before = if r.page_token.is_empty() {
        None
    } else {
        match r.page_token.parse::<u64>() {
            Ok(seq) if r.page_token.len() <= 20 => Some(seq),
            _ => {
                v.add(
                    "page_token",
                    format!(
                        "{} is not a next_page_token of ListAttestations",
                        echo(&r.page_token)
                    ),
                );
                None
            }
        }
    };
    v.into_result()?;
    Ok((before, size))
}

/// A ListDeadLetters call: (before this dead letter, size).
pub fn dead_letter_page(
    r: &pb::ListDeadLettersRequest,
) -> Result<(Option<StreamId>, usize), FieldViolations> {
    let mut v = FieldViolations::default();
    let size = v.page_size(r.page_size, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE);
    let before = if r.page_token.is_empty() {
        None
    } else {
        match r.page_token.parse::<StreamId>() {
            Ok(id) => Some(id),
            Err(()) => {
                v.add(
                    "page_token",
                    format!(
                        "{} is not a next_page_token of ListDeadLetters",
                        echo(&r.page_token)
                    ),
                );
                None
            }
        }
    };
    v.into_result()?;
    Ok((before, size))
}

/// What VerifyAttestation checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// An attestation issued here.
    Id(String),
    /// A credential given in full, parsed.
    Credential(serde_json::Value),
}

/// A VerifyAttestation call.
pub fn verify_target(r: pb::VerifyAttestationRequest) -> Result<Target, FieldViolations> {
    use pb::verify_attestation_request::Target as T;
    let credential = |field: &str, json: String| {
        if json.len() > MAX_CREDENTIAL_BYTES {
            return Err(FieldViolations::one(
                field,
                format!("must be at most {MAX_CREDENTIAL_BYTES} bytes"),
            ));
        }
        match serde_json::from_str::<serde_json::Value>(&json) {
            Ok(doc) if doc.is_object() => Ok(Target::Credential(doc)),
            Ok(_) => Err(FieldViolations::one(field, "must be a JSON object")),
            Err(e) => Err(FieldViolations::one(field, format!("is not JSON: {e}"))),
        }
    };
    match r.target {
        None => Err(FieldViolations::one(
            "target",
            "set attestation_id, attestation or credential_json",
        )),
        Some(T::AttestationId(id)) => {
            crate::validate::require_id("attestation_id", &id)?;
            Ok(Target::Id(id))
        }
        Some(T::Attestation(a)) => credential("attestation.credential_json", a.credential_json),
        Some(T::CredentialJson(json)) => credential("credential_json", json),
    }
}

/// A RevokeAttestation call: (attestation id, reason).
pub fn revocation(r: pb::RevokeAttestationRequest) -> Result<(String, String), FieldViolations> {
    let mut v = FieldViolations::default();
    v.check_id("attestation_id", &r.attestation_id);
    v.check_text("reason", &r.reason, MAX_REASON_LEN, true);
    v.into_result()?;
    Ok((r.attestation_id, r.reason))
}

/// A GetStatusList call: the list id (given as is, or as its URL).
pub fn status_list_id(
    r: &pb::GetStatusListRequest,
    prefix: &str,
) -> Result<String, FieldViolations> {
    let id = r
        .status_list_id
        .strip_prefix(prefix)
        .unwrap_or(&r.status_list_id);
    if id.is_empty() {
        return Err(FieldViolations::one("status_list_id", "is required"));
    }
    if !is_valid_id(id) {
        return Err(FieldViolations::one(
            "status_list_id",
            format!("must be a list id or {prefix}<list id>"),
        ));
    }
    Ok(id.to_string())
}

/// A WatchAttestations call: (resume cursor, filter).
pub fn watch(r: pb::WatchAttestationsRequest) -> Result<(String, Filter), FieldViolations> {
    let mut v = FieldViolations::default();
    v.check_optional_id("subject", &r.subject);
    v.into_result()?;
    let subject = r.subject;
    let filter = Arc::new(move |e: &Entry| subject.is_empty() || e.field("subject") == subject);
    Ok((r.start_after_event_id, filter))
}

// === domain -> proto ===

/// An attestation as the API shows it, its status as of `now_ms`.
pub fn attestation_to_proto(r: &AttestationRecord, now_ms: i64) -> pb::Attestation {
    use pb::AttestationStatus as S;
    let status = match r.status {
        StoredStatus::Revoked => S::Revoked,
        StoredStatus::Active if r.expires_ms < now_ms => S::Expired,
        StoredStatus::Active => S::Active,
    };
    let (payload, signature) = credential::signed_parts(&r.credential).unwrap_or_default();
    pb::Attestation {
        attestation_id: r.attestation_id.clone(),
        subject: r.subject.clone(),
        did_type: r.did_type.clone(),
        result: match r.outcome {
            Some(Outcome::Verified) => pb::VerificationResult::Passed,
            Some(Outcome::Failed) => pb::VerificationResult::Failed,
            None => pb::VerificationResult::Unspecified,
        } as i32,
        evidence_hash: r.evidence_hash.clone(),
        verified_at: Some(timestamp_ms(r.verified_ms)),
        issued_at: Some(timestamp_ms(r.issued_ms)),
        expires_at: Some(timestamp_ms(r.expires_ms)),
        key_id: r.key_id.clone(),
        payload,
        signature,
        status: status as i32,
        revoked_at: r.revoked_ms.map(timestamp_ms),
        revocation_reason: r.revocation_reason.clone(),
        credential_json: r.credential.clone(),
        did_id: r.did_id.clone(),
        request_id: r.request_id.clone(),
        verification_id: r.entry_id.clone(),
        status_list_id: r.list_id.clone(),
        status_list_index: r.list_index,
    }
}

/// A failed check as the API names it.
pub fn check_to_proto(check: Check) -> pb::VerificationCheck {
    match check {
        Check::Key => pb::VerificationCheck::Key,
        Check::Signature => pb::VerificationCheck::Signature,
        Check::Expiry => pb::VerificationCheck::Expiry,
        Check::Revocation => pb::VerificationCheck::Revocation,
    }
}

/// One issuer key as the API shows it.
pub fn key_to_proto(k: &IssuerKey) -> pb::IssuerKey {
    pb::IssuerKey {
        key_id: k.key_id.clone(),
        algorithm: "Ed25519".into(),
        public_key: k.public_key().as_bytes().to_vec(),
        did_key: k.did.clone(),
        public_key_multibase: k.multibase().to_string(),
        active: k.active,
    }
}

/// GetIssuerKey's answer for `key` of `issuer`.
pub fn issuer_key_to_proto(issuer: &Issuer, key: &IssuerKey) -> pb::GetIssuerKeyResponse {
    pb::GetIssuerKeyResponse {
        key_id: key.key_id.clone(),
        algorithm: "Ed25519".into(),
        public_key: key.public_key().as_bytes().to_vec(),
        did_key: key.did.clone(),
        active: key.active,
        keys: issuer.keys().iter().map(key_to_proto).collect(),
    }
}

/// A dead letter as the API shows it.
pub fn dead_letter_to_proto(d: DeadLetter) -> pb::DeadLetter {
    pb::DeadLetter {
        dead_letter_id: d.id.to_string(),
        verification_id: d.original_id,
        reason: d.reason,
        delivery_count: d.delivery_count,
        fields: d.fields.into_iter().collect(),
        dead_lettered_at: Some(timestamp_ms(d.id.ms as i64)),
    }
}

/// An event of the attestation log as the API shows it.
pub fn event_to_proto(entry: &Entry, now_ms: i64) -> pb::AttestationEvent {
    use pb::AttestationEventType as T;
    let record = AttestationRecord::parse(&entry.fields);
    pb::AttestationEvent {
        event_id: entry.id.to_string(),
        r#type: match EventKind::parse(entry.field("type")) {
            EventKind::Issued => T::Issued,
            EventKind::Revoked => T::Revoked,
            EventKind::Unknown => T::Unspecified,
        } as i32,
        attestation: Some(attestation_to_proto(&record, now_ms)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::AttestationConfig;

    const NOW: i64 = 1_759_515_400_000;

    fn good() -> pb::SubmitVerificationRequest {
        pb::SubmitVerificationRequest {
            request_id: "r-1".into(),
            subject: "0xabc".into(),
            did_type: "did:pkh".into(),
            result: pb::VerificationResult::Passed as i32,
            evidence_hash: "ABC123".into(),
            verified_at: Some(timestamp_ms(NOW - 1000)),
        }
    }

    fn fields(r: pb::SubmitVerificationRequest) -> Vec<String> {
        let rules = model::Rules::new(&AttestationConfig::default());
        match submission(r, &rules, NOW) {
            Ok(_) => Vec::new(),
            Err(v) => v.0.into_iter().map(|v| v.field).collect(),
        }
    }

    #[test]
    fn a_good_submission_passes_and_lowers_the_hash() {
        let rules = model::Rules::new(&AttestationConfig::default());
        let v = submission(good(), &rules, NOW).expect("good");
        assert_eq!(v.evidence_hash, "abc123");
        assert_eq!(v.did_id, "did:pkh");
        assert_eq!(v.verified_ms, NOW - 1000);
    }

    #[test]
    fn every_bad_field_is_named() {
        let all_bad = pb::SubmitVerificationRequest {
            request_id: "a b".into(),
            subject: "0x:abc".into(),
            did_type: "did type".into(),
            result: 0,
            evidence_hash: "xyz".into(),
            verified_at: Some(timestamp_ms(NOW + 3_600_000)),
        };
        assert_eq!(
            fields(all_bad),
            [
                "request_id",
                "subject",
                "did_type",
                "result",
                "evidence_hash",
                "verified_at"
            ]
        );
        assert_eq!(
            fields(pb::SubmitVerificationRequest::default()),
            [
                "request_id",
                "subject",
                "did_type",
                "result",
                "evidence_hash",
                "verified_at"
            ]
        );
        let mut near = good();
        near.verified_at = Some(timestamp_ms(NOW + 30_000));
        assert!(fields(near).is_empty(), "within the clock skew");
    }

    #[test]
    fn list_tokens_and_status_list_ids() {
        let page = |token: &str| {
            list_page(&pb::ListAttestationsRequest {
                subject: "0xabc".into(),
                page_size: 0,
                page_token: token.into(),
            })
        };
        assert_eq!(page(""), Ok((None, DEFAULT_PAGE_SIZE)));
        assert_eq!(page("42"), Ok((Some(42), DEFAULT_PAGE_SIZE)));
        assert!(page("x").is_err());
        let id = |s: &str| {
            status_list_id(
                &pb::GetStatusListRequest {
                    status_list_id: s.into(),
                },
                "urn:openoes:status-list:",
            )
        };
        assert_eq!(id("3").as_deref(), Ok("3"));
        assert_eq!(id("urn:openoes:status-list:3").as_deref(), Ok("3"));
        assert!(id("").is_err() && id("a:b").is_err());
    }
}
