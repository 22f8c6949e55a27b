//! Pledge API: custody vault, pledge and release (unpledge).
//!
//! Not built yet: every RPC answers UNIMPLEMENTED (reason NOT_IMPLEMENTED),
//! and README.md's status table says so.

pub mod service;

use tonic::{server::NamedService, service::RoutesBuilder};

pub use self::service::PledgeApi;
use crate::{
    proto::pledge::v1::pledge_service_server::PledgeServiceServer,
    redis::Endpoint,
    server::{Context, Plugged},
};

/// The service's fully-qualified name.
pub const SERVICE: &str = <PledgeServiceServer<PledgeApi> as NamedService>::NAME;

/// Plugs PledgeService into the server.
pub fn plug_in(ctx: &Context, routes: &mut RoutesBuilder) -> Plugged {
    routes.add_service(
        PledgeServiceServer::new(PledgeApi).max_decoding_message_size(ctx.max_message_bytes()),
    );
    Plugged {
        name: SERVICE,
        needs: vec![Endpoint::Master],
    }
}
