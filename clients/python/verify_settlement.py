#!/usr/bin/env python3
"""Verify an openoes settlement proof offline, against the signers' keys.

When a settlement cycle closes, the exchange commits to every report of
the cycle in an RFC 9162 Merkle tree (SHA-256) and signs its root as a
C2SP tlog-checkpoint (a signed note, Ed25519); the WSP countersigns it
once it has decided every report. GetSettlementProof hands a user the
proof that their line is in that tree. This script checks it with nothing
but the Python standard library (RFC 8032 Ed25519 verification is in
rfc8032.py beside it), so it trusts no code of the server and needs no
network:

  1. leaf: the leaf is RFC 8785 canonical JSON of exactly cycle_id,
     user_id, report_id, net_position ({asset: signed decimal string}) and
     salt (64 hex), and names the proof's report and cycle;
  2. leaf hash: SHA-256(0x00 || leaf) is the proof's leaf_hash;
  3. inclusion: the audit path from the leaf hash at index in a tree of
     size gives a root (the RFC 9162 section 2.1.3.2 algorithm);
  4. checkpoint: the note parses as a C2SP tlog-checkpoint; origin: it is
     <exchange key name>/<cycle_id>; size: it is the proof's size; root:
     it is the root the path gave;
  5. signature: every key given has a valid Ed25519 signature line on the
     note (C2SP signed-note: the line names the key and starts with its key
     ID, the first 4 bytes of SHA-256(name || "\\n" || 0x01 || public key));
     lines of other keys are ignored;
  6. tlog_proof: the proof's C2SP tlog-proof@v1 text says the same index,
     audit path and checkpoint.

Usage:
  verify_settlement.py PROOF [VKEY ...] [--keys KEYS.json [--role ROLE]]
                       [--leaf LEAF] [--origin ORIGIN]
                       [--report-id ID] [--user-id USER]

PROOF: a JSON file of the GetSettlementProof response as grpcurl prints it
({"proof": {...}}, or the proof object alone; bytes fields base64, names
camelCase or as in the .proto), or the tlog_proof text alone (a file that
starts with "c2sp.org/tlog-proof@v1"); with the text alone, --leaf FILE
gives the leaf (its exact bytes, e.g. the proof's "leaf" field saved as
is): the text carries index, path and checkpoint but not the leaf.

Keys (at least one): VKEY arguments in the C2SP form
<name>+<hex key ID>+<base64(0x01 || public key)>, and/or --keys FILE, the
GetSigningKeys response as grpcurl prints it ({"keys": [{"name", "vkey",
"role"}, ...]}); --role exchange (repeatable) keeps only those roles, e.g.
before the WSP has countersigned. Every key given must have signed.

The origin expected is --origin, else <name of the exchange's key>/<the
leaf's cycle_id>: the key of role "exchange" in --keys, else the first VKEY.

  python3 verify_settlement.py proof.json --keys keys.json
  python3 verify_settlement.py proof.txt --leaf leaf.json 'exch/settlement+1a2b3c4d+AQ...'

Prints "OK" and what was proven, or "FAIL" with one line per failed check,
each starting with the check's name (leaf:, leaf hash:, inclusion:,
checkpoint:, origin:, size:, root:, signature:, tlog_proof:, report:,
user:); exits 0 (verified), 1 (a check failed) or 2 (bad usage or input:
an unreadable file, a PROOF that is neither JSON nor a tlog proof, a
malformed vkey, no key).
"""

import argparse
import base64
import binascii
import hashlib
import json
import re
import sys

# Ed25519 verification: rfc8032.py, beside this file.
from rfc8032 import ed25519_verify  # noqa: E402


# === RFC 8785 JSON canonicalization, for what a leaf holds (strings, objects) ===

def jcs(value):
    """The canonical JSON text of value (objects and strings only: a leaf
    holds nothing else, and anything else is refused)."""
    if isinstance(value, dict):
        items = sorted(value.items(), key=lambda kv: kv[0].encode("utf-16-be"))
        return "{" + ",".join(jcs(k) + ":" + jcs(v) for k, v in items) + "}"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    raise ValueError(f"a leaf holds only objects and strings, not {value!r}")


# === RFC 9162 Merkle tree hashing and inclusion verification ===

def sha256(data):
    return hashlib.sha256(data).digest()


def leaf_hash(leaf):
    """SHA-256(0x00 || leaf)."""
    return sha256(b"\x00" + leaf)


