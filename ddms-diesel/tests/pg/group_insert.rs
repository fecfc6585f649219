//! Concurrent single creates are grouped into shared statements (see
//! `ddms_diesel::group_insert`); every caller must still get exactly its own outcome,
//! and the feed one event per created record, in order, without gaps.

use std::collections::HashSet;
use std::sync::{Arc, Barrier};

use ddms_core::{ConflictKind, Error, EventKind, Role, Scope};
use serde_json::json;

use crate::common::{db, store, tenant};

#[test]
fn concurrent_creates_each_get_their_own_record_or_their_own_conflict() {
    let t = tenant("group-insert");
    t.create_entity_type(
        &serde_json::from_value(json!({
            "name": "item",
            "fields": [{"name": "code", "kind": "text", "required": true, "unique": true},
                       {"name": "n", "kind": "integer", "indexed": true}]
        }))
        .unwrap(),
    )
    .unwrap();
    let tenant_id = t.scope().tenant;
    let taken = t
        .records("item")
        .unwrap()
        .create(&json!({"code": "taken", "n": -1}))
        .unwrap();
    let before = db().backend.group_insert_stats();
    let (threads, per) = (12, 40);
    let barrier = Arc::new(Barrier::new(threads));
    let handles: Vec<_> = (0..threads)
        .map(|w| {
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                // Two actors, so groups of different keys run side by side.
                let actor = if w % 2 == 0 { "even" } else { "odd" };
                let s = store();
                let items = s
                    .tenant(Scope::new(tenant_id, actor, Role::Editor))
                    .records("item")
                    .unwrap();
                barrier.wait();
                let mut mine = Vec::new();
                for i in 0..per {
                    let n = (w * per + i) as i64;
                    // Every 10th create collides: with an older record or a sibling.
                    let code = match i % 10 {
                        3 => "taken".to_string(),
                        7 => format!("dup-{}", i),
                        _ => format!("c-{n}"),
                    };
                    let out = items.create(&json!({"code": code, "n": n}));
                    mine.push((code, n, actor, out));
                }
                mine
            })
        })
        .collect();
    let results: Vec<_> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();

    let mut created = HashSet::new();
    let mut dup_winners = HashSet::new();
    for (code, n, actor, out) in &results {
        match out {
            Ok(r) => {
                assert_eq!(
                    r.data["code"],
                    json!(code),
                    "a caller got someone else's record"
                );
                assert_eq!(r.data["n"], json!(n));
                assert_eq!(r.created_by.as_deref(), Some(*actor));
                assert!(created.insert(r.id));
                assert_ne!(code, "taken");
                if code.starts_with("dup-") {
                    assert!(dup_winners.insert(code.clone()), "{code} created twice");
                }
            }
            Err(Error::Conflict {
                kind: ConflictKind::Unique,
                details,
                ..
            }) => {
                assert_eq!(details[0].field, "code");
                assert!(
                    code == "taken" || code.starts_with("dup-"),
                    "{code}: {out:?}"
                );
            }
            Err(e) => panic!("unexpected error for {code}: {e}"),
        }
    }
    // Groups formed, and some were split by their collisions.
    let stats = db().backend.group_insert_stats();
    assert!(stats.groups > before.groups, "no group formed: {stats:?}");
    assert!(stats.split_groups > before.split_groups, "{stats:?}");
    eprintln!("group insert: {before:?} -> {stats:?}");
    // Each `dup-i` code is wanted by every thread: exactly one of them wins.
    assert_eq!(dup_winners.len(), per / 10);
    assert_eq!(created.len(), threads * (per - per / 10 * 2) + per / 10);

    // The feed: gap-free, one record.created per created record (plus the first one).
    let reader = store().tenant(Scope::new(tenant_id, "reader", Role::Viewer));
    let mut seen = HashSet::new();
    let mut after = 0;
    let mut last = 0;
    loop {
        let page = reader.events(after, Some(1000)).unwrap();
        if page.events.is_empty() {
            break;
        }
        for e in &page.events {
            assert_eq!(e.seq, last + 1, "gap or reorder in the feed");
            last = e.seq;
            if e.kind == EventKind::RecordCreated && e.subject_id != taken.id {
                assert!(seen.insert(e.subject_id));
            }
        }
        after = page.next;
    }
    assert_eq!(seen, created);
}
