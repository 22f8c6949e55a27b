//! The exchange role, on the stream-writeable replica (R) as the `exchange`
//! ACL user: credit requests reach exchange backends through a consumer
//! group, after the protocol checks; answers become standard responses.
//!
//! A delivery goes through `lua/deliver.lua` first: requests the WSP has
//! already decided (a redelivery after a resync of R) and requests this
//! exchange has answered are acknowledged and skipped; the others are
//! recorded at `mirror:credit:answer:<id>` on R, so that an answer can come
//! through any gateway. Then the protocol's checks run here, with exact
//! decimals; a request that fails one is rejected by the gateway itself
//! (`reject_reason` starts with one of the `REJECT_*` codes) and never
//! reaches a backend. `lua/respond.lua` records an answer.

use std::collections::HashSet;

use rust_decimal::Decimal;
use tokio_util::sync::CancellationToken;

use super::{
    error::CreditError,
    keys,
    model::{Answer, CreditRequestRecord, Decision},
};
use crate::{
    amount,
    config::{CreditConfig, StreamsConfig},
    redis::{RedisEndpoint, RedisError, script::lua_script},
    streams::group::{ConsumerInUse, Delivery, GroupHub, GroupSubscription, OnLimit},
    time,
    validate::is_valid_id,
};

lua_script! {
    /// `lua/deliver.lua`: screens a delivery and records it on R.
    struct Deliver<'a>(include_str!("lua/deliver.lua")) {
        keys { record: String, answer: String, ci: String, requests: &'a str, responses: &'a str }
        args {
            group: &'a str, entry_id: String, uid: &'a str, asset: &'a str,
            change: &'a str, ci_after: &'a str, custodian: &'a str,
        }
    }
}

lua_script! {
    /// `lua/respond.lua`: records an answer on R.
    struct Respond<'a>(include_str!("lua/respond.lua")) {
        keys { answer: String, responses: &'a str, requests: &'a str, cursor: &'a str }
        args {
            request_id: &'a str, status: &'a str, reject_reason: &'a str, now_s: u64,
            now_ms: u64, responses_maxlen: usize, retention_ms: u64,
        }
    }
}

/// Reject reason codes of the gateway's own checks: `<CODE>: <details>`.
pub mod reject {
    /// A standard field is missing or malformed.
    pub const MALFORMED_REQUEST: &str = "MALFORMED_REQUEST";
    /// The asset is not on the exchange's allow-list.
    pub const ASSET_NOT_ALLOWED: &str = "ASSET_NOT_ALLOWED";
    /// An increase without chain and address.
    pub const CHAIN_ADDRESS_REQUIRED: &str = "CHAIN_ADDRESS_REQUIRED";
    /// A decrease below zero.
    pub const INSUFFICIENT_CREDIT: &str = "INSUFFICIENT_CREDIT";
    /// `ci` is not the CI on R plus `c_change`.
    pub const CI_MISMATCH: &str = "CI_MISMATCH";
    /// Delivered `streams.max_deliveries` times without an answer (every
    /// backend that took it died or stalled): rejected rather than left
    /// undecided in a dead-letter stream, which would block the user's
    /// (user, asset) on the WSP for good.
    pub const DELIVERY_LIMIT: &str = "DELIVERY_LIMIT";
}

/// The exchange role's work on R.
#[derive(Clone)]
pub struct Exchange {
    redis: RedisEndpoint,
    groups: GroupHub,
    /// Empty: every asset.
    allowlist: HashSet<String>,
    retention_ms: u64,
    /// `streams.max_deliveries`: the delivery that reaches it is rejected
    /// ([`reject::DELIVERY_LIMIT`]).
    max_deliveries: u64,
    response_maxlen: usize,
    consumer_groups: Vec<String>,
}

impl Exchange {
    /// The exchange role on `redis` (R, as the exchange user).
    pub fn new(
        redis: RedisEndpoint,
        credit: &CreditConfig,
        streams: &StreamsConfig,
        stop: CancellationToken,
    ) -> Self {
        Self {
            groups: GroupHub::new(redis.clone(), streams.clone(), stop),
            redis,
            allowlist: credit.asset_allowlist.iter().cloned().collect(),
            retention_ms: credit.answer_retention.as_millis() as u64,
            max_deliveries: streams.max_deliveries,
            response_maxlen: streams.maxlen_for(keys::RESPONSE_STREAM),
            consumer_groups: credit.consumer_groups.clone(),
        }
    }

    fn err(&self, e: redis::RedisError) -> CreditError {
        CreditError::Redis(RedisError::from_redis(self.redis.name(), e))
    }

    /// Joins `group` on the request stream.
    ///
    /// Deliveries past `streams.max_deliveries` still come through
    /// ([`OnLimit::Deliver`]): [`Exchange::screen`] rejects them with
    /// DELIVERY_LIMIT, so every request ends with an answer.
    pub fn subscribe(
        &self,
        group: &str,
        consumer: Option<&str>,
    ) -> Result<GroupSubscription, ConsumerInUse> {
        self.groups
            .subscribe(keys::REQUEST_STREAM, group, consumer, OnLimit::Deliver)
    }

    /// The consumer groups subscribers may join (`credit.consumer_groups`).
    pub fn groups(&self) -> &[String] {
        &self.consumer_groups
    }

