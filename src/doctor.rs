//! `openoes doctor --config FILE`: checks a deployment from the outside, as
//! the gateway of that config would see it, and prints one verdict line per
//! check; the process exits non-zero if any check fails.
//!
//! Checks, for the roles the config serves:
//! - each Redis endpoint answers PING as its configured user (M as the WSP
//!   user, R as the exchange user and as the WSP's reader);
//! - the ACLs are as shipped: every command [`acl::REFUSALS`] lists for a
//!   user is refused with NOPERM (each is harmless if it is not: a read, or
//!   a write of nothing), and the default user cannot run a command;
//! - R reports `master_link_status:up`;
//! - the streams each side writes accept writes (an `XTRIM` that removes
//!   nothing: a read-only replica or a missing rule refuses it);
//! - the clocks of M and R agree within [`MAX_CLOCK_SKEW`] (`INFO server`'s
//!   `server_time_usec`, corrected for the time between the two reads);
//! - the engine and its version, and `WAITAOF` if `redis.durability.aof`
//!   asks for it.
//!
//! Every command runs on a fresh connection bounded by [`CHECK_TIMEOUT`].

use std::time::{Duration, Instant};

use redis::aio::MultiplexedConnection;

use crate::{
    acl::{self, AclUserKind},
    config::{Config, RedisEndpointConfig, Role, Secret},
    metrics::sampler::info_field,
    redis::connection_info,
};

/// Longest one check may take (connect and command).
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(3);

/// Largest clock difference between M and R that passes: the heartbeat age
/// an exchange sees (`openoes_link_heartbeat_age_seconds`) includes it, and
/// records carry both sides' milliseconds.
pub const MAX_CLOCK_SKEW: Duration = Duration::from_secs(1);

/// `MAXLEN` of the write probe: no stream is this long, so it trims nothing.
const NO_TRIM: u64 = 1_000_000_000_000;

/// One check's outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Fine.
    Ok,
    /// Broken: the deployment needs fixing.
    Fail,
    /// Worth knowing, not failing.
    Note,
}

/// A check and what it found.
#[derive(Debug, Clone)]
pub struct Finding {
    /// The verdict.
    pub verdict: Verdict,
    /// What was checked.
    pub check: String,
    /// What was seen.
    pub detail: String,
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let tag = match self.verdict {
            Verdict::Ok => "ok  ",
            Verdict::Fail => "FAIL",
            Verdict::Note => "note",
        };
        write!(f, "{tag} {}: {}", self.check, self.detail)
    }
}

/// One (endpoint, user) the gateway of the config connects as.
struct Login {
    /// `M as wsp`, for the lines.
    name: String,
    kind: AclUserKind,
    endpoint: RedisEndpointConfig,
}

