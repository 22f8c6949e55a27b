//! Typed records of the attestation pipeline: verification results (parsed
//! from stream entries another party writes, strictly: a result that
//! cannot be attested is refused with a reason, never defaulted),
//! attestation records, dead letters, and the rules every result obeys,
//! shared by SubmitVerification's input checks and the stream's parser.

use std::{collections::HashMap, fmt, time::Duration};

use crate::{
    config::AttestationConfig,
    streams::{Fields, StreamId},
    time::datetime,
    validate::{ID_RULE, clip, is_valid_id},
};

/// How far in the future a `verified_at` may be: producers' clocks drift
/// from ours by a little, never by more than this.
pub const MAX_CLOCK_SKEW: Duration = Duration::from_secs(60);

/// Longest did type name.
pub const MAX_DID_TYPE_LEN: usize = 64;

/// Longest evidence hash, in hex digits (64 bytes: SHA-512).
pub const MAX_EVIDENCE_HEX: usize = 128;

/// The wire version of results this code writes and reads (`v`, ext).
pub const WIRE_VERSION: &str = "1";

/// Most bytes of a producer's value a dead letter's reason repeats.
const ECHO: usize = 64;

/// The outcome of a verification, as the wire writes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// `verified`: the subject passed.
    Verified,
    /// `failed`: the subject did not.
    Failed,
}

impl Outcome {
    /// The wire word.
    pub fn word(self) -> &'static str {
        match self {
            Self::Verified => "verified",
            Self::Failed => "failed",
        }
    }

    /// The outcome of a wire word, if it is one (exactly, lower case).
    pub fn from_word(word: &str) -> Option<Self> {
        match word {
            "verified" => Some(Self::Verified),
            "failed" => Some(Self::Failed),
            _ => None,
        }
    }
}

/// One verification result, checked: what an attestation states.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verification {
    /// The producer's idempotency key, if it sent one.
    pub request_id: Option<String>,
    /// The subject (`user_wallet`).
    pub subject: String,
    /// The did type's name.
    pub did_type: String,
    /// The did type's code (`did_id`).
    pub did_id: String,
    /// The outcome.
    pub outcome: Outcome,
    /// Hex, lower case.
    pub evidence_hash: String,
    /// When the verification was done, unix ms.
    pub verified_ms: i64,
}

impl Verification {
    /// The digest of what the result states, to tell a repeat of a
    /// request_id (same digest) from its reuse for another result.
    pub fn digest(&self) -> String {
        let text = [
            self.subject.as_str(),
            &self.did_type,
            &self.did_id,
            self.outcome.word(),
            &self.evidence_hash,
            &self.verified_ms.to_string(),
        ]
        .join("\n");
        hex(&crypto_sha256(text.as_bytes()))
    }

    /// The stream fields SubmitVerification writes: the std shape plus
    /// request_id, did_type and v.
    pub fn entry_fields(&self) -> Vec<(&'static str, String)> {
        let mut fields = vec![
            ("user_wallet", self.subject.clone()),
            ("did_id", self.did_id.clone()),
            ("result", self.outcome.word().to_string()),
            ("evidence_hash", self.evidence_hash.clone()),
            ("verified_at", datetime::format_xsd(self.verified_ms)),
        ];
        if let Some(id) = &self.request_id {
            fields.push(("request_id", id.clone()));
        }
        fields.push(("did_type", self.did_type.clone()));
        fields.push(("v", WIRE_VERSION.to_string()));
        fields
    }
}

