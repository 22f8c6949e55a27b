//! The WSP role's background work:
//!
//! - [`Reports`]: the exchange's reports on R (followed as the `wsp-reader`
//!   user, see [`crate::streams::follow`]), each recorded on M once, or
//!   refused with its reason.
//! - [`Summaries`]: the exchange's cycle summaries on R: the WSP rebuilds
//!   the cycle's tree from its own records, checks the exchange's signed
//!   checkpoint against it, and records the cycle VERIFIED or MISMATCH.
//! - [`sweep`]: countersigns verified cycles whose every report is decided
//!   (a verdict does it at once; this catches a gateway that died between).

use std::{sync::Arc, time::Duration};

use base64::{Engine as _, engine::general_purpose::STANDARD};
use tokio_util::sync::CancellationToken;

use super::{
    cycle::{self, Keys, Summary},
    error::SettlementError,
    keys,
    model::{Incoming, Refusal},
    store::SettlementStore,
};
use crate::{
    crypto::{checkpoint::parse_decimal, keys::ServerKey},
    error::ErrorChain,
    streams::{Entry, StreamId, follow::Follower, reply::Parsed},
    validate::{echo, is_valid_id},
};

/// Longest checkpoint note read from a summary (two signatures and an
/// origin are a few hundred bytes).
const MAX_CHECKPOINT_LEN: usize = 4096;
/// Times a cycle's tree is rebuilt when a report is recorded meanwhile.
const MAX_STALE_RETRIES: usize = 8;
/// Cycles countersigned per sweep round.
const COSIGN_BATCH: usize = 100;

/// The WSP's follower of the exchange's report stream on R.
pub struct Reports {
    /// The WSP's books on M.
    pub store: SettlementStore,
    /// A report entry larger than this is refused unread.
    pub max_bytes: usize,
}

impl Follower for Reports {
    type Error = SettlementError;

    fn stream(&self) -> &'static str {
        keys::REPORT_STREAM
    }

    async fn cursor(&self) -> Result<StreamId, SettlementError> {
        self.store.view().cursor(keys::REPORT_CURSOR).await
    }

    async fn rewind(&self, seen: StreamId) -> Result<(), SettlementError> {
        self.store.rewind(keys::REPORT_CURSOR, seen).await
    }

    async fn gap(&self, seen: StreamId, resume: StreamId) -> Result<(), SettlementError> {
        let lost = Refusal::anomaly(format!(
            "reports after {seen} up to {resume} were trimmed from {} on R before this WSP read them; the exchange must publish them again (its SubmitSettlementReport retries do)",
            keys::REPORT_STREAM
        ));
        self.store.record_report(resume, &Err(lost)).await.map(drop)
    }

    async fn handle(&self, parsed: Parsed) -> Result<(), SettlementError> {
        let (id, read) = match parsed {
            Parsed::Entry(entry) => (entry.id, Incoming::parse(&entry, self.max_bytes)),
            Parsed::Deleted(id) | Parsed::Bad { id: Some(id), .. } => (
                id,
                Err(Refusal::anomaly(format!(
                    "entry {id} of the report stream is not a list of fields"
                ))),
            ),
            Parsed::Bad { id: None, why } => {
                tracing::error!(why, "unreadable settlement report without an id skipped");
                return Ok(());
            }
        };
        let outcome = self.store.record_report(id, &read).await?;
        match (&read, outcome.as_str()) {
            (Ok(i), "recorded") => {
                tracing::debug!(report_id = %i.report.report_id, "settlement report recorded");
            }
            (_, "refused" | "anomaly") => {
                let reason = match &read {
                    Ok(_) => "refused by M's checks (see the event)",
                    Err(r) => r.reason.as_str(),
                };
                tracing::warn!(entry_id = %id, %reason, "settlement report refused");
            }
            _ => {}
        }
        Ok(())
    }
}

/// The WSP's follower of the exchange's cycle summaries on R.
pub struct Summaries {
    /// The WSP's books on M.
    pub store: SettlementStore,
    /// The link's keys.
    pub keys: Keys,
    /// A summary entry larger than this is an anomaly.
    pub max_bytes: usize,
    /// Most reports a cycle's tree is built from.
    pub max_cycle_reports: usize,
}

impl Follower for Summaries {
    type Error = SettlementError;

