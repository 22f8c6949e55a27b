//! Every way an attestation operation can fail, and how each looks on the
//! wire.

use tonic::Code;

use crate::{
    error::{RpcError, reason},
    redis::RedisError,
};

/// Every way an attestation operation can fail.
#[derive(Debug, thiserror::Error)]
pub enum AttestationError {
    /// No issuer key is configured (or it could not be read).
    #[error("{0}")]
    NotReady(String),
    /// Same request_id, another result.
    #[error("request_id {0:?} was already used for another verification result")]
    RequestIdReused(String),
    /// A status list's signing key is not loaded here.
    #[error(
        "status list {list_id} is signed by issuer key {key_id}, which this gateway does not load (attestation.retired_key_files)"
    )]
    KeyNotLoaded {
        /// The list.
        list_id: String,
        /// Its key.
        key_id: String,
    },
    /// Signing failed (a document with no canonical form: a bug).
    #[error("cannot sign: {0}")]
    Signing(String),
    /// Stored data is not what the server writes.
    #[error("corrupt attestation data at {key}: {reason}")]
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

impl RpcError for AttestationError {
    fn code(&self) -> Code {
        match self {
            Self::NotReady(_) | Self::KeyNotLoaded { .. } => Code::FailedPrecondition,
            Self::RequestIdReused(_) => Code::AlreadyExists,
            Self::Signing(_) | Self::Corrupt { .. } => Code::Internal,
            Self::Redis(e) => e.code(),
        }
    }

    fn reason(&self) -> &'static str {
        match self {
            Self::NotReady(_) => reason::ISSUER_KEY_NOT_CONFIGURED,
            Self::KeyNotLoaded { .. } => reason::ISSUER_KEY_NOT_LOADED,
            Self::RequestIdReused(_) => reason::REQUEST_ID_REUSED,
            Self::Signing(_) | Self::Corrupt { .. } => reason::DATA_CORRUPT,
            Self::Redis(e) => e.reason(),
        }
    }
}
