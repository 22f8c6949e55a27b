//! `openoes doctor` against a link set up as `openoes dev` sets it up (the
//! shipped ACLs, each role as its own user), then against broken ones: a
//! user with too many rights, the default user back on, R stopped.

mod common;

use std::process::{Command, Output};

use common::Link;

const OPENOES: &str = env!("CARGO_BIN_EXE_openoes");

/// Runs `openoes doctor` on `config`.
fn doctor(config: &openoes::config::Config) -> (bool, String) {
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("gateway.toml");
    std::fs::write(&path, toml::to_string(config).expect("toml")).expect("write config");
    let Output {
        status,
        stdout,
        stderr,
    } = Command::new(OPENOES)
        .args(["doctor", "--config"])
        .arg(&path)
        .output()
        .expect("run openoes doctor");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&stdout),
        String::from_utf8_lossy(&stderr)
    );
    (status.success(), text)
}

fn line<'a>(text: &'a str, check: &str) -> &'a str {
    text.lines()
        .find(|l| l.contains(check))
        .unwrap_or_else(|| panic!("no line for {check:?} in:\n{text}"))
}

#[tokio::test]
async fn a_good_link_passes_every_check() {
    let link = Link::start_secured().await;
    let (ok, text) = doctor(&link.secured_config());
    assert!(ok, "{text}");
    for check in [
        "M as wsp reachable",
        "R as wsp-reader reachable",
        "R as exchange reachable",
        "M as wsp ACL as shipped",
        "R as exchange ACL as shipped",
        "R as wsp-reader ACL as shipped",
        "M default user off",
        "R default user off",
        "replica link",
        "M as wsp can write mirror:credit:request",
        "R as exchange can write mirror:credit:response",
        "clock skew M vs R",
    ] {
        assert!(line(&text, check).starts_with("ok "), "{check}:\n{text}");
    }
    assert!(line(&text, "M engine").contains("WAITAOF"), "{text}");
    assert!(text.contains("verdict: all"), "{text}");
}

#[tokio::test]
async fn too_many_rights_and_an_open_default_user_fail_by_name() {
    let link = Link::start_secured().await;
    link.topology
        .replica
        .query::<()>(
            redis::cmd("ACL")
                .arg("SETUSER")
                .arg("exchange")
                .arg("~*")
                .arg("+@all"),
        )
        .await
        .expect("widen exchange");
    link.topology
        .master
        .query::<()>(
            redis::cmd("ACL")
                .arg("SETUSER")
                .arg("default")
                .arg("on")
                .arg("nopass"),
        )
        .await
        .expect("default on");
    let (ok, text) = doctor(&link.secured_config());
    assert!(!ok, "doctor must fail:\n{text}");
    let acl = line(&text, "R as exchange ACL as shipped");
    assert!(acl.starts_with("FAIL"), "{text}");
    assert!(acl.contains("CONFIG GET maxmemory"), "{acl}");
    assert!(acl.contains("DEL CI:openoes-doctor:absent"), "{acl}");
    assert!(
        line(&text, "M default user off").starts_with("FAIL"),
        "{text}"
    );
    // What is still right says so.
    assert!(
        line(&text, "M as wsp ACL as shipped").starts_with("ok "),
        "{text}"
    );
    assert!(
        line(&text, "R as wsp-reader ACL as shipped").starts_with("ok "),
        "{text}"
    );
    assert!(text.contains("verdict: 2 check(s) FAILED"), "{text}");
}

#[tokio::test]
async fn a_stopped_replica_fails_reachability_and_the_link() {
    let mut link = Link::start_secured().await;
    let config = link.secured_config();
    link.topology.replica.stop().await;
    let (ok, text) = doctor(&config);
    assert!(!ok, "doctor must fail:\n{text}");
    assert!(
        line(&text, "R as exchange reachable").starts_with("FAIL"),
        "{text}"
    );
    assert!(
        line(&text, "R as wsp-reader reachable").starts_with("FAIL"),
        "{text}"
    );
    assert!(
        line(&text, "M as wsp reachable").starts_with("ok "),
        "{text}"
    );
}

#[tokio::test]
async fn a_replica_cut_from_its_master_fails_the_link_check() {
    let mut link = Link::start_secured().await;
    let config = link.secured_config();
    link.topology.master.stop().await;
    let (ok, text) = doctor(&config);
    assert!(!ok, "{text}");
    assert!(
        line(&text, "M as wsp reachable").starts_with("FAIL"),
        "{text}"
    );
    let replica_link = line(&text, "replica link");
    assert!(
        replica_link.starts_with("FAIL") && replica_link.contains("down"),
        "{text}"
    );
}
