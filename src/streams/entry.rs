//! Stream entries as Redis returns them, and their ids.
//!
//! Entries are kept as raw bytes: a stream another party writes may hold
//! any bytes, and one entry that is not UTF-8 must not make a whole reply
//! unreadable (redis-rs's typed stream replies fail the whole read). Typed
//! records are parsed from an [`Entry`] by the domain that owns the stream,
//! entry by entry; [`Fields::get`] answers `None` for a field that is
//! missing or not text.

use std::{fmt, str::FromStr};

/// A Redis stream entry id, `<ms>-<seq>`, ordered as Redis orders them:
/// numerically, milliseconds first (never as text, never as a double).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct StreamId {
    /// Milliseconds part.
    pub ms: u64,
    /// Sequence part.
    pub seq: u64,
}

impl StreamId {
    /// The id right before this one (`None` for `0-0`): reading after it
    /// starts at this one.
    pub fn prev(self) -> Option<Self> {
        match self.seq.checked_sub(1) {
            Some(seq) => Some(Self { ms: self.ms, seq }),
            None => self.ms.checked_sub(1).map(|ms| Self { ms, seq: u64::MAX }),
        }
    }

    /// The id right after this one (`XRANGE`'s exclusive start).
    pub fn next(self) -> Option<Self> {
        match self.seq.checked_add(1) {
            Some(seq) => Some(Self { ms: self.ms, seq }),
            None => self.ms.checked_add(1).map(|ms| Self { ms, seq: 0 }),
        }
    }
}

impl FromStr for StreamId {
    type Err = ();

    /// Parses `<ms>-<seq>`, both plain decimal u64 (no sign, no spaces).
    fn from_str(s: &str) -> Result<Self, ()> {
        let (ms, seq) = s.split_once('-').ok_or(())?;
        let number = |t: &str| {
            if t.is_empty() || t.len() > 20 || !t.bytes().all(|b| b.is_ascii_digit()) {
                return Err(());
            }
            t.parse::<u64>().map_err(drop)
        };
        Ok(Self {
            ms: number(ms)?,
            seq: number(seq)?,
        })
    }
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.ms, self.seq)
    }
}

/// The fields of one entry, in the order Redis returned them, as bytes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Fields(Vec<(Vec<u8>, Vec<u8>)>);

impl Fields {
    /// Fields from name/value pairs.
    pub fn new(pairs: Vec<(Vec<u8>, Vec<u8>)>) -> Self {
        Self(pairs)
    }

    /// Fields from text pairs (tests, and entries we build ourselves).
    pub fn from_pairs<K: AsRef<str>, V: AsRef<str>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        Self(
            pairs
                .into_iter()
                .map(|(k, v)| {
                    (
                        k.as_ref().as_bytes().to_vec(),
                        v.as_ref().as_bytes().to_vec(),
                    )
                })
                .collect(),
        )
    }

    /// The value of `name` if present and text. If a name repeats, the
    /// first wins (as Redis keeps them all, a reader must pick one).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.raw(name).and_then(|v| std::str::from_utf8(v).ok())
    }

    /// The value of `name` as text, or "" if missing or not text.
    pub fn text(&self, name: &str) -> &str {
        self.get(name).unwrap_or("")
    }

    /// The raw value of `name`.
    pub fn raw(&self, name: &str) -> Option<&[u8]> {
        self.0
            .iter()
            .find(|(k, _)| k.as_slice() == name.as_bytes())
            .map(|(_, v)| v.as_slice())
    }

    /// Every pair, as Redis returned them.
    pub fn pairs(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.0.iter().map(|(k, v)| (k.as_slice(), v.as_slice()))
    }

    /// Number of pairs.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True if there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Total bytes of names and values.
    pub fn byte_len(&self) -> usize {
        self.0.iter().map(|(k, v)| k.len() + v.len()).sum()
    }

    /// A bounded, printable rendering for logs and anomaly records: at most
    /// `max` bytes, non-text bytes escaped.
    pub fn describe(&self, max: usize) -> String {
        let mut out = String::new();
        for (k, v) in &self.0 {
            if !out.is_empty() {
                out.push(' ');
            }
            out.push_str(&String::from_utf8_lossy(
                &k.escape_ascii().collect::<Vec<u8>>(),
            ));
            out.push('=');
            out.push_str(&String::from_utf8_lossy(
                &v.escape_ascii().collect::<Vec<u8>>(),
            ));
            if out.len() > max {
                break;
            }
        }
        crate::validate::cut(&out, max)
    }
}

