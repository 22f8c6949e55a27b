//! SettlementService against a hostile exchange: each test does the hostile
//! thing for real, as the `exchange` ACL user on R with plain Redis
//! commands (XADD, XTRIM, explicit ids), against a WSP-only gateway; the
//! exchange's credit backend is plain Redis too (it XADDs a standard
//! acceptance for every credit request it reads on R).

mod common;

use std::{collections::HashMap, time::Duration};

use common::{
    Gateway, Link,
    credit::{admin, ask, await_final, login, now_s, request, serving, status as credit_status},
    settlement::{
        self as s, Raw, confirm, cycle_until, get, pledged, report, status, submit, until,
        worked_example,
    },
    wait_for_health, xrange,
};
use openoes::{
    config::{Config, Role},
    crypto::{keys::ServerKey, merkle::Hash},
    proto::{
        credit::v1::{self as cpb, credit_service_client::CreditServiceClient},
        settlement::v1::{
            self as pb, settlement_service_client::SettlementServiceClient as Client,
        },
    },
    settlement::{cycle, model::Incoming},
    streams::{Entry, Fields, StreamId},
};
use redis::aio::MultiplexedConnection;
use serde_json::{Value, json};
use tokio::task::JoinHandle;
use tonic::{Code, transport::Channel};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_types::StatusExt;

const REPORTS: &str = "mirror:settlement:individual:response";
const SUMMARIES: &str = "mirror:settlement:batch:response";
const CONFIRMATIONS: &str = "mirror:settlement:confirmation";
const EVENTS: &str = "mirror:settlement:events";
const CURSOR: &str = "mirror:cursor:mirror:settlement:individual:response";
/// Longest refusal or anomaly reason the WSP records.
const MAX_REASON: usize = 1024;

// === the two sides ===

/// An M + R link, a WSP-only gateway, and a plain-Redis credit backend.
struct Wsp {
    link: Link,
    dir: tempfile::TempDir,
    config: Config,
    gateway: Gateway,
    channel: Channel,
    client: Client<Channel>,
    backend: JoinHandle<()>,
}

/// A secured link and a gateway serving only the WSP role (`edit` may
/// change its config), its services SERVING.
async fn wsp_only(edit: impl FnOnce(&mut Config)) -> Wsp {
    let link = Link::start_secured().await;
    let dir = tempfile::tempdir().expect("tmp");
    let mut config = s::config(&link, dir.path());
    config.roles = vec![Role::Wsp];
    edit(&mut config);
    let (gateway, channel) = start(config.clone()).await;
    let backend = plain_backend(link.topology.replica.port());
    Wsp {
        client: Client::new(channel.clone()),
        link,
        dir,
        config,
        gateway,
        channel,
        backend,
    }
}

/// A gateway on `config`, once CreditService and SettlementService serve.
async fn start(config: Config) -> (Gateway, Channel) {
    let (gateway, channel) = serving(config).await;
    settlement_health(&channel, ServingStatus::Serving).await;
    (gateway, channel)
}

async fn settlement_health(channel: &Channel, want: ServingStatus) {
    wait_for_health(
        channel,
        openoes::settlement::SERVICE,
        want,
        Duration::from_secs(20),
    )
    .await;
}

/// R as the exchange's ACL user: what another company can do there.
async fn as_exchange(link: &Link) -> MultiplexedConnection {
    login(link.topology.replica.port(), "exchange", "exchange-pw").await
}

/// The exchange's credit backend in plain Redis: every credit request it
/// reads on R is answered with a standard acceptance. Ends when R goes.
fn plain_backend(port: u16) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut r = login(port, "exchange", "exchange-pw").await;
        let mut last = "0-0".to_string();
        loop {
            let read: redis::RedisResult<Option<redis::streams::StreamReadReply>> =
                redis::cmd("XREAD")
                    .arg("BLOCK")
                    .arg(1000)
                    .arg("STREAMS")
                    .arg("mirror:credit:request")
                    .arg(&last)
                    .query_async(&mut r)
                    .await;
            let Ok(read) = read else { return };
            for entry in read.into_iter().flat_map(|r| r.keys).flat_map(|k| k.ids) {
                last.clone_from(&entry.id);
                let mut xadd = redis::cmd("XADD");
                xadd.arg("mirror:credit:response").arg("*");
                for name in ["custodian", "request_id", "uid", "asset", "c_change", "ci"] {
                    xadd.arg(name)
                        .arg(entry.get::<String>(name).unwrap_or_default());
                }
                xadd.arg(&[
                    ("timestamp", now_s().to_string()),
                    ("status", "accepted".into()),
                    ("reject_reason", String::new()),
                ]);
                if xadd.query_async::<String>(&mut r).await.is_err() {
                    return;
                }
            }
        }
    })
}

