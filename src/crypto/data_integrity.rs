//! W3C Data Integrity proofs with the `eddsa-jcs-2022` cryptosuite
//! (<https://www.w3.org/TR/vc-di-eddsa/>), and `did:key` for Ed25519 keys.
//!
//! This is how a verifiable credential (an attestation, a status list)
//! carries its signature inside its own JSON, checkable by any Data
//! Integrity library. The suite, section 3.3 of the spec:
//!
//! 1. the proof configuration is the proof without `proofValue`, with the
//!    document's `@context` copied in;
//! 2. hash data = `SHA-256(JCS(proof configuration)) || SHA-256(JCS(document
//!    without proof))`, 64 bytes;
//! 3. `proofValue` = `z` + base58btc(Ed25519 signature of the hash data).
//!
//! The verification method is a `did:key`, which holds the public key
//! itself (`did:key:z6Mk...`: multibase base58btc of the multicodec
//! `0xed 0x01` and the 32-byte key), so a proof verifies offline, with no
//! DID resolution. Whether that key is one the caller trusts is the
//! caller's check: [`verify_proof_with_key`], or the key returned by
//! [`verify_proof`].

use serde_json::{Map, Value};
use thiserror::Error;

use crate::crypto::{
    ed25519::{self, PublicKey, SigningKey},
    jcs::{self, JcsError},
    sha256,
};

/// The proof `type` of every Data Integrity proof of this suite.
pub const PROOF_TYPE: &str = "DataIntegrityProof";

/// The `cryptosuite` this file implements.
pub const CRYPTOSUITE: &str = "eddsa-jcs-2022";

/// The multicodec prefix of an Ed25519 public key (`ed25519-pub`, 0xed as
/// an unsigned varint).
const MULTICODEC_ED25519_PUB: [u8; 2] = [0xed, 0x01];

/// The multibase prefix of base58btc.
const MULTIBASE_BASE58BTC: char = 'z';

/// The method prefix of a `did:key`.
const DID_KEY_PREFIX: &str = "did:key:";

