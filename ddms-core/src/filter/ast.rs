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

/// A position in a filter (`$.and[2].value`), rendered only when an error message needs
/// it: building path strings for every node would cost more than parsing.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Path<'a> {
    /// `$`
    Root,
    /// `<parent>.<key>`
    Key(&'a Path<'a>, &'static str),
    /// `<parent>[<i>]`
    Index(&'a Path<'a>, usize),
}

impl<'a> Path<'a> {
    /// `self.key`
    pub(crate) fn key(&'a self, k: &'static str) -> Path<'a> {
        Path::Key(self, k)
    }

    /// `self[i]`
    pub(crate) fn index(&'a self, i: usize) -> Path<'a> {
        Path::Index(self, i)
    }
}

impl std::fmt::Display for Path<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Path::Root => f.write_str("$"),
            Path::Key(p, k) => write!(f, "{p}.{k}"),
            Path::Index(p, i) => write!(f, "{p}[{i}]"),
        }
    }
}

impl From<Path<'_>> for String {
    fn from(p: Path<'_>) -> String {
        p.to_string()
    }
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
    fn node(&mut self, v: Value, path: Path<'_>, depth: usize) -> Result<Filter> {
        if depth > MAX_DEPTH {
            return Err(Error::filter(
                path,
                format!("filter is nested deeper than {MAX_DEPTH} levels"),
            ));
        }
        let mut o = match v {
            Value::Object(o) => o,
            other => {
                return Err(Error::filter(
                    path,
                    format!("expected an object, got {}", kind_of(&other)),
                ))
            }
        };
        for key in ["and", "or"] {
            if let Some(list) = o.remove(key) {
                only_key(o.len() + 1, key, path)?;
                let kp = path.key(key);
                let Value::Array(items) = list else {
                    return Err(Error::filter(kp, "expected a list of filters"));
                };
                let mut out = Vec::with_capacity(items.len());
                for (i, item) in items.into_iter().enumerate() {
                    out.push(self.node(item, kp.index(i), depth + 1)?);
                }
                return Ok(if key == "and" {
                    Filter::And(out)
                } else {
                    Filter::Or(out)
                });
            }
        }
        if let Some(inner) = o.remove("not") {
            only_key(o.len() + 1, "not", path)?;
            return Ok(Filter::Not(Box::new(self.node(
                inner,
                path.key("not"),
                depth + 1,
            )?)));
        }
        if let Some(rel) = o.remove("related") {
            only_key(o.len() + 1, "related", path)?;
            self.count(path)?;
            let rp = path.key("related");
            let Value::Object(mut r) = rel else {
                return Err(Error::filter(
                    rp,
                    "expected an object with `type`, `direction` and `where`",
                ));
            };
            for k in r.keys() {
                if !matches!(k.as_str(), "type" | "direction" | "where") {
                    return Err(Error::filter(
                        rp,
                        format!("unknown key `{}`", crate::name::truncate(k, 40)),
                    ));
                }
            }
            let relation_type = match r.remove("type") {
                Some(Value::String(s)) => s,
                _ => {
                    return Err(Error::filter(
                        rp.key("type"),
                        "expected the relation type name",
                    ))
                }
            };
            let direction = match r.get("direction") {
                None => Direction::Out,
                Some(Value::String(s)) if s == "out" => Direction::Out,
                Some(Value::String(s)) if s == "in" => Direction::In,
                Some(_) => {
                    return Err(Error::filter(rp.key("direction"), "expected `out` or `in`"))
                }
            };
            let filter = match r.remove("where") {
                None | Some(Value::Null) => None,
                Some(w) => Some(Box::new(self.node(w, rp.key("where"), depth + 1)?)),
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
        let field = match o.remove("field") {
            Some(Value::String(s)) => s,
            Some(_) => return Err(Error::filter(path.key("field"), "expected a field name")),
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
                    path.key("op"),
                    format!(
                        "unknown operator `{}`: expected one of eq, ne, lt, lte, gt, gte, in, not_in, contains, starts_with, ends_with, is_null, exists",
                        crate::name::truncate(s, 40)
                    ),
                )
            })?,
            _ => return Err(Error::filter(path.key("op"), "expected an operator name")),
        };
        let value = match (o.remove("value"), op) {
            (Some(v), _) => v,
            (None, Op::IsNull | Op::Exists) => Value::Bool(true),
            (None, _) => return Err(Error::filter(path.key("value"), "missing `value`")),
        };
        Ok(Filter::Pred { field, op, value })
    }

    fn count(&mut self, path: Path<'_>) -> Result<()> {
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

/// `len` is the object's key count.
fn only_key(len: usize, key: &str, path: Path<'_>) -> Result<()> {
    if len != 1 {
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
        Filter::from_json_value(v.clone())
    }

    /// [`Filter::from_json`] on an owned value (no copies of the operands).
    pub fn from_json_value(v: Value) -> Result<Filter> {
        Parser { clauses: 0 }.node(v, Path::Root, 1)
    }

    /// Parses JSON text (e.g. a URL query parameter).
    pub fn from_json_str(s: &str) -> Result<Filter> {
        let v: Value = serde_json::from_str(s)
            .map_err(|e| Error::filter("$", format!("filter is not valid JSON: {e}")))?;
        Filter::from_json_value(v)
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
        Filter::from_json_value(v).map_err(serde::de::Error::custom)
    }
}