impl redis::FromRedisValue for Fields {
    /// A hash's fields (HGETALL: a flat list in RESP2, a map in RESP3) or an
    /// entry's; a name or value that is not a string is an error.
    fn from_redis_value(value: redis::Value) -> Result<Self, redis::ParsingError> {
        use redis::Value;
        let items: Vec<Value> = match value {
            Value::Map(pairs) => pairs.into_iter().flat_map(|(k, v)| [k, v]).collect(),
            Value::Array(flat) => flat,
            Value::Nil => Vec::new(),
            _ => return Err("not a list of fields".to_string().into()),
        };
        if !items.len().is_multiple_of(2) {
            return Err("an odd number of field items".to_string().into());
        }
        let bytes = |v: Value| match v {
            Value::BulkString(b) => Ok(b),
            Value::SimpleString(s) => Ok(s.into_bytes()),
            Value::Int(i) => Ok(i.to_string().into_bytes()),
            _ => Err(redis::ParsingError::from(
                "a field is not a string".to_string(),
            )),
        };
        let mut pairs = Vec::with_capacity(items.len() / 2);
        let mut items = items.into_iter();
        while let (Some(k), Some(v)) = (items.next(), items.next()) {
            pairs.push((bytes(k)?, bytes(v)?));
        }
        Ok(Self(pairs))
    }
}

/// One stream entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Its id.
    pub id: StreamId,
    /// Its fields.
    pub fields: Fields,
}

impl Entry {
    /// The value of `field` as text, or "".
    pub fn field(&self, field: &str) -> &str {
        self.fields.text(field)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_ids_parse_and_order_like_redis() {
        let a: StreamId = "1700000000000-5".parse().expect("id");
        let b: StreamId = "1700000000000-10".parse().expect("id");
        let c: StreamId = "1700000000001-0".parse().expect("id");
        assert!(a < b && b < c, "numeric, not lexical");
        assert_eq!(a.to_string(), "1700000000000-5");
        for bad in ["17", "a-1", "1-", "-1", "+1-2", "1-+2", " 1-2", "1-2 "] {
            assert!(bad.parse::<StreamId>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn ids_beyond_two_to_the_53_compare_exactly() {
        // As doubles these two are equal; as ids they are not.
        let a: StreamId = "1-9007199254740993".parse().expect("id");
        let b: StreamId = "1-9007199254740992".parse().expect("id");
        assert!(a > b);
        let max: StreamId = "18446744073709551615-18446744073709551615"
            .parse()
            .expect("id");
        assert_eq!(max.next(), None);
        assert_eq!(b.next(), Some(a));
    }

    #[test]
    fn fields_answer_none_for_what_is_not_text() {
        let f = Fields::new(vec![
            (b"status".to_vec(), b"accepted".to_vec()),
            (vec![0xff, 0xfe], b"x".to_vec()),
            (b"reason".to_vec(), vec![0xff]),
        ]);
        assert_eq!(f.get("status"), Some("accepted"));
        assert_eq!(f.get("reason"), None);
        assert_eq!(f.text("missing"), "");
        assert!(
            f.describe(200).contains("\\xff\\xfe=x"),
            "{}",
            f.describe(200)
        );
        assert!(f.describe(10).len() < 40);
    }
}
