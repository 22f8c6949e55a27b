//! Pages of records listed through a sorted-set index whose score is the
//! record's creation time in ms: newest first, filtered, resumable by a
//! token, with bounded work per call (a filter that matches little ends the
//! page early, with a token to go on, instead of scanning everything).

use redis::{FromRedisValue, aio::ConnectionLike};

/// Members read per round while a page is filled.
const SCAN: usize = 200;
/// Rounds of [`SCAN`] per call.
const ROUNDS: usize = 10;

/// Where a page goes on: before (ms, member).
pub type PageToken = (i64, String);

/// Longest member a token may name (ids are 128 bytes; composed ids, such
/// as settlement lots', a few times that).
const MAX_MEMBER_LEN: usize = 512;

/// Parses a `next_page_token` (`<ms>~<member>`); `None` if it is not one.
/// The member is only compared with the index's, never used as a key.
pub fn parse_token(text: &str) -> Option<PageToken> {
    text.split_once('~')
        .and_then(|(ms, id)| Some((ms.parse::<i64>().ok()?, id.to_string())))
        .filter(|(_, id)| {
            (1..=MAX_MEMBER_LEN).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_graphic())
        })
}

/// The `next_page_token` of `token` ("" on the last page).
pub fn format_token(token: Option<PageToken>) -> String {
    token
        .map(|(ms, id)| format!("{ms}~{id}"))
        .unwrap_or_default()
}

/// A page of up to `limit` records of `index`, newest first, after
/// `after`: each member's hash at `key(member)` (HGETALL, read as `F`),
/// parsed by `parse` (`None`, e.g. for a hash expired or removed, is passed
/// over), kept if `keep`.
/// Reads at most [`ROUNDS`] x [`SCAN`] members; returns the page and where
/// to go on (`None` at the end).
pub async fn newest_first<F: FromRedisValue, T>(
    conn: &mut (impl ConnectionLike + Send),
    index: &str,
    key: impl Fn(&str) -> String,
    parse: impl Fn(&F) -> Option<T>,
    keep: impl Fn(&T) -> bool,
    after: Option<PageToken>,
    limit: usize,
) -> redis::RedisResult<(Vec<T>, Option<PageToken>)> {
    let mut page = Vec::new();
    let mut cursor = after;
    for _ in 0..ROUNDS {
        let max = cursor
            .as_ref()
            .map_or("+inf".to_string(), |(ms, _)| ms.to_string());
        // Same-score members come in reverse member order: skip those at or
        // after the cursor's (seen already).
        let rows: Vec<(String, f64)> = redis::cmd("ZRANGE")
            .arg(index)
            .arg(&max)
            .arg("-inf")
            .arg("BYSCORE")
            .arg("REV")
            .arg("LIMIT")
            .arg(0)
            .arg(SCAN + 1)
            .arg("WITHSCORES")
            .query_async(conn)
            .await?;
        let more = rows.len() > SCAN;
        let rows: Vec<(String, i64)> = rows
            .into_iter()
            .map(|(id, ms)| (id, ms as i64))
            .filter(|(id, ms)| {
                cursor
                    .as_ref()
                    .is_none_or(|(c_ms, c_id)| *ms < *c_ms || id < c_id)
            })
            .take(SCAN)
            .collect();
        if rows.is_empty() {
            return Ok((page, None));
        }
        let mut pipe = redis::pipe();
        for (id, _) in &rows {
            pipe.hgetall(key(id));
        }
        let records: Vec<F> = pipe.query_async(conn).await?;
        for ((id, ms), fields) in rows.into_iter().zip(records) {
            cursor = Some((ms, id));
            let Some(record) = parse(&fields) else {
                continue;
            };
            if keep(&record) {
                page.push(record);
                if page.len() == limit {
                    return Ok((page, cursor));
                }
            }
        }
        if !more {
            return Ok((page, None));
        }
    }
    Ok((page, cursor))
}
