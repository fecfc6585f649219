//! Fields: kinds, constraints, and how a single value is checked against them.

use chrono::{DateTime, NaiveDate, Utc};
use regex::Regex;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::error::FieldError;
use crate::name::{truncate, Name};

/// Longest `pattern` accepted, in bytes.
pub const MAX_PATTERN_LEN: usize = 512;
/// Most values an `enum` field may declare.
pub const MAX_ENUM_VALUES: usize = 1000;
/// Longest text value accepted when a field declares no `max_length` (characters).
pub const DEFAULT_MAX_TEXT_LEN: usize = 1 << 20;

/// The kinds a list field's items may have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScalarKind {
    /// UTF-8 text without NUL.
    Text,
    /// A 64-bit signed integer.
    Integer,
    /// A finite double-precision number.
    Number,
    /// `true` or `false`.
    Boolean,
    /// A calendar date, `YYYY-MM-DD`.
    Date,
    /// An RFC 3339 date and time with offset.
    Datetime,
    /// A UUID (stored lower-case, hyphenated).
    Uuid,
    /// An e-mail address.
    Email,
    /// An absolute URL.
    Url,
}

impl ScalarKind {
    /// The kind's name as written in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            ScalarKind::Text => "text",
            ScalarKind::Integer => "integer",
            ScalarKind::Number => "number",
            ScalarKind::Boolean => "boolean",
            ScalarKind::Date => "date",
            ScalarKind::Datetime => "datetime",
            ScalarKind::Uuid => "uuid",
            ScalarKind::Email => "email",
            ScalarKind::Url => "url",
        }
    }

    fn parse(s: &str) -> Option<ScalarKind> {
        Some(match s {
            "text" => ScalarKind::Text,
            "integer" => ScalarKind::Integer,
            "number" => ScalarKind::Number,
            "boolean" => ScalarKind::Boolean,
            "date" => ScalarKind::Date,
            "datetime" => ScalarKind::Datetime,
            "uuid" => ScalarKind::Uuid,
            "email" => ScalarKind::Email,
            "url" => ScalarKind::Url,
            _ => return None,
        })
    }

    /// True for kinds stored as JSON strings and compared as text.
    pub fn is_textual(self) -> bool {
        matches!(self, ScalarKind::Text | ScalarKind::Email | ScalarKind::Url)
    }
}

/// The kind of a field.
#[derive(Debug, Clone, PartialEq)]
pub enum FieldKind {
    /// A scalar kind.
    Scalar(ScalarKind),
    /// One of a fixed set of strings.
    Enum(Vec<String>),
    /// Any JSON value.
    Json,
    /// A JSON array of scalars of one kind.
    List(ScalarKind),
}

/// The storage class of a value used by indexes and comparisons.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ValueClass {
    /// Compared as text (C collation: byte order).
    Text,
    /// Compared as a 64-bit integer.
    Integer,
    /// Compared as a double.
    Number,
    /// A boolean.
    Boolean,
    /// A date.
    Date,
    /// A timestamp with time zone.
    Datetime,
    /// A uuid.
    Uuid,
}

impl FieldKind {
    /// The kind's name as written in JSON (`list` and `enum` included).
    pub fn name(&self) -> &'static str {
        match self {
            FieldKind::Scalar(s) => s.as_str(),
            FieldKind::Enum(_) => "enum",
            FieldKind::Json => "json",
            FieldKind::List(_) => "list",
        }
    }

    /// The comparison class for scalar and enum kinds; `None` for json and list.
    pub fn value_class(&self) -> Option<ValueClass> {
        Some(match self {
            FieldKind::Scalar(s) => scalar_class(*s),
            FieldKind::Enum(_) => ValueClass::Text,
            FieldKind::Json | FieldKind::List(_) => return None,
        })
    }

    /// True when fields of this kind can be sorted on and indexed.
    pub fn is_orderable(&self) -> bool {
        self.value_class().is_some()
    }
}

/// The comparison class of a scalar kind.
pub fn scalar_class(s: ScalarKind) -> ValueClass {
    match s {
        ScalarKind::Text | ScalarKind::Email | ScalarKind::Url => ValueClass::Text,
        ScalarKind::Integer => ValueClass::Integer,
        ScalarKind::Number => ValueClass::Number,
        ScalarKind::Boolean => ValueClass::Boolean,
        ScalarKind::Date => ValueClass::Date,
        ScalarKind::Datetime => ValueClass::Datetime,
        ScalarKind::Uuid => ValueClass::Uuid,
    }
}

