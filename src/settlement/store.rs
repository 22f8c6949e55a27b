//! Settlement data: [`SettlementView`], the reads (on M for a WSP gateway,
//! on R, where the WSP's records replicate, otherwise), and
//! [`SettlementStore`], the WSP's writes on M, one script per state change
//! (`lua/record_report.lua`, `lua/record_cycle.lua`, `lua/verdict.lua`,
//! `lua/cosign.lua`).

use rust_decimal::Decimal;
use serde_json::{Value, json};

use super::{
    cycle,
    error::SettlementError,
    keys,
    model::{
        CycleRecord, CycleStatus, DisputedLine, Incoming, Refusal, Report, ReportRecord,
        ReportStatus, format_net,
    },
};
use crate::{
    amount,
    config::Config,
    credit::{
        self,
        custody::{self, SettleError},
        store::CreditStore,
    },
    crypto::merkle::Hash,
    redis::{
        Durability, RedisEndpoint, RedisError,
        page::{self, PageToken},
        script::lua_script,
    },
    streams::{Fields, StreamId, follow},
    time,
};

lua_script! {
    /// `lua/record_report.lua`: a report entry of R recorded on M.
    pub struct RecordReport<'a>(include_str!("lua/record_report.lua")) {
        keys {
            cursor: &'a str, record: String, user: String, cycle_reports: String,
            cycle: String, events: &'a str, superseded: String, known_user: String,
        }
        args {
            entry_id: String, mode: &'a str, report_id: &'a str, uid: &'a str, cycle_id: &'a str,
            data: String, digest: &'a str, salt: &'a str, supersedes: &'a str, timestamp: u64,
            reason: &'a str, now_ms: u64, events_maxlen: usize, refused_retention_ms: u64,
            eod_ms: i64,
        }
    }
}

lua_script! {
    /// `lua/record_cycle.lua`: a cycle summary of R recorded on M.
    pub struct RecordCycle<'a>(include_str!("lua/record_cycle.lua")) {
        keys { cursor: &'a str, cycle: String, leaves: String, events: &'a str, due: &'a str }
        args {
            entry_id: String, mode: &'a str, cycle_id: &'a str, status: &'a str, reason: &'a str,
            size: u64, root: String, checkpoint: &'a str, origin: &'a str, leaves_bytes: Vec<u8>,
            reports: u64, now_ms: u64, events_maxlen: usize,
        }
    }
}

lua_script! {
    /// `lua/verdict.lua`: the WSP's verdict, applied.
    struct Verdict<'a>(include_str!("lua/verdict.lua")) {
        keys {
            record: String, cycle: String, confirmations: &'a str, events: &'a str,
            credit_events: &'a str, vault_events: &'a str, due: &'a str, assets: String,
            pledges: String, ..pairs: Vec<String>
        }
        args {
            report_id: &'a str, verdict: &'a str, reason: &'a str, now_ms: u64, now_s: u64,
            events_maxlen: usize, plan: String, details: String, disputed: String,
            applied: String, trim_below: String,
        }
    }
}

lua_script! {
    /// `lua/cosign.lua`: the WSP's countersignature.
    struct Cosign<'a>(include_str!("lua/cosign.lua")) {
        keys { cycle: String, events: &'a str, due: &'a str }
        args {
            cycle_id: &'a str, seen: &'a str, cosigned: &'a str, now_ms: u64,
            events_maxlen: usize,
        }
    }
}

/// Times a verdict is retried when credit or custody changed under it.
const MAX_STALE_RETRIES: usize = 8;
/// Records read per round trip when a cycle's reports are read.
const READ_BATCH: usize = 1000;

/// What ListSettlementReports selects.
#[derive(Debug, Clone, Default)]
pub struct ListFilter {
    /// Only this user's ("" any).
    pub uid: String,
    /// Only this cycle's ("" any).
    pub cycle_id: String,
}

/// Reads of settlement data, on M or R.
#[derive(Clone)]
pub struct SettlementView {
    redis: RedisEndpoint,
}

impl SettlementView {
    /// Reads on `redis`.
    pub fn new(redis: RedisEndpoint) -> Self {
        Self { redis }
    }

    fn err(&self, e: redis::RedisError) -> SettlementError {
        SettlementError::Redis(RedisError::from_redis(self.redis.name(), e))
    }

    fn corrupt(key: String) -> impl FnOnce(String) -> SettlementError {
        move |reason| SettlementError::Corrupt { key, reason }
    }

