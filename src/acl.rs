//! Redis ACLs of an OpenOES link: the rule files shipped under
//! `deploy/redis/acl/` and `openoes acl apply`, which loads them into a
//! running server.
//!
//! Rule files hold rules only; passwords come from a separate file
//! (`user = "secret"` lines) so no secret is ever committed. Each user is
//! sent as one `ACL SETUSER <user> reset >password <rule> <rule> ...`, one
//! rule per argument (a selector in parentheses is one rule), so a user's
//! old rules never linger. `default` is applied last: turning it off while
//! the applying connection still needs it would cut the job in half.

use std::{collections::BTreeMap, path::Path};

/// Rules for the WSP's master (M).
pub const MASTER_RULES: &str = include_str!("../deploy/redis/acl/master.acl");
/// Rules for the exchange's replica (R).
pub const REPLICA_RULES: &str = include_str!("../deploy/redis/acl/replica.acl");

/// The link's users the gateway connects as, by what they are for (the
/// names are the shipped files'; a deployment may rename them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AclUserKind {
    /// `wsp` on M.
    Wsp,
    /// `exchange` on R.
    Exchange,
    /// `wsp-reader` on R.
    WspReader,
}

/// Commands the shipped rules refuse each user (NOPERM; inside a script,
/// Redis's "can't access"), for `openoes doctor`. Each is harmless if a
/// misconfigured server runs it anyway: a read, a delete of a key or entry
/// that does not exist, a script that deletes nothing. Never FLUSHALL,
/// KEYS (O(n) on a big keyspace) or a write that changes data.
pub fn refusals(user: AclUserKind) -> &'static [&'static [&'static str]] {
    match user {
        AclUserKind::Wsp => &[
            &["CONFIG", "GET", "maxmemory"],
            &["GET", "openoes-doctor:outside-the-rules"],
            &["DEL", "openoes-doctor:outside-the-rules"],
        ],
        AclUserKind::Exchange => &[
            // Credit Inventory and the request stream are the WSP's.
            &["DEL", "CI:openoes-doctor:absent"],
            &["XDEL", "mirror:credit:request", "0-1"],
            &["HDEL", "mirror:credit:req:openoes-doctor-absent", "status"],
            // Its own responses are append-only.
            &["XDEL", "mirror:credit:response", "0-1"],
            // A script is held to the same rules.
            &[
                "EVAL",
                "return redis.call('DEL', KEYS[1])",
                "1",
                "CI:openoes-doctor:absent",
            ],
            &["CONFIG", "GET", "maxmemory"],
            &["GET", "openoes-doctor:outside-the-rules"],
        ],
        AclUserKind::WspReader => &[
            &["XDEL", "mirror:credit:response", "0-1"],
            &["GET", "CI:openoes-doctor:absent"],
            &["CONFIG", "GET", "maxmemory"],
        ],
    }
}

/// The stream a user writes (on its side), if it writes one: `openoes
/// doctor` checks that a write there is accepted.
pub fn written_stream(user: AclUserKind) -> Option<&'static str> {
    match user {
        AclUserKind::Wsp => Some("mirror:credit:request"),
        AclUserKind::Exchange => Some("mirror:credit:response"),
        AclUserKind::WspReader => None,
    }
}

/// One user's line of a rule file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AclUser {
    /// User name.
    pub name: String,
    /// Its rules, one per ACL SETUSER argument.
    pub rules: Vec<String>,
}

