//! QuoteService through the API, over a real Redis: public vectors loaded
//! with `openoes pools load`, live bin updates, new routes, WatchQuote,
//! errors, and atomic pool writes under concurrent quotes.

mod common;

use std::{process::Command, time::Duration};

use common::{Gateway, Link};
use openoes::proto::quote::v1::{
    Bin, GetQuoteRequest, Pool, Quote, SwapMode, UpsertBinsRequest, UpsertPoolRequest,
    WatchQuoteRequest, quote_service_client::QuoteServiceClient,
};
use serde_json::Value;
use tokio_stream::StreamExt;
use tonic::{Code, Status, transport::Channel};
use tonic_types::StatusExt;

const OPENOES: &str = env!("CARGO_BIN_EXE_openoes");
const POOL_A: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/dlmm/pool_a.json");
const VECTORS: &str = include_str!("data/dlmm/public_vectors.json");

fn pools_load(link: &Link, files: &[&str]) -> std::process::Output {
    Command::new(OPENOES)
        .args(["pools", "load", "--redis-url", &link.topology.master.url()])
        .args(files)
        .output()
        .expect("run openoes pools load")
}

async fn setup() -> (Link, Gateway, QuoteServiceClient<Channel>) {
    let link = Link::start().await;
    let out = pools_load(&link, &[POOL_A]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "created pool A: 11 bins"
    );
    let gateway = Gateway::start(link.config()).await;
    let client = QuoteServiceClient::new(gateway.channel().await);
    (link, gateway, client)
}

fn request(token_in: &str, token_out: &str, amount: u64, mode: SwapMode) -> GetQuoteRequest {
    GetQuoteRequest {
        token_in: token_in.into(),
        token_out: token_out.into(),
        amount: amount.to_string(),
        swap_mode: mode as i32,
        ..GetQuoteRequest::default()
    }
}

async fn quote(
    client: &mut QuoteServiceClient<Channel>,
    r: GetQuoteRequest,
) -> Result<Quote, Status> {
    Ok(client
        .get_quote(r)
        .await?
        .into_inner()
        .quote
        .expect("quote"))
}

/// Sets the Y reserve of one bin of pool A through UpsertBins.
async fn set_y(client: &mut QuoteServiceClient<Channel>, bin_id: i32, y: &str) {
    let bin = Bin {
        bin_id,
        x_amount: "0".into(),
        y_amount: y.into(),
        price: String::new(),
    };
    let r = UpsertBinsRequest {
        pool_id: "A".into(),
        bins: vec![bin],
        active_bin_id: None,
    };
    client.upsert_bins(r).await.expect("upsert bins");
}

fn s(v: &Value) -> String {
    v.as_u64()
        .map(|n| n.to_string())
        .unwrap_or_else(|| v.to_string())
}

