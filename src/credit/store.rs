//! Credit data on the WSP's master (M): keys, and the request and
//! response scripts.
//!
//! | key | type | holds |
//! |---|---|---|
//! | `CI:<uid>:<asset>` (std) | hash | `amount` (std), `version`, `updated_ms`, `last_request_id` |
//! | `mirror:credit:req:<request_id>` | hash | the request's record and status |
//! | `mirror:credit:inflight:<uid>:<asset>` | string | id of the one pending request |
//! | `mirror:credit:request` (std) | stream | requests to the exchange |
//! | `mirror:credit:events` | stream | the credit event log |
//! | `mirror:credit:assets:<uid>` | sorted set | assets the user has CI in |
//! | `mirror:cursor:mirror:credit:response` | string | last response id on R applied here |
//!
//! Money is computed here, in Rust, with exact decimals; the scripts only
//! compare and write strings (`lua/request.lua`, `lua/apply_response.lua`).

use std::{collections::HashMap, sync::LazyLock};

use redis::{AsyncCommands, Script};
use rust_decimal::Decimal;

pub use super::model::CreditError;
use super::model::{
    EVENTS_STREAM, Fields, REQUEST_STREAM, RESPONSE_CURSOR, assets_key, ci_key, inflight_key, now,
    request_key,
};
use crate::{
    amount,
    config::StreamsConfig,
    redis::{RedisEndpoint, RedisError},
    streams::watch::StreamId,
};

/// Times a request is retried when the CI it was computed from changed
/// meanwhile. CI changes only through this store's scripts, one request per
/// (user, asset) at a time, so a second retry is already rare.
const MAX_STALE_RETRIES: usize = 8;

static REQUEST: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("lua/request.lua")));
static APPLY_RESPONSE: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/apply_response.lua")));
static REWIND_CURSOR: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/rewind_cursor.lua")));

/// A validated new credit request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewCreditRequest {
    /// Idempotency key.
    pub request_id: String,
    /// The user.
    pub uid: String,
    /// Asset symbol.
    pub asset: String,
    /// Signed change, never zero.
    pub change: Decimal,
    /// Chain of the custody assets (increases).
    pub chain: String,
    /// Custody address (increases).
    pub address: String,
}

/// What a request call did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestOutcome {
    /// Recorded and sent to the exchange.
    Created(CreditRecord),
    /// The same request was made before: its record, nothing written.
    Existing(CreditRecord),
}

/// A credit request's record, as stored at `mirror:credit:req:<id>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreditRecord {
    /// All fields, as strings.
    pub fields: HashMap<String, String>,
}

impl CreditRecord {
    /// The value of `field`, or "".
    pub fn field(&self, field: &str) -> &str {
        self.fields.get(field).map_or("", String::as_str)
    }
}

