//! C2SP signed notes (<https://c2sp.org/signed-note>) with Ed25519.
//!
//! A signed note is a UTF-8 text ending in a newline, a blank line, then one
//! line per signature: `— <key name> <base64(key ID || signature)>` (an em
//! dash, U+2014). Transparency logs, their witnesses and Go's checksum
//! database speak it, so a checkpoint we sign is checked with their tools.
//!
//! Keys have two text forms, both from Go's reference implementation
//! (`golang.org/x/mod/sumdb/note`):
//!
//! - the verifier key (vkey), public: `<name>+<hex key ID>+<base64(0x01 || public key)>`;
//! - the signer key, secret: `PRIVATE+KEY+<name>+<hex key ID>+<base64(0x01 || seed)>`.
//!
//! The key ID is the first four bytes of
//! `SHA-256(name || "\n" || 0x01 || public key)`, big-endian. The pair (name,
//! key ID) picks the key that signed a line; [`open_note`] ignores lines of
//! keys it does not know, requires at least one valid signature from a key it
//! does know, and rejects the whole note if a known key's signature is bad.

use std::{fmt, str::FromStr};

use base64::{Engine as _, engine::general_purpose::STANDARD};
use thiserror::Error;
use zeroize::Zeroizing;

use crate::crypto::{
    ed25519::{self, Ed25519Error, PublicKey, SigningKey},
    sha256,
};

/// The signature type byte of Ed25519 in keys and key IDs.
pub const SIGNATURE_TYPE_ED25519: u8 = 0x01;

/// The most signatures [`SignedNote::parse`] reads. The spec asks verifiers
/// to accept at least 16; Go's reference stops at 100, and so do we, so a
/// hostile note cannot make us parse without end.
pub const MAX_NOTE_SIGNATURES: usize = 100;

/// What starts every signature line: an em dash (U+2014) and a space.
const SIGNATURE_LINE_PREFIX: &str = "\u{2014} ";

/// What starts a signer key, so it is never mistaken for a public one.
const SIGNER_KEY_PREFIX: &str = "PRIVATE+KEY+";