/// Makes `user` known to the WSP (credit granted once, by the plain
/// backend): a report of a user never granted credit is refused.
async fn known(channel: &Channel, user: &str) {
    let mut credit = CreditServiceClient::new(channel.clone());
    let id = format!("known-{user}");
    request(&mut credit, ask(user, "ETH", "+1", &id, 0)).await;
    assert_eq!(
        credit_status(&await_final(&mut credit, &id).await),
        cpb::CreditRequestStatus::Accepted
    );
}

// === reading what the WSP did ===

fn reason(e: &tonic::Status) -> String {
    e.get_error_details()
        .error_info()
        .map(|i| i.reason.clone())
        .unwrap_or_default()
}

/// The settlement events of `kind` on M, oldest first.
async fn events(m: &mut MultiplexedConnection, kind: &str) -> Vec<HashMap<String, String>> {
    xrange(m, EVENTS)
        .await
        .into_iter()
        .map(|(_, e)| e)
        .filter(|e| e.get("type").map(String::as_str) == Some(kind))
        .collect()
}

/// Polls the events of `kind` until one holds `text` in its reason (or
/// panics after 20 s); every event of `kind` then.
async fn until_event(
    m: &mut MultiplexedConnection,
    kind: &str,
    text: &str,
) -> Vec<HashMap<String, String>> {
    let mut seen = Vec::new();
    for _ in 0..400 {
        seen = events(m, kind).await;
        if seen.iter().any(|e| e["reason"].contains(text)) {
            return seen;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no {kind} event says {text:?}: {seen:?}");
}

/// The events of `kind` naming `report_id`.
async fn events_of(m: &mut MultiplexedConnection, kind: &str, report_id: &str) -> usize {
    events(m, kind)
        .await
        .iter()
        .filter(|e| e["report_id"] == report_id)
        .count()
}

/// The WSP's record of `report_id` on M, as stored.
async fn record(m: &mut MultiplexedConnection, report_id: &str) -> HashMap<String, String> {
    redis::cmd("HGETALL")
        .arg(format!("mirror:settlement:report:{report_id}"))
        .query_async(m)
        .await
        .expect("hgetall")
}

fn nets(r: &pb::SettlementReport) -> Vec<(String, String)> {
    r.net_positions
        .iter()
        .map(|n| (n.asset.clone(), n.net.clone()))
        .collect()
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

async fn reported(client: &mut Client<Channel>, id: &str) -> pb::SettlementReport {
    until(client, id, |r| status(r) == pb::SettlementStatus::Reported).await
}

/// The value of `name` in `raw`.
fn field(raw: &Raw, name: &str) -> Vec<u8> {
    raw.0
        .iter()
        .find(|(n, _)| n == name.as_bytes())
        .map(|(_, v)| v.clone())
        .expect("field")
}

// === 1: the standard flow, both sides plain ===

#[tokio::test]
async fn a_plain_exchange_reports_the_worked_example_and_reads_the_standard_confirmation() {
    let mut w = wsp_only(|_| {}).await;
    pledged(&w.channel, "alice", "USDT", "70000").await;
    let mut ex = as_exchange(&w.link).await;

    // The standard fields only: no salt, no supersedes, no version.
    let example = worked_example("rep-1", "alice", "2025-04-04");
    let raw = Raw::report(&example);
    let names: Vec<String> = raw
        .0
        .iter()
        .map(|(n, _)| String::from_utf8_lossy(n).into_owned())
        .collect();
    assert_eq!(names, ["type", "report_id", "timestamp", "data"]);
    let entry = raw.xadd(&mut ex, REPORTS).await;
    let r = reported(&mut w.client, "rep-1").await;
    assert_eq!(
        nets(&r),
        pairs(&[("BTC", "+0.5"), ("ETH", "+10"), ("USDT", "-67500")])
    );
    let mut m = admin(w.link.topology.master.port()).await;
    let stored = record(&mut m, "rep-1").await;
    assert_eq!(
        (stored["entry_id"].as_str(), stored["salt"].as_str()),
        (entry.as_str(), "")
    );

    let done = confirm(&mut w.client, "rep-1").await.expect("confirm");
    assert_eq!(status(&done), pb::SettlementStatus::Completed);
    // The exchange reads the standard confirmation on R, as its own user.
    let mut seen = Vec::new();
    for _ in 0..400 {
        seen = xrange(&mut ex, CONFIRMATIONS).await;
        if !seen.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(seen.len(), 1, "{seen:?}");
    let c = &seen[0].1;
    assert_eq!(
        (
            c["type"].as_str(),
            c["settlement_id"].as_str(),
            c["user_id"].as_str(),
            c["status"].as_str()
        ),
        ("confirmation", "rep-1", "alice", "completed"),
        "{c:?}"
    );
    let at: u64 = c["timestamp"].parse().expect("unix seconds");
    assert!(at.abs_diff(now_s()) < 3600, "{at}");
    let details: Value = serde_json::from_str(&c["details"]).expect("details JSON");
    assert_eq!(
        details["assets_transferred"],
        json!({ "BTC": "+0.5", "ETH": "+10", "USDT": "-67500" }),
        "{details}"
    );
    // Once: the same verdict again publishes nothing more.
    confirm(&mut w.client, "rep-1").await.expect("again");
    let confirmations: u64 = redis::cmd("XLEN")
        .arg(CONFIRMATIONS)
        .query_async(&mut m)
        .await
        .expect("xlen");
    assert_eq!(confirmations, 1);
    let ci = |asset: &'static str| {
        let channel = w.channel.clone();
        async move {
            CreditServiceClient::new(channel)
                .get_credit_inventory(cpb::GetCreditInventoryRequest {
                    user_id: "alice".into(),
                    asset: asset.into(),
                })
                .await
                .expect("ci")
                .into_inner()
                .credit_inventory
                .expect("ci")
                .amount
        }
    };
    assert_eq!([ci("USDT").await, ci("BTC").await], ["2500", "0.5"]);
}

// === 2: malformed entries ===

/// What the WSP makes of an entry that is not a report it records.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Seen {
    /// A REFUSED record under the entry's report_id, and its event.
    Refused,
    /// An anomaly event only (no usable report_id).
    Anomaly,
}

/// One hostile entry: the report_id it names ("" none), the entry, what
/// the WSP makes of it, and what its reason must say.
type Case = (&'static str, Raw, Seen, &'static [&'static str]);

fn case(id: &'static str, raw: Raw, seen: Seen, want: &'static [&'static str]) -> Case {
    (id, raw, seen, want)
}

#[tokio::test]
async fn malformed_reports_are_refused_with_a_bounded_reason_and_never_stop_the_reader() {
    let mut w = wsp_only(|c| c.settlement.max_report_bytes = 8192).await;
    known(&w.channel, "mal").await;
    let mut ex = as_exchange(&w.link).await;
    let base = |id: &str| {
        Raw::report(&report(
            id,
            "mal",
            "c2",
            &[("BTC", "1", "100")],
            &[("USDT", "100", "1")],
        ))
    };
    let amount =
        |id: &str, value: Value| base(id).data(move |d| d["assets"]["bought"][0]["amount"] = value);
    let btc_net = |id: &str, value: Value| base(id).data(move |d| d["net_position"]["BTC"] = value);
    let with_bad_data = {
        let b = base("m-value");
        let mut data = vec![0xff, 0xfe];
        data.extend(field(&b, "data"));
        b.set("data", data)
    };
    let duplicated = {
        let mut b = base("m-dup");
        b.0.push((b"data".to_vec(), b"{}".to_vec()));
        b
    };
    use Seen::*;
    let cases: Vec<Case> = vec![
        // A valid report with a field named by bytes ff fe.
        case(
            "m-name",
            base("m-name").set(b"\xff\xfe", "x"),
            Refused,
            &["field \\xff\\xfe is not UTF-8 text"],
        ),
        case(
            "m-value",
            with_bad_data,
            Refused,
            &["field data is not UTF-8 text"],
        ),
        case(
            "",
            base("m-id").set("report_id", b"\xff\xfe"),
            Anomaly,
            &["report_id", "\\xff\\xfe"],
        ),
        case(
            "",
            base("m-none").without("report_id"),
            Anomaly,
            &["report_id"],
        ),
        case(
            "m-no-ts",
            base("m-no-ts").without("timestamp"),
            Refused,
            &["timestamp must be unix seconds"],
        ),
        case(
            "m-no-data",
            base("m-no-data").without("data"),
            Refused,
            &["data is missing"],
        ),
        case(
            "m-no-user",
            base("m-no-user").data(|d| {
                d.as_object_mut().expect("object").remove("user_id");
            }),
            Refused,
            &["data.user_id: is required"],
        ),
        case(
            "m-json",
            base("m-json").set("data", "{not json"),
            Refused,
            &["data is not JSON"],
        ),
        case(
            "m-array",
            base("m-array").set("data", "[1,2]"),
            Refused,
            &["must be a JSON object"],
        ),
        case(
            "m-exp",
            amount("m-exp", json!("1e2")),
            Refused,
            &["data.assets.bought[0].amount", "not a plain decimal"],
        ),
        case(
            "m-nan",
            amount("m-nan", json!("NaN")),
            Refused,
            &["not a plain decimal"],
        ),
        case(
            "m-frac",
            amount("m-frac", json!("1.0000000000000000001")),
            Refused,
            &["more than 18 fraction digits"],
        ),
        case(
            "m-num",
            amount("m-num", json!(1)),
            Refused,
            &["data.assets.bought[0].amount: must be a string"],
        ),
        case(
            "m-num-net",
            btc_net("m-num-net", json!(1)),
            Refused,
            &["data.net_position.BTC: must be a decimal string"],
        ),
        case(
            "m-sign",
            btc_net("m-sign", json!("1")),
            Refused,
            &["must carry its sign"],
        ),
        case(
            "m-net",
            btc_net("m-net", json!("+2")),
            Refused,
            &["the net position of BTC is +2 but bought minus sold is +1"],
        ),
        case(
            "m-eod",
            base("m-eod").data(|d| d["eod_time"] = json!("yesterday")),
            Refused,
            &["data.eod_time"],
        ),
        case(
            "m-user",
            Raw::report(&report(
                "m-user",
                "stranger",
                "c2",
                &[("BTC", "1", "1")],
                &[],
            )),
            Refused,
            &["unknown user stranger"],
        ),
        case(
            "m-huge",
            base("m-huge").data(|d| d["pad"] = json!("x".repeat(20_000))),
            Refused,
            &["more than the 8192 a report may have"],
        ),
        case(
            "m-type",
            base("m-type").set("type", "credit"),
            Refused,
            &["type must be \"settlement\""],
        ),
        case(
            "m-version",
            base("m-version").set("v", "2"),
            Refused,
            &["not a version"],
        ),
        // A valid report and a second `data`: which one is it?
        case(
            "m-dup",
            duplicated,
            Refused,
            &["field data appears more than once"],
        ),
    ];
    for (_, raw, _, _) in &cases {
        raw.xadd(&mut ex, REPORTS).await;
    }
    // Then a valid report: the reader went past every one of them.
    let last = base("m-ok").xadd(&mut ex, REPORTS).await;
    reported(&mut w.client, "m-ok").await;

    for (id, _, seen, want) in cases.iter().filter(|c| c.2 == Refused) {
        let r = get(&mut w.client, id).await.expect(id);
        assert_eq!(status(&r), pb::SettlementStatus::Refused, "{id}: {r:?}");
        for text in *want {
            assert!(r.reason.contains(text), "{id} ({seen:?}): {}", r.reason);
        }
        assert!(r.reason.len() <= MAX_REASON, "{id}: {}", r.reason.len());
    }
    let mut m = admin(w.link.topology.master.port()).await;
    let anomalies = events(&mut m, "anomaly").await;
    let expected: Vec<&[&str]> = cases
        .iter()
        .filter(|c| c.2 == Anomaly)
        .map(|c| c.3)
        .collect();
    assert_eq!(anomalies.len(), expected.len(), "{anomalies:?}");
    for (event, want) in anomalies.iter().zip(expected) {
        for text in want {
            assert!(event["reason"].contains(text), "{event:?}");
        }
    }
    let refused = events(&mut m, "refused").await;
    assert_eq!(
        refused.len(),
        cases.iter().filter(|c| c.2 == Refused).count(),
        "one event per refusal"
    );
    assert!(
        refused
            .iter()
            .chain(&anomalies)
            .all(|e| e["reason"].len() <= MAX_REASON),
        "bounded copies"
    );
    let cursor: String = redis::cmd("GET")
        .arg(CURSOR)
        .query_async(&mut m)
        .await
        .expect("cursor");
    assert_eq!(cursor, last);
    assert_eq!(events(&mut m, "reported").await.len(), 1, "only m-ok");
    settlement_health(&w.channel, ServingStatus::Serving).await;
}

// === 3: a report_id reused ===

#[tokio::test]
async fn a_reused_report_id_never_replaces_the_first_and_the_same_report_is_recorded_once() {
    // Our exchange role too, to ask it about the raw exchange's report.
    let mut w = wsp_only(|c| c.roles = vec![Role::Wsp, Role::Exchange]).await;
    known(&w.channel, "reuse").await;
    let mut ex = as_exchange(&w.link).await;
    let first = report(
        "r-1",
        "reuse",
        "c3",
        &[("BTC", "1", "100")],
        &[("USDT", "100", "1")],
    );
    let other = report(
        "r-1",
        "reuse",
        "c3",
        &[("BTC", "2", "100")],
        &[("USDT", "200", "1")],
    );
    let entry = Raw::report(&first).xadd(&mut ex, REPORTS).await;
    reported(&mut w.client, "r-1").await;

    Raw::report(&other).xadd(&mut ex, REPORTS).await;
    // The same report again, as sent, and written another way (amounts
    // with trailing zeros, a later timestamp): one report.
    Raw::report(&first).xadd(&mut ex, REPORTS).await;
    Raw::report(&first)
        .data(|d| {
            d["assets"]["bought"][0]["amount"] = json!("1.000");
            d["net_position"]["USDT"] = json!("-100.00");
        })
        .set("timestamp", (now_s() + 60).to_string())
        .xadd(&mut ex, REPORTS)
        .await;
    Raw::report(&report("r-2", "reuse", "c3", &[("BTC", "1", "1")], &[]))
        .xadd(&mut ex, REPORTS)
        .await;
    reported(&mut w.client, "r-2").await;

    let mut m = admin(w.link.topology.master.port()).await;
    let anomalies = events(&mut m, "anomaly").await;
    assert_eq!(anomalies.len(), 1, "{anomalies:?}");
    assert_eq!(anomalies[0]["report_id"], "r-1");
    assert!(
        anomalies[0]["reason"].contains("was sent again with another payload; the first is kept"),
        "{anomalies:?}"
    );
    assert_eq!(
        events_of(&mut m, "reported", "r-1").await,
        1,
        "recorded once"
    );
    assert_eq!(record(&mut m, "r-1").await["entry_id"], entry);
    let kept = get(&mut w.client, "r-1").await.expect("r-1");
    assert_eq!(status(&kept), pb::SettlementStatus::Reported);
    assert_eq!(nets(&kept), pairs(&[("BTC", "+1"), ("USDT", "-100")]));
    let c = cycle_until(&mut w.client, "c3", pb::CycleStatus::Open).await;
    assert_eq!((c.reports, c.undecided), (2, 2));

    // Our exchange API, asked about the same id, says the same.
    let e = submit(&mut w.client, other).await.expect_err("reused");
    assert_eq!(
        (e.code(), reason(&e).as_str()),
        (Code::AlreadyExists, "REPORT_ID_REUSED"),
        "{e:?}"
    );
    let (r, delivery) = submit(&mut w.client, first).await.expect("the same");
    assert_eq!(
        (status(&r), delivery),
        (pb::SettlementStatus::Reported, pb::Delivery::Recorded)
    );
    assert_eq!(events_of(&mut m, "reported", "r-1").await, 1);
}

// === 4: supersedes abuse ===

#[tokio::test]
async fn supersedes_only_takes_the_same_users_disputed_report() {
    let mut w = wsp_only(|_| {}).await;
    known(&w.channel, "sup").await;
    known(&w.channel, "other").await;
    let mut ex = as_exchange(&w.link).await;
    let of = |id: &str, user: &str, supersedes: &str| {
        let raw = Raw::report(&report(
            id,
            user,
            "c4",
            &[("BTC", "1", "50")],
            &[("USDT", "50", "1")],
        ));
        if supersedes.is_empty() {
            raw
        } else {
            raw.set("supersedes", supersedes)
        }
    };
    of("s-1", "sup", "").xadd(&mut ex, REPORTS).await;
    of("o-1", "other", "").xadd(&mut ex, REPORTS).await;
    reported(&mut w.client, "s-1").await;
    reported(&mut w.client, "o-1").await;
    w.client
        .dispute_settlement(pb::DisputeSettlementRequest {
            report_id: "o-1".into(),
            assets: Vec::new(),
            reason: "price off".into(),
            lines: vec![pb::DisputedLine {
                asset: "USDT".into(),
                expected_net: "-40".into(),
                reason: "we saw 40".into(),
            }],
        })
        .await
        .expect("dispute");

    let refused: [(&str, &str, &str); 5] = [
        (
            "s-2",
            "s-1",
            "supersedes names report s-1, which is reported, not disputed",
        ),
        ("s-3", "o-1", "supersedes names report o-1 of another user"),
        (
            "s-4",
            "ghost",
            "supersedes names report ghost, which is not recorded here",
        ),
        ("s-5", "s-5", "a report cannot supersede itself"),
        ("s-6", "a b", "supersedes:"),
    ];
    for (id, target, _) in refused {
        of(id, "sup", target).xadd(&mut ex, REPORTS).await;
    }
    of("s-ok", "sup", "").xadd(&mut ex, REPORTS).await;
    reported(&mut w.client, "s-ok").await;
    for (id, _, why) in refused {
        let r = get(&mut w.client, id).await.expect(id);
        assert_eq!(status(&r), pb::SettlementStatus::Refused, "{id}");
        assert!(r.reason.contains(why), "{id}: {}", r.reason);
    }
    // The targets are unchanged.
    let s1 = get(&mut w.client, "s-1").await.expect("s-1");
    assert_eq!(
        (status(&s1), s1.superseded_by.as_str()),
        (pb::SettlementStatus::Reported, "")
    );
    let o1 = get(&mut w.client, "o-1").await.expect("o-1");
    assert_eq!(
        (status(&o1), o1.superseded_by.as_str()),
        (pb::SettlementStatus::Disputed, "")
    );

    // The one correction that is allowed: its own user's disputed report,
    // once.
    of("o-2", "other", "o-1").xadd(&mut ex, REPORTS).await;
    reported(&mut w.client, "o-2").await;
    of("o-3", "other", "o-1").xadd(&mut ex, REPORTS).await;
    let o3 = until(&mut w.client, "o-3", |r| {
        status(r) == pb::SettlementStatus::Refused
    })
    .await;
    assert!(
        o3.reason
            .contains("supersedes names report o-1, which is superseded, not disputed"),
        "{}",
        o3.reason
    );
    let o1 = get(&mut w.client, "o-1").await.expect("o-1");
    assert_eq!(
        (status(&o1), o1.superseded_by.as_str()),
        (pb::SettlementStatus::Superseded, "o-2")
    );
    let mut m = admin(w.link.topology.master.port()).await;
    assert_eq!(events(&mut m, "superseded").await.len(), 1);
}

// === 5: cycle summaries ===

/// The standard summary entry of `head`.
fn summary(cycle_id: &str, head: &cycle::Head) -> Raw {
    Raw::default()
        .set("type", "cycle")
        .set("cycle_id", cycle_id)
        .set("size", head.size.to_string())
        .set("root", cycle::b64(&head.root))
        .set("checkpoint", &head.checkpoint)
        .set("timestamp", now_s().to_string())
}

/// The sorted leaf hashes of raw report entries, as the WSP records them
/// (no salt sent: the salt is "").
fn leaves(raws: &[&Raw]) -> Vec<Hash> {
    let reports: Vec<_> = raws
        .iter()
        .map(|raw| {
            let entry = Entry {
                id: StreamId::default(),
                fields: Fields::new(raw.0.clone()),
            };
            Incoming::parse(&entry, usize::MAX).expect("valid").report
        })
        .collect();
    cycle::leaf_hashes(reports.iter().map(|r| (r, "")))
}

#[tokio::test]
async fn garbage_summaries_are_anomalies_and_a_forged_one_blocks_its_cycle() {
    let mut w = wsp_only(|c| c.settlement.max_report_bytes = 8192).await;
    known(&w.channel, "cyc").await;
    let mut ex = as_exchange(&w.link).await;
    let key = ServerKey::read(&w.dir.path().join("exchange.key")).expect("exchange key");
    let stranger = ServerKey::generate(key.name()).expect("another key");
    // One report per cycle, bought only (a completion needs no custody).
    let mut raws = HashMap::new();
    for c in ["c5a", "c5b", "c5c", "c5d", "c5ok"] {
        let id = format!("{c}-1");
        let raw = Raw::report(&report(&id, "cyc", c, &[("BTC", "1", "100")], &[]));
        raw.xadd(&mut ex, REPORTS).await;
        raws.insert(c, raw);
    }
    for c in raws.keys() {
        reported(&mut w.client, &format!("{c}-1")).await;
    }
    let real = |c: &str| cycle::sign(&key, c, &leaves(&[&raws[c]])).expect("sign");

    // Garbage naming c5a: each an anomaly, none closes it.
    let good = summary("c5a", &real("c5a"));
    let garbage: Vec<(Raw, &str)> = vec![
        (good.clone().set("type", "credit"), "type must be \"cycle\""),
        (good.clone().without("type"), "type must be \"cycle\""),
        (good.clone().set("type", b"\xff\xfe"), "\\xff\\xfe"),
        (good.clone().set("cycle_id", "a b"), "is not an id"),
        (good.clone().set("size", "two"), "is not a decimal"),
        (
            good.clone().set("root", "not base64!"),
            "is not 32 bytes of base64",
        ),
        (
            good.clone().set("root", &cycle::b64(&[7; 32])[..40]),
            "is not 32 bytes of base64",
        ),
        (
            good.clone().set("checkpoint", ""),
            "checkpoint must be a signed note",
        ),
        (
            good.clone().set("checkpoint", "x".repeat(20_000)),
            "more than 8192",
        ),
    ];
    for (raw, _) in &garbage {
        raw.xadd(&mut ex, SUMMARIES).await;
    }
    // Forged, each signed: a tree of 2 over c5a's 1 report; c5b's root
    // over another leaf; c5c signed by another key; c5d not a note.
    let fake: Hash = [7; 32];
    summary(
        "c5a",
        &cycle::sign(&key, "c5a", &[fake, [8; 32]]).expect("sign"),
    )
    .xadd(&mut ex, SUMMARIES)
    .await;
    summary("c5b", &cycle::sign(&key, "c5b", &[fake]).expect("sign"))
        .xadd(&mut ex, SUMMARIES)
        .await;
    summary(
        "c5c",
        &cycle::sign(&stranger, "c5c", &leaves(&[&raws["c5c"]])).expect("sign"),
    )
    .xadd(&mut ex, SUMMARIES)
    .await;
    summary("c5d", &real("c5d"))
        .set("checkpoint", "not a signed note\n")
        .xadd(&mut ex, SUMMARIES)
        .await;
    // And the true summary of c5ok, which verifies.
    summary("c5ok", &real("c5ok"))
        .xadd(&mut ex, SUMMARIES)
        .await;

    let verified = cycle_until(&mut w.client, "c5ok", pb::CycleStatus::Verified).await;
    assert_eq!(verified.size, 1);
    for (c, why) in [
        (
            "c5a",
            "the exchange's tree has 2 leaves; the WSP recorded 1 reports",
        ),
        (
            "c5b",
            "the exchange's root is not the root of the reports the WSP recorded",
        ),
        ("c5c", "does not verify with the exchange's key"),
        ("c5d", "does not verify with the exchange's key"),
    ] {
        let cycle = cycle_until(&mut w.client, c, pb::CycleStatus::Mismatch).await;
        assert!(cycle.reason.contains(why), "{c}: {}", cycle.reason);
        let id = format!("{c}-1");
        let e = confirm(&mut w.client, &id).await.expect_err("mismatch");
        assert_eq!(
            (e.code(), reason(&e).as_str()),
            (Code::FailedPrecondition, "CYCLE_MISMATCH"),
            "{c}: {e:?}"
        );
        let r = get(&mut w.client, &id).await.expect("report");
        assert_eq!(status(&r), pb::SettlementStatus::Reported, "{c}");
    }
    let mut m = admin(w.link.topology.master.port()).await;
    let mismatches = events(&mut m, "cycle_mismatch").await;
    let flagged: Vec<&str> = mismatches.iter().map(|e| e["cycle_id"].as_str()).collect();
    assert_eq!(flagged, ["c5a", "c5b", "c5c", "c5d"]);
    let anomalies = events(&mut m, "anomaly").await;
    assert_eq!(anomalies.len(), garbage.len(), "{anomalies:?}");
    for (event, (_, why)) in anomalies.iter().zip(&garbage) {
        assert!(event["reason"].contains(why), "{why}: {event:?}");
        assert!(event["reason"].len() <= MAX_REASON, "bounded");
    }
    // A verified cycle's report confirms; nothing of a mismatched one was
    // applied.
    let done = confirm(&mut w.client, "c5ok-1").await.expect("verified");
    assert_eq!(status(&done), pb::SettlementStatus::Completed);
    let btc: Option<String> = redis::cmd("HGET")
        .arg("CI:cyc:BTC")
        .arg("amount")
        .query_async(&mut m)
        .await
        .expect("ci");
    assert_eq!(btc.as_deref(), Some("1"), "only c5ok-1 applied");

    // The true summary of c5a, late, does not reopen or replace the close;
    // and the closed cycle takes no report.
    good.xadd(&mut ex, SUMMARIES).await;
    until_event(
        &mut m,
        "anomaly",
        "was closed again with another root; the first close is kept",
    )
    .await;
    Raw::report(&report("c5a-2", "cyc", "c5a", &[("BTC", "1", "100")], &[]))
        .xadd(&mut ex, REPORTS)
        .await;
    let late = until(&mut w.client, "c5a-2", |r| {
        status(r) == pb::SettlementStatus::Refused
    })
    .await;
    assert!(
        late.reason.contains("cycle c5a is closed"),
        "{}",
        late.reason
    );
    let c5a = cycle_until(&mut w.client, "c5a", pb::CycleStatus::Mismatch).await;
    assert_eq!((c5a.reports, c5a.size), (1, 2));
}

// === 6: a trim past the WSP's cursor ===

#[tokio::test]
async fn reports_trimmed_before_the_wsp_read_them_are_a_loud_gap_and_republished() {
    let mut w = wsp_only(|_| {}).await;
    known(&w.channel, "trim").await;
    let mut ex = as_exchange(&w.link).await;
    let of = |id: &str| Raw::report(&report(id, "trim", "c6", &[("BTC", "1", "1")], &[]));
    let seen = of("t-1").xadd(&mut ex, REPORTS).await;
    reported(&mut w.client, "t-1").await;

    // The WSP is down; the exchange writes two reports and trims all but
    // the last, unread.
    w.gateway.signal_stop();
    let _ = w.gateway.task.await;
    of("t-2").xadd(&mut ex, REPORTS).await;
    let kept = of("t-3").xadd(&mut ex, REPORTS).await;
    let _: u64 = redis::cmd("XTRIM")
        .arg(&[REPORTS, "MAXLEN", "1"])
        .query_async(&mut ex)
        .await
        .expect("xtrim as the exchange");

    let (_gateway, channel) = start(w.config.clone()).await;
    let mut client = Client::new(channel.clone());
    let mut m = admin(w.link.topology.master.port()).await;
    let gap = until_event(&mut m, "anomaly", "were trimmed").await;
    let why = &gap[0]["reason"];
    let resume: StreamId = kept.parse().expect("id");
    assert!(
        why.contains(&format!(
            "reports after {seen} up to {}",
            resume.prev().expect("prev")
        )) && why.contains("must publish them again"),
        "{why}"
    );
    // What is still on R is read; what was trimmed is not invented.
    reported(&mut client, "t-3").await;
    let e = get(&mut client, "t-2").await.expect_err("never read");
    assert_eq!(e.code(), Code::NotFound);
    // The exchange publishes it again (same report_id): recorded, once.
    of("t-2").xadd(&mut ex, REPORTS).await;
    reported(&mut client, "t-2").await;
    for id in ["t-1", "t-2", "t-3"] {
        assert_eq!(events_of(&mut m, "reported", id).await, 1, "{id}");
    }
    assert_eq!(events(&mut m, "anomaly").await.len(), 1, "one gap");
    settlement_health(&channel, ServingStatus::Serving).await;
}

// === 7: R resynced, lower ids ===

#[tokio::test]
async fn reports_written_with_lower_ids_after_a_resync_of_r_are_recorded_and_nothing_twice() {
    let mut w = wsp_only(|_| {}).await;
    known(&w.channel, "rs").await;
    w.backend.abort();
    let mut ex = as_exchange(&w.link).await;
    let of = |id: &str| Raw::report(&report(id, "rs", "c7", &[("BTC", "1", "1")], &[]));
    let first = of("x-1").xadd(&mut ex, REPORTS).await;
    reported(&mut w.client, "x-1").await;

    // R restarts empty and resyncs from M: the report stream (R's only)
    // is gone. The exchange writes anew, with ids far below the cursor,
    // and publishes x-1 again, unsure it was delivered.
    w.link.topology.replica.restart().await.expect("restart R");
    w.link.topology.wait_for_link().await.expect("resynced");
    let mut ex = as_exchange(&w.link).await;
    of("x-2").xadd_at(&mut ex, REPORTS, "5-1").await;
    of("x-1").xadd_at(&mut ex, REPORTS, "6-1").await;
    of("x-3").xadd(&mut ex, REPORTS).await;
    reported(&mut w.client, "x-2").await;
    reported(&mut w.client, "x-3").await;

    let mut m = admin(w.link.topology.master.port()).await;
    for id in ["x-1", "x-2", "x-3"] {
        assert_eq!(events_of(&mut m, "reported", id).await, 1, "{id}");
    }
    assert_eq!(
        record(&mut m, "x-1").await["entry_id"],
        first,
        "the first record kept"
    );
    let c = cycle_until(&mut w.client, "c7", pb::CycleStatus::Open).await;
    assert_eq!(c.reports, 3);
    assert!(events(&mut m, "anomaly").await.is_empty());
}
