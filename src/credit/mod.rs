//! Credit API: credit requests WSP -> exchange, decisions, Credit Inventory.
//!
//! - [`store`]: credit data on M and the request script (`lua/`).
//! - [`service`]: the gRPC handler (not built yet: UNIMPLEMENTED).

pub mod service;
pub mod store;

pub use service::CreditApi;
