//! gRPC handler of `openoes.settlement.v1.SettlementService`: validate
//! ([`convert`](super::convert)), the role's store, proto out.
//!
//! Which role serves what: SubmitSettlementReport and CloseSettlementCycle
//! need the exchange role; ConfirmSettlement and DisputeSettlement the WSP
//! role; the reads and WatchSettlements work on M when this gateway serves
//! the WSP role and on R otherwise.

use futures_util::StreamExt;
use tonic::{Request, Response, Status};

use super::{
    convert,
    cycle::{self, Keys, TreeCache},
    error::SettlementError,
    exchange::Exchange,
    keys,
    model::{ReportStatus, SettlementEvent},
    store::{Decision, SettlementStore, SettlementView},
    wsp,
};
use crate::{
    crypto::merkle,
    error::{ErrorChain, NotFound, rpc},
    proto::settlement::v1::{self as pb, settlement_service_server::SettlementService},
    server::{RoleSlot, layers::Call},
    streams::{Pump, ResponseStream, watch::WatchHub},
    validate::require_id,
};

/// The SettlementService handler.
#[derive(Clone)]
pub struct SettlementApi {
    pub(super) wsp: RoleSlot<SettlementStore>,
    pub(super) exchange: RoleSlot<Exchange>,
    /// Reads: on M if this gateway is the WSP, else on R.
    pub(super) view: SettlementView,
    /// The event log's fan-out, on the same Redis as `view`.
    pub(super) events: WatchHub,
    pub(super) watch_pump: Pump,
    pub(super) keys: Keys,
    pub(super) trees: TreeCache,
}

impl SettlementApi {
    /// Records a verdict and, if it was the cycle's last, countersigns.
    async fn decide(
        &self,
        store: &SettlementStore,
        report_id: &str,
        decision: &Decision,
    ) -> Result<pb::SettlementReport, SettlementError> {
        let decided = store.decide(report_id, decision).await?;
        if decided.cosign_due
            && let Some(cycle_id) = decided.record.report.as_ref().map(|r| r.cycle_id.clone())
            && let Err(e) = wsp::cosign(store, self.keys.wsp.as_deref(), &cycle_id).await
        {
            // The verdict stands; the sweeper countersigns later.
            tracing::warn!(%cycle_id, error = %ErrorChain(&e), "countersignature deferred");
        }
        Ok(convert::report_to_proto(&decided.record))
    }
}

#[tonic::async_trait]
impl SettlementService for SettlementApi {
    async fn submit_settlement_report(
        &self,
        request: Request<pb::SubmitSettlementReportRequest>,
    ) -> Result<Response<pb::SubmitSettlementReportResponse>, Status> {
        rpc(async move {
            let exchange = self.exchange.get(&request)?;
            // What the call may wait: what it asked, cut to the configured
            // maximum and to 80% of its time, so PENDING arrives in time.
            let limit = Call::of(&request).limit;
            let (report, asked) = convert::submit(request.into_inner())?;
            let wait = asked.min(exchange.max_wait()).min(limit - limit / 5);
            let (record, delivery) = exchange.submit(&report, wait).await?;
            Ok(pb::SubmitSettlementReportResponse {
                report: Some(convert::report_to_proto(&record)),
                delivery: convert::delivery_to_proto(delivery),
            })
        })
        .await
    }

    async fn confirm_settlement(
        &self,
        request: Request<pb::ConfirmSettlementRequest>,
    ) -> Result<Response<pb::ConfirmSettlementResponse>, Status> {
        rpc(async move {
            let store = self.wsp.get(&request)?;
            let (report_id, decision) = convert::confirm(request.into_inner())?;
            let report = self.decide(store, &report_id, &decision).await?;
            Ok(pb::ConfirmSettlementResponse {
                report: Some(report),
            })
        })
        .await
    }

    async fn dispute_settlement(
        &self,
        request: Request<pb::DisputeSettlementRequest>,
    ) -> Result<Response<pb::DisputeSettlementResponse>, Status> {
        rpc(async move {
            let store = self.wsp.get(&request)?;
            let (report_id, lines, reason) = convert::dispute(request.into_inner())?;
            let record = store.view().report(&report_id).await?;
            let record = record.ok_or_else(|| NotFound::new("settlement report", &report_id))?;
            if let Some(report) = &record.report {
                convert::lines_in_report(&lines, report)?;
            }
            let report = self
                .decide(store, &report_id, &Decision::Dispute(lines, reason))
                .await?;
            Ok(pb::DisputeSettlementResponse {
                report: Some(report),
            })
        })
        .await
    }

    async fn get_settlement_report(
        &self,
        request: Request<pb::GetSettlementReportRequest>,
    ) -> Result<Response<pb::GetSettlementReportResponse>, Status> {
        rpc(async move {
            let r = request.into_inner();
            require_id("report_id", &r.report_id)?;
            let mut record = self.view.report(&r.report_id).await?;
            if record.is_none()
                && let Some(exchange) = self.exchange.served()
            {
                record = exchange.published(&r.report_id).await?;
            }
            let record = record.ok_or_else(|| NotFound::new("settlement report", &r.report_id))?;
            Ok(pb::GetSettlementReportResponse {
                report: Some(convert::report_to_proto(&record)),
            })
        })
        .await
    }

