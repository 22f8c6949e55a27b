//! The invariants of the WSP's books on M (shared/docs/architecture.md),
//! checked for every (user, asset) by scanning M itself.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};

use redis::aio::MultiplexedConnection;
use rust_decimal::Decimal;

async fn keys(m: &mut MultiplexedConnection, pattern: &str) -> Vec<String> {
    let mut cursor = 0u64;
    let mut found = Vec::new();
    loop {
        let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(1000)
            .query_async(m)
            .await
            .expect("scan");
        found.extend(batch);
        if next == 0 {
            return found;
        }
        cursor = next;
    }
}

async fn hash(m: &mut MultiplexedConnection, key: &str) -> HashMap<String, String> {
    redis::cmd("HGETALL")
        .arg(key)
        .query_async(m)
        .await
        .expect("hgetall")
}

fn dec(text: Option<&String>) -> Decimal {
    text.map_or(Decimal::ZERO, |t| {
        t.trim_start_matches('+')
            .parse()
            .unwrap_or_else(|e| panic!("{t:?}: {e}"))
    })
}

/// What the books hold for one (user, asset).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Pair {
    pub ci: Decimal,
    pub total: Decimal,
    pub locked: Decimal,
    pub pledged: Decimal,
    pub pending_pledges: Decimal,
    pub active_remaining: Decimal,
    pub accepted_changes: Decimal,
    pub settled: Decimal,
}

/// Reads every (user, asset) of the books on M.
pub async fn read_books(m: &mut MultiplexedConnection) -> BTreeMap<(String, String), Pair> {
    let mut books: BTreeMap<(String, String), Pair> = BTreeMap::new();
    for key in keys(m, "CI:*").await {
        let mut parts = key.splitn(3, ':').skip(1);
        let (uid, asset) = (parts.next().expect("uid"), parts.next().expect("asset"));
        let ci = hash(m, &key).await;
        books.entry((uid.into(), asset.into())).or_default().ci = dec(ci.get("amount"));
    }
    for key in keys(m, "mirror:vault:*").await {
        let mut parts = key.splitn(4, ':').skip(2);
        let (uid, asset) = (parts.next().expect("uid"), parts.next().expect("asset"));
        let v = hash(m, &key).await;
        let pair = books.entry((uid.into(), asset.into())).or_default();
        pair.total = dec(v.get("total"));
        pair.locked = dec(v.get("locked"));
        pair.pledged = dec(v.get("pledged"));
    }
    for key in keys(m, "mirror:pledge:*").await {
        let p = hash(m, &key).await;
        let pair = books
            .entry((p["uid"].clone(), p["asset"].clone()))
            .or_default();
        match p["status"].as_str() {
            "pending" => pair.pending_pledges += dec(p.get("amount")),
            "active" => pair.active_remaining += dec(p.get("remaining")),
            _ => {}
        }
    }
    for key in keys(m, "mirror:credit:req:*").await {
        let r = hash(m, &key).await;
        if r.get("status").map(String::as_str) == Some("accepted") {
            let pair = books
                .entry((r["uid"].clone(), r["asset"].clone()))
                .or_default();
            pair.accepted_changes += dec(r.get("c_change"));
        }
    }
    books
}

/// Checks, for every (user, asset): total = locked + available with none
/// negative; locked = CI + the amounts of PENDING pledges; pledged = the
/// remaining of ACTIVE pledges; CI = accepted credit changes + completed
/// settlement nets (`settled`, from the caller). Returns the books.
pub async fn assert_books_balance(
    m: &mut MultiplexedConnection,
    settled: &BTreeMap<(String, String), Decimal>,
) -> BTreeMap<(String, String), Pair> {
    let books = read_books(m).await;
    for ((uid, asset), p) in &books {
        let at = format!("{uid}/{asset}: {p:?}");
        assert!(
            p.total >= p.locked && p.locked >= Decimal::ZERO,
            "total >= locked >= 0, {at}"
        );
        assert!(p.pledged >= Decimal::ZERO && p.ci >= Decimal::ZERO, "{at}");
        if p.total > Decimal::ZERO || p.locked > Decimal::ZERO {
            assert_eq!(
                p.locked,
                p.ci + p.pending_pledges,
                "locked = CI + pending pledges, {at}"
            );
        }
        assert_eq!(
            p.pledged, p.active_remaining,
            "pledged = active remaining, {at}"
        );
        let nets = settled
            .get(&(uid.clone(), asset.clone()))
            .copied()
            .unwrap_or_default();
        assert_eq!(
            p.ci,
            p.accepted_changes + nets,
            "CI = accepted changes + settled nets, {at}"
        );
    }
    books
}
