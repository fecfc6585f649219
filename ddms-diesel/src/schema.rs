//! Tenants, entity types and relation types.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use ddms_core::entity_type::FieldChange;
use ddms_core::{
    Cardinality, ConflictKind, EntityType, EntityTypeDef, Error, Field, Name, OnDelete,
    RelationType, RelationTypeDef, Result, SchemaStore, Scope, Tenant, TenantId, TenantStore,
};
use diesel::sql_types::{BigInt, Jsonb, Text, Timestamptz, Uuid as SqlUuid};
use diesel::{PgConnection, QueryableByName, RunQueryDsl};
use uuid::Uuid;

use crate::backend::{FieldMeta, PgBackend, TxResult, TypeMeta};
use crate::rows::{stored_name, CountRow};
use crate::sql::{class_table, class_tag, Bind, Sql};

#[derive(QueryableByName)]
struct TenantRow {
    #[diesel(sql_type = SqlUuid)]
    id: Uuid,
    #[diesel(sql_type = Text)]
    name: String,
    #[diesel(sql_type = Timestamptz)]
    created_at: DateTime<Utc>,
}

/// Every tenant-owned table, children first: what purging a tenant deletes from.
pub(crate) const PURGE_ORDER: [&str; 14] = [
    "fv_text",
    "fv_int",
    "fv_float",
    "fv_bool",
    "fv_date",
    "fv_ts",
    "fv_uuid",
    "relations",
    "records",
    "relation_types",
    "fields",
    "entity_types",
    "events",
    "tenant_feeds",
];

/// Starts a tenant's change feed (its `tenant_feeds` row, counter at 0): with a new
/// tenant, and again when a bulk load replaces its schema rows.
pub(crate) fn insert_feed(c: &mut PgConnection, tenant: Uuid) -> diesel::QueryResult<usize> {
    let mut s = Sql::new();
    s.push("INSERT INTO tenant_feeds (tenant_id) VALUES (")
        .bind(Bind::Uuid(tenant))
        .push(")");
    s.query().execute(c)
}

impl TenantStore for PgBackend {
    fn create_tenant(&self, id: TenantId, name: &str) -> Result<Tenant> {
        self.tx_as(id.0, "system", &mut |c| {
            let mut s = Sql::new();
            s.push("INSERT INTO tenants (id, name) VALUES (")
                .bind(Bind::Uuid(id.0))
                .push(", ")
                .bind(Bind::Text(name.to_string()))
                .push(") ON CONFLICT (id) DO NOTHING RETURNING id, name, created_at");
            let rows: Vec<TenantRow> = s.query().load(c)?;
            let Some(r) = rows.into_iter().next() else {
                return Err(Error::conflict(
                    ConflictKind::AlreadyExists,
                    format!("tenant {id} already exists"),
                )
                .into());
            };
            insert_feed(c, id.0)?;
            Ok(Tenant {
                id: TenantId(r.id),
                name: r.name,
                created_at: r.created_at,
            })
        })
    }

    fn get_tenant(&self, id: TenantId) -> Result<Tenant> {
        self.tx_as(id.0, "system", &mut |c| {
            let mut s = Sql::new();
            s.push("SELECT id, name, created_at FROM tenants WHERE id = ")
                .bind(Bind::Uuid(id.0));
            let rows: Vec<TenantRow> = s.query().load(c)?;
            let r = rows
                .into_iter()
                .next()
                .ok_or_else(|| Error::not_found("tenant", id))?;
            Ok(Tenant {
                id: TenantId(r.id),
                name: r.name,
                created_at: r.created_at,
            })
        })
    }

