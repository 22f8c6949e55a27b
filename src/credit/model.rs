//! The credit flow's records, parsed once from Redis into typed structs.
//!
//! Records written by other OpenOES parties carry only the standard fields:
//! every parser here tolerates missing extension fields (status, versions,
//! millisecond times) and falls back to the standard ones.

use rust_decimal::Decimal;

use crate::streams::{Entry, Fields};

/// Where a credit request stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestStatus {
    /// Sent, not decided yet.
    Pending,
    /// The exchange accepted it; CI changed.
    Accepted,
    /// The exchange rejected it; CI did not change.
    Rejected,
}

impl RequestStatus {
    /// The protocol's word (`status` field).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Accepted => "accepted",
            Self::Rejected => "rejected",
        }
    }

    /// From the protocol's word; anything else (or nothing) is pending.
    pub fn parse(text: &str) -> Self {
        match text {
            "accepted" => Self::Accepted,
            "rejected" => Self::Rejected,
            _ => Self::Pending,
        }
    }

    /// True once decided.
    pub fn is_final(self) -> bool {
        self != Self::Pending
    }
}

/// What a credit request is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// A plain credit change (CreditService.RequestCredit).
    Plain,
    /// A pledge: an increase backed by vault balance it locks.
    Pledge,
    /// A release: a decrease that unlocks pledged balance once accepted.
    Release,
}

impl Purpose {
    /// The record's `purpose` field.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Plain => "",
            Self::Pledge => "pledge",
            Self::Release => "release",
        }
    }

    /// From the record's `purpose` field ("" or missing: plain).
    pub fn parse(text: &str) -> Self {
        match text {
            "pledge" => Self::Pledge,
            "release" => Self::Release,
            _ => Self::Plain,
        }
    }
}

/// A credit request, from the WSP's record on M (`mirror:credit:req:<id>`)
/// or from its standard stream entry: both use the same field names. An
/// entry has no `status`: it is pending.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreditRequestRecord {
    /// Idempotency key.
    pub request_id: String,
    /// The user (`uid`).
    pub uid: String,
    /// Asset symbol.
    pub asset: String,
    /// Signed change as written (`c_change`).
    pub change: String,
    /// CI expected after the change (`ci`).
    pub ci: String,
    /// Chain (increases).
    pub chain: String,
    /// Custody address (increases).
    pub address: String,
    /// The WSP's custodian id.
    pub custodian: String,
    /// CI version the request was computed from (ext; 0 if absent).
    pub ci_version: u64,
    /// Where it stands.
    pub status: RequestStatus,
    /// Why it was rejected ("" otherwise).
    pub reject_reason: String,
    /// Unix ms of creation: `created_ms` (ext) or the standard `timestamp`.
    pub created_ms: Option<i64>,
    /// Unix ms of the decision applied on M (ext).
    pub decided_ms: Option<i64>,
    /// What it is for (ext; plain if absent).
    pub purpose: Purpose,
}

impl CreditRequestRecord {
    /// Parses a record or a stream entry's fields, leniently.
    pub fn parse(f: &Fields) -> Self {
        let created_ms = f.text("created_ms").parse().ok().or_else(|| {
            f.text("timestamp")
                .parse::<i64>()
                .ok()
                .map(|s| s.saturating_mul(1000))
        });
        Self {
            request_id: f.text("request_id").into(),
            uid: f.text("uid").into(),
            asset: f.text("asset").into(),
            change: f.text("c_change").into(),
            ci: f.text("ci").into(),
            chain: f.text("chain").into(),
            address: f.text("address").into(),
            custodian: f.text("custodian").into(),
            ci_version: f.text("ci_version").parse().unwrap_or(0),
            status: RequestStatus::parse(f.text("status")),
            reject_reason: f.text("reject_reason").into(),
            created_ms,
            decided_ms: f.text("decided_ms").parse().ok(),
            purpose: Purpose::parse(f.text("purpose")),
        }
    }
}

