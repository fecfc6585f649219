//! Type-checking a raw filter against an entity type.

use std::cmp::Ordering;
use std::sync::Arc;

use chrono::{DateTime, NaiveDate, SecondsFormat, Utc};
use serde_json::Value;
use uuid::Uuid;

use super::ast::{Filter, Op, Path, MAX_CLAUSES, MAX_DEPTH, MAX_IN_VALUES};
use crate::entity_type::EntityType;
use crate::error::{Error, Result};
use crate::field::{parse_date, parse_datetime, FieldKind, ScalarKind, ValueClass};
use crate::name::{truncate, Name};
use crate::relation::{Direction, RelationType};

/// Longest text operand accepted in a filter (characters).
pub const MAX_TEXT_OPERAND: usize = 4096;

/// System fields every record has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SysField {
    /// The record id.
    Id,
    /// Creation time.
    CreatedAt,
    /// Last change.
    UpdatedAt,
}

impl SysField {
    /// Parses `id`, `created_at` or `updated_at`.
    pub fn parse(s: &str) -> Option<SysField> {
        Some(match s {
            "id" => SysField::Id,
            "created_at" => SysField::CreatedAt,
            "updated_at" => SysField::UpdatedAt,
            _ => return None,
        })
    }

    /// The field's name.
    pub fn as_str(self) -> &'static str {
        match self {
            SysField::Id => "id",
            SysField::CreatedAt => "created_at",
            SysField::UpdatedAt => "updated_at",
        }
    }

    /// The comparison class.
    pub fn class(self) -> ValueClass {
        match self {
            SysField::Id => ValueClass::Uuid,
            _ => ValueClass::Datetime,
        }
    }
}

/// A field's kind as checked filters and sort keys carry it: without an enum's values,
/// which only the checker needs, so that a target is copied rather than cloned with a
/// list of strings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TargetKind {
    /// A scalar kind.
    Scalar(ScalarKind),
    /// An enum (operands were checked against its values).
    Enum,
    /// Any JSON value.
    Json,
    /// A list of scalars of one kind.
    List(ScalarKind),
}

impl TargetKind {
    /// The kind's name as written in JSON (see [`FieldKind::name`]).
    pub fn name(self) -> &'static str {
        match self {
            TargetKind::Scalar(s) => s.as_str(),
            TargetKind::Enum => "enum",
            TargetKind::Json => "json",
            TargetKind::List(_) => "list",
        }
    }

    /// The comparison class (see [`FieldKind::value_class`]).
    pub fn value_class(self) -> Option<ValueClass> {
        Some(match self {
            TargetKind::Scalar(s) => crate::field::scalar_class(s),
            TargetKind::Enum => ValueClass::Text,
            TargetKind::Json | TargetKind::List(_) => return None,
        })
    }
}

impl From<&FieldKind> for TargetKind {
    fn from(k: &FieldKind) -> TargetKind {
        match k {
            FieldKind::Scalar(s) => TargetKind::Scalar(*s),
            FieldKind::Enum(_) => TargetKind::Enum,
            FieldKind::Json => TargetKind::Json,
            FieldKind::List(s) => TargetKind::List(*s),
        }
    }
}

/// What a predicate or sort key refers to.
#[derive(Debug, Clone, PartialEq)]
pub enum Target {
    /// A system field.
    System(SysField),
    /// A user field of the entity type.
    Field {
        /// Its name.
        name: Name,
        /// Its kind.
        kind: TargetKind,
        /// Declared `indexed` or `unique` (the backend decides whether its index is usable).
        indexed: bool,
    },
}

impl Target {
    /// The name as written in filters.
    pub fn name(&self) -> &str {
        match self {
            Target::System(s) => s.as_str(),
            Target::Field { name, .. } => name.as_str(),
        }
    }

    /// The comparison class, for orderable targets.
    pub fn class(&self) -> Option<ValueClass> {
        match self {
            Target::System(s) => Some(s.class()),
            Target::Field { kind, .. } => kind.value_class(),
        }
    }

