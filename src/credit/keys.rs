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
