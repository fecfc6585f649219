//! Commit → subscriber latency of the change feed (`PgBackend::subscribe`).
//!
//! ```text
//! cargo bench --bench feed_latency            # full run (2 000 events per scenario)
//! DATABASE_URL=postgres://... cargo bench --bench feed_latency
//! ```
//!
//! Without `DATABASE_URL` it starts a private, *durable* PostgreSQL cluster (fsync on,
//! the server defaults) in a temporary directory and removes it afterwards. Run through
//! `cargo test --benches` (no `--bench` flag) it does a 50-event smoke run.
//!
//! Each scenario writes records one at a time (a pause of 0–4 ms between writes, so the
//! subscribers are idle when an event commits: this measures wake-up latency, not
//! throughput) and takes, for each event and subscriber, the time from the writer's
//! call returning (the commit acknowledged) to the subscriber receiving the event, and
//! also from the call starting (an upper bound that includes the write itself).
//! Printed: p50, p90, p99 and max, in milliseconds. Goal: p99 under 30 ms.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use ddms_core::{Role, Scope, Store, TenantScope};
use ddms_diesel::{migrate, PgBackend, PgConfig};
use serde_json::json;

#[path = "support/mod.rs"]
mod support;

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn summary(name: &str, mut v: Vec<f64>) {
    v.sort_by(|a, b| a.total_cmp(b));
    println!(
        "{name:<58} n={:<6} p50={:>6.2}  p90={:>6.2}  p99={:>6.2}  max={:>7.2}  (ms)",
        v.len(),
        percentile(&v, 0.50),
        percentile(&v, 0.90),
        percentile(&v, 0.99),
        v.last().copied().unwrap_or(f64::NAN)
    );
}

fn xorshift(state: &mut u64) -> u64 {
    let mut x = *state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    *state = x;
    x
}

/// `subscribers` subscriptions on one tenant, `writers` writer threads writing
/// `events` records in total; returns (from commit ack, from call start) latencies.
fn scenario(
    backend: &PgBackend,
    ts: &TenantScope,
    subscribers: usize,
    writers: usize,
    events: usize,
) -> (Vec<f64>, Vec<f64>) {
    // Start after everything already in the feed.
    let mut after = 0;
    loop {
        let p = ts.events(after, Some(1000)).unwrap();
        if p.events.is_empty() {
            break;
        }
        after = p.next;
    }
    let received: Arc<Mutex<Vec<(String, Instant)>>> = Arc::new(Mutex::new(Vec::new()));
    let subs: Vec<_> = (0..subscribers)
        .map(|_| {
            let mut sub = backend.subscribe(ts.scope(), after);
            let received = Arc::clone(&received);
            thread::spawn(move || {
                let mut got = 0;
                while got < events {
                    match sub.try_next(Duration::from_secs(30)) {
                        Ok(Some(e)) => {
                            let now = Instant::now();
                            received
                                .lock()
                                .unwrap()
                                .push((e.subject_id.to_string(), now));
                            got += 1;
                        }
                        Ok(None) => panic!("no event for 30 s"),
                        Err(e) => panic!("{e}"),
                    }
                }
            })
        })
        .collect();
    // Let the listener connect.
    let t = Instant::now();
    while !backend.feed_listener_stats().connected && t.elapsed() < Duration::from_secs(10) {
        thread::sleep(Duration::from_millis(10));
    }
    thread::sleep(Duration::from_millis(200));
    let sent: Arc<Mutex<HashMap<String, (Instant, Instant)>>> =
        Arc::new(Mutex::new(HashMap::new()));
    let per_writer = events / writers;
    let handles: Vec<_> = (0..writers)
        .map(|w| {
            let items = ts.records("probe").unwrap();
            let sent = Arc::clone(&sent);
            thread::spawn(move || {
                let mut rng = 0x9E37_79B9_7F4A_7C15u64 ^ (w as u64 + 1);
                for i in 0..per_writer {
                    thread::sleep(Duration::from_micros(xorshift(&mut rng) % 4000));
                    let before = Instant::now();
                    let r = items.create(&json!({"n": i})).unwrap();
                    let after = Instant::now();
                    sent.lock()
                        .unwrap()
                        .insert(r.id.to_string(), (before, after));
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    for s in subs {
        s.join().unwrap();
    }
    let sent = sent.lock().unwrap();
    let mut from_ack = Vec::new();
    let mut from_call = Vec::new();
    for (id, at) in received.lock().unwrap().iter() {
        let (before, after) = sent[id];
        from_ack.push(at.saturating_duration_since(after).as_secs_f64() * 1000.0);
        from_call.push(at.saturating_duration_since(before).as_secs_f64() * 1000.0);
    }
    (from_ack, from_call)
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let events = if full { 2000 } else { 50 };
    let db = support::database("feed");
    migrate(&db.url).expect("migrate");
    let mut cfg = PgConfig::new(&db.url);
    cfg.pool_size = 32;
    let backend = PgBackend::connect(&cfg).expect("connect");
    let store = Store::new(backend.clone());
    let tenant = store.create_tenant(None, "bench").unwrap();
    let ts = store.tenant(Scope::new(tenant.id, "bench", Role::Admin));
    ts.create_entity_type(
        &serde_json::from_value(
            json!({"name": "probe", "fields": [{"name": "n", "kind": "integer"}]}),
        )
        .unwrap(),
    )
    .unwrap();
    // Some other tenants' traffic is irrelevant to a subscriber: one tenant is enough.
    println!("feed latency, {events} events per scenario (commit ack -> subscriber receives)");
    for (subs, writers) in [(1, 1), (8, 1), (8, 4), (32, 4)] {
        let (ack, call) = scenario(&backend, &ts, subs, writers, events);
        summary(
            &format!("{subs} subscriber(s), {writers} writer(s): from commit ack"),
            ack,
        );
        summary(
            &format!("{subs} subscriber(s), {writers} writer(s): from write call start"),
            call,
        );
    }
    let stats = backend.feed_listener_stats();
    println!(
        "listener: {} connection(s), {} notification(s)",
        stats.connects, stats.notifications
    );
}
