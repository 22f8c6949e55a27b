//! Helpers of the auth tests: one token per role in a config, and clients
//! that send a bearer token.
#![allow(dead_code)] // each test binary uses its own part

use std::collections::BTreeMap;

use openoes::{
    config::{AuthMode, CallerRole, Config, TokenEntry},
    server::auth::token,
};
use tonic::{Request, Status, metadata::MetadataValue, service::Interceptor};

/// Turns auth on in `config` with one fresh token per role (principal
/// named after its role); returns the tokens.
pub fn with_tokens(config: &mut Config) -> BTreeMap<CallerRole, String> {
    config.auth.mode = Some(AuthMode::Enforce);
    let mut tokens = BTreeMap::new();
    for role in CallerRole::ALL {
        let secret = token::generate().expect("rng");
        config.auth.tokens.push(TokenEntry {
            name: role.name().into(),
            sha256: token::hex(&token::sha256(&secret)),
            roles: vec![role],
        });
        tokens.insert(role, secret);
    }
    tokens
}

/// Sends `authorization: Bearer <token>` on every call.
#[derive(Clone)]
pub struct Bearer(pub String);

impl Interceptor for Bearer {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        let value: MetadataValue<_> = format!("Bearer {}", self.0).parse().expect("ascii");
        request.metadata_mut().insert("authorization", value);
        Ok(request)
    }
}
