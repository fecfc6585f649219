//! The change feed under concurrency, the blocking subscription (including a killed
//! connection), and retention (horizon, `CursorExpired`) on PostgreSQL and in memory.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use ddms_core::memory::MemoryBackend;
use ddms_core::{
    ConflictKind, Error, Event, EventKind, NewRelation, Role, Scope, Store, TenantScope,
};
use ddms_diesel::subscribe::LISTENER_APPLICATION_NAME;
use ddms_diesel::{harness, migrate, PgBackend, PgConfig, SubscribeOptions, Subscription};
use diesel::{Connection, PgConnection, RunQueryDsl};
use serde_json::json;
use uuid::Uuid;

use crate::common::db;

/// A tiny xorshift generator (deterministic per seed; no dependency needed).
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

fn own_backend(url: &str, pool: u32) -> PgBackend {
    let mut cfg = PgConfig::new(url);
    cfg.pool_size = pool;
    PgBackend::connect(&cfg).expect("connect")
}

/// A tenant with an `item` type (unique `tag`) and a many-to-many `link` relation type.
fn setup(store: &Store, name: &str) -> TenantScope {
    let t = store.create_tenant(None, name).unwrap();
    let ts = store.tenant(Scope::new(t.id, "writer", Role::Admin));
    ts.create_entity_type(
        &serde_json::from_value(json!({
            "name": "item",
            "fields": [{"name": "tag", "kind": "text", "required": true, "unique": true},
                       {"name": "n", "kind": "integer"},
                       {"name": "w", "kind": "integer"}]
        }))
        .unwrap(),
    )
    .unwrap();
    ts.create_relation_type(
        &serde_json::from_value(json!({
            "name": "link", "source": "item", "target": "item",
            "cardinality": "many_to_many", "on_delete": "cascade"
        }))
        .unwrap(),
    )
    .unwrap();
    ts
}

fn all_events(ts: &TenantScope) -> Vec<Event> {
    let mut out = Vec::new();
    let mut after = 0;
    loop {
        let page = ts.events(after, Some(1000)).unwrap();
        if page.events.is_empty() {
            return out;
        }
        after = page.next;
        out.extend(page.events);
    }
}

/// What one writer committed, in its commit order.
#[derive(Default)]
struct WriterLog {
    expected: Vec<(EventKind, Uuid)>,
    aborted_tags: Vec<String>,
    aborted: usize,
}

struct Edge {
    id: Uuid,
    source: Uuid,
    target: Uuid,
    at: chrono::DateTime<chrono::Utc>,
}

