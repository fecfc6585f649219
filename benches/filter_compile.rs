//! Filter compilation: JSON text → AST (parse) → checked filter (type check) → SQL text +
//! binds (emit), for 1, 5, 20 and 50 clauses, nested and/or/not, and `related`
//! predicates; plus a whole query (filter + sort + cursor + limit) to SQL.
//!
//! ```text
//! cargo bench --bench filter_compile
//! cargo bench --bench filter_compile -- 'json_to_sql/20'     # one case
//! ```
//!
//! Goals (BENCHMARKS.md): a 20-clause filter from JSON to SQL + binds under 5 µs, from an
//! already parsed AST under 1.5 µs. No database is needed: the compiler is pure.

use std::hint::black_box;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use ddms_core::filter::{check, SchemaLookup};
use ddms_core::{EntityType, Error, Filter, Name, Query, RelationType, Result};
use ddms_diesel::sql::{Compiler, IndexLookup, Sql};
use serde_json::{json, Value};
use uuid::Uuid;

const TENANT: Uuid = Uuid::from_u128(0x1111_1111_1111_1111_1111_1111_1111_1111);
const PROJECT: Uuid = Uuid::from_u128(0xaaaa_0000_0000_0000_0000_0000_0000_0001);
const USER: Uuid = Uuid::from_u128(0xaaaa_0000_0000_0000_0000_0000_0000_0002);

/// An entity type as a backend would return it.
fn entity_type(id: Uuid, name: &str, fields: Value) -> Arc<EntityType> {
    Arc::new(
        serde_json::from_value(json!({
            "id": id, "name": name, "label": name, "fields": fields, "version": 1,
            "created_at": "2024-01-01T00:00:00Z", "updated_at": "2024-01-01T00:00:00Z"
        }))
        .expect("entity type"),
    )
}

struct Schema {
    project: Arc<EntityType>,
    user: Arc<EntityType>,
    owns: RelationType,
}

impl SchemaLookup for Schema {
    fn relation_type(&self, name: &Name) -> Result<RelationType> {
        if name.as_str() == "owns" {
            Ok(self.owns.clone())
        } else {
            Err(Error::not_found("relation type", name))
        }
    }
    fn entity_type(&self, name: &Name) -> Result<Arc<EntityType>> {
        match name.as_str() {
            "project" => Ok(self.project.clone()),
            "user" => Ok(self.user.clone()),
            _ => Err(Error::not_found("entity type", name)),
        }
    }
}

/// Indexed fields have a ready field-value index, as on a server after backfill (a
/// per-type map of field names, hashed like the backend's cache).
struct Ready(foldhash::HashMap<Uuid, foldhash::HashMap<String, Uuid>>);

impl IndexLookup for Ready {
    fn ready_index(&self, type_id: Uuid, field: &str) -> Option<Uuid> {
        self.0.get(&type_id)?.get(field).copied()
    }
}

fn schema() -> (Schema, Ready) {
    let project = entity_type(
        PROJECT,
        "project",
        json!([
            {"name": "title", "kind": "text", "required": true, "indexed": true},
            {"name": "status", "kind": "enum", "values": ["planned", "active", "done"], "indexed": true},
            {"name": "budget", "kind": "number", "indexed": true},
            {"name": "priority", "kind": "integer"},
            {"name": "due", "kind": "date"},
            {"name": "started", "kind": "datetime"},
            {"name": "public", "kind": "boolean"},
            {"name": "code", "kind": "text"},
            {"name": "tags", "kind": "list", "items": "text"}
        ]),
    );
    let user = entity_type(
        USER,
        "user",
        json!([
            {"name": "email", "kind": "email", "unique": true},
            {"name": "age", "kind": "integer", "indexed": true},
            {"name": "name", "kind": "text"}
        ]),
    );
    let owns: RelationType = serde_json::from_value(json!({
        "id": Uuid::from_u128(0xbbbb), "name": "owns", "source": "user", "target": "project",
        "cardinality": "one_to_many", "on_delete": "cascade", "created_at": "2024-01-01T00:00:00Z"
    }))
    .expect("relation type");
    let mut ready: foldhash::HashMap<Uuid, foldhash::HashMap<String, Uuid>> = Default::default();
    for (t, f, id) in [
        (PROJECT, "title", 1u128),
        (PROJECT, "status", 2),
        (PROJECT, "budget", 3),
        (USER, "email", 4),
        (USER, "age", 5),
    ] {
        ready
            .entry(t)
            .or_default()
            .insert(f.to_string(), Uuid::from_u128(0xf000 + id));
    }
    (
        Schema {
            project,
            user,
            owns,
        },
        Ready(ready),
    )
}

