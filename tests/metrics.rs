//! The Prometheus endpoint on a real link with the shipped ACLs: counters
//! move with a credit flow, the link gauges follow a killed replica, the
//! output passes `promtool check metrics`, and the shipped alert rules and
//! Grafana dashboard name only metrics the gateway exports.

mod common;

use std::{
    collections::BTreeSet,
    io::Write,
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Duration,
};

use common::{Gateway, Link, credit};
use openoes::proto::credit::v1::{self as pb, credit_service_client::CreditServiceClient};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    time::Instant,
};

/// How long a gauge may take to follow (many sampler ticks of 200 ms on a
/// loaded 2-core machine).
const FOLLOW: Duration = Duration::from_secs(20);

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// promtool, or a failure that says how to get it.
fn promtool() -> &'static str {
    let found = Command::new("promtool")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        found,
        "promtool is not installed: `apt-get install prometheus` (scripts/test's ensure_promtool does)"
    );
    "promtool"
}

/// GET `path` on the metrics listener with `accept`; (status line, body).
async fn get(addr: SocketAddr, path: &str, accept: &str) -> (String, String) {
    // The gateway opens the listener as it starts: retry until it has.
    let deadline = Instant::now() + FOLLOW;
    let mut stream = loop {
        match tokio::net::TcpStream::connect(addr).await {
            Ok(stream) => break stream,
            Err(e) if Instant::now() > deadline => panic!("connect to metrics on {addr}: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    };
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: {accept}\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.expect("send");
    let mut reply = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut reply))
        .await
        .expect("metrics answer in time")
        .expect("read");
    let reply = String::from_utf8(reply).expect("utf-8");
    let (head, body) = reply.split_once("\r\n\r\n").expect("http reply");
    (
        head.lines().next().unwrap_or_default().to_string(),
        body.to_string(),
    )
}

async fn scrape(addr: SocketAddr) -> String {
    let (status, body) = get(addr, "/metrics", "text/plain").await;
    assert!(status.contains("200"), "{status}");
    body
}

/// The value of the sample `name` whose labels include every `labels` pair.
fn value(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|line| {
            let (series, v) = line.rsplit_once(' ')?;
            let (n, rest) = series.split_once('{').unwrap_or((series, ""));
            let all = labels
                .iter()
                .all(|(k, val)| rest.contains(&format!("{k}=\"{val}\"")));
            (n == name && all).then(|| v.parse().ok())?
        })
}