/// Runs every check for `config`; the findings in order.
pub async fn run(config: &Config) -> Vec<Finding> {
    let mut out = Vec::new();
    let mut push = |verdict, check: &str, detail: String| {
        let finding = Finding {
            verdict,
            check: check.to_string(),
            detail,
        };
        println!("{finding}");
        out.push(finding);
    };
    let r = &config.redis;
    let named = |e: &RedisEndpointConfig| {
        if e.user.is_empty() {
            "default".to_string()
        } else {
            e.user.clone()
        }
    };
    let mut logins = Vec::new();
    if config.serves(Role::Wsp) {
        logins.push(Login {
            name: format!("M as {}", named(&r.master)),
            kind: AclUserKind::Wsp,
            endpoint: r.master.clone(),
        });
        let mut reader = r.replica.clone();
        if !r.replica_reader.user.is_empty() {
            reader.user.clone_from(&r.replica_reader.user);
            reader.password = r.replica_reader.password.clone();
        }
        logins.push(Login {
            name: format!("R as {}", named(&reader)),
            kind: AclUserKind::WspReader,
            endpoint: reader,
        });
    }
    if config.serves(Role::Exchange) {
        logins.push(Login {
            name: format!("R as {}", named(&r.replica)),
            kind: AclUserKind::Exchange,
            endpoint: r.replica.clone(),
        });
    }

    // Reachability, and the connections every later check uses.
    let mut reached = Vec::new();
    for login in &logins {
        match ping(&login.endpoint).await {
            Ok(()) => {
                push(
                    Verdict::Ok,
                    &format!("{} reachable", login.name),
                    "PONG".into(),
                );
                reached.push(login);
            }
            Err(e) => push(Verdict::Fail, &format!("{} reachable", login.name), e),
        }
    }

    // The ACLs as shipped.
    for login in &reached {
        let mut granted = Vec::new();
        for command in acl::refusals(login.kind) {
            match query::<redis::Value>(&login.endpoint, command).await {
                Err(e) if e.code() == Some("NOPERM") => {}
                Err(e) if is_refusal_in_script(&e) => {}
                Err(e) if e.is_io_error() || e.is_timeout() => {
                    granted.push(format!("{} (no answer: {e})", command.join(" ")));
                }
                _ => granted.push(command.join(" ")),
            }
        }
        let check = format!("{} ACL as shipped", login.name);
        if granted.is_empty() {
            push(
                Verdict::Ok,
                &check,
                format!(
                    "{} expected refusals all refused (NOPERM)",
                    acl::refusals(login.kind).len()
                ),
            );
        } else {
            push(
                Verdict::Fail,
                &check,
                format!(
                    "must be refused but were not: {}; apply deploy/redis/acl (`openoes acl apply`)",
                    granted.join("; ")
                ),
            );
        }
    }
    let mut seen_servers = Vec::new();
    for login in &reached {
        let url = &login.endpoint.url;
        if seen_servers.contains(url) {
            continue;
        }
        seen_servers.push(url.clone());
        let anonymous = RedisEndpointConfig {
            user: String::new(),
            password: Secret::default(),
            password_file: String::new(),
            ..login.endpoint.clone()
        };
        let side = if login.kind == AclUserKind::Wsp {
            "M"
        } else {
            "R"
        };
        let check = format!("{side} default user off");
        match query::<redis::Value>(&anonymous, &["GET", "openoes-doctor:probe"]).await {
            Err(e) if matches!(e.code(), Some("NOAUTH" | "NOPERM" | "WRONGPASS")) => {
                push(
                    Verdict::Ok,
                    &check,
                    format!("refused ({})", e.code().unwrap_or_default()),
                );
            }
            Err(e) => push(Verdict::Fail, &check, format!("unexpected answer: {e}")),
            Ok(_) => push(
                Verdict::Fail,
                &check,
                "anyone who reaches the port may run commands as `default`: apply deploy/redis/acl"
                    .into(),
            ),
        }
    }

    // The replica link, as R sees it.
    if let Some(login) = reached.iter().find(|l| l.kind != AclUserKind::Wsp) {
        let check = "replica link (R master_link_status)";
        match query::<String>(&login.endpoint, &["INFO", "replication"]).await {
            Ok(info) => match info_field(&info, "master_link_status") {
                Some("up") => push(Verdict::Ok, check, "up".into()),
                Some(other) => push(
                    Verdict::Fail,
                    check,
                    format!(
                        "{other} (R's master_host {}: is M reachable from R, masterauth right?)",
                        info_field(&info, "master_host").unwrap_or("?")
                    ),
                ),
                None => push(
                    Verdict::Fail,
                    check,
                    "R is not a replica (role:master)".into(),
                ),
            },
            Err(e) => push(Verdict::Fail, check, format!("cannot read INFO: {e}")),
        }
    }

    // Writable streams, with a write that changes nothing.
    for login in &reached {
        let Some(stream) = acl::written_stream(login.kind) else {
            continue;
        };
        let check = format!("{} can write {stream}", login.name);
        let trim = ["XTRIM", stream, "MAXLEN", &NO_TRIM.to_string()].map(String::from);
        let trim: Vec<&str> = trim.iter().map(String::as_str).collect();
        match query::<i64>(&login.endpoint, &trim).await {
            Ok(_) => push(Verdict::Ok, &check, "writable".into()),
            Err(e) => push(Verdict::Fail, &check, format!("{e}")),
        }
    }

    // Clocks and engines.
    let master = reached.iter().find(|l| l.kind == AclUserKind::Wsp);
    let replica = reached.iter().find(|l| l.kind != AclUserKind::Wsp);
    let mut offsets = Vec::new();
    for (side, login) in [("M", master), ("R", replica)] {
        let Some(login) = login else { continue };
        let before = Instant::now();
        let info = query::<String>(&login.endpoint, &["INFO", "server"]).await;
        let round_trip = before.elapsed();
        let Ok(info) = info else {
            push(
                Verdict::Fail,
                &format!("{side} INFO server"),
                "cannot read it".into(),
            );
            continue;
        };
        let engine = match info_field(&info, "valkey_version") {
            Some(v) => format!("Valkey {v}"),
            None => format!(
                "Redis {}",
                info_field(&info, "redis_version").unwrap_or("?")
            ),
        };
        let waitaof = has_waitaof(&info);
        push(
            Verdict::Note,
            &format!("{side} engine"),
            format!(
                "{engine}; WAITAOF {}",
                if waitaof {
                    "available"
                } else {
                    "not available (Redis 7.0)"
                }
            ),
        );
        if side == "M" && config.redis.durability.aof && !waitaof {
            push(
                Verdict::Fail,
                "redis.durability.aof",
                format!(
                    "{engine} has no WAITAOF: upgrade M to Redis 7.2+ or Valkey 8, or set it to false"
                ),
            );
        }
        // The server's clock against ours, taken at the middle of the call.
        if let Some(usec) =
            info_field(&info, "server_time_usec").and_then(|v| v.parse::<i64>().ok())
        {
            let local_mid =
                crate::time::now().ms as i64 * 1000 - (round_trip.as_micros() / 2) as i64;
            offsets.push((side, usec - local_mid));
        }
    }
    if let [(_, m), (_, r)] = offsets.as_slice() {
        let skew = Duration::from_micros(m.abs_diff(*r));
        let check = "clock skew M vs R";
        let detail = format!(
            "{:.1} ms (limit {MAX_CLOCK_SKEW:?})",
            skew.as_secs_f64() * 1000.0
        );
        if skew > MAX_CLOCK_SKEW {
            push(Verdict::Fail, check, detail + ": run NTP on both sites");
        } else {
            push(Verdict::Ok, check, detail);
        }
    }
    out
}

