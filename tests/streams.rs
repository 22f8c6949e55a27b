//! The Redis-streams bridge against a real redis-server: fan-out watches.

mod common;

use std::{collections::HashMap, sync::Arc, time::Duration};

use openoes::{
    config::StreamsConfig,
    redis::process::{RedisOptions, RedisProcess},
    streams::{
        Entry,
        watch::{Filter, Subscription, WatchEnd, WatchError, WatchHub},
    },
};
use tempfile::TempDir;
use tokio_stream::StreamExt;
use tokio_util::sync::CancellationToken;

const KEY: &str = "test:events";
const SOON: Duration = Duration::from_secs(10);

struct Setup {
    redis: RedisProcess,
    hub: WatchHub,
    stop: CancellationToken,
    conn: redis::aio::MultiplexedConnection,
    _dir: TempDir,
}

async fn setup(config: StreamsConfig) -> Setup {
    let dir = tempfile::tempdir().expect("tmp");
    let redis = RedisProcess::start(dir.path(), &RedisOptions::default())
        .await
        .expect("redis");
    let stop = CancellationToken::new();
    let hub = WatchHub::new(common::endpoint_on(&redis), config, stop.clone());
    let conn = connect(&redis).await;
    Setup {
        redis,
        hub,
        stop,
        conn,
        _dir: dir,
    }
}

async fn connect(redis: &RedisProcess) -> redis::aio::MultiplexedConnection {
    redis::Client::open(redis.url())
        .expect("client")
        .get_multiplexed_async_connection()
        .await
        .expect("conn")
}

fn fast_config() -> StreamsConfig {
    StreamsConfig {
        block: Duration::from_millis(500),
        ..StreamsConfig::default()
    }
}

fn all() -> Filter {
    Arc::new(|_| true)
}

/// XADDs `n` events numbered from `first`, returning their ids.
async fn publish(
    conn: &mut redis::aio::MultiplexedConnection,
    first: usize,
    n: usize,
    user: &str,
) -> Vec<String> {
    let mut pipe = redis::pipe();
    for i in first..first + n {
        pipe.cmd("XADD")
            .arg(KEY)
            .arg("*")
            .arg("n")
            .arg(i)
            .arg("user")
            .arg(user);
    }
    pipe.query_async(conn).await.expect("xadd")
}

async fn take(sub: &mut Subscription, n: usize) -> Vec<Arc<Entry>> {
    let mut got = Vec::with_capacity(n);
    while got.len() < n {
        match tokio::time::timeout(SOON, sub.next()).await {
            Ok(Some(Ok(event))) => got.push(event),
            other => panic!("after {} of {n} events: {other:?}", got.len()),
        }
    }
    got
}

fn numbers(events: &[Arc<Entry>]) -> Vec<usize> {
    events
        .iter()
        .map(|e| e.field("n").parse().expect("n"))
        .collect()
}

#[tokio::test]
async fn resume_after_a_disconnect_delivers_exactly_the_missed_events_in_order() {
    let mut s = setup(fast_config()).await;
    let mut sub = s.hub.subscribe(KEY, "", all()).await.expect("subscribe");
    publish(&mut s.conn, 0, 10, "u").await;
    let first = take(&mut sub, 5).await;
    assert_eq!(numbers(&first), [0, 1, 2, 3, 4]);
    let cursor = first[4].id.to_string();
    drop(sub); // the client disconnects after event 4

    publish(&mut s.conn, 10, 10, "u").await; // more happen while it is away
    let mut resumed = s.hub.subscribe(KEY, &cursor, all()).await.expect("resume");
    let missed = take(&mut resumed, 15).await;
    assert_eq!(
        numbers(&missed),
        (5..20).collect::<Vec<_>>(),
        "exactly the missed events"
    );

    // And it stays live, with no duplicates.
    publish(&mut s.conn, 20, 5, "u").await;
    assert_eq!(
        numbers(&take(&mut resumed, 5).await),
        (20..25).collect::<Vec<_>>()
    );
    let extra = tokio::time::timeout(Duration::from_millis(300), resumed.next()).await;
    assert!(extra.is_err(), "nothing more: {extra:?}");
}

#[tokio::test]
async fn resume_while_events_keep_coming_has_no_gap_and_no_duplicate() {
    let mut s = setup(fast_config()).await;
    let ids = publish(&mut s.conn, 0, 3000, "u").await;
    let mut sub = s.hub.subscribe(KEY, &ids[99], all()).await.expect("resume");
    let mut writer = connect(&s.redis).await;
    let writing = tokio::spawn(async move { publish(&mut writer, 3000, 2000, "u").await });
    let got = take(&mut sub, 4900).await;
    writing.await.expect("writer");
    assert_eq!(numbers(&got), (100..5000).collect::<Vec<_>>());
}