#[tokio::test]
async fn public_vectors_over_grpc_every_field() {
    let (_link, _gateway, mut client) = setup().await;
    let vectors: Value = serde_json::from_str(VECTORS).expect("vectors");

    for case in vectors["exact_in"].as_array().expect("cases") {
        let name = case["name"].as_str().expect("name");
        let (token_in, token_out) = if case["swap_for_y"].as_bool().expect("dir") {
            ("TKX", "TKY")
        } else {
            ("TKY", "TKX")
        };
        let amount = case["amount_in"].as_u64().expect("amount");
        let q = quote(
            &mut client,
            request(token_in, token_out, amount, SwapMode::ExactIn),
        )
        .await
        .unwrap_or_else(|e| panic!("{name}: {e:?}"));
        assert_eq!(q.amount_in, s(&case["amount_in"]), "{name}");
        assert_eq!(q.amount_out, s(&case["amount_out"]), "{name}");
        assert_eq!(q.total_fee, s(&case["total_fee"]), "{name}");
        assert_eq!(q.protocol_fee, s(&case["protocol_fee"]), "{name}");
        assert_eq!(q.lp_fee, s(&case["lp_fee"]), "{name}");
        assert!(!q.partial_fill);
        let [hop] = q.hops.as_slice() else {
            panic!("{name}: one hop")
        };
        assert_eq!(
            (hop.pool_id.as_str(), hop.amount_out.as_str()),
            ("A", q.amount_out.as_str())
        );
        let bins = case["per_bin"].as_array().expect("per_bin");
        assert_eq!(hop.bins.len(), bins.len(), "{name} bins crossed");
        for (got, want) in hop.bins.iter().zip(bins) {
            assert_eq!(
                i64::from(got.bin_id),
                want["bin_id"].as_i64().expect("id"),
                "{name}"
            );
            assert_eq!(
                got.amount_in,
                s(&want["amount_in"]),
                "{name} bin {}",
                got.bin_id
            );
            assert_eq!(
                got.amount_out,
                s(&want["amount_out"]),
                "{name} bin {}",
                got.bin_id
            );
            assert_eq!(
                got.protocol_fee,
                s(&want["protocol_fee"]),
                "{name} bin {}",
                got.bin_id
            );
            let lp: u64 =
                got.fee.parse::<u64>().expect("fee") - got.protocol_fee.parse::<u64>().expect("p");
            assert_eq!(
                lp.to_string(),
                s(&want["lp_fee"]),
                "{name} bin {}",
                got.bin_id
            );
            assert_eq!(
                got.fee_rate,
                want["fee_rate_1e9"].as_u64().expect("rate"),
                "{name}"
            );
        }
    }

    // A2's published price impact and min_amount_out at 100 bps.
    let mut a2 = request("TKX", "TKY", 2_000_000, SwapMode::ExactIn);
    a2.slippage_bps = 100;
    let q = quote(&mut client, a2).await.expect("A2");
    assert_eq!(q.price_impact, "0.24847117794486215539");
    assert_eq!(q.min_amount_out, "1970142");
    assert_eq!(q.max_amount_in, "");

    for case in vectors["exact_out"].as_array().expect("cases") {
        let name = case["name"].as_str().expect("name");
        let (token_in, token_out) = if case["swap_for_y"].as_bool().expect("dir") {
            ("TKX", "TKY")
        } else {
            ("TKY", "TKX")
        };
        let amount = case["amount_out"].as_u64().expect("amount");
        let q = quote(
            &mut client,
            request(token_in, token_out, amount, SwapMode::ExactOut),
        )
        .await
        .unwrap_or_else(|e| panic!("{name}: {e:?}"));
        assert_eq!(q.amount_out, s(&case["amount_out"]), "{name}");
        assert_eq!(q.amount_in, s(&case["amount_in"]), "{name}");
        assert_eq!(q.total_fee, s(&case["total_fee"]), "{name}");
        assert_eq!(q.protocol_fee, s(&case["protocol_fee"]), "{name}");
        assert_eq!(q.max_amount_in, q.amount_in, "{name}: 0 bps slippage");
        assert_eq!(q.min_amount_out, "");
    }
}

/// Pool A's file under other pool ids, in `dir`.
fn pool_files(dir: &std::path::Path, ids: &[&str]) -> Vec<String> {
    let text = std::fs::read_to_string(POOL_A).expect("pool_a.json");
    ids.iter()
        .map(|id| {
            let path = dir.join(format!("{id}.json"));
            let renamed = text.replace("\"pool_id\": \"A\"", &format!("\"pool_id\": \"{id}\""));
            assert_ne!(renamed, text, "pool_a.json names its pool_id as expected");
            std::fs::write(&path, renamed).expect("write pool file");
            path.display().to_string()
        })
        .collect()
}

#[tokio::test]
async fn pools_load_off_a_terminal_prints_a_plain_line_per_file_and_a_summary() {
    let link = Link::start().await;
    let dir = tempfile::tempdir().expect("tmp");
    let files = pool_files(dir.path(), &["P1", "P2", "P3"]);
    let paths: Vec<&str> = files.iter().map(String::as_str).collect();
    // `output()` pipes stderr: not a terminal.
    let out = pools_load(&link, &paths);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(!out.stderr.contains(&0x1b), "no escape codes: {stderr:?}");
    let lines: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("loaded "))
        .collect();
    assert_eq!(lines.len(), 4, "a line per file and a summary: {stderr}");
    for (i, (line, path)) in lines.iter().zip(&files).enumerate() {
        assert_eq!(
            *line,
            format!(
                "loaded {}/3 {path}: pool P{}, 11 bins (created)",
                i + 1,
                i + 1
            )
        );
    }
    assert!(
        lines[3].starts_with("loaded 3 files: 3 pools, 33 bins in "),
        "{stderr}"
    );
    // stdout stays the record a script reads.
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "created pool P1: 11 bins\ncreated pool P2: 11 bins\ncreated pool P3: 11 bins\n"
    );

    // A bad file stops the load before any write, naming the file.
    let again = pool_files(dir.path(), &["P4"]);
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, "{").expect("write");
    let out = pools_load(&link, &[&again[0], &bad.display().to_string()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains(&bad.display().to_string()), "{stderr}");
    assert!(!stderr.contains("loaded "), "nothing written: {stderr}");
    assert!(!out.stderr.contains(&0x1b), "no escape codes: {stderr:?}");
    assert!(out.stdout.is_empty());
}

