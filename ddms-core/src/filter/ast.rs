//! The raw filter AST and its JSON form.

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::error::{Error, Result};
use crate::relation::Direction;

/// Deepest nesting of and/or/not/related accepted.
pub const MAX_DEPTH: usize = 32;
/// Most predicates (including `related`) in one filter.
pub const MAX_CLAUSES: usize = 256;
/// Most values in an `in`/`not_in` list.
pub const MAX_IN_VALUES: usize = 1000;

/// Comparison operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    /// Equal.
    Eq,
    /// Not equal (a missing value matches neither `eq` nor `ne`).
    Ne,
    /// Less than.
    Lt,
    /// Less than or equal.
    Lte,
    /// Greater than.
    Gt,
    /// Greater than or equal.
    Gte,
    /// One of a non-empty list.
    In,
    /// None of a non-empty list (a missing value does not match).
    NotIn,
    /// Substring (text) or element (list).
    Contains,
    /// Text prefix.
    StartsWith,
    /// Text suffix.
    EndsWith,
    /// `value: true` matches missing values, `false` present ones.
    IsNull,
    /// `value: true` matches present values, `false` missing ones.
    Exists,
}

impl Op {
    /// Every operator.
    pub const ALL: [Op; 13] = [
        Op::Eq,
        Op::Ne,
        Op::Lt,
        Op::Lte,
        Op::Gt,
        Op::Gte,
        Op::In,
        Op::NotIn,
        Op::Contains,
        Op::StartsWith,
        Op::EndsWith,
        Op::IsNull,
        Op::Exists,
    ];

    /// The operator's JSON name.
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Eq => "eq",
            Op::Ne => "ne",
            Op::Lt => "lt",
            Op::Lte => "lte",
            Op::Gt => "gt",
            Op::Gte => "gte",
            Op::In => "in",
            Op::NotIn => "not_in",
            Op::Contains => "contains",
            Op::StartsWith => "starts_with",
            Op::EndsWith => "ends_with",
            Op::IsNull => "is_null",
            Op::Exists => "exists",
        }
    }

    /// Parses a JSON operator name.
    pub fn parse(s: &str) -> Option<Op> {
        Op::ALL.into_iter().find(|o| o.as_str() == s)
    }
}

/// An unchecked filter, as parsed from JSON.
#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    /// All must match (an empty list matches everything).
    And(Vec<Filter>),
    /// At least one must match (an empty list matches nothing).
    Or(Vec<Filter>),
    /// Must not match.
    Not(Box<Filter>),
    /// A predicate on a field.
    Pred {
        /// Field name (or `id`, `created_at`, `updated_at`).
        field: String,
        /// Operator.
        op: Op,
        /// Operand.
        value: Value,
    },
    /// Records with at least one neighbour over `relation_type` matching `filter`.
    Related {
        /// Relation type name.
        relation_type: String,
        /// `out`: the record is the source; `in`: the target.
        direction: Direction,
        /// Condition on the neighbour (none: any neighbour).
        filter: Option<Box<Filter>>,
    },
}