    /// Resolves `name` against `ty`.
    pub fn resolve(ty: &EntityType, name: &str) -> Option<Target> {
        Target::resolve_field(ty, name).map(|(t, _)| t)
    }

    /// [`Target::resolve`], with the field's enum values when it is an enum.
    #[inline(always)]
    fn resolve_field<'t>(ty: &'t EntityType, name: &str) -> Option<(Target, &'t [String])> {
        if let Some(s) = SysField::parse(name) {
            return Some((Target::System(s), &[]));
        }
        ty.field(name).map(|f| {
            let values = match &f.kind {
                FieldKind::Enum(v) => v.as_slice(),
                _ => &[],
            };
            let target = Target::Field {
                name: f.name.clone(),
                kind: TargetKind::from(&f.kind),
                indexed: f.has_index(),
            };
            (target, values)
        })
    }
}

/// Most bytes of a [`Text`] held inline (so that the inline form is 16 bytes, like
/// the `Arc<str>` a longer one holds).
const INLINE_TEXT: usize = 15;

/// A text operand or key held by a checked filter: up to 15 bytes inline, longer texts
/// shared. Checking copies short operands instead of allocating them, and the SQL
/// compiler binds them without a copy of the bytes.
#[derive(Clone)]
pub struct Text(TextRepr);

#[derive(Clone)]
enum TextRepr {
    Inline(Inline),
    Shared(Arc<str>),
}

/// The bytes of a short text, 8-aligned like the `Arc<str>` of the other form: a text
/// is then always moved in whole aligned words (with the bytes at an odd offset, the
/// copies of an operand overlapped and stalled store forwarding).
#[derive(Clone, Copy)]
#[repr(align(8))]
struct Inline {
    bytes: [u8; INLINE_TEXT],
    len: u8,
}

impl Text {
    /// `s` as a `Text`.
    pub fn new(s: &str) -> Text {
        if s.len() <= INLINE_TEXT {
            // Gathered in a register and stored once: copied into a stack array with
            // a memcpy of variable length, the bytes were read back whole right after
            // (a store-forwarding stall per operand).
            let mut v: u128 = 0;
            for (i, &c) in s.as_bytes().iter().enumerate() {
                v |= u128::from(c) << (8 * i);
            }
            let w = v.to_le_bytes();
            let mut bytes = [0; INLINE_TEXT];
            bytes.copy_from_slice(&w[..INLINE_TEXT]);
            Text(TextRepr::Inline(Inline {
                bytes,
                len: s.len() as u8,
            }))
        } else {
            Text(TextRepr::Shared(Arc::from(s)))
        }
    }

    /// Its length in bytes.
    pub fn len(&self) -> usize {
        match &self.0 {
            TextRepr::Inline(t) => usize::from(t.len),
            TextRepr::Shared(s) => s.len(),
        }
    }

    /// True for the empty text.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        match &self.0 {
            // Always valid: the bytes were copied from a `str`.
            TextRepr::Inline(t) => {
                std::str::from_utf8(&t.bytes[..usize::from(t.len)]).unwrap_or_default()
            }
            TextRepr::Shared(s) => s,
        }
    }
}

impl std::ops::Deref for Text {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for Text {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl From<&str> for Text {
    fn from(s: &str) -> Text {
        Text::new(s)
    }
}

impl From<String> for Text {
    fn from(s: String) -> Text {
        Text::new(&s)
    }
}

impl PartialEq for Text {
    fn eq(&self, other: &Text) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for Text {}

impl std::hash::Hash for Text {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        self.as_str().hash(h)
    }
}

impl std::fmt::Debug for Text {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self.as_str(), f)
    }
}