    /// Screens one delivery of `group`: `Some` request for the backend, or
    /// `None` if it was skipped, rejected by the checks, or dead-lettered.
    pub async fn screen(
        &self,
        group: &str,
        delivery: &Delivery,
    ) -> Result<Option<CreditRequestRecord>, CreditError> {
        let request_id = delivery.field("request_id");
        if !is_valid_id(request_id) {
            // Nothing can be answered without an id: keep it for a person.
            let reason = format!(
                "{}: request_id {request_id:?} is not a valid id",
                reject::MALFORMED_REQUEST
            );
            self.groups
                .dead_letter(keys::REQUEST_STREAM, group, delivery, &reason)
                .await?;
            return Ok(None);
        }
        let uid = delivery.field("uid");
        let asset = delivery.field("asset");
        let mut conn = self.redis.conn().await?;
        let reply: Vec<String> = Deliver {
            record: keys::request(request_id),
            answer: keys::answer(request_id),
            ci: keys::ci(uid, asset),
            requests: keys::REQUEST_STREAM,
            responses: keys::RESPONSE_STREAM,
            group,
            entry_id: delivery.id.to_string(),
            uid,
            asset,
            change: delivery.field("c_change"),
            ci_after: delivery.field("ci"),
            custodian: delivery.field("custodian"),
        }
        .invoke(&mut *conn)
        .await
        .map_err(|e| self.err(e))?;
        drop(conn);
        let ci_on_replica = match reply.as_slice() {
            [verdict, ci] if verdict == "deliver" => ci,
            _ => return Ok(None), // decided by the WSP, or answered here
        };
        let verdict = self.check(delivery, ci_on_replica).and_then(|()| {
            // The group would dead-letter the next delivery: decide now.
            if delivery.delivery_count >= self.max_deliveries {
                return Err(format!(
                    "{}: delivered {} times without an answer",
                    reject::DELIVERY_LIMIT,
                    delivery.delivery_count
                ));
            }
            Ok(())
        });
        if let Err(reason) = verdict {
            tracing::info!(%request_id, %reason, "credit request rejected by the gateway's checks");
            self.respond(request_id, Decision::Reject, &reason).await?;
            return Ok(None);
        }
        Ok(Some(CreditRequestRecord::parse(&delivery.fields)))
    }

    /// The protocol's checks of a request against the CI on R; `Err` is the
    /// reject reason.
    fn check(&self, delivery: &Delivery, ci_on_replica: &str) -> Result<(), String> {
        let malformed = |what: String| format!("{}: {what}", reject::MALFORMED_REQUEST);
        for name in ["uid", "asset"] {
            if !is_valid_id(delivery.field(name)) {
                return Err(malformed(format!("{name} is not a valid id")));
            }
        }
        let change = amount::parse_change(delivery.field("c_change"))
            .map_err(|e| malformed(format!("c_change: {e}")))?;
        let ci = amount::parse(delivery.field("ci")).map_err(|e| malformed(format!("ci: {e}")))?;
        let asset = delivery.field("asset");
        if !self.allowlist.is_empty() && !self.allowlist.contains(asset) {
            return Err(format!(
                "{}: {asset} is not traded here",
                reject::ASSET_NOT_ALLOWED
            ));
        }
        if change > Decimal::ZERO
            && (delivery.field("chain").is_empty() || delivery.field("address").is_empty())
        {
            return Err(format!(
                "{}: an increase needs chain and address",
                reject::CHAIN_ADDRESS_REQUIRED
            ));
        }
        // No CI yet is zero (a user's first request).
        let current = if ci_on_replica.is_empty() {
            Decimal::ZERO
        } else {
            amount::parse(ci_on_replica)
                .map_err(|e| malformed(format!("Credit Inventory on the replica: {e}")))?
        };
        let after = amount::add(current, change).map_err(|e| malformed(e.to_string()))?;
        if after < Decimal::ZERO {
            return Err(format!(
                "{}: Credit Inventory {} cannot change by {}",
                reject::INSUFFICIENT_CREDIT,
                amount::format(current),
                amount::format_change(change)
            ));
        }
        if after != ci {
            return Err(format!(
                "{}: ci {} is not Credit Inventory {} plus c_change {}",
                reject::CI_MISMATCH,
                delivery.field("ci"),
                amount::format(current),
                amount::format_change(change)
            ));
        }
        Ok(())
    }

    /// Records the decision on a delivered request (see `lua/respond.lua`).
    pub async fn respond(
        &self,
        request_id: &str,
        decision: Decision,
        reject_reason: &str,
    ) -> Result<Answer, CreditError> {
        let now = time::now();
        let mut conn = self.redis.conn().await?;
        let reply: redis::RedisResult<(String, String, String, String)> = Respond {
            answer: keys::answer(request_id),
            responses: keys::RESPONSE_STREAM,
            requests: keys::REQUEST_STREAM,
            cursor: keys::RESPONSE_CURSOR,
            request_id,
            status: decision.status(),
            reject_reason,
            now_s: now.s,
            now_ms: now.ms,
            responses_maxlen: self.response_maxlen,
            retention_ms: self.retention_ms,
        }
        .invoke(&mut *conn)
        .await;
        let (status, reject_reason, ci, decided_ms) = match reply {
            Ok(answer) => answer,
            Err(e) if e.code() == Some("UNKNOWN_REQUEST") => {
                return Err(CreditError::UnknownRequest(request_id.into()));
            }
            Err(e) if e.code() == Some("ALREADY_ANSWERED") => {
                return Err(CreditError::AlreadyAnswered {
                    request_id: request_id.into(),
                    status: e.detail().unwrap_or_default().trim().to_string(),
                });
            }
            Err(e) => return Err(self.err(e)),
        };
        Ok(Answer {
            decision: if status == "accepted" {
                Decision::Accept
            } else {
                Decision::Reject
            },
            reject_reason,
            ci,
            decided_ms: decided_ms.parse().unwrap_or_default(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripts_match_their_headers() {
        Deliver::SHAPE.check();
        Respond::SHAPE.check();
    }
}
