//! Attestation data on M (keys in [`super::keys`]): one script per state
//! change, each atomic and idempotent (`lua/*.lua`), and the reads.

use redis::AsyncCommands;

use super::{
    error::AttestationError,
    keys,
    model::{AttestationRecord, DeadLetter, Verification},
};
use crate::{
    redis::{RedisEndpoint, RedisError, script::lua_script},
    streams::{
        Fields, StreamId,
        reply::{self, Parsed},
    },
};

lua_script! {
    /// `lua/submit.lua`: publishes a result, idempotent on request_id.
    struct Submit<'a>(include_str!("lua/submit.lua")) {
        keys { submission: String, record: String, stream: &'a str }
        args { request_id: &'a str, digest: &'a str, attestation_id: &'a str, retention_ms: u64, ..fields: Vec<String> }
    }
}

lua_script! {
    /// `lua/reserve.lua`: reserves a block of status list indexes.
    struct Reserve<'a>(include_str!("lua/reserve.lua")) {
        keys { lists: &'a str }
        args { key_id: &'a str, count: usize, size: usize, now_ms: i64 }
    }
}

lua_script! {
    /// `lua/issue.lua`: records a signed attestation and acknowledges its result.
    struct Issue<'a>(include_str!("lua/issue.lua")) {
        keys { record: String, subject: String, seq: &'a str, events: &'a str, stream: &'a str, lists: &'a str }
        args { attestation_id: &'a str, digest: &'a str, entry_id: &'a str, group: &'a str, now_ms: i64, events_maxlen: usize, list_id: &'a str, index: u64, ..fields: Vec<String> }
    }
}

lua_script! {
    /// `lua/revoke.lua`: revokes an attestation, idempotently.
    struct Revoke<'a>(include_str!("lua/revoke.lua")) {
        keys { record: String, bits: String, lists: &'a str, events: &'a str }
        args { list_id: &'a str, index: u64, reason: &'a str, now_ms: i64, events_maxlen: usize }
    }
}

lua_script! {
    /// `lua/status_list.lua`: a status list's state at one instant.
    struct ReadStatusList<'a>(include_str!("lua/status_list.lua")) {
        keys { lists: &'a str, bits: String, signed: String }
        args { list_id: &'a str }
    }
}

lua_script! {
    /// `lua/store_status_list.lua`: keeps a signed status list if current.
    struct StoreStatusList<'a>(include_str!("lua/store_status_list.lua")) {
        keys { lists: &'a str, signed: String }
        args { list_id: &'a str, revision: u64, credential: &'a str }
    }
}

lua_script! {
    /// `lua/trim_results.lua`: trims what every group has acknowledged.
    struct TrimResults<'a>(include_str!("lua/trim_results.lua")) {
        keys { stream: &'a str }
        args {}
    }
}

/// What SubmitVerification did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Submitted {
    /// The result's entry (the first one, for a repeat).
    pub entry_id: String,
    /// True if it was submitted before: nothing written.
    pub existing: bool,
}

/// A block of status list indexes reserved for one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexBlock {
    /// The list.
    pub list_id: String,
    /// The first index.
    pub first: u64,
    /// How many.
    pub count: u64,
}

/// What the issuing script did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IssueOutcome {
    /// Recorded; the result is acknowledged.
    Issued,
    /// Attested before (same result): nothing written, acknowledged.
    Existing,
    /// Attested before for another result under the same request_id.
    Conflict,
    /// The status list index was never reserved (Redis lost the lists'
    /// state): reserve again.
    Stale,
}

/// What revoking did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RevokeOutcome {
    /// Revoked now.
    Revoked(AttestationRecord),
    /// Revoked before: the record as first revoked.
    Existing(AttestationRecord),
    /// No such attestation.
    Unknown,
}

/// A status list's state, read at one instant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListState {
    /// The key that signs it.
    pub key_id: String,
    /// Bits.
    pub size: usize,
    /// Revocations so far.
    pub revision: u64,
    /// Redis's bitmap (may be shorter than the list).
    pub bits: Vec<u8>,
    /// The signed credential kept, and the revision it shows.
    pub signed: Option<(u64, String)>,
}

