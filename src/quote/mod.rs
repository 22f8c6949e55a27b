//! Quote: exact DLMM (Liquidity Book) swap quotes over pool and bin state
//! in Redis, multi-hop routing, live re-quoting.
//!
//! - [`keys`]: every key of quote data.
//! - [`model`]: pools and bins, ingest validation.
//! - [`error`]: the domain's errors and their gRPC codes.
//! - [`convert`]: proto <-> domain, every input check.
//! - [`store`]: reads and Lua writes (`lua/`).
//! - [`math`]: the Q64.64 swap math, pure.
//! - [`graph`]: the route graph, indexed by token pair.
//! - [`search`]: the route search and pricing, bounded, over any
//!   [`search::PoolSource`].
//! - [`cache`]: pools in memory, kept current by the change stream, so a
//!   quote reads memory.
//! - [`engine`]: the cached graph (single-flight rebuilds, updates in
//!   place) and quotes over the store.
//! - [`changes`]: follows `quote:events` to invalidate routes and wake
//!   watchers.
//! - [`demo`]: the pools `openoes dev` loads.
//! - [`service`]: the gRPC handler.
//!
//! Health: the Redis holding quote data (M).

pub mod cache;
pub mod changes;
pub mod convert;
pub mod demo;
pub mod engine;
pub mod error;
pub mod graph;
pub mod keys;
pub mod math;
pub mod model;
pub mod search;
pub mod service;
pub mod store;

use std::sync::Arc;

use tokio::sync::broadcast;
use tonic::{server::NamedService, service::RoutesBuilder};

pub use self::service::QuoteApi;
use self::{cache::PoolCache, engine::QuoteEngine, store::QuoteStore};
use crate::{
    proto::quote::v1::quote_service_server::QuoteServiceServer,
    redis::Endpoint,
    server::{Context, Plugged},
    streams::Pump,
};

/// The service's fully-qualified name.
pub const SERVICE: &str = <QuoteServiceServer<QuoteApi> as NamedService>::NAME;

/// Plugs QuoteService into the server, with the follower of pool changes.
pub fn plug_in(ctx: &Context, routes: &mut RoutesBuilder) -> Plugged {
    let config = &ctx.config;
    let store =
        QuoteStore::new(ctx.redis.master.clone(), &config.streams).with_limits(&config.quote);
    let cache = PoolCache::new(store, config.quote.max_cached_bins);
    let engine = Arc::new(QuoteEngine::new(cache, (&config.quote).into()));
    let (changes, _) = broadcast::channel(changes::BROADCAST_CAPACITY);
    tokio::spawn(changes::follow(
        ctx.master_watches.clone(),
        Arc::clone(&engine),
        changes.clone(),
        ctx.stop.clone(),
    ));
    let watchers = Pump::new(
        "WatchQuote",
        config.quote.max_watchers,
        config.streams.slow_subscriber_timeout,
        ctx.stop.clone(),
    )
    // Only the latest quote matters: a slow client makes us compute less
    // often, never buffer more.
    .with_queue(1)
    .with_metrics(&ctx.metrics);
    let api = QuoteApi {
        engine,
        changes,
        watchers,
        recomputes: Arc::new(tokio::sync::Semaphore::new(
            config.quote.max_concurrent_recomputes.max(1),
        )),
        max_bins_per_write: config.quote.max_bins_per_write,
        max_bins_per_pool: config.quote.max_bins_per_pool,
    };
    routes.add_service(
        QuoteServiceServer::new(api).max_decoding_message_size(ctx.max_message_bytes()),
    );
    Plugged {
        name: SERVICE,
        needs: vec![Endpoint::Master],
    }
}
