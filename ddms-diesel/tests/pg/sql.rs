//! The SQL compiler: tables of filter -> SQL text + binds for every operator and kind
//! (binds only: no value and no field name ever appears in the text), and hostile
//! inputs run for real against PostgreSQL.

use std::sync::Arc;

use chrono::{NaiveDate, TimeZone, Utc};
use ddms_core::filter::{check, SchemaLookup};
use ddms_core::{EntityType, Error, Filter, Name, NewEntityType, Query, RelationType};
use ddms_diesel::sql::{prefix_upper_bound, Bind, Compiler, IndexLookup, NoIndexes};
use serde_json::json;
use uuid::Uuid;

use crate::common::tenant;

const T: Uuid = Uuid::from_u128(1);
const TY: Uuid = Uuid::from_u128(2);
const FIELD: Uuid = Uuid::from_u128(3);

fn entity() -> EntityType {
    let def: NewEntityType = serde_json::from_value(json!({
        "name": "thing",
        "fields": [
            {"name": "title", "kind": "text"}, {"name": "n", "kind": "integer"}, {"name": "x", "kind": "number"},
            {"name": "ok", "kind": "boolean"}, {"name": "d", "kind": "date"}, {"name": "at", "kind": "datetime"},
            {"name": "u", "kind": "uuid"}, {"name": "mail", "kind": "email"}, {"name": "link", "kind": "url"},
            {"name": "st", "kind": "enum", "values": ["a", "b"]}, {"name": "meta", "kind": "json"},
            {"name": "tags", "kind": "list", "items": "text"}, {"name": "nums", "kind": "list", "items": "integer"},
            {"name": "code", "kind": "text", "indexed": true}
        ]
    }))
    .unwrap();
    let def = def.check().unwrap();
    EntityType {
        id: TY,
        name: def.name,
        label: def.label,
        fields: def.fields,
        version: 1,
        created_at: Utc::now(),
        updated_at: Utc::now(),
    }
}

struct NoSchema;
impl SchemaLookup for NoSchema {
    fn relation_type(&self, name: &Name) -> ddms_core::Result<RelationType> {
        if name.as_str() != "owns" {
            return Err(Error::not_found("relation type", name));
        }
        Ok(RelationType {
            id: Uuid::nil(),
            name: name.clone(),
            source: Name::parse("thing").unwrap(),
            target: Name::parse("thing").unwrap(),
            cardinality: ddms_core::Cardinality::ManyToMany,
            on_delete: ddms_core::OnDelete::Cascade,
            created_at: Utc::now(),
        })
    }
    fn entity_type(&self, _: &Name) -> ddms_core::Result<Arc<EntityType>> {
        Ok(Arc::new(entity()))
    }
}

/// `code` has a ready index.
struct CodeIndexed;
impl IndexLookup for CodeIndexed {
    fn ready_index(&self, _: Uuid, field: &str) -> Option<Uuid> {
        (field == "code").then_some(FIELD)
    }
}

fn check_sql(indexes: &dyn IndexLookup, filter: serde_json::Value, text: &str, binds: &[Bind]) {
    let f = Filter::from_json(&filter).unwrap();
    let checked = check(&entity(), &f, &NoSchema).unwrap();
    let mut c = Compiler::new(T, indexes);
    let got = c.filter(&checked, "r", TY, false);
    assert_eq!(got, text, "SQL for {filter}");
    assert_eq!(&c.sql.binds[0], &Bind::Uuid(T));
    assert_eq!(&c.sql.binds[1..], binds, "binds for {filter}");
    // Values never appear in the text (short strings such as the field name `n` occur
    // in keywords, so only longer ones are checked).
    for b in binds {
        if let Bind::Text(s) = b {
            if s.chars().count() >= 4 {
                assert!(!got.contains(s.as_str()), "value {s:?} spliced into {got}");
            }
        }
    }
}

fn txt(s: &str) -> Bind {
    Bind::Text(s.into())
}

