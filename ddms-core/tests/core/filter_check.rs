//! Table-driven tests of filter parsing and type checking: one `check(input, expect)`
//! helper. `expect` is either the rendered shape of the checked filter, or
//! `error <path>: <fragment of the message>`.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{SecondsFormat, Utc};
use ddms_core::entity_type::{EntityType, NewEntityType};
use ddms_core::error::{Error, Result};
use ddms_core::filter::{
    check, CheckedFilter, CmpOp, Filter, Op, Scalar, SchemaLookup, Target, TextOp,
};
use ddms_core::name::Name;
use ddms_core::relation::{Cardinality, Direction, OnDelete, RelationType};
use serde_json::{json, Value};
use uuid::Uuid;

struct Schema {
    types: HashMap<String, Arc<EntityType>>,
    relations: HashMap<String, RelationType>,
}

impl SchemaLookup for Schema {
    fn relation_type(&self, name: &Name) -> Result<RelationType> {
        self.relations
            .get(name.as_str())
            .cloned()
            .ok_or_else(|| Error::not_found("relation type", name))
    }
    fn entity_type(&self, name: &Name) -> Result<Arc<EntityType>> {
        self.types
            .get(name.as_str())
            .cloned()
            .ok_or_else(|| Error::not_found("entity type", name))
    }
}

fn entity_type(v: Value) -> Arc<EntityType> {
    let new: NewEntityType = serde_json::from_value(v).unwrap();
    let def = new.check().unwrap();
    Arc::new(EntityType {
        id: Uuid::new_v4(),
        name: def.name,
        label: def.label,
        fields: def.fields,
        version: 1,
        created_at: Utc::now(),
        updated_at: Utc::now(),
    })
}

fn relation(name: &str, source: &str, target: &str) -> RelationType {
    RelationType {
        id: Uuid::new_v4(),
        name: Name::parse(name).unwrap(),
        source: Name::parse(source).unwrap(),
        target: Name::parse(target).unwrap(),
        cardinality: Cardinality::ManyToMany,
        on_delete: OnDelete::Cascade,
        created_at: Utc::now(),
    }
}

fn schema() -> Schema {
    let item = entity_type(json!({"name": "item", "fields": [
        {"name": "t", "kind": "text"},
        {"name": "t_ix", "kind": "text", "indexed": true},
        {"name": "i", "kind": "integer", "unique": true},
        {"name": "n", "kind": "number"},
        {"name": "b", "kind": "boolean"},
        {"name": "d", "kind": "date"},
        {"name": "dt", "kind": "datetime"},
        {"name": "u", "kind": "uuid"},
        {"name": "e", "kind": "email"},
        {"name": "w", "kind": "url"},
        {"name": "s", "kind": "enum", "values": ["red", "green"]},
        {"name": "j", "kind": "json"},
        {"name": "l", "kind": "list", "items": "text"},
        {"name": "li", "kind": "list", "items": "integer"}
    ]}));
    let tag = entity_type(json!({"name": "tag", "fields": [{"name": "name", "kind": "text"}]}));
    Schema {
        types: HashMap::from([("item".into(), item), ("tag".into(), tag)]),
        relations: HashMap::from([
            ("owns".into(), relation("owns", "item", "tag")),
            ("likes".into(), relation("likes", "item", "item")),
        ]),
    }
}

fn target(t: &Target) -> String {
    match t {
        Target::System(s) => format!("@{}", s.as_str()),
        Target::Field { name, indexed, .. } => {
            format!("{name}{}", if *indexed { "*" } else { "" })
        }
    }
}

fn scalar(s: &Scalar) -> String {
    match s {
        Scalar::Text(x) => format!("{x:?}"),
        Scalar::Int(i) => i.to_string(),
        Scalar::Float(f) => format!("{f:?}f"),
        Scalar::Bool(b) => b.to_string(),
        Scalar::Date(d) => format!("date:{d}"),
        Scalar::Datetime(d) => format!("dt:{}", d.to_rfc3339_opts(SecondsFormat::AutoSi, true)),
        Scalar::Uuid(u) => format!("uuid:{u}"),
    }
}

