//! Field-value rows encoded by a bulk load's client, beside the records, in PostgreSQL's
//! binary `COPY` format: what the record triggers' `(data->>name)::cast` would store,
//! without PostgreSQL reading every record back to derive them (the swapped path of
//! [`crate::bulk`]). Every value has been validated, and validation accepts only values
//! that PostgreSQL's casts accept too (see [`ddms_core::field::datetime_micros`]).

use std::cmp::Ordering;
use std::io::Write;

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

/// Appends the compact form of one field-value row of `f` for record `id` whose value is
/// `v` (`None`: absent): the record id (16 bytes), then the value as binary COPY has it
/// (an `i32` length, -1 for NULL, and the bytes). [`FieldRows`] writes the whole rows.
pub(crate) fn put_row(
    buf: &mut Vec<u8>,
    f: &IndexedField,
    id: Uuid,
    v: Option<&Value>,
) -> Result<()> {
    let start = buf.len();
    buf.extend_from_slice(id.as_bytes());
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
    Ok(())
}

/// The field-value rows of one field (compact, from [`put_row`], in pieces), written
/// as binary COPY rows (`field_id, record_id, v, uniq`; `tenant_id` is the sealed
/// table's default) in the order of the table's value index: by value as PostgreSQL
/// orders it (text bytewise: the column's collation is "C"; NULL last), then by record
/// id. The builds of the value index and of the unique index then find their input
/// sorted; the primary key's build sorts instead (BENCHMARKS.md, "Seed": cheaper in
/// total, since two of a table's three indexes lead with the value).
#[derive(Debug)]
pub(crate) struct FieldRows {
    pub field: IndexedField,
    pub pieces: Vec<Vec<u8>>,
}

impl FieldRows {
    /// (record id, value) of the row at `at` (piece, offset).
    fn row(&self, (p, off): (u32, u32)) -> (&[u8], Option<&[u8]>) {
        let b = &self.pieces[p as usize][off as usize..];
        let len = i32::from_be_bytes([b[16], b[17], b[18], b[19]]);
        let v = usize::try_from(len).ok().map(|n| &b[20..20 + n]);
        (&b[..16], v)
    }

    /// Where each row starts, in index order. Sorted on a key that orders like the value
    /// (its first 8 bytes for text and uuids), then the record id; only text and uuids
    /// whose keys tie are compared in full.
    fn ordered(&self) -> Vec<SortKey> {
        let class = self.field.class;
        let mut keys: Vec<SortKey> = Vec::new();
        for (p, piece) in self.pieces.iter().enumerate() {
            let mut off = 0;
            while off < piece.len() {
                let (record, v) = self.row((p as u32, off as u32));
                let (null, value) = value_key(class, v);
                keys.push(SortKey {
                    value,
                    at: ((p as u64) << 32) | off as u64 | if null { NULL_AT } else { 0 },
                    record: record.try_into().unwrap_or_default(),
                });
                off += 20 + v.map_or(0, <[u8]>::len);
            }
        }
        // Keys that tie on distinct values: text and uuids longer than 8 bytes.
        let prefix = matches!(class, ValueClass::Text | ValueClass::Uuid);
        keys.sort_unstable_by(|a, b| {
            a.order()
                .cmp(&b.order())
                .then_with(|| {
                    if prefix && a.order() == b.order() {
                        cmp_values(class, self.row(a.at()).1, self.row(b.at()).1)
                    } else {
                        Ordering::Equal
                    }
                })
                .then_with(|| a.record.cmp(&b.record))
        });
        keys
    }

    /// Writes the rows, in index order, as binary COPY rows.
    pub(crate) fn write(&self, w: &mut dyn Write) -> std::io::Result<()> {
        let mut out = Vec::with_capacity(64 << 10);
        let uniq = [u8::from(self.field.unique)];
        for key in self.ordered() {
            let (record, v) = self.row(key.at());
            out.extend_from_slice(&4i16.to_be_bytes());
            put_field(&mut out, self.field.id.as_bytes());
            put_field(&mut out, record);
            match v {
                Some(v) => put_field(&mut out, v),
                None => out.extend_from_slice(&(-1i32).to_be_bytes()),
            }
            put_field(&mut out, &uniq);
            if out.len() >= 60 << 10 {
                w.write_all(&out)?;
                out.clear();
            }
        }
        w.write_all(&out)
    }
}

