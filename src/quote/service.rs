//! gRPC handler of `openoes.quote.v1.QuoteService`: proto in, validated
//! domain request, engine or store, proto out.

use std::{sync::Arc, time::SystemTime};

use tokio::sync::{Semaphore, broadcast, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

use super::{
    changes::{self, PoolChange},
    engine::{DEFAULT_MAX_HOPS, MAX_HOPS_LIMIT, Quote, QuoteEngine, QuoteRequest, SwapMode},
    model::{self, Amount, Bin, BinInput, Pool, PoolInput},
    store::QuoteStore,
};
use crate::{
    config::StreamsConfig,
    error::{Error, FieldViolations},
    proto::quote::v1 as pb,
    redis::RedisEndpoint,
    streams::{ResponseStream, watch::WatchHub},
};

/// Most WatchQuote subscribers per process; each holds a task and a
/// broadcast receiver.
pub const MAX_QUOTE_WATCHERS: usize = 1024;
/// Most pools per ListPools page, and the default.
const MAX_PAGE_SIZE: usize = 1000;
const DEFAULT_PAGE_SIZE: usize = 100;

/// The QuoteService handler.
#[derive(Clone)]
pub struct QuoteApi {
    engine: Arc<QuoteEngine>,
    changes: broadcast::Sender<PoolChange>,
    watchers: Arc<Semaphore>,
}

impl QuoteApi {
    /// A handler over the quote data on `redis`; starts the change follower
    /// on `watches` (the same Redis), which stops when `stop` is cancelled.
    pub fn start(
        redis: RedisEndpoint,
        streams: &StreamsConfig,
        watches: WatchHub,
        stop: CancellationToken,
    ) -> Self {
        let engine = Arc::new(QuoteEngine::new(QuoteStore::new(redis, streams)));
        let (changes, _) = broadcast::channel(changes::BROADCAST_CAPACITY);
        tokio::spawn(changes::follow(
            watches,
            Arc::clone(&engine),
            changes.clone(),
            stop,
        ));
        Self {
            engine,
            changes,
            watchers: Arc::new(Semaphore::new(MAX_QUOTE_WATCHERS)),
        }
    }

    fn store(&self) -> &QuoteStore {
        self.engine.store()
    }
}

#[tonic::async_trait]
impl pb::quote_service_server::QuoteService for QuoteApi {
    async fn get_quote(
        &self,
        request: Request<pb::GetQuoteRequest>,
    ) -> Result<Response<pb::GetQuoteResponse>, Status> {
        let request = quote_request(request.into_inner())?;
        let (quote, _) = self.engine.quote(&request).await.map_err(Error::from)?;
        Ok(Response::new(pb::GetQuoteResponse {
            quote: Some(quote_to_proto(&quote)),
        }))
    }

    async fn list_pools(
        &self,
        request: Request<pb::ListPoolsRequest>,
    ) -> Result<Response<pb::ListPoolsResponse>, Status> {
        let r = request.into_inner();
        let mut v = FieldViolations::default();
        if !r.token.is_empty() {
            v.check_id("token", &r.token);
        }
        let page_size = page_size(&mut v, r.page_size);
        v.into_result()?;
        let token = (!r.token.is_empty()).then_some(r.token.as_str());
        let ids = self.store().pool_ids(token).await.map_err(Error::from)?;
        let mut page: Vec<String> = ids
            .into_iter()
            .filter(|id| r.page_token.is_empty() || *id > r.page_token)
            .collect();
        let more = page.len() > page_size;
        page.truncate(page_size);
        let next_page_token = if more {
            page.last().cloned().unwrap_or_default()
        } else {
            String::new()
        };
        let pools = self.store().pools(&page).await.map_err(Error::from)?;
        Ok(Response::new(pb::ListPoolsResponse {
            pools: pools.iter().map(pool_to_proto).collect(),
            next_page_token,
        }))
    }

    async fn get_pool(
        &self,
        request: Request<pb::GetPoolRequest>,
    ) -> Result<Response<pb::GetPoolResponse>, Status> {
        let r = request.into_inner();
        let mut v = FieldViolations::default();
        v.check_id("pool_id", &r.pool_id);
        v.into_result()?;
        let pool = self.pool(&r.pool_id).await?;
        let bins = if r.include_bins {
            self.store().bins(&r.pool_id).await.map_err(Error::from)?
        } else {
            Vec::new()
        };
        Ok(Response::new(pb::GetPoolResponse {
            pool: Some(pool_to_proto(&pool)),
            bins: bins.iter().map(bin_to_proto).collect(),
        }))
    }

    async fn upsert_pool(
        &self,
        request: Request<pb::UpsertPoolRequest>,
    ) -> Result<Response<pb::UpsertPoolResponse>, Status> {
        let r = request.into_inner();
        let Some(pool) = r.pool else {
            let mut v = FieldViolations::default();
            v.add("pool", "is required");
            return Err(Error::InvalidArgument(v).into());
        };
        let bins: Vec<BinInput> = r.bins.into_iter().map(bin_input).collect();
        let snapshot =
            model::validate_snapshot(&pool_input(pool), &bins).map_err(Error::InvalidArgument)?;
        let (_, bin_count) = self
            .store()
            .upsert_pool(&snapshot, r.replace_bins)
            .await
            .map_err(Error::from)?;
        // The follower will hear of it too; this makes our own next quote
        // see it without waiting for that.
        self.engine.invalidate_routes();
        let stored = self.pool(&snapshot.pool.pool_id).await?;
        Ok(Response::new(pb::UpsertPoolResponse {
            pool: Some(pool_to_proto(&stored)),
            bin_count,
        }))
    }

    async fn upsert_bins(
        &self,
        request: Request<pb::UpsertBinsRequest>,
    ) -> Result<Response<pb::UpsertBinsResponse>, Status> {
        let r = request.into_inner();
        let mut v = FieldViolations::default();
        v.check_id("pool_id", &r.pool_id);
        if r.bins.is_empty() && r.active_bin_id.is_none() {
            v.add("bins", "give at least one bin (or a new active_bin_id)");
        }
        v.into_result()?;
        let pool = self.pool(&r.pool_id).await?;
        let inputs: Vec<BinInput> = r.bins.into_iter().map(bin_input).collect();
        let bins = model::validate_bins_for(&pool, &inputs).map_err(Error::InvalidArgument)?;
        if let Some(active) = r.active_bin_id
            && super::math::bin_price(active, pool.bin_step).is_err()
        {
            let mut v = FieldViolations::default();
            v.add(
                "active_bin_id",
                "has no representable price at the pool's bin_step",
            );
            return Err(Error::InvalidArgument(v).into());
        }
        let written = self
            .store()
            .upsert_bins(&r.pool_id, &bins, r.active_bin_id)
            .await
            .map_err(Error::from)?;
        let Some((bins_written, bin_count)) = written else {
            return Err(not_found(&r.pool_id));
        };
        Ok(Response::new(pb::UpsertBinsResponse {
            bins_written,
            bin_count,
        }))
    }

    type WatchQuoteStream = ResponseStream<pb::WatchQuoteResponse>;

    async fn watch_quote(
        &self,
        request: Request<pb::WatchQuoteRequest>,
    ) -> Result<Response<Self::WatchQuoteStream>, Status> {
        let r = request.into_inner();
        let request = quote_request(pb::GetQuoteRequest {
            token_in: r.token_in,
            token_out: r.token_out,
            amount: r.amount,
            swap_mode: r.swap_mode,
            slippage_bps: r.slippage_bps,
            max_hops: r.max_hops,
            allow_partial_fill: r.allow_partial_fill,
        })?;
        let permit = Arc::clone(&self.watchers)
            .try_acquire_owned()
            .map_err(|_| Error::TooManySubscribers {
                limit: MAX_QUOTE_WATCHERS,
            })?;
        // Subscribe before the first quote so no change between them is missed.
        let mut changes = self.changes.subscribe();
        let (first, mut considered) = self.engine.quote(&request).await.map_err(Error::from)?;
        let engine = Arc::clone(&self.engine);
        // Capacity 1: only the latest quote matters; a slow client makes us
        // compute less often, never buffer more.
        let (tx, rx) = mpsc::channel(1);
        tokio::spawn(async move {
            let _permit = permit;
            let mut next = Ok(pb::WatchQuoteResponse {
                quote: Some(quote_to_proto(&first)),
                changed_pool_id: String::new(),
            });
            loop {
                let failed = next.is_err();
                if tx.send(next).await.is_err() || failed {
                    return; // client gone, or the stream ended with an error
                }
                let mut trigger = loop {
                    let change = tokio::select! {
                        _ = tx.closed() => return,
                        change = changes.recv() => change,
                    };
                    match change {
                        Ok(PoolChange::Bins(id)) if !considered.contains(&id) => continue,
                        Ok(change) => break change.pool_id().unwrap_or_default().to_string(),
                        Err(broadcast::error::RecvError::Lagged(_)) => break String::new(),
                        Err(broadcast::error::RecvError::Closed) => return,
                    }
                };
                // Coalesce whatever else arrived meanwhile: one recompute,
                // reported as caused by a pool if any named one did.
                while let Ok(change) = changes.try_recv() {
                    if trigger.is_empty() {
                        trigger = change.pool_id().unwrap_or_default().to_string();
                    }
                }
                next = match engine.quote(&request).await {
                    Ok((quote, pools)) => {
                        considered = pools;
                        Ok(pb::WatchQuoteResponse {
                            quote: Some(quote_to_proto(&quote)),
                            changed_pool_id: trigger,
                        })
                    }
                    Err(e) => Err(Status::from(Error::from(e))),
                };
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

impl QuoteApi {
    async fn pool(&self, id: &str) -> Result<Pool, Status> {
        let pools = self
            .store()
            .pools(&[id.to_string()])
            .await
            .map_err(Error::from)?;
        pools.into_iter().next().ok_or_else(|| not_found(id))
    }
}

fn not_found(id: &str) -> Status {
    Error::NotFound {
        resource: "pool",
        id: id.to_string(),
    }
    .into()
}

// === proto -> domain ===

fn quote_request(r: pb::GetQuoteRequest) -> Result<QuoteRequest, Error> {
    let mut v = FieldViolations::default();
    v.check_id("token_in", &r.token_in);
    v.check_id("token_out", &r.token_out);
    if !r.token_in.is_empty() && r.token_in == r.token_out {
        v.add("token_out", "must differ from token_in");
    }
    let amount = match model::parse_u64(&r.amount) {
        Ok(0) => {
            v.add("amount", "must be positive");
            0
        }
        Ok(a) => a,
        Err(e) => {
            v.add("amount", e);
            0
        }
    };
    let mode = match pb::SwapMode::try_from(r.swap_mode) {
        Ok(pb::SwapMode::Unspecified | pb::SwapMode::ExactIn) => SwapMode::ExactIn,
        Ok(pb::SwapMode::ExactOut) => SwapMode::ExactOut,
        Err(_) => {
            v.add("swap_mode", format!("unknown value {}", r.swap_mode));
            SwapMode::ExactIn
        }
    };
    if r.slippage_bps > 10_000 {
        v.add("slippage_bps", "must be at most 10000");
    }
    let max_hops = match r.max_hops {
        0 => DEFAULT_MAX_HOPS,
        n if n > MAX_HOPS_LIMIT => {
            v.add("max_hops", format!("must be at most {MAX_HOPS_LIMIT}"));
            n
        }
        n => n,
    };
    if r.allow_partial_fill && mode == SwapMode::ExactOut {
        v.add("allow_partial_fill", "applies to EXACT_IN only");
    }
    v.into_result()?;
    Ok(QuoteRequest {
        token_in: r.token_in,
        token_out: r.token_out,
        amount,
        mode,
        slippage_bps: r.slippage_bps,
        max_hops,
        allow_partial_fill: r.allow_partial_fill,
    })
}

fn page_size(v: &mut FieldViolations, requested: i32) -> usize {
    match requested {
        n if n < 0 => {
            v.add("page_size", "must not be negative");
            DEFAULT_PAGE_SIZE
        }
        0 => DEFAULT_PAGE_SIZE,
        n => (n as usize).min(MAX_PAGE_SIZE),
    }
}

fn pool_input(p: pb::Pool) -> PoolInput {
    PoolInput {
        pool_id: p.pool_id,
        token_x: p.token_x,
        token_y: p.token_y,
        bin_step: i64::from(p.bin_step),
        active_bin_id: i64::from(p.active_bin_id),
        base_factor: i64::from(p.base_factor),
        variable_fee_control: i64::from(p.variable_fee_control),
        max_volatility_accumulator: i64::from(p.max_volatility_accumulator),
        protocol_share_bps: i64::from(p.protocol_share_bps),
        status: (!p.status.is_empty()).then_some(p.status),
        token_x_decimals: p.token_x_decimals.map(i64::from),
        token_y_decimals: p.token_y_decimals.map(i64::from),
    }
}

fn bin_input(b: pb::Bin) -> BinInput {
    BinInput {
        bin_id: i64::from(b.bin_id),
        x_amount: Amount(b.x_amount),
        y_amount: Amount(b.y_amount),
        price: (!b.price.is_empty()).then_some(b.price),
    }
}

// === domain -> proto ===

fn timestamp_ms(ms: i64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: ms.div_euclid(1000),
        nanos: (ms.rem_euclid(1000) * 1_000_000) as i32,
    }
}

fn pool_to_proto(p: &Pool) -> pb::Pool {
    pb::Pool {
        pool_id: p.pool_id.clone(),
        token_x: p.token_x.clone(),
        token_y: p.token_y.clone(),
        bin_step: u32::from(p.bin_step),
        active_bin_id: p.active_bin_id,
        base_factor: u32::from(p.base_factor),
        variable_fee_control: p.variable_fee_control,
        max_volatility_accumulator: p.max_volatility_accumulator,
        protocol_share_bps: u32::from(p.protocol_share_bps),
        status: p.status.clone(),
        token_x_decimals: p.token_x_decimals.map(u32::from),
        token_y_decimals: p.token_y_decimals.map(u32::from),
        created_at: p.created_at.map(timestamp_ms),
        last_updated: p.last_updated.map(timestamp_ms),
    }
}

fn bin_to_proto(b: &Bin) -> pb::Bin {
    pb::Bin {
        bin_id: b.bin_id,
        x_amount: b.x_amount.to_string(),
        y_amount: b.y_amount.to_string(),
        price: b.price.clone(),
    }
}

fn quote_to_proto(q: &Quote) -> pb::Quote {
    let first = q.hops.first();
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    pb::Quote {
        swap_mode: match q.request.mode {
            SwapMode::ExactIn => pb::SwapMode::ExactIn,
            SwapMode::ExactOut => pb::SwapMode::ExactOut,
        } as i32,
        token_in: q.request.token_in.clone(),
        token_out: q.request.token_out.clone(),
        amount_in: q.amount_in.to_string(),
        amount_out: q.amount_out.to_string(),
        min_amount_out: q.min_amount_out.map(|a| a.to_string()).unwrap_or_default(),
        max_amount_in: q.max_amount_in.map(|a| a.to_string()).unwrap_or_default(),
        total_fee: first
            .map(|h| h.fill.total_fee)
            .unwrap_or_default()
            .to_string(),
        protocol_fee: first
            .map(|h| h.fill.protocol_fee)
            .unwrap_or_default()
            .to_string(),
        lp_fee: first
            .map(|h| h.fill.lp_fee())
            .unwrap_or_default()
            .to_string(),
        price_impact: q.price_impact.clone(),
        partial_fill: q.partial_fill,
        hops: q
            .hops
            .iter()
            .map(|h| pb::QuoteHop {
                pool_id: h.pool_id.clone(),
                token_in: h.token_in.clone(),
                token_out: h.token_out.clone(),
                amount_in: h.fill.amount_in.to_string(),
                amount_out: h.fill.amount_out.to_string(),
                total_fee: h.fill.total_fee.to_string(),
                protocol_fee: h.fill.protocol_fee.to_string(),
                lp_fee: h.fill.lp_fee().to_string(),
                bins: h
                    .fill
                    .bins
                    .iter()
                    .map(|b| pb::BinFill {
                        bin_id: b.bin_id,
                        amount_in: b.amount_in.to_string(),
                        amount_out: b.amount_out.to_string(),
                        fee: b.fee.to_string(),
                        protocol_fee: b.protocol_fee.to_string(),
                        fee_rate: b.fee_rate,
                    })
                    .collect(),
            })
            .collect(),
        quoted_at: Some(prost_types::Timestamp {
            seconds: now.as_secs() as i64,
            nanos: now.subsec_nanos() as i32,
        }),
    }
}