/// Why ACLs could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum AclError {
    /// A rule file line is malformed.
    #[error("rule file line {line}: {reason}")]
    Rules {
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// The password file is unreadable or malformed.
    #[error("password file {path}: {reason}")]
    Passwords {
        /// The file.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// An enabled user has no password.
    #[error("user {0:?} is enabled but the password file gives it no password")]
    MissingPassword(String),
    /// Redis refused.
    #[error("redis refused ACL SETUSER {user}")]
    Redis {
        /// The user being set.
        user: String,
        /// What Redis said.
        #[source]
        source: redis::RedisError,
    },
    /// Could not connect.
    #[error("cannot connect to redis")]
    Connect(#[source] redis::RedisError),
}

/// Parses a rule file: `user <name> <rule> <rule> ...` per line, `#`
/// comments. Parenthesised selectors stay one rule.
pub fn parse_rules(text: &str) -> Result<Vec<AclUser>, AclError> {
    let mut users = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let tokens = tokenize(line).map_err(|reason| AclError::Rules {
            line: i + 1,
            reason,
        })?;
        match tokens.as_slice() {
            [user, name, rules @ ..] if user == "user" => users.push(AclUser {
                name: name.clone(),
                rules: rules.to_vec(),
            }),
            _ => {
                return Err(AclError::Rules {
                    line: i + 1,
                    reason: "expected `user <name> <rules...>`".into(),
                });
            }
        }
    }
    // `default` last: see the module docs.
    users.sort_by_key(|u| u.name == "default");
    Ok(users)
}

/// Splits on whitespace, keeping `( ... )` groups whole.
fn tokenize(line: &str) -> Result<Vec<String>, String> {
    let mut tokens = Vec::new();
    let mut current = String::new();
    let mut depth = 0usize;
    for c in line.chars() {
        match c {
            '(' => {
                depth += 1;
                current.push(c);
            }
            ')' => {
                depth = depth.checked_sub(1).ok_or("unbalanced `)`")?;
                current.push(c);
            }
            c if c.is_whitespace() && depth == 0 => {
                if !current.is_empty() {
                    tokens.push(std::mem::take(&mut current));
                }
            }
            c => current.push(c),
        }
    }
    if depth != 0 {
        return Err("unbalanced `(`".into());
    }
    if !current.is_empty() {
        tokens.push(current);
    }
    Ok(tokens)
}

/// Reads `user = "secret"` lines.
pub fn read_passwords(path: &Path) -> Result<BTreeMap<String, String>, AclError> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| AclError::Passwords {
        path: shown.clone(),
        reason: e.to_string(),
    })?;
    toml::from_str(&text).map_err(|e| AclError::Passwords {
        path: shown,
        reason: e.to_string(),
    })
}

/// The ACL SETUSER arguments for `user`.
pub fn setuser_args(
    user: &AclUser,
    passwords: &BTreeMap<String, String>,
) -> Result<Vec<String>, AclError> {
    let mut args = vec![user.name.clone(), "reset".to_string()];
    let enabled = user.rules.iter().any(|r| r == "on");
    match passwords.get(&user.name) {
        Some(password) => args.push(format!(">{password}")),
        None if enabled && !user.rules.iter().any(|r| r == "nopass") => {
            return Err(AclError::MissingPassword(user.name.clone()));
        }
        None => {}
    }
    args.extend(user.rules.iter().cloned());
    Ok(args)
}

/// Applies `users` on the server at `url`, connecting as `as_user` (with
/// its password from `passwords`, if any). Returns the users set.
pub async fn apply(
    url: &str,
    as_user: &str,
    users: &[AclUser],
    passwords: &BTreeMap<String, String>,
) -> Result<Vec<String>, AclError> {
    // Build every command first: a missing password fails before any change.
    let commands: Vec<(String, Vec<String>)> = users
        .iter()
        .map(|u| Ok((u.name.clone(), setuser_args(u, passwords)?)))
        .collect::<Result<_, AclError>>()?;
    let mut info =
        redis::IntoConnectionInfo::into_connection_info(url).map_err(AclError::Connect)?;
    let mut settings = info.redis_settings().clone().set_username(as_user);
    if let Some(password) = passwords.get(as_user) {
        settings = settings.set_password(password);
    }
    info = info.set_redis_settings(settings);
    let client = redis::Client::open(info).map_err(AclError::Connect)?;
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .map_err(AclError::Connect)?;
    let mut applied = Vec::new();
    for (user, args) in commands {
        redis::cmd("ACL")
            .arg("SETUSER")
            .arg(&args)
            .query_async::<()>(&mut conn)
            .await
            .map_err(|source| AclError::Redis {
                user: user.clone(),
                source,
            })?;
        applied.push(user);
    }
    Ok(applied)
}