/// 500 changes of writer `w`: creates (single and batches), updates, deletes (with the
/// cascaded relation deletions), relations; plus aborted batches (a unique violation in
/// the middle) and stale updates, whose events must never appear.
fn writer(ts: TenantScope, w: u64, changes: usize) -> WriterLog {
    let items = ts.records("item").unwrap();
    let mut rng = Rng::new(w + 1);
    let mut log = WriterLog::default();
    let mut recs: Vec<(Uuid, i64, String)> = Vec::new();
    let mut edges: Vec<Edge> = Vec::new();
    let mut seq = 0;
    let tag = |seq: &mut u64| {
        *seq += 1;
        format!("w{w}-{seq}")
    };
    let mut done = 0;
    while done < changes {
        if rng.below(4) == 0 {
            thread::sleep(Duration::from_micros(rng.below(2000)));
        }
        let op = rng.below(100);
        match op {
            0..=29 => {
                let tg = tag(&mut seq);
                let r = items.create(&json!({"tag": tg, "n": 0, "w": w})).unwrap();
                log.expected.push((EventKind::RecordCreated, r.id));
                recs.push((r.id, r.version, tg));
            }
            30..=39 => {
                let k = 2 + rng.below(3) as usize;
                let tags: Vec<String> = (0..k).map(|_| tag(&mut seq)).collect();
                let rows: Vec<_> = tags
                    .iter()
                    .map(|t| json!({"tag": t, "n": 0, "w": w}))
                    .collect();
                let mut out = items.create_many(&rows).unwrap();
                for r in &out {
                    recs.push((r.id, r.version, r.data["tag"].as_str().unwrap().to_string()));
                }
                // One transaction: its events are numbered in (created_at, id) order.
                out.sort_by_key(|r| r.id);
                for r in out {
                    log.expected.push((EventKind::RecordCreated, r.id));
                }
            }
            40..=44 => {
                // Aborted: the middle record repeats a committed tag.
                let Some((_, _, taken)) = recs.first().cloned() else {
                    continue;
                };
                let a = format!("abort-{}", tag(&mut seq));
                let b = format!("abort-{}", tag(&mut seq));
                let rows = vec![
                    json!({"tag": a, "w": w}),
                    json!({"tag": taken, "w": w}),
                    json!({"tag": b, "w": w}),
                ];
                match items.create_many(&rows) {
                    Err(Error::Conflict {
                        kind: ConflictKind::Unique,
                        ..
                    }) => {}
                    other => panic!("expected a unique violation, got {other:?}"),
                }
                log.aborted_tags.extend([a, b]);
                log.aborted += 1;
            }
            45..=49 => {
                let Some(i) = (!recs.is_empty()).then(|| rng.below(recs.len() as u64) as usize)
                else {
                    continue;
                };
                let (id, v, _) = recs[i].clone();
                match items.patch(id, &json!({"n": -1}), Some(v + 7)) {
                    Err(Error::Conflict {
                        kind: ConflictKind::StaleVersion,
                        ..
                    }) => {}
                    other => panic!("expected a stale version, got {other:?}"),
                }
                log.aborted += 1;
            }
            50..=69 => {
                let Some(i) = (!recs.is_empty()).then(|| rng.below(recs.len() as u64) as usize)
                else {
                    continue;
                };
                let (id, v, _) = recs[i].clone();
                let r = items
                    .patch(id, &json!({"n": rng.below(1000)}), Some(v))
                    .unwrap();
                recs[i].1 = r.version;
                log.expected.push((EventKind::RecordUpdated, id));
            }
            70..=79 => {
                let Some(i) = (!recs.is_empty()).then(|| rng.below(recs.len() as u64) as usize)
                else {
                    continue;
                };
                let (id, v, _) = recs.swap_remove(i);
                items.delete(id, Some(v)).unwrap();
                let mut gone: Vec<&Edge> = edges
                    .iter()
                    .filter(|e| e.source == id || e.target == id)
                    .collect();
                gone.sort_by_key(|e| (e.at, e.id));
                for e in gone {
                    log.expected.push((EventKind::RelationDeleted, e.id));
                }
                edges.retain(|e| e.source != id && e.target != id);
                log.expected.push((EventKind::RecordDeleted, id));
            }
            80..=94 => {
                if recs.len() < 2 {
                    continue;
                }
                let a = recs[rng.below(recs.len() as u64) as usize].0;
                let b = recs[rng.below(recs.len() as u64) as usize].0;
                if a == b || edges.iter().any(|e| e.source == a && e.target == b) {
                    continue;
                }
                let r = ts
                    .create_relation(&NewRelation {
                        relation_type: "link".into(),
                        source_id: a,
                        target_id: b,
                        data: None,
                    })
                    .unwrap();
                log.expected.push((EventKind::RelationCreated, r.id));
                edges.push(Edge {
                    id: r.id,
                    source: a,
                    target: b,
                    at: r.created_at,
                });
            }
            _ => {
                if edges.is_empty() {
                    continue;
                }
                let e = edges.swap_remove(rng.below(edges.len() as u64) as usize);
                ts.delete_relation(e.id).unwrap();
                log.expected.push((EventKind::RelationDeleted, e.id));
            }
        }
        done += 1;
    }
    log
}

/// Reads by cursor as fast as it can (random page sizes) until it reaches `last`.
fn cursor_reader(ts: TenantScope, done: Arc<AtomicI64>, seed: u64) -> Vec<Event> {
    let mut rng = Rng::new(seed);
    let mut seen: Vec<Event> = Vec::new();
    let mut cursor = 0;
    loop {
        let limit = 1 + rng.below(300) as usize;
        let page = ts.events(cursor, Some(limit)).unwrap();
        for e in &page.events {
            assert_eq!(e.seq, cursor + 1, "gap or repeat after {cursor}");
            cursor = e.seq;
        }
        if page.events.is_empty() {
            if cursor >= done.load(Ordering::SeqCst) {
                return seen;
            }
            thread::yield_now();
        }
        seen.extend(page.events);
    }
}

