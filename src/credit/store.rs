//! Credit data on the WSP's master (M): the request and response scripts,
//! and reads on M or R (keys in [`super::keys`]).
//!
//! Money is computed here, in Rust, with exact decimals; the scripts only
//! compare and write strings (`lua/request.lua`, `lua/apply_response.lua`).

use redis::AsyncCommands;
use rust_decimal::Decimal;

use super::{
    error::CreditError,
    keys,
    model::{CreditInventory, CreditRequestRecord, CreditResponse, NewCreditRequest},
};
use crate::{
    amount,
    config::StreamsConfig,
    redis::{RedisEndpoint, RedisError, script::lua_script},
    streams::{Fields, StreamId},
    time,
};

/// Times a request is retried when the CI it was computed from changed
/// meanwhile. CI changes only through this store's scripts, one request per
/// (user, asset) at a time, so a second retry is already rare.
const MAX_STALE_RETRIES: usize = 8;

lua_script! {
    /// `lua/request.lua`: records a new request and sends it, atomically.
    struct Request<'a>(include_str!("lua/request.lua")) {
        keys { record: String, ci: String, inflight: String, requests: &'a str, events: &'a str }
        args {
            request_id: &'a str, uid: &'a str, asset: &'a str, change: &'a str, ci_after: String,
            chain: &'a str, address: &'a str, custodian: &'a str, ci_version: &'a str,
            ci_amount: &'a str, now_s: u64, now_ms: u64, requests_maxlen: usize,
            events_maxlen: usize,
        }
    }
}

lua_script! {
    /// `lua/apply_response.lua`: applies one response on M exactly once.
    struct ApplyResponse<'a>(include_str!("lua/apply_response.lua")) {
        keys { record: String, inventory: String, inflight: String, events: &'a str, cursor: &'a str, assets: String }
        args {
            entry_id: &'a str, request_id: &'a str, status: &'a str, reject_reason: &'a str,
            ci: String, now_ms: u64, events_maxlen: usize, uid: &'a str, asset: &'a str,
        }
    }
}

lua_script! {
    /// `lua/rewind_cursor.lua`: sets the response cursor back to the start.
    struct RewindCursor<'a>(include_str!("lua/rewind_cursor.lua")) {
        keys { cursor: &'a str }
        args { seen: String }
    }
}

/// What a request call did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestOutcome {
    /// Recorded and sent to the exchange.
    Created(CreditRequestRecord),
    /// The same request was made before: its record, nothing written.
    Existing(CreditRequestRecord),
}

impl RequestOutcome {
    /// The record, whichever it is.
    pub fn into_record(self) -> CreditRequestRecord {
        match self {
            Self::Created(r) | Self::Existing(r) => r,
        }
    }
}

/// What applying a response did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApplyOutcome {
    /// The decision is now applied on M.
    Applied,
    /// This response (or a later one) was applied before: nothing changed.
    Duplicate,
    /// No such request here (another WSP's): ignored.
    Unknown,
    /// The request was already decided: nothing changed.
    AlreadyFinal,
    /// Accepted with another `ci` than the request carried: not applied,
    /// an anomaly event recorded; the request stays pending for a person.
    Anomaly,
}

/// Credit data on M.
#[derive(Clone)]
pub struct CreditStore {
    redis: RedisEndpoint,
    custodian: String,
    request_maxlen: usize,
    events_maxlen: usize,
}

impl CreditStore {
    /// A store on M for `custodian` (the WSP's id in the protocol).
    pub fn new(redis: RedisEndpoint, custodian: &str, streams: &StreamsConfig) -> Self {
        Self {
            redis,
            custodian: custodian.to_string(),
            request_maxlen: streams.maxlen_for(keys::REQUEST_STREAM),
            events_maxlen: streams.maxlen_for(keys::EVENTS_STREAM),
        }
    }

    fn err(&self, e: redis::RedisError) -> CreditError {
        CreditError::Redis(RedisError::from_redis(self.redis.name(), e))
    }

