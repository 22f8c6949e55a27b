//! Quote API: exact DLMM swap quotes over pool and bin state in Redis.
//!
//! - [`math`]: the Q64.64 swap math, pure.
//! - [`model`]: pools and bins, ingest validation.
//! - [`store`]: Redis keys and Lua scripts (`lua/`).
//! - [`engine`]: route search and pricing.
//! - [`demo`]: the pools `openoes dev` loads.
//! - [`changes`]: follows `quote:events` to invalidate routes and wake watchers.
//! - [`service`]: the thin gRPC handler.

pub mod changes;
pub mod demo;
pub mod engine;
pub mod math;
pub mod model;
pub mod service;
pub mod store;

pub use service::QuoteApi;