#[test]
fn concurrent_writers_and_readers_see_every_committed_change_once_in_order() {
    const WRITERS: u64 = 8;
    const CHANGES: usize = 500;
    let backend = own_backend(&db().url, 16);
    let store = Store::new(backend.clone());
    let ts = setup(&store, "feed-concurrency");
    let setup_events = all_events(&ts).len();
    assert_eq!(setup_events, 2);
    let viewer = store.tenant(Scope::new(ts.scope().tenant, "reader", Role::Viewer));

    // i64::MAX until the writers are done; then the last seq.
    let last = Arc::new(AtomicI64::new(i64::MAX));
    let readers: Vec<_> = (0..2)
        .map(|i| {
            let (ts, last) = (viewer.clone(), Arc::clone(&last));
            thread::spawn(move || cursor_reader(ts, last, 100 + i))
        })
        .collect();
    // Three subscriptions (they share a per-tenant cache; different page sizes).
    let sub_readers: Vec<_> = [500, 7, 64]
        .into_iter()
        .map(|page_size| {
            let opts = SubscribeOptions {
                page_size,
                ..SubscribeOptions::default()
            };
            let mut sub = backend.subscribe_with(viewer.scope(), 0, opts);
            let last = Arc::clone(&last);
            thread::spawn(move || {
                let mut seen: Vec<Event> = Vec::new();
                loop {
                    if let Some(e) = sub.try_next(Duration::from_millis(200)).unwrap() {
                        assert_eq!(
                            e.seq,
                            seen.last().map_or(0, |l| l.seq) + 1,
                            "subscription gap or repeat"
                        );
                        seen.push(e);
                    } else if sub.cursor() >= last.load(Ordering::SeqCst) {
                        return seen;
                    }
                }
            })
        })
        .collect();
    let started = Instant::now();
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let ts = ts.clone();
            thread::spawn(move || writer(ts, w, CHANGES))
        })
        .collect();
    let logs: Vec<WriterLog> = writers.into_iter().map(|h| h.join().unwrap()).collect();
    let feed = all_events(&ts);
    last.store(feed.last().unwrap().seq, Ordering::SeqCst);
    let cursor_views: Vec<Vec<Event>> = readers.into_iter().map(|h| h.join().unwrap()).collect();
    let sub_views: Vec<Vec<Event>> = sub_readers.into_iter().map(|h| h.join().unwrap()).collect();
    eprintln!(
        "{} events from {WRITERS}x{CHANGES} changes in {:?}; {} aborted",
        feed.len(),
        started.elapsed(),
        logs.iter().map(|l| l.aborted).sum::<usize>()
    );

    // The final feed: 1..=N without gaps.
    for (i, e) in feed.iter().enumerate() {
        assert_eq!(e.seq, i as i64 + 1);
    }
    // Every consumer saw exactly the final feed.
    for view in cursor_views.iter().chain(&sub_views) {
        assert_eq!(view.len(), feed.len());
        assert!(view.iter().zip(&feed).all(|(a, b)| a == b));
    }
    // Exactly the committed changes: per writer, its changes in its commit order.
    let total: usize = logs.iter().map(|l| l.expected.len()).sum();
    assert_eq!(feed.len(), setup_events + total);
    for (w, log) in logs.iter().enumerate() {
        let mine: HashSet<Uuid> = log.expected.iter().map(|(_, id)| *id).collect();
        let got: Vec<(EventKind, Uuid)> = feed
            .iter()
            .filter(|e| mine.contains(&e.subject_id))
            .map(|e| (e.kind, e.subject_id))
            .collect();
        assert_eq!(got, log.expected, "writer {w}");
        assert!(log.aborted > 0);
    }
    // Aborted transactions left no trace.
    let aborted: HashSet<&str> = logs
        .iter()
        .flat_map(|l| l.aborted_tags.iter().map(String::as_str))
        .collect();
    assert!(!aborted.is_empty());
    for e in &feed {
        if let Some(t) = e.payload.pointer("/data/tag").and_then(|v| v.as_str()) {
            assert!(
                !aborted.contains(t),
                "event of an aborted transaction: {e:?}"
            );
        }
    }
    let per_kind: HashMap<EventKind, usize> = feed.iter().fold(HashMap::new(), |mut m, e| {
        *m.entry(e.kind).or_default() += 1;
        m
    });
    for k in [
        EventKind::RecordCreated,
        EventKind::RecordUpdated,
        EventKind::RecordDeleted,
        EventKind::RelationCreated,
        EventKind::RelationDeleted,
    ] {
        assert!(per_kind.get(&k).copied().unwrap_or(0) > 0, "no {k:?}");
    }
}

