//! Type-checking a raw filter against an entity type.

use std::cmp::Ordering;
use std::sync::Arc;

use chrono::{DateTime, NaiveDate, SecondsFormat, Utc};
use serde_json::Value;
use uuid::Uuid;

use super::ast::{Filter, Op, Path, MAX_CLAUSES, MAX_DEPTH, MAX_IN_VALUES};
use crate::entity_type::EntityType;
use crate::error::{Error, Result};
use crate::field::{parse_date, parse_datetime, Field, FieldKind, ScalarKind, ValueClass};
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
        Resolved::new(ty, name).map(Resolved::target)
    }
}

/// A resolved predicate target, before it is built (a copy of a few words: the
/// checker builds the [`Target`] in its final place). A field's kind is read once.
#[derive(Clone, Copy)]
enum Resolved<'t> {
    System(SysField),
    Field(&'t Field, TargetKind),
}

impl<'t> Resolved<'t> {
    /// `name` on `ty`.
    #[inline(always)]
    fn new(ty: &'t EntityType, name: &str) -> Option<Resolved<'t>> {
        if let Some(s) = SysField::parse(name) {
            return Some(Resolved::System(s));
        }
        ty.field(name)
            .map(|f| Resolved::Field(f, TargetKind::from(&f.kind)))
    }

    /// The target.
    #[inline(always)]
    fn target(self) -> Target {
        match self {
            Resolved::System(s) => Target::System(s),
            Resolved::Field(f, kind) => Target::Field {
                name: f.name.clone(),
                kind,
                indexed: f.has_index(),
            },
        }
    }

    /// The name as written in filters.
    fn name(self) -> &'t str {
        match self {
            Resolved::System(s) => s.as_str(),
            Resolved::Field(f, _) => f.name.as_str(),
        }
    }

    /// The kind of a user field.
    #[inline(always)]
    fn kind(self) -> Option<TargetKind> {
        match self {
            Resolved::System(_) => None,
            Resolved::Field(_, kind) => Some(kind),
        }
    }

