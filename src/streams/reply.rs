//! Parsers of the raw Redis replies of stream commands, shared by the
//! bridge and by every domain that reads a stream itself.
//!
//! They take `redis::Value` as it came off the wire and never fail as a
//! whole: an entry that cannot be parsed is returned as [`Parsed::Bad`]
//! with what could be seen, so the caller can record it and move on. RESP2
//! and RESP3 shapes are both accepted.

use redis::Value;

use super::entry::{Entry, Fields, StreamId};

/// One entry of a reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    /// A well-formed entry.
    Entry(Entry),
    /// The entry's id is known but its data is gone (deleted or trimmed
    /// while pending: XREADGROUP and XCLAIM answer nil fields).
    Deleted(StreamId),
    /// An entry whose shape is not an entry's: the id if one could be
    /// read, and why.
    Bad {
        /// The id, if readable.
        id: Option<StreamId>,
        /// What is wrong, for a log line.
        why: &'static str,
    },
}

impl Parsed {
    /// The entry's id, if it has one.
    pub fn id(&self) -> Option<StreamId> {
        match self {
            Self::Entry(e) => Some(e.id),
            Self::Deleted(id) => Some(*id),
            Self::Bad { id, .. } => *id,
        }
    }
}

/// Bytes of a bulk or simple string (or an integer as text).
fn bytes(value: Value) -> Option<Vec<u8>> {
    match value {
        Value::BulkString(b) => Some(b),
        Value::SimpleString(s) => Some(s.into_bytes()),
        Value::Int(i) => Some(i.to_string().into_bytes()),
        Value::VerbatimString { text, .. } => Some(text.into_bytes()),
        _ => None,
    }
}

/// An id from a reply value.
pub fn stream_id(value: &Value) -> Option<StreamId> {
    match value {
        Value::BulkString(b) => std::str::from_utf8(b).ok()?.parse().ok(),
        Value::SimpleString(s) => s.parse().ok(),
        _ => None,
    }
}

/// One `[id, [field, value, ...]]` (value may be nil: deleted).
fn entry(value: Value) -> Parsed {
    let Value::Array(mut parts) = value else {
        return Parsed::Bad {
            id: None,
            why: "entry is not an array",
        };
    };
    if parts.len() != 2 {
        return Parsed::Bad {
            id: parts.first().and_then(stream_id),
            why: "entry is not [id, fields]",
        };
    }
    let data = parts.pop().unwrap_or(Value::Nil);
    let Some(id) = parts.first().and_then(stream_id) else {
        return Parsed::Bad {
            id: None,
            why: "entry id is not an id",
        };
    };
    let flat = match data {
        Value::Nil => return Parsed::Deleted(id),
        Value::Array(flat) => flat,
        Value::Map(pairs) => pairs.into_iter().flat_map(|(k, v)| [k, v]).collect(),
        _ => {
            return Parsed::Bad {
                id: Some(id),
                why: "entry fields are not a list",
            };
        }
    };
    if !flat.len().is_multiple_of(2) {
        return Parsed::Bad {
            id: Some(id),
            why: "entry has an odd number of field items",
        };
    }
    let mut pairs = Vec::with_capacity(flat.len() / 2);
    let mut items = flat.into_iter();
    while let (Some(k), Some(v)) = (items.next(), items.next()) {
        match (bytes(k), bytes(v)) {
            (Some(k), Some(v)) => pairs.push((k, v)),
            _ => {
                return Parsed::Bad {
                    id: Some(id),
                    why: "a field name or value is not a string",
                };
            }
        }
    }
    Parsed::Entry(Entry {
        id,
        fields: Fields::new(pairs),
    })
}

/// The entries of a list reply: XRANGE, XCLAIM, the entries part of
/// XAUTOCLAIM.
pub fn entries(value: Value) -> Vec<Parsed> {
    match value {
        Value::Array(list) => list.into_iter().map(entry).collect(),
        _ => Vec::new(),
    }
}

