//! Records: validated JSON objects of an entity type, and how they are checked.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::entity_type::EntityType;
use crate::error::{Error, FieldError, Result};
use crate::name::{truncate, Name};

/// A record's data: a JSON object.
pub type Data = Map<String, Value>;

/// A stored record. Its data is parsed ([`Data`]) unless it is a [`RawRecord`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record<D = Data> {
    /// Its id.
    pub id: Uuid,
    /// The entity type's name.
    pub entity_type: Name,
    /// Field values (an object; never contains nulls or unknown fields).
    pub data: D,
    /// Optimistic-concurrency version, 1 on creation, +1 per change.
    pub version: i64,
    /// Creation time.
    #[serde(serialize_with = "timestamp")]
    pub created_at: DateTime<Utc>,
    /// Last change.
    #[serde(serialize_with = "timestamp")]
    pub updated_at: DateTime<Utc>,
    /// Actor that created it.
    pub created_by: Option<String>,
    /// Actor that last changed it.
    pub updated_by: Option<String>,
}

/// Serialises a time exactly as chrono does (`2024-05-01T12:00:00.123456Z`: fractional
/// digits only as many as needed, in groups of three), without going through
/// `core::fmt`: two of these per record are a large part of writing a page of records.
fn timestamp<S: serde::Serializer>(
    t: &DateTime<Utc>,
    s: S,
) -> std::result::Result<S::Ok, S::Error> {
    use chrono::{Datelike, Timelike};
    let n = t.naive_utc();
    let (year, nano) = (n.year(), n.nanosecond());
    if !(0..=9999).contains(&year) || nano >= 1_000_000_000 {
        // Signed or five-digit years, leap seconds: chrono's own format.
        return t.serialize(s);
    }
    let mut b = [0u8; 30];
    let mut put = |at: usize, v: u32, width: usize| {
        let mut v = v;
        for i in (at..at + width).rev() {
            b[i] = b'0' + (v % 10) as u8;
            v /= 10;
        }
    };
    put(0, year as u32, 4);
    put(5, n.month(), 2);
    put(8, n.day(), 2);
    put(11, n.hour(), 2);
    put(14, n.minute(), 2);
    put(17, n.second(), 2);
    let mut len = 19;
    if nano != 0 {
        let (v, width) = if nano % 1_000_000 == 0 {
            (nano / 1_000_000, 3)
        } else if nano % 1_000 == 0 {
            (nano / 1_000, 6)
        } else {
            (nano, 9)
        };
        put(20, v, width);
        len = 20 + width;
    }
    for (i, c) in [
        (4, b'-'),
        (7, b'-'),
        (10, b'T'),
        (13, b':'),
        (16, b':'),
        (19, b'.'),
    ] {
        b[i] = c;
    }
    b[len] = b'Z';
    match std::str::from_utf8(&b[..=len]) {
        Ok(text) => s.serialize_str(text),
        Err(_) => t.serialize(s),
    }
}

/// A stored record whose data is the JSON text the backend read, passed through without
/// being parsed and serialised again: what a server writes into a list response. It
/// serialises exactly like a [`Record`] (object keys may come in another order).
pub type RawRecord = Record<Box<RawValue>>;

impl<D> Record<D> {
    /// The same record with other data.
    fn with_data<E>(self, data: E) -> Record<E> {
        Record {
            id: self.id,
            entity_type: self.entity_type,
            data,
            version: self.version,
            created_at: self.created_at,
            updated_at: self.updated_at,
            created_by: self.created_by,
            updated_by: self.updated_by,
        }
    }
}

impl RawRecord {
    /// Serialises a record's data.
    pub fn from_record(r: Record) -> Result<RawRecord> {
        let data = serde_json::value::to_raw_value(&r.data)
            .map_err(|e| Error::Internal(format!("record {}: {e}", r.id)))?;
        Ok(r.with_data(data))
    }