    fn delete_tenant(&self, id: TenantId) -> Result<()> {
        self.tx_as(id.0, "system", &mut |c| {
            // Purge mode: no events (the feed goes too). Children first, each a
            // set-based delete on a tenant_id-led index.
            diesel::sql_query("SELECT set_config('ddms.purge', 'on', true)").execute(c)?;
            for table in PURGE_ORDER {
                let mut s = Sql::new();
                s.push(&format!("DELETE FROM {table} WHERE tenant_id = "))
                    .bind(Bind::Uuid(id.0));
                s.query().execute(c)?;
            }
            let mut s = Sql::new();
            s.push("DELETE FROM tenants WHERE id = ")
                .bind(Bind::Uuid(id.0));
            if s.query().execute(c)? == 0 {
                return Err(Error::not_found("tenant", id).into());
            }
            Ok(())
        })
    }
}

#[derive(QueryableByName)]
struct TypeRow {
    #[diesel(sql_type = SqlUuid)]
    id: Uuid,
    #[diesel(sql_type = Text)]
    name: String,
    #[diesel(sql_type = Text)]
    label: String,
    #[diesel(sql_type = Jsonb)]
    definition: serde_json::Value,
    #[diesel(sql_type = BigInt)]
    version: i64,
    #[diesel(sql_type = Timestamptz)]
    created_at: DateTime<Utc>,
    #[diesel(sql_type = Timestamptz)]
    updated_at: DateTime<Utc>,
    #[diesel(sql_type = Jsonb)]
    meta: serde_json::Value,
}

const TYPE_SELECT: &str = "SELECT et.id, et.name, et.label, et.definition, et.version, et.created_at, et.updated_at, \
    COALESCE((SELECT jsonb_agg(jsonb_build_object('name', f.name, 'id', f.id, 'state', f.index_state)) \
              FROM fields f WHERE f.tenant_id = et.tenant_id AND f.entity_type_id = et.id), '[]'::jsonb) AS meta \
    FROM entity_types et WHERE et.tenant_id = ";

impl PgBackend {
    fn type_from_row(&self, r: TypeRow) -> Result<EntityType> {
        let fields: Vec<Field> = serde_json::from_value(r.definition).map_err(|e| {
            Error::Internal(format!("stored definition of {} is invalid: {e}", r.name))
        })?;
        let mut meta = TypeMeta {
            fields: Default::default(),
        };
        if let serde_json::Value::Array(items) = r.meta {
            for m in items {
                let name = m
                    .get("name")
                    .and_then(|v| v.as_str())
                    .unwrap_or_default()
                    .to_string();
                let id = m
                    .get("id")
                    .and_then(|v| v.as_str())
                    .and_then(|s| Uuid::parse_str(s).ok());
                let state = m.get("state").and_then(|v| v.as_str()).map(str::to_string);
                if let Some(id) = id {
                    meta.fields.insert(name, FieldMeta { id, state });
                }
            }
        }
        self.remember(r.id, meta);
        Ok(EntityType {
            id: r.id,
            name: stored_name(&r.name)?,
            label: r.label,
            fields,
            version: r.version,
            created_at: r.created_at,
            updated_at: r.updated_at,
        })
    }

    pub(crate) fn load_type(
        &self,
        c: &mut PgConnection,
        tenant: Uuid,
        name: &str,
        lock: bool,
    ) -> TxResult<EntityType> {
        let mut s = Sql::new();
        s.push(TYPE_SELECT)
            .bind(Bind::Uuid(tenant))
            .push(" AND et.name = ")
            .bind(Bind::Text(name.to_string()));
        if lock {
            s.push(" FOR UPDATE OF et");
        }
        let rows: Vec<TypeRow> = s.query().load(c)?;
        let r = rows
            .into_iter()
            .next()
            .ok_or_else(|| Error::not_found("entity type", name))?;
        Ok(self.type_from_row(r)?)
    }

    fn type_has_records(c: &mut PgConnection, tenant: Uuid, type_id: Uuid) -> TxResult<bool> {
        let mut s = Sql::new();
        s.push("SELECT count(*) AS n FROM (SELECT 1 FROM records WHERE tenant_id = ")
            .bind(Bind::Uuid(tenant))
            .push(" AND entity_type_id = ")
            .bind(Bind::Uuid(type_id))
            .push(" LIMIT 1) x");
        let rows: Vec<CountRow> = s.query().load(c)?;
        Ok(rows.first().is_some_and(|r| r.n > 0))
    }

