//! Credit API: credit requests WSP -> exchange, decisions, Credit Inventory, credit events.

pub mod service;

pub use service::CreditApi;