    /// A report's record, if any.
    pub async fn report(&self, report_id: &str) -> Result<Option<ReportRecord>, SettlementError> {
        let key = keys::report(report_id);
        let mut conn = self.redis.conn().await?;
        let fields: Fields = redis::cmd("HGETALL")
            .arg(&key)
            .query_async(&mut *conn)
            .await
            .map_err(|e| self.err(e))?;
        ReportRecord::parse(&fields).map_err(Self::corrupt(key))
    }

    /// A page of reports, newest first.
    pub async fn list(
        &self,
        filter: &ListFilter,
        after: Option<PageToken>,
        limit: usize,
    ) -> Result<(Vec<ReportRecord>, Option<PageToken>), SettlementError> {
        // A user's index is the smaller one when both are given.
        let index = if filter.uid.is_empty() {
            keys::cycle_reports(&filter.cycle_id)
        } else {
            keys::user_reports(&filter.uid)
        };
        let mut conn = self.redis.conn().await?;
        page::newest_first(
            &mut *conn,
            &index,
            keys::report,
            |fields: &Fields| ReportRecord::parse(fields).ok().flatten(),
            |r: &ReportRecord| {
                let report = r.report.as_ref();
                (filter.cycle_id.is_empty()
                    || report.is_some_and(|p| p.cycle_id == filter.cycle_id))
                    && (filter.uid.is_empty() || report.is_some_and(|p| p.uid == filter.uid))
            },
            after,
            limit,
        )
        .await
        .map_err(|e| self.err(e))
    }

    /// A cycle's record, if any.
    pub async fn cycle(&self, cycle_id: &str) -> Result<Option<CycleRecord>, SettlementError> {
        let mut conn = self.redis.conn().await?;
        let fields: Fields = redis::cmd("HGETALL")
            .arg(keys::cycle(cycle_id))
            .query_async(&mut *conn)
            .await
            .map_err(|e| self.err(e))?;
        Ok(CycleRecord::parse(cycle_id, &fields))
    }

    /// A closed cycle's leaf hashes, in tree order.
    pub async fn leaves(&self, cycle_id: &str) -> Result<Option<Vec<Hash>>, SettlementError> {
        let key = keys::leaves(cycle_id);
        let mut conn = self.redis.conn().await?;
        let bytes: Option<Vec<u8>> = redis::cmd("GET")
            .arg(&key)
            .query_async(&mut *conn)
            .await
            .map_err(|e| self.err(e))?;
        match bytes {
            None => Ok(None),
            Some(bytes) => cycle::parse_leaves(&bytes)
                .map(Some)
                .ok_or_else(|| Self::corrupt(key)("not a list of 32-byte hashes".into())),
        }
    }

    /// A cycle's recorded reports (the tree's input): how many the cycle
    /// counts, and each with its salt. At most `max`.
    pub async fn cycle_input(
        &self,
        cycle_id: &str,
        max: usize,
    ) -> Result<(u64, Vec<(Report, String)>), SettlementError> {
        let mut conn = self.redis.conn().await?;
        let (counted, ids): (Option<u64>, Vec<String>) = redis::pipe()
            .hget(keys::cycle(cycle_id), "reports")
            .zrange(keys::cycle_reports(cycle_id), 0, -1)
            .query_async(&mut *conn)
            .await
            .map_err(|e| self.err(e))?;
        if ids.len() > max {
            return Err(SettlementError::CycleTooLarge {
                cycle: cycle_id.to_string(),
                count: ids.len() as u64,
                max,
            });
        }
        let mut reports = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(READ_BATCH) {
            let mut pipe = redis::pipe();
            for id in chunk {
                pipe.hgetall(keys::report(id));
            }
            let rows: Vec<Fields> = pipe
                .query_async(&mut *conn)
                .await
                .map_err(|e| self.err(e))?;
            for (id, fields) in chunk.iter().zip(rows) {
                let record = ReportRecord::parse(&fields)
                    .map_err(Self::corrupt(keys::report(id)))?
                    .filter(|r| r.status != ReportStatus::Refused);
                if let Some(ReportRecord {
                    report: Some(report),
                    salt,
                    ..
                }) = record
                {
                    reports.push((report, salt));
                }
            }
        }
        Ok((counted.unwrap_or(0), reports))
    }

    /// Where a WSP follower's cursor stands.
    pub async fn cursor(&self, key: &'static str) -> Result<StreamId, SettlementError> {
        follow::read_cursor(&self.redis, key)
            .await?
            .map_err(|text| SettlementError::Corrupt {
                key: key.into(),
                reason: format!("{} is not a stream id", crate::validate::echo(&text)),
            })
    }
}