/// A compiled `pattern` constraint (unanchored, like JSON Schema's `pattern`).
#[derive(Debug, Clone)]
pub struct Pattern {
    source: String,
    regex: Regex,
}

impl Pattern {
    /// Compiles `source` with a bounded program size.
    pub fn new(source: &str) -> Result<Pattern, String> {
        if source.len() > MAX_PATTERN_LEN {
            return Err(format!("pattern is longer than {MAX_PATTERN_LEN} bytes"));
        }
        let regex = regex::RegexBuilder::new(source)
            .size_limit(1 << 20)
            .dfa_size_limit(1 << 20)
            .build()
            .map_err(|e| format!("pattern does not compile: {e}"))?;
        Ok(Pattern {
            source: source.to_string(),
            regex,
        })
    }

    /// The pattern's source text.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// True when `s` matches.
    pub fn is_match(&self, s: &str) -> bool {
        self.regex.is_match(s)
    }
}

impl PartialEq for Pattern {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

/// The JSON shape of a field, as clients send it and as it is stored.
///
/// `{"name":"title","kind":"text","required":true,"indexed":true,"max_length":200}`;
/// enums carry `"values":[..]`, lists carry `"items":"<scalar kind>"`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldSpec {
    /// Field name (slug, not reserved).
    pub name: String,
    /// Display label.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// Kind name: text, integer, number, boolean, date, datetime, uuid, email, url, enum, json, list.
    pub kind: String,
    /// A value must be present.
    #[serde(default)]
    pub required: bool,
    /// No two records of the type may share a value.
    #[serde(default)]
    pub unique: bool,
    /// Filters and sorts on this field use an index.
    #[serde(default)]
    pub indexed: bool,
    /// Value used when a record omits the field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<Value>,
    /// Smallest allowed number (integer and number kinds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    /// Largest allowed number (integer and number kinds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
    /// Shortest allowed text (characters) or list (items).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_length: Option<u32>,
    /// Longest allowed text (characters) or list (items).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_length: Option<u32>,
    /// Regular expression text values must match (unanchored).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pattern: Option<String>,
    /// Allowed values of an enum field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub values: Option<Vec<String>>,
    /// Item kind of a list field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub items: Option<String>,
}

/// A checked field definition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "FieldSpec", into = "FieldSpec")]
pub struct Field {
    /// Field name.
    pub name: Name,
    /// Display label.
    pub label: Option<String>,
    /// Kind (with enum values or list item kind).
    pub kind: FieldKind,
    /// A value must be present.
    pub required: bool,
    /// Values are unique within the entity type.
    pub unique: bool,
    /// Filters and sorts use the field-value index.
    pub indexed: bool,
    /// Default applied when the field is missing.
    pub default: Option<Value>,
    /// Numeric lower bound.
    pub min: Option<f64>,
    /// Numeric upper bound.
    pub max: Option<f64>,
    /// Minimum length (characters or items).
    pub min_length: Option<u32>,
    /// Maximum length (characters or items).
    pub max_length: Option<u32>,
    /// Pattern for textual values.
    pub pattern: Option<Pattern>,
}

impl Field {
    /// True when the field has an index (declared `indexed` or `unique`).
    pub fn has_index(&self) -> bool {
        self.indexed || self.unique
    }

