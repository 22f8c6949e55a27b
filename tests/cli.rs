//! The `openoes` binary: config layering and errors, and `openoes dev`'s
//! whole life (start, attach file, health, clean stop on SIGTERM and
//! SIGINT with no redis-server left behind).

mod common;

use std::{
    path::Path,
    process::{Command, Output, Stdio},
    time::{Duration, Instant},
};

use common::wait_for_health;
use rustix::process::{Pid, Signal, kill_process};
use tonic::transport::Channel;
use tonic_health::pb::health_check_response::ServingStatus;

const OPENOES: &str = env!("CARGO_BIN_EXE_openoes");

fn openoes(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(OPENOES);
    cmd.args(args);
    // Only the variables a test sets, so the developer's shell cannot leak in.
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("OPENOES__")) {
        cmd.env_remove(k);
    }
    cmd.envs(env.iter().copied());
    cmd.output().expect("run openoes")
}

fn text(out: &[u8]) -> String {
    String::from_utf8_lossy(out).into_owned()
}

#[test]
fn config_layers_defaults_then_file_then_env() {
    let dir = tempfile::tempdir().expect("tmp");
    let file = dir.path().join("openoes.toml");
    std::fs::write(
        &file,
        "roles = [\"exchange\"]\n[grpc]\nlisten = \"0.0.0.0:6000\"\n[redis]\npool_size = 3\n\
         [streams.maxlen]\n\"quote:events\" = 5000\n\
         [redis.replica]\nurl = \"redis://10.0.0.9:6380\"\npassword = \"hunter2\"\n",
    )
    .expect("write");
    let out = openoes(
        &["config", "--config", file.to_str().expect("utf8")],
        &[
            ("OPENOES__REDIS__POOL_SIZE", "7"),
            ("OPENOES__HEALTH__INTERVAL", "250ms"),
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let printed = text(&out.stdout);
    assert!(
        printed.contains("roles = [\"exchange\"]"),
        "file sets roles:\n{printed}"
    );
    assert!(
        printed.contains("listen = \"0.0.0.0:6000\""),
        "file sets listen:\n{printed}"
    );
    assert!(
        printed.contains("pool_size = 7"),
        "env beats file:\n{printed}"
    );
    assert!(
        printed.contains("interval = \"250ms\""),
        "env sets a duration:\n{printed}"
    );
    assert!(
        printed.contains("url = \"redis://10.0.0.9:6380\""),
        "{printed}"
    );
    assert!(
        printed.contains("command_timeout = \"2s\""),
        "defaults fill the rest:\n{printed}"
    );
    assert!(
        !printed.contains("hunter2"),
        "secrets are redacted:\n{printed}"
    );
    assert!(printed.contains("<redacted>"), "{printed}");
    let maxlen = "\"quote:events\" = 5000";
    assert!(
        printed.contains(maxlen),
        "per-stream MAXLEN from the file:\n{printed}"
    );
}

#[test]
fn the_shipped_example_config_loads_and_matches_the_defaults() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/openoes.example.toml");
    let with_file = openoes(&["config", "--config", example], &[]);
    let defaults = openoes(&["config"], &[]);
    assert!(with_file.status.success(), "{}", text(&with_file.stderr));
    assert_eq!(
        text(&with_file.stdout),
        text(&defaults.stdout),
        "example documents the defaults"
    );
}

#[test]
fn bad_config_fails_with_a_message_naming_the_field() {
    let cases: &[(&[(&str, &str)], &str)] = &[
        (&[("OPENOES__REDIS__POOL_SIZE", "lots")], "pool_size"),
        (&[("OPENOES__REDIS__POOL_SIZE", "0")], "redis.pool_size"),
        (&[("OPENOES__HEALTH__INTERVAL", "0s")], "health.interval"),
        (&[("OPENOES__GRPC__LISTEN", "nowhere")], "listen"),
        (
            &[("OPENOES__REDIS__MASTER__URL", "http://x")],
            "redis.master.url",
        ),
        (&[("OPENOES__ROLES", "[]")], "roles"),
        (&[("OPENOES__ROLES", "[broker]")], "roles"),
        (&[("OPENOES__LOG__FILTER", "openoes=[")], "log.filter"),
        (&[("OPENOES__GRPC__TYPO", "1")], "typo"),
        // With 1, every credit request would be rejected at its first delivery.
        (
            &[("OPENOES__STREAMS__MAX_DELIVERIES", "1")],
            "streams.max_deliveries",
        ),
        (
            &[("OPENOES__CREDIT__CONSUMER_GROUPS", "[]")],
            "credit.consumer_groups",
        ),
    ];
    for (env, field) in cases {
        let out = openoes(&["config"], env);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{env:?} must fail: {stderr}");
        // Figment spells keys from the environment in upper case.
        let named = stderr.to_lowercase().contains(field);
        assert!(named, "{env:?}: message names {field:?}: {stderr}");
    }
    let out = openoes(&["serve", "--config", "/nonexistent/openoes.toml"], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("/nonexistent/openoes.toml does not exist"));
}

// === openoes dev ===

struct Dev {
    child: std::process::Child,
    dir: std::path::PathBuf,
}

impl Dev {
    fn spawn(dir: &Path, path_env: Option<&str>) -> Self {
        let mut cmd = Command::new(OPENOES);
        cmd.args(["dev", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(path) = path_env {
            // No server on PATH, and none named by the harness either.
            cmd.env("PATH", path)
                .env_remove(openoes::redis::process::SERVER_ENV);
        }
        let child = cmd.spawn().expect("spawn openoes dev");
        Self {
            child,
            dir: dir.to_path_buf(),
        }
    }

    fn dev_json(&self) -> serde_json::Value {
        let path = self.dir.join("dev.json");
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(text) = std::fs::read_to_string(&path)
                && let Ok(json) = serde_json::from_str(&text)
            {
                return json;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("dev.json did not appear in {:?}", self.dir);
    }

    fn signal(&self, signal: Signal) {
        let pid = Pid::from_raw(self.child.id() as i32).expect("pid");
        kill_process(pid, signal).expect("signal");
    }

    fn wait(&mut self, within: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "openoes dev did not exit within {within:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Dev {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn redis_pids(json: &serde_json::Value) -> Vec<i32> {
    ["master", "replica"]
        .iter()
        .map(|side| json[side]["pid"].as_i64().expect("pid in dev.json") as i32)
        .collect()
}

fn alive(pid: i32) -> bool {
    // A zombie still has a /proc entry but is dead; check its state.
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.split_whitespace()
            .nth(2)
            .is_some_and(|state| state != "Z")
    })
}

async fn serving(json: &serde_json::Value) {
    let addr = json["grpc"].as_str().expect("grpc address");
    let channel = Channel::from_shared(format!("http://{addr}"))
        .expect("uri")
        .connect()
        .await
        .expect("connect to dev");
    wait_for_health(
        &channel,
        "",
        ServingStatus::Serving,
        Duration::from_secs(10),
    )
    .await;
}

async fn dev_stops_cleanly_on(signal: Signal) {
    let dir = tempfile::tempdir().expect("tmp");
    let mut dev = Dev::spawn(dir.path(), None);
    let json = dev.dev_json();
    let pids = redis_pids(&json);
    assert!(pids.iter().all(|p| alive(*p)), "both redis-servers run");
    assert!(Path::new(json["master"]["conf"].as_str().expect("conf")).is_file());
    serving(&json).await;

    dev.signal(signal);
    let status = dev.wait(Duration::from_secs(15));
    assert!(status.success(), "exit status {status:?} after {signal:?}");
    for pid in pids {
        assert!(
            !alive(pid),
            "redis-server {pid} left behind after {signal:?}"
        );
    }
    assert!(
        !dir.path().join("dev.json").exists(),
        "dev.json removed on a clean stop"
    );
}

#[tokio::test]
async fn dev_stops_everything_on_sigterm() {
    dev_stops_cleanly_on(Signal::TERM).await;
}

#[tokio::test]
async fn dev_stops_everything_on_sigint() {
    dev_stops_cleanly_on(Signal::INT).await;
}

#[tokio::test]
async fn dev_reaps_redis_left_by_a_killed_run() {
    let dir = tempfile::tempdir().expect("tmp");
    let mut first = Dev::spawn(dir.path(), None);
    let pids = redis_pids(&first.dev_json());
    first.signal(Signal::KILL);
    first.wait(Duration::from_secs(5));
    assert!(
        pids.iter().all(|p| alive(*p)),
        "SIGKILL leaves redis running (nothing can stop that)"
    );

    // A new dev on the same data directory stops them before starting anew.
    let mut second = Dev::spawn(dir.path(), None);
    let deadline = Instant::now() + Duration::from_secs(15);
    while pids.iter().any(|p| alive(*p)) {
        assert!(
            Instant::now() < deadline,
            "leftover redis-servers {pids:?} still running"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    second.signal(Signal::TERM);
    assert!(second.wait(Duration::from_secs(15)).success());
}

#[test]
fn dev_without_redis_server_says_how_to_install_it() {
    let empty = tempfile::tempdir().expect("tmp");
    let mut dev = Dev::spawn(empty.path(), Some(empty.path().to_str().expect("utf8")));
    let status = dev.wait(Duration::from_secs(10));
    assert!(!status.success());
    let mut stderr = String::new();
    use std::io::Read;
    dev.child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut stderr)
        .expect("read");
    assert!(stderr.contains("redis-server was not found"), "{stderr}");
    assert!(stderr.contains("apt-get install"), "{stderr}");
}
