//! RFC 9162 (formerly RFC 6962) Merkle trees over SHA-256.
//!
//! This is the tree of Certificate Transparency and of every C2SP
//! transparency log, so a root we put in a checkpoint, and an inclusion proof
//! we hand out, are checked by any tlog client without our code:
//!
//! - a leaf hashes as `SHA-256(0x00 || leaf)`, an interior node as
//!   `SHA-256(0x01 || left || right)`: the prefixes keep a leaf from passing
//!   for a node (second-preimage attacks);
//! - a tree of `n > 1` leaves splits at `k`, the largest power of two smaller
//!   than `n`: the left part is a complete tree of `k` leaves;
//! - the empty tree's root is `SHA-256("")`.
//!
//! [`MerkleTree`] hashes every level once (about `2n` hashes for `n` leaves)
//! and then answers roots and proofs for any size up to `n` in `O(log² n)`
//! hashes; [`root`] computes one root in one pass with `O(log n)` memory.

use thiserror::Error;

use crate::crypto::sha256;

/// A SHA-256 hash: a leaf hash, a node hash or a root.
pub type Hash = [u8; 32];

/// Domain separation prefix of a leaf hash (RFC 9162 section 2.1.1).
const LEAF_PREFIX: u8 = 0x00;

/// Domain separation prefix of an interior node hash.
const NODE_PREFIX: u8 = 0x01;

/// Why an inclusion proof could not be made or does not verify.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum MerkleError {
    /// The leaf index is not inside the tree.
    #[error("leaf index {index} is not below tree size {size}")]
    IndexOutOfRange {
        /// The leaf index asked for.
        index: u64,
        /// The size of the tree.
        size: u64,
    },
    /// A proof was asked for a tree larger than the leaves held.
    #[error("tree size {size} is larger than the {leaves} leaves held")]
    SizeBeyondTree {
        /// The tree size asked for.
        size: u64,
        /// How many leaves the tree holds.
        leaves: u64,
    },
    /// The proof has the wrong number of hashes for this index and size,
    /// which is how a proof for another index or size usually shows.
    #[error("inclusion proof has {got} hashes; leaf {index} of a tree of size {size} needs {want}")]
    WrongProofLength {
        /// The leaf index.
        index: u64,
        /// The tree size.
        size: u64,
        /// Hashes in the proof.
        got: usize,
        /// Hashes the index and size call for.
        want: usize,
    },
    /// The proof is well formed but leads to another root: the leaf, a proof
    /// hash or the root is not the one it claims to be.
    #[error("inclusion proof does not lead to the expected root")]
    RootMismatch,
}

/// The root of the empty tree: `SHA-256("")`.
pub fn empty_root() -> Hash {
    sha256(&[])
}

/// The hash of a leaf: `SHA-256(0x00 || leaf)`.
pub fn leaf_hash(leaf: &[u8]) -> Hash {
    sha256(&[&[LEAF_PREFIX], leaf])
}

/// The hash of an interior node: `SHA-256(0x01 || left || right)`.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    sha256(&[&[NODE_PREFIX], left, right])
}

/// The root of the tree whose leaves have these hashes, in one pass.
///
/// Keeps a stack of the complete subtrees seen so far (at most one per
/// height, so `O(log n)` of them), merging two of equal height as soon as
/// they appear; at the end it folds the stack from the right, which is
/// exactly the split at the largest power of two.
pub fn root(leaf_hashes: &[Hash]) -> Hash {
    // (height, hash) of complete subtrees, heights strictly decreasing.
    let mut stack: Vec<(u32, Hash)> = Vec::with_capacity(64);
    for leaf in leaf_hashes {
        let mut current = (0, *leaf);
        while let Some(&(height, left)) = stack.last() {
            if height != current.0 {
                break;
            }
            stack.pop();
            current = (height + 1, node_hash(&left, &current.1));
        }
        stack.push(current);
    }
    let Some((_, mut acc)) = stack.pop() else {
        return empty_root();
    };
    while let Some((_, left)) = stack.pop() {
        acc = node_hash(&left, &acc);
    }
    acc
}

