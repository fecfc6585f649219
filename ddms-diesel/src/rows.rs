//! Row shapes read back from PostgreSQL.

use chrono::{DateTime, Utc};
use ddms_core::{Error, Name, RawRecord, Record};
use diesel::deserialize::{self, FromSql};
use diesel::pg::{Pg, PgValue};
use diesel::sql_types::{BigInt, Jsonb, Nullable, Text, Timestamptz, Uuid as SqlUuid};
use diesel::QueryableByName;
use serde_json::value::RawValue;
use uuid::Uuid;

/// Record columns ([`RECORD_COLS`]), with the data parsed (`serde_json::Value`) or as
/// JSON text ([`JsonText`], see [`RawRecordRow`]).
#[derive(QueryableByName, Debug)]
pub(crate) struct RecordRow<D = serde_json::Value> {
    #[diesel(sql_type = SqlUuid)]
    pub id: Uuid,
    #[diesel(sql_type = Jsonb)]
    pub data: D,
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

impl<D> RecordRow<D> {
    /// The record, its data converted by `data`.
    fn into_record_with<E>(self, entity_type: Name, data: impl FnOnce(D) -> E) -> Record<E> {
        Record {
            id: self.id,
            entity_type,
            data: data(self.data),
            version: self.version,
            created_at: self.created_at,
            updated_at: self.updated_at,
            created_by: self.created_by,
            updated_by: self.updated_by,
        }
    }
}

impl RecordRow {
    pub fn into_record(self, entity_type: Name) -> Record {
        self.into_record_with(entity_type, |v| match v {
            serde_json::Value::Object(m) => m,
            _ => Default::default(),
        })
    }
}

/// A `jsonb` value as the JSON text PostgreSQL sends it (binary format: a version byte,
/// then the text), without the spaces `jsonb` output puts after `:` and `,`: checked to
/// be JSON, not parsed into values.
#[derive(Debug)]
pub(crate) struct JsonText(pub Box<RawValue>);

impl FromSql<Jsonb, Pg> for JsonText {
    fn from_sql(value: PgValue<'_>) -> deserialize::Result<Self> {
        match value.as_bytes().split_first() {
            Some((1, text)) => Ok(JsonText(RawValue::from_string(compact_json(
                std::str::from_utf8(text)?,
            ))?)),
            _ => Err("unsupported jsonb encoding version".into()),
        }
    }
}

/// `text` without whitespace outside strings (the caller validates the result as JSON).
fn compact_json(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let (mut in_str, mut escaped, mut run) = (false, false, 0);
    // Byte-wise: every byte the scan acts on is ASCII, so each cut is a char boundary,
    // and the text between cuts is copied as it is.
    for (i, b) in text.bytes().enumerate() {
        if in_str {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_str = false;
            }
        } else if b == b'"' {
            in_str = true;
        } else if matches!(b, b' ' | b'\n' | b'\r' | b'\t') {
            out.push_str(&text[run..i]);
            run = i + 1;
        }
    }
    out.push_str(&text[run..]);
    out
}

/// [`RecordRow`] with the data as JSON text, for [`RawRecord`]s.
pub(crate) type RawRecordRow = RecordRow<JsonText>;

impl RawRecordRow {
    pub fn into_raw_record(self, entity_type: Name) -> RawRecord {
        self.into_record_with(entity_type, |d| d.0)
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

#[cfg(test)]
mod tests {
    use super::compact_json;

    #[test]
    fn compacting_keeps_strings_and_drops_separating_spaces() {
        let text = r#"{"a": [1, 2.5, {"b c": "x, y: \"z\" \\"}], "d": null, "e": true}"#;
        let compact = compact_json(text);
        assert_eq!(
            compact,
            r#"{"a":[1,2.5,{"b c":"x, y: \"z\" \\"}],"d":null,"e":true}"#
        );
        let a: serde_json::Value = serde_json::from_str(text).unwrap();
        let b: serde_json::Value = serde_json::from_str(&compact).unwrap();
        assert_eq!(a, b);
        assert_eq!(compact_json(r#"{"ü": "ä ö"}"#), r#"{"ü":"ä ö"}"#);
    }
}
