//! Who may call what, over the wire: every RPC against every role as the
//! policy table says, refused credentials with their reasons, health open,
//! reflection as configured, the credit flow with each party holding its
//! own token, the audit trail, and the secure defaults of `openoes serve`.

mod common;

use std::{
    collections::BTreeMap,
    io::Write,
    process::{Command, Stdio},
    sync::{Arc, Mutex, OnceLock},
    time::Duration,
};

use common::{
    Gateway, Link,
    auth::{Bearer, with_tokens},
    credit::{ask, credit_health},
    wait_for_health,
};
use futures_util::StreamExt;
use openoes::{
    config::{CallerRole, ReflectionAccess},
    proto::credit::v1::{self as pb, credit_service_client::CreditServiceClient},
    server::auth::{policy, token},
};
use prost::Message;
use tonic::{Code, Status, metadata::MetadataValue, transport::Channel};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_types::StatusExt;

const SOON: Duration = Duration::from_secs(10);
const OPENOES: &str = env!("CARGO_BIN_EXE_openoes");

/// Every method the server describes (reflection's descriptor sets), and
/// whether it streams responses.
fn described_methods() -> Vec<(String, bool)> {
    let mut methods = Vec::new();
    for set in [
        openoes::proto::FILE_DESCRIPTOR_SET,
        tonic_health::pb::FILE_DESCRIPTOR_SET,
    ] {
        let set = prost_types::FileDescriptorSet::decode(set).expect("descriptors");
        for file in set.file {
            for service in &file.service {
                for method in &service.method {
                    let rpc = format!("{}.{}/{}", file.package(), service.name(), method.name());
                    methods.push((rpc, method.server_streaming()));
                }
            }
        }
    }
    methods
}

/// Calls `rpc` with an empty request message and, if given, the
/// `authorization` value; Ok if the call (or the stream) started.
async fn call(
    channel: &Channel,
    rpc: &str,
    streaming: bool,
    auth: Option<&str>,
) -> Result<(), Status> {
    let mut grpc = tonic::client::Grpc::new(channel.clone());
    grpc.ready()
        .await
        .map_err(|e| Status::unknown(format!("not ready: {e}")))?;
    let mut request = tonic::Request::new(());
    request.set_timeout(Duration::from_secs(5));
    if let Some(value) = auth {
        let value: MetadataValue<_> = value.parse().expect("ascii");
        request.metadata_mut().insert("authorization", value);
    }
    let path = http::uri::PathAndQuery::try_from(format!("/{rpc}")).expect("path");
    let codec = tonic_prost::ProstCodec::<(), ()>::default();
    if streaming {
        grpc.server_streaming(request, path, codec).await.map(drop)
    } else {
        grpc.unary(request, path, codec).await.map(drop)
    }
}

