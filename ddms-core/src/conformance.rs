//! The backend conformance suite: plain functions that take a [`Store`] over any
//! backend and exercise the whole contract. Every backend runs all of them, unchanged,
//! through [`conformance_tests!`](crate::conformance_tests).
//!
//! Each check creates its own tenants (with random ids) and never assumes an empty
//! store, so checks can share one store or database and run in parallel. A check
//! panics with a message naming the operation and what was expected.
//!
//! ```text
//! // in a backend's tests/ directory:
//! ddms_core::conformance_tests!(ddms_core::Store::new(MyBackend::connect()));
//! ```

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Debug;
use std::time::{Duration, Instant};

use chrono::{DateTime, FixedOffset, NaiveDate, SecondsFormat, Utc};
use serde_json::{json, Map, Value};
use uuid::Uuid;

use crate::entity_type::{EntityType, EntityTypePatch, NewEntityType};
use crate::error::{ConflictKind, Error, Result};
use crate::event::{Event, EventKind};
use crate::field::{Field, FieldKind, ScalarKind};
use crate::filter::{Filter, Op, MAX_CLAUSES, MAX_DEPTH};
use crate::index::IndexState;
use crate::query::{Query, SortKey};
use crate::record::Record;
use crate::relation::{Direction, NewRelation, NewRelationType, Relation, RelationType};
use crate::store::{Records, Store, TenantScope};
use crate::tenant::{Role, Scope, TenantId};

/// Runs one named check; used by [`conformance_tests!`](crate::conformance_tests).
pub type Check = fn(&Store);

/// Every check of the suite, by name (the names are those of the functions).
pub fn all() -> Vec<(&'static str, Check)> {
    vec![
        ("tenants", tenants as Check),
        ("entity_types", entity_types),
        ("entity_type_changes", entity_type_changes),
        ("entity_type_delete", entity_type_delete),
        ("entity_type_invalid", entity_type_invalid),
        ("schema_roles", schema_roles),
        ("stale_handles", stale_handles),
        ("records_crud", records_crud),
        ("records_not_found", records_not_found),
        ("record_versions", record_versions),
        ("record_roles", record_roles),
        ("validation_rules", validation_rules),
        ("validation_defaults", validation_defaults),
        ("batch_create", batch_create),
        ("unique_fields", unique_fields),
        ("filter_text", filter_text),
        ("filter_integer", filter_integer),
        ("filter_number", filter_number),
        ("filter_boolean", filter_boolean),
        ("filter_date", filter_date),
        ("filter_datetime", filter_datetime),
        ("filter_uuid", filter_uuid),
        ("filter_email", filter_email),
        ("filter_url", filter_url),
        ("filter_enum", filter_enum),
        ("filter_json", filter_json),
        ("filter_list", filter_list),
        ("filter_system_fields", filter_system_fields),
        ("filter_logic", filter_logic),
        ("filter_related", filter_related),
        ("invalid_filters", invalid_filters),
        ("invalid_queries", invalid_queries),
        ("sort_pagination", sort_pagination),
        ("sort_pagination_indexed", sort_pagination_indexed),
        ("cursors", cursors),
        ("field_selection", field_selection),
        ("relation_types", relation_types),
        ("relations_create", relations_create),
        ("relation_cardinality", relation_cardinality),
        ("neighbours", neighbours),
        ("relation_delete", relation_delete),
        ("on_delete_cascade", on_delete_cascade),
        ("on_delete_restrict", on_delete_restrict),
        ("events_feed", events_feed),
        ("events_failed_writes", events_failed_writes),
        ("events_concurrent_writers", events_concurrent_writers),
        ("tenant_isolation", tenant_isolation),
        ("indexes", indexes),
    ]
}

/// Expands to a module `conformance` with one `#[test]` per conformance check, each
/// calling its check with `&$store`. `$store` (an expression that yields a [`Store`])
/// is evaluated once per test: it may build a fresh store or return a shared one.
///
/// ```text
/// ddms_core::conformance_tests!(ddms_core::Store::new(MemoryBackend::new()));
/// ```
#[macro_export]
macro_rules! conformance_tests {
    (@each $store:expr, $($name:ident),+ $(,)?) => {
        #[allow(unused_imports)]
        mod conformance {
            use super::*;

            $(
                #[test]
                fn $name() {
                    $crate::conformance::$name(&$store);
                }
            )+

            #[test]
            fn every_check_is_run() {
                let mut listed = vec![$(stringify!($name)),+];
                let mut all: Vec<&str> =
                    $crate::conformance::all().into_iter().map(|(n, _)| n).collect();
                listed.sort_unstable();
                all.sort_unstable();
                assert_eq!(listed, all, "conformance_tests! and conformance::all() disagree");
            }
        }
    };
    ($store:expr) => {
        $crate::conformance_tests!(@each $store,
            tenants,
            entity_types,
            entity_type_changes,
            entity_type_delete,
            entity_type_invalid,
            schema_roles,
            stale_handles,
            records_crud,
            records_not_found,
            record_versions,
            record_roles,
            validation_rules,
            validation_defaults,
            batch_create,
            unique_fields,
            filter_text,
            filter_integer,
            filter_number,
            filter_boolean,
            filter_date,
            filter_datetime,
            filter_uuid,
            filter_email,
            filter_url,
            filter_enum,
            filter_json,
            filter_list,
            filter_system_fields,
            filter_logic,
            filter_related,
            invalid_filters,
            invalid_queries,
            sort_pagination,
            sort_pagination_indexed,
            cursors,
            field_selection,
            relation_types,
            relations_create,
            relation_cardinality,
            neighbours,
            relation_delete,
            on_delete_cascade,
            on_delete_restrict,
            events_feed,
            events_failed_writes,
            events_concurrent_writers,
            tenant_isolation,
            indexes,
        );
    };
}

// ---------------------------------------------------------------------------------
// Helpers (private): fresh tenants, inputs from JSON, error expectations, snapshots.
// ---------------------------------------------------------------------------------

const ADMIN: &str = "conformance-admin";
const EDITOR: &str = "conformance-editor";
const VIEWER: &str = "conformance-viewer";

/// A fresh tenant and ways to act in it.
struct Ctx {
    store: Store,
    tenant: TenantId,
}

impl Ctx {
    fn new(store: &Store) -> Ctx {
        let t = must(
            store.create_tenant(None, "conformance"),
            "create a tenant with a random id",
        );
        Ctx {
            store: store.clone(),
            tenant: t.id,
        }
    }

    fn as_actor(&self, actor: &str, role: Role) -> TenantScope {
        self.store.tenant(Scope::new(self.tenant, actor, role))
    }

    fn admin(&self) -> TenantScope {
        self.as_actor(ADMIN, Role::Admin)
    }

    fn editor(&self) -> TenantScope {
        self.as_actor(EDITOR, Role::Editor)
    }

    fn viewer(&self) -> TenantScope {
        self.as_actor(VIEWER, Role::Viewer)
    }
}

fn must<T>(r: Result<T>, what: &str) -> T {
    r.unwrap_or_else(|e| panic!("{what}: unexpected error: {e:?}"))
}

fn fail<T: Debug>(r: Result<T>, what: &str) -> Error {
    match r {
        Ok(v) => panic!("{what}: expected an error, got Ok({v:?})"),
        Err(e) => e,
    }
}

fn expect_not_found<T: Debug>(r: Result<T>, what: &str) {
    match fail(r, what) {
        Error::NotFound { .. } => {}
        e => panic!("{what}: expected NotFound, got {e:?}"),
    }
}

fn expect_conflict<T: Debug>(r: Result<T>, kind: ConflictKind, what: &str) -> Error {
    match fail(r, what) {
        e @ Error::Conflict { kind: k, .. } if k == kind => e,
        e => panic!("{what}: expected Conflict {kind:?}, got {e:?}"),
    }
}

fn expect_forbidden<T: Debug>(r: Result<T>, what: &str) {
    match fail(r, what) {
        Error::Forbidden(_) => {}
        e => panic!("{what}: expected Forbidden, got {e:?}"),
    }
}

/// `(field, code)` pairs of a validation error, sorted.
fn problems(e: &Error) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = e
        .details()
        .iter()
        .map(|d| (d.field.clone(), d.code.clone()))
        .collect();
    v.sort();
    v
}

/// Expects `Error::Validation` with exactly the `(field, code)` problems given.
fn expect_validation<T: Debug, S: AsRef<str>>(r: Result<T>, what: &str, expected: &[(S, &str)]) {
    let e = fail(r, what);
    assert!(
        matches!(e, Error::Validation(_)),
        "{what}: expected Validation, got {e:?}"
    );
    let mut want: Vec<(String, String)> = expected
        .iter()
        .map(|(f, c)| (f.as_ref().to_string(), c.to_string()))
        .collect();
    want.sort();
    assert_eq!(problems(&e), want, "{what}: validation problems ({e})");
}

fn expect_invalid_filter<T: Debug>(r: Result<T>, what: &str, path: &str) {
    match fail(r, what) {
        Error::InvalidFilter { path: p, .. } => {
            assert_eq!(p, path, "{what}: InvalidFilter at the wrong path")
        }
        e => panic!("{what}: expected InvalidFilter at {path}, got {e:?}"),
    }
}

fn expect_invalid_query<T: Debug>(r: Result<T>, what: &str, path: &str) {
    match fail(r, what) {
        Error::InvalidQuery { path: p, .. } => {
            assert_eq!(p, path, "{what}: InvalidQuery at the wrong path")
        }
        e => panic!("{what}: expected InvalidQuery at {path}, got {e:?}"),
    }
}

fn expect_invalid_cursor<T: Debug>(r: Result<T>, what: &str) {
    match fail(r, what) {
        Error::InvalidCursor(_) => {}
        e => panic!("{what}: expected InvalidCursor, got {e:?}"),
    }
}

fn new_type(def: &Value) -> NewEntityType {
    serde_json::from_value(def.clone())
        .unwrap_or_else(|e| panic!("test input is not an entity type: {e}: {def}"))
}

fn create_type(t: &TenantScope, def: Value) -> EntityType {
    must(
        t.create_entity_type(&new_type(&def)),
        &format!("create entity type {def}"),
    )
}

fn type_patch(v: Value) -> EntityTypePatch {
    serde_json::from_value(v.clone())
        .unwrap_or_else(|e| panic!("test input is not an entity type patch: {e}: {v}"))
}

fn new_relation_type(
    name: &str,
    source: &str,
    target: &str,
    cardinality: &str,
    on_delete: &str,
) -> NewRelationType {
    serde_json::from_value(json!({
        "name": name, "source": source, "target": target,
        "cardinality": cardinality, "on_delete": on_delete
    }))
    .expect("a relation type")
}

fn create_relation_type(
    t: &TenantScope,
    name: &str,
    source: &str,
    target: &str,
    cardinality: &str,
    on_delete: &str,
) -> RelationType {
    must(
        t.create_relation_type(&new_relation_type(
            name,
            source,
            target,
            cardinality,
            on_delete,
        )),
        &format!("create relation type {name}"),
    )
}

fn new_relation(ty: &str, source: Uuid, target: Uuid) -> NewRelation {
    NewRelation {
        relation_type: ty.to_string(),
        source_id: source,
        target_id: target,
        data: None,
    }
}

fn link(t: &TenantScope, ty: &str, source: Uuid, target: Uuid) -> Relation {
    must(
        t.create_relation(&new_relation(ty, source, target)),
        &format!("create {ty} relation {source} -> {target}"),
    )
}

fn records(t: &TenantScope, ty: &str) -> Records {
    must(t.records(ty), &format!("records of {ty}"))
}

fn create(recs: &Records, data: Value) -> Record {
    must(
        recs.create(&data),
        &format!("create {} record {data}", recs.entity_type().name),
    )
}

fn query(v: Value) -> Query {
    serde_json::from_value(v.clone())
        .unwrap_or_else(|e| panic!("test input is not a query: {e}: {v}"))
}

/// Every record of the handle's type (default order), paging with the largest limit.
fn all_records(recs: &Records) -> Vec<Record> {
    let mut q = Query {
        limit: Some(crate::query::MAX_LIMIT),
        ..Query::default()
    };
    let mut out = Vec::new();
    loop {
        let page = must(recs.query(&q), "list records");
        out.extend(page.items);
        match page.next_cursor {
            Some(c) => q.cursor = Some(c),
            None => return out,
        }
    }
}

fn id_set<'a>(rs: impl IntoIterator<Item = &'a Record>) -> BTreeSet<Uuid> {
    rs.into_iter().map(|r| r.id).collect()
}

/// Every event with `seq > after`, paging with the largest limit.
fn events_after(t: &TenantScope, mut after: i64) -> Vec<Event> {
    let mut out = Vec::new();
    loop {
        let page = must(t.events(after, Some(1000)), "read events");
        if page.events.is_empty() {
            assert_eq!(page.next, after, "an empty event page keeps the cursor");
            return out;
        }
        after = page.next;
        out.extend(page.events);
    }
}

fn last_seq(t: &TenantScope) -> i64 {
    events_after(t, 0).last().map(|e| e.seq).unwrap_or(0)
}

/// Every edge of `id` in both directions, paging.
fn all_edges(t: &TenantScope, id: Uuid) -> Vec<Relation> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let page = must(
            t.neighbours(id, None, Direction::Both, Some(1000), cursor.as_deref()),
            "list neighbours",
        );
        out.extend(page.items);
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => return out,
        }
    }
}

/// Everything a tenant holds, to prove that a failed write changed nothing.
#[derive(Debug, PartialEq)]
struct Snapshot {
    types: Vec<EntityType>,
    relation_types: Vec<RelationType>,
    records: BTreeMap<Uuid, Record>,
    relations: BTreeMap<Uuid, Relation>,
    last_seq: i64,
}

fn snapshot(t: &TenantScope) -> Snapshot {
    let types = must(t.entity_types(), "list entity types");
    let mut records = BTreeMap::new();
    let mut relations = BTreeMap::new();
    for ty in &types {
        for r in all_records(&records_of(t, ty)) {
            for e in all_edges(t, r.id) {
                relations.insert(e.id, e);
            }
            records.insert(r.id, r);
        }
    }
    Snapshot {
        types,
        relation_types: must(t.relation_types(), "list relation types"),
        records,
        relations,
        last_seq: last_seq(t),
    }
}

fn records_of(t: &TenantScope, ty: &EntityType) -> Records {
    records(t, ty.name.as_str())
}

fn assert_unchanged(t: &TenantScope, before: &Snapshot, what: &str) {
    let after = snapshot(t);
    if after != *before {
        panic!(
            "{what}: a rejected write changed the tenant\nbefore: {before:#?}\nafter: {after:#?}"
        );
    }
}