def node_hash(left, right):
    """SHA-256(0x01 || left || right)."""
    return sha256(b"\x01" + left + right)


def root_from_inclusion_proof(index, size, leaf_digest, path):
    """The root that the audit path gives for the leaf hash at index in a
    tree of size leaves, by RFC 9162 section 2.1.3.2; raises ValueError if
    the path cannot be a proof of that index in that size."""
    if not 0 <= index < size:
        raise ValueError(f"index {index} is not below the tree size {size}")
    fn, sn, r = index, size - 1, leaf_digest
    for p in path:
        if sn == 0:
            raise ValueError(f"the audit path has {len(path)} hashes, too many for leaf {index} of {size}")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while fn != 0 and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ValueError(f"the audit path has {len(path)} hashes, too few for leaf {index} of {size}")
    return r


# === C2SP signed notes, verifier keys, checkpoints and tlog proofs ===

SIGNATURE_PREFIX = "\u2014 "  # an em dash and a space
TLOG_PROOF_HEADER = "c2sp.org/tlog-proof@v1"
DECIMAL = re.compile(r"0|[1-9][0-9]*")


class Malformed(ValueError):
    """A text that is not what it should be."""


def b64decode(text, what):
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError, TypeError):
        raise Malformed(f"{what} is not base64") from None


def is_key_name(name):
    return bool(name) and not any(c.isspace() or c == "+" for c in name)


def key_id(name, public_key):
    """The C2SP key ID: the first 4 bytes of SHA-256(name || "\\n" || 0x01 || key)."""
    return sha256(name.encode() + b"\n\x01" + public_key)[:4]


class Vkey:
    """A C2SP verifier key, <name>+<hex key ID>+<base64(0x01 || public key)>."""

    def __init__(self, text, role=None):
        parts = text.strip().split("+", 2)
        if len(parts) != 3:
            raise ValueError(f"vkey {text!r}: expected <name>+<hex key ID>+<base64 key>")
        name, hex_id, b64 = parts
        if not is_key_name(name):
            raise ValueError(f"vkey {text!r}: the name must be non-empty, with no spaces and no '+'")
        if not re.fullmatch(r"[0-9a-fA-F]{8}", hex_id):
            raise ValueError(f"vkey {text!r}: the key ID must be 8 hex digits")
        try:
            raw = base64.b64decode(b64, validate=True)
        except (binascii.Error, ValueError):
            raise ValueError(f"vkey {text!r}: the key is not base64") from None
        if len(raw) != 33 or raw[0] != 0x01:
            raise ValueError(f"vkey {text!r}: not an Ed25519 key (0x01 and 32 bytes)")
        self.name, self.public_key, self.role = name, raw[1:], role
        self.key_id = key_id(name, self.public_key)
        if self.key_id.hex() != hex_id.lower():
            raise ValueError(f"vkey {text!r}: key ID {hex_id} is not the key's, {self.key_id.hex()}")

    def __str__(self):
        role = f" ({self.role})" if self.role else ""
        return f"{self.name}+{self.key_id.hex()}{role}"


def parse_note(note):
    """(text, [(name, key ID, signature)]) of a signed note, unverified."""
    if "\n\n" not in note:
        raise Malformed("not a signed note (no blank line before the signatures)")
    if any(c < " " and c != "\n" for c in note):
        raise Malformed("a control character other than newline")
    split = note.rindex("\n\n")
    text, lines = note[: split + 1], note[split + 2:]
    if not lines.endswith("\n"):
        raise Malformed("the signature lines must end with a newline")
    signatures = []
    for line in lines[:-1].split("\n"):
        if not line.startswith(SIGNATURE_PREFIX) or " " not in line[len(SIGNATURE_PREFIX):]:
            raise Malformed(f"not a signature line: {line!r}")
        name, b64 = line[len(SIGNATURE_PREFIX):].split(" ", 1)
        payload = b64decode(b64, f"the signature of {name}")
        if not is_key_name(name) or len(payload) < 5:
            raise Malformed(f"not a signature line: {line!r}")
        signatures.append((name, payload[:4], payload[4:]))
    if not signatures:
        raise Malformed("no signature line")
    return text, signatures


def parse_checkpoint(text):
    """(origin, size, root) of a tlog-checkpoint note text."""
    lines = text[:-1].split("\n")
    if len(lines) < 3 or not lines[0]:
        raise Malformed("a checkpoint is an origin, a size and a root line")
    if not DECIMAL.fullmatch(lines[1]):
        raise Malformed(f"the size {lines[1]!r} is not a decimal without leading zeros")
    root = b64decode(lines[2], "the root")
    if len(root) != 32:
        raise Malformed("the root is not 32 bytes")
    if any(not line for line in lines[3:]):
        raise Malformed("an empty extension line")
    return lines[0], int(lines[1]), root


