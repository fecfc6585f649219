//! SQL text with bind parameters, and the compiler from checked filters, sorts and
//! keyset positions to SQL. **No value and no field name is ever spliced into SQL
//! text**: every user-supplied string travels as a bind. The only text we format in
//! is our own: table names chosen from a fixed list, aliases we number, and `$n`.

use std::fmt::Write;

use chrono::{DateTime, NaiveDate, Utc};
use ddms_core::filter::TargetKind;
use ddms_core::filter::{CheckedFilter, CmpOp, Scalar, SysField, Target, Text, TextOp};
use ddms_core::query::CheckedQuery;
use ddms_core::{Direction, Name, ValueClass};
use uuid::Uuid;

/// A bind parameter value. The text variants `Name`, `Str` and `StrArr` share their
/// strings with the checked filter (no copy per bind); they bind and compare exactly
/// like `Text` and `TextArr`.
#[derive(Debug, Clone)]
pub enum Bind {
    /// uuid
    Uuid(Uuid),
    /// text
    Text(String),
    /// text: a field or relation type name
    Name(Name),
    /// text: an operand of a checked filter
    Str(Text),
    /// text[]: operands of a checked filter
    StrArr(Vec<Text>),
    /// bigint
    Int(i64),
    /// integer
    Int4(i32),
    /// double precision
    Float(f64),
    /// boolean
    Bool(bool),
    /// date
    Date(NaiveDate),
    /// timestamptz
    Ts(DateTime<Utc>),
    /// jsonb
    Json(serde_json::Value),
    /// uuid[]
    UuidArr(Vec<Uuid>),
    /// text[]
    TextArr(Vec<String>),
    /// bigint[]
    IntArr(Vec<i64>),
    /// double precision[]
    FloatArr(Vec<f64>),
    /// boolean[]
    BoolArr(Vec<bool>),
    /// date[]
    DateArr(Vec<NaiveDate>),
    /// timestamptz[]
    TsArr(Vec<DateTime<Utc>>),
    /// jsonb[]
    JsonArr(Vec<serde_json::Value>),
}

impl PartialEq for Bind {
    /// Equal when they bind the same SQL value (shared and owned text alike).
    fn eq(&self, other: &Bind) -> bool {
        use Bind::*;
        match (self.text(), other.text()) {
            (Some(a), Some(b)) => return a == b,
            (Some(_), None) | (None, Some(_)) => return false,
            (None, None) => {}
        }
        match (self.text_array(), other.text_array()) {
            (Some(a), Some(b)) => return a == b,
            (Some(_), None) | (None, Some(_)) => return false,
            (None, None) => {}
        }
        match (self, other) {
            (Uuid(a), Uuid(b)) => a == b,
            (Int(a), Int(b)) => a == b,
            (Int4(a), Int4(b)) => a == b,
            (Float(a), Float(b)) => a == b,
            (Bool(a), Bool(b)) => a == b,
            (Date(a), Date(b)) => a == b,
            (Ts(a), Ts(b)) => a == b,
            (Json(a), Json(b)) => a == b,
            (UuidArr(a), UuidArr(b)) => a == b,
            (IntArr(a), IntArr(b)) => a == b,
            (FloatArr(a), FloatArr(b)) => a == b,
            (BoolArr(a), BoolArr(b)) => a == b,
            (DateArr(a), DateArr(b)) => a == b,
            (TsArr(a), TsArr(b)) => a == b,
            (JsonArr(a), JsonArr(b)) => a == b,
            _ => false,
        }
    }
}

impl Bind {
    /// The text of a text bind.
    fn text(&self) -> Option<&str> {
        match self {
            Bind::Text(s) => Some(s),
            Bind::Name(s) => Some(s.as_str()),
            Bind::Str(s) => Some(s.as_str()),
            _ => None,
        }
    }

    /// The items of a text array bind.
    fn text_array(&self) -> Option<Vec<&str>> {
        match self {
            Bind::TextArr(v) => Some(v.iter().map(String::as_str).collect()),
            Bind::StrArr(v) => Some(v.iter().map(Text::as_str).collect()),
            _ => None,
        }
    }

    #[inline(always)]
    fn scalar(s: &Scalar) -> Bind {
        match s {
            Scalar::Text(v) => Bind::Str(v.clone()),
            Scalar::Int(v) => Bind::Int(*v),
            Scalar::Float(v) => Bind::Float(*v),
            Scalar::Bool(v) => Bind::Bool(*v),
            Scalar::Date(v) => Bind::Date(*v),
            Scalar::Datetime(v) => Bind::Ts(*v),
            Scalar::Uuid(v) => Bind::Uuid(*v),
        }
    }

    fn array(class: ValueClass, vals: &[Scalar]) -> Bind {
        macro_rules! collect {
            ($variant:ident, $pat:ident) => {
                Bind::$variant(
                    vals.iter()
                        .filter_map(|v| {
                            if let Scalar::$pat(x) = v {
                                Some(x.clone())
                            } else {
                                None
                            }
                        })
                        .collect(),
                )
            };
        }
        match class {
            ValueClass::Text => collect!(StrArr, Text),
            ValueClass::Integer => collect!(IntArr, Int),
            ValueClass::Number => Bind::FloatArr(
                vals.iter()
                    .filter_map(|v| match v {
                        Scalar::Float(x) => Some(*x),
                        Scalar::Int(x) => Some(*x as f64),
                        _ => None,
                    })
                    .collect(),
            ),
            ValueClass::Boolean => collect!(BoolArr, Bool),
            ValueClass::Date => collect!(DateArr, Date),
            ValueClass::Datetime => collect!(TsArr, Datetime),
            ValueClass::Uuid => collect!(UuidArr, Uuid),
        }
    }
}

/// A typed array bind of `vals` (all of class `class`).
pub fn scalar_array(class: ValueClass, vals: &[Scalar]) -> Bind {
    Bind::array(class, vals)
}

/// SQL text plus its binds, built together so placeholders always match.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Sql {
    /// The text, with `$n` placeholders.
    pub text: String,
    /// The binds, `$1` first.
    pub binds: Vec<Bind>,
    /// Set by [`Compiler::query`] when the query's best plan does not depend on its
    /// values or on the tenant's size (see [`Compiler::query`]): [`Sql::query`] then
    /// keeps it prepared.
    pub stable_plan: bool,
}

impl Sql {
    /// Empty.
    pub fn new() -> Self {
        Sql::default()
    }

    /// Appends SQL text (our own, never input).
    pub fn push(&mut self, s: &str) -> &mut Self {
        self.text.push_str(s);
        self
    }

    /// Adds a bind and appends its placeholder.
    pub fn bind(&mut self, b: Bind) -> &mut Self {
        self.binds.push(b);
        let _ = write!(self.text, "${}", self.binds.len());
        self
    }

    /// Adds a bind and returns its placeholder without appending it.
    pub fn param(&mut self, b: Bind) -> String {
        self.binds.push(b);
        format!("${}", self.binds.len())
    }

    /// A Diesel query with every bind applied, planned per call (see [`Sql::prepared`]
    /// for the cached form; a list whose plan [`Compiler::query`] marked stable runs
    /// prepared through its backend's bounded set of such texts).
    pub fn query(&self) -> crate::statement::Statement {
        crate::statement::Statement::new(self.clone(), false)
    }
}

/// The field-value table and SQL cast of a value class.
pub fn class_table(c: ValueClass) -> (&'static str, &'static str) {
    match c {
        ValueClass::Text => ("fv_text", "text"),
        ValueClass::Integer => ("fv_int", "bigint"),
        ValueClass::Number => ("fv_float", "float8"),
        ValueClass::Boolean => ("fv_bool", "boolean"),
        ValueClass::Date => ("fv_date", "date"),
        ValueClass::Datetime => ("fv_ts", "timestamptz"),
        ValueClass::Uuid => ("fv_uuid", "uuid"),
    }
}

