//! Attestation API: verification results turned into signed, revocable attestations.
//!
//! Not built yet: every RPC answers UNIMPLEMENTED (reason NOT_IMPLEMENTED),
//! and README.md's status table says so.

pub mod service;

use tonic::{server::NamedService, service::RoutesBuilder};

pub use self::service::AttestationApi;
use crate::{
    proto::attestation::v1::attestation_service_server::AttestationServiceServer,
    redis::Endpoint,
    server::{Context, Plugged},
};

/// The service's fully-qualified name.
pub const SERVICE: &str = <AttestationServiceServer<AttestationApi> as NamedService>::NAME;

/// Plugs AttestationService into the server.
pub fn plug_in(ctx: &Context, routes: &mut RoutesBuilder) -> Plugged {
    routes.add_service(
        AttestationServiceServer::new(AttestationApi)
            .max_decoding_message_size(ctx.max_message_bytes()),
    );
    Plugged {
        name: SERVICE,
        needs: vec![Endpoint::Master],
    }
}