#[test]
fn subscription_resumes_from_its_cursor_and_sees_only_its_tenant() {
    let backend = own_backend(&db().url, 4);
    let store = Store::new(backend.clone());
    let a = setup(&store, "feed-sub-a");
    let b = setup(&store, "feed-sub-b");
    let ai = a.records("item").unwrap();
    let bi = b.records("item").unwrap();
    let mut sub = backend.subscribe(a.scope(), 0);
    for i in 0..5 {
        ai.create(&json!({"tag": format!("a{i}")})).unwrap();
        bi.create(&json!({"tag": format!("b{i}")})).unwrap();
    }
    let mut got = Vec::new();
    while got.len() < 7 {
        got.push(
            sub.try_next(Duration::from_secs(10))
                .unwrap()
                .expect("event"),
        );
    }
    assert_eq!(
        got.iter().map(|e| e.seq).collect::<Vec<_>>(),
        (1..=7).collect::<Vec<_>>()
    );
    assert!(got[2..]
        .iter()
        .all(|e| e.payload["data"]["tag"].as_str().unwrap().starts_with('a')));
    assert_eq!(sub.try_next(Duration::from_millis(100)).unwrap(), None);
    let cursor = sub.cursor();
    assert_eq!(cursor, 7);
    drop(sub);

    // Changes while nobody listens; a new subscription resumes after the cursor.
    for i in 5..8 {
        ai.create(&json!({"tag": format!("a{i}")})).unwrap();
    }
    let mut sub = backend.subscribe(a.scope(), cursor);
    let batch = sub.next_batch(10, Duration::from_secs(10)).unwrap();
    assert_eq!(
        batch.iter().map(|e| e.seq).collect::<Vec<_>>(),
        vec![8, 9, 10]
    );
    // Woken by NOTIFY: with a 1 s fallback poll, a change arrives well within 5 s.
    let t = Instant::now();
    ai.create(&json!({"tag": "a-late"})).unwrap();
    let e = sub
        .try_next(Duration::from_secs(5))
        .unwrap()
        .expect("event");
    assert_eq!(e.seq, 11);
    assert!(t.elapsed() < Duration::from_secs(5));
    assert!(backend.feed_listener_stats().notifications > 0);

    // The iterator form.
    ai.create(&json!({"tag": "a-iter"})).unwrap();
    let e = sub.next().unwrap().unwrap();
    assert_eq!(e.seq, 12);
}

fn superuser(url: &str) -> PgConnection {
    PgConnection::establish(url).expect("connect")
}

#[derive(diesel::QueryableByName)]
struct Count {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    n: i64,
}

/// Terminates the backends of this database matching `filter` (our own SQL).
fn kill(url: &str, filter: &str) -> i64 {
    let mut c = superuser(url);
    let rows: Vec<Count> = diesel::sql_query(format!(
        "SELECT count(pg_terminate_backend(pid)) AS n FROM pg_stat_activity \
         WHERE datname = current_database() AND pid <> pg_backend_pid() AND {filter}"
    ))
    .load(&mut c)
    .unwrap();
    rows[0].n
}

fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let t = Instant::now();
    while !f() {
        assert!(t.elapsed() < timeout, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(20));
    }
}

/// Creates `n` records, retrying a write that failed because its (killed) pooled
/// connection was dead: such a failure happens before anything is written.
fn create_retrying(items: &ddms_core::Records, tag: String) {
    for _ in 0..50 {
        match items.create(&json!({"tag": tag})) {
            Ok(_) => return,
            Err(Error::Unavailable(_)) => thread::sleep(Duration::from_millis(20)),
            Err(e) => panic!("{e}"),
        }
    }
    panic!("database did not come back");
}

