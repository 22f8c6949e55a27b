//! Credit data on the WSP's master (M): the request and response scripts,
//! and reads on M or R (keys in [`super::keys`]).
//!
//! Money is computed here, in Rust, with exact decimals; the scripts only
//! compare and write strings (`lua/request.lua`, `lua/apply_response.lua`).

use redis::AsyncCommands;
use rust_decimal::Decimal;

use super::{
    custody::{self, Vault},
    error::CreditError,
    keys,
    model::{
        CreditInventory, CreditRequestRecord, CreditResponse, MalformedResponse, NewCreditRequest,
        Purpose,
    },
};
use crate::{
    amount,
    config::Config,
    redis::{
        Durability, RedisEndpoint, RedisError,
        script::{lua_script, query_scripts},
    },
    streams::{Fields, StreamId, follow},
    time,
};

/// Times a request is retried when the CI it was computed from changed
/// meanwhile. CI changes only through this store's scripts, one request per
/// (user, asset) at a time, so a second retry is already rare.
const MAX_STALE_RETRIES: usize = 8;

lua_script! {
    /// `lua/read_pair.lua`: one (user, asset), read atomically.
    struct ReadPair(include_str!("lua/read_pair.lua")) {
        keys { ci: String, vault: String, inflight: String, active: String }
        args { read_pledges: &'static str }
    }
}

lua_script! {
    /// `lua/request.lua`: records a new request and sends it, atomically,
    /// with its custody plan (pledge, release).
    struct Request<'a>(include_str!("lua/request.lua")) {
        keys {
            record: String, ci: String, inflight: String, requests: &'a str, events: &'a str,
            undecided: &'a str, vault: String, effect: String, vault_events: &'a str,
            user_pledges: String,
        }
        args {
            request_id: &'a str, uid: &'a str, asset: &'a str, change: &'a str, ci_after: String,
            chain: &'a str, address: &'a str, custodian: &'a str, ci_version: &'a str,
            ci_amount: &'a str, now_s: u64, now_ms: u64, events_maxlen: usize,
            purpose: &'a str, vault_version: u64, vault_total: String, plan_base: String,
            plan_accept: String, plan_reject: String, plan_unlocks: String,
            plan_remaining: String, exclusive: &'a str,
        }
    }
}

lua_script! {
    /// `lua/apply_response.lua`: applies one decision on M exactly once,
    /// with its custody plan.
    struct ApplyResponse<'a>(include_str!("lua/apply_response.lua")) {
        keys {
            record: String, inventory: String, inflight: String, events: &'a str, cursor: &'a str,
            assets: String, undecided: &'a str, vault: String, pledge: String, release: String,
            active: String, vault_events: &'a str,
        }
        args {
            entry_id: &'a str, request_id: &'a str, status: &'a str, reject_reason: &'a str,
            ci: String, now_ms: u64, events_maxlen: usize, uid: &'a str, asset: &'a str,
            response_custodian: &'a str, custodian: &'a str, retention_ms: u64, mode: &'a str,
            previous: &'a str,
        }
    }
}

lua_script! {
    /// `lua/skip_response.lua`: records a malformed response and moves past it.
    struct SkipResponse<'a>(include_str!("lua/skip_response.lua")) {
        keys { cursor: &'a str, events: &'a str }
        args {
            entry_id: &'a str, request_id: &'a str, reason: &'a str, now_ms: u64,
            events_maxlen: usize, previous: &'a str,
        }
    }
}