fn crypto_sha256(bytes: &[u8]) -> [u8; 32] {
    let digest = ring::digest::digest(&ring::digest::SHA256, bytes);
    let mut out = [0; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The id of the attestation of a result: a UUID (version 8, RFC 9562)
/// from SHA-256 of its idempotency key, the request_id or, without one, the
/// stream entry id. The same result always gets the same id, so a
/// redelivery finds the attestation it already has.
pub fn attestation_id(request_id: Option<&str>, entry_id: StreamId) -> String {
    let key = match request_id {
        Some(id) => format!("openoes-attestation\0request\0{id}"),
        None => format!("openoes-attestation\0entry\0{entry_id}"),
    };
    let digest = crypto_sha256(key.as_bytes());
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    bytes[6] = (bytes[6] & 0x0f) | 0x80; // version 8
    bytes[8] = (bytes[8] & 0x3f) | 0x80; // variant 10
    uuid::Uuid::from_bytes(bytes).to_string()
}

/// Why a result cannot be attested: a code and a description. Written to
/// the dead-letter stream as `CODE: description`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// Upper-snake code, e.g. `UNKNOWN_RESULT`.
    pub code: &'static str,
    /// What is wrong, with the offending value (cut).
    pub detail: String,
}

impl Rejection {
    fn new(code: &'static str, detail: impl Into<String>) -> Self {
        Self {
            code,
            detail: detail.into(),
        }
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.detail)
    }
}

/// Codes of [`Rejection`].
pub mod rejection {
    /// A required field is missing (or not text).
    pub const MISSING_FIELD: &str = "MISSING_FIELD";
    /// A field's value breaks its rule.
    pub const INVALID_FIELD: &str = "INVALID_FIELD";
    /// `result` is not `verified` or `failed`.
    pub const UNKNOWN_RESULT: &str = "UNKNOWN_RESULT";
    /// The did type is not one of the configured ones.
    pub const UNKNOWN_DID_TYPE: &str = "UNKNOWN_DID_TYPE";
    /// `verified_at` is not a time.
    pub const BAD_TIME: &str = "BAD_TIME";
    /// `verified_at` is in the future.
    pub const FUTURE_TIME: &str = "FUTURE_TIME";
    /// `v` names a version this code does not read.
    pub const UNSUPPORTED_VERSION: &str = "UNSUPPORTED_VERSION";
    /// The entry is larger than `attestation.max_entry_bytes`.
    pub const ENTRY_TOO_LARGE: &str = "ENTRY_TOO_LARGE";
    /// The request_id was attested before for another result.
    pub const REQUEST_ID_REUSED: &str = "REQUEST_ID_REUSED";
}

// === the rules of a result ===

/// What the configuration says about results and their credentials.
#[derive(Debug, Clone)]
pub struct Rules {
    /// Configured did types by name: (did_id, validity). Empty: any.
    by_name: HashMap<String, (String, Duration)>,
    /// Configured did types by did_id: name.
    by_code: HashMap<String, String>,
    default_validity: Duration,
    /// Largest entry read.
    pub max_entry_bytes: usize,
}

impl Rules {
    /// The rules of `config`.
    pub fn new(config: &AttestationConfig) -> Self {
        let mut by_name = HashMap::new();
        let mut by_code = HashMap::new();
        for t in &config.did_types {
            let validity = t.validity.unwrap_or(config.default_validity);
            by_name.insert(t.name.clone(), (t.did_id.clone(), validity));
            by_code.insert(t.did_id.clone(), t.name.clone());
        }
        Self {
            by_name,
            by_code,
            default_validity: config.default_validity,
            max_entry_bytes: config.max_entry_bytes,
        }
    }

    /// True if did types are an allow-list.
    pub fn restricts_did_types(&self) -> bool {
        !self.by_name.is_empty()
    }

    /// The configured names, for messages.
    pub fn did_type_names(&self) -> String {
        let mut names: Vec<_> = self.by_name.keys().map(String::as_str).collect();
        names.sort_unstable();
        names.join(", ")
    }

    /// The did_id of a did type named by SubmitVerification: the configured
    /// one, or the name itself when any did type goes; `None` if the name
    /// is not configured.
    pub fn did_id_of(&self, did_type: &str) -> Option<String> {
        if !self.restricts_did_types() {
            return Some(did_type.to_string());
        }
        self.by_name.get(did_type).map(|(code, _)| code.clone())
    }

