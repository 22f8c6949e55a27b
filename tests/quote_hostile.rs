//! Issue #18: each test does one hostile thing a careless (but legitimate)
//! data feed or a crowd of clients can do to QuoteService, against a real
//! Redis, and checks the engine never answers a wrong number, never misses
//! the better route, and stays up.

mod common;

use std::{process::Command, time::Duration};

use common::{Gateway, Link};
use openoes::proto::quote::v1::{
    Bin, GetPoolRequest, GetQuoteRequest, Pool, Quote, SwapMode, UpsertBinsRequest,
    UpsertPoolRequest, WatchQuoteRequest, quote_service_client::QuoteServiceClient,
};
use tokio_stream::StreamExt;
use tonic::{Code, Status, transport::Channel};
use tonic_types::StatusExt;

const OPENOES: &str = env!("CARGO_BIN_EXE_openoes");

/// The harness's config with a patient health probe: several of these
/// tests load a 2-core machine hard, and a PING answered late there must
/// not mark Redis down (health is not what they test).
fn config(link: &Link) -> openoes::config::Config {
    let mut config = link.config();
    config.health.probe_timeout = Duration::from_secs(2);
    config
}

async fn start() -> (Link, Gateway, QuoteServiceClient<Channel>) {
    let link = Link::start().await;
    let gateway = Gateway::start(config(&link)).await;
    let client = QuoteServiceClient::new(gateway.channel().await);
    (link, gateway, client)
}

fn pool(id: &str, x: &str, y: &str, bin_step: u32, active: i32, base_factor: u32) -> Pool {
    Pool {
        pool_id: id.into(),
        token_x: x.into(),
        token_y: y.into(),
        bin_step,
        active_bin_id: active,
        base_factor,
        max_volatility_accumulator: 350_000,
        protocol_share_bps: 500,
        ..Pool::default()
    }
}

fn bin(id: i32, x: u64, y: u64) -> Bin {
    Bin {
        bin_id: id,
        x_amount: x.to_string(),
        y_amount: y.to_string(),
        price: String::new(),
    }
}

/// `per_side` bins of `depth` on each side of the active bin (and half of
/// each in the active bin).
fn deep_bins(active: i32, per_side: i32, depth: u64) -> Vec<Bin> {
    (-per_side..=per_side)
        .map(|o| match o {
            0 => bin(active, depth / 2, depth / 2),
            o if o < 0 => bin(active + o, 0, depth),
            o => bin(active + o, depth, 0),
        })
        .collect()
}

