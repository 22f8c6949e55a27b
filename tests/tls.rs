//! Redis over TLS through the real client path (`openoes pools load`): a
//! throwaway CA signs a certificate for 127.0.0.1, a real redis-server
//! serves TLS with it, and the CA is trusted through `SSL_CERT_FILE`.

use std::{
    net::TcpListener,
    path::Path,
    process::{Command, Output},
};

use openoes::redis::process::{RedisOptions, RedisProcess};

const OPENOES: &str = env!("CARGO_BIN_EXE_openoes");
const POOL_A: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/dlmm/pool_a.json");

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

fn make_certs(dir: &Path) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "1",
            "-subj",
            "/CN=openoes-test-ca",
        ],
    );
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=localhost",
        ],
    );
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n",
    )
    .expect("ext");
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.pem",
            "-days",
            "1",
            "-extfile",
            "ext.cnf",
        ],
    );
}

fn load(url: &str, env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(OPENOES);
    cmd.args(["pools", "load", "--redis-url", url, POOL_A])
        .env_remove("SSL_CERT_FILE");
    cmd.envs(env.iter().copied());
    cmd.output().expect("run openoes")
}

#[tokio::test]
async fn redis_over_tls_with_a_trusted_ca_and_a_clear_error_without() {
    let dir = tempfile::tempdir().expect("tmp");
    make_certs(dir.path());
    let tls_port = TcpListener::bind("127.0.0.1:0")
        .expect("port")
        .local_addr()
        .expect("addr")
        .port();
    let d = dir.path().display();
    let options = RedisOptions {
        extra_conf: vec![
            format!("tls-port {tls_port}"),
            format!("tls-cert-file {d}/server.pem"),
            format!("tls-key-file {d}/server.key"),
            format!("tls-ca-cert-file {d}/ca.pem"),
            "tls-auth-clients no".into(),
        ],
        ..RedisOptions::default()
    };
    let _redis = RedisProcess::start(&dir.path().join("redis"), &options)
        .await
        .expect("redis with TLS");
    let ca = format!("{d}/ca.pem");
    let tls_url = format!("rediss://127.0.0.1:{tls_port}");

    let out = load(&tls_url, &[("SSL_CERT_FILE", &ca)]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "created pool A: 11 bins"
    );

    // `tls = true` upgrades a redis:// URL.
    let plain_url = format!("redis://127.0.0.1:{tls_port}");
    let out = load(
        &plain_url,
        &[
            ("SSL_CERT_FILE", &ca),
            ("OPENOES__REDIS__MASTER__TLS", "true"),
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The same file again: written over TLS, and identical, so nothing
    // changes (issue #18: an identical write changes nothing).
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "unchanged pool A: 11 bins"
    );

    // An untrusted server certificate fails, and says why.
    let out = load(&tls_url, &[]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("unavailable") && stderr.contains("certificate"),
        "{stderr}"
    );
}
