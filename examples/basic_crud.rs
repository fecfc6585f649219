//! DDMS used as a library, the way another Rust service embeds it: define an entity
//! type, create records, filter them, link them, and read the change feed.
//!
//! Runs against `DATABASE_URL`, or without it against the embedded default (a private
//! PostgreSQL in `.ddms/example-pgdata`, started from the machine's binaries):
//!
//! ```sh
//! cargo run --example basic_crud
//! ```

use ddms::postgres::{embedded, migrate, PgBackend, PgConfig};
use ddms::{Direction, Query, Role, Scope, Store};
use serde_json::json;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("DATABASE_URL").ok();
    let db = embedded::locate(url.as_deref(), std::path::Path::new(".ddms/example-pgdata"))?;
    migrate(&db.url)?;
    let store = Store::new(PgBackend::connect(&PgConfig::new(&db.url))?);

    // Every data access goes through a handle bound to one tenant and one actor.
    let tenant = store.create_tenant(None, "Example Co")?;
    let acme = store.tenant(Scope::new(tenant.id, "example-user", Role::Admin));

    acme.create_entity_type(&serde_json::from_value(json!({
        "name": "person",
        "fields": [
            {"name": "name", "kind": "text", "required": true, "max_length": 100},
            {"name": "email", "kind": "email", "unique": true},
            {"name": "age", "kind": "integer", "min": 0, "indexed": true}
        ]
    }))?)?;
    acme.create_entity_type(&serde_json::from_value(json!({
        "name": "project",
        "fields": [{"name": "title", "kind": "text", "required": true},
                   {"name": "status", "kind": "enum", "values": ["active", "done"], "default": "active"}]
    }))?)?;
    acme.create_relation_type(&serde_json::from_value(json!({
        "name": "owns", "source": "person", "target": "project", "cardinality": "one_to_many"
    }))?)?;

    let people = acme.records("person")?;
    let ada = people.create(&json!({"name": "Ada", "email": "ada@example.com", "age": 36}))?;
    people.create_many(&[
        json!({"name": "Alan", "age": 41}),
        json!({"name": "Grace", "age": 85}),
    ])?;
    match people.create(&json!({"name": 7, "age": -1, "shoe": 42})) {
        Err(e) => println!("rejected as expected ({}): {e}", e.code()),
        Ok(_) => return Err("invalid record was accepted".into()),
    }

    let q: Query = serde_json::from_value(json!({
        "filter": {"field": "age", "op": "gte", "value": 40},
        "sort": [{"field": "age", "desc": true}]
    }))?;
    let page = people.query(&q)?;
    let names: Vec<&str> = page
        .items
        .iter()
        .filter_map(|r| r.data["name"].as_str())
        .collect();
    println!("40 and over, oldest first: {names:?}");
    assert_eq!(names, ["Grace", "Alan"]);

    let project = acme
        .records("project")?
        .create(&json!({"title": "Analytical Engine"}))?;
    acme.create_relation(&serde_json::from_value(json!({
        "type": "owns", "source_id": ada.id, "target_id": project.id
    }))?)?;
    let owned = acme.neighbours(ada.id, Some("owns"), Direction::Out, None, None)?;
    println!(
        "Ada owns {} project(s); status defaulted to {}",
        owned.items.len(),
        project.data["status"]
    );

    let owners: Query = serde_json::from_value(json!({
        "filter": {"related": {"type": "owns", "where": {"field": "title", "op": "starts_with", "value": "Analytical"}}}
    }))?;
    assert_eq!(people.query(&owners)?.items.len(), 1);

    let updated = people.patch(ada.id, &json!({"age": 37}), Some(ada.version))?;
    println!("patched to version {}", updated.version);

    let feed = acme.events(0, None)?;
    for e in &feed.events {
        println!("event {:>2} {}", e.seq, e.kind.as_str());
    }
    store.delete_tenant(tenant.id)?;
    Ok(())
}
