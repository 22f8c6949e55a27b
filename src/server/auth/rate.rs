//! Rate limits that hold across gateways: a GCRA budget per (principal,
//! RPC class) kept on Redis (`lua/gcra.lua`), so N gateways on one Redis
//! share one budget. A refused call answers RESOURCE_EXHAUSTED
//! (RATE_LIMITED) with `RetryInfo` (when to retry) and `QuotaFailure`
//! (which budget).
//!
//! If Redis cannot be asked, the call passes (and a warning is logged):
//! the budget protects the gateway and Redis from a flood, and a Redis
//! outage should not add a second failure to calls that may still work.

use std::time::Duration;

use tonic::Code;
use tonic_types::ErrorDetails;

use super::policy::Class;
use crate::{
    config::RateLimitConfig,
    error::{RpcError, reason},
    redis::{RedisEndpoint, RedisError, script::lua_script},
};

lua_script! {
    /// `lua/gcra.lua`: one call against a budget.
    pub struct Gcra(include_str!("lua/gcra.lua")) {
        keys { budget: String }
        args { interval_us: u64, tolerance_us: u64 }
    }
}

/// The Redis key of a principal's budget for a class.
pub fn budget_key(class: Class, principal: &str) -> String {
    format!("mirror:ratelimit:{}:{principal}", class.name())
}

/// The budgets, on one Redis endpoint.
#[derive(Clone)]
pub struct RateLimiter {
    redis: RedisEndpoint,
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

impl RateLimiter {
    /// Budgets of `config` on `redis`.
    pub fn new(redis: RedisEndpoint, config: RateLimitConfig) -> Self {
        Self { redis, config }
    }

    fn per_second(&self, class: Class) -> u32 {
        match class {
            Class::Read => self.config.read_per_second,
            Class::Write => self.config.write_per_second,
            Class::Stream => self.config.stream_per_second,
        }
    }

    /// Spends one call of `principal`'s `class` budget, or says when to
    /// retry.
    pub async fn check(&self, principal: &str, class: Class) -> Result<(), RateLimited> {
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
            }),
            Err(e) => {
                tracing::warn!(error = %crate::error::ErrorChain(&e), "rate limit not checked (Redis); call passes");
                Ok(())
            }
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
            budget: budget_key(class, principal),
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
}
