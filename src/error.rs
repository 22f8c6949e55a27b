//! How errors become gRPC statuses, in one direction only.
//!
//! Each layer and domain has its own error enum, and that enum says its own
//! gRPC code, `ErrorInfo` reason and field violations by implementing
//! [`RpcError`] beside its definition. [`Error`] holds any of them, and the
//! one conversion `From<Error> for Status` attaches `google.rpc.ErrorInfo`
//! (reason + [`DOMAIN`]) and, for bad input, `google.rpc.BadRequest`. No
//! handler builds a `Status` itself.
//!
//! This module imports nothing of the domains (nor of the Redis layer or
//! the stream bridge): they import it. The reason strings all live in
//! [`reason`], the one registry, so a reason means the same thing
//! everywhere and a new one is one line there.

use std::fmt;

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use crate::validate::{FieldViolation, FieldViolations, MAX_ID_LEN, cut};

/// `ErrorInfo.domain` of every error this server returns.
pub const DOMAIN: &str = "openoes.dev";

/// Longest `grpc-message` sent: a status message echoing a huge input must
/// not exceed what clients accept in headers.
pub const MAX_STATUS_MESSAGE: usize = 1024;

/// An error that knows how it looks on the wire.
pub trait RpcError: std::error::Error + Send + Sync + 'static {
    /// The gRPC status code.
    fn code(&self) -> Code;

    /// The `ErrorInfo.reason`, one of [`reason`].
    fn reason(&self) -> &'static str;

    /// `BadRequest` field violations: the request fields that made it fail
    /// (none by default).
    fn violations(&self) -> Vec<FieldViolation> {
        Vec::new()
    }

    /// Other standard details to attach (e.g. `RetryInfo`, `QuotaFailure`);
    /// none by default.
    fn add_details(&self, _details: &mut ErrorDetails) {}
}

