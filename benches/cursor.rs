//! Keyset cursors: signing (HMAC-SHA256, base64url) and verifying, for a typical
//! two-key position (an indexed number and the id tie-breaker).
//!
//! ```text
//! cargo bench --bench cursor
//! ```

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use ddms_core::query::fingerprint;
use ddms_core::CursorKey;
use serde_json::json;

fn bench(c: &mut Criterion) {
    let key = CursorKey::from_secret(b"bench secret");
    let fp = fingerprint(&[
        b"project",
        b"{\"field\":\"budget\",\"op\":\"gte\",\"value\":100}",
        b"-budget,-id,",
    ]);
    let payload = json!([12345.5, "018f3c2e-7d0b-7c1e-9c55-3a1b2c3d4e5f"]);
    let cursor = key.encode(&fp, &payload);
    assert_eq!(key.decode(&fp, &cursor).unwrap(), payload);
    let mut g = c.benchmark_group("cursor");
    g.bench_function("encode", |b| {
        b.iter(|| black_box(key.encode(black_box(&fp), black_box(&payload))))
    });
    g.bench_function("decode", |b| {
        b.iter(|| black_box(key.decode(black_box(&fp), black_box(&cursor)).unwrap()))
    });
    g.bench_function("fingerprint", |b| {
        b.iter(|| {
            black_box(fingerprint(&[
                b"project",
                black_box(b"{\"field\":\"budget\"}"),
                b"-budget,-id,",
            ]))
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
