//! Settlement: the exchange's end-of-cycle reports, the WSP's verdicts
//! (applied to Credit Inventory and the vault exactly once), disputes and
//! corrections, and signed cycles with per-user inclusion proofs. See
//! "Settlement" in `shared/docs/openoes-protocol.md`, and README.md.
//!
//! - [`keys`]: every key and stream, (std) or (ext).
//! - [`model`]: reports (read strictly from a stream the exchange writes),
//!   their rules, data JSON, digest and Merkle leaf; verdicts; cycles;
//!   events.
//! - [`cycle`]: the RFC 9162 tree of a cycle, its C2SP checkpoint, the
//!   WSP's check and countersignature, proofs; the link's keys.
//! - [`error`]: the domain's errors and their gRPC codes.
//! - [`convert`]: proto <-> domain, every input check.
//! - [`store`]: the reads (M or R) and the WSP's writes on M
//!   (`lua/record_report.lua`, `lua/record_cycle.lua`, `lua/verdict.lua`,
//!   `lua/cosign.lua`). A verdict's effect on credit and custody is
//!   computed by [`crate::credit::custody::settle`].
//! - [`wsp`]: the WSP role's followers of the exchange's streams on R, and
//!   the countersignature sweep.
//! - [`exchange`]: the exchange role on R: publishing reports
//!   (`lua/submit.lua`) and closing cycles (`lua/close_cycle.lua`).
//! - [`service`]: the gRPC handler.
//!
//! Health: the OpenOES link of the roles served (WSP: M and R; exchange: R).

pub mod convert;
pub mod cycle;
pub mod error;
pub mod exchange;
pub mod keys;
pub mod model;
pub mod service;
pub mod store;
pub mod wsp;

use tonic::{server::NamedService, service::RoutesBuilder};

pub use self::service::SettlementApi;
use self::{
    cycle::{Keys, KeysError, TreeCache},
    exchange::Exchange,
    store::{SettlementStore, SettlementView},
};
use crate::{
    config::{Config, Role},
    proto::settlement::v1::settlement_service_server::SettlementServiceServer,
    server::{Context, Plugged},
    streams::follow::follow,
};

/// The service's fully-qualified name.
pub const SERVICE: &str = <SettlementServiceServer<SettlementApi> as NamedService>::NAME;

/// The key name `openoes keys generate` gives a settlement key by default.
pub const KEY_NAME: &str = "openoes/settlement";

/// Loads the keys `config` names: start-up fails on a key that cannot be
/// read (`serve` checks this first).
pub fn check_keys(config: &Config) -> Result<(), KeysError> {
    Keys::load(&config.settlement).map(drop)
}

/// Plugs SettlementService into the server: the roles' state and, for the
/// WSP, the followers of the exchange's streams on R and the
/// countersignature sweep, which end with the server.
pub fn plug_in(ctx: &Context, routes: &mut RoutesBuilder) -> Plugged {
    let config = &ctx.config;
    let s = &config.settlement;
    let keys = Keys::load(s).unwrap_or_else(|e| {
        // `serve` refuses to start on this; in-process servers go on
        // without keys and say so.
        tracing::error!(error = %e, "settlement keys not loaded: cycles are neither signed nor verified");
        Keys::default()
    });
    let wsp = ctx.role(Role::Wsp, || {
        let store = SettlementStore::new(ctx.redis.master.clone(), config);
        tokio::spawn(follow(
            wsp::Reports {
                store: store.clone(),
                max_bytes: s.max_report_bytes,
            },
            ctx.redis.replica_reader.clone(),
            config.streams.clone(),
            ctx.stop.clone(),
        ));
        tokio::spawn(follow(
            wsp::Summaries {
                store: store.clone(),
                keys: keys.clone(),
                max_bytes: s.max_report_bytes,
                max_cycle_reports: s.max_cycle_reports,
            },
            ctx.redis.replica_reader.clone(),
            config.streams.clone(),
            ctx.stop.clone(),
        ));
        tokio::spawn(wsp::sweep(
            store.clone(),
            keys.wsp.clone(),
            s.sweep_interval,
            ctx.stop.clone(),
        ));
        // The WSP's cursors over both of the exchange's streams, as credit's.
        for (cursor, stream) in [
            (self::keys::REPORT_CURSOR, self::keys::REPORT_STREAM),
            (self::keys::BATCH_CURSOR, self::keys::BATCH_STREAM),
        ] {
            ctx.metrics.probe(crate::metrics::Probe::Cursor {
                cursor,
                stream: stream.into(),
            });
        }
        store
    });
    let exchange = ctx.role(Role::Exchange, || {
        Exchange::new(
            ctx.redis.replica.clone(),
            keys.exchange.clone(),
            ctx.replica_watches.clone(),
            config,
            ctx.stop.clone(),
        )
    });
    // Reads follow M where this gateway has it, R otherwise.
    let (view, events) = if ctx.serves(Role::Wsp) {
        (
            SettlementView::new(ctx.redis.master.clone()),
            ctx.master_watches.clone(),
        )
    } else {
        (
            SettlementView::new(ctx.redis.replica.clone()),
            ctx.replica_watches.clone(),
        )
    };
    let api = SettlementApi {
        wsp,
        exchange,
        view,
        events,
        watch_pump: ctx.watch_pump.clone(),
        trees: TreeCache::new(s.cached_trees),
        keys,
    };
    routes.add_service(
        SettlementServiceServer::new(api).max_decoding_message_size(ctx.max_message_bytes()),
    );
    Plugged {
        name: SERVICE,
        needs: ctx.link_endpoints(),
    }
}
