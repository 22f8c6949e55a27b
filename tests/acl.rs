//! The shipped ACLs on a real M + R link: every permission the protocol
//! grants works, every NOPERM it promises holds, the default user is off and
//! the replica link runs as its own user.

mod common;

use std::{process::Command, time::Duration};

use common::Link;
use redis::aio::MultiplexedConnection;

const OPENOES: &str = env!("CARGO_BIN_EXE_openoes");
const PASSWORDS: &str = "wsp = \"wsp-pw\"\nexchange = \"exchange-pw\"\n\"wsp-reader\" = \"reader-pw\"\n\
                         replication = \"repl-pw\"\nadmin = \"admin-pw\"\n";

fn apply(side: &str, url: &str, file: &std::path::Path, as_user: &str) -> String {
    let out = Command::new(OPENOES)
        .args([
            "acl",
            "apply",
            "--side",
            side,
            "--redis-url",
            url,
            "--as",
            as_user,
            "--passwords",
        ])
        .arg(file)
        .output()
        .expect("run openoes acl apply");
    assert!(
        out.status.success(),
        "acl apply {side}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

async fn login(port: u16, user: &str, password: &str) -> redis::RedisResult<MultiplexedConnection> {
    let url = format!("redis://{user}:{password}@127.0.0.1:{port}");
    redis::Client::open(url)?
        .get_multiplexed_async_connection()
        .await
}

async fn run(conn: &mut MultiplexedConnection, args: &[&str]) -> redis::RedisResult<redis::Value> {
    let mut cmd = redis::cmd(args[0]);
    for a in &args[1..] {
        cmd.arg(*a);
    }
    cmd.query_async(conn).await
}

async fn allowed(conn: &mut MultiplexedConnection, who: &str, args: &[&str]) {
    if let Err(e) = run(conn, args).await {
        assert_ne!(e.code(), Some("NOPERM"), "{who} may run {args:?}: {e}");
    }
}

async fn denied(conn: &mut MultiplexedConnection, who: &str, args: &[&str]) {
    match run(conn, args).await {
        Err(e) if e.code() == Some("NOPERM") => {}
        other => panic!("{who} must get NOPERM for {args:?}, got {other:?}"),
    }
}

#[tokio::test]
async fn the_shipped_acls_grant_exactly_what_the_protocol_says() {
    let link = Link::start().await;
    let (m, r) = (link.topology.master.port(), link.topology.replica.port());
    let dir = tempfile::tempdir().expect("tmp");
    let passwords = dir.path().join("passwords.toml");
    std::fs::write(&passwords, PASSWORDS).expect("write");

    // Data the exchange reads, written on M before the default user goes.
    let mut setup = login(m, "default", "").await.expect("default on M");
    run(
        &mut setup,
        &["HSET", "CI:alice:BTC", "amount", "1.5", "version", "1"],
    )
    .await
    .expect("ci");
    run(
        &mut setup,
        &["HSET", "mirror:credit:req:r1", "status", "pending"],
    )
    .await
    .expect("req");
    run(
        &mut setup,
        &["XADD", "mirror:credit:request", "*", "request_id", "r1"],
    )
    .await
    .expect("xadd");
    run(
        &mut setup,
        &["XADD", "mirror:credit:events", "*", "type", "requested"],
    )
    .await
    .expect("ev");
    run(
        &mut setup,
        &[
            "XADD",
            "mirror:settlement:confirmation",
            "*",
            "type",
            "confirmation",
        ],
    )
    .await
    .expect("c");
    // The replica will authenticate to M as `replication`.
    let mut replica = login(r, "default", "").await.expect("default on R");
    run(
        &mut replica,
        &["CONFIG", "SET", "masteruser", "replication"],
    )
    .await
    .expect("masteruser");
    run(&mut replica, &["CONFIG", "SET", "masterauth", "repl-pw"])
        .await
        .expect("masterauth");

    let out = apply("master", &link.topology.master.url(), &passwords, "default");
    assert!(
        out.contains("set ACL user wsp")
            && out.trim_end().ends_with("set ACL user default on master"),
        "{out}"
    );
    apply(
        "replica",
        &link.topology.replica.url(),
        &passwords,
        "default",
    );
    // Applying again, now as admin, changes nothing and works.
    apply("master", &link.topology.master.url(), &passwords, "admin");

    // The default user is off on both sides.
    for port in [m, r] {
        let mut anonymous = redis::Client::open(format!("redis://127.0.0.1:{port}"))
            .expect("client")
            .get_multiplexed_async_connection()
            .await
            .expect("tcp connects");
        let e = run(&mut anonymous, &["GET", "x"])
            .await
            .expect_err("default is off");
        assert!(
            e.code() == Some("NOAUTH") || e.code() == Some("NOPERM"),
            "{e:?}"
        );
    }

    // The replica link reconnects as `replication` and works.
    let mut admin_m = login(m, "admin", "admin-pw").await.expect("admin on M");
    run(&mut admin_m, &["CLIENT", "KILL", "TYPE", "replica"])
        .await
        .expect("drop the link");
    let mut admin_r = login(r, "admin", "admin-pw").await.expect("admin on R");
    run(&mut admin_m, &["SET", "probe", "1"])
        .await
        .expect("probe");
    let mut linked = false;
    for _ in 0..100 {
        let got: Option<String> = redis::cmd("GET")
            .arg("probe")
            .query_async(&mut admin_r)
            .await
            .expect("get");
        if got.as_deref() == Some("1") {
            linked = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(linked, "replication resumed with the replication user");
    let mut repl = login(m, "replication", "repl-pw")
        .await
        .expect("replication user");
    denied(&mut repl, "replication", &["GET", "probe"]).await;

    // exchange on R.
    let mut ex = login(r, "exchange", "exchange-pw")
        .await
        .expect("exchange on R");
    let who = "exchange";
    for args in [
        &["HGETALL", "CI:alice:BTC"][..],
        &["HGETALL", "mirror:credit:req:r1"],
        &["XRANGE", "mirror:credit:request", "-", "+"],
        &["XRANGE", "mirror:credit:events", "-", "+"],
        &["XRANGE", "mirror:settlement:confirmation", "-", "+"],
        &[
            "XGROUP",
            "CREATE",
            "mirror:credit:request",
            "credit-request-processor",
            "0",
        ],
        &[
            "XREADGROUP",
            "GROUP",
            "credit-request-processor",
            "c1",
            "COUNT",
            "1",
            "STREAMS",
            "mirror:credit:request",
            ">",
        ],
        &[
            "XPENDING",
            "mirror:credit:request",
            "credit-request-processor",
        ],
        &[
            "XAUTOCLAIM",
            "mirror:credit:request",
            "credit-request-processor",
            "c2",
            "0",
            "0-0",
        ],
        &[
            "XCLAIM",
            "mirror:credit:request",
            "credit-request-processor",
            "c1",
            "0",
            "0-1",
        ],
        &[
            "XACK",
            "mirror:credit:request",
            "credit-request-processor",
            "0-1",
        ],
        &[
            "XADD",
            "mirror:credit:response",
            "*",
            "request_id",
            "r1",
            "status",
            "accepted",
        ],
        &["XTRIM", "mirror:credit:response", "MAXLEN", "~", "1000"],
        &[
            "XADD",
            "mirror:settlement:individual:response",
            "*",
            "type",
            "settlement",
        ],
        &[
            "XADD",
            "mirror:settlement:batch:response",
            "*",
            "type",
            "batch",
        ],
        &["PING"],
        &["ZRANGE", "mirror:credit:assets:alice", "-", "+", "BYLEX"],
        &["HSET", "mirror:credit:answer:r1", "status", "accepted"],
        &["PEXPIRE", "mirror:credit:answer:r1", "60000"],
        &["PERSIST", "mirror:credit:answer:r1"],
        &["XLEN", "mirror:credit:response"],
        // The WSP's cursor (replicated from M): trimming stays below it.
        &["GET", "mirror:cursor:mirror:credit:response"],
        // The metrics sampler's view of the link.
        &["GET", "mirror:heartbeat"],
        &["INFO", "replication"],
        // A script may read CI and write the exchange's own keys ...
        &[
            "EVAL",
            "redis.call('HGET', KEYS[1], 'amount'); return redis.call('HSET', KEYS[2], 'a', 1)",
            "2",
            "CI:alice:BTC",
            "mirror:credit:answer:r1",
        ],
    ] {
        allowed(&mut ex, who, args).await;
    }
    // The rate limiter of an exchange-only gateway: the real script on its
    // budget key on R passes a call (it does not fail for want of TIME,
    // GET or SET), and the budget's key holds the new TAT.
    let gcra = include_str!("../src/server/auth/lua/gcra.lua");
    let budget = "mirror:ratelimit:exchange:read:exchange";
    let spent = run(&mut ex, &["EVAL", gcra, "1", budget, "1000000", "0"])
        .await
        .expect("exchange runs gcra.lua on its budget");
    assert_eq!(
        spent,
        redis::Value::Array(vec![redis::Value::Int(1), redis::Value::Int(0)])
    );
    let again = run(&mut ex, &["EVAL", gcra, "1", budget, "1000000", "0"])
        .await
        .expect("gcra.lua again");
    assert_eq!(
        again.as_sequence().and_then(|v| v.first()),
        Some(&redis::Value::Int(0)),
        "burst 1: the second call at once is refused: {again:?}"
    );
    allowed(&mut ex, who, &["GET", budget]).await;
    allowed(&mut ex, who, &["TIME"]).await;
    // ... but a script is held to the same rules as a plain command.
    for script in [
        "return redis.call('HSET', KEYS[1], 'amount', '1000000')",
        "return redis.call('XADD', KEYS[2], '*', 'request_id', 'forged')",
        "return redis.call('DEL', KEYS[1])",
    ] {
        let e = run(
            &mut ex,
            &["EVAL", script, "2", "CI:alice:BTC", "mirror:credit:request"],
        )
        .await
        .expect_err("a script cannot write what the user cannot");
        // The refusal, not its wording (Redis says "can't access", Valkey
        // "No permissions to access a key"): a server error, not a lost
        // connection ...
        assert!(
            !e.is_io_error() && !e.is_connection_dropped(),
            "{script}: {e:?}"
        );
    }
    // ... and nothing the scripts tried happened.
    let amount: Option<String> = redis::cmd("HGET")
        .arg("CI:alice:BTC")
        .arg("amount")
        .query_async(&mut admin_r)
        .await
        .expect("hget");
    assert_eq!(amount.as_deref(), Some("1.5"), "CI untouched");
    let requests = common::xrange(&mut admin_r, "mirror:credit:request").await;
    assert!(
        requests
            .iter()
            .all(|(_, f)| f.get("request_id").map(String::as_str) != Some("forged")),
        "{requests:?}"
    );
    for args in [
        &["HSET", "CI:alice:BTC", "amount", "1000000"][..],
        &["DEL", "CI:alice:BTC"],
        &["XADD", "mirror:credit:request", "*", "request_id", "forged"],
        &["XTRIM", "mirror:credit:request", "MAXLEN", "0"],
        &["DEL", "mirror:credit:request"],
        &["HSET", "mirror:credit:req:r1", "status", "accepted"],
        &["XADD", "mirror:credit:events", "*", "type", "accepted"],
        &["XADD", "other:stream", "*", "a", "b"],
        &["GET", "other:key"],
        &["SET", "other:key", "1"],
        &["FLUSHALL"],
        &["CONFIG", "GET", "maxmemory"],
        &["KEYS", "*"],
        &["EVAL", "return 1", "1", "other:key"],
        &["HSET", "mirror:credit:assets:alice", "a", "1"],
        // The vault is the WSP's alone: the exchange needs none of it.
        &["HGETALL", "mirror:vault:alice:BTC"],
        &["HGETALL", "mirror:pledge:p1"],
        &["XRANGE", "mirror:vault-events", "-", "+"],
        &[
            "SET",
            "mirror:cursor:mirror:credit:response",
            "9999999999999-0",
        ],
        &["DEL", "mirror:credit:response"],
        &["XDEL", "mirror:credit:response", "0-1"],
        // The heartbeat is the WSP's (replicated from M): read-only here.
        &["SET", "mirror:heartbeat", "1"],
        // Budgets: GET and SET on its own, nothing else, and not M's
        // (replicated) budgets.
        &["DEL", "mirror:ratelimit:exchange:read:exchange"],
        &["SET", "mirror:ratelimit:read:wsp", "0"],
        &["GET", "mirror:ratelimit:read:wsp"],
        &["EVAL", "return 1", "1", "mirror:ratelimit:read:wsp"],
    ] {
        denied(&mut ex, who, args).await;
    }

    // wsp-reader on R: reads the exchange's responses, nothing else.
    let mut reader = login(r, "wsp-reader", "reader-pw")
        .await
        .expect("wsp-reader on R");
    allowed(
        &mut reader,
        "wsp-reader",
        &["XRANGE", "mirror:credit:response", "-", "+"],
    )
    .await;
    allowed(
        &mut reader,
        "wsp-reader",
        &[
            "XREAD",
            "COUNT",
            "1",
            "STREAMS",
            "mirror:settlement:batch:response",
            "0",
        ],
    )
    .await;
    denied(
        &mut reader,
        "wsp-reader",
        &["XADD", "mirror:credit:response", "*", "a", "b"],
    )
    .await;
    denied(&mut reader, "wsp-reader", &["HGETALL", "CI:alice:BTC"]).await;
    // Its metrics: the heartbeat and INFO, read-only.
    allowed(&mut reader, "wsp-reader", &["GET", "mirror:heartbeat"]).await;
    allowed(&mut reader, "wsp-reader", &["INFO", "replication"]).await;
    denied(&mut reader, "wsp-reader", &["SET", "mirror:heartbeat", "1"]).await;
    denied(&mut reader, "wsp-reader", &["GET", "mirror:credit:req:r1"]).await;
    allowed(
        &mut reader,
        "wsp-reader",
        &["XINFO", "STREAM", "mirror:credit:response"],
    )
    .await;

    // wsp on M: the OpenOES keys, nothing dangerous.
    let mut wsp = login(m, "wsp", "wsp-pw").await.expect("wsp on M");
    allowed(&mut wsp, "wsp", &["HSET", "CI:bob:ETH", "amount", "2"]).await;
    allowed(
        &mut wsp,
        "wsp",
        &["XADD", "mirror:credit:request", "*", "request_id", "r2"],
    )
    .await;
    allowed(
        &mut wsp,
        "wsp",
        &[
            "EVAL",
            "return redis.call('HGET', KEYS[1], 'amount')",
            "1",
            "CI:bob:ETH",
        ],
    )
    .await;
    // The attestation pipeline: the results stream (std name), its dead
    // letters, and our hash-tagged keys; not a look-alike stream.
    for args in [
        &["XADD", "verification_stream", "*", "user_wallet", "0xabc"][..],
        &[
            "XGROUP",
            "CREATE",
            "verification_stream",
            "attestation_processors",
            "0",
        ],
        &["XADD", "verification_stream:dlq", "*", "reason", "x"],
        &[
            "HSET",
            "attestation:{verification_stream}:att:a",
            "status",
            "active",
        ],
        &["XINFO", "GROUPS", "verification_stream"],
    ] {
        allowed(&mut wsp, "wsp", args).await;
    }
    denied(
        &mut wsp,
        "wsp",
        &["XADD", "verification_stream2", "*", "a", "b"],
    )
    .await;
    denied(
        &mut wsp,
        "wsp",
        &["XADD", "verification_stream:x", "*", "a", "b"],
    )
    .await;
    // The metrics sampler: the heartbeat and M's replication offset.
    allowed(&mut wsp, "wsp", &["SET", "mirror:heartbeat", "1"]).await;
    allowed(&mut wsp, "wsp", &["INFO", "replication"]).await;
    // The WSP gateway's budgets on M.
    let spent = run(
        &mut wsp,
        &["EVAL", gcra, "1", "mirror:ratelimit:read:wsp", "1000", "0"],
    )
    .await
    .expect("wsp runs gcra.lua on its budget");
    assert_eq!(
        spent,
        redis::Value::Array(vec![redis::Value::Int(1), redis::Value::Int(0)])
    );
    denied(&mut wsp, "wsp", &["FLUSHALL"]).await;
    denied(&mut wsp, "wsp", &["CONFIG", "GET", "maxmemory"]).await;
    denied(&mut wsp, "wsp", &["KEYS", "*"]).await;
    denied(&mut wsp, "wsp", &["SET", "other:key", "1"]).await;
}
