//! Local `redis-server` processes: the Redis topology of `openoes dev` and of
//! every integration test (never a fake: a real server on a free port).
//!
//! A [`RedisProcess`] owns its child: dropping it kills the server. Each
//! server gets its own directory holding `redis.conf` (so it can be
//! restarted by hand with `redis-server <dir>/redis.conf`), its log and its
//! pid file. [`Topology`] starts a master (M) and a stream-writeable replica
//! (R) of it and waits until the replication link is up.
//!
//! The engine is Redis or Valkey: `redis-server` from PATH by default,
//! another binary through [`RedisOptions::server`] (`openoes dev
//! --redis-server PATH`) or, for every server of a test run at once, the
//! environment variable [`SERVER_ENV`] (`OPENOES_REDIS_SERVER=.../valkey-server
//! cargo test`). That variable is the one exception to "only `config` reads
//! the environment": it picks the binary of throw-away local servers, never
//! anything a deployment runs.

use std::{
    io,
    net::TcpListener,
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};

use tokio::{
    process::{Child, Command},
    time::{Instant, sleep},
};

/// How long a starting server may take to answer PING. Generous: a loaded
/// 2-core CI machine can take a second to fork and load.
pub const START_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a replica may take to finish its first sync with the master.
pub const LINK_TIMEOUT: Duration = Duration::from_secs(15);

/// How often to retry a start on a new port if the chosen one was taken
/// (another process may grab a free port between our probe and redis' bind).
const PORT_ATTEMPTS: usize = 5;

/// The environment variable naming the server binary of local servers
/// when [`RedisOptions::server`] does not (e.g. a `valkey-server`).
pub const SERVER_ENV: &str = "OPENOES_REDIS_SERVER";

/// The server binary local servers run unless told otherwise:
/// [`SERVER_ENV`] if set, else `redis-server` from PATH.
pub fn default_server() -> PathBuf {
    std::env::var_os(SERVER_ENV)
        .filter(|v| !v.is_empty())
        .map_or_else(|| PathBuf::from("redis-server"), PathBuf::from)
}

/// Why a local Redis could not be run.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    /// The server binary was not found.
    #[error(
        "{0} was not found; install redis-server (Debian/Ubuntu: `sudo apt-get install -y redis-server`) or point --redis-server / OPENOES_REDIS_SERVER at a redis-server or valkey-server"
    )]
    NotInstalled(String),
    /// Files or process spawning failed.
    #[error("{context}")]
    Io {
        /// What we were doing.
        context: String,
        /// The failure.
        #[source]
        source: io::Error,
    },
    /// The server did not come up (or its replica link did not).
    #[error("{0}")]
    Start(String),
}

fn io_err(context: impl Into<String>) -> impl FnOnce(io::Error) -> ProcessError {
    let context = context.into();
    move |source| ProcessError::Io { context, source }
}

/// Settings of one local server.
#[derive(Debug, Clone, Default)]
pub struct RedisOptions {
    /// Make it a replica of this master port, writeable
    /// (`replica-read-only no`), as the OpenOES replica R is.
    pub replica_of: Option<u16>,
    /// Extra `redis.conf` lines, e.g. `maxmemory 64mb`.
    pub extra_conf: Vec<String>,
    /// The server binary (`redis-server`, `valkey-server`, a path); unset:
    /// [`default_server`].
    pub server: Option<PathBuf>,
}

/// A running `redis-server`, killed when dropped.
pub struct RedisProcess {
    child: Option<Child>,
    port: u16,
    dir: PathBuf,
    /// User and password for [`RedisProcess::query`] once ACLs are on.
    auth: Option<(String, String)>,
    /// The binary it runs (restarts run the same one).
    server: PathBuf,
}