#[test]
fn every_operator_on_every_kind_compiles_to_binds() {
    let ni = &NoIndexes;
    let j = |e: &str| format!("COALESCE({e}, false)");
    let cases: Vec<(serde_json::Value, String, Vec<Bind>)> = vec![
        (json!({"field":"title","op":"eq","value":"a'b"}), j(r#"((r.data->>$2) COLLATE "C") = $3"#), vec![txt("title"), txt("a'b")]),
        (json!({"field":"title","op":"ne","value":"x"}), j(r#"((r.data->>$2) COLLATE "C") <> $3"#), vec![txt("title"), txt("x")]),
        (json!({"field":"title","op":"lt","value":"x"}), j(r#"((r.data->>$2) COLLATE "C") < $3"#), vec![txt("title"), txt("x")]),
        (json!({"field":"title","op":"lte","value":"x"}), j(r#"((r.data->>$2) COLLATE "C") <= $3"#), vec![txt("title"), txt("x")]),
        (json!({"field":"title","op":"gt","value":"x"}), j(r#"((r.data->>$2) COLLATE "C") > $3"#), vec![txt("title"), txt("x")]),
        (json!({"field":"title","op":"gte","value":"x"}), j(r#"((r.data->>$2) COLLATE "C") >= $3"#), vec![txt("title"), txt("x")]),
        (json!({"field":"title","op":"in","value":["a","b"]}), j(r#"((r.data->>$2) COLLATE "C") = ANY($3)"#), vec![txt("title"), Bind::TextArr(vec!["a".into(), "b".into()])]),
        (json!({"field":"title","op":"not_in","value":["a"]}), j(r#"((r.data->>$2) COLLATE "C") <> ALL($3)"#), vec![txt("title"), Bind::TextArr(vec!["a".into()])]),
        (json!({"field":"title","op":"contains","value":"%_"}), "COALESCE(strpos(r.data->>$2, $3) > 0, false)".into(), vec![txt("title"), txt("%_")]),
        (json!({"field":"title","op":"starts_with","value":"ab"}), "COALESCE(starts_with(r.data->>$2, $3), false)".into(), vec![txt("title"), txt("ab")]),
        (json!({"field":"title","op":"ends_with","value":"é!"}), "COALESCE(right(r.data->>$2, $4) = $3, false)".into(), vec![txt("title"), txt("é!"), Bind::Int4(2)]),
        (json!({"field":"title","op":"is_null","value":true}), "(r.data->$2 IS NULL)".into(), vec![txt("title")]),
        (json!({"field":"title","op":"exists","value":true}), "(r.data->$2 IS NOT NULL)".into(), vec![txt("title")]),
        (json!({"field":"title","op":"exists","value":false}), "(r.data->$2 IS NULL)".into(), vec![txt("title")]),
        (json!({"field":"n","op":"gt","value":5}), j("((r.data->>$2)::bigint) > $3"), vec![txt("n"), Bind::Int(5)]),
        (json!({"field":"n","op":"in","value":[1,2]}), j("((r.data->>$2)::bigint) = ANY($3)"), vec![txt("n"), Bind::IntArr(vec![1, 2])]),
        (json!({"field":"x","op":"lte","value":1.5}), j("((r.data->>$2)::float8) <= $3"), vec![txt("x"), Bind::Float(1.5)]),
        (json!({"field":"x","op":"eq","value":2}), j("((r.data->>$2)::float8) = $3"), vec![txt("x"), Bind::Float(2.0)]),
        (json!({"field":"ok","op":"eq","value":true}), j("((r.data->>$2)::boolean) = $3"), vec![txt("ok"), Bind::Bool(true)]),
        (json!({"field":"ok","op":"ne","value":false}), j("((r.data->>$2)::boolean) <> $3"), vec![txt("ok"), Bind::Bool(false)]),
        (json!({"field":"d","op":"gte","value":"2024-02-29"}), j("((r.data->>$2)::date) >= $3"), vec![txt("d"), Bind::Date(NaiveDate::from_ymd_opt(2024, 2, 29).unwrap())]),
        (json!({"field":"at","op":"lt","value":"2024-01-01T01:00:00+01:00"}), j("((r.data->>$2)::timestamptz) < $3"), vec![txt("at"), Bind::Ts(Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).unwrap())]),
        (json!({"field":"u","op":"eq","value":"00000000-0000-0000-0000-000000000005"}), j("((r.data->>$2)::uuid) = $3"), vec![txt("u"), Bind::Uuid(Uuid::from_u128(5))]),
        (json!({"field":"mail","op":"ends_with","value":"@x.io"}), "COALESCE(right(r.data->>$2, $4) = $3, false)".into(), vec![txt("mail"), txt("@x.io"), Bind::Int4(5)]),
        (json!({"field":"link","op":"starts_with","value":"https:"}), "COALESCE(starts_with(r.data->>$2, $3), false)".into(), vec![txt("link"), txt("https:")]),
        (json!({"field":"st","op":"in","value":["a"]}), j(r#"((r.data->>$2) COLLATE "C") = ANY($3)"#), vec![txt("st"), Bind::TextArr(vec!["a".into()])]),
        (json!({"field":"meta","op":"eq","value":{"a":[1]}}), "COALESCE(r.data->$2 = $3, false)".into(), vec![txt("meta"), Bind::Json(json!({"a":[1]}))]),
        (json!({"field":"meta","op":"ne","value":1}), "COALESCE(r.data->$2 <> $3, false)".into(), vec![txt("meta"), Bind::Json(json!(1))]),
        (json!({"field":"tags","op":"contains","value":"x"}), r#"EXISTS (SELECT 1 FROM jsonb_array_elements_text(CASE WHEN jsonb_typeof(r.data->$2) = 'array' THEN r.data->$2 END) AS e(v) WHERE (e.v COLLATE "C") = $3)"#.into(), vec![txt("tags"), txt("x")]),
        (json!({"field":"nums","op":"contains","value":3}), "EXISTS (SELECT 1 FROM jsonb_array_elements_text(CASE WHEN jsonb_typeof(r.data->$2) = 'array' THEN r.data->$2 END) AS e(v) WHERE (e.v)::bigint = $3)".into(), vec![txt("nums"), Bind::Int(3)]),
        (json!({"field":"id","op":"eq","value":"00000000-0000-0000-0000-000000000009"}), "(r.id = $2)".into(), vec![Bind::Uuid(Uuid::from_u128(9))]),
        (json!({"field":"id","op":"in","value":["00000000-0000-0000-0000-000000000009"]}), "(r.id = ANY($2))".into(), vec![Bind::UuidArr(vec![Uuid::from_u128(9)])]),
        (json!({"field":"created_at","op":"gt","value":"2024-01-01T00:00:00Z"}), "(r.created_at > $2)".into(), vec![Bind::Ts(Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).unwrap())]),
        (json!({"field":"updated_at","op":"lte","value":"2024-01-01T00:00:00Z"}), "(r.updated_at <= $2)".into(), vec![Bind::Ts(Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).unwrap())]),
        (json!({"and":[]}), "TRUE".into(), vec![]),
        (json!({"or":[]}), "FALSE".into(), vec![]),
        (json!({"not":{"field":"n","op":"eq","value":1}}), format!("(NOT {})", j("((r.data->>$2)::bigint) = $3")), vec![txt("n"), Bind::Int(1)]),
        (
            json!({"or":[{"field":"n","op":"eq","value":1},{"and":[{"field":"ok","op":"eq","value":true},{"field":"title","op":"is_null"}]}]}),
            format!("({} OR ({} AND (r.data->$6 IS NULL)))", j("((r.data->>$2)::bigint) = $3"), j("((r.data->>$4)::boolean) = $5")),
            vec![txt("n"), Bind::Int(1), txt("ok"), Bind::Bool(true), txt("title")],
        ),
        (
            json!({"related":{"type":"owns","where":{"field":"n","op":"eq","value":1}}}),
            format!("EXISTS (SELECT 1 FROM relations e1 JOIN records o1 ON o1.tenant_id = e1.tenant_id AND o1.id = e1.target_id WHERE e1.tenant_id = $1 AND e1.source_id = r.id AND e1.relation_type_id = (SELECT rt.id FROM relation_types rt WHERE rt.tenant_id = $1 AND rt.name = $2) AND {})", j("((o1.data->>$3)::bigint) = $4")),
            vec![txt("owns"), txt("n"), Bind::Int(1)],
        ),
        (
            json!({"related":{"type":"owns","direction":"in"}}),
            "EXISTS (SELECT 1 FROM relations e1 JOIN records o1 ON o1.tenant_id = e1.tenant_id AND o1.id = e1.source_id WHERE e1.tenant_id = $1 AND e1.target_id = r.id AND e1.relation_type_id = (SELECT rt.id FROM relation_types rt WHERE rt.tenant_id = $1 AND rt.name = $2) AND TRUE)".into(),
            vec![txt("owns")],
        ),
    ];
    assert!(cases.len() >= 40);
    for (f, text, binds) in cases {
        check_sql(ni, f, &text, &binds);
    }
}

#[test]
fn indexed_fields_compile_to_field_value_lookups() {
    let idx = &CodeIndexed;
    let sub = |c: &str| {
        format!("r.id IN (SELECT x.record_id FROM fv_text x WHERE x.tenant_id = $1 AND x.field_id = $2 AND {c})")
    };
    let f = Bind::Uuid(FIELD);
    check_sql(
        idx,
        json!({"field":"code","op":"eq","value":"k"}),
        &sub("x.v = $3"),
        &[f.clone(), txt("k")],
    );
    check_sql(
        idx,
        json!({"field":"code","op":"gte","value":"k"}),
        &sub("x.v >= $3"),
        &[f.clone(), txt("k")],
    );
    check_sql(
        idx,
        json!({"field":"code","op":"in","value":["k"]}),
        &sub("x.v = ANY($3)"),
        &[f.clone(), Bind::TextArr(vec!["k".into()])],
    );
    check_sql(
        idx,
        json!({"field":"code","op":"starts_with","value":"ab"}),
        &sub("x.v >= $3 AND x.v < $4"),
        &[f.clone(), txt("ab"), txt("ac")],
    );
    // contains/ends_with cannot use a B-tree: JSONB path.
    check_sql(
        idx,
        json!({"field":"code","op":"contains","value":"b"}),
        "COALESCE(strpos(r.data->>$2, $3) > 0, false)",
        &[txt("code"), txt("b")],
    );
    assert_eq!(prefix_upper_bound("a"), Some("b".into()));
    assert_eq!(prefix_upper_bound("a\u{10FFFF}"), Some("b".into()));
    assert_eq!(prefix_upper_bound("\u{D7FF}"), Some("\u{E000}".into()));
    assert_eq!(prefix_upper_bound("\u{10FFFF}"), None);
}

const HOSTILE: [&str; 12] = [
    "'; DROP TABLE records; --",
    "\" OR 1=1 --",
    "a'b''c",
    "back\\slash\\",
    "semi;colon",
    "$1",
    "%_*?",
    "ünï©ødé 😀",
    "\u{202E}rtl",
    "line\nbreak\ttab",
    "COLLATE \"C\")",
    "x",
];

#[test]
fn hostile_values_are_only_ever_data() {
    let t = tenant("hostile");
    t.create_entity_type(
        &serde_json::from_value(json!({"name": "doc", "fields": [
            {"name": "name", "kind": "text", "indexed": true}, {"name": "note", "kind": "text"}
        ]}))
        .unwrap(),
    )
    .unwrap();
    let docs = t.records("doc").unwrap();
    let long = "ab'c".repeat(1000);
    let mut values: Vec<String> = HOSTILE.iter().map(|s| s.to_string()).collect();
    values.push(long.clone());
    for v in &values {
        docs.create(&json!({"name": v, "note": v})).unwrap();
    }
    let q = |f: serde_json::Value| -> Vec<String> {
        let q: Query = serde_json::from_value(json!({"filter": f, "limit": 1000})).unwrap();
        let mut out: Vec<String> = docs
            .query(&q)
            .unwrap()
            .items
            .iter()
            .map(|r| r.data["name"].as_str().unwrap().to_string())
            .collect();
        out.sort();
        out
    };
    for v in &values {
        for field in ["name", "note"] {
            assert_eq!(
                q(json!({"field": field, "op": "eq", "value": v})),
                vec![v.clone()],
                "eq {field} {v:?}"
            );
            assert_eq!(
                q(json!({"field": field, "op": "in", "value": [v]})),
                vec![v.clone()]
            );
            let mut expect: Vec<String> = values
                .iter()
                .filter(|w| w.starts_with(v.as_str()))
                .cloned()
                .collect();
            expect.sort();
            assert_eq!(
                q(json!({"field": field, "op": "starts_with", "value": v})),
                expect,
                "starts_with {field} {v:?}"
            );
            let mut expect: Vec<String> = values
                .iter()
                .filter(|w| w.contains(v.as_str()))
                .cloned()
                .collect();
            expect.sort();
            assert_eq!(
                q(json!({"field": field, "op": "contains", "value": v})),
                expect,
                "contains {field} {v:?}"
            );
            let mut expect: Vec<String> = values
                .iter()
                .filter(|w| w.ends_with(v.as_str()))
                .cloned()
                .collect();
            expect.sort();
            assert_eq!(
                q(json!({"field": field, "op": "ends_with", "value": v})),
                expect,
                "ends_with {field} {v:?}"
            );
        }
    }
    assert!(q(json!({"field": "name", "op": "eq", "value": "' OR ''='"})).is_empty());
    // Hostile field names never reach SQL: the checker rejects them.
    for name in HOSTILE.iter().copied().filter(|n| Name::parse(n).is_err()) {
        let f: Query =
            serde_json::from_value(json!({"filter": {"field": name, "op": "eq", "value": 1}}))
                .unwrap();
        assert!(
            matches!(docs.query(&f), Err(Error::InvalidFilter { .. })),
            "{name}"
        );
        let s: Query = serde_json::from_value(json!({"sort": [{"field": name}]})).unwrap();
        assert!(
            matches!(docs.query(&s), Err(Error::InvalidQuery { .. })),
            "{name}"
        );
        let bad = serde_json::from_value::<NewEntityType>(
            json!({"name": "x", "fields": [{"name": name, "kind": "text"}]}),
        )
        .unwrap();
        assert!(
            matches!(t.create_entity_type(&bad), Err(Error::Validation(_))),
            "{name}"
        );
        assert!(
            matches!(docs.create(&json!({ name: 1 })), Err(Error::Validation(_))),
            "{name}"
        );
    }
    // Operands beyond the bound are refused before any SQL.
    let huge: Query = serde_json::from_value(
        json!({"filter": {"field": "name", "op": "eq", "value": "x".repeat(5000)}}),
    )
    .unwrap();
    assert!(matches!(
        docs.query(&huge),
        Err(Error::InvalidFilter { .. })
    ));
    assert_eq!(
        docs.query(&Query::default()).unwrap().items.len(),
        values.len()
    );
}
