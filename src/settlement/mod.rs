//! Settlement API: reports, confirmations, disputes.

pub mod service;

pub use service::SettlementApi;
