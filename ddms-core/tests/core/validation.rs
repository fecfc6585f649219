//! Table-driven tests of record validation and of field / entity type definitions.
//!
//! Each feature has one `check_*(input, expect)` helper; `expect` is the rendered
//! outcome: `ok <json>` or the sorted `path: code` problems, one per line.

use chrono::Utc;
use ddms_core::entity_type::{EntityType, EntityTypePatch, NewEntityType};
use ddms_core::error::Error;
use ddms_core::field::{Field, FieldSpec};
use ddms_core::record::{changed_fields, validate, validate_owned, validate_patch, Data};
use serde_json::{json, Value};
use uuid::Uuid;

fn entity_type(v: Value) -> EntityType {
    let new: NewEntityType = serde_json::from_value(v).unwrap();
    let def = new.check().unwrap();
    let now = Utc::now();
    EntityType {
        id: Uuid::nil(),
        name: def.name,
        label: def.label,
        fields: def.fields,
        version: 1,
        created_at: now,
        updated_at: now,
    }
}

/// The entity type every record case is validated against.
fn record_type() -> EntityType {
    entity_type(json!({"name": "v", "fields": [
        {"name": "title", "kind": "text", "required": true, "min_length": 2, "max_length": 10, "pattern": "^[A-Z]"},
        {"name": "count", "kind": "integer", "min": 0, "max": 100},
        {"name": "big", "kind": "integer"},
        {"name": "ratio", "kind": "number", "min": 0, "max": 1},
        {"name": "flag", "kind": "boolean"},
        {"name": "day", "kind": "date"},
        {"name": "at", "kind": "datetime"},
        {"name": "ref", "kind": "uuid"},
        {"name": "mail", "kind": "email", "max_length": 30},
        {"name": "site", "kind": "url"},
        {"name": "status", "kind": "enum", "values": ["draft", "live"]},
        {"name": "meta", "kind": "json"},
        {"name": "tags", "kind": "list", "items": "text", "min_length": 1, "max_length": 3},
        {"name": "nums", "kind": "list", "items": "integer"},
        {"name": "days", "kind": "list", "items": "date"},
        {"name": "priority", "kind": "integer", "default": 3},
        {"name": "level", "kind": "enum", "values": ["a", "b"], "default": "a"}
    ]}))
}

fn render(r: Result<Value, Error>) -> String {
    match r {
        Ok(v) => format!("ok {v}"),
        Err(e) => {
            let mut lines: Vec<String> = e
                .details()
                .iter()
                .map(|d| format!("{}: {}", d.field, d.code))
                .collect();
            if lines.is_empty() {
                lines.push(format!("error {e}"));
            }
            lines.sort();
            lines.join("\n")
        }
    }
}

fn expect_eq(got: String, expect: &str, input: &dyn std::fmt::Display) {
    let want: Vec<&str> = expect.trim().lines().map(str::trim).collect();
    assert_eq!(got, want.join("\n"), "input: {input}");
}

/// Checks `validate` and, with the same expectation, `validate_owned` (which normalises
/// in place instead of copying).
fn check(data: Value, expect: &str) {
    let got = render(validate(&record_type(), &data).map(Value::Object));
    expect_eq(got, expect, &data);
    let owned = render(validate_owned(&record_type(), data.clone()).map(Value::Object));
    expect_eq(owned, expect, &data);
}

fn check_patch(current: Value, patch: Value, expect: &str) {
    let Value::Object(cur) = current else {
        panic!("current data must be an object")
    };
    let got = render(validate_patch(&record_type(), &cur, &patch).map(Value::Object));
    expect_eq(got, expect, &patch);
}

fn check_field(spec: Value, expect: &str) {
    let parsed: FieldSpec = serde_json::from_value(spec.clone()).unwrap();
    let got = match Field::from_spec_at(&parsed, "f") {
        Ok(f) => format!("ok {}", serde_json::to_value(FieldSpec::from(f)).unwrap()),
        Err(errs) => {
            let mut lines: Vec<String> = errs
                .iter()
                .map(|d| format!("{}: {}", d.field, d.code))
                .collect();
            lines.sort();
            lines.join("\n")
        }
    };
    expect_eq(got, expect, &spec);
}

