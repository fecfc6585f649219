//! Storage traits every backend implements, and the tenant-scoped handles callers use.
//!
//! Backends implement the small traits below and receive only checked input: validated
//! record data, checked filters and queries. Callers use [`Store`] →
//! [`TenantScope`] → [`Records`], which validate, check roles and filters, sign
//! cursors, and can never forget the tenant.

use std::fmt::Debug;
use std::sync::Arc;

use serde_json::Value;
use uuid::Uuid;

use crate::entity_type::{EntityType, EntityTypeDef, EntityTypePatch, FieldChange, NewEntityType};
use crate::error::{Error, FieldError, Result};
use crate::event::Event;
use crate::event::{EventPage, DEFAULT_EVENT_LIMIT, MAX_EVENT_LIMIT};
use crate::filter::SchemaLookup;
use crate::index::IndexInfo;
use crate::name::Name;
use crate::query::{fingerprint, CheckedQuery, CursorKey, Page, Query, DEFAULT_LIMIT, MAX_LIMIT};
use crate::record::{validate, validate_patch, Data, RawRecord, Record};
use crate::relation::{
    Direction, NeighbourQuery, NewRelation, NewRelationType, Relation, RelationType,
    RelationTypeDef,
};
use crate::tenant::{Role, Scope, Tenant, TenantId};

/// Most records in one batch create.
pub const MAX_BATCH: usize = 1000;

/// A closure that computes a new entity type definition from the current one.
pub type TypeChange<'a> = &'a dyn Fn(&EntityType) -> Result<(EntityTypeDef, Vec<FieldChange>)>;
/// A closure that computes a record's new data from the current record.
pub type RecordChange<'a> = &'a dyn Fn(&Record) -> Result<Data>;

/// Tenants (system level: not scoped).
pub trait TenantStore: Send + Sync + Debug + 'static {
    /// Creates a tenant; `AlreadyExists` if the id is taken.
    fn create_tenant(&self, id: TenantId, name: &str) -> Result<Tenant>;
    /// Reads a tenant.
    fn get_tenant(&self, id: TenantId) -> Result<Tenant>;
    /// Deletes a tenant and everything it owns.
    fn delete_tenant(&self, id: TenantId) -> Result<()>;
}

/// Entity types and relation types of one tenant.
pub trait SchemaStore: Send + Sync + Debug + 'static {
    /// Stores a new entity type (`AlreadyExists` if the name is taken).
    fn create_entity_type(&self, s: &Scope, def: &EntityTypeDef) -> Result<EntityType>;
    /// Reads an entity type.
    fn entity_type(&self, s: &Scope, name: &Name) -> Result<Arc<EntityType>>;
    /// Lists entity types by name.
    fn entity_types(&self, s: &Scope) -> Result<Vec<EntityType>>;
    /// Atomically reads, changes (with `change`) and stores an entity type.
    fn update_entity_type(
        &self,
        s: &Scope,
        name: &Name,
        change: TypeChange<'_>,
    ) -> Result<EntityType>;
    /// Deletes an entity type and its records (`InUse` while relation types refer to it).
    fn delete_entity_type(&self, s: &Scope, name: &Name) -> Result<()>;
    /// Stores a relation type (both entity types must exist).
    fn create_relation_type(&self, s: &Scope, def: &RelationTypeDef) -> Result<RelationType>;
    /// Reads a relation type.
    fn relation_type(&self, s: &Scope, name: &Name) -> Result<RelationType>;
    /// Lists relation types by name.
    fn relation_types(&self, s: &Scope) -> Result<Vec<RelationType>>;
    /// Deletes a relation type and all its relations.
    fn delete_relation_type(&self, s: &Scope, name: &Name) -> Result<()>;
}