fn rfc3339(d: DateTime<Utc>) -> String {
    d.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

// ---------------------------------------------------------------------------------
// Tenants
// ---------------------------------------------------------------------------------

/// Tenants: create (with and without id), read, duplicate id, invalid names, delete.
pub fn tenants(store: &Store) {
    let id = TenantId::random();
    let t = must(
        store.create_tenant(Some(id), "  Conformance Inc  "),
        "create a tenant with a given id",
    );
    assert_eq!(t.id, id, "the tenant keeps the given id");
    assert_eq!(t.name, "Conformance Inc", "tenant names are trimmed");
    let got = must(store.get_tenant(id), "get the tenant");
    assert_eq!((got.id, got.name.as_str()), (id, "Conformance Inc"));
    expect_conflict(
        store.create_tenant(Some(id), "again"),
        ConflictKind::AlreadyExists,
        "create a tenant with a taken id",
    );
    expect_validation(
        store.create_tenant(None, "   "),
        "create a tenant with a blank name",
        &[("name", "invalid_name")],
    );
    expect_validation(
        store.create_tenant(None, "a\0b"),
        "create a tenant with NUL in its name",
        &[("name", "invalid_name")],
    );
    let other = must(store.create_tenant(None, "other"), "create a second tenant");
    assert_ne!(other.id, id, "random tenant ids differ");
    expect_not_found(
        store.get_tenant(TenantId::random()),
        "get an unknown tenant",
    );

    // Deleting a tenant deletes what it owns: re-creating the id starts empty.
    let scope = store.tenant(Scope::new(id, ADMIN, Role::Admin));
    create_type(
        &scope,
        json!({"name": "thing", "fields": [{"name": "x", "kind": "integer"}]}),
    );
    create(&records(&scope, "thing"), json!({"x": 1}));
    must(store.delete_tenant(id), "delete the tenant");
    expect_not_found(store.get_tenant(id), "get a deleted tenant");
    expect_not_found(store.delete_tenant(id), "delete a deleted tenant");
    must(store.get_tenant(other.id), "the other tenant survives");
    must(
        store.create_tenant(Some(id), "reborn"),
        "re-create the tenant id",
    );
    assert!(
        must(
            scope.entity_types(),
            "list entity types of the re-created tenant"
        )
        .is_empty(),
        "a re-created tenant has no entity types"
    );
    assert!(
        events_after(&scope, 0).is_empty(),
        "a re-created tenant has no events"
    );
}

// ---------------------------------------------------------------------------------
// Entity types
// ---------------------------------------------------------------------------------

/// Entity types: create, get, list (by name), duplicates, labels, field definitions.
pub fn entity_types(store: &Store) {
    let cx = Ctx::new(store);
    let t = cx.admin();
    assert!(
        must(t.entity_types(), "list entity types").is_empty(),
        "a new tenant has no entity types"
    );
    let project = create_type(
        &t,
        json!({"name": "project", "label": "Project", "fields": [
            {"name": "title", "kind": "text", "required": true, "max_length": 200, "label": "Title"},
            {"name": "budget", "kind": "number", "min": 0},
            {"name": "status", "kind": "enum", "values": ["draft", "live"], "default": "draft"},
            {"name": "tags", "kind": "list", "items": "text"},
            {"name": "meta", "kind": "json"},
            {"name": "code", "kind": "text", "pattern": "^[A-Z]+$", "unique": true},
            {"name": "rank", "kind": "integer", "indexed": true}
        ]}),
    );
    assert_eq!(project.name.as_str(), "project");
    assert_eq!(project.label, "Project");
    assert_eq!(project.version, 1, "a new entity type is at version 1");
    let names: Vec<&str> = project.fields.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(
        names,
        ["title", "budget", "status", "tags", "meta", "code", "rank"],
        "fields keep their order"
    );
    let field = |n: &str| project.field(n).expect("declared field").clone();
    assert!(field("title").required);
    assert_eq!(field("title").max_length, Some(200));
    assert_eq!(field("title").label.as_deref(), Some("Title"));
    assert_eq!(field("budget").min, Some(0.0));
    assert_eq!(
        field("status").kind,
        FieldKind::Enum(vec!["draft".into(), "live".into()])
    );
    assert_eq!(field("status").default, Some(json!("draft")));
    assert_eq!(field("tags").kind, FieldKind::List(ScalarKind::Text));
    assert_eq!(field("meta").kind, FieldKind::Json);
    assert!(field("code").unique);
    assert_eq!(
        field("code").pattern.as_ref().map(|p| p.as_str()),
        Some("^[A-Z]+$")
    );
    assert!(field("rank").indexed);

    let plain = create_type(&t, json!({"name": "alpha"}));
    assert_eq!(plain.label, "alpha", "the label defaults to the name");
    assert!(plain.fields.is_empty());

    let got = must(t.entity_type("project"), "get entity type");
    assert_eq!(*got, project, "get returns what create returned");
    let listed: Vec<String> = must(t.entity_types(), "list entity types")
        .iter()
        .map(|e| e.name.to_string())
        .collect();
    assert_eq!(
        listed,
        ["alpha", "project"],
        "entity types are listed by name"
    );

    let before = snapshot(&t);
    expect_conflict(
        t.create_entity_type(&new_type(
            &json!({"name": "project", "fields": [{"name": "x", "kind": "text"}]}),
        )),
        ConflictKind::AlreadyExists,
        "create a second entity type called project",
    );
    assert_unchanged(&t, &before, "duplicate entity type");

    expect_not_found(t.entity_type("nope"), "get an unknown entity type");
    expect_not_found(
        t.entity_type("Not A Name"),
        "get an invalid entity type name",
    );
    expect_not_found(t.records("nope"), "records of an unknown entity type");

    // The stored definition survives a JSON round trip (as the HTTP layer sends it).
    let json = serde_json::to_value(&project.fields).expect("fields serialise");
    let back: Vec<Field> = serde_json::from_value(json).expect("fields deserialise");
    assert_eq!(back, project.fields);
}

/// Entity type changes: label, add/change/remove fields, rejected kind changes, values
/// of removed fields stripped from records (and not resurrected by a re-added field).
pub fn entity_type_changes(store: &Store) {
    let cx = Ctx::new(store);
    let t = cx.admin();
    let ty = create_type(
        &t,
        json!({"name": "doc", "fields": [
            {"name": "title", "kind": "text", "required": true},
            {"name": "body", "kind": "text"},
            {"name": "n", "kind": "integer"},
            {"name": "state", "kind": "enum", "values": ["a", "b"]},
            {"name": "tags", "kind": "list", "items": "text"}
        ]}),
    );
    let recs = records(&t, "doc");
    let r1 = create(&recs, json!({"title": "a", "body": "x", "n": 1}));
    let r2 = create(&recs, json!({"title": "b", "n": 2}));

    let up = must(
        t.update_entity_type(
            "doc",
            &type_patch(json!({"label": "Document",
                "add_fields": [{"name": "score", "kind": "number", "default": 0.5}]})),
        ),
        "add a field and relabel",
    );
    assert_eq!(up.version, ty.version + 1, "each change bumps the version");
    assert_eq!((up.id, up.created_at), (ty.id, ty.created_at));
    assert!(up.updated_at >= ty.updated_at);
    assert_eq!(up.label, "Document");
    let names: Vec<&str> = up.fields.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(
        names,
        ["title", "body", "n", "state", "tags", "score"],
        "added fields go last"
    );
    assert_eq!(*must(t.entity_type("doc"), "get doc"), up);
    let r3 = create(&records(&t, "doc"), json!({"title": "c"}));
    assert_eq!(
        r3.data.get("score"),
        Some(&json!(0.5)),
        "the new field's default applies"
    );

    let up2 = must(
        t.update_entity_type(
            "doc",
            &type_patch(
                json!({"update_fields": [{"name": "body", "kind": "text", "max_length": 3}]}),
            ),
        ),
        "change a field",
    );
    assert_eq!(up2.version, up.version + 1);
    assert_eq!(up2.label, "Document", "an unset label is kept");
    assert_eq!(up2.field("body").and_then(|f| f.max_length), Some(3));
    expect_validation(
        records(&t, "doc").create(&json!({"title": "d", "body": "long"})),
        "create with a value the changed field now rejects",
        &[("body", "too_long")],
    );

    let up3 = must(
        t.update_entity_type(
            "doc",
            &type_patch(json!({"update_fields": [
                {"name": "state", "kind": "enum", "values": ["a", "b", "c"]}]})),
        ),
        "add a value to an enum",
    );
    assert_eq!(up3.version, up2.version + 1);
    create(&records(&t, "doc"), json!({"title": "d", "state": "c"}));

    let before = snapshot(&t);
    expect_validation(
        t.update_entity_type(
            "doc",
            &type_patch(json!({"update_fields": [{"name": "n", "kind": "text"}]})),
        ),
        "change a field's kind",
        &[("update_fields[0].kind", "kind_change")],
    );
    expect_validation(
        t.update_entity_type(
            "doc",
            &type_patch(
                json!({"update_fields": [{"name": "tags", "kind": "list", "items": "integer"}]}),
            ),
        ),
        "change a list's item kind",
        &[("update_fields[0].kind", "kind_change")],
    );
    expect_validation(
        t.update_entity_type(
            "doc",
            &type_patch(json!({"update_fields": [{"name": "state", "kind": "text"}]})),
        ),
        "change an enum into text",
        &[("update_fields[0].kind", "kind_change")],
    );
    expect_validation(
        t.update_entity_type(
            "doc",
            &type_patch(json!({"update_fields": [{"name": "nope", "kind": "text"}]})),
        ),
        "update an unknown field",
        &[("update_fields[0].name", "unknown_field")],
    );
    expect_validation(
        t.update_entity_type("doc", &type_patch(json!({"remove_fields": ["nope"]}))),
        "remove an unknown field",
        &[("remove_fields[0]", "unknown_field")],
    );
    expect_validation(
        t.update_entity_type(
            "doc",
            &type_patch(json!({"add_fields": [{"name": "title", "kind": "text"}]})),
        ),
        "add a field twice",
        &[("fields[6].name", "duplicate_field")],
    );
    expect_validation(
        t.update_entity_type(
            "doc",
            &type_patch(json!({"add_fields": [{"name": "id", "kind": "text"}],
                "update_fields": [{"name": "n", "kind": "integer", "min": 5, "max": 1}]})),
        ),
        "several problems in one change",
        &[
            ("add_fields[0].name", "invalid_name"),
            ("update_fields[0].min", "invalid_bound"),
        ],
    );
    expect_not_found(
        t.update_entity_type("nope", &type_patch(json!({"label": "x"}))),
        "update an unknown entity type",
    );
    assert_unchanged(&t, &before, "rejected entity type changes");

    must(
        t.update_entity_type("doc", &type_patch(json!({"remove_fields": ["body"]}))),
        "remove a field",
    );
    let recs = records(&t, "doc");
    let got = must(recs.get(r1.id), "get r1 after removing body");
    assert!(
        !got.data.contains_key("body"),
        "removing a field strips its values from records: {:?}",
        got.data
    );
    assert_eq!(got.data.get("title"), Some(&json!("a")));
    assert_eq!(got.data.get("n"), Some(&json!(1)));
    assert!(!must(t.record(r1.id), "record(r1)")
        .data
        .contains_key("body"));
    assert_eq!(
        must(recs.get(r2.id), "get r2").data.get("n"),
        Some(&json!(2))
    );
    expect_invalid_filter(
        recs.query(&query(json!({"filter": {"field": "body", "op": "exists"}}))),
        "filter on a removed field",
        "$.field",
    );

    must(
        t.update_entity_type(
            "doc",
            &type_patch(json!({"add_fields": [{"name": "body", "kind": "integer"}]})),
        ),
        "re-add a field of the same name with another kind",
    );
    let recs = records(&t, "doc");
    assert!(
        !must(recs.get(r1.id), "get r1").data.contains_key("body"),
        "old values do not come back with a re-added field"
    );
    let with_body = recs
        .query(&query(
            json!({"filter": {"field": "body", "op": "exists", "value": true}}),
        ))
        .expect("query the re-added field");
    assert!(
        with_body.items.is_empty(),
        "no record has the re-added field"
    );
    expect_validation(
        recs.create(&json!({"title": "e", "body": "text"})),
        "write the old kind into the re-added field",
        &[("body", "wrong_type")],
    );
    create(&recs, json!({"title": "e", "body": 5}));
}

/// Deleting entity types: records go with them; refused (InUse) while a relation type
/// refers to the type as source or target; a re-created name starts empty.
pub fn entity_type_delete(store: &Store) {
    let cx = Ctx::new(store);
    let t = cx.admin();
    create_type(
        &t,
        json!({"name": "owner", "fields": [{"name": "name", "kind": "text"}]}),
    );
    create_type(
        &t,
        json!({"name": "pet", "fields": [{"name": "name", "kind": "text", "indexed": true}]}),
    );
    let o1 = create(&records(&t, "owner"), json!({"name": "o"}));
    let pets = records(&t, "pet");
    let p1 = create(&pets, json!({"name": "rex"}));
    let p2 = create(&pets, json!({"name": "tom"}));
    create_relation_type(&t, "has", "owner", "pet", "one_to_many", "cascade");

    let before = snapshot(&t);
    expect_conflict(
        t.delete_entity_type("owner"),
        ConflictKind::InUse,
        "delete the source type of a relation type",
    );
    expect_conflict(
        t.delete_entity_type("pet"),
        ConflictKind::InUse,
        "delete the target type of a relation type",
    );
    assert_unchanged(&t, &before, "refused entity type deletes");

    must(t.delete_relation_type("has"), "delete the relation type");
    must(t.delete_entity_type("pet"), "delete pet");
    expect_not_found(t.entity_type("pet"), "get a deleted entity type");
    expect_not_found(t.records("pet"), "records of a deleted entity type");
    expect_not_found(t.record(p1.id), "record of a deleted entity type");
    expect_not_found(t.record(p2.id), "record of a deleted entity type");
    expect_not_found(t.delete_entity_type("pet"), "delete pet twice");
    expect_not_found(
        t.delete_entity_type("nope"),
        "delete an unknown entity type",
    );
    let names: Vec<String> = must(t.entity_types(), "list")
        .iter()
        .map(|e| e.name.to_string())
        .collect();
    assert_eq!(names, ["owner"]);
    assert_eq!(must(t.record(o1.id), "owner survives"), o1);
    assert!(
        must(t.indexes(), "indexes")
            .iter()
            .all(|i| i.entity_type.as_str() != "pet"),
        "a deleted entity type has no indexes"
    );

    create_type(
        &t,
        json!({"name": "pet", "fields": [{"name": "age", "kind": "integer"}]}),
    );
    let pets = records(&t, "pet");
    assert!(
        all_records(&pets).is_empty(),
        "a re-created entity type starts without records"
    );
    expect_validation(
        pets.create(&json!({"name": "rex"})),
        "the old definition is gone",
        &[("name", "unknown_field")],
    );
    create(&pets, json!({"age": 3}));
}

/// Invalid entity type definitions: Validation with every problem and its path, and
/// nothing stored.
pub fn entity_type_invalid(store: &Store) {
    let cx = Ctx::new(store);
    let t = cx.admin();
    let f = |field: Value| json!({"name": "ok", "fields": [field]});
    let cases: Vec<(Value, Vec<(&str, &str)>)> = vec![
        (json!({"name": "Bad Name"}), vec![("name", "invalid_name")]),
        (json!({"name": ""}), vec![("name", "invalid_name")]),
        (json!({"name": "1abc"}), vec![("name", "invalid_name")]),
        (
            json!({"name": "ok", "label": "x".repeat(201)}),
            vec![("label", "invalid_label")],
        ),
        (
            f(json!({"name": "x", "kind": "nope"})),
            vec![("fields[0].kind", "invalid_kind")],
        ),
        (
            f(json!({"name": "id", "kind": "text"})),
            vec![("fields[0].name", "invalid_name")],
        ),
        (
            f(json!({"name": "Title", "kind": "text"})),
            vec![("fields[0].name", "invalid_name")],
        ),
        (
            json!({"name": "ok", "fields": [{"name": "a", "kind": "text"}, {"name": "a", "kind": "integer"}]}),
            vec![("fields[1].name", "duplicate_field")],
        ),
        (
            f(json!({"name": "s", "kind": "enum"})),
            vec![("fields[0].values", "missing_values")],
        ),
        (
            f(json!({"name": "s", "kind": "enum", "values": ["a", "a"]})),
            vec![("fields[0].values[1]", "duplicate_enum_value")],
        ),
        (
            f(json!({"name": "l", "kind": "list"})),
            vec![("fields[0].items", "invalid_items")],
        ),
        (
            f(json!({"name": "l", "kind": "list", "items": "json"})),
            vec![("fields[0].items", "invalid_items")],
        ),
        (
            f(json!({"name": "j", "kind": "json", "indexed": true})),
            vec![("fields[0].indexed", "not_indexable")],
        ),
        (
            f(json!({"name": "l", "kind": "list", "items": "text", "unique": true})),
            vec![("fields[0].unique", "not_indexable")],
        ),
        (
            f(json!({"name": "x", "kind": "text", "pattern": "("})),
            vec![("fields[0].pattern", "invalid_pattern")],
        ),
        (
            f(json!({"name": "x", "kind": "integer", "pattern": "a"})),
            vec![("fields[0].pattern", "not_applicable")],
        ),
        (
            f(json!({"name": "x", "kind": "integer", "min": 5, "max": 1})),
            vec![("fields[0].min", "invalid_bound")],
        ),
        (
            f(json!({"name": "x", "kind": "text", "min": 1})),
            vec![("fields[0].min", "not_applicable")],
        ),
        (
            f(json!({"name": "x", "kind": "integer", "max_length": 3})),
            vec![("fields[0].max_length", "not_applicable")],
        ),
        (
            f(json!({"name": "x", "kind": "integer", "default": "one"})),
            vec![("fields[0].default", "wrong_type")],
        ),
        (
            f(json!({"name": "x", "kind": "text", "max_length": 2, "default": "long"})),
            vec![("fields[0].default", "too_long")],
        ),
        (
            f(json!({"name": "x", "kind": "text", "unique": true, "default": "a"})),
            vec![("fields[0].default", "not_applicable")],
        ),
        (
            f(json!({"name": "x", "kind": "text", "values": ["a"]})),
            vec![("fields[0].values", "not_applicable")],
        ),
        (
            f(json!({"name": "x", "kind": "text", "items": "text"})),
            vec![("fields[0].items", "not_applicable")],
        ),
        (
            json!({"name": "Bad", "fields": [
                {"name": "1x", "kind": "text"},
                {"name": "y", "kind": "wat"},
                {"name": "z", "kind": "integer", "min": 3, "max": 1}
            ]}),
            vec![
                ("name", "invalid_name"),
                ("fields[0].name", "invalid_name"),
                ("fields[1].kind", "invalid_kind"),
                ("fields[2].min", "invalid_bound"),
            ],
        ),
    ];
    for (def, expected) in &cases {
        expect_validation(
            t.create_entity_type(&new_type(def)),
            &format!("create entity type {def}"),
            expected,
        );
    }
    assert!(
        must(t.entity_types(), "list").is_empty(),
        "invalid definitions store nothing"
    );
    assert_eq!(last_seq(&t), 0, "invalid definitions emit no events");
}

/// Only admins change schema: editors and viewers get Forbidden and change nothing.
pub fn schema_roles(store: &Store) {
    let cx = Ctx::new(store);
    let t = cx.admin();
    create_type(
        &t,
        json!({"name": "thing", "fields": [{"name": "x", "kind": "integer"}]}),
    );
    create_relation_type(&t, "rel", "thing", "thing", "many_to_many", "cascade");
    create(&records(&t, "thing"), json!({"x": 1}));
    let before = snapshot(&t);
    for (actor, role) in [(EDITOR, Role::Editor), (VIEWER, Role::Viewer)] {
        let s = cx.as_actor(actor, role);
        let who = format!("{role:?}");
        expect_forbidden(
            s.create_entity_type(&new_type(&json!({"name": "other"}))),
            &format!("{who} creates an entity type"),
        );
        expect_forbidden(
            s.update_entity_type("thing", &type_patch(json!({"label": "x"}))),
            &format!("{who} changes an entity type"),
        );
        expect_forbidden(
            s.delete_entity_type("thing"),
            &format!("{who} deletes an entity type"),
        );
        expect_forbidden(
            s.create_relation_type(&new_relation_type(
                "rel2",
                "thing",
                "thing",
                "one_to_one",
                "cascade",
            )),
            &format!("{who} creates a relation type"),
        );
        expect_forbidden(
            s.delete_relation_type("rel"),
            &format!("{who} deletes a relation type"),
        );
        must(s.entity_types(), &format!("{who} lists entity types"));
        must(
            s.entity_type("thing"),
            &format!("{who} reads an entity type"),
        );
        must(s.relation_types(), &format!("{who} lists relation types"));
        must(
            s.relation_type("rel"),
            &format!("{who} reads a relation type"),
        );
        must(s.indexes(), &format!("{who} lists indexes"));
        must(s.events(0, None), &format!("{who} reads events"));
    }
    assert_unchanged(&t, &before, "forbidden schema changes");
}

/// A `Records` handle taken before a schema change must never write a removed field
/// back: the write either fails with a conflict or lands without it.
pub fn stale_handles(store: &Store) {
    let cx = Ctx::new(store);
    let t = cx.admin();
    create_type(
        &t,
        json!({"name": "s", "fields": [{"name": "a", "kind": "text"}, {"name": "b", "kind": "text"}]}),
    );
    let old = records(&t, "s");
    let r = create(&old, json!({"a": "1", "b": "2"}));
    must(
        t.update_entity_type("s", &type_patch(json!({"remove_fields": ["b"]}))),
        "remove b",
    );
    let attempts = [
        ("create", old.create(&json!({"a": "x", "b": "y"}))),
        ("patch", old.patch(r.id, &json!({"b": "z"}), None)),
        (
            "replace",
            old.replace(r.id, &json!({"a": "q", "b": "w"}), None),
        ),
    ];
    for (what, res) in attempts {
        match res {
            Ok(rec) => assert!(
                !rec.data.contains_key("b"),
                "{what} through a stale handle wrote a removed field: {:?}",
                rec.data
            ),
            Err(Error::Conflict { .. } | Error::Validation(_)) => {}
            Err(e) => panic!("{what} through a stale handle: unexpected error {e:?}"),
        }
    }
    for rec in all_records(&records(&t, "s")) {
        assert!(
            !rec.data.contains_key("b"),
            "a record holds a removed field after stale writes: {:?}",
            rec.data
        );
    }
}

// ---------------------------------------------------------------------------------
// Records
// ---------------------------------------------------------------------------------

fn note_type(t: &TenantScope) -> EntityType {
    create_type(
        t,
        json!({"name": "note", "fields": [
            {"name": "title", "kind": "text", "required": true},
            {"name": "body", "kind": "text"},
            {"name": "n", "kind": "integer"},
            {"name": "tags", "kind": "list", "items": "text"}
        ]}),
    )
}

/// Records: create, get, patch (merge, null removes), replace, delete; versions and
/// actors.
pub fn records_crud(store: &Store) {
    let cx = Ctx::new(store);
    note_type(&cx.admin());
    let ed = cx.editor();
    let recs = records(&ed, "note");
    assert!(all_records(&recs).is_empty());

    let r = create(&recs, json!({"title": "hello", "body": "world", "n": 1}));
    assert_eq!(r.entity_type.as_str(), "note");
    assert_eq!(r.version, 1, "a new record is at version 1");
    assert_eq!(
        Value::Object(r.data.clone()),
        json!({"title": "hello", "body": "world", "n": 1})
    );
    assert_eq!(
        r.created_by.as_deref(),
        Some(EDITOR),
        "created_by is the actor"
    );
    assert_eq!(
        r.updated_by.as_deref(),
        Some(EDITOR),
        "updated_by is the actor"
    );
    assert_eq!(r.created_at, r.updated_at, "a new record was never updated");
    assert_eq!(
        must(recs.get(r.id), "get"),
        r,
        "get returns what create returned"
    );
    let raw = must(recs.get_raw(r.id), "get_raw");
    assert_eq!(
        must(raw.to_record(), "parse the raw record"),
        r,
        "get_raw returns the record get returns, its data as JSON text"
    );
    assert_eq!(
        serde_json::to_value(&raw).ok(),
        serde_json::to_value(&r).ok(),
        "a raw record serialises like the record"
    );
    assert_eq!(
        must(cx.viewer().record(r.id), "record of any type"),
        r,
        "record(id) finds records of any type"
    );

    let other = records(&cx.as_actor("conformance-editor-2", Role::Editor), "note");
    let p = must(
        other.patch(r.id, &json!({"n": 2, "body": null, "tags": ["a"]}), None),
        "patch",
    );
    assert_eq!(p.version, 2, "a patch bumps the version");
    assert_eq!(
        Value::Object(p.data.clone()),
        json!({"title": "hello", "n": 2, "tags": ["a"]}),
        "a patch merges, and null removes a field"
    );
    assert_eq!(p.created_by.as_deref(), Some(EDITOR), "created_by is kept");
    assert_eq!(p.updated_by.as_deref(), Some("conformance-editor-2"));
    assert_eq!(p.created_at, r.created_at, "created_at is kept");
    assert!(p.updated_at >= r.updated_at, "updated_at moves forward");
    assert_eq!(must(recs.get(r.id), "get after patch"), p);

    let rp = must(
        recs.replace(r.id, &json!({"title": "new"}), None),
        "replace",
    );
    assert_eq!(rp.version, 3);
    assert_eq!(
        Value::Object(rp.data.clone()),
        json!({"title": "new"}),
        "replace drops fields not given"
    );
    assert_eq!(rp.updated_by.as_deref(), Some(EDITOR));
    assert_eq!(must(recs.get(r.id), "get after replace"), rp);

    expect_validation(
        recs.patch(r.id, &json!([1]), None),
        "patch with a non-object",
        &[("data", "not_an_object")],
    );
    expect_validation(
        recs.patch(r.id, &json!({"title": null}), None),
        "patch removing a required field",
        &[("title", "required")],
    );
    expect_validation(
        recs.replace(r.id, &json!({"body": "x"}), None),
        "replace without a required field",
        &[("title", "required")],
    );
    assert_eq!(must(recs.get(r.id), "rejected writes change nothing"), rp);

    let keep = create(&recs, json!({"title": "keep"}));
    must(recs.delete(r.id, None), "delete");
    expect_not_found(recs.get(r.id), "get a deleted record");
    expect_not_found(recs.get_raw(r.id), "get_raw a deleted record");
    expect_not_found(ed.record(r.id), "record(id) of a deleted record");
    expect_not_found(recs.delete(r.id, None), "delete twice");
    expect_not_found(
        recs.patch(r.id, &json!({"n": 1}), None),
        "patch a deleted record",
    );
    expect_not_found(
        recs.replace(r.id, &json!({"title": "x"}), None),
        "replace a deleted record",
    );
    assert_eq!(
        id_set(&all_records(&recs)),
        BTreeSet::from([keep.id]),
        "queries see only live records"
    );
}

/// NotFound for unknown ids and for ids of another entity type (through every
/// operation), without changing anything.
pub fn records_not_found(store: &Store) {
    let cx = Ctx::new(store);
    let t = cx.admin();
    create_type(
        &t,
        json!({"name": "a", "fields": [{"name": "x", "kind": "integer"}]}),
    );
    create_type(
        &t,
        json!({"name": "b", "fields": [{"name": "x", "kind": "integer"}]}),
    );
    let a = records(&t, "a");
    let b = records(&t, "b");
    let ra = create(&a, json!({"x": 1}));
    create(&b, json!({"x": 2}));
    let before = snapshot(&t);
    for (id, what) in [
        (ra.id, "an id of another entity type"),
        (Uuid::new_v4(), "an unknown id"),
    ] {
        expect_not_found(b.get(id), &format!("get {what}"));
        expect_not_found(b.get_raw(id), &format!("get_raw {what}"));
        expect_not_found(
            b.patch(id, &json!({"x": 5}), None),
            &format!("patch {what}"),
        );
        expect_not_found(
            b.replace(id, &json!({"x": 5}), None),
            &format!("replace {what}"),
        );
        expect_not_found(b.delete(id, None), &format!("delete {what}"));
        expect_not_found(
            b.delete(id, Some(1)),
            &format!("delete {what} with a version"),
        );
    }
    expect_not_found(t.record(Uuid::new_v4()), "record(id) of an unknown id");
    assert_eq!(must(t.record(ra.id), "record(id)"), ra);
    assert_unchanged(&t, &before, "writes to missing records");
}

/// Versions go up by one per change; a stale `expected_version` is a StaleVersion
/// conflict on patch, replace and delete, and changes nothing.
pub fn record_versions(store: &Store) {
    let cx = Ctx::new(store);
    let t = cx.admin();
    note_type(&t);
    let recs = records(&t, "note");
    let r = create(&recs, json!({"title": "v"}));
    let mut cur = r.clone();
    for i in 0..5 {
        cur = must(
            recs.patch(r.id, &json!({"n": i}), Some(cur.version)),
            "patch at the current version",
        );
        assert_eq!(cur.version, 2 + i, "versions go up by one");
    }
    assert_eq!(cur.version, 6);
    let before = snapshot(&t);
    for stale in [1, 5, 7, 0, -1] {
        expect_conflict(
            recs.patch(r.id, &json!({"n": 99}), Some(stale)),
            ConflictKind::StaleVersion,
            &format!("patch expecting version {stale} at 6"),
        );
        expect_conflict(
            recs.replace(r.id, &json!({"title": "x"}), Some(stale)),
            ConflictKind::StaleVersion,
            &format!("replace expecting version {stale} at 6"),
        );
        expect_conflict(
            recs.delete(r.id, Some(stale)),
            ConflictKind::StaleVersion,
            &format!("delete expecting version {stale} at 6"),
        );
    }
    assert_unchanged(&t, &before, "stale writes");
    let rp = must(
        recs.replace(r.id, &json!({"title": "w"}), Some(6)),
        "replace at the current version",
    );
    assert_eq!(rp.version, 7);
    must(recs.delete(r.id, Some(7)), "delete at the current version");
    expect_not_found(recs.get(r.id), "get after delete");
}

/// Viewers read but cannot write records or relations; editors can.
pub fn record_roles(store: &Store) {
    let cx = Ctx::new(store);
    let t = cx.admin();
    note_type(&t);
    create_relation_type(&t, "refs", "note", "note", "many_to_many", "cascade");
    let ed = cx.editor();
    let er = records(&ed, "note");
    let r1 = create(&er, json!({"title": "one"}));
    let r2 = create(&er, json!({"title": "two"}));
    let rel = link(&ed, "refs", r1.id, r2.id);
    let v = cx.viewer();
    let vr = records(&v, "note");
    let before = snapshot(&t);
    expect_forbidden(vr.create(&json!({"title": "x"})), "viewer creates");
    expect_forbidden(
        vr.create_many(&[json!({"title": "x"})]),
        "viewer creates a batch",
    );
    expect_forbidden(vr.patch(r1.id, &json!({"n": 1}), None), "viewer patches");
    expect_forbidden(
        vr.replace(r1.id, &json!({"title": "y"}), None),
        "viewer replaces",
    );
    expect_forbidden(vr.delete(r1.id, None), "viewer deletes");
    expect_forbidden(
        v.create_relation(&new_relation("refs", r2.id, r1.id)),
        "viewer creates a relation",
    );
    expect_forbidden(v.delete_relation(rel.id), "viewer deletes a relation");
    assert_unchanged(&t, &before, "forbidden writes");
    assert_eq!(must(vr.get(r1.id), "viewer reads"), r1);
    assert_eq!(id_set(&all_records(&vr)), BTreeSet::from([r1.id, r2.id]));
    assert_eq!(must(v.relation(rel.id), "viewer reads a relation"), rel);
    must(er.patch(r1.id, &json!({"n": 1}), None), "editor patches");
    must(er.delete(r2.id, None), "editor deletes");
}

// ---------------------------------------------------------------------------------
// Validation
// ---------------------------------------------------------------------------------

fn validation_type(t: &TenantScope) -> Records {
    create_type(
        t,
        json!({"name": "v", "fields": [
            {"name": "title", "kind": "text", "required": true, "min_length": 2, "max_length": 10, "pattern": "^[A-Z]"},
            {"name": "count", "kind": "integer", "min": 0, "max": 100},
            {"name": "big", "kind": "integer"},
            {"name": "ratio", "kind": "number", "min": 0, "max": 1},
            {"name": "flag", "kind": "boolean"},
            {"name": "day", "kind": "date"},
            {"name": "at", "kind": "datetime"},
            {"name": "ref", "kind": "uuid"},
            {"name": "mail", "kind": "email"},
            {"name": "site", "kind": "url"},
            {"name": "status", "kind": "enum", "values": ["draft", "live"]},
            {"name": "meta", "kind": "json"},
            {"name": "tags", "kind": "list", "items": "text", "min_length": 1, "max_length": 3},
            {"name": "nums", "kind": "list", "items": "integer"},
            {"name": "priority", "kind": "integer", "default": 3},
            {"name": "level", "kind": "enum", "values": ["a", "b"], "default": "a"}
        ]}),
    );
    records(t, "v")
}

/// Every validation rule through the store; a rejected write writes nothing.
pub fn validation_rules(store: &Store) {
    let cx = Ctx::new(store);
    let t = cx.admin();
    let recs = validation_type(&t);
    let existing = create(&recs, json!({"title": "Ok"}));
    let with = |extra: Value| {
        let mut m = Map::new();
        m.insert("title".into(), json!("Ok"));
        if let Value::Object(e) = extra {
            m.extend(e);
        }
        Value::Object(m)
    };
    let cases: Vec<(Value, Vec<(&str, &str)>)> = vec![
        (json!({}), vec![("title", "required")]),
        (json!({"title": null}), vec![("title", "required")]),
        (json!({"title": 5}), vec![("title", "wrong_type")]),
        (json!({"title": "A"}), vec![("title", "too_short")]),
        (json!({"title": "Abcdefghijk"}), vec![("title", "too_long")]),
        (json!({"title": "abc"}), vec![("title", "pattern_mismatch")]),
        (json!({"title": "A\u{0}b"}), vec![("title", "nul_in_text")]),
        (with(json!({"count": -1})), vec![("count", "out_of_range")]),
        (with(json!({"count": 101})), vec![("count", "out_of_range")]),
        (with(json!({"count": 1.5})), vec![("count", "wrong_type")]),
        (with(json!({"count": "1"})), vec![("count", "wrong_type")]),
        (
            with(json!({"big": 9_223_372_036_854_775_808u64})),
            vec![("big", "integer_overflow")],
        ),
        (
            with(json!({"big": 1e19})),
            vec![("big", "integer_overflow")],
        ),
        (with(json!({"ratio": 1.5})), vec![("ratio", "out_of_range")]),
        (with(json!({"ratio": "x"})), vec![("ratio", "wrong_type")]),
        (with(json!({"flag": "true"})), vec![("flag", "wrong_type")]),
        (with(json!({"flag": 1})), vec![("flag", "wrong_type")]),
        (
            with(json!({"day": "2024-02-30"})),
            vec![("day", "invalid_date")],
        ),
        (
            with(json!({"day": "2024-2-3"})),
            vec![("day", "invalid_date")],
        ),
        (with(json!({"day": 20240101})), vec![("day", "wrong_type")]),
        (
            with(json!({"at": "2024-01-01"})),
            vec![("at", "invalid_datetime")],
        ),
        (
            with(json!({"at": "2024-01-01T10:00:00"})),
            vec![("at", "invalid_datetime")],
        ),
        (with(json!({"ref": "nope"})), vec![("ref", "invalid_uuid")]),
        (
            with(json!({"mail": "nope"})),
            vec![("mail", "invalid_email")],
        ),
        (
            with(json!({"mail": "a b@c.de"})),
            vec![("mail", "invalid_email")],
        ),
        (with(json!({"site": "nope"})), vec![("site", "invalid_url")]),
        (
            with(json!({"site": "/relative/path"})),
            vec![("site", "invalid_url")],
        ),
        (
            with(json!({"status": "gone"})),
            vec![("status", "not_in_enum")],
        ),
        (
            with(json!({"status": "Draft"})),
            vec![("status", "not_in_enum")],
        ),
        (with(json!({"status": 1})), vec![("status", "wrong_type")]),
        (
            with(json!({"meta": {"a": "\u{0}"}})),
            vec![("meta", "nul_in_text")],
        ),
        (with(json!({"tags": []})), vec![("tags", "too_short")]),
        (
            with(json!({"tags": ["a", "b", "c", "d"]})),
            vec![("tags", "too_long")],
        ),
        (with(json!({"tags": "a"})), vec![("tags", "wrong_type")]),
        (
            with(json!({"tags": ["a", 1]})),
            vec![("tags[1]", "wrong_type")],
        ),
        (
            with(json!({"tags": [null]})),
            vec![("tags[0]", "wrong_type")],
        ),
        (
            with(json!({"tags": ["\u{0}"]})),
            vec![("tags[0]", "nul_in_text")],
        ),
        (
            with(json!({"nums": [1, 2.5]})),
            vec![("nums[1]", "wrong_type")],
        ),
        (
            with(json!({"nums": [1e20]})),
            vec![("nums[0]", "integer_overflow")],
        ),
        (with(json!({"nope": 1})), vec![("nope", "unknown_field")]),
        (with(json!({"id": "x"})), vec![("id", "unknown_field")]),
        (json!([1, 2]), vec![("data", "not_an_object")]),
        (json!("text"), vec![("data", "not_an_object")]),
        (
            json!({"title": 1, "count": -1, "nope": true, "day": "x", "tags": [], "status": "x"}),
            vec![
                ("title", "wrong_type"),
                ("count", "out_of_range"),
                ("nope", "unknown_field"),
                ("day", "invalid_date"),
                ("tags", "too_short"),
                ("status", "not_in_enum"),
            ],
        ),
    ];
    let before = snapshot(&t);
    for (data, expected) in &cases {
        expect_validation(recs.create(data), &format!("create {data}"), expected);
        if data.is_object() {
            expect_validation(
                recs.create_many(&[json!({"title": "Fine"}), data.clone()]),
                &format!("create a batch with {data}"),
                &expected
                    .iter()
                    .map(|(f, c)| (format!("records[1].{f}"), *c))
                    .collect::<Vec<_>>(),
            );
            expect_validation(
                recs.replace(existing.id, data, None),
                &format!("replace with {data}"),
                expected,
            );
        }
    }
    // Patches validate the merged record.
    let patch_cases: Vec<(Value, Vec<(&str, &str)>)> = vec![
        (json!({"title": null}), vec![("title", "required")]),
        (json!({"count": 500}), vec![("count", "out_of_range")]),
        (json!({"nope": 1}), vec![("nope", "unknown_field")]),
        (
            json!({"title": "x", "ref": "y"}),
            vec![
                ("title", "too_short"),
                ("title", "pattern_mismatch"),
                ("ref", "invalid_uuid"),
            ],
        ),
    ];
    for (patch, expected) in &patch_cases {
        expect_validation(
            recs.patch(existing.id, patch, None),
            &format!("patch with {patch}"),
            expected,
        );
    }
    assert_unchanged(&t, &before, "rejected writes");

    // Values at the edges are accepted.
    for data in [
        json!({"title": "Ab", "count": 0, "ratio": 0}),
        json!({"title": "Abcdefghij", "count": 100, "ratio": 1}),
        json!({"title": "Zz", "big": i64::MAX, "nums": [i64::MIN]}),
        json!({"title": "Ok", "at": "2024-01-01T10:00:00+05:30", "day": "2024-02-29"}),
        json!({"title": "Ok", "site": "mailto:someone@example.com", "mail": "a.b+c@d-e.example"}),
        json!({"title": "Ok", "meta": {"nested": [1, {"x": null}]}, "tags": ["a", "a", "a"]}),
        json!({"title": "Ok", "flag": false, "status": "live"}),
        json!({"title": "Unïcødé"}),
    ] {
        create(&recs, data);
    }
}

/// Defaults fill missing (and null) fields; values are normalised (uuid case,
/// integral numbers); what create returns is what is stored.
pub fn validation_defaults(store: &Store) {
    let cx = Ctx::new(store);
    let t = cx.admin();
    let recs = validation_type(&t);
    let r = create(&recs, json!({"title": "Ok"}));
    assert_eq!(r.data.get("priority"), Some(&json!(3)), "default applied");
    assert_eq!(
        r.data.get("level"),
        Some(&json!("a")),
        "enum default applied"
    );
    assert!(
        !r.data.contains_key("count"),
        "no value for a field without default"
    );
    let r2 = create(
        &recs,
        json!({"title": "Ok", "priority": null, "level": "b"}),
    );
    assert_eq!(
        r2.data.get("priority"),
        Some(&json!(3)),
        "null takes the default"
    );
    assert_eq!(
        r2.data.get("level"),
        Some(&json!("b")),
        "a given value wins"
    );
    let r3 = create(
        &recs,
        json!({"title": "Ok", "priority": 7, "ref": "550E8400-E29B-41D4-A716-446655440000",
               "count": 5.0, "nums": [1.0, 2]}),
    );
    assert_eq!(r3.data.get("priority"), Some(&json!(7)));
    assert_eq!(
        r3.data.get("ref"),
        Some(&json!("550e8400-e29b-41d4-a716-446655440000")),
        "uuids are stored lower-case"
    );
    assert_eq!(
        r3.data.get("count").and_then(Value::as_i64),
        Some(5),
        "5.0 is the integer 5"
    );
    assert_eq!(r3.data.get("nums"), Some(&json!([1, 2])));
    for rec in [&r, &r2, &r3] {
        assert_eq!(
            &must(recs.get(rec.id), "get").data,
            &rec.data,
            "stored data equals returned data"
        );
    }
    let p = must(
        recs.patch(r3.id, &json!({"priority": null}), None),
        "patch a defaulted field to null",
    );
    assert_eq!(
        p.data.get("priority"),
        Some(&json!(3)),
        "null in a patch restores the default"
    );
    let rp = must(
        recs.replace(r3.id, &json!({"title": "Ok"}), None),
        "replace",
    );
    assert_eq!(
        rp.data.get("level"),
        Some(&json!("a")),
        "replace applies defaults"
    );
}

/// Batch create is all or nothing, reports `records[i].field` paths and keeps order.
pub fn batch_create(store: &Store) {
    let cx = Ctx::new(store);
    let t = cx.admin();
    create_type(
        &t,
        json!({"name": "b", "fields": [
            {"name": "name", "kind": "text", "required": true},
            {"name": "n", "kind": "integer", "min": 0}
        ]}),
    );
    let recs = records(&cx.editor(), "b");
    let rows: Vec<Value> = (0..25)
        .map(|i| json!({"name": format!("r{i}"), "n": i}))
        .collect();
    let made = must(recs.create_many(&rows), "create a batch");
    assert_eq!(made.len(), rows.len());
    for (r, row) in made.iter().zip(&rows) {
        assert_eq!(
            &Value::Object(r.data.clone()),
            row,
            "batch results keep input order"
        );
        assert_eq!(r.version, 1);
        assert_eq!(r.created_by.as_deref(), Some(EDITOR));
    }
    assert_eq!(id_set(&made).len(), rows.len(), "batch ids are distinct");
    assert_eq!(id_set(&all_records(&recs)), id_set(&made));

    let before = snapshot(&t);
    expect_validation(
        recs.create_many(&[
            json!({"name": "c"}),
            json!({"n": -1}),
            json!({"name": "d", "x": 1}),
            json!({"name": "e"}),
        ]),
        "a batch with bad records",
        &[
            ("records[1].name", "required"),
            ("records[1].n", "out_of_range"),
            ("records[2].x", "unknown_field"),
        ],
    );
    expect_validation(
        recs.create_many(&[json!({"name": "f"}), json!(7)]),
        "a batch with a non-object",
        &[("records[1].data", "not_an_object")],
    );
    expect_validation(
        recs.create_many(&[]),
        "an empty batch",
        &[("records", "empty_batch")],
    );
    let huge: Vec<Value> = (0..crate::store::MAX_BATCH + 1)
        .map(|_| json!({"name": "x"}))
        .collect();
    expect_validation(
        recs.create_many(&huge),
        "a batch over the limit",
        &[("records", "batch_too_large")],
    );
    assert_unchanged(&t, &before, "rejected batches");
    let one = must(
        recs.create_many(&[json!({"name": "solo"})]),
        "a batch of one",
    );
    assert_eq!(one.len(), 1);
}

/// Unique fields: Conflict Unique on create, patch, replace and within one batch;
/// missing values never clash; freed values can be reused; nothing is written.
pub fn unique_fields(store: &Store) {
    let cx = Ctx::new(store);
    let t = cx.admin();
    create_type(
        &t,
        json!({"name": "u", "fields": [
            {"name": "code", "kind": "text", "unique": true},
            {"name": "num", "kind": "integer", "unique": true},
            {"name": "day", "kind": "date", "unique": true},
            {"name": "other", "kind": "text"}
        ]}),
    );
    let recs = records(&t, "u");
    let a = create(&recs, json!({"code": "A", "num": 1, "day": "2024-01-01"}));
    let b = create(&recs, json!({"code": "a", "num": 2}));
    let n1 = create(&recs, json!({"other": "no code"}));
    let n2 = create(&recs, json!({"other": "no code either"}));
    assert_ne!(n1.id, n2.id, "missing values never clash");

    let before = snapshot(&t);
    let e = expect_conflict(
        recs.create(&json!({"code": "A"})),
        ConflictKind::Unique,
        "create a duplicate text",
    );
    assert!(
        e.details().iter().any(|d| d.field == "code"),
        "the conflict names the field: {e:?}"
    );
    expect_conflict(
        recs.create(&json!({"num": 1})),
        ConflictKind::Unique,
        "create a duplicate integer",
    );
    expect_conflict(
        recs.create(&json!({"day": "2024-01-01"})),
        ConflictKind::Unique,
        "create a duplicate date",
    );
    expect_conflict(
        recs.patch(b.id, &json!({"code": "A"}), None),
        ConflictKind::Unique,
        "patch to a taken value",
    );
    expect_conflict(
        recs.replace(n1.id, &json!({"num": 2}), None),
        ConflictKind::Unique,
        "replace with a taken value",
    );
    expect_conflict(
        recs.create_many(&[
            json!({"code": "X"}),
            json!({"code": "Y"}),
            json!({"code": "X"}),
        ]),
        ConflictKind::Unique,
        "a batch with a duplicate inside",
    );
    expect_conflict(
        recs.create_many(&[json!({"code": "Z"}), json!({"code": "A"})]),
        ConflictKind::Unique,
        "a batch clashing with a stored record",
    );
    assert_unchanged(&t, &before, "unique conflicts");

    must(
        recs.patch(a.id, &json!({"other": "same code"}), None),
        "patch a record keeping its own unique value",
    );
    must(
        recs.replace(a.id, &json!({"code": "A", "num": 1}), None),
        "replace keeping its own unique values",
    );
    must(
        recs.patch(a.id, &json!({"code": "B"}), None),
        "change a unique value",
    );
    create(&recs, json!({"code": "A"}));
    must(recs.delete(b.id, None), "delete b");
    create(&recs, json!({"code": "a", "num": 2}));
    must(
        recs.create_many(&[json!({"code": "X"}), json!({"code": "Y"})]),
        "a batch with distinct values",
    );
}

// ---------------------------------------------------------------------------------
// Filters: a small dataset of six records (labels a..f) whose expected matches are
// written by hand. Every orderable field `x` has an indexed twin `x_ix` holding the
// same values, and each predicate runs against both (backends may take another path
// for indexed fields).
// ---------------------------------------------------------------------------------

/// Fields with an indexed twin.
const TWINNED: [&str; 10] = ["t", "i", "n", "b", "d", "dt", "u", "e", "w", "s"];

fn uuid_of(label: char) -> String {
    format!("00000000-0000-4000-8000-00000000000{label}")
}

struct Items {
    t: TenantScope,
    recs: Records,
    ids: BTreeMap<String, Uuid>,
}

fn items_fixture(store: &Store) -> Items {
    let cx = Ctx::new(store);
    let t = cx.admin();
    let mut fields = vec![
        json!({"name": "k", "kind": "text", "required": true, "unique": true}),
        json!({"name": "t", "kind": "text"}),
        json!({"name": "i", "kind": "integer"}),
        json!({"name": "n", "kind": "number"}),
        json!({"name": "b", "kind": "boolean"}),
        json!({"name": "d", "kind": "date"}),
        json!({"name": "dt", "kind": "datetime"}),
        json!({"name": "u", "kind": "uuid"}),
        json!({"name": "e", "kind": "email"}),
        json!({"name": "w", "kind": "url"}),
        json!({"name": "s", "kind": "enum", "values": ["red", "green", "blue"]}),
        json!({"name": "j", "kind": "json"}),
        json!({"name": "l", "kind": "list", "items": "text"}),
        json!({"name": "li", "kind": "list", "items": "integer"}),
    ];
    let twins: Vec<Value> = fields
        .iter()
        .filter(|f| TWINNED.contains(&f["name"].as_str().unwrap_or("")))
        .map(|f| {
            let mut f = f.clone();
            f["name"] = json!(format!("{}_ix", f["name"].as_str().unwrap_or("")));
            f["indexed"] = json!(true);
            f
        })
        .collect();
    fields.extend(twins);
    create_type(&t, json!({"name": "item", "fields": fields}));
    let recs = records(&t, "item");
    let data = [
        (
            "a",
            json!({"t": "apple", "i": 10, "n": 1.5, "b": true, "d": "2024-01-15",
                   "dt": "2024-01-15T10:00:00Z", "u": uuid_of('a'), "e": "ann@example.com",
                   "w": "https://example.com/a", "s": "red", "j": {"x": 1},
                   "l": ["x", "y"], "li": [1, 2]}),
        ),
        (
            "b",
            json!({"t": "Banana", "i": -5, "n": 2, "b": false, "d": "2023-12-31",
                   "dt": "2024-01-15T09:00:00-02:00", "u": uuid_of('b'), "e": "bob@example.org",
                   "w": "http://test.org/b", "s": "green", "j": [1, 2],
                   "l": ["y"], "li": [3]}),
        ),
        (
            "c",
            json!({"t": "banana_split", "i": 0, "n": -0.5, "b": true, "d": "2024-02-29",
                   "dt": "2023-06-01T00:00:00Z", "u": uuid_of('c'), "e": "Carl@Example.com",
                   "w": "https://example.com/c?q=1", "s": "blue", "j": "str",
                   "l": [], "li": [2, 20]}),
        ),
        (
            "d",
            json!({"t": "épée", "i": 10, "n": 1.5, "b": false, "d": "2024-01-15",
                   "dt": "2024-01-15T10:00:00.5Z", "u": uuid_of('d'), "e": "dan@example.com",
                   "w": "ftp://files.example.com/d", "s": "red", "j": {"x": 1, "y": [true]},
                   "l": ["Y", "x"], "li": [-1]}),
        ),
        (
            "e",
            json!({"t": "", "i": i64::MAX, "n": 1e300, "d": "1999-01-01",
                   "dt": "1999-12-31T23:59:59.999999Z", "e": "eve@example.com", "j": 1.0,
                   "l": ["x"]}),
        ),
        ("f", json!({})),
    ];
    let mut ids = BTreeMap::new();
    for (label, v) in data {
        let Value::Object(mut m) = v else {
            unreachable!("fixture rows are objects")
        };
        for f in TWINNED {
            if let Some(x) = m.get(f).cloned() {
                m.insert(format!("{f}_ix"), x);
            }
        }
        m.insert("k".into(), json!(label));
        let r = create(&recs, Value::Object(m));
        ids.insert(label.to_string(), r.id);
    }
    Items { t, recs, ids }
}

impl Items {
    fn label(&self, r: &Record) -> String {
        r.data
            .get("k")
            .and_then(Value::as_str)
            .unwrap_or_else(|| panic!("record without a label: {r:?}"))
            .to_string()
    }

    fn matching(&self, recs: &Records, filter: &Value) -> BTreeSet<String> {
        let q = query(json!({"filter": filter, "limit": 1000}));
        let page = must(recs.query(&q), &format!("query with filter {filter}"));
        assert!(
            page.next_cursor.is_none(),
            "a small result has no next page"
        );
        let labels: Vec<String> = page.items.iter().map(|r| self.label(r)).collect();
        let set: BTreeSet<String> = labels.iter().cloned().collect();
        assert_eq!(
            set.len(),
            labels.len(),
            "filter {filter} returned a record twice"
        );
        set
    }

    /// `expected` is a space-separated list of labels.
    fn expect(&self, filter: Value, expected: &str) {
        let want: BTreeSet<String> = expected.split_whitespace().map(String::from).collect();
        assert_eq!(
            self.matching(&self.recs, &filter),
            want,
            "filter {filter} matched the wrong records"
        );
    }

    /// Runs `(op, value, expected)` on `field` and on its indexed twin.
    fn cases(&self, field: &str, cases: &[(&str, Value, &str)]) {
        let twin = format!("{field}_ix");
        let mut fields = vec![field.to_string()];
        if self.recs.entity_type().field(&twin).is_some() {
            fields.push(twin);
        }
        for f in &fields {
            for (op, value, expected) in cases {
                self.expect(json!({"field": f, "op": op, "value": value}), expected);
                // Two-valued logic: `not` is the exact complement.
                let all: BTreeSet<&str> = self.ids.keys().map(String::as_str).collect();
                let inside: BTreeSet<&str> = expected.split_whitespace().collect();
                let complement: Vec<&str> = all.difference(&inside).copied().collect();
                self.expect(
                    json!({"not": {"field": f, "op": op, "value": value}}),
                    &complement.join(" "),
                );
            }
        }
    }
}

/// Text: comparisons are byte-wise (C collation) and case-sensitive; `contains`,
/// `starts_with`, `ends_with` take `%`, `_` and `\` literally; missing values match no
/// comparison (not even `ne`/`not_in`).
pub fn filter_text(store: &Store) {
    let fx = items_fixture(store);
    // t: a "apple", b "Banana", c "banana_split", d "épée", e "", f missing.
    // Byte order: e "" < b "Banana" < a "apple" < c "banana_split" < d "épée".
    fx.cases(
        "t",
        &[
            ("eq", json!("apple"), "a"),
            ("eq", json!("Apple"), ""),
            ("eq", json!(""), "e"),
            ("eq", json!("épée"), "d"),
            ("ne", json!("apple"), "b c d e"),
            ("lt", json!("apple"), "b e"),
            ("lte", json!("apple"), "a b e"),
            ("gt", json!("apple"), "c d"),
            ("gte", json!("banana_split"), "c d"),
            ("gt", json!("z"), "d"),
            ("lt", json!("a"), "b e"),
            ("lt", json!("B"), "e"),
            ("gte", json!(""), "a b c d e"),
            ("in", json!(["apple", "Banana", "nope"]), "a b"),
            ("in", json!([""]), "e"),
            ("not_in", json!(["apple", "épée"]), "b c e"),
            ("contains", json!("an"), "b c"),
            ("contains", json!("AN"), ""),
            ("contains", json!("pé"), "d"),
            ("contains", json!("_"), "c"),
            ("contains", json!("a_s"), "c"),
            ("contains", json!("n_n"), ""),
            ("contains", json!("%"), ""),
            ("contains", json!("\\"), ""),
            ("starts_with", json!("b"), "c"),
            ("starts_with", json!("B"), "b"),
            ("starts_with", json!("banana_"), "c"),
            ("starts_with", json!("banana%"), ""),
            ("starts_with", json!("_"), ""),
            ("starts_with", json!("%"), ""),
            ("starts_with", json!("é"), "d"),
            ("starts_with", json!("apple"), "a"),
            ("starts_with", json!("apples"), ""),
            ("ends_with", json!("a"), "b"),
            ("ends_with", json!("e"), "a d"),
            ("ends_with", json!("ée"), "d"),
            ("ends_with", json!("_split"), "c"),
            ("ends_with", json!("A"), ""),
            ("ends_with", json!("_"), ""),
            ("is_null", json!(true), "f"),
            ("is_null", json!(false), "a b c d e"),
            ("exists", json!(true), "a b c d e"),
            ("exists", json!(false), "f"),
        ],
    );
}

/// Integers compare exactly as 64-bit integers (not as doubles).
pub fn filter_integer(store: &Store) {
    let fx = items_fixture(store);
    // i: a 10, b -5, c 0, d 10, e i64::MAX, f missing.
    fx.cases(
        "i",
        &[
            ("eq", json!(10), "a d"),
            ("eq", json!(10.0), "a d"),
            ("eq", json!(11), ""),
            ("ne", json!(10), "b c e"),
            ("lt", json!(0), "b"),
            ("lte", json!(0), "b c"),
            ("gt", json!(10), "e"),
            ("gte", json!(10), "a d e"),
            ("gt", json!(-6), "a b c d e"),
            ("eq", json!(i64::MAX), "e"),
            ("eq", json!(i64::MAX - 1), ""),
            ("gt", json!(i64::MAX - 1), "e"),
            ("lt", json!(i64::MAX), "a b c d"),
            ("gte", json!(i64::MIN), "a b c d e"),
            ("in", json!([0, 10, 99]), "a c d"),
            ("not_in", json!([10]), "b c e"),
            ("not_in", json!([-5, 0]), "a d e"),
            ("is_null", json!(true), "f"),
            ("exists", json!(true), "a b c d e"),
            ("exists", json!(false), "f"),
        ],
    );
}

/// Numbers compare as doubles; integer operands are accepted.
pub fn filter_number(store: &Store) {
    let fx = items_fixture(store);
    // n: a 1.5, b 2, c -0.5, d 1.5, e 1e300, f missing.
    fx.cases(
        "n",
        &[
            ("eq", json!(1.5), "a d"),
            ("eq", json!(2), "b"),
            ("eq", json!(2.0), "b"),
            ("eq", json!(-0.5), "c"),
            ("ne", json!(1.5), "b c e"),
            ("lt", json!(0), "c"),
            ("lt", json!(1.5), "c"),
            ("lte", json!(1.5), "a c d"),
            ("gt", json!(1.5), "b e"),
            ("gte", json!(2), "b e"),
            ("gt", json!(1e299), "e"),
            ("in", json!([2, -0.5]), "b c"),
            ("not_in", json!([1.5]), "b c e"),
            ("is_null", json!(true), "f"),
            ("exists", json!(false), "f"),
        ],
    );
}

/// Booleans: eq, ne, in, not_in, is_null, exists.
pub fn filter_boolean(store: &Store) {
    let fx = items_fixture(store);
    // b: a true, b false, c true, d false, e and f missing.
    fx.cases(
        "b",
        &[
            ("eq", json!(true), "a c"),
            ("eq", json!(false), "b d"),
            ("ne", json!(true), "b d"),
            ("ne", json!(false), "a c"),
            ("in", json!([true]), "a c"),
            ("in", json!([true, false]), "a b c d"),
            ("not_in", json!([true]), "b d"),
            ("is_null", json!(true), "e f"),
            ("is_null", json!(false), "a b c d"),
            ("exists", json!(true), "a b c d"),
            ("exists", json!(false), "e f"),
        ],
    );
}

/// Dates compare as calendar dates.
pub fn filter_date(store: &Store) {
    let fx = items_fixture(store);
    // d: a 2024-01-15, b 2023-12-31, c 2024-02-29, d 2024-01-15, e 1999-01-01, f missing.
    fx.cases(
        "d",
        &[
            ("eq", json!("2024-01-15"), "a d"),
            ("ne", json!("2024-01-15"), "b c e"),
            ("lt", json!("2024-01-15"), "b e"),
            ("lte", json!("2024-01-15"), "a b d e"),
            ("gt", json!("2024-01-15"), "c"),
            ("gte", json!("2024-01-01"), "a c d"),
            ("gt", json!("1999-01-01"), "a b c d"),
            ("in", json!(["2023-12-31", "1999-01-01"]), "b e"),
            ("not_in", json!(["2024-01-15"]), "b c e"),
            ("is_null", json!(true), "f"),
            ("exists", json!(true), "a b c d e"),
        ],
    );
}

/// Datetimes compare as instants, whatever offset they were written with, to the
/// microsecond.
pub fn filter_datetime(store: &Store) {
    let fx = items_fixture(store);
    // dt: a 2024-01-15T10:00Z, b 11:00Z (written 09:00-02:00), c 2023-06-01,
    // d 10:00:00.5Z, e 1999-12-31T23:59:59.999999Z, f missing. Order: e c a d b.
    fx.cases(
        "dt",
        &[
            ("eq", json!("2024-01-15T10:00:00Z"), "a"),
            ("eq", json!("2024-01-15T12:00:00+02:00"), "a"),
            ("eq", json!("2024-01-15T11:00:00Z"), "b"),
            ("eq", json!("2024-01-15T09:00:00-02:00"), "b"),
            ("ne", json!("2024-01-15T10:00:00Z"), "b c d e"),
            ("lt", json!("2024-01-15T10:00:00.5Z"), "a c e"),
            ("lte", json!("2024-01-15T10:00:00.500Z"), "a c d e"),
            ("gt", json!("2024-01-15T10:00:00Z"), "b d"),
            ("gte", json!("2024-01-15T10:00:00Z"), "a b d"),
            ("gt", json!("2024-01-15T10:30:00Z"), "b"),
            ("lt", json!("2024-01-15T10:30:00+00:00"), "a c d e"),
            ("eq", json!("1999-12-31T23:59:59.999999Z"), "e"),
            ("gt", json!("1999-12-31T23:59:59.999998Z"), "a b c d e"),
            ("lt", json!("2000-01-01T00:00:00Z"), "e"),
            (
                "in",
                json!(["2024-01-15T10:00:00Z", "2023-06-01T02:00:00+02:00"]),
                "a c",
            ),
            (
                "in",
                json!(["2024-01-15T10:00:00Z", "2023-06-01T00:00:00Z"]),
                "a c",
            ),
            ("not_in", json!(["2024-01-15T11:00:00Z"]), "a c d e"),
            ("is_null", json!(true), "f"),
            ("exists", json!(true), "a b c d e"),
        ],
    );
}

/// Uuids compare as uuids (case-insensitive input, byte order).
pub fn filter_uuid(store: &Store) {
    let fx = items_fixture(store);
    let (a, b, c, d) = (uuid_of('a'), uuid_of('b'), uuid_of('c'), uuid_of('d'));
    fx.cases(
        "u",
        &[
            ("eq", json!(a), "a"),
            ("eq", json!(a.to_uppercase()), "a"),
            ("eq", json!(Uuid::new_v4()), ""),
            ("ne", json!(a), "b c d"),
            ("lt", json!(c), "a b"),
            ("lte", json!(c), "a b c"),
            ("gt", json!(b), "c d"),
            ("gte", json!(b), "b c d"),
            ("in", json!([a, d, Uuid::new_v4()]), "a d"),
            ("not_in", json!([a]), "b c d"),
            ("is_null", json!(true), "e f"),
            ("exists", json!(true), "a b c d"),
        ],
    );
}

/// E-mail fields compare and match as text.
pub fn filter_email(store: &Store) {
    let fx = items_fixture(store);
    // e: a ann@example.com, b bob@example.org, c Carl@Example.com, d dan@example.com,
    // e eve@example.com, f missing.
    fx.cases(
        "e",
        &[
            ("eq", json!("ann@example.com"), "a"),
            ("eq", json!("ANN@example.com"), ""),
            ("ne", json!("ann@example.com"), "b c d e"),
            ("lt", json!("ann@example.com"), "c"),
            ("lte", json!("bob@example.org"), "a b c"),
            ("gt", json!("dan@example.com"), "e"),
            ("gte", json!("dan@example.com"), "d e"),
            ("in", json!(["bob@example.org", "Carl@Example.com"]), "b c"),
            ("not_in", json!(["ann@example.com"]), "b c d e"),
            ("contains", json!("example"), "a b d e"),
            ("contains", json!("Example"), "c"),
            ("starts_with", json!("C"), "c"),
            ("starts_with", json!("c"), ""),
            ("ends_with", json!("@example.com"), "a d e"),
            ("ends_with", json!(".org"), "b"),
            ("is_null", json!(true), "f"),
            ("exists", json!(true), "a b c d e"),
        ],
    );
}

/// URL fields compare and match as text.
pub fn filter_url(store: &Store) {
    let fx = items_fixture(store);
    // w: a https://example.com/a, b http://test.org/b, c https://example.com/c?q=1,
    // d ftp://files.example.com/d, e and f missing.
    fx.cases(
        "w",
        &[
            ("eq", json!("http://test.org/b"), "b"),
            ("ne", json!("http://test.org/b"), "a c d"),
            ("lt", json!("h"), "d"),
            ("gte", json!("https"), "a c"),
            ("gt", json!("http://"), "a b c"),
            ("lte", json!("http://test.org/b"), "b d"),
            (
                "in",
                json!(["https://example.com/a", "ftp://files.example.com/d"]),
                "a d",
            ),
            ("not_in", json!(["https://example.com/a"]), "b c d"),
            ("starts_with", json!("https://"), "a c"),
            ("contains", json!("example.com"), "a c d"),
            ("contains", json!("?q="), "c"),
            ("ends_with", json!("/b"), "b"),
            ("is_null", json!(true), "e f"),
            ("exists", json!(true), "a b c d"),
        ],
    );
}

/// Enums: eq, ne, in, not_in, is_null, exists.
pub fn filter_enum(store: &Store) {
    let fx = items_fixture(store);
    // s: a red, b green, c blue, d red, e and f missing.
    fx.cases(
        "s",
        &[
            ("eq", json!("red"), "a d"),
            ("ne", json!("red"), "b c"),
            ("in", json!(["green", "blue"]), "b c"),
            ("not_in", json!(["red"]), "b c"),
            ("not_in", json!(["red", "green", "blue"]), ""),
            ("is_null", json!(true), "e f"),
            ("exists", json!(true), "a b c d"),
            ("exists", json!(false), "e f"),
        ],
    );
}

/// Json fields: structural equality (numbers by value, key order irrelevant, array
/// order relevant), ne, is_null, exists.
pub fn filter_json(store: &Store) {
    let fx = items_fixture(store);
    // j: a {"x":1}, b [1,2], c "str", d {"x":1,"y":[true]}, e 1.0, f missing.
    fx.cases(
        "j",
        &[
            ("eq", json!({"x": 1}), "a"),
            ("eq", json!({"x": 1.0}), "a"),
            ("eq", json!({"y": [true], "x": 1}), "d"),
            ("eq", json!([1, 2]), "b"),
            ("eq", json!([2, 1]), ""),
            ("eq", json!("str"), "c"),
            ("eq", json!(1), "e"),
            ("eq", json!(1.0), "e"),
            ("eq", json!(true), ""),
            ("eq", json!(null), ""),
            ("ne", json!({"x": 1}), "b c d e"),
            ("ne", json!("str"), "a b d e"),
            ("ne", json!(null), "a b c d e"),
            ("is_null", json!(true), "f"),
            ("exists", json!(true), "a b c d e"),
        ],
    );
}

/// List fields: contains (an element), is_null, exists (an empty list is present).
pub fn filter_list(store: &Store) {
    let fx = items_fixture(store);
    // l: a [x,y], b [y], c [], d [Y,x], e [x], f missing.
    fx.cases(
        "l",
        &[
            ("contains", json!("x"), "a d e"),
            ("contains", json!("y"), "a b"),
            ("contains", json!("Y"), "d"),
            ("contains", json!("z"), ""),
            ("is_null", json!(true), "f"),
            ("is_null", json!(false), "a b c d e"),
            ("exists", json!(true), "a b c d e"),
        ],
    );
    // li: a [1,2], b [3], c [2,20], d [-1], e and f missing.
    fx.cases(
        "li",
        &[
            ("contains", json!(2), "a c"),
            ("contains", json!(2.0), "a c"),
            ("contains", json!(20), "c"),
            ("contains", json!(-1), "d"),
            ("contains", json!(0), ""),
            ("is_null", json!(true), "e f"),
            ("exists", json!(false), "e f"),
        ],
    );
}

/// System fields `id`, `created_at`, `updated_at`: every comparison, expected sets
/// computed from the stored records.
pub fn filter_system_fields(store: &Store) {
    let fx = items_fixture(store);
    let recs = &fx.recs;
    must(recs.patch(fx.ids["b"], &json!({"i": 1}), None), "patch b");
    must(recs.patch(fx.ids["d"], &json!({"i": 2}), None), "patch d");
    let rows = all_records(recs);
    assert_eq!(rows.len(), 6);
    type Get = fn(&Record) -> String;
    let sys: [(&str, Get); 3] = [
        ("id", |r| r.id.to_string()),
        ("created_at", |r| rfc3339(r.created_at)),
        ("updated_at", |r| rfc3339(r.updated_at)),
    ];
    for (field, get) in sys {
        for pivot in &rows {
            let pv = get(pivot);
            for op in ["eq", "ne", "lt", "lte", "gt", "gte"] {
                let want: Vec<String> = rows
                    .iter()
                    .filter(|r| {
                        let o = match field {
                            "id" => r.id.cmp(&pivot.id),
                            "created_at" => r.created_at.cmp(&pivot.created_at),
                            _ => r.updated_at.cmp(&pivot.updated_at),
                        };
                        match op {
                            "eq" => o == Ordering::Equal,
                            "ne" => o != Ordering::Equal,
                            "lt" => o == Ordering::Less,
                            "lte" => o != Ordering::Greater,
                            "gt" => o == Ordering::Greater,
                            _ => o != Ordering::Less,
                        }
                    })
                    .map(|r| fx.label(r))
                    .collect();
                fx.expect(
                    json!({"field": field, "op": op, "value": pv}),
                    &want.join(" "),
                );
            }
        }
        let (a, c) = (&rows[0], &rows[2]);
        let want_in: Vec<String> = rows
            .iter()
            .filter(|r| get(r) == get(a) || get(r) == get(c))
            .map(|r| fx.label(r))
            .collect();
        fx.expect(
            json!({"field": field, "op": "in", "value": [get(a), get(c)]}),
            &want_in.join(" "),
        );
        let want_out: Vec<String> = rows
            .iter()
            .filter(|r| get(r) != get(a))
            .map(|r| fx.label(r))
            .collect();
        fx.expect(
            json!({"field": field, "op": "not_in", "value": [get(a)]}),
            &want_out.join(" "),
        );
    }
    // The same instant written with another offset, and an upper-case id.
    let a = rows.iter().find(|r| fx.label(r) == "a").expect("record a");
    let plus_one = a
        .created_at
        .with_timezone(&FixedOffset::east_opt(3600).expect("offset"))
        .to_rfc3339_opts(SecondsFormat::AutoSi, false);
    let same: Vec<String> = rows
        .iter()
        .filter(|r| r.created_at == a.created_at)
        .map(|r| fx.label(r))
        .collect();
    fx.expect(
        json!({"field": "created_at", "op": "eq", "value": plus_one}),
        &same.join(" "),
    );
    fx.expect(
        json!({"field": "id", "op": "eq", "value": a.id.to_string().to_uppercase()}),
        "a",
    );
    let patched: Vec<String> = rows
        .iter()
        .filter(|r| r.updated_at > r.created_at)
        .map(|r| fx.label(r))
        .collect();
    assert!(
        patched.contains(&"b".to_string()) && patched.contains(&"d".to_string()),
        "patched records have updated_at after created_at"
    );
}

/// `and`/`or`/`not` nesting, empty lists, many clauses, long `in` lists.
pub fn filter_logic(store: &Store) {
    let fx = items_fixture(store);
    let p = |f: &str, op: &str, v: Value| json!({"field": f, "op": op, "value": v});
    fx.expect(json!({"and": []}), "a b c d e f");
    fx.expect(json!({"or": []}), "");
    fx.expect(json!({"not": {"or": []}}), "a b c d e f");
    fx.expect(
        json!({"and": [p("i", "gte", json!(0)), p("b", "eq", json!(true))]}),
        "a c",
    );
    fx.expect(
        json!({"or": [p("s_ix", "eq", json!("green")), p("t", "starts_with", json!("é"))]}),
        "b d",
    );
    fx.expect(
        json!({"not": {"or": [p("s", "eq", json!("green")), p("t_ix", "starts_with", json!("é"))]}}),
        "a c e f",
    );
    fx.expect(
        json!({"and": [p("i", "exists", json!(true)),
                       {"or": [p("n", "gt", json!(1.6)), p("d", "eq", json!("2024-02-29"))]}]}),
        "b c e",
    );
    fx.expect(json!({"not": {"not": p("t", "eq", json!("apple"))}}), "a");
    fx.expect(
        json!({"not": {"and": [p("b", "eq", json!(true)), p("i", "gt", json!(0))]}}),
        "b c d e f",
    );
    fx.expect(
        json!({"or": [{"and": [p("s", "eq", json!("red")), p("b_ix", "eq", json!(false))]},
                      p("i_ix", "lt", json!(0))]}),
        "b d",
    );
    fx.expect(json!({"not": p("i", "gt", json!(0))}), "b c f");
    fx.expect(
        json!({"or": [p("i", "is_null", json!(true)), p("i", "lt", json!(0))]}),
        "b f",
    );
    fx.expect(
        json!({"and": [p("l", "contains", json!("x")), {"not": p("j", "eq", json!({"x": 1}))}]}),
        "d e",
    );
    // Nesting close to the limit.
    let mut deep = p("t", "eq", json!("apple"));
    for _ in 0..(MAX_DEPTH - 2) {
        deep = json!({"not": deep});
    }
    fx.expect(deep, ["a", "b c d e f"][MAX_DEPTH % 2]);
    // Many clauses and long lists.
    let many: Vec<Value> = (0..MAX_CLAUSES)
        .map(|i| p("k", "ne", json!(format!("zz{i}"))))
        .collect();
    fx.expect(json!({"and": many}), "a b c d e f");
    let values: Vec<i64> = (0..crate::filter::MAX_IN_VALUES as i64).collect();
    fx.expect(p("i", "in", json!(values)), "a c d");
    fx.expect(p("i_ix", "not_in", json!(values)), "b e");
}

/// `related` predicates: direction out and in, with and without `where`, nested, on
/// a self-relation, and under `not`.
pub fn filter_related(store: &Store) {
    let fx = items_fixture(store);
    let t = &fx.t;
    create_type(
        t,
        json!({"name": "tag", "fields": [
            {"name": "k", "kind": "text", "required": true},
            {"name": "name", "kind": "text"},
            {"name": "name_ix", "kind": "text", "indexed": true}
        ]}),
    );
    create_relation_type(t, "owns", "item", "tag", "many_to_many", "cascade");
    create_relation_type(t, "likes", "item", "item", "many_to_many", "cascade");
    let tags = records(t, "tag");
    let hot = create(&tags, json!({"k": "hot", "name": "hot", "name_ix": "hot"}));
    let cold = create(
        &tags,
        json!({"k": "cold", "name": "cold", "name_ix": "cold"}),
    );
    create(&tags, json!({"k": "lonely"}));
    let id = |l: &str| fx.ids[l];
    link(t, "owns", id("a"), hot.id);
    link(t, "owns", id("b"), hot.id);
    link(t, "owns", id("c"), cold.id);
    link(t, "likes", id("a"), id("b"));
    link(t, "likes", id("b"), id("c"));
    let rel = |ty: &str, dir: &str, w: Option<Value>| match w {
        Some(w) => json!({"related": {"type": ty, "direction": dir, "where": w}}),
        None => json!({"related": {"type": ty, "direction": dir}}),
    };
    let p = |f: &str, op: &str, v: Value| json!({"field": f, "op": op, "value": v});
    fx.expect(rel("owns", "out", None), "a b c");
    fx.expect(json!({"related": {"type": "owns"}}), "a b c");
    fx.expect(
        rel("owns", "out", Some(p("name", "eq", json!("hot")))),
        "a b",
    );
    fx.expect(
        rel("owns", "out", Some(p("name_ix", "eq", json!("cold")))),
        "c",
    );
    fx.expect(rel("owns", "out", Some(p("name", "eq", json!("none")))), "");
    fx.expect(json!({"not": rel("owns", "out", None)}), "d e f");
    fx.expect(rel("likes", "out", None), "a b");
    fx.expect(rel("likes", "in", None), "b c");
    fx.expect(
        rel("likes", "out", Some(p("t", "eq", json!("Banana")))),
        "a",
    );
    fx.expect(rel("likes", "in", Some(p("t", "eq", json!("Banana")))), "c");
    fx.expect(
        json!({"and": [rel("likes", "in", None), rel("likes", "out", None)]}),
        "b",
    );
    fx.expect(
        rel(
            "likes",
            "out",
            Some(rel("owns", "out", Some(p("name", "eq", json!("hot"))))),
        ),
        "a",
    );
    fx.expect(
        json!({"or": [rel("owns", "out", Some(p("name", "eq", json!("cold")))),
                      p("t", "eq", json!("épée"))]}),
        "c d",
    );
    // From the other side.
    let tag_labels = |filter: Value| -> BTreeSet<String> {
        let page = must(
            tags.query(&query(json!({"filter": filter, "limit": 100}))),
            &format!("query tags with {filter}"),
        );
        page.items
            .iter()
            .map(|r| r.data["k"].as_str().unwrap_or("").to_string())
            .collect()
    };
    let set = |s: &str| -> BTreeSet<String> { s.split_whitespace().map(String::from).collect() };
    assert_eq!(tag_labels(rel("owns", "in", None)), set("hot cold"));
    assert_eq!(
        tag_labels(rel("owns", "in", Some(p("i", "eq", json!(0))))),
        set("cold")
    );
    assert_eq!(
        tag_labels(rel("owns", "in", Some(p("t_ix", "eq", json!("apple"))))),
        set("hot")
    );
    assert_eq!(
        tag_labels(rel(
            "owns",
            "in",
            Some(rel("likes", "in", Some(p("t", "eq", json!("apple")))))
        )),
        set("hot")
    );
    assert_eq!(
        tag_labels(json!({"not": rel("owns", "in", None)})),
        set("lonely")
    );
}

// ---------------------------------------------------------------------------------
// Invalid filters and queries
// ---------------------------------------------------------------------------------

fn query_with_filter(f: Filter) -> Query {
    Query {
        filter: Some(f),
        ..Query::default()
    }
}

/// Filters that do not fit the entity type are InvalidFilter errors with the path of
/// the offending node, from `Records::query`; malformed JSON filters fail to parse.
pub fn invalid_filters(store: &Store) {
    let fx = items_fixture(store);
    create_relation_type(&fx.t, "likes", "item", "item", "many_to_many", "cascade");
    create_type(
        &fx.t,
        json!({"name": "tag", "fields": [{"name": "x", "kind": "text"}]}),
    );
    create_relation_type(&fx.t, "owns", "item", "tag", "many_to_many", "cascade");
    let p = |f: &str, op: &str, v: Value| json!({"field": f, "op": op, "value": v});
    let long = "x".repeat(crate::filter::check::MAX_TEXT_OPERAND + 1);
    let too_many_values: Vec<i64> = (0..=crate::filter::MAX_IN_VALUES as i64).collect();
    let cases: Vec<(Value, &str)> = vec![
        (p("nope", "eq", json!(1)), "$.field"),
        (p("b", "lt", json!(true)), "$.op"),
        (p("b_ix", "gte", json!(false)), "$.op"),
        (p("i", "eq", json!("x")), "$.value"),
        (p("i", "eq", json!(1.5)), "$.value"),
        (p("i", "eq", json!(1e30)), "$.value"),
        (p("i", "eq", json!(null)), "$.value"),
        (p("i", "in", json!([])), "$.value"),
        (p("i", "in", json!([1, "x"])), "$.value[1]"),
        (p("i", "in", json!(5)), "$.value"),
        (p("i_ix", "not_in", json!(too_many_values)), "$.value"),
        (p("i", "contains", json!(1)), "$.op"),
        (p("i", "starts_with", json!("1")), "$.op"),
        (p("n", "eq", json!("1.5")), "$.value"),
        (p("b", "eq", json!("true")), "$.value"),
        (p("t", "eq", json!(1)), "$.value"),
        (p("t", "contains", json!("")), "$.value"),
        (p("t", "starts_with", json!(5)), "$.value"),
        (p("t", "eq", json!(long)), "$.value"),
        (p("t", "eq", json!("a\u{0}b")), "$.value"),
        (p("t", "is_null", json!("yes")), "$.value"),
        (p("t", "exists", json!(1)), "$.value"),
        (p("d", "eq", json!("2024-02-30")), "$.value"),
        (p("d_ix", "gt", json!("yesterday")), "$.value"),
        (p("dt", "eq", json!("2024-01-01")), "$.value"),
        (p("u", "eq", json!("nope")), "$.value"),
        (p("u", "starts_with", json!("0")), "$.op"),
        (p("s", "eq", json!("purple")), "$.value"),
        (p("s", "in", json!(["red", "purple"])), "$.value[1]"),
        (p("s", "lt", json!("red")), "$.op"),
        (p("s", "contains", json!("re")), "$.op"),
        (p("j", "lt", json!(1)), "$.op"),
        (p("j", "in", json!([1])), "$.op"),
        (p("j", "contains", json!(1)), "$.op"),
        (p("j", "eq", json!({"a": "\u{0}"})), "$.value"),
        (p("l", "eq", json!("x")), "$.op"),
        (p("l", "in", json!(["x"])), "$.op"),
        (p("l", "contains", json!(1)), "$.value"),
        (p("li", "contains", json!("x")), "$.value"),
        (p("id", "is_null", json!(true)), "$.op"),
        (p("id", "exists", json!(true)), "$.op"),
        (p("id", "eq", json!("nope")), "$.value"),
        (p("id", "contains", json!("0")), "$.op"),
        (p("created_at", "gt", json!("yesterday")), "$.value"),
        (p("updated_at", "in", json!([1])), "$.value[0]"),
        (
            json!({"and": [p("t", "eq", json!("a")), {"or": [p("nope", "eq", json!(1))]}]}),
            "$.and[1].or[0].field",
        ),
        (json!({"not": p("b", "gt", json!(true))}), "$.not.op"),
        (
            json!({"or": [{"and": []}, {"not": {"not": p("i", "eq", json!("x"))}}]}),
            "$.or[1].not.not.value",
        ),
        (json!({"related": {"type": "nope"}}), "$.related.type"),
        (
            json!({"related": {"type": "owns", "direction": "in"}}),
            "$.related.direction",
        ),
        (
            json!({"related": {"type": "owns", "where": p("t", "eq", json!("x"))}}),
            "$.related.where.field",
        ),
        (
            json!({"related": {"type": "likes", "direction": "in", "where": p("i", "lt", json!("x"))}}),
            "$.related.where.value",
        ),
    ];
    for (filter, path) in &cases {
        let f = Filter::from_json(filter)
            .unwrap_or_else(|e| panic!("{filter} should parse and fail the check: {e}"));
        expect_invalid_filter(
            fx.recs.query(&query_with_filter(f)),
            &format!("query with filter {filter}"),
            path,
        );
    }

    // Bounds hold for filters built in code too, not only for parsed JSON.
    let mut deep = Filter::Pred {
        field: "t".into(),
        op: Op::Eq,
        value: json!("apple"),
    };
    for _ in 0..MAX_DEPTH + 5 {
        deep = Filter::Not(Box::new(deep));
    }
    match fail(
        fx.recs.query(&query_with_filter(deep)),
        "a filter nested too deep",
    ) {
        Error::InvalidFilter { path, .. } => {
            assert!(
                path.starts_with("$.not"),
                "path of a too deep filter: {path}"
            )
        }
        e => panic!("a filter nested too deep: expected InvalidFilter, got {e:?}"),
    }
    let wide = Filter::And(
        (0..MAX_CLAUSES + 10)
            .map(|i| Filter::Pred {
                field: "i".into(),
                op: Op::Ne,
                value: json!(i),
            })
            .collect(),
    );
    expect_invalid_filter(
        fx.recs.query(&query_with_filter(wide)),
        "a filter with too many clauses",
        &format!("$.and[{MAX_CLAUSES}]"),
    );

    // Malformed JSON never becomes a filter.
    let mut deep_json = p("t", "eq", json!("a"));
    for _ in 0..MAX_DEPTH + 5 {
        deep_json = json!({"not": deep_json});
    }
    let wide_json =
        json!({"or": (0..MAX_CLAUSES + 1).map(|i| p("i", "eq", json!(i))).collect::<Vec<_>>()});
    let malformed: Vec<(Value, Option<&str>)> = vec![
        (p("t", "like", json!("a")), Some("$.op")),
        (json!({"field": "t", "op": "eq"}), Some("$.value")),
        (json!({"field": "t", "value": 1}), Some("$.op")),
        (json!({"field": 1, "op": "eq", "value": 1}), Some("$.field")),
        (
            json!({"field": "t", "op": "eq", "value": 1, "x": 1}),
            Some("$"),
        ),
        (json!([]), Some("$")),
        (json!("t = 1"), Some("$")),
        (json!({}), Some("$")),
        (json!({"and": {}}), Some("$.and")),
        (json!({"and": [], "or": []}), Some("$")),
        (json!({"and": [1]}), Some("$.and[0]")),
        (
            json!({"related": {"type": "likes", "direction": "both"}}),
            Some("$.related.direction"),
        ),
        (
            json!({"related": {"type": "likes", "x": 1}}),
            Some("$.related"),
        ),
        (json!({"related": {}}), Some("$.related.type")),
        (deep_json, None),
        (wide_json, Some("$.or[256]")),
    ];
    for (v, path) in &malformed {
        match Filter::from_json(v) {
            Err(Error::InvalidFilter { path: p, .. }) => {
                if let Some(path) = path {
                    assert_eq!(&p, path, "parse {v}: InvalidFilter at the wrong path");
                }
            }
            other => panic!("parse {v}: expected InvalidFilter, got {other:?}"),
        }
        assert!(
            serde_json::from_value::<Query>(json!({"filter": v})).is_err(),
            "a query with filter {v} must not deserialise"
        );
    }
}

/// Sort, limit and field selection errors are InvalidQuery with their path.
pub fn invalid_queries(store: &Store) {
    let fx = items_fixture(store);
    let sort = |keys: Value| json!({"sort": keys});
    let nine: Vec<Value> = ["t", "i", "n", "b", "d", "dt", "u", "e", "w"]
        .iter()
        .map(|f| json!({"field": f}))
        .collect();
    let cases: Vec<(Value, &str)> = vec![
        (sort(json!([{"field": "nope"}])), "sort[0]"),
        (sort(json!([{"field": "t"}, {"field": "j"}])), "sort[1]"),
        (sort(json!([{"field": "l", "desc": true}])), "sort[0]"),
        (
            sort(json!([{"field": "t"}, {"field": "t", "desc": true}])),
            "sort[1]",
        ),
        (sort(json!([{"field": "id"}, {"field": "id"}])), "sort[1]"),
        (sort(json!(nine)), "sort"),
        (json!({"limit": 0}), "limit"),
        (json!({"limit": 1001}), "limit"),
        (json!({"fields": ["t", "nope"]}), "fields[1]"),
        (json!({"fields": ["id"]}), "fields[0]"),
    ];
    for (q, path) in &cases {
        expect_invalid_query(
            fx.recs.query(&query(q.clone())),
            &format!("query {q}"),
            path,
        );
    }
    for q in [
        json!({"limit": 1}),
        json!({"limit": 1000}),
        json!({"sort": [{"field": "u"}, {"field": "s", "desc": true}]}),
        json!({"sort": [{"field": "updated_at", "desc": true}, {"field": "id", "desc": true}]}),
        json!({"fields": []}),
    ] {
        must(fx.recs.query(&query(q.clone())), &format!("query {q}"));
    }
    expect_invalid_cursor(
        fx.recs.query(&query(json!({"cursor": "not-a-cursor"}))),
        "a garbage cursor",
    );
}

// ---------------------------------------------------------------------------------
// Sorting and keyset pagination
// ---------------------------------------------------------------------------------

/// Sortable fields of the `row` fixture: name and kind.
const ROW_FIELDS: [(&str, &str); 6] = [
    ("txt", "text"),
    ("int", "integer"),
    ("num", "number"),
    ("day", "date"),
    ("ts", "datetime"),
    ("flag", "boolean"),
];

const ROWS: usize = 260;

fn rows_fixture(store: &Store) -> (TenantScope, Records, Vec<Record>) {
    let cx = Ctx::new(store);
    let t = cx.admin();
    let mut fields = vec![json!({"name": "seq", "kind": "integer", "unique": true})];
    for (name, kind) in ROW_FIELDS {
        fields.push(json!({"name": name, "kind": kind}));
        fields.push(json!({"name": format!("{name}_ix"), "kind": kind, "indexed": true}));
    }
    create_type(&t, json!({"name": "row", "fields": fields}));
    let recs = records(&t, "row");
    let rows: Vec<Value> = (0..ROWS).map(row_data).collect();
    // Two batches, so that created_at has ties and also differs.
    let mut made = must(recs.create_many(&rows[..ROWS / 2]), "create rows");
    made.extend(must(recs.create_many(&rows[ROWS / 2..]), "create rows"));
    // Some updates, so that updated_at differs from created_at.
    for r in made
        .iter_mut()
        .filter(|r| r.data["seq"].as_i64().unwrap_or(0) % 17 == 0)
    {
        *r = must(recs.patch(r.id, &json!({}), None), "touch a row");
    }
    (t, recs, made)
}

fn row_data(i: usize) -> Value {
    let h = (i * 7919 + 13) % 1009;
    let mut m = Map::new();
    m.insert("seq".into(), json!(i));
    let mut put = |name: &str, v: Value| {
        m.insert(name.to_string(), v.clone());
        m.insert(format!("{name}_ix"), v);
    };
    if !h.is_multiple_of(9) {
        let texts = ["alpha", "Beta", "beta", "", "gamma", "Ärger", "alpha "];
        put("txt", json!(texts[h % 7]));
    }
    if !h.is_multiple_of(11) {
        put("int", json!((h % 13) as i64 - 6));
    }
    if h % 6 != 1 {
        // 4.575099017554074e-97 does not survive a JSON round trip unless parsing is
        // exact: it catches cursors that lose precision.
        put(
            "num",
            json!([-1.5, 4.575_099_017_554_074e-97, 0.25, 2.0, 1e10][h % 5]),
        );
    }
    if h % 5 != 2 {
        put("day", json!(format!("2024-01-0{}", 1 + h % 4)));
    }
    if h % 8 != 3 {
        let times = [
            "2024-03-01T12:00:00Z",
            "2024-03-01T14:00:00+02:00",
            "2024-03-01T12:00:00.000001Z",
            "2023-01-01T00:00:00Z",
        ];
        put("ts", json!(times[h % 4]));
    }
    if !h.is_multiple_of(3) {
        put("flag", json!(h.is_multiple_of(2)));
    }
    Value::Object(m)
}

/// A sort value computed independently of the library.
#[derive(Debug, Clone, PartialEq)]
enum SortVal {
    Text(String),
    Int(i64),
    Num(f64),
    Bool(bool),
    Date(NaiveDate),
    Time(DateTime<Utc>),
    Id(Uuid),
}

fn sort_val(r: &Record, field: &str) -> Option<SortVal> {
    match field {
        "id" => return Some(SortVal::Id(r.id)),
        "created_at" => return Some(SortVal::Time(r.created_at)),
        "updated_at" => return Some(SortVal::Time(r.updated_at)),
        _ => {}
    }
    typed_val(field, r.data.get(field)?)
}

/// `v` as a value of the kind of the fixture field `field` (see [`ROW_FIELDS`]).
fn typed_val(field: &str, v: &Value) -> Option<SortVal> {
    let base = field.trim_end_matches("_ix");
    let kind = ROW_FIELDS
        .iter()
        .find(|(n, _)| *n == base)
        .map(|(_, k)| *k)
        .unwrap_or_else(|| panic!("no sort kind for {field}"));
    Some(match kind {
        "text" => SortVal::Text(v.as_str()?.to_string()),
        "integer" => SortVal::Int(v.as_i64()?),
        "number" => SortVal::Num(v.as_f64()?),
        "boolean" => SortVal::Bool(v.as_bool()?),
        "date" => SortVal::Date(NaiveDate::parse_from_str(v.as_str()?, "%Y-%m-%d").ok()?),
        _ => SortVal::Time(
            DateTime::parse_from_rfc3339(v.as_str()?)
                .ok()?
                .with_timezone(&Utc),
        ),
    })
}

fn cmp_sort_val(a: &SortVal, b: &SortVal) -> Ordering {
    match (a, b) {
        (SortVal::Text(x), SortVal::Text(y)) => x.as_bytes().cmp(y.as_bytes()),
        (SortVal::Int(x), SortVal::Int(y)) => x.cmp(y),
        (SortVal::Num(x), SortVal::Num(y)) => x.partial_cmp(y).unwrap_or(Ordering::Equal),
        (SortVal::Bool(x), SortVal::Bool(y)) => x.cmp(y),
        (SortVal::Date(x), SortVal::Date(y)) => x.cmp(y),
        (SortVal::Time(x), SortVal::Time(y)) => x.cmp(y),
        (SortVal::Id(x), SortVal::Id(y)) => x.cmp(y),
        _ => panic!("comparing sort values of different kinds: {a:?} {b:?}"),
    }
}

/// The expected order: keys in turn, missing values last ascending (first descending),
/// then `id` (in the last key's direction) unless sorted on.
fn cmp_rows(keys: &[(String, bool)], a: &Record, b: &Record) -> Ordering {
    let mut keys: Vec<(String, bool)> = keys.to_vec();
    if keys.is_empty() {
        keys.push(("created_at".into(), false));
    }
    if !keys.iter().any(|(f, _)| f == "id") {
        let desc = keys.last().is_some_and(|(_, d)| *d);
        keys.push(("id".into(), desc));
    }
    for (field, desc) in &keys {
        let o = match (sort_val(a, field), sort_val(b, field)) {
            (None, None) => Ordering::Equal,
            (None, Some(_)) => Ordering::Greater,
            (Some(_), None) => Ordering::Less,
            (Some(x), Some(y)) => cmp_sort_val(&x, &y),
        };
        let o = if *desc { o.reverse() } else { o };
        if o != Ordering::Equal {
            return o;
        }
    }
    Ordering::Equal
}

/// Pages through `q` with `limit`, checking page shapes; returns every record seen.
fn page_through(recs: &Records, q: &Query, limit: usize, what: &str) -> Vec<Record> {
    let mut q = q.clone();
    q.limit = Some(limit);
    q.cursor = None;
    let mut out = Vec::new();
    for n in 0..10_000 {
        let page = must(recs.query(&q), what);
        assert!(
            page.items.len() <= limit,
            "{what}: a page is larger than the limit"
        );
        if page.next_cursor.is_some() {
            assert_eq!(
                page.items.len(),
                limit,
                "{what}: a page with a next cursor must be full"
            );
        }
        // The same page with the data as JSON text: the same records, and a cursor
        // that goes on the same way (every other page continues from it).
        let raw = must(recs.query_raw(&q), &format!("{what} (raw)"));
        let parsed: Vec<Record> = raw
            .items
            .iter()
            .map(|r| must(r.to_record(), "parse a raw record"))
            .collect();
        assert_eq!(parsed, page.items, "{what}: query_raw differs from query");
        assert_eq!(
            raw.next_cursor.is_some(),
            page.next_cursor.is_some(),
            "{what}: query_raw and query disagree on a next page"
        );
        out.extend(page.items);
        let next = if n % 2 == 1 {
            raw.next_cursor
        } else {
            page.next_cursor
        };
        match next {
            Some(c) => q.cursor = Some(c),
            None => return out,
        }
    }
    panic!("{what}: pagination does not end");
}

/// Sort keys (field, descending) and an optional filter.
type SortSpec = (Vec<(String, bool)>, Option<Value>);

/// Whether `r` passes `f`: one comparison (`eq`, `lt`, `lte`, `gt`, `gte`) or an `and`
/// of them, on a field that must be present, compared as the field's kind.
fn bounds_match(r: &Record, f: &Value) -> bool {
    if let Some(all) = f.get("and").and_then(Value::as_array) {
        return all.iter().all(|g| bounds_match(r, g));
    }
    let (Some(field), Some(op), Some(want)) =
        (f["field"].as_str(), f["op"].as_str(), f.get("value"))
    else {
        panic!("not a comparison: {f}");
    };
    let want = typed_val(field, want).unwrap_or_else(|| panic!("operand of {field}: {want}"));
    let Some(have) = sort_val(r, field) else {
        return false;
    };
    let ord = cmp_sort_val(&have, &want);
    match op {
        "eq" => ord == Ordering::Equal,
        "lt" => ord == Ordering::Less,
        "lte" => ord != Ordering::Greater,
        "gt" => ord == Ordering::Greater,
        "gte" => ord != Ordering::Less,
        _ => panic!("not a bound: {op}"),
    }
}

fn check_sorts(recs: &Records, rows: &[Record], suffix: &str, with_system: bool) {
    let k = |f: &str, desc: bool| {
        let f = if ["id", "created_at", "updated_at"].contains(&f) {
            f.to_string()
        } else {
            format!("{f}{suffix}")
        };
        (f, desc)
    };
    let mut specs: Vec<SortSpec> = vec![
        (vec![k("txt", false)], None),
        (vec![k("txt", true)], None),
        (vec![k("int", false)], None),
        (vec![k("int", true), k("txt", false)], None),
        (vec![k("num", false), k("day", true)], None),
        (vec![k("num", true)], None),
        (vec![k("flag", false), k("ts", true), k("int", false)], None),
        (vec![k("day", false), k("num", true), k("txt", true)], None),
        (vec![k("ts", false)], None),
        (vec![k("ts", true), k("flag", true)], None),
        (
            vec![
                k("flag", true),
                k("num", false),
                k("int", true),
                k("txt", false),
            ],
            None,
        ),
        (
            vec![k("int", false)],
            Some(json!({"field": format!("int{suffix}"), "op": "gte", "value": 0})),
        ),
        // Bounded by the one sort field (the PostgreSQL backend reads these off the
        // field's value index): each value class, both directions, an equality.
        (
            vec![k("num", true)],
            Some(json!({"field": format!("num{suffix}"), "op": "lt", "value": 1e12})),
        ),
        (
            vec![k("txt", false)],
            Some(json!({"field": format!("txt{suffix}"), "op": "gt", "value": ""})),
        ),
        (
            vec![k("int", true)],
            Some(
                json!({"and": [{"field": format!("int{suffix}"), "op": "gte", "value": -1_000_000_000_000_i64},
                                {"field": format!("int{suffix}"), "op": "lt", "value": 1_000_000_000_000_i64}]}),
            ),
        ),
        (
            vec![k("ts", true)],
            Some(
                json!({"field": format!("ts{suffix}"), "op": "gte", "value": "1970-01-01T00:00:00Z"}),
            ),
        ),
        (
            vec![k("day", false)],
            Some(json!({"field": format!("day{suffix}"), "op": "lte", "value": "2999-12-31"})),
        ),
        (
            vec![k("flag", true)],
            Some(json!({"field": format!("flag{suffix}"), "op": "eq", "value": true})),
        ),
        (
            vec![k("txt", true), k("day", false)],
            Some(
                json!({"or": [{"field": format!("txt{suffix}"), "op": "is_null", "value": true},
                               {"field": format!("num{suffix}"), "op": "gt", "value": 0}]}),
            ),
        ),
    ];
    if with_system {
        specs.extend([
            (vec![], None),
            (vec![k("id", true)], None),
            (vec![k("created_at", true), k("txt", false)], None),
            (vec![k("updated_at", true), k("int", false)], None),
            (vec![k("int", false), k("id", true)], None),
        ]);
    }
    for (keys, filter) in specs {
        let q = Query {
            filter: filter
                .as_ref()
                .map(|f| Filter::from_json(f).expect("test filter parses")),
            sort: keys
                .iter()
                .map(|(f, desc)| SortKey {
                    field: f.clone(),
                    desc: *desc,
                })
                .collect(),
            ..Query::default()
        };
        let what = format!(
            "sort {keys:?}{}",
            filter
                .as_ref()
                .map(|f| format!(" filter {f}"))
                .unwrap_or_default()
        );
        let mut expected: Vec<&Record> = rows
            .iter()
            .filter(|r| match &filter {
                None => true,
                Some(f) if f.get("or").is_none() => bounds_match(r, f),
                Some(_) => {
                    !r.data.contains_key(&format!("txt{suffix}"))
                        || r.data
                            .get(&format!("num{suffix}"))
                            .and_then(Value::as_f64)
                            .is_some_and(|v| v > 0.0)
                }
            })
            .collect();
        expected.sort_by(|a, b| cmp_rows(&keys, a, b));
        let want: Vec<Uuid> = expected.iter().map(|r| r.id).collect();
        for limit in [7, 1000] {
            let got = page_through(recs, &q, limit, &format!("{what}, limit {limit}"));
            let ids: Vec<Uuid> = got.iter().map(|r| r.id).collect();
            assert_eq!(
                id_set(&got).len(),
                ids.len(),
                "{what}, limit {limit}: a record was returned twice"
            );
            if ids != want {
                let show = |ids: &[Uuid]| -> Vec<String> {
                    ids.iter()
                        .map(|id| {
                            let r = rows.iter().find(|r| r.id == *id).expect("a known row");
                            let vals: Vec<String> = keys
                                .iter()
                                .map(|(f, _)| format!("{:?}", sort_val(r, f)))
                                .collect();
                            format!("seq {} {}", r.data["seq"], vals.join(" "))
                        })
                        .collect()
                };
                panic!(
                    "{what}, limit {limit}: wrong order or rows ({} expected, {} returned)\nexpected: {:#?}\ngot: {:#?}",
                    want.len(),
                    ids.len(),
                    show(&want),
                    show(&ids)
                );
            }
        }
    }
}

/// Sort on every orderable kind with ties and missing values, several keys, mixed
/// directions, with and without a filter; paging with limit 7 loses and repeats
/// nothing and yields the expected order.
pub fn sort_pagination(store: &Store) {
    let (_t, recs, rows) = rows_fixture(store);
    check_sorts(&recs, &rows, "", true);
}

/// The same sorts on indexed fields.
pub fn sort_pagination_indexed(store: &Store) {
    let (_t, recs, rows) = rows_fixture(store);
    check_sorts(&recs, &rows, "_ix", false);
}

/// Cursors are bound to their query (type, filter, sort) and cannot be edited; they
/// survive a change of limit and of the data around them (keyset, not offsets).
pub fn cursors(store: &Store) {
    let cx = Ctx::new(store);
    let t = cx.admin();
    for name in ["c", "c2"] {
        create_type(
            &t,
            json!({"name": name, "fields": [
                {"name": "n", "kind": "integer"}, {"name": "g", "kind": "text"}]}),
        );
    }
    create_relation_type(&t, "next", "c", "c", "many_to_many", "cascade");
    let recs = records(&t, "c");
    let other = records(&t, "c2");
    let made = must(
        recs.create_many(
            &(0..20)
                .map(|i| json!({"n": i, "g": format!("g{}", i % 3)}))
                .collect::<Vec<_>>(),
        ),
        "create rows",
    );
    must(
        other.create_many(&(0..20).map(|i| json!({"n": i})).collect::<Vec<_>>()),
        "create rows of another type",
    );
    let by_n = |q: Value| query(q);
    let base = json!({"sort": [{"field": "n"}], "limit": 5});
    let p1 = must(recs.query(&by_n(base.clone())), "page 1");
    let ns = |items: &[Record]| -> Vec<i64> {
        items
            .iter()
            .map(|r| r.data["n"].as_i64().unwrap_or(-1))
            .collect()
    };
    assert_eq!(ns(&p1.items), [0, 1, 2, 3, 4]);
    let c1 = p1.next_cursor.clone().expect("a next cursor");

    let with_cursor = |mut q: Value, c: &str| {
        q["cursor"] = json!(c);
        by_n(q)
    };
    let p2 = must(recs.query(&with_cursor(base.clone(), &c1)), "page 2");
    assert_eq!(ns(&p2.items), [5, 6, 7, 8, 9]);
    let p2b = must(
        recs.query(&with_cursor(
            json!({"sort": [{"field": "n"}], "limit": 10}),
            &c1,
        )),
        "page 2 with another limit",
    );
    assert_eq!(
        ns(&p2b.items),
        (5..15).collect::<Vec<_>>(),
        "the limit may change"
    );

    for (q, what) in [
        (
            json!({"sort": [{"field": "n", "desc": true}]}),
            "another direction",
        ),
        (json!({"sort": [{"field": "g"}]}), "another sort field"),
        (
            json!({"sort": [{"field": "n"}, {"field": "g"}]}),
            "another key list",
        ),
        (json!({}), "the default sort"),
        (
            json!({"sort": [{"field": "n"}], "filter": {"field": "n", "op": "gte", "value": 0}}),
            "another filter",
        ),
    ] {
        expect_invalid_cursor(
            recs.query(&with_cursor(q, &c1)),
            &format!("a cursor used with {what}"),
        );
    }
    expect_invalid_cursor(
        other.query(&with_cursor(base.clone(), &c1)),
        "a cursor used on another entity type",
    );
    let flipped = |s: &str, at: usize| -> String {
        let mut b = s.as_bytes().to_vec();
        b[at] = if b[at] == b'A' { b'B' } else { b'A' };
        String::from_utf8(b).expect("ascii")
    };
    let dot = c1.find('.').unwrap_or(c1.len() / 2);
    for (bad, what) in [
        (flipped(&c1, 3), "an edited cursor body"),
        (flipped(&c1, c1.len() - 2), "an edited cursor signature"),
        (c1[..c1.len() - 3].to_string(), "a truncated cursor"),
        (c1[..dot].to_string(), "a cursor without signature"),
        (format!("{c1}x"), "a cursor with a suffix"),
        (String::new(), "an empty cursor"),
        ("garbage".to_string(), "garbage"),
        ("a".repeat(10_000), "a huge cursor"),
    ] {
        expect_invalid_cursor(recs.query(&with_cursor(base.clone(), &bad)), what);
    }
    // A neighbours cursor is not a query cursor, and the other way round.
    for w in made.windows(2) {
        link(&t, "next", made[0].id, w[1].id);
    }
    let np = must(
        t.neighbours(made[0].id, Some("next"), Direction::Out, Some(2), None),
        "neighbours page",
    );
    let nc = np.next_cursor.expect("a neighbours cursor");
    expect_invalid_cursor(
        recs.query(&with_cursor(base.clone(), &nc)),
        "a neighbours cursor used for a query",
    );
    expect_invalid_cursor(
        t.neighbours(made[0].id, Some("next"), Direction::Out, Some(2), Some(&c1)),
        "a query cursor used for neighbours",
    );

    // Keyset semantics: deleting the row a cursor points at, or inserting before it,
    // neither repeats nor skips rows.
    must(recs.delete(p1.items[4].id, None), "delete the cursor's row");
    create(&recs, json!({"n": -1}));
    create(&recs, json!({"n": 3}));
    create(&recs, json!({"n": 5}));
    let p2c = must(
        recs.query(&with_cursor(base.clone(), &c1)),
        "page 2 after changes",
    );
    assert_eq!(
        ns(&p2c.items),
        [5, 5, 6, 7, 8],
        "rows after the cursor position"
    );
}

/// `fields` limits `data` to the selected fields; filter and sort may use others.
pub fn field_selection(store: &Store) {
    let (_t, recs, rows) = rows_fixture(store);
    let full: HashMap<Uuid, &Record> = rows.iter().map(|r| (r.id, r)).collect();
    let q = query(json!({"fields": ["txt", "int"], "sort": [{"field": "num"}],
                         "filter": {"field": "day", "op": "exists", "value": true}}));
    let got = page_through(&recs, &q, 7, "query with fields");
    let q_all = query(json!({"sort": [{"field": "num"}],
                             "filter": {"field": "day", "op": "exists", "value": true}}));
    let all = page_through(&recs, &q_all, 1000, "query without fields");
    assert_eq!(
        got.iter().map(|r| r.id).collect::<Vec<_>>(),
        all.iter().map(|r| r.id).collect::<Vec<_>>(),
        "field selection does not change which records match or their order"
    );
    for r in &got {
        let f = full[&r.id];
        let mut want = f.data.clone();
        want.retain(|k, _| k == "txt" || k == "int");
        assert_eq!(r.data, want, "only the selected fields are returned");
        assert_eq!((r.version, r.created_at), (f.version, f.created_at));
    }
    let empty = must(
        recs.query(&query(json!({"fields": [], "limit": 3}))),
        "fields: []",
    );
    assert!(empty.items.iter().all(|r| r.data.is_empty()));
    assert_eq!(empty.items.len(), 3);
}

// ---------------------------------------------------------------------------------
// Relations
// ---------------------------------------------------------------------------------

fn people(t: &TenantScope) -> (Records, Records) {
    create_type(
        t,
        json!({"name": "person", "fields": [{"name": "name", "kind": "text", "required": true}]}),
    );
    create_type(
        t,
        json!({"name": "company", "fields": [{"name": "name", "kind": "text", "required": true}]}),
    );
    (records(t, "person"), records(t, "company"))
}

/// Relation types: create, get, list (by name), duplicates, unknown entity types,
/// invalid names, delete (with their relations).
pub fn relation_types(store: &Store) {
    let cx = Ctx::new(store);
    let t = cx.admin();
    let (persons, companies) = people(&t);
    let rt = create_relation_type(
        &t,
        "employs",
        "company",
        "person",
        "one_to_many",
        "restrict",
    );
    assert_eq!(
        (rt.name.as_str(), rt.source.as_str(), rt.target.as_str()),
        ("employs", "company", "person")
    );
    assert_eq!(rt.cardinality, crate::relation::Cardinality::OneToMany);
    assert_eq!(rt.on_delete, crate::relation::OnDelete::Restrict);
    let knows: NewRelationType = serde_json::from_value(json!({
        "name": "knows", "source": "person", "target": "person", "cardinality": "many_to_many"
    }))
    .expect("a relation type");
    let knows = must(t.create_relation_type(&knows), "create knows");
    assert_eq!(
        knows.on_delete,
        crate::relation::OnDelete::Cascade,
        "on_delete defaults to cascade"
    );
    assert_eq!(must(t.relation_type("employs"), "get"), rt);
    let names: Vec<String> = must(t.relation_types(), "list")
        .iter()
        .map(|r| r.name.to_string())
        .collect();
    assert_eq!(
        names,
        ["employs", "knows"],
        "relation types are listed by name"
    );

    let before = snapshot(&t);
    expect_conflict(
        t.create_relation_type(&new_relation_type(
            "employs",
            "person",
            "person",
            "one_to_one",
            "cascade",
        )),
        ConflictKind::AlreadyExists,
        "a duplicate relation type",
    );
    expect_not_found(
        t.create_relation_type(&new_relation_type(
            "x",
            "nope",
            "person",
            "one_to_one",
            "cascade",
        )),
        "a relation type from an unknown entity type",
    );
    expect_not_found(
        t.create_relation_type(&new_relation_type(
            "x",
            "person",
            "nope",
            "one_to_one",
            "cascade",
        )),
        "a relation type to an unknown entity type",
    );
    expect_validation(
        t.create_relation_type(&new_relation_type(
            "Bad Name",
            "person",
            "person",
            "one_to_one",
            "cascade",
        )),
        "a relation type with an invalid name",
        &[("name", "invalid_name")],
    );
    expect_validation(
        t.create_relation_type(&new_relation_type(
            "ok",
            "Person",
            "",
            "one_to_one",
            "cascade",
        )),
        "a relation type with invalid entity type names",
        &[("source", "invalid_name"), ("target", "invalid_name")],
    );
    expect_not_found(t.relation_type("nope"), "get an unknown relation type");
    expect_not_found(
        t.delete_relation_type("nope"),
        "delete an unknown relation type",
    );
    assert_unchanged(&t, &before, "rejected relation types");

    let p1 = create(&persons, json!({"name": "p1"}));
    let p2 = create(&persons, json!({"name": "p2"}));
    let c1 = create(&companies, json!({"name": "c1"}));
    let k = link(&t, "knows", p1.id, p2.id);
    let e = link(&t, "employs", c1.id, p1.id);
    must(t.delete_relation_type("knows"), "delete knows");
    expect_not_found(t.relation_type("knows"), "get a deleted relation type");
    expect_not_found(t.relation(k.id), "a relation of a deleted relation type");
    assert_eq!(must(t.relation(e.id), "other relations survive"), e);
    assert_eq!(
        all_edges(&t, p1.id)
            .iter()
            .map(|r| r.id)
            .collect::<Vec<_>>(),
        [e.id]
    );
    assert_eq!(must(persons.get(p1.id), "records survive"), p1);
    let again = create_relation_type(&t, "knows", "person", "person", "one_to_one", "cascade");
    assert_eq!(again.cardinality, crate::relation::Cardinality::OneToOne);
    assert!(
        all_edges(&t, p2.id).is_empty(),
        "a re-created relation type has no edges"
    );
    link(&t, "knows", p2.id, p1.id);
}

/// Creating relations: fields, data, wrong entity types (Validation), unknown records
/// and relation types (NotFound), nothing written on failure.
pub fn relations_create(store: &Store) {
    let cx = Ctx::new(store);
    let t = cx.admin();
    let (persons, companies) = people(&t);
    create_relation_type(&t, "employs", "company", "person", "one_to_many", "cascade");
    let p1 = create(&persons, json!({"name": "p1"}));
    let p2 = create(&persons, json!({"name": "p2"}));
    let c1 = create(&companies, json!({"name": "c1"}));
    let c2 = create(&companies, json!({"name": "c2"}));
    let ed = cx.editor();
    let mut new = new_relation("employs", c1.id, p1.id);
    new.data = Some(json!({"since": 2020, "role": "dev"}));
    let rel = must(ed.create_relation(&new), "create a relation with data");
    assert_eq!(rel.relation_type.as_str(), "employs");
    assert_eq!((rel.source_id, rel.target_id), (c1.id, p1.id));
    assert_eq!(rel.data, json!({"since": 2020, "role": "dev"}));
    assert_eq!(rel.created_by.as_deref(), Some(EDITOR));
    assert_eq!(must(t.relation(rel.id), "get the relation"), rel);
    let plain = link(&ed, "employs", c1.id, p2.id);
    assert!(
        plain.data.is_null() || plain.data == json!({}),
        "a relation without data has none: {:?}",
        plain.data
    );

    let before = snapshot(&t);
    expect_validation(
        ed.create_relation(&new_relation("employs", p1.id, c1.id)),
        "a relation with both ends of the wrong type",
        &[
            ("source_id", "wrong_entity_type"),
            ("target_id", "wrong_entity_type"),
        ],
    );
    expect_validation(
        ed.create_relation(&new_relation("employs", c1.id, c2.id)),
        "a relation with a target of the wrong type",
        &[("target_id", "wrong_entity_type")],
    );
    expect_not_found(
        ed.create_relation(&new_relation("employs", c2.id, Uuid::new_v4())),
        "a relation to an unknown record",
    );
    expect_not_found(
        ed.create_relation(&new_relation("employs", Uuid::new_v4(), p1.id)),
        "a relation from an unknown record",
    );
    expect_not_found(
        ed.create_relation(&new_relation("nope", c2.id, p1.id)),
        "a relation of an unknown type",
    );
    expect_validation(
        ed.create_relation(&new_relation("Nope!", c2.id, p1.id)),
        "a relation with an invalid type name",
        &[("type", "invalid_name")],
    );
    let mut bad = new_relation("employs", c2.id, p1.id);
    bad.data = Some(json!([1]));
    expect_validation(
        ed.create_relation(&bad),
        "relation data that is not an object",
        &[("data", "not_an_object")],
    );
    bad.data = Some(json!({"x": "\u{0}"}));
    expect_validation(
        ed.create_relation(&bad),
        "relation data with NUL",
        &[("data", "nul_in_text")],
    );
    expect_not_found(t.relation(Uuid::new_v4()), "get an unknown relation");
    assert_unchanged(&t, &before, "rejected relations");
}

/// Cardinality: one_to_one, one_to_many (a target has one source), many_to_many
/// (duplicate edges are AlreadyExists); a freed slot can be reused.
pub fn relation_cardinality(store: &Store) {
    let cx = Ctx::new(store);
    let t = cx.admin();
    create_type(
        &t,
        json!({"name": "a", "fields": [{"name": "x", "kind": "integer"}]}),
    );
    create_type(
        &t,
        json!({"name": "b", "fields": [{"name": "x", "kind": "integer"}]}),
    );
    create_relation_type(&t, "one", "a", "b", "one_to_one", "cascade");
    create_relation_type(&t, "many", "a", "b", "one_to_many", "cascade");
    create_relation_type(&t, "mm", "a", "b", "many_to_many", "cascade");
    let (ra, rb) = (records(&t, "a"), records(&t, "b"));
    let a1 = create(&ra, json!({"x": 1})).id;
    let a2 = create(&ra, json!({"x": 2})).id;
    let b1 = create(&rb, json!({"x": 1})).id;
    let b2 = create(&rb, json!({"x": 2})).id;
    let try_link = |ty: &str, s: Uuid, d: Uuid| t.create_relation(&new_relation(ty, s, d));

    let one = link(&t, "one", a1, b1);
    let m1 = link(&t, "many", a1, b1);
    link(&t, "many", a1, b2);
    link(&t, "mm", a1, b1);
    link(&t, "mm", a1, b2);
    link(&t, "mm", a2, b1);
    link(&t, "mm", a2, b2);

    let before = snapshot(&t);
    expect_conflict(
        try_link("one", a1, b2),
        ConflictKind::Cardinality,
        "one_to_one: a source with a target already",
    );
    expect_conflict(
        try_link("one", a2, b1),
        ConflictKind::Cardinality,
        "one_to_one: a target with a source already",
    );
    expect_conflict(
        try_link("many", a2, b1),
        ConflictKind::Cardinality,
        "one_to_many: a target with a source already",
    );
    expect_conflict(
        try_link("mm", a1, b1),
        ConflictKind::AlreadyExists,
        "many_to_many: the same edge twice",
    );
    assert_unchanged(&t, &before, "cardinality conflicts");

    link(&t, "one", a2, b2);
    must(t.delete_relation(one.id), "delete a one_to_one edge");
    link(&t, "one", a1, b1);
    must(t.delete_relation(m1.id), "delete a one_to_many edge");
    link(&t, "many", a2, b1);
}

fn edge_ids(page: &[Relation]) -> BTreeSet<Uuid> {
    page.iter().map(|r| r.id).collect()
}

/// Neighbours: direction out/in/both, type filter, ordered by id, paged with signed
/// cursors bound to their listing.
pub fn neighbours(store: &Store) {
    let cx = Ctx::new(store);
    let t = cx.admin();
    let (persons, _) = people(&t);
    create_relation_type(&t, "knows", "person", "person", "many_to_many", "cascade");
    create_relation_type(&t, "likes", "person", "person", "many_to_many", "cascade");
    let p: Vec<Uuid> = (0..5)
        .map(|i| create(&persons, json!({"name": format!("p{i}")})).id)
        .collect();
    let k1 = link(&t, "knows", p[1], p[2]).id;
    let k2 = link(&t, "knows", p[1], p[3]).id;
    let k3 = link(&t, "knows", p[4], p[1]).id;
    let l1 = link(&t, "likes", p[1], p[4]).id;
    let l2 = link(&t, "likes", p[2], p[1]).id;
    let v = cx.viewer();
    let list = |id: Uuid, ty: Option<&str>, dir: Direction| -> Vec<Relation> {
        let page = must(
            v.neighbours(id, ty, dir, None, None),
            &format!("neighbours {ty:?} {dir:?}"),
        );
        assert!(page.next_cursor.is_none());
        let ids: Vec<Uuid> = page.items.iter().map(|r| r.id).collect();
        let mut sorted = ids.clone();
        sorted.sort();
        assert_eq!(ids, sorted, "neighbours are ordered by relation id");
        page.items
    };
    let set = |ids: &[Uuid]| -> BTreeSet<Uuid> { ids.iter().copied().collect() };
    assert_eq!(
        edge_ids(&list(p[1], None, Direction::Out)),
        set(&[k1, k2, l1])
    );
    assert_eq!(edge_ids(&list(p[1], None, Direction::In)), set(&[k3, l2]));
    assert_eq!(
        edge_ids(&list(p[1], None, Direction::Both)),
        set(&[k1, k2, k3, l1, l2])
    );
    assert_eq!(
        edge_ids(&list(p[1], Some("knows"), Direction::Out)),
        set(&[k1, k2])
    );
    assert_eq!(
        edge_ids(&list(p[1], Some("knows"), Direction::In)),
        set(&[k3])
    );
    assert_eq!(
        edge_ids(&list(p[1], Some("likes"), Direction::Both)),
        set(&[l1, l2])
    );
    assert_eq!(edge_ids(&list(p[3], None, Direction::Out)), set(&[]));
    assert_eq!(edge_ids(&list(p[3], None, Direction::In)), set(&[k2]));
    assert_eq!(edge_ids(&list(p[0], None, Direction::Both)), set(&[]));
    let k1_rel = list(p[2], Some("knows"), Direction::In);
    assert_eq!(k1_rel.len(), 1);
    assert_eq!(
        (
            k1_rel[0].source_id,
            k1_rel[0].target_id,
            k1_rel[0].relation_type.as_str()
        ),
        (p[1], p[2], "knows")
    );

    for limit in [1, 2, 3] {
        let mut seen = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let page = must(
                v.neighbours(p[1], None, Direction::Both, Some(limit), cursor.as_deref()),
                "a page of neighbours",
            );
            assert!(page.items.len() <= limit);
            seen.extend(page.items.iter().map(|r| r.id));
            match page.next_cursor {
                Some(c) => {
                    assert_eq!(page.items.len(), limit, "a page with a next cursor is full");
                    cursor = Some(c)
                }
                None => break,
            }
        }
        let mut sorted = seen.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(seen, sorted, "paged neighbours: in id order, none repeated");
        assert_eq!(
            set(&seen),
            set(&[k1, k2, k3, l1, l2]),
            "paged neighbours: none lost"
        );
    }

    let first = must(
        v.neighbours(p[1], None, Direction::Both, Some(2), None),
        "first page",
    );
    let c = first.next_cursor.expect("a next cursor");
    for (id, ty, dir, what) in [
        (p[2], None, Direction::Both, "another record"),
        (p[1], None, Direction::Out, "another direction"),
        (p[1], Some("knows"), Direction::Both, "another type"),
    ] {
        expect_invalid_cursor(
            v.neighbours(id, ty, dir, Some(2), Some(&c)),
            &format!("a neighbours cursor used with {what}"),
        );
    }
    expect_invalid_cursor(
        v.neighbours(p[1], None, Direction::Both, Some(2), Some("garbage")),
        "a garbage neighbours cursor",
    );
    expect_not_found(
        v.neighbours(Uuid::new_v4(), None, Direction::Both, None, None),
        "neighbours of an unknown record",
    );
    expect_not_found(
        v.neighbours(p[1], Some("nope"), Direction::Both, None, None),
        "neighbours over an unknown relation type",
    );
    expect_invalid_query(
        v.neighbours(p[1], None, Direction::Both, Some(0), None),
        "neighbours with limit 0",
        "limit",
    );
    expect_invalid_query(
        v.neighbours(p[1], None, Direction::Both, Some(1001), None),
        "neighbours with limit 1001",
        "limit",
    );
}

