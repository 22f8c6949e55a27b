//! The one table that turns errors into gRPC statuses.
//!
//! Handlers return [`Error`]; `From<Error> for Status` decides the code and
//! attaches `google.rpc.ErrorInfo` (reason + domain) and, for bad input,
//! `google.rpc.BadRequest` field violations. No handler builds a `Status`
//! itself, so a reason string means the same thing everywhere.

use std::fmt;

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use crate::redis::RedisError;

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
            Self::Redis(e) if e.is_unavailable() => (Code::Unavailable, reason::REDIS_UNAVAILABLE),
            Self::Redis(_) => (Code::Internal, reason::REDIS_ERROR),
            Self::Unimplemented { .. } => (Code::Unimplemented, reason::NOT_IMPLEMENTED),
        }
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
        if let Error::InvalidArgument(violations) = &error {
            for v in &violations.0 {
                details.add_bad_request_violation(v.field.clone(), v.description.clone());
            }
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
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(cause) = source {
            write!(f, ": {cause}")?;
            source = cause.source();
        }
        Ok(())
    }
}
