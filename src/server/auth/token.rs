//! Bearer tokens: made from 32 random bytes, stored as SHA-256 only.

use base64::Engine;
use ring::rand::SecureRandom;

use crate::config::CallerRole;

/// What every token starts with, so a leaked one is easy to grep for
/// (secret scanners) and to tell from other credentials.
pub const PREFIX: &str = "oes_";

/// A fresh token: [`PREFIX`] and 32 bytes from the system's CSPRNG,
/// base64url without padding.
pub fn generate() -> Result<String, ring::error::Unspecified> {
    let mut bytes = [0u8; 32];
    ring::rand::SystemRandom::new().fill(&mut bytes)?;
    let encoded = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    Ok(format!("{PREFIX}{encoded}"))
}

/// SHA-256 of the token's bytes.
pub fn sha256(token: &str) -> [u8; 32] {
    let digest = ring::digest::digest(&ring::digest::SHA256, token.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The 32 bytes of 64 hex digits, or `None`.
pub fn parse_hex(text: &str) -> Option<[u8; 32]> {
    if text.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// The `[[auth.tokens]]` entry of a token, to paste into the config.
pub fn config_entry(name: &str, token: &str, roles: &[CallerRole]) -> String {
    let roles: Vec<String> = roles.iter().map(|r| format!("{:?}", r.name())).collect();
    format!(
        "[[auth.tokens]]\nname = {name:?}\nsha256 = \"{}\"\nroles = [{}]\n",
        hex(&sha256(token)),
        roles.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_fresh_and_their_entry_holds_only_the_hash() {
        let (a, b) = (generate().expect("rng"), generate().expect("rng"));
        assert_ne!(a, b);
        assert!(a.starts_with(PREFIX) && a.len() == PREFIX.len() + 43, "{a}");
        let entry = config_entry("ops", &a, &[CallerRole::Wsp, CallerRole::Reader]);
        assert!(!entry.contains(&a[PREFIX.len()..]), "{entry}");
        assert!(entry.contains("roles = [\"wsp\", \"reader\"]"), "{entry}");
        let parsed: toml::Value = toml::from_str(&entry).expect("toml");
        let hash = parsed["auth"]["tokens"][0]["sha256"]
            .as_str()
            .expect("hash");
        assert_eq!(parse_hex(hash), Some(sha256(&a)));
        // The SHA-256 of "abc" (FIPS 180-2), so the hash is the standard one.
        assert_eq!(
            hex(&sha256("abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
