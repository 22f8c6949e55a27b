//! The bridge between Redis streams and gRPC server streams, shared by every
//! streaming RPC of every service. See "Delivery semantics" in
//! `shared/docs/architecture.md`.
//!
//! - [`watch`]: fan-out (`Watch*` RPCs): every subscriber sees every event,
//!   resumable by event id, one reader per stream per process.
//! - [`group`]: consumer groups (`Subscribe*` RPCs): competing consumers,
//!   at-least-once, reclaim of dead subscribers' entries, dead letters.

pub mod group;
pub mod watch;

use std::pin::Pin;

use futures_util::Stream;
use tonic::Status;

/// The response stream type of every server-streaming RPC.
pub type ResponseStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;