    /// Checks a spec; every problem is reported, with paths under `path`.
    pub fn from_spec_at(spec: &FieldSpec, path: &str) -> Result<Field, Vec<FieldError>> {
        let mut errs = Vec::new();
        let at = |s: &str| format!("{path}.{s}");
        let name = match Name::parse_field(&spec.name) {
            Ok(n) => Some(n),
            Err(m) => {
                errs.push(FieldError::new(
                    at("name"),
                    "invalid_name",
                    format!("invalid field name `{}`: {m}", truncate(&spec.name, 80)),
                ));
                None
            }
        };
        if let Some(l) = &spec.label {
            if l.chars().count() > 200 || l.contains('\0') {
                errs.push(FieldError::new(
                    at("label"),
                    "invalid_label",
                    "label must be at most 200 characters without NUL",
                ));
            }
        }
        let kind = match spec.kind.as_str() {
            "enum" => match &spec.values {
                Some(v) if !v.is_empty() => {
                    let mut seen = std::collections::HashSet::new();
                    if v.len() > MAX_ENUM_VALUES {
                        errs.push(FieldError::new(
                            at("values"),
                            "too_many_values",
                            format!("an enum may have at most {MAX_ENUM_VALUES} values"),
                        ));
                    }
                    for (i, s) in v.iter().enumerate() {
                        if s.contains('\0') || s.is_empty() || s.chars().count() > 200 {
                            errs.push(FieldError::new(
                                format!("{path}.values[{i}]"),
                                "invalid_enum_value",
                                "enum values must be 1 to 200 characters without NUL",
                            ));
                        } else if !seen.insert(s) {
                            errs.push(FieldError::new(
                                format!("{path}.values[{i}]"),
                                "duplicate_enum_value",
                                format!("enum value `{}` is listed twice", truncate(s, 80)),
                            ));
                        }
                    }
                    Some(FieldKind::Enum(v.clone()))
                }
                _ => {
                    errs.push(FieldError::new(
                        at("values"),
                        "missing_values",
                        "an enum field needs a non-empty `values` list",
                    ));
                    None
                }
            },
            "json" => Some(FieldKind::Json),
            "list" => match spec.items.as_deref().map(ScalarKind::parse) {
                Some(Some(k)) => Some(FieldKind::List(k)),
                _ => {
                    errs.push(FieldError::new(
                        at("items"),
                        "invalid_items",
                        "a list field needs `items`: one of text, integer, number, boolean, date, datetime, uuid, email, url",
                    ));
                    None
                }
            },
            other => match ScalarKind::parse(other) {
                Some(k) => Some(FieldKind::Scalar(k)),
                None => {
                    errs.push(FieldError::new(
                        at("kind"),
                        "invalid_kind",
                        format!(
                            "unknown kind `{}`: expected text, integer, number, boolean, date, datetime, uuid, email, url, enum, json or list",
                            truncate(other, 40)
                        ),
                    ));
                    None
                }
            },
        };
        if spec.values.is_some() && spec.kind != "enum" {
            errs.push(FieldError::new(
                at("values"),
                "not_applicable",
                "`values` applies only to enum fields",
            ));
        }
        if spec.items.is_some() && spec.kind != "list" {
            errs.push(FieldError::new(
                at("items"),
                "not_applicable",
                "`items` applies only to list fields",
            ));
        }
        let numeric = matches!(
            kind,
            Some(FieldKind::Scalar(ScalarKind::Integer | ScalarKind::Number))
        );
        let lengthy = matches!(
            kind,
            Some(
                FieldKind::Scalar(ScalarKind::Text | ScalarKind::Email | ScalarKind::Url)
                    | FieldKind::List(_)
            )
        );
        let textual = matches!(
            kind,
            Some(FieldKind::Scalar(
                ScalarKind::Text | ScalarKind::Email | ScalarKind::Url
            ))
        );
        if (spec.min.is_some() || spec.max.is_some()) && kind.is_some() && !numeric {
            errs.push(FieldError::new(
                at("min"),
                "not_applicable",
                "`min`/`max` apply only to integer and number fields",
            ));
        }
        for (label, v) in [("min", spec.min), ("max", spec.max)] {
            if v.is_some_and(|v| !v.is_finite()) {
                errs.push(FieldError::new(
                    at(label),
                    "invalid_bound",
                    "bounds must be finite numbers",
                ));
            }
        }
        if let (Some(a), Some(b)) = (spec.min, spec.max) {
            if a > b {
                errs.push(FieldError::new(
                    at("min"),
                    "invalid_bound",
                    "`min` is greater than `max`",
                ));
            }
        }
        if (spec.min_length.is_some() || spec.max_length.is_some()) && kind.is_some() && !lengthy {
            errs.push(FieldError::new(
                at("max_length"),
                "not_applicable",
                "`min_length`/`max_length` apply only to text, email, url and list fields",
            ));
        }
        if let (Some(a), Some(b)) = (spec.min_length, spec.max_length) {
            if a > b {
                errs.push(FieldError::new(
                    at("min_length"),
                    "invalid_bound",
                    "`min_length` is greater than `max_length`",
                ));
            }
        }
        let pattern = match &spec.pattern {
            Some(p) if kind.is_some() && !textual => {
                errs.push(FieldError::new(
                    at("pattern"),
                    "not_applicable",
                    "`pattern` applies only to text, email and url fields",
                ));
                None
            }
            Some(p) => match Pattern::new(p) {
                Ok(p) => Some(p),
                Err(m) => {
                    errs.push(FieldError::new(at("pattern"), "invalid_pattern", m));
                    None
                }
            },
            None => None,
        };
        if let Some(k) = &kind {
            if (spec.indexed || spec.unique) && !k.is_orderable() {
                errs.push(FieldError::new(
                    at(if spec.unique { "unique" } else { "indexed" }),
                    "not_indexable",
                    format!("{} fields cannot be indexed or unique", k.name()),
                ));
            }
        }
        let (Some(name), Some(kind)) = (name, kind) else {
            return Err(errs);
        };
        let mut field = Field {
            name,
            label: spec.label.clone(),
            kind,
            required: spec.required,
            unique: spec.unique,
            indexed: spec.indexed,
            default: None,
            min: spec.min,
            max: spec.max,
            min_length: spec.min_length,
            max_length: spec.max_length,
            pattern,
        };
        if let Some(d) = &spec.default {
            if !d.is_null() {
                if spec.unique {
                    errs.push(FieldError::new(
                        at("default"),
                        "not_applicable",
                        "a unique field cannot have a default",
                    ));
                }
                let mut derrs = Vec::new();
                match field.check_value(d, &at("default"), &mut derrs) {
                    Some(v) if derrs.is_empty() => field.default = Some(v),
                    _ => errs.extend(derrs),
                }
            }
        }
        if errs.is_empty() {
            Ok(field)
        } else {
            Err(errs)
        }
    }