/// Credit Inventory from its hash (`CI:<uid>:<asset>`). Only `amount` is
/// standard; the rest default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreditInventory {
    /// The user.
    pub uid: String,
    /// The asset.
    pub asset: String,
    /// The amount as stored.
    pub amount: String,
    /// +1 per change (ext).
    pub version: u64,
    /// Unix ms of the last change (ext).
    pub updated_ms: Option<i64>,
    /// The request that made the last change (ext).
    pub last_request_id: String,
}

impl CreditInventory {
    /// Parses the CI hash of `uid` / `asset`.
    pub fn parse(uid: &str, asset: &str, f: &Fields) -> Self {
        Self {
            uid: uid.into(),
            asset: asset.into(),
            amount: f.text("amount").into(),
            version: f.text("version").parse().unwrap_or(0),
            updated_ms: f.text("updated_ms").parse().ok(),
            last_request_id: f.text("last_request_id").into(),
        }
    }
}

/// What happened to a credit request (`type` of an event).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CreditEventKind {
    /// Recorded and sent.
    Requested,
    /// Accepted and applied.
    Accepted,
    /// Rejected.
    Rejected,
    /// A response disagreed with its request, was malformed, or was lost:
    /// not applied.
    Anomaly,
    /// Sent to the exchange again.
    Redelivered,
    /// A completed settlement changed Credit Inventory.
    Settled,
    /// A type this version does not know.
    Unknown,
}

/// One entry of the credit event log (`mirror:credit:events`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreditEvent {
    /// The entry id: the `event_id` clients resume after.
    pub event_id: String,
    /// What happened.
    pub kind: CreditEventKind,
    /// The request.
    pub request_id: String,
    /// The user.
    pub uid: String,
    /// The asset.
    pub asset: String,
    /// The request's change.
    pub change: String,
    /// CI after the event.
    pub ci: String,
    /// Reject reason or anomaly description.
    pub reason: String,
    /// Unix ms.
    pub at_ms: Option<i64>,
}

impl CreditEvent {
    /// Parses an event log entry.
    pub fn parse(entry: &Entry) -> Self {
        let f = &entry.fields;
        let kind = match f.text("type") {
            "requested" => CreditEventKind::Requested,
            "accepted" => CreditEventKind::Accepted,
            "rejected" => CreditEventKind::Rejected,
            "anomaly" => CreditEventKind::Anomaly,
            "redelivered" => CreditEventKind::Redelivered,
            "settled" => CreditEventKind::Settled,
            _ => CreditEventKind::Unknown,
        };
        Self {
            event_id: entry.id.to_string(),
            kind,
            request_id: f.text("request_id").into(),
            uid: f.text("uid").into(),
            asset: f.text("asset").into(),
            change: f.text("c_change").into(),
            ci: f.text("ci").into(),
            reason: f.text("reason").into(),
            at_ms: f.text("at_ms").parse().ok(),
        }
    }

    /// True for the events that decide a request.
    pub fn is_decision(entry: &Entry) -> bool {
        matches!(entry.field("type"), "accepted" | "rejected")
    }
}

/// A validated new credit request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewCreditRequest {
    /// Idempotency key.
    pub request_id: String,
    /// The user.
    pub uid: String,
    /// Asset symbol.
    pub asset: String,
    /// Signed change, never zero.
    pub change: Decimal,
    /// Chain of the custody assets (increases).
    pub chain: String,
    /// Custody address (increases).
    pub address: String,
    /// What it is for: a plain change, or a pledge's or release's.
    pub purpose: Purpose,
}

/// An exchange response as read from `mirror:credit:response` on R, with
/// every field checked and bounded: the exchange is another company, and
/// what it writes is hostile until proven otherwise.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreditResponse {
    /// Its stream entry id on R.
    pub entry_id: String,
    /// The request answered (a valid id).
    pub request_id: String,
    /// The `uid` field (a valid id): must be the request's.
    pub uid: String,
    /// The `asset` field (a valid id): must be the request's.
    pub asset: String,
    /// The `custodian` field (a valid id): must be this WSP's.
    pub custodian: String,
    /// The `status` field as sent if it is `accepted` or `rejected`, else
    /// `invalid` (recorded as an anomaly of its request).
    pub status: String,
    /// The `ci` field in canonical form, "" if it is not an amount.
    pub ci: String,
    /// The `reject_reason` field, cut to [`MAX_REASON_BYTES`] with a marker.
    pub reject_reason: String,
}