lua_script! {
    /// `lua/record_gap.lua`: records lost responses and goes on after them.
    struct RecordGap<'a>(include_str!("lua/record_gap.lua")) {
        keys { cursor: &'a str, gap: &'a str, events: &'a str }
        args { seen: String, resume: String, description: &'a str, now_ms: u64, events_maxlen: usize }
    }
}

lua_script! {
    /// `lua/republish.lua`: sends an undecided request again.
    struct Republish<'a>(include_str!("lua/republish.lua")) {
        keys { record: String, requests: &'a str, undecided: &'a str, events: &'a str }
        args { request_id: &'a str, why: &'a str, now_ms: u64, events_maxlen: usize }
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

impl ApplyOutcome {
    fn of(reply: &str) -> Self {
        match reply {
            "applied" => Self::Applied,
            "duplicate" => Self::Duplicate,
            "unknown" => Self::Unknown,
            "final" => Self::AlreadyFinal,
            _ => Self::Anomaly,
        }
    }
}

/// An entry of the response stream on R, as [`CreditStore::apply_responses`]
/// takes it.
#[derive(Debug)]
pub enum ResponseEntry {
    /// A well-formed response, to apply.
    Response(CreditResponse),
    /// An entry that is no response, to record and pass.
    Malformed(StreamId, MalformedResponse),
}

impl ResponseEntry {
    /// Its id in the response stream.
    pub fn id(&self) -> StreamId {
        match self {
            Self::Malformed(id, _) => *id,
            Self::Response(d) => d.entry_id.parse().unwrap_or_default(),
        }
    }
}

/// What became of one [`ResponseEntry`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryOutcome {
    /// The response's outcome.
    Applied(ApplyOutcome),
    /// The malformed entry was passed; `recorded` unless it was before.
    Skipped {
        /// An anomaly was recorded now.
        recorded: bool,
    },
    /// Nothing done: the cursor on M is not at the entry before this one
    /// (that one failed, or M's cursor is not where the batch began).
    Behind,
}

/// What `lua/read_pair.lua` answers: CI's version and amount, the vault,
/// the pending request, the active pledges and their remaining.
type PairReply = (
    Option<String>,
    Option<String>,
    Fields,
    Option<String>,
    Vec<(String, String)>,
);

/// One (user, asset) as of one moment ([`CreditStore::pair_state`]).
#[derive(Debug, Clone)]
pub struct PairState {
    /// CI's `version` as stored (`None`: no CI yet).
    pub ci_version: Option<String>,
    /// CI's `amount` as stored.
    pub ci_stored: Option<String>,
    /// CI's amount (zero if none).
    pub ci: Decimal,
    /// The vault.
    pub vault: Vault,
    /// The pending credit request, if any.
    pub inflight: Option<String>,
    /// Active pledges, oldest first.
    pub active: Vec<custody::ActivePledge>,
}

/// Whether [`CreditStore::pair_state`] reads the active pledges: only a
/// release's plan and a settlement use them, and each costs a read on M (a
/// user may hold many).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pledges {
    /// Read them, oldest first.
    Read,
    /// Leave [`PairState::active`] empty.
    Skip,
}

/// Credit data on M.
#[derive(Clone)]
pub struct CreditStore {
    redis: RedisEndpoint,
    custodian: String,
    request_maxlen: usize,
    events_maxlen: usize,
    retention_ms: u64,
    durability: Durability,
    /// `pledge.exclusive_credit`: plain requests are refused for a (user,
    /// asset) that has a vault.
    exclusive_credit: bool,
}

/// An open response gap (see `lua/record_gap.lua`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseGap {
    /// When it was first seen, unix ms: requests undecided then may have
    /// lost their decision.
    pub detected_ms: u64,
    /// What was lost.
    pub description: String,
}

impl CreditStore {
    /// A store on M for `custodian` (the WSP's id in the protocol).
    pub fn new(redis: RedisEndpoint, config: &Config) -> Self {
        Self {
            durability: Durability::new(redis.clone(), &config.redis.durability),
            redis,
            custodian: config.credit.custodian.clone(),
            request_maxlen: config.streams.maxlen_for(keys::REQUEST_STREAM),
            events_maxlen: config.streams.maxlen_for(keys::EVENTS_STREAM),
            retention_ms: config.credit.request_retention.as_millis() as u64,
            exclusive_credit: config.pledge.exclusive_credit,
        }
    }

    fn err(&self, e: redis::RedisError) -> CreditError {
        CreditError::Redis(RedisError::from_redis(self.redis.name(), e))
    }

