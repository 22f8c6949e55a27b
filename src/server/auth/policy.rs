//! The policy table: every RPC of every service, who may call it, and its
//! class (for rate limits and the audit trail). The one place access is
//! decided; a test walks the descriptor set reflection serves and fails if
//! any method lacks an entry (or an entry names no method).
//!
//! Decisions, in short:
//! - Writes go to the one role that owns them in the OpenOES link: the WSP
//!   asks for credit, records custody, pledges and gives verdicts; the
//!   exchange takes and answers requests, reports and closes cycles; the
//!   verifier submits results; the issuer revokes; quote ingest writes
//!   pools. `admin` is an operator, not a superuser: it resolves anomalies
//!   and reads dead letters, and reads everything, but moves no money.
//! - Reads (Get*, List*, Watch*, quotes) are for `reader`, `admin` and the
//!   roles whose data it is: both sides of the link for credit and
//!   settlement, the WSP for custody, quote ingest for pools, the verifier
//!   and issuer for attestations.
//! - Public key material and status lists (GetSigningKeys, GetIssuerKey,
//!   GetStatusList) are for any authenticated principal: verifiers need
//!   them whatever else they may do.
//! - A principal holds several roles when it needs several (an exchange
//!   that also quotes holds `exchange` and `reader`).
//! - Health is always open (probes carry no credentials); reflection is
//!   `auth.reflection`. Anything not in the table is denied (NO_POLICY).

use crate::config::{CallerRole, CallerRole::*, ReflectionAccess};

/// Who may call an RPC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone, with or without a credential.
    Open,
    /// Any authenticated principal, whatever its roles.
    Authenticated,
    /// A principal holding at least one of these roles.
    Roles(&'static [CallerRole]),
}

impl Access {
    /// True if a principal holding `roles` may call.
    pub fn allows(&self, roles: &[CallerRole]) -> bool {
        match self {
            Self::Open | Self::Authenticated => true,
            Self::Roles(allowed) => roles.iter().any(|r| allowed.contains(r)),
        }
    }
}

/// What kind of call an RPC is: its rate-limit budget and whether it is
/// audited.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Class {
    /// Reads one thing or a page (unary, changes nothing).
    Read,
    /// Changes state: every call writes an audit line.
    Write,
    /// Opens a server stream (Watch*, Subscribe*): counted against the
    /// per-principal stream bound while open.
    Stream,
}

impl Class {
    /// Its name in QuotaFailure, logs and Redis keys.
    pub fn name(self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::Write => "write",
            Self::Stream => "stream",
        }
    }
}

/// One RPC's entry.
#[derive(Debug, Clone, Copy)]
pub struct Rule {
    /// The fully-qualified method, `package.Service/Method`.
    pub rpc: &'static str,
    /// Who may call it.
    pub access: Access,
    /// Its class.
    pub class: Class,
}

const WSP: &[CallerRole] = &[Wsp];
const EXCHANGE: &[CallerRole] = &[Exchange];
const VERIFIER: &[CallerRole] = &[Verifier];
const ISSUER: &[CallerRole] = &[Issuer];
const QUOTE_INGEST: &[CallerRole] = &[QuoteIngest];
const ADMIN: &[CallerRole] = &[Admin];
/// Data of both sides of the link (credit, settlement).
const LINK_READ: &[CallerRole] = &[Wsp, Exchange, Reader, Admin];
/// The WSP's custody (vaults, pledges).
const CUSTODY_READ: &[CallerRole] = &[Wsp, Reader, Admin];
/// Pools and quotes.
const QUOTE_READ: &[CallerRole] = &[QuoteIngest, Reader, Admin];
/// Attestations.
const ATTESTATION_READ: &[CallerRole] = &[Verifier, Issuer, Reader, Admin];

const fn rule(rpc: &'static str, access: Access, class: Class) -> Rule {
    Rule { rpc, access, class }
}

use Access::{Authenticated, Roles};
use Class::{Read, Stream, Write};