/// Why a key, a note or a signature was refused.
///
/// No variant carries key material: the signer key's parse errors say what
/// is wrong, never what was there.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum NoteError {
    /// A key name is empty or has a Unicode space or a `+`.
    #[error("invalid key name: it must be non-empty, with no spaces and no '+'")]
    InvalidKeyName,
    /// A `PRIVATE+KEY+...` line does not parse.
    #[error("malformed signer key: {0}")]
    MalformedSignerKey(&'static str),
    /// A vkey does not parse.
    #[error("malformed verifier key: {0}")]
    MalformedVerifierKey(&'static str),
    /// A key of another signature type than Ed25519.
    #[error("unsupported signature type 0x{0:02x}: only Ed25519 (0x01) is supported")]
    UnsupportedSignatureType(u8),
    /// A key's stated ID is not the one its name and public key give.
    #[error("key ID {stated:08x} does not match the key, whose ID is {computed:08x}")]
    KeyIdMismatch {
        /// The key ID the text states.
        stated: u32,
        /// The key ID of the name and public key.
        computed: u32,
    },
    /// The note is not a well-formed signed note.
    #[error("malformed note: {0}")]
    Malformed(&'static str),
    /// The note has more signature lines than [`MAX_NOTE_SIGNATURES`].
    #[error("note has more than {MAX_NOTE_SIGNATURES} signatures")]
    TooManySignatures,
    /// Two different keys among the trusted verifiers share a name and ID,
    /// so a signature line cannot tell which one it means.
    #[error("two different trusted keys are both {name}+{key_id:08x}")]
    AmbiguousVerifier {
        /// The shared key name.
        name: String,
        /// The shared key ID.
        key_id: u32,
    },
    /// A trusted key's signature does not verify: the note was changed or
    /// the signature forged.
    #[error("invalid signature by trusted key {name}+{key_id:08x}")]
    InvalidSignature {
        /// The key name.
        name: String,
        /// The key ID.
        key_id: u32,
    },
    /// No signature of the note is from a trusted key.
    #[error("note has no signature from a trusted key")]
    NoTrustedSignature,
    /// The Ed25519 key could not be made.
    #[error(transparent)]
    Ed25519(#[from] Ed25519Error),
}

/// Whether `name` can name a key: non-empty, no Unicode space (Go's
/// `unicode.IsSpace`, which is Rust's `char::is_whitespace`), no `+`.
pub fn is_valid_key_name(name: &str) -> bool {
    !name.is_empty() && !name.chars().any(|c| c.is_whitespace() || c == '+')
}

/// The key ID of an Ed25519 key: the first four bytes, big-endian, of
/// `SHA-256(name || 0x0A || 0x01 || public key)`.
pub fn key_id(name: &str, public_key: &PublicKey) -> u32 {
    let hash = sha256(&[
        name.as_bytes(),
        b"\n",
        &[SIGNATURE_TYPE_ED25519],
        public_key.as_bytes(),
    ]);
    u32::from_be_bytes([hash[0], hash[1], hash[2], hash[3]])
}

/// Checks the rules every note text and signed note follows: no ASCII
/// control character but the newline (the `&str` is already UTF-8).
fn check_characters(text: &str) -> Result<(), NoteError> {
    if text.chars().any(|c| c < ' ' && c != '\n') {
        return Err(NoteError::Malformed(
            "a control character other than newline",
        ));
    }
    Ok(())
}

/// Checks a note text: it ends in a newline and has no control characters.
fn check_text(text: &str) -> Result<(), NoteError> {
    if !text.ends_with('\n') {
        return Err(NoteError::Malformed("the text must end with a newline"));
    }
    check_characters(text)
}

/// Splits `<name>+<8 hex digits>+<base64>` into its three parts; the name
/// has no `+`, the base64 may.
fn split_key(text: &str) -> Option<(&str, u32, Vec<u8>)> {
    let mut parts = text.splitn(3, '+');
    let (name, id, key) = (parts.next()?, parts.next()?, parts.next()?);
    if id.len() != 8 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let id = u32::from_str_radix(id, 16).ok()?;
    let key = STANDARD.decode(key).ok()?;
    Some((name, id, key))
}

// === impl NoteSigner ===

/// A named Ed25519 signing key: signs notes as `<name>`.
pub struct NoteSigner {
    /// The key name on signature lines.
    name: String,
    /// The key ID, from the name and the public key.
    key_id: u32,
    /// The private key.
    key: SigningKey,
}

impl NoteSigner {
    /// The signer for `key` under `name`.
    pub fn new(name: &str, key: SigningKey) -> Result<Self, NoteError> {
        if !is_valid_key_name(name) {
            return Err(NoteError::InvalidKeyName);
        }
        Ok(Self {
            name: name.to_owned(),
            key_id: key_id(name, &key.public_key()),
            key,
        })
    }

    /// Parses a signer key, `PRIVATE+KEY+<name>+<hex key ID>+<base64(0x01 ||
    /// seed)>`, checking that the key ID is the one of the key it holds.
    pub fn parse(signer_key: &str) -> Result<Self, NoteError> {
        let rest =
            signer_key
                .strip_prefix(SIGNER_KEY_PREFIX)
                .ok_or(NoteError::MalformedSignerKey(
                    "it must start with PRIVATE+KEY+",
                ))?;
        let (name, stated, key) = split_key(rest).ok_or(NoteError::MalformedSignerKey(
            "expected PRIVATE+KEY+<name>+<8 hex digits>+<base64>",
        ))?;
        // The decoded key is secret: wipe it however this function ends.
        let key = Zeroizing::new(key);
        if !is_valid_key_name(name) {
            return Err(NoteError::InvalidKeyName);
        }
        let (&kind, seed) = key
            .split_first()
            .ok_or(NoteError::MalformedSignerKey("empty key"))?;
        if kind != SIGNATURE_TYPE_ED25519 {
            return Err(NoteError::UnsupportedSignatureType(kind));
        }
        let seed: &[u8; ed25519::SEED_LEN] = seed
            .try_into()
            .map_err(|_| NoteError::MalformedSignerKey("an Ed25519 seed is 32 bytes"))?;
        let signer = Self::new(name, SigningKey::from_seed(seed)?)?;
        if signer.key_id != stated {
            return Err(NoteError::KeyIdMismatch {
                stated,
                computed: signer.key_id,
            });
        }
        Ok(signer)
    }

    /// The key name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The key ID.
    pub const fn key_id(&self) -> u32 {
        self.key_id
    }

    /// The public key.
    pub const fn public_key(&self) -> PublicKey {
        self.key.public_key()
    }

    /// The Ed25519 key, to sign other things than notes with the same key
    /// (Data Integrity proofs).
    pub const fn signing_key(&self) -> &SigningKey {
        &self.key
    }

    /// The verifier of this key's signatures.
    pub fn verifier(&self) -> NoteVerifier {
        NoteVerifier {
            name: self.name.clone(),
            key_id: self.key_id,
            public_key: self.public_key(),
        }
    }

    /// The secret text form, `PRIVATE+KEY+...`, for the key file. Wiped
    /// from memory when dropped.
    pub fn expose_signer_key(&self) -> Zeroizing<String> {
        let mut key = Zeroizing::new(Vec::with_capacity(1 + ed25519::SEED_LEN));
        key.push(SIGNATURE_TYPE_ED25519);
        key.extend_from_slice(self.key.expose_seed());
        Zeroizing::new(format!(
            "{SIGNER_KEY_PREFIX}{}+{:08x}+{}",
            self.name,
            self.key_id,
            *Zeroizing::new(STANDARD.encode(&*key))
        ))
    }

    /// The signature line of this key over `text`.
    fn signature(&self, text: &str) -> NoteSignature {
        NoteSignature {
            name: self.name.clone(),
            key_id: self.key_id,
            signature: self.key.sign(text.as_bytes()).to_vec(),
        }
    }
}

impl fmt::Debug for NoteSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NoteSigner")
            .field("name", &self.name)
            .field("key_id", &format_args!("{:08x}", self.key_id))
            .field("key", &self.key)
            .finish()
    }
}

// === impl NoteVerifier ===

/// A named Ed25519 public key that verifies note signatures; its text form
/// (`Display`, `FromStr`) is the vkey.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NoteVerifier {
    /// The key name.
    name: String,
    /// The key ID.
    key_id: u32,
    /// The public key.
    public_key: PublicKey,
}