/// Deleting a relation: gone from reads and listings, records intact, NotFound twice;
/// the same edge can be created again.
pub fn relation_delete(store: &Store) {
    let cx = Ctx::new(store);
    let t = cx.admin();
    let (persons, _) = people(&t);
    create_relation_type(&t, "knows", "person", "person", "many_to_many", "restrict");
    let a = create(&persons, json!({"name": "a"}));
    let b = create(&persons, json!({"name": "b"}));
    let k1 = link(&t, "knows", a.id, b.id);
    let k2 = link(&t, "knows", b.id, a.id);
    let ed = cx.editor();
    must(ed.delete_relation(k1.id), "delete a relation");
    expect_not_found(ed.relation(k1.id), "get a deleted relation");
    expect_not_found(ed.delete_relation(k1.id), "delete a relation twice");
    expect_not_found(
        ed.delete_relation(Uuid::new_v4()),
        "delete an unknown relation",
    );
    assert_eq!(edge_ids(&all_edges(&t, a.id)), BTreeSet::from([k2.id]));
    assert_eq!(edge_ids(&all_edges(&t, b.id)), BTreeSet::from([k2.id]));
    assert_eq!(must(persons.get(a.id), "a survives"), a);
    assert_eq!(must(persons.get(b.id), "b survives"), b);
    let again = link(&ed, "knows", a.id, b.id);
    assert_ne!(again.id, k1.id, "a re-created edge is a new relation");
    let rel = json!({"related": {"type": "knows", "direction": "out"}});
    let ids = id_set(&must(persons.query(&query(json!({"filter": rel}))), "related").items);
    assert_eq!(ids, BTreeSet::from([a.id, b.id]));
    must(ed.delete_relation(k2.id), "delete k2");
    let ids = id_set(&must(persons.query(&query(json!({"filter": rel}))), "related").items);
    assert_eq!(
        ids,
        BTreeSet::from([a.id]),
        "filters see deleted edges gone"
    );
}