    /// How long a credential of `did_type` is valid.
    pub fn validity(&self, did_type: &str) -> Duration {
        self.by_name
            .get(did_type)
            .map_or(self.default_validity, |(_, v)| *v)
    }

    /// The (did_type, did_id) of an entry that sent `did_type` (ext,
    /// maybe empty) and `did_id` (std).
    fn resolve(&self, did_type: &str, did_id: &str) -> Result<(String, String), Rejection> {
        if !self.restricts_did_types() {
            let name = if did_type.is_empty() {
                did_id
            } else {
                did_type
            };
            return Ok((name.to_string(), did_id.to_string()));
        }
        if did_type.is_empty() {
            return match self.by_code.get(did_id) {
                Some(name) => Ok((name.clone(), did_id.to_string())),
                None => Err(Rejection::new(
                    rejection::UNKNOWN_DID_TYPE,
                    format!(
                        "did_id {} is not the code of a configured did type ({})",
                        clip(did_id, ECHO),
                        self.did_type_names()
                    ),
                )),
            };
        }
        match self.by_name.get(did_type) {
            None => Err(Rejection::new(
                rejection::UNKNOWN_DID_TYPE,
                format!(
                    "did_type {} is not configured ({})",
                    clip(did_type, ECHO),
                    self.did_type_names()
                ),
            )),
            Some((code, _)) if code != did_id => Err(Rejection::new(
                rejection::INVALID_FIELD,
                format!(
                    "did_id {} is not the code of did_type {} ({code:?})",
                    clip(did_id, ECHO),
                    clip(did_type, ECHO)
                ),
            )),
            Some(_) => Ok((did_type.to_string(), did_id.to_string())),
        }
    }
}

/// The rule of a subject (a wallet address): an id by the protocol's rule
/// (it is part of a key). Compared byte for byte: `0xAB` and `0xab` are two
/// subjects.
pub fn check_subject(subject: &str) -> Result<(), String> {
    if is_valid_id(subject) {
        Ok(())
    } else {
        Err(ID_RULE.to_string())
    }
}

/// The rule of a did type name, and of a did_id (without configured did
/// types the two are the same string).
pub fn check_did_type(did_type: &str) -> Result<(), String> {
    let ok = (1..=MAX_DID_TYPE_LEN).contains(&did_type.len())
        && did_type
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._:-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "must be 1-{MAX_DID_TYPE_LEN} characters of [A-Za-z0-9._:-]"
        ))
    }
}

/// The rule of an evidence hash; returns it in lower case.
pub fn check_evidence_hash(hash: &str) -> Result<String, String> {
    let ok = (2..=MAX_EVIDENCE_HEX).contains(&hash.len())
        && hash.len().is_multiple_of(2)
        && hash.bytes().all(|b| b.is_ascii_hexdigit());
    if ok {
        Ok(hash.to_ascii_lowercase())
    } else {
        Err(format!(
            "must be hex: an even number of 2-{MAX_EVIDENCE_HEX} digits 0-9a-f"
        ))
    }
}

/// The rule of a verification time: not more than [`MAX_CLOCK_SKEW`] after
/// `now_ms`.
pub fn check_not_future(verified_ms: i64, now_ms: i64) -> Result<(), String> {
    if verified_ms > now_ms + MAX_CLOCK_SKEW.as_millis() as i64 {
        Err(format!(
            "{} is in the future (more than {}s after now, {})",
            datetime::format_xsd(verified_ms),
            MAX_CLOCK_SKEW.as_secs(),
            datetime::format_xsd(now_ms)
        ))
    } else {
        Ok(())
    }
}

