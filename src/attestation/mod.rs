//! Attestation: verification results turned into signed, revocable W3C
//! Verifiable Credentials. See "Verification results" in
//! `shared/docs/openoes-protocol.md`, and README.md's Attestation section.
//!
//! - [`keys`]: every key and stream (all hash-tagged into one Cluster slot).
//! - [`model`]: results (parsed strictly from a stream others write),
//!   attestation records, dead letters, the rules of a result.
//! - [`credential`]: the issuer's keys, the credential and status list
//!   documents, the offline checks (signing is [`crate::crypto`]'s).
//! - [`error`]: the domain's errors and their gRPC codes.
//! - [`convert`]: proto <-> domain, every input check.
//! - [`store`]: data on M, one script per state change (`lua/*.lua`).
//! - [`processor`]: the consumer group member that attests results.
//! - [`service`]: the gRPC handler.
//!
//! Served whatever the link roles: the data lives on M, so health needs M.
//! Without an issuer key (`attestation.key_file`) the service is held
//! NOT_SERVING and every RPC answers FAILED_PRECONDITION: it never invents
//! a key.
//!
//! Status lists: 131,072 entries (16 KiB, the spec's minimum) by default,
//! one open list per issuer key (a status list is signed by the key of the
//! credentials it covers, since verifiers match their issuers); a full list
//! is followed by a new list id. A list's credential is signed on read,
//! once per change, and kept in Redis with the revision it shows: a
//! revocation stays one small atomic script (no signing inside it), a burst
//! of revocations costs one signature, and every gateway hands out the same
//! bytes for the same state.

pub mod convert;
pub mod credential;
pub mod error;
pub mod keys;
pub mod model;
pub mod processor;
pub mod service;
pub mod store;

use std::sync::Arc;

use tonic::{server::NamedService, service::RoutesBuilder};

pub use self::service::AttestationApi;
use self::{credential::Issuer, processor::Processor, service::Ready, store::AttestationStore};
use crate::{
    config::Config,
    crypto::keys::KeyError,
    proto::attestation::v1::attestation_service_server::AttestationServiceServer,
    redis::Endpoint,
    server::{Context, Plugged},
    streams::group::GroupHub,
};

/// The service's fully-qualified name.
pub const SERVICE: &str = <AttestationServiceServer<AttestationApi> as NamedService>::NAME;

/// The key name `openoes keys generate` gives an issuer key.
pub const KEY_NAME: &str = "openoes/attestation";

/// Checks that the configured issuer keys can be read, so that `serve`
/// fails at start-up, with the file and the reason, rather than run a
/// service that refuses every call.
pub fn check_keys(config: &Config) -> Result<(), KeyError> {
    Issuer::load(&config.attestation).map(drop)
}

/// Plugs AttestationService into the server and, with an issuer key,
/// starts the processor (it ends with the server).
pub fn plug_in(ctx: &Context, routes: &mut RoutesBuilder) -> Plugged {
    let config = &ctx.config.attestation;
    let store = AttestationStore::new(ctx.redis.master.clone(), config.events_maxlen);
    let ready = match Issuer::load(config) {
        Ok(Some(issuer)) => {
            let rules = model::Rules::new(config);
            let processor = Arc::new(Processor {
                store: store.clone(),
                issuer: issuer.clone(),
                rules: rules.clone(),
                list_prefix: config.status_list_url.clone(),
                list_size: config.status_list_size,
                index_block: config.index_block,
                concurrency: config.concurrency,
                hub: GroupHub::new(
                    ctx.redis.master.clone(),
                    ctx.config.streams.clone(),
                    ctx.stop.clone(),
                ),
                reserved: tokio::sync::Mutex::new(None),
            });
            tokio::spawn(processor.run(ctx.stop.clone()));
            // Results that could not be attested, and those not read yet.
            ctx.metrics.probe(crate::metrics::Probe::DeadLetters {
                endpoint: crate::redis::Endpoint::Master,
                stream: keys::dead_letters(),
            });
            ctx.metrics.probe(crate::metrics::Probe::Group {
                endpoint: crate::redis::Endpoint::Master,
                stream: keys::VERIFICATION_STREAM.into(),
                group: keys::GROUP.into(),
            });
            tracing::info!(key = %issuer.active().key_id, keys = issuer.keys().len(), "attestation issuer key loaded");
            Ok(Arc::new(Ready {
                issuer,
                rules,
                list_prefix: config.status_list_url.clone(),
                request_retention_ms: config.request_retention.as_millis() as u64,
            }))
        }
        Ok(None) => Err("no issuer key is configured (attestation.key_file; make one with `openoes keys generate --out FILE`): this gateway attests and verifies nothing".to_string()),
        Err(e) => Err(format!("the issuer key cannot be read: {e}")),
    };
    if let Err(why) = &ready {
        tracing::warn!(reason = %why, "AttestationService is not serving");
        ctx.health_flags.set(SERVICE, why);
    }
    let api = AttestationApi {
        ready,
        store,
        events: ctx.master_watches.clone(),
        watch_pump: ctx.watch_pump.clone(),
    };
    routes.add_service(
        AttestationServiceServer::new(api).max_decoding_message_size(ctx.max_message_bytes()),
    );
    Plugged {
        name: SERVICE,
        needs: vec![Endpoint::Master],
    }
}