    /// The spec this field was built from (normalised).
    pub fn to_spec(&self) -> FieldSpec {
        let (kind, values, items) = match &self.kind {
            FieldKind::Scalar(s) => (s.as_str(), None, None),
            FieldKind::Enum(v) => ("enum", Some(v.clone()), None),
            FieldKind::Json => ("json", None, None),
            FieldKind::List(s) => ("list", None, Some(s.as_str().to_string())),
        };
        FieldSpec {
            name: self.name.to_string(),
            label: self.label.clone(),
            kind: kind.to_string(),
            required: self.required,
            unique: self.unique,
            indexed: self.indexed,
            default: self.default.clone(),
            min: self.min,
            max: self.max,
            min_length: self.min_length,
            max_length: self.max_length,
            pattern: self.pattern.as_ref().map(|p| p.as_str().to_string()),
            values,
            items,
        }
    }

    /// Checks one non-null value; pushes every problem into `errs` (with `path`) and
    /// returns the normalised value when it is acceptable so far.
    pub fn check_value(&self, v: &Value, path: &str, errs: &mut Vec<FieldError>) -> Option<Value> {
        self.check(v, path, errs).into_value(v)
    }

    /// [`Field::check_value`] in place: normalises `v` and returns true when it is
    /// acceptable so far, without copying a value that is already normal.
    pub fn check_value_mut(&self, v: &mut Value, path: &str, errs: &mut Vec<FieldError>) -> bool {
        self.check(v, path, errs).apply(v)
    }

    fn check(&self, v: &Value, path: &str, errs: &mut Vec<FieldError>) -> Checked {
        match &self.kind {
            FieldKind::Scalar(k) => {
                let c = check_scalar_as(*k, v, path, errs);
                match &c {
                    Checked::Same => self.check_constraints(*k, v, path, errs),
                    Checked::Normal(n) => self.check_constraints(*k, n, path, errs),
                    Checked::Invalid => {}
                }
                c
            }
            FieldKind::Enum(values) => match v {
                Value::String(s) if values.iter().any(|x| x == s) => Checked::Same,
                Value::String(s) => {
                    errs.push(FieldError::new(
                        path,
                        "not_in_enum",
                        format!(
                            "`{}` is not one of: {}",
                            truncate(s, 80),
                            truncate(&values.join(", "), 200)
                        ),
                    ));
                    Checked::Invalid
                }
                _ => {
                    errs.push(wrong_type(path, "a string (enum value)", v));
                    Checked::Invalid
                }
            },
            FieldKind::Json => {
                if json_has_nul(v) {
                    errs.push(FieldError::new(
                        path,
                        "nul_in_text",
                        "text must not contain NUL (\\u0000)",
                    ));
                    Checked::Invalid
                } else {
                    Checked::Same
                }
            }
            FieldKind::List(k) => {
                let Value::Array(items) = v else {
                    errs.push(wrong_type(path, &format!("a list of {}", k.as_str()), v));
                    return Checked::Invalid;
                };
                let n = items.len() as u64;
                if let Some(min) = self.min_length {
                    if n < u64::from(min) {
                        errs.push(FieldError::new(
                            path,
                            "too_short",
                            format!("must have at least {min} items"),
                        ));
                    }
                }
                if let Some(max) = self.max_length {
                    if n > u64::from(max) {
                        errs.push(FieldError::new(
                            path,
                            "too_long",
                            format!("must have at most {max} items"),
                        ));
                    }
                }
                // Normalised items, once one differs (copies of the ones before it).
                let mut normal: Option<Vec<Value>> = None;
                let before = errs.len();
                for (i, item) in items.iter().enumerate() {
                    let p = format!("{path}[{i}]");
                    let c = if item.is_null() {
                        errs.push(wrong_type(&p, k.as_str(), item));
                        Checked::Invalid
                    } else {
                        check_scalar_as(*k, item, &p, errs)
                    };
                    match (c, &mut normal) {
                        (Checked::Invalid, _) => {}
                        (Checked::Same, None) => {}
                        (Checked::Same, Some(out)) => out.push(item.clone()),
                        (Checked::Normal(x), out) => {
                            out.get_or_insert_with(|| items[..i].to_vec()).push(x)
                        }
                    }
                }
                match (errs.len() == before, normal) {
                    (false, _) => Checked::Invalid,
                    (true, None) => Checked::Same,
                    (true, Some(out)) => Checked::Normal(Value::Array(out)),
                }
            }
        }
    }