/// Which check refused a proof, or why one could not be made.
#[derive(Debug, Error)]
pub enum DataIntegrityError {
    /// The document is not a JSON object.
    #[error("the document must be a JSON object")]
    NotAnObject,
    /// [`create_proof`] was given a document that already has a proof.
    #[error("the document already has a proof")]
    AlreadySecured,
    /// The secured document has no `proof`.
    #[error("the document has no proof")]
    MissingProof,
    /// The `proof` is a list (a proof set or chain), which this file does
    /// not verify.
    #[error("proof sets and chains (a list of proofs) are not supported")]
    UnsupportedProofSet,
    /// A proof field is missing or of the wrong JSON type.
    #[error("malformed proof: {0}")]
    MalformedProof(&'static str),
    /// `proofValue` is not a multibase base58btc Ed25519 signature.
    #[error("bad proof encoding: {0}")]
    BadProofEncoding(&'static str),
    /// The proof is of another type or cryptosuite.
    #[error(
        "proof is type {proof_type:?} cryptosuite {cryptosuite:?}, not DataIntegrityProof eddsa-jcs-2022"
    )]
    WrongCryptosuite {
        /// The proof's `type`.
        proof_type: String,
        /// The proof's `cryptosuite`.
        cryptosuite: String,
    },
    /// `created` is not an XML Schema dateTime.
    #[error("proof created {0:?} is not an XML Schema dateTime")]
    InvalidCreated(String),
    /// The document's `@context` does not start with the proof's.
    #[error("the document @context does not start with the proof @context")]
    ContextMismatch,
    /// The verification method is not a valid Ed25519 `did:key`.
    #[error("bad did:key: {0}")]
    BadDidKey(&'static str),
    /// The proof was made with another key than the one trusted.
    #[error("the proof's key is not the expected key")]
    KeyMismatch,
    /// The signature does not verify: the document or proof was changed, or
    /// the signature was not made by the verification method's key.
    #[error("signature invalid")]
    SignatureInvalid,
    /// The document or proof has no canonical form.
    #[error(transparent)]
    Jcs(#[from] JcsError),
}

// === did:key ===

/// The multibase key of `did:key` (`z6Mk...`), also its fragment.
fn multibase_key(public_key: &PublicKey) -> String {
    let mut bytes = Vec::with_capacity(2 + ed25519::PUBLIC_KEY_LEN);
    bytes.extend_from_slice(&MULTICODEC_ED25519_PUB);
    bytes.extend_from_slice(public_key.as_bytes());
    format!("{MULTIBASE_BASE58BTC}{}", bs58::encode(bytes).into_string())
}

/// The `did:key` of an Ed25519 public key: `did:key:z6Mk...`.
pub fn did_key(public_key: &PublicKey) -> String {
    format!("{DID_KEY_PREFIX}{}", multibase_key(public_key))
}

/// The verification method of the key's `did:key`: `did:key:z6Mk...#z6Mk...`,
/// what a proof's `verificationMethod` names.
pub fn did_key_verification_method(public_key: &PublicKey) -> String {
    let key = multibase_key(public_key);
    format!("{DID_KEY_PREFIX}{key}#{key}")
}

/// The Ed25519 public key of a `did:key`, with or without its fragment (if
/// present, the fragment must be the key itself, as `did:key` defines it).
pub fn parse_did_key(did: &str) -> Result<PublicKey, DataIntegrityError> {
    let rest = did
        .strip_prefix(DID_KEY_PREFIX)
        .ok_or(DataIntegrityError::BadDidKey("not a did:key"))?;
    let key = match rest.split_once('#') {
        Some((key, fragment)) if key == fragment => key,
        Some(_) => {
            return Err(DataIntegrityError::BadDidKey(
                "the fragment is not the key itself",
            ));
        }
        None => rest,
    };
    let encoded = key
        .strip_prefix(MULTIBASE_BASE58BTC)
        .ok_or(DataIntegrityError::BadDidKey("not multibase base58btc"))?;
    let bytes = bs58::decode(encoded)
        .into_vec()
        .map_err(|_| DataIntegrityError::BadDidKey("not base58btc"))?;
    let key = bytes
        .strip_prefix(&MULTICODEC_ED25519_PUB)
        .ok_or(DataIntegrityError::BadDidKey(
            "not an Ed25519 key (multicodec 0xed01)",
        ))?;
    let key: [u8; ed25519::PUBLIC_KEY_LEN] = key
        .try_into()
        .map_err(|_| DataIntegrityError::BadDidKey("an Ed25519 key is 32 bytes"))?;
    Ok(PublicKey::from_bytes(key))
}

// === proofs ===

/// The options of a new proof (the proof minus `type`, `cryptosuite`,
/// `@context` and `proofValue`, which this file sets).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProofOptions {
    /// The key's verification method, e.g. [`did_key_verification_method`].
    pub verification_method: String,
    /// Why the proof was made; credentials use `assertionMethod`.
    pub proof_purpose: String,
    /// When, as an XML Schema dateTime (`2023-02-24T23:36:38Z`). Optional,
    /// and chosen by the caller: this module has no clock.
    pub created: Option<String>,
}

/// The hash data of the suite: `SHA-256(JCS(proof configuration)) ||
/// SHA-256(JCS(document))`, the 64 bytes that are signed.
pub fn hash_data(
    document: &Value,
    proof_configuration: &Value,
) -> Result<[u8; 64], DataIntegrityError> {
    let mut out = [0u8; 64];
    out[..32].copy_from_slice(&sha256(&[&jcs::canonicalize(proof_configuration)?]));
    out[32..].copy_from_slice(&sha256(&[&jcs::canonicalize(document)?]));
    Ok(out)
}

/// Makes a proof of `document` with `key` (spec section 3.3.1, "Create
/// Proof"): returns the proof object, `proofValue` included.
pub fn create_proof(
    document: &Value,
    key: &SigningKey,
    options: &ProofOptions,
) -> Result<Value, DataIntegrityError> {
    let members = document
        .as_object()
        .ok_or(DataIntegrityError::NotAnObject)?;
    if members.contains_key("proof") {
        return Err(DataIntegrityError::AlreadySecured);
    }
    if let Some(created) = &options.created
        && !is_xsd_date_time(created)
    {
        return Err(DataIntegrityError::InvalidCreated(created.clone()));
    }
    let mut proof = Map::new();
    proof.insert("type".into(), PROOF_TYPE.into());
    proof.insert("cryptosuite".into(), CRYPTOSUITE.into());
    if let Some(created) = &options.created {
        proof.insert("created".into(), created.as_str().into());
    }
    proof.insert(
        "verificationMethod".into(),
        options.verification_method.as_str().into(),
    );
    proof.insert("proofPurpose".into(), options.proof_purpose.as_str().into());
    // Step 2: the document's context, so that the proof stays valid when
    // it is later put in a proof set or chain.
    if let Some(context) = members.get("@context") {
        proof.insert("@context".into(), context.clone());
    }
    let mut proof = Value::Object(proof);
    let signature = key.sign(&hash_data(document, &proof)?);
    let proof_value = format!(
        "{MULTIBASE_BASE58BTC}{}",
        bs58::encode(signature).into_string()
    );
    if let Value::Object(members) = &mut proof {
        members.insert("proofValue".into(), proof_value.into());
    }
    Ok(proof)
}

/// Returns `document` with a new proof by `key` under `"proof"`.
pub fn add_proof(
    document: &Value,
    key: &SigningKey,
    options: &ProofOptions,
) -> Result<Value, DataIntegrityError> {
    let proof = create_proof(document, key, options)?;
    let mut secured = document.clone();
    if let Value::Object(members) = &mut secured {
        members.insert("proof".into(), proof);
    }
    Ok(secured)
}

/// What a verified proof says about itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedProof {
    /// The key that made the proof (from its `did:key`).
    pub public_key: PublicKey,
    /// The proof's `verificationMethod`.
    pub verification_method: String,
    /// The proof's `proofPurpose`: check it is the one expected.
    pub proof_purpose: String,
    /// The proof's `created`, if any.
    pub created: Option<String>,
}