/// The entries of an XREAD / XREADGROUP reply for one stream
/// (`[[key, entries]]`, or a map in RESP3; nil when nothing came).
pub fn read_entries(value: Value) -> Vec<Parsed> {
    match value {
        Value::Array(streams) => streams
            .into_iter()
            .flat_map(|s| match s {
                Value::Array(mut parts) if parts.len() == 2 => entries(parts.remove(1)),
                _ => Vec::new(),
            })
            .collect(),
        Value::Map(streams) => streams.into_iter().flat_map(|(_, v)| entries(v)).collect(),
        _ => Vec::new(),
    }
}

/// One row of an extended XPENDING reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingRow {
    /// The entry.
    pub id: StreamId,
    /// The consumer holding it.
    pub consumer: String,
    /// Milliseconds since it was last delivered.
    pub idle_ms: u64,
    /// Times it has been delivered.
    pub deliveries: u64,
}

/// Rows of an extended XPENDING reply (`[[id, consumer, idle, count], ...]`);
/// rows of another shape are skipped.
pub fn pending_rows(value: Value) -> Vec<PendingRow> {
    let Value::Array(rows) = value else {
        return Vec::new();
    };
    rows.into_iter()
        .filter_map(|row| {
            let Value::Array(cols) = row else { return None };
            let [id, consumer, idle, count] = <[Value; 4]>::try_from(cols).ok()?;
            let int = |v: Value| match v {
                Value::Int(n) => u64::try_from(n).ok(),
                other => std::str::from_utf8(&bytes(other)?).ok()?.parse().ok(),
            };
            Some(PendingRow {
                id: stream_id(&id)?,
                consumer: String::from_utf8_lossy(&bytes(consumer)?).into_owned(),
                idle_ms: int(idle)?,
                deliveries: int(count)?,
            })
        })
        .collect()
}

/// What `XINFO STREAM` says of a stream.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StreamInfo {
    /// The newest id ever generated (entries may have been trimmed since).
    pub last_generated: StreamId,
    /// Newest id removed by XDEL (Redis 7.0 does not count trimming here).
    pub max_deleted: StreamId,
    /// Oldest id still in the stream (`0-0` if empty).
    pub first: StreamId,
    /// Entries now in the stream.
    pub length: u64,
    /// Entries ever added.
    pub entries_added: u64,
}

impl StreamInfo {
    /// Parses an `XINFO STREAM` reply (flat list in RESP2, map in RESP3).
    pub fn parse(value: Value) -> Self {
        let pairs: Vec<(Value, Value)> = match value {
            Value::Map(pairs) => pairs,
            Value::Array(flat) => {
                let mut items = flat.into_iter();
                std::iter::from_fn(|| Some((items.next()?, items.next()?))).collect()
            }
            _ => Vec::new(),
        };
        let mut info = Self::default();
        for (k, v) in pairs {
            let Some(name) = bytes(k) else { continue };
            let count = || match &v {
                Value::Int(n) => u64::try_from(*n).unwrap_or(0),
                _ => 0,
            };
            match name.as_slice() {
                b"last-generated-id" => info.last_generated = stream_id(&v).unwrap_or_default(),
                b"max-deleted-entry-id" => info.max_deleted = stream_id(&v).unwrap_or_default(),
                b"recorded-first-entry-id" => info.first = stream_id(&v).unwrap_or_default(),
                b"length" => info.length = count(),
                b"entries-added" => info.entries_added = count(),
                _ => {}
            }
        }
        info
    }

    /// True if entries were ever removed from the stream (trimmed or
    /// deleted).
    pub fn removed_any(&self) -> bool {
        self.entries_added > self.length
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &[u8]) -> Value {
        Value::BulkString(s.to_vec())
    }

