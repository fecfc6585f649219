//! A complete, thread-safe in-memory backend: for tests of services that embed DDMS,
//! and the reference every other backend is compared against.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use parking_lot::RwLock;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::entity_type::{EntityType, EntityTypeDef, FieldChange};
use crate::error::{ConflictKind, Error, FieldError, Result};
use crate::event::{Event, EventKind};
use crate::filter::eval::{matches, Neighbours};
use crate::filter::Scalar;
use crate::index::{IndexInfo, IndexState};
use crate::name::Name;
use crate::query::CheckedQuery;
use crate::record::{changed_fields, Data, Record};
use crate::relation::{
    Cardinality, Direction, NeighbourQuery, OnDelete, Relation, RelationType, RelationTypeDef,
};
use crate::store::{
    EventStore, IndexStore, RecordChange, RecordStore, RelationStore, SchemaStore, TenantStore,
    TypeChange,
};
use crate::tenant::{Scope, Tenant, TenantId};

/// The in-memory backend. Cheap to create; all state lives behind one lock.
#[derive(Debug, Default)]
pub struct MemoryBackend {
    state: RwLock<HashMap<TenantId, TenantData>>,
}

#[derive(Debug)]
struct IndexMeta {
    state: IndexState,
    error: Option<String>,
    updated_at: DateTime<Utc>,
}

#[derive(Debug)]
struct TenantData {
    tenant: Tenant,
    types: BTreeMap<Name, Arc<EntityType>>,
    records: HashMap<Uuid, Record>,
    relation_types: BTreeMap<Name, RelationType>,
    relations: BTreeMap<Uuid, Relation>,
    events: Vec<Event>,
    seq: i64,
    /// Events up to this seq may have been pruned: older cursors are expired.
    horizon: i64,
    indexes: HashMap<(Name, Name), IndexMeta>,
    /// Monotonic clock so that timestamps never go backwards within a tenant.
    last_time: DateTime<Utc>,
}

impl TenantData {
    fn now(&mut self) -> DateTime<Utc> {
        let mut t = Utc::now();
        if t <= self.last_time {
            t = self.last_time + chrono::Duration::microseconds(1);
        }
        // Microsecond precision, like PostgreSQL, so both backends order identically.
        t = DateTime::from_timestamp_micros(t.timestamp_micros()).unwrap_or(t);
        if t <= self.last_time {
            t = self.last_time + chrono::Duration::microseconds(1);
        }
        self.last_time = t;
        t
    }

    fn emit(
        &mut self,
        kind: EventKind,
        entity_type: Option<&Name>,
        subject: Uuid,
        payload: Value,
        actor: &str,
        at: DateTime<Utc>,
    ) {
        self.seq += 1;
        self.events.push(Event {
            seq: self.seq,
            kind,
            entity_type: entity_type.map(|n| n.to_string()),
            subject_id: subject,
            payload,
            actor: Some(actor.to_string()),
            at,
        });
    }

    fn prune(&mut self, older_than: std::time::Duration) -> u64 {
        // This tenant's clock may run a little ahead of the wall clock (see `now`).
        let now = Utc::now().max(self.last_time + chrono::Duration::microseconds(1));
        let cutoff = chrono::Duration::from_std(older_than)
            .ok()
            .and_then(|d| now.checked_sub_signed(d))
            .unwrap_or(DateTime::<Utc>::MIN_UTC);
        let n = self.events.iter().take_while(|e| e.at < cutoff).count();
        if let Some(last) = n.checked_sub(1).map(|i| self.events[i].seq) {
            self.horizon = self.horizon.max(last);
            self.events.drain(..n);
        }
        n as u64
    }

    fn ty(&self, name: &Name) -> Result<&Arc<EntityType>> {
        self.types
            .get(name)
            .ok_or_else(|| Error::not_found("entity type", name))
    }

