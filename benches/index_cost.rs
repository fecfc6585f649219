//! What field-value indexes cost and buy: insert cost with 0, 5 and 20 indexed fields,
//! backfill speed, and filter latency indexed vs unindexed at 100k and 1M records.
//!
//! ```text
//! cargo bench --bench index_cost                   # 100k and 1M records
//! INDEX_COST_MAX=100000 cargo bench --bench index_cost   # 100k only
//! DATABASE_URL=postgres://... cargo bench --bench index_cost
//! ```
//!
//! Without `DATABASE_URL` it starts a private, *durable* PostgreSQL cluster (fsync on)
//! in a temporary directory and removes it afterwards. Run through `cargo test
//! --benches` (no `--bench` flag) it does a tiny smoke run. Everything goes through the
//! library, as the RLS-bound app role: `Records::create` (one record per transaction),
//! `Records::create_many` (1 000 records per transaction), `Records::query`.

use std::thread;
use std::time::{Duration, Instant};

use ddms_core::NewEntityType;
use ddms_core::{IndexState, Query, Role, Scope, Store, TenantScope};
use ddms_diesel::bulk::{BulkLoad, BulkOptions, RecordEncoder};
use ddms_diesel::{migrate, run_indexer, IndexerOptions, PgBackend, PgConfig};
use serde_json::{json, Value};
use uuid::Uuid;

#[path = "support/mod.rs"]
mod support;

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn p95(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[((v.len() as f64 - 1.0) * 0.95).round() as usize]
}

fn tenant(store: &Store, name: &str) -> TenantScope {
    let t = store.create_tenant(None, name).unwrap();
    store.tenant(Scope::new(t.id, "bench", Role::Admin))
}

/// A pseudo-random but reproducible value of record `i`.
fn mix(i: u64) -> u64 {
    let mut x = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xD1B5_4A32_D192_ED03;
    x ^= x >> 31;
    x = x.wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x ^ (x >> 29)
}

/// The type `row`: 20 fields (10 integer, 10 text), the first `k` indexed.
fn row_type(k: usize) -> NewEntityType {
    let fields: Vec<Value> = (0..20)
        .map(|i| {
            let kind = if i % 2 == 0 { "integer" } else { "text" };
            json!({"name": format!("f{i}"), "kind": kind, "indexed": i < k})
        })
        .collect();
    serde_json::from_value(json!({"name": "row", "fields": fields})).unwrap()
}

/// Record `i` of type `row`.
fn record(i: u64) -> Value {
    let mut m = serde_json::Map::new();
    for f in 0..20u64 {
        let v = mix(i * 20 + f) % 1_000_000;
        let value = if f % 2 == 0 {
            json!(v)
        } else {
            json!(format!("value-{v}"))
        };
        m.insert(format!("f{f}"), value);
    }
    Value::Object(m)
}

/// Insert cost on a type of 20 fields (10 integer, 10 text), `k` of them indexed.
fn insert_cost(store: &Store, k: usize, singles: usize, batches: usize) {
    let ts = tenant(store, &format!("insert-{k}"));
    ts.create_entity_type(&row_type(k)).unwrap();
    let rows = ts.records("row").unwrap();
    let mut single = Vec::with_capacity(singles);
    for i in 0..singles as u64 {
        let data = record(i);
        let t = Instant::now();
        rows.create(&data).unwrap();
        single.push(ms(t.elapsed()));
    }
    let mut batch = Vec::with_capacity(batches);
    for b in 0..batches as u64 {
        let data: Vec<Value> = (0..1000)
            .map(|i| record(1_000_000 + b * 1000 + i))
            .collect();
        let t = Instant::now();
        rows.create_many(&data).unwrap();
        batch.push(ms(t.elapsed()));
    }
    let batch_med = median(batch.clone());
    println!(
        "| {k:>2} indexed of 20 | {:>8.2} ms | {:>8.2} ms | {:>9.1} ms | {:>10.0} |",
        median(single.clone()),
        p95(single),
        batch_med,
        1000.0 / batch_med * 1000.0,
    );
}

/// COPY-style bulk insert (`ddms_diesel::bulk`: binary COPY into staging, then
/// INSERT ... SELECT under RLS with the triggers) of `n` records of `row` with `k`
/// indexed fields, indexes maintained row by row (other tenants have data).
fn copy_cost(url: &str, k: usize, n: u64) {
    let opts = BulkOptions {
        rebuild_indexes: false,
        ..BulkOptions::default()
    };
    let mut load = BulkLoad::begin(url, Uuid::new_v4(), "bench", &opts).unwrap();
    load.reset_tenant(&format!("copy-{k}")).unwrap();
    let ty = load
        .create_entity_type(&row_type(k).check().unwrap())
        .unwrap();
    let mut enc = RecordEncoder::new(&ty);
    let mut chunks = Vec::new();
    for i in 0..n {
        enc.push(Uuid::new_v4(), &record(i)).unwrap();
        if enc.rows() >= 10_000 {
            chunks.push(Ok(enc.take()));
        }
    }
    if enc.rows() > 0 {
        chunks.push(Ok(enc.take()));
    }
    let t = Instant::now();
    load.copy_records(&ty, chunks).unwrap();
    load.commit().unwrap();
    let secs = t.elapsed().as_secs_f64();
    println!(
        "| {k:>2} indexed of 20 | {n:>9} | {:>8.2} s | {:>10.0} |",
        secs,
        n as f64 / secs
    );
}

