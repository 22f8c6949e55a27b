//! gRPC handler of `openoes.pledge.v1.PledgeService`.
//!
//! Not built yet: every RPC answers UNIMPLEMENTED (reason NOT_IMPLEMENTED)
//! and README.md's status table says so.

use tonic::{Request, Response, Status};

use crate::{
    proto::pledge::v1::{
        CreatePledgeRequest, CreatePledgeResponse, GetPledgeRequest, GetPledgeResponse,
        GetVaultBalanceRequest, GetVaultBalanceResponse, ListPledgesRequest, ListPledgesResponse,
        RecordDepositRequest, RecordDepositResponse, ReleasePledgeRequest, ReleasePledgeResponse,
        WatchPledgeEventsRequest, WatchPledgeEventsResponse, pledge_service_server::PledgeService,
    },
    server::unimplemented,
    streams::ResponseStream,
};

/// The PledgeService handler.
#[derive(Debug, Default, Clone)]
pub struct PledgeApi;

#[tonic::async_trait]
impl PledgeService for PledgeApi {
    async fn record_deposit(
        &self,
        request: Request<RecordDepositRequest>,
    ) -> Result<Response<RecordDepositResponse>, Status> {
        Err(unimplemented(&request))
    }

    async fn get_vault_balance(
        &self,
        request: Request<GetVaultBalanceRequest>,
    ) -> Result<Response<GetVaultBalanceResponse>, Status> {
        Err(unimplemented(&request))
    }

    async fn create_pledge(
        &self,
        request: Request<CreatePledgeRequest>,
    ) -> Result<Response<CreatePledgeResponse>, Status> {
        Err(unimplemented(&request))
    }

    async fn release_pledge(
        &self,
        request: Request<ReleasePledgeRequest>,
    ) -> Result<Response<ReleasePledgeResponse>, Status> {
        Err(unimplemented(&request))
    }

    async fn get_pledge(
        &self,
        request: Request<GetPledgeRequest>,
    ) -> Result<Response<GetPledgeResponse>, Status> {
        Err(unimplemented(&request))
    }

    async fn list_pledges(
        &self,
        request: Request<ListPledgesRequest>,
    ) -> Result<Response<ListPledgesResponse>, Status> {
        Err(unimplemented(&request))
    }

    type WatchPledgeEventsStream = ResponseStream<WatchPledgeEventsResponse>;

    async fn watch_pledge_events(
        &self,
        request: Request<WatchPledgeEventsRequest>,
    ) -> Result<Response<Self::WatchPledgeEventsStream>, Status> {
        Err(unimplemented(&request))
    }
}
