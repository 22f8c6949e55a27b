//! The acceptance bar of signed cycles: the proofs GetSettlementProof hands
//! out verify offline with code that shares nothing with ours, and changed
//! ones are refused, each for its own reason.
//!
//! - clients/python/verify_settlement.py (the Python standard library only:
//!   its own Ed25519, RFC 8785 and RFC 9162 code) checks every proof of a
//!   seven-report cycle and a one-report cycle with both signers' vkeys
//!   from GetSigningKeys, as grpcurl prints the replies;
//! - tests/settlement-verify/pymerkle_check.py rebuilds each cycle's tree
//!   from its leaves with pymerkle (PyPI, an independent RFC 9162 tree) and
//!   checks every audit path against it and against the checkpoint.
//!
//! Refused: a changed amount, another salt, a wrong index, a wrong size
//! (one that leads to the same root: only the signed size catches it), a
//! tampered path hash, a tampered checkpoint root or signature, a
//! checkpoint forged by a key of the exchange's name, a vkey of another key
//! of that name or of another name, a checkpoint not yet countersigned.
//!
//! Needs pymerkle in .tools/venv (scripts/lib.sh ensure_settlement_verifier;
//! scripts/test does it).

mod common;

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use base64::{Engine as _, engine::general_purpose::STANDARD};
use common::{
    Link,
    credit::{backend, serving},
    settlement::{self as s, confirm, cycle_until, pledged, report, submit, worked_example},
};
use openoes::{
    crypto::{keys::ServerKey, merkle, note::sign_note, tlog_proof::TlogProof},
    proto::settlement::v1::{
        self as pb, settlement_service_client::SettlementServiceClient as Client,
    },
};
use serde_json::{Value, json};
use tonic::transport::Channel;

const CYCLE: &str = "verify-7";
const SINGLE: &str = "verify-1";
const EXCHANGE: &str = "exchange.test/settlement";
const WSP: &str = "wsp.test/settlement";

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The venv python scripts/lib.sh installs pymerkle into.
fn venv_python() -> PathBuf {
    root().join(".tools/venv/bin/python")
}

/// A reply as grpcurl prints it (proto3 JSON): camelCase names, bytes in
/// base64, 64-bit integers as strings, fields at their default left out.
fn grpcurl_json(p: &pb::SettlementProof) -> Value {
    let mut proof = json!({
        "reportId": p.report_id,
        "cycleId": p.cycle_id,
        "leaf": p.leaf,
        "leafHash": STANDARD.encode(&p.leaf_hash),
        "index": p.index.to_string(),
        "size": p.size.to_string(),
        "auditPath": p.audit_path.iter().map(|h| STANDARD.encode(h)).collect::<Vec<_>>(),
        "checkpoint": p.checkpoint,
        "tlogProof": p.tlog_proof,
    });
    proof
        .as_object_mut()
        .expect("object")
        .retain(|_, v| !(*v == "" || *v == "0" || *v == json!([])));
    json!({ "proof": proof })
}

fn keys_json(keys: &[(&str, String, &str)]) -> Value {
    json!({
        "keys": keys.iter()
            .map(|(name, vkey, role)| json!({"name": name, "vkey": vkey, "role": role}))
            .collect::<Vec<_>>()
    })
}

/// The tlog proof text redone from the proof's index, path and checkpoint,
/// as a forger who edits one of them keeps the two forms agreeing.
fn retext(p: &mut pb::SettlementProof) {
    let mut tlog = TlogProof::parse(&p.tlog_proof).expect("tlog proof");
    tlog.index = p.index;
    tlog.inclusion_proof = p
        .audit_path
        .iter()
        .map(|h| h.as_slice().try_into().expect("32 bytes"))
        .collect();
    tlog.checkpoint = p.checkpoint.clone();
    p.tlog_proof = tlog.encode().expect("encode");
}

