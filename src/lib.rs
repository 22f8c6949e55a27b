//! # openoes
//!
//! A gRPC gateway for the OpenOES off-exchange settlement standard (formerly
//! "Redis Mirror"): a custodian (WSP) and an exchange share a user's Credit
//! Inventory through a Redis master (M, the WSP's) and a stream-writeable
//! replica of it (R, at the exchange). openoes speaks that Redis protocol on
//! one side and gRPC on the other, and runs two more engines on the same
//! Redis-streams machinery: DLMM swap quotes and signed attestations.
//!
//! ## Layout
//!
//! Shared machinery (used by every domain, depends on none):
//!
//! - [`config`]: the one typed [`config::Config`]: defaults, then a TOML file,
//!   then `OPENOES__*` environment variables.
//! - [`amount`]: money as the protocol writes it: exact decimal strings in
//!   and out, `rust_decimal` inside, never a float.
//! - [`crypto`]: offline, standard signatures others verify with their own
//!   tools: RFC 9162 Merkle trees, C2SP signed notes, checkpoints and tlog
//!   proofs, W3C Data Integrity `eddsa-jcs-2022` with `did:key`, Bitstring
//!   Status Lists, and the server's Ed25519 key file.
//! - [`error`]: the one table from errors to gRPC status codes, with
//!   `google.rpc.ErrorInfo` reasons and `BadRequest` field violations.
//! - [`redis`]: connections to M and R: a pool for short commands, dedicated
//!   connections (a separate type) for blocking stream reads, and
//!   [`redis::process`] to run real local `redis-server`s for `dev` and tests.
//! - [`streams`]: the bridge from Redis streams to gRPC server streams.
//! - [`server`]: builds the tonic server: services, health that follows Redis,
//!   reflection, deadline and drain layers, graceful shutdown.
//! - [`shutdown`]: the stop signal (SIGINT, SIGTERM).
//! - [`dev`]: `openoes dev`, the whole link on one machine.
//! - [`acl`]: the link's Redis ACL rules and `openoes acl apply`.
//! - [`proto`]: code generated from `proto/`.
//!
//! One folder per domain, each holding its model, its Redis store (keys and
//! Lua scripts in `.lua` files beside it) and a thin gRPC handler:
//!
//! - [`credit`]: credit requests WSP -> exchange, decisions, Credit Inventory;
//!   the WSP role on M and the exchange role on R, one file each.
//! - [`pledge`]: custody vault, pledge and release.
//! - [`settlement`]: settlement reports, confirmations, disputes.
//! - [`quote`]: exact DLMM (Liquidity Book) swap quotes and routing.
//! - [`attestation`]: verification results turned into signed attestations.
//!
//! - [`bench`]: `openoes bench`, load tools that report ratios to Redis.
//!
//! `src/main.rs` is the command line (`serve`, `dev`, `acl apply`,
//! `pools load`, `bench`, `config`).

#![warn(missing_docs)]

pub mod acl;
pub mod amount;
pub mod attestation;
pub mod bench;
pub mod config;
pub mod credit;
pub mod crypto;
pub mod dev;
pub mod error;
pub mod pledge;
pub mod proto;
pub mod quote;
pub mod redis;
pub mod server;
pub mod settlement;
pub mod shutdown;
pub mod streams;