    pub(crate) fn insert_field(
        c: &mut PgConnection,
        tenant: Uuid,
        type_id: Uuid,
        f: &Field,
        has_records: bool,
    ) -> TxResult<()> {
        Self::insert_field_with_id(c, tenant, type_id, Uuid::new_v4(), f, has_records)
    }

    /// [`PgBackend::insert_field`] with a field id chosen by the caller (the bulk loader
    /// writes field-value rows before it declares the fields).
    pub(crate) fn insert_field_with_id(
        c: &mut PgConnection,
        tenant: Uuid,
        type_id: Uuid,
        field_id: Uuid,
        f: &Field,
        has_records: bool,
    ) -> TxResult<()> {
        let state = match (f.has_index(), has_records) {
            (false, _) => None,
            (true, false) => Some("ready"),
            (true, true) => Some("pending"),
        };
        let mut s = Sql::new();
        s.push("INSERT INTO fields (tenant_id, id, entity_type_id, name, kind, value_class, is_unique, index_state) VALUES (")
            .bind(Bind::Uuid(tenant))
            .push(", ")
            .bind(Bind::Uuid(field_id))
            .push(", ")
            .bind(Bind::Uuid(type_id))
            .push(", ")
            .bind(Bind::Text(f.name.to_string()))
            .push(", ")
            .bind(Bind::Text(f.kind.name().to_string()))
            .push(", ");
        match f.kind.value_class() {
            Some(c) => s.bind(Bind::Text(class_tag(c).to_string())),
            None => s.push("NULL"),
        };
        s.push(", ").bind(Bind::Bool(f.unique)).push(", ");
        match state {
            Some(st) => s.bind(Bind::Text(st.to_string())),
            None => s.push("NULL"),
        };
        s.push(")");
        s.query().execute(c)?;
        Ok(())
    }

    /// Drops a field's index rows and sets its index state (NULL: no index).
    fn reset_field_index(
        c: &mut PgConnection,
        tenant: Uuid,
        type_id: Uuid,
        f: &Field,
        state: Option<&str>,
    ) -> TxResult<()> {
        let mut s = Sql::new();
        s.push("UPDATE fields SET is_unique = ")
            .bind(Bind::Bool(f.unique))
            .push(", index_error = NULL, backfill_after = NULL, index_updated_at = now(), index_state = ");
        match state {
            Some(st) => s.bind(Bind::Text(st.to_string())),
            None => s.push("NULL"),
        };
        s.push(" WHERE tenant_id = ")
            .bind(Bind::Uuid(tenant))
            .push(" AND entity_type_id = ")
            .bind(Bind::Uuid(type_id))
            .push(" AND name = ")
            .bind(Bind::Text(f.name.to_string()))
            .push(" RETURNING id");
        let ids: Vec<crate::rows::IdRow> = s.query().load(c)?;
        if let (Some(class), Some(id)) = (f.kind.value_class(), ids.first()) {
            let mut s = Sql::new();
            s.push(&format!(
                "DELETE FROM {} WHERE tenant_id = ",
                class_table(class).0
            ))
            .bind(Bind::Uuid(tenant))
            .push(" AND field_id = ")
            .bind(Bind::Uuid(id.id));
            s.query().execute(c)?;
        }
        Ok(())
    }
}

fn definition_json(fields: &[Field]) -> serde_json::Value {
    serde_json::to_value(fields).unwrap_or_else(|_| serde_json::Value::Array(Vec::new()))
}

