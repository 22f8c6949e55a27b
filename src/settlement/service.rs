//! gRPC handler of `openoes.settlement.v1.SettlementService`.
//!
//! Not built yet: every RPC answers UNIMPLEMENTED (reason NOT_IMPLEMENTED)
//! and README.md's status table says so.

use tonic::{Request, Response, Status};

use crate::{
    proto::settlement::v1::{
        ConfirmSettlementRequest, ConfirmSettlementResponse, DisputeSettlementRequest,
        DisputeSettlementResponse, GetSettlementReportRequest, GetSettlementReportResponse,
        ListSettlementReportsRequest, ListSettlementReportsResponse, SubmitSettlementReportRequest,
        SubmitSettlementReportResponse, WatchSettlementsRequest, WatchSettlementsResponse,
        settlement_service_server::SettlementService,
    },
    server::unimplemented,
    streams::ResponseStream,
};

/// The SettlementService handler.
#[derive(Debug, Default, Clone)]
pub struct SettlementApi;

#[tonic::async_trait]
impl SettlementService for SettlementApi {
    async fn submit_settlement_report(
        &self,
        request: Request<SubmitSettlementReportRequest>,
    ) -> Result<Response<SubmitSettlementReportResponse>, Status> {
        Err(unimplemented(&request))
    }

    async fn confirm_settlement(
        &self,
        request: Request<ConfirmSettlementRequest>,
    ) -> Result<Response<ConfirmSettlementResponse>, Status> {
        Err(unimplemented(&request))
    }

    async fn dispute_settlement(
        &self,
        request: Request<DisputeSettlementRequest>,
    ) -> Result<Response<DisputeSettlementResponse>, Status> {
        Err(unimplemented(&request))
    }

    async fn get_settlement_report(
        &self,
        request: Request<GetSettlementReportRequest>,
    ) -> Result<Response<GetSettlementReportResponse>, Status> {
        Err(unimplemented(&request))
    }

    async fn list_settlement_reports(
        &self,
        request: Request<ListSettlementReportsRequest>,
    ) -> Result<Response<ListSettlementReportsResponse>, Status> {
        Err(unimplemented(&request))
    }

    type WatchSettlementsStream = ResponseStream<WatchSettlementsResponse>;

    async fn watch_settlements(
        &self,
        request: Request<WatchSettlementsRequest>,
    ) -> Result<Response<Self::WatchSettlementsStream>, Status> {
        Err(unimplemented(&request))
    }
}