macro_rules! reasons {
    ($( $(#[$doc:meta])* $name:ident, )*) => {
        /// `ErrorInfo.reason` values: every one this server sends, declared
        /// once (the value is the name). Clients match on these, so they
        /// never change once published.
        pub mod reason {
            $( $(#[$doc])* pub const $name: &str = stringify!($name); )*
            /// Every reason above.
            pub const ALL: &[&str] = &[$($name),*];
        }
    };
}

reasons! {
    // --- any service ---
    /// A request field is malformed; see the BadRequest field violations.
    INVALID_ARGUMENT,
    /// The named resource does not exist.
    NOT_FOUND,
    /// A Redis endpoint the call needs is unreachable; retry later.
    REDIS_UNAVAILABLE,
    /// Redis refused a command (e.g. an ACL denial): a deployment problem.
    REDIS_ERROR,
    /// A money-moving write happened on M but did not become as durable as
    /// configured (`redis.durability`) in time; retry with the same request_id.
    DURABILITY_TIMEOUT,
    /// The RPC belongs to an OpenOES role (wsp, exchange) this gateway does
    /// not serve.
    ROLE_NOT_SERVED,
    /// The call's deadline passed before it finished.
    DEADLINE_EXCEEDED,
    /// The server is shutting down; retry on another instance or later.
    SHUTTING_DOWN,
    /// Stored data is not what the server writes: an operator must look.
    DATA_CORRUPT,
    // --- auth (UNAUTHENTICATED, PERMISSION_DENIED, RESOURCE_EXHAUSTED) ---
    /// No credential: send `authorization: Bearer <token>` or a client
    /// certificate.
    MISSING_CREDENTIAL,
    /// The `authorization` header is not one `Bearer <token>` with a token
    /// of at most 256 characters of the RFC 6750 alphabet.
    MALFORMED_CREDENTIAL,
    /// The token or client certificate is not one of the configured
    /// principals (`auth.tokens`, `auth.clients`).
    UNKNOWN_CREDENTIAL,
    /// The principal has none of the roles the policy table allows for
    /// the RPC.
    ROLE_NOT_ALLOWED,
    /// The method is not in the policy table, so nobody may call it.
    NO_POLICY,
    /// The principal's budget for this class of RPC is spent: retry after
    /// `RetryInfo.retry_delay` (QuotaFailure names the budget).
    RATE_LIMITED,
    /// The principal holds `rate_limit.max_streams_per_principal` streams
    /// on this gateway; close one first.
    TOO_MANY_STREAMS,
    /// A request message is over its RPC class's size limit
    /// (`grpc.max_message_bytes`, `max_read_message_bytes`,
    /// `max_stream_message_bytes`); the message says which.
    MESSAGE_TOO_LARGE,
    // --- streams ---
    /// The per-process limit of stream subscribers of this kind is reached.
    TOO_MANY_SUBSCRIBERS,
    /// Watch: events after the resume cursor were trimmed from the log.
    CURSOR_TRIMMED,
    /// Watch: the resume cursor is past the end of the log (it was reset).
    CURSOR_AHEAD,
    /// A stream subscriber did not keep up and was cut off.
    SUBSCRIBER_TOO_SLOW,
    // --- credit ---
    /// The request_id was used before for another request.
    REQUEST_ID_REUSED,
    /// The user and asset already have a credit request pending.
    CREDIT_REQUEST_IN_FLIGHT,
    /// A decrease would take Credit Inventory below zero.
    INSUFFICIENT_CREDIT,
    /// Credit Inventory kept changing under the request; retry.
    CONTENTION,
    /// The request was answered before with the other decision.
    ALREADY_ANSWERED,
    /// Too many calls wait for decisions on this server.
    TOO_MANY_WAITERS,
    /// ResolveCreditAnomaly: the request is not pending (decided already).
    NOT_PENDING,
    /// SubscribeCreditRequests: the consumer name is in use by a live
    /// subscription on this gateway.
    CONSUMER_IN_USE,
    // --- pledge ---
    /// A pledge or withdrawal asks for more than the vault has available.
    INSUFFICIENT_AVAILABLE_BALANCE,
    /// A release asks for more than is pledged.
    INSUFFICIENT_PLEDGED,
    /// RequestCredit for a (user, asset) whose credit moves only through
    /// PledgeService.
    CREDIT_MANAGED_BY_PLEDGES,
    // --- settlement ---
    /// The report_id was used before for another report.
    REPORT_ID_REUSED,
    /// The settlement cycle is closed: it takes no more reports.
    CYCLE_CLOSED,
    /// `supersedes` names a report that is not DISPUTED (or of another user).
    NOT_DISPUTED,
    /// The WSP refused to record the report; the message says why.
    REPORT_REFUSED,
    /// The report already has another verdict.
    ALREADY_CONFIRMED,
    /// The report cannot be confirmed (SUPERSEDED, REFUSED, not recorded).
    NOT_CONFIRMABLE,
    /// The cycle's signed root is not what the WSP recorded: none of its
    /// reports can be confirmed.
    CYCLE_MISMATCH,
    /// The cycle is not closed (or did not verify): it has no proofs yet.
    CYCLE_NOT_CLOSED,
    /// CloseSettlementCycle: reports this exchange published in the cycle
    /// are not recorded by the WSP yet; retry.
    REPORTS_NOT_RECORDED,
    /// The WSP's record of a report differs from what this exchange
    /// published under its id.
    RECORD_MISMATCH,
    /// The signing key of this role is not configured
    /// (`settlement.exchange_key_file`, `settlement.wsp_key_file`).
    SIGNING_KEY_NOT_CONFIGURED,
    /// A cycle has more reports than `settlement.max_cycle_reports`.
    CYCLE_TOO_LARGE,
    // --- quote ---
    /// No pool trades the token.
    UNKNOWN_TOKEN,
    /// No route joins the tokens within the hop limit.
    NO_ROUTE,
    /// Every route runs out of liquidity.
    INSUFFICIENT_LIQUIDITY,
    /// The best output is 0.
    AMOUNT_TOO_SMALL,
    /// An amount exceeds its range: a quote's input or output the u64
    /// range, a settlement's sum the exact decimal range.
    AMOUNT_TOO_LARGE,
    /// Quote ingest: an existing pool's tokens cannot change.
    POOL_TOKENS_CHANGED,
    /// A quote needs more work (pool reads, swaps, bins) than the
    /// `quote.max_*_per_quote` bounds allow before any route is priced.
    QUOTE_WORK_LIMIT,
    // --- attestation ---
    /// AttestationService: this gateway has no issuer key
    /// (`attestation.key_file`), so it attests and verifies nothing.
    ISSUER_KEY_NOT_CONFIGURED,
    /// GetStatusList: the key that signs this list (a retired key) is not
    /// loaded on this gateway.
    ISSUER_KEY_NOT_LOADED,
}

/// Any error an RPC can fail with: one domain's or layer's [`RpcError`].
pub struct Error(Box<dyn RpcError>);

impl<E: RpcError> From<E> for Error {
    fn from(error: E) -> Self {
        Self(Box::new(error))
    }
}

impl Error {
    /// The gRPC status code it maps to.
    pub fn code(&self) -> Code {
        self.0.code()
    }

    /// Its `ErrorInfo` reason.
    pub fn reason(&self) -> &'static str {
        self.0.reason()
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}

impl From<Error> for Status {
    fn from(error: Error) -> Self {
        let (code, reason) = (error.code(), error.reason());
        if code == Code::Internal {
            // The client gets the reason; the cause chain goes to the log.
            tracing::error!(error = %ErrorChain(&error), "internal error");
        }
        let mut details = ErrorDetails::with_error_info(reason, DOMAIN, []);
        for v in error.0.violations() {
            details.add_bad_request_violation(
                cut(&v.field, MAX_ID_LEN),
                cut(&v.description, MAX_STATUS_MESSAGE / 2),
            );
        }
        error.0.add_details(&mut details);
        let message = cut(&ErrorChain(&error).to_string(), MAX_STATUS_MESSAGE);
        Status::with_error_details(code, message, details)
    }
}

/// Runs a handler's body: its `?` turns any [`RpcError`] into [`Error`],
/// and this turns the outcome into what tonic wants. Every unary handler
/// is `rpc(async move { ... }).await`.
pub async fn rpc<T>(
    body: impl Future<Output = Result<T, Error>>,
) -> Result<tonic::Response<T>, Status> {
    body.await.map(tonic::Response::new).map_err(Status::from)
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

// === errors of no particular domain ===

impl RpcError for FieldViolations {
    fn code(&self) -> Code {
        Code::InvalidArgument
    }
    fn reason(&self) -> &'static str {
        reason::INVALID_ARGUMENT
    }
    fn violations(&self) -> Vec<FieldViolation> {
        self.0.clone()
    }
}

/// The named thing does not exist.
#[derive(Debug, thiserror::Error)]
#[error("{resource} {} not found", crate::validate::echo(id))]
pub struct NotFound {
    /// What kind of thing, e.g. "credit request".
    pub resource: &'static str,
    /// Its id as given.
    pub id: String,
}

impl NotFound {
    /// `resource` `id` does not exist.
    pub fn new(resource: &'static str, id: impl Into<String>) -> Self {
        Self {
            resource,
            id: id.into(),
        }
    }
}

impl RpcError for NotFound {
    fn code(&self) -> Code {
        Code::NotFound
    }
    fn reason(&self) -> &'static str {
        reason::NOT_FOUND
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

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn every_reason_is_declared_once_and_upper_snake() {
        let mut seen = HashSet::new();
        for r in reason::ALL {
            assert!(seen.insert(*r), "{r} is declared twice");
            assert!(
                r.bytes().all(|b| b.is_ascii_uppercase() || b == b'_'),
                "{r} is not UPPER_SNAKE"
            );
        }
    }

    #[test]
    fn a_status_never_echoes_more_than_the_limit() {
        let huge = "x".repeat(100_000);
        let status = Status::from(Error::from(FieldViolations::one(
            "start_after_event_id",
            format!("{huge} is not an event id"),
        )));
        assert_eq!(status.code(), Code::InvalidArgument);
        assert!(status.message().len() <= MAX_STATUS_MESSAGE);
        let details = status.get_error_details();
        let bad = details.bad_request().expect("violations");
        assert_eq!(bad.field_violations[0].field, "start_after_event_id");
        assert!(bad.field_violations[0].description.len() <= MAX_STATUS_MESSAGE / 2);
    }
}