    /// Records `request` and sends it to the exchange, or returns the
    /// existing record if the same request was made before.
    pub async fn request(&self, request: &NewCreditRequest) -> Result<RequestOutcome, CreditError> {
        let (uid, asset) = (&request.uid, &request.asset);
        let ci_key = keys::ci(uid, asset);
        let vault_key = keys::vault(uid, asset);
        let change = amount::format_change(request.change);
        let effect_key = match request.purpose {
            Purpose::Release => keys::release(&request.request_id),
            Purpose::Plain | Purpose::Pledge => keys::pledge(&request.request_id),
        };
        let pledges = match request.purpose {
            Purpose::Release => Pledges::Read,
            Purpose::Plain | Purpose::Pledge => Pledges::Skip,
        };
        for _ in 0..MAX_STALE_RETRIES {
            let PairState {
                ci_version,
                ci_stored: stored,
                ci: current,
                vault,
                inflight,
                active,
            } = self.pair_state(uid, asset, pledges).await?;
            // Another request in flight for the pair wins over the checks
            // below (its decision may change what they see), but not over
            // this request's own record (a retry returns it).
            if let Some(pending) = inflight.filter(|p| *p != request.request_id) {
                if let Some(record) = self.record(&request.request_id).await? {
                    return same_or_reused(request, record, &change);
                }
                return Err(CreditError::InFlight { pending });
            }
            // Refusals by state: an existing record for this id wins over
            // them, so a retry of a request that was fine when made (an
            // accepted decrease, a pledge that locked what was available)
            // still returns it.
            let refused = match self.check(request, current, &vault, &change) {
                Ok(checked) => Ok(checked),
                Err(e) => match self.record(&request.request_id).await? {
                    Some(record) => return same_or_reused(request, record, &change),
                    None => Err(e),
                },
            };
            let ci = refused?;
            let plan = custody::plan(request.purpose, request.change.abs(), &vault, &active)?;
            let now = time::now();
            let mut conn = self.durability.conn(&self.redis).await?;
            let reply: redis::RedisResult<(String, Fields, usize)> = Request {
                record: keys::request(&request.request_id),
                ci: ci_key.clone(),
                inflight: keys::inflight(uid, asset),
                requests: keys::REQUEST_STREAM,
                events: keys::EVENTS_STREAM,
                undecided: keys::UNDECIDED,
                vault: vault_key.clone(),
                effect: effect_key.clone(),
                vault_events: keys::VAULT_EVENTS,
                user_pledges: keys::user_pledges(uid),
                request_id: &request.request_id,
                uid,
                asset,
                change: &change,
                ci_after: amount::format(ci),
                chain: &request.chain,
                address: &request.address,
                custodian: &self.custodian,
                ci_version: ci_version.as_deref().unwrap_or("0"),
                ci_amount: stored.as_deref().unwrap_or(""),
                now_s: now.s,
                now_ms: now.ms,
                events_maxlen: self.events_maxlen,
                purpose: request.purpose.as_str(),
                vault_version: vault.version,
                vault_total: amount::format(vault.total),
                plan_base: plan
                    .as_ref()
                    .map(|p| custody::pair(p.base))
                    .unwrap_or_default(),
                plan_accept: plan
                    .as_ref()
                    .map(|p| custody::pair(p.accept))
                    .unwrap_or_default(),
                plan_reject: plan
                    .as_ref()
                    .map(|p| custody::pair(p.reject))
                    .unwrap_or_default(),
                plan_unlocks: plan.as_ref().map(|p| p.unlocks.clone()).unwrap_or_default(),
                plan_remaining: plan
                    .as_ref()
                    .map(|p| p.remaining.clone())
                    .unwrap_or_default(),
                exclusive: if self.exclusive_credit { "1" } else { "" },
            }
            .invoke(&mut *conn)
            .await;
            let (verdict, fields, length) = match reply {
                Ok(reply) => reply,
                Err(e) if e.code() == Some("REQUEST_ID_REUSED") => {
                    return Err(CreditError::RequestIdReused(request.request_id.clone()));
                }
                Err(e) if e.code() == Some("CREDIT_REQUEST_IN_FLIGHT") => {
                    let pending = e.detail().unwrap_or_default().trim().to_string();
                    return Err(CreditError::InFlight { pending });
                }
                Err(e) if e.code() == Some("CREDIT_MANAGED_BY_PLEDGES") => {
                    return Err(CreditError::ManagedByPledges {
                        uid: uid.clone(),
                        asset: asset.clone(),
                    });
                }
                Err(e) => return Err(self.err(e)),
            };
            let record = CreditRequestRecord::parse(&fields);
            let outcome = match verdict.as_str() {
                "created" => RequestOutcome::Created(record),
                "existing" => RequestOutcome::Existing(record),
                _ => continue, // stale: CI or vault changed; read them again
            };
            // A retry waits too: what it returns must be as durable as a
            // first answer would have been.
            self.durability.wait(&mut *conn).await?;
            drop(conn);
            if length > self.request_maxlen
                && let Err(e) = self.trim_requests().await
            {
                tracing::warn!(error = %crate::error::ErrorChain(&e), "cannot trim the request stream; will try again");
            }
            return Ok(outcome);
        }
        Err(CreditError::Contention)
    }