#[test]
fn subscription_survives_killed_connections_and_loses_nothing() {
    let url = harness::fresh_database("ddms_feed_kill").unwrap();
    migrate(&url).unwrap();
    let backend = own_backend(&url, 4);
    let store = Store::new(backend.clone());
    let ts = setup(&store, "feed-kill");
    let items = ts.records("item").unwrap();
    // A fallback poll of a minute: only notifications (and the wake-up after the
    // listener reconnects) can deliver events within this test's time.
    let opts = SubscribeOptions {
        poll_interval: Duration::from_secs(60),
        ..SubscribeOptions::default()
    };
    let sub = backend.subscribe_with(ts.scope(), 0, opts);
    wait_until("the listener", Duration::from_secs(10), || {
        backend.feed_listener_stats().connected
    });
    let got = Arc::new(Mutex::new(Vec::<i64>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let consumer = {
        let (got, stop) = (Arc::clone(&got), Arc::clone(&stop));
        let mut sub = sub;
        thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                if let Some(e) = sub.try_next(Duration::from_millis(100)).unwrap() {
                    got.lock().unwrap().push(e.seq);
                }
            }
            sub
        })
    };
    for i in 0..20 {
        items
            .create(&json!({"tag": format!("before-{i}")}))
            .unwrap();
    }
    wait_until("the first events", Duration::from_secs(10), || {
        got.lock().unwrap().len() == 22
    });

    // Kill the listener alone, then write.
    assert_eq!(
        kill(
            &url,
            &format!("application_name = '{LISTENER_APPLICATION_NAME}'")
        ),
        1
    );
    for i in 0..20 {
        create_retrying(&items, format!("no-listener-{i}"));
    }
    wait_until(
        "events after the listener was killed",
        Duration::from_secs(15),
        || got.lock().unwrap().len() == 42,
    );
    assert!(backend.feed_listener_stats().connects >= 2);

    // Kill every connection of the database (the pool's and the listener's).
    assert!(kill(&url, "TRUE") >= 2);
    for i in 0..20 {
        create_retrying(&items, format!("all-killed-{i}"));
    }
    wait_until(
        "events after every connection was killed",
        Duration::from_secs(15),
        || got.lock().unwrap().len() == 62,
    );
    wait_until("the listener to reconnect", Duration::from_secs(10), || {
        backend.feed_listener_stats().connected
    });
    // And notifications flow again.
    items.create(&json!({"tag": "after"})).unwrap();
    wait_until("a notified event", Duration::from_secs(15), || {
        got.lock().unwrap().len() == 63
    });
    stop.store(true, Ordering::SeqCst);
    let sub = consumer.join().unwrap();
    assert_eq!(*got.lock().unwrap(), (1..=63).collect::<Vec<_>>());
    assert_eq!(sub.cursor(), 63);
    assert!(backend.feed_listener_stats().connects >= 3);
}

