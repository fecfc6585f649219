//! Records: writes (field-value index rows and events follow by trigger, in the same
//! transaction) and checked queries compiled to SQL.

use ddms_core::query::CheckedQuery;
use ddms_core::{
    ConflictKind, Data, EntityType, Error, FieldError, Record, RecordStore, Result, Scope,
};
use diesel::{PgConnection, RunQueryDsl};
use serde_json::Value;
use uuid::Uuid;

use crate::backend::{PgBackend, TxError, TxResult};
use crate::rows::{stored_name, NamedRecordRow, RecordRow, RECORD_COLS};
use crate::sql::{Bind, Compiler, Sql};

impl PgBackend {
    /// Names the unique field behind a unique violation on a field-value table.
    fn unique_error(&self, ty: &EntityType, e: TxError) -> TxError {
        match e {
            TxError::Db(diesel::result::Error::DatabaseError(
                diesel::result::DatabaseErrorKind::UniqueViolation,
                info,
            )) if info.constraint_name().is_some_and(|c| c.starts_with("fv_")) => {
                let detail = info.details().unwrap_or_default().to_string();
                let g = self.meta.read();
                let field = g.get(&ty.id).and_then(|m| {
                    m.fields
                        .iter()
                        .find(|(_, f)| detail.contains(&f.id.to_string()))
                        .map(|(n, _)| n.clone())
                });
                let field = field.unwrap_or_else(|| "unique field".into());
                TxError::Core(Error::Conflict {
                    kind: ConflictKind::Unique,
                    message: format!("another {} already has this {field}", ty.name),
                    details: vec![FieldError::new(
                        &field,
                        "unique_violation",
                        format!("`{field}` must be unique"),
                    )],
                })
            }
            other => other,
        }
    }

    fn lock_record(
        c: &mut PgConnection,
        tenant: Uuid,
        ty: &EntityType,
        id: Uuid,
    ) -> TxResult<Record> {
        let mut s = Sql::new();
        s.push(&format!(
            "SELECT {RECORD_COLS} FROM records WHERE tenant_id = "
        ))
        .bind(Bind::Uuid(tenant))
        .push(" AND id = ")
        .bind(Bind::Uuid(id))
        .push(" AND entity_type_id = ")
        .bind(Bind::Uuid(ty.id))
        .push(" FOR UPDATE");
        let rows: Vec<RecordRow> = s.query().load(c)?;
        let r = rows
            .into_iter()
            .next()
            .ok_or_else(|| Error::not_found("record", id))?;
        Ok(r.into_record(ty.name.clone()))
    }
}

fn stale(id: Uuid, have: i64, want: i64) -> TxError {
    TxError::Core(Error::conflict(
        ConflictKind::StaleVersion,
        format!("record {id} is at version {have}, not {want}"),
    ))
}

impl RecordStore for PgBackend {
    fn insert_records(&self, sc: &Scope, ty: &EntityType, rows: Vec<Data>) -> Result<Vec<Record>> {
        let t = sc.tenant.0;
        let ids: Vec<Uuid> = rows.iter().map(|_| Uuid::new_v4()).collect();
        let data: Vec<Value> = rows.into_iter().map(Value::Object).collect();
        self.tx(sc, |c| {
            let mut s = Sql::new();
            let tb = s.param(Bind::Uuid(t));
            let tyb = s.param(Bind::Uuid(ty.id));
            let actor = s.param(Bind::Text(sc.actor.clone()));
            let idb = s.param(Bind::UuidArr(ids.clone()));
            let db = s.param(Bind::JsonArr(data.clone()));
            let vb = s.param(Bind::Int(ty.version));
            s.push(&format!(
                "INSERT INTO records (tenant_id, id, entity_type_id, data, created_by, updated_by) \
                 SELECT {tb}, u.id, {tyb}, u.data, {actor}, {actor} FROM unnest({idb}::uuid[], {db}::jsonb[]) WITH ORDINALITY AS u(id, data, n) \
                 WHERE EXISTS (SELECT 1 FROM entity_types WHERE tenant_id = {tb} AND id = {tyb} AND version = {vb}) \
                 ORDER BY u.n RETURNING {RECORD_COLS}"
            ));
            let out: Vec<RecordRow> = s.query().load(c).map_err(|e| self.unique_error(ty, e.into()))?;
            if out.len() != ids.len() {
                return Err(Error::conflict(ConflictKind::Concurrent, format!("entity type {} changed; retry", ty.name)).into());
            }
            let mut by_id: std::collections::HashMap<Uuid, Record> =
                out.into_iter().map(|r| (r.id, r.into_record(ty.name.clone()))).collect();
            Ok(ids.iter().filter_map(|id| by_id.remove(id)).collect())
        })
    }

