//! Every way a vault operation can fail, and how each looks on the wire.
//! Pledges and releases are credit requests: their errors are the credit
//! flow's ([`CreditError`]).

use tonic::Code;

use crate::{
    credit::error::CreditError,
    error::{RpcError, reason},
    redis::RedisError,
    validate::FieldViolation,
};

/// Every way a deposit, withdrawal or vault read can fail.
#[derive(Debug, thiserror::Error)]
pub enum PledgeError {
    /// Same request_id, another operation.
    #[error("request_id {0:?} was already used for another operation")]
    RequestIdReused(String),
    /// A withdrawal asks for more than is available.
    #[error("the vault has {available} available; cannot withdraw {amount}")]
    InsufficientAvailableBalance {
        /// Available now.
        available: String,
        /// Asked for.
        amount: String,
    },
    /// The new total would not be exact (beyond 28 significant digits).
    #[error("vault total {total} plus {amount} is beyond exact decimal range")]
    TooLarge {
        /// Total now.
        total: String,
        /// The deposit.
        amount: String,
    },
    /// The vault kept changing under the operation; retry.
    #[error("the vault kept changing; retry")]
    Contention,
    /// The credit flow failed (pledges, releases, vault reads).
    #[error(transparent)]
    Credit(#[from] CreditError),
    /// Redis failed.
    #[error(transparent)]
    Redis(#[from] RedisError),
}

impl RpcError for PledgeError {
    fn code(&self) -> Code {
        match self {
            Self::RequestIdReused(_) => Code::AlreadyExists,
            Self::InsufficientAvailableBalance { .. } => Code::FailedPrecondition,
            Self::TooLarge { .. } => Code::InvalidArgument,
            Self::Contention => Code::Aborted,
            Self::Credit(e) => e.code(),
            Self::Redis(e) => e.code(),
        }
    }

    fn reason(&self) -> &'static str {
        match self {
            Self::RequestIdReused(_) => reason::REQUEST_ID_REUSED,
            Self::InsufficientAvailableBalance { .. } => reason::INSUFFICIENT_AVAILABLE_BALANCE,
            Self::TooLarge { .. } => reason::INVALID_ARGUMENT,
            Self::Contention => reason::CONTENTION,
            Self::Credit(e) => e.reason(),
            Self::Redis(e) => e.reason(),
        }
    }

    fn violations(&self) -> Vec<FieldViolation> {
        match self {
            Self::InsufficientAvailableBalance { .. } | Self::TooLarge { .. } => {
                vec![FieldViolation {
                    field: "amount".into(),
                    description: self.to_string(),
                }]
            }
            Self::Credit(e) => e.violations(),
            _ => Vec::new(),
        }
    }
}