/// Verifies the proof of a secured document (spec section 3.3.2, "Verify
/// Proof"), whose verification method is a `did:key`. The signature is
/// checked against the key the proof names: whether that key is a trusted
/// issuer is for the caller to check on the returned key, or use
/// [`verify_proof_with_key`].
pub fn verify_proof(secured: &Value) -> Result<VerifiedProof, DataIntegrityError> {
    verify(secured, None)
}

/// Verifies the proof of a secured document made by `trusted`: a proof by
/// any other key is [`DataIntegrityError::KeyMismatch`].
pub fn verify_proof_with_key(
    secured: &Value,
    trusted: &PublicKey,
) -> Result<VerifiedProof, DataIntegrityError> {
    verify(secured, Some(trusted))
}

/// A string member of the proof, if present.
fn string_member<'a>(
    proof: &'a Map<String, Value>,
    name: &'static str,
    error: &'static str,
) -> Result<Option<&'a str>, DataIntegrityError> {
    match proof.get(name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(DataIntegrityError::MalformedProof(error)),
    }
}

/// A `@context` as a list: JSON-LD allows a lone string for a one-element
/// list.
fn context_list(context: &Value) -> Vec<&Value> {
    match context {
        Value::Array(items) => items.iter().collect(),
        other => vec![other],
    }
}

