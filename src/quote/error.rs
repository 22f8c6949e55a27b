//! Every way a quote or a quote-data write can fail, and how each looks on
//! the wire.

use tonic::Code;

use super::math::MathError;
use crate::{
    error::{RpcError, reason},
    redis::RedisError,
    validate::FieldViolation,
};

/// Why a quote cannot be given.
#[derive(Debug, thiserror::Error)]
pub enum QuoteError {
    /// No pool trades this token.
    #[error("no pool trades {0}")]
    UnknownToken(String),
    /// No route of at most max_hops pools joins the tokens.
    #[error("no route from {from} to {to} within {max_hops} pools")]
    NoRoute {
        /// Token sold.
        from: String,
        /// Token bought.
        to: String,
        /// The hop limit searched.
        max_hops: u32,
    },
    /// Every route runs out of liquidity before filling the amount.
    #[error("not enough liquidity on any route for {0} raw units")]
    InsufficientLiquidity(u64),
    /// The best output is 0.
    #[error("amount too small: the best route gives 0")]
    AmountTooSmall,
    /// A work bound of the quote stopped the search before any route was
    /// priced in full (the bound's config key).
    #[error("the quote needs more work than {0} allows")]
    WorkLimit(&'static str),
    /// The swap cannot be computed (e.g. input beyond u64).
    #[error(transparent)]
    Math(#[from] MathError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Errors of the quote store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Redis failed.
    #[error(transparent)]
    Redis(#[from] RedisError),
    /// An upsert tried to change an existing pool's tokens.
    #[error(
        "pool {0:?} exists with other tokens; a pool's tokens cannot change (use a new pool_id)"
    )]
    TokensChanged(String),
    /// An upsert changed an existing pool's bin_step without a full
    /// snapshot: stored bins might have no price at the new step.
    #[error(
        "pool {0:?}: a new bin_step needs a full snapshot (replace_bins with every bin): stored bins may have no price at the new step"
    )]
    BinStepChanged(String),
    /// The pool changed while bins for it were being checked.
    #[error("pool {0:?} changed while its bins were checked; retry")]
    PoolChanged(String),
    /// A write would take a pool past `quote.max_bins_per_pool`.
    #[error("pool {pool_id:?} would hold more than {max} non-empty bins (quote.max_bins_per_pool)")]
    TooManyBins {
        /// The pool.
        pool_id: String,
        /// The bound.
        max: usize,
    },
    /// A full snapshot must be staged (internal: the store then stages it).
    #[error("the snapshot must be staged")]
    NeedsStaging,
    /// A key holds something that is not what this store writes.
    #[error("corrupt quote data at {key}: {reason}")]
    Corrupt {
        /// The key.
        key: String,
        /// What is wrong.
        reason: String,
    },
}

impl RpcError for QuoteError {
    fn code(&self) -> Code {
        match self {
            Self::UnknownToken(_) => Code::NotFound,
            Self::NoRoute { .. } | Self::InsufficientLiquidity(_) => Code::FailedPrecondition,
            Self::AmountTooSmall
            | Self::Math(MathError::InputOverflow | MathError::OutputOverflow) => {
                Code::InvalidArgument
            }
            Self::Math(MathError::PriceOutOfRange { .. }) => Code::Internal,
            Self::WorkLimit(_) => Code::ResourceExhausted,
            Self::Store(e) => e.code(),
        }
    }

    fn reason(&self) -> &'static str {
        match self {
            Self::UnknownToken(_) => reason::UNKNOWN_TOKEN,
            Self::NoRoute { .. } => reason::NO_ROUTE,
            Self::InsufficientLiquidity(_) => reason::INSUFFICIENT_LIQUIDITY,
            Self::AmountTooSmall => reason::AMOUNT_TOO_SMALL,
            Self::Math(MathError::InputOverflow | MathError::OutputOverflow) => {
                reason::AMOUNT_TOO_LARGE
            }
            Self::Math(MathError::PriceOutOfRange { .. }) => reason::DATA_CORRUPT,
            Self::WorkLimit(_) => reason::QUOTE_WORK_LIMIT,
            Self::Store(e) => e.reason(),
        }
    }
}

impl RpcError for StoreError {
    fn code(&self) -> Code {
        match self {
            Self::Redis(e) => e.code(),
            Self::Corrupt { .. } | Self::NeedsStaging => Code::Internal,
            Self::TokensChanged(_) | Self::BinStepChanged(_) | Self::TooManyBins { .. } => {
                Code::InvalidArgument
            }
            Self::PoolChanged(_) => Code::Aborted,
        }
    }

    fn reason(&self) -> &'static str {
        match self {
            Self::Redis(e) => e.reason(),
            Self::Corrupt { .. } | Self::NeedsStaging => reason::DATA_CORRUPT,
            Self::TokensChanged(_) => reason::POOL_TOKENS_CHANGED,
            Self::BinStepChanged(_) | Self::TooManyBins { .. } => reason::INVALID_ARGUMENT,
            Self::PoolChanged(_) => reason::CONTENTION,
        }
    }

    fn violations(&self) -> Vec<FieldViolation> {
        let (field, description) = match self {
            Self::BinStepChanged(_) => (
                "pool.bin_step",
                "a new bin_step needs replace_bins and every bin: stored bins may have no price at it"
                    .to_string(),
            ),
            Self::TooManyBins { max, .. } => (
                "bins",
                format!("the pool would hold more than {max} non-empty bins"),
            ),
            _ => return Vec::new(),
        };
        vec![FieldViolation {
            field: field.into(),
            description,
        }]
    }
}
