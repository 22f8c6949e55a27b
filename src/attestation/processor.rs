//! The background work that turns results into attestations: a member of
//! the consumer group `attestation_processors` on `verification_stream`
//! (through the bridge's [`GroupHub`], so at-least-once with reclaim of a
//! dead gateway's entries and a dead-letter stream), `attestation.concurrency`
//! results at a time.
//!
//! For each delivery, in this order, and why it is safe:
//! 1. parse it (another party wrote it): a result that cannot be attested
//!    goes to `verification_stream:dlq` with its reason, at once;
//! 2. its attestation id comes from its request_id (or its entry id), so a
//!    redelivery names the same attestation; a redelivery (count > 1) first
//!    asks whether that attestation exists, and if so only acknowledges;
//! 3. take a status list index from the gateway's reserved block (one round
//!    trip per `attestation.index_block` results);
//! 4. sign the credential, here, in Rust;
//! 5. one script records it, indexes it, logs the event and acknowledges
//!    the entry, unless the attestation exists already: then the stored one
//!    wins and this signature (and its index) is dropped. A crash anywhere
//!    before 5 leaves the entry pending, and its redelivery repeats 3-5; a
//!    crash after 5 leaves nothing to do. Either way one credential.
//!
//! A delivery that fails for another reason (Redis down) is retried here
//! with backoff; one that keeps failing is left pending, and the processor
//! starts over under a new consumer name, so the bridge's reclaim (and its
//! delivery count, and the dead-letter stream) takes over. Every
//! `TRIM_INTERVAL` the stream is trimmed of what every group has acknowledged.

use std::{sync::Arc, time::Duration};

use futures_util::{StreamExt, future::BoxFuture};
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

use super::{
    credential::{self, Issuer, StatusEntry},
    error::AttestationError,
    keys,
    model::{self, AttestationRecord, Rejection, StoredStatus, Verification, rejection},
    store::{AttestationStore, IndexBlock, IssueOutcome, NewAttestation},
};
use crate::{
    error::ErrorChain,
    streams::{
        Backoff, StreamId,
        group::{Delivery, GroupHub, OnLimit},
    },
    time,
};

/// Attempts at one delivery before it is left to the bridge's reclaim:
/// with the backoff (100 ms doubling to 5 s) about 16 s, longer than a
/// Redis restart or failover takes.
const MAX_ATTEMPTS: u32 = 8;

/// How often the verification stream is trimmed of acknowledged entries.
/// Rarely: it is a bounded-memory chore, never urgent.
pub const TRIM_INTERVAL: Duration = Duration::from_secs(60);

/// What a processor needs.
pub struct Processor {
    /// Attestation data on M.
    pub store: AttestationStore,
    /// The signing keys.
    pub issuer: Issuer,
    /// Result rules.
    pub rules: model::Rules,
    /// Status list URL prefix.
    pub list_prefix: String,
    /// Bits per new status list.
    pub list_size: usize,
    /// Indexes reserved per round trip.
    pub index_block: usize,
    /// Deliveries in flight.
    pub concurrency: usize,
    /// The consumer groups on M.
    pub hub: GroupHub,
    /// The indexes reserved and not used yet.
    pub reserved: Mutex<Option<IndexBlock>>,
}

/// How one delivery ended.
enum Handled {
    Done,
    /// Left pending after [`MAX_ATTEMPTS`].
    GaveUp,
    /// The subscription ended (shutdown).
    Ended,
}

