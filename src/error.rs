//! The one table that turns errors into gRPC statuses.
//!
//! Handlers return [`Error`]; `From<Error> for Status` decides the code and
//! attaches `google.rpc.ErrorInfo` (reason + domain) and, for bad input,
//! `google.rpc.BadRequest` field violations. No handler builds a `Status`
//! itself, so a reason string means the same thing everywhere.

use std::fmt;

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use crate::{
    credit::model::CreditError,
    quote::{engine::QuoteError, math::MathError, store::StoreError},
    redis::RedisError,
    streams::watch::{WatchEnd, WatchError},
};

/// `ErrorInfo.domain` of every error this server returns.
pub const DOMAIN: &str = "openoes.dev";

/// `ErrorInfo.reason` values, one per kind of error. Clients match on these,
/// so they never change once published.
pub mod reason {
    /// A request field is malformed; see the BadRequest field violations.
    pub const INVALID_ARGUMENT: &str = "INVALID_ARGUMENT";
    /// The named resource does not exist.
    pub const NOT_FOUND: &str = "NOT_FOUND";
    /// A Redis endpoint the call needs is unreachable; retry later.
    pub const REDIS_UNAVAILABLE: &str = "REDIS_UNAVAILABLE";
    /// Redis refused a command (e.g. an ACL denial): a deployment problem.
    pub const REDIS_ERROR: &str = "REDIS_ERROR";
    /// The RPC is part of the contract but not built yet.
    pub const NOT_IMPLEMENTED: &str = "NOT_IMPLEMENTED";
    /// The call's deadline passed before it finished.
    pub const DEADLINE_EXCEEDED: &str = "DEADLINE_EXCEEDED";
    /// The server is shutting down; retry on another instance or later.
    pub const SHUTTING_DOWN: &str = "SHUTTING_DOWN";
    /// Stored data is not what the server writes: an operator must look.
    pub const DATA_CORRUPT: &str = "DATA_CORRUPT";
    /// The per-process limit of stream subscribers is reached.
    pub const TOO_MANY_SUBSCRIBERS: &str = "TOO_MANY_SUBSCRIBERS";
    /// Watch: events after the resume cursor were trimmed from the log.
    pub const CURSOR_TRIMMED: &str = "CURSOR_TRIMMED";
    /// Watch: the resume cursor is past the end of the log (it was reset).
    pub const CURSOR_AHEAD: &str = "CURSOR_AHEAD";
    /// A stream subscriber did not keep up and was cut off.
    pub const SUBSCRIBER_TOO_SLOW: &str = "SUBSCRIBER_TOO_SLOW";
    /// Quote: no pool trades the token.
    pub const UNKNOWN_TOKEN: &str = "UNKNOWN_TOKEN";
    /// Quote: no route joins the tokens within the hop limit.
    pub const NO_ROUTE: &str = "NO_ROUTE";
    /// Quote: every route runs out of liquidity.
    pub const INSUFFICIENT_LIQUIDITY: &str = "INSUFFICIENT_LIQUIDITY";
    /// Quote: the best output is 0.
    pub const AMOUNT_TOO_SMALL: &str = "AMOUNT_TOO_SMALL";
    /// Quote ingest: an existing pool's tokens cannot change.
    pub const POOL_TOKENS_CHANGED: &str = "POOL_TOKENS_CHANGED";
    /// Quote: the input needed exceeds the u64 range.
    pub const AMOUNT_TOO_LARGE: &str = "AMOUNT_TOO_LARGE";
    /// The RPC belongs to an OpenOES role (wsp, exchange) this gateway does
    /// not serve.
    pub const ROLE_NOT_SERVED: &str = "ROLE_NOT_SERVED";
    /// Credit: the request_id was used before for another request.
    pub const REQUEST_ID_REUSED: &str = "REQUEST_ID_REUSED";
    /// Credit: the user and asset already have a request pending.
    pub const CREDIT_REQUEST_IN_FLIGHT: &str = "CREDIT_REQUEST_IN_FLIGHT";
    /// Credit: a decrease would take Credit Inventory below zero.
    pub const INSUFFICIENT_CREDIT: &str = "INSUFFICIENT_CREDIT";
    /// Credit: Credit Inventory kept changing under the request; retry.
    pub const CONTENTION: &str = "CONTENTION";
    /// Credit: the request was answered before with the other decision.
    pub const ALREADY_ANSWERED: &str = "ALREADY_ANSWERED";
    /// Credit: too many calls wait for decisions on this server.
    pub const TOO_MANY_WAITERS: &str = "TOO_MANY_WAITERS";
}

