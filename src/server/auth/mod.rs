//! Who is calling, and may they.
//!
//! - A caller is a [`Principal`]: a name and roles, identified by a bearer
//!   token (`authorization: Bearer <token>`; config holds only the token's
//!   SHA-256, [`token`]) or by a client certificate's subject alternative
//!   name (mTLS, `auth.clients`). A token, when sent, wins over the
//!   certificate.
//! - [`policy`] is the one table of who may call which RPC.
//! - [`layer`] enforces it around every service, bounds streams per
//!   principal, applies the shared rate limits ([`rate`]) and writes the
//!   audit trail (target `audit`).
//!
//! Nothing here ever logs or echoes a credential: errors say what kind of
//! credential failed, never its value.

pub mod layer;
pub mod policy;
pub mod rate;
pub mod token;

use std::{collections::HashMap, sync::Arc};

use http::HeaderMap;
use rustls::pki_types::CertificateDer;
use tonic::Code;

use self::policy::Access;
use crate::{
    config::{AuthConfig, AuthMode, CallerRole},
    error::{RpcError, reason},
};

/// Longest bearer token accepted; longer is MALFORMED_CREDENTIAL (tokens
/// `openoes tokens create` makes are 47 characters).
pub const MAX_TOKEN_LEN: usize = 256;

/// Who made a call; handlers find it in the request's extensions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// Its configured name (`anonymous` with `auth.mode = "off"`).
    pub name: Arc<str>,
    /// Its roles.
    pub roles: Vec<CallerRole>,
}

impl Principal {
    /// The caller when authentication is off.
    pub fn anonymous() -> Arc<Self> {
        Arc::new(Self {
            name: "anonymous".into(),
            roles: CallerRole::ALL.to_vec(),
        })
    }
}

/// Why a call was refused before its handler ran.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// No credential at all.
    #[error(
        "{rpc} needs a credential: send `authorization: Bearer <token>` or a client certificate"
    )]
    Missing {
        /// The method called.
        rpc: String,
    },
    /// An `authorization` header that is not one `Bearer <token>`.
    #[error(
        "the authorization header must be one `Bearer <token>` (at most {MAX_TOKEN_LEN} characters of A-Z a-z 0-9 - . _ ~ + / =)"
    )]
    Malformed,
    /// A well-formed credential no principal has.
    #[error("the {kind} is not one this gateway knows")]
    Unknown {
        /// "bearer token" or "client certificate".
        kind: &'static str,
    },
    /// The principal's roles do not include one the RPC allows.
    #[error("{principal} may not call {rpc}: it needs one of the roles {allowed}")]
    RoleNotAllowed {
        /// The principal's name.
        principal: Arc<str>,
        /// The method called.
        rpc: String,
        /// The roles that may, comma-separated.
        allowed: String,
    },
    /// The method is not in the policy table.
    #[error("{rpc} has no entry in the policy table, so nobody may call it")]
    NoPolicy {
        /// The method called.
        rpc: String,
    },
}

impl RpcError for AuthError {
    fn code(&self) -> Code {
        match self {
            Self::Missing { .. } | Self::Malformed | Self::Unknown { .. } => Code::Unauthenticated,
            Self::RoleNotAllowed { .. } | Self::NoPolicy { .. } => Code::PermissionDenied,
        }
    }
    fn reason(&self) -> &'static str {
        match self {
            Self::Missing { .. } => reason::MISSING_CREDENTIAL,
            Self::Malformed => reason::MALFORMED_CREDENTIAL,
            Self::Unknown { .. } => reason::UNKNOWN_CREDENTIAL,
            Self::RoleNotAllowed { .. } => reason::ROLE_NOT_ALLOWED,
            Self::NoPolicy { .. } => reason::NO_POLICY,
        }
    }
}

/// The configured principals, indexed for lookup.
#[derive(Debug)]
pub struct Authenticator {
    /// False with `auth.mode = "off"`: every caller is [`Principal::anonymous`].
    enforce: bool,
    /// By SHA-256 of the token. Looking a hash up leaks nothing useful
    /// through timing: finding a token from its hash is preimage search.
    tokens: HashMap<[u8; 32], Arc<Principal>>,
    /// By subject alternative name (DNS or URI).
    clients: HashMap<String, Arc<Principal>>,
}

