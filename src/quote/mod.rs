//! Quote API: exact DLMM swap quotes over pool and bin state in Redis.

pub mod math;
pub mod service;

pub use service::QuoteApi;