async fn upsert(client: &mut QuoteServiceClient<Channel>, pool: Pool, bins: Vec<Bin>) {
    let id = pool.pool_id.clone();
    client
        .upsert_pool(UpsertPoolRequest {
            pool: Some(pool),
            bins,
            replace_bins: true,
        })
        .await
        .unwrap_or_else(|e| panic!("upsert {id}: {e:?}"));
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

fn sum(values: impl IntoIterator<Item = String>) -> u128 {
    values
        .into_iter()
        .map(|v| v.parse::<u128>().expect("amount"))
        .sum()
}

// === 1, 2: amounts beyond u64 ===

#[tokio::test]
async fn an_exact_in_output_beyond_u64_is_amount_too_large_never_wrapped() {
    let (_link, _gateway, mut client) = start().await;
    let bins = (98..=100).map(|id| bin(id, 0, u64::MAX)).collect();
    upsert(
        &mut client,
        pool("BIG", "TKX", "TKY", 100, 100, 10_000),
        bins,
    )
    .await;

    match quote(
        &mut client,
        request("TKX", "TKY", u64::MAX, SwapMode::ExactIn),
    )
    .await
    {
        Ok(q) => {
            // Only a capped, self-consistent answer would do; the sum of
            // the bins' outputs must be the output, exactly.
            let bins = sum(q.hops[0].bins.iter().map(|b| b.amount_out.clone()));
            panic!(
                "answered {} (bins add up to {bins}) for an output beyond u64",
                q.amount_out
            );
        }
        Err(e) => assert_eq!(
            (e.code(), reason(&e).as_str()),
            (Code::InvalidArgument, "AMOUNT_TOO_LARGE"),
            "{e:?}"
        ),
    }
    // A smaller sale through the same bins still quotes, exactly.
    let q = quote(
        &mut client,
        request("TKX", "TKY", u64::MAX / 8, SwapMode::ExactIn),
    )
    .await
    .expect("fits");
    let bins = sum(q.hops[0].bins.iter().map(|b| b.amount_out.clone()));
    assert_eq!(bins, q.amount_out.parse::<u128>().expect("n"));
}

#[tokio::test]
async fn an_exact_out_input_beyond_u64_is_amount_too_large() {
    let (_link, _gateway, mut client) = start().await;
    // One X buys about e^-4.6 of Y at bin -460 of step 100: buying most of
    // this Y needs far more than u64::MAX of X.
    let bins = (-462..=-460).map(|id| bin(id, 0, u64::MAX / 4)).collect();
    upsert(
        &mut client,
        pool("CHEAPY", "TKX", "TKY", 100, -460, 10_000),
        bins,
    )
    .await;
    let e = quote(
        &mut client,
        request("TKX", "TKY", u64::MAX / 2, SwapMode::ExactOut),
    )
    .await
    .expect_err("input beyond u64");
    assert_eq!(
        (e.code(), reason(&e).as_str()),
        (Code::InvalidArgument, "AMOUNT_TOO_LARGE"),
        "{e:?}"
    );
}

// === 3: the route cap ===

#[tokio::test]
async fn the_best_of_65_direct_pools_is_chosen_whatever_its_name() {
    let (_link, _gateway, mut client) = start().await;
    for i in 0..65 {
        // Every pool alike but the last, which charges no fee.
        let fee = if i == 64 { 0 } else { 10_000 };
        let p = pool(&format!("P{i:02}"), "TKP", "TKQ", 10, 0, fee);
        upsert(&mut client, p, deep_bins(0, 5, 1_000_000)).await;
    }
    for mode in [SwapMode::ExactIn, SwapMode::ExactOut] {
        let q = quote(&mut client, request("TKP", "TKQ", 100_000, mode))
            .await
            .expect("q");
        assert_eq!(q.hops[0].pool_id, "P64", "{mode:?}: the fee-free pool");
        assert_eq!(q.total_fee, "0");
    }
}

#[tokio::test]
async fn junk_pools_never_hide_real_liquidity() {
    let (_link, _gateway, mut client) = start().await;
    for (id, x) in [("AAA-real-BTC", "BTC"), ("AAA-real-ETH", "ETH")] {
        upsert(
            &mut client,
            pool(id, x, "USDC", 10, 0, 10_000),
            deep_bins(0, 10, 1_000_000_000),
        )
        .await;
    }
    // 64 junk pools with 1 raw unit each, named to sort before the real
    // one (and before every other route through them).
    for i in 0..64 {
        let p = pool(&format!("AA-junk{i:02}"), "BTC", "USDC", 10, 0, 10_000);
        upsert(&mut client, p, vec![bin(0, 1, 1)]).await;
    }
    let q = quote(
        &mut client,
        request("BTC", "USDC", 1_000_000, SwapMode::ExactIn),
    )
    .await
    .expect("BTC -> USDC");
    assert_eq!(q.hops[0].pool_id, "AAA-real-BTC");
    let q = quote(
        &mut client,
        request("BTC", "ETH", 1_000_000, SwapMode::ExactIn),
    )
    .await
    .expect("BTC -> ETH");
    let pools: Vec<&str> = q.hops.iter().map(|h| h.pool_id.as_str()).collect();
    assert_eq!(pools, ["AAA-real-BTC", "AAA-real-ETH"]);
}

// === 4: the search budget ===

#[tokio::test]
async fn a_hub_of_20k_pools_listed_first_never_hides_a_two_hop_route() {
    let (link, _gateway, mut client) = start().await;
    // Written straight into Redis in one pipeline, as a bulk feed would:
    // pool "0-a-h" joins A to hub H, which has 20,000 dead-end pools; all
    // sort before the real route's pools.
    let mut conn = redis::Client::open(link.topology.master.url())
        .expect("client")
        .get_multiplexed_async_connection()
        .await
        .expect("conn");
    let json = |id: &str, x: &str, y: &str| {
        serde_json::json!({
            "pool_id": id, "token_x": x, "token_y": y, "bin_step": 10,
            "active_bin_id": 0, "base_factor": 10000, "variable_fee_control": 0,
            "max_volatility_accumulator": 0, "protocol_share_bps": 0
        })
        .to_string()
    };
    let mut pools = vec![("0-a-h".to_string(), "TKA".to_string(), "TKH".to_string())];
    for i in 0..20_000 {
        pools.push((format!("0-h-{i:05}"), "TKH".into(), format!("DEAD{i:05}")));
    }
    for chunk in pools.chunks(1000) {
        let mut pipe = redis::pipe();
        for (id, x, y) in chunk {
            pipe.set(format!("pool:{id}"), json(id, x, y)).ignore();
            pipe.sadd("quote:pools", id).ignore();
        }
        let () = pipe.query_async(&mut conn).await.expect("bulk write");
    }
    let () = redis::cmd("INCR")
        .arg("quote:pools:version")
        .query_async(&mut conn)
        .await
        .map(|_: u64| ())
        .expect("version");
    upsert(
        &mut client,
        pool("z-a-b", "TKA", "TKB", 10, 0, 10_000),
        deep_bins(0, 5, 1_000_000),
    )
    .await;
    upsert(
        &mut client,
        pool("z-b-t", "TKB", "TKT", 10, 0, 10_000),
        deep_bins(0, 5, 1_000_000),
    )
    .await;
    let q = quote(
        &mut client,
        request("TKA", "TKT", 100_000, SwapMode::ExactIn),
    )
    .await
    .expect("the 2-pool route exists");
    let pools: Vec<&str> = q.hops.iter().map(|h| h.pool_id.as_str()).collect();
    assert_eq!(pools, ["z-a-b", "z-b-t"]);
}

// === 5: bin_step changes and broken routes ===

#[tokio::test]
async fn a_bin_step_change_cannot_strand_bins_the_new_step_cannot_price() {
    let (_link, _gateway, mut client) = start().await;
    // Bin 400000 is priceable at step 1 (1.0001^400000 ~ 2.4e17), not at 100.
    let mut bins = deep_bins(0, 3, 1_000_000);
    bins.push(bin(400_000, 5, 0));
    upsert(&mut client, pool("STEP", "TKS", "TKU", 1, 0, 10_000), bins).await;
    let e = client
        .upsert_pool(UpsertPoolRequest {
            pool: Some(pool("STEP", "TKS", "TKU", 100, 0, 10_000)),
            bins: Vec::new(),
            replace_bins: false,
        })
        .await
        .expect_err("the stored bins do not fit the new step");
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    assert_eq!(violations(&e), ["pool.bin_step"], "{e:?}");
    // Nothing was written: the pool still quotes at step 1.
    quote(&mut client, request("TKS", "TKU", 1000, SwapMode::ExactIn))
        .await
        .expect("intact");
    // A full snapshot at the new step is how the step changes.
    client
        .upsert_pool(UpsertPoolRequest {
            pool: Some(pool("STEP", "TKS", "TKU", 100, 0, 10_000)),
            bins: deep_bins(0, 3, 1_000_000),
            replace_bins: true,
        })
        .await
        .expect("full snapshot");
    quote(&mut client, request("TKU", "TKS", 1000, SwapMode::ExactIn))
        .await
        .expect("quotes at the new step");
}

#[tokio::test]
async fn a_broken_pool_is_skipped_when_another_route_exists() {
    let (link, _gateway, mut client) = start().await;
    // BROKEN is cheaper (no fee) but shallower: a sale that walks past
    // its bins reaches the broken one.
    upsert(
        &mut client,
        pool("BROKEN", "TKX", "TKY", 100, 0, 0),
        deep_bins(0, 3, 1_000_000),
    )
    .await;
    upsert(
        &mut client,
        pool("GOOD", "TKX", "TKY", 100, 0, 10_000),
        deep_bins(0, 3, 10_000_000),
    )
    .await;
    // A careless feed writes a bin the pool's step cannot price, and a bin
    // that is not JSON, past the checks of the API.
    let mut conn = redis::Client::open(link.topology.master.url())
        .expect("client")
        .get_multiplexed_async_connection()
        .await
        .expect("conn");
    let mut pipe = redis::pipe();
    pipe.set(
        "bin:BROKEN:-400000",
        r#"{"bin_id":-400000,"x_amount":"0","y_amount":"5"}"#,
    )
    .ignore()
    .zadd("pool:BROKEN:bins", -400_000, -400_000)
    .ignore()
    .set("bin:BROKEN:1", "garbage")
    .ignore();
    let () = pipe.query_async(&mut conn).await.expect("corrupt");
    for (from, to, amount) in [("TKX", "TKY", 4_000_000u64), ("TKY", "TKX", 100_000)] {
        let q = quote(&mut client, request(from, to, amount, SwapMode::ExactIn))
            .await
            .unwrap_or_else(|e| panic!("{from} -> {to}: {e:?}"));
        assert_eq!(q.hops[0].pool_id, "GOOD", "{from} -> {to}");
    }
}

// === 6: pools load ===

fn pools_load(link: &Link, files: &[&std::path::Path]) -> std::process::Output {
    Command::new(OPENOES)
        .args(["pools", "load", "--redis-url", &link.topology.master.url()])
        .args(files)
        .output()
        .expect("run openoes pools load")
}

#[tokio::test]
async fn pools_load_refuses_missing_and_unknown_fields() {
    let link = Link::start().await;
    let dir = tempfile::tempdir().expect("tmp");
    let pool = |extra: &str, skip: &str| {
        let fields = [
            r#""pool_id": "F""#,
            r#""token_x": "TKX""#,
            r#""token_y": "TKF""#,
            r#""bin_step": 25"#,
            r#""active_bin_id": 0"#,
            r#""base_factor": 10000"#,
            r#""variable_fee_control": 0"#,
            r#""max_volatility_accumulator": 350000"#,
            r#""protocol_share_bps": 500"#,
        ];
        let mut kept: Vec<String> = fields
            .iter()
            .filter(|f| !f.contains(&format!("\"{skip}\"")))
            .map(|f| f.to_string())
            .collect();
        if !extra.is_empty() {
            kept.push(extra.to_string());
        }
        format!("{{{}}}", kept.join(", "))
    };
    let good_bin = r#"{"bin_id": 0, "x_amount": "100", "y_amount": "100"}"#;
    let zeros = format!("0.{}", "0".repeat(300));
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "no_bin_id",
            format!(
                r#"{{"pool": {}, "bins": [{{"x_amount": "1", "y_amount": "1"}}]}}"#,
                pool("", "")
            ),
            "bins[0].bin_id",
        ),
        (
            "misspelled",
            format!(
                r#"{{"pool": {}, "bins": [{good_bin}]}}"#,
                pool(r#""base_facter": 10000"#, "base_factor")
            ),
            "pool.base_facter",
        ),
        (
            "no_active",
            format!(
                r#"{{"pool": {}, "bins": [{good_bin}]}}"#,
                pool("", "active_bin_id")
            ),
            "pool.active_bin_id",
        ),
        (
            "zero_price",
            format!(
                r#"{{"pool": {}, "bins": [{{"bin_id": 0, "x_amount": "1", "y_amount": "1", "price": "{zeros}"}}]}}"#,
                pool("", "")
            ),
            "bins[0].price",
        ),
        (
            "bin_typo",
            format!(
                r#"{{"pool": {}, "bins": [{{"bin_id": 0, "x_amount": "1", "y_amont": "1"}}]}}"#,
                pool("", "")
            ),
            "bins[0].y_amont",
        ),
    ];
    for (name, text, field) in cases {
        let file = dir.path().join(format!("{name}.json"));
        std::fs::write(&file, text).expect("write");
        let out = pools_load(&link, &[&file]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success(),
            "{name}: loaded; stdout {:?}",
            out.stdout
        );
        assert!(
            stderr.contains(field) && stderr.contains(&format!("{name}.json")),
            "{name}: {stderr}"
        );
    }
}