/// Locks down a local M + R link (dev, tests) with the shipped rules: R
/// authenticates to M as `replication`, every user gets its password from
/// `passwords`, `default` goes off on both, and both servers rewrite their
/// config file so a restart keeps all of it. Connects as `default` first,
/// then as `admin`.
pub async fn secure_link(
    master_url: &str,
    replica_url: &str,
    passwords: &BTreeMap<String, String>,
) -> Result<(), AclError> {
    let parse = |rules| parse_rules(rules);
    let (master, replica) = (parse(MASTER_RULES)?, parse(REPLICA_RULES)?);
    let password = |user: &str| passwords.get(user).cloned().unwrap_or_default();
    let run = |url: &str, user: &'static str, args: Vec<String>| {
        let url = url.to_string();
        let password = passwords.get(user).cloned();
        async move {
            let mut info = redis::IntoConnectionInfo::into_connection_info(url.as_str())
                .map_err(AclError::Connect)?;
            let mut settings = info.redis_settings().clone().set_username(user);
            if let Some(password) = password.filter(|_| user != "default") {
                settings = settings.set_password(password);
            }
            info = info.set_redis_settings(settings);
            let mut conn = redis::Client::open(info)
                .map_err(AclError::Connect)?
                .get_multiplexed_async_connection()
                .await
                .map_err(AclError::Connect)?;
            redis::cmd(&args[0])
                .arg(&args[1..])
                .query_async::<()>(&mut conn)
                .await
                .map_err(|source| AclError::Redis {
                    user: user.to_string(),
                    source,
                })
        }
    };
    let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    run(
        replica_url,
        "default",
        args(&["CONFIG", "SET", "masteruser", "replication"]),
    )
    .await?;
    run(
        replica_url,
        "default",
        vec![
            "CONFIG".into(),
            "SET".into(),
            "masterauth".into(),
            password("replication"),
        ],
    )
    .await?;
    apply(master_url, "default", &master, passwords).await?;
    apply(replica_url, "default", &replica, passwords).await?;
    for url in [master_url, replica_url] {
        run(url, "admin", args(&["CONFIG", "REWRITE"])).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_rule_files_parse_with_selectors_whole_and_default_last() {
        for rules in [MASTER_RULES, REPLICA_RULES] {
            let users = parse_rules(rules).expect("parse");
            assert_eq!(users.last().map(|u| u.name.as_str()), Some("default"));
            assert_eq!(
                users
                    .last()
                    .and_then(|u| u.rules.first())
                    .map(String::as_str),
                Some("off")
            );
        }
        let replica = parse_rules(REPLICA_RULES).expect("parse");
        let exchange = replica
            .iter()
            .find(|u| u.name == "exchange")
            .expect("exchange");
        let selectors: Vec<&String> = exchange
            .rules
            .iter()
            .filter(|r| r.starts_with('('))
            .collect();
        assert_eq!(selectors.len(), 6, "{selectors:?}");
        assert!(selectors.iter().all(|s| s.ends_with(')')));
    }

    #[test]
    fn setuser_needs_a_password_for_enabled_users() {
        let user = AclUser {
            name: "x".into(),
            rules: vec!["on".into(), "+ping".into()],
        };
        assert!(matches!(
            setuser_args(&user, &BTreeMap::new()),
            Err(AclError::MissingPassword(_))
        ));
        let passwords = BTreeMap::from([("x".to_string(), "s3cret".to_string())]);
        assert_eq!(
            setuser_args(&user, &passwords).expect("args"),
            ["x", "reset", ">s3cret", "on", "+ping"]
        );
        assert!(tokenize("user a (x").is_err());
        assert!(tokenize("user a x)").is_err());
    }
}
