//! Every Redis key and stream of settlement. **(std)** names are the
//! standard's, byte for byte; **(ext)** are our extensions (another OpenOES
//! party works without them).
//!
//! | key | type | on | holds |
//! |---|---|---|---|
//! | `mirror:settlement:individual:response` (std) | stream | R | the exchange's per-user reports |
//! | `mirror:settlement:batch:response` (std) | stream | R | the exchange's cycle summaries |
//! | `mirror:settlement:confirmation` (std) | stream | M | the WSP's verdicts |
//! | `mirror:settlement:report:<report_id>` (ext) | hash | M | the WSP's record of a report and its verdict |
//! | `mirror:settlement:user:<uid>` (ext) | sorted set | M | a user's reports, score = ms recorded |
//! | `mirror:settlement:cycle-reports:<cycle_id>` (ext) | sorted set | M | a cycle's reports, score = ms recorded |
//! | `mirror:settlement:cycle:<cycle_id>` (ext) | hash | M | a cycle: counts, status, root, checkpoint |
//! | `mirror:settlement:leaves:<cycle_id>` (ext) | string | M | a closed cycle's leaf hashes, 32 bytes each, in tree order |
//! | `mirror:settlement:cosign-due` (ext) | sorted set | M | verified cycles with every report decided, not countersigned yet |
//! | `mirror:settlement:events` (ext) | stream | M | the settlement event log |
//! | `mirror:cursor:mirror:settlement:individual:response` (ext) | string | M | last report entry on R handled |
//! | `mirror:cursor:mirror:settlement:batch:response` (ext) | string | M | last summary entry on R handled |
//! | `mirror:settlement:submitted:<report_id>` (ext) | hash | R | the exchange's record of a report it published |
//! | `mirror:settlement:submitted-cycle:<cycle_id>` (ext) | sorted set | R | the reports the exchange published in a cycle |
//! | `mirror:settlement:closing:<cycle_id>` (ext) | hash | R | the exchange's record of a cycle it closes |
//!
//! A completed settlement also writes the credit flow's and the vault's
//! keys ([`crate::credit::keys`]): `CI:<uid>:<asset>` and its asset index,
//! the vault, pledges (settlement lots), and both event logs. The R-only
//! keys are the exchange's own and vanish in a full resync of R, by
//! design: what matters is on M (replicated to R), and the exchange checks
//! for it there before it treats anything as delivered.

/// Per-user reports (std), written by the exchange on R.
pub const REPORT_STREAM: &str = "mirror:settlement:individual:response";
/// Cycle summaries (std), written by the exchange on R.
pub const BATCH_STREAM: &str = "mirror:settlement:batch:response";
/// Verdicts (std), written by the WSP on M.
pub const CONFIRMATION_STREAM: &str = "mirror:settlement:confirmation";
/// The settlement event log (ext), on M.
pub const EVENTS_STREAM: &str = "mirror:settlement:events";
/// The WSP's cursor over [`REPORT_STREAM`] (ext), on M.
pub const REPORT_CURSOR: &str = "mirror:cursor:mirror:settlement:individual:response";
/// The WSP's cursor over [`BATCH_STREAM`] (ext), on M.
pub const BATCH_CURSOR: &str = "mirror:cursor:mirror:settlement:batch:response";
/// Cycles due for the WSP's countersignature (ext), on M.
pub const COSIGN_DUE: &str = "mirror:settlement:cosign-due";

/// `mirror:settlement:report:<id>` (ext): the WSP's record of a report.
pub fn report(report_id: &str) -> String {
    format!("mirror:settlement:report:{report_id}")
}

/// `mirror:settlement:user:<uid>` (ext): a user's reports.
pub fn user_reports(uid: &str) -> String {
    format!("mirror:settlement:user:{uid}")
}

/// `mirror:settlement:cycle-reports:<cycle_id>` (ext): a cycle's reports.
pub fn cycle_reports(cycle_id: &str) -> String {
    format!("mirror:settlement:cycle-reports:{cycle_id}")
}

/// `mirror:settlement:cycle:<cycle_id>` (ext): a cycle.
pub fn cycle(cycle_id: &str) -> String {
    format!("mirror:settlement:cycle:{cycle_id}")
}

/// `mirror:settlement:leaves:<cycle_id>` (ext): a closed cycle's leaves.
pub fn leaves(cycle_id: &str) -> String {
    format!("mirror:settlement:leaves:{cycle_id}")
}

/// `mirror:settlement:submitted:<id>` (ext, R only): the exchange's record
/// of a report it published.
pub fn submitted(report_id: &str) -> String {
    format!("mirror:settlement:submitted:{report_id}")
}

/// `mirror:settlement:submitted-cycle:<cycle_id>` (ext, R only): what the
/// exchange published in a cycle.
pub fn submitted_cycle(cycle_id: &str) -> String {
    format!("mirror:settlement:submitted-cycle:{cycle_id}")
}

/// `mirror:settlement:closing:<cycle_id>` (ext, R only): the exchange's
/// record of a cycle it closes.
pub fn closing(cycle_id: &str) -> String {
    format!("mirror:settlement:closing:{cycle_id}")
}
