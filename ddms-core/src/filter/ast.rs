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
        Some(match s {
            "eq" => Op::Eq,
            "ne" => Op::Ne,
            "lt" => Op::Lt,
            "lte" => Op::Lte,
            "gt" => Op::Gt,
            "gte" => Op::Gte,
            "in" => Op::In,
            "not_in" => Op::NotIn,
            "contains" => Op::Contains,
            "starts_with" => Op::StartsWith,
            "ends_with" => Op::EndsWith,
            "is_null" => Op::IsNull,
            "exists" => Op::Exists,
            _ => return None,
        })
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
        // The fast path reads `v` in place (copying only names and operands); on any
        // problem the general parser reports it.
        let mut clauses = 0;
        let fast = serde::de::DeserializeSeed::deserialize(
            fast::Node {
                clauses: &mut clauses,
                depth: 1,
            },
            v,
        );
        match fast {
            Ok(f) => Ok(f),
            Err(_) => Filter::from_json_value(v.clone()),
        }
    }

    /// [`Filter::from_json`] on an owned value (no copies of the operands).
    pub fn from_json_value(v: Value) -> Result<Filter> {
        Parser { clauses: 0 }.node(v, Path::Root, 1)
    }

    /// Parses JSON text (e.g. a URL query parameter).
    ///
    /// Well-formed filters are read straight into the AST (no `Value` tree, keys never
    /// copied); anything else is parsed again by the general parser, which reports the
    /// error (the same error, path and message, whichever path the input took).
    pub fn from_json_str(s: &str) -> Result<Filter> {
        if let Some(f) = scan::filter(s) {
            return Ok(f);
        }
        let mut de = serde_json::Deserializer::from_str(s);
        let mut clauses = 0;
        let fast = serde::de::DeserializeSeed::deserialize(
            fast::Node {
                clauses: &mut clauses,
                depth: 1,
            },
            &mut de,
        );
        if let Ok(f) = fast {
            if de.end().is_ok() {
                return Ok(f);
            }
        }
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

/// The JSON form of [`Filter::to_json`], written directly (no `Value` tree): keys in
/// sorted order, as that sorted map writes them, so the text is the same byte for byte.
impl Serialize for Filter {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        match self {
            Filter::And(v) | Filter::Or(v) => {
                let key = if matches!(self, Filter::And(_)) {
                    "and"
                } else {
                    "or"
                };
                let mut m = s.serialize_map(Some(1))?;
                m.serialize_entry(key, v)?;
                m.end()
            }
            Filter::Not(f) => {
                let mut m = s.serialize_map(Some(1))?;
                m.serialize_entry("not", f)?;
                m.end()
            }
            Filter::Pred { field, op, value } => {
                let mut m = s.serialize_map(Some(3))?;
                m.serialize_entry("field", field)?;
                m.serialize_entry("op", op.as_str())?;
                m.serialize_entry("value", value)?;
                m.end()
            }
            Filter::Related { .. } => {
                let mut m = s.serialize_map(Some(1))?;
                m.serialize_entry("related", &RelatedBody(self))?;
                m.end()
            }
        }
    }
}

/// The object under `related`: `direction`, `type`, then `where` if any.
struct RelatedBody<'a>(&'a Filter);

impl Serialize for RelatedBody<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let Filter::Related {
            relation_type,
            direction,
            filter,
        } = self.0
        else {
            return s.serialize_unit();
        };
        let mut m = s.serialize_map(Some(2 + usize::from(filter.is_some())))?;
        let direction = if *direction == Direction::In {
            "in"
        } else {
            "out"
        };
        m.serialize_entry("direction", direction)?;
        m.serialize_entry("type", relation_type)?;
        if let Some(f) = filter {
            m.serialize_entry("where", f)?;
        }
        m.end()
    }
}

impl<'de> Deserialize<'de> for Filter {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let v = Value::deserialize(d)?;
        Filter::from_json_value(v).map_err(serde::de::Error::custom)
    }
}

/// The fastest path of [`Filter::from_json_str`]: a scanner over the text itself for
/// the common shapes, without serde's visitor plumbing. Like [`fast`] it only ever
/// succeeds on well-formed filters and builds what [`Parser`] builds; on anything it
/// does not handle (an escape in a string, a number other than a short non-negative
/// integer that serde_json does not confirm, an object as an operand, nested lists,
/// an unknown or repeated key, a bound exceeded, invalid JSON) it gives up and the
/// caller takes the next path.
mod scan {
    use serde_json::Value;

