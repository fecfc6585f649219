//! Property tests: filter JSON round trips; the in-memory backend against an
//! independent reference evaluator; keyset pagination over random data.
#![cfg(feature = "memory")]

use std::cmp::Ordering;
use std::collections::BTreeSet;

use ddms_core::memory::MemoryBackend;
use ddms_core::relation::Direction;
use ddms_core::{Filter, NewEntityType, Op, Query, Record, Records, Role, Scope, SortKey, Store};
use proptest::prelude::*;
use serde_json::{json, Map, Value};
use uuid::Uuid;

// ---------------------------------------------------------------------------------
// (a) Filter ASTs round-trip through JSON.
// ---------------------------------------------------------------------------------

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        (-1e12f64..1e12).prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        "\\PC{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(2, 12, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-z]{1,4}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn arb_op() -> impl Strategy<Value = Op> {
    prop::sample::select(Op::ALL.to_vec())
}

fn arb_filter() -> impl Strategy<Value = Filter> {
    let field = prop_oneof!["[a-z_]{1,8}", "\\PC{0,8}"];
    let direction = prop_oneof![Just(Direction::Out), Just(Direction::In)];
    let leaf = prop_oneof![
        (field, arb_op(), arb_json()).prop_map(|(field, op, value)| Filter::Pred {
            field,
            op,
            value
        }),
        ("[a-z]{1,6}", direction.clone()).prop_map(|(t, d)| Filter::Related {
            relation_type: t,
            direction: d,
            filter: None,
        }),
    ];
    leaf.prop_recursive(3, 48, 4, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Filter::And),
            prop::collection::vec(inner.clone(), 0..4).prop_map(Filter::Or),
            inner.clone().prop_map(|f| Filter::Not(Box::new(f))),
            ("[a-z]{1,6}", direction.clone(), inner).prop_map(|(t, d, f)| Filter::Related {
                relation_type: t,
                direction: d,
                filter: Some(Box::new(f)),
            }),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn filters_round_trip_through_json(f in arb_filter()) {
        let v = f.to_json();
        prop_assert_eq!(&Filter::from_json(&v).unwrap(), &f);
        let text = serde_json::to_string(&f).unwrap();
        let back: Filter = serde_json::from_str(&text).unwrap();
        prop_assert_eq!(&back, &f);
        prop_assert_eq!(Filter::from_json_str(&text).unwrap(), f);
    }
}

// ---------------------------------------------------------------------------------
// A fixed entity type, random records, random filters, and a reference evaluator
// written here from the documented semantics (not filter::eval).
// ---------------------------------------------------------------------------------

const TEXTS: [&str; 10] = ["", "a", "ab", "b", "B", "ba", "é", "a_b", "A", "a%"];
const NUMS: [f64; 6] = [-1.5, 0.0, 0.5, 2.0, 1e9, 4.575_099_017_554_074e-97];
const DATES: [&str; 4] = ["2024-01-01", "2024-01-02", "2024-01-10", "2023-12-31"];
const ENUMS: [&str; 3] = ["x", "y", "z"];

fn store_with(rows: &[Value]) -> (Records, Vec<Record>) {
    let store = Store::new(MemoryBackend::new());
    let t = store.create_tenant(None, "prop").unwrap();
    let t = store.tenant(Scope::new(t.id, "p", Role::Admin));
    let new: NewEntityType = serde_json::from_value(json!({"name": "r", "fields": [
        {"name": "t", "kind": "text"},
        {"name": "ti", "kind": "text", "indexed": true},
        {"name": "i", "kind": "integer"},
        {"name": "n", "kind": "number"},
        {"name": "b", "kind": "boolean"},
        {"name": "d", "kind": "date"},
        {"name": "s", "kind": "enum", "values": ENUMS},
        {"name": "l", "kind": "list", "items": "integer"}
    ]}))
    .unwrap();
    t.create_entity_type(&new).unwrap();
    let recs = t.records("r").unwrap();
    let made = if rows.is_empty() {
        Vec::new()
    } else {
        recs.create_many(rows).unwrap()
    };
    (recs, made)
}