#[tokio::test]
async fn a_bin_update_changes_the_next_quote() {
    let (_link, _gateway, mut client) = setup().await;
    let before = quote(
        &mut client,
        request("TKX", "TKY", 2_000_000, SwapMode::ExactIn),
    )
    .await
    .expect("q");
    set_y(&mut client, -1, "200000").await;
    let after = quote(
        &mut client,
        request("TKX", "TKY", 2_000_000, SwapMode::ExactIn),
    )
    .await
    .expect("q");
    assert_ne!(after.amount_out, before.amount_out);
    let crossed: Vec<i32> = after.hops[0].bins.iter().map(|b| b.bin_id).collect();
    assert_eq!(
        crossed,
        [0, -1, -2, -3],
        "a thinner bin -1 pushes the swap one bin further"
    );
    assert_eq!(after.hops[0].bins[1].amount_out, "200000");

    // Emptying a bin removes it from the walk.
    set_y(&mut client, -1, "0").await;
    let emptied = quote(
        &mut client,
        request("TKX", "TKY", 2_000_000, SwapMode::ExactIn),
    )
    .await
    .expect("q");
    let crossed: Vec<i32> = emptied.hops[0].bins.iter().map(|b| b.bin_id).collect();
    assert_eq!(crossed, [0, -2, -3]);
}

fn cheap_pool(id: &str, x: &str, y: &str) -> (Pool, Vec<Bin>) {
    let pool = Pool {
        pool_id: id.into(),
        token_x: x.into(),
        token_y: y.into(),
        bin_step: 1,
        active_bin_id: 0,
        base_factor: 100, // fee rate 1e-6
        protocol_share_bps: 1000,
        max_volatility_accumulator: 350_000,
        ..Pool::default()
    };
    let bins = (-2..=2)
        .map(|id| Bin {
            bin_id: id,
            x_amount: if id >= 0 {
                "100000000".into()
            } else {
                "0".into()
            },
            y_amount: if id <= 0 {
                "100000000".into()
            } else {
                "0".into()
            },
            price: String::new(),
        })
        .collect();
    (pool, bins)
}

