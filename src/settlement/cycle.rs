//! Signed cycles: the RFC 9162 tree over a cycle's reports, its C2SP
//! checkpoint, the WSP's check and countersignature, per-report proofs.
//! Offline, like [`crate::crypto`], which does the hashing and signing.
//!
//! - Leaves: each report's [`Report::leaf`] (RFC 8785 JSON with a random
//!   salt only that user's proof reveals), hashed, **sorted by leaf hash**:
//!   a position says nothing about the user, and both sides get one order
//!   from the same set, whatever order they recorded it in.
//! - The checkpoint's origin is `<exchange key name>/<cycle_id>`: each cycle
//!   is its own log, signed by the exchange's key; the WSP's signature is a
//!   second line of the same note.

use std::{
    collections::VecDeque,
    path::Path,
    sync::{Arc, Mutex},
};

use base64::{Engine as _, engine::general_purpose::STANDARD};

use super::model::Report;
use crate::{
    config::SettlementConfig,
    crypto::{
        checkpoint::{Checkpoint, CheckpointError},
        keys::{KeyError, ServerKey},
        merkle::{self, Hash, MerkleTree},
        note::{self, NoteError, NoteVerifier},
        tlog_proof::TlogProof,
    },
};

/// The signing and verifier keys of the link, from the configuration.
#[derive(Clone, Default)]
pub struct Keys {
    /// The exchange's key (exchange role): signs checkpoints.
    pub exchange: Option<Arc<ServerKey>>,
    /// The WSP's key (WSP role): countersigns.
    pub wsp: Option<Arc<ServerKey>>,
    /// The exchange's verifier key: what the WSP checks checkpoints with.
    pub exchange_verifier: Option<NoteVerifier>,
    /// The WSP's verifier key.
    pub wsp_verifier: Option<NoteVerifier>,
}

/// Why the keys could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum KeysError {
    /// A key file.
    #[error("settlement.{field}: {source}")]
    File {
        /// The setting.
        field: &'static str,
        /// What is wrong.
        source: KeyError,
    },
    /// A vkey.
    #[error("settlement.{field}: not a C2SP verifier key: {source}")]
    Vkey {
        /// The setting.
        field: &'static str,
        /// What is wrong.
        source: NoteError,
    },
}

impl Keys {
    /// Loads the keys `config` names; a file that cannot be read or a vkey
    /// that cannot be parsed is an error (start-up fails on it).
    pub fn load(config: &SettlementConfig) -> Result<Self, KeysError> {
        let file = |field: &'static str, path: &str| -> Result<Option<Arc<ServerKey>>, KeysError> {
            if path.is_empty() {
                return Ok(None);
            }
            ServerKey::read(Path::new(path))
                .map(|k| Some(Arc::new(k)))
                .map_err(|source| KeysError::File { field, source })
        };
        let vkey = |field: &'static str, text: &str| -> Result<Option<NoteVerifier>, KeysError> {
            if text.is_empty() {
                return Ok(None);
            }
            NoteVerifier::parse(text)
                .map(Some)
                .map_err(|source| KeysError::Vkey { field, source })
        };
        let exchange = file("exchange_key_file", &config.exchange_key_file)?;
        let wsp = file("wsp_key_file", &config.wsp_key_file)?;
        let exchange_verifier = vkey("exchange_vkey", &config.exchange_vkey)?
            .or_else(|| exchange.as_ref().map(|k| k.note_signer().verifier()));
        let wsp_verifier = vkey("wsp_vkey", &config.wsp_vkey)?
            .or_else(|| wsp.as_ref().map(|k| k.note_signer().verifier()));
        Ok(Self {
            exchange,
            wsp,
            exchange_verifier,
            wsp_verifier,
        })
    }
}

/// The checkpoint origin of `cycle_id` in the log of the exchange key
/// `key_name`.
pub fn origin(key_name: &str, cycle_id: &str) -> String {
    format!("{key_name}/{cycle_id}")
}

/// The sorted leaf hashes of `reports` (each with its salt).
pub fn leaf_hashes<'a>(reports: impl IntoIterator<Item = (&'a Report, &'a str)>) -> Vec<Hash> {
    let mut hashes: Vec<Hash> = reports
        .into_iter()
        .map(|(report, salt)| merkle::leaf_hash(&report.leaf(salt)))
        .collect();
    hashes.sort_unstable();
    hashes
}