    // The keys of the serde fast path; the scanner gives up on `Other`.
    use super::fast::Key;
    use super::{Filter, Op, MAX_CLAUSES, MAX_DEPTH};
    use crate::relation::Direction;

    /// Gives up: the caller takes the next path.
    type Scan<T> = Option<T>;

    /// The bytes that end the plain part of a string: `"`, `\\` and control characters.
    static STOP: [bool; 256] = {
        let mut t = [false; 256];
        let mut i = 0;
        while i < 0x20 {
            t[i] = true;
            i += 1;
        }
        t[b'"' as usize] = true;
        t[b'\\' as usize] = true;
        t
    };

    pub(super) fn filter(s: &str) -> Scan<Filter> {
        let mut p = Scanner {
            s,
            b: s.as_bytes(),
            i: 0,
            clauses: 0,
        };
        let f = p.node(1)?;
        p.ws();
        (p.i == p.b.len()).then_some(f)
    }

    struct Scanner<'a> {
        s: &'a str,
        b: &'a [u8],
        i: usize,
        clauses: usize,
    }

    impl<'a> Scanner<'a> {
        /// Skips JSON whitespace.
        #[inline]
        fn ws(&mut self) {
            while let Some(b' ' | b'\n' | b'\r' | b'\t') = self.b.get(self.i) {
                self.i += 1;
            }
        }

        /// Skips whitespace, then requires `c`.
        #[inline]
        fn eat(&mut self, c: u8) -> Scan<()> {
            self.ws();
            if self.b.get(self.i) == Some(&c) {
                self.i += 1;
                Some(())
            } else {
                None
            }
        }

        /// Skips whitespace; true (and consumed) if the next byte is `c`.
        #[inline]
        fn peek_eat(&mut self, c: u8) -> bool {
            self.ws();
            if self.b.get(self.i) == Some(&c) {
                self.i += 1;
                true
            } else {
                false
            }
        }

        /// A string without escapes (after whitespace), as a slice of the input.
        #[inline]
        fn str(&mut self) -> Scan<&'a str> {
            self.eat(b'"')?;
            let start = self.i;
            // Escapes are left to serde_json; control characters are invalid.
            let len = self.b[start..].iter().position(|&c| STOP[usize::from(c)])?;
            self.i = start + len;
            if self.b[self.i] != b'"' {
                return None;
            }
            self.i += 1;
            self.s.get(start..start + len)
        }

        /// An object key and its colon.
        #[inline]
        fn key(&mut self) -> Scan<Key> {
            self.ws();
            let rest = &self.b[self.i..];
            // Matched on the text, quotes included (a key with an escape gives up).
            let (k, n) = match *rest.get(1)? {
                b'f' if rest.starts_with(b"\"field\"") => (Key::Field, 7),
                b'o' if rest.starts_with(b"\"op\"") => (Key::Op, 4),
                b'o' if rest.starts_with(b"\"or\"") => (Key::Or, 4),
                b'v' if rest.starts_with(b"\"value\"") => (Key::Value, 7),
                b'a' if rest.starts_with(b"\"and\"") => (Key::And, 5),
                b'n' if rest.starts_with(b"\"not\"") => (Key::Not, 5),
                b'r' if rest.starts_with(b"\"related\"") => (Key::Related, 9),
                b't' if rest.starts_with(b"\"type\"") => (Key::Type, 6),
                b'd' if rest.starts_with(b"\"direction\"") => (Key::Direction, 11),
                b'w' if rest.starts_with(b"\"where\"") => (Key::Where, 7),
                _ => return None,
            };
            self.i += n;
            self.eat(b':')?;
            Some(k)
        }

        /// After a member: `,` and the next key, or the end of the object.
        fn next_key(&mut self) -> Scan<Option<Key>> {
            if self.peek_eat(b'}') {
                return Some(None);
            }
            self.eat(b',')?;
            self.key().map(Some)
        }

        fn count(&mut self) -> Scan<()> {
            self.clauses += 1;
            (self.clauses <= MAX_CLAUSES).then_some(())
        }

        /// One filter object at `depth` (the root is 1).
        fn node(&mut self, depth: usize) -> Scan<Filter> {
            if depth > MAX_DEPTH {
                return None;
            }
            self.eat(b'{')?;
            let first = self.key()?;
            let f = match first {
                Key::And | Key::Or => {
                    let items = self.list(depth + 1)?;
                    if first == Key::And {
                        Filter::And(items)
                    } else {
                        Filter::Or(items)
                    }
                }
                Key::Not => Filter::Not(Box::new(self.node(depth + 1)?)),
                Key::Related => {
                    self.count()?;
                    self.related(depth + 1)?
                }
                Key::Field | Key::Op | Key::Value => {
                    self.count()?;
                    return self.predicate(first);
                }
                _ => return None,
            };
            // `and`, `or`, `not` and `related` stand alone.
            self.eat(b'}')?;
            Some(f)
        }

        /// The list of an `and`/`or`; each item a node at `depth`.
        fn list(&mut self, depth: usize) -> Scan<Vec<Filter>> {
            self.eat(b'[')?;
            let mut out = Vec::with_capacity(8);
            if self.peek_eat(b']') {
                return Some(out);
            }
            loop {
                out.push(self.node(depth)?);
                if self.peek_eat(b']') {
                    return Some(out);
                }
                self.eat(b',')?;
            }
        }

        /// `{field, op, value}` in any order, each once; `first` has been read.
        fn predicate(&mut self, first: Key) -> Scan<Filter> {
            let mut field: Option<&str> = None;
            let mut op: Option<Op> = None;
            let mut value: Option<Value> = None;
            let mut key = Some(first);
            while let Some(k) = key {
                match k {
                    Key::Field if field.is_none() => field = Some(self.str()?),
                    Key::Op if op.is_none() => op = Some(Op::parse(self.str()?)?),
                    Key::Value if value.is_none() => value = Some(self.value(0)?),
                    _ => return None,
                }
                key = self.next_key()?;
            }
            let (field, op) = (field?, op?);
            let value = match (value, op) {
                (Some(v), _) => v,
                (None, Op::IsNull | Op::Exists) => Value::Bool(true),
                (None, _) => return None,
            };
            Some(Filter::Pred {
                field: field.to_string(),
                op,
                value,
            })
        }

        /// `{type, direction?, where?}` in any order, each once; `where` a node at
        /// `depth`.
        fn related(&mut self, depth: usize) -> Scan<Filter> {
            self.eat(b'{')?;
            let mut relation_type: Option<&str> = None;
            let mut direction: Option<Direction> = None;
            let mut filter: Option<Option<Box<Filter>>> = None;
            let mut key = if self.peek_eat(b'}') {
                None
            } else {
                Some(self.key()?)
            };
            while let Some(k) = key {
                match k {
                    Key::Type if relation_type.is_none() => relation_type = Some(self.str()?),
                    Key::Direction if direction.is_none() => {
                        direction = Some(match self.str()? {
                            "out" => Direction::Out,
                            "in" => Direction::In,
                            _ => return None,
                        })
                    }
                    Key::Where if filter.is_none() => {
                        filter = Some(if self.null() {
                            None
                        } else {
                            Some(Box::new(self.node(depth)?))
                        })
                    }
                    _ => return None,
                }
                key = self.next_key()?;
            }
            Some(Filter::Related {
                relation_type: relation_type?.to_string(),
                direction: direction.unwrap_or(Direction::Out),
                filter: filter.flatten(),
            })
        }

        /// Consumes `null` if it comes next.
        fn null(&mut self) -> bool {
            self.ws();
            if self.b[self.i..].starts_with(b"null") {
                self.i += 4;
                true
            } else {
                false
            }
        }

        /// An operand: a scalar, or a list of scalars (`nesting` lists deep).
        fn value(&mut self, nesting: usize) -> Scan<Value> {
            self.ws();
            let rest = &self.b[self.i..];
            Some(match *rest.first()? {
                b'"' => Value::String(self.str()?.to_string()),
                b'[' if nesting == 0 => {
                    self.i += 1;
                    let mut items = Vec::new();
                    if !self.peek_eat(b']') {
                        loop {
                            items.push(self.value(nesting + 1)?);
                            if self.peek_eat(b']') {
                                break;
                            }
                            self.eat(b',')?;
                        }
                    }
                    Value::Array(items)
                }
                b't' if rest.starts_with(b"true") => {
                    self.i += 4;
                    Value::Bool(true)
                }
                b'f' if rest.starts_with(b"false") => {
                    self.i += 5;
                    Value::Bool(false)
                }
                b'n' if rest.starts_with(b"null") => {
                    self.i += 4;
                    Value::Null
                }
                b'-' | b'0'..=b'9' => self.number()?,
                _ => return None,
            })
        }

        /// A number: short non-negative integers read here (serde_json reads them as
        /// the same `u64`), every other form by serde_json from its text.
        fn number(&mut self) -> Scan<Value> {
            let start = self.i;
            let len = self.b[start..]
                .iter()
                .take_while(|c| matches!(c, b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E'))
                .count();
            let token = &self.b[start..start + len];
            self.i += len;
            let plain = token.len() <= 18
                && token.iter().all(u8::is_ascii_digit)
                && (token[0] != b'0' || token.len() == 1);
            if plain {
                let n = token.iter().fold(0u64, |n, d| n * 10 + u64::from(d - b'0'));
                return Some(Value::from(n));
            }
            let n: serde_json::Number =
                serde_json::from_str(self.s.get(start..start + len)?).ok()?;
            Some(Value::Number(n))
        }
    }
}