/// Scrapes until `check` holds for the scrape, or panics after `within`.
async fn until(
    addr: SocketAddr,
    what: &str,
    within: Duration,
    check: impl Fn(&str) -> bool,
) -> String {
    let deadline = Instant::now() + within;
    loop {
        let text = scrape(addr).await;
        if check(&text) {
            return text;
        }
        if Instant::now() > deadline {
            panic!("{what} within {within:?}; last scrape:\n{text}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn promtool_check_metrics(text: &str) {
    let mut child = Command::new(promtool())
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run promtool");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("feed promtool");
    let out = child.wait_with_output().expect("promtool");
    assert!(
        out.status.success(),
        "promtool check metrics:\n{}{}\n--- input ---\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A config for the secured link with metrics on a free port, sampled fast.
fn metered(link: &Link) -> (openoes::config::Config, SocketAddr) {
    let mut config = link.secured_config();
    let addr = common::free_addr();
    config.metrics.listen = Some(addr);
    config.metrics.interval = Duration::from_millis(200);
    config.metrics.probe_timeout = Duration::from_millis(500);
    (config, addr)
}

#[tokio::test]
async fn counters_move_with_a_credit_flow_and_the_link_gauges_follow_the_replica() {
    let mut link = Link::start_secured().await;
    let (config, metrics) = metered(&link);
    let (_gateway, channel) = credit::serving(config).await;

    // Before any call: the link is up, the heartbeat goes round, nothing is
    // undecided.
    let before = until(metrics, "link up and a heartbeat seen on R", FOLLOW, |t| {
        value(t, "openoes_link_master_link_up", &[]) == Some(1.0)
            && value(t, "openoes_link_heartbeat_age_seconds", &[]).is_some_and(f64::is_finite)
            && value(t, "openoes_link_replication_lag_bytes", &[]).is_some_and(f64::is_finite)
    })
    .await;
    let ok = [
        ("service", credit::CREDIT),
        ("method", "RequestCredit"),
        ("code", "OK"),
    ];
    assert_eq!(value(&before, "openoes_grpc_requests_total", &ok), None);
    promtool_check_metrics(&before);

    // A request nobody answers yet: undecided, and the group lags by it.
    let mut client = CreditServiceClient::new(channel.clone());
    let asked = credit::request(&mut client, credit::ask("alice", "BTC", "+1", "m-1", 0)).await;
    assert_eq!(credit::status(&asked), pb::CreditRequestStatus::Pending);
    let group = [
        ("stream", "mirror:credit:request"),
        ("group", "credit-request-processor"),
    ];
    until(
        metrics,
        "one undecided request, lagging in the group",
        FOLLOW,
        |t| {
            value(t, "openoes_requests_undecided", &[("flow", "credit")]) == Some(1.0)
                && value(t, "openoes_consumer_group_lag", &group) == Some(1.0)
        },
    )
    .await;

    // The exchange answers: the group catches up, nothing is undecided, the
    // WSP's cursor is at the newest response, and the counters moved.
    let backend = credit::backend(channel.clone(), "metrics-backend", |_| None);
    let done = credit::await_final(&mut client, "m-1").await;
    assert_eq!(credit::status(&done), pb::CreditRequestStatus::Accepted);
    let after = until(metrics, "the flow reflected in every gauge", FOLLOW, |t| {
        value(t, "openoes_requests_undecided", &[("flow", "credit")]) == Some(0.0)
            && value(t, "openoes_consumer_group_lag", &group) == Some(0.0)
            && value(t, "openoes_consumer_group_pending", &group) == Some(0.0)
            && value(
                t,
                "openoes_response_cursor_lag_seconds",
                &[("stream", "mirror:credit:response")],
            ) == Some(0.0)
    })
    .await;
    assert_eq!(value(&after, "openoes_grpc_requests_total", &ok), Some(1.0));
    let answered = [("method", "RespondToCreditRequest"), ("code", "OK")];
    assert!(value(&after, "openoes_grpc_requests_total", &answered).is_some_and(|n| n >= 1.0));
    let latency = [("method", "RequestCredit")];
    assert_eq!(
        value(
            &after,
            "openoes_grpc_request_duration_seconds_count",
            &latency
        ),
        Some(1.0)
    );
    // Settlement's cursors over the exchange's streams are watched too.
    for stream in [
        "mirror:settlement:individual:response",
        "mirror:settlement:batch:response",
    ] {
        assert!(
            value(
                &after,
                "openoes_response_cursor_lag_seconds",
                &[("stream", stream)]
            )
            .is_some(),
            "{stream}"
        );
    }
    // Redis commands are timed per endpoint: the flow ran scripts on M and
    // XADDs on R.
    for endpoint in ["master", "replica"] {
        let commands = value(
            &after,
            "openoes_redis_command_duration_seconds_count",
            &[("endpoint", endpoint)],
        );
        assert!(
            commands.is_some_and(|n| n >= 1.0),
            "{endpoint}: {commands:?}"
        );
    }
    // The backend's stream is open, and counted as a consumer-group stream.
    assert_eq!(
        value(
            &after,
            "openoes_stream_subscribers",
            &[("kind", "consumer-group")]
        ),
        Some(1.0)
    );
    assert_eq!(
        value(
            &after,
            "openoes_grpc_in_flight",
            &[("method", "SubscribeCreditRequests")]
        ),
        Some(1.0)
    );
    assert_eq!(
        value(&after, "openoes_health_serving", &[("service", "server")]),
        Some(1.0)
    );
    // A path that is none of ours is counted under `other`, never by name.
    let junk = "/x.Attacker/Random123";
    let mut raw = tonic::client::Grpc::new(channel.clone());
    raw.ready().await.expect("ready");
    let _ = raw
        .unary::<(), (), _>(
            tonic::Request::new(()),
            http::uri::PathAndQuery::from_static("/x.Attacker/Random123"),
            tonic_prost::ProstCodec::default(),
        )
        .await;
    let text = until(metrics, "the unknown call counted as other", FOLLOW, |t| {
        value(t, "openoes_grpc_requests_total", &[("method", "other")]).is_some()
    })
    .await;
    assert!(
        !text.contains("Random123"),
        "{junk} must not become a label"
    );
    promtool_check_metrics(&text);
    backend.abort();

    // R dies: the link and R's endpoint go down in the gauges, and the
    // heartbeat seen on R only ages.
    link.topology.replica.kill().await;
    let down = until(metrics, "link and R down after R was killed", FOLLOW, |t| {
        value(t, "openoes_link_master_link_up", &[]) == Some(0.0)
            && value(t, "openoes_redis_up", &[("endpoint", "replica")]) == Some(0.0)
            && value(t, "openoes_link_replication_lag_bytes", &[]).is_some_and(f64::is_nan)
    })
    .await;
    let age = value(&down, "openoes_link_heartbeat_age_seconds", &[]).expect("age");
    until(
        metrics,
        "the heartbeat age growing while R is down",
        FOLLOW,
        |t| value(t, "openoes_link_heartbeat_age_seconds", &[]).is_some_and(|a| a > age + 0.5),
    )
    .await;
    assert!(
        value(
            &down,
            "openoes_metrics_sample_errors_total",
            &[("probe", "replica_info")]
        )
        .is_some_and(|n| n >= 1.0),
        "a failed probe is counted"
    );
    promtool_check_metrics(&down);

    // R comes back (empty, from its config): it resyncs and the gauges follow.
    link.topology.replica.restart().await.expect("restart R");
    until(metrics, "link up again after R restarted", FOLLOW, |t| {
        value(t, "openoes_link_master_link_up", &[]) == Some(1.0)
            && value(t, "openoes_redis_up", &[("endpoint", "replica")]) == Some(1.0)
            && value(t, "openoes_link_heartbeat_age_seconds", &[]).is_some_and(|a| a < age + 5.0)
    })
    .await;
}

#[tokio::test]
async fn the_endpoint_serves_both_formats_and_nothing_else() {
    let link = Link::start_secured().await;
    let (config, metrics) = metered(&link);
    let _gateway = Gateway::start(config).await;
    let (status, body) = get(metrics, "/metrics", "application/openmetrics-text").await;
    assert!(status.contains("200"), "{status}");
    assert!(
        body.ends_with("# EOF\n"),
        "OpenMetrics ends with # EOF:\n{body}"
    );
    let (status, _) = get(metrics, "/", "*/*").await;
    assert!(status.contains("404"), "{status}");
    let (status, body) = get(metrics, "/metrics", "*/*").await;
    assert!(
        status.contains("200") && !body.contains("# EOF"),
        "{status}"
    );
}

/// Every metric name an expression mentions.
fn names_in(expr: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = expr;
    while let Some(at) = rest.find("openoes_") {
        let name: String = rest[at..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        rest = &rest[at + name.len()..];
        names.push(name);
    }
    names
}

/// The sample names the gateway exports (histograms with their series).
async fn exported() -> BTreeSet<String> {
    let link = Link::start().await;
    let mut config = link.config();
    let addr = common::free_addr();
    config.metrics.listen = Some(addr);
    let gateway = Gateway::start(config).await;
    // One call, so the per-call families have a series to show.
    common::wait_for_health(
        &gateway.channel().await,
        "",
        tonic_health::pb::health_check_response::ServingStatus::Serving,
        FOLLOW,
    )
    .await;
    // Per-call families show after a call; the probes' after the sampler's
    // first round (late on a loaded machine): wait for both.
    let text = until(
        addr,
        "per-call and sampled families exported",
        FOLLOW,
        |t| {
            t.contains("# TYPE openoes_grpc_request_duration_seconds histogram")
                && t.contains("# TYPE openoes_dead_letter_entries gauge")
        },
    )
    .await;
    let mut names = BTreeSet::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split(' ');
            let (Some(name), Some(kind)) = (parts.next(), parts.next()) else {
                continue;
            };
            names.insert(name.to_string());
            if kind == "histogram" {
                for suffix in ["_bucket", "_sum", "_count"] {
                    names.insert(format!("{name}{suffix}"));
                }
            }
        }
    }
    assert!(names.len() > 15, "{names:?}");
    names
}

#[tokio::test]
async fn the_alert_rules_pass_promtool_and_name_exported_metrics() {
    let rules = root().join("deploy/prometheus/alerts.yml");
    let out = Command::new(promtool())
        .args(["check", "rules"])
        .arg(&rules)
        .output()
        .expect("promtool");
    assert!(
        out.status.success(),
        "promtool check rules:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let exported = exported().await;
    let text = std::fs::read_to_string(&rules).expect("rules");
    let exprs: Vec<&str> = text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("expr:"))
        .collect();
    for wanted in [
        "openoes_link_master_link_up",
        "openoes_link_replication_lag_bytes",
        "openoes_dead_letter_entries",
        "openoes_consumer_group_lag",
        "openoes_health_serving",
    ] {
        assert!(text.contains(wanted), "the rules cover {wanted}");
    }
    check_names(&exprs, &exported, &rules);
}

#[tokio::test]
async fn the_dashboard_is_json_and_names_exported_metrics() {
    let path = root().join("deploy/grafana/openoes-dashboard.json");
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("read")).expect("valid JSON");
    let panels = dashboard["panels"].as_array().expect("panels");
    assert!(panels.len() >= 10, "{}", panels.len());
    let exprs: Vec<&str> = panels
        .iter()
        .flat_map(|p| p["targets"].as_array().into_iter().flatten())
        .map(|t| t["expr"].as_str().expect("every target has an expr"))
        .collect();
    assert!(exprs.len() >= panels.len());
    check_names(&exprs, &exported().await, &path);
}

fn check_names(exprs: &[&str], exported: &BTreeSet<String>, file: &Path) {
    assert!(!exprs.is_empty(), "{}", file.display());
    for expr in exprs {
        let names = names_in(expr);
        assert!(
            !names.is_empty(),
            "{}: {expr} names no openoes metric",
            file.display()
        );
        for name in names {
            assert!(
                exported.contains(&name),
                "{}: {expr} names {name}, which the gateway does not export ({exported:?})",
                file.display()
            );
        }
    }
}
