//! The WSP role's background work:
//!
//! - [`Responses`]: the exchange's responses on R (read as the `wsp-reader`
//!   user, see [`crate::streams::follow`]), each applied on M exactly once
//!   ([`CreditStore::apply_response`]).
//! - [`sweep`]: undecided requests whose stream entry is gone, and gaps.
//! - [`decision_waiters`]: RequestCredit calls waiting for their decision.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::{
    error::CreditError,
    keys,
    model::{CreditEvent, CreditResponse, MalformedResponse},
    store::{ApplyOutcome, CreditStore, EntryOutcome, ResponseEntry},
};
use crate::{
    error::ErrorChain,
    server::health::HealthFlags,
    streams::{
        StreamId,
        follow::Follower,
        reply::Parsed,
        waiters::{Follow, Waiters},
        watch::WatchHub,
    },
};

/// The WSP's follower of the exchange's response stream on R.
pub struct Responses {
    /// The WSP's books on M.
    pub store: CreditStore,
    /// A response entry larger than this is skipped as an anomaly.
    pub max_response_bytes: usize,
}

impl Follower for Responses {
    type Error = CreditError;

    fn stream(&self) -> &'static str {
        keys::RESPONSE_STREAM
    }

    async fn cursor(&self) -> Result<StreamId, CreditError> {
        self.store.response_cursor().await
    }

    async fn rewind(&self, seen: StreamId) -> Result<(), CreditError> {
        self.store.rewind_response_cursor(seen).await
    }

    async fn gap(&self, seen: StreamId, resume: StreamId) -> Result<(), CreditError> {
        let lost = format!(
            "responses after {seen} up to {resume} were trimmed from {} on R before this WSP applied them; their requests stay pending until decided again (ResolveCreditAnomaly)",
            keys::RESPONSE_STREAM
        );
        self.store.record_gap(seen, resume, &lost).await.map(drop)
    }

    async fn handle(&self, entry: Parsed) -> Result<(), CreditError> {
        self.handle_batch(StreamId::default(), vec![entry])
            .await
            .map(drop)
    }

    /// Every entry of one read in one round trip to M, in order
    /// ([`CreditStore::apply_responses`]): the WSP's side of the round
    /// trip costs one script call per response, not one round trip. The
    /// first script checks that the cursor is still at `after`; if none was
    /// behind, the cursor is at or past the last entry.
    async fn handle_batch(
        &self,
        after: StreamId,
        entries: Vec<Parsed>,
    ) -> Result<Option<StreamId>, CreditError> {
        let entries: Vec<ResponseEntry> = entries
            .into_iter()
            .filter_map(|parsed| classify(parsed, self.max_response_bytes))
            .collect();
        let outcomes = self.store.apply_responses(after, &entries).await?;
        let mut checked = true;
        for (entry, outcome) in entries.iter().zip(outcomes) {
            let outcome = outcome?;
            checked &= outcome != EntryOutcome::Behind;
            log(entry, outcome);
        }
        Ok(entries.last().map(ResponseEntry::id).filter(|_| checked))
    }
}

/// What to do with one entry of the response stream: apply it, or record
/// it as malformed and pass it; `None` (logged) for one without an id,
/// which cannot be passed by id (the cursor moves past it with the next).
fn classify(parsed: Parsed, max_bytes: usize) -> Option<ResponseEntry> {
    let entry = match parsed {
        Parsed::Entry(entry) => entry,
        Parsed::Deleted(id) | Parsed::Bad { id: Some(id), .. } => {
            let malformed = MalformedResponse {
                request_id: String::new(),
                reason: format!("malformed response: entry {id} is not a list of fields"),
            };
            return Some(ResponseEntry::Malformed(id, malformed));
        }
        Parsed::Bad { id: None, why } => {
            tracing::error!(why, "unreadable credit response without an id skipped");
            return None;
        }
    };
    Some(match CreditResponse::parse(&entry, max_bytes) {
        Ok(response) => ResponseEntry::Response(response),
        Err(malformed) => ResponseEntry::Malformed(entry.id, malformed),
    })
}

