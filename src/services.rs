//! The composition root: the one list of services, and the server that
//! runs them. The only module that knows every domain; nothing below it
//! imports it.

use tokio::net::TcpListener;

use crate::{
    attestation, credit, pledge, quote,
    server::{self, PlugIn, ServerError},
    settlement,
};

/// Every service, in the order health and reflection list them.
pub const ALL: [PlugIn; 5] = [
    credit::plug_in,
    pledge::plug_in,
    settlement::plug_in,
    quote::plug_in,
    attestation::plug_in,
];

/// The fully-qualified names of the services in [`ALL`].
pub const NAMES: [&str; 5] = [
    credit::SERVICE,
    pledge::SERVICE,
    settlement::SERVICE,
    quote::SERVICE,
    attestation::SERVICE,
];

/// Serves every service on `listener` until `stop_signal` resolves, then
/// drains (see [`server::run`]).
pub async fn run(
    config: crate::config::Config,
    listener: TcpListener,
    stop_signal: impl Future<Output = ()>,
) -> Result<(), ServerError> {
    server::run(config, listener, stop_signal, &ALL).await
}
