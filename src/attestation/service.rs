//! gRPC handler of `openoes.attestation.v1.AttestationService`: validate
//! ([`convert`](super::convert)), the store or the credential code, proto
//! out. Served whatever the link roles (its data lives on M); without an
//! issuer key every RPC answers FAILED_PRECONDITION
//! (ISSUER_KEY_NOT_CONFIGURED).

use futures_util::StreamExt;
use tonic::{Request, Response, Status};

use super::{
    convert::{self, Target},
    credential::{self, Check, Issuer},
    error::AttestationError,
    keys, model,
    store::{AttestationStore, RevokeOutcome},
};
use crate::{
    error::{NotFound, rpc},
    proto::attestation::v1::{self as pb, attestation_service_server::AttestationService},
    streams::{Pump, ResponseStream, watch::WatchHub},
    time,
    validate::require_id,
};

/// What a gateway with an issuer key serves with.
pub(super) struct Ready {
    pub(super) issuer: Issuer,
    pub(super) rules: model::Rules,
    pub(super) list_prefix: String,
    pub(super) request_retention_ms: u64,
}

/// The AttestationService handler.
#[derive(Clone)]
pub struct AttestationApi {
    /// The issuer's keys and rules, or why there are none.
    pub(super) ready: Result<std::sync::Arc<Ready>, String>,
    pub(super) store: AttestationStore,
    /// The fan-out of M's streams (the event log).
    pub(super) events: WatchHub,
    pub(super) watch_pump: Pump,
}

impl AttestationApi {
    fn ready(&self) -> Result<&Ready, AttestationError> {
        self.ready
            .as_deref()
            .map_err(|why| AttestationError::NotReady(why.clone()))
    }
}

fn now_ms() -> i64 {
    time::now().ms as i64
}

#[tonic::async_trait]
impl AttestationService for AttestationApi {
    async fn submit_verification(
        &self,
        request: Request<pb::SubmitVerificationRequest>,
    ) -> Result<Response<pb::SubmitVerificationResponse>, Status> {
        rpc(async move {
            let ready = self.ready()?;
            let v = convert::submission(request.into_inner(), &ready.rules, now_ms())?;
            let attestation_id = model::attestation_id(v.request_id.as_deref(), Default::default());
            let submitted = self
                .store
                .submit(&v, &attestation_id, ready.request_retention_ms)
                .await?;
            Ok(pb::SubmitVerificationResponse {
                verification_id: submitted.entry_id,
                attestation_id,
                existing: submitted.existing,
            })
        })
        .await
    }

    async fn get_attestation(
        &self,
        request: Request<pb::GetAttestationRequest>,
    ) -> Result<Response<pb::GetAttestationResponse>, Status> {
        rpc(async move {
            self.ready()?;
            let id = request.into_inner().attestation_id;
            require_id("attestation_id", &id)?;
            let record = self.store.record(&id).await?;
            let record = record.ok_or_else(|| NotFound::new("attestation", id))?;
            Ok(pb::GetAttestationResponse {
                attestation: Some(convert::attestation_to_proto(&record, now_ms())),
            })
        })
        .await
    }

    async fn list_attestations(
        &self,
        request: Request<pb::ListAttestationsRequest>,
    ) -> Result<Response<pb::ListAttestationsResponse>, Status> {
        rpc(async move {
            self.ready()?;
            let r = request.into_inner();
            let (before, size) = convert::list_page(&r)?;
            let (page, more) = self.store.by_subject(&r.subject, before, size).await?;
            let next_page_token = match page.last() {
                Some(last) if more => last.seq.to_string(),
                _ => String::new(),
            };
            let now = now_ms();
            Ok(pb::ListAttestationsResponse {
                attestations: page
                    .iter()
                    .map(|a| convert::attestation_to_proto(a, now))
                    .collect(),
                next_page_token,
            })
        })
        .await
    }

    async fn verify_attestation(
        &self,
        request: Request<pb::VerifyAttestationRequest>,
    ) -> Result<Response<pb::VerifyAttestationResponse>, Status> {
        rpc(async move {
            let ready = self.ready()?;
            let (document, mut record) = match convert::verify_target(request.into_inner())? {
                Target::Id(id) => {
                    let record = self.store.record(&id).await?;
                    let record = record.ok_or_else(|| NotFound::new("attestation", &id))?;
                    let document = serde_json::from_str(&record.credential).map_err(|e| {
                        AttestationError::Corrupt {
                            key: keys::attestation(&id),
                            reason: format!("credential: {e}"),
                        }
                    })?;
                    (document, Some(record))
                }
                Target::Credential(document) => (document, None),
            };
            let now = now_ms();
            let mut verdict =
                credential::verify_offline(&ready.issuer, &document, &ready.list_prefix, now);
            if record.is_none()
                && let Some(id) = &verdict.attestation_id
            {
                record = self.store.record(id).await?;
            }
            if let Some(entry) = &verdict.status {
                match self.store.is_revoked(&entry.list_id, entry.index).await? {
                    Some(false) => {}
                    Some(true) => verdict.failed.push((
                        Check::Revocation,
                        format!(
                            "revoked in status list {} (index {})",
                            entry.list_id, entry.index
                        ),
                    )),
                    None => verdict.failed.push((
                        Check::Revocation,
                        format!("status list {} has no index {}", entry.list_id, entry.index),
                    )),
                }
            }
            Ok(pb::VerifyAttestationResponse {
                valid: verdict.failed.is_empty(),
                failed_checks: verdict
                    .failed
                    .iter()
                    .map(|(c, _)| convert::check_to_proto(*c) as i32)
                    .collect(),
                reasons: verdict.failed.into_iter().map(|(_, why)| why).collect(),
                attestation: record.map(|r| convert::attestation_to_proto(&r, now)),
            })
        })
        .await
    }