impl std::fmt::Display for Text {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A typed operand.
#[derive(Debug, Clone, PartialEq)]
pub enum Scalar {
    /// Text (compared byte-wise, like PostgreSQL's C collation).
    Text(Text),
    /// A 64-bit integer.
    Int(i64),
    /// A finite double.
    Float(f64),
    /// A boolean.
    Bool(bool),
    /// A date.
    Date(NaiveDate),
    /// A timestamp.
    Datetime(DateTime<Utc>),
    /// A uuid.
    Uuid(Uuid),
}

impl Scalar {
    /// Reads a JSON value as `class`; `None` if it does not fit.
    pub fn from_json(class: ValueClass, v: &Value) -> Option<Scalar> {
        Some(match (class, v) {
            (ValueClass::Text, Value::String(s)) if !s.contains('\0') => Scalar::Text(Text::new(s)),
            (ValueClass::Integer, Value::Number(n)) => match n.as_i64() {
                Some(i) => Scalar::Int(i),
                None => {
                    let f = n.as_f64()?;
                    if f.fract() == 0.0 && f.abs() < 9.2e18 {
                        Scalar::Int(f as i64)
                    } else {
                        return None;
                    }
                }
            },
            (ValueClass::Number, Value::Number(n)) => {
                Scalar::Float(n.as_f64().filter(|f| f.is_finite())?)
            }
            (ValueClass::Boolean, Value::Bool(b)) => Scalar::Bool(*b),
            (ValueClass::Date, Value::String(s)) => Scalar::Date(parse_date(s)?),
            (ValueClass::Datetime, Value::String(s)) => Scalar::Datetime(parse_datetime(s)?),
            (ValueClass::Uuid, Value::String(s)) => Scalar::Uuid(Uuid::try_parse(s).ok()?),
            _ => return None,
        })
    }

    /// The JSON form (inverse of [`Scalar::from_json`]).
    pub fn to_json(&self) -> Value {
        match self {
            Scalar::Text(s) => Value::String(s.to_string()),
            Scalar::Int(i) => Value::from(*i),
            Scalar::Float(f) => Value::from(*f),
            Scalar::Bool(b) => Value::Bool(*b),
            Scalar::Date(d) => Value::String(d.format("%Y-%m-%d").to_string()),
            Scalar::Datetime(d) => Value::String(d.to_rfc3339_opts(SecondsFormat::AutoSi, true)),
            Scalar::Uuid(u) => Value::String(u.to_string()),
        }
    }

    /// Total order within one class (floats are finite here).
    pub fn cmp_same(&self, other: &Scalar) -> Ordering {
        match (self, other) {
            (Scalar::Text(a), Scalar::Text(b)) => a.as_bytes().cmp(b.as_bytes()),
            (Scalar::Int(a), Scalar::Int(b)) => a.cmp(b),
            (Scalar::Float(a), Scalar::Float(b)) => a.partial_cmp(b).unwrap_or(Ordering::Equal),
            (Scalar::Int(a), Scalar::Float(b)) => {
                (*a as f64).partial_cmp(b).unwrap_or(Ordering::Equal)
            }
            (Scalar::Float(a), Scalar::Int(b)) => {
                a.partial_cmp(&(*b as f64)).unwrap_or(Ordering::Equal)
            }
            (Scalar::Bool(a), Scalar::Bool(b)) => a.cmp(b),
            (Scalar::Date(a), Scalar::Date(b)) => a.cmp(b),
            (Scalar::Datetime(a), Scalar::Datetime(b)) => a.cmp(b),
            (Scalar::Uuid(a), Scalar::Uuid(b)) => a.cmp(b),
            _ => Ordering::Equal,
        }
    }
}

/// Ordered comparison operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CmpOp {
    /// `=`
    Eq,
    /// `<>`
    Ne,
    /// `<`
    Lt,
    /// `<=`
    Lte,
    /// `>`
    Gt,
    /// `>=`
    Gte,
}