#[test]
fn retention_prunes_a_prefix_and_expires_older_cursors() {
    // Its own database: pruning works across tenants.
    let url = harness::fresh_database("ddms_feed_retention").unwrap();
    migrate(&url).unwrap();
    let backend = own_backend(&url, 4);
    let store = Store::new(backend.clone());
    let a = setup(&store, "retention-a");
    let b = setup(&store, "retention-b");
    let (ai, bi) = (a.records("item").unwrap(), b.records("item").unwrap());
    for i in 0..10 {
        ai.create(&json!({"tag": format!("old{i}")})).unwrap();
    }
    bi.create(&json!({"tag": "old"})).unwrap();
    thread::sleep(Duration::from_millis(1500));
    for i in 0..5 {
        ai.create(&json!({"tag": format!("new{i}")})).unwrap();
    }
    // a: 2 setup + 10 old + 5 new; b: 2 setup + 1 old.
    assert_eq!(backend.prune_events(Duration::from_secs(3600)).unwrap(), 0);
    assert_eq!(
        backend.prune_events(Duration::from_secs(1)).unwrap(),
        12 + 3
    );
    assert_eq!(backend.feed_bounds(a.scope()).unwrap().horizon, 12);
    assert_eq!(backend.feed_bounds(b.scope()).unwrap().horizon, 3);

    // Cursors below the horizon are refused; at or above it they read on.
    match a.events(0, None) {
        Err(Error::CursorExpired { horizon }) => assert_eq!(horizon, 12),
        other => panic!("expected CursorExpired, got {other:?}"),
    }
    assert!(matches!(
        a.events(11, None),
        Err(Error::CursorExpired { horizon: 12 })
    ));
    let page = a.events(12, None).unwrap();
    assert_eq!(
        page.events.iter().map(|e| e.seq).collect::<Vec<_>>(),
        (13..=17).collect::<Vec<_>>()
    );
    assert!(b.events(3, None).unwrap().events.is_empty());

    // A subscription below the horizon ends with CursorExpired.
    let mut sub = backend.subscribe(a.scope(), 5);
    assert!(matches!(
        sub.try_next(Duration::from_secs(5)),
        Err(Error::CursorExpired { horizon: 12 })
    ));
    assert!(sub.is_ended());
    assert!(matches!(sub.next(), Some(Err(Error::CursorExpired { .. }))));
    assert!(sub.next().is_none());

    // Writes go on after the horizon; pruning everything keeps the numbering.
    ai.create(&json!({"tag": "later"})).unwrap();
    assert_eq!(
        backend
            .prune_tenant_events(a.scope(), Duration::ZERO)
            .unwrap(),
        6
    );
    let bounds = backend.feed_bounds(a.scope()).unwrap();
    assert_eq!((bounds.horizon, bounds.last_seq), (18, 18));
    ai.create(&json!({"tag": "after-all"})).unwrap();
    assert_eq!(a.events(18, None).unwrap().events[0].seq, 19);
    // Other tenants are untouched by a per-tenant prune.
    assert_eq!(backend.feed_bounds(b.scope()).unwrap().horizon, 3);
}

#[test]
fn memory_backend_has_the_same_retention_contract() {
    let mem = Arc::new(MemoryBackend::new());
    let store = Store::from_arc(mem.clone());
    let a = setup(&store, "mem-retention");
    let ai = a.records("item").unwrap();
    for i in 0..10 {
        ai.create(&json!({"tag": format!("old{i}")})).unwrap();
    }
    thread::sleep(Duration::from_millis(300));
    for i in 0..5 {
        ai.create(&json!({"tag": format!("new{i}")})).unwrap();
    }
    assert_eq!(mem.prune_events(Duration::from_secs(3600)).unwrap(), 0);
    assert_eq!(mem.prune_events(Duration::from_millis(200)).unwrap(), 12);
    assert!(matches!(
        a.events(0, None),
        Err(Error::CursorExpired { horizon: 12 })
    ));
    assert!(matches!(
        a.events(11, None),
        Err(Error::CursorExpired { horizon: 12 })
    ));
    let page = a.events(12, None).unwrap();
    assert_eq!(
        page.events.iter().map(|e| e.seq).collect::<Vec<_>>(),
        (13..=17).collect::<Vec<_>>()
    );
    assert_eq!(mem.prune_events(Duration::ZERO).unwrap(), 5);
    assert!(a.events(17, None).unwrap().events.is_empty());
    ai.create(&json!({"tag": "after"})).unwrap();
    assert_eq!(a.events(17, None).unwrap().events[0].seq, 18);

    // The polling subscription over any backend.
    let backend: Arc<dyn ddms_core::Backend> = mem;
    let mut sub = Subscription::polling(backend, a.scope(), 17, Duration::from_millis(20));
    assert_eq!(
        sub.try_next(Duration::from_secs(2)).unwrap().unwrap().seq,
        18
    );
    ai.create(&json!({"tag": "polled"})).unwrap();
    assert_eq!(
        sub.try_next(Duration::from_secs(2)).unwrap().unwrap().seq,
        19
    );
    let mut expired = Subscription::polling(
        store.backend().clone(),
        a.scope(),
        3,
        Duration::from_millis(20),
    );
    assert!(matches!(
        expired.try_next(Duration::from_secs(1)),
        Err(Error::CursorExpired { horizon: 17 })
    ));
}
