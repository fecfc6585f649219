//! Records: writes (field-value index rows and events follow by trigger, in the same
//! transaction) and checked queries compiled to SQL.

use ddms_core::query::CheckedQuery;
use ddms_core::{
    ConflictKind, Data, EntityType, Error, FieldError, RawRecord, Record, RecordStore, Result,
    Scope,
};
use diesel::pg::Pg;
use diesel::{PgConnection, QueryableByName, RunQueryDsl};
use serde_json::Value;
use uuid::Uuid;

use crate::backend::{PgBackend, TxError, TxResult};
use crate::group_insert::GroupKey;
use crate::rows::{stored_name, NamedRecordRow, RawRecordRow, RecordRow, RECORD_COLS};
use crate::sql::{class_table, Bind, Compiler, NoIndexes, Sql};

/// Tags a unique violation on a field-value table with its table, for [`PgBackend::name_unique`].
fn tag_unique(e: diesel::result::Error) -> TxError {
    use diesel::result::{DatabaseErrorKind, Error as D};
    if let D::DatabaseError(DatabaseErrorKind::UniqueViolation, info) = &e {
        if let Some(table) = info
            .constraint_name()
            .and_then(|c| c.strip_suffix("_unique"))
            .filter(|t| t.starts_with("fv_"))
        {
            return TxError::Core(Error::Conflict {
                kind: ConflictKind::Unique,
                message: "a value of a unique field is already taken".into(),
                details: vec![FieldError::new("", table, "")],
            });
        }
    }
    TxError::Db(e)
}

impl PgBackend {
    /// The record `id` of `ty`, read as `R` (record columns, see [`RECORD_COLS`]): one
    /// prepared statement.
    fn record_row<R>(&self, sc: &Scope, ty: &EntityType, id: Uuid) -> Result<R>
    where
        R: QueryableByName<Pg> + 'static,
    {
        self.once(sc, |c| {
            let mut s = Sql::new();
            s.push(&format!(
                "SELECT {RECORD_COLS} FROM records WHERE tenant_id = "
            ))
            .bind(Bind::Uuid(sc.tenant.0))
            .push(" AND id = ")
            .bind(Bind::Uuid(id))
            .push(" AND entity_type_id = ")
            .bind(Bind::Uuid(ty.id));
            let rows: Vec<R> = s.prepared().load(c)?;
            let r = rows
                .into_iter()
                .next()
                .ok_or_else(|| Error::not_found("record", id))?;
            Ok(r)
        })
    }

    /// Runs a checked query, reading the rows as `RecordRow<D>` (record columns, see
    /// [`RECORD_COLS`]).
    fn query_rows<D>(&self, sc: &Scope, q: &CheckedQuery) -> Result<Vec<RecordRow<D>>>
    where
        RecordRow<D>: QueryableByName<Pg> + 'static,
    {
        let t = sc.tenant.0;
        let ty = &q.entity_type;
        let sql = Compiler::new(t, self).query(q, ty.id, ty.version);
        // A list in the records' own order whose full query would be planned per call
        // is first tried as a bounded walk (prepared); see `Compiler::bounded_walk`.
        // A first page whose walk fell back lately goes straight to the full query.
        let first_page = q.after.is_none().then(|| (t, *q.fingerprint(), q.limit));
        let walk = match sql.stable_plan {
            true => None,
            false => Compiler::new(t, &NoIndexes).bounded_walk(q, ty.id, ty.version),
        }
        .filter(|_| !first_page.is_some_and(|k| self.walks.skip(&k)));
        // No common snapshot needed: the version check below only tells an empty
        // result from a changed type, and types only move forward.
        // Prepared only when its plan cannot depend on the values (`stable_plan`, see
        // `Compiler::query`) and the backend admits its text (`StableTexts`: a bounded
        // set); otherwise planned per call.
        self.once(sc, |c| {
            if let Some(walk) = &walk {
                let rows: Vec<RecordRow<D>> = self.walk_texts.statement(walk).load(c)?;
                // A full page (and the next one's first record): the walk's answer is
                // complete. So is a shorter one without a filter (every record walked
                // is in it, so the walk reached the end of the type; an empty one may
                // mean a changed type). Otherwise the full query gives the page.
                let whole = q.filter.is_none() && !rows.is_empty();
                if rows.len() == q.limit + 1 || whole {
                    self.walks.answered();
                    return Ok(rows);
                }
                self.walks.fell_back(first_page);
            }
            let rows: Vec<RecordRow<D>> = self.stable_texts.statement(&sql).load(c)?;
            if rows.is_empty() {
                // The query is guarded by the type's version: no rows may mean the
                // type changed since the query was checked. Tell the two apart.
                let mut s = Sql::new();
                s.push("SELECT count(*) AS n FROM entity_types WHERE tenant_id = ")
                    .bind(Bind::Uuid(t))
                    .push(" AND id = ")
                    .bind(Bind::Uuid(ty.id))
                    .push(" AND version = ")
                    .bind(Bind::Int(ty.version));
                let same: Vec<crate::rows::CountRow> = s.query().load(c)?;
                if same.first().is_none_or(|r| r.n == 0) {
                    self.types.forget(t, ty.name.as_str());
                    return Err(Error::conflict(
                        ConflictKind::Concurrent,
                        format!("entity type {} changed; retry", ty.name),
                    )
                    .into());
                }
            }
            Ok(rows)
        })
    }