#[tokio::test]
async fn a_trimmed_or_unknown_cursor_is_refused_never_skipped() {
    let mut s = setup(fast_config()).await;
    let ids = publish(&mut s.conn, 0, 100, "u").await;
    let _: i64 = redis::cmd("XTRIM")
        .arg(KEY)
        .arg("MAXLEN")
        .arg(10)
        .query_async(&mut s.conn)
        .await
        .expect("trim");

    let e = s
        .hub
        .subscribe(KEY, &ids[5], all())
        .await
        .err()
        .expect("trimmed");
    assert!(matches!(e, WatchError::CursorTrimmed { .. }), "{e:?}");
    let status = tonic::Status::from(openoes::error::Error::from(e));
    assert_eq!(status.code(), tonic::Code::OutOfRange);

    // Resuming after the oldest entry kept works.
    let mut ok = s
        .hub
        .subscribe(KEY, &ids[90], all())
        .await
        .expect("oldest kept");
    assert_eq!(
        numbers(&take(&mut ok, 9).await),
        (91..100).collect::<Vec<_>>()
    );
    // So does the last one (nothing after it), and an XDEL behind a cursor
    // does not matter, but one after it does.
    s.hub.subscribe(KEY, &ids[99], all()).await.expect("last");
    let _: i64 = redis::cmd("XDEL")
        .arg(KEY)
        .arg(&ids[95])
        .query_async(&mut s.conn)
        .await
        .expect("xdel");
    s.hub
        .subscribe(KEY, &ids[96], all())
        .await
        .expect("deleted entry is behind the cursor");
    let e = s
        .hub
        .subscribe(KEY, &ids[94], all())
        .await
        .err()
        .expect("deleted entry follows");
    assert!(matches!(e, WatchError::CursorTrimmed { .. }), "{e:?}");

    let e = s
        .hub
        .subscribe(KEY, "99999999999999-0", all())
        .await
        .err()
        .expect("ahead");
    assert!(matches!(e, WatchError::CursorAhead { .. }), "{e:?}");
    let e = s
        .hub
        .subscribe(KEY, "yesterday", all())
        .await
        .err()
        .expect("invalid");
    assert!(matches!(e, WatchError::InvalidCursor(_)), "{e:?}");
}

#[tokio::test]
async fn a_slow_subscriber_is_cut_off_while_a_fast_one_receives_everything() {
    let config = StreamsConfig {
        watch_queue_capacity: 64,
        ..fast_config()
    };
    let mut s = setup(config).await;
    let mut slow = s.hub.subscribe(KEY, "", all()).await.expect("slow");
    let mut fast = s.hub.subscribe(KEY, "", all()).await.expect("fast");
    // Let both attach before publishing.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let reader = tokio::spawn(async move { take(&mut fast, 2000).await });
    for batch in 0..20 {
        publish(&mut s.conn, batch * 100, 100, "u").await;
    }
    let got = reader.await.expect("fast reader");
    assert_eq!(
        numbers(&got),
        (0..2000).collect::<Vec<_>>(),
        "the fast one lost nothing"
    );

    let mut slow_got = 0;
    let end = loop {
        match tokio::time::timeout(SOON, slow.next())
            .await
            .expect("slow ends")
        {
            Some(Ok(_)) => slow_got += 1,
            Some(Err(end)) => break end,
            None => panic!("ended without a reason"),
        }
    };
    assert_eq!(end, WatchEnd::TooSlow);
    assert!(
        slow_got <= 64,
        "the slow one held at most its queue: {slow_got}"
    );
    let status = tonic::Status::from(openoes::error::Error::from(end));
    assert_eq!(status.code(), tonic::Code::ResourceExhausted);
}

#[tokio::test]
async fn filters_apply_before_queueing() {
    let config = StreamsConfig {
        watch_queue_capacity: 4,
        ..fast_config()
    };
    let mut s = setup(config).await;
    let alice: Filter = Arc::new(|e: &Entry| e.field("user") == "alice");
    let mut sub = s.hub.subscribe(KEY, "", alice).await.expect("alice");
    tokio::time::sleep(Duration::from_millis(200)).await;
    // Far more than the queue holds, but only 3 for alice: not too slow.
    publish(&mut s.conn, 0, 200, "bob").await;
    publish(&mut s.conn, 200, 3, "alice").await;
    publish(&mut s.conn, 203, 200, "bob").await;
    let got = take(&mut sub, 3).await;
    assert_eq!(numbers(&got), [200, 201, 202]);
    assert!(got.iter().all(|e| e.field("user") == "alice"));
}

