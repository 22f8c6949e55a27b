//! The credit flow's data as it sits in Redis (string fields of hashes and
//! stream entries) and its translation to the gRPC messages, plus the
//! errors of the whole credit domain.
//!
//! Records written by other OpenOES parties carry only the standard fields:
//! every reader here tolerates missing extension fields (status, versions,
//! millisecond times) and falls back to the standard ones.

use std::{collections::HashMap, time::SystemTime};

use crate::{proto::credit::v1 as pb, redis::RedisError};

/// Requests to the exchange (std), on M and replicated to R.
pub const REQUEST_STREAM: &str = "mirror:credit:request";
/// Responses of the exchange (std), on R.
pub const RESPONSE_STREAM: &str = "mirror:credit:response";
/// The credit event log (ext), on M and replicated to R.
pub const EVENTS_STREAM: &str = "mirror:credit:events";
/// The exchange's consumer group on [`REQUEST_STREAM`] (std).
pub const REQUEST_GROUP: &str = "credit-request-processor";
/// The WSP's cursor over the response stream on R (ext), on M.
pub const RESPONSE_CURSOR: &str = "mirror:cursor:mirror:credit:response";

/// `CI:<uid>:<asset>` (std): Credit Inventory.
pub fn ci_key(uid: &str, asset: &str) -> String {
    format!("CI:{uid}:{asset}")
}

/// `mirror:credit:req:<id>` (ext): the WSP's record of a request.
pub fn request_key(request_id: &str) -> String {
    format!("mirror:credit:req:{request_id}")
}

/// `mirror:credit:inflight:<uid>:<asset>` (ext): the one pending request.
pub fn inflight_key(uid: &str, asset: &str) -> String {
    format!("mirror:credit:inflight:{uid}:{asset}")
}

/// `mirror:credit:assets:<uid>` (ext): sorted set of the assets a user has
/// Credit Inventory in, for ListCreditInventory.
pub fn assets_key(uid: &str) -> String {
    format!("mirror:credit:assets:{uid}")
}

/// `mirror:credit:answer:<id>` (ext, on R): the exchange's record of a
/// delivered request and of its answer.
pub fn answer_key(request_id: &str) -> String {
    format!("mirror:credit:answer:{request_id}")
}

/// String fields of a hash or stream entry.
pub type Fields = HashMap<String, String>;

fn field<'a>(fields: &'a Fields, name: &str) -> &'a str {
    fields.get(name).map_or("", String::as_str)
}

/// A credit request from its record on M (`mirror:credit:req:<id>`) or
/// from its standard stream entry: both use the same field names. An entry
/// has no `status`: it is PENDING.
pub fn request_to_proto(fields: &Fields) -> pb::CreditRequest {
    use pb::CreditRequestStatus as S;
    let status = match field(fields, "status") {
        "accepted" => S::Accepted,
        "rejected" => S::Rejected,
        _ => S::Pending,
    };
    let created_at = match field(fields, "created_ms").parse() {
        Ok(ms) => Some(timestamp_ms(ms)),
        Err(_) => field(fields, "timestamp")
            .parse()
            .ok()
            .map(|s: i64| timestamp_ms(s.saturating_mul(1000))),
    };
    pb::CreditRequest {
        request_id: field(fields, "request_id").into(),
        user_id: field(fields, "uid").into(),
        asset: field(fields, "asset").into(),
        change: field(fields, "c_change").into(),
        expected_ci: field(fields, "ci").into(),
        chain: field(fields, "chain").into(),
        address: field(fields, "address").into(),
        status: status as i32,
        reject_reason: field(fields, "reject_reason").into(),
        created_at,
        decided_at: field(fields, "decided_ms").parse().ok().map(timestamp_ms),
        custodian: field(fields, "custodian").into(),
        ci_version: field(fields, "ci_version").parse().unwrap_or(0),
    }
}

/// True if a request record shows a final status.
pub fn is_final(fields: &Fields) -> bool {
    matches!(field(fields, "status"), "accepted" | "rejected")
}