fn load(store: &Store, ts: &TenantScope, from: u64, to: u64) {
    let threads = 2;
    let per = (to - from).div_ceil(threads);
    let hs: Vec<_> = (0..threads)
        .map(|t| {
            let rows = store.tenant(ts.scope().clone()).records("big").unwrap();
            let (lo, hi) = (from + t * per, (from + (t + 1) * per).min(to));
            thread::spawn(move || {
                let mut i = lo;
                while i < hi {
                    let n = (hi - i).min(1000);
                    let data: Vec<Value> = (i..i + n)
                        .map(|j| {
                            let s = mix(j) % 10_000;
                            json!({"s": s, "u": s, "t": format!("name-{:08}", mix(j + 7) % 100_000_000)})
                        })
                        .collect();
                    rows.create_many(&data).unwrap();
                    i += n;
                }
            })
        })
        .collect();
    for h in hs {
        h.join().unwrap();
    }
}

/// Median and p95 latency of `Records::query` over `runs` different values.
fn filter_latency(ts: &TenantScope, field: &str, range: bool, runs: u64) -> (f64, f64, usize) {
    let rows = ts.records("big").unwrap();
    let mut lat = Vec::new();
    let mut found = 0;
    for r in 0..runs {
        let v = mix(r + 99) % 9_900;
        let q: Query = if range {
            serde_json::from_value(json!({
                "filter": {"and": [{"field": field, "op": "gte", "value": v}, {"field": field, "op": "lt", "value": v + 100}]},
                "sort": [{"field": field}], "limit": 50
            }))
            .unwrap()
        } else {
            serde_json::from_value(
                json!({"filter": {"field": field, "op": "eq", "value": v}, "limit": 50}),
            )
            .unwrap()
        };
        let t = Instant::now();
        found += rows.query(&q).unwrap().items.len();
        lat.push(ms(t.elapsed()));
    }
    (median(lat.clone()), p95(lat), found)
}

fn filters(ts: &TenantScope, n: u64, runs: u64) {
    for (what, range) in [("eq", false), ("range+sort+limit 50", true)] {
        let (um, up, uf) = filter_latency(ts, "u", range, runs);
        let (im, ip, inf) = filter_latency(ts, "s", range, runs);
        assert_eq!(uf, inf, "indexed and unindexed answers differ");
        println!(
            "| {n:>9} | {what:<20} | {um:>9.2} ms | {up:>9.2} ms | {im:>7.2} ms | {ip:>7.2} ms | {:>6.0}x |",
            um / im
        );
    }
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let max: u64 = std::env::var("INDEX_COST_MAX")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if full { 1_000_000 } else { 2_000 });
    let (singles, batches, runs) = if full { (500, 20, 40) } else { (20, 2, 5) };
    let db = support::database("index");
    migrate(&db.url).expect("migrate");
    let mut cfg = PgConfig::new(&db.url);
    cfg.pool_size = 8;
    cfg.statement_timeout_ms = 600_000;
    let backend = PgBackend::connect(&cfg).expect("connect");
    let store = Store::new(backend.clone());

    println!("\nInsert cost (type of 20 fields; single = one record per transaction, batch = create_many of 1000)\n");
    println!("| indexes          | single p50  | single p95  | batch of 1000 | records/s  |");
    println!("|------------------|-------------|-------------|---------------|------------|");
    for k in [0, 5, 20] {
        insert_cost(&store, k, singles, batches);
    }

    let copied = if full { 100_000 } else { 1_000 };
    println!("\nCOPY-style bulk insert (binary COPY + INSERT ... SELECT under RLS, one transaction, indexes maintained, per-row events)\n");
    println!("| indexes          | records   | time       | records/s  |");
    println!("|------------------|-----------|------------|------------|");
    for k in [0, 5, 20] {
        copy_cost(&db.url, k, copied);
    }

    let ts = tenant(&store, "filters");
    ts.create_entity_type(
        &serde_json::from_value(json!({"name": "big", "fields": [
            {"name": "s", "kind": "integer"}, {"name": "u", "kind": "integer"}, {"name": "t", "kind": "text"}]}))
        .unwrap(),
    )
    .unwrap();
    let first = max.min(100_000);
    let t = Instant::now();
    load(&store, &ts, 0, first);
    println!(
        "\nloaded {first} records (no index) in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let before = filter_latency(&ts, "s", false, runs.min(10));
    ts.update_entity_type(
        "big",
        &serde_json::from_value(
            json!({"update_fields": [{"name": "s", "kind": "integer", "indexed": true}]}),
        )
        .unwrap(),
    )
    .unwrap();
    let t = Instant::now();
    let report = run_indexer(&backend, &IndexerOptions::default()).unwrap();
    let took = t.elapsed();
    assert_eq!(report.ready(), 1, "{report:?}");
    let st = ts.indexes().unwrap();
    assert!(st
        .iter()
        .any(|i| i.field.as_str() == "s" && i.state == IndexState::Ready));
    println!(
        "backfill of {first} records: {:.2} s ({:.0} records/s); unindexed eq p50 before: {:.2} ms",
        took.as_secs_f64(),
        first as f64 / took.as_secs_f64(),
        before.0
    );

    println!("\nFilter latency through Records::query (u: not indexed, JSONB path; s: indexed, same values)\n");
    println!("| records   | filter               | unindexed p50 | unindexed p95 | indexed p50 | indexed p95 | speed-up |");
    println!("|-----------|----------------------|---------------|---------------|-------------|-------------|----------|");
    filters(&ts, first, runs);
    if max > first {
        let t = Instant::now();
        load(&store, &ts, first, max);
        println!(
            "| (loaded {} more records, s indexed, in {:.1} s) |",
            max - first,
            t.elapsed().as_secs_f64()
        );
        filters(&ts, max, runs);
    }
}