/// on_delete cascade: deleting a record (as source or target) deletes its edges of
/// cascading types, each with a relation.deleted event, and nothing else.
pub fn on_delete_cascade(store: &Store) {
    let cx = Ctx::new(store);
    let t = cx.admin();
    create_type(
        &t,
        json!({"name": "owner", "fields": [{"name": "n", "kind": "text"}]}),
    );
    create_type(
        &t,
        json!({"name": "item", "fields": [{"name": "n", "kind": "text"}]}),
    );
    create_relation_type(&t, "holds", "owner", "item", "one_to_many", "cascade");
    create_relation_type(&t, "tags", "item", "item", "many_to_many", "cascade");
    let owners = records(&t, "owner");
    let items = records(&t, "item");
    let o1 = create(&owners, json!({"n": "o1"}));
    let i: Vec<Record> = (1..=3)
        .map(|k| create(&items, json!({"n": format!("i{k}")})))
        .collect();
    let h1 = link(&t, "holds", o1.id, i[0].id);
    let h2 = link(&t, "holds", o1.id, i[1].id);
    let t12 = link(&t, "tags", i[0].id, i[1].id);
    let t30 = link(&t, "tags", i[2].id, i[0].id);
    let t21 = link(&t, "tags", i[1].id, i[2].id);

    let seq0 = last_seq(&t);
    must(items.delete(i[0].id, None), "delete i1");
    for e in [&h1, &t12, &t30] {
        expect_not_found(t.relation(e.id), "an edge of a deleted record");
    }
    for e in [&h2, &t21] {
        assert_eq!(&must(t.relation(e.id), "other edges survive"), e);
    }
    for r in [&i[1], &i[2]] {
        assert_eq!(&must(items.get(r.id), "other records survive"), r);
    }
    assert_eq!(edge_ids(&all_edges(&t, o1.id)), BTreeSet::from([h2.id]));
    let evs = events_after(&t, seq0);
    let mut got: Vec<(&str, Uuid)> = evs
        .iter()
        .map(|e| (e.kind.as_str(), e.subject_id))
        .collect();
    got.sort();
    let mut want = vec![
        ("record.deleted", i[0].id),
        ("relation.deleted", h1.id),
        ("relation.deleted", t12.id),
        ("relation.deleted", t30.id),
    ];
    want.sort();
    assert_eq!(
        got, want,
        "a cascading delete emits one event per deleted object"
    );
    let held = json!({"related": {"type": "holds", "direction": "in"}});
    assert_eq!(
        id_set(&must(items.query(&query(json!({"filter": held}))), "related").items),
        BTreeSet::from([i[1].id]),
        "filters do not see cascaded edges"
    );

    must(owners.delete(o1.id, None), "delete the owner (source side)");
    expect_not_found(t.relation(h2.id), "an edge of a deleted source");
    assert_eq!(edge_ids(&all_edges(&t, i[1].id)), BTreeSet::from([t21.id]));
}

