//! The exchange role, on the stream-writeable replica (R) as the `exchange`
//! ACL user: publishing reports (`lua/submit.lua`) and closing cycles
//! (`lua/close_cycle.lua`), and knowing when the WSP has recorded them.
//!
//! What the exchange writes on R is lost in a full resync of R, so nothing
//! counts as delivered until the WSP's record of it is visible on R
//! (replicated from M): the calls wait for that (up to their `wait`) and
//! say DELIVERY_RECORDED or DELIVERY_PENDING; a retry of a pending one
//! publishes it again if R lost it, and the WSP records it once.

use std::{sync::Arc, time::Duration};

use ring::rand::{SecureRandom, SystemRandom};

use super::{
    cycle::{self, Head},
    error::SettlementError,
    keys,
    model::{
        CycleRecord, CycleStatus, Incoming, Report, ReportRecord, ReportStatus, SettlementEvent,
        hex,
    },
    store::SettlementView,
};
use crate::{
    config::{Config, SettlementConfig},
    crypto::keys::ServerKey,
    redis::{RedisEndpoint, RedisError, script::lua_script},
    streams::{
        Entry, Fields, StreamId,
        waiters::{Follow, Waiters},
        watch::WatchHub,
    },
    time,
};

lua_script! {
    /// `lua/submit.lua`: publishes a report on R.
    struct Submit<'a>(include_str!("lua/submit.lua")) {
        keys { record: String, reports: &'a str, closing: String, published: String, cursor: &'a str }
        args {
            report_id: &'a str, digest: &'a str, mode: &'a str, salt: &'a str, retention_ms: u64,
            now_ms: u64, maxlen: usize, ..fields: Vec<String>
        }
    }
}

lua_script! {
    /// `lua/close_cycle.lua`: closes a cycle on R.
    struct CloseCycle<'a>(include_str!("lua/close_cycle.lua")) {
        keys { mark: String, summaries: &'a str, cursor: &'a str }
        args {
            step: &'a str, cycle_id: &'a str, now_ms: u64, retention_ms: u64,
            ..publish: Vec<String>
        }
    }
}

/// Whether the WSP has recorded what the exchange published.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Only on R so far.
    Pending,
    /// The WSP's record is visible on R.
    Recorded,
}

/// The exchange role's work on R.
#[derive(Clone)]
pub struct Exchange {
    redis: RedisEndpoint,
    view: SettlementView,
    key: Option<Arc<ServerKey>>,
    reports: Waiters,
    cycles: Waiters,
    max_wait: Duration,
    retention_ms: u64,
    reports_maxlen: usize,
    summaries_maxlen: usize,
    max_cycle_reports: usize,
}

impl Exchange {
    /// The role on `replica` (as the exchange's user), waking waiters from
    /// the WSP's event log as it replicates (`watches`, on R).
    pub fn new(
        replica: RedisEndpoint,
        key: Option<Arc<ServerKey>>,
        watches: WatchHub,
        config: &Config,
        stop: tokio_util::sync::CancellationToken,
    ) -> Self {
        let s: &SettlementConfig = &config.settlement;
        let follow = |id_field, filter| Follow {
            stream: keys::EVENTS_STREAM,
            id_field,
            filter,
        };
        Self {
            view: SettlementView::new(replica.clone()),
            redis: replica,
            key,
            reports: Waiters::start(
                watches.clone(),
                follow("report_id", Arc::new(SettlementEvent::is_recorded)),
                s.max_waiters,
                stop.clone(),
            ),
            cycles: Waiters::start(
                watches,
                follow("cycle_id", Arc::new(SettlementEvent::is_cycle_recorded)),
                s.max_waiters,
                stop,
            ),
            max_wait: s.max_wait,
            retention_ms: s.submission_retention.as_millis() as u64,
            reports_maxlen: config.streams.maxlen_for(keys::REPORT_STREAM),
            summaries_maxlen: config.streams.maxlen_for(keys::BATCH_STREAM),
            max_cycle_reports: s.max_cycle_reports,
        }
    }

    /// The longest wait a call may ask for.
    pub fn max_wait(&self) -> Duration {
        self.max_wait
    }