    fn raw_entry(id: &str, kv: &[&[u8]]) -> Value {
        Value::Array(vec![
            bulk(id.as_bytes()),
            Value::Array(kv.iter().map(|b| bulk(b)).collect()),
        ])
    }

    #[test]
    fn a_bad_entry_does_not_spoil_its_neighbours() {
        let reply = Value::Array(vec![Value::Array(vec![
            bulk(b"mirror:credit:response"),
            Value::Array(vec![
                raw_entry("1-0", &[b"status", b"accepted"]),
                raw_entry("2-0", &[&[0xff, 0xfe], b"x"]),
                raw_entry("3-0", &[b"odd"]),
                Value::Array(vec![bulk(b"4-0"), Value::Nil]),
                Value::Int(7),
                raw_entry("5-0", &[b"status", b"rejected"]),
            ]),
        ])]);
        let parsed = read_entries(reply);
        assert_eq!(parsed.len(), 6);
        let Parsed::Entry(first) = &parsed[0] else {
            panic!("{parsed:?}")
        };
        assert_eq!(first.field("status"), "accepted");
        let Parsed::Entry(non_utf8) = &parsed[1] else {
            panic!("{parsed:?}")
        };
        assert_eq!(non_utf8.fields.raw("\u{fffd}"), None);
        assert_eq!(non_utf8.fields.len(), 1);
        assert!(matches!(
            parsed[2],
            Parsed::Bad {
                id: Some(StreamId { ms: 3, seq: 0 }),
                ..
            }
        ));
        assert_eq!(parsed[3], Parsed::Deleted(StreamId { ms: 4, seq: 0 }));
        assert!(matches!(parsed[4], Parsed::Bad { id: None, .. }));
        assert!(matches!(&parsed[5], Parsed::Entry(e) if e.field("status") == "rejected"));
    }

    #[test]
    fn resp3_maps_are_read_like_resp2_arrays() {
        let reply = Value::Map(vec![(
            bulk(b"s"),
            Value::Array(vec![Value::Array(vec![
                bulk(b"9-1"),
                Value::Map(vec![(bulk(b"k"), bulk(b"v"))]),
            ])]),
        )]);
        let parsed = read_entries(reply);
        assert!(matches!(&parsed[..], [Parsed::Entry(e)] if e.field("k") == "v" && e.id.seq == 1));
        assert!(read_entries(Value::Nil).is_empty());
    }

    #[test]
    fn pending_rows_skip_what_is_not_a_row() {
        let reply = Value::Array(vec![
            Value::Array(vec![
                bulk(b"1-1"),
                bulk(b"c1"),
                Value::Int(500),
                Value::Int(3),
            ]),
            Value::Array(vec![bulk(b"1-2"), bulk(b"c1")]),
            Value::Array(vec![
                bulk(b"nope"),
                bulk(b"c2"),
                Value::Int(1),
                Value::Int(1),
            ]),
        ]);
        let rows = pending_rows(reply);
        assert_eq!(
            rows,
            vec![PendingRow {
                id: StreamId { ms: 1, seq: 1 },
                consumer: "c1".into(),
                idle_ms: 500,
                deliveries: 3
            }]
        );
    }

    #[test]
    fn stream_info_reads_both_shapes() {
        let flat = Value::Array(vec![
            bulk(b"length"),
            Value::Int(2),
            bulk(b"last-generated-id"),
            bulk(b"10-0"),
            bulk(b"entries-added"),
            Value::Int(5),
            bulk(b"recorded-first-entry-id"),
            bulk(b"8-0"),
        ]);
        let info = StreamInfo::parse(flat);
        assert_eq!(info.length, 2);
        assert_eq!(info.last_generated, StreamId { ms: 10, seq: 0 });
        assert_eq!(info.first, StreamId { ms: 8, seq: 0 });
        assert!(info.removed_any());
        let map = Value::Map(vec![(bulk(b"length"), Value::Int(0))]);
        assert_eq!(StreamInfo::parse(map).length, 0);
    }
}