    /// The comparison class, for orderable targets.
    #[inline(always)]
    fn class(self) -> Option<ValueClass> {
        match self {
            Resolved::System(s) => Some(s.class()),
            Resolved::Field(_, kind) => kind.value_class(),
        }
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

/// The bytes of `s` (at most [`INLINE_TEXT`]), zero-padded. Gathered in a register and
/// stored once ([`crate::name::short_word`]): copied into a stack array with a memcpy of
/// variable length, the bytes were read back whole right after (a store-forwarding stall
/// per operand).
#[inline(always)]
fn gather(s: &str) -> [u8; INLINE_TEXT] {
    let w = crate::name::short_word(s.as_bytes()).to_le_bytes();
    let mut bytes = [0; INLINE_TEXT];
    bytes.copy_from_slice(&w[..INLINE_TEXT]);
    bytes
}

impl Text {
    /// The empty text.
    const EMPTY: Text = Text(TextRepr::Inline(Inline {
        bytes: [0; INLINE_TEXT],
        len: 0,
    }));

    /// `s` as a `Text`.
    pub fn new(s: &str) -> Text {
        if s.len() <= INLINE_TEXT {
            Text(TextRepr::Inline(Inline {
                bytes: gather(s),
                len: s.len() as u8,
            }))
        } else {
            Text(TextRepr::Shared(Arc::from(s)))
        }
    }

    /// Makes the text `s`, in place: each form is written straight into `self` (a
    /// `Text` returned by [`Text::new`] goes through a stack slot written in pieces,
    /// and its copy into a checked filter read them back whole, which stalled store
    /// forwarding).
    #[inline(always)]
    fn set(&mut self, s: &str) {
        if s.len() <= INLINE_TEXT {
            self.0 = TextRepr::Inline(Inline {
                bytes: gather(s),
                len: s.len() as u8,
            });
        } else {
            self.0 = TextRepr::Shared(Arc::from(s));
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
        let mut s = Scalar::Bool(false);
        s.set_json(class, v).then_some(s)
    }

    /// [`Scalar::from_json`] in place: `false` (and `self` unspecified) if `v` does
    /// not fit. Each variant is written straight into `self`, where the checker keeps
    /// it (a `Scalar` returned goes through a stack slot written in pieces, and its
    /// copy read them back whole, which stalled store forwarding).
    #[inline(always)]
    fn set_json(&mut self, class: ValueClass, v: &Value) -> bool {
        match (class, v) {
            (ValueClass::Text, Value::String(s)) if !s.contains('\0') => self.set_text(s),
            (ValueClass::Integer, Value::Number(n)) => match n.as_i64() {
                Some(i) => *self = Scalar::Int(i),
                None => match n.as_f64() {
                    Some(f) if f.fract() == 0.0 && f.abs() < 9.2e18 => {
                        *self = Scalar::Int(f as i64)
                    }
                    _ => return false,
                },
            },
            (ValueClass::Number, Value::Number(n)) => match n.as_f64() {
                Some(f) if f.is_finite() => *self = Scalar::Float(f),
                _ => return false,
            },
            (ValueClass::Boolean, Value::Bool(b)) => *self = Scalar::Bool(*b),
            (ValueClass::Date, Value::String(s)) => match parse_date(s) {
                Some(d) => *self = Scalar::Date(d),
                None => return false,
            },
            (ValueClass::Datetime, Value::String(s)) => match parse_datetime(s) {
                Some(d) => *self = Scalar::Datetime(d),
                None => return false,
            },
            (ValueClass::Uuid, Value::String(s)) => match Uuid::try_parse(s) {
                Ok(u) => *self = Scalar::Uuid(u),
                Err(_) => return false,
            },
            _ => return false,
        }
        true
    }

    /// Makes `self` the text `s`, in place (see [`Scalar::set_json`]).
    #[inline(always)]
    fn set_text(&mut self, s: &str) {
        *self = Scalar::Text(Text::EMPTY);
        if let Scalar::Text(t) = self {
            t.set(s);
        }
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
            // The list's leading predicates, when even all its items fit both bounds
            // (the common case: all of them), are only counted, without a test each;
            // the loop below takes the rest (a nested list adds its own clauses).
            let mut first = 0;
            if depth < MAX_DEPTH && *clauses + v.len() <= MAX_CLAUSES {
                while let Some(Filter::Pred { .. }) = v.get(first) {
                    first += 1;
                }
                *clauses += first;
            }
            for (i, g) in v.iter().enumerate().skip(first) {
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
                let at = Loc {
                    parent: &kp,
                    index: i,
                };
                predicate_into(ty, field, *op, value, at, &mut out)?
            }
            f => out.push(node(ty, f, schema, kp.index(i))?),
        }
    }
    Ok(out)
}

/// Where a predicate is, for error messages: its path is only built for an error
/// (building it for every predicate cost more than the rest of its bookkeeping). Two
/// words, passed in registers.
#[derive(Clone, Copy)]
struct Loc<'a> {
    /// The path of the predicate, or of its `and`/`or` list.
    parent: &'a Path<'a>,
    /// Its index in that list, or [`NO_INDEX`].
    index: usize,
}

/// No index (see [`Loc`]).
const NO_INDEX: usize = usize::MAX;

impl Loc<'_> {
    /// `f` of the predicate's path.
    fn with<R>(self, f: impl FnOnce(Path<'_>) -> R) -> R {
        match self.index {
            NO_INDEX => f(*self.parent),
            i => f(self.parent.index(i)),
        }
    }

    /// `<path><suffix>` (`$.and[3].op`).
    fn at(self, suffix: &str) -> String {
        self.with(|p| format!("{p}{suffix}"))
    }

    /// The path of the operand, or of its item `item` (`$.and[3].value[1]`) unless
    /// that is [`NO_INDEX`].
    fn value(self, item: usize) -> String {
        self.with(|p| {
            let v = p.key("value");
            match item {
                NO_INDEX => v.to_string(),
                i => v.index(i).to_string(),
            }
        })
    }
}

/// Where a checked predicate goes: the predicate is written in place, each part as it
/// is checked (built elsewhere and moved there, its pieces were read back whole right
/// after they were written, which stalled store forwarding).
trait Slots {
    /// A new slot holding `make()`.
    fn slot(&mut self, make: impl FnOnce() -> CheckedFilter) -> &mut CheckedFilter;
}

impl Slots for Vec<CheckedFilter> {
    #[inline(always)]
    fn slot(&mut self, make: impl FnOnce() -> CheckedFilter) -> &mut CheckedFilter {
        // `extend` makes room before it calls `make`, which then writes straight
        // into the list (`push` needs the value first, and kept it on the stack).
        self.extend(std::iter::once_with(make));
        let last = self.len() - 1;
        &mut self[last]
    }
}

impl Slots for Option<CheckedFilter> {
    #[inline(always)]
    fn slot(&mut self, make: impl FnOnce() -> CheckedFilter) -> &mut CheckedFilter {
        self.insert(make())
    }
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

/// `v` does not fit `class`.
#[cold]
#[inline(never)]
fn wrong_operand(
    target: &Resolved<'_>,
    class: ValueClass,
    v: &Value,
    at: Loc<'_>,
    item: usize,
) -> Error {
    Error::filter(
        at.value(item),
        format!(
            "`{}` needs {}, got {}",
            target.name(),
            expected(class),
            truncate(&v.to_string(), 60)
        ),
    )
}

/// Operator `op` does not apply to `target`.
#[cold]
#[inline(never)]
fn not_for(target: &Resolved<'_>, op: Op, at: Loc<'_>) -> Error {
    let kind = match target.kind() {
        None => if target.class() == Some(ValueClass::Uuid) {
            "uuid"
        } else {
            "datetime"
        }
        .to_string(),
        Some(TargetKind::List(k)) => format!("list of {}", k.as_str()),
        Some(k) => k.name().to_string(),
    };
    Error::filter(
        at.at(".op"),
        format!(
            "operator `{}` does not apply to `{}` ({kind})",
            op.as_str(),
            target.name()
        ),
    )
}

/// An error about the operand of `op`: `op` and then `message`.
#[cold]
#[inline(never)]
fn operand_error(at: Loc<'_>, op: Op, message: &str) -> Error {
    Error::filter(at.value(NO_INDEX), format!("`{}` {message}", op.as_str()))
}

/// `v` as `class` for `target`, written into `dst`.
#[inline(always)]
fn operand_into(
    target: &Resolved<'_>,
    class: ValueClass,
    v: &Value,
    at: Loc<'_>,
    item: usize,
    dst: &mut Scalar,
) -> Result<()> {
    if class != ValueClass::Text {
        return match dst.set_json(class, v) {
            true => Ok(()),
            false => Err(wrong_operand(target, class, v, at, item)),
        };
    }
    let t = text_operand(target, v, at, item)?;
    dst.set_text(t);
    Ok(())
}

/// A text operand for `target` (checked on the JSON string, before it is copied).
#[inline(always)]
fn text_operand<'v>(
    target: &Resolved<'_>,
    v: &'v Value,
    at: Loc<'_>,
    item: usize,
) -> Result<&'v str> {
    let t = match v {
        Value::String(t) if !t.contains('\0') => t,
        _ => return Err(wrong_operand(target, ValueClass::Text, v, at, item)),
    };
    // A character is at least a byte: short texts need no count.
    if t.len() > MAX_TEXT_OPERAND && t.chars().count() > MAX_TEXT_OPERAND {
        return Err(too_long(at, item));
    }
    if let Resolved::Field(
        Field {
            kind: FieldKind::Enum(values),
            ..
        },
        _,
    ) = target
    {
        if !values.iter().any(|e| e == t) {
            return Err(not_in_enum(target, t, at, item));
        }
    }
    Ok(t)
}

