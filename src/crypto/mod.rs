//! # Signatures that independent tools verify offline
//!
//! The pure building blocks for the services that sign (attestations,
//! settlement checkpoints): no Redis, no gRPC, no clock, no network, only
//! bytes in and bytes out. Every format here is a published standard, byte
//! for byte, so that a counterparty checks our signatures with its own tools
//! and never has to trust this code:
//!
//! - [`ed25519`]: the one signature algorithm (RFC 8032), a key type whose
//!   seed never shows in `Debug`.
//! - [`merkle`]: RFC 9162 (RFC 6962) Merkle trees over SHA-256: roots and
//!   inclusion proofs, the tree transparency logs use.
//! - [`note`]: C2SP signed notes: the key text forms (`PRIVATE+KEY+...`,
//!   vkeys), sign, cosign, open against a set of trusted keys.
//! - [`checkpoint`]: C2SP tlog-checkpoint, the note body that commits to a
//!   tree head (origin, size, root).
//! - [`tlog_proof`]: C2SP tlog-proof, an offline proof that an entry is in a
//!   signed checkpoint.
//! - [`jcs`]: RFC 8785 JSON canonicalization, the bytes that
//!   `eddsa-jcs-2022` hashes.
//! - [`data_integrity`]: W3C Data Integrity proofs with `eddsa-jcs-2022`,
//!   and `did:key` for Ed25519 keys.
//! - [`status_list`]: W3C Bitstring Status List, how a verifier learns that
//!   a credential was revoked.
//! - [`keys`]: the server's key file: one `PRIVATE+KEY+...` line, mode 0600,
//!   the same key for notes and Data Integrity.
//!
//! Each file has its known-answer tests, with the official vectors in
//! `src/crypto/testdata/` (its README says where each one comes from).

pub mod checkpoint;
pub mod data_integrity;
pub mod ed25519;
pub mod jcs;
pub mod keys;
pub mod merkle;
pub mod note;
pub mod status_list;
pub mod tlog_proof;

use ring::digest;

/// SHA-256 of the concatenation of `parts`, without copying them together.
///
/// Every hash in this module is SHA-256 (Merkle nodes, key IDs, Data
/// Integrity hash data), so they share this one helper.
pub(crate) fn sha256(parts: &[&[u8]]) -> [u8; 32] {
    let mut context = digest::Context::new(&digest::SHA256);
    for part in parts {
        context.update(part);
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(context.finish().as_ref());
    out
}

/// Test helpers shared by the files of this module.
#[cfg(test)]
pub(crate) mod test_support {
    use std::path::PathBuf;

    /// Decodes a hex string (test vectors are written in hex).
    pub fn hex(s: &str) -> Vec<u8> {
        assert!(s.len().is_multiple_of(2), "odd hex length: {s}");
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex digit"))
            .collect()
    }

    /// Encodes bytes as lowercase hex.
    pub fn to_hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The path of a file under `src/crypto/testdata/`.
    pub fn testdata(path: &str) -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("src/crypto/testdata")
            .join(path)
    }

    /// The text of a file under `src/crypto/testdata/`.
    pub fn read_testdata(path: &str) -> String {
        let path = testdata(path);
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }
}