#[tokio::test]
async fn a_new_pool_that_opens_a_better_route_is_used_by_the_quotes_that_follow() {
    let (link, _gateway, mut client) = setup().await;
    let direct = quote(
        &mut client,
        request("TKX", "TKY", 2_000_000, SwapMode::ExactIn),
    )
    .await
    .expect("q");
    assert_eq!(direct.amount_out, "1990043");

    // Half of a better route, through this gateway's UpsertPool...
    let (pool, bins) = cheap_pool("B", "TKX", "TKZ");
    client
        .upsert_pool(UpsertPoolRequest {
            pool: Some(pool),
            bins,
            replace_bins: true,
        })
        .await
        .expect("upsert B");
    let still = quote(
        &mut client,
        request("TKX", "TKY", 2_000_000, SwapMode::ExactIn),
    )
    .await
    .expect("q");
    assert_eq!(still.hops.len(), 1, "TKZ does not reach TKY yet");

    // ...the other half from another process (`pools load`).
    let dir = tempfile::tempdir().expect("tmp");
    let file = dir.path().join("c.json");
    std::fs::write(
        &file,
        r#"{"pool": {"pool_id": "C", "token_x": "TKZ", "token_y": "TKY", "bin_step": 1,
            "active_bin_id": 0, "base_factor": 100, "variable_fee_control": 0,
            "max_volatility_accumulator": 350000, "protocol_share_bps": 1000},
            "bins": [{"bin_id": 0, "x_amount": "100000000", "y_amount": "100000000", "price": "1"},
                     {"bin_id": -1, "x_amount": "0", "y_amount": "100000000"}]}"#,
    )
    .expect("write");
    let out = pools_load(&link, &[file.to_str().expect("utf8")]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // This gateway learns of a write by another process through the change
    // stream (quotes read pools kept in memory): within milliseconds, so
    // within a deadline here.
    let routed = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let q = quote(
                &mut client,
                request("TKX", "TKY", 2_000_000, SwapMode::ExactIn),
            )
            .await
            .expect("q");
            if q.hops.len() > 1 {
                return q;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the new pool is routed through within 10 s");
    let pools: Vec<&str> = routed.hops.iter().map(|h| h.pool_id.as_str()).collect();
    assert_eq!(pools, ["B", "C"], "the better two-hop route wins");
    assert_eq!(routed.hops[0].token_out, "TKZ");
    assert_eq!(
        routed.hops[1].amount_in, routed.hops[0].amount_out,
        "hop output feeds the next hop"
    );
    let out: u64 = routed.amount_out.parse().expect("n");
    assert!(out > 1_990_043, "better than the direct pool: {out}");
    assert_eq!(
        routed.total_fee, routed.hops[0].total_fee,
        "quote fees are the first hop's"
    );

    // max_hops 1 keeps to the direct pool.
    let mut one_hop = request("TKX", "TKY", 2_000_000, SwapMode::ExactIn);
    one_hop.max_hops = 1;
    let q = quote(&mut client, one_hop).await.expect("q");
    assert_eq!(q.hops[0].pool_id, "A");

    // Exact-out picks the route needing the least input, too.
    let q = quote(
        &mut client,
        request("TKX", "TKY", 1_000_000, SwapMode::ExactOut),
    )
    .await
    .expect("q");
    assert_eq!(q.hops.len(), 2);
    assert_eq!(q.amount_out, "1000000");
}

#[tokio::test]
async fn watch_quote_sends_a_fresh_quote_after_a_bin_update_and_ends_on_shutdown() {
    let (_link, mut gateway, mut client) = setup().await;
    let mut watch = client
        .watch_quote(WatchQuoteRequest {
            token_in: "TKX".into(),
            token_out: "TKY".into(),
            amount: "2000000".into(),
            ..WatchQuoteRequest::default()
        })
        .await
        .expect("watch")
        .into_inner();
    let first = watch.next().await.expect("first").expect("ok");
    assert_eq!(first.quote.as_ref().expect("q").amount_out, "1990043");

    set_y(&mut client, -1, "200000").await;
    let next = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            let update = watch.next().await.expect("update").expect("ok");
            // A resync (start-up) may recompute too, naming no pool; the
            // bin update's own event always follows and names it.
            if update.quote.as_ref().expect("q").amount_out != "1990043"
                && update.changed_pool_id == "A"
            {
                return update;
            }
        }
    })
    .await
    .expect("a new quote within 5 s");
    let q = next.quote.expect("q");
    assert_eq!(
        q.hops[0].bins.last().expect("bin").bin_id,
        -3,
        "the thinner bin -1 shows"
    );

    gateway.signal_stop();
    let end = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match watch.next().await {
                Some(Ok(_)) => continue,
                Some(Err(status)) => return status,
                None => panic!("stream ended without a status"),
            }
        }
    })
    .await
    .expect("the watch ends promptly on shutdown");
    assert_eq!(end.code(), Code::Unavailable);
}

#[tokio::test]
async fn quotes_fail_fast_with_unavailable_while_redis_is_down() {
    use tonic_health::pb::health_check_response::ServingStatus;
    let mut link = Link::start().await;
    assert!(pools_load(&link, &[POOL_A]).status.success());
    // Pool and command waits far longer than the call's deadline: failing
    // fast means answering UNAVAILABLE within that deadline, not
    // DEADLINE_EXCEEDED after waiting on a dead Redis.
    let mut config = link.config();
    config.redis.pool_timeout = Duration::from_secs(30);
    config.redis.command_timeout = Duration::from_secs(30);
    let gateway = Gateway::start(config).await;
    let mut client = QuoteServiceClient::new(gateway.channel().await);
    let channel = gateway.channel().await;
    // Serving first: NOT_SERVING is also the state before the first probe,
    // when the gateway does not know yet that Redis is down.
    common::wait_for_health(
        &channel,
        "openoes.quote.v1.QuoteService",
        ServingStatus::Serving,
        Duration::from_secs(5),
    )
    .await;
    link.topology.master.kill().await;
    common::wait_for_health(
        &channel,
        "openoes.quote.v1.QuoteService",
        ServingStatus::NotServing,
        Duration::from_secs(5),
    )
    .await;
    let mut r = tonic::Request::new(request("TKX", "TKY", 1000, SwapMode::ExactIn));
    r.set_timeout(Duration::from_secs(10));
    let e = client.get_quote(r).await.expect_err("down");
    assert_eq!(
        (e.code(), reason(&e).as_str()),
        (Code::Unavailable, "REDIS_UNAVAILABLE"),
        "answered within the deadline, without waiting on the 30 s pool: {e:?}"
    );

    // Back up without persistence: empty, and the gateway serves again.
    link.topology.master.restart().await.expect("restart");
    common::wait_for_health(
        &channel,
        "openoes.quote.v1.QuoteService",
        ServingStatus::Serving,
        Duration::from_secs(5),
    )
    .await;
    let e = quote(&mut client, request("TKX", "TKY", 1000, SwapMode::ExactIn))
        .await
        .expect_err("empty");
    assert_eq!(
        reason(&e),
        "UNKNOWN_TOKEN",
        "the restarted Redis is empty: {e:?}"
    );
}