    async fn revoke_attestation(
        &self,
        request: Request<pb::RevokeAttestationRequest>,
    ) -> Result<Response<pb::RevokeAttestationResponse>, Status> {
        rpc(async move {
            self.ready()?;
            let (id, reason) = convert::revocation(request.into_inner())?;
            let record = match self.store.revoke(&id, &reason, now_ms()).await? {
                RevokeOutcome::Revoked(r) => {
                    tracing::warn!(attestation = %id, %reason, "attestation revoked");
                    r
                }
                RevokeOutcome::Existing(r) => r,
                RevokeOutcome::Unknown => return Err(NotFound::new("attestation", id).into()),
            };
            Ok(pb::RevokeAttestationResponse {
                attestation: Some(convert::attestation_to_proto(&record, now_ms())),
            })
        })
        .await
    }

    async fn get_issuer_key(
        &self,
        request: Request<pb::GetIssuerKeyRequest>,
    ) -> Result<Response<pb::GetIssuerKeyResponse>, Status> {
        rpc(async move {
            let issuer = &self.ready()?.issuer;
            let id = request.into_inner().key_id;
            let key = if id.is_empty() {
                issuer.active()
            } else {
                issuer
                    .key(&id)
                    .ok_or_else(|| NotFound::new("issuer key", id))?
            };
            Ok(convert::issuer_key_to_proto(issuer, key))
        })
        .await
    }

    async fn get_status_list(
        &self,
        request: Request<pb::GetStatusListRequest>,
    ) -> Result<Response<pb::GetStatusListResponse>, Status> {
        rpc(async move {
            let ready = self.ready()?;
            let id = convert::status_list_id(request.get_ref(), &ready.list_prefix)?;
            let state = self.store.status_list(&id).await?;
            let state = state.ok_or_else(|| NotFound::new("status list", &id))?;
            let url = credential::list_url(&ready.list_prefix, &id);
            let (revision, credential_json) = match state.signed {
                Some((revision, credential)) if revision == state.revision => {
                    (revision, credential)
                }
                _ => {
                    // Signed on read, once per change: see the module docs.
                    let key = ready.issuer.key(&state.key_id).ok_or_else(|| {
                        AttestationError::KeyNotLoaded {
                            list_id: id.clone(),
                            key_id: state.key_id.clone(),
                        }
                    })?;
                    let signed = credential::status_list_credential(
                        key,
                        &url,
                        state.size,
                        &state.bits,
                        now_ms(),
                    )
                    .map_err(|e| AttestationError::Signing(e.to_string()))?;
                    self.store
                        .store_status_list(&id, state.revision, &signed)
                        .await?
                }
            };
            Ok(pb::GetStatusListResponse {
                status_list_id: id,
                credential_json,
                url,
                revision,
                size: state.size as u64,
                key_id: state.key_id,
            })
        })
        .await
    }

    async fn list_dead_letters(
        &self,
        request: Request<pb::ListDeadLettersRequest>,
    ) -> Result<Response<pb::ListDeadLettersResponse>, Status> {
        rpc(async move {
            self.ready()?;
            let (before, size) = convert::dead_letter_page(request.get_ref())?;
            let (page, more) = self.store.dead_letters(before, size).await?;
            let next_page_token = match page.last() {
                Some(last) if more => last.id.to_string(),
                _ => String::new(),
            };
            Ok(pb::ListDeadLettersResponse {
                dead_letters: page
                    .into_iter()
                    .map(convert::dead_letter_to_proto)
                    .collect(),
                next_page_token,
            })
        })
        .await
    }

    type WatchAttestationsStream = ResponseStream<pb::WatchAttestationsResponse>;

    async fn watch_attestations(
        &self,
        request: Request<pb::WatchAttestationsRequest>,
    ) -> Result<Response<Self::WatchAttestationsStream>, Status> {
        rpc(async move {
            self.ready()?;
            let (cursor, filter) = convert::watch(request.into_inner())?;
            let slot = self.watch_pump.reserve()?;
            let events = self.events.subscribe(keys::EVENTS, &cursor, filter).await?;
            let source = events.map(|next| {
                let entry = next?;
                Ok(pb::WatchAttestationsResponse {
                    event: Some(convert::event_to_proto(&entry, now_ms())),
                })
            });
            Ok(slot.serve(source))
        })
        .await
    }
}