    /// Unique-field check of `data` for a record `id` of type `ty` (ready indexes only).
    fn check_unique(
        &self,
        ty: &EntityType,
        id: Uuid,
        data: &Data,
        pending: &[(Uuid, &Data)],
    ) -> Result<()> {
        for f in ty.fields.iter().filter(|f| f.unique) {
            let ready = self
                .indexes
                .get(&(ty.name.clone(), f.name.clone()))
                .is_some_and(|m| m.state == IndexState::Ready);
            let (Some(class), Some(v)) = (f.kind.value_class(), data.get(f.name.as_str())) else {
                continue;
            };
            if !ready {
                continue;
            }
            let mine = Scalar::from_json(class, v);
            let clash = self
                .records
                .values()
                .filter(|r| r.entity_type == ty.name && r.id != id)
                .map(|r| (r.id, &r.data))
                .chain(pending.iter().map(|(i, d)| (*i, *d)))
                .filter(|(i, _)| *i != id)
                .any(|(_, d)| {
                    d.get(f.name.as_str())
                        .and_then(|x| Scalar::from_json(class, x))
                        == mine
                });
            if clash {
                return Err(Error::Conflict {
                    kind: ConflictKind::Unique,
                    message: format!("another {} already has this {}", ty.name, f.name),
                    details: vec![FieldError::new(
                        f.name.as_str(),
                        "unique_violation",
                        format!("`{}` must be unique", f.name),
                    )],
                });
            }
        }
        Ok(())
    }

    fn record_of(&self, ty: &EntityType, id: Uuid) -> Result<&Record> {
        self.records
            .get(&id)
            .filter(|r| r.entity_type == ty.name)
            .ok_or_else(|| Error::not_found("record", id))
    }

    fn delete_relation_inner(&mut self, id: Uuid, actor: &str, at: DateTime<Utc>) {
        if let Some(rel) = self.relations.remove(&id) {
            self.emit(
                EventKind::RelationDeleted,
                None,
                id,
                relation_payload(&rel),
                actor,
                at,
            );
        }
    }

    fn sync_indexes(&mut self, ty: &EntityType, at: DateTime<Utc>) {
        let name = ty.name.clone();
        self.indexes
            .retain(|(t, f), _| *t != name || ty.field(f.as_str()).is_some_and(|f| f.has_index()));
        for f in ty.fields.iter().filter(|f| f.has_index()) {
            let key = (name.clone(), f.name.clone());
            let (state, error) = if f.unique {
                self.unique_state(ty, f)
            } else {
                (IndexState::Ready, None)
            };
            match self.indexes.get_mut(&key) {
                Some(m) if m.state == state && m.error == error => {}
                Some(m) => {
                    m.state = state;
                    m.error = error;
                    m.updated_at = at;
                }
                None => {
                    self.indexes.insert(
                        key,
                        IndexMeta {
                            state,
                            error,
                            updated_at: at,
                        },
                    );
                }
            }
        }
    }

    fn unique_state(
        &self,
        ty: &EntityType,
        f: &crate::field::Field,
    ) -> (IndexState, Option<String>) {
        let Some(class) = f.kind.value_class() else {
            return (IndexState::Failed, Some("not indexable".into()));
        };
        let mut seen: Vec<Scalar> = Vec::new();
        let mut dups: Vec<String> = Vec::new();
        for r in self.records.values().filter(|r| r.entity_type == ty.name) {
            if let Some(v) = r
                .data
                .get(f.name.as_str())
                .and_then(|v| Scalar::from_json(class, v))
            {
                if seen.contains(&v) {
                    if dups.len() < 5 {
                        dups.push(v.to_json().to_string());
                    }
                } else {
                    seen.push(v);
                }
            }
        }
        if dups.is_empty() {
            (IndexState::Ready, None)
        } else {
            (
                IndexState::Failed,
                Some(format!(
                    "duplicate values for unique field {}: {}",
                    f.name,
                    dups.join(", ")
                )),
            )
        }
    }
}

fn relation_payload(r: &Relation) -> Value {
    json!({"type": r.relation_type, "source_id": r.source_id, "target_id": r.target_id, "data": r.data})
}

fn type_payload(t: &EntityType) -> Value {
    json!({"name": t.name, "label": t.label, "version": t.version, "fields": t.fields})
}