impl CmpOp {
    /// True when `ord` (value compared with operand) satisfies the operator.
    pub fn holds(self, ord: Ordering) -> bool {
        match self {
            CmpOp::Eq => ord == Ordering::Equal,
            CmpOp::Ne => ord != Ordering::Equal,
            CmpOp::Lt => ord == Ordering::Less,
            CmpOp::Lte => ord != Ordering::Greater,
            CmpOp::Gt => ord == Ordering::Greater,
            CmpOp::Gte => ord != Ordering::Less,
        }
    }
}

/// Text matching operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TextOp {
    /// Substring.
    Contains,
    /// Prefix.
    StartsWith,
    /// Suffix.
    EndsWith,
}

/// A filter that has been checked against an entity type. Predicates on missing values
/// are false (two-valued logic), so `not` simply inverts.
#[derive(Debug, Clone, PartialEq)]
pub enum CheckedFilter {
    /// All.
    And(Vec<CheckedFilter>),
    /// Any.
    Or(Vec<CheckedFilter>),
    /// Not.
    Not(Box<CheckedFilter>),
    /// `target op value` on an orderable target.
    Compare {
        /// What is compared.
        target: Target,
        /// How.
        op: CmpOp,
        /// With what.
        value: Scalar,
    },
    /// Membership.
    In {
        /// What is tested.
        target: Target,
        /// `not_in` when true.
        negated: bool,
        /// The non-empty list.
        values: Vec<Scalar>,
    },
    /// Text match.
    Text {
        /// A textual target.
        target: Target,
        /// Operator.
        op: TextOp,
        /// Operand.
        value: Text,
    },
    /// A list field contains an element.
    ListContains {
        /// The list field.
        target: Target,
        /// The element.
        value: Scalar,
    },
    /// Equality of a json field with a JSON value.
    JsonEq {
        /// The json field.
        target: Target,
        /// `ne` when true.
        negated: bool,
        /// The value.
        value: Value,
    },
    /// Missing (`is_null: true`) or present.
    IsNull {
        /// What is tested.
        target: Target,
        /// True to match missing values.
        is_null: bool,
    },
    /// At least one neighbour over a relation type matches.
    Related {
        /// The relation type.
        relation_type: Name,
        /// `Out`: the record is the source; `In`: the target.
        direction: Direction,
        /// The neighbour's entity type.
        other: Arc<EntityType>,
        /// Condition on the neighbour.
        filter: Option<Box<CheckedFilter>>,
    },
}

/// Schema lookups the checker needs for `related` predicates.
pub trait SchemaLookup {
    /// The relation type called `name`.
    fn relation_type(&self, name: &Name) -> Result<RelationType>;
    /// The entity type called `name`.
    fn entity_type(&self, name: &Name) -> Result<Arc<EntityType>>;
}

/// Checks `f` against `ty`; `schema` resolves relation types and neighbour types.
///
/// The depth and clause bounds are enforced here too, not only by the JSON parser, so
/// that a filter built in code cannot reach a backend unbounded.
pub fn check(ty: &EntityType, f: &Filter, schema: &dyn SchemaLookup) -> Result<CheckedFilter> {
    bounds(f, Path::Root, 1, &mut 0)?;
    node(ty, f, schema, Path::Root)
}

