//! gRPC handler of `openoes.quote.v1.QuoteService`: validate
//! ([`convert`](super::convert)), engine or store, proto out.

use std::sync::Arc;

use futures_util::stream;
use tokio::sync::broadcast;
use tonic::{Request, Response, Status};

use super::{
    changes::PoolChange,
    convert::{self, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE},
    engine::{QuoteEngine, QuoteRequest},
    math,
    model::{self, BinInput, Pool},
    store::QuoteStore,
};
use crate::{
    error::{Error, NotFound, rpc},
    proto::quote::v1 as pb,
    streams::{Pump, ResponseStream},
    validate::{FieldViolations, require_id},
};

/// The QuoteService handler.
#[derive(Clone)]
pub struct QuoteApi {
    pub(super) engine: Arc<QuoteEngine>,
    pub(super) changes: broadcast::Sender<PoolChange>,
    /// WatchQuote streams, limited to `quote.max_watchers`.
    pub(super) watchers: Pump,
}

impl QuoteApi {
    fn store(&self) -> &QuoteStore {
        self.engine.store()
    }

    async fn pool(&self, id: &str) -> Result<Pool, Error> {
        let pools = self.store().pools(&[id.to_string()]).await?;
        Ok(pools
            .into_iter()
            .next()
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
            require_id("pool_id", &r.pool_id)?;
            let pool = self.pool(&r.pool_id).await?;
            let bins = if r.include_bins {
                self.store().bins(&r.pool_id).await?
            } else {
                Vec::new()
            };
            Ok(pb::GetPoolResponse {
                pool: Some(convert::pool_to_proto(&pool)),
                bins: bins.iter().map(convert::bin_to_proto).collect(),
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
            let snapshot = model::validate_snapshot(&convert::pool_input(pool), &bins)?;
            let (_, bin_count) = self.store().upsert_pool(&snapshot, r.replace_bins).await?;
            // The follower will hear of it too; this makes our own next
            // quote see it without waiting for that.
            self.engine.invalidate_routes();
            let stored = self.pool(&snapshot.pool.pool_id).await?;
            Ok(pb::UpsertPoolResponse {
                pool: Some(convert::pool_to_proto(&stored)),
                bin_count,
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
            let bins = model::validate_bins_for(&pool, &inputs)?;
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
                .upsert_bins(&r.pool_id, &bins, r.active_bin_id)
                .await?;
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
            };
            Ok(slot.serve(stream::unfold(watch, QuoteWatch::next)))
        })
        .await
    }
}

/// The state of one WatchQuote stream: the quote is computed again when a
/// pool it considered (or the pool set) changes. The pump takes one quote
/// at a time, so a slow client makes us compute less often, never buffer
/// more.
struct QuoteWatch {
    engine: Arc<QuoteEngine>,
    request: QuoteRequest,
    changes: broadcast::Receiver<PoolChange>,
    /// Pools the last quote's route search considered.
    considered: Vec<String>,
    /// The first quote, computed before the stream started.
    first: Option<super::engine::Quote>,
}

impl QuoteWatch {
    /// The next message: the first quote, then one per relevant change. A
    /// failed quote ends the stream with its error.
    async fn next(mut self) -> Option<(Result<pb::WatchQuoteResponse, Error>, Self)> {
        if let Some(first) = self.first.take() {
            let message = pb::WatchQuoteResponse {
                quote: Some(convert::quote_to_proto(&first)),
                changed_pool_id: String::new(),
            };
            return Some((Ok(message), self));
        }
        let mut trigger = loop {
            match self.changes.recv().await {
                Ok(PoolChange::Bins(id)) if !self.considered.contains(&id) => continue,
                Ok(change) => break change.pool_id().unwrap_or_default().to_string(),
                Err(broadcast::error::RecvError::Lagged(_)) => break String::new(),
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        };
        // Coalesce whatever else arrived meanwhile: one recompute, reported
        // as caused by a pool if any named one did.
        while let Ok(change) = self.changes.try_recv() {
            if trigger.is_empty() {
                trigger = change.pool_id().unwrap_or_default().to_string();
            }
        }
        match self.engine.quote(&self.request).await {
            Ok((quote, considered)) => {
                self.considered = considered;
                let message = pb::WatchQuoteResponse {
                    quote: Some(convert::quote_to_proto(&quote)),
                    changed_pool_id: trigger,
                };
                Some((Ok(message), self))
            }
            Err(e) => Some((Err(e.into()), self)),
        }
    }
}
