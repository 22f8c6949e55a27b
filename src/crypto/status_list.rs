//! W3C Bitstring Status List v1.0
//! (<https://www.w3.org/TR/vc-bitstring-status-list/>): how an issuer
//! publishes which of its credentials are revoked or suspended.
//!
//! A credential names an index in a list; the list is one bit per index,
//! published GZIP-compressed in a status list credential's `encodedList` as
//! multibase base64url without padding (`u...`). Bit 0 is the left-most
//! (most significant) bit of the first byte. The list is at least 131,072
//! bits (16 KiB) long, so that a verifier fetching it learns nothing about
//! which credential it checks (herd privacy), and compresses to almost
//! nothing while few bits are set.
//!
//! Entries here are one bit (`statusSize` 1, the default).

use std::io::{Read as _, Write as _};

use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use flate2::{Compression, read::GzDecoder, write::GzEncoder};
use thiserror::Error;

/// The spec's minimum list length, in bits (16 KiB).
pub const MIN_BITSTRING_BITS: usize = 131_072;

/// The longest list [`StatusList::decode`] expands, in bytes: 16 MiB, 134
/// million entries. An `encodedList` comes from another party, and GZIP
/// expands about a thousandfold, so without a bound a few kilobytes could
/// take all our memory.
pub const MAX_BITSTRING_BYTES: usize = 16 << 20;

/// The multibase prefix of base64url without padding.
const MULTIBASE_BASE64URL: char = 'u';

/// Why a status list was refused.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum StatusListError {
    /// A list length below the minimum, or not a whole number of bytes.
    #[error("a status list is a multiple of 8 bits, at least {MIN_BITSTRING_BITS}; got {0}")]
    InvalidLength(usize),
    /// An index beyond the list.
    #[error("status list index {index} is not below the list length {len}")]
    IndexOutOfRange {
        /// The index asked for.
        index: usize,
        /// The list length in bits.
        len: usize,
    },
    /// `encodedList` is not multibase base64url of GZIP data.
    #[error("bad encodedList: {0}")]
    BadEncoding(&'static str),
    /// GZIP compression failed.
    #[error("GZIP compression of the status list failed")]
    Compression,
    /// The list expands beyond [`MAX_BITSTRING_BYTES`].
    #[error("encodedList expands beyond {MAX_BITSTRING_BYTES} bytes")]
    TooLarge,
}

/// A status list: one bit per credential index, all 0 at first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatusList {
    /// The bitstring, bit `i` at `bytes[i / 8]`, mask `0x80 >> (i % 8)`.
    bytes: Vec<u8>,
}

impl Default for StatusList {
    fn default() -> Self {
        Self::new()
    }
}

impl StatusList {
    /// A list of the minimum length, [`MIN_BITSTRING_BITS`], all bits 0.
    pub fn new() -> Self {
        Self {
            bytes: vec![0; MIN_BITSTRING_BITS / 8],
        }
    }

    /// A list of `bits` bits, all 0: at least [`MIN_BITSTRING_BITS`], a
    /// multiple of 8, at most [`MAX_BITSTRING_BYTES`] bytes.
    pub fn with_len(bits: usize) -> Result<Self, StatusListError> {
        if bits < MIN_BITSTRING_BITS || !bits.is_multiple_of(8) || bits / 8 > MAX_BITSTRING_BYTES {
            return Err(StatusListError::InvalidLength(bits));
        }
        Ok(Self {
            bytes: vec![0; bits / 8],
        })
    }

    /// The list length in bits.
    pub fn len(&self) -> usize {
        self.bytes.len() * 8
    }

    /// Whether the list has no bits (never: kept for the `len` convention).
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// The bitstring.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The byte and mask of bit `index`.
    fn position(&self, index: usize) -> Result<(usize, u8), StatusListError> {
        if index >= self.len() {
            return Err(StatusListError::IndexOutOfRange {
                index,
                len: self.len(),
            });
        }
        Ok((index / 8, 0x80 >> (index % 8)))
    }

    /// Bit `index`: `true` when set (for a revocation list: revoked).
    pub fn get(&self, index: usize) -> Result<bool, StatusListError> {
        let (byte, mask) = self.position(index)?;
        Ok(self.bytes[byte] & mask != 0)
    }

