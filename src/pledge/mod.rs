//! Pledge API: custody vault, pledge and release (unpledge).

pub mod service;

pub use service::PledgeApi;
