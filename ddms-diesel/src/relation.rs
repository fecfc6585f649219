//! Relations: cardinality by partial unique indexes, same-transaction checks.

use chrono::{DateTime, Utc};
use ddms_core::{
    Cardinality, ConflictKind, Direction, Error, FieldError, Name, NeighbourQuery, Relation,
    RelationStore, Result, Scope,
};
use diesel::sql_types::{Jsonb, Nullable, Text, Timestamptz, Uuid as SqlUuid};
use diesel::{PgConnection, QueryableByName, RunQueryDsl};
use serde_json::Value;
use uuid::Uuid;

use crate::backend::{PgBackend, TxResult};
use crate::rows::stored_name;
use crate::sql::{Bind, Sql};

#[derive(QueryableByName)]
struct RelationRow {
    #[diesel(sql_type = SqlUuid)]
    id: Uuid,
    #[diesel(sql_type = Text)]
    relation_type: String,
    #[diesel(sql_type = SqlUuid)]
    source_id: Uuid,
    #[diesel(sql_type = SqlUuid)]
    target_id: Uuid,
    #[diesel(sql_type = Jsonb)]
    data: Value,
    #[diesel(sql_type = Timestamptz)]
    created_at: DateTime<Utc>,
    #[diesel(sql_type = Nullable<Text>)]
    created_by: Option<String>,
}

impl RelationRow {
    fn into_relation(self) -> Result<Relation> {
        Ok(Relation {
            id: self.id,
            relation_type: stored_name(&self.relation_type)?,
            source_id: self.source_id,
            target_id: self.target_id,
            data: self.data,
            created_at: self.created_at,
            created_by: self.created_by,
        })
    }
}

const RELATION_SELECT: &str = "SELECT e.id, rt.name AS relation_type, e.source_id, e.target_id, e.data, e.created_at, e.created_by \
    FROM relations e JOIN relation_types rt ON rt.tenant_id = e.tenant_id AND rt.id = e.relation_type_id WHERE e.tenant_id = ";

#[derive(QueryableByName)]
struct EndRow {
    #[diesel(sql_type = SqlUuid)]
    id: Uuid,
    #[diesel(sql_type = Text)]
    entity_type: String,
}

impl PgBackend {
    fn load_relation(c: &mut PgConnection, tenant: Uuid, id: Uuid) -> TxResult<Relation> {
        let mut s = Sql::new();
        s.push(RELATION_SELECT)
            .bind(Bind::Uuid(tenant))
            .push(" AND e.id = ")
            .bind(Bind::Uuid(id));
        let rows: Vec<RelationRow> = s.query().load(c)?;
        let r = rows
            .into_iter()
            .next()
            .ok_or_else(|| Error::not_found("relation", id))?;
        Ok(r.into_relation()?)
    }
}