fn arb_record() -> impl Strategy<Value = Value> {
    (
        prop::option::weighted(0.7, prop::sample::select(TEXTS.to_vec())),
        prop::option::weighted(0.7, prop::sample::select(TEXTS.to_vec())),
        prop::option::weighted(0.7, -3i64..=3),
        prop::option::weighted(0.7, prop::sample::select(NUMS.to_vec())),
        prop::option::weighted(0.7, any::<bool>()),
        prop::option::weighted(0.7, prop::sample::select(DATES.to_vec())),
        prop::option::weighted(0.7, prop::sample::select(ENUMS.to_vec())),
        prop::option::weighted(0.7, prop::collection::vec(-2i64..=2, 0..3)),
    )
        .prop_map(|(t, ti, i, n, b, d, s, l)| {
            let mut m = Map::new();
            let mut put = |k: &str, v: Option<Value>| {
                if let Some(v) = v {
                    m.insert(k.to_string(), v);
                }
            };
            put("t", t.map(Value::from));
            put("ti", ti.map(Value::from));
            put("i", i.map(Value::from));
            put("n", n.map(Value::from));
            put("b", b.map(Value::from));
            put("d", d.map(Value::from));
            put("s", s.map(Value::from));
            put("l", l.map(Value::from));
            Value::Object(m)
        })
}

/// The test's own filter type.
#[derive(Debug, Clone)]
enum F {
    And(Vec<F>),
    Or(Vec<F>),
    Not(Box<F>),
    P(&'static str, &'static str, Value),
}

impl F {
    fn to_json(&self) -> Value {
        match self {
            F::And(v) => json!({"and": v.iter().map(F::to_json).collect::<Vec<_>>()}),
            F::Or(v) => json!({"or": v.iter().map(F::to_json).collect::<Vec<_>>()}),
            F::Not(f) => json!({"not": f.to_json()}),
            F::P(field, op, value) => json!({"field": field, "op": op, "value": value}),
        }
    }
}

fn operand(field: &'static str) -> BoxedStrategy<Value> {
    match field {
        "t" | "ti" => prop::sample::select(TEXTS.to_vec())
            .prop_map(Value::from)
            .boxed(),
        "i" => (-4i64..=4).prop_map(Value::from).boxed(),
        "n" => prop_oneof![
            prop::sample::select(NUMS.to_vec()).prop_map(Value::from),
            (-2i64..=2).prop_map(Value::from)
        ]
        .boxed(),
        "b" => any::<bool>().prop_map(Value::from).boxed(),
        "d" => prop::sample::select(DATES.to_vec())
            .prop_map(Value::from)
            .boxed(),
        "s" => prop::sample::select(ENUMS.to_vec())
            .prop_map(Value::from)
            .boxed(),
        _ => (-2i64..=2).prop_map(Value::from).boxed(),
    }
}