fn reason(status: &Status) -> String {
    status
        .get_error_details()
        .error_info()
        .map(|i| i.reason.clone())
        .unwrap_or_default()
}

fn violations(status: &Status) -> Vec<String> {
    status
        .get_error_details()
        .bad_request()
        .map(|b| b.field_violations.iter().map(|v| v.field.clone()).collect())
        .unwrap_or_default()
}

#[tokio::test]
async fn errors_say_what_is_wrong() {
    let (_link, _gateway, mut client) = setup().await;
    let (pool, bins) = cheap_pool("D", "TKQ", "TKR");
    client
        .upsert_pool(UpsertPoolRequest {
            pool: Some(pool),
            bins,
            replace_bins: false,
        })
        .await
        .expect("D");

    let e = quote(&mut client, request("TKX", "NOPE", 1000, SwapMode::ExactIn))
        .await
        .expect_err("unknown");
    assert_eq!(
        (e.code(), reason(&e).as_str()),
        (Code::NotFound, "UNKNOWN_TOKEN"),
        "{e:?}"
    );

    let e = quote(&mut client, request("TKX", "TKQ", 1000, SwapMode::ExactIn))
        .await
        .expect_err("no route");
    assert_eq!(
        (e.code(), reason(&e).as_str()),
        (Code::FailedPrecondition, "NO_ROUTE"),
        "{e:?}"
    );

    let e = quote(
        &mut client,
        request("TKX", "TKY", 10_000_000, SwapMode::ExactIn),
    )
    .await
    .expect_err("dry");
    assert_eq!(
        (e.code(), reason(&e).as_str()),
        (Code::FailedPrecondition, "INSUFFICIENT_LIQUIDITY")
    );
    let e = quote(
        &mut client,
        request("TKY", "TKX", 9_000_000, SwapMode::ExactOut),
    )
    .await
    .expect_err("dry");
    assert_eq!(reason(&e), "INSUFFICIENT_LIQUIDITY");

    let mut partial = request("TKX", "TKY", 10_000_000, SwapMode::ExactIn);
    partial.allow_partial_fill = true;
    let q = quote(&mut client, partial).await.expect("partial fill");
    assert!(q.partial_fill);
    assert_eq!(q.amount_out, "5500000", "everything the Y side holds");
    let consumed: u64 = q.amount_in.parse().expect("n");
    assert!(
        consumed < 10_000_000 && consumed > 5_500_000,
        "input consumed: {consumed}"
    );

    let e = quote(&mut client, request("TKX", "TKY", 1, SwapMode::ExactIn))
        .await
        .expect_err("tiny");
    assert_eq!(
        (e.code(), reason(&e).as_str()),
        (Code::InvalidArgument, "AMOUNT_TOO_SMALL")
    );

    let bad = GetQuoteRequest {
        token_in: "TK:X".into(),
        token_out: String::new(),
        amount: "1.5".into(),
        swap_mode: 7,
        slippage_bps: 10_001,
        max_hops: 9,
        allow_partial_fill: false,
    };
    let e = quote(&mut client, bad).await.expect_err("bad input");
    assert_eq!(e.code(), Code::InvalidArgument);
    assert_eq!(
        violations(&e),
        [
            "token_in",
            "token_out",
            "amount",
            "swap_mode",
            "slippage_bps",
            "max_hops"
        ],
        "{e:?}"
    );
}

