//! Tenant isolation enforced by PostgreSQL itself.

use ddms_core::{Role, Scope};
use serde_json::json;

use crate::common::{db, store};

#[test]
fn smoke() {
    let store = store();
    let t = store.create_tenant(None, "Acme").unwrap();
    let acme = store.tenant(Scope::new(t.id, "alice", Role::Admin));
    acme.create_entity_type(
        &serde_json::from_value(json!({
            "name": "project",
            "fields": [{"name": "title", "kind": "text", "required": true, "indexed": true},
                       {"name": "budget", "kind": "integer", "min": 0, "indexed": true}]
        }))
        .unwrap(),
    )
    .unwrap();
    let p = acme.records("project").unwrap();
    for i in 0..10 {
        p.create(&json!({"title": format!("p{i}"), "budget": i * 10}))
            .unwrap();
    }
    let q = serde_json::from_value(json!({"filter": {"field": "budget", "op": "gte", "value": 50}, "sort": [{"field": "budget", "desc": true}], "limit": 3})).unwrap();
    let page = p.query(&q).unwrap();
    assert_eq!(page.items.len(), 3);
    assert_eq!(page.items[0].data["budget"], 90);
    let mut q2: ddms_core::Query = q.clone();
    q2.cursor = page.next_cursor.clone();
    let page2 = p.query(&q2).unwrap();
    assert_eq!(
        page2
            .items
            .iter()
            .map(|r| r.data["budget"].as_i64().unwrap())
            .collect::<Vec<_>>(),
        vec![60, 50]
    );
    let ev = acme.events(0, None).unwrap();
    assert_eq!(ev.events.len(), 11);
    let _ = db();
}