/// Records of one tenant.
pub trait RecordStore: Send + Sync + Debug + 'static {
    /// Inserts validated records, all or nothing, enforcing unique fields.
    fn insert_records(&self, s: &Scope, ty: &EntityType, rows: Vec<Data>) -> Result<Vec<Record>>;
    /// Reads a record of `ty`.
    fn record(&self, s: &Scope, ty: &EntityType, id: Uuid) -> Result<Record>;
    /// [`RecordStore::record`] with the data as JSON text: a backend that reads stored
    /// JSON text overrides it to pass that text through unparsed (like
    /// [`RecordStore::query_records_raw`]); the default serialises what `record` returns.
    fn record_raw(&self, s: &Scope, ty: &EntityType, id: Uuid) -> Result<RawRecord> {
        RawRecord::from_record(self.record(s, ty, id)?)
    }
    /// Reads a record of any type.
    fn record_any(&self, s: &Scope, id: Uuid) -> Result<Record>;
    /// Atomically reads, changes (with `change`, which validates) and stores a record;
    /// `StaleVersion` if `expected_version` is given and is not current.
    fn update_record(
        &self,
        s: &Scope,
        ty: &EntityType,
        id: Uuid,
        expected_version: Option<i64>,
        change: RecordChange<'_>,
    ) -> Result<Record>;
    /// Deletes a record, applying the on-delete rules of its relations.
    fn delete_record(
        &self,
        s: &Scope,
        ty: &EntityType,
        id: Uuid,
        expected_version: Option<i64>,
    ) -> Result<()>;
    /// Runs a checked query: up to `limit + 1` records after the keyset position, in order.
    fn query_records(&self, s: &Scope, q: &CheckedQuery) -> Result<Vec<Record>>;
    /// [`RecordStore::query_records`] with each record's data as JSON text. A backend that
    /// reads stored JSON text overrides it to pass that text through unparsed; the default
    /// serialises the records `query_records` returns.
    fn query_records_raw(&self, s: &Scope, q: &CheckedQuery) -> Result<Vec<RawRecord>> {
        self.query_records(s, q)?
            .into_iter()
            .map(RawRecord::from_record)
            .collect()
    }
}

/// Relations of one tenant.
pub trait RelationStore: Send + Sync + Debug + 'static {
    /// Creates an edge, enforcing types and cardinality.
    fn create_relation(
        &self,
        s: &Scope,
        relation_type: &Name,
        source: Uuid,
        target: Uuid,
        data: Value,
    ) -> Result<Relation>;
    /// Reads an edge.
    fn relation(&self, s: &Scope, id: Uuid) -> Result<Relation>;
    /// Deletes an edge.
    fn delete_relation(&self, s: &Scope, id: Uuid) -> Result<()>;
    /// Edges of a record, ordered by id, up to `limit + 1`, after `q.after`.
    fn neighbours(&self, s: &Scope, q: &NeighbourQuery) -> Result<Vec<Relation>>;
}

/// The change feed of one tenant.
pub trait EventStore: Send + Sync + Debug + 'static {
    /// Events with `seq > after`, in order, at most `limit`. Never skips an event that a
    /// later call could return; `CursorExpired` when `after` predates the retained feed.
    fn events_after(&self, s: &Scope, after: i64, limit: usize) -> Result<Vec<Event>>;
}

/// Field indexes of one tenant.
pub trait IndexStore: Send + Sync + Debug + 'static {
    /// Every declared field index with its state.
    fn indexes(&self, s: &Scope) -> Result<Vec<IndexInfo>>;
}

/// Everything a backend provides; implemented automatically.
pub trait Backend:
    TenantStore + SchemaStore + RecordStore + RelationStore + EventStore + IndexStore
{
}

impl<T: TenantStore + SchemaStore + RecordStore + RelationStore + EventStore + IndexStore> Backend
    for T
{
}

/// The entry point: a backend plus the key that signs cursors.
#[derive(Debug, Clone)]
pub struct Store {
    backend: Arc<dyn Backend>,
    cursor_key: CursorKey,
}

fn check_tenant_name(name: &str) -> Result<()> {
    let n = name.trim().chars().count();
    if n == 0 || n > 200 || name.contains('\0') {
        return Err(Error::invalid(
            "name",
            "invalid_name",
            "tenant name must be 1 to 200 characters without NUL",
        ));
    }
    Ok(())
}

