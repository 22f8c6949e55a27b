//! Every Redis key and stream of the credit flow. **(std)** names are the
//! standard's, byte for byte; **(ext)** are our extensions (another
//! OpenOES party works without them).
//!
//! | key | type | on | holds |
//! |---|---|---|---|
//! | `CI:<uid>:<asset>` (std) | hash | M | Credit Inventory: `amount` (std), `version`, `updated_ms`, `last_request_id` |
//! | `mirror:credit:request` (std) | stream | M | requests to the exchange |
//! | `mirror:credit:response` (std) | stream | R | the exchange's responses |
//! | `mirror:credit:req:<request_id>` (ext) | hash | M | the request's record and status |
//! | `mirror:credit:inflight:<uid>:<asset>` (ext) | string | M | id of the one pending request |
//! | `mirror:credit:events` (ext) | stream | M | the credit event log |
//! | `mirror:credit:assets:<uid>` (ext) | sorted set | M | assets the user has CI in |
//! | `mirror:cursor:mirror:credit:response` (ext) | string | M | last response id on R applied |
//! | `mirror:credit:undecided` (ext) | sorted set | M | undecided request ids, score = ms of their stream entry: what trimming keeps |
//! | `mirror:credit:response-gap` (ext) | hash | M | an open gap: responses trimmed on R before they were applied |
//! | `mirror:credit:answer:<request_id>` (ext) | hash | R | the exchange's record of a delivery and its answer |
//!
//! Custody (ext, on M only; the exchange reads none of it): a pledge
//! travels as a credit increase, a release as a credit decrease, and the
//! decision's custody effect is applied in the same step as the decision,
//! so these keys are the credit flow's as much as PledgeService's.
//!
//! | key | type | holds |
//! |---|---|---|
//! | `mirror:vault:<uid>:<asset>` | hash | `total`, `locked`, `pledged` (remaining of active pledges), `version`, `updated_ms`; available = total - locked |
//! | `mirror:pledge:<pledge_id>` | hash | a pledge: amount, remaining, status, credit_request_id (= pledge_id); or a settlement lot ([`settlement_lot`]) |
//! | `mirror:release:<release_id>` | hash | a release: amount, status, unlocks (JSON) |
//! | `mirror:pledges-active:<uid>:<asset>` | sorted set | ACTIVE pledges with something left, oldest first |
//! | `mirror:pledges:<uid>` | sorted set | every pledge of a user, score = creation ms |
//! | `mirror:vault-op:<request_id>` | hash | a deposit's or withdrawal's record (idempotency) |
//! | `mirror:vault-events` | stream | the vault event log |

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

/// Undecided requests (ext), on M: sorted set of request ids, score = the
/// milliseconds of their stream entry.
pub const UNDECIDED: &str = "mirror:credit:undecided";
/// An open response gap (ext), on M.
pub const RESPONSE_GAP: &str = "mirror:credit:response-gap";

/// `CI:<uid>:<asset>` (std): Credit Inventory.
pub fn ci(uid: &str, asset: &str) -> String {
    format!("CI:{uid}:{asset}")
}

/// `mirror:credit:req:<id>` (ext): the WSP's record of a request.
pub fn request(request_id: &str) -> String {
    format!("mirror:credit:req:{request_id}")
}

/// `mirror:credit:inflight:<uid>:<asset>` (ext): the one pending request.
pub fn inflight(uid: &str, asset: &str) -> String {
    format!("mirror:credit:inflight:{uid}:{asset}")
}

/// `mirror:credit:assets:<uid>` (ext): sorted set of the assets a user has
/// Credit Inventory in, for ListCreditInventory.
pub fn assets(uid: &str) -> String {
    format!("mirror:credit:assets:{uid}")
}

/// `mirror:credit:answer:<id>` (ext, on R): the exchange's record of a
/// delivered request and of its answer.
pub fn answer(request_id: &str) -> String {
    format!("mirror:credit:answer:{request_id}")
}

/// `mirror:vault:<uid>:<asset>` (ext): a user's custody in one asset.
pub fn vault(uid: &str, asset: &str) -> String {
    format!("mirror:vault:{uid}:{asset}")
}

/// `mirror:pledge:<id>` (ext): a pledge (its credit request has the same id).
pub fn pledge(pledge_id: &str) -> String {
    format!("mirror:pledge:{pledge_id}")
}

/// `mirror:release:<id>` (ext): a release (its credit request has the same id).
pub fn release(release_id: &str) -> String {
    format!("mirror:release:{release_id}")
}

/// `mirror:pledges-active:<uid>:<asset>` (ext): active pledges, oldest first.
pub fn active_pledges(uid: &str, asset: &str) -> String {
    format!("mirror:pledges-active:{uid}:{asset}")
}

/// `mirror:pledges:<uid>` (ext): every pledge of a user, by creation time.
pub fn user_pledges(uid: &str) -> String {
    format!("mirror:pledges:{uid}")
}

/// `mirror:vault-op:<request_id>` (ext): a deposit's or withdrawal's record.
pub fn vault_op(request_id: &str) -> String {
    format!("mirror:vault-op:{request_id}")
}

/// The pledge id of the settlement lot that a completed settlement's
/// positive net in `asset` adds to custody (see SettlementService). No
/// request id can take it (ids cannot contain `/`), so a CreatePledge never
/// collides with a lot.
pub fn settlement_lot(report_id: &str, asset: &str) -> String {
    format!("settlement/{report_id}/{asset}")
}

/// True if `pledge_id` is a settlement lot's id (two valid ids after
/// `settlement/`).
pub fn is_settlement_lot(pledge_id: &str) -> bool {
    pledge_id
        .strip_prefix("settlement/")
        .and_then(|rest| rest.split_once('/'))
        .is_some_and(|(report, asset)| {
            crate::validate::is_valid_id(report) && crate::validate::is_valid_id(asset)
        })
}

/// The vault event log (ext), on M.
pub const VAULT_EVENTS: &str = "mirror:vault-events";
