//! Credit: requests WSP -> exchange, decisions, Credit Inventory. See
//! `shared/docs/openoes-protocol.md` for the flow.
//!
//! - [`keys`]: every key and stream, (std) or (ext).
//! - [`model`]: typed records (requests, inventory, events, responses).
//! - [`custody`]: the custody effect of a decision on a pledge or a release
//!   (the vault, the pledges), computed exactly for the apply script.
//! - [`error`]: the domain's errors and their gRPC codes.
//! - [`convert`]: proto <-> domain, every input check.
//! - [`store`]: the WSP's writes on M (`lua/request.lua`,
//!   `lua/apply_response.lua`) and reads on M or R.
//! - [`wsp`]: the WSP role's background work: reading the exchange's
//!   responses on R, and waking RequestCredit calls that wait.
//! - [`exchange`]: the exchange role on R: screening deliveries (protocol
//!   checks, auto-reject) and recording answers (`lua/deliver.lua`,
//!   `lua/respond.lua`).
//! - [`service`]: the gRPC handler.
//!
//! Health: the OpenOES link of the roles served (WSP: M and R; exchange: R).

pub mod convert;
pub mod custody;
pub mod error;
pub mod exchange;
pub mod keys;
pub mod model;
pub mod service;
pub mod store;
pub mod wsp;

use tonic::{server::NamedService, service::RoutesBuilder};

pub use self::service::CreditApi;
use self::{
    exchange::Exchange,
    service::WspRole,
    store::{CreditStore, CreditView},
};
use crate::{
    config::Role,
    proto::credit::v1::credit_service_server::CreditServiceServer,
    server::{Context, Plugged},
    streams::follow::follow,
};

/// The service's fully-qualified name.
pub const SERVICE: &str = <CreditServiceServer<CreditApi> as NamedService>::NAME;

/// Plugs CreditService into the server: the roles' state and background
/// work (the WSP's response reader, sweeper and decision follower), which
/// end with the server.
pub fn plug_in(ctx: &Context, routes: &mut RoutesBuilder) -> Plugged {
    let config = &ctx.config;
    let wsp = ctx.role(Role::Wsp, || {
        let store = CreditStore::new(ctx.redis.master.clone(), config);
        tokio::spawn(follow(
            wsp::Responses {
                store: store.clone(),
                max_response_bytes: config.credit.max_response_bytes,
            },
            ctx.redis.replica_reader.clone(),
            config.streams.clone(),
            ctx.stop.clone(),
        ));
        tokio::spawn(wsp::sweep(
            store.clone(),
            config.credit.sweep_interval,
            config.streams.read_batch,
            ctx.health_flags.clone(),
            ctx.stop.clone(),
        ));
        WspRole {
            store,
            waiters: wsp::decision_waiters(
                ctx.master_watches.clone(),
                config.credit.max_waiters,
                ctx.stop.clone(),
            ),
            max_wait: config.credit.max_wait,
        }
    });
    let exchange = ctx.role(Role::Exchange, || {
        Exchange::new(
            ctx.redis.replica.clone(),
            &config.credit,
            &config.streams,
            ctx.stop.clone(),
        )
    });
    register_probes(ctx);
    // Reads follow M where this gateway has it, R otherwise.
    let (view, events) = if ctx.serves(Role::Wsp) {
        (
            CreditView::new(ctx.redis.master.clone()),
            ctx.master_watches.clone(),
        )
    } else {
        (
            CreditView::new(ctx.redis.replica.clone()),
            ctx.replica_watches.clone(),
        )
    };
    let api = CreditApi {
        wsp,
        exchange,
        view,
        events,
        watch_pump: ctx.watch_pump.clone(),
        group_pump: ctx.group_pump.clone(),
    };
    routes.add_service(
        CreditServiceServer::new(api).max_decoding_message_size(ctx.max_message_bytes()),
    );
    Plugged {
        name: SERVICE,
        needs: ctx.link_endpoints(),
    }
}

/// What the metrics sampler watches of the credit flow, for the roles
/// served: the WSP its undecided requests and its cursor over the
/// exchange's responses (on M and R); the exchange its consumer groups on
/// the request stream and their dead letters (on R).
fn register_probes(ctx: &Context) {
    use crate::{metrics::Probe, redis::Endpoint};
    if ctx.serves(Role::Wsp) {
        ctx.metrics.probe(Probe::Backlog {
            flow: "credit",
            key: keys::UNDECIDED,
        });
        ctx.metrics.probe(Probe::Cursor {
            cursor: keys::RESPONSE_CURSOR,
            stream: keys::RESPONSE_STREAM.into(),
        });
    }
    if ctx.serves(Role::Exchange) {
        for group in &ctx.config.credit.consumer_groups {
            ctx.metrics.probe(Probe::Group {
                endpoint: Endpoint::Replica,
                stream: keys::REQUEST_STREAM.into(),
                group: group.clone(),
            });
        }
        ctx.metrics.probe(Probe::DeadLetters {
            endpoint: Endpoint::Replica,
            stream: crate::streams::group::dlq_key(keys::REQUEST_STREAM),
        });
    }
}