/// Parses one entry of `verification_stream`, written by any producer:
/// every field is checked, nothing defaults (see the module docs).
pub fn parse_entry(fields: &Fields, rules: &Rules, now_ms: i64) -> Result<Verification, Rejection> {
    if fields.byte_len() > rules.max_entry_bytes {
        return Err(Rejection::new(
            rejection::ENTRY_TOO_LARGE,
            format!(
                "{} bytes, more than attestation.max_entry_bytes ({})",
                fields.byte_len(),
                rules.max_entry_bytes
            ),
        ));
    }
    let required = |name: &'static str| {
        fields
            .get(name)
            .filter(|v| !v.is_empty())
            .ok_or_else(|| Rejection::new(rejection::MISSING_FIELD, format!("{name} is missing")))
    };
    let invalid = |name: &str, value: &str, why: String| {
        Rejection::new(
            rejection::INVALID_FIELD,
            format!("{name} {} {why}", clip(value, ECHO)),
        )
    };
    if let Some(v) = fields.raw("v")
        && v != WIRE_VERSION.as_bytes()
    {
        return Err(Rejection::new(
            rejection::UNSUPPORTED_VERSION,
            format!(
                "v {} is not {WIRE_VERSION}",
                clip(&String::from_utf8_lossy(v), ECHO)
            ),
        ));
    }
    let subject = required("user_wallet")?;
    check_subject(subject).map_err(|why| invalid("user_wallet", subject, why))?;
    let did_id = required("did_id")?;
    check_did_type(did_id).map_err(|why| invalid("did_id", did_id, why))?;
    let did_type = match fields.raw("did_type") {
        None => "",
        Some(raw) => {
            let text = std::str::from_utf8(raw).unwrap_or("\u{fffd}");
            check_did_type(text).map_err(|why| invalid("did_type", text, why))?;
            text
        }
    };
    let result = required("result")?;
    let outcome = Outcome::from_word(result).ok_or_else(|| {
        Rejection::new(
            rejection::UNKNOWN_RESULT,
            format!("result {} is not verified or failed", clip(result, ECHO)),
        )
    })?;
    let evidence = required("evidence_hash")?;
    let evidence_hash =
        check_evidence_hash(evidence).map_err(|why| invalid("evidence_hash", evidence, why))?;
    let at = required("verified_at")?;
    let verified_ms = datetime::parse_iso8601(at).map_err(|why| {
        Rejection::new(
            rejection::BAD_TIME,
            format!("verified_at {} {why}", clip(at, ECHO)),
        )
    })?;
    check_not_future(verified_ms, now_ms)
        .map_err(|why| Rejection::new(rejection::FUTURE_TIME, format!("verified_at {why}")))?;
    let request_id = match fields.raw("request_id") {
        None => None,
        Some(raw) => {
            let text = std::str::from_utf8(raw).unwrap_or("\u{fffd}");
            if !is_valid_id(text) {
                return Err(invalid("request_id", text, ID_RULE.into()));
            }
            Some(text.to_string())
        }
    };
    let (did_type, did_id) = rules.resolve(did_type, did_id)?;
    Ok(Verification {
        request_id,
        subject: subject.to_string(),
        did_type,
        did_id,
        outcome,
        evidence_hash,
        verified_ms,
    })
}

// === attestations ===

/// An attestation's status as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoredStatus {
    /// In force (unless past its expiry).
    Active,
    /// Revoked by the issuer.
    Revoked,
}

/// An attestation as stored on M (and carried by its events).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttestationRecord {
    /// Its id.
    pub attestation_id: String,
    /// The result's request_id, or "".
    pub request_id: String,
    /// The result's stream entry id.
    pub entry_id: String,
    /// The subject.
    pub subject: String,
    /// The did type.
    pub did_type: String,
    /// The did type's code.
    pub did_id: String,
    /// The outcome attested (None if the stored word is unknown).
    pub outcome: Option<Outcome>,
    /// Hex.
    pub evidence_hash: String,
    /// Unix ms.
    pub verified_ms: i64,
    /// When it was signed, unix ms.
    pub issued_ms: i64,
    /// Its validUntil, unix ms.
    pub expires_ms: i64,
    /// The signing key's verification method.
    pub key_id: String,
    /// Its status list.
    pub list_id: String,
    /// Its index there.
    pub list_index: u64,
    /// The credential as issued (JSON).
    pub credential: String,
    /// [`Verification::digest`] of the result.
    pub digest: String,
    /// Stored status.
    pub status: StoredStatus,
    /// When revoked, unix ms.
    pub revoked_ms: Option<i64>,
    /// Why revoked.
    pub revocation_reason: String,
    /// Issue sequence: the subject index's score, the list's page token.
    pub seq: u64,
}

