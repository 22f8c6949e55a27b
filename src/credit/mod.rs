//! Credit API: credit requests WSP -> exchange, decisions, Credit Inventory.
//! See `shared/docs/openoes-protocol.md` for the flow; each role is one file.
//!
//! - [`model`]: keys, field names, Redis data -> proto, the domain's errors.
//! - [`store`]: the WSP's writes on M: requests and applying responses
//!   (`lua/request.lua`, `lua/apply_response.lua`).
//! - [`wsp`]: the WSP role's background work: reading the exchange's
//!   responses on R, and waking RequestCredit calls that wait.
//! - [`exchange`]: the exchange role on R: screening deliveries (protocol
//!   checks, auto-reject) and recording answers (`lua/deliver.lua`,
//!   `lua/respond.lua`).
//! - [`service`]: the gRPC handler.

pub mod exchange;
pub mod model;
pub mod service;
pub mod store;
pub mod wsp;

pub use service::CreditApi;