    fn err(&self, e: redis::RedisError) -> SettlementError {
        SettlementError::Redis(RedisError::from_redis(self.redis.name(), e))
    }

    /// Publishes `report`, or finds it published; waits up to `wait` for
    /// the WSP's record of it.
    pub async fn submit(
        &self,
        report: &Report,
        wait: Duration,
    ) -> Result<(ReportRecord, Delivery), SettlementError> {
        let digest = report.digest();
        let mut mode = "new";
        if let Some(recorded) = self.view.report(&report.report_id).await? {
            match recorded_as(&recorded, &digest) {
                Some(found) => return found.map(|r| (r, Delivery::Recorded)),
                // The WSP refused what was published before: publish this.
                None => mode = "replace",
            }
        }
        if !report.supersedes.is_empty() {
            let old = self.view.report(&report.supersedes).await?;
            let why = match &old {
                None => Some("is not recorded by the WSP".to_string()),
                Some(o) if o.report.as_ref().is_none_or(|r| r.uid != report.uid) => {
                    Some("is another user's".to_string())
                }
                Some(o) if o.status != ReportStatus::Disputed => {
                    Some(format!("is {}, not disputed", o.status.as_str()))
                }
                Some(_) => None,
            };
            if let Some(why) = why {
                return Err(SettlementError::NotDisputed {
                    report: report.supersedes.clone(),
                    why,
                });
            }
        }
        if self
            .view
            .cycle(&report.cycle_id)
            .await?
            .is_some_and(|c| c.status.is_closed())
        {
            return Err(SettlementError::CycleClosed(report.cycle_id.clone()));
        }
        // Registered before the write, so the WSP's record cannot slip by.
        let mut waiter = (!wait.is_zero())
            .then(|| self.reports.register(&report.report_id))
            .transpose()?;
        let now = time::now();
        let salt = new_salt()?;
        let fields: Vec<String> = Incoming::entry_fields(report, &salt, now.s)
            .into_iter()
            .flat_map(|(k, v)| [k.to_string(), v])
            .collect();
        let mut conn = self.redis.conn().await?;
        let reply: redis::RedisResult<Vec<String>> = Submit {
            record: keys::submitted(&report.report_id),
            reports: keys::REPORT_STREAM,
            closing: keys::closing(&report.cycle_id),
            published: keys::submitted_cycle(&report.cycle_id),
            cursor: keys::REPORT_CURSOR,
            report_id: &report.report_id,
            digest: &digest,
            mode,
            salt: &salt,
            retention_ms: self.retention_ms,
            now_ms: now.ms,
            maxlen: self.reports_maxlen,
            fields,
        }
        .invoke(&mut *conn)
        .await;
        drop(conn);
        let published_ms = match reply {
            Ok(reply) => reply.get(3).and_then(|ms| ms.parse().ok()),
            Err(e) if e.code() == Some("REPORT_ID_REUSED") => {
                return Err(SettlementError::ReportIdReused(report.report_id.clone()));
            }
            Err(e) if e.code() == Some("CYCLE_CLOSED") => {
                return Err(SettlementError::CycleClosed(report.cycle_id.clone()));
            }
            Err(e) => return Err(self.err(e)),
        };
        if let Some(waiter) = waiter.as_mut() {
            let _ = tokio::time::timeout(wait, waiter.woken()).await;
        }
        // On timeout, read anyway: the record never misses anything.
        if let Some(recorded) = self.view.report(&report.report_id).await?
            && let Some(found) = recorded_as(&recorded, &digest)
        {
            return found.map(|r| (r, Delivery::Recorded));
        }
        Ok((submitted(report, &digest, published_ms), Delivery::Pending))
    }