impl AttestationRecord {
    /// The record's fields as the issuing script stores them (the sequence
    /// is added by the script).
    pub fn fields(&self) -> Vec<(&'static str, String)> {
        vec![
            ("attestation_id", self.attestation_id.clone()),
            ("request_id", self.request_id.clone()),
            ("entry_id", self.entry_id.clone()),
            ("subject", self.subject.clone()),
            ("did_type", self.did_type.clone()),
            ("did_id", self.did_id.clone()),
            ("result", self.outcome.map_or("", Outcome::word).to_string()),
            ("evidence_hash", self.evidence_hash.clone()),
            ("verified_ms", self.verified_ms.to_string()),
            ("issued_ms", self.issued_ms.to_string()),
            ("expires_ms", self.expires_ms.to_string()),
            ("key_id", self.key_id.clone()),
            ("list_id", self.list_id.clone()),
            ("list_index", self.list_index.to_string()),
            ("credential", self.credential.clone()),
            ("digest", self.digest.clone()),
            ("status", "active".to_string()),
        ]
    }

    /// Parses a record (a hash we wrote, or an event carrying one).
    pub fn parse(f: &Fields) -> Self {
        let int = |name: &str| f.text(name).parse::<i64>().unwrap_or_default();
        Self {
            attestation_id: f.text("attestation_id").into(),
            request_id: f.text("request_id").into(),
            entry_id: f.text("entry_id").into(),
            subject: f.text("subject").into(),
            did_type: f.text("did_type").into(),
            did_id: f.text("did_id").into(),
            outcome: Outcome::from_word(f.text("result")),
            evidence_hash: f.text("evidence_hash").into(),
            verified_ms: int("verified_ms"),
            issued_ms: int("issued_ms"),
            expires_ms: int("expires_ms"),
            key_id: f.text("key_id").into(),
            list_id: f.text("list_id").into(),
            list_index: f.text("list_index").parse().unwrap_or_default(),
            credential: f.text("credential").into(),
            digest: f.text("digest").into(),
            status: if f.text("status") == "revoked" {
                StoredStatus::Revoked
            } else {
                StoredStatus::Active
            },
            revoked_ms: f.get("revoked_ms").and_then(|t| t.parse().ok()),
            revocation_reason: f.text("revocation_reason").into(),
            seq: f.text("seq").parse().unwrap_or_default(),
        }
    }
}

/// What an attestation event says happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// Issued.
    Issued,
    /// Revoked.
    Revoked,
    /// Another word (a newer writer's).
    Unknown,
}

impl EventKind {
    /// The kind of an event's `type` field.
    pub fn parse(word: &str) -> Self {
        match word {
            "issued" => Self::Issued,
            "revoked" => Self::Revoked,
            _ => Self::Unknown,
        }
    }
}

/// Most fields of a dead letter shown, and most bytes of each value: a dead
/// letter can hold anything a producer wrote.
pub const MAX_DEAD_LETTER_FIELDS: usize = 64;
/// See [`MAX_DEAD_LETTER_FIELDS`].
pub const MAX_DEAD_LETTER_VALUE: usize = 1024;

/// A result that was not attested, from `verification_stream:dlq`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    /// Its id in the dead-letter stream.
    pub id: StreamId,
    /// Its id in the verification stream.
    pub original_id: String,
    /// Why.
    pub reason: String,
    /// Deliveries before it was given up.
    pub delivery_count: u64,
    /// The producer's fields (bounded, non-text escaped).
    pub fields: Vec<(String, String)>,
}