    /// Records `request` and sends it to the exchange, or returns the
    /// existing record if the same request was made before.
    pub async fn request(&self, request: &NewCreditRequest) -> Result<RequestOutcome, CreditError> {
        let ci_key = keys::ci(&request.uid, &request.asset);
        let change = amount::format_change(request.change);
        for _ in 0..MAX_STALE_RETRIES {
            let mut conn = self.redis.conn().await?;
            let (version, stored): (Option<String>, Option<String>) = redis::cmd("HMGET")
                .arg(&ci_key)
                .arg("version")
                .arg("amount")
                .query_async(&mut *conn)
                .await
                .map_err(|e| self.err(e))?;
            let current = match &stored {
                Some(text) => amount::parse(text).map_err(|e| CreditError::Corrupt {
                    key: ci_key.clone(),
                    reason: format!("amount: {e}"),
                })?,
                None => Decimal::ZERO,
            };
            let ci = amount::add(current, request.change).map_err(|_| CreditError::TooLarge {
                current: amount::format(current),
                change: change.clone(),
            })?;
            if ci < Decimal::ZERO {
                // An existing record for this id wins over the CI check:
                // a retry of an accepted decrease must still be idempotent.
                if let Some(record) = self.record(&request.request_id).await? {
                    return same_or_reused(request, record, &change);
                }
                return Err(CreditError::InsufficientCredit {
                    current: amount::format(current),
                    change,
                });
            }
            let now = time::now();
            let reply: redis::RedisResult<(String, Fields)> = Request {
                record: keys::request(&request.request_id),
                ci: ci_key.clone(),
                inflight: keys::inflight(&request.uid, &request.asset),
                requests: keys::REQUEST_STREAM,
                events: keys::EVENTS_STREAM,
                request_id: &request.request_id,
                uid: &request.uid,
                asset: &request.asset,
                change: &change,
                ci_after: amount::format(ci),
                chain: &request.chain,
                address: &request.address,
                custodian: &self.custodian,
                ci_version: version.as_deref().unwrap_or("0"),
                ci_amount: stored.as_deref().unwrap_or(""),
                now_s: now.s,
                now_ms: now.ms,
                requests_maxlen: self.request_maxlen,
                events_maxlen: self.events_maxlen,
            }
            .invoke(&mut *conn)
            .await;
            let (verdict, fields) = match reply {
                Ok(reply) => reply,
                Err(e) if e.code() == Some("REQUEST_ID_REUSED") => {
                    return Err(CreditError::RequestIdReused(request.request_id.clone()));
                }
                Err(e) if e.code() == Some("CREDIT_REQUEST_IN_FLIGHT") => {
                    let pending = e.detail().unwrap_or_default().trim().to_string();
                    return Err(CreditError::InFlight { pending });
                }
                Err(e) => return Err(self.err(e)),
            };
            let record = CreditRequestRecord::parse(&fields);
            match verdict.as_str() {
                "created" => return Ok(RequestOutcome::Created(record)),
                "existing" => return Ok(RequestOutcome::Existing(record)),
                _ => continue, // stale: the CI changed; read it again
            }
        }
        Err(CreditError::Contention)
    }

    /// Applies one exchange response on M, exactly once (see
    /// `lua/apply_response.lua`).
    pub async fn apply_response(
        &self,
        response: &CreditResponse,
    ) -> Result<ApplyOutcome, CreditError> {
        let (uid, asset) = (&response.uid, &response.asset);
        let mut conn = self.redis.conn().await?;
        let outcome: String = ApplyResponse {
            record: keys::request(&response.request_id),
            inventory: keys::ci(uid, asset),
            inflight: keys::inflight(uid, asset),
            events: keys::EVENTS_STREAM,
            cursor: keys::RESPONSE_CURSOR,
            assets: keys::assets(uid),
            entry_id: &response.entry_id,
            request_id: &response.request_id,
            status: &response.status,
            reject_reason: &response.reject_reason,
            // Canonical, so the script's string comparison is exact: "10.50"
            // and "10.5" agree.
            ci: amount::parse(&response.ci)
                .map(amount::format)
                .unwrap_or_default(),
            now_ms: time::now().ms,
            events_maxlen: self.events_maxlen,
            uid,
            asset,
        }
        .invoke(&mut *conn)
        .await
        .map_err(|e| self.err(e))?;
        Ok(match outcome.as_str() {
            "applied" => ApplyOutcome::Applied,
            "duplicate" => ApplyOutcome::Duplicate,
            "unknown" => ApplyOutcome::Unknown,
            "final" => ApplyOutcome::AlreadyFinal,
            _ => ApplyOutcome::Anomaly,
        })
    }

    /// A request's record, if it exists.
    pub async fn record(
        &self,
        request_id: &str,
    ) -> Result<Option<CreditRequestRecord>, CreditError> {
        CreditView::new(self.redis.clone())
            .request(request_id)
            .await
    }

