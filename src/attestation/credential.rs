//! The credentials themselves: the issuer's keys, an attestation as a W3C
//! Verifiable Credential (Data Model 2.0) with an `eddsa-jcs-2022` Data
//! Integrity proof, the Bitstring Status List credential, and the offline
//! checks of a credential. All signing and hashing is
//! [`crate::crypto::data_integrity`]'s; this file only says what the
//! documents hold.
//!
//! An attestation:
//!
//! ```json
//! { "@context": ["https://www.w3.org/ns/credentials/v2"],
//!   "id": "urn:uuid:<attestation id>",
//!   "type": ["VerifiableCredential", "VerificationResultCredential"],
//!   "issuer": "did:key:z6Mk...",
//!   "validFrom": "<verified_at>", "validUntil": "<verified_at + validity>",
//!   "credentialSubject": { "wallet": "0x...", "didType": "...", "didId": "...",
//!     "verificationResult": "verified", "evidenceHash": "...", "verifiedAt": "..." },
//!   "credentialStatus": { "id": "<list url>#<index>", "type": "BitstringStatusListEntry",
//!     "statusPurpose": "revocation", "statusListIndex": "<index>",
//!     "statusListCredential": "<list url>" },
//!   "proof": { "type": "DataIntegrityProof", "cryptosuite": "eddsa-jcs-2022",
//!     "created": "<issued>", "verificationMethod": "did:key:z6Mk...#z6Mk...",
//!     "proofPurpose": "assertionMethod", "@context": [...], "proofValue": "z..." } }
//! ```
//!
//! Every value is a string (JCS writes numbers as doubles; an index or an
//! amount must never round). The terms beyond the VC 2.0 context map to its
//! `@vocab`, so JSON-LD processors read them without a context of ours.

use std::{path::Path, sync::Arc};

use serde_json::{Value, json};

use super::model::Verification;
use crate::{
    config::AttestationConfig,
    crypto::{
        data_integrity::{self, DataIntegrityError, ProofOptions},
        ed25519::PublicKey,
        keys::{KeyError, ServerKey},
        status_list::{StatusList, StatusListError},
    },
    time::datetime,
};

/// The VC Data Model 2.0 context, the only one our credentials use.
pub const VC_V2_CONTEXT: &str = "https://www.w3.org/ns/credentials/v2";
/// Our credential type, beside `VerifiableCredential`.
pub const CREDENTIAL_TYPE: &str = "VerificationResultCredential";
/// What our status lists record.
pub const STATUS_PURPOSE: &str = "revocation";
/// The proof purpose of every proof we make.
pub const PROOF_PURPOSE: &str = "assertionMethod";

/// One issuer key.
#[derive(Debug)]
pub struct IssuerKey {
    key: ServerKey,
    /// The verification method, `did:key:z6Mk...#z6Mk...`: the key id.
    pub key_id: String,
    /// The did:key, the issuer of what it signs.
    pub did: String,
    /// True for the key that signs new credentials.
    pub active: bool,
}

impl IssuerKey {
    fn new(key: ServerKey, active: bool) -> Self {
        Self {
            key_id: key.verification_method(),
            did: key.did_key(),
            key,
            active,
        }
    }

    /// The Ed25519 public key.
    pub fn public_key(&self) -> PublicKey {
        self.key.public_key()
    }

    /// The multibase public key, `z6Mk...` (the did:key's fragment).
    pub fn multibase(&self) -> &str {
        self.key_id.rsplit('#').next().unwrap_or_default()
    }

    fn sign(&self, document: &Value, created_ms: i64) -> Result<Value, DataIntegrityError> {
        data_integrity::add_proof(
            document,
            self.key.signing_key(),
            &ProofOptions {
                verification_method: self.key_id.clone(),
                proof_purpose: PROOF_PURPOSE.into(),
                created: Some(datetime::format_xsd(created_ms)),
            },
        )
    }
}

/// The issuer's keys: the active one first, then the retired ones.
#[derive(Debug, Clone)]
pub struct Issuer {
    keys: Arc<Vec<IssuerKey>>,
}

