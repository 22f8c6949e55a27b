//! gRPC handler of `openoes.quote.v1.QuoteService`: validate
//! ([`convert`](super::convert)), engine or store, proto out.

use std::{sync::Arc, time::Duration};

use futures_util::stream;
use tokio::sync::{Semaphore, broadcast};
use tonic::{Request, Response, Status};

use super::{
    changes::PoolChange,
    convert::{self, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE},
    engine::{Considered, QuoteEngine, QuoteRequest},
    math,
    model::{self, BinInput, Pool},
    store::QuoteStore,
};
use crate::{
    error::{Error, NotFound, rpc},
    proto::quote::v1 as pb,
    streams::{Pump, ResponseStream},
    validate::FieldViolations,
};

/// The QuoteService handler.
#[derive(Clone)]
pub struct QuoteApi {
    pub(super) engine: Arc<QuoteEngine>,
    pub(super) changes: broadcast::Sender<PoolChange>,
    /// WatchQuote streams, limited to `quote.max_watchers`.
    pub(super) watchers: Pump,
    /// Watch recomputes at once (`quote.max_concurrent_recomputes`).
    pub(super) recomputes: Arc<Semaphore>,
    /// Bins per write call (`quote.max_bins_per_write`).
    pub(super) max_bins_per_write: usize,
    /// Bins per pool (`quote.max_bins_per_pool`), the most a full snapshot
    /// may hold.
    pub(super) max_bins_per_pool: usize,
}

impl QuoteApi {
    fn store(&self) -> &QuoteStore {
        self.engine.store()
    }

    async fn pool(&self, id: &str) -> Result<Pool, Error> {
        Ok(self
            .store()
            .pool(id)
            .await?
            .ok_or_else(|| NotFound::new("pool", id))?)
    }
}

#[tonic::async_trait]
impl pb::quote_service_server::QuoteService for QuoteApi {
    async fn get_quote(
        &self,
        request: Request<pb::GetQuoteRequest>,
    ) -> Result<Response<pb::GetQuoteResponse>, Status> {
        rpc(async move {
            let request = convert::quote_request(request.into_inner())?;
            let (quote, _) = self.engine.quote(&request).await?;
            Ok(pb::GetQuoteResponse {
                quote: Some(convert::quote_to_proto(&quote)),
            })
        })
        .await
    }

    async fn list_pools(
        &self,
        request: Request<pb::ListPoolsRequest>,
    ) -> Result<Response<pb::ListPoolsResponse>, Status> {
        rpc(async move {
            let r = request.into_inner();
            let mut v = FieldViolations::default();
            v.check_optional_id("token", &r.token);
            let page_size = v.page_size(r.page_size, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE);
            v.into_result()?;
            let token = (!r.token.is_empty()).then_some(r.token.as_str());
            let ids = self.store().pool_ids(token).await?;
            let mut page: Vec<String> = ids
                .into_iter()
                .filter(|id| r.page_token.is_empty() || *id > r.page_token)
                .collect();
            let more = page.len() > page_size;
            page.truncate(page_size);
            let next_page_token = match page.last() {
                Some(last) if more => last.clone(),
                _ => String::new(),
            };
            let pools = self.store().pools(&page).await?;
            Ok(pb::ListPoolsResponse {
                pools: pools.iter().map(convert::pool_to_proto).collect(),
                next_page_token,
            })
        })
        .await
    }

    async fn get_pool(
        &self,
        request: Request<pb::GetPoolRequest>,
    ) -> Result<Response<pb::GetPoolResponse>, Status> {
        rpc(async move {
            let r = request.into_inner();
            let page = convert::bins_page(&r)?;
            let pool = self.pool(&r.pool_id).await?;
            let (bins, next_bins_page_token) = match page {
                Some((after, size)) => {
                    let mut bins = self.store().bins(&r.pool_id, after, size + 1).await?;
                    let more = bins.len() > size;
                    bins.truncate(size);
                    let next = match bins.last() {
                        Some(last) if more => last.bin_id.to_string(),
                        _ => String::new(),
                    };
                    (bins, next)
                }
                None => (Vec::new(), String::new()),
            };
            Ok(pb::GetPoolResponse {
                pool: Some(convert::pool_to_proto(&pool)),
                bins: bins.iter().map(convert::bin_to_proto).collect(),
                next_bins_page_token,
            })
        })
        .await
    }