#[derive(QueryableByName)]
struct RelationTypeRow {
    #[diesel(sql_type = SqlUuid)]
    id: Uuid,
    #[diesel(sql_type = Text)]
    name: String,
    #[diesel(sql_type = Text)]
    source: String,
    #[diesel(sql_type = Text)]
    target: String,
    #[diesel(sql_type = Text)]
    cardinality: String,
    #[diesel(sql_type = Text)]
    on_delete: String,
    #[diesel(sql_type = Timestamptz)]
    created_at: DateTime<Utc>,
}

const RELATION_TYPE_SELECT: &str = "SELECT rt.id, rt.name, s.name AS source, t.name AS target, rt.cardinality, rt.on_delete, rt.created_at \
    FROM relation_types rt JOIN entity_types s ON s.tenant_id = rt.tenant_id AND s.id = rt.source_type_id \
    JOIN entity_types t ON t.tenant_id = rt.tenant_id AND t.id = rt.target_type_id WHERE rt.tenant_id = ";

fn relation_type_from_row(r: RelationTypeRow) -> Result<RelationType> {
    Ok(RelationType {
        id: r.id,
        name: stored_name(&r.name)?,
        source: stored_name(&r.source)?,
        target: stored_name(&r.target)?,
        cardinality: match r.cardinality.as_str() {
            "one_to_one" => Cardinality::OneToOne,
            "one_to_many" => Cardinality::OneToMany,
            _ => Cardinality::ManyToMany,
        },
        on_delete: if r.on_delete == "restrict" {
            OnDelete::Restrict
        } else {
            OnDelete::Cascade
        },
        created_at: r.created_at,
    })
}

pub(crate) fn cardinality_str(c: Cardinality) -> &'static str {
    match c {
        Cardinality::OneToOne => "one_to_one",
        Cardinality::OneToMany => "one_to_many",
        Cardinality::ManyToMany => "many_to_many",
    }
}

impl SchemaStore for PgBackend {
    fn create_entity_type(&self, sc: &Scope, def: &EntityTypeDef) -> Result<EntityType> {
        let t = sc.tenant.0;
        self.tx(sc, |c| {
            let id = Uuid::new_v4();
            let mut s = Sql::new();
            s.push("INSERT INTO entity_types (tenant_id, id, name, label, definition) VALUES (")
                .bind(Bind::Uuid(t))
                .push(", ")
                .bind(Bind::Uuid(id))
                .push(", ")
                .bind(Bind::Text(def.name.to_string()))
                .push(", ")
                .bind(Bind::Text(def.label.clone()))
                .push(", ")
                .bind(Bind::Json(definition_json(&def.fields)))
                .push(") ON CONFLICT (tenant_id, name) DO NOTHING RETURNING id");
            let rows: Vec<crate::rows::IdRow> = s.query().load(c)?;
            if rows.is_empty() {
                return Err(Error::conflict(
                    ConflictKind::AlreadyExists,
                    format!("entity type {} already exists", def.name),
                )
                .into());
            }
            for f in &def.fields {
                Self::insert_field(c, t, id, f, false)?;
            }
            self.load_type(c, t, def.name.as_str(), false)
        })
    }

    fn entity_type(&self, sc: &Scope, name: &Name) -> Result<Arc<EntityType>> {
        if let Some(t) = self.types.get(sc.tenant.0, name.as_str()) {
            return Ok(t);
        }
        let t = Arc::new(self.tx(sc, |c| self.load_type(c, sc.tenant.0, name.as_str(), false))?);
        self.types.put(sc.tenant.0, t.clone());
        Ok(t)
    }

    fn entity_types(&self, sc: &Scope) -> Result<Vec<EntityType>> {
        self.tx(sc, |c| {
            let mut s = Sql::new();
            s.push(TYPE_SELECT)
                .bind(Bind::Uuid(sc.tenant.0))
                .push(" ORDER BY et.name");
            let rows: Vec<TypeRow> = s.query().load(c)?;
            Ok(rows
                .into_iter()
                .map(|r| self.type_from_row(r))
                .collect::<Result<Vec<_>>>()?)
        })
    }