impl RedisProcess {
    /// Starts a server on a free loopback port with its files under `dir`,
    /// and waits until it answers PING.
    pub async fn start(dir: &Path, options: &RedisOptions) -> Result<Self, ProcessError> {
        std::fs::create_dir_all(dir).map_err(io_err(format!("cannot create {}", dir.display())))?;
        let dir = dir
            .canonicalize()
            .map_err(io_err(format!("cannot resolve {}", dir.display())))?;
        let mut last_error = None;
        for _ in 0..PORT_ATTEMPTS {
            let port = free_port()?;
            write_conf(&dir, port, options)?;
            let mut process = Self {
                child: None,
                port,
                dir: dir.clone(),
                auth: None,
                server: options.server.clone().unwrap_or_else(default_server),
            };
            match process.launch().await {
                Ok(()) => return Ok(process),
                Err(e @ ProcessError::NotInstalled(_)) => return Err(e),
                Err(e) => last_error = Some(e),
            }
        }
        Err(last_error.unwrap_or_else(|| ProcessError::Start("no attempt made".into())))
    }

    /// Starts the server again from its `redis.conf`, on the same port (after
    /// [`RedisProcess::kill`], to simulate a restart).
    pub async fn restart(&mut self) -> Result<(), ProcessError> {
        self.kill().await;
        self.launch().await
    }

    async fn launch(&mut self) -> Result<(), ProcessError> {
        let log = std::fs::File::create(self.dir.join("stdout.log"))
            .map_err(io_err("cannot create redis stdout log"))?;
        let child = Command::new(&self.server)
            .arg(self.conf_path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(io_err("cannot clone log handle"))?)
            .stderr(log)
            // Own process group: a Ctrl-C in the terminal reaches the gateway
            // only, which then stops Redis in order after draining.
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| match e.kind() {
                io::ErrorKind::NotFound => {
                    ProcessError::NotInstalled(self.server.display().to_string())
                }
                _ => io_err(format!("cannot spawn {}", self.server.display()))(e),
            })?;
        self.child = Some(child);
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if self.ping().await {
                return Ok(());
            }
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                self.child = None;
                return Err(ProcessError::Start(format!(
                    "{} on port {} exited with {status}; see {}",
                    self.server.display(),
                    self.port,
                    self.dir.join("redis.log").display()
                )));
            }
            if Instant::now() > deadline {
                self.kill().await;
                return Err(ProcessError::Start(format!(
                    "redis-server on port {} did not answer PING within {START_TIMEOUT:?}",
                    self.port
                )));
            }
            sleep(Duration::from_millis(20)).await;
        }
    }

    async fn ping(&self) -> bool {
        match self.query::<String>(&mut redis::cmd("PING")).await {
            Ok(pong) => pong == "PONG",
            // Up, and refusing us: ACLs are on.
            Err(e) => matches!(e.code(), Some("NOAUTH" | "NOPERM" | "WRONGPASS")),
        }
    }

    /// Runs [`RedisProcess::query`] (and so `stop`, restarts and link
    /// checks) as this ACL user from now on.
    pub fn set_auth(&mut self, user: &str, password: &str) {
        self.auth = Some((user.to_string(), password.to_string()));
    }

    /// Runs one command on a fresh connection (test and admin use only).
    pub async fn query<T: redis::FromRedisValue>(
        &self,
        cmd: &mut redis::Cmd,
    ) -> redis::RedisResult<T> {
        let url = match &self.auth {
            Some((user, password)) => format!("redis://{user}:{password}@127.0.0.1:{}", self.port),
            None => self.url(),
        };
        let client = redis::Client::open(url)?;
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(1)))
            .set_response_timeout(Some(Duration::from_secs(5)));
        let mut conn = client
            .get_multiplexed_async_connection_with_config(&config)
            .await?;
        cmd.query_async(&mut conn).await
    }

    /// Kills the server with SIGKILL, as a crash would, and reaps it.
    pub async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill().await;
        }
    }

    /// Stops the server cleanly (SHUTDOWN NOSAVE), falling back to SIGKILL.
    pub async fn stop(&mut self) {
        let _ = self.query::<()>(redis::cmd("SHUTDOWN").arg("NOSAVE")).await;
        if let Some(mut child) = self.child.take()
            && tokio::time::timeout(Duration::from_secs(5), child.wait())
                .await
                .is_err()
        {
            let _ = child.kill().await;
        }
    }

    /// The server's loopback port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// The OS process id, while running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(Child::id)
    }

    /// The server's directory (config, log, pid file).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The server's config file.
    pub fn conf_path(&self) -> PathBuf {
        self.dir.join("redis.conf")
    }
}

