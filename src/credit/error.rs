//! Every way a credit operation can fail, and how each looks on the wire.

use tonic::Code;

use crate::{
    error::{RpcError, reason},
    redis::RedisError,
    validate::FieldViolation,
};

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
    /// ResolveCreditAnomaly on a request that is not pending.
    #[error("credit request {request_id:?} is not pending (status {status:?}); nothing to resolve")]
    NotPending {
        /// The request.
        request_id: String,
        /// Its status.
        status: String,
    },
    /// A pledge asks for more than the vault has available.
    #[error("the vault has {available} available; cannot lock {amount}")]
    InsufficientAvailableBalance {
        /// Available now.
        available: String,
        /// Asked for.
        amount: String,
    },
    /// A release asks for more than is pledged.
    #[error("{pledged} is pledged; cannot release {amount}")]
    InsufficientPledged {
        /// Pledged now (remaining of active pledges).
        pledged: String,
        /// Asked for.
        amount: String,
    },
    /// A plain credit request for a (user, asset) whose credit moves only
    /// through pledges (`pledge.exclusive_credit`).
    #[error(
        "{uid} has a vault in {asset}: its credit moves through PledgeService (CreatePledge, ReleasePledge)"
    )]
    ManagedByPledges {
        /// The user.
        uid: String,
        /// The asset.
        asset: String,
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

impl RpcError for CreditError {
    fn code(&self) -> Code {
        match self {
            Self::RequestIdReused(_) => Code::AlreadyExists,
            Self::InFlight { .. } | Self::Contention => Code::Aborted,
            Self::InsufficientCredit { .. }
            | Self::AlreadyAnswered { .. }
            | Self::NotPending { .. }
            | Self::InsufficientAvailableBalance { .. }
            | Self::InsufficientPledged { .. }
            | Self::ManagedByPledges { .. } => Code::FailedPrecondition,
            Self::TooLarge { .. } => Code::InvalidArgument,
            Self::UnknownRequest(_) => Code::NotFound,
            Self::Corrupt { .. } => Code::Internal,
            Self::Redis(e) => e.code(),
        }
    }

    fn reason(&self) -> &'static str {
        match self {
            Self::RequestIdReused(_) => reason::REQUEST_ID_REUSED,
            Self::InFlight { .. } => reason::CREDIT_REQUEST_IN_FLIGHT,
            Self::InsufficientCredit { .. } => reason::INSUFFICIENT_CREDIT,
            Self::TooLarge { .. } => reason::INVALID_ARGUMENT,
            Self::Contention => reason::CONTENTION,
            Self::UnknownRequest(_) => reason::NOT_FOUND,
            Self::AlreadyAnswered { .. } => reason::ALREADY_ANSWERED,
            Self::NotPending { .. } => reason::NOT_PENDING,
            Self::InsufficientAvailableBalance { .. } => reason::INSUFFICIENT_AVAILABLE_BALANCE,
            Self::InsufficientPledged { .. } => reason::INSUFFICIENT_PLEDGED,
            Self::ManagedByPledges { .. } => reason::CREDIT_MANAGED_BY_PLEDGES,
            Self::Corrupt { .. } => reason::DATA_CORRUPT,
            Self::Redis(e) => e.reason(),
        }
    }

    fn violations(&self) -> Vec<FieldViolation> {
        match self {
            // State, not syntax, makes this change bad; still, name the field.
            Self::InsufficientCredit { .. } | Self::TooLarge { .. } => vec![FieldViolation {
                field: "change".into(),
                description: self.to_string(),
            }],
            Self::InsufficientAvailableBalance { .. } | Self::InsufficientPledged { .. } => {
                vec![FieldViolation {
                    field: "amount".into(),
                    description: self.to_string(),
                }]
            }
            _ => Vec::new(),
        }
    }
}
