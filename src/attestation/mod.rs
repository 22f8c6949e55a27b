//! Attestation API: verification results turned into signed, revocable attestations.

pub mod service;

pub use service::AttestationApi;