/// Every RPC of every OpenOES service.
pub const TABLE: &[Rule] = &[
    // --- openoes.credit.v1.CreditService ---
    rule(
        "openoes.credit.v1.CreditService/RequestCredit",
        Roles(WSP),
        Write,
    ),
    rule(
        "openoes.credit.v1.CreditService/GetCreditRequest",
        Roles(LINK_READ),
        Read,
    ),
    rule(
        "openoes.credit.v1.CreditService/GetCreditInventory",
        Roles(LINK_READ),
        Read,
    ),
    rule(
        "openoes.credit.v1.CreditService/ListCreditInventory",
        Roles(LINK_READ),
        Read,
    ),
    rule(
        "openoes.credit.v1.CreditService/SubscribeCreditRequests",
        Roles(EXCHANGE),
        Stream,
    ),
    rule(
        "openoes.credit.v1.CreditService/RespondToCreditRequest",
        Roles(EXCHANGE),
        Write,
    ),
    rule(
        "openoes.credit.v1.CreditService/WatchCreditEvents",
        Roles(LINK_READ),
        Stream,
    ),
    rule(
        "openoes.credit.v1.CreditService/ResolveCreditAnomaly",
        Roles(ADMIN),
        Write,
    ),
    // --- openoes.pledge.v1.PledgeService ---
    rule(
        "openoes.pledge.v1.PledgeService/RecordDeposit",
        Roles(WSP),
        Write,
    ),
    rule(
        "openoes.pledge.v1.PledgeService/RecordWithdrawal",
        Roles(WSP),
        Write,
    ),
    rule(
        "openoes.pledge.v1.PledgeService/GetVaultBalance",
        Roles(CUSTODY_READ),
        Read,
    ),
    rule(
        "openoes.pledge.v1.PledgeService/CreatePledge",
        Roles(WSP),
        Write,
    ),
    rule(
        "openoes.pledge.v1.PledgeService/ReleasePledge",
        Roles(WSP),
        Write,
    ),
    rule(
        "openoes.pledge.v1.PledgeService/GetPledge",
        Roles(CUSTODY_READ),
        Read,
    ),
    rule(
        "openoes.pledge.v1.PledgeService/ListPledges",
        Roles(CUSTODY_READ),
        Read,
    ),
    rule(
        "openoes.pledge.v1.PledgeService/GetPledgeRelease",
        Roles(CUSTODY_READ),
        Read,
    ),
    rule(
        "openoes.pledge.v1.PledgeService/WatchPledgeEvents",
        Roles(CUSTODY_READ),
        Stream,
    ),
    // --- openoes.settlement.v1.SettlementService ---
    rule(
        "openoes.settlement.v1.SettlementService/SubmitSettlementReport",
        Roles(EXCHANGE),
        Write,
    ),
    rule(
        "openoes.settlement.v1.SettlementService/ConfirmSettlement",
        Roles(WSP),
        Write,
    ),
    rule(
        "openoes.settlement.v1.SettlementService/DisputeSettlement",
        Roles(WSP),
        Write,
    ),
    rule(
        "openoes.settlement.v1.SettlementService/GetSettlementReport",
        Roles(LINK_READ),
        Read,
    ),
    rule(
        "openoes.settlement.v1.SettlementService/ListSettlementReports",
        Roles(LINK_READ),
        Read,
    ),
    rule(
        "openoes.settlement.v1.SettlementService/WatchSettlements",
        Roles(LINK_READ),
        Stream,
    ),
    rule(
        "openoes.settlement.v1.SettlementService/CloseSettlementCycle",
        Roles(EXCHANGE),
        Write,
    ),
    rule(
        "openoes.settlement.v1.SettlementService/GetSettlementCycle",
        Roles(LINK_READ),
        Read,
    ),
    rule(
        "openoes.settlement.v1.SettlementService/GetSettlementProof",
        Roles(LINK_READ),
        Read,
    ),
    rule(
        "openoes.settlement.v1.SettlementService/GetSigningKeys",
        Authenticated,
        Read,
    ),
    // --- openoes.quote.v1.QuoteService ---
    rule(
        "openoes.quote.v1.QuoteService/GetQuote",
        Roles(QUOTE_READ),
        Read,
    ),
    rule(
        "openoes.quote.v1.QuoteService/ListPools",
        Roles(QUOTE_READ),
        Read,
    ),
    rule(
        "openoes.quote.v1.QuoteService/GetPool",
        Roles(QUOTE_READ),
        Read,
    ),
    rule(
        "openoes.quote.v1.QuoteService/UpsertPool",
        Roles(QUOTE_INGEST),
        Write,
    ),
    rule(
        "openoes.quote.v1.QuoteService/UpsertBins",
        Roles(QUOTE_INGEST),
        Write,
    ),
    rule(
        "openoes.quote.v1.QuoteService/WatchQuote",
        Roles(QUOTE_READ),
        Stream,
    ),
    // --- openoes.attestation.v1.AttestationService ---
    rule(
        "openoes.attestation.v1.AttestationService/SubmitVerification",
        Roles(VERIFIER),
        Write,
    ),
    rule(
        "openoes.attestation.v1.AttestationService/GetAttestation",
        Roles(ATTESTATION_READ),
        Read,
    ),
    rule(
        "openoes.attestation.v1.AttestationService/ListAttestations",
        Roles(ATTESTATION_READ),
        Read,
    ),
    rule(
        "openoes.attestation.v1.AttestationService/VerifyAttestation",
        Roles(ATTESTATION_READ),
        Read,
    ),
    rule(
        "openoes.attestation.v1.AttestationService/RevokeAttestation",
        Roles(ISSUER),
        Write,
    ),
    rule(
        "openoes.attestation.v1.AttestationService/GetIssuerKey",
        Authenticated,
        Read,
    ),
    rule(
        "openoes.attestation.v1.AttestationService/GetStatusList",
        Authenticated,
        Read,
    ),
    rule(
        "openoes.attestation.v1.AttestationService/ListDeadLetters",
        Roles(ADMIN),
        Read,
    ),
    rule(
        "openoes.attestation.v1.AttestationService/WatchAttestations",
        Roles(ATTESTATION_READ),
        Stream,
    ),
];

