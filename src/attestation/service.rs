//! gRPC handler of `openoes.attestation.v1.AttestationService`.
//!
//! Not built yet: every RPC answers UNIMPLEMENTED (reason NOT_IMPLEMENTED)
//! and README.md's status table says so.

use tonic::{Request, Response, Status};

use crate::{
    error::Error,
    proto::attestation::v1::{
        GetAttestationRequest, GetAttestationResponse, GetIssuerKeyRequest, GetIssuerKeyResponse,
        ListAttestationsRequest, ListAttestationsResponse, RevokeAttestationRequest,
        RevokeAttestationResponse, SubmitVerificationRequest, SubmitVerificationResponse,
        VerifyAttestationRequest, VerifyAttestationResponse, WatchAttestationsRequest,
        WatchAttestationsResponse, attestation_service_server::AttestationService,
    },
    streams::ResponseStream,
};

/// The AttestationService handler.
#[derive(Debug, Default, Clone)]
pub struct AttestationApi;

#[tonic::async_trait]
impl AttestationService for AttestationApi {
    async fn submit_verification(
        &self,
        _: Request<SubmitVerificationRequest>,
    ) -> Result<Response<SubmitVerificationResponse>, Status> {
        Err(
            Error::unimplemented("openoes.attestation.v1.AttestationService/SubmitVerification")
                .into(),
        )
    }

    async fn get_attestation(
        &self,
        _: Request<GetAttestationRequest>,
    ) -> Result<Response<GetAttestationResponse>, Status> {
        Err(Error::unimplemented("openoes.attestation.v1.AttestationService/GetAttestation").into())
    }

    async fn list_attestations(
        &self,
        _: Request<ListAttestationsRequest>,
    ) -> Result<Response<ListAttestationsResponse>, Status> {
        Err(
            Error::unimplemented("openoes.attestation.v1.AttestationService/ListAttestations")
                .into(),
        )
    }

    async fn verify_attestation(
        &self,
        _: Request<VerifyAttestationRequest>,
    ) -> Result<Response<VerifyAttestationResponse>, Status> {
        Err(
            Error::unimplemented("openoes.attestation.v1.AttestationService/VerifyAttestation")
                .into(),
        )
    }

    async fn revoke_attestation(
        &self,
        _: Request<RevokeAttestationRequest>,
    ) -> Result<Response<RevokeAttestationResponse>, Status> {
        Err(
            Error::unimplemented("openoes.attestation.v1.AttestationService/RevokeAttestation")
                .into(),
        )
    }

    async fn get_issuer_key(
        &self,
        _: Request<GetIssuerKeyRequest>,
    ) -> Result<Response<GetIssuerKeyResponse>, Status> {
        Err(Error::unimplemented("openoes.attestation.v1.AttestationService/GetIssuerKey").into())
    }

    type WatchAttestationsStream = ResponseStream<WatchAttestationsResponse>;

    async fn watch_attestations(
        &self,
        _: Request<WatchAttestationsRequest>,
    ) -> Result<Response<Self::WatchAttestationsStream>, Status> {
        Err(
            Error::unimplemented("openoes.attestation.v1.AttestationService/WatchAttestations")
                .into(),
        )
    }
}