    fn check_constraints(&self, k: ScalarKind, v: &Value, path: &str, errs: &mut Vec<FieldError>) {
        match v {
            Value::String(s) if k.is_textual() => {
                let n = s.chars().count();
                if let Some(min) = self.min_length {
                    if n < min as usize {
                        errs.push(FieldError::new(
                            path,
                            "too_short",
                            format!("must be at least {min} characters"),
                        ));
                    }
                }
                let max = self
                    .max_length
                    .map(|m| m as usize)
                    .unwrap_or(DEFAULT_MAX_TEXT_LEN);
                if n > max {
                    errs.push(FieldError::new(
                        path,
                        "too_long",
                        format!("must be at most {max} characters"),
                    ));
                }
                if let Some(p) = &self.pattern {
                    if !p.is_match(s) {
                        errs.push(FieldError::new(
                            path,
                            "pattern_mismatch",
                            format!("does not match the pattern `{}`", truncate(p.as_str(), 80)),
                        ));
                    }
                }
            }
            Value::Number(n) => {
                let x = n.as_f64().unwrap_or(f64::NAN);
                if let Some(min) = self.min {
                    if x < min {
                        errs.push(FieldError::new(
                            path,
                            "out_of_range",
                            format!("must be at least {min}"),
                        ));
                    }
                }
                if let Some(max) = self.max {
                    if x > max {
                        errs.push(FieldError::new(
                            path,
                            "out_of_range",
                            format!("must be at most {max}"),
                        ));
                    }
                }
            }
            _ => {}
        }
    }
}

impl TryFrom<FieldSpec> for Field {
    type Error = String;
    fn try_from(spec: FieldSpec) -> Result<Field, String> {
        Field::from_spec_at(&spec, "field").map_err(|errs| {
            errs.iter()
                .map(|e| format!("{}: {}", e.field, e.message))
                .collect::<Vec<_>>()
                .join("; ")
        })
    }
}

impl From<Field> for FieldSpec {
    fn from(f: Field) -> FieldSpec {
        f.to_spec()
    }
}

