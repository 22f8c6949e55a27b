//! C2SP transparency log proofs (<https://c2sp.org/tlog-proof>,
//! `c2sp.org/tlog-proof@v1`).
//!
//! A tlog proof is a text file that proves offline that an entry is in a log:
//!
//! ```text
//! c2sp.org/tlog-proof@v1
//! [extra <base64 opaque data>]
//! index <decimal leaf index>
//! [<base64 inclusion proof hash, leaf's sibling first>...]
//!
//! <the checkpoint's signed note, verbatim>
//! ```
//!
//! It is a detached signature that carries its own transparency: the log's
//! signature on a tree head, and the path from the entry to that head.
//! [`TlogProof::parse`] checks the structure and the checkpoint body; the
//! signatures are checked by [`TlogProof::verify`], against keys the caller
//! trusts.

use base64::{Engine as _, engine::general_purpose::STANDARD};
use thiserror::Error;

use crate::crypto::{
    checkpoint::{Checkpoint, CheckpointError, parse_decimal},
    merkle::{self, Hash, MerkleError},
    note::NoteVerifier,
};

/// The first line of every tlog proof.
pub const TLOG_PROOF_HEADER: &str = "c2sp.org/tlog-proof@v1";

/// Why a tlog proof was refused.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum TlogProofError {
    /// The text is not a tlog proof.
    #[error("malformed tlog proof: {0}")]
    Malformed(&'static str),
    /// The checkpoint is malformed, from another origin, or not signed by a
    /// trusted key.
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    /// The inclusion proof does not put the entry in the checkpoint's tree.
    #[error(transparent)]
    Inclusion(#[from] MerkleError),
}

/// A tlog proof.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlogProof {
    /// Opaque data for the application (never authenticated by the proof).
    /// `None` omits the `extra` line; an empty value cannot be written,
    /// since the spec omits the line when there is no data.
    pub extra: Option<Vec<u8>>,
    /// Zero-based index of the entry in the log.
    pub index: u64,
    /// The RFC 9162 inclusion proof of the entry in the checkpoint's tree.
    pub inclusion_proof: Vec<Hash>,
    /// The checkpoint's signed note, verbatim (it ends in a newline).
    pub checkpoint: String,
}

impl TlogProof {
    /// The proof as text.
    pub fn encode(&self) -> Result<String, TlogProofError> {
        if !self.checkpoint.ends_with('\n') {
            return Err(TlogProofError::Malformed(
                "the checkpoint note must end with a newline",
            ));
        }
        let mut out = format!("{TLOG_PROOF_HEADER}\n");
        match &self.extra {
            Some(extra) if extra.is_empty() => {
                return Err(TlogProofError::Malformed(
                    "empty extra data is written by omitting the extra line",
                ));
            }
            Some(extra) => {
                out.push_str("extra ");
                out.push_str(&STANDARD.encode(extra));
                out.push('\n');
            }
            None => {}
        }
        out.push_str(&format!("index {}\n", self.index));
        for hash in &self.inclusion_proof {
            out.push_str(&STANDARD.encode(hash));
            out.push('\n');
        }
        out.push('\n');
        out.push_str(&self.checkpoint);
        Ok(out)
    }

    /// Parses a tlog proof, and the body of its checkpoint (so that a proof
    /// whose checkpoint is no checkpoint fails here). Signatures are not
    /// verified: see [`TlogProof::verify`].
    pub fn parse(text: &str) -> Result<Self, TlogProofError> {
        let mut rest = text;
        let mut next_line = || -> Result<&str, TlogProofError> {
            let (line, after) = rest.split_once('\n').ok_or(TlogProofError::Malformed(
                "the proof ends before the checkpoint",
            ))?;
            rest = after;
            Ok(line)
        };
        if next_line()? != TLOG_PROOF_HEADER {
            return Err(TlogProofError::Malformed(
                "the first line must be c2sp.org/tlog-proof@v1",
            ));
        }
        let mut line = next_line()?;
        let extra = match line.strip_prefix("extra ") {
            Some(b64) => {
                let extra = STANDARD
                    .decode(b64)
                    .map_err(|_| TlogProofError::Malformed("the extra data is not base64"))?;
                if extra.is_empty() {
                    return Err(TlogProofError::Malformed("an extra line with no data"));
                }
                line = next_line()?;
                Some(extra)
            }
            None => None,
        };
        let index = line.strip_prefix("index ").and_then(parse_decimal).ok_or(
            TlogProofError::Malformed("expected index <decimal with no leading zeros>"),
        )?;
        let mut inclusion_proof = Vec::new();
        loop {
            let line = next_line()?;
            if line.is_empty() {
                break;
            }
            let hash: Hash = STANDARD
                .decode(line)
                .ok()
                .and_then(|h| h.try_into().ok())
                .ok_or(TlogProofError::Malformed(
                    "a proof line must be the base64 of a 32-byte hash",
                ))?;
            inclusion_proof.push(hash);
        }
        let proof = Self {
            extra,
            index,
            inclusion_proof,
            checkpoint: rest.to_owned(),
        };
        proof.unverified_checkpoint()?;
        Ok(proof)
    }