impl Issuer {
    /// The keys of `config`, read from their files; `None` if no key file
    /// is configured.
    pub fn load(config: &AttestationConfig) -> Result<Option<Self>, KeyError> {
        if config.key_file.is_empty() {
            return Ok(None);
        }
        let mut keys = vec![IssuerKey::new(
            ServerKey::read(Path::new(&config.key_file))?,
            true,
        )];
        for file in &config.retired_key_files {
            let key = IssuerKey::new(ServerKey::read(Path::new(file))?, false);
            if !keys.iter().any(|k| k.key_id == key.key_id) {
                keys.push(key);
            }
        }
        Ok(Some(Self {
            keys: Arc::new(keys),
        }))
    }

    /// Issuer of these keys (tests and tools), the first active.
    pub fn from_keys(active: ServerKey, retired: Vec<ServerKey>) -> Self {
        let mut keys = vec![IssuerKey::new(active, true)];
        keys.extend(retired.into_iter().map(|k| IssuerKey::new(k, false)));
        Self {
            keys: Arc::new(keys),
        }
    }

    /// The key that signs new credentials.
    pub fn active(&self) -> &IssuerKey {
        &self.keys[0]
    }

    /// Every key, the active one first.
    pub fn keys(&self) -> &[IssuerKey] {
        &self.keys
    }

    /// A key by its id (verification method) or its did:key.
    pub fn key(&self, id: &str) -> Option<&IssuerKey> {
        self.keys.iter().find(|k| k.key_id == id || k.did == id)
    }
}

/// Where an attestation's revocation is recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusEntry {
    /// The list's id.
    pub list_id: String,
    /// The bit's index.
    pub index: u64,
}

/// A status list's URL: the configured prefix and its id.
pub fn list_url(prefix: &str, list_id: &str) -> String {
    format!("{prefix}{list_id}")
}

/// What [`attest`] signs.
pub struct Attestation<'a> {
    /// The attestation's id.
    pub attestation_id: &'a str,
    /// The result.
    pub verification: &'a Verification,
    /// Its status list entry.
    pub status: &'a StatusEntry,
    /// The status list URL prefix.
    pub list_prefix: &'a str,
    /// validUntil, unix ms.
    pub expires_ms: i64,
    /// When it is signed (the proof's `created`), unix ms.
    pub issued_ms: i64,
}

/// The attestation's credential, signed by `key`: compact JSON.
pub fn attest(key: &IssuerKey, a: &Attestation<'_>) -> Result<String, DataIntegrityError> {
    let v = a.verification;
    let url = list_url(a.list_prefix, &a.status.list_id);
    let index = a.status.index.to_string();
    let document = json!({
        "@context": [VC_V2_CONTEXT],
        "id": format!("urn:uuid:{}", a.attestation_id),
        "type": ["VerifiableCredential", CREDENTIAL_TYPE],
        "issuer": key.did,
        "validFrom": datetime::format_xsd(v.verified_ms),
        "validUntil": datetime::format_xsd(a.expires_ms),
        "credentialSubject": {
            "wallet": v.subject,
            "didType": v.did_type,
            "didId": v.did_id,
            "verificationResult": v.outcome.word(),
            "evidenceHash": v.evidence_hash,
            "verifiedAt": datetime::format_xsd(v.verified_ms),
        },
        "credentialStatus": {
            "id": format!("{url}#{index}"),
            "type": "BitstringStatusListEntry",
            "statusPurpose": STATUS_PURPOSE,
            "statusListIndex": index,
            "statusListCredential": url,
        },
    });
    let signed = key.sign(&document, a.issued_ms)?;
    Ok(signed.to_string())
}