/// The `fields.value_class` tag of a class (matches the triggers in the migration).
pub fn class_tag(c: ValueClass) -> &'static str {
    match c {
        ValueClass::Text => "text",
        ValueClass::Integer => "int",
        ValueClass::Number => "float",
        ValueClass::Boolean => "bool",
        ValueClass::Date => "date",
        ValueClass::Datetime => "ts",
        ValueClass::Uuid => "uuid",
    }
}

/// `(SELECT x.record_id FROM <table> x WHERE x.tenant_id = $1 AND x.field_id = `.
macro_rules! fv_select_sql {
    ($table:literal) => {
        concat!(
            "(SELECT x.record_id FROM ",
            $table,
            " x WHERE x.tenant_id = $1 AND x.field_id = "
        )
    };
}

/// Appends `(SELECT x.record_id FROM <fv> x WHERE x.tenant_id = $1 AND x.field_id = `:
/// the opening of a subquery on the field-value table of class `c` (see
/// [`class_table`]), in one piece, a literal for each class (see [`push_alias`]). `$1`
/// is [`TENANT`].
#[inline(always)]
fn push_fv_select(out: &mut String, c: ValueClass) {
    match c {
        ValueClass::Text => out.push_str(fv_select_sql!("fv_text")),
        ValueClass::Integer => out.push_str(fv_select_sql!("fv_int")),
        ValueClass::Number => out.push_str(fv_select_sql!("fv_float")),
        ValueClass::Boolean => out.push_str(fv_select_sql!("fv_bool")),
        ValueClass::Date => out.push_str(fv_select_sql!("fv_date")),
        ValueClass::Datetime => out.push_str(fv_select_sql!("fv_ts")),
        ValueClass::Uuid => out.push_str(fv_select_sql!("fv_uuid")),
    }
}

/// `((alias.data->>$key) COLLATE "C")` or `((alias.data->>$key)::type)`.
fn render_json(out: &mut String, alias: &str, key: usize, class: ValueClass) {
    out.push_str("((");
    push_alias(out, alias);
    out.push_str(".data->>");
    placeholder(out, key);
    // Each ending a constant (see `push_alias`); the casts are `class_table`'s.
    match class {
        ValueClass::Text => out.push_str(") COLLATE \"C\")"),
        ValueClass::Integer => out.push_str(")::bigint)"),
        ValueClass::Number => out.push_str(")::float8)"),
        ValueClass::Boolean => out.push_str(")::boolean)"),
        ValueClass::Date => out.push_str(")::date)"),
        ValueClass::Datetime => out.push_str(")::timestamptz)"),
        ValueClass::Uuid => out.push_str(")::uuid)"),
    }
}

/// Appends the alias `alias`: a one-letter alias (the queried records' `r`) as a
/// character. A string whose length is only known at run time is copied with a call to
/// `memcpy`, a literal with a store or two.
#[inline(always)]
fn push_alias(out: &mut String, alias: &str) {
    match alias.as_bytes() {
        [c] if c.is_ascii() => out.push(char::from(*c)),
        _ => out.push_str(alias),
    }
}

/// Appends ` <op> ` (each a literal, see [`push_alias`]).
#[inline(always)]
fn push_cmp(out: &mut String, op: CmpOp) {
    match op {
        CmpOp::Eq => out.push_str(" = "),
        CmpOp::Ne => out.push_str(" <> "),
        CmpOp::Lt => out.push_str(" < "),
        CmpOp::Lte => out.push_str(" <= "),
        CmpOp::Gt => out.push_str(" > "),
        CmpOp::Gte => out.push_str(" >= "),
    }
}

/// Tells the compiler which fields have a usable (ready) field-value index.
pub trait IndexLookup {
    /// The field id when `field` of entity type `type_id` has a ready index.
    fn ready_index(&self, type_id: Uuid, field: &str) -> Option<Uuid>;
}

/// No index is usable (everything takes the JSONB path).
pub struct NoIndexes;

impl IndexLookup for NoIndexes {
    fn ready_index(&self, _: Uuid, _: &str) -> Option<Uuid> {
        None
    }
}

/// How a value is reached (rendered straight into the output, without intermediate
/// strings).
enum Access {
    /// A non-null column of the record (system fields).
    Column(SysField),
    /// The joined field-value table column `sN.v` of sort join `N`, for sorted indexed
    /// fields.
    Joined(usize),
    /// Through the field-value index table of its class, as a semi-join.
    Index {
        class: ValueClass,
        field_id: FieldId,
    },
    /// Typed extraction from `data`; the field name is bind `$key` (nullable).
    Json { key: usize, class: ValueClass },
}

/// The placeholder of the tenant id, which [`Compiler::new`] binds first.
const TENANT: &str = "$1";

/// The record columns of a list ([`crate::rows::RECORD_COLS`] of the alias `r`).
const RECORD_COLS_R: &str =
    "r.id, r.data, r.version, r.created_at, r.updated_at, r.created_by, r.updated_by";

/// The compiler's state: the SQL being built (its first bind the tenant id).
pub struct Compiler<'a> {
    /// Output.
    pub sql: Sql,
    indexes: &'a dyn IndexLookup,
    aliases: usize,
    /// Sort joins on indexed fields: (type id, field name, alias).
    joins: Vec<(Uuid, String, String)>,
    /// Answers of `indexes` so far: (type id, field, ready index). A filter often names
    /// a field more than once (a range is two predicates), and a lookup hashes the
    /// type id and the name (behind a lock, in the backend).
    /// The first few are kept, in place (no allocation for a small filter).
    ready: [Option<(Uuid, MemoName, Option<FieldId>)>; READY_MEMO],
    /// Index subqueries emitted so far (bounded: each top-level one becomes a semi-join,
    /// and hundreds of joins would take the planner longer than any scan).
    index_subqueries: usize,
    /// The queried entity type, while compiling [`Compiler::query`].
    main_type: Option<std::sync::Arc<ddms_core::EntityType>>,
    /// Index subqueries that look up one record by a unique field's value (counted in
    /// `index_subqueries` too).
    unique_lookups: usize,
}

/// Whether `f` is a single comparison (alone or as the one item of an AND; see
/// [`Compiler::query`]).
fn single_comparison(f: Option<&CheckedFilter>) -> bool {
    match f {
        Some(CheckedFilter::And(v)) => matches!(v.as_slice(), [CheckedFilter::Compare { .. }]),
        Some(CheckedFilter::Compare { .. }) => true,
        _ => false,
    }
}

/// At most this many predicates in the filter of a bounded walk.
pub const WALK_PREDICATES: usize = 4;

/// A page of `limit` records and the next one's first, rounded up to a power of two
/// (at least 16): the constant limits of the value walk and the bounded walk, from a
/// small set of texts, where a bound limit would spoil the generic plan (see
/// [`Compiler::value_walk`], [`Compiler::bounded_walk`]).
fn page_bucket(limit: usize) -> usize {
    (limit + 1).next_power_of_two().max(16)
}

/// How many records a bounded walk for pages of `limit` reads at most: 16 pages (the
/// [`page_bucket`]), at most 4,096 (and never less than a page and one) — so values in
/// more than ~1/16 of a type (1/4 for the largest pages) are found by the walk. A
/// constant in the text, like the value walk's inner limit (a parameter there would be
/// costed as a tenth of the type and spoil the generic plan).
pub fn walk_span(limit: usize) -> usize {
    (page_bucket(limit) * 16).min(4096).max(limit + 1)
}