    fn stream(&self) -> &'static str {
        keys::BATCH_STREAM
    }

    async fn cursor(&self) -> Result<StreamId, SettlementError> {
        self.store.view().cursor(keys::BATCH_CURSOR).await
    }

    async fn rewind(&self, seen: StreamId) -> Result<(), SettlementError> {
        self.store.rewind(keys::BATCH_CURSOR, seen).await
    }

    async fn gap(&self, seen: StreamId, resume: StreamId) -> Result<(), SettlementError> {
        let lost = format!(
            "cycle summaries after {seen} up to {resume} were trimmed from {} on R before this WSP read them; the exchange must close those cycles again",
            keys::BATCH_STREAM
        );
        self.store
            .record_cycle(resume, Err(&lost), Err(""), &[], 0)
            .await
            .map(drop)
    }

    async fn handle(&self, parsed: Parsed) -> Result<(), SettlementError> {
        let (id, summary) = match parsed {
            Parsed::Entry(entry) => (entry.id, parse_summary(&entry, self.max_bytes)),
            Parsed::Deleted(id) | Parsed::Bad { id: Some(id), .. } => (
                id,
                Err(format!(
                    "entry {id} of the summary stream is not a list of fields"
                )),
            ),
            Parsed::Bad { id: None, why } => {
                tracing::error!(why, "unreadable cycle summary without an id skipped");
                return Ok(());
            }
        };
        let summary = match summary {
            Ok(summary) => summary,
            Err(why) => {
                tracing::warn!(entry_id = %id, %why, "cycle summary not recorded");
                self.store
                    .record_cycle(id, Err(&why), Err(""), &[], 0)
                    .await?;
                return Ok(());
            }
        };
        for _ in 0..MAX_STALE_RETRIES {
            let (hashes, reports, verdict) = match self
                .store
                .view()
                .cycle_input(&summary.cycle_id, self.max_cycle_reports)
                .await
            {
                Ok((count, reports)) => {
                    let hashes =
                        cycle::leaf_hashes(reports.iter().map(|(r, salt)| (r, salt.as_str())));
                    let verdict =
                        cycle::verify(&summary, &hashes, self.keys.exchange_verifier.as_ref());
                    (hashes, count, verdict)
                }
                Err(e @ SettlementError::CycleTooLarge { .. }) => {
                    let count = self
                        .store
                        .view()
                        .cycle(&summary.cycle_id)
                        .await?
                        .map_or(0, |c| c.reports);
                    (Vec::new(), count, Err(e.to_string()))
                }
                Err(e) => return Err(e),
            };
            let verdict_ref = verdict.as_deref().map_err(String::as_str);
            let outcome = self
                .store
                .record_cycle(id, Ok(&summary), verdict_ref, &hashes, reports)
                .await?;
            match outcome.as_str() {
                "stale" => continue,
                "verified" => {
                    tracing::info!(cycle_id = %summary.cycle_id, size = summary.size, "settlement cycle verified");
                    if self
                        .store
                        .view()
                        .cycle(&summary.cycle_id)
                        .await?
                        .is_some_and(|c| c.undecided == 0)
                    {
                        cosign(&self.store, self.keys.wsp.as_deref(), &summary.cycle_id).await?;
                    }
                }
                "mismatch" => {
                    let why = verdict.err().unwrap_or_default();
                    tracing::error!(cycle_id = %summary.cycle_id, %why, "settlement cycle does not verify");
                }
                _ => {}
            }
            return Ok(());
        }
        Err(SettlementError::Contention)
    }
}

/// Reads one summary entry as the other party wrote it: `type` = `cycle`,
/// a valid `cycle_id`, `size` a decimal, `root` 32 bytes of base64, a
/// bounded `checkpoint` (whose signature and contents [`cycle::verify`]
/// checks).
fn parse_summary(entry: &Entry, max_bytes: usize) -> Result<Summary, String> {
    let f = &entry.fields;
    if f.byte_len() > max_bytes {
        return Err(format!(
            "the summary entry is {} bytes, more than {max_bytes}: {}",
            f.byte_len(),
            f.describe(256)
        ));
    }
    if f.get("type") != Some("cycle") {
        return Err(format!("type must be \"cycle\": {}", f.describe(256)));
    }
    let cycle_id = f.text("cycle_id");
    if !is_valid_id(cycle_id) {
        return Err(format!("cycle_id {} is not an id", echo(cycle_id)));
    }
    let size = parse_decimal(f.text("size"))
        .ok_or_else(|| format!("size {} is not a decimal", echo(f.text("size"))))?;
    let root = STANDARD
        .decode(f.text("root"))
        .ok()
        .and_then(|b| <[u8; 32]>::try_from(b.as_slice()).ok())
        .ok_or_else(|| format!("root {} is not 32 bytes of base64", echo(f.text("root"))))?;
    let checkpoint = f.text("checkpoint");
    if checkpoint.is_empty() || checkpoint.len() > MAX_CHECKPOINT_LEN {
        return Err(format!(
            "checkpoint must be a signed note of at most {MAX_CHECKPOINT_LEN} bytes"
        ));
    }
    Ok(Summary {
        cycle_id: cycle_id.to_string(),
        size,
        root,
        checkpoint: checkpoint.to_string(),
    })
}

/// Countersigns `cycle_id` with the WSP's `key`, if the cycle is verified
/// and every report decided (the script checks); nothing without a key.
pub async fn cosign(
    store: &SettlementStore,
    key: Option<&ServerKey>,
    cycle_id: &str,
) -> Result<(), SettlementError> {
    let Some(key) = key else {
        return Ok(());
    };
    let seen = store.exchange_checkpoint(cycle_id).await?;
    if seen.is_empty() {
        return Ok(());
    }
    let cosigned = cycle::cosign(key, &seen).map_err(|e| SettlementError::Corrupt {
        key: keys::cycle(cycle_id),
        reason: format!("the exchange's checkpoint cannot be countersigned: {e}"),
    })?;
    let outcome = store.cosign(cycle_id, &seen, &cosigned).await?;
    if outcome == "cosigned" {
        tracing::info!(%cycle_id, "settlement cycle countersigned");
    }
    Ok(())
}

/// Every `interval` until `stop`: countersigns the cycles due.
pub async fn sweep(
    store: SettlementStore,
    key: Option<Arc<ServerKey>>,
    interval: Duration,
    stop: CancellationToken,
) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = ticker.tick() => {}
        }
        let due = match store.cosign_due(COSIGN_BATCH).await {
            Ok(due) => due,
            Err(e) => {
                tracing::warn!(error = %ErrorChain(&e), "settlement sweep failed; trying again next round");
                continue;
            }
        };
        for cycle_id in due {
            if let Err(e) = cosign(&store, key.as_deref(), &cycle_id).await {
                tracing::warn!(%cycle_id, error = %ErrorChain(&e), "countersignature failed; trying again next round");
            }
        }
    }
}