/// A Merkle tree with every complete subtree hashed once, to answer roots
/// and inclusion proofs for any tree size up to its leaf count.
#[derive(Clone, Debug)]
pub struct MerkleTree {
    /// `levels[h][j]` is the root of the complete subtree of `2^h` leaves
    /// starting at leaf `j * 2^h`; `levels[0]` are the leaf hashes. A level
    /// holds only complete subtrees, so `levels[h].len() == n >> h`.
    levels: Vec<Vec<Hash>>,
}

impl MerkleTree {
    /// Builds the tree from the leaf hashes (see [`leaf_hash`]), hashing
    /// each level once: `n - 1` node hashes at most for `n` leaves.
    pub fn from_leaf_hashes(leaf_hashes: Vec<Hash>) -> Self {
        let mut levels = vec![leaf_hashes];
        loop {
            let below = &levels[levels.len() - 1];
            if below.len() < 2 {
                break;
            }
            let level = below
                .chunks_exact(2)
                .map(|pair| node_hash(&pair[0], &pair[1]))
                .collect();
            levels.push(level);
        }
        Self { levels }
    }

    /// How many leaves the tree holds.
    pub fn len(&self) -> u64 {
        self.levels[0].len() as u64
    }

    /// Whether the tree has no leaves.
    pub fn is_empty(&self) -> bool {
        self.levels[0].is_empty()
    }

    /// The root over all the leaves.
    pub fn root(&self) -> Hash {
        self.range_root(0, self.levels[0].len())
    }

    /// The root of the tree made of the first `size` leaves: the root a log
    /// had when it was that size.
    pub fn root_at(&self, size: u64) -> Result<Hash, MerkleError> {
        let end = self.check_size(size)?;
        Ok(self.range_root(0, end))
    }

    /// The inclusion proof (audit path, RFC 9162 section 2.1.3.1) of the
    /// leaf at `index` in the tree of the first `size` leaves: the sibling
    /// hashes from the leaf's up to the root's children.
    pub fn inclusion_proof(&self, index: u64, size: u64) -> Result<Vec<Hash>, MerkleError> {
        let end = self.check_size(size)?;
        if index >= size {
            return Err(MerkleError::IndexOutOfRange { index, size });
        }
        let leaf = index as usize; // index < size <= len, which is a usize
        // Walk from the root down to the leaf, recording at each split the
        // root of the half that does not hold the leaf; the proof lists
        // them leaf first, so reverse at the end.
        let mut path = Vec::with_capacity(inclusion_proof_len(index, size));
        let (mut start, mut end) = (0usize, end);
        while end - start > 1 {
            let k = largest_power_of_two_below(end - start);
            if leaf < start + k {
                path.push(self.range_root(start + k, end));
                end = start + k;
            } else {
                path.push(self.range_root(start, start + k));
                start += k;
            }
        }
        path.reverse();
        Ok(path)
    }

    /// `size` as an index bound, if the tree holds that many leaves.
    fn check_size(&self, size: u64) -> Result<usize, MerkleError> {
        if size > self.len() {
            return Err(MerkleError::SizeBeyondTree {
                size,
                leaves: self.len(),
            });
        }
        Ok(size as usize) // size <= len, which is a usize
    }

    /// The root of leaves `start..end`, for the ranges the RFC's recursion
    /// produces: `start` is a multiple of the smallest power of two not
    /// below `end - start`, so each power-of-two piece is a stored subtree.
    fn range_root(&self, start: usize, end: usize) -> Hash {
        let n = end - start;
        if n == 0 {
            return empty_root();
        }
        if n.is_power_of_two() {
            let height = n.trailing_zeros() as usize;
            return self.levels[height][start >> height];
        }
        let k = largest_power_of_two_below(n);
        node_hash(
            &self.range_root(start, start + k),
            &self.range_root(start + k, end),
        )
    }
}