fn describe(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

fn wrong_type(path: &str, expected: &str, got: &Value) -> FieldError {
    FieldError::new(
        path,
        "wrong_type",
        format!("expected {expected}, got {}", describe(got)),
    )
}

/// True when any string (or object key) inside `v` contains NUL, which PostgreSQL's
/// jsonb cannot store.
pub fn json_has_nul(v: &Value) -> bool {
    match v {
        Value::String(s) => s.contains('\0'),
        Value::Array(a) => a.iter().any(json_has_nul),
        Value::Object(o) => o.iter().any(|(k, v)| k.contains('\0') || json_has_nul(v)),
        _ => false,
    }
}

/// Parses an RFC 3339 datetime.
pub fn parse_datetime(s: &str) -> Option<DateTime<Utc>> {
    // The plain UTC form `YYYY-MM-DDTHH:MM:SSZ` directly (about 5x cheaper than
    // chrono's general RFC 3339 parser, which handles everything else).
    parse_plain_utc(s.as_bytes()).or_else(|| {
        DateTime::parse_from_rfc3339(s)
            .ok()
            .map(|d| d.with_timezone(&Utc))
    })
}

/// 0000-01-01T00:00:00Z and 10000-01-01T00:00:00Z in microseconds since the Unix epoch.
const DATETIME_MIN_US: i64 = -62_167_219_200_000_000;
const DATETIME_END_US: i64 = 253_402_300_800_000_000;

/// The instant of an RFC 3339 datetime in microseconds since the Unix epoch, exactly as
/// PostgreSQL's `timestamptz` input computes it: the fraction rounded to microseconds
/// half to even (`rint`), a leap second `:60` read as the next minute's `:00`. `None`
/// when the text is not RFC 3339 or PostgreSQL refuses it: year 0000 as written, an
/// offset beyond ±15:59, a leap second with a fraction. Validation accepts only values
/// this maps, so every stored datetime can be cast and indexed.
pub fn datetime_micros(s: &str) -> Option<i64> {
    let d = parse_datetime(s)?;
    // RFC 3339 as parsed: `YYYY-MM-DD?HH:MM:SS[.f…](Z|z|±HH:MM)`, ASCII.
    let b = s.as_bytes();
    if b.starts_with(b"0000") {
        return None;
    }
    if !matches!(b.last(), Some(b'Z' | b'z')) {
        // `±HH:MM`
        let hours = s.get(s.len().checked_sub(5)?..s.len() - 3)?;
        if hours.parse::<u8>().ok()? > 15 {
            return None;
        }
    }
    let micros = fraction_micros(s);
    let leap = d.timestamp_subsec_nanos() >= 1_000_000_000;
    if leap && micros > 0 {
        return None;
    }
    Some((d.timestamp() + i64::from(leap)) * 1_000_000 + micros)
}

/// PostgreSQL's `rint(strtod(".digits") * 1e6)` of a datetime's fraction (0 without one).
fn fraction_micros(s: &str) -> i64 {
    let Some(dot) = s.find('.') else {
        return 0;
    };
    let rest = &s[dot + 1..];
    let digits = &rest[..rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len())];
    if digits.is_empty() {
        return 0;
    }
    let f: f64 = format!("0.{digits}").parse().unwrap_or(0.0);
    (f * 1_000_000.0).round_ties_even() as i64
}

/// `YYYY-MM-DDTHH:MM:SSZ`, or `None` for anything else (including a leap second, which
/// is left to chrono).
fn parse_plain_utc(b: &[u8]) -> Option<DateTime<Utc>> {
    if b.len() != 20 {
        return None;
    }
    for (i, c) in [
        (4, b'-'),
        (7, b'-'),
        (10, b'T'),
        (13, b':'),
        (16, b':'),
        (19, b'Z'),
    ] {
        if b[i] != c {
            return None;
        }
    }
    let digits = |r: std::ops::Range<usize>| {
        b[r].iter().try_fold(0u32, |n, c| {
            c.is_ascii_digit().then(|| n * 10 + u32::from(c - b'0'))
        })
    };
    let date = NaiveDate::from_ymd_opt(digits(0..4)? as i32, digits(5..7)?, digits(8..10)?)?;
    let time = chrono::NaiveTime::from_hms_opt(digits(11..13)?, digits(14..16)?, digits(17..19)?)?;
    Some(date.and_time(time).and_utc())
}

/// Parses a `YYYY-MM-DD` date.
pub fn parse_date(s: &str) -> Option<NaiveDate> {
    if s.len() != 10 {
        return None;
    }
    // Fast path for the plain form (chrono's format-string parser costs ~10x more).
    let b = s.as_bytes();
    let digits = |r: std::ops::Range<usize>| {
        b[r].iter().try_fold(0u32, |n, c| {
            c.is_ascii_digit().then(|| n * 10 + u32::from(c - b'0'))
        })
    };
    if b[4] == b'-' && b[7] == b'-' {
        if let (Some(y), Some(m), Some(d)) = (digits(0..4), digits(5..7), digits(8..10)) {
            return NaiveDate::from_ymd_opt(y as i32, m, d);
        }
    }
    NaiveDate::parse_from_str(s, "%Y-%m-%d").ok()
}

/// A light, conservative e-mail check: `local@domain.tld`, no spaces, sane lengths.
pub fn is_email(s: &str) -> bool {
    if s.len() > 254 || s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return false;
    }
    let Some((local, domain)) = s.rsplit_once('@') else {
        return false;
    };
    !local.is_empty()
        && local.len() <= 64
        && !local.contains('@')
        && domain.len() >= 3
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !domain.contains("..")
        && domain
            .chars()
            .all(|c| c.is_alphanumeric() || c == '-' || c == '.')
}

