//! Records: validated JSON objects of an entity type, and how they are checked.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::entity_type::EntityType;
use crate::error::{Error, FieldError, Result};
use crate::name::{truncate, Name};

/// A record's data: a JSON object.
pub type Data = Map<String, Value>;

/// A stored record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// Its id.
    pub id: Uuid,
    /// The entity type's name.
    pub entity_type: Name,
    /// Field values (never contains nulls or unknown fields).
    pub data: Data,
    /// Optimistic-concurrency version, 1 on creation, +1 per change.
    pub version: i64,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
    /// Actor that created it.
    pub created_by: Option<String>,
    /// Actor that last changed it.
    pub updated_by: Option<String>,
}

/// Checks `data` against `ty`: returns the normalised data with defaults applied, or
/// every problem at once.
pub fn validate(ty: &EntityType, data: &Value) -> Result<Data> {
    let Value::Object(obj) = data else {
        return Err(Error::invalid(
            "data",
            "not_an_object",
            "record data must be a JSON object",
        ));
    };
    validate_map(ty, obj)
}

/// Like [`validate`] on an already unwrapped object.
pub fn validate_map(ty: &EntityType, obj: &Data) -> Result<Data> {
    let mut errs: Vec<FieldError> = Vec::new();
    let mut out = Map::new();
    for key in obj.keys() {
        if ty.field(key).is_none() {
            errs.push(FieldError::new(
                truncate(key, 80),
                "unknown_field",
                format!("`{}` is not a field of {}", truncate(key, 80), ty.name),
            ));
        }
    }
    for f in &ty.fields {
        let path = f.name.as_str();
        match obj.get(path) {
            None | Some(Value::Null) => {
                if let Some(d) = &f.default {
                    out.insert(path.to_string(), d.clone());
                } else if f.required {
                    errs.push(FieldError::new(
                        path,
                        "required",
                        format!("`{path}` is required"),
                    ));
                }
            }
            Some(v) => {
                if let Some(v) = f.check_value(v, path, &mut errs) {
                    out.insert(path.to_string(), v);
                }
            }
        }
    }
    if errs.is_empty() {
        Ok(out)
    } else {
        Err(Error::Validation(errs))
    }
}

/// Merges a patch into `current` (a `null` value removes the field) and validates the
/// result as a whole.
pub fn validate_patch(ty: &EntityType, current: &Data, patch: &Value) -> Result<Data> {
    let Value::Object(p) = patch else {
        return Err(Error::invalid(
            "data",
            "not_an_object",
            "patch data must be a JSON object",
        ));
    };
    let mut merged = current.clone();
    for (k, v) in p {
        if v.is_null() {
            merged.remove(k);
        } else {
            merged.insert(k.clone(), v.clone());
        }
    }
    validate_map(ty, &merged)
}

/// The top-level fields whose values differ between `old` and `new`, sorted.
pub fn changed_fields(old: &Data, new: &Data) -> Vec<String> {
    let mut out: Vec<String> = new
        .iter()
        .filter(|(k, v)| old.get(*k) != Some(v))
        .map(|(k, _)| k.clone())
        .chain(old.keys().filter(|k| !new.contains_key(*k)).cloned())
        .collect();
    out.sort();
    out.dedup();
    out
}
