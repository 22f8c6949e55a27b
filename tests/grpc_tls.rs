//! TLS and mTLS on the gRPC listener with a throwaway CA (the openssl
//! CLI): a client certificate is mapped to its principal; a certificate of
//! another CA, an expired one and none at all are refused when mTLS is
//! required; with optional client certificates a bearer token over TLS
//! identifies the caller.

mod common;

use std::{path::Path, process::Command, time::Duration};

use common::{Gateway, Link, auth::with_tokens};
use openoes::config::{AuthMode, CallerRole, ClientEntry, Config};
use tonic::{
    Code, Status,
    metadata::MetadataValue,
    transport::{Certificate, Channel, ClientTlsConfig, Identity},
};
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
use tonic_types::StatusExt;

const EXCHANGE_SAN: &str = "spiffe://openoes.test/exchange";

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl is installed");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A P-256 key and CSR `<name>.key`, `<name>.csr`.
fn key_and_csr(dir: &Path, name: &str) {
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.csr"),
            "-subj",
            &format!("/CN={name}"),
        ],
    );
}

fn ca(dir: &Path, name: &str) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.pem"),
            "-days",
            "2",
            "-subj",
            &format!("/CN={name}"),
        ],
    );
}

/// `<name>.pem` signed by `ca` with subjectAltName `san`, valid now.
fn signed(dir: &Path, ca: &str, name: &str, san: &str) {
    key_and_csr(dir, name);
    std::fs::write(
        dir.join(format!("{name}.ext")),
        format!("subjectAltName={san}\n"),
    )
    .expect("ext");
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &format!("{name}.csr"),
            "-CA",
            &format!("{ca}.pem"),
            "-CAkey",
            &format!("{ca}.key"),
            "-CAcreateserial",
            "-out",
            &format!("{name}.pem"),
            "-days",
            "2",
            "-extfile",
            &format!("{name}.ext"),
        ],
    );
}

/// `<name>.pem` signed by `ca`, valid only in January 2020.
fn expired(dir: &Path, ca: &str, name: &str, san: &str) {
    key_and_csr(dir, name);
    std::fs::write(
        dir.join("ca.cnf"),
        format!(
            "[ca]\ndefault_ca = d\n[d]\ndir = .\ndatabase = index.txt\nnew_certs_dir = .\n\
             certificate = {ca}.pem\nprivate_key = {ca}.key\nserial = serial\n\
             default_md = sha256\npolicy = any\nunique_subject = no\nx509_extensions = ext\n\
             [any]\ncommonName = supplied\n[ext]\nsubjectAltName = {san}\n"
        ),
    )
    .expect("cnf");
    std::fs::write(dir.join("index.txt"), "").expect("index");
    std::fs::write(dir.join("serial"), "1000\n").expect("serial");
    openssl(
        dir,
        &[
            "ca",
            "-batch",
            "-config",
            "ca.cnf",
            "-in",
            &format!("{name}.csr"),
            "-out",
            &format!("{name}.pem"),
            "-startdate",
            "20200101000000Z",
            "-enddate",
            "20200102000000Z",
            "-notext",
        ],
    );
}

/// The throwaway PKI: CA `ca` (trusted) and `other-ca`; the server's
/// certificate; client certificates: `exchange` (mapped), `stranger` (of
/// `ca`, not mapped), `foreign` (of `other-ca`), `stale` (expired).
fn pki(dir: &Path) {
    ca(dir, "ca");
    ca(dir, "other-ca");
    signed(dir, "ca", "server", "IP:127.0.0.1,DNS:localhost");
    let exchange = format!("URI:{EXCHANGE_SAN}");
    signed(dir, "ca", "exchange", &exchange);
    signed(dir, "ca", "stranger", "URI:spiffe://openoes.test/stranger");
    signed(dir, "other-ca", "foreign", &exchange);
    expired(dir, "ca", "stale", &exchange);
}

fn path(dir: &Path, file: &str) -> String {
    dir.join(file).display().to_string()
}