/// Why a status list credential could not be made.
#[derive(Debug, thiserror::Error)]
pub enum StatusListCredentialError {
    /// The list.
    #[error(transparent)]
    List(#[from] StatusListError),
    /// The proof.
    #[error(transparent)]
    Proof(#[from] DataIntegrityError),
}

/// The Bitstring Status List credential of a list: `size` bits, those of
/// `bits` (Redis's bitmap, shorter when its last bits are all 0) set,
/// signed by `key` at `signed_ms`.
pub fn status_list_credential(
    key: &IssuerKey,
    url: &str,
    size: usize,
    bits: &[u8],
    signed_ms: i64,
) -> Result<String, StatusListCredentialError> {
    let mut list = StatusList::with_len(size)?;
    for (byte_index, byte) in bits.iter().enumerate().filter(|(_, b)| **b != 0) {
        for bit in 0..8 {
            if byte & (0x80 >> bit) != 0 {
                list.set(byte_index * 8 + bit, true)?;
            }
        }
    }
    let document = json!({
        "@context": [VC_V2_CONTEXT],
        "id": url,
        "type": ["VerifiableCredential", "BitstringStatusListCredential"],
        "issuer": key.did,
        "validFrom": datetime::format_xsd(signed_ms),
        "credentialSubject": {
            "id": format!("{url}#list"),
            "type": "BitstringStatusList",
            "statusPurpose": STATUS_PURPOSE,
            "encodedList": list.encode()?,
        },
    });
    Ok(key.sign(&document, signed_ms)?.to_string())
}

/// The hash data a credential's proof signs and the signature: what the
/// API shows as `payload` and `signature`. `None` if the credential has no
/// proof of ours.
pub fn signed_parts(credential: &str) -> Option<(Vec<u8>, Vec<u8>)> {
    let mut document: Value = serde_json::from_str(credential).ok()?;
    let mut proof = document.as_object_mut()?.remove("proof")?;
    let value = proof.as_object_mut()?.remove("proofValue")?;
    let signature = bs58::decode(value.as_str()?.strip_prefix('z')?)
        .into_vec()
        .ok()?;
    let hash = data_integrity::hash_data(&document, &proof).ok()?;
    Some((hash.to_vec(), signature))
}

/// A check a credential can fail (as the API names them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// Not signed by a key known here, or the issuer is not that key's.
    Key,
    /// The signature does not verify.
    Signature,
    /// Outside its validity period.
    Expiry,
    /// Revoked (or its status cannot be read).
    Revocation,
}

/// The offline part of a verification: key, signature, expiry; and where
/// the revocation status is, for the caller to read.
#[derive(Debug, Clone, Default)]
pub struct OfflineVerdict {
    /// The failed checks and why.
    pub failed: Vec<(Check, String)>,
    /// The status entry, if the credential names one of our lists.
    pub status: Option<StatusEntry>,
    /// The attestation id, from the credential's `urn:uuid:` id.
    pub attestation_id: Option<String>,
}

/// How much later than now a `validFrom` may be before the credential is
/// "not yet valid": the clock skew results may have.
const VALID_FROM_SKEW_MS: i64 = super::model::MAX_CLOCK_SKEW.as_millis() as i64;

/// Checks a credential's key, signature and validity period at `now_ms`,
/// and finds its status entry in our lists (prefix `list_prefix`).
pub fn verify_offline(
    issuer: &Issuer,
    credential: &Value,
    list_prefix: &str,
    now_ms: i64,
) -> OfflineVerdict {
    let mut verdict = OfflineVerdict::default();
    let text = |v: &Value, name: &str| v.get(name).and_then(Value::as_str).map(str::to_string);
    let method = credential
        .get("proof")
        .and_then(|p| text(p, "verificationMethod"));
    match method.as_deref().and_then(|m| issuer.key(m)) {
        None => verdict.failed.push((
            Check::Key,
            format!(
                "the proof's verification method {} is not an issuer key of this gateway",
                crate::validate::echo(method.as_deref().unwrap_or("(none)"))
            ),
        )),
        Some(key) => {
            if text(credential, "issuer").as_deref() != Some(key.did.as_str()) {
                verdict.failed.push((
                    Check::Key,
                    "the issuer is not the did:key of the key that signed".into(),
                ));
            }
            if let Err(e) = data_integrity::verify_proof_with_key(credential, &key.public_key()) {
                verdict.failed.push((Check::Signature, e.to_string()));
            }
        }
    }
    let until = text(credential, "validUntil").map(|t| datetime::parse_xsd(&t));
    let from = text(credential, "validFrom").map(|t| datetime::parse_xsd(&t));
    match (from, until) {
        (Some(None), _) | (_, Some(None)) => verdict.failed.push((
            Check::Expiry,
            "validFrom or validUntil is not a time".into(),
        )),
        (_, Some(Some(until))) if until < now_ms => verdict.failed.push((
            Check::Expiry,
            format!("expired at {}", datetime::format_xsd(until)),
        )),
        (Some(Some(from)), _) if from > now_ms + VALID_FROM_SKEW_MS => verdict.failed.push((
            Check::Expiry,
            format!("not valid before {}", datetime::format_xsd(from)),
        )),
        _ => {}
    }
    let status = credential.get("credentialStatus");
    let entry = status.and_then(|s| {
        let url = text(s, "statusListCredential")?;
        let list_id = url.strip_prefix(list_prefix)?.to_string();
        let index = text(s, "statusListIndex")?.parse().ok()?;
        (text(s, "type").as_deref() == Some("BitstringStatusListEntry")
            && text(s, "statusPurpose").as_deref() == Some(STATUS_PURPOSE)
            && crate::validate::is_valid_id(&list_id))
        .then_some(StatusEntry { list_id, index })
    });
    if entry.is_none() {
        verdict.failed.push((
            Check::Revocation,
            "no revocation entry in a status list of this gateway".into(),
        ));
    }
    verdict.status = entry;
    verdict.attestation_id = text(credential, "id")
        .and_then(|id| id.strip_prefix("urn:uuid:").map(str::to_string))
        .filter(|id| crate::validate::is_valid_id(id));
    verdict
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{attestation::model::Outcome, crypto::note::NoteSigner};

    fn key(seed: u8) -> ServerKey {
        let signing = crate::crypto::ed25519::SigningKey::from_seed(&[seed; 32]).expect("key");
        ServerKey::from_signer(
            NoteSigner::new("openoes.test/attestation", signing).expect("signer"),
        )
    }

    fn verification() -> Verification {
        Verification {
            request_id: Some("r-1".into()),
            subject: "0xabc".into(),
            did_type: "kyc".into(),
            did_id: "0".into(),
            outcome: Outcome::Verified,
            evidence_hash: "abc123".into(),
            verified_ms: 1_759_515_310_000,
        }
    }

    fn issue(issuer: &Issuer, expires_ms: i64) -> Value {
        let v = verification();
        let status = StatusEntry {
            list_id: "1".into(),
            index: 7,
        };
        let json = attest(
            issuer.active(),
            &Attestation {
                attestation_id: "2c5ea4c0-4067-8bcd-8000-000000000000",
                verification: &v,
                status: &status,
                list_prefix: "urn:openoes:status-list:",
                expires_ms,
                issued_ms: 1_759_515_311_000,
            },
        )
        .expect("signs");
        serde_json::from_str(&json).expect("json")
    }

    /// The signing path is the crypto module's, which reproduces the
    /// w3c/vc-di-eddsa test vector: with the vector's key, document and
    /// options, the key wrapper used here gives the vector's proofValue.
    #[test]
    fn our_signing_path_reproduces_the_official_vector() {
        let read = |name: &str| -> Value {
            let path = format!(
                "{}/src/crypto/testdata/vc-di-eddsa/{name}",
                env!("CARGO_MANIFEST_DIR")
            );
            serde_json::from_str(&std::fs::read_to_string(path).expect("vector")).expect("json")
        };
        let pair = read("keyPair.json");
        let private = pair["privateKeyMultibase"].as_str().expect("private");
        let bytes = bs58::decode(&private[1..]).into_vec().expect("base58");
        let seed: [u8; 32] = bytes[2..].try_into().expect("seed");
        let signing = crate::crypto::ed25519::SigningKey::from_seed(&seed).expect("key");
        let key = IssuerKey::new(
            ServerKey::from_signer(NoteSigner::new("vector", signing).expect("signer")),
            true,
        );
        assert_eq!(key.multibase(), pair["publicKeyMultibase"]);
        let unsigned = read("unsigned.json");
        let signed = data_integrity::add_proof(
            &unsigned,
            key.key.signing_key(),
            &ProofOptions {
                verification_method: key.key_id.clone(),
                proof_purpose: PROOF_PURPOSE.into(),
                created: Some("2023-02-24T23:36:38Z".into()),
            },
        )
        .expect("signs");
        assert_eq!(signed, read("eddsa-jcs-2022/signedJCS.json"));
    }

    #[test]
    fn an_attestation_holds_strings_only_and_verifies() {
        let issuer = Issuer::from_keys(key(1), vec![]);
        let credential = issue(&issuer, 1_791_051_310_000);
        fn strings_only(v: &Value) -> bool {
            match v {
                Value::String(_) => true,
                Value::Array(a) => a.iter().all(strings_only),
                Value::Object(o) => o.values().all(strings_only),
                _ => false,
            }
        }
        assert!(strings_only(&credential), "{credential}");
        assert_eq!(credential["issuer"], issuer.active().did);
        assert_eq!(credential["credentialStatus"]["statusListIndex"], "7");
        assert_eq!(
            credential["credentialStatus"]["statusListCredential"],
            "urn:openoes:status-list:1"
        );
        let verdict = verify_offline(
            &issuer,
            &credential,
            "urn:openoes:status-list:",
            1_759_515_400_000,
        );
        assert!(verdict.failed.is_empty(), "{:?}", verdict.failed);
        assert_eq!(
            verdict.status,
            Some(StatusEntry {
                list_id: "1".into(),
                index: 7
            })
        );
        assert_eq!(
            verdict.attestation_id.as_deref(),
            Some("2c5ea4c0-4067-8bcd-8000-000000000000")
        );
        let (payload, signature) = signed_parts(&credential.to_string()).expect("parts");
        assert_eq!((payload.len(), signature.len()), (64, 64));
        assert!(issuer.active().public_key().verify(&payload, &signature));
    }

    #[test]
    fn each_kind_of_bad_credential_fails_its_own_check() {
        let issuer = Issuer::from_keys(key(1), vec![]);
        let now = 1_759_515_400_000;
        let checks = |c: &Value| -> Vec<Check> {
            verify_offline(&issuer, c, "urn:openoes:status-list:", now)
                .failed
                .into_iter()
                .map(|(check, _)| check)
                .collect()
        };
        let good = issue(&issuer, 1_791_051_310_000);
        let mut changed = good.clone();
        changed["credentialSubject"]["verificationResult"] = "failed".into();
        assert_eq!(checks(&changed), [Check::Signature]);
        let expired = issue(&issuer, now - 1);
        assert_eq!(checks(&expired), [Check::Expiry]);
        let other = Issuer::from_keys(key(2), vec![]);
        assert_eq!(checks(&issue(&other, 1_791_051_310_000)), [Check::Key]);
        let mut unlisted = good.clone();
        unlisted["credentialStatus"]["statusListCredential"] = "https://elsewhere/1".into();
        assert!(checks(&unlisted).contains(&Check::Revocation));
        // A retired key's credentials still verify.
        let rotated = Issuer::from_keys(key(3), vec![key(1)]);
        assert!(
            verify_offline(&rotated, &good, "urn:openoes:status-list:", now)
                .failed
                .is_empty()
        );
        assert!(!rotated.key(&issuer.active().key_id).expect("kept").active);
    }

    #[test]
    fn the_status_list_credential_carries_the_set_bits() {
        let issuer = Issuer::from_keys(key(1), vec![]);
        // Redis bitmap of bits 0 and 9 set: 0x80, 0x40.
        let json = status_list_credential(
            issuer.active(),
            "urn:openoes:status-list:1",
            131_072,
            &[0x80, 0x40],
            1_759_515_311_000,
        )
        .expect("signs");
        let doc: Value = serde_json::from_str(&json).expect("json");
        assert!(data_integrity::verify_proof_with_key(&doc, &issuer.active().public_key()).is_ok());
        let list = StatusList::decode(
            doc["credentialSubject"]["encodedList"]
                .as_str()
                .expect("list"),
        )
        .expect("decodes");
        let set: Vec<usize> = (0..list.len())
            .filter(|&i| list.get(i) == Ok(true))
            .collect();
        assert_eq!(set, [0, 9]);
        assert_eq!(doc["issuer"], issuer.active().did);
    }
}