/// The parser's depth and clause limits, on an already built AST.
fn bounds(f: &Filter, path: Path<'_>, depth: usize, clauses: &mut usize) -> Result<()> {
    if depth > MAX_DEPTH {
        return Err(Error::filter(
            path,
            format!("filter is nested deeper than {MAX_DEPTH} levels"),
        ));
    }
    let count = |clauses: &mut usize| {
        *clauses += 1;
        if *clauses > MAX_CLAUSES {
            return Err(Error::filter(
                path,
                format!("filter has more than {MAX_CLAUSES} clauses"),
            ));
        }
        Ok(())
    };
    match f {
        Filter::And(v) | Filter::Or(v) => {
            let key = if matches!(f, Filter::And(_)) {
                "and"
            } else {
                "or"
            };
            let kp = path.key(key);
            for (i, g) in v.iter().enumerate() {
                // A predicate within both bounds is only counted; the general case
                // below reports one that is not.
                if matches!(g, Filter::Pred { .. }) && depth < MAX_DEPTH && *clauses < MAX_CLAUSES {
                    *clauses += 1;
                    continue;
                }
                bounds(g, kp.index(i), depth + 1, clauses)?;
            }
            Ok(())
        }
        Filter::Not(g) => bounds(g, path.key("not"), depth + 1, clauses),
        Filter::Pred { .. } => count(clauses),
        Filter::Related { filter, .. } => {
            count(clauses)?;
            match filter {
                Some(g) => {
                    let rp = path.key("related");
                    bounds(g, rp.key("where"), depth + 1, clauses)
                }
                None => Ok(()),
            }
        }
    }
}

fn node(
    ty: &EntityType,
    f: &Filter,
    schema: &dyn SchemaLookup,
    path: Path<'_>,
) -> Result<CheckedFilter> {
    Ok(match f {
        Filter::And(v) => CheckedFilter::And(list(ty, v, schema, path.key("and"))?),
        Filter::Or(v) => CheckedFilter::Or(list(ty, v, schema, path.key("or"))?),
        Filter::Not(f) => CheckedFilter::Not(Box::new(node(ty, f, schema, path.key("not"))?)),
        Filter::Pred { field, op, value } => predicate(ty, field, *op, value, path)?,
        Filter::Related {
            relation_type,
            direction,
            filter,
        } => {
            let rp = path.key("related");
            let name = Name::parse(relation_type).map_err(|m| {
                Error::filter(
                    format!("{rp}.type"),
                    format!("invalid relation type name: {m}"),
                )
            })?;
            let rt = match schema.relation_type(&name) {
                Ok(rt) => rt,
                Err(Error::NotFound { .. }) => {
                    return Err(Error::filter(
                        format!("{rp}.type"),
                        format!("unknown relation type `{name}`"),
                    ))
                }
                Err(e) => return Err(e),
            };
            let (here, there) = match direction {
                Direction::In => (&rt.target, &rt.source),
                _ => (&rt.source, &rt.target),
            };
            if *here != ty.name {
                return Err(Error::filter(
                    format!("{rp}.direction"),
                    format!(
                        "relation type `{name}` goes from {} to {}: records of {} cannot be its {}",
                        rt.source,
                        rt.target,
                        ty.name,
                        if *direction == Direction::In {
                            "target"
                        } else {
                            "source"
                        }
                    ),
                ));
            }
            let other = schema.entity_type(there)?;
            let filter = match filter {
                Some(f) => Some(Box::new(node(&other, f, schema, rp.key("where"))?)),
                None => None,
            };
            CheckedFilter::Related {
                relation_type: name,
                direction: if *direction == Direction::In {
                    Direction::In
                } else {
                    Direction::Out
                },
                other,
                filter,
            }
        }
    })
}

/// The items of an `and`/`or` at `kp`.
fn list(
    ty: &EntityType,
    v: &[Filter],
    schema: &dyn SchemaLookup,
    kp: Path<'_>,
) -> Result<Vec<CheckedFilter>> {
    let mut out = Vec::with_capacity(v.len());
    for (i, f) in v.iter().enumerate() {
        // Predicates are most items: checked straight into the list, not returned
        // through `node` (a checked filter is copied at every return).
        match f {
            Filter::Pred { field, op, value } => {
                predicate_with(ty, field, *op, value, kp.index(i), |c| out.push(c))?
            }
            f => out.push(node(ty, f, schema, kp.index(i))?),
        }
    }
    Ok(out)
}

