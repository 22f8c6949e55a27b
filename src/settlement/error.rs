//! Every way a settlement call can fail, and how each looks on the wire.

use tonic::Code;

use crate::{
    error::{RpcError, reason},
    redis::RedisError,
    streams::waiters::TooManyWaiters,
    validate::FieldViolation,
};

/// Every way a settlement call can fail.
#[derive(Debug, thiserror::Error)]
pub enum SettlementError {
    /// No such report is recorded.
    #[error("settlement report {0:?} is not recorded")]
    UnknownReport(String),
    /// Same report_id, another report.
    #[error("report_id {0:?} was already used for another report")]
    ReportIdReused(String),
    /// The cycle is closed.
    #[error("cycle {0:?} is closed: it takes no more reports")]
    CycleClosed(String),
    /// `supersedes` names a report that cannot be superseded.
    #[error("supersedes: report {report:?} {why}")]
    NotDisputed {
        /// The report named.
        report: String,
        /// What it is instead.
        why: String,
    },
    /// The WSP refused the report.
    #[error("the WSP refused report {report:?}: {reason}")]
    Refused {
        /// The report.
        report: String,
        /// The WSP's reason.
        reason: String,
    },
    /// The report has another verdict already.
    #[error("report {report:?} is already {status}")]
    AlreadyConfirmed {
        /// The report.
        report: String,
        /// Its status.
        status: &'static str,
    },
    /// The report cannot take a verdict.
    #[error("report {report:?} is {status}: it cannot be confirmed or disputed")]
    NotConfirmable {
        /// The report.
        report: String,
        /// Its status.
        status: &'static str,
    },
    /// A net position would take Credit Inventory below zero.
    #[error(
        "{asset}: Credit Inventory {ci} plus the net position {net} would be below zero; nothing was applied"
    )]
    InsufficientCredit {
        /// The asset.
        asset: String,
        /// CI now.
        ci: String,
        /// The net.
        net: String,
    },
    /// A negative net position needs more custody than is pledged.
    #[error(
        "{asset}: the net position {net} needs more custody than the {pledged} pledged; nothing was applied"
    )]
    InsufficientCustody {
        /// The asset.
        asset: String,
        /// Pledged now.
        pledged: String,
        /// The net.
        net: String,
    },
    /// A sum beyond the exact decimal range.
    #[error("{asset}: the sum is beyond the exact decimal range")]
    TooLarge {
        /// The asset.
        asset: String,
    },
    /// A credit request of one of the report's (user, asset) pairs is pending.
    #[error("credit request {request_id} of {asset} is pending; retry once it is decided")]
    InFlight {
        /// The asset.
        asset: String,
        /// The pending request.
        request_id: String,
    },
    /// The cycle's signed root is not the WSP's.
    #[error("cycle {cycle:?} did not verify ({reason}): its reports cannot be confirmed")]
    CycleMismatch {
        /// The cycle.
        cycle: String,
        /// Why.
        reason: String,
    },
    /// The cycle has no verified tree yet.
    #[error("cycle {0:?} is not closed and verified: no proof yet")]
    CycleNotClosed(String),
    /// Reports of the cycle are not recorded by the WSP yet.
    #[error(
        "{count} report(s) of cycle {cycle:?} this exchange published are not recorded by the WSP yet (e.g. {example}); retry"
    )]
    ReportsNotRecorded {
        /// The cycle.
        cycle: String,
        /// How many.
        count: usize,
        /// One of them.
        example: String,
    },
    /// The WSP's record differs from what this exchange published.
    #[error("the WSP's record of report {0:?} is not what this exchange published")]
    RecordDiffers(String),
    /// No signing key for this role.
    #[error("no {0} signing key is configured (settlement.{0}_key_file)")]
    NoSigningKey(&'static str),
    /// A cycle too large to close.
    #[error("cycle {cycle:?} has {count} reports, more than settlement.max_cycle_reports ({max})")]
    CycleTooLarge {
        /// The cycle.
        cycle: String,
        /// Its reports.
        count: u64,
        /// The limit.
        max: usize,
    },
    /// State kept changing under the call; retry.
    #[error("Credit Inventory or custody kept changing; retry")]
    Contention,
    /// Stored data is not what this server writes.
    #[error("corrupt settlement data at {key}: {reason}")]
    Corrupt {
        /// The key.
        key: String,
        /// What is wrong.
        reason: String,
    },
    /// Too many calls wait for the WSP on this server.
    #[error(transparent)]
    TooManyWaiters(#[from] TooManyWaiters),
    /// Redis failed.
    #[error(transparent)]
    Redis(#[from] RedisError),
}

impl RpcError for SettlementError {
    fn code(&self) -> Code {
        match self {
            Self::ReportIdReused(_) => Code::AlreadyExists,
            Self::UnknownReport(_) => Code::NotFound,
            Self::InFlight { .. } | Self::Contention => Code::Aborted,
            Self::Corrupt { .. } => Code::Internal,
            Self::TooManyWaiters(e) => e.code(),
            Self::Redis(e) => e.code(),
            _ => Code::FailedPrecondition,
        }
    }

    fn reason(&self) -> &'static str {
        match self {
            Self::UnknownReport(_) => reason::NOT_FOUND,
            Self::ReportIdReused(_) => reason::REPORT_ID_REUSED,
            Self::CycleClosed(_) => reason::CYCLE_CLOSED,
            Self::NotDisputed { .. } => reason::NOT_DISPUTED,
            Self::Refused { .. } => reason::REPORT_REFUSED,
            Self::AlreadyConfirmed { .. } => reason::ALREADY_CONFIRMED,
            Self::NotConfirmable { .. } => reason::NOT_CONFIRMABLE,
            Self::InsufficientCredit { .. } => reason::INSUFFICIENT_CREDIT,
            Self::InsufficientCustody { .. } => reason::INSUFFICIENT_PLEDGED,
            Self::TooLarge { .. } => reason::AMOUNT_TOO_LARGE,
            Self::InFlight { .. } => reason::CREDIT_REQUEST_IN_FLIGHT,
            Self::CycleMismatch { .. } => reason::CYCLE_MISMATCH,
            Self::CycleNotClosed(_) => reason::CYCLE_NOT_CLOSED,
            Self::ReportsNotRecorded { .. } => reason::REPORTS_NOT_RECORDED,
            Self::RecordDiffers(_) => reason::RECORD_MISMATCH,
            Self::NoSigningKey(_) => reason::SIGNING_KEY_NOT_CONFIGURED,
            Self::CycleTooLarge { .. } => reason::CYCLE_TOO_LARGE,
            Self::Contention => reason::CONTENTION,
            Self::Corrupt { .. } => reason::DATA_CORRUPT,
            Self::TooManyWaiters(e) => e.reason(),
            Self::Redis(e) => e.reason(),
        }
    }

    fn violations(&self) -> Vec<FieldViolation> {
        match self {
            Self::InsufficientCredit { asset, .. }
            | Self::InsufficientCustody { asset, .. }
            | Self::TooLarge { asset } => vec![FieldViolation {
                field: format!("net_positions[{asset}]"),
                description: self.to_string(),
            }],
            Self::NotDisputed { .. } => vec![FieldViolation {
                field: "supersedes".into(),
                description: self.to_string(),
            }],
            _ => Vec::new(),
        }
    }
}
