//! gRPC handler of `openoes.credit.v1.CreditService`: proto in, validated
//! input, the role's store, proto out.
//!
//! Which role serves what: RequestCredit needs the WSP role;
//! SubscribeCreditRequests and RespondToCreditRequest need the exchange
//! role; the reads and WatchCreditEvents work on M when this gateway serves
//! the WSP role and on R otherwise. An RPC of a role not served answers
//! UNIMPLEMENTED (reason ROLE_NOT_SERVED).

use std::{sync::Arc, time::Duration};

use futures_util::StreamExt;
use rust_decimal::Decimal;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

use super::{
    exchange::{Decision, Exchange},
    model::{
        EVENTS_STREAM, REQUEST_GROUP, event_to_proto, inventory_to_proto, is_final,
        request_to_proto, timestamp_ms,
    },
    store::{CreditStore, CreditView, NewCreditRequest, RequestOutcome},
    wsp::{self, Waiters},
};
use crate::{
    amount,
    config::{Config, Role, StreamsConfig},
    error::{Error, FieldViolations},
    proto::credit::v1::{self as pb, credit_service_server::CreditService},
    redis::Redis,
    server::layers::parse_grpc_timeout,
    streams::{
        Outbox, ResponseStream,
        watch::{StreamEvent, WatchHub},
    },
};

/// Most ListCreditInventory entries per page, and the default.
const MAX_PAGE_SIZE: usize = 1000;
const DEFAULT_PAGE_SIZE: usize = 100;
/// Longest reject reason and custody address accepted.
const MAX_TEXT_LEN: usize = 1024;
/// Messages queued per server stream before backpressure (the bridge below
/// holds its own bounded queue).
const STREAM_QUEUE: usize = 16;

/// The CreditService handler.
#[derive(Clone)]
pub struct CreditApi {
    wsp: Option<WspRole>,
    exchange: Option<Exchange>,
    /// Reads: on M if this gateway is the WSP, else on R.
    view: CreditView,
    /// The event log's fan-out, on the same Redis as `view`.
    events: WatchHub,
    streams: StreamsConfig,
    request_timeout: Duration,
}

#[derive(Clone)]
struct WspRole {
    store: CreditStore,
    waiters: Waiters,
    max_wait: Duration,
}

impl CreditApi {
    /// The handler for the roles `config` names; starts their background
    /// work (the WSP's response reader and decision follower), which ends
    /// with `stop`. `master_watches` is the fan-out on M.
    pub fn start(
        config: &Config,
        redis: &Redis,
        master_watches: &WatchHub,
        stop: &CancellationToken,
    ) -> Self {
        let wsp = config.serves(Role::Wsp).then(|| {
            let store = CreditStore::new(
                redis.master.clone(),
                &config.credit.custodian,
                &config.streams,
            );
            tokio::spawn(wsp::apply_responses(
                store.clone(),
                redis.replica_reader.clone(),
                config.streams.clone(),
                stop.clone(),
            ));
            WspRole {
                store,
                waiters: Waiters::start(
                    master_watches.clone(),
                    config.credit.max_waiters,
                    stop.clone(),
                ),
                max_wait: config.credit.max_wait,
            }
        });
        let exchange = config.serves(Role::Exchange).then(|| {
            Exchange::new(
                redis.replica.clone(),
                &config.credit,
                &config.streams,
                stop.clone(),
            )
        });
        let (view, events) = if wsp.is_some() {
            (
                CreditView::new(redis.master.clone()),
                master_watches.clone(),
            )
        } else {
            let replica_watches =
                WatchHub::new(redis.replica.clone(), config.streams.clone(), stop.clone());
            (CreditView::new(redis.replica.clone()), replica_watches)
        };
        Self {
            wsp,
            exchange,
            view,
            events,
            streams: config.streams.clone(),
            request_timeout: config.grpc.request_timeout,
        }
    }

    fn wsp(&self, rpc: &'static str) -> Result<&WspRole, Error> {
        self.wsp
            .as_ref()
            .ok_or(Error::RoleNotServed { rpc, role: "wsp" })
    }