#[tokio::test]
async fn bad_pool_data_is_refused_naming_the_field() {
    let (link, _gateway, mut client) = setup().await;
    let (mut pool, mut bins) = cheap_pool("E", "TKX", "TKE");
    pool.bin_step = 0;
    pool.protocol_share_bps = 2501;
    bins[0].x_amount = "-1".into();
    let e = client
        .upsert_pool(UpsertPoolRequest {
            pool: Some(pool),
            bins,
            replace_bins: false,
        })
        .await
        .expect_err("bad pool");
    assert_eq!(e.code(), Code::InvalidArgument);
    let fields = violations(&e);
    for field in [
        "pool.bin_step",
        "pool.protocol_share_bps",
        "bins[0].x_amount",
    ] {
        assert!(fields.iter().any(|f| f == field), "{field} in {fields:?}");
    }

    let (pool, mut bins) = cheap_pool("E", "TKX", "TKE");
    bins[1].price = "1.5".into();
    let e = client
        .upsert_pool(UpsertPoolRequest {
            pool: Some(pool),
            bins,
            replace_bins: false,
        })
        .await
        .expect_err("bad price");
    assert_eq!(violations(&e), ["bins[1].price"]);

    // An existing pool's tokens cannot change; nothing is written.
    let (mut moved, bins) = cheap_pool("A", "TKX", "TKOTHER");
    moved.bin_step = 25;
    let e = client
        .upsert_pool(UpsertPoolRequest {
            pool: Some(moved),
            bins,
            replace_bins: true,
        })
        .await
        .expect_err("tokens changed");
    assert_eq!(
        (e.code(), reason(&e).as_str()),
        (Code::InvalidArgument, "POOL_TOKENS_CHANGED"),
        "{e:?}"
    );
    let q = quote(
        &mut client,
        request("TKX", "TKY", 2_000_000, SwapMode::ExactIn),
    )
    .await
    .expect("A intact");
    assert_eq!(q.amount_out, "1990043");

    let e = client
        .upsert_bins(UpsertBinsRequest {
            pool_id: "missing".into(),
            bins: vec![Bin {
                bin_id: 0,
                x_amount: "1".into(),
                y_amount: "1".into(),
                price: String::new(),
            }],
            active_bin_id: None,
        })
        .await
        .expect_err("unknown pool");
    assert_eq!(e.code(), Code::NotFound);

    // The CLI refuses a bad file, naming file and field, and writes nothing.
    let dir = tempfile::tempdir().expect("tmp");
    let file = dir.path().join("bad.json");
    std::fs::write(
        &file,
        r#"{"pool": {"pool_id": "F", "token_x": "TKX", "token_y": "TKF", "bin_step": 0,
            "active_bin_id": 0, "base_factor": 1, "variable_fee_control": 0,
            "max_volatility_accumulator": 0, "protocol_share_bps": 0}, "bins": []}"#,
    )
    .expect("write");
    let out = pools_load(&link, &[POOL_A, file.to_str().expect("utf8")]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("bad.json") && stderr.contains("pool.bin_step"),
        "{stderr}"
    );
    assert!(
        out.stdout.is_empty(),
        "nothing written when any file is bad"
    );
}

#[tokio::test]
async fn concurrent_quotes_never_see_half_a_pool() {
    let (_link, _gateway, mut client) = setup().await;
    // Two full snapshots of pool A: the original, and one with every Y bin
    // halved. Quotes during rewrites must match one or the other exactly.
    let file: Value =
        serde_json::from_str(&std::fs::read_to_string(POOL_A).expect("read")).expect("json");
    let pool: Pool = {
        let p = &file["pool"];
        Pool {
            pool_id: "A".into(),
            token_x: "TKX".into(),
            token_y: "TKY".into(),
            bin_step: p["bin_step"].as_u64().expect("n") as u32,
            active_bin_id: 0,
            base_factor: p["base_factor"].as_u64().expect("n") as u32,
            max_volatility_accumulator: p["max_volatility_accumulator"].as_u64().expect("n") as u32,
            protocol_share_bps: p["protocol_share_bps"].as_u64().expect("n") as u32,
            ..Pool::default()
        }
    };
    let snapshot = |halve: bool| -> Vec<Bin> {
        file["bins"]
            .as_array()
            .expect("bins")
            .iter()
            .map(|b| {
                let y: u64 = b["y_amount"].as_str().expect("y").parse().expect("n");
                Bin {
                    bin_id: b["bin_id"].as_i64().expect("id") as i32,
                    x_amount: b["x_amount"].as_str().expect("x").into(),
                    y_amount: if halve {
                        (y / 2).to_string()
                    } else {
                        y.to_string()
                    },
                    price: String::new(),
                }
            })
            .collect()
    };
    let a2 = request("TKX", "TKY", 2_000_000, SwapMode::ExactIn);
    let mut expected = Vec::new();
    for halve in [true, false] {
        let r = UpsertPoolRequest {
            pool: Some(pool.clone()),
            bins: snapshot(halve),
            replace_bins: true,
        };
        client.upsert_pool(r).await.expect("upsert");
        expected.push(quote(&mut client, a2.clone()).await.expect("q").amount_out);
    }
    assert_ne!(expected[0], expected[1]);

    let writer = {
        let mut client = client.clone();
        let pool = pool.clone();
        let (a, b) = (snapshot(true), snapshot(false));
        tokio::spawn(async move {
            for i in 0..150 {
                let bins = if i % 2 == 0 { a.clone() } else { b.clone() };
                let r = UpsertPoolRequest {
                    pool: Some(pool.clone()),
                    bins,
                    replace_bins: true,
                };
                client.upsert_pool(r).await.expect("upsert");
            }
        })
    };
    let mut readers = Vec::new();
    for _ in 0..4 {
        let mut client = client.clone();
        let (a2, expected) = (a2.clone(), expected.clone());
        readers.push(tokio::spawn(async move {
            let mut seen = 0;
            for _ in 0..150 {
                let q = quote(&mut client, a2.clone()).await.expect("q");
                assert!(
                    expected.contains(&q.amount_out),
                    "half a pool: {} not in {expected:?}",
                    q.amount_out
                );
                seen += 1;
            }
            seen
        }));
    }
    writer.await.expect("writer");
    let mut total = 0;
    for r in readers {
        total += r.await.expect("reader");
    }
    assert_eq!(total, 600);
}