    /// The exchange's own record of a report it published and the WSP has
    /// not recorded (yet): SUBMITTED.
    pub async fn published(
        &self,
        report_id: &str,
    ) -> Result<Option<ReportRecord>, SettlementError> {
        let mut conn = self.redis.conn().await?;
        let (fields, digest, ms): (Option<String>, Option<String>, Option<i64>) =
            redis::cmd("HMGET")
                .arg(keys::submitted(report_id))
                .arg("fields")
                .arg("digest")
                .arg("submitted_ms")
                .query_async(&mut *conn)
                .await
                .map_err(|e| self.err(e))?;
        let Some(fields) = fields.and_then(|f| serde_json::from_str::<Vec<String>>(&f).ok()) else {
            return Ok(None);
        };
        let pairs: Vec<(String, String)> = fields
            .chunks(2)
            .filter_map(|p| Some((p.first()?.clone(), p.get(1)?.clone())))
            .collect();
        let entry = Entry {
            id: StreamId::default(),
            fields: Fields::from_pairs(pairs),
        };
        Ok(Incoming::parse(&entry, usize::MAX)
            .ok()
            .map(|i| submitted(&i.report, &digest.unwrap_or_default(), ms)))
    }

    /// Closes `cycle_id`: the tree over the WSP's records of its reports,
    /// signed, published; waits up to `wait` for the WSP's record of it.
    pub async fn close(
        &self,
        cycle_id: &str,
        wait: Duration,
    ) -> Result<(CycleRecord, Delivery), SettlementError> {
        if let Some(c) = self.view.cycle(cycle_id).await?
            && c.status.is_closed()
        {
            return Ok((c, Delivery::Recorded));
        }
        let key = self
            .key
            .as_ref()
            .ok_or(SettlementError::NoSigningKey("exchange"))?;
        let now = time::now();
        let mut conn = self.redis.conn().await?;
        let _: Vec<String> = CloseCycle {
            mark: keys::closing(cycle_id),
            summaries: keys::BATCH_STREAM,
            cursor: keys::BATCH_CURSOR,
            step: "begin",
            cycle_id,
            now_ms: now.ms,
            retention_ms: self.retention_ms,
            publish: Vec::new(),
        }
        .invoke(&mut *conn)
        .await
        .map_err(|e| self.err(e))?;
        // Everything this exchange published in the cycle must be recorded
        // by the WSP, as published: the tree is over the WSP's records.
        let published: Vec<String> = redis::cmd("ZRANGE")
            .arg(keys::submitted_cycle(cycle_id))
            .arg(0)
            .arg(-1)
            .query_async(&mut *conn)
            .await
            .map_err(|e| self.err(e))?;
        drop(conn);
        self.check_recorded(cycle_id, &published).await?;
        let (_, reports) = self
            .view
            .cycle_input(cycle_id, self.max_cycle_reports)
            .await?;
        let hashes = cycle::leaf_hashes(reports.iter().map(|(r, salt)| (r, salt.as_str())));
        let head = cycle::sign(key, cycle_id, &hashes).map_err(|e| SettlementError::Corrupt {
            key: keys::cycle(cycle_id),
            reason: format!("cannot sign the checkpoint: {e}"),
        })?;
        let mut waiter = (!wait.is_zero())
            .then(|| self.cycles.register(cycle_id))
            .transpose()?;
        let mut conn = self.redis.conn().await?;
        let _: Vec<String> = CloseCycle {
            mark: keys::closing(cycle_id),
            summaries: keys::BATCH_STREAM,
            cursor: keys::BATCH_CURSOR,
            step: "publish",
            cycle_id,
            now_ms: now.ms,
            retention_ms: self.retention_ms,
            publish: vec![
                head.size.to_string(),
                cycle::b64(&head.root),
                head.checkpoint.clone(),
                now.s.to_string(),
                self.summaries_maxlen.to_string(),
            ],
        }
        .invoke(&mut *conn)
        .await
        .map_err(|e| self.err(e))?;
        drop(conn);
        if let Some(waiter) = waiter.as_mut() {
            let _ = tokio::time::timeout(wait, waiter.woken()).await;
        }
        match self.view.cycle(cycle_id).await? {
            Some(c) if c.status.is_closed() => Ok((c, Delivery::Recorded)),
            found => Ok((closing(cycle_id, &head, found), Delivery::Pending)),
        }
    }