/// A text operand longer than [`MAX_TEXT_OPERAND`].
#[cold]
#[inline(never)]
fn too_long(at: Loc<'_>, item: usize) -> Error {
    Error::filter(
        at.value(item),
        format!("text operands are limited to {MAX_TEXT_OPERAND} characters"),
    )
}

/// `t` is not a value of the enum `target`.
#[cold]
#[inline(never)]
fn not_in_enum(target: &Resolved<'_>, t: &str, at: Loc<'_>, item: usize) -> Error {
    Error::filter(
        at.value(item),
        format!(
            "`{}` is not a value of enum `{}`",
            truncate(t, 60),
            target.name()
        ),
    )
}

/// `ty` has no field `field`. The error constructors are cold and out of line: the
/// checker's hot path keeps only their calls.
#[cold]
#[inline(never)]
fn unknown_field(ty: &EntityType, field: &str, at: Loc<'_>) -> Error {
    Error::filter(
        at.at(".field"),
        format!("unknown field `{}` on {}", truncate(field, 60), ty.name),
    )
}

fn predicate(
    ty: &EntityType,
    field: &str,
    op: Op,
    value: &Value,
    path: Path<'_>,
) -> Result<CheckedFilter> {
    let mut out = None;
    let at = Loc {
        parent: &path,
        index: NO_INDEX,
    };
    predicate_into(ty, field, op, value, at, &mut out)?;
    // Always set when the predicate checks.
    Ok(out.unwrap_or(CheckedFilter::And(Vec::new())))
}