/// The largest power of two strictly smaller than `n` (`n >= 2`): where RFC
/// 9162 splits a tree of `n` leaves.
fn largest_power_of_two_below(n: usize) -> usize {
    debug_assert!(n >= 2);
    1 << (usize::BITS - 1 - (n - 1).leading_zeros())
}

/// How many hashes the inclusion proof of leaf `index` in a tree of `size`
/// leaves has (`index < size`): one per level below the point where the
/// paths to `index` and to the last leaf part (the inner part), plus one per
/// left sibling above it (the border, where the right edge of an unbalanced
/// tree has no sibling on some levels).
fn inclusion_proof_len(index: u64, size: u64) -> usize {
    let inner = (u64::BITS - (index ^ (size - 1)).leading_zeros()) as usize;
    let border = (index >> inner).count_ones() as usize;
    inner + border
}

/// The root that an inclusion proof leads to from `leaf_hash` at `index` in
/// a tree of `size` leaves (RFC 9162 section 2.1.3.2), after checking that
/// the index is in the tree and that the proof has the right length.
pub fn root_from_inclusion_proof(
    leaf_hash: &Hash,
    index: u64,
    size: u64,
    proof: &[Hash],
) -> Result<Hash, MerkleError> {
    if index >= size {
        return Err(MerkleError::IndexOutOfRange { index, size });
    }
    let want = inclusion_proof_len(index, size);
    if proof.len() != want {
        return Err(MerkleError::WrongProofLength {
            index,
            size,
            got: proof.len(),
            want,
        });
    }
    // The RFC's algorithm: `node` and `last` are the positions of the leaf
    // and of the tree's last leaf at the current level.
    let (mut node, mut last) = (index, size - 1);
    let mut acc = *leaf_hash;
    for sibling in proof {
        if node & 1 == 1 || node == last {
            acc = node_hash(sibling, &acc);
            // A node on the right edge with no right sibling is promoted
            // unchanged until it is a right child again.
            while node & 1 == 0 && node != 0 {
                node >>= 1;
                last >>= 1;
            }
        } else {
            acc = node_hash(&acc, sibling);
        }
        node >>= 1;
        last >>= 1;
    }
    // The length check above guarantees this; it is the RFC's own final
    // condition, kept so that the loop stands on its own.
    if last != 0 {
        return Err(MerkleError::WrongProofLength {
            index,
            size,
            got: proof.len(),
            want,
        });
    }
    Ok(acc)
}