    fn update_entity_type(
        &self,
        sc: &Scope,
        name: &Name,
        change: ddms_core::store::TypeChange<'_>,
    ) -> Result<EntityType> {
        let t = sc.tenant.0;
        self.types.forget(t, name.as_str());
        let out = self.tx(sc, |c| {
            let cur = self.load_type(c, t, name.as_str(), true)?;
            let (def, changes) = change(&cur)?;
            let has_records = Self::type_has_records(c, t, cur.id)?;
            for ch in &changes {
                match ch {
                    FieldChange::Added(f) => Self::insert_field(c, t, cur.id, f, has_records)?,
                    FieldChange::Removed(f) => {
                        Self::reset_field_index(c, t, cur.id, f, None)?;
                        let mut s = Sql::new();
                        s.push("DELETE FROM fields WHERE tenant_id = ")
                            .bind(Bind::Uuid(t))
                            .push(" AND entity_type_id = ")
                            .bind(Bind::Uuid(cur.id))
                            .push(" AND name = ")
                            .bind(Bind::Text(f.name.to_string()));
                        s.query().execute(c)?;
                        // Strip the values; versions stay, so no record events.
                        let mut s = Sql::new();
                        let k = s.param(Bind::Text(f.name.to_string()));
                        s.push(&format!(
                            "UPDATE records SET data = data - {k} WHERE tenant_id = "
                        ))
                        .bind(Bind::Uuid(t))
                        .push(" AND entity_type_id = ")
                        .bind(Bind::Uuid(cur.id))
                        .push(&format!(" AND data->{k} IS NOT NULL"));
                        s.query().execute(c)?;
                    }
                    FieldChange::Changed { old, new } => {
                        if old.has_index() != new.has_index() || old.unique != new.unique {
                            let state = match (new.has_index(), has_records) {
                                (false, _) => None,
                                (true, false) => Some("ready"),
                                (true, true) => Some("pending"),
                            };
                            Self::reset_field_index(c, t, cur.id, new, state)?;
                        }
                    }
                }
            }
            let mut s = Sql::new();
            s.push("UPDATE entity_types SET label = ")
                .bind(Bind::Text(def.label.clone()))
                .push(", definition = ")
                .bind(Bind::Json(definition_json(&def.fields)))
                .push(", version = version + 1, updated_at = now() WHERE tenant_id = ")
                .bind(Bind::Uuid(t))
                .push(" AND id = ")
                .bind(Bind::Uuid(cur.id));
            s.query().execute(c)?;
            self.load_type(c, t, name.as_str(), false)
        });
        self.types.forget(t, name.as_str());
        out
    }

    fn delete_entity_type(&self, sc: &Scope, name: &Name) -> Result<()> {
        let t = sc.tenant.0;
        self.types.forget(t, name.as_str());
        let out = self.tx(sc, |c| {
            let cur = self.load_type(c, t, name.as_str(), true)?;
            let mut s = Sql::new();
            s.push("SELECT name AS t FROM relation_types WHERE tenant_id = ")
                .bind(Bind::Uuid(t))
                .push(" AND (source_type_id = ")
                .bind(Bind::Uuid(cur.id))
                .push(" OR target_type_id = ")
                .bind(Bind::Uuid(cur.id))
                .push(") ORDER BY name LIMIT 1");
            let used: Vec<crate::rows::TextRow> = s.query().load(c)?;
            if let Some(rt) = used.first() {
                return Err(Error::conflict(
                    ConflictKind::InUse,
                    format!(
                        "entity type {name} is used by relation type {}; delete that first",
                        rt.t
                    ),
                )
                .into());
            }
            for stmt in [
                "DELETE FROM records WHERE tenant_id = ",
                "DELETE FROM entity_types WHERE tenant_id = ",
            ] {
                let mut s = Sql::new();
                s.push(stmt).bind(Bind::Uuid(t));
                s.push(if stmt.contains("records") {
                    " AND entity_type_id = "
                } else {
                    " AND id = "
                })
                .bind(Bind::Uuid(cur.id));
                s.query().execute(c)?;
            }
            Ok(())
        });
        self.types.forget(t, name.as_str());
        out
    }