    /// Parses the data back into a [`Record`].
    pub fn to_record(&self) -> Result<Record> {
        let data: Data = serde_json::from_str(self.data.get()).map_err(|e| {
            Error::Internal(format!(
                "record {}: stored data is not a JSON object: {e}",
                self.id
            ))
        })?;
        Ok(self.clone().with_data(data))
    }
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
    unknown_fields(ty, obj, &mut errs);
    for f in &ty.fields {
        let path = f.name.as_str();
        match obj.get(path) {
            None | Some(Value::Null) => missing(f, &mut out, &mut errs),
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

/// Like [`validate`], on an owned value: values are normalised in place and only the
/// defaults are copied, so a valid record is validated without copying its values (the
/// bulk loader's path).
pub fn validate_owned(ty: &EntityType, data: Value) -> Result<Data> {
    let Value::Object(mut obj) = data else {
        return Err(Error::invalid(
            "data",
            "not_an_object",
            "record data must be a JSON object",
        ));
    };
    let mut errs: Vec<FieldError> = Vec::new();
    unknown_fields(ty, &obj, &mut errs);
    for f in &ty.fields {
        let path = f.name.as_str();
        match obj.get_mut(path) {
            Some(Value::Null) | None => {
                obj.remove(path);
                missing(f, &mut obj, &mut errs);
            }
            Some(v) => {
                if !f.check_value_mut(v, path, &mut errs) {
                    obj.remove(path);
                }
            }
        }
    }
    if errs.is_empty() {
        Ok(obj)
    } else {
        Err(Error::Validation(errs))
    }
}

/// An error for every key of `obj` that is not a field of `ty`.
fn unknown_fields(ty: &EntityType, obj: &Data, errs: &mut Vec<FieldError>) {
    for key in obj.keys() {
        if ty.field(key).is_none() {
            errs.push(FieldError::new(
                truncate(key, 80),
                "unknown_field",
                format!("`{}` is not a field of {}", truncate(key, 80), ty.name),
            ));
        }
    }
}

/// A field without a value: its default into `out`, or an error when it is required.
fn missing(f: &crate::Field, out: &mut Data, errs: &mut Vec<FieldError>) {
    let path = f.name.as_str();
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
    // `merged` is ours: validated in place rather than copied once more.
    validate_owned(ty, Value::Object(merged))
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

#[cfg(test)]
mod timestamp_tests {
    use chrono::{DateTime, TimeZone, Utc};

    #[derive(serde::Serialize)]
    struct Fast(#[serde(serialize_with = "super::timestamp")] DateTime<Utc>);

    #[test]
    fn timestamps_serialise_exactly_like_chrono() {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut times = vec![
            Utc.timestamp_opt(0, 0).unwrap(),
            Utc.timestamp_opt(-62_135_596_800, 0).unwrap(), // 0001-01-01
            Utc.timestamp_opt(253_402_300_799, 999_999_999).unwrap(), // 9999-12-31
            Utc.timestamp_opt(253_402_300_800, 0).unwrap(), // 10000-01-01
            Utc.timestamp_opt(-62_200_000_000, 5_000).unwrap(), // a negative year
            Utc.timestamp_opt(1_700_000_039, 1_500_000_000).unwrap(), // a leap second
        ];
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let secs = (x % 8_000_000_000) as i64 - 1_000_000_000;
            let nanos = match x % 4 {
                0 => 0,
                1 => (x >> 20) as u32 % 1000 * 1_000_000,
                2 => (x >> 20) as u32 % 1_000_000 * 1_000,
                _ => (x >> 20) as u32 % 1_000_000_000,
            };
            times.push(Utc.timestamp_opt(secs, nanos).unwrap());
        }
        for t in times {
            assert_eq!(
                serde_json::to_string(&Fast(t)).unwrap(),
                serde_json::to_string(&t).unwrap()
            );
        }
    }
}