#[tokio::test]
async fn watchers_recover_when_redis_is_killed_and_restarted_without_persistence() {
    let mut s = setup(fast_config()).await;
    let mut sub = s.hub.subscribe(KEY, "", all()).await.expect("subscribe");
    publish(&mut s.conn, 0, 3, "u").await;
    assert_eq!(numbers(&take(&mut sub, 3).await), [0, 1, 2]);

    s.redis.kill().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    s.redis.restart().await.expect("restart");
    let mut conn = connect(&s.redis).await;
    // The restarted Redis is empty; new events must still arrive.
    publish(&mut conn, 100, 3, "u").await;
    assert_eq!(numbers(&take(&mut sub, 3).await), [100, 101, 102]);
}

#[tokio::test]
async fn a_watch_ends_with_cursor_ahead_when_the_log_goes_backwards_instead_of_replaying_it() {
    let mut s = setup(fast_config()).await;
    let mut sub = s.hub.subscribe(KEY, "", all()).await.expect("subscribe");
    // Entries whose ids are ahead of what a restarted Redis will write (an
    // AOF restart that lost its last second, or another clock).
    for i in 0..3u64 {
        let _: String = redis::cmd("XADD")
            .arg(KEY)
            .arg(format!("99999999999999-{i}"))
            .arg("n")
            .arg(i)
            .query_async(&mut s.conn)
            .await
            .expect("xadd");
    }
    assert_eq!(numbers(&take(&mut sub, 3).await), [0, 1, 2]);

    s.redis.kill().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    s.redis.restart().await.expect("restart");
    let mut conn = connect(&s.redis).await;
    publish(&mut conn, 100, 3, "u").await;
    // The log the watch was reading is gone and the new one is behind its
    // cursor: the watch ends (its client resumes from now, knowing events
    // may be missing) rather than replaying the new log from 0-0.
    let end = tokio::time::timeout(SOON, sub.next()).await.expect("ends");
    assert!(matches!(end, Some(Err(WatchEnd::Reset))), "{end:?}");
    let status = tonic::Status::from(openoes::error::Error::from(WatchEnd::Reset));
    assert_eq!(status.code(), tonic::Code::OutOfRange);
    let details = tonic_types::StatusExt::get_error_details(&status);
    assert_eq!(
        details.error_info().map(|i| i.reason.as_str()),
        Some("CURSOR_AHEAD")
    );
    let mut fresh = s
        .hub
        .subscribe(KEY, "", all())
        .await
        .expect("subscribe from now");
    tokio::time::sleep(Duration::from_millis(200)).await;
    publish(&mut conn, 200, 2, "u").await;
    assert_eq!(numbers(&take(&mut fresh, 2).await), [200, 201]);
}

