//! The one streaming pump: every server-streaming RPC (`Watch*`,
//! `Subscribe*`) is served by [`Slot::serve`].
//!
//! A handler builds a *source*, a `Stream` of messages or of the error that
//! ends it (from a fan-out watch, a consumer group, or a quote that is
//! recomputed on change), reserves a [`Slot`] of its kind's [`Pump`], and
//! hands both over. The pump runs one task per client stream that:
//!
//! - takes the next message from the source and queues it for the client
//!   (a small bounded queue);
//! - cuts the client off with RESOURCE_EXHAUSTED (SUBSCRIBER_TOO_SLOW) if it
//!   takes nothing for `streams.slow_subscriber_timeout` while the queue is
//!   full: a slow client costs a bounded queue, never unbounded memory;
//! - ends when the client goes away (the source is dropped at once, which
//!   unsubscribes it), when the source ends or fails (the failure becomes
//!   the stream's final status, after the messages already queued), or when
//!   the server stops (UNAVAILABLE, SHUTTING_DOWN: clients resume by cursor).
//!
//! Each kind of stream has its own limit of open client streams
//! ([`Pump::reserve`] answers RESOURCE_EXHAUSTED, TOO_MANY_SUBSCRIBERS,
//! beyond it), so one kind cannot starve another, and the gateway's own
//! internal subscribers (which are not client streams) never count.

use std::{pin::Pin, sync::Arc, time::Duration};

use futures_util::{Stream, StreamExt, stream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::{Code, Status};

use super::watch::WatchEnd;
use crate::{
    error::{Error, RpcError, reason},
    metrics::{KindLabels, Metrics},
};

/// The response stream type of every server-streaming RPC.
pub type ResponseStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

/// Messages queued per client stream before the pump waits for the
/// client, unless the pump says otherwise. Small: the sources keep their
/// own bounded queues (a watch's is `streams.watch_queue_capacity`), this
/// one only smooths the hand-off.
pub const CLIENT_QUEUE: usize = 16;

/// Client streams of one kind, e.g. every `Watch*` RPC of this process.
#[derive(Clone)]
pub struct Pump {
    kind: &'static str,
    permits: Arc<Semaphore>,
    limit: usize,
    queue: usize,
    patience: Duration,
    stop: CancellationToken,
    /// Open streams and cut-offs of this kind, if the server keeps metrics.
    metrics: Option<PumpMetrics>,
}

/// The metrics of one pump kind.
#[derive(Clone)]
struct PumpMetrics {
    open: prometheus_client::metrics::gauge::Gauge,
    cut_off: prometheus_client::metrics::counter::Counter,
}

/// Counts a client stream as open until dropped.
struct OpenStream(prometheus_client::metrics::gauge::Gauge);

impl Drop for OpenStream {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Too many client streams of one kind are open.
#[derive(Debug, thiserror::Error)]
#[error("this server already serves {limit} {kind} streams; retry later or elsewhere")]
pub struct TooManySubscribers {
    /// The kind of stream.
    pub kind: &'static str,
    /// Its configured limit.
    pub limit: usize,
}

impl RpcError for TooManySubscribers {
    fn code(&self) -> Code {
        Code::ResourceExhausted
    }
    fn reason(&self) -> &'static str {
        reason::TOO_MANY_SUBSCRIBERS
    }
}

/// A reserved place for one client stream; serving it or dropping it
/// gives the place back when the stream ends.
pub struct Slot {
    permit: OwnedSemaphorePermit,
    open: Option<OpenStream>,
    cut_off: Option<prometheus_client::metrics::counter::Counter>,
    queue: usize,
    patience: Duration,
    stop: CancellationToken,
}

impl Pump {
    /// Streams of `kind` (a name for messages), at most `limit` open at
    /// once; a client that takes nothing for `patience` while its queue is
    /// full is cut off. Streams end when `stop` is cancelled.
    pub fn new(
        kind: &'static str,
        limit: usize,
        patience: Duration,
        stop: CancellationToken,
    ) -> Self {
        Self {
            kind,
            permits: Arc::new(Semaphore::new(limit)),
            limit,
            queue: CLIENT_QUEUE,
            patience,
            stop,
            metrics: None,
        }
    }

    /// The same pump, counting its open streams and cut-offs in `metrics`
    /// under its kind.
    pub fn with_metrics(mut self, metrics: &Metrics) -> Self {
        let labels = KindLabels {
            kind: self.kind.into(),
        };
        self.metrics = Some(PumpMetrics {
            open: metrics.stream_subscribers.get_or_create_owned(&labels),
            cut_off: metrics.stream_cut_off.get_or_create_owned(&labels),
        });
        self
    }

    /// The same pump with `queue` messages queued per client (at least 1):
    /// 1 where only the latest message matters (a recomputed quote).
    pub fn with_queue(mut self, queue: usize) -> Self {
        self.queue = queue.max(1);
        self
    }

    /// Reserves a place for one more client stream. Reserve before the
    /// source is built: a refused client then costs no subscription.
    pub fn reserve(&self) -> Result<Slot, TooManySubscribers> {
        let permit =
            Arc::clone(&self.permits)
                .try_acquire_owned()
                .map_err(|_| TooManySubscribers {
                    kind: self.kind,
                    limit: self.limit,
                })?;
        let open = self.metrics.as_ref().map(|m| {
            m.open.inc();
            OpenStream(m.open.clone())
        });
        Ok(Slot {
            permit,
            open,
            cut_off: self.metrics.as_ref().map(|m| m.cut_off.clone()),
            queue: self.queue,
            patience: self.patience,
            stop: self.stop.clone(),
        })
    }

    /// Client streams of this kind open now.
    pub fn open(&self) -> usize {
        self.limit - self.permits.available_permits()
    }
}

impl Slot {
    /// Serves `source` to the client; see the module docs.
    pub fn serve<T, S>(self, source: S) -> ResponseStream<T>
    where
        T: Send + 'static,
        S: Stream<Item = Result<T, Error>> + Send + 'static,
    {
        let (tx, rx) = mpsc::channel(self.queue);
        let (end_tx, end_rx) = oneshot::channel::<Status>();
        tokio::spawn(async move {
            let _permit = self.permit;
            let _open = self.open;
            let mut source = std::pin::pin!(source);
            let end: Error = loop {
                let next = tokio::select! {
                    biased;
                    () = tx.closed() => return, // the client left
                    () = self.stop.cancelled() => break WatchEnd::Shutdown.into(),
                    next = source.next() => next,
                };
                let message = match next {
                    None => return,
                    Some(Err(e)) => break e,
                    Some(Ok(message)) => message,
                };
                match tokio::time::timeout(self.patience, tx.send(Ok(message))).await {
                    Ok(Ok(())) => {}
                    Ok(Err(_)) => return,
                    Err(_) => break WatchEnd::TooSlow.into(),
                }
            };
            if end.reason() == reason::SUBSCRIBER_TOO_SLOW
                && let Some(cut_off) = &self.cut_off
            {
                cut_off.inc();
            }
            // After the queued messages; lost only if the client left.
            let _ = end_tx.send(end.into());
        });
        // Queued messages first, then the final status if there is one.
        let ending = stream::once(end_rx).filter_map(|end| async move { end.ok().map(Err) });
        Box::pin(ReceiverStream::new(rx).chain(ending))
    }
}
