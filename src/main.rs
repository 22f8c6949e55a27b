//! The `openoes` command line: `serve`, `dev`, `acl apply`, `pools load`,
//! `keys generate`, `tokens create`, `bench`, `doctor`, `config`.

mod bench;
mod progress;

use std::{io::IsTerminal, net::SocketAddr, path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand};
use openoes::{
    config::{CallerRole, Config, LogFormat},
    dev::{self, DevOptions},
    error::ErrorChain,
    quote::{model::PoolFile, store::QuoteStore},
    services, shutdown,
};
use tracing_subscriber::EnvFilter;

/// mimalloc, not the system allocator: every call allocates its frames,
/// replies and strings, and with it GetCreditInventory served 16-19% and
/// GetQuote 5-9% more calls a second on the same two cores (`openoes
/// bench`, alternating runs). The library leaves the choice to its users.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// OpenOES gateway: Redis streams bridged to gRPC.
#[derive(Debug, Parser)]
#[command(name = "openoes", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the gateway against configured Redis endpoints.
    Serve {
        /// TOML config file (env vars OPENOES__* override it).
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Run everything locally: own master + replica redis-servers, both
    /// roles, every service.
    Dev {
        /// Where local Redis files and dev.json go.
        #[arg(long, default_value = ".openoes-dev")]
        data_dir: PathBuf,
        /// gRPC address (default: grpc.listen, 127.0.0.1:50051).
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// TOML config file (env vars OPENOES__* override it).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Turn auth and TLS on: a throwaway CA (needs the openssl CLI) and
        /// one token per role under the data dir, printed with grpcurl
        /// examples.
        #[arg(long)]
        auth: bool,
        /// The server binary of the local M and R: redis-server (default,
        /// from PATH) or valkey-server, by name or path.
        #[arg(long)]
        redis_server: Option<PathBuf>,
    },
    /// DLMM pools: load pool files into Redis.
    Pools {
        #[command(subcommand)]
        command: PoolsCommand,
    },
    /// Redis ACLs of the OpenOES link.
    Acl {
        #[command(subcommand)]
        command: AclCommand,
    },
    /// Signing keys (the attestation issuer's).
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Bearer tokens of gRPC callers.
    Tokens {
        #[command(subcommand)]
        command: TokensCommand,
    },
    /// Load tools that report ratios to redis-benchmark in the same run.
    Bench {
        #[command(subcommand)]
        command: BenchCommand,
    },
    /// Check a deployment from the outside: both Redis endpoints as their
    /// users, the ACLs as shipped, the replica link, writable streams,
    /// clock skew M vs R, the engine. One verdict line per check; exits 1
    /// if any check fails.
    Doctor {
        /// TOML config file of the gateway to check (env vars OPENOES__*
        /// override it).
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Print the effective configuration (secrets redacted) and exit.
    Config {
        /// TOML config file (env vars OPENOES__* override it).
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
enum PoolsCommand {
    /// Write each file's pool and bins (the seed's JSON shape) atomically,
    /// replacing the pool's bins; a concurrent quote sees the old pool or the
    /// new one.
    Load {
        /// Redis to write to (default: redis.master of the config).
        #[arg(long)]
        redis_url: Option<String>,
        /// TOML config file (env vars OPENOES__* override it).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Pool files, e.g. tests/data/dlmm/pool_a.json.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
enum AclCommand {
    /// Load the link's ACL users into a server: the shipped rules of
    /// deploy/redis/acl/ (or --rules), passwords from --passwords.
    Apply {
        /// Which server: master (M) or replica (R).
        #[arg(long, value_parser = ["master", "replica"])]
        side: String,
        /// The server.
        #[arg(long)]
        redis_url: String,
        /// File of `user = "secret"` lines, one per enabled user (and for --as).
        #[arg(long)]
        passwords: PathBuf,
        /// User to connect as (default first, admin afterwards).
        #[arg(long = "as", default_value = "default")]
        as_user: String,
        /// Rule file instead of the shipped one.
        #[arg(long)]
        rules: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// Write a new Ed25519 key file (mode 0600; never overwrites one) and
    /// print its public forms: did:key, verification method, vkey. The
    /// private key is never printed. Point `attestation.key_file` or
    /// `settlement.exchange_key_file` / `settlement.wsp_key_file` at it
    /// (give settlement keys a `--name` of your own, e.g.
    /// `exchange.example/settlement`: verifiers see it).
    Generate {
        /// The key file to create.
        #[arg(long)]
        out: PathBuf,
        /// The key's name (a C2SP signed-note key name).
        #[arg(long, default_value = openoes::attestation::KEY_NAME)]
        name: String,
    },
}

#[derive(Debug, Subcommand)]
enum TokensCommand {
    /// Print a fresh random token (once: it is stored nowhere) and the
    /// `[[auth.tokens]]` entry to paste into the config, which holds only
    /// its SHA-256.
    Create {
        /// The principal's name (audit lines and rate limits use it).
        #[arg(long)]
        name: String,
        /// A role it holds (repeat for several): wsp, exchange, verifier,
        /// issuer, quote-ingest, reader, admin.
        #[arg(long = "role", required = true, value_parser = parse_role)]
        roles: Vec<CallerRole>,
    },
}

fn parse_role(name: &str) -> Result<CallerRole, String> {
    CallerRole::parse(name).ok_or_else(|| {
        let all: Vec<_> = CallerRole::ALL.iter().map(|r| r.name()).collect();
        format!("not a role; one of {}", all.join(", "))
    })
}

#[derive(Debug, Subcommand)]
enum BenchCommand {
    /// Watch fan-out (the stream bridge, in this process): latency from
    /// XADD to each subscriber, events lost, RSS with idle watches.
    Watch {
        /// The Redis to publish to and watch (credentials may be in the URL).
        #[arg(long, default_value = "redis://127.0.0.1:6379")]
        redis_url: String,
        /// Subscribers receiving every event.
        #[arg(long, default_value_t = 100)]
        subscribers: usize,
        /// Events per second.
        #[arg(long, default_value_t = 5000)]
        rate: u64,
        /// Seconds of publishing.
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// Idle subscribers for the memory figure.
        #[arg(long, default_value_t = 10_000)]
        idle: usize,
        /// Also write the figures as JSON here.
        #[arg(long)]
        json: Option<PathBuf>,
    },
    /// GetCreditInventory vs redis-benchmark HGETALL, and the credit round
    /// trip (RequestCredit with wait, auto-accepting subscribers in this
    /// process) paced and at the maximum rate. Needs a gateway serving both
    /// roles.
    Credit {
        #[command(flatten)]
        load: LoadArgs,
        /// Round trips per second of the paced scenario.
        #[arg(long, default_value_t = 500)]
        rate: u64,
        /// Also write the figures as JSON here.
        #[arg(long)]
        json: Option<PathBuf>,
    },
    /// The CreatePledge round trip (with wait, auto-accepting subscribers
    /// in this process) next to the credit round trip, paced and at the
    /// maximum rate, in one run. Needs a gateway serving both roles.
    Pledge {
        #[command(flatten)]
        load: LoadArgs,
        /// Round trips per second of the paced scenarios.
        #[arg(long, default_value_t = 500)]
        rate: u64,
        /// Also write the figures as JSON here.
        #[arg(long)]
        json: Option<PathBuf>,
    },
    /// SettlementService through a gateway serving both roles with both
    /// settlement keys (`openoes dev`): confirmations per second on a
    /// 10,000-line cycle, CloseSettlementCycle of a cycle of `--reports`,
    /// GetSettlementProof and the proof size, next to redis-benchmark XADD
    /// and the gRPC floor.
    Settlement {
        #[command(flatten)]
        load: LoadArgs,
        /// Reports in the cycle whose close is timed.
        #[arg(long, default_value_t = 100_000)]
        reports: u64,
        /// Also write the figures as JSON here.
        #[arg(long)]
        json: Option<PathBuf>,
    },
    /// The attestation pipeline through a gateway with an issuer key: XADD
    /// to issued attestation (signing included), paced and as a burst,
    /// next to Ed25519 signs/s on one core and redis-benchmark XADD.
    Attest {
        /// The Redis the gateway attests on (M), as a user that may XADD to
        /// verification_stream and read the attestation events.
        #[arg(long, default_value = "redis://127.0.0.1:6379")]
        redis_url: String,
        /// Results per second of the paced run.
        #[arg(long, default_value_t = 1000)]
        rate: u64,
        /// Seconds of the paced run.
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// Results XADDed at once for the maximum rate.
        #[arg(long, default_value_t = 20_000)]
        burst: u64,
        /// Also write the figures as JSON here.
        #[arg(long)]
        json: Option<PathBuf>,
    },
    /// GetQuote, single hop crossing 10 bins and 3 hops, vs redis-benchmark
    /// MGET of 10 keys. Writes its own BENCH-* pools through UpsertPool.
    Quote {
        #[command(flatten)]
        load: LoadArgs,
        /// Also write the figures as JSON here.
        #[arg(long)]
        json: Option<PathBuf>,
    },
}

/// Load against a gateway, shared by `bench quote` and `bench credit`.
#[derive(Debug, clap::Args)]
struct LoadArgs {
    /// Gateway address.
    #[arg(long, default_value = "127.0.0.1:50051")]
    addr: String,
    /// The Redis the baseline runs against (credentials may be in the URL).
    #[arg(long, default_value = "redis://127.0.0.1:6379")]
    redis_url: String,
    /// Requests in flight; per performance.md, 32 for quote, 50 for credit.
    #[arg(long)]
    concurrency: Option<usize>,
    /// Seconds measured per scenario.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// HTTP/2 connections to spread requests over.
    #[arg(long, default_value_t = 4)]
    connections: usize,
}

impl LoadArgs {
    fn options(self, default_concurrency: usize) -> bench::BenchOptions {
        bench::BenchOptions {
            addr: self.addr,
            redis_url: self.redis_url,
            concurrency: self.concurrency.unwrap_or(default_concurrency),
            duration: std::time::Duration::from_secs(self.seconds),
            connections: self.connections,
        }
    }
}

/// Prints the figures as a table, and writes them as JSON if asked.
fn report(
    figures: &[bench::Figure],
    json: Option<PathBuf>,
) -> Result<(), Box<dyn std::error::Error>> {
    print!("{}", bench::table(figures));
    if let Some(path) = json {
        std::fs::write(&path, serde_json::to_string_pretty(figures)? + "\n")?;
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let file = match &cli.command {
        Command::Serve { config }
        | Command::Dev { config, .. }
        | Command::Config { config }
        | Command::Doctor { config }
        | Command::Pools {
            command: PoolsCommand::Load { config, .. },
        } => config.as_deref(),
        Command::Bench { .. }
        | Command::Acl { .. }
        | Command::Keys { .. }
        | Command::Tokens { .. } => None,
    };
    let mut config = match Config::load(file) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("openoes: {}", ErrorChain(&e));
            return ExitCode::from(2);
        }
    };
    if let Command::Config { .. } = cli.command {
        print!("{}", config.to_toml());
        return ExitCode::SUCCESS;
    }
    if let Command::Keys {
        command: KeysCommand::Generate { out, name },
    } = &cli.command
    {
        return generate_key(out, name);
    }
    if let Command::Tokens {
        command: TokensCommand::Create { name, roles },
    } = &cli.command
    {
        return create_token(name, roles);
    }
    if let Command::Serve { .. } = cli.command
        && let Err(e) = openoes::attestation::check_keys(&config)
    {
        eprintln!("openoes: attestation.key_file: {}", ErrorChain(&e));
        return ExitCode::from(2);
    }
    if let Command::Serve { .. } = cli.command
        && let Err(e) = openoes::settlement::check_keys(&config)
    {
        eprintln!("openoes: {}", ErrorChain(&e));
        return ExitCode::from(2);
    }
    // After the key checks: a broken key is reported even in a config
    // that has not decided on auth yet.
    if let Command::Serve { .. } = cli.command
        && let Err(e) = openoes::server::check_security(&config, config.grpc.listen)
    {
        eprintln!("openoes: {}", ErrorChain(&e));
        return ExitCode::from(2);
    }
    if let Command::Pools {
        command: PoolsCommand::Load {
            redis_url: Some(url),
            ..
        },
    } = &cli.command
    {
        config.redis.master.url = url.clone();
    }
    init_logging(&config);
    // redis-rs's rustls needs a process-wide crypto provider; an Err only
    // means one is already installed.
    let _ = rustls::crypto::ring::default_provider().install_default();

    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("openoes: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        let stop = shutdown::signal_received()?;
        match cli.command {
            Command::Serve { .. } => {
                let listener = tokio::net::TcpListener::bind(config.grpc.listen).await?;
                services::run(config, listener, stop).await?;
            }
            Command::Dev {
                data_dir,
                listen,
                auth,
                redis_server,
                ..
            } => {
                let options = DevOptions {
                    data_dir,
                    listen,
                    auth,
                    redis_server,
                };
                dev::run(config, options, stop).await?;
            }
            Command::Pools {
                command: PoolsCommand::Load { files, .. },
            } => {
                let redis = openoes::redis::Redis::new(&config.redis)?;
                let store = QuoteStore::new(redis.master.clone(), &config.streams)
                    .with_limits(&config.quote);
                // Validate every file before writing any: all or nothing.
                // Each file is one write, so the same size bounds as
                // UpsertPool (quote.max_bins_per_write) hold.
                let max_bins = config
                    .quote
                    .max_bins_per_write
                    .min(config.quote.max_bins_per_pool);
                // The first bad file stops the load before any write; a
                // failed write stops it too, naming its file (those before
                // it stay written, each atomic).
                let mut progress = progress::FileProgress::new(files.len());
                progress.pass("checking");
                let mut snapshots = Vec::with_capacity(files.len());
                for file in &files {
                    progress.current(&file.display().to_string());
                    snapshots.push(PoolFile::load(file, max_bins)?);
                    progress.checked();
                }
                progress.pass("writing");
                for (file, snapshot) in files.iter().zip(snapshots) {
                    let shown = file.display().to_string();
                    progress.current(&shown);
                    let written = store
                        .upsert_pool(&snapshot, true)
                        .await
                        .map_err(|e| format!("{shown}: {}", ErrorChain(&e)))?;
                    let verb = match (written.created, written.changed) {
                        (true, _) => "created",
                        (false, true) => "replaced",
                        (false, false) => "unchanged",
                    };
                    let what = format!("pool {}, {} bins", snapshot.pool.pool_id, written.bins);
                    progress.loaded(&shown, &format!("{what} ({verb})"), written.bins.into());
                    // stdout: the record a script reads, as before.
                    progress.print(&format!(
                        "{verb} pool {}: {} bins",
                        snapshot.pool.pool_id, written.bins
                    ));
                }
                progress.finish();
            }
            Command::Bench {
                command: BenchCommand::Quote { load, json },
            } => {
                let figures = bench::quote(&load.options(32)).await?;
                report(&figures, json)?;
            }
            Command::Bench {
                command: BenchCommand::Credit { load, rate, json },
            } => {
                let figures = bench::credit::run(&load.options(50), rate).await?;
                report(&figures, json)?;
            }
            Command::Bench {
                command:
                    BenchCommand::Settlement {
                        load,
                        reports,
                        json,
                    },
            } => {
                let figures = bench::settlement::run(&load.options(50), reports).await?;
                report(&figures, json)?;
            }
            Command::Bench {
                command: BenchCommand::Pledge { load, rate, json },
            } => {
                let figures = bench::credit::pledge(&load.options(50), rate).await?;
                report(&figures, json)?;
            }
            Command::Bench {
                command:
                    BenchCommand::Attest {
                        redis_url,
                        rate,
                        seconds,
                        burst,
                        json,
                    },
            } => {
                let options = bench::attest::AttestBenchOptions {
                    redis_url,
                    rate,
                    duration: std::time::Duration::from_secs(seconds),
                    burst,
                };
                let figures = bench::attest::run(&options).await?;
                report(&figures, json)?;
            }
            Command::Bench {
                command:
                    BenchCommand::Watch {
                        redis_url,
                        subscribers,
                        rate,
                        seconds,
                        idle,
                        json,
                    },
            } => {
                let options = bench::WatchBenchOptions {
                    redis_url,
                    subscribers,
                    rate,
                    duration: std::time::Duration::from_secs(seconds),
                    idle_subscribers: idle,
                };
                let figures = bench::watch(&options).await?;
                report(&figures, json)?;
            }
            Command::Acl {
                command:
                    AclCommand::Apply {
                        side,
                        redis_url,
                        passwords,
                        as_user,
                        rules,
                    },
            } => {
                let text = match rules {
                    Some(path) => std::fs::read_to_string(path)?,
                    None if side == "master" => openoes::acl::MASTER_RULES.to_string(),
                    None => openoes::acl::REPLICA_RULES.to_string(),
                };
                let users = openoes::acl::parse_rules(&text)?;
                let passwords = openoes::acl::read_passwords(&passwords)?;
                for user in openoes::acl::apply(&redis_url, &as_user, &users, &passwords).await? {
                    println!("set ACL user {user} on {side}");
                }
            }
            Command::Doctor { .. } => {
                let findings = openoes::doctor::run(&config).await;
                let failed = findings
                    .iter()
                    .filter(|f| f.verdict == openoes::doctor::Verdict::Fail)
                    .count();
                if failed > 0 {
                    println!("verdict: {failed} check(s) FAILED");
                    return Ok(false);
                }
                println!("verdict: all {} checks passed", findings.len());
            }
            Command::Config { .. } | Command::Keys { .. } | Command::Tokens { .. } => {}
        }
        Ok::<_, Box<dyn std::error::Error>>(true)
    });
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            tracing::error!(error = %ErrorChain(e.as_ref()), "openoes failed");
            eprintln!("openoes: {}", ErrorChain(e.as_ref()));
            ExitCode::FAILURE
        }
    }
}

/// `openoes tokens create`: a fresh token and its config entry.
fn create_token(name: &str, roles: &[CallerRole]) -> ExitCode {
    if !openoes::validate::is_valid_id(name) {
        eprintln!("openoes: --name {}", openoes::validate::ID_RULE);
        return ExitCode::from(2);
    }
    match openoes::server::auth::token::generate() {
        Ok(token) => {
            println!("# The token, shown once (give it to the caller; it is stored nowhere):");
            println!("# {token}");
            println!("# Callers send: authorization: Bearer <token>");
            println!("# Paste into the gateway's config:");
            print!(
                "{}",
                openoes::server::auth::token::config_entry(name, &token, roles)
            );
            ExitCode::SUCCESS
        }
        Err(_) => {
            eprintln!("openoes: the system random number generator failed");
            ExitCode::FAILURE
        }
    }
}

/// `openoes keys generate`: a new key file, and its public forms.
fn generate_key(out: &std::path::Path, name: &str) -> ExitCode {
    let written = openoes::crypto::keys::ServerKey::generate(name).and_then(|key| {
        key.write(out)?;
        Ok(key)
    });
    match written {
        Ok(key) => {
            println!("wrote {} (mode 0600)", out.display());
            println!("did:key              {}", key.did_key());
            println!("verification method  {}", key.verification_method());
            println!("vkey                 {}", key.vkey());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("openoes: {}", ErrorChain(&e));
            ExitCode::FAILURE
        }
    }
}

fn init_logging(config: &Config) {
    // Validated by Config::load; the fallback is never taken.
    let filter = EnvFilter::try_new(&config.log.filter).unwrap_or_else(|_| EnvFilter::new("info"));
    // Colours only for a person at a terminal: in a pipe or a log file
    // the escape codes are noise.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match config.log.format {
        LogFormat::Human => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}