// === 7: WatchQuote under writes ===

fn watch_request(token_in: &str, token_out: &str, amount: u64) -> WatchQuoteRequest {
    WatchQuoteRequest {
        token_in: token_in.into(),
        token_out: token_out.into(),
        amount: amount.to_string(),
        ..WatchQuoteRequest::default()
    }
}

#[tokio::test]
async fn watches_survive_unrelated_writes_with_few_redis_connections() {
    let link = Link::start().await;
    let mut config = config(&link);
    // Few connections and a short wait for one: what 1,000 watchers on a
    // 16-connection pool look like, at test scale.
    config.redis.pool_size = 2;
    config.redis.pool_timeout = Duration::from_millis(50);
    let gateway = Gateway::start(config).await;
    let mut client = QuoteServiceClient::new(gateway.channel().await);
    upsert(
        &mut client,
        pool("W", "TKW", "TKV", 10, 0, 10_000),
        deep_bins(0, 10, 1_000_000),
    )
    .await;
    upsert(
        &mut client,
        pool("OTHER", "TKO", "TKP", 10, 0, 10_000),
        deep_bins(0, 10, 1_000_000),
    )
    .await;
    let mut watches = Vec::new();
    for _ in 0..200 {
        let mut w = client
            .watch_quote(watch_request("TKW", "TKV", 100_000))
            .await
            .expect("watch")
            .into_inner();
        w.next().await.expect("first").expect("ok");
        watches.push(w);
    }
    // Unrelated writes: bins and configuration of another pool.
    for i in 0..10u64 {
        client
            .upsert_bins(UpsertBinsRequest {
                pool_id: "OTHER".into(),
                bins: vec![bin(-1, 0, 1_000_000 + i)],
                active_bin_id: None,
            })
            .await
            .expect("bins");
        let mut other = pool("OTHER", "TKO", "TKP", 10, 0, 10_000 + i as u32);
        other.status = format!("rev{i}");
        client
            .upsert_pool(UpsertPoolRequest {
                pool: Some(other),
                bins: Vec::new(),
                replace_bins: false,
            })
            .await
            .expect("pool");
    }
    // Then a change that matters: every watch sends a fresh quote.
    client
        .upsert_bins(UpsertBinsRequest {
            pool_id: "W".into(),
            bins: vec![bin(-1, 0, 10)],
            active_bin_id: None,
        })
        .await
        .expect("bins");
    let mut ended = 0;
    for w in &mut watches {
        let got = tokio::time::timeout(Duration::from_secs(20), async {
            loop {
                match w.next().await {
                    Some(Ok(m)) if m.changed_pool_id == "W" => return Ok(()),
                    Some(Ok(_)) => continue,
                    Some(Err(e)) => return Err(format!("{:?} {}", e.code(), reason(&e))),
                    None => return Err("ended".into()),
                }
            }
        })
        .await
        .expect("a fresh quote within the deadline");
        if let Err(e) = got {
            ended += 1;
            eprintln!("watch ended: {e}");
        }
    }
    assert_eq!(ended, 0, "watches ended by unrelated writes");
}

