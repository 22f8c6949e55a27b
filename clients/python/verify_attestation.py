#!/usr/bin/env python3
"""Verify an openoes attestation offline, against the issuer's public key.

An attestation is a W3C Verifiable Credential (Data Model 2.0) with a Data
Integrity proof, cryptosuite eddsa-jcs-2022. This script checks it with
nothing but the Python standard library (RFC 8785 JSON canonicalization is
written out below, RFC 8032 Ed25519 verification in rfc8032.py beside it),
so it trusts no code of the server and needs no network:

  1. the issuer is the did:key of the given public key, and the proof's
     verificationMethod is that key;
  2. the signature: Ed25519 over SHA-256(JCS(proof options)) ||
     SHA-256(JCS(credential without proof));
  3. validFrom <= now <= validUntil;
  4. with --status-list: that list credential is signed by the same key,
     is the list the credential names, and the credential's bit is not set.

Usage:
  verify_attestation.py CREDENTIAL.json --public-key KEY [--status-list LIST.json] [--now TIME]

KEY: the issuer's did:key (did:key:z6Mk...), its multibase key (z6Mk...), or
the raw 32-byte Ed25519 key in hex (GetIssuerKey's public_key). Prints "OK"
or "FAIL" with one line per failed check; exits 0, 1 (a check failed) or 2
(bad usage or input).
"""

import argparse
import base64
import datetime
import gzip
import hashlib
import json
import sys

# Ed25519 verification: rfc8032.py, beside this file.
from rfc8032 import ed25519_verify  # noqa: E402


# === RFC 8785 JSON canonicalization, for the values credentials hold ===

def jcs(value):
    """The canonical JSON text of value (strings, objects, arrays, true,
    false, null, safe integers: what our credentials hold)."""
    if isinstance(value, dict):
        items = sorted(value.items(), key=lambda kv: kv[0].encode("utf-16-be"))
        return "{" + ",".join(jcs(k) + ":" + jcs(v) for k, v in items) + "}"
    if isinstance(value, list):
        return "[" + ",".join(jcs(v) for v in value) + "]"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if value is True:
        return "true"
    if value is False:
        return "false"
    if value is None:
        return "null"
    if isinstance(value, int) and abs(value) <= 2**53 - 1:
        return str(value)
    raise ValueError(f"cannot canonicalize {value!r}: only safe integers are supported")


# === multibase, did:key ===

B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


def b58decode(text):
    n = 0
    for c in text:
        n = n * 58 + B58.index(c)
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return b"\0" * (len(text) - len(text.lstrip("1"))) + body


def b58encode(data):
    n = int.from_bytes(data, "big")
    out = ""
    while n:
        n, r = divmod(n, 58)
        out = B58[r] + out
    return "1" * (len(data) - len(data.lstrip(b"\0"))) + out


def multibase_key(public_key):
    return "z" + b58encode(b"\xed\x01" + public_key)


def parse_key(text):
    """The raw 32-byte key of a did:key, a multibase key or hex."""
    text = text.strip()
    if text.startswith("did:key:"):
        text = text[len("did:key:"):].split("#")[0]
    if text.startswith("z"):
        raw = b58decode(text[1:])
        if raw[:2] != b"\xed\x01" or len(raw) != 34:
            raise ValueError("not an Ed25519 multibase key")
        return raw[2:]
    raw = bytes.fromhex(text)
    if len(raw) != 32:
        raise ValueError("an Ed25519 key is 32 bytes")
    return raw


# === the checks ===

def parse_time(text):
    if not isinstance(text, str):
        raise ValueError(f"{text!r} is not a time")
    t = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    if t.tzinfo is None:
        t = t.replace(tzinfo=datetime.timezone.utc)
    return t