fn render(f: &CheckedFilter) -> String {
    let list = |v: &[CheckedFilter]| v.iter().map(render).collect::<Vec<_>>().join(", ");
    match f {
        CheckedFilter::And(v) => format!("and({})", list(v)),
        CheckedFilter::Or(v) => format!("or({})", list(v)),
        CheckedFilter::Not(f) => format!("not({})", render(f)),
        CheckedFilter::Compare {
            target: t,
            op,
            value,
        } => {
            let op = match op {
                CmpOp::Eq => "=",
                CmpOp::Ne => "!=",
                CmpOp::Lt => "<",
                CmpOp::Lte => "<=",
                CmpOp::Gt => ">",
                CmpOp::Gte => ">=",
            };
            format!("{} {op} {}", target(t), scalar(value))
        }
        CheckedFilter::In {
            target: t,
            negated,
            values,
        } => format!(
            "{} {} [{}]",
            target(t),
            if *negated { "not_in" } else { "in" },
            values.iter().map(scalar).collect::<Vec<_>>().join(", ")
        ),
        CheckedFilter::Text {
            target: t,
            op,
            value,
        } => {
            let op = match op {
                TextOp::Contains => "contains",
                TextOp::StartsWith => "starts_with",
                TextOp::EndsWith => "ends_with",
            };
            format!("{} {op} {value:?}", target(t))
        }
        CheckedFilter::ListContains { target: t, value } => {
            format!("{} has {}", target(t), scalar(value))
        }
        CheckedFilter::JsonEq {
            target: t,
            negated,
            value,
        } => format!(
            "{} {} {value}",
            target(t),
            if *negated { "json!=" } else { "json=" }
        ),
        CheckedFilter::IsNull { target: t, is_null } => {
            format!(
                "{} is {}",
                target(t),
                if *is_null { "null" } else { "present" }
            )
        }
        CheckedFilter::Related {
            relation_type,
            direction,
            other,
            filter,
        } => {
            let dir = match direction {
                Direction::In => "in",
                Direction::Out => "out",
                Direction::Both => "both",
            };
            match filter {
                Some(f) => format!(
                    "related({relation_type} {dir} {} where {})",
                    other.name,
                    render(f)
                ),
                None => format!("related({relation_type} {dir} {})", other.name),
            }
        }
    }
}

fn outcome(r: Result<CheckedFilter>) -> std::result::Result<String, (String, String)> {
    match r {
        Ok(f) => Ok(render(&f)),
        Err(Error::InvalidFilter { path, message }) => Err((path, message)),
        Err(e) => panic!("expected InvalidFilter, got {e:?}"),
    }
}

fn check_filter(input: &Value, f: std::result::Result<Filter, Error>, expect: &str) {
    let schema = schema();
    let item = schema.types["item"].clone();
    let got = match f {
        Ok(f) => outcome(check(&item, &f, &schema)),
        Err(e) => outcome(Err(e)),
    };
    match (got, expect.strip_prefix("error ")) {
        (Ok(shape), None) => assert_eq!(shape, expect, "input: {input}"),
        (Err((path, message)), Some(want)) => {
            let (want_path, fragment) = want.split_once(": ").unwrap_or((want, ""));
            assert_eq!(path, want_path, "input: {input}: {message}");
            assert!(
                message.contains(fragment),
                "input: {input}: message {message:?} lacks {fragment:?}"
            );
        }
        (Ok(shape), Some(_)) => panic!("input: {input}: expected an error, got {shape}"),
        (Err((path, message)), None) => {
            panic!("input: {input}: expected {expect}, got error at {path}: {message}")
        }
    }
}

fn check_json(input: Value, expect: &str) {
    check_filter(&input, Filter::from_json(&input), expect);
}

fn p(field: &str, op: &str, value: Value) -> Value {
    json!({"field": field, "op": op, "value": value})
}