    /// REPORTS_NOT_RECORDED unless the WSP recorded every one of
    /// `published`; RECORD_MISMATCH if a record differs from what this
    /// exchange published.
    async fn check_recorded(
        &self,
        cycle_id: &str,
        published: &[String],
    ) -> Result<(), SettlementError> {
        let mut missing = Vec::new();
        let mut conn = self.redis.conn().await?;
        for chunk in published.chunks(1000) {
            let mut pipe = redis::pipe();
            for id in chunk {
                pipe.hget(keys::submitted(id), "digest");
                pipe.cmd("HMGET")
                    .arg(keys::report(id))
                    .arg("status")
                    .arg("digest");
            }
            let replies: Vec<redis::Value> = pipe
                .query_async(&mut *conn)
                .await
                .map_err(|e| self.err(e))?;
            for (id, pair) in chunk.iter().zip(replies.chunks(2)) {
                let mine: Option<String> = redis::from_redis_value(pair[0].clone()).ok().flatten();
                let (status, theirs): (Option<String>, Option<String>) =
                    redis::from_redis_value(pair[1].clone()).unwrap_or((None, None));
                match status.as_deref() {
                    None => missing.push(id.clone()),
                    // Refused: not in the tree; the backend heard so.
                    Some("refused") => {}
                    Some(_) if mine.is_some() && mine != theirs => {
                        return Err(SettlementError::RecordDiffers(id.clone()));
                    }
                    Some(_) => {}
                }
            }
        }
        match missing.first() {
            None => Ok(()),
            Some(example) => Err(SettlementError::ReportsNotRecorded {
                cycle: cycle_id.to_string(),
                count: missing.len(),
                example: example.clone(),
            }),
        }
    }
}

/// What a WSP record found under a report id means for a report of
/// `digest`: `Some(Ok)` it is recorded, `Some(Err)` refused or another
/// report, `None` the WSP refused another payload (publish this one).
fn recorded_as(
    recorded: &ReportRecord,
    digest: &str,
) -> Option<Result<ReportRecord, SettlementError>> {
    let same = recorded.digest == digest;
    match (recorded.status, same) {
        (ReportStatus::Refused, true) => Some(Err(SettlementError::Refused {
            report: recorded.report_id.clone(),
            reason: recorded.reason.clone(),
        })),
        (ReportStatus::Refused, false) => None,
        (_, true) => Some(Ok(recorded.clone())),
        (_, false) => Some(Err(SettlementError::ReportIdReused(
            recorded.report_id.clone(),
        ))),
    }
}

/// A report as published, before the WSP's record.
fn submitted(report: &Report, digest: &str, published_ms: Option<i64>) -> ReportRecord {
    ReportRecord {
        report: Some(report.clone()),
        report_id: report.report_id.clone(),
        status: ReportStatus::Submitted,
        reason: String::new(),
        disputed: Vec::new(),
        applied: Vec::new(),
        superseded_by: String::new(),
        salt: String::new(),
        digest: digest.to_string(),
        reported_ms: published_ms,
        decided_ms: None,
    }
}

/// A cycle as published, before the WSP's record of the close.
fn closing(cycle_id: &str, head: &Head, found: Option<CycleRecord>) -> CycleRecord {
    let (reports, undecided) = found.map_or((0, 0), |c| (c.reports, c.undecided));
    CycleRecord {
        cycle_id: cycle_id.to_string(),
        status: CycleStatus::Closing,
        size: head.size,
        root: Some(head.root),
        checkpoint: head.checkpoint.clone(),
        origin: head.origin.clone(),
        reports,
        undecided,
        reason: String::new(),
        closed_ms: None,
        cosigned_ms: None,
    }
}

/// 32 random bytes, hex: a leaf's salt.
fn new_salt() -> Result<String, SettlementError> {
    let mut salt = [0u8; 32];
    SystemRandom::new()
        .fill(&mut salt)
        .map_err(|_| SettlementError::Corrupt {
            key: String::new(),
            reason: "the operating system's random generator failed".into(),
        })?;
    Ok(hex(&salt))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn script_headers_match_their_structs() {
        Submit::SHAPE.check();
        CloseCycle::SHAPE.check();
    }
}