fn reason(status: &Status) -> String {
    status
        .get_error_details()
        .error_info()
        .map(|i| i.reason.clone())
        .unwrap_or_default()
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// A gateway with auth on (one token per role) and an issuer key, so every
/// service is up.
async fn guarded(
    link: &Link,
    dir: &std::path::Path,
) -> (Gateway, Channel, BTreeMap<CallerRole, String>) {
    let mut config = link.config();
    config.attestation.key_file = common::attestation::issuer_key(dir, "issuer.key").0;
    let tokens = with_tokens(&mut config);
    let gateway = Gateway::start(config).await;
    let channel = gateway.channel().await;
    // Health is open: no token.
    wait_for_health(&channel, "", ServingStatus::Serving, SOON).await;
    (gateway, channel, tokens)
}

#[tokio::test]
async fn every_rpc_allows_exactly_the_roles_the_policy_table_names() {
    let link = Link::start().await;
    let dir = tempfile::tempdir().expect("tmp");
    let (_gateway, channel, tokens) = guarded(&link, dir.path()).await;

    let methods = described_methods();
    assert!(methods.len() > 40, "{methods:?}");
    let (mut allowed_calls, mut denied_calls) = (0, 0);
    for (rpc, streaming) in &methods {
        let (access, _) = policy::lookup(rpc, ReflectionAccess::Authenticated)
            .unwrap_or_else(|| panic!("{rpc} has no policy entry"));
        for role in CallerRole::ALL {
            let token = &tokens[&role];
            let result = call(&channel, rpc, *streaming, Some(&bearer(token))).await;
            let denied = matches!(&result, Err(s) if matches!(s.code(), Code::PermissionDenied | Code::Unauthenticated));
            if access.allows(&[role]) {
                assert!(!denied, "{rpc} must allow {role:?}: {result:?}");
                allowed_calls += 1;
            } else {
                let status = result.expect_err("denied");
                assert_eq!(
                    status.code(),
                    Code::PermissionDenied,
                    "{rpc} {role:?}: {status:?}"
                );
                assert_eq!(reason(&status), "ROLE_NOT_ALLOWED", "{status:?}");
                assert!(status.message().contains(rpc), "{status:?}");
                assert!(!status.message().contains(token.as_str()), "no token echo");
                denied_calls += 1;
            }
        }
        let anonymous = call(&channel, rpc, *streaming, None).await;
        if access == policy::Access::Open {
            assert!(anonymous.is_ok(), "{rpc} is open: {anonymous:?}");
        } else {
            let status = anonymous.expect_err("no credential");
            assert_eq!(status.code(), Code::Unauthenticated, "{rpc}: {status:?}");
            assert_eq!(reason(&status), "MISSING_CREDENTIAL", "{status:?}");
        }
    }
    // Both outcomes happened many times (else this test could not fail).
    assert!(
        allowed_calls > 50 && denied_calls > 100,
        "{allowed_calls} {denied_calls}"
    );
    // A method the table does not know is denied to everyone.
    let status = call(
        &channel,
        "openoes.credit.v1.CreditService/NoSuchMethod",
        false,
        Some(&bearer(&tokens[&CallerRole::Admin])),
    )
    .await
    .expect_err("unknown method");
    assert_eq!(status.code(), Code::PermissionDenied);
    assert_eq!(reason(&status), "NO_POLICY");
}

#[tokio::test]
async fn missing_malformed_unknown_and_wrong_role_credentials_are_refused_with_reasons() {
    let link = Link::start().await;
    let dir = tempfile::tempdir().expect("tmp");
    let (_gateway, channel, tokens) = guarded(&link, dir.path()).await;
    let rpc = "openoes.credit.v1.CreditService/GetCreditInventory";
    let unknown = token::generate().expect("rng");
    let long = format!("Bearer {}", "a".repeat(300));
    let cases: [(Option<&str>, Code, &str); 7] = [
        (None, Code::Unauthenticated, "MISSING_CREDENTIAL"),
        (
            Some("Basic dXNlcjpwdw=="),
            Code::Unauthenticated,
            "MALFORMED_CREDENTIAL",
        ),
        (
            Some("Bearer"),
            Code::Unauthenticated,
            "MALFORMED_CREDENTIAL",
        ),
        (
            Some("Bearer a b"),
            Code::Unauthenticated,
            "MALFORMED_CREDENTIAL",
        ),
        (Some(&long), Code::Unauthenticated, "MALFORMED_CREDENTIAL"),
        (
            Some(&bearer(&unknown)),
            Code::Unauthenticated,
            "UNKNOWN_CREDENTIAL",
        ),
        (
            Some(&bearer(&tokens[&CallerRole::QuoteIngest])),
            Code::PermissionDenied,
            "ROLE_NOT_ALLOWED",
        ),
    ];
    for (auth, code, why) in cases {
        let status = call(&channel, rpc, false, auth).await.expect_err("refused");
        assert_eq!(
            (status.code(), reason(&status).as_str()),
            (code, why),
            "{auth:?}: {status:?}"
        );
        assert!(!status.message().contains(&unknown[4..]), "{status:?}");
        assert!(!status.message().contains("aaaaaaaa"), "{status:?}");
    }
    // Two authorization headers are one too many.
    let mut grpc = tonic::client::Grpc::new(channel.clone());
    grpc.ready().await.expect("ready");
    let mut request = tonic::Request::new(());
    for role in [CallerRole::Reader, CallerRole::Wsp] {
        let value: MetadataValue<_> = bearer(&tokens[&role]).parse().expect("ascii");
        request.metadata_mut().append("authorization", value);
    }
    let status = grpc
        .unary(
            request,
            http::uri::PathAndQuery::from_static(
                "/openoes.credit.v1.CreditService/GetCreditInventory",
            ),
            tonic_prost::ProstCodec::<(), ()>::default(),
        )
        .await
        .expect_err("two headers");
    assert_eq!(reason(&status), "MALFORMED_CREDENTIAL", "{status:?}");
    // The wrong role's message says which roles may.
    let status = call(
        &channel,
        "openoes.credit.v1.CreditService/RequestCredit",
        false,
        Some(&bearer(&tokens[&CallerRole::Reader])),
    )
    .await
    .expect_err("reader may not request credit");
    assert!(
        status.message().contains("reader may not call"),
        "{status:?}"
    );
    assert!(status.message().contains("wsp"), "{status:?}");
}

#[tokio::test]
async fn reflection_is_authenticated_by_default_and_can_be_open_or_off() {
    let link = Link::start().await;
    let list = "grpc.reflection.v1.ServerReflection/ServerReflectionInfo";
    for (setting, anonymous_ok, with_token) in [
        (ReflectionAccess::Authenticated, false, None),
        (ReflectionAccess::Open, true, None),
        (ReflectionAccess::Off, false, Some(Code::Unimplemented)),
    ] {
        let mut config = link.config();
        let tokens = with_tokens(&mut config);
        config.auth.reflection = setting;
        let gateway = Gateway::start(config).await;
        let channel = gateway.channel().await;
        wait_for_health(&channel, "", ServingStatus::Serving, SOON).await;
        let reader = bearer(&tokens[&CallerRole::Reader]);
        // ServerReflectionInfo is bidirectional: an open stream is enough.
        let open = |auth: Option<String>| {
            let channel = channel.clone();
            async move {
                let mut grpc = tonic::client::Grpc::new(channel);
                grpc.ready().await.expect("ready");
                let mut request = tonic::Request::new(tokio_stream::empty::<()>());
                if let Some(value) = auth {
                    request
                        .metadata_mut()
                        .insert("authorization", value.parse().expect("ascii"));
                }
                let path = http::uri::PathAndQuery::try_from(format!("/{list}")).expect("path");
                let codec = tonic_prost::ProstCodec::<(), ()>::default();
                let mut stream = grpc.streaming(request, path, codec).await?.into_inner();
                // The request stream is empty: the server ends cleanly.
                while let Some(item) = stream.next().await {
                    item?;
                }
                Ok::<(), Status>(())
            }
        };
        let anonymous = open(None).await;
        assert_eq!(
            anonymous.is_ok(),
            anonymous_ok,
            "{setting:?}: {anonymous:?}"
        );
        if !anonymous_ok && setting == ReflectionAccess::Authenticated {
            assert_eq!(
                anonymous.expect_err("refused").code(),
                Code::Unauthenticated
            );
        }
        let authenticated = open(Some(reader)).await;
        match with_token {
            None => assert!(authenticated.is_ok(), "{setting:?}: {authenticated:?}"),
            Some(code) => assert_eq!(authenticated.expect_err("off").code(), code),
        }
    }
}

/// Log lines of this test process (every test's gateway), as JSON.
fn captured_logs() -> Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let logs = Arc::new(Mutex::new(Vec::new()));
        struct Sink(Arc<Mutex<Vec<u8>>>);
        impl Write for Sink {
            fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
                self.0.lock().expect("logs").extend_from_slice(bytes);
                Ok(bytes.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let sink = logs.clone();
        tracing_subscriber::fmt()
            .json()
            .with_env_filter(tracing_subscriber::EnvFilter::new("debug"))
            .with_writer(move || Sink(sink.clone()))
            .init();
        logs
    })
    .clone()
}