#[test]
fn comparisons_by_kind() {
    check_json(p("t", "eq", json!("a")), r#"t = "a""#);
    check_json(p("t_ix", "ne", json!("a")), r#"t_ix* != "a""#);
    check_json(p("i", "gt", json!(10)), "i* > 10");
    check_json(p("i", "eq", json!(10.0)), "i* = 10");
    check_json(p("i", "lte", json!(i64::MIN)), "i* <= -9223372036854775808");
    check_json(p("n", "lte", json!(2)), "n <= 2.0f");
    check_json(p("n", "gte", json!(-0.5)), "n >= -0.5f");
    check_json(p("b", "ne", json!(true)), "b != true");
    check_json(p("d", "gte", json!("2024-01-01")), "d >= date:2024-01-01");
    check_json(
        p("dt", "lt", json!("2024-01-15T12:00:00+02:00")),
        "dt < dt:2024-01-15T10:00:00Z",
    );
    check_json(
        p("u", "eq", json!("550E8400-E29B-41D4-A716-446655440000")),
        "u = uuid:550e8400-e29b-41d4-a716-446655440000",
    );
    check_json(p("e", "lt", json!("m@x.io")), r#"e < "m@x.io""#);
    check_json(p("w", "gte", json!("https")), r#"w >= "https""#);
    check_json(p("s", "eq", json!("red")), r#"s = "red""#);
    check_json(p("s", "ne", json!("green")), r#"s != "green""#);
}

#[test]
fn membership_text_list_json_null() {
    check_json(p("s", "in", json!(["red"])), r#"s in ["red"]"#);
    check_json(p("i", "not_in", json!([1, 2.0])), "i* not_in [1, 2]");
    check_json(
        p("d", "in", json!(["2024-01-01"])),
        "d in [date:2024-01-01]",
    );
    check_json(
        p("e", "ends_with", json!("@x.com")),
        r#"e ends_with "@x.com""#,
    );
    check_json(
        p("w", "starts_with", json!("https://")),
        r#"w starts_with "https://""#,
    );
    check_json(p("t", "contains", json!("%_")), r#"t contains "%_""#);
    check_json(p("l", "contains", json!("x")), r#"l has "x""#);
    check_json(p("li", "contains", json!(2)), "li has 2");
    check_json(p("j", "eq", json!({"a": 1})), r#"j json= {"a":1}"#);
    check_json(p("j", "ne", json!([1])), "j json!= [1]");
    check_json(p("j", "eq", json!(null)), "j json= null");
    check_json(json!({"field": "t", "op": "is_null"}), "t is null");
    check_json(p("t", "is_null", json!(false)), "t is present");
    check_json(json!({"field": "j", "op": "exists"}), "j is present");
    check_json(p("l", "exists", json!(false)), "l is null");
}

#[test]
fn system_fields() {
    let id = "550e8400-e29b-41d4-a716-446655440000";
    check_json(p("id", "eq", json!(id)), &format!("@id = uuid:{id}"));
    check_json(p("id", "in", json!([id])), &format!("@id in [uuid:{id}]"));
    check_json(p("id", "gt", json!(id)), &format!("@id > uuid:{id}"));
    check_json(
        p("created_at", "gt", json!("2024-01-01T00:00:00Z")),
        "@created_at > dt:2024-01-01T00:00:00Z",
    );
    check_json(
        p("updated_at", "not_in", json!(["2024-01-01T01:00:00+01:00"])),
        "@updated_at not_in [dt:2024-01-01T00:00:00Z]",
    );
}

#[test]
fn logic_and_relations() {
    check_json(json!({"and": []}), "and()");
    check_json(json!({"or": []}), "or()");
    check_json(
        json!({"or": [{"not": p("i", "gt", json!(1))}, p("t", "eq", json!("x"))]}),
        r#"or(not(i* > 1), t = "x")"#,
    );
    check_json(
        json!({"and": [{"and": [p("b", "eq", json!(false))]}, {"not": {"not": p("n", "lt", json!(1))}}]}),
        "and(and(b = false), not(not(n < 1.0f)))",
    );
    check_json(
        json!({"related": {"type": "owns"}}),
        "related(owns out tag)",
    );
    check_json(
        json!({"related": {"type": "likes", "direction": "in", "where": p("i", "eq", json!(1))}}),
        "related(likes in item where i* = 1)",
    );
    check_json(
        json!({"related": {"type": "owns", "where": p("name", "contains", json!("h"))}}),
        r#"related(owns out tag where name contains "h")"#,
    );
    check_json(
        json!({"related": {"type": "likes", "where": {"related": {"type": "owns", "where": null}}}}),
        "related(likes out item where related(owns out tag))",
    );
}

#[test]
fn type_errors() {
    check_json(
        p("nope", "eq", json!(1)),
        "error $.field: unknown field `nope` on item",
    );
    check_json(
        p("b", "lt", json!(true)),
        "error $.op: operator `lt` does not apply to `b` (boolean)",
    );
    check_json(
        p("s", "gt", json!("red")),
        "error $.op: does not apply to `s` (enum)",
    );
    check_json(
        p("s", "eq", json!("blue")),
        "error $.value: is not a value of enum `s`",
    );
    check_json(
        p("s", "contains", json!("re")),
        "error $.op: does not apply",
    );
    check_json(p("i", "eq", json!("x")), "error $.value: needs an integer");
    check_json(p("i", "eq", json!(1.5)), "error $.value: needs an integer");
    check_json(p("i", "eq", json!(1e19)), "error $.value: needs an integer");
    check_json(p("n", "eq", json!("1")), "error $.value: needs a number");
    check_json(
        p("d", "eq", json!("2024-02-30")),
        "error $.value: a date string",
    );
    check_json(
        p("dt", "eq", json!("2024-01-01")),
        "error $.value: RFC 3339",
    );
    check_json(p("u", "eq", json!("x")), "error $.value: a uuid string");
    check_json(p("u", "contains", json!("0")), "error $.op: (uuid)");
    check_json(p("i", "in", json!([])), "error $.value: non-empty list");
    check_json(
        p("i", "in", json!(1)),
        "error $.value: needs a list of values",
    );
    check_json(
        p("i", "in", json!([1, "x"])),
        "error $.value[1]: needs an integer",
    );
    check_json(
        p("t", "contains", json!("")),
        "error $.value: non-empty string",
    );
    check_json(
        p("t", "eq", json!("a\u{0}")),
        "error $.value: needs a string",
    );
    check_json(
        p("t", "eq", json!("x".repeat(4097))),
        "error $.value: limited to 4096",
    );
    let many: Vec<i64> = (0..1001).collect();
    check_json(p("i", "in", json!(many)), "error $.value: at most 1000");
    check_json(p("j", "lt", json!(1)), "error $.op: (json)");
    check_json(p("j", "in", json!([1])), "error $.op: (json)");
    check_json(p("j", "eq", json!({"a": "\u{0}"})), "error $.value: NUL");
    check_json(p("l", "eq", json!("x")), "error $.op: (list of text)");
    check_json(
        p("li", "contains", json!("x")),
        "error $.value: holds items that are an integer",
    );
    check_json(p("id", "is_null", json!(true)), "error $.op: (uuid)");
    check_json(
        p("created_at", "exists", json!(true)),
        "error $.op: (datetime)",
    );
    check_json(p("created_at", "eq", json!("x")), "error $.value: RFC 3339");
    check_json(
        p("t", "is_null", json!("x")),
        "error $.value: needs true or false",
    );
    check_json(
        json!({"and": [p("t", "eq", json!("a")), {"or": [{"not": p("i", "eq", json!("x"))}]}]}),
        "error $.and[1].or[0].not.value: needs an integer",
    );
}

#[test]
fn relation_errors() {
    check_json(
        json!({"related": {"type": "nope"}}),
        "error $.related.type: unknown relation type `nope`",
    );
    check_json(
        json!({"related": {"type": "Bad!"}}),
        "error $.related.type: invalid relation type name",
    );
    check_json(
        json!({"related": {"type": "owns", "direction": "in"}}),
        "error $.related.direction: records of item cannot be its target",
    );
    check_json(
        json!({"related": {"type": "owns", "where": p("t", "eq", json!("x"))}}),
        "error $.related.where.field: unknown field `t` on tag",
    );
    check_json(
        json!({"related": {"type": "likes", "where": {"related": {"type": "likes", "where": p("b", "gt", json!(true))}}}}),
        "error $.related.where.related.where.op: does not apply",
    );
}

#[test]
fn parse_errors() {
    check_json(
        p("t", "like", json!("a")),
        "error $.op: unknown operator `like`",
    );
    check_json(
        json!({"field": "t", "op": "eq"}),
        "error $.value: missing `value`",
    );
    check_json(
        json!({"field": "t", "value": 1}),
        "error $.op: expected an operator name",
    );
    check_json(
        json!({"field": 3, "op": "eq", "value": 1}),
        "error $.field: expected a field name",
    );
    check_json(
        json!({"field": "t", "op": "eq", "value": 1, "x": 1}),
        "error $: unknown key `x`",
    );
    check_json(json!([]), "error $: expected an object, got a list");
    check_json(json!(null), "error $: expected an object, got null");
    check_json(json!({}), "error $: expected a predicate");
    check_json(
        json!({"and": {}}),
        "error $.and: expected a list of filters",
    );
    check_json(
        json!({"and": [], "or": []}),
        "error $: must be the only key",
    );
    check_json(json!({"not": 1}), "error $.not: expected an object");
    check_json(json!({"related": 1}), "error $.related: expected an object");
    check_json(
        json!({"related": {"type": "likes", "direction": "both"}}),
        "error $.related.direction: expected `out` or `in`",
    );
    check_json(
        json!({"related": {"type": "likes", "as": 1}}),
        "error $.related: unknown key `as`",
    );
    check_json(
        json!({"related": {"direction": "in"}}),
        "error $.related.type: expected the relation type name",
    );
    let mut deep = p("t", "eq", json!("a"));
    for _ in 0..32 {
        deep = json!({"not": deep});
    }
    check_json(
        deep,
        &format!(
            "error $.{}: nested deeper than 32",
            vec!["not"; 32].join(".")
        ),
    );
    let wide = json!({"and": (0..257).map(|i| p("i", "eq", json!(i))).collect::<Vec<_>>()});
    check_json(wide, "error $.and[256]: more than 256 clauses");
    let s = r#"{"field": "t", "op": "eq", "value": "#;
    check_filter(
        &json!(s),
        Filter::from_json_str(s),
        "error $: not valid JSON",
    );
}

#[test]
fn bounds_hold_for_filters_built_in_code() {
    let pred = || Filter::Pred {
        field: "t".into(),
        op: Op::Eq,
        value: json!("a"),
    };
    let mut deep = pred();
    for _ in 0..31 {
        deep = Filter::Not(Box::new(deep));
    }
    check_filter(
        &json!("31 nots"),
        Ok(deep.clone()),
        &format!("not({})", render_nots(30)),
    );
    let deeper = Filter::Not(Box::new(deep));
    check_filter(
        &json!("32 nots"),
        Ok(deeper),
        &format!(
            "error $.{}: nested deeper than 32",
            vec!["not"; 32].join(".")
        ),
    );
    let wide = Filter::Or((0..300).map(|_| pred()).collect());
    check_filter(
        &json!("300 preds"),
        Ok(wide),
        "error $.or[256]: more than 256 clauses",
    );
    let related = Filter::Related {
        relation_type: "likes".into(),
        direction: Direction::Out,
        filter: Some(Box::new(Filter::And((0..256).map(|_| pred()).collect()))),
    };
    check_filter(
        &json!("related + 256 preds"),
        Ok(related),
        "error $.related.where.and[255]: more than 256 clauses",
    );
}

fn render_nots(n: usize) -> String {
    let mut s = r#"t = "a""#.to_string();
    for _ in 0..n {
        s = format!("not({s})");
    }
    s
}

#[test]
fn json_forms_are_canonical() {
    let cases = [
        (
            json!({"field": "t", "op": "is_null"}),
            json!({"field": "t", "op": "is_null", "value": true}),
        ),
        (
            json!({"related": {"type": "x"}}),
            json!({"related": {"type": "x", "direction": "out"}}),
        ),
        (
            json!({"related": {"type": "x", "direction": "in", "where": null}}),
            json!({"related": {"type": "x", "direction": "in"}}),
        ),
        (json!({"not": {"and": []}}), json!({"not": {"and": []}})),
    ];
    for (input, canonical) in cases {
        let f = Filter::from_json(&input).unwrap();
        assert_eq!(f.to_json(), canonical, "{input}");
        assert_eq!(Filter::from_json(&canonical).unwrap(), f);
        let via_serde: Filter = serde_json::from_str(&serde_json::to_string(&f).unwrap()).unwrap();
        assert_eq!(via_serde, f);
    }
}
