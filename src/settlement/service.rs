//! gRPC handler of `openoes.settlement.v1.SettlementService`.
//!
//! Not built yet: every RPC answers UNIMPLEMENTED (reason NOT_IMPLEMENTED)
//! and README.md's status table says so.

use tonic::{Request, Response, Status};

use crate::{
    error::Error,
    proto::settlement::v1::{
        ConfirmSettlementRequest, ConfirmSettlementResponse, DisputeSettlementRequest,
        DisputeSettlementResponse, GetSettlementReportRequest, GetSettlementReportResponse,
        ListSettlementReportsRequest, ListSettlementReportsResponse, SubmitSettlementReportRequest,
        SubmitSettlementReportResponse, WatchSettlementsRequest, WatchSettlementsResponse,
        settlement_service_server::SettlementService,
    },
    streams::ResponseStream,
};

/// The SettlementService handler.
#[derive(Debug, Default, Clone)]
pub struct SettlementApi;

#[tonic::async_trait]
impl SettlementService for SettlementApi {
    async fn submit_settlement_report(
        &self,
        _: Request<SubmitSettlementReportRequest>,
    ) -> Result<Response<SubmitSettlementReportResponse>, Status> {
        Err(
            Error::unimplemented("openoes.settlement.v1.SettlementService/SubmitSettlementReport")
                .into(),
        )
    }

    async fn confirm_settlement(
        &self,
        _: Request<ConfirmSettlementRequest>,
    ) -> Result<Response<ConfirmSettlementResponse>, Status> {
        Err(
            Error::unimplemented("openoes.settlement.v1.SettlementService/ConfirmSettlement")
                .into(),
        )
    }

    async fn dispute_settlement(
        &self,
        _: Request<DisputeSettlementRequest>,
    ) -> Result<Response<DisputeSettlementResponse>, Status> {
        Err(
            Error::unimplemented("openoes.settlement.v1.SettlementService/DisputeSettlement")
                .into(),
        )
    }

    async fn get_settlement_report(
        &self,
        _: Request<GetSettlementReportRequest>,
    ) -> Result<Response<GetSettlementReportResponse>, Status> {
        Err(
            Error::unimplemented("openoes.settlement.v1.SettlementService/GetSettlementReport")
                .into(),
        )
    }

    async fn list_settlement_reports(
        &self,
        _: Request<ListSettlementReportsRequest>,
    ) -> Result<Response<ListSettlementReportsResponse>, Status> {
        Err(
            Error::unimplemented("openoes.settlement.v1.SettlementService/ListSettlementReports")
                .into(),
        )
    }

    type WatchSettlementsStream = ResponseStream<WatchSettlementsResponse>;

    async fn watch_settlements(
        &self,
        _: Request<WatchSettlementsRequest>,
    ) -> Result<Response<Self::WatchSettlementsStream>, Status> {
        Err(Error::unimplemented("openoes.settlement.v1.SettlementService/WatchSettlements").into())
    }
}
