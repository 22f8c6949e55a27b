//! gRPC handler of `openoes.credit.v1.CreditService`: validate
//! ([`convert`](super::convert)), the role's store, proto out.
//!
//! Which role serves what: RequestCredit needs the WSP role;
//! SubscribeCreditRequests and RespondToCreditRequest need the exchange
//! role; the reads and WatchCreditEvents work on M when this gateway serves
//! the WSP role and on R otherwise. An RPC of a role not served answers
//! UNIMPLEMENTED (reason ROLE_NOT_SERVED).

use std::time::Duration;

use futures_util::StreamExt;
use tonic::{Request, Response, Status};

use super::{
    convert::{self, Resolution},
    error::CreditError,
    exchange::Exchange,
    keys,
    model::CreditEvent,
    store::{CreditStore, CreditView},
};
use crate::{
    error::{Error, NotFound, rpc},
    proto::credit::v1::{self as pb, credit_service_server::CreditService},
    server::{RoleSlot, layers::Call},
    streams::{Pump, ResponseStream, waiters::Waiters, watch::WatchHub},
    validate::require_id,
};

/// The CreditService handler.
#[derive(Clone)]
pub struct CreditApi {
    pub(super) wsp: RoleSlot<WspRole>,
    pub(super) exchange: RoleSlot<Exchange>,
    /// Reads: on M if this gateway is the WSP, else on R.
    pub(super) view: CreditView,
    /// The event log's fan-out, on the same Redis as `view`.
    pub(super) events: WatchHub,
    pub(super) watch_pump: Pump,
    pub(super) group_pump: Pump,
}

/// The WSP role's state.
#[derive(Clone)]
pub(super) struct WspRole {
    pub(super) store: CreditStore,
    pub(super) waiters: Waiters,
    pub(super) max_wait: Duration,
}

#[tonic::async_trait]
impl CreditService for CreditApi {
    async fn request_credit(
        &self,
        request: Request<pb::RequestCreditRequest>,
    ) -> Result<Response<pb::RequestCreditResponse>, Status> {
        rpc(async move {
            let wsp = self.wsp.get(&request)?;
            // What the call may wait: what it asked, cut to the configured
            // maximum and to 80% of its time, so PENDING arrives in time.
            let limit = Call::of(&request).limit;
            let (new, asked) = convert::new_request(request.into_inner())?;
            let wait = asked.min(wsp.max_wait).min(limit - limit / 5);
            // Registered before the request is written: the decision
            // cannot slip by between the write and the wait.
            let waiter = (!wait.is_zero())
                .then(|| wsp.waiters.register(&new.request_id))
                .transpose()?;
            let mut record = wsp.store.request(&new).await?.into_record();
            if let Some(mut waiter) = waiter
                && !record.status.is_final()
            {
                // On timeout, read anyway: the follower may have missed it
                // (e.g. while reconnecting), the record never does.
                let _ = tokio::time::timeout(wait, waiter.woken()).await;
                if let Some(now) = wsp.store.record(&new.request_id).await? {
                    record = now;
                }
            }
            Ok(pb::RequestCreditResponse {
                credit_request: Some(convert::request_to_proto(&record)),
            })
        })
        .await
    }

    async fn get_credit_request(
        &self,
        request: Request<pb::GetCreditRequestRequest>,
    ) -> Result<Response<pb::GetCreditRequestResponse>, Status> {
        rpc(async move {
            let r = request.into_inner();
            require_id("request_id", &r.request_id)?;
            let record = self.view.request(&r.request_id).await?;
            let record = record.ok_or_else(|| NotFound::new("credit request", r.request_id))?;
            Ok(pb::GetCreditRequestResponse {
                credit_request: Some(convert::request_to_proto(&record)),
            })
        })
        .await
    }

    async fn get_credit_inventory(
        &self,
        request: Request<pb::GetCreditInventoryRequest>,
    ) -> Result<Response<pb::GetCreditInventoryResponse>, Status> {
        rpc(async move {
            let r = request.into_inner();
            convert::user_asset(&r.user_id, &r.asset)?;
            let found = self.view.inventory(&r.user_id, &r.asset).await?;
            let inventory = found.ok_or_else(|| {
                NotFound::new("credit inventory", format!("{}/{}", r.user_id, r.asset))
            })?;
            Ok(pb::GetCreditInventoryResponse {
                credit_inventory: Some(convert::inventory_to_proto(&inventory)),
            })
        })
        .await
    }