/// An exchange response as read from `mirror:credit:response` on R.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreditResponse {
    /// Its stream entry id on R.
    pub entry_id: String,
    /// The request answered.
    pub request_id: String,
    /// The `uid` field: must be the request's.
    pub uid: String,
    /// The `asset` field: must be the request's.
    pub asset: String,
    /// The `status` field as sent: `accepted` or `rejected` (anything
    /// else is recorded as an anomaly).
    pub status: String,
    /// The `ci` field as sent.
    pub ci: String,
    /// The `reject_reason` field ("" on accept).
    pub reject_reason: String,
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
            request_maxlen: streams.maxlen_for(REQUEST_STREAM),
            events_maxlen: streams.maxlen_for(EVENTS_STREAM),
        }
    }

    fn err(&self, e: redis::RedisError) -> CreditError {
        CreditError::Redis(RedisError::from_redis(self.redis.name(), e))
    }

    /// Records `request` and sends it to the exchange, or returns the
    /// existing record if the same request was made before.
    pub async fn request(&self, request: &NewCreditRequest) -> Result<RequestOutcome, CreditError> {
        let ci_key = ci_key(&request.uid, &request.asset);
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
                    return self.same_or_reused(request, record, &change);
                }
                return Err(CreditError::InsufficientCredit {
                    current: amount::format(current),
                    change,
                });
            }
            let (now_s, now_ms) = now();
            let reply: redis::RedisResult<Vec<String>> = REQUEST
                .key(request_key(&request.request_id))
                .key(&ci_key)
                .key(inflight_key(&request.uid, &request.asset))
                .key(REQUEST_STREAM)
                .key(EVENTS_STREAM)
                .arg(&request.request_id)
                .arg(&request.uid)
                .arg(&request.asset)
                .arg(&change)
                .arg(amount::format(ci))
                .arg(&request.chain)
                .arg(&request.address)
                .arg(&self.custodian)
                .arg(version.as_deref().unwrap_or("0"))
                .arg(stored.as_deref().unwrap_or(""))
                .arg(now_s)
                .arg(now_ms)
                .arg(self.request_maxlen)
                .arg(self.events_maxlen)
                .invoke_async(&mut *conn)
                .await;
            let mut outcome = match reply {
                Ok(outcome) => outcome.into_iter(),
                Err(e) if e.code() == Some("REQUEST_ID_REUSED") => {
                    return Err(CreditError::RequestIdReused(request.request_id.clone()));
                }
                Err(e) if e.code() == Some("CREDIT_REQUEST_IN_FLIGHT") => {
                    let pending = e.detail().unwrap_or_default().trim().to_string();
                    return Err(CreditError::InFlight { pending });
                }
                Err(e) => return Err(self.err(e)),
            };
            let verdict = outcome.next();
            let mut fields = HashMap::new();
            while let (Some(k), Some(v)) = (outcome.next(), outcome.next()) {
                fields.insert(k, v);
            }
            let record = CreditRecord { fields };
            match verdict.as_deref() {
                Some("created") => return Ok(RequestOutcome::Created(record)),
                Some("existing") => return Ok(RequestOutcome::Existing(record)),
                _ => continue, // stale: the CI changed; read it again
            }
        }
        Err(CreditError::Contention)
    }

    fn same_or_reused(
        &self,
        request: &NewCreditRequest,
        record: CreditRecord,
        change: &str,
    ) -> Result<RequestOutcome, CreditError> {
        let same = record.field("uid") == request.uid
            && record.field("asset") == request.asset
            && record.field("c_change") == change
            && record.field("chain") == request.chain
            && record.field("address") == request.address;
        if same {
            Ok(RequestOutcome::Existing(record))
        } else {
            Err(CreditError::RequestIdReused(request.request_id.clone()))
        }
    }

    /// Applies one exchange response on M, exactly once (see
    /// `lua/apply_response.lua`).
    pub async fn apply_response(
        &self,
        response: &CreditResponse,
    ) -> Result<ApplyOutcome, CreditError> {
        // Canonical, so the script's string comparison is exact: "10.50"
        // and "10.5" agree.
        let ci = amount::parse(&response.ci)
            .map(amount::format)
            .unwrap_or_default();
        let (uid, asset) = (&response.uid, &response.asset);
        let (_, now_ms) = now();
        let mut conn = self.redis.conn().await?;
        let outcome: String = APPLY_RESPONSE
            .key(request_key(&response.request_id))
            .key(ci_key(uid, asset))
            .key(inflight_key(uid, asset))
            .key(EVENTS_STREAM)
            .key(RESPONSE_CURSOR)
            .key(assets_key(uid))
            .arg(&response.entry_id)
            .arg(&response.request_id)
            .arg(&response.status)
            .arg(&response.reject_reason)
            .arg(ci)
            .arg(now_ms)
            .arg(self.events_maxlen)
            .arg(uid)
            .arg(asset)
            .invoke_async(&mut *conn)
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
    pub async fn record(&self, request_id: &str) -> Result<Option<CreditRecord>, CreditError> {
        let fields = CreditView::new(self.redis.clone())
            .request(request_id)
            .await?;
        Ok(fields.map(|fields| CreditRecord { fields }))
    }

    /// Where the WSP's reading of the response stream on R stands.
    pub async fn response_cursor(&self) -> Result<StreamId, CreditError> {
        let mut conn = self.redis.conn().await?;
        let cursor: Option<String> = conn.get(RESPONSE_CURSOR).await.map_err(|e| self.err(e))?;
        match cursor {
            None => Ok(StreamId::default()),
            Some(text) => text.parse().map_err(|()| CreditError::Corrupt {
                key: RESPONSE_CURSOR.into(),
                reason: format!("{text:?} is not a stream id"),
            }),
        }
    }

    /// Sets the response cursor back to the start if it is still `seen`
    /// (see `lua/rewind_cursor.lua`).
    pub async fn rewind_response_cursor(&self, seen: StreamId) -> Result<(), CreditError> {
        let mut conn = self.redis.conn().await?;
        let _: u64 = REWIND_CURSOR
            .key(RESPONSE_CURSOR)
            .arg(seen.to_string())
            .invoke_async(&mut *conn)
            .await
            .map_err(|e| self.err(e))?;
        Ok(())
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
    pub async fn request(&self, request_id: &str) -> Result<Option<Fields>, CreditError> {
        self.hash(request_key(request_id)).await
    }

    /// A user's Credit Inventory in `asset`, if it exists.
    pub async fn inventory(&self, uid: &str, asset: &str) -> Result<Option<Fields>, CreditError> {
        self.hash(ci_key(uid, asset)).await
    }

    /// Up to `limit` of a user's Credit Inventories, by asset, after the
    /// asset `after` ("" for the first page); true if there are more.
    pub async fn inventories(
        &self,
        uid: &str,
        after: &str,
        limit: usize,
    ) -> Result<(Vec<(String, Fields)>, bool), CreditError> {
        let mut conn = self.redis.conn().await?;
        let start = if after.is_empty() {
            "-".to_string()
        } else {
            format!("({after}")
        };
        let mut assets: Vec<String> = redis::cmd("ZRANGE")
            .arg(assets_key(uid))
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
        let mut pipe = redis::pipe();
        for asset in &assets {
            pipe.hgetall(ci_key(uid, asset));
        }
        let hashes: Vec<Fields> = if assets.is_empty() {
            Vec::new()
        } else {
            pipe.query_async(&mut *conn)
                .await
                .map_err(|e| self.err(e))?
        };
        Ok((assets.into_iter().zip(hashes).collect(), more))
    }
}
