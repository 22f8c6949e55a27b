//! RFC 8785 JSON Canonicalization Scheme (JCS): one byte string per JSON
//! value, so that a signature over JSON survives re-serialization.
//!
//! Object members sorted by the UTF-16 code units of their names, no
//! whitespace, strings with the minimal escapes, numbers as ECMAScript
//! prints a double. `serde_json_canonicalizer` does the work; this file adds
//! the one check it leaves out: an integer beyond 2^53 has no exact double,
//! so a JavaScript verifier would canonicalize (and hash) a different number
//! than we did. Such a value is refused, not rounded: signed numbers that
//! large belong in strings (RFC 8785 section 3.2.2.3, I-JSON).

use serde_json::Value;
use thiserror::Error;

/// The largest integer magnitude every JCS implementation reads exactly
/// (`2^53 - 1`, JavaScript's `Number.MAX_SAFE_INTEGER`).
pub const MAX_SAFE_INTEGER: u64 = (1 << 53) - 1;

/// Why a JSON value has no canonical form.
#[derive(Debug, Error)]
pub enum JcsError {
    /// An integer outside `±(2^53 - 1)`: see the module documentation.
    #[error(
        "integer {0} is outside ±(2^53 - 1) and has no interoperable JCS form; send it as a string"
    )]
    UnsafeInteger(String),
    /// The canonicalizer failed.
    #[error("JSON canonicalization failed: {0}")]
    Serialize(#[from] serde_json::Error),
}

/// The canonical bytes (RFC 8785) of `value`.
pub fn canonicalize(value: &Value) -> Result<Vec<u8>, JcsError> {
    check_integers(value)?;
    Ok(serde_json_canonicalizer::to_vec(value)?)
}

/// The canonical text (RFC 8785) of `value`.
pub fn canonicalize_to_string(value: &Value) -> Result<String, JcsError> {
    check_integers(value)?;
    Ok(serde_json_canonicalizer::to_string(value)?)
}

/// Refuses integers that a double cannot hold exactly. Floats are doubles
/// already, and JCS prints them as ECMAScript does.
fn check_integers(value: &Value) -> Result<(), JcsError> {
    match value {
        Value::Number(n) => {
            let safe = if let Some(i) = n.as_i64() {
                i.unsigned_abs() <= MAX_SAFE_INTEGER
            } else if let Some(u) = n.as_u64() {
                u <= MAX_SAFE_INTEGER
            } else {
                true
            };
            if safe {
                Ok(())
            } else {
                Err(JcsError::UnsafeInteger(n.to_string()))
            }
        }
        Value::Array(items) => items.iter().try_for_each(check_integers),
        Value::Object(members) => members.values().try_for_each(check_integers),
        Value::Null | Value::Bool(_) | Value::String(_) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Number, json};

    use super::*;
    use crate::crypto::test_support::read_testdata;

    fn check_pair(input: &str, want: &str) {
        let input = read_testdata(input);
        let want = read_testdata(want);
        let value: Value = serde_json::from_str(&input).expect("input json");
        assert_eq!(canonicalize_to_string(&value).expect("jcs"), want);
        assert_eq!(canonicalize(&value).expect("jcs"), want.as_bytes());
    }

    /// The reference test data of JCS's author, input and expected output.
    /// `values` is also the sample of the RFC (section 3.2.2): numbers,
    /// escapes and literals.
    #[test]
    fn reference_testdata() {
        for name in [
            "arrays",
            "french",
            "structures",
            "unicode",
            "values",
            "weird",
        ] {
            check_pair(
                &format!("jcs/input/{name}.json"),
                &format!("jcs/output/{name}.json"),
            );
        }
    }

    /// RFC 8785 section 3.2.3, the sorting example.
    #[test]
    fn rfc_sorting_example() {
        check_pair(
            "jcs/rfc8785/sorting.input.json",
            "jcs/rfc8785/sorting.expected.json",
        );
    }

    /// Names sort by UTF-16 code units, not by code points or UTF-8: an
    /// astral character (a surrogate pair, 0xD83D...) sorts before U+FB33.
    #[test]
    fn sorting_is_by_utf16_code_units() {
        let value = json!({ "\u{fb33}": 1, "\u{1f602}": 2, "\u{20ac}": 3, "\r": 4, "1": 5 });
        assert_eq!(
            canonicalize_to_string(&value).expect("jcs"),
            "{\"\\r\":4,\"1\":5,\"\u{20ac}\":3,\"\u{1f602}\":2,\"\u{fb33}\":1}"
        );
    }

    /// Number samples of the reference (`node-es6/verify-numbers.js` and
    /// `testdata/README.md` of cyberphone/json-canonicalization): IEEE 754
    /// bits and the text ECMAScript prints for them.
    #[test]
    fn reference_numbers() {
        for (bits, want) in [
            (0x4340000000000001u64, "9007199254740994"),
            (0x4340000000000002, "9007199254740996"),
            (0x444b1ae4d6e2ef50, "1e+21"),
            (0x3eb0c6f7a0b5ed8d, "0.000001"),
            (0x3eb0c6f7a0b5ed8c, "9.999999999999997e-7"),
            (0x8000000000000000, "0"),
            (0x0000000000000000, "0"),
        ] {
            let number = Number::from_f64(f64::from_bits(bits)).expect("finite");
            let got = canonicalize_to_string(&Value::Number(number)).expect("jcs");
            assert_eq!(got, want, "{bits:016x}");
        }
        // NaN and the infinities (the reference's "null" cases) cannot even
        // be put in a serde_json value.
        for bits in [
            0x7fffffffffffffffu64,
            0x7ff0000000000000,
            0xfff0000000000000,
        ] {
            assert!(Number::from_f64(f64::from_bits(bits)).is_none());
        }
    }

    #[test]
    fn unsafe_integers_are_refused() {
        let max = MAX_SAFE_INTEGER as i64;
        assert_eq!(
            canonicalize_to_string(&json!([max, -max])).expect("jcs"),
            format!("[{max},-{max}]")
        );
        for big in [
            json!(max + 1),
            json!(-max - 1),
            json!(u64::MAX),
            json!({"a": [1, {"b": i64::MIN}]}),
        ] {
            assert!(
                matches!(canonicalize(&big), Err(JcsError::UnsafeInteger(_))),
                "{big}"
            );
        }
        // As a float it is a double already: printed as ECMAScript would.
        assert_eq!(
            canonicalize_to_string(&json!(9007199254740993.0)).expect("jcs"),
            "9007199254740992"
        );
    }
}