/// Most bytes of an exchange's reject reason copied to M; longer ones are
/// cut, with a marker saying how long they were.
pub const MAX_REASON_BYTES: usize = 1024;

/// Most bytes of a bad entry copied into its anomaly record.
pub const MAX_ANOMALY_COPY: usize = 256;

/// A response entry that cannot be applied to any request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MalformedResponse {
    /// The request it names, if that is a valid id ("" otherwise).
    pub request_id: String,
    /// What is wrong, and a bounded copy of what was seen.
    pub reason: String,
}

impl CreditResponse {
    /// Checks a response entry field by field. `max_bytes` bounds the whole
    /// entry.
    pub fn parse(entry: &Entry, max_bytes: usize) -> Result<Self, MalformedResponse> {
        let f = &entry.fields;
        let seen = || f.describe(MAX_ANOMALY_COPY);
        let request_id = f
            .get("request_id")
            .filter(|id| crate::validate::is_valid_id(id));
        let malformed = |what: String| MalformedResponse {
            request_id: request_id.unwrap_or_default().to_string(),
            reason: format!("malformed response: {what}; seen: {}", seen()),
        };
        let size = f.byte_len();
        if size > max_bytes {
            return Err(MalformedResponse {
                request_id: request_id.unwrap_or_default().to_string(),
                reason: format!(
                    "malformed response: {size} bytes (limit {max_bytes}); seen: {}",
                    seen()
                ),
            });
        }
        if let Some((name, _)) = f
            .pairs()
            .find(|(k, v)| std::str::from_utf8(k).is_err() || std::str::from_utf8(v).is_err())
        {
            let name =
                String::from_utf8_lossy(&name.escape_ascii().collect::<Vec<u8>>()).into_owned();
            return Err(malformed(format!("field {name} is not UTF-8 text")));
        }
        let Some(request_id) = request_id else {
            return Err(malformed("request_id is missing or not a valid id".into()));
        };
        let id = |name: &str| {
            f.get(name)
                .filter(|v| crate::validate::is_valid_id(v))
                .map(str::to_string)
                .ok_or_else(|| malformed(format!("{name} is missing or not a valid id")))
        };
        let (uid, asset, custodian) = (id("uid")?, id("asset")?, id("custodian")?);
        let status = match f.text("status") {
            s @ ("accepted" | "rejected") => s.to_string(),
            _ => "invalid".to_string(),
        };
        let ci = crate::amount::parse(f.text("ci"))
            .map(crate::amount::format)
            .unwrap_or_default();
        let reason = f.text("reject_reason");
        let reject_reason = if reason.len() > MAX_REASON_BYTES {
            format!(
                "{} [cut: {} bytes]",
                crate::validate::cut(reason, MAX_REASON_BYTES),
                reason.len()
            )
        } else {
            reason.to_string()
        };
        Ok(Self {
            entry_id: entry.id.to_string(),
            request_id: request_id.to_string(),
            uid,
            asset,
            custodian,
            status,
            ci,
            reject_reason,
        })
    }
}

/// An exchange backend's decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Accept the change.
    Accept,
    /// Reject it.
    Reject,
}

impl Decision {
    /// The protocol's `status` value.
    pub fn status(self) -> &'static str {
        match self {
            Self::Accept => "accepted",
            Self::Reject => "rejected",
        }
    }
}

/// An answer as the exchange recorded it on R.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// The decision recorded (the first one).
    pub decision: Decision,
    /// Its reject reason, "" on accept.
    pub reject_reason: String,
    /// The response's `ci`.
    pub ci: String,
    /// When it was recorded, unix milliseconds.
    pub decided_ms: i64,
}