    fn create_relation_type(&self, sc: &Scope, def: &RelationTypeDef) -> Result<RelationType> {
        let t = sc.tenant.0;
        self.tx(sc, |c| {
            let source = self.load_type(c, t, def.source.as_str(), false)?;
            let target = self.load_type(c, t, def.target.as_str(), false)?;
            let mut s = Sql::new();
            s.push("INSERT INTO relation_types (tenant_id, id, name, source_type_id, target_type_id, cardinality, on_delete) VALUES (")
                .bind(Bind::Uuid(t))
                .push(", ")
                .bind(Bind::Uuid(Uuid::new_v4()))
                .push(", ")
                .bind(Bind::Text(def.name.to_string()))
                .push(", ")
                .bind(Bind::Uuid(source.id))
                .push(", ")
                .bind(Bind::Uuid(target.id))
                .push(", ")
                .bind(Bind::Text(cardinality_str(def.cardinality).into()))
                .push(", ")
                .bind(Bind::Text(if def.on_delete == OnDelete::Restrict { "restrict" } else { "cascade" }.into()))
                .push(") ON CONFLICT (tenant_id, name) DO NOTHING RETURNING id");
            let rows: Vec<crate::rows::IdRow> = s.query().load(c)?;
            if rows.is_empty() {
                return Err(Error::conflict(ConflictKind::AlreadyExists, format!("relation type {} already exists", def.name)).into());
            }
            self.load_relation_type(c, t, def.name.as_str())
        })
    }

    fn relation_type(&self, sc: &Scope, name: &Name) -> Result<RelationType> {
        self.tx(sc, |c| {
            self.load_relation_type(c, sc.tenant.0, name.as_str())
        })
    }

    fn relation_types(&self, sc: &Scope) -> Result<Vec<RelationType>> {
        self.tx(sc, |c| {
            let mut s = Sql::new();
            s.push(RELATION_TYPE_SELECT)
                .bind(Bind::Uuid(sc.tenant.0))
                .push(" ORDER BY rt.name");
            let rows: Vec<RelationTypeRow> = s.query().load(c)?;
            Ok(rows
                .into_iter()
                .map(relation_type_from_row)
                .collect::<Result<Vec<_>>>()?)
        })
    }

    fn delete_relation_type(&self, sc: &Scope, name: &Name) -> Result<()> {
        let t = sc.tenant.0;
        self.tx(sc, |c| {
            let rt = self.load_relation_type(c, t, name.as_str())?;
            for stmt in [
                "DELETE FROM relations WHERE tenant_id = ",
                "DELETE FROM relation_types WHERE tenant_id = ",
            ] {
                let mut s = Sql::new();
                s.push(stmt).bind(Bind::Uuid(t));
                s.push(if stmt.contains("relations ") {
                    " AND relation_type_id = "
                } else {
                    " AND id = "
                })
                .bind(Bind::Uuid(rt.id));
                s.query().execute(c)?;
            }
            Ok(())
        })
    }
}

impl PgBackend {
    pub(crate) fn load_relation_type(
        &self,
        c: &mut PgConnection,
        tenant: Uuid,
        name: &str,
    ) -> TxResult<RelationType> {
        let mut s = Sql::new();
        s.push(RELATION_TYPE_SELECT)
            .bind(Bind::Uuid(tenant))
            .push(" AND rt.name = ")
            .bind(Bind::Text(name.to_string()));
        let rows: Vec<RelationTypeRow> = s.query().load(c)?;
        let r = rows
            .into_iter()
            .next()
            .ok_or_else(|| Error::not_found("relation type", name))?;
        Ok(relation_type_from_row(r)?)
    }
}