    fn exchange(&self, rpc: &'static str) -> Result<&Exchange, Error> {
        self.exchange.as_ref().ok_or(Error::RoleNotServed {
            rpc,
            role: "exchange",
        })
    }

    fn outbox<T: Send + 'static>(&self) -> (Outbox<T>, ResponseStream<T>) {
        Outbox::new(STREAM_QUEUE, self.streams.slow_subscriber_timeout)
    }

    /// How long a call may wait for a decision: what it asked, cut to the
    /// configured maximum and to 80% of its deadline, so that the PENDING
    /// answer still reaches the client in time.
    fn wait_for(&self, asked: Duration, max: Duration, deadline: Option<Duration>) -> Duration {
        let deadline = deadline.map_or(self.request_timeout, |d| d.min(self.request_timeout));
        asked.min(max).min(deadline - deadline / 5)
    }
}

#[tonic::async_trait]
impl CreditService for CreditApi {
    async fn request_credit(
        &self,
        request: Request<pb::RequestCreditRequest>,
    ) -> Result<Response<pb::RequestCreditResponse>, Status> {
        let wsp = self.wsp("openoes.credit.v1.CreditService/RequestCredit")?;
        let deadline = request
            .metadata()
            .get("grpc-timeout")
            .and_then(|v| v.to_str().ok())
            .and_then(parse_grpc_timeout);
        let (new, asked) = new_request(request.into_inner())?;
        let wait = self.wait_for(asked, wsp.max_wait, deadline);
        // Registered before the request is written: the decision cannot
        // slip by between the write and the wait.
        let mut waiter = if wait.is_zero() {
            None
        } else {
            Some(wsp.waiters.register(&new.request_id).map_err(Error::from)?)
        };
        let (RequestOutcome::Created(mut record) | RequestOutcome::Existing(mut record)) =
            wsp.store.request(&new).await.map_err(Error::from)?;
        if let Some(waiter) = &mut waiter
            && !is_final(&record.fields)
        {
            // On timeout, read anyway: the follower may have missed it
            // (e.g. while reconnecting), the record never does.
            let _ = tokio::time::timeout(wait, waiter.decided()).await;
            if let Some(now) = wsp
                .store
                .record(&new.request_id)
                .await
                .map_err(Error::from)?
            {
                record = now;
            }
        }
        Ok(Response::new(pb::RequestCreditResponse {
            credit_request: Some(request_to_proto(&record.fields)),
        }))
    }

    async fn get_credit_request(
        &self,
        request: Request<pb::GetCreditRequestRequest>,
    ) -> Result<Response<pb::GetCreditRequestResponse>, Status> {
        let r = request.into_inner();
        let mut v = FieldViolations::default();
        v.check_id("request_id", &r.request_id);
        v.into_result()?;
        let fields = self
            .view
            .request(&r.request_id)
            .await
            .map_err(Error::from)?
            .ok_or_else(|| Error::NotFound {
                resource: "credit request",
                id: r.request_id,
            })?;
        Ok(Response::new(pb::GetCreditRequestResponse {
            credit_request: Some(request_to_proto(&fields)),
        }))
    }

    async fn get_credit_inventory(
        &self,
        request: Request<pb::GetCreditInventoryRequest>,
    ) -> Result<Response<pb::GetCreditInventoryResponse>, Status> {
        let r = request.into_inner();
        let mut v = FieldViolations::default();
        v.check_id("user_id", &r.user_id);
        v.check_id("asset", &r.asset);
        v.into_result()?;
        let fields = self
            .view
            .inventory(&r.user_id, &r.asset)
            .await
            .map_err(Error::from)?
            .ok_or_else(|| Error::NotFound {
                resource: "credit inventory",
                id: format!("{}/{}", r.user_id, r.asset),
            })?;
        Ok(Response::new(pb::GetCreditInventoryResponse {
            credit_inventory: Some(inventory_to_proto(&r.user_id, &r.asset, &fields)),
        }))
    }