/// A master (M) and a stream-writeable replica (R) of it, as in an OpenOES
/// link, both local.
pub struct Topology {
    /// The WSP master.
    pub master: RedisProcess,
    /// The exchange replica, `replicaof` the master, `replica-read-only no`.
    pub replica: RedisProcess,
}

impl Topology {
    /// Starts M under `dir/m` and R under `dir/r` with the default server
    /// binary, and waits for the link.
    pub async fn start(dir: &Path) -> Result<Self, ProcessError> {
        Self::start_with(dir, None).await
    }

    /// [`Topology::start`] running `server` (unset: [`default_server`]).
    pub async fn start_with(dir: &Path, server: Option<PathBuf>) -> Result<Self, ProcessError> {
        let options = RedisOptions {
            server,
            ..RedisOptions::default()
        };
        let master = RedisProcess::start(&dir.join("m"), &options).await?;
        let replica_options = RedisOptions {
            replica_of: Some(master.port()),
            ..options
        };
        let replica = RedisProcess::start(&dir.join("r"), &replica_options).await?;
        let topology = Self { master, replica };
        topology.wait_for_link().await?;
        Ok(topology)
    }

    /// Waits until R reports `master_link_status:up`.
    pub async fn wait_for_link(&self) -> Result<(), ProcessError> {
        let deadline = Instant::now() + LINK_TIMEOUT;
        loop {
            let info: String = self
                .replica
                .query(redis::cmd("INFO").arg("replication"))
                .await
                .unwrap_or_default();
            if info.lines().any(|l| l.trim() == "master_link_status:up") {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(ProcessError::Start(format!(
                    "replica on port {} did not link to master on port {} within {LINK_TIMEOUT:?}",
                    self.replica.port(),
                    self.master.port()
                )));
            }
            sleep(Duration::from_millis(50)).await;
        }
    }

    /// Stops R, then M.
    pub async fn stop(&mut self) {
        self.replica.stop().await;
        self.master.stop().await;
    }
}

fn free_port() -> Result<u16, ProcessError> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(io_err("cannot find a free port"))?;
    Ok(listener
        .local_addr()
        .map_err(io_err("cannot read port"))?
        .port())
}

fn write_conf(dir: &Path, port: u16, options: &RedisOptions) -> Result<(), ProcessError> {
    let mut conf = vec![
        "# Written by openoes for a local, throw-away server.".to_string(),
        format!("port {port}"),
        "bind 127.0.0.1".into(),
        format!("dir {}", dir.display()),
        format!("pidfile {}", dir.join("redis.pid").display()),
        format!("logfile {}", dir.join("redis.log").display()),
        "daemonize no".into(),
        // Throw-away data: no snapshots, no AOF. A restart starts empty,
        // which is exactly the "restarted without persistence" case.
        "save \"\"".into(),
        "appendonly no".into(),
        // A replica's (re)sync starts at once instead of waiting 5 s for
        // more replicas to batch with: tests resync replicas on purpose.
        "repl-diskless-sync-delay 0".into(),
    ];
    if let Some(master_port) = options.replica_of {
        conf.push(format!("replicaof 127.0.0.1 {master_port}"));
        conf.push("replica-read-only no".into());
    }
    conf.extend(options.extra_conf.iter().cloned());
    conf.push(String::new());
    std::fs::write(dir.join("redis.conf"), conf.join("\n")).map_err(io_err(format!(
        "cannot write {}",
        dir.join("redis.conf").display()
    )))
}