#[tokio::test]
async fn a_watch_outlives_a_drain_and_sends_the_refill() {
    let (_link, _gateway, mut client) = start().await;
    upsert(
        &mut client,
        pool("D", "TKD", "TKE", 10, 0, 10_000),
        deep_bins(0, 2, 1_000_000),
    )
    .await;
    let mut watch = client
        .watch_quote(watch_request("TKD", "TKE", 100_000))
        .await
        .expect("watch")
        .into_inner();
    watch.next().await.expect("first").expect("ok");
    // Drain every Y bin, then refill one.
    let drained: Vec<Bin> = (-2..=0).map(|id| bin(id, 0, 0)).collect();
    client
        .upsert_bins(UpsertBinsRequest {
            pool_id: "D".into(),
            bins: drained,
            active_bin_id: None,
        })
        .await
        .expect("drain");
    client
        .upsert_bins(UpsertBinsRequest {
            pool_id: "D".into(),
            bins: vec![bin(-1, 0, 7_000_000)],
            active_bin_id: None,
        })
        .await
        .expect("refill");
    let refilled = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match watch.next().await {
                Some(Ok(m)) => {
                    if let Some(q) = m.quote
                        && q.hops
                            .first()
                            .and_then(|h| h.bins.first())
                            .map(|b| b.bin_id)
                            == Some(-1)
                    {
                        return q;
                    }
                }
                Some(Err(e)) => panic!("the watch ended: {e:?}"),
                None => panic!("the watch ended without a status"),
            }
        }
    })
    .await
    .expect("the refill's quote within the deadline");
    assert_eq!(refilled.hops[0].bins.len(), 1);
}