impl MemoryBackend {
    /// An empty backend.
    pub fn new() -> Self {
        Self::default()
    }

    /// Retention, as the PostgreSQL backend's `prune_events`: deletes, for every tenant,
    /// the prefix of its feed older than `older_than` and advances its horizon, so that
    /// reading after an older cursor fails with `CursorExpired`. Returns the number of
    /// events deleted.
    pub fn prune_events(&self, older_than: std::time::Duration) -> Result<u64> {
        let mut g = self.state.write();
        let mut deleted = 0;
        for t in g.values_mut() {
            deleted += t.prune(older_than);
        }
        Ok(deleted)
    }

    /// [`MemoryBackend::prune_events`] for one tenant.
    pub fn prune_tenant_events(&self, s: &Scope, older_than: std::time::Duration) -> Result<u64> {
        self.write(s, |t| Ok(t.prune(older_than)))
    }

    fn read<T>(&self, s: &Scope, f: impl FnOnce(&TenantData) -> Result<T>) -> Result<T> {
        let g = self.state.read();
        let t = g
            .get(&s.tenant)
            .ok_or_else(|| Error::not_found("tenant", s.tenant))?;
        f(t)
    }

    fn write<T>(&self, s: &Scope, f: impl FnOnce(&mut TenantData) -> Result<T>) -> Result<T> {
        let mut g = self.state.write();
        let t = g
            .get_mut(&s.tenant)
            .ok_or_else(|| Error::not_found("tenant", s.tenant))?;
        f(t)
    }
}

impl TenantStore for MemoryBackend {
    fn create_tenant(&self, id: TenantId, name: &str) -> Result<Tenant> {
        let mut g = self.state.write();
        if g.contains_key(&id) {
            return Err(Error::conflict(
                ConflictKind::AlreadyExists,
                format!("tenant {id} already exists"),
            ));
        }
        let now = Utc::now();
        let tenant = Tenant {
            id,
            name: name.to_string(),
            created_at: now,
        };
        g.insert(
            id,
            TenantData {
                tenant: tenant.clone(),
                types: BTreeMap::new(),
                records: HashMap::new(),
                relation_types: BTreeMap::new(),
                relations: BTreeMap::new(),
                events: Vec::new(),
                seq: 0,
                horizon: 0,
                indexes: HashMap::new(),
                last_time: now,
            },
        );
        Ok(tenant)
    }

    fn get_tenant(&self, id: TenantId) -> Result<Tenant> {
        self.state
            .read()
            .get(&id)
            .map(|t| t.tenant.clone())
            .ok_or_else(|| Error::not_found("tenant", id))
    }

    fn delete_tenant(&self, id: TenantId) -> Result<()> {
        self.state
            .write()
            .remove(&id)
            .map(|_| ())
            .ok_or_else(|| Error::not_found("tenant", id))
    }
}

impl SchemaStore for MemoryBackend {
    fn create_entity_type(&self, s: &Scope, def: &EntityTypeDef) -> Result<EntityType> {
        self.write(s, |t| {
            if t.types.contains_key(&def.name) {
                return Err(Error::conflict(
                    ConflictKind::AlreadyExists,
                    format!("entity type {} already exists", def.name),
                ));
            }
            let now = t.now();
            let ty = EntityType::first_version(Uuid::new_v4(), def, now);
            t.types.insert(ty.name.clone(), Arc::new(ty.clone()));
            t.sync_indexes(&ty, now);
            t.emit(
                EventKind::EntityTypeCreated,
                Some(&ty.name),
                ty.id,
                type_payload(&ty),
                &s.actor,
                now,
            );
            Ok(ty)
        })
    }

    fn entity_type(&self, s: &Scope, name: &Name) -> Result<Arc<EntityType>> {
        self.read(s, |t| t.ty(name).cloned())
    }

    fn entity_types(&self, s: &Scope) -> Result<Vec<EntityType>> {
        self.read(s, |t| Ok(t.types.values().map(|t| (**t).clone()).collect()))
    }