def check_proof(document, public_key):
    """Failures of issuer, key and signature (a list of strings)."""
    did = "did:key:" + multibase_key(public_key)
    failures = []
    issuer = document.get("issuer")
    issuer = issuer.get("id") if isinstance(issuer, dict) else issuer
    if issuer != did:
        failures.append(f"issuer: {issuer!r} is not the key's did:key {did}")
    proof = document.get("proof")
    if not isinstance(proof, dict):
        return failures + ["signature: no proof"]
    if proof.get("type") != "DataIntegrityProof" or proof.get("cryptosuite") != "eddsa-jcs-2022":
        failures.append("signature: the proof is not DataIntegrityProof eddsa-jcs-2022")
    if proof.get("verificationMethod") != did + "#" + did[len("did:key:"):]:
        failures.append(f"key: the proof names {proof.get('verificationMethod')!r}, not this key")
    value = proof.get("proofValue")
    if not isinstance(value, str) or not value.startswith("z"):
        return failures + ["signature: proofValue is not multibase base58btc"]
    options = {k: v for k, v in proof.items() if k != "proofValue"}
    unsecured = {k: v for k, v in document.items() if k != "proof"}
    if "@context" in options:
        unsecured["@context"] = options["@context"]
    hash_data = (hashlib.sha256(jcs(options).encode()).digest()
                 + hashlib.sha256(jcs(unsecured).encode()).digest())
    if not ed25519_verify(public_key, hash_data, b58decode(value[1:])):
        failures.append("signature: invalid (the credential or its proof was changed, or another key signed it)")
    return failures


def check(credential, public_key, status_list=None, now=None):
    """Every failed check of credential, as lines for a person."""
    now = now or datetime.datetime.now(datetime.timezone.utc)
    failures = check_proof(credential, public_key)
    try:
        if "validFrom" in credential and parse_time(credential["validFrom"]) > now:
            failures.append(f"expiry: not valid before {credential['validFrom']}")
        if "validUntil" in credential and parse_time(credential["validUntil"]) < now:
            failures.append(f"expiry: expired at {credential['validUntil']}")
    except ValueError as e:
        failures.append(f"expiry: {e}")
    if status_list is not None:
        status = credential.get("credentialStatus") or {}
        if status.get("statusListCredential") != status_list.get("id"):
            failures.append("revocation: the status list given is not the one the credential names")
        failures += ["revocation: status list " + f for f in check_proof(status_list, public_key)]
        encoded = (status_list.get("credentialSubject") or {}).get("encodedList", "")
        if not encoded.startswith("u"):
            failures.append("revocation: encodedList is not multibase base64url")
        else:
            bits = gzip.decompress(base64.urlsafe_b64decode(encoded[1:] + "=" * (-len(encoded[1:]) % 4)))
            index = int(status.get("statusListIndex", "-1"))
            if not 0 <= index < len(bits) * 8:
                failures.append(f"revocation: index {index} is not in the list")
            elif bits[index // 8] & (0x80 >> (index % 8)):
                failures.append(f"revocation: revoked (bit {index} is set)")
    return failures


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("credential", help="the credential, a JSON file")
    parser.add_argument("--public-key", required=True, help="did:key, multibase (z6Mk...) or hex")
    parser.add_argument("--status-list", help="the status list credential, a JSON file")
    parser.add_argument("--now", help="check expiry at this ISO-8601 time instead of now")
    args = parser.parse_args(argv)
    try:
        with open(args.credential, encoding="utf-8") as f:
            credential = json.load(f)
        status_list = None
        if args.status_list:
            with open(args.status_list, encoding="utf-8") as f:
                status_list = json.load(f)
        public_key = parse_key(args.public_key)
        now = parse_time(args.now) if args.now else None
    except (OSError, ValueError) as e:
        print(f"error: {type(e).__name__}: {e}", file=sys.stderr)
        return 2
    failures = check(credential, public_key, status_list, now)
    if failures:
        print("FAIL")
        for failure in failures:
            print("  " + failure)
        return 1
    print("OK")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