fn expected(class: ValueClass) -> &'static str {
    match class {
        ValueClass::Text => "a string",
        ValueClass::Integer => "an integer",
        ValueClass::Number => "a number",
        ValueClass::Boolean => "a boolean",
        ValueClass::Date => "a date string (YYYY-MM-DD)",
        ValueClass::Datetime => "an RFC 3339 datetime string",
        ValueClass::Uuid => "a uuid string",
    }
}

/// `v` as `class` for `target`; `enum_values` are the target's values if it is an enum.
#[inline(always)]
fn operand(
    target: &Target,
    enum_values: &[String],
    class: ValueClass,
    v: &Value,
    path: Path<'_>,
) -> Result<Scalar> {
    let wrong = || {
        Error::filter(
            path,
            format!(
                "`{}` needs {}, got {}",
                target.name(),
                expected(class),
                truncate(&v.to_string(), 60)
            ),
        )
    };
    if class != ValueClass::Text {
        return Scalar::from_json(class, v).ok_or_else(wrong);
    }
    // Text is checked on the JSON string, before it is copied.
    let t = match v {
        Value::String(t) if !t.contains('\0') => t,
        _ => return Err(wrong()),
    };
    // A character is at least a byte: short texts need no count.
    if t.len() > MAX_TEXT_OPERAND && t.chars().count() > MAX_TEXT_OPERAND {
        return Err(Error::filter(
            path,
            format!("text operands are limited to {MAX_TEXT_OPERAND} characters"),
        ));
    }
    if let Target::Field {
        kind: TargetKind::Enum,
        ..
    } = target
    {
        if !enum_values.contains(t) {
            return Err(Error::filter(
                path,
                format!(
                    "`{}` is not a value of enum `{}`",
                    truncate(t, 60),
                    target.name()
                ),
            ));
        }
    }
    Ok(Scalar::Text(Text::new(t)))
}

fn predicate(
    ty: &EntityType,
    field: &str,
    op: Op,
    value: &Value,
    path: Path<'_>,
) -> Result<CheckedFilter> {
    predicate_with(ty, field, op, value, path, |c| c)
}

