//! Evaluating checked filters and sort keys on records in process (the in-memory
//! backend, and tests that compare a database against it).

use std::cmp::Ordering;

use serde_json::Value;
use uuid::Uuid;

use super::check::{CheckedFilter, Scalar, SysField, Target, TargetKind, TextOp};
use crate::name::Name;
use crate::record::Record;
use crate::relation::Direction;

/// Neighbour lookups for `related` predicates.
pub trait Neighbours {
    /// True when `id` has a neighbour over `relation_type` in `direction` for which
    /// `pred` holds.
    fn any_neighbour(
        &self,
        id: Uuid,
        relation_type: &Name,
        direction: Direction,
        pred: &dyn Fn(&Record) -> bool,
    ) -> bool;
}

/// No relations at all (for filters without `related`).
pub struct NoNeighbours;

impl Neighbours for NoNeighbours {
    fn any_neighbour(&self, _: Uuid, _: &Name, _: Direction, _: &dyn Fn(&Record) -> bool) -> bool {
        false
    }
}

/// The typed value of an orderable target on `r`, or `None` when missing.
pub fn value_of(r: &Record, target: &Target) -> Option<Scalar> {
    match target {
        Target::System(SysField::Id) => Some(Scalar::Uuid(r.id)),
        Target::System(SysField::CreatedAt) => Some(Scalar::Datetime(r.created_at)),
        Target::System(SysField::UpdatedAt) => Some(Scalar::Datetime(r.updated_at)),
        Target::Field { name, .. } => {
            let class = target.class()?;
            Scalar::from_json(class, r.data.get(name.as_str())?)
        }
    }
}

fn raw<'a>(r: &'a Record, target: &Target) -> Option<&'a Value> {
    match target {
        Target::Field { name, .. } => r.data.get(name.as_str()).filter(|v| !v.is_null()),
        Target::System(_) => None,
    }
}

/// True when `f` holds for `r`.
pub fn matches(f: &CheckedFilter, r: &Record, n: &dyn Neighbours) -> bool {
    match f {
        CheckedFilter::And(v) => v.iter().all(|f| matches(f, r, n)),
        CheckedFilter::Or(v) => v.iter().any(|f| matches(f, r, n)),
        CheckedFilter::Not(f) => !matches(f, r, n),
        CheckedFilter::Compare { target, op, value } => {
            value_of(r, target).is_some_and(|x| op.holds(x.cmp_same(value)))
        }
        CheckedFilter::In {
            target,
            negated,
            values,
        } => value_of(r, target)
            .is_some_and(|x| values.iter().any(|v| x.cmp_same(v) == Ordering::Equal) != *negated),
        CheckedFilter::Text { target, op, value } => match raw(r, target) {
            Some(Value::String(s)) => match op {
                TextOp::Contains => s.contains(value.as_str()),
                TextOp::StartsWith => s.starts_with(value.as_str()),
                TextOp::EndsWith => s.ends_with(value.as_str()),
            },
            _ => false,
        },
        CheckedFilter::ListContains { target, value } => {
            let item = match target {
                Target::Field {
                    kind: TargetKind::List(k),
                    ..
                } => crate::field::scalar_class(*k),
                _ => return false,
            };
            match raw(r, target) {
                Some(Value::Array(items)) => items
                    .iter()
                    .filter_map(|i| Scalar::from_json(item, i))
                    .any(|x| x.cmp_same(value) == Ordering::Equal),
                _ => false,
            }
        }
        CheckedFilter::JsonEq {
            target,
            negated,
            value,
        } => raw(r, target).is_some_and(|x| json_eq(x, value) != *negated),
        CheckedFilter::IsNull { target, is_null } => raw(r, target).is_none() == *is_null,
        CheckedFilter::Related {
            relation_type,
            direction,
            filter,
            ..
        } => n.any_neighbour(r.id, relation_type, *direction, &|other: &Record| {
            filter.as_ref().is_none_or(|f| matches(f, other, n))
        }),
    }
}

/// JSON equality as PostgreSQL's jsonb sees it: numbers compare by value.
pub fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_i64(), y.as_i64()) {
            (Some(i), Some(j)) => i == j,
            _ => x.as_f64() == y.as_f64(),
        },
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| json_eq(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| json_eq(v, w)))
        }
        _ => a == b,
    }
}

/// Compares two sort-key values: missing values sort after all others ascending (and
/// so first descending), as in PostgreSQL.
pub fn cmp_key(a: Option<&Scalar>, b: Option<&Scalar>, desc: bool) -> Ordering {
    let o = match (a, b) {
        (None, None) => Ordering::Equal,
        (None, Some(_)) => Ordering::Greater,
        (Some(_), None) => Ordering::Less,
        (Some(x), Some(y)) => x.cmp_same(y),
    };
    if desc {
        o.reverse()
    } else {
        o
    }
}