/// A closed cycle's signed tree head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    /// The checkpoint's origin.
    pub origin: String,
    /// Leaves.
    pub size: u64,
    /// Root.
    pub root: Hash,
    /// The signed note.
    pub checkpoint: String,
}

/// Signs the tree of `hashes` (sorted) as `cycle_id`'s checkpoint with the
/// exchange's `key`.
pub fn sign(key: &ServerKey, cycle_id: &str, hashes: &[Hash]) -> Result<Head, CheckpointError> {
    let origin = origin(key.name(), cycle_id);
    let checkpoint = Checkpoint {
        origin: origin.clone(),
        size: hashes.len() as u64,
        root_hash: merkle::root(hashes),
        extensions: Vec::new(),
    };
    let text = checkpoint.sign(key.note_signer())?;
    Ok(Head {
        origin,
        size: checkpoint.size,
        root: checkpoint.root_hash,
        checkpoint: text,
    })
}

/// A summary entry read from R, as the exchange wrote it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// The cycle.
    pub cycle_id: String,
    /// Leaves it says.
    pub size: u64,
    /// Root it says.
    pub root: Hash,
    /// The signed note.
    pub checkpoint: String,
}

/// The WSP's check of `summary` against its own `hashes` (sorted) and the
/// exchange's `verifier`: `Ok(origin)` if everything agrees, else why not.
pub fn verify(
    summary: &Summary,
    hashes: &[Hash],
    verifier: Option<&NoteVerifier>,
) -> Result<String, String> {
    let Some(verifier) = verifier else {
        return Err(
            "no exchange verifier key is configured (settlement.exchange_vkey): the signature cannot be checked".into(),
        );
    };
    let origin = origin(verifier.name(), &summary.cycle_id);
    let checkpoint = Checkpoint::open(&summary.checkpoint, &origin, std::slice::from_ref(verifier))
        .map_err(|e| format!("the checkpoint does not verify with the exchange's key: {e}"))?;
    if checkpoint.size != summary.size || checkpoint.root_hash != summary.root {
        return Err("the checkpoint's size or root is not the summary's".into());
    }
    if summary.size != hashes.len() as u64 {
        return Err(format!(
            "the exchange's tree has {} leaves; the WSP recorded {} reports in the cycle",
            summary.size,
            hashes.len()
        ));
    }
    if merkle::root(hashes) != summary.root {
        return Err("the exchange's root is not the root of the reports the WSP recorded".into());
    }
    Ok(origin)
}

/// Adds the WSP's signature to a checkpoint note.
pub fn cosign(key: &ServerKey, checkpoint: &str) -> Result<String, NoteError> {
    note::cosign_note(checkpoint, key.note_signer())
}

/// A report's inclusion proof.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proof {
    /// The leaf's position.
    pub index: u64,
    /// Leaves in the tree.
    pub size: u64,
    /// The audit path, the leaf's sibling first.
    pub path: Vec<Hash>,
    /// The C2SP tlog-proof text.
    pub tlog_proof: String,
}

/// The proof of `leaf` in `tree` under `checkpoint`; `None` if the leaf is
/// not in it.
pub fn prove(tree: &MerkleTree, sorted: &[Hash], leaf: &Hash, checkpoint: &str) -> Option<Proof> {
    let index = sorted.binary_search(leaf).ok()? as u64;
    let size = tree.len();
    let path = tree.inclusion_proof(index, size).ok()?;
    let tlog_proof = TlogProof {
        extra: None,
        index,
        inclusion_proof: path.clone(),
        checkpoint: checkpoint.to_string(),
    }
    .encode()
    .ok()?;
    Some(Proof {
        index,
        size,
        path,
        tlog_proof,
    })
}

/// Parses leaf hashes stored as one string of 32-byte hashes.
pub fn parse_leaves(bytes: &[u8]) -> Option<Vec<Hash>> {
    if !bytes.len().is_multiple_of(32) {
        return None;
    }
    Some(
        bytes
            .chunks_exact(32)
            .map(|c| Hash::try_from(c).expect("32 bytes"))
            .collect(),
    )
}

/// Base64 of a hash, as checkpoints and summaries write roots.
pub fn b64(hash: &Hash) -> String {
    STANDARD.encode(hash)
}

