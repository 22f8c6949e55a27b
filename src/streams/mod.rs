//! The bridge between Redis streams and gRPC server streams, shared by every
//! streaming RPC of every service. See "Delivery semantics" in
//! `shared/docs/architecture.md`.
//!
//! - [`watch`]: fan-out (`Watch*` RPCs): every subscriber sees every event,
//!   resumable by event id, one reader per stream per process.
//! - [`group`]: consumer groups (`Subscribe*` RPCs): competing consumers,
//!   at-least-once, reclaim of dead subscribers' entries, dead letters.
//! - [`pump`]: the one pump that serves every streaming RPC to its client
//!   (limits, slow clients, client gone, failure, shutdown).
//! - [`follow`]: the WSP following a peer's stream on R from a cursor on
//!   M, entry by entry, through resyncs and trims.
//! - [`waiters`]: calls waiting for an event of a log, woken by one
//!   follower of it.
//! - [`entry`] and [`reply`]: entries, ids and the parsers of raw stream
//!   replies, entry by entry, for the bridge and for domains that read a
//!   stream themselves.

pub mod entry;
pub mod follow;
pub mod group;
pub mod pump;
pub mod reply;
pub mod waiters;
pub mod watch;

use std::time::Duration;

pub use entry::{Entry, Fields, StreamId};
pub use pump::{Pump, ResponseStream, Slot};
use tokio_util::sync::CancellationToken;

/// Capped exponential backoff of a background reader that reconnects: 100 ms,
/// doubling up to 5 s, back to 100 ms once a connection works. Short enough
/// to recover quickly, capped so a long outage costs one attempt per 5 s.
#[derive(Debug)]
pub(crate) struct Backoff {
    delay: Duration,
}

impl Backoff {
    pub(crate) const START: Duration = Duration::from_millis(100);
    const MAX: Duration = Duration::from_secs(5);

    pub(crate) fn new() -> Self {
        Self { delay: Self::START }
    }

    /// After a connection worked.
    pub(crate) fn reset(&mut self) {
        self.delay = Self::START;
    }

    /// The wait before the next attempt.
    pub(crate) fn delay(&self) -> Duration {
        self.delay
    }

    /// Waits the current delay, then doubles it; false if `stop` came first.
    pub(crate) async fn wait(&mut self, stop: &CancellationToken) -> bool {
        tokio::select! {
            _ = stop.cancelled() => return false,
            _ = tokio::time::sleep(self.delay) => {}
        }
        self.delay = (self.delay * 2).min(Self::MAX);
        true
    }
}