/// 32 bytes per row (the record id as bytes: no 16-byte alignment).
struct SortKey {
    value: u64,
    /// (piece, offset) of the row; a NULL value has the piece's top bit set (NULL last).
    at: u64,
    record: [u8; 16],
}

const NULL_AT: u64 = 1 << 63;

impl SortKey {
    fn order(&self) -> (bool, u64) {
        (self.at & NULL_AT != 0, self.value)
    }

    fn at(&self) -> (u32, u32) {
        (((self.at & !NULL_AT) >> 32) as u32, self.at as u32)
    }
}

/// A key that orders binary values of `class` as PostgreSQL does, NULL last: exactly for
/// the fixed-width classes up to 8 bytes, by the first 8 bytes for text (zero-padded:
/// text holds no NUL) and uuids.
fn value_key(class: ValueClass, v: Option<&[u8]>) -> (bool, u64) {
    let Some(v) = v else { return (true, 0) };
    (false, fixed_key(class, v))
}

fn fixed_key(class: ValueClass, v: &[u8]) -> u64 {
    const SIGN: u64 = 1 << 63;
    let mut b = [0u8; 8];
    let n = v.len().min(8);
    b[..n].copy_from_slice(&v[..n]);
    match class {
        ValueClass::Text | ValueClass::Uuid | ValueClass::Boolean => u64::from_be_bytes(b),
        ValueClass::Integer | ValueClass::Datetime => u64::from_be_bytes(b) ^ SIGN,
        ValueClass::Date => {
            let d = i32::from_be_bytes([b[0], b[1], b[2], b[3]]);
            (i64::from(d) as u64) ^ SIGN
        }
        ValueClass::Number => {
            let bits = u64::from_be_bytes(b);
            if bits & SIGN != 0 {
                !bits
            } else {
                bits | SIGN
            }
        }
    }
}

/// PostgreSQL's order of two binary values of `class` (NULL last, as a b-tree sorts
/// ascending).
fn cmp_values(class: ValueClass, a: Option<&[u8]>, b: Option<&[u8]>) -> Ordering {
    let (a, b) = match (a, b) {
        (Some(a), Some(b)) => (a, b),
        (a, b) => return a.is_none().cmp(&b.is_none()),
    };
    let i64_of = |x: &[u8]| x.try_into().map(i64::from_be_bytes).unwrap_or_default();
    match class {
        // Bytewise: text in the "C" collation, uuid, and bool (false < true).
        ValueClass::Text | ValueClass::Uuid | ValueClass::Boolean => a.cmp(b),
        ValueClass::Integer | ValueClass::Datetime => i64_of(a).cmp(&i64_of(b)),
        ValueClass::Date => {
            let i32_of = |x: &[u8]| x.try_into().map(i32::from_be_bytes).unwrap_or_default();
            i32_of(a).cmp(&i32_of(b))
        }
        // Finite, and -0 written as 0: the total order is the numeric one.
        ValueClass::Number => {
            f64::from_bits(i64_of(a) as u64).total_cmp(&f64::from_bits(i64_of(b) as u64))
        }
    }
}

/// Appends one field of a binary COPY row: its `i32` length, then its bytes.
pub(crate) fn put_field(buf: &mut Vec<u8>, bytes: &[u8]) {
    buf.extend_from_slice(&(bytes.len() as i32).to_be_bytes());
    buf.extend_from_slice(bytes);
}