fn log(entry: &ResponseEntry, outcome: EntryOutcome) {
    match (entry, outcome) {
        (ResponseEntry::Malformed(id, malformed), EntryOutcome::Skipped { recorded: true }) => {
            tracing::error!(entry_id = %id, reason = %malformed.reason, "malformed credit response recorded as an anomaly");
        }
        (ResponseEntry::Response(response), EntryOutcome::Applied(applied)) => match applied {
            ApplyOutcome::Applied => {
                tracing::debug!(request_id = %response.request_id, status = %response.status, "credit decision applied");
            }
            ApplyOutcome::Anomaly => tracing::error!(
                request_id = %response.request_id, entry_id = %response.entry_id,
                "credit response disagrees with its request; not applied (anomaly event recorded)"
            ),
            ApplyOutcome::Unknown => tracing::debug!(
                request_id = %response.request_id,
                "response to a request not issued here; ignored"
            ),
            ApplyOutcome::Duplicate | ApplyOutcome::AlreadyFinal => {}
        },
        (_, EntryOutcome::Behind) => tracing::debug!(
            entry_id = %entry.id(),
            "response not applied: the cursor on M is not where this batch began; reading it again"
        ),
        _ => {}
    }
}

/// Most undecided requests the sweeper checks per round: bounds a round's
/// work; a longer backlog is checked over several rounds.
const MAX_SWEEP: usize = 10_000;

/// The WSP's sweeper, every `interval` until `stop`:
/// - an undecided request whose entry is gone from the request stream (a
///   trim this gateway did not make: ours never trims past the oldest
///   undecided request) is published again, loudly, so it is decided;
/// - while a response gap is open (see [`gap`]), CreditService is held
///   NOT_SERVING; the gap closes once every request undecided when it was
///   seen is decided.
pub async fn sweep(
    store: CreditStore,
    interval: std::time::Duration,
    batch: usize,
    flags: HealthFlags,
    stop: CancellationToken,
) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = ticker.tick() => {}
        }
        if let Err(e) = sweep_once(&store, batch, &flags).await {
            tracing::warn!(error = %ErrorChain(&e), "credit sweep failed; trying again next round");
        }
    }
}

/// One round of [`sweep`].
pub async fn sweep_once(
    store: &CreditStore,
    batch: usize,
    flags: &HealthFlags,
) -> Result<(), CreditError> {
    match store.response_gap().await? {
        Some(gap) if !store.close_gap_if_resolved(&gap).await? => {
            flags.set(super::SERVICE, &gap.description);
        }
        _ => flags.clear(super::SERVICE),
    }
    let mut start = 0;
    while start < MAX_SWEEP {
        let page = store.undecided(start, batch).await?;
        let with_entry: Vec<(String, StreamId)> = page
            .iter()
            .filter_map(|(id, entry)| entry.map(|e| (id.clone(), e)))
            .collect();
        let entries: Vec<StreamId> = with_entry.iter().map(|(_, e)| *e).collect();
        let exist = store.entries_exist(&entries).await?;
        for ((request_id, entry), exists) in with_entry.iter().zip(exist) {
            if exists {
                continue;
            }
            let why =
                format!("its entry {entry} was gone from the request stream (a foreign trim)");
            if let Ok(new) = store.republish(request_id, &why).await? {
                tracing::error!(%request_id, %entry, %new, "undecided credit request lost its stream entry; published again");
            }
        }
        if page.len() < batch {
            break;
        }
        start += page.len();
    }
    Ok(())
}

/// Calls waiting for credit decisions, by request id: woken by a follower
/// of the event log on M (`watches`), ending with `stop`.
pub fn decision_waiters(watches: WatchHub, limit: usize, stop: CancellationToken) -> Waiters {
    let follow = Follow {
        stream: keys::EVENTS_STREAM,
        id_field: "request_id",
        filter: Arc::new(CreditEvent::is_decision),
    };
    Waiters::start(watches, follow, limit, stop)
}