    async fn upsert_pool(
        &self,
        request: Request<pb::UpsertPoolRequest>,
    ) -> Result<Response<pb::UpsertPoolResponse>, Status> {
        rpc(async move {
            let r = request.into_inner();
            let pool = r
                .pool
                .ok_or_else(|| FieldViolations::one("pool", "is required"))?;
            let bins: Vec<BinInput> = r.bins.into_iter().map(convert::bin_input).collect();
            // A full snapshot may hold a whole pool (staged in slices by
            // the store); a partial write is one script.
            let max_bins = if r.replace_bins {
                self.max_bins_per_pool
            } else {
                self.max_bins_per_write
            };
            let snapshot = model::validate_snapshot(&convert::pool_input(pool), &bins, max_bins)?;
            let written = self.store().upsert_pool(&snapshot, r.replace_bins).await;
            // Even on an error (a timeout may have written): our own next
            // quote must read what is in Redis now, not wait for the event.
            self.engine.cache().changed(&snapshot.pool.pool_id, None);
            let written = written?;
            let stored = self.pool(&snapshot.pool.pool_id).await?;
            if written.created {
                // The follower will hear of it too; this makes our own next
                // quote route through it without waiting for that.
                self.engine.apply_pool(&stored.pool_id, Some(&stored), 0);
            }
            Ok(pb::UpsertPoolResponse {
                pool: Some(convert::pool_to_proto(&stored)),
                bin_count: written.bins,
            })
        })
        .await
    }

    async fn upsert_bins(
        &self,
        request: Request<pb::UpsertBinsRequest>,
    ) -> Result<Response<pb::UpsertBinsResponse>, Status> {
        rpc(async move {
            let r = request.into_inner();
            let mut v = FieldViolations::default();
            v.check_id("pool_id", &r.pool_id);
            if r.bins.is_empty() && r.active_bin_id.is_none() {
                v.add("bins", "give at least one bin (or a new active_bin_id)");
            }
            v.into_result()?;
            let pool = self.pool(&r.pool_id).await?;
            let inputs: Vec<BinInput> = r.bins.into_iter().map(convert::bin_input).collect();
            let bins = model::validate_bins_for(&pool, &inputs, self.max_bins_per_write)?;
            if let Some(active) = r.active_bin_id
                && math::bin_price(active, pool.bin_step).is_err()
            {
                return Err(FieldViolations::one(
                    "active_bin_id",
                    "has no representable price at the pool's bin_step",
                )
                .into());
            }
            let written = self
                .store()
                .upsert_bins(&r.pool_id, pool.bin_step, &bins, r.active_bin_id)
                .await;
            self.engine.cache().changed(&r.pool_id, None);
            let written = written?;
            let (bins_written, bin_count) =
                written.ok_or_else(|| NotFound::new("pool", &r.pool_id))?;
            Ok(pb::UpsertBinsResponse {
                bins_written,
                bin_count,
            })
        })
        .await
    }

    type WatchQuoteStream = ResponseStream<pb::WatchQuoteResponse>;

    async fn watch_quote(
        &self,
        request: Request<pb::WatchQuoteRequest>,
    ) -> Result<Response<Self::WatchQuoteStream>, Status> {
        rpc(async move {
            let r = request.into_inner();
            let request = convert::quote_request(pb::GetQuoteRequest {
                token_in: r.token_in,
                token_out: r.token_out,
                amount: r.amount,
                swap_mode: r.swap_mode,
                slippage_bps: r.slippage_bps,
                max_hops: r.max_hops,
                allow_partial_fill: r.allow_partial_fill,
            })?;
            let slot = self.watchers.reserve()?;
            // Subscribe before the first quote so no change between them is
            // missed.
            let changes = self.changes.subscribe();
            let (first, considered) = self.engine.quote(&request).await?;
            let watch = QuoteWatch {
                engine: Arc::clone(&self.engine),
                request,
                changes,
                considered,
                first: Some(first),
                recomputes: Arc::clone(&self.recomputes),
                retry: None,
                last_error: None,
                pending: String::new(),
            };
            Ok(slot.serve(stream::unfold(watch, QuoteWatch::next)))
        })
        .await
    }
}

/// First wait before recomputing a watcher's quote after a transient
/// failure (Redis unreachable, a pool changing under the read); doubles up
/// to [`RETRY_MAX`].
const RETRY_FIRST: Duration = Duration::from_millis(200);
/// Longest wait between retries of a failing recompute.
const RETRY_MAX: Duration = Duration::from_secs(5);

/// The state of one WatchQuote stream: the quote is computed again when a
/// pool it considered changes, or a new pool appears near its route.
///
/// What can go wrong, and why this order is safe:
/// - A burst of writes: every change that arrives before the recompute
///   starts (while it waits for a [`Semaphore`] permit, too) folds into
///   that one recompute; the permit bounds how many recomputes hold a
///   Redis connection at once, so watchers never starve unary calls.
/// - A transient failure (UNAVAILABLE, ABORTED): the client keeps the last
///   quote, the watcher retries with backoff; changes meanwhile only make
///   the retry sooner.
/// - No quote possible (the route was drained): the client gets one
///   message saying why (`error_reason`), and the watch goes on; the pools
///   it watches stay those of its last good quote, so the refill wakes it.
/// - The pump takes one message at a time, so a slow client makes us
///   compute less often, never buffer more.
struct QuoteWatch {
    engine: Arc<QuoteEngine>,
    request: QuoteRequest,
    changes: broadcast::Receiver<PoolChange>,
    /// What the last good quote's route search considered.
    considered: Considered,
    /// The first quote, computed before the stream started.
    first: Option<super::engine::Quote>,
    /// Shared by every watcher: `quote.max_concurrent_recomputes`.
    recomputes: Arc<Semaphore>,
    /// Set after a transient failure: when to retry, and the next backoff.
    retry: Option<(tokio::time::Instant, Duration)>,
    /// The reason last sent as an error message (not repeated).
    last_error: Option<&'static str>,
    /// The pool that caused a recompute that failed and will be retried.
    pending: String,
}