impl DeadLetter {
    /// Parses a dead-letter entry (the bridge's fields, then the result's).
    pub fn parse(id: StreamId, f: &Fields) -> Self {
        const OWN: [&str; 4] = ["original_id", "reason", "delivery_count", "group"];
        let show = |bytes: &[u8]| {
            crate::validate::cut(&String::from_utf8_lossy(bytes), MAX_DEAD_LETTER_VALUE)
        };
        Self {
            id,
            original_id: f.text("original_id").into(),
            reason: show(f.raw("reason").unwrap_or_default()),
            delivery_count: f.text("delivery_count").parse().unwrap_or_default(),
            fields: f
                .pairs()
                .filter(|(k, _)| !OWN.iter().any(|own| own.as_bytes() == *k))
                .take(MAX_DEAD_LETTER_FIELDS)
                .map(|(k, v)| (show(k), show(v)))
                .collect(),
        }
    }
}

/// A bounded stand-in for an entry too large to copy to the dead-letter
/// stream: its rendering, cut.
pub fn oversize_stand_in(fields: &Fields) -> Fields {
    Fields::from_pairs([("entry_cut", fields.describe(MAX_DEAD_LETTER_VALUE))])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::DidType;

    fn entry(pairs: &[(&str, &str)]) -> Fields {
        Fields::from_pairs(pairs.iter().copied())
    }

    const NOW: i64 = 1_759_515_400_000;

    fn foreign() -> Vec<(&'static str, &'static str)> {
        vec![
            ("user_wallet", "0xAbC123"),
            ("did_id", "0"),
            ("result", "verified"),
            ("evidence_hash", "abc123"),
            ("verified_at", "2025-10-03T18:15:10"),
        ]
    }

    #[test]
    fn a_foreign_producers_entry_parses_with_its_naive_time_as_utc() {
        let rules = Rules::new(&AttestationConfig::default());
        let v = parse_entry(&entry(&foreign()), &rules, NOW).expect("parses");
        assert_eq!(v.subject, "0xAbC123");
        assert_eq!((v.did_type.as_str(), v.did_id.as_str()), ("0", "0"));
        assert_eq!(v.outcome, Outcome::Verified);
        assert_eq!(v.verified_ms, 1_759_515_310_000);
        assert_eq!(v.request_id, None);
    }

    #[test]
    fn what_submit_writes_parses_back_to_the_same_result() {
        let rules = Rules::new(&AttestationConfig::default());
        let v = Verification {
            request_id: Some("r-1".into()),
            subject: "0xabc".into(),
            did_type: "did:pkh".into(),
            did_id: "did:pkh".into(),
            outcome: Outcome::Failed,
            evidence_hash: "00ff".into(),
            verified_ms: 1_759_515_310_123,
        };
        let fields = Fields::from_pairs(v.entry_fields());
        assert_eq!(parse_entry(&fields, &rules, NOW), Ok(v));
    }

    #[test]
    fn every_bad_entry_is_refused_with_its_reason() {
        let rules = Rules::new(&AttestationConfig::default());
        let with = |name: &'static str, value: &'static str| {
            let mut pairs = foreign();
            pairs.retain(|(k, _)| *k != name);
            if !value.is_empty() {
                pairs.push((name, value));
            }
            parse_entry(&entry(&pairs), &rules, NOW)
                .map(drop)
                .map_err(|r| r.code)
        };
        use rejection::*;
        assert_eq!(with("result", "maybe"), Err(UNKNOWN_RESULT));
        assert_eq!(with("result", "Verified"), Err(UNKNOWN_RESULT));
        assert_eq!(with("result", ""), Err(MISSING_FIELD));
        assert_eq!(with("user_wallet", ""), Err(MISSING_FIELD));
        assert_eq!(with("user_wallet", "0x ab"), Err(INVALID_FIELD));
        assert_eq!(with("did_id", ""), Err(MISSING_FIELD));
        assert_eq!(with("evidence_hash", "xyz"), Err(INVALID_FIELD));
        assert_eq!(with("evidence_hash", "abc"), Err(INVALID_FIELD));
        assert_eq!(with("verified_at", "yesterday"), Err(BAD_TIME));
        assert_eq!(
            with("verified_at", "2999-01-01T00:00:00Z"),
            Err(FUTURE_TIME)
        );
        assert_eq!(with("v", "2"), Err(UNSUPPORTED_VERSION));
        assert_eq!(with("v", "1"), Ok(()));
        assert_eq!(with("request_id", "a:b"), Err(INVALID_FIELD));
        assert_eq!(with("did_type", "bad type"), Err(INVALID_FIELD));
        let mut pairs = foreign();
        let big = "f".repeat(20_000);
        pairs.push(("padding", big.as_str()));
        assert_eq!(
            parse_entry(&entry(&pairs), &rules, NOW).map_err(|r| r.code),
            Err(ENTRY_TOO_LARGE)
        );
        // Non-UTF-8 in a required field is a missing text field.
        let mut raw = entry(&foreign())
            .pairs()
            .map(|(k, v)| (k.to_vec(), v.to_vec()))
            .collect::<Vec<_>>();
        raw.retain(|(k, _)| k != b"result");
        raw.push((b"result".to_vec(), vec![0xff, 0xfe]));
        assert_eq!(
            parse_entry(&Fields::new(raw), &rules, NOW).map_err(|r| r.code),
            Err(MISSING_FIELD)
        );
    }

    #[test]
    fn configured_did_types_are_an_allow_list_with_codes() {
        let config = AttestationConfig {
            did_types: vec![DidType {
                name: "kyc".into(),
                did_id: "0".into(),
                validity: Some(Duration::from_secs(86_400)),
            }],
            ..AttestationConfig::default()
        };
        let rules = Rules::new(&config);
        let v = parse_entry(&entry(&foreign()), &rules, NOW).expect("did_id 0 is kyc");
        assert_eq!((v.did_type.as_str(), v.did_id.as_str()), ("kyc", "0"));
        assert_eq!(rules.validity("kyc"), Duration::from_secs(86_400));
        assert_eq!(rules.did_id_of("kyc").as_deref(), Some("0"));
        assert_eq!(rules.did_id_of("aml"), None);
        let mut pairs = foreign();
        pairs[1] = ("did_id", "7");
        let r = parse_entry(&entry(&pairs), &rules, NOW).expect_err("unknown code");
        assert_eq!(r.code, rejection::UNKNOWN_DID_TYPE);
        assert!(r.to_string().contains("kyc"), "{r}");
        let mut pairs = foreign();
        pairs.push(("did_type", "aml"));
        assert_eq!(
            parse_entry(&entry(&pairs), &rules, NOW).map_err(|r| r.code),
            Err(rejection::UNKNOWN_DID_TYPE)
        );
        let mut pairs = foreign();
        pairs[1] = ("did_id", "1");
        pairs.push(("did_type", "kyc"));
        assert_eq!(
            parse_entry(&entry(&pairs), &rules, NOW).map_err(|r| r.code),
            Err(rejection::INVALID_FIELD)
        );
    }

    #[test]
    fn attestation_ids_are_uuids_fixed_by_the_idempotency_key() {
        let entry_id = StreamId { ms: 5, seq: 1 };
        let a = attestation_id(Some("r-1"), entry_id);
        assert_eq!(a, attestation_id(Some("r-1"), StreamId { ms: 9, seq: 0 }));
        assert_ne!(a, attestation_id(Some("r-2"), entry_id));
        assert_ne!(a, attestation_id(None, entry_id));
        let parsed = uuid::Uuid::parse_str(&a).expect("uuid");
        assert_eq!(parsed.get_version_num(), 8);
        assert!(is_valid_id(&a));
    }

    #[test]
    fn the_digest_tells_a_repeat_from_a_reuse() {
        let rules = Rules::new(&AttestationConfig::default());
        let v = parse_entry(&entry(&foreign()), &rules, NOW).expect("parses");
        let mut other = v.clone();
        assert_eq!(v.digest(), other.digest());
        other.outcome = Outcome::Failed;
        assert_ne!(v.digest(), other.digest());
    }
}
