//! Following a peer's stream on R, exactly once on our side: the WSP reads
//! what the exchange writes on R (credit responses, settlement reports,
//! cycle summaries) from a cursor it keeps on M, not in this process, so a
//! restarted gateway, or another one, goes on where the last left off, and
//! any number of gateways may follow at once (whatever handles an entry
//! checks and moves the cursor in the same atomic step, and ignores what is
//! behind it).
//!
//! The stream is the other company's: [`follow`] parses it entry by entry,
//! hands each to the domain's [`Follower`] (which records a malformed one
//! and passes it, never stops), and watches the stream's shape between
//! reads: a new stream (R resynced or wiped) rewinds the cursor; entries
//! trimmed past the cursor before they were read are a gap, which the
//! follower records loudly.

use std::future::Future;

use redis::Value;
use tokio_util::sync::CancellationToken;

use super::{
    Backoff, StreamId,
    reply::{self, Parsed, StreamInfo},
};
use crate::{
    config::StreamsConfig,
    error::ErrorChain,
    redis::{BlockingConnection, RedisEndpoint, RedisError, script::lua_script},
};

/// What a domain does with a stream it follows. Every method that moves
/// the cursor does it atomically with what it records, on M, and only
/// forward (see the scripts of the implementations).
pub trait Follower: Send + Sync + 'static {
    /// The domain's error.
    type Error: From<RedisError> + std::error::Error + Send + Sync + 'static;

    /// The stream on R.
    fn stream(&self) -> &'static str;

    /// Where the WSP stands: the last entry handled, `0-0` for none.
    fn cursor(&self) -> impl Future<Output = Result<StreamId, Self::Error>> + Send;

    /// The stream is a new one: set the cursor back to the start if it is
    /// still `seen` (handling an entry twice changes nothing).
    fn rewind(&self, seen: StreamId) -> impl Future<Output = Result<(), Self::Error>> + Send;

    /// Entries after `seen` were trimmed before they were handled: record
    /// it and go on from `resume`, if the cursor is still `seen`.
    fn gap(
        &self,
        seen: StreamId,
        resume: StreamId,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send;

    /// Handles one entry read after the cursor, whatever it holds.
    fn handle(&self, entry: Parsed) -> impl Future<Output = Result<(), Self::Error>> + Send;

    /// Handles the entries of one read after `after`, in order. One at a
    /// time unless the domain does better (credit applies a batch in one
    /// round trip).
    ///
    /// `Some(id)`: the cursor on M was at `after` when the batch was applied
    /// and is now at or past `id` (checked on M in the same atomic steps),
    /// so the next read may go on from `id` without reading M. `None` (the
    /// default, and whenever that was not checked): read the cursor from M
    /// first. Going on from a cursor not checked so would skip entries if M
    /// lost writes (a crash loses up to a second with `appendfsync
    /// everysec`) and its cursor went back.
    fn handle_batch(
        &self,
        _after: StreamId,
        entries: Vec<Parsed>,
    ) -> impl Future<Output = Result<Option<StreamId>, Self::Error>> + Send {
        async move {
            for entry in entries {
                self.handle(entry).await?;
            }
            Ok(None)
        }
    }
}

lua_script! {
    /// `lua/rewind_cursor.lua`: a follower's cursor back to the start.
    pub struct RewindCursor<'a>(include_str!("lua/rewind_cursor.lua")) {
        keys { cursor: &'a str }
        args { seen: String }
    }
}

/// Reads `cursor_key` on M: the last entry handled, `0-0` for none, or the
/// text stored if it is not a stream id.
pub async fn read_cursor(
    master: &RedisEndpoint,
    cursor_key: &str,
) -> Result<Result<StreamId, String>, RedisError> {
    let mut conn = master.conn().await?;
    let cursor: Option<String> = redis::cmd("GET")
        .arg(cursor_key)
        .query_async(&mut *conn)
        .await
        .map_err(|e| RedisError::from_redis(master.name(), e))?;
    Ok(match cursor {
        None => Ok(StreamId::default()),
        Some(text) => text.parse().map_err(|()| text),
    })
}

/// Sets `cursor_key` on M back to the start if it is still `seen`.
pub async fn rewind_cursor(
    master: &RedisEndpoint,
    cursor_key: &str,
    seen: StreamId,
) -> Result<(), RedisError> {
    let mut conn = master.conn().await?;
    let _: u64 = RewindCursor {
        cursor: cursor_key,
        seen: seen.to_string(),
    }
    .invoke(&mut *conn)
    .await
    .map_err(|e| RedisError::from_redis(master.name(), e))?;
    Ok(())
}

/// Follows `follower`'s stream on `replica` until `stop`; reconnects by
/// itself with a capped backoff, resuming from the cursor on M.
pub async fn follow<F: Follower>(
    follower: F,
    replica: RedisEndpoint,
    streams: StreamsConfig,
    stop: CancellationToken,
) {
    let mut backoff = Backoff::new();
    loop {
        let error = tokio::select! {
            _ = stop.cancelled() => return,
            Err(e) = read(&follower, &replica, &streams, &mut backoff) => e,
        };
        tracing::warn!(
            stream = follower.stream(), error = %ErrorChain(&error), delay = ?backoff.delay(),
            "follower of a stream on R reconnecting"
        );
        if !backoff.wait(&stop).await {
            return;
        }
    }
}