#[tokio::test]
async fn the_credit_flow_with_auth_on_each_party_with_its_own_token_and_an_audit_line_per_write() {
    let logs = captured_logs();
    let link = Link::start_secured().await;
    let mut config = link.secured_config();
    let tokens = with_tokens(&mut config);
    let gateway = Gateway::start(config).await;
    let channel = gateway.channel().await;
    credit_health(&channel, ServingStatus::Serving).await;
    let client = |role: CallerRole| {
        CreditServiceClient::with_interceptor(channel.clone(), Bearer(tokens[&role].clone()))
    };

    // The exchange takes deliveries and accepts them, with its own token.
    let mut exchange = client(CallerRole::Exchange);
    let mut deliveries = exchange
        .subscribe_credit_requests(pb::SubscribeCreditRequestsRequest {
            group: String::new(),
            consumer: "ex-auth".into(),
        })
        .await
        .expect("exchange subscribes")
        .into_inner();
    let answering = tokio::spawn(async move {
        while let Some(Ok(delivery)) = deliveries.next().await {
            let request = delivery.credit_request.expect("request");
            exchange
                .respond_to_credit_request(pb::RespondToCreditRequestRequest {
                    request_id: request.request_id,
                    decision: pb::CreditDecision::Accept as i32,
                    reject_reason: String::new(),
                })
                .await
                .expect("exchange answers");
        }
    });

    let mut wsp = client(CallerRole::Wsp);
    let decided = wsp
        .request_credit(ask("alice", "BTC", "+10.5", "auth-1", 5000))
        .await
        .expect("the WSP asks")
        .into_inner()
        .credit_request
        .expect("record");
    assert_eq!(
        pb::CreditRequestStatus::try_from(decided.status),
        Ok(pb::CreditRequestStatus::Accepted),
        "{decided:?}"
    );
    let ci = client(CallerRole::Reader)
        .get_credit_inventory(pb::GetCreditInventoryRequest {
            user_id: "alice".into(),
            asset: "BTC".into(),
        })
        .await
        .expect("a reader reads")
        .into_inner()
        .credit_inventory
        .expect("ci");
    assert_eq!(ci.amount, "10.5");

    // Each party only its own side: the exchange cannot ask, the WSP
    // cannot answer.
    let e = client(CallerRole::Exchange)
        .request_credit(ask("alice", "BTC", "+1", "auth-2", 0))
        .await
        .expect_err("the exchange may not ask");
    assert_eq!(e.code(), Code::PermissionDenied);
    let e = wsp
        .respond_to_credit_request(pb::RespondToCreditRequestRequest {
            request_id: "auth-1".into(),
            decision: pb::CreditDecision::Reject as i32,
            reject_reason: "no".into(),
        })
        .await
        .expect_err("the WSP may not answer");
    assert_eq!(e.code(), Code::PermissionDenied);
    answering.abort();

    // The audit trail: one line per write, with principal, rpc,
    // request_id and code; refusals too.
    let text = String::from_utf8(logs.lock().expect("logs").clone()).expect("utf8");
    let audit: Vec<serde_json::Value> = text
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|l| l["target"] == "audit")
        .collect();
    let line = |rpc: &str, request_id: &str| {
        audit
            .iter()
            .filter(|l| {
                l["fields"]["rpc"] == format!("openoes.credit.v1.CreditService/{rpc}")
                    && l["fields"]["request_id"] == request_id
            })
            .collect::<Vec<_>>()
    };
    let asked = line("RequestCredit", "auth-1");
    assert_eq!(asked.len(), 1, "one line per call: {asked:?}");
    assert_eq!(asked[0]["fields"]["principal"], "wsp");
    assert_eq!(asked[0]["fields"]["code"], "OK");
    assert!(
        asked[0]["fields"]["latency_ms"].as_f64().is_some(),
        "{asked:?}"
    );
    let answered = line("RespondToCreditRequest", "auth-1");
    assert!(
        answered
            .iter()
            .any(|l| l["fields"]["principal"] == "exchange" && l["fields"]["code"] == "OK"),
        "{answered:?}"
    );
    // A refused call is audited before its message is read: no request_id.
    let refused_answer = line("RespondToCreditRequest", "");
    assert!(
        refused_answer.iter().any(
            |l| l["fields"]["principal"] == "wsp" && l["fields"]["code"] == "PERMISSION_DENIED"
        ),
        "the refused answer is audited: {refused_answer:?}"
    );
    let refused = line("RequestCredit", "");
    assert!(
        refused
            .iter()
            .any(|l| l["fields"]["principal"] == "exchange"
                && l["fields"]["code"] == "PERMISSION_DENIED"),
        "{refused:?}"
    );
    // Reads are not audited.
    assert!(
        !audit
            .iter()
            .any(|l| l["fields"]["rpc"] == "openoes.credit.v1.CreditService/GetCreditInventory"),
        "{audit:?}"
    );
    // No token and no Redis password in any line of this process.
    for secret in tokens
        .values()
        .map(String::as_str)
        .chain(common::TEST_PASSWORDS.iter().map(|(_, password)| *password))
    {
        assert!(!text.contains(secret), "a secret reached the logs");
    }
    assert!(text.contains("serving gRPC"), "the capture works");
}