impl Store {
    /// Wraps a backend, with a random cursor key.
    pub fn new(backend: impl Backend) -> Self {
        Store::from_arc(Arc::new(backend))
    }

    /// Wraps a shared backend, with a random cursor key.
    pub fn from_arc(backend: Arc<dyn Backend>) -> Self {
        Store {
            backend,
            cursor_key: CursorKey::random(),
        }
    }

    /// Uses `key` to sign cursors (so they survive restarts and work across replicas).
    pub fn with_cursor_key(mut self, key: CursorKey) -> Self {
        self.cursor_key = key;
        self
    }

    /// The backend.
    pub fn backend(&self) -> &Arc<dyn Backend> {
        &self.backend
    }

    /// Creates a tenant (system level), with a random id unless one is given.
    pub fn create_tenant(&self, id: Option<TenantId>, name: &str) -> Result<Tenant> {
        check_tenant_name(name)?;
        self.backend
            .create_tenant(id.unwrap_or_else(TenantId::random), name.trim())
    }

    /// Reads a tenant (system level).
    pub fn get_tenant(&self, id: TenantId) -> Result<Tenant> {
        self.backend.get_tenant(id)
    }

    /// Deletes a tenant and all it owns (system level).
    pub fn delete_tenant(&self, id: TenantId) -> Result<()> {
        self.backend.delete_tenant(id)
    }

    /// A handle bound to one tenant and actor: the only way to reach tenant data.
    pub fn tenant(&self, scope: Scope) -> TenantScope {
        TenantScope {
            store: self.clone(),
            scope,
        }
    }
}

/// Data access for one tenant and actor.
#[derive(Debug, Clone)]
pub struct TenantScope {
    store: Store,
    scope: Scope,
}

struct Lookup<'a> {
    backend: &'a dyn Backend,
    scope: &'a Scope,
}

impl SchemaLookup for Lookup<'_> {
    fn relation_type(&self, name: &Name) -> Result<RelationType> {
        self.backend.relation_type(self.scope, name)
    }
    fn entity_type(&self, name: &Name) -> Result<Arc<EntityType>> {
        self.backend.entity_type(self.scope, name)
    }
}

fn lookup_name(what: &'static str, s: &str) -> Result<Name> {
    Name::parse(s).map_err(|_| Error::not_found(what, crate::name::truncate(s, 80)))
}

impl TenantScope {
    /// The scope (tenant, actor, role).
    pub fn scope(&self) -> &Scope {
        &self.scope
    }

    fn backend(&self) -> &dyn Backend {
        self.store.backend.as_ref()
    }

    /// Lists entity types.
    pub fn entity_types(&self) -> Result<Vec<EntityType>> {
        self.backend().entity_types(&self.scope)
    }

    /// Reads an entity type.
    pub fn entity_type(&self, name: &str) -> Result<Arc<EntityType>> {
        self.backend()
            .entity_type(&self.scope, &lookup_name("entity type", name)?)
    }

    /// Creates an entity type (admin).
    pub fn create_entity_type(&self, new: &NewEntityType) -> Result<EntityType> {
        self.scope.require(Role::Admin, "creating an entity type")?;
        let def = new.check()?;
        self.backend().create_entity_type(&self.scope, &def)
    }

    /// Adds, changes and removes fields (admin).
    pub fn update_entity_type(&self, name: &str, patch: &EntityTypePatch) -> Result<EntityType> {
        self.scope.require(Role::Admin, "changing an entity type")?;
        let name = lookup_name("entity type", name)?;
        self.backend()
            .update_entity_type(&self.scope, &name, &|cur| patch.apply(cur))
    }

    /// Deletes an entity type and its records (admin).
    pub fn delete_entity_type(&self, name: &str) -> Result<()> {
        self.scope.require(Role::Admin, "deleting an entity type")?;
        self.backend()
            .delete_entity_type(&self.scope, &lookup_name("entity type", name)?)
    }