    /// The checkpoint body, read from the note without checking any
    /// signature: for display and routing only, never to trust.
    pub fn unverified_checkpoint(&self) -> Result<Checkpoint, TlogProofError> {
        // The note's text ends at its last blank line (c2sp.org/signed-note).
        let split = self
            .checkpoint
            .rfind("\n\n")
            .ok_or(TlogProofError::Malformed(
                "the checkpoint is not a signed note",
            ))?;
        Ok(Checkpoint::parse(&self.checkpoint[..=split])?)
    }

    /// Verifies the proof for the entry whose leaf hash is `leaf_hash`
    /// (computing it is the application's business): the checkpoint is of
    /// log `origin` and signed by one of `log_verifiers` (see
    /// [`crate::crypto::note::open_note`]), and the inclusion proof puts
    /// the leaf at `index` in its tree. Returns the verified checkpoint.
    ///
    /// Witness cosignatures (c2sp.org/tlog-cosignature, a timestamped
    /// signature type) are not checked here; they are lines of unknown keys
    /// to this verifier, which the note rules let it ignore.
    pub fn verify(
        &self,
        leaf_hash: &Hash,
        origin: &str,
        log_verifiers: &[NoteVerifier],
    ) -> Result<Checkpoint, TlogProofError> {
        let checkpoint = Checkpoint::open(&self.checkpoint, origin, log_verifiers)?;
        merkle::verify_inclusion(
            leaf_hash,
            self.index,
            checkpoint.size,
            &self.inclusion_proof,
            &checkpoint.root_hash,
        )?;
        Ok(checkpoint)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::{
        ed25519::SigningKey,
        merkle::MerkleTree,
        note::{self, NoteError, NoteSigner},
        test_support::read_testdata,
    };

    #[test]
    fn spec_example_round_trips_byte_for_byte() {
        // c2sp.org/tlog-proof: the example. Its signatures are elided with
        // "[...]" in the spec, so it parses (the body is checked) but could
        // never verify.
        let text = read_testdata("c2sp/tlog-proof-example.txt");
        let proof = TlogProof::parse(&text).expect("spec example parses");
        assert_eq!(
            proof.extra.as_deref().map(|e| &e[..30]),
            Some(&b"age-v1.2.1-darwin-arm64.tar.gz"[..])
        );
        assert_eq!(proof.index, 73894);
        assert_eq!(proof.inclusion_proof.len(), 5);
        assert_eq!(
            STANDARD.encode(proof.inclusion_proof[0]),
            "gSKyXoYZUgZ6jduWYrkDOARinOMGJveXjgMkBTcdPlQ="
        );
        assert!(
            proof
                .checkpoint
                .starts_with("example.com/fancylog\n109482\n")
        );
        assert!(proof.checkpoint.ends_with("3oEcROGLFQ==\n"));
        let checkpoint = proof.unverified_checkpoint().expect("checkpoint body");
        assert_eq!(checkpoint.origin, "example.com/fancylog");
        assert_eq!(checkpoint.size, 109482);
        assert_eq!(proof.encode().expect("encode"), text);
    }

    /// A log of 11 entries, its key, and the proof of entry 6.
    fn log_and_proof() -> (NoteSigner, Vec<Hash>, TlogProof) {
        let signer = NoteSigner::new(
            "openoes.example/log",
            SigningKey::from_seed(&[4u8; 32]).expect("key"),
        )
        .expect("signer");
        let leaves: Vec<Hash> = (0u8..11).map(|i| merkle::leaf_hash(&[b'e', i])).collect();
        let tree = MerkleTree::from_leaf_hashes(leaves.clone());
        let checkpoint = Checkpoint {
            origin: "openoes.example/log".into(),
            size: tree.len(),
            root_hash: tree.root(),
            extensions: vec![],
        };
        let proof = TlogProof {
            extra: None,
            index: 6,
            inclusion_proof: tree.inclusion_proof(6, tree.len()).expect("proof"),
            checkpoint: checkpoint.sign(&signer).expect("sign"),
        };
        (signer, leaves, proof)
    }

    #[test]
    fn verifies_and_fails_for_the_right_reason() {
        let (signer, leaves, proof) = log_and_proof();
        let log = [signer.verifier()];
        let origin = "openoes.example/log";
        let text = proof.encode().expect("encode");
        assert!(!text.contains("extra"));
        let parsed = TlogProof::parse(&text).expect("parse");
        assert_eq!(parsed, proof);
        assert_eq!(
            parsed.verify(&leaves[6], origin, &log).map(|c| c.size),
            Ok(11)
        );

        // Another entry.
        assert_eq!(
            parsed.verify(&leaves[5], origin, &log),
            Err(TlogProofError::Inclusion(MerkleError::RootMismatch))
        );
        // A wrong index.
        let mut wrong_index = parsed.clone();
        wrong_index.index = 7;
        assert_eq!(
            wrong_index.verify(&leaves[6], origin, &log),
            Err(TlogProofError::Inclusion(MerkleError::RootMismatch))
        );
        // A changed byte in a proof hash, through the text.
        let hash_line = STANDARD.encode(parsed.inclusion_proof[1]);
        let mut bytes = parsed.inclusion_proof[1];
        bytes[0] ^= 0x80;
        let tampered = text.replacen(&hash_line, &STANDARD.encode(bytes), 1);
        assert_eq!(
            TlogProof::parse(&tampered)
                .expect("parse")
                .verify(&leaves[6], origin, &log),
            Err(TlogProofError::Inclusion(MerkleError::RootMismatch))
        );
        // A dropped proof hash.
        let mut short = parsed.clone();
        short.inclusion_proof.pop();
        assert!(matches!(
            short.verify(&leaves[6], origin, &log),
            Err(TlogProofError::Inclusion(
                MerkleError::WrongProofLength { .. }
            ))
        ));
        // Another log key: no trusted signature.
        let stranger = NoteSigner::new(
            "openoes.example/log",
            SigningKey::from_seed(&[5u8; 32]).expect("key"),
        )
        .expect("signer");
        assert_eq!(
            parsed.verify(&leaves[6], origin, &[stranger.verifier()]),
            Err(TlogProofError::Checkpoint(CheckpointError::Note(
                NoteError::NoTrustedSignature
            )))
        );
        // A checkpoint whose size was changed after signing.
        let resized = text.replacen("\n11\n", "\n12\n", 1);
        assert!(matches!(
            TlogProof::parse(&resized)
                .expect("parse")
                .verify(&leaves[6], origin, &log),
            Err(TlogProofError::Checkpoint(CheckpointError::Note(
                NoteError::InvalidSignature { .. }
            )))
        ));
        // Another origin.
        assert!(matches!(
            parsed.verify(&leaves[6], "openoes.example/other", &log),
            Err(TlogProofError::Checkpoint(
                CheckpointError::OriginMismatch { .. }
            ))
        ));
    }

    #[test]
    fn cosigned_checkpoint_and_extra_round_trip() {
        let (signer, leaves, mut proof) = log_and_proof();
        let witness = NoteSigner::new(
            "witness.example",
            SigningKey::from_seed(&[6u8; 32]).expect("key"),
        )
        .expect("signer");
        proof.checkpoint = note::cosign_note(&proof.checkpoint, &witness).expect("cosign");
        proof.extra = Some(b"artifact.tar.gz".to_vec());
        let text = proof.encode().expect("encode");
        assert!(text.contains("\nextra YXJ0aWZhY3QudGFyLmd6\nindex 6\n"));
        let parsed = TlogProof::parse(&text).expect("parse");
        assert_eq!(parsed, proof);
        // The log's key alone verifies; the witness line is an unknown key.
        assert!(
            parsed
                .verify(&leaves[6], "openoes.example/log", &[signer.verifier()])
                .is_ok()
        );
    }

    #[test]
    fn single_entry_log_has_an_empty_proof() {
        let signer = NoteSigner::new(
            "openoes.example/log",
            SigningKey::from_seed(&[4u8; 32]).expect("key"),
        )
        .expect("signer");
        let leaf = merkle::leaf_hash(b"only");
        let checkpoint = Checkpoint {
            origin: "openoes.example/log".into(),
            size: 1,
            root_hash: merkle::root(&[leaf]),
            extensions: vec![],
        };
        let proof = TlogProof {
            extra: None,
            index: 0,
            inclusion_proof: vec![],
            checkpoint: checkpoint.sign(&signer).expect("sign"),
        };
        let text = proof.encode().expect("encode");
        assert!(text.starts_with("c2sp.org/tlog-proof@v1\nindex 0\n\nopenoes.example/log\n1\n"));
        let parsed = TlogProof::parse(&text).expect("parse");
        assert!(
            parsed
                .verify(&leaf, "openoes.example/log", &[signer.verifier()])
                .is_ok()
        );
    }

    #[test]
    fn malformed_proofs_are_refused() {
        let (_, _, proof) = log_and_proof();
        let text = proof.encode().expect("encode");
        let cases = [
            text.replacen(TLOG_PROOF_HEADER, "c2sp.org/tlog-proof@v2", 1),
            text.replacen("index 6", "index 06", 1),
            text.replacen("index 6", "index", 1),
            text.replacen("index 6\n", "index 6\nextra AAAA\n", 1),
            text.replacen("index 6\n", "extra \nindex 6\n", 1),
            text.replacen("index 6\n", "index 6\nAAAA\n", 1),
            text.replacen("\n\nopenoes", "\nopenoes", 1),
            text.replacen(
                "openoes.example/log\n11\n",
                "openoes.example/log\neleven\n",
                1,
            ),
            format!("{TLOG_PROOF_HEADER}\nindex 0\n"),
            String::new(),
        ];
        for bad in cases {
            assert!(TlogProof::parse(&bad).is_err(), "{bad:?}");
        }
    }
}
