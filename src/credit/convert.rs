//! Proto <-> domain for CreditService: every input check, and every
//! record's translation to its message.

use std::{sync::Arc, time::Duration};

use rust_decimal::Decimal;

use super::{
    keys::REQUEST_GROUP,
    model::{
        Answer, CreditEvent, CreditEventKind, CreditInventory, CreditRequestRecord, Decision,
        NewCreditRequest, Purpose, RequestStatus,
    },
};
use crate::{
    amount,
    proto::credit::v1 as pb,
    streams::{Entry, watch::Filter},
    time::timestamp_ms,
    validate::FieldViolations,
};

/// Most ListCreditInventory entries per page, and the default.
pub const MAX_PAGE_SIZE: usize = 1000;
const DEFAULT_PAGE_SIZE: usize = 100;
/// Longest reject reason and custody address accepted.
pub const MAX_TEXT_LEN: usize = 1024;

// === proto -> domain ===

/// A RequestCredit call: the request and the wait it asked for.
pub fn new_request(
    r: pb::RequestCreditRequest,
) -> Result<(NewCreditRequest, Duration), FieldViolations> {
    let mut v = FieldViolations::default();
    v.check_id("user_id", &r.user_id);
    v.check_id("asset", &r.asset);
    let change = match amount::parse_change(&r.change) {
        Ok(change) => change,
        Err(e) => {
            v.add("change", e.to_string());
            Decimal::ZERO
        }
    };
    if change > Decimal::ZERO {
        if r.chain.is_empty() {
            v.add("chain", "is required for an increase");
        }
        if r.address.is_empty() {
            v.add("address", "is required for an increase");
        }
    }
    v.check_optional_id("chain", &r.chain);
    if r.address.len() > MAX_TEXT_LEN
        || r.address
            .chars()
            .any(|c| c.is_whitespace() || crate::validate::has_invisible(&c.to_string()))
    {
        v.add(
            "address",
            format!(
                "must be at most {MAX_TEXT_LEN} bytes, without spaces, control or invisible formatting characters"
            ),
        );
    }
    let request_id = if r.request_id.is_empty() {
        format!("req-{}", uuid::Uuid::new_v4())
    } else {
        v.check_id("request_id", &r.request_id);
        r.request_id
    };
    let wait = match r.wait {
        None => Duration::ZERO,
        Some(w) => Duration::try_from(w).unwrap_or_else(|_| {
            v.add("wait", "must be a non-negative duration");
            Duration::ZERO
        }),
    };
    v.into_result()?;
    Ok((
        NewCreditRequest {
            request_id,
            uid: r.user_id,
            asset: r.asset,
            change,
            chain: r.chain,
            address: r.address,
            purpose: Purpose::Plain,
        },
        wait,
    ))
}

/// A user and asset that must both be valid.
pub fn user_asset(user_id: &str, asset: &str) -> Result<(), FieldViolations> {
    let mut v = FieldViolations::default();
    v.check_id("user_id", user_id);
    v.check_id("asset", asset);
    v.into_result()
}

/// A ListCreditInventory page: (after asset, page size).
pub fn inventory_page(r: &pb::ListCreditInventoryRequest) -> Result<usize, FieldViolations> {
    let mut v = FieldViolations::default();
    v.check_id("user_id", &r.user_id);
    v.check_optional_id("page_token", &r.page_token);
    let size = v.page_size(r.page_size, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE);
    v.into_result()?;
    Ok(size)
}

/// A SubscribeCreditRequests call: (group, consumer if named). The group
/// must be one of `allowed` (a new group would start from the beginning of
/// the request stream, taking every other group's requests).
pub fn subscription(
    r: pb::SubscribeCreditRequestsRequest,
    allowed: &[String],
) -> Result<(String, Option<String>), FieldViolations> {
    let mut v = FieldViolations::default();
    let group = if r.group.is_empty() {
        REQUEST_GROUP.to_string()
    } else {
        v.check_id("group", &r.group);
        r.group
    };
    if v.is_empty() && !allowed.contains(&group) {
        v.add(
            "group",
            format!(
                "must be one of the configured groups ({})",
                allowed.join(", ")
            ),
        );
    }
    v.check_optional_id("consumer", &r.consumer);
    v.into_result()?;
    Ok((group, (!r.consumer.is_empty()).then_some(r.consumer)))
}

/// A RespondToCreditRequest call: (request id, decision, reject reason).
pub fn answer(
    r: pb::RespondToCreditRequestRequest,
) -> Result<(String, Decision, String), FieldViolations> {
    let mut v = FieldViolations::default();
    v.check_id("request_id", &r.request_id);
    let decision = match pb::CreditDecision::try_from(r.decision) {
        Ok(pb::CreditDecision::Accept) => {
            if !r.reject_reason.is_empty() {
                v.add("reject_reason", "must be empty when accepting");
            }
            Decision::Accept
        }
        Ok(pb::CreditDecision::Reject) => {
            v.check_text("reject_reason", &r.reject_reason, MAX_TEXT_LEN, true);
            Decision::Reject
        }
        _ => {
            v.add(
                "decision",
                "must be CREDIT_DECISION_ACCEPT or CREDIT_DECISION_REJECT",
            );
            Decision::Reject
        }
    };
    v.into_result()?;
    Ok((r.request_id, decision, r.reject_reason))
}