/// Runs `openoes` with a config file; it must exit within the deadline.
fn openoes_with(config: &str, args: &[&str]) -> std::process::Output {
    let dir = tempfile::tempdir().expect("tmp");
    let file = dir.path().join("openoes.toml");
    std::fs::write(&file, config).expect("write");
    let mut child = Command::new(OPENOES)
        .args(args)
        .arg("--config")
        .arg(&file)
        .env_remove("OPENOES__AUTH__MODE")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let deadline = std::time::Instant::now() + SOON;
    while child.try_wait().expect("wait").is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("openoes {args:?} kept running with {config:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().expect("output")
}

#[test]
fn serve_refuses_unset_auth_and_public_plaintext_and_says_how_to_fix_it() {
    let out = openoes_with("[grpc]\nlisten = \"127.0.0.1:0\"\n", &["serve"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("auth.mode is not set"), "{stderr}");
    assert!(stderr.contains("openoes tokens create"), "{stderr}");
    assert!(stderr.contains("mode = \"off\""), "{stderr}");

    let out = openoes_with(
        "[grpc]\nlisten = \"0.0.0.0:0\"\n[auth]\nmode = \"off\"\n",
        &["serve"],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("refusing plaintext gRPC on 0.0.0.0:0"),
        "{stderr}"
    );
    assert!(stderr.contains("allow_plaintext = true"), "{stderr}");
    assert!(stderr.contains("grpc.tls.cert_file"), "{stderr}");

    let out = openoes_with("[auth]\nmode = \"enforce\"\n", &["serve"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("lets nobody in"), "{stderr}");
}

#[tokio::test]
async fn tokens_create_prints_the_token_once_and_an_entry_the_gateway_accepts() {
    let out = Command::new(OPENOES)
        .args([
            "tokens", "create", "--name", "ops", "--role", "wsp", "--role", "reader",
        ])
        .output()
        .expect("run");
    assert!(out.status.success(), "{out:?}");
    let printed = String::from_utf8(out.stdout).expect("utf8");
    let token = printed
        .lines()
        .find_map(|l| {
            l.strip_prefix("# ")
                .filter(|t| t.starts_with(token::PREFIX))
        })
        .expect("the token line")
        .to_string();
    // The output is TOML: the config entry to paste.
    let parsed: toml::Value = toml::from_str(&printed).expect("toml");
    let entry: openoes::config::TokenEntry = parsed["auth"]["tokens"][0]
        .clone()
        .try_into()
        .expect("entry");
    assert_eq!(entry.name, "ops");
    assert_eq!(entry.roles, [CallerRole::Wsp, CallerRole::Reader]);
    assert_eq!(printed.matches(&token).count(), 1, "shown once");

    let bad = Command::new(OPENOES)
        .args(["tokens", "create", "--name", "ops", "--role", "root"])
        .output()
        .expect("run");
    assert_eq!(bad.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("quote-ingest"),
        "{bad:?}"
    );

    let link = Link::start().await;
    let mut config = link.config();
    config.auth.mode = Some(openoes::config::AuthMode::Enforce);
    config.auth.tokens.push(entry);
    let gateway = Gateway::start(config).await;
    let channel = gateway.channel().await;
    wait_for_health(&channel, "", ServingStatus::Serving, SOON).await;
    let read = call(
        &channel,
        "openoes.credit.v1.CreditService/ListCreditInventory",
        false,
        Some(&bearer(&token)),
    )
    .await;
    assert!(
        !matches!(&read, Err(s) if matches!(s.code(), Code::PermissionDenied | Code::Unauthenticated)),
        "{read:?}"
    );
    let status = call(
        &channel,
        "openoes.quote.v1.QuoteService/UpsertPool",
        false,
        Some(&bearer(&token)),
    )
    .await
    .expect_err("not quote-ingest");
    assert_eq!(status.code(), Code::PermissionDenied);
}

#[test]
fn the_production_example_turns_everything_on_and_passes_the_start_up_checks() {
    let file = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/deploy/openoes.production.toml"
    );
    let config = openoes::config::Config::load(Some(std::path::Path::new(file))).expect("loads");
    assert_eq!(config.auth.mode, Some(openoes::config::AuthMode::Enforce));
    assert_eq!(config.auth.reflection, ReflectionAccess::Off);
    assert!(config.grpc.tls.enabled() && !config.grpc.tls.client_ca_file.is_empty());
    assert!(!config.grpc.allow_plaintext);
    assert!(config.rate_limit.enabled);
    assert!(!config.grpc.listen.ip().is_loopback());
    openoes::server::check_security(&config, config.grpc.listen).expect("secure defaults hold");
}

#[tokio::test]
async fn redis_passwords_can_come_from_files_and_never_show() {
    let link = Link::start_secured().await;
    let dir = tempfile::tempdir().expect("tmp");
    for (user, password) in [
        ("wsp", "wsp-pw"),
        ("exchange", "exchange-pw"),
        ("wsp-reader", "reader-pw"),
    ] {
        std::fs::write(
            dir.path().join(format!("{user}.pw")),
            format!("{password}\n"),
        )
        .expect("pw");
    }
    let pw = |user: &str| dir.path().join(format!("{user}.pw")).display().to_string();
    let text = format!(
        "[auth]\nmode = \"off\"\n[grpc]\nlisten = \"127.0.0.1:0\"\n\
         [redis.master]\nurl = \"redis://127.0.0.1:{}\"\nuser = \"wsp\"\npassword_file = {:?}\n\
         [redis.replica]\nurl = \"redis://127.0.0.1:{}\"\nuser = \"exchange\"\npassword_file = {:?}\n\
         [redis.replica_reader]\nuser = \"wsp-reader\"\npassword_file = {:?}\n",
        link.topology.master.port(),
        pw("wsp"),
        link.topology.replica.port(),
        pw("exchange"),
        pw("wsp-reader"),
    );
    let file = dir.path().join("openoes.toml");
    std::fs::write(&file, &text).expect("config");
    let config = openoes::config::Config::load(Some(&file)).expect("loads");
    assert_eq!(
        config.redis.master.password.expose(),
        "wsp-pw",
        "newline trimmed"
    );
    assert_eq!(config.redis.replica_reader.password.expose(), "reader-pw");
    let shown = config.to_toml();
    assert!(
        !shown.contains("wsp-pw") && !shown.contains("exchange-pw"),
        "{shown}"
    );
    // The ACL users accept them: the link is SERVING.
    let gateway = Gateway::start(config).await;
    let channel = gateway.channel().await;
    wait_for_health(&channel, "", ServingStatus::Serving, SOON).await;

    let both = format!("{text}password = \"x\"\n");
    std::fs::write(&file, both).expect("config");
    let e = openoes::config::Config::load(Some(&file)).expect_err("both");
    assert!(
        e.to_string().contains("redis.replica_reader.password_file"),
        "{e}"
    );
    std::fs::write(dir.path().join("exchange.pw"), "").expect("pw");
    std::fs::remove_file(dir.path().join("wsp.pw")).expect("rm");
    std::fs::write(&file, &text).expect("config");
    let e = openoes::config::Config::load(Some(&file)).expect_err("missing file");
    assert!(e.to_string().contains("redis.master.password_file"), "{e}");
}

#[tokio::test]
async fn dev_with_auth_serves_tls_and_a_token_per_role() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().expect("tmp");
    let mut child = Command::new(OPENOES)
        .args(["dev", "--auth", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn openoes dev --auth");
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let stdout = child.stdout.take().expect("stdout");
    let mut child = Kill(child);
    let info: serde_json::Value = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            if let Ok(text) = std::fs::read_to_string(dir.path().join("dev.json"))
                && let Ok(json) = serde_json::from_str(&text)
            {
                break json;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("dev.json appears");
    let tokens: BTreeMap<String, String> = toml::from_str(
        &std::fs::read_to_string(info["tokens"].as_str().expect("tokens file")).expect("read"),
    )
    .expect("tokens");
    assert_eq!(tokens.len(), CallerRole::ALL.len());
    let ca = std::fs::read(info["ca"].as_str().expect("ca")).expect("ca");
    let tls = tonic::transport::ClientTlsConfig::new()
        .ca_certificate(tonic::transport::Certificate::from_pem(ca))
        .domain_name("localhost");
    let channel = Channel::from_shared(format!("https://{}", info["grpc"].as_str().expect("addr")))
        .expect("uri")
        .tls_config(tls)
        .expect("tls")
        .connect()
        .await
        .expect("TLS connect");
    wait_for_health(
        &channel,
        "",
        ServingStatus::Serving,
        Duration::from_secs(30),
    )
    .await;
    let quote = "openoes.quote.v1.QuoteService/GetQuote";
    let status = call(&channel, quote, false, None)
        .await
        .expect_err("no token");
    assert_eq!(status.code(), Code::Unauthenticated);
    let status = call(&channel, quote, false, Some(&bearer(&tokens["reader"])))
        .await
        .expect_err("empty request");
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    // The banner prints the grpcurl flags to use.
    let pid = rustix::process::Pid::from_raw(child.0.id() as i32).expect("pid");
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).expect("SIGTERM");
    let banner = tokio::task::spawn_blocking(move || {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut { stdout }, &mut text).expect("stdout");
        text
    })
    .await
    .expect("banner");
    assert!(banner.contains("-cacert"), "{banner}");
    assert!(
        banner.contains("authorization: Bearer $OES_WSP"),
        "{banner}"
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while child.0.try_wait().expect("wait").is_none() {
        assert!(std::time::Instant::now() < deadline, "dev did not stop");
        std::thread::sleep(Duration::from_millis(50));
    }
}