impl NoteVerifier {
    /// The verifier of `public_key` under `name`.
    pub fn new(name: &str, public_key: PublicKey) -> Result<Self, NoteError> {
        if !is_valid_key_name(name) {
            return Err(NoteError::InvalidKeyName);
        }
        Ok(Self {
            name: name.to_owned(),
            key_id: key_id(name, &public_key),
            public_key,
        })
    }

    /// Parses a vkey, `<name>+<hex key ID>+<base64(0x01 || public key)>`,
    /// checking that the key ID is the one of the key.
    pub fn parse(vkey: &str) -> Result<Self, NoteError> {
        let (name, stated, key) = split_key(vkey).ok_or(NoteError::MalformedVerifierKey(
            "expected <name>+<8 hex digits>+<base64>",
        ))?;
        if !is_valid_key_name(name) {
            return Err(NoteError::InvalidKeyName);
        }
        let (&kind, public_key) = key
            .split_first()
            .ok_or(NoteError::MalformedVerifierKey("empty key"))?;
        if kind != SIGNATURE_TYPE_ED25519 {
            return Err(NoteError::UnsupportedSignatureType(kind));
        }
        let public_key: [u8; ed25519::PUBLIC_KEY_LEN] = public_key
            .try_into()
            .map_err(|_| NoteError::MalformedVerifierKey("an Ed25519 public key is 32 bytes"))?;
        let verifier = Self::new(name, PublicKey::from_bytes(public_key))?;
        if verifier.key_id != stated {
            return Err(NoteError::KeyIdMismatch {
                stated,
                computed: verifier.key_id,
            });
        }
        Ok(verifier)
    }

    /// The key name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The key ID.
    pub const fn key_id(&self) -> u32 {
        self.key_id
    }

    /// The public key.
    pub const fn public_key(&self) -> PublicKey {
        self.public_key
    }

    /// Whether this key made `signature`.
    fn is_signer_of(&self, signature: &NoteSignature) -> bool {
        self.name == signature.name && self.key_id == signature.key_id
    }
}