    fn update_entity_type(
        &self,
        s: &Scope,
        name: &Name,
        change: TypeChange<'_>,
    ) -> Result<EntityType> {
        self.write(s, |t| {
            let cur = t.ty(name)?.clone();
            let (def, changes) = change(&cur)?;
            let now = t.now();
            let ty = EntityType {
                id: cur.id,
                name: cur.name.clone(),
                label: def.label,
                fields: def.fields,
                version: cur.version + 1,
                created_at: cur.created_at,
                updated_at: now,
            };
            for c in &changes {
                if let FieldChange::Removed(f) = c {
                    for r in t.records.values_mut().filter(|r| r.entity_type == ty.name) {
                        r.data.remove(f.name.as_str());
                    }
                }
            }
            t.types.insert(ty.name.clone(), Arc::new(ty.clone()));
            t.sync_indexes(&ty, now);
            t.emit(
                EventKind::EntityTypeUpdated,
                Some(&ty.name),
                ty.id,
                type_payload(&ty),
                &s.actor,
                now,
            );
            Ok(ty)
        })
    }

    fn delete_entity_type(&self, s: &Scope, name: &Name) -> Result<()> {
        self.write(s, |t| {
            let ty = t.ty(name)?.clone();
            if let Some(rt) = t
                .relation_types
                .values()
                .find(|rt| rt.source == *name || rt.target == *name)
            {
                return Err(Error::conflict(
                    ConflictKind::InUse,
                    format!(
                        "entity type {name} is used by relation type {}; delete that first",
                        rt.name
                    ),
                ));
            }
            let now = t.now();
            let mut ids: Vec<(DateTime<Utc>, Uuid)> = t
                .records
                .values()
                .filter(|r| r.entity_type == *name)
                .map(|r| (r.created_at, r.id))
                .collect();
            ids.sort();
            for (_, id) in ids {
                if let Some(r) = t.records.remove(&id) {
                    t.emit(
                        EventKind::RecordDeleted,
                        Some(name),
                        id,
                        json!({"data": r.data, "version": r.version}),
                        &s.actor,
                        now,
                    );
                }
            }
            t.types.remove(name);
            t.indexes.retain(|(tn, _), _| tn != name);
            t.emit(
                EventKind::EntityTypeDeleted,
                Some(name),
                ty.id,
                type_payload(&ty),
                &s.actor,
                now,
            );
            Ok(())
        })
    }

    fn create_relation_type(&self, s: &Scope, def: &RelationTypeDef) -> Result<RelationType> {
        self.write(s, |t| {
            t.ty(&def.source)?;
            t.ty(&def.target)?;
            if t.relation_types.contains_key(&def.name) {
                return Err(Error::conflict(
                    ConflictKind::AlreadyExists,
                    format!("relation type {} already exists", def.name),
                ));
            }
            let now = t.now();
            let rt = RelationType {
                id: Uuid::new_v4(),
                name: def.name.clone(),
                source: def.source.clone(),
                target: def.target.clone(),
                cardinality: def.cardinality,
                on_delete: def.on_delete,
                created_at: now,
            };
            t.relation_types.insert(rt.name.clone(), rt.clone());
            t.emit(
                EventKind::RelationTypeCreated,
                None,
                rt.id,
                serde_json::to_value(&rt).unwrap_or(Value::Null),
                &s.actor,
                now,
            );
            Ok(rt)
        })
    }

    fn relation_type(&self, s: &Scope, name: &Name) -> Result<RelationType> {
        self.read(s, |t| {
            t.relation_types
                .get(name)
                .cloned()
                .ok_or_else(|| Error::not_found("relation type", name))
        })
    }

    fn relation_types(&self, s: &Scope) -> Result<Vec<RelationType>> {
        self.read(s, |t| Ok(t.relation_types.values().cloned().collect()))
    }