/// Everything an RPC can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad input: one violation per bad field.
    #[error("invalid argument: {0}")]
    InvalidArgument(FieldViolations),
    /// The named thing does not exist.
    #[error("{resource} {id:?} not found")]
    NotFound {
        /// What kind of thing, e.g. "credit request".
        resource: &'static str,
        /// Its id as given.
        id: String,
    },
    /// Redis failed or is unreachable.
    #[error(transparent)]
    Redis(#[from] RedisError),
    /// A quote cannot be given.
    #[error(transparent)]
    Quote(#[from] QuoteError),
    /// A credit operation failed.
    #[error(transparent)]
    Credit(#[from] CreditError),
    /// This gateway does not serve the role the RPC belongs to.
    #[error(
        "{rpc} belongs to the {role} role, which this gateway does not serve (see `roles` in its config)"
    )]
    RoleNotServed {
        /// Fully-qualified method.
        rpc: &'static str,
        /// `wsp` or `exchange`.
        role: &'static str,
    },
    /// Too many stream subscribers on this process.
    #[error("this server already has {limit} subscribers of this stream; retry later or elsewhere")]
    TooManySubscribers {
        /// The configured limit.
        limit: usize,
    },
    /// A watch could not start.
    #[error(transparent)]
    Watch(WatchError),
    /// A watch was ended by the server.
    #[error("{}", match .0 {
        WatchEnd::TooSlow => "subscriber too slow: its queue filled up; resume by cursor",
        WatchEnd::Shutdown => "server is shutting down; reconnect (streams resume by cursor)",
        WatchEnd::Trimmed => "events were trimmed before this server could read them; resume by cursor to learn which",
    })]
    WatchEnded(WatchEnd),
    /// The RPC exists in the contract but is not built yet.
    #[error("{rpc} is not implemented yet; README.md lists which RPCs are live")]
    Unimplemented {
        /// Fully-qualified method, e.g. `openoes.credit.v1.CreditService/RequestCredit`.
        rpc: &'static str,
    },
}

impl Error {
    /// The error for an RPC that is not built yet.
    pub fn unimplemented(rpc: &'static str) -> Self {
        Self::Unimplemented { rpc }
    }

    /// The table: gRPC code and ErrorInfo reason of each error.
    fn code_and_reason(&self) -> (Code, &'static str) {
        match self {
            Self::InvalidArgument(_) => (Code::InvalidArgument, reason::INVALID_ARGUMENT),
            Self::NotFound { .. } => (Code::NotFound, reason::NOT_FOUND),
            Self::Redis(e) => redis_code(e),
            Self::TooManySubscribers { .. } => {
                (Code::ResourceExhausted, reason::TOO_MANY_SUBSCRIBERS)
            }
            Self::Watch(e) => match e {
                WatchError::InvalidCursor(_) => (Code::InvalidArgument, reason::INVALID_ARGUMENT),
                WatchError::CursorTrimmed { .. } => (Code::OutOfRange, reason::CURSOR_TRIMMED),
                WatchError::CursorAhead { .. } => (Code::OutOfRange, reason::CURSOR_AHEAD),
                WatchError::TooManySubscribers { .. } => {
                    (Code::ResourceExhausted, reason::TOO_MANY_SUBSCRIBERS)
                }
                WatchError::Redis(e) => redis_code(e),
            },
            Self::WatchEnded(WatchEnd::TooSlow) => {
                (Code::ResourceExhausted, reason::SUBSCRIBER_TOO_SLOW)
            }
            Self::WatchEnded(WatchEnd::Shutdown) => (Code::Unavailable, reason::SHUTTING_DOWN),
            Self::WatchEnded(WatchEnd::Trimmed) => (Code::OutOfRange, reason::CURSOR_TRIMMED),
            Self::Quote(e) => match e {
                QuoteError::UnknownToken(_) => (Code::NotFound, reason::UNKNOWN_TOKEN),
                QuoteError::NoRoute { .. } => (Code::FailedPrecondition, reason::NO_ROUTE),
                QuoteError::InsufficientLiquidity(_) => {
                    (Code::FailedPrecondition, reason::INSUFFICIENT_LIQUIDITY)
                }
                QuoteError::AmountTooSmall => (Code::InvalidArgument, reason::AMOUNT_TOO_SMALL),
                QuoteError::Math(MathError::InputOverflow) => {
                    (Code::InvalidArgument, reason::AMOUNT_TOO_LARGE)
                }
                QuoteError::Math(MathError::PriceOutOfRange { .. }) => {
                    (Code::Internal, reason::DATA_CORRUPT)
                }
                QuoteError::Store(e) => store_code(e),
            },
            Self::Credit(e) => match e {
                CreditError::RequestIdReused(_) => (Code::AlreadyExists, reason::REQUEST_ID_REUSED),
                CreditError::InFlight { .. } => (Code::Aborted, reason::CREDIT_REQUEST_IN_FLIGHT),
                CreditError::InsufficientCredit { .. } => {
                    (Code::FailedPrecondition, reason::INSUFFICIENT_CREDIT)
                }
                CreditError::Contention => (Code::Aborted, reason::CONTENTION),
                CreditError::TooLarge { .. } => (Code::InvalidArgument, reason::INVALID_ARGUMENT),
                CreditError::UnknownRequest(_) => (Code::NotFound, reason::NOT_FOUND),
                CreditError::AlreadyAnswered { .. } => {
                    (Code::FailedPrecondition, reason::ALREADY_ANSWERED)
                }
                CreditError::TooManyWaiters { .. } => {
                    (Code::ResourceExhausted, reason::TOO_MANY_WAITERS)
                }
                CreditError::Corrupt { .. } => (Code::Internal, reason::DATA_CORRUPT),
                CreditError::Redis(e) => redis_code(e),
            },
            Self::RoleNotServed { .. } => (Code::Unimplemented, reason::ROLE_NOT_SERVED),
            Self::Unimplemented { .. } => (Code::Unimplemented, reason::NOT_IMPLEMENTED),
        }
    }
}

