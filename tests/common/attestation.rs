//! Attestation test helpers: issuer keys, configs, a gateway as a child
//! process (to SIGKILL), foreign producers, waits, and the invariants every
//! attestation test ends with.

use std::{
    collections::{HashMap, HashSet},
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

use openoes::{
    attestation::{keys, model},
    config::Config,
    crypto::{data_integrity, keys::ServerKey},
    proto::attestation::v1::{self as pb, attestation_service_client::AttestationServiceClient},
    redis::process::RedisProcess,
    streams::StreamId,
};
use tonic::transport::Channel;

use super::Link;

/// A new issuer key file in `dir`, named `name`.
pub fn issuer_key(dir: &Path, name: &str) -> (String, ServerKey) {
    let path = dir.join(name);
    let key = ServerKey::generate("openoes.test/attestation").expect("generate");
    key.write(&path).expect("write key");
    (
        path.display().to_string(),
        ServerKey::read(&path).expect("read back"),
    )
}

/// The secured link's config with an issuer key and fast reclaim: an entry
/// idle 1 s on a dead consumer is reclaimed.
pub fn attested_config(link: &Link, key_file: &str) -> Config {
    let mut config = link.secured_config();
    config.attestation.key_file = key_file.to_string();
    config.streams.claim_min_idle = Duration::from_secs(1);
    config.streams.block = Duration::from_millis(500);
    config
}

/// A client of the attestation service.
pub fn client(channel: &Channel) -> AttestationServiceClient<Channel> {
    AttestationServiceClient::new(channel.clone())
}

/// A SubmitVerification request.
pub fn submission(
    request_id: &str,
    subject: &str,
    verified_ms: i64,
) -> pb::SubmitVerificationRequest {
    pb::SubmitVerificationRequest {
        request_id: request_id.into(),
        subject: subject.into(),
        did_type: "did:pkh".into(),
        result: pb::VerificationResult::Passed as i32,
        evidence_hash: "abc123".into(),
        verified_at: Some(openoes::time::timestamp_ms(verified_ms)),
    }
}

/// Unix ms now.
pub fn now_ms() -> i64 {
    openoes::time::now().ms as i64
}

/// XADDs a result as a foreign producer would (plain Redis, admin user).
pub async fn xadd(master: &RedisProcess, fields: &[(&str, &str)]) -> String {
    let mut cmd = redis::cmd("XADD");
    cmd.arg(keys::VERIFICATION_STREAM).arg("*");
    for (k, v) in fields {
        cmd.arg(*k).arg(*v);
    }
    master.query(&mut cmd).await.expect("xadd")
}

/// The attestation id of a request_id.
pub fn id_of(request_id: &str) -> String {
    model::attestation_id(Some(request_id), StreamId::default())
}

/// The attestation id of a result without request_id.
pub fn id_of_entry(entry_id: &str) -> String {
    model::attestation_id(None, entry_id.parse().expect("entry id"))
}

/// Polls GetAttestation until `id` exists, or panics after `within`.
pub async fn wait_for_attestation(
    client: &mut AttestationServiceClient<Channel>,
    id: &str,
    within: Duration,
) -> pb::Attestation {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let got = client
            .get_attestation(pb::GetAttestationRequest {
                attestation_id: id.into(),
            })
            .await;
        match got {
            Ok(r) => return r.into_inner().attestation.expect("attestation"),
            Err(s) if s.code() == tonic::Code::NotFound => {}
            Err(s) => panic!("GetAttestation {id}: {s:?}"),
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "attestation {id} not issued within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Attestations issued so far (the issue sequence).
pub async fn issued(master: &RedisProcess) -> u64 {
    let seq: Option<u64> = master
        .query(redis::cmd("GET").arg(keys::SEQ))
        .await
        .expect("get seq");
    seq.unwrap_or(0)
}

/// Waits until `n` attestations are issued, or panics after `within`.
pub async fn wait_for_issued(master: &RedisProcess, n: u64, within: Duration) {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let now = issued(master).await;
        if now >= n {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{now} of {n} attestations issued within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Entries pending in the attestation group, per consumer.
pub async fn pending_by_consumer(master: &RedisProcess) -> HashMap<String, u64> {
    let reply: redis::Value = master
        .query(
            redis::cmd("XPENDING")
                .arg(keys::VERIFICATION_STREAM)
                .arg(keys::GROUP),
        )
        .await
        .unwrap_or(redis::Value::Nil);
    let mut out = HashMap::new();
    if let redis::Value::Array(parts) = reply
        && let Some(redis::Value::Array(consumers)) = parts.get(3)
    {
        for c in consumers {
            if let redis::Value::Array(pair) = c
                && let [name, count] = pair.as_slice()
            {
                let count = openoes::redis::value_text(count).parse().unwrap_or(0);
                out.insert(openoes::redis::value_text(name), count);
            }
        }
    }
    out
}

/// One connection to `redis`: as the tests' admin where ACLs are on.
pub async fn connection(redis: &RedisProcess) -> redis::aio::MultiplexedConnection {
    for url in [
        format!(
            "redis://admin:{}@127.0.0.1:{}",
            super::TEST_PASSWORDS[2].1,
            redis.port()
        ),
        redis.url(),
    ] {
        let client = redis::Client::open(url).expect("client");
        let config =
            redis::AsyncConnectionConfig::new().set_response_timeout(Some(Duration::from_secs(10)));
        if let Ok(mut conn) = client
            .get_multiplexed_async_connection_with_config(&config)
            .await
            && redis::cmd("PING")
                .query_async::<String>(&mut conn)
                .await
                .is_ok()
        {
            return conn;
        }
    }
    panic!("cannot connect to redis on {}", redis.port());
}

/// Every record of the given attestation ids (pipelined).
pub async fn records(master: &RedisProcess, ids: &[String]) -> Vec<model::AttestationRecord> {
    let mut conn = connection(master).await;
    let mut out = Vec::new();
    for chunk in ids.chunks(100) {
        let mut pipe = redis::pipe();
        for id in chunk {
            pipe.hgetall(keys::attestation(id));
        }
        let hashes: Vec<openoes::streams::Fields> =
            pipe.query_async(&mut conn).await.expect("hgetall");
        for (id, fields) in chunk.iter().zip(hashes) {
            assert!(!fields.is_empty(), "attestation {id} missing");
            out.push(model::AttestationRecord::parse(&fields));
        }
    }
    out
}

/// The invariants every attestation test ends with: exactly one
/// attestation per accepted result (`ids`, and no others: the issue
/// sequence is their number), each credential verifies against the issuer
/// key that signed it, no status list index is used twice, each is in its
/// subject's index, one "issued" event each, nothing left pending.
pub async fn check_invariants(master: &RedisProcess, ids: &[String], keys_ok: &[&ServerKey]) {
    assert_eq!(
        issued(master).await,
        ids.len() as u64,
        "exactly one attestation per accepted result"
    );
    let unique: HashSet<&String> = ids.iter().collect();
    assert_eq!(unique.len(), ids.len(), "the test's ids are distinct");
    let records = records(master, ids).await;
    let mut conn = connection(master).await;
    let mut slots = HashSet::new();
    for r in &records {
        let doc: serde_json::Value = serde_json::from_str(&r.credential).expect("json");
        let key = keys_ok
            .iter()
            .find(|k| k.verification_method() == r.key_id)
            .unwrap_or_else(|| {
                panic!("{} signed by an unknown key {}", r.attestation_id, r.key_id)
            });
        data_integrity::verify_proof_with_key(&doc, &key.public_key())
            .unwrap_or_else(|e| panic!("{} does not verify: {e}", r.attestation_id));
        assert_eq!(doc["id"], format!("urn:uuid:{}", r.attestation_id));
        assert!(
            slots.insert((r.list_id.clone(), r.list_index)),
            "status list index {}/{} used twice",
            r.list_id,
            r.list_index
        );
        let score: Option<f64> = redis::cmd("ZSCORE")
            .arg(keys::subject(&r.subject))
            .arg(&r.attestation_id)
            .query_async(&mut conn)
            .await
            .expect("zscore");
        assert_eq!(
            score,
            Some(r.seq as f64),
            "{} in its subject's index",
            r.attestation_id
        );
    }
    let events = xrange_all(master, keys::EVENTS).await;
    let issued_events: HashMap<&str, usize> = events
        .iter()
        .filter(|(_, f)| f["type"] == "issued")
        .fold(HashMap::new(), |mut m, (_, f)| {
            *m.entry(f["attestation_id"].as_str()).or_default() += 1;
            m
        });
    for id in ids {
        assert_eq!(
            issued_events.get(id.as_str()),
            Some(&1),
            "one issued event for {id}"
        );
    }
    assert_eq!(issued_events.len(), ids.len(), "no other issued events");
    let pending: u64 = pending_by_consumer(master).await.values().sum();
    assert_eq!(pending, 0, "nothing left pending in the group");
}

/// The gateway as a child process (`openoes serve`), to SIGKILL.
pub struct GatewayProcess {
    child: Child,
    pub addr: SocketAddr,
    pub log: PathBuf,
}

impl GatewayProcess {
    /// Starts `openoes serve` with `config` (its listen port chosen here).
    pub fn start(mut config: Config, dir: &Path, name: &str) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .expect("free port")
            .local_addr()
            .expect("addr")
            .port();
        config.grpc.listen = SocketAddr::from(([127, 0, 0, 1], port));
        let file = dir.join(format!("{name}.toml"));
        std::fs::write(&file, toml::to_string(&config).expect("toml")).expect("write config");
        let log = dir.join(format!("{name}.log"));
        let child = Command::new(env!("CARGO_BIN_EXE_openoes"))
            .arg("serve")
            .arg("--config")
            .arg(&file)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log).expect("log"))
            .stderr(std::fs::File::create(dir.join(format!("{name}.err"))).expect("log"))
            .spawn()
            .expect("spawn openoes serve");
        Self {
            child,
            addr: config.grpc.listen,
            log,
        }
    }

    /// A channel to it, once it listens (or panics after `within`).
    pub async fn channel(&self, within: Duration) -> Channel {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let attempt = Channel::from_shared(format!("http://{}", self.addr))
                .expect("uri")
                .connect_timeout(Duration::from_millis(500))
                .connect()
                .await;
            if let Ok(channel) = attempt {
                return channel;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "gateway on {} did not listen within {within:?}",
                self.addr
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Its pid.
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Sends `signal` (e.g. "STOP", "CONT", "KILL") to it.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.pid().to_string())
            .status()
            .expect("kill");
        assert!(status.success(), "kill -{signal}");
    }

    /// SIGKILL, and reap it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for GatewayProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Every entry of the stream at `key` on `redis` (as its configured user),
/// oldest first, values as text.
pub async fn xrange_all(
    redis: &openoes::redis::process::RedisProcess,
    key: &str,
) -> Vec<super::Entry> {
    let reply: redis::streams::StreamRangeReply = redis
        .query(redis::cmd("XRANGE").arg(key).arg("-").arg("+"))
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