/// The `ORDER BY` list of sort keys `(expression, descending, nullable)`.
fn order_by(keys: &[(String, bool, bool)]) -> String {
    keys.iter()
        .map(|(e, desc, _)| match desc {
            true => format!("{e} DESC"),
            false => e.clone(),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Whether `f` has a `related` predicate.
fn has_related(f: &CheckedFilter) -> bool {
    match f {
        CheckedFilter::And(v) | CheckedFilter::Or(v) => v.iter().any(has_related),
        CheckedFilter::Not(g) => has_related(g),
        CheckedFilter::Related { .. } => true,
        _ => false,
    }
}

/// A list that can be read off one field's value index in order ([`Compiler::query`]
/// takes this route when the field's index is ready): sorted by a user field of a value
/// class (then `id`, in the same direction), filtered only by bounds on that field — an
/// equality, or at most one lower and one upper bound — so every match has a value, and
/// a keyset position, if any, names both the value and the id.
struct ValueWalk<'q> {
    name: &'q Name,
    class: ValueClass,
    desc: bool,
    /// An equality (`=`) or a lower bound (`>`, `>=`).
    lower: Option<(CmpOp, &'q Scalar)>,
    /// An upper bound (`<`, `<=`).
    upper: Option<(CmpOp, &'q Scalar)>,
    after: Option<(&'q Scalar, &'q Scalar)>,
}

impl<'q> ValueWalk<'q> {
    fn of(q: &'q CheckedQuery) -> Option<ValueWalk<'q>> {
        let [key, tie] = q.sort.as_slice() else {
            return None;
        };
        let Target::Field { name, kind, .. } = &key.target else {
            return None;
        };
        if !matches!(tie.target, Target::System(SysField::Id)) || tie.desc != key.desc {
            return None;
        }
        let class = kind.value_class()?;
        let preds = match q.filter.as_ref()? {
            CheckedFilter::And(v) => v.as_slice(),
            c @ CheckedFilter::Compare { .. } => std::slice::from_ref(c),
            _ => return None,
        };
        let (mut lower, mut upper, mut eq) = (None, None, false);
        for p in preds {
            let CheckedFilter::Compare {
                target: Target::Field { name: n, .. },
                op,
                value,
            } = p
            else {
                return None;
            };
            if n.as_str() != name.as_str() {
                return None;
            }
            let slot = match op {
                CmpOp::Eq if lower.is_none() && upper.is_none() => {
                    eq = true;
                    &mut lower
                }
                CmpOp::Gt | CmpOp::Gte if !eq => &mut lower,
                CmpOp::Lt | CmpOp::Lte if !eq => &mut upper,
                _ => return None,
            };
            if slot.replace((*op, value)).is_some() {
                return None;
            }
        }
        lower.or(upper)?;
        let after = match q.after.as_deref() {
            None => None,
            Some([Some(v), Some(id)]) => Some((v, id)),
            Some(_) => return None,
        };
        Some(ValueWalk {
            name,
            class,
            desc: key.desc,
            lower,
            upper,
            after,
        })
    }
}

/// A field id as the compiler carries it between the index lookup and its bind: a
/// `Uuid` is 16 bytes of alignment 1, so an `Option<Uuid>` or an [`Access`] held it at
/// an odd offset, written and read back in unaligned pieces (store-forwarding stalls).
type FieldId = u128;

/// A field name as the ready-index memo keeps it: up to 16 bytes in a word (names have
/// no NUL, so the zero padding is unambiguous), longer ones shared. A clone of the
/// shared [`Name`] costs an atomic increment, and its drop a decrement.
#[derive(PartialEq)]
enum MemoName {
    Short(u128),
    Long(Name),
}

impl MemoName {
    #[inline(always)]
    fn of(name: &Name) -> MemoName {
        let b = name.as_str().as_bytes();
        if b.len() <= 16 {
            MemoName::Short(ddms_core::name::short_word(b))
        } else {
            MemoName::Long(name.clone())
        }
    }
}

/// How many answers of [`IndexLookup::ready_index`] a compiler keeps.
const READY_MEMO: usize = 8;

/// Most field-value subqueries in one query; further predicates take the JSONB path,
/// which is always correct, only not index-assisted.
pub const MAX_INDEX_SUBQUERIES: usize = 8;

fn sys_name(s: SysField) -> &'static str {
    match s {
        SysField::Id => "id",
        SysField::CreatedAt => "created_at",
        SysField::UpdatedAt => "updated_at",
    }
}

fn sys_column(alias: &str, s: SysField) -> String {
    format!("{alias}.{}", sys_name(s))
}

/// The number of predicates (`related` included) in `f`.
fn predicates(f: &CheckedFilter) -> usize {
    match f {
        CheckedFilter::And(v) | CheckedFilter::Or(v) => v.iter().map(predicates_in).sum(),
        CheckedFilter::Not(g) => predicates(g),
        CheckedFilter::Related {
            filter: Some(g), ..
        } => 1 + predicates(g),
        _ => 1,
    }
}

/// [`predicates`] of an item of a list: a plain predicate without a call.
#[inline]
fn predicates_in(f: &CheckedFilter) -> usize {
    match f {
        CheckedFilter::And(_)
        | CheckedFilter::Or(_)
        | CheckedFilter::Not(_)
        | CheckedFilter::Related { .. } => predicates(f),
        _ => 1,
    }
}

/// Appends `$n` (digits written directly: `write!` costs more than the rest of a
/// predicate's text).
#[inline]
fn placeholder(out: &mut String, n: usize) {
    out.push('$');
    number(out, n);
}

/// Appends the decimal digits of `n`.
#[inline]
fn number(out: &mut String, n: usize) {
    // Placeholders and aliases are nearly always one or two digits.
    if n < 10 {
        out.push(char::from(b'0' + n as u8));
    } else if n < 100 {
        out.push(char::from(b'0' + (n / 10) as u8));
        out.push(char::from(b'0' + (n % 10) as u8));
    } else {
        long_number(out, n);
    }
}

/// [`number`] from 100 on.
#[cold]
fn long_number(out: &mut String, mut n: usize) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    for &d in &buf[i..] {
        out.push(char::from(d));
    }
}

/// The smallest string greater than every string starting with `p` (code-point order,
/// which is byte order for UTF-8, i.e. the C collation); `None` if there is none.
pub fn prefix_upper_bound(p: &str) -> Option<String> {
    let (i, c) = upper_bound_at(p)?;
    let mut out = String::with_capacity(i + c.len_utf8());
    out.push_str(&p[..i]);
    out.push(c);
    Some(out)
}

/// [`prefix_upper_bound`] as a bind, from its [`upper_bound_at`] `(i, c)`: short
/// bounds are built without an allocation.
fn upper_bound_bind(p: &str, (i, c): (usize, char)) -> Bind {
    let mut buf = [0u8; 16];
    let len = i + c.len_utf8();
    if len <= buf.len() {
        buf[..i].copy_from_slice(&p.as_bytes()[..i]);
        c.encode_utf8(&mut buf[i..]);
        // Always valid: a prefix of `p` up to a character boundary, then a character.
        if let Ok(s) = std::str::from_utf8(&buf[..len]) {
            return Bind::Str(Text::new(s));
        }
    }
    let mut out = String::with_capacity(len);
    out.push_str(&p[..i]);
    out.push(c);
    Bind::Text(out)
}

/// The bound is `p[..i]` followed by `c`: the last character that has a successor is
/// replaced by it, and what follows it (only U+10FFFF, which has none) is dropped.
fn upper_bound_at(p: &str) -> Option<(usize, char)> {
    // Nearly always an ASCII character below DEL, whose successor is the next byte.
    if let Some(&b) = p.as_bytes().last() {
        if b < 0x7f {
            return Some((p.len() - 1, char::from(b + 1)));
        }
    }
    for (i, last) in p.char_indices().rev() {
        let mut n = last as u32 + 1;
        if (0xD800..=0xDFFF).contains(&n) {
            n = 0xE000;
        }
        if let Some(c) = char::from_u32(n) {
            return Some((i, c));
        }
    }
    None
}

impl<'a> Compiler<'a> {
    /// A compiler whose first bind (`$1`) is the tenant id.
    pub fn new(tenant: Uuid, indexes: &'a dyn IndexLookup) -> Self {
        let sql = Sql {
            text: String::new(),
            binds: vec![Bind::Uuid(tenant)],
            stable_plan: false,
        };
        Compiler {
            sql,
            indexes,
            aliases: 0,
            joins: Vec::new(),
            ready: Default::default(),
            index_subqueries: 0,
            main_type: None,
            unique_lookups: 0,
        }
    }

    /// Makes room for `n` more binds. The list [`Compiler::new`] made holds only the
    /// tenant: growing it in place is a `realloc` (a copy of that bind and two calls
    /// into the allocator after a `malloc` of the same size); a list of the right size
    /// is made instead and the tenant bind copied.
    fn reserve_binds(&mut self, n: usize) {
        let binds = &mut self.sql.binds;
        if binds.capacity() - binds.len() >= n {
            return;
        }
        if let [tenant @ Bind::Uuid(_)] = binds.as_slice() {
            let mut fresh = Vec::with_capacity(1 + n);
            fresh.push(tenant.clone());
            *binds = fresh;
        } else {
            binds.reserve(n);
        }
    }

    /// Adds the bind `make` builds; returns its number. `extend` makes room before it
    /// calls `make`, whose bind is then written straight into the list. A bind built
    /// first and then pushed was kept on the stack across the push's growth check,
    /// written there in pieces (the variants hold their values at offsets 1, 4 and 8)
    /// and read back whole right after: a store-forwarding stall per bind.
    #[inline(always)]
    fn bind_with(&mut self, make: impl FnOnce() -> Bind) -> usize {
        self.sql.binds.extend(std::iter::once_with(make));
        self.sql.binds.len()
    }

    /// Adds the bind of an operand; returns its number (each variant built by a
    /// [`Compiler::bind_with`] of its own).
    #[inline(always)]
    fn scalar_n(&mut self, s: &Scalar) -> usize {
        match s {
            Scalar::Text(v) => self.bind_with(|| Bind::Str(v.clone())),
            Scalar::Int(v) => self.bind_with(|| Bind::Int(*v)),
            Scalar::Float(v) => self.bind_with(|| Bind::Float(*v)),
            Scalar::Bool(v) => self.bind_with(|| Bind::Bool(*v)),
            Scalar::Date(v) => self.bind_with(|| Bind::Date(*v)),
            Scalar::Datetime(v) => self.bind_with(|| Bind::Ts(*v)),
            Scalar::Uuid(v) => self.bind_with(|| Bind::Uuid(*v)),
        }
    }

    /// [`Compiler::scalar_n`], appending its placeholder to `out`.
    #[inline(always)]
    fn scalar_into(&mut self, out: &mut String, s: &Scalar) {
        let n = self.scalar_n(s);
        placeholder(out, n);
    }

    /// Adds the array bind of `values` (of class `class`) and appends its placeholder.
    #[inline(always)]
    fn array_into(&mut self, out: &mut String, class: ValueClass, values: &[Scalar]) {
        let n = self.bind_with(|| Bind::array(class, values));
        placeholder(out, n);
    }

    /// Adds the bind of the name of a target (a user field: the checked filter's shared
    /// name); returns its number.
    #[inline(always)]
    fn name_n(&mut self, target: &Target) -> usize {
        match target {
            Target::Field { name, .. } => self.bind_with(|| Bind::Name(name.clone())),
            Target::System(s) => self.bind_with(|| Bind::Text(sys_name(*s).to_string())),
        }
    }

    fn json_expr(&mut self, alias: &str, name: &str, class: ValueClass) -> String {
        let key = self.bind_with(|| Bind::Text(name.to_string()));
        let mut out = String::with_capacity(40);
        render_json(&mut out, alias, key, class);
        out
    }

    /// How to reach `target`: a column, an index, or (binding the field name) `data`.
    #[inline(always)]
    fn access(&mut self, type_id: Uuid, target: &Target, top: bool) -> Access {
        match target {
            Target::System(s) => Access::Column(*s),
            Target::Field { name, kind, .. } => match self.indexed_access(type_id, target, top) {
                Some(a) => a,
                None => {
                    let class = kind.value_class().unwrap_or(ValueClass::Text);
                    let key = self.bind_with(|| Bind::Name(name.clone()));
                    Access::Json { key, class }
                }
            },
        }
    }

    /// A column or `data` extraction, never an index.
    #[inline(always)]
    fn plain_access(&mut self, target: &Target) -> Access {
        match target {
            Target::System(s) => Access::Column(*s),
            Target::Field { name, kind, .. } => {
                let class = kind.value_class().unwrap_or(ValueClass::Text);
                let key = self.bind_with(|| Bind::Name(name.clone()));
                Access::Json { key, class }
            }
        }
    }

    /// The index route to a user field, if it has one (no bind is added otherwise).
    /// Only fields declared `indexed` or `unique` can have a ready index (the state is
    /// reset when the declaration goes), so the others skip the lookup.
    #[inline(always)]
    fn indexed_access(&mut self, type_id: Uuid, target: &Target, top: bool) -> Option<Access> {
        let Target::Field {
            name,
            kind,
            indexed,
        } = target
        else {
            return None;
        };
        let class = kind.value_class()?;
        // Sort joins exist only while compiling a sorted query.
        if top && !self.joins.is_empty() {
            if let Some(i) = self
                .joins
                .iter()
                .position(|(t, f, _)| *t == type_id && f == name.as_str())
            {
                return Some(Access::Joined(i));
            }
        }
        if !indexed || self.index_subqueries >= MAX_INDEX_SUBQUERIES {
            return None;
        }
        let field_id = self.ready_index(type_id, name)?;
        self.index_subqueries += 1;
        Some(Access::Index { class, field_id })
    }

    /// [`IndexLookup::ready_index`], asked once per field and compilation.
    fn ready_index(&mut self, type_id: Uuid, name: &Name) -> Option<FieldId> {
        let key = MemoName::of(name);
        for slot in &mut self.ready {
            match slot {
                Some((t, f, id)) if *t == type_id && *f == key => return *id,
                Some(_) => {}
                None => {
                    let id = self
                        .indexes
                        .ready_index(type_id, name.as_str())
                        .map(|id| id.as_u128());
                    *slot = Some((type_id, key, id));
                    return id;
                }
            }
        }
        self.indexes
            .ready_index(type_id, name.as_str())
            .map(|id| id.as_u128())
    }

    #[inline(always)]
    fn render(&self, out: &mut String, alias: &str, a: &Access) {
        match a {
            Access::Column(s) => {
                push_alias(out, alias);
                out.push('.');
                out.push_str(sys_name(*s));
            }
            Access::Joined(i) => {
                out.push_str(&self.joins[*i].2);
                out.push_str(".v");
            }
            Access::Json { key, class } => render_json(out, alias, *key, *class),
            Access::Index { .. } => {}
        }
    }

    /// `alias.id IN (SELECT record_id FROM <fv> WHERE tenant, field AND <cond on x.v>)`.
    fn via_index(
        &mut self,
        out: &mut String,
        alias: &str,
        class: ValueClass,
        field_id: FieldId,
        cond: impl FnOnce(&mut Self, &mut String),
    ) {
        self.fv_lookup(out, alias, false, class, field_id);
        cond(self, out);
        out.push(')');
    }

    /// `alias.id IN (SELECT x.record_id FROM <fv> x WHERE tenant AND field AND ` (`.id =
    /// ` for a `unique` lookup; `<fv>` the table of `class`, see [`push_fv_select`]): the
    /// opening shared by [`Compiler::via_index`] and [`Compiler::via_unique`].
    #[inline(always)]
    fn fv_lookup(
        &mut self,
        out: &mut String,
        alias: &str,
        unique: bool,
        class: ValueClass,
        field_id: FieldId,
    ) {
        let f = self.bind_with(|| Bind::Uuid(Uuid::from_u128(field_id)));
        push_alias(out, alias);
        if unique {
            out.push_str(".id = ");
        } else {
            out.push_str(".id IN ");
        }
        push_fv_select(out, class);
        placeholder(out, f);
        out.push_str(" AND ");
    }

    /// Whether `target` is a unique field of the queried type (see
    /// [`Compiler::via_unique`]).
    fn unique(&self, target: &Target) -> bool {
        let Target::Field { name, .. } = target else {
            return false;
        };
        self.main_type
            .as_ref()
            .and_then(|t| t.field(name.as_str()))
            .is_some_and(|f| f.unique)
    }

    /// `alias.id = (SELECT record_id FROM <fv> WHERE tenant, field AND x.v = value
    /// LIMIT 1)`: the record with this value of a unique field (all index rows of a
    /// unique field are `uniq`, so the unique index holds at most one). A scalar
    /// subquery, not a semi-join: its plan is the same whatever the value, which lets
    /// PostgreSQL keep the query's generic plan (see [`Compiler::query`]). The query's
    /// type-version guard makes sure the field was still unique.
    fn via_unique(
        &mut self,
        out: &mut String,
        alias: &str,
        class: ValueClass,
        field_id: FieldId,
        v: &Scalar,
    ) {
        self.fv_lookup(out, alias, true, class, field_id);
        out.push_str("x.uniq AND x.v = ");
        self.scalar_into(out, v);
        out.push_str(" LIMIT 1)");
    }

    /// Compiles a filter over records aliased `alias` of entity type `type_id`. `top`
    /// is true while only `and`s separate the node from the root.
    pub fn filter(&mut self, f: &CheckedFilter, alias: &str, type_id: Uuid, top: bool) -> String {
        // About 100 bytes and 2-3 binds per predicate: one allocation each, not a series
        // of doublings.
        let n = predicates(f);
        let mut out = String::with_capacity(32 + 112 * n);
        // Up to three binds per predicate (a prefix range on an index has three).
        self.reserve_binds(3 * n);
        self.filter_into(&mut out, f, alias, type_id, top);
        out
    }

    /// [`Compiler::filter`], appending to `out`.
    pub fn filter_into(
        &mut self,
        out: &mut String,
        f: &CheckedFilter,
        alias: &str,
        type_id: Uuid,
        top: bool,
    ) {
        match f {
            CheckedFilter::And(v) if v.is_empty() => out.push_str("TRUE"),
            CheckedFilter::Or(v) if v.is_empty() => out.push_str("FALSE"),
            CheckedFilter::And(v) | CheckedFilter::Or(v) => {
                let and = matches!(f, CheckedFilter::And(_));
                let top = top && and;
                out.push('(');
                for (i, g) in v.iter().enumerate() {
                    // Each a literal (see `push_alias`).
                    if i > 0 {
                        if and {
                            out.push_str(" AND ");
                        } else {
                            out.push_str(" OR ");
                        }
                    }
                    self.filter_into(out, g, alias, type_id, top);
                }
                out.push(')');
            }
            CheckedFilter::Not(g) => {
                out.push_str("(NOT ");
                self.filter_into(out, g, alias, type_id, false);
                out.push(')');
            }
            CheckedFilter::Compare { target, op, value } => {
                // `<>` selects nearly everything: an index cannot help it.
                let route = if *op == CmpOp::Ne {
                    self.plain_access(target)
                } else {
                    self.access(type_id, target, top)
                };
                let is_eq = *op == CmpOp::Eq;
                let op = *op;
                match route {
                    Access::Index { class, field_id } if top && is_eq && self.unique(target) => {
                        self.unique_lookups += 1;
                        self.via_unique(out, alias, class, field_id, value);
                    }
                    Access::Index { class, field_id } => {
                        self.via_index(out, alias, class, field_id, |me, out| {
                            out.push_str("x.v");
                            push_cmp(out, op);
                            me.scalar_into(out, value);
                        })
                    }
                    // Plain comparisons: system columns are never null, and a joined
                    // value is only used in the top-level AND chain, where NULL and
                    // false both exclude the row (and the plain form is index-usable).
                    ref a @ (Access::Column(_) | Access::Joined(_)) => {
                        out.push('(');
                        self.render(out, alias, a);
                        push_cmp(out, op);
                        self.scalar_into(out, value);
                        out.push(')');
                    }
                    ref a @ Access::Json { .. } => {
                        out.push_str("COALESCE(");
                        self.render(out, alias, a);
                        push_cmp(out, op);
                        self.scalar_into(out, value);
                        out.push_str(", false)");
                    }
                }
            }
            CheckedFilter::In {
                target,
                negated,
                values,
            } => {
                let class = target.class().unwrap_or(ValueClass::Text);
                // Each a literal (see `push_alias`).
                let test = |out: &mut String| {
                    if *negated {
                        out.push_str(" <> ALL(");
                    } else {
                        out.push_str(" = ANY(");
                    }
                };
                let route = if *negated {
                    self.plain_access(target)
                } else {
                    self.access(type_id, target, top)
                };
                match route {
                    Access::Index { class, field_id } => {
                        self.via_index(out, alias, class, field_id, |me, out| {
                            out.push_str("x.v");
                            test(out);
                            me.array_into(out, class, values);
                            out.push(')');
                        })
                    }
                    ref a @ (Access::Column(_) | Access::Joined(_)) => {
                        out.push('(');
                        self.render(out, alias, a);
                        test(out);
                        self.array_into(out, class, values);
                        out.push(')');
                        out.push(')');
                    }
                    ref a @ Access::Json { .. } => {
                        out.push_str("COALESCE(");
                        self.render(out, alias, a);
                        test(out);
                        self.array_into(out, class, values);
                        out.push(')');
                        out.push_str(", false)");
                    }
                }
            }
            CheckedFilter::Text { target, op, value } => {
                let access = if *op == TextOp::StartsWith {
                    self.indexed_access(type_id, target, top)
                } else {
                    None
                };
                // The bound's bind is built where it is added (see `bind_with`).
                let range = match access {
                    Some(_) => {
                        let p = value.as_str();
                        upper_bound_at(p).map(|at| (p, at))
                    }
                    None => None,
                };
                match (access, range) {
                    (Some(a @ Access::Joined(_)), Some(upper)) => {
                        out.push('(');
                        self.render(out, alias, &a);
                        out.push_str(" >= ");
                        let n = self.bind_with(|| Bind::Str(value.clone()));
                        placeholder(out, n);
                        out.push_str(" AND ");
                        self.render(out, alias, &a);
                        out.push_str(" < ");
                        let n = self.bind_with(|| upper_bound_bind(upper.0, upper.1));
                        placeholder(out, n);
                        out.push(')');
                    }
                    (Some(Access::Index { class, field_id }), Some(upper)) => {
                        self.via_index(out, alias, class, field_id, |me, out| {
                            out.push_str("x.v >= ");
                            let n = me.bind_with(|| Bind::Str(value.clone()));
                            placeholder(out, n);
                            out.push_str(" AND x.v < ");
                            let n = me.bind_with(|| upper_bound_bind(upper.0, upper.1));
                            placeholder(out, n);
                        })
                    }
                    _ => {
                        let k = self.name_n(target);
                        let v = self.bind_with(|| Bind::Str(value.clone()));
                        let field = |out: &mut String| {
                            push_alias(out, alias);
                            out.push_str(".data->>");
                            placeholder(out, k);
                        };
                        match op {
                            TextOp::Contains => {
                                out.push_str("COALESCE(strpos(");
                                field(out);
                                out.push_str(", ");
                                placeholder(out, v);
                                out.push_str(") > 0, false)");
                            }
                            TextOp::StartsWith => {
                                out.push_str("COALESCE(starts_with(");
                                field(out);
                                out.push_str(", ");
                                placeholder(out, v);
                                out.push_str("), false)");
                            }
                            TextOp::EndsWith => {
                                let n = self.bind_with(|| Bind::Int4(value.chars().count() as i32));
                                out.push_str("COALESCE(right(");
                                field(out);
                                out.push_str(", ");
                                placeholder(out, n);
                                out.push_str(") = ");
                                placeholder(out, v);
                                out.push_str(", false)");
                            }
                        }
                    }
                }
            }
            CheckedFilter::ListContains { target, value } => {
                let item = match target {
                    Target::Field {
                        kind: TargetKind::List(k),
                        ..
                    } => ddms_core::field::scalar_class(*k),
                    _ => ValueClass::Text,
                };
                let k = self.name_n(target);
                let v = self.scalar_n(value);
                out.push_str(
                    "EXISTS (SELECT 1 FROM jsonb_array_elements_text(CASE WHEN jsonb_typeof(",
                );
                push_alias(out, alias);
                out.push_str(".data->");
                placeholder(out, k);
                out.push_str(") = 'array' THEN ");
                push_alias(out, alias);
                out.push_str(".data->");
                placeholder(out, k);
                out.push_str(" END) AS e(v) WHERE ");
                match item {
                    ValueClass::Text => out.push_str("(e.v COLLATE \"C\")"),
                    c => {
                        out.push_str("(e.v)::");
                        out.push_str(class_table(c).1);
                    }
                }
                out.push_str(" = ");
                placeholder(out, v);
                out.push(')');
            }
            CheckedFilter::JsonEq {
                target,
                negated,
                value,
            } => {
                let k = self.name_n(target);
                let v = self.bind_with(|| Bind::Json(value.clone()));
                out.push_str("COALESCE(");
                push_alias(out, alias);
                out.push_str(".data->");
                placeholder(out, k);
                out.push_str(if *negated { " <> " } else { " = " });
                placeholder(out, v);
                out.push_str(", false)");
            }
            CheckedFilter::IsNull { target, is_null } => {
                let k = self.name_n(target);
                out.push('(');
                push_alias(out, alias);
                out.push_str(".data->");
                placeholder(out, k);
                out.push_str(if *is_null {
                    " IS NULL)"
                } else {
                    " IS NOT NULL)"
                });
            }
            CheckedFilter::Related {
                relation_type,
                direction,
                other,
                filter,
            } => {
                self.aliases += 1;
                let a = self.aliases;
                let mut o = String::with_capacity(8);
                o.push('o');
                number(&mut o, a);
                let e = |out: &mut String| {
                    out.push('e');
                    number(out, a);
                };
                let (here, there) = if *direction == Direction::In {
                    (".target_id", ".source_id")
                } else {
                    (".source_id", ".target_id")
                };
                let n = self.bind_with(|| Bind::Name(relation_type.clone()));
                // EXISTS (SELECT 1 FROM relations {e} JOIN records {o} ON {o}.tenant_id =
                // {e}.tenant_id AND {o}.id = {e}.{there} WHERE {e}.tenant_id = {t} AND
                // {e}.{here} = {alias}.id AND {e}.relation_type_id = (SELECT rt.id FROM
                // relation_types rt WHERE rt.tenant_id = {t} AND rt.name = ${n}) AND ..
                out.push_str("EXISTS (SELECT 1 FROM relations ");
                e(out);
                out.push_str(" JOIN records ");
                out.push_str(&o);
                out.push_str(" ON ");
                out.push_str(&o);
                out.push_str(".tenant_id = ");
                e(out);
                out.push_str(".tenant_id AND ");
                out.push_str(&o);
                out.push_str(".id = ");
                e(out);
                out.push_str(there);
                out.push_str(" WHERE ");
                e(out);
                out.push_str(".tenant_id = ");
                out.push_str(TENANT);
                out.push_str(" AND ");
                e(out);
                out.push_str(here);
                out.push_str(" = ");
                push_alias(out, alias);
                out.push_str(".id AND ");
                e(out);
                out.push_str(".relation_type_id = (SELECT rt.id FROM relation_types rt WHERE rt.tenant_id = ");
                out.push_str(TENANT);
                out.push_str(" AND rt.name = ");
                placeholder(out, n);
                out.push_str(") AND ");
                match filter {
                    Some(g) => self.filter_into(out, g, &o, other.id, false),
                    None => out.push_str("TRUE"),
                }
                out.push(')');
            }
        }
    }

    /// Compiles a whole query: SELECT of record columns from `records r`, filtered,
    /// after the keyset position, ordered, limited to `limit + 1` rows, and guarded by
    /// the entity type's version (no rows when the type changed since checking).
    ///
    /// Sets [`Sql::stable_plan`] when the best plan cannot depend on the values, so
    /// that the query may run prepared (PostgreSQL switches a prepared statement to a
    /// generic plan, planned once per connection; planning is most of PostgreSQL's time
    /// on a short list). A generic plan cannot see values, and two kinds of estimate go
    /// wrong without them:
    /// - one field-value table's statistics mix every field of its class, so an index
    ///   subquery looks like ~10 rows whatever its value: for a frequent value (a status
    ///   shared by 60k records) that plan fetches and sorts every match (measured: 10
    ///   instead of 1.4k req/s);
    /// - the tenant is a parameter too, so the generic plan sizes every tenant as the
    ///   average one: with many small tenants it fetches a whole type and sorts it
    ///   rather than walk an index in order — fine for them, a disaster for a big one
    ///   (seen in the test suite: a hash join over the type for a sorted list).
    ///
    /// So two shapes are stable:
    /// - a list by a unique field's value: the filter is that one equality
    ///   ([`Compiler::via_unique`]), with at most one sort key. At most one record can
    ///   match whatever the value or the tenant's size, and every plan starts from it;
    /// - a list bounded by one indexed field and sorted by it (`ValueWalk`), compiled
    ///   to a walk of that field's value index whose plan has no other sensible shape
    ///   (`Compiler::value_walk`).
    ///
    /// Other lists in the records' own order are first tried as a bounded walk, which
    /// is stable ([`Compiler::bounded_walk`]; the backend runs it before this query).
    ///
    /// Keeping to these shapes also bounds the statement texts a connection keeps
    /// prepared (Diesel's statement cache is unbounded): a few hundred each (value
    /// classes × sort keys or bounds × keyset forms; page sizes in powers of two),
    /// whatever filters clients send; and of those only the first
    /// [`crate::statement::STABLE_TEXTS`] a backend sees run prepared.
    pub fn query(mut self, q: &CheckedQuery, type_id: Uuid, type_version: i64) -> Sql {
        if let Some(walk) = ValueWalk::of(q) {
            if let Some(field_id) = self.ready_index(type_id, walk.name) {
                return self.value_walk(&walk, field_id, q.limit, type_id, type_version);
            }
        }
        // Sort expressions; indexed user fields sort through a joined field-value table.
        let mut joins_sql = String::new();
        let mut keys: Vec<(String, bool, bool)> = Vec::new(); // (expr, desc, nullable)
        for s in &q.sort {
            match &s.target {
                Target::System(sys) => keys.push((sys_column("r", *sys), s.desc, false)),
                Target::Field { name, kind, .. } => {
                    let class = kind.value_class().unwrap_or(ValueClass::Text);
                    match self.ready_index(type_id, name) {
                        Some(field_id) => {
                            let a = format!("s{}", self.joins.len());
                            let f = self.sql.param(Bind::Uuid(Uuid::from_u128(field_id)));
                            let _ = write!(
                                joins_sql,
                                " JOIN {} {a} ON {a}.tenant_id = r.tenant_id AND {a}.field_id = {f} AND {a}.record_id = r.id",
                                class_table(class).0
                            );
                            self.joins.push((type_id, name.to_string(), a.clone()));
                            keys.push((format!("{a}.v"), s.desc, true));
                        }
                        None => {
                            let e = self.json_expr("r", name.as_str(), class);
                            keys.push((e, s.desc, true));
                        }
                    }
                }
            }
        }
        let ty = self.sql.param(Bind::Uuid(type_id));
        let guard = self.version_guard(&ty, type_version);
        let mut wh = vec![
            format!("r.tenant_id = {TENANT}"),
            format!("r.entity_type_id = {ty}"),
            guard,
        ];
        if let Some(f) = &q.filter {
            self.main_type = Some(q.entity_type.clone());
            wh.push(self.filter(f, "r", type_id, true));
        }
        if let Some(after) = &q.after {
            wh.push(self.keyset(&keys, after));
        }
        let order = order_by(&keys);
        let limit = self.sql.param(Bind::Int(q.limit as i64 + 1));
        let stable_plan = q.sort.len() <= 2 // one key and the `id` tie-breaker
            && single_comparison(q.filter.as_ref())
            && self.unique_lookups == 1
            && self.index_subqueries == 1;
        let mut sql = self.sql;
        sql.stable_plan = stable_plan;
        let text = format!(
            "SELECT {RECORD_COLS_R} FROM records r{joins_sql} WHERE {} ORDER BY {order} LIMIT {limit}",
            wh.join(" AND "),
        );
        sql.text = text;
        sql
    }

    /// A list read off one field's value index ([`ValueWalk`]): the first `limit + 1`
    /// entries of `fv_* (tenant_id, field_id, v, record_id)` within the bounds, after
    /// the keyset position, in index order; then each record by its primary key.
    ///
    /// Runs prepared ([`Sql::stable_plan`]): the inner query has its own `ORDER BY ..
    /// LIMIT`, and the records are joined one by one (`LATERAL .. LIMIT 1`), so the
    /// plan has a single shape to choose for the big part — how to read the value
    /// index's range in order. A generic plan sees neither the bounds nor the tenant's
    /// size; it estimates the range as a small fraction of the field's entries and a
    /// parameter `LIMIT` as a tenth of them, and for any estimate reading the range in
    /// index order and stopping after `limit + 1` entries costs a tenth of reading it
    /// all and sorting (checked as the app role, with many small tenants beside a big
    /// one, in `tests/pg/plans.rs`). The texts come from a bounded set: value class ×
    /// bound operators × direction × keyset or not × page-size bucket.
    fn value_walk(
        mut self,
        walk: &ValueWalk<'_>,
        field_id: FieldId,
        limit: usize,
        type_id: Uuid,
        type_version: i64,
    ) -> Sql {
        let table = class_table(walk.class).0;
        let f = self.sql.param(Bind::Uuid(Uuid::from_u128(field_id)));
        let mut inner = format!(
            "SELECT x.record_id, x.v FROM {table} x WHERE x.tenant_id = {TENANT} AND x.field_id = {f}"
        );
        for (op, v) in [walk.lower, walk.upper].into_iter().flatten() {
            let p = self.sql.param(Bind::scalar(v));
            inner.push_str(" AND x.v");
            push_cmp(&mut inner, op);
            inner.push_str(&p);
        }
        let dir = if walk.desc { " DESC" } else { "" };
        if let Some((v, id)) = walk.after {
            let (p, i) = (
                self.sql.param(Bind::scalar(v)),
                self.sql.param(Bind::scalar(id)),
            );
            let op = if walk.desc { "<" } else { ">" };
            let _ = write!(inner, " AND (x.v, x.record_id) {op} ({p}, {i})");
        }
        // The inner limit is a constant of ours, the page size rounded up to a power of
        // two (at least 16): with a parameter there, a generic plan would count on a
        // tenth of the range's estimated entries, cost more than the custom plans for
        // `limit + 1`, and never be chosen. The page size itself is bound, outside.
        let bucket = page_bucket(limit);
        // Under an equality the value is a constant: ordering by it too would leave the
        // outer query a (small, needless) sort of the page.
        let by_v = |alias: &str| match walk.lower {
            Some((CmpOp::Eq, _)) => String::new(),
            _ => format!("{alias}.v{dir}, "),
        };
        let _ = write!(
            inner,
            " ORDER BY {}x.record_id{dir} LIMIT {bucket}",
            by_v("x")
        );
        let n = self.sql.param(Bind::Int(limit as i64 + 1));
        let ty = self.sql.param(Bind::Uuid(type_id));
        let guard = self.version_guard(&ty, type_version);
        let mut sql = self.sql;
        sql.stable_plan = true;
        sql.text = format!(
            "SELECT {RECORD_COLS_R} FROM ({inner}) s0 CROSS JOIN LATERAL (SELECT {RECORD_COLS_R} \
             FROM records r WHERE r.tenant_id = {TENANT} AND r.id = s0.record_id AND r.entity_type_id = {ty} LIMIT 1) r \
             WHERE {guard} ORDER BY {}s0.record_id{dir} LIMIT {n}",
            by_v("s0")
        );
        sql
    }

    /// A list in one of the records' own orders — `created_at` or `updated_at` then
    /// `id`, or `id` alone, all ascending or all descending: the default order and its
    /// keyset pages — first tried as a **bounded walk**: the first [`walk_span`] records
    /// of the type after the keyset position, read in that order off `records_by_*`,
    /// and the filter tested on each (on `data`, as for a field without an index: the
    /// compiler should be made with [`NoIndexes`]). When the walk finds `limit + 1`
    /// matches, the first `limit + 1` matches of the whole list are among them: that is
    /// the page (and there is a next one). Without a filter every walked record is in
    /// the answer, so a shorter one means the walk reached the end of the type: that
    /// is the page too. Otherwise the page may be incomplete (the type may go on past
    /// the walk) and the caller runs [`Compiler::query`] instead.
    ///
    /// Why: for a frequent value (a status shared by a fifth of a type) PostgreSQL's
    /// best plan for the full query walks `records_by_created` and probes the field's
    /// value table for each record (~250 probes for a page of 50), planned per call
    /// (its generic plan would fetch and sort every match; see [`Compiler::query`]). The
    /// walk tests the JSON of the same records on the same heap pages instead, and has
    /// one sensible plan whatever the values or the tenant's size — the order index
    /// read in order, stopped by the page's `LIMIT` — so it runs prepared
    /// (`tests/pg/plans.rs`). The price: a value too rare to fill a page within the
    /// walk, and a filtered list's last page, cost a walk (at most [`walk_span`]
    /// records) before the full query (the backend skips the walk for a while for a
    /// first page whose walk fell back).
    ///
    /// Tried and not kept: telling "the walk reached the end of the type" apart in the
    /// same statement, so that filtered last pages need no second query. Finding that
    /// out reads past the span however many matches come first, and PostgreSQL plans
    /// such a read for all its rows: a generic plan for a tenant estimated smaller than
    /// the span then reads the whole type off a bitmap and sorts it — seen in the plans
    /// test for a second read of the index (`UNION ALL … OFFSET span LIMIT 1`), and for
    /// the walk itself when a window numbered the walked rows. With that offset bound
    /// instead, the generic plan looked dearer than the custom ones, so every call was
    /// planned.
    ///
    /// `None` when the order is not one of those, or the filter has a `related`
    /// predicate (a subquery per walked record) or more than [`WALK_PREDICATES`]
    /// predicates (bounding the prepared texts).
    pub fn bounded_walk(
        mut self,
        q: &CheckedQuery,
        type_id: Uuid,
        type_version: i64,
    ) -> Option<Sql> {
        let desc = q.sort.first()?.desc;
        let mut cols = [SysField::Id; 2];
        for (slot, s) in cols.iter_mut().zip(&q.sort) {
            match s.target {
                Target::System(f) if s.desc == desc => *slot = f,
                _ => return None,
            }
        }
        let cols = match (q.sort.len(), cols) {
            (1, [SysField::Id, _]) => &cols[..1],
            (2, [SysField::CreatedAt | SysField::UpdatedAt, SysField::Id]) => &cols[..],
            _ => return None,
        };
        if let Some(f) = &q.filter {
            if has_related(f) || predicates(f) > WALK_PREDICATES {
                return None;
            }
        }
        let keys: Vec<(String, bool, bool)> = cols
            .iter()
            .map(|c| (sys_column("r", *c), desc, false))
            .collect();
        let ty = self.sql.param(Bind::Uuid(type_id));
        let mut walk = format!("r.tenant_id = {TENANT} AND r.entity_type_id = {ty}");
        if let Some(after) = &q.after {
            walk.push_str(" AND ");
            walk.push_str(&self.keyset(&keys, after));
        }
        let order = order_by(&keys);
        let guard = self.version_guard(&ty, type_version);
        let filter = match &q.filter {
            Some(f) => {
                self.main_type = Some(q.entity_type.clone());
                self.filter(f, "r", type_id, true)
            }
            None => "TRUE".into(),
        };
        let n = self.sql.param(Bind::Int(q.limit as i64 + 1));
        // The span is a constant of ours (from a bounded set, like the value walk's
        // inner limit); the page's `LIMIT` makes PostgreSQL count on stopping early.
        // The matches are first cut to the page size rounded up to a power of two (a
        // constant too): with only the bound page size there, a generic plan for a
        // keyset page deep into a type was costed above the custom ones (PostgreSQL's
        // guess for a bound limit against the few rows it saw left after the
        // position), so every call was planned (~0.3 ms, seen in the statement log).
        let span = walk_span(q.limit);
        let bucket = page_bucket(q.limit);
        let mut sql = self.sql;
        sql.stable_plan = true;
        sql.text = format!(
            "SELECT {RECORD_COLS_R} FROM (SELECT {RECORD_COLS_R} FROM (SELECT {RECORD_COLS_R} FROM records r \
             WHERE {walk} ORDER BY {order} LIMIT {span}) r WHERE {guard} AND {filter} ORDER BY {order} \
             LIMIT {bucket}) r ORDER BY {order} LIMIT {n}"
        );
        Some(sql)
    }

    /// The guard of a list: the query was compiled against version `version` of the
    /// entity type bound as `ty` (no rows otherwise; see [`Compiler::query`]).
    fn version_guard(&mut self, ty: &str, version: i64) -> String {
        let ver = self.sql.param(Bind::Int(version));
        format!(
            "EXISTS (SELECT 1 FROM entity_types et WHERE et.tenant_id = {TENANT} AND et.id = {ty} AND et.version = {ver})"
        )
    }

    /// Rows strictly after `after` in the order of `keys` (missing values sort last
    /// ascending, first descending).
    fn keyset(&mut self, keys: &[(String, bool, bool)], after: &[Option<Scalar>]) -> String {
        let all_plain =
            keys.iter().all(|(_, _, nullable)| !nullable) && after.iter().all(Option::is_some);
        let same_dir = keys.windows(2).all(|w| w[0].1 == w[1].1);
        if all_plain && same_dir {
            // Row comparison: usable as an index condition for the default sort.
            let lhs: Vec<&str> = keys.iter().map(|(e, _, _)| e.as_str()).collect();
            let rhs: Vec<String> = after
                .iter()
                .flatten()
                .map(|v| self.sql.param(Bind::scalar(v)))
                .collect();
            let op = if keys.first().is_some_and(|k| k.1) {
                "<"
            } else {
                ">"
            };
            return format!("(({}) {op} ({}))", lhs.join(", "), rhs.join(", "));
        }
        let mut ors = Vec::new();
        let mut eqs: Vec<String> = Vec::new();
        for ((e, desc, _), a) in keys.iter().zip(after) {
            let after_i = match (a, desc) {
                (Some(v), false) => {
                    let p = self.sql.param(Bind::scalar(v));
                    Some(format!("({e} > {p} OR {e} IS NULL)"))
                }
                (None, false) => None,
                (Some(v), true) => {
                    let p = self.sql.param(Bind::scalar(v));
                    Some(format!("{e} < {p}"))
                }
                (None, true) => Some(format!("{e} IS NOT NULL")),
            };
            if let Some(a) = after_i {
                let mut conj = eqs.clone();
                conj.push(a);
                ors.push(format!("({})", conj.join(" AND ")));
            }
            match a {
                Some(v) => {
                    let p = self.sql.param(Bind::scalar(v));
                    eqs.push(format!("{e} = {p}"));
                }
                None => eqs.push(format!("{e} IS NULL")),
            }
        }
        if ors.is_empty() {
            "FALSE".into()
        } else {
            format!("({})", ors.join(" OR "))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every value class.
    const CLASSES: [ValueClass; 7] = [
        ValueClass::Text,
        ValueClass::Integer,
        ValueClass::Number,
        ValueClass::Boolean,
        ValueClass::Date,
        ValueClass::Datetime,
        ValueClass::Uuid,
    ];

    #[test]
    fn prefix_bounds_increment_the_last_character_that_has_a_successor() {
        // The general rule, character by character.
        let reference = |p: &str| -> Option<String> {
            for (i, last) in p.char_indices().rev() {
                let mut n = last as u32 + 1;
                if (0xD800..=0xDFFF).contains(&n) {
                    n = 0xE000;
                }
                if let Some(c) = char::from_u32(n) {
                    return Some(format!("{}{c}", &p[..i]));
                }
            }
            None
        };
        let mut cases: Vec<String> = (0u8..0x80)
            .map(|b| format!("ab{}", char::from(b)))
            .collect();
        cases.extend(
            [
                "",
                "\u{7f}",
                "é",
                "a\u{D7FF}",
                "a\u{10FFFF}",
                "\u{10FFFF}",
                "x😀",
            ]
            .map(String::from),
        );
        cases.push("long prefix of many bytes\u{7f}".into());
        for p in &cases {
            assert_eq!(prefix_upper_bound(p), reference(p), "{p:?}");
            let bind = upper_bound_at(p).map(|at| upper_bound_bind(p, at));
            assert_eq!(bind, reference(p).map(Bind::Text), "{p:?}");
        }
    }

    #[test]
    fn memo_names_are_equal_exactly_for_equal_names() {
        let names: Vec<Name> = (1..=40)
            .flat_map(|n| {
                let base: String = "abcdefghijklmnopqrstuvwxyz0123456789_"
                    .chars()
                    .cycle()
                    .take(n)
                    .collect();
                let mut other = base.clone();
                other.replace_range(n - 1.., "z");
                let mut first = base.clone();
                first.replace_range(..1, "q");
                [base, other, first]
            })
            .map(|s| Name::parse(&s).unwrap())
            .collect();
        for a in &names {
            for b in &names {
                assert_eq!(MemoName::of(a) == MemoName::of(b), a == b, "{a} {b}");
            }
        }
    }

    #[test]
    fn json_extraction_casts_to_the_class_tables_type() {
        for c in CLASSES {
            for (alias, key) in [("r", 2), ("o1", 17), ("o12", 345)] {
                let mut out = String::new();
                render_json(&mut out, alias, key, c);
                let tail = match c {
                    ValueClass::Text => " COLLATE \"C\"".to_string(),
                    c => format!("::{}", class_table(c).1),
                };
                assert_eq!(out, format!("(({alias}.data->>${key}){tail})"));
            }
        }
        for (op, sql) in [
            (CmpOp::Eq, " = "),
            (CmpOp::Ne, " <> "),
            (CmpOp::Lt, " < "),
            (CmpOp::Lte, " <= "),
            (CmpOp::Gt, " > "),
            (CmpOp::Gte, " >= "),
        ] {
            let mut out = String::new();
            push_cmp(&mut out, op);
            assert_eq!(out, sql);
        }
    }

    #[test]
    fn field_value_subqueries_open_on_their_class_table() {
        for c in CLASSES {
            let mut out = String::new();
            push_fv_select(&mut out, c);
            assert_eq!(
                out,
                format!(
                    "(SELECT x.record_id FROM {} x WHERE x.tenant_id = {TENANT} AND x.field_id = ",
                    class_table(c).0
                )
            );
        }
    }
}