/// Everything the store needs to record an attestation.
pub struct NewAttestation<'a> {
    /// The record (its fields go to the script).
    pub record: &'a AttestationRecord,
    /// The result's entry.
    pub entry_id: StreamId,
}

/// Attestation data on M.
#[derive(Clone)]
pub struct AttestationStore {
    redis: RedisEndpoint,
    events_maxlen: usize,
}

impl AttestationStore {
    /// A store on `redis` (M).
    pub fn new(redis: RedisEndpoint, events_maxlen: usize) -> Self {
        Self {
            redis,
            events_maxlen,
        }
    }

    fn err(&self, e: redis::RedisError) -> AttestationError {
        AttestationError::Redis(RedisError::from_redis(self.redis.name(), e))
    }

    /// Publishes a result to the verification stream (see `lua/submit.lua`).
    pub async fn submit(
        &self,
        verification: &Verification,
        attestation_id: &str,
        retention_ms: u64,
    ) -> Result<Submitted, AttestationError> {
        let request_id = verification.request_id.as_deref().unwrap_or_default();
        let mut conn = self.redis.conn().await?;
        let reply: redis::RedisResult<(String, String)> = Submit {
            submission: keys::submission(request_id),
            record: keys::attestation(attestation_id),
            stream: keys::VERIFICATION_STREAM,
            request_id,
            digest: &verification.digest(),
            attestation_id,
            retention_ms,
            fields: verification
                .entry_fields()
                .into_iter()
                .flat_map(|(k, v)| [k.to_string(), v])
                .collect(),
        }
        .invoke(&mut *conn)
        .await;
        match reply {
            Ok((verdict, entry_id)) => Ok(Submitted {
                entry_id,
                existing: verdict == "existing",
            }),
            Err(e) if e.code() == Some("REQUEST_ID_REUSED") => {
                Err(AttestationError::RequestIdReused(request_id.to_string()))
            }
            Err(e) => Err(self.err(e)),
        }
    }

    /// Reserves up to `count` indexes of `key_id`'s open status list
    /// (see `lua/reserve.lua`).
    pub async fn reserve(
        &self,
        key_id: &str,
        count: usize,
        size: usize,
        now_ms: i64,
    ) -> Result<IndexBlock, AttestationError> {
        let mut conn = self.redis.conn().await?;
        let (list_id, first, count): (String, u64, u64) = Reserve {
            lists: keys::LISTS,
            key_id,
            count,
            size,
            now_ms,
        }
        .invoke(&mut *conn)
        .await
        .map_err(|e| self.err(e))?;
        Ok(IndexBlock {
            list_id,
            first,
            count,
        })
    }

    /// Records a signed attestation and acknowledges its result (see
    /// `lua/issue.lua`).
    pub async fn issue(
        &self,
        new: &NewAttestation<'_>,
        now_ms: i64,
    ) -> Result<IssueOutcome, AttestationError> {
        let record = new.record;
        let mut conn = self.redis.conn().await?;
        let verdict: String = Issue {
            record: keys::attestation(&record.attestation_id),
            subject: keys::subject(&record.subject),
            seq: keys::SEQ,
            events: keys::EVENTS,
            stream: keys::VERIFICATION_STREAM,
            lists: keys::LISTS,
            attestation_id: &record.attestation_id,
            digest: &record.digest,
            entry_id: &new.entry_id.to_string(),
            group: keys::GROUP,
            now_ms,
            events_maxlen: self.events_maxlen,
            list_id: &record.list_id,
            index: record.list_index,
            fields: record
                .fields()
                .into_iter()
                .flat_map(|(k, v)| [k.to_string(), v])
                .collect(),
        }
        .invoke(&mut *conn)
        .await
        .map_err(|e| self.err(e))?;
        Ok(match verdict.as_str() {
            "issued" => IssueOutcome::Issued,
            "existing" => IssueOutcome::Existing,
            "stale" => IssueOutcome::Stale,
            _ => IssueOutcome::Conflict,
        })
    }

