#!/usr/bin/env python3
"""Checks settlement proofs with pymerkle, an independent RFC 9162 tree.

tests/settlement_verify.rs runs it with one JSON file:

  {"leaves": [every leaf text of the cycle],          (optional)
   "cases": [{"name": ..., "proof": <GetSettlementProof proof as grpcurl
              prints it>}, ...]}

and reads one JSON object on stdout:

  {"pymerkle": version, "root": hex root of the rebuilt tree (or null),
   "size": its size, "results": [{"name", "ok", "errors": [...]}]}

Only the Merkle math is pymerkle's here; the checkpoint's signatures are
verify_settlement.py's business, its body (size and root) is read as text.
For each case:

  leaf hash: pymerkle's leaf hash of the leaf (SHA-256(0x00 || leaf)) is
    the proof's leaf_hash;
  path: the proof's audit path, as a pymerkle InclusionProof at the
    proof's index and size, verifies against the checkpoint's root, and the
    checkpoint's size (pymerkle's verify_inclusion);
  tree: with "leaves", a pymerkle tree of the cycle's leaves in leaf hash
    order (RFC 9162 has no order; openoes sorts by leaf hash) has the
    checkpoint's root and size, holds the leaf at the proof's index, gives
    the same audit path there, and the proof's path verifies against the
    rebuilt tree's root, size and the leaf's index in it.

pymerkle counts leaves from 1, openoes (and RFC 9162) from 0: index + 1.
Exits 0 whatever the verdicts (they are in the output), 2 on bad input.
"""

import base64
import json
import sys

import pymerkle
from pymerkle import InclusionProof, InmemoryTree, InvalidProof, verify_inclusion
from pymerkle.core import _inclusion_path_layout
from pymerkle.hasher import MerkleHasher

HASHER = MerkleHasher("sha256", security=True)


def field(proof, name, default=None):
    camel = "".join(w if i == 0 else w.capitalize() for i, w in enumerate(name.split("_")))
    return proof.get(camel, proof.get(name, default))


def checkpoint_body(note):
    """(size, root) of a checkpoint note, read without its signatures."""
    lines = note[: note.rindex("\n\n")].split("\n")
    return int(lines[1]), base64.b64decode(lines[2], validate=True)


def given_path_proof(base, index, size, path):
    """The proof's audit path as a pymerkle inclusion proof of the leaf at
    index (from 0) in size: pymerkle's path starts with the leaf hash, and
    its rule (which side each hash goes) is pymerkle's layout for that
    index and size, which its verify recomputes and requires anyway."""
    if not 0 <= index < size:
        raise InvalidProof(f"index {index} is not below size {size}")
    rule, _ = _inclusion_path_layout(index + 1, size)
    return InclusionProof("sha256", True, size, index + 1, rule, [base] + path)


def check(proof, tree):
    proof = proof.get("proof", proof)
    errors = []
    leaf = field(proof, "leaf").encode("utf-8")
    index = int(field(proof, "index", "0"))
    size = int(field(proof, "size", "0"))
    path = [base64.b64decode(h, validate=True) for h in field(proof, "audit_path", [])]
    cp_size, cp_root = checkpoint_body(field(proof, "checkpoint"))

    base = HASHER.hash_buff(leaf)
    given = field(proof, "leaf_hash")
    if given is not None and base64.b64decode(given, validate=True) != base:
        errors.append("leaf hash: pymerkle's leaf hash is not the proof's")

    try:
        verify_inclusion(base, cp_root, given_path_proof(base, index, size, path),
                         size=cp_size, algorithm="sha256", security=True)
    except InvalidProof as e:
        errors.append(f"path: {e}")

    if tree is not None:
        if tree.get_size() != cp_size:
            errors.append(f"tree: pymerkle's tree of the cycle has {tree.get_size()} leaves, the checkpoint {cp_size}")
        if tree.get_root() != cp_root:
            errors.append("tree: pymerkle's root of the cycle's leaves is not the checkpoint's")
        position = next((i for i in range(1, tree.get_size() + 1) if tree.get_leaf(i) == base), None)
        if position is None:
            errors.append("tree: the leaf is not in pymerkle's tree of the cycle")
        else:
            ours = tree.prove_inclusion(position)
            if position == index + 1 and ours.path[1:] != path:
                errors.append("tree: pymerkle's audit path of the leaf is not the proof's")
            try:
                given_path_proof(base, index, size, path).verify(
                    base, tree.get_root(), index=position, size=tree.get_size(),
                    algorithm="sha256", security=True)
            except InvalidProof as e:
                errors.append(f"tree: {e}")
    return errors


def main(argv):
    try:
        with open(argv[0], encoding="utf-8") as f:
            doc = json.load(f)
    except (IndexError, OSError, ValueError) as e:
        print(f"usage: pymerkle_check.py CASES.json ({e})", file=sys.stderr)
        return 2
    tree = None
    if doc.get("leaves") is not None:
        tree = InmemoryTree(algorithm="sha256")
        for leaf in sorted((l.encode("utf-8") for l in doc["leaves"]), key=HASHER.hash_buff):
            tree.append_entry(leaf)
    results = []
    for case in doc["cases"]:
        try:
            errors = check(case["proof"], tree)
        except (KeyError, TypeError, ValueError) as e:
            errors = [f"input: {type(e).__name__}: {e}"]
        results.append({"name": case["name"], "ok": not errors, "errors": errors})
    print(json.dumps({
        "pymerkle": pymerkle.__version__,
        "root": tree.get_root().hex() if tree else None,
        "size": tree.get_size() if tree else None,
        "results": results,
    }, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
