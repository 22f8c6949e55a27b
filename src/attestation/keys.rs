//! Every Redis key and stream of the attestation pipeline, all on M.
//! **(std)** names are the ones existing producers use, byte for byte;
//! **(ext)** are ours.
//!
//! Our keys carry the hash tag `{verification_stream}`: Redis Cluster puts
//! a key with a tag in the slot of the tag's text, and the untagged std
//! stream `verification_stream` hashes to that same slot, so every script
//! here (the issuing one XACKs the stream) touches one slot only and the
//! pipeline runs unchanged on Redis or Valkey Cluster. The price: all of it
//! lives on one shard. (`verification_stream:dlq`, the bridge's dead-letter
//! stream, hashes elsewhere; only the bridge's own dead-letter script uses
//! it with the stream.)
//!
//! | key | type | holds |
//! |---|---|---|
//! | `verification_stream` (std) | stream | results, from producers and SubmitVerification |
//! | `verification_stream:dlq` (ext) | stream | results that cannot be attested, with the reason |
//! | `attestation:{verification_stream}:att:<attestation_id>` (ext) | hash | the attestation: fields, credential, status |
//! | `attestation:{verification_stream}:subject:<subject>` (ext) | sorted set | a subject's attestations, score = issue sequence |
//! | `attestation:{verification_stream}:seq` (ext) | string | the issue sequence (newest first ordering) |
//! | `attestation:{verification_stream}:events` (ext) | stream | issued / revoked events, each with its attestation |
//! | `attestation:{verification_stream}:submission:<request_id>` (ext) | hash | a SubmitVerification not attested yet (idempotency) |
//! | `attestation:{verification_stream}:lists` (ext) | hash | every status list: `<id>:key`, `<id>:size`, `<id>:next`, `<id>:revision`; `current:<key id>`; `seq` |
//! | `attestation:{verification_stream}:list:<id>:bits` (ext) | string | the list's bitstring (SETBIT offset = index) |
//! | `attestation:{verification_stream}:list:<id>:signed` (ext) | hash | the list's signed credential and the revision it shows |

/// Verification results (std): what producers XADD.
pub const VERIFICATION_STREAM: &str = "verification_stream";
/// The consumer group that attests results (std).
pub const GROUP: &str = "attestation_processors";

/// The prefix of every key of ours: `attestation:` and the hash tag.
const PREFIX: &str = "attestation:{verification_stream}:";

/// The attestation event log (ext).
pub const EVENTS: &str = "attestation:{verification_stream}:events";
/// The issue sequence (ext).
pub const SEQ: &str = "attestation:{verification_stream}:seq";
/// Every status list's state (ext).
pub const LISTS: &str = "attestation:{verification_stream}:lists";

/// The dead-letter stream of [`VERIFICATION_STREAM`] (the bridge's name).
pub fn dead_letters() -> String {
    crate::streams::group::dlq_key(VERIFICATION_STREAM)
}

/// An attestation's record.
pub fn attestation(attestation_id: &str) -> String {
    format!("{PREFIX}att:{attestation_id}")
}

/// A subject's attestations.
pub fn subject(subject: &str) -> String {
    format!("{PREFIX}subject:{subject}")
}

/// A submission not attested yet.
pub fn submission(request_id: &str) -> String {
    format!("{PREFIX}submission:{request_id}")
}

/// A status list's bitstring.
pub fn list_bits(list_id: &str) -> String {
    format!("{PREFIX}list:{list_id}:bits")
}

/// A status list's signed credential.
pub fn list_signed(list_id: &str) -> String {
    format!("{PREFIX}list:{list_id}:signed")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Redis Cluster's slot of a key (CRC16/XMODEM of the hash tag, or of
    /// the whole key without one, mod 16384).
    fn slot(key: &str) -> u16 {
        let tagged = key
            .find('{')
            .and_then(|open| {
                let rest = &key[open + 1..];
                rest.find('}')
                    .filter(|&close| close > 0)
                    .map(|close| &rest[..close])
            })
            .unwrap_or(key);
        let mut crc: u16 = 0;
        for byte in tagged.bytes() {
            crc ^= u16::from(byte) << 8;
            for _ in 0..8 {
                crc = if crc & 0x8000 != 0 {
                    (crc << 1) ^ 0x1021
                } else {
                    crc << 1
                };
            }
        }
        crc % 16384
    }

    #[test]
    fn every_key_of_a_script_is_in_the_stream_slot() {
        // The CRC itself, against the Redis Cluster spec's example.
        assert_eq!(slot("123456789"), 0x31c3);
        let stream = slot(VERIFICATION_STREAM);
        for key in [
            EVENTS.to_string(),
            SEQ.to_string(),
            LISTS.to_string(),
            attestation("a"),
            subject("0xabc"),
            submission("r-1"),
            list_bits("1"),
            list_signed("1"),
        ] {
            assert_eq!(slot(&key), stream, "{key}");
            assert!(key.starts_with("attestation:"), "{key}: the ACL's prefix");
        }
    }
}