    /// The digest of an attestation's result, if it is attested.
    pub async fn digest(&self, attestation_id: &str) -> Result<Option<String>, AttestationError> {
        let mut conn = self.redis.conn().await?;
        conn.hget(keys::attestation(attestation_id), "digest")
            .await
            .map_err(|e| self.err(e))
    }

    /// Acknowledges a result (one attested before).
    pub async fn ack(&self, entry_id: StreamId) -> Result<(), AttestationError> {
        let mut conn = self.redis.conn().await?;
        let _: u64 = redis::cmd("XACK")
            .arg(keys::VERIFICATION_STREAM)
            .arg(keys::GROUP)
            .arg(entry_id.to_string())
            .query_async(&mut *conn)
            .await
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// An attestation, if issued.
    pub async fn record(
        &self,
        attestation_id: &str,
    ) -> Result<Option<AttestationRecord>, AttestationError> {
        let mut conn = self.redis.conn().await?;
        let fields: Fields = conn
            .hgetall(keys::attestation(attestation_id))
            .await
            .map_err(|e| self.err(e))?;
        Ok((!fields.is_empty()).then(|| AttestationRecord::parse(&fields)))
    }

    /// Up to `limit` of a subject's attestations, newest first, issued
    /// before sequence `before` (all if `None`); true if there are more.
    pub async fn by_subject(
        &self,
        subject: &str,
        before: Option<u64>,
        limit: usize,
    ) -> Result<(Vec<AttestationRecord>, bool), AttestationError> {
        let mut conn = self.redis.conn().await?;
        let max = before.map_or_else(|| "+inf".to_string(), |s| format!("({s}"));
        let mut ids: Vec<String> = redis::cmd("ZRANGE")
            .arg(keys::subject(subject))
            .arg(max)
            .arg("-inf")
            .arg("BYSCORE")
            .arg("REV")
            .arg("LIMIT")
            .arg(0)
            .arg(limit + 1)
            .query_async(&mut *conn)
            .await
            .map_err(|e| self.err(e))?;
        let more = ids.len() > limit;
        ids.truncate(limit);
        if ids.is_empty() {
            return Ok((Vec::new(), more));
        }
        let mut pipe = redis::pipe();
        for id in &ids {
            pipe.hgetall(keys::attestation(id));
        }
        let hashes: Vec<Fields> = pipe
            .query_async(&mut *conn)
            .await
            .map_err(|e| self.err(e))?;
        let records = hashes
            .iter()
            .filter(|f| !f.is_empty())
            .map(AttestationRecord::parse)
            .collect();
        Ok((records, more))
    }

    /// Revokes an attestation (see `lua/revoke.lua`).
    pub async fn revoke(
        &self,
        attestation_id: &str,
        reason: &str,
        now_ms: i64,
    ) -> Result<RevokeOutcome, AttestationError> {
        let Some(record) = self.record(attestation_id).await? else {
            return Ok(RevokeOutcome::Unknown);
        };
        let mut conn = self.redis.conn().await?;
        let (verdict, fields): (String, Fields) = Revoke {
            record: keys::attestation(attestation_id),
            bits: keys::list_bits(&record.list_id),
            lists: keys::LISTS,
            events: keys::EVENTS,
            list_id: &record.list_id,
            index: record.list_index,
            reason,
            now_ms,
            events_maxlen: self.events_maxlen,
        }
        .invoke(&mut *conn)
        .await
        .map_err(|e| self.err(e))?;
        Ok(match verdict.as_str() {
            "revoked" => RevokeOutcome::Revoked(AttestationRecord::parse(&fields)),
            "existing" => RevokeOutcome::Existing(AttestationRecord::parse(&fields)),
            _ => RevokeOutcome::Unknown,
        })
    }

    /// A status list's state, if it exists (see `lua/status_list.lua`).
    pub async fn status_list(&self, list_id: &str) -> Result<Option<ListState>, AttestationError> {
        let mut conn = self.redis.conn().await?;
        let reply: Vec<Vec<u8>> = ReadStatusList {
            lists: keys::LISTS,
            bits: keys::list_bits(list_id),
            signed: keys::list_signed(list_id),
            list_id,
        }
        .invoke(&mut *conn)
        .await
        .map_err(|e| self.err(e))?;
        let [key_id, size, revision, bits, signed_revision, signed] = reply.as_slice() else {
            return Ok(None);
        };
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        let corrupt = |what: &str| AttestationError::Corrupt {
            key: keys::LISTS.into(),
            reason: format!("list {list_id}: {what}"),
        };
        let size = text(size).parse().map_err(|_| corrupt("size"))?;
        let revision = text(revision).parse().map_err(|_| corrupt("revision"))?;
        let signed = match text(signed_revision).parse::<u64>() {
            Ok(r) if !signed.is_empty() => Some((r, text(signed))),
            _ => None,
        };
        Ok(Some(ListState {
            key_id: text(key_id),
            size,
            revision,
            bits: bits.clone(),
            signed,
        }))
    }

    /// Keeps a signed status list credential if it is still current;
    /// returns what is kept (see `lua/store_status_list.lua`).
    pub async fn store_status_list(
        &self,
        list_id: &str,
        revision: u64,
        credential: &str,
    ) -> Result<(u64, String), AttestationError> {
        let mut conn = self.redis.conn().await?;
        let (kept, stored): (String, String) = StoreStatusList {
            lists: keys::LISTS,
            signed: keys::list_signed(list_id),
            list_id,
            revision,
            credential,
        }
        .invoke(&mut *conn)
        .await
        .map_err(|e| self.err(e))?;
        Ok((kept.parse().unwrap_or(revision), stored))
    }

    /// Whether bit `index` of a list is set; `None` if there is no such
    /// list or the index is beyond it.
    pub async fn is_revoked(
        &self,
        list_id: &str,
        index: u64,
    ) -> Result<Option<bool>, AttestationError> {
        let mut conn = self.redis.conn().await?;
        let (size, bit): (Option<u64>, u8) = redis::pipe()
            .hget(keys::LISTS, format!("{list_id}:size"))
            .getbit(keys::list_bits(list_id), index as usize)
            .query_async(&mut *conn)
            .await
            .map_err(|e| self.err(e))?;
        Ok(size.filter(|s| index < *s).map(|_| bit == 1))
    }

    /// Up to `limit` dead letters, newest first, before `before` (all if
    /// `None`); true if there are more.
    pub async fn dead_letters(
        &self,
        before: Option<StreamId>,
        limit: usize,
    ) -> Result<(Vec<DeadLetter>, bool), AttestationError> {
        let mut conn = self.redis.conn().await?;
        let end = before.map_or_else(|| "+".to_string(), |id| format!("({id}"));
        let reply: redis::Value = redis::cmd("XREVRANGE")
            .arg(keys::dead_letters())
            .arg(end)
            .arg("-")
            .arg("COUNT")
            .arg(limit + 1)
            .query_async(&mut *conn)
            .await
            .map_err(|e| self.err(e))?;
        let mut letters: Vec<DeadLetter> = reply::entries(reply)
            .into_iter()
            .filter_map(|parsed| match parsed {
                Parsed::Entry(e) => Some(DeadLetter::parse(e.id, &e.fields)),
                _ => None,
            })
            .collect();
        let more = letters.len() > limit;
        letters.truncate(limit);
        Ok((letters, more))
    }

    /// Trims what every consumer group has acknowledged from the
    /// verification stream (see `lua/trim_results.lua`).
    pub async fn trim_results(&self) -> Result<u64, AttestationError> {
        let mut conn = self.redis.conn().await?;
        TrimResults {
            stream: keys::VERIFICATION_STREAM,
        }
        .invoke(&mut *conn)
        .await
        .map_err(|e| self.err(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripts_match_their_headers() {
        for shape in [
            Submit::SHAPE,
            Reserve::SHAPE,
            Issue::SHAPE,
            Revoke::SHAPE,
            ReadStatusList::SHAPE,
            StoreStatusList::SHAPE,
            TrimResults::SHAPE,
        ] {
            shape.check();
        }
    }
}