/// Checks a JSON value against a scalar kind; returns the normalised value.
pub fn check_scalar(
    k: ScalarKind,
    v: &Value,
    path: &str,
    errs: &mut Vec<FieldError>,
) -> Option<Value> {
    check_scalar_as(k, v, path, errs).into_value(v)
}

/// What a check found: the value is valid as it is, valid once normalised to another
/// value, or invalid (the problems are in the caller's `errs`).
enum Checked {
    Same,
    Normal(Value),
    Invalid,
}

impl Checked {
    /// The normalised value (a copy of `v` when it was normal already).
    fn into_value(self, v: &Value) -> Option<Value> {
        match self {
            Checked::Same => Some(v.clone()),
            Checked::Normal(n) => Some(n),
            Checked::Invalid => None,
        }
    }

    /// Normalises `v` in place; false when it is invalid.
    fn apply(self, v: &mut Value) -> bool {
        match self {
            Checked::Same => true,
            Checked::Normal(n) => {
                *v = n;
                true
            }
            Checked::Invalid => false,
        }
    }
}

fn check_scalar_as(k: ScalarKind, v: &Value, path: &str, errs: &mut Vec<FieldError>) -> Checked {
    use Checked::{Invalid, Normal, Same};
    let text = |errs: &mut Vec<FieldError>| -> Option<&str> {
        match v {
            Value::String(s) if s.contains('\0') => {
                errs.push(FieldError::new(
                    path,
                    "nul_in_text",
                    "text must not contain NUL (\\u0000)",
                ));
                None
            }
            Value::String(s) => Some(s.as_str()),
            _ => {
                errs.push(wrong_type(path, &format!("a string ({})", k.as_str()), v));
                None
            }
        }
    };
    // A textual kind: valid as it is when `ok`, else the error `code` with `message`.
    let textual = |errs: &mut Vec<FieldError>,
                   ok: &dyn Fn(&str) -> bool,
                   code: &'static str,
                   message: &dyn Fn(&str) -> String| {
        let Some(s) = text(errs) else {
            return Invalid;
        };
        if ok(s) {
            Same
        } else {
            errs.push(FieldError::new(path, code, message(&truncate(s, 40))));
            Invalid
        }
    };
    match k {
        ScalarKind::Text => match text(errs) {
            Some(_) => Same,
            None => Invalid,
        },
        ScalarKind::Integer => match v {
            Value::Number(n) => {
                if n.as_i64().is_some() {
                    Same
                } else if n.is_u64() {
                    errs.push(FieldError::new(
                        path,
                        "integer_overflow",
                        "integer does not fit in 64 bits",
                    ));
                    Invalid
                } else {
                    let f = n.as_f64().unwrap_or(f64::NAN);
                    if f.fract() == 0.0 && f.is_finite() {
                        // Exclusive at -2^63 too: an integer literal below i64::MIN
                        // reaches here rounded to exactly -2^63 and must not be accepted.
                        if f > -9.223_372_036_854_776e18 && f < 9.223_372_036_854_776e18 {
                            Normal(Value::from(f as i64))
                        } else {
                            errs.push(FieldError::new(
                                path,
                                "integer_overflow",
                                "integer does not fit in 64 bits",
                            ));
                            Invalid
                        }
                    } else {
                        errs.push(FieldError::new(
                            path,
                            "wrong_type",
                            "expected an integer, got a fractional number",
                        ));
                        Invalid
                    }
                }
            }
            _ => {
                errs.push(wrong_type(path, "an integer", v));
                Invalid
            }
        },
        ScalarKind::Number => match v {
            Value::Number(n) if n.as_f64().is_some_and(f64::is_finite) => Same,
            _ => {
                errs.push(wrong_type(path, "a number", v));
                Invalid
            }
        },
        ScalarKind::Boolean => match v {
            Value::Bool(_) => Same,
            _ => {
                errs.push(wrong_type(path, "a boolean", v));
                Invalid
            }
        },
        // Year 0000 is valid ISO 8601 but not PostgreSQL `date` input.
        ScalarKind::Date => textual(
            errs,
            &|s| parse_date(s).is_some_and(|d| chrono::Datelike::year(&d) >= 1),
            "invalid_date",
            &|s| format!("`{s}` is not a date (YYYY-MM-DD)"),
        ),
        // An instant in the years 0000-9999 (UTC) that PostgreSQL reads the same way.
        ScalarKind::Datetime => textual(
            errs,
            &|s| {
                datetime_micros(s)
                    .is_some_and(|us| (DATETIME_MIN_US..DATETIME_END_US).contains(&us))
            },
            "invalid_datetime",
            &|s| format!("`{s}` is not an RFC 3339 datetime (e.g. 2024-05-01T12:00:00Z)"),
        ),
        ScalarKind::Uuid => {
            let Some(s) = text(errs) else {
                return Invalid;
            };
            match Uuid::try_parse(s) {
                Ok(u) => {
                    let mut buf = Uuid::encode_buffer();
                    let canonical = u.hyphenated().encode_lower(&mut buf);
                    if canonical == s {
                        Same
                    } else {
                        Normal(Value::String(canonical.to_string()))
                    }
                }
                Err(_) => {
                    errs.push(FieldError::new(
                        path,
                        "invalid_uuid",
                        format!("`{}` is not a uuid", truncate(s, 40)),
                    ));
                    Invalid
                }
            }
        }
        ScalarKind::Email => textual(errs, &is_email, "invalid_email", &|s| {
            format!("`{s}` is not an e-mail address")
        }),
        ScalarKind::Url => textual(
            errs,
            &|s| url::Url::parse(s).is_ok_and(|u| !u.cannot_be_a_base() || u.scheme() == "mailto"),
            "invalid_url",
            &|s| format!("`{s}` is not an absolute URL"),
        ),
    }
}

