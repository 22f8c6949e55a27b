//! gRPC handler of `openoes.attestation.v1.AttestationService`.
//!
//! Not built yet: every RPC answers UNIMPLEMENTED (reason NOT_IMPLEMENTED)
//! and README.md's status table says so.

use tonic::{Request, Response, Status};

use crate::{
    proto::attestation::v1::{
        GetAttestationRequest, GetAttestationResponse, GetIssuerKeyRequest, GetIssuerKeyResponse,
        ListAttestationsRequest, ListAttestationsResponse, RevokeAttestationRequest,
        RevokeAttestationResponse, SubmitVerificationRequest, SubmitVerificationResponse,
        VerifyAttestationRequest, VerifyAttestationResponse, WatchAttestationsRequest,
        WatchAttestationsResponse, attestation_service_server::AttestationService,
    },
    server::unimplemented,
    streams::ResponseStream,
};

/// The AttestationService handler.
#[derive(Debug, Default, Clone)]
pub struct AttestationApi;

#[tonic::async_trait]
impl AttestationService for AttestationApi {
    async fn submit_verification(
        &self,
        request: Request<SubmitVerificationRequest>,
    ) -> Result<Response<SubmitVerificationResponse>, Status> {
        Err(unimplemented(&request))
    }

    async fn get_attestation(
        &self,
        request: Request<GetAttestationRequest>,
    ) -> Result<Response<GetAttestationResponse>, Status> {
        Err(unimplemented(&request))
    }

    async fn list_attestations(
        &self,
        request: Request<ListAttestationsRequest>,
    ) -> Result<Response<ListAttestationsResponse>, Status> {
        Err(unimplemented(&request))
    }

    async fn verify_attestation(
        &self,
        request: Request<VerifyAttestationRequest>,
    ) -> Result<Response<VerifyAttestationResponse>, Status> {
        Err(unimplemented(&request))
    }

    async fn revoke_attestation(
        &self,
        request: Request<RevokeAttestationRequest>,
    ) -> Result<Response<RevokeAttestationResponse>, Status> {
        Err(unimplemented(&request))
    }

    async fn get_issuer_key(
        &self,
        request: Request<GetIssuerKeyRequest>,
    ) -> Result<Response<GetIssuerKeyResponse>, Status> {
        Err(unimplemented(&request))
    }

    type WatchAttestationsStream = ResponseStream<WatchAttestationsResponse>;

    async fn watch_attestations(
        &self,
        request: Request<WatchAttestationsRequest>,
    ) -> Result<Response<Self::WatchAttestationsStream>, Status> {
        Err(unimplemented(&request))
    }
}