/// The i-th predicate: a mix of indexed and JSON-path fields and of operators.
fn predicate(i: usize) -> Value {
    match i % 10 {
        0 => json!({"field": "status", "op": "eq", "value": "active"}),
        1 => json!({"field": "budget", "op": "gte", "value": 1000 + i}),
        2 => json!({"field": "priority", "op": "lt", "value": 4}),
        3 => json!({"field": "title", "op": "starts_with", "value": "Apollo"}),
        4 => json!({"field": "due", "op": "lte", "value": "2025-12-31"}),
        5 => json!({"field": "code", "op": "in", "value": ["a1", "b2", "c3", "d4"]}),
        6 => json!({"field": "public", "op": "eq", "value": true}),
        7 => json!({"field": "started", "op": "gt", "value": "2024-03-01T12:00:00Z"}),
        8 => json!({"field": "tags", "op": "contains", "value": "urgent"}),
        _ => json!({"field": "code", "op": "contains", "value": "x"}),
    }
}

/// `n` predicates under one `and`.
fn flat(n: usize) -> Value {
    if n == 1 {
        return predicate(0);
    }
    json!({"and": (0..n).map(predicate).collect::<Vec<_>>()})
}

/// `n` predicates in nested and/or/not groups of five.
fn nested(n: usize) -> Value {
    let groups: Vec<Value> = (0..n)
        .collect::<Vec<_>>()
        .chunks(5)
        .enumerate()
        .map(|(g, idx)| {
            let preds: Vec<Value> = idx.iter().map(|&i| predicate(i)).collect();
            let inner = if g % 2 == 0 {
                json!({"or": preds})
            } else {
                json!({"and": preds})
            };
            if g % 3 == 2 {
                json!({"not": inner})
            } else {
                inner
            }
        })
        .collect();
    json!({"and": groups})
}

/// `n` clauses, every fifth a `related` predicate on the owner.
fn related(n: usize) -> Value {
    let preds: Vec<Value> = (0..n)
        .map(|i| {
            if i % 5 == 4 {
                json!({"related": {"type": "owns", "direction": "in",
                                   "where": {"field": "age", "op": "gte", "value": 18 + i}}})
            } else {
                predicate(i)
            }
        })
        .collect();
    json!({"and": preds})
}

fn emit(filter: &ddms_core::CheckedFilter, idx: &Ready) -> Sql {
    let mut c = Compiler::new(TENANT, idx);
    let text = c.filter(filter, "r", PROJECT, true);
    let mut sql = c.sql;
    sql.text = text;
    sql
}

fn bench_filters(c: &mut Criterion) {
    let (schema, ready) = schema();
    let project = schema.project.clone();
    for (shape, make) in [
        ("flat", flat as fn(usize) -> Value),
        ("nested", nested),
        ("related", related),
    ] {
        let mut g = c.benchmark_group(format!("filter/{shape}"));
        for n in [1usize, 5, 20, 50] {
            if shape != "flat" && n == 1 {
                continue;
            }
            let json_text = make(n).to_string();
            let ast = Filter::from_json_str(&json_text).expect("parse");
            let checked = check(&project, &ast, &schema).expect("check");
            let sql = emit(&checked, &ready);
            assert!(!sql.binds.is_empty());

            g.bench_with_input(BenchmarkId::new("json_to_sql", n), &json_text, |b, t| {
                b.iter(|| {
                    let ast = Filter::from_json_str(black_box(t)).unwrap();
                    let checked = check(&project, &ast, &schema).unwrap();
                    black_box(emit(&checked, &ready))
                })
            });
            g.bench_with_input(BenchmarkId::new("ast_to_sql", n), &ast, |b, ast| {
                b.iter(|| {
                    let checked = check(&project, black_box(ast), &schema).unwrap();
                    black_box(emit(&checked, &ready))
                })
            });
            g.bench_with_input(BenchmarkId::new("parse", n), &json_text, |b, t| {
                b.iter(|| black_box(Filter::from_json_str(black_box(t)).unwrap()))
            });
            g.bench_with_input(BenchmarkId::new("check", n), &ast, |b, ast| {
                b.iter(|| black_box(check(&project, black_box(ast), &schema).unwrap()))
            });
            g.bench_with_input(BenchmarkId::new("emit", n), &checked, |b, f| {
                b.iter(|| black_box(emit(black_box(f), &ready)))
            });
        }
        g.finish();
    }
}

/// A whole query as the HTTP layer builds it: filter + sort + limit (+ cursor), checked
/// (fingerprint and cursor verification included) and compiled.
fn bench_query(c: &mut Criterion) {
    let (schema, ready) = schema();
    let project = schema.project.clone();
    let key = ddms_core::CursorKey::from_secret(b"bench");
    let mut g = c.benchmark_group("query");
    for n in [1usize, 20] {
        let q: Query = serde_json::from_value(json!({
            "filter": flat(n), "sort": [{"field": "budget", "desc": true}], "limit": 50
        }))
        .unwrap();
        g.bench_with_input(BenchmarkId::new("check_and_compile", n), &q, |b, q| {
            b.iter(|| {
                let checked = q.check(project.clone(), &schema, &key).unwrap();
                black_box(Compiler::new(TENANT, &ready).query(&checked, PROJECT, 1))
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench_filters, bench_query);
criterion_main!(benches);