/// A gateway with TLS, client certificates of `ca` and the `exchange`
/// principal mapped by its SAN.
fn tls_config(link: &Link, dir: &Path, require_client_cert: bool) -> Config {
    let mut config = link.config();
    config.grpc.tls.cert_file = path(dir, "server.pem");
    config.grpc.tls.key_file = path(dir, "server.key");
    config.grpc.tls.client_ca_file = path(dir, "ca.pem");
    config.grpc.tls.require_client_cert = require_client_cert;
    config.auth.mode = Some(AuthMode::Enforce);
    config.auth.clients.push(ClientEntry {
        name: "exchange-gw".into(),
        san: EXCHANGE_SAN.into(),
        roles: vec![CallerRole::Exchange],
    });
    config
}

/// A TLS channel trusting `ca`, with client certificate `client` if given.
async fn connect(
    gateway: &Gateway,
    dir: &Path,
    client: Option<&str>,
) -> Result<Channel, tonic::transport::Error> {
    let read = |f: &str| std::fs::read(dir.join(f)).expect("pem");
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(read("ca.pem")))
        .domain_name("localhost");
    if let Some(name) = client {
        tls = tls.identity(Identity::from_pem(
            read(&format!("{name}.pem")),
            read(&format!("{name}.key")),
        ));
    }
    Channel::from_shared(format!("https://{}", gateway.addr))
        .expect("uri")
        .tls_config(tls)?
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(5))
        .connect()
        .await
}

/// Health (open to anyone past TLS), retried until the gateway listens.
async fn health(channel: &Channel) -> Result<(), Status> {
    HealthClient::new(channel.clone())
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .map(drop)
}

/// True if TLS lets `client` through to a health check.
async fn admitted(gateway: &Gateway, dir: &Path, client: Option<&str>) -> bool {
    match connect(gateway, dir, client).await {
        Err(_) => false,
        Ok(channel) => health(&channel).await.is_ok(),
    }
}

async fn call(channel: &Channel, rpc: &str, token: Option<&str>) -> Result<(), Status> {
    let mut grpc = tonic::client::Grpc::new(channel.clone());
    grpc.ready()
        .await
        .map_err(|e| Status::unknown(e.to_string()))?;
    let mut request = tonic::Request::new(());
    if let Some(token) = token {
        let value: MetadataValue<_> = format!("Bearer {token}").parse().expect("ascii");
        request.metadata_mut().insert("authorization", value);
    }
    let path = http::uri::PathAndQuery::try_from(format!("/{rpc}")).expect("path");
    grpc.unary(request, path, tonic_prost::ProstCodec::<(), ()>::default())
        .await
        .map(drop)
}

fn reason(status: &Status) -> String {
    status
        .get_error_details()
        .error_info()
        .map(|i| i.reason.clone())
        .unwrap_or_default()
}

