//! Row shapes read back from PostgreSQL.

use chrono::{DateTime, Utc};
use ddms_core::{Error, Name, Record};
use diesel::sql_types::{BigInt, Jsonb, Nullable, Text, Timestamptz, Uuid as SqlUuid};
use diesel::QueryableByName;
use uuid::Uuid;

#[derive(QueryableByName, Debug)]
pub(crate) struct RecordRow {
    #[diesel(sql_type = SqlUuid)]
    pub id: Uuid,
    #[diesel(sql_type = Jsonb)]
    pub data: serde_json::Value,
    #[diesel(sql_type = BigInt)]
    pub version: i64,
    #[diesel(sql_type = Timestamptz)]
    pub created_at: DateTime<Utc>,
    #[diesel(sql_type = Timestamptz)]
    pub updated_at: DateTime<Utc>,
    #[diesel(sql_type = Nullable<Text>)]
    pub created_by: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    pub updated_by: Option<String>,
}

impl RecordRow {
    pub fn into_record(self, entity_type: Name) -> Record {
        Record {
            id: self.id,
            entity_type,
            data: match self.data {
                serde_json::Value::Object(m) => m,
                _ => Default::default(),
            },
            version: self.version,
            created_at: self.created_at,
            updated_at: self.updated_at,
            created_by: self.created_by,
            updated_by: self.updated_by,
        }
    }
}

/// Record columns, for `SELECT`/`RETURNING` lists.
pub(crate) const RECORD_COLS: &str =
    "id, data, version, created_at, updated_at, created_by, updated_by";

#[derive(QueryableByName, Debug)]
pub(crate) struct NamedRecordRow {
    #[diesel(embed)]
    pub rec: RecordRow,
    #[diesel(sql_type = Text)]
    pub entity_type: String,
}

#[derive(QueryableByName, Debug)]
pub(crate) struct LockedRecordRow {
    #[diesel(embed)]
    pub rec: RecordRow,
    #[diesel(sql_type = BigInt)]
    pub type_version: i64,
}

#[derive(QueryableByName, Debug)]
pub(crate) struct IdRow {
    #[diesel(sql_type = SqlUuid)]
    pub id: Uuid,
}

#[derive(QueryableByName, Debug)]
pub(crate) struct CountRow {
    #[diesel(sql_type = BigInt)]
    pub n: i64,
}

#[derive(QueryableByName, Debug)]
pub(crate) struct TextRow {
    #[diesel(sql_type = Text)]
    pub t: String,
}

/// Parses a stored name (always valid: it was checked when written).
pub(crate) fn stored_name(s: &str) -> Result<Name, Error> {
    Name::parse(s).map_err(|m| Error::Internal(format!("stored name `{s}` is invalid: {m}")))
}
