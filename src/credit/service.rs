//! gRPC handler of `openoes.credit.v1.CreditService`.
//!
//! Not built yet: every RPC answers UNIMPLEMENTED (reason NOT_IMPLEMENTED)
//! and README.md's status table says so.

use tonic::{Request, Response, Status};

use crate::{
    error::Error,
    proto::credit::v1::{
        GetCreditInventoryRequest, GetCreditInventoryResponse, GetCreditRequestRequest,
        GetCreditRequestResponse, ListCreditInventoryRequest, ListCreditInventoryResponse,
        RequestCreditRequest, RequestCreditResponse, RespondToCreditRequestRequest,
        RespondToCreditRequestResponse, SubscribeCreditRequestsRequest,
        SubscribeCreditRequestsResponse, WatchCreditEventsRequest, WatchCreditEventsResponse,
        credit_service_server::CreditService,
    },
    streams::ResponseStream,
};

/// The CreditService handler.
#[derive(Debug, Default, Clone)]
pub struct CreditApi;

#[tonic::async_trait]
impl CreditService for CreditApi {
    async fn request_credit(
        &self,
        _: Request<RequestCreditRequest>,
    ) -> Result<Response<RequestCreditResponse>, Status> {
        Err(Error::unimplemented("openoes.credit.v1.CreditService/RequestCredit").into())
    }

    async fn get_credit_request(
        &self,
        _: Request<GetCreditRequestRequest>,
    ) -> Result<Response<GetCreditRequestResponse>, Status> {
        Err(Error::unimplemented("openoes.credit.v1.CreditService/GetCreditRequest").into())
    }

    async fn get_credit_inventory(
        &self,
        _: Request<GetCreditInventoryRequest>,
    ) -> Result<Response<GetCreditInventoryResponse>, Status> {
        Err(Error::unimplemented("openoes.credit.v1.CreditService/GetCreditInventory").into())
    }

    async fn list_credit_inventory(
        &self,
        _: Request<ListCreditInventoryRequest>,
    ) -> Result<Response<ListCreditInventoryResponse>, Status> {
        Err(Error::unimplemented("openoes.credit.v1.CreditService/ListCreditInventory").into())
    }

    type SubscribeCreditRequestsStream = ResponseStream<SubscribeCreditRequestsResponse>;

    async fn subscribe_credit_requests(
        &self,
        _: Request<SubscribeCreditRequestsRequest>,
    ) -> Result<Response<Self::SubscribeCreditRequestsStream>, Status> {
        Err(Error::unimplemented("openoes.credit.v1.CreditService/SubscribeCreditRequests").into())
    }

    async fn respond_to_credit_request(
        &self,
        _: Request<RespondToCreditRequestRequest>,
    ) -> Result<Response<RespondToCreditRequestResponse>, Status> {
        Err(Error::unimplemented("openoes.credit.v1.CreditService/RespondToCreditRequest").into())
    }

    type WatchCreditEventsStream = ResponseStream<WatchCreditEventsResponse>;

    async fn watch_credit_events(
        &self,
        _: Request<WatchCreditEventsRequest>,
    ) -> Result<Response<Self::WatchCreditEventsStream>, Status> {
        Err(Error::unimplemented("openoes.credit.v1.CreditService/WatchCreditEvents").into())
    }
}