    fn delete_relation_type(&self, s: &Scope, name: &Name) -> Result<()> {
        self.write(s, |t| {
            let rt = t
                .relation_types
                .get(name)
                .cloned()
                .ok_or_else(|| Error::not_found("relation type", name))?;
            let now = t.now();
            let ids: Vec<Uuid> = t
                .relations
                .values()
                .filter(|r| r.relation_type == *name)
                .map(|r| r.id)
                .collect();
            for id in ids {
                t.delete_relation_inner(id, &s.actor, now);
            }
            t.relation_types.remove(name);
            t.emit(
                EventKind::RelationTypeDeleted,
                None,
                rt.id,
                serde_json::to_value(&rt).unwrap_or(Value::Null),
                &s.actor,
                now,
            );
            Ok(())
        })
    }
}

struct TenantNeighbours<'a>(&'a TenantData);

impl Neighbours for TenantNeighbours<'_> {
    fn any_neighbour(
        &self,
        id: Uuid,
        relation_type: &Name,
        direction: Direction,
        pred: &dyn Fn(&Record) -> bool,
    ) -> bool {
        self.0.relations.values().any(|r| {
            if r.relation_type != *relation_type {
                return false;
            }
            let other = match direction {
                Direction::In if r.target_id == id => r.source_id,
                Direction::Out if r.source_id == id => r.target_id,
                _ => return false,
            };
            self.0.records.get(&other).is_some_and(pred)
        })
    }
}

impl RecordStore for MemoryBackend {
    fn insert_records(&self, s: &Scope, ty: &EntityType, rows: Vec<Data>) -> Result<Vec<Record>> {
        self.write(s, |t| {
            let cur = t.ty(&ty.name)?.clone();
            if cur.version != ty.version || cur.id != ty.id {
                return Err(Error::conflict(
                    ConflictKind::Concurrent,
                    format!("entity type {} changed; retry", ty.name),
                ));
            }
            let ids: Vec<Uuid> = rows.iter().map(|_| Uuid::new_v4()).collect();
            let pending: Vec<(Uuid, &Data)> = ids.iter().copied().zip(rows.iter()).collect();
            for (i, (id, data)) in pending.iter().enumerate() {
                t.check_unique(&cur, *id, data, &pending[..i])?;
            }
            let now = t.now();
            let mut out = Vec::with_capacity(rows.len());
            for (id, data) in ids.into_iter().zip(rows) {
                let r = Record {
                    id,
                    entity_type: ty.name.clone(),
                    data,
                    version: 1,
                    created_at: now,
                    updated_at: now,
                    created_by: Some(s.actor.clone()),
                    updated_by: Some(s.actor.clone()),
                };
                t.emit(
                    EventKind::RecordCreated,
                    Some(&ty.name),
                    id,
                    json!({"data": r.data, "version": 1}),
                    &s.actor,
                    now,
                );
                t.records.insert(id, r.clone());
                out.push(r);
            }
            Ok(out)
        })
    }

    fn record(&self, s: &Scope, ty: &EntityType, id: Uuid) -> Result<Record> {
        self.read(s, |t| t.record_of(ty, id).cloned())
    }

    fn record_any(&self, s: &Scope, id: Uuid) -> Result<Record> {
        self.read(s, |t| {
            t.records
                .get(&id)
                .cloned()
                .ok_or_else(|| Error::not_found("record", id))
        })
    }

    fn update_record(
        &self,
        s: &Scope,
        ty: &EntityType,
        id: Uuid,
        expected_version: Option<i64>,
        change: RecordChange<'_>,
    ) -> Result<Record> {
        self.write(s, |t| {
            let cur_ty = t.ty(&ty.name)?.clone();
            let cur = t.record_of(&cur_ty, id)?.clone();
            // `change` validates against `ty`: refuse if the schema moved on since.
            if cur_ty.version != ty.version || cur_ty.id != ty.id {
                return Err(Error::conflict(
                    ConflictKind::Concurrent,
                    format!("entity type {} changed; retry", ty.name),
                ));
            }
            if let Some(v) = expected_version {
                if v != cur.version {
                    return Err(Error::conflict(
                        ConflictKind::StaleVersion,
                        format!("record {id} is at version {}, not {v}", cur.version),
                    ));
                }
            }
            let data = change(&cur)?;
            t.check_unique(&cur_ty, id, &data, &[])?;
            let now = t.now();
            let changed = changed_fields(&cur.data, &data);
            let r = Record {
                data,
                version: cur.version + 1,
                updated_at: now,
                updated_by: Some(s.actor.clone()),
                ..cur
            };
            t.emit(
                EventKind::RecordUpdated,
                Some(&ty.name),
                id,
                json!({"data": r.data, "changed": changed, "version": r.version}),
                &s.actor,
                now,
            );
            t.records.insert(id, r.clone());
            Ok(r)
        })
    }

