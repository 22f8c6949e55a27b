//! Test harness: real redis-server processes (own temp dir, free port, killed
//! on drop) and the gateway running in-process on a free port.
#![allow(dead_code)] // each test binary uses its own part of the harness

pub mod attestation;
pub mod auth;
pub mod books;
pub mod credit;
pub mod settlement;

use std::{collections::HashMap, net::SocketAddr, time::Duration};

use openoes::{
    config::{Config, RedisEndpointConfig, Role},
    redis::process::Topology,
    server,
};
use tempfile::TempDir;
use tokio::{net::TcpListener, sync::oneshot, task::JoinHandle};
use tonic::transport::Channel;
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

/// A local M + R pair in a temp dir that lives as long as it does.
pub struct Link {
    pub topology: Topology,
    _dir: TempDir,
}

impl Link {
    pub async fn start() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let topology = Topology::start(dir.path()).await.expect("start M + R");
        Self {
            topology,
            _dir: dir,
        }
    }

    /// A config pointing at this link, fast health probes, both roles.
    pub fn config(&self) -> Config {
        let mut config = Config {
            roles: vec![Role::Wsp, Role::Exchange],
            ..Config::default()
        };
        config.grpc.listen = SocketAddr::from(([127, 0, 0, 1], 0));
        config.redis.master = RedisEndpointConfig::local(self.topology.master.port());
        config.redis.replica = RedisEndpointConfig::local(self.topology.replica.port());
        config.health.interval = Duration::from_millis(200);
        config.health.probe_timeout = Duration::from_millis(300);
        config.shutdown.grace_period = Duration::from_secs(5);
        // Explicitly off (serve refuses an unset mode): the suites test the
        // domains; tests/auth.rs and the *_with_auth twins test the policy.
        config.auth.mode = Some(openoes::config::AuthMode::Off);
        config
    }
}

/// Passwords of the shipped ACL users in tests.
pub const TEST_PASSWORDS: [(&str, &str); 5] = [
    ("wsp", "wsp-pw"),
    ("replication", "repl-pw"),
    ("admin", "admin-pw"),
    ("exchange", "exchange-pw"),
    ("wsp-reader", "reader-pw"),
];

impl Link {
    /// An M + R link locked down with the shipped ACLs (default user off).
    pub async fn start_secured() -> Self {
        let link = Self::start().await;
        let passwords = TEST_PASSWORDS
            .iter()
            .map(|(u, p)| (u.to_string(), p.to_string()))
            .collect();
        openoes::acl::secure_link(
            &link.topology.master.url(),
            &link.topology.replica.url(),
            &passwords,
        )
        .await
        .expect("apply the shipped ACLs");
        let mut link = link;
        link.topology.master.set_auth("admin", "admin-pw");
        link.topology.replica.set_auth("admin", "admin-pw");
        link
    }

    /// Makes M persist every write (AOF, fsync always), as a WSP's master
    /// must, and writes that into its redis.conf so a restart keeps it.
    pub async fn make_master_durable(&self) {
        for (k, v) in [("appendfsync", "always"), ("appendonly", "yes")] {
            self.topology
                .master
                .query::<()>(redis::cmd("CONFIG").arg("SET").arg(k).arg(v))
                .await
                .expect("config set");
        }
        for _ in 0..100 {
            let info: String = self
                .topology
                .master
                .query(redis::cmd("INFO").arg("persistence"))
                .await
                .expect("info");
            if info.contains("aof_rewrite_in_progress:0")
                && info.contains("aof_rewrite_scheduled:0")
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.topology
            .master
            .query::<()>(&mut redis::cmd("CONFIG").arg("REWRITE").clone())
            .await
            .expect("config rewrite");
    }

    /// A config for a secured link: each role as its own ACL user.
    pub fn secured_config(&self) -> Config {
        let mut config = self.config();
        let password = |user: &str| {
            let (_, p) = TEST_PASSWORDS
                .iter()
                .find(|(u, _)| *u == user)
                .expect("user");
            openoes::config::Secret::new(*p)
        };
        config.redis.master.user = "wsp".into();
        config.redis.master.password = password("wsp");
        config.redis.replica.user = "exchange".into();
        config.redis.replica.password = password("exchange");
        config.redis.replica_reader.user = "wsp-reader".into();
        config.redis.replica_reader.password = password("wsp-reader");
        config
    }
}

/// An endpoint on one local redis-server (for store- and bridge-level tests
/// that need no M + R link).
pub fn endpoint_on(redis: &openoes::redis::process::RedisProcess) -> openoes::redis::RedisEndpoint {
    let local = RedisEndpointConfig::local(redis.port());
    let config = openoes::config::RedisConfig {
        master: local.clone(),
        replica: local,
        ..openoes::config::RedisConfig::default()
    };
    openoes::redis::Redis::new(&config)
        .expect("endpoints")
        .master
}

/// The gateway running in this process.
pub struct Gateway {
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    pub task: JoinHandle<Result<(), server::ServerError>>,
}

impl Gateway {
    pub async fn start(config: Config) -> Self {
        let listener = TcpListener::bind(config.grpc.listen).await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(openoes::services::run(config, listener, async move {
            let _ = stopped.await;
        }));
        Self {
            addr,
            stop: Some(stop),
            task,
        }
    }