#[tokio::test]
async fn a_thousand_subscribers_all_receive_every_event() {
    let mut s = setup(fast_config()).await;
    let before = common::rss_kib();
    let mut subs = Vec::new();
    for _ in 0..1000 {
        subs.push(s.hub.subscribe(KEY, "", all()).await.expect("subscribe"));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let idle = common::rss_kib();
    publish(&mut s.conn, 0, 200, "u").await;
    let mut readers = Vec::new();
    for mut sub in subs {
        readers.push(tokio::spawn(
            async move { numbers(&take(&mut sub, 200).await) },
        ));
    }
    for reader in readers {
        assert_eq!(reader.await.expect("reader"), (0..200).collect::<Vec<_>>());
    }
    println!(
        "RSS of the test process: {before} KiB before, {idle} KiB with 1000 idle subscribers, {} KiB after",
        common::rss_kib()
    );
    assert_eq!(
        s.hub.subscriber_count(),
        0,
        "dropped subscriptions are released"
    );
}

#[tokio::test]
async fn the_subscriber_limit_holds_and_a_dropped_stream_frees_its_slot() {
    use openoes::streams::Pump;
    let s = setup(fast_config()).await;
    let pump = Pump::new("watch", 2, Duration::from_secs(5), s.stop.clone());
    let source = |hub: &WatchHub| {
        let hub = hub.clone();
        async move {
            let sub = hub.subscribe(KEY, "", all()).await.expect("subscribe");
            sub.map(|e| e.map_err(openoes::error::Error::from))
        }
    };
    let a = pump.reserve().expect("a").serve(source(&s.hub).await);
    let _b = pump.reserve().expect("b").serve(source(&s.hub).await);
    let e = pump.reserve().err().expect("limit");
    assert_eq!(e.limit, 2);
    let status = tonic::Status::from(openoes::error::Error::from(e));
    assert_eq!(status.code(), tonic::Code::ResourceExhausted);
    // The client stream goes away: its slot and its subscription are freed.
    drop(a);
    let deadline = tokio::time::Instant::now() + SOON;
    while pump.open() != 1 || s.hub.subscriber_count() != 1 {
        assert!(tokio::time::Instant::now() < deadline, "slot not freed");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    pump.reserve().expect("a slot is free again");
    // The hub itself sets no limit: internal followers are never refused.
    let mut many = Vec::new();
    for _ in 0..10 {
        many.push(s.hub.subscribe(KEY, "", all()).await.expect("internal"));
    }
}

#[tokio::test]
async fn shutdown_ends_every_watch() {
    let s = setup(fast_config()).await;
    let mut sub = s.hub.subscribe(KEY, "", all()).await.expect("subscribe");
    tokio::time::sleep(Duration::from_millis(200)).await;
    s.stop.cancel();
    let end = tokio::time::timeout(SOON, sub.next()).await.expect("ends");
    assert!(matches!(end, Some(Err(WatchEnd::Shutdown))), "{end:?}");
}

// === consumer groups ===

use openoes::streams::group::{Delivery, GroupHub, GroupSubscription, OnLimit, dlq_key};

const GROUP: &str = "workers";

fn group_config() -> StreamsConfig {
    StreamsConfig {
        block: Duration::from_millis(200),
        claim_min_idle: Duration::from_millis(600),
        max_deliveries: 2,
        ..StreamsConfig::default()
    }
}

fn group_hub(s: &Setup, config: StreamsConfig) -> GroupHub {
    GroupHub::new(common::endpoint_on(&s.redis), config, s.stop.clone())
}

async fn next_delivery(sub: &mut GroupSubscription, within: Duration) -> Option<Delivery> {
    match tokio::time::timeout(within, sub.next()).await {
        Ok(Some(Ok(d))) => Some(d),
        Ok(other) => panic!("subscription ended: {other:?}"),
        Err(_) => None,
    }
}

async fn pending_count(conn: &mut redis::aio::MultiplexedConnection) -> i64 {
    let summary: Vec<redis::Value> = redis::cmd("XPENDING")
        .arg(KEY)
        .arg(GROUP)
        .query_async(conn)
        .await
        .expect("xpending");
    match summary.first() {
        Some(redis::Value::Int(n)) => *n,
        _ => 0,
    }
}

#[tokio::test]
async fn competing_consumers_split_the_work_and_each_entry_is_handled_once() {
    let mut s = setup(fast_config()).await;
    let hub = group_hub(&s, group_config());
    let mut a = hub
        .subscribe(KEY, GROUP, None, OnLimit::DeadLetter)
        .expect("join");
    let mut b = hub
        .subscribe(KEY, GROUP, None, OnLimit::DeadLetter)
        .expect("join");
    assert_ne!(a.consumer(), b.consumer(), "generated names are unique");
    tokio::time::sleep(Duration::from_millis(300)).await;
    publish(&mut s.conn, 0, 200, "u").await;
    let mut seen = Vec::new();
    let mut per = [0, 0];
    while seen.len() < 200 {
        tokio::select! {
            Some(Ok(d)) = a.next() => { hub.ack(KEY, GROUP, d.id).await.expect("ack"); per[0] += 1; seen.push(d.field("n").to_string()); }
            Some(Ok(d)) = b.next() => { hub.ack(KEY, GROUP, d.id).await.expect("ack"); per[1] += 1; seen.push(d.field("n").to_string()); }
            _ = tokio::time::sleep(SOON) => panic!("stalled after {}", seen.len()),
        }
    }
    seen.sort_by_key(|n| n.parse::<usize>().expect("n"));
    seen.dedup();
    assert_eq!(seen.len(), 200, "every entry exactly once");
    assert!(per[0] > 0 && per[1] > 0, "both consumers got work: {per:?}");
    assert_eq!(pending_count(&mut s.conn).await, 0);
}

#[tokio::test]
async fn deliveries_of_a_dead_subscriber_reach_another_after_min_idle_and_are_answered_once() {
    let mut s = setup(fast_config()).await;
    let hub = group_hub(
        &s,
        StreamsConfig {
            max_deliveries: 5,
            ..group_config()
        },
    );
    let mut dying = hub
        .subscribe(KEY, GROUP, Some("dying"), OnLimit::DeadLetter)
        .expect("join");
    tokio::time::sleep(Duration::from_millis(300)).await;
    publish(&mut s.conn, 0, 5, "u").await;
    let mut held = Vec::new();
    for _ in 0..5 {
        held.push(next_delivery(&mut dying, SOON).await.expect("delivery").id);
    }
    drop(dying); // dies holding five unanswered deliveries

    let mut survivor = hub
        .subscribe(KEY, GROUP, Some("survivor"), OnLimit::DeadLetter)
        .expect("join");
    let mut answered = Vec::new();
    while answered.len() < 5 {
        let d = next_delivery(&mut survivor, SOON)
            .await
            .expect("reclaimed delivery");
        assert_eq!(d.delivery_count, 2, "second delivery of {}", d.id);
        assert!(
            hub.ack(KEY, GROUP, d.id).await.expect("ack"),
            "first answer counts"
        );
        answered.push(d.id);
    }
    answered.sort();
    assert_eq!(answered, held);
    assert_eq!(pending_count(&mut s.conn).await, 0);
    assert!(
        next_delivery(&mut survivor, Duration::from_millis(1500))
            .await
            .is_none(),
        "nothing twice"
    );
}

#[tokio::test]
async fn a_poison_entry_ends_in_the_dead_letter_stream_after_n_deliveries() {
    let mut s = setup(fast_config()).await;
    let hub = group_hub(&s, group_config());
    let ids = publish(&mut s.conn, 0, 1, "poison").await;
    // The entry kills every subscriber that takes it: each dies holding it,
    // and the next reclaims it after min-idle.
    for (victim, count) in [("first", 1), ("second", 2)] {
        let mut sub = hub
            .subscribe(KEY, GROUP, Some(victim), OnLimit::DeadLetter)
            .expect("join");
        let d = next_delivery(&mut sub, SOON).await.expect("delivery");
        assert_eq!(
            (d.id.to_string(), d.delivery_count),
            (ids[0].clone(), count)
        );
        drop(sub);
    }
    // Delivered twice (max_deliveries): the third would be one too many.
    let mut third = hub
        .subscribe(KEY, GROUP, Some("third"), OnLimit::DeadLetter)
        .expect("join");
    assert!(
        next_delivery(&mut third, Duration::from_secs(3))
            .await
            .is_none(),
        "not delivered again"
    );
    let dlq = common::xrange(&mut s.conn, &dlq_key(KEY)).await;
    assert_eq!(dlq.len(), 1, "moved exactly once: {dlq:?}");
    let fields = &dlq[0].1;
    assert_eq!(fields["original_id"], ids[0]);
    assert_eq!(fields["user"], "poison", "original fields kept");
    assert!(fields["reason"].contains("delivered 3 times"), "{fields:?}");
    assert_eq!(fields["delivery_count"], "3");
    assert_eq!(
        pending_count(&mut s.conn).await,
        0,
        "acknowledged with the move"
    );
}

#[tokio::test]
async fn a_restarted_consumer_first_receives_its_own_pending_entries() {
    let mut s = setup(fast_config()).await;
    let hub = group_hub(
        &s,
        StreamsConfig {
            claim_min_idle: Duration::from_secs(60),
            ..group_config()
        },
    );
    let mut first = hub
        .subscribe(KEY, GROUP, Some("stable"), OnLimit::DeadLetter)
        .expect("join");
    tokio::time::sleep(Duration::from_millis(300)).await;
    publish(&mut s.conn, 0, 3, "u").await;
    for _ in 0..3 {
        next_delivery(&mut first, SOON).await.expect("delivery");
    }
    drop(first);
    publish(&mut s.conn, 3, 2, "u").await;

    let mut again = hub
        .subscribe(KEY, GROUP, Some("stable"), OnLimit::DeadLetter)
        .expect("join");
    let mut got = Vec::new();
    for _ in 0..5 {
        let d = next_delivery(&mut again, SOON).await.expect("delivery");
        got.push((d.field("n").to_string(), d.delivery_count));
    }
    let order: Vec<&str> = got.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        order,
        ["0", "1", "2", "3", "4"],
        "own pending first, then new, each once"
    );
    assert!(
        got[..3].iter().all(|(_, c)| *c == 2),
        "held entries come back as second deliveries: {got:?}"
    );
    // The dropped subscriber's last blocking read may still have taken
    // entry 3 or 4 before its connection closed: then they too are pending
    // on "stable" and come back as second deliveries. At-least-once.
    assert!(got[3..].iter().all(|(_, c)| *c <= 2), "{got:?}");
}

#[tokio::test]
async fn entries_trimmed_while_pending_are_acknowledged_not_looped_on() {
    let mut s = setup(fast_config()).await;
    let hub = group_hub(
        &s,
        StreamsConfig {
            max_deliveries: 10,
            ..group_config()
        },
    );
    let mut holder = hub
        .subscribe(KEY, GROUP, Some("holder"), OnLimit::DeadLetter)
        .expect("join");
    tokio::time::sleep(Duration::from_millis(300)).await;
    publish(&mut s.conn, 0, 3, "u").await;
    for _ in 0..3 {
        next_delivery(&mut holder, SOON).await.expect("delivery");
    }
    drop(holder);
    let _: i64 = redis::cmd("XTRIM")
        .arg(KEY)
        .arg("MAXLEN")
        .arg(0)
        .query_async(&mut s.conn)
        .await
        .expect("trim");
    let mut other = hub
        .subscribe(KEY, GROUP, Some("other"), OnLimit::DeadLetter)
        .expect("join");
    assert!(
        next_delivery(&mut other, Duration::from_secs(2))
            .await
            .is_none(),
        "nothing to deliver"
    );
    assert_eq!(
        pending_count(&mut s.conn).await,
        0,
        "the trimmed entries were acknowledged"
    );
}

#[tokio::test]
async fn groups_are_recreated_after_redis_restarts_without_persistence() {
    let mut s = setup(fast_config()).await;
    let hub = group_hub(&s, group_config());
    let mut sub = hub
        .subscribe(KEY, GROUP, None, OnLimit::DeadLetter)
        .expect("join");
    tokio::time::sleep(Duration::from_millis(300)).await;
    publish(&mut s.conn, 0, 2, "u").await;
    for _ in 0..2 {
        let d = next_delivery(&mut sub, SOON).await.expect("delivery");
        hub.ack(KEY, GROUP, d.id).await.expect("ack");
    }
    s.redis.kill().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    s.redis.restart().await.expect("restart");
    let mut conn = connect(&s.redis).await;
    // The subscriber recreates stream and group; an entry added meanwhile
    // (before or after) is delivered.
    tokio::time::sleep(Duration::from_millis(800)).await;
    publish(&mut conn, 10, 2, "u").await;
    let mut got = Vec::new();
    for _ in 0..2 {
        got.push(
            next_delivery(&mut sub, SOON)
                .await
                .expect("after restart")
                .field("n")
                .to_string(),
        );
    }
    assert_eq!(got, ["10", "11"]);
}

#[tokio::test]
async fn entries_trimmed_while_the_reader_was_cut_off_end_watches_instead_of_being_skipped() {
    let mut s = setup(fast_config()).await;
    let mut sub = s.hub.subscribe(KEY, "", all()).await.expect("subscribe");
    publish(&mut s.conn, 0, 2, "u").await;
    let seen = take(&mut sub, 2).await;
    let cursor = seen[1].id.to_string();

    // Cut every other connection (the reader's), then, atomically and well
    // before its reconnect backoff ends, add entries and trim them away.
    let _: i64 = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("TYPE")
        .arg("normal")
        .arg("SKIPME")
        .arg("yes")
        .query_async(&mut s.conn)
        .await
        .expect("client kill");
    let mut tx = redis::pipe();
    tx.atomic();
    for i in 2..52 {
        tx.cmd("XADD").arg(KEY).arg("*").arg("n").arg(i).ignore();
    }
    tx.cmd("XTRIM").arg(KEY).arg("MAXLEN").arg(5).ignore();
    let () = tx.query_async(&mut s.conn).await.expect("add and trim");

    let end = tokio::time::timeout(SOON, sub.next())
        .await
        .expect("the watch ends");
    match end {
        Some(Err(end)) => assert_eq!(end, WatchEnd::Trimmed),
        Some(Ok(event)) => panic!("skipped into the middle: got {:?}", event.field("n")),
        None => panic!("ended without a reason"),
    }
    let e = s
        .hub
        .subscribe(KEY, &cursor, all())
        .await
        .err()
        .expect("resume refused");
    assert!(matches!(e, WatchError::CursorTrimmed { .. }), "{e:?}");
}

async fn consumers(conn: &mut redis::aio::MultiplexedConnection) -> Vec<(String, i64)> {
    let rows: Vec<HashMap<String, redis::Value>> = redis::cmd("XINFO")
        .arg("CONSUMERS")
        .arg(KEY)
        .arg(GROUP)
        .query_async(conn)
        .await
        .expect("xinfo");
    let mut out: Vec<(String, i64)> = rows
        .iter()
        .map(|r| {
            let name = openoes::redis::value_text(&r["name"]);
            let pending = match &r["pending"] {
                redis::Value::Int(n) => *n,
                _ => -1,
            };
            (name, pending)
        })
        .collect();
    out.sort();
    out
}

#[tokio::test]
async fn idle_consumers_are_deleted_only_when_they_hold_nothing() {
    let mut s = setup(fast_config()).await;
    let config = StreamsConfig {
        idle_consumer_ttl: Duration::from_millis(400),
        claim_min_idle: Duration::from_secs(60), // nobody reclaims in this test
        ..group_config()
    };
    let hub = group_hub(&s, config);
    let mut ghost = hub
        .subscribe(KEY, GROUP, Some("ghost"), OnLimit::DeadLetter)
        .expect("join");
    let mut holder = hub
        .subscribe(KEY, GROUP, Some("holder"), OnLimit::DeadLetter)
        .expect("join");
    tokio::time::sleep(Duration::from_millis(300)).await;
    publish(&mut s.conn, 0, 2, "u").await;
    for sub in [&mut ghost, &mut holder] {
        let d = next_delivery(sub, SOON).await.expect("delivery");
        if sub.consumer() == "ghost" {
            hub.ack(KEY, GROUP, d.id).await.expect("ack");
        }
    }
    drop(ghost);
    drop(holder);
    assert_eq!(
        consumers(&mut s.conn).await,
        [("ghost".into(), 0), ("holder".into(), 1)]
    );

    let _janitor = hub
        .subscribe(KEY, GROUP, Some("janitor"), OnLimit::DeadLetter)
        .expect("join");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let left = consumers(&mut s.conn).await;
    assert!(
        !left.iter().any(|(n, _)| n == "ghost"),
        "idle and empty: deleted: {left:?}"
    );
    assert!(
        left.contains(&("holder".into(), 1)),
        "holds an entry: kept: {left:?}"
    );
}

#[tokio::test]
async fn shutdown_ends_consumer_group_subscriptions() {
    let s = setup(fast_config()).await;
    let hub = group_hub(&s, group_config());
    let mut sub = hub
        .subscribe(KEY, GROUP, None, OnLimit::DeadLetter)
        .expect("join");
    tokio::time::sleep(Duration::from_millis(300)).await;
    s.stop.cancel();
    let end = tokio::time::timeout(SOON, sub.next()).await.expect("ends");
    assert!(matches!(end, Some(Err(WatchEnd::Shutdown))), "{end:?}");
}

#[tokio::test]
async fn a_live_subscriber_is_never_resent_what_it_holds_not_even_after_a_reconnect() {
    let mut s = setup(fast_config()).await;
    let hub = group_hub(&s, group_config()); // claim_min_idle 600 ms
    let mut sub = hub
        .subscribe(KEY, GROUP, Some("busy"), OnLimit::DeadLetter)
        .expect("join");
    tokio::time::sleep(Duration::from_millis(300)).await;
    publish(&mut s.conn, 0, 2, "u").await;
    for _ in 0..2 {
        next_delivery(&mut sub, SOON).await.expect("delivery");
    }
    // Held (not acknowledged) well past min-idle, and its connection cut.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let _: i64 = redis::cmd("CLIENT")
        .arg(&["KILL", "TYPE", "normal", "SKIPME", "yes"])
        .query_async(&mut s.conn)
        .await
        .expect("client kill");
    assert!(
        next_delivery(&mut sub, Duration::from_millis(1500))
            .await
            .is_none(),
        "nothing resent"
    );
    // It reconnected and keeps receiving new entries.
    publish(&mut s.conn, 2, 1, "u").await;
    let d = next_delivery(&mut sub, SOON)
        .await
        .expect("new entry after the reconnect");
    assert_eq!((d.field("n"), d.delivery_count), ("2", 1));
}

#[tokio::test]
async fn an_entry_read_for_a_live_subscriber_whose_reply_was_lost_reaches_it_after_a_reconnect() {
    let mut s = setup(fast_config()).await;
    let hub = group_hub(&s, group_config());
    let mut sub = hub
        .subscribe(KEY, GROUP, Some("c"), OnLimit::DeadLetter)
        .expect("join");
    tokio::time::sleep(Duration::from_millis(300)).await;
    publish(&mut s.conn, 0, 1, "u").await;
    let held = next_delivery(&mut sub, SOON).await.expect("delivery");
    assert_eq!(held.field("n"), "0");

    // Entry 1 is read for consumer "c" but the reply never reaches the
    // member (as when the connection drops mid-reply): done here atomically,
    // so the member's own blocked read cannot take it first.
    let (_, _): (String, redis::Value) = redis::pipe()
        .atomic()
        .cmd("XADD")
        .arg(&[KEY, "*", "n", "1", "user", "u"])
        .cmd("XREADGROUP")
        .arg(&["GROUP", GROUP, "c", "COUNT", "1", "STREAMS", KEY, ">"])
        .query_async(&mut s.conn)
        .await
        .expect("read for c");
    let _: i64 = redis::cmd("CLIENT")
        .arg(&["KILL", "TYPE", "normal", "SKIPME", "yes"])
        .query_async(&mut s.conn)
        .await
        .expect("client kill");

    // After its reconnect the member delivers entry 1, and not entry 0,
    // which its client still holds.
    let d = next_delivery(&mut sub, SOON)
        .await
        .expect("the stranded entry");
    assert_eq!(d.field("n"), "1");
    assert!(
        next_delivery(&mut sub, Duration::from_millis(1500))
            .await
            .is_none(),
        "nothing else, in particular not the held entry again"
    );
    assert_eq!(
        pending_count(&mut s.conn).await,
        2,
        "both await their answer"
    );
}

#[tokio::test]
async fn a_trim_during_a_slow_catch_up_ends_the_watch_without_a_gap() {
    let config = StreamsConfig {
        read_batch: 2,
        watch_queue_capacity: 1,
        ..fast_config()
    };
    let mut s = setup(config).await;
    let ids = publish(&mut s.conn, 0, 10, "u").await;
    let mut sub = s.hub.subscribe(KEY, &ids[0], all()).await.expect("resume");
    let first = take(&mut sub, 1).await;
    assert_eq!(numbers(&first), [1]);
    let _: i64 = redis::cmd("XTRIM")
        .arg(KEY)
        .arg("MAXLEN")
        .arg(3)
        .query_async(&mut s.conn)
        .await
        .expect("trim");
    let mut got = vec![1];
    let end = loop {
        match tokio::time::timeout(SOON, sub.next()).await.expect("ends") {
            Some(Ok(e)) => got.push(e.field("n").parse::<usize>().expect("n")),
            Some(Err(end)) => break end,
            None => panic!("no reason"),
        }
    };
    assert_eq!(end, WatchEnd::Trimmed);
    let expected: Vec<usize> = (1..=got.len()).collect();
    assert_eq!(got, expected, "what arrived has no gap");
}

#[tokio::test]
async fn shutdown_ends_a_watch_that_is_still_catching_up() {
    let config = StreamsConfig {
        watch_queue_capacity: 4,
        ..fast_config()
    };
    let mut s = setup(config).await;
    let ids = publish(&mut s.conn, 0, 5000, "u").await;
    let mut sub = s.hub.subscribe(KEY, &ids[0], all()).await.expect("resume");
    take(&mut sub, 1).await;
    s.stop.cancel();
    let mut received = 1;
    let end = loop {
        match tokio::time::timeout(SOON, sub.next()).await.expect("ends") {
            Some(Ok(_)) => received += 1,
            Some(Err(end)) => break end,
            None => panic!("no reason"),
        }
    };
    assert_eq!(end, WatchEnd::Shutdown);
    assert!(
        received < 100,
        "stopped promptly, not after the whole backlog: {received}"
    );
}

#[tokio::test]
async fn a_subscription_dropped_during_catch_up_is_never_attached() {
    let mut s = setup(fast_config()).await;
    let ids = publish(&mut s.conn, 0, 3000, "u").await;
    for _ in 0..20 {
        let sub = s.hub.subscribe(KEY, &ids[0], all()).await.expect("resume");
        drop(sub);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(s.hub.attached_subscribers().await, 0);
    assert_eq!(s.hub.subscriber_count(), 0);
}

#[tokio::test]
async fn an_entry_that_cannot_be_dead_lettered_stays_pending_and_others_flow() {
    let mut s = setup(fast_config()).await;
    let hub = group_hub(&s, group_config());
    // An operator's mistake: a string where the dead-letter stream belongs.
    let _: () = redis::cmd("SET")
        .arg(dlq_key(KEY))
        .arg("oops")
        .query_async(&mut s.conn)
        .await
        .expect("set");
    publish(&mut s.conn, 0, 1, "poison").await;
    for victim in ["first", "second"] {
        let mut sub = hub
            .subscribe(KEY, GROUP, Some(victim), OnLimit::DeadLetter)
            .expect("join");
        next_delivery(&mut sub, SOON).await.expect("delivery");
        drop(sub);
    }
    let mut third = hub
        .subscribe(KEY, GROUP, Some("third"), OnLimit::DeadLetter)
        .expect("join");
    assert!(
        next_delivery(&mut third, Duration::from_secs(2))
            .await
            .is_none(),
        "the poison entry is not delivered"
    );
    publish(&mut s.conn, 1, 2, "u").await;
    for n in ["1", "2"] {
        let d = next_delivery(&mut third, SOON)
            .await
            .expect("later entries still flow");
        assert_eq!(d.field("n"), n);
        hub.ack(KEY, GROUP, d.id).await.expect("ack");
    }
    let pending: Vec<redis::Value> = redis::cmd("XPENDING")
        .arg(KEY)
        .arg(GROUP)
        .arg("-")
        .arg("+")
        .arg(10)
        .query_async(&mut s.conn)
        .await
        .expect("xpending");
    assert_eq!(pending.len(), 1, "only the poison entry is left pending");
}