    async fn list_credit_inventory(
        &self,
        request: Request<pb::ListCreditInventoryRequest>,
    ) -> Result<Response<pb::ListCreditInventoryResponse>, Status> {
        let r = request.into_inner();
        let mut v = FieldViolations::default();
        v.check_id("user_id", &r.user_id);
        if !r.page_token.is_empty() {
            v.check_id("page_token", &r.page_token);
        }
        let page_size = match r.page_size {
            n if n < 0 => {
                v.add("page_size", "must not be negative");
                0
            }
            0 => DEFAULT_PAGE_SIZE,
            n => (n as usize).min(MAX_PAGE_SIZE),
        };
        v.into_result()?;
        let (page, more) = self
            .view
            .inventories(&r.user_id, &r.page_token, page_size)
            .await
            .map_err(Error::from)?;
        let next_page_token = match page.last() {
            Some((asset, _)) if more => asset.clone(),
            _ => String::new(),
        };
        Ok(Response::new(pb::ListCreditInventoryResponse {
            credit_inventories: page
                .iter()
                .map(|(asset, fields)| inventory_to_proto(&r.user_id, asset, fields))
                .collect(),
            next_page_token,
        }))
    }

    type SubscribeCreditRequestsStream = ResponseStream<pb::SubscribeCreditRequestsResponse>;

    async fn subscribe_credit_requests(
        &self,
        request: Request<pb::SubscribeCreditRequestsRequest>,
    ) -> Result<Response<Self::SubscribeCreditRequestsStream>, Status> {
        let exchange = self
            .exchange("openoes.credit.v1.CreditService/SubscribeCreditRequests")?
            .clone();
        let r = request.into_inner();
        let mut v = FieldViolations::default();
        let group = if r.group.is_empty() {
            REQUEST_GROUP.to_string()
        } else {
            v.check_id("group", &r.group);
            r.group
        };
        if !r.consumer.is_empty() {
            v.check_id("consumer", &r.consumer);
        }
        v.into_result()?;
        let consumer = (!r.consumer.is_empty()).then_some(r.consumer.as_str());
        let mut deliveries = exchange.subscribe(&group, consumer);
        let (mut outbox, stream) = self.outbox();
        tokio::spawn(async move {
            loop {
                let delivery = tokio::select! {
                    () = outbox.closed() => return,
                    next = deliveries.next() => match next {
                        Some(Ok(delivery)) => delivery,
                        Some(Err(end)) => return outbox.fail(Error::WatchEnded(end)),
                        None => return,
                    },
                };
                match exchange.screen(&group, &delivery).await {
                    Ok(Some(credit_request)) => {
                        let message = pb::SubscribeCreditRequestsResponse {
                            credit_request: Some(credit_request),
                            delivery_id: delivery.id.to_string(),
                            delivery_count: delivery.delivery_count.try_into().unwrap_or(u32::MAX),
                        };
                        if !outbox.send(message).await {
                            return;
                        }
                    }
                    Ok(None) => {}
                    // The delivery stays pending on this consumer: a
                    // reconnect with the same name gets it first; otherwise
                    // another subscriber reclaims it.
                    Err(e) => return outbox.fail(e.into()),
                }
            }
        });
        Ok(Response::new(stream))
    }

    async fn respond_to_credit_request(
        &self,
        request: Request<pb::RespondToCreditRequestRequest>,
    ) -> Result<Response<pb::RespondToCreditRequestResponse>, Status> {
        let exchange = self.exchange("openoes.credit.v1.CreditService/RespondToCreditRequest")?;
        let r = request.into_inner();
        let mut v = FieldViolations::default();
        v.check_id("request_id", &r.request_id);
        let decision = match pb::CreditDecision::try_from(r.decision) {
            Ok(pb::CreditDecision::Accept) => {
                if !r.reject_reason.is_empty() {
                    v.add("reject_reason", "must be empty when accepting");
                }
                Some(Decision::Accept)
            }
            Ok(pb::CreditDecision::Reject) => {
                if r.reject_reason.trim().is_empty() {
                    v.add("reject_reason", "is required when rejecting");
                } else if r.reject_reason.len() > MAX_TEXT_LEN {
                    v.add(
                        "reject_reason",
                        format!("must be at most {MAX_TEXT_LEN} bytes"),
                    );
                }
                Some(Decision::Reject)
            }
            _ => {
                v.add(
                    "decision",
                    "must be CREDIT_DECISION_ACCEPT or CREDIT_DECISION_REJECT",
                );
                None
            }
        };
        v.into_result()?;
        let decision = decision.unwrap_or(Decision::Reject);
        let answer = exchange
            .respond(&r.request_id, decision, &r.reject_reason)
            .await
            .map_err(Error::from)?;
        Ok(Response::new(pb::RespondToCreditRequestResponse {
            request_id: r.request_id,
            decision: match answer.decision {
                Decision::Accept => pb::CreditDecision::Accept,
                Decision::Reject => pb::CreditDecision::Reject,
            } as i32,
            reject_reason: answer.reject_reason,
            ci: answer.ci,
            decided_at: Some(timestamp_ms(answer.decided_ms)),
        }))
    }