impl QuoteWatch {
    /// True if `change` can alter this watcher's quote.
    fn matters(&self, change: &PoolChange) -> bool {
        match change {
            PoolChange::Bins(id) | PoolChange::Pool(id) => self.considered.pools.contains(id),
            PoolChange::Created {
                token_x, token_y, ..
            } => self
                .considered
                .tokens
                .as_ref()
                .is_none_or(|near| near.contains(token_x) || near.contains(token_y)),
            PoolChange::Resync => true,
        }
    }

    /// Waits for a change that matters (or the retry time); returns the
    /// pool that caused it ("" if none), `None` when the changes end.
    async fn wait(&mut self) -> Option<String> {
        loop {
            let retry_at = self.retry.map(|(at, _)| at);
            let received = tokio::select! {
                received = self.changes.recv() => received,
                () = sleep_until(retry_at) => return Some(String::new()),
            };
            match received {
                Ok(change) if self.matters(&change) => {
                    return Some(change.pool_id().unwrap_or_default().to_string());
                }
                Ok(_) => continue,
                Err(broadcast::error::RecvError::Lagged(_)) => return Some(String::new()),
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }

    /// Folds changes already queued into `trigger`.
    fn coalesce(&mut self, trigger: &mut String) {
        loop {
            match self.changes.try_recv() {
                Ok(change) => {
                    if trigger.is_empty() && self.matters(&change) {
                        *trigger = change.pool_id().unwrap_or_default().to_string();
                    }
                }
                Err(broadcast::error::TryRecvError::Lagged(_)) => continue,
                Err(_) => return,
            }
        }
    }

    /// The next message: the first quote, then one per relevant change (or
    /// one error message when no quote can be given). Ends only when the
    /// server stops (the pump ends it) or the change feed closes.
    async fn next(mut self) -> Option<(Result<pb::WatchQuoteResponse, Error>, Self)> {
        if let Some(first) = self.first.take() {
            let message = pb::WatchQuoteResponse {
                quote: Some(convert::quote_to_proto(&first)),
                ..Default::default()
            };
            return Some((Ok(message), self));
        }
        loop {
            let mut trigger = self.wait().await?;
            if trigger.is_empty() {
                trigger = std::mem::take(&mut self.pending);
            }
            self.coalesce(&mut trigger);
            let Ok(_permit) = Arc::clone(&self.recomputes).acquire_owned().await else {
                return None; // closed: the server is going away
            };
            // Changes that came while we waited for the permit fold in.
            self.coalesce(&mut trigger);
            match self.engine.quote(&self.request).await {
                Ok((quote, considered)) => {
                    self.considered = considered;
                    self.retry = None;
                    self.last_error = None;
                    let message = pb::WatchQuoteResponse {
                        quote: Some(convert::quote_to_proto(&quote)),
                        changed_pool_id: trigger,
                        ..Default::default()
                    };
                    return Some((Ok(message), self));
                }
                Err(e) if transient(crate::error::RpcError::code(&e)) => {
                    let backoff = self
                        .retry
                        .map_or(RETRY_FIRST, |(_, b)| (b * 2).min(RETRY_MAX));
                    tracing::debug!(error = %e, ?backoff, "watch recompute failed; keeping the last quote");
                    self.retry = Some((tokio::time::Instant::now() + backoff, backoff));
                    self.pending = trigger;
                }
                Err(e) => {
                    self.retry = None;
                    let e = Error::from(e);
                    if self.last_error == Some(e.reason()) {
                        continue;
                    }
                    self.last_error = Some(e.reason());
                    let message = pb::WatchQuoteResponse {
                        quote: None,
                        changed_pool_id: trigger,
                        error_reason: e.reason().to_string(),
                        error_message: crate::validate::cut(&e.to_string(), 1024),
                    };
                    return Some((Ok(message), self));
                }
            }
        }
    }
}

/// Failures a watcher retries instead of reporting: Redis unreachable for
/// a moment, a pool changing under the read, a deadline.
fn transient(code: tonic::Code) -> bool {
    matches!(
        code,
        tonic::Code::Unavailable | tonic::Code::Aborted | tonic::Code::DeadlineExceeded
    )
}

/// Sleeps until `at`, or forever if `None`.
async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
