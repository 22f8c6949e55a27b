//! gRPC handler of `openoes.pledge.v1.PledgeService`: validate
//! ([`convert`](super::convert)), the vault store or the credit flow, proto
//! out. Served by the WSP role; an RPC on a gateway that does not serve it
//! answers UNIMPLEMENTED (reason ROLE_NOT_SERVED).

use std::time::Duration;

use futures_util::StreamExt;
use tonic::{Request, Response, Status};

use super::{
    convert, keys,
    model::{VaultBalance, VaultEvent, VaultOpKind},
    store::VaultStore,
};
use crate::{
    credit::{model::NewCreditRequest, store::CreditStore},
    error::{Error, NotFound, rpc},
    proto::pledge::v1::{self as pb, pledge_service_server::PledgeService},
    server::{RoleSlot, layers::Call},
    streams::{Pump, ResponseStream, waiters::Waiters, watch::WatchHub},
    validate::require_id,
};

/// The PledgeService handler.
#[derive(Clone)]
pub struct PledgeApi {
    pub(super) wsp: RoleSlot<WspRole>,
    pub(super) watch_pump: Pump,
}

/// The WSP role's state.
#[derive(Clone)]
pub(super) struct WspRole {
    pub(super) vaults: VaultStore,
    pub(super) credit: CreditStore,
    pub(super) waiters: Waiters,
    pub(super) max_wait: Duration,
    pub(super) events: WatchHub,
}

impl WspRole {
    /// Sends a pledge's or release's credit request and waits up to `wait`
    /// (cut to the configured maximum and 80% of the call's time) for its
    /// decision, as RequestCredit does.
    async fn send(
        &self,
        new: &NewCreditRequest,
        asked: Duration,
        limit: Duration,
    ) -> Result<(), Error> {
        let wait = asked.min(self.max_wait).min(limit - limit / 5);
        // Registered before the request is written: the decision cannot
        // slip by between the write and the wait.
        let waiter = (!wait.is_zero())
            .then(|| self.waiters.register(&new.request_id))
            .transpose()?;
        let record = self.credit.request(new).await?.into_record();
        if let Some(mut waiter) = waiter
            && !record.status.is_final()
        {
            let _ = tokio::time::timeout(wait, waiter.woken()).await;
        }
        Ok(())
    }
}

#[tonic::async_trait]
impl PledgeService for PledgeApi {
    async fn record_deposit(
        &self,
        request: Request<pb::RecordDepositRequest>,
    ) -> Result<Response<pb::RecordDepositResponse>, Status> {
        rpc(async move {
            let wsp = self.wsp.get(&request)?;
            let r = request.into_inner();
            let op = convert::vault_op(
                VaultOpKind::Deposit,
                r.request_id,
                r.user_id,
                r.asset,
                &r.amount,
                r.chain,
                r.address,
                r.tx_id,
            )?;
            let balance = wsp.vaults.vault_op(&op).await?;
            Ok(pb::RecordDepositResponse {
                balance: Some(convert::balance_to_proto(&balance)),
            })
        })
        .await
    }

    async fn record_withdrawal(
        &self,
        request: Request<pb::RecordWithdrawalRequest>,
    ) -> Result<Response<pb::RecordWithdrawalResponse>, Status> {
        rpc(async move {
            let wsp = self.wsp.get(&request)?;
            let r = request.into_inner();
            let op = convert::vault_op(
                VaultOpKind::Withdrawal,
                r.request_id,
                r.user_id,
                r.asset,
                &r.amount,
                r.chain,
                r.address,
                r.tx_id,
            )?;
            let balance = wsp.vaults.vault_op(&op).await?;
            Ok(pb::RecordWithdrawalResponse {
                balance: Some(convert::balance_to_proto(&balance)),
            })
        })
        .await
    }

    async fn get_vault_balance(
        &self,
        request: Request<pb::GetVaultBalanceRequest>,
    ) -> Result<Response<pb::GetVaultBalanceResponse>, Status> {
        rpc(async move {
            let wsp = self.wsp.get(&request)?;
            let r = request.into_inner();
            require_id("user_id", &r.user_id)?;
            require_id("asset", &r.asset)?;
            let vault = wsp.vaults.vault(&r.user_id, &r.asset).await?;
            if vault.version == 0 {
                return Err(NotFound::new("vault", format!("{}/{}", r.user_id, r.asset)).into());
            }
            let balance = VaultBalance {
                uid: r.user_id,
                asset: r.asset,
                vault,
            };
            Ok(pb::GetVaultBalanceResponse {
                balance: Some(convert::balance_to_proto(&balance)),
            })
        })
        .await
    }

