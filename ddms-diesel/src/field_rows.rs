//! Field-value rows encoded by a bulk load's client, beside the records, in PostgreSQL's
//! binary `COPY` format: what the record triggers' `(data->>name)::cast` would store,
//! without PostgreSQL reading every record back to derive them (the swapped path of
//! [`crate::bulk`]). Every value has been validated, and validation accepts only values
//! that PostgreSQL's casts accept too (see [`ddms_core::field::datetime_micros`]).

use chrono::Datelike;
use ddms_core::field::{datetime_micros, parse_date};
use ddms_core::{Error, Result, ValueClass};
use serde_json::Value;
use uuid::Uuid;

/// Seconds and days from the Unix epoch to PostgreSQL's (2000-01-01).
const PG_EPOCH_SECS: i64 = 946_684_800;
const PG_EPOCH_DAYS: i64 = 10_957;

/// An indexed field of an entity type: the trigger writes one field-value row per record
/// for it (`v` NULL when the record has no value).
#[derive(Debug, Clone)]
pub(crate) struct IndexedField {
    pub name: String,
    pub id: Uuid,
    pub class: ValueClass,
    pub unique: bool,
}

/// Appends one field-value row (`field_id, record_id, v, uniq`; `tenant_id` is the sealed
/// table's default) of `f` for record `id` whose value is `v` (`None`: absent).
pub(crate) fn put_row(
    buf: &mut Vec<u8>,
    f: &IndexedField,
    id: Uuid,
    v: Option<&Value>,
) -> Result<()> {
    let start = buf.len();
    buf.extend_from_slice(&4i16.to_be_bytes());
    put(buf, f.id.as_bytes());
    put(buf, id.as_bytes());
    let ok = match v {
        None => {
            buf.extend_from_slice(&(-1i32).to_be_bytes());
            true
        }
        Some(v) => put_value(buf, f.class, v),
    };
    if !ok {
        buf.truncate(start);
        return Err(Error::Internal(format!(
            "record {id}: field {} holds no {:?} value PostgreSQL accepts",
            f.name, f.class
        )));
    }
    put(buf, &[u8::from(f.unique)]);
    Ok(())
}

fn put(buf: &mut Vec<u8>, bytes: &[u8]) {
    buf.extend_from_slice(&(bytes.len() as i32).to_be_bytes());
    buf.extend_from_slice(bytes);
}

/// The binary form of `(v->>'')::cast` for a validated value of `class`; false when `v`
/// has none (not a validated value).
fn put_value(buf: &mut Vec<u8>, class: ValueClass, v: &Value) -> bool {
    match (class, v) {
        (ValueClass::Text, Value::String(s)) => put(buf, s.as_bytes()),
        (ValueClass::Integer, Value::Number(n)) => match n.as_i64() {
            Some(i) => put(buf, &i.to_be_bytes()),
            None => return false,
        },
        // The stored JSON number is the shortest text of this f64 (or an integer), which
        // `float8in` reads back to the same f64; a JSON `-0.0` is stored as `0.0`.
        (ValueClass::Number, Value::Number(n)) => match n.as_f64() {
            Some(f) if f.is_finite() => put(buf, &(f + 0.0).to_bits().to_be_bytes()),
            _ => return false,
        },
        (ValueClass::Boolean, Value::Bool(b)) => put(buf, &[u8::from(*b)]),
        (ValueClass::Date, Value::String(s)) => match parse_date(s) {
            Some(d) if d.year() >= 1 => {
                let days = i64::from(d.num_days_from_ce()) - 719_163 - PG_EPOCH_DAYS;
                put(buf, &(days as i32).to_be_bytes())
            }
            _ => return false,
        },
        (ValueClass::Datetime, Value::String(s)) => match datetime_micros(s) {
            Some(us) => put(buf, &(us - PG_EPOCH_SECS * 1_000_000).to_be_bytes()),
            None => return false,
        },
        (ValueClass::Uuid, Value::String(s)) => match Uuid::try_parse(s) {
            Ok(u) => put(buf, u.as_bytes()),
            Err(_) => return false,
        },
        _ => return false,
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn value(class: ValueClass, v: Value) -> Option<Vec<u8>> {
        let mut b = Vec::new();
        put_value(&mut b, class, &v).then_some(b)
    }

    #[test]
    fn values_take_postgresqls_binary_forms() {
        let be = |x: &[u8]| {
            let mut b = (x.len() as i32).to_be_bytes().to_vec();
            b.extend_from_slice(x);
            Some(b)
        };
        assert_eq!(value(ValueClass::Text, json!("é")), be("é".as_bytes()));
        assert_eq!(
            value(ValueClass::Integer, json!(-2)),
            be(&(-2i64).to_be_bytes())
        );
        assert_eq!(value(ValueClass::Integer, json!(1.5)), None);
        assert_eq!(
            value(ValueClass::Number, json!(-0.0)),
            be(&0f64.to_bits().to_be_bytes())
        );
        assert_eq!(
            value(ValueClass::Number, json!(7)),
            be(&7f64.to_bits().to_be_bytes())
        );
        assert_eq!(value(ValueClass::Boolean, json!(true)), be(&[1]));
        // `SELECT '…'::date - '2000-01-01'` on PostgreSQL 15.
        for (d, days) in [
            ("2000-01-01", 0i32),
            ("0001-01-01", -730_119),
            ("9999-12-31", 2_921_939),
            ("2024-02-29", 8825),
        ] {
            assert_eq!(
                value(ValueClass::Date, json!(d)),
                be(&days.to_be_bytes()),
                "{d}"
            );
        }
        assert_eq!(value(ValueClass::Date, json!("0000-01-01")), None);
        assert_eq!(
            value(ValueClass::Datetime, json!("2000-01-01T00:00:01.5Z")),
            be(&1_500_000i64.to_be_bytes())
        );
        assert_eq!(
            value(ValueClass::Datetime, json!("2024-01-01T00:00:00+16:00")),
            None
        );
        let u = Uuid::new_v4();
        assert_eq!(
            value(ValueClass::Uuid, json!(u.to_string())),
            be(u.as_bytes())
        );
        assert_eq!(value(ValueClass::Uuid, json!(1)), None);
    }
}