fn redis_code(e: &RedisError) -> (Code, &'static str) {
    if e.is_unavailable() {
        (Code::Unavailable, reason::REDIS_UNAVAILABLE)
    } else {
        (Code::Internal, reason::REDIS_ERROR)
    }
}

fn store_code(e: &StoreError) -> (Code, &'static str) {
    match e {
        StoreError::Redis(e) => redis_code(e),
        StoreError::Corrupt { .. } => (Code::Internal, reason::DATA_CORRUPT),
        StoreError::TokensChanged(_) => (Code::InvalidArgument, reason::POOL_TOKENS_CHANGED),
    }
}

impl From<WatchError> for Error {
    fn from(e: WatchError) -> Self {
        match e {
            // A bad cursor is bad input: say which field.
            WatchError::InvalidCursor(_) => {
                let mut v = FieldViolations::default();
                v.add("start_after_event_id", e.to_string());
                Self::InvalidArgument(v)
            }
            e => Self::Watch(e),
        }
    }
}

impl From<StoreError> for Error {
    fn from(e: StoreError) -> Self {
        Self::Quote(QuoteError::Store(e))
    }
}

impl From<Error> for Status {
    fn from(error: Error) -> Self {
        let (code, reason) = error.code_and_reason();
        if code == Code::Internal {
            // The client gets the reason; the cause chain goes to the log.
            tracing::error!(error = %ErrorChain(&error), "internal error");
        }
        let mut details = ErrorDetails::with_error_info(reason, DOMAIN, []);
        match &error {
            Error::InvalidArgument(violations) => {
                for v in &violations.0 {
                    details.add_bad_request_violation(v.field.clone(), v.description.clone());
                }
            }
            // State, not syntax, makes this change bad; still, name the field.
            Error::Credit(
                e @ (CreditError::InsufficientCredit { .. } | CreditError::TooLarge { .. }),
            ) => {
                details.add_bad_request_violation("change", e.to_string());
            }
            _ => {}
        }
        Status::with_error_details(code, ErrorChain(&error).to_string(), details)
    }
}

/// Builds a gRPC status with ErrorInfo for failures that happen outside a
/// handler (deadline and shutdown layers), so they look like every other.
pub fn status(code: Code, reason: &'static str, message: impl Into<String>) -> Status {
    Status::with_error_details(
        code,
        message,
        ErrorDetails::with_error_info(reason, DOMAIN, []),
    )
}

/// Longest id the protocol allows.
pub const MAX_ID_LEN: usize = 128;

/// The protocol's rule for ids, as said to a person.
pub const ID_RULE: &str = "must be 1-128 characters of [A-Za-z0-9._@-]";

/// True if `value` is an id by the protocol's rule: 1-128 characters of
/// `[A-Za-z0-9._@-]`, so no `:` (keys are `:`-joined) and no spaces.
pub fn is_valid_id(value: &str) -> bool {
    (1..=MAX_ID_LEN).contains(&value.len())
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._@-".contains(&b))
}

/// One bad field of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldViolation {
    /// Path of the field in the request, e.g. `change` or `bins[3].x_amount`.
    pub field: String,
    /// What is wrong, for a person.
    pub description: String,
}

/// The bad fields of one request, collected so the client learns all of
/// them at once rather than one per retry.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldViolations(pub Vec<FieldViolation>);

impl FieldViolations {
    /// Records that `field` is bad.
    pub fn add(&mut self, field: impl Into<String>, description: impl Into<String>) {
        self.0.push(FieldViolation {
            field: field.into(),
            description: description.into(),
        });
    }

    /// Checks an id (user_id, asset, request_id, pool_id, token ...) by the
    /// protocol's rule ([`is_valid_id`]).
    pub fn check_id(&mut self, field: &str, value: &str) {
        if value.is_empty() {
            self.add(field, "is required");
        } else if !is_valid_id(value) {
            self.add(field, ID_RULE);
        }
    }

    /// `Ok(())` if nothing was recorded, else the InvalidArgument error.
    pub fn into_result(self) -> Result<(), Error> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(Error::InvalidArgument(self))
        }
    }
}

impl fmt::Display for FieldViolations {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, v) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{}: {}", v.field, v.description)?;
        }
        Ok(())
    }
}

/// Displays an error with its whole `source()` chain: "a: b: c".
pub struct ErrorChain<'a>(pub &'a (dyn std::error::Error + 'static));

impl fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut text = self.0.to_string();
        let mut source = self.0.source();
        while let Some(cause) = source {
            let cause_text = cause.to_string();
            // Some errors (redis-rs's) already print their cause.
            if !text.ends_with(&cause_text) {
                text.push_str(": ");
                text.push_str(&cause_text);
            }
            source = cause.source();
        }
        f.write_str(&text)
    }
}