fn verify(
    secured: &Value,
    trusted: Option<&PublicKey>,
) -> Result<VerifiedProof, DataIntegrityError> {
    let members = secured.as_object().ok_or(DataIntegrityError::NotAnObject)?;
    let proof = match members.get("proof") {
        None => return Err(DataIntegrityError::MissingProof),
        Some(Value::Array(_)) => return Err(DataIntegrityError::UnsupportedProofSet),
        Some(Value::Object(proof)) => proof,
        Some(_) => return Err(DataIntegrityError::MalformedProof("proof is not an object")),
    };
    // Steps 1 and 2: the document without its proof, the proof without
    // its value.
    let mut unsecured = members.clone();
    unsecured.remove("proof");
    let mut options = proof.clone();
    let proof_value = match options.remove("proofValue") {
        Some(Value::String(value)) => value,
        Some(_) => {
            return Err(DataIntegrityError::BadProofEncoding(
                "proofValue is not a string",
            ));
        }
        None => return Err(DataIntegrityError::BadProofEncoding("no proofValue")),
    };
    // Step 3: multibase base58btc of a 64-byte signature.
    let signature = proof_value
        .strip_prefix(MULTIBASE_BASE58BTC)
        .ok_or(DataIntegrityError::BadProofEncoding(
            "proofValue is not multibase base58btc ('z')",
        ))
        .and_then(|b58| {
            bs58::decode(b58)
                .into_vec()
                .map_err(|_| DataIntegrityError::BadProofEncoding("proofValue is not base58btc"))
        })?;
    if signature.len() != ed25519::SIGNATURE_LEN {
        return Err(DataIntegrityError::BadProofEncoding(
            "an Ed25519 signature is 64 bytes",
        ));
    }
    // Step 4: the proof's context must prefix the document's, and is the
    // context the document is hashed with.
    if let Some(proof_context) = options.get("@context") {
        let document_context = unsecured
            .get("@context")
            .map(context_list)
            .unwrap_or_default();
        let proof_context_list = context_list(proof_context);
        if !document_context.starts_with(&proof_context_list) {
            return Err(DataIntegrityError::ContextMismatch);
        }
        unsecured.insert("@context".into(), proof_context.clone());
    }
    // Steps 5 and 6: the transformation and proof configuration checks.
    let proof_type = string_member(&options, "type", "type is not a string")?;
    let cryptosuite = string_member(&options, "cryptosuite", "cryptosuite is not a string")?;
    if proof_type != Some(PROOF_TYPE) || cryptosuite != Some(CRYPTOSUITE) {
        return Err(DataIntegrityError::WrongCryptosuite {
            proof_type: proof_type.unwrap_or_default().to_owned(),
            cryptosuite: cryptosuite.unwrap_or_default().to_owned(),
        });
    }
    let created = string_member(&options, "created", "created is not a string")?;
    if let Some(created) = created
        && !is_xsd_date_time(created)
    {
        return Err(DataIntegrityError::InvalidCreated(created.to_owned()));
    }
    let verification_method = string_member(
        &options,
        "verificationMethod",
        "verificationMethod is not a string",
    )?
    .ok_or(DataIntegrityError::MalformedProof("no verificationMethod"))?;
    let proof_purpose = string_member(&options, "proofPurpose", "proofPurpose is not a string")?
        .ok_or(DataIntegrityError::MalformedProof("no proofPurpose"))?;
    let public_key = parse_did_key(verification_method)?;
    if trusted.is_some_and(|t| *t != public_key) {
        return Err(DataIntegrityError::KeyMismatch);
    }
    let verified = VerifiedProof {
        public_key,
        verification_method: verification_method.to_owned(),
        proof_purpose: proof_purpose.to_owned(),
        created: created.map(str::to_owned),
    };
    // Steps 7 and 8: hash and verify.
    let hash = hash_data(&Value::Object(unsecured), &Value::Object(options))?;
    if !public_key.verify(&hash, &signature) {
        return Err(DataIntegrityError::SignatureInvalid);
    }
    Ok(verified)
}

