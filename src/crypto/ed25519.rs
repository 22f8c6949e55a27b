//! Ed25519 keys (RFC 8032), the one signature algorithm of [`crate::crypto`].
//!
//! Signed notes and `eddsa-jcs-2022` proofs both use pure Ed25519, so one
//! key type serves both. ring does the arithmetic (rustls already builds it,
//! so it costs the tree nothing). This file adds what ring does not do: it
//! keeps the 32-byte seed, which ring cannot give back and which the key file
//! stores, wipes it on drop, and keeps it out of `Debug` so that a log line
//! or a panic message never carries it.

use std::fmt;

use ring::{
    rand::{SecureRandom, SystemRandom},
    signature::{self, KeyPair as _},
};
use thiserror::Error;
use zeroize::Zeroize;

/// Length of an Ed25519 private key seed (RFC 8032 section 5.1.5).
pub const SEED_LEN: usize = 32;

/// Length of an encoded Ed25519 public key.
pub const PUBLIC_KEY_LEN: usize = 32;

/// Length of an Ed25519 signature.
pub const SIGNATURE_LEN: usize = 64;

/// Why an Ed25519 key could not be made.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum Ed25519Error {
    /// ring refused the seed. Its reason is a fixed word, never key bytes.
    #[error("Ed25519 key rejected: {0}")]
    KeyRejected(String),
    /// The operating system's random number generator failed.
    #[error("the system random number generator failed")]
    Random,
}

/// An Ed25519 public key, in its 32-byte RFC 8032 encoding.
///
/// Any 32 bytes are accepted here; a string that is not a valid curve point
/// simply never verifies a signature.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PublicKey([u8; PUBLIC_KEY_LEN]);

impl PublicKey {
    /// Wraps the 32-byte encoding of a public key.
    pub const fn from_bytes(bytes: [u8; PUBLIC_KEY_LEN]) -> Self {
        Self(bytes)
    }

    /// The 32-byte encoding.
    pub const fn as_bytes(&self) -> &[u8; PUBLIC_KEY_LEN] {
        &self.0
    }

    /// Whether `signature` is a valid Ed25519 signature of `message` by this
    /// key. A signature of the wrong length is invalid, not an error.
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        signature::UnparsedPublicKey::new(&signature::ED25519, &self.0)
            .verify(message, signature)
            .is_ok()
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey(")?;
        for byte in self.0 {
            write!(f, "{byte:02x}")?;
        }
        write!(f, ")")
    }
}

/// An Ed25519 private key: its seed and the key pair ring expands from it.
///
/// `Debug` shows the public key only; the seed is wiped when the key is
/// dropped. (ring's expanded key is not wiped: ring offers no way to.)
pub struct SigningKey {
    /// The RFC 8032 seed, kept because the key file stores it.
    seed: [u8; SEED_LEN],
    /// ring's expanded key, made once so that signing cannot fail.
    key_pair: signature::Ed25519KeyPair,
    /// The public key, cached: every signature line and proof names it.
    public_key: PublicKey,
}

impl SigningKey {
    /// The key whose RFC 8032 seed is `seed` (deterministic: the same seed
    /// always gives the same key and the same signatures).
    pub fn from_seed(seed: &[u8; SEED_LEN]) -> Result<Self, Ed25519Error> {
        let key_pair = signature::Ed25519KeyPair::from_seed_unchecked(seed)
            .map_err(|e| Ed25519Error::KeyRejected(e.to_string()))?;
        let mut public = [0u8; PUBLIC_KEY_LEN];
        public.copy_from_slice(key_pair.public_key().as_ref());
        Ok(Self {
            seed: *seed,
            key_pair,
            public_key: PublicKey(public),
        })
    }

    /// A new key from the operating system's random number generator.
    pub fn generate() -> Result<Self, Ed25519Error> {
        let mut seed = [0u8; SEED_LEN];
        SystemRandom::new()
            .fill(&mut seed)
            .map_err(|_| Ed25519Error::Random)?;
        let key = Self::from_seed(&seed);
        seed.zeroize();
        key
    }

    /// The public key.
    pub const fn public_key(&self) -> PublicKey {
        self.public_key
    }

    /// The Ed25519 signature of `message` (deterministic, RFC 8032).
    pub fn sign(&self, message: &[u8]) -> [u8; SIGNATURE_LEN] {
        let mut out = [0u8; SIGNATURE_LEN];
        out.copy_from_slice(self.key_pair.sign(message).as_ref());
        out
    }

    /// The secret seed. Only the key file writer needs it; the name makes
    /// every other use stand out in review.
    pub const fn expose_seed(&self) -> &[u8; SEED_LEN] {
        &self.seed
    }
}

impl Drop for SigningKey {
    fn drop(&mut self) {
        self.seed.zeroize();
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("public_key", &self.public_key)
            .field("seed", &"<redacted>")
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::test_support::{hex, to_hex};

    /// RFC 8032 section 7.1, TEST 1 (empty message) and TEST 2 (one byte).
    #[test]
    fn rfc8032_test_vectors() {
        let cases = [
            (
                "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
                "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
                "",
                "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e06522490155\
                 5fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b",
            ),
            (
                "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
                "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
                "72",
                "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da\
                 085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00",
            ),
        ];
        for (seed, public, message, sig) in cases {
            let seed: [u8; 32] = hex(seed).try_into().expect("32 bytes");
            let key = SigningKey::from_seed(&seed).expect("key");
            assert_eq!(to_hex(key.public_key().as_bytes()), public);
            let signature = key.sign(&hex(message));
            assert_eq!(to_hex(&signature), sig.replace(' ', ""));
            assert!(key.public_key().verify(&hex(message), &signature));
            assert!(!key.public_key().verify(b"another message", &signature));
            assert!(!key.public_key().verify(&hex(message), &signature[..63]));
        }
    }

    #[test]
    fn debug_never_prints_the_seed() {
        let seed = [0x5au8; 32];
        let key = SigningKey::from_seed(&seed).expect("key");
        let debug = format!("{key:?}");
        assert!(debug.contains("<redacted>"), "{debug}");
        assert!(!debug.contains(&to_hex(&seed)), "{debug}");
        assert!(!debug.contains("5a5a"), "{debug}");
        assert!(!debug.contains("90, 90"), "{debug}");
    }

    #[test]
    fn generated_keys_differ_and_sign() {
        let a = SigningKey::generate().expect("key");
        let b = SigningKey::generate().expect("key");
        assert_ne!(a.public_key(), b.public_key());
        let signature = a.sign(b"settlement");
        assert!(a.public_key().verify(b"settlement", &signature));
        assert!(!b.public_key().verify(b"settlement", &signature));
    }
}