/// The proof with another leaf, its leaf hash recomputed (the forger's best).
fn with_leaf(p: &pb::SettlementProof, leaf: String) -> pb::SettlementProof {
    assert_ne!(leaf, p.leaf, "the edit changed the leaf");
    pb::SettlementProof {
        leaf_hash: merkle::leaf_hash(leaf.as_bytes()).to_vec(),
        leaf,
        ..p.clone()
    }
}

/// The leaf with another salt (its first hex digit changed).
fn other_salt(leaf: &str) -> String {
    let doc: Value = serde_json::from_str(leaf).expect("leaf");
    let salt = doc["salt"].as_str().expect("salt");
    let other = format!(
        "{}{}",
        if salt.starts_with('0') { "1" } else { "0" },
        &salt[1..]
    );
    leaf.replace(salt, &other)
}

/// (text, signature lines) of a signed note.
fn split_note(note: &str) -> (&str, Vec<&str>) {
    let at = note.rfind("\n\n").expect("signed note");
    (&note[..=at], note[at + 2..].lines().collect())
}

fn flip_b64(text: &str, at: usize) -> String {
    let mut bytes = STANDARD.decode(text).expect("base64");
    bytes[at] ^= 0x01;
    STANDARD.encode(bytes)
}

/// The checkpoint with the signature of `signer` changed in one bit.
fn tampered_signature(note: &str, signer: &str) -> String {
    let (text, lines) = split_note(note);
    let lines: Vec<String> = lines
        .iter()
        .map(|l| match l.strip_prefix(&format!("\u{2014} {signer} ")) {
            Some(b64) => format!("\u{2014} {signer} {}", flip_b64(b64, 20)),
            None => l.to_string(),
        })
        .collect();
    assert!(
        lines.iter().any(|l| !note.contains(l.as_str())),
        "{signer} signed"
    );
    format!("{text}\n{}\n", lines.join("\n"))
}

/// The checkpoint with its root line changed in one bit.
fn tampered_root(note: &str) -> String {
    let mut lines: Vec<String> = note.split('\n').map(String::from).collect();
    lines[2] = flip_b64(&lines[2], 0);
    lines.join("\n")
}

struct Run {
    code: Option<i32>,
    out: String,
}

fn run(program: impl AsRef<std::ffi::OsStr>, args: &[&std::ffi::OsStr]) -> Run {
    let out = Command::new(program.as_ref())
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run {:?}: {e}", program.as_ref()));
    Run {
        code: out.status.code(),
        out: format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    }
}

/// One verify_settlement.py run: its proof file, extra arguments, the
/// checks that must fail (none: it verifies), a phrase the output says.
struct Case {
    name: String,
    file: PathBuf,
    args: Vec<String>,
    fails: Vec<&'static str>,
    says: String,
}

fn verify_settlement(case: &Case) {
    let script = root().join("clients/python/verify_settlement.py");
    let mut args = vec![script.as_os_str(), case.file.as_os_str()];
    args.extend(case.args.iter().map(std::ffi::OsStr::new));
    let r = run("python3", &args);
    let name = &case.name;
    let text = &r.out;
    println!("verify_settlement.py, {name}: {text}");
    if case.fails.is_empty() {
        assert_eq!(r.code, Some(0), "{name}: {text}");
        assert_eq!(text.lines().next(), Some("OK"), "{name}: {text}");
    } else {
        assert_eq!(r.code, Some(1), "{name}: {text}");
        assert_eq!(text.lines().next(), Some("FAIL"), "{name}: {text}");
        let mut got: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("  "))
            .map(|l| l.split(':').next().unwrap_or(l))
            .collect();
        got.sort_unstable();
        let mut want = case.fails.clone();
        want.sort_unstable();
        assert_eq!(got, want, "{name}: its own reasons, and only those: {text}");
    }
    assert!(
        text.contains(&case.says),
        "{name}: says {:?}: {text}",
        case.says
    );
}

