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

use std::{pin::Pin, time::Duration};

use futures_util::{Stream, StreamExt, stream};
use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::Status;

use crate::error::Error;

/// The response stream type of every server-streaming RPC.
pub type ResponseStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

/// The sending side of a server stream: a bounded queue to the client, a
/// patience for a client that stops reading, and a final error status.
pub struct Outbox<T> {
    tx: mpsc::Sender<Result<T, Status>>,
    end: oneshot::Sender<Status>,
    patience: Duration,
}

impl<T: Send + 'static> Outbox<T> {
    /// An outbox of `capacity` messages whose client is cut off (stream
    /// ends RESOURCE_EXHAUSTED, SUBSCRIBER_TOO_SLOW) if it takes none for
    /// `patience`; and the stream to return from the handler.
    pub fn new(capacity: usize, patience: Duration) -> (Self, ResponseStream<T>) {
        let (tx, rx) = mpsc::channel(capacity);
        let (end, end_rx) = oneshot::channel();
        // Queued messages first, then the final status if there is one.
        let ending = stream::once(end_rx).filter_map(|end| async move { end.ok().map(Err) });
        let stream = ReceiverStream::new(rx).chain(ending);
        (Self { tx, end, patience }, Box::pin(stream))
    }

    /// Sends one message; false if the stream is over (the client left, or
    /// was cut off as too slow: then stop producing).
    pub async fn send(&mut self, message: T) -> bool {
        match tokio::time::timeout(self.patience, self.tx.send(Ok(message))).await {
            Ok(sent) => sent.is_ok(),
            Err(_) => {
                let (end, _) = oneshot::channel();
                let end = std::mem::replace(&mut self.end, end);
                let _ = end.send(Error::WatchEnded(watch::WatchEnd::TooSlow).into());
                false
            }
        }
    }

    /// Ends the stream with `error` after the queued messages.
    pub fn fail(self, error: Error) {
        let _ = self.end.send(error.into());
    }

    /// Resolves when the client has gone away.
    pub async fn closed(&self) {
        self.tx.closed().await;
    }
}

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