impl Processor {
    /// Runs until `stop`: the group member, and the trimming chore.
    pub async fn run(self: Arc<Self>, stop: CancellationToken) {
        let trim = tokio::spawn(Arc::clone(&self).trim(stop.clone()));
        let mut backoff = Backoff::new();
        while !stop.is_cancelled() {
            let subscription = match self.hub.subscribe(
                keys::VERIFICATION_STREAM,
                keys::GROUP,
                None,
                OnLimit::DeadLetter,
            ) {
                Ok(s) => s,
                Err(e) => {
                    tracing::error!(error = %e, "cannot join the attestation group");
                    if !backoff.wait(&stop).await {
                        break;
                    }
                    continue;
                }
            };
            let consumer = subscription.consumer().to_string();
            tracing::info!(%consumer, "attesting verification results");
            let this = &self;
            let stop_ref = &stop;
            let mut work = subscription
                .map(|next| -> BoxFuture<'_, Handled> {
                    match next {
                        Ok(delivery) => Box::pin(this.handle(delivery, stop_ref)),
                        Err(_) => Box::pin(async { Handled::Ended }),
                    }
                })
                .buffer_unordered(self.concurrency);
            let mut ended = false;
            while let Some(handled) = work.next().await {
                match handled {
                    Handled::Done => backoff.reset(),
                    Handled::Ended => {
                        ended = true;
                        break;
                    }
                    Handled::GaveUp => {
                        tracing::error!(%consumer, "a result keeps failing; leaving it to the group's reclaim under a new consumer");
                        break;
                    }
                }
            }
            drop(work);
            if ended && stop.is_cancelled() {
                break;
            }
            if !backoff.wait(&stop).await {
                break;
            }
        }
        let _ = trim.await;
    }

    async fn trim(self: Arc<Self>, stop: CancellationToken) {
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(TRIM_INTERVAL) => {}
            }
            match self.store.trim_results().await {
                Ok(0) => {}
                Ok(n) => tracing::debug!(trimmed = n, "verification stream trimmed"),
                Err(e) => {
                    tracing::warn!(error = %ErrorChain(&e), "cannot trim the verification stream; will try again")
                }
            }
        }
    }

    async fn handle(&self, delivery: Delivery, stop: &CancellationToken) -> Handled {
        let mut backoff = Backoff::new();
        for attempt in 1..=MAX_ATTEMPTS {
            match self.attest(&delivery).await {
                Ok(()) => return Handled::Done,
                Err(e) => {
                    tracing::warn!(entry = %delivery.id, attempt, error = %ErrorChain(&e), "cannot attest a result yet; retrying");
                }
            }
            if !backoff.wait(stop).await {
                return Handled::Ended;
            }
        }
        Handled::GaveUp
    }

    /// One delivery, steps 1-5 of the module docs.
    pub async fn attest(&self, delivery: &Delivery) -> Result<(), AttestationError> {
        let now = time::now().ms as i64;
        let verification = match model::parse_entry(&delivery.fields, &self.rules, now) {
            Ok(v) => v,
            Err(rejection) => return self.dead_letter(delivery, &rejection).await,
        };
        let attestation_id = model::attestation_id(verification.request_id.as_deref(), delivery.id);
        let digest = verification.digest();
        if delivery.delivery_count > 1
            && let Some(stored) = self.store.digest(&attestation_id).await?
        {
            if stored == digest {
                return self.store.ack(delivery.id).await;
            }
            return self.dead_letter(delivery, &reused(&verification)).await;
        }
        let status = self.next_index().await?;
        let record = self.sign(&verification, attestation_id, digest, status, delivery.id)?;
        let outcome = self
            .store
            .issue(
                &NewAttestation {
                    record: &record,
                    entry_id: delivery.id,
                },
                time::now().ms as i64,
            )
            .await?;
        match outcome {
            IssueOutcome::Issued => Ok(()),
            IssueOutcome::Existing => {
                tracing::debug!(entry = %delivery.id, attestation = %record.attestation_id, "attested before; this signature is dropped");
                Ok(())
            }
            IssueOutcome::Conflict => self.dead_letter(delivery, &reused(&verification)).await,
            IssueOutcome::Stale => {
                // Redis forgot the reservation (it restarted empty): the
                // block is worthless; the retry reserves a new one.
                *self.reserved.lock().await = None;
                Err(AttestationError::Corrupt {
                    key: keys::LISTS.into(),
                    reason: format!(
                        "status list {} index {} was not reserved; reserving again",
                        record.list_id, record.list_index
                    ),
                })
            }
        }
    }

    fn sign(
        &self,
        v: &Verification,
        attestation_id: String,
        digest: String,
        status: StatusEntry,
        entry_id: StreamId,
    ) -> Result<AttestationRecord, AttestationError> {
        let key = self.issuer.active();
        let issued_ms = time::now().ms as i64;
        let validity = self.rules.validity(&v.did_type).as_millis() as i64;
        let expires_ms = v.verified_ms.saturating_add(validity);
        let credential = credential::attest(
            key,
            &credential::Attestation {
                attestation_id: &attestation_id,
                verification: v,
                status: &status,
                list_prefix: &self.list_prefix,
                expires_ms,
                issued_ms,
            },
        )
        .map_err(|e| AttestationError::Signing(e.to_string()))?;
        Ok(AttestationRecord {
            attestation_id,
            request_id: v.request_id.clone().unwrap_or_default(),
            entry_id: entry_id.to_string(),
            subject: v.subject.clone(),
            did_type: v.did_type.clone(),
            did_id: v.did_id.clone(),
            outcome: Some(v.outcome),
            evidence_hash: v.evidence_hash.clone(),
            verified_ms: v.verified_ms,
            issued_ms,
            expires_ms,
            key_id: key.key_id.clone(),
            list_id: status.list_id,
            list_index: status.index,
            credential,
            digest,
            status: StoredStatus::Active,
            revoked_ms: None,
            revocation_reason: String::new(),
            seq: 0,
        })
    }

    /// The next status list index of the active key, from the reserved
    /// block (reserving another when it is used up).
    async fn next_index(&self) -> Result<StatusEntry, AttestationError> {
        let mut reserved = self.reserved.lock().await;
        if reserved.as_ref().is_none_or(|b| b.count == 0) {
            *reserved = Some(
                self.store
                    .reserve(
                        &self.issuer.active().key_id,
                        self.index_block,
                        self.list_size,
                        time::now().ms as i64,
                    )
                    .await?,
            );
        }
        let block = reserved.as_mut().ok_or_else(|| AttestationError::Corrupt {
            key: keys::LISTS.into(),
            reason: "no index reserved".into(),
        })?;
        let entry = StatusEntry {
            list_id: block.list_id.clone(),
            index: block.first,
        };
        block.first += 1;
        block.count -= 1;
        Ok(entry)
    }

    async fn dead_letter(
        &self,
        delivery: &Delivery,
        rejection: &Rejection,
    ) -> Result<(), AttestationError> {
        // An entry too large is not copied whole: the stand-in is bounded.
        let bounded;
        let delivery = if rejection.code == rejection::ENTRY_TOO_LARGE {
            bounded = Delivery {
                id: delivery.id,
                fields: model::oversize_stand_in(&delivery.fields),
                delivery_count: delivery.delivery_count,
            };
            &bounded
        } else {
            delivery
        };
        self.hub
            .dead_letter(
                keys::VERIFICATION_STREAM,
                keys::GROUP,
                delivery,
                &rejection.to_string(),
            )
            .await?;
        Ok(())
    }
}

fn reused(v: &Verification) -> Rejection {
    Rejection {
        code: rejection::REQUEST_ID_REUSED,
        detail: format!(
            "request_id {} was attested before for another result",
            crate::validate::echo(v.request_id.as_deref().unwrap_or_default())
        ),
    }
}