/// pymerkle_check.py on `cases` (name, proof JSON) with the cycle's
/// `leaves`: its report.
fn pymerkle(dir: &Path, file: &str, leaves: &[&str], cases: &[(String, Value)]) -> Value {
    let cases: Vec<Value> = cases
        .iter()
        .map(|(name, proof)| json!({"name": name, "proof": proof}))
        .collect();
    let input = json!({ "leaves": leaves, "cases": cases });
    let path = dir.join(file);
    std::fs::write(&path, input.to_string()).expect("write cases");
    let script = root().join("tests/settlement-verify/pymerkle_check.py");
    let r = run(venv_python(), &[script.as_os_str(), path.as_os_str()]);
    assert_eq!(r.code, Some(0), "pymerkle_check.py: {}", r.out);
    let report: Value = serde_json::from_str(&r.out).expect("pymerkle report");
    println!(
        "{}",
        serde_json::to_string_pretty(&report).unwrap_or_default()
    );
    report
}

/// The pymerkle verdict of `name`: ok if `fails` is empty, else exactly
/// those checks failed, and one error says `says`.
fn assert_pymerkle(report: &Value, name: &str, fails: &[&str], says: &str) {
    let result = report["results"]
        .as_array()
        .expect("results")
        .iter()
        .find(|r| r["name"] == name)
        .unwrap_or_else(|| panic!("no pymerkle result for {name}"));
    let errors: Vec<&str> = result["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .map(|e| e.as_str().expect("error text"))
        .collect();
    assert_eq!(result["ok"], fails.is_empty(), "{name}: {result}");
    let mut got: Vec<&str> = errors
        .iter()
        .map(|e| e.split(':').next().unwrap_or(e))
        .collect();
    got.sort_unstable();
    let mut want = fails.to_vec();
    want.sort_unstable();
    assert_eq!(
        got, want,
        "{name}: its own reasons, and only those: {result}"
    );
    assert!(
        errors.iter().any(|e| e.contains(says)) || says.is_empty(),
        "{name}: says {says:?}: {result}"
    );
}

async fn proof(client: &mut Client<Channel>, id: &str) -> pb::SettlementProof {
    client
        .get_settlement_proof(pb::GetSettlementProofRequest {
            report_id: id.into(),
        })
        .await
        .expect("proof")
        .into_inner()
        .proof
        .expect("proof")
}

async fn close(client: &mut Client<Channel>, cycle: &str) {
    let closed = client
        .close_settlement_cycle(pb::CloseSettlementCycleRequest {
            cycle_id: cycle.into(),
            wait: s::wait(10_000),
        })
        .await
        .expect("close")
        .into_inner();
    assert_eq!(closed.delivery, pb::Delivery::Recorded as i32, "{closed:?}");
}

#[tokio::test]
async fn independent_verifiers_accept_settlement_proofs_and_refuse_changed_proofs_for_their_reason()
{
    let python = venv_python();
    let has_pymerkle = Command::new(&python)
        .args(["-c", "import pymerkle"])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        has_pymerkle,
        "pymerkle is not installed in {}: run `source scripts/lib.sh; ensure_settlement_verifier` \
         (scripts/test does)",
        python.display()
    );
    let link = Link::start_secured().await;
    let dir = tempfile::tempdir().expect("tmp");
    let (_gateway, channel) = serving(s::config(&link, dir.path())).await;
    let _exchange = backend(channel.clone(), "ex", |_| None);
    let mut client = Client::new(channel.clone());

    // Seven users, one cycle: a tree of 4 + 2 + 1 leaves. Each user has
    // credit here (the WSP refuses reports of users it never credited);
    // carol and frank only buy.
    for (user, asset, amount) in [
        ("alice", "USDT", "70000"),
        ("bob", "USDT", "1000"),
        ("carol", "USDT", "100"),
        ("dave", "BTC", "1"),
        ("erin", "USDT", "2000"),
        ("frank", "BTC", "0.1"),
        ("grace", "ETH", "5"),
    ] {
        pledged(&channel, user, asset, amount).await;
    }
    let reports = [
        worked_example("v-alice", "alice", CYCLE),
        report(
            "v-bob",
            "bob",
            CYCLE,
            &[("BTC", "0.01", "60000")],
            &[("USDT", "600", "1")],
        ),
        report("v-carol", "carol", CYCLE, &[("ETH", "1", "3000")], &[]),
        report(
            "v-dave",
            "dave",
            CYCLE,
            &[("USDT", "12000", "1")],
            &[("BTC", "0.2", "60000")],
        ),
        report(
            "v-erin",
            "erin",
            CYCLE,
            &[("SOL", "10", "150")],
            &[("USDT", "1500", "1")],
        ),
        report("v-frank", "frank", CYCLE, &[("BTC", "0.001", "60000")], &[]),
        report(
            "v-grace",
            "grace",
            CYCLE,
            &[("USDT", "7000", "1")],
            &[("ETH", "2", "3500")],
        ),
        report("v-single", "frank", SINGLE, &[("ETH", "0.5", "3500")], &[]),
    ];
    for r in reports.iter().cloned() {
        let (_, delivery) = submit(&mut client, r).await.expect("submit");
        assert_eq!(delivery, pb::Delivery::Recorded);
    }
    close(&mut client, CYCLE).await;
    cycle_until(&mut client, CYCLE, pb::CycleStatus::Verified).await;
    // Before the verdicts: the exchange's signature alone.
    let uncosigned = proof(&mut client, "v-bob").await;
    for r in &reports {
        let decided = confirm(&mut client, &r.report_id).await.expect("confirm");
        assert_eq!(s::status(&decided), pb::SettlementStatus::Completed);
    }
    close(&mut client, SINGLE).await;
    let cycle = cycle_until(&mut client, CYCLE, pb::CycleStatus::Cosigned).await;
    assert_eq!((cycle.size, cycle.reports, cycle.undecided), (7, 7, 0));
    cycle_until(&mut client, SINGLE, pb::CycleStatus::Cosigned).await;

    let keys = client
        .get_signing_keys(pb::GetSigningKeysRequest {})
        .await
        .expect("keys")
        .into_inner()
        .keys;
    let named: Vec<(&str, &str)> = keys
        .iter()
        .map(|k| (k.name.as_str(), k.role.as_str()))
        .collect();
    assert_eq!(named, [(EXCHANGE, "exchange"), (WSP, "wsp")]);
    let mut proofs = Vec::new();
    for r in &reports[..7] {
        proofs.push(proof(&mut client, &r.report_id).await);
    }
    let single = proof(&mut client, "v-single").await;
    let mut indexes: Vec<u64> = proofs.iter().map(|p| p.index).collect();
    indexes.sort_unstable();
    assert_eq!(
        indexes,
        (0..7).collect::<Vec<_>>(),
        "one leaf at each index"
    );
    assert!(
        proofs
            .iter()
            .all(|p| p.size == 7 && p.checkpoint == cycle.checkpoint)
    );
    assert_eq!(
        (single.index, single.size, single.audit_path.len()),
        (0, 1, 0)
    );
    let at = |i: u64| proofs.iter().find(|p| p.index == i).expect("index").clone();
    let alice = proofs
        .iter()
        .find(|p| p.report_id == "v-alice")
        .expect("alice")
        .clone();

    let d = dir.path();
    let write = |file: &str, v: &Value| -> PathBuf {
        let path = d.join(file);
        std::fs::write(&path, v.to_string()).expect("write");
        path
    };
    let real: Vec<(&str, String, &str)> = keys
        .iter()
        .map(|k| (k.name.as_str(), k.vkey.clone(), k.role.as_str()))
        .collect();
    let keys_file = write("keys.json", &keys_json(&real));
    let twin = ServerKey::generate(EXCHANGE).expect("key");
    let impostor = ServerKey::generate("impostor.test/settlement").expect("key");
    let twin_keys = write(
        "keys-twin.json",
        &keys_json(&[(EXCHANGE, twin.vkey(), "exchange"), real[1].clone()]),
    );
    let impostor_keys = write(
        "keys-impostor.json",
        &keys_json(&[
            (impostor.name(), impostor.vkey(), "exchange"),
            real[1].clone(),
        ]),
    );
    let keys_arg = |file: &Path| vec!["--keys".to_string(), file.display().to_string()];

    // --- the changed proofs ---
    let mut forged: Vec<(&str, pb::SettlementProof)> = Vec::new();
    forged.push((
        "amount",
        with_leaf(
            &alice,
            alice
                .leaf
                .replace(r#""USDT":"-67500""#, r#""USDT":"-6750""#),
        ),
    ));
    forged.push(("salt", with_leaf(&alice, other_salt(&alice.leaf))));
    let mut index = at(2);
    index.index = 3; // its sibling's place: the same path, the hashes swapped
    retext(&mut index);
    forged.push(("index", index));
    // Leaf 0 of 8 has the same path and root as leaf 0 of 7: only the
    // signed size tells.
    forged.push(("size", pb::SettlementProof { size: 8, ..at(0) }));
    forged.push(("size-last-leaf", pb::SettlementProof { size: 8, ..at(6) }));
    let mut path = at(4);
    path.audit_path[1][0] ^= 0x01;
    retext(&mut path);
    forged.push(("path", path));
    let mut path_json = at(1);
    path_json.audit_path[0][7] ^= 0x01;
    forged.push(("path-not-in-tlog-proof", path_json));
    let mut root_changed = at(5);
    root_changed.checkpoint = tampered_root(&root_changed.checkpoint);
    retext(&mut root_changed);
    forged.push(("root", root_changed));
    let mut signature = at(3);
    signature.checkpoint = tampered_signature(&signature.checkpoint, EXCHANGE);
    retext(&mut signature);
    forged.push(("signature", signature));
    let mut countersignature = at(3);
    countersignature.checkpoint = tampered_signature(&countersignature.checkpoint, WSP);
    retext(&mut countersignature);
    forged.push(("countersignature", countersignature));
    // The exchange's line replaced by one of another key of its name.
    let mut twin_signed = at(0);
    let (text, lines) = split_note(&twin_signed.checkpoint);
    let wsp_line = lines.iter().find(|l| l.contains(WSP)).expect("wsp line");
    twin_signed.checkpoint = format!(
        "{}{wsp_line}\n",
        sign_note(text, twin.note_signer()).expect("sign")
    );
    retext(&mut twin_signed);
    forged.push(("forged-checkpoint", twin_signed));
    forged.push((
        "leaf-hash",
        pb::SettlementProof {
            leaf_hash: merkle::leaf_hash(b"another leaf").to_vec(),
            ..alice.clone()
        },
    ));
    let spaced =
        serde_json::to_string_pretty(&serde_json::from_str::<Value>(&alice.leaf).expect("leaf"))
            .expect("json");
    forged.push(("not-canonical", with_leaf(&alice, spaced)));

    // --- a. verify_settlement.py ---
    let mut cases = Vec::new();
    for p in proofs.iter().chain([&single]) {
        let user = reports
            .iter()
            .find(|r| r.report_id == p.report_id)
            .expect("report")
            .user_id
            .clone();
        let mut args = keys_arg(&keys_file);
        args.extend([
            "--report-id".into(),
            p.report_id.clone(),
            "--user-id".into(),
            user,
        ]);
        cases.push(Case {
            name: format!("good {}", p.report_id),
            file: write(&format!("proof-{}.json", p.report_id), &grpcurl_json(p)),
            args,
            fails: vec![],
            says: format!(
                "leaf {} of {} under root {}, origin {EXCHANGE}/{}",
                p.index,
                p.size,
                p.checkpoint.split('\n').nth(2).expect("root line"),
                p.cycle_id
            ),
        });
    }
    // The C2SP tlog proof text alone, with the leaf beside it.
    let p = at(6);
    let tlog = d.join("proof-6.tlog");
    std::fs::write(&tlog, &p.tlog_proof).expect("write");
    std::fs::write(d.join("leaf-6.json"), &p.leaf).expect("write");
    let mut args = keys_arg(&keys_file);
    args.extend(["--leaf".into(), d.join("leaf-6.json").display().to_string()]);
    cases.push(Case {
        name: "tlog proof alone".into(),
        file: tlog.clone(),
        args: args.clone(),
        fails: vec![],
        says: format!("signed by {EXCHANGE}+"),
    });
    std::fs::write(d.join("leaf-6-changed.json"), other_salt(&p.leaf)).expect("write");
    let good = |name: &str| d.join(format!("proof-{name}.json"));
    let expected: Vec<(&str, Vec<&'static str>, String)> = vec![
        (
            "amount",
            vec!["root"],
            "the signed checkpoint's root is".into(),
        ),
        ("salt", vec!["root"], "not the signed one".into()),
        ("index", vec!["root"], "the audit path leads to".into()),
        (
            "size",
            vec!["size"],
            "the proof says 8 leaves, the signed checkpoint 7".into(),
        ),
        (
            "size-last-leaf",
            vec!["inclusion", "size"],
            "too few for leaf 6 of 8".into(),
        ),
        ("path", vec!["root"], "the audit path leads to".into()),
        (
            "path-not-in-tlog-proof",
            vec!["root", "tlog_proof"],
            "its audit path is not the proof's".into(),
        ),
        (
            "root",
            vec!["root", "signature", "signature"],
            format!("invalid signature by {EXCHANGE}+"),
        ),
        (
            "signature",
            vec!["signature"],
            format!("invalid signature by {EXCHANGE}+"),
        ),
        (
            "countersignature",
            vec!["signature"],
            format!("invalid signature by {WSP}+"),
        ),
        (
            "forged-checkpoint",
            vec!["signature"],
            format!("no signature by {EXCHANGE}+"),
        ),
        (
            "leaf-hash",
            vec!["leaf hash"],
            "SHA-256(0x00 || leaf) is".into(),
        ),
        (
            "not-canonical",
            vec!["leaf", "root"],
            "not RFC 8785 canonical JSON".into(),
        ),
    ];
    assert_eq!(expected.len(), forged.len());
    for ((name, p), (want_name, fails, says)) in forged.iter().zip(expected) {
        assert_eq!(*name, want_name);
        cases.push(Case {
            name: (*name).into(),
            file: write(&format!("forged-{name}.json"), &grpcurl_json(p)),
            args: keys_arg(&keys_file),
            fails,
            says,
        });
    }
    let bob = good("v-bob");
    let uncosigned_file = write("proof-uncosigned.json", &grpcurl_json(&uncosigned));
    let twin_id = format!("{EXCHANGE}+{}", twin.vkey().split('+').nth(1).expect("id"));
    cases.extend([
        Case {
            name: "a vkey of another key of the exchange's name".into(),
            file: bob.clone(),
            args: keys_arg(&twin_keys),
            fails: vec!["signature"],
            says: format!("no signature by {twin_id}"),
        },
        Case {
            name: "a vkey of another name".into(),
            file: bob.clone(),
            args: keys_arg(&impostor_keys),
            fails: vec!["origin", "signature"],
            says: format!("no signature by {}+", impostor.name()),
        },
        Case {
            name: "a vkey of another name, the origin given".into(),
            file: bob.clone(),
            args: [
                keys_arg(&impostor_keys),
                vec!["--origin".into(), format!("{EXCHANGE}/{CYCLE}")],
            ]
            .concat(),
            fails: vec!["signature"],
            says: format!("no signature by {}+", impostor.name()),
        },
        Case {
            name: "another report's proof".into(),
            file: bob.clone(),
            args: [
                keys_arg(&keys_file),
                vec!["--report-id".into(), "v-carol".into()],
            ]
            .concat(),
            fails: vec!["report"],
            says: "the leaf is report 'v-bob', not 'v-carol'".into(),
        },
        Case {
            name: "another user's proof".into(),
            file: bob.clone(),
            args: [
                keys_arg(&keys_file),
                vec!["--user-id".into(), "carol".into()],
            ]
            .concat(),
            fails: vec!["user"],
            says: "the leaf is user 'bob''s, not 'carol''s".into(),
        },
        Case {
            name: "not countersigned yet, both keys asked for".into(),
            file: uncosigned_file.clone(),
            args: keys_arg(&keys_file),
            fails: vec!["signature"],
            says: format!("no signature by {WSP}+"),
        },
        Case {
            name: "not countersigned yet, the exchange's key".into(),
            file: uncosigned_file,
            args: [
                keys_arg(&keys_file),
                vec!["--role".into(), "exchange".into()],
            ]
            .concat(),
            fails: vec![],
            says: format!("signed by {EXCHANGE}+"),
        },
        Case {
            name: "a vkey argument, no keys file".into(),
            file: good("v-carol"),
            args: vec![real[0].1.clone(), real[1].1.clone()],
            fails: vec![],
            says: format!("signed by {EXCHANGE}+"),
        },
        Case {
            name: "tlog proof alone, another leaf".into(),
            file: tlog,
            args: [
                keys_arg(&keys_file),
                vec![
                    "--leaf".into(),
                    d.join("leaf-6-changed.json").display().to_string(),
                ],
            ]
            .concat(),
            fails: vec!["root"],
            says: "the audit path leads to".into(),
        },
    ]);
    for case in &cases {
        verify_settlement(case);
    }

    // --- b. pymerkle ---
    let leaves: Vec<&str> = proofs.iter().map(|p| p.leaf.as_str()).collect();
    let mut pm_cases: Vec<(String, Value)> = proofs
        .iter()
        .map(|p| (format!("good {}", p.report_id), grpcurl_json(p)))
        .collect();
    pm_cases.extend(
        forged
            .iter()
            .map(|(name, p)| ((*name).to_string(), grpcurl_json(p))),
    );
    pm_cases.push(("uncosigned".into(), grpcurl_json(&uncosigned)));
    let report = pymerkle(d, "pymerkle-7.json", &leaves, &pm_cases);
    let checkpoint_root = STANDARD
        .decode(cycle.checkpoint.split('\n').nth(2).expect("root line"))
        .expect("root");
    assert_eq!(
        report["root"],
        hex(&checkpoint_root),
        "pymerkle's root of the leaves is the signed one"
    );
    assert_eq!(report["root"], hex(&cycle.root));
    assert_eq!(report["size"], 7);
    for p in &proofs {
        assert_pymerkle(&report, &format!("good {}", p.report_id), &[], "");
    }
    for (name, fails, says) in [
        (
            "amount",
            &["path", "tree"][..],
            "the leaf is not in pymerkle's tree",
        ),
        ("salt", &["path", "tree"], "State does not match"),
        ("index", &["path", "tree"], "Index does not match"),
        ("size", &["path", "tree"], "Size does not match"),
        ("size-last-leaf", &["path", "tree"], "Size does not match"),
        (
            "path",
            &["path", "tree", "tree"],
            "pymerkle's audit path of the leaf is not the proof's",
        ),
        (
            "path-not-in-tlog-proof",
            &["path", "tree", "tree"],
            "State does not match",
        ),
        (
            "root",
            &["path", "tree"],
            "pymerkle's root of the cycle's leaves is not the checkpoint's",
        ),
        // Signatures are verify_settlement.py's business: the math holds.
        ("signature", &[], ""),
        ("countersignature", &[], ""),
        ("forged-checkpoint", &[], ""),
        ("uncosigned", &[], ""),
        (
            "leaf-hash",
            &["leaf hash"],
            "pymerkle's leaf hash is not the proof's",
        ),
        (
            "not-canonical",
            &["path", "tree"],
            "the leaf is not in pymerkle's tree",
        ),
    ] {
        assert_pymerkle(&report, name, fails, says);
    }
    assert_eq!(
        report["results"].as_array().map(Vec::len),
        Some(pm_cases.len()),
        "a verdict for every case"
    );
    let one = pymerkle(
        d,
        "pymerkle-1.json",
        &[single.leaf.as_str()],
        &[("single".into(), grpcurl_json(&single))],
    );
    assert_eq!(one["size"], 1);
    assert_eq!(
        one["root"],
        hex(&merkle::leaf_hash(single.leaf.as_bytes())),
        "a tree of one is its leaf hash"
    );
    assert_pymerkle(&one, "single", &[], "");
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
