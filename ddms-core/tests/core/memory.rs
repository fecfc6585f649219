//! The in-memory backend: the whole conformance suite, plus what is specific to it.
#![cfg(all(feature = "memory", feature = "conformance"))]

use ddms_core::memory::MemoryBackend;
use ddms_core::{EventKind, IndexState, NewEntityType, Role, Scope, Store, TenantScope};
use serde_json::json;

ddms_core::conformance_tests!(ddms_core::Store::new(
    ddms_core::memory::MemoryBackend::new()
));

fn tenant(store: &Store) -> TenantScope {
    let t = store.create_tenant(None, "memory").unwrap();
    store.tenant(Scope::new(t.id, "tester", Role::Admin))
}

fn entity_type(t: &TenantScope, v: serde_json::Value) {
    let new: NewEntityType = serde_json::from_value(v).unwrap();
    t.create_entity_type(&new).unwrap();
}

#[test]
fn one_store_runs_every_check() {
    // The suite must pass with checks sharing one store, as a database backend does.
    let store = Store::new(MemoryBackend::new());
    for (name, check) in ddms_core::conformance::all() {
        let started = std::time::Instant::now();
        check(&store);
        eprintln!("{name}: {:?}", started.elapsed());
    }
}

#[test]
fn concurrent_writers_all_succeed_and_events_stay_gap_free() {
    const THREADS: usize = 8;
    const EACH: usize = 50;
    let store = Store::new(MemoryBackend::new());
    let t = tenant(&store);
    entity_type(
        &t,
        json!({"name": "c", "fields": [{"name": "w", "kind": "integer"},
                                       {"name": "i", "kind": "integer"}]}),
    );
    let before = t.events(0, Some(1000)).unwrap().next;
    std::thread::scope(|s| {
        for w in 0..THREADS {
            let t = t.clone();
            s.spawn(move || {
                let recs = t.records("c").unwrap();
                for i in 0..EACH {
                    let r = recs.create(&json!({"w": w, "i": i})).unwrap();
                    recs.patch(r.id, &json!({"i": i + 1}), Some(1)).unwrap();
                }
            });
        }
    });
    let mut events = Vec::new();
    let mut after = before;
    loop {
        let page = t.events(after, Some(1000)).unwrap();
        if page.events.is_empty() {
            break;
        }
        after = page.next;
        events.extend(page.events);
    }
    assert_eq!(events.len(), THREADS * EACH * 2);
    for (k, e) in events.iter().enumerate() {
        assert_eq!(e.seq, before + 1 + k as i64, "no gaps, no repeats");
    }
    let created = events
        .iter()
        .filter(|e| e.kind == EventKind::RecordCreated)
        .count();
    assert_eq!(created, THREADS * EACH);
    let recs = t.records("c").unwrap();
    let q = serde_json::from_value(json!({"limit": 1000})).unwrap();
    let page = recs.query(&q).unwrap();
    assert_eq!(page.items.len(), THREADS * EACH);
    assert!(page.items.iter().all(|r| r.version == 2));
}

#[test]
fn unique_declared_later_on_duplicates_fails_with_the_duplicates() {
    let store = Store::new(MemoryBackend::new());
    let t = tenant(&store);
    entity_type(
        &t,
        json!({"name": "u", "fields": [{"name": "code", "kind": "text"},
                                       {"name": "n", "kind": "integer"}]}),
    );
    let recs = t.records("u").unwrap();
    for (code, n) in [
        ("dup", 1),
        ("dup", 2),
        ("solo", 3),
        ("twice", 4),
        ("twice", 5),
    ] {
        recs.create(&json!({"code": code, "n": n})).unwrap();
    }
    let patch = serde_json::from_value(json!({"update_fields": [
        {"name": "code", "kind": "text", "unique": true},
        {"name": "n", "kind": "integer", "unique": true}
    ]}))
    .unwrap();
    t.update_entity_type("u", &patch).unwrap();
    let ix = t.indexes().unwrap();
    let code = ix.iter().find(|i| i.field.as_str() == "code").unwrap();
    assert_eq!(code.state, IndexState::Failed);
    assert!(code.unique);
    let err = code.error.as_deref().unwrap();
    assert!(
        err.contains("\"dup\"") && err.contains("\"twice\"") && !err.contains("solo"),
        "{err}"
    );
    let n = ix.iter().find(|i| i.field.as_str() == "n").unwrap();
    assert_eq!(n.state, IndexState::Ready, "distinct values index at once");
    // A ready unique index is enforced; a failed one is not (yet).
    let recs = t.records("u").unwrap();
    assert!(recs.create(&json!({"n": 3})).is_err());
    recs.create(&json!({"code": "dup", "n": 6})).unwrap();
}

#[test]
fn unique_declared_later_on_clean_data_is_enforced() {
    let store = Store::new(MemoryBackend::new());
    let t = tenant(&store);
    entity_type(
        &t,
        json!({"name": "u", "fields": [{"name": "code", "kind": "text"}]}),
    );
    let recs = t.records("u").unwrap();
    recs.create(&json!({"code": "a"})).unwrap();
    let patch = serde_json::from_value(json!({"update_fields": [
        {"name": "code", "kind": "text", "unique": true}
    ]}))
    .unwrap();
    t.update_entity_type("u", &patch).unwrap();
    let ix = t.indexes().unwrap();
    assert_eq!(ix.len(), 1);
    assert_eq!(ix[0].state, IndexState::Ready);
    let recs = t.records("u").unwrap();
    let err = recs.create(&json!({"code": "a"})).unwrap_err();
    assert_eq!(err.code(), "unique_violation");
}

#[test]
fn a_stale_handle_revalidates_against_the_current_schema() {
    let store = Store::new(MemoryBackend::new());
    let t = tenant(&store);
    entity_type(
        &t,
        json!({"name": "s", "fields": [{"name": "a", "kind": "text"}, {"name": "b", "kind": "text"}]}),
    );
    let old = t.records("s").unwrap();
    // A compatible change: the stale handle reloads the type and the write succeeds.
    let patch = serde_json::from_value(json!({"label": "S"})).unwrap();
    t.update_entity_type("s", &patch).unwrap();
    old.create(&json!({"a": "x"})).unwrap();
    // An incompatible one: the reloaded type rejects the removed field.
    let patch = serde_json::from_value(json!({"remove_fields": ["b"]})).unwrap();
    t.update_entity_type("s", &patch).unwrap();
    let err = old.create(&json!({"a": "x", "b": "y"})).unwrap_err();
    assert_eq!(err.code(), "validation_failed");
    assert_eq!(err.details()[0].field, "b");
}