/// What the WSP decides on a report.
#[derive(Debug, Clone)]
pub enum Decision {
    /// Apply every net position.
    Complete,
    /// Apply nothing, for this reason.
    Fail(String),
    /// Dispute these lines, for this reason.
    Dispute(Vec<DisputedLine>, String),
}

/// A verdict's result: the record after it, and the cycle's state.
#[derive(Debug, Clone)]
pub struct Decided {
    /// The report as recorded now.
    pub record: ReportRecord,
    /// True if this call recorded the verdict (false: it was there).
    pub applied: bool,
    /// The cycle is due for its countersignature.
    pub cosign_due: bool,
}

/// The WSP's writes on M.
#[derive(Clone)]
pub struct SettlementStore {
    redis: RedisEndpoint,
    view: SettlementView,
    credit: CreditStore,
    durability: Durability,
    events_maxlen: usize,
    credit_events_maxlen: usize,
    refused_retention_ms: u64,
    confirmation_retention_ms: u64,
}

impl SettlementStore {
    /// The store on M.
    pub fn new(redis: RedisEndpoint, config: &Config) -> Self {
        let s = &config.settlement;
        Self {
            view: SettlementView::new(redis.clone()),
            credit: CreditStore::new(redis.clone(), config),
            durability: Durability::new(redis.clone(), &config.redis.durability),
            events_maxlen: config.streams.maxlen_for(keys::EVENTS_STREAM),
            credit_events_maxlen: config.streams.maxlen_for(credit::keys::EVENTS_STREAM),
            refused_retention_ms: s.refused_retention.as_millis() as u64,
            confirmation_retention_ms: s.confirmation_retention.as_millis() as u64,
            redis,
        }
    }

    /// The reads, on M.
    pub fn view(&self) -> &SettlementView {
        &self.view
    }

    fn err(&self, e: redis::RedisError) -> SettlementError {
        SettlementError::Redis(RedisError::from_redis(self.redis.name(), e))
    }

    /// Sets a follower's cursor back to the start if it is still `seen`.
    pub async fn rewind(&self, key: &'static str, seen: StreamId) -> Result<(), SettlementError> {
        Ok(follow::rewind_cursor(&self.redis, key, seen).await?)
    }

    /// Records a report entry read from R (see `lua/record_report.lua`).
    pub async fn record_report(
        &self,
        entry_id: StreamId,
        read: &Result<Incoming, Refusal>,
    ) -> Result<String, SettlementError> {
        let now = time::now();
        let (
            mode,
            report_id,
            uid,
            cycle_id,
            data,
            digest,
            salt,
            supersedes,
            timestamp,
            reason,
            eod,
        ) = match read {
            Ok(i) => (
                "record",
                i.report.report_id.as_str(),
                i.report.uid.as_str(),
                i.report.cycle_id.as_str(),
                i.report.data_json().to_string(),
                i.report.digest(),
                i.salt.as_str(),
                i.report.supersedes.as_str(),
                i.timestamp,
                "",
                i.report.eod_ms,
            ),
            Err(r) => (
                if r.report_id.is_empty() {
                    "anomaly"
                } else {
                    "refuse"
                },
                r.report_id.as_str(),
                r.uid.as_str(),
                r.cycle_id.as_str(),
                String::new(),
                r.digest.clone(),
                "",
                "",
                0,
                r.reason.as_str(),
                0,
            ),
        };
        let mut conn = self.redis.conn().await?;
        let outcome: String = RecordReport {
            cursor: keys::REPORT_CURSOR,
            record: keys::report(report_id),
            user: keys::user_reports(uid),
            cycle_reports: keys::cycle_reports(cycle_id),
            cycle: keys::cycle(cycle_id),
            events: keys::EVENTS_STREAM,
            superseded: keys::report(if supersedes.is_empty() {
                report_id
            } else {
                supersedes
            }),
            known_user: credit::keys::assets(uid),
            entry_id: entry_id.to_string(),
            mode,
            report_id,
            uid,
            cycle_id,
            data,
            digest: &digest,
            salt,
            supersedes,
            timestamp,
            reason,
            now_ms: now.ms,
            events_maxlen: self.events_maxlen,
            refused_retention_ms: self.refused_retention_ms,
            eod_ms: eod,
        }
        .invoke(&mut *conn)
        .await
        .map_err(|e| self.err(e))?;
        Ok(outcome)
    }

