//! Time as the protocol and the API write it: the standard's `timestamp`
//! fields are unix seconds; our own fields keep unix milliseconds; the
//! gRPC API speaks `google.protobuf.Timestamp`; documents (credentials,
//! settlement reports) write ISO-8601 ([`datetime`]).

pub mod datetime;

use std::time::SystemTime;

/// One reading of the clock, in both of the protocol's units.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Now {
    /// Unix seconds: the standard `timestamp` fields.
    pub s: u64,
    /// Unix milliseconds: our extension fields (`created_ms`, `at_ms` ...).
    pub ms: u64,
}

/// The clock now.
pub fn now() -> Now {
    let since = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    Now {
        s: since.as_secs(),
        ms: since.as_millis() as u64,
    }
}

/// A protobuf timestamp from unix milliseconds.
pub fn timestamp_ms(ms: i64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: ms.div_euclid(1000),
        nanos: (ms.rem_euclid(1000) * 1_000_000) as i32,
    }
}

/// A protobuf timestamp of the clock now, to the nanosecond.
pub fn timestamp_now() -> prost_types::Timestamp {
    let since = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    prost_types::Timestamp {
        seconds: since.as_secs() as i64,
        nanos: since.subsec_nanos() as i32,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn milliseconds_before_the_epoch_keep_positive_nanos() {
        let t = timestamp_ms(-1);
        assert_eq!((t.seconds, t.nanos), (-1, 999_000_000));
        let t = timestamp_ms(1_700_000_000_123);
        assert_eq!((t.seconds, t.nanos), (1_700_000_000, 123_000_000));
    }
}