/// One connection's life; returns only on error.
///
/// Each round is one round trip to R, pipelined on the blocking
/// connection: what R's stream looks like (XINFO, and whether the cursor's
/// own entry is still there), then a blocking read after the cursor. The
/// read is handled only if the stream is the one the cursor points into
/// with nothing trimmed past it: a new stream rewinds the cursor, a gap is
/// recorded, and the entries read are dropped (the next round reads them
/// again as what they are).
///
/// The cursor is read from M (another gateway may have moved it) except
/// right after a read whose handling checked where it stands
/// ([`Follower::handle_batch`] answered `Some`): an entry another gateway
/// handled meanwhile is then read again, and found behind.
async fn read<F: Follower>(
    follower: &F,
    replica: &RedisEndpoint,
    streams: &StreamsConfig,
    backoff: &mut Backoff,
) -> Result<(), F::Error> {
    let stream = follower.stream();
    let mut blocking = replica.blocking(streams.block).await?;
    let mut known = None;
    loop {
        let cursor = match known.take() {
            Some(cursor) => cursor,
            None => follower.cursor().await?,
        };
        let (view, entries) = round(&mut blocking, replica, stream, cursor, streams).await?;
        backoff.reset();
        let Some(view) = view else {
            // No stream when the read began (none yet, or R was just
            // wiped): the read waited for one; look at it again.
            continue;
        };
        if view.is_new_stream(cursor) {
            tracing::warn!(
                stream, %cursor, last = %view.info.last_generated, first = %view.info.first,
                "the stream on R is a new one (resync or wipe); reading it again from the start"
            );
            follower.rewind(cursor).await?;
            continue;
        }
        if let Some(resume) = gap(cursor, &view.info) {
            tracing::error!(stream, %cursor, %resume, "entries were trimmed on R before this WSP read them");
            follower.gap(cursor, resume).await?;
            continue;
        }
        known = follower
            .handle_batch(cursor, entries)
            .await?
            .filter(|last| *last > cursor);
    }
}

/// R's stream as the reader sees it before a read.
struct StreamView {
    info: StreamInfo,
    /// Whether the entry at the cursor is still in the stream.
    cursor_present: bool,
}

impl StreamView {
    /// True if this is not the stream the cursor points into. Trimming
    /// removes the oldest entries first and the exchange has no XDEL, so in
    /// the same stream, an entry older than the cursor can only still be
    /// there if the cursor's own entry is too. An older entry without the
    /// cursor's, or nothing at or after the cursor ever written, means the
    /// stream was made anew (R resynced or wiped), whatever ids its new
    /// writer chose: read it from the start.
    fn is_new_stream(&self, cursor: StreamId) -> bool {
        if cursor == StreamId::default() {
            return false;
        }
        self.info.last_generated < cursor
            || (self.info.length > 0 && self.info.first < cursor && !self.cursor_present)
    }
}

/// One round trip: XINFO STREAM, a check of the cursor's entry, and a
/// blocking read of up to `streams.read_batch` entries after `cursor`, in
/// one pipeline. The view is `None` if the stream did not exist; the read
/// then waited for entries after the cursor in whatever stream came.
async fn round(
    blocking: &mut BlockingConnection,
    replica: &RedisEndpoint,
    stream: &str,
    cursor: StreamId,
    streams: &StreamsConfig,
) -> Result<(Option<StreamView>, Vec<Parsed>), RedisError> {
    let cursor_text = cursor.to_string();
    let mut pipe = redis::pipe();
    pipe.ignore_errors();
    pipe.cmd("XINFO").arg("STREAM").arg(stream);
    pipe.cmd("XRANGE")
        .arg(stream)
        .arg(&cursor_text)
        .arg(&cursor_text)
        .arg("COUNT")
        .arg(1);
    pipe.cmd("XREAD")
        .arg("COUNT")
        .arg(streams.read_batch)
        .arg("BLOCK")
        .arg(streams.block.as_millis() as u64)
        .arg("STREAMS")
        .arg(stream)
        .arg(&cursor_text);
    let err = |e| RedisError::from_redis(replica.name(), e);
    let replies: Vec<Value> = pipe.query_async(blocking.conn()).await.map_err(err)?;
    let [info, at_cursor, read] = <[Value; 3]>::try_from(replies).map_err(|replies| {
        err(redis::RedisError::from((
            redis::ErrorKind::UnexpectedReturnType,
            "a stream round's pipeline",
            format!("{} replies, not 3", replies.len()),
        )))
    })?;
    let view = match info {
        Value::ServerError(e) if e.details().is_some_and(|d| d.contains("no such key")) => None,
        Value::Nil => None,
        Value::ServerError(e) => return Err(err(e.into())),
        info => Some(StreamView {
            info: StreamInfo::parse(info),
            cursor_present: matches!(at_cursor, Value::Array(a) if !a.is_empty()),
        }),
    };
    let entries = match read {
        Value::ServerError(e) => return Err(err(e.into())),
        read => reply::read_entries(read),
    };
    Ok((view, entries))
}

/// Where to go on from if entries after `cursor` are gone from the stream,
/// or `None`. Trimming removes from the head, so if anything was ever
/// removed and every entry still there is past the cursor, entries between
/// them may be gone. (If the stream was trimmed to exactly the cursor this
/// says so too: Redis 7.0 cannot tell; followers make a false alarm
/// harmless.)
pub fn gap(cursor: StreamId, info: &StreamInfo) -> Option<StreamId> {
    if cursor >= info.last_generated || !info.removed_any() {
        return None;
    }
    // The stream starts at or right after the cursor: nothing between them
    // is missing (after a gap is recorded the cursor is set right before
    // the first entry, so it is not found again).
    if info.length > 0 && cursor.next().is_none_or(|next| info.first <= next) {
        return None;
    }
    Some(if info.length == 0 {
        info.last_generated
    } else {
        info.first.prev().unwrap_or_default()
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn script_headers_match_their_structs() {
        super::RewindCursor::SHAPE.check();
    }
}