    async fn create_pledge(
        &self,
        request: Request<pb::CreatePledgeRequest>,
    ) -> Result<Response<pb::CreatePledgeResponse>, Status> {
        rpc(async move {
            let wsp = self.wsp.get(&request)?;
            let limit = Call::of(&request).limit;
            let (new, wait) = convert::pledge(request.into_inner())?;
            wsp.send(&new, wait, limit).await?;
            let pledge = wsp.vaults.pledge(&new.request_id).await?;
            let pledge = pledge.ok_or_else(|| NotFound::new("pledge", &new.request_id))?;
            Ok(pb::CreatePledgeResponse {
                pledge: Some(convert::pledge_to_proto(&pledge)),
            })
        })
        .await
    }

    async fn release_pledge(
        &self,
        request: Request<pb::ReleasePledgeRequest>,
    ) -> Result<Response<pb::ReleasePledgeResponse>, Status> {
        rpc(async move {
            let wsp = self.wsp.get(&request)?;
            let limit = Call::of(&request).limit;
            let (new, wait) = convert::release(request.into_inner())?;
            wsp.send(&new, wait, limit).await?;
            let release = wsp.vaults.release(&new.request_id).await?;
            let release = release.ok_or_else(|| NotFound::new("release", &new.request_id))?;
            Ok(pb::ReleasePledgeResponse {
                release: Some(convert::release_to_proto(&release)),
            })
        })
        .await
    }

    async fn get_pledge(
        &self,
        request: Request<pb::GetPledgeRequest>,
    ) -> Result<Response<pb::GetPledgeResponse>, Status> {
        rpc(async move {
            let wsp = self.wsp.get(&request)?;
            let r = request.into_inner();
            // A pledge's id, or a settlement lot's (`settlement/<report>/<asset>`).
            if !crate::credit::keys::is_settlement_lot(&r.pledge_id) {
                require_id("pledge_id", &r.pledge_id)?;
            }
            let pledge = wsp.vaults.pledge(&r.pledge_id).await?;
            let pledge = pledge.ok_or_else(|| NotFound::new("pledge", &r.pledge_id))?;
            Ok(pb::GetPledgeResponse {
                pledge: Some(convert::pledge_to_proto(&pledge)),
            })
        })
        .await
    }

    async fn list_pledges(
        &self,
        request: Request<pb::ListPledgesRequest>,
    ) -> Result<Response<pb::ListPledgesResponse>, Status> {
        rpc(async move {
            let wsp = self.wsp.get(&request)?;
            let r = request.into_inner();
            let (filter, after, size) = convert::list(&r)?;
            let (page, next) = wsp.vaults.pledges(&r.user_id, filter, after, size).await?;
            Ok(pb::ListPledgesResponse {
                pledges: page.iter().map(convert::pledge_to_proto).collect(),
                next_page_token: crate::redis::page::format_token(next),
            })
        })
        .await
    }

    async fn get_pledge_release(
        &self,
        request: Request<pb::GetPledgeReleaseRequest>,
    ) -> Result<Response<pb::GetPledgeReleaseResponse>, Status> {
        rpc(async move {
            let wsp = self.wsp.get(&request)?;
            let r = request.into_inner();
            require_id("release_id", &r.release_id)?;
            let release = wsp.vaults.release(&r.release_id).await?;
            let release = release.ok_or_else(|| NotFound::new("release", &r.release_id))?;
            Ok(pb::GetPledgeReleaseResponse {
                release: Some(convert::release_to_proto(&release)),
            })
        })
        .await
    }

    type WatchPledgeEventsStream = ResponseStream<pb::WatchPledgeEventsResponse>;

    async fn watch_pledge_events(
        &self,
        request: Request<pb::WatchPledgeEventsRequest>,
    ) -> Result<Response<Self::WatchPledgeEventsStream>, Status> {
        rpc(async move {
            let wsp = self.wsp.get(&request)?;
            let (cursor, filter) = convert::watch(request.into_inner())?;
            let slot = self.watch_pump.reserve()?;
            let events = wsp
                .events
                .subscribe(keys::VAULT_EVENTS, &cursor, filter)
                .await?;
            let source = events.map(|next| {
                let entry = next?;
                Ok(pb::WatchPledgeEventsResponse {
                    event: Some(convert::event_to_proto(&VaultEvent::parse(&entry))),
                })
            });
            Ok(slot.serve(source))
        })
        .await
    }
}