    /// Applies one exchange response on M, exactly once (see
    /// `lua/apply_response.lua`).
    pub async fn apply_response(
        &self,
        response: &CreditResponse,
    ) -> Result<ApplyOutcome, CreditError> {
        self.decide(response, true).await
    }

    /// Applies a decision: a response from R, or an operator's when
    /// `from_r` is false (then the response's fields are not checked and
    /// the cursor does not move).
    async fn decide(&self, d: &CreditResponse, from_r: bool) -> Result<ApplyOutcome, CreditError> {
        let mut conn = self.durability.conn(&self.redis).await?;
        let outcome: String = self
            .apply_call(d, from_r, time::now().ms, "")
            .invoke(&mut *conn)
            .await
            .map_err(|e| self.err(e))?;
        let applied = ApplyOutcome::of(&outcome);
        if applied == ApplyOutcome::Applied && !from_r {
            self.durability.wait(&mut *conn).await?;
        }
        Ok(applied)
    }

    /// The script call that applies `d` (see [`Self::decide`]).
    fn apply_call<'a>(
        &'a self,
        d: &'a CreditResponse,
        from_r: bool,
        now_ms: u64,
        previous: &'a str,
    ) -> ApplyResponse<'a> {
        let (uid, asset) = (&d.uid, &d.asset);
        ApplyResponse {
            record: keys::request(&d.request_id),
            inventory: keys::ci(uid, asset),
            inflight: keys::inflight(uid, asset),
            events: keys::EVENTS_STREAM,
            cursor: keys::RESPONSE_CURSOR,
            assets: keys::assets(uid),
            undecided: keys::UNDECIDED,
            vault: keys::vault(uid, asset),
            pledge: keys::pledge(&d.request_id),
            release: keys::release(&d.request_id),
            active: keys::active_pledges(uid, asset),
            vault_events: keys::VAULT_EVENTS,
            entry_id: &d.entry_id,
            request_id: &d.request_id,
            status: &d.status,
            reject_reason: &d.reject_reason,
            // Canonical, so the script's string comparison is exact: "10.50"
            // and "10.5" agree.
            ci: amount::parse(&d.ci).map(amount::format).unwrap_or_default(),
            now_ms,
            events_maxlen: self.events_maxlen,
            uid,
            asset,
            response_custodian: &d.custodian,
            custodian: &self.custodian,
            retention_ms: self.retention_ms,
            mode: if from_r { "response" } else { "operator" },
            previous,
        }
    }

    /// The script call that records a malformed response and moves past it.
    fn skip_call<'a>(
        &self,
        entry_id: &'a str,
        malformed: &'a MalformedResponse,
        now_ms: u64,
        previous: &'a str,
    ) -> SkipResponse<'a> {
        SkipResponse {
            cursor: keys::RESPONSE_CURSOR,
            events: keys::EVENTS_STREAM,
            entry_id,
            request_id: &malformed.request_id,
            reason: &malformed.reason,
            now_ms,
            events_maxlen: self.events_maxlen,
            previous,
        }
    }

    /// Applies a batch of entries read from the response stream on R, in
    /// order, each exactly once, in one round trip: one pipeline of one
    /// script per entry (each atomic and moving the cursor on its own, as
    /// [`Self::apply_response`] and [`Self::skip_response`] do one at a
    /// time). If the pipeline fails midway, what ran is behind the cursor
    /// and the next read goes on from there. `after` is where the batch was
    /// read after: if the cursor on M is older (M lost writes), nothing is
    /// applied ([`EntryOutcome::Behind`]). One outcome per entry.
    pub async fn apply_responses(
        &self,
        after: StreamId,
        entries: &[ResponseEntry],
    ) -> Result<Vec<Result<EntryOutcome, CreditError>>, CreditError> {
        if entries.is_empty() {
            return Ok(Vec::new());
        }
        let now_ms = time::now().ms;
        let ids: Vec<String> = entries
            .iter()
            .map(|e| match e {
                ResponseEntry::Malformed(id, _) => id.to_string(),
                ResponseEntry::Response(d) => d.entry_id.clone(),
            })
            .collect();
        let mut pipe = redis::pipe();
        pipe.ignore_errors();
        // Each script does nothing unless the cursor is at the entry before
        // it: a failed one is never passed, and the first is not applied
        // if M's cursor is not where the batch was read after (it went
        // back: M lost writes).
        let after = if after == StreamId::default() {
            String::new()
        } else {
            after.to_string()
        };
        let previous = std::iter::once(after.as_str()).chain(ids.iter().map(String::as_str));
        for ((entry, id), previous) in entries.iter().zip(&ids).zip(previous) {
            match entry {
                ResponseEntry::Response(d) => {
                    self.apply_call(d, true, now_ms, previous).add_to(&mut pipe);
                }
                ResponseEntry::Malformed(_, m) => {
                    self.skip_call(id, m, now_ms, previous).add_to(&mut pipe);
                }
            }
        }
        let mut conn = self.redis.conn().await?;
        let replies = query_scripts(&mut *conn, &pipe, |pipe| {
            ApplyResponse::load_into(pipe);
            SkipResponse::load_into(pipe);
        })
        .await
        .map_err(|e| self.err(e))?;
        Ok(entries
            .iter()
            .zip(replies)
            .map(|(entry, reply)| {
                let text: String = match reply {
                    redis::Value::ServerError(e) => return Err(self.err(e.into())),
                    reply => redis::FromRedisValue::from_redis_value(reply)
                        .map_err(|e| self.err(e.into()))?,
                };
                Ok(match entry {
                    _ if text == "behind" => EntryOutcome::Behind,
                    ResponseEntry::Response(_) => EntryOutcome::Applied(ApplyOutcome::of(&text)),
                    ResponseEntry::Malformed(..) => EntryOutcome::Skipped {
                        recorded: text == "recorded",
                    },
                })
            })
            .collect())
    }

    /// Everything a credit request or a settlement of one (user, asset) is
    /// computed from, read atomically (`lua/read_pair.lua`): CI, the vault,
    /// the pending request, the active pledges oldest first (if `pledges`
    /// says so).
    pub async fn pair_state(
        &self,
        uid: &str,
        asset: &str,
        pledges: Pledges,
    ) -> Result<PairState, CreditError> {
        let ci_key = keys::ci(uid, asset);
        let vault_key = keys::vault(uid, asset);
        let mut conn = self.redis.conn().await?;
        let (ci_version, ci_stored, vault, inflight, active): PairReply = ReadPair {
            ci: ci_key.clone(),
            vault: vault_key.clone(),
            inflight: keys::inflight(uid, asset),
            active: keys::active_pledges(uid, asset),
            read_pledges: if pledges == Pledges::Read { "1" } else { "0" },
        }
        .invoke(&mut *conn)
        .await
        .map_err(|e| self.err(e))?;
        let ci = match &ci_stored {
            Some(text) => amount::parse(text).map_err(|e| CreditError::Corrupt {
                key: ci_key,
                reason: format!("amount: {e}"),
            })?,
            None => Decimal::ZERO,
        };
        let active = active
            .into_iter()
            .map(|(pledge_id, left)| {
                let remaining = amount::parse(&left).map_err(|e| CreditError::Corrupt {
                    key: keys::pledge(&pledge_id),
                    reason: format!("remaining: {e}"),
                })?;
                Ok(custody::ActivePledge {
                    pledge_id,
                    remaining,
                })
            })
            .collect::<Result<_, CreditError>>()?;
        Ok(PairState {
            ci_version,
            ci_stored,
            ci,
            vault: Vault::parse(&vault_key, &vault)?,
            inflight,
            active,
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
        follow::read_cursor(&self.redis, keys::RESPONSE_CURSOR)
            .await?
            .map_err(|text| CreditError::Corrupt {
                key: keys::RESPONSE_CURSOR.into(),
                reason: format!("{} is not a stream id", crate::validate::echo(&text)),
            })
    }

    /// Sets the response cursor back to the start if it is still `seen`.
    pub async fn rewind_response_cursor(&self, seen: StreamId) -> Result<(), CreditError> {
        Ok(follow::rewind_cursor(&self.redis, keys::RESPONSE_CURSOR, seen).await?)
    }

    /// Records responses lost on R and goes on from `resume` (see
    /// `lua/record_gap.lua`).
    pub async fn record_gap(
        &self,
        seen: StreamId,
        resume: StreamId,
        description: &str,
    ) -> Result<bool, CreditError> {
        let mut conn = self.redis.conn().await?;
        let recorded: u64 = RecordGap {
            cursor: keys::RESPONSE_CURSOR,
            gap: keys::RESPONSE_GAP,
            events: keys::EVENTS_STREAM,
            seen: seen.to_string(),
            resume: resume.to_string(),
            description,
            now_ms: time::now().ms,
            events_maxlen: self.events_maxlen,
        }
        .invoke(&mut *conn)
        .await
        .map_err(|e| self.err(e))?;
        Ok(recorded == 1)
    }

    /// The open response gap, if any.
    pub async fn response_gap(&self) -> Result<Option<ResponseGap>, CreditError> {
        let mut conn = self.redis.conn().await?;
        let (detected, description): (Option<u64>, Option<String>) = redis::cmd("HMGET")
            .arg(keys::RESPONSE_GAP)
            .arg("detected_ms")
            .arg("description")
            .query_async(&mut *conn)
            .await
            .map_err(|e| self.err(e))?;
        Ok(detected.map(|detected_ms| ResponseGap {
            detected_ms,
            description: description.unwrap_or_default(),
        }))
    }

    /// Closes the open gap if no request undecided when it was detected is
    /// undecided still; true if there is no gap any more.
    pub async fn close_gap_if_resolved(&self, gap: &ResponseGap) -> Result<bool, CreditError> {
        let mut conn = self.redis.conn().await?;
        let waiting: Vec<String> = redis::cmd("ZRANGE")
            .arg(keys::UNDECIDED)
            .arg("-inf")
            .arg(gap.detected_ms)
            .arg("BYSCORE")
            .arg("LIMIT")
            .arg(0)
            .arg(1)
            .query_async(&mut *conn)
            .await
            .map_err(|e| self.err(e))?;
        if !waiting.is_empty() {
            return Ok(false);
        }
        let () = conn
            .del(keys::RESPONSE_GAP)
            .await
            .map_err(|e| self.err(e))?;
        Ok(true)
    }

    /// Trims the request stream, never past the oldest undecided request:
    /// entries before it are all decided (answered by the exchange), so
    /// nothing the exchange still needs goes. With nothing undecided, to
    /// about `streams.maxlen`.
    pub async fn trim_requests(&self) -> Result<(), CreditError> {
        let mut conn = self.redis.conn().await?;
        let oldest: Vec<(String, f64)> = redis::cmd("ZRANGE")
            .arg(keys::UNDECIDED)
            .arg(0)
            .arg(0)
            .arg("WITHSCORES")
            .query_async(&mut *conn)
            .await
            .map_err(|e| self.err(e))?;
        let mut trim = redis::cmd("XTRIM");
        trim.arg(keys::REQUEST_STREAM);
        match oldest.first() {
            // Keeps every entry of the oldest undecided request's millisecond.
            Some((_, ms)) => trim.arg("MINID").arg("~").arg(format!("{}-0", *ms as u64)),
            None => trim.arg("MAXLEN").arg("~").arg(self.request_maxlen),
        };
        let _: u64 = trim
            .query_async(&mut *conn)
            .await
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// Up to `limit` undecided requests from position `start` (oldest
    /// first), with the stream entry each is carried by. Positions shift as
    /// requests are decided: a scan by position may miss one in a round,
    /// never for good.
    pub async fn undecided(
        &self,
        start: usize,
        limit: usize,
    ) -> Result<Vec<(String, Option<StreamId>)>, CreditError> {
        let mut conn = self.redis.conn().await?;
        let ids: Vec<String> = redis::cmd("ZRANGE")
            .arg(keys::UNDECIDED)
            .arg(start)
            .arg(start + limit.max(1) - 1)
            .query_async(&mut *conn)
            .await
            .map_err(|e| self.err(e))?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for id in &ids {
            pipe.hget(keys::request(id), "entry_id");
        }
        let entries: Vec<Option<String>> = pipe
            .query_async(&mut *conn)
            .await
            .map_err(|e| self.err(e))?;
        Ok(ids
            .into_iter()
            .zip(entries)
            .map(|(id, entry)| (id, entry.and_then(|e| e.parse().ok())))
            .collect())
    }

    /// Which of `ids` are still entries of the request stream.
    pub async fn entries_exist(&self, ids: &[StreamId]) -> Result<Vec<bool>, CreditError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut conn = self.redis.conn().await?;
        let mut pipe = redis::pipe();
        for id in ids {
            pipe.cmd("XRANGE")
                .arg(keys::REQUEST_STREAM)
                .arg(id.to_string())
                .arg(id.to_string())
                .arg("COUNT")
                .arg(1);
        }
        let found: Vec<redis::Value> = pipe
            .query_async(&mut *conn)
            .await
            .map_err(|e| self.err(e))?;
        Ok(found
            .into_iter()
            .map(|v| matches!(v, redis::Value::Array(a) if !a.is_empty()))
            .collect())
    }

    /// Sends an undecided request again (see `lua/republish.lua`): its new
    /// entry, or `Err(status)` if it is not pending ("" if unknown).
    pub async fn republish(
        &self,
        request_id: &str,
        why: &str,
    ) -> Result<Result<StreamId, String>, CreditError> {
        let mut conn = self.durability.conn(&self.redis).await?;
        let (verdict, detail): (String, String) = Republish {
            record: keys::request(request_id),
            requests: keys::REQUEST_STREAM,
            undecided: keys::UNDECIDED,
            events: keys::EVENTS_STREAM,
            request_id,
            why,
            now_ms: time::now().ms,
            events_maxlen: self.events_maxlen,
        }
        .invoke(&mut *conn)
        .await
        .map_err(|e| self.err(e))?;
        self.durability.wait(&mut *conn).await?;
        Ok(match verdict.as_str() {
            "republished" => Ok(detail.parse().unwrap_or_default()),
            _ => Err(detail),
        })
    }

    /// Rejects a pending request as an operator's decision, with its
    /// custody effect (a pledge unlocks), as a rejection from the exchange
    /// would be applied; `Err(status)` if it is not pending.
    pub async fn reject_pending(
        &self,
        record: &CreditRequestRecord,
        reason: &str,
    ) -> Result<Result<(), String>, CreditError> {
        let decision = CreditResponse {
            entry_id: String::new(),
            request_id: record.request_id.clone(),
            uid: record.uid.clone(),
            asset: record.asset.clone(),
            custodian: self.custodian.clone(),
            status: "rejected".into(),
            ci: String::new(),
            reject_reason: reason.to_string(),
        };
        Ok(match self.decide(&decision, false).await? {
            ApplyOutcome::Applied => Ok(()),
            _ => Err(self
                .record(&record.request_id)
                .await?
                .map(|r| r.status.as_str().to_string())
                .unwrap_or_default()),
        })
    }
}

impl CreditStore {
    /// The state checks of a new request against what was read; the CI
    /// after the change.
    fn check(
        &self,
        request: &NewCreditRequest,
        current: Decimal,
        vault: &Vault,
        change: &str,
    ) -> Result<Decimal, CreditError> {
        // A release says what it is short of: pledged balance (which is
        // what bounds it), not credit.
        let size = request.change.abs();
        if request.purpose == Purpose::Release && size > vault.pledged {
            return Err(CreditError::InsufficientPledged {
                pledged: amount::format(vault.pledged),
                amount: amount::format(size),
            });
        }
        let ci = amount::add(current, request.change).map_err(|_| CreditError::TooLarge {
            current: amount::format(current),
            change: change.to_string(),
        })?;
        if ci < Decimal::ZERO {
            return Err(CreditError::InsufficientCredit {
                current: amount::format(current),
                change: change.to_string(),
            });
        }
        if request.purpose == Purpose::Pledge && size > vault.available() {
            return Err(CreditError::InsufficientAvailableBalance {
                available: amount::format(vault.available()),
                amount: amount::format(size),
            });
        }
        Ok(ci)
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
        && record.address == request.address
        && record.purpose == request.purpose;
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
        for shape in [
            Request::SHAPE,
            ReadPair::SHAPE,
            ApplyResponse::SHAPE,
            SkipResponse::SHAPE,
            RecordGap::SHAPE,
            Republish::SHAPE,
        ] {
            shape.check();
        }
    }
}