// === 8: writes that change nothing, and graph rebuilds ===

async fn redis_conn(link: &Link) -> redis::aio::MultiplexedConnection {
    redis::Client::open(link.topology.master.url())
        .expect("client")
        .get_multiplexed_async_connection()
        .await
        .expect("conn")
}

#[tokio::test]
async fn rewriting_an_identical_pool_changes_nothing() {
    let (link, _gateway, mut client) = start().await;
    let p = pool("SAME", "TKX", "TKY", 10, 0, 10_000);
    upsert(&mut client, p.clone(), deep_bins(0, 5, 1_000_000)).await;
    let mut conn = redis_conn(&link).await;
    let before: (Option<String>, Option<String>, usize) = redis::pipe()
        .get("pool:SAME")
        .get("quote:pools:version")
        .xlen("quote:events")
        .query_async(&mut conn)
        .await
        .expect("read");
    tokio::time::sleep(Duration::from_millis(5)).await; // a new millisecond
    upsert(&mut client, p.clone(), deep_bins(0, 5, 1_000_000)).await;
    // The same bins written through UpsertBins change nothing either.
    client
        .upsert_bins(UpsertBinsRequest {
            pool_id: "SAME".into(),
            bins: vec![bin(-1, 0, 1_000_000)],
            active_bin_id: Some(0),
        })
        .await
        .expect("bins");
    let after: (Option<String>, Option<String>, usize) = redis::pipe()
        .get("pool:SAME")
        .get("quote:pools:version")
        .xlen("quote:events")
        .query_async(&mut conn)
        .await
        .expect("read");
    assert_eq!(after, before, "pool JSON (last_updated), version, events");
}