struct Parser {
    clauses: usize,
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

impl Parser {
    fn node(&mut self, v: &Value, path: &str, depth: usize) -> Result<Filter> {
        if depth > MAX_DEPTH {
            return Err(Error::filter(
                path,
                format!("filter is nested deeper than {MAX_DEPTH} levels"),
            ));
        }
        let Value::Object(o) = v else {
            return Err(Error::filter(
                path,
                format!("expected an object, got {}", kind_of(v)),
            ));
        };
        for key in ["and", "or"] {
            if let Some(list) = o.get(key) {
                only_key(o, key, path)?;
                let Value::Array(items) = list else {
                    return Err(Error::filter(
                        format!("{path}.{key}"),
                        "expected a list of filters",
                    ));
                };
                let mut out = Vec::with_capacity(items.len());
                for (i, item) in items.iter().enumerate() {
                    out.push(self.node(item, &format!("{path}.{key}[{i}]"), depth + 1)?);
                }
                return Ok(if key == "and" {
                    Filter::And(out)
                } else {
                    Filter::Or(out)
                });
            }
        }
        if let Some(inner) = o.get("not") {
            only_key(o, "not", path)?;
            return Ok(Filter::Not(Box::new(self.node(
                inner,
                &format!("{path}.not"),
                depth + 1,
            )?)));
        }
        if let Some(rel) = o.get("related") {
            only_key(o, "related", path)?;
            self.count(path)?;
            let rp = format!("{path}.related");
            let Value::Object(r) = rel else {
                return Err(Error::filter(
                    rp,
                    "expected an object with `type`, `direction` and `where`",
                ));
            };
            for k in r.keys() {
                if !matches!(k.as_str(), "type" | "direction" | "where") {
                    return Err(Error::filter(
                        &rp,
                        format!("unknown key `{}`", crate::name::truncate(k, 40)),
                    ));
                }
            }
            let relation_type = match r.get("type") {
                Some(Value::String(s)) => s.clone(),
                _ => {
                    return Err(Error::filter(
                        format!("{rp}.type"),
                        "expected the relation type name",
                    ))
                }
            };
            let direction = match r.get("direction") {
                None => Direction::Out,
                Some(Value::String(s)) if s == "out" => Direction::Out,
                Some(Value::String(s)) if s == "in" => Direction::In,
                Some(_) => {
                    return Err(Error::filter(
                        format!("{rp}.direction"),
                        "expected `out` or `in`",
                    ))
                }
            };
            let filter = match r.get("where") {
                None | Some(Value::Null) => None,
                Some(w) => Some(Box::new(self.node(w, &format!("{rp}.where"), depth + 1)?)),
            };
            return Ok(Filter::Related {
                relation_type,
                direction,
                filter,
            });
        }
        self.count(path)?;
        for k in o.keys() {
            if !matches!(k.as_str(), "field" | "op" | "value") {
                return Err(Error::filter(
                    path,
                    format!(
                        "unknown key `{}`: a filter is {{field, op, value}}, and, or, not or related",
                        crate::name::truncate(k, 40)
                    ),
                ));
            }
        }
        let field = match o.get("field") {
            Some(Value::String(s)) => s.clone(),
            Some(_) => {
                return Err(Error::filter(
                    format!("{path}.field"),
                    "expected a field name",
                ))
            }
            None => {
                return Err(Error::filter(
                    path,
                    "expected a predicate {field, op, value} or one of and, or, not, related",
                ))
            }
        };
        let op = match o.get("op") {
            Some(Value::String(s)) => Op::parse(s).ok_or_else(|| {
                Error::filter(
                    format!("{path}.op"),
                    format!(
                        "unknown operator `{}`: expected one of eq, ne, lt, lte, gt, gte, in, not_in, contains, starts_with, ends_with, is_null, exists",
                        crate::name::truncate(s, 40)
                    ),
                )
            })?,
            _ => return Err(Error::filter(format!("{path}.op"), "expected an operator name")),
        };
        let value = match (o.get("value"), op) {
            (Some(v), _) => v.clone(),
            (None, Op::IsNull | Op::Exists) => Value::Bool(true),
            (None, _) => return Err(Error::filter(format!("{path}.value"), "missing `value`")),
        };
        Ok(Filter::Pred { field, op, value })
    }

    fn count(&mut self, path: &str) -> Result<()> {
        self.clauses += 1;
        if self.clauses > MAX_CLAUSES {
            return Err(Error::filter(
                path,
                format!("filter has more than {MAX_CLAUSES} clauses"),
            ));
        }
        Ok(())
    }
}

fn only_key(o: &Map<String, Value>, key: &str, path: &str) -> Result<()> {
    if o.len() != 1 {
        return Err(Error::filter(
            path,
            format!("`{key}` must be the only key of its object"),
        ));
    }
    Ok(())
}

impl Filter {
    /// Parses the JSON form, enforcing the depth and clause bounds.
    pub fn from_json(v: &Value) -> Result<Filter> {
        Parser { clauses: 0 }.node(v, "$", 1)
    }

    /// Parses JSON text (e.g. a URL query parameter).
    pub fn from_json_str(s: &str) -> Result<Filter> {
        let v: Value = serde_json::from_str(s)
            .map_err(|e| Error::filter("$", format!("filter is not valid JSON: {e}")))?;
        Filter::from_json(&v)
    }

    /// The JSON form.
    pub fn to_json(&self) -> Value {
        match self {
            Filter::And(v) => json!({"and": v.iter().map(Filter::to_json).collect::<Vec<_>>()}),
            Filter::Or(v) => json!({"or": v.iter().map(Filter::to_json).collect::<Vec<_>>()}),
            Filter::Not(f) => json!({"not": f.to_json()}),
            Filter::Pred { field, op, value } => {
                json!({"field": field, "op": op.as_str(), "value": value})
            }
            Filter::Related {
                relation_type,
                direction,
                filter,
            } => {
                let mut r = Map::new();
                r.insert("type".into(), Value::String(relation_type.clone()));
                r.insert(
                    "direction".into(),
                    Value::String(
                        if *direction == Direction::In {
                            "in"
                        } else {
                            "out"
                        }
                        .into(),
                    ),
                );
                if let Some(f) = filter {
                    r.insert("where".into(), f.to_json());
                }
                json!({"related": r})
            }
        }
    }
}

impl Serialize for Filter {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        self.to_json().serialize(s)
    }
}

impl<'de> Deserialize<'de> for Filter {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let v = Value::deserialize(d)?;
        Filter::from_json(&v).map_err(serde::de::Error::custom)
    }
}
