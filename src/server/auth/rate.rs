//! Rate limits that hold across gateways: a GCRA budget per (principal,
//! RPC class) kept on Redis (`lua/gcra.lua`), so N gateways on one Redis
//! share one budget. A refused call answers RESOURCE_EXHAUSTED
//! (RATE_LIMITED) with `RetryInfo` (when to retry) and `QuotaFailure`
//! (which budget).
//!
//! Where budgets live: on M (`mirror:ratelimit:<class>:<principal>`) for a
//! gateway serving the WSP, on R (`mirror:ratelimit:exchange:<class>:
//! <principal>`) for an exchange-only one, which cannot write M. R's keys
//! have their own prefix because M's replicate to R: a principal of the
//! same name on both sides would otherwise have its R budget overwritten
//! by M's, and the `exchange` ACL user's selector can name exactly its own.
//!
//! When the budget cannot be checked, two cases differ on purpose:
//! - Redis is unreachable (down, timed out, pool exhausted) or not ready
//!   (LOADING after a restart, BUSY, a failover): the call passes and a
//!   warning is logged. The budget protects Redis and the gateway from a
//!   flood; Redis that cannot be reached cannot be flooded, the gateway's
//!   own bounds (connections, streams per connection, message sizes) still
//!   hold, and nearly every call needs that Redis anyway and fails on its
//!   own. Refusing would only add a second failure to the few calls that
//!   may still work (a WSP gateway's reads on R).
//! - Redis answers any other error (NOPERM: an ACL without the budget's
//!   keys; a key of the wrong type): a deployment mistake that would otherwise
//!   switch the budgets off silently and for good. The call is refused,
//!   INTERNAL with REDIS_ERROR, and the cause is logged, so the mistake
//!   shows at the first call instead of in the first flood.

use std::time::Duration;

use tonic::Code;
use tonic_types::ErrorDetails;

use super::policy::Class;
use crate::{
    config::RateLimitConfig,
    error::{Error, ErrorChain, RpcError, reason},
    redis::{RedisEndpoint, RedisError, script::lua_script},
};

lua_script! {
    /// `lua/gcra.lua`: one call against a budget.
    pub struct Gcra(include_str!("lua/gcra.lua")) {
        keys { budget: String }
        args { interval_us: u64, tolerance_us: u64 }
    }
}

/// Which Redis holds a gateway's budgets (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BudgetHome {
    /// M, written by a gateway that serves the WSP.
    Master,
    /// R, written by an exchange-only gateway as the `exchange` ACL user.
    Replica,
}

/// The Redis key of a principal's budget for a class.
pub fn budget_key(home: BudgetHome, class: Class, principal: &str) -> String {
    match home {
        BudgetHome::Master => format!("mirror:ratelimit:{}:{principal}", class.name()),
        BudgetHome::Replica => format!("mirror:ratelimit:exchange:{}:{principal}", class.name()),
    }
}

/// The budgets, on one Redis endpoint.
#[derive(Clone)]
pub struct RateLimiter {
    redis: RedisEndpoint,
    home: BudgetHome,
    config: RateLimitConfig,
}

/// A call refused by its budget.
#[derive(Debug, thiserror::Error)]
#[error(
    "{principal} spent its {} budget ({per_second} calls/s, burst {burst}); retry in {retry_after:?}",
    class.name()
)]
pub struct RateLimited {
    /// The principal.
    pub principal: String,
    /// The budget's class.
    pub class: Class,
    /// Its rate.
    pub per_second: u32,
    /// Its burst.
    pub burst: u32,
    /// When a call would pass again.
    pub retry_after: Duration,
}

impl RpcError for RateLimited {
    fn code(&self) -> Code {
        Code::ResourceExhausted
    }
    fn reason(&self) -> &'static str {
        reason::RATE_LIMITED
    }
    fn add_details(&self, details: &mut ErrorDetails) {
        details.set_retry_info(Some(self.retry_after));
        details.add_quota_failure_violation(
            format!("principal:{}/class:{}", self.principal, self.class.name()),
            format!("{} calls per second, burst {}", self.per_second, self.burst),
        );
    }
}

/// True if `e` means Redis cannot be asked right now (the call passes),
/// false if it answered that the check is impossible (NOPERM, WRONGTYPE, a
/// script error: a deployment mistake; the call is refused).
fn cannot_ask(e: &RedisError) -> bool {
    // Restarts and failovers count as outages (RedisError::from_redis).
    e.is_unavailable()
}

impl RateLimiter {
    /// Budgets of `config` on `redis`, which is `home`.
    pub fn new(redis: RedisEndpoint, home: BudgetHome, config: RateLimitConfig) -> Self {
        Self {
            redis,
            home,
            config,
        }
    }

    fn per_second(&self, class: Class) -> u32 {
        match class {
            Class::Read => self.config.read_per_second,
            Class::Write => self.config.write_per_second,
            Class::Stream => self.config.stream_per_second,
        }
    }

    /// Spends one call of `principal`'s `class` budget, or says when to
    /// retry ([`RateLimited`]), or why the budget could not be checked
    /// (Redis refused the script; see the module docs).
    pub async fn check(&self, principal: &str, class: Class) -> Result<(), Error> {
        let per_second = self.per_second(class);
        let interval_us = 1_000_000 / u64::from(per_second.max(1));
        let tolerance_us = interval_us * u64::from(self.config.burst.saturating_sub(1));
        match self.ask(principal, class, interval_us, tolerance_us).await {
            Ok((1, _)) => Ok(()),
            Ok((_, retry_us)) => Err(RateLimited {
                principal: principal.into(),
                class,
                per_second,
                burst: self.config.burst,
                retry_after: Duration::from_micros(retry_us.max(1)),
            }
            .into()),
            Err(e) if cannot_ask(&e) => {
                tracing::warn!(
                    error = %ErrorChain(&e),
                    "rate limit not checked (Redis unreachable or not ready); call passes"
                );
                Ok(())
            }
            // Logged with its cause by the conversion to a status (INTERNAL).
            Err(e) => Err(e.into()),
        }
    }

    async fn ask(
        &self,
        principal: &str,
        class: Class,
        interval_us: u64,
        tolerance_us: u64,
    ) -> Result<(u64, u64), RedisError> {
        let mut conn = self.redis.conn().await?;
        Gcra {
            budget: budget_key(self.home, class, principal),
            interval_us,
            tolerance_us,
        }
        .invoke(&mut *conn)
        .await
        .map_err(|e| RedisError::from_redis(self.redis.name(), e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripts_match_their_headers() {
        Gcra::SHAPE.check();
    }

    #[test]
    fn outages_and_restarts_pass_deployment_mistakes_refuse() {
        use redis::{ErrorKind, ServerErrorKind};
        let command = |kind| {
            RedisError::from_redis(
                crate::redis::Endpoint::Replica,
                redis::RedisError::from((ErrorKind::Server(kind), "test")),
            )
        };
        assert!(cannot_ask(&command(ServerErrorKind::BusyLoading)));
        assert!(cannot_ask(&command(ServerErrorKind::MasterDown)));
        assert!(!cannot_ask(&command(ServerErrorKind::NoPerm)));
        assert!(!cannot_ask(&command(ServerErrorKind::ResponseError)));
        assert!(cannot_ask(&RedisError::Unavailable {
            endpoint: crate::redis::Endpoint::Replica,
            source: None,
        }));
    }
}