    fn record(&self, sc: &Scope, ty: &EntityType, id: Uuid) -> Result<Record> {
        self.tx(sc, |c| {
            let mut s = Sql::new();
            s.push(&format!(
                "SELECT {RECORD_COLS} FROM records WHERE tenant_id = "
            ))
            .bind(Bind::Uuid(sc.tenant.0))
            .push(" AND id = ")
            .bind(Bind::Uuid(id))
            .push(" AND entity_type_id = ")
            .bind(Bind::Uuid(ty.id));
            let rows: Vec<RecordRow> = s.query().load(c)?;
            let r = rows
                .into_iter()
                .next()
                .ok_or_else(|| Error::not_found("record", id))?;
            Ok(r.into_record(ty.name.clone()))
        })
    }

    fn record_any(&self, sc: &Scope, id: Uuid) -> Result<Record> {
        self.tx(sc, |c| {
            let mut s = Sql::new();
            s.push("SELECT r.id, r.data, r.version, r.created_at, r.updated_at, r.created_by, r.updated_by, et.name AS entity_type \
                    FROM records r JOIN entity_types et ON et.tenant_id = r.tenant_id AND et.id = r.entity_type_id WHERE r.tenant_id = ")
                .bind(Bind::Uuid(sc.tenant.0))
                .push(" AND r.id = ")
                .bind(Bind::Uuid(id));
            let rows: Vec<NamedRecordRow> = s.query().load(c)?;
            let r = rows.into_iter().next().ok_or_else(|| Error::not_found("record", id))?;
            let name = stored_name(&r.entity_type)?;
            Ok(r.rec.into_record(name))
        })
    }

    fn update_record(
        &self,
        sc: &Scope,
        ty: &EntityType,
        id: Uuid,
        expected_version: Option<i64>,
        change: ddms_core::store::RecordChange<'_>,
    ) -> Result<Record> {
        let t = sc.tenant.0;
        self.tx(sc, |c| {
            let cur = Self::lock_record(c, t, ty, id)?;
            if let Some(v) = expected_version {
                if v != cur.version {
                    return Err(stale(id, cur.version, v));
                }
            }
            let data = change(&cur)?;
            let mut s = Sql::new();
            s.push("UPDATE records SET data = ")
                .bind(Bind::Json(Value::Object(data)))
                .push(", version = version + 1, updated_at = now(), updated_by = ")
                .bind(Bind::Text(sc.actor.clone()))
                .push(" WHERE tenant_id = ")
                .bind(Bind::Uuid(t))
                .push(" AND id = ")
                .bind(Bind::Uuid(id))
                .push(&format!(" RETURNING {RECORD_COLS}"));
            let rows: Vec<RecordRow> = s
                .query()
                .load(c)
                .map_err(|e| self.unique_error(ty, e.into()))?;
            let r = rows
                .into_iter()
                .next()
                .ok_or_else(|| Error::not_found("record", id))?;
            Ok(r.into_record(ty.name.clone()))
        })
    }

    fn delete_record(
        &self,
        sc: &Scope,
        ty: &EntityType,
        id: Uuid,
        expected_version: Option<i64>,
    ) -> Result<()> {
        let t = sc.tenant.0;
        self.tx(sc, |c| {
            let cur = Self::lock_record(c, t, ty, id)?;
            if let Some(v) = expected_version {
                if v != cur.version {
                    return Err(stale(id, cur.version, v));
                }
            }
            let mut s = Sql::new();
            let tb = s.param(Bind::Uuid(t));
            let ib = s.param(Bind::Uuid(id));
            s.push(&format!(
                "SELECT rt.name AS t FROM relations e JOIN relation_types rt ON rt.tenant_id = e.tenant_id AND rt.id = e.relation_type_id \
                 WHERE e.tenant_id = {tb} AND (e.source_id = {ib} OR e.target_id = {ib}) AND rt.on_delete = 'restrict' LIMIT 1"
            ));
            let restricted: Vec<crate::rows::TextRow> = s.query().load(c)?;
            if let Some(r) = restricted.first() {
                return Err(Error::conflict(
                    ConflictKind::Restricted,
                    format!("record {id} still has `{}` relations (on_delete: restrict)", r.t),
                )
                .into());
            }
            // Edges first, so their relation.deleted events precede record.deleted.
            let mut s = Sql::new();
            let tb = s.param(Bind::Uuid(t));
            let ib = s.param(Bind::Uuid(id));
            s.push(&format!(
                "DELETE FROM relations WHERE tenant_id = {tb} AND (source_id = {ib} OR target_id = {ib})"
            ));
            s.query().execute(c)?;
            let mut s = Sql::new();
            s.push("DELETE FROM records WHERE tenant_id = ")
                .bind(Bind::Uuid(t))
                .push(" AND id = ")
                .bind(Bind::Uuid(id));
            s.query().execute(c)?;
            Ok(())
        })
    }

    fn query_records(&self, sc: &Scope, q: &CheckedQuery) -> Result<Vec<Record>> {
        let sql = Compiler::new(sc.tenant.0, self).query(q, q.entity_type.id);
        self.tx(sc, |c| {
            let rows: Vec<RecordRow> = sql.query().load(c)?;
            Ok(rows
                .into_iter()
                .map(|r| r.into_record(q.entity_type.name.clone()))
                .collect())
        })
    }
}