/// Whether `s` is an XML Schema 1.1 `dateTime`:
/// `[-]YYYY-MM-DDThh:mm:ss[.s+][Z|(+|-)hh:mm]`, with the field ranges of the
/// lexical space (`24:00:00` allowed; day of month checked up to 31 only).
fn is_xsd_date_time(s: &str) -> bool {
    /// `n` ASCII digits and what follows them.
    fn digits(s: &str, n: usize) -> Option<(u32, &str)> {
        let head = s.get(..n)?;
        if !head.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        Some((head.parse().ok()?, &s[n..]))
    }
    fn expect(s: &str, c: char) -> Option<&str> {
        s.strip_prefix(c)
    }
    let check = || -> Option<()> {
        let s = s.strip_prefix('-').unwrap_or(s);
        // A year of four digits or more, no leading zero beyond four.
        let year_len = s.find('-')?;
        if year_len < 4 || (year_len > 4 && s.starts_with('0')) {
            return None;
        }
        let (_, s) = digits(s, year_len)?;
        let (month, s) = digits(expect(s, '-')?, 2)?;
        let (day, s) = digits(expect(s, '-')?, 2)?;
        let (hour, s) = digits(expect(s, 'T')?, 2)?;
        let (minute, s) = digits(expect(s, ':')?, 2)?;
        let (second, mut s) = digits(expect(s, ':')?, 2)?;
        let mut fraction_zero = true;
        if let Some(rest) = s.strip_prefix('.') {
            let len = rest.bytes().take_while(u8::is_ascii_digit).count();
            if len == 0 {
                return None;
            }
            fraction_zero = rest[..len].bytes().all(|b| b == b'0');
            s = &rest[len..];
        }
        let in_range = (1..=12).contains(&month)
            && (1..=31).contains(&day)
            && minute <= 59
            && second <= 59
            && (hour <= 23 || (hour == 24 && minute == 0 && second == 0 && fraction_zero));
        if !in_range {
            return None;
        }
        match s {
            "" | "Z" => Some(()),
            _ => {
                let s = s.strip_prefix('+').or_else(|| s.strip_prefix('-'))?;
                let (tz_hour, s) = digits(s, 2)?;
                let (tz_minute, s) = digits(expect(s, ':')?, 2)?;
                let ok = s.is_empty()
                    && tz_minute <= 59
                    && (tz_hour < 14 || (tz_hour == 14 && tz_minute == 0));
                ok.then_some(())
            }
        }
    };
    check().is_some()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::crypto::test_support::{read_testdata, to_hex};

    /// The key pair of w3c/vc-di-eddsa `TestVectors/keyPair.json`.
    fn test_vector_key() -> SigningKey {
        let pair: Value =
            serde_json::from_str(&read_testdata("vc-di-eddsa/keyPair.json")).expect("keyPair.json");
        let private = pair["privateKeyMultibase"].as_str().expect("private key");
        // multibase base58btc of the multicodec ed25519-priv (0x1300,
        // varint 0x80 0x26) and the 32-byte seed.
        let bytes = bs58::decode(&private[1..]).into_vec().expect("base58btc");
        assert_eq!(&bytes[..2], &[0x80, 0x26]);
        let seed: [u8; 32] = bytes[2..].try_into().expect("32-byte seed");
        let key = SigningKey::from_seed(&seed).expect("key");
        assert_eq!(
            multibase_key(&key.public_key()),
            pair["publicKeyMultibase"].as_str().expect("public key")
        );
        key
    }

    fn vector_json(name: &str) -> Value {
        serde_json::from_str(&read_testdata(&format!("vc-di-eddsa/{name}"))).expect(name)
    }

    fn vector_text(name: &str) -> String {
        read_testdata(&format!("vc-di-eddsa/eddsa-jcs-2022/{name}"))
    }

    fn test_vector_options() -> ProofOptions {
        let config = vector_json("eddsa-jcs-2022/proofConfigJCS.json");
        ProofOptions {
            verification_method: config["verificationMethod"].as_str().expect("vm").into(),
            proof_purpose: config["proofPurpose"].as_str().expect("purpose").into(),
            created: Some(config["created"].as_str().expect("created").into()),
        }
    }

    /// The official `eddsa-jcs-2022` test vector, every intermediate value
    /// byte for byte.
    #[test]
    fn official_test_vector() {
        let key = test_vector_key();
        let unsigned = vector_json("unsigned.json");
        let options = test_vector_options();
        assert_eq!(
            options.verification_method,
            did_key_verification_method(&key.public_key())
        );

        // Canonical document and its hash.
        let canonical_document = jcs::canonicalize_to_string(&unsigned).expect("jcs");
        assert_eq!(canonical_document, vector_text("canonDocJCS.txt"));
        assert_eq!(
            to_hex(&sha256(&[canonical_document.as_bytes()])),
            vector_text("docHashJCS.txt")
        );

        // Proof: its configuration, canonical form, hash, the combined hash,
        // the signature in hex and in base58btc.
        let proof = create_proof(&unsigned, &key, &options).expect("proof");
        let mut configuration = proof.clone();
        configuration
            .as_object_mut()
            .expect("object")
            .remove("proofValue");
        assert_eq!(
            configuration,
            vector_json("eddsa-jcs-2022/proofConfigJCS.json")
        );
        let canonical_configuration = jcs::canonicalize_to_string(&configuration).expect("jcs");
        assert_eq!(canonical_configuration, vector_text("proofCanonJCS.txt"));
        assert_eq!(
            to_hex(&sha256(&[canonical_configuration.as_bytes()])),
            vector_text("proofHashJCS.txt")
        );
        let hash = hash_data(&unsigned, &configuration).expect("hash data");
        assert_eq!(to_hex(&hash), vector_text("combinedHashJCS.txt"));
        assert_eq!(to_hex(&key.sign(&hash)), vector_text("sigHexJCS.txt"));
        assert_eq!(proof["proofValue"], vector_text("sigBTC58JCS.txt").as_str());

        // The signed credential, and its verification.
        let signed = add_proof(&unsigned, &key, &options).expect("signed");
        let official = vector_json("eddsa-jcs-2022/signedJCS.json");
        assert_eq!(signed, official);
        let verified = verify_proof_with_key(&official, &key.public_key()).expect("verifies");
        assert_eq!(verified.proof_purpose, "assertionMethod");
        assert_eq!(verified.created.as_deref(), Some("2023-02-24T23:36:38Z"));
        assert_eq!(
            verify_proof(&official).expect("verifies").public_key,
            key.public_key()
        );
    }

    #[test]
    fn did_key_round_trip() {
        let key = test_vector_key();
        let did = did_key(&key.public_key());
        assert_eq!(
            did,
            "did:key:z6MkrJVnaZkeFzdQyMZu1cgjg7k1pZZ6pvBQ7XJPt4swbTQ2"
        );
        assert_eq!(parse_did_key(&did).expect("did"), key.public_key());
        let vm = did_key_verification_method(&key.public_key());
        assert_eq!(parse_did_key(&vm).expect("vm"), key.public_key());
        for bad in [
            "did:web:example.com",
            "did:key:6MkrJVnaZkeFzdQyMZu1cgjg7k1pZZ6pvBQ7XJPt4swbTQ2",
            "did:key:z6MkrJVnaZkeFzdQyMZu1cgjg7k1pZZ6pvBQ7XJPt4swbTQ0",
            "did:key:z6MkrJVnaZkeFzdQyMZu1cgjg7k1pZZ6pvBQ7XJPt4swbTQ2#z6Mkother",
            // A base58btc P-256 key (multicodec 0x1200): not Ed25519.
            "did:key:zDnaerDaTF5BXEavCrfRZEk316dpbLsfPDZ3WJ5hRTPFU2169",
        ] {
            assert!(parse_did_key(bad).is_err(), "{bad}");
        }
    }

    /// Each kind of damage to the official signed credential fails on its
    /// own check.
    #[test]
    fn tampering_fails_for_the_right_reason() {
        let official = vector_json("eddsa-jcs-2022/signedJCS.json");
        let key = test_vector_key();
        let with = |edit: &dyn Fn(&mut Value)| {
            let mut doc = official.clone();
            edit(&mut doc);
            verify_proof_with_key(&doc, &key.public_key())
        };

        // A changed byte of the signature (still valid base58btc).
        let changed = with(&|d| {
            let value = d["proof"]["proofValue"].as_str().expect("value").to_owned();
            let flipped = if value.ends_with('X') { 'Y' } else { 'X' };
            let value = format!("{}{flipped}", &value[..value.len() - 1]);
            d["proof"]["proofValue"] = value.into();
        });
        assert!(
            matches!(changed, Err(DataIntegrityError::SignatureInvalid)),
            "{changed:?}"
        );
        // A changed claim.
        let claim = with(&|d| d["credentialSubject"]["alumniOf"] = "Another School".into());
        assert!(matches!(claim, Err(DataIntegrityError::SignatureInvalid)));
        // A changed proof option (covered by the proof configuration hash).
        let created = with(&|d| d["proof"]["created"] = "2023-02-24T23:36:39Z".into());
        assert!(matches!(created, Err(DataIntegrityError::SignatureInvalid)));
        // Bad encodings.
        for (value, what) in [
            (
                json!(
                    "2HnFSSPPBzR36zdDgK8PbEHeXbR56YF24jwMpt3R1eHXQzJDMWS93FCzpvJpwTWd3GAVFuUfjoJdcnTMuVor51aX"
                ),
                "no multibase prefix",
            ),
            (
                json!(
                    "z2HnFSSPPBzR36zdDgK8PbEHeXbR56YF24jwMpt3R1eHXQzJDMWS93FCzpvJpwTWd3GAVFuUfjoJdcnTMuVor51a0"
                ),
                "0 is not base58",
            ),
            (json!("z2HnFSSPPBzR36zdDgK8Pb"), "too short"),
            (json!(42), "not a string"),
        ] {
            let result = with(&|d| d["proof"]["proofValue"] = value.clone());
            assert!(
                matches!(result, Err(DataIntegrityError::BadProofEncoding(_))),
                "{what}: {result:?}"
            );
        }
        let no_value = with(&|d| {
            d["proof"]
                .as_object_mut()
                .expect("proof")
                .remove("proofValue");
        });
        assert!(matches!(
            no_value,
            Err(DataIntegrityError::BadProofEncoding(_))
        ));
        // Wrong suite or type.
        let suite = with(&|d| d["proof"]["cryptosuite"] = "eddsa-rdfc-2022".into());
        assert!(matches!(
            suite,
            Err(DataIntegrityError::WrongCryptosuite { .. })
        ));
        let proof_type = with(&|d| d["proof"]["type"] = "Ed25519Signature2020".into());
        assert!(matches!(
            proof_type,
            Err(DataIntegrityError::WrongCryptosuite { .. })
        ));
        // Another key than the trusted one.
        let other = SigningKey::from_seed(&[8u8; 32]).expect("key");
        assert!(matches!(
            verify_proof_with_key(&official, &other.public_key()),
            Err(DataIntegrityError::KeyMismatch)
        ));
        // A verification method of another key: the signature fails.
        let vm = with(&|d| {
            d["proof"]["verificationMethod"] =
                did_key_verification_method(&other.public_key()).into()
        });
        assert!(matches!(vm, Err(DataIntegrityError::KeyMismatch)));
        let untrusted = {
            let mut doc = official.clone();
            doc["proof"]["verificationMethod"] =
                did_key_verification_method(&other.public_key()).into();
            verify_proof(&doc)
        };
        assert!(matches!(
            untrusted,
            Err(DataIntegrityError::SignatureInvalid)
        ));
        // Contexts: the document's must start with the proof's.
        let context = with(&|d| d["@context"] = json!(["https://www.w3.org/ns/credentials/v2"]));
        assert!(matches!(context, Err(DataIntegrityError::ContextMismatch)));
        // Bad created.
        let bad_created = with(&|d| d["proof"]["created"] = "yesterday".into());
        assert!(matches!(
            bad_created,
            Err(DataIntegrityError::InvalidCreated(_))
        ));
        // No proof, a proof set.
        let none = with(&|d| {
            d.as_object_mut().expect("doc").remove("proof");
        });
        assert!(matches!(none, Err(DataIntegrityError::MissingProof)));
        let set = with(&|d| d["proof"] = json!([d["proof"].clone()]));
        assert!(matches!(set, Err(DataIntegrityError::UnsupportedProofSet)));
    }

    /// The spec's step 4: a context appended to the document after signing
    /// (as a later proof in a chain does) leaves the proof valid; the
    /// document is hashed with the proof's context.
    #[test]
    fn appended_context_keeps_the_proof_valid() {
        let mut doc = vector_json("eddsa-jcs-2022/signedJCS.json");
        doc["@context"]
            .as_array_mut()
            .expect("context list")
            .push("https://w3id.org/security/data-integrity/v2".into());
        assert!(verify_proof(&doc).is_ok());
    }

    #[test]
    fn sign_and_verify_without_created_or_context() {
        let key = SigningKey::from_seed(&[9u8; 32]).expect("key");
        let document = json!({ "id": "urn:uuid:1", "amount": "12.50" });
        let options = ProofOptions {
            verification_method: did_key_verification_method(&key.public_key()),
            proof_purpose: "assertionMethod".into(),
            created: None,
        };
        let signed = add_proof(&document, &key, &options).expect("sign");
        assert!(signed["proof"].get("@context").is_none());
        assert!(signed["proof"].get("created").is_none());
        assert_eq!(
            verify_proof(&signed).expect("verify").public_key,
            key.public_key()
        );
        assert!(matches!(
            create_proof(&signed, &key, &options),
            Err(DataIntegrityError::AlreadySecured)
        ));
        assert!(matches!(
            create_proof(&json!([1]), &key, &options),
            Err(DataIntegrityError::NotAnObject)
        ));
        let mut bad_created = options.clone();
        bad_created.created = Some("2023-13-01T00:00:00Z".into());
        assert!(matches!(
            create_proof(&document, &key, &bad_created),
            Err(DataIntegrityError::InvalidCreated(_))
        ));
        // Numbers a JavaScript verifier cannot read exactly are refused.
        let big = json!({ "amount": 9_007_199_254_740_993u64 });
        assert!(matches!(
            create_proof(&big, &key, &options),
            Err(DataIntegrityError::Jcs(JcsError::UnsafeInteger(_)))
        ));
    }

    #[test]
    fn xsd_date_times() {
        for good in [
            "2023-02-24T23:36:38Z",
            "2023-02-24T23:36:38",
            "2023-02-24T23:36:38.123Z",
            "2023-02-24T23:36:38+05:30",
            "2023-02-24T23:36:38-14:00",
            "2023-02-24T24:00:00Z",
            "-0044-03-15T12:00:00Z",
            "12023-02-24T23:36:38Z",
        ] {
            assert!(is_xsd_date_time(good), "{good}");
        }
        for bad in [
            "",
            "2023-02-24",
            "2023-02-24 23:36:38Z",
            "2023-2-24T23:36:38Z",
            "2023-00-24T23:36:38Z",
            "2023-02-32T23:36:38Z",
            "2023-02-24T24:00:01Z",
            "2023-02-24T23:60:38Z",
            "2023-02-24T23:36:60Z",
            "2023-02-24T23:36:38.Z",
            "2023-02-24T23:36:38+15:00",
            "2023-02-24T23:36:38+0530",
            "2023-02-24T23:36:38ZZ",
            "023-02-24T23:36:38Z",
            "02023-02-24T23:36:38Z",
            "２023-02-24T23:36:38Z",
        ] {
            assert!(!is_xsd_date_time(bad), "{bad}");
        }
    }
}