    fn delete_record(
        &self,
        s: &Scope,
        ty: &EntityType,
        id: Uuid,
        expected_version: Option<i64>,
    ) -> Result<()> {
        self.write(s, |t| {
            let cur = t.record_of(ty, id)?.clone();
            if let Some(v) = expected_version {
                if v != cur.version {
                    return Err(Error::conflict(
                        ConflictKind::StaleVersion,
                        format!("record {id} is at version {}, not {v}", cur.version),
                    ));
                }
            }
            let edges: Vec<Relation> = t
                .relations
                .values()
                .filter(|r| r.source_id == id || r.target_id == id)
                .cloned()
                .collect();
            for e in &edges {
                let rt = t.relation_types.get(&e.relation_type);
                if rt.is_some_and(|rt| rt.on_delete == OnDelete::Restrict) {
                    return Err(Error::conflict(
                        ConflictKind::Restricted,
                        format!(
                            "record {id} still has `{}` relations (on_delete: restrict)",
                            e.relation_type
                        ),
                    ));
                }
            }
            let now = t.now();
            for e in edges {
                t.delete_relation_inner(e.id, &s.actor, now);
            }
            t.records.remove(&id);
            t.emit(
                EventKind::RecordDeleted,
                Some(&ty.name),
                id,
                json!({"data": cur.data, "version": cur.version}),
                &s.actor,
                now,
            );
            Ok(())
        })
    }

    fn query_records(&self, s: &Scope, q: &CheckedQuery) -> Result<Vec<Record>> {
        self.read(s, |t| {
            let n = TenantNeighbours(t);
            let mut rows: Vec<(Vec<Option<Scalar>>, &Record)> = t
                .records
                .values()
                .filter(|r| r.entity_type == q.entity_type.name)
                .filter(|r| q.filter.as_ref().is_none_or(|f| matches(f, r, &n)))
                .map(|r| (q.key_of(r), r))
                .filter(|(k, _)| {
                    q.after
                        .as_ref()
                        .is_none_or(|a| q.cmp_keys(k, a) == std::cmp::Ordering::Greater)
                })
                .collect();
            rows.sort_by(|a, b| q.cmp_keys(&a.0, &b.0));
            Ok(rows
                .into_iter()
                .take(q.limit + 1)
                .map(|(_, r)| r.clone())
                .collect())
        })
    }
}