def parse_tlog_proof(text):
    """(index, audit path, checkpoint note) of a C2SP tlog-proof@v1 text."""
    lines = text.split("\n")
    if lines[0] != TLOG_PROOF_HEADER:
        raise Malformed(f"the first line is not {TLOG_PROOF_HEADER}")
    at = 1
    if at < len(lines) and lines[at].startswith("extra "):
        if not b64decode(lines[at][len("extra "):], "the extra data"):
            raise Malformed("an extra line with no data")
        at += 1
    if at >= len(lines) or not lines[at].startswith("index ") or not DECIMAL.fullmatch(lines[at][6:]):
        raise Malformed("expected index <decimal with no leading zeros>")
    index = int(lines[at][6:])
    at += 1
    path = []
    while at < len(lines) and lines[at]:
        digest = b64decode(lines[at], "a proof line")
        if len(digest) != 32:
            raise Malformed("a proof line is not a 32-byte hash")
        path.append(digest)
        at += 1
    if at >= len(lines) - 1:
        raise Malformed("the proof ends before the checkpoint")
    return index, path, "\n".join(lines[at + 1:])


# === reading the inputs ===

def field(proof, name, default=None):
    """A proof field by its JSON (camelCase) or its .proto name."""
    camel = re.sub(r"_([a-z])", lambda m: m.group(1).upper(), name)
    for key in (camel, name):
        if key in proof:
            return proof[key]
    return default


def as_int(value, what):
    """A uint64 as grpcurl prints it (a string) or as a number."""
    if isinstance(value, bool) or not isinstance(value, (int, str)) or not DECIMAL.fullmatch(str(value)):
        raise Malformed(f"{what} {value!r} is not a non-negative integer")
    return int(value)


def read_proof(text, leaf_text):
    """The proof as a dict of what was given: report_id, cycle_id, leaf,
    leaf_hash, index, size, audit_path, checkpoint, tlog_proof (None where
    absent). Raises ValueError for what cannot be read at all."""
    if text.startswith(TLOG_PROOF_HEADER + "\n"):
        if leaf_text is None:
            raise ValueError("a tlog proof alone needs --leaf: it does not carry the leaf")
        return {"leaf": leaf_text, "tlog_proof": text, "alone": True}
    try:
        doc = json.loads(text)
    except ValueError as e:
        raise ValueError(f"PROOF is neither JSON nor a {TLOG_PROOF_HEADER} text: {e}") from None
    if isinstance(doc, dict) and isinstance(doc.get("proof"), dict):
        doc = doc["proof"]
    if not isinstance(doc, dict) or field(doc, "leaf") is None or field(doc, "checkpoint") is None:
        raise ValueError("PROOF is not a settlement proof (no leaf or checkpoint)")
    proof = {"alone": False}
    for name in ("report_id", "cycle_id", "leaf", "checkpoint", "tlog_proof"):
        proof[name] = field(doc, name)
    if leaf_text is not None:
        proof["leaf"] = leaf_text
    # grpcurl leaves out fields at their default: index 0, an empty path.
    proof["index"] = field(doc, "index", "0")
    proof["size"] = field(doc, "size")
    proof["leaf_hash"] = field(doc, "leaf_hash")
    proof["audit_path"] = field(doc, "audit_path", [])
    return proof


def read_keys(vkeys, key_files, roles):
    keys = []
    for path in key_files:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
        entries = doc.get("keys") if isinstance(doc, dict) else doc
        if not isinstance(entries, list):
            raise ValueError(f"{path}: not a GetSigningKeys response (no keys list)")
        for entry in entries:
            if not isinstance(entry, dict) or not isinstance(entry.get("vkey"), str):
                raise ValueError(f"{path}: a key without a vkey")
            if not roles or entry.get("role") in roles:
                keys.append(Vkey(entry["vkey"], entry.get("role")))
    keys += [Vkey(v) for v in vkeys]
    if not keys:
        raise ValueError("no key to check the signatures with: give VKEY arguments or --keys"
                         + (f" (none of role {', '.join(roles)})" if roles else ""))
    return keys


# === the checks ===