/// Checks a predicate into a new slot of `out`.
#[inline(always)]
fn predicate_into(
    ty: &EntityType,
    field: &str,
    op: Op,
    value: &Value,
    at: Loc<'_>,
    out: &mut impl Slots,
) -> Result<()> {
    let Some(r) = Resolved::new(ty, field) else {
        return Err(unknown_field(ty, field, at));
    };
    let kind = r.kind();
    let class = r.class();
    let is_enum = kind == Some(TargetKind::Enum);
    match op {
        Op::IsNull | Op::Exists => {
            let Value::Bool(b) = value else {
                return Err(operand_error(at, op, "needs true or false"));
            };
            if kind.is_none() {
                return Err(not_for(&r, op, at));
            }
            let is_null = if op == Op::IsNull { *b } else { !*b };
            out.slot(|| CheckedFilter::IsNull {
                target: r.target(),
                is_null,
            });
        }
        Op::Eq | Op::Ne if kind == Some(TargetKind::Json) => {
            if crate::field::json_has_nul(value) {
                return Err(json_nul(at));
            }
            out.slot(|| CheckedFilter::JsonEq {
                target: r.target(),
                negated: op == Op::Ne,
                value: value.clone(),
            });
        }
        Op::Eq | Op::Ne | Op::Lt | Op::Lte | Op::Gt | Op::Gte => {
            let Some(class) = class else {
                return Err(not_for(&r, op, at));
            };
            if (class == ValueClass::Boolean || is_enum) && !matches!(op, Op::Eq | Op::Ne) {
                return Err(not_for(&r, op, at));
            }
            let op = match op {
                Op::Eq => CmpOp::Eq,
                Op::Ne => CmpOp::Ne,
                Op::Lt => CmpOp::Lt,
                Op::Lte => CmpOp::Lte,
                Op::Gt => CmpOp::Gt,
                _ => CmpOp::Gte,
            };
            let slot = out.slot(|| CheckedFilter::Compare {
                target: r.target(),
                op,
                value: Scalar::Bool(false),
            });
            if let CheckedFilter::Compare { value: dst, .. } = slot {
                operand_into(&r, class, value, at, NO_INDEX, dst)?;
            }
        }
        Op::In | Op::NotIn => {
            let Some(class) = class else {
                return Err(not_for(&r, op, at));
            };
            let Value::Array(items) = value else {
                return Err(operand_error(at, op, "needs a list of values"));
            };
            if items.is_empty() {
                return Err(operand_error(at, op, "needs a non-empty list"));
            }
            if items.len() > MAX_IN_VALUES {
                return Err(operand_error(
                    at,
                    op,
                    &format!("lists at most {MAX_IN_VALUES} values"),
                ));
            }
            let slot = out.slot(|| CheckedFilter::In {
                target: r.target(),
                negated: op == Op::NotIn,
                values: Vec::with_capacity(items.len()),
            });
            if let CheckedFilter::In { values, .. } = slot {
                for (i, v) in items.iter().enumerate() {
                    values.extend(std::iter::once_with(|| Scalar::Bool(false)));
                    if let Some(dst) = values.last_mut() {
                        operand_into(&r, class, v, at, i, dst)?;
                    }
                }
            }
        }
        Op::Contains if matches!(kind, Some(TargetKind::List(_))) => {
            let item = match kind {
                Some(TargetKind::List(k)) => crate::field::scalar_class(k),
                _ => ValueClass::Text,
            };
            let slot = out.slot(|| CheckedFilter::ListContains {
                target: r.target(),
                value: Scalar::Bool(false),
            });
            if let CheckedFilter::ListContains { value: dst, .. } = slot {
                if !dst.set_json(item, value) {
                    return Err(list_item_error(&r, item, at));
                }
            }
        }
        Op::Contains | Op::StartsWith | Op::EndsWith => {
            if class != Some(ValueClass::Text) || is_enum {
                return Err(not_for(&r, op, at));
            }
            let t = text_operand(&r, value, at, NO_INDEX)?;
            if t.is_empty() {
                return Err(operand_error(at, op, "needs a non-empty string"));
            }
            let op = match op {
                Op::Contains => TextOp::Contains,
                Op::StartsWith => TextOp::StartsWith,
                _ => TextOp::EndsWith,
            };
            let slot = out.slot(|| CheckedFilter::Text {
                target: r.target(),
                op,
                value: Text::EMPTY,
            });
            if let CheckedFilter::Text { value: dst, .. } = slot {
                dst.set(t);
            }
        }
    }
    Ok(())
}

/// A JSON operand with a NUL in a string.
#[cold]
#[inline(never)]
fn json_nul(at: Loc<'_>) -> Error {
    Error::filter(at.value(NO_INDEX), "text must not contain NUL")
}

/// `contains` on a list field with an operand that is not an item.
#[cold]
#[inline(never)]
fn list_item_error(target: &Resolved<'_>, item: ValueClass, at: Loc<'_>) -> Error {
    Error::filter(
        at.value(NO_INDEX),
        format!(
            "`{}` holds items that are {}",
            target.name(),
            expected(item)
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_holds_short_and_long_strings() {
        for n in 0..=40 {
            let s: String = "abcdefghijklmnopqrstuvwxyz0123456789äöü€😀"
                .chars()
                .cycle()
                .take(n)
                .collect();
            assert_eq!(Text::new(&s).as_str(), s);
        }
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
