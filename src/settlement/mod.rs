//! Settlement API: reports, confirmations, disputes.
//!
//! Not built yet: every RPC answers UNIMPLEMENTED (reason NOT_IMPLEMENTED),
//! and README.md's status table says so.

pub mod service;

use tonic::{server::NamedService, service::RoutesBuilder};

pub use self::service::SettlementApi;
use crate::{
    proto::settlement::v1::settlement_service_server::SettlementServiceServer,
    server::{Context, Plugged},
};

/// The service's fully-qualified name.
pub const SERVICE: &str = <SettlementServiceServer<SettlementApi> as NamedService>::NAME;

/// Plugs SettlementService into the server.
pub fn plug_in(ctx: &Context, routes: &mut RoutesBuilder) -> Plugged {
    routes.add_service(
        SettlementServiceServer::new(SettlementApi)
            .max_decoding_message_size(ctx.max_message_bytes()),
    );
    Plugged {
        name: SERVICE,
        needs: ctx.link_endpoints(),
    }
}