    /// Records a summary entry read from R, or an anomaly of the summary
    /// stream (see `lua/record_cycle.lua`).
    #[allow(clippy::too_many_arguments)]
    pub async fn record_cycle(
        &self,
        entry_id: StreamId,
        summary: Result<&cycle::Summary, &str>,
        verdict: Result<&str, &str>,
        hashes: &[Hash],
        reports: u64,
    ) -> Result<String, SettlementError> {
        let now = time::now();
        let (mode, cycle_id, size, root, checkpoint) = match summary {
            Ok(s) => (
                "record",
                s.cycle_id.as_str(),
                s.size,
                cycle::b64(&s.root),
                s.checkpoint.as_str(),
            ),
            Err(_) => ("anomaly", "", 0, String::new(), ""),
        };
        let (status, reason, origin) = match (summary, verdict) {
            (Err(why), _) => ("", why, ""),
            (Ok(_), Ok(origin)) => ("verified", "", origin),
            (Ok(_), Err(why)) => ("mismatch", why, ""),
        };
        let leaves_bytes = if status == "verified" {
            hashes.concat()
        } else {
            Vec::new()
        };
        let mut conn = self.redis.conn().await?;
        RecordCycle {
            cursor: keys::BATCH_CURSOR,
            cycle: keys::cycle(cycle_id),
            leaves: keys::leaves(cycle_id),
            events: keys::EVENTS_STREAM,
            due: keys::COSIGN_DUE,
            entry_id: entry_id.to_string(),
            mode,
            cycle_id,
            status,
            reason,
            size,
            root,
            checkpoint,
            origin,
            leaves_bytes,
            reports,
            now_ms: now.ms,
            events_maxlen: self.events_maxlen,
        }
        .invoke(&mut *conn)
        .await
        .map_err(|e| self.err(e))
    }

    /// Records the WSP's `decision` on `report_id`, applying a completion's
    /// net positions to CI and the vault, exactly once.
    pub async fn decide(
        &self,
        report_id: &str,
        decision: &Decision,
    ) -> Result<Decided, SettlementError> {
        for _ in 0..MAX_STALE_RETRIES {
            let record = self
                .view
                .report(report_id)
                .await?
                .ok_or_else(|| SettlementError::UnknownReport(report_id.to_string()))?;
            let Some(report) = record.report.clone() else {
                return Err(SettlementError::NotConfirmable {
                    report: report_id.to_string(),
                    status: record.status.as_str(),
                });
            };
            let wanted = match decision {
                Decision::Complete => ReportStatus::Completed,
                Decision::Fail(_) => ReportStatus::Failed,
                Decision::Dispute(..) => ReportStatus::Disputed,
            };
            if record.status == wanted {
                return Ok(Decided {
                    record,
                    applied: false,
                    cosign_due: false,
                });
            }
            // A completion's plan, computed from what is read now; the
            // script applies it only if that is still what M holds.
            let (plan, pairs, applied) = match decision {
                Decision::Complete if record.status == ReportStatus::Reported => {
                    // A cycle that did not verify refuses first, whatever
                    // the plan would say (the script checks it again).
                    if let Some(c) = self.view.cycle(&report.cycle_id).await?
                        && c.status == CycleStatus::Mismatch
                    {
                        return Err(SettlementError::CycleMismatch {
                            cycle: report.cycle_id.clone(),
                            reason: c.reason,
                        });
                    }
                    self.plan(&report).await?
                }
                _ => (Vec::new(), Vec::new(), Vec::new()),
            };
            let (reason, disputed, details) = match decision {
                Decision::Complete => (
                    String::new(),
                    String::new(),
                    json!({ "assets_transferred": applied_json(&applied) }),
                ),
                Decision::Fail(reason) => (
                    reason.clone(),
                    String::new(),
                    json!({ "assets_transferred": {}, "reason": reason }),
                ),
                Decision::Dispute(lines, reason) => {
                    let lines: Vec<Value> = lines.iter().map(DisputedLine::to_json).collect();
                    (
                        reason.clone(),
                        Value::Array(lines.clone()).to_string(),
                        json!({ "assets_transferred": {}, "reason": reason, "disputed_lines": lines }),
                    )
                }
            };
            let applied_text = if applied.is_empty() {
                String::new()
            } else {
                Value::Array(
                    applied
                        .iter()
                        .map(|(a, n)| json!([a, format_net(*n)]))
                        .collect(),
                )
                .to_string()
            };
            let now = time::now();
            let trim_below = format!(
                "{}-0",
                now.ms.saturating_sub(self.confirmation_retention_ms)
            );
            let mut conn = self.durability.conn(&self.redis).await?;
            let reply: redis::RedisResult<Vec<String>> = Verdict {
                record: keys::report(report_id),
                cycle: keys::cycle(&report.cycle_id),
                confirmations: keys::CONFIRMATION_STREAM,
                events: keys::EVENTS_STREAM,
                credit_events: credit::keys::EVENTS_STREAM,
                vault_events: credit::keys::VAULT_EVENTS,
                due: keys::COSIGN_DUE,
                assets: credit::keys::assets(&report.uid),
                pledges: credit::keys::user_pledges(&report.uid),
                pairs,
                report_id,
                verdict: wanted.as_str(),
                reason: &reason,
                now_ms: now.ms,
                now_s: now.s,
                events_maxlen: self.events_maxlen.max(self.credit_events_maxlen),
                plan: Value::Array(plan).to_string(),
                details: details.to_string(),
                disputed,
                applied: applied_text,
                trim_below,
            }
            .invoke(&mut *conn)
            .await;
            let reply = match reply {
                Ok(reply) => reply,
                Err(e) => {
                    return Err(script_error(report_id, &report.cycle_id, e)
                        .unwrap_or_else(|e| self.err(e)));
                }
            };
            match reply.first().map(String::as_str) {
                Some("stale") => continue,
                Some(outcome) => {
                    let applied = outcome == "applied";
                    if applied {
                        self.durability.wait(&mut *conn).await?;
                    }
                    drop(conn);
                    let cosign_due = reply.get(1).map(String::as_str) == Some("verified")
                        && reply.get(2).map(String::as_str) == Some("0");
                    let record = self.view.report(report_id).await?.ok_or_else(|| {
                        SettlementError::Corrupt {
                            key: keys::report(report_id),
                            reason: "gone right after its verdict".into(),
                        }
                    })?;
                    return Ok(Decided {
                        record,
                        applied,
                        cosign_due,
                    });
                }
                None => {
                    return Err(SettlementError::Corrupt {
                        key: keys::report(report_id),
                        reason: "empty reply of the verdict script".into(),
                    });
                }
            }
        }
        Err(SettlementError::Contention)
    }