    async fn list_settlement_reports(
        &self,
        request: Request<pb::ListSettlementReportsRequest>,
    ) -> Result<Response<pb::ListSettlementReportsResponse>, Status> {
        rpc(async move {
            let r = request.into_inner();
            let (filter, after, size) = convert::list(&r)?;
            let (page, next) = self.view.list(&filter, after, size).await?;
            Ok(pb::ListSettlementReportsResponse {
                reports: page.iter().map(convert::report_to_proto).collect(),
                next_page_token: crate::redis::page::format_token(next),
            })
        })
        .await
    }

    type WatchSettlementsStream = ResponseStream<pb::WatchSettlementsResponse>;

    async fn watch_settlements(
        &self,
        request: Request<pb::WatchSettlementsRequest>,
    ) -> Result<Response<Self::WatchSettlementsStream>, Status> {
        rpc(async move {
            let (cursor, filter) = convert::watch(request.into_inner())?;
            let slot = self.watch_pump.reserve()?;
            let events = self
                .events
                .subscribe(keys::EVENTS_STREAM, &cursor, filter)
                .await?;
            let source = events.map(|next| {
                let entry = next?;
                Ok(pb::WatchSettlementsResponse {
                    event: Some(convert::event_to_proto(&SettlementEvent::parse(&entry))),
                })
            });
            Ok(slot.serve(source))
        })
        .await
    }

    async fn close_settlement_cycle(
        &self,
        request: Request<pb::CloseSettlementCycleRequest>,
    ) -> Result<Response<pb::CloseSettlementCycleResponse>, Status> {
        rpc(async move {
            let exchange = self.exchange.get(&request)?;
            let limit = Call::of(&request).limit;
            let (cycle_id, asked) = convert::close(request.into_inner())?;
            let wait = asked.min(exchange.max_wait()).min(limit - limit / 5);
            let (cycle, delivery) = exchange.close(&cycle_id, wait).await?;
            Ok(pb::CloseSettlementCycleResponse {
                cycle: Some(convert::cycle_to_proto(&cycle)),
                delivery: convert::delivery_to_proto(delivery),
            })
        })
        .await
    }

    async fn get_settlement_cycle(
        &self,
        request: Request<pb::GetSettlementCycleRequest>,
    ) -> Result<Response<pb::GetSettlementCycleResponse>, Status> {
        rpc(async move {
            let r = request.into_inner();
            require_id("cycle_id", &r.cycle_id)?;
            let cycle = self.view.cycle(&r.cycle_id).await?;
            let cycle = cycle.ok_or_else(|| NotFound::new("settlement cycle", &r.cycle_id))?;
            Ok(pb::GetSettlementCycleResponse {
                cycle: Some(convert::cycle_to_proto(&cycle)),
            })
        })
        .await
    }

    async fn get_settlement_proof(
        &self,
        request: Request<pb::GetSettlementProofRequest>,
    ) -> Result<Response<pb::GetSettlementProofResponse>, Status> {
        rpc(async move {
            let r = request.into_inner();
            require_id("report_id", &r.report_id)?;
            let record = self.view.report(&r.report_id).await?;
            let record = record.ok_or_else(|| NotFound::new("settlement report", &r.report_id))?;
            let report = match (&record.report, record.status) {
                (Some(report), status) if status != ReportStatus::Refused => report,
                _ => {
                    return Err(SettlementError::NotConfirmable {
                        report: r.report_id,
                        status: record.status.as_str(),
                    }
                    .into());
                }
            };
            let cycle = self
                .view
                .cycle(&report.cycle_id)
                .await?
                .filter(|c| {
                    matches!(
                        c.status,
                        super::model::CycleStatus::Verified | super::model::CycleStatus::Cosigned
                    )
                })
                .ok_or_else(|| SettlementError::CycleNotClosed(report.cycle_id.clone()))?;
            let root = cycle.root.unwrap_or_default();
            let tree = match self.trees.get(&cycle.cycle_id, &root) {
                Some(tree) => tree,
                None => {
                    let leaves = self.view.leaves(&cycle.cycle_id).await?;
                    let leaves = leaves
                        .ok_or_else(|| SettlementError::CycleNotClosed(cycle.cycle_id.clone()))?;
                    self.trees.build(&cycle.cycle_id, &root, leaves)
                }
            };
            let leaf = report.leaf(&record.salt);
            let leaf_hash = merkle::leaf_hash(&leaf);
            let proof =
                cycle::prove(&tree.1, &tree.0, &leaf_hash, &cycle.checkpoint).ok_or_else(|| {
                    SettlementError::Corrupt {
                        key: keys::leaves(&cycle.cycle_id),
                        reason: format!("report {} is not in its cycle's tree", r.report_id),
                    }
                })?;
            Ok(pb::GetSettlementProofResponse {
                proof: Some(convert::proof_to_proto(
                    &record, &cycle, leaf, leaf_hash, proof,
                )),
            })
        })
        .await
    }

    async fn get_signing_keys(
        &self,
        _request: Request<pb::GetSigningKeysRequest>,
    ) -> Result<Response<pb::GetSigningKeysResponse>, Status> {
        rpc(async move {
            let keys = [
                ("exchange", &self.keys.exchange_verifier),
                ("wsp", &self.keys.wsp_verifier),
            ]
            .into_iter()
            .filter_map(|(role, verifier)| {
                verifier.as_ref().map(|v| pb::SigningKey {
                    name: v.name().to_string(),
                    vkey: v.to_string(),
                    role: role.to_string(),
                })
            })
            .collect();
            Ok(pb::GetSigningKeysResponse { keys })
        })
        .await
    }
}