impl fmt::Display for NoteVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut key = Vec::with_capacity(1 + ed25519::PUBLIC_KEY_LEN);
        key.push(SIGNATURE_TYPE_ED25519);
        key.extend_from_slice(self.public_key.as_bytes());
        write!(
            f,
            "{}+{:08x}+{}",
            self.name,
            self.key_id,
            STANDARD.encode(key)
        )
    }
}

impl FromStr for NoteVerifier {
    type Err = NoteError;

    fn from_str(vkey: &str) -> Result<Self, NoteError> {
        Self::parse(vkey)
    }
}

// === impl SignedNote ===

/// One signature line of a note, decoded but not verified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NoteSignature {
    /// The key name.
    pub name: String,
    /// The key ID (the first four bytes of the base64 payload).
    pub key_id: u32,
    /// The signature proper (the rest of the payload; 64 bytes for Ed25519).
    pub signature: Vec<u8>,
}

impl NoteSignature {
    /// The line, without its newline: `— <name> <base64(key ID || signature)>`.
    fn line(&self) -> String {
        let mut payload = Vec::with_capacity(4 + self.signature.len());
        payload.extend_from_slice(&self.key_id.to_be_bytes());
        payload.extend_from_slice(&self.signature);
        format!(
            "{SIGNATURE_LINE_PREFIX}{} {}",
            self.name,
            STANDARD.encode(payload)
        )
    }

    /// Parses a line without its newline.
    fn parse_line(line: &str) -> Result<Self, NoteError> {
        let rest = line
            .strip_prefix(SIGNATURE_LINE_PREFIX)
            .ok_or(NoteError::Malformed(
                "a signature line must start with an em dash and a space",
            ))?;
        let (name, payload) = rest.split_once(' ').ok_or(NoteError::Malformed(
            "a signature line is: — <name> <base64>",
        ))?;
        if !is_valid_key_name(name) {
            return Err(NoteError::InvalidKeyName);
        }
        let payload = STANDARD
            .decode(payload)
            .map_err(|_| NoteError::Malformed("a signature is not base64"))?;
        if payload.len() < 5 {
            return Err(NoteError::Malformed(
                "a signature is a 4-byte key ID and at least one byte",
            ));
        }
        Ok(Self {
            name: name.to_owned(),
            key_id: u32::from_be_bytes([payload[0], payload[1], payload[2], payload[3]]),
            signature: payload[4..].to_vec(),
        })
    }
}

/// A signed note taken apart: its text and its signature lines, as read,
/// none of them verified. Use [`open_note`] to verify.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedNote {
    /// The text, with its final newline, without the blank line.
    pub text: String,
    /// The signature lines in order.
    pub signatures: Vec<NoteSignature>,
}

impl SignedNote {
    /// Takes a signed note apart. The text ends at the last blank line (the
    /// text itself may hold blank lines); every line after it is a
    /// signature line.
    pub fn parse(note: &str) -> Result<Self, NoteError> {
        check_characters(note)?;
        let split = note.rfind("\n\n").ok_or(NoteError::Malformed(
            "no blank line between text and signatures",
        ))?;
        let (text, block) = (&note[..=split], &note[split + 2..]);
        let lines = block.strip_suffix('\n').ok_or(NoteError::Malformed(
            "the last signature line must end with a newline",
        ))?;
        let mut signatures = Vec::new();
        for line in lines.split('\n') {
            if signatures.len() == MAX_NOTE_SIGNATURES {
                return Err(NoteError::TooManySignatures);
            }
            signatures.push(NoteSignature::parse_line(line)?);
        }
        Ok(Self {
            text: text.to_owned(),
            signatures,
        })
    }

    /// The note as text: the text, a blank line, the signature lines.
    pub fn encode(&self) -> Result<String, NoteError> {
        check_text(&self.text)?;
        if self.signatures.is_empty() {
            return Err(NoteError::Malformed(
                "a signed note has at least one signature",
            ));
        }
        let mut out = String::with_capacity(self.text.len() + 1 + 100 * self.signatures.len());
        out.push_str(&self.text);
        out.push('\n');
        for signature in &self.signatures {
            if !is_valid_key_name(&signature.name) {
                return Err(NoteError::InvalidKeyName);
            }
            out.push_str(&signature.line());
            out.push('\n');
        }
        Ok(out)
    }
}