LEAF_FIELDS = {"cycle_id", "user_id", "report_id", "net_position", "salt"}
SIGNED_DECIMAL = re.compile(r"[+-]?[0-9]+(\.[0-9]+)?")


def check_leaf(leaf, proof, expect):
    """Failures of the leaf's form and names, and the parsed leaf (or None)."""
    try:
        doc = json.loads(leaf)
    except ValueError as e:
        return [f"leaf: not JSON: {e}"], None
    if not isinstance(doc, dict) or set(doc) != LEAF_FIELDS:
        keys = sorted(doc) if isinstance(doc, dict) else type(doc).__name__
        return [f"leaf: expected exactly the fields {sorted(LEAF_FIELDS)}, got {keys}"], None
    failures = []
    try:
        if jcs(doc) != leaf:
            failures.append("leaf: not RFC 8785 canonical JSON")
    except ValueError as e:
        failures.append(f"leaf: {e}")
    salt, nets = doc["salt"], doc["net_position"]
    if not (isinstance(salt, str) and re.fullmatch(r"[0-9a-f]{64}", salt)):
        failures.append(f"leaf: the salt {salt!r} is not 32 bytes in lowercase hex")
    if not isinstance(nets, dict) or not nets or not all(
            isinstance(v, str) and SIGNED_DECIMAL.fullmatch(v) for v in nets.values()):
        failures.append(f"leaf: net_position {nets!r} is not {{asset: signed decimal string}}")
    for name in ("cycle_id", "user_id", "report_id"):
        if not isinstance(doc[name], str) or not doc[name]:
            failures.append(f"leaf: {name} is not a non-empty string")
    for name in ("cycle_id", "report_id"):
        if proof.get(name) is not None and proof[name] != doc[name]:
            failures.append(f"leaf: its {name} {doc[name]!r} is not the proof's {proof[name]!r}")
    if expect.get("report_id") is not None and doc["report_id"] != expect["report_id"]:
        failures.append(f"report: the leaf is report {doc['report_id']!r}, not {expect['report_id']!r}")
    if expect.get("user_id") is not None and doc["user_id"] != expect["user_id"]:
        failures.append(f"user: the leaf is user {doc['user_id']!r}'s, not {expect['user_id']!r}'s")
    return failures, doc


def check_signatures(text, signatures, keys):
    """Failures of the note's signatures against every key, and the keys that signed."""
    failures, signed = [], []
    for key in keys:
        lines = [s for (name, kid, s) in signatures if name == key.name and kid == key.key_id]
        if not lines:
            others = [f"{n}+{k.hex()}" for (n, k, _) in signatures]
            failures.append(f"signature: no signature by {key}; the note is signed by {', '.join(others)}")
        elif not all(ed25519_verify(key.public_key, text.encode(), s) for s in lines):
            failures.append(f"signature: invalid signature by {key} (the note was changed, or forged)")
        else:
            signed.append(key)
    return failures, signed