    /// A completion's plan: one step per non-zero net position, the keys of
    /// its pairs, and what it applies.
    async fn plan(
        &self,
        report: &Report,
    ) -> Result<(Vec<Value>, Vec<String>, Vec<(String, Decimal)>), SettlementError> {
        let (mut plan, mut pairs, mut applied) = (Vec::new(), Vec::new(), Vec::new());
        for (asset, net) in report.net.iter().filter(|(_, n)| !n.is_zero()) {
            let state = self
                .credit
                .pair_state(&report.uid, asset, credit::store::Pledges::Read)
                .await
                .map_err(|e| match e {
                    // An outage stays an outage (UNAVAILABLE: retry).
                    credit::error::CreditError::Redis(e) => SettlementError::Redis(e),
                    e => SettlementError::Corrupt {
                        key: credit::keys::ci(&report.uid, asset),
                        reason: e.to_string(),
                    },
                })?;
            if let Some(pending) = state.inflight {
                return Err(SettlementError::InFlight {
                    asset: asset.clone(),
                    request_id: pending,
                });
            }
            let settled = custody::settle(*net, state.ci, &state.vault, &state.active).map_err(
                |e| match e {
                    SettleError::InsufficientCredit => SettlementError::InsufficientCredit {
                        asset: asset.clone(),
                        ci: amount::format(state.ci),
                        net: format_net(*net),
                    },
                    SettleError::InsufficientCustody { pledged } => {
                        SettlementError::InsufficientCustody {
                            asset: asset.clone(),
                            pledged: amount::format(pledged),
                            net: format_net(*net),
                        }
                    }
                    SettleError::TooLarge => SettlementError::TooLarge {
                        asset: asset.clone(),
                    },
                },
            )?;
            let vault = match settled.vault {
                None => Value::Bool(false),
                Some((total, locked, pledged)) => json!({
                    "total": amount::format(total),
                    "locked": amount::format(locked),
                    "pledged": amount::format(pledged),
                }),
            };
            let lot = match settled.lot {
                None => Value::Bool(false),
                Some(amount) => json!({
                    "id": credit::keys::settlement_lot(&report.report_id, asset),
                    "amount": amount::format(amount),
                }),
            };
            let pledges: Vec<Value> = settled
                .pledges
                .iter()
                .map(|(id, left)| {
                    json!([
                        id,
                        amount::format(*left),
                        if left.is_zero() { "settled" } else { "active" }
                    ])
                })
                .collect();
            plan.push(json!({
                "asset": asset,
                "net": format_net(*net),
                "ci_version": state.ci_version.as_deref().unwrap_or("0"),
                "ci_amount": state.ci_stored.as_deref().unwrap_or_default(),
                "ci_new": amount::format(settled.ci),
                "vault_version": state.vault.version.to_string(),
                "vault": vault,
                "pledges": pledges,
                "lot": lot,
            }));
            pairs.extend([
                credit::keys::ci(&report.uid, asset),
                credit::keys::inflight(&report.uid, asset),
                credit::keys::vault(&report.uid, asset),
                credit::keys::active_pledges(&report.uid, asset),
            ]);
            applied.push((asset.clone(), *net));
        }
        Ok((plan, pairs, applied))
    }