/// Credit Inventory from its hash (`CI:<uid>:<asset>`). Only `amount` is
/// standard; the rest default.
pub fn inventory_to_proto(uid: &str, asset: &str, fields: &Fields) -> pb::CreditInventory {
    pb::CreditInventory {
        user_id: uid.into(),
        asset: asset.into(),
        amount: field(fields, "amount").into(),
        version: field(fields, "version").parse().unwrap_or(0),
        updated_at: field(fields, "updated_ms").parse().ok().map(timestamp_ms),
        last_request_id: field(fields, "last_request_id").into(),
    }
}

/// One entry of the credit event log.
pub fn event_to_proto(event_id: &str, fields: &Fields) -> pb::CreditEvent {
    use pb::CreditEventType as T;
    let kind = match field(fields, "type") {
        "requested" => T::Requested,
        "accepted" => T::Accepted,
        "rejected" => T::Rejected,
        "anomaly" => T::Anomaly,
        _ => T::Unspecified,
    };
    pb::CreditEvent {
        event_id: event_id.into(),
        r#type: kind as i32,
        request_id: field(fields, "request_id").into(),
        user_id: field(fields, "uid").into(),
        asset: field(fields, "asset").into(),
        change: field(fields, "c_change").into(),
        ci: field(fields, "ci").into(),
        reason: field(fields, "reason").into(),
        occurred_at: field(fields, "at_ms").parse().ok().map(timestamp_ms),
    }
}

/// A protobuf timestamp from unix milliseconds.
pub fn timestamp_ms(ms: i64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: ms.div_euclid(1000),
        nanos: (ms.rem_euclid(1000) * 1_000_000) as i32,
    }
}

/// Now, as unix seconds (the protocol's `timestamp`) and milliseconds.
pub fn now() -> (u64, u64) {
    let since = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    (since.as_secs(), since.as_millis() as u64)
}

/// Every way a credit operation can fail.
#[derive(Debug, thiserror::Error)]
pub enum CreditError {
    /// Same request_id, another payload.
    #[error("request_id {0:?} was already used for another request")]
    RequestIdReused(String),
    /// The user and asset have a request pending.
    #[error("credit request {pending:?} is still pending for this user and asset")]
    InFlight {
        /// The pending request.
        pending: String,
    },
    /// A decrease would take Credit Inventory below zero.
    #[error("Credit Inventory {current} cannot change by {change}: it would go below zero")]
    InsufficientCredit {
        /// CI now.
        current: String,
        /// The change asked for.
        change: String,
    },
    /// The new Credit Inventory would not be exact (beyond 28 significant
    /// digits).
    #[error("Credit Inventory {current} plus {change} is beyond exact decimal range")]
    TooLarge {
        /// CI now.
        current: String,
        /// The change asked for.
        change: String,
    },
    /// CI kept changing under the request (should not happen: one pending
    /// request per user and asset).
    #[error("Credit Inventory kept changing; retry")]
    Contention,
    /// The exchange has no delivered request with this id.
    #[error("no credit request {0:?} was delivered to this exchange")]
    UnknownRequest(String),
    /// The request was answered before with the other decision.
    #[error("credit request {request_id:?} was already answered: {status}")]
    AlreadyAnswered {
        /// The request.
        request_id: String,
        /// The recorded status, `accepted` or `rejected`.
        status: String,
    },
    /// Too many RequestCredit calls are waiting for decisions.
    #[error(
        "{limit} calls already wait for credit decisions on this server; retry later, or without wait"
    )]
    TooManyWaiters {
        /// The configured limit.
        limit: usize,
    },
    /// Stored data is not what the protocol says.
    #[error("corrupt credit data at {key}: {reason}")]
    Corrupt {
        /// The key.
        key: String,
        /// What is wrong.
        reason: String,
    },
    /// Redis failed.
    #[error(transparent)]
    Redis(#[from] RedisError),
}