fn check_type(def: Value, expect: &str) {
    let new: NewEntityType = serde_json::from_value(def.clone()).unwrap();
    let got = render(new.check().map(|d| {
        let names: Vec<&str> = d.fields.iter().map(|f| f.name.as_str()).collect();
        json!({"name": d.name, "label": d.label, "fields": names})
    }));
    expect_eq(got, expect, &def);
}

fn check_type_patch(patch: Value, expect: &str) {
    let current = entity_type(json!({"name": "doc", "label": "Doc", "fields": [
        {"name": "title", "kind": "text", "required": true},
        {"name": "n", "kind": "integer"},
        {"name": "s", "kind": "enum", "values": ["x", "y"]}
    ]}));
    let p: EntityTypePatch = serde_json::from_value(patch.clone()).unwrap();
    let got = render(p.apply(&current).map(|(d, changes)| {
        let names: Vec<&str> = d.fields.iter().map(|f| f.name.as_str()).collect();
        json!({"label": d.label, "fields": names, "changes": changes.len()})
    }));
    expect_eq(got, expect, &patch);
}

// ---------------------------------------------------------------------------------

#[test]
fn required_and_defaults() {
    check(json!({}), "title: required");
    check(json!({"title": null}), "title: required");
    check(
        json!({"title": "Ok"}),
        r#"ok {"level":"a","priority":3,"title":"Ok"}"#,
    );
    check(
        json!({"title": "Ok", "priority": null, "level": null}),
        r#"ok {"level":"a","priority":3,"title":"Ok"}"#,
    );
    check(
        json!({"title": "Ok", "priority": 9, "level": "b"}),
        r#"ok {"level":"b","priority":9,"title":"Ok"}"#,
    );
    check(
        json!({"title": "Ok", "count": null, "meta": null}),
        r#"ok {"level":"a","priority":3,"title":"Ok"}"#,
    );
}

#[test]
fn not_an_object() {
    check(json!([]), "data: not_an_object");
    check(json!("x"), "data: not_an_object");
    check(json!(null), "data: not_an_object");
    check(json!(1), "data: not_an_object");
}

#[test]
fn unknown_fields() {
    check(json!({"title": "Ok", "nope": 1}), "nope: unknown_field");
    check(json!({"title": "Ok", "id": 1}), "id: unknown_field");
    check(
        json!({"title": "Ok", "Title": "x", "created_at": 1}),
        "Title: unknown_field\ncreated_at: unknown_field",
    );
}

#[test]
fn text_rules() {
    check(json!({"title": 5}), "title: wrong_type");
    check(json!({"title": true}), "title: wrong_type");
    check(json!({"title": ["Ab"]}), "title: wrong_type");
    check(json!({"title": "A"}), "title: too_short");
    check(json!({"title": "Abcdefghijk"}), "title: too_long");
    check(json!({"title": "abc"}), "title: pattern_mismatch");
    check(
        json!({"title": "a"}),
        "title: pattern_mismatch\ntitle: too_short",
    );
    check(json!({"title": "A\u{0}b"}), "title: nul_in_text");
    // Lengths count characters, not bytes.
    check(json!({"title": "Éééééééééé"}), "title: pattern_mismatch");
    check(json!({"title": "Aéééééééééé"}), "title: too_long");
}