/// on_delete restrict: a record with such edges (either end) cannot be deleted, and a
/// refused delete changes nothing (not even its cascading edges).
pub fn on_delete_restrict(store: &Store) {
    let cx = Ctx::new(store);
    let t = cx.admin();
    create_type(
        &t,
        json!({"name": "owner", "fields": [{"name": "n", "kind": "text"}]}),
    );
    create_type(
        &t,
        json!({"name": "item", "fields": [{"name": "n", "kind": "text"}]}),
    );
    create_relation_type(&t, "pins", "owner", "item", "many_to_many", "restrict");
    create_relation_type(&t, "holds", "owner", "item", "many_to_many", "cascade");
    let owners = records(&t, "owner");
    let items = records(&t, "item");
    let o1 = create(&owners, json!({"n": "o1"}));
    let o2 = create(&owners, json!({"n": "o2"}));
    let i1 = create(&items, json!({"n": "i1"}));
    let i2 = create(&items, json!({"n": "i2"}));
    let pin = link(&t, "pins", o1.id, i1.id);
    link(&t, "holds", o2.id, i2.id);
    link(&t, "holds", o2.id, i1.id);
    link(&t, "pins", o2.id, i2.id);

    let before = snapshot(&t);
    expect_conflict(
        owners.delete(o1.id, None),
        ConflictKind::Restricted,
        "delete the source of a restrict edge",
    );
    expect_conflict(
        items.delete(i1.id, None),
        ConflictKind::Restricted,
        "delete the target of a restrict edge",
    );
    expect_conflict(
        owners.delete(o2.id, Some(1)),
        ConflictKind::Restricted,
        "delete a record with restrict and cascade edges",
    );
    assert_unchanged(&t, &before, "restricted deletes");

    must(t.delete_relation(pin.id), "delete the pin");
    must(owners.delete(o1.id, None), "delete o1 once unpinned");
    expect_not_found(owners.get(o1.id), "o1 is gone");
    expect_conflict(
        items.delete(i2.id, None),
        ConflictKind::Restricted,
        "i2 is still pinned by o2",
    );
}

