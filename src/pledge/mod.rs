//! Pledge: the custody vault, pledge and release (unpledge). Served by the
//! WSP role on M.
//!
//! A pledge locks vault balance and asks the exchange, through an ordinary
//! credit increase, for the matching credit; a release is an ordinary
//! credit decrease that unlocks once accepted. Both ride the credit flow
//! ([`crate::credit`]): their credit requests carry a purpose, and the
//! script that applies the exchange's decision applies the custody effect
//! in the same step ([`crate::credit::custody`]). This domain adds the
//! vault itself (deposits, withdrawals) and the reads.
//!
//! - [`keys`]: the vault's keys.
//! - [`model`]: vault balances, pledges, releases, events.
//! - [`error`]: the domain's errors and their gRPC codes.
//! - [`convert`]: proto <-> domain, every input check.
//! - [`store`]: deposits and withdrawals (`lua/vault_op.lua`), reads.
//! - [`service`]: the gRPC handler.
//!
//! Health: M.

pub mod convert;
pub mod error;
pub mod keys;
pub mod model;
pub mod service;
pub mod store;

use tonic::{server::NamedService, service::RoutesBuilder};

pub use self::service::PledgeApi;
use self::{service::WspRole, store::VaultStore};
use crate::{
    config::Role,
    credit::{store::CreditStore, wsp},
    proto::pledge::v1::pledge_service_server::PledgeServiceServer,
    redis::Endpoint,
    server::{Context, Plugged},
};

/// The service's fully-qualified name.
pub const SERVICE: &str = <PledgeServiceServer<PledgeApi> as NamedService>::NAME;

/// Plugs PledgeService into the server.
pub fn plug_in(ctx: &Context, routes: &mut RoutesBuilder) -> Plugged {
    let config = &ctx.config;
    let wsp = ctx.role(Role::Wsp, || WspRole {
        vaults: VaultStore::new(ctx.redis.master.clone(), config),
        credit: CreditStore::new(ctx.redis.master.clone(), config),
        waiters: wsp::decision_waiters(
            ctx.master_watches.clone(),
            config.credit.max_waiters,
            ctx.stop.clone(),
        ),
        max_wait: config.credit.max_wait,
        events: ctx.master_watches.clone(),
    });
    let api = PledgeApi {
        wsp,
        watch_pump: ctx.watch_pump.clone(),
    };
    routes.add_service(
        PledgeServiceServer::new(api).max_decoding_message_size(ctx.max_message_bytes()),
    );
    Plugged {
        name: SERVICE,
        needs: vec![Endpoint::Master],
    }
}