impl RelationStore for PgBackend {
    fn create_relation(
        &self,
        sc: &Scope,
        relation_type: &Name,
        source: Uuid,
        target: Uuid,
        data: Value,
    ) -> Result<Relation> {
        let t = sc.tenant.0;
        self.tx(sc, |c| {
            let rt = self.load_relation_type(c, t, relation_type.as_str())?;
            // Lock both ends against a concurrent delete (which would otherwise cascade
            // the new edge away behind an on_delete: restrict check).
            let mut s = Sql::new();
            s.push("SELECT r.id, et.name AS entity_type FROM records r JOIN entity_types et ON et.tenant_id = r.tenant_id AND et.id = r.entity_type_id WHERE r.tenant_id = ")
                .bind(Bind::Uuid(t))
                .push(" AND r.id = ANY(")
                .bind(Bind::UuidArr(vec![source, target]))
                .push(") FOR KEY SHARE OF r");
            let ends: Vec<EndRow> = s.query().load(c)?;
            let mut errs = Vec::new();
            for (what, id, want) in [("source_id", source, &rt.source), ("target_id", target, &rt.target)] {
                match ends.iter().find(|e| e.id == id) {
                    None => return Err(Error::not_found("record", id).into()),
                    Some(e) if e.entity_type != want.as_str() => errs.push(FieldError::new(
                        what,
                        "wrong_entity_type",
                        format!("relation type {} needs a {want} here, record {id} is a {}", rt.name, e.entity_type),
                    )),
                    Some(_) => {}
                }
            }
            if !errs.is_empty() {
                return Err(Error::Validation(errs).into());
            }
            let mut s = Sql::new();
            let tb = s.param(Bind::Uuid(t));
            let rb = s.param(Bind::Uuid(rt.id));
            let sb = s.param(Bind::Uuid(source));
            let gb = s.param(Bind::Uuid(target));
            s.push(&format!(
                "SELECT id FROM relations WHERE tenant_id = {tb} AND relation_type_id = {rb} AND source_id = {sb} AND target_id = {gb}"
            ));
            let dup: Vec<crate::rows::IdRow> = s.query().load(c)?;
            if !dup.is_empty() {
                return Err(Error::conflict(ConflictKind::AlreadyExists, format!("this {} relation already exists", rt.name)).into());
            }
            let id = Uuid::new_v4();
            let mut s = Sql::new();
            s.push("INSERT INTO relations (tenant_id, id, relation_type_id, source_id, target_id, data, uniq_source, uniq_target, created_by) VALUES (")
                .bind(Bind::Uuid(t))
                .push(", ")
                .bind(Bind::Uuid(id))
                .push(", ")
                .bind(Bind::Uuid(rt.id))
                .push(", ")
                .bind(Bind::Uuid(source))
                .push(", ")
                .bind(Bind::Uuid(target))
                .push(", ")
                .bind(Bind::Json(data.clone()))
                .push(", ")
                .bind(Bind::Bool(rt.cardinality == Cardinality::OneToOne))
                .push(", ")
                .bind(Bind::Bool(rt.cardinality != Cardinality::ManyToMany))
                .push(", ")
                .bind(Bind::Text(sc.actor.clone()))
                .push(")");
            s.query().execute(c)?;
            Self::load_relation(c, t, id)
        })
    }

    fn relation(&self, sc: &Scope, id: Uuid) -> Result<Relation> {
        self.tx(sc, |c| Self::load_relation(c, sc.tenant.0, id))
    }

    fn delete_relation(&self, sc: &Scope, id: Uuid) -> Result<()> {
        self.tx(sc, |c| {
            let mut s = Sql::new();
            s.push("DELETE FROM relations WHERE tenant_id = ")
                .bind(Bind::Uuid(sc.tenant.0))
                .push(" AND id = ")
                .bind(Bind::Uuid(id));
            if s.query().execute(c)? == 0 {
                return Err(Error::not_found("relation", id).into());
            }
            Ok(())
        })
    }

    fn neighbours(&self, sc: &Scope, q: &NeighbourQuery) -> Result<Vec<Relation>> {
        self.tx(sc, |c| {
            let mut s = Sql::new();
            s.push(RELATION_SELECT).bind(Bind::Uuid(sc.tenant.0));
            let rec = s.param(Bind::Uuid(q.record));
            match q.direction {
                Direction::Out => s.push(&format!(" AND e.source_id = {rec}")),
                Direction::In => s.push(&format!(" AND e.target_id = {rec}")),
                Direction::Both => s.push(&format!(
                    " AND (e.source_id = {rec} OR e.target_id = {rec})"
                )),
            };
            if let Some(n) = &q.relation_type {
                s.push(" AND rt.name = ").bind(Bind::Text(n.to_string()));
            }
            if let Some(a) = q.after {
                s.push(" AND e.id > ").bind(Bind::Uuid(a));
            }
            s.push(" ORDER BY e.id LIMIT ")
                .bind(Bind::Int(q.limit as i64 + 1));
            let rows: Vec<RelationRow> = s.query().load(c)?;
            Ok(rows
                .into_iter()
                .map(RelationRow::into_relation)
                .collect::<Result<Vec<_>>>()?)
        })
    }
}