// ---------------------------------------------------------------------------------
// Events
// ---------------------------------------------------------------------------------

/// Reads the events after `*seq`, checks they are exactly `expected` (kind, subject)
/// in any order within this one operation, and advances `*seq`.
fn expect_events(
    t: &TenantScope,
    seq: &mut i64,
    what: &str,
    expected: &[(EventKind, Uuid)],
) -> Vec<Event> {
    let evs = events_after(t, *seq);
    let mut got: Vec<(&str, Uuid)> = evs
        .iter()
        .map(|e| (e.kind.as_str(), e.subject_id))
        .collect();
    let mut want: Vec<(&str, Uuid)> = expected.iter().map(|(k, id)| (k.as_str(), *id)).collect();
    got.sort();
    want.sort();
    assert_eq!(got, want, "{what}: events emitted");
    if let Some(last) = evs.last() {
        *seq = last.seq;
    }
    evs
}

fn assert_seq_contiguous(evs: &[Event], what: &str) {
    for w in evs.windows(2) {
        assert_eq!(
            w[1].seq,
            w[0].seq + 1,
            "{what}: event seqs go up by one ({} then {})",
            w[0].seq,
            w[1].seq
        );
    }
}

/// The change feed: one event of the right kind per change, in order, with subjects,
/// actors and payloads; seqs go up by one from above 0; paging sees every event once.
pub fn events_feed(store: &Store) {
    use EventKind as K;
    let cx = Ctx::new(store);
    let t = cx.admin();
    let ed = cx.editor();
    let mut seq = 0;
    assert!(events_after(&t, 0).is_empty(), "a new tenant has no events");

    let ev = create_type(
        &t,
        json!({"name": "ev", "fields": [{"name": "x", "kind": "integer"}, {"name": "y", "kind": "text"}]}),
    );
    let e = expect_events(
        &t,
        &mut seq,
        "create entity type",
        &[(K::EntityTypeCreated, ev.id)],
    );
    assert!(e[0].seq > 0, "seqs start above 0");
    assert_eq!(e[0].entity_type.as_deref(), Some("ev"));
    assert_eq!(e[0].actor.as_deref(), Some(ADMIN));
    let other = create_type(&t, json!({"name": "other"}));
    expect_events(
        &t,
        &mut seq,
        "create entity type",
        &[(K::EntityTypeCreated, other.id)],
    );
    let up = must(
        t.update_entity_type(
            "ev",
            &type_patch(json!({"add_fields": [{"name": "z", "kind": "text"}]})),
        ),
        "update ev",
    );
    let e = expect_events(
        &t,
        &mut seq,
        "update entity type",
        &[(K::EntityTypeUpdated, ev.id)],
    );
    assert_eq!(up.id, ev.id);
    assert_eq!(e[0].entity_type.as_deref(), Some("ev"));
    let link_type = create_relation_type(&t, "link", "ev", "ev", "many_to_many", "cascade");
    expect_events(
        &t,
        &mut seq,
        "create relation type",
        &[(K::RelationTypeCreated, link_type.id)],
    );

    let recs = records(&ed, "ev");
    let r1 = create(&recs, json!({"x": 1}));
    let e = expect_events(&t, &mut seq, "create record", &[(K::RecordCreated, r1.id)]);
    assert_eq!(e[0].entity_type.as_deref(), Some("ev"));
    assert_eq!(e[0].actor.as_deref(), Some(EDITOR));
    assert_eq!(
        e[0].payload["data"],
        json!({"x": 1}),
        "record.created carries the data"
    );
    let r2 = create(&recs, json!({"x": 2}));
    expect_events(&t, &mut seq, "create record", &[(K::RecordCreated, r2.id)]);
    let batch = must(
        recs.create_many(&[json!({"x": 3}), json!({"x": 4})]),
        "batch",
    );
    let (r3, r4) = (&batch[0], &batch[1]);
    expect_events(
        &t,
        &mut seq,
        "create a batch",
        &[(K::RecordCreated, r3.id), (K::RecordCreated, r4.id)],
    );
    must(recs.patch(r1.id, &json!({"y": "a"}), None), "patch r1");
    let e = expect_events(&t, &mut seq, "patch", &[(K::RecordUpdated, r1.id)]);
    assert_eq!(
        e[0].payload["data"],
        json!({"x": 1, "y": "a"}),
        "record.updated carries the data"
    );
    assert_eq!(
        e[0].payload["changed"],
        json!(["y"]),
        "record.updated names the changed fields"
    );
    must(
        recs.replace(r2.id, &json!({"x": 5, "z": "b"}), None),
        "replace r2",
    );
    let e = expect_events(&t, &mut seq, "replace", &[(K::RecordUpdated, r2.id)]);
    assert_eq!(e[0].payload["data"], json!({"x": 5, "z": "b"}));
    assert_eq!(e[0].payload["changed"], json!(["x", "z"]));

    let rel1 = link(&ed, "link", r1.id, r2.id);
    let e = expect_events(
        &t,
        &mut seq,
        "create relation",
        &[(K::RelationCreated, rel1.id)],
    );
    assert_eq!(e[0].payload["source_id"], json!(r1.id.to_string()));
    assert_eq!(e[0].payload["target_id"], json!(r2.id.to_string()));
    assert_eq!(e[0].actor.as_deref(), Some(EDITOR));
    let rel2 = link(&ed, "link", r3.id, r1.id);
    expect_events(
        &t,
        &mut seq,
        "create relation",
        &[(K::RelationCreated, rel2.id)],
    );
    let rel3 = link(&ed, "link", r4.id, r2.id);
    expect_events(
        &t,
        &mut seq,
        "create relation",
        &[(K::RelationCreated, rel3.id)],
    );
    must(ed.delete_relation(rel3.id), "delete rel3");
    expect_events(
        &t,
        &mut seq,
        "delete relation",
        &[(K::RelationDeleted, rel3.id)],
    );

    // Failed writes in between emit nothing.
    let _ = recs.create(&json!({"x": "no"}));
    let _ = recs.patch(r1.id, &json!({"x": 9}), Some(99));
    let _ = recs.delete(Uuid::new_v4(), None);
    let _ = records(&cx.viewer(), "ev").create(&json!({"x": 1}));
    let _ = t.create_entity_type(&new_type(&json!({"name": "ev"})));
    let _ = t.delete_entity_type("ev");
    let _ = ed.create_relation(&new_relation("link", r1.id, r2.id));
    expect_events(&t, &mut seq, "failed writes", &[]);

    must(recs.delete(r1.id, None), "delete r1");
    expect_events(
        &t,
        &mut seq,
        "delete a record with edges",
        &[
            (K::RecordDeleted, r1.id),
            (K::RelationDeleted, rel1.id),
            (K::RelationDeleted, rel2.id),
        ],
    );
    must(t.delete_relation_type("link"), "delete the relation type");
    expect_events(
        &t,
        &mut seq,
        "delete relation type",
        &[(K::RelationTypeDeleted, link_type.id)],
    );
    must(t.delete_entity_type("other"), "delete other");
    let e = expect_events(
        &t,
        &mut seq,
        "delete entity type",
        &[(K::EntityTypeDeleted, other.id)],
    );
    assert_eq!(e[0].entity_type.as_deref(), Some("other"));

    let all = events_after(&t, 0);
    assert_eq!(all.len(), 19, "every change emitted exactly one event");
    assert!(all[0].seq > 0);
    assert_seq_contiguous(&all, "the whole feed");
    assert_eq!(all.last().map(|e| e.seq), Some(seq));
    for limit in [1, 2, 3, 7, 1000] {
        let mut after = 0;
        let mut seen = Vec::new();
        loop {
            let page = must(t.events(after, Some(limit)), "a page of events");
            assert!(page.events.len() <= limit);
            if page.events.is_empty() {
                assert_eq!(page.next, after, "an empty page keeps the cursor");
                break;
            }
            assert_eq!(
                page.next,
                page.events.last().map(|e| e.seq).unwrap_or(after)
            );
            after = page.next;
            seen.extend(page.events);
        }
        assert_eq!(
            seen, all,
            "paging with limit {limit} sees every event once, in order"
        );
    }
    let mid = all[10].seq;
    assert_eq!(
        must(t.events(mid, Some(3)), "events after a midpoint").events,
        all[11..14].to_vec()
    );
    let tail = must(t.events(seq, None), "events after the last");
    assert!(tail.events.is_empty());
    assert_eq!(tail.next, seq);
    expect_invalid_cursor(t.events(-1, None), "a negative event cursor");
    expect_invalid_query(t.events(0, Some(0)), "events with limit 0", "limit");
    expect_invalid_query(t.events(0, Some(1001)), "events with limit 1001", "limit");
}