/// What an operator decided for a pending request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolution {
    /// Send it to the exchange again.
    Redeliver,
    /// Reject it with this reason.
    Reject(String),
}

/// A ResolveCreditAnomaly call: (request id, resolution, reason for the
/// record).
pub fn resolution(
    r: pb::ResolveCreditAnomalyRequest,
) -> Result<(String, Resolution, String), FieldViolations> {
    let mut v = FieldViolations::default();
    v.check_id("request_id", &r.request_id);
    let reject = match pb::CreditAnomalyResolution::try_from(r.resolution) {
        Ok(pb::CreditAnomalyResolution::Redeliver) => {
            v.check_text("reason", &r.reason, MAX_TEXT_LEN, false);
            false
        }
        Ok(pb::CreditAnomalyResolution::Reject) => {
            v.check_text("reason", &r.reason, MAX_TEXT_LEN, true);
            true
        }
        _ => {
            v.add(
                "resolution",
                "must be CREDIT_ANOMALY_RESOLUTION_REDELIVER or CREDIT_ANOMALY_RESOLUTION_REJECT",
            );
            false
        }
    };
    v.into_result()?;
    let resolution = if reject {
        Resolution::Reject(format!("RESOLVED: {}", r.reason))
    } else {
        Resolution::Redeliver
    };
    Ok((r.request_id, resolution, r.reason))
}

/// A WatchCreditEvents call: (resume cursor, filter).
pub fn watch(r: pb::WatchCreditEventsRequest) -> Result<(String, Filter), FieldViolations> {
    let mut v = FieldViolations::default();
    v.check_optional_id("user_id", &r.user_id);
    v.check_optional_id("asset", &r.asset);
    v.into_result()?;
    let (user, asset) = (r.user_id, r.asset);
    let filter = Arc::new(move |e: &Entry| {
        (user.is_empty() || e.field("uid") == user)
            && (asset.is_empty() || e.field("asset") == asset)
    });
    Ok((r.start_after_event_id, filter))
}

// === domain -> proto ===

/// A request's record as the API shows it.
pub fn request_to_proto(r: &CreditRequestRecord) -> pb::CreditRequest {
    pb::CreditRequest {
        request_id: r.request_id.clone(),
        user_id: r.uid.clone(),
        asset: r.asset.clone(),
        change: r.change.clone(),
        expected_ci: r.ci.clone(),
        chain: r.chain.clone(),
        address: r.address.clone(),
        status: match r.status {
            RequestStatus::Pending => pb::CreditRequestStatus::Pending,
            RequestStatus::Accepted => pb::CreditRequestStatus::Accepted,
            RequestStatus::Rejected => pb::CreditRequestStatus::Rejected,
        } as i32,
        reject_reason: r.reject_reason.clone(),
        created_at: r.created_ms.map(timestamp_ms),
        decided_at: r.decided_ms.map(timestamp_ms),
        custodian: r.custodian.clone(),
        ci_version: r.ci_version,
    }
}

/// Credit Inventory as the API shows it.
pub fn inventory_to_proto(i: &CreditInventory) -> pb::CreditInventory {
    pb::CreditInventory {
        user_id: i.uid.clone(),
        asset: i.asset.clone(),
        amount: i.amount.clone(),
        version: i.version,
        updated_at: i.updated_ms.map(timestamp_ms),
        last_request_id: i.last_request_id.clone(),
    }
}

/// An event of the credit log as the API shows it.
pub fn event_to_proto(e: &CreditEvent) -> pb::CreditEvent {
    use pb::CreditEventType as T;
    pb::CreditEvent {
        event_id: e.event_id.clone(),
        r#type: match e.kind {
            CreditEventKind::Requested => T::Requested,
            CreditEventKind::Accepted => T::Accepted,
            CreditEventKind::Rejected => T::Rejected,
            CreditEventKind::Anomaly => T::Anomaly,
            CreditEventKind::Redelivered => T::Redelivered,
            CreditEventKind::Settled => T::Settled,
            CreditEventKind::Unknown => T::Unspecified,
        } as i32,
        request_id: e.request_id.clone(),
        user_id: e.uid.clone(),
        asset: e.asset.clone(),
        change: e.change.clone(),
        ci: e.ci.clone(),
        reason: e.reason.clone(),
        occurred_at: e.at_ms.map(timestamp_ms),
    }
}

/// An answer as RespondToCreditRequest returns it.
pub fn answer_to_proto(request_id: String, a: Answer) -> pb::RespondToCreditRequestResponse {
    pb::RespondToCreditRequestResponse {
        request_id,
        decision: match a.decision {
            Decision::Accept => pb::CreditDecision::Accept,
            Decision::Reject => pb::CreditDecision::Reject,
        } as i32,
        reject_reason: a.reject_reason,
        ci: a.ci,
        decided_at: Some(timestamp_ms(a.decided_ms)),
    }
}