#[tokio::test]
async fn a_walk_longer_than_one_read_page_matches_the_math_over_every_bin() {
    use openoes::quote::math::{BinReserve, PoolParams, swap_exact_in};
    let (_link, _gateway, mut client) = setup().await;
    let (mut pool, _) = cheap_pool("L", "TKL", "TKM");
    pool.bin_step = 25;
    pool.base_factor = 10_000;
    pool.variable_fee_control = 40_000;
    let reserves: Vec<BinReserve> = (0..=100)
        .map(|i| BinReserve {
            bin_id: -i,
            x: 0,
            y: 1_000 + i as u64,
        })
        .collect();
    let bins = reserves
        .iter()
        .map(|r| Bin {
            bin_id: r.bin_id,
            x_amount: "0".into(),
            y_amount: r.y.to_string(),
            price: String::new(),
        })
        .collect();
    client
        .upsert_pool(UpsertPoolRequest {
            pool: Some(pool.clone()),
            bins,
            replace_bins: true,
        })
        .await
        .expect("L");

    let params = PoolParams {
        bin_step: 25,
        active_bin_id: 0,
        base_factor: 10_000,
        variable_fee_control: 40_000,
        max_volatility_accumulator: 350_000,
        protocol_share_bps: 1000,
    };
    let amount = 60_000;
    let want = swap_exact_in(&params, &reserves, amount, true).expect("math");
    assert!(
        want.bins.len() > 40 && !want.exhausted,
        "crosses {} bins",
        want.bins.len()
    );
    let q = quote(
        &mut client,
        request("TKL", "TKM", amount, SwapMode::ExactIn),
    )
    .await
    .expect("q");
    assert_eq!(q.hops[0].bins.len(), want.bins.len());
    assert_eq!(q.amount_out, want.amount_out.to_string());
    assert_eq!(q.total_fee, want.total_fee.to_string());
}

#[tokio::test]
async fn a_call_past_its_deadline_answers_deadline_exceeded() {
    use rustix::process::{Pid, Signal, kill_process};
    let link = Link::start().await;
    let out = pools_load(&link, &[POOL_A]);
    assert!(out.status.success());
    let mut config = link.config();
    config.grpc.request_timeout = Duration::from_secs(1);
    // The health monitor must not find the frozen Redis down during the
    // test (quotes would then fail fast with UNAVAILABLE, as they should,
    // and no deadline would be reached): it probes rarely here. Under a
    // loaded full-suite run its 200 ms default raced the second call.
    config.health.interval = Duration::from_secs(30);
    config.health.probe_timeout = Duration::from_secs(30);
    let gateway = Gateway::start(config).await;
    let mut client = QuoteServiceClient::new(gateway.channel().await);
    // Warm the other direction only: pools are kept in memory by (pool,
    // direction), so the quotes below must still read Redis.
    quote(&mut client, request("TKY", "TKX", 1000, SwapMode::ExactIn))
        .await
        .expect("warm");

    // Freeze Redis (it stays "up" for the health monitor for a moment):
    // the quote now waits on Redis.
    let pid = Pid::from_raw(link.topology.master.pid().expect("pid") as i32).expect("pid");
    kill_process(pid, Signal::STOP).expect("SIGSTOP");

    // The client's grpc-timeout, enforced by the server alone (set as a
    // header, so the client library does not time out first).
    let mut r = tonic::Request::new(request("TKX", "TKY", 1000, SwapMode::ExactIn));
    r.metadata_mut()
        .insert("grpc-timeout", "500m".parse().expect("header"));
    // The client itself would wait 10 s (a deadline for this test, not a
    // timing): the answer must be the server's, at the header's 500 ms.
    let e = tokio::time::timeout(Duration::from_secs(10), client.get_quote(r))
        .await
        .expect("the server answered at the client's deadline")
        .expect_err("deadline");
    assert_eq!(
        (e.code(), reason(&e).as_str()),
        (Code::DeadlineExceeded, "DEADLINE_EXCEEDED"),
        "{e:?}"
    );

    // No client deadline: the server's grpc.request_timeout (1 s) caps
    // the call. Timers never fire early, so the lower bound is exact; the
    // upper one is the test's own deadline.
    let started = std::time::Instant::now();
    let e = tokio::time::timeout(
        Duration::from_secs(10),
        quote(&mut client, request("TKX", "TKY", 1000, SwapMode::ExactIn)),
    )
    .await
    .expect("the server's cap answered")
    .expect_err("cap");
    let took = started.elapsed();
    kill_process(pid, Signal::CONT).expect("SIGCONT");
    assert_eq!(e.code(), Code::DeadlineExceeded, "{e:?}");
    assert!(
        took >= Duration::from_millis(900),
        "the cap is the configured one: {took:?}"
    );
}