/// The fast path of the parser: a serde visitor straight into [`Filter`], with keys
/// matched in place (never copied) and only names and operands allocated.
///
/// It accepts exactly the well-formed filters and builds the same AST as [`Parser`]. It
/// does not report errors: on anything unusual (an unknown or repeated key, a wrong
/// type, a bound exceeded, a missing part) it gives up with a placeholder error and the
/// caller runs [`Parser`] on a `Value`, which finds the error, its path and message in
/// its own order. Failing is therefore always safe; succeeding where [`Parser`] would
/// not is the one thing this must never do.
mod fast {
    use std::fmt;

    use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
    use serde_json::Value;

    use super::{Filter, Op, MAX_CLAUSES, MAX_DEPTH};
    use crate::relation::Direction;

    fn give_up<E: de::Error>() -> E {
        E::custom("not a well-formed filter")
    }

    /// The keys a filter object may have; anything else is `Other`.
    #[derive(Clone, Copy, PartialEq, Eq)]
    pub(super) enum Key {
        And,
        Or,
        Not,
        Related,
        Field,
        Op,
        Value,
        Type,
        Direction,
        Where,
        Other,
    }

    impl<'de> de::Deserialize<'de> for Key {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Key, D::Error> {
            struct V;
            impl Visitor<'_> for V {
                type Value = Key;
                fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                    f.write_str("a key")
                }
                fn visit_str<E: de::Error>(self, s: &str) -> Result<Key, E> {
                    Ok(match s {
                        "and" => Key::And,
                        "or" => Key::Or,
                        "not" => Key::Not,
                        "related" => Key::Related,
                        "field" => Key::Field,
                        "op" => Key::Op,
                        "value" => Key::Value,
                        "type" => Key::Type,
                        "direction" => Key::Direction,
                        "where" => Key::Where,
                        _ => Key::Other,
                    })
                }
            }
            d.deserialize_identifier(V)
        }
    }

    /// A string matched in place against a fixed set (`op`, `direction`).
    struct Word<T>(fn(&str) -> Option<T>);

    impl<'de, T> DeserializeSeed<'de> for Word<T> {
        type Value = T;
        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<T, D::Error> {
            d.deserialize_str(self)
        }
    }

    impl<T> Visitor<'_> for Word<T> {
        type Value = T;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a known word")
        }
        fn visit_str<E: de::Error>(self, s: &str) -> Result<T, E> {
            (self.0)(s).ok_or_else(give_up)
        }
    }

    fn direction(s: &str) -> Option<Direction> {
        match s {
            "out" => Some(Direction::Out),
            "in" => Some(Direction::In),
            _ => None,
        }
    }

    /// One filter node at `depth` (the root is 1), counting clauses in `clauses`.
    pub(super) struct Node<'c> {
        pub(super) clauses: &'c mut usize,
        pub(super) depth: usize,
    }

    impl Node<'_> {
        fn count<E: de::Error>(&mut self) -> Result<(), E> {
            *self.clauses += 1;
            if *self.clauses > MAX_CLAUSES {
                return Err(give_up());
            }
            Ok(())
        }

        fn child(&mut self) -> Node<'_> {
            Node {
                clauses: self.clauses,
                depth: self.depth + 1,
            }
        }
    }

    impl<'de> DeserializeSeed<'de> for Node<'_> {
        type Value = Filter;
        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Filter, D::Error> {
            if self.depth > MAX_DEPTH {
                return Err(give_up());
            }
            d.deserialize_map(self)
        }
    }

    /// Requires the end of the object: `and`, `or`, `not` and `related` stand alone.
    fn alone<'de, A: MapAccess<'de>>(map: &mut A) -> Result<(), A::Error> {
        match map.next_key::<Key>()? {
            None => Ok(()),
            Some(_) => Err(give_up()),
        }
    }

    impl<'de> Visitor<'de> for Node<'_> {
        type Value = Filter;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a filter object")
        }

        fn visit_map<A: MapAccess<'de>>(mut self, mut map: A) -> Result<Filter, A::Error> {
            let first = map.next_key::<Key>()?.ok_or_else(give_up)?;
            match first {
                Key::And | Key::Or => {
                    let items = map.next_value_seed(List(self.child()))?;
                    alone(&mut map)?;
                    Ok(if first == Key::And {
                        Filter::And(items)
                    } else {
                        Filter::Or(items)
                    })
                }
                Key::Not => {
                    let inner = map.next_value_seed(self.child())?;
                    alone(&mut map)?;
                    Ok(Filter::Not(Box::new(inner)))
                }
                Key::Related => {
                    self.count()?;
                    let related = map.next_value_seed(Related(self.child()))?;
                    alone(&mut map)?;
                    Ok(related)
                }
                Key::Field | Key::Op | Key::Value => {
                    self.count()?;
                    predicate(first, map)
                }
                _ => Err(give_up()),
            }
        }
    }

    /// `{field, op, value}` in any order, each once; `first` has been read.
    fn predicate<'de, A: MapAccess<'de>>(first: Key, mut map: A) -> Result<Filter, A::Error> {
        let mut field: Option<String> = None;
        let mut op: Option<Op> = None;
        let mut value: Option<Value> = None;
        let mut key = Some(first);
        while let Some(k) = key {
            match k {
                Key::Field if field.is_none() => field = Some(map.next_value()?),
                Key::Op if op.is_none() => op = Some(map.next_value_seed(Word(Op::parse))?),
                Key::Value if value.is_none() => value = Some(map.next_value()?),
                _ => return Err(give_up()),
            }
            key = map.next_key()?;
        }
        let (Some(field), Some(op)) = (field, op) else {
            return Err(give_up());
        };
        let value = match (value, op) {
            (Some(v), _) => v,
            (None, Op::IsNull | Op::Exists) => Value::Bool(true),
            (None, _) => return Err(give_up()),
        };
        Ok(Filter::Pred { field, op, value })
    }

    /// The list of an `and`/`or`; each item is a node at the list's depth.
    struct List<'c>(Node<'c>);

    impl<'de> DeserializeSeed<'de> for List<'_> {
        type Value = Vec<Filter>;
        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Vec<Filter>, D::Error> {
            d.deserialize_seq(self)
        }
    }

    impl<'de> Visitor<'de> for List<'_> {
        type Value = Vec<Filter>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a list of filters")
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<Filter>, A::Error> {
            let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(8).min(MAX_CLAUSES));
            while let Some(f) = seq.next_element_seed(Node {
                clauses: &mut *self.0.clauses,
                depth: self.0.depth,
            })? {
                out.push(f);
            }
            Ok(out)
        }
    }

    /// The body of `related`: `{type, direction?, where?}` in any order, each once.
    /// `where` is a node at this seed's depth.
    struct Related<'c>(Node<'c>);

    impl<'de> DeserializeSeed<'de> for Related<'_> {
        type Value = Filter;
        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Filter, D::Error> {
            d.deserialize_map(self)
        }
    }

    impl<'de> Visitor<'de> for Related<'_> {
        type Value = Filter;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a related object")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Filter, A::Error> {
            let mut relation_type: Option<String> = None;
            let mut direction: Option<Direction> = None;
            let mut filter: Option<Option<Box<Filter>>> = None;
            while let Some(k) = map.next_key()? {
                match k {
                    Key::Type if relation_type.is_none() => relation_type = Some(map.next_value()?),
                    Key::Direction if direction.is_none() => {
                        direction = Some(map.next_value_seed(Word(self::direction))?)
                    }
                    Key::Where if filter.is_none() => {
                        filter = Some(map.next_value_seed(Where(Node {
                            clauses: &mut *self.0.clauses,
                            depth: self.0.depth,
                        }))?)
                    }
                    _ => return Err(give_up()),
                }
            }
            Ok(Filter::Related {
                relation_type: relation_type.ok_or_else(give_up)?,
                direction: direction.unwrap_or(Direction::Out),
                filter: filter.flatten(),
            })
        }
    }

    /// `where`: `null` or a node.
    struct Where<'c>(Node<'c>);

    impl<'de> DeserializeSeed<'de> for Where<'_> {
        type Value = Option<Box<Filter>>;
        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_option(self)
        }
    }

    impl<'de> Visitor<'de> for Where<'_> {
        type Value = Option<Box<Filter>>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("null or a filter")
        }
        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            Ok(Some(Box::new(self.0.deserialize(d)?)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The general parser alone: the reference the fast path must agree with.
    fn reference(s: &str) -> std::result::Result<Filter, String> {
        let v: Value = serde_json::from_str(s).map_err(|e| format!("not JSON: {e}"))?;
        Filter::from_json_value(v).map_err(|e| e.to_string())
    }

    /// The fast path alone, from text and from a `Value`.
    fn fast(s: &str) -> Option<Filter> {
        let mut de = serde_json::Deserializer::from_str(s);
        let mut clauses = 0;
        let node = fast::Node {
            clauses: &mut clauses,
            depth: 1,
        };
        let f = serde::de::DeserializeSeed::deserialize(node, &mut de).ok()?;
        de.end().ok()?;
        Some(f)
    }

    fn fast_value(v: &Value) -> Option<Filter> {
        let mut clauses = 0;
        let node = fast::Node {
            clauses: &mut clauses,
            depth: 1,
        };
        serde::de::DeserializeSeed::deserialize(node, v).ok()
    }

    /// Whenever the fast path succeeds it builds what the general parser builds, and
    /// the public entry points give the general parser's result (errors included).
    fn agree(s: &str, fast_expected: bool) {
        let want = reference(s);
        if let Some(f) = scan::filter(s) {
            assert_eq!(want.as_ref(), Ok(&f), "scanner on {s}");
        }
        let got = fast(s);
        assert_eq!(got.is_some(), fast_expected, "fast path on {s}");
        if let Some(f) = &got {
            assert_eq!(want.as_ref(), Ok(f), "fast path on {s}");
        }
        let public = Filter::from_json_str(s).map_err(|e| e.to_string());
        match (&want, &public) {
            (Err(w), Err(p)) if w.starts_with("not JSON") => {
                assert!(p.contains("not valid JSON"), "{s}: {p}")
            }
            _ => assert_eq!(want, public, "from_json_str on {s}"),
        }
        if let Ok(v) = serde_json::from_str::<Value>(s) {
            if let Some(f) = fast_value(&v) {
                assert_eq!(want.as_ref(), Ok(&f), "fast path on the value of {s}");
            }
            let public = Filter::from_json(&v).map_err(|e| e.to_string());
            assert_eq!(want, public, "from_json on {s}");
        }
    }

    #[test]
    fn serialising_writes_the_text_of_to_json() {
        let filters = [
            r#"{"and":[{"field":"a","op":"eq","value":1.5},{"op":"exists","field":"b"}]}"#,
            r#"{"or":[{"not":{"field":"a","op":"in","value":["x",{"k":[1,null]}]}}]}"#,
            r#"{"related":{"type":"t","direction":"in","where":{"and":[]}}}"#,
            r#"{"related":{"type":"t"}}"#,
            r#"{"field":"a\"b","op":"contains","value":"\u00e9\n"}"#,
        ];
        for s in filters {
            let f = Filter::from_json_str(s).unwrap();
            assert_eq!(serde_json::to_string(&f).unwrap(), f.to_json().to_string());
            assert_eq!(serde_json::to_value(&f).unwrap(), f.to_json());
        }
        let both = Filter::Related {
            relation_type: "t".into(),
            direction: Direction::Both,
            filter: None,
        };
        assert_eq!(
            serde_json::to_string(&both).unwrap(),
            both.to_json().to_string()
        );
    }

    #[test]
    fn operators_parse_from_their_names() {
        for op in Op::ALL {
            assert_eq!(Op::parse(op.as_str()), Some(op));
        }
        assert_eq!(Op::parse("EQ"), None);
    }

    #[test]
    fn fast_path_agrees_with_the_general_parser() {
        let ok = [
            r#"{"field":"a","op":"eq","value":1}"#,
            r#"{"value":[1,"x",null,{"k":[]}],"op":"in","field":"a"}"#,
            r#"{"op":"is_null","field":"a"}"#,
            r#"{"field":"a","op":"exists"}"#,
            r#"{"field":"a","op":"eq","value":null}"#,
            r#"{"field":"a\u0062","op":"e\u0071","value":"\n"}"#,
            r#"{"and":[]}"#,
            r#"{"or":[{"field":"a","op":"lt","value":1.5e3}]}"#,
            r#"{"not":{"and":[{"field":"a","op":"gte","value":-1}]}}"#,
            r#"{"related":{"type":"owns"}}"#,
            r#"{"related":{"type":"owns","direction":"in","where":null}}"#,
            r#"{"related":{"where":{"field":"a","op":"eq","value":1},"direction":"out","type":"t"}}"#,
            r#" { "and" : [ { "field" : "a" , "op" : "eq" , "value" : true } ] } "#,
        ];
        for s in ok {
            agree(s, true);
        }
        let bad = [
            "",
            "[]",
            "1",
            "null",
            "{}",
            r#"{"field":"a","op":"eq","value":1"#,
            r#"{"field":"a","op":"eq","value":1} x"#,
            r#"{"field":"a","op":"eq","value":1,"x":2}"#,
            r#"{"x":2,"field":"a","op":"eq","value":1}"#,
            r#"{"field":"a","field":"b","op":"eq","value":1}"#,
            r#"{"field":1,"op":"nope","value":1}"#,
            r#"{"op":"nope","field":1}"#,
            r#"{"field":"a","op":"eq"}"#,
            r#"{"field":"a","value":1}"#,
            r#"{"op":"eq","value":1}"#,
            r#"{"and":[],"or":[]}"#,
            r#"{"or":[],"and":[{"bad":1}]}"#,
            r#"{"and":{"field":"a"}}"#,
            r#"{"and":[{"field":"a","op":"eq","value":1},{"zz":1}]}"#,
            r#"{"not":{"field":"a","op":"eq","value":1},"x":1}"#,
            r#"{"related":{"type":"owns"},"field":"a"}"#,
            r#"{"related":{"type":1}}"#,
            r#"{"related":{"direction":"in"}}"#,
            r#"{"related":{"type":"t","direction":"both"}}"#,
            r#"{"related":{"type":"t","direction":null}}"#,
            r#"{"related":{"type":"t","up":1}}"#,
            r#"{"related":{"type":"t","where":{"nope":1}}}"#,
            r#"{"related":{"type":"t","type":"u"}}"#,
            r#"{"related":[]}"#,
            r#"{"field":"a","op":"eq","value":1,"value":2}"#,
        ];
        for s in bad {
            agree(s, false);
        }
        // The scanner takes the common shapes itself and leaves the rest (escapes,
        // numbers it does not read, objects and nested lists as operands) to the
        // paths behind it, which must then agree too.
        let scanned = [
            r#"{"field":"a","op":"eq","value":1}"#,
            r#"{"value":[1,"x",null,true,false],"op":"in","field":"a"}"#,
            r#"{"op":"is_null","field":"a"}"#,
            r#"{"field":"a","op":"eq","value":0}"#,
            r#"{"field":"a","op":"eq","value":999999999999999999}"#,
            r#"{"field":"a","op":"eq","value":-1}"#,
            r#"{"field":"a","op":"eq","value":-0}"#,
            r#"{"field":"a","op":"eq","value":1.5e3}"#,
            r#"{"field":"a","op":"eq","value":1E-3}"#,
            r#"{"field":"a","op":"eq","value":0.1}"#,
            r#"{"field":"a","op":"eq","value":18446744073709551615}"#,
            r#"{"field":"a","op":"eq","value":18446744073709551616}"#,
            r#"{"field":"a","op":"eq","value":-9223372036854775809}"#,
            r#"{"field":"a","op":"eq","value":"é ü 😀 "}"#,
            "{\"field\":\"a\",\"op\":\"eq\",\"value\":\"ü\u{7f}\"}",
            r#"{"field":"a","op":"in","value":[]}"#,
            r#"{"and":[{"or":[]},{"not":{"related":{"type":"t","where":null}}}]}"#,
            r#"{"related":{"direction":"in","type":"t","where":{"field":"a","op":"exists","value":false}}}"#,
            "\t{ \"and\" :\r\n[ { \"field\":\"a\" , \"op\" : \"eq\" , \"value\" : null } ] }\n",
        ];
        for s in scanned {
            assert!(scan::filter(s).is_some(), "scanner on {s}");
            agree(s, true);
        }
        let not_scanned = [
            r#"{"field":"a","op":"eq","value":01}"#,
            r#"{"field":"a","op":"eq","value":1.}"#,
            r#"{"field":"a","op":"eq","value":-}"#,
            r#"{"field":"a","op":"eq","value":1e}"#,
            r#"{"field":"a","op":"eq","value":+1}"#,
            r#"{"field":"a","op":"eq","value":1-2}"#,
            r#"{"field":"a","op":"eq","value":1x}"#,
            r#"{"field":"a","op":"eq","value":truex}"#,
            r#"{"field":"a","op":"eq","value":nul}"#,
            r#"{"field":"a","op":"eq","value":[1,]}"#,
            r#"{"field":"a","op":"eq","value":[1 2]}"#,
            r#"{"field":"a","op":"eq","value":"a"#,
            "{\"field\":\"a\",\"op\":\"eq\",\"value\":\"a\u{1}\"}",
            "{\"field\":\"a\",\"op\":\"eq\",\"value\":1}\u{feff}",
            "\u{feff}{\"field\":\"a\",\"op\":\"eq\",\"value\":1}",
            "{\"field\":\"a\",\"op\":\"eq\",\"value\":1}\u{a0}",
            r#"{"field":"a","op":"eq","value":{"k":1}}"#,
            r#"{"field":"a","op":"in","value":[[1]]}"#,
            r#"{"field":"a\u0062","op":"eq","value":1}"#,
            r#"{"field":"a","op":"eq","value":"\n"}"#,
            r#"{"and":[{"field":"a","op":"eq","value":1},]}"#,
            r#"{"and":[{"field":"a","op":"eq","value":1}}"#,
            r#"{"and":[]"#,
            r#"{"and":[]}}"#,
            r#"{"related":{}}"#,
            r#"{"related":{"type":"t","where":nullx}}"#,
            r#"{"related":{"type":"t",}}"#,
            r#"{"related":{"type":"t","direction":null}}"#,
            r#"{"field":"a","op":"eq","value":1,}"#,
            r#"{"field":"a","op":"eq" "value":1}"#,
            r#"{"field":"a","op":"eq","value"1}"#,
        ];
        for s in not_scanned {
            assert!(scan::filter(s).is_none(), "scanner on {s}");
            let fast_ok = fast(s).is_some();
            agree(s, fast_ok);
        }
        // Depth: 32 levels pass, 33 do not (also under `related`).
        let nest = |n: usize| {
            let mut s = r#"{"field":"a","op":"eq","value":1}"#.to_string();
            for _ in 1..n {
                s = format!(r#"{{"not":{s}}}"#);
            }
            s
        };
        agree(&nest(MAX_DEPTH), true);
        agree(&nest(MAX_DEPTH + 1), false);
        agree(&nest(200), false);
        let mut rel = r#"{"field":"a","op":"eq","value":1}"#.to_string();
        for _ in 1..MAX_DEPTH {
            rel = format!(r#"{{"related":{{"type":"t","where":{rel}}}}}"#);
        }
        agree(&rel, true);
        agree(&format!(r#"{{"not":{rel}}}"#), false);
        // Clauses: 256 pass, 257 do not (a `related` counts too).
        let preds = |n: usize| {
            let p = r#"{"field":"a","op":"eq","value":1}"#;
            format!(r#"{{"and":[{}]}}"#, vec![p; n].join(","))
        };
        agree(&preds(MAX_CLAUSES), true);
        agree(&preds(MAX_CLAUSES + 1), false);
        let p = r#"{"field":"a","op":"eq","value":1}"#;
        let with_related = format!(
            r#"{{"and":[{},{{"related":{{"type":"t","where":{p}}}}}]}}"#,
            vec![p; MAX_CLAUSES - 2].join(",")
        );
        agree(&with_related, true);
        let with_related = format!(
            r#"{{"and":[{},{{"related":{{"type":"t","where":{p}}}}}]}}"#,
            vec![p; MAX_CLAUSES - 1].join(",")
        );
        agree(&with_related, false);
    }
}