/// Every kind of failed write emits no event and changes nothing.
pub fn events_failed_writes(store: &Store) {
    let cx = Ctx::new(store);
    let t = cx.admin();
    create_type(
        &t,
        json!({"name": "f", "fields": [
            {"name": "code", "kind": "text", "unique": true},
            {"name": "n", "kind": "integer", "min": 0}]}),
    );
    create_relation_type(&t, "one", "f", "f", "one_to_one", "restrict");
    let recs = records(&t, "f");
    let a = create(&recs, json!({"code": "a"}));
    let b = create(&recs, json!({"code": "b"}));
    let c = create(&recs, json!({"code": "c"}));
    link(&t, "one", a.id, b.id);
    let before = snapshot(&t);
    let v = records(&cx.viewer(), "f");
    let failures: Vec<(&str, Result<()>)> = vec![
        ("validation", recs.create(&json!({"n": -1})).map(|_| ())),
        (
            "batch validation",
            recs.create_many(&[json!({}), json!({"n": "x"})])
                .map(|_| ()),
        ),
        ("unique", recs.create(&json!({"code": "a"})).map(|_| ())),
        (
            "unique in batch",
            recs.create_many(&[json!({"code": "q"}), json!({"code": "q"})])
                .map(|_| ()),
        ),
        (
            "unique on patch",
            recs.patch(c.id, &json!({"code": "a"}), None).map(|_| ()),
        ),
        (
            "stale patch",
            recs.patch(c.id, &json!({"n": 1}), Some(5)).map(|_| ()),
        ),
        (
            "stale replace",
            recs.replace(c.id, &json!({}), Some(5)).map(|_| ()),
        ),
        ("stale delete", recs.delete(c.id, Some(5))),
        (
            "patch validation",
            recs.patch(c.id, &json!({"n": -5}), None).map(|_| ()),
        ),
        ("not found", recs.delete(Uuid::new_v4(), None)),
        ("forbidden", v.create(&json!({})).map(|_| ())),
        (
            "cardinality",
            t.create_relation(&new_relation("one", a.id, c.id))
                .map(|_| ()),
        ),
        ("restricted", recs.delete(a.id, None)),
        ("in use", t.delete_entity_type("f")),
        (
            "duplicate type",
            t.create_entity_type(&new_type(&json!({"name": "f"})))
                .map(|_| ()),
        ),
        (
            "invalid type",
            t.create_entity_type(&new_type(&json!({"name": "X"})))
                .map(|_| ()),
        ),
        (
            "kind change",
            t.update_entity_type(
                "f",
                &type_patch(json!({"update_fields": [{"name": "n", "kind": "text"}]})),
            )
            .map(|_| ()),
        ),
        (
            "duplicate relation type",
            t.create_relation_type(&new_relation_type("one", "f", "f", "one_to_one", "cascade"))
                .map(|_| ()),
        ),
        ("unknown relation", t.delete_relation(Uuid::new_v4())),
    ];
    for (what, r) in failures {
        assert!(r.is_err(), "{what}: the write should have failed");
    }
    assert_unchanged(&t, &before, "failed writes");
}