/// The gRPC health service: always open, for probes.
pub const HEALTH_SERVICE: &str = "grpc.health.v1.Health";

/// The reflection services (v1 and v1alpha), governed by `auth.reflection`.
pub const REFLECTION_SERVICES: [&str; 2] = [
    "grpc.reflection.v1.ServerReflection",
    "grpc.reflection.v1alpha.ServerReflection",
];

/// Who may call `rpc` (`package.Service/Method`) and its class; `None`:
/// not in the table, nobody may.
pub fn lookup(rpc: &str, reflection: ReflectionAccess) -> Option<(Access, Class)> {
    let service = rpc.split_once('/').map_or(rpc, |(s, _)| s);
    if service == HEALTH_SERVICE {
        let class = if rpc.ends_with("/Watch") {
            Stream
        } else {
            Read
        };
        return Some((Access::Open, class));
    }
    if REFLECTION_SERVICES.contains(&service) {
        return match reflection {
            ReflectionAccess::Open => Some((Access::Open, Stream)),
            ReflectionAccess::Authenticated => Some((Authenticated, Stream)),
            // Not routed either: UNIMPLEMENTED for anyone allowed in.
            ReflectionAccess::Off => Some((Authenticated, Stream)),
        };
    }
    TABLE
        .iter()
        .find(|r| r.rpc == rpc)
        .map(|r| (r.access, r.class))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use prost::Message;

    use super::*;

    /// Every method of every file descriptor set the server registers for
    /// reflection, as `package.Service/Method`, and whether it streams
    /// responses.
    fn described_methods() -> Vec<(String, bool)> {
        let mut methods = Vec::new();
        for set in [
            crate::proto::FILE_DESCRIPTOR_SET,
            tonic_health::pb::FILE_DESCRIPTOR_SET,
        ] {
            let set = prost_types::FileDescriptorSet::decode(set).expect("descriptor set");
            for file in set.file {
                for service in &file.service {
                    for method in &service.method {
                        let name =
                            format!("{}.{}/{}", file.package(), service.name(), method.name());
                        methods.push((name, method.server_streaming()));
                    }
                }
            }
        }
        methods
    }

    #[test]
    fn every_rpc_of_every_service_has_a_policy_entry() {
        let methods = described_methods();
        // The walk sees what is there (else this test could not fail).
        assert!(methods.len() > 40, "{methods:?}");
        assert!(
            methods
                .iter()
                .any(|(m, _)| m == "grpc.health.v1.Health/Check")
        );
        let missing: Vec<_> = methods
            .iter()
            .filter(|(m, _)| lookup(m, ReflectionAccess::Off).is_none())
            .collect();
        assert!(
            missing.is_empty(),
            "RPCs without a policy entry: {missing:?}"
        );
        for (m, streams) in &methods {
            let (_, class) = lookup(m, ReflectionAccess::Off).expect("entry");
            assert_eq!(*streams, class == Stream, "{m}: streaming RPCs are Stream");
        }
        let described: BTreeSet<&str> = methods.iter().map(|(m, _)| m.as_str()).collect();
        let stale: Vec<_> = TABLE
            .iter()
            .filter(|r| !described.contains(r.rpc))
            .map(|r| r.rpc)
            .collect();
        assert!(stale.is_empty(), "entries naming no RPC: {stale:?}");
        let mut seen = BTreeSet::new();
        for r in TABLE {
            assert!(seen.insert(r.rpc), "{} is in the table twice", r.rpc);
        }
    }

    #[test]
    fn every_role_has_something_to_do() {
        for role in CallerRole::ALL {
            assert!(
                TABLE
                    .iter()
                    .any(|r| matches!(r.access, Roles(roles) if roles.contains(&role))),
                "{role:?} is allowed nothing"
            );
        }
        assert_eq!(
            lookup(
                "openoes.credit.v1.CreditService/Nope",
                ReflectionAccess::Open
            ),
            None
        );
        assert_eq!(
            lookup("grpc.health.v1.Health/Check", ReflectionAccess::Off),
            Some((Access::Open, Read))
        );
    }
}