    /// Where the WSP's reading of the response stream on R stands.
    pub async fn response_cursor(&self) -> Result<StreamId, CreditError> {
        let mut conn = self.redis.conn().await?;
        let cursor: Option<String> = conn
            .get(keys::RESPONSE_CURSOR)
            .await
            .map_err(|e| self.err(e))?;
        match cursor {
            None => Ok(StreamId::default()),
            Some(text) => text.parse().map_err(|()| CreditError::Corrupt {
                key: keys::RESPONSE_CURSOR.into(),
                reason: format!("{text:?} is not a stream id"),
            }),
        }
    }

    /// Sets the response cursor back to the start if it is still `seen`
    /// (see `lua/rewind_cursor.lua`).
    pub async fn rewind_response_cursor(&self, seen: StreamId) -> Result<(), CreditError> {
        let mut conn = self.redis.conn().await?;
        let _: u64 = RewindCursor {
            cursor: keys::RESPONSE_CURSOR,
            seen: seen.to_string(),
        }
        .invoke(&mut *conn)
        .await
        .map_err(|e| self.err(e))?;
        Ok(())
    }
}

fn same_or_reused(
    request: &NewCreditRequest,
    record: CreditRequestRecord,
    change: &str,
) -> Result<RequestOutcome, CreditError> {
    let same = record.uid == request.uid
        && record.asset == request.asset
        && record.change == change
        && record.chain == request.chain
        && record.address == request.address;
    if same {
        Ok(RequestOutcome::Existing(record))
    } else {
        Err(CreditError::RequestIdReused(request.request_id.clone()))
    }
}

/// Reads of credit data, on M (WSP role) or on its replica R (an exchange
/// only gateway). Data written by other OpenOES parties may lack the
/// extension keys (records, the asset index): then these find nothing.
#[derive(Clone)]
pub struct CreditView {
    redis: RedisEndpoint,
}

impl CreditView {
    /// Reads on `redis`.
    pub fn new(redis: RedisEndpoint) -> Self {
        Self { redis }
    }

    fn err(&self, e: redis::RedisError) -> CreditError {
        CreditError::Redis(RedisError::from_redis(self.redis.name(), e))
    }

    async fn hash(&self, key: String) -> Result<Option<Fields>, CreditError> {
        let mut conn = self.redis.conn().await?;
        let fields: Fields = conn.hgetall(key).await.map_err(|e| self.err(e))?;
        Ok((!fields.is_empty()).then_some(fields))
    }

    /// A request's record, if it exists.
    pub async fn request(
        &self,
        request_id: &str,
    ) -> Result<Option<CreditRequestRecord>, CreditError> {
        let fields = self.hash(keys::request(request_id)).await?;
        Ok(fields.map(|f| CreditRequestRecord::parse(&f)))
    }

    /// A user's Credit Inventory in `asset`, if it exists.
    pub async fn inventory(
        &self,
        uid: &str,
        asset: &str,
    ) -> Result<Option<CreditInventory>, CreditError> {
        let fields = self.hash(keys::ci(uid, asset)).await?;
        Ok(fields.map(|f| CreditInventory::parse(uid, asset, &f)))
    }

    /// Up to `limit` of a user's Credit Inventories, by asset, after the
    /// asset `after` ("" for the first page); true if there are more.
    pub async fn inventories(
        &self,
        uid: &str,
        after: &str,
        limit: usize,
    ) -> Result<(Vec<CreditInventory>, bool), CreditError> {
        let mut conn = self.redis.conn().await?;
        let start = if after.is_empty() {
            "-".to_string()
        } else {
            format!("({after}")
        };
        let mut assets: Vec<String> = redis::cmd("ZRANGE")
            .arg(keys::assets(uid))
            .arg(start)
            .arg("+")
            .arg("BYLEX")
            .arg("LIMIT")
            .arg(0)
            .arg(limit + 1)
            .query_async(&mut *conn)
            .await
            .map_err(|e| self.err(e))?;
        let more = assets.len() > limit;
        assets.truncate(limit);
        if assets.is_empty() {
            return Ok((Vec::new(), more));
        }
        let mut pipe = redis::pipe();
        for asset in &assets {
            pipe.hgetall(keys::ci(uid, asset));
        }
        let hashes: Vec<Fields> = pipe
            .query_async(&mut *conn)
            .await
            .map_err(|e| self.err(e))?;
        let page = assets
            .iter()
            .zip(hashes)
            .map(|(asset, f)| CreditInventory::parse(uid, asset, &f))
            .collect();
        Ok((page, more))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripts_match_their_headers() {
        for shape in [Request::SHAPE, ApplyResponse::SHAPE, RewindCursor::SHAPE] {
            shape.check();
        }
    }
}