#[test]
fn integer_rules() {
    check(json!({"title": "Ok", "count": -1}), "count: out_of_range");
    check(json!({"title": "Ok", "count": 101}), "count: out_of_range");
    check(json!({"title": "Ok", "count": 1.5}), "count: wrong_type");
    check(json!({"title": "Ok", "count": "1"}), "count: wrong_type");
    check(json!({"title": "Ok", "count": true}), "count: wrong_type");
    check(
        json!({"title": "Ok", "big": 9_223_372_036_854_775_808u64}),
        "big: integer_overflow",
    );
    check(json!({"title": "Ok", "big": 1e19}), "big: integer_overflow");
    check(
        json!({"title": "Ok", "big": -1e19}),
        "big: integer_overflow",
    );
    check(
        serde_json::from_str(r#"{"title": "Ok", "big": -9223372036854775809}"#).unwrap(),
        "big: integer_overflow",
    );
    check(
        serde_json::from_str(r#"{"title": "Ok", "big": 18446744073709551616}"#).unwrap(),
        "big: integer_overflow",
    );
    check(
        json!({"title": "Ok", "big": i64::MAX, "count": 0}),
        r#"ok {"big":9223372036854775807,"count":0,"level":"a","priority":3,"title":"Ok"}"#,
    );
    check(
        json!({"title": "Ok", "big": i64::MIN}),
        r#"ok {"big":-9223372036854775808,"level":"a","priority":3,"title":"Ok"}"#,
    );
    check(
        json!({"title": "Ok", "count": 5.0, "nums": [1.0, -2]}),
        r#"ok {"count":5,"level":"a","nums":[1,-2],"priority":3,"title":"Ok"}"#,
    );
    check(
        json!({"title": "Ok", "nums": [-2, 7, 1.0, 4]}),
        r#"ok {"level":"a","nums":[-2,7,1,4],"priority":3,"title":"Ok"}"#,
    );
    check(
        json!({"title": "Ok", "count": null, "flag": null}),
        r#"ok {"level":"a","priority":3,"title":"Ok"}"#,
    );
}

#[test]
fn number_and_boolean_rules() {
    check(json!({"title": "Ok", "ratio": 1.5}), "ratio: out_of_range");
    check(json!({"title": "Ok", "ratio": -0.1}), "ratio: out_of_range");
    check(json!({"title": "Ok", "ratio": "0.5"}), "ratio: wrong_type");
    check(
        json!({"title": "Ok", "ratio": 1, "flag": false}),
        r#"ok {"flag":false,"level":"a","priority":3,"ratio":1,"title":"Ok"}"#,
    );
    check(json!({"title": "Ok", "flag": "true"}), "flag: wrong_type");
    check(json!({"title": "Ok", "flag": 0}), "flag: wrong_type");
}

#[test]
fn date_and_datetime_rules() {
    check(
        json!({"title": "Ok", "day": "2024-02-30"}),
        "day: invalid_date",
    );
    check(
        json!({"title": "Ok", "day": "2023-02-29"}),
        "day: invalid_date",
    );
    check(
        json!({"title": "Ok", "day": "2024-2-3"}),
        "day: invalid_date",
    );
    check(
        json!({"title": "Ok", "day": "2024-01-01T00:00:00Z"}),
        "day: invalid_date",
    );
    check(json!({"title": "Ok", "day": 20240101}), "day: wrong_type");
    check(
        json!({"title": "Ok", "day": "2024-02-29"}),
        r#"ok {"day":"2024-02-29","level":"a","priority":3,"title":"Ok"}"#,
    );
    check(
        json!({"title": "Ok", "at": "2024-01-01"}),
        "at: invalid_datetime",
    );
    check(
        json!({"title": "Ok", "at": "2024-01-01T10:00:00"}),
        "at: invalid_datetime",
    );
    // RFC 3339 allows a space for the `T`.
    check(
        json!({"title": "Ok", "at": "2024-01-01 10:00:00Z"}),
        r#"ok {"at":"2024-01-01 10:00:00Z","level":"a","priority":3,"title":"Ok"}"#,
    );
    check(
        json!({"title": "Ok", "at": "10000-01-01T10:00:00Z"}),
        "at: invalid_datetime",
    );
    check(
        json!({"title": "Ok", "at": "2024-13-01T10:00:00Z"}),
        "at: invalid_datetime",
    );
    check(
        json!({"title": "Ok", "at": 1_700_000_000}),
        "at: wrong_type",
    );
    check(
        json!({"title": "Ok", "at": "2024-01-01T10:00:00.123+05:30"}),
        r#"ok {"at":"2024-01-01T10:00:00.123+05:30","level":"a","priority":3,"title":"Ok"}"#,
    );
    check(
        json!({"title": "Ok", "days": ["2024-01-01", "2024-02-31"]}),
        "days[1]: invalid_date",
    );
    // What PostgreSQL's date and timestamptz input refuse is refused here too, so that
    // every stored value can be cast and indexed: year 0000 as written, offsets beyond
    // ±15:59, a leap second with a fraction (rounded to microseconds).
    check(
        json!({"title": "Ok", "day": "0000-12-31"}),
        "day: invalid_date",
    );
    check(
        json!({"title": "Ok", "day": "0001-01-01"}),
        r#"ok {"day":"0001-01-01","level":"a","priority":3,"title":"Ok"}"#,
    );
    for bad in [
        "0000-06-01T00:00:00Z",
        "2024-01-01T10:00:00+16:00",
        "2024-01-01T10:00:00-23:59",
        "2016-12-31T23:59:60.5Z",
    ] {
        check(json!({"title": "Ok", "at": bad}), "at: invalid_datetime");
    }
    for good in [
        "0001-01-01T00:00:00+01:00",
        "2024-01-01T10:00:00-15:59",
        "2016-12-31T23:59:60Z",
        "2016-12-31T23:59:60.0000004Z",
    ] {
        check(
            json!({"title": "Ok", "at": good}),
            &format!(r#"ok {{"at":"{good}","level":"a","priority":3,"title":"Ok"}}"#),
        );
    }
}

#[test]
fn uuid_email_url_rules() {
    check(json!({"title": "Ok", "ref": "nope"}), "ref: invalid_uuid");
    check(json!({"title": "Ok", "ref": 42}), "ref: wrong_type");
    check(
        json!({"title": "Ok", "ref": "550E8400-E29B-41D4-A716-446655440000"}),
        r#"ok {"level":"a","priority":3,"ref":"550e8400-e29b-41d4-a716-446655440000","title":"Ok"}"#,
    );
    check(
        json!({"title": "Ok", "mail": "nope"}),
        "mail: invalid_email",
    );
    check(json!({"title": "Ok", "mail": "a@b"}), "mail: invalid_email");
    check(
        json!({"title": "Ok", "mail": "a b@c.de"}),
        "mail: invalid_email",
    );
    check(
        json!({"title": "Ok", "mail": "a@@c.de"}),
        "mail: invalid_email",
    );
    check(
        json!({"title": "Ok", "mail": "a@c..de"}),
        "mail: invalid_email",
    );
    check(
        json!({"title": "Ok", "mail": "a-very-long-name@example.com"}),
        r#"ok {"level":"a","mail":"a-very-long-name@example.com","priority":3,"title":"Ok"}"#,
    );
    check(
        json!({"title": "Ok", "mail": "a-very-long-name@example-domain.com"}),
        "mail: too_long",
    );
    check(
        json!({"title": "Ok", "mail": "a\u{0}@b.cd"}),
        "mail: nul_in_text",
    );
    check(json!({"title": "Ok", "site": "nope"}), "site: invalid_url");
    check(
        json!({"title": "Ok", "site": "/relative"}),
        "site: invalid_url",
    );
    check(
        json!({"title": "Ok", "site": "http://"}),
        "site: invalid_url",
    );
    check(
        json!({"title": "Ok", "site": "mailto:a@b.cd"}),
        r#"ok {"level":"a","priority":3,"site":"mailto:a@b.cd","title":"Ok"}"#,
    );
}

#[test]
fn enum_json_list_rules() {
    check(
        json!({"title": "Ok", "status": "gone"}),
        "status: not_in_enum",
    );
    check(
        json!({"title": "Ok", "status": "Draft"}),
        "status: not_in_enum",
    );
    check(json!({"title": "Ok", "status": 1}), "status: wrong_type");
    check(
        json!({"title": "Ok", "meta": {"a": "\u{0}"}}),
        "meta: nul_in_text",
    );
    check(
        json!({"title": "Ok", "meta": {"a\u{0}": 1}}),
        "meta: nul_in_text",
    );
    check(
        json!({"title": "Ok", "meta": [1, {"x": null}]}),
        r#"ok {"level":"a","meta":[1,{"x":null}],"priority":3,"title":"Ok"}"#,
    );
    check(json!({"title": "Ok", "tags": []}), "tags: too_short");
    check(
        json!({"title": "Ok", "tags": ["a", "b", "c", "d"]}),
        "tags: too_long",
    );
    check(json!({"title": "Ok", "tags": "a"}), "tags: wrong_type");
    check(
        json!({"title": "Ok", "tags": ["a", 1]}),
        "tags[1]: wrong_type",
    );
    check(
        json!({"title": "Ok", "tags": [null]}),
        "tags[0]: wrong_type",
    );
    check(
        json!({"title": "Ok", "tags": ["\u{0}"]}),
        "tags[0]: nul_in_text",
    );
    check(
        json!({"title": "Ok", "nums": [1, 2.5]}),
        "nums[1]: wrong_type",
    );
    check(
        json!({"title": "Ok", "nums": [1e20]}),
        "nums[0]: integer_overflow",
    );
    check(
        json!({"title": "Ok", "tags": [], "nums": ["x", "y"]}),
        "nums[0]: wrong_type\nnums[1]: wrong_type\ntags: too_short",
    );
}

#[test]
fn every_problem_at_once() {
    check(
        json!({"title": 1, "count": -1, "nope": true, "day": "x", "tags": [], "status": "x",
               "ref": "r", "ratio": 2}),
        "
        count: out_of_range
        day: invalid_date
        nope: unknown_field
        ratio: out_of_range
        ref: invalid_uuid
        status: not_in_enum
        tags: too_short
        title: wrong_type
        ",
    );
}

#[test]
fn patches_merge_then_validate() {
    let cur = json!({"title": "Ok", "count": 1, "level": "a", "priority": 3});
    check_patch(
        cur.clone(),
        json!({"count": 2}),
        r#"ok {"count":2,"level":"a","priority":3,"title":"Ok"}"#,
    );
    check_patch(
        cur.clone(),
        json!({"count": null}),
        r#"ok {"level":"a","priority":3,"title":"Ok"}"#,
    );
    check_patch(
        cur.clone(),
        json!({"priority": null, "level": "b"}),
        r#"ok {"count":1,"level":"b","priority":3,"title":"Ok"}"#,
    );
    check_patch(cur.clone(), json!({"title": null}), "title: required");
    check_patch(
        cur.clone(),
        json!({"count": 500, "x": 1}),
        "count: out_of_range\nx: unknown_field",
    );
    check_patch(cur.clone(), json!([1]), "data: not_an_object");
    check_patch(
        cur,
        json!({}),
        r#"ok {"count":1,"level":"a","priority":3,"title":"Ok"}"#,
    );
}

#[test]
fn changed_fields_are_sorted_and_complete() {
    let d = |v: Value| -> Data {
        match v {
            Value::Object(m) => m,
            _ => unreachable!(),
        }
    };
    let cases = [
        (json!({"a": 1}), json!({"a": 1}), vec![]),
        (json!({"a": 1}), json!({"a": 2}), vec!["a"]),
        (
            json!({"a": 1, "b": 2}),
            json!({"c": 3, "b": 2}),
            vec!["a", "c"],
        ),
        (json!({}), json!({"z": 1, "y": 2}), vec!["y", "z"]),
    ];
    for (old, new, want) in cases {
        assert_eq!(
            changed_fields(&d(old.clone()), &d(new.clone())),
            want,
            "{old} -> {new}"
        );
    }
}

// ---------------------------------------------------------------------------------
// Field definitions
// ---------------------------------------------------------------------------------

#[test]
fn field_definitions() {
    check_field(
        json!({"name": "t", "kind": "text", "max_length": 5, "pattern": "^a"}),
        r#"ok {"indexed":false,"kind":"text","max_length":5,"name":"t","pattern":"^a","required":false,"unique":false}"#,
    );
    check_field(
        json!({"name": "s", "kind": "enum", "values": ["x"], "default": "x"}),
        r#"ok {"default":"x","indexed":false,"kind":"enum","name":"s","required":false,"unique":false,"values":["x"]}"#,
    );
    check_field(
        json!({"name": "u", "kind": "uuid", "default": "550E8400-E29B-41D4-A716-446655440000"}),
        r#"ok {"default":"550e8400-e29b-41d4-a716-446655440000","indexed":false,"kind":"uuid","name":"u","required":false,"unique":false}"#,
    );
    check_field(
        json!({"name": "l", "kind": "list", "items": "date", "max_length": 2}),
        r#"ok {"indexed":false,"items":"date","kind":"list","max_length":2,"name":"l","required":false,"unique":false}"#,
    );
    check_field(json!({"name": "x", "kind": "nope"}), "f.kind: invalid_kind");
    check_field(
        json!({"name": "id", "kind": "text"}),
        "f.name: invalid_name",
    );
    check_field(
        json!({"name": "updated_at", "kind": "text"}),
        "f.name: invalid_name",
    );
    check_field(json!({"name": "A", "kind": "text"}), "f.name: invalid_name");
    check_field(
        json!({"name": "", "kind": "wat"}),
        "f.kind: invalid_kind\nf.name: invalid_name",
    );
    check_field(
        json!({"name": "s", "kind": "enum"}),
        "f.values: missing_values",
    );
    check_field(
        json!({"name": "s", "kind": "enum", "values": []}),
        "f.values: missing_values",
    );
    check_field(
        json!({"name": "s", "kind": "enum", "values": ["a", "", "a"]}),
        "f.values[1]: invalid_enum_value\nf.values[2]: duplicate_enum_value",
    );
    check_field(
        json!({"name": "l", "kind": "list"}),
        "f.items: invalid_items",
    );
    check_field(
        json!({"name": "l", "kind": "list", "items": "list"}),
        "f.items: invalid_items",
    );
    check_field(
        json!({"name": "x", "kind": "text", "items": "text"}),
        "f.items: not_applicable",
    );
    check_field(
        json!({"name": "x", "kind": "text", "values": ["a"]}),
        "f.values: not_applicable",
    );
    check_field(
        json!({"name": "x", "kind": "text", "min": 1}),
        "f.min: not_applicable",
    );
    check_field(
        json!({"name": "x", "kind": "boolean", "max_length": 1}),
        "f.max_length: not_applicable",
    );
    check_field(
        json!({"name": "x", "kind": "date", "pattern": "a"}),
        "f.pattern: not_applicable",
    );
    check_field(
        json!({"name": "x", "kind": "text", "pattern": "("}),
        "f.pattern: invalid_pattern",
    );
    check_field(
        json!({"name": "x", "kind": "text", "pattern": "a".repeat(600)}),
        "f.pattern: invalid_pattern",
    );
    check_field(
        json!({"name": "x", "kind": "number", "min": 2, "max": 1}),
        "f.min: invalid_bound",
    );
    check_field(
        json!({"name": "x", "kind": "text", "min_length": 3, "max_length": 2}),
        "f.min_length: invalid_bound",
    );
    check_field(
        json!({"name": "j", "kind": "json", "indexed": true}),
        "f.indexed: not_indexable",
    );
    check_field(
        json!({"name": "j", "kind": "json", "unique": true}),
        "f.unique: not_indexable",
    );
    check_field(
        json!({"name": "x", "kind": "integer", "default": "1"}),
        "f.default: wrong_type",
    );
    check_field(
        json!({"name": "x", "kind": "integer", "min": 5, "default": 1}),
        "f.default: out_of_range",
    );
    check_field(
        json!({"name": "x", "kind": "enum", "values": ["a"], "default": "b"}),
        "f.default: not_in_enum",
    );
    check_field(
        json!({"name": "x", "kind": "text", "unique": true, "default": "a"}),
        "f.default: not_applicable",
    );
    check_field(
        json!({"name": "x", "kind": "text", "label": "l".repeat(201)}),
        "f.label: invalid_label",
    );
}

#[test]
fn entity_type_definitions() {
    check_type(
        json!({"name": "project", "fields": [{"name": "a", "kind": "text"}, {"name": "b", "kind": "json"}]}),
        r#"ok {"fields":["a","b"],"label":"project","name":"project"}"#,
    );
    check_type(
        json!({"name": "p", "label": "Projects"}),
        r#"ok {"fields":[],"label":"Projects","name":"p"}"#,
    );
    check_type(json!({"name": "Project"}), "name: invalid_name");
    check_type(json!({"name": "a-b"}), "name: invalid_name");
    check_type(json!({"name": "x".repeat(64)}), "name: invalid_name");
    check_type(
        json!({"name": "ok", "label": "a\u{0}"}),
        "label: invalid_label",
    );
    check_type(
        json!({"name": "ok", "fields": [{"name": "a", "kind": "text"}, {"name": "a", "kind": "text"}]}),
        "fields[1].name: duplicate_field",
    );
    let many: Vec<Value> = (0..201)
        .map(|i| json!({"name": format!("f{i}"), "kind": "text"}))
        .collect();
    check_type(
        json!({"name": "ok", "fields": many}),
        "fields: too_many_fields",
    );
    check_type(
        json!({"name": "Bad", "fields": [
            {"name": "1x", "kind": "text"},
            {"name": "y", "kind": "wat"},
            {"name": "z", "kind": "integer", "min": 3, "max": 1}
        ]}),
        "
        fields[0].name: invalid_name
        fields[1].kind: invalid_kind
        fields[2].min: invalid_bound
        name: invalid_name
        ",
    );
}

#[test]
fn entity_type_patches() {
    check_type_patch(
        json!({"label": "Document", "add_fields": [{"name": "body", "kind": "text"}]}),
        r#"ok {"changes":1,"fields":["title","n","s","body"],"label":"Document"}"#,
    );
    check_type_patch(
        json!({"remove_fields": ["n"], "update_fields": [{"name": "s", "kind": "enum", "values": ["x", "y", "z"]}]}),
        r#"ok {"changes":2,"fields":["title","s"],"label":"Doc"}"#,
    );
    check_type_patch(
        json!({"update_fields": [{"name": "title", "kind": "text", "required": true}]}),
        r#"ok {"changes":0,"fields":["title","n","s"],"label":"Doc"}"#,
    );
    check_type_patch(
        json!({"remove_fields": ["n"], "add_fields": [{"name": "n", "kind": "text"}]}),
        r#"ok {"changes":2,"fields":["title","s","n"],"label":"Doc"}"#,
    );
    check_type_patch(
        json!({"update_fields": [{"name": "n", "kind": "number"}]}),
        "update_fields[0].kind: kind_change",
    );
    check_type_patch(
        json!({"update_fields": [{"name": "s", "kind": "text"}]}),
        "update_fields[0].kind: kind_change",
    );
    check_type_patch(
        json!({"update_fields": [{"name": "nope", "kind": "text"}]}),
        "update_fields[0].name: unknown_field",
    );
    check_type_patch(
        json!({"remove_fields": ["x", "n"]}),
        "remove_fields[0]: unknown_field",
    );
    check_type_patch(
        json!({"add_fields": [{"name": "title", "kind": "text"}]}),
        "fields[3].name: duplicate_field",
    );
    check_type_patch(
        json!({"label": "x".repeat(201), "add_fields": [{"name": "created_at", "kind": "text"}]}),
        "add_fields[0].name: invalid_name\nlabel: invalid_label",
    );
}
