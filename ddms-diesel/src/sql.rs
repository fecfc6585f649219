//! SQL text with bind parameters, and the compiler from checked filters, sorts and
//! keyset positions to SQL. **No value and no field name is ever spliced into SQL
//! text**: every user-supplied string travels as a bind. The only text we format in
//! is our own: table names chosen from a fixed list, aliases we number, and `$n`.

use std::fmt::Write;

use chrono::{DateTime, NaiveDate, Utc};
use ddms_core::filter::{CheckedFilter, CmpOp, Scalar, SysField, Target, TextOp};
use ddms_core::query::CheckedQuery;
use ddms_core::{Direction, FieldKind, ValueClass};
use diesel::pg::Pg;
use diesel::query_builder::{BoxedSqlQuery, SqlQuery};
use diesel::sql_types as st;
use uuid::Uuid;

/// A bind parameter value.
#[derive(Debug, Clone, PartialEq)]
pub enum Bind {
    /// uuid
    Uuid(Uuid),
    /// text
    Text(String),
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

impl Bind {
    fn scalar(s: &Scalar) -> Bind {
        match s {
            Scalar::Text(v) => Bind::Text(v.clone()),
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
            ValueClass::Text => collect!(TextArr, Text),
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

    /// A Diesel query with every bind applied.
    pub fn query(&self) -> BoxedSqlQuery<'static, Pg, SqlQuery> {
        let mut q = diesel::sql_query(self.text.clone()).into_boxed::<Pg>();
        for b in &self.binds {
            q = match b.clone() {
                Bind::Uuid(v) => q.bind::<st::Uuid, _>(v),
                Bind::Text(v) => q.bind::<st::Text, _>(v),
                Bind::Int(v) => q.bind::<st::BigInt, _>(v),
                Bind::Int4(v) => q.bind::<st::Integer, _>(v),
                Bind::Float(v) => q.bind::<st::Double, _>(v),
                Bind::Bool(v) => q.bind::<st::Bool, _>(v),
                Bind::Date(v) => q.bind::<st::Date, _>(v),
                Bind::Ts(v) => q.bind::<st::Timestamptz, _>(v),
                Bind::Json(v) => q.bind::<st::Jsonb, _>(v),
                Bind::UuidArr(v) => q.bind::<st::Array<st::Uuid>, _>(v),
                Bind::TextArr(v) => q.bind::<st::Array<st::Text>, _>(v),
                Bind::IntArr(v) => q.bind::<st::Array<st::BigInt>, _>(v),
                Bind::FloatArr(v) => q.bind::<st::Array<st::Double>, _>(v),
                Bind::BoolArr(v) => q.bind::<st::Array<st::Bool>, _>(v),
                Bind::DateArr(v) => q.bind::<st::Array<st::Date>, _>(v),
                Bind::TsArr(v) => q.bind::<st::Array<st::Timestamptz>, _>(v),
                Bind::JsonArr(v) => q.bind::<st::Array<st::Jsonb>, _>(v),
            };
        }
        q
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

/// How a value is reached.
enum Access {
    /// A non-null column expression (system fields).
    Column(String),
    /// A joined field-value table column (`sN.v`), for sorted indexed fields.
    Joined(String),
    /// Through the field-value index table, as a semi-join.
    Index { table: &'static str, field_id: Uuid },
    /// Typed extraction from `data` (nullable expression).
    Json(String),
}

/// The compiler's state: the SQL being built and the tenant placeholder.
pub struct Compiler<'a> {
    /// Output.
    pub sql: Sql,
    tenant: String,
    indexes: &'a dyn IndexLookup,
    aliases: usize,
    /// Sort joins on indexed fields: (type id, field name, alias).
    joins: Vec<(Uuid, String, String)>,
    /// Index subqueries emitted so far (bounded: each top-level one becomes a semi-join,
    /// and hundreds of joins would take the planner longer than any scan).
    index_subqueries: usize,
}

/// Most field-value subqueries in one query; further predicates take the JSONB path,
/// which is always correct, only not index-assisted.
pub const MAX_INDEX_SUBQUERIES: usize = 8;

fn sys_column(alias: &str, s: SysField) -> String {
    match s {
        SysField::Id => format!("{alias}.id"),
        SysField::CreatedAt => format!("{alias}.created_at"),
        SysField::UpdatedAt => format!("{alias}.updated_at"),
    }
}

fn cmp_sql(op: CmpOp) -> &'static str {
    match op {
        CmpOp::Eq => "=",
        CmpOp::Ne => "<>",
        CmpOp::Lt => "<",
        CmpOp::Lte => "<=",
        CmpOp::Gt => ">",
        CmpOp::Gte => ">=",
    }
}

/// The smallest string greater than every string starting with `p` (code-point order,
/// which is byte order for UTF-8, i.e. the C collation); `None` if there is none.
pub fn prefix_upper_bound(p: &str) -> Option<String> {
    let mut chars: Vec<char> = p.chars().collect();
    while let Some(last) = chars.pop() {
        let mut n = last as u32 + 1;
        if (0xD800..=0xDFFF).contains(&n) {
            n = 0xE000;
        }
        if let Some(c) = char::from_u32(n) {
            chars.push(c);
            return Some(chars.into_iter().collect());
        }
    }
    None
}

impl<'a> Compiler<'a> {
    /// A compiler whose first bind (`$1`) is the tenant id.
    pub fn new(tenant: Uuid, indexes: &'a dyn IndexLookup) -> Self {
        let mut sql = Sql::new();
        let tenant = sql.param(Bind::Uuid(tenant));
        Compiler {
            sql,
            tenant,
            indexes,
            aliases: 0,
            joins: Vec::new(),
            index_subqueries: 0,
        }
    }

    fn json_expr(&mut self, alias: &str, name: &str, class: ValueClass) -> String {
        let k = self.sql.param(Bind::Text(name.to_string()));
        match class {
            ValueClass::Text => format!("(({alias}.data->>{k}) COLLATE \"C\")"),
            c => format!("(({alias}.data->>{k})::{})", class_table(c).1),
        }
    }

    /// How to reach `target`: a column, an index, or (binding the field name) `data`.
    fn access(&mut self, alias: &str, type_id: Uuid, target: &Target, top: bool) -> Access {
        match target {
            Target::System(s) => Access::Column(sys_column(alias, *s)),
            Target::Field { name, kind, .. } => match self.indexed_access(type_id, target, top) {
                Some(a) => a,
                None => {
                    let class = kind.value_class().unwrap_or(ValueClass::Text);
                    Access::Json(self.json_expr(alias, name.as_str(), class))
                }
            },
        }
    }

    /// A column or `data` extraction, never an index.
    fn plain_access(&mut self, alias: &str, target: &Target) -> Access {
        match target {
            Target::System(s) => Access::Column(sys_column(alias, *s)),
            Target::Field { name, kind, .. } => {
                let class = kind.value_class().unwrap_or(ValueClass::Text);
                Access::Json(self.json_expr(alias, name.as_str(), class))
            }
        }
    }

    /// The index route to a user field, if it has one (no bind is added otherwise).
    fn indexed_access(&mut self, type_id: Uuid, target: &Target, top: bool) -> Option<Access> {
        let Target::Field { name, kind, .. } = target else {
            return None;
        };
        let class = kind.value_class()?;
        if top {
            if let Some((_, _, a)) = self
                .joins
                .iter()
                .find(|(t, f, _)| *t == type_id && f == name.as_str())
            {
                return Some(Access::Joined(format!("{a}.v")));
            }
        }
        if self.index_subqueries >= MAX_INDEX_SUBQUERIES {
            return None;
        }
        let field_id = self.indexes.ready_index(type_id, name.as_str())?;
        self.index_subqueries += 1;
        Some(Access::Index {
            table: class_table(class).0,
            field_id,
        })
    }

    /// `alias.id IN (SELECT record_id FROM <fv> WHERE tenant, field AND <cond on x.v>)`.
    fn via_index(
        &mut self,
        alias: &str,
        table: &str,
        field_id: Uuid,
        cond: impl FnOnce(&mut Self) -> String,
    ) -> String {
        let f = self.sql.param(Bind::Uuid(field_id));
        let c = cond(self);
        format!(
            "{alias}.id IN (SELECT x.record_id FROM {table} x WHERE x.tenant_id = {} AND x.field_id = {f} AND {c})",
            self.tenant
        )
    }

    /// Compiles a filter over records aliased `alias` of entity type `type_id`. `top`
    /// is true while only `and`s separate the node from the root.
    pub fn filter(&mut self, f: &CheckedFilter, alias: &str, type_id: Uuid, top: bool) -> String {
        match f {
            CheckedFilter::And(v) if v.is_empty() => "TRUE".into(),
            CheckedFilter::Or(v) if v.is_empty() => "FALSE".into(),
            CheckedFilter::And(v) => {
                let parts: Vec<String> = v
                    .iter()
                    .map(|f| self.filter(f, alias, type_id, top))
                    .collect();
                format!("({})", parts.join(" AND "))
            }
            CheckedFilter::Or(v) => {
                let parts: Vec<String> = v
                    .iter()
                    .map(|f| self.filter(f, alias, type_id, false))
                    .collect();
                format!("({})", parts.join(" OR "))
            }
            CheckedFilter::Not(f) => format!("(NOT {})", self.filter(f, alias, type_id, false)),
            CheckedFilter::Compare { target, op, value } => {
                // `<>` selects nearly everything: an index cannot help it.
                let route = if *op == CmpOp::Ne {
                    self.plain_access(alias, target)
                } else {
                    self.access(alias, type_id, target, top)
                };
                let op = cmp_sql(*op);
                match route {
                    // Plain comparisons: system columns are never null, and a joined
                    // value is only used in the top-level AND chain, where NULL and
                    // false both exclude the row (and the plain form is index-usable).
                    Access::Column(c) | Access::Joined(c) => {
                        let v = self.sql.param(Bind::scalar(value));
                        format!("({c} {op} {v})")
                    }
                    Access::Index { table, field_id } => {
                        self.via_index(alias, table, field_id, |me| {
                            let v = me.sql.param(Bind::scalar(value));
                            format!("x.v {op} {v}")
                        })
                    }
                    Access::Json(e) => {
                        let v = self.sql.param(Bind::scalar(value));
                        format!("COALESCE({e} {op} {v}, false)")
                    }
                }
            }
            CheckedFilter::In {
                target,
                negated,
                values,
            } => {
                let class = target.class().unwrap_or(ValueClass::Text);
                let arr = Bind::array(class, values);
                let test = |e: &str, p: &str| {
                    if *negated {
                        format!("{e} <> ALL({p})")
                    } else {
                        format!("{e} = ANY({p})")
                    }
                };
                let route = if *negated {
                    self.plain_access(alias, target)
                } else {
                    self.access(alias, type_id, target, top)
                };
                match route {
                    Access::Column(c) | Access::Joined(c) => {
                        let p = self.sql.param(arr);
                        format!("({})", test(&c, &p))
                    }
                    Access::Json(c) => {
                        let p = self.sql.param(arr);
                        format!("COALESCE({}, false)", test(&c, &p))
                    }
                    Access::Index { table, field_id } => {
                        self.via_index(alias, table, field_id, |me| {
                            let p = me.sql.param(arr);
                            test("x.v", &p)
                        })
                    }
                }
            }
            CheckedFilter::Text { target, op, value } => {
                let name = target.name().to_string();
                let access = if *op == TextOp::StartsWith {
                    self.indexed_access(type_id, target, top)
                } else {
                    None
                };
                let range = prefix_upper_bound(value);
                match (access, op, range) {
                    (Some(Access::Joined(c)), TextOp::StartsWith, Some(upper)) => {
                        let lo = self.sql.param(Bind::Text(value.clone()));
                        let hi = self.sql.param(Bind::Text(upper));
                        format!("({c} >= {lo} AND {c} < {hi})")
                    }
                    (Some(Access::Index { table, field_id }), TextOp::StartsWith, Some(upper)) => {
                        self.via_index(alias, table, field_id, |me| {
                            let lo = me.sql.param(Bind::Text(value.clone()));
                            let hi = me.sql.param(Bind::Text(upper));
                            format!("x.v >= {lo} AND x.v < {hi}")
                        })
                    }
                    _ => {
                        let k = self.sql.param(Bind::Text(name));
                        let v = self.sql.param(Bind::Text(value.clone()));
                        match op {
                            TextOp::Contains => {
                                format!("COALESCE(strpos({alias}.data->>{k}, {v}) > 0, false)")
                            }
                            TextOp::StartsWith => {
                                format!("COALESCE(starts_with({alias}.data->>{k}, {v}), false)")
                            }
                            TextOp::EndsWith => {
                                let n = self.sql.param(Bind::Int4(value.chars().count() as i32));
                                format!("COALESCE(right({alias}.data->>{k}, {n}) = {v}, false)")
                            }
                        }
                    }
                }
            }
            CheckedFilter::ListContains { target, value } => {
                let item = match target {
                    Target::Field {
                        kind: FieldKind::List(k),
                        ..
                    } => ddms_core::field::scalar_class(*k),
                    _ => ValueClass::Text,
                };
                let k = self.sql.param(Bind::Text(target.name().to_string()));
                let v = self.sql.param(Bind::scalar(value));
                let e = match item {
                    ValueClass::Text => "(e.v COLLATE \"C\")".to_string(),
                    c => format!("(e.v)::{}", class_table(c).1),
                };
                format!(
                    "EXISTS (SELECT 1 FROM jsonb_array_elements_text(CASE WHEN jsonb_typeof({alias}.data->{k}) = 'array' THEN {alias}.data->{k} END) AS e(v) WHERE {e} = {v})"
                )
            }
            CheckedFilter::JsonEq {
                target,
                negated,
                value,
            } => {
                let k = self.sql.param(Bind::Text(target.name().to_string()));
                let v = self.sql.param(Bind::Json(value.clone()));
                let op = if *negated { "<>" } else { "=" };
                format!("COALESCE({alias}.data->{k} {op} {v}, false)")
            }
            CheckedFilter::IsNull { target, is_null } => {
                let k = self.sql.param(Bind::Text(target.name().to_string()));
                if *is_null {
                    format!("({alias}.data->{k} IS NULL)")
                } else {
                    format!("({alias}.data->{k} IS NOT NULL)")
                }
            }
            CheckedFilter::Related {
                relation_type,
                direction,
                other,
                filter,
            } => {
                self.aliases += 1;
                let o = format!("o{}", self.aliases);
                let e = format!("e{}", self.aliases);
                let (here, there) = if *direction == Direction::In {
                    ("target_id", "source_id")
                } else {
                    ("source_id", "target_id")
                };
                let t = self.tenant.clone();
                let n = self.sql.param(Bind::Text(relation_type.to_string()));
                let inner = match filter {
                    Some(f) => self.filter(f, &o, other.id, false),
                    None => "TRUE".into(),
                };
                format!(
                    "EXISTS (SELECT 1 FROM relations {e} JOIN records {o} ON {o}.tenant_id = {e}.tenant_id AND {o}.id = {e}.{there} \
                     WHERE {e}.tenant_id = {t} AND {e}.{here} = {alias}.id \
                     AND {e}.relation_type_id = (SELECT rt.id FROM relation_types rt WHERE rt.tenant_id = {t} AND rt.name = {n}) AND {inner})"
                )
            }
        }
    }

    /// Compiles a whole query: SELECT of record columns from `records r`, filtered,
    /// after the keyset position, ordered, limited to `limit + 1` rows, and guarded by
    /// the entity type's version (no rows when the type changed since checking).
    pub fn query(mut self, q: &CheckedQuery, type_id: Uuid, type_version: i64) -> Sql {
        // Sort expressions; indexed user fields sort through a joined field-value table.
        let mut joins_sql = String::new();
        let mut keys: Vec<(String, bool, bool)> = Vec::new(); // (expr, desc, nullable)
        for s in &q.sort {
            match &s.target {
                Target::System(sys) => keys.push((sys_column("r", *sys), s.desc, false)),
                Target::Field { name, kind, .. } => {
                    let class = kind.value_class().unwrap_or(ValueClass::Text);
                    match self.indexes.ready_index(type_id, name.as_str()) {
                        Some(field_id) => {
                            let a = format!("s{}", self.joins.len());
                            let f = self.sql.param(Bind::Uuid(field_id));
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
        let ver = self.sql.param(Bind::Int(type_version));
        let mut wh = vec![
            format!("r.tenant_id = {}", self.tenant),
            format!("r.entity_type_id = {ty}"),
            // Guard: the query was compiled against this version of the type.
            format!(
                "EXISTS (SELECT 1 FROM entity_types et WHERE et.tenant_id = {} AND et.id = {ty} AND et.version = {ver})",
                self.tenant
            ),
        ];
        if let Some(f) = &q.filter {
            wh.push(self.filter(f, "r", type_id, true));
        }
        if let Some(after) = &q.after {
            wh.push(self.keyset(&keys, after));
        }
        let order: Vec<String> = keys
            .iter()
            .map(|(e, desc, _)| {
                if *desc {
                    format!("{e} DESC")
                } else {
                    e.clone()
                }
            })
            .collect();
        let limit = self.sql.param(Bind::Int(q.limit as i64 + 1));
        let mut sql = self.sql;
        let text = format!(
            "SELECT r.id, r.data, r.version, r.created_at, r.updated_at, r.created_by, r.updated_by FROM records r{joins_sql} WHERE {} ORDER BY {} LIMIT {limit}",
            wh.join(" AND "),
            order.join(", ")
        );
        sql.text = text;
        sql
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