/// Parses a base64 root.
pub fn parse_root(text: &str) -> Option<Hash> {
    STANDARD
        .decode(text)
        .ok()
        .and_then(|b| Hash::try_from(b.as_slice()).ok())
}

/// A closed cycle's leaf hashes in tree order, and its tree.
pub type CachedTree = (Vec<Hash>, MerkleTree);

/// A cached cycle: its id, its root, its tree.
type CacheEntry = (String, Hash, Arc<CachedTree>);

/// The trees of recently closed cycles, for proofs: building one hashes
/// every leaf, so each is built once and kept (at most `capacity`).
#[derive(Clone)]
pub struct TreeCache {
    /// (cycle, root, the tree's leaves in order and the tree), newest last.
    inner: Arc<Mutex<VecDeque<CacheEntry>>>,
    capacity: usize,
}

impl TreeCache {
    /// Room for `capacity` trees.
    pub fn new(capacity: usize) -> Self {
        Self {
            inner: Arc::default(),
            capacity,
        }
    }

    /// The kept tree of `cycle_id` with root `root`, if any.
    pub fn get(&self, cycle_id: &str, root: &Hash) -> Option<Arc<(Vec<Hash>, MerkleTree)>> {
        let cache = self.inner.lock().ok()?;
        cache
            .iter()
            .find(|(c, r, _)| c == cycle_id && r == root)
            .map(|(_, _, tree)| Arc::clone(tree))
    }

    /// Builds the tree of `sorted` leaves and keeps it for `cycle_id`.
    pub fn build(
        &self,
        cycle_id: &str,
        root: &Hash,
        sorted: Vec<Hash>,
    ) -> Arc<(Vec<Hash>, MerkleTree)> {
        let tree = Arc::new((sorted.clone(), MerkleTree::from_leaf_hashes(sorted)));
        if self.capacity > 0
            && let Ok(mut cache) = self.inner.lock()
        {
            if cache.len() >= self.capacity {
                cache.pop_front();
            }
            cache.push_back((cycle_id.to_string(), *root, Arc::clone(&tree)));
        }
        tree
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::{ed25519::SigningKey, note::NoteSigner};

    fn key(name: &str) -> ServerKey {
        ServerKey::from_signer(
            NoteSigner::new(name, SigningKey::generate().expect("key")).expect("signer"),
        )
    }

    #[test]
    fn a_signed_cycle_verifies_and_each_change_is_named() {
        let exchange = key("exchange.example/settlement");
        let hashes: Vec<Hash> = {
            let mut h: Vec<Hash> = (0..5u8).map(|i| merkle::leaf_hash(&[i])).collect();
            h.sort_unstable();
            h
        };
        let head = sign(&exchange, "2025-04-04", &hashes).expect("sign");
        let summary = Summary {
            cycle_id: "2025-04-04".into(),
            size: head.size,
            root: head.root,
            checkpoint: head.checkpoint.clone(),
        };
        let verifier = exchange.note_signer().verifier();
        assert_eq!(
            verify(&summary, &hashes, Some(&verifier)),
            Ok("exchange.example/settlement/2025-04-04".into())
        );
        assert!(
            verify(&summary, &hashes[..4], Some(&verifier))
                .expect_err("refused")
                .contains("leaves")
        );
        let stranger = key("exchange.example/settlement").note_signer().verifier();
        assert!(
            verify(&summary, &hashes, Some(&stranger))
                .expect_err("refused")
                .contains("does not verify")
        );
        assert!(
            verify(&summary, &hashes, None)
                .expect_err("refused")
                .contains("no exchange verifier")
        );

        // The proof of each leaf verifies under the countersigned note too.
        let wsp = key("wsp.example/settlement");
        let cosigned = cosign(&wsp, &head.checkpoint).expect("cosign");
        let tree = MerkleTree::from_leaf_hashes(hashes.clone());
        for leaf in &hashes {
            let proof = prove(&tree, &hashes, leaf, &cosigned).expect("in tree");
            let parsed = TlogProof::parse(&proof.tlog_proof).expect("parse");
            parsed
                .verify(
                    leaf,
                    &summary_origin(),
                    &[verifier.clone(), wsp.note_signer().verifier()],
                )
                .expect("verifies");
        }
        assert!(prove(&tree, &hashes, &merkle::leaf_hash(b"x"), &cosigned).is_none());
    }

    fn summary_origin() -> String {
        origin("exchange.example/settlement", "2025-04-04")
    }
}