/// Checks a predicate and hands the result to `done` (which may store it in place).
#[inline(always)]
fn predicate_with<R>(
    ty: &EntityType,
    field: &str,
    op: Op,
    value: &Value,
    path: Path<'_>,
    done: impl FnOnce(CheckedFilter) -> R,
) -> Result<R> {
    let (target, enum_values) = Target::resolve_field(ty, field).ok_or_else(|| {
        Error::filter(
            format!("{path}.field"),
            format!("unknown field `{}` on {}", truncate(field, 60), ty.name),
        )
    })?;
    let vpath = path.key("value");
    let not_for = || {
        let kind = match &target {
            Target::System(s) => if *s == SysField::Id {
                "uuid"
            } else {
                "datetime"
            }
            .to_string(),
            Target::Field { kind, .. } => match kind {
                TargetKind::List(k) => format!("list of {}", k.as_str()),
                k => k.name().to_string(),
            },
        };
        Error::filter(
            format!("{path}.op"),
            format!(
                "operator `{}` does not apply to `{}` ({kind})",
                op.as_str(),
                target.name()
            ),
        )
    };
    let class = target.class();
    let list_item = match &target {
        Target::Field {
            kind: TargetKind::List(k),
            ..
        } => Some(crate::field::scalar_class(*k)),
        _ => None,
    };
    let is_json = matches!(
        &target,
        Target::Field {
            kind: TargetKind::Json,
            ..
        }
    );
    let textual = class == Some(ValueClass::Text)
        && !matches!(
            &target,
            Target::Field {
                kind: TargetKind::Enum,
                ..
            }
        );
    Ok(match op {
        Op::IsNull | Op::Exists => {
            let Value::Bool(b) = value else {
                return Err(Error::filter(
                    vpath,
                    format!("`{}` needs true or false", op.as_str()),
                ));
            };
            if matches!(target, Target::System(_)) {
                return Err(not_for());
            }
            done(CheckedFilter::IsNull {
                target,
                is_null: if op == Op::IsNull { *b } else { !*b },
            })
        }
        Op::Eq | Op::Ne if is_json => {
            if crate::field::json_has_nul(value) {
                return Err(Error::filter(vpath, "text must not contain NUL"));
            }
            done(CheckedFilter::JsonEq {
                target,
                negated: op == Op::Ne,
                value: value.clone(),
            })
        }
        Op::Eq | Op::Ne | Op::Lt | Op::Lte | Op::Gt | Op::Gte => {
            let Some(class) = class else {
                return Err(not_for());
            };
            if class == ValueClass::Boolean && !matches!(op, Op::Eq | Op::Ne) {
                return Err(not_for());
            }
            if matches!(
                &target,
                Target::Field {
                    kind: TargetKind::Enum,
                    ..
                }
            ) && !matches!(op, Op::Eq | Op::Ne)
            {
                return Err(not_for());
            }
            let value = operand(&target, enum_values, class, value, vpath)?;
            let op = match op {
                Op::Eq => CmpOp::Eq,
                Op::Ne => CmpOp::Ne,
                Op::Lt => CmpOp::Lt,
                Op::Lte => CmpOp::Lte,
                Op::Gt => CmpOp::Gt,
                _ => CmpOp::Gte,
            };
            done(CheckedFilter::Compare { target, op, value })
        }
        Op::In | Op::NotIn => {
            let Some(class) = class else {
                return Err(not_for());
            };
            let Value::Array(items) = value else {
                return Err(Error::filter(
                    vpath,
                    format!("`{}` needs a list of values", op.as_str()),
                ));
            };
            if items.is_empty() {
                return Err(Error::filter(
                    vpath,
                    format!("`{}` needs a non-empty list", op.as_str()),
                ));
            }
            if items.len() > MAX_IN_VALUES {
                return Err(Error::filter(
                    vpath,
                    format!("`{}` lists at most {MAX_IN_VALUES} values", op.as_str()),
                ));
            }
            let mut values = Vec::with_capacity(items.len());
            for (i, v) in items.iter().enumerate() {
                values.push(operand(&target, enum_values, class, v, vpath.index(i))?);
            }
            done(CheckedFilter::In {
                target,
                negated: op == Op::NotIn,
                values,
            })
        }
        Op::Contains if list_item.is_some() => {
            let item = list_item.unwrap_or(ValueClass::Text);
            let value = Scalar::from_json(item, value).ok_or_else(|| {
                Error::filter(
                    vpath,
                    format!(
                        "`{}` holds items that are {}",
                        target.name(),
                        expected(item)
                    ),
                )
            })?;
            done(CheckedFilter::ListContains { target, value })
        }
        Op::Contains | Op::StartsWith | Op::EndsWith => {
            if !textual {
                return Err(not_for());
            }
            let Scalar::Text(value) =
                operand(&target, enum_values, ValueClass::Text, value, vpath)?
            else {
                return Err(not_for());
            };
            if value.is_empty() {
                return Err(Error::filter(
                    vpath,
                    format!("`{}` needs a non-empty string", op.as_str()),
                ));
            }
            done(CheckedFilter::Text {
                target,
                op: match op {
                    Op::Contains => TextOp::Contains,
                    Op::StartsWith => TextOp::StartsWith,
                    _ => TextOp::EndsWith,
                },
                value,
            })
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_holds_short_and_long_strings() {
        for s in [
            "",
            "a",
            "fourteen bytes",
            "fifteen bytes!!",
            "sixteen bytes!!!",
            "ü€😀ü€😀",
            "😀😀😀😀",
        ] {
            let t = Text::new(s);
            assert_eq!(t.as_str(), s);
            assert_eq!(t, Text::from(s.to_string()));
            assert_eq!(format!("{t:?}"), format!("{s:?}"));
        }
        assert_ne!(Text::new("a"), Text::new("b"));
    }
}