fn install_crypto() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Waits until the gateway answers a good client (it starts in a task).
async fn until_up(gateway: &Gateway, dir: &Path, client: Option<&str>) -> Channel {
    for _ in 0..100 {
        if let Ok(channel) = connect(gateway, dir, client).await
            && health(&channel).await.is_ok()
        {
            return channel;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the TLS gateway never answered");
}

#[tokio::test]
async fn a_client_certificate_is_mapped_to_its_principal_and_other_certificates_are_refused() {
    install_crypto();
    let dir = tempfile::tempdir().expect("tmp");
    pki(dir.path());
    let link = Link::start().await;
    let gateway = Gateway::start(tls_config(&link, dir.path(), true)).await;
    let channel = until_up(&gateway, dir.path(), Some("exchange")).await;

    // The exchange's certificate is the exchange-gw principal: its reads
    // pass, the WSP's RPCs are refused naming it.
    let read = call(
        &channel,
        "openoes.credit.v1.CreditService/GetCreditInventory",
        None,
    )
    .await;
    let status = read.expect_err("empty request");
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    let status = call(
        &channel,
        "openoes.credit.v1.CreditService/RequestCredit",
        None,
    )
    .await
    .expect_err("not the WSP");
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    assert!(
        status.message().contains("exchange-gw may not call"),
        "{status:?}"
    );

    // A certificate of the right CA whose SAN no principal has.
    let stranger = connect(&gateway, dir.path(), Some("stranger"))
        .await
        .expect("TLS accepts it");
    let status = call(
        &stranger,
        "openoes.credit.v1.CreditService/GetCreditInventory",
        None,
    )
    .await
    .expect_err("unknown");
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    assert_eq!(reason(&status), "UNKNOWN_CREDENTIAL");

    // TLS itself refuses another CA's certificate, an expired one and none.
    for client in [Some("foreign"), Some("stale"), None] {
        assert!(
            !admitted(&gateway, dir.path(), client).await,
            "{client:?} must be refused"
        );
    }
    // Plaintext on the TLS port gets nowhere either.
    let plain = Channel::from_shared(format!("http://{}", gateway.addr))
        .expect("uri")
        .timeout(Duration::from_secs(5))
        .connect()
        .await;
    if let Ok(plain) = plain {
        assert!(health(&plain).await.is_err(), "plaintext on the TLS port");
    }
    // The refusals cost the gateway nothing: the good client still works.
    health(&channel).await.expect("still serving");
}

#[tokio::test]
async fn with_optional_client_certificates_a_token_over_tls_identifies_the_caller() {
    install_crypto();
    let dir = tempfile::tempdir().expect("tmp");
    pki(dir.path());
    let link = Link::start().await;
    let mut config = tls_config(&link, dir.path(), false);
    let tokens = with_tokens(&mut config);
    let gateway = Gateway::start(config).await;
    let channel = until_up(&gateway, dir.path(), None).await;

    let rpc = "openoes.credit.v1.CreditService/RequestCredit";
    let status = call(&channel, rpc, None).await.expect_err("nobody");
    assert_eq!(status.code(), Code::Unauthenticated);
    assert_eq!(reason(&status), "MISSING_CREDENTIAL");
    let status = call(&channel, rpc, Some(&tokens[&CallerRole::Wsp]))
        .await
        .expect_err("empty request");
    assert_eq!(
        status.code(),
        Code::InvalidArgument,
        "the WSP passes: {status:?}"
    );
    // A certificate still works when no token is sent.
    let with_cert = until_up(&gateway, dir.path(), Some("exchange")).await;
    let status = call(&with_cert, rpc, None).await.expect_err("not the WSP");
    assert!(status.message().contains("exchange-gw"), "{status:?}");
    // Another CA's certificate is refused even when certificates are optional.
    assert!(!admitted(&gateway, dir.path(), Some("foreign")).await);
}

#[tokio::test]
async fn a_connection_that_never_starts_its_tls_handshake_is_closed() {
    use tokio::io::AsyncReadExt;
    install_crypto();
    let dir = tempfile::tempdir().expect("tmp");
    pki(dir.path());
    let link = Link::start().await;
    let mut config = tls_config(&link, dir.path(), false);
    config.grpc.handshake_timeout = Duration::from_secs(1);
    let gateway = Gateway::start(config).await;
    let channel = until_up(&gateway, dir.path(), None).await;
    // Connects, says nothing (a TLS server waits for the ClientHello); and
    // one that sends the first bytes of a TLS record, then stalls.
    for first in [&b""[..], &[0x16, 0x03, 0x01][..]] {
        let mut silent = tokio::net::TcpStream::connect(gateway.addr)
            .await
            .expect("connect");
        tokio::io::AsyncWriteExt::write_all(&mut silent, first)
            .await
            .expect("write");
        let mut buf = [0u8; 256];
        let closed = tokio::time::timeout(Duration::from_secs(20), async {
            while let Ok(n) = silent.read(&mut buf).await {
                if n == 0 {
                    break;
                }
            }
        })
        .await;
        assert!(
            closed.is_ok(),
            "{first:?}: a TLS connection without a handshake stayed open (grpc.handshake_timeout)"
        );
    }
    health(&channel).await.expect("still serving");
}
