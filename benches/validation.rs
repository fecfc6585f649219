//! Record validation against a 12-field entity type (every scalar kind, an enum, a list,
//! a pattern), valid and invalid records.
//!
//! ```text
//! cargo bench --bench validation
//! ```

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use ddms_core::record::{validate, validate_owned};
use ddms_core::EntityType;
use serde_json::json;

fn twelve_fields() -> EntityType {
    serde_json::from_value(json!({
        "id": "aaaaaaaa-0000-0000-0000-000000000001", "name": "person", "label": "Person",
        "version": 1, "created_at": "2024-01-01T00:00:00Z", "updated_at": "2024-01-01T00:00:00Z",
        "fields": [
            {"name": "name", "kind": "text", "required": true, "max_length": 200},
            {"name": "email", "kind": "email", "required": true, "unique": true},
            {"name": "age", "kind": "integer", "min": 0, "max": 150, "indexed": true},
            {"name": "score", "kind": "number", "min": 0},
            {"name": "active", "kind": "boolean", "default": true},
            {"name": "birthday", "kind": "date"},
            {"name": "joined", "kind": "datetime", "indexed": true},
            {"name": "ref", "kind": "uuid"},
            {"name": "homepage", "kind": "url"},
            {"name": "role", "kind": "enum", "values": ["admin", "editor", "viewer"]},
            {"name": "tags", "kind": "list", "items": "text", "max_length": 5},
            {"name": "code", "kind": "text", "pattern": "^[A-Z]{3}-[0-9]{4}$"}
        ]
    }))
    .expect("entity type")
}

fn bench(c: &mut Criterion) {
    let ty = twelve_fields();
    let valid = json!({
        "name": "Ada Lovelace", "email": "ada@example.com", "age": 36, "score": 99.5,
        "active": true, "birthday": "1815-12-10", "joined": "2024-03-01T12:00:00Z",
        "ref": "6f1c1a2e-7d0b-4c1e-9c55-3a1b2c3d4e5f", "homepage": "https://example.com/ada",
        "role": "admin", "tags": ["math", "engines"], "code": "ADA-1815"
    });
    let invalid = json!({
        "name": "", "email": "not-an-email", "age": 200, "score": -1, "active": "yes",
        "birthday": "1815-13-10", "joined": "yesterday", "ref": "nope", "homepage": "ftp:/x",
        "role": "owner", "tags": [1, 2], "code": "ada", "extra": 1
    });
    assert!(validate(&ty, &valid).is_ok());
    assert!(validate(&ty, &invalid).unwrap_err().details().len() >= 12);
    let mut g = c.benchmark_group("validation/12_fields");
    g.bench_function("valid", |b| {
        b.iter(|| black_box(validate(&ty, black_box(&valid))))
    });
    // The bulk loader's path: the value is consumed and normalised in place (the
    // input's clone is made outside the timing).
    g.bench_function("valid_owned", |b| {
        b.iter_batched(
            || valid.clone(),
            |v| black_box(validate_owned(&ty, v)),
            BatchSize::SmallInput,
        )
    });
    g.bench_function("invalid_every_field", |b| {
        b.iter(|| black_box(validate(&ty, black_box(&invalid))))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