    /// Names the unique field behind a unique violation tagged by [`tag_unique`]. Under
    /// RLS PostgreSQL omits the key from the error (it would leak values), so the field
    /// is found from the constraint's value class, and when several unique fields share
    /// it, by looking for the colliding value in a fresh transaction.
    fn name_unique(&self, sc: &Scope, ty: &EntityType, rows: &[&Data], e: Error) -> Error {
        let table = match &e {
            Error::Conflict {
                kind: ConflictKind::Unique,
                details,
                ..
            } if details.len() == 1 && details[0].field.is_empty() => details[0].code.clone(),
            _ => return e,
        };
        let candidates: Vec<&ddms_core::Field> = ty
            .fields
            .iter()
            .filter(|f| {
                f.unique
                    && f.kind
                        .value_class()
                        .is_some_and(|c| class_table(c).0 == table)
            })
            .collect();
        let field = match candidates.as_slice() {
            [one] => Some(one.name.to_string()),
            _ => candidates
                .iter()
                .find(|f| self.value_taken(sc, ty, f, rows))
                .map(|f| f.name.to_string()),
        };
        let field = field.unwrap_or_else(|| "unique field".into());
        Error::Conflict {
            kind: ConflictKind::Unique,
            message: format!("another {} already has this {field}", ty.name),
            details: vec![FieldError::new(
                &field,
                "unique_violation",
                format!("`{field}` must be unique"),
            )],
        }
    }

    /// True when a value of `f` in `rows` repeats within `rows` or is already taken.
    fn value_taken(
        &self,
        sc: &Scope,
        ty: &EntityType,
        f: &ddms_core::Field,
        rows: &[&Data],
    ) -> bool {
        let Some(class) = f.kind.value_class() else {
            return false;
        };
        let values: Vec<&Value> = rows.iter().filter_map(|d| d.get(f.name.as_str())).collect();
        let scalars: Vec<ddms_core::filter::Scalar> = values
            .iter()
            .filter_map(|v| ddms_core::filter::Scalar::from_json(class, v))
            .collect();
        if scalars
            .iter()
            .enumerate()
            .any(|(i, a)| scalars[..i].contains(a))
        {
            return true;
        }
        let Some(meta) = self
            .meta
            .read()
            .get(&ty.id)
            .and_then(|m| m.fields.get(f.name.as_str()).map(|x| x.id))
        else {
            return false;
        };
        let (table, _) = class_table(class);
        self.tx(sc, |c| {
            let mut s = Sql::new();
            s.push(&format!(
                "SELECT count(*) AS n FROM {table} WHERE tenant_id = "
            ))
            .bind(Bind::Uuid(sc.tenant.0))
            .push(" AND field_id = ")
            .bind(Bind::Uuid(meta))
            .push(" AND uniq AND v = ANY(")
            .bind(crate::sql::scalar_array(class, &scalars))
            .push(")");
            let n: Vec<crate::rows::CountRow> = s.query().load(c)?;
            Ok(n.first().is_some_and(|r| r.n > 0))
        })
        .unwrap_or(false)
    }

    /// Locks a record of `ty` for update; also returns the entity type's current version.
    fn lock_record(
        c: &mut PgConnection,
        tenant: Uuid,
        ty: &EntityType,
        id: Uuid,
    ) -> TxResult<(Record, i64)> {
        let mut s = Sql::new();
        s.push(
            "SELECT r.id, r.data, r.version, r.created_at, r.updated_at, r.created_by, r.updated_by, \
             (SELECT et.version FROM entity_types et WHERE et.tenant_id = r.tenant_id AND et.id = r.entity_type_id) AS type_version \
             FROM records r WHERE r.tenant_id = ",
        )
        .bind(Bind::Uuid(tenant))
        .push(" AND r.id = ")
        .bind(Bind::Uuid(id))
        .push(" AND r.entity_type_id = ")
        .bind(Bind::Uuid(ty.id))
        .push(" FOR UPDATE OF r");
        let rows: Vec<crate::rows::LockedRecordRow> = s.query().load(c)?;
        let r = rows
            .into_iter()
            .next()
            .ok_or_else(|| Error::not_found("record", id))?;
        Ok((r.rec.into_record(ty.name.clone()), r.type_version))
    }
}