    pub async fn channel(&self) -> Channel {
        Channel::from_shared(format!("http://{}", self.addr))
            .expect("uri")
            .connect_timeout(Duration::from_secs(2))
            .connect()
            .await
            .expect("connect to gateway")
    }

    /// Sends the stop signal (what SIGTERM does in the binary).
    pub fn signal_stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Polls health of `service` until it reports `want`, or panics after `within`.
pub async fn wait_for_health(
    channel: &Channel,
    service: &str,
    want: ServingStatus,
    within: Duration,
) -> Duration {
    let mut client = HealthClient::new(channel.clone());
    let start = tokio::time::Instant::now();
    let mut last = None;
    while start.elapsed() < within {
        let response = client
            .check(HealthCheckRequest {
                service: service.to_string(),
            })
            .await;
        match response {
            Ok(r) if r.get_ref().status == want as i32 => return start.elapsed(),
            Ok(r) => last = Some(format!("{:?}", r.get_ref().status())),
            Err(e) => last = Some(format!("{e}")),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("health of {service:?} did not become {want:?} within {within:?}; last: {last:?}");
}

/// A stream entry: its id and its fields as text.
pub type Entry = (String, HashMap<String, String>);

/// Every entry of the stream at `key`, oldest first.
pub async fn xrange(conn: &mut redis::aio::MultiplexedConnection, key: &str) -> Vec<Entry> {
    let reply: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
        .arg(key)
        .arg("-")
        .arg("+")
        .query_async(conn)
        .await
        .expect("xrange");
    reply
        .ids
        .into_iter()
        .map(|e| {
            let fields = e
                .map
                .iter()
                .map(|(k, v)| (k.clone(), openoes::redis::value_text(v)))
                .collect();
            (e.id, fields)
        })
        .collect()
}

/// This process's resident set size, KiB (0 if unknown).
pub fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// The gateway as a child process, to SIGKILL it.
pub struct GatewayProcess {
    pub child: std::process::Child,
    pub addr: std::net::SocketAddr,
}

impl GatewayProcess {
    pub fn start(config: &openoes::config::Config, dir: &std::path::Path) -> Self {
        let path = dir.join("wsp.toml");
        std::fs::write(&path, toml::to_string(config).expect("toml")).expect("write config");
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_openoes"))
            .args(["serve", "--config"])
            .arg(&path)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn openoes serve");
        Self {
            child,
            addr: config.grpc.listen,
        }
    }

    pub async fn channel(&self) -> Channel {
        for _ in 0..200 {
            if let Ok(channel) =
                tonic::transport::Channel::from_shared(format!("http://{}", self.addr))
                    .expect("uri")
                    .connect()
                    .await
            {
                return channel;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("gateway process never listened on {}", self.addr);
    }
}

impl Drop for GatewayProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A free local address for a gateway that runs as a child process.
pub fn free_addr() -> std::net::SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("port")
        .local_addr()
        .expect("addr")
}