impl Authenticator {
    /// The principals of `config` (validated: hashes are 64 hex digits).
    /// An unset mode enforces: start-up refuses it anyway
    /// ([`crate::server::check_security`]).
    pub fn new(config: &AuthConfig) -> Self {
        let principal = |name: &str, roles: &[CallerRole]| {
            Arc::new(Principal {
                name: name.into(),
                roles: roles.to_vec(),
            })
        };
        Self {
            enforce: config.mode != Some(AuthMode::Off),
            tokens: config
                .tokens
                .iter()
                .filter_map(|t| Some((token::parse_hex(&t.sha256)?, principal(&t.name, &t.roles))))
                .collect(),
            clients: config
                .clients
                .iter()
                .map(|c| (c.san.clone(), principal(&c.name, &c.roles)))
                .collect(),
        }
    }

    /// True if credentials are checked.
    pub fn enforces(&self) -> bool {
        self.enforce
    }

    /// The principal of a call to `rpc` with `headers` over a connection
    /// whose client presented `peer_certs` (verified by rustls against
    /// `grpc.tls.client_ca_file`), if `access` lets it in.
    pub fn admit(
        &self,
        rpc: &str,
        access: Option<Access>,
        headers: &HeaderMap,
        peer_certs: Option<&[CertificateDer<'static>]>,
    ) -> Result<Arc<Principal>, AuthError> {
        if !self.enforce {
            return Ok(Principal::anonymous());
        }
        let principal = match self.identify(headers, peer_certs) {
            Ok(principal) => principal,
            Err(AuthError::Missing { .. }) if access == Some(Access::Open) => {
                return Ok(Principal::anonymous());
            }
            Err(AuthError::Missing { .. }) => return Err(AuthError::Missing { rpc: rpc.into() }),
            Err(e) => return Err(e),
        };
        match access {
            None => Err(AuthError::NoPolicy { rpc: rpc.into() }),
            Some(access) if access.allows(&principal.roles) => Ok(principal),
            Some(access) => Err(AuthError::RoleNotAllowed {
                principal: principal.name.clone(),
                rpc: rpc.into(),
                allowed: match access {
                    Access::Roles(roles) => roles
                        .iter()
                        .map(|r| r.name())
                        .collect::<Vec<_>>()
                        .join(", "),
                    _ => String::new(),
                },
            }),
        }
    }

    fn identify(
        &self,
        headers: &HeaderMap,
        peer_certs: Option<&[CertificateDer<'static>]>,
    ) -> Result<Arc<Principal>, AuthError> {
        let mut values = headers.get_all(http::header::AUTHORIZATION).iter();
        if let Some(value) = values.next() {
            if values.next().is_some() {
                return Err(AuthError::Malformed);
            }
            let token = bearer(value.as_bytes()).ok_or(AuthError::Malformed)?;
            return self
                .tokens
                .get(&token::sha256(token))
                .cloned()
                .ok_or(AuthError::Unknown {
                    kind: "bearer token",
                });
        }
        let Some(leaf) = peer_certs.and_then(|certs| certs.first()) else {
            return Err(AuthError::Missing { rpc: String::new() });
        };
        // rustls verified the chain; only its names are read here.
        let cert = webpki::EndEntityCert::try_from(leaf).map_err(|_| AuthError::Unknown {
            kind: "client certificate",
        })?;
        cert.valid_dns_names()
            .chain(cert.valid_uri_names())
            .find_map(|name| self.clients.get(name).cloned())
            .ok_or(AuthError::Unknown {
                kind: "client certificate",
            })
    }
}

/// The token of an `authorization` value `Bearer <token>` (scheme case
/// insensitive, RFC 6750 `b64token` alphabet), or `None`.
fn bearer(value: &[u8]) -> Option<&str> {
    let value = std::str::from_utf8(value).ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim_start_matches(' ');
    let alphabet = |c: char| c.is_ascii_alphanumeric() || "-._~+/=".contains(c);
    (scheme.eq_ignore_ascii_case("bearer")
        && !token.is_empty()
        && token.len() <= MAX_TOKEN_LEN
        && token.chars().all(alphabet))
    .then_some(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_values() {
        assert_eq!(bearer(b"Bearer abc"), Some("abc"));
        assert_eq!(bearer(b"bearer oes_A-b_c"), Some("oes_A-b_c"));
        assert_eq!(bearer(b"Basic abc"), None);
        assert_eq!(bearer(b"Bearer"), None);
        assert_eq!(bearer(b"Bearer "), None);
        assert_eq!(bearer(b"Bearer a b"), None);
        assert_eq!(bearer(&[b'B', b' ', 0xff]), None);
        let long = format!("Bearer {}", "a".repeat(MAX_TOKEN_LEN + 1));
        assert_eq!(bearer(long.as_bytes()), None);
    }
}