    /// Cycles due for the countersignature (at most `max`).
    pub async fn cosign_due(&self, max: usize) -> Result<Vec<String>, SettlementError> {
        let mut conn = self.redis.conn().await?;
        redis::cmd("ZRANGE")
            .arg(keys::COSIGN_DUE)
            .arg(0)
            .arg(max.saturating_sub(1))
            .query_async(&mut *conn)
            .await
            .map_err(|e| self.err(e))
    }

    /// Records `cosigned` as `cycle_id`'s checkpoint if the exchange's is
    /// still `seen` (see `lua/cosign.lua`).
    pub async fn cosign(
        &self,
        cycle_id: &str,
        seen: &str,
        cosigned: &str,
    ) -> Result<String, SettlementError> {
        let mut conn = self.redis.conn().await?;
        Cosign {
            cycle: keys::cycle(cycle_id),
            events: keys::EVENTS_STREAM,
            due: keys::COSIGN_DUE,
            cycle_id,
            seen,
            cosigned,
            now_ms: time::now().ms,
            events_maxlen: self.events_maxlen,
        }
        .invoke(&mut *conn)
        .await
        .map_err(|e| self.err(e))
    }

    /// The exchange's own checkpoint of a cycle (before the WSP's line).
    pub async fn exchange_checkpoint(&self, cycle_id: &str) -> Result<String, SettlementError> {
        let mut conn = self.redis.conn().await?;
        let text: Option<String> = redis::cmd("HGET")
            .arg(keys::cycle(cycle_id))
            .arg("exchange_checkpoint")
            .query_async(&mut *conn)
            .await
            .map_err(|e| self.err(e))?;
        Ok(text.unwrap_or_default())
    }
}

/// `{asset: net}` of what a completion applied.
fn applied_json(applied: &[(String, Decimal)]) -> Value {
    Value::Object(
        applied
            .iter()
            .map(|(a, n)| (a.clone(), Value::String(format_net(*n))))
            .collect(),
    )
}

/// The verdict script's refusals as errors; `Err` back if it is not one.
fn script_error(
    report_id: &str,
    cycle_id: &str,
    e: redis::RedisError,
) -> Result<SettlementError, redis::RedisError> {
    let detail = e.detail().unwrap_or_default().trim().to_string();
    let report = report_id.to_string();
    let status = |text: &str| -> &'static str {
        ReportStatus::parse(text).map_or("in another state", ReportStatus::as_str)
    };
    Ok(match e.code() {
        Some("NOT_FOUND") => SettlementError::UnknownReport(report),
        Some("ALREADY_CONFIRMED") => SettlementError::AlreadyConfirmed {
            report,
            status: status(&detail),
        },
        Some("NOT_CONFIRMABLE") => SettlementError::NotConfirmable {
            report,
            status: status(&detail),
        },
        Some("CYCLE_MISMATCH") => SettlementError::CycleMismatch {
            cycle: cycle_id.to_string(),
            reason: detail,
        },
        Some("CREDIT_REQUEST_IN_FLIGHT") => {
            let (asset, request_id) = detail.split_once(' ').unwrap_or((&detail, ""));
            SettlementError::InFlight {
                asset: asset.to_string(),
                request_id: request_id.to_string(),
            }
        }
        _ => return Err(e),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn script_headers_match_their_structs() {
        for shape in [
            RecordReport::SHAPE,
            RecordCycle::SHAPE,
            Verdict::SHAPE,
            Cosign::SHAPE,
        ] {
            shape.check();
        }
    }
}