/// Signs `text` (which must end in a newline) with `signer`: returns the
/// text, a blank line and the signature line.
pub fn sign_note(text: &str, signer: &NoteSigner) -> Result<String, NoteError> {
    check_text(text)?;
    SignedNote {
        text: text.to_owned(),
        signatures: vec![signer.signature(text)],
    }
    .encode()
}

/// Adds `signer`'s signature to an already signed note: same text, the
/// existing lines as they were, the new line last. If the note already has a
/// line of this key, that line is replaced (as Go's `note.Sign` does), so
/// cosigning twice does not duplicate it. The existing signatures are not
/// verified: a cosigner vouches for the text, not for the other lines.
pub fn cosign_note(note: &str, signer: &NoteSigner) -> Result<String, NoteError> {
    let mut parsed = SignedNote::parse(note)?;
    parsed
        .signatures
        .retain(|s| !(s.name == signer.name && s.key_id == signer.key_id));
    if parsed.signatures.len() == MAX_NOTE_SIGNATURES {
        return Err(NoteError::TooManySignatures);
    }
    let signature = signer.signature(&parsed.text);
    parsed.signatures.push(signature);
    parsed.encode()
}

/// A note that [`open_note`] verified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedNote {
    /// The text, which at least one trusted key signed.
    pub text: String,
    /// The valid signatures of trusted keys, one per key, in note order.
    pub verified: Vec<NoteSignature>,
    /// The signatures of keys not in the trusted set, kept (duplicates
    /// dropped) for callers that count witnesses by other means.
    pub unverified: Vec<NoteSignature>,
}