    type WatchCreditEventsStream = ResponseStream<pb::WatchCreditEventsResponse>;

    async fn watch_credit_events(
        &self,
        request: Request<pb::WatchCreditEventsRequest>,
    ) -> Result<Response<Self::WatchCreditEventsStream>, Status> {
        let r = request.into_inner();
        let mut v = FieldViolations::default();
        if !r.user_id.is_empty() {
            v.check_id("user_id", &r.user_id);
        }
        if !r.asset.is_empty() {
            v.check_id("asset", &r.asset);
        }
        v.into_result()?;
        let (user, asset) = (r.user_id, r.asset);
        let filter = Arc::new(move |e: &StreamEvent| {
            (user.is_empty() || e.field("uid") == user)
                && (asset.is_empty() || e.field("asset") == asset)
        });
        let mut events = self
            .events
            .subscribe(EVENTS_STREAM, &r.start_after_event_id, filter)
            .await
            .map_err(Error::from)?;
        let (mut outbox, stream) = self.outbox();
        tokio::spawn(async move {
            loop {
                let event = tokio::select! {
                    () = outbox.closed() => return,
                    next = events.next() => match next {
                        Some(Ok(event)) => event,
                        Some(Err(end)) => return outbox.fail(Error::WatchEnded(end)),
                        None => return,
                    },
                };
                let message = pb::WatchCreditEventsResponse {
                    event: Some(event_to_proto(&event.id.to_string(), &event.fields)),
                };
                if !outbox.send(message).await {
                    return;
                }
            }
        });
        Ok(Response::new(stream))
    }
}

/// Validates a RequestCredit call: the request and the wait it asked for.
fn new_request(r: pb::RequestCreditRequest) -> Result<(NewCreditRequest, Duration), Error> {
    let mut v = FieldViolations::default();
    v.check_id("user_id", &r.user_id);
    v.check_id("asset", &r.asset);
    let change = match amount::parse_change(&r.change) {
        Ok(change) => change,
        Err(e) => {
            v.add("change", e.to_string());
            Decimal::ZERO
        }
    };
    if change > Decimal::ZERO {
        if r.chain.is_empty() {
            v.add("chain", "is required for an increase");
        }
        if r.address.is_empty() {
            v.add("address", "is required for an increase");
        }
    }
    if !r.chain.is_empty() {
        v.check_id("chain", &r.chain);
    }
    if r.address.len() > MAX_TEXT_LEN
        || r.address
            .chars()
            .any(|c| c.is_whitespace() || c.is_control())
    {
        v.add(
            "address",
            format!("must be at most {MAX_TEXT_LEN} bytes, without spaces or control characters"),
        );
    }
    let request_id = if r.request_id.is_empty() {
        format!("req-{}", uuid::Uuid::new_v4())
    } else {
        v.check_id("request_id", &r.request_id);
        r.request_id
    };
    let wait = match r.wait {
        None => Duration::ZERO,
        Some(w) => match Duration::try_from(w) {
            Ok(wait) => wait,
            Err(_) => {
                v.add("wait", "must be a non-negative duration");
                Duration::ZERO
            }
        },
    };
    v.into_result()?;
    Ok((
        NewCreditRequest {
            request_id,
            uid: r.user_id,
            asset: r.asset,
            change,
            chain: r.chain,
            address: r.address,
        },
        wait,
    ))
}
