//! gRPC handler of `openoes.pledge.v1.PledgeService`.
//!
//! Not built yet: every RPC answers UNIMPLEMENTED (reason NOT_IMPLEMENTED)
//! and README.md's status table says so.

use tonic::{Request, Response, Status};

use crate::{
    error::Error,
    proto::pledge::v1::{
        CreatePledgeRequest, CreatePledgeResponse, GetPledgeRequest, GetPledgeResponse,
        GetVaultBalanceRequest, GetVaultBalanceResponse, ListPledgesRequest, ListPledgesResponse,
        RecordDepositRequest, RecordDepositResponse, ReleasePledgeRequest, ReleasePledgeResponse,
        WatchPledgeEventsRequest, WatchPledgeEventsResponse, pledge_service_server::PledgeService,
    },
    streams::ResponseStream,
};

/// The PledgeService handler.
#[derive(Debug, Default, Clone)]
pub struct PledgeApi;

#[tonic::async_trait]
impl PledgeService for PledgeApi {
    async fn record_deposit(
        &self,
        _: Request<RecordDepositRequest>,
    ) -> Result<Response<RecordDepositResponse>, Status> {
        Err(Error::unimplemented("openoes.pledge.v1.PledgeService/RecordDeposit").into())
    }

    async fn get_vault_balance(
        &self,
        _: Request<GetVaultBalanceRequest>,
    ) -> Result<Response<GetVaultBalanceResponse>, Status> {
        Err(Error::unimplemented("openoes.pledge.v1.PledgeService/GetVaultBalance").into())
    }

    async fn create_pledge(
        &self,
        _: Request<CreatePledgeRequest>,
    ) -> Result<Response<CreatePledgeResponse>, Status> {
        Err(Error::unimplemented("openoes.pledge.v1.PledgeService/CreatePledge").into())
    }

    async fn release_pledge(
        &self,
        _: Request<ReleasePledgeRequest>,
    ) -> Result<Response<ReleasePledgeResponse>, Status> {
        Err(Error::unimplemented("openoes.pledge.v1.PledgeService/ReleasePledge").into())
    }

    async fn get_pledge(
        &self,
        _: Request<GetPledgeRequest>,
    ) -> Result<Response<GetPledgeResponse>, Status> {
        Err(Error::unimplemented("openoes.pledge.v1.PledgeService/GetPledge").into())
    }

    async fn list_pledges(
        &self,
        _: Request<ListPledgesRequest>,
    ) -> Result<Response<ListPledgesResponse>, Status> {
        Err(Error::unimplemented("openoes.pledge.v1.PledgeService/ListPledges").into())
    }

    type WatchPledgeEventsStream = ResponseStream<WatchPledgeEventsResponse>;

    async fn watch_pledge_events(
        &self,
        _: Request<WatchPledgeEventsRequest>,
    ) -> Result<Response<Self::WatchPledgeEventsStream>, Status> {
        Err(Error::unimplemented("openoes.pledge.v1.PledgeService/WatchPledgeEvents").into())
    }
}