impl PgBackend {
    /// Inserts `rows` in one statement (no grouping).
    fn insert_now(&self, sc: &Scope, ty: &EntityType, rows: &[Data]) -> Result<Vec<Record>> {
        let t = sc.tenant.0;
        let ids: Vec<Uuid> = rows.iter().map(|_| Uuid::new_v4()).collect();
        let rows_ref: Vec<&Data> = rows.iter().collect();
        let data: Vec<Value> = rows.iter().cloned().map(Value::Object).collect();
        // One statement: atomic without an explicit transaction.
        self.once(sc, |c| {
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
            let out: Vec<RecordRow> = s.prepared().load(c).map_err(tag_unique)?;
            if out.len() != ids.len() {
                self.types.forget(t, ty.name.as_str());
                return Err(Error::conflict(ConflictKind::Concurrent, format!("entity type {} changed; retry", ty.name)).into());
            }
            let mut by_id: std::collections::HashMap<Uuid, Record> =
                out.into_iter().map(|r| (r.id, r.into_record(ty.name.clone()))).collect();
            Ok(ids.iter().filter_map(|id| by_id.remove(id)).collect())
        })
        .map_err(|e| self.name_unique(sc, ty, &rows_ref, e))
    }
}

fn stale(id: Uuid, have: i64, want: i64) -> TxError {
    TxError::Core(Error::conflict(
        ConflictKind::StaleVersion,
        format!("record {id} is at version {have}, not {want}"),
    ))
}

impl RecordStore for PgBackend {
    fn insert_records(
        &self,
        sc: &Scope,
        ty: &EntityType,
        mut rows: Vec<Data>,
    ) -> Result<Vec<Record>> {
        if rows.len() != 1 {
            return self.insert_now(sc, ty, &rows);
        }
        let key = GroupKey {
            tenant: sc.tenant.0,
            actor: sc.actor.clone(),
            type_id: ty.id,
            type_version: ty.version,
        };
        let data = rows.pop().expect("one row");
        let rec = self
            .group
            .insert(&key, data, &|many| self.insert_now(sc, ty, many), &|one| {
                self.insert_now(sc, ty, std::slice::from_ref(one))?
                    .pop()
                    .ok_or_else(|| Error::Internal("insert returned no record".into()))
            })?;
        Ok(vec![rec])
    }

    fn record(&self, sc: &Scope, ty: &EntityType, id: Uuid) -> Result<Record> {
        let r: RecordRow = self.record_row(sc, ty, id)?;
        Ok(r.into_record(ty.name.clone()))
    }

    fn record_raw(&self, sc: &Scope, ty: &EntityType, id: Uuid) -> Result<RawRecord> {
        let r: RawRecordRow = self.record_row(sc, ty, id)?;
        Ok(r.into_raw_record(ty.name.clone()))
    }

    fn record_any(&self, sc: &Scope, id: Uuid) -> Result<Record> {
        self.once(sc, |c| {
            let mut s = Sql::new();
            s.push("SELECT r.id, r.data, r.version, r.created_at, r.updated_at, r.created_by, r.updated_by, et.name AS entity_type \
                    FROM records r JOIN entity_types et ON et.tenant_id = r.tenant_id AND et.id = r.entity_type_id WHERE r.tenant_id = ")
                .bind(Bind::Uuid(sc.tenant.0))
                .push(" AND r.id = ")
                .bind(Bind::Uuid(id));
            let rows: Vec<NamedRecordRow> = s.prepared().load(c)?;
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
        let mut attempted: Option<Data> = None;
        self.tx(sc, |c| {
            let (cur, type_version) = Self::lock_record(c, t, ty, id)?;
            if type_version != ty.version {
                self.types.forget(t, ty.name.as_str());
                return Err(Error::conflict(
                    ConflictKind::Concurrent,
                    format!("entity type {} changed; retry", ty.name),
                )
                .into());
            }
            if let Some(v) = expected_version {
                if v != cur.version {
                    return Err(stale(id, cur.version, v));
                }
            }
            let data = change(&cur)?;
            attempted = Some(data.clone());
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
            let rows: Vec<RecordRow> = s.query().load(c).map_err(tag_unique)?;
            let r = rows
                .into_iter()
                .next()
                .ok_or_else(|| Error::not_found("record", id))?;
            Ok(r.into_record(ty.name.clone()))
        })
        .map_err(|e| {
            let rows: Vec<&Data> = attempted.iter().collect();
            self.name_unique(sc, ty, &rows, e)
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
            let (cur, _) = Self::lock_record(c, t, ty, id)?;
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
        let rows: Vec<RecordRow> = self.query_rows(sc, q)?;
        let name = &q.entity_type.name;
        Ok(rows
            .into_iter()
            .map(|r| r.into_record(name.clone()))
            .collect())
    }

    fn query_records_raw(&self, sc: &Scope, q: &CheckedQuery) -> Result<Vec<RawRecord>> {
        let rows: Vec<RawRecordRow> = self.query_rows(sc, q)?;
        let name = &q.entity_type.name;
        Ok(rows
            .into_iter()
            .map(|r| r.into_raw_record(name.clone()))
            .collect())
    }
}