/// Opens a signed note against the trusted keys `verifiers`.
///
/// Lines whose (name, key ID) is not a trusted key are set aside, even if
/// they share one of the two with a trusted key. Every line of a trusted key
/// must verify, or the whole note is refused ([`NoteError::InvalidSignature`]);
/// at least one must be there ([`NoteError::NoTrustedSignature`]).
pub fn open_note(note: &str, verifiers: &[NoteVerifier]) -> Result<VerifiedNote, NoteError> {
    // Two different keys with one name and ID would make the choice of key
    // depend on list order; refuse rather than guess.
    for (i, a) in verifiers.iter().enumerate() {
        if verifiers[i + 1..]
            .iter()
            .any(|b| a.name == b.name && a.key_id == b.key_id && a.public_key != b.public_key)
        {
            return Err(NoteError::AmbiguousVerifier {
                name: a.name.clone(),
                key_id: a.key_id,
            });
        }
    }
    let parsed = SignedNote::parse(note)?;
    let mut verified: Vec<NoteSignature> = Vec::new();
    let mut unverified: Vec<NoteSignature> = Vec::new();
    for signature in parsed.signatures {
        match verifiers.iter().find(|v| v.is_signer_of(&signature)) {
            Some(verifier) => {
                if !verifier
                    .public_key
                    .verify(parsed.text.as_bytes(), &signature.signature)
                {
                    return Err(NoteError::InvalidSignature {
                        name: signature.name,
                        key_id: signature.key_id,
                    });
                }
                if !verified.iter().any(|s| verifier.is_signer_of(s)) {
                    verified.push(signature);
                }
            }
            None => {
                if !unverified.contains(&signature) {
                    unverified.push(signature);
                }
            }
        }
    }
    if verified.is_empty() {
        return Err(NoteError::NoTrustedSignature);
    }
    Ok(VerifiedNote {
        text: parsed.text,
        verified,
        unverified,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::test_support::read_testdata;

    // golang.org/x/mod sumdb/note/note.go (package doc) and note_test.go:
    // the reference implementation's key, text and signed note.
    const PETER_SKEY: &str =
        "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz";
    const PETER_VKEY: &str = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
    const PETER_TEXT: &str = "If you think cryptography is the answer to your problem,\n\
                              then you don't know what your problem is.\n";
    const PETER_SIG: &str = "\u{2014} PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n";
    const ENOCH_VKEY: &str = "EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop";
    const ENOCH_SIG: &str = "\u{2014} EnochRoot rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01oOTGwnWLox33WWd1RvMc+QQ=\n";

    // c2sp.org/signed-note, "Verifier keys" / "Example".
    const SPEC_VKEY: &str = "example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k";

    fn peter() -> NoteSigner {
        NoteSigner::parse(PETER_SKEY).expect("reference signer key")
    }

    fn vkey(s: &str) -> NoteVerifier {
        s.parse().expect("vkey")
    }

    #[test]
    fn reference_signer_reproduces_the_reference_note() {
        let signer = peter();
        assert_eq!(signer.name(), "PeterNeumann");
        assert_eq!(signer.key_id(), 0xc74f20a3);
        assert_eq!(signer.verifier().to_string(), PETER_VKEY);
        assert_eq!(signer.verifier(), vkey(PETER_VKEY));
        assert_eq!(*signer.expose_signer_key(), PETER_SKEY);
        let note = sign_note(PETER_TEXT, &signer).expect("sign");
        assert_eq!(note, format!("{PETER_TEXT}\n{PETER_SIG}"));
    }

    #[test]
    fn spec_example_verifies_and_round_trips() {
        let verifier = vkey(SPEC_VKEY);
        assert_eq!(verifier.name(), "example.com/foo");
        assert_eq!(verifier.key_id(), 0x530d903a);
        assert_eq!(
            key_id("example.com/foo", &verifier.public_key()),
            0x530d903a
        );
        assert_eq!(verifier.to_string(), SPEC_VKEY);

        let note = read_testdata("c2sp/signed-note-example.txt");
        let opened = open_note(&note, std::slice::from_ref(&verifier)).expect("spec note verifies");
        assert_eq!(opened.text, "This is an example message.\n");
        assert_eq!(opened.verified.len(), 1);
        assert_eq!(opened.verified[0].key_id, 0x530d903a);
        assert_eq!(
            SignedNote::parse(&note)
                .expect("parse")
                .encode()
                .expect("encode"),
            note
        );

        // One changed byte of the text breaks it, and says whose key.
        let changed = note.replacen("example", "exbmple", 1);
        assert_eq!(
            open_note(&changed, &[verifier]),
            Err(NoteError::InvalidSignature {
                name: "example.com/foo".into(),
                key_id: 0x530d903a
            })
        );
    }

    #[test]
    fn spec_opening_example_parses_with_its_blank_lines() {
        // c2sp.org/signed-note, the opening example: its key is not
        // published, so only the structure can be checked.
        let note = read_testdata("c2sp/signed-note-quasimodo.txt");
        let parsed = SignedNote::parse(&note).expect("parse");
        assert_eq!(
            parsed.text,
            "Ognuno sta solo sul cuor della terra\ntrafitto da un raggio di sole:\n\n\
             ed \u{e8} subito sera.\n"
        );
        assert_eq!(parsed.signatures.len(), 1);
        assert_eq!(parsed.signatures[0].name, "quasimodo.example/salvatore");
        assert_eq!(parsed.signatures[0].signature.len(), 64);
        assert_eq!(parsed.encode().expect("encode"), note);
        assert_eq!(open_note(&note, &[]), Err(NoteError::NoTrustedSignature));
    }

    #[test]
    fn reference_two_signature_note_opens_with_one_or_both_keys() {
        let note = format!("{PETER_TEXT}\n{PETER_SIG}{ENOCH_SIG}");
        let peter_v = vkey(PETER_VKEY);
        let enoch_v = vkey(ENOCH_VKEY);

        let one = open_note(&note, std::slice::from_ref(&peter_v)).expect("peter");
        assert_eq!(one.text, PETER_TEXT);
        assert_eq!(one.verified.len(), 1);
        assert_eq!(one.verified[0].name, "PeterNeumann");
        assert_eq!(one.unverified.len(), 1);
        assert_eq!(one.unverified[0].name, "EnochRoot");
        assert_eq!(one.unverified[0].key_id, 0xaf0cfe78);

        let both = open_note(&note, &[peter_v, enoch_v.clone()]).expect("both");
        assert_eq!(both.verified.len(), 2);
        assert!(both.unverified.is_empty());

        let enoch = open_note(&note, &[enoch_v]).expect("enoch");
        assert_eq!(enoch.verified[0].name, "EnochRoot");

        assert_eq!(open_note(&note, &[]), Err(NoteError::NoTrustedSignature));
    }

    #[test]
    fn cosign_keeps_the_text_and_the_first_line() {
        let first = sign_note(PETER_TEXT, &peter()).expect("sign");
        let witness = NoteSigner::new(
            "witness.example",
            SigningKey::from_seed(&[7u8; 32]).expect("key"),
        )
        .expect("signer");
        let cosigned = cosign_note(&first, &witness).expect("cosign");
        assert!(
            cosigned.starts_with(&first),
            "existing text and line kept byte for byte"
        );
        let added = &cosigned[first.len()..];
        assert!(added.starts_with("\u{2014} witness.example "), "{added}");
        assert_eq!(added.matches('\n').count(), 1);

        let opened = open_note(&cosigned, &[vkey(PETER_VKEY), witness.verifier()]).expect("open");
        assert_eq!(opened.verified.len(), 2);
        assert_eq!(opened.text, PETER_TEXT);

        // Cosigning again with the same key replaces its line.
        assert_eq!(cosign_note(&cosigned, &witness).expect("again"), cosigned);
        // Cosigning the two-key reference note keeps Enoch's line untouched.
        let reference = format!("{PETER_TEXT}\n{PETER_SIG}{ENOCH_SIG}");
        let three = cosign_note(&reference, &witness).expect("cosign");
        assert!(three.starts_with(&reference));
    }

    #[test]
    fn unknown_keys_are_ignored_even_sharing_a_name_or_an_id() {
        let signer = peter();
        let note = sign_note(PETER_TEXT, &signer).expect("sign");
        // Same name, other key (so another ID): ignored, not an error.
        let impostor = NoteVerifier::new(
            "PeterNeumann",
            SigningKey::from_seed(&[1u8; 32]).expect("key").public_key(),
        )
        .expect("verifier");
        assert_ne!(impostor.key_id(), signer.key_id());
        assert_eq!(
            open_note(&note, std::slice::from_ref(&impostor)),
            Err(NoteError::NoTrustedSignature)
        );
        // Known plus impostor: verifies through the known one.
        let opened = open_note(&note, &[impostor, signer.verifier()]).expect("open");
        assert_eq!(opened.verified.len(), 1);
    }

    #[test]
    fn a_bad_signature_from_a_trusted_key_refuses_the_note() {
        let signer = peter();
        let note = format!("{PETER_TEXT}\n{PETER_SIG}{ENOCH_SIG}");
        // Change one bit in Peter's signature (inside the base64, keeping
        // it valid base64): x08go/ZJ -> x08go/ZK.
        let forged = note.replacen("x08go/ZJ", "x08go/ZK", 1);
        assert_eq!(
            open_note(&forged, &[signer.verifier(), vkey(ENOCH_VKEY)]),
            Err(NoteError::InvalidSignature {
                name: "PeterNeumann".into(),
                key_id: 0xc74f20a3
            })
        );
        // Even when another trusted key signed correctly: one bad known
        // signature refuses the whole note.
        assert!(matches!(
            open_note(&forged, &[vkey(ENOCH_VKEY), signer.verifier()]),
            Err(NoteError::InvalidSignature { .. })
        ));
        // The wrong key for the text: Peter's line on another text.
        let other = format!("Another text.\n\n{PETER_SIG}");
        assert!(matches!(
            open_note(&other, &[signer.verifier()]),
            Err(NoteError::InvalidSignature { .. })
        ));
    }

    #[test]
    fn malformed_notes_are_refused() {
        let v = [vkey(PETER_VKEY)];
        let cases = [
            (format!("{PETER_TEXT}{PETER_SIG}"), "no blank line"),
            (
                format!("{PETER_TEXT}\n{}", PETER_SIG.trim_end()),
                "no final newline",
            ),
            (format!("{PETER_TEXT}\n"), "no signature"),
            (
                format!("{PETER_TEXT}\n- PeterNeumann AAAAAAA=\n"),
                "hyphen, not em dash",
            ),
            (
                format!("{PETER_TEXT}\n\u{2014} PeterNeumann !!!!\n"),
                "not base64",
            ),
            (
                format!("{PETER_TEXT}\n\u{2014} PeterNeumann AAAA\n"),
                "3-byte payload",
            ),
            (format!("tab\there\n\n{PETER_SIG}"), "control character"),
        ];
        for (note, why) in cases {
            assert!(open_note(&note, &v).is_err(), "{why}");
        }
        let many = format!(
            "{PETER_TEXT}\n{}",
            ENOCH_SIG.repeat(MAX_NOTE_SIGNATURES + 1)
        );
        assert_eq!(SignedNote::parse(&many), Err(NoteError::TooManySignatures));
        // Texts that cannot be signed.
        assert!(sign_note("no newline", &peter()).is_err());
        assert!(sign_note("bell\u{7}\n", &peter()).is_err());
    }

    #[test]
    fn text_with_blank_lines_splits_at_the_last_one() {
        let text = "first\n\nsecond\n";
        let note = sign_note(text, &peter()).expect("sign");
        let opened = open_note(&note, &[vkey(PETER_VKEY)]).expect("open");
        assert_eq!(opened.text, text);
    }

    #[test]
    fn key_text_forms_are_checked() {
        // Go's TestNewVerifier bad keys: a wrong hash, an unknown type.
        assert!(matches!(
            NoteVerifier::parse(
                "PeterNeumann+c74f20a4+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
            ),
            Err(NoteError::KeyIdMismatch { .. })
        ));
        assert_eq!(
            NoteVerifier::parse(
                "PeterNeumann+173116ae+ZRpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
            ),
            Err(NoteError::UnsupportedSignatureType(0x65))
        );
        for bad in [
            "",
            "PeterNeumann",
            "PeterNeumann+c74f20a3",
            "PeterNeumann+c74f20a+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
            "Peter Neumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
            "+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
            "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10",
        ] {
            assert!(NoteVerifier::parse(bad).is_err(), "{bad:?}");
        }
        // Go's TestNewSigner: every cut of the signer key is refused.
        for i in 0..PETER_SKEY.len() {
            for j in (i + 1)..=PETER_SKEY.len() {
                let mangled = format!("{}{}", &PETER_SKEY[..i], &PETER_SKEY[j..]);
                assert!(NoteSigner::parse(&mangled).is_err(), "{mangled}");
            }
        }
        let wrong_id = PETER_SKEY.replace("c74f20a3", "c74f20a4");
        assert!(matches!(
            NoteSigner::parse(&wrong_id),
            Err(NoteError::KeyIdMismatch { .. })
        ));
    }

    #[test]
    fn signer_errors_and_debug_never_show_the_seed() {
        let seed_b64 = "AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz";
        let signer = peter();
        let debug = format!("{signer:?}");
        assert!(!debug.contains(seed_b64), "{debug}");
        assert!(!debug.contains("AYEKFALV"), "{debug}");
        assert!(debug.contains("PeterNeumann"));
        for bad in [
            PETER_SKEY.replace("c74f20a3", "c74f20a4"),
            PETER_SKEY.replacen("AYEK", "AoEK", 1),
            format!("{PETER_SKEY}=="),
            PETER_SKEY.replace("PRIVATE", "PUBLIC"),
        ] {
            let message = NoteSigner::parse(&bad).expect_err("bad key").to_string();
            assert!(!message.contains("AYEKFALV"), "{message}");
            assert!(!message.contains("hfZx09iU"), "{message}");
        }
    }

    #[test]
    fn ambiguous_trusted_keys_are_refused() {
        let note = sign_note(PETER_TEXT, &peter()).expect("sign");
        let real = vkey(PETER_VKEY);
        let mut twin = real.clone();
        twin.public_key = PublicKey::from_bytes([9u8; 32]);
        assert!(matches!(
            open_note(&note, &[real.clone(), twin]),
            Err(NoteError::AmbiguousVerifier { .. })
        ));
        // The same key listed twice is not ambiguous.
        assert!(open_note(&note, &[real.clone(), real]).is_ok());
    }
}