/// `calls` of one command in Redis's INFO commandstats.
async fn command_calls(conn: &mut redis::aio::MultiplexedConnection, command: &str) -> u64 {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(conn)
        .await
        .expect("info");
    info.lines()
        .find_map(|l| l.strip_prefix(&format!("cmdstat_{command}:calls=")))
        .and_then(|rest| rest.split(',').next()?.parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn pool_writes_never_make_every_quote_rebuild_the_graph() {
    let (link, gateway, mut client) = start().await;
    for i in 0..50 {
        let p = pool(
            &format!("G{i:02}"),
            &format!("TG{i:02}"),
            "TKZ",
            10,
            0,
            10_000,
        );
        upsert(&mut client, p, deep_bins(0, 3, 1_000_000)).await;
    }
    quote(
        &mut client,
        request("TG00", "TG01", 1000, SwapMode::ExactIn),
    )
    .await
    .expect("warm");
    let mut conn = redis_conn(&link).await;
    let rebuilds_before = command_calls(&mut conn, "smembers").await;
    let stop = tokio_util::sync::CancellationToken::new();
    let done = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut quoters = Vec::new();
    // Half the connection pool: the test machine runs other tests at once,
    // and the writes below must find connections (they are not measured).
    for i in 0..8 {
        let mut client = QuoteServiceClient::new(gateway.channel().await);
        let (stop, done) = (stop.clone(), std::sync::Arc::clone(&done));
        quoters.push(tokio::spawn(async move {
            while !stop.is_cancelled() {
                let r = request(&format!("TG{:02}", i % 50), "TKZ", 1000, SwapMode::ExactIn);
                match quote(&mut client, r).await {
                    Ok(_) => {
                        done.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                    // A loaded test machine may starve the pool for a
                    // moment; what is measured is rebuilds, not this.
                    Err(e) if e.code() == Code::Unavailable => {}
                    Err(e) => panic!("quote: {e:?}"),
                }
            }
        }));
    }
    let quoted = |at_least: u64| {
        let done = std::sync::Arc::clone(&done);
        async move {
            tokio::time::timeout(Duration::from_secs(60), async {
                while done.load(std::sync::atomic::Ordering::Relaxed) < at_least {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            })
            .await
            .expect("the quoters make progress");
        }
    };
    quoted(16).await; // all quoting before the writes start
    // Ten writes of existing pools (changed and unchanged) and one new pool,
    // each while quotes run. (Retried if the loaded machine starves the
    // pool for a moment: the writes are not what is measured.)
    let mut writes: Vec<Pool> = (0..10)
        .map(|i| {
            pool(
                &format!("G{i:02}"),
                &format!("TG{i:02}"),
                "TKZ",
                10,
                0,
                10_000 + i,
            )
        })
        .collect();
    writes.push(pool("G99", "TG99", "TKZ", 10, 0, 10_000));
    for p in writes {
        let before = done.load(std::sync::atomic::Ordering::Relaxed);
        for attempt in 1.. {
            let r = UpsertPoolRequest {
                pool: Some(p.clone()),
                bins: deep_bins(0, 3, 1_000_000),
                replace_bins: true,
            };
            match client.upsert_pool(r).await {
                Ok(_) => break,
                Err(e) if e.code() == Code::Unavailable && attempt < 20 => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("upsert {}: {e:?}", p.pool_id),
            }
        }
        quoted(before + 4).await;
    }
    // The new pool is quoted (by a quote of its own, after the write).
    let mut routed = None;
    for _ in 0..20 {
        match quote(
            &mut client,
            request("TG99", "TG00", 1000, SwapMode::ExactIn),
        )
        .await
        {
            Ok(q) => {
                routed = Some(q);
                break;
            }
            Err(e) if e.code() == Code::Unavailable => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("new pool routes: {e:?}"),
        }
    }
    assert_eq!(routed.expect("new pool routes").hops.len(), 2);
    stop.cancel();
    for q in quoters {
        q.await.expect("quoter");
    }
    let quotes = done.load(std::sync::atomic::Ordering::Relaxed);
    let rebuilds = command_calls(&mut conn, "smembers").await - rebuilds_before;
    assert!(
        rebuilds <= 2,
        "{rebuilds} full graph rebuilds for 11 pool writes during {quotes} quotes"
    );
}

// === 9, 10: sizes ===

#[tokio::test]
async fn an_upsert_of_too_many_bins_is_refused_before_redis_sees_it() {
    let (link, _gateway, mut client) = start().await;
    let bins: Vec<Bin> = (0..60_000).map(|i| bin(i, 1, 0)).collect();
    let e = client
        .upsert_pool(UpsertPoolRequest {
            pool: Some(pool("HUGE", "TKX", "TKY", 1, 0, 10_000)),
            bins,
            replace_bins: true,
        })
        .await
        .expect_err("too many bins for one call");
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    assert_eq!(violations(&e), ["bins"], "{e:?}");
    let mut conn = redis_conn(&link).await;
    let exists: bool = redis::cmd("EXISTS")
        .arg("pool:HUGE")
        .query_async(&mut conn)
        .await
        .expect("exists");
    assert!(!exists, "nothing written");
}

#[tokio::test]
async fn an_oversized_status_is_refused() {
    let (_link, _gateway, mut client) = start().await;
    let mut p = pool("LOUD", "TKX", "TKY", 10, 0, 10_000);
    p.status = "x".repeat(100_000);
    let e = match client
        .upsert_pool(UpsertPoolRequest {
            pool: Some(p),
            bins: deep_bins(0, 1, 10),
            replace_bins: true,
        })
        .await
    {
        Ok(_) => panic!("a 100 kB status was stored"),
        Err(e) => e,
    };
    assert_eq!(violations(&e), ["pool.status"], "{e:?}");
    let e = client
        .get_pool(GetPoolRequest {
            pool_id: "LOUD".into(),
            ..GetPoolRequest::default()
        })
        .await
        .expect_err("nothing written");
    assert_eq!(e.code(), Code::NotFound);
}

// === 11: bounded work per quote ===

#[tokio::test]
async fn a_quote_over_many_deep_pools_stops_at_its_bound_and_says_so() {
    let link = Link::start().await;
    let mut config = config(&link);
    // Pools deeper than the default allows, and a small bins budget: what
    // 64 pools x 5,000 bins do to the defaults, at test scale.
    config.quote.max_bins_per_write = 2_000;
    config.quote.max_bins_per_pool = 2_000;
    config.quote.max_bins_per_quote = 20_000;
    let gateway = Gateway::start(config).await;
    let mut client = QuoteServiceClient::new(gateway.channel().await);
    for i in 0..16 {
        let bins = (0..2_000).map(|k| bin(-k, 0, 1_000_000)).collect();
        // Later pools are cheaper: the best is not the first by name.
        let p = pool(
            &format!("DEEP{i:02}"),
            "TKD",
            "TKE",
            1,
            0,
            10_000 + 2_000 * (15 - i),
        );
        upsert(&mut client, p, bins).await;
    }
    // Each quote needs about 1,500 bins of a pool.
    let q = quote(
        &mut client,
        request("TKD", "TKE", 1_500_000_000, SwapMode::ExactIn),
    )
    .await
    .expect("the best of the pools priced within the bound");
    assert_eq!(q.search_limit, "quote.max_bins_per_quote");
    let bins: u128 = q.hops[0].bins.len() as u128;
    assert!(bins > 1_000, "a real fill: {bins} bins");
    assert_eq!(
        sum(q.hops[0].bins.iter().map(|b| b.amount_out.clone())),
        q.amount_out.parse::<u128>().expect("n")
    );

    // A quote within the bounds says nothing.
    let q = quote(
        &mut client,
        request("TKD", "TKE", 100_000_000, SwapMode::ExactIn),
    )
    .await
    .expect("small");
    assert_eq!(q.search_limit, "");
    assert_eq!(
        q.hops[0].pool_id, "DEEP15",
        "every pool priced: the cheapest wins"
    );
}

// === 9: big snapshots, staged ===

#[tokio::test]
async fn a_snapshot_bigger_than_one_script_is_staged_and_atomic_to_quotes() {
    let (link, _gateway, mut client) = start().await;
    let mut conn = redis_conn(&link).await;
    // 5,000 bins: five times quote.max_bins_per_write (1,000).
    let snapshot = |y: u64| -> Vec<Bin> { (0..5_000).map(|k| bin(-k, 0, y)).collect() };
    let p = pool("STAGED", "TKS", "TKT", 1, 0, 10_000);
    let write = move |y: u64| UpsertPoolRequest {
        pool: Some(p.clone()),
        bins: snapshot(y),
        replace_bins: true,
    };
    let scripts_before = command_calls(&mut conn, "evalsha").await;
    client
        .upsert_pool(write(1_000))
        .await
        .expect("staged write");
    let scripts = command_calls(&mut conn, "evalsha").await - scripts_before;
    assert!(
        scripts >= 6,
        "{scripts} scripts for 5,000 bins: never more than 1,000 bins in one"
    );
    // Every bin is there, a page at a time.
    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let page = client
            .get_pool(GetPoolRequest {
                pool_id: "STAGED".into(),
                include_bins: true,
                bins_page_size: 1_000,
                bins_page_token: token.clone(),
            })
            .await
            .expect("page")
            .into_inner();
        assert!(page.bins.len() <= 1_000);
        seen.extend(page.bins.iter().map(|b| b.bin_id));
        if page.next_bins_page_token.is_empty() {
            break;
        }
        token = page.next_bins_page_token;
    }
    assert_eq!(
        seen,
        (-4_999..=0).collect::<Vec<i32>>(),
        "every bin once, by id"
    );

    // Quotes during staged rewrites see one snapshot or the other.
    let sell = request("TKS", "TKT", 1_200_000, SwapMode::ExactIn);
    let mut expected = Vec::new();
    for y in [500, 1_000] {
        client.upsert_pool(write(y)).await.expect("write");
        expected.push(
            quote(&mut client, sell.clone())
                .await
                .expect("q")
                .amount_out,
        );
    }
    assert_ne!(expected[0], expected[1]);
    let writer = {
        let mut client = client.clone();
        tokio::spawn(async move {
            for i in 0..6 {
                let y = if i % 2 == 0 { 500 } else { 1_000 };
                client.upsert_pool(write(y)).await.expect("write");
            }
        })
    };
    let mut quotes = 0;
    while !writer.is_finished() || quotes < 3 {
        let q = quote(&mut client, sell.clone()).await.expect("q");
        assert!(
            expected.contains(&q.amount_out),
            "half a snapshot: {} not in {expected:?}",
            q.amount_out
        );
        quotes += 1;
    }
    writer.await.expect("writer");
    // Old generations are gone: one generation's two keys are left.
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("pool:STAGED:bins*")
        .query_async(&mut conn)
        .await
        .expect("keys");
    assert_eq!(keys.len(), 2, "{keys:?}");
    let std_bins: Vec<String> = redis::cmd("KEYS")
        .arg("bin:STAGED:*")
        .query_async(&mut conn)
        .await
        .expect("keys");
    assert!(std_bins.is_empty(), "{} stale bin keys", std_bins.len());
    let purge: usize = redis::cmd("SCARD")
        .arg("quote:purge")
        .query_async(&mut conn)
        .await
        .expect("scard");
    assert_eq!(purge, 0);
}