    /// Sets bit `index` to `value`.
    pub fn set(&mut self, index: usize, value: bool) -> Result<(), StatusListError> {
        let (byte, mask) = self.position(index)?;
        if value {
            self.bytes[byte] |= mask;
        } else {
            self.bytes[byte] &= !mask;
        }
        Ok(())
    }

    /// The `encodedList` value: `u` + base64url-no-pad(GZIP(bitstring)).
    pub fn encode(&self) -> Result<String, StatusListError> {
        let mut gzip = GzEncoder::new(Vec::new(), Compression::best());
        // flate2 reports the I/O errors of the writer it wraps, and a Vec
        // has none; the error stays an error all the same, never an empty
        // list on the wire.
        let compressed = gzip
            .write_all(&self.bytes)
            .and_then(|()| gzip.finish())
            .map_err(|_| StatusListError::Compression)?;
        Ok(format!(
            "{MULTIBASE_BASE64URL}{}",
            URL_SAFE_NO_PAD.encode(compressed)
        ))
    }

    /// Expands an `encodedList`, checking the spec's minimum length.
    pub fn decode(encoded_list: &str) -> Result<Self, StatusListError> {
        let b64 =
            encoded_list
                .strip_prefix(MULTIBASE_BASE64URL)
                .ok_or(StatusListError::BadEncoding(
                    "not multibase base64url ('u')",
                ))?;
        let compressed = URL_SAFE_NO_PAD
            .decode(b64)
            .map_err(|_| StatusListError::BadEncoding("not base64url without padding"))?;
        let mut bytes = Vec::new();
        // Read one byte past the bound to tell "exactly the bound" from
        // "more than the bound".
        GzDecoder::new(compressed.as_slice())
            .take(MAX_BITSTRING_BYTES as u64 + 1)
            .read_to_end(&mut bytes)
            .map_err(|_| StatusListError::BadEncoding("not GZIP data"))?;
        if bytes.len() > MAX_BITSTRING_BYTES {
            return Err(StatusListError::TooLarge);
        }
        if bytes.len() * 8 < MIN_BITSTRING_BITS {
            return Err(StatusListError::InvalidLength(bytes.len() * 8));
        }
        Ok(Self { bytes })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The `encodedList` of the spec's example BitstringStatusListCredential
    /// (w3c/vc-bitstring-status-list `index.html`): an empty list.
    const SPEC_EXAMPLE: &str =
        "uH4sIAAAAAAAAA-3BMQEAAADCoPVPbQwfoAAAAAAAAAAAAAAAAAAAAIC3AYbSVKsAQAAA";

    #[test]
    fn spec_example_is_an_empty_minimum_list() {
        let list = StatusList::decode(SPEC_EXAMPLE).expect("spec example");
        assert_eq!(list.len(), MIN_BITSTRING_BITS);
        assert!(list.as_bytes().iter().all(|&b| b == 0));
        assert_eq!(list, StatusList::new());
        assert_eq!(
            StatusList::decode(&list.encode().expect("encode")),
            Ok(list)
        );
    }

    /// An independent encoder: Python 3.11's `gzip.compress(bits,
    /// compresslevel=9, mtime=0)` of a minimum list with bits 0, 94,567 and
    /// 131,071 set (bytes 0x80 at 0, 0x01 at 11,820 and at 16,383), then
    /// base64url without padding. Checks the bit order against another
    /// implementation, not against our own `set`.
    #[test]
    fn independently_encoded_list_reads_back_its_bits() {
        let encoded =
            "uH4sIAAAAAAACA-3QAQ0AAAgDIN_c6M-hgwjsAAAAAAAAAAAAAADwTRQAAAAAXJMCpM6u2wBAAAA";
        let list = StatusList::decode(encoded).expect("decode");
        let set: Vec<usize> = (0..list.len())
            .filter(|&i| list.get(i) == Ok(true))
            .collect();
        assert_eq!(set, [0, 94_567, 131_071]);
        assert_eq!(list.as_bytes()[11_820], 0x01);
    }

    #[test]
    fn bit_zero_is_the_left_most_bit_of_the_first_byte() {
        let mut list = StatusList::new();
        list.set(0, true).expect("set");
        assert_eq!(list.as_bytes()[0], 0x80);
        list.set(7, true).expect("set");
        assert_eq!(list.as_bytes()[0], 0x81);
        list.set(8, true).expect("set");
        assert_eq!(list.as_bytes()[1], 0x80);
        let last = MIN_BITSTRING_BITS - 1;
        list.set(last, true).expect("set");
        assert_eq!(list.as_bytes()[MIN_BITSTRING_BITS / 8 - 1], 0x01);
        for (index, want) in [
            (0, true),
            (1, false),
            (6, false),
            (7, true),
            (8, true),
            (last, true),
        ] {
            assert_eq!(list.get(index), Ok(want), "{index}");
        }
        list.set(7, false).expect("clear");
        assert_eq!(list.as_bytes()[0], 0x80);
        assert_eq!(
            list.get(MIN_BITSTRING_BITS),
            Err(StatusListError::IndexOutOfRange {
                index: MIN_BITSTRING_BITS,
                len: MIN_BITSTRING_BITS
            })
        );
        assert!(list.set(MIN_BITSTRING_BITS, true).is_err());
    }

    #[test]
    fn round_trips_with_bits_set() {
        let mut list = StatusList::with_len(MIN_BITSTRING_BITS * 2).expect("list");
        let revoked = [0, 1, 94_567, 131_071, 131_072, 262_143];
        for &i in &revoked {
            list.set(i, true).expect("set");
        }
        let encoded = list.encode().expect("encode");
        assert!(
            encoded.starts_with("uH4sI"),
            "gzip magic under base64url: {encoded}"
        );
        assert!(!encoded.contains('=') && !encoded.contains('+') && !encoded.contains('/'));
        let decoded = StatusList::decode(&encoded).expect("decode");
        assert_eq!(decoded.len(), 2 * MIN_BITSTRING_BITS);
        for i in 0..decoded.len() {
            assert_eq!(decoded.get(i), Ok(revoked.contains(&i)), "{i}");
        }
    }

    #[test]
    fn bad_lists_are_refused() {
        for bits in [0, 8, MIN_BITSTRING_BITS - 8, MIN_BITSTRING_BITS + 1] {
            assert_eq!(
                StatusList::with_len(bits),
                Err(StatusListError::InvalidLength(bits))
            );
        }
        let plain = SPEC_EXAMPLE.replacen('u', "z", 1);
        assert!(matches!(
            StatusList::decode(&plain),
            Err(StatusListError::BadEncoding(_))
        ));
        let padded = format!("{SPEC_EXAMPLE}==");
        assert!(matches!(
            StatusList::decode(&padded),
            Err(StatusListError::BadEncoding(_))
        ));
        let not_gzip = format!("u{}", URL_SAFE_NO_PAD.encode([0u8; 64]));
        assert!(matches!(
            StatusList::decode(&not_gzip),
            Err(StatusListError::BadEncoding(_))
        ));
        // A well-formed list below the spec's minimum.
        let mut gzip = GzEncoder::new(Vec::new(), Compression::best());
        gzip.write_all(&[0u8; 1024]).expect("write");
        let short = format!("u{}", URL_SAFE_NO_PAD.encode(gzip.finish().expect("gzip")));
        assert_eq!(
            StatusList::decode(&short),
            Err(StatusListError::InvalidLength(8192))
        );
    }

    #[test]
    fn a_gzip_bomb_stops_at_the_bound() {
        // 17 MiB of zeros compress to about 17 KiB.
        let mut gzip = GzEncoder::new(Vec::new(), Compression::best());
        let chunk = vec![0u8; 1 << 20];
        for _ in 0..17 {
            gzip.write_all(&chunk).expect("write");
        }
        let bomb = format!("u{}", URL_SAFE_NO_PAD.encode(gzip.finish().expect("gzip")));
        assert!(bomb.len() < 64 * 1024, "{}", bomb.len());
        assert_eq!(StatusList::decode(&bomb), Err(StatusListError::TooLarge));
    }
}
