//! Declared field indexes and their states.

use chrono::{DateTime, Utc};
use ddms_core::{IndexInfo, IndexState, IndexStore, Result, Scope};
use diesel::sql_types::{Bool, Nullable, Text, Timestamptz};
use diesel::{QueryableByName, RunQueryDsl};

use crate::backend::PgBackend;
use crate::rows::stored_name;
use crate::sql::{Bind, Sql};

#[derive(QueryableByName)]
struct IndexRow {
    #[diesel(sql_type = Text)]
    entity_type: String,
    #[diesel(sql_type = Text)]
    field: String,
    #[diesel(sql_type = Text)]
    kind: String,
    #[diesel(sql_type = Bool)]
    is_unique: bool,
    #[diesel(sql_type = Text)]
    index_state: String,
    #[diesel(sql_type = Nullable<Text>)]
    index_error: Option<String>,
    #[diesel(sql_type = Timestamptz)]
    index_updated_at: DateTime<Utc>,
}

impl IndexStore for PgBackend {
    fn indexes(&self, sc: &Scope) -> Result<Vec<IndexInfo>> {
        self.tx(sc, |c| {
            let mut s = Sql::new();
            s.push(
                "SELECT et.name AS entity_type, f.name AS field, f.kind, f.is_unique, f.index_state, f.index_error, f.index_updated_at \
                 FROM fields f JOIN entity_types et ON et.tenant_id = f.tenant_id AND et.id = f.entity_type_id \
                 WHERE f.tenant_id = ",
            )
            .bind(Bind::Uuid(sc.tenant.0))
            .push(" AND f.index_state IS NOT NULL ORDER BY et.name, f.name");
            let rows: Vec<IndexRow> = s.query().load(c)?;
            let mut out = Vec::with_capacity(rows.len());
            for r in rows {
                out.push(IndexInfo {
                    entity_type: stored_name(&r.entity_type)?,
                    field: stored_name(&r.field)?,
                    kind: r.kind,
                    unique: r.is_unique,
                    state: IndexState::parse(&r.index_state).unwrap_or(IndexState::Failed),
                    error: r.index_error,
                    updated_at: r.index_updated_at,
                });
            }
            Ok(out)
        })
    }
}