/// True if any finding failed.
pub fn failed(findings: &[Finding]) -> bool {
    findings.iter().any(|f| f.verdict == Verdict::Fail)
}

/// Redis 7.2+ and Valkey (which reports redis_version 7.2.4) have WAITAOF.
fn has_waitaof(info: &str) -> bool {
    if info_field(info, "valkey_version").is_some() {
        return true;
    }
    let version = info_field(info, "redis_version").unwrap_or_default();
    let mut parts = version.split('.').filter_map(|p| p.parse::<u32>().ok());
    let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    (major, minor) >= (7, 2)
}

/// A command inside a script refused by the ACL (Redis does not use the
/// NOPERM code there).
fn is_refusal_in_script(e: &redis::RedisError) -> bool {
    let text = e.to_string();
    text.contains("can't access") || text.contains("No permissions")
}

async fn ping(endpoint: &RedisEndpointConfig) -> Result<(), String> {
    match query::<String>(endpoint, &["PING"]).await {
        Ok(_) => Ok(()),
        Err(e) => Err(format!("{e}")),
    }
}

/// Runs one command on a fresh connection, within [`CHECK_TIMEOUT`].
async fn query<T: redis::FromRedisValue>(
    endpoint: &RedisEndpointConfig,
    command: &[&str],
) -> redis::RedisResult<T> {
    let attempt = async {
        let info = connection_info(endpoint).map_err(|e| {
            redis::RedisError::from((
                redis::ErrorKind::InvalidClientConfig,
                "bad endpoint",
                e.to_string(),
            ))
        })?;
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(CHECK_TIMEOUT))
            .set_response_timeout(Some(CHECK_TIMEOUT));
        let mut conn: MultiplexedConnection = redis::Client::open(info)?
            .get_multiplexed_async_connection_with_config(&config)
            .await?;
        let mut cmd = redis::cmd(command[0]);
        for arg in &command[1..] {
            cmd.arg(*arg);
        }
        cmd.query_async(&mut conn).await
    };
    match tokio::time::timeout(CHECK_TIMEOUT, attempt).await {
        Ok(result) => result,
        Err(_) => Err(redis::RedisError::from(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("no answer within {CHECK_TIMEOUT:?}"),
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waitaof_by_version() {
        assert!(!has_waitaof("redis_version:7.0.15\r\n"));
        assert!(has_waitaof("redis_version:7.2.0\r\n"));
        assert!(has_waitaof("redis_version:8.0.1\r\n"));
        assert!(has_waitaof(
            "redis_version:7.2.4\r\nvalkey_version:8.1.8\r\n"
        ));
    }
}