/// Pool A as in its file, with bin -1 holding `y` of Y, written by another
/// process (`openoes pools load`, as admin): this gateway learns of it
/// only through the change stream.
fn load_a_elsewhere(link: &Link, y: u64) {
    let mut file: Value =
        serde_json::from_str(&std::fs::read_to_string(POOL_A).expect("read")).expect("json");
    for bin in file["bins"].as_array_mut().expect("bins") {
        if bin["bin_id"] == -1 {
            bin["y_amount"] = Value::String(y.to_string());
        }
    }
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("a.json");
    std::fs::write(&path, file.to_string()).expect("write");
    let url = format!(
        "redis://admin:admin-pw@127.0.0.1:{}",
        link.topology.master.port()
    );
    let out = Command::new(OPENOES)
        .args(["pools", "load", "--redis-url", &url])
        .arg(&path)
        .output()
        .expect("run openoes pools load");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Quotes until one crosses bin -1 holding `y` (the swap takes all of it),
/// or fails after 10 s.
async fn until_bin_shows(client: &mut QuoteServiceClient<Channel>, y: u64, after: &str) {
    let shown = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let Ok(q) = quote(client, request("TKX", "TKY", 2_000_000, SwapMode::ExactIn)).await
                && q.hops[0]
                    .bins
                    .iter()
                    .any(|b| b.bin_id == -1 && b.amount_out == y.to_string())
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(shown.is_ok(), "{after}: quotes still show the old bin -1");
}

/// Quotes are served from pools kept in memory (issue #17); these must
/// follow every write made anywhere: after a plain change, after the
/// change follower's connection was killed, and after the change stream
/// was trimmed while the follower could not read it (it cannot know what
/// it missed, so it must drop everything it holds).
#[tokio::test]
async fn quotes_from_memory_follow_changes_reconnects_and_a_trimmed_change_stream() {
    let link = Link::start_secured().await;
    let gateway = Gateway::start(link.secured_config()).await;
    let mut client = QuoteServiceClient::new(gateway.channel().await);
    load_a_elsewhere(&link, 1_000_000);
    until_bin_shows(&mut client, 1_000_000, "the first load").await;
    // Warm: these are served from memory now.
    for _ in 0..5 {
        quote(
            &mut client,
            request("TKX", "TKY", 2_000_000, SwapMode::ExactIn),
        )
        .await
        .expect("q");
    }

    load_a_elsewhere(&link, 300_000);
    until_bin_shows(&mut client, 300_000, "a write by another process").await;

    // The follower's connection dies (with every other of the gateway's).
    let kill = |user: &'static str| {
        let master = &link.topology.master;
        async move {
            master
                .query::<i64>(redis::cmd("CLIENT").arg("KILL").arg("USER").arg(user))
                .await
                .expect("client kill")
        }
    };
    kill("wsp").await;
    load_a_elsewhere(&link, 400_000);
    until_bin_shows(&mut client, 400_000, "a write after the follower was cut").await;

    // Now the follower cannot come back until its user is on again; the
    // change is made and its event trimmed away meanwhile.
    let acl = |on: &'static str| {
        let master = &link.topology.master;
        async move {
            master
                .query::<()>(redis::cmd("ACL").arg("SETUSER").arg("wsp").arg(on))
                .await
                .expect("acl setuser")
        }
    };
    acl("off").await;
    kill("wsp").await;
    load_a_elsewhere(&link, 500_000);
    let _: i64 = link
        .topology
        .master
        .query(redis::cmd("XTRIM").arg("quote:events").arg("MAXLEN").arg(0))
        .await
        .expect("xtrim");
    acl("on").await;
    until_bin_shows(&mut client, 500_000, "a write whose event was trimmed").await;
}