    /// Lists relation types.
    pub fn relation_types(&self) -> Result<Vec<RelationType>> {
        self.backend().relation_types(&self.scope)
    }

    /// Reads a relation type.
    pub fn relation_type(&self, name: &str) -> Result<RelationType> {
        self.backend()
            .relation_type(&self.scope, &lookup_name("relation type", name)?)
    }

    /// Creates a relation type (admin).
    pub fn create_relation_type(&self, new: &NewRelationType) -> Result<RelationType> {
        self.scope
            .require(Role::Admin, "creating a relation type")?;
        let def = new.check()?;
        self.backend().create_relation_type(&self.scope, &def)
    }

    /// Deletes a relation type and its relations (admin).
    pub fn delete_relation_type(&self, name: &str) -> Result<()> {
        self.scope
            .require(Role::Admin, "deleting a relation type")?;
        self.backend()
            .delete_relation_type(&self.scope, &lookup_name("relation type", name)?)
    }

    /// Records of one entity type.
    pub fn records(&self, entity_type: &str) -> Result<Records> {
        let ty = self.entity_type(entity_type)?;
        Ok(Records {
            tenant: self.clone(),
            ty,
        })
    }

    /// Records of an entity type already loaded (saves a lookup).
    pub fn records_of(&self, ty: Arc<EntityType>) -> Records {
        Records {
            tenant: self.clone(),
            ty,
        }
    }

    /// Reads a record of any type.
    pub fn record(&self, id: Uuid) -> Result<Record> {
        self.backend().record_any(&self.scope, id)
    }

    /// Creates a relation (editor).
    pub fn create_relation(&self, new: &NewRelation) -> Result<Relation> {
        self.scope.require(Role::Editor, "creating a relation")?;
        let (name, data) = new.check()?;
        self.backend()
            .create_relation(&self.scope, &name, new.source_id, new.target_id, data)
    }

    /// Reads a relation.
    pub fn relation(&self, id: Uuid) -> Result<Relation> {
        self.backend().relation(&self.scope, id)
    }

    /// Deletes a relation (editor).
    pub fn delete_relation(&self, id: Uuid) -> Result<()> {
        self.scope.require(Role::Editor, "deleting a relation")?;
        self.backend().delete_relation(&self.scope, id)
    }

    /// Edges of a record, paged by a signed cursor.
    pub fn neighbours(
        &self,
        record: Uuid,
        relation_type: Option<&str>,
        direction: Direction,
        limit: Option<usize>,
        cursor: Option<&str>,
    ) -> Result<Page<Relation>> {
        let relation_type = match relation_type {
            Some(t) => Some(self.relation_type(t)?.name),
            None => None,
        };
        self.backend().record_any(&self.scope, record)?;
        let limit = match limit {
            None => DEFAULT_LIMIT,
            Some(l) if (1..=MAX_LIMIT).contains(&l) => l,
            Some(l) => {
                return Err(Error::query(
                    "limit",
                    format!("limit must be between 1 and {MAX_LIMIT}, got {l}"),
                ))
            }
        };
        let dir = match direction {
            Direction::In => "in",
            Direction::Out => "out",
            Direction::Both => "both",
        };
        let fp = fingerprint(&[
            b"neighbours",
            record.as_bytes(),
            relation_type
                .as_ref()
                .map(|n| n.as_str())
                .unwrap_or("")
                .as_bytes(),
            dir.as_bytes(),
        ]);
        let after = match cursor {
            None => None,
            Some(c) => {
                let v = self.store.cursor_key.decode(&fp, c)?;
                Some(
                    v.as_str()
                        .and_then(|s| Uuid::try_parse(s).ok())
                        .ok_or_else(|| Error::InvalidCursor("malformed cursor".into()))?,
                )
            }
        };
        let q = NeighbourQuery {
            record,
            relation_type,
            direction,
            limit,
            after,
        };
        let mut items = self.backend().neighbours(&self.scope, &q)?;
        let more = items.len() > limit;
        items.truncate(limit);
        let next_cursor = match items.last() {
            Some(last) if more => Some(
                self.store
                    .cursor_key
                    .encode(&fp, &Value::String(last.id.to_string())),
            ),
            _ => None,
        };
        Ok(Page { items, next_cursor })
    }