/// Checks that `proof` proves the leaf with hash `leaf_hash` is at `index`
/// in the tree of `size` leaves whose root is `root`.
pub fn verify_inclusion(
    leaf_hash: &Hash,
    index: u64,
    size: u64,
    proof: &[Hash],
    root: &Hash,
) -> Result<(), MerkleError> {
    // Roots and proofs are public, so a plain comparison is fine.
    if root_from_inclusion_proof(leaf_hash, index, size, proof)? == *root {
        Ok(())
    } else {
        Err(MerkleError::RootMismatch)
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use base64::{Engine as _, engine::general_purpose::STANDARD};
    use serde::Deserialize;

    use super::*;
    use crate::crypto::test_support::{hex, testdata, to_hex};

    /// The reference leaves of transparency-dev/merkle (`testonly.LeafInputs`).
    fn reference_leaves() -> Vec<Vec<u8>> {
        [
            "",
            "00",
            "10",
            "2021",
            "3031",
            "40414243",
            "5051525354555657",
            "606162636465666768696a6b6c6d6e6f",
        ]
        .iter()
        .map(|h| hex(h))
        .collect()
    }

    /// Its roots for sizes 0..=8 (`testonly.RootHashes`).
    const REFERENCE_ROOTS: [&str; 9] = [
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    ];

    fn reference_leaf_hashes() -> Vec<Hash> {
        reference_leaves().iter().map(|l| leaf_hash(l)).collect()
    }

    fn h(s: &str) -> Hash {
        hex(s).try_into().expect("32 bytes")
    }

    #[test]
    fn hasher_known_answers() {
        // transparency-dev/merkle rfc6962/rfc6962_test.go
        assert_eq!(to_hex(&empty_root()), REFERENCE_ROOTS[0]);
        assert_eq!(
            to_hex(&leaf_hash(b"")),
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"
        );
        assert_eq!(
            to_hex(&leaf_hash(b"L123456")),
            "395aa064aa4c29f7010acfe3f25db9485bbd4b91897b6ad7ad547639252b4d56"
        );
    }

    #[test]
    fn reference_roots_for_every_size() {
        let leaves = reference_leaf_hashes();
        let tree = MerkleTree::from_leaf_hashes(leaves.clone());
        for (size, want) in REFERENCE_ROOTS.iter().enumerate() {
            assert_eq!(to_hex(&root(&leaves[..size])), *want, "root, size {size}");
            let got = tree.root_at(size as u64).expect("size within tree");
            assert_eq!(to_hex(&got), *want, "root_at, size {size}");
            let small = MerkleTree::from_leaf_hashes(leaves[..size].to_vec());
            assert_eq!(to_hex(&small.root()), *want, "tree root, size {size}");
        }
        assert_eq!(
            tree.root_at(9),
            Err(MerkleError::SizeBeyondTree { size: 9, leaves: 8 })
        );
    }

    /// transparency-dev/merkle testonly/reference_test.go TestRefInclusionProof.
    #[test]
    fn reference_inclusion_proofs() {
        let cases: [(u64, u64, &[&str]); 7] = [
            (0, 1, &[]),
            (
                0,
                2,
                &["96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7"],
            ),
            (
                1,
                2,
                &["6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"],
            ),
            (
                2,
                3,
                &["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"],
            ),
            (
                1,
                5,
                &[
                    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
                    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                    "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                ],
            ),
            (
                0,
                8,
                &[
                    "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                    "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
                ],
            ),
            (
                5,
                8,
                &[
                    "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                    "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
                ],
            ),
        ];
        let tree = MerkleTree::from_leaf_hashes(reference_leaf_hashes());
        for (index, size, want) in cases {
            let proof = tree.inclusion_proof(index, size).expect("proof");
            let want: Vec<Hash> = want.iter().map(|s| h(s)).collect();
            assert_eq!(proof, want, "proof of {index} in {size}");
        }
    }

    /// Every proof of every leaf in every tree size up to 70 verifies, and
    /// the same proof fails for every other index. 70 covers all shapes of
    /// the first levels, perfect and not.
    #[test]
    fn all_small_proofs_verify_and_only_for_their_position() {
        let leaves: Vec<Hash> = (0u32..70).map(|i| leaf_hash(&i.to_be_bytes())).collect();
        let tree = MerkleTree::from_leaf_hashes(leaves.clone());
        for size in 1..=tree.len() {
            let root = tree.root_at(size).expect("root");
            assert_eq!(root, super::root(&leaves[..size as usize]));
            for index in 0..size {
                let proof = tree.inclusion_proof(index, size).expect("proof");
                let leaf = &leaves[index as usize];
                assert_eq!(proof.len(), inclusion_proof_len(index, size));
                assert_eq!(verify_inclusion(leaf, index, size, &proof, &root), Ok(()));
                for other in (0..size).filter(|&o| o != index) {
                    assert!(verify_inclusion(leaf, other, size, &proof, &root).is_err());
                }
                // A proof does not bind the size when the other size gives
                // the path the same shape (leaf 0 of 5 and of 6, say): the
                // signed checkpoint binds it. Where the shape differs, the
                // length check must catch it.
                for other_size in [size - 1, size + 1] {
                    if other_size > index && inclusion_proof_len(index, other_size) != proof.len() {
                        assert!(matches!(
                            verify_inclusion(leaf, index, other_size, &proof, &root),
                            Err(MerkleError::WrongProofLength { .. })
                        ));
                    }
                }
            }
        }
    }

    #[test]
    fn each_failure_names_its_reason() {
        let leaves = reference_leaf_hashes();
        let tree = MerkleTree::from_leaf_hashes(leaves.clone());
        let root = tree.root();
        // Leaf 5 of 8 has a 3-hash proof; leaf 6 of 7 has 2 (index 6 = the
        // lone last leaf, whose path skips level 0).
        let proof = tree.inclusion_proof(5, 8).expect("proof");
        assert_eq!(verify_inclusion(&leaves[5], 5, 8, &proof, &root), Ok(()));

        // A changed byte in a proof hash.
        let mut changed = proof.clone();
        changed[1][7] ^= 0x01;
        assert_eq!(
            verify_inclusion(&leaves[5], 5, 8, &changed, &root),
            Err(MerkleError::RootMismatch)
        );
        // Another leaf at the same position.
        assert_eq!(
            verify_inclusion(&leaves[4], 5, 8, &proof, &root),
            Err(MerkleError::RootMismatch)
        );
        // Wrong index with the same proof length: the hashes go the wrong way.
        assert_eq!(
            verify_inclusion(&leaves[5], 4, 8, &proof, &root),
            Err(MerkleError::RootMismatch)
        );
        // Wrong size that changes the proof shape.
        assert_eq!(
            verify_inclusion(&leaves[5], 5, 6, &proof, &root),
            Err(MerkleError::WrongProofLength {
                index: 5,
                size: 6,
                got: 3,
                want: 2
            })
        );
        // Index outside the tree.
        assert_eq!(
            verify_inclusion(&leaves[5], 8, 8, &proof, &root),
            Err(MerkleError::IndexOutOfRange { index: 8, size: 8 })
        );
        assert_eq!(
            verify_inclusion(&leaves[0], 0, 0, &[], &empty_root()),
            Err(MerkleError::IndexOutOfRange { index: 0, size: 0 })
        );
        // A proof with a hash too many, or too few.
        let mut longer = proof.clone();
        longer.push(root);
        assert!(matches!(
            verify_inclusion(&leaves[5], 5, 8, &longer, &root),
            Err(MerkleError::WrongProofLength {
                got: 4,
                want: 3,
                ..
            })
        ));
        assert!(matches!(
            verify_inclusion(&leaves[5], 5, 8, &proof[..2], &root),
            Err(MerkleError::WrongProofLength {
                got: 2,
                want: 3,
                ..
            })
        ));
        // Asking for proofs outside the tree.
        assert_eq!(
            tree.inclusion_proof(8, 8),
            Err(MerkleError::IndexOutOfRange { index: 8, size: 8 })
        );
        assert_eq!(
            tree.inclusion_proof(0, 9),
            Err(MerkleError::SizeBeyondTree { size: 9, leaves: 8 })
        );
    }

    #[test]
    fn hundred_thousand_leaves_in_one_pass() {
        const N: u64 = 100_000;
        let leaves: Vec<Hash> = (0..N).map(|i| leaf_hash(&i.to_be_bytes())).collect();
        let tree = MerkleTree::from_leaf_hashes(leaves.clone());
        // One pass: the levels hold n + n/2 + n/4 + ... < 2n hashes.
        let stored: usize = tree.levels.iter().map(Vec::len).sum();
        assert!(stored < 2 * N as usize, "{stored} hashes stored");
        let root = tree.root();
        assert_eq!(root, super::root(&leaves));
        let index = 77_777;
        let proof = tree.inclusion_proof(index, N).expect("proof");
        // 100,000 leaves: 17 levels, one promoted node on the right edge.
        assert_eq!(proof.len(), inclusion_proof_len(index, N));
        assert_eq!(
            verify_inclusion(&leaves[index as usize], index, N, &proof, &root),
            Ok(())
        );
        assert_eq!(
            verify_inclusion(&leaves[index as usize + 1], index, N, &proof, &root),
            Err(MerkleError::RootMismatch)
        );
    }

    /// One file of transparency-dev/merkle's `testdata/inclusion`.
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct InclusionProbe {
        leaf_idx: u64,
        tree_size: u64,
        root: String,
        leaf_hash: String,
        proof: Option<Vec<String>>,
        desc: String,
        want_err: bool,
    }

    /// Decodes a probe's base64 field into a hash; the probes write some
    /// hashes with the wrong length on purpose, and our typed API cannot
    /// even take those, which counts as rejecting the probe.
    fn probe_hash(b64: &str) -> Option<Hash> {
        STANDARD.decode(b64).ok()?.try_into().ok()
    }

    fn probe_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
        for entry in std::fs::read_dir(dir).expect("read testdata dir") {
            let path = entry.expect("dir entry").path();
            if path.is_dir() {
                probe_files(&path, out);
            } else if path.extension().is_some_and(|e| e == "json") {
                out.push(path);
            }
        }
    }

    /// Every probe of transparency-dev/merkle's `testdata/inclusion`
    /// (copied verbatim), the ones that must verify and the ones that must not.
    #[test]
    fn transparency_dev_inclusion_probes() {
        let dir = testdata("transparency-dev-merkle/inclusion");
        let mut files = Vec::new();
        probe_files(&dir, &mut files);
        files.sort();
        assert_eq!(files.len(), 98, "all of the reference's inclusion probes");

        let (mut accepted, mut rejected_by_type, mut rejected_by_verify) = (0, 0, 0);
        for file in &files {
            let text = std::fs::read_to_string(file).expect("probe");
            let probe: InclusionProbe = serde_json::from_str(&text).expect("probe json");
            let name = format!("{}: {}", file.display(), probe.desc);
            let typed = (|| {
                let root = probe_hash(&probe.root)?;
                let leaf = probe_hash(&probe.leaf_hash)?;
                let proof: Option<Vec<Hash>> = probe
                    .proof
                    .iter()
                    .flatten()
                    .map(|p| probe_hash(p))
                    .collect();
                Some((root, leaf, proof?))
            })();
            let Some((root, leaf, proof)) = typed else {
                assert!(
                    probe.want_err,
                    "{name}: a hash of the wrong length must fail"
                );
                rejected_by_type += 1;
                continue;
            };
            let result = verify_inclusion(&leaf, probe.leaf_idx, probe.tree_size, &proof, &root);
            if probe.want_err {
                assert!(result.is_err(), "{name}: must fail");
                rejected_by_verify += 1;
            } else {
                assert_eq!(result, Ok(()), "{name}: must verify");
                accepted += 1;
            }
        }
        // 6 happy paths; 26 probes hold a hash of the wrong length (a 9-byte
        // leaf, an empty root, an empty "garbage" proof entry), which the
        // typed API cannot take; the other 66 reach the verifier and fail.
        assert_eq!(
            (accepted, rejected_by_type, rejected_by_verify),
            (6, 26, 66)
        );
    }

    /// The happy-path probes are proofs over the same reference leaves, so
    /// our proof generator must produce exactly their proofs.
    #[test]
    fn generated_proofs_match_the_happy_path_probes() {
        let tree = MerkleTree::from_leaf_hashes(reference_leaf_hashes());
        for dir in ["1", "2", "3", "4"] {
            let path = testdata(&format!(
                "transparency-dev-merkle/inclusion/{dir}/happy-path.json"
            ));
            let text = std::fs::read_to_string(path).expect("probe");
            let probe: InclusionProbe = serde_json::from_str(&text).expect("probe json");
            let want: Vec<Hash> = probe
                .proof
                .iter()
                .flatten()
                .map(|p| probe_hash(p).expect("hash"))
                .collect();
            let got = tree
                .inclusion_proof(probe.leaf_idx, probe.tree_size)
                .expect("proof");
            assert_eq!(got, want, "{dir}/happy-path");
            let root = tree.root_at(probe.tree_size).expect("root");
            assert_eq!(Some(root), probe_hash(&probe.root));
        }
    }
}
