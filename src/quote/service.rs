//! gRPC handler of `openoes.quote.v1.QuoteService`.
//!
//! Not built yet: every RPC answers UNIMPLEMENTED (reason NOT_IMPLEMENTED)
//! and README.md's status table says so.

use tonic::{Request, Response, Status};

use crate::{
    error::Error,
    proto::quote::v1::{
        GetPoolRequest, GetPoolResponse, GetQuoteRequest, GetQuoteResponse, ListPoolsRequest,
        ListPoolsResponse, UpsertBinsRequest, UpsertBinsResponse, UpsertPoolRequest,
        UpsertPoolResponse, WatchQuoteRequest, WatchQuoteResponse,
        quote_service_server::QuoteService,
    },
    streams::ResponseStream,
};

/// The QuoteService handler.
#[derive(Debug, Default, Clone)]
pub struct QuoteApi;

#[tonic::async_trait]
impl QuoteService for QuoteApi {
    async fn get_quote(
        &self,
        _: Request<GetQuoteRequest>,
    ) -> Result<Response<GetQuoteResponse>, Status> {
        Err(Error::unimplemented("openoes.quote.v1.QuoteService/GetQuote").into())
    }

    async fn list_pools(
        &self,
        _: Request<ListPoolsRequest>,
    ) -> Result<Response<ListPoolsResponse>, Status> {
        Err(Error::unimplemented("openoes.quote.v1.QuoteService/ListPools").into())
    }

    async fn get_pool(
        &self,
        _: Request<GetPoolRequest>,
    ) -> Result<Response<GetPoolResponse>, Status> {
        Err(Error::unimplemented("openoes.quote.v1.QuoteService/GetPool").into())
    }

    async fn upsert_pool(
        &self,
        _: Request<UpsertPoolRequest>,
    ) -> Result<Response<UpsertPoolResponse>, Status> {
        Err(Error::unimplemented("openoes.quote.v1.QuoteService/UpsertPool").into())
    }

    async fn upsert_bins(
        &self,
        _: Request<UpsertBinsRequest>,
    ) -> Result<Response<UpsertBinsResponse>, Status> {
        Err(Error::unimplemented("openoes.quote.v1.QuoteService/UpsertBins").into())
    }

    type WatchQuoteStream = ResponseStream<WatchQuoteResponse>;

    async fn watch_quote(
        &self,
        _: Request<WatchQuoteRequest>,
    ) -> Result<Response<Self::WatchQuoteStream>, Status> {
        Err(Error::unimplemented("openoes.quote.v1.QuoteService/WatchQuote").into())
    }
}