/// Concurrent writers in one tenant all land (retrying on Concurrent conflicts) and a
/// reader polling the feed meanwhile sees every event exactly once, without gaps.
pub fn events_concurrent_writers(store: &Store) {
    const WRITERS: usize = 4;
    const EACH: usize = 25;
    let cx = Ctx::new(store);
    let t = cx.admin();
    create_type(
        &t,
        json!({"name": "c", "fields": [{"name": "w", "kind": "integer"}, {"name": "i", "kind": "integer"}]}),
    );
    let seq0 = last_seq(&t);
    let t = &t;
    let (seen, created) = std::thread::scope(|s| {
        let reader = s.spawn(move || {
            let mut after = seq0;
            let mut seen: Vec<Event> = Vec::new();
            let deadline = Instant::now() + Duration::from_secs(60);
            while seen.len() < WRITERS * EACH {
                assert!(
                    Instant::now() < deadline,
                    "the reader saw only {} of {} events",
                    seen.len(),
                    WRITERS * EACH
                );
                let page = must(t.events(after, Some(7)), "poll events");
                if page.events.is_empty() {
                    std::thread::sleep(Duration::from_millis(1));
                }
                after = page.next;
                seen.extend(page.events);
            }
            seen
        });
        let writers: Vec<_> = (0..WRITERS)
            .map(|w| {
                s.spawn(move || {
                    let recs = records(t, "c");
                    let mut ids = Vec::new();
                    for i in 0..EACH {
                        let mut tries = 0;
                        loop {
                            match recs.create(&json!({"w": w, "i": i})) {
                                Ok(r) => {
                                    ids.push(r.id);
                                    break;
                                }
                                Err(Error::Conflict {
                                    kind: ConflictKind::Concurrent,
                                    ..
                                }) if tries < 50 => tries += 1,
                                Err(e) => panic!("concurrent create: {e:?}"),
                            }
                        }
                    }
                    ids
                })
            })
            .collect();
        let created: Vec<Uuid> = writers
            .into_iter()
            .flat_map(|h| h.join().expect("a writer panicked"))
            .collect();
        (reader.join().expect("the reader panicked"), created)
    });
    assert_eq!(created.len(), WRITERS * EACH);
    assert_seq_contiguous(&seen, "events read during concurrent writes");
    assert_eq!(
        seen.first().map(|e| e.seq),
        Some(seq0 + 1),
        "no event before the first is lost"
    );
    let subjects: BTreeSet<Uuid> = seen.iter().map(|e| e.subject_id).collect();
    assert_eq!(
        subjects,
        created.iter().copied().collect::<BTreeSet<_>>(),
        "the reader saw one record.created per record"
    );
    assert!(seen.iter().all(|e| e.kind == EventKind::RecordCreated));
    assert_eq!(
        events_after(t, seq0),
        seen,
        "a later read sees the same feed"
    );
    assert_eq!(all_records(&records(t, "c")).len(), WRITERS * EACH);
}

// ---------------------------------------------------------------------------------
// Tenant isolation
// ---------------------------------------------------------------------------------

/// Two tenants: the second sees, changes and deletes nothing of the first, even with
/// the first's ids and names; unique values and names are per tenant.
pub fn tenant_isolation(store: &Store) {
    let ca = Ctx::new(store);
    let a = ca.admin();
    create_type(
        &a,
        json!({"name": "item", "fields": [
            {"name": "code", "kind": "text", "unique": true},
            {"name": "name", "kind": "text", "indexed": true}]}),
    );
    create_type(
        &a,
        json!({"name": "secret", "fields": [{"name": "x", "kind": "integer"}]}),
    );
    create_relation_type(&a, "rel", "item", "item", "many_to_many", "cascade");
    let ai = records(&a, "item");
    let a1 = create(&ai, json!({"code": "X", "name": "a1"}));
    let a2 = create(&ai, json!({"code": "Y", "name": "a2"}));
    let s1 = create(&records(&a, "secret"), json!({"x": 1}));
    let arel = link(&a, "rel", a1.id, a2.id);
    let a_before = snapshot(&a);
    let a_ids: BTreeSet<Uuid> = [a1.id, a2.id, s1.id, arel.id].into_iter().collect();

    let cb = Ctx::new(store);
    let b = cb.admin();
    assert!(must(b.entity_types(), "list").is_empty());
    assert!(must(b.relation_types(), "list").is_empty());
    assert!(must(b.indexes(), "indexes").is_empty());
    assert!(events_after(&b, 0).is_empty());
    create_type(
        &b,
        json!({"name": "item", "fields": [
            {"name": "code", "kind": "text", "unique": true},
            {"name": "extra", "kind": "integer", "indexed": true}]}),
    );
    let bi = records(&b, "item");
    let b1 = create(&bi, json!({"code": "X", "extra": 1}));
    create_relation_type(&b, "rel", "item", "item", "many_to_many", "cascade");
    let b2 = create(&bi, json!({"code": "Y"}));
    link(&b, "rel", b1.id, b2.id);

    let names: Vec<String> = must(b.entity_types(), "list")
        .iter()
        .map(|e| e.name.to_string())
        .collect();
    assert_eq!(names, ["item"], "tenant B sees only its own entity types");
    assert!(must(b.entity_type("item"), "B's item")
        .field("name")
        .is_none());
    expect_not_found(b.entity_type("secret"), "another tenant's entity type");
    expect_not_found(
        b.records("secret"),
        "records of another tenant's entity type",
    );
    expect_not_found(
        b.update_entity_type("secret", &type_patch(json!({"label": "x"}))),
        "change another tenant's entity type",
    );
    expect_not_found(
        b.delete_entity_type("secret"),
        "delete another tenant's entity type",
    );
    for id in [a1.id, a2.id, s1.id] {
        expect_not_found(bi.get(id), "get another tenant's record");
        expect_not_found(b.record(id), "record(id) of another tenant");
        expect_not_found(
            bi.patch(id, &json!({"extra": 2}), None),
            "patch another tenant's record",
        );
        expect_not_found(
            bi.replace(id, &json!({}), None),
            "replace another tenant's record",
        );
        expect_not_found(bi.delete(id, None), "delete another tenant's record");
        expect_not_found(
            b.neighbours(id, None, Direction::Both, None, None),
            "neighbours of another tenant's record",
        );
        expect_not_found(
            b.create_relation(&new_relation("rel", b1.id, id)),
            "a relation to another tenant's record",
        );
        expect_not_found(
            b.create_relation(&new_relation("rel", id, b1.id)),
            "a relation from another tenant's record",
        );
    }
    expect_not_found(b.relation(arel.id), "another tenant's relation");
    expect_not_found(
        b.delete_relation(arel.id),
        "delete another tenant's relation",
    );
    assert_eq!(
        id_set(&all_records(&bi)),
        BTreeSet::from([b1.id, b2.id]),
        "queries see only the tenant's records"
    );
    for filter in [
        json!({"field": "code", "op": "eq", "value": "X"}),
        json!({"field": "id", "op": "in", "value": [a1.id, a2.id, b1.id]}),
        json!({"related": {"type": "rel", "direction": "out"}}),
        json!({"related": {"type": "rel", "direction": "in"}}),
    ] {
        let got = id_set(&must(bi.query(&query(json!({"filter": filter}))), "query B").items);
        assert!(
            got.is_subset(&BTreeSet::from([b1.id, b2.id])) && !got.is_empty(),
            "filter {filter} in tenant B: {got:?}"
        );
    }
    let b_events = events_after(&b, 0);
    assert!(
        b_events.iter().all(|e| !a_ids.contains(&e.subject_id)),
        "tenant B's feed holds no event of tenant A"
    );
    assert_eq!(
        b_events.len(),
        5,
        "tenant B's feed holds only its own changes"
    );
    let bix = must(b.indexes(), "B's indexes");
    assert!(
        bix.iter().all(|i| i.field.as_str() != "name"),
        "tenant B lists none of A's indexes: {bix:?}"
    );
    assert!(bix.iter().any(|i| i.field.as_str() == "extra"));
    // B's changes reach nothing of A's.
    must(bi.delete(b1.id, None), "B deletes its own record");
    must(
        b.delete_relation_type("rel"),
        "B deletes its own relation type",
    );
    must(
        b.delete_entity_type("item"),
        "B deletes its own entity type",
    );
    assert_unchanged(&a, &a_before, "tenant A after tenant B's work");

    // An unknown tenant sees nothing and can write nothing.
    let ghost = store.tenant(Scope::new(TenantId::random(), ADMIN, Role::Admin));
    match ghost.entity_types() {
        Ok(v) => assert!(v.is_empty(), "an unknown tenant sees entity types"),
        Err(Error::NotFound { .. }) => {}
        Err(e) => panic!("entity types of an unknown tenant: {e:?}"),
    }
    expect_not_found(ghost.record(a1.id), "record(id) from an unknown tenant");
    assert!(
        ghost
            .create_entity_type(&new_type(&json!({"name": "x"})))
            .is_err(),
        "an unknown tenant cannot create entity types"
    );
    assert_unchanged(&a, &a_before, "tenant A after an unknown tenant's attempts");
}

// ---------------------------------------------------------------------------------
// Indexes
// ---------------------------------------------------------------------------------

/// Declared indexed/unique fields are listed by `indexes()` (with the unique flag and
/// kind); undeclaring, removing the field or deleting the type removes them.
pub fn indexes(store: &Store) {
    let cx = Ctx::new(store);
    let t = cx.admin();
    create_type(
        &t,
        json!({"name": "ix", "fields": [
            {"name": "a", "kind": "text", "indexed": true},
            {"name": "b", "kind": "integer", "unique": true},
            {"name": "c", "kind": "text"},
            {"name": "d", "kind": "date", "indexed": true, "unique": true},
            {"name": "e", "kind": "json"}]}),
    );
    create_type(
        &t,
        json!({"name": "other", "fields": [{"name": "a", "kind": "number", "indexed": true}]}),
    );
    create(
        &records(&t, "ix"),
        json!({"a": "x", "b": 1, "d": "2024-01-01"}),
    );
    let list = |what: &str| -> Vec<(String, String, String, bool)> {
        let ix = must(t.indexes(), what);
        for i in &ix {
            assert_ne!(
                i.state,
                IndexState::Failed,
                "{what}: a failed index on clean data: {i:?}"
            );
        }
        let mut v: Vec<(String, String, String, bool)> = ix
            .iter()
            .map(|i| {
                (
                    i.entity_type.to_string(),
                    i.field.to_string(),
                    i.kind.clone(),
                    i.unique,
                )
            })
            .collect();
        v.sort();
        v
    };
    let row = |t: &str, f: &str, k: &str, u: bool| (t.to_string(), f.to_string(), k.to_string(), u);
    assert_eq!(
        list("indexes after creation"),
        vec![
            row("ix", "a", "text", false),
            row("ix", "b", "integer", true),
            row("ix", "d", "date", true),
            row("other", "a", "number", false),
        ]
    );
    must(
        t.update_entity_type(
            "ix",
            &type_patch(json!({"update_fields": [{"name": "a", "kind": "text"}]})),
        ),
        "undeclare a",
    );
    must(
        t.update_entity_type("ix", &type_patch(json!({"remove_fields": ["b"]}))),
        "remove b",
    );
    assert_eq!(
        list("indexes after undeclaring"),
        vec![
            row("ix", "d", "date", true),
            row("other", "a", "number", false)
        ]
    );
    must(t.delete_entity_type("other"), "delete other");
    assert_eq!(
        list("indexes after deleting a type"),
        vec![row("ix", "d", "date", true)]
    );
}