    async fn list_credit_inventory(
        &self,
        request: Request<pb::ListCreditInventoryRequest>,
    ) -> Result<Response<pb::ListCreditInventoryResponse>, Status> {
        rpc(async move {
            let r = request.into_inner();
            let size = convert::inventory_page(&r)?;
            let (page, more) = self
                .view
                .inventories(&r.user_id, &r.page_token, size)
                .await?;
            let next_page_token = match page.last() {
                Some(last) if more => last.asset.clone(),
                _ => String::new(),
            };
            Ok(pb::ListCreditInventoryResponse {
                credit_inventories: page.iter().map(convert::inventory_to_proto).collect(),
                next_page_token,
            })
        })
        .await
    }

    type SubscribeCreditRequestsStream = ResponseStream<pb::SubscribeCreditRequestsResponse>;

    async fn subscribe_credit_requests(
        &self,
        request: Request<pb::SubscribeCreditRequestsRequest>,
    ) -> Result<Response<Self::SubscribeCreditRequestsStream>, Status> {
        rpc(async move {
            let exchange = self.exchange.get(&request)?.clone();
            let (group, consumer) = convert::subscription(request.into_inner(), exchange.groups())?;
            let slot = self.group_pump.reserve()?;
            let deliveries = exchange.subscribe(&group, consumer.as_deref())?;
            // Each delivery is screened first; what passes goes to the
            // backend. A screening error ends the stream: the delivery stays
            // pending on this consumer (a reconnect with the same name gets
            // it first; otherwise another subscriber reclaims it).
            let source = deliveries
                .then(move |next| {
                    let (exchange, group) = (exchange.clone(), group.clone());
                    async move {
                        let delivery = next?;
                        let screened = exchange.screen(&group, &delivery).await?;
                        Ok::<_, Error>(screened.map(|record| pb::SubscribeCreditRequestsResponse {
                            credit_request: Some(convert::request_to_proto(&record)),
                            delivery_id: delivery.id.to_string(),
                            delivery_count: delivery.delivery_count.try_into().unwrap_or(u32::MAX),
                        }))
                    }
                })
                .filter_map(|screened| async move { screened.transpose() });
            Ok(slot.serve(source))
        })
        .await
    }

    async fn respond_to_credit_request(
        &self,
        request: Request<pb::RespondToCreditRequestRequest>,
    ) -> Result<Response<pb::RespondToCreditRequestResponse>, Status> {
        rpc(async move {
            let exchange = self.exchange.get(&request)?;
            let (id, decision, reason) = convert::answer(request.into_inner())?;
            let answer = exchange.respond(&id, decision, &reason).await?;
            Ok(convert::answer_to_proto(id, answer))
        })
        .await
    }

    type WatchCreditEventsStream = ResponseStream<pb::WatchCreditEventsResponse>;

    async fn watch_credit_events(
        &self,
        request: Request<pb::WatchCreditEventsRequest>,
    ) -> Result<Response<Self::WatchCreditEventsStream>, Status> {
        rpc(async move {
            let (cursor, filter) = convert::watch(request.into_inner())?;
            let slot = self.watch_pump.reserve()?;
            let events = self
                .events
                .subscribe(keys::EVENTS_STREAM, &cursor, filter)
                .await?;
            let source = events.map(|next| {
                let entry = next?;
                Ok(pb::WatchCreditEventsResponse {
                    event: Some(convert::event_to_proto(&CreditEvent::parse(&entry))),
                })
            });
            Ok(slot.serve(source))
        })
        .await
    }

    async fn resolve_credit_anomaly(
        &self,
        request: Request<pb::ResolveCreditAnomalyRequest>,
    ) -> Result<Response<pb::ResolveCreditAnomalyResponse>, Status> {
        rpc(async move {
            let wsp = self.wsp.get(&request)?;
            let (id, resolution, why) = convert::resolution(request.into_inner())?;
            let record = wsp.store.record(&id).await?;
            let record = record.ok_or_else(|| NotFound::new("credit request", &id))?;
            let not_pending = |status: String| CreditError::NotPending {
                request_id: id.clone(),
                status,
            };
            let delivery_id = match &resolution {
                Resolution::Redeliver => {
                    let why = if why.is_empty() { "resolved by an operator" } else { &why };
                    let entry = wsp.store.republish(&id, why).await?.map_err(not_pending)?;
                    tracing::warn!(request_id = %id, %entry, %why, "credit request redelivered by an operator");
                    entry.to_string()
                }
                Resolution::Reject(reason) => {
                    wsp.store.reject_pending(&record, reason).await?.map_err(not_pending)?;
                    tracing::warn!(request_id = %id, %reason, "credit request rejected by an operator");
                    String::new()
                }
            };
            let now = wsp.store.record(&id).await?.unwrap_or(record);
            Ok(pb::ResolveCreditAnomalyResponse {
                credit_request: Some(convert::request_to_proto(&now)),
                delivery_id,
            })
        })
        .await
    }
}