def verify(proof, keys, origin=None, expect=None):
    """(failures, summary lines): every failed check of proof, as lines for
    a person; what was proven when there are none."""
    expect = expect or {}
    failures = []
    summary = []

    # The tlog proof: read for itself when alone; else it must agree.
    tlog = None
    if proof.get("tlog_proof") is not None:
        try:
            tlog = parse_tlog_proof(proof["tlog_proof"])
        except Malformed as e:
            failures.append(f"tlog_proof: {e}")
    if proof["alone"]:
        if tlog is None:
            return failures, summary
        proof["index"], proof["audit_path"], proof["checkpoint"] = tlog
        proof["size"] = None

    try:
        index = as_int(proof["index"], "the index")
        size = None if proof["size"] is None else as_int(proof["size"], "the size")
        # From a tlog proof alone the path is already decoded (and checked
        # to be 32-byte hashes); from JSON it is base64 strings.
        path = [h if isinstance(h, bytes) else
                b64decode(h, "an audit path hash") if isinstance(h, str) else None
                for h in proof["audit_path"]]
        if not all(h is not None and len(h) == 32 for h in path):
            raise Malformed("an audit path hash is not 32 bytes")
    except (Malformed, TypeError) as e:
        return failures + [f"inclusion: {e}"], summary

    if tlog is not None and not proof["alone"]:
        t_index, t_path, t_checkpoint = tlog
        if t_index != index:
            failures.append(f"tlog_proof: its index {t_index} is not the proof's {index}")
        if t_path != path:
            failures.append("tlog_proof: its audit path is not the proof's")
        if t_checkpoint != proof["checkpoint"]:
            failures.append("tlog_proof: its checkpoint is not the proof's")

    # 1-2. The leaf and its hash.
    leaf = proof["leaf"]
    if not isinstance(leaf, str):
        return failures + ["leaf: not a string"], summary
    leaf_failures, doc = check_leaf(leaf, proof, expect)
    failures += leaf_failures
    digest = leaf_hash(leaf.encode("utf-8"))
    if proof.get("leaf_hash") is not None:
        try:
            given = b64decode(proof["leaf_hash"], "the leaf hash")
        except Malformed as e:
            given = None
            failures.append(f"leaf hash: {e}")
        if given is not None and given != digest:
            failures.append(f"leaf hash: SHA-256(0x00 || leaf) is {digest.hex()}, the proof says {given.hex()}")

    # 4. The checkpoint (read first: a tlog proof alone has no other size).
    checkpoint = None
    try:
        text, signatures = parse_note(proof["checkpoint"])
        checkpoint = parse_checkpoint(text)
    except (Malformed, TypeError) as e:
        failures.append(f"checkpoint: {e}")
    if checkpoint is not None and size is None:
        size = checkpoint[1]

    # 3. The path from the leaf hash to a root.
    root = None
    if size is not None:
        try:
            root = root_from_inclusion_proof(index, size, digest, path)
        except ValueError as e:
            failures.append(f"inclusion: {e}")

    if checkpoint is None:
        return failures, summary
    cp_origin, cp_size, cp_root = checkpoint
    if origin is None:
        exchange = next((k for k in keys if k.role == "exchange"), keys[0])
        cycle = doc["cycle_id"] if doc else proof.get("cycle_id")
        origin = f"{exchange.name}/{cycle}"
    if cp_origin != origin:
        failures.append(f"origin: the checkpoint is of {cp_origin!r}, not {origin!r}")
    if size != cp_size:
        failures.append(f"size: the proof says {size} leaves, the signed checkpoint {cp_size}")
    if root is not None and root != cp_root:
        failures.append("root: the audit path leads to " + base64.b64encode(root).decode()
                        + ", the signed checkpoint's root is " + base64.b64encode(cp_root).decode()
                        + " (the leaf, the index or the path is not the signed one)")

    # 5. The signatures.
    sig_failures, signed = check_signatures(text, signatures, keys)
    failures += sig_failures

    if doc:
        nets = ", ".join(f"{a} {n}" for a, n in sorted(doc["net_position"].items()))
        summary.append(f"report {doc['report_id']} of user {doc['user_id']} in cycle {doc['cycle_id']}: {nets}")
    summary.append(f"leaf {index} of {cp_size} under root {base64.b64encode(cp_root).decode()}, origin {cp_origin}")
    summary.append("signed by " + ", ".join(str(k) for k in signed))
    return failures, summary


def main(argv):
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n")[0],
        epilog="Exit codes: 0 verified, 1 a check failed, 2 bad usage or input.")
    parser.add_argument("proof", help="GetSettlementProof JSON (as grpcurl prints it), or the tlog_proof text")
    parser.add_argument("vkeys", nargs="*", metavar="VKEY", help="C2SP verifier key <name>+<hex id>+<base64>")
    parser.add_argument("--keys", action="append", default=[], metavar="FILE",
                        help="GetSigningKeys JSON (as grpcurl prints it)")
    parser.add_argument("--role", action="append", default=[],
                        help="only the --keys of this role (exchange, wsp); repeatable")
    parser.add_argument("--leaf", metavar="FILE", help="the leaf, its exact bytes (needed with a tlog proof alone)")
    parser.add_argument("--origin", help="the checkpoint origin expected (default <exchange key name>/<cycle_id>)")
    parser.add_argument("--report-id", help="fail unless the leaf is this report's")
    parser.add_argument("--user-id", help="fail unless the leaf is this user's")
    args = parser.parse_args(argv)
    try:
        with open(args.proof, encoding="utf-8") as f:
            text = f.read()
        leaf = None
        if args.leaf:
            with open(args.leaf, encoding="utf-8") as f:
                leaf = f.read()
        proof = read_proof(text, leaf)
        keys = read_keys(args.vkeys, args.keys, args.role)
    except (OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    failures, summary = verify(proof, keys, args.origin,
                               {"report_id": args.report_id, "user_id": args.user_id})
    if failures:
        print("FAIL")
        for failure in failures:
            print("  " + failure)
        return 1
    print("OK")
    for line in summary:
        print("  " + line)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