    /// Events after `after`, in order (default 100, at most 1000 per page).
    pub fn events(&self, after: i64, limit: Option<usize>) -> Result<EventPage> {
        let limit = match limit {
            None => DEFAULT_EVENT_LIMIT,
            Some(l) if (1..=MAX_EVENT_LIMIT).contains(&l) => l,
            Some(l) => {
                return Err(Error::query(
                    "limit",
                    format!("limit must be between 1 and {MAX_EVENT_LIMIT}, got {l}"),
                ))
            }
        };
        if after < 0 {
            return Err(Error::InvalidCursor(
                "event cursor must be a non-negative integer".into(),
            ));
        }
        let events = self.backend().events_after(&self.scope, after, limit)?;
        let next = events.last().map(|e| e.seq).unwrap_or(after);
        Ok(EventPage { events, next })
    }

    /// Every declared field index and its state.
    pub fn indexes(&self) -> Result<Vec<IndexInfo>> {
        self.backend().indexes(&self.scope)
    }
}

/// Records of one entity type, for one tenant and actor.
#[derive(Debug, Clone)]
pub struct Records {
    tenant: TenantScope,
    ty: Arc<EntityType>,
}

fn prefix_errors(e: Error, prefix: &str) -> Error {
    match e {
        Error::Validation(errs) => Error::Validation(
            errs.into_iter()
                .map(|f| FieldError {
                    field: format!("{prefix}.{}", f.field),
                    ..f
                })
                .collect(),
        ),
        other => other,
    }
}

impl Records {
    /// The entity type.
    pub fn entity_type(&self) -> &Arc<EntityType> {
        &self.ty
    }

    fn scope(&self) -> &Scope {
        &self.tenant.scope
    }

    fn backend(&self) -> &dyn Backend {
        self.tenant.backend()
    }

    /// Runs `op`; if the backend reports that the entity type changed since this
    /// handle loaded it (`Conflict::Concurrent`), reloads the type and runs `op` once
    /// more, so a stale handle re-validates against the current schema.
    fn with_current_type<T>(&self, op: impl Fn(&Records) -> Result<T>) -> Result<T> {
        match op(self) {
            Err(Error::Conflict {
                kind: crate::error::ConflictKind::Concurrent,
                ..
            }) => {
                let fresh = self.tenant.records(self.ty.name.as_str())?;
                op(&fresh)
            }
            other => other,
        }
    }

    /// Validates and creates one record (editor).
    pub fn create(&self, data: &Value) -> Result<Record> {
        self.scope().require(Role::Editor, "creating a record")?;
        self.with_current_type(|me| {
            let data = validate(&me.ty, data)?;
            let mut out = me
                .backend()
                .insert_records(me.scope(), &me.ty, vec![data])?;
            out.pop()
                .ok_or_else(|| Error::Internal("insert returned no record".into()))
        })
    }

    /// Validates and creates many records, all or nothing (editor). Every problem of
    /// every record is reported, prefixed with `records[i]`.
    pub fn create_many(&self, rows: &[Value]) -> Result<Vec<Record>> {
        self.scope().require(Role::Editor, "creating records")?;
        if rows.is_empty() {
            return Err(Error::invalid(
                "records",
                "empty_batch",
                "a batch needs at least one record",
            ));
        }
        if rows.len() > MAX_BATCH {
            return Err(Error::invalid(
                "records",
                "batch_too_large",
                format!("at most {MAX_BATCH} records per batch"),
            ));
        }
        self.with_current_type(|me| me.create_many_as_is(rows))
    }