fn ops_for(field: &'static str) -> Vec<&'static str> {
    let mut ops = vec!["is_null", "exists"];
    match field {
        "t" | "ti" => ops.extend([
            "eq",
            "ne",
            "lt",
            "lte",
            "gt",
            "gte",
            "in",
            "not_in",
            "contains",
            "starts_with",
            "ends_with",
        ]),
        "i" | "n" | "d" => ops.extend(["eq", "ne", "lt", "lte", "gt", "gte", "in", "not_in"]),
        "b" | "s" => ops.extend(["eq", "ne", "in", "not_in"]),
        _ => ops.push("contains"),
    }
    ops
}

fn arb_pred() -> impl Strategy<Value = F> {
    prop::sample::select(vec!["t", "ti", "i", "n", "b", "d", "s", "l"])
        .prop_flat_map(|field| (Just(field), prop::sample::select(ops_for(field))))
        .prop_flat_map(|(field, op)| {
            let value: BoxedStrategy<Value> = match op {
                "is_null" | "exists" => any::<bool>().prop_map(Value::from).boxed(),
                "in" | "not_in" => prop::collection::vec(operand(field), 1..4)
                    .prop_map(Value::Array)
                    .boxed(),
                "contains" | "starts_with" | "ends_with" if field != "l" => {
                    prop::sample::select(TEXTS[1..].to_vec())
                        .prop_map(Value::from)
                        .boxed()
                }
                _ => operand(field),
            };
            (Just(field), Just(op), value)
        })
        .prop_map(|(f, o, v)| F::P(f, o, v))
}

fn arb_f() -> impl Strategy<Value = F> {
    arb_pred().prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(F::And),
            prop::collection::vec(inner.clone(), 0..4).prop_map(F::Or),
            inner.prop_map(|f| F::Not(Box::new(f))),
        ]
    })
}

fn cmp_values(field: &str, a: &Value, b: &Value) -> Ordering {
    match field {
        "i" => a.as_i64().unwrap().cmp(&b.as_i64().unwrap()),
        "n" => a
            .as_f64()
            .unwrap()
            .partial_cmp(&b.as_f64().unwrap())
            .unwrap(),
        "b" => a.as_bool().unwrap().cmp(&b.as_bool().unwrap()),
        // Text, enum and YYYY-MM-DD dates: byte order.
        _ => a
            .as_str()
            .unwrap()
            .as_bytes()
            .cmp(b.as_str().unwrap().as_bytes()),
    }
}

fn eval(f: &F, data: &Map<String, Value>) -> bool {
    match f {
        F::And(v) => v.iter().all(|f| eval(f, data)),
        F::Or(v) => v.iter().any(|f| eval(f, data)),
        F::Not(f) => !eval(f, data),
        F::P(field, op, value) => {
            let v = data.get(*field);
            let eq_any = |x: &Value| {
                value
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|y| cmp_values(field, x, y) == Ordering::Equal)
            };
            match *op {
                "is_null" => v.is_none() == value.as_bool().unwrap(),
                "exists" => v.is_some() == value.as_bool().unwrap(),
                "contains" if *field == "l" => v.is_some_and(|x| {
                    x.as_array()
                        .unwrap()
                        .iter()
                        .any(|e| e.as_i64() == value.as_i64())
                }),
                "contains" => {
                    v.is_some_and(|x| x.as_str().unwrap().contains(value.as_str().unwrap()))
                }
                "starts_with" => {
                    v.is_some_and(|x| x.as_str().unwrap().starts_with(value.as_str().unwrap()))
                }
                "ends_with" => {
                    v.is_some_and(|x| x.as_str().unwrap().ends_with(value.as_str().unwrap()))
                }
                "in" => v.is_some_and(eq_any),
                "not_in" => v.is_some_and(|x| !eq_any(x)),
                cmp => v.is_some_and(|x| {
                    let o = cmp_values(field, x, value);
                    match cmp {
                        "eq" => o == Ordering::Equal,
                        "ne" => o != Ordering::Equal,
                        "lt" => o == Ordering::Less,
                        "lte" => o != Ordering::Greater,
                        "gt" => o == Ordering::Greater,
                        _ => o != Ordering::Less,
                    }
                }),
            }
        }
    }
}