#[cfg(test)]
mod datetime_tests {
    use super::*;

    /// PostgreSQL's answers (`extract(epoch from '…'::timestamptz)` on PostgreSQL 15).
    #[test]
    fn datetime_micros_round_and_refuse_as_postgresql_does() {
        for (s, micros) in [
            ("2024-12-31T23:59:59Z", Some(1_735_689_599_000_000)),
            ("2024-12-31T23:59:60Z", Some(1_735_689_600_000_000)),
            ("2024-12-31T23:59:60.0000005Z", Some(1_735_689_600_000_000)),
            ("2024-12-31T23:59:60.5Z", None),
            ("2024-12-31T23:59:59.9999995Z", Some(1_735_689_600_000_000)),
            (
                "2024-12-31T23:59:59.9999994999Z",
                Some(1_735_689_599_999_999),
            ),
            ("2024-12-31T23:59:59.0000005Z", Some(1_735_689_599_000_000)),
            ("2024-12-31T23:59:59.0000015Z", Some(1_735_689_599_000_002)),
            ("2024-12-31T23:59:59.0000025Z", Some(1_735_689_599_000_002)),
            (
                "2024-12-31T23:59:59.123456789123456789Z",
                Some(1_735_689_599_123_457),
            ),
            ("2024-12-31T23:59:59+15:59", Some(1_735_632_059_000_000)),
            ("2024-12-31T23:59:59+16:00", None),
            ("2024-12-31T23:59:59-23:59", None),
            ("2024-12-31t23:59:59z", Some(1_735_689_599_000_000)),
            ("2024-12-31 23:59:59Z", Some(1_735_689_599_000_000)),
            ("2024-05-01T12:00:00.5+05:30", Some(1_714_545_000_500_000)),
            ("0001-01-01T00:00:00+01:00", Some(-62_135_600_400_000_000)),
            (
                "9999-12-31T23:59:59.9999999-14:00",
                Some(253_402_351_200_000_000),
            ),
            ("0000-01-01T00:00:00Z", None),
            ("2024-02-30T00:00:00Z", None),
        ] {
            assert_eq!(datetime_micros(s), micros, "{s}");
        }
    }

    /// The fast path gives chrono's answer on the plain form and around it.
    #[test]
    fn datetimes_parse_like_chrono() {
        for s in [
            "2024-03-01T12:00:00Z",
            "0000-01-01T00:00:00Z",
            "9999-12-31T23:59:59Z",
            "2024-02-29T23:59:59Z",
            "2023-02-29T00:00:00Z",
            "2024-13-01T00:00:00Z",
            "2024-01-01T24:00:00Z",
            "2024-01-01T23:60:00Z",
            "2016-12-31T23:59:60Z",
            "2024-01-01t00:00:00z",
            "2024-01-01 00:00:00Z",
            "2024-01-01T00:00:00+02:00",
            "2024-01-01T00:00:00.5Z",
            "2024-1-01T00:00:00Z ",
            "+024-01-01T00:00:00Z",
            "2024-01-01T0a:00:00Z",
            "2024-01-01T00:00:00",
            "2024-01-01T00:00:00Zé",
        ] {
            let chrono = DateTime::parse_from_rfc3339(s)
                .ok()
                .map(|d| d.with_timezone(&Utc));
            assert_eq!(parse_datetime(s), chrono, "{s}");
        }
    }
}