    fn create_many_as_is(&self, rows: &[Value]) -> Result<Vec<Record>> {
        let mut valid = Vec::with_capacity(rows.len());
        let mut errs = Vec::new();
        for (i, r) in rows.iter().enumerate() {
            match validate(&self.ty, r) {
                Ok(d) => valid.push(d),
                Err(e) => match prefix_errors(e, &format!("records[{i}]")) {
                    Error::Validation(v) => errs.extend(v),
                    other => return Err(other),
                },
            }
        }
        if !errs.is_empty() {
            return Err(Error::Validation(errs));
        }
        self.backend().insert_records(self.scope(), &self.ty, valid)
    }

    /// Reads a record.
    pub fn get(&self, id: Uuid) -> Result<Record> {
        self.backend().record(self.scope(), &self.ty, id)
    }

    /// [`Records::get`] with the data as the JSON text the backend read, for writing it
    /// out without parsing and serialising it again (what `ddms serve` answers a
    /// `GET` of a record with).
    pub fn get_raw(&self, id: Uuid) -> Result<RawRecord> {
        self.backend().record_raw(self.scope(), &self.ty, id)
    }

    /// Merges `patch` into the record (a `null` removes a field) and validates the
    /// result (editor). `expected_version` enables optimistic concurrency.
    pub fn patch(&self, id: Uuid, patch: &Value, expected_version: Option<i64>) -> Result<Record> {
        self.scope().require(Role::Editor, "changing a record")?;
        if !patch.is_object() {
            return Err(Error::invalid(
                "data",
                "not_an_object",
                "patch data must be a JSON object",
            ));
        }
        self.with_current_type(|me| {
            let ty = me.ty.clone();
            me.backend()
                .update_record(me.scope(), &me.ty, id, expected_version, &|cur| {
                    validate_patch(&ty, &cur.data, patch)
                })
        })
    }

    /// Replaces the record's data entirely (editor).
    pub fn replace(&self, id: Uuid, data: &Value, expected_version: Option<i64>) -> Result<Record> {
        self.scope().require(Role::Editor, "replacing a record")?;
        self.with_current_type(|me| {
            let data = validate(&me.ty, data)?;
            me.backend()
                .update_record(me.scope(), &me.ty, id, expected_version, &|_| {
                    Ok(data.clone())
                })
        })
    }

    /// Deletes the record (editor).
    pub fn delete(&self, id: Uuid, expected_version: Option<i64>) -> Result<()> {
        self.scope().require(Role::Editor, "deleting a record")?;
        self.backend()
            .delete_record(self.scope(), &self.ty, id, expected_version)
    }

    /// Checks the query (filter, sort, cursor, limit, fields) without running it.
    pub fn check_query(&self, q: &Query) -> Result<CheckedQuery> {
        let lookup = Lookup {
            backend: self.backend(),
            scope: self.scope(),
        };
        q.check(self.ty.clone(), &lookup, &self.tenant.store.cursor_key)
    }

    /// Runs a query: one page and the cursor of the next.
    pub fn query(&self, q: &Query) -> Result<Page<Record>> {
        self.with_current_type(|me| {
            let checked = me.check_query(q)?;
            let rows = me.backend().query_records(me.scope(), &checked)?;
            Ok(checked.into_page(rows, &me.tenant.store.cursor_key))
        })
    }

    /// [`Records::query`] with each record's data as the JSON text the backend read,
    /// for writing it out without parsing and serialising it again (what `ddms serve`
    /// answers lists with). Same records, same order, same cursor.
    pub fn query_raw(&self, q: &Query) -> Result<Page<RawRecord>> {
        if q.fields.is_some() {
            // A field selection edits the data: take the parsed path.
            let page = self.query(q)?;
            return Ok(Page {
                items: page
                    .items
                    .into_iter()
                    .map(RawRecord::from_record)
                    .collect::<Result<_>>()?,
                next_cursor: page.next_cursor,
            });
        }
        self.with_current_type(|me| {
            let checked = me.check_query(q)?;
            let rows = me.backend().query_records_raw(me.scope(), &checked)?;
            checked.into_raw_page(rows, &me.tenant.store.cursor_key)
        })
    }
}