impl RelationStore for MemoryBackend {
    fn create_relation(
        &self,
        s: &Scope,
        relation_type: &Name,
        source: Uuid,
        target: Uuid,
        data: Value,
    ) -> Result<Relation> {
        self.write(s, |t| {
            let rt = t
                .relation_types
                .get(relation_type)
                .cloned()
                .ok_or_else(|| Error::not_found("relation type", relation_type))?;
            let mut errs = Vec::new();
            for (what, id, want) in [
                ("source_id", source, &rt.source),
                ("target_id", target, &rt.target),
            ] {
                match t.records.get(&id) {
                    None => return Err(Error::not_found("record", id)),
                    Some(r) if r.entity_type != *want => errs.push(FieldError::new(
                        what,
                        "wrong_entity_type",
                        format!(
                            "relation type {} needs a {want} here, record {id} is a {}",
                            rt.name, r.entity_type
                        ),
                    )),
                    Some(_) => {}
                }
            }
            if !errs.is_empty() {
                return Err(Error::Validation(errs));
            }
            let same = |r: &&Relation| r.relation_type == rt.name;
            if t.relations
                .values()
                .filter(same)
                .any(|r| r.source_id == source && r.target_id == target)
            {
                return Err(Error::conflict(
                    ConflictKind::AlreadyExists,
                    format!("this {} relation already exists", rt.name),
                ));
            }
            let target_taken = t
                .relations
                .values()
                .filter(same)
                .any(|r| r.target_id == target);
            let source_taken = t
                .relations
                .values()
                .filter(same)
                .any(|r| r.source_id == source);
            let violated = match rt.cardinality {
                Cardinality::OneToOne => source_taken || target_taken,
                Cardinality::OneToMany => target_taken,
                Cardinality::ManyToMany => false,
            };
            if violated {
                return Err(Error::conflict(
                    ConflictKind::Cardinality,
                    format!(
                        "relation type {} is {:?}: the record already has one",
                        rt.name, rt.cardinality
                    )
                    .to_lowercase(),
                ));
            }
            let now = t.now();
            let rel = Relation {
                id: Uuid::new_v4(),
                relation_type: rt.name.clone(),
                source_id: source,
                target_id: target,
                data,
                created_at: now,
                created_by: Some(s.actor.clone()),
            };
            t.relations.insert(rel.id, rel.clone());
            t.emit(
                EventKind::RelationCreated,
                None,
                rel.id,
                relation_payload(&rel),
                &s.actor,
                now,
            );
            Ok(rel)
        })
    }

    fn relation(&self, s: &Scope, id: Uuid) -> Result<Relation> {
        self.read(s, |t| {
            t.relations
                .get(&id)
                .cloned()
                .ok_or_else(|| Error::not_found("relation", id))
        })
    }

    fn delete_relation(&self, s: &Scope, id: Uuid) -> Result<()> {
        self.write(s, |t| {
            if !t.relations.contains_key(&id) {
                return Err(Error::not_found("relation", id));
            }
            let now = t.now();
            t.delete_relation_inner(id, &s.actor, now);
            Ok(())
        })
    }

    fn neighbours(&self, s: &Scope, q: &NeighbourQuery) -> Result<Vec<Relation>> {
        self.read(s, |t| {
            let mut out: Vec<Relation> = t
                .relations
                .values()
                .filter(|r| {
                    q.relation_type
                        .as_ref()
                        .is_none_or(|n| r.relation_type == *n)
                })
                .filter(|r| match q.direction {
                    Direction::Out => r.source_id == q.record,
                    Direction::In => r.target_id == q.record,
                    Direction::Both => r.source_id == q.record || r.target_id == q.record,
                })
                .filter(|r| q.after.is_none_or(|a| r.id > a))
                .cloned()
                .collect();
            out.sort_by_key(|r| r.id);
            out.truncate(q.limit + 1);
            Ok(out)
        })
    }
}

impl EventStore for MemoryBackend {
    fn events_after(&self, s: &Scope, after: i64, limit: usize) -> Result<Vec<Event>> {
        self.read(s, |t| {
            if after < t.horizon {
                return Err(Error::CursorExpired { horizon: t.horizon });
            }
            let start = t.events.partition_point(|e| e.seq <= after);
            Ok(t.events[start..].iter().take(limit).cloned().collect())
        })
    }
}

impl IndexStore for MemoryBackend {
    fn indexes(&self, s: &Scope) -> Result<Vec<IndexInfo>> {
        self.read(s, |t| {
            let mut out: Vec<IndexInfo> = t
                .indexes
                .iter()
                .filter_map(|((tn, fname), m)| {
                    let f = t.types.get(tn)?.field(fname.as_str())?;
                    Some(IndexInfo {
                        entity_type: tn.clone(),
                        field: fname.clone(),
                        kind: f.kind.name().to_string(),
                        unique: f.unique,
                        state: m.state,
                        error: m.error.clone(),
                        updated_at: m.updated_at,
                    })
                })
                .collect();
            out.sort_by(|a, b| (&a.entity_type, &a.field).cmp(&(&b.entity_type, &b.field)));
            Ok(out)
        })
    }
}