/// The binary form of `(v->>'')::cast` for a validated value of `class`; false when `v`
/// has none (not a validated value).
fn put_value(buf: &mut Vec<u8>, class: ValueClass, v: &Value) -> bool {
    match (class, v) {
        (ValueClass::Text, Value::String(s)) => put_field(buf, s.as_bytes()),
        (ValueClass::Integer, Value::Number(n)) => match n.as_i64() {
            Some(i) => put_field(buf, &i.to_be_bytes()),
            None => return false,
        },
        // The stored JSON number is the shortest text of this f64 (or an integer), which
        // `float8in` reads back to the same f64; a JSON `-0.0` is stored as `0.0`.
        (ValueClass::Number, Value::Number(n)) => match n.as_f64() {
            Some(f) if f.is_finite() => put_field(buf, &(f + 0.0).to_bits().to_be_bytes()),
            _ => return false,
        },
        (ValueClass::Boolean, Value::Bool(b)) => put_field(buf, &[u8::from(*b)]),
        (ValueClass::Date, Value::String(s)) => match parse_date(s) {
            Some(d) if d.year() >= 1 => {
                let days = i64::from(d.num_days_from_ce()) - 719_163 - PG_EPOCH_DAYS;
                put_field(buf, &(days as i32).to_be_bytes())
            }
            _ => return false,
        },
        (ValueClass::Datetime, Value::String(s)) => match datetime_micros(s) {
            Some(us) => put_field(buf, &(us - PG_EPOCH_SECS * 1_000_000).to_be_bytes()),
            None => return false,
        },
        (ValueClass::Uuid, Value::String(s)) => match Uuid::try_parse(s) {
            Ok(u) => put_field(buf, u.as_bytes()),
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
    fn sort_keys_order_values_as_the_full_comparison_does() {
        let classes: [(ValueClass, Vec<Value>); 7] = [
            (
                ValueClass::Text,
                vec![
                    json!(""),
                    json!("a"),
                    json!("ab"),
                    json!("abcdefgh"),
                    json!("abcdefgha"),
                    json!("abcdefghi"),
                    json!("z"),
                    json!("é"),
                ],
            ),
            (
                ValueClass::Integer,
                vec![
                    json!(i64::MIN),
                    json!(-1),
                    json!(0),
                    json!(1),
                    json!(i64::MAX),
                ],
            ),
            (
                ValueClass::Number,
                vec![
                    json!(-1.7976931348623157e308),
                    json!(-1.5),
                    json!(-5e-324),
                    json!(-0.0),
                    json!(0.0),
                    json!(5e-324),
                    json!(2.5),
                    json!(1e300),
                ],
            ),
            (ValueClass::Boolean, vec![json!(false), json!(true)]),
            (
                ValueClass::Date,
                vec![
                    json!("0001-01-01"),
                    json!("1999-12-31"),
                    json!("2000-01-01"),
                    json!("9999-12-31"),
                ],
            ),
            (
                ValueClass::Datetime,
                vec![
                    json!("0001-01-01T00:00:00Z"),
                    json!("1999-12-31T23:59:59.999999Z"),
                    json!("2000-01-01T00:00:00Z"),
                    json!("9999-12-31T23:59:59Z"),
                ],
            ),
            (
                ValueClass::Uuid,
                vec![
                    json!("00000000-0000-0000-0000-000000000000"),
                    json!("00000000-0000-0000-0000-000000000001"),
                    json!("ffffffff-ffff-ffff-0000-000000000000"),
                    json!("ffffffff-ffff-ffff-ffff-ffffffffffff"),
                ],
            ),
        ];
        for (class, values) in classes {
            // Binary forms, without their length prefix; NULL (None) last.
            let mut bin: Vec<Option<Vec<u8>>> = values
                .iter()
                .map(|v| value(class, v.clone()).map(|b| b[4..].to_vec()))
                .collect();
            assert!(bin.iter().all(Option::is_some), "{class:?}");
            bin.push(None);
            for (i, a) in bin.iter().enumerate() {
                for (j, b) in bin.iter().enumerate() {
                    let full = cmp_values(class, a.as_deref(), b.as_deref());
                    // Listed ascending, distinct (-0 and 0 are one value).
                    let same_zero = class == ValueClass::Number && a.is_some() && a == b;
                    if !same_zero {
                        assert_eq!(full, i.cmp(&j), "{class:?} {i} {j}");
                    }
                    let (ka, kb) = (
                        value_key(class, a.as_deref()),
                        value_key(class, b.as_deref()),
                    );
                    if ka != kb {
                        assert_eq!(ka.cmp(&kb), full, "{class:?} {i} {j}: key order");
                    } else if !matches!(class, ValueClass::Text | ValueClass::Uuid) {
                        assert_eq!(full, Ordering::Equal, "{class:?} {i} {j}: equal keys");
                    }
                }
            }
        }
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