fn query(recs: &Records, v: Value) -> Vec<Record> {
    let mut q: Query = serde_json::from_value(v).unwrap();
    let mut out = Vec::new();
    loop {
        let page = recs.query(&q).unwrap();
        out.extend(page.items);
        match page.next_cursor {
            Some(c) => q.cursor = Some(c),
            None => return out,
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn memory_backend_matches_the_reference_evaluator(
        rows in prop::collection::vec(arb_record(), 0..30),
        filters in prop::collection::vec(arb_f(), 1..8),
    ) {
        let (recs, made) = store_with(&rows);
        for f in &filters {
            let want: BTreeSet<Uuid> = made
                .iter()
                .filter(|r| eval(f, &r.data))
                .map(|r| r.id)
                .collect();
            let got = query(&recs, json!({"filter": f.to_json(), "limit": 1000}));
            let got_set: BTreeSet<Uuid> = got.iter().map(|r| r.id).collect();
            prop_assert_eq!(got_set.len(), got.len(), "a record returned twice");
            prop_assert_eq!(got_set, want, "filter {}", f.to_json());
        }
    }
}

// ---------------------------------------------------------------------------------
// (c) Keyset pagination returns every matching record exactly once, in order.
// ---------------------------------------------------------------------------------

fn sort_cmp(keys: &[(String, bool)], a: &Record, b: &Record) -> Ordering {
    for (field, desc) in keys {
        let o = if field == "id" {
            a.id.cmp(&b.id)
        } else {
            match (a.data.get(field), b.data.get(field)) {
                (None, None) => Ordering::Equal,
                (None, Some(_)) => Ordering::Greater,
                (Some(_), None) => Ordering::Less,
                (Some(x), Some(y)) => cmp_values(field, x, y),
            }
        };
        let o = if *desc { o.reverse() } else { o };
        if o != Ordering::Equal {
            return o;
        }
    }
    Ordering::Equal
}

fn arb_sort() -> impl Strategy<Value = Vec<(String, bool)>> {
    prop::sample::subsequence(vec!["t", "ti", "i", "n", "b", "d", "s", "id"], 0..4)
        .prop_shuffle()
        .prop_flat_map(|fields| {
            let n = fields.len();
            (Just(fields), prop::collection::vec(any::<bool>(), n))
        })
        .prop_map(|(fields, desc)| {
            fields
                .into_iter()
                .zip(desc)
                .map(|(f, d)| (f.to_string(), d))
                .collect()
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn pagination_returns_every_match_once_in_order(
        rows in prop::collection::vec(arb_record(), 0..40),
        sort in arb_sort(),
        filter in prop::option::of(arb_f()),
        limit in 1usize..10,
    ) {
        let (recs, made) = store_with(&rows);
        let mut q = Query {
            filter: filter.as_ref().map(|f| Filter::from_json(&f.to_json()).unwrap()),
            sort: sort
                .iter()
                .map(|(f, d)| SortKey { field: f.clone(), desc: *d })
                .collect(),
            limit: Some(limit),
            ..Query::default()
        };
        let mut got: Vec<Record> = Vec::new();
        let mut pages = 0;
        loop {
            let page = recs.query(&q).unwrap();
            pages += 1;
            prop_assert!(page.items.len() <= limit);
            if page.next_cursor.is_some() {
                prop_assert_eq!(page.items.len(), limit);
            }
            got.extend(page.items);
            match page.next_cursor {
                Some(c) => q.cursor = Some(c),
                None => break,
            }
            prop_assert!(pages <= made.len() + 1, "pagination does not end");
        }
        // Expected: matching records, sorted by the keys, then id in the last key's
        // direction (created_at ascending when no key is given; all rows share it).
        let mut keys = sort.clone();
        if !keys.iter().any(|(f, _)| f == "id") {
            let desc = keys.last().is_some_and(|(_, d)| *d);
            keys.push(("id".into(), desc));
        }
        let mut want: Vec<&Record> = made
            .iter()
            .filter(|r| filter.as_ref().is_none_or(|f| eval(f, &r.data)))
            .collect();
        want.sort_by(|a, b| sort_cmp(&keys, a, b));
        let want: Vec<Uuid> = want.iter().map(|r| r.id).collect();
        let got: Vec<Uuid> = got.iter().map(|r| r.id).collect();
        prop_assert_eq!(got, want, "sort {:?}", sort);
    }
}
